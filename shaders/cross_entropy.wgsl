// Soft-target cross-entropy with a temperature, per row:
//   loss_r = −Σ_k t_rk · log_softmax(s_r / T)_k
//   ds_rk  = g · w_r / T · (softmax(s_r / T)_k · Σ_k t_rk − t_rk)
// where g = upstream[0] (dL/dloss) · scale and w_r an optional per-row weight (iBOT's masks
// weights). The mean over rows is scale = 1/rows; the launcher sums loss_r with reduce.wgsl.
// One workgroup (256) per row. accumulate=1: ds += ... Dispatch: grid_rows(rows).
// The _narrow entry points give each row one invocation (256 rows per workgroup, no barriers)
// for rows of at most 32 columns, such as a linear probe's classes; dispatch:
// grid_1d(ceil(rows / 256)).

struct Params {
    rows: u32,
    cols: u32,
    accumulate: u32,
    use_row_weight: u32,
    inv_temp: f32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<f32>;
@group(0) @binding(3) var<storage, read> row_weight: array<f32>;
@group(0) @binding(4) var<storage, read> upstream: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

// Row max and log-sum-exp of s/T, and Σ t.
fn row_stats(lid: u32, base: u32) -> vec3<f32> {
    var m = -3.4e38;
    for (var c = lid; c < p.cols; c += 256u) { m = max(m, logits[base + c] * p.inv_temp); }
    m = wg_max(lid, m);
    var se = 0.0;
    var st = 0.0;
    for (var c = lid; c < p.cols; c += 256u) {
        se += exp(logits[base + c] * p.inv_temp - m);
        st += targets[base + c];
    }
    let r = wg_sum2(lid, se, st);
    return vec3<f32>(m, m + log(r.x), r.y);
}

// out[row] = loss_r.
@compute @workgroup_size(256)
fn cross_entropy_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let row = group_index(wid, nwg);
    if (row >= p.rows) { return; }
    let base = row * p.cols;
    let st = row_stats(lid, base);
    var acc = 0.0;
    for (var c = lid; c < p.cols; c += 256u) {
        acc += targets[base + c] * (logits[base + c] * p.inv_temp - st.y);
    }
    let r = wg_sum2(lid, acc, 0.0);
    if (lid == 0u) { out[row] = -r.x; }
}

// out = d loss / d logits.
@compute @workgroup_size(256)
fn cross_entropy_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let row = group_index(wid, nwg);
    if (row >= p.rows) { return; }
    let base = row * p.cols;
    let st = row_stats(lid, base);
    var g = upstream[0] * p.scale * p.inv_temp;
    if (p.use_row_weight != 0u) { g *= row_weight[row]; }
    for (var c = lid; c < p.cols; c += 256u) {
        let sm = exp(logits[base + c] * p.inv_temp - st.y);
        var d = g * (sm * st.z - targets[base + c]);
        if (p.accumulate != 0u) { d += out[base + c]; }
        out[base + c] = d;
    }
}

// Row max and log-sum-exp of s/T, and Σ t, by one invocation.
fn row_stats_narrow(base: u32) -> vec3<f32> {
    var m = -3.4e38;
    for (var c = 0u; c < p.cols; c++) { m = max(m, logits[base + c] * p.inv_temp); }
    var se = 0.0;
    var st = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        se += exp(logits[base + c] * p.inv_temp - m);
        st += targets[base + c];
    }
    return vec3<f32>(m, m + log(se), st);
}

@compute @workgroup_size(256)
fn cross_entropy_forward_narrow(@builtin(workgroup_id) wid: vec3<u32>,
                                @builtin(num_workgroups) nwg: vec3<u32>,
                                @builtin(local_invocation_index) lid: u32) {
    let row = group_index(wid, nwg) * 256u + lid;
    if (row >= p.rows) { return; }
    let base = row * p.cols;
    let st = row_stats_narrow(base);
    var acc = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        acc += targets[base + c] * (logits[base + c] * p.inv_temp - st.y);
    }
    out[row] = -acc;
}

@compute @workgroup_size(256)
fn cross_entropy_backward_narrow(@builtin(workgroup_id) wid: vec3<u32>,
                                 @builtin(num_workgroups) nwg: vec3<u32>,
                                 @builtin(local_invocation_index) lid: u32) {
    let row = group_index(wid, nwg) * 256u + lid;
    if (row >= p.rows) { return; }
    let base = row * p.cols;
    let st = row_stats_narrow(base);
    var g = upstream[0] * p.scale * p.inv_temp;
    if (p.use_row_weight != 0u) { g *= row_weight[row]; }
    for (var c = 0u; c < p.cols; c++) {
        let sm = exp(logits[base + c] * p.inv_temp - st.y);
        var d = g * (sm * st.z - targets[base + c]);
        if (p.accumulate != 0u) { d += out[base + c]; }
        out[base + c] = d;
    }
}
