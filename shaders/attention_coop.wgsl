enable f16;
enable wgpu_cooperative_matrix;

// Attention on cooperative matrices (tensor cores), for f16 operands on adapters that offer
// them: the forward (O and lse, as attention_forward in attention.wgsl writes them) and the
// backward (dQ, dK, dV, as attention_backward_dq and _dkv write them, from the forward's lse and
// D = rowsum(dO⊙O) of attention_backward_delta). Q, K, V and dO are rounded to f16 in workgroup
// memory; every product accumulates in f32; the probabilities P and their gradients
// dS = P ⊙ (dP − D) are rounded to f16 before they enter a product. Results are stored as O (f16,
// or f32 gradients for the mixed-precision backward pass).
//
// Layout. A workgroup is four subgroups (WG = 4 × the fixed subgroup size MS²/8) and owns
// BW = 4·MS tokens of one (batch, head); subgroup s owns the strip of rows s·MS … s·MS + MS − 1.
// The other side's tokens come BT = 2·MS at a time (a block). Per block each subgroup computes
// its strip's MS × BT products on the matrix units into Ss; its lanes then take the strip's
// rows, MS/8 lanes a row, each lane every (MS/8)th column (scalar work: P, dS, the max), and
// the strip's output accumulators (HEAD_DIM / MS of them: o0 … o7, the rest unused) add the
// next products. Tokens past the sequence read zeros, weigh 0 and are not stored.
//
// attention_forward_coop (queries own, keys by block): two passes over the keys, so that no
//   accumulator is ever rescaled (a cooperative matrix can only be loaded, stored and
//   multiplied): the first keeps each query's largest score, the second takes
//   p = exp(s − max) ≤ 1 into Pd, adds it to the query's sum l and multiplies P·V into the
//   accumulators; O = acc / l at the end, lse = max + ln l.
// attention_backward_dq_coop (queries own, keys by block): with lse known, one pass: S = Q·Kᵀ
//   → P; dP = dO·Vᵀ → dS; dQ += dS·K; dQ·scale is stored.
// attention_backward_dkv_coop (keys own, queries by block): Sᵀ = K·Qᵀ → Pᵀ, dV += Pᵀ·dO;
//   dPᵀ = V·dOᵀ → dSᵀ, dK += dSᵀ·Q; dK·scale and dV are stored (dV through res0 when it lives
//   in dK's buffer, dv_in_res0).
// Matrix operations sit in uniform control flow only.
// The forward binds Q at dO's binding too: it never reads it there, but the loaders it shares
// with the backward name it.
// Dispatch: grid_1d(ceil(n_own / BW) · B · H).

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
    _pad4: u32,
    _pad5: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<S>;
@group(0) @binding(2) var<storage, read> k: array<S>;
@group(0) @binding(3) var<storage, read> v: array<S>;
@group(0) @binding(5) var<storage, read> dout: array<S>;
@group(0) @binding(6) var<storage, read_write> lse: array<f32>;
@group(0) @binding(7) var<storage, read_write> delta: array<f32>;
@group(0) @binding(8) var<storage, read_write> res0: array<O>;
@group(0) @binding(9) var<storage, read_write> res1: array<O>;

// Head dimension: a multiple of MS, at most 8·MS and 64.
override HEAD_DIM: u32 = 64u;
// Invocations per workgroup: four subgroups of MS²/8.
override WG: u32 = 128u;

// Matrix side (the registry derives the 8×8×8 variant by rewriting this line and the types).
const MS: u32 = 16u;
alias MatA = coop_mat16x16<f16, A>;
alias MatB = coop_mat16x16<f16, B>;
alias MatC = coop_mat16x16<f32, C>;

// Tokens a workgroup owns and takes per block, the padded row lengths (halves; rows start
// 16-byte aligned on different banks) of the head tiles and of Pd, the head in MS chunks.
const BW: u32 = 4u * MS;
const BT: u32 = 2u * MS;
const LDD: u32 = 64u + 8u;
const LDP: u32 = BT + 8u;
override DC: u32 = HEAD_DIM / MS;

