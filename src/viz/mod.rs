//! What the model sees: CLS attention maps and PCA maps of patch features, as images.
//!
//! Everything here runs on the CPU from values already read back from the GPU: the last
//! layer's attention probabilities (spec §7.1) and the final patch features (spec §7.2).
//! Maps are row-major `f32` slices over the patch grid; pictures are [`image::RgbImage`].
//! Only [`save_png`] touches the file system, so the rest works unchanged in the browser.

mod attention;
mod color;
mod pca;

pub use attention::{
    cls_attention, head_mean, threshold_mass, upsample_bilinear, upsample_nearest,
};
pub use color::{colorize, mask_overlay, overlay, Colormap};
pub use pca::{pca_rgb, PcaMaps};

use image::{ImageFormat, Rgb, RgbImage};
use std::path::{Path, PathBuf};

/// Why a visualization could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum VizError {
    /// Inputs whose sizes do not fit together, or values that cannot be drawn.
    #[error("{0}")]
    Shape(String),
    /// Encoding or writing a PNG failed.
    #[error("could not write {}: {source}", path.display())]
    Write {
        /// The file that was being written.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: image::ImageError,
    },
}

/// Write `img` to `path` as a PNG, whatever the file's extension says; atomically, so a full
/// disk leaves the previous file (or none), never a truncated one.
pub fn save_png(img: &RgbImage, path: &Path) -> Result<(), VizError> {
    let failed = |source| VizError::Write {
        path: path.to_path_buf(),
        source,
    };
    let png = png_bytes(img).map_err(failed)?;
    crate::io::write_atomic(path, &png).map_err(|e| failed(image::ImageError::IoError(e)))
}

/// An image encoded as PNG, in memory (to write several files all or none).
pub fn png_bytes(img: &RgbImage) -> Result<Vec<u8>, image::ImageError> {
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), ImageFormat::Png)?;
    Ok(png)
}

/// Pixels of white between tiles, so dark-edged maps of neighbouring heads stay apart.
const TILE_GAP: u32 = 2;

/// Lay images out left to right, top to bottom, `cols` per row (at least one), in cells the
/// size of the largest image with a white gap between cells; an empty list gives a 0×0 image.
pub fn tile_images(images: &[RgbImage], cols: usize) -> RgbImage {
    if images.is_empty() {
        return RgbImage::new(0, 0);
    }
    let cols = cols.clamp(1, images.len());
    let rows = images.len().div_ceil(cols);
    let cell_w = images.iter().map(|i| i.width()).max().unwrap_or(0);
    let cell_h = images.iter().map(|i| i.height()).max().unwrap_or(0);
    let extent = |cells: usize, cell: u32| -> u32 {
        let cells = u32::try_from(cells).unwrap_or(u32::MAX);
        cells
            .saturating_mul(cell)
            .saturating_add(cells.saturating_sub(1).saturating_mul(TILE_GAP))
    };
    let mut out = RgbImage::from_pixel(
        extent(cols, cell_w),
        extent(rows, cell_h),
        Rgb([255, 255, 255]),
    );
    for (k, img) in images.iter().enumerate() {
        let x0 = u32::try_from(k % cols)
            .unwrap_or(u32::MAX)
            .saturating_mul(cell_w.saturating_add(TILE_GAP));
        let y0 = u32::try_from(k / cols)
            .unwrap_or(u32::MAX)
            .saturating_mul(cell_h.saturating_add(TILE_GAP));
        for (x, y, p) in img.enumerate_pixels() {
            let (tx, ty) = (x0.saturating_add(x), y0.saturating_add(y));
            if tx < out.width() && ty < out.height() {
                out.put_pixel(tx, ty, *p);
            }
        }
    }
    out
}
