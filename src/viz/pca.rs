//! PCA of patch features, the "rainbow" pictures (spec §7.2): the first component separates
//! object from background, and a second PCA on the object's patches gives its colours.

use super::VizError;
use image::{Rgb, RgbImage};

/// The PCA pictures of one image's patch features.
#[derive(Clone, Debug)]
pub struct PcaMaps {
    /// First-component score per patch, row-major over the grid, signed so the border is
    /// negative on average.
    pub first: Vec<f32>,
    /// Patches taken as the object: first score > 0, or every patch if that leaves fewer than 3.
    pub foreground: Vec<bool>,
    /// Three components of the foreground PCA as RGB, one pixel per patch (`grid_w × grid_h`),
    /// background black.
    pub rgb: RgbImage,
}

/// Variance below this share of the features' energy is f64 rounding left by centring
/// identical rows, not signal; f32 inputs that differ at all sit far above it.
const NO_VARIANCE: f64 = 1e-24;
/// Components whose variance is below this share of the total are rounding left by deflation.
const NEGLIGIBLE_COMPONENT: f64 = 1e-12;
/// Power iteration stops once the unit vector moves less than this in one step.
const CONVERGED: f64 = 1e-10;
/// Enough for gaps λ₂/λ₁ up to about 0.95; closer eigenvalues span a plane where any
/// direction is as good for colouring.
const MAX_ITERATIONS: usize = 500;

/// Patch-feature PCA of one image: `features` is `[n, d]` row-major with `n = grid_h·grid_w`
/// patches in grid order. Deterministic; constant features give an all-black picture.
pub fn pca_rgb(
    features: &[f32],
    n: usize,
    d: usize,
    grid_h: usize,
    grid_w: usize,
) -> Result<PcaMaps, VizError> {
    let shape = |msg: String| VizError::Shape(format!("pca_rgb: {msg}"));
    if grid_h.checked_mul(grid_w) != Some(n) || n == 0 {
        return Err(shape(format!(
            "{n} patches do not fill a non-empty {grid_h}×{grid_w} grid"
        )));
    }
    if d == 0 || n.checked_mul(d) != Some(features.len()) {
        return Err(shape(format!(
            "{} feature values, expected patches·dim = {n}·{d}",
            features.len()
        )));
    }
    if let Some(i) = features.iter().position(|v| !v.is_finite()) {
        return Err(shape(format!(
            "feature {} of patch {} is {}",
            i % d,
            i / d,
            features[i]
        )));
    }
    let x: Vec<f64> = features.iter().map(|&v| f64::from(v)).collect();
    let all: Vec<usize> = (0..n).collect();

    let (mean, axes) = principal_axes(&x, d, &all, 1);
    let mut first = project(&x, d, &mean, axes.first());
    if border_mean(&first, grid_h, grid_w) > 0.0 {
        first.iter_mut().for_each(|s| *s = -*s);
    }
    let mut foreground: Vec<bool> = first.iter().map(|&s| s > 0.0).collect();
    if foreground.iter().filter(|&&f| f).count() < 3 {
        foreground.fill(true);
    }

    let fg: Vec<usize> = (0..n).filter(|&i| foreground[i]).collect();
    let (fg_mean, fg_axes) = principal_axes(&x, d, &fg, 3);
    let channels: Vec<Vec<u8>> = (0..3)
        .map(|c| {
            let scores = project(&x, d, &fg_mean, fg_axes.get(c));
            to_bytes(&scores, &foreground)
        })
        .collect();

    let (Ok(width), Ok(height)) = (u32::try_from(grid_w), u32::try_from(grid_h)) else {
        return Err(shape(format!(
            "grid {grid_h}×{grid_w} is too large for an image"
        )));
    };
    let rgb = RgbImage::from_fn(width, height, |px, py| {
        let i = py as usize * grid_w + px as usize;
        Rgb([channels[0][i], channels[1][i], channels[2][i]])
    });
    Ok(PcaMaps {
        first: first.iter().map(|&s| s as f32).collect(),
        foreground,
        rgb,
    })
}

