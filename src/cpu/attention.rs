//! CPU attention on [B, H, N, d] tensors.

/// (out, probs `[B,H,Nq,Nk]`, lse `[B,H,Nq]`) of softmax(scale·Q·Kᵀ)·V.
#[allow(clippy::too_many_arguments)]
pub fn attention_forward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    bh: usize,
    n_q: usize,
    n_k: usize,
    d: usize,
    scale: f32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut out = vec![0.0f32; bh * n_q * d];
    let mut probs = vec![0.0f32; bh * n_q * n_k];
    let mut lse = vec![0.0f32; bh * n_q];
    for z in 0..bh {
        for i in 0..n_q {
            let qi = &q[(z * n_q + i) * d..][..d];
            let s: Vec<f64> = (0..n_k)
                .map(|j| {
                    let kj = &k[(z * n_k + j) * d..][..d];
                    scale as f64
                        * qi.iter()
                            .zip(kj)
                            .map(|(a, b)| *a as f64 * *b as f64)
                            .sum::<f64>()
                })
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let l = m + s.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
            lse[z * n_q + i] = l as f32;
            for c in 0..d {
                let mut acc = 0.0f64;
                for j in 0..n_k {
                    acc += (s[j] - l).exp() * v[(z * n_k + j) * d + c] as f64;
                }
                out[(z * n_q + i) * d + c] = acc as f32;
            }
            for j in 0..n_k {
                probs[(z * n_q + i) * n_k + j] = (s[j] - l).exp() as f32;
            }
        }
    }
    (out, probs, lse)
}

/// (dq, dk, dv) of attention, recomputing the probabilities.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    dout: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    bh: usize,
    n_q: usize,
    n_k: usize,
    d: usize,
    scale: f32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (_, probs, _) = attention_forward(q, k, v, bh, n_q, n_k, d, scale);
    let mut dq = vec![0.0f64; q.len()];
    let mut dk = vec![0.0f64; k.len()];
    let mut dv = vec![0.0f64; v.len()];
    for z in 0..bh {
        for i in 0..n_q {
            let go = &dout[(z * n_q + i) * d..][..d];
            let dp: Vec<f64> = (0..n_k)
                .map(|j| {
                    go.iter()
                        .zip(&v[(z * n_k + j) * d..][..d])
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum()
                })
                .collect();
            let p: Vec<f64> = (0..n_k)
                .map(|j| probs[(z * n_q + i) * n_k + j] as f64)
                .collect();
            let delta: f64 = p.iter().zip(&dp).map(|(a, b)| a * b).sum();
            for j in 0..n_k {
                let ds = p[j] * (dp[j] - delta) * scale as f64;
                for c in 0..d {
                    dq[(z * n_q + i) * d + c] += ds * k[(z * n_k + j) * d + c] as f64;
                    dk[(z * n_k + j) * d + c] += ds * q[(z * n_q + i) * d + c] as f64;
                    dv[(z * n_k + j) * d + c] += p[j] * go[c] as f64;
                }
            }
        }
    }
    let f = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect();
    (f(dq), f(dk), f(dv))
}
