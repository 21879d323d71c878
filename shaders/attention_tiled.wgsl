// Attention's forward as two register-tiled products per block of keys, the way the vec4 matmul
// tiles compute theirs (`attention_forward_tiled`, the `tiled` variant). Same inputs, outputs
// and summation order of each score as attention_forward in attention.wgsl (O and lse).
//
// Why: the thread-per-query kernels read one vec4 of a key or value from workgroup memory for
// every four multiply-adds, and hold a whole head (q and the output accumulator, 128 floats) per
// invocation. Here an invocation holds a 4 × 4 block of the scores and a 4 × 4 block of the
// output, and each pair of vec4 reads feeds 16 multiply-adds, as in the 64×64 matmul tile.
//
// Layout. A workgroup of 128 invocations (tx = lid % 16, ty = lid / 16) owns BQ = 32 queries of
// one (batch, head); the keys come BK = 64 at a time (a block). Invocation (tx, ty) holds:
//   the scores of queries 4ty … 4ty+3 with keys tx, tx+16, tx+32, tx+48 of the block
//     (s0 … s3: one vec4 over the four queries per key);
//   the output of the same queries at head columns 4tx … 4tx+3 (o0 … o3: one vec4 per query);
//   its share of the four queries' running max m and sum l (vec4 over the queries; the sums of
//     the sixteen invocations of a row are added at the end).
// Per block: the scores S = (scale·Q)·Kᵀ (the head summed in order, as a scalar loop would, so
// each score has the bits of attention_forward's); the block's row maxima through workgroup
// memory; P = exp(S − m), stored transposed; O = O·exp(m_old − m) + P·V, keys in order.
// Workgroup memory is 32 KiB (checked by the launcher): Q transposed (8 KiB), the block's K
// transposed and then its V (16 KiB), and the row maxima's partials and then P (8 KiB). P and
// the partials are stored at column (query quad) ty ^ (row % 8), so the eight invocations of a
// store phase hit eight different banks.
// Queries and keys past the sequence read zeros; keys past it weigh 0; nothing past the
// sequence or the head is stored. The tails cost little: invocations whose queries all lie past
// the sequence skip the products, and a last block of at most 16 keys scores slot 0 alone.
// HEAD_DIM ≤ 64. Every workgroup-memory index is in range by the constants above (and
// HEAD_DIM ≤ 64), every buffer access is guarded by the sequence and
// head sizes, which the launcher checks against the buffers: the shader is compiled without
// index clamps (PROVEN_INDEXES in src/gpu/registry.rs).
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
@group(0) @binding(8) var<storage, read_write> res0: array<O>;

override HEAD_DIM: u32 = 64u;
const BQ: u32 = 32u;
const BK: u32 = 64u;

// qt[c·8 + i/4]: component i % 4 is scale·q of query i at head column c.
var<workgroup> qt: array<vec4<f32>, 512>;
// First the block's keys, kt[c·16 + s]: components x, y, z, w are keys s, s+16, s+32, s+48 at
// head column c; then its values, vs[j·16 + c/4]: columns c … c+3 of key j.
var<workgroup> kv: array<vec4<f32>, 1024>;
// First each invocation's row maxima, red[tx·8 + (ty ^ tx % 8)]; then the probabilities,
// pt[j·8 + (ty ^ j % 8)]: queries 4ty … 4ty+3 with key j.
var<workgroup> pr: array<vec4<f32>, 512>;

fn tok_base(off: u32, b: u32, h: u32, t: u32) -> u32 {
    return off + b * p.s_batch + h * p.s_head + t * p.s_tok;
}

// Head columns c … c+3 of token t (zero past the sequence and past the head).
fn q4(b: u32, h: u32, t: u32, c: u32) -> vec4<f32> {
    var r = vec4<f32>(0.0);
    if (t < p.n_q) {
        let base = tok_base(p.q_off, b, h, t);
        if (c < HEAD_DIM) { r.x = f32(q[base + c]); }
        if (c + 1u < HEAD_DIM) { r.y = f32(q[base + c + 1u]); }
        if (c + 2u < HEAD_DIM) { r.z = f32(q[base + c + 2u]); }
        if (c + 3u < HEAD_DIM) { r.w = f32(q[base + c + 3u]); }
    }
    return r;
}

