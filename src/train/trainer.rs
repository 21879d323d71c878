//! One DINOv2 training step on the GPU, recorded into one submission (spec Appendix B):
//! teacher forward on the global crops → targets (centering or Sinkhorn-Knopp) → student forward
//! on the masked global crops and on the local crops → shared DINO/iBOT head → DINO, iBOT and
//! KoLeo losses → backward → per-module gradient clipping → AdamW → teacher EMA. The phases are
//! in `step.rs`; this file holds the state, its construction and checkpoints.
//!
//! Student, teacher, gradients and both AdamW moments are flat buffers with one layout
//! (backbone, then `dino_head.*`), so each of AdamW, EMA and clipping is one dispatch per module.

use super::config::{Precision, TrainConfig};
use super::head::DinoHead;
use crate::gpu::{DType, Gpu, GpuError, Recorder, Staged, Submitted, Tensor};
use crate::kernels;
use crate::kernels::adamw::{Segment, Segments};
use crate::kernels::loss_scale::{LossScale, GROWTH_INTERVAL, INITIAL_SCALE, MAX_SCALE};
use crate::model::params::{ParamLayout, ParamStore};
use crate::model::vit::{param_layout, Vit};
use crate::model::weights::expected_tensors;
use std::collections::BTreeMap;

mod step;

/// A problem during training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// From the device.
    #[error(transparent)]
    Gpu(#[from] GpuError),
    /// From the model.
    #[error(transparent)]
    Model(#[from] crate::model::vit::ModelError),
    /// Anything else, with its reason.
    #[error("{0}")]
    Other(String),
}

/// What one step measured (read back after the step).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct StepMetrics {
    /// Step index (0-based) of this step.
    pub step: u64,
    /// Wall seconds from when the host began on this step (or read the one before, when the
    /// two overlapped) to when its metrics were read: pauses for evaluations and checkpoints
    /// left out. Set by the loops that run steps (0 elsewhere); logged as `step_s`, so a
    /// resumed run's curve gets the same throughput as the live one.
    #[serde(default, rename = "step_s")]
    pub seconds: f64,
    /// Weighted total loss.
    pub loss: f32,
    /// DINO CLS-token loss.
    pub dino: f32,
    /// iBOT masked-patch loss.
    pub ibot: f32,
    /// KoLeo (before its weight).
    pub koleo: f32,
    /// Learning rate.
    pub lr: f32,
    /// Weight decay.
    pub weight_decay: f32,
    /// Teacher momentum.
    pub momentum: f32,
    /// Teacher temperature.
    pub teacher_temp: f32,
    /// Masked patches in the batch.
    pub masked: usize,
    /// L2 norm of all gradients before clipping.
    pub grad_norm: f32,
    /// Mean entropy of the teacher's DINO targets (every `log_every` steps).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teacher_entropy: Option<f32>,
    /// KL divergence of the mean teacher target from uniform, ln K − H(mean target): 0 when the
    /// batch spreads over all prototypes, ln K when every image lands on one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teacher_kl_uniform: Option<f32>,
    /// Standard deviation of the student's normed CLS features over the batch, averaged over
    /// channels (near 0 means collapsed features).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feature_std: Option<f32>,
    /// Gram anchoring loss (before its weight; 0 before it starts), in runs that use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gram: Option<f32>,
    /// The loss scale of the f16 backward products (mixed precision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f32>,
    /// The step's f16 gradients overflowed, so its update was skipped and the scale halved
    /// (mixed precision).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
}

/// Where the per-module gradient sums of squares start in a step's metrics readback (after the
/// four losses, the loss scale and the skip flag).
pub(crate) const METRIC_NORMS: usize = 6;

impl StepMetrics {
    /// What is not finite in this step ("the DINO loss is NaN", "the gradient norm is inf"), if
    /// anything: the step's losses and gradients are read back every step, so this costs nothing.
    pub fn non_finite(&self) -> Option<String> {
        let terms = [
            ("DINO loss", self.dino),
            ("iBOT loss", self.ibot),
            ("KoLeo loss", self.koleo),
            ("gradient norm", self.grad_norm),
            ("Gram loss", self.gram.unwrap_or(0.0)),
        ];
        let bad: Vec<String> = terms
            .iter()
            .filter(|(_, v)| !v.is_finite())
            .map(|(n, v)| format!("the {n} is {v}"))
            .collect();
        if self.skipped && self.loss_scale.is_some_and(|s| s <= 1.0) {
            return Some(
                "the backbone's gradients overflow f16 even at loss scale 1 (train with \
                 --precision f32)"
                    .into(),
            );
        }
        (!bad.is_empty() || !self.loss.is_finite()).then(|| {
            if bad.is_empty() {
                format!("the loss is {}", self.loss)
            } else {
                bad.join(", ")
            }
        })
    }
}

