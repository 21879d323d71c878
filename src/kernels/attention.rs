//! Fused flash-style attention, forward and recomputing backward (shaders/attention.wgsl).

use crate::gpu::{grid_1d, Access::*, DType, Kernel, Recorder, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    heads: u32,
    n_q: u32,
    n_k: u32,
    q_off: u32,
    k_off: u32,
    v_off: u32,
    _pad0: u32,
    s_batch: u32,
    s_head: u32,
    s_tok: u32,
    _pad1: u32,
    o_batch: u32,
    o_head: u32,
    o_tok: u32,
    _pad2: u32,
    scale: f32,
    dv_in_res0: u32,
    /// attention_probs: rows of lse per (batch, head), when it holds more than n_q (0: n_q).
    lse_rows: u32,
    _pad3: u32,
}

/// The forward's bindings: Q, K, V, lse, O.
const FORWARD_BINDINGS: &[(u32, crate::gpu::Access)] = &[
    (1, Read),
    (2, Read),
    (3, Read),
    (6, ReadWrite),
    (8, ReadWrite),
];

/// O and lse from Q, K, V.
pub static ATTENTION_FORWARD: Kernel =
    Kernel::new::<Params>("attention", "attention_forward", FORWARD_BINDINGS);
/// Probabilities from Q, K and lse.
pub static ATTENTION_PROBS: Kernel = Kernel::new::<Params>(
    "attention",
    "attention_probs",
    &[(1, Read), (2, Read), (6, ReadWrite), (8, ReadWrite)],
);
/// D = rowsum(dO⊙O).
pub static ATTENTION_BACKWARD_DELTA: Kernel = Kernel::new::<Params>(
    "attention",
    "attention_backward_delta",
    &[(4, Read), (5, Read), (7, ReadWrite)],
);
/// The same with 16 lanes a query (GPUs).
pub static ATTENTION_BACKWARD_DELTA16: Kernel = Kernel::new::<Params>(
    "attention",
    "attention_backward_delta16",
    &[(4, Read), (5, Read), (7, ReadWrite)],
);
const DQ_BINDINGS: &[(u32, crate::gpu::Access)] = &[
    (1, Read),
    (2, Read),
    (3, Read),
    (5, Read),
    (6, ReadWrite),
    (7, ReadWrite),
    (8, ReadWrite),
];
/// dQ.
pub static ATTENTION_BACKWARD_DQ: Kernel =
    Kernel::new::<Params>("attention", "attention_backward_dq", DQ_BINDINGS);
const DKV_BINDINGS: &[(u32, crate::gpu::Access)] = &[
    (1, Read),
    (2, Read),
    (3, Read),
    (5, Read),
    (6, ReadWrite),
    (7, ReadWrite),
    (8, ReadWrite),
    (9, ReadWrite),
];

/// dK and dV.
pub static ATTENTION_BACKWARD_DKV: Kernel =
    Kernel::new::<Params>("attention", "attention_backward_dkv", DKV_BINDINGS);

/// [`ATTENTION_FORWARD`] four keys at a time (GPU layouts), adding the same terms in the same order.
pub static ATTENTION_FORWARD4: Kernel =
    Kernel::new::<Params>("attention", "attention_forward4", FORWARD_BINDINGS);

/// [`ATTENTION_BACKWARD_DKV`] with two invocations per key, each holding half the head (GPU
/// layouts on adapters with subgroups).
pub static ATTENTION_BACKWARD_DKV2: Kernel =
    Kernel::new::<Params>("attention_pairs", "attention_backward_dkv2", DKV_BINDINGS);

/// [`ATTENTION_FORWARD4`] with two invocations per query, each holding half the head (adapters
/// with subgroups, native).
pub static ATTENTION_FORWARD2: Kernel =
    Kernel::new::<Params>("attention_pairs", "attention_forward2", FORWARD_BINDINGS);

/// [`ATTENTION_BACKWARD_DQ`] with two invocations per query, each holding half the head (GPU
/// layouts on adapters with subgroups).
pub static ATTENTION_BACKWARD_DQ2: Kernel =
    Kernel::new::<Params>("attention_pairs", "attention_backward_dq2", DQ_BINDINGS);

/// [`ATTENTION_FORWARD4`] with its loops over the head written out (`attention_u`: see
/// `registry::UNROLLED`), so that no compiler needs to unroll them to keep the head in registers.
pub static ATTENTION_FORWARD4_U: Kernel =
    Kernel::new::<Params>("attention_u", "attention_forward4", FORWARD_BINDINGS);
