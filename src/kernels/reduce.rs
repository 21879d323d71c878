//! Reductions: column sums (bias gradients), full sums, means and sums of squares (gradient
//! norms), and their backward passes (shaders/reduce.wgsl).

use crate::gpu::{grid_1d, Access::*, Kernel, Recorder, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    chunk: u32,
    mode: u32,
    scale: f32,
    beta: f32,
    n: u32,
    accumulate: u32,
    x_offset: u32,
    _pad: [u32; 3],
}

const B: &[(u32, crate::gpu::Access)] = &[(1, Read), (2, Read), (3, ReadWrite)];
/// Column sums over chunks of rows.
pub static SUM_ROWS: Kernel = Kernel::new::<Params>("reduce", "sum_rows", B);
/// [`SUM_ROWS`] for GPUs, vec4 columns with 16 row lanes a column.
pub static SUM_ROWS4: Kernel =
    Kernel::new::<Params>("reduce", "sum_rows4", &[(1, Read), (3, ReadWrite)]);
/// Workgroup partial sums of x or x².
pub static REDUCE_FULL: Kernel = Kernel::new::<Params>("reduce", "reduce_full", B);
/// x *= min(1, max_norm / (‖·‖ + 1e-6)) given a sum of squares.
pub static CLIP_BY_NORM: Kernel =
    Kernel::new::<Params>("reduce", "clip_by_norm", &[(2, Read), (3, ReadWrite)]);
/// dx = g·scale (·2x).
pub static REDUCE_BACKWARD: Kernel = Kernel::new::<Params>("reduce", "reduce_backward", B);

const ROW_CHUNK: usize = 256;
const SINGLE_PASS_ROWS: usize = 1024;
const FULL_CHUNK: usize = 2048;

/// What a full reduction sums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduce {
    /// Σ x
    Sum,
    /// Σ x / n
    Mean,
    /// Σ x²
    SumSquares,
    /// max x (no backward: used for numerical shifts only)
    Max,
}

/// `out[c]` (+)= scale·Σ_r `x[r, c]` for x viewed as `[rows, cols]`.
pub fn sum_rows(
    rec: &mut Recorder,
    out: &Tensor,
    x: &Tensor,
    rows: usize,
    cols: usize,
    scale: f32,
    accumulate: bool,
) {
    assert_eq!(x.numel(), rows * cols, "sum_rows: x is not [rows, cols]");
    sum_rows_at(rec, out, x, 0, rows, cols, scale, accumulate)
}

/// [`sum_rows`] over the [rows, cols] block of x that starts at element `offset`.
#[allow(clippy::too_many_arguments)]
pub fn sum_rows_at(
    rec: &mut Recorder,
    out: &Tensor,
    x: &Tensor,
    offset: usize,
    rows: usize,
    cols: usize,
    scale: f32,
    accumulate: bool,
) {
    assert!(
        offset + rows * cols <= x.numel(),
        "sum_rows: block outside x"
    );
    assert_eq!(out.numel(), cols, "sum_rows: out is not [cols]");
    // CPU drivers keep the one-thread-a-column kernel: a lane there is a SIMD slot, and one
    // long loop with no barrier is what runs fast.
    let vec4 = !rec.cpu_layouts()
        && [cols, offset, x.numel()]
            .iter()
            .all(|n| n.is_multiple_of(4));
    let dispatch = |rec: &mut Recorder, p: &Params, x: &Tensor, out: &Tensor, chunks: usize| {
        let grid = [cols.div_ceil(64) as u32, chunks as u32, 1];
        if vec4 {
            rec.dispatch(&SUM_ROWS4, p, &[x, out], grid);
        } else {
            let dummy = rec.gpu().dummy_read.clone();
            rec.dispatch(&SUM_ROWS, p, &[x, &dummy, out], grid);
        }
    };
    if rows <= SINGLE_PASS_ROWS {
        let p = Params {
            rows: rows as u32,
            cols: cols as u32,
            chunk: rows.max(1) as u32,
            mode: 0,
            scale,
            beta: if accumulate { 1.0 } else { 0.0 },
            n: 0,
            accumulate: 0,
            x_offset: offset as u32,
            _pad: [0; 3],
        };
        if rows == 0 {
            if !accumulate {
                rec.clear(out);
            }
            return;
        }
        dispatch(rec, &p, x, out, 1);
        return;
    }
    let chunks = rows.div_ceil(ROW_CHUNK);
    let partial = rec.gpu().empty(&[chunks, cols]);
    let p = Params {
        rows: rows as u32,
        cols: cols as u32,
        chunk: ROW_CHUNK as u32,
        mode: 0,
        scale: 1.0,
        beta: 0.0,
        n: 0,
        accumulate: 0,
        x_offset: offset as u32,
        _pad: [0; 3],
    };
    dispatch(rec, &p, x, &partial, chunks);
    sum_rows(rec, out, &partial, chunks, cols, scale, accumulate);
}

