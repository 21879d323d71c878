//! Rotary position embedding on a fused qkv buffer, in place (shaders/rope.wgsl).

use crate::gpu::{grid_1d, Access::*, Kernel, Recorder, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    tokens: u32,
    prefix: u32,
    patches: u32,
    heads: u32,
    head_dim: u32,
    row: u32,
    dim: u32,
    inverse: u32,
    _pad: [u32; 3],
}

/// Turns the patch tokens' queries and keys (or, inverse, their gradients) in place.
pub static ROPE_APPLY: Kernel = Kernel::new::<Params>(
    "rope",
    "rope_apply",
    &[(1, Read), (2, Read), (3, ReadWrite)],
);

/// Where the rotated tokens sit in a fused qkv buffer [B, N, 3D].
#[derive(Clone, Copy, Debug)]
pub struct RopeDims {
    /// Images.
    pub batch: usize,
    /// Tokens per image.
    pub tokens: usize,
    /// Leading tokens left as they are (CLS and registers).
    pub prefix: usize,
    /// Attention heads.
    pub heads: usize,
    /// Width of one head (a multiple of 2).
    pub head_dim: usize,
}

/// Rotates q and k of tokens [prefix, N) of `qkv` [B, N, 3·heads·head_dim] in place with the
/// tables `cos`, `sin` [N − prefix, head_dim]. `inverse` applies the transpose (the backward).
pub fn rope_apply(
    rec: &mut Recorder,
    qkv: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    d: RopeDims,
    inverse: bool,
) {
    let dim = d.heads * d.head_dim;
    let patches = d.tokens.saturating_sub(d.prefix);
    assert_eq!(
        qkv.numel(),
        d.batch * d.tokens * 3 * dim,
        "rope_apply: qkv shape"
    );
    assert!(
        d.head_dim.is_multiple_of(2) && d.prefix <= d.tokens,
        "rope_apply: head dim {} / prefix {}",
        d.head_dim,
        d.prefix
    );
    assert!(
        cos.numel() == patches * d.head_dim && sin.numel() == cos.numel(),
        "rope_apply: tables must be [{patches}, {}]",
        d.head_dim
    );
    let n = d.batch * patches * 2 * d.heads * (d.head_dim / 2);
    if n == 0 {
        return;
    }
    let p = Params {
        batch: d.batch as u32,
        tokens: d.tokens as u32,
        prefix: d.prefix as u32,
        patches: patches as u32,
        heads: d.heads as u32,
        head_dim: d.head_dim as u32,
        row: 3 * dim as u32,
        dim: dim as u32,
        inverse: super::flag(inverse),
        _pad: [0; 3],
    };
    rec.dispatch(&ROPE_APPLY, &p, &[cos, sin, qkv], grid_1d(n.div_ceil(256)));
}
