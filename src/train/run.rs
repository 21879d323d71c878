//! A training run: data, steps, metrics log (JSON lines), k-NN evaluation, collapse warnings,
//! atomic checkpoints and exact resume.
//!
//! A run folder holds `state.safetensors` (student, teacher, AdamW moments, centers; the step and
//! the training config in its metadata), `teacher_backbone.safetensors` (torch-hub names: loads
//! into PyTorch's `dinov2_vits14` with strict=True), `config.ron` (the backbone config, so the
//! other commands find it next to the weights), `train.ron` and `metrics.jsonl`.

use super::config::TrainConfig;
use super::trainer::{StepMetrics, TrainState, Trainer};
use crate::data::dataset::{fashion_mnist_bundled, open_dataset, Dataset};
#[cfg(not(target_arch = "wasm32"))]
use crate::data::loader::Loader;
use crate::gpu::Gpu;
use std::collections::HashMap;
#[cfg(not(target_arch = "wasm32"))]
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How to run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Run folder.
    pub out_dir: PathBuf,
    /// Continue from the run folder's checkpoint.
    pub resume: bool,
    /// Training data (a folder of images or an IDX file); the bundled Fashion-MNIST otherwise.
    pub data: Option<PathBuf>,
    /// Stop after this many steps in this process (the schedules still span `cfg.steps`).
    pub stop_after: Option<u64>,
    /// Start a new run in a folder that already holds one (its files are replaced).
    pub overwrite: bool,
}

/// Files that mark a folder as holding a training run.
#[cfg(not(target_arch = "wasm32"))]
const RUN_FILES: [&str; 3] = ["state.safetensors", "metrics.jsonl", "train.ron"];

/// A run folder held by this process: `.dinoscope.lock` with our pid, removed when dropped. A
/// lock left by a process that no longer exists (killed) is taken over.
#[cfg(not(target_arch = "wasm32"))]
pub struct RunLock {
    path: PathBuf,
}

#[cfg(not(target_arch = "wasm32"))]
impl RunLock {
    /// Takes the lock of `dir`, or says which process holds it.
    pub fn acquire(dir: &Path) -> Result<RunLock, String> {
        let path = dir.join(".dinoscope.lock");
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    let _ = writeln!(f, "{}", std::process::id());
                    return Ok(RunLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let pid: Option<u32> = std::fs::read_to_string(&path)
                        .ok()
                        .and_then(|t| t.trim().parse().ok());
                    match pid {
                        Some(pid) if process_alive(pid) => {
                            return Err(format!(
                                "{}: another dinoscope (pid {pid}) is training into this folder; \
                                 wait for it, or choose another --out",
                                dir.display()
                            ))
                        }
                        // Stale (its process is gone) or unreadable: take it over.
                        _ => {
                            let _ = std::fs::remove_file(&path);
                        }
                    }
                }
                Err(e) => return Err(format!("{}: cannot create: {e}", path.display())),
            }
        }
        Err(format!("{}: cannot take the run lock", path.display()))
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether a process with this pid exists (Linux: /proc; elsewhere assumed alive, so a stale
/// lock must be removed by hand, as the message says).
#[cfg(not(target_arch = "wasm32"))]
fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

/// What a run ended with.
#[derive(Clone, Debug, Default)]
pub struct RunSummary {
    /// Steps done in total.
    pub steps: u64,
    /// Last metrics.
    pub last: Option<StepMetrics>,
    /// k-NN accuracies measured (step, accuracy).
    pub knn: Vec<(u64, f32)>,
}

/// Labelled train and test sets for k-NN (the bundled Fashion-MNIST when training on it).
pub type EvalSets = Option<(Arc<dyn Dataset>, Arc<dyn Dataset>)>;

/// The datasets of a run: training data and the k-NN sets.
pub fn datasets(data: Option<&Path>) -> Result<(Arc<dyn Dataset>, EvalSets), String> {
    match data {
        Some(p) => Ok((Arc::from(open_dataset(p).map_err(|e| e.to_string())?), None)),
        None => {
            let (train, test) = fashion_mnist_bundled().map_err(|e| e.to_string())?;
            let train: Arc<dyn Dataset> = Arc::new(train);
            Ok((train.clone(), Some((train, Arc::new(test)))))
        }
    }
}

const STATE: &str = "state.safetensors";

/// Writes a checkpoint atomically (each file via a temporary file, fsync and rename; the state
/// file last, so an interrupted save leaves the previous checkpoint whole).
pub fn save_checkpoint(dir: &Path, cfg: &TrainConfig, trainer: &Trainer) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: cannot create: {e}", dir.display()))?;
    let st = trainer.state().map_err(|e| e.to_string())?;
    let backbone = trainer
        .teacher_backbone_values()
        .map_err(|e| e.to_string())?;
    let layout = crate::model::vit::param_layout(&cfg.model);
    let tensors: Vec<(String, Vec<usize>, &[f32])> = layout
        .entries
        .iter()
        .map(|e| {
            (
                e.name.clone(),
                e.shape.clone(),
                backbone[&e.name].as_slice(),
            )
        })
        .collect();
    let bytes = crate::io::safetensors_bytes(&tensors, None)?;
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        crate::io::write_atomic(&p, bytes)
            .map_err(|e| format!("{}: cannot write: {e}", p.display()))
    };
    write("teacher_backbone.safetensors", &bytes)?;
    write("config.ron", model_ron(cfg).as_bytes())?;
    write("train.ron", cfg.to_ron().as_bytes())?;
    let mut meta = HashMap::new();
    meta.insert("step".to_string(), st.step.to_string());
    meta.insert("train_config".to_string(), cfg.to_ron());
    meta.insert("format".to_string(), "dinoscope-train-state-1".to_string());
    let k = cfg.head.prototypes;
    let n = st.student.len();
    let state = crate::io::safetensors_bytes(
        &[
            ("student".into(), vec![n], &st.student[..]),
            ("teacher".into(), vec![n], &st.teacher[..]),
            ("adamw_m".into(), vec![n], &st.m1[..]),
            ("adamw_v".into(), vec![n], &st.m2[..]),
            ("center_dino".into(), vec![k], &st.center_dino[..]),
            (
                "center_ibot".into(),
                vec![cfg.ibot_prototypes()],
                &st.center_ibot[..],
            ),
        ],
        Some(meta),
    )?;
    write(STATE, &state)
}

