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

use crate::io::HostTensor;
use crate::model::config::{ConfigError, Ffn, VitConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

mod config_inference;
pub mod hf;
mod names;

pub use config_inference::{
    config_and_source, config_for_weights, infer_config, infer_config_from_bytes, CONFIG_KEY,
};
use names::*;

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

/// Lines a [`Mismatch`] lists of each kind before it counts the rest.
const LISTED: usize = 200;

/// "    … and N more" after the first [`LISTED`] of `n`.
fn more(f: &mut fmt::Formatter<'_>, n: usize) -> fmt::Result {
    if n > LISTED {
        writeln!(f, "    … and {} more", n - LISTED)?;
    }
    Ok(())
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.missing.is_empty() {
            writeln!(f, "  missing ({}):", self.missing.len())?;
            for (name, shape, note) in self.missing.iter().take(LISTED) {
                write!(f, "    {name} {}", shape_str(shape))?;
                if let Some(n) = note {
                    write!(f, " ({n})")?;
                }
                writeln!(f)?;
            }
            more(f, self.missing.len())?;
        }
        if !self.wrong_shape.is_empty() {
            writeln!(f, "  wrong shape ({}):", self.wrong_shape.len())?;
            for w in self.wrong_shape.iter().take(LISTED) {
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
            more(f, self.wrong_shape.len())?;
        }
        if !self.unexpected.is_empty() {
            writeln!(f, "  unexpected ({}):", self.unexpected.len())?;
            for (name, shape) in self.unexpected.iter().take(LISTED) {
                writeln!(f, "    {name} {}", shape_str(shape))?;
            }
            more(f, self.unexpected.len())?;
        }
        if !self.conflicts.is_empty() {
            writeln!(f, "  defined more than once ({}):", self.conflicts.len())?;
            for c in self.conflicts.iter().take(LISTED) {
                writeln!(f, "    {c}")?;
            }
            more(f, self.conflicts.len())?;
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

/// The start of the format tag of dinoscope's training state files (`train::checkpoint`),
/// known here so that one given as weights is named for what it is.
const TRAINING_STATE_TAG: &str = "dinoscope-train-state-";

/// Refuses a training state given as weights, by its header's `format` tag.
pub(super) fn refuse_training_state(path: &Path, format: Option<&str>) -> Result<(), WeightsError> {
    if !format.is_some_and(|f| f.starts_with(TRAINING_STATE_TAG)) {
        return Ok(());
    }
    Err(format_err(
        path,
        "this is a training state (a checkpoint's state.safetensors: student, teacher, \
         optimizer moments), not backbone weights; use the teacher_backbone.safetensors beside \
         it or in its run folder",
    ))
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
// Decoding

fn decode(
    path: &Path,
    name: &str,
    view: &safetensors::tensor::TensorView<'_>,
) -> Result<HostTensor, WeightsError> {
    let raw = view.data();
    let data: Vec<f32> = match crate::io::decode_float(view.dtype(), raw) {
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
        // F64 values past f32's range become infinite in the conversion: they are not damage.
        let too_large = view.dtype() == safetensors::Dtype::F64
            && raw
                .chunks_exact(8)
                .filter_map(|c| c.try_into().ok().map(f64::from_le_bytes))
                .any(|v| v.is_finite() && (v as f32).is_infinite());
        let message = if too_large {
            format!(
                "tensor '{name}' holds values past f32's range of ±3.4e38, in which the runtime \
                 computes ({bad} of {} values)",
                data.len()
            )
        } else {
            format!(
                "tensor '{name}' holds {bad} NaN or infinite values of {} (the weights are \
                 damaged, or come from a run that diverged)",
                data.len()
            )
        };
        return Err(format_err(path, message));
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

/// A file's tensors on their way to a backbone's: under the expected names so far, where each
/// came from, and what does not fit.
#[derive(Default)]
struct Gathered {
    tensors: BTreeMap<String, HostTensor>,
    /// The file's name (or names, for a fused tensor) of each tensor.
    sources: BTreeMap<String, String>,
    ignored: Vec<String>,
    /// The parts of the tensors a Hugging Face file splits (query/key/value, gate/up).
    fused: BTreeMap<String, PartSlot>,
    /// Expected names already reported through their Hugging Face parts.
    accounted: BTreeSet<String>,
    report: Mismatch,
}

/// [`load_backbone`] on the bytes of a safetensors file; `path` names it in errors.
pub fn from_bytes(
    path: &Path,
    bytes: &[u8],
    cfg: &VitConfig,
) -> Result<BackboneWeights, WeightsError> {
    cfg.validate_named(&path.display().to_string())?;
    let st = deserialize(path, bytes)?;
    if let Ok((_, meta)) = safetensors::SafeTensors::read_metadata(bytes) {
        let format = meta.metadata().as_ref().and_then(|m| m.get("format"));
        refuse_training_state(path, format.map(String::as_str))?;
    }
    let views: BTreeMap<String, safetensors::tensor::TensorView<'_>> =
        st.iter().map(|(n, v)| (n.to_string(), v)).collect();
    let (naming, entries) = plan(views.keys().map(String::as_str));
    let expected: BTreeMap<String, Vec<usize>> = expected_tensors(cfg).into_iter().collect();
    let mut g = Gathered::default();
    for (orig, target) in entries {
        if let Some(view) = views.get(&orig) {
            g.take(path, &expected, orig, target, view)?;
        }
    }
    g.fuse_parts(&expected, cfg);
    // The official DINOv3 qkv bias keeps a key third that its bias_mask zeroes.
    if !cfg.key_bias {
        for i in 0..cfg.depth {
            if let Some(t) = g.tensors.get_mut(&qkv_name(i, true)) {
                let third = t.data.len() / 3;
                t.data[third..2 * third].fill(0.0);
            }
        }
    }
    g.check_shapes(&expected, naming);
    let Gathered {
        tensors,
        mut ignored,
        mut report,
        ..
    } = g;
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

impl Gathered {
    /// Takes the file's tensor `orig` as `target` says: ignored, unexpected, one of the
    /// expected tensors, or a part of one.
    fn take(
        &mut self,
        path: &Path,
        expected: &BTreeMap<String, Vec<usize>>,
        orig: String,
        target: Target,
        view: &safetensors::tensor::TensorView<'_>,
    ) -> Result<(), WeightsError> {
        let report = &mut self.report;
        match target {
            Target::Ignored => self.ignored.push(orig),
            Target::Unknown => report.unexpected.push((orig, view.shape().to_vec())),
            Target::Hub(hub) => {
                if !expected.contains_key(&hub) {
                    report.unexpected.push((orig, view.shape().to_vec()));
                    return Ok(());
                }
                if let Some(first) = self.sources.get(&hub) {
                    report
                        .conflicts
                        .push(format!("{hub} (from '{first}' and '{orig}')"));
                    return Ok(());
                }
                let t = decode(path, &orig, view)?;
                self.sources.insert(hub.clone(), orig);
                self.tensors.insert(hub, t);
            }
            Target::Part { hub, part, parts } => {
                let slot = self
                    .fused
                    .entry(hub.clone())
                    .or_insert_with(|| (parts, vec![None; parts]));
                if let Some((first, _)) = &slot.1[part] {
                    report
                        .conflicts
                        .push(format!("{hub} (from '{first}' and '{orig}')"));
                    return Ok(());
                }
                let t = decode(path, &orig, view)?;
                slot.1[part] = Some((orig, t));
            }
        }
        Ok(())
    }

    /// Fuses row blocks: query/key/value into qkv, SwiGLU gate/up into w12; a missing or
    /// misshapen part is reported under its own name.
    fn fuse_parts(&mut self, expected: &BTreeMap<String, Vec<usize>>, cfg: &VitConfig) {
        for (hub, (parts, mut slot)) in std::mem::take(&mut self.fused) {
            let Some(full) = expected.get(&hub) else {
                for (orig, t) in slot.into_iter().flatten() {
                    self.report.unexpected.push((orig, t.shape));
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
            self.accounted.insert(hub.clone());
            if !self.parts_fit(&hub, &slot, &part_shape) {
                continue;
            }
            let mut data = Vec::with_capacity(full.iter().product());
            let mut names = Vec::new();
            for (orig, t) in slot.into_iter().flatten() {
                data.extend_from_slice(&t.data);
                names.push(orig);
            }
            self.sources.insert(hub.clone(), names.join(" + "));
            let shape = full.clone();
            self.tensors.insert(hub, HostTensor { shape, data });
        }
    }

    /// Whether every part of `hub` is present with `part_shape`; reports those that are not.
    fn parts_fit(
        &mut self,
        hub: &str,
        slot: &[Option<(String, HostTensor)>],
        part_shape: &[usize],
    ) -> bool {
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
                        .unwrap_or_else(|| format!("{hub} ({} rows)", part_label(hub, k)));
                    self.report.missing.push((
                        name,
                        part_shape.to_vec(),
                        Some(format!("rows {}..{} of {hub}", k * rows, (k + 1) * rows)),
                    ));
                    ok = false;
                }
                Some((orig, t)) if t.shape != part_shape => {
                    self.report.wrong_shape.push(WrongShape {
                        name: orig.clone(),
                        source: None,
                        expected: part_shape.to_vec(),
                        found: t.shape.clone(),
                    });
                    ok = false;
                }
                Some(_) => {}
            }
        }
        ok
    }

    /// Reports every expected tensor that is missing or has another shape. A [1, 1, D] mask
    /// token (DINOv3 layout) is accepted as [1, D].
    fn check_shapes(&mut self, expected: &BTreeMap<String, Vec<usize>>, naming: Naming) {
        for (name, want) in expected {
            match self.tensors.get_mut(name) {
                Some(t) if &t.shape != want => {
                    if name == "mask_token"
                        && t.shape.len() == 3
                        && t.shape[..2] == [1, 1]
                        && t.shape[2..] == want[1..]
                    {
                        t.shape = want.clone();
                        continue;
                    }
                    self.report.wrong_shape.push(WrongShape {
                        name: name.clone(),
                        source: self.sources.get(name).filter(|s| *s != name).cloned(),
                        expected: want.clone(),
                        found: t.shape.clone(),
                    });
                }
                Some(_) => {}
                None if self.accounted.contains(name) => {}
                None => self.report.missing.push((
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
    }
}

fn qkv_name(block: usize, bias: bool) -> String {
    format!(
        "blocks.{block}.attn.qkv.{}",
        if bias { "bias" } else { "weight" }
    )
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
