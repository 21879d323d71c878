// Token assembly of a DINOv2 ViT: [CLS, registers, patches] with the mask token and position
// embeddings (registers get none, masked patches take the mask token before the position is added).
// DINOv3 adds no positions (use_pos = 0); its pos bindings are then placeholders.
//   out[b, 0]       = cls + pos_cls
//   out[b, 1 + r]   = regs[r]
//   out[b, 1+R+p]   = (mask[b, p] ? mask_token : patches[b, p]) + pos_patch[p]
// pos_cls and pos_patch are element offsets into their buffers: the stored table [1+M², D]
// serves both (offsets 0 and D) when no resize is needed, otherwise pos_patch is the resized grid.
// tokens_forward: thread per output element. Dispatch grid_1d(ceil(B·N·D / 256)).
// tokens_backward_patches: d_patches[b, p] = mask ? 0 : dout[b, 1+R+p]. Dispatch grid_1d(ceil(B·P·D / 256)).
// tokens_backward_params (+=): thread per (token row t, channel c) summing over the batch:
//   t = 0 → d_cls and d_pos_cls; 1 ≤ t ≤ R → d_regs; t > R → d_pos_patch.
//   Dispatch grid_1d(ceil(N·D / 256)).
// tokens_backward_mask: d_mask_token's partial sums over the masked patches, out[k, c] = Σ
//   dout[b, 1+R+pi, c] over the masked (b, pi) among patch rows k·256 … k·256+255 of the B·P
//   (the launcher adds their column sums to d_mask_token): a thread walking all B·P rows alone
//   took a millisecond at batch 128. Dispatch (ceil(D / 64), ceil(B·P / 256), 1), 64 threads.

struct Params {
    batch: u32,
    n_patches: u32,
    dim: u32,
    registers: u32,
    use_mask: u32,
    pos_cls_off: u32,
    pos_patch_off: u32,
    // tokens_backward_params: 1 when the CLS and patch positions share one tensor (the stored
    // table); d_pos_patch then receives both, since WebGPU forbids two writable views of it.
    pos_shared: u32,
    // 0: no position embeddings at all (DINOv3: rotary positions inside attention instead).
    use_pos: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> patches: array<S>;
@group(0) @binding(2) var<storage, read> cls: array<S>;
@group(0) @binding(3) var<storage, read> regs: array<S>;
@group(0) @binding(4) var<storage, read> mask_token: array<S>;
@group(0) @binding(5) var<storage, read> pos_cls: array<S>;
@group(0) @binding(6) var<storage, read> pos_patch: array<S>;
@group(0) @binding(7) var<storage, read> mask: array<f32>;
@group(0) @binding(8) var<storage, read_write> out: array<S>;
// Backward bindings.
@group(0) @binding(9) var<storage, read> dout: array<S>;
@group(0) @binding(10) var<storage, read_write> d_patches: array<S>;
@group(0) @binding(11) var<storage, read_write> d_cls: array<S>;
@group(0) @binding(12) var<storage, read_write> d_regs: array<S>;
@group(0) @binding(13) var<storage, read_write> d_pos_cls: array<S>;
@group(0) @binding(14) var<storage, read_write> d_pos_patch: array<S>;

fn is_masked(b: u32, pi: u32) -> bool {
    return p.use_mask != 0u && mask[b * p.n_patches + pi] != 0.0;
}

@compute @workgroup_size(256)
fn tokens_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let idx = group_index(wid, nwg) * 256u + lid;
    let n = 1u + p.registers + p.n_patches;
    if (idx >= p.batch * n * p.dim) { return; }
    let c = idx % p.dim;
    let t = (idx / p.dim) % n;
    let b = idx / (p.dim * n);
    var v = 0.0;
    if (t == 0u) {
        v = f32(cls[c]);
        if (p.use_pos != 0u) { v += f32(pos_cls[p.pos_cls_off + c]); }
    } else if (t <= p.registers) {
        v = f32(regs[(t - 1u) * p.dim + c]);
    } else {
        let pi = t - 1u - p.registers;
        if (is_masked(b, pi)) {
            v = f32(mask_token[c]);
        } else {
            v = f32(patches[(b * p.n_patches + pi) * p.dim + c]);
        }
        if (p.use_pos != 0u) { v += f32(pos_patch[p.pos_patch_off + pi * p.dim + c]); }
    }
    out[idx] = S(v);
}

@compute @workgroup_size(256)
fn tokens_backward_patches(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_index) lid: u32) {
    let idx = group_index(wid, nwg) * 256u + lid;
    if (idx >= p.batch * p.n_patches * p.dim) { return; }
    let c = idx % p.dim;
    let pi = (idx / p.dim) % p.n_patches;
    let b = idx / (p.dim * p.n_patches);
    let n = 1u + p.registers + p.n_patches;
    var g = 0.0;
    if (!is_masked(b, pi)) {
        g = f32(dout[(b * n + 1u + p.registers + pi) * p.dim + c]);
    }
    d_patches[idx] = S(g);
}

@compute @workgroup_size(256)
fn tokens_backward_params(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let idx = group_index(wid, nwg) * 256u + lid;
    let n = 1u + p.registers + p.n_patches;
    if (idx >= n * p.dim) { return; }
    let c = idx % p.dim;
    let t = idx / p.dim;
    var s = 0.0;
    for (var b = 0u; b < p.batch; b++) { s += f32(dout[(b * n + t) * p.dim + c]); }
    if (t == 0u) {
        d_cls[c] = S(f32(d_cls[c]) + (s));
        if (p.use_pos == 0u) {
            return;
        }
        if (p.pos_shared != 0u) {
            d_pos_patch[p.pos_cls_off + c] = S(f32(d_pos_patch[p.pos_cls_off + c]) + (s));
        } else {
            d_pos_cls[p.pos_cls_off + c] = S(f32(d_pos_cls[p.pos_cls_off + c]) + (s));
        }
    } else if (t <= p.registers) {
        d_regs[(t - 1u) * p.dim + c] = S(f32(d_regs[(t - 1u) * p.dim + c]) + (s));
    } else if (p.use_pos != 0u) {
        d_pos_patch[p.pos_patch_off + (t - 1u - p.registers) * p.dim + c] = S(f32(d_pos_patch[p.pos_patch_off + (t - 1u - p.registers) * p.dim + c]) + (s));
    }
}

@compute @workgroup_size(64)
fn tokens_backward_mask(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = wid.x * 64u + lid;
    if (c >= p.dim) { return; }
    let n = 1u + p.registers + p.n_patches;
    let r0 = wid.y * 256u;
    let r1 = min(r0 + 256u, p.batch * p.n_patches);
    var s = 0.0;
    for (var r = r0; r < r1; r++) {
        let b = r / p.n_patches;
        let pi = r % p.n_patches;
        if (is_masked(b, pi)) { s += f32(dout[(b * n + 1u + p.registers + pi) * p.dim + c]); }
    }
    out[wid.y * p.dim + c] = S(s);
}
