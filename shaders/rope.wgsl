// Rotary position embedding (DINOv3), in place on the queries and keys of a fused qkv buffer
// [B, N, row] (q at column 0, k at column `dim`, head h at h·head_dim inside each). Only the
// patch tokens turn: tokens [prefix, prefix + P) of each image; the CLS and register tokens stay.
// With half = head_dim / 2, components j and j + half of one head form a pair:
//   forward: a' = a·cos[j] − b·sin[j],          b' = b·cos[j+half] + a·sin[j+half]
//   inverse (the transpose, for gradients):
//            a' = a·cos[j] + b·sin[j+half],     b' = b·cos[j+half] − a·sin[j]
// cos, sin: [P, head_dim]. Thread per (image, patch, q|k, head, j < half).
// Dispatch: grid_1d(ceil(B·P·2·heads·half / 256)).

struct Params {
    batch: u32,
    tokens: u32,
    prefix: u32,
    patches: u32,
    heads: u32,
    head_dim: u32,
    row: u32,
    dim: u32,
    inverse: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> cos_t: array<f32>;
@group(0) @binding(2) var<storage, read> sin_t: array<f32>;
@group(0) @binding(3) var<storage, read_write> x: array<S>;

@compute @workgroup_size(256)
fn rope_apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let idx = group_index(wid, nwg) * 256u + lid;
    let half = p.head_dim / 2u;
    if (idx >= p.batch * p.patches * 2u * p.heads * half) { return; }
    let j = idx % half;
    var r = idx / half;
    let h = r % p.heads;
    r = r / p.heads;
    let which = r % 2u;
    r = r / 2u;
    let pi = r % p.patches;
    let b = r / p.patches;
    let base = (b * p.tokens + p.prefix + pi) * p.row + which * p.dim + h * p.head_dim;
    let a = f32(x[base + j]);
    let c = f32(x[base + j + half]);
    let t = pi * p.head_dim;
    let cos_a = cos_t[t + j];
    let sin_a = sin_t[t + j];
    let cos_b = cos_t[t + j + half];
    let sin_b = sin_t[t + j + half];
    if (p.inverse != 0u) {
        x[base + j] = S(a * cos_a + c * sin_b);
        x[base + j + half] = S(c * cos_b - a * sin_a);
    } else {
        x[base + j] = S(a * cos_a - c * sin_a);
        x[base + j + half] = S(c * cos_b + a * sin_b);
    }
}
