enable f16;
enable wgpu_cooperative_matrix;

// Attention forward on cooperative matrices (tensor cores): O = softmax(scale·Q·Kᵀ)·V and lse,
// as attention_forward in attention.wgsl writes them, for f16 operands (the inference and
// mixed-precision paths) on adapters with f16 cooperative matrices. Q, K and V are rounded to
// f16 in workgroup memory; scores and O accumulate in f32; the probabilities are rounded to f16
// before they multiply V.
//
// Two passes over the keys, so that no accumulator is ever rescaled (a cooperative matrix can
// only be loaded, stored and multiplied): the first finds each query's largest score, the
// second takes p = exp(s − max) ≤ 1, adds it to the query's sum l and multiplies P·V into the
// accumulators; O = acc / l at the end, lse = max + ln l. The scores are computed twice, on
// the matrix units, where the one-pass flash form would rescale the accumulators after every
// key block.
//
// Layout. A workgroup is four subgroups (WG = 4 × the fixed subgroup size MS²/8) and takes
// BQ = 4·MS queries of one (batch, head); subgroup s owns query rows s·MS … s·MS + MS − 1 (a
// strip). Keys come BK = 2·MS at a time. Per key block each subgroup computes its strip's
// MS × BK scores as two accumulators (HEAD_DIM / MS multiply-adds each), stores them to its
// strip of Ss, and the subgroup's MS²/8 lanes then take its rows, MS/8 lanes a row, each lane
// every (MS/8)th column: the max in the first pass, the probabilities (to Ps, as f16) and their
// sum in the second. A row's lanes combine their maxima after the first pass and their sums
// after the second, through workgroup memory (Red). The strip's
// HEAD_DIM / MS output accumulators (o0 … o7, the rest unused) then add P·V. Rows past the
// sequence read zeros and are not stored; keys past it weigh 0.
// Matrix operations sit in uniform control flow only.
// Dispatch: grid_1d(ceil(n_q / BQ) · B · H).

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
@group(0) @binding(6) var<storage, read_write> lse: array<f32>;
@group(0) @binding(8) var<storage, read_write> res0: array<S>;

// Head dimension: a multiple of MS, at most 8·MS and 64.
override HEAD_DIM: u32 = 64u;
// Invocations per workgroup: four subgroups of MS²/8.
override WG: u32 = 128u;

// Matrix side (the registry derives the 8×8×8 variant by rewriting this line and the types).
const MS: u32 = 16u;
alias MatA = coop_mat16x16<f16, A>;
alias MatB = coop_mat16x16<f16, B>;
alias MatC = coop_mat16x16<f32, C>;

// Queries and keys a block, the padded row lengths (halves; rows start 16-byte aligned on
// different banks) of the head tiles and of the probabilities, and the head in MS chunks.
const BQ: u32 = 4u * MS;
const BK: u32 = 2u * MS;
const LDD: u32 = 64u + 8u;
const LDP: u32 = BK + 8u;
override DC: u32 = HEAD_DIM / MS;

var<workgroup> Qs: array<f16, BQ * LDD>;
var<workgroup> Ks: array<f16, BK * LDD>;
var<workgroup> Vs: array<f16, BK * LDD>;
// Scores [BQ][BK] (f32); at the end each strip's two MS × MS slots stage the outputs.
var<workgroup> Ss: array<f32, BQ * BK>;
var<workgroup> Ps: array<f16, BQ * LDP>;
// Each query row's sum of probabilities, for the lanes that store its outputs.
var<workgroup> Ls: array<f32, BQ>;
// One value per invocation, for the lanes of a row to combine theirs.
var<workgroup> Red: array<f32, MS * MS / 2u>;

