// Layer norm over the last dimension with biased variance; eps is a parameter (DINOv2 1e-6,
// DINOv3 1e-5). The variance is taken in a second pass over (x − mean), so rows far from zero
// (x ≈ 100) keep full precision.
// layernorm_forward: y = (x − mean)·rstd·w + b; saves mean and rstd per row. Rows of up to
//   RV·lanes elements are read once and held in registers; longer ones are re-read per pass.
//   Dispatch: grid_rows(ceil(rows / (256 / lanes))): `lanes` invocations per row (a power of two
//   near dim / 4, so each reads about four elements), 256 / lanes rows per workgroup.
// layernorm_backward: dx (+)= rstd·(g − mean(g) − x̂·mean(g⊙x̂)), g = dy⊙w, x̂ = (x − mean)·rstd.
//   Reads x, w, dy, mean, rstd. accumulate=1 adds into dx (the residual stream).
//   Dispatch: as layernorm_forward.
// layernorm_backward_params: per chunk of rows, partial Σ dy⊙x̂ and Σ dy → [n_chunks, dim] each;
//   the launcher column-sums them into dweight and dbias (+=).
//   Dispatch: (ceil(dim / 64), n_chunks, 1), 64 threads.

struct Params {
    rows: u32,
    dim: u32,
    accumulate: u32,
    chunk: u32,
    eps: f32,
    lanes: u32,
    _pad1: u32,
    _pad2: u32,
}

// Elements per lane kept in registers: rows up to RV·256 (2,048) are read from memory once.
const RV: u32 = 8u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<S>;
@group(0) @binding(2) var<storage, read> w: array<S>;
@group(0) @binding(3) var<storage, read> b_or_dy: array<S>;
@group(0) @binding(4) var<storage, read_write> out: array<S>;
@group(0) @binding(5) var<storage, read_write> mean: array<f32>;
@group(0) @binding(6) var<storage, read_write> rstd: array<f32>;

@compute @workgroup_size(256)
fn layernorm_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let lanes = p.lanes;
    let row = group_index(wid, nwg) * (256u / lanes) + lid / lanes;
    let lane = lid % lanes;
    // Rows past the end still take part in the barriers; they read and write nothing.
    let n = select(0u, p.dim, row < p.rows);
    let base = row * p.dim;
    let inv_d = 1.0 / f32(p.dim);
    if (p.dim <= RV * lanes) {
        // The row is read once: each lane keeps its elements (c = lane + k·lanes) in registers.
        var v: array<f32, RV>;
        var s = 0.0;
        for (var k = 0u; k < RV; k++) {
            let c = lane + k * lanes;
            if (c < n) {
                v[k] = f32(x[base + c]);
                s += v[k];
            }
        }
        let mu = seg_sum(lid, lanes, s) * inv_d;
        var q = 0.0;
        for (var k = 0u; k < RV; k++) {
            if (lane + k * lanes < n) {
                let d = v[k] - mu;
                q += d * d;
            }
        }
        let r = inverseSqrt(seg_sum(lid, lanes, q) * inv_d + p.eps);
        for (var k = 0u; k < RV; k++) {
            let c = lane + k * lanes;
            if (c < n) { out[base + c] = S((v[k] - mu) * r * f32(w[c]) + f32(b_or_dy[c])); }
        }
        if (lane == 0u && n > 0u) {
            mean[row] = mu;
            rstd[row] = r;
        }
        return;
    }
    // Rows longer than RV·256 are read three times, in the same order.
    var s = 0.0;
    for (var c = lane; c < n; c += lanes) { s += f32(x[base + c]); }
    let mu = seg_sum(lid, lanes, s) * inv_d;
    var v = 0.0;
    for (var c = lane; c < n; c += lanes) {
        let d = f32(x[base + c]) - mu;
        v += d * d;
    }
    let r = inverseSqrt(seg_sum(lid, lanes, v) * inv_d + p.eps);
    for (var c = lane; c < n; c += lanes) {
        out[base + c] = S((f32(x[base + c]) - mu) * r * f32(w[c]) + f32(b_or_dy[c]));
    }
    if (lane == 0u && n > 0u) {
        mean[row] = mu;
        rstd[row] = r;
    }
}

@compute @workgroup_size(256)
fn layernorm_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let lanes = p.lanes;
    let row = group_index(wid, nwg) * (256u / lanes) + lid / lanes;
    let lane = lid % lanes;
    let valid = row < p.rows;
    let n = select(0u, p.dim, valid);
    let base = row * p.dim;
    var mu = 0.0;
    var r = 0.0;
    if (valid) {
        mu = mean[row];
        r = rstd[row];
    }
    let inv_d = 1.0 / f32(p.dim);
    if (p.dim <= RV * lanes) {
        // x, dy and w are read once: g = dy⊙w and x − mean stay in registers between the two
        // sums and the write.
        var gk: array<f32, RV>;
        var xk: array<f32, RV>;
        var sg = 0.0;
        var sgx = 0.0;
        for (var k = 0u; k < RV; k++) {
            let c = lane + k * lanes;
            if (c < n) {
                gk[k] = f32(b_or_dy[base + c]) * f32(w[c]);
                xk[k] = f32(x[base + c]) - mu;
                sg += gk[k];
                sgx += gk[k] * xk[k] * r;
            }
        }
        let sums = seg_sum2(lid, lanes, sg, sgx);
        let mg = sums.x * inv_d;
        let mgx = sums.y * inv_d;
        for (var k = 0u; k < RV; k++) {
            let c = lane + k * lanes;
            if (c < n) {
                var d = r * (gk[k] - mg - xk[k] * r * mgx);
                if (p.accumulate != 0u) { d += f32(out[base + c]); }
                out[base + c] = S(d);
            }
        }
        return;
    }
    var sg = 0.0;
    var sgx = 0.0;
    for (var c = lane; c < n; c += lanes) {
        let g = f32(b_or_dy[base + c]) * f32(w[c]);
        sg += g;
        sgx += g * (f32(x[base + c]) - mu) * r;
    }
    let sums = seg_sum2(lid, lanes, sg, sgx);
    let mg = sums.x * inv_d;
    let mgx = sums.y * inv_d;
    for (var c = lane; c < n; c += lanes) {
        let xh = (f32(x[base + c]) - mu) * r;
        let g = f32(b_or_dy[base + c]) * f32(w[c]);
        var d = r * (g - mg - xh * mgx);
        if (p.accumulate != 0u) { d += f32(out[base + c]); }
        out[base + c] = S(d);
    }
}

// Here `out` receives the Σ dy⊙x̂ partials and `mean`/`rstd` are read; the Σ dy partials go to
// the second half of `out` (offset n_chunks·dim).
@compute @workgroup_size(64)
fn layernorm_backward_params(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                             @builtin(local_invocation_index) lid: u32) {
    let c = wid.x * 64u + lid;
    if (c >= p.dim) { return; }
    let r0 = wid.y * p.chunk;
    let r1 = min(r0 + p.chunk, p.rows);
    var sw = 0.0;
    var sb = 0.0;
    for (var r = r0; r < r1; r++) {
        let g = f32(b_or_dy[r * p.dim + c]);
        sw += g * (f32(x[r * p.dim + c]) - mean[r]) * rstd[r];
        sb += g;
    }
    out[wid.y * p.dim + c] = S(sw);
    out[(nwg.y + wid.y) * p.dim + c] = S(sb);
}
