enable f16;
enable wgpu_cooperative_matrix;

// The tensor-core matmul: the same product, epilogues and batching as matmul_v4.wgsl (and the
// same vec4 condition: each operand's contiguous dimension a multiple of 4), on adapters that
// offer cooperative matrices (wgpu's EXPERIMENTAL_COOPERATIVE_MATRIX: NVIDIA's tensor cores take
// f16 16×16×16; lavapipe offers f16 8×8×8). Operands are rounded to f16 on their way into
// workgroup memory and products accumulate in f32, so it serves the f16 paths, whose operands
// are f16 already.
//   C[z] = alpha · op(A[z]) · op(B[z])  (+ C[z] if accumulate)  (+ bias[n] if epilogue ≥ 1)
//   epilogue 2 then stores that pre-activation in `aux` and writes C = gelu(pre-activation);
//   epilogue 3 writes the same C without storing the pre-activation (no backward reads it).
//
// Layout. A workgroup is eight subgroups (WG = 8 × the adapter's fixed subgroup size: 32 with
// NVIDIA's 16×16 matrices, 8 with lavapipe's 8×8, 32 with Apple's 8×8) and owns a TM × TN tile of C.
// The subgroups sit SGM × SGN over it; subgroup s owns the 4MS × FN·MS block at row (s / SGN),
// column (s % SGN), as 4·FN MS × MS accumulators in registers:
//   matmul_coop:      SGM = 2, SGN = 4, FN = 2: 8MS × 8MS tiles (128 × 128 with 16×16 matrices),
//                     six matrix loads for eight multiply-adds;
//   matmul_coop_wide: SGM = 4, SGN = 2, FN = 4: 16MS × 8MS tiles (256 × 128), eight loads for
//                     sixteen multiply-adds and a quarter fewer global reads per multiply-add,
//                     for twice the accumulator registers (the registry derives it by rewriting
//                     the three constants; the rest reads them).
// K advances 2MS at a time: op(A)'s [TM × 2MS] and op(B)'s [2MS × TN] slices are read with
// vec4 loads (AV and BV per invocation: 2·SGM and 4 where WG = MS², fewer with more lanes),
// converted to f16 and stored in workgroup memory
// (transposed where the operand is stored transposed; rows padded by 8 halves so that the
// matrix loads' rows start on different banks and stay 16-byte aligned); then each subgroup
// multiplies its fragments out of workgroup memory, while the next slice's loads are already in
// flight into registers. Out-of-range rows and K read as 0 (a vec4 is wholly in or out).
// The epilogue goes through workgroup memory one accumulator at a time: each subgroup stores it
// to one of its own two slots (alternating, so one barrier an accumulator), and its invocations
// finish those outputs.
// Matrix operations sit in uniform control flow only; the subgroup index moves pointers, never
// branches.
// Split K (splits > 1, one product): z is the split, which takes K from z·k_split (a multiple
// of BK, so no slice straddles two splits) and writes its raw partial product at z·M·N of C
// (f32, alpha 1, no epilogue); matmul_reduce (matmul_v4.wgsl) sums them. A weight gradient
// (K = every token of a batch, M × N a few dozen tiles) otherwise leaves most of a GPU idle.
// Dispatch: (ceil(N/TN), ceil(M/TM), batches or splits ≤ 65,535 per dispatch, batch_offset).

// Types: A, B and bias hold S; C and aux hold O (S, or f32 for f32 products of f16 operands).

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
// Invocations per workgroup: eight subgroups.
override WG: u32 = 256u;

// Matrix side (the registry derives the 8×8×8 variant by rewriting this line and the types).
const MS: u32 = 16u;
alias MatA = coop_mat16x16<f16, A>;
alias MatB = coop_mat16x16<f16, B>;
alias MatC = coop_mat16x16<f32, C>;

// Subgroups along M and N, and accumulators along N per subgroup (see Layout).
const SGM: u32 = 2u;
const SGN: u32 = 4u;
const FN: u32 = 2u;

// Tile rows and columns, K step, the padded row lengths of the two slices (in halves), and how
// many vec4 of op(A)'s slice and of op(B)'s one invocation moves (TM·BK/4 and BK·TN/4 vec4 over
// WG invocations: 1, 2, 4 or 8, since SGN·FN = 8 and WG is MS² to 4·MS²).
const TM: u32 = SGM * 4u * MS;
const TN: u32 = SGN * FN * MS;
const BK: u32 = 2u * MS;
const LDA: u32 = BK + 8u;
const LDB: u32 = TN + 8u;
override AV: u32 = TM * BK / (4u * WG);
override BV: u32 = BK * TN / (4u * WG);

