// attention_backward_dkv2 and attention_backward_dq2: dK, dV and dQ as attention_backward_dkv
// and attention_backward_dq compute them, for the GPU layout. Appended to attention.wgsl in two
// derived shaders: attention_pairs (native adapters with subgroups: the partial sums meet
// through subgroup shuffles) and attention_pairs_wg (every adapter, the browser's included:
// they meet through workgroup memory, one barrier per exchange).
// Two invocations per key (2i: the first half of the head's vec4s, 2i+1: the second), each
// holding its half of k, v, dK and dV: 128 registers of arrays where one invocation per key
// needs 256, which is more than a GPU gives an invocation (the rest spill to memory). dq2
// does the same per query with q, dO and dQ: 96 registers where one invocation holds 192,
// which also spilled (bench/shader_stats.sh: 11 VGPRs with AMD's compiler, 15 with NVK's). The
// halves' partial scores q·k and dO·v are summed with subgroupShuffleXor(·, 1), so subgroups
// must hold consecutive invocations (as on every driver seen), or through workgroup memory,
// which gives the same bits. Both invocations of a pair get the same sum (first half + second
// half: IEEE addition commutes); it differs from the one-invocation kernel's sum over c in
// order by rounding only.
// SPLIT (override, 2 or 4) is how many invocations share a token: with 4 ("quads") each holds a
// quarter of the head, half the registers again, for a second shuffle per sum (the four partial
// sums meet in the same order in all four invocations: IEEE addition commutes).
// WG (override) invocations cover WG / SPLIT keys (queries). Dispatch:
// grid_1d(ceil(n / (WG/SPLIT))·B·H) with n the keys (queries).

override SPLIT: u32 = 2u;

// vec4s per invocation's share of the head ("half" below where SPLIT is 2).
override H2: u32 = (HD4 + SPLIT - 1u) / SPLIT;

// The value of invocation lid ^ mask (a partner of the same token). Adapters without subgroups
// (the browser among them) take the derived shader attention_pairs_wg, which replaces these two
// lines with an exchange through workgroup memory (src/gpu/registry.rs, PAIRS_WG).
fn swap2(lid: u32, mask: u32, v: vec2<f32>) -> vec2<f32> { return subgroupShuffleXor(v, mask); }
fn swap4(lid: u32, mask: u32, v: vec4<f32>) -> vec4<f32> { return subgroupShuffleXor(v, mask); }

// The sum of a token's SPLIT partial sums, in every one of its invocations. Every invocation of
// a workgroup calls these the same number of times, in uniform control flow (the exchange
// through workgroup memory takes a barrier).
fn across2(lid: u32, v: vec2<f32>) -> vec2<f32> {
    var s = v + swap2(lid, 1u, v);
    if (SPLIT == 4u) { s += swap2(lid, 2u, s); }
    return s;
}

fn across4(lid: u32, v: vec4<f32>) -> vec4<f32> {
    var s = v + swap4(lid, 1u, v);
    if (SPLIT == 4u) { s += swap4(lid, 2u, s); }
    return s;
}

// What one invocation of a pair kernel works on: head bh (batch b, head h), token t of n
// (`valid` while t < n), and the half of the head from vec4 c0 on.
struct PairSlot {
    bh: u32,
    b: u32,
    h: u32,
    t: u32,
    valid: bool,
    c0: u32,
}

// Whether the workgroup has a head to work on (else all of it returns at once). Apart from
// pair_slot, which depends on the invocation, so that a compiler that checks uniformity
// (WebGPU's) sees the barriers after that return in uniform control flow.
fn pair_live(wid: vec3<u32>, nwg: vec3<u32>, n: u32) -> bool {
    let per = WG / SPLIT;
    return group_index(wid, nwg) / ((n + per - 1u) / per) < p.batch * p.heads;
}

fn pair_slot(wid: vec3<u32>, nwg: vec3<u32>, lid: u32, n: u32) -> PairSlot {
    let per = WG / SPLIT;
    let blocks = (n + per - 1u) / per;
    let gi = group_index(wid, nwg);
    var s: PairSlot;
    s.bh = gi / blocks;
    s.b = s.bh / p.heads;
    s.h = s.bh % p.heads;
    s.t = (gi % blocks) * per + lid / SPLIT;
    s.valid = s.t < n;
    s.c0 = (lid % SPLIT) * H2;
    return s;
}

