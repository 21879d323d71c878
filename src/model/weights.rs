//! Backbone weights from safetensors files, under the canonical torch-hub names (spec §9.1).
//!
//! Files with Hugging Face names (`Dinov2Model`, `Dinov2WithRegistersModel`) and files with
//! torch-hub names are both read; the naming is detected from the tensor names. Before mapping,
//! the prefixes `teacher.backbone.`, `module.`, `backbone.`, `dinov2.` and
//! `dinov2_with_registers.` are stripped (repeatedly), and chunked block names
//! `blocks.{chunk}.{i}.…` (training checkpoints with `block_chunks > 0`) become `blocks.{i}.…`.
//! Head tensors (`classifier.*`, `dino_head.*`, `ibot_head.*`) are skipped and listed in
//! [`BackboneWeights::ignored`].
//!
//! | Hugging Face name | torch-hub name |
//! |---|---|
//! | `embeddings.cls_token` | `cls_token` |
//! | `embeddings.mask_token` | `mask_token` (both [1, D]) |
//! | `embeddings.register_tokens` | `register_tokens` |
//! | `embeddings.position_embeddings` | `pos_embed` |
//! | `embeddings.patch_embeddings.projection.{weight,bias}` | `patch_embed.proj.{weight,bias}` |
//! | `encoder.layer.{i}.norm1.*`, `.norm2.*` | `blocks.{i}.norm1.*`, `.norm2.*` |
//! | `encoder.layer.{i}.attention.attention.{query,key,value}.*` | `blocks.{i}.attn.qkv.*` (rows: query, key, value) |
//! | `encoder.layer.{i}.attention.output.dense.*` | `blocks.{i}.attn.proj.*` |
//! | `encoder.layer.{i}.layer_scale1.lambda1`, `layer_scale2` | `blocks.{i}.ls1.gamma`, `ls2.gamma` |
//! | `encoder.layer.{i}.mlp.fc1.*`, `mlp.fc2.*` | `blocks.{i}.mlp.fc1.*`, `mlp.fc2.*` |
//! | `encoder.layer.{i}.mlp.weights_in.*`, `weights_out.*` (giant) | `blocks.{i}.mlp.w12.*`, `mlp.w3.*` |
//! | `layernorm.*` | `norm.*` |
//!
//! Tensors are decoded to f32 (F32, F16, BF16 and F64 files are accepted). The path-based
//! functions read files with `std::fs`; every one of them has a bytes-based twin for targets
//! without a file system.

use crate::fixtures::HostTensor;
use crate::model::config::{ConfigError, Ffn, VitConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// Head dimension of every released DINOv2 model (used to infer the head count).
pub const DINOV2_HEAD_DIM: usize = 64;

/// Which naming scheme a weights file used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    /// Hugging Face `Dinov2Model` names (`embeddings.*`, `encoder.layer.{i}.*`, `layernorm.*`).
    HuggingFace,
    /// Original torch-hub names (`cls_token`, `blocks.{i}.*`, `norm.*`).
    TorchHub,
}

/// Backbone weights under torch-hub names, checked against a [`VitConfig`].
#[derive(Clone, Debug)]
pub struct BackboneWeights {
    /// The naming of the file they came from.
    pub naming: Naming,
    /// Every expected tensor, by torch-hub name.
    pub tensors: BTreeMap<String, HostTensor>,
    /// Names (as in the file) of known non-backbone tensors that were skipped.
    pub ignored: Vec<String>,
}

impl BackboneWeights {
    /// A tensor by torch-hub name.
    pub fn get(&self, name: &str) -> Option<&HostTensor> {
        self.tensors.get(name)
    }

    /// Total number of parameters held.
    pub fn num_params(&self) -> u64 {
        self.tensors.values().map(|t| t.data.len() as u64).sum()
    }
}

/// A tensor whose shape differs from the one the config expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrongShape {
    /// Torch-hub name (or the file's name for a Hugging Face q/k/v part).
    pub name: String,
    /// The name in the file, when it differs.
    pub source: Option<String>,
    /// Shape the config expects.
    pub expected: Vec<usize>,
    /// Shape in the file.
    pub found: Vec<usize>,
}

/// Everything that keeps a file from matching a config: missing, unexpected, mis-shaped and
/// doubly-defined tensors.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mismatch {
    /// Expected tensors that are absent: (name, expected shape, a note such as the Hugging Face
    /// name).
    pub missing: Vec<(String, Vec<usize>, Option<String>)>,
    /// Tensors in the file that the config does not have: (name in the file, shape).
    pub unexpected: Vec<(String, Vec<usize>)>,
    /// Tensors with the wrong shape.
    pub wrong_shape: Vec<WrongShape>,
    /// Torch-hub names defined by more than one tensor of the file.
    pub conflicts: Vec<String>,
}

impl Mismatch {
    /// Whether nothing is wrong.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty()
            && self.unexpected.is_empty()
            && self.wrong_shape.is_empty()
            && self.conflicts.is_empty()
    }
}