/// [`ATTENTION_BACKWARD_DQ`] with its head loops written out.
pub static ATTENTION_BACKWARD_DQ_U: Kernel =
    Kernel::new::<Params>("attention_u", "attention_backward_dq", DQ_BINDINGS);
/// [`ATTENTION_BACKWARD_DKV`] with its head loops written out.
pub static ATTENTION_BACKWARD_DKV_U: Kernel =
    Kernel::new::<Params>("attention_u", "attention_backward_dkv", DKV_BINDINGS);
/// [`ATTENTION_FORWARD2`] with its head loops written out.
pub static ATTENTION_FORWARD2_U: Kernel =
    Kernel::new::<Params>("attention_pairs_u", "attention_forward2", FORWARD_BINDINGS);
/// [`ATTENTION_BACKWARD_DQ2`] with its head loops written out.
pub static ATTENTION_BACKWARD_DQ2_U: Kernel =
    Kernel::new::<Params>("attention_pairs_u", "attention_backward_dq2", DQ_BINDINGS);
/// [`ATTENTION_BACKWARD_DKV2`] with its head loops written out.
pub static ATTENTION_BACKWARD_DKV2_U: Kernel =
    Kernel::new::<Params>("attention_pairs_u", "attention_backward_dkv2", DKV_BINDINGS);

/// [`ATTENTION_BACKWARD_DQ2_U`] with the halves' partial sums meeting through workgroup memory
/// (`attention_pairs_wg_u`), for adapters without subgroups, the browser's among them.
pub static ATTENTION_BACKWARD_DQ2_WG_U: Kernel = Kernel::new::<Params>(
    "attention_pairs_wg_u",
    "attention_backward_dq2",
    DQ_BINDINGS,
);
/// [`ATTENTION_BACKWARD_DKV2_U`] with the halves meeting through workgroup memory.
pub static ATTENTION_BACKWARD_DKV2_WG_U: Kernel = Kernel::new::<Params>(
    "attention_pairs_wg_u",
    "attention_backward_dkv2",
    DKV_BINDINGS,
);

/// Two invocations take two queries, each holding half of both heads' vectors, so each tile
/// read feeds two queries (`attention_forward_crossed`; head loops written out; halves meet
/// through subgroup shuffles). Same sums as [`ATTENTION_FORWARD2_U`], bit for bit.
pub static ATTENTION_FORWARD_CROSSED_U: Kernel = Kernel::new::<Params>(
    "attention_pairs_u",
    "attention_forward_crossed",
    FORWARD_BINDINGS,
);
/// [`ATTENTION_FORWARD_CROSSED_U`] with the halves meeting through workgroup memory.
pub static ATTENTION_FORWARD_CROSSED_WG_U: Kernel = Kernel::new::<Params>(
    "attention_pairs_wg_u",
    "attention_forward_crossed",
    FORWARD_BINDINGS,
);

/// [`ATTENTION_FORWARD`] as two register-tiled products per block of 64 keys, 32 queries a
/// workgroup of 128 (`attention_tiled`): each pair of workgroup-memory reads feeds 16
/// multiply-adds, as in the 64×64 matmul tile. Same scores to the bit.
pub static ATTENTION_FORWARD_TILED: Kernel = Kernel::new::<Params>(
    "attention_tiled",
    "attention_forward_tiled",
    FORWARD_BINDINGS,
);
/// dQ tiled as [`ATTENTION_FORWARD_TILED`] (`attention_tiled`): 32 queries a workgroup of 64,
/// keys 32 at a time, 4 × 4 register blocks of scores and 4 × 8 of dQ.
pub static ATTENTION_BACKWARD_DQ_TILED: Kernel = Kernel::new::<Params>(
    "attention_tiled",
    "attention_backward_dq_tiled",
    DQ_BINDINGS,
);
/// dK and dV tiled the same way: 32 keys a workgroup, queries 32 at a time.
pub static ATTENTION_BACKWARD_DKV_TILED: Kernel = Kernel::new::<Params>(
    "attention_tiled",
    "attention_backward_dkv_tiled",
    DKV_BINDINGS,
);
/// Tokens a workgroup of the tiled backward kernels owns.
const TILED_BACKWARD_TOKENS: usize = 32;