// The workgroup's own tokens' head tiles (forward and dQ: Q, dO; dK/dV: K, V), the block's
// (forward and dQ: K, V; dK/dV: Q, dO), the strips' products [BW][BT] (f32), P or dS
// [BW][LDP] (f16), each owned row's (forward: the sum l; dQ: lse, D) or each block row's
// (dK/dV: lse, D) pair, and one value per invocation for the lanes of a row to combine.
var<workgroup> Wa: array<f16, BW * LDD>;
var<workgroup> Wb: array<f16, BW * LDD>;
var<workgroup> Ta: array<f16, BT * LDD>;
var<workgroup> Tb: array<f16, BT * LDD>;
var<workgroup> Ss: array<f32, BW * BT>;
var<workgroup> Pd: array<f16, BW * LDP>;
var<workgroup> Ld: array<vec2<f32>, BW>;
var<workgroup> Red: array<f32, MS * MS / 2u>;

// One invocation's share: its workgroup's (batch, head) bh = b·heads + h and first owned token
// t0 (n past the last head: such a workgroup, which the grid's rounding adds, repeats the last
// one's work and stores nothing, since an early return would leave the matrix operations out
// of uniform control flow), its strip's first row, its own row, and which of the row's columns
// it takes (every lpr-th from part).
struct Share {
    bh: u32,
    b: u32,
    h: u32,
    t0: u32,
    row0: u32,
    row: u32,
    part: u32,
    lpr: u32,
    mine: bool,
}

fn share(gi: u32, n: u32, sg: u32, lane: u32, lanes: u32) -> Share {
    let nb = (n + BW - 1u) / BW;
    let live = gi / nb < p.batch * p.heads;
    let bh = min(gi / nb, p.batch * p.heads - 1u);
    let lpr = max(lanes / MS, 1u);
    let row0 = sg * MS;
    return Share(bh, bh / p.heads, bh % p.heads, select(n, (gi % nb) * BW, live), row0,
                 row0 + min(lane / lpr, MS - 1u), lane % lpr, lpr, lane < MS * lpr);
}

fn qkv_at(off: u32, b: u32, h: u32, t: u32) -> u32 {
    return off + b * p.s_batch + h * p.s_head + t * p.s_tok;
}

fn out_at(b: u32, h: u32, t: u32) -> u32 {
    return b * p.o_batch + h * p.o_head + t * p.o_tok;
}

// One element of a head row: which = 0 q, 1 k, 2 v, 3 dO (zero past the sequence's n tokens).
fn head_el(which: u32, b: u32, h: u32, t: u32, c: u32, n: u32) -> f16 {
    if (t >= n) { return 0.0h; }
    switch which {
        case 0u: { return f16(q[qkv_at(p.q_off, b, h, t) + c]); }
        case 1u: { return f16(k[qkv_at(p.k_off, b, h, t) + c]); }
        case 2u: { return f16(v[qkv_at(p.v_off, b, h, t) + c]); }
        default: { return f16(dout[out_at(b, h, t) + c]); }
    }
}

// Loads the workgroup's own BW tokens from t0 of head tensors `wa` and `wb` (as head_el) into
// Wa and Wb (load_own), Wa alone (load_wa: the forward, which leaves Wb unused, so that its
// workgroup memory does not count it), or a block's BT tokens into Ta and, unless wb = 4, Tb
// (load_block).
fn load_own(wa: u32, wb: u32, li: u32, b: u32, h: u32, t0: u32, n: u32) {
    for (var e = li; e < BW * HEAD_DIM; e += WG) {
        let r = e / HEAD_DIM;
        let c = e % HEAD_DIM;
        Wa[r * LDD + c] = head_el(wa, b, h, t0 + r, c, n);
        Wb[r * LDD + c] = head_el(wb, b, h, t0 + r, c, n);
    }
}

fn load_wa(wa: u32, li: u32, b: u32, h: u32, t0: u32, n: u32) {
    for (var e = li; e < BW * HEAD_DIM; e += WG) {
        let r = e / HEAD_DIM;
        let c = e % HEAD_DIM;
        Wa[r * LDD + c] = head_el(wa, b, h, t0 + r, c, n);
    }
}

