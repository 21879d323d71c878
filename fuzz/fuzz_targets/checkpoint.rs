//! Checkpoint state files: metadata (step, training config) and tensors.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dinoscope::train::checkpoint::state_from_bytes(
        std::path::Path::new("state.safetensors"),
        data,
    );
});
