//! The DINOv2 / DINOv3 ViT forward pass on the GPU, recorded into one [`Recorder`].
//!
//! Order of operations (pre-norm blocks with LayerScale):
//! patch embedding → mask token → [CLS, registers, patches] + positions (resized when the patch
//! grid differs from the stored one; none for DINOv3) → per block `x += ls1 ⊙ proj(attn(LN1 x))`,
//! `x += ls2 ⊙ fc2(gelu(fc1(LN2 x)))` → final LayerNorm. DINOv3 turns the patch tokens' queries
//! and keys by their rotary angles between the qkv projection and attention.

use super::config::{Ffn, VitConfig};
use super::params::{ParamLayout, ParamStore};
use super::weights::{expected_tensors, BackboneWeights};
use crate::gpu::{DType, Gpu, Recorder, Tensor};
use crate::kernels;
use crate::kernels::attention::{AttnDims, OutLayout, QkvLayout};
use crate::kernels::interp::{GridLayout, InterpDims, InterpWeights};
use crate::kernels::layernorm::LayerNormSaved;
use crate::kernels::patch_embed::PatchDims;
use crate::kernels::tokens::{PosSource, TokenDims, TokenParams};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

mod backward;
mod block;
pub use backward::HalfProducts;
use block::BlockShape;

/// A problem building or running the model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The input does not fit the model.
    #[error("{0}")]
    Input(String),
    /// The configuration is not supported by the runtime.
    #[error("unsupported model: {0}")]
    Unsupported(String),
}

/// What a forward pass should keep besides the final tokens.
#[derive(Clone, Debug, Default)]
pub struct ForwardOptions {
    /// Layers whose attention probabilities [B, H, N, N] are computed (see
    /// `cls_attention_only`).
    pub attention_layers: Vec<usize>,
    /// Those layers keep the CLS token's row alone, [B, H, 1, N]: all attention maps show,
    /// in memory linear in the tokens rather than quadratic.
    pub cls_attention_only: bool,
    /// Keep the embedding output and every block output (before the final norm).
    pub hidden_states: bool,
    /// Keep what the backward pass needs.
    pub save_for_backward: bool,
    /// Per-sample drop path (training only): for each block, the scales `[B]` of its attention and
    /// MLP branches (0 for a dropped sample, 1/keep otherwise).
    pub drop_path: Option<Vec<(Tensor, Tensor)>>,
    /// With `save_for_backward`: the first this many blocks keep only their input and are
    /// recomputed in the backward pass (activation checkpointing).
    pub checkpoint_blocks: usize,
    /// Rotary models in training: for each block, the factor its patch coordinates are
    /// multiplied by (DINOv3's `rescale_coords`); `None` (or a missing block) is 1.
    pub rope_scales: Option<Vec<f32>>,
}

/// Activations of one block kept for the backward pass.
pub struct BlockActs {
    /// Block input.
    pub x_in: Tensor,
    /// LN1 statistics and output.
    pub ln1: LayerNormSaved,
    /// LN1 output [B·N, D].
    pub h1: Tensor,
    /// qkv [B, N, 3D].
    pub qkv: Tensor,
    /// Attention output, heads merged [B·N, D].
    pub attn: Tensor,
    /// Attention log-sum-exp [B, H, N].
    pub lse: Tensor,
    /// Output projection [B·N, D] (before LayerScale).
    pub proj: Tensor,
    /// After the attention residual.
    pub x_mid: Tensor,
    /// LN2 statistics.
    pub ln2: LayerNormSaved,
    /// LN2 output.
    pub h2: Tensor,
    /// fc1 pre-activation [B·N, hidden].
    pub pre: Tensor,
    /// GELU output.
    pub act: Tensor,
    /// fc2 output (before LayerScale, after drop path).
    pub mlp: Tensor,
    /// Drop-path scales of the two branches.
    pub drop: Option<(Tensor, Tensor)>,
}

