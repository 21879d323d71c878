//! CPU layer norm.

/// (y, mean, rstd) of a layer norm over rows of width w.len().
pub fn layernorm_forward(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    eps: f32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let d = w.len();
    let rows = x.len() / d;
    let mut y = vec![0.0f32; x.len()];
    let mut means = vec![0.0f32; rows];
    let mut rstds = vec![0.0f32; rows];
    for r in 0..rows {
        let xr = &x[r * d..(r + 1) * d];
        let mean = xr.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        let var = xr.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
        let rstd = 1.0 / (var + eps as f64).sqrt();
        for c in 0..d {
            y[r * d + c] = ((xr[c] as f64 - mean) * rstd * w[c] as f64 + b[c] as f64) as f32;
        }
        means[r] = mean as f32;
        rstds[r] = rstd as f32;
    }
    (y, means, rstds)
}

/// (dx, dw, db) of a layer norm.
pub fn layernorm_backward(
    dy: &[f32],
    x: &[f32],
    w: &[f32],
    eps: f32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let d = w.len();
    let rows = x.len() / d;
    let mut dx = vec![0.0f32; x.len()];
    let mut dw = vec![0.0f64; d];
    let mut db = vec![0.0f64; d];
    for r in 0..rows {
        let xr = &x[r * d..(r + 1) * d];
        let gr = &dy[r * d..(r + 1) * d];
        let mean = xr.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        let var = xr.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
        let rstd = 1.0 / (var + eps as f64).sqrt();
        let xh: Vec<f64> = xr.iter().map(|&v| (v as f64 - mean) * rstd).collect();
        let g: Vec<f64> = (0..d).map(|c| gr[c] as f64 * w[c] as f64).collect();
        let mg = g.iter().sum::<f64>() / d as f64;
        let mgx = g.iter().zip(&xh).map(|(a, b)| a * b).sum::<f64>() / d as f64;
        for c in 0..d {
            dx[r * d + c] = (rstd * (g[c] - mg - xh[c] * mgx)) as f32;
            dw[c] += gr[c] as f64 * xh[c];
            db[c] += gr[c] as f64;
        }
    }
    let f = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect();
    (dx, f(dw), f(db))
}
