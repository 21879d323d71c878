//! ViT configurations: the released DINOv2 presets, Hugging Face `config.json` files and our own
//! RON files.
//!
//! A [`VitConfig`] describes the backbone only (no heads). Three ways to get one:
//!
//! * [`VitConfig::preset`]: `vits14`, `vits14_reg`, `vitb14`, … `vitg14_reg` (spec §1.1).
//! * [`VitConfig::from_hf_json`]: the `config.json` of a Hugging Face `Dinov2Model` or
//!   `Dinov2WithRegistersModel` checkpoint.
//! * [`VitConfig::from_ron`] / [`VitConfig::to_ron`]: a RON file such as `assets/configs/vits14.ron`.
//!
//! [`VitConfig::load`] picks JSON or RON from the file extension. Every config that comes out of
//! these functions has passed [`VitConfig::validate`].

use crate::kernels::interp::InterpMode;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The feed-forward block of every transformer layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ffn {
    /// fc1 (D → hidden), exact GELU, fc2 (hidden → D): ViT-S/B/L.
    Mlp,
    /// w12 (D → 2·hidden), SiLU(first half) · second half, w3 (hidden → D): ViT-g.
    SwiGlu,
}

/// Serde mirror of [`InterpMode`] (which has no serde derive of its own).
#[derive(Serialize, Deserialize)]
#[serde(remote = "InterpMode")]
enum InterpModeDef {
    Bicubic,
    BicubicAntialias,
}

/// Shape and numerics of a DINOv2 ViT backbone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VitConfig {
    /// Embedding width D.
    pub dim: usize,
    /// Number of transformer blocks.
    pub depth: usize,
    /// Attention heads per block.
    pub heads: usize,
    /// Hidden width of the feed-forward block (for SwiGLU: the width after the gate).
    pub mlp_hidden: usize,
    /// Kind of feed-forward block.
    pub ffn: Ffn,
    /// Patch side in pixels (14 for DINOv2).
    pub patch: usize,
    /// Input channels (3).
    pub in_chans: usize,
    /// Register tokens (0 or 4 for the released models).
    pub registers: usize,
    /// Side M of the learned M×M position grid (37 for the released models: 518/14).
    pub pos_grid: usize,
    /// LayerNorm epsilon (1e-6 for DINOv2).
    pub ln_eps: f32,
    /// How the position grid is resized to other patch grids.
    #[serde(with = "InterpModeDef")]
    pub interp: InterpMode,
    /// Whether the fused qkv projection has a bias.
    pub qkv_bias: bool,
    /// Whether blocks have LayerScale factors (`ls1.gamma`, `ls2.gamma`).
    pub layerscale: bool,
    /// Rotary position embeddings (DINOv3) instead of the learned position table; `pos_grid`
    /// and `interp` are then unused.
    #[serde(default)]
    pub rope: Option<Rope>,
    /// Whether the key third of the qkv bias is used. DINOv3 masks it to zero (a bias on every
    /// key shifts each softmax row by a constant, so it has no effect on the output).
    #[serde(default = "default_true")]
    pub key_bias: bool,
}

/// DINOv3's axial rotary position embedding (spec §8.1).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rope {
    /// Period base: period j = base^(4j/head_dim) (100 for the released models).
    pub base: f32,
}