impl BlockActs {
    /// The activations as f32: each f16 one copied up (a mixed-precision forward stores them in
    /// f16), f32 ones shared. With `keep_f16` the operands of the f16 backward (the linear
    /// layers' inputs `h1`, `h2`, `act` and `attn`, and attention's `qkv`) stay as saved.
    fn into_f32(self, rec: &mut Recorder, keep_f16: bool) -> BlockActs {
        let up = |rec: &mut Recorder, t: Tensor| kernels::cast::to_dtype(rec, &t, DType::F32);
        let operand = |rec: &mut Recorder, t: Tensor| if keep_f16 { t } else { up(rec, t) };
        BlockActs {
            x_in: up(rec, self.x_in),
            ln1: self.ln1,
            h1: operand(rec, self.h1),
            qkv: operand(rec, self.qkv),
            attn: operand(rec, self.attn),
            lse: self.lse,
            proj: up(rec, self.proj),
            x_mid: up(rec, self.x_mid),
            ln2: self.ln2,
            h2: operand(rec, self.h2),
            pre: up(rec, self.pre),
            act: operand(rec, self.act),
            mlp: up(rec, self.mlp),
            drop: self.drop,
        }
    }
}

/// Everything a forward pass produced.
pub struct VitOutput {
    /// Final-normed tokens [B, N, D]: CLS, registers, patches.
    pub tokens: Tensor,
    /// Patch-embedding output [B, P, D].
    pub patch_embeddings: Tensor,
    /// The resized patch position embeddings [P, D]; `None` when the stored grid was used as is.
    pub pos_patch: Option<Tensor>,
    /// Embedding output and each block output, before the final norm (if asked).
    pub hidden_states: Vec<Tensor>,
    /// (layer, probabilities [B, H, N, N], or [B, H, 1, N] with `cls_attention_only`) for the
    /// layers asked.
    pub attentions: Vec<(usize, Tensor)>,
    /// Patch grid (rows, columns).
    pub grid: (usize, usize),
    /// Tokens per image.
    pub n_tokens: usize,
    /// For the backward pass (if asked): im2col rows, per-block activations, final-norm stats,
    /// the pre-norm output.
    pub saved: Option<SavedForward>,
}

/// What one block kept for the backward pass.
pub enum SavedBlock {
    /// Every activation its backward reads.
    Full(Box<BlockActs>),
    /// Only its input (and drop-path scales): the backward pass recomputes the rest.
    Input {
        /// Block input.
        x_in: Tensor,
        /// Drop-path scales of the two branches.
        drop: Option<(Tensor, Tensor)>,
    },
}

/// Forward activations the backward pass reads.
pub struct SavedForward {
    /// im2col rows of the patch embedding.
    pub cols: Tensor,
    /// Per-block activations.
    pub blocks: Vec<SavedBlock>,
    /// Final-norm input.
    pub x_final: Tensor,
    /// Final-norm statistics.
    pub norm: LayerNormSaved,
    /// Each block's rotary coordinate factor (1 without rescaling).
    pub rope_scales: Vec<f32>,
}

/// A DINOv2 backbone on the GPU.
pub struct Vit {
    /// Its configuration.
    pub cfg: VitConfig,
    /// Parameters (torch-hub names) in one flat buffer.
    pub params: ParamStore,
    interp_cache: Mutex<HashMap<(usize, usize), Arc<InterpWeights>>>,
    /// Resized position tables by grid, kept by a model that owns its parameters (built by
    /// [`Vit::from_host_as`] and the constructors over it, whose weights nothing updates);
    /// `None` for a view of a training buffer, whose table changes every step.
    fixed_positions: Option<Mutex<HashMap<(usize, usize), Tensor>>>,
    rope_cache: Mutex<HashMap<(usize, usize), Arc<RopeTables>>>,
    /// Ones of width `dim`, standing in for LayerScale γ in a model without it.
    ones: std::sync::OnceLock<Tensor>,
}

/// How many resized position tables a model that owns its weights keeps at once.
const KEPT_POSITION_GRIDS: usize = 8;

/// Rotary (cos, sin) tables [P, head_dim] of one patch grid.
type RopeTables = (Tensor, Tensor);

/// The parameter layout of a config: torch-hub names in [`expected_tensors`] order.
pub fn param_layout(cfg: &VitConfig) -> ParamLayout {
    ParamLayout::new(&expected_tensors(cfg))
}

impl Vit {
    /// Uploads loaded weights.
    pub fn new(gpu: &Gpu, cfg: VitConfig, weights: &BackboneWeights) -> Result<Vit, ModelError> {
        Self::new_as(gpu, cfg, weights, DType::F32)
    }

    /// Uploads loaded weights stored as `dtype` (f16 is for inference; it needs SHADER_F16).
    pub fn new_as(
        gpu: &Gpu,
        cfg: VitConfig,
        weights: &BackboneWeights,
        dtype: DType,
    ) -> Result<Vit, ModelError> {
        let values: BTreeMap<String, Vec<f32>> = weights
            .tensors
            .iter()
            .map(|(k, v)| (k.clone(), v.data.clone()))
            .collect();
        Self::from_host_as(gpu, cfg, &values, dtype)
    }

