// Exact (erf) GELU, y = x·Φ(x), elementwise.
// gelu_forward:  y = gelu(x)
// gelu_backward: dx = dy·gelu'(x)   (accumulate=1: dx += ...), reads the forward input x.
// Dispatch: grid_1d(ceil(n / 256)).

struct Params {
    n: u32,
    accumulate: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn gelu_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * 256u + lid;
    if (i >= p.n) { return; }
    out[i] = gelu_f32(x[i]);
}

@compute @workgroup_size(256)
fn gelu_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * 256u + lid;
    if (i >= p.n) { return; }
    var g = dy[i] * gelu_grad_f32(x[i]);
    if (p.accumulate != 0u) { g += out[i]; }
    out[i] = g;
}
