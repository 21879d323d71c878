//! The PyTorch golden op and loss cases (tests/fixtures, the format of ../shared/golden): every
//! op case, forward and every gradient, and the DINO, iBOT and KoLeo losses of the official dinov2
//! code (values, centers, Sinkhorn targets, student gradients), on the GPU and with the CPU twins.

mod common;

use dinoscope::selftest::{
    list_fixtures, run_fixtures, run_fixtures_filtered, CaseFilter, Exec, Status,
};

const OP_CASES: &[&str] = &[
    "matmul",
    "bmm",
    "layer_norm",
    "layer_norm_offset",
    "layer_norm_small_var",
    "gelu",
    "softmax",
    "sdpa",
    "linear",
    "cross_entropy",
    "patch_embed",
    "dino",
    "ibot",
    "koleo",
];

/// The resize cases of the fixture set, plain and antialiased: one per target size the
/// manifest's settings name (`settings.ops.interp`: the input shape, then the targets).
fn interp_cases() -> (Vec<String>, Vec<String>) {
    let path = common::fixtures_dir().join("manifest.json");
    let text = std::fs::read_to_string(&path).expect("manifest");
    let json: serde_json::Value = serde_json::from_str(&text).expect("manifest JSON");
    let targets = json["settings"]["ops"]["interp"][1]
        .as_array()
        .expect("settings.ops.interp targets");
    let sizes: Vec<String> = targets
        .iter()
        .map(|t| format!("{}x{}", t[0], t[1]))
        .collect();
    assert!(!sizes.is_empty(), "no resize targets in the manifest");
    let plain = sizes.iter().map(|s| format!("interp.{s}")).collect();
    let aa = sizes.iter().map(|s| format!("interp.aa_{s}")).collect();
    (plain, aa)
}

fn check_all(exec: &Exec) {
    let rows = run_fixtures(exec, &common::fixtures_dir()).expect("fixtures load");
    for r in &rows {
        eprintln!("{}", r.row());
    }
    let (plain, aa) = interp_cases();
    let cases = OP_CASES
        .iter()
        .map(|s| s.to_string())
        .chain(plain)
        .chain(aa);
    for name in cases {
        let r = rows
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("op case {name} not run"));
        assert_eq!(r.status, Status::Pass, "{}", r.row());
    }
    assert!(!rows.iter().any(|r| r.failed()), "a case failed");
}

#[test]
fn golden_ops_on_gpu() {
    let Some(gpu) = common::gpu() else { return };
    check_all(&Exec::Gpu(gpu));
}

#[test]
fn golden_ops_on_cpu_twins() {
    check_all(&Exec::Cpu);
}

#[test]
fn only_and_skip_pick_cases_by_name() {
    let filter = CaseFilter {
        only: vec!["layer_norm".into(), "interp.aa".into()],
        skip: vec!["offset".into()],
    };
    let rows =
        run_fixtures_filtered(&Exec::Cpu, &common::fixtures_dir(), &filter).expect("fixtures load");
    let mut names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    let listed = list_fixtures(&Exec::Cpu, &common::fixtures_dir(), &filter).expect("list");
    assert_eq!(listed, names, "the list is the run's cases, in its order");
    names.sort();
    let mut want = interp_cases().1;
    want.extend(["layer_norm".to_string(), "layer_norm_small_var".to_string()]);
    want.sort();
    assert_eq!(names, want);
    assert!(rows.iter().all(|r| r.status == Status::Pass));
}