/// A submitted step whose metrics are still on the GPU.
pub struct PendingStep {
    metrics: Staged,
    diagnostics: Option<(Staged, Staged)>,
    /// The step's submission: reading waits for it and for no step submitted after it.
    submitted: Submitted,
    prototypes: usize,
    dim: usize,
    base: StepMetrics,
    /// Weights of the DINO, iBOT, KoLeo and (when on) Gram losses at this step.
    weights: (f32, f32, f32, Option<f32>),
    /// The step ran with f16 backward products and a loss scale.
    mixed: bool,
    /// Compute dispatches the step recorded.
    dispatches: usize,
}

impl PendingStep {
    /// The step index this pending step belongs to.
    pub fn step(&self) -> u64 {
        self.base.step
    }

    /// How many compute dispatches the step recorded.
    pub fn dispatches(&self) -> usize {
        self.dispatches
    }

    /// Reads the step's losses (and, on logging steps, the collapse diagnostics) back. Never
    /// blocks the browser: there the future resolves when the buffers are mapped.
    pub async fn read(self, gpu: &Gpu) -> Result<StepMetrics, TrainError> {
        let m = gpu.read_staged(self.metrics, &self.submitted).await?;
        let mut out = self.base;
        let (dino, ibot, koleo, gram) = (m[0], m[1], m[2], m[3]);
        let (wd, wi, wk, wg) = self.weights;
        out.loss = wd * dino + wi * ibot + wk * koleo + wg.unwrap_or(0.0) * gram;
        (out.dino, out.ibot, out.koleo) = (dino, ibot, koleo);
        out.gram = wg.map(|_| gram);
        out.grad_norm = m[METRIC_NORMS..].iter().sum::<f32>().sqrt();
        if self.mixed {
            out.loss_scale = Some(m[4]);
            out.skipped = m[5] != 0.0;
        }
        if let Some((t_probs, s_cls)) = self.diagnostics {
            let k = self.prototypes;
            let d = self.dim;
            let t = gpu.read_staged(t_probs, &self.submitted).await?;
            let rows = (t.len() / k).max(1);
            let h: f64 = t
                .iter()
                .map(|&p| {
                    if p > 0.0 {
                        -(p as f64) * (p as f64).ln()
                    } else {
                        0.0
                    }
                })
                .sum::<f64>()
                / rows as f64;
            let mut mean = vec![0.0f64; k];
            for r in t.chunks(k) {
                for (m, &p) in mean.iter_mut().zip(r) {
                    *m += p as f64 / rows as f64;
                }
            }
            let hm: f64 = mean
                .iter()
                .map(|&p| if p > 0.0 { -p * p.ln() } else { 0.0 })
                .sum();
            out.teacher_entropy = Some(h as f32);
            out.teacher_kl_uniform = Some(((k as f64).ln() - hm) as f32);
            let f = gpu.read_staged(s_cls, &self.submitted).await?;
            let n = (f.len() / d).max(1);
            let mut std_sum = 0.0f64;
            for c in 0..d {
                let mu: f64 = (0..n).map(|r| f[r * d + c] as f64).sum::<f64>() / n as f64;
                let var: f64 = (0..n)
                    .map(|r| (f[r * d + c] as f64 - mu).powi(2))
                    .sum::<f64>()
                    / n as f64;
                std_sum += var.sqrt();
            }
            out.feature_std = Some((std_sum / d as f64) as f32);
        }
        Ok(out)
    }
}

