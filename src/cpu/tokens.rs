//! CPU token assembly ([CLS, registers, patches] + positions, mask token).

/// out [B, 1+R+P, D]; `pos` is [1+P, D] (CLS position first), `mask` [B, P] (nonzero = masked).
pub fn tokens_forward(
    patches: &[f32],
    cls: &[f32],
    regs: &[f32],
    mask_token: &[f32],
    pos: &[f32],
    mask: Option<&[f32]>,
    batch: usize,
) -> Vec<f32> {
    let d = cls.len();
    let r = regs.len() / d;
    let p = patches.len() / (batch * d);
    let n = 1 + r + p;
    let mut out = vec![0.0f32; batch * n * d];
    for b in 0..batch {
        for c in 0..d {
            out[(b * n) * d + c] = cls[c] + pos[c];
        }
        for ri in 0..r {
            out[(b * n + 1 + ri) * d..(b * n + 2 + ri) * d]
                .copy_from_slice(&regs[ri * d..(ri + 1) * d]);
        }
        for pi in 0..p {
            let masked = mask.is_some_and(|m| m[b * p + pi] != 0.0);
            for c in 0..d {
                let v = if masked {
                    mask_token[c]
                } else {
                    patches[(b * p + pi) * d + c]
                };
                out[(b * n + 1 + r + pi) * d + c] = v + pos[(1 + pi) * d + c];
            }
        }
    }
    out
}

/// Gradients (d_patches, d_cls, d_regs, d_pos [1+P, D], d_mask_token) of [`tokens_forward`].
#[allow(clippy::type_complexity)]
pub fn tokens_backward(
    dout: &[f32],
    d: usize,
    r: usize,
    p: usize,
    mask: Option<&[f32]>,
    batch: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let n = 1 + r + p;
    let mut dp = vec![0.0f32; batch * p * d];
    let mut dcls = vec![0.0f64; d];
    let mut dregs = vec![0.0f64; r * d];
    let mut dpos = vec![0.0f64; (1 + p) * d];
    let mut dmask = vec![0.0f64; d];
    for b in 0..batch {
        for c in 0..d {
            let g = dout[(b * n) * d + c] as f64;
            dcls[c] += g;
            dpos[c] += g;
        }
        for ri in 0..r {
            for c in 0..d {
                dregs[ri * d + c] += dout[(b * n + 1 + ri) * d + c] as f64;
            }
        }
        for pi in 0..p {
            let masked = mask.is_some_and(|m| m[b * p + pi] != 0.0);
            for c in 0..d {
                let g = dout[(b * n + 1 + r + pi) * d + c];
                dpos[(1 + pi) * d + c] += g as f64;
                if masked {
                    dmask[c] += g as f64;
                } else {
                    dp[(b * p + pi) * d + c] = g;
                }
            }
        }
    }
    let f = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect();
    (dp, f(dcls), f(dregs), f(dpos), f(dmask))
}
