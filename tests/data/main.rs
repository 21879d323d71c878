//! Data pipeline tests (no GPU): the PRNG, datasets, augmentation, iBOT masks and the loader, a
//! module each.

mod augment;
mod datasets;
mod loader;
mod masks;
mod rng;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dinoscope::data::augment::{
    adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation, augment_crop, color_jitter,
    eval_view, gaussian_blur, grayscale, hflip, multi_crop, normalize_chw, random_resized_crop_box,
    solarize, AugmentConfig, CropKind,
};
use dinoscope::data::dataset::{
    fashion_mnist_bundled, open_dataset, DataError, Dataset, IdxDataset, ImageFolder, InMemoryGrey,
    FASHION_MNIST_CLASSES,
};
use dinoscope::data::image::{IMAGENET_MEAN, IMAGENET_STD};
use dinoscope::data::loader::{build_batch, Batch, Loader, LoaderConfig, MASK_STREAM};
use dinoscope::data::masks::{
    batch_masks, batch_masks_with_targets, mask_upperbound, mask_weights, masked_crop_count,
    MaskingGenerator,
};
use dinoscope::data::rng::Rng;
use image::{Rgb, RgbImage};

fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/fashion_mnist")
}

/// A fresh scratch folder for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dinoscope-data-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A picture whose every pixel differs: red follows x, green follows y, blue mixes both.
fn gradient(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([
            (x * 255 / w.max(2).saturating_sub(1).max(1)).min(255) as u8,
            (y * 255 / h.max(2).saturating_sub(1).max(1)).min(255) as u8,
            ((x * 7 + y * 13) % 256) as u8,
        ])
    })
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A folder with classes `cat` (3 pictures) and `dog` (2 + one broken file).
fn class_folder(name: &str) -> PathBuf {
    let dir = scratch(name);
    for (class, n) in [("dog", 2u32), ("cat", 3)] {
        let sub = dir.join(class);
        std::fs::create_dir_all(&sub).unwrap();
        for i in 0..n {
            gradient(20 + i, 16 + 2 * i)
                .save(sub.join(format!("{class}{i}.png")))
                .unwrap();
        }
    }
    std::fs::write(dir.join("dog/broken.png"), b"\x89PNG not really").unwrap();
    std::fs::write(dir.join("dog/readme.txt"), b"ignored").unwrap();
    std::fs::write(dir.join("cat/.hidden.png"), b"ignored").unwrap();
    dir
}

fn small_config() -> AugmentConfig {
    AugmentConfig {
        global_size: 32,
        local_size: 16,
        n_local: 3,
        ..AugmentConfig::default()
    }
}
