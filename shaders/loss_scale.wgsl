// Dynamic loss scaling for mixed-precision backward passes (the rule of torch.amp.GradScaler),
// kept on the GPU so that no step waits for a readback. `state` holds
//   [0] S, the scale: the backbone's incoming gradient is multiplied by it, so that small
//       gradients stay above f16's subnormals in the f16 products;
//   [1] finite steps in a row since S last changed;
//   [2] steps skipped so far;
//   [3] 1 when this step overflowed (AdamW then skips it), else 0;
//   [4] the factor this step's gradients are unscaled with: 1/S, or 0 when it overflowed.
// flag[0] is raised (non-zero) by cast_to_s_checked when a scaled gradient leaves f16's range.
//
// loss_scale_update: one invocation, after the backward pass. The step overflowed when the flag
//   is raised or the scaled gradients' sum of squares ss[0] is not finite: then S halves (not
//   below 1), the count restarts and the step is skipped. Otherwise, after `interval` finite
//   steps in a row, S doubles (up to max_scale). Clears the flag. Dispatch: (1, 1, 1).
// scale_by_state: x[i] *= state[p.index]; a factor of 0 stores 0 (inf · 0 would be NaN).
//   Dispatch: grid_1d(ceil(n / 256)).

struct Params {
    n: u32,
    index: u32,
    interval: u32,
    _pad0: u32,
    max_scale: f32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> factor: array<f32>;
@group(0) @binding(3) var<storage, read_write> state: array<f32>;
@group(0) @binding(4) var<storage, read_write> flag: array<atomic<u32>>;
@group(0) @binding(5) var<storage, read> ss: array<f32>;

fn is_finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
}

@compute @workgroup_size(1)
fn loss_scale_update() {
    let overflow = atomicLoad(&flag[0]) != 0u || !is_finite(ss[0]);
    atomicStore(&flag[0], 0u);
    let s = state[0];
    if (overflow) {
        state[0] = max(0.5 * s, 1.0);
        state[1] = 0.0;
        state[2] = state[2] + 1.0;
        state[3] = 1.0;
        state[4] = 0.0;
        return;
    }
    state[3] = 0.0;
    state[4] = 1.0 / s;
    let good = state[1] + 1.0;
    if (good >= f32(p.interval)) {
        state[0] = min(2.0 * s, p.max_scale);
        state[1] = 0.0;
    } else {
        state[1] = good;
    }
}

@compute @workgroup_size(256)
fn scale_by_state(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * 256u + lid;
    if (i >= p.n) { return; }
    let f = factor[p.index];
    x[i] = select(x[i] * f, 0.0, f == 0.0);
}
