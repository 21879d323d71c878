//! DINOv2 multi-crop augmentation (two global crops and several local crops per image).
//!
//! Each step follows the torchvision transform on PIL images that DINOv2 trains with, including
//! PIL's 8-bit arithmetic: every operation reads and writes 8-bit RGB, so rounding happens where
//! the reference pipeline rounds. Only the final normalisation produces floats, channel-first and
//! with the ImageNet statistics.
//!
//! Per crop, in order: RandomResizedCrop (bicubic), horizontal flip, ColorJitter (applied as a
//! whole with `jitter_p`, its four parts in a random order), RandomGrayscale, Gaussian blur,
//! solarize (global crop 2 only by default), normalise.
//!
//! With `gram_size` set, each global crop's window and flip are also rendered at that size with
//! no colour, blur or solarize: the crops DINOv3's Gram teacher sees (`gram_teacher_crops_size`
//! with `gram_teacher_no_distortions`, as in its Gram-anchoring recipe). DINOv3 renders the
//! window once at the larger size and resizes that down to the global crop; here each crop is
//! rendered from the window directly, so the global crops are the same with or without it.

use ::image::imageops;
use ::image::RgbImage;

use crate::data::image::{IMAGENET_MEAN, IMAGENET_STD};
use crate::data::resample::{reduce_box, resize_window};

pub use crate::data::color::{
    adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation, grayscale, luma, solarize,
};
use crate::data::rng::Rng;

mod config;
pub use config::AugmentConfig;

/// Largest picture `eval_view` resizes to in one piece, in pixels (as `image::preprocess`).
const MAX_RESIZED_PIXELS: u128 = 1 << 26;

/// The crops of one image, each `[3, size, size]` channel-first and ImageNet-normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiCrop {
    /// Global crop 1 and global crop 2, `global_size`².
    pub globals: [Vec<f32>; 2],
    /// The local crops, `local_size`² each.
    pub locals: Vec<Vec<f32>>,
    /// The Gram teacher's crops of global crops 1 and 2, `gram_size`² (none when it is 0).
    pub gram: Vec<Vec<f32>>,
}

/// Which crop is being made, for the per-crop probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CropKind {
    /// Global crop 1: never solarized by default, blurred with `blur_p[0]`.
    Global1,
    /// Global crop 2: solarized with `solarize_p[1]`, blurred with `blur_p[1]`.
    Global2,
    /// A local crop: blurred with `blur_p[2]`, never solarized.
    Local,
}

/// A crop window in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropBox {
    /// First row.
    pub top: u32,
    /// First column.
    pub left: u32,
    /// Rows.
    pub height: u32,
    /// Columns.
    pub width: u32,
}

/// The crops of one image before normalisation, each `[3, size, size]` channel-first 8-bit.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiCropBytes {
    /// Global crop 1 and global crop 2, `global_size`².
    pub globals: [Vec<u8>; 2],
    /// The local crops, `local_size`² each.
    pub locals: Vec<Vec<u8>>,
    /// The Gram teacher's crops of global crops 1 and 2, `gram_size`² (none when it is 0).
    pub gram: Vec<Vec<u8>>,
}

/// Makes all crops of one image: global 1, global 2, then the locals, from one stream.
pub fn multi_crop(img: &RgbImage, cfg: &AugmentConfig, rng: &mut Rng) -> MultiCrop {
    let crops = multi_crop_bytes(img, cfg, rng);
    let plane = |side: usize| side * side;
    let [g1, g2] = &crops.globals;
    MultiCrop {
        globals: [
            normalize_bytes(g1, plane(cfg.global_size)),
            normalize_bytes(g2, plane(cfg.global_size)),
        ],
        locals: crops
            .locals
            .iter()
            .map(|l| normalize_bytes(l, plane(cfg.local_size)))
            .collect(),
        gram: crops
            .gram
            .iter()
            .map(|g| normalize_bytes(g, plane(cfg.gram_size)))
            .collect(),
    }
}

