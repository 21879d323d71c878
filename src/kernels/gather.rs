//! Row gather and scatter-add, and the byte-table lookup that turns 8-bit crops into the
//! model's input (shaders/gather.wgsl).

use crate::gpu::{grid_1d, Access::*, Kernel, Recorder, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    _pad: [u32; 2],
}

const B: &[(u32, crate::gpu::Access)] = &[(1, Read), (2, Read), (3, ReadWrite)];
/// `out[r] = src[idx[r]]`.
pub static GATHER_ROWS: Kernel = Kernel::new::<Params>("gather", "gather_rows", B);
/// `dst[idx[r]] += src[r]`.
pub static SCATTER_ADD_ROWS: Kernel = Kernel::new::<Params>("gather", "scatter_add_rows", B);
/// `out[i] = table[channel of i][byte i]`.
pub static LOOKUP_BYTES: Kernel = Kernel::new::<Params>(
    "gather",
    "lookup_bytes",
    &[(1, Read), (3, ReadWrite), (4, Read)],
);

/// out `[n, cols]` = the rows `idx` `[n]` (row numbers as f32) of src `[_, cols]`.
pub fn gather_rows(rec: &mut Recorder, out: &Tensor, src: &Tensor, idx: &Tensor, cols: usize) {
    let n = idx.numel();
    assert_eq!(out.numel(), n * cols, "gather_rows: out shape");
    let p = Params {
        rows: n as u32,
        cols: cols as u32,
        _pad: [0; 2],
    };
    rec.dispatch(
        &GATHER_ROWS,
        &p,
        &[src, idx, out],
        grid_1d((n * cols).div_ceil(256)),
    );
}

/// `dst[idx[r]] += src[r]`: the backward of [`gather_rows`] (indices must be distinct).
pub fn scatter_add_rows(rec: &mut Recorder, dst: &Tensor, src: &Tensor, idx: &Tensor, cols: usize) {
    let n = idx.numel();
    assert_eq!(src.numel(), n * cols, "scatter_add_rows: src shape");
    let p = Params {
        rows: n as u32,
        cols: cols as u32,
        _pad: [0; 2],
    };
    rec.dispatch(
        &SCATTER_ADD_ROWS,
        &p,
        &[src, idx, dst],
        grid_1d((n * cols).div_ceil(256)),
    );
}

/// `out[i] = table[c·256 + bytes[i]]`, where c = (i / plane) mod 3: channel-first 8-bit pixels
/// (packed four to a word by [`crate::gpu::Gpu::upload_bytes_packed`]) through a per-channel
/// table `[3, 256]`. The CPU twin is [`crate::data::augment::normalize_bytes`] with its table.
pub fn lookup_bytes(
    rec: &mut Recorder,
    out: &Tensor,
    table: &Tensor,
    bytes: &Tensor,
    plane: usize,
) {
    let n = out.numel();
    assert_eq!(
        table.numel(),
        3 * 256,
        "lookup_bytes: the table is [3, 256]"
    );
    assert!(
        bytes.numel() * 4 >= n,
        "lookup_bytes: fewer bytes than outputs"
    );
    assert!(plane > 0, "lookup_bytes: empty planes");
    let p = Params {
        rows: n as u32,
        cols: plane as u32,
        _pad: [0; 2],
    };
    rec.dispatch(
        &LOOKUP_BYTES,
        &p,
        &[table, out, bytes],
        grid_1d(n.div_ceil(256)),
    );
}
