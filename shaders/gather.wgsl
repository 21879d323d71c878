// Row gather and its backward, for the masked patch tokens of the iBOT loss:
//   gather_rows:      out[r, c] = src[idx[r], c]
//   scatter_add_rows: dst[idx[r], c] += src[r, c]  (indices are distinct, so no two invocations
//                     write one element)
//   lookup_bytes:     dst[i] = src[((i / cols) % 3)·256 + byte i of bytes]  (rows = elements)
// idx holds row numbers as f32 (exact below 2^24). Dispatch grid_1d(ceil(rows·cols / 256)), for
// lookup_bytes grid_1d(ceil(rows / 256)).

struct Params {
    rows: u32,
    cols: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> idx: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
// 8-bit values four to a word, the first in the lowest byte.
@group(0) @binding(4) var<storage, read> bytes: array<u32>;

@compute @workgroup_size(256)
fn gather_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * 256u + lid;
    if (i >= p.rows * p.cols) { return; }
    let r = i / p.cols;
    let c = i % p.cols;
    dst[i] = src[u32(idx[r]) * p.cols + c];
}

@compute @workgroup_size(256)
fn scatter_add_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * 256u + lid;
    if (i >= p.rows * p.cols) { return; }
    let r = i / p.cols;
    let c = i % p.cols;
    let o = u32(idx[r]) * p.cols + c;
    dst[o] = dst[o] + src[i];
}

// Channel-first 8-bit pixels (planes of `cols` values, channels cycling through three) to the
// floats of a per-channel table of 256 entries: the normalisation of the loader's crops, done
// here so that a batch crosses to the GPU at a byte per value.
@compute @workgroup_size(256)
fn lookup_bytes(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = group_index(wid, nwg) * 256u + lid;
    if (i >= p.rows) { return; }
    let value = (bytes[i / 4u] >> (8u * (i % 4u))) & 255u;
    let channel = (i / p.cols) % 3u;
    dst[i] = src[channel * 256u + value];
}