/// The training state on the GPU.
pub struct Trainer<'g> {
    /// Configuration.
    pub cfg: TrainConfig,
    gpu: &'g Gpu,
    /// Layout of the whole flat buffer (backbone, then head).
    pub layout: ParamLayout,
    backbone_layout: ParamLayout,
    head_layout: ParamLayout,
    /// Student parameters.
    pub student: Tensor,
    /// Teacher parameters.
    pub teacher: Tensor,
    /// Gradients.
    pub grads: Tensor,
    /// AdamW first moment.
    pub m1: Tensor,
    /// AdamW second moment.
    pub m2: Tensor,
    /// DINO center `[K]`.
    pub center_dino: Tensor,
    /// iBOT center `[K]`.
    pub center_ibot: Tensor,
    /// The Gram teacher's backbone (flat) and the model over it, with Gram anchoring.
    gram_teacher: Option<(Tensor, Vit)>,
    student_vit: Vit,
    teacher_vit: Vit,
    /// With mixed precision: the f16 copies of the student and teacher backbones the forward
    /// passes run on, refreshed from the f32 weights at the start of every step.
    half: Option<(Vit, Vit)>,
    /// With mixed precision: the loss scale of the f16 backward products.
    loss_scale: Option<LossScale>,
    head: DinoHead,
    ibot_head: DinoHead,
    segments: Segments,
    segments_frozen: bool,
    /// The `[3, 256]` table the step's 8-bit crops are normalised through, uploaded once.
    input_table: Tensor,
    /// Steps done.
    pub step: u64,
}

fn store(layout: &ParamLayout, flat: &Tensor, offset: usize) -> ParamStore {
    ParamStore {
        layout: layout.clone(),
        flat: flat.view(offset, &[layout.total]),
    }
}

/// AdamW parameter groups (spec §4.3): layer-wise lr decay, patch embedding ×0.2, the prototype
/// layer frozen while `freeze`, no weight decay on biases, norms and LayerScale.
pub fn param_segments(
    cfg: &TrainConfig,
    backbone: &ParamLayout,
    head: &ParamLayout,
    freeze: bool,
) -> Vec<Segment> {
    let depth = cfg.model.depth;
    let mut segs = Vec::new();
    for e in &backbone.entries {
        let n = e.name.as_str();
        let layer_id = if n.starts_with("blocks.") {
            n.split('.')
                .nth(1)
                .and_then(|i| i.parse::<usize>().ok())
                .map_or(depth + 1, |i| i + 1)
        } else if n.starts_with("pos_embed")
            || n.starts_with("patch_embed")
            || n == "mask_token"
            || n == "cls_token"
            || n == "register_tokens"
        {
            0
        } else {
            depth + 1
        };
        let mut lr = cfg.layer_decay.powi((depth + 1 - layer_id) as i32);
        if n.starts_with("patch_embed") {
            lr *= cfg.patch_embed_lr_mult;
        }
        let no_wd = n.ends_with(".bias") || n.contains("norm") || n.contains("gamma");
        let wd_scale = if no_wd { 0.0 } else { 1.0 };
        let (start, end) = (e.offset, e.offset + e.numel());
        if !cfg.model.key_bias && n.ends_with("attn.qkv.bias") {
            // DINOv3's masked key bias stays at zero (its gradient is zero in exact arithmetic;
            // AdamW would turn the rounding noise into steps of size lr).
            let d = e.numel() / 3;
            for (s, t, lr) in [
                (start, start + d, lr),
                (start + d, start + 2 * d, 0.0),
                (start + 2 * d, end, lr),
            ] {
                segs.push(Segment {
                    start: s,
                    end: t,
                    lr_scale: lr,
                    wd_scale,
                });
            }
            continue;
        }
        segs.push(Segment {
            start,
            end,
            lr_scale: lr,
            wd_scale,
        });
    }
    let base = backbone.total;
    for e in &head.entries {
        let n = e.name.as_str();
        let lr = if freeze && n.contains("last_layer") {
            0.0
        } else {
            1.0
        };
        let no_wd = n.ends_with(".bias");
        segs.push(Segment {
            start: base + e.offset,
            end: base + e.offset + e.numel(),
            lr_scale: lr,
            wd_scale: if no_wd { 0.0 } else { 1.0 },
        });
    }
    segs
}