@compute @workgroup_size(WG)
fn attention_backward_dkv2(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_index) lid: u32) {
    if (!pair_live(wid, nwg, p.n_k)) { return; }
    let slot = pair_slot(wid, nwg, lid, p.n_k);
    let bh = slot.bh;
    let b = slot.b;
    let h = slot.h;
    let j = slot.t;
    let c0 = slot.c0;
    let valid = slot.valid;
    var kr: array<vec4<f32>, 8>;
    var vr: array<vec4<f32>, 8>;
    var dk: array<vec4<f32>, 8>;
    var dv: array<vec4<f32>, 8>;
    let kb = qkv_base(p.k_off, b, h, j);
    let vb = qkv_base(p.v_off, b, h, j);
    if (valid) {
        for (var t = 0u; t < H2; t++) {
            if (c0 + t < HD4) {
                kr[t] = ld_k(kb, 4u * (c0 + t));
                vr[t] = ld_v(vb, 4u * (c0 + t));
            }
        }
    }
    for (var i0 = 0u; i0 < p.n_q; i0 += KT) {
        load_qdo_tiles(lid, b, h, bh, i0);
        workgroupBarrier();
        let ni = min(KT, p.n_q - i0);
        for (var ii = 0u; ii < ni; ii++) {
            // With HD4 odd the second half's last vec4 lies past the head: the tiles hold
            // whatever was there (the loads never write it), so it is read as zero.
            var part = vec2<f32>(0.0);
            for (var t = 0u; t < H2; t++) {
                let e = ii * D4_MAX + c0 + t;
                let inside = c0 + t < HD4;
                part.x = dot_acc(select(vec4<f32>(0.0), tile_a[e], inside), kr[t], part.x);
                part.y = dot_acc(select(vec4<f32>(0.0), tile_b[e], inside), vr[t], part.y);
            }
            let sums = across2(lid, part);
            let pij = exp(sums.x * p.scale - tile_s[ii]);
            let ds = pij * (sums.y - tile_s[KT + ii]);
            // (Past the head these sums take garbage, but they are never stored.)
            for (var t = 0u; t < H2; t++) {
                let e = ii * D4_MAX + c0 + t;
                dv[t] = fma(vec4<f32>(pij), tile_b[e], dv[t]);
                dk[t] = fma(vec4<f32>(ds), tile_a[e], dk[t]);
            }
        }
        workgroupBarrier();
    }
    if (valid) {
        for (var t = 0u; t < H2; t++) {
            let c = 4u * (c0 + t);
            if (c0 + t < HD4) {
                st_res0(kb, c, dk[t] * p.scale);
                if (p.dv_in_res0 != 0u) { st_res0(vb, c, dv[t]); } else { st_res1(vb, c, dv[t]); }
            }
        }
    }
}

@compute @workgroup_size(WG)
fn attention_backward_dq2(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    if (!pair_live(wid, nwg, p.n_q)) { return; }
    let slot = pair_slot(wid, nwg, lid, p.n_q);
    let bh = slot.bh;
    let b = slot.b;
    let h = slot.h;
    let i = slot.t;
    let c0 = slot.c0;
    let valid = slot.valid;
    var qr: array<vec4<f32>, 8>;
    var dor: array<vec4<f32>, 8>;
    var dq: array<vec4<f32>, 8>;
    var li = 0.0;
    var di = 0.0;
    let qb = qkv_base(p.q_off, b, h, i);
    if (valid) {
        let ob = o_base(b, h, i);
        for (var t = 0u; t < H2; t++) {
            if (c0 + t < HD4) {
                qr[t] = ld_q(qb, 4u * (c0 + t)) * p.scale;
                dor[t] = ld_do(ob, 4u * (c0 + t));
            }
        }
        li = lse[bh * p.n_q + i];
        di = delta[bh * p.n_q + i];
    }
    for (var j0 = 0u; j0 < p.n_k; j0 += KT) {
        load_kv_tiles(lid, b, h, j0);
        workgroupBarrier();
        let nj = min(KT, p.n_k - j0);
        for (var jj = 0u; jj < nj; jj++) {
            // As in dkv2, a vec4 past the head is read as zero.
            var part = vec2<f32>(0.0);
            for (var t = 0u; t < H2; t++) {
                let e = jj * D4_MAX + c0 + t;
                let inside = c0 + t < HD4;
                part.x = dot_acc(qr[t], select(vec4<f32>(0.0), tile_a[e], inside), part.x);
                part.y = dot_acc(dor[t], select(vec4<f32>(0.0), tile_b[e], inside), part.y);
            }
            let sums = across2(lid, part);
            let ds = exp(sums.x - li) * (sums.y - di);
            for (var t = 0u; t < H2; t++) {
                dq[t] = fma(vec4<f32>(ds), tile_a[jj * D4_MAX + c0 + t], dq[t]);
            }
        }
        workgroupBarrier();
    }
    if (valid) {
        for (var t = 0u; t < H2; t++) {
            if (c0 + t < HD4) { st_res0(qb, 4u * (c0 + t), dq[t] * p.scale); }
        }
    }
}

