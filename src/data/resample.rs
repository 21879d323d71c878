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

/// Exact division of 32-bit values by a fixed divisor with one multiplication (Lemire, Kaser
/// and Kurz, "Faster remainder by direct computation", 2019): ⌊x·⌈2⁶⁴/d⌉ / 2⁶⁴⌋ = ⌊x/d⌋.
#[derive(Clone, Copy)]
struct Divisor {
    d: u32,
    m: u64,
}

impl Divisor {
    fn new(d: u32) -> Divisor {
        let d = d.max(1);
        // ⌈2⁶⁴/d⌉ does not fit for d = 1, which `of` handles apart.
        let m = if d == 1 {
            0
        } else {
            u64::MAX / u64::from(d) + 1
        };
        Divisor { d, m }
    }

    fn of(self, x: u32) -> u32 {
        if self.d == 1 {
            x
        } else {
            ((u128::from(self.m) * u128::from(x)) >> 64) as u32
        }
    }
}

/// `src` shrunk by an integer `factor`: each output pixel is the mean of a `factor`×`factor`
/// block, rounded half up (PIL's `Image.reduce`). Blocks at the right and bottom edges that the
/// picture only partly covers average the pixels they have, so the result is
/// ⌈width / factor⌉ × ⌈height / factor⌉. A factor of 0 or 1 returns a copy.
pub fn reduce_box(src: &RgbImage, factor: u32) -> RgbImage {
    if factor <= 1 {
        return src.clone();
    }
    reduce_box_raw(src.as_raw(), src.width(), src.height(), factor)
}

/// [`reduce_box`] of packed 8-bit RGB pixels, `width`×`height` (`raw` holds at least that
/// many), by a factor of at least 1.
pub fn reduce_box_raw(raw: &[u8], width: u32, height: u32, factor: u32) -> RgbImage {
    let (w, h) = (width as usize, height as usize);
    let f = factor.max(1) as usize;
    let (ow, oh) = (w.div_ceil(f), h.div_ceil(f));
    let mut out = Vec::with_capacity(ow * oh * 3);
    // A band's column sums fit 16 bits up to 257 rows (255 · 257 = 65,535): twice the lanes of
    // 32 bits.
    if f <= 257 {
        reduce_bands::<u16>(raw, w, h, f, &mut out);
    } else {
        reduce_bands::<u32>(raw, w, h, f, &mut out);
    }
    RgbImage::from_raw(ow as u32, oh as u32, out).unwrap_or_default()
}

/// [`reduce_box_raw`]'s work: for each band of `f` rows, the column sums in `T`, then each
/// block's mean.
fn reduce_bands<T>(raw: &[u8], w: usize, h: usize, f: usize, out: &mut Vec<u8>)
where
    T: Copy + Default + From<u8> + Into<u32> + std::ops::AddAssign,
{
    let (ow, oh) = (w.div_ceil(f), h.div_ceil(f));
    let mut band = vec![T::default(); w * 3];
    for oy in 0..oh {
        band.fill(T::default());
        let rows = (oy * f..((oy + 1) * f).min(h)).len();
        for y in oy * f..oy * f + rows {
            for (acc, &v) in band.iter_mut().zip(&raw[y * w * 3..(y + 1) * w * 3]) {
                *acc += T::from(v);
            }
        }
        let full = (f * rows) as u32;
        let full_div = Divisor::new(full);
        for ox in 0..ow {
            let (x0, x1) = (ox * f, ((ox + 1) * f).min(w));
            let n = ((x1 - x0) * rows) as u32;
            let mut t = [0u32; 3];
            for px in band[x0 * 3..x1 * 3].chunks_exact(3) {
                t[0] += px[0].into();
                t[1] += px[1].into();
                t[2] += px[2].into();
            }
            let div = if n == full { full_div } else { Divisor::new(n) };
            out.extend(t.map(|s| div.of(s + n / 2) as u8));
        }
    }
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

    #[test]
    fn reduce_box_is_the_mean_of_each_block() {
        let mut rng = Rng::derive(7, &[2]);
        for case in 0..60 {
            let (w, h) = if case == 0 {
                (700, 301)
            } else {
                (1 + rng.below(40) as u32, 1 + rng.below(40) as u32)
            };
            let f = if case == 0 {
                300
            } else {
                1 + rng.below(6) as u32
            };
            let src = random_image(w, h, &mut rng);
            let out = reduce_box(&src, f);
            assert_eq!(
                out.dimensions(),
                (w.div_ceil(f), h.div_ceil(f)),
                "case {case}"
            );
            for (ox, oy, p) in out.enumerate_pixels() {
                for c in 0..3 {
                    let (mut sum, mut n) = (0u32, 0u32);
                    for y in oy * f..((oy + 1) * f).min(h) {
                        for x in ox * f..((ox + 1) * f).min(w) {
                            sum += u32::from(src.get_pixel(x, y).0[c]);
                            n += 1;
                        }
                    }
                    let mean = f64::from(sum) / f64::from(n);
                    assert_eq!(
                        p.0[c],
                        (mean + 0.5).floor() as u8,
                        "case {case}: {w}×{h} / {f} at ({ox}, {oy}) channel {c}"
                    );
                }
            }
        }
    }

    #[test]
    fn divisor_divides_exactly() {
        let mut rng = Rng::derive(7, &[3]);
        for d in (1..=70_000u32)
            .step_by(7)
            .chain([1, 2, 3, 4, 9, 255 * 64, u32::MAX])
        {
            let div = Divisor::new(d);
            for x in [0, 1, d - 1, d, d.wrapping_add(1), u32::MAX, u32::MAX - 1]
                .into_iter()
                .chain((0..20).map(|_| rng.next_u64() as u32))
            {
                assert_eq!(div.of(x), x / d, "{x} / {d}");
            }
        }
    }
}
