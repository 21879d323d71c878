//! Linear layer y = x·Wᵀ + b (PyTorch layout, W is [out, in]) on top of matmul.wgsl, with
//! optional fused GELU; bias gradients come from reduce.wgsl.

use super::cast::cast_checked;
use super::matmul::{matmul, Epilogue, MatmulDims};
use super::reduce::sum_rows;
use crate::gpu::{DType, Recorder, Tensor};

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
    let d = linear_dims(x, w, "linear_forward");
    let epi = match (b, pre) {
        (Some(b), Some(pre)) => Epilogue::BiasGelu(b, pre),
        (Some(b), None) => Epilogue::Bias(b),
        (None, None) => Epilogue::None,
        (None, Some(_)) => panic!("linear_forward: GELU epilogue needs a bias"),
    };
    matmul(rec, y, x, w, d, 1.0, false, epi);
}

/// y = gelu(x·Wᵀ + b), the pre-activation not kept: [`linear_forward`] with a GELU epilogue
/// for a forward pass that no backward pass follows.
pub fn linear_gelu_forward(rec: &mut Recorder, y: &Tensor, x: &Tensor, w: &Tensor, b: &Tensor) {
    let d = linear_dims(x, w, "linear_gelu_forward");
    matmul(rec, y, x, w, d, 1.0, false, Epilogue::BiasGeluOnly(b));
}

/// The product x·Wᵀ of a linear layer: x [rows, in], W [out, in].
fn linear_dims(x: &Tensor, w: &Tensor, what: &str) -> MatmulDims {
    let out_f = w.shape()[0];
    let in_f = w.numel() / out_f;
    let rows = x.numel() / in_f;
    assert_eq!(rows * in_f, x.numel(), "{what}: x width is not {in_f}");
    MatmulDims::new(rows, out_f, in_f).tb()
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
    products(rec, dx, dw, dy, x, w, accumulate_dx, accumulate_params);
    if let Some(db) = db {
        bias_backward(rec, db, dy, accumulate_params);
    }
}

/// [`linear_backward`] with f16 products (mixed precision): `x` and `w` are f16, `dy` is an f32
/// loss-scaled gradient that is rounded to f16 for the products (raising `overflow` where it
/// leaves f16's range, see [`crate::kernels::loss_scale`]); dx, dW and db are f32, the products
/// accumulate in f32.
#[allow(clippy::too_many_arguments)]
pub fn linear_backward_half(
    rec: &mut Recorder,
    dx: Option<&Tensor>,
    dw: &Tensor,
    db: Option<&Tensor>,
    dy: &Tensor,
    (x, w): (&Tensor, &Tensor),
    overflow: &Tensor,
    accumulate_dx: bool,
    accumulate_params: bool,
) {
    assert!(
        x.dtype() == DType::F16 && w.dtype() == DType::F16,
        "linear_backward_half: x and w must be f16"
    );
    let dy_h = rec.gpu().empty_as(dy.shape(), DType::F16);
    cast_checked(rec, &dy_h, dy, overflow);
    products(rec, dx, dw, &dy_h, x, w, accumulate_dx, accumulate_params);
    drop(dy_h);
    if let Some(db) = db {
        bias_backward(rec, db, dy, accumulate_params);
    }
}

/// db (+)= Σ_rows dy.
fn bias_backward(rec: &mut Recorder, db: &Tensor, dy: &Tensor, accumulate: bool) {
    let out_f = db.numel();
    sum_rows(rec, db, dy, dy.numel() / out_f, out_f, 1.0, accumulate);
}

/// dx (+)= dy·W and dW (+)= dyᵀ·x.
#[allow(clippy::too_many_arguments)]
fn products(
    rec: &mut Recorder,
    dx: Option<&Tensor>,
    dw: &Tensor,
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
}