/// A config that cannot be read, parsed, is not supported or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{name}: cannot read config: {message}")]
    Read {
        /// File (or source) name.
        name: String,
        /// The I/O problem.
        message: String,
    },
    /// The text is not a valid config of the expected format.
    #[error("{name}: not a valid {format} config: {message}")]
    Parse {
        /// File (or source) name.
        name: String,
        /// "Hugging Face JSON" or "RON".
        format: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A model family or setting this runtime does not implement.
    #[error("{name}: {message}")]
    Unsupported {
        /// File (or source) name.
        name: String,
        /// What is not supported.
        message: String,
    },
    /// The config parsed but its values are inconsistent.
    #[error("{name}: invalid config: {message}")]
    Invalid {
        /// File (or source) name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// [`VitConfig::preset`] with a name that is not a preset.
    #[error(
        "unknown model preset '{name}' (known: {known}; DINOv2's also with a dinov2_ prefix, \
         DINOv3's with dinov3_)"
    )]
    UnknownPreset {
        /// The name asked for.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },
    /// [`VitConfig::load`] with a file that is neither `.json` nor `.ron`.
    #[error("{name}: unknown config format (expected a .json Hugging Face config or a .ron file)")]
    UnknownFormat {
        /// File name.
        name: String,
    },
}

/// Names accepted by [`VitConfig::preset`] (a `dinov2_` or `dinov3_` prefix is also accepted).
pub const PRESETS: [&str; 14] = [
    "vits14",
    "vits14_reg",
    "vitb14",
    "vitb14_reg",
    "vitl14",
    "vitl14_reg",
    "vitg14",
    "vitg14_reg",
    "vits16",
    "vits16plus",
    "vitb16",
    "vitl16",
    "vith16plus",
    "vit7b16",
];

/// DINOv3's SwiGLU width: ⌊ratio·D·2/3⌋ rounded up to a multiple of `align`.
fn swiglu_hidden_v3(dim: usize, ratio: usize, align: usize) -> usize {
    (ratio * dim * 2 / 3).div_ceil(align) * align
}

/// A released DINOv3 architecture (spec §8.1: hub/backbones.py), or `None` for another name.
fn preset_v3(name: &str) -> Option<VitConfig> {
    // (dim, depth, heads, SwiGLU (ratio, align) or None for the ×4 GELU MLP, qkv bias)
    let (dim, depth, heads, swiglu, qkv_bias) = match name {
        "vits16" => (384, 12, 6, None, true),
        "vits16plus" => (384, 12, 6, Some((6, 8)), true),
        "vitb16" => (768, 12, 12, None, true),
        "vitl16" => (1024, 24, 16, None, true),
        "vith16plus" => (1280, 32, 20, Some((6, 8)), true),
        "vit7b16" => (4096, 40, 32, Some((3, 64)), false),
        _ => return None,
    };
    let (ffn, mlp_hidden) = match swiglu {
        Some((ratio, align)) => (Ffn::SwiGlu, swiglu_hidden_v3(dim, ratio, align)),
        None => (Ffn::Mlp, 4 * dim),
    };
    Some(VitConfig {
        dim,
        depth,
        heads,
        mlp_hidden,
        ffn,
        patch: 16,
        in_chans: 3,
        registers: 4,
        pos_grid: 0,
        ln_eps: 1e-5,
        interp: InterpMode::Bicubic,
        qkv_bias,
        layerscale: true,
        rope: Some(Rope { base: 100.0 }),
        key_bias: false,
    })
}

/// SwiGLU hidden width of the original code for an MLP ratio of 4: `(int(4·D·2/3) + 7) // 8 · 8`.
fn swiglu_hidden(mlp_width: usize) -> usize {
    (mlp_width * 2 / 3).div_ceil(8) * 8
}