// attention_forward2: attention_forward4 with two invocations per query, each holding half of
// the scaled query and of the output accumulator (64 registers of arrays where one invocation
// holds 128), so more queries stay resident per core. Each four keys' half scores meet through
// one shuffle.
alias Half = array<vec4<f32>, 8>;

// The halves' scores of keys jj … jj+3 (the sum over this invocation's vec4s of the head), a
// vec4 past the head read as zero.
fn half_scores4(fq: ptr<function, Half>, jj: u32, c0: u32) -> vec4<f32> {
    var d = vec4<f32>(0.0);
    for (var t = 0u; t < H2; t++) {
        let q = (*fq)[t];
        let e = c0 + t;
        let z = vec4<f32>(0.0);
        let inside = e < HD4;
        d.x = dot_acc(q, select(z, tile_a[jj * D4_MAX + e], inside), d.x);
        d.y = dot_acc(q, select(z, tile_a[(jj + 1u) * D4_MAX + e], inside), d.y);
        d.z = dot_acc(q, select(z, tile_a[(jj + 2u) * D4_MAX + e], inside), d.z);
        d.w = dot_acc(q, select(z, tile_a[(jj + 3u) * D4_MAX + e], inside), d.w);
    }
    return d;
}

fn pair_scores4(fq: ptr<function, Half>, lid: u32, jj: u32, c0: u32, nj: u32) -> vec4<f32> {
    let part = half_scores4(fq, jj, c0);
    return masked4(across4(lid, part), jj, nj);
}

fn half_accumulate4(facc: ptr<function, Half>, pw: vec4<f32>, jj: u32, c0: u32) {
    for (var t = 0u; t < H2; t++) {
        let e = c0 + t;
        var a = (*facc)[t];
        a = fma(vec4<f32>(pw.x), tile_b[jj * D4_MAX + e], a);
        a = fma(vec4<f32>(pw.y), tile_b[(jj + 1u) * D4_MAX + e], a);
        a = fma(vec4<f32>(pw.z), tile_b[(jj + 2u) * D4_MAX + e], a);
        a = fma(vec4<f32>(pw.w), tile_b[(jj + 3u) * D4_MAX + e], a);
        (*facc)[t] = a;
    }
}

@compute @workgroup_size(WG)
fn attention_forward2(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    if (!pair_live(wid, nwg, p.n_q)) { return; }
    let slot = pair_slot(wid, nwg, lid, p.n_q);
    let bh = slot.bh;
    let b = slot.b;
    let h = slot.h;
    let i = slot.t;
    let c0 = slot.c0;
    let valid = slot.valid;
    var fq: Half;
    var facc: Half;
    if (valid) {
        let qb = qkv_base(p.q_off, b, h, i);
        for (var t = 0u; t < H2; t++) {
            if (c0 + t < HD4) { fq[t] = ld_q(qb, 4u * (c0 + t)) * p.scale; }
        }
    }
    var m = -3.4e38;
    var l = 0.0;
    for (var j0 = 0u; j0 < p.n_k; j0 += KT) {
        load_kv_tiles(lid, b, h, j0);
        workgroupBarrier();
        // Both invocations of a pair take the same branches (nj is the workgroup's), so each
        // shuffle finds its partner.
        let nj = min(KT, p.n_k - j0);
        let s0 = pair_scores4(&fq, lid, 0u, c0, nj);
        var s1 = vec4<f32>(-3.4e38);
        var s2 = vec4<f32>(-3.4e38);
        var s3 = vec4<f32>(-3.4e38);
        if (nj > 4u) { s1 = pair_scores4(&fq, lid, 4u, c0, nj); }
        if (nj > 8u) { s2 = pair_scores4(&fq, lid, 8u, c0, nj); }
        if (nj > 12u) { s3 = pair_scores4(&fq, lid, 12u, c0, nj); }
        let m_new = max(m, max16(s0, s1, s2, s3));
        let corr = exp(m - m_new);
        l *= corr;
        for (var t = 0u; t < H2; t++) { facc[t] *= corr; }
        let p0 = exp(s0 - m_new);
        let p1 = exp(s1 - m_new);
        let p2 = exp(s2 - m_new);
        let p3 = exp(s3 - m_new);
        l = hsum_from(hsum_from(hsum_from(hsum_from(l, p0), p1), p2), p3);
        half_accumulate4(&facc, p0, 0u, c0);
        if (nj > 4u) { half_accumulate4(&facc, p1, 4u, c0); }
        if (nj > 8u) { half_accumulate4(&facc, p2, 8u, c0); }
        if (nj > 12u) { half_accumulate4(&facc, p3, 12u, c0); }
        m = m_new;
        workgroupBarrier();
    }
    if (valid) {
        let ob = o_base(b, h, i);
        let inv = 1.0 / l;
        for (var t = 0u; t < H2; t++) {
            if (c0 + t < HD4) { st_res0(ob, 4u * (c0 + t), facc[t] * inv); }
        }
        if (c0 == 0u) { lse[bh * p.n_q + i] = m + log(l); }
    }
}

