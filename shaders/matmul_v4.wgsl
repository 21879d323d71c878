// The fast matmul: the same product, epilogues and batching as matmul.wgsl, for operands whose
// contiguous dimension is a multiple of 4 (the launcher checks), read as vec4.
//   C[z] = alpha · op(A[z]) · op(B[z])  (+ C[z] if accumulate)  (+ bias[n] if epilogue ≥ 1)
//   epilogue 2 then stores that pre-activation in `aux` and writes C = gelu(pre-activation);
//   epilogue 3 writes the same C without storing the pre-activation (no backward reads it).
// op(A) is [M, K] (A stored [M, K], or [K, M] with TA); op(B) is [K, N] (B stored [K, N], or
// [N, K] with TB). The transposes are pipeline constants, so each is its own compiled variant and
// nothing in the inner loop depends on them.
//
// Why it is fast: every accumulator and every operand fragment is a named vec4, so they live
// in registers; global reads are vec4;
// K advances 16 at a time; while one K-slice is multiplied out of workgroup memory, the next
// slice's global reads are already in flight into registers (workgroup memory is 16 KiB, WebGPU's
// guaranteed size, so the second buffer is kept in registers, not in workgroup memory).
//
// Tiles (one workgroup of 256 invocations, 16 × 16):
//   matmul_128:    a 128×128 tile of C, 8×8 outputs per invocation (rows ty·8…+7, columns
//                  tx·4…+3 and 64+tx·4…+3, so a warp's B reads are contiguous).
//   matmul_128x64: a 128×64 tile, 8×4 outputs per invocation (rows ty·8…+7, columns tx·4…+3):
//                  half the B reads of matmul_64 per multiply-add, twice the workgroups of
//                  matmul_128.
//   matmul_64:     a 64×64 tile, 4×4 outputs per invocation (rows ty·4…+3, columns tx·4…+3);
//                  the default on GPUs (the larger tiles where `dinoscope tune` measured them
//                  faster).
//   matmul_direct: 16×64 tiles read without workgroup memory, for CPU drivers (see there).
// Workgroup memory holds the K-slice of both operands as vec4 along M (As) and N (Bs):
// As[k][m/4], Bs[k][n/4]. Loading moves 4×4 blocks: an operand stored with K contiguous is read
// as four vec4 along K and transposed in registers; one stored with M (or N) contiguous is read
// as four vec4 along it and stored as is. Out-of-range rows, columns and K read as 0.
//
// Split K: with k_split < K the launcher gives each z one K range [z·k_split, (z+1)·k_split) of a
// single product and writes partial products to C[z]; `matmul_reduce` sums them in order (so the
// result is deterministic) and applies alpha, accumulate and the epilogue.
// Dispatch: (ceil(N/BN), ceil(M/BM), batches or splits ≤ 65,535 per dispatch, batch_offset).
// Types: A, B and bias hold S; C and aux hold O (f32 products of f16 operands in mixed-precision
// backward passes, and the f32 partial sums of a split f16 product).

struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch_offset: u32,
    a_batch_stride: u32,
    b_batch_stride: u32,
    c_batch_stride: u32,
    k_split: u32,
    splits: u32,
    epilogue: u32,
    accumulate: u32,
    _pad0: u32,
    alpha: f32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<S>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<S>>;
@group(0) @binding(3) var<storage, read> bias: array<S>;
@group(0) @binding(4) var<storage, read_write> c: array<O>;
@group(0) @binding(5) var<storage, read_write> aux: array<O>;

override TA: bool = false;
override TB: bool = false;

const BK: u32 = 16u;

// K-slice of op(A) and op(B): [BK][128/4] vec4 each (8 KiB + 8 KiB).
var<workgroup> As: array<vec4<f32>, 512>;
var<workgroup> Bs: array<vec4<f32>, 512>;

// One 4×4 block of an operand tile in registers, as loaded.
struct Block {
    v0: vec4<f32>,
    v1: vec4<f32>,
    v2: vec4<f32>,
    v3: vec4<f32>,
}

fn rd_a(i: u32, ok: bool) -> vec4<f32> {
    if (ok) { return vec4<f32>(a[i]); }
    return vec4<f32>(0.0);
}

fn rd_b(i: u32, ok: bool) -> vec4<f32> {
    if (ok) { return vec4<f32>(b[i]); }
    return vec4<f32>(0.0);
}