fn model_ron(cfg: &TrainConfig) -> String {
    cfg.model.to_ron().unwrap_or_default()
}

/// Reads a run folder's checkpoint: its training config and state.
pub fn load_checkpoint(dir: &Path) -> Result<(TrainConfig, TrainState), String> {
    let p = dir.join(STATE);
    let bytes = std::fs::read(&p)
        .map_err(|e| format!("{}: cannot read the checkpoint: {e}", p.display()))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| format!("{}: not a valid checkpoint ({e})", p.display()))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    let step: u64 = meta
        .get("step")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{}: the checkpoint has no step", p.display()))?;
    let cfg = TrainConfig::from_ron(
        meta.get("train_config").map_or("", |s| s.as_str()),
        &p.display().to_string(),
    )?;
    let f = crate::fixtures::TensorFile::from_bytes(&p, &bytes).map_err(|e| e.to_string())?;
    let get = |n: &str| f.get(n).map(|t| t.data.clone()).map_err(|e| e.to_string());
    let st = TrainState {
        step,
        student: get("student")?,
        teacher: get("teacher")?,
        m1: get("adamw_m")?,
        m2: get("adamw_v")?,
        center_dino: get("center_dino")?,
        center_ibot: get("center_ibot")?,
    };
    Ok((cfg, st))
}

/// Collapse checks (after `settle` steps: DINO starts near ln K): every image on one prototype
/// (the batch's mean teacher target far from uniform, or the loss near 0), uniform targets (the
/// loss stuck at ln K with high teacher entropy), or collapsed features (no spread over the batch).
#[cfg(not(target_arch = "wasm32"))]
fn collapse_warning(m: &StepMetrics, k: usize, settle: u64) -> Option<String> {
    let ln_k = (k as f32).ln();
    if m.step < settle {
        return None;
    }
    if m.teacher_kl_uniform.is_some_and(|kl| kl > 0.9 * ln_k) || m.dino < 0.05 {
        return Some(format!(
            "collapse to one prototype: the teacher puts the whole batch on few prototypes (KL to uniform {:.2} of ln K = {ln_k:.2}, DINO loss {:.3}). \
             Check centering or use Sinkhorn-Knopp targets, raise the teacher momentum, lower the learning rate.",
            m.teacher_kl_uniform.unwrap_or(f32::NAN),
            m.dino
        ));
    }
    if (m.dino - ln_k).abs() < 0.01 * ln_k && m.teacher_entropy.is_none_or(|h| h > 0.95 * ln_k) {
        return Some(format!(
            "collapse to uniform: DINO loss {:.3} ≈ ln K = {ln_k:.3} with near-uniform teacher targets. \
             Lower the teacher temperature, raise KoLeo, or lower the learning rate.",
            m.dino
        ));
    }
    if m.feature_std.is_some_and(|s| s < 1e-4) {
        return Some("collapsed features: the student's CLS features barely vary over the batch. Lower the learning rate or raise KoLeo.".into());
    }
    None
}

