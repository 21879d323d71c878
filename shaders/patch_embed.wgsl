// Patch embedding = a p×p, stride-p convolution, done as im2col + matmul (matmul.wgsl):
//   cols[b·P + py·gw + px, c·p·p + ky·p + kx] = x[b, c, py·p + ky, px·p + kx]
//   y = cols · Wᵀ + bias, W the conv weight viewed as [D, C·p·p].
// Stride equals kernel, so im2col is a permutation and its backward (col2im) has no overlaps:
//   dx[b, c, py·p + ky, px·p + kx] = dcols[...]; pixels outside the patch grid get 0.
// patch_im2col: thread per cols element. patch_col2im: thread per pixel.
// Dispatch: grid_1d(ceil(count / 256)).

struct Params {
    batch: u32,
    channels: u32,
    height: u32,
    width: u32,
    psize: u32,
    grid_h: u32,
    grid_w: u32,
    accumulate: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<S>;
@group(0) @binding(2) var<storage, read_write> dst: array<S>;

@compute @workgroup_size(256)
fn patch_im2col(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let idx = group_index(wid, nwg) * 256u + lid;
    let pp = p.psize * p.psize;
    let width = p.channels * pp;
    let n_patches = p.grid_h * p.grid_w;
    if (idx >= p.batch * n_patches * width) { return; }
    let col = idx % width;
    let row = idx / width;
    let b = row / n_patches;
    let pi = row % n_patches;
    let py = pi / p.grid_w;
    let px = pi % p.grid_w;
    let c = col / pp;
    let ky = (col % pp) / p.psize;
    let kx = col % p.psize;
    let y = py * p.psize + ky;
    let x = px * p.psize + kx;
    dst[idx] = S(f32(src[((b * p.channels + c) * p.height + y) * p.width + x]));
}

@compute @workgroup_size(256)
fn patch_col2im(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let idx = group_index(wid, nwg) * 256u + lid;
    if (idx >= p.batch * p.channels * p.height * p.width) { return; }
    let x = idx % p.width;
    let y = (idx / p.width) % p.height;
    let c = (idx / (p.width * p.height)) % p.channels;
    let b = idx / (p.width * p.height * p.channels);
    let py = y / p.psize;
    let px = x / p.psize;
    var g = 0.0;
    if (py < p.grid_h && px < p.grid_w) {
        let pp = p.psize * p.psize;
        let row = b * p.grid_h * p.grid_w + py * p.grid_w + px;
        let col = c * pp + (y % p.psize) * p.psize + (x % p.psize);
        g = f32(src[row * p.channels * pp + col]);
    }
    if (p.accumulate != 0u) { g += f32(dst[idx]); }
    dst[idx] = S(g);
}
