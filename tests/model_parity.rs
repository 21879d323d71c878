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
