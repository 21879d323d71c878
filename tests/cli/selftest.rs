//! `dinoscope selftest`: fixture folders of other sizes, a mismatched case, `--only`/`--skip`,
//! missing and malformed folders, and the fixtures built into the binary.

use super::*;

fn write_safetensors(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                d.iter().flat_map(|v| v.to_le_bytes()).collect(),
                s.clone(),
            )
        })
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(n, b, s)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).expect("view"),
            )
        })
        .collect();
    let out = safetensors::serialize(views, None).expect("serialize");
    std::fs::write(path, out).expect("write");
}

/// A fixture folder in the golden format with sizes unlike the bundled set; expected values
/// from the CPU twins (themselves checked against PyTorch in tests/golden.rs).
fn other_sizes(dir: &Path, break_matmul: bool) {
    // A model folder under another name, judged with the default tolerance (no manifest entries).
    std::fs::create_dir_all(dir.join("some_model")).expect("mkdir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_dinov2_reg");
    for f in [
        "config.json",
        "model.safetensors",
        "io.safetensors",
        "grads.safetensors",
    ] {
        std::fs::copy(src.join(f), dir.join("some_model").join(f)).expect("copy model fixture");
    }
    std::fs::write(
        dir.join("manifest.json"),
        r#"{"format_version": 1, "tensors": []}"#,
    )
    .expect("manifest");
    let mut t: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut add = |n: &str, s: &[usize], d: Vec<f32>| t.push((n.to_string(), s.to_vec(), d));
    // matmul [5,3]·[3,9]
    let (a, b, up) = (
        random(15, 1, -1.0, 1.0),
        random(27, 2, -1.0, 1.0),
        random(45, 3, -1.0, 1.0),
    );
    let c = cpu::matmul::matmul(&a, &b, MatmulDims::new(5, 9, 3));
    let (ga, gb) = cpu::matmul::matmul_backward(&up, &a, &b, 1, 5, 9, 3);
    add("matmul.a", &[5, 3], a);
    add("matmul.b", if break_matmul { &[9, 3] } else { &[3, 9] }, b);
    add("matmul.upstream_c", &[5, 9], up);
    add("matmul.c", &[5, 9], c);
    add("matmul.grad_a", &[5, 3], ga);
    add("matmul.grad_b", &[3, 9], gb);
    // layer_norm [4, 33]
    let (x, w, bb, up) = (
        random(132, 4, -2.0, 2.0),
        random(33, 5, 0.5, 1.5),
        random(33, 6, -0.5, 0.5),
        random(132, 7, -1.0, 1.0),
    );
    let (y, _, _) = cpu::layernorm::layernorm_forward(&x, &w, &bb, 1e-6);
    let (gx, gw, gbb) = cpu::layernorm::layernorm_backward(&up, &x, &w, 1e-6);
    for (n, s, d) in [
        ("x", vec![4, 33], x),
        ("weight", vec![33], w),
        ("bias", vec![33], bb),
        ("upstream_y", vec![4, 33], up),
        ("y", vec![4, 33], y),
        ("grad_x", vec![4, 33], gx),
        ("grad_weight", vec![33], gw),
        ("grad_bias", vec![33], gbb),
    ] {
        add(&format!("layer_norm.{n}"), &s, d);
    }
    // sdpa [1, 2, 5, 8]
    let s = [1usize, 2, 5, 8];
    let (q, k, v, up) = (
        random(80, 8, -1.0, 1.0),
        random(80, 9, -1.0, 1.0),
        random(80, 10, -1.0, 1.0),
        random(80, 11, -1.0, 1.0),
    );
    let sc = 1.0 / 8f32.sqrt();
    let (o, p, l) = cpu::attention::attention_forward(&q, &k, &v, 2, 5, 5, 8, sc);
    let (gq, gk, gv) = cpu::attention::attention_backward(&up, &q, &k, &v, 2, 5, 5, 8, sc);
    for (n, sh, d) in [
        ("q", s.to_vec(), q),
        ("k", s.to_vec(), k),
        ("v", s.to_vec(), v),
        ("upstream_out", s.to_vec(), up),
        ("out", s.to_vec(), o),
        ("probs", vec![1, 2, 5, 5], p),
        ("lse", vec![1, 2, 5], l),
        ("grad_q", s.to_vec(), gq),
        ("grad_k", s.to_vec(), gk),
        ("grad_v", s.to_vec(), gv),
    ] {
        add(&format!("sdpa.{n}"), &sh, d);
    }
    // interp from a 3×3 grid of 2 channels to 6×8, both modes.
    let gx0 = random(18, 12, -1.0, 1.0);
    for (tag, mode) in [
        ("6x8", InterpMode::Bicubic),
        ("aa_6x8", InterpMode::BicubicAntialias),
    ] {
        let up = random(96, 13, -1.0, 1.0);
        add(
            &format!("interp.{tag}.upstream_y"),
            &[1, 2, 6, 8],
            up.clone(),
        );
        add(
            &format!("interp.{tag}.y"),
            &[1, 2, 6, 8],
            cpu::interp::interp_forward(&gx0, 2, 3, 3, 6, 8, mode),
        );
        add(
            &format!("interp.{tag}.grad_x"),
            &[1, 2, 3, 3],
            cpu::interp::interp_backward(&up, 2, 3, 3, 6, 8, mode),
        );
    }
    add("interp.x", &[1, 2, 3, 3], gx0);
    // patch_embed with 16×16 patches (DINOv3 size).
    let d = PatchDims {
        batch: 1,
        channels: 3,
        height: 32,
        width: 48,
        patch: 16,
    };
    let (x, w, bb, up) = (
        random(3 * 32 * 48, 14, -1.0, 1.0),
        random(5 * 3 * 256, 15, -0.1, 0.1),
        random(5, 16, -0.1, 0.1),
        random(6 * 5, 17, -1.0, 1.0),
    );
    let y = cpu::patch_embed::patch_embed_forward(&x, &w, &bb, d);
    let (gx, gw, gbb) = cpu::patch_embed::patch_embed_backward(&up, &x, &w, 5, d);
    for (n, s, dd) in [
        ("x", vec![1, 3, 32, 48], x),
        ("weight", vec![5, 3, 16, 16], w),
        ("bias", vec![5], bb),
        ("upstream_y", vec![1, 6, 5], up),
        ("y", vec![1, 6, 5], y),
        ("grad_x", vec![1, 3, 32, 48], gx),
        ("grad_weight", vec![5, 3, 16, 16], gw),
        ("grad_bias", vec![5], gbb),
    ] {
        add(&format!("patch_embed.{n}"), &s, dd);
    }
    write_safetensors(&dir.join("ops.safetensors"), &t);
}

