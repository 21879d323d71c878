//! The DINOv2 backbone against PyTorch/transformers: every forward output (tokens, pooler,
//! attention maps of every layer, hidden states, patch embeddings, resized position tables) at
//! every input resolution, and every parameter and pixel gradient, for the plain and the
//! register fixture models and the DINOv3 one (RoPE tables too).

mod common;

use dinoscope::fixtures::Manifest;
use dinoscope::selftest::{run_model_case, Status};

fn parity(model: &str) {
    let Some(gpu) = common::gpu() else { return };
    let dir = common::fixtures_dir();
    let manifest = Manifest::load(&dir).expect("manifest");
    let r = run_model_case(gpu, &dir.join(model), &manifest, model);
    eprintln!("{} ({} tensors compared)", r.row(), r.compared);
    assert_eq!(r.status, Status::Pass, "{}", r.row());
    // Every forward output of the io file (not the inputs, nor the official code's offset
    // table) and every gradient of the grads file, whatever the set's sizes.
    let names = |f: &str| {
        dinoscope::fixtures::TensorFile::open(&dir.join(model).join(f))
            .expect("fixture file")
            .names()
            .to_vec()
    };
    let outputs = names("io.safetensors")
        .iter()
        .filter(|n| !n.starts_with("input") && !n.contains("_official_"))
        .count();
    let grads = names("grads.safetensors")
        .iter()
        .filter(|n| n.contains(".grad."))
        .count();
    assert_eq!(r.compared, outputs + grads, "tensors compared");
}

// Each input's forward outputs (three resolutions and a masked run) and the gradients of the
// pixels and of every weight, for three runs.
#[test]
fn tiny_dinov2_matches_pytorch() {
    parity("tiny_dinov2");
}

// The register model adds register tokens to the forward and their gradient to each run.
#[test]
fn tiny_dinov2_reg_matches_pytorch() {
    parity("tiny_dinov2_reg");
}

// DINOv3 (rotary positions, 4 registers, no key bias): attention maps, hidden states, RoPE
// tables and coordinates (square, wide and tall grids), the model's inverse frequencies, and
// every gradient of 3 runs.
#[test]
fn tiny_dinov3_matches_pytorch() {
    parity("tiny_dinov3");
}

