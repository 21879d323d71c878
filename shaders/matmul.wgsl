// Batched matmul with optional transposes and a fused epilogue:
//   C[z] = alpha · op(A[z]) · op(B[z])  (+ C[z] if accumulate)  (+ bias[n] if epilogue ≥ 1)
//   epilogue 2 then stores that pre-activation in `aux` and writes C = gelu(pre-activation).
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
        let gm = row0 + ty + i * rows_step;
        if (gm >= p.m) { continue; }
        for (var j = 0u; j < TN; j++) {
            let gn = col0 + tx + j * threads_n;
            if (gn >= p.n) { continue; }
            let idx = c_base + gm * p.n + gn;
            var v = p.alpha * acc[i * TN + j];
            if (p.accumulate != 0u) { v += f32(c[idx]); }
            if (p.epilogue >= 1u) { v += f32(bias[gn]); }
            if (p.epilogue == 2u) {
                aux[idx] = O(v);
                v = gelu_f32(v);
            }
            c[idx] = O(v);
        }
    }
}