fn k4(b: u32, h: u32, t: u32, c: u32) -> vec4<f32> {
    var r = vec4<f32>(0.0);
    if (t < p.n_k) {
        let base = tok_base(p.k_off, b, h, t);
        if (c < HEAD_DIM) { r.x = f32(k[base + c]); }
        if (c + 1u < HEAD_DIM) { r.y = f32(k[base + c + 1u]); }
        if (c + 2u < HEAD_DIM) { r.z = f32(k[base + c + 2u]); }
        if (c + 3u < HEAD_DIM) { r.w = f32(k[base + c + 3u]); }
    }
    return r;
}

fn v4(b: u32, h: u32, t: u32, c: u32) -> vec4<f32> {
    var r = vec4<f32>(0.0);
    if (t < p.n_k) {
        let base = tok_base(p.v_off, b, h, t);
        if (c < HEAD_DIM) { r.x = f32(v[base + c]); }
        if (c + 1u < HEAD_DIM) { r.y = f32(v[base + c + 1u]); }
        if (c + 2u < HEAD_DIM) { r.z = f32(v[base + c + 2u]); }
        if (c + 3u < HEAD_DIM) { r.w = f32(v[base + c + 3u]); }
    }
    return r;
}

// The workgroup's queries, scaled and transposed: invocation lid loads the 4 × 4 block of query
// quad a = lid % 8 and head quad g = lid / 8.
fn load_q(lid: u32, b: u32, h: u32, i0: u32) {
    let a = lid % 8u;
    let g = lid / 8u;
    let t = i0 + 4u * a;
    let r0 = q4(b, h, t, 4u * g) * p.scale;
    let r1 = q4(b, h, t + 1u, 4u * g) * p.scale;
    let r2 = q4(b, h, t + 2u, 4u * g) * p.scale;
    let r3 = q4(b, h, t + 3u, 4u * g) * p.scale;
    qt[(4u * g) * 8u + a] = vec4<f32>(r0.x, r1.x, r2.x, r3.x);
    qt[(4u * g + 1u) * 8u + a] = vec4<f32>(r0.y, r1.y, r2.y, r3.y);
    qt[(4u * g + 2u) * 8u + a] = vec4<f32>(r0.z, r1.z, r2.z, r3.z);
    qt[(4u * g + 3u) * 8u + a] = vec4<f32>(r0.w, r1.w, r2.w, r3.w);
}

// The block's keys, transposed into slots: invocation lid loads slot s = lid % 16 (keys s,
// s+16, s+32, s+48) at head quads lid / 16 and lid / 16 + 8.
fn load_k(lid: u32, b: u32, h: u32, j0: u32) {
    let s = lid % 16u;
    for (var e = 0u; e < 2u; e++) {
        let g = lid / 16u + 8u * e;
        let r0 = k4(b, h, j0 + s, 4u * g);
        let r1 = k4(b, h, j0 + s + 16u, 4u * g);
        let r2 = k4(b, h, j0 + s + 32u, 4u * g);
        let r3 = k4(b, h, j0 + s + 48u, 4u * g);
        kv[(4u * g) * 16u + s] = vec4<f32>(r0.x, r1.x, r2.x, r3.x);
        kv[(4u * g + 1u) * 16u + s] = vec4<f32>(r0.y, r1.y, r2.y, r3.y);
        kv[(4u * g + 2u) * 16u + s] = vec4<f32>(r0.z, r1.z, r2.z, r3.z);
        kv[(4u * g + 3u) * 16u + s] = vec4<f32>(r0.w, r1.w, r2.w, r3.w);
    }
}

// Invocation lid's eight vec4s of the block's values: head quad lid % 16 of keys lid / 16 + 8e.
struct Vals {
    e0: vec4<f32>,
    e1: vec4<f32>,
    e2: vec4<f32>,
    e3: vec4<f32>,
    e4: vec4<f32>,
    e5: vec4<f32>,
    e6: vec4<f32>,
    e7: vec4<f32>,
}

fn read_v(lid: u32, b: u32, h: u32, j0: u32) -> Vals {
    let c = 4u * (lid % 16u);
    let j = j0 + lid / 16u;
    return Vals(
        v4(b, h, j, c), v4(b, h, j + 8u, c), v4(b, h, j + 16u, c), v4(b, h, j + 24u, c),
        v4(b, h, j + 32u, c), v4(b, h, j + 40u, c), v4(b, h, j + 48u, c), v4(b, h, j + 56u, c),
    );
}

// Key lid / 16 + 8e, head quad lid % 16: vs[(lid / 16 + 8e)·16 + lid % 16] = vs[lid + 128e].
fn store_v(lid: u32, x: Vals) {
    kv[lid] = x.e0;
    kv[lid + 128u] = x.e1;
    kv[lid + 256u] = x.e2;
    kv[lid + 384u] = x.e3;
    kv[lid + 512u] = x.e4;
    kv[lid + 640u] = x.e5;
    kv[lid + 768u] = x.e6;
    kv[lid + 896u] = x.e7;
}

