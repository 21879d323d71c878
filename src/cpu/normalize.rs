//! CPU row L2 normalisation and weight normalisation.

/// y = x / max(‖x‖, eps) per row.
pub fn l2norm_forward(x: &[f32], cols: usize, eps: f32) -> Vec<f32> {
    x.chunks(cols)
        .flat_map(|r| {
            let n = r
                .iter()
                .map(|&v| v as f64 * v as f64)
                .sum::<f64>()
                .sqrt()
                .max(eps as f64);
            r.iter().map(move |&v| (v as f64 / n) as f32)
        })
        .collect()
}

/// dx of [`l2norm_forward`].
pub fn l2norm_backward(dy: &[f32], x: &[f32], cols: usize, eps: f32) -> Vec<f32> {
    let mut dx = vec![0.0f32; x.len()];
    for ((r, g), o) in x.chunks(cols).zip(dy.chunks(cols)).zip(dx.chunks_mut(cols)) {
        let n = r.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
        if n <= eps as f64 {
            for (oo, &gg) in o.iter_mut().zip(g) {
                *oo = (gg as f64 / eps as f64) as f32;
            }
            continue;
        }
        let ydy: f64 = r
            .iter()
            .zip(g)
            .map(|(&v, &gg)| v as f64 / n * gg as f64)
            .sum();
        for ((oo, &v), &gg) in o.iter_mut().zip(r).zip(g) {
            *oo = ((gg as f64 - v as f64 / n * ydy) / n) as f32;
        }
    }
    dx
}

/// W = g·v/‖v‖ per row of v [K, C].
pub fn weightnorm_forward(v: &[f32], g: &[f32]) -> Vec<f32> {
    let cols = v.len() / g.len();
    v.chunks(cols)
        .zip(g)
        .flat_map(|(r, &gk)| {
            let n = r.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
            r.iter().map(move |&x| (gk as f64 * x as f64 / n) as f32)
        })
        .collect()
}

/// (dv, dg) of [`weightnorm_forward`].
pub fn weightnorm_backward(dw: &[f32], v: &[f32], g: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let cols = v.len() / g.len();
    let mut dv = vec![0.0f32; v.len()];
    let mut dg = vec![0.0f32; g.len()];
    for k in 0..g.len() {
        let r = &v[k * cols..(k + 1) * cols];
        let d = &dw[k * cols..(k + 1) * cols];
        let n = r.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
        let s: f64 = r
            .iter()
            .zip(d)
            .map(|(&x, &y)| x as f64 / n * y as f64)
            .sum();
        dg[k] = s as f32;
        for c in 0..cols {
            dv[k * cols + c] = (g[k] as f64 / n * (d[c] as f64 - r[c] as f64 / n * s)) as f32;
        }
    }
    (dv, dg)
}
