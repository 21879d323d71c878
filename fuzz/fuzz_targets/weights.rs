//! Safetensors weights: the header-only config inference and the full strict load.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.safetensors");
    if let Ok(cfg) = dinoscope::model::weights::infer_config_from_bytes(path, data) {
        let _ = dinoscope::model::weights::from_bytes(path, data, &cfg);
    }
});
