// Elementwise ops over flat tensors; `b` broadcasts by wrapping (b[i % nb]): a row vector over
// the last dimension, a scalar (nb = 1), or a full tensor (nb = n).
// add_forward:  out = a + b          mul_forward: out = a · b
// axpby:        out = alpha·a + beta·out   (scale: beta = 0; accumulate: beta = 1)
// add_mul:      out = a + b · c            (a residual with LayerScale; c wraps like b does above)
// scale_rows:   out = a · s[i / row_len]   (per-sample drop path: s is 0 or 1/keep per sample;
//               its backward is the same op on the gradient)
// Backward passes compose these: d(a+b)/da = dy (axpby), d(a·b)/da = dy·b (mul_forward),
// and a broadcast operand's gradient is a column sum (reduce.wgsl).
// accumulate=1 makes add/mul write out += result.
// Dispatch: grid_1d(ceil(n / 256)).
// The _v4 entry points do the same on vec4s (n, nb counted in vec4s) where every length is a
// multiple of 4, so each invocation moves 16 bytes per load; the launchers pick them.
// mul_backward4 (GPUs): the backward of a·b with b a row of row_len vec4s (LayerScale) in one
//   pass: da (+)= dy·b (dy in a4, b in b4, da in out4) and the column sums of dy·a (a in c4) in
//   chunks of 256 rows into partial (summed after by reduce.wgsl's sum_rows), 16 row lanes ×
//   16 vec4 columns a workgroup as in sum_rows4; n counts rows. Before, two products and a
//   column sum read dy twice and wrote and read dy·a in between.
//   Dispatch (ceil(row_len / 16), ceil(n / 256), 1).

struct Params {
    n: u32,
    nb: u32,
    accumulate: u32,
    row_len: u32,
    alpha: f32,
    beta: f32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<S>;
@group(0) @binding(2) var<storage, read> b: array<S>;
@group(0) @binding(3) var<storage, read_write> out: array<S>;
@group(0) @binding(4) var<storage, read> c: array<S>;
@group(0) @binding(5) var<storage, read> srow: array<f32>;
// The same buffers seen as vec4 (no entry point uses both views).
@group(0) @binding(1) var<storage, read> a4: array<vec4<S>>;
@group(0) @binding(2) var<storage, read> b4: array<vec4<S>>;
@group(0) @binding(3) var<storage, read_write> out4: array<vec4<S>>;
@group(0) @binding(4) var<storage, read> c4: array<vec4<S>>;
@group(0) @binding(6) var<storage, read_write> partial4: array<vec4<f32>>;
var<workgroup> lane_sums4: array<vec4<f32>, 256>;

@compute @workgroup_size(256)
fn add_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * 256u + lid;
    if (i >= p.n) { return; }
    var v = f32(a[i]) + f32(b[i % p.nb]);
    if (p.accumulate != 0u) { v += f32(out[i]); }
    out[i] = S(v);
}

@compute @workgroup_size(256)
fn mul_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * 256u + lid;
    if (i >= p.n) { return; }
    var v = f32(a[i]) * f32(b[i % p.nb]);
    if (p.accumulate != 0u) { v += f32(out[i]); }
    out[i] = S(v);
}

@compute @workgroup_size(256)
fn axpby(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * 256u + lid;
    if (i >= p.n) { return; }
    var v = p.alpha * f32(a[i]);
    if (p.beta != 0.0) { v += p.beta * f32(out[i]); }
    out[i] = S(v);
}

// Here nb is the wrap length of c; b has n elements.
@compute @workgroup_size(256)
fn add_mul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * 256u + lid;
    if (i >= p.n) { return; }
    out[i] = S(f32(a[i]) + f32(b[i]) * f32(c[i % p.nb]));
}

@compute @workgroup_size(256)
fn scale_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * 256u + lid;
    if (i >= p.n) { return; }
    out[i] = S(f32(a[i]) * srow[i / p.row_len]);
}

// scale_rows on vec4s (n and row_len counted in vec4s).
@compute @workgroup_size(256)
fn scale_rows_v4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * 256u + lid;
    if (i >= p.n) { return; }
    out4[i] = vec4<S>(vec4<f32>(a4[i]) * srow[i / p.row_len]);
}

@compute @workgroup_size(256)
fn add_forward_v4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * 256u + lid;
    if (i >= p.n) { return; }
    var v = vec4<f32>(a4[i]) + vec4<f32>(b4[i % p.nb]);
    if (p.accumulate != 0u) { v += vec4<f32>(out4[i]); }
    out4[i] = vec4<S>(v);
}

@compute @workgroup_size(256)
fn mul_forward_v4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * 256u + lid;
    if (i >= p.n) { return; }
    var v = vec4<f32>(a4[i]) * vec4<f32>(b4[i % p.nb]);
    if (p.accumulate != 0u) { v += vec4<f32>(out4[i]); }
    out4[i] = vec4<S>(v);
}

@compute @workgroup_size(256)
fn axpby_v4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * 256u + lid;
    if (i >= p.n) { return; }
    var v = p.alpha * vec4<f32>(a4[i]);
    if (p.beta != 0.0) { v += p.beta * vec4<f32>(out4[i]); }
    out4[i] = vec4<S>(v);
}

@compute @workgroup_size(256)
fn add_mul_v4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * 256u + lid;
    if (i >= p.n) { return; }
    out4[i] = vec4<S>(vec4<f32>(a4[i]) + vec4<f32>(b4[i]) * vec4<f32>(c4[i % p.nb]));
}

@compute @workgroup_size(256)
fn mul_backward4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let col = wid.x * 16u + lid % 16u;
    let lane = lid / 16u;
    let r1 = min((wid.y + 1u) * 256u, p.n);
    var acc = vec4<f32>(0.0);
    if (col < p.row_len) {
        let bv = vec4<f32>(b4[col]);
        for (var r = wid.y * 256u + lane; r < r1; r += 16u) {
            let i = r * p.row_len + col;
            let g = vec4<f32>(a4[i]);
            var d = g * bv;
            if (p.accumulate != 0u) { d += vec4<f32>(out4[i]); }
            out4[i] = vec4<S>(d);
            acc += g * vec4<f32>(c4[i]);
        }
    }
    lane_sums4[lid] = acc;
    workgroupBarrier();
    if (lane == 0u && col < p.row_len) {
        var s = lane_sums4[lid];
        for (var l = 1u; l < 16u; l++) { s += lane_sums4[l * 16u + lid]; }
        partial4[wid.y * p.row_len + col] = s;
    }
}
