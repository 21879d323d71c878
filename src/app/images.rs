//! Pictures for the UI: attention overlays, thresholded masks and PCA maps of one probe, and
//! their conversion to egui textures.

use crate::infer::LayerView;
use crate::viz::{self, Colormap};
use eframe::egui;
use image::RgbImage;

/// What a map shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum MapKind {
    /// The picture itself.
    Image,
    /// Mean CLS attention over heads, over the picture.
    Mean,
    /// One head's CLS attention, over the picture.
    Head(usize),
    /// The patches holding 60% of the mean attention mass.
    Thresholded,
    /// PCA colours of the patch features.
    Pca,
    /// Cosine similarity of every patch to one patch.
    Similarity(usize),
}

/// Share of attention mass the thresholded view keeps (as in the DINO paper).
pub const KEEP_MASS: f32 = 0.6;

/// A heat map over the picture: bilinear upsampling, inferno colours, `alpha` opacity.
pub fn heat_overlay(base: &RgbImage, map: &[f32], grid: (usize, usize), alpha: f32) -> RgbImage {
    let (w, h) = (base.width(), base.height());
    let up = viz::upsample_bilinear(map, grid.0, grid.1, h as usize, w as usize);
    viz::overlay(base, &viz::colorize(&up, w, h, Colormap::Inferno), alpha)
}

/// One map of a view drawn at the picture's size.
pub fn render(view: &LayerView, base: &RgbImage, kind: MapKind, alpha: f32) -> RgbImage {
    let grid = view.grid;
    match kind {
        MapKind::Image => base.clone(),
        MapKind::Mean => heat_overlay(base, &view.mean(), grid, alpha),
        MapKind::Head(i) => match view.heads.get(i) {
            Some(m) => heat_overlay(base, m, grid, alpha),
            None => base.clone(),
        },
        MapKind::Thresholded => viz::mask_overlay(
            base,
            &viz::threshold_mass(&view.mean(), KEEP_MASS),
            grid.1 as u32,
            grid.0 as u32,
            0.25,
        ),
        MapKind::Pca => match view.pca() {
            Ok(p) => image::imageops::resize(
                &p.rgb,
                base.width(),
                base.height(),
                image::imageops::FilterType::Nearest,
            ),
            Err(_) => RgbImage::new(base.width(), base.height()),
        },
        MapKind::Similarity(i) => {
            let (w, h) = (base.width(), base.height());
            let sim = view.similarity_to(i);
            let up = viz::upsample_nearest(&sim, grid.0, grid.1, h as usize, w as usize);
            viz::overlay(base, &viz::colorize(&up, w, h, Colormap::Viridis), alpha)
        }
    }
}

/// An RGB picture as an egui image.
pub fn to_color_image(img: &RgbImage) -> egui::ColorImage {
    egui::ColorImage::from_rgb([img.width() as usize, img.height() as usize], img.as_raw())
}

/// Loads a picture as a texture with nearest-neighbour magnification (patch maps stay crisp).
pub fn texture(ctx: &egui::Context, name: &str, img: &RgbImage) -> egui::TextureHandle {
    ctx.load_texture(name, to_color_image(img), egui::TextureOptions::NEAREST)
}