// op(A)'s slice [TM][LDA] and op(B)'s [BK][LDB], and two slots of one accumulator's outputs
// per subgroup.
var<workgroup> As: array<f16, TM * LDA>;
var<workgroup> Bs: array<f16, BK * LDB>;
var<workgroup> Cs: array<f32, 16u * MS * MS>;

// One slice's share of one invocation: AV vec4 of op(A), BV of op(B); the rest unused.
struct Slice {
    a0: vec4<f16>,
    a1: vec4<f16>,
    a2: vec4<f16>,
    a3: vec4<f16>,
    a4: vec4<f16>,
    a5: vec4<f16>,
    a6: vec4<f16>,
    a7: vec4<f16>,
    b0: vec4<f16>,
    b1: vec4<f16>,
    b2: vec4<f16>,
    b3: vec4<f16>,
}

// Where vec4 number `e` of op(A)'s slice sits: (row, k) of its first element. Stored [M, K], a
// vec4 runs along K (BK/4 per row); stored [K, M] (TA), along M (TM/4 per k).
fn a_at(e: u32) -> vec2<u32> {
    if (TA) { return vec2<u32>((e % (TM / 4u)) * 4u, e / (TM / 4u)); }
    return vec2<u32>(e / (BK / 4u), (e % (BK / 4u)) * 4u);
}

// Where vec4 number `e` of op(B)'s slice sits: (k, column) of its first element. Stored [K, N],
// a vec4 runs along N; stored [N, K] (TB), along K.
fn b_at(e: u32) -> vec2<u32> {
    if (TB) { return vec2<u32>((e % (BK / 4u)) * 4u, e / (BK / 4u)); }
    return vec2<u32>(e / (TN / 4u), (e % (TN / 4u)) * 4u);
}

fn load_a(e: u32, m0: u32, k0: u32, base: u32) -> vec4<f16> {
    let at = a_at(e);
    let gm = m0 + at.x;
    let gk = k0 + at.y;
    if (gm >= p.m || gk >= p.k) { return vec4<f16>(0.0h); }
    if (TA) { return vec4<f16>(a[(base + gk * p.m + gm) / 4u]); }
    return vec4<f16>(a[(base + gm * p.k + gk) / 4u]);
}

fn load_b(e: u32, n0: u32, k0: u32, base: u32) -> vec4<f16> {
    let at = b_at(e);
    let gk = k0 + at.x;
    let gn = n0 + at.y;
    if (gn >= p.n || gk >= p.k) { return vec4<f16>(0.0h); }
    if (TB) { return vec4<f16>(b[(base + gn * p.k + gk) / 4u]); }
    return vec4<f16>(b[(base + gk * p.n + gn) / 4u]);
}

fn load(li: u32, m0: u32, n0: u32, k0: u32, a_base: u32, b_base: u32) -> Slice {
    var s: Slice;
    s.a0 = load_a(li, m0, k0, a_base);
    if (AV > 1u) {
        s.a1 = load_a(li + WG, m0, k0, a_base);
    }
    if (AV > 2u) {
        s.a2 = load_a(li + 2u * WG, m0, k0, a_base);
        s.a3 = load_a(li + 3u * WG, m0, k0, a_base);
    }
    if (AV > 4u) {
        s.a4 = load_a(li + 4u * WG, m0, k0, a_base);
        s.a5 = load_a(li + 5u * WG, m0, k0, a_base);
        s.a6 = load_a(li + 6u * WG, m0, k0, a_base);
        s.a7 = load_a(li + 7u * WG, m0, k0, a_base);
    }
    s.b0 = load_b(li, n0, k0, b_base);
    if (BV > 1u) {
        s.b1 = load_b(li + WG, n0, k0, b_base);
    }
    if (BV > 2u) {
        s.b2 = load_b(li + 2u * WG, n0, k0, b_base);
        s.b3 = load_b(li + 3u * WG, n0, k0, b_base);
    }
    return s;
}

