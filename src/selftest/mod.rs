//! `dinoscope selftest`: every kernel against its CPU twin at awkward sizes and extreme values,
//! and every case of a golden fixtures folder, on the user's own adapter.

mod attention_checks;
mod checks;
mod embed_checks;
mod half;
pub mod layouts;
mod losses;
mod mixed;
mod model;
mod ops;
mod train_checks;

pub use checks::{kernel_checks, random as checks_random, KernelCheck};
pub use model::{check_model_forward, hub_grads_to_hf, run_model_case, F16_TOLERANCE};
pub use ops::{op_case_kind, run_op_case, Exec, OpKind};

use crate::fixtures::{FixtureError, Manifest, TensorFile};
use crate::gpu::Gpu;
use std::path::Path;

/// How a case ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    /// Every output within tolerance.
    Pass,
    /// Some output out of tolerance, or the case could not run; the text says why.
    Fail(String),
    /// The part this case tests is not built yet.
    Unsupported(String),
}

/// One row of the selftest table.
#[derive(Clone, Debug)]
pub struct CaseResult {
    /// Case name (`matmul`, `layer_norm_offset`, `interp.aa_5x6`, `kernel.softmax_extreme`, …).
    pub name: String,
    /// Outcome.
    pub status: Status,
    /// Largest absolute error of the worst output (relative to its tolerance).
    pub max_err: f32,
    /// That output's tolerance.
    pub tol: f32,
    /// How many tensors were compared.
    pub compared: usize,
}

impl CaseResult {
    /// A row for a case whose part is not built (or cannot run here).
    pub fn unsupported(name: &str, why: impl Into<String>) -> CaseResult {
        CaseResult {
            name: name.to_string(),
            status: Status::Unsupported(why.into()),
            max_err: 0.0,
            tol: 0.0,
            compared: 0,
        }
    }

    /// Whether this row counts as a failure.
    pub fn failed(&self) -> bool {
        matches!(self.status, Status::Fail(_))
    }

    /// One table row: name, pass/FAIL/unsupported, max abs error, tolerance.
    pub fn row(&self) -> String {
        let (word, note) = match &self.status {
            Status::Pass => ("pass", String::new()),
            Status::Fail(why) => ("FAIL", format!("  {why}")),
            Status::Unsupported(why) => ("unsupported", format!("  {why}")),
        };
        if matches!(self.status, Status::Unsupported(_)) {
            format!(
                "{:<28} {:<11} {:>10} {:>10}{note}",
                self.name, word, "-", "-"
            )
        } else {
            format!(
                "{:<28} {:<11} {:>10.3e} {:>10.3e}{note}",
                self.name, word, self.max_err, self.tol
            )
        }
    }
}

/// Accumulates output comparisons into one case result.
pub(crate) struct Judge {
    name: String,
    compared: usize,
    worst_ratio: f32,
    max_err: f32,
    tol: f32,
    failures: Vec<String>,
}

impl Judge {
    pub(crate) fn new(name: &str) -> Self {
        Judge {
            name: name.to_string(),
            compared: 0,
            worst_ratio: -1.0,
            max_err: 0.0,
            tol: 0.0,
            failures: Vec::new(),
        }
    }

    pub(crate) fn check(&mut self, what: &str, got: &[f32], want: &[f32], tol: f32) {
        self.compared += 1;
        let (err, ok, note) = crate::fixtures::compare(got, want, tol);
        let ratio = if tol > 0.0 { err / tol } else { err };
        if ratio > self.worst_ratio || !ratio.is_finite() {
            self.worst_ratio = if ratio.is_finite() {
                ratio
            } else {
                f32::INFINITY
            };
            self.max_err = err;
            self.tol = tol;
        }
        if !ok {
            self.failures
                .push(format!("{what}: max err {err:.3e} > {tol:.3e} ({note})"));
        }
    }

    pub(crate) fn fail(&mut self, why: String) {
        self.failures.push(why);
    }