// The 4×4 block of op(A) at rows o0+4q…+3 and K k0+4kq…+3, as four vec4 along K (A stored
// [M, K]) or along M (A stored [K, M], TA). `base` is A's batch offset in floats.
fn load_a(base: u32, o0: u32, k0: u32, q: u32, kq: u32) -> Block {
    let o = o0 + 4u * q;
    let kk = k0 + 4u * kq;
    var r: Block;
    if (TA) {
        let ok = o < p.m;
        r.v0 = rd_a((base + kk * p.m + o) / 4u, ok && kk < p.k);
        r.v1 = rd_a((base + (kk + 1u) * p.m + o) / 4u, ok && kk + 1u < p.k);
        r.v2 = rd_a((base + (kk + 2u) * p.m + o) / 4u, ok && kk + 2u < p.k);
        r.v3 = rd_a((base + (kk + 3u) * p.m + o) / 4u, ok && kk + 3u < p.k);
    } else {
        let ok = kk < p.k;
        r.v0 = rd_a((base + o * p.k + kk) / 4u, ok && o < p.m);
        r.v1 = rd_a((base + (o + 1u) * p.k + kk) / 4u, ok && o + 1u < p.m);
        r.v2 = rd_a((base + (o + 2u) * p.k + kk) / 4u, ok && o + 2u < p.m);
        r.v3 = rd_a((base + (o + 3u) * p.k + kk) / 4u, ok && o + 3u < p.m);
    }
    return r;
}

// The 4×4 block of op(B) at K k0+4kq…+3 and columns o0+4q…+3: four vec4 along N (B stored
// [K, N]) or along K (B stored [N, K], TB).
fn load_b(base: u32, o0: u32, k0: u32, q: u32, kq: u32) -> Block {
    let o = o0 + 4u * q;
    let kk = k0 + 4u * kq;
    var r: Block;
    if (TB) {
        let ok = kk < p.k;
        r.v0 = rd_b((base + o * p.k + kk) / 4u, ok && o < p.n);
        r.v1 = rd_b((base + (o + 1u) * p.k + kk) / 4u, ok && o + 1u < p.n);
        r.v2 = rd_b((base + (o + 2u) * p.k + kk) / 4u, ok && o + 2u < p.n);
        r.v3 = rd_b((base + (o + 3u) * p.k + kk) / 4u, ok && o + 3u < p.n);
    } else {
        let ok = o < p.n;
        r.v0 = rd_b((base + kk * p.n + o) / 4u, ok && kk < p.k);
        r.v1 = rd_b((base + (kk + 1u) * p.n + o) / 4u, ok && kk + 1u < p.k);
        r.v2 = rd_b((base + (kk + 2u) * p.n + o) / 4u, ok && kk + 2u < p.k);
        r.v3 = rd_b((base + (kk + 3u) * p.n + o) / 4u, ok && kk + 3u < p.k);
    }
    return r;
}

// Which 4×4 block loader `i` of an operand moves: (q, kq), its quad along M (or N) and along K.
// Eight neighbouring loaders take eight neighbouring quads and four such runs the four K quads,
// so one warp reads whole sectors in either layout: 8 rows × 64 bytes along K, or 4 K rows ×
// 128 bytes along M (or N). With the quads along M running across the whole warp, an operand
// stored with K contiguous was read 16 bytes a row in 32 rows, half of each 32-byte sector.
// The workgroup-memory stores of eight neighbours still fill eight neighbouring vec4s.
fn loader_quad(i: u32) -> vec2<u32> {
    return vec2<u32>(i % 8u + 8u * (i / 32u), (i / 8u) % 4u);
}

// Stores a block into the K-slice arrays, laid out [BK][tile width / 4] (`quads` per K row):
// blocks read along K are transposed so every stored vec4 runs along M (or N).
fn store_a(blk: Block, q: u32, kq: u32, quads: u32) {
    if (TA) {
        As[(4u * kq + 0u) * quads + q] = blk.v0;
        As[(4u * kq + 1u) * quads + q] = blk.v1;
        As[(4u * kq + 2u) * quads + q] = blk.v2;
        As[(4u * kq + 3u) * quads + q] = blk.v3;
    } else {
        As[(4u * kq + 0u) * quads + q] = vec4<f32>(blk.v0.x, blk.v1.x, blk.v2.x, blk.v3.x);
        As[(4u * kq + 1u) * quads + q] = vec4<f32>(blk.v0.y, blk.v1.y, blk.v2.y, blk.v3.y);
        As[(4u * kq + 2u) * quads + q] = vec4<f32>(blk.v0.z, blk.v1.z, blk.v2.z, blk.v3.z);
        As[(4u * kq + 3u) * quads + q] = vec4<f32>(blk.v0.w, blk.v1.w, blk.v2.w, blk.v3.w);
    }
}

