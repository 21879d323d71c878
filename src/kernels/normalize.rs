//! Row L2 normalisation and weight normalisation (shaders/normalize.wgsl).

use super::{row_grid, row_lanes};
use crate::gpu::{Access::*, Kernel, Recorder, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    accumulate: u32,
    lanes: u32,
    eps: f32,
    _pad1: [f32; 3],
}

const B: &[(u32, crate::gpu::Access)] = &[
    (1, Read),
    (2, Read),
    (3, Read),
    (4, ReadWrite),
    (5, ReadWrite),
];
/// y = x / max(‖x‖, eps).
pub static L2NORM_FORWARD: Kernel = Kernel::new::<Params>("normalize", "l2norm_forward", B);
/// Its backward.
pub static L2NORM_BACKWARD: Kernel = Kernel::new::<Params>("normalize", "l2norm_backward", B);
/// W = g·v/‖v‖ per row.
pub static WEIGHTNORM_FORWARD: Kernel = Kernel::new::<Params>("normalize", "weightnorm_forward", B);
/// Its backward (dv, dg +=).
pub static WEIGHTNORM_BACKWARD: Kernel =
    Kernel::new::<Params>("normalize", "weightnorm_backward", B);

fn params(rec: &Recorder, rows: usize, cols: usize, eps: f32, accumulate: bool) -> Params {
    Params {
        rows: rows as u32,
        cols: cols as u32,
        accumulate: accumulate as u32,
        lanes: row_lanes(rec, cols),
        eps,
        _pad1: [0.0; 3],
    }
}

/// y = x / max(‖x‖, eps) over rows of width `cols`.
pub fn l2norm_forward(rec: &mut Recorder, y: &Tensor, x: &Tensor, cols: usize, eps: f32) {
    let rows = x.numel() / cols;
    assert!(
        rows * cols == x.numel() && y.numel() == x.numel(),
        "l2norm_forward: shapes"
    );
    let gpu = rec.gpu();
    let norms = gpu.empty(&[rows]);
    let d = gpu.dummy_read.clone();
    rec.dispatch(
        &L2NORM_FORWARD,
        &params(rec, rows, cols, eps, false),
        &[x, &d, &d, y, &norms],
        row_grid(rec, rows, cols),
    );
}

/// dx (+)= the gradient through the normalisation of x.
pub fn l2norm_backward(
    rec: &mut Recorder,
    dx: &Tensor,
    dy: &Tensor,
    x: &Tensor,
    cols: usize,
    eps: f32,
    accumulate: bool,
) {
    let rows = x.numel() / cols;
    assert!(
        dx.numel() == x.numel() && dy.numel() == x.numel(),
        "l2norm_backward: shapes"
    );
    let gpu = rec.gpu();
    let (d, w) = (gpu.dummy_read.clone(), gpu.dummy_write.clone());
    rec.dispatch(
        &L2NORM_BACKWARD,
        &params(rec, rows, cols, eps, accumulate),
        &[x, dy, &d, dx, &w],
        row_grid(rec, rows, cols),
    );
}

/// W `[K, C]` = `g[k]·v[k]/‖v[k]‖`.
pub fn weightnorm_forward(rec: &mut Recorder, w: &Tensor, v: &Tensor, g: &Tensor) {
    let rows = g.numel();
    let cols = v.numel() / rows;
    assert!(
        rows * cols == v.numel() && w.numel() == v.numel(),
        "weightnorm_forward: shapes"
    );
    let gpu = rec.gpu();
    let (d, wr) = (gpu.dummy_read.clone(), gpu.dummy_write.clone());
    rec.dispatch(
        &WEIGHTNORM_FORWARD,
        &params(rec, rows, cols, 0.0, false),
        &[v, &d, g, w, &wr],
        row_grid(rec, rows, cols),
    );
}

/// dv += and dg += the gradients of W = g·v/‖v‖ given dW.
pub fn weightnorm_backward(
    rec: &mut Recorder,
    dv: &Tensor,
    dg: &Tensor,
    dw: &Tensor,
    v: &Tensor,
    g: &Tensor,
) {
    let rows = g.numel();
    let cols = v.numel() / rows;
    assert!(
        dv.numel() == v.numel() && dw.numel() == v.numel() && dg.numel() == rows,
        "weightnorm_backward: shapes"
    );
    rec.dispatch(
        &WEIGHTNORM_BACKWARD,
        &params(rec, rows, cols, 0.0, true),
        &[v, dw, g, dv, dg],
        row_grid(rec, rows, cols),
    );
}