fn put_a(e: u32, v: vec4<f16>) {
    let at = a_at(e);
    let i = at.x * LDA + at.y;
    if (TA) {
        As[i] = v.x;
        As[i + LDA] = v.y;
        As[i + 2u * LDA] = v.z;
        As[i + 3u * LDA] = v.w;
    } else {
        As[i] = v.x;
        As[i + 1u] = v.y;
        As[i + 2u] = v.z;
        As[i + 3u] = v.w;
    }
}

fn put_b(e: u32, v: vec4<f16>) {
    let at = b_at(e);
    let i = at.x * LDB + at.y;
    if (TB) {
        Bs[i] = v.x;
        Bs[i + LDB] = v.y;
        Bs[i + 2u * LDB] = v.z;
        Bs[i + 3u * LDB] = v.w;
    } else {
        Bs[i] = v.x;
        Bs[i + 1u] = v.y;
        Bs[i + 2u] = v.z;
        Bs[i + 3u] = v.w;
    }
}

fn store(li: u32, s: Slice) {
    put_a(li, s.a0);
    if (AV > 1u) {
        put_a(li + WG, s.a1);
    }
    if (AV > 2u) {
        put_a(li + 2u * WG, s.a2);
        put_a(li + 3u * WG, s.a3);
    }
    if (AV > 4u) {
        put_a(li + 4u * WG, s.a4);
        put_a(li + 5u * WG, s.a5);
        put_a(li + 6u * WG, s.a6);
        put_a(li + 7u * WG, s.a7);
    }
    put_b(li, s.b0);
    if (BV > 1u) {
        put_b(li + WG, s.b1);
    }
    if (BV > 2u) {
        put_b(li + 2u * WG, s.b2);
        put_b(li + 3u * WG, s.b3);
    }
}

// Finishes the MS × MS outputs at (gm0, gn0) from slot `slot` of Cs.
fn finish(slot: u32, lane: u32, lanes: u32, gm0: u32, gn0: u32, c_base: u32) {
    for (var e = lane; e < MS * MS; e += lanes) {
        let gm = gm0 + e / MS;
        let gn = gn0 + e % MS;
        if (gm < p.m && gn < p.n) {
            let idx = c_base + gm * p.n + gn;
            var v = p.alpha * Cs[slot * MS * MS + e];
            if (p.accumulate != 0u) { v += f32(c[idx]); }
            if (p.epilogue >= 1u) { v += f32(bias[gn]); }
            if (p.epilogue >= 2u) {
                if (p.epilogue == 2u) { aux[idx] = O(v); }
                v = gelu_f32(v);
            }
            c[idx] = O(v);
        }
    }
}

// Stores accumulator number `i` of this subgroup's (rows gm0…, columns gn0…) through one of
// its two slots of Cs, alternating: one barrier an accumulator, since the store into a slot
// comes a barrier after the reads of its previous contents.
fn flush(acc: MatC, i: u32, sg: u32, lane: u32, lanes: u32, gm0: u32, gn0: u32, c_base: u32) {
    let slot = sg * 2u + i % 2u;
    coopStoreT(acc, &Cs[slot * MS * MS], MS);
    workgroupBarrier();
    finish(slot, lane, lanes, gm0, gn0, c_base);
}