fn load_block(wa: u32, wb: u32, li: u32, b: u32, h: u32, t0: u32, n: u32) {
    for (var e = li; e < BT * HEAD_DIM; e += WG) {
        let r = e / HEAD_DIM;
        let c = e % HEAD_DIM;
        Ta[r * LDD + c] = head_el(wa, b, h, t0 + r, c, n);
        if (wb < 4u) { Tb[r * LDD + c] = head_el(wb, b, h, t0 + r, c, n); }
    }
}

// This subgroup's strip of X·Yᵀ into Ss: X its rows of Wa, Y the block's Ta (strip_a), or Wb
// and Tb (strip_b). Yᵀ's element (c, token) sits at Y[token·LDD + c], column-major. (Two
// functions, not one with a flag: a matrix operation under a branch on a parameter is out of
// uniform control flow.)
fn strip_a(row0: u32) {
    var s0: MatC;
    var s1: MatC;
    for (var c = 0u; c < DC; c++) {
        let a = coopLoadT<MatA>(&Wa[row0 * LDD + c * MS], LDD);
        s0 = coopMultiplyAdd(a, coopLoad<MatB>(&Ta[c * MS], LDD), s0);
        s1 = coopMultiplyAdd(a, coopLoad<MatB>(&Ta[MS * LDD + c * MS], LDD), s1);
    }
    coopStoreT(s0, &Ss[row0 * BT], BT);
    coopStoreT(s1, &Ss[row0 * BT + MS], BT);
}

fn strip_b(row0: u32) {
    var s0: MatC;
    var s1: MatC;
    for (var c = 0u; c < DC; c++) {
        let a = coopLoadT<MatA>(&Wb[row0 * LDD + c * MS], LDD);
        s0 = coopMultiplyAdd(a, coopLoad<MatB>(&Tb[c * MS], LDD), s0);
        s1 = coopMultiplyAdd(a, coopLoad<MatB>(&Tb[MS * LDD + c * MS], LDD), s1);
    }
    coopStoreT(s0, &Ss[row0 * BT], BT);
    coopStoreT(s1, &Ss[row0 * BT + MS], BT);
}

// The combination (max, or sum in lane order) of the values the lpr lanes of this lane's row
// put in Red (slot: sg · lanes + lane). Every invocation calls it (it holds barriers).
fn combine(slot: u32, lane: u32, lpr: u32, x: f32, is_max: bool) -> f32 {
    Red[slot] = x;
    workgroupBarrier();
    let first = slot - lane % lpr;
    var r = Red[first];
    for (var i = 1u; i < lpr; i++) {
        if (is_max) { r = max(r, Red[first + i]); } else { r += Red[first + i]; }
    }
    workgroupBarrier();
    return r;
}

// Output chunk `c` of this subgroup's strip through slot c % 2 of its part of Ss: returns the
// slot, whose MS × MS values (row-major) its lanes then store.
fn stage(acc: MatC, c: u32, row0: u32) -> u32 {
    let slot = row0 * BT + (c % 2u) * MS * MS;
    coopStoreT(acc, &Ss[slot], MS);
    workgroupBarrier();
    return slot;
}

// The forward's output chunk c: divided by each row's sum (Ld.x), at O's layout.
fn flush_o(acc: MatC, c: u32, sh: Share, lane: u32, lanes: u32) {
    let slot = stage(acc, c, sh.row0);
    for (var e = lane; e < MS * MS; e += lanes) {
        let r = sh.row0 + e / MS;
        let t = sh.t0 + r;
        if (t < p.n_q) { res0[out_at(sh.b, sh.h, t) + c * MS + e % MS] = O(Ss[slot + e] / Ld[r].x); }
    }
}

// A gradient's chunk c times `mul` into res0 (flush0) or res1 (flush1) at the q/k/v layout
// offset `off`, for owned tokens below n.
fn flush0(acc: MatC, c: u32, sh: Share, lane: u32, lanes: u32, n: u32, off: u32, mul: f32) {
    let slot = stage(acc, c, sh.row0);
    for (var e = lane; e < MS * MS; e += lanes) {
        let t = sh.t0 + sh.row0 + e / MS;
        if (t < n) { res0[qkv_at(off, sh.b, sh.h, t) + c * MS + e % MS] = O(Ss[slot + e] * mul); }
    }
}

