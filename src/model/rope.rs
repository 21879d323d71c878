//! DINOv3's axial rotary position tables (spec §8.1): one [P, head_dim] cos and sin table per
//! patch grid, shared by every layer and head.
//!
//! Patch (r, c) of an H×W grid sits at y = 2(r + ½)/H − 1, x = 2(c + ½)/W − 1 (each axis by its
//! own length). With d = head_dim and `inv_freq[j]` = base^(−4j/d), j < d/4, the angles are
//! [2π·y·inv_freq, 2π·x·inv_freq] (length d/2), repeated once to length d. Components j and
//! j + d/2 of a query or key turn together by angle j ("rotate-half" layout).

/// The d/4 inverse frequencies base^(−4j/d).
pub fn inv_freq(head_dim: usize, base: f32) -> Vec<f32> {
    let q = head_dim / 4;
    (0..q)
        .map(|j| (base as f64).powf(-4.0 * j as f64 / head_dim as f64) as f32)
        .collect()
}

/// (y, x) of every patch of a gh×gw grid, row-major, as [P, 2].
pub fn coords(gh: usize, gw: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(gh * gw * 2);
    for r in 0..gh {
        for c in 0..gw {
            out.push((2.0 * (r as f64 + 0.5) / gh as f64 - 1.0) as f32);
            out.push((2.0 * (c as f64 + 0.5) / gw as f64 - 1.0) as f32);
        }
    }
    out
}

/// The (cos, sin) tables [P, head_dim] of a gh×gw grid. Computed as the released models do, in
/// f32: angle = 2π·coordinate·inv_freq rounded to f32, then its cosine and sine.
pub fn tables(gh: usize, gw: usize, head_dim: usize, base: f32) -> (Vec<f32>, Vec<f32>) {
    tables_scaled(gh, gw, head_dim, base, 1.0)
}

/// [`tables`] with every coordinate multiplied by `scale` first (in f32): DINOv3's training-only
/// `rescale_coords`, which draws one log-uniform factor per block and crop set.
pub fn tables_scaled(
    gh: usize,
    gw: usize,
    head_dim: usize,
    base: f32,
    scale: f32,
) -> (Vec<f32>, Vec<f32>) {
    let freqs = inv_freq(head_dim, base);
    let q = freqs.len();
    let mut xy = coords(gh, gw);
    if scale != 1.0 {
        xy.iter_mut().for_each(|c| *c *= scale);
    }
    let two_pi = std::f32::consts::TAU;
    let mut cos = Vec::with_capacity(gh * gw * head_dim);
    let mut sin = Vec::with_capacity(gh * gw * head_dim);
    for p in 0..gh * gw {
        let (y, x) = (xy[2 * p], xy[2 * p + 1]);
        let half: Vec<f32> = (0..2 * q)
            .map(|j| {
                let (coord, f) = if j < q {
                    (y, freqs[j])
                } else {
                    (x, freqs[j - q])
                };
                two_pi * coord * f
            })
            .collect();
        for _ in 0..2 {
            cos.extend(half.iter().map(|a| (*a as f64).cos() as f32));
            sin.extend(half.iter().map(|a| (*a as f64).sin() as f32));
        }
    }
    (cos, sin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corner_patches_and_tiling() {
        let (cos, sin) = tables(2, 3, 8, 100.0);
        assert_eq!(cos.len(), 6 * 8);
        let xy = coords(2, 3);
        assert_eq!(&xy[..2], &[-0.5, (2.0 * 0.5 / 3.0 - 1.0) as f32]);
        for p in 0..6 {
            for j in 0..4 {
                assert_eq!(cos[p * 8 + j], cos[p * 8 + j + 4]);
                assert_eq!(sin[p * 8 + j], sin[p * 8 + j + 4]);
                let s = cos[p * 8 + j].powi(2) + sin[p * 8 + j].powi(2);
                assert!((s - 1.0).abs() < 1e-6);
            }
        }
        // Angle 0 of patch (0, 0) is 2π·y·1 with y = −0.5.
        assert!((cos[0] - (-std::f32::consts::PI).cos()).abs() < 1e-6);
    }

    #[test]
    fn rescaled_tables_multiply_the_coordinates() {
        assert_eq!(tables_scaled(3, 2, 8, 100.0, 1.0), tables(3, 2, 8, 100.0));
        let (cos, sin) = tables_scaled(3, 2, 8, 100.0, 1.5);
        let freqs = inv_freq(8, 100.0);
        let xy = coords(3, 2);
        for p in 0..6 {
            for j in 0..4 {
                let (c, f) = if j < 2 {
                    (xy[2 * p], freqs[j])
                } else {
                    (xy[2 * p + 1], freqs[j - 2])
                };
                let a = std::f32::consts::TAU * (c * 1.5) * f;
                assert!((cos[p * 8 + j] - a.cos()).abs() < 1e-6);
                assert!((sin[p * 8 + j] - a.sin()).abs() < 1e-6);
            }
        }
    }
}