/// Queries a workgroup of [`ATTENTION_FORWARD_TILED`] owns.
const TILED_QUERIES: usize = 32;
/// Workgroup memory the tiled kernels take: the forward's Q (32 × 64), a block's K or V
/// (64 × 64) and its probabilities (64 × 32); the backward's four 32 × 64 tiles; f32.
pub const TILED_WORKGROUP_BYTES: usize = 4 * (32 * 64 + 64 * 64 + 64 * 32);

/// [`ATTENTION_FORWARD`] with the tile reads broadcast from lane 0 (CPU drivers with subgroups).
pub static ATTENTION_FORWARD_SG: Kernel =
    Kernel::new::<Params>("attention_sg", "attention_forward", FORWARD_BINDINGS);

/// The cooperative-matrix forward's bindings: the forward's, and Q again at dO's (5), which
/// the loaders it shares with the backward name but the forward never reads.
const FORWARD_COOP_BINDINGS: &[(u32, crate::gpu::Access)] = &[
    (1, Read),
    (2, Read),
    (3, Read),
    (5, Read),
    (6, ReadWrite),
    (8, ReadWrite),
];

/// [`ATTENTION_FORWARD`] on f16 16×16×16 cooperative matrices (`attention_coop`: two passes
/// over the keys, f16 operands and probabilities, f32 sums; overrides HEAD_DIM, WG).
pub static ATTENTION_FORWARD_COOP16: Kernel = Kernel::new::<Params>(
    "attention_coop",
    "attention_forward_coop",
    FORWARD_COOP_BINDINGS,
);
/// The same with 8×8×8 matrices.
pub static ATTENTION_FORWARD_COOP8: Kernel = Kernel::new::<Params>(
    "attention_coop8",
    "attention_forward_coop",
    FORWARD_COOP_BINDINGS,
);

/// dQ on f16 16×16×16 cooperative matrices (`attention_coop`; overrides HEAD_DIM, WG).
pub static ATTENTION_BACKWARD_DQ_COOP16: Kernel =
    Kernel::new::<Params>("attention_coop", "attention_backward_dq_coop", DQ_BINDINGS);
/// dK and dV on f16 16×16×16 cooperative matrices.
pub static ATTENTION_BACKWARD_DKV_COOP16: Kernel = Kernel::new::<Params>(
    "attention_coop",
    "attention_backward_dkv_coop",
    DKV_BINDINGS,
);
/// [`ATTENTION_BACKWARD_DQ_COOP16`] with 8×8×8 matrices.
pub static ATTENTION_BACKWARD_DQ_COOP8: Kernel =
    Kernel::new::<Params>("attention_coop8", "attention_backward_dq_coop", DQ_BINDINGS);
/// [`ATTENTION_BACKWARD_DKV_COOP16`] with 8×8×8 matrices.
pub static ATTENTION_BACKWARD_DKV_COOP8: Kernel = Kernel::new::<Params>(
    "attention_coop8",
    "attention_backward_dkv_coop",
    DKV_BINDINGS,
);

/// Workgroup memory of the cooperative-matrix attention kernels with matrices of `side` (the
/// larger, the backward's: its own 4·side tokens' two head tiles, a block of 2·side tokens'
/// two, f32 scores, f16 probabilities, lse and D).
pub fn coop_workgroup_bytes(side: usize) -> usize {
    let row = 64 + 8;
    let (own, block) = (4 * side, 2 * side);
    2 * (2 * own * row) + 2 * (2 * block * row) + 4 * own * block + 2 * own * (block + 8) + 8 * own
}

/// Largest head dimension the kernels hold in registers (every DINOv2 model uses 64).
pub const MAX_HEAD_DIM: usize = 64;

/// Sizes of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttnDims {
    /// Batch size.
    pub batch: usize,
    /// Heads.
    pub heads: usize,
    /// Query tokens.
    pub n_q: usize,
    /// Key/value tokens.
    pub n_k: usize,
    /// Head dimension (≤ 64).
    pub head_dim: usize,
    /// Score scale, usually 1/sqrt(head_dim).
    pub scale: f32,
}

impl AttnDims {
    /// Self-attention over `n` tokens with the usual 1/sqrt(d) scale.
    pub fn new(batch: usize, heads: usize, n: usize, head_dim: usize) -> Self {
        AttnDims {
            batch,
            heads,
            n_q: n,
            n_k: n,
            head_dim,
            scale: 1.0 / (head_dim as f32).sqrt(),
        }
    }

