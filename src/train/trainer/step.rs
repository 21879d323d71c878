//! One training step as its phases: inputs → teacher targets → student forward → losses →
//! backward → update. Each phase takes what it reads and returns what later phases need, so the
//! tensors that live across phases are the fields of the structs below and nothing else; a
//! phase's own intermediates go back to the pool as soon as it has recorded them.

use super::{PendingStep, StepMetrics, TrainError, Trainer, METRIC_NORMS};
use crate::data::loader::Batch;
use crate::gpu::{DType, Recorder, Tensor};
use crate::kernels;
use crate::kernels::adamw::AdamWStep;
use crate::kernels::cross_entropy::CrossEntropy;
use crate::kernels::gram::{GramDims, GramSaved};
use crate::kernels::interp::InterpMode;
use crate::kernels::interp::{GridLayout, InterpDims, InterpWeights};
use crate::kernels::loss_scale::{SCALE, SKIP};
use crate::kernels::losses::DinoPairs;
use crate::model::vit::{ForwardOptions, VitOutput};
use crate::train::config::{StepValues, Targets};
use crate::train::head::HeadActs;

mod backward;

/// The batch on the GPU, with the sizes every phase uses.
pub(super) struct StepInputs {
    b: usize,
    g: usize,
    l: usize,
    nl: usize,
    n_g: usize,
    n_l: usize,
    globals: Tensor,
    locals: Tensor,
    mask: Tensor,
    cls_g_idx: Tensor,
    cls_l_idx: Tensor,
    /// Masked patches: rows of the [2B·N, D] token matrix and their iBOT weights.
    masked: Option<MaskedRows>,
    /// With Gram anchoring: every patch row of the [2B·N, D] token matrix, image by image.
    patch_idx: Option<Tensor>,
    /// The Gram teacher's crops `[2B, 3, S, S]` as packed bytes, with `augment.gram_size` set
    /// (normalised only at steps that run the Gram teacher).
    gram_crops: Option<Tensor>,
}

struct MaskedRows {
    n: usize,
    idx: Tensor,
    w: Tensor,
}

/// The teacher's targets: DINO [2B, K] and, with iBOT, the masked patches' [n_masked, K_ibot].
pub(super) struct TeacherTargets {
    probs: Tensor,
    patch_probs: Option<Tensor>,
}

/// The student's forward passes and head outputs, kept for the losses and the backward pass.
pub(super) struct StudentForward {
    out_g: VitOutput,
    out_l: Option<VitOutput>,
    cls_g: Tensor,
    logits: Tensor,
    head_acts: HeadActs,
    patch: Option<(Tensor, HeadActs)>,
}

/// The loss values [1] and what the backward of KoLeo and Gram anchoring reads.
pub(super) struct Losses {
    dino: Tensor,
    ibot: Tensor,
    koleo: Tensor,
    gram: Tensor,
    koleo_saved: kernels::losses::KoleoSaved,
    gram_saved: Option<GramSaved>,
}

/// 8-bit channel-first crops `[rows, 3, side, side]` uploaded and normalised on the GPU.
fn normalized(rec: &mut Recorder, table: &Tensor, crops: &[u8], shape: &[usize; 4]) -> Tensor {
    let bytes = rec.gpu().upload_bytes_packed(crops);
    looked_up(rec, table, &bytes, shape)
}

/// Crops already uploaded as packed bytes, normalised on the GPU.
fn looked_up(rec: &mut Recorder, table: &Tensor, bytes: &Tensor, shape: &[usize; 4]) -> Tensor {
    let out = rec.gpu().empty(shape);
    kernels::gather::lookup_bytes(rec, &out, table, bytes, shape[2] * shape[3]);
    out
}

