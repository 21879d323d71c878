//! Reading the golden-tensor format: a folder with `manifest.json` and safetensors files
//! (`ops.safetensors`, `losses.safetensors`, model folders). Shapes are read from the files;
//! nothing assumes the sizes of one particular set.

pub use crate::io::{decode_float, HostTensor};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A problem with a fixtures folder or one of its files.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FixtureError {
    /// The file or folder.
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
}

impl FixtureError {
    /// An error about `path`.
    pub fn new(path: &Path, message: impl Into<String>) -> Self {
        FixtureError {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

/// One tensor's entry in `manifest.json`.
#[derive(Clone, Debug, Deserialize)]
pub struct ManifestEntry {
    /// File relative to the folder.
    pub file: String,
    /// Tensor name.
    pub name: String,
    /// input, output, grad, param, info.
    #[serde(default)]
    pub role: String,
    /// How it was made.
    #[serde(default)]
    pub description: String,
    /// max |float32 − float64| of the reference computation.
    #[serde(default)]
    pub f64_max_abs_diff: Option<f64>,
    /// Zero in exact arithmetic (compare with an absolute tolerance).
    #[serde(default)]
    pub exactly_zero_in_exact_arithmetic: Option<bool>,
}

/// The loss settings a fixture set was made with (`settings.losses` of the manifest).
#[derive(Clone, Debug, Deserialize)]
pub struct LossSettings {
    /// Teacher temperature.
    #[serde(default = "default_teacher_temp")]
    pub teacher_temp: f32,
    /// Student temperature.
    #[serde(default = "default_student_temp")]
    pub student_temp: f32,
    /// Center EMA momentum.
    #[serde(default = "default_center_momentum")]
    pub center_momentum: f32,
    /// Sinkhorn-Knopp iterations.
    #[serde(default = "default_sk_iters")]
    pub sk_iters: usize,
    /// Global crops.
    #[serde(default = "default_n_global")]
    pub n_global: usize,
}

fn default_teacher_temp() -> f32 {
    0.04
}
fn default_student_temp() -> f32 {
    0.1
}
fn default_center_momentum() -> f32 {
    0.9
}
fn default_sk_iters() -> usize {
    3
}
fn default_n_global() -> usize {
    2
}

impl Default for LossSettings {
    fn default() -> Self {
        LossSettings {
            teacher_temp: default_teacher_temp(),
            student_temp: default_student_temp(),
            center_momentum: default_center_momentum(),
            sk_iters: default_sk_iters(),
            n_global: default_n_global(),
        }
    }
}

#[derive(Deserialize, Default)]
struct Settings {
    #[serde(default)]
    losses: Option<LossSettings>,
}

#[derive(Deserialize)]
struct ManifestFile {
    #[serde(default)]
    tensors: Vec<ManifestEntry>,
    /// Every file of the set (its configs too), with what the generator says of each.
    #[serde(default)]
    files: std::collections::BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    settings: Option<Settings>,
}

/// The manifest of a fixtures folder, indexed by (file, name).
#[derive(Default)]
pub struct Manifest {
    entries: HashMap<(String, String), ManifestEntry>,
    /// The files the manifest's `files` section lists.
    listed: Vec<String>,
    /// Loss settings (the DINOv2 defaults when the manifest has none).
    pub losses: LossSettings,
}

impl Manifest {
    /// Reads `dir/manifest.json`.
    pub fn load(dir: &Path) -> Result<Manifest, FixtureError> {
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| FixtureError::new(&path, format!("cannot read: {e}")))?;
        Self::from_json(&text, &path)
    }

    /// Parses a manifest's text; `path` names it in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Manifest, FixtureError> {
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| FixtureError::new(path, format!("not a valid manifest: {e}")))?;
        if !v.is_object() {
            return Err(FixtureError::new(
                path,
                "not a valid manifest: a JSON object was expected",
            ));
        }
        // A later layout could mean other tolerances or names; read only the one this is.
        if let Some(version) = v.get("format_version").filter(|f| f.as_u64() != Some(1)) {
            return Err(FixtureError::new(
                path,
                format!(
                    "format_version {version}; this build reads fixture manifests of version 1"
                ),
            ));
        }
        let m: ManifestFile = serde_json::from_value(v)
            .map_err(|e| FixtureError::new(path, format!("not a valid manifest: {e}")))?;
        Ok(Manifest {
            listed: m.files.into_keys().collect(),
            losses: m.settings.and_then(|s| s.losses).unwrap_or_default(),
            entries: m
                .tensors
                .into_iter()
                .map(|e| ((e.file.clone(), e.name.clone()), e))
                .collect(),
        })
    }

    /// The files the manifest lists tensors of, relative to its folder, sorted.
    pub fn files(&self) -> Vec<&str> {
        let set: std::collections::BTreeSet<&str> = self
            .entries
            .keys()
            .map(|(f, _)| f.as_str())
            .chain(self.listed.iter().map(String::as_str))
            .collect();
        set.into_iter().collect()
    }

