// Layer norm over the last dimension with biased variance; eps is a parameter (DINOv2 1e-6,
// DINOv3 1e-5). The variance is taken in a second pass over (x − mean), so rows far from zero
// (x ≈ 100) keep full precision.
// layernorm_forward: y = (x − mean)·rstd·w + b; saves mean and rstd per row. Rows of up to
//   16·lanes elements are read once and held in registers (four vec4 chunks a lane, cols4);
//   longer ones are re-read per pass, summed in the same order.
//   Dispatch: grid_rows(ceil(rows / (256 / lanes))): `lanes` invocations per row
//   (kernels::row_lanes16: a power of two near dim / 16, at least 32 where the row has that many
//   quads: ViT-S's 384 takes 32, a subgroup on most GPUs), 256 / lanes rows per workgroup.
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

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<S>;
@group(0) @binding(2) var<storage, read> w: array<S>;
@group(0) @binding(3) var<storage, read> b_or_dy: array<S>;
@group(0) @binding(4) var<storage, read_write> out: array<S>;
@group(0) @binding(5) var<storage, read_write> mean: array<f32>;
@group(0) @binding(6) var<storage, read_write> rstd: array<f32>;



fn xv(i: u32, ok: bool) -> f32 {
    if (ok) { return f32(x[i]); }
    return 0.0;
}

fn wv(i: u32, ok: bool) -> f32 {
    if (ok) { return f32(w[i]); }
    return 0.0;
}

fn bv(i: u32, ok: bool) -> f32 {
    if (ok) { return f32(b_or_dy[i]); }
    return 0.0;
}

fn outv(i: u32, ok: bool) -> f32 {
    if (ok) { return f32(out[i]); }
    return 0.0;
}

fn put(i: u32, ok: bool, v: f32) {
    if (ok) { out[i] = S(v); }
}

fn x4(base: u32, c: vec4<u32>, ok: vec4<bool>) -> vec4<f32> {
    return vec4<f32>(xv(base + c.x, ok.x), xv(base + c.y, ok.y), xv(base + c.z, ok.z), xv(base + c.w, ok.w));
}

fn b4(base: u32, c: vec4<u32>, ok: vec4<bool>) -> vec4<f32> {
    return vec4<f32>(bv(base + c.x, ok.x), bv(base + c.y, ok.y), bv(base + c.z, ok.z), bv(base + c.w, ok.w));
}

fn w4(c: vec4<u32>, ok: vec4<bool>) -> vec4<f32> {
    return vec4<f32>(wv(c.x, ok.x), wv(c.y, ok.y), wv(c.z, ok.z), wv(c.w, ok.w));
}

fn put4(base: u32, c: vec4<u32>, ok: vec4<bool>, v: vec4<f32>) {
    put(base + c.x, ok.x, v.x);
    put(base + c.y, ok.y, v.y);
    put(base + c.z, ok.z, v.z);
    put(base + c.w, ok.w, v.w);
}

// Stores a chunk of dx, added to what dx holds with accumulate=1.
fn back4(base: u32, c: vec4<u32>, ok: vec4<bool>, v: vec4<f32>) {
    var r = v;
    if (p.accumulate != 0u) {
        r += vec4<f32>(outv(base + c.x, ok.x), outv(base + c.y, ok.y), outv(base + c.z, ok.z), outv(base + c.w, ok.w));
    }
    put4(base, c, ok, r);
}


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
    if (p.dim <= 16u * lanes) {
        let k = chunks(lane, lanes, n);
        let v0 = x4(base, k.c0, k.ok0);
        let v1 = x4(base, k.c1, k.ok1);
        let v2 = x4(base, k.c2, k.ok2);
        let v3 = x4(base, k.c3, k.ok3);
        let mu = seg_sum(lid, lanes, hsum16(v0, v1, v2, v3)) * inv_d;
        let d0 = select(vec4<f32>(0.0), v0 - mu, k.ok0);
        let d1 = select(vec4<f32>(0.0), v1 - mu, k.ok1);
        let d2 = select(vec4<f32>(0.0), v2 - mu, k.ok2);
        let d3 = select(vec4<f32>(0.0), v3 - mu, k.ok3);
        let r = inverseSqrt(seg_sum(lid, lanes, hsum16(d0 * d0, d1 * d1, d2 * d2, d3 * d3)) * inv_d + p.eps);
        put4(base, k.c0, k.ok0, d0 * r * w4(k.c0, k.ok0) + b4(0u, k.c0, k.ok0));
        put4(base, k.c1, k.ok1, d1 * r * w4(k.c1, k.ok1) + b4(0u, k.c1, k.ok1));
        put4(base, k.c2, k.ok2, d2 * r * w4(k.c2, k.ok2) + b4(0u, k.c2, k.ok2));
        put4(base, k.c3, k.ok3, d3 * r * w4(k.c3, k.ok3) + b4(0u, k.c3, k.ok3));
        if (lane == 0u && n > 0u) {
            mean[row] = mu;
            rstd[row] = r;
        }
        return;
    }
    // Longer rows are read three times, in the same order.
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
    if (p.dim <= 16u * lanes) {
        // x, dy and w are read once: g = dy⊙w and x − mean stay in registers between the two
        // sums and the write.
        let k = chunks(lane, lanes, n);
        let g0 = b4(base, k.c0, k.ok0) * w4(k.c0, k.ok0);
        let g1 = b4(base, k.c1, k.ok1) * w4(k.c1, k.ok1);
        let g2 = b4(base, k.c2, k.ok2) * w4(k.c2, k.ok2);
        let g3 = b4(base, k.c3, k.ok3) * w4(k.c3, k.ok3);
        let xd0 = select(vec4<f32>(0.0), x4(base, k.c0, k.ok0) - mu, k.ok0);
        let xd1 = select(vec4<f32>(0.0), x4(base, k.c1, k.ok1) - mu, k.ok1);
        let xd2 = select(vec4<f32>(0.0), x4(base, k.c2, k.ok2) - mu, k.ok2);
        let xd3 = select(vec4<f32>(0.0), x4(base, k.c3, k.ok3) - mu, k.ok3);
        let sums = seg_sum2(lid, lanes, hsum16(g0, g1, g2, g3),
                            hsum16(g0 * xd0 * r, g1 * xd1 * r, g2 * xd2 * r, g3 * xd3 * r));
        let mg = sums.x * inv_d;
        let mgx = sums.y * inv_d;
        back4(base, k.c0, k.ok0, r * (g0 - mg - xd0 * r * mgx));
        back4(base, k.c1, k.ok1, r * (g1 - mg - xd1 * r * mgx));
        back4(base, k.c2, k.ok2, r * (g2 - mg - xd2 * r * mgx));
        back4(base, k.c3, k.ok3, r * (g3 - mg - xd3 * r * mgx));
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

// SEG_SG: the `_sg` variants (src/gpu/registry.rs) put their subgroup reductions here.
