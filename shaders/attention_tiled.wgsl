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
// sequence or the head is stored. HEAD_DIM ≤ 64. Every workgroup-memory index is in range by
// the constants above (and HEAD_DIM ≤ 64), every buffer access is guarded by the sequence and
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
        for (var c = 0u; c < HEAD_DIM; c++) {
            let a = qt[c * 8u + ty];
            let kk = kv[c * 16u + tx];
            s0 = fma(a, vec4<f32>(kk.x), s0);
            s1 = fma(a, vec4<f32>(kk.y), s1);
            s2 = fma(a, vec4<f32>(kk.z), s2);
            s3 = fma(a, vec4<f32>(kk.w), s3);
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
        if (nj == BK) {
            for (var jj = 0u; jj < BK; jj++) {
                let pw = pr[jj * 8u + (ty ^ (jj % 8u))];
                let vv = kv[jj * 16u + tx];
                o0 = fma(vec4<f32>(pw.x), vv, o0);
                o1 = fma(vec4<f32>(pw.y), vv, o1);
                o2 = fma(vec4<f32>(pw.z), vv, o2);
                o3 = fma(vec4<f32>(pw.w), vv, o3);
            }
        } else {
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
