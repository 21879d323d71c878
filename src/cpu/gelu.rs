//! CPU exact GELU.

/// erfc with relative error below 1.2e-7 (the same fit as the WGSL prelude, in f64).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.26551223
        + t * (1.00002368
            + t * (0.37409196
                + t * (0.09678418
                    + t * (-0.18628806
                        + t * (0.27886807
                            + t * (-1.13520398
                                + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    let r = t * (-z * z + poly).exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Φ(x), the standard normal CDF.
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x * std::f64::consts::FRAC_1_SQRT_2)
}

/// y = x·Φ(x).
pub fn gelu_forward(x: &[f32]) -> Vec<f32> {
    x.iter()
        .map(|&v| (v as f64 * normal_cdf(v as f64)) as f32)
        .collect()
}

/// dx = dy·(Φ(x) + x·φ(x)).
pub fn gelu_backward(dy: &[f32], x: &[f32]) -> Vec<f32> {
    let inv_sqrt_2pi = 1.0 / (2.0 * std::f64::consts::PI).sqrt();
    x.iter()
        .zip(dy)
        .map(|(&v, &g)| {
            let v = v as f64;
            (g as f64 * (normal_cdf(v) + v * inv_sqrt_2pi * (-0.5 * v * v).exp())) as f32
        })
        .collect()
}

/// y [rows, h] = silu(x1)·x2 for x [rows, 2h].
pub fn swiglu_forward(x: &[f32], hidden: usize) -> Vec<f32> {
    x.chunks(2 * hidden)
        .flat_map(|r| {
            (0..hidden).map(move |j| {
                let (a, b) = (r[j] as f64, r[hidden + j] as f64);
                (a / (1.0 + (-a).exp()) * b) as f32
            })
        })
        .collect()
}

/// dx [rows, 2h] of [`swiglu_forward`].
pub fn swiglu_backward(dy: &[f32], x: &[f32], hidden: usize) -> Vec<f32> {
    let mut dx = vec![0.0f32; x.len()];
    for (r, (xr, gr)) in x.chunks(2 * hidden).zip(dy.chunks(hidden)).enumerate() {
        for j in 0..hidden {
            let (a, b, g) = (xr[j] as f64, xr[hidden + j] as f64, gr[j] as f64);
            let s = 1.0 / (1.0 + (-a).exp());
            dx[r * 2 * hidden + j] = (g * b * s * (1.0 + a * (1.0 - s))) as f32;
            dx[r * 2 * hidden + hidden + j] = (g * a * s) as f32;
        }
    }
    dx
}
