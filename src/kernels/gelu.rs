//! Feed-forward activations: exact erf GELU and SwiGLU (shaders/gelu.wgsl).

use crate::gpu::{grid_1d, Access::*, Kernel, Recorder, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    accumulate: u32,
    hidden: u32,
    _pad: u32,
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

/// y = gelu(x) on vec4s.
pub static GELU_FORWARD_V4: Kernel = Kernel::new::<Params>(
    "gelu",
    "gelu_forward_v4",
    &[(1, Read), (2, Read), (3, ReadWrite)],
);
/// dx = dy·gelu'(x) on vec4s.
pub static GELU_BACKWARD_V4: Kernel = Kernel::new::<Params>(
    "gelu",
    "gelu_backward_v4",
    &[(1, Read), (2, Read), (3, ReadWrite)],
);

/// The kernel for `n` elements (vec4 when n is a non-zero multiple of 4) and the count it iterates
/// over.
fn pick(n: usize, scalar: &'static Kernel, v4: &'static Kernel) -> (&'static Kernel, usize) {
    if n > 0 && n.is_multiple_of(4) {
        (v4, n / 4)
    } else {
        (scalar, n)
    }
}

/// y = gelu(x), elementwise.
pub fn gelu_forward(rec: &mut Recorder, y: &Tensor, x: &Tensor) {
    let n = x.numel();
    assert_eq!(y.numel(), n, "gelu_forward: y and x sizes");
    let (k, count) = pick(n, &GELU_FORWARD, &GELU_FORWARD_V4);
    let p = Params {
        n: count as u32,
        accumulate: 0,
        hidden: 1,
        _pad: 0,
    };
    let dummy = rec.gpu().dummy_read.clone();
    rec.dispatch(k, &p, &[x, &dummy, y], grid_1d(count.div_ceil(256)));
}

/// dx (+)= dy·gelu'(x), with x the forward input.
pub fn gelu_backward(rec: &mut Recorder, dx: &Tensor, dy: &Tensor, x: &Tensor, accumulate: bool) {
    let n = x.numel();
    assert!(dx.numel() == n && dy.numel() == n, "gelu_backward: sizes");
    let (k, count) = pick(n, &GELU_BACKWARD, &GELU_BACKWARD_V4);
    let p = Params {
        n: count as u32,
        accumulate: super::flag(accumulate),
        hidden: 1,
        _pad: 0,
    };
    rec.dispatch(k, &p, &[x, dy, dx], grid_1d(count.div_ceil(256)));
}

/// y = silu(x1)·x2.
pub static SWIGLU_FORWARD: Kernel = Kernel::new::<Params>(
    "gelu",
    "swiglu_forward",
    &[(1, Read), (2, Read), (3, ReadWrite)],
);
/// SwiGLU backward.
pub static SWIGLU_BACKWARD: Kernel = Kernel::new::<Params>(
    "gelu",
    "swiglu_backward",
    &[(1, Read), (2, Read), (3, ReadWrite)],
);

/// y [rows, h] = silu(x[:, :h])·x[:, h:] for x [rows, 2h].
pub fn swiglu_forward(rec: &mut Recorder, y: &Tensor, x: &Tensor, hidden: usize) {
    let n = y.numel();
    assert_eq!(x.numel(), 2 * n, "swiglu_forward: x must be [rows, 2h]");
    let p = Params {
        n: n as u32,
        accumulate: 0,
        hidden: hidden as u32,
        _pad: 0,
    };
    let dummy = rec.gpu().dummy_read.clone();
    rec.dispatch(
        &SWIGLU_FORWARD,
        &p,
        &[x, &dummy, y],
        grid_1d(n.div_ceil(256)),
    );
}

/// dx [rows, 2h] (+)= the SwiGLU gradient given dy [rows, h].
pub fn swiglu_backward(
    rec: &mut Recorder,
    dx: &Tensor,
    dy: &Tensor,
    x: &Tensor,
    hidden: usize,
    accumulate: bool,
) {
    let n = dy.numel();
    assert!(
        x.numel() == 2 * n && dx.numel() == 2 * n,
        "swiglu_backward: shapes"
    );
    let p = Params {
        n: n as u32,
        accumulate: super::flag(accumulate),
        hidden: hidden as u32,
        _pad: 0,
    };
    rec.dispatch(&SWIGLU_BACKWARD, &p, &[x, dy, dx], grid_1d(n.div_ceil(256)));
}
