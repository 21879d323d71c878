//! The backward pass of the ViT: from dL/d tokens through the final norm, every block (its
//! saved activations, or a recomputation of a checkpointed one) and the token assembly to the
//! parameter gradients and, when asked, the pixels.

use super::*;

/// d_branch = dy ⊙ γ (overwritten); dγ += Σ_rows dy ⊙ branch. The backward of `x + γ ⊙ branch`
/// for the branch side (the residual side passes dy through unchanged).
fn layerscale_backward(
    rec: &mut Recorder,
    d_branch: &Tensor,
    d_gamma: &Tensor,
    dy: &Tensor,
    branch: &Tensor,
    gamma: &Tensor,
) {
    let operands = (branch, gamma);
    kernels::elementwise::mul_backward(rec, d_branch, d_gamma, dy, operands, (false, true));
}

/// The f16 side of a mixed-precision backward pass: the f16 twin whose forward saved the
/// activations (its weights go into the products, with the saved f16 activations) and the flag
/// its loss-scaled gradients raise when they leave f16's range.
#[derive(Clone, Copy)]
pub struct HalfProducts<'a> {
    /// The f16 copy of this model that ran the forward pass.
    pub twin: &'a Vit,
    /// Raised by `cast_checked` (see [`crate::kernels::loss_scale::LossScale`]).
    pub overflow: &'a Tensor,
}

impl Vit {
    /// A zeroed gradient store with the parameters' layout.
    pub fn zero_grads(&self, rec: &mut Recorder) -> ParamStore {
        let flat = rec.zeros(&[self.params.layout.total]);
        ParamStore {
            layout: self.params.layout.clone(),
            flat,
        }
    }

    /// Records the backward pass from `d_tokens` (dL/d final tokens [B, N, D]) through a forward
    /// run with `save_for_backward`. Parameter gradients are added into `grads` (same layout as
    /// the parameters); `d_pixels` [B, 3, H, W] is written when given. The saved activations are
    /// taken out of `out` and each block's are freed as soon as its backward is recorded.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        rec: &mut Recorder,
        out: &mut VitOutput,
        d_tokens: &Tensor,
        grads: &ParamStore,
        d_pixels: Option<&Tensor>,
        pixels_shape: (usize, usize, usize),
        mask: Option<&Tensor>,
    ) -> Result<(), ModelError> {
        self.backward_mixed(
            rec,
            out,
            d_tokens,
            grads,
            d_pixels,
            pixels_shape,
            mask,
            None,
        )
    }

    /// [`Vit::backward`] after a forward by this model's f16 twin, with the blocks' linear
    /// layers and attention on f16 operands (`half`; `d_tokens` loss-scaled; gradients in f32)
    /// or everything in f32 (`None`). Everything else (norms, GELU, the token assembly, the
    /// patch embedding) runs in f32 either way.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_mixed(
        &self,
        rec: &mut Recorder,
        out: &mut VitOutput,
        d_tokens: &Tensor,
        grads: &ParamStore,
        d_pixels: Option<&Tensor>,
        pixels_shape: (usize, usize, usize),
        mask: Option<&Tensor>,
        half: Option<HalfProducts>,
    ) -> Result<(), ModelError> {
        if self.dtype() != DType::F32 {
            return Err(ModelError::Unsupported(
                "the backward pass runs on f32 parameters (a mixed-precision forward uses an \
                 f16 copy)"
                    .into(),
            ));
        }
        let (batch, n, d) = (pixels_shape.0, out.n_tokens, self.cfg.dim);
        if d_tokens.numel() != batch * n * d {
            return Err(ModelError::Input(format!(
                "the tokens' gradient has {} values, expected {batch}×{n}×{d}",
                d_tokens.numel()
            )));
        }
        let SavedForward {
            cols,
            blocks,
            x_final,
            norm,
            rope_scales,
        } = out.saved.take().ok_or_else(|| {
            ModelError::Input("backward needs a forward run with save_for_backward".into())
        })?;
        let cfg = &self.cfg;
        let gpu = rec.gpu();
        // The backward pass runs in f32 on f32 parameters; a forward by this model's f16 copy
        // (mixed precision) saved f16 activations, copied up one use at a time.
        let x_final = kernels::cast::to_dtype(rec, &x_final, DType::F32);
        // Final norm.
        let mut dx = gpu.empty(&[batch, n, d]);
        kernels::layernorm::layernorm_backward(
            rec,
            &dx,
            &grads.get("norm.weight"),
            &grads.get("norm.bias"),
            d_tokens,
            &x_final,
            &self.p("norm.weight"),
            &norm,
            false,
            true,
        );
        drop((x_final, norm));
        let heads = cfg.heads;
        let hd = d / heads;
        let shape = BlockShape {
            batch,
            n,
            ad: AttnDims::new(batch, heads, n, hd),
            grid: out.grid,
            rope_scale: 1.0,
        };
        let cx = BackwardCtx {
            grads,
            half,
            layout: QkvLayout::fused(heads, n, hd),
            ol: OutLayout::bnhd(heads, n, hd),
        };
        for (i, saved) in blocks.into_iter().enumerate().rev() {
            // The block's own rotary tables, as its forward used them.
            let shape = BlockShape {
                rope_scale: rope_scales.get(i).copied().unwrap_or(1.0),
                ..shape
            };
            let a = self.block_activations(rec, i, saved, shape, half);
            let d_x_mid = self.mlp_backward(rec, i, &a, dx, &cx);
            dx = self.attention_block_backward(rec, i, &a, d_x_mid, shape, &cx);
        }
        let embed = EmbedBackward {
            cols,
            d_pixels,
            pixels_shape,
            grid: out.grid,
            resized_table: out.pos_patch.is_some(),
            mask,
        };
        self.embed_backward(rec, &dx, grads, embed);
        Ok(())
    }
}