fn store_b(blk: Block, q: u32, kq: u32, quads: u32) {
    if (TB) {
        Bs[(4u * kq + 0u) * quads + q] = vec4<f32>(blk.v0.x, blk.v1.x, blk.v2.x, blk.v3.x);
        Bs[(4u * kq + 1u) * quads + q] = vec4<f32>(blk.v0.y, blk.v1.y, blk.v2.y, blk.v3.y);
        Bs[(4u * kq + 2u) * quads + q] = vec4<f32>(blk.v0.z, blk.v1.z, blk.v2.z, blk.v3.z);
        Bs[(4u * kq + 3u) * quads + q] = vec4<f32>(blk.v0.w, blk.v1.w, blk.v2.w, blk.v3.w);
    } else {
        Bs[(4u * kq + 0u) * quads + q] = blk.v0;
        Bs[(4u * kq + 1u) * quads + q] = blk.v1;
        Bs[(4u * kq + 2u) * quads + q] = blk.v2;
        Bs[(4u * kq + 3u) * quads + q] = blk.v3;
    }
}

// Writes one output with alpha, accumulate and the epilogue (or the raw partial when split).
fn put(z: u32, gm: u32, gn: u32, acc: f32) {
    if (gm >= p.m || gn >= p.n) { return; }
    let idx = z * p.c_batch_stride + gm * p.n + gn;
    if (p.splits > 1u) {
        c[idx] = O(acc);
        return;
    }
    var v = p.alpha * acc;
    if (p.accumulate != 0u) { v += f32(c[idx]); }
    if (p.epilogue >= 1u) { v += f32(bias[gn]); }
    if (p.epilogue >= 2u) {
        if (p.epilogue == 2u) { aux[idx] = O(v); }
        v = gelu_f32(v);
    }
    c[idx] = O(v);
}

fn put4(z: u32, gm: u32, gn: u32, v: vec4<f32>) {
    put(z, gm, gn, v.x);
    put(z, gm, gn + 1u, v.y);
    put(z, gm, gn + 2u, v.z);
    put(z, gm, gn + 3u, v.w);
}

// The batch (or split) index, the operand offsets and this split's K range.
struct Work {
    z: u32,
    a_base: u32,
    b_base: u32,
    k_begin: u32,
    k_end: u32,
}

fn work(wid: vec3<u32>) -> Work {
    var w: Work;
    w.z = wid.z + p.batch_offset;
    if (p.splits > 1u) {
        w.a_base = 0u;
        w.b_base = 0u;
        w.k_begin = w.z * p.k_split;
        w.k_end = min(p.k, w.k_begin + p.k_split);
    } else {
        w.a_base = w.z * p.a_batch_stride;
        w.b_base = w.z * p.b_batch_stride;
        w.k_begin = 0u;
        w.k_end = p.k;
    }
    return w;
}

