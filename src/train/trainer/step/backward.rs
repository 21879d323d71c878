//! The step's backward pass by phase: the losses' gradients (DINO and the heads, KoLeo, iBOT,
//! Gram anchoring) into the global crops' token gradients, then the student backbone on the
//! global crops, then on the local crops.

use super::{Losses, TrainError};
use super::{StepInputs, StudentForward, TeacherTargets, Trainer};
use crate::gpu::{Recorder, Tensor};
use crate::kernels;
use crate::model::params::ParamStore;
use crate::model::vit::{HalfProducts, VitOutput};
use crate::train::config::StepValues;
use crate::train::head::HeadActs;

/// The student's head side of a step, where the losses' gradients start.
struct HeadSide {
    cls_g: Tensor,
    logits: Tensor,
    head_acts: HeadActs,
    patch: Option<(Tensor, HeadActs)>,
}

impl Trainer<'_> {
    /// Gradients of the weighted losses into `self.grads`: heads, then the global crops'
    /// backbone pass, then the local crops'. Consumes the student's activations, freeing each
    /// block's as its backward is recorded.
    pub(in crate::train::trainer) fn backward(
        &self,
        rec: &mut Recorder,
        inp: &StepInputs,
        t: &TeacherTargets,
        s: StudentForward,
        losses: &Losses,
        sv: &StepValues,
    ) -> Result<(), TrainError> {
        let (b, g, d) = (inp.b, inp.g, self.cfg.model.dim);
        let g_backbone = self.backbone_store(&self.grads);
        let StudentForward {
            mut out_g,
            out_l,
            cls_g,
            logits,
            head_acts,
            patch,
        } = s;
        let heads = HeadSide {
            cls_g,
            logits,
            head_acts,
            patch,
        };
        // `held`: tensors the backbone passes do not read, kept to the end as they always were
        // (the pool's reuse, and so the step's peak, stay as `plan` has measured them).
        let (d_tokens_g, d_cls_all, held) = self.loss_gradients(rec, inp, t, heads, losses, sv);
        let d_tokens_g = d_tokens_g.reshape(&[2 * b, inp.n_g, d]);
        let use_ibot = self.cfg.ibot_weight > 0.0;
        let half = self.half_products();
        self.student_vit.backward_mixed(
            rec,
            &mut out_g,
            &d_tokens_g,
            &g_backbone,
            None,
            (2 * b, g, g),
            use_ibot.then_some(&inp.mask),
            half,
        )?;
        drop((out_g, d_tokens_g));
        if let Some(o) = out_l {
            self.local_backward(rec, inp, o, d_cls_all, &g_backbone)?;
        }
        drop(held);
        Ok(())
    }

    /// The gradient of every loss with respect to the global crops' tokens `[2B·N, D]` (the
    /// heads' weight gradients recorded on the way), the CLS gradient of every crop
    /// `[(2 + local)·B, D]`, whose local rows the local crops' pass takes, and the global CLS
    /// tokens and the two loss weights, for the caller to drop.
    fn loss_gradients(
        &self,
        rec: &mut Recorder,
        inp: &StepInputs,
        t: &TeacherTargets,
        heads: HeadSide,
        losses: &Losses,
        sv: &StepValues,
    ) -> (Tensor, Tensor, [Tensor; 3]) {
        let gpu = self.gpu;
        let cfg = &self.cfg;
        let (b, nl, d, k) = (inp.b, inp.nl, cfg.model.dim, cfg.head.prototypes);
        let s_head = self.head_store(&self.student);
        let g_head: ParamStore = self.head_store(&self.grads);
        let HeadSide {
            cls_g,
            logits,
            head_acts,
            patch,
        } = heads;
        let up_dino = gpu.upload(&[cfg.dino_weight], &[1]);
        let up_koleo = gpu.upload(&[cfg.koleo_weight], &[1]);
        // With mixed precision every loss's gradient starts multiplied by the loss scale (the
        // weights carry it), so the f16 products of the heads and the backbone see it.
        let ls = self.loss_scale.as_ref();
        let overflow = ls.map(|ls| &ls.overflow);
        if let Some(ls) = ls {
            ls.scale(rec, &up_dino);
            ls.scale(rec, &up_koleo);
        }
        let d_logits = gpu.empty(&[(2 + nl) * b, k]);
        let pairs = self.pairs(sv);
        kernels::losses::dino_loss_backward(
            rec,
            &d_logits,
            &up_dino,
            &logits,
            &t.probs,
            k,
            pairs,
            pairs.default_scale(),
            false,
        );
        drop(logits);
        let d_cls_all = self
            .head
            .backward_mixed(rec, &s_head, &g_head, &head_acts, d_logits, overflow);
        drop(head_acts);
        let d_tokens_g = rec.zeros(&[2 * b * inp.n_g, d]);
        let d_cls_g = gpu.empty(&[2 * b, d]);
        rec.copy_range(&d_cls_all, 0, &d_cls_g, 0, 2 * b * d);
        kernels::losses::koleo_backward(
            rec,
            &d_cls_g,
            &up_koleo,
            &cls_g,
            &losses.koleo_saved,
            d,
            b,
            1.0 / b as f32,
            true,
        );
        kernels::gather::scatter_add_rows(rec, &d_tokens_g, &d_cls_g, &inp.cls_g_idx, d);
        drop(d_cls_g);
        if let Some(patch) = patch {
            self.ibot_gradient(rec, inp, t, patch, &d_tokens_g);
        }
        self.gram_gradient(rec, inp, losses, sv, &d_tokens_g);
        (d_tokens_g, d_cls_all, [cls_g, up_dino, up_koleo])
    }

    /// iBOT's masked-patch loss through its head, added into the global tokens' gradient.
    fn ibot_gradient(
        &self,
        rec: &mut Recorder,
        inp: &StepInputs,
        t: &TeacherTargets,
        (s_plog, s_pacts): (Tensor, HeadActs),
        d_tokens_g: &Tensor,
    ) {
        let (Some(m), Some(t_pprobs)) = (&inp.masked, &t.patch_probs) else {
            return;
        };
        let (gpu, cfg) = (self.gpu, &self.cfg);
        let ki = cfg.ibot_prototypes();
        let up_ibot = gpu.upload(&[cfg.ibot_weight], &[1]);
        let ls = self.loss_scale.as_ref();
        if let Some(ls) = ls {
            ls.scale(rec, &up_ibot);
        }
        let d_plog = gpu.empty(&[m.n, ki]);
        kernels::cross_entropy::cross_entropy_backward(
            rec,
            &d_plog,
            &up_ibot,
            &s_plog,
            t_pprobs,
            ki,
            self.ibot_options(&m.w),
            false,
        );
        drop(s_plog);
        let (s_head, g_head) = (self.head_store(&self.student), self.head_store(&self.grads));
        let overflow = ls.map(|ls| &ls.overflow);
        let d_patch = self
            .ibot_head
            .backward_mixed(rec, &s_head, &g_head, &s_pacts, d_plog, overflow);
        drop(s_pacts);
        kernels::gather::scatter_add_rows(rec, d_tokens_g, &d_patch, &m.idx, cfg.model.dim);
    }

    /// Gram anchoring's loss, added into the global tokens' gradient where it is on.
    fn gram_gradient(
        &self,
        rec: &mut Recorder,
        inp: &StepInputs,
        losses: &Losses,
        sv: &StepValues,
        d_tokens_g: &Tensor,
    ) {
        let (Some(saved), Some(idx)) = (&losses.gram_saved, &inp.patch_idx) else {
            return;
        };
        let d = self.cfg.model.dim;
        let dims = self.gram_dims(inp);
        let d_xs = self.gpu.empty(&[dims.batch * dims.patches, d]);
        kernels::gram::gram_loss_backward(rec, &d_xs, saved, sv.gram_weight, dims, false);
        if let Some(ls) = self.loss_scale.as_ref() {
            ls.scale(rec, &d_xs);
        }
        kernels::gather::scatter_add_rows(rec, d_tokens_g, &d_xs, idx, d);
    }

    /// The local crops' backbone pass, from their rows of the CLS gradient.
    fn local_backward(
        &self,
        rec: &mut Recorder,
        inp: &StepInputs,
        mut out_l: VitOutput,
        d_cls_all: Tensor,
        g_backbone: &ParamStore,
    ) -> Result<(), TrainError> {
        let (b, l, nl, d) = (inp.b, inp.l, inp.nl, self.cfg.model.dim);
        let d_tokens_l = rec.zeros(&[nl * b * inp.n_l, d]);
        let d_cls_l = self.gpu.empty(&[nl * b, d]);
        rec.copy_range(&d_cls_all, 2 * b * d, &d_cls_l, 0, nl * b * d);
        kernels::gather::scatter_add_rows(rec, &d_tokens_l, &d_cls_l, &inp.cls_l_idx, d);
        drop((d_cls_l, d_cls_all));
        let d_tokens_l = d_tokens_l.reshape(&[nl * b, inp.n_l, d]);
        let half = self.half_products();
        self.student_vit.backward_mixed(
            rec,
            &mut out_l,
            &d_tokens_l,
            g_backbone,
            None,
            (nl * b, l, l),
            None,
            half,
        )?;
        Ok(())
    }

    /// With mixed precision: what the student backbone's f16 backward products need (its
    /// incoming gradient already carries the loss scale).
    fn half_products(&self) -> Option<HalfProducts<'_>> {
        let (ls, (twin, _)) = self.loss_scale.as_ref().zip(self.half.as_ref())?;
        Some(HalfProducts {
            twin,
            overflow: &ls.overflow,
        })
    }
}