    /// The forward's floating-point operations (Q·Kᵀ and P·V; the backward is counted as 2.5×).
    pub fn forward_flops(&self) -> f64 {
        4.0 * (self.batch * self.heads) as f64 * (self.n_q * self.n_k * self.head_dim) as f64
    }
}

/// Where Q, K and V live: element offsets and strides (in elements) per batch, head and token.
#[derive(Clone, Copy, Debug)]
pub struct QkvLayout {
    /// Offset of Q.
    pub q_off: usize,
    /// Offset of K.
    pub k_off: usize,
    /// Offset of V.
    pub v_off: usize,
    /// Batch stride.
    pub batch: usize,
    /// Head stride.
    pub head: usize,
    /// Token stride.
    pub tok: usize,
}

impl QkvLayout {
    /// Separate [B, H, N, d] tensors.
    pub fn bhnd(heads: usize, n: usize, d: usize) -> Self {
        QkvLayout {
            q_off: 0,
            k_off: 0,
            v_off: 0,
            batch: heads * n * d,
            head: n * d,
            tok: d,
        }
    }
    /// One fused buffer [B, N, 3, H, d], as a qkv linear layer writes it.
    pub fn fused(heads: usize, n: usize, d: usize) -> Self {
        let w = heads * d;
        QkvLayout {
            q_off: 0,
            k_off: w,
            v_off: 2 * w,
            batch: n * 3 * w,
            head: d,
            tok: 3 * w,
        }
    }
}

/// Strides of O and dO.
#[derive(Clone, Copy, Debug)]
pub struct OutLayout {
    /// Batch stride.
    pub batch: usize,
    /// Head stride.
    pub head: usize,
    /// Token stride.
    pub tok: usize,
}

impl OutLayout {
    /// [B, H, N, d].
    pub fn bhnd(heads: usize, n: usize, d: usize) -> Self {
        OutLayout {
            batch: heads * n * d,
            head: n * d,
            tok: d,
        }
    }
    /// [B, N, H, d] = [B, N, D]: heads merged, ready for the output projection.
    pub fn bnhd(heads: usize, n: usize, d: usize) -> Self {
        OutLayout {
            batch: n * heads * d,
            head: d,
            tok: heads * d,
        }
    }
}

fn params(d: &AttnDims, l: &QkvLayout, o: &OutLayout) -> Params {
    assert!(
        d.head_dim >= 1 && d.head_dim <= MAX_HEAD_DIM,
        "attention: head dim {} > {MAX_HEAD_DIM}",
        d.head_dim
    );
    Params {
        batch: d.batch as u32,
        heads: d.heads as u32,
        n_q: d.n_q as u32,
        n_k: d.n_k as u32,
        q_off: l.q_off as u32,
        k_off: l.k_off as u32,
        v_off: l.v_off as u32,
        _pad0: 0,
        s_batch: l.batch as u32,
        s_head: l.head as u32,
        s_tok: l.tok as u32,
        _pad1: 0,
        o_batch: o.batch as u32,
        o_head: o.head as u32,
        o_tok: o.tok as u32,
        _pad2: 0,
        scale: d.scale,
        dv_in_res0: 0,
        lse_rows: 0,
        _pad3: 0,
    }
}

