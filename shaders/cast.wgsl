// Conversions between f32 tensors and tensors of the storage type S (f16 in the half variant):
// weights and pixels go in, features and maps come out.
// cast_to_s:   dst[i] = S(src32[i])   (rounds to nearest)
// cast_to_f32: dst32[i] = f32(src[i]) (exact)
// cast_to_s_checked: cast_to_s for loss-scaled gradients on their way into f16 products (S is
//   f16): a value that would round past f16's largest finite value (65504), or is not finite,
//   raises flag[0] and is stored as 0 (the step is skipped, see loss_scale.wgsl).
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

@group(0) @binding(5) var<storage, read_write> flag: array<atomic<u32>>;

@compute @workgroup_size(256)
fn cast_to_s_checked(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * 256u + lid;
    if (i >= p.n) { return; }
    let x = src32[i];
    // 0x477ff000 is 65520 as f32 bits: the first magnitude that rounds to f16 infinity. Infinities
    // and NaNs have larger bits.
    if ((bitcast<u32>(x) & 0x7fffffffu) >= 0x477ff000u) {
        atomicMax(&flag[0], 1u);
        dst[i] = S(0.0);
        return;
    }
    dst[i] = S(x);
}