// The combination (max, or sum in lane order) of the values the `lpr` lanes of this lane's row
// put in Red (slot: the lane's place in the workgroup, sg · lanes + lane). Every invocation
// calls it (it holds barriers).
fn combine(slot: u32, lane: u32, lpr: u32, x: f32, is_max: bool) -> f32 {
    Red[slot] = x;
    workgroupBarrier();
    let first = slot - lane % lpr;
    var r = Red[first];
    for (var q = 1u; q < lpr; q++) {
        if (is_max) { r = max(r, Red[first + q]); } else { r += Red[first + q]; }
    }
    workgroupBarrier();
    return r;
}

fn qkv_at(off: u32, b: u32, h: u32, t: u32) -> u32 {
    return off + b * p.s_batch + h * p.s_head + t * p.s_tok;
}

// Copies `rows` tokens from t0 of one head of q, k or v (which: 0, 1, 2) into a tile with row
// length LDD, zeros past the sequence.
fn load_tile(which: u32, li: u32, b: u32, h: u32, t0: u32, rows: u32, n: u32) {
    for (var e = li; e < rows * HEAD_DIM; e += WG) {
        let r = e / HEAD_DIM;
        let c = e % HEAD_DIM;
        let t = t0 + r;
        var x = 0.0h;
        if (t < n) {
            switch which {
                case 0u: { x = f16(q[qkv_at(p.q_off, b, h, t) + c]); }
                case 1u: { x = f16(k[qkv_at(p.k_off, b, h, t) + c]); }
                default: { x = f16(v[qkv_at(p.v_off, b, h, t) + c]); }
            }
        }
        switch which {
            case 0u: { Qs[r * LDD + c] = x; }
            case 1u: { Ks[r * LDD + c] = x; }
            default: { Vs[r * LDD + c] = x; }
        }
    }
}

// This subgroup's strip of the block's scores, Q·Kᵀ, into Ss (unscaled).
fn scores(row0: u32) {
    var s0: MatC;
    var s1: MatC;
    for (var c = 0u; c < DC; c++) {
        let a = coopLoadT<MatA>(&Qs[row0 * LDD + c * MS], LDD);
        // Kᵀ: element (c, key) sits at Ks[key·LDD + c], column-major.
        let b0 = coopLoad<MatB>(&Ks[c * MS], LDD);
        let b1 = coopLoad<MatB>(&Ks[MS * LDD + c * MS], LDD);
        s0 = coopMultiplyAdd(a, b0, s0);
        s1 = coopMultiplyAdd(a, b1, s1);
    }
    coopStoreT(s0, &Ss[row0 * BK], BK);
    coopStoreT(s1, &Ss[row0 * BK + MS], BK);
}

