// Prelude: prepended to every kernel source by the shader registry (src/gpu/registry.rs).

const SQRT_HALF: f32 = 0.7071067811865476;
const INV_SQRT_2PI: f32 = 0.3989422804014327;

// Linear workgroup index of a grid laid out by grid_1d (x up to 65,535, then y).
fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

// erfc(x) with a relative error below 1.2e-7 everywhere (Chebyshev fit of erfc(z)·exp(z²)).
// Working on erfc keeps the negative tail of GELU accurate, where 1 + erf(x) would cancel.
fn erfc_f32(x: f32) -> f32 {
    let z = abs(x);
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
        + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    let r = t * exp(-z * z + poly);
    return select(2.0 - r, r, x >= 0.0);
}

// Standard normal CDF Φ(x).
fn normal_cdf(x: f32) -> f32 {
    return 0.5 * erfc_f32(-x * SQRT_HALF);
}

// Exact GELU: x·Φ(x).
fn gelu_f32(x: f32) -> f32 {
    return x * normal_cdf(x);
}

// d/dx GELU = Φ(x) + x·φ(x).
fn gelu_grad_f32(x: f32) -> f32 {
    return normal_cdf(x) + x * INV_SQRT_2PI * exp(-0.5 * x * x);
}

// Workgroup reductions over 256 invocations (the row kernels' workgroup size). Call from uniform
// control flow; every invocation gets the result.
var<workgroup> red: array<f32, 256>;
var<workgroup> red2: array<f32, 256>;

fn wg_max(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) { red[lid] = max(red[lid], red[lid + s]); }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn wg_sum(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) { red[lid] += red[lid + s]; }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn wg_sum2(lid: u32, a: f32, b: f32) -> vec2<f32> {
    red[lid] = a;
    red2[lid] = b;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] += red[lid + s];
            red2[lid] += red2[lid + s];
        }
        workgroupBarrier();
    }
    let r = vec2<f32>(red[0], red2[0]);
    workgroupBarrier();
    return r;
}

// Segmented reductions: the workgroup's 256 invocations as 256/lanes rows of `lanes` (a power of
// two, uniform), so a short row costs log2(lanes) barriers instead of eight and the workgroup
// reduces several rows at once. Every invocation gets its own segment's result; with one lane
// per row (CPU drivers) that is its own value, without a barrier.
fn seg_sum(lid: u32, lanes: u32, v: f32) -> f32 {
    if (lanes == 1u) { return v; }
    red[lid] = v;
    workgroupBarrier();
    let lane = lid % lanes;
    for (var s = lanes >> 1u; s > 0u; s >>= 1u) {
        if (lane < s) { red[lid] += red[lid + s]; }
        workgroupBarrier();
    }
    let r = red[lid - lane];
    workgroupBarrier();
    return r;
}

fn seg_max(lid: u32, lanes: u32, v: f32) -> f32 {
    if (lanes == 1u) { return v; }
    red[lid] = v;
    workgroupBarrier();
    let lane = lid % lanes;
    for (var s = lanes >> 1u; s > 0u; s >>= 1u) {
        if (lane < s) { red[lid] = max(red[lid], red[lid + s]); }
        workgroupBarrier();
    }
    let r = red[lid - lane];
    workgroupBarrier();
    return r;
}

// A running log-sum-exp in one pass: (max, Σ exp(v − max)) after one more value v, the sum
// rescaled when the max grows; `seg_lse` meets a segment's lanes at the row's max. A row then
// is read once for its softmax statistics instead of twice (max, then sum).
fn lse_step(ms: vec2<f32>, v: f32) -> vec2<f32> {
    if (v > ms.x) { return vec2<f32>(v, ms.y * exp(ms.x - v) + 1.0); }
    return vec2<f32>(ms.x, ms.y + exp(v - ms.x));
}

fn seg_lse(lid: u32, lanes: u32, ms: vec2<f32>) -> vec2<f32> {
    let m = seg_max(lid, lanes, ms.x);
    return vec2<f32>(m, seg_sum(lid, lanes, ms.y * exp(ms.x - m)));
}

fn seg_sum2(lid: u32, lanes: u32, a: f32, b: f32) -> vec2<f32> {
    if (lanes == 1u) { return vec2<f32>(a, b); }
    red[lid] = a;
    red2[lid] = b;
    workgroupBarrier();
    let lane = lid % lanes;
    for (var s = lanes >> 1u; s > 0u; s >>= 1u) {
        if (lane < s) {
            red[lid] += red[lid + s];
            red2[lid] += red2[lid + s];
        }
        workgroupBarrier();
    }
    let r = vec2<f32>(red[lid - lane], red2[lid - lane]);
    workgroupBarrier();
    return r;
}

// A segmented row kernel's view of one invocation: its row (workgroup `group` holds rows
// group·(256/lanes) …), its lane in the row, and the row's column count, 0 past the last row: such
// an invocation still takes part in the barriers but reads and writes nothing.
struct Seg {
    row: u32,
    lane: u32,
    n: u32,
}

fn row_seg(group: u32, lid: u32, lanes: u32, rows: u32, cols: u32) -> Seg {
    let row = group * (256u / lanes) + lid / lanes;
    return Seg(row, lid % lanes, select(0u, cols, row < rows));
}

// Chunk q (0…3) of a lane's columns of a row: c = lane + j·lanes for j = 4q…4q+3. The row kernels
// that keep rows of up to 16·lanes elements in registers (layer norm, softmax) hold each chunk as
// a vec4.
fn cols4(lane: u32, lanes: u32, q: u32) -> vec4<u32> {
    let c = lane + 4u * q * lanes;
    return vec4<u32>(c, c + lanes, c + 2u * lanes, c + 3u * lanes);
}

// A lane's four column chunks (cols4) of a row of n columns, and which of their columns lie in
// the row.
struct Chunks {
    c0: vec4<u32>,
    c1: vec4<u32>,
    c2: vec4<u32>,
    c3: vec4<u32>,
    ok0: vec4<bool>,
    ok1: vec4<bool>,
    ok2: vec4<bool>,
    ok3: vec4<bool>,
}

fn chunks(lane: u32, lanes: u32, n: u32) -> Chunks {
    let c0 = cols4(lane, lanes, 0u);
    let c1 = cols4(lane, lanes, 1u);
    let c2 = cols4(lane, lanes, 2u);
    let c3 = cols4(lane, lanes, 3u);
    let nv = vec4<u32>(n);
    return Chunks(c0, c1, c2, c3, c0 < nv, c1 < nv, c2 < nv, c3 < nv);
}

// The lane's sum in the order of its columns, as the re-reading loops add them: `hsum` of the
// first chunk, then `hsum_from` for each next one.
fn hsum(v: vec4<f32>) -> f32 {
    return ((v.x + v.y) + v.z) + v.w;
}

fn hsum_from(s: f32, v: vec4<f32>) -> f32 {
    return (((s + v.x) + v.y) + v.z) + v.w;
}

// The sum of four chunks in column order.
fn hsum16(a: vec4<f32>, b: vec4<f32>, c: vec4<f32>, d: vec4<f32>) -> f32 {
    return hsum_from(hsum_from(hsum_from(hsum(a), b), c), d);
}

fn max4(v: vec4<f32>) -> f32 {
    return max(max(v.x, v.y), max(v.z, v.w));
}

fn max16(a: vec4<f32>, b: vec4<f32>, c: vec4<f32>, d: vec4<f32>) -> f32 {
    return max(max(max4(a), max4(b)), max(max4(c), max4(d)));
}
