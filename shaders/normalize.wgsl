// Row L2 normalisation and weight normalisation, the two norms of the DINO head (spec §2):
//   l2norm_forward:  y = x / max(‖x‖, eps); saves n = ‖x‖ per row.
//   l2norm_backward: dx (+)= (dy − y·(y·dy)) / n when n > eps, dy / eps otherwise.
//   weightnorm_forward:  W[k] = g[k] · v[k] / ‖v[k]‖ (PyTorch weight_norm over dim 0).
//   weightnorm_backward: dg[k] += dW[k]·v[k]/‖v[k]‖;  dv[k] += g[k]/‖v[k]‖ · (dW[k] − v̂[k](v̂[k]·dW[k])).
// Each row gets `lanes` invocations (a power of two near cols / 4, at most 256; one on CPU
// drivers) and a workgroup holds 256 / lanes rows, as in softmax.wgsl.
// Dispatch: grid_rows(ceil(rows / (256 / lanes))).

struct Params {
    rows: u32,
    cols: u32,
    accumulate: u32,
    lanes: u32,
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

fn seg_of(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> Seg {
    return row_seg(group_index(wid, nwg), lid, p.lanes, p.rows, p.cols);
}

fn norm_of(lid: u32, s: Seg) -> f32 {
    let base = s.row * p.cols;
    var acc = 0.0;
    for (var c = s.lane; c < s.n; c += p.lanes) { acc += x[base + c] * x[base + c]; }
    return sqrt(seg_sum(lid, p.lanes, acc));
}

// out = y, out2[row] = ‖x‖.
@compute @workgroup_size(256)
fn l2norm_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let q = seg_of(wid, nwg, lid);
    let base = q.row * p.cols;
    let n = norm_of(lid, q);
    let inv = 1.0 / max(n, p.eps);
    for (var c = q.lane; c < q.n; c += p.lanes) { out[base + c] = x[base + c] * inv; }
    if (q.lane == 0u && q.n > 0u) { out2[q.row] = n; }
}

// x is the forward input; out = dx.
@compute @workgroup_size(256)
fn l2norm_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let q = seg_of(wid, nwg, lid);
    let base = q.row * p.cols;
    let n = norm_of(lid, q);
    let clamped = n <= p.eps;
    let inv = 1.0 / max(n, p.eps);
    var s = 0.0;
    for (var c = q.lane; c < q.n; c += p.lanes) { s += x[base + c] * inv * dy[base + c]; }
    let ydy = seg_sum(lid, p.lanes, s);
    for (var c = q.lane; c < q.n; c += p.lanes) {
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
    let q = seg_of(wid, nwg, lid);
    let base = q.row * p.cols;
    let n = norm_of(lid, q);
    if (q.n == 0u) { return; }
    let s = g[q.row] / n;
    for (var c = q.lane; c < q.n; c += p.lanes) { out[base + c] = x[base + c] * s; }
}

// x = v, dy = dW, g; out = dv (+=), out2 = dg (+=).
@compute @workgroup_size(256)
fn weightnorm_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let q = seg_of(wid, nwg, lid);
    let base = q.row * p.cols;
    let n = norm_of(lid, q);
    var s = 0.0;
    for (var c = q.lane; c < q.n; c += p.lanes) { s += dy[base + c] * x[base + c] / n; }
    let dg = seg_sum(lid, p.lanes, s);
    if (q.n == 0u) { return; }
    let scale = g[q.row] / n;
    for (var c = q.lane; c < q.n; c += p.lanes) {
        out[base + c] += scale * (dy[base + c] - x[base + c] / n * dg);
    }
    if (q.lane == 0u) { out2[q.row] += dg; }
}
