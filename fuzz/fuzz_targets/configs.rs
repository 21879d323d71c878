//! Configs: training configs (RON), backbone configs (RON) and Hugging Face config.json.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match kind % 3 {
        0 => {
            let _ = dinoscope::train::config::TrainConfig::from_ron(text, "fuzz.ron");
        }
        1 => {
            let _ = dinoscope::model::config::VitConfig::from_ron(text, "fuzz.ron");
        }
        _ => {
            let _ = dinoscope::model::config::VitConfig::from_hf_json(text, "config.json");
        }
    }
});