    pub(crate) fn finish(self) -> CaseResult {
        let status = if self.failures.is_empty() {
            if self.worst_ratio < 0.0 {
                Status::Fail("no outputs to compare".into())
            } else {
                Status::Pass
            }
        } else {
            Status::Fail(self.failures.join("; "))
        };
        CaseResult {
            name: self.name,
            status,
            max_err: self.max_err,
            tol: self.tol,
            compared: self.compared,
        }
    }
}

/// Which cases run: those whose name contains one of `only` (every case when it is empty) and
/// none of `skip`, as `cargo test` filters tests.
#[derive(Clone, Debug, Default)]
pub struct CaseFilter {
    /// Name fragments a case must contain one of; empty runs every case.
    pub only: Vec<String>,
    /// Name fragments that leave a case out.
    pub skip: Vec<String>,
}

impl CaseFilter {
    /// Whether the case called `name` runs.
    pub fn runs(&self, name: &str) -> bool {
        (self.only.is_empty() || self.only.iter().any(|o| name.contains(o.as_str())))
            && !self.skip.iter().any(|s| name.contains(s.as_str()))
    }
}

/// Runs every case of a fixtures folder in the golden format with `exec` (the GPU, or the CPU
/// twins): the op cases of each top-level safetensors file grouped by name prefix, and the
/// model folders (forward outputs and gradients), and the loss cases.
pub fn run_fixtures(exec: &Exec, dir: &Path) -> Result<Vec<CaseResult>, FixtureError> {
    run_fixtures_filtered(exec, dir, &CaseFilter::default())
}

/// [`run_fixtures`], for the cases `filter` lets run (a folder with none of them is no error).
pub fn run_fixtures_filtered(
    exec: &Exec,
    dir: &Path,
    filter: &CaseFilter,
) -> Result<Vec<CaseResult>, FixtureError> {
    let mut results = Vec::new();
    walk_fixtures(exec, dir, filter, &mut |case| match case {
        Found::Model {
            path,
            manifest,
            name,
        } => results.push(match exec {
            Exec::Gpu(gpu) => run_model_case(gpu, path, manifest, name),
            Exec::Cpu => CaseResult::unsupported(name, "model cases run on the GPU only"),
        }),
        #[cfg(not(target_arch = "wasm32"))]
        Found::ModelF16 { gpu, path, name } => {
            results.extend(model::run_model_case_f16(gpu, path, name))
        }
        Found::Op {
            file,
            manifest,
            rel,
            case,
        } => results.push(match op_case_kind(case) {
            Some(kind) => run_op_case(exec, file, manifest, rel, case, kind),
            None => CaseResult::unsupported(case, unsupported_reason(case)),
        }),
    })?;
    Ok(results)
}

/// The names of the cases [`run_fixtures_filtered`] would run, in its order, without running
/// them.
pub fn list_fixtures(
    exec: &Exec,
    dir: &Path,
    filter: &CaseFilter,
) -> Result<Vec<String>, FixtureError> {
    let mut names = Vec::new();
    walk_fixtures(exec, dir, filter, &mut |case| {
        names.push(match case {
            Found::Model { name, .. } => name.to_string(),
            #[cfg(not(target_arch = "wasm32"))]
            Found::ModelF16 { name, .. } => format!("{name} (f16)"),
            Found::Op { case, .. } => case.to_string(),
        })
    })?;
    Ok(names)
}

/// One case of a fixtures folder, found and not yet run.
enum Found<'a> {
    /// A model folder's f32 case.
    Model {
        path: &'a Path,
        manifest: &'a Manifest,
        name: &'a str,
    },
    /// A model folder's f16 case (adapters with SHADER_F16).
    #[cfg(not(target_arch = "wasm32"))]
    ModelF16 {
        gpu: &'a Gpu,
        path: &'a Path,
        name: &'a str,
    },
    /// An op or loss case of a top-level safetensors file.
    Op {
        file: &'a TensorFile,
        manifest: &'a Manifest,
        rel: &'a str,
        case: &'a str,
    },
}

