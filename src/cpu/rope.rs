//! CPU rotary position embedding on a fused qkv buffer (twin of shaders/rope.wgsl).

/// Rotates q and k of tokens [prefix, N) of `qkv` [B, N, 3·heads·head_dim] in place with the
/// tables `cos`, `sin` [N − prefix, head_dim]; `inverse` applies the transpose.
#[allow(clippy::too_many_arguments)]
pub fn rope_apply(
    qkv: &mut [f32],
    cos: &[f32],
    sin: &[f32],
    batch: usize,
    tokens: usize,
    prefix: usize,
    heads: usize,
    head_dim: usize,
    inverse: bool,
) {
    let dim = heads * head_dim;
    let half = head_dim / 2;
    for b in 0..batch {
        for pi in 0..tokens - prefix {
            let t = pi * head_dim;
            for which in 0..2 {
                for h in 0..heads {
                    let base = (b * tokens + prefix + pi) * 3 * dim + which * dim + h * head_dim;
                    for j in 0..half {
                        let (a, c) = (qkv[base + j] as f64, qkv[base + j + half] as f64);
                        let (ca, sa) = (cos[t + j] as f64, sin[t + j] as f64);
                        let (cb, sb) = (cos[t + j + half] as f64, sin[t + j + half] as f64);
                        let (x, y) = if inverse {
                            (a * ca + c * sb, c * cb - a * sa)
                        } else {
                            (a * ca - c * sa, c * cb + a * sb)
                        };
                        qkv[base + j] = x as f32;
                        qkv[base + j + half] = y as f32;
                    }
                }
            }
        }
    }
}
