// Fused scaled-dot-product attention, flash style: O = softmax(scale·Q·Kᵀ)·V per (batch, head).
// Q, K, V (and dQ, dK, dV) are read through strides, so they can live inside one fused qkv
// buffer [B, N, 3, H, d] or be plain [B, H, N, d] tensors; O and dO use their own strides.
// The score matrix is never stored: the forward keeps the log-sum-exp per query (lse, natural
// log, of the scaled scores) and the backward recomputes the probabilities from it.
//
// attention_forward: one thread per query, WG queries per workgroup; keys and values stream
//   through workgroup memory 16 at a time with an online softmax. Writes O and lse.
//   attention_forward4 (the GPU layout) does the same four keys at a time: four independent
//   dot products in flight instead of one 64-long chain, and the tile's scores in named
//   vectors instead of an array indexed by the key. The sums are the same, in the same order.
// attention_probs: P = exp(scale·q·k − lse), for the layers whose maps are asked for.
// attention_backward_delta: D_i = Σ_c dO_i·O_i, a thread a query (CPU drivers).
//   attention_backward_delta16 (GPUs): 16 lanes a query, lane l taking c = l, l+16, …, so
//   neighbouring lanes read neighbouring elements; the lane sums are added in lane order.
// attention_backward_dq: thread per query: dQ_i = scale·Σ_j P_ij(dO_i·v_j − D_i)·k_j.
// attention_backward_dkv: thread per key: dV_j = Σ_i P_ij·dO_i, dK_j = scale·Σ_i dS_ij·q_i.
// Two backward kernels (one by queries, one by keys) avoid float atomics.
// Results (O, P, dQ, dK, dV) are stored as O: the operands' type S, or f32 gradients of f16
// operands (the mixed-precision backward pass, whose loss-scaled gradients can pass f16's range).
// HEAD_DIM (override, ≤ 64) is the head dimension. The thread-per-token kernels hold a head
// vector as HD4 vec4s in registers and the key/value tiles as vec4s, zero past HEAD_DIM, so each
// workgroup-memory read feeds four multiply-adds; the sums run over c = 0, 1, … in the same
// order as a scalar loop (the padding adds exact zeros). WG (override, 16 ≤ WG ≤ 64) is the workgroup
// size of the thread-per-token kernels, sized by the launcher to the sequence (token_group), so a
// short sequence (17 tokens of a 28-px crop) does not leave most of a 64-wide workgroup idle;
// every thread computes the same sums in the same order whatever WG is.
// The inner loops run on every invocation, past-the-end ones on zeros (nothing of theirs is
// stored), so every invocation of a workgroup reads the same tile element there in uniform
// control flow. In the derived shader attention_sg (CPU drivers with subgroups: they load per
// lane), attention_forward has lane 0 of each subgroup read it and broadcast it (`leader`,
// `share4`): 1.3× faster on lavapipe. The backward kernels read three or four tile elements per
// multiply-add group where the forward reads two, and broadcasting made them slower there.
// Dispatch: forward/dq/dkv grid_1d(ceil(rows/WG)·B·H); probs and delta grid_1d(ceil(n/256));
// delta16 grid_1d(ceil(rows/16)).

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
    // attention_backward_dkv: 1 when dV lives in dK's buffer (fused qkv), so both go to res0.
    dv_in_res0: u32,
    // attention_probs: rows of lse per (batch, head), when it holds more than n_q (0: n_q).
    lse_rows: u32,
    _pad5: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<S>;
@group(0) @binding(2) var<storage, read> k: array<S>;
@group(0) @binding(3) var<storage, read> v: array<S>;
@group(0) @binding(4) var<storage, read> o: array<S>;
@group(0) @binding(5) var<storage, read> dout: array<S>;
@group(0) @binding(6) var<storage, read_write> lse: array<f32>;
@group(0) @binding(7) var<storage, read_write> delta: array<f32>;
@group(0) @binding(8) var<storage, read_write> res0: array<O>;
@group(0) @binding(9) var<storage, read_write> res1: array<O>;

