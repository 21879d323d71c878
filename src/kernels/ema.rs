//! Teacher EMA (shaders/ema.wgsl).

use crate::gpu::{grid_1d, Access::*, Kernel, Recorder, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    momentum: f32,
    _pad: [u32; 2],
}

/// teacher = m·teacher + (1 − m)·student.
pub static EMA_UPDATE: Kernel =
    Kernel::new::<Params>("ema", "ema_update", &[(1, Read), (2, ReadWrite)]);

/// ema_update on vec4s.
pub static EMA_UPDATE_V4: Kernel =
    Kernel::new::<Params>("ema", "ema_update_v4", &[(1, Read), (2, ReadWrite)]);

/// teacher ← momentum·teacher + (1 − momentum)·student over flat buffers.
pub fn ema_update(rec: &mut Recorder, teacher: &Tensor, student: &Tensor, momentum: f32) {
    let n = teacher.numel();
    assert_eq!(student.numel(), n, "ema_update: sizes");
    // Piecewise when the flat buffers exceed one storage binding (ViT-S and up on WebGPU).
    for (start, len) in rec.gpu().binding_chunks(n) {
        let (k, count) = if len > 0 && len.is_multiple_of(4) {
            (&EMA_UPDATE_V4, len / 4)
        } else {
            (&EMA_UPDATE, len)
        };
        let p = Params {
            n: count as u32,
            momentum,
            _pad: [0; 2],
        };
        rec.dispatch(
            k,
            &p,
            &[&student.view(start, &[len]), &teacher.view(start, &[len])],
            grid_1d(count.div_ceil(256)),
        );
    }
}