fn shape_str(s: &[usize]) -> String {
    let parts: Vec<String> = s.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.missing.is_empty() {
            writeln!(f, "  missing ({}):", self.missing.len())?;
            for (name, shape, note) in &self.missing {
                write!(f, "    {name} {}", shape_str(shape))?;
                if let Some(n) = note {
                    write!(f, " ({n})")?;
                }
                writeln!(f)?;
            }
        }
        if !self.wrong_shape.is_empty() {
            writeln!(f, "  wrong shape ({}):", self.wrong_shape.len())?;
            for w in &self.wrong_shape {
                write!(
                    f,
                    "    {}: expected {}, found {}",
                    w.name,
                    shape_str(&w.expected),
                    shape_str(&w.found)
                )?;
                if let Some(s) = &w.source {
                    write!(f, " (from {s})")?;
                }
                writeln!(f)?;
            }
        }
        if !self.unexpected.is_empty() {
            writeln!(f, "  unexpected ({}):", self.unexpected.len())?;
            for (name, shape) in &self.unexpected {
                writeln!(f, "    {name} {}", shape_str(shape))?;
            }
        }
        if !self.conflicts.is_empty() {
            writeln!(f, "  defined more than once ({}):", self.conflicts.len())?;
            for c in &self.conflicts {
                writeln!(f, "    {c}")?;
            }
        }
        Ok(())
    }
}

/// A weights file that cannot be read, decoded, matched to a config or written.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// The file could not be read.
    #[error("{}: cannot read weights: {message}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O problem.
        message: String,
    },
    /// The bytes are not a usable safetensors file.
    #[error("{}: not a valid safetensors weights file: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The tensors do not match the config.
    #[error("{}: the weights do not match the model config ({config}):\n{report}", path.display())]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// A one-line summary of the config.
        config: String,
        /// Every missing, unexpected and mis-shaped tensor.
        report: Box<Mismatch>,
    },
    /// The config could not be inferred from the tensor shapes.
    #[error("{}: cannot infer the model config from the weights: {message}", path.display())]
    Infer {
        /// The file.
        path: PathBuf,
        /// What is missing or inconsistent.
        message: String,
    },
    /// A config file next to the weights (or the config given) is not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The file could not be written.
    #[error("{}: cannot write weights: {message}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