// Scores past the block's nj keys weigh nothing.
fn masked(s: vec4<f32>, key: u32, nj: u32) -> vec4<f32> {
    return select(vec4<f32>(-3.4e38), s, key < nj);
}

@compute @workgroup_size(128)
fn attention_forward_tiled(@builtin(workgroup_id) wid: vec3<u32>,
                           @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_index) lid: u32) {
    let blocks = (p.n_q + BQ - 1u) / BQ;
    let gi = group_index(wid, nwg);
    let bh = gi / blocks;
    if (bh >= p.batch * p.heads) { return; }
    let b = bh / p.heads;
    let h = bh % p.heads;
    let i0 = (gi % blocks) * BQ;
    let tx = lid % 16u;
    let ty = lid / 16u;
    // An invocation whose four queries all lie past the sequence (in its last block of queries:
    // one query of 32 at 257 tokens) skips the products, which leaves whole warps idle there;
    // it still takes part in every barrier and load.
    let live = i0 + 4u * ty < p.n_q;
    load_q(lid, b, h, i0);
    var m = vec4<f32>(-3.4e38);
    var l = vec4<f32>(0.0);
    var o0 = vec4<f32>(0.0);
    var o1 = vec4<f32>(0.0);
    var o2 = vec4<f32>(0.0);
    var o3 = vec4<f32>(0.0);
    for (var j0 = 0u; j0 < p.n_k; j0 += BK) {
        let nj = min(BK, p.n_k - j0);
        // The values' reads go out now and land while the scores are computed.
        let vals = read_v(lid, b, h, j0);
        load_k(lid, b, h, j0);
        workgroupBarrier();
        var s0 = vec4<f32>(0.0);
        var s1 = vec4<f32>(0.0);
        var s2 = vec4<f32>(0.0);
        var s3 = vec4<f32>(0.0);
        // Written out by the registry too (HEAD_DIM is a pipeline constant).
        if (live && nj > 16u) {
            for (var c = 0u; c < HEAD_DIM; c++) {
                let a = qt[c * 8u + ty];
                let kk = kv[c * 16u + tx];
                s0 = fma(a, vec4<f32>(kk.x), s0);
                s1 = fma(a, vec4<f32>(kk.y), s1);
                s2 = fma(a, vec4<f32>(kk.z), s2);
                s3 = fma(a, vec4<f32>(kk.w), s3);
            }
        } else if (live) {
            // A last block of at most 16 keys (one key at 257 tokens): slot 0 alone, the others
            // are masked below. Each score adds the same terms in the same order.
            for (var c = 0u; c < HEAD_DIM; c++) {
                s0 = fma(qt[c * 8u + ty], vec4<f32>(kv[c * 16u + tx].x), s0);
            }
        }
        s0 = masked(s0, tx, nj);
        s1 = masked(s1, tx + 16u, nj);
        s2 = masked(s2, tx + 32u, nj);
        s3 = masked(s3, tx + 48u, nj);
        pr[tx * 8u + (ty ^ (tx % 8u))] = max(max(s0, s1), max(s2, s3));
        workgroupBarrier();
        var mx = m;
        for (var t = 0u; t < 16u; t++) { mx = max(mx, pr[t * 8u + (ty ^ (t % 8u))]); }
        let corr = exp(m - mx);
        let p0 = exp(s0 - mx);
        let p1 = exp(s1 - mx);
        let p2 = exp(s2 - mx);
        let p3 = exp(s3 - mx);
        l = l * corr + ((p0 + p1) + (p2 + p3));
        o0 *= corr.x;
        o1 *= corr.y;
        o2 *= corr.z;
        o3 *= corr.w;
        m = mx;
        // Every invocation has read the maxima (and the keys) before P and V replace them.
        workgroupBarrier();
        let col = ty ^ (tx % 8u);
        pr[tx * 8u + col] = p0;
        pr[(tx + 16u) * 8u + col] = p1;
        pr[(tx + 32u) * 8u + col] = p2;
        pr[(tx + 48u) * 8u + col] = p3;
        store_v(lid, vals);
        workgroupBarrier();
        // O += P·V, keys in order. A whole block's loop is written out by the registry
        // (FILE_LOOPS in src/gpu/registry.rs), so no counter, compare or branch sits between
        // its multiply-adds; the sequence's last block takes the loop as written.
        if (live && nj == BK) {
            for (var jj = 0u; jj < BK; jj++) {
                let pw = pr[jj * 8u + (ty ^ (jj % 8u))];
                let vv = kv[jj * 16u + tx];
                o0 = fma(vec4<f32>(pw.x), vv, o0);
                o1 = fma(vec4<f32>(pw.y), vv, o1);
                o2 = fma(vec4<f32>(pw.z), vv, o2);
                o3 = fma(vec4<f32>(pw.w), vv, o3);
            }
        } else if (live) {
            for (var j = 0u; j < nj; j++) {
                let pw = pr[j * 8u + (ty ^ (j % 8u))];
                let vv = kv[j * 16u + tx];
                o0 = fma(vec4<f32>(pw.x), vv, o0);
                o1 = fma(vec4<f32>(pw.y), vv, o1);
                o2 = fma(vec4<f32>(pw.z), vv, o2);
                o3 = fma(vec4<f32>(pw.w), vv, o3);
            }
        }
        workgroupBarrier();
    }
    // Each row's sum: the sixteen invocations' shares, added in order.
    pr[tx * 8u + (ty ^ (tx % 8u))] = l;
    workgroupBarrier();
    var sum = vec4<f32>(0.0);
    for (var t = 0u; t < 16u; t++) { sum += pr[t * 8u + (ty ^ (t % 8u))]; }
    let inv = 1.0 / sum;
    store_row(b, h, bh, i0 + 4u * ty, tx, o0 * inv.x, m.x, sum.x);
    store_row(b, h, bh, i0 + 4u * ty + 1u, tx, o1 * inv.y, m.y, sum.y);
    store_row(b, h, bh, i0 + 4u * ty + 2u, tx, o2 * inv.z, m.z, sum.z);
    store_row(b, h, bh, i0 + 4u * ty + 3u, tx, o3 * inv.w, m.w, sum.w);
}