fn selftest(dir: &Path) -> std::process::Output {
    common::command(env!("CARGO_BIN_EXE_dinoscope"))
        .args(["selftest", "--fixtures-only", "--fixtures"])
        .arg(dir)
        .output()
        .expect("run dinoscope")
}

#[test]
fn selftest_runs_a_fixture_set_of_other_sizes() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tmp("other");
    other_sizes(&dir, false);
    let out = selftest(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "selftest failed");
    for case in [
        "matmul",
        "layer_norm",
        "sdpa",
        "interp.6x8",
        "interp.aa_6x8",
        "patch_embed",
    ] {
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().take(2).eq([case, "pass"])),
            "no passing row for {case}"
        );
    }
    assert!(text
        .lines()
        .any(|l| l.split_whitespace().take(2).eq(["some_model", "pass"])));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn selftest_fails_on_a_mismatched_case() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tmp("broken");
    other_sizes(&dir, true);
    let out = selftest(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "a broken case must fail the run");
    let row = text
        .lines()
        .find(|l| l.starts_with("matmul "))
        .expect("matmul row");
    assert!(
        row.contains("FAIL") && row.contains("do not match"),
        "{row}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn selftest_only_runs_and_lists_the_named_cases_and_refuses_a_filter_that_matches_none() {
    if common::gpu().is_none() {
        return;
    }
    let filter = [
        "--only",
        "kernel.gelu",
        "--only",
        "layer_norm",
        "--skip",
        "offset",
    ];
    let out = dinoscope(&[&["selftest"][..], &filter].concat());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let cases: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" pass "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        cases,
        ["kernel.gelu", "layer_norm", "layer_norm_small_var"],
        "{text}"
    );

    // `--list` names the same cases, in the same order, and runs none of them.
    let out = dinoscope(&[&["selftest", "--list"][..], &filter].concat());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let listed: Vec<&str> = text.lines().collect();
    assert_eq!(listed, cases, "{text}");

    let out = dinoscope(&["selftest", "--only", "no_such_case"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("no selftest case matches") && err.contains("no_such_case"),
        "{err}"
    );
}