/// The same random weights saved under torch-hub names give bit-identical outputs.
#[test]
fn hub_named_weights_give_the_same_outputs() {
    let Some(gpu) = common::gpu() else { return };
    use dinoscope::gpu::Recorder;
    use dinoscope::model::vit::{ForwardOptions, Vit};
    use dinoscope::model::weights::{load_backbone, save_hub_safetensors, Naming};
    let dir = common::fixtures_dir().join("tiny_dinov2_reg");
    let cfg = dinoscope::model::config::VitConfig::load(&dir.join("config.json")).expect("config");
    let hf = load_backbone(&dir.join("model.safetensors"), &cfg).expect("HF weights");
    let tmp = std::env::temp_dir().join(format!("dinoscope-hub-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("mkdir");
    let hub_path = tmp.join("hub.safetensors");
    save_hub_safetensors(&hub_path, &hf.tensors).expect("save");
    let hub = load_backbone(&hub_path, &cfg).expect("hub weights");
    assert_eq!(hf.naming, Naming::HuggingFace);
    assert_eq!(hub.naming, Naming::TorchHub);
    let io = dinoscope::fixtures::TensorFile::open(&dir.join("io.safetensors")).expect("io");
    let px = io.get("input1.pixel_values").expect("input");
    let run = |w| {
        let vit = Vit::new(gpu, cfg.clone(), w).expect("model");
        let mut rec = Recorder::new(gpu);
        let pixels = gpu.upload(&px.data, &px.shape);
        let out = vit
            .forward(
                &mut rec,
                &pixels,
                px.shape[0],
                px.shape[2],
                px.shape[3],
                None,
                &ForwardOptions::default(),
            )
            .expect("forward");
        rec.finish().expect("submit");
        gpu.read(&out.tokens).expect("read")
    };
    assert_eq!(run(&hf), run(&hub));
    let _ = std::fs::remove_dir_all(&tmp);
}

/// A model that owns its weights resizes its position table once per grid and keeps it only
/// once that resize was submitted: a forward recorded and dropped unsubmitted leaves nothing
/// half-made behind, and every later forward gives a fresh model's tokens, bit for bit.
#[test]
fn resized_position_tables_are_kept_once_computed() {
    let Some(gpu) = common::gpu() else { return };
    use dinoscope::gpu::Recorder;
    use dinoscope::model::vit::{ForwardOptions, Vit};
    use dinoscope::model::weights::load_backbone;
    let dir = common::fixtures_dir().join("tiny_dinov2");
    let cfg = dinoscope::model::config::VitConfig::load(&dir.join("config.json")).expect("config");
    let w = load_backbone(&dir.join("model.safetensors"), &cfg).expect("weights");
    // A grid the stored table does not have: one patch taller and one narrower.
    let (h, wd) = (
        cfg.patch * (cfg.pos_grid + 1),
        cfg.patch * (cfg.pos_grid - 1).max(1),
    );
    let px: Vec<f32> = (0..3 * h * wd)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let forward = |vit: &Vit, submit: bool| {
        let mut rec = Recorder::new(gpu);
        let pixels = gpu.upload(&px, &[1, 3, h, wd]);
        let out = vit
            .forward(
                &mut rec,
                &pixels,
                1,
                h,
                wd,
                None,
                &ForwardOptions::default(),
            )
            .expect("forward");
        if !submit {
            return None;
        }
        rec.finish().expect("submit");
        Some(gpu.read(&out.tokens).expect("read"))
    };
    let fresh = Vit::new(gpu, cfg.clone(), &w).expect("model");
    let want = forward(&fresh, true).expect("tokens");
    let vit = Vit::new(gpu, cfg.clone(), &w).expect("model");
    assert!(forward(&vit, false).is_none());
    assert_eq!(forward(&vit, true).expect("tokens"), want);
    assert_eq!(forward(&vit, true).expect("tokens"), want);
}

type Values = std::collections::BTreeMap<String, Vec<f32>>;

/// The final tokens of the model `cfg` with parameters `vals` on pixels `px` of shape
/// (batch, height, width), each block's rotary coordinates scaled by `rope_scales`.
fn tokens_of(
    gpu: &dinoscope::gpu::Gpu,
    cfg: &dinoscope::model::config::VitConfig,
    vals: &Values,
    px: &[f32],
    (b, h, w): (usize, usize, usize),
    rope_scales: Option<Vec<f32>>,
) -> Vec<f32> {
    use dinoscope::model::vit::{ForwardOptions, Vit};
    let vit = Vit::from_host(gpu, cfg.clone(), vals).expect("model");
    let mut rec = dinoscope::gpu::Recorder::new(gpu);
    let pixels = gpu.upload(px, &[b, 3, h, w]);
    let opts = ForwardOptions {
        rope_scales,
        ..Default::default()
    };
    let out = vit
        .forward(&mut rec, &pixels, b, h, w, None, &opts)
        .expect("forward");
    rec.finish().expect("submit");
    gpu.read(&out.tokens).expect("read")
}

/// The derivative of Σ tokens·u along `dir` at `base`: (analytic, from the backward pass;
/// numeric, central differences of step `eps`), every forward with the same `rope_scales`.
#[allow(clippy::too_many_arguments)]
fn directional_derivative(
    gpu: &dinoscope::gpu::Gpu,
    cfg: &dinoscope::model::config::VitConfig,
    (base, dir): (&Values, &Values),
    px: &[f32],
    shape: (usize, usize, usize),
    u: &[f32],
    rope_scales: Option<Vec<f32>>,
    eps: f32,
) -> (f64, f64) {
    use dinoscope::model::vit::{param_layout, ForwardOptions, Vit};
    let (b, h, w) = shape;
    let loss = |vals: &Values| -> f64 {
        tokens_of(gpu, cfg, vals, px, shape, rope_scales.clone())
            .iter()
            .zip(u)
            .map(|(a, c)| *a as f64 * *c as f64)
            .sum()
    };
    let layout = param_layout(cfg);
    let vit = Vit::from_host(gpu, cfg.clone(), base).expect("model");
    let mut rec = dinoscope::gpu::Recorder::new(gpu);
    let pixels = gpu.upload(px, &[b, 3, h, w]);
    let opts = ForwardOptions {
        save_for_backward: true,
        rope_scales: rope_scales.clone(),
        ..Default::default()
    };
    let mut out = vit
        .forward(&mut rec, &pixels, b, h, w, None, &opts)
        .expect("forward");
    let grads = vit.zero_grads(&mut rec);
    let d_tokens = gpu.upload(u, &[b, u.len() / (b * cfg.dim), cfg.dim]);
    vit.backward(&mut rec, &mut out, &d_tokens, &grads, None, shape, None)
        .expect("backward");
    rec.finish().expect("submit");
    let g = layout.unpack(&gpu.read(&grads.flat).expect("read"));
    let analytic: f64 = layout
        .entries
        .iter()
        .map(|e| {
            g[&e.name]
                .iter()
                .zip(&dir[&e.name])
                .map(|(a, c)| *a as f64 * *c as f64)
                .sum::<f64>()
        })
        .sum();
    let shifted = |s: f32| -> Values {
        base.iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.iter().zip(&dir[k]).map(|(a, c)| a + s * c).collect(),
                )
            })
            .collect()
    };
    let numeric = (loss(&shifted(eps)) - loss(&shifted(-eps))) / (2.0 * eps as f64);
    (analytic, numeric)
}

