// DINOv2 losses (spec §3): teacher targets (centered softmax, Sinkhorn-Knopp), the DINO CLS-token
// cross-entropy over (student crop, teacher crop) pairs, and the KoLeo regulariser.
// The iBOT loss is the weighted soft-target cross-entropy of cross_entropy.wgsl over gathered
// masked patches (gather.wgsl).
//
// teacher_softmax:     out[r] = softmax((x[r] − center)·inv_temp).
// dino_loss_forward:   out[r] = Σ_{g paired with r's crop} −Σ_k T[g·B + b]_k · log_softmax(S[r]·inv_temp)_k,
//                      student row r = v·B + b; the first n_global student crops are global crops,
//                      paired with every *other* teacher crop; local crops with every teacher crop,
//                      their sums times local_weight.
// dino_loss_backward:  dS[r] (+)= up·scale·w·inv_temp·(softmax(S[r]·inv_temp)·Σ_g Σ_k T_g − Σ_g T_g),
//                      w the crop's weight (1, or local_weight).
// sinkhorn_*:          Sinkhorn-Knopp targets in the log domain (see below); rows sum to 1.
// koleo_forward:       per row i of a chunk of `batch` rows: nearest neighbour j by cosine (j ≠ i),
//                      d_i = ‖x̂_i − x̂_j + 1e-8‖, out[i] = −log(d_i + 1e-8); saved = (j, d_i, ‖x_i‖).
// koleo_backward:      dx[i] (+)= through x̂ = x / max(‖x‖, 1e-8) of
//                      dL/dx̂_i = −g·u_i/(d_i(d_i + ε)) + Σ_{k: nn(k) = i} g·u_k/(d_k(d_k + ε)),
//                      g = up·scale, u_i = x̂_i − x̂_nn(i) + ε. The neighbour choice is constant.
// Dispatch: teacher_softmax, dino_loss_*, sinkhorn_rows and koleo_backward give each row `lanes`
// invocations (as softmax.wgsl), grid_rows(ceil(rows / (256 / lanes))); koleo_forward a workgroup
// per row, grid_rows(rows), its segments of `lanes` scoring candidates (koleo_forward_rows, for CPU
// drivers: an invocation per row, grid_rows(ceil(rows / 256))); elementwise kernels
// grid_1d(ceil(n / 256)).

struct Params {
    rows: u32,
    cols: u32,
    batch: u32,
    n_teacher: u32,
    n_global: u32,
    accumulate: u32,
    n_samples: u32,
    last: u32,
    inv_temp: f32,
    scale: f32,
    lanes: u32,
    local_weight: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> t: array<f32>;
@group(0) @binding(3) var<storage, read> aux: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> saved: array<f32>;

const EPS: f32 = 1e-8;

fn seg_of(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> Seg {
    return row_seg(group_index(wid, nwg), lid, p.lanes, p.rows, p.cols);
}

@compute @workgroup_size(256)
fn teacher_softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let q = seg_of(wid, nwg, lid);
    let base = q.row * p.cols;
    var ms = vec2<f32>(-3.4e38, 0.0);
    for (var k = q.lane; k < q.n; k += p.lanes) { ms = lse_step(ms, (x[base + k] - t[k]) * p.inv_temp); }
    let r = seg_lse(lid, p.lanes, ms);
    let inv = 1.0 / r.y;
    for (var k = q.lane; k < q.n; k += p.lanes) {
        out[base + k] = exp((x[base + k] - t[k]) * p.inv_temp - r.x) * inv;
    }
}

fn paired(v: u32, g: u32) -> bool {
    return v >= p.n_global || v != g;
}

// A crop's weight in the DINO loss: 1 for global crops, local_weight for local ones (exactly 1
// leaves every value as without it).
fn crop_weight(v: u32) -> f32 {
    return select(p.local_weight, 1.0, v < p.n_global);
}

// Log-sum-exp of S[r]·inv_temp.
fn student_lse(lid: u32, q: Seg) -> f32 {
    let base = q.row * p.cols;
    var ms = vec2<f32>(-3.4e38, 0.0);
    for (var k = q.lane; k < q.n; k += p.lanes) { ms = lse_step(ms, x[base + k] * p.inv_temp); }
    let r = seg_lse(lid, p.lanes, ms);
    return r.x + log(r.y);
}

@compute @workgroup_size(256)
fn dino_loss_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let q = seg_of(wid, nwg, lid);
    let v = q.row / p.batch;
    let b = q.row % p.batch;
    let base = q.row * p.cols;
    let lse = student_lse(lid, q);
    var acc = 0.0;
    for (var g = 0u; g < p.n_teacher; g++) {
        if (!paired(v, g)) { continue; }
        let tb = (g * p.batch + b) * p.cols;
        for (var k = q.lane; k < q.n; k += p.lanes) {
            acc -= t[tb + k] * (x[base + k] * p.inv_temp - lse);
        }
    }
    let total = seg_sum(lid, p.lanes, acc) * crop_weight(v);
    if (q.lane == 0u && q.n > 0u) { out[q.row] = total; }
}

