//! Bicubic resize weights (both modes of the golden README) and a CPU resize of [C, H, W] grids.

/// Which bicubic variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterpMode {
    /// Keys cubic a = −0.75, half-pixel centres, clamped edge taps (PyTorch antialias=False;
    /// Hugging Face Dinov2Model).
    Bicubic,
    /// PIL-style antialiased cubic a = −0.5, support scaled when downsampling, weights
    /// normalised (PyTorch antialias=True; Dinov2WithRegistersModel).
    BicubicAntialias,
}

fn cubic(x: f64, a: f64) -> f64 {
    let x = x.abs();
    if x <= 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    } else {
        0.0
    }
}

/// Dense [n_out, n_in] weight matrix of a 1-D resize; row i gives output i.
pub fn axis_weights(n_in: usize, n_out: usize, mode: InterpMode) -> Vec<f32> {
    let mut w = vec![0.0f64; n_out * n_in];
    // PyTorch computes the scale in float32 as in/out.
    let s = (n_in as f32 / n_out as f32) as f64;
    for i in 0..n_out {
        let row = &mut w[i * n_in..(i + 1) * n_in];
        match mode {
            InterpMode::Bicubic => {
                let src = (i as f64 + 0.5) * s - 0.5;
                let f = src.floor();
                let t = src - f;
                for k in -1i64..=2 {
                    let idx = (f as i64 + k).clamp(0, n_in as i64 - 1) as usize;
                    row[idx] += cubic(t - k as f64, -0.75);
                }
            }
            InterpMode::BicubicAntialias => {
                let (support, inv) = if s >= 1.0 {
                    (2.0 * s, 1.0 / s)
                } else {
                    (2.0, 1.0)
                };
                let c = (i as f64 + 0.5) * s;
                let lo = ((c - support + 0.5).floor() as i64).max(0) as usize;
                let hi = ((c + support + 0.5).floor() as i64).min(n_in as i64).max(0) as usize;
                let mut total = 0.0;
                for (j, r) in row.iter_mut().enumerate().take(hi).skip(lo) {
                    let v = cubic((j as f64 - c + 0.5) * inv, -0.5);
                    *r = v;
                    total += v;
                }
                if total != 0.0 {
                    for r in &mut row[lo..hi] {
                        *r /= total;
                    }
                }
            }
        }
    }
    w.into_iter().map(|v| v as f32).collect()
}

/// Resize of a [C, h_in, w_in] grid to [C, h_out, w_out].
pub fn interp_forward(
    x: &[f32],
    c: usize,
    h_in: usize,
    w_in: usize,
    h_out: usize,
    w_out: usize,
    mode: InterpMode,
) -> Vec<f32> {
    let wy = axis_weights(h_in, h_out, mode);
    let wx = axis_weights(w_in, w_out, mode);
    let mut y = vec![0.0f32; c * h_out * w_out];
    for ch in 0..c {
        for i in 0..h_out {
            for j in 0..w_out {
                let mut acc = 0.0f64;
                for a in 0..h_in {
                    for b in 0..w_in {
                        acc += wy[i * h_in + a] as f64
                            * wx[j * w_in + b] as f64
                            * x[(ch * h_in + a) * w_in + b] as f64;
                    }
                }
                y[(ch * h_out + i) * w_out + j] = acc as f32;
            }
        }
    }
    y
}

/// Gradient of [`interp_forward`] w.r.t. its input.
pub fn interp_backward(
    dy: &[f32],
    c: usize,
    h_in: usize,
    w_in: usize,
    h_out: usize,
    w_out: usize,
    mode: InterpMode,
) -> Vec<f32> {
    let wy = axis_weights(h_in, h_out, mode);
    let wx = axis_weights(w_in, w_out, mode);
    let mut dx = vec![0.0f32; c * h_in * w_in];
    for ch in 0..c {
        for a in 0..h_in {
            for b in 0..w_in {
                let mut acc = 0.0f64;
                for i in 0..h_out {
                    for j in 0..w_out {
                        acc += wy[i * h_in + a] as f64
                            * wx[j * w_in + b] as f64
                            * dy[(ch * h_out + i) * w_out + j] as f64;
                    }
                }
                dx[(ch * h_in + a) * w_in + b] = acc as f32;
            }
        }
    }
    dx
}