@compute @workgroup_size(256)
fn matmul_128(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let w = work(wid);
    let row0 = wid.y * 128u;
    let col0 = wid.x * 128u;
    let tx = lid % 16u;
    let ty = lid / 16u;
    // Loading: invocations 0..127 move one 4×4 block of A, 128..255 one of B (32 quads × 4 K
    // quads each).
    let is_a = lid < 128u;
    let blk = loader_quad(lid % 128u);
    let q = blk.x;
    let kq = blk.y;
    // Row r of the invocation's 8×8 outputs: columns tx·4…+3 in rNl, 64+tx·4…+3 in rNh. Named
    // values, not an array: a driver that keeps an array in memory rather than registers runs
    // every multiply-add through memory (a 7–13× slowdown on an H200 before this was written
    // out).
    var r0l = vec4<f32>(0.0);
    var r0h = vec4<f32>(0.0);
    var r1l = vec4<f32>(0.0);
    var r1h = vec4<f32>(0.0);
    var r2l = vec4<f32>(0.0);
    var r2h = vec4<f32>(0.0);
    var r3l = vec4<f32>(0.0);
    var r3h = vec4<f32>(0.0);
    var r4l = vec4<f32>(0.0);
    var r4h = vec4<f32>(0.0);
    var r5l = vec4<f32>(0.0);
    var r5h = vec4<f32>(0.0);
    var r6l = vec4<f32>(0.0);
    var r6h = vec4<f32>(0.0);
    var r7l = vec4<f32>(0.0);
    var r7h = vec4<f32>(0.0);
    var next: Block;
    if (is_a) { next = load_a(w.a_base, row0, w.k_begin, q, kq); } else { next = load_b(w.b_base, col0, w.k_begin, q, kq); }
    for (var k0 = w.k_begin; k0 < w.k_end; k0 += BK) {
        if (is_a) { store_a(next, q, kq, 32u); } else { store_b(next, q, kq, 32u); }
        workgroupBarrier();
        // The next slice's global reads go out before this slice is multiplied.
        let k1 = k0 + BK;
        if (k1 < w.k_end) {
            if (is_a) { next = load_a(w.a_base, row0, k1, q, kq); } else { next = load_b(w.b_base, col0, k1, q, kq); }
        }
        // `ks`, not `kk`: the registry writes this loop out (FILE_LOOPS in src/gpu/registry.rs).
        for (var ks = 0u; ks < BK; ks++) {
            let a_lo = As[ks * 32u + ty * 2u];
            let a_hi = As[ks * 32u + ty * 2u + 1u];
            let b0 = Bs[ks * 32u + tx];
            let b1 = Bs[ks * 32u + 16u + tx];
            r0l = fma(vec4<f32>(a_lo.x), b0, r0l);
            r0h = fma(vec4<f32>(a_lo.x), b1, r0h);
            r1l = fma(vec4<f32>(a_lo.y), b0, r1l);
            r1h = fma(vec4<f32>(a_lo.y), b1, r1h);
            r2l = fma(vec4<f32>(a_lo.z), b0, r2l);
            r2h = fma(vec4<f32>(a_lo.z), b1, r2h);
            r3l = fma(vec4<f32>(a_lo.w), b0, r3l);
            r3h = fma(vec4<f32>(a_lo.w), b1, r3h);
            r4l = fma(vec4<f32>(a_hi.x), b0, r4l);
            r4h = fma(vec4<f32>(a_hi.x), b1, r4h);
            r5l = fma(vec4<f32>(a_hi.y), b0, r5l);
            r5h = fma(vec4<f32>(a_hi.y), b1, r5h);
            r6l = fma(vec4<f32>(a_hi.z), b0, r6l);
            r6h = fma(vec4<f32>(a_hi.z), b1, r6h);
            r7l = fma(vec4<f32>(a_hi.w), b0, r7l);
            r7h = fma(vec4<f32>(a_hi.w), b1, r7h);
        }
        workgroupBarrier();
    }
    put_rows(w.z, row0 + ty * 8u + 0u, col0 + tx * 4u, r0l, r0h);
    put_rows(w.z, row0 + ty * 8u + 1u, col0 + tx * 4u, r1l, r1h);
    put_rows(w.z, row0 + ty * 8u + 2u, col0 + tx * 4u, r2l, r2h);
    put_rows(w.z, row0 + ty * 8u + 3u, col0 + tx * 4u, r3l, r3h);
    put_rows(w.z, row0 + ty * 8u + 4u, col0 + tx * 4u, r4l, r4h);
    put_rows(w.z, row0 + ty * 8u + 5u, col0 + tx * 4u, r5l, r5h);
    put_rows(w.z, row0 + ty * 8u + 6u, col0 + tx * 4u, r6l, r6h);
    put_rows(w.z, row0 + ty * 8u + 7u, col0 + tx * 4u, r7l, r7h);
}

// Row gm of a 128-wide tile: columns gn…+3 and gn+64…+67.
fn put_rows(z: u32, gm: u32, gn: u32, lo: vec4<f32>, hi: vec4<f32>) {
    put4(z, gm, gn, lo);
    put4(z, gm, gn + 64u, hi);
}