// attention_forward_crossed: two invocations take two queries together (2g and 2g+1 of the
// workgroup's WG), invocation r holding half r of both queries' scaled q and output
// accumulators: as many registers of arrays as attention_forward4's one query, while every key
// and value read from workgroup memory feeds the multiply-adds of two queries instead of one
// (attention_forward4 reads 32 vec4 a key for 32 vec4 multiply-adds; this, 16). Each four keys'
// half scores of each query meet through one shuffle, as in attention_forward2, whose sums,
// in the same order, this gives bit for bit. SPLIT keeps its default, 2. Dispatch: as
// attention_forward4, grid_1d(ceil(n_q/WG)·B·H), WG even.

// Keys jj … jj+3's scores of the pair's two queries.
struct Crossed {
    a: vec4<f32>,
    b: vec4<f32>,
}

// fq holds the first query's half at 0 … H2-1 and the second's at H2 …; a vec4 past the head
// reads as zero.
fn crossed_scores4(fq: ptr<function, Head>, lid: u32, jj: u32, c0: u32, nj: u32) -> Crossed {
    var da = vec4<f32>(0.0);
    var db = vec4<f32>(0.0);
    for (var t = 0u; t < H2; t++) {
        let e = c0 + t;
        let z = vec4<f32>(0.0);
        let inside = e < HD4;
        let k0 = select(z, tile_a[jj * D4_MAX + e], inside);
        let k1 = select(z, tile_a[(jj + 1u) * D4_MAX + e], inside);
        let k2 = select(z, tile_a[(jj + 2u) * D4_MAX + e], inside);
        let k3 = select(z, tile_a[(jj + 3u) * D4_MAX + e], inside);
        let qa = (*fq)[t];
        let qb = (*fq)[H2 + t];
        da = vec4<f32>(dot_acc(qa, k0, da.x), dot_acc(qa, k1, da.y), dot_acc(qa, k2, da.z), dot_acc(qa, k3, da.w));
        db = vec4<f32>(dot_acc(qb, k0, db.x), dot_acc(qb, k1, db.y), dot_acc(qb, k2, db.z), dot_acc(qb, k3, db.w));
    }
    var s: Crossed;
    s.a = masked4(across4(lid, da), jj, nj);
    s.b = masked4(across4(lid, db), jj, nj);
    return s;
}

// Both queries' accumulators += their weights of keys jj … jj+3 times the keys' values, each
// in key order.
fn crossed_accumulate4(facc: ptr<function, Head>, s: Crossed, jj: u32, c0: u32) {
    for (var t = 0u; t < H2; t++) {
        let e = c0 + t;
        let v0 = tile_b[jj * D4_MAX + e];
        let v1 = tile_b[(jj + 1u) * D4_MAX + e];
        let v2 = tile_b[(jj + 2u) * D4_MAX + e];
        let v3 = tile_b[(jj + 3u) * D4_MAX + e];
        var a = (*facc)[t];
        a = fma(vec4<f32>(s.a.x), v0, a);
        a = fma(vec4<f32>(s.a.y), v1, a);
        a = fma(vec4<f32>(s.a.z), v2, a);
        a = fma(vec4<f32>(s.a.w), v3, a);
        (*facc)[t] = a;
        var b = (*facc)[H2 + t];
        b = fma(vec4<f32>(s.b.x), v0, b);
        b = fma(vec4<f32>(s.b.y), v1, b);
        b = fma(vec4<f32>(s.b.z), v2, b);
        b = fma(vec4<f32>(s.b.w), v3, b);
        (*facc)[H2 + t] = b;
    }
}

