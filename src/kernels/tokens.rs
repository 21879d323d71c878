//! Token assembly: CLS, registers, mask token and position embeddings (shaders/tokens.wgsl).

use crate::gpu::{grid_1d, Access::*, Kernel, Recorder, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    n_patches: u32,
    dim: u32,
    registers: u32,
    use_mask: u32,
    pos_cls_off: u32,
    pos_patch_off: u32,
    pos_shared: u32,
    use_pos: u32,
    _pad: [u32; 3],
}

/// [CLS, registers, patches] + positions.
pub static TOKENS_FORWARD: Kernel = Kernel::new::<Params>(
    "tokens",
    "tokens_forward",
    &[
        (1, Read),
        (2, Read),
        (3, Read),
        (4, Read),
        (5, Read),
        (6, Read),
        (7, Read),
        (8, ReadWrite),
    ],
);
/// Patch-embedding gradients.
pub static TOKENS_BACKWARD_PATCHES: Kernel = Kernel::new::<Params>(
    "tokens",
    "tokens_backward_patches",
    &[(7, Read), (9, Read), (10, ReadWrite)],
);
/// CLS, register and position gradients (+=).
pub static TOKENS_BACKWARD_PARAMS: Kernel = Kernel::new::<Params>(
    "tokens",
    "tokens_backward_params",
    &[
        (9, Read),
        (11, ReadWrite),
        (12, ReadWrite),
        (13, ReadWrite),
        (14, ReadWrite),
    ],
);
/// The mask token's gradient in partial sums over chunks of patch rows.
pub static TOKENS_BACKWARD_MASK: Kernel = Kernel::new::<Params>(
    "tokens",
    "tokens_backward_mask",
    &[(7, Read), (9, Read), (8, ReadWrite)],
);

/// Where the position embeddings come from: the CLS entry and the patch grid, each a tensor
/// with an element offset (the stored [1+M², D] table serves both when no resize is needed).
#[derive(Clone, Copy, Debug)]
pub struct PosSource<'a> {
    /// Tensor holding the CLS position.
    pub cls: &'a Tensor,
    /// Element offset of the CLS position in it.
    pub cls_off: usize,
    /// Tensor holding the P patch positions [P, D].
    pub patch: &'a Tensor,
    /// Element offset of patch position 0 in it.
    pub patch_off: usize,
}

/// Sizes of one token assembly.
#[derive(Clone, Copy, Debug)]
pub struct TokenDims {
    /// Images.
    pub batch: usize,
    /// Patches per image.
    pub n_patches: usize,
    /// Width.
    pub dim: usize,
    /// Register tokens.
    pub registers: usize,
}

impl TokenDims {
    /// Tokens per image: 1 + registers + patches.
    pub fn tokens(&self) -> usize {
        1 + self.registers + self.n_patches
    }
    fn params(&self, use_mask: bool, pos: Option<&PosSource>) -> Params {
        let (cls_off, patch_off) = pos.map_or((0, 0), |p| (p.cls_off, p.patch_off));
        Params {
            batch: self.batch as u32,
            n_patches: self.n_patches as u32,
            dim: self.dim as u32,
            registers: self.registers as u32,
            use_mask: use_mask as u32,
            pos_cls_off: cls_off as u32,
            pos_patch_off: patch_off as u32,
            pos_shared: 0,
            use_pos: u32::from(pos.is_some()),
            _pad: [0; 3],
        }
    }
}

/// The learned token tensors of a backbone.
#[derive(Clone, Copy, Debug)]
pub struct TokenParams<'a> {
    /// CLS token `[D]`.
    pub cls: &'a Tensor,
    /// Register tokens [R, D] (`None` without registers).
    pub registers: Option<&'a Tensor>,
    /// Mask token `[D]`.
    pub mask_token: &'a Tensor,
}