impl Trainer<'_> {
    fn pairs(&self, sv: &StepValues) -> DinoPairs {
        DinoPairs {
            batch: self.cfg.batch_size,
            n_student: 2 + self.cfg.augment.n_local,
            n_global: 2,
            n_teacher: 2,
            temp: self.cfg.student_temp,
            local_weight: sv.dino_local_weight,
        }
    }

    fn ibot_options<'a>(&self, w: &'a Tensor) -> CrossEntropy<'a> {
        CrossEntropy {
            temperature: self.cfg.student_temp,
            scale: 1.0 / (2 * self.cfg.batch_size) as f32,
            row_weight: Some(w),
        }
    }

    /// Checks the batch against the config and uploads it: the crops as 8-bit values, which
    /// the step's first dispatches normalise (a quarter of the floats' traffic).
    pub(super) fn step_inputs(
        &self,
        rec: &mut Recorder,
        batch: &Batch,
    ) -> Result<StepInputs, TrainError> {
        let gpu = self.gpu;
        let cfg = &self.cfg;
        let b = cfg.batch_size;
        let (g, l, nl) = (
            cfg.augment.global_size,
            cfg.augment.local_size,
            cfg.augment.n_local,
        );
        let first_patch = 1 + cfg.model.registers;
        let n_g = self.student_vit.tokens_for(g, g);
        let n_l = self.student_vit.tokens_for(l, l);
        let p_g = n_g - first_patch;
        if batch.globals.len() != 2 * b * 3 * g * g
            || batch.locals.len() != nl * b * 3 * l * l
            || batch.masks.len() != 2 * b * p_g
            || !(batch.gram.is_empty()
                || batch.gram.len() == 2 * b * 3 * cfg.augment.gram_size.pow(2))
        {
            return Err(TrainError::Other(format!(
                "batch does not match the config ({} global, {} local values, {} mask entries, \
                 {} Gram-crop values)",
                batch.globals.len(),
                batch.locals.len(),
                batch.masks.len(),
                batch.gram.len()
            )));
        }
        let mut rows = Vec::new();
        let mut weights = Vec::new();
        if cfg.ibot_weight > 0.0 {
            for c in 0..2 * b {
                let m = &batch.masks[c * p_g..(c + 1) * p_g];
                let count = m.iter().filter(|&&v| v != 0.0).count();
                for (p, &v) in m.iter().enumerate() {
                    if v != 0.0 {
                        rows.push((c * n_g + first_patch + p) as f32);
                        weights.push(1.0 / count.max(1) as f32);
                    }
                }
            }
        }
        let table = &self.input_table;
        let masked = (!rows.is_empty()).then(|| MaskedRows {
            n: rows.len(),
            idx: gpu.upload(&rows, &[rows.len()]),
            w: gpu.upload(&weights, &[weights.len()]),
        });
        Ok(StepInputs {
            b,
            g,
            l,
            nl,
            n_g,
            n_l,
            globals: normalized(rec, table, &batch.globals, &[2 * b, 3, g, g]),
            // Without local crops nothing reads this tensor, but a buffer cannot be empty.
            locals: if nl > 0 {
                normalized(rec, table, &batch.locals, &[nl * b, 3, l, l])
            } else {
                gpu.upload(&[0.0], &[1])
            },
            mask: gpu.upload(&batch.masks, &[2 * b, p_g]),
            cls_g_idx: gpu.upload(
                &(0..2 * b).map(|c| (c * n_g) as f32).collect::<Vec<_>>(),
                &[2 * b],
            ),
            cls_l_idx: gpu.upload(
                &(0..(nl * b).max(1))
                    .map(|c| (c * n_l) as f32)
                    .collect::<Vec<_>>(),
                &[(nl * b).max(1)],
            ),
            masked,
            patch_idx: cfg.gram.as_ref().map(|_| {
                let rows: Vec<f32> = (0..2 * b)
                    .flat_map(|c| (0..p_g).map(move |p| (c * n_g + first_patch + p) as f32))
                    .collect();
                gpu.upload(&rows, &[rows.len()])
            }),
            gram_crops: (!batch.gram.is_empty()).then(|| gpu.upload_bytes_packed(&batch.gram)),
        })
    }

    fn gram_dims(&self, inp: &StepInputs) -> GramDims {
        GramDims {
            batch: 2 * inp.b,
            patches: inp.n_g - 1 - self.cfg.model.registers,
            dim: self.cfg.model.dim,
        }
    }

    /// With Gram anchoring on at this step: refreshes the Gram teacher from the EMA teacher
    /// when due, runs it on the unmasked global crops (or, with `augment.gram_size` set, on
    /// its own undistorted crops, its patch features then resized bicubically to the student's
    /// grid, as DINOv3 does) and returns its patch-similarity matrices [2B, P, P]. Its tokens
    /// are gone when this returns.
    pub(super) fn gram_targets(
        &self,
        rec: &mut Recorder,
        inp: &StepInputs,
        sv: &StepValues,
    ) -> Result<Option<Tensor>, TrainError> {
        let (Some((flat, vit)), Some(idx)) = (&self.gram_teacher, &inp.patch_idx) else {
            return Ok(None);
        };
        if sv.gram_refresh {
            rec.copy_range(&self.teacher, 0, flat, 0, self.backbone_layout.total);
        }
        if sv.gram_weight <= 0.0 {
            return Ok(None);
        }
        let dims = self.gram_dims(inp);
        let patches = self.gpu.empty(&[dims.batch * dims.patches, dims.dim]);
        let opts = ForwardOptions::default();
        let (s, patch) = (self.cfg.augment.gram_size, self.cfg.model.patch);
        match &inp.gram_crops {
            _ if s == 0 => {
                let out = vit.forward(rec, &inp.globals, dims.batch, inp.g, inp.g, None, &opts)?;
                kernels::gather::gather_rows(rec, &patches, &out.tokens, idx, dims.dim);
            }
            None => {
                return Err(TrainError::Other(format!(
                    "the batch of step {} has no Gram-teacher crops, though its Gram loss is on",
                    self.step
                )))
            }
            Some(bytes) => {
                let crops = looked_up(rec, &self.input_table, bytes, &[dims.batch, 3, s, s]);
                let out = vit.forward(rec, &crops, dims.batch, s, s, None, &opts)?;
                drop(crops);
                // The same grid needs no resize (DINOv3 skips it too).
                if s / patch == inp.g / patch {
                    kernels::gather::gather_rows(rec, &patches, &out.tokens, idx, dims.dim);
                } else {
                    self.resize_gram_features(rec, &patches, &out.tokens, s, inp);
                }
            }
        }
        Ok(Some(kernels::gram::gram_matrices(rec, &patches, dims)))
    }

    /// The Gram teacher's patch features of its `s`-pixel crops (`tokens`, [2B·N_S, D]) on the
    /// student's patch grid, into `patches` [2B·P, D]: plain bicubic (no antialiasing, half-pixel
    /// centres), DINOv3's `global_teacher_resize_method`.
    fn resize_gram_features(
        &self,
        rec: &mut Recorder,
        patches: &Tensor,
        tokens: &Tensor,
        s: usize,
        inp: &StepInputs,
    ) {
        let (m, d, patch) = (&self.cfg.model, self.cfg.model.dim, self.cfg.model.patch);
        let (first, n_s) = (1 + m.registers, self.student_vit.tokens_for(s, s));
        let (from, to) = (s / patch, inp.g / patch);
        let images = 2 * inp.b;
        let dims = InterpDims {
            channels: d,
            h_in: from,
            w_in: from,
            h_out: to,
            w_out: to,
            mode: InterpMode::Bicubic,
            layout: GridLayout::ChannelLast,
        };
        let w = InterpWeights::new(self.gpu, dims)
            .with_input_offset(first * d)
            .batched(images, n_s * d, to * to * d);
        kernels::interp::interp_forward(rec, patches, tokens, &w);
    }

    /// Teacher forward on the unmasked global crops, its head on the CLS rows and on the masked
    /// patch rows, and the targets (centering or Sinkhorn-Knopp). The teacher's tokens are gone
    /// when this returns.
    pub(super) fn teacher_targets(
        &self,
        rec: &mut Recorder,
        inp: &StepInputs,
        sv: &StepValues,
    ) -> Result<TeacherTargets, TrainError> {
        let gpu = self.gpu;
        let (b, g, d) = (inp.b, inp.g, self.cfg.model.dim);
        let t_head = self.head_store(&self.teacher);
        let t_out = self.forward_vits().1.forward(
            rec,
            &inp.globals,
            2 * b,
            g,
            g,
            None,
            &ForwardOptions::default(),
        )?;
        let t_tokens = kernels::cast::to_dtype(rec, &t_out.tokens, DType::F32);
        drop(t_out);
        let t_cls = gpu.empty(&[2 * b, d]);
        kernels::gather::gather_rows(rec, &t_cls, &t_tokens, &inp.cls_g_idx, d);
        let half = self.loss_scale.is_some();
        let (t_logits, _) = self.head.forward_mixed(rec, &t_head, &t_cls, 2 * b, half);
        drop(t_cls);
        let probs = self.targets(
            rec,
            &t_logits,
            &self.center_dino,
            self.cfg.head.prototypes,
            sv,
        );
        drop(t_logits);
        let patch_probs = inp.masked.as_ref().map(|m| {
            let t_patch = gpu.empty(&[m.n, d]);
            kernels::gather::gather_rows(rec, &t_patch, &t_tokens, &m.idx, d);
            let (t_plog, _) = self
                .ibot_head
                .forward_mixed(rec, &t_head, &t_patch, m.n, half);
            drop(t_patch);
            let ki = self.cfg.ibot_prototypes();
            self.targets(rec, &t_plog, &self.center_ibot, ki, sv)
        });
        Ok(TeacherTargets { probs, patch_probs })
    }

    /// Teacher probabilities from logits [rows, k]; with centering, the center moves too.
    fn targets(
        &self,
        rec: &mut Recorder,
        logits: &Tensor,
        center: &Tensor,
        k: usize,
        sv: &StepValues,
    ) -> Tensor {
        let probs = self.gpu.empty(logits.shape());
        match self.cfg.targets {
            Targets::Centering => {
                kernels::losses::teacher_softmax(rec, &probs, logits, center, sv.teacher_temp);
                kernels::losses::center_update(rec, center, logits, 0.9);
            }
            Targets::SinkhornKnopp => {
                kernels::losses::sinkhorn(rec, &probs, logits, k, sv.teacher_temp, 3)
            }
        }
        probs
    }

    /// Student forward on the masked global crops and the local crops (activations kept, or
    /// only block inputs where checkpointed), and the heads on the CLS rows and masked patches.
    pub(super) fn student_forward(
        &self,
        rec: &mut Recorder,
        inp: &StepInputs,
    ) -> Result<StudentForward, TrainError> {
        let gpu = self.gpu;
        let (b, g, l, nl, d) = (inp.b, inp.g, inp.l, inp.nl, self.cfg.model.dim);
        let s_head = self.head_store(&self.student);
        let checkpoint_blocks = self.cfg.checkpoint.blocks(self.cfg.model.depth);
        let save = |which: u64, samples: usize| ForwardOptions {
            save_for_backward: true,
            drop_path: self.drop_masks(which, samples),
            checkpoint_blocks,
            rope_scales: self.rope_scales(which),
            ..Default::default()
        };
        let use_ibot = self.cfg.ibot_weight > 0.0;
        let student = self.forward_vits().0;
        let out_g = student.forward(
            rec,
            &inp.globals,
            2 * b,
            g,
            g,
            use_ibot.then_some(&inp.mask),
            &save(0, 2 * b),
        )?;
        let out_l = if nl > 0 {
            let o = student.forward(rec, &inp.locals, nl * b, l, l, None, &save(1, nl * b))?;
            Some(o)
        } else {
            None
        };
        // The heads read f32 tokens (a mixed-precision forward stores f16 ones).
        let tokens_g = kernels::cast::to_dtype(rec, &out_g.tokens, DType::F32);
        let cls_all = gpu.empty(&[(2 + nl) * b, d]);
        let cls_g = gpu.empty(&[2 * b, d]);
        kernels::gather::gather_rows(rec, &cls_g, &tokens_g, &inp.cls_g_idx, d);
        rec.copy_range(&cls_g, 0, &cls_all, 0, 2 * b * d);
        if let Some(o) = &out_l {
            let tokens_l = kernels::cast::to_dtype(rec, &o.tokens, DType::F32);
            let cls_l = gpu.empty(&[nl * b, d]);
            kernels::gather::gather_rows(rec, &cls_l, &tokens_l, &inp.cls_l_idx, d);
            rec.copy_range(&cls_l, 0, &cls_all, 2 * b * d, nl * b * d);
        }
        let half = self.loss_scale.is_some();
        let (logits, head_acts) =
            self.head
                .forward_mixed(rec, &s_head, &cls_all, (2 + nl) * b, half);
        let patch = inp.masked.as_ref().map(|m| {
            let s_patch = gpu.empty(&[m.n, d]);
            kernels::gather::gather_rows(rec, &s_patch, &tokens_g, &m.idx, d);
            self.ibot_head
                .forward_mixed(rec, &s_head, &s_patch, m.n, half)
        });
        Ok(StudentForward {
            out_g,
            out_l,
            cls_g,
            logits,
            head_acts,
            patch,
        })
    }

    /// DINO (each student crop against the other global crop's target, the local crops' terms
    /// weighted as the step says), iBOT (weighted cross-entropy over the masked patches) and
    /// KoLeo (on the global CLS features).
    pub(super) fn losses(
        &self,
        rec: &mut Recorder,
        inp: &StepInputs,
        t: &TeacherTargets,
        s: &StudentForward,
        gram_targets: Option<Tensor>,
        sv: &StepValues,
    ) -> Losses {
        let gpu = self.gpu;
        let (b, d, k) = (inp.b, self.cfg.model.dim, self.cfg.head.prototypes);
        let pairs = self.pairs(sv);
        let dino = gpu.empty(&[1]);
        let _ = kernels::losses::dino_loss_forward(
            rec,
            &dino,
            &s.logits,
            &t.probs,
            k,
            pairs,
            pairs.default_scale(),
        );
        let koleo = gpu.empty(&[1]);
        let koleo_saved =
            kernels::losses::koleo_forward(rec, &koleo, &s.cls_g, d, b, 1.0 / b as f32);
        let ibot = rec.zeros(&[1]);
        if let (Some(m), Some(t_pprobs), Some((s_plog, _))) =
            (&inp.masked, &t.patch_probs, &s.patch)
        {
            let ki = self.cfg.ibot_prototypes();
            let opt = self.ibot_options(&m.w);
            let per_row = gpu.empty(&[m.n]);
            kernels::cross_entropy::cross_entropy_forward(
                rec, &per_row, None, s_plog, t_pprobs, ki, opt,
            );
            let weighted = gpu.empty(&[m.n]);
            kernels::elementwise::mul_forward(rec, &weighted, &per_row, &m.w, false);
            let sum = gpu.empty(&[1]);
            kernels::reduce::reduce(rec, &sum, &weighted, kernels::reduce::Reduce::Sum, false);
            kernels::elementwise::axpby(rec, &ibot, &sum, opt.scale, 0.0);
        }
        let gram = rec.zeros(&[1]);
        let gram_saved = match (gram_targets, &inp.patch_idx) {
            (Some(tg), Some(idx)) => {
                let dims = self.gram_dims(inp);
                let xs = gpu.empty(&[dims.batch * dims.patches, d]);
                kernels::gather::gather_rows(rec, &xs, &s.out_g.tokens, idx, d);
                Some(kernels::gram::gram_loss_forward(rec, &gram, &xs, &tg, dims))
            }
            _ => None,
        };
        Losses {
            dino,
            ibot,
            koleo,
            gram,
            koleo_saved,
            gram_saved,
        }
    }

    /// Per-module gradient clipping, AdamW over the flat buffer, teacher EMA. With mixed
    /// precision the gradients are unscaled first, and an overflowed step leaves the weights
    /// alone (decided on the GPU). Returns each module's gradient sum of squares before
    /// clipping (non-finite when a gradient is).
    pub(super) fn update(&self, rec: &mut Recorder, sv: &StepValues) -> Vec<Tensor> {
        let cfg = &self.cfg;
        let bt = self.backbone_layout.total;
        if let Some(ls) = &self.loss_scale {
            ls.unscale(rec, &self.grads);
        }
        let mut norms = vec![kernels::reduce::clip_grad_norm(
            rec,
            &self.grads.view(0, &[bt]),
            cfg.clip_grad,
        )];
        // Each head is its own module (the DINO head, then the iBOT head when separate).
        let ibot_start = self
            .head_layout
            .get("ibot_head.mlp.0.weight")
            .map_or(self.head_layout.total, |e| e.offset);
        for (start, end) in [(0, ibot_start), (ibot_start, self.head_layout.total)] {
            if end > start {
                norms.push(kernels::reduce::clip_grad_norm(
                    rec,
                    &self.grads.view(bt + start, &[end - start]),
                    cfg.clip_grad,
                ));
            }
        }
        let h = AdamWStep {
            lr: sv.lr,
            weight_decay: sv.weight_decay,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            t: (self.step + 1) as u32,
        };
        kernels::adamw::adamw_step_gated(
            rec,
            &self.student,
            &self.m1,
            &self.m2,
            &self.grads,
            &self.segments,
            h,
            self.loss_scale.as_ref().map(|ls| (&ls.state, SKIP)),
        );
        kernels::ema::ema_update(rec, &self.teacher, &self.student, sv.momentum);
        norms
    }

    /// Records and submits one step on a batch without waiting for it; the step counter
    /// advances at once. Read its metrics with [`PendingStep::read`].
    pub fn submit_step(&mut self, batch: &Batch) -> Result<PendingStep, TrainError> {
        let gpu = self.gpu;
        let sv: StepValues = self.cfg.at(self.step);
        self.refresh_segments(sv.freeze_last_layer);
        let mut rec = Recorder::new(gpu);
        let inp = self.step_inputs(&mut rec, batch)?;
        rec.clear(&self.grads);
        self.refresh_half(&mut rec);
        let targets = self.teacher_targets(&mut rec, &inp, &sv)?;
        let gram_targets = self.gram_targets(&mut rec, &inp, &sv)?;
        let student = self.student_forward(&mut rec, &inp)?;
        let losses = self.losses(&mut rec, &inp, &targets, &student, gram_targets, &sv);
        let cls_g = student.cls_g.clone();
        self.backward(&mut rec, &inp, &targets, student, &losses, &sv)?;
        // The loss scale this step ran with, before the update changes it.
        let scale = self.loss_scale.as_ref().map(|ls| {
            let t = rec.gpu().empty(&[1]);
            rec.copy_range(&ls.state, SCALE, &t, 0, 1);
            t
        });
        let norms = self.update(&mut rec, &sv);
        // Losses and gradient sums of squares in one small read: a NaN or Inf anywhere in the
        // step shows here.
        let metrics = rec.zeros(&[METRIC_NORMS + norms.len()]);
        rec.copy_range(&losses.dino, 0, &metrics, 0, 1);
        rec.copy_range(&losses.ibot, 0, &metrics, 1, 1);
        rec.copy_range(&losses.koleo, 0, &metrics, 2, 1);
        rec.copy_range(&losses.gram, 0, &metrics, 3, 1);
        if let (Some(ls), Some(scale)) = (&self.loss_scale, &scale) {
            rec.copy_range(scale, 0, &metrics, 4, 1);
            rec.copy_range(&ls.state, SKIP, &metrics, 5, 1);
        }
        for (i, n) in norms.iter().enumerate() {
            rec.copy_range(n, 0, &metrics, METRIC_NORMS + i, 1);
        }
        let step = self.step;
        let cfg = &self.cfg;
        let diagnose = cfg.log_every > 0 && step.is_multiple_of(cfg.log_every);
        let metrics = rec.stage(&metrics);
        let diagnostics = diagnose.then(|| (rec.stage(&targets.probs), rec.stage(&cls_g)));
        let dispatches = rec.dispatch_count();
        let submitted = rec.finish_submitted()?;
        self.step += 1;
        Ok(PendingStep {
            metrics,
            diagnostics,
            submitted,
            prototypes: cfg.head.prototypes,
            dim: cfg.model.dim,
            base: StepMetrics {
                step,
                lr: sv.lr,
                weight_decay: sv.weight_decay,
                momentum: sv.momentum,
                teacher_temp: sv.teacher_temp,
                masked: inp.masked.as_ref().map_or(0, |m| m.n),
                ..Default::default()
            },
            weights: (
                cfg.dino_weight,
                cfg.ibot_weight,
                cfg.koleo_weight,
                cfg.gram.as_ref().map(|_| sv.gram_weight),
            ),
            mixed: self.loss_scale.is_some(),
            dispatches,
        })
    }
}