fn format_err(path: &Path, message: impl Into<String>) -> WeightsError {
    WeightsError::Format {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn infer_err(path: &Path, message: impl Into<String>) -> WeightsError {
    WeightsError::Infer {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn config_summary(cfg: &VitConfig) -> String {
    let positions = match cfg.rope {
        Some(r) => format!("rotary positions (base {})", r.base),
        None => format!("pos grid {}×{}", cfg.pos_grid, cfg.pos_grid),
    };
    format!(
        "dim {}, depth {}, heads {}, {:?} hidden {}, patch {}, registers {}, {positions}",
        cfg.dim, cfg.depth, cfg.heads, cfg.ffn, cfg.mlp_hidden, cfg.patch, cfg.registers,
    )
}

/// The torch-hub names and shapes of every backbone tensor of `cfg`, in checkpoint order.
pub fn expected_tensors(cfg: &VitConfig) -> Vec<(String, Vec<usize>)> {
    let d = cfg.dim;
    let h = cfg.mlp_hidden;
    let mut v: Vec<(String, Vec<usize>)> = vec![("cls_token".into(), vec![1, 1, d])];
    if !cfg.is_rope() {
        v.push(("pos_embed".into(), vec![1, 1 + cfg.pos_tokens(), d]));
    }
    v.push(("mask_token".into(), vec![1, d]));
    if cfg.registers > 0 {
        v.push(("register_tokens".into(), vec![1, cfg.registers, d]));
    }
    v.push((
        "patch_embed.proj.weight".into(),
        vec![d, cfg.in_chans, cfg.patch, cfg.patch],
    ));
    v.push(("patch_embed.proj.bias".into(), vec![d]));
    for i in 0..cfg.depth {
        let b = |s: &str| format!("blocks.{i}.{s}");
        v.push((b("norm1.weight"), vec![d]));
        v.push((b("norm1.bias"), vec![d]));
        v.push((b("attn.qkv.weight"), vec![3 * d, d]));
        if cfg.qkv_bias {
            v.push((b("attn.qkv.bias"), vec![3 * d]));
        }
        v.push((b("attn.proj.weight"), vec![d, d]));
        v.push((b("attn.proj.bias"), vec![d]));
        if cfg.layerscale {
            v.push((b("ls1.gamma"), vec![d]));
        }
        v.push((b("norm2.weight"), vec![d]));
        v.push((b("norm2.bias"), vec![d]));
        match cfg.ffn {
            Ffn::Mlp => {
                v.push((b("mlp.fc1.weight"), vec![h, d]));
                v.push((b("mlp.fc1.bias"), vec![h]));
                v.push((b("mlp.fc2.weight"), vec![d, h]));
                v.push((b("mlp.fc2.bias"), vec![d]));
            }
            Ffn::SwiGlu => {
                v.push((b("mlp.w12.weight"), vec![2 * h, d]));
                v.push((b("mlp.w12.bias"), vec![2 * h]));
                v.push((b("mlp.w3.weight"), vec![d, h]));
                v.push((b("mlp.w3.bias"), vec![d]));
            }
        }
        if cfg.layerscale {
            v.push((b("ls2.gamma"), vec![d]));
        }
    }
    v.push(("norm.weight".into(), vec![d]));
    v.push(("norm.bias".into(), vec![d]));
    v
}

// ---------------------------------------------------------------------------------------------
// Name mapping

/// Where one tensor of a file goes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    /// A torch-hub name.
    Hub(String),
    /// One row block of a fused tensor: a third of `attn.qkv` (query = 0, key = 1, value = 2)
    /// or a half of `mlp.w12` (gate = 0, up = 1).
    Part {
        hub: String,
        part: usize,
        parts: usize,
    },
    /// A known non-backbone tensor.
    Ignored,
    /// Not a name this loader knows.
    Unknown,
}

const PREFIXES: [&str; 5] = [
    "teacher.backbone.",
    "module.",
    "backbone.",
    "dinov2_with_registers.",
    "dinov2.",
];

const HEADS: [&str; 3] = ["classifier.", "dino_head.", "ibot_head."];

const QKV_PARTS: [&str; 3] = ["query", "key", "value"];

/// Names of the rows of a fused tensor, for messages.
fn part_label(hub: &str, part: usize) -> &'static str {
    if hub.contains("attn.qkv") {
        ["query", "key", "value"][part.min(2)]
    } else {
        ["gate (w1)", "up (w2)"][part.min(1)]
    }
}

/// The file name a missing part would have, from the name of a part that is present.
fn sibling_name(present: &str, from: usize, to: usize) -> Option<String> {
    const TOKENS: [&[&str]; 4] = [
        &[".query.", ".key.", ".value."],
        &[".q_proj.", ".k_proj.", ".v_proj."],
        &[".gate_proj.", ".up_proj."],
        &[".w1.", ".w2."],
    ];
    TOKENS.iter().find_map(|set| {
        let (a, b) = (set.get(from)?, set.get(to)?);
        present.contains(a).then(|| present.replacen(a, b, 1))
    })
}

/// One part of block `i`'s qkv weight or bias.
fn qkv_part(i: usize, part: usize, bias: bool) -> Target {
    Target::Part {
        hub: qkv_name(i, bias),
        part,
        parts: 3,
    }
}

/// Buffers of the official DINOv3 code that hold no weights, and the 7B's training-only norm.
fn is_v3_buffer(name: &str) -> bool {
    name.ends_with("bias_mask")
        || name.ends_with("inv_freq")
        || name.starts_with("rope_embed.")
        || name.starts_with("rope_embeddings.")
        || name.starts_with("local_cls_norm.")
}

fn strip_prefixes(mut name: &str) -> &str {
    loop {
        let before = name.len();
        for p in PREFIXES {
            if let Some(rest) = name.strip_prefix(p) {
                name = rest;
            }
        }
        if name.len() == before {
            return name;
        }
    }
}

fn is_head(name: &str) -> bool {
    let n = name
        .strip_prefix("teacher.")
        .or_else(|| name.strip_prefix("student."))
        .unwrap_or(name);
    HEADS.iter().any(|h| n.starts_with(h))
}

fn parse_index(s: &str) -> Option<usize> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `blocks.{chunk}.{i}.rest` → `blocks.{i}.rest`; other names unchanged.
fn unchunk(name: &str) -> String {
    if let Some(rest) = name.strip_prefix("blocks.") {
        let mut it = rest.splitn(3, '.');
        if let (Some(a), Some(b), Some(tail)) = (it.next(), it.next(), it.next()) {
            if parse_index(a).is_some() && parse_index(b).is_some() && !tail.is_empty() {
                return format!("blocks.{b}.{tail}");
            }
        }
    }
    name.to_string()
}

fn is_hf_name(stripped: &str) -> bool {
    stripped.starts_with("embeddings.")
        || stripped.starts_with("encoder.layer.")
        || stripped.starts_with("layer.")
        || stripped == "layernorm.weight"
        || stripped == "layernorm.bias"
}

/// The target of a Hugging Face name: `Dinov2Model` (`encoder.layer.{i}.…`) or
/// `DINOv3ViTModel` (`layer.{i}.…`); `gated` when the file has SwiGLU `gate_proj` tensors.
fn hf_target(name: &str, gated: bool) -> Target {
    if let Some(rest) = name.strip_prefix("layer.") {
        return hf_v3_block_target(rest, gated);
    }
    if is_v3_buffer(name) {
        return Target::Ignored;
    }
    let direct = match name {
        "embeddings.cls_token" => Some("cls_token"),
        "embeddings.mask_token" => Some("mask_token"),
        "embeddings.register_tokens" => Some("register_tokens"),
        "embeddings.position_embeddings" => Some("pos_embed"),
        "embeddings.patch_embeddings.projection.weight" => Some("patch_embed.proj.weight"),
        "embeddings.patch_embeddings.projection.bias" => Some("patch_embed.proj.bias"),
        "layernorm.weight" => Some("norm.weight"),
        "layernorm.bias" => Some("norm.bias"),
        "embeddings.patch_embeddings.weight" => Some("patch_embed.proj.weight"),
        "embeddings.patch_embeddings.bias" => Some("patch_embed.proj.bias"),
        "norm.weight" => Some("norm.weight"),
        "norm.bias" => Some("norm.bias"),
        _ => None,
    };
    if let Some(d) = direct {
        return Target::Hub(d.to_string());
    }
    let Some(rest) = name.strip_prefix("encoder.layer.") else {
        return Target::Unknown;
    };
    let (i, module, param) = match block_parts(rest) {
        Ok(p) => p,
        Err(done) => return done,
    };
    let bias = param == "bias";
    if let Some(part) = module.strip_prefix("attention.attention.") {
        return match QKV_PARTS.iter().position(|p| *p == part) {
            Some(part) => qkv_part(i, part, bias),
            None => Target::Unknown,
        };
    }
    let hub_module = match module {
        "norm1" => "norm1",
        "norm2" => "norm2",
        "attention.output.dense" => "attn.proj",
        "mlp.fc1" => "mlp.fc1",
        "mlp.fc2" => "mlp.fc2",
        "mlp.weights_in" => "mlp.w12",
        "mlp.weights_out" => "mlp.w3",
        _ => return Target::Unknown,
    };
    Target::Hub(format!("blocks.{i}.{hub_module}.{param}"))
}

/// `{i}.{module}.{param}` of a Hugging Face block tensor name: the parts of a weight or bias,
/// or the finished target (LayerScale, which both namings call `layer_scale{1,2}.lambda1`, or
/// Unknown).
fn block_parts(rest: &str) -> Result<(usize, &str, &str), Target> {
    let parsed = rest
        .split_once('.')
        .and_then(|(idx, tail)| Some((parse_index(idx)?, tail.rsplit_once('.')?)));
    let Some((i, (module, param))) = parsed else {
        return Err(Target::Unknown);
    };
    match (module, param) {
        ("layer_scale1", "lambda1") => Err(Target::Hub(format!("blocks.{i}.ls1.gamma"))),
        ("layer_scale2", "lambda1") => Err(Target::Hub(format!("blocks.{i}.ls2.gamma"))),
        (_, "weight") | (_, "bias") => Ok((i, module, param)),
        _ => Err(Target::Unknown),
    }
}

/// `DINOv3ViTModel` block tensors: `{i}.attention.{q,k,v,o}_proj`, `{i}.mlp.{up,down}_proj`
/// (gated: `gate_proj`, `up_proj` → w12 halves, `down_proj` → w3), norms and LayerScale.
fn hf_v3_block_target(rest: &str, gated: bool) -> Target {
    let (i, module, param) = match block_parts(rest) {
        Ok(p) => p,
        Err(done) => return done,
    };
    let bias = param == "bias";
    let w12 = |part: usize| Target::Part {
        hub: format!("blocks.{i}.mlp.w12.{param}"),
        part,
        parts: 2,
    };
    let hub_module = match module {
        "attention.q_proj" => return qkv_part(i, 0, bias),
        "attention.k_proj" => return qkv_part(i, 1, bias),
        "attention.v_proj" => return qkv_part(i, 2, bias),
        "mlp.gate_proj" => return w12(0),
        "mlp.up_proj" if gated => return w12(1),
        "norm1" | "norm2" => module,
        "attention.o_proj" => "attn.proj",
        "mlp.up_proj" => "mlp.fc1",
        "mlp.down_proj" if gated => "mlp.w3",
        "mlp.down_proj" => "mlp.fc2",
        _ => return Target::Unknown,
    };
    Target::Hub(format!("blocks.{i}.{hub_module}.{param}"))
}

/// Official DINOv3 names that differ from DINOv2's torch-hub names: `storage_tokens` and the
/// separate SwiGLU `w1`/`w2` (fused here as `w12`); weightless buffers are ignored.
fn hub_target(name: &str) -> Target {
    if is_v3_buffer(name) {
        return Target::Ignored;
    }
    if name == "storage_tokens" {
        return Target::Hub("register_tokens".into());
    }
    let name = unchunk(name);
    if let Some(rest) = name.strip_prefix("blocks.") {
        if let Some((i, tail)) = rest.split_once('.') {
            for (part, w) in ["mlp.w1.", "mlp.w2."].iter().enumerate() {
                if let Some(param) = tail.strip_prefix(w) {
                    return Target::Part {
                        hub: format!("blocks.{i}.mlp.w12.{param}"),
                        part,
                        parts: 2,
                    };
                }
            }
        }
    }
    Target::Hub(name)
}

/// The Hugging Face name of a torch-hub name (for messages).
fn hub_to_hf(hub: &str) -> Option<String> {
    let direct = match hub {
        "cls_token" => Some("embeddings.cls_token"),
        "mask_token" => Some("embeddings.mask_token"),
        "register_tokens" => Some("embeddings.register_tokens"),
        "pos_embed" => Some("embeddings.position_embeddings"),
        "patch_embed.proj.weight" => Some("embeddings.patch_embeddings.projection.weight"),
        "patch_embed.proj.bias" => Some("embeddings.patch_embeddings.projection.bias"),
        "norm.weight" => Some("layernorm.weight"),
        "norm.bias" => Some("layernorm.bias"),
        _ => None,
    };
    if let Some(d) = direct {
        return Some(d.to_string());
    }
    let rest = hub.strip_prefix("blocks.")?;
    let (i, tail) = rest.split_once('.')?;
    let hf_tail = match tail {
        "ls1.gamma" => "layer_scale1.lambda1".to_string(),
        "ls2.gamma" => "layer_scale2.lambda1".to_string(),
        "attn.qkv.weight" => "attention.attention.{query,key,value}.weight".to_string(),
        "attn.qkv.bias" => "attention.attention.{query,key,value}.bias".to_string(),
        _ => {
            let (module, param) = tail.rsplit_once('.')?;
            let m = match module {
                "norm1" | "norm2" | "mlp.fc1" | "mlp.fc2" => module,
                "attn.proj" => "attention.output.dense",
                "mlp.w12" => "mlp.weights_in",
                "mlp.w3" => "mlp.weights_out",
                _ => return None,
            };
            format!("{m}.{param}")
        }
    };
    Some(format!("encoder.layer.{i}.{hf_tail}"))
}

/// Detects the naming of a list of file names and maps each one.
fn plan<'a>(names: impl IntoIterator<Item = &'a str>) -> (Naming, Vec<(String, Target)>) {
    let names: Vec<&str> = names.into_iter().collect();
    let hf = names.iter().any(|n| is_hf_name(strip_prefixes(n)));
    let gated = names.iter().any(|n| n.contains(".mlp.gate_proj."));
    let naming = if hf {
        Naming::HuggingFace
    } else {
        Naming::TorchHub
    };
    let entries = names
        .into_iter()
        .map(|orig| {
            let stripped = strip_prefixes(orig);
            let target = if is_head(stripped) {
                Target::Ignored
            } else if hf {
                hf_target(stripped, gated)
            } else if stripped.is_empty() {
                Target::Unknown
            } else {
                hub_target(stripped)
            };
            (orig.to_string(), target)
        })
        .collect();
    (naming, entries)
}

// ---------------------------------------------------------------------------------------------
// Decoding

fn decode(
    path: &Path,
    name: &str,
    view: &safetensors::tensor::TensorView<'_>,
) -> Result<HostTensor, WeightsError> {
    let raw = view.data();
    let data: Vec<f32> = match crate::fixtures::decode_float(view.dtype(), raw) {
        Some(v) => v,
        None => {
            let other = view.dtype();

            return Err(format_err(
                path,
                format!(
                    "tensor '{name}' has dtype {other:?}; weights must be F32, F16, BF16 or F64"
                ),
            ));
        }
    };
    let shape = view.shape().to_vec();
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &b| a.checked_mul(b))
        .unwrap_or(usize::MAX);
    if numel != data.len() {
        return Err(format_err(
            path,
            format!(
                "tensor '{name}' has shape {} but {} values",
                shape_str(&shape),
                data.len()
            ),
        ));
    }
    let bad = data.iter().filter(|v| !v.is_finite()).count();
    if bad > 0 {
        return Err(format_err(
            path,
            format!(
                "tensor '{name}' holds {bad} NaN or infinite values of {} (the weights are \
                 damaged, or come from a run that diverged)",
                data.len()
            ),
        ));
    }
    Ok(HostTensor { shape, data })
}