/// A SwiGLU (ViT-g style) backbone: the analytic gradient along a random direction of all
/// parameters matches central differences of the GPU forward.
#[test]
fn swiglu_backbone_gradient_matches_finite_differences() {
    let Some(gpu) = common::gpu() else { return };
    use dinoscope::model::config::{Ffn, VitConfig};
    use dinoscope::model::vit::param_layout;
    use dinoscope::selftest::checks_random as random;
    let mut cfg = VitConfig::preset("vitg14").expect("preset");
    cfg.dim = 64;
    cfg.depth = 2;
    cfg.heads = 2;
    cfg.mlp_hidden = 40;
    cfg.pos_grid = 2;
    assert_eq!(cfg.ffn, Ffn::SwiGlu);
    let layout = param_layout(&cfg);
    let base: std::collections::BTreeMap<String, Vec<f32>> = layout
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let v = if e.name.contains("norm") && e.name.ends_with("weight") {
                vec![1.0; e.numel()]
            } else {
                random(e.numel(), 300 + i as u64, -0.2, 0.2)
            };
            (e.name.clone(), v)
        })
        .collect();
    let dir: std::collections::BTreeMap<String, Vec<f32>> = layout
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.name.clone(), random(e.numel(), 500 + i as u64, -1.0, 1.0)))
        .collect();
    // A value of another size than the config's is refused by name, not cut or padded.
    let mut short = base.clone();
    short.insert("blocks.1.mlp.w3.weight".into(), vec![0.0; 7]);
    let err = dinoscope::model::vit::Vit::from_host(gpu, cfg.clone(), &short)
        .err()
        .expect("a short tensor is refused")
        .to_string();
    assert!(
        err.contains("blocks.1.mlp.w3.weight") && err.contains("7 values"),
        "{err}"
    );
    let (b, hgt, wid) = (2, 28, 42);
    let px = random(b * 3 * hgt * wid, 7, -1.0, 1.0);
    let n = 1 + (hgt / 14) * (wid / 14);
    let u = random(b * n * cfg.dim, 8, -1.0, 1.0);
    let (analytic, numeric) =
        directional_derivative(gpu, &cfg, (&base, &dir), &px, (b, hgt, wid), &u, None, 1e-2);
    eprintln!("directional derivative: analytic {analytic:.5}, numeric {numeric:.5}");
    assert!(
        (analytic - numeric).abs() <= 2e-2 * numeric.abs().max(1.0),
        "analytic {analytic} vs numeric {numeric}"
    );
}

