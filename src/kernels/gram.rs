//! DINOv3's Gram anchoring loss (spec §8.1), composed of the runtime's kernels (row L2 norm,
//! batched matmul, elementwise, reduce); it has no WGSL of its own.
//!
//! Per image, the patch features are L2-normalised and their Gram matrix G = X̂X̂ᵀ [P, P] is
//! compared with a frozen Gram teacher's: loss = mean over all B·P·P entries of (G_S − G_T)².
//! The teacher side is [`gram_matrices`], computed once (no gradient); the student side saves
//! what its backward reads.

use super::matmul::{matmul, Epilogue, MatmulDims};
use crate::gpu::{Recorder, Tensor};

/// Rows with a smaller norm are divided by this instead (as `F.normalize`).
const EPS: f32 = 1e-12;

/// Sizes of one Gram loss: images, patches per image, feature width.
#[derive(Clone, Copy, Debug)]
pub struct GramDims {
    /// Images.
    pub batch: usize,
    /// Patches per image.
    pub patches: usize,
    /// Feature width.
    pub dim: usize,
}

impl GramDims {
    fn product(&self) -> MatmulDims {
        MatmulDims::new(self.patches, self.patches, self.dim)
            .batched(self.batch)
            .tb()
    }
}

/// What the student side's backward reads.
pub struct GramSaved {
    features: Tensor,
    normed: Tensor,
    diff: Tensor,
}

/// The normalised Gram matrices [B, P, P] of features [B·P, D].
pub fn gram_matrices(rec: &mut Recorder, features: &Tensor, d: GramDims) -> Tensor {
    let (g, _) = normed_gram(rec, features, d);
    g
}

fn normed_gram(rec: &mut Recorder, features: &Tensor, d: GramDims) -> (Tensor, Tensor) {
    assert_eq!(
        features.numel(),
        d.batch * d.patches * d.dim,
        "gram: features must be [B·P, D]"
    );
    let gpu = rec.gpu();
    let normed = gpu.empty(features.shape());
    super::normalize::l2norm_forward(rec, &normed, features, d.dim, EPS);
    let g = gpu.empty(&[d.batch, d.patches, d.patches]);
    matmul(
        rec,
        &g,
        &normed,
        &normed,
        d.product(),
        1.0,
        false,
        Epilogue::None,
    );
    (g, normed)
}

/// loss `[1]` = mean (G(student) − teacher_gram)²; returns what the backward reads.
pub fn gram_loss_forward(
    rec: &mut Recorder,
    loss: &Tensor,
    student: &Tensor,
    teacher_gram: &Tensor,
    d: GramDims,
) -> GramSaved {
    let (diff, normed) = normed_gram(rec, student, d);
    assert_eq!(teacher_gram.numel(), diff.numel(), "gram: teacher shape");
    super::elementwise::axpby(rec, &diff, teacher_gram, -1.0, 1.0);
    let sq = rec.gpu().empty(diff.shape());
    super::elementwise::mul_forward(rec, &sq, &diff, &diff, false);
    super::reduce::reduce(rec, loss, &sq, super::reduce::Reduce::Mean, false);
    GramSaved {
        features: student.clone(),
        normed,
        diff,
    }
}

/// d_student (+)= weight·dloss/d_student. With D = G_S − G_T symmetric,
/// dX̂ = 4·weight/(B·P·P)·D·X̂, then through the normalisation.
pub fn gram_loss_backward(
    rec: &mut Recorder,
    d_student: &Tensor,
    saved: &GramSaved,
    weight: f32,
    d: GramDims,
    accumulate: bool,
) {
    let gpu = rec.gpu();
    let d_normed = gpu.empty(saved.normed.shape());
    let count = (d.batch * d.patches * d.patches).max(1) as f32;
    let dd = MatmulDims::new(d.patches, d.dim, d.patches).batched(d.batch);
    matmul(
        rec,
        &d_normed,
        &saved.diff,
        &saved.normed,
        dd,
        4.0 * weight / count,
        false,
        Epilogue::None,
    );
    super::normalize::l2norm_backward(
        rec,
        d_student,
        &d_normed,
        &saved.features,
        d.dim,
        EPS,
        accumulate,
    );
}
