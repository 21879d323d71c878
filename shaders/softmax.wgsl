// Row softmax, numerically stable: y = softmax(scale·x) along the last dimension.
// softmax_forward:  max, Σ exp(scale·x − max), then y.
// softmax_backward: dx = scale · y ⊙ (dy − Σ dy⊙y)   (accumulate=1: dx += ...), reads y.
// Each row gets `lanes` invocations (a power of two near cols / 4, at most 256) and a workgroup
// holds 256 / lanes rows, so short rows (attention's 261) share a workgroup and its barriers.
// Rows of up to 4·lanes elements (1,024 at 256 lanes) are read once and held in registers;
// longer ones are re-read per pass.
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
    if (p.cols <= 4u * lanes) {
        let c = cols4(lane, lanes);
        let ok = c < vec4<u32>(n);
        // Columns past the row hold -3.4e38: they leave the max alone.
        let raw = vec4<f32>(xv(base + c.x, ok.x), xv(base + c.y, ok.y), xv(base + c.z, ok.z), xv(base + c.w, ok.w));
        let v = select(vec4<f32>(-3.4e38), p.scale * raw, ok);
        m = seg_max(lid, lanes, max(max(v.x, v.y), max(v.z, v.w)));
        let e = select(vec4<f32>(0.0), exp(v - m), ok);
        put4(base, c, ok, e * (1.0 / seg_sum(lid, lanes, hsum(e))));
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
    if (p.cols <= 4u * lanes) {
        let c = cols4(lane, lanes);
        let ok = c < vec4<u32>(n);
        let y = vec4<f32>(xv(base + c.x, ok.x), xv(base + c.y, ok.y), xv(base + c.z, ok.z), xv(base + c.w, ok.w));
        let g = vec4<f32>(dyv(base + c.x, ok.x), dyv(base + c.y, ok.y), dyv(base + c.z, ok.z),
                          dyv(base + c.w, ok.w));
        d = seg_sum(lid, lanes, hsum(g * y));
        var v = p.scale * y * (g - d);
        if (p.accumulate != 0u) {
            v += vec4<f32>(outv(base + c.x, ok.x), outv(base + c.y, ok.y), outv(base + c.z, ok.z),
                           outv(base + c.w, ok.w));
        }
        put4(base, c, ok, v);
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
