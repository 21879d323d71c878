// Reductions.
// sum_rows: out[r', c] = beta·out[r', c] + scale·Σ_{r in chunk r'} x[r, c] over a [rows, cols] input
//   starting at element x_offset,
//   chunks of `chunk` rows. One pass with chunk ≥ rows gives a column sum (bias gradients);
//   larger inputs reduce in two or more passes (the launcher chains them).
//   Dispatch: (ceil(cols / 64), n_chunks, 1), 64 threads; each thread walks its column.
// sum_rows4: the same sums for GPUs, where cols and x_offset are multiples of 4: a workgroup of
//   256 is 16 row lanes × 16 vec4 columns (the same 64 columns, the same grid). Lane l adds
//   rows l, l + 16, … of the chunk, four loads in flight; the column's first lane then adds the
//   16 lane sums in lane order. A thread walking 256 rows alone keeps one load in flight and
//   leaves most of a GPU idle on a [25600, 384] bias gradient.
// reduce_full: out[g] = Σ over a strided slice of x (mode 0: x, mode 1: x²; mode 2: the max), one partial per
//   workgroup of 256; the launcher chains passes down to one value, then scales.
//   Dispatch: grid_1d(n_groups).
// reduce_backward: dx[i] (+)= g[0]·scale·(mode 0: 1, mode 1: 2·x[i]).
//   Dispatch: grid_1d(ceil(n / 256)).

struct Params {
    rows: u32,
    cols: u32,
    chunk: u32,
    mode: u32,
    scale: f32,
    beta: f32,
    n: u32,
    accumulate: u32,
    x_offset: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out4: array<vec4<f32>>;
var<workgroup> lane_sums: array<vec4<f32>, 256>;

@compute @workgroup_size(64)
fn sum_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = wid.x * 64u + lid;
    if (c >= p.cols) { return; }
    let r0 = wid.y * p.chunk;
    let r1 = min(r0 + p.chunk, p.rows);
    var acc = 0.0;
    for (var r = r0; r < r1; r++) {
        acc += x[p.x_offset + r * p.cols + c];
    }
    let o = wid.y * p.cols + c;
    var v = p.scale * acc;
    if (p.beta != 0.0) { v += p.beta * out[o]; }
    out[o] = v;
}

@compute @workgroup_size(256)
fn sum_rows4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let cols4 = p.cols / 4u;
    let c4 = wid.x * 16u + lid % 16u;
    let lane = lid / 16u;
    let r1 = min((wid.y + 1u) * p.chunk, p.rows);
    var acc = vec4<f32>(0.0);
    if (c4 < cols4) {
        let base = p.x_offset / 4u + c4;
        var r = wid.y * p.chunk + lane;
        for (; r + 48u < r1; r += 64u) {
            let a = x4[base + r * cols4];
            let b = x4[base + (r + 16u) * cols4];
            let c = x4[base + (r + 32u) * cols4];
            let d = x4[base + (r + 48u) * cols4];
            acc += a;
            acc += b;
            acc += c;
            acc += d;
        }
        for (; r < r1; r += 16u) { acc += x4[base + r * cols4]; }
    }
    lane_sums[lid] = acc;
    workgroupBarrier();
    if (lane == 0u && c4 < cols4) {
        var s = lane_sums[lid];
        for (var l = 1u; l < 16u; l++) { s += lane_sums[l * 16u + lid]; }
        let o = wid.y * cols4 + c4;
        var v = p.scale * s;
        if (p.beta != 0.0) { v += p.beta * out4[o]; }
        out4[o] = v;
    }
}

@compute @workgroup_size(256)
fn reduce_full(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let gi = group_index(wid, nwg);
    // Each workgroup covers `chunk` consecutive elements.
    let start = gi * p.chunk;
    let end = min(start + p.chunk, p.n);
    if (p.mode == 2u) {
        var m = -3.4e38;
        for (var i = start + lid; i < end; i += 256u) { m = max(m, x[i]); }
        let top = wg_max(lid, m);
        if (lid == 0u) { out[gi] = top; }
        return;
    }
    var acc = 0.0;
    for (var i = start + lid; i < end; i += 256u) {
        let v = x[i];
        acc += select(v, v * v, p.mode == 1u);
    }
    let total = wg_sum(lid, acc);
    if (lid == 0u) {
        var v = p.scale * total;
        if (p.beta != 0.0) { v += p.beta * out[gi]; }
        out[gi] = v;
    }
}

@compute @workgroup_size(256)
fn reduce_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * 256u + lid;
    if (i >= p.n) { return; }
    var d = g[0] * p.scale;
    if (p.mode == 1u) { d *= 2.0 * x[i]; }
    if (p.accumulate != 0u) { d += out[i]; }
    out[i] = d;
}

// clip_by_norm: out[i] *= min(1, scale / (sqrt(g[0]) + 1e-6)), g[0] a sum of squares: gradient
// clipping without a readback. Dispatch: grid_1d(ceil(n / 256)).
@compute @workgroup_size(256)
fn clip_by_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * 256u + lid;
    if (i >= p.n) { return; }
    let f = min(1.0, p.scale / (sqrt(g[0]) + 1e-6));
    out[i] = out[i] * f;
}