/// [`multi_crop`] without the final normalisation: the same crops as 8-bit channel-first
/// values, what the loader hands to training (a quarter of the floats' size).
///
/// A picture much larger than its crops need is first shrunk by an integer factor
/// ([`AugmentConfig::prefit_factor`]); the crop windows are drawn on the shrunk picture, with
/// the same draws, so they cover the same parts of it up to a pixel.
pub fn multi_crop_bytes(img: &RgbImage, cfg: &AugmentConfig, rng: &mut Rng) -> MultiCropBytes {
    let img = non_empty(img);
    let factor = cfg.prefit_factor(img.width(), img.height());
    let img = if factor > 1 {
        std::borrow::Cow::Owned(reduce_box(&img, factor))
    } else {
        img
    };
    let (g1, gram1) = augment_global(&img, CropKind::Global1, cfg, rng);
    let (g2, gram2) = augment_global(&img, CropKind::Global2, cfg, rng);
    let locals = (0..cfg.n_local)
        .map(|_| chw_bytes(&augment_crop(&img, CropKind::Local, cfg, rng)))
        .collect();
    MultiCropBytes {
        globals: [chw_bytes(&g1), chw_bytes(&g2)],
        locals,
        gram: gram1
            .into_iter()
            .chain(gram2)
            .map(|g| chw_bytes(&g))
            .collect(),
    }
}

/// A global crop and, with `gram_size` set, the Gram teacher's crop of the same window and
/// flip without distortions, from the same draws as [`augment_crop`] (so setting `gram_size`
/// changes no crop).
fn augment_global(
    img: &RgbImage,
    kind: CropKind,
    cfg: &AugmentConfig,
    rng: &mut Rng,
) -> (RgbImage, Option<RgbImage>) {
    if cfg.gram_size == 0 {
        return (augment_crop(img, kind, cfg, rng), None);
    }
    let mut gram = None;
    let crop = augment_crop_with(img, kind, cfg, rng, |img, window, flip| {
        let side = cfg.gram_size as u32;
        let mut g = resize_window(img, window, side, side);
        if flip {
            hflip(&mut g);
        }
        gram = Some(g);
    });
    (crop, gram)
}

/// One augmented crop as 8-bit RGB, before normalisation.
pub fn augment_crop(
    img: &RgbImage,
    kind: CropKind,
    cfg: &AugmentConfig,
    rng: &mut Rng,
) -> RgbImage {
    augment_crop_with(img, kind, cfg, rng, |_, _, _| {})
}

/// [`augment_crop`], handing `geometry` the picture it cropped, the crop's window (left, top,
/// width, height) and whether it was flipped, before the colour draws.
fn augment_crop_with(
    img: &RgbImage,
    kind: CropKind,
    cfg: &AugmentConfig,
    rng: &mut Rng,
    geometry: impl FnOnce(&RgbImage, (u32, u32, u32, u32), bool),
) -> RgbImage {
    let img = non_empty(img);
    let (size, scale, blur_p, solarize_p) = match kind {
        CropKind::Global1 => (
            cfg.global_size,
            cfg.global_scale,
            cfg.blur_p[0],
            cfg.solarize_p[0],
        ),
        CropKind::Global2 => (
            cfg.global_size,
            cfg.global_scale,
            cfg.blur_p[1],
            cfg.solarize_p[1],
        ),
        CropKind::Local => (cfg.local_size, cfg.local_scale, cfg.blur_p[2], 0.0),
    };
    // As `random_resized_crop`: a crop of side 0 draws no window.
    let window = (size > 0).then(|| {
        let b = random_resized_crop_box(img.width(), img.height(), scale, cfg.ratio, rng);
        (b.left, b.top, b.width, b.height)
    });
    let mut out = match window {
        Some(w) => resize_window(&img, w, size as u32, size as u32),
        None => RgbImage::new(0, 0),
    };
    let flip = rng.bernoulli(cfg.flip_p);
    if flip {
        hflip(&mut out);
    }
    if let Some(w) = window {
        geometry(&img, w, flip);
    }
    if rng.bernoulli(cfg.jitter_p) {
        color_jitter(&mut out, cfg, rng);
    }
    if rng.bernoulli(cfg.grayscale_p) {
        grayscale(&mut out);
    }
    if rng.bernoulli(blur_p) {
        let sigma = rng.range(cfg.blur_sigma.0, cfg.blur_sigma.1);
        gaussian_blur(&mut out, cfg.blur_kernel, sigma);
    }
    // Every crop draws here, so changing one probability does not shift the other crops' draws.
    if rng.bernoulli(solarize_p) {
        solarize(&mut out, 128);
    }
    out
}

