// Row L2 normalisation and weight normalisation, the two norms of the DINO head (spec §2):
//   l2norm_forward:  y = x / max(‖x‖, eps); saves n = ‖x‖ per row.
//   l2norm_backward: dx (+)= (dy − y·(y·dy)) / n when n > eps, dy / eps otherwise.
//   weightnorm_forward:  W[k] = g[k] · v[k] / ‖v[k]‖ (PyTorch weight_norm over dim 0).
//   weightnorm_backward: dg[k] += dW[k]·v[k]/‖v[k]‖;  dv[k] += g[k]/‖v[k]‖ · (dW[k] − v̂[k](v̂[k]·dW[k])).
// One workgroup (256) per row. Dispatch: grid_rows(rows).

struct Params {
    rows: u32,
    cols: u32,
    accumulate: u32,
    _pad0: u32,
    eps: f32,
    _pad1: f32,
    _pad2: f32,
    _pad3: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read> g: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> out2: array<f32>;

fn norm_of(lid: u32, base: u32) -> f32 {
    var s = 0.0;
    for (var c = lid; c < p.cols; c += 256u) { s += x[base + c] * x[base + c]; }
    return sqrt(wg_sum(lid, s));
}

// out = y, out2[row] = ‖x‖.
@compute @workgroup_size(256)
fn l2norm_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let r = group_index(wid, nwg);
    if (r >= p.rows) { return; }
    let base = r * p.cols;
    let n = norm_of(lid, base);
    let inv = 1.0 / max(n, p.eps);
    for (var c = lid; c < p.cols; c += 256u) { out[base + c] = x[base + c] * inv; }
    if (lid == 0u) { out2[r] = n; }
}

// x is the forward input; out = dx.
@compute @workgroup_size(256)
fn l2norm_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let r = group_index(wid, nwg);
    if (r >= p.rows) { return; }
    let base = r * p.cols;
    let n = norm_of(lid, base);
    let clamped = n <= p.eps;
    let inv = 1.0 / max(n, p.eps);
    var s = 0.0;
    for (var c = lid; c < p.cols; c += 256u) { s += x[base + c] * inv * dy[base + c]; }
    let ydy = wg_sum(lid, s);
    for (var c = lid; c < p.cols; c += 256u) {
        var d = dy[base + c] * inv;
        if (!clamped) { d = (dy[base + c] - x[base + c] * inv * ydy) * inv; }
        if (p.accumulate != 0u) { d += out[base + c]; }
        out[base + c] = d;
    }
}

// x = v [K, C], g [K]; out = W.
@compute @workgroup_size(256)
fn weightnorm_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let r = group_index(wid, nwg);
    if (r >= p.rows) { return; }
    let base = r * p.cols;
    let s = g[r] / norm_of(lid, base);
    for (var c = lid; c < p.cols; c += 256u) { out[base + c] = x[base + c] * s; }
}

// x = v, dy = dW, g; out = dv (+=), out2 = dg (+=).
@compute @workgroup_size(256)
fn weightnorm_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let r = group_index(wid, nwg);
    if (r >= p.rows) { return; }
    let base = r * p.cols;
    let n = norm_of(lid, base);
    var s = 0.0;
    for (var c = lid; c < p.cols; c += 256u) { s += dy[base + c] * x[base + c] / n; }
    let dg = wg_sum(lid, s);
    let scale = g[r] / n;
    for (var c = lid; c < p.cols; c += 256u) {
        out[base + c] += scale * (dy[base + c] - x[base + c] / n * dg);
    }
    if (lid == 0u) { out2[r] += dg; }
}
