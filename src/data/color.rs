//! PIL's 8-bit colour operations, as torchvision applies them to PIL images: brightness,
//! contrast, saturation and hue (ColorJitter's parts), grey conversion and solarize. Each reads
//! and writes 8-bit RGB, rounding where PIL rounds.

use ::image::{Rgb, RgbImage};

use crate::data::resample::round_u8;

/// PIL's 8-bit luma, ITU-R 601 (0.299 R + 0.587 G + 0.114 B) in 16-bit fixed point, rounded.
pub fn luma(p: &Rgb<u8>) -> u8 {
    let [r, g, b] = p.0.map(u32::from);
    ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16) as u8
}

/// PIL's `Image.blend(degenerate, img, factor)` per channel: clipped, then truncated to 8 bits.
fn blend(degenerate: u8, value: u8, factor: f32) -> u8 {
    let d = f32::from(degenerate);
    let v = d + factor * (f32::from(value) - d);
    v.clamp(0.0, 255.0) as u8
}

/// Replaces every channel value v by `f(v)`, computed once per possible value.
fn map_values(img: &mut RgbImage, f: impl Fn(u8) -> u8) {
    let table: [u8; 256] = std::array::from_fn(|v| f(v as u8));
    for c in img.iter_mut() {
        *c = table[usize::from(*c)];
    }
}

/// Scales towards black (factor < 1) or brighter (> 1); 1 leaves the picture unchanged.
pub fn adjust_brightness(img: &mut RgbImage, factor: f32) {
    map_values(img, |v| blend(0, v, factor));
}

/// Blends with the mean of the grey picture (rounded), as PIL's `ImageEnhance.Contrast`.
pub fn adjust_contrast(img: &mut RgbImage, factor: f32) {
    let n = u64::from(img.width()) * u64::from(img.height());
    if n == 0 {
        return;
    }
    let sum: u64 = img.pixels().map(|p| u64::from(luma(p))).sum();
    let mean = (sum as f64 / n as f64 + 0.5) as u8;
    map_values(img, |v| blend(mean, v, factor));
}

/// Blends with each pixel's grey value, as PIL's `ImageEnhance.Color`; 0 gives grey.
pub fn adjust_saturation(img: &mut RgbImage, factor: f32) {
    for p in img.pixels_mut() {
        // A grey pixel is its own luma, and blending a value with itself returns it.
        if p.0[0] == p.0[1] && p.0[1] == p.0[2] {
            continue;
        }
        let l = luma(p);
        for c in &mut p.0 {
            *c = blend(l, *c, factor);
        }
    }
}

/// Rotates hue by `shift` of a full turn (in [−0.5, 0.5]) through PIL's 8-bit HSV.
pub fn adjust_hue(img: &mut RgbImage, shift: f32) {
    // torchvision adds uint8(shift·255) to the 8-bit hue channel, wrapping around.
    let delta = ((shift * 255.0) as i32).rem_euclid(256) as u8;
    if delta == 0 {
        return;
    }
    for p in img.pixels_mut() {
        let [h, s, v] = rgb_to_hsv(p.0);
        p.0 = hsv_to_rgb([h.wrapping_add(delta), s, v]);
    }
}

/// PIL's RGB → HSV with each component in 0..=255.
fn rgb_to_hsv([r, g, b]: [u8; 3]) -> [u8; 3] {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    if maxc == minc {
        return [0, 0, maxc];
    }
    let (rf, gf, bf) = (f32::from(r), f32::from(g), f32::from(b));
    let cr = f32::from(maxc - minc);
    let maxf = f32::from(maxc);
    let s = cr / maxf;
    let rc = (maxf - rf) / cr;
    let gc = (maxf - gf) / cr;
    let bc = (maxf - bf) / cr;
    let h = if r == maxc {
        bc - gc
    } else if g == maxc {
        2.0 + rc - bc
    } else {
        4.0 + gc - rc
    };
    // h is in [−1, 5], so h / 6 + 1 is in [0, 2) where `% 1.0` is one exact subtraction.
    let h = h / 6.0 + 1.0;
    let h = if h >= 1.0 { h - 1.0 } else { h };
    [
        (h * 255.0).clamp(0.0, 255.0) as u8,
        (s * 255.0).clamp(0.0, 255.0) as u8,
        maxc,
    ]
}