/// What the backward of every block shares: the gradients, the f16 side and the attention
/// layouts.
#[derive(Clone, Copy)]
struct BackwardCtx<'a> {
    grads: &'a ParamStore,
    half: Option<HalfProducts<'a>>,
    layout: QkvLayout,
    ol: OutLayout,
}

/// What the backward of the token assembly and the patch embedding reads from the forward.
struct EmbedBackward<'a> {
    /// im2col rows of the patch embedding, as saved.
    cols: Tensor,
    d_pixels: Option<&'a Tensor>,
    pixels_shape: (usize, usize, usize),
    grid: (usize, usize),
    /// Whether the forward resized the position table to its grid.
    resized_table: bool,
    mask: Option<&'a Tensor>,
}

/// `d` scaled per sample by drop path's forward scales, or `d` itself without drop path.
fn through_drop_path(rec: &mut Recorder, d: Tensor, scales: Option<&Tensor>) -> Tensor {
    match scales {
        Some(s) => {
            let t = rec.gpu().empty(d.shape());
            kernels::elementwise::scale_rows(rec, &t, &d, s);
            t
        }
        None => d,
    }
}

impl Vit {
    /// Block `i`'s activations in f32 (its f16 operands kept for f16 products): the saved ones,
    /// or a checkpointed block's recomputed from its saved input.
    fn block_activations(
        &self,
        rec: &mut Recorder,
        i: usize,
        saved: SavedBlock,
        shape: BlockShape,
        half: Option<HalfProducts>,
    ) -> BlockActs {
        let keep = half.is_some();
        match saved {
            SavedBlock::Full(a) => a.into_f32(rec, keep),
            SavedBlock::Input { x_in, drop } => {
                // The twin recomputes the forward's own f16 values from the saved input.
                let (model, x_in) = match half {
                    Some(h) => (h.twin, x_in),
                    None => (self, kernels::cast::to_dtype(rec, &x_in, DType::F32)),
                };
                let (_, a, _) = model.block_forward(rec, i, &x_in, shape, drop, None, true);
                a.expect("block_forward saves when asked")
                    .into_f32(rec, keep)
            }
        }
    }

