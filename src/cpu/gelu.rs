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