/// A picture with no pixels becomes one black pixel, so crops never divide by zero.
fn non_empty(img: &RgbImage) -> std::borrow::Cow<'_, RgbImage> {
    if img.width() == 0 || img.height() == 0 {
        std::borrow::Cow::Owned(RgbImage::new(1, 1))
    } else {
        std::borrow::Cow::Borrowed(img)
    }
}

/// torchvision's RandomResizedCrop window: 10 tries of area fraction and log-uniform aspect,
/// then a centred crop with the aspect clamped into `ratio`.
pub fn random_resized_crop_box(
    width: u32,
    height: u32,
    scale: (f32, f32),
    ratio: (f32, f32),
    rng: &mut Rng,
) -> CropBox {
    let (w_img, h_img) = (f64::from(width), f64::from(height));
    let area = w_img * h_img;
    let (log_lo, log_hi) = (f64::from(ratio.0).ln(), f64::from(ratio.1).ln());
    for _ in 0..10 {
        let target_area = area * rng.range_f64(f64::from(scale.0), f64::from(scale.1));
        let aspect = rng.range_f64(log_lo, log_hi).exp();
        // Python's round() rounds halves to even.
        let w = (target_area * aspect).sqrt().round_ties_even();
        let h = (target_area / aspect).sqrt().round_ties_even();
        if w > 0.0 && w <= w_img && h > 0.0 && h <= h_img {
            let (w, h) = (w as u32, h as u32);
            let top = rng.below((height - h) as usize + 1) as u32;
            let left = rng.below((width - w) as usize + 1) as u32;
            return CropBox {
                top,
                left,
                height: h,
                width: w,
            };
        }
    }
    let in_ratio = w_img / h_img;
    let (lo, hi) = (f64::from(ratio.0), f64::from(ratio.1));
    let (w, h) = if in_ratio < lo.min(hi) {
        let h = (w_img / lo.min(hi)).round_ties_even().clamp(1.0, h_img);
        (width, h as u32)
    } else if in_ratio > lo.max(hi) {
        let w = (h_img * lo.max(hi)).round_ties_even().clamp(1.0, w_img);
        (w as u32, height)
    } else {
        (width, height)
    };
    CropBox {
        top: (height - h) / 2,
        left: (width - w) / 2,
        height: h,
        width: w,
    }
}

/// RandomResizedCrop: a random window resized to `size`×`size` with PIL's bicubic filter.
pub fn random_resized_crop(
    img: &RgbImage,
    size: usize,
    scale: (f32, f32),
    ratio: (f32, f32),
    rng: &mut Rng,
) -> RgbImage {
    if size == 0 {
        return RgbImage::new(0, 0);
    }
    let img = non_empty(img);
    let b = random_resized_crop_box(img.width(), img.height(), scale, ratio, rng);
    let size = size as u32;
    // Catmull-Rom widened when shrinking is PIL's antialiased bicubic, what torchvision uses.
    resize_window(&img, (b.left, b.top, b.width, b.height), size, size)
}

/// Mirrors left and right.
pub fn hflip(img: &mut RgbImage) {
    imageops::flip_horizontal_in_place(img);
}