    /// dx = dy·W, dW += dyᵀ·x, db += Σ dy for the linear layer `name` of block `i`.
    #[allow(clippy::too_many_arguments)]
    fn block_linear_backward(
        &self,
        rec: &mut Recorder,
        cx: &BackwardCtx,
        i: usize,
        name: &str,
        dx: &Tensor,
        dy: &Tensor,
        x: &Tensor,
    ) {
        let weight = format!("blocks.{i}.{name}.weight");
        let dw = cx.grads.get(&weight);
        let db = cx.grads.get(&format!("blocks.{i}.{name}.bias"));
        match cx.half {
            Some(h) => kernels::linear::linear_backward_half(
                rec,
                Some(dx),
                &dw,
                Some(&db),
                dy,
                (x, &h.twin.p(&weight)),
                h.overflow,
                false,
                true,
            ),
            None => kernels::linear::linear_backward(
                rec,
                Some(dx),
                &dw,
                Some(&db),
                dy,
                x,
                &self.p(&weight),
                false,
                true,
            ),
        }
    }

    /// The MLP half of block `i`, `x_out = x_mid + ls2 ⊙ mlp(norm2(x_mid))`: from dL/d x_out
    /// (`dx`) to dL/d x_mid, its parameters' gradients added on the way.
    fn mlp_backward(
        &self,
        rec: &mut Recorder,
        i: usize,
        a: &BlockActs,
        dx: Tensor,
        cx: &BackwardCtx,
    ) -> Tensor {
        let cfg = &self.cfg;
        let gpu = rec.gpu();
        let rows = dx.numel() / cfg.dim;
        // dx flows to x_mid unchanged; the norm's backward adds the branch's part.
        let d_x_mid = dx.clone();
        let d_mlp = gpu.empty(&[rows, cfg.dim]);
        layerscale_backward(
            rec,
            &d_mlp,
            &self.layer_scale_grad(gpu, cx.grads, i, "ls2"),
            &dx,
            &a.mlp,
            &self.layer_scale(gpu, i, "ls2"),
        );
        let d_mlp = through_drop_path(rec, d_mlp, a.drop.as_ref().map(|(_, s2)| s2));
        let swiglu = cfg.ffn == Ffn::SwiGlu;
        let (fc1, fc2) = if swiglu {
            ("mlp.w12", "mlp.w3")
        } else {
            ("mlp.fc1", "mlp.fc2")
        };
        let d_act = gpu.empty(&[rows, cfg.mlp_hidden]);
        self.block_linear_backward(rec, cx, i, fc2, &d_act, &d_mlp, &a.act);
        let d_pre = gpu.empty(a.pre.shape());
        if swiglu {
            kernels::gelu::swiglu_backward(rec, &d_pre, &d_act, &a.pre, cfg.mlp_hidden, false);
        } else {
            kernels::gelu::gelu_backward(rec, &d_pre, &d_act, &a.pre, false);
        }
        let d_h2 = gpu.empty(&[rows, cfg.dim]);
        self.block_linear_backward(rec, cx, i, fc1, &d_h2, &d_pre, &a.h2);
        let gb = |s: &str| cx.grads.get(&format!("blocks.{i}.{s}"));
        kernels::layernorm::layernorm_backward(
            rec,
            &d_x_mid,
            &gb("norm2.weight"),
            &gb("norm2.bias"),
            &d_h2,
            &a.x_mid,
            &self.p(&format!("blocks.{i}.norm2.weight")),
            &a.ln2,
            true,
            true,
        );
        d_x_mid
    }

