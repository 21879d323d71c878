//! Exact erf GELU (shaders/gelu.wgsl).

use crate::gpu::{grid_1d, Access::*, Kernel, Recorder, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    accumulate: u32,
    _pad: [u32; 2],
}

/// y = gelu(x).
pub static GELU_FORWARD: Kernel = Kernel::new::<Params>(
    "gelu",
    "gelu_forward",
    &[(1, Read), (2, Read), (3, ReadWrite)],
);
/// dx = dy·gelu'(x).
pub static GELU_BACKWARD: Kernel = Kernel::new::<Params>(
    "gelu",
    "gelu_backward",
    &[(1, Read), (2, Read), (3, ReadWrite)],
);

/// y = gelu(x), elementwise.
pub fn gelu_forward(rec: &mut Recorder, y: &Tensor, x: &Tensor) {
    let n = x.numel();
    assert_eq!(y.numel(), n, "gelu_forward: y and x sizes");
    let p = Params {
        n: n as u32,
        accumulate: 0,
        _pad: [0; 2],
    };
    let dummy = rec.gpu().dummy_read.clone();
    rec.dispatch(&GELU_FORWARD, &p, &[x, &dummy, y], grid_1d(n.div_ceil(256)));
}

/// dx (+)= dy·gelu'(x), with x the forward input.
pub fn gelu_backward(rec: &mut Recorder, dx: &Tensor, dy: &Tensor, x: &Tensor, accumulate: bool) {
    let n = x.numel();
    assert!(dx.numel() == n && dy.numel() == n, "gelu_backward: sizes");
    let p = Params {
        n: n as u32,
        accumulate: super::flag(accumulate),
        _pad: [0; 2],
    };
    rec.dispatch(&GELU_BACKWARD, &p, &[x, dy, dx], grid_1d(n.div_ceil(256)));
}