/// out [B, 1+R+P, D] from patch embeddings [B, P, D], with `mask` [B, P] (1 = masked) if given.
/// `pos` is `None` for a model without position embeddings (DINOv3).
#[allow(clippy::too_many_arguments)]
pub fn tokens_forward(
    rec: &mut Recorder,
    out: &Tensor,
    patches: &Tensor,
    t: TokenParams,
    pos: Option<PosSource>,
    mask: Option<&Tensor>,
    d: TokenDims,
) {
    assert_eq!(
        patches.numel(),
        d.batch * d.n_patches * d.dim,
        "tokens_forward: patches shape"
    );
    assert_eq!(
        out.numel(),
        d.batch * d.tokens() * d.dim,
        "tokens_forward: out shape"
    );
    assert_eq!(
        t.registers.map_or(0, |r| r.numel()),
        d.registers * d.dim,
        "tokens_forward: registers shape"
    );
    if let Some(pos) = &pos {
        assert!(
            pos.patch.numel() >= pos.patch_off + d.n_patches * d.dim,
            "tokens_forward: position grid too small"
        );
    }
    let gpu = rec.gpu();
    let dummy = gpu.dummy_read.clone();
    let regs = t.registers.cloned().unwrap_or_else(|| dummy.clone());
    let m = mask.cloned().unwrap_or_else(|| dummy.clone());
    if let Some(m) = mask {
        assert_eq!(
            m.numel(),
            d.batch * d.n_patches,
            "tokens_forward: mask shape"
        );
    }
    let p = d.params(mask.is_some(), pos.as_ref());
    let (pos_cls, pos_patch) = pos.map_or((&dummy, &dummy), |p| (p.cls, p.patch));
    rec.dispatch(
        &TOKENS_FORWARD,
        &p,
        &[
            patches,
            t.cls,
            &regs,
            t.mask_token,
            pos_cls,
            pos_patch,
            &m,
            out,
        ],
        grid_1d(out.numel().div_ceil(256)),
    );
}

/// Gradients of the assembly: d_patches is written; d_cls, d_regs, the position gradients
/// (same offsets as the forward's `pos`; `None` without positions) and d_mask_token are
/// accumulated.
#[allow(clippy::too_many_arguments)]
pub fn tokens_backward(
    rec: &mut Recorder,
    d_patches: Option<&Tensor>,
    grads: TokenParams,
    d_pos: Option<PosSource>,
    dout: &Tensor,
    mask: Option<&Tensor>,
    d: TokenDims,
) {
    assert_eq!(
        dout.numel(),
        d.batch * d.tokens() * d.dim,
        "tokens_backward: dout shape"
    );
    let gpu = rec.gpu();
    let m = mask.cloned().unwrap_or_else(|| gpu.dummy_read.clone());
    let p = d.params(mask.is_some(), d_pos.as_ref());
    if let Some(dp) = d_patches {
        assert_eq!(
            dp.numel(),
            d.batch * d.n_patches * d.dim,
            "tokens_backward: d_patches shape"
        );
        rec.dispatch(
            &TOKENS_BACKWARD_PATCHES,
            &p,
            &[&m, dout, dp],
            grid_1d(dp.numel().div_ceil(256)),
        );
    }
    let regs = grads
        .registers
        .cloned()
        .unwrap_or_else(|| gpu.dummy_write.clone());
    let rows = d.tokens();
    let dummy = gpu.dummy_write2.clone();
    // Without positions nothing is written there, but the bindings need distinct buffers.
    let scratch;
    let (d_pos_cls, d_pos_patch) = match &d_pos {
        Some(s) => (s.cls, s.patch),
        None => {
            scratch = gpu.empty(&[1]);
            (&dummy, &scratch)
        }
    };
    let shared = d_pos.is_some()
        && d_pos_cls.same_buffer(d_pos_patch)
        && d_pos_cls.offset() == d_pos_patch.offset();
    let p = Params {
        pos_shared: u32::from(shared),
        ..p
    };
    // One binding of a shared table: WebGPU rejects two writable views of one buffer.
    let cls_bound = if shared { &dummy } else { d_pos_cls };
    rec.dispatch(
        &TOKENS_BACKWARD_PARAMS,
        &p,
        &[dout, grads.cls, &regs, cls_bound, d_pos_patch],
        grid_1d((rows * d.dim).div_ceil(256)),
    );
    if mask.is_some() {
        let patch_rows = d.batch * d.n_patches;
        let chunks = patch_rows.div_ceil(256);
        let partial = gpu.empty(&[chunks, d.dim]);
        let grid = [d.dim.div_ceil(64) as u32, chunks as u32, 1];
        rec.dispatch(&TOKENS_BACKWARD_MASK, &p, &[&m, dout, &partial], grid);
        super::reduce::sum_rows(rec, grads.mask_token, &partial, chunks, d.dim, 1.0, true);
    }
}
