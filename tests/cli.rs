//! The `dinoscope` binary: selftest on fixture folders of other sizes, and clear errors for
//! missing or malformed folders.

mod common;

use dinoscope::cpu;
use dinoscope::cpu::interp::InterpMode;
use dinoscope::kernels::matmul::MatmulDims;
use dinoscope::kernels::patch_embed::PatchDims;
use dinoscope::selftest::checks_random as random;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::path::Path;
use std::process::Command;

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
    Command::new(env!("CARGO_BIN_EXE_dinoscope"))
        .args(["selftest", "--fixtures-only", "--fixtures"])
        .arg(dir)
        .output()
        .expect("run dinoscope")
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("dinoscope-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
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
fn selftest_only_runs_the_named_cases_and_refuses_a_filter_that_matches_none() {
    if common::gpu().is_none() {
        return;
    }
    let out = dinoscope(&[
        "selftest",
        "--only",
        "kernel.gelu",
        "--only",
        "layer_norm",
        "--skip",
        "offset",
    ]);
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
    let _ = std::fs::remove_dir_all(&bad);
}

#[test]
fn info_prints_adapter_limits_and_features() {
    if common::gpu().is_none() {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_dinoscope"))
        .arg("info")
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for key in [
        "adapter:",
        "backend:",
        "driver:",
        "max_storage_buffer_binding_size",
        "SHADER_F16",
        "TIMESTAMP_QUERY",
    ] {
        assert!(text.contains(key), "info lacks {key}:\n{text}");
    }
}

#[test]
fn unknown_backend_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_dinoscope"))
        .args(["info", "--backend", "banana"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("unknown backend 'banana'"), "{err}");
}

fn dinoscope(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dinoscope"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run dinoscope")
}

#[test]
fn attention_writes_maps_of_the_right_size_that_are_not_constant() {
    if common::gpu().is_none() {
        return;
    }
    let out_dir = tmp("attention");
    let out = dinoscope(&[
        "attention",
        "--weights",
        "tests/fixtures/tiny_dinov2_reg/model.safetensors",
        "assets/images/chelsea.png",
        "--size",
        "224",
        "-o",
        out_dir.to_str().expect("utf-8 path"),
    ]);
    eprintln!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());
    // chelsea.png is 451×300: shorter side 224 → 336×224 after cropping to multiples of 14.
    for name in [
        "input.png",
        "head0.png",
        "head3_threshold.png",
        "mean.png",
        "mean_overlay.png",
        "pca.png",
    ] {
        let img = image::open(out_dir.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .to_rgb8();
        assert_eq!((img.width(), img.height()), (336, 224), "{name} size");
        let first = *img.get_pixel(0, 0);
        assert!(img.pixels().any(|p| *p != first), "{name} is constant");
    }
    let heads = image::open(out_dir.join("heads.png"))
        .expect("heads.png")
        .to_rgb8();
    assert!(
        heads.width() > 336 * 2,
        "the head grid holds the four heads side by side"
    );
    let _ = std::fs::remove_dir_all(&out_dir);
}

#[test]
fn a_wrong_weights_file_lists_the_tensors() {
    if common::gpu().is_none() {
        return;
    }
    let out = dinoscope(&[
        "attention",
        "--weights",
        "tests/fixtures/tiny_dinov2/model.safetensors",
        "--config",
        "vits14",
        "assets/images/chelsea.png",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("tests/fixtures/tiny_dinov2/model.safetensors"),
        "{err}"
    );
    assert!(
        err.contains("missing") && err.contains("blocks.11.attn.qkv.weight [1152, 384]"),
        "{err}"
    );
    assert!(
        err.contains("pos_embed") && err.contains("[1, 1370, 384]"),
        "{err}"
    );
}

#[test]
fn embed_writes_features_and_skips_unreadable_images() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tmp("embed");
    std::fs::create_dir_all(dir.join("more")).expect("mkdir");
    std::fs::copy("assets/images/coffee.png", dir.join("more/coffee.png")).expect("copy");
    std::fs::write(dir.join("broken.png"), b"\x89PNG\r\n\x1a\nnot really").expect("write");
    let out_file = dir.join("feats.safetensors");
    let out = dinoscope(&[
        "embed",
        "--weights",
        "tests/fixtures/tiny_dinov2/model.safetensors",
        "assets/images/chelsea.png",
        "assets/images/astronaut.png",
        dir.to_str().expect("utf-8 path"),
        "--size",
        "56",
        "--batch",
        "2",
        "-o",
        out_file.to_str().expect("utf-8 path"),
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success());
    assert!(
        text.contains("broken.png") && text.contains("1 unreadable images skipped"),
        "{text}"
    );
    let bytes = std::fs::read(&out_file).expect("features file");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid safetensors");
    for name in ["cls", "mean_patch"] {
        let t = st.tensor(name).expect("tensor");
        assert_eq!(t.shape(), &[3, 64]);
        let v: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert!(v.iter().all(|x| x.is_finite()));
        assert!(
            v[..64] != v[64..128],
            "{name}: two different images gave the same features"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn embed_and_attention_never_overwrite_their_inputs() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tmp("no-overwrite");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let weights = dir.join("model.safetensors");
    let picture = dir.join("input.png");
    std::fs::copy("tests/fixtures/tiny_dinov2/model.safetensors", &weights).expect("copy");
    std::fs::copy("assets/images/chelsea.png", &picture).expect("copy");
    let before = (
        std::fs::read(&weights).expect("weights"),
        std::fs::read(&picture).expect("picture"),
    );
    let w = weights.to_str().expect("utf-8 path");
    let p = picture.to_str().expect("utf-8 path");
    // The features file onto the weights, then onto the picture (named another way).
    let aliased = format!(
        "{}/../{}/input.png",
        dir.display(),
        dir.file_name().and_then(|n| n.to_str()).expect("name")
    );
    for target in [w, aliased.as_str()] {
        let out = dinoscope(&["embed", "--weights", w, p, "--size", "28", "-o", target]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "embed -o {target} succeeded");
        assert!(err.contains("is an input"), "{err}");
    }
    // Attention maps into the picture's own folder would write input.png over it.
    let out = dinoscope(&[
        "attention",
        "--weights",
        w,
        p,
        "--size",
        "28",
        "-o",
        dir.to_str().expect("utf-8 path"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "attention into the input folder succeeded"
    );
    assert!(
        err.contains("input.png") && err.contains("is an input"),
        "{err}"
    );
    let after = (
        std::fs::read(&weights).expect("weights"),
        std::fs::read(&picture).expect("picture"),
    );
    assert!(before == after, "an input was modified");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn knn_k_and_attention_threshold_out_of_range_are_refused() {
    for (args, what) in [
        (
            vec![
                "knn",
                "--weights",
                "w",
                "--train",
                "a",
                "--test",
                "b",
                "--k",
                "0",
            ],
            "--k",
        ),
        (
            vec![
                "attention",
                "--weights",
                "w",
                "x.png",
                "-o",
                "o",
                "--threshold",
                "NaN",
            ],
            "--threshold",
        ),
        (
            vec![
                "attention",
                "--weights",
                "w",
                "x.png",
                "-o",
                "o",
                "--threshold",
                "1.5",
            ],
            "--threshold",
        ),
    ] {
        let out = dinoscope(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(what), "{args:?}: {err}");
    }
}

#[test]
fn knn_matches_classes_by_name_and_refuses_unseen_ones() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tmp("knn-names");
    let put = |set: &str, class: &str, pics: &[&str]| {
        let d = dir.join(set).join(class);
        std::fs::create_dir_all(&d).expect("mkdir");
        for p in pics {
            std::fs::copy(format!("assets/images/{p}.png"), d.join(format!("{p}.png")))
                .expect("copy");
        }
    };
    put("train", "zebra", &["chelsea", "coffee"]);
    put("train", "apple", &["astronaut"]);
    put("other", "a", &["chelsea"]);
    put("other", "b", &["astronaut"]);
    put("same", "zebra", &["chelsea", "coffee"]);
    let path = |s: &str| dir.join(s).to_str().expect("utf-8 path").to_string();
    let knn = |test: &str| {
        dinoscope(&[
            "knn",
            "--weights",
            "tests/fixtures/tiny_dinov2/model.safetensors",
            "--train",
            &path("train"),
            "--test",
            &path(test),
            "--size",
            "28",
            "--k",
            "1",
        ])
    };
    // Classes named differently are not paired by their sorted position.
    let out = knn("other");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "k-NN across unrelated classes succeeded"
    );
    assert!(
        err.contains("\"a\"") && err.contains("not among the train classes"),
        "{err}"
    );
    // A test set with a subset of the classes: "zebra" is train class 1 (after "apple"), and
    // the same pictures find themselves.
    let out = knn("same");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("train: 3 images in 2 classes; test: 2 images in 1 classes"),
        "{text}"
    );
    assert!(text.contains("100.00%"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn version_and_shell_completions() {
    let out = dinoscope(&["--version"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("dinoscope {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    for shell in ["bash", "zsh", "fish"] {
        let out = dinoscope(&["completions", shell]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{shell}");
        assert!(
            ["train", "selftest", "knn", "weights"]
                .iter()
                .all(|w| text.contains(w)),
            "{shell}: {text}"
        );
    }
    let out = dinoscope(&["completions", "tcsh"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tcsh"));
}

#[test]
fn dinov3_weights_give_attention_maps_and_features() {
    if common::gpu().is_none() {
        return;
    }
    let out_dir = tmp("attention-v3");
    let out = dinoscope(&[
        "attention",
        "--weights",
        "tests/fixtures/tiny_dinov3/model.safetensors",
        "assets/images/chelsea.png",
        "--size",
        "224",
        "-o",
        out_dir.to_str().expect("utf-8 path"),
    ]);
    eprintln!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());
    // 451×300 → shorter side 224 → 336×224 (multiples of 16); the storage tokens are not drawn.
    for name in ["head3.png", "mean_overlay.png", "pca.png"] {
        let img = image::open(out_dir.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .to_rgb8();
        assert_eq!((img.width(), img.height()), (336, 224), "{name} size");
        let first = *img.get_pixel(0, 0);
        assert!(img.pixels().any(|p| *p != first), "{name} is constant");
    }
    // The weights alone, without config.json: taken as DINOv3 from their names.
    let lone = tmp("v3-lone");
    std::fs::create_dir_all(&lone).expect("mkdir");
    let w = lone.join("w.safetensors");
    std::fs::copy("tests/fixtures/tiny_dinov3/model.safetensors", &w).expect("copy");
    let features = lone.join("f.safetensors");
    let out = dinoscope(&[
        "embed",
        "--weights",
        w.to_str().expect("utf-8"),
        "assets/images/chelsea.png",
        "assets/images/coffee.png",
        "--size",
        "64",
        "-o",
        features.to_str().expect("utf-8"),
    ]);
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
    let f = dinoscope::fixtures::TensorFile::open(&features).expect("features");
    assert_eq!(f.get("cls").expect("cls").shape, vec![2, 64]);
    let _ = std::fs::remove_dir_all(&out_dir);
    let _ = std::fs::remove_dir_all(&lone);
}

/// After `cargo install` neither the sources nor a folder beside the binary exist: `selftest`
/// then runs the fixtures built into the binary.
#[test]
fn selftest_runs_the_fixtures_built_into_the_binary() {
    if common::gpu().is_none() {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_dinoscope"))
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

/// `--precision f16` stores the model and its activations in half precision: the features
/// follow the f32 ones within the documented f16 tolerance, and attention maps are written.
#[test]
fn f16_precision_gives_the_f32_features_within_its_tolerance() {
    let Some(gpu) = common::gpu() else { return };
    let dir = tmp("embed-f16");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mut feats = Vec::new();
    for precision in ["f32", "f16"] {
        let out_file = dir.join(format!("{precision}.safetensors"));
        let out = dinoscope(&[
            "embed",
            "--weights",
            "tests/fixtures/tiny_dinov2_reg/model.safetensors",
            "assets/images/chelsea.png",
            "assets/images/coffee.png",
            "--size",
            "56",
            "--precision",
            precision,
            "-o",
            out_file.to_str().expect("utf-8 path"),
        ]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        if precision == "f16" && !gpu.features.contains(wgpu::Features::SHADER_F16) {
            assert!(!out.status.success() && err.contains("SHADER_F16"), "{err}");
            return;
        }
        assert!(out.status.success(), "{precision}: {err}");
        let f = dinoscope::fixtures::TensorFile::open(&out_file).expect("features");
        feats.push(f.get("cls").expect("cls").data.clone());
    }
    let scale = feats[0].iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let err = feats[0]
        .iter()
        .zip(&feats[1])
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!("f16 vs f32 CLS features: max err {err:.3e} (scale {scale:.3})");
    assert!(
        err > 0.0,
        "the f16 run gave bit-identical features: did it run in f16?"
    );
    assert!(
        err <= dinoscope::selftest::F16_TOLERANCE * scale,
        "f16 features off by {err}"
    );
    let maps = dir.join("maps");
    let out = dinoscope(&[
        "attention",
        "--weights",
        "tests/fixtures/tiny_dinov3/model.safetensors",
        "assets/images/chelsea.png",
        "--size",
        "64",
        "--precision",
        "f16",
        "-o",
        maps.to_str().expect("utf-8 path"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(maps.join("pca.png").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bench_loader_times_the_loader_and_names_a_bad_data_path() {
    let json = tmp("bench_loader.json");
    let _ = std::fs::remove_file(&json);
    let out = dinoscope(&[
        "bench",
        "loader",
        "--config",
        "debug",
        "--workers",
        "2",
        "--batches",
        "3",
        "--json",
        json.to_str().expect("utf-8 path"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("1 thread:") && text.contains("2 worker threads:"),
        "{text}"
    );
    let rows: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("json");
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    for r in rows {
        assert_eq!(r["unit"], "img/s");
        assert!(r["rate"].as_f64().expect("rate") > 0.0, "{r}");
    }

    let missing = tmp("no_such_images");
    let out = dinoscope(&[
        "bench",
        "loader",
        "--data",
        missing.to_str().expect("utf-8 path"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no_such_images"), "{err}");
}

#[test]
fn tune_keeps_what_it_measured_when_stopped_part_way() {
    use std::io::BufRead;
    if common::gpu().is_none() {
        return;
    }
    let dir = tmp("tune_stopped");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dinoscope"))
        .args(["tune", "--config", "debug", "--reps", "1"])
        .env("DINOSCOPE_CACHE_DIR", &dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run dinoscope");
    // The event waited for: the first tuned product's line (a row of the table starts with its
    // dims); the process is stopped there, long before the last of the debug step's products.
    let stdout = child.stdout.take().expect("stdout");
    let first = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with(|c: char| c.is_ascii_digit()));
    let _ = child.kill();
    let _ = child.wait();
    assert!(first.is_some(), "tune printed no product");
    let cache = std::fs::read_dir(&dir)
        .expect("the cache folder, written before the first product was printed")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "ron"))
        .expect("the cache file");
    let text = std::fs::read_to_string(&cache).expect("cache");
    let parsed: dinoscope::tune::TuneCache = ron::from_str(&text).expect("a whole cache");
    assert!(!parsed.plans.is_empty(), "{text}");
    for plan in parsed.plans.values() {
        assert!(
            dinoscope::kernels::matmul::Plan::parse(plan).is_some(),
            "{plan}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
