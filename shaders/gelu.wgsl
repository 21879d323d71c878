// Activations of the feed-forward layers.
// Exact (erf) GELU, y = x·Φ(x), elementwise.
// gelu_forward:  y = gelu(x)
// gelu_backward: dx = dy·gelu'(x)   (accumulate=1: dx += ...), reads the forward input x.
// Dispatch: grid_1d(ceil(n / 256)).
// gelu_forward_v4 / gelu_backward_v4: the same on n4 = n / 4 vec4s (n a multiple of 4), so each
// invocation moves 16 bytes per load; the launcher picks them. Dispatch: grid_1d(ceil(n4 / 256)).

// SwiGLU (ViT-g): x [rows, 2h] = [x1 | x2] → y [rows, h] = silu(x1)·x2, silu(v) = v·σ(v).
// swiglu_backward: dx1 = dy·x2·σ(x1)(1 + x1(1 − σ(x1))), dx2 = dy·silu(x1); n = rows·h.

struct Params {
    n: u32,
    accumulate: u32,
    hidden: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<S>;
@group(0) @binding(2) var<storage, read> dy: array<S>;
@group(0) @binding(3) var<storage, read_write> out: array<S>;
// The same buffers seen as vec4 (no entry point uses both views).
@group(0) @binding(1) var<storage, read> x4: array<vec4<S>>;
@group(0) @binding(2) var<storage, read> dy4: array<vec4<S>>;
@group(0) @binding(3) var<storage, read_write> out4: array<vec4<S>>;

@compute @workgroup_size(256)
fn gelu_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * 256u + lid;
    if (i >= p.n) { return; }
    out[i] = S(gelu_f32(f32(x[i])));
}

@compute @workgroup_size(256)
fn gelu_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * 256u + lid;
    if (i >= p.n) { return; }
    var g = f32(dy[i]) * gelu_grad_f32(f32(x[i]));
    if (p.accumulate != 0u) { g += f32(out[i]); }
    out[i] = S(g);
}

fn gelu4(v: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(gelu_f32(v.x), gelu_f32(v.y), gelu_f32(v.z), gelu_f32(v.w));
}

fn gelu_grad4(v: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(gelu_grad_f32(v.x), gelu_grad_f32(v.y), gelu_grad_f32(v.z), gelu_grad_f32(v.w));
}

// Here p.n counts vec4s.
@compute @workgroup_size(256)
fn gelu_forward_v4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * 256u + lid;
    if (i >= p.n) { return; }
    out4[i] = vec4<S>(gelu4(vec4<f32>(x4[i])));
}

// Here p.n counts vec4s.
@compute @workgroup_size(256)
fn gelu_backward_v4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * 256u + lid;
    if (i >= p.n) { return; }
    var g = vec4<f32>(dy4[i]) * gelu_grad4(vec4<f32>(x4[i]));
    if (p.accumulate != 0u) { g += vec4<f32>(out4[i]); }
    out4[i] = vec4<S>(g);
}

fn sigmoid_f32(v: f32) -> f32 {
    return 1.0 / (1.0 + exp(-v));
}

@compute @workgroup_size(256)
fn swiglu_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * 256u + lid;
    if (i >= p.n) { return; }
    let r = i / p.hidden;
    let j = i % p.hidden;
    let x1 = f32(x[r * 2u * p.hidden + j]);
    let x2 = f32(x[r * 2u * p.hidden + p.hidden + j]);
    out[i] = S(x1 * sigmoid_f32(x1) * x2);
}

// Here out is dx [rows, 2h]; thread per element of dy.
@compute @workgroup_size(256)
fn swiglu_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * 256u + lid;
    if (i >= p.n) { return; }
    let r = i / p.hidden;
    let j = i % p.hidden;
    let a = r * 2u * p.hidden + j;
    let b = a + p.hidden;
    let x1 = f32(x[a]);
    let x2 = f32(x[b]);
    let s = sigmoid_f32(x1);
    var d1 = f32(dy[i]) * x2 * s * (1.0 + x1 * (1.0 - s));
    var d2 = f32(dy[i]) * x1 * s;
    if (p.accumulate != 0u) {
        d1 += f32(out[a]);
        d2 += f32(out[b]);
    }
    out[a] = S(d1);
    out[b] = S(d2);
}