fn flush1(acc: MatC, c: u32, sh: Share, lane: u32, lanes: u32, n: u32, off: u32) {
    let slot = stage(acc, c, sh.row0);
    for (var e = lane; e < MS * MS; e += lanes) {
        let t = sh.t0 + sh.row0 + e / MS;
        if (t < n) { res1[qkv_at(off, sh.b, sh.h, t) + c * MS + e % MS] = O(Ss[slot + e]); }
    }
}

// dV's chunk c: through res0 where dV lives in dK's buffer (dv_in_res0), else res1.
fn flush_dv(acc: MatC, c: u32, sh: Share, lane: u32, lanes: u32) {
    if (p.dv_in_res0 != 0u) {
        flush0(acc, c, sh, lane, lanes, p.n_k, p.v_off, 1.0);
    } else {
        flush1(acc, c, sh, lane, lanes, p.n_k, p.v_off);
    }
}

@compute @workgroup_size(WG)
fn attention_forward_coop(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) lanes: u32,
) {
    let sh = share(group_index(wid, nwg), p.n_q, sg, lane, lanes);
    let b = sh.b;
    let h = sh.h;
    let row0 = sh.row0;
    let row = sh.row;
    let part = sh.part;
    let lpr = sh.lpr;
    load_wa(0u, li, b, h, sh.t0, p.n_q);
    var m = -3.4e38;
    for (var j0 = 0u; j0 < p.n_k; j0 += BT) {
        load_block(1u, 4u, li, b, h, j0, p.n_k);
        workgroupBarrier();
        strip_a(row0);
        workgroupBarrier();
        if (sh.mine) {
            let nj = min(BT, p.n_k - j0);
            for (var j = part; j < nj; j += lpr) { m = max(m, p.scale * Ss[row * BT + j]); }
        }
    }
    let slot = sg * lanes + lane;
    m = combine(slot, lane, lpr, m, true);
    var l = 0.0;
    var o0: MatC;
    var o1: MatC;
    var o2: MatC;
    var o3: MatC;
    var o4: MatC;
    var o5: MatC;
    var o6: MatC;
    var o7: MatC;
    for (var j0 = 0u; j0 < p.n_k; j0 += BT) {
        workgroupBarrier();
        load_block(1u, 2u, li, b, h, j0, p.n_k);
        workgroupBarrier();
        strip_a(row0);
        workgroupBarrier();
        if (sh.mine) {
            let nj = min(BT, p.n_k - j0);
            for (var j = part; j < BT; j += lpr) {
                var e = 0.0;
                if (j < nj) { e = exp(p.scale * Ss[row * BT + j] - m); }
                l += e;
                Pd[row * LDP + j] = f16(e);
            }
        }
        workgroupBarrier();
        for (var kb = 0u; kb < BT; kb += MS) {
            let a = coopLoadT<MatA>(&Pd[row0 * LDP + kb], LDP);
            let vr = kb * LDD;
            o0 = coopMultiplyAdd(a, coopLoadT<MatB>(&Tb[vr], LDD), o0);
            if (DC > 1u) { o1 = coopMultiplyAdd(a, coopLoadT<MatB>(&Tb[vr + MS], LDD), o1); }
            if (DC > 2u) { o2 = coopMultiplyAdd(a, coopLoadT<MatB>(&Tb[vr + 2u * MS], LDD), o2); }
            if (DC > 3u) { o3 = coopMultiplyAdd(a, coopLoadT<MatB>(&Tb[vr + 3u * MS], LDD), o3); }
            if (DC > 4u) { o4 = coopMultiplyAdd(a, coopLoadT<MatB>(&Tb[vr + 4u * MS], LDD), o4); }
            if (DC > 5u) { o5 = coopMultiplyAdd(a, coopLoadT<MatB>(&Tb[vr + 5u * MS], LDD), o5); }
            if (DC > 6u) { o6 = coopMultiplyAdd(a, coopLoadT<MatB>(&Tb[vr + 6u * MS], LDD), o6); }
            if (DC > 7u) { o7 = coopMultiplyAdd(a, coopLoadT<MatB>(&Tb[vr + 7u * MS], LDD), o7); }
        }
    }
    l = combine(slot, lane, lpr, l, false);
    if (sh.mine && part == 0u) {
        Ld[row] = vec2<f32>(l, 0.0);
        if (sh.t0 + row < p.n_q) { lse[sh.bh * p.n_q + sh.t0 + row] = m + log(l); }
    }
    workgroupBarrier();
    flush_o(o0, 0u, sh, lane, lanes);
    if (DC > 1u) { flush_o(o1, 1u, sh, lane, lanes); }
    if (DC > 2u) { flush_o(o2, 2u, sh, lane, lanes); }
    if (DC > 3u) { flush_o(o3, 3u, sh, lane, lanes); }
    if (DC > 4u) { flush_o(o4, 4u, sh, lane, lanes); }
    if (DC > 5u) { flush_o(o5, 5u, sh, lane, lanes); }
    if (DC > 6u) { flush_o(o6, 6u, sh, lane, lanes); }
    if (DC > 7u) { flush_o(o7, 7u, sh, lane, lanes); }
}