impl<'g> Trainer<'g> {
    /// A fresh run: student initialised from the seed, teacher a copy of it.
    pub fn new(gpu: &'g Gpu, cfg: TrainConfig) -> Result<Trainer<'g>, TrainError> {
        cfg.validate().map_err(TrainError::Other)?;
        let backbone_layout = param_layout(&cfg.model);
        let head_layout = ParamLayout::new(&cfg.head_specs());
        let mut specs: Vec<(String, Vec<usize>)> = backbone_layout
            .entries
            .iter()
            .map(|e| (e.name.clone(), e.shape.clone()))
            .collect();
        // Keep the head's start aligned: pad the backbone part to its own total.
        let pad = backbone_layout.total
            - backbone_layout
                .entries
                .last()
                .map_or(0, |e| e.offset + e.numel().div_ceil(64) * 64);
        debug_assert_eq!(pad, 0);
        specs.extend(
            head_layout
                .entries
                .iter()
                .map(|e| (e.name.clone(), e.shape.clone())),
        );
        let layout = ParamLayout::new(&specs);
        let flat = if gpu.is_dry() {
            // A dry run allocates the same tensors without values: skip the initialisation.
            vec![0.0; layout.total]
        } else {
            let token_std = super::init::token_std(cfg.model.is_rope());
            let values = super::init::init_params(&layout, cfg.seed, &cfg.init, token_std);
            layout.pack(&values)
        };
        Self::from_flats(
            gpu,
            cfg,
            layout,
            backbone_layout,
            head_layout,
            &flat,
            &flat,
            None,
            None,
            None,
            0,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn from_flats(
        gpu: &'g Gpu,
        cfg: TrainConfig,
        layout: ParamLayout,
        backbone_layout: ParamLayout,
        head_layout: ParamLayout,
        student: &[f32],
        teacher: &[f32],
        moments: Option<(&[f32], &[f32])>,
        centers: Option<(&[f32], &[f32])>,
        gram: Option<&[f32]>,
        step: u64,
    ) -> Result<Trainer<'g>, TrainError> {
        let total = layout.total;
        let s = gpu.upload(student, &[total]);
        let t = gpu.upload(teacher, &[total]);
        let zeros = vec![0.0f32; total];
        let (m1, m2) = moments.unwrap_or((&zeros, &zeros));
        let k = cfg.head.prototypes;
        let zk = vec![0.0f32; k];
        let zki = vec![0.0f32; cfg.ibot_prototypes()];
        let (cd, ci) = centers.unwrap_or((&zk, &zki));
        let b_total = backbone_layout.total;
        let student_vit = Vit::from_store(cfg.model.clone(), store(&backbone_layout, &s, 0))?;
        let teacher_vit = Vit::from_store(cfg.model.clone(), store(&backbone_layout, &t, 0))?;
        let head = DinoHead::new(cfg.model.dim, cfg.head.clone(), "dino_head.");
        let ibot_head = match &cfg.ibot_head {
            Some(h) => DinoHead::new(cfg.model.dim, h.clone(), "ibot_head."),
            None => DinoHead::new(cfg.model.dim, cfg.head.clone(), "dino_head."),
        };
        let frozen = cfg.at(step).freeze_last_layer;
        let segments = Segments::new(
            gpu,
            &param_segments(&cfg, &backbone_layout, &head_layout, frozen),
        );
        // Until its first refresh the Gram teacher is never read; start it as the teacher.
        let gram_teacher = match &cfg.gram {
            Some(_) => {
                let flat = gpu.upload(gram.unwrap_or(&teacher[..b_total]), &[b_total]);
                let vit = Vit::from_store(cfg.model.clone(), store(&backbone_layout, &flat, 0))?;
                Some((flat, vit))
            }
            None => None,
        };
        let half = match cfg.precision {
            Precision::F32 => None,
            Precision::Mixed => {
                if !gpu.features.contains(wgpu::Features::SHADER_F16) {
                    return Err(TrainError::Other(format!(
                        "precision: Mixed needs the SHADER_F16 feature, which {} does not \
                         offer; use F32",
                        gpu.info.name
                    )));
                }
                let copy = || {
                    let layout = ParamLayout::aligned(&expected_tensors(&cfg.model), DType::F16);
                    let flat = gpu.empty_as(&[layout.total], DType::F16);
                    Vit::from_store(cfg.model.clone(), ParamStore { layout, flat })
                };
                Some((copy()?, copy()?))
            }
        };
        let loss_scale = half.as_ref().map(|_| {
            LossScale::new(
                gpu,
                cfg.loss_scale.unwrap_or(INITIAL_SCALE),
                GROWTH_INTERVAL,
            )
        });
        Ok(Trainer {
            half,
            loss_scale,
            gram_teacher,
            gpu,
            layout,
            student: s,
            teacher: t,
            grads: gpu.upload(&zeros, &[total]),
            m1: gpu.upload(m1, &[total]),
            m2: gpu.upload(m2, &[total]),
            center_dino: gpu.upload(cd, &[k]),
            center_ibot: gpu.upload(ci, &[cfg.ibot_prototypes()]),
            student_vit,
            teacher_vit,
            head,
            ibot_head,
            segments,
            segments_frozen: frozen,
            input_table: gpu.upload(&crate::data::augment::normalization_table(), &[3, 256]),
            step,
            cfg,
            backbone_layout,
            head_layout,
        })
    }

    /// The device.
    pub fn gpu(&self) -> &'g Gpu {
        self.gpu
    }

    /// The teacher backbone (for evaluation and export).
    pub fn teacher_backbone(&self) -> &Vit {
        &self.teacher_vit
    }

    /// The student backbone.
    pub fn student_backbone(&self) -> &Vit {
        &self.student_vit
    }

    /// Copies the f32 student and teacher backbones into their f16 twins (mixed precision).
    fn refresh_half(&self, rec: &mut Recorder) {
        let Some((s16, t16)) = &self.half else {
            return;
        };
        for (from, to) in [(&self.student_vit, s16), (&self.teacher_vit, t16)] {
            for e in &self.backbone_layout.entries {
                let src = from.params.get(&e.name);
                kernels::cast::cast(rec, &to.params.get(&e.name), &src);
            }
        }
    }

    /// The backbones the forward passes run on: the f16 twins with mixed precision.
    fn forward_vits(&self) -> (&Vit, &Vit) {
        match &self.half {
            Some((s, t)) => (s, t),
            None => (&self.student_vit, &self.teacher_vit),
        }
    }

    fn head_store(&self, flat: &Tensor) -> ParamStore {
        store(&self.head_layout, flat, self.backbone_layout.total)
    }

    fn backbone_store(&self, flat: &Tensor) -> ParamStore {
        store(&self.backbone_layout, flat, 0)
    }

    /// Runs one step on a batch; returns its metrics (one small readback). Native only: the
    /// browser uses [`Trainer::submit_step`] and [`PendingStep::read`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn train_step(
        &mut self,
        batch: &crate::data::loader::Batch,
    ) -> Result<StepMetrics, TrainError> {
        let pending = self.submit_step(batch)?;
        pollster::block_on(pending.read(self.gpu))
    }

