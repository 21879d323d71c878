//! Last-layer CLS attention maps (spec §7.1): pick the CLS row, average heads, keep the
//! patches that hold most of the mass, and scale maps from the patch grid to pixels.

use super::VizError;

/// Per head, the CLS token's attention to the patches: `probs` is one image's last-layer
/// attention, `[heads, n_tokens, n_tokens]` or the CLS row alone `[heads, 1, n_tokens]`, with
/// tokens ordered CLS, `registers` register tokens, then the `grid_h × grid_w` patches
/// row-major; each map has `grid_h·grid_w` values.
pub fn cls_attention(
    probs: &[f32],
    heads: usize,
    n_tokens: usize,
    registers: usize,
    grid_h: usize,
    grid_w: usize,
) -> Result<Vec<Vec<f32>>, VizError> {
    let shape = |msg: String| VizError::Shape(format!("cls_attention: {msg}"));
    if heads == 0 {
        return Err(shape("no heads".into()));
    }
    let patches = grid_h
        .checked_mul(grid_w)
        .filter(|&p| p > 0)
        .ok_or_else(|| {
            shape(format!(
                "patch grid {grid_h}×{grid_w} is empty or too large"
            ))
        })?;
    let expected_tokens = patches
        .checked_add(registers)
        .and_then(|t| t.checked_add(1))
        .ok_or_else(|| shape("token count overflows".into()))?;
    if n_tokens != expected_tokens {
        return Err(shape(format!(
            "{n_tokens} tokens, but 1 CLS + {registers} registers + {grid_h}×{grid_w} patches \
             = {expected_tokens}"
        )));
    }
    let expected_len = n_tokens
        .checked_mul(n_tokens)
        .and_then(|sq| sq.checked_mul(heads))
        .ok_or_else(|| shape("probability tensor size overflows".into()))?;
    let rows = if probs.len() == expected_len {
        n_tokens
    } else if probs.len() == heads * n_tokens {
        1
    } else {
        return Err(shape(format!(
            "{} probabilities, expected heads·tokens² = {heads}·{n_tokens}² = {expected_len} \
             (or the CLS rows alone, heads·tokens = {})",
            probs.len(),
            heads * n_tokens
        )));
    };
    let first_patch = 1 + registers;
    Ok(probs
        .chunks_exact(rows * n_tokens)
        .map(|head| head[first_patch..n_tokens].to_vec())
        .collect())
}

/// The mean over heads at each position; maps of unequal length are cut to the shortest.
pub fn head_mean<M: AsRef<[f32]>>(maps: &[M]) -> Vec<f32> {
    let Some(len) = maps.iter().map(|m| m.as_ref().len()).min() else {
        return Vec::new();
    };
    let mut sum = vec![0f64; len];
    for map in maps {
        for (s, &v) in sum.iter_mut().zip(map.as_ref()) {
            *s += f64::from(v);
        }
    }
    let count = maps.len() as f64;
    sum.into_iter().map(|s| (s / count) as f32).collect()
}

/// The smallest set of highest values holding about `keep` of the map's mass (DINO uses 0.6):
/// after renormalising to sum 1 and sorting ascending, positions whose cumulative sum exceeds
/// `1 − keep`. Negative and non-finite values count as zero; a map with no mass keeps nothing.
pub fn threshold_mass(map: &[f32], keep: f32) -> Vec<bool> {
    let mass: Vec<f64> = map
        .iter()
        .map(|&v| {
            if v.is_finite() && v > 0.0 {
                f64::from(v)
            } else {
                0.0
            }
        })
        .collect();
    let total: f64 = mass.iter().sum();
    let mut kept = vec![false; map.len()];
    if !(total > 0.0 && total.is_finite()) || keep.is_nan() {
        return kept;
    }
    let floor = 1.0 - f64::from(keep.clamp(0.0, 1.0));
    let mut order: Vec<usize> = (0..mass.len()).collect();
    // A stable sort makes ties resolve the same way on every platform.
    order.sort_by(|&a, &b| mass[a].total_cmp(&mass[b]));
    let mut cumulative = 0.0;
    for i in order {
        cumulative += mass[i] / total;
        if cumulative > floor {
            kept[i] = true;
        }
    }
    kept
}

/// Read a map value, with positions past the end of a short map reading as zero so that a
/// size mismatch shows up as a blank region instead of a panic.
fn at(map: &[f32], i: usize) -> f32 {
    map.get(i).copied().unwrap_or(0.0)
}

/// Nearest-neighbour resize of an `h × w` map to `out_h × out_w` (PyTorch's `nearest`), which
/// keeps every patch a visible block as in DINO's figures.
pub fn upsample_nearest(map: &[f32], h: usize, w: usize, out_h: usize, out_w: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(out_h.saturating_mul(out_w));
    if h == 0 || w == 0 {
        out.resize(out_h.saturating_mul(out_w), 0.0);
        return out;
    }
    // floor(dst·in/out) in exact integers, so block edges never land one pixel off.
    let src = |dst: usize, inp: usize, outp: usize| -> usize {
        ((dst as u128 * inp as u128) / outp as u128) as usize
    };
    for y in 0..out_h {
        let sy = src(y, h, out_h);
        for x in 0..out_w {
            out.push(at(
                map,
                sy.saturating_mul(w).saturating_add(src(x, w, out_w)),
            ));
        }
    }
    out
}

/// Bilinear resize of an `h × w` map to `out_h × out_w` with pixel centres aligned
/// (`align_corners = false`), for smooth overlays.
pub fn upsample_bilinear(map: &[f32], h: usize, w: usize, out_h: usize, out_w: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(out_h.saturating_mul(out_w));
    if h == 0 || w == 0 {
        out.resize(out_h.saturating_mul(out_w), 0.0);
        return out;
    }
    // Source position of an output pixel centre, clamped so edges repeat instead of fading.
    let taps = |dst: usize, inp: usize, outp: usize| -> (usize, usize, f64) {
        let pos = (dst as f64 + 0.5) * inp as f64 / outp as f64 - 0.5;
        let pos = pos.clamp(0.0, (inp - 1) as f64);
        let lo = pos.floor() as usize;
        let hi = (lo + 1).min(inp - 1);
        (lo, hi, pos - lo as f64)
    };
    let cols: Vec<(usize, usize, f64)> = (0..out_w).map(|x| taps(x, w, out_w)).collect();
    for y in 0..out_h {
        let (y0, y1, fy) = taps(y, h, out_h);
        for &(x0, x1, fx) in &cols {
            let v =
                |yy: usize, xx: usize| f64::from(at(map, yy.saturating_mul(w).saturating_add(xx)));
            let top = v(y0, x0) * (1.0 - fx) + v(y0, x1) * fx;
            let bottom = v(y1, x0) * (1.0 - fx) + v(y1, x1) * fx;
            out.push((top * (1.0 - fy) + bottom * fy) as f32);
        }
    }
    out
}
