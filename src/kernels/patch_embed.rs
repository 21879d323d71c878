//! Patch embedding (stride = kernel convolution) as im2col + matmul (shaders/patch_embed.wgsl).

use super::matmul::{matmul, Epilogue, MatmulDims};
use super::reduce::sum_rows;
use crate::gpu::{grid_1d, Access::*, Kernel, Recorder, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    channels: u32,
    height: u32,
    width: u32,
    patch: u32,
    grid_h: u32,
    grid_w: u32,
    accumulate: u32,
}

/// Pixels → patch rows.
pub static IM2COL: Kernel =
    Kernel::new::<Params>("patch_embed", "patch_im2col", &[(1, Read), (2, ReadWrite)]);
/// Patch-row gradients → pixel gradients.
pub static COL2IM: Kernel =
    Kernel::new::<Params>("patch_embed", "patch_col2im", &[(1, Read), (2, ReadWrite)]);

/// Image batch geometry: x is [batch, channels, height, width], patches p×p.
#[derive(Clone, Copy, Debug)]
pub struct PatchDims {
    /// Images.
    pub batch: usize,
    /// Channels.
    pub channels: usize,
    /// Pixel height.
    pub height: usize,
    /// Pixel width.
    pub width: usize,
    /// Patch size (14 for DINOv2, 16 for DINOv3).
    pub patch: usize,
}

impl PatchDims {
    /// Patch rows and columns (pixels beyond the last full patch are ignored, as by conv2d).
    pub fn grid(&self) -> (usize, usize) {
        (self.height / self.patch, self.width / self.patch)
    }
    fn params(&self, accumulate: bool) -> Params {
        let (gh, gw) = self.grid();
        Params {
            batch: self.batch as u32,
            channels: self.channels as u32,
            height: self.height as u32,
            width: self.width as u32,
            patch: self.patch as u32,
            grid_h: gh as u32,
            grid_w: gw as u32,
            accumulate: super::flag(accumulate),
        }
    }
    fn cols_shape(&self) -> [usize; 2] {
        let (gh, gw) = self.grid();
        [
            self.batch * gh * gw,
            self.channels * self.patch * self.patch,
        ]
    }
}

/// y [batch, patches, D] = conv(x, W [D, C, p, p]) + bias; returns the patch rows (im2col) that
/// the backward pass needs for dW.
pub fn patch_embed_forward(
    rec: &mut Recorder,
    y: &Tensor,
    x: &Tensor,
    w: &Tensor,
    bias: &Tensor,
    d: PatchDims,
) -> Tensor {
    let dim = w.shape()[0];
    let [rows, width] = d.cols_shape();
    assert_eq!(
        x.numel(),
        d.batch * d.channels * d.height * d.width,
        "patch_embed: x shape"
    );
    assert_eq!(w.numel(), dim * width, "patch_embed: weight shape");
    assert_eq!(y.numel(), rows * dim, "patch_embed: y shape");
    let cols = rec.gpu().empty_as(&[rows, width], x.dtype());
    rec.dispatch(
        &IM2COL,
        &d.params(false),
        &[x, &cols],
        grid_1d((rows * width).div_ceil(256)),
    );
    matmul(
        rec,
        y,
        &cols,
        w,
        MatmulDims::new(rows, dim, width).tb(),
        1.0,
        false,
        Epilogue::Bias(bias),
    );
    cols
}

/// dx = ∂L/∂pixels (when asked), dW and dbias (+)= their gradients.
#[allow(clippy::too_many_arguments)]
pub fn patch_embed_backward(
    rec: &mut Recorder,
    dx: Option<&Tensor>,
    dw: &Tensor,
    dbias: &Tensor,
    dy: &Tensor,
    cols: &Tensor,
    w: &Tensor,
    d: PatchDims,
    accumulate_params: bool,
) {
    let dim = w.shape()[0];
    let [rows, width] = d.cols_shape();
    assert_eq!(dy.numel(), rows * dim, "patch_embed_backward: dy shape");
    matmul(
        rec,
        dw,
        dy,
        cols,
        MatmulDims::new(dim, width, rows).ta(),
        1.0,
        accumulate_params,
        Epilogue::None,
    );
    sum_rows(rec, dbias, dy, rows, dim, 1.0, accumulate_params);
    if let Some(dx) = dx {
        let dcols = rec.gpu().empty(&[rows, width]);
        matmul(
            rec,
            &dcols,
            dy,
            w,
            MatmulDims::new(rows, width, dim),
            1.0,
            false,
            Epilogue::None,
        );
        let n = dx.numel();
        rec.dispatch(
            &COL2IM,
            &d.params(false),
            &[&dcols, dx],
            grid_1d(n.div_ceil(256)),
        );
    }
}
