//! DINOv2 losses: teacher centering and Sinkhorn-Knopp targets, the DINO CLS-token loss and
//! KoLeo, forward and backward (shaders/losses.wgsl). iBOT is the weighted cross-entropy of
//! [`super::cross_entropy`] over masked patches gathered with [`super::gather`].

use super::reduce::{reduce, sum_rows, Reduce};
use super::{row_grid, row_lanes};
use crate::gpu::{grid_1d, grid_rows, Access::*, Kernel, Recorder, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable, Default)]
struct Params {
    rows: u32,
    cols: u32,
    batch: u32,
    n_teacher: u32,
    n_global: u32,
    accumulate: u32,
    n_samples: u32,
    last: u32,
    inv_temp: f32,
    scale: f32,
    lanes: u32,
    local_weight: f32,
}

const B4: &[(u32, crate::gpu::Access)] = &[(1, Read), (2, Read), (3, Read), (4, ReadWrite)];
const B5: &[(u32, crate::gpu::Access)] = &[
    (1, Read),
    (2, Read),
    (3, Read),
    (4, ReadWrite),
    (5, ReadWrite),
];
/// softmax((t − c)/τ).
pub static TEACHER_SOFTMAX: Kernel = Kernel::new::<Params>("losses", "teacher_softmax", B4);
/// Per student row: Σ over paired teacher crops of the cross-entropy.
pub static DINO_LOSS_FORWARD: Kernel = Kernel::new::<Params>("losses", "dino_loss_forward", B4);
/// d DINO loss / d student logits.
pub static DINO_LOSS_BACKWARD: Kernel = Kernel::new::<Params>("losses", "dino_loss_backward", B4);
/// log Q = t/τ.
pub static SINKHORN_INIT: Kernel = Kernel::new::<Params>("losses", "sinkhorn_init", B4);
/// Column log-sum-exp.
pub static SINKHORN_COL_LSE: Kernel = Kernel::new::<Params>(
    "losses",
    "sinkhorn_col_lse",
    &[(4, ReadWrite), (5, ReadWrite)],
);
/// log Q −= column lse + log K.
pub static SINKHORN_SUB_COLS: Kernel = Kernel::new::<Params>(
    "losses",
    "sinkhorn_sub_cols",
    &[(4, ReadWrite), (5, ReadWrite)],
);
/// Row normalisation (and exp on the last iteration).
pub static SINKHORN_ROWS: Kernel =
    Kernel::new::<Params>("losses", "sinkhorn_rows", &[(4, ReadWrite)]);
/// KoLeo per row, with neighbours and distances saved.
pub static KOLEO_FORWARD: Kernel = Kernel::new::<Params>("losses", "koleo_forward", B5);
/// KoLeo forward, an invocation per row (CPU layouts).
pub static KOLEO_FORWARD_ROWS: Kernel = Kernel::new::<Params>("losses", "koleo_forward_rows", B5);
/// d KoLeo / d x.
pub static KOLEO_BACKWARD: Kernel = Kernel::new::<Params>("losses", "koleo_backward", B5);

/// Teacher probabilities softmax((t − center)/τ) over rows of `k` prototypes (the DINO/iBOT
/// centering; the center is the one from before this step).
pub fn teacher_softmax(
    rec: &mut Recorder,
    out: &Tensor,
    logits: &Tensor,
    center: &Tensor,
    temp: f32,
) {
    let k = center.numel();
    let rows = logits.numel() / k;
    assert!(
        rows * k == logits.numel() && out.numel() == logits.numel(),
        "teacher_softmax: shapes"
    );
    let p = Params {
        rows: rows as u32,
        cols: k as u32,
        inv_temp: 1.0 / temp,
        lanes: row_lanes(rec, k),
        ..Default::default()
    };
    let dummy = rec.gpu().dummy_read.clone();
    rec.dispatch(
        &TEACHER_SOFTMAX,
        &p,
        &[logits, center, &dummy, out],
        row_grid(rec, rows, k),
    );
}

/// center ← m·center + (1 − m)·mean of the logit rows.
pub fn center_update(rec: &mut Recorder, center: &Tensor, logits: &Tensor, momentum: f32) {
    let k = center.numel();
    let rows = logits.numel() / k;
    let mean = rec.gpu().empty(&[k]);
    sum_rows(rec, &mean, logits, rows, k, 1.0 / rows as f32, false);
    super::elementwise::axpby(rec, center, &mean, 1.0 - momentum, momentum);
}

