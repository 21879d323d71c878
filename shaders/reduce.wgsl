// Reductions.
// sum_rows: out[r', c] = beta·out[r', c] + scale·Σ_{r in chunk r'} x[r, c] over a [rows, cols] input
//   starting at element x_offset,
//   chunks of `chunk` rows. One pass with chunk ≥ rows gives a column sum (bias gradients);
//   larger inputs reduce in two or more passes (the launcher chains them).
//   Dispatch: (ceil(cols / 64), n_chunks, 1), 64 threads; each thread walks its column.
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