@compute @workgroup_size(256)
fn matmul_128x64(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let w = work(wid);
    let row0 = wid.y * 128u;
    let col0 = wid.x * 64u;
    let tx = lid % 16u;
    let ty = lid / 16u;
    // Loading: invocations 0..127 move one 4×4 block of A (32 quads × 4 K quads), 128..191 one
    // of B (16 quads × 4 K quads).
    let is_a = lid < 128u;
    let loads = lid < 192u;
    let blk = loader_quad(lid % 128u);
    let q = blk.x;
    let kq = blk.y;
    var r0 = vec4<f32>(0.0);
    var r1 = vec4<f32>(0.0);
    var r2 = vec4<f32>(0.0);
    var r3 = vec4<f32>(0.0);
    var r4 = vec4<f32>(0.0);
    var r5 = vec4<f32>(0.0);
    var r6 = vec4<f32>(0.0);
    var r7 = vec4<f32>(0.0);
    var next: Block;
    if (is_a) { next = load_a(w.a_base, row0, w.k_begin, q, kq); } else if (loads) { next = load_b(w.b_base, col0, w.k_begin, q, kq); }
    for (var k0 = w.k_begin; k0 < w.k_end; k0 += BK) {
        if (is_a) { store_a(next, q, kq, 32u); } else if (loads) { store_b(next, q, kq, 16u); }
        workgroupBarrier();
        let k1 = k0 + BK;
        if (k1 < w.k_end) {
            if (is_a) { next = load_a(w.a_base, row0, k1, q, kq); } else if (loads) { next = load_b(w.b_base, col0, k1, q, kq); }
        }
        // Written out by the registry, as matmul_128's.
        for (var ks = 0u; ks < BK; ks++) {
            let a_lo = As[ks * 32u + ty * 2u];
            let a_hi = As[ks * 32u + ty * 2u + 1u];
            let bv = Bs[ks * 16u + tx];
            r0 = fma(vec4<f32>(a_lo.x), bv, r0);
            r1 = fma(vec4<f32>(a_lo.y), bv, r1);
            r2 = fma(vec4<f32>(a_lo.z), bv, r2);
            r3 = fma(vec4<f32>(a_lo.w), bv, r3);
            r4 = fma(vec4<f32>(a_hi.x), bv, r4);
            r5 = fma(vec4<f32>(a_hi.y), bv, r5);
            r6 = fma(vec4<f32>(a_hi.z), bv, r6);
            r7 = fma(vec4<f32>(a_hi.w), bv, r7);
        }
        workgroupBarrier();
    }
    let gm = row0 + ty * 8u;
    let gn = col0 + tx * 4u;
    put4(w.z, gm + 0u, gn, r0);
    put4(w.z, gm + 1u, gn, r1);
    put4(w.z, gm + 2u, gn, r2);
    put4(w.z, gm + 3u, gn, r3);
    put4(w.z, gm + 4u, gn, r4);
    put4(w.z, gm + 5u, gn, r5);
    put4(w.z, gm + 6u, gn, r6);
    put4(w.z, gm + 7u, gn, r7);
}

@compute @workgroup_size(256)
fn matmul_64(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let w = work(wid);
    let row0 = wid.y * 64u;
    let col0 = wid.x * 64u;
    let tx = lid % 16u;
    let ty = lid / 16u;
    // 16 quads × 4 K quads per operand: invocations 0..63 load A, 64..127 load B.
    let loads = lid < 128u;
    let is_a = lid < 64u;
    let blk = loader_quad(lid % 64u);
    let q = blk.x;
    let kq = blk.y;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var next: Block;
    if (loads) {
        if (is_a) { next = load_a(w.a_base, row0, w.k_begin, q, kq); } else { next = load_b(w.b_base, col0, w.k_begin, q, kq); }
    }
    for (var k0 = w.k_begin; k0 < w.k_end; k0 += BK) {
        if (loads) {
            if (is_a) { store_a(next, q, kq, 16u); } else { store_b(next, q, kq, 16u); }
        }
        workgroupBarrier();
        let k1 = k0 + BK;
        if (loads && k1 < w.k_end) {
            if (is_a) { next = load_a(w.a_base, row0, k1, q, kq); } else { next = load_b(w.b_base, col0, k1, q, kq); }
        }
        for (var kk = 0u; kk < BK; kk++) {
            let av = As[kk * 16u + ty];
            let bv = Bs[kk * 16u + tx];
            acc0 = fma(vec4<f32>(av.x), bv, acc0);
            acc1 = fma(vec4<f32>(av.y), bv, acc1);
            acc2 = fma(vec4<f32>(av.z), bv, acc2);
            acc3 = fma(vec4<f32>(av.w), bv, acc3);
        }
        workgroupBarrier();
    }
    let gm = row0 + ty * 4u;
    let gn = col0 + tx * 4u;
    put4(w.z, gm, gn, acc0);
    put4(w.z, gm + 1u, gn, acc1);
    put4(w.z, gm + 2u, gn, acc2);
    put4(w.z, gm + 3u, gn, acc3);
}

