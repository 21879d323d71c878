// Batched matmul with optional transposes and a fused epilogue:
//   C[z] = alpha · op(A[z]) · op(B[z])  (+ C[z] if accumulate)  (+ bias[n] if epilogue ≥ 1)
//   epilogue 2 then stores that pre-activation in `aux` and writes C = gelu(pre-activation);
//   epilogue 3 writes the same C without storing the pre-activation (no backward reads it).
// op(A) is [M, K]: A stored [M, K], or [K, M] when trans_a = 1. op(B) is [K, N]: B stored
// [K, N], or [N, K] when trans_b = 1 (the linear layer's y = x·Wᵀ). A batch stride of 0
// broadcasts an operand (one weight for every batch).
// Backward is the same kernel with other transposes: dA = dC·op(B)ᵀ, dB = op(A)ᵀ·dC
// (see src/kernels/matmul.rs); bias and GELU backward are reduce.wgsl and gelu.wgsl.
//
// Register tiling: a workgroup computes a BM×BN tile of C, each invocation a TM×TN block of it
// (rows ty + i·BM/TM, columns tx + j·BN/TN, so neighbouring invocations touch neighbouring
// columns); K advances BK at a time through workgroup memory. The tile shape is an override
// chosen per problem size by the launcher: 128×128 with 8×8 per invocation for large products
// (loop bounds are pipeline constants, so the accumulators stay in registers), 64×64 with 4×4
// for small ones. BM·BK = BN·BK = 1024 in both. Workgroup memory: 8 KiB.
// Dispatch: (ceil(N/BN), ceil(M/BM), batches ≤ 65,535 per dispatch, batch_offset for the rest).

// Types: A, B and bias hold S; C and aux hold O (S, or f32 for f32 products of f16 operands).

struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch_offset: u32,
    a_batch_stride: u32,
    b_batch_stride: u32,
    c_batch_stride: u32,
    trans_a: u32,
    trans_b: u32,
    epilogue: u32,
    accumulate: u32,
    _pad0: u32,
    alpha: f32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<S>;
@group(0) @binding(2) var<storage, read> b: array<S>;
@group(0) @binding(3) var<storage, read> bias: array<S>;
@group(0) @binding(4) var<storage, read_write> c: array<O>;
@group(0) @binding(5) var<storage, read_write> aux: array<O>;

override BM: u32 = 64u;
override BN: u32 = 64u;
override BK: u32 = 16u;
override TM: u32 = 4u;
override TN: u32 = 4u;
override WG: u32 = 256u; // (BM / TM) · (BN / TN)

var<workgroup> As: array<f32, 1024>; // [BK][BM]
var<workgroup> Bs: array<f32, 1024>; // [BK][BN]

