//! The DINOv2 backbone against PyTorch/transformers: every forward output (tokens, pooler,
//! attention maps of every layer, hidden states, patch embeddings, resized position tables) at
//! every input resolution, and every parameter and pixel gradient, for the plain and the
//! register fixture models.

mod common;

use dinoscope::fixtures::Manifest;
use dinoscope::selftest::{run_model_case, Status};

fn parity(model: &str, min_compared: usize) {
    let Some(gpu) = common::gpu() else { return };
    let dir = common::fixtures_dir();
    let manifest = Manifest::load(&dir).expect("manifest");
    let r = run_model_case(gpu, &dir.join(model), &manifest, model);
    eprintln!("{} ({} tensors compared)", r.row(), r.compared);
    assert_eq!(r.status, Status::Pass, "{}", r.row());
    assert!(
        r.compared >= min_compared,
        "only {} tensors compared",
        r.compared
    );
}

// 33 forward tensors over four inputs (three resolutions and a masked run) and 118 gradients
// (pixels and every weight, for three runs): 151 in all.
#[test]
fn tiny_dinov2_matches_pytorch() {
    parity("tiny_dinov2", 151);
}

// The register model adds register tokens to the forward and their gradient to each run.
#[test]
fn tiny_dinov2_reg_matches_pytorch() {
    parity("tiny_dinov2_reg", 154);
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
