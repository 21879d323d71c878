// Soft-target cross-entropy with a temperature, per row:
//   loss_r = −Σ_k t_rk · log_softmax(s_r / T)_k
//   ds_rk  = g · w_r / T · (softmax(s_r / T)_k · Σ_k t_rk − t_rk)
// where g = upstream[0] (dL/dloss) · scale and w_r an optional per-row weight (iBOT's masks
// weights). The mean over rows is scale = 1/rows; the launcher sums loss_r with reduce.wgsl.
// Each row gets `lanes` invocations (a power of two near cols / 4, at most 256) and a workgroup
// holds 256 / lanes rows, as in softmax.wgsl; rows of at most 32 columns (a linear probe's
// classes) and every row on CPU drivers get one invocation each, without a barrier.
// The row statistics take one pass over the logits and targets: each lane keeps a running max
// and a sum of exp rescaled when the max grows, and the lanes' sums meet at the row's max. The
// forward's loss comes from the same pass (−(Σ t·s/T − lse·Σ t)), so it reads each row once;
// the iBOT head's 65,536-wide rows do not stay in cache between passes.
// accumulate=1: ds += ... Dispatch: grid_rows(ceil(rows / (256 / lanes))).

struct Params {
    rows: u32,
    cols: u32,
    accumulate: u32,
    use_row_weight: u32,
    inv_temp: f32,
    scale: f32,
    lanes: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<f32>;
@group(0) @binding(3) var<storage, read> row_weight: array<f32>;
@group(0) @binding(4) var<storage, read> upstream: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

fn seg_of(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> Seg {
    return row_seg(group_index(wid, nwg), lid, p.lanes, p.rows, p.cols);
}

// Row max and log-sum-exp of s/T, Σ t and Σ t·s/T, in one pass.
fn row_stats(lid: u32, q: Seg) -> vec4<f32> {
    let base = q.row * p.cols;
    var ms = vec2<f32>(-3.4e38, 0.0);
    var st = 0.0;
    var stx = 0.0;
    for (var c = q.lane; c < q.n; c += p.lanes) {
        let x = logits[base + c] * p.inv_temp;
        let t = targets[base + c];
        ms = lse_step(ms, x);
        st += t;
        stx += t * x;
    }
    let r = seg_lse(lid, p.lanes, ms);
    let sums = seg_sum2(lid, p.lanes, st, stx);
    return vec4<f32>(r.x, r.x + log(r.y), sums.x, sums.y);
}

// out[row] = loss_r.
@compute @workgroup_size(256)
fn cross_entropy_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let q = seg_of(wid, nwg, lid);
    let st = row_stats(lid, q);
    if (q.lane == 0u && q.n > 0u) { out[q.row] = st.y * st.z - st.w; }
}

// out = d loss / d logits.
@compute @workgroup_size(256)
fn cross_entropy_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let q = seg_of(wid, nwg, lid);
    let base = q.row * p.cols;
    let st = row_stats(lid, q);
    if (q.n == 0u) { return; }
    var g = upstream[0] * p.scale * p.inv_temp;
    if (p.use_row_weight != 0u) { g *= row_weight[q.row]; }
    for (var c = q.lane; c < q.n; c += p.lanes) {
        let sm = exp(logits[base + c] * p.inv_temp - st.y);
        var d = g * (sm * st.z - targets[base + c]);
        if (p.accumulate != 0u) { d += out[base + c]; }
        out[base + c] = d;
    }
}
