//! A CPU resize of [C, H, W] grids, by the per-axis weights the kernel uses too
//! ([`axis_weights`], both modes of the golden README).

pub use crate::kernels::interp::{axis_weights, InterpMode};

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
