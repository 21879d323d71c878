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
    "interp.5x6",
    "interp.3x7",
    "interp.2x2",
    "interp.aa_5x6",
    "interp.aa_3x7",
    "interp.aa_2x2",
    "dino",
    "ibot",
    "koleo",
];

fn check_all(exec: &Exec) {
    let rows = run_fixtures(exec, &common::fixtures_dir()).expect("fixtures load");
    for r in &rows {
        eprintln!("{}", r.row());
    }
    for name in OP_CASES {
        let r = rows
            .iter()
            .find(|r| r.name == *name)
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
    assert_eq!(
        names,
        [
            "interp.aa_2x2",
            "interp.aa_3x7",
            "interp.aa_5x6",
            "layer_norm",
            "layer_norm_small_var"
        ]
    );
    assert!(rows.iter().all(|r| r.status == Status::Pass));
}
