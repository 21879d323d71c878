// attention_backward_dkv2: dK and dV as attention_backward_dkv computes them, for the GPU layout
// on adapters with subgroups. Appended to attention.wgsl in the derived shader attention_pairs
// (native only: in the browser a subgroup operation would need a directive the shared source
// cannot carry).
// Two invocations per key (2i: the first half of the head's vec4s, 2i+1: the second), each
// holding its half of k, v, dK and dV: 128 registers of arrays where one invocation per key
// needs 256, which is more than a GPU gives an invocation (the rest spill to memory). The
// halves' partial scores q·k and dO·v are summed with subgroupShuffleXor(·, 1), so subgroups
// must hold consecutive invocations (as on every driver seen). Both invocations of a pair get
// the same sum (first half + second half: IEEE addition commutes); it differs from the
// one-invocation kernel's sum over c in order by rounding only.
// WG (override) invocations cover WG / 2 keys. Dispatch: grid_1d(ceil(n_k / (WG/2))·B·H).

// vec4s per half.
override H2: u32 = (HD4 + 1u) / 2u;

@compute @workgroup_size(WG)
fn attention_backward_dkv2(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_index) lid: u32) {
    let per = WG / 2u;
    let nkb = (p.n_k + per - 1u) / per;
    let gi = group_index(wid, nwg);
    let bh = gi / nkb;
    if (bh >= p.batch * p.heads) { return; }
    let b = bh / p.heads;
    let h = bh % p.heads;
    let j = (gi % nkb) * per + lid / 2u;
    let c0 = (lid % 2u) * H2;
    let valid = j < p.n_k;
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
            let sums = part + subgroupShuffleXor(part, 1u);
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