// Query i's head columns 4tx … 4tx+3 of O, and (tx = 0) its lse.
fn store_row(b: u32, h: u32, bh: u32, i: u32, tx: u32, x: vec4<f32>, mi: f32, li: f32) {
    if (i >= p.n_q) { return; }
    let base = b * p.o_batch + h * p.o_head + i * p.o_tok;
    let c = 4u * tx;
    if (c < HEAD_DIM) { res0[base + c] = O(x.x); }
    if (c + 1u < HEAD_DIM) { res0[base + c + 1u] = O(x.y); }
    if (c + 2u < HEAD_DIM) { res0[base + c + 2u] = O(x.z); }
    if (c + 3u < HEAD_DIM) { res0[base + c + 3u] = O(x.w); }
    if (tx == 0u) { lse[bh * p.n_q + i] = mi + log(li); }
}

// ---- The backward, tiled the same way (`attention_backward_dq_tiled`,
// `attention_backward_dkv_tiled`, the `tiled` backward) ----
//
// Same quantities as attention_backward_dq and _dkv in attention.wgsl, from the forward's lse
// and D = rowsum(dO⊙O): P = exp(scale·q·k − lse), dS = P ⊙ (dO·v − D); dQ = scale·Σ_j dS·k,
// dK = scale·Σ_i dS·q, dV = Σ_i P·dO. A workgroup of 64 invocations (tx = lid % 8,
// ty = lid / 8) owns BB = 32 tokens of one head (queries for dQ, keys for dK and dV) and
// takes the other side's tokens BB at a time (a block). Invocation (tx, ty) computes the
// block's scores and dO·v for 4 × 4 token pairs (own tokens 4ty … 4ty+3 by block tokens
// 4tx … 4tx+3), each pair of vec4 reads feeding 16 multiply-adds, and accumulates its own
// tokens' gradients at head columns 4tx … 4tx+3 and 32+4tx … 32+4tx+3 (8 vec4 per
// gradient), three vec4 reads feeding 32 multiply-adds. Workgroup memory: the own tokens'
// two head tiles transposed (ota, otb: 8 KiB each), the block's tile (blk, 8 KiB: transposed
// for the scores, as rows for the gradients) and P and dS (pds, 8 KiB), 32 KiB in all.
// Tokens past the sequence read zeros, weigh 0 and are not stored. Dispatch:
// grid_1d(ceil(n_own / BB) · B · H).

@group(0) @binding(5) var<storage, read> dout: array<S>;
@group(0) @binding(7) var<storage, read_write> delta: array<f32>;
@group(0) @binding(9) var<storage, read_write> res1: array<O>;

const BB: u32 = 32u;