    /// The attention half of block `i`, `x_mid = x_in + ls1 ⊙ attn(norm1(x_in))`: from dL/d
    /// x_mid to dL/d x_in, its parameters' gradients added on the way.
    fn attention_block_backward(
        &self,
        rec: &mut Recorder,
        i: usize,
        a: &BlockActs,
        d_x_mid: Tensor,
        shape: BlockShape,
        cx: &BackwardCtx,
    ) -> Tensor {
        let d = self.cfg.dim;
        let gpu = rec.gpu();
        let rows = shape.batch * shape.n;
        let d_x_in = d_x_mid.clone();
        let d_proj = gpu.empty(&[rows, d]);
        layerscale_backward(
            rec,
            &d_proj,
            &self.layer_scale_grad(gpu, cx.grads, i, "ls1"),
            &d_x_mid,
            &a.proj,
            &self.layer_scale(gpu, i, "ls1"),
        );
        let d_proj = through_drop_path(rec, d_proj, a.drop.as_ref().map(|(s1, _)| s1));
        let d_attn = gpu.empty(&[rows, d]);
        self.block_linear_backward(rec, cx, i, "attn.proj", &d_attn, &d_proj, &a.attn);
        // With f16 products attention's backward also runs on the saved f16 operands and
        // a loss-scaled dO checked into f16; its gradients come out in f32 either way.
        let d_attn = match cx.half {
            Some(h) => {
                let t = gpu.empty_as(d_attn.shape(), DType::F16);
                kernels::cast::cast_checked(rec, &t, &d_attn, h.overflow);
                t
            }
            None => d_attn,
        };
        let d_qkv = gpu.empty(&[shape.batch, shape.n, 3 * d]);
        kernels::attention::attention_backward(
            rec, &d_qkv, &d_qkv, &d_qkv, &d_attn, &a.qkv, &a.qkv, &a.qkv, &a.attn, &a.lse,
            shape.ad, cx.layout, cx.ol,
        );
        drop(d_attn);
        self.rotate(rec, &d_qkv, shape, true);
        let d_h1 = gpu.empty(&[rows, d]);
        self.block_linear_backward(rec, cx, i, "attn.qkv", &d_h1, &d_qkv, &a.h1);
        let gb = |s: &str| cx.grads.get(&format!("blocks.{i}.{s}"));
        kernels::layernorm::layernorm_backward(
            rec,
            &d_x_in,
            &gb("norm1.weight"),
            &gb("norm1.bias"),
            &d_h1,
            &a.x_in,
            &self.p(&format!("blocks.{i}.norm1.weight")),
            &a.ln1,
            true,
            true,
        );
        d_x_in
    }

    /// From dL/d tokens after the token assembly (`dx`) to the class, register and mask
    /// tokens, the position table, the patch embedding and, when asked, the pixels.
    fn embed_backward(
        &self,
        rec: &mut Recorder,
        dx: &Tensor,
        grads: &ParamStore,
        e: EmbedBackward,
    ) {
        let cfg = &self.cfg;
        let gpu = rec.gpu();
        let g = |name: &str| grads.get(name);
        let (batch, h, w) = e.pixels_shape;
        let (gh, gw) = e.grid;
        let d = cfg.dim;
        let n_p = gh * gw;
        let td = TokenDims {
            batch,
            n_patches: n_p,
            dim: d,
            registers: cfg.registers,
        };
        let mask = e.mask;
        let d_patches = gpu.empty(&[batch, n_p, d]);
        let d_regs = (cfg.registers > 0).then(|| g("register_tokens"));
        let tg = TokenParams {
            cls: &g("cls_token"),
            registers: d_regs.as_ref(),
            mask_token: &g("mask_token"),
        };
        let d_table = (!cfg.is_rope()).then(|| g("pos_embed"));
        match (
            &d_table,
            self.interp_for(gh, gw).filter(|_| e.resized_table),
        ) {
            (None, _) => {
                kernels::tokens::tokens_backward(rec, Some(&d_patches), tg, None, dx, mask, td);
            }
            (Some(d_table), Some(weights)) => {
                let d_grid = rec.zeros(&[n_p, d]);
                let src = PosSource {
                    cls: d_table,
                    cls_off: 0,
                    patch: &d_grid,
                    patch_off: 0,
                };
                let src = Some(src);
                kernels::tokens::tokens_backward(rec, Some(&d_patches), tg, src, dx, mask, td);
                kernels::interp::interp_backward(rec, d_table, &d_grid, &weights, true);
            }
            (Some(d_table), None) => {
                let src = Some(PosSource {
                    cls: d_table,
                    cls_off: 0,
                    patch: d_table,
                    patch_off: d,
                });
                kernels::tokens::tokens_backward(rec, Some(&d_patches), tg, src, dx, mask, td);
            }
        }
        let pd = PatchDims {
            batch,
            channels: cfg.in_chans,
            height: h,
            width: w,
            patch: cfg.patch,
        };
        let cols = kernels::cast::to_dtype(rec, &e.cols, DType::F32);
        kernels::patch_embed::patch_embed_backward(
            rec,
            e.d_pixels,
            &g("patch_embed.proj.weight"),
            &g("patch_embed.proj.bias"),
            &d_patches,
            &cols,
            &self.p("patch_embed.proj.weight"),
            pd,
            true,
        );
    }
}