override HEAD_DIM: u32 = 64u;
// Head dimension in vec4s.
override HD4: u32 = (HEAD_DIM + 3u) / 4u;
const D4_MAX: u32 = 16u;
override WG: u32 = 64u;
const KT: u32 = 16u;

var<workgroup> tile_a: array<vec4<f32>, 256>; // [KT][D4_MAX]
var<workgroup> tile_b: array<vec4<f32>, 256>; // [KT][D4_MAX]
var<workgroup> tile_s: array<f32, 32>;        // [2][KT]: lse and delta of a query tile
var<workgroup> lane_d: array<f32, 256>;        // attention_backward_delta16's lane sums

// Offset of element 0 of token `t` of head `h` of batch `b` in the q/k/v layout.
fn qkv_base(off: u32, b: u32, h: u32, t: u32) -> u32 {
    return off + b * p.s_batch + h * p.s_head + t * p.s_tok;
}

fn o_base(b: u32, h: u32, t: u32) -> u32 {
    return b * p.o_batch + h * p.o_head + t * p.o_tok;
}

// Elements c … c+3 of a head vector starting at `base`, zero past HEAD_DIM (one per buffer:
// WGSL functions cannot take a storage buffer).
fn ld_q(base: u32, c: u32) -> vec4<f32> {
    var r = vec4<f32>(0.0);
    for (var t = 0u; t < 4u; t++) { if (c + t < HEAD_DIM) { r[t] = f32(q[base + c + t]); } }
    return r;
}

fn ld_k(base: u32, c: u32) -> vec4<f32> {
    var r = vec4<f32>(0.0);
    for (var t = 0u; t < 4u; t++) { if (c + t < HEAD_DIM) { r[t] = f32(k[base + c + t]); } }
    return r;
}

fn ld_v(base: u32, c: u32) -> vec4<f32> {
    var r = vec4<f32>(0.0);
    for (var t = 0u; t < 4u; t++) { if (c + t < HEAD_DIM) { r[t] = f32(v[base + c + t]); } }
    return r;
}

fn ld_do(base: u32, c: u32) -> vec4<f32> {
    var r = vec4<f32>(0.0);
    for (var t = 0u; t < 4u; t++) { if (c + t < HEAD_DIM) { r[t] = f32(dout[base + c + t]); } }
    return r;
}

fn st_res0(base: u32, c: u32, x: vec4<f32>) {
    for (var t = 0u; t < 4u; t++) { if (c + t < HEAD_DIM) { res0[base + c + t] = O(x[t]); } }
}

fn st_res1(base: u32, c: u32, x: vec4<f32>) {
    for (var t = 0u; t < 4u; t++) { if (c + t < HEAD_DIM) { res1[base + c + t] = O(x[t]); } }
}

// Tile elements as the inner loops read them (see attention_sg).
fn share4(v: vec4<f32>) -> vec4<f32> { return v; }

fn tile_a_at(i: u32, leader: bool) -> vec4<f32> {
    var x = vec4<f32>(0.0);
    if (leader) { x = tile_a[i]; }
    return share4(x);
}

fn tile_b_at(i: u32, leader: bool) -> vec4<f32> {
    var x = vec4<f32>(0.0);
    if (leader) { x = tile_b[i]; }
    return share4(x);
}

// acc + a·b summed component by component in order x, y, z, w, as a scalar loop would.
fn dot_acc(a: vec4<f32>, b: vec4<f32>, acc: f32) -> f32 {
    return fma(a.w, b.w, fma(a.z, b.z, fma(a.y, b.y, fma(a.x, b.x, acc))));
}

// The workgroup's tiles of KT keys and values from key j0 on (zero past the end).
fn load_kv_tiles(lid: u32, b: u32, h: u32, j0: u32) {
    for (var e = lid; e < KT * HD4; e += WG) {
        let jj = e / HD4;
        let c4 = e % HD4;
        var kv = vec4<f32>(0.0);
        var vv = vec4<f32>(0.0);
        if (j0 + jj < p.n_k) {
            kv = ld_k(qkv_base(p.k_off, b, h, j0 + jj), 4u * c4);
            vv = ld_v(qkv_base(p.v_off, b, h, j0 + jj), 4u * c4);
        }
        tile_a[jj * D4_MAX + c4] = kv;
        tile_b[jj * D4_MAX + c4] = vv;
    }
}