/// Sinkhorn-Knopp teacher targets (3 iterations in DINOv2) of logits [n, K]; rows of the result
/// sum to 1. Computed in the log domain, so any finite logits give finite targets.
pub fn sinkhorn(
    rec: &mut Recorder,
    out: &Tensor,
    logits: &Tensor,
    k: usize,
    temp: f32,
    iterations: usize,
) {
    let n = logits.numel() / k;
    assert!(
        n * k == logits.numel() && out.numel() == logits.numel(),
        "sinkhorn: shapes"
    );
    assert!(iterations >= 1, "sinkhorn: at least one iteration");
    let gpu = rec.gpu();
    let dummy = gpu.dummy_read.clone();
    let p = Params {
        rows: n as u32,
        cols: k as u32,
        n_samples: n as u32,
        inv_temp: 1.0 / temp,
        lanes: row_lanes(rec, k),
        ..Default::default()
    };
    let all = grid_1d((n * k).div_ceil(256));
    rec.dispatch(&SINKHORN_INIT, &p, &[logits, &dummy, &dummy, out], all);
    let col_lse = gpu.empty(&[k]);
    for it in 0..iterations {
        rec.dispatch(
            &SINKHORN_COL_LSE,
            &p,
            &[out, &col_lse],
            grid_1d(k.div_ceil(256)),
        );
        rec.dispatch(&SINKHORN_SUB_COLS, &p, &[out, &col_lse], all);
        let last = Params {
            last: (it + 1 == iterations) as u32,
            ..p
        };
        rec.dispatch(&SINKHORN_ROWS, &last, &[out], row_grid(rec, n, k));
    }
}

/// How student crops meet teacher crops in the DINO loss.
#[derive(Clone, Copy, Debug)]
pub struct DinoPairs {
    /// Images per crop (B).
    pub batch: usize,
    /// Student crops: the first `n_global` are global crops, then local crops.
    pub n_student: usize,
    /// Global student crops (paired with every other teacher crop).
    pub n_global: usize,
    /// Teacher crops (the global crops).
    pub n_teacher: usize,
    /// Student temperature (0.1).
    pub temp: f32,
    /// Weight of the local crops' terms (1; DINOv3 anneals it to 0.5 with Gram anchoring).
    pub local_weight: f32,
}

impl DinoPairs {
    /// Number of (student crop, teacher crop) terms: globals meet the other crops, locals all.
    pub fn n_terms(&self) -> usize {
        self.n_global * self.n_teacher.saturating_sub(1)
            + (self.n_student - self.n_global) * self.n_teacher
    }
    /// The DINOv2 weighting: the mean over images of each term, averaged over the terms.
    pub fn default_scale(&self) -> f32 {
        1.0 / (self.batch * self.n_terms().max(1)) as f32
    }
    fn params(&self, rec: &Recorder, k: usize, scale: f32, accumulate: bool) -> Params {
        Params {
            rows: (self.n_student * self.batch) as u32,
            cols: k as u32,
            batch: self.batch as u32,
            n_teacher: self.n_teacher as u32,
            n_global: self.n_global as u32,
            accumulate: accumulate as u32,
            inv_temp: 1.0 / self.temp,
            scale,
            lanes: row_lanes(rec, k),
            local_weight: self.local_weight,
            ..Default::default()
        }
    }
}

/// loss `[1]` = scale·Σ_rows Σ_pairs CE(T, S), a local crop's rows times `local_weight`; also
/// returns the per-row sums, weighted.
pub fn dino_loss_forward(
    rec: &mut Recorder,
    loss: &Tensor,
    student: &Tensor,
    teacher_probs: &Tensor,
    k: usize,
    pairs: DinoPairs,
    scale: f32,
) -> Tensor {
    let rows = pairs.n_student * pairs.batch;
    assert_eq!(student.numel(), rows * k, "dino_loss: student logits shape");
    assert_eq!(
        teacher_probs.numel(),
        pairs.n_teacher * pairs.batch * k,
        "dino_loss: teacher shape"
    );
    let gpu = rec.gpu();
    let per_row = gpu.empty(&[rows]);
    let dummy = gpu.dummy_read.clone();
    rec.dispatch(
        &DINO_LOSS_FORWARD,
        &pairs.params(rec, k, scale, false),
        &[student, teacher_probs, &dummy, &per_row],
        row_grid(rec, rows, k),
    );
    let sum = gpu.empty(&[1]);
    reduce(rec, &sum, &per_row, Reduce::Sum, false);
    super::elementwise::axpby(rec, loss, &sum, scale, 0.0);
    per_row
}