var<workgroup> ota: array<vec4<f32>, 512>;
var<workgroup> otb: array<vec4<f32>, 512>;
var<workgroup> blk: array<vec4<f32>, 512>;
var<workgroup> pds: array<vec4<f32>, 512>;

// Head columns c … c+3 of token t of Q (0), K (1), V (2) or dO (3); zero past the sequence
// (queries: n_q, keys: n_k) and past the head.
fn rd4(which: u32, b: u32, h: u32, t: u32, c: u32) -> vec4<f32> {
    if (which == 0u) { return q4(b, h, t, c); }
    if (which == 1u) { return k4(b, h, t, c); }
    if (which == 2u) { return v4(b, h, t, c); }
    var r = vec4<f32>(0.0);
    if (t < p.n_q) {
        let base = b * p.o_batch + h * p.o_head + t * p.o_tok;
        if (c < HEAD_DIM) { r.x = f32(dout[base + c]); }
        if (c + 1u < HEAD_DIM) { r.y = f32(dout[base + c + 1u]); }
        if (c + 2u < HEAD_DIM) { r.z = f32(dout[base + c + 2u]); }
        if (c + 3u < HEAD_DIM) { r.w = f32(dout[base + c + 3u]); }
    }
    return r;
}

// Element i of ota (dst 0), otb (1) or blk (2): workgroup pointers cannot be passed to functions.
fn put_t(dst: u32, i: u32, x: vec4<f32>) {
    if (dst == 0u) {
        ota[i] = x;
    } else if (dst == 1u) {
        otb[i] = x;
    } else {
        blk[i] = x;
    }
}

// BB tokens from t0, times `mul`, transposed into `dst` (put_t): element c·8 + a holds tokens
// 4a … 4a+3 at column c. Invocation lid moves the 4 × 4 blocks of token quad (lid + 64e) % 8,
// column quad (lid + 64e) / 8, for e = 0, 1.
fn load_t(dst: u32, which: u32, lid: u32, b: u32, h: u32, t0: u32, mul: f32) {
    for (var e = 0u; e < 2u; e++) {
        let a = (lid + 64u * e) % 8u;
        let g = (lid + 64u * e) / 8u;
        let t = t0 + 4u * a;
        let r0 = rd4(which, b, h, t, 4u * g) * mul;
        let r1 = rd4(which, b, h, t + 1u, 4u * g) * mul;
        let r2 = rd4(which, b, h, t + 2u, 4u * g) * mul;
        let r3 = rd4(which, b, h, t + 3u, 4u * g) * mul;
        put_t(dst, (4u * g) * 8u + a, vec4<f32>(r0.x, r1.x, r2.x, r3.x));
        put_t(dst, (4u * g + 1u) * 8u + a, vec4<f32>(r0.y, r1.y, r2.y, r3.y));
        put_t(dst, (4u * g + 2u) * 8u + a, vec4<f32>(r0.z, r1.z, r2.z, r3.z));
        put_t(dst, (4u * g + 3u) * 8u + a, vec4<f32>(r0.w, r1.w, r2.w, r3.w));
    }
}

// BB tokens from t0 as rows: blk[i·16 + g] holds columns 4g … 4g+3 of token t0 + i.
fn load_rows(which: u32, lid: u32, b: u32, h: u32, t0: u32) {
    for (var e = 0u; e < 8u; e++) {
        let f = lid + 64u * e;
        blk[f] = rd4(which, b, h, t0 + f / 16u, 4u * (f % 16u));
    }
}

// Where P (half 0) or dS (half 1) of block token i and own token quad `quad` is kept: the
// column swizzled by the block token's quad, so a store phase (tx = 0 … 7, i = 4tx + r) hits
// eight banks.
fn pds_at(half: u32, i: u32, quad: u32) -> u32 {
    return half * 256u + i * 8u + (quad ^ ((i / 4u) % 8u));
}

// The lse and D of query t (zeros past the sequence).
fn lse_at(bh: u32, t: u32) -> f32 {
    if (t < p.n_q) { return lse[bh * p.n_q + t]; }
    return 0.0;
}

fn delta_at(bh: u32, t: u32) -> f32 {
    if (t < p.n_q) { return delta[bh * p.n_q + t]; }
    return 0.0;
}

// Query t's lse and D, or weight 0 (lse = +max) past the sequence.
fn weight_lse(bh: u32, t: u32) -> f32 {
    return select(3.4e38, lse_at(bh, t), t < p.n_q);
}