// The workgroup's tiles of KT queries and their dO, lse and delta from query i0 on.
fn load_qdo_tiles(lid: u32, b: u32, h: u32, bh: u32, i0: u32) {
    for (var e = lid; e < KT * HD4; e += WG) {
        let ii = e / HD4;
        let c4 = e % HD4;
        var qv = vec4<f32>(0.0);
        var dov = vec4<f32>(0.0);
        if (i0 + ii < p.n_q) {
            qv = ld_q(qkv_base(p.q_off, b, h, i0 + ii), 4u * c4);
            dov = ld_do(o_base(b, h, i0 + ii), 4u * c4);
        }
        tile_a[ii * D4_MAX + c4] = qv;
        tile_b[ii * D4_MAX + c4] = dov;
    }
    if (lid < KT) {
        var lv = 0.0;
        var dl = 0.0;
        if (i0 + lid < p.n_q) {
            lv = lse[bh * p.n_q + i0 + lid];
            dl = delta[bh * p.n_q + i0 + lid];
        }
        tile_s[lid] = lv;
        tile_s[KT + lid] = dl;
    }
}

// The workgroup's head of a thread-per-token kernel (bh: batch b, head h; past the last head
// for a spare workgroup of the grid) and its first token t0 of n (WG tokens a workgroup).
struct TokenTile {
    bh: u32,
    b: u32,
    h: u32,
    t0: u32,
}

fn token_tile(wid: vec3<u32>, nwg: vec3<u32>, n: u32) -> TokenTile {
    let blocks = (n + WG - 1u) / WG;
    let gi = group_index(wid, nwg);
    var t: TokenTile;
    t.bh = gi / blocks;
    t.b = t.bh / p.heads;
    t.h = t.bh % p.heads;
    t.t0 = (gi % blocks) * WG;
    return t;
}

@compute @workgroup_size(WG)
fn attention_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let tile = token_tile(wid, nwg, p.n_q);
    if (tile.bh >= p.batch * p.heads) { return; }
    let bh = tile.bh;
    let b = tile.b;
    let h = tile.h;
    let i = tile.t0 + lid;
    let valid = i < p.n_q;
    let leader = true;
    var qr: array<vec4<f32>, 16>;
    var acc: array<vec4<f32>, 16>;
    if (valid) {
        let qb = qkv_base(p.q_off, b, h, i);
        for (var c4 = 0u; c4 < HD4; c4++) { qr[c4] = ld_q(qb, 4u * c4) * p.scale; }
    }
    var m = -3.4e38;
    var l = 0.0;
    for (var j0 = 0u; j0 < p.n_k; j0 += KT) {
        load_kv_tiles(lid, b, h, j0);
        workgroupBarrier();
        let nj = min(KT, p.n_k - j0);
        var s: array<f32, 16>;
        var tmax = -3.4e38;
        for (var jj = 0u; jj < nj; jj++) {
            var d = 0.0;
            for (var c4 = 0u; c4 < HD4; c4++) {
                d = dot_acc(qr[c4], tile_a_at(jj * D4_MAX + c4, leader), d);
            }
            s[jj] = d;
            tmax = max(tmax, d);
        }
        let m_new = max(m, tmax);
        let corr = exp(m - m_new);
        l *= corr;
        for (var c4 = 0u; c4 < HD4; c4++) { acc[c4] *= corr; }
        for (var jj = 0u; jj < nj; jj++) {
            let pj = exp(s[jj] - m_new);
            l += pj;
            for (var c4 = 0u; c4 < HD4; c4++) {
                acc[c4] = fma(vec4<f32>(pj), tile_b_at(jj * D4_MAX + c4, leader), acc[c4]);
            }
        }
        m = m_new;
        workgroupBarrier();
    }
    if (valid) {
        let ob = o_base(b, h, i);
        let inv = 1.0 / l;
        for (var c4 = 0u; c4 < HD4; c4++) { st_res0(ob, 4u * c4, acc[c4] * inv); }
        lse[bh * p.n_q + i] = m + log(l);
    }
}