/// d_student (+)= `upstream[0]`·scale·∂(Σ CE)/∂S.
#[allow(clippy::too_many_arguments)]
pub fn dino_loss_backward(
    rec: &mut Recorder,
    d_student: &Tensor,
    upstream: &Tensor,
    student: &Tensor,
    teacher_probs: &Tensor,
    k: usize,
    pairs: DinoPairs,
    scale: f32,
    accumulate: bool,
) {
    let rows = pairs.n_student * pairs.batch;
    assert_eq!(d_student.numel(), rows * k, "dino_loss_backward: shape");
    rec.dispatch(
        &DINO_LOSS_BACKWARD,
        &pairs.params(rec, k, scale, accumulate),
        &[student, teacher_probs, upstream, d_student],
        row_grid(rec, rows, k),
    );
}

/// What the KoLeo forward keeps for the backward.
pub struct KoleoSaved {
    /// [rows, 3]: each row's neighbour, distance to it and norm.
    pub neighbours: Tensor,
}

/// KoLeo over chunks of `batch` rows of x `[rows, D]`: loss `[1]` = scale·Σ_i −log(d_i + 1e-8)
/// (scale = 1/batch gives the sum over chunks of each chunk's mean, as DINOv2 uses it).
pub fn koleo_forward(
    rec: &mut Recorder,
    loss: &Tensor,
    x: &Tensor,
    dim: usize,
    batch: usize,
    scale: f32,
) -> KoleoSaved {
    let rows = x.numel() / dim;
    assert!(
        rows * dim == x.numel() && batch >= 2 && rows.is_multiple_of(batch),
        "koleo: {rows} rows in chunks of {batch}"
    );
    let gpu = rec.gpu();
    let per_row = gpu.empty(&[rows]);
    let neighbours = gpu.empty(&[rows, 3]);
    let dummy = gpu.dummy_read.clone();
    let p = Params {
        rows: rows as u32,
        cols: dim as u32,
        batch: batch as u32,
        scale,
        lanes: row_lanes(rec, dim),
        ..Default::default()
    };
    let (kernel, grid) = if rec.cpu_layouts() {
        (&KOLEO_FORWARD_ROWS, grid_rows(rows.div_ceil(256)))
    } else {
        (&KOLEO_FORWARD, grid_rows(rows))
    };
    rec.dispatch(
        kernel,
        &p,
        &[x, &dummy, &dummy, &per_row, &neighbours],
        grid,
    );
    let sum = gpu.empty(&[1]);
    reduce(rec, &sum, &per_row, Reduce::Sum, false);
    super::elementwise::axpby(rec, loss, &sum, scale, 0.0);
    KoleoSaved { neighbours }
}

/// dx (+)= `upstream[0]`·scale·∂(Σ −log(d_i + ε))/∂x.
#[allow(clippy::too_many_arguments)]
pub fn koleo_backward(
    rec: &mut Recorder,
    dx: &Tensor,
    upstream: &Tensor,
    x: &Tensor,
    saved: &KoleoSaved,
    dim: usize,
    batch: usize,
    scale: f32,
    accumulate: bool,
) {
    let rows = x.numel() / dim;
    assert_eq!(dx.numel(), x.numel(), "koleo_backward: shape");
    let scratch = rec.gpu().empty(&[rows, dim]);
    let p = Params {
        rows: rows as u32,
        cols: dim as u32,
        batch: batch as u32,
        accumulate: accumulate as u32,
        scale,
        lanes: row_lanes(rec, dim),
        ..Default::default()
    };
    rec.dispatch(
        &KOLEO_BACKWARD,
        &p,
        &[x, &saved.neighbours, upstream, dx, &scratch],
        row_grid(rec, rows, dim),
    );
}