// An own-token gradient: rows r = 0 … 3 (tokens 4ty + r), columns 4tx … +3 (lo) and
// 32+4tx … +3 (hi).
struct Grad {
    l0: vec4<f32>,
    h0: vec4<f32>,
    l1: vec4<f32>,
    h1: vec4<f32>,
    l2: vec4<f32>,
    h2: vec4<f32>,
    l3: vec4<f32>,
    h3: vec4<f32>,
}

// g += Σ_i w_i ⊗ blk row i over the block's nb tokens in order, w_i = pds[pds_at(half, i, ty)]
// (one weight per own token). The tokens past nb weigh 0, so leaving them out changes no sum.
fn grad_step(g: ptr<function, Grad>, half: u32, tx: u32, ty: u32, nb: u32) {
    var x = *g;
    if (nb == BB) {
        // Written out by the registry (FILE_LOOPS).
        for (var ib = 0u; ib < BB; ib++) {
            x = grad_term(x, pds[pds_at(half, ib, ty)], blk[ib * 16u + tx], blk[ib * 16u + 8u + tx]);
        }
    } else {
        // The sequence's last block (one token at 257).
        for (var i = 0u; i < nb; i++) {
            x = grad_term(x, pds[pds_at(half, i, ty)], blk[i * 16u + tx], blk[i * 16u + 8u + tx]);
        }
    }
    *g = x;
}

// x + w ⊗ (lo, hi): one block token's term for the four own tokens.
fn grad_term(x: Grad, w: vec4<f32>, lo: vec4<f32>, hi: vec4<f32>) -> Grad {
    return Grad(
        fma(vec4<f32>(w.x), lo, x.l0), fma(vec4<f32>(w.x), hi, x.h0),
        fma(vec4<f32>(w.y), lo, x.l1), fma(vec4<f32>(w.y), hi, x.h1),
        fma(vec4<f32>(w.z), lo, x.l2), fma(vec4<f32>(w.z), hi, x.h2),
        fma(vec4<f32>(w.w), lo, x.l3), fma(vec4<f32>(w.w), hi, x.h3),
    );
}

// The 4 × 4 products Σ_c own[c][ty] ⊗ blk[c][tx]: result r (block token 4tx + r) is a vec4
// over the own tokens 4ty … 4ty+3, summed over c in order; zeros for an invocation whose own
// tokens all lie past the sequence (`live` false).
struct Quad {
    r0: vec4<f32>,
    r1: vec4<f32>,
    r2: vec4<f32>,
    r3: vec4<f32>,
}