// A head vector in registers: attention_forward's query (scaled) and output accumulator,
// indexed only by constants once the loops over HD4 (a constant at pipeline creation) unroll.
alias Head = array<vec4<f32>, 16>;

// The scores of keys jj … jj+3 of the key tile: four independent sums, each over c = 0, 1, …
// in order as a scalar loop would add them, so their multiply-adds overlap rather than each
// waiting on the one before (a key's 64-long chain).
fn scores4(fq: ptr<function, Head>, jj: u32) -> vec4<f32> {
    var d = vec4<f32>(0.0);
    for (var c4 = 0u; c4 < HD4; c4++) {
        let q = (*fq)[c4];
        d.x = dot_acc(q, tile_a[jj * D4_MAX + c4], d.x);
        d.y = dot_acc(q, tile_a[(jj + 1u) * D4_MAX + c4], d.y);
        d.z = dot_acc(q, tile_a[(jj + 2u) * D4_MAX + c4], d.z);
        d.w = dot_acc(q, tile_a[(jj + 3u) * D4_MAX + c4], d.w);
    }
    return d;
}

// Scores of keys jj … jj+3, -3.4e38 (weight 0) for those past the tile's nj keys.
fn masked4(d: vec4<f32>, jj: u32, nj: u32) -> vec4<f32> {
    let j = vec4<u32>(jj, jj + 1u, jj + 2u, jj + 3u);
    return select(vec4<f32>(-3.4e38), d, j < vec4<u32>(nj));
}

// facc += pw.x·v_jj + pw.y·v_jj+1 + … in key order (each component's sum in the same order as
// one key at a time).
fn accumulate4(facc: ptr<function, Head>, pw: vec4<f32>, jj: u32) {
    for (var c4 = 0u; c4 < HD4; c4++) {
        var a = (*facc)[c4];
        a = fma(vec4<f32>(pw.x), tile_b[jj * D4_MAX + c4], a);
        a = fma(vec4<f32>(pw.y), tile_b[(jj + 1u) * D4_MAX + c4], a);
        a = fma(vec4<f32>(pw.z), tile_b[(jj + 2u) * D4_MAX + c4], a);
        a = fma(vec4<f32>(pw.w), tile_b[(jj + 3u) * D4_MAX + c4], a);
        (*facc)[c4] = a;
    }
}

@compute @workgroup_size(WG)
fn attention_forward4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let tile = token_tile(wid, nwg, p.n_q);
    if (tile.bh >= p.batch * p.heads) { return; }
    let bh = tile.bh;
    let b = tile.b;
    let h = tile.h;
    let i = tile.t0 + lid;
    let valid = i < p.n_q;
    var fq: Head;
    var facc: Head;
    if (valid) {
        let qb = qkv_base(p.q_off, b, h, i);
        for (var c4 = 0u; c4 < HD4; c4++) { fq[c4] = ld_q(qb, 4u * c4) * p.scale; }
    }
    var m = -3.4e38;
    var l = 0.0;
    for (var j0 = 0u; j0 < p.n_k; j0 += KT) {
        load_kv_tiles(lid, b, h, j0);
        workgroupBarrier();
        // The tile's KT keys in four groups of four, as named vectors (no array indexed by a
        // key); a group wholly past the sequence is skipped, the rest of one weighs 0.
        let nj = min(KT, p.n_k - j0);
        let s0 = masked4(scores4(&fq, 0u), 0u, nj);
        var s1 = vec4<f32>(-3.4e38);
        var s2 = vec4<f32>(-3.4e38);
        var s3 = vec4<f32>(-3.4e38);
        if (nj > 4u) { s1 = masked4(scores4(&fq, 4u), 4u, nj); }
        if (nj > 8u) { s2 = masked4(scores4(&fq, 8u), 8u, nj); }
        if (nj > 12u) { s3 = masked4(scores4(&fq, 12u), 12u, nj); }
        let m_new = max(m, max16(s0, s1, s2, s3));
        let corr = exp(m - m_new);
        l *= corr;
        for (var c4 = 0u; c4 < HD4; c4++) { facc[c4] *= corr; }
        let p0 = exp(s0 - m_new);
        let p1 = exp(s1 - m_new);
        let p2 = exp(s2 - m_new);
        let p3 = exp(s3 - m_new);
        l = hsum_from(hsum_from(hsum_from(hsum_from(l, p0), p1), p2), p3);
        accumulate4(&facc, p0, 0u);
        if (nj > 4u) { accumulate4(&facc, p1, 4u); }
        if (nj > 8u) { accumulate4(&facc, p2, 8u); }
        if (nj > 12u) { accumulate4(&facc, p3, 12u); }
        m = m_new;
        workgroupBarrier();
    }
    if (valid) {
        let ob = o_base(b, h, i);
        let inv = 1.0 / l;
        for (var c4 = 0u; c4 < HD4; c4++) { st_res0(ob, 4u * c4, facc[c4] * inv); }
        lse[bh * p.n_q + i] = m + log(l);
    }
}

