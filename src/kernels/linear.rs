//! Linear layer y = x·Wᵀ + b (PyTorch layout, W is [out, in]) on top of matmul.wgsl, with
//! optional fused GELU; bias gradients come from reduce.wgsl.

use super::matmul::{matmul, Epilogue, MatmulDims};
use super::reduce::sum_rows;
use crate::gpu::{Recorder, Tensor};

/// y [rows, out] = x [rows, in] · Wᵀ + b; with `pre` given, also GELU (pre keeps the input of
/// the GELU for the backward pass).
pub fn linear_forward(
    rec: &mut Recorder,
    y: &Tensor,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    pre: Option<&Tensor>,
) {
    let out_f = w.shape()[0];
    let in_f = w.numel() / out_f;
    let rows = x.numel() / in_f;
    assert_eq!(
        rows * in_f,
        x.numel(),
        "linear_forward: x width is not {in_f}"
    );
    let d = MatmulDims::new(rows, out_f, in_f).tb();
    let epi = match (b, pre) {
        (Some(b), Some(pre)) => Epilogue::BiasGelu(b, pre),
        (Some(b), None) => Epilogue::Bias(b),
        (None, None) => Epilogue::None,
        (None, Some(_)) => panic!("linear_forward: GELU epilogue needs a bias"),
    };
    matmul(rec, y, x, w, d, 1.0, false, epi);
}

/// Gradients of y = x·Wᵀ + b: dx (+)= dy·W, dW (+)= dyᵀ·x, db (+)= Σ_rows dy.
/// `accumulate_params` adds into dW and db (gradients summed over uses); dx is overwritten
/// unless `accumulate_dx`.
#[allow(clippy::too_many_arguments)]
pub fn linear_backward(
    rec: &mut Recorder,
    dx: Option<&Tensor>,
    dw: &Tensor,
    db: Option<&Tensor>,
    dy: &Tensor,
    x: &Tensor,
    w: &Tensor,
    accumulate_dx: bool,
    accumulate_params: bool,
) {
    let out_f = w.shape()[0];
    let in_f = w.numel() / out_f;
    let rows = x.numel() / in_f;
    assert_eq!(dy.numel(), rows * out_f, "linear_backward: dy shape");
    if let Some(dx) = dx {
        matmul(
            rec,
            dx,
            dy,
            w,
            MatmulDims::new(rows, in_f, out_f),
            1.0,
            accumulate_dx,
            Epilogue::None,
        );
    }
    matmul(
        rec,
        dw,
        dy,
        x,
        MatmulDims::new(out_f, in_f, rows).ta(),
        1.0,
        accumulate_params,
        Epilogue::None,
    );
    if let Some(db) = db {
        sum_rows(rec, db, dy, rows, out_f, 1.0, accumulate_params);
    }
}