@compute @workgroup_size(WG)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let z = wid.z + p.batch_offset;
    let a_base = z * p.a_batch_stride;
    let b_base = z * p.b_batch_stride;
    let c_base = z * p.c_batch_stride;
    let row0 = wid.y * BM;
    let col0 = wid.x * BN;
    let threads_n = BN / TN;
    let tx = lid % threads_n;
    let ty = lid / threads_n;
    let rows_step = BM / TM;
    var acc: array<f32, 64>;
    var ar: array<f32, 8>;
    var br: array<f32, 8>;
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        for (var l = lid; l < BM * BK; l += WG) {
            // A tile element (mi, ki), read along A's contiguous dimension.
            var mi = l / BK;
            var ki = l % BK;
            if (p.trans_a != 0u) {
                ki = l / BM;
                mi = l % BM;
            }
            let gm = row0 + mi;
            let gk = k0 + ki;
            var va = 0.0;
            if (gm < p.m && gk < p.k) {
                if (p.trans_a != 0u) { va = f32(a[a_base + gk * p.m + gm]); } else { va = f32(a[a_base + gm * p.k + gk]); }
            }
            As[ki * BM + mi] = va;
        }
        for (var l = lid; l < BN * BK; l += WG) {
            var kj = l / BN;
            var nj = l % BN;
            if (p.trans_b != 0u) {
                nj = l / BK;
                kj = l % BK;
            }
            let gn = col0 + nj;
            let gk = k0 + kj;
            var vb = 0.0;
            if (gn < p.n && gk < p.k) {
                if (p.trans_b != 0u) { vb = f32(b[b_base + gn * p.k + gk]); } else { vb = f32(b[b_base + gk * p.n + gn]); }
            }
            Bs[kj * BN + nj] = vb;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            for (var i = 0u; i < TM; i++) { ar[i] = As[kk * BM + ty + i * rows_step]; }
            for (var j = 0u; j < TN; j++) { br[j] = Bs[kk * BN + tx + j * threads_n]; }
            for (var i = 0u; i < TM; i++) {
                for (var j = 0u; j < TN; j++) {
                    acc[i * TN + j] = fma(ar[i], br[j], acc[i * TN + j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < TN; j++) {
            put(c_base, row0 + ty + i * rows_step, col0 + tx + j * threads_n, acc[i * TN + j]);
        }
    }
}

// Writes one output with alpha, accumulate and the epilogue.
fn put(c_base: u32, gm: u32, gn: u32, acc: f32) {
    if (gm >= p.m || gn >= p.n) { return; }
    let idx = c_base + gm * p.n + gn;
    var v = p.alpha * acc;
    if (p.accumulate != 0u) { v += f32(c[idx]); }
    if (p.epilogue >= 1u) { v += f32(bias[gn]); }
    if (p.epilogue >= 2u) {
        if (p.epilogue == 2u) { aux[idx] = O(v); }
        v = gelu_f32(v);
    }
    c[idx] = O(v);
}

fn put4(c_base: u32, gm: u32, gn: u32, v: vec4<f32>) {
    put(c_base, gm, gn, v.x);
    put(c_base, gm, gn + 1u, v.y);
    put(c_base, gm, gn + 2u, v.z);
    put(c_base, gm, gn + 3u, v.w);
}

// op(A)[gm, gk], 0 past the last row.
fn ga(base: u32, gm: u32, gk: u32) -> f32 {
    if (gm >= p.m) { return 0.0; }
    if (p.trans_a != 0u) { return f32(a[base + gk * p.m + gm]); }
    return f32(a[base + gm * p.k + gk]);
}

// The rows of A a direct workgroup reads are the same for all its invocations: where the adapter
// has subgroups, the derived shader matmul_sg has lane 0 of each subgroup read them and
// broadcast them (see matmul_v4.wgsl's `share`).
fn share4(v: vec4<f32>) -> vec4<f32> { return v; }

// op(B)[gk, gn], 0 past the last column.
fn gb(base: u32, gk: u32, gn: u32) -> f32 {
    if (gn >= p.n) { return 0.0; }
    if (p.trans_b != 0u) { return f32(b[base + gn * p.k + gk]); }
    return f32(b[base + gk * p.n + gn]);
}

fn gb4(base: u32, gk: u32, gn: u32) -> vec4<f32> {
    return vec4<f32>(gb(base, gk, gn), gb(base, gk, gn + 1u), gb(base, gk, gn + 2u), gb(base, gk, gn + 3u));
}

// For CPU drivers, the general layouts as matmul_v4.wgsl's matmul_direct reads the vec4 ones: no
// workgroup memory and no barrier, 8 invocations (one vector of a CPU driver's lanes) covering
// 16 rows × 64 columns, each invocation 16 × 8 of them, so each value read feeds 8 or 16
// multiply-adds. Each output sums K in order with the same fma as `matmul`, so the two give
// identical results. Dispatch: (ceil(N/64), ceil(M/16), batches, batch_offset).
@compute @workgroup_size(8)
fn matmul_general_direct(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let z = wid.z + p.batch_offset;
    let a_base = z * p.a_batch_stride;
    let b_base = z * p.b_batch_stride;
    let m0 = wid.y * 16u;
    let gn = wid.x * 64u + lid * 8u;
    // Which invocations read A (every one here; see `share4`).
    let leader = true;
    // Row r: columns gn…+3 in lr, gn+4…+7 in hr; written out for the reason matmul_direct's are.
    var l0 = vec4<f32>(0.0);
    var h0 = vec4<f32>(0.0);
    var l1 = vec4<f32>(0.0);
    var h1 = vec4<f32>(0.0);
    var l2 = vec4<f32>(0.0);
    var h2 = vec4<f32>(0.0);
    var l3 = vec4<f32>(0.0);
    var h3 = vec4<f32>(0.0);
    var l4 = vec4<f32>(0.0);
    var h4 = vec4<f32>(0.0);
    var l5 = vec4<f32>(0.0);
    var h5 = vec4<f32>(0.0);
    var l6 = vec4<f32>(0.0);
    var h6 = vec4<f32>(0.0);
    var l7 = vec4<f32>(0.0);
    var h7 = vec4<f32>(0.0);
    var l8 = vec4<f32>(0.0);
    var h8 = vec4<f32>(0.0);
    var l9 = vec4<f32>(0.0);
    var h9 = vec4<f32>(0.0);
    var l10 = vec4<f32>(0.0);
    var h10 = vec4<f32>(0.0);
    var l11 = vec4<f32>(0.0);
    var h11 = vec4<f32>(0.0);
    var l12 = vec4<f32>(0.0);
    var h12 = vec4<f32>(0.0);
    var l13 = vec4<f32>(0.0);
    var h13 = vec4<f32>(0.0);
    var l14 = vec4<f32>(0.0);
    var h14 = vec4<f32>(0.0);
    var l15 = vec4<f32>(0.0);
    var h15 = vec4<f32>(0.0);
    for (var k = 0u; k < p.k; k++) {
        let b0 = gb4(b_base, k, gn);
        let b1 = gb4(b_base, k, gn + 4u);
        var q0 = vec4<f32>(0.0);
        if (leader) {
            q0 = vec4<f32>(ga(a_base, m0 + 0u, k), ga(a_base, m0 + 1u, k), ga(a_base, m0 + 2u, k), ga(a_base, m0 + 3u, k));
        }
        q0 = share4(q0);
        l0 = fma(vec4<f32>(q0.x), b0, l0);
        h0 = fma(vec4<f32>(q0.x), b1, h0);
        l1 = fma(vec4<f32>(q0.y), b0, l1);
        h1 = fma(vec4<f32>(q0.y), b1, h1);
        l2 = fma(vec4<f32>(q0.z), b0, l2);
        h2 = fma(vec4<f32>(q0.z), b1, h2);
        l3 = fma(vec4<f32>(q0.w), b0, l3);
        h3 = fma(vec4<f32>(q0.w), b1, h3);
        var q1 = vec4<f32>(0.0);
        if (leader) {
            q1 = vec4<f32>(ga(a_base, m0 + 4u, k), ga(a_base, m0 + 5u, k), ga(a_base, m0 + 6u, k), ga(a_base, m0 + 7u, k));
        }
        q1 = share4(q1);
        l4 = fma(vec4<f32>(q1.x), b0, l4);
        h4 = fma(vec4<f32>(q1.x), b1, h4);
        l5 = fma(vec4<f32>(q1.y), b0, l5);
        h5 = fma(vec4<f32>(q1.y), b1, h5);
        l6 = fma(vec4<f32>(q1.z), b0, l6);
        h6 = fma(vec4<f32>(q1.z), b1, h6);
        l7 = fma(vec4<f32>(q1.w), b0, l7);
        h7 = fma(vec4<f32>(q1.w), b1, h7);
        var q2 = vec4<f32>(0.0);
        if (leader) {
            q2 = vec4<f32>(ga(a_base, m0 + 8u, k), ga(a_base, m0 + 9u, k), ga(a_base, m0 + 10u, k), ga(a_base, m0 + 11u, k));
        }
        q2 = share4(q2);
        l8 = fma(vec4<f32>(q2.x), b0, l8);
        h8 = fma(vec4<f32>(q2.x), b1, h8);
        l9 = fma(vec4<f32>(q2.y), b0, l9);
        h9 = fma(vec4<f32>(q2.y), b1, h9);
        l10 = fma(vec4<f32>(q2.z), b0, l10);
        h10 = fma(vec4<f32>(q2.z), b1, h10);
        l11 = fma(vec4<f32>(q2.w), b0, l11);
        h11 = fma(vec4<f32>(q2.w), b1, h11);
        var q3 = vec4<f32>(0.0);
        if (leader) {
            q3 = vec4<f32>(ga(a_base, m0 + 12u, k), ga(a_base, m0 + 13u, k), ga(a_base, m0 + 14u, k), ga(a_base, m0 + 15u, k));
        }
        q3 = share4(q3);
        l12 = fma(vec4<f32>(q3.x), b0, l12);
        h12 = fma(vec4<f32>(q3.x), b1, h12);
        l13 = fma(vec4<f32>(q3.y), b0, l13);
        h13 = fma(vec4<f32>(q3.y), b1, h13);
        l14 = fma(vec4<f32>(q3.z), b0, l14);
        h14 = fma(vec4<f32>(q3.z), b1, h14);
        l15 = fma(vec4<f32>(q3.w), b0, l15);
        h15 = fma(vec4<f32>(q3.w), b1, h15);
    }
    let c_base = z * p.c_batch_stride;
    put4(c_base, m0 + 0u, gn, l0);
    put4(c_base, m0 + 0u, gn + 4u, h0);
    put4(c_base, m0 + 1u, gn, l1);
    put4(c_base, m0 + 1u, gn + 4u, h1);
    put4(c_base, m0 + 2u, gn, l2);
    put4(c_base, m0 + 2u, gn + 4u, h2);
    put4(c_base, m0 + 3u, gn, l3);
    put4(c_base, m0 + 3u, gn + 4u, h3);
    put4(c_base, m0 + 4u, gn, l4);
    put4(c_base, m0 + 4u, gn + 4u, h4);
    put4(c_base, m0 + 5u, gn, l5);
    put4(c_base, m0 + 5u, gn + 4u, h5);
    put4(c_base, m0 + 6u, gn, l6);
    put4(c_base, m0 + 6u, gn + 4u, h6);
    put4(c_base, m0 + 7u, gn, l7);
    put4(c_base, m0 + 7u, gn + 4u, h7);
    put4(c_base, m0 + 8u, gn, l8);
    put4(c_base, m0 + 8u, gn + 4u, h8);
    put4(c_base, m0 + 9u, gn, l9);
    put4(c_base, m0 + 9u, gn + 4u, h9);
    put4(c_base, m0 + 10u, gn, l10);
    put4(c_base, m0 + 10u, gn + 4u, h10);
    put4(c_base, m0 + 11u, gn, l11);
    put4(c_base, m0 + 11u, gn + 4u, h11);
    put4(c_base, m0 + 12u, gn, l12);
    put4(c_base, m0 + 12u, gn + 4u, h12);
    put4(c_base, m0 + 13u, gn, l13);
    put4(c_base, m0 + 13u, gn + 4u, h13);
    put4(c_base, m0 + 14u, gn, l14);
    put4(c_base, m0 + 14u, gn + 4u, h14);
    put4(c_base, m0 + 15u, gn, l15);
    put4(c_base, m0 + 15u, gn + 4u, h15);
}