#[test]
fn selftest_reports_missing_and_malformed_folders() {
    if common::gpu().is_none() {
        return;
    }
    let missing = tmp("missing");
    let out = selftest(&missing);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&missing.display().to_string()) && err.contains("not a folder"),
        "{err}"
    );

    let bad = tmp("malformed");
    std::fs::create_dir_all(&bad).expect("mkdir");
    // An empty folder is said to be no fixture folder before any check runs.
    let out = selftest(&bad);
    let err = String::from_utf8_lossy(&out.stderr);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && err.contains("no manifest.json"),
        "{err}"
    );
    assert!(!text.contains("kernel."), "{text}");
    std::fs::write(bad.join("manifest.json"), "{ not json").expect("write");
    let out = selftest(&bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("manifest.json") && err.contains("not a valid manifest"),
        "{err}"
    );

    std::fs::write(bad.join("manifest.json"), "{}").expect("write");
    std::fs::write(
        bad.join("ops.safetensors"),
        b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":",
    )
    .expect("write");
    let out = selftest(&bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("ops.safetensors") && err.contains("not a valid safetensors file"),
        "{err}"
    );
    // A manifest of a later layout, or not an object, is refused rather than read loosely.
    for (manifest, says) in [
        (r#"{"format_version": 2}"#, "format_version 2"),
        ("[]", "a JSON object was expected"),
    ] {
        std::fs::write(bad.join("manifest.json"), manifest).expect("write");
        let out = selftest(&bad);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{err}");
    }
    // A file the manifest lists, missing: the folder is incomplete (its cases would go
    // unchecked).
    std::fs::write(
        bad.join("manifest.json"),
        r#"{"tensors": [{"file": "losses.safetensors", "name": "dino.loss"}]}"#,
    )
    .expect("write");
    let out = selftest(&bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("losses.safetensors: listed in manifest.json"),
        "{err}"
    );
    // So is one only its `files` section names (a model folder's config.json), and a listed
    // tensor its file does not hold.
    std::fs::write(
        bad.join("manifest.json"),
        r#"{"files": {"tiny/config.json": {}}}"#,
    )
    .expect("write");
    let out = selftest(&bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("config.json: listed in manifest.json"),
        "{err}"
    );
    write_safetensors(
        &bad.join("ops.safetensors"),
        &[("gelu.x".into(), vec![2], vec![0.5; 2])],
    );
    std::fs::write(
        bad.join("manifest.json"),
        r#"{"tensors": [{"file": "ops.safetensors", "name": "gelu.x"},
                        {"file": "ops.safetensors", "name": "gelu.y"}]}"#,
    )
    .expect("write");
    let out = selftest(&bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("tensor 'gelu.y' is listed in manifest.json"),
        "{err}"
    );
    // Cases of no kind this build knows, or with empty or wrongly ranked tensors: nothing is
    // checked, and the run fails saying so (never a pass, never a panic).
    std::fs::write(bad.join("manifest.json"), "{}").expect("write");
    let v = |n: usize| vec![0.5; n];
    write_safetensors(
        &bad.join("ops.safetensors"),
        &[("frobnicate.x".into(), vec![2], v(2))],
    );
    let out = selftest(&bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("nothing of it was checked"),
        "{err}"
    );
    for shape in [vec![2, 3, 5, 0], vec![1, 2, 3, 5, 4]] {
        let len = shape.iter().product();
        let t: Vec<(String, Vec<usize>, Vec<f32>)> = ["q", "k", "v", "upstream_out", "out"]
            .iter()
            .map(|n| (format!("sdpa.{n}"), shape.clone(), v(len)))
            .collect();
        write_safetensors(&bad.join("ops.safetensors"), &t);
        let out = selftest(&bad);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(text.contains("sdpa") && text.contains("FAIL"), "{text}");
    }
    let _ = std::fs::remove_dir_all(&bad);
}

/// After `cargo install` neither the sources nor a folder beside the binary exist: `selftest`
/// then runs the fixtures built into the binary.
#[test]
fn selftest_runs_the_fixtures_built_into_the_binary() {
    if common::gpu().is_none() {
        return;
    }
    let out = common::command(env!("CARGO_BIN_EXE_dinoscope"))
        .args(["selftest", "--fixtures-only"])
        .env("DINOSCOPE_EMBEDDED_FIXTURES", "1")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run dinoscope");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "selftest failed");
    let fixtures_line = text
        .lines()
        .find(|l| l.starts_with("fixtures:"))
        .expect("fixtures line");
    assert!(
        fixtures_line.contains("dinoscope-fixtures-") && !fixtures_line.contains("tests/fixtures"),
        "{fixtures_line}"
    );
    for case in [
        "tiny_dinov2",
        "tiny_dinov2_reg",
        "tiny_dinov3",
        "sdpa",
        "dino",
    ] {
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().take(2).eq([case, "pass"])),
            "no passing row for {case}"
        );
    }
}
