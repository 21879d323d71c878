//! Row softmax (shaders/softmax.wgsl).

use crate::gpu::{Access::*, Kernel, Recorder, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    accumulate: u32,
    lanes: u32,
    scale: f32,
    _pad1: [u32; 3],
}

const B: &[(u32, crate::gpu::Access)] = &[(1, Read), (2, Read), (3, ReadWrite)];
/// y = softmax(scale·x).
pub static SOFTMAX_FORWARD: Kernel = Kernel::new::<Params>("softmax", "softmax_forward", B);
/// dx = scale·y⊙(dy − Σ dy⊙y).
pub static SOFTMAX_BACKWARD: Kernel = Kernel::new::<Params>("softmax", "softmax_backward", B);

/// [`SOFTMAX_FORWARD`] reducing through subgroup shuffles (same results to the bit).
pub static SOFTMAX_FORWARD_SG: Kernel = Kernel::new::<Params>("softmax_sg", "softmax_forward", B);
/// [`SOFTMAX_BACKWARD`] reducing through subgroup shuffles (same results to the bit).
pub static SOFTMAX_BACKWARD_SG: Kernel = Kernel::new::<Params>("softmax_sg", "softmax_backward", B);

/// y = softmax(scale·x) along rows of width `cols`.
pub fn softmax_forward(rec: &mut Recorder, y: &Tensor, x: &Tensor, cols: usize, scale: f32) {
    let rows = x.numel() / cols;
    assert!(
        rows * cols == x.numel() && y.numel() == x.numel(),
        "softmax_forward: shapes"
    );
    let p = Params {
        rows: rows as u32,
        cols: cols as u32,
        accumulate: 0,
        lanes: super::row_lanes16(rec, cols),
        scale,
        _pad1: [0; 3],
    };
    let dummy = rec.gpu().dummy_read.clone();
    let kernel = match super::row_subgroups(rec) {
        true => &SOFTMAX_FORWARD_SG,
        false => &SOFTMAX_FORWARD,
    };
    rec.dispatch(
        kernel,
        &p,
        &[x, &dummy, y],
        super::row_grid16(rec, rows, cols),
    );
}

/// dx (+)= scale·y⊙(dy − Σ dy⊙y), with y the forward output.
pub fn softmax_backward(
    rec: &mut Recorder,
    dx: &Tensor,
    dy: &Tensor,
    y: &Tensor,
    cols: usize,
    scale: f32,
    accumulate: bool,
) {
    let rows = y.numel() / cols;
    assert!(
        dx.numel() == y.numel() && dy.numel() == y.numel(),
        "softmax_backward: shapes"
    );
    let p = Params {
        rows: rows as u32,
        cols: cols as u32,
        accumulate: super::flag(accumulate),
        lanes: super::row_lanes16(rec, cols),
        scale,
        _pad1: [0; 3],
    };
    let kernel = match super::row_subgroups(rec) {
        true => &SOFTMAX_BACKWARD_SG,
        false => &SOFTMAX_BACKWARD,
    };
    rec.dispatch(kernel, &p, &[y, dy, dx], super::row_grid16(rec, rows, cols));
}
