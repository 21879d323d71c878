//! One pre-norm block's forward pass: `x += ls1 ⊙ proj(attn(LN1 x))`, then
//! `x += ls2 ⊙ fc2(act(fc1(LN2 x)))`, each branch scaled per row by drop path where it is on.

use super::{BlockActs, Vit};
use crate::gpu::{Recorder, Tensor};
use crate::kernels;
use crate::kernels::attention::{AttnDims, OutLayout, QkvLayout};
use crate::model::config::Ffn;

/// Sizes one block works on: batch, tokens per image, attention dims.
#[derive(Clone, Copy, Debug)]
pub(super) struct BlockShape {
    pub batch: usize,
    pub n: usize,
    pub ad: AttnDims,
    pub grid: (usize, usize),
    /// The block's rotary coordinate factor (1: none).
    pub rope_scale: f32,
}

impl Vit {
    /// Records block `i` on `x` [B, N, D]: returns its output, its activations when `save`, and
    /// the probabilities of its first `probs` queries when asked. The backward pass calls it again for a
    /// checkpointed block; every kernel is deterministic, so the recomputation is bit-identical.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn block_forward(
        &self,
        rec: &mut Recorder,
        i: usize,
        x: &Tensor,
        shape: BlockShape,
        drop: Option<(Tensor, Tensor)>,
        probs: Option<usize>,
        save: bool,
    ) -> (Tensor, Option<BlockActs>, Option<Tensor>) {
        let cfg = &self.cfg;
        let gpu = rec.gpu();
        let rows = shape.batch * shape.n;
        let b = |s: &str| self.p(&format!("blocks.{i}.{s}"));
        let h1 = gpu.empty_as(&[rows, cfg.dim], self.dtype());
        let (w, bias) = (b("norm1.weight"), b("norm1.bias"));
        let ln1 = kernels::layernorm::layernorm_forward(rec, &h1, x, &w, &bias, cfg.ln_eps);
        let (qkv, attn, lse, p, proj) = self.attention_branch(rec, i, &h1, shape, probs);
        let s1 = drop.as_ref().map(|(s1, _)| s1);
        let (proj, x_mid) = self.residual(rec, (i, "ls1"), shape, x, proj, s1);
        let h2 = gpu.empty_as(&[rows, cfg.dim], self.dtype());
        let (w, bias) = (b("norm2.weight"), b("norm2.bias"));
        let ln2 = kernels::layernorm::layernorm_forward(rec, &h2, &x_mid, &w, &bias, cfg.ln_eps);
        let (pre, act, mlp) = self.mlp_branch(rec, i, &h2, rows, save);
        let s2 = drop.as_ref().map(|(_, s2)| s2);
        let (mlp, x_out) = self.residual(rec, (i, "ls2"), shape, &x_mid, mlp, s2);
        let acts = save.then(|| BlockActs {
            x_in: x.clone(),
            ln1,
            h1,
            qkv,
            attn,
            lse,
            proj,
            x_mid,
            ln2,
            h2,
            pre,
            act,
            mlp,
            drop,
        });
        (x_out, acts, p)
    }

    /// The attention branch on the normed input `h1`: (qkv, attention output, its log-sum-exp,
    /// the probabilities of the first `probs` queries when asked, the projection).
    fn attention_branch(
        &self,
        rec: &mut Recorder,
        i: usize,
        h1: &Tensor,
        shape: BlockShape,
        probs: Option<usize>,
    ) -> (Tensor, Tensor, Tensor, Option<Tensor>, Tensor) {
        let gpu = rec.gpu();
        let (batch, n, ad, d) = (shape.batch, shape.n, shape.ad, self.cfg.dim);
        let (heads, hd) = (ad.heads, ad.head_dim);
        let layout = QkvLayout::fused(heads, n, hd);
        let b = |s: &str| self.p(&format!("blocks.{i}.{s}"));
        let qkv = gpu.empty_as(&[batch, n, 3 * d], self.dtype());
        let (w, bias) = (b("attn.qkv.weight"), b("attn.qkv.bias"));
        kernels::linear::linear_forward(rec, &qkv, h1, &w, Some(&bias), None);
        self.rotate(rec, &qkv, shape, false);
        let attn = gpu.empty_as(&[batch * n, d], self.dtype());
        let ol = OutLayout::bnhd(heads, n, hd);
        let lse =
            kernels::attention::attention_forward(rec, &attn, &qkv, &qkv, &qkv, ad, layout, ol);
        let p = probs.map(|rows| {
            let p = gpu.empty_as(&[batch, heads, rows, n], self.dtype());
            kernels::attention::attention_probs_rows(rec, &p, &qkv, &qkv, &lse, ad, layout, rows);
            p
        });
        let proj = gpu.empty_as(&[batch * n, d], self.dtype());
        let (w, bias) = (b("attn.proj.weight"), b("attn.proj.bias"));
        kernels::linear::linear_forward(rec, &proj, &attn, &w, Some(&bias), None);
        (qkv, attn, lse, p, proj)
    }

    /// The MLP branch on the normed input `h2` [rows, D]: (the pre-activation, or SwiGLU's two
    /// halves; the activation; the output). Without `save`, a plain MLP's pre-activation is
    /// not written (an empty tensor stands for it).
    fn mlp_branch(
        &self,
        rec: &mut Recorder,
        i: usize,
        h2: &Tensor,
        rows: usize,
        save: bool,
    ) -> (Tensor, Tensor, Tensor) {
        let cfg = &self.cfg;
        let gpu = rec.gpu();
        let b = |s: &str| self.p(&format!("blocks.{i}.{s}"));
        let swiglu = cfg.ffn == Ffn::SwiGlu;
        let (fc1, fc2) = if swiglu {
            ("mlp.w12", "mlp.w3")
        } else {
            ("mlp.fc1", "mlp.fc2")
        };
        let pre_width = if swiglu {
            2 * cfg.mlp_hidden
        } else {
            cfg.mlp_hidden
        };
        let pre_rows = if save || swiglu { rows } else { 0 };
        let pre = gpu.empty_as(&[pre_rows, pre_width], self.dtype());
        let act = gpu.empty_as(&[rows, cfg.mlp_hidden], self.dtype());
        let (w1, b1) = (b(&format!("{fc1}.weight")), b(&format!("{fc1}.bias")));
        if swiglu {
            kernels::linear::linear_forward(rec, &pre, h2, &w1, Some(&b1), None);
            kernels::gelu::swiglu_forward(rec, &act, &pre, cfg.mlp_hidden);
        } else if save {
            kernels::linear::linear_forward(rec, &act, h2, &w1, Some(&b1), Some(&pre));
        } else {
            kernels::linear::linear_gelu_forward(rec, &act, h2, &w1, &b1);
        }
        let mlp = gpu.empty_as(&[rows, cfg.dim], self.dtype());
        let (w2, b2) = (b(&format!("{fc2}.weight")), b(&format!("{fc2}.bias")));
        kernels::linear::linear_forward(rec, &mlp, &act, &w2, Some(&b2), None);
        (pre, act, mlp)
    }

    /// `x + γ·branch` into a new buffer (every block input survives for the backward pass),
    /// the branch first scaled per row by drop path's `scale` where given: (the branch as
    /// added, the sum).
    fn residual(
        &self,
        rec: &mut Recorder,
        (i, ls): (usize, &str),
        shape: BlockShape,
        x: &Tensor,
        branch: Tensor,
        scale: Option<&Tensor>,
    ) -> (Tensor, Tensor) {
        let gpu = rec.gpu();
        let (batch, n, d) = (shape.batch, shape.n, self.cfg.dim);
        let branch = match scale {
            Some(s) => {
                let dropped = gpu.empty_as(&[batch * n, d], self.dtype());
                kernels::elementwise::scale_rows(rec, &dropped, &branch, s);
                // The unscaled branch goes back to the pool before the sum is allocated.
                drop(branch);
                dropped
            }
            None => branch,
        };
        let out = gpu.empty_as(&[batch, n, d], self.dtype());
        kernels::elementwise::add_mul(rec, &out, x, &branch, &self.layer_scale(gpu, i, ls));
        (branch, out)
    }
}
