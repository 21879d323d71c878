//! Bicubic resize of a grid (position embeddings, or a batch of images' patch features),
//! plain or antialiased, with backward (shaders/interp.wgsl). The per-axis weights
//! ([`axis_weights`]) are computed on the host; the CPU twin (`cpu::interp`) resizes by the same.

use crate::gpu::{grid_1d, Access::*, Kernel, Recorder, Tensor};

/// Which bicubic variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterpMode {
    /// Keys cubic a = −0.75, half-pixel centres, clamped edge taps (PyTorch antialias=False;
    /// Hugging Face Dinov2Model).
    Bicubic,
    /// PIL-style antialiased cubic a = −0.5, support scaled when downsampling, weights
    /// normalised (PyTorch antialias=True; Dinov2WithRegistersModel).
    BicubicAntialias,
}

fn cubic(x: f64, a: f64) -> f64 {
    let x = x.abs();
    if x <= 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    } else {
        0.0
    }
}

/// Dense [n_out, n_in] weight matrix of a 1-D resize; row i gives output i.
pub fn axis_weights(n_in: usize, n_out: usize, mode: InterpMode) -> Vec<f32> {
    let mut w = vec![0.0f64; n_out * n_in];
    // PyTorch computes the scale in float32 as in/out.
    let s = (n_in as f32 / n_out as f32) as f64;
    for i in 0..n_out {
        let row = &mut w[i * n_in..(i + 1) * n_in];
        match mode {
            InterpMode::Bicubic => {
                let src = (i as f64 + 0.5) * s - 0.5;
                let f = src.floor();
                let t = src - f;
                for k in -1i64..=2 {
                    let idx = (f as i64 + k).clamp(0, n_in as i64 - 1) as usize;
                    row[idx] += cubic(t - k as f64, -0.75);
                }
            }
            InterpMode::BicubicAntialias => {
                let (support, inv) = if s >= 1.0 {
                    (2.0 * s, 1.0 / s)
                } else {
                    (2.0, 1.0)
                };
                let c = (i as f64 + 0.5) * s;
                let lo = ((c - support + 0.5).floor() as i64).max(0) as usize;
                let hi = ((c + support + 0.5).floor() as i64).min(n_in as i64).max(0) as usize;
                let mut total = 0.0;
                for (j, r) in row.iter_mut().enumerate().take(hi).skip(lo) {
                    let v = cubic((j as f64 - c + 0.5) * inv, -0.5);
                    *r = v;
                    total += v;
                }
                if total != 0.0 {
                    for r in &mut row[lo..hi] {
                        *r /= total;
                    }
                }
            }
        }
    }
    w.into_iter().map(|v| v as f32).collect()
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    channels: u32,
    h_in: u32,
    w_in: u32,
    h_out: u32,
    w_out: u32,
    x_cs: u32,
    x_ss: u32,
    y_cs: u32,
    y_ss: u32,
    accumulate: u32,
    x_off: u32,
    y_off: u32,
    batch: u32,
    x_bs: u32,
    y_bs: u32,
    _pad: u32,
}

const B: &[(u32, crate::gpu::Access)] = &[(1, Read), (2, Read), (3, Read), (4, ReadWrite)];
/// y from x.
pub static INTERP_FORWARD: Kernel = Kernel::new::<Params>("interp", "interp_forward", B);
/// dx from dy.
pub static INTERP_BACKWARD: Kernel = Kernel::new::<Params>("interp", "interp_backward", B);

/// Memory order of a grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GridLayout {
    /// [C, H, W] (PyTorch's NCHW with N = 1).
    ChannelFirst,
    /// [H·W, C] (a position-embedding table without its CLS row).
    ChannelLast,
}

/// A resize of a `channels`-deep grid from h_in×w_in to h_out×w_out.
#[derive(Clone, Copy, Debug)]
pub struct InterpDims {
    /// Channels.
    pub channels: usize,
    /// Input rows.
    pub h_in: usize,
    /// Input columns.
    pub w_in: usize,
    /// Output rows.
    pub h_out: usize,
    /// Output columns.
    pub w_out: usize,
    /// Plain or antialiased bicubic.
    pub mode: InterpMode,
    /// Memory order of input and output.
    pub layout: GridLayout,
}