/// Scores of every row of `x` on `axis` after subtracting `mean`; zeros without an axis.
fn project(x: &[f64], d: usize, mean: &[f64], axis: Option<&Vec<f64>>) -> Vec<f64> {
    let rows = x.len() / d;
    match axis {
        None => vec![0.0; rows],
        Some(axis) => x
            .chunks_exact(d)
            .map(|row| {
                row.iter()
                    .zip(mean)
                    .zip(axis)
                    .map(|((v, m), a)| (v - m) * a)
                    .sum()
            })
            .collect(),
    }
}

/// Mean of the scores on the outermost ring of the grid; 0 when every patch is on it, since a
/// grid with no interior gives no hint which side is background.
fn border_mean(scores: &[f64], grid_h: usize, grid_w: usize) -> f64 {
    if grid_h <= 2 || grid_w <= 2 {
        return 0.0;
    }
    let mut sum = 0.0;
    let mut count = 0usize;
    for y in 0..grid_h {
        for x in 0..grid_w {
            if y == 0 || x == 0 || y == grid_h - 1 || x == grid_w - 1 {
                sum += scores[y * grid_w + x];
                count += 1;
            }
        }
    }
    sum / count as f64
}

/// Min-max scale scores over the foreground to 0..=255, background 0; a component that is
/// flat over the foreground carries no picture and stays black.
fn to_bytes(scores: &[f64], foreground: &[bool]) -> Vec<u8> {
    let (lo, hi) = scores
        .iter()
        .zip(foreground)
        .filter(|(_, &f)| f)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (&s, _)| {
            (lo.min(s), hi.max(s))
        });
    let range = hi - lo;
    scores
        .iter()
        .zip(foreground)
        .map(|(&s, &f)| {
            if f && range > 0.0 && range.is_finite() {
                ((s - lo) / range * 255.0).round().clamp(0.0, 255.0) as u8
            } else {
                0
            }
        })
        .collect()
}

/// Mean of the selected rows and up to `k` unit principal axes (length `d`) of those rows,
/// largest variance first; fewer when the rows span fewer directions.
fn principal_axes(x: &[f64], d: usize, rows: &[usize], k: usize) -> (Vec<f64>, Vec<Vec<f64>>) {
    let m = rows.len();
    let mut mean = vec![0.0; d];
    if m == 0 {
        return (mean, Vec::new());
    }
    for &r in rows {
        for (acc, v) in mean.iter_mut().zip(&x[r * d..(r + 1) * d]) {
            *acc += v;
        }
    }
    mean.iter_mut().for_each(|v| *v /= m as f64);
    let energy: f64 = rows
        .iter()
        .flat_map(|&r| &x[r * d..(r + 1) * d])
        .map(|v| v * v)
        .sum();
    let centred: Vec<f64> = rows
        .iter()
        .flat_map(|&r| {
            x[r * d..(r + 1) * d]
                .iter()
                .zip(&mean)
                .map(|(v, mu)| v - mu)
        })
        .collect();

    // Both routes share their nonzero eigenvalues; the smaller matrix is cheaper to build and
    // to iterate on.
    let use_gram = m < d;
    let matrix = if use_gram {
        gram(&centred, m, d)
    } else {
        covariance(&centred, m, d)
    };
    let size = if use_gram { m } else { d };
    let trace: f64 = (0..size).map(|i| matrix[i * size + i]).sum();
    if trace.is_nan() || trace <= NO_VARIANCE * energy {
        return (mean, Vec::new());
    }

    let eig = top_eigenvectors(matrix, size, k, NEGLIGIBLE_COMPONENT * trace);
    let axes = eig
        .into_iter()
        .filter_map(|u| {
            let mut axis = if use_gram {
                // A Gram eigenvector weighs the rows; the feature-space axis is their sum.
                let mut a = vec![0.0; d];
                for (row, &w) in centred.chunks_exact(d).zip(&u) {
                    a.iter_mut().zip(row).for_each(|(a, v)| *a += w * v);
                }
                a
            } else {
                u
            };
            let norm = axis.iter().map(|v| v * v).sum::<f64>().sqrt();
            if norm.is_nan() || norm <= 0.0 {
                return None;
            }
            // PCA signs are arbitrary; pinning the largest entry positive keeps colours stable
            // from run to run.
            let largest =
                axis.iter().copied().fold(
                    0.0f64,
                    |best, v| if v.abs() > best.abs() { v } else { best },
                );
            let sign = if largest < 0.0 { -1.0 } else { 1.0 };
            axis.iter_mut().for_each(|v| *v *= sign / norm);
            Some(axis)
        })
        .collect();
    (mean, axes)
}