fn crossed_none() -> Crossed {
    return Crossed(vec4<f32>(-3.4e38), vec4<f32>(-3.4e38));
}

// The pair's weights exp(s − m) of one group of keys, per query.
fn crossed_weights(s: Crossed, m: vec2<f32>) -> Crossed {
    return Crossed(exp(s.a - m.x), exp(s.b - m.y));
}

fn crossed_store(b: u32, h: u32, bh: u32, i: u32, c0: u32, at: u32, fa: ptr<function, Head>, m: f32, l: f32) {
    if (i >= p.n_q) { return; }
    let ob = o_base(b, h, i);
    let inv = 1.0 / l;
    for (var t = 0u; t < H2; t++) {
        if (c0 + t < HD4) { st_res0(ob, 4u * (c0 + t), (*fa)[at + t] * inv); }
    }
    if (c0 == 0u) { lse[bh * p.n_q + i] = m + log(l); }
}

@compute @workgroup_size(WG)
fn attention_forward_crossed(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                             @builtin(local_invocation_index) lid: u32) {
    let tile = token_tile(wid, nwg, p.n_q);
    if (tile.bh >= p.batch * p.heads) { return; }
    let bh = tile.bh;
    let b = tile.b;
    let h = tile.h;
    let ia = tile.t0 + (lid & ~1u);
    let ib = ia + 1u;
    let c0 = (lid % 2u) * H2;
    var fq: Head;
    var facc: Head;
    let qa = qkv_base(p.q_off, b, h, ia);
    let qb = qkv_base(p.q_off, b, h, ib);
    for (var t = 0u; t < H2; t++) {
        if (c0 + t < HD4) {
            if (ia < p.n_q) { fq[t] = ld_q(qa, 4u * (c0 + t)) * p.scale; }
            if (ib < p.n_q) { fq[H2 + t] = ld_q(qb, 4u * (c0 + t)) * p.scale; }
        }
    }
    var m = vec2<f32>(-3.4e38);
    var l = vec2<f32>(0.0);
    for (var j0 = 0u; j0 < p.n_k; j0 += KT) {
        load_kv_tiles(lid, b, h, j0);
        workgroupBarrier();
        // Both invocations of a pair take the same branches (nj is the workgroup's).
        let nj = min(KT, p.n_k - j0);
        let s0 = crossed_scores4(&fq, lid, 0u, c0, nj);
        var s1 = crossed_none();
        var s2 = crossed_none();
        var s3 = crossed_none();
        if (nj > 4u) { s1 = crossed_scores4(&fq, lid, 4u, c0, nj); }
        if (nj > 8u) { s2 = crossed_scores4(&fq, lid, 8u, c0, nj); }
        if (nj > 12u) { s3 = crossed_scores4(&fq, lid, 12u, c0, nj); }
        let m_new = vec2<f32>(max(m.x, max16(s0.a, s1.a, s2.a, s3.a)), max(m.y, max16(s0.b, s1.b, s2.b, s3.b)));
        let corr = exp(m - m_new);
        l *= corr;
        for (var t = 0u; t < H2; t++) {
            facc[t] *= corr.x;
            facc[H2 + t] *= corr.y;
        }
        let p0 = crossed_weights(s0, m_new);
        let p1 = crossed_weights(s1, m_new);
        let p2 = crossed_weights(s2, m_new);
        let p3 = crossed_weights(s3, m_new);
        l.x = hsum_from(hsum_from(hsum_from(hsum_from(l.x, p0.a), p1.a), p2.a), p3.a);
        l.y = hsum_from(hsum_from(hsum_from(hsum_from(l.y, p0.b), p1.b), p2.b), p3.b);
        crossed_accumulate4(&facc, p0, 0u, c0);
        if (nj > 4u) { crossed_accumulate4(&facc, p1, 4u, c0); }
        if (nj > 8u) { crossed_accumulate4(&facc, p2, 8u, c0); }
        if (nj > 12u) { crossed_accumulate4(&facc, p3, 12u, c0); }
        m = m_new;
        workgroupBarrier();
    }
    crossed_store(b, h, bh, ia, c0, 0u, &facc, m.x, l.x);
    crossed_store(b, h, bh, ib, c0, H2, &facc, m.y, l.y);
}