/// Uploaded per-axis weights of one resize; build once per image size and reuse.
pub struct InterpWeights {
    wy: Tensor,
    wx: Tensor,
    dims: InterpDims,
    x_off: usize,
    /// Grids resized by one call, and the elements from one grid's start to the next in the
    /// input and output (None: one grid).
    batch: Option<(usize, usize, usize)>,
}

impl InterpWeights {
    /// Computes and uploads the weights.
    pub fn new(gpu: &crate::gpu::Gpu, dims: InterpDims) -> Self {
        let wy = axis_weights(dims.h_in, dims.h_out, dims.mode);
        let wx = axis_weights(dims.w_in, dims.w_out, dims.mode);
        InterpWeights {
            wy: gpu.upload(&wy, &[dims.h_out, dims.h_in]),
            wx: gpu.upload(&wx, &[dims.w_out, dims.w_in]),
            dims,
            x_off: 0,
            batch: None,
        }
    }

    /// The input grid starts `offset` elements into the input tensor (a position table's CLS
    /// row comes first).
    pub fn with_input_offset(mut self, offset: usize) -> Self {
        self.x_off = offset;
        self
    }

    /// Each call resizes `grids` grids: grid n of the input starts `x_stride`·n elements after
    /// the first (plus the input offset), grid n of the output `y_stride`·n after its first; so
    /// a batch's patch tokens `[images, tokens, C]` resize in one call, their class and
    /// register rows skipped by the input offset.
    pub fn batched(mut self, grids: usize, x_stride: usize, y_stride: usize) -> Self {
        self.batch = Some((grids, x_stride, y_stride));
        self
    }

    /// (grids, input stride, output stride).
    fn strides(&self) -> (usize, usize, usize) {
        let d = &self.dims;
        self.batch.unwrap_or((
            1,
            self.x_off + d.channels * d.h_in * d.w_in,
            d.channels * d.h_out * d.w_out,
        ))
    }

    /// Checks `x` and `y` hold the grids this resize reads and writes.
    fn check(&self, what: &str, x: &Tensor, y: &Tensor) {
        let d = &self.dims;
        let (n, xs, ys) = self.strides();
        assert!(
            self.x_off + d.channels * d.h_in * d.w_in <= xs && d.channels * d.h_out * d.w_out <= ys,
            "{what}: grids overlap"
        );
        assert_eq!(x.numel(), n * xs, "{what}: input shape");
        assert_eq!(y.numel(), n * ys, "{what}: output shape");
    }

    fn params(&self, accumulate: bool) -> Params {
        let d = &self.dims;
        let (batch, x_bs, y_bs) = self.strides();
        let (x_cs, x_ss, y_cs, y_ss) = match d.layout {
            GridLayout::ChannelFirst => (d.h_in * d.w_in, 1, d.h_out * d.w_out, 1),
            GridLayout::ChannelLast => (1, d.channels, 1, d.channels),
        };
        Params {
            channels: d.channels as u32,
            h_in: d.h_in as u32,
            w_in: d.w_in as u32,
            h_out: d.h_out as u32,
            w_out: d.w_out as u32,
            x_cs: x_cs as u32,
            x_ss: x_ss as u32,
            y_cs: y_cs as u32,
            y_ss: y_ss as u32,
            accumulate: super::flag(accumulate),
            x_off: self.x_off as u32,
            y_off: 0,
            batch: batch as u32,
            x_bs: x_bs as u32,
            y_bs: y_bs as u32,
            _pad: 0,
        }
    }
}

/// y = resize(x).
pub fn interp_forward(rec: &mut Recorder, y: &Tensor, x: &Tensor, w: &InterpWeights) {
    w.check("interp_forward", x, y);
    let d = &w.dims;
    let outputs = w.strides().0 * d.channels * d.h_out * d.w_out;
    rec.dispatch(
        &INTERP_FORWARD,
        &w.params(false),
        &[x, &w.wy, &w.wx, y],
        grid_1d(outputs.div_ceil(256)),
    );
}

/// dx (+)= resizeᵀ(dy).
pub fn interp_backward(
    rec: &mut Recorder,
    dx: &Tensor,
    dy: &Tensor,
    w: &InterpWeights,
    accumulate: bool,
) {
    w.check("interp_backward", dx, dy);
    let d = &w.dims;
    let inputs = w.strides().0 * d.channels * d.h_in * d.w_in;
    rec.dispatch(
        &INTERP_BACKWARD,
        &w.params(accumulate),
        &[dy, &w.wy, &w.wx, dx],
        grid_1d(inputs.div_ceil(256)),
    );
}
