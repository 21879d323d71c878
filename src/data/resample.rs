//! Catmull-Rom resampling of an 8-bit RGB window, the crops' hot loop.
//!
//! The result equals, bit for bit, cropping the window out and resizing it with the `image`
//! crate's `imageops::resize(…, FilterType::CatmullRom)`: the same weights (computed in the same
//! f32 operations), columns first into floats, then rows, each sum taken in the same order, and
//! the same clamp and round-half-away-from-zero to 8 bits. Training batches therefore do not
//! change; what changes is the cost: the window is read in place, three channels instead of four
//! go through the float pass, and rounding is two instructions rather than a library call.

use ::image::RgbImage;

/// Half-width of the Catmull-Rom kernel in source pixels (at a scale of 1).
const SUPPORT: f32 = 2.0;

/// The Catmull-Rom cubic (Mitchell–Netravali B = 0, C = 0.5) at `x`.
fn catmull_rom(x: f32) -> f32 {
    let a = x.abs();
    let k = if a < 1.0 {
        9.0 * a.powi(3) + -15.0 * a.powi(2) + 6.0
    } else if a < 2.0 {
        -3.0 * a.powi(3) + 15.0 * a.powi(2) + -24.0 * a + 12.0
    } else {
        0.0
    };
    k / 6.0
}

/// For each of `dst` output positions along an axis of `src` pixels: the first source pixel
/// used and the normalised weights of the pixels from there on.
struct Taps {
    /// First source pixel of each output position.
    first: Vec<usize>,
    /// Weights of each output position, in rows of `taps` (the longest span).
    weights: Vec<f32>,
    /// How many of each row's weights are used.
    counts: Vec<usize>,
    /// Row length of `weights`.
    taps: usize,
}

impl Taps {
    fn new(src: u32, dst: u32) -> Taps {
        let ratio = src as f32 / dst as f32;
        let sratio = if ratio < 1.0 { 1.0 } else { ratio };
        let support = SUPPORT * sratio;
        let mut spans = Vec::with_capacity(dst as usize);
        for out in 0..dst {
            let centre = (out as f32 + 0.5) * ratio;
            let left = ((centre - support).floor() as i64).clamp(0, i64::from(src) - 1);
            let right = ((centre + support).ceil() as i64).clamp(left + 1, i64::from(src));
            let centre = centre - 0.5;
            let mut ws: Vec<f32> = (left..right)
                .map(|i| catmull_rom((i as f32 - centre) / sratio))
                .collect();
            // Summed left to right before dividing, as the reference does.
            let mut sum = 0.0;
            for w in &ws {
                sum += w;
            }
            for w in &mut ws {
                *w /= sum;
            }
            spans.push((left as usize, ws));
        }
        let taps = spans.iter().map(|(_, w)| w.len()).max().unwrap_or(0);
        let mut t = Taps {
            first: Vec::with_capacity(spans.len()),
            weights: vec![0.0; spans.len() * taps],
            counts: Vec::with_capacity(spans.len()),
            taps,
        };
        for (o, (first, ws)) in spans.into_iter().enumerate() {
            t.first.push(first);
            t.counts.push(ws.len());
            t.weights[o * taps..o * taps + ws.len()].copy_from_slice(&ws);
        }
        t
    }

    fn at(&self, o: usize) -> (usize, &[f32]) {
        let w = &self.weights[o * self.taps..o * self.taps + self.counts[o]];
        (self.first[o], w)
    }
}

/// Clamps to 0..=255 and rounds halves away from zero: `v.round().clamp(0.0, 255.0) as u8`
/// without the library call.
pub(crate) fn round_u8(v: f32) -> u8 {
    let v = v.clamp(0.0, 255.0);
    let whole = v as u32;
    // `v − whole` is exact for these magnitudes.
    (whole + u32::from(v - whole as f32 >= 0.5)) as u8
}