@compute @workgroup_size(256)
fn attention_probs(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let idx = group_index(wid, nwg) * 256u + lid;
    if (idx >= p.batch * p.heads * p.n_q * p.n_k) { return; }
    let j = idx % p.n_k;
    let row = idx / p.n_k;
    let i = row % p.n_q;
    let bh = row / p.n_q;
    let b = bh / p.heads;
    let h = bh % p.heads;
    let qb = qkv_base(p.q_off, b, h, i);
    let kb = qkv_base(p.k_off, b, h, j);
    var d = 0.0;
    for (var c = 0u; c < HEAD_DIM; c++) { d = fma(f32(q[qb + c]), f32(k[kb + c]), d); }
    let lse_rows = select(p.n_q, p.lse_rows, p.lse_rows != 0u);
    res0[idx] = O(exp(d * p.scale - lse[bh * lse_rows + i]));
}

@compute @workgroup_size(256)
fn attention_backward_delta(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                            @builtin(local_invocation_index) lid: u32) {
    let row = group_index(wid, nwg) * 256u + lid;
    if (row >= p.batch * p.heads * p.n_q) { return; }
    let i = row % p.n_q;
    let bh = row / p.n_q;
    let ob = o_base(bh / p.heads, bh % p.heads, i);
    var d = 0.0;
    for (var c = 0u; c < HEAD_DIM; c++) { d = fma(f32(dout[ob + c]), f32(o[ob + c]), d); }
    delta[row] = d;
}

@compute @workgroup_size(256)
fn attention_backward_delta16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                              @builtin(local_invocation_index) lid: u32) {
    let row = group_index(wid, nwg) * 16u + lid / 16u;
    let lane = lid % 16u;
    let live = row < p.batch * p.heads * p.n_q;
    var d = 0.0;
    if (live) {
        let bh = row / p.n_q;
        let ob = o_base(bh / p.heads, bh % p.heads, row % p.n_q);
        for (var c = lane; c < HEAD_DIM; c += 16u) { d = fma(f32(dout[ob + c]), f32(o[ob + c]), d); }
    }
    lane_d[lid] = d;
    workgroupBarrier();
    if (live && lane == 0u) {
        var s = lane_d[lid];
        for (var l = 1u; l < 16u; l++) { s += lane_d[lid + l]; }
        delta[row] = s;
    }
}