impl VitConfig {
    /// A released architecture by name: DINOv2's `vits14`, `vitb14`, `vitl14`, `vitg14`, each
    /// also with `_reg` (4 registers, antialiased position resize), and DINOv3's `vits16`,
    /// `vits16plus`, `vitb16`, `vitl16`, `vith16plus`, `vit7b16`.
    pub fn preset(name: &str) -> Result<VitConfig, ConfigError> {
        let key = name.trim();
        if let Some(cfg) = preset_v3(key.strip_prefix("dinov3_").unwrap_or(key)) {
            return Ok(cfg);
        }
        let key = key.strip_prefix("dinov2_").unwrap_or(key);
        let (base, registers) = match key.strip_suffix("_reg") {
            Some(b) => (b, 4),
            None => (key, 0),
        };
        let (dim, depth, heads) = match base {
            "vits14" => (384, 12, 6),
            "vitb14" => (768, 12, 12),
            "vitl14" => (1024, 24, 16),
            "vitg14" => (1536, 40, 24),
            _ => {
                return Err(ConfigError::UnknownPreset {
                    name: name.to_string(),
                    known: PRESETS.join(", "),
                })
            }
        };
        let (ffn, mlp_hidden) = if base == "vitg14" {
            (Ffn::SwiGlu, swiglu_hidden(4 * dim))
        } else {
            (Ffn::Mlp, 4 * dim)
        };
        Ok(VitConfig {
            dim,
            depth,
            heads,
            mlp_hidden,
            ffn,
            patch: 14,
            in_chans: 3,
            registers,
            pos_grid: 37,
            ln_eps: 1e-6,
            interp: if registers > 0 {
                InterpMode::BicubicAntialias
            } else {
                InterpMode::Bicubic
            },
            qkv_bias: true,
            layerscale: true,
            rope: None,
            key_bias: true,
        })
    }

    /// Whether this is a DINOv3-style backbone (rotary positions, no position table).
    pub fn is_rope(&self) -> bool {
        self.rope.is_some()
    }