    /// Rebuilds the AdamW segments when the prototype layer freezes or thaws.
    fn refresh_segments(&mut self, frozen: bool) {
        if frozen != self.segments_frozen {
            self.segments = Segments::new(
                self.gpu,
                &param_segments(&self.cfg, &self.backbone_layout, &self.head_layout, frozen),
            );
            self.segments_frozen = frozen;
        }
    }

    /// Per-sample drop-path scales for one student forward (`which`: 0 globals, 1 locals), drawn
    /// from the seed and the step so a resumed run draws the same.
    fn drop_masks(&self, which: u64, samples: usize) -> Option<Vec<(Tensor, Tensor)>> {
        let p = self.cfg.drop_path;
        if p <= 0.0 || samples == 0 {
            return None;
        }
        let keep = 1.0 - p;
        let mut v = Vec::with_capacity(self.cfg.model.depth);
        for blk in 0..self.cfg.model.depth {
            let draw = |branch: u64| {
                let mut rng = crate::data::rng::Rng::derive(
                    self.cfg.seed,
                    &[0xD809, self.step, which, blk as u64, branch],
                );
                let s: Vec<f32> = (0..samples)
                    .map(|_| if rng.bernoulli(keep) { 1.0 / keep } else { 0.0 })
                    .collect();
                self.gpu.upload(&s, &[samples])
            };
            let a = draw(0);
            let m = draw(1);
            v.push((a, m));
        }
        Some(v)
    }

    /// DINOv3's rotary coordinate rescaling for the student's crop set `which` (0 global, 1
    /// local) at this step: one factor per block, log-uniform in [1/r, r], the same for every
    /// image of the set. `None` without `rope_rescale` or rotary positions.
    fn rope_scales(&self, which: u64) -> Option<Vec<f32>> {
        let r = self.cfg.rope_rescale.filter(|_| self.cfg.model.is_rope())?;
        let half = (r as f64).ln();
        let scales = (0..self.cfg.model.depth)
            .map(|blk| {
                let mut rng = crate::data::rng::Rng::derive(
                    self.cfg.seed,
                    &[0x809E, self.step, which, blk as u64],
                );
                (rng.uniform_f64() * 2.0 * half - half).exp() as f32
            })
            .collect();
        Some(scales)
    }