fn deserialize<'a>(
    path: &Path,
    bytes: &'a [u8],
) -> Result<safetensors::SafeTensors<'a>, WeightsError> {
    safetensors::SafeTensors::deserialize(bytes).map_err(|e| {
        use safetensors::SafeTensorError as E;
        let hint = match e {
            E::HeaderTooSmall | E::InvalidHeaderLength | E::MetadataIncompleteBuffer => {
                " (the file is truncated or is not a safetensors file)"
            }
            E::InvalidHeader(_) | E::InvalidHeaderDeserialization(_) | E::HeaderTooLarge => {
                " (this does not look like a safetensors file)"
            }
            _ => "",
        };
        format_err(path, format!("{e}{hint}; file size {} bytes", bytes.len()))
    })
}

// ---------------------------------------------------------------------------------------------
// Loading

/// Reads backbone weights from a safetensors file and checks them against `cfg`.
pub fn load_backbone(path: &Path, cfg: &VitConfig) -> Result<BackboneWeights, WeightsError> {
    let bytes = std::fs::read(path).map_err(|e| WeightsError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    from_bytes(path, &bytes, cfg)
}

/// The parts of one fused tensor found so far, and how many it has.
type PartSlot = (usize, Vec<Option<(String, HostTensor)>>);

/// [`load_backbone`] on the bytes of a safetensors file; `path` names it in errors.
pub fn from_bytes(
    path: &Path,
    bytes: &[u8],
    cfg: &VitConfig,
) -> Result<BackboneWeights, WeightsError> {
    cfg.validate_named(&path.display().to_string())?;
    let st = deserialize(path, bytes)?;
    let views: BTreeMap<String, safetensors::tensor::TensorView<'_>> =
        st.iter().map(|(n, v)| (n.to_string(), v)).collect();
    let (naming, entries) = plan(views.keys().map(String::as_str));

    let expected: BTreeMap<String, Vec<usize>> = expected_tensors(cfg).into_iter().collect();
    let mut report = Mismatch::default();
    let mut tensors: BTreeMap<String, HostTensor> = BTreeMap::new();
    let mut sources: BTreeMap<String, String> = BTreeMap::new();
    let mut ignored = Vec::new();
    let mut fused: BTreeMap<String, PartSlot> = BTreeMap::new();
    // Expected names already reported through their Hugging Face parts.
    let mut accounted: BTreeSet<String> = BTreeSet::new();

    for (orig, target) in entries {
        let Some(view) = views.get(&orig) else {
            continue;
        };
        match target {
            Target::Ignored => ignored.push(orig),
            Target::Unknown => report.unexpected.push((orig, view.shape().to_vec())),
            Target::Hub(hub) => {
                if !expected.contains_key(&hub) {
                    report.unexpected.push((orig, view.shape().to_vec()));
                    continue;
                }
                if let Some(first) = sources.get(&hub) {
                    report
                        .conflicts
                        .push(format!("{hub} (from '{first}' and '{orig}')"));
                    continue;
                }
                let t = decode(path, &orig, view)?;
                sources.insert(hub.clone(), orig);
                tensors.insert(hub, t);
            }
            Target::Part { hub, part, parts } => {
                let slot = fused
                    .entry(hub.clone())
                    .or_insert_with(|| (parts, vec![None; parts]));
                if let Some((first, _)) = &slot.1[part] {
                    report
                        .conflicts
                        .push(format!("{hub} (from '{first}' and '{orig}')"));
                    continue;
                }
                let t = decode(path, &orig, view)?;
                slot.1[part] = Some((orig, t));
            }
        }
    }

    // Fuse row blocks: query/key/value into qkv, SwiGLU gate/up into w12.
    for (hub, (parts, mut slot)) in fused {
        let Some(full) = expected.get(&hub) else {
            for (orig, t) in slot.into_iter().flatten() {
                report.unexpected.push((orig, t.shape));
            }
            continue;
        };
        let mut part_shape = full.clone();
        part_shape[0] /= parts;
        // DINOv3 has no key bias (the official code masks it, Hugging Face drops it).
        let is_key_bias = parts == 3 && hub.ends_with("qkv.bias");
        if is_key_bias && !cfg.key_bias && slot[1].is_none() {
            let zeros = HostTensor {
                shape: part_shape.clone(),
                data: vec![0.0; part_shape.iter().product()],
            };
            slot[1] = Some(("(no key bias)".into(), zeros));
        }
        let mut ok = true;
        let present = slot
            .iter()
            .enumerate()
            .find_map(|(k, e)| e.as_ref().map(|(n, _)| (k, n.clone())));
        for (k, entry) in slot.iter().enumerate() {
            match entry {
                None => {
                    let rows = part_shape.first().copied().unwrap_or(0);
                    let name = present
                        .as_ref()
                        .and_then(|(from, n)| sibling_name(n, *from, k))
                        .unwrap_or_else(|| format!("{hub} ({} rows)", part_label(&hub, k)));
                    report.missing.push((
                        name,
                        part_shape.clone(),
                        Some(format!("rows {}..{} of {hub}", k * rows, (k + 1) * rows)),
                    ));
                    ok = false;
                }
                Some((orig, t)) if t.shape != part_shape => {
                    report.wrong_shape.push(WrongShape {
                        name: orig.clone(),
                        source: None,
                        expected: part_shape.clone(),
                        found: t.shape.clone(),
                    });
                    ok = false;
                }
                Some(_) => {}
            }
        }
        accounted.insert(hub.clone());
        if !ok {
            continue;
        }
        let mut data = Vec::with_capacity(full.iter().product());
        let mut names = Vec::new();
        for (orig, t) in slot.into_iter().flatten() {
            data.extend_from_slice(&t.data);
            names.push(orig);
        }
        sources.insert(hub.clone(), names.join(" + "));
        tensors.insert(
            hub,
            HostTensor {
                shape: full.clone(),
                data,
            },
        );
    }
    // The official DINOv3 qkv bias keeps a key third that its bias_mask zeroes.
    if !cfg.key_bias {
        for i in 0..cfg.depth {
            if let Some(t) = tensors.get_mut(&qkv_name(i, true)) {
                let third = t.data.len() / 3;
                t.data[third..2 * third].fill(0.0);
            }
        }
    }

    // Shapes. A [1, 1, D] mask token (DINOv3 layout) is accepted as [1, D].
    for (name, want) in &expected {
        match tensors.get_mut(name) {
            Some(t) if &t.shape != want => {
                if name == "mask_token"
                    && t.shape.len() == 3
                    && t.shape[..2] == [1, 1]
                    && t.shape[2..] == want[1..]
                {
                    t.shape = want.clone();
                    continue;
                }
                report.wrong_shape.push(WrongShape {
                    name: name.clone(),
                    source: sources.get(name).filter(|s| *s != name).cloned(),
                    expected: want.clone(),
                    found: t.shape.clone(),
                });
            }
            Some(_) => {}
            None if accounted.contains(name) => {}
            None => report.missing.push((
                name.clone(),
                want.clone(),
                match naming {
                    Naming::HuggingFace => {
                        hub_to_hf(name).map(|n| format!("Hugging Face name: {n}"))
                    }
                    Naming::TorchHub => None,
                },
            )),
        }
    }

    if !report.is_empty() {
        // Report in checkpoint order.
        let order: BTreeMap<String, usize> = expected_tensors(cfg)
            .into_iter()
            .enumerate()
            .map(|(i, (n, _))| (n, i))
            .collect();
        report
            .missing
            .sort_by_key(|(n, _, hf)| (order.get(n).copied(), hf.clone()));
        report.unexpected.sort();
        return Err(WeightsError::Mismatch {
            path: path.to_path_buf(),
            config: config_summary(cfg),
            report: Box::new(report),
        });
    }
    ignored.sort();
    Ok(BackboneWeights {
        naming,
        tensors,
        ignored,
    })
}

fn qkv_name(block: usize, bias: bool) -> String {
    format!(
        "blocks.{block}.attn.qkv.{}",
        if bias { "bias" } else { "weight" }
    )
}

// ---------------------------------------------------------------------------------------------
// Config inference

/// Largest safetensors header accepted (as in the safetensors crate).
const MAX_HEADER: u64 = 100_000_000;

/// Tensor names and shapes from a safetensors header (the JSON after the 8-byte length).
fn parse_header(path: &Path, header: &[u8]) -> Result<Vec<(String, Vec<usize>)>, WeightsError> {
    let map: BTreeMap<String, serde_json::Value> = serde_json::from_slice(header).map_err(|e| {
        format_err(
            path,
            format!("invalid JSON in header: {e} (this does not look like a safetensors file)"),
        )
    })?;
    let mut out = Vec::with_capacity(map.len());
    for (name, info) in map {
        if name == "__metadata__" {
            continue;
        }
        let shape = info
            .get("shape")
            .and_then(|s| s.as_array())
            .and_then(|a| {
                a.iter()
                    .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                    .collect::<Option<Vec<usize>>>()
            })
            .ok_or_else(|| format_err(path, format!("tensor '{name}' has no valid shape")))?;
        out.push((name, shape));
    }
    Ok(out)
}

fn header_len(path: &Path, first8: &[u8], file_len: u64) -> Result<usize, WeightsError> {
    let arr: [u8; 8] = first8.try_into().map_err(|_| {
        format_err(
            path,
            format!("file is only {file_len} bytes (too short for a safetensors header)"),
        )
    })?;
    let n = u64::from_le_bytes(arr);
    if n > MAX_HEADER {
        return Err(format_err(
            path,
            format!(
                "header length {n} is over the {MAX_HEADER}-byte limit of safetensors headers \
                 (the file is damaged or is not a safetensors file)"
            ),
        ));
    }
    if n.saturating_add(8) > file_len {
        return Err(format_err(
            path,
            format!(
                "header length {n} does not fit a {file_len}-byte file (the file is truncated or \
                 is not a safetensors file)"
            ),
        ));
    }
    usize::try_from(n).map_err(|_| format_err(path, "header too large"))
}

/// Tensor names and shapes of a safetensors file, reading only its header.
fn read_header_file(path: &Path) -> Result<Vec<(String, Vec<usize>)>, WeightsError> {
    use std::io::Read;
    let read_err = |e: std::io::Error| WeightsError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut file = std::fs::File::open(path).map_err(read_err)?;
    let file_len = file.metadata().map_err(read_err)?.len();
    let mut first8 = Vec::with_capacity(8);
    (&mut file)
        .take(8)
        .read_to_end(&mut first8)
        .map_err(read_err)?;
    let n = header_len(path, &first8, file_len)?;
    let mut header = vec![0u8; n];
    file.read_exact(&mut header).map_err(read_err)?;
    parse_header(path, &header)
}

/// Infers the config of a weights file from its tensor shapes (reads only the header).
///
/// Inferred: `dim` (cls_token), `depth` (block count), `registers`, `patch` and `in_chans`
/// (patch_embed weight), `pos_grid` (pos_embed), `ffn` and `mlp_hidden` (fc1 or w12),
/// `qkv_bias`, `layerscale`. Not inferable, so assumed: `heads` = dim / 64 (the head dim of every
/// DINOv2 model; for other widths the fewest heads with head dim ≤ 64), `ln_eps` = 1e-6, and
/// `interp` = antialiased iff the model has registers (Hugging Face's choice).
pub fn infer_config(path: &Path) -> Result<VitConfig, WeightsError> {
    let entries = read_header_file(path)?;
    infer_from_shapes(path, entries)
}

/// [`infer_config`] on the bytes of a safetensors file; `path` names it in errors.
pub fn infer_config_from_bytes(path: &Path, bytes: &[u8]) -> Result<VitConfig, WeightsError> {
    let file_len = bytes.len() as u64;
    let n = header_len(path, bytes.get(..8).unwrap_or(bytes), file_len)?;
    let header = bytes
        .get(8..8 + n)
        .ok_or_else(|| format_err(path, "truncated header"))?;
    infer_from_shapes(path, parse_header(path, header)?)
}

fn infer_from_shapes(
    path: &Path,
    entries: Vec<(String, Vec<usize>)>,
) -> Result<VitConfig, WeightsError> {
    let (_, plan) = plan(entries.iter().map(|(n, _)| n.as_str()));
    let mut shapes: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for ((_, target), (_, shape)) in plan.into_iter().zip(entries) {
        match target {
            Target::Hub(h) => {
                shapes.insert(h, shape);
            }
            Target::Part {
                hub,
                part: 0,
                parts,
            } => {
                let mut s = shape;
                if let Some(r) = s.first_mut() {
                    *r = r.saturating_mul(parts);
                }
                shapes.insert(hub, s);
            }
            _ => {}
        }
    }
    let need = |name: &str| {
        shapes.get(name).ok_or_else(|| {
            infer_err(
                path,
                format!("no '{name}' tensor (or its Hugging Face name)"),
            )
        })
    };
    let dim = need("cls_token")?.last().copied().unwrap_or(0);
    if dim == 0 {
        return Err(infer_err(path, "cls_token has no width"));
    }
    let depth = shapes
        .keys()
        .filter_map(|n| n.strip_prefix("blocks."))
        .filter_map(|r| r.split_once('.').and_then(|(i, _)| parse_index(i)))
        .max()
        .map(|m| m + 1)
        .ok_or_else(|| infer_err(path, "no transformer blocks"))?;
    let heads = (1..=dim)
        .find(|&h| dim.is_multiple_of(h) && dim / h <= DINOV2_HEAD_DIM)
        .unwrap_or(dim);
    let registers = match shapes.get("register_tokens") {
        Some(s) if s.len() == 3 => s[1],
        Some(s) => {
            return Err(infer_err(
                path,
                format!(
                    "register_tokens has shape {}, expected [1, R, D]",
                    shape_str(s)
                ),
            ))
        }
        None => 0,
    };
    let pw = need("patch_embed.proj.weight")?;
    let (in_chans, patch) = match pw.as_slice() {
        [_, c, p, q] if p == q => (*c, *p),
        _ => {
            return Err(infer_err(
                path,
                format!(
                    "patch_embed.proj.weight has shape {}, expected [D, C, P, P]",
                    shape_str(pw)
                ),
            ))
        }
    };
    // No position table: a DINOv3 backbone (rotary positions).
    let rope = !shapes.contains_key("pos_embed");
    let pos_grid = if rope {
        0
    } else {
        let pe = need("pos_embed")?;
        let tokens = match pe.as_slice() {
            [1, n, _] if *n >= 2 => n - 1,
            _ => {
                return Err(infer_err(
                    path,
                    format!(
                        "pos_embed has shape {}, expected [1, 1 + M², D]",
                        shape_str(pe)
                    ),
                ))
            }
        };
        let root = (tokens as f64).sqrt().round() as usize;
        (root.saturating_sub(1)..=root.saturating_add(1))
            .find(|&m| m > 0 && m.checked_mul(m) == Some(tokens))
            .ok_or_else(|| {
                infer_err(
                    path,
                    format!("pos_embed has {tokens} patch entries, not a square grid"),
                )
            })?
    };
    let (ffn, mlp_hidden) = if let Some(s) = shapes.get("blocks.0.mlp.w12.weight") {
        (Ffn::SwiGlu, s.first().copied().unwrap_or(0) / 2)
    } else {
        let s = need("blocks.0.mlp.fc1.weight")?;
        (Ffn::Mlp, s.first().copied().unwrap_or(0))
    };
    let cfg = VitConfig {
        dim,
        depth,
        heads,
        mlp_hidden,
        ffn,
        patch,
        in_chans,
        registers,
        pos_grid,
        ln_eps: if rope { 1e-5 } else { 1e-6 },
        interp: if registers > 0 && !rope {
            crate::cpu::interp::InterpMode::BicubicAntialias
        } else {
            crate::cpu::interp::InterpMode::Bicubic
        },
        qkv_bias: shapes.contains_key("blocks.0.attn.qkv.bias"),
        layerscale: shapes.contains_key("blocks.0.ls1.gamma"),
        rope: rope.then_some(crate::model::config::Rope { base: 100.0 }),
        key_bias: !rope,
    };
    cfg.validate_named(&path.display().to_string())?;
    Ok(cfg)
}

/// The config for a weights file: `config.json` (Hugging Face) or `config.ron` in the same
/// folder when present, else [`infer_config`].
pub fn config_for_weights(path: &Path) -> Result<VitConfig, WeightsError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    for name in ["config.json", "config.ron"] {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(VitConfig::load(&candidate)?);
        }
    }
    infer_config(path)
}

