// Row softmax, numerically stable: y = softmax(scale·x) along the last dimension.
// softmax_forward:  max, Σ exp(scale·x − max), then y.
// softmax_backward: dx = scale · y ⊙ (dy − Σ dy⊙y)   (accumulate=1: dx += ...), reads y.
// Each row gets `lanes` invocations (a power of two near cols / 4, at most 256) and a workgroup
// holds 256 / lanes rows, so short rows (attention's 261) share a workgroup and its barriers.
// Rows of up to RV·lanes elements are read once and held in registers; longer ones are re-read
// per pass.
// Dispatch: grid_rows(ceil(rows / (256 / lanes))).

struct Params {
    rows: u32,
    cols: u32,
    accumulate: u32,
    lanes: u32,
    scale: f32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
}

// Elements per lane kept in registers.
const RV: u32 = 8u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn softmax_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let lanes = p.lanes;
    let row = group_index(wid, nwg) * (256u / lanes) + lid / lanes;
    let lane = lid % lanes;
    // Rows past the end still take part in the barriers; they read and write nothing.
    let n = select(0u, p.cols, row < p.rows);
    let base = row * p.cols;
    var m = -3.4e38;
    if (p.cols <= RV * lanes) {
        var v: array<f32, RV>;
        for (var k = 0u; k < RV; k++) {
            let c = lane + k * lanes;
            if (c < n) {
                v[k] = p.scale * x[base + c];
                m = max(m, v[k]);
            }
        }
        m = seg_max(lid, lanes, m);
        var s = 0.0;
        for (var k = 0u; k < RV; k++) {
            if (lane + k * lanes < n) {
                v[k] = exp(v[k] - m);
                s += v[k];
            }
        }
        let inv = 1.0 / seg_sum(lid, lanes, s);
        for (var k = 0u; k < RV; k++) {
            let c = lane + k * lanes;
            if (c < n) { out[base + c] = v[k] * inv; }
        }
        return;
    }
    for (var c = lane; c < n; c += lanes) { m = max(m, p.scale * x[base + c]); }
    m = seg_max(lid, lanes, m);
    var s = 0.0;
    for (var c = lane; c < n; c += lanes) { s += exp(p.scale * x[base + c] - m); }
    let inv = 1.0 / seg_sum(lid, lanes, s);
    for (var c = lane; c < n; c += lanes) {
        out[base + c] = exp(p.scale * x[base + c] - m) * inv;
    }
}

// Here `x` is the forward output y.
@compute @workgroup_size(256)
fn softmax_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let lanes = p.lanes;
    let row = group_index(wid, nwg) * (256u / lanes) + lid / lanes;
    let lane = lid % lanes;
    let n = select(0u, p.cols, row < p.rows);
    let base = row * p.cols;
    var d = 0.0;
    if (p.cols <= RV * lanes) {
        var yk: array<f32, RV>;
        var gk: array<f32, RV>;
        for (var k = 0u; k < RV; k++) {
            let c = lane + k * lanes;
            if (c < n) {
                yk[k] = x[base + c];
                gk[k] = dy[base + c];
                d += gk[k] * yk[k];
            }
        }
        d = seg_sum(lid, lanes, d);
        for (var k = 0u; k < RV; k++) {
            let c = lane + k * lanes;
            if (c < n) {
                var v = p.scale * yk[k] * (gk[k] - d);
                if (p.accumulate != 0u) { v += out[base + c]; }
                out[base + c] = v;
            }
        }
        return;
    }
    for (var c = lane; c < n; c += lanes) { d += dy[base + c] * x[base + c]; }
    d = seg_sum(lid, lanes, d);
    for (var c = lane; c < n; c += lanes) {
        var v = p.scale * x[base + c] * (dy[base + c] - d);
        if (p.accumulate != 0u) { v += out[base + c]; }
        out[base + c] = v;
    }
}