/// PIL's HSV → RGB with each component in 0..=255.
fn hsv_to_rgb([h, s, v]: [u8; 3]) -> [u8; 3] {
    if s == 0 {
        return [v, v, v];
    }
    let hf = f32::from(h) * 6.0 / 255.0;
    // hf ≥ 0, so truncation is the floor.
    let i = (hf as u32) as f32;
    let f = hf - i;
    let fs = f32::from(s) / 255.0;
    let vf = f32::from(v);
    let to8 = round_u8;
    let p = to8(vf * (1.0 - fs));
    let q = to8(vf * (1.0 - fs * f));
    let t = to8(vf * (1.0 - fs * (1.0 - f)));
    match (i as u32) % 6 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

/// Replaces each pixel by its luma in all three channels.
pub fn grayscale(img: &mut RgbImage) {
    for p in img.pixels_mut() {
        let l = luma(p);
        p.0 = [l, l, l];
    }
}

/// Inverts every channel value at or above `threshold` (v → 255 − v).
pub fn solarize(img: &mut RgbImage, threshold: u8) {
    for c in img.as_mut() {
        if *c >= threshold {
            *c = 255 - *c;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PIL's RGB → HSV as first written, with the library's remainder.
    fn rgb_to_hsv_reference([r, g, b]: [u8; 3]) -> [u8; 3] {
        let maxc = r.max(g).max(b);
        let minc = r.min(g).min(b);
        if maxc == minc {
            return [0, 0, maxc];
        }
        let (rf, gf, bf) = (f32::from(r), f32::from(g), f32::from(b));
        let cr = f32::from(maxc - minc);
        let maxf = f32::from(maxc);
        let (rc, gc, bc) = ((maxf - rf) / cr, (maxf - gf) / cr, (maxf - bf) / cr);
        let h = if r == maxc {
            bc - gc
        } else if g == maxc {
            2.0 + rc - bc
        } else {
            4.0 + gc - rc
        };
        let h = (h / 6.0 + 1.0) % 1.0;
        [
            (h * 255.0).clamp(0.0, 255.0) as u8,
            (cr / maxf * 255.0).clamp(0.0, 255.0) as u8,
            maxc,
        ]
    }

    /// PIL's HSV → RGB as first written, with the library's floor and round.
    fn hsv_to_rgb_reference([h, s, v]: [u8; 3]) -> [u8; 3] {
        if s == 0 {
            return [v, v, v];
        }
        let hf = f32::from(h) * 6.0 / 255.0;
        let i = hf.floor();
        let f = hf - i;
        let fs = f32::from(s) / 255.0;
        let vf = f32::from(v);
        let to8 = |x: f32| x.round().clamp(0.0, 255.0) as u8;
        let (p, q, t) = (
            to8(vf * (1.0 - fs)),
            to8(vf * (1.0 - fs * f)),
            to8(vf * (1.0 - fs * (1.0 - f))),
        );
        match (i as u32) % 6 {
            0 => [v, t, p],
            1 => [q, v, p],
            2 => [p, v, t],
            3 => [p, q, v],
            4 => [t, p, v],
            _ => [v, p, q],
        }
    }

    #[test]
    fn hsv_conversions_equal_the_library_forms_on_every_colour() {
        for x in 0..1u32 << 24 {
            let c = [(x >> 16) as u8, (x >> 8) as u8, x as u8];
            assert_eq!(rgb_to_hsv(c), rgb_to_hsv_reference(c), "rgb {c:?}");
            assert_eq!(hsv_to_rgb(c), hsv_to_rgb_reference(c), "hsv {c:?}");
        }
    }
}
