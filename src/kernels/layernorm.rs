//! Layer norm with eps as a parameter (shaders/layernorm.wgsl).

use super::reduce::sum_rows_at;
use crate::gpu::{Access::*, Kernel, Recorder, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    dim: u32,
    accumulate: u32,
    chunk: u32,
    eps: f32,
    lanes: u32,
    _pad: [u32; 2],
}

use super::{row_grid16 as grid, row_lanes16 as lanes};

const B: &[(u32, crate::gpu::Access)] = &[
    (1, Read),
    (2, Read),
    (3, Read),
    (4, ReadWrite),
    (5, ReadWrite),
    (6, ReadWrite),
];
/// y, mean, rstd from x, w, b.
pub static LN_FORWARD: Kernel = Kernel::new::<Params>("layernorm", "layernorm_forward", B);
/// dx from x, w, dy, mean, rstd.
pub static LN_BACKWARD: Kernel = Kernel::new::<Params>("layernorm", "layernorm_backward", B);
/// [`LN_FORWARD`] reducing through subgroup shuffles (same results to the bit).
pub static LN_FORWARD_SG: Kernel = Kernel::new::<Params>("layernorm_sg", "layernorm_forward", B);
/// [`LN_BACKWARD`] reducing through subgroup shuffles (same results to the bit).
pub static LN_BACKWARD_SG: Kernel = Kernel::new::<Params>("layernorm_sg", "layernorm_backward", B);
/// Partial dweight/dbias sums per chunk of rows.
pub static LN_BACKWARD_PARAMS: Kernel =
    Kernel::new::<Params>("layernorm", "layernorm_backward_params", B);

const CHUNK: usize = 64;

/// What the forward pass keeps for the backward pass.
pub struct LayerNormSaved {
    /// Row means `[rows]`.
    pub mean: Tensor,
    /// Row 1/sqrt(var + eps) `[rows]`.
    pub rstd: Tensor,
}

/// y = layer_norm(x)·w + b over the last dimension (dim = w.numel()).
pub fn layernorm_forward(
    rec: &mut Recorder,
    y: &Tensor,
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    eps: f32,
) -> LayerNormSaved {
    let dim = w.numel();
    let rows = x.numel() / dim;
    assert!(
        rows * dim == x.numel() && y.numel() == x.numel() && b.numel() == dim,
        "layernorm_forward: shapes"
    );
    let gpu = rec.gpu();
    let mean = gpu.empty(&[rows]);
    let rstd = gpu.empty(&[rows]);
    let p = Params {
        rows: rows as u32,
        dim: dim as u32,
        accumulate: 0,
        chunk: 0,
        eps,
        lanes: lanes(rec, dim),
        _pad: [0; 2],
    };
    let kernel = match super::row_subgroups(rec) {
        true => &LN_FORWARD_SG,
        false => &LN_FORWARD,
    };
    rec.dispatch(
        kernel,
        &p,
        &[x, w, b, y, &mean, &rstd],
        grid(rec, rows, dim),
    );
    LayerNormSaved { mean, rstd }
}

/// dx (+)= ∂L/∂x; dw and db (+)= their gradients (summed over rows, always accumulated when
/// `accumulate_params`).
#[allow(clippy::too_many_arguments)]
pub fn layernorm_backward(
    rec: &mut Recorder,
    dx: &Tensor,
    dw: &Tensor,
    db: &Tensor,
    dy: &Tensor,
    x: &Tensor,
    w: &Tensor,
    saved: &LayerNormSaved,
    accumulate_dx: bool,
    accumulate_params: bool,
) {
    let dim = w.numel();
    let rows = x.numel() / dim;
    assert!(
        dx.numel() == x.numel() && dy.numel() == x.numel(),
        "layernorm_backward: shapes"
    );
    assert!(
        dw.numel() == dim && db.numel() == dim,
        "layernorm_backward: parameter gradient shapes"
    );
    let p = Params {
        rows: rows as u32,
        dim: dim as u32,
        accumulate: super::flag(accumulate_dx),
        chunk: CHUNK as u32,
        eps: 0.0,
        lanes: lanes(rec, dim),
        _pad: [0; 2],
    };
    let kernel = match super::row_subgroups(rec) {
        true => &LN_BACKWARD_SG,
        false => &LN_BACKWARD,
    };
    rec.dispatch(
        kernel,
        &p,
        &[x, w, dy, dx, &saved.mean, &saved.rstd],
        grid(rec, rows, dim),
    );
    let chunks = rows.div_ceil(CHUNK).max(1);
    let partial = rec.gpu().empty(&[2, chunks, dim]);
    rec.dispatch(
        &LN_BACKWARD_PARAMS,
        &p,
        &[x, w, dy, &partial, &saved.mean, &saved.rstd],
        [dim.div_ceil(64) as u32, chunks as u32, 1],
    );
    // partial is [2, chunks, dim]: Σ dy⊙x̂ then Σ dy.
    sum_rows_at(rec, dw, &partial, 0, chunks, dim, 1.0, accumulate_params);
    sum_rows_at(
        rec,
        db,
        &partial,
        chunks * dim,
        chunks,
        dim,
        1.0,
        accumulate_params,
    );
}