@compute @workgroup_size(256)
fn dino_loss_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let q = seg_of(wid, nwg, lid);
    let v = q.row / p.batch;
    let b = q.row % p.batch;
    let base = q.row * p.cols;
    let lse = student_lse(lid, q);
    var mass = 0.0;
    for (var g = 0u; g < p.n_teacher; g++) {
        if (!paired(v, g)) { continue; }
        let tb = (g * p.batch + b) * p.cols;
        for (var k = q.lane; k < q.n; k += p.lanes) { mass += t[tb + k]; }
    }
    let total_mass = seg_sum(lid, p.lanes, mass);
    let gscale = aux[0] * p.scale * crop_weight(v) * p.inv_temp;
    for (var k = q.lane; k < q.n; k += p.lanes) {
        var tsum = 0.0;
        for (var g = 0u; g < p.n_teacher; g++) {
            if (paired(v, g)) { tsum += t[(g * p.batch + b) * p.cols + k]; }
        }
        var d = gscale * (exp(x[base + k] * p.inv_temp - lse) * total_mass - tsum);
        if (p.accumulate != 0u) { d += out[base + k]; }
        out[base + k] = d;
    }
}

// Sinkhorn-Knopp in the log domain: the same iterations as the official code, but every
// normalisation is a log-sum-exp subtraction, so no exp ever overflows or underflows to a zero
// row or column, whatever the logits (the official total normalisation is a global shift,
// which the first column step cancels).
@compute @workgroup_size(256)
fn sinkhorn_init(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * 256u + lid;
    if (i >= p.rows * p.cols) { return; }
    out[i] = x[i] * p.inv_temp;
}

// saved[k] = log Σ_b exp(out[b, k]): thread per prototype (column).
@compute @workgroup_size(256)
fn sinkhorn_col_lse(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let k = group_index(wid, nwg) * 256u + lid;
    if (k >= p.cols) { return; }
    var m = -3.4e38;
    for (var b = 0u; b < p.rows; b++) { m = max(m, out[b * p.cols + k]); }
    var s = 0.0;
    for (var b = 0u; b < p.rows; b++) { s += exp(out[b * p.cols + k] - m); }
    saved[k] = m + log(s);
}

// Each prototype gets mass 1/K.
@compute @workgroup_size(256)
fn sinkhorn_sub_cols(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * 256u + lid;
    if (i >= p.rows * p.cols) { return; }
    out[i] = out[i] - saved[i % p.cols] - log(f32(p.cols));
}