/// A window of `src` resized to `width`×`height` with the Catmull-Rom filter.
///
/// The window is `(left, top, w, h)` and must lie inside `src` with `w, h ≥ 1`; an empty target
/// gives an empty picture.
pub fn resize_window(
    src: &RgbImage,
    (left, top, w, h): (u32, u32, u32, u32),
    width: u32,
    height: u32,
) -> RgbImage {
    if width == 0 || height == 0 {
        return RgbImage::new(width, height);
    }
    let stride = src.width() as usize * 3;
    let raw = src.as_raw();
    let (left, top, w) = (left as usize, top as usize, w as usize);
    if (w as u32, h) == (width, height) {
        let mut out = Vec::with_capacity(w * h as usize * 3);
        for y in 0..h as usize {
            let row = (top + y) * stride + left * 3;
            out.extend_from_slice(&raw[row..row + w * 3]);
        }
        return RgbImage::from_raw(width, height, out).unwrap_or_default();
    }
    // Columns first: h source rows → `height` float rows of the window's w pixels.
    let vertical = Taps::new(h, height);
    let mut mid = vec![0.0f32; w * 3 * height as usize];
    for (oy, row_out) in mid.chunks_exact_mut(w * 3).enumerate() {
        let (first, ws) = vertical.at(oy);
        for (k, &wt) in ws.iter().enumerate() {
            let row = (top + first + k) * stride + left * 3;
            for (acc, &v) in row_out.iter_mut().zip(&raw[row..row + w * 3]) {
                *acc += f32::from(v) * wt;
            }
        }
    }
    // Then rows: w float columns → `width` 8-bit pixels.
    let horizontal = Taps::new(w as u32, width);
    let mut out = vec![0u8; width as usize * height as usize * 3];
    for (row_in, row_out) in mid
        .chunks_exact(w * 3)
        .zip(out.chunks_exact_mut(width as usize * 3))
    {
        for (ox, px) in row_out.chunks_exact_mut(3).enumerate() {
            let (first, ws) = horizontal.at(ox);
            let mut t = [0.0f32; 3];
            for (k, &wt) in ws.iter().enumerate() {
                let p = &row_in[(first + k) * 3..(first + k) * 3 + 3];
                t[0] += p[0] * wt;
                t[1] += p[1] * wt;
                t[2] += p[2] * wt;
            }
            px.copy_from_slice(&t.map(round_u8));
        }
    }
    RgbImage::from_raw(width, height, out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::rng::Rng;
    use ::image::imageops::{self, FilterType};

    fn random_image(w: u32, h: u32, rng: &mut Rng) -> RgbImage {
        let raw = (0..w * h * 3).map(|_| rng.below(256) as u8).collect();
        RgbImage::from_raw(w, h, raw).expect("sized to fit")
    }

    /// The reference: the window copied out, then the `image` crate's resize.
    fn reference(src: &RgbImage, b: (u32, u32, u32, u32), width: u32, height: u32) -> RgbImage {
        let crop = imageops::crop_imm(src, b.0, b.1, b.2, b.3).to_image();
        imageops::resize(&crop, width, height, FilterType::CatmullRom)
    }

    #[test]
    fn equals_the_image_crate_bit_for_bit() {
        let mut rng = Rng::derive(7, &[1]);
        for case in 0..400 {
            let (sw, sh) = (1 + rng.below(60) as u32, 1 + rng.below(60) as u32);
            let src = random_image(sw, sh, &mut rng);
            let (w, h) = (
                1 + rng.below(sw as usize) as u32,
                1 + rng.below(sh as usize) as u32,
            );
            let (left, top) = (
                rng.below((sw - w) as usize + 1) as u32,
                rng.below((sh - h) as usize + 1) as u32,
            );
            // Shrinking, enlarging, one axis unchanged, and the same size.
            let (width, height) = match case % 4 {
                0 => (1 + rng.below(40) as u32, 1 + rng.below(40) as u32),
                1 => (w, 1 + rng.below(40) as u32),
                2 => (w, h),
                _ => (28, 28),
            };
            let b = (left, top, w, h);
            assert_eq!(
                resize_window(&src, b, width, height),
                reference(&src, b, width, height),
                "case {case}: {sw}×{sh} window {b:?} → {width}×{height}"
            );
        }
    }

    #[test]
    fn extreme_values_round_as_the_reference() {
        // Black and white edges overshoot with Catmull-Rom, so the clamp and the halves matter.
        let mut src = RgbImage::new(9, 7);
        for (x, _, p) in src.enumerate_pixels_mut() {
            p.0 = if x % 2 == 0 {
                [0, 255, 128]
            } else {
                [255, 0, 127]
            };
        }
        for (width, height) in [(4, 3), (13, 11), (2, 17), (9, 2)] {
            let b = (0, 0, 9, 7);
            assert_eq!(
                resize_window(&src, b, width, height),
                reference(&src, b, width, height)
            );
        }
    }

    #[test]
    fn rounding_matches_f32_round() {
        for bits in (0u32..=0x437f_0000)
            .step_by(997)
            .chain([0x3f00_0000, 0x3eff_ffff])
        {
            let v = f32::from_bits(bits);
            assert_eq!(round_u8(v), v.round() as u8, "{v}");
        }
        assert_eq!(round_u8(-3.0), 0);
        assert_eq!(round_u8(300.0), 255);
    }
}
