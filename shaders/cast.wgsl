// Conversions between f32 tensors and tensors of the storage type S (f16 in the half variant):
// weights and pixels go in, features and maps come out.
// cast_to_s:   dst[i] = S(src32[i])   (rounds to nearest)
// cast_to_f32: dst32[i] = f32(src[i]) (exact)
// Dispatch: grid_1d(ceil(n / 256)).

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src32: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<S>;
@group(0) @binding(3) var<storage, read> src: array<S>;
@group(0) @binding(4) var<storage, read_write> dst32: array<f32>;

@compute @workgroup_size(256)
fn cast_to_s(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * 256u + lid;
    if (i >= p.n) { return; }
    dst[i] = S(src32[i]);
}

@compute @workgroup_size(256)
fn cast_to_f32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * 256u + lid;
    if (i >= p.n) { return; }
    dst32[i] = f32(src[i]);
}
