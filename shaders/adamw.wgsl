// AdamW (decoupled weight decay, as torch.optim.AdamW) over one flat parameter buffer.
// Parameter groups are segments [start, end) with their own lr and weight-decay multipliers
// (layer-wise lr decay, no decay on norms and biases); each element finds its segment by binary
// search, so one dispatch updates the whole model.
//   p ← p − lr·wd·p;  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
//   p ← p − lr · (m / bc1) / (sqrt(v / bc2) + eps),   bc1 = 1 − β1^t, bc2 = 1 − β2^t
// Elements outside every segment are left alone. Dispatch: grid_1d(ceil(n / 256)), once per
// piece when the flat buffer is larger than one storage binding.
// adamw_step_v4: the same on vec4s (n counted in vec4s; n and base multiples of 4): one segment
// search per vec4, a search per element only where a segment boundary falls inside it.
// With p.gate = i + 1 the step is skipped when skip[i] ≠ 0 (a mixed-precision step whose
// gradients overflowed, see loss_scale.wgsl); p.gate = 0 never skips.

struct Params {
    n: u32,
    n_segments: u32,
    base: u32,
    gate: u32,
    lr: f32,
    weight_decay: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    bc1: f32,
    bc2: f32,
    _pad2: u32,
}

// One parameter group: start and end element (as u32 bits), lr and weight-decay multipliers.
struct Segment {
    start: u32,
    end: u32,
    lr_scale: f32,
    wd_scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> m1: array<f32>;
@group(0) @binding(4) var<storage, read_write> m2: array<f32>;
@group(0) @binding(5) var<storage, read> segments: array<Segment>;
@group(0) @binding(6) var<storage, read> skip: array<f32>;
// The same buffers seen as vec4 (no entry point uses both views).
@group(0) @binding(1) var<storage, read_write> param4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> grad4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> m14: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> m24: array<vec4<f32>>;

fn skipped() -> bool {
    return p.gate != 0u && skip[p.gate - 1u] != 0.0;
}

// The last segment whose start <= gi (whole-buffer index).
fn find_segment(gi: u32) -> Segment {
    var lo = 0u;
    var hi = p.n_segments;
    while (hi - lo > 1u) {
        let mid = (lo + hi) / 2u;
        if (segments[mid].start <= gi) { lo = mid; } else { hi = mid; }
    }
    return segments[lo];
}

@compute @workgroup_size(256)
fn adamw_step(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * 256u + lid;
    if (i >= p.n || skipped()) { return; }
    // The buffers may be a piece of the whole flat buffer starting at element p.base; segments
    // are in whole-buffer indices.
    let gi = p.base + i;
    let s = find_segment(gi);
    if (gi < s.start || gi >= s.end) { return; }
    let lr = p.lr * s.lr_scale;
    let wd = p.weight_decay * s.wd_scale;
    let g = grad[i];
    var w = param[i] * (1.0 - lr * wd);
    let m = p.beta1 * m1[i] + (1.0 - p.beta1) * g;
    let v = p.beta2 * m2[i] + (1.0 - p.beta2) * g * g;
    m1[i] = m;
    m2[i] = v;
    w -= lr * (m / p.bc1) / (sqrt(v / p.bc2) + p.eps);
    param[i] = w;
}

// Here p.n counts vec4s.
@compute @workgroup_size(256)
fn adamw_step_v4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * 256u + lid;
    if (i >= p.n || skipped()) { return; }
    let gi = p.base + 4u * i;
    // Per element: its lr and weight-decay multipliers, and whether any segment holds it.
    var lr_scale = vec4<f32>(0.0);
    var wd_scale = vec4<f32>(0.0);
    var inside = vec4<bool>(false);
    let s = find_segment(gi);
    if (gi >= s.start && gi + 3u < s.end) {
        lr_scale = vec4<f32>(s.lr_scale);
        wd_scale = vec4<f32>(s.wd_scale);
        inside = vec4<bool>(true);
    } else {
        for (var j = 0u; j < 4u; j++) {
            let sj = find_segment(gi + j);
            lr_scale[j] = sj.lr_scale;
            wd_scale[j] = sj.wd_scale;
            inside[j] = gi + j >= sj.start && gi + j < sj.end;
        }
    }
    let lr = p.lr * lr_scale;
    let wd = p.weight_decay * wd_scale;
    let g = grad4[i];
    let w0 = param4[i];
    let m0 = m14[i];
    let v0 = m24[i];
    var w = w0 * (1.0 - lr * wd);
    let m = p.beta1 * m0 + (1.0 - p.beta1) * g;
    let v = p.beta2 * v0 + (1.0 - p.beta2) * g * g;
    w -= lr * (m / p.bc1) / (sqrt(v / p.bc2) + p.eps);
    m14[i] = select(m0, m, inside);
    m24[i] = select(v0, v, inside);
    param4[i] = select(w0, w, inside);
}