/// Hands every case of `dir` that `filter` lets run to `visit`, in the order they run: the
/// folder's entries sorted by name, a model folder's f32 case before its f16 one.
fn walk_fixtures(
    exec: &Exec,
    dir: &Path,
    filter: &CaseFilter,
    visit: &mut dyn FnMut(Found),
) -> Result<(), FixtureError> {
    // Only the f16 model cases, which the browser build leaves out, depend on the adapter.
    #[cfg(target_arch = "wasm32")]
    let _ = exec;
    if !dir.is_dir() {
        return Err(FixtureError::new(
            dir,
            "not a folder (expected manifest.json and *.safetensors)",
        ));
    }
    let manifest = Manifest::load(dir)?;
    // A listed file that is missing would leave its cases out unseen.
    if let Some(f) = manifest
        .files()
        .into_iter()
        .find(|f| !dir.join(f).is_file())
    {
        return Err(FixtureError::new(
            &dir.join(f),
            "listed in manifest.json but missing (the fixtures folder is incomplete)",
        ));
    }
    // So would a listed tensor missing from its file: its case would check nothing.
    for f in manifest
        .files()
        .into_iter()
        .filter(|f| f.ends_with(".safetensors"))
    {
        let held = TensorFile::header_names(&dir.join(f))?;
        if let Some(name) = manifest
            .tensors_in(f)
            .into_iter()
            .find(|n| !held.contains(*n))
        {
            return Err(FixtureError::new(
                &dir.join(f),
                format!(
                    "tensor '{name}' is listed in manifest.json but not in the file (the \
                     fixtures folder is incomplete)"
                ),
            ));
        }
    }
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| FixtureError::new(dir, format!("cannot list: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let mut found_any = false;
    for path in &files {
        if path.is_dir() {
            if path.join("config.json").is_file() {
                found_any = true;
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                if filter.runs(&name) {
                    visit(Found::Model {
                        path,
                        manifest: &manifest,
                        name: &name,
                    });
                }
                #[cfg(not(target_arch = "wasm32"))]
                if let Exec::Gpu(gpu) = exec {
                    let f16 = gpu.features.contains(wgpu::Features::SHADER_F16);
                    if f16 && filter.runs(&format!("{name} (f16)")) {
                        visit(Found::ModelF16 {
                            gpu,
                            path,
                            name: &name,
                        });
                    }
                }
            }
            continue;
        }
        if path.extension().and_then(|e| e.to_str()) != Some("safetensors") {
            continue;
        }
        found_any = true;
        let file = TensorFile::open(path)?;
        let rel = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        for case in case_names(&file).into_iter().filter(|c| filter.runs(c)) {
            visit(Found::Op {
                file: &file,
                manifest: &manifest,
                rel: &rel,
                case: &case,
            });
        }
    }
    if !found_any {
        return Err(FixtureError::new(
            dir,
            "no *.safetensors files or model folders found",
        ));
    }
    Ok(())
}

fn unsupported_reason(_case: &str) -> String {
    "no op of this name".into()
}

/// Case names of a file: tensors grouped by their first name component (`interp.*` by its first
/// two, since `interp.x` is the input all resize cases share).
pub fn case_names(file: &TensorFile) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for n in file.names() {
        let mut parts = n.split('.');
        let first = parts.next().unwrap_or_default();
        let case = if first == "interp" {
            match parts.next() {
                Some(second) if parts.next().is_some() => format!("interp.{second}"),
                _ => continue,
            }
        } else {
            first.to_string()
        };
        if !names.contains(&case) {
            names.push(case);
        }
    }
    names
}

/// Runs the kernel-vs-CPU checks on `gpu`, then every case of `dir`.
pub fn run_all(gpu: &Gpu, dir: &Path) -> Result<Vec<CaseResult>, FixtureError> {
    let mut rows: Vec<CaseResult> = kernel_checks().iter().map(|c| (c.run)(gpu)).collect();
    rows.extend(run_fixtures(&Exec::Gpu(gpu), dir)?);
    Ok(rows)
}
