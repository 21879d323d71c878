//! IDX files (plain or gzip), images alone or with labels (the input split at its first byte).
#![no_main]

use dinoscope::data::dataset::InMemoryGrey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let at = (split as usize * rest.len() / 255).min(rest.len());
    let (images, labels) = rest.split_at(at);
    if labels.is_empty() {
        let _ = InMemoryGrey::from_idx_bytes(images, "images", None);
    } else {
        let _ = InMemoryGrey::from_idx_bytes(images, "images", Some((labels, "labels")));
    }
});
