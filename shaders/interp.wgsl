// Separable resize of a grid (the position-embedding table) with precomputed per-axis weight
// matrices wy [h_out, h_in] and wx [w_out, w_in] (bicubic, plain or antialiased: the weights are
// built on the CPU by src/cpu/interp.rs, so both modes share these kernels):
//   y[c, i, j] = Σ_a Σ_b wy[i, a]·wx[j, b]·x[c, a, b]
//   dx[c, a, b] (+)= Σ_i Σ_j wy[i, a]·wx[j, b]·dy[c, i, j]
// Element (c, r, s) of grid n lives at off + n·bs + c·cs + (r·w + s)·ss (x_off skips a position
// table's CLS row; bs steps from one image's grid to the next): channel-first [C, H, W] has
// cs = H·W, ss = 1; channel-last [H·W, C] (a position table, an image's patch tokens) has cs = 1,
// ss = C.
// interp_forward: thread per output element. interp_backward: thread per input element.
// Dispatch: grid_1d(ceil(count / 256)).

struct Params {
    channels: u32,
    h_in: u32,
    w_in: u32,
    h_out: u32,
    w_out: u32,
    x_cs: u32,
    x_ss: u32,
    y_cs: u32,
    y_ss: u32,
    accumulate: u32,
    x_off: u32,
    y_off: u32,
    batch: u32,
    x_bs: u32,
    y_bs: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<S>;
@group(0) @binding(2) var<storage, read> wy: array<f32>;
@group(0) @binding(3) var<storage, read> wx: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<S>;

@compute @workgroup_size(256)
fn interp_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let idx = group_index(wid, nwg) * 256u + lid;
    let per = p.channels * p.h_out * p.w_out;
    if (idx >= p.batch * per) { return; }
    let n = idx / per;
    let c = (idx % per) / (p.h_out * p.w_out);
    let i = (idx / p.w_out) % p.h_out;
    let j = idx % p.w_out;
    let x0 = p.x_off + n * p.x_bs;
    var acc = 0.0;
    for (var a = 0u; a < p.h_in; a++) {
        let wa = wy[i * p.h_in + a];
        if (wa == 0.0) { continue; }
        var row = 0.0;
        for (var b = 0u; b < p.w_in; b++) {
            row = fma(wx[j * p.w_in + b], f32(src[x0 + c * p.x_cs + (a * p.w_in + b) * p.x_ss]), row);
        }
        acc = fma(wa, row, acc);
    }
    dst[p.y_off + n * p.y_bs + c * p.y_cs + (i * p.w_out + j) * p.y_ss] = S(acc);
}

@compute @workgroup_size(256)
fn interp_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let idx = group_index(wid, nwg) * 256u + lid;
    let per = p.channels * p.h_in * p.w_in;
    if (idx >= p.batch * per) { return; }
    let n = idx / per;
    let c = (idx % per) / (p.h_in * p.w_in);
    let a = (idx / p.w_in) % p.h_in;
    let b = idx % p.w_in;
    let y0 = p.y_off + n * p.y_bs;
    var acc = 0.0;
    for (var i = 0u; i < p.h_out; i++) {
        let wa = wy[i * p.h_in + a];
        if (wa == 0.0) { continue; }
        var row = 0.0;
        for (var j = 0u; j < p.w_out; j++) {
            row = fma(wx[j * p.w_in + b], f32(src[y0 + c * p.y_cs + (i * p.w_out + j) * p.y_ss]), row);
        }
        acc = fma(wa, row, acc);
    }
    let o = p.x_off + n * p.x_bs + c * p.x_cs + (a * p.w_in + b) * p.x_ss;
    if (p.accumulate != 0u) { acc += f32(dst[o]); }
    dst[o] = S(acc);
}