    /// Uploads named host values (torch-hub names); missing ones are zero, and one of another
    /// size than the config's is refused.
    pub fn from_host(
        gpu: &Gpu,
        cfg: VitConfig,
        values: &BTreeMap<String, Vec<f32>>,
    ) -> Result<Vit, ModelError> {
        Self::from_host_as(gpu, cfg, values, DType::F32)
    }

    /// [`Vit::from_host`] with the parameters stored as `dtype` (f16: rounded to nearest).
    pub fn from_host_as(
        gpu: &Gpu,
        cfg: VitConfig,
        values: &BTreeMap<String, Vec<f32>>,
        dtype: DType,
    ) -> Result<Vit, ModelError> {
        if dtype == DType::F16 && !gpu.features.contains(wgpu::Features::SHADER_F16) {
            return Err(ModelError::Unsupported(format!(
                "f16 needs the SHADER_F16 feature, which {} does not offer; use f32",
                gpu.info.name
            )));
        }
        cfg.validate()
            .map_err(|e| ModelError::Unsupported(e.to_string()))?;
        let layout = ParamLayout::aligned(&expected_tensors(&cfg), dtype);
        // A value of another size would be cut short or padded silently by the packing.
        for e in &layout.entries {
            if let Some(v) = values.get(&e.name).filter(|v| v.len() != e.numel()) {
                return Err(ModelError::Input(format!(
                    "parameter '{}' has {} values; the model's config needs {:?} ({})",
                    e.name,
                    v.len(),
                    e.shape,
                    e.numel()
                )));
            }
        }
        let flat = layout.pack(values);
        Ok(Vit {
            params: ParamStore::upload_as(gpu, layout, &flat, dtype),
            cfg,
            interp_cache: Mutex::default(),
            fixed_positions: Some(Mutex::default()),
            rope_cache: Mutex::default(),
            ones: std::sync::OnceLock::new(),
        })
    }

    /// A model over an existing parameter store (a view of a training buffer), which must hold
    /// `cfg`'s parameters by name and shape.
    pub fn from_store(cfg: VitConfig, params: ParamStore) -> Result<Vit, ModelError> {
        cfg.validate()
            .map_err(|e| ModelError::Unsupported(e.to_string()))?;
        for (name, shape) in expected_tensors(&cfg) {
            match params.layout.get(&name) {
                Some(e) if e.shape == shape => {}
                Some(e) => {
                    return Err(ModelError::Input(format!(
                    "parameter '{name}' of the store has shape {:?}; the config needs {shape:?}",
                    e.shape
                )))
                }
                None => {
                    return Err(ModelError::Input(format!(
                        "the parameter store has no '{name}', which the config needs"
                    )))
                }
            }
        }
        Ok(Vit {
            cfg,
            params,
            interp_cache: Mutex::default(),
            fixed_positions: None,
            rope_cache: Mutex::default(),
            ones: std::sync::OnceLock::new(),
        })
    }

    fn p(&self, name: &str) -> Tensor {
        self.params.get(name)
    }

    /// The element type of the parameters and activations.
    pub fn dtype(&self) -> DType {
        self.params.flat.dtype()
    }