/// `out[0]` (+)= the reduction of all of x.
pub fn reduce(rec: &mut Recorder, out: &Tensor, x: &Tensor, kind: Reduce, accumulate: bool) {
    assert_eq!(out.numel(), 1, "reduce: out must hold one value");
    let n = x.numel();
    let scale = match kind {
        Reduce::Mean => 1.0 / n.max(1) as f32,
        _ => 1.0,
    };
    let mode = match kind {
        Reduce::SumSquares => 1,
        Reduce::Max => 2,
        _ => 0,
    };
    assert!(
        !(accumulate && kind == Reduce::Max),
        "reduce: a max does not accumulate"
    );
    reduce_pass(rec, out, x, n, mode, scale, accumulate);
}

fn reduce_pass(
    rec: &mut Recorder,
    out: &Tensor,
    x: &Tensor,
    n: usize,
    mode: u32,
    scale: f32,
    accumulate: bool,
) {
    let groups = n.div_ceil(FULL_CHUNK).max(1);
    let dummy = rec.gpu().dummy_read.clone();
    if groups == 1 {
        let p = Params {
            rows: 0,
            cols: 0,
            chunk: FULL_CHUNK as u32,
            mode,
            scale,
            beta: if accumulate { 1.0 } else { 0.0 },
            n: n as u32,
            accumulate: 0,
            x_offset: 0,
            _pad: [0; 3],
        };
        rec.dispatch(&REDUCE_FULL, &p, &[x, &dummy, out], [1, 1, 1]);
        return;
    }
    let partial = rec.gpu().empty(&[groups]);
    // Piecewise when x exceeds one storage binding: pieces are whole multiples of FULL_CHUNK,
    // so the partials (and the result) are the same as from one dispatch.
    for (start, len) in rec.gpu().binding_chunks(n) {
        let p = Params {
            rows: 0,
            cols: 0,
            chunk: FULL_CHUNK as u32,
            mode,
            scale: 1.0,
            beta: 0.0,
            n: len as u32,
            accumulate: 0,
            x_offset: 0,
            _pad: [0; 3],
        };
        let g0 = start / FULL_CHUNK;
        let g = len.div_ceil(FULL_CHUNK);
        rec.dispatch(
            &REDUCE_FULL,
            &p,
            &[&x.view(start, &[len]), &dummy, &partial.view(g0, &[g])],
            grid_1d(g),
        );
    }
    // Partial sums of x² are plain sums in the next pass; partial maxima stay maxima.
    let next = if mode == 2 { 2 } else { 0 };
    reduce_pass(rec, out, &partial, groups, next, scale, accumulate);
}

/// Backward of [`reduce`]: dx (+)= `g[0]`·(1 | 1/n | 2x).
pub fn reduce_backward(
    rec: &mut Recorder,
    dx: &Tensor,
    g: &Tensor,
    x: &Tensor,
    kind: Reduce,
    accumulate: bool,
) {
    let n = x.numel();
    assert_eq!(dx.numel(), n, "reduce_backward: dx and x sizes");
    assert_eq!(g.numel(), 1, "reduce_backward: g must hold one value");
    let p = Params {
        rows: 0,
        cols: 0,
        chunk: 0,
        mode: (kind == Reduce::SumSquares) as u32,
        scale: if kind == Reduce::Mean {
            1.0 / n.max(1) as f32
        } else {
            1.0
        },
        beta: 0.0,
        n: n as u32,
        accumulate: super::flag(accumulate),
        x_offset: 0,
        _pad: [0; 3],
    };
    rec.dispatch(&REDUCE_BACKWARD, &p, &[x, g, dx], grid_1d(n.div_ceil(256)));
}

/// Scales `x` so its L2 norm is at most `max_norm` (torch.nn.utils.clip_grad_norm_), on the GPU;
/// returns the sum of squares before clipping `[1]`.
pub fn clip_grad_norm(rec: &mut Recorder, x: &Tensor, max_norm: f32) -> Tensor {
    let ss = rec.gpu().empty(&[1]);
    reduce(rec, &ss, x, Reduce::SumSquares, false);
    for (start, len) in rec.gpu().binding_chunks(x.numel()) {
        let p = Params {
            rows: 0,
            cols: 0,
            chunk: 0,
            mode: 0,
            scale: max_norm,
            beta: 0.0,
            n: len as u32,
            accumulate: 0,
            x_offset: 0,
            _pad: [0; 3],
        };
        rec.dispatch(
            &CLIP_BY_NORM,
            &p,
            &[&ss, &x.view(start, &[len])],
            grid_1d(len.div_ceil(256)),
        );
    }
    ss
}
