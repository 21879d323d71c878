//! CPU soft-target cross-entropy with temperature.

fn log_softmax_row(s: &[f32], inv_temp: f64) -> Vec<f64> {
    let m = s
        .iter()
        .map(|&v| v as f64 * inv_temp)
        .fold(f64::NEG_INFINITY, f64::max);
    let lse = m + s
        .iter()
        .map(|&v| (v as f64 * inv_temp - m).exp())
        .sum::<f64>()
        .ln();
    s.iter().map(|&v| v as f64 * inv_temp - lse).collect()
}

/// loss_r = −Σ_k t_rk·log_softmax(s_r/T)_k.
pub fn cross_entropy_forward(
    logits: &[f32],
    target: &[f32],
    cols: usize,
    temperature: f32,
) -> Vec<f32> {
    let inv = 1.0 / temperature as f64;
    logits
        .chunks(cols)
        .zip(target.chunks(cols))
        .map(|(s, t)| {
            let ls = log_softmax_row(s, inv);
            -(t.iter()
                .zip(&ls)
                .map(|(&tv, &l)| tv as f64 * l)
                .sum::<f64>()) as f32
        })
        .collect()
}

/// d(upstream·scale·Σ_r w_r·loss_r)/d logits.
pub fn cross_entropy_backward(
    upstream: f32,
    logits: &[f32],
    target: &[f32],
    cols: usize,
    temperature: f32,
    scale: f32,
    row_weight: Option<&[f32]>,
) -> Vec<f32> {
    let inv = 1.0 / temperature as f64;
    let mut out = vec![0.0f32; logits.len()];
    for (r, ((s, t), o)) in logits
        .chunks(cols)
        .zip(target.chunks(cols))
        .zip(out.chunks_mut(cols))
        .enumerate()
    {
        let ls = log_softmax_row(s, inv);
        let st: f64 = t.iter().map(|&v| v as f64).sum();
        let w = row_weight.map_or(1.0, |w| w[r] as f64);
        let g = upstream as f64 * scale as f64 * w * inv;
        for k in 0..cols {
            o[k] = (g * (ls[k].exp() * st - t[k] as f64)) as f32;
        }
    }
    out
}