/// torchvision's ColorJitter: brightness, contrast, saturation and hue factors drawn from the
/// config's strengths and applied in a random order; a strength of 0 skips that part.
pub fn color_jitter(img: &mut RgbImage, cfg: &AugmentConfig, rng: &mut Rng) {
    let mut order = [0usize, 1, 2, 3];
    rng.shuffle(&mut order);
    let factor = |rng: &mut Rng, strength: f32| {
        (strength > 0.0).then(|| rng.range((1.0 - strength).max(0.0), 1.0 + strength))
    };
    let brightness = factor(rng, cfg.brightness);
    let contrast = factor(rng, cfg.contrast);
    let saturation = factor(rng, cfg.saturation);
    let hue = (cfg.hue > 0.0).then(|| rng.range(-cfg.hue, cfg.hue));
    for op in order {
        match (op, brightness, contrast, saturation, hue) {
            (0, Some(f), ..) => adjust_brightness(img, f),
            (1, _, Some(f), ..) => adjust_contrast(img, f),
            (2, _, _, Some(f), _) => adjust_saturation(img, f),
            (3, .., Some(h)) => adjust_hue(img, h),
            _ => {}
        }
    }
}

/// Reflect-pads an index into `0..n` without repeating the edge (PyTorch's "reflect").
fn reflect(i: isize, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let m = i.rem_euclid(period);
    if m >= n as isize {
        (period - m) as usize
    } else {
        m as usize
    }
}

/// torchvision's GaussianBlur: a `kernel`-wide normalised Gaussian of std `sigma` on each axis,
/// reflect padding, rounded back to 8 bits.
pub fn gaussian_blur(img: &mut RgbImage, kernel: usize, sigma: f32) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if kernel <= 1 || w == 0 || h == 0 || sigma.is_nan() || sigma <= 0.0 {
        return;
    }
    let weights = blur_weights(kernel, sigma);
    let r = (kernel / 2) as isize;
    // Rows first into a float buffer, then columns, rounding only once at the end as the
    // reference (one float convolution, then a cast) does. Each sum runs over the taps in order
    // from 0.0, so a tap at a time over a whole (padded) row gives the same values while the
    // inner loops run over contiguous memory.
    let row_len = w * 3;
    let mut rows = vec![0.0f32; row_len * h];
    let mut padded = vec![0.0f32; (w + kernel - 1) * 3];
    for (src, acc) in img
        .as_raw()
        .chunks_exact(row_len)
        .zip(rows.chunks_exact_mut(row_len))
    {
        for (p, out) in padded.chunks_exact_mut(3).enumerate() {
            let x = reflect(p as isize - r, w);
            for (o, &v) in out.iter_mut().zip(&src[x * 3..x * 3 + 3]) {
                *o = f32::from(v);
            }
        }
        for (k, &wt) in weights.iter().enumerate() {
            for (a, &v) in acc.iter_mut().zip(&padded[k * 3..k * 3 + row_len]) {
                *a += wt * v;
            }
        }
    }
    let mut acc = vec![0.0f32; row_len];
    for (y, out) in img.as_mut().chunks_exact_mut(row_len).enumerate() {
        acc.fill(0.0);
        for (k, &wt) in weights.iter().enumerate() {
            let yy = reflect(y as isize + k as isize - r, h);
            for (a, &v) in acc.iter_mut().zip(&rows[yy * row_len..(yy + 1) * row_len]) {
                *a += wt * v;
            }
        }
        for (o, &a) in out.iter_mut().zip(&acc) {
            *o = round_ties_even_u8(a);
        }
    }
}

/// The blur's normalised weights.
fn blur_weights(kernel: usize, sigma: f32) -> Vec<f32> {
    let half = (kernel - 1) as f32 * 0.5;
    let mut weights: Vec<f32> = (0..kernel)
        .map(|k| {
            let x = (k as f32 - half) / sigma;
            (-0.5 * x * x).exp()
        })
        .collect();
    let total: f32 = weights.iter().sum();
    for wt in &mut weights {
        *wt /= total;
    }
    weights
}

