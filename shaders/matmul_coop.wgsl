enable f16;
enable wgpu_cooperative_matrix;

// The tensor-core matmul: the same product, epilogues and batching as matmul.wgsl, on adapters
// that offer cooperative matrices (wgpu's EXPERIMENTAL_COOPERATIVE_MATRIX: NVIDIA's tensor cores
// take f16 16×16×16; lavapipe offers f16 8×8×8). Operands are rounded to f16 on the way into
// workgroup memory and products accumulate in f32, so it serves the f16 inference path, whose
// operands are f16 already.
//   C[z] = alpha · op(A[z]) · op(B[z])  (+ C[z] if accumulate)  (+ bias[n] if epilogue ≥ 1)
//   epilogue 2 then stores that pre-activation in `aux` and writes C = gelu(pre-activation).
//
// One workgroup is four subgroups (WG = 4 × the adapter's fixed subgroup size) and owns a
// 4MS × 4MS tile of C; subgroup s owns the 2MS × 2MS quarter at row (s / 2), column (s % 2), as
// four MS × MS accumulators. Each K step of 2MS, every invocation stages its share of op(A)'s and
// op(B)'s slices into workgroup memory as f16 (zero outside the matrices, so any M, N, K work and
// the transposes are handled here, in a loop order that keeps global reads contiguous); then each
// subgroup multiplies its fragments out of workgroup memory. The epilogue goes through workgroup
// memory one accumulator at a time: a subgroup stores it, and its invocations finish the outputs.
// Matrix operations sit in uniform control flow only; the subgroup index moves pointers, not
// branches.
// Dispatch: (ceil(N/4MS), ceil(M/4MS), batches ≤ 65,535 per dispatch, batch_offset).

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
@group(0) @binding(1) var<storage, read> a: array<S>;
@group(0) @binding(2) var<storage, read> b: array<S>;
@group(0) @binding(3) var<storage, read> bias: array<S>;
@group(0) @binding(4) var<storage, read_write> c: array<S>;
@group(0) @binding(5) var<storage, read_write> aux: array<S>;

override TA: bool = false;
override TB: bool = false;
// Invocations per workgroup: four subgroups.
override WG: u32 = 128u;

// Matrix side (the registry derives an 8×8×8 variant by rewriting these four lines).
const MS: u32 = 16u;
alias MatA = coop_mat16x16<f16, A>;
alias MatB = coop_mat16x16<f16, B>;
alias MatC = coop_mat16x16<f32, C>;

// Tile side and K step.
const BT: u32 = 4u * MS;
const BK: u32 = 2u * MS;

// op(A)'s slice row-major [BT][BK], op(B)'s [BK][BT], and one accumulator per subgroup.
var<workgroup> As: array<f16, BT * BK>;
var<workgroup> Bs: array<f16, BK * BT>;
var<workgroup> Cs: array<f32, 4u * MS * MS>;

fn rd_a(i: u32, ok: bool) -> f16 {
    if (ok) { return f16(a[i]); }
    return 0.0h;
}

fn rd_b(i: u32, ok: bool) -> f16 {
    if (ok) { return f16(b[i]); }
    return 0.0h;
}

// Stages op(A)[m0…+BT, k0…+BK] and op(B)[k0…+BK, n0…+BT]. Consecutive invocations take
// consecutive elements along each operand's contiguous dimension.
fn stage(li: u32, m0: u32, n0: u32, k0: u32, a_base: u32, b_base: u32) {
    for (var i = 0u; i < (BT * BK) / WG; i++) {
        let e = li + i * WG;
        var r: u32;
        var kk: u32;
        if (TA) {
            r = e % BT;
            kk = e / BT;
        } else {
            r = e / BK;
            kk = e % BK;
        }
        let gm = m0 + r;
        let gk = k0 + kk;
        let ok = gm < p.m && gk < p.k;
        var src: u32;
        if (TA) { src = gk * p.m + gm; } else { src = gm * p.k + gk; }
        As[r * BK + kk] = rd_a(a_base + src, ok);
    }
    for (var i = 0u; i < (BT * BK) / WG; i++) {
        let e = li + i * WG;
        var col: u32;
        var kk: u32;
        if (TB) {
            col = e / BK;
            kk = e % BK;
        } else {
            col = e % BT;
            kk = e / BT;
        }
        let gn = n0 + col;
        let gk = k0 + kk;
        let ok = gn < p.n && gk < p.k;
        var src: u32;
        if (TB) { src = gn * p.k + gk; } else { src = gk * p.n + gn; }
        Bs[kk * BT + col] = rd_b(b_base + src, ok);
    }
}

// Finishes the MS × MS outputs at (gm0, gn0) from subgroup `sg`'s slot of Cs.
fn finish(sg: u32, lane: u32, lanes: u32, gm0: u32, gn0: u32, c_base: u32) {
    for (var e = lane; e < MS * MS; e += lanes) {
        let gm = gm0 + e / MS;
        let gn = gn0 + e % MS;
        if (gm < p.m && gn < p.n) {
            let idx = c_base + gm * p.n + gn;
            var v = p.alpha * Cs[sg * MS * MS + e];
            if (p.accumulate != 0u) { v += f32(c[idx]); }
            if (p.epilogue >= 1u) { v += f32(bias[gn]); }
            if (p.epilogue == 2u) {
                aux[idx] = S(v);
                v = gelu_f32(v);
            }
            c[idx] = S(v);
        }
    }
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
    let m0 = wid.y * BT;
    let n0 = wid.x * BT;
    let a_base = z * p.a_batch_stride;
    let b_base = z * p.b_batch_stride;
    let c_base = z * p.c_batch_stride;
    // This subgroup's quarter of the tile.
    let sr = (sg / 2u) * 2u * MS;
    let sc = (sg % 2u) * 2u * MS;
    var c00: MatC;
    var c01: MatC;
    var c10: MatC;
    var c11: MatC;
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        stage(li, m0, n0, k0, a_base, b_base);
        workgroupBarrier();
        for (var ks = 0u; ks < BK; ks += MS) {
            let a0 = coopLoadT<MatA>(&As[sr * BK + ks], BK);
            let a1 = coopLoadT<MatA>(&As[(sr + MS) * BK + ks], BK);
            let b0 = coopLoadT<MatB>(&Bs[ks * BT + sc], BT);
            let b1 = coopLoadT<MatB>(&Bs[ks * BT + sc + MS], BT);
            c00 = coopMultiplyAdd(a0, b0, c00);
            c01 = coopMultiplyAdd(a0, b1, c01);
            c10 = coopMultiplyAdd(a1, b0, c10);
            c11 = coopMultiplyAdd(a1, b1, c11);
        }
        workgroupBarrier();
    }
    let slot = sg * MS * MS;
    coopStoreT(c00, &Cs[slot], MS);
    workgroupBarrier();
    finish(sg, lane, lanes, m0 + sr, n0 + sc, c_base);
    workgroupBarrier();
    coopStoreT(c01, &Cs[slot], MS);
    workgroupBarrier();
    finish(sg, lane, lanes, m0 + sr, n0 + sc + MS, c_base);
    workgroupBarrier();
    coopStoreT(c10, &Cs[slot], MS);
    workgroupBarrier();
    finish(sg, lane, lanes, m0 + sr + MS, n0 + sc, c_base);
    workgroupBarrier();
    coopStoreT(c11, &Cs[slot], MS);
    workgroupBarrier();
    finish(sg, lane, lanes, m0 + sr + MS, n0 + sc + MS, c_base);
}