fn overrides(d: &AttnDims) -> [(&'static str, f64); 1] {
    [("HEAD_DIM", d.head_dim as f64)]
}

/// The pipeline constants of a thread-per-token kernel with `per` invocations a token (the
/// split kernels of `attention_pairs` take `SPLIT`; the others have no such constant) and `wg`
/// tokens a workgroup.
fn token_overrides(d: &AttnDims, per: usize, wg: usize) -> Vec<(&'static str, f64)> {
    let mut o = vec![("HEAD_DIM", d.head_dim as f64), ("WG", (per * wg) as f64)];
    if per > 1 {
        o.push(("SPLIT", per as f64));
    }
    o
}

/// Workgroup size of the thread-per-token kernels for sequences of `n` tokens: as many
/// workgroups per sequence as 64-wide ones would take, each as narrow as holds its share
/// (a multiple of 8, at least 16), so short sequences do not leave most invocations idle
/// (17 tokens: 24 instead of 64; 69: 2 × 40 instead of 2 × 64).
pub fn token_group(n: usize) -> usize {
    let groups = n.div_ceil(64).max(1);
    n.div_ceil(groups).next_multiple_of(8).max(16)
}

/// O = softmax(scale·Q·Kᵀ)·V; returns lse [B, H, n_q] (natural log of the scaled scores).
#[allow(clippy::too_many_arguments)]
pub fn attention_forward(
    rec: &mut Recorder,
    out: &Tensor,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    d: AttnDims,
    layout: QkvLayout,
    o_layout: OutLayout,
) -> Tensor {
    assert_eq!(
        out.numel(),
        d.batch * d.heads * d.n_q * d.head_dim,
        "attention_forward: out size"
    );
    let p = params(&d, &layout, &o_layout);
    let lse = rec.gpu().empty(&[d.batch, d.heads, d.n_q]);
    let wg = token_group(d.n_q);
    let groups = d.n_q.div_ceil(wg) * d.batch * d.heads;
    // A CPU driver loads per lane, so a tile element every lane reads alike costs a load per
    // lane unless one lane reads it and broadcasts it; and it keeps a lane's arrays in memory
    // whatever their indices, where the four chains of the GPU layout only add traffic (1.4×
    // slower on lavapipe). Pairs of invocations share a query in workgroups twice as wide.
    let variant = super::attention_plan::forward_for(rec, &d, q.dtype());
    let label = || work_label("fwd", &d, q.dtype(), variant.name());
    rec.label_work(label, d.forward_flops());
    if variant == super::attention_plan::Forward::Coop {
        forward_coop(rec, &p, &d, [q, k, v, q, &lse, out]);
    } else if variant == super::attention_plan::Forward::Tiled {
        tiled_fits(&d, &layout, &o_layout, [q, k, v], out);
        let groups = d.n_q.div_ceil(TILED_QUERIES) * d.batch * d.heads;
        rec.dispatch_with(
            &ATTENTION_FORWARD_TILED,
            &overrides(&d),
            &p,
            &[q, k, v, &lse, out],
            grid_1d(groups),
        );
    } else {
        let (kernel, per) = variant.kernel();
        rec.dispatch_with(
            kernel,
            &token_overrides(&d, per, wg),
            &p,
            &[q, k, v, &lse, out],
            grid_1d(groups),
        );
    }
    rec.end_work();
    lse
}

/// Panics unless every element the tiled kernels may address lies in its buffer (they are
/// compiled without index clamps): Q, K and V (or their gradients) in `qkv`'s layout, O (or dO)
/// in `o`'s.
fn tiled_fits(d: &AttnDims, l: &QkvLayout, o: &OutLayout, qkv: [&Tensor; 3], out: &Tensor) {
    assert!(d.head_dim <= MAX_HEAD_DIM, "attention (tiled): head");
    let strides = [l.batch, l.head, l.tok];
    for (t, off, n) in [
        (qkv[0], l.q_off, d.n_q),
        (qkv[1], l.k_off, d.n_k),
        (qkv[2], l.v_off, d.n_k),
    ] {
        assert!(
            span(d, off, strides, n) <= t.numel(),
            "attention (tiled): layout"
        );
    }
    assert!(
        span(d, 0, [o.batch, o.head, o.tok], d.n_q) <= out.numel(),
        "attention (tiled): out layout"
    );
}

/// One past the last element a layout of offset `off` and (batch, head, token) strides
/// addresses for `n` tokens of every head (0 when there are none).
fn span(d: &AttnDims, off: usize, strides: [usize; 3], n: usize) -> usize {
    if d.batch == 0 || d.heads == 0 || n == 0 {
        return 0;
    }
    off + (d.batch - 1) * strides[0]
        + (d.heads - 1) * strides[1]
        + (n - 1) * strides[2]
        + d.head_dim
}

/// An attention pass's row in a profile: `attention PASS (B·H)xNQxNKxD TYPE VARIANT`.
fn work_label(pass: &str, d: &AttnDims, dtype: DType, variant: &str) -> String {
    let t = if dtype == DType::F16 { "f16" } else { "f32" };
    let (bh, nq, nk, hd) = (d.batch * d.heads, d.n_q, d.n_k, d.head_dim);
    format!("attention {pass} {bh}x{nq}x{nk}x{hd} {t} {variant}")
}

/// The cooperative-matrix kernels' matrix side on this device (16 or 8) and pipeline
/// constants: a workgroup is four subgroups and owns 4·side tokens of one head.
fn coop_launch(rec: &Recorder, d: &AttnDims) -> (usize, [(&'static str, f64); 2]) {
    let gpu = rec.gpu();
    let side = gpu
        .coop_side()
        .expect("attention: the coop kernels need a device with cooperative matrices");
    let overrides = [
        ("HEAD_DIM", d.head_dim as f64),
        ("WG", f64::from(4 * gpu.coop_lanes().unwrap_or(0))),
    ];
    (side as usize, overrides)
}

/// The forward on cooperative matrices: a workgroup takes 4·side queries.
fn forward_coop(rec: &mut Recorder, p: &Params, d: &AttnDims, bound: [&Tensor; 6]) {
    let (side, overrides) = coop_launch(rec, d);
    let kernel = if side == 16 {
        &ATTENTION_FORWARD_COOP16
    } else {
        &ATTENTION_FORWARD_COOP8
    };
    let groups = d.n_q.div_ceil(4 * side) * d.batch * d.heads;
    rec.dispatch_with(kernel, &overrides, p, &bound, grid_1d(groups));
}

/// The backward on cooperative matrices: dQ by workgroups of 4·side queries, dK and dV by
/// workgroups of 4·side keys.
fn backward_coop(
    rec: &mut Recorder,
    p: &Params,
    d: &AttnDims,
    dq_bound: &[&Tensor],
    dkv_bound: &[&Tensor],
) {
    let (side, overrides) = coop_launch(rec, d);
    let (dq_kernel, dkv_kernel) = if side == 16 {
        (
            &ATTENTION_BACKWARD_DQ_COOP16,
            &ATTENTION_BACKWARD_DKV_COOP16,
        )
    } else {
        (&ATTENTION_BACKWARD_DQ_COOP8, &ATTENTION_BACKWARD_DKV_COOP8)
    };
    let own = 4 * side;
    let heads = d.batch * d.heads;
    let gq = grid_1d(d.n_q.div_ceil(own) * heads);
    rec.dispatch_with(dq_kernel, &overrides, p, dq_bound, gq);
    let gk = grid_1d(d.n_k.div_ceil(own) * heads);
    rec.dispatch_with(dkv_kernel, &overrides, p, dkv_bound, gk);
}

/// The attention probabilities [B, H, n_q, n_k], recomputed from Q, K and the forward's lse.
pub fn attention_probs(
    rec: &mut Recorder,
    probs: &Tensor,
    q: &Tensor,
    k: &Tensor,
    lse: &Tensor,
    d: AttnDims,
    layout: QkvLayout,
) {
    attention_probs_rows(rec, probs, q, k, lse, d, layout, d.n_q);
}

/// The probabilities of the first `rows` queries only, [B, H, rows, n_k] (the CLS token's
/// row for attention maps: memory in n_k instead of n_q·n_k); `lse` is the forward's, of all
/// `d.n_q` queries.
#[allow(clippy::too_many_arguments)]
pub fn attention_probs_rows(
    rec: &mut Recorder,
    probs: &Tensor,
    q: &Tensor,
    k: &Tensor,
    lse: &Tensor,
    d: AttnDims,
    layout: QkvLayout,
    rows: usize,
) {
    assert!(rows <= d.n_q, "attention_probs: {rows} rows of {}", d.n_q);
    assert_eq!(
        lse.numel(),
        d.batch * d.heads * d.n_q,
        "attention_probs: lse size"
    );
    let d = AttnDims { n_q: rows, ..d };
    let n = d.batch * d.heads * rows * d.n_k;
    assert_eq!(probs.numel(), n, "attention_probs: probs size");
    let mut p = params(&d, &layout, &OutLayout::bhnd(d.heads, rows, d.head_dim));
    p.lse_rows = (lse.numel() / (d.batch * d.heads).max(1)) as u32;
    rec.dispatch_with(
        &ATTENTION_PROBS,
        &overrides(&d),
        &p,
        &[q, k, lse, probs],
        grid_1d(n.div_ceil(256)),
    );
}

/// Gradients of O w.r.t. Q, K, V, written (not accumulated) with the Q/K/V layout; dq, dk and
/// dv may be one fused buffer (distinct from the one holding q, k, v).
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    rec: &mut Recorder,
    dq: &Tensor,
    dk: &Tensor,
    dv: &Tensor,
    dout: &Tensor,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    out: &Tensor,
    lse: &Tensor,
    d: AttnDims,
    layout: QkvLayout,
    o_layout: OutLayout,
) {
    let p = params(&d, &layout, &o_layout);
    let ov = overrides(&d);
    let rows = d.batch * d.heads * d.n_q;
    let variant = super::attention_plan::backward_for(rec, &d, q.dtype());
    let label = || work_label("bwd", &d, q.dtype(), variant.name());
    rec.label_work(label, 2.5 * d.forward_flops());
    let delta = rec.gpu().empty(&[rows]);
    // A thread a query reads its row alone: strided loads on a GPU, one SIMD lane's on a CPU.
    let (delta_kernel, per_group) = match rec.cpu_layouts() {
        true => (&ATTENTION_BACKWARD_DELTA, 256),
        false => (&ATTENTION_BACKWARD_DELTA16, 16),
    };
    rec.dispatch_with(
        delta_kernel,
        &ov,
        &p,
        &[out, dout, &delta],
        grid_1d(rows.div_ceil(per_group)),
    );
    // Two writable bindings of one buffer are invalid in WebGPU: a fused dqkv buffer is bound
    // once and dV is written through dK's binding.
    let shared = dk.same_buffer(dv) && dk.offset() == dv.offset();
    let dummy = rec.gpu().dummy_write.clone();
    let dv_bound = if shared { &dummy } else { dv };
    let p = Params {
        dv_in_res0: u32::from(shared),
        ..p
    };
    if variant == super::attention_plan::Backward::Coop {
        let dq_bound = [q, k, v, dout, lse, &delta, dq];
        let dkv_bound = [q, k, v, dout, lse, &delta, dk, dv_bound];
        backward_coop(rec, &p, &d, &dq_bound, &dkv_bound);
        rec.end_work();
        return;
    }
    if variant == super::attention_plan::Backward::Tiled {
        tiled_fits(&d, &layout, &o_layout, [q, k, v], dout);
        tiled_fits(&d, &layout, &o_layout, [dq, dk, dv], dout);
        let heads = d.batch * d.heads;
        let own = TILED_BACKWARD_TOKENS;
        rec.dispatch_with(
            &ATTENTION_BACKWARD_DQ_TILED,
            &ov,
            &p,
            &[q, k, v, dout, lse, &delta, dq],
            grid_1d(d.n_q.div_ceil(own) * heads),
        );
        rec.dispatch_with(
            &ATTENTION_BACKWARD_DKV_TILED,
            &ov,
            &p,
            &[q, k, v, dout, lse, &delta, dk, dv_bound],
            grid_1d(d.n_k.div_ceil(own) * heads),
        );
        rec.end_work();
        return;
    }
    // On a GPU with subgroups two invocations share a query (ATTENTION_BACKWARD_DQ2) and a key
    // (ATTENTION_BACKWARD_DKV2), in workgroups twice as wide, so as many tokens share a
    // workgroup's tiles.
    let (dq_kernel, dkv_kernel, per) = variant.kernels();
    let wg = token_group(d.n_q);
    let gq = d.n_q.div_ceil(wg) * d.batch * d.heads;
    rec.dispatch_with(
        dq_kernel,
        &token_overrides(&d, per, wg),
        &p,
        &[q, k, v, dout, lse, &delta, dq],
        grid_1d(gq),
    );
    let wg = token_group(d.n_k);
    let gk = d.n_k.div_ceil(wg) * d.batch * d.heads;
    rec.dispatch_with(
        dkv_kernel,
        &token_overrides(&d, per, wg),
        &p,
        &[q, k, v, dout, lse, &delta, dk, dv_bound],
        grid_1d(gk),
    );
    rec.end_work();
}

#[cfg(test)]
mod tests {
    #[test]
    fn token_groups_hold_their_sequences_in_as_many_workgroups_as_64_wide_ones() {
        for n in 1..2000 {
            let wg = super::token_group(n);
            assert!((16..=64).contains(&wg) && wg.is_multiple_of(8), "{n}: {wg}");
            assert_eq!(n.div_ceil(wg), n.div_ceil(64), "{n}: {wg}");
        }
        assert_eq!(super::token_group(17), 24);
        assert_eq!(super::token_group(69), 40);
    }
}