    /// Reads a Hugging Face `config.json` of `Dinov2Model` / `Dinov2WithRegistersModel`;
    /// `name_for_errors` names the source in errors.
    pub fn from_hf_json(text: &str, name_for_errors: &str) -> Result<VitConfig, ConfigError> {
        let name = name_for_errors;
        let parse_err = |message: String| ConfigError::Parse {
            name: name.to_string(),
            format: "Hugging Face JSON",
            message,
        };
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| parse_err(e.to_string()))?;
        if !value.is_object() {
            return Err(parse_err("expected a JSON object".into()));
        }
        let model_type = value.get("model_type").and_then(|v| v.as_str());
        match model_type {
            None | Some("dinov2") | Some("dinov2_with_registers") => {}
            Some(t) if t.starts_with("dinov3") => return Self::from_hf_json_v3(value, name),
            Some(t) => {
                return Err(ConfigError::Unsupported {
                    name: name.to_string(),
                    message: format!(
                        "model_type '{t}' is not a DINOv2 or DINOv3 model (expected 'dinov2', \
                         'dinov2_with_registers' or 'dinov3_vit')"
                    ),
                })
            }
        }
        let hf: HfConfig =
            serde_json::from_value(value.clone()).map_err(|e| parse_err(e.to_string()))?;
        let ffn = if hf.use_swiglu_ffn {
            Ffn::SwiGlu
        } else {
            Ffn::Mlp
        };
        if ffn == Ffn::Mlp && hf.hidden_act != "gelu" {
            return Err(ConfigError::Unsupported {
                name: name.to_string(),
                message: format!(
                    "hidden_act '{}' is not supported (only \"gelu\", the exact erf GELU)",
                    hf.hidden_act
                ),
            });
        }
        if !(hf.mlp_ratio.is_finite() && hf.mlp_ratio > 0.0) {
            return Err(parse_err(format!(
                "mlp_ratio {} must be a positive number",
                hf.mlp_ratio
            )));
        }
        // Python: int(hidden_size * mlp_ratio); SwiGLU then takes (int(h·2/3) + 7) // 8 · 8.
        let mlp_width = (hf.hidden_size as f64 * hf.mlp_ratio) as usize;
        let mlp_hidden = match ffn {
            Ffn::Mlp => mlp_width,
            Ffn::SwiGlu => swiglu_hidden(mlp_width),
        };
        if hf.patch_size == 0 {
            return Err(parse_err("patch_size must be at least 1".into()));
        }
        let antialias = model_type == Some("dinov2_with_registers") || hf.num_register_tokens > 0;
        let cfg = VitConfig {
            dim: hf.hidden_size,
            depth: hf.num_hidden_layers,
            heads: hf.num_attention_heads,
            mlp_hidden,
            ffn,
            patch: hf.patch_size,
            in_chans: hf.num_channels,
            registers: hf.num_register_tokens,
            pos_grid: hf.image_size / hf.patch_size,
            ln_eps: hf.layer_norm_eps as f32,
            interp: if antialias {
                InterpMode::BicubicAntialias
            } else {
                InterpMode::Bicubic
            },
            qkv_bias: hf.qkv_bias,
            // Hugging Face's DINOv2 layers always have LayerScale (initialised to layerscale_value).
            layerscale: true,
            rope: None,
            key_bias: true,
        };
        cfg.validate_named(name)?;
        Ok(cfg)
    }

    /// Reads the `config.json` of a Hugging Face `DINOv3ViTModel` (already parsed).
    fn from_hf_json_v3(value: serde_json::Value, name: &str) -> Result<VitConfig, ConfigError> {
        let hf: HfConfigV3 = serde_json::from_value(value).map_err(|e| ConfigError::Parse {
            name: name.to_string(),
            format: "Hugging Face JSON",
            message: e.to_string(),
        })?;
        let unsupported = |message: String| ConfigError::Unsupported {
            name: name.to_string(),
            message,
        };
        let ffn = if hf.use_gated_mlp {
            Ffn::SwiGlu
        } else {
            Ffn::Mlp
        };
        let act_ok = match ffn {
            Ffn::Mlp => hf.hidden_act == "gelu",
            Ffn::SwiGlu => hf.hidden_act == "silu" || hf.hidden_act == "swish",
        };
        if !act_ok {
            return Err(unsupported(format!(
                "hidden_act '{}' is not supported with use_gated_mlp {} (expected \"{}\")",
                hf.hidden_act,
                hf.use_gated_mlp,
                if hf.use_gated_mlp { "silu" } else { "gelu" }
            )));
        }
        if hf.query_bias != hf.value_bias {
            return Err(unsupported(format!(
                "query_bias {} with value_bias {}: the runtime's qkv projection has a bias on \
                 both or on neither",
                hf.query_bias, hf.value_bias
            )));
        }
        if !hf.proj_bias || !hf.mlp_bias {
            return Err(unsupported(
                "proj_bias and mlp_bias false are not supported (every released DINOv3 model \
                 has them)"
                    .into(),
            ));
        }
        if !(hf.rope_theta.is_finite() && hf.rope_theta > 0.0) {
            return Err(ConfigError::Invalid {
                name: name.to_string(),
                message: format!("rope_theta {} must be a positive number", hf.rope_theta),
            });
        }
        let cfg = VitConfig {
            dim: hf.hidden_size,
            depth: hf.num_hidden_layers,
            heads: hf.num_attention_heads,
            mlp_hidden: hf.intermediate_size,
            ffn,
            patch: hf.patch_size,
            in_chans: hf.num_channels,
            registers: hf.num_register_tokens,
            pos_grid: 0,
            ln_eps: hf.layer_norm_eps as f32,
            interp: InterpMode::Bicubic,
            qkv_bias: hf.query_bias,
            layerscale: true,
            rope: Some(Rope {
                base: hf.rope_theta as f32,
            }),
            key_bias: hf.key_bias && hf.query_bias,
        };
        cfg.validate_named(name)?;
        Ok(cfg)
    }

    /// Reads a RON config; `name` names the source in errors.
    pub fn from_ron(text: &str, name: &str) -> Result<VitConfig, ConfigError> {
        let cfg: VitConfig = ron::from_str(text).map_err(|e| ConfigError::Parse {
            name: name.to_string(),
            format: "RON",
            message: e.to_string(),
        })?;
        cfg.validate_named(name)?;
        Ok(cfg)
    }

    /// The config as pretty-printed RON (what [`VitConfig::from_ron`] reads).
    pub fn to_ron(&self) -> Result<String, ConfigError> {
        let pretty = ron::ser::PrettyConfig::new();
        ron::ser::to_string_pretty(self, pretty).map_err(|e| ConfigError::Parse {
            name: "<to_ron>".to_string(),
            format: "RON",
            message: e.to_string(),
        })
    }

    /// Parses `text` as Hugging Face JSON or RON according to the extension of `name`
    /// (`.json` or `.ron`).
    pub fn from_text(text: &str, name: &str) -> Result<VitConfig, ConfigError> {
        let ext = Path::new(name)
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase());
        match ext.as_deref() {
            Some("json") => Self::from_hf_json(text, name),
            Some("ron") => Self::from_ron(text, name),
            _ => Err(ConfigError::UnknownFormat {
                name: name.to_string(),
            }),
        }
    }

    /// Reads a config file: Hugging Face `config.json` (`.json`) or RON (`.ron`).
    pub fn load(path: &Path) -> Result<VitConfig, ConfigError> {
        let name = path.display().to_string();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase());
        if !matches!(ext.as_deref(), Some("json") | Some("ron")) {
            return Err(ConfigError::UnknownFormat { name });
        }
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            name: name.clone(),
            message: e.to_string(),
        })?;
        Self::from_text(&text, &name)
    }

    /// Width of one attention head (dim / heads).
    pub fn head_dim(&self) -> usize {
        self.dim.checked_div(self.heads).unwrap_or(0)
    }

    /// Number of patch tokens of the stored position grid (M²).
    pub fn pos_tokens(&self) -> usize {
        self.pos_grid.saturating_mul(self.pos_grid)
    }

    /// Backbone parameter count: patch embedding, CLS, mask token, registers, position table,
    /// blocks and final norm (no heads).
    pub fn num_params(&self) -> u64 {
        let d = self.dim as u64;
        let h = self.mlp_hidden as u64;
        let p = self.patch as u64;
        let c = self.in_chans as u64;
        let m = self.pos_grid as u64;
        let table = if self.is_rope() { 0 } else { (1 + m * m) * d };
        let embed = d * c * p * p + d // patch_embed.proj
            + d // cls_token
            + d // mask_token
            + self.registers as u64 * d
            + table; // pos_embed
        let attn = 3 * d * d + if self.qkv_bias { 3 * d } else { 0 } + d * d + d;
        let ffn = match self.ffn {
            Ffn::Mlp => d * h + h + h * d + d,
            Ffn::SwiGlu => d * 2 * h + 2 * h + h * d + d,
        };
        let norms = 4 * d;
        let ls = if self.layerscale { 2 * d } else { 0 };
        let block = attn + ffn + norms + ls;
        embed
            .saturating_add((self.depth as u64).saturating_mul(block))
            .saturating_add(2 * d)
    }

    /// Checks that the values are consistent and within what the kernels support.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_named("config")
    }

    /// [`VitConfig::validate`] with `name` naming the source in the error.
    pub fn validate_named(&self, name: &str) -> Result<(), ConfigError> {
        let max_head = crate::kernels::attention::MAX_HEAD_DIM;
        let mut problems = Vec::new();
        for (field, value) in [
            ("dim", self.dim),
            ("depth", self.depth),
            ("heads", self.heads),
            ("mlp_hidden", self.mlp_hidden),
            ("patch", self.patch),
            ("in_chans", self.in_chans),
            ("pos_grid", self.pos_grid),
        ] {
            if value == 0 && !(field == "pos_grid" && self.is_rope()) {
                problems.push(format!("{field} must be at least 1"));
            }
        }
        if self.depth > MAX_DEPTH {
            problems.push(format!(
                "depth {} is over {MAX_DEPTH} blocks (ViT-g has 40)",
                self.depth
            ));
        }
        if self.heads > 0 && !self.dim.is_multiple_of(self.heads) {
            problems.push(format!(
                "dim {} is not divisible by heads {}",
                self.dim, self.heads
            ));
        } else if self.heads > 0 && self.head_dim() > max_head {
            problems.push(format!(
                "head dim {} (dim {} / heads {}) exceeds the attention kernel's limit of {max_head}",
                self.head_dim(),
                self.dim,
                self.heads
            ));
        }
        if let Some(rope) = &self.rope {
            if self.heads > 0 && !self.head_dim().is_multiple_of(4) {
                problems.push(format!(
                    "head dim {} must be a multiple of 4 for rotary position embeddings",
                    self.head_dim()
                ));
            }
            if !(rope.base.is_finite() && rope.base > 0.0) {
                problems.push(format!("rope base {} must be a positive number", rope.base));
            }
        }
        if !(self.ln_eps.is_finite() && self.ln_eps > 0.0) {
            problems.push(format!("ln_eps {} must be a positive number", self.ln_eps));
        }
        // Keep every tensor size far from overflow (also on 32-bit targets).
        let limit = u32::MAX as u64;
        let d = self.dim as u64;
        let sizes = [
            (
                "position table",
                (self.pos_grid as u64)
                    .saturating_pow(2)
                    .saturating_add(1)
                    .saturating_mul(d),
            ),
            (
                "patch embedding",
                d.saturating_mul(self.in_chans as u64)
                    .saturating_mul((self.patch as u64).saturating_pow(2)),
            ),
            ("ffn weight", d.saturating_mul(2 * self.mlp_hidden as u64)),
            ("registers", d.saturating_mul(self.registers as u64)),
        ];
        if problems.is_empty() {
            for (what, n) in sizes {
                if n > limit {
                    problems.push(format!("{what} would have {n} elements (too large)"));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                name: name.to_string(),
                message: problems.join("; "),
            })
        }
    }
}

