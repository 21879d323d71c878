// Row softmax, numerically stable: y = softmax(scale·x) along the last dimension.
// softmax_forward:  max, Σ exp(scale·x − max), then y.
// softmax_backward: dx = scale · y ⊙ (dy − Σ dy⊙y)   (accumulate=1: dx += ...), reads y.
// Each row gets `lanes` invocations (kernels::row_lanes16: a power of two near cols / 16, at
// least 32 where the row has that many quads, at most 256) and a workgroup holds 256 / lanes
// rows, so short rows (attention's 261: a row per 32 lanes, a subgroup on most GPUs) share a
// workgroup and reduce without barriers where the adapter has subgroups. Rows of up to
// 16·lanes elements (4,096 at 256 lanes) are read once and held in registers as four vec4
// chunks a lane (cols4); longer ones are re-read per pass, summed in the same order.
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

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;



fn xv(i: u32, ok: bool) -> f32 {
    if (ok) { return x[i]; }
    return 0.0;
}

fn dyv(i: u32, ok: bool) -> f32 {
    if (ok) { return dy[i]; }
    return 0.0;
}

fn outv(i: u32, ok: bool) -> f32 {
    if (ok) { return out[i]; }
    return 0.0;
}

fn put(i: u32, ok: bool, v: f32) {
    if (ok) { out[i] = v; }
}

fn put4(base: u32, c: vec4<u32>, ok: vec4<bool>, v: vec4<f32>) {
    put(base + c.x, ok.x, v.x);
    put(base + c.y, ok.y, v.y);
    put(base + c.z, ok.z, v.z);
    put(base + c.w, ok.w, v.w);
}

fn x4(base: u32, c: vec4<u32>, ok: vec4<bool>) -> vec4<f32> {
    return vec4<f32>(xv(base + c.x, ok.x), xv(base + c.y, ok.y), xv(base + c.z, ok.z), xv(base + c.w, ok.w));
}

fn dy4(base: u32, c: vec4<u32>, ok: vec4<bool>) -> vec4<f32> {
    return vec4<f32>(dyv(base + c.x, ok.x), dyv(base + c.y, ok.y), dyv(base + c.z, ok.z), dyv(base + c.w, ok.w));
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
fn softmax_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let lanes = p.lanes;
    let row = group_index(wid, nwg) * (256u / lanes) + lid / lanes;
    let lane = lid % lanes;
    // Rows past the end still take part in the barriers; they read and write nothing.
    let n = select(0u, p.cols, row < p.rows);
    let base = row * p.cols;
    var m = -3.4e38;
    if (p.cols <= 16u * lanes) {
        let k = chunks(lane, lanes, n);
        // Columns past the row hold -3.4e38: they leave the max alone.
        let v0 = select(vec4<f32>(-3.4e38), p.scale * x4(base, k.c0, k.ok0), k.ok0);
        let v1 = select(vec4<f32>(-3.4e38), p.scale * x4(base, k.c1, k.ok1), k.ok1);
        let v2 = select(vec4<f32>(-3.4e38), p.scale * x4(base, k.c2, k.ok2), k.ok2);
        let v3 = select(vec4<f32>(-3.4e38), p.scale * x4(base, k.c3, k.ok3), k.ok3);
        m = seg_max(lid, lanes, max16(v0, v1, v2, v3));
        let e0 = select(vec4<f32>(0.0), exp(v0 - m), k.ok0);
        let e1 = select(vec4<f32>(0.0), exp(v1 - m), k.ok1);
        let e2 = select(vec4<f32>(0.0), exp(v2 - m), k.ok2);
        let e3 = select(vec4<f32>(0.0), exp(v3 - m), k.ok3);
        let inv = 1.0 / seg_sum(lid, lanes, hsum16(e0, e1, e2, e3));
        put4(base, k.c0, k.ok0, e0 * inv);
        put4(base, k.c1, k.ok1, e1 * inv);
        put4(base, k.c2, k.ok2, e2 * inv);
        put4(base, k.c3, k.ok3, e3 * inv);
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
    if (p.cols <= 16u * lanes) {
        let k = chunks(lane, lanes, n);
        let y0 = x4(base, k.c0, k.ok0);
        let y1 = x4(base, k.c1, k.ok1);
        let y2 = x4(base, k.c2, k.ok2);
        let y3 = x4(base, k.c3, k.ok3);
        let g0 = dy4(base, k.c0, k.ok0);
        let g1 = dy4(base, k.c1, k.ok1);
        let g2 = dy4(base, k.c2, k.ok2);
        let g3 = dy4(base, k.c3, k.ok3);
        d = seg_sum(lid, lanes, hsum16(g0 * y0, g1 * y1, g2 * y2, g3 * y3));
        back4(base, k.c0, k.ok0, p.scale * y0 * (g0 - d));
        back4(base, k.c1, k.ok1, p.scale * y1 * (g1 - d));
        back4(base, k.c2, k.ok2, p.scale * y2 * (g2 - d));
        back4(base, k.c3, k.ok3, p.scale * y3 * (g3 - d));
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

// SEG_SG: the `_sg` variants (src/gpu/registry.rs) put their subgroup reductions here.