/// `v.round_ties_even().clamp(0.0, 255.0) as u8` without the library call.
fn round_ties_even_u8(v: f32) -> u8 {
    let v = v.clamp(0.0, 255.0);
    let whole = v as u32;
    // `v − whole` is exact for these magnitudes.
    let frac = v - whole as f32;
    let up = frac > 0.5 || (frac == 0.5 && whole % 2 == 1);
    (whole + u32::from(up)).min(255) as u8
}

/// Each channel's normalised value of each 8-bit value (what `normalize_chw` computes per pixel).
static NORMALIZED: std::sync::LazyLock<[[f32; 256]; 3]> = std::sync::LazyLock::new(|| {
    std::array::from_fn(|c| {
        std::array::from_fn(|v| (v as f32 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c])
    })
});

/// The normalised value of every 8-bit value, channel by channel (`[3, 256]`): the table the
/// GPU looks crops up in (`kernels::gather::lookup_bytes`).
pub fn normalization_table() -> Vec<f32> {
    NORMALIZED.iter().flatten().copied().collect()
}

/// A picture as channel-first 8-bit values (`[3, H, W]`).
pub fn chw_bytes(img: &RgbImage) -> Vec<u8> {
    let plane = img.width() as usize * img.height() as usize;
    let mut out = vec![0u8; 3 * plane];
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (i, p) in img.pixels().enumerate() {
        r[i] = p[0];
        g[i] = p[1];
        b[i] = p[2];
    }
    out
}

/// Channel-first 8-bit values (planes of `plane` values, the channels cycling through R, G, B)
/// normalised as [`normalize_chw`] does.
pub fn normalize_bytes(chw: &[u8], plane: usize) -> Vec<f32> {
    let table = &*NORMALIZED;
    chw.chunks(plane.max(1))
        .enumerate()
        .flat_map(|(k, values)| values.iter().map(move |&v| table[k % 3][usize::from(v)]))
        .collect()
}

/// `[3, H, W]` channel-first floats: pixels scaled to [0, 1], minus the ImageNet mean, over
/// its standard deviation.
pub fn normalize_chw(img: &RgbImage) -> Vec<f32> {
    let plane = img.width() as usize * img.height() as usize;
    normalize_bytes(&chw_bytes(img), plane)
}

/// Offset of a centred window of `kept` in `total`, halves rounded to even like Python's round.
fn centre_offset(total: u32, kept: u32) -> u32 {
    let diff = total.saturating_sub(kept);
    let half = diff / 2;
    if diff % 2 == 1 && half % 2 == 1 {
        half + 1
    } else {
        half
    }
}

