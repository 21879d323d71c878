//! Conversions between f32 and f16 tensors (shaders/cast.wgsl); the CPU twin is
//! [`crate::half::round_trip`].

use crate::gpu::{grid_1d, Access::*, DType, Kernel, Recorder, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    _pad: [u32; 3],
}

/// dst (f16) = src (f32), rounded to nearest.
pub static CAST_TO_S: Kernel =
    Kernel::new::<Params>("cast", "cast_to_s", &[(1, Read), (2, ReadWrite)]);
/// dst (f32) = src (f16), exact.
pub static CAST_TO_F32: Kernel =
    Kernel::new::<Params>("cast", "cast_to_f32", &[(3, Read), (4, ReadWrite)]);

/// dst (f16) = src (f32) for loss-scaled gradients: values past f16's range raise a flag.
pub static CAST_TO_S_CHECKED: Kernel = Kernel::new::<Params>(
    "cast",
    "cast_to_s_checked",
    &[(1, Read), (2, ReadWrite), (5, ReadWrite)],
);

/// dst = src in dst's element type (a plain copy when the types agree).
pub fn cast(rec: &mut Recorder, dst: &Tensor, src: &Tensor) {
    let n = src.numel();
    assert_eq!(dst.numel(), n, "cast: dst and src sizes");
    let p = Params {
        n: n as u32,
        _pad: [0; 3],
    };
    let kernel = match (src.dtype(), dst.dtype()) {
        (DType::F32, DType::F16) => &CAST_TO_S,
        (DType::F16, DType::F32) => &CAST_TO_F32,
        _ => return rec.copy(src, dst),
    };
    rec.dispatch(kernel, &p, &[src, dst], grid_1d(n.div_ceil(256)));
}

/// A new tensor holding `src` in `dtype` (`src` itself when it already is).
pub fn to_dtype(rec: &mut Recorder, src: &Tensor, dtype: DType) -> Tensor {
    if src.dtype() == dtype {
        return src.clone();
    }
    let dst = rec.gpu().empty_as(src.shape(), dtype);
    cast(rec, &dst, src);
    dst
}

/// dst (f16) = src (f32), where `src` is a loss-scaled gradient: a value that would round past
/// f16's range (or is not finite) sets `overflow[0]` non-zero (as u32 bits) and is stored as 0.
/// The CPU twin is [`crate::half::round_checked`].
pub fn cast_checked(rec: &mut Recorder, dst: &Tensor, src: &Tensor, overflow: &Tensor) {
    let n = src.numel();
    assert_eq!(dst.numel(), n, "cast_checked: dst and src sizes");
    assert!(
        src.dtype() == DType::F32 && dst.dtype() == DType::F16,
        "cast_checked: f32 to f16 only"
    );
    let p = Params {
        n: n as u32,
        _pad: [0; 3],
    };
    rec.dispatch(
        &CAST_TO_S_CHECKED,
        &p,
        &[src, dst, overflow],
        grid_1d(n.div_ceil(256)),
    );
}
