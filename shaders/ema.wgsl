// Teacher EMA over flat parameter buffers: teacher = m·teacher + (1 − m)·student.
// Not differentiated (an update, not an op in the graph).
// ema_update_v4: the same on vec4s (n counted in vec4s) where n is a multiple of 4.
// Dispatch: grid_1d(ceil(n / 256)).

struct Params {
    n: u32,
    momentum: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> student: array<f32>;
@group(0) @binding(2) var<storage, read_write> teacher: array<f32>;
// The same buffers seen as vec4 (no entry point uses both views).
@group(0) @binding(1) var<storage, read> student4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> teacher4: array<vec4<f32>>;

@compute @workgroup_size(256)
fn ema_update(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * 256u + lid;
    if (i >= p.n) { return; }
    let t = teacher[i];
    teacher[i] = t + (1.0 - p.momentum) * (student[i] - t);
}

@compute @workgroup_size(256)
fn ema_update_v4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * 256u + lid;
    if (i >= p.n) { return; }
    let t = teacher4[i];
    teacher4[i] = t + (1.0 - p.momentum) * (student4[i] - t);
}