/// Most blocks a backbone may have: far past any published one, and a bound on what a config
/// makes the loader list and allocate.
pub const MAX_DEPTH: usize = 1024;

/// The fields of a Hugging Face DINOv2 `config.json` that matter here.
#[derive(Deserialize)]
struct HfConfig {
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default = "default_mlp_ratio")]
    mlp_ratio: f64,
    image_size: usize,
    patch_size: usize,
    #[serde(default = "default_channels")]
    num_channels: usize,
    layer_norm_eps: f64,
    #[serde(default)]
    num_register_tokens: usize,
    #[serde(default)]
    use_swiglu_ffn: bool,
    #[serde(default = "default_act")]
    hidden_act: String,
    #[serde(default = "default_true")]
    qkv_bias: bool,
}

/// The fields of a Hugging Face DINOv3 `config.json` that matter here.
#[derive(Deserialize)]
struct HfConfigV3 {
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    patch_size: usize,
    #[serde(default = "default_channels")]
    num_channels: usize,
    #[serde(default = "default_eps_v3")]
    layer_norm_eps: f64,
    #[serde(default)]
    num_register_tokens: usize,
    #[serde(default)]
    use_gated_mlp: bool,
    #[serde(default = "default_act")]
    hidden_act: String,
    #[serde(default = "default_rope_theta")]
    rope_theta: f64,
    #[serde(default = "default_true")]
    query_bias: bool,
    #[serde(default)]
    key_bias: bool,
    #[serde(default = "default_true")]
    value_bias: bool,
    #[serde(default = "default_true")]
    proj_bias: bool,
    #[serde(default = "default_true")]
    mlp_bias: bool,
}

fn default_eps_v3() -> f64 {
    1e-5
}
fn default_rope_theta() -> f64 {
    100.0
}
fn default_mlp_ratio() -> f64 {
    4.0
}
fn default_channels() -> usize {
    3
}
fn default_act() -> String {
    "gelu".to_string()
}
fn default_true() -> bool {
    true
}