// ---------------------------------------------------------------------------------------------
// Writing

/// An f32 tensor as a safetensors view (bytes made on demand).
struct F32View<'a>(&'a HostTensor);

impl safetensors::View for F32View<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        safetensors::Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.0.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        let mut out = Vec::with_capacity(self.0.data.len() * 4);
        for v in &self.0.data {
            out.extend_from_slice(&v.to_le_bytes());
        }
        std::borrow::Cow::Owned(out)
    }
    fn data_len(&self) -> usize {
        self.0.data.len() * 4
    }
}

/// The bytes of an F32 safetensors file holding `tensors` under their names; `path` names the
/// destination in errors.
pub fn hub_safetensors_bytes(
    path: &Path,
    tensors: &BTreeMap<String, HostTensor>,
) -> Result<Vec<u8>, WeightsError> {
    let write_err = |message: String| WeightsError::Write {
        path: path.to_path_buf(),
        message,
    };
    for (name, t) in tensors {
        let numel = t
            .shape
            .iter()
            .try_fold(1usize, |a, &b| a.checked_mul(b))
            .unwrap_or(usize::MAX);
        if numel != t.data.len() {
            return Err(write_err(format!(
                "tensor '{name}' has shape {} but {} values",
                shape_str(&t.shape),
                t.data.len()
            )));
        }
    }
    let mut meta = std::collections::HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    safetensors::serialize(
        tensors.iter().map(|(n, t)| (n.as_str(), F32View(t))),
        Some(meta),
    )
    .map_err(|e| write_err(e.to_string()))
}

/// Writes `tensors` as an F32 safetensors file, atomically: a temporary file in the same folder
/// is written, synced and renamed over `path`.
pub fn save_hub_safetensors(
    path: &Path,
    tensors: &BTreeMap<String, HostTensor>,
) -> Result<(), WeightsError> {
    let bytes = hub_safetensors_bytes(path, tensors)?;
    crate::io::write_atomic(path, &bytes).map_err(|e| WeightsError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(())
}