/// The evaluation view: shorter side to round(size·256/224), centre `size`×`size` crop, CHW
/// ImageNet-normalised (`[3, size, size]`).
pub fn eval_view(img: &RgbImage, size: usize) -> Vec<f32> {
    if size == 0 {
        return Vec::new();
    }
    let img = non_empty(img);
    let (w, h) = (u128::from(img.width()), u128::from(img.height()));
    let short_target = (size as f64 * 256.0 / 224.0).round().max(1.0) as u128;
    // The longer side is truncated, as torchvision's Resize(n) does.
    let (rw, rh) = if w <= h {
        (short_target, h * short_target / w)
    } else {
        (w * short_target / h, short_target)
    };
    let size32 = size as u32;
    let view = if rw * rh <= MAX_RESIZED_PIXELS {
        let (rw, rh) = (rw as u32, rh as u32);
        let resized_owned;
        let resized = if (rw, rh) == img.dimensions() {
            img.as_ref()
        } else {
            resized_owned = resize_window(&img, (0, 0, img.width(), img.height()), rw, rh);
            &resized_owned
        };
        let (x, y) = (centre_offset(rw, size32), centre_offset(rh, size32));
        imageops::crop_imm(resized, x, y, size32.min(rw), size32.min(rh)).to_image()
    } else {
        // A very thin strip would need a huge intermediate picture. Cropping the same centre
        // square from the source first and resizing only that gives nearly the same view.
        let short = w.min(h) as f64;
        let side = (short * size as f64 / short_target as f64).round().max(1.0) as u32;
        let (iw, ih) = img.dimensions();
        let side = side.min(iw).min(ih);
        let window = (centre_offset(iw, side), centre_offset(ih, side), side, side);
        resize_window(&img, window, size32, size32)
    };
    normalize_chw(&view)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blur one output value at a time, as first written: the reference for the
    /// tap-at-a-time version.
    fn blur_per_pixel(img: &mut RgbImage, kernel: usize, sigma: f32) {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let weights = blur_weights(kernel, sigma);
        let r = (kernel / 2) as isize;
        let src: Vec<f32> = img.as_raw().iter().map(|&v| f32::from(v)).collect();
        let mut rows = vec![0.0f32; src.len()];
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let mut acc = 0.0;
                    for (k, wt) in weights.iter().enumerate() {
                        let xx = reflect(x as isize + k as isize - r, w);
                        acc += wt * src[(y * w + xx) * 3 + c];
                    }
                    rows[(y * w + x) * 3 + c] = acc;
                }
            }
        }
        let out = img.as_mut();
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let mut acc = 0.0;
                    for (k, wt) in weights.iter().enumerate() {
                        let yy = reflect(y as isize + k as isize - r, h);
                        acc += wt * rows[(yy * w + x) * 3 + c];
                    }
                    out[(y * w + x) * 3 + c] = acc.round_ties_even().clamp(0.0, 255.0) as u8;
                }
            }
        }
    }

    #[test]
    fn blur_equals_the_per_pixel_convolution_bit_for_bit() {
        let mut rng = Rng::derive(3, &[9]);
        for case in 0..200 {
            let (w, h) = (1 + rng.below(40) as u32, 1 + rng.below(40) as u32);
            let raw = (0..w * h * 3).map(|_| rng.below(256) as u8).collect();
            let img = RgbImage::from_raw(w, h, raw).expect("sized to fit");
            let kernel = [3, 5, 9, 23][case % 4];
            let sigma = rng.range(0.1, 2.0);
            let (mut fast, mut slow) = (img.clone(), img);
            gaussian_blur(&mut fast, kernel, sigma);
            blur_per_pixel(&mut slow, kernel, sigma);
            assert_eq!(
                fast, slow,
                "case {case}: {w}×{h}, kernel {kernel}, σ {sigma}"
            );
        }
    }

    #[test]
    fn ties_round_to_even() {
        for bits in (0u32..=0x437f_0000)
            .step_by(991)
            .chain([0x3f00_0000, 0x3fc0_0000])
        {
            let v = f32::from_bits(bits);
            assert_eq!(round_ties_even_u8(v), v.round_ties_even() as u8, "{v}");
        }
        assert_eq!(round_ties_even_u8(255.4), 255);
        assert_eq!(round_ties_even_u8(-1.0), 0);
    }

    #[test]
    fn only_pictures_far_larger_than_their_crops_are_shrunk_first() {
        // DINOv2's crops (224 / 98 px, 32% / 5% of the area at least).
        let dinov2 = AugmentConfig::default();
        let small = AugmentConfig {
            global_size: 28,
            global_scale: (0.8, 1.0),
            n_local: 0,
            ..AugmentConfig::default()
        };
        assert_eq!(small.prefit_factor(28, 28), 1);
        assert_eq!(small.prefit_factor(112, 112), 1);
        assert_eq!(small.prefit_factor(224, 224), 3);
        // The bundled photos and their like keep their pixels.
        assert_eq!(dinov2.prefit_factor(512, 384), 1);
        assert_eq!(dinov2.prefit_factor(1600, 1200), 1);
        // A 12-megapixel photo: the local crops (5% of the area, ratio 4/3) decide.
        assert_eq!(dinov2.prefit_factor(4032, 3024), 3);
        // A panorama: its short side (the fallback window) decides.
        assert_eq!(dinov2.prefit_factor(20000, 1400), 3);
        assert_eq!(dinov2.prefit_factor(0, 0), 1);
    }

    #[test]
    fn after_the_shrink_every_window_is_at_least_twice_its_crop() {
        let mut rng = Rng::derive(11, &[3]);
        for case in 0..300 {
            let mut cfg = AugmentConfig {
                global_size: 8 + rng.below(120),
                local_size: 4 + rng.below(60),
                n_local: rng.below(3),
                ..AugmentConfig::default()
            };
            cfg.global_scale.0 = rng.range(0.05, 1.0);
            cfg.local_scale.0 = rng.range(0.01, 0.32);
            cfg.ratio = (rng.range(0.3, 1.0), rng.range(1.0, 3.0));
            let (w, h) = (1 + rng.below(5000) as u32, 1 + rng.below(5000) as u32);
            let f = cfg.prefit_factor(w, h);
            if f == 1 {
                continue;
            }
            let (sw, sh) = (w.div_ceil(f), h.div_ceil(f));
            let mut kinds = vec![(cfg.global_size, cfg.global_scale)];
            if cfg.n_local > 0 {
                kinds.push((cfg.local_size, cfg.local_scale));
            }
            for (size, scale) in kinds {
                for _ in 0..20 {
                    let b = random_resized_crop_box(sw, sh, scale, cfg.ratio, &mut rng);
                    assert!(
                        b.width.min(b.height) as usize >= 2 * size,
                        "case {case}: {w}×{h} / {f}: window {b:?} for a crop of {size}"
                    );
                }
            }
        }
    }

    #[test]
    fn shrinking_first_crops_the_same_parts_of_the_picture() {
        // A smooth picture, so a window moved by a pixel looks the same.
        let (w, h) = (1500u32, 1100u32);
        let img = RgbImage::from_fn(w, h, |x, y| {
            let (x, y) = (x as f32, y as f32);
            ::image::Rgb([
                (128.0 + 100.0 * (x / 291.0).sin() * (y / 183.0).cos()) as u8,
                (128.0 + 90.0 * (x / 159.0 + y / 420.0).cos()) as u8,
                (128.0 + 80.0 * (y / 135.0).sin()) as u8,
            ])
        });
        let cfg = AugmentConfig {
            global_size: 96,
            local_size: 40,
            n_local: 4,
            ..AugmentConfig::default()
        };
        assert_eq!(cfg.prefit_factor(w, h), 3);
        let mut worst = 0.0f64;
        for seed in 0..8 {
            let shrunk = multi_crop_bytes(&img, &cfg, &mut Rng::derive(seed, &[0]));
            // The loader hands over pictures already shrunk (while decoding); they are not
            // shrunk again, so the crops are the same.
            let early = multi_crop_bytes(&reduce_box(&img, 3), &cfg, &mut Rng::derive(seed, &[0]));
            assert_eq!(early, shrunk);
            // The same draws on the full picture, crop by crop.
            let mut rng = Rng::derive(seed, &[0]);
            let mut full = vec![
                chw_bytes(&augment_crop(&img, CropKind::Global1, &cfg, &mut rng)),
                chw_bytes(&augment_crop(&img, CropKind::Global2, &cfg, &mut rng)),
            ];
            for _ in 0..cfg.n_local {
                full.push(chw_bytes(&augment_crop(
                    &img,
                    CropKind::Local,
                    &cfg,
                    &mut rng,
                )));
            }
            let shrunk: Vec<&Vec<u8>> = shrunk.globals.iter().chain(&shrunk.locals).collect();
            for (a, b) in shrunk.iter().zip(&full) {
                let mad = a
                    .iter()
                    .zip(b.iter())
                    .map(|(&p, &q)| f64::from(p.abs_diff(q)))
                    .sum::<f64>()
                    / a.len() as f64;
                worst = worst.max(mad);
            }
        }
        eprintln!("worst mean absolute difference: {worst:.2}");
        assert!(
            worst < 3.0,
            "a crop moved: mean absolute difference {worst:.2}"
        );
    }
}