@compute @workgroup_size(WG)
fn matmul_coop(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) lanes: u32,
) {
    let z = wid.z + p.batch_offset;
    let m0 = wid.y * TM;
    let n0 = wid.x * TN;
    var a_base = z * p.a_batch_stride;
    var b_base = z * p.b_batch_stride;
    let c_base = z * p.c_batch_stride;
    var k_begin = 0u;
    var k_end = p.k;
    if (p.splits > 1u) {
        a_base = 0u;
        b_base = 0u;
        k_begin = z * p.k_split;
        k_end = min(p.k, k_begin + p.k_split);
    }
    // This subgroup's block of the tile: 4MS rows from ar, FN·MS columns from bc. Accumulator
    // cRC holds its rows R·MS… and columns C·MS…; columns 2 and 3 exist only where FN = 4.
    let ar = (sg / SGN) * 4u * MS;
    let bc = (sg % SGN) * FN * MS;
    var c00: MatC;
    var c01: MatC;
    var c02: MatC;
    var c03: MatC;
    var c10: MatC;
    var c11: MatC;
    var c12: MatC;
    var c13: MatC;
    var c20: MatC;
    var c21: MatC;
    var c22: MatC;
    var c23: MatC;
    var c30: MatC;
    var c31: MatC;
    var c32: MatC;
    var c33: MatC;
    var next = load(li, m0, n0, k_begin, a_base, b_base);
    for (var k0 = k_begin; k0 < k_end; k0 += BK) {
        store(li, next);
        workgroupBarrier();
        if (k0 + BK < k_end) {
            next = load(li, m0, n0, k0 + BK, a_base, b_base);
        }
        for (var ks = 0u; ks < BK; ks += MS) {
            let b0 = coopLoadT<MatB>(&Bs[ks * LDB + bc], LDB);
            let b1 = coopLoadT<MatB>(&Bs[ks * LDB + bc + MS], LDB);
            var b2: MatB;
            var b3: MatB;
            if (FN == 4u) {
                b2 = coopLoadT<MatB>(&Bs[ks * LDB + bc + 2u * MS], LDB);
                b3 = coopLoadT<MatB>(&Bs[ks * LDB + bc + 3u * MS], LDB);
            }
            let a0 = coopLoadT<MatA>(&As[ar * LDA + ks], LDA);
            c00 = coopMultiplyAdd(a0, b0, c00);
            c01 = coopMultiplyAdd(a0, b1, c01);
            if (FN == 4u) {
                c02 = coopMultiplyAdd(a0, b2, c02);
                c03 = coopMultiplyAdd(a0, b3, c03);
            }
            let a1 = coopLoadT<MatA>(&As[(ar + MS) * LDA + ks], LDA);
            c10 = coopMultiplyAdd(a1, b0, c10);
            c11 = coopMultiplyAdd(a1, b1, c11);
            if (FN == 4u) {
                c12 = coopMultiplyAdd(a1, b2, c12);
                c13 = coopMultiplyAdd(a1, b3, c13);
            }
            let a2 = coopLoadT<MatA>(&As[(ar + 2u * MS) * LDA + ks], LDA);
            c20 = coopMultiplyAdd(a2, b0, c20);
            c21 = coopMultiplyAdd(a2, b1, c21);
            if (FN == 4u) {
                c22 = coopMultiplyAdd(a2, b2, c22);
                c23 = coopMultiplyAdd(a2, b3, c23);
            }
            let a3 = coopLoadT<MatA>(&As[(ar + 3u * MS) * LDA + ks], LDA);
            c30 = coopMultiplyAdd(a3, b0, c30);
            c31 = coopMultiplyAdd(a3, b1, c31);
            if (FN == 4u) {
                c32 = coopMultiplyAdd(a3, b2, c32);
                c33 = coopMultiplyAdd(a3, b3, c33);
            }
        }
        workgroupBarrier();
    }
    let gm = m0 + ar;
    let gn = n0 + bc;
    flush(c00, 0u, sg, lane, lanes, gm, gn, c_base);
    flush(c01, 1u, sg, lane, lanes, gm, gn + MS, c_base);
    flush(c10, 2u, sg, lane, lanes, gm + MS, gn, c_base);
    flush(c11, 3u, sg, lane, lanes, gm + MS, gn + MS, c_base);
    flush(c20, 4u, sg, lane, lanes, gm + 2u * MS, gn, c_base);
    flush(c21, 5u, sg, lane, lanes, gm + 2u * MS, gn + MS, c_base);
    flush(c30, 6u, sg, lane, lanes, gm + 3u * MS, gn, c_base);
    flush(c31, 7u, sg, lane, lanes, gm + 3u * MS, gn + MS, c_base);
    if (FN == 4u) {
        flush(c02, 8u, sg, lane, lanes, gm, gn + 2u * MS, c_base);
        flush(c03, 9u, sg, lane, lanes, gm, gn + 3u * MS, c_base);
        flush(c12, 10u, sg, lane, lanes, gm + MS, gn + 2u * MS, c_base);
        flush(c13, 11u, sg, lane, lanes, gm + MS, gn + 3u * MS, c_base);
        flush(c22, 12u, sg, lane, lanes, gm + 2u * MS, gn + 2u * MS, c_base);
        flush(c23, 13u, sg, lane, lanes, gm + 2u * MS, gn + 3u * MS, c_base);
        flush(c32, 14u, sg, lane, lanes, gm + 3u * MS, gn + 2u * MS, c_base);
        flush(c33, 15u, sg, lane, lanes, gm + 3u * MS, gn + 3u * MS, c_base);
    }
}
