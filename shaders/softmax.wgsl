// Row softmax, numerically stable: y = softmax(scale·x) along the last dimension.
// softmax_forward:  one workgroup (256) per row: max, Σ exp(scale·x − max), then y.
// softmax_backward: dx = scale · y ⊙ (dy − Σ dy⊙y)   (accumulate=1: dx += ...), reads y.
// Dispatch: grid_rows(rows).

struct Params {
    rows: u32,
    cols: u32,
    accumulate: u32,
    _pad: u32,
    scale: f32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn softmax_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let row = group_index(wid, nwg);
    if (row >= p.rows) { return; }
    let base = row * p.cols;
    var m = -3.4e38;
    for (var c = lid; c < p.cols; c += 256u) { m = max(m, p.scale * x[base + c]); }
    m = wg_max(lid, m);
    var s = 0.0;
    for (var c = lid; c < p.cols; c += 256u) { s += exp(p.scale * x[base + c] - m); }
    s = wg_sum(lid, s);
    let inv = 1.0 / s;
    for (var c = lid; c < p.cols; c += 256u) {
        out[base + c] = exp(p.scale * x[base + c] - m) * inv;
    }
}

// Here `x` is the forward output y.
@compute @workgroup_size(256)
fn softmax_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let row = group_index(wid, nwg);
    if (row >= p.rows) { return; }
    let base = row * p.cols;
    var d = 0.0;
    for (var c = lid; c < p.cols; c += 256u) { d += dy[base + c] * x[base + c]; }
    d = wg_sum(lid, d);
    for (var c = lid; c < p.cols; c += 256u) {
        var v = p.scale * x[base + c] * (dy[base + c] - d);
        if (p.accumulate != 0u) { v += out[base + c]; }
        out[base + c] = v;
    }
}
