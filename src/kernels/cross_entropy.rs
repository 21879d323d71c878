//! Soft-target cross-entropy with temperature and optional row weights
//! (shaders/cross_entropy.wgsl).

use super::reduce::{reduce, Reduce};
use crate::gpu::{grid_rows, Access::*, Kernel, Recorder, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    accumulate: u32,
    use_row_weight: u32,
    inv_temp: f32,
    scale: f32,
    lanes: u32,
    _pad: u32,
}

const B: &[(u32, crate::gpu::Access)] =
    &[(1, Read), (2, Read), (3, Read), (4, Read), (5, ReadWrite)];
/// loss per row.
pub static CE_FORWARD: Kernel = Kernel::new::<Params>("cross_entropy", "cross_entropy_forward", B);
/// d loss / d logits.
pub static CE_BACKWARD: Kernel =
    Kernel::new::<Params>("cross_entropy", "cross_entropy_backward", B);

/// Rows this narrow or narrower get one invocation each: a segment's reductions would leave
/// most of its lanes idle.
pub const NARROW_COLS: usize = 32;

/// Invocations per row, and the grid, for `rows` rows of `cols` columns.
fn layout(rec: &Recorder, rows: usize, cols: usize) -> (u32, [u32; 3]) {
    let lanes = if cols <= NARROW_COLS {
        1
    } else {
        super::row_lanes(rec, cols)
    };
    (lanes, grid_rows(rows.div_ceil(256 / lanes as usize)))
}

/// Options of one cross-entropy term.
#[derive(Clone, Copy, Debug)]
pub struct CrossEntropy<'a> {
    /// Temperature T of the logits (1 for plain cross-entropy; DINO's student uses 0.1).
    pub temperature: f32,
    /// Multiplier of every row (1/rows for a mean).
    pub scale: f32,
    /// Optional per-row weights `[rows]`.
    pub row_weight: Option<&'a Tensor>,
}

/// loss_per_row `[rows]` = −Σ t·log_softmax(s/T); `loss` `[1]` (+)= scale·Σ_r w_r·loss_r when
/// given (without row weights).
pub fn cross_entropy_forward(
    rec: &mut Recorder,
    loss_per_row: &Tensor,
    loss: Option<&Tensor>,
    logits: &Tensor,
    target: &Tensor,
    cols: usize,
    opt: CrossEntropy,
) {
    let rows = logits.numel() / cols;
    assert!(
        rows * cols == logits.numel() && target.numel() == logits.numel(),
        "cross_entropy: shapes"
    );
    assert_eq!(
        loss_per_row.numel(),
        rows,
        "cross_entropy: loss_per_row shape"
    );
    let gpu = rec.gpu();
    let rw = opt
        .row_weight
        .cloned()
        .unwrap_or_else(|| gpu.dummy_read.clone());
    let dummy = gpu.dummy_read.clone();
    let (lanes, grid) = layout(rec, rows, cols);
    let p = Params {
        rows: rows as u32,
        cols: cols as u32,
        accumulate: 0,
        use_row_weight: opt.row_weight.is_some() as u32,
        inv_temp: 1.0 / opt.temperature,
        scale: opt.scale,
        lanes,
        _pad: 0,
    };
    rec.dispatch(
        &CE_FORWARD,
        &p,
        &[logits, target, &rw, &dummy, loss_per_row],
        grid,
    );
    if let Some(loss) = loss {
        assert!(
            opt.row_weight.is_none(),
            "cross_entropy: weighted totals are the caller's"
        );
        let tmp = rec.gpu().empty(&[1]);
        reduce(rec, &tmp, loss_per_row, Reduce::Sum, false);
        super::elementwise::axpby(rec, loss, &tmp, opt.scale, 0.0);
    }
}

/// dlogits (+)= `upstream[0]`·scale·w_r/T·(softmax(s/T)·Σt − t).
#[allow(clippy::too_many_arguments)]
pub fn cross_entropy_backward(
    rec: &mut Recorder,
    dlogits: &Tensor,
    upstream: &Tensor,
    logits: &Tensor,
    target: &Tensor,
    cols: usize,
    opt: CrossEntropy,
    accumulate: bool,
) {
    let rows = logits.numel() / cols;
    assert!(
        dlogits.numel() == logits.numel() && target.numel() == logits.numel(),
        "cross_entropy_backward: shapes"
    );
    assert_eq!(
        upstream.numel(),
        1,
        "cross_entropy_backward: upstream is a scalar"
    );
    let rw = opt
        .row_weight
        .cloned()
        .unwrap_or_else(|| rec.gpu().dummy_read.clone());
    let (lanes, grid) = layout(rec, rows, cols);
    let p = Params {
        rows: rows as u32,
        cols: cols as u32,
        accumulate: super::flag(accumulate),
        use_row_weight: opt.row_weight.is_some() as u32,
        inv_temp: 1.0 / opt.temperature,
        scale: opt.scale,
        lanes,
        _pad: 0,
    };
    rec.dispatch(
        &CE_BACKWARD,
        &p,
        &[logits, target, &rw, upstream, dlogits],
        grid,
    );
}