/// A model whose activations leave f16's range: in f16 `embed` refuses with the reason instead
/// of returning infinite features; in f32 the same model works.
#[test]
fn f16_overflow_is_an_error_naming_the_cause() {
    let Some(gpu) = common::gpu() else { return };
    if !common::f16(gpu, "f16_overflow_is_an_error") {
        return;
    }
    use dinoscope::data::image::{preprocess, Resize};
    use dinoscope::gpu::DType;
    use dinoscope::model::vit::Vit;
    use dinoscope::model::weights::load_backbone;
    let dir = common::fixtures_dir().join("tiny_dinov2_reg");
    let cfg = dinoscope::model::config::VitConfig::load(&dir.join("config.json")).expect("config");
    let mut w = load_backbone(&dir.join("model.safetensors"), &cfg).expect("weights");
    // A class token past 65,504 is infinite once stored in f16.
    for v in &mut w.tensors.get_mut("cls_token").expect("cls").data {
        *v = 1e5;
    }
    let img = image::open("assets/images/chelsea.png")
        .expect("picture")
        .to_rgb8();
    let pre = preprocess(&img, Resize::ShorterSide(56), cfg.patch).expect("preprocess");
    let full = Vit::new_as(gpu, cfg.clone(), &w, DType::F32).expect("f32 model");
    assert!(dinoscope::infer::embed(gpu, &full, std::slice::from_ref(&pre)).is_ok());
    let half = Vit::new_as(gpu, cfg, &w, DType::F16).expect("f16 model");
    let err = dinoscope::infer::embed(gpu, &half, &[pre])
        .err()
        .expect("an error")
        .to_string();
    assert!(err.contains("f16") && err.contains("f32"), "{err}");
    // k-NN's features refuse the same way (they gave chance accuracy, and success).
    let set = std::env::temp_dir().join(format!("dinoscope-f16-knn-{}", std::process::id()));
    std::fs::create_dir_all(set.join("cat")).expect("mkdir");
    std::fs::copy("assets/images/chelsea.png", set.join("cat/chelsea.png")).expect("copy");
    let ds = dinoscope::data::dataset::ImageFolder::open(&set).expect("set");
    let err = dinoscope::train::knn::features(gpu, &half, &ds, 0, 56, 4).expect_err("an error");
    assert!(err.contains("f16") && err.contains("f32"), "{err}");
    let _ = std::fs::remove_dir_all(&set);
}

/// DINOv3's training-time rotary coordinate rescaling: with a factor per block, the forward
/// changes, and the analytic gradient along a random direction still matches central
/// differences of the forward with the same factors (so the backward rotates with each block's
/// own tables).
#[test]
fn rescaled_rope_gradient_matches_finite_differences() {
    let Some(gpu) = common::gpu() else { return };
    use dinoscope::model::vit::param_layout;
    use dinoscope::selftest::checks_random as random;
    use dinoscope::train::config::TrainConfig;
    let mut cfg = TrainConfig::preset("debug_v3").expect("preset").model;
    cfg.depth = 2;
    assert!(cfg.is_rope());
    let layout = param_layout(&cfg);
    let values = |seed: u64, lo: f32, hi: f32| -> std::collections::BTreeMap<String, Vec<f32>> {
        layout
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let v = if e.name.contains("norm") && e.name.ends_with("weight") && seed == 0 {
                    vec![1.0; e.numel()]
                } else {
                    random(e.numel(), seed + 300 + i as u64, lo, hi)
                };
                (e.name.clone(), v)
            })
            .collect()
    };
    let base = values(0, -0.3, 0.3);
    let dir = values(1000, -1.0, 1.0);
    let (b, side) = (2, 7 * cfg.patch);
    let px = random(b * 3 * side * side, 9, -1.0, 1.0);
    let n = 1 + cfg.registers + 49;
    let u = random(b * n * cfg.dim, 10, -1.0, 1.0);
    let scales = vec![1.7f32, 0.55];
    let shape = (b, side, side);
    assert_ne!(
        tokens_of(gpu, &cfg, &base, &px, shape, Some(scales.clone())),
        tokens_of(gpu, &cfg, &base, &px, shape, None),
        "the factors change nothing"
    );
    let (analytic, numeric) =
        directional_derivative(gpu, &cfg, (&base, &dir), &px, shape, &u, Some(scales), 3e-3);
    eprintln!("directional derivative: analytic {analytic:.5}, numeric {numeric:.5}");
    assert!(
        (analytic - numeric).abs() <= 2e-2 * numeric.abs().max(1.0),
        "analytic {analytic} vs numeric {numeric}"
    );
}

