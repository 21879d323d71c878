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
        let (batch, h, w) = pixels_shape;
        let (gh, gw) = out.grid;
        let n = out.n_tokens;
        let d = cfg.dim;
        let rows = batch * n;
        let g = |name: &str| grads.get(name);
        // The backward pass runs in f32 on f32 parameters; a forward by this model's f16 copy
        // (mixed precision) saved f16 activations, copied up one use at a time.
        let x_final = kernels::cast::to_dtype(rec, &x_final, DType::F32);
        // Final norm.
        let mut dx = gpu.empty(&[batch, n, d]);
        kernels::layernorm::layernorm_backward(
            rec,
            &dx,
            &g("norm.weight"),
            &g("norm.bias"),
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
        let ad = AttnDims::new(batch, heads, n, hd);
        let layout = QkvLayout::fused(heads, n, hd);
        let ol = OutLayout::bnhd(heads, n, hd);
        let shape = BlockShape {
            batch,
            n,
            ad,
            grid: (gh, gw),
            rope_scale: 1.0,
        };
        let keep = half.is_some();
        for (i, saved) in blocks.into_iter().enumerate().rev() {
            // The block's own rotary tables, as its forward used them.
            let shape = BlockShape {
                rope_scale: rope_scales.get(i).copied().unwrap_or(1.0),
                ..shape
            };
            let a = match saved {
                SavedBlock::Full(a) => a.into_f32(rec, keep),
                SavedBlock::Input { x_in, drop } => {
                    // The twin recomputes the forward's own f16 values from the saved input.
                    let (model, x_in) = match half {
                        Some(h) => (h.twin, x_in),
                        None => (self, kernels::cast::to_dtype(rec, &x_in, DType::F32)),
                    };
                    let (_, a, _) = model.block_forward(rec, i, &x_in, shape, drop, false, true);
                    a.expect("block_forward saves when asked")
                        .into_f32(rec, keep)
                }
            };
            let a = &a;
            // dx = dy·W, dW += dyᵀ·x, db += Σ dy for one linear layer of this block.
            let linear = |rec: &mut Recorder, dx: &Tensor, name: &str, dy: &Tensor, x: &Tensor| {
                let weight = format!("blocks.{i}.{name}.weight");
                let dw = grads.get(&weight);
                let db = grads.get(&format!("blocks.{i}.{name}.bias"));
                match half {
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
            };
            let b = |s: &str| self.p(&format!("blocks.{i}.{s}"));
            let gb = |s: &str| grads.get(&format!("blocks.{i}.{s}"));
            // x_out = x_mid + ls2 ⊙ mlp: dx flows to x_mid unchanged.
            let d_x_mid = dx.clone();
            let d_mlp = gpu.empty(&[rows, d]);
            layerscale_backward(
                rec,
                &d_mlp,
                &self.layer_scale_grad(gpu, grads, i, "ls2"),
                &dx,
                &a.mlp,
                &self.layer_scale(gpu, i, "ls2"),
            );
            // Through drop path: the same per-sample scale.
            let d_mlp = match &a.drop {
                Some((_, s2)) => {
                    let t = gpu.empty(&[rows, d]);
                    kernels::elementwise::scale_rows(rec, &t, &d_mlp, s2);
                    t
                }
                None => d_mlp,
            };
            let swiglu = cfg.ffn == Ffn::SwiGlu;
            let (fc1, fc2) = if swiglu {
                ("mlp.w12", "mlp.w3")
            } else {
                ("mlp.fc1", "mlp.fc2")
            };
            let d_act = gpu.empty(&[rows, cfg.mlp_hidden]);
            linear(rec, &d_act, fc2, &d_mlp, &a.act);
            let d_pre = gpu.empty(a.pre.shape());
            if swiglu {
                kernels::gelu::swiglu_backward(rec, &d_pre, &d_act, &a.pre, cfg.mlp_hidden, false);
            } else {
                kernels::gelu::gelu_backward(rec, &d_pre, &d_act, &a.pre, false);
            }
            let d_h2 = gpu.empty(&[rows, d]);
            linear(rec, &d_h2, fc1, &d_pre, &a.h2);
            kernels::layernorm::layernorm_backward(
                rec,
                &d_x_mid,
                &gb("norm2.weight"),
                &gb("norm2.bias"),
                &d_h2,
                &a.x_mid,
                &b("norm2.weight"),
                &a.ln2,
                true,
                true,
            );
            // x_mid = x_in + ls1 ⊙ proj.
            let d_x_in = d_x_mid.clone();
            let d_proj = gpu.empty(&[rows, d]);
            layerscale_backward(
                rec,
                &d_proj,
                &self.layer_scale_grad(gpu, grads, i, "ls1"),
                &d_x_mid,
                &a.proj,
                &self.layer_scale(gpu, i, "ls1"),
            );
            let d_proj = match &a.drop {
                Some((s1, _)) => {
                    let t = gpu.empty(&[rows, d]);
                    kernels::elementwise::scale_rows(rec, &t, &d_proj, s1);
                    t
                }
                None => d_proj,
            };
            let d_attn = gpu.empty(&[rows, d]);
            linear(rec, &d_attn, "attn.proj", &d_proj, &a.attn);
            // With f16 products attention's backward also runs on the saved f16 operands and
            // a loss-scaled dO checked into f16; its gradients come out in f32 either way.
            let d_attn = match half {
                Some(h) => {
                    let t = gpu.empty_as(d_attn.shape(), DType::F16);
                    kernels::cast::cast_checked(rec, &t, &d_attn, h.overflow);
                    t
                }
                None => d_attn,
            };
            let d_qkv = gpu.empty(&[batch, n, 3 * d]);
            kernels::attention::attention_backward(
                rec, &d_qkv, &d_qkv, &d_qkv, &d_attn, &a.qkv, &a.qkv, &a.qkv, &a.attn, &a.lse, ad,
                layout, ol,
            );
            drop(d_attn);
            self.rotate(rec, &d_qkv, shape, true);
            let d_h1 = gpu.empty(&[rows, d]);
            linear(rec, &d_h1, "attn.qkv", &d_qkv, &a.h1);
            kernels::layernorm::layernorm_backward(
                rec,
                &d_x_in,
                &gb("norm1.weight"),
                &gb("norm1.bias"),
                &d_h1,
                &a.x_in,
                &b("norm1.weight"),
                &a.ln1,
                true,
                true,
            );
            dx = d_x_in;
        }
        // Token assembly.
        let n_p = gh * gw;
        let td = TokenDims {
            batch,
            n_patches: n_p,
            dim: d,
            registers: cfg.registers,
        };
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
            self.interp_for(gh, gw).filter(|_| out.pos_patch.is_some()),
        ) {
            (None, _) => {
                kernels::tokens::tokens_backward(rec, Some(&d_patches), tg, None, &dx, mask, td);
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
                kernels::tokens::tokens_backward(rec, Some(&d_patches), tg, src, &dx, mask, td);
                kernels::interp::interp_backward(rec, d_table, &d_grid, &weights, true);
            }
            (Some(d_table), None) => {
                let src = Some(PosSource {
                    cls: d_table,
                    cls_off: 0,
                    patch: d_table,
                    patch_off: d,
                });
                kernels::tokens::tokens_backward(rec, Some(&d_patches), tg, src, &dx, mask, td);
            }
        }
        let pd = PatchDims {
            batch,
            channels: cfg.in_chans,
            height: h,
            width: w,
            patch: cfg.patch,
        };
        let cols = kernels::cast::to_dtype(rec, &cols, DType::F32);
        kernels::patch_embed::patch_embed_backward(
            rec,
            d_pixels,
            &g("patch_embed.proj.weight"),
            &g("patch_embed.proj.bias"),
            &d_patches,
            &cols,
            &self.p("patch_embed.proj.weight"),
            pd,
            true,
        );
        Ok(())
    }
}
