//! CPU matmul and linear layer.

use crate::kernels::matmul::MatmulDims;

/// C = op(A)·op(B) for every batch (see [`MatmulDims`]).
pub fn matmul(a: &[f32], b: &[f32], d: MatmulDims) -> Vec<f32> {
    let mut c = vec![0.0f32; d.batch * d.m * d.n];
    for z in 0..d.batch {
        let ao = if d.broadcast_a { 0 } else { z * d.m * d.k };
        let bo = if d.broadcast_b { 0 } else { z * d.k * d.n };
        for i in 0..d.m {
            for j in 0..d.n {
                let mut acc = 0.0f64;
                for kk in 0..d.k {
                    let av = if d.trans_a {
                        a[ao + kk * d.m + i]
                    } else {
                        a[ao + i * d.k + kk]
                    };
                    let bv = if d.trans_b {
                        b[bo + j * d.k + kk]
                    } else {
                        b[bo + kk * d.n + j]
                    };
                    acc += av as f64 * bv as f64;
                }
                c[z * d.m * d.n + i * d.n + j] = acc as f32;
            }
        }
    }
    c
}

/// Gradients of C = A·B (batched, no transposes): (dA, dB).
pub fn matmul_backward(
    dc: &[f32],
    a: &[f32],
    b: &[f32],
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
) -> (Vec<f32>, Vec<f32>) {
    let da = matmul(dc, b, MatmulDims::new(m, k, n).batched(batch).tb());
    let db = matmul(a, dc, MatmulDims::new(k, n, m).batched(batch).ta());
    (da, db)
}

/// y = x·Wᵀ + b, W [out, in].
pub fn linear_forward(x: &[f32], w: &[f32], b: Option<&[f32]>, out_f: usize) -> Vec<f32> {
    let in_f = w.len() / out_f;
    let rows = x.len() / in_f;
    let mut y = matmul(x, w, MatmulDims::new(rows, out_f, in_f).tb());
    if let Some(b) = b {
        for r in 0..rows {
            for j in 0..out_f {
                y[r * out_f + j] += b[j];
            }
        }
    }
    y
}

/// Gradients of the linear layer: (dx, dW, db).
pub fn linear_backward(
    dy: &[f32],
    x: &[f32],
    w: &[f32],
    out_f: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let in_f = w.len() / out_f;
    let rows = x.len() / in_f;
    let dx = matmul(dy, w, MatmulDims::new(rows, in_f, out_f));
    let dw = matmul(dy, x, MatmulDims::new(out_f, in_f, rows).ta());
    let db = super::elementwise::sum_rows(dy, rows, out_f);
    (dx, dw, db)
}