@compute @workgroup_size(WG)
fn attention_backward_dq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let tile = token_tile(wid, nwg, p.n_q);
    if (tile.bh >= p.batch * p.heads) { return; }
    let bh = tile.bh;
    let b = tile.b;
    let h = tile.h;
    let i = tile.t0 + lid;
    let valid = i < p.n_q;
    var qr: array<vec4<f32>, 16>;
    var dor: array<vec4<f32>, 16>;
    var dq: array<vec4<f32>, 16>;
    var li = 0.0;
    var di = 0.0;
    if (valid) {
        let qb = qkv_base(p.q_off, b, h, i);
        let ob = o_base(b, h, i);
        for (var c4 = 0u; c4 < HD4; c4++) {
            qr[c4] = ld_q(qb, 4u * c4) * p.scale;
            dor[c4] = ld_do(ob, 4u * c4);
        }
        li = lse[bh * p.n_q + i];
        di = delta[bh * p.n_q + i];
    }
    for (var j0 = 0u; j0 < p.n_k; j0 += KT) {
        load_kv_tiles(lid, b, h, j0);
        workgroupBarrier();
        let nj = min(KT, p.n_k - j0);
        for (var jj = 0u; jj < nj; jj++) {
            var s = 0.0;
            var dp = 0.0;
            for (var c4 = 0u; c4 < HD4; c4++) {
                s = dot_acc(qr[c4], tile_a[jj * D4_MAX + c4], s);
                dp = dot_acc(dor[c4], tile_b[jj * D4_MAX + c4], dp);
            }
            let ds = exp(s - li) * (dp - di);
            for (var c4 = 0u; c4 < HD4; c4++) {
                dq[c4] = fma(vec4<f32>(ds), tile_a[jj * D4_MAX + c4], dq[c4]);
            }
        }
        workgroupBarrier();
    }
    if (valid) {
        let qb = qkv_base(p.q_off, b, h, i);
        for (var c4 = 0u; c4 < HD4; c4++) { st_res0(qb, 4u * c4, dq[c4] * p.scale); }
    }
}

@compute @workgroup_size(WG)
fn attention_backward_dkv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let tile = token_tile(wid, nwg, p.n_k);
    if (tile.bh >= p.batch * p.heads) { return; }
    let bh = tile.bh;
    let b = tile.b;
    let h = tile.h;
    let j = tile.t0 + lid;
    let valid = j < p.n_k;
    var kr: array<vec4<f32>, 16>;
    var vr: array<vec4<f32>, 16>;
    var dk: array<vec4<f32>, 16>;
    var dv: array<vec4<f32>, 16>;
    if (valid) {
        let kb = qkv_base(p.k_off, b, h, j);
        let vb = qkv_base(p.v_off, b, h, j);
        for (var c4 = 0u; c4 < HD4; c4++) {
            kr[c4] = ld_k(kb, 4u * c4);
            vr[c4] = ld_v(vb, 4u * c4);
        }
    }
    for (var i0 = 0u; i0 < p.n_q; i0 += KT) {
        load_qdo_tiles(lid, b, h, bh, i0);
        workgroupBarrier();
        let ni = min(KT, p.n_q - i0);
        for (var ii = 0u; ii < ni; ii++) {
            var s = 0.0;
            var dp = 0.0;
            for (var c4 = 0u; c4 < HD4; c4++) {
                s = dot_acc(tile_a[ii * D4_MAX + c4], kr[c4], s);
                dp = dot_acc(tile_b[ii * D4_MAX + c4], vr[c4], dp);
            }
            let pij = exp(s * p.scale - tile_s[ii]);
            let ds = pij * (dp - tile_s[KT + ii]);
            for (var c4 = 0u; c4 < HD4; c4++) {
                dv[c4] = fma(vec4<f32>(pij), tile_b[ii * D4_MAX + c4], dv[c4]);
                dk[c4] = fma(vec4<f32>(ds), tile_a[ii * D4_MAX + c4], dk[c4]);
            }
        }
        workgroupBarrier();
    }
    if (valid) {
        let kb = qkv_base(p.k_off, b, h, j);
        let vb = qkv_base(p.v_off, b, h, j);
        for (var c4 = 0u; c4 < HD4; c4++) {
            st_res0(kb, 4u * c4, dk[c4] * p.scale);
            if (p.dv_in_res0 != 0u) { st_res0(vb, 4u * c4, dv[c4]); } else { st_res1(vb, 4u * c4, dv[c4]); }
        }
    }
}

// PAIRS: the derived shader attention_pairs (src/gpu/registry.rs) puts attention_pairs.wgsl here.
