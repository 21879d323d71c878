//! CPU patch embedding (stride = kernel convolution).

use crate::kernels::patch_embed::PatchDims;

fn pixel(d: &PatchDims, b: usize, c: usize, y: usize, x: usize) -> usize {
    ((b * d.channels + c) * d.height + y) * d.width + x
}

/// y [batch, patches, D] = conv(x, W) + bias.
pub fn patch_embed_forward(x: &[f32], w: &[f32], bias: &[f32], d: PatchDims) -> Vec<f32> {
    let (gh, gw) = d.grid();
    let dim = bias.len();
    let p = d.patch;
    let mut y = vec![0.0f32; d.batch * gh * gw * dim];
    for b in 0..d.batch {
        for py in 0..gh {
            for px in 0..gw {
                for o in 0..dim {
                    let mut acc = bias[o] as f64;
                    for c in 0..d.channels {
                        for ky in 0..p {
                            for kx in 0..p {
                                let wv = w[((o * d.channels + c) * p + ky) * p + kx] as f64;
                                acc += wv * x[pixel(&d, b, c, py * p + ky, px * p + kx)] as f64;
                            }
                        }
                    }
                    y[((b * gh + py) * gw + px) * dim + o] = acc as f32;
                }
            }
        }
    }
    y
}

/// (dx, dW, dbias) of the patch embedding.
pub fn patch_embed_backward(
    dy: &[f32],
    x: &[f32],
    w: &[f32],
    dim: usize,
    d: PatchDims,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (gh, gw) = d.grid();
    let p = d.patch;
    let mut dx = vec![0.0f64; x.len()];
    let mut dw = vec![0.0f64; w.len()];
    let mut db = vec![0.0f64; dim];
    for b in 0..d.batch {
        for py in 0..gh {
            for px in 0..gw {
                for o in 0..dim {
                    let g = dy[((b * gh + py) * gw + px) * dim + o] as f64;
                    db[o] += g;
                    for c in 0..d.channels {
                        for ky in 0..p {
                            for kx in 0..p {
                                let wi = ((o * d.channels + c) * p + ky) * p + kx;
                                let xi = pixel(&d, b, c, py * p + ky, px * p + kx);
                                dw[wi] += g * x[xi] as f64;
                                dx[xi] += g * w[wi] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    let f = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect();
    (f(dx), f(dw), f(db))
}