/// Trains (or continues) a run; `on_step` sees every step's metrics.
#[cfg(not(target_arch = "wasm32"))]
pub fn run(
    gpu: &Gpu,
    cfg: TrainConfig,
    opts: &RunOptions,
    mut on_step: impl FnMut(&StepMetrics),
) -> Result<RunSummary, String> {
    if !opts.resume && !opts.overwrite {
        if let Some(f) = RUN_FILES.iter().find(|f| opts.out_dir.join(f).exists()) {
            return Err(format!(
                "{}: already holds a training run ({f}); continue it with --resume, start over \
                 with --overwrite, or choose another --out",
                opts.out_dir.display()
            ));
        }
    }
    let (train_ds, eval) = datasets(opts.data.as_deref())?;
    let mut trainer = if opts.resume {
        let (ck_cfg, st) = load_checkpoint(&opts.out_dir)?;
        if ck_cfg != cfg {
            log::warn!("resuming with the checkpoint's own training config");
        }
        Trainer::from_state(gpu, ck_cfg, &st).map_err(|e| e.to_string())?
    } else {
        Trainer::new(gpu, cfg).map_err(|e| e.to_string())?
    };
    let cfg = trainer.cfg.clone();
    let start = trainer.step;
    std::fs::create_dir_all(&opts.out_dir)
        .map_err(|e| format!("{}: cannot create: {e}", opts.out_dir.display()))?;
    let _lock = RunLock::acquire(&opts.out_dir)?;
    let metrics_path = opts.out_dir.join("metrics.jsonl");
    // Lines past the checkpoint are dropped: those steps are done again, identically.
    let kept: String = std::fs::read_to_string(&metrics_path)
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v.get("step")?.as_u64())
                .is_some_and(|s| s < start)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&metrics_path, kept)
        .map_err(|e| format!("{}: cannot write: {e}", metrics_path.display()))?;
    let mut log_file = std::fs::OpenOptions::new()
        .append(true)
        .open(&metrics_path)
        .map_err(|e| format!("{}: cannot open: {e}", metrics_path.display()))?;
    let loader_cfg = cfg.loader_config();
    let mut loader = Loader::new(train_ds, loader_cfg, start);
    let end = opts
        .stop_after
        .map_or(cfg.steps, |s| (start + s).min(cfg.steps));
    let mut summary = RunSummary {
        steps: start,
        ..Default::default()
    };
    let mut warned = false;
    while trainer.step < end {
        let batch = loader.next_batch().map_err(|e| e.to_string())?;
        let m = trainer.train_step(&batch).map_err(|e| e.to_string())?;
        if !m.loss.is_finite() {
            return Err(format!(
                "step {}: the loss is not finite ({}); the last checkpoint in {} is intact",
                m.step,
                m.loss,
                opts.out_dir.display()
            ));
        }
        let mut line = serde_json::to_value(&m).unwrap_or_default();
        if let Some(w) = collapse_warning(
            &m,
            cfg.head.prototypes,
            (2 * cfg.warmup_steps).max(cfg.steps / 2),
        ) {
            if !warned {
                log::warn!("{w}");
                warned = true;
            }
            line["warning"] = serde_json::Value::String(w);
        }
        let done = trainer.step;
        if let Some((tr, te)) = &eval {
            if (cfg.eval_every > 0 && done.is_multiple_of(cfg.eval_every)) || done == cfg.steps {
                let acc = knn_eval(gpu, &trainer, tr.as_ref(), te.as_ref(), &cfg)?;
                line["knn"] = serde_json::json!(acc);
                summary.knn.push((done, acc));
            }
        }
        writeln!(log_file, "{line}")
            .map_err(|e| format!("{}: cannot write: {e}", metrics_path.display()))?;
        on_step(&m);
        if (cfg.checkpoint_every > 0 && done.is_multiple_of(cfg.checkpoint_every)) || done == end {
            save_checkpoint(&opts.out_dir, &cfg, &trainer)?;
        }
        summary.last = Some(m);
        summary.steps = done;
    }
    Ok(summary)
}

/// k-NN accuracy (k = 20, T = 0.07) of the teacher backbone's CLS features.
pub fn knn_eval(
    gpu: &Gpu,
    trainer: &Trainer,
    train: &dyn Dataset,
    test: &dyn Dataset,
    cfg: &TrainConfig,
) -> Result<f32, String> {
    let size = cfg.augment.global_size;
    let vit = trainer.teacher_backbone();
    let (trf, try_) = super::knn::features(gpu, vit, train, cfg.knn_train, size, 128)?;
    let (tef, tey) = super::knn::features(gpu, vit, test, cfg.knn_test, size, 128)?;
    Ok(super::knn::knn_accuracy(
        &trf,
        &try_,
        &tef,
        &tey,
        cfg.model.dim,
        20,
        0.07,
    ))
}
