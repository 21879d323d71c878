//! Opt-in: the real facebook/dinov2-small (or any DINOv2 safetensors) when
//! DINOSCOPE_DINOV2_SMALL points at its folder or its model.safetensors. Weights cannot be
//! downloaded in CI, so without the variable this test says so and does nothing.

mod common;

use dinoscope::data::image::{load_image, preprocess, Resize};
use dinoscope::model::vit::Vit;
use dinoscope::model::weights::{config_for_weights, load_backbone};
use std::path::PathBuf;

#[test]
fn real_dinov2_runs_and_gives_sane_features() {
    let Ok(path) = std::env::var("DINOSCOPE_DINOV2_SMALL") else {
        eprintln!("DINOSCOPE_DINOV2_SMALL is not set: the real-weights test does not run");
        return;
    };
    let Some(gpu) = common::gpu() else { return };
    let mut path = PathBuf::from(path);
    if path.is_dir() {
        path = path.join("model.safetensors");
    }
    let cfg = config_for_weights(&path).expect("config");
    let weights = load_backbone(&path, &cfg).expect("weights load unchanged");
    let expected = if cfg.registers > 0 {
        22_058_112
    } else {
        22_056_576
    };
    if cfg.dim == 384 {
        assert_eq!(weights.num_params(), expected);
    }
    let vit = Vit::new(gpu, cfg.clone(), &weights).expect("model");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let imgs: Vec<_> = ["chelsea.png", "coffee.png"]
        .iter()
        .map(|f| {
            preprocess(
                &load_image(&root.join("assets/images").join(f)).expect("photo"),
                Resize::CenterCrop(224),
                14,
            )
            .expect("pre")
        })
        .collect();
    let e = dinoscope::infer::embed(gpu, &vit, &imgs).expect("embed");
    let d = cfg.dim;
    assert!(e.cls.iter().all(|v| v.is_finite()));
    let cos = |a: &[f32], b: &[f32]| {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        dot / (a.iter().map(|x| x * x).sum::<f32>().sqrt()
            * b.iter().map(|x| x * x).sum::<f32>().sqrt())
    };
    // Two unrelated photos are far from identical in feature space.
    let c = cos(&e.cls[..d], &e.cls[d..]);
    eprintln!("cosine(cat, coffee) of the CLS features: {c}");
    assert!(c < 0.95);
    let maps = dinoscope::infer::attention_maps(gpu, &vit, &imgs[0], None, 0.6).expect("maps");
    assert_eq!(maps.raw.len(), cfg.heads);
}
