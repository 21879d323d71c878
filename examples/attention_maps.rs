//! Attention and PCA maps of a photo, written as PNG files.
//!
//! ```sh
//! cargo run --release --example attention_maps -- [WEIGHTS] [IMAGE] [OUT_DIR]
//! ```
//! WEIGHTS defaults to the small random test model (its maps are noise); pass
//! facebook/dinov2-with-registers-small's `model.safetensors` (with its config.json beside it)
//! to see real DINOv2 attention. IMAGE defaults to the bundled cat photo.

use dinoscope::data::image::{load_image, preprocess, Resize};
use dinoscope::gpu::{AdapterChoice, Gpu};
use dinoscope::infer::attention_maps;
use dinoscope::model::vit::Vit;
use dinoscope::model::weights::{config_for_weights, load_backbone};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let weights = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "tests/fixtures/tiny_dinov2_reg/model.safetensors".into()),
    );
    let image = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "assets/images/chelsea.png".into()),
    );
    let out = PathBuf::from(args.next().unwrap_or_else(|| "attention_maps".into()));

    let gpu = Gpu::new_blocking(&AdapterChoice::from_env())?;
    let cfg = config_for_weights(&weights)?;
    let vit = Vit::new(&gpu, cfg.clone(), &load_backbone(&weights, &cfg)?)?;
    println!(
        "{} on {} ({:?})",
        weights.display(),
        gpu.info.name,
        gpu.info.backend
    );

    // DINO's recipe: the shorter side resized, then cropped to whole patches.
    let img = preprocess(&load_image(&image)?, Resize::ShorterSide(448), cfg.patch)?;
    let maps = attention_maps(&gpu, &vit, &img, None, 0.6)?;

    std::fs::create_dir_all(&out)?;
    dinoscope::viz::save_png(&maps.mean_overlay, &out.join("mean_overlay.png"))?;
    dinoscope::viz::save_png(
        &dinoscope::viz::tile_images(&maps.heads, 3),
        &out.join("heads.png"),
    )?;
    dinoscope::viz::save_png(
        &dinoscope::viz::tile_images(&maps.heads_thresholded, 3),
        &out.join("heads_threshold.png"),
    )?;
    dinoscope::viz::save_png(&maps.pca, &out.join("pca.png"))?;
    println!(
        "{}×{} patches → {}",
        maps.grid.0,
        maps.grid.1,
        out.display()
    );
    Ok(())
}