    /// What to tell a user whose outputs of this model hold NaN or infinite values.
    pub fn not_finite_message(&self) -> &'static str {
        match self.dtype() {
            DType::F16 => {
                "the model's output is not finite in f16 (an activation exceeded f16's range of \
                 ±65,504): use f32 precision for this model"
            }
            DType::F32 => "the model's output is not finite (NaN or infinite values)",
        }
    }

    /// The same model with its parameters stored in `dtype` (f16: rounded to nearest), for
    /// inference; the copy reads the parameters back once.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn to_dtype(&self, gpu: &Gpu, dtype: DType) -> Result<Vit, ModelError> {
        let flat = gpu
            .read(&self.params.flat)
            .map_err(|e| ModelError::Unsupported(e.to_string()))?;
        let values = self.params.layout.unpack(&flat);
        Self::from_host_as(gpu, self.cfg.clone(), &values, dtype)
    }

    /// Block `i`'s LayerScale γ (`which` is "ls1" or "ls2"), or ones for a model without
    /// LayerScale: the same kernels then compute `x + branch`.
    fn layer_scale(&self, gpu: &Gpu, i: usize, which: &str) -> Tensor {
        let name = format!("blocks.{i}.{which}.gamma");
        if self.cfg.layerscale {
            return self.p(&name);
        }
        self.ones
            .get_or_init(|| gpu.upload_as(&vec![1.0; self.cfg.dim], &[self.cfg.dim], self.dtype()))
            .clone()
    }

    /// Where block `i`'s LayerScale gradient goes: its slot in `grads`, or a scratch buffer
    /// whose contents are never read for a model without LayerScale.
    fn layer_scale_grad(&self, gpu: &Gpu, grads: &ParamStore, i: usize, which: &str) -> Tensor {
        if self.cfg.layerscale {
            return grads.get(&format!("blocks.{i}.{which}.gamma"));
        }
        gpu.empty(&[self.cfg.dim])
    }

    /// Number of tokens for an image of `h`×`w` pixels.
    pub fn tokens_for(&self, h: usize, w: usize) -> usize {
        1 + self.cfg.registers + (h / self.cfg.patch) * (w / self.cfg.patch)
    }

    /// Position embeddings for a gh×gw grid: the stored table, or a resize of its grid.
    fn positions(&self, rec: &mut Recorder, gh: usize, gw: usize) -> Tensor {
        let m = self.cfg.pos_grid;
        let d = self.cfg.dim;
        let table = self.p("pos_embed");
        if gh == m && gw == m {
            return table.view(0, &[1 + m * m, d]);
        }
        let weights = self.interp_weights(rec.gpu(), gh, gw);
        let resize_in = |rec: &mut Recorder| {
            let out = rec.gpu().empty_as(&[gh * gw, d], table.dtype());
            kernels::interp::interp_forward(rec, &out, &table, &weights);
            out
        };
        let Some(fixed) = &self.fixed_positions else {
            return resize_in(rec);
        };
        let mut fixed = fixed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = fixed.get(&(gh, gw)) {
            return t.clone();
        }
        // Resized in a submission of its own, kept only once that went through: a recording
        // that is dropped unsubmitted must not leave an uncomputed table behind. Submissions
        // run in order, so the table is ready before `rec`'s work reads it; and its buffer is
        // a new one, which none of `rec`'s work, submitted later, writes.
        let gpu = rec.gpu();
        let out = gpu.empty_fresh(&[gh * gw, d], table.dtype());
        let mut own = Recorder::new(gpu);
        kernels::interp::interp_forward(&mut own, &out, &table, &weights);
        if own.finish().is_err() {
            // Recorded into `rec` instead, whose submission then reports what went wrong.
            return resize_in(rec);
        }
        // A few grids cover a session (the crop sizes); images of ever-new sizes (the app's
        // inspect view keeps their aspect) would otherwise pile up a table each.
        if fixed.len() >= KEPT_POSITION_GRIDS {
            fixed.clear();
        }
        fixed.insert((gh, gw), out.clone());
        out
    }

    /// The interpolation weights from the stored grid to gh×gw, built once per grid.
    fn interp_weights(&self, gpu: &Gpu, gh: usize, gw: usize) -> Arc<InterpWeights> {
        let m = self.cfg.pos_grid;
        let d = self.cfg.dim;
        let mut cache = self.interp_cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry((gh, gw))
            .or_insert_with(|| {
                let dims = InterpDims {
                    channels: d,
                    h_in: m,
                    w_in: m,
                    h_out: gh,
                    w_out: gw,
                    mode: self.cfg.interp,
                    layout: GridLayout::ChannelLast,
                };
                Arc::new(InterpWeights::new(gpu, dims).with_input_offset(d))
            })
            .clone()
    }

    /// The rotary (cos, sin) tables [gh·gw, head_dim] of a grid with its coordinates multiplied
    /// by `scale`, built once per grid at scale 1 (a training step's random scales are built
    /// each time); `None` for a model with a learned position table.
    fn rope_tables(&self, gpu: &Gpu, gh: usize, gw: usize, scale: f32) -> Option<Arc<RopeTables>> {
        let rope = self.cfg.rope?;
        let hd = self.cfg.head_dim();
        if scale != 1.0 {
            let (cos, sin) = super::rope::tables_scaled(gh, gw, hd, rope.base, scale);
            return Some(Arc::new((
                gpu.upload(&cos, &[gh * gw, hd]),
                gpu.upload(&sin, &[gh * gw, hd]),
            )));
        }
        let mut cache = self.rope_cache.lock().unwrap_or_else(|e| e.into_inner());
        Some(
            cache
                .entry((gh, gw))
                .or_insert_with(|| {
                    let (cos, sin) = super::rope::tables(gh, gw, hd, rope.base);
                    Arc::new((
                        gpu.upload(&cos, &[gh * gw, hd]),
                        gpu.upload(&sin, &[gh * gw, hd]),
                    ))
                })
                .clone(),
        )
    }

    /// Rotates the patch tokens' queries and keys of `qkv` in place (`inverse`: their
    /// gradients); nothing for a model without rotary positions.
    fn rotate(&self, rec: &mut Recorder, qkv: &Tensor, shape: BlockShape, inverse: bool) {
        let (gh, gw) = shape.grid;
        let Some(tables) = self.rope_tables(rec.gpu(), gh, gw, shape.rope_scale) else {
            return;
        };
        let dims = kernels::rope::RopeDims {
            batch: shape.batch,
            tokens: shape.n,
            prefix: 1 + self.cfg.registers,
            heads: shape.ad.heads,
            head_dim: shape.ad.head_dim,
        };
        kernels::rope::rope_apply(rec, qkv, &tables.0, &tables.1, dims, inverse);
    }

    /// Interpolation weights used for a grid (for the backward pass).
    pub(crate) fn interp_for(&self, gh: usize, gw: usize) -> Option<Arc<InterpWeights>> {
        self.interp_cache.lock().ok()?.get(&(gh, gw)).cloned()
    }

    /// Checks an input size against the model.
    pub fn check_input(&self, h: usize, w: usize) -> Result<(usize, usize), ModelError> {
        let p = self.cfg.patch;
        if h < p || w < p || !h.is_multiple_of(p) || !w.is_multiple_of(p) {
            return Err(ModelError::Input(format!(
                "image size {h}×{w} is not a positive multiple of the patch size {p}"
            )));
        }
        Ok((h / p, w / p))
    }

    /// Records the forward pass of `pixels` [B, 3, H, W] (normalised), with an optional patch
    /// mask [B, P] (1 = replaced by the mask token).
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        rec: &mut Recorder,
        pixels: &Tensor,
        batch: usize,
        h: usize,
        w: usize,
        mask: Option<&Tensor>,
        opts: &ForwardOptions,
    ) -> Result<VitOutput, ModelError> {
        let cfg = &self.cfg;
        let (gh, gw) = self.check_input(h, w)?;
        if pixels.numel() != batch * cfg.in_chans * h * w {
            return Err(ModelError::Input(format!(
                "pixel tensor has {} values, expected {batch}×{}×{h}×{w}",
                pixels.numel(),
                cfg.in_chans
            )));
        }
        if batch == 0 {
            return Err(ModelError::Input("a batch of no images".into()));
        }
        if let Some(m) = mask.filter(|m| m.numel() != batch * gh * gw) {
            return Err(ModelError::Input(format!(
                "the mask has {} values, expected one a patch: {batch}×{gh}×{gw}",
                m.numel()
            )));
        }
        let Embedded {
            x,
            patch_embeddings,
            cols,
            pos_patch,
        } = self.embed(rec, pixels, batch, (h, w), (gh, gw), mask);
        let gpu = rec.gpu();
        let d = cfg.dim;
        let n = 1 + cfg.registers + gh * gw;
        let shape = BlockShape {
            batch,
            n,
            ad: AttnDims::new(batch, cfg.heads, n, d / cfg.heads),
            grid: (gh, gw),
            rope_scale: 1.0,
        };
        let Blocks {
            x,
            hidden_states,
            attentions,
            blocks,
            rope_scales,
        } = self.blocks_forward(rec, x, shape, opts);
        let tokens = gpu.empty_as(&[batch, n, d], self.dtype());
        let norm = kernels::layernorm::layernorm_forward(
            rec,
            &tokens,
            &x,
            &self.p("norm.weight"),
            &self.p("norm.bias"),
            cfg.ln_eps,
        );
        let saved = opts.save_for_backward.then(|| SavedForward {
            cols,
            blocks,
            x_final: x,
            norm,
            rope_scales,
        });
        Ok(VitOutput {
            tokens,
            patch_embeddings,
            pos_patch,
            hidden_states,
            attentions,
            grid: (gh, gw),
            n_tokens: n,
            saved,
        })
    }

    /// Records the token assembly: patch embedding, class and register tokens, the mask token
    /// where `mask` says, and the position table resized to the `grid` (none with RoPE).
    fn embed(
        &self,
        rec: &mut Recorder,
        pixels: &Tensor,
        batch: usize,
        (h, w): (usize, usize),
        (gh, gw): (usize, usize),
        mask: Option<&Tensor>,
    ) -> Embedded {
        let cfg = &self.cfg;
        let gpu = rec.gpu();
        let pixels = &kernels::cast::to_dtype(rec, pixels, self.dtype());
        let d = cfg.dim;
        let n_p = gh * gw;
        let n = 1 + cfg.registers + n_p;
        let pd = PatchDims {
            batch,
            channels: cfg.in_chans,
            height: h,
            width: w,
            patch: cfg.patch,
        };
        let patch_embeddings = gpu.empty_as(&[batch, n_p, d], self.dtype());
        let cols = kernels::patch_embed::patch_embed_forward(
            rec,
            &patch_embeddings,
            pixels,
            &self.p("patch_embed.proj.weight"),
            &self.p("patch_embed.proj.bias"),
            pd,
        );
        let learned = (!cfg.is_rope()).then(|| (self.p("pos_embed"), self.positions(rec, gh, gw)));
        let (pos, pos_patch) = match &learned {
            None => (None, None),
            Some((table, grid)) if grid.same_buffer(table) => (
                Some(PosSource {
                    cls: table,
                    cls_off: 0,
                    patch: table,
                    patch_off: d,
                }),
                None,
            ),
            Some((table, grid)) => (
                Some(PosSource {
                    cls: table,
                    cls_off: 0,
                    patch: grid,
                    patch_off: 0,
                }),
                Some(grid.clone()),
            ),
        };
        let regs = (cfg.registers > 0).then(|| self.p("register_tokens"));
        let tp = TokenParams {
            cls: &self.p("cls_token"),
            registers: regs.as_ref(),
            mask_token: &self.p("mask_token"),
        };
        let td = TokenDims {
            batch,
            n_patches: n_p,
            dim: d,
            registers: cfg.registers,
        };
        let x = gpu.empty_as(&[batch, n, d], self.dtype());
        kernels::tokens::tokens_forward(rec, &x, &patch_embeddings, tp, pos, mask, td);
        Embedded {
            x,
            patch_embeddings,
            cols,
            pos_patch,
        }
    }

    /// Records every block on the tokens `x`, keeping what `opts` asks for.
    fn blocks_forward(
        &self,
        rec: &mut Recorder,
        mut x: Tensor,
        shape: BlockShape,
        opts: &ForwardOptions,
    ) -> Blocks {
        let cfg = &self.cfg;
        let mut hidden_states = Vec::new();
        if opts.hidden_states {
            hidden_states.push(x.clone());
        }
        let mut attentions = Vec::new();
        let mut blocks = Vec::new();
        let rope_scales: Vec<f32> = (0..cfg.depth)
            .map(|i| {
                let s = opts.rope_scales.as_ref().and_then(|v| v.get(i).copied());
                s.unwrap_or(1.0)
            })
            .collect();
        for (i, &rope_scale) in rope_scales.iter().enumerate() {
            let drop = opts.drop_path.as_ref().and_then(|v| v.get(i)).cloned();
            let rows = if opts.cls_attention_only { 1 } else { shape.n };
            let probs = opts.attention_layers.contains(&i).then_some(rows);
            let keep_all = opts.save_for_backward && i >= opts.checkpoint_blocks;
            let shape = BlockShape {
                rope_scale,
                ..shape
            };
            let (x_out, acts, p) =
                self.block_forward(rec, i, &x, shape, drop.clone(), probs, keep_all);
            if let Some(p) = p {
                attentions.push((i, p));
            }
            if opts.hidden_states {
                hidden_states.push(x_out.clone());
            }
            if opts.save_for_backward {
                blocks.push(match acts {
                    Some(a) => SavedBlock::Full(Box::new(a)),
                    None => SavedBlock::Input { x_in: x, drop },
                });
            }
            x = x_out;
        }
        Blocks {
            x,
            hidden_states,
            attentions,
            blocks,
            rope_scales,
        }
    }
}

/// The tokens of a forward pass before its first block, and what the backward pass needs of
/// their making.
struct Embedded {
    x: Tensor,
    patch_embeddings: Tensor,
    cols: Tensor,
    pos_patch: Option<Tensor>,
}

/// The blocks' output and what a forward pass keeps of them.
struct Blocks {
    x: Tensor,
    hidden_states: Vec<Tensor>,
    attentions: Vec<(usize, Tensor)>,
    blocks: Vec<SavedBlock>,
    rope_scales: Vec<f32>,
}