/// `A Aᵀ` for the `m × d` matrix `a`.
fn gram(a: &[f64], m: usize, d: usize) -> Vec<f64> {
    let mut g = vec![0.0; m * m];
    for i in 0..m {
        let ri = &a[i * d..(i + 1) * d];
        for j in i..m {
            let rj = &a[j * d..(j + 1) * d];
            let v: f64 = ri.iter().zip(rj).map(|(p, q)| p * q).sum();
            g[i * m + j] = v;
            g[j * m + i] = v;
        }
    }
    g
}

/// `Aᵀ A` for the `m × d` matrix `a`, built a row at a time to walk memory in order.
fn covariance(a: &[f64], m: usize, d: usize) -> Vec<f64> {
    let mut c = vec![0.0; d * d];
    for row in a.chunks_exact(d).take(m) {
        for (p, &vp) in row.iter().enumerate() {
            if vp == 0.0 {
                continue;
            }
            let dst = &mut c[p * d + p..(p + 1) * d];
            dst.iter_mut()
                .zip(&row[p..])
                .for_each(|(acc, &vq)| *acc += vp * vq);
        }
    }
    for p in 0..d {
        for q in 0..p {
            c[p * d + q] = c[q * d + p];
        }
    }
    c
}

/// Up to `k` leading unit eigenvectors of the symmetric positive semi-definite `size × size`
/// matrix by power iteration with deflation, stopping at eigenvalues not above `floor`.
fn top_eigenvectors(mut a: Vec<f64>, size: usize, k: usize, floor: f64) -> Vec<Vec<f64>> {
    let mut found: Vec<Vec<f64>> = Vec::new();
    for round in 0..k.min(size) {
        let mut v = start_vector(size, round);
        orthogonalize(&mut v, &found);
        if !normalize(&mut v) {
            break;
        }
        let mut lambda = 0.0;
        for _ in 0..MAX_ITERATIONS {
            let mut w = mat_vec(&a, size, &v);
            lambda = dot(&v, &w);
            // Deflation leaves rounding along earlier vectors; removing it keeps them from
            // creeping back in.
            orthogonalize(&mut w, &found);
            if !normalize(&mut w) {
                lambda = 0.0;
                break;
            }
            let step = v
                .iter()
                .zip(&w)
                .map(|(p, q)| (p - q) * (p - q))
                .sum::<f64>()
                .sqrt();
            v = w;
            if step < CONVERGED {
                break;
            }
        }
        if lambda.is_nan() || lambda <= floor {
            break;
        }
        for i in 0..size {
            for j in 0..size {
                a[i * size + j] -= lambda * v[i] * v[j];
            }
        }
        found.push(v);
    }
    found
}

/// A fixed pseudo-random start: a constant vector would lie in the null space of a centred
/// Gram matrix and never move.
fn start_vector(size: usize, round: usize) -> Vec<f64> {
    (0..size)
        .map(|i| {
            let mut z = (i as u64)
                .wrapping_add((round as u64) << 32)
                .wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        })
        .collect()
}

fn mat_vec(a: &[f64], size: usize, v: &[f64]) -> Vec<f64> {
    a.chunks_exact(size).map(|row| dot(row, v)).collect()
}

fn dot(p: &[f64], q: &[f64]) -> f64 {
    p.iter().zip(q).map(|(a, b)| a * b).sum()
}

fn orthogonalize(v: &mut [f64], basis: &[Vec<f64>]) {
    for b in basis {
        let c = dot(v, b);
        v.iter_mut().zip(b).for_each(|(x, y)| *x -= c * y);
    }
}

/// Scale to unit length; false when the vector has vanished.
fn normalize(v: &mut [f64]) -> bool {
    let norm = dot(v, v).sqrt();
    if !norm.is_finite() || norm <= 0.0 {
        return false;
    }
    v.iter_mut().for_each(|x| *x /= norm);
    true
}