// For CPU drivers: no workgroup memory and no barrier, and as many outputs per invocation as
// fit, since a CPU driver runs a workgroup's invocations as loops over vectors of 8 lanes,
// splits those loops at every barrier, and reads memory one lane at a time; so a read should
// feed as many multiply-adds as it can. A workgroup of 8 invocations (one such vector) covers
// 16 rows × 64 columns, each invocation 16 × 8 of them. On a GPU the tiled kernels win. Each
// output sums K in the same order with the same fma as matmul_64, so the two give identical
// results. Dispatch: (ceil(N/64), ceil(M/16), batches or splits, batch_offset).
@compute @workgroup_size(8)
fn matmul_direct(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let w = work(wid);
    let m0 = wid.y * 16u;
    let gn = wid.x * 64u + lid * 8u;
    // Which invocations read A (every one here; see `share`).
    let leader = true;
    // Row r: columns gn…+3 in lr, gn+4…+7 in hr. Written out, not an array: a CPU driver keeps
    // an indexed array in memory and runs the step about 1.5× slower.
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
    for (var k0 = w.k_begin; k0 < w.k_end; k0 += 4u) {
        var b0 = load_b(w.b_base, gn, k0, 0u, 0u);
        var b1 = load_b(w.b_base, gn, k0, 1u, 0u);
        if (TB) {
            b0 = transpose4(b0);
            b1 = transpose4(b1);
        }
        var a0: Block;
        if (leader) { a0 = load_a(w.a_base, m0, k0, 0u, 0u); }
        a0 = share(a0);
        if (TA) { a0 = transpose4(a0); }
        l0 = fma4(l0, a0.v0, b0);
        h0 = fma4(h0, a0.v0, b1);
        l1 = fma4(l1, a0.v1, b0);
        h1 = fma4(h1, a0.v1, b1);
        l2 = fma4(l2, a0.v2, b0);
        h2 = fma4(h2, a0.v2, b1);
        l3 = fma4(l3, a0.v3, b0);
        h3 = fma4(h3, a0.v3, b1);
        var a1: Block;
        if (leader) { a1 = load_a(w.a_base, m0, k0, 1u, 0u); }
        a1 = share(a1);
        if (TA) { a1 = transpose4(a1); }
        l4 = fma4(l4, a1.v0, b0);
        h4 = fma4(h4, a1.v0, b1);
        l5 = fma4(l5, a1.v1, b0);
        h5 = fma4(h5, a1.v1, b1);
        l6 = fma4(l6, a1.v2, b0);
        h6 = fma4(h6, a1.v2, b1);
        l7 = fma4(l7, a1.v3, b0);
        h7 = fma4(h7, a1.v3, b1);
        var a2: Block;
        if (leader) { a2 = load_a(w.a_base, m0, k0, 2u, 0u); }
        a2 = share(a2);
        if (TA) { a2 = transpose4(a2); }
        l8 = fma4(l8, a2.v0, b0);
        h8 = fma4(h8, a2.v0, b1);
        l9 = fma4(l9, a2.v1, b0);
        h9 = fma4(h9, a2.v1, b1);
        l10 = fma4(l10, a2.v2, b0);
        h10 = fma4(h10, a2.v2, b1);
        l11 = fma4(l11, a2.v3, b0);
        h11 = fma4(h11, a2.v3, b1);
        var a3: Block;
        if (leader) { a3 = load_a(w.a_base, m0, k0, 3u, 0u); }
        a3 = share(a3);
        if (TA) { a3 = transpose4(a3); }
        l12 = fma4(l12, a3.v0, b0);
        h12 = fma4(h12, a3.v0, b1);
        l13 = fma4(l13, a3.v1, b0);
        h13 = fma4(h13, a3.v1, b1);
        l14 = fma4(l14, a3.v2, b0);
        h14 = fma4(h14, a3.v2, b1);
        l15 = fma4(l15, a3.v3, b0);
        h15 = fma4(h15, a3.v3, b1);
    }
    put4(w.z, m0 + 0u, gn, l0);
    put4(w.z, m0 + 0u, gn + 4u, h0);
    put4(w.z, m0 + 1u, gn, l1);
    put4(w.z, m0 + 1u, gn + 4u, h1);
    put4(w.z, m0 + 2u, gn, l2);
    put4(w.z, m0 + 2u, gn + 4u, h2);
    put4(w.z, m0 + 3u, gn, l3);
    put4(w.z, m0 + 3u, gn + 4u, h3);
    put4(w.z, m0 + 4u, gn, l4);
    put4(w.z, m0 + 4u, gn + 4u, h4);
    put4(w.z, m0 + 5u, gn, l5);
    put4(w.z, m0 + 5u, gn + 4u, h5);
    put4(w.z, m0 + 6u, gn, l6);
    put4(w.z, m0 + 6u, gn + 4u, h6);
    put4(w.z, m0 + 7u, gn, l7);
    put4(w.z, m0 + 7u, gn + 4u, h7);
    put4(w.z, m0 + 8u, gn, l8);
    put4(w.z, m0 + 8u, gn + 4u, h8);
    put4(w.z, m0 + 9u, gn, l9);
    put4(w.z, m0 + 9u, gn + 4u, h9);
    put4(w.z, m0 + 10u, gn, l10);
    put4(w.z, m0 + 10u, gn + 4u, h10);
    put4(w.z, m0 + 11u, gn, l11);
    put4(w.z, m0 + 11u, gn + 4u, h11);
    put4(w.z, m0 + 12u, gn, l12);
    put4(w.z, m0 + 12u, gn + 4u, h12);
    put4(w.z, m0 + 13u, gn, l13);
    put4(w.z, m0 + 13u, gn + 4u, h13);
    put4(w.z, m0 + 14u, gn, l14);
    put4(w.z, m0 + 14u, gn + 4u, h14);
    put4(w.z, m0 + 15u, gn, l15);
    put4(w.z, m0 + 15u, gn + 4u, h15);
}