// Each sample gets mass 1/n; the last iteration multiplies n back and leaves the log domain.
@compute @workgroup_size(256)
fn sinkhorn_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let q = seg_of(wid, nwg, lid);
    let base = q.row * p.cols;
    var m = -3.4e38;
    for (var k = q.lane; k < q.n; k += p.lanes) { m = max(m, out[base + k]); }
    m = seg_max(lid, p.lanes, m);
    var s = 0.0;
    for (var k = q.lane; k < q.n; k += p.lanes) { s += exp(out[base + k] - m); }
    let lse = m + log(seg_sum(lid, p.lanes, s));
    for (var k = q.lane; k < q.n; k += p.lanes) {
        if (p.last != 0u) {
            out[base + k] = exp(out[base + k] - lse);
        } else {
            out[base + k] = out[base + k] - lse - log(f32(p.n_samples));
        }
    }
}

// ‖x̂_a − x̂_b + ε‖, from a segment of `lanes` (every segment of the workgroup gets it).
fn pair_distance(lid: u32, lane: u32, a: u32, na: f32, b: u32, nb: f32) -> f32 {
    var s = 0.0;
    for (var c = lane; c < p.cols; c += p.lanes) {
        let u = x[a * p.cols + c] / na - x[b * p.cols + c] / nb + EPS;
        s += u * u;
    }
    return sqrt(seg_sum(lid, p.lanes, s));
}

// Neighbour candidates are scored 256/lanes at a time, one row segment each (see seg_sum2), so a
// batch of short rows costs a few barriers per candidate group instead of twenty per candidate.
var<workgroup> seg_best: array<f32, 256>;
var<workgroup> seg_best_j: array<u32, 256>;

@compute @workgroup_size(256)
fn koleo_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg);
    if (i >= p.rows) { return; }
    let chunk0 = (i / p.batch) * p.batch;
    let chunk1 = chunk0 + p.batch;
    let lanes = p.lanes;
    let segs = 256u / lanes;
    let seg = lid / lanes;
    let lane = lid % lanes;
    let ni = max(sqrt(seg_sum(lid, lanes, row_sq(lane, lanes, i))), EPS);
    var best = -3.4e38;
    var best_j = i;
    for (var j0 = chunk0; j0 < chunk1; j0 += segs) {
        let j = j0 + seg;
        let valid = j < chunk1 && j != i;
        var dot = 0.0;
        var sq = 0.0;
        if (valid) {
            for (var c = lane; c < p.cols; c += lanes) {
                let xj = x[j * p.cols + c];
                dot += x[i * p.cols + c] * xj;
                sq += xj * xj;
            }
        }
        let r = seg_sum2(lid, lanes, dot, sq);
        let cosv = r.x / (ni * max(sqrt(r.y), EPS));
        // Candidates come in increasing j within a segment, so `>` keeps the first of equals.
        if (valid && cosv > best) {
            best = cosv;
            best_j = j;
        }
    }
    if (lane == 0u) {
        seg_best[seg] = best;
        seg_best_j[seg] = best_j;
    }
    workgroupBarrier();
    if (lid == 0u) {
        // Across segments the lowest j wins a tie, as a scan in j order would pick.
        var b = seg_best[0];
        var bj = seg_best_j[0];
        for (var q = 1u; q < segs; q++) {
            let v = seg_best[q];
            let vj = seg_best_j[q];
            if (v > b || (v == b && vj < bj)) {
                b = v;
                bj = vj;
            }
        }
        seg_best_j[0] = bj;
    }
    workgroupBarrier();
    let nb = workgroupUniformLoad(&seg_best_j[0]);
    let nn = max(sqrt(seg_sum(lid, lanes, row_sq(lane, lanes, nb))), EPS);
    let d = pair_distance(lid, lane, i, ni, nb, nn);
    if (lid == 0u) {
        out[i] = -log(d + EPS);
        saved[3u * i] = f32(nb);
        saved[3u * i + 1u] = d;
        saved[3u * i + 2u] = ni;
    }
}