// lse and D of `rows` queries from i0 into Ld (zero past the sequence).
fn load_ld(li: u32, bh: u32, i0: u32, rows: u32) {
    for (var r = li; r < rows; r += WG) {
        var x = vec2<f32>(0.0);
        if (i0 + r < p.n_q) { x = vec2<f32>(lse[bh * p.n_q + i0 + r], delta[bh * p.n_q + i0 + r]); }
        Ld[r] = x;
    }
}

@compute @workgroup_size(WG)
fn attention_backward_dq_coop(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) lanes: u32,
) {
    let sh = share(group_index(wid, nwg), p.n_q, sg, lane, lanes);
    let b = sh.b;
    let h = sh.h;
    let row0 = sh.row0;
    let row = sh.row;
    let part = sh.part;
    let lpr = sh.lpr;
    load_own(0u, 3u, li, b, h, sh.t0, p.n_q);
    load_ld(li, sh.bh, sh.t0, BW);
    var g0: MatC;
    var g1: MatC;
    var g2: MatC;
    var g3: MatC;
    var g4: MatC;
    var g5: MatC;
    var g6: MatC;
    var g7: MatC;
    for (var j0 = 0u; j0 < p.n_k; j0 += BT) {
        workgroupBarrier();
        load_block(1u, 2u, li, b, h, j0, p.n_k);
        workgroupBarrier();
        // S = Q·Kᵀ, then P.
        strip_a(row0);
        workgroupBarrier();
        let nj = min(BT, p.n_k - j0);
        if (sh.mine) {
            let ld = Ld[row];
            for (var j = part; j < BT; j += lpr) {
                var e = 0.0;
                if (j < nj) { e = exp(p.scale * Ss[row * BT + j] - ld.x); }
                Pd[row * LDP + j] = f16(e);
            }
        }
        workgroupBarrier();
        // dP = dO·Vᵀ, then dS = P ⊙ (dP − D).
        strip_b(row0);
        workgroupBarrier();
        if (sh.mine) {
            let ld = Ld[row];
            for (var j = part; j < BT; j += lpr) {
                let i = row * LDP + j;
                Pd[i] = f16(f32(Pd[i]) * (Ss[row * BT + j] - ld.y));
            }
        }
        workgroupBarrier();
        // dQ += dS·K.
        for (var kb = 0u; kb < BT; kb += MS) {
            let a = coopLoadT<MatA>(&Pd[row0 * LDP + kb], LDP);
            let kr = kb * LDD;
            g0 = coopMultiplyAdd(a, coopLoadT<MatB>(&Ta[kr], LDD), g0);
            if (DC > 1u) { g1 = coopMultiplyAdd(a, coopLoadT<MatB>(&Ta[kr + MS], LDD), g1); }
            if (DC > 2u) { g2 = coopMultiplyAdd(a, coopLoadT<MatB>(&Ta[kr + 2u * MS], LDD), g2); }
            if (DC > 3u) { g3 = coopMultiplyAdd(a, coopLoadT<MatB>(&Ta[kr + 3u * MS], LDD), g3); }
            if (DC > 4u) { g4 = coopMultiplyAdd(a, coopLoadT<MatB>(&Ta[kr + 4u * MS], LDD), g4); }
            if (DC > 5u) { g5 = coopMultiplyAdd(a, coopLoadT<MatB>(&Ta[kr + 5u * MS], LDD), g5); }
            if (DC > 6u) { g6 = coopMultiplyAdd(a, coopLoadT<MatB>(&Ta[kr + 6u * MS], LDD), g6); }
            if (DC > 7u) { g7 = coopMultiplyAdd(a, coopLoadT<MatB>(&Ta[kr + 7u * MS], LDD), g7); }
        }
    }
    workgroupBarrier();
    let n = p.n_q;
    let off = p.q_off;
    let s = p.scale;
    flush0(g0, 0u, sh, lane, lanes, n, off, s);
    if (DC > 1u) { flush0(g1, 1u, sh, lane, lanes, n, off, s); }
    if (DC > 2u) { flush0(g2, 2u, sh, lane, lanes, n, off, s); }
    if (DC > 3u) { flush0(g3, 3u, sh, lane, lanes, n, off, s); }
    if (DC > 4u) { flush0(g4, 4u, sh, lane, lanes, n, off, s); }
    if (DC > 5u) { flush0(g5, 5u, sh, lane, lanes, n, off, s); }
    if (DC > 6u) { flush0(g6, 6u, sh, lane, lanes, n, off, s); }
    if (DC > 7u) { flush0(g7, 7u, sh, lane, lanes, n, off, s); }
}