    /// The tensors the manifest lists in `file`, sorted.
    pub fn tensors_in(&self, file: &str) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .entries
            .keys()
            .filter(|(f, _)| f == file)
            .map(|(_, n)| n.as_str())
            .collect();
        names.sort_unstable();
        names
    }

    /// The entry of `name` in `file`.
    pub fn get(&self, file: &str, name: &str) -> Option<&ManifestEntry> {
        self.entries.get(&(file.to_string(), name.to_string()))
    }

    /// The tolerance rule of the golden README for an expected tensor:
    /// `max(20·f64_max_abs_diff, 1e-6·max(1, max|expected|))`, at least 1e-5 for values that are
    /// zero in exact arithmetic. Without an entry: `1e-5·max(1, max|expected|)`.
    pub fn tolerance(&self, file: &str, name: &str, expected: &[f32]) -> f32 {
        let max_abs = expected.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        match self.get(file, name) {
            Some(e) => {
                let mut tol =
                    (20.0 * e.f64_max_abs_diff.unwrap_or(0.0) as f32).max(1e-6 * max_abs.max(1.0));
                if e.exactly_zero_in_exact_arithmetic == Some(true) {
                    tol = tol.max(1e-5);
                }
                tol
            }
            None => 1e-5 * max_abs.max(1.0),
        }
    }
}

/// All tensors of one safetensors file.
pub struct TensorFile {
    /// Where it came from.
    pub path: PathBuf,
    tensors: HashMap<String, HostTensor>,
    order: Vec<String>,
}

impl TensorFile {
    /// The tensor names of the safetensors file at `path`, from its header alone.
    pub fn header_names(path: &Path) -> Result<std::collections::BTreeSet<String>, FixtureError> {
        use std::io::Read;
        let bad = |what: String| FixtureError::new(path, what);
        let mut f = std::fs::File::open(path).map_err(|e| bad(format!("cannot read: {e}")))?;
        let mut len = [0u8; 8];
        f.read_exact(&mut len)
            .map_err(|e| bad(format!("not a valid safetensors file ({e})")))?;
        let n = u64::from_le_bytes(len);
        if n > 100_000_000 {
            return Err(bad(format!(
                "not a valid safetensors file (a {n}-byte header)"
            )));
        }
        let mut header = Vec::new();
        f.take(n)
            .read_to_end(&mut header)
            .map_err(|e| bad(format!("cannot read: {e}")))?;
        let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header)
            .map_err(|e| bad(format!("not a valid safetensors file ({e})")))?;
        Ok(map
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k != "__metadata__")
            .collect())
    }

    /// Reads and decodes a whole file (F32, F16, BF16, F64, I32, I64, U8).
    pub fn open(path: &Path) -> Result<TensorFile, FixtureError> {
        let bytes = std::fs::read(path)
            .map_err(|e| FixtureError::new(path, format!("cannot read: {e}")))?;
        Self::from_bytes(path, &bytes)
    }

    /// Decodes safetensors bytes; `path` names them in errors.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<TensorFile, FixtureError> {
        use safetensors::{Dtype, SafeTensors};
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| FixtureError::new(path, format!("not a valid safetensors file ({e})")))?;
        let mut tensors = HashMap::new();
        let mut order = Vec::new();
        for (name, view) in st.tensors() {
            let raw = view.data();
            let data: Vec<f32> = match decode_float(view.dtype(), raw) {
                Some(v) => v,
                None => match view.dtype() {
                    Dtype::I32 => raw
                        .chunks_exact(4)
                        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32)
                        .collect(),
                    Dtype::I64 => raw
                        .chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
                        .collect(),
                    Dtype::U8 | Dtype::BOOL => raw.iter().map(|&b| b as f32).collect(),
                    other => {
                        return Err(FixtureError::new(
                            path,
                            format!("tensor '{name}' has unsupported dtype {other:?}"),
                        ));
                    }
                },
            };
            order.push(name.clone());
            tensors.insert(
                name,
                HostTensor {
                    shape: view.shape().to_vec(),
                    data,
                },
            );
        }
        order.sort();
        Ok(TensorFile {
            path: path.to_path_buf(),
            tensors,
            order,
        })
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> &[String] {
        &self.order
    }

    /// Whether a tensor exists.
    pub fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// A tensor, or an error naming the file and the tensor.
    pub fn get(&self, name: &str) -> Result<&HostTensor, FixtureError> {
        self.tensors
            .get(name)
            .ok_or_else(|| FixtureError::new(&self.path, format!("missing tensor '{name}'")))
    }
}

/// Largest |a − b| and whether every element is within `tol`, plus a note on the first misses.
pub fn compare(got: &[f32], want: &[f32], tol: f32) -> (f32, bool, String) {
    if got.len() != want.len() {
        return (
            f32::INFINITY,
            false,
            format!("length {} vs expected {}", got.len(), want.len()),
        );
    }
    let mut max = 0.0f32;
    let mut misses = Vec::new();
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let d = (g - w).abs();
        let bad = d.is_nan() || d > tol;
        if bad && misses.len() < 3 {
            misses.push(format!("[{i}] got {g} want {w}"));
        }
        if d > max || d.is_nan() {
            max = if d.is_nan() { f32::INFINITY } else { d };
        }
    }
    let ok = misses.is_empty();
    (max, ok, misses.join(", "))
}
