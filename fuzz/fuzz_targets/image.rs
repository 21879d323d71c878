//! Picture decoding (png, jpeg, webp; format sniffed) and preprocessing of what decodes.
#![no_main]

use dinoscope::data::image::{decode_image, preprocess, Resize};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(img) = decode_image(data, "fuzz.png") {
        let _ = preprocess(&img, Resize::ShorterSide(28), 14);
    }
});