@compute @workgroup_size(WG)
fn attention_backward_dkv_coop(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) lanes: u32,
) {
    let sh = share(group_index(wid, nwg), p.n_k, sg, lane, lanes);
    let b = sh.b;
    let h = sh.h;
    let row0 = sh.row0;
    let row = sh.row;
    let part = sh.part;
    let lpr = sh.lpr;
    load_own(1u, 2u, li, b, h, sh.t0, p.n_k);
    var v0: MatC;
    var v1: MatC;
    var v2: MatC;
    var v3: MatC;
    var v4: MatC;
    var v5: MatC;
    var v6: MatC;
    var v7: MatC;
    var k0: MatC;
    var k1: MatC;
    var k2: MatC;
    var k3: MatC;
    var k4: MatC;
    var k5: MatC;
    var k6: MatC;
    var k7: MatC;
    for (var i0 = 0u; i0 < p.n_q; i0 += BT) {
        workgroupBarrier();
        load_block(0u, 3u, li, b, h, i0, p.n_q);
        load_ld(li, sh.bh, i0, BT);
        workgroupBarrier();
        // Sᵀ = K·Qᵀ, then Pᵀ.
        strip_a(row0);
        workgroupBarrier();
        let ni = min(BT, p.n_q - i0);
        if (sh.mine) {
            for (var i = part; i < BT; i += lpr) {
                var e = 0.0;
                if (i < ni) { e = exp(p.scale * Ss[row * BT + i] - Ld[i].x); }
                Pd[row * LDP + i] = f16(e);
            }
        }
        workgroupBarrier();
        // dV += Pᵀ·dO; dPᵀ = V·dOᵀ.
        for (var qb = 0u; qb < BT; qb += MS) {
            let a = coopLoadT<MatA>(&Pd[row0 * LDP + qb], LDP);
            let orow = qb * LDD;
            v0 = coopMultiplyAdd(a, coopLoadT<MatB>(&Tb[orow], LDD), v0);
            if (DC > 1u) { v1 = coopMultiplyAdd(a, coopLoadT<MatB>(&Tb[orow + MS], LDD), v1); }
            if (DC > 2u) { v2 = coopMultiplyAdd(a, coopLoadT<MatB>(&Tb[orow + 2u * MS], LDD), v2); }
            if (DC > 3u) { v3 = coopMultiplyAdd(a, coopLoadT<MatB>(&Tb[orow + 3u * MS], LDD), v3); }
            if (DC > 4u) { v4 = coopMultiplyAdd(a, coopLoadT<MatB>(&Tb[orow + 4u * MS], LDD), v4); }
            if (DC > 5u) { v5 = coopMultiplyAdd(a, coopLoadT<MatB>(&Tb[orow + 5u * MS], LDD), v5); }
            if (DC > 6u) { v6 = coopMultiplyAdd(a, coopLoadT<MatB>(&Tb[orow + 6u * MS], LDD), v6); }
            if (DC > 7u) { v7 = coopMultiplyAdd(a, coopLoadT<MatB>(&Tb[orow + 7u * MS], LDD), v7); }
        }
        strip_b(row0);
        workgroupBarrier();
        // dSᵀ = Pᵀ ⊙ (dPᵀ − D), then dK += dSᵀ·Q.
        if (sh.mine) {
            for (var i = part; i < BT; i += lpr) {
                let x = row * LDP + i;
                Pd[x] = f16(f32(Pd[x]) * (Ss[row * BT + i] - Ld[i].y));
            }
        }
        workgroupBarrier();
        for (var qb = 0u; qb < BT; qb += MS) {
            let a = coopLoadT<MatA>(&Pd[row0 * LDP + qb], LDP);
            let qrow = qb * LDD;
            k0 = coopMultiplyAdd(a, coopLoadT<MatB>(&Ta[qrow], LDD), k0);
            if (DC > 1u) { k1 = coopMultiplyAdd(a, coopLoadT<MatB>(&Ta[qrow + MS], LDD), k1); }
            if (DC > 2u) { k2 = coopMultiplyAdd(a, coopLoadT<MatB>(&Ta[qrow + 2u * MS], LDD), k2); }
            if (DC > 3u) { k3 = coopMultiplyAdd(a, coopLoadT<MatB>(&Ta[qrow + 3u * MS], LDD), k3); }
            if (DC > 4u) { k4 = coopMultiplyAdd(a, coopLoadT<MatB>(&Ta[qrow + 4u * MS], LDD), k4); }
            if (DC > 5u) { k5 = coopMultiplyAdd(a, coopLoadT<MatB>(&Ta[qrow + 5u * MS], LDD), k5); }
            if (DC > 6u) { k6 = coopMultiplyAdd(a, coopLoadT<MatB>(&Ta[qrow + 6u * MS], LDD), k6); }
            if (DC > 7u) { k7 = coopMultiplyAdd(a, coopLoadT<MatB>(&Ta[qrow + 7u * MS], LDD), k7); }
        }
    }
    workgroupBarrier();
    let n = p.n_k;
    let off = p.k_off;
    let s = p.scale;
    flush0(k0, 0u, sh, lane, lanes, n, off, s);
    if (DC > 1u) { flush0(k1, 1u, sh, lane, lanes, n, off, s); }
    if (DC > 2u) { flush0(k2, 2u, sh, lane, lanes, n, off, s); }
    if (DC > 3u) { flush0(k3, 3u, sh, lane, lanes, n, off, s); }
    if (DC > 4u) { flush0(k4, 4u, sh, lane, lanes, n, off, s); }
    if (DC > 5u) { flush0(k5, 5u, sh, lane, lanes, n, off, s); }
    if (DC > 6u) { flush0(k6, 6u, sh, lane, lanes, n, off, s); }
    if (DC > 7u) { flush0(k7, 7u, sh, lane, lanes, n, off, s); }
    flush_dv(v0, 0u, sh, lane, lanes);
    if (DC > 1u) { flush_dv(v1, 1u, sh, lane, lanes); }
    if (DC > 2u) { flush_dv(v2, 2u, sh, lane, lanes); }
    if (DC > 3u) { flush_dv(v3, 3u, sh, lane, lanes); }
    if (DC > 4u) { flush_dv(v4, 4u, sh, lane, lanes); }
    if (DC > 5u) { flush_dv(v5, 5u, sh, lane, lanes); }
    if (DC > 6u) { flush_dv(v6, 6u, sh, lane, lanes); }
    if (DC > 7u) { flush_dv(v7, 7u, sh, lane, lanes); }
}
