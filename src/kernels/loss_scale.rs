//! Dynamic loss scaling for mixed-precision backward passes (shaders/loss_scale.wgsl): the
//! scale, its update and the skip decision stay on the GPU. The CPU twin of the update is
//! [`crate::cpu::optim::loss_scale_update`].

use crate::gpu::{grid_1d, Access::*, Gpu, Kernel, Recorder, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    index: u32,
    interval: u32,
    _pad0: u32,
    max_scale: f32,
    _pad1: [u32; 3],
}

/// Updates the scale after a backward pass and decides whether the step is skipped.
pub static LOSS_SCALE_UPDATE: Kernel = Kernel::new::<Params>(
    "loss_scale",
    "loss_scale_update",
    &[(3, ReadWrite), (4, ReadWrite), (5, Read)],
);

/// `x *= state[index]` (0 where the factor is 0).
pub static SCALE_BY_STATE: Kernel =
    Kernel::new::<Params>("loss_scale", "scale_by_state", &[(1, ReadWrite), (2, Read)]);

/// Index in [`LossScale::state`] of the scale S.
pub const SCALE: usize = 0;
/// Index of the steps skipped so far.
pub const SKIPPED: usize = 2;
/// Index of this step's skip flag (1: overflowed, AdamW skips it).
pub const SKIP: usize = 3;
/// Index of this step's unscaling factor (1/S, or 0 when skipped).
pub const UNSCALE: usize = 4;

/// The scale PyTorch's GradScaler starts from.
pub const INITIAL_SCALE: f32 = 65536.0;
/// Finite steps in a row after which the scale doubles (GradScaler's growth interval).
pub const GROWTH_INTERVAL: u32 = 2000;
/// The largest scale: beyond it gradients would have to be smaller than f32 can usefully scale.
pub const MAX_SCALE: f32 = 4_294_967_296.0;

/// The loss-scaling state of one training run, on the GPU.
pub struct LossScale {
    /// [scale, finite steps in a row, steps skipped, this step skipped, this step's 1/S].
    pub state: Tensor,
    /// Raised (non-zero u32 bits) by `cast_checked` when a scaled gradient leaves f16's range.
    pub overflow: Tensor,
    interval: u32,
}

impl LossScale {
    /// A state starting at `scale`, doubling after `interval` finite steps.
    pub fn new(gpu: &Gpu, scale: f32, interval: u32) -> LossScale {
        LossScale {
            state: gpu.upload(&[scale, 0.0, 0.0, 0.0, 1.0 / scale], &[5]),
            overflow: gpu.upload(&[0.0], &[1]),
            interval: interval.max(1),
        }
    }

    /// x *= S: the gradient entering the backbone's backward pass.
    pub fn scale(&self, rec: &mut Recorder, x: &Tensor) {
        scale_by_state(rec, x, &self.state, SCALE);
    }

    /// After the backward pass: decides from the overflow flag and the gradients' sum of
    /// squares whether this step is skipped, updates S, and unscales `grads` (zeroes them when
    /// skipped, so clipping and the metrics see finite values).
    pub fn unscale(&self, rec: &mut Recorder, grads: &Tensor) {
        let ss = rec.gpu().empty(&[1]);
        super::reduce::reduce(rec, &ss, grads, super::reduce::Reduce::SumSquares, false);
        let p = Params {
            n: 1,
            index: 0,
            interval: self.interval,
            _pad0: 0,
            max_scale: MAX_SCALE,
            _pad1: [0; 3],
        };
        rec.dispatch(
            &LOSS_SCALE_UPDATE,
            &p,
            &[&self.state, &self.overflow, &ss],
            [1, 1, 1],
        );
        scale_by_state(rec, grads, &self.state, UNSCALE);
    }
}

/// `x *= state[index]`, piecewise over storage bindings; a factor of 0 stores 0.
pub fn scale_by_state(rec: &mut Recorder, x: &Tensor, state: &Tensor, index: usize) {
    assert!(
        index < state.numel(),
        "scale_by_state: index past the state"
    );
    for (start, len) in rec.gpu().binding_chunks(x.numel()) {
        let p = Params {
            n: len as u32,
            index: index as u32,
            interval: 0,
            _pad0: 0,
            max_scale: 0.0,
            _pad1: [0; 3],
        };
        rec.dispatch(
            &SCALE_BY_STATE,
            &p,
            &[&x.view(start, &[len]), state],
            grid_1d(len.div_ceil(256)),
        );
    }
}
