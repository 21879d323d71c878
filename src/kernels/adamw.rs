//! AdamW over a flat parameter buffer with per-segment lr and weight-decay multipliers
//! (shaders/adamw.wgsl).

use crate::gpu::{grid_1d, Access::*, Gpu, Kernel, Recorder, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
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
    _pad1: u32,
}

const B: &[(u32, crate::gpu::Access)] = &[
    (1, ReadWrite),
    (2, Read),
    (3, ReadWrite),
    (4, ReadWrite),
    (5, Read),
    (6, Read),
];
/// One AdamW step.
pub static ADAMW_STEP: Kernel = Kernel::new::<Params>("adamw", "adamw_step", B);
/// One AdamW step on vec4s.
pub static ADAMW_STEP_V4: Kernel = Kernel::new::<Params>("adamw", "adamw_step_v4", B);

/// A parameter group: elements [start, end) with lr and weight-decay multipliers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Segment {
    /// First element.
    pub start: usize,
    /// One past the last element.
    pub end: usize,
    /// Multiplies the learning rate (layer-wise decay, patch-embed ×0.2, frozen last layer = 0).
    pub lr_scale: f32,
    /// Multiplies the weight decay (0 for norms, biases, tokens).
    pub wd_scale: f32,
}

/// Hyper-parameters of one step.
#[derive(Clone, Copy, Debug)]
pub struct AdamWStep {
    /// Learning rate.
    pub lr: f32,
    /// Weight decay.
    pub weight_decay: f32,
    /// β1.
    pub beta1: f32,
    /// β2.
    pub beta2: f32,
    /// ε.
    pub eps: f32,
    /// Step number, from 1.
    pub t: u32,
}

/// Sorted, non-overlapping segments uploaded once.
pub struct Segments {
    table: Tensor,
    count: usize,
}

impl Segments {
    /// Uploads the table; segments must be sorted and disjoint.
    pub fn new(gpu: &Gpu, segs: &[Segment]) -> Segments {
        assert!(!segs.is_empty(), "adamw: no parameter segments");
        let mut raw: Vec<u32> = Vec::with_capacity(segs.len() * 4);
        let mut last = 0;
        for s in segs {
            assert!(
                s.start >= last && s.end >= s.start,
                "adamw: segments must be sorted and disjoint"
            );
            last = s.end;
            raw.extend([
                s.start as u32,
                s.end as u32,
                s.lr_scale.to_bits(),
                s.wd_scale.to_bits(),
            ]);
        }
        Segments {
            table: gpu.upload_u32(&raw, &[segs.len(), 4]),
            count: segs.len(),
        }
    }
}

/// param, m, v ← one AdamW step with gradient `grad` (all flat, equal length).
pub fn adamw_step(
    rec: &mut Recorder,
    param: &Tensor,
    m: &Tensor,
    v: &Tensor,
    grad: &Tensor,
    segs: &Segments,
    h: AdamWStep,
) {
    adamw_step_gated(rec, param, m, v, grad, segs, h, None)
}

/// [`adamw_step`] that leaves everything unchanged when `skip` = (tensor, index) holds a
/// non-zero value there when the step runs (decided on the GPU: an overflowed mixed-precision
/// step).
#[allow(clippy::too_many_arguments)]
pub fn adamw_step_gated(
    rec: &mut Recorder,
    param: &Tensor,
    m: &Tensor,
    v: &Tensor,
    grad: &Tensor,
    segs: &Segments,
    h: AdamWStep,
    skip: Option<(&Tensor, usize)>,
) {
    let n = param.numel();
    assert!(
        grad.numel() == n && m.numel() == n && v.numel() == n,
        "adamw_step: sizes"
    );
    assert!(h.t >= 1, "adamw_step: steps count from 1");
    let dummy = rec.gpu().dummy_read.clone();
    // Piecewise when the flat buffers exceed one storage binding; `base` keeps the segment
    // search in whole-buffer indices.
    for (start, len) in rec.gpu().binding_chunks(n) {
        let (k, count) = if len > 0 && len.is_multiple_of(4) && start.is_multiple_of(4) {
            (&ADAMW_STEP_V4, len / 4)
        } else {
            (&ADAMW_STEP, len)
        };
        let p = Params {
            n: count as u32,
            n_segments: segs.count as u32,
            base: start as u32,
            gate: skip.map_or(0, |(_, i)| i as u32 + 1),
            lr: h.lr,
            weight_decay: h.weight_decay,
            beta1: h.beta1,
            beta2: h.beta2,
            eps: h.eps,
            bc1: 1.0 - h.beta1.powi(h.t as i32),
            bc2: 1.0 - h.beta2.powi(h.t as i32),
            _pad1: 0,
        };
        let v_ = |t: &Tensor| t.view(start, &[len]);
        let gate = skip.map_or(&dummy, |(t, _)| t);
        rec.dispatch(
            k,
            &p,
            &[&v_(param), &v_(grad), &v_(m), &v_(v), &segs.table, gate],
            grid_1d(count.div_ceil(256)),
        );
    }
}
