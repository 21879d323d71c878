//! CPU row softmax.

/// y = softmax(scale·x) along rows of width `cols`.
pub fn softmax_forward(x: &[f32], cols: usize, scale: f32) -> Vec<f32> {
    let mut y = vec![0.0f32; x.len()];
    for (xr, yr) in x.chunks(cols).zip(y.chunks_mut(cols)) {
        let m = xr
            .iter()
            .map(|&v| scale as f64 * v as f64)
            .fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = xr
            .iter()
            .map(|&v| (scale as f64 * v as f64 - m).exp())
            .sum();
        for (o, &v) in yr.iter_mut().zip(xr) {
            *o = ((scale as f64 * v as f64 - m).exp() / s) as f32;
        }
    }
    y
}

/// dx = scale·y⊙(dy − Σ dy⊙y).
pub fn softmax_backward(dy: &[f32], y: &[f32], cols: usize, scale: f32) -> Vec<f32> {
    let mut dx = vec![0.0f32; y.len()];
    for ((gr, yr), dr) in dy.chunks(cols).zip(y.chunks(cols)).zip(dx.chunks_mut(cols)) {
        let d: f64 = gr.iter().zip(yr).map(|(&g, &v)| g as f64 * v as f64).sum();
        for ((o, &g), &v) in dr.iter_mut().zip(gr).zip(yr) {
            *o = (scale as f64 * v as f64 * (g as f64 - d)) as f32;
        }
    }
    dx
}