/// The browser's golden-model check (forward only, from bytes, as `web/test.sh` runs it)
/// compares every forward output of each fixture: one check for each tensor of its io file that
/// is not an input (nor the official code's offset table, which the gradient runs check), each
/// name checked once. The browser test holds its own count to the same.
#[test]
fn the_browsers_forward_check_compares_every_forward_tensor() {
    let Some(gpu) = common::gpu() else { return };
    let dir = common::fixtures_dir();
    let manifest = Manifest::load(&dir).expect("manifest");
    for model in ["tiny_dinov2", "tiny_dinov3"] {
        let read = |f: &str| std::fs::read(dir.join(model).join(f)).expect("fixture file");
        let io = dinoscope::fixtures::TensorFile::open(&dir.join(model).join("io.safetensors"))
            .expect("io file");
        let outputs = io
            .names()
            .iter()
            .filter(|n| !n.starts_with("input") && !n.contains("_official_"))
            .count();
        let config = String::from_utf8(read("config.json")).expect("utf-8 config");
        let r = pollster::block_on(dinoscope::selftest::check_model_forward(
            gpu,
            model,
            &config,
            &read("model.safetensors"),
            &read("io.safetensors"),
            &manifest,
        ));
        eprintln!("{} ({} tensors compared)", r.row(), r.compared);
        assert_eq!(r.status, Status::Pass, "{}", r.row());
        assert_eq!(r.compared, outputs, "{model}");
    }
}

/// Attention maps take the CLS row alone (memory linear in the tokens): the same values as
/// that row of the full probabilities, on a model with registers, at a wide grid.
#[test]
fn attention_maps_from_the_cls_row_equal_the_full_probabilities() {
    use dinoscope::data::image::{load_image, preprocess, Resize};
    use dinoscope::model::vit::{ForwardOptions, Vit};
    use dinoscope::model::weights::{config_for_weights, load_backbone};
    let Some(gpu) = common::gpu() else { return };
    let path = common::fixtures_dir().join("tiny_dinov2_reg/model.safetensors");
    let cfg = config_for_weights(&path).expect("config");
    assert!(cfg.registers > 0);
    let vit = Vit::new(
        gpu,
        cfg.clone(),
        &load_backbone(&path, &cfg).expect("weights"),
    )
    .expect("model");
    let photo = load_image(std::path::Path::new("assets/images/chelsea.png")).expect("photo");
    let img = preprocess(&photo, Resize::ShorterSide(56), cfg.patch).expect("preprocess");
    let layer = cfg.depth - 1;
    let view =
        pollster::block_on(dinoscope::infer::layer_view(gpu, &vit, &img, layer)).expect("view");
    // The full [1, H, N, N] probabilities of the same layer.
    let mut rec = dinoscope::gpu::Recorder::new(gpu);
    let pixels = gpu.upload(&img.data, &[1, 3, img.height, img.width]);
    let opts = ForwardOptions {
        attention_layers: vec![layer],
        ..Default::default()
    };
    let out = vit
        .forward(&mut rec, &pixels, 1, img.height, img.width, None, &opts)
        .expect("forward");
    rec.finish().expect("submit");
    let n = out.n_tokens;
    let probs = gpu.read(&out.attentions[0].1).expect("read");
    assert_eq!(probs.len(), cfg.heads * n * n);
    let (gh, gw) = view.grid;
    assert!(gw > gh && gh > 1, "grid {gh}×{gw}");
    assert_eq!(view.heads.len(), cfg.heads);
    for (h, map) in view.heads.iter().enumerate() {
        let row = &probs[h * n * n..h * n * n + n];
        assert_eq!(map.as_slice(), &row[1 + cfg.registers..], "head {h}");
        let mass: f32 = row.iter().sum();
        assert!(
            (mass - 1.0).abs() < 1e-4,
            "head {h}: the row sums to {mass}"
        );
    }
}