// The rows of A a direct workgroup reads are the same for all its invocations. On a CPU driver
// every read is a loop over the vector's lanes, so where the adapter has subgroups the derived
// shader matmul_v4_sg has lane 0 of each subgroup read them (`leader`) and broadcast them to the
// rest (this function); here every invocation reads them itself.
fn share(b: Block) -> Block { return b; }

fn transpose4(b: Block) -> Block {
    var r: Block;
    r.v0 = vec4<f32>(b.v0.x, b.v1.x, b.v2.x, b.v3.x);
    r.v1 = vec4<f32>(b.v0.y, b.v1.y, b.v2.y, b.v3.y);
    r.v2 = vec4<f32>(b.v0.z, b.v1.z, b.v2.z, b.v3.z);
    r.v3 = vec4<f32>(b.v0.w, b.v1.w, b.v2.w, b.v3.w);
    return r;
}

// acc + Σ_j a[j]·b.vj, one K step at a time in order.
fn fma4(acc: vec4<f32>, a: vec4<f32>, b: Block) -> vec4<f32> {
    var r = fma(vec4<f32>(a.x), b.v0, acc);
    r = fma(vec4<f32>(a.y), b.v1, r);
    r = fma(vec4<f32>(a.z), b.v2, r);
    return fma(vec4<f32>(a.w), b.v3, r);
}

// Split-K reduction: C = alpha · Σ_s partial[s] (+ C) (+ bias) (→ GELU), summed in split order.
// partial is [splits, M, N]. Dispatch: grid_1d(ceil(M·N / 256)).
@group(0) @binding(6) var<storage, read> partial: array<f32>;

@compute @workgroup_size(256)
fn matmul_reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * 256u + lid;
    let mn = p.m * p.n;
    if (i >= mn) { return; }
    var s = 0.0;
    for (var z = 0u; z < p.splits; z++) { s += partial[z * mn + i]; }
    var v = p.alpha * s;
    if (p.accumulate != 0u) { v += f32(c[i]); }
    if (p.epilogue >= 1u) { v += f32(bias[i % p.n]); }
    if (p.epilogue >= 2u) {
        if (p.epilogue == 2u) { aux[i] = O(v); }
        v = gelu_f32(v);
    }
    c[i] = O(v);
}