// Stores output chunk `c` (columns c·MS …) of this subgroup's strip through slot c % 2 of its
// strip of Ss, divided by each row's sum.
fn flush(acc: MatC, c: u32, row0: u32, lane: u32, lanes: u32, b: u32, h: u32, i0: u32) {
    let slot = row0 * BK + (c % 2u) * MS * MS;
    coopStoreT(acc, &Ss[slot], MS);
    workgroupBarrier();
    for (var e = lane; e < MS * MS; e += lanes) {
        let r = e / MS;
        let i = i0 + row0 + r;
        if (i < p.n_q) {
            let o = b * p.o_batch + h * p.o_head + i * p.o_tok + c * MS + e % MS;
            res0[o] = S(Ss[slot + e] / Ls[row0 + r]);
        }
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
    let nqb = (p.n_q + BQ - 1u) / BQ;
    let gi = group_index(wid, nwg);
    // A workgroup past the last head (the grid rounds up) repeats the last block's work and
    // stores nothing: returning early would leave the matrix operations out of uniform
    // control flow.
    let live = gi / nqb < p.batch * p.heads;
    let bh = min(gi / nqb, p.batch * p.heads - 1u);
    let b = bh / p.heads;
    let h = bh % p.heads;
    let i0 = select(p.n_q, (gi % nqb) * BQ, live);
    let row0 = sg * MS;
    // This lane's row of the strip, and which of the row's columns it takes (every lpr-th from
    // part).
    let lpr = max(lanes / MS, 1u);
    let row = row0 + min(lane / lpr, MS - 1u);
    let part = lane % lpr;
    let mine = lane < MS * lpr;
    load_tile(0u, li, b, h, i0, BQ, p.n_q);
    var m = -3.4e38;
    for (var j0 = 0u; j0 < p.n_k; j0 += BK) {
        load_tile(1u, li, b, h, j0, BK, p.n_k);
        workgroupBarrier();
        scores(row0);
        workgroupBarrier();
        if (mine) {
            let nj = min(BK, p.n_k - j0);
            for (var j = part; j < nj; j += lpr) { m = max(m, p.scale * Ss[row * BK + j]); }
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
    for (var j0 = 0u; j0 < p.n_k; j0 += BK) {
        workgroupBarrier();
        load_tile(1u, li, b, h, j0, BK, p.n_k);
        load_tile(2u, li, b, h, j0, BK, p.n_k);
        workgroupBarrier();
        scores(row0);
        workgroupBarrier();
        if (mine) {
            let nj = min(BK, p.n_k - j0);
            for (var j = part; j < BK; j += lpr) {
                var e = 0.0;
                if (j < nj) { e = exp(p.scale * Ss[row * BK + j] - m); }
                l += e;
                Ps[row * LDP + j] = f16(e);
            }
        }
        workgroupBarrier();
        for (var kb = 0u; kb < BK; kb += MS) {
            let a = coopLoadT<MatA>(&Ps[row0 * LDP + kb], LDP);
            let vr = kb * LDD;
            o0 = coopMultiplyAdd(a, coopLoadT<MatB>(&Vs[vr], LDD), o0);
            if (DC > 1u) { o1 = coopMultiplyAdd(a, coopLoadT<MatB>(&Vs[vr + MS], LDD), o1); }
            if (DC > 2u) { o2 = coopMultiplyAdd(a, coopLoadT<MatB>(&Vs[vr + 2u * MS], LDD), o2); }
            if (DC > 3u) { o3 = coopMultiplyAdd(a, coopLoadT<MatB>(&Vs[vr + 3u * MS], LDD), o3); }
            if (DC > 4u) { o4 = coopMultiplyAdd(a, coopLoadT<MatB>(&Vs[vr + 4u * MS], LDD), o4); }
            if (DC > 5u) { o5 = coopMultiplyAdd(a, coopLoadT<MatB>(&Vs[vr + 5u * MS], LDD), o5); }
            if (DC > 6u) { o6 = coopMultiplyAdd(a, coopLoadT<MatB>(&Vs[vr + 6u * MS], LDD), o6); }
            if (DC > 7u) { o7 = coopMultiplyAdd(a, coopLoadT<MatB>(&Vs[vr + 7u * MS], LDD), o7); }
        }
    }
    l = combine(slot, lane, lpr, l, false);
    if (mine && part == 0u) {
        Ls[row] = l;
        if (i0 + row < p.n_q) { lse[bh * p.n_q + i0 + row] = m + log(l); }
    }
    workgroupBarrier();
    flush(o0, 0u, row0, lane, lanes, b, h, i0);
    if (DC > 1u) { flush(o1, 1u, row0, lane, lanes, b, h, i0); }
    if (DC > 2u) { flush(o2, 2u, row0, lane, lanes, b, h, i0); }
    if (DC > 3u) { flush(o3, 3u, row0, lane, lanes, b, h, i0); }
    if (DC > 4u) { flush(o4, 4u, row0, lane, lanes, b, h, i0); }
    if (DC > 5u) { flush(o5, 5u, row0, lane, lanes, b, h, i0); }
    if (DC > 6u) { flush(o6, 6u, row0, lane, lanes, b, h, i0); }
    if (DC > 7u) { flush(o7, 7u, row0, lane, lanes, b, h, i0); }
}