    /// Host copies of every piece of state, for checkpoints.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn state(&self) -> Result<TrainState, TrainError> {
        pollster::block_on(self.state_async())
    }

    /// [`Trainer::state`] without blocking (the browser's): the buffers are copied after every
    /// step submitted so far, so the state is that of `step` steps even with one in flight.
    pub async fn state_async(&self) -> Result<TrainState, TrainError> {
        let gpu = self.gpu;
        Ok(TrainState {
            step: self.step,
            student: gpu.read_async(&self.student).await?,
            teacher: gpu.read_async(&self.teacher).await?,
            m1: gpu.read_async(&self.m1).await?,
            m2: gpu.read_async(&self.m2).await?,
            center_dino: gpu.read_async(&self.center_dino).await?,
            center_ibot: gpu.read_async(&self.center_ibot).await?,
            gram_teacher: match &self.gram_teacher {
                Some((flat, _)) => Some(gpu.read_async(flat).await?),
                None => None,
            },
            loss_scale: match &self.loss_scale {
                Some(ls) => Some(gpu.read_async(&ls.state).await?),
                None => None,
            },
        })
    }

    /// Continues from a saved state (the same config).
    pub fn from_state(
        gpu: &'g Gpu,
        cfg: TrainConfig,
        st: &TrainState,
    ) -> Result<Trainer<'g>, TrainError> {
        let fresh_layout = {
            let bl = param_layout(&cfg.model);
            let hl = ParamLayout::new(&cfg.head_specs());
            let mut specs: Vec<(String, Vec<usize>)> = bl
                .entries
                .iter()
                .map(|e| (e.name.clone(), e.shape.clone()))
                .collect();
            specs.extend(hl.entries.iter().map(|e| (e.name.clone(), e.shape.clone())));
            (ParamLayout::new(&specs), bl, hl)
        };
        let (layout, bl, hl) = fresh_layout;
        let n = layout.total;
        let k = cfg.head.prototypes;
        if [st.student.len(), st.teacher.len(), st.m1.len(), st.m2.len()]
            .iter()
            .any(|&x| x != n)
            || st.center_dino.len() != k
            || st.center_ibot.len() != cfg.ibot_prototypes()
        {
            return Err(TrainError::Other(format!("checkpoint state does not match the config ({n} parameters, {k} prototypes expected)")));
        }
        if let Some(g) = &st.gram_teacher {
            if g.len() != bl.total {
                return Err(TrainError::Other(format!(
                    "checkpoint's Gram teacher has {} values, the backbone {}",
                    g.len(),
                    bl.total
                )));
            }
        }
        let trainer = Self::from_flats(
            gpu,
            cfg,
            layout,
            bl,
            hl,
            &st.student,
            &st.teacher,
            Some((&st.m1, &st.m2)),
            Some((&st.center_dino, &st.center_ibot)),
            st.gram_teacher.as_deref(),
            st.step,
        )?;
        // A run saved before it had a loss scale (or in f32) starts the scale afresh.
        if let (Some(ls), Some(saved)) = (&trainer.loss_scale, &st.loss_scale) {
            let scale = saved.first().copied().unwrap_or(0.0);
            if saved.len() != 5 || !(1.0..=MAX_SCALE).contains(&scale) {
                return Err(TrainError::Other(format!(
                    "checkpoint's loss-scale state {saved:?} is not [scale ≥ 1, count, skipped, \
                     skip, unscale]"
                )));
            }
            gpu.write(&ls.state, saved);
        }
        Ok(trainer)
    }

    /// Teacher backbone values by torch-hub name.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn teacher_backbone_values(&self) -> Result<BTreeMap<String, Vec<f32>>, TrainError> {
        pollster::block_on(self.teacher_backbone_values_async())
    }

    /// [`Trainer::teacher_backbone_values`] without blocking.
    pub async fn teacher_backbone_values_async(
        &self,
    ) -> Result<BTreeMap<String, Vec<f32>>, TrainError> {
        let teacher = self.teacher.view(0, &[self.backbone_layout.total]);
        let flat = self.gpu.read_async(&teacher).await?;
        Ok(self.backbone_layout.unpack(&flat))
    }
}

/// Everything needed to continue a run exactly.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainState {
    /// Steps done.
    pub step: u64,
    /// Student flat buffer.
    pub student: Vec<f32>,
    /// Teacher flat buffer.
    pub teacher: Vec<f32>,
    /// AdamW first moment.
    pub m1: Vec<f32>,
    /// AdamW second moment.
    pub m2: Vec<f32>,
    /// DINO center.
    pub center_dino: Vec<f32>,
    /// iBOT center.
    pub center_ibot: Vec<f32>,
    /// The Gram teacher's backbone (runs with Gram anchoring).
    pub gram_teacher: Option<Vec<f32>>,
    /// The loss-scaling state (mixed precision): scale, finite steps in a row, steps skipped,
    /// and the last step's skip flag and unscale factor.
    pub loss_scale: Option<Vec<f32>>,
}