// CPU layouts: one invocation per row scanning its chunk, 256 rows to a workgroup and no barrier.
// The same sums in the same order as koleo_forward with one lane, so the same neighbours, and a
// CPU driver does not run 255 idle invocations per row.
@compute @workgroup_size(256)
fn koleo_forward_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * 256u + lid;
    if (i >= p.rows) { return; }
    let chunk0 = (i / p.batch) * p.batch;
    let ni = max(sqrt(row_sq(0u, 1u, i)), EPS);
    var best = -3.4e38;
    var best_j = i;
    for (var j = chunk0; j < chunk0 + p.batch; j++) {
        if (j == i) { continue; }
        var dot = 0.0;
        var sq = 0.0;
        for (var c = 0u; c < p.cols; c++) {
            let xj = x[j * p.cols + c];
            dot += x[i * p.cols + c] * xj;
            sq += xj * xj;
        }
        let cosv = dot / (ni * max(sqrt(sq), EPS));
        if (cosv > best) {
            best = cosv;
            best_j = j;
        }
    }
    let nn = max(sqrt(row_sq(0u, 1u, best_j)), EPS);
    var s = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        let u = x[i * p.cols + c] / ni - x[best_j * p.cols + c] / nn + EPS;
        s += u * u;
    }
    let d = sqrt(s);
    out[i] = -log(d + EPS);
    saved[3u * i] = f32(best_j);
    saved[3u * i + 1u] = d;
    saved[3u * i + 2u] = ni;
}

// This invocation's share of Σ x[row]², for a segment of `lanes`.
fn row_sq(lane: u32, lanes: u32, row: u32) -> f32 {
    var s = 0.0;
    for (var c = lane; c < p.cols; c += lanes) { s += x[row * p.cols + c] * x[row * p.cols + c]; }
    return s;
}

// Here `t` holds the forward's saved (neighbour, distance, norm) per row and `aux` the upstream
// scalar. Each row gets `lanes` invocations, 256 / lanes rows to a workgroup; with the norms saved,
// the only reduction is the projection's.
@compute @workgroup_size(256)
fn koleo_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let q = seg_of(wid, nwg, lid);
    // Past the last row an invocation reads row 0's values and writes nothing.
    let i = select(0u, q.row, q.n > 0u);
    let chunk0 = (i / p.batch) * p.batch;
    let g = aux[0] * p.scale;
    let ni = t[3u * i + 2u];
    let j = u32(t[3u * i]);
    let di = t[3u * i + 1u];
    let nj = t[3u * j + 2u];
    let own = -g / (di * (di + EPS));
    // G = dL/dx̂_i, this lane's columns of it, kept in the scratch `saved` [rows, D].
    for (var c = q.lane; c < q.n; c += p.lanes) {
        let u = x[i * p.cols + c] / ni - x[j * p.cols + c] / nj + EPS;
        saved[i * p.cols + c] = own * u;
    }
    for (var k = chunk0; k < chunk0 + p.batch; k++) {
        if (q.n == 0u || k == i || u32(t[3u * k]) != i) { continue; }
        let nk = t[3u * k + 2u];
        let dk = t[3u * k + 1u];
        let w = g / (dk * (dk + EPS));
        for (var c = q.lane; c < q.n; c += p.lanes) {
            let u = x[k * p.cols + c] / nk - x[i * p.cols + c] / ni + EPS;
            saved[i * p.cols + c] += w * u;
        }
    }
    var dot = 0.0;
    for (var c = q.lane; c < q.n; c += p.lanes) { dot += saved[i * p.cols + c] * x[i * p.cols + c] / ni; }
    let proj = seg_sum(lid, p.lanes, dot);
    for (var c = q.lane; c < q.n; c += p.lanes) {
        let gc = saved[i * p.cols + c];
        var d = (gc - x[i * p.cols + c] / ni * proj) / ni;
        if (ni <= EPS) { d = gc / EPS; }
        if (p.accumulate != 0u) { d += out[i * p.cols + c]; }
        out[i * p.cols + c] = d;
    }
}
