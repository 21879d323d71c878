//! Model configs and backbone weights: presets, Hugging Face and RON configs (`configs`),
//! safetensors loading under every naming, writing, error reports and config inference
//! (`weights`). No GPU needed.

mod configs;
mod weights;

use dinoscope::cpu::interp::InterpMode;
use dinoscope::fixtures::{HostTensor, TensorFile};
use dinoscope::model::config::{ConfigError, Ffn, VitConfig, PRESETS};
use dinoscope::model::weights::{
    config_and_source, config_for_weights, expected_tensors, from_bytes, hub_safetensors_bytes,
    infer_config, infer_config_from_bytes, load_backbone, save_hub_safetensors, BackboneWeights,
    Naming, WeightsError,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(dir: &str, file: &str) -> PathBuf {
    root().join("tests/fixtures").join(dir).join(file)
}

fn fixture_config(dir: &str) -> VitConfig {
    VitConfig::load(&fixture(dir, "config.json")).expect("fixture config")
}

/// A fresh, empty temporary folder for one test.
fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dinoscope_model_io_{}_{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn same(a: &HostTensor, b: &HostTensor) -> bool {
    a.shape == b.shape
        && a.data.len() == b.data.len()
        && a.data
            .iter()
            .zip(&b.data)
            .all(|(x, y)| x.to_bits() == y.to_bits())
}

fn assert_same_weights(a: &BackboneWeights, b: &BackboneWeights) {
    assert_eq!(
        a.tensors.keys().collect::<Vec<_>>(),
        b.tensors.keys().collect::<Vec<_>>()
    );
    for (name, t) in &a.tensors {
        assert!(same(t, &b.tensors[name]), "{name} differs");
    }
}