fn scores_a(tx: u32, ty: u32, live: bool) -> Quad {
    var s = Quad(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    if (!live) { return s; }
    for (var c = 0u; c < HEAD_DIM; c++) {
        let o = ota[c * 8u + ty];
        let x = blk[c * 8u + tx];
        s.r0 = fma(o, vec4<f32>(x.x), s.r0);
        s.r1 = fma(o, vec4<f32>(x.y), s.r1);
        s.r2 = fma(o, vec4<f32>(x.z), s.r2);
        s.r3 = fma(o, vec4<f32>(x.w), s.r3);
    }
    return s;
}

fn scores_b(tx: u32, ty: u32, live: bool) -> Quad {
    var s = Quad(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    if (!live) { return s; }
    for (var c = 0u; c < HEAD_DIM; c++) {
        let o = otb[c * 8u + ty];
        let x = blk[c * 8u + tx];
        s.r0 = fma(o, vec4<f32>(x.x), s.r0);
        s.r1 = fma(o, vec4<f32>(x.y), s.r1);
        s.r2 = fma(o, vec4<f32>(x.z), s.r2);
        s.r3 = fma(o, vec4<f32>(x.w), s.r3);
    }
    return s;
}

// Stores an own-token gradient times `mul` at columns < HEAD_DIM of tokens < n, at the layout
// of offset `off` (Q, K or V): through res0, or through res1 with `to` = 1 (dV in its own
// buffer). dQ's kernel binds no res1, so it stores through `store_row0` alone.
fn store_grad(g: Grad, to: u32, off: u32, b: u32, h: u32, t0: u32, n: u32, tx: u32, mul: f32) {
    if (to == 0u) {
        store_row0(g.l0 * mul, g.h0 * mul, off, b, h, t0, n, tx);
        store_row0(g.l1 * mul, g.h1 * mul, off, b, h, t0 + 1u, n, tx);
        store_row0(g.l2 * mul, g.h2 * mul, off, b, h, t0 + 2u, n, tx);
        store_row0(g.l3 * mul, g.h3 * mul, off, b, h, t0 + 3u, n, tx);
    } else {
        store_row1(g.l0 * mul, g.h0 * mul, off, b, h, t0, n, tx);
        store_row1(g.l1 * mul, g.h1 * mul, off, b, h, t0 + 1u, n, tx);
        store_row1(g.l2 * mul, g.h2 * mul, off, b, h, t0 + 2u, n, tx);
        store_row1(g.l3 * mul, g.h3 * mul, off, b, h, t0 + 3u, n, tx);
    }
}

fn store_q(g: Grad, b: u32, h: u32, t0: u32, tx: u32) {
    let off = p.q_off;
    store_row0(g.l0 * p.scale, g.h0 * p.scale, off, b, h, t0, p.n_q, tx);
    store_row0(g.l1 * p.scale, g.h1 * p.scale, off, b, h, t0 + 1u, p.n_q, tx);
    store_row0(g.l2 * p.scale, g.h2 * p.scale, off, b, h, t0 + 2u, p.n_q, tx);
    store_row0(g.l3 * p.scale, g.h3 * p.scale, off, b, h, t0 + 3u, p.n_q, tx);
}

// Columns 4tx … +3 (lo) and 32+4tx … +3 (hi) of token t, below HEAD_DIM, if t < n.
fn store_row0(lo: vec4<f32>, hi: vec4<f32>, off: u32, b: u32, h: u32, t: u32, n: u32, tx: u32) {
    if (t >= n) { return; }
    let base = tok_base(off, b, h, t);
    for (var u = 0u; u < 4u; u++) {
        let c = 4u * tx + u;
        if (c < HEAD_DIM) { res0[base + c] = O(lo[u]); }
        if (c + 32u < HEAD_DIM) { res0[base + c + 32u] = O(hi[u]); }
    }
}

fn store_row1(lo: vec4<f32>, hi: vec4<f32>, off: u32, b: u32, h: u32, t: u32, n: u32, tx: u32) {
    if (t >= n) { return; }
    let base = tok_base(off, b, h, t);
    for (var u = 0u; u < 4u; u++) {
        let c = 4u * tx + u;
        if (c < HEAD_DIM) { res1[base + c] = O(lo[u]); }
        if (c + 32u < HEAD_DIM) { res1[base + c + 32u] = O(hi[u]); }
    }
}

fn zero_grad() -> Grad {
    let z = vec4<f32>(0.0);
    return Grad(z, z, z, z, z, z, z, z);
}

// dQ: own queries, blocks of keys.
@compute @workgroup_size(64)
fn attention_backward_dq_tiled(@builtin(workgroup_id) wid: vec3<u32>,
                               @builtin(num_workgroups) nwg: vec3<u32>,
                               @builtin(local_invocation_index) lid: u32) {
    let blocks = (p.n_q + BB - 1u) / BB;
    let gi = group_index(wid, nwg);
    let bh = gi / blocks;
    if (bh >= p.batch * p.heads) { return; }
    let b = bh / p.heads;
    let h = bh % p.heads;
    let i0 = (gi % blocks) * BB;
    let tx = lid % 8u;
    let ty = lid / 8u;
    // Whether any of the invocation's four own queries lies in the sequence: the others skip
    // the products (whole warps, in the last block), taking part in every barrier and load.
    let live = i0 + 4u * ty < p.n_q;
    // The own queries, scaled, and their dO; their lse and D.
    load_t(0u, 0u, lid, b, h, i0, p.scale);
    load_t(1u, 3u, lid, b, h, i0, 1.0);
    let qi = i0 + 4u * ty;
    let l4 = vec4<f32>(lse_at(bh, qi), lse_at(bh, qi + 1u), lse_at(bh, qi + 2u), lse_at(bh, qi + 3u));
    let d4 = vec4<f32>(delta_at(bh, qi), delta_at(bh, qi + 1u), delta_at(bh, qi + 2u), delta_at(bh, qi + 3u));
    var g = zero_grad();
    for (var j0 = 0u; j0 < p.n_k; j0 += BB) {
        let nb = min(BB, p.n_k - j0);
        load_t(2u, 1u, lid, b, h, j0, 1.0);
        workgroupBarrier();
        let s = scores_a(tx, ty, live);
        workgroupBarrier();
        load_t(2u, 2u, lid, b, h, j0, 1.0);
        workgroupBarrier();
        let dp = scores_b(tx, ty, live);
        // dS of keys 4tx + r (zero past the sequence) for the four own queries.
        let j = j0 + 4u * tx;
        pds[pds_at(0u, 4u * tx, ty)] = select(vec4<f32>(0.0), exp(s.r0 - l4) * (dp.r0 - d4), j < p.n_k);
        pds[pds_at(0u, 4u * tx + 1u, ty)] = select(vec4<f32>(0.0), exp(s.r1 - l4) * (dp.r1 - d4), j + 1u < p.n_k);
        pds[pds_at(0u, 4u * tx + 2u, ty)] = select(vec4<f32>(0.0), exp(s.r2 - l4) * (dp.r2 - d4), j + 2u < p.n_k);
        pds[pds_at(0u, 4u * tx + 3u, ty)] = select(vec4<f32>(0.0), exp(s.r3 - l4) * (dp.r3 - d4), j + 3u < p.n_k);
        workgroupBarrier();
        load_rows(1u, lid, b, h, j0);
        workgroupBarrier();
        if (live) { grad_step(&g, 0u, tx, ty, nb); }
        workgroupBarrier();
    }
    store_q(g, b, h, i0 + 4u * ty, tx);
}

// dK and dV: own keys, blocks of queries.
@compute @workgroup_size(64)
fn attention_backward_dkv_tiled(@builtin(workgroup_id) wid: vec3<u32>,
                                @builtin(num_workgroups) nwg: vec3<u32>,
                                @builtin(local_invocation_index) lid: u32) {
    let blocks = (p.n_k + BB - 1u) / BB;
    let gi = group_index(wid, nwg);
    let bh = gi / blocks;
    if (bh >= p.batch * p.heads) { return; }
    let b = bh / p.heads;
    let h = bh % p.heads;
    let j0 = (gi % blocks) * BB;
    let tx = lid % 8u;
    let ty = lid / 8u;
    // As in dQ's kernel, for the own keys.
    let live = j0 + 4u * ty < p.n_k;
    load_t(0u, 1u, lid, b, h, j0, 1.0);
    load_t(1u, 2u, lid, b, h, j0, 1.0);
    var dk = zero_grad();
    var dv = zero_grad();
    for (var i0 = 0u; i0 < p.n_q; i0 += BB) {
        let nb = min(BB, p.n_q - i0);
        // Scores of the own keys with the block's queries (scaled), then dO·v.
        load_t(2u, 0u, lid, b, h, i0, p.scale);
        workgroupBarrier();
        let s = scores_a(tx, ty, live);
        workgroupBarrier();
        load_t(2u, 3u, lid, b, h, i0, 1.0);
        workgroupBarrier();
        let dp = scores_b(tx, ty, live);
        // P and dS of queries 4tx + r (weight 0 past the sequence) for the four own keys.
        let i = i0 + 4u * tx;
        let p0 = exp(s.r0 - weight_lse(bh, i));
        let p1 = exp(s.r1 - weight_lse(bh, i + 1u));
        let p2 = exp(s.r2 - weight_lse(bh, i + 2u));
        let p3 = exp(s.r3 - weight_lse(bh, i + 3u));
        pds[pds_at(0u, 4u * tx, ty)] = p0;
        pds[pds_at(0u, 4u * tx + 1u, ty)] = p1;
        pds[pds_at(0u, 4u * tx + 2u, ty)] = p2;
        pds[pds_at(0u, 4u * tx + 3u, ty)] = p3;
        pds[pds_at(1u, 4u * tx, ty)] = p0 * (dp.r0 - delta_at(bh, i));
        pds[pds_at(1u, 4u * tx + 1u, ty)] = p1 * (dp.r1 - delta_at(bh, i + 1u));
        pds[pds_at(1u, 4u * tx + 2u, ty)] = p2 * (dp.r2 - delta_at(bh, i + 2u));
        pds[pds_at(1u, 4u * tx + 3u, ty)] = p3 * (dp.r3 - delta_at(bh, i + 3u));
        workgroupBarrier();
        // dV += Pᵀ·dO, then dK += dSᵀ·Q.
        load_rows(3u, lid, b, h, i0);
        workgroupBarrier();
        if (live) { grad_step(&dv, 0u, tx, ty, nb); }
        workgroupBarrier();
        load_rows(0u, lid, b, h, i0);
        workgroupBarrier();
        if (live) { grad_step(&dk, 1u, tx, ty, nb); }
        workgroupBarrier();
    }
    store_grad(dk, 0u, p.k_off, b, h, j0 + 4u * ty, p.n_k, tx, p.scale);
    store_grad(dv, select(1u, 0u, p.dv_in_res0 != 0u), p.v_off, b, h, j0 + 4u * ty, p.n_k, tx, 1.0);
}
