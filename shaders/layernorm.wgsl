// Layer norm over the last dimension with biased variance; eps is a parameter (DINOv2 1e-6,
// DINOv3 1e-5). The variance is taken in a second pass over (x − mean), so rows far from zero
// (x ≈ 100) keep full precision.
// layernorm_forward: y = (x − mean)·rstd·w + b; saves mean and rstd per row.
//   Dispatch: grid_rows(rows), 256 threads per row.
// layernorm_backward: dx (+)= rstd·(g − mean(g) − x̂·mean(g⊙x̂)), g = dy⊙w, x̂ = (x − mean)·rstd.
//   Reads x, w, dy, mean, rstd. accumulate=1 adds into dx (the residual stream).
//   Dispatch: grid_rows(rows).
// layernorm_backward_params: per chunk of rows, partial Σ dy⊙x̂ and Σ dy → [n_chunks, dim] each;
//   the launcher column-sums them into dweight and dbias (+=).
//   Dispatch: (ceil(dim / 64), n_chunks, 1), 64 threads.

struct Params {
    rows: u32,
    dim: u32,
    accumulate: u32,
    chunk: u32,
    eps: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

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
    let row = group_index(wid, nwg);
    if (row >= p.rows) { return; }
    let base = row * p.dim;
    let inv_d = 1.0 / f32(p.dim);
    var s = 0.0;
    for (var c = lid; c < p.dim; c += 256u) { s += f32(x[base + c]); }
    let mu = wg_sum(lid, s) * inv_d;
    var v = 0.0;
    for (var c = lid; c < p.dim; c += 256u) {
        let d = f32(x[base + c]) - mu;
        v += d * d;
    }
    let r = inverseSqrt(wg_sum(lid, v) * inv_d + p.eps);
    for (var c = lid; c < p.dim; c += 256u) {
        out[base + c] = S((f32(x[base + c]) - mu) * r * f32(w[c]) + f32(b_or_dy[c]));
    }
    if (lid == 0u) {
        mean[row] = mu;
        rstd[row] = r;
    }
}

@compute @workgroup_size(256)
fn layernorm_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let row = group_index(wid, nwg);
    if (row >= p.rows) { return; }
    let base = row * p.dim;
    let mu = mean[row];
    let r = rstd[row];
    var sg = 0.0;
    var sgx = 0.0;
    for (var c = lid; c < p.dim; c += 256u) {
        let g = f32(b_or_dy[base + c]) * f32(w[c]);
        sg += g;
        sgx += g * (f32(x[base + c]) - mu) * r;
    }
    let sums = wg_sum2(lid, sg, sgx);
    let inv_d = 1.0 / f32(p.dim);
    let mg = sums.x * inv_d;
    let mgx = sums.y * inv_d;
    for (var c = lid; c < p.dim; c += 256u) {
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
