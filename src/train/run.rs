//! A training run: data, steps, metrics log (JSON lines), k-NN evaluation, collapse warnings,
//! atomic checkpoints and exact resume.
//!
//! A run folder holds `checkpoints/step-N/` (the newest two; see [`super::checkpoint`]),
//! `teacher_backbone.safetensors` (torch-hub names: loads into PyTorch's `dinov2_vits14`, built
//! with `img_size` the run's crop size, with strict=True), `config.ron` (the backbone config, so the other commands find it next to the
//! weights) and `train.ron` (links to the latest checkpoint's files), and `metrics.jsonl`.

use super::config::TrainConfig;
use super::trainer::{StepMetrics, TrainState, Trainer};
use crate::data::dataset::{fashion_mnist_bundled, open_dataset, Dataset};
use crate::gpu::Gpu;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[cfg(not(target_arch = "wasm32"))]
mod lock;
#[cfg(not(target_arch = "wasm32"))]
mod steps;

#[cfg(not(target_arch = "wasm32"))]
pub use lock::RunLock;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use steps::keep_edited_config;

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
    /// Fit a new run into this wall time (see [`super::budget`]).
    pub time_limit: Option<std::time::Duration>,
    /// Once set (by Ctrl-C, see [`super::interrupt`]), the run ends after the step in flight
    /// and writes its checkpoint there.
    pub stop: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// The run folder's record of its training data (`{"data": "/full/path"}`, null for the bundled
/// Fashion-MNIST), written at a new run's first step and read when it is resumed without
/// `--data`.
#[cfg(not(target_arch = "wasm32"))]
pub const DATA_RECORD: &str = "data.json";

/// Files a training run writes into its folder: any of them marks the folder as holding one,
/// which `train` replaces only with `--overwrite` (and then all of them).
#[cfg(not(target_arch = "wasm32"))]
const RUN_FILES: [&str; 7] = [
    super::checkpoint::CHECKPOINTS,
    super::checkpoint::STATE,
    "metrics.jsonl",
    "train.ron",
    super::checkpoint::BACKBONE,
    "config.ron",
    DATA_RECORD,
];

/// Whether a folder holds a training run (a checkpoint, metrics or a training config).
#[cfg(not(target_arch = "wasm32"))]
pub fn holds_run(dir: &Path) -> bool {
    RUN_FILES.iter().any(|f| dir.join(f).exists())
}

/// Makes a new run folder under `root`: `<date>-<time>-<label>` (UTC), with `-2`, `-3`, …
/// appended when that name is taken. Each candidate is created, not checked and then created, so
/// two runs started within the same second never share one.
#[cfg(not(target_arch = "wasm32"))]
pub fn create_run_dir(root: &Path, label: &str) -> Result<PathBuf, String> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, mo, d) = civil_date(secs / 86_400);
    let t = secs % 86_400;
    let label: String = label
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let base = root.join(format!(
        "{y:04}-{mo:02}-{d:02}-{:02}{:02}{:02}-{label}",
        t / 3600,
        t / 60 % 60,
        t % 60
    ));
    std::fs::create_dir_all(root).map_err(|e| format!("{}: cannot create: {e}", root.display()))?;
    let name = base
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    for i in 1u32..10_000 {
        let dir = if i == 1 {
            base.clone()
        } else {
            base.with_file_name(format!("{name}-{i}"))
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("{}: cannot create: {e}", dir.display())),
        }
    }
    Err(format!("{}: no free name for a new run", base.display()))
}

/// `dir` when nothing is there, else the first of `dir-2`, `dir-3`, … that is free.
#[cfg(not(target_arch = "wasm32"))]
pub fn unused_run_dir(dir: &Path) -> PathBuf {
    let taken = |p: &Path| {
        p.exists() && (holds_run(p) || p.read_dir().map_or(true, |mut r| r.next().is_some()))
    };
    if !taken(dir) {
        return dir.to_path_buf();
    }
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    (2u32..)
        .map(|i| dir.with_file_name(format!("{name}-{i}")))
        .find(|p| !taken(p))
        .unwrap_or_else(|| dir.to_path_buf())
}

/// Year, month, day of a count of days since 1970-01-01 (proleptic Gregorian).
#[cfg(not(target_arch = "wasm32"))]
fn civil_date(days: u64) -> (i64, u32, u32) {
    // Shift to a calendar whose years start on 1 March, so the leap day ends a year.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Points `root/latest` at the run folder `dir` (a relative symbolic link, replaced atomically).
/// A `latest` that is a real folder (a run from an earlier version) or a file is the user's and
/// is left alone. Where links are unavailable, `root/latest.txt` names the folder instead.
#[cfg(not(target_arch = "wasm32"))]
pub fn point_latest(root: &Path, dir: &Path) -> Result<(), String> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    #[cfg(unix)]
    {
        let latest = root.join("latest");
        if latest.exists() && !latest.is_symlink() {
            let what = if latest.is_dir() {
                "a run folder"
            } else {
                "a file"
            };
            log::warn!(
                "{} is {what}, not a pointer; left as it is (the new run is {})",
                latest.display(),
                dir.display()
            );
            return Ok(());
        }
        let tmp = root.join(".latest.link");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&name, &tmp)
            .and_then(|_| std::fs::rename(&tmp, &latest))
            .map_err(|e| format!("{}: cannot point it at {name}: {e}", latest.display()))
    }
    #[cfg(not(unix))]
    {
        crate::io::write_atomic(&root.join("latest.txt"), format!("{name}\n").as_bytes())
            .map_err(|e| format!("{}: cannot write: {e}", root.join("latest.txt").display()))
    }
}

/// The run `root/latest` points at: the link itself, or the folder `root/latest.txt` names
/// where links are unavailable. There `latest.txt` comes first: a `latest` folder beside it
/// is an earlier version's run, not the newest.
#[cfg(not(target_arch = "wasm32"))]
pub fn latest_run(root: &Path) -> PathBuf {
    let link = root.join("latest");
    let named = || match std::fs::read_to_string(root.join("latest.txt")) {
        Ok(name) if !name.trim().is_empty() => Some(root.join(name.trim())),
        _ => None,
    };
    match named() {
        Some(dir) if !cfg!(unix) && dir.is_dir() => dir,
        _ if link.exists() => link,
        named => named.unwrap_or(link),
    }
}

/// What a run ended with.
#[derive(Clone, Debug, Default)]
pub struct RunSummary {
    /// Steps done in total.
    pub steps: u64,
    /// Last metrics.
    pub last: Option<StepMetrics>,
    /// Evaluations made (steps done, accuracies); step 0 is the random-init baseline.
    pub evals: Vec<(u64, Evaluation)>,
    /// Seconds the training loop waited for the data loader's batches.
    pub data_wait_s: f64,
    /// Seconds the training loop ran (evaluations and checkpoints included).
    pub loop_s: f64,
    /// The schedule a time limit chose.
    pub fit: Option<super::budget::Fit>,
    /// Whether the time limit stopped the run before its schedule's end.
    pub stopped_at_limit: bool,
    /// Whether [`RunOptions::stop`] ended the run before its schedule's end.
    pub interrupted: bool,
}

/// Accuracies of the teacher backbone's frozen features on the labelled evaluation sets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Evaluation {
    /// Weighted cosine k-NN (k = 20, T = 0.07) on the CLS token.
    pub knn: f32,
    /// Linear probe on the CLS token beside the mean patch token.
    pub probe: f32,
}

/// Labelled train and test sets for k-NN (the bundled Fashion-MNIST when training on it).
pub type EvalSets = Option<(Arc<dyn Dataset>, Arc<dyn Dataset>)>;

/// The datasets of a run: training data and the k-NN sets.
pub fn datasets(data: Option<&Path>) -> Result<(Arc<dyn Dataset>, EvalSets), String> {
    match data {
        Some(p) => {
            let train: Arc<dyn Dataset> = Arc::from(open_dataset(p).map_err(|e| e.to_string())?);
            Ok((train.clone(), idx_eval_sets(p, train)?))
        }
        None => {
            let (train, test) = fashion_mnist_bundled().map_err(|e| e.to_string())?;
            let train: Arc<dyn Dataset> = Arc::new(train);
            Ok((train.clone(), Some((train, Arc::new(test)))))
        }
    }
}

/// A labelled IDX training file with a labelled test split beside it (Fashion-MNIST's and
/// MNIST's `train-…`/`t10k-…` files) is evaluated like the bundled subset: k-NN and the probe
/// learn from the training file and score the test split.
fn idx_eval_sets(path: &Path, train: Arc<dyn Dataset>) -> Result<EvalSets, String> {
    let labelled = |d: &dyn Dataset| !d.is_empty() && d.label(0).is_some();
    let Some(test_path) = crate::data::dataset::idx_test_split_for(path) else {
        return Ok(None);
    };
    if path.is_dir() || !labelled(train.as_ref()) {
        return Ok(None);
    }
    let test: Arc<dyn Dataset> = Arc::from(open_dataset(&test_path).map_err(|e| e.to_string())?);
    if !labelled(test.as_ref()) {
        return Ok(None);
    }
    // A test class the training file lacks can never be predicted: the accuracies would be
    // wrong with nothing to say so (`dinoscope knn` refuses such a pair the same way).
    let labels = |d: &dyn Dataset| -> std::collections::BTreeSet<u32> {
        (0..d.len()).filter_map(|i| d.label(i)).collect()
    };
    let seen = labels(train.as_ref());
    let missing: Vec<u32> = labels(test.as_ref())
        .into_iter()
        .filter(|l| !seen.contains(l))
        .collect();
    if !missing.is_empty() {
        log::warn!(
            "{}: test labels {missing:?} have no images in {}; k-NN and the linear probe are \
             not measured",
            test_path.display(),
            path.display()
        );
        return Ok(None);
    }
    Ok(Some((train, test)))
}

/// Writes a checkpoint into `dir/checkpoints/` as one unit (see [`super::checkpoint`]).
#[cfg(not(target_arch = "wasm32"))]
pub fn save_checkpoint(dir: &Path, cfg: &TrainConfig, trainer: &Trainer) -> Result<(), String> {
    super::checkpoint::save(dir, cfg, trainer).map(|_| ())
}

/// Reads a run folder's newest intact checkpoint: its training config and state. Damaged newer
/// checkpoints are skipped with a warning.
pub fn load_checkpoint(dir: &Path) -> Result<(TrainConfig, TrainState), String> {
    load_checkpoint_noting(dir).map(|(cfg, state, _)| (cfg, state))
}

/// [`load_checkpoint`], with a line for each damaged newer checkpoint it skipped (for a
/// window to show; each is logged as well).
pub fn load_checkpoint_noting(
    dir: &Path,
) -> Result<(TrainConfig, TrainState, Vec<String>), String> {
    let l = super::checkpoint::load(dir)?;
    let skipped: Vec<String> = l
        .skipped
        .iter()
        .map(|s| format!("{s}; falling back to {}", l.from.display()))
        .collect();
    for s in &skipped {
        log::warn!("{s}");
    }
    Ok((l.cfg, l.state, skipped))
}

/// Whether `--overwrite` into the run folder `dir` would remove `path` (a file a command reads,
/// such as its `--config`).
#[cfg(not(target_arch = "wasm32"))]
pub fn overwrite_removes(dir: &Path, path: &Path) -> bool {
    let (Ok(dir), Ok(path)) = (std::fs::canonicalize(dir), std::fs::canonicalize(path)) else {
        return false;
    };
    // Each run file by its own canonical name, which a case-insensitive file system may spell
    // as `path` does not.
    RUN_FILES
        .iter()
        .filter_map(|f| std::fs::canonicalize(dir.join(f)).ok())
        .any(|f| path.starts_with(f))
}

/// Where `--overwrite` keeps an earlier run's files until the new run has saved its first
/// checkpoint.
#[cfg(not(target_arch = "wasm32"))]
const SET_ASIDE: &str = ".overwritten";

/// Made in the set-aside folder once every file is in it: without it, a process was killed
/// part way through the moves, and what is still in the run folder is the earlier run's too.
#[cfg(not(target_arch = "wasm32"))]
const SET_ASIDE_DONE: &str = ".complete";

/// A discarded set-aside folder, on its way out.
#[cfg(not(target_arch = "wasm32"))]
const SET_ASIDE_GONE: &str = ".overwritten.discarded";

/// An earlier run's files, moved aside by `--overwrite`: the user asked to start over, and the
/// old run's checkpoints must not outrank the new ones, nor its other files outlive them. They
/// are removed once the new run has saved its first checkpoint ([`SetAside::discard`]); a run
/// that fails or is stopped before then puts them back when this is dropped (its own run files
/// removed), so the folder always holds a run that can be resumed.
#[cfg(not(target_arch = "wasm32"))]
pub(super) struct SetAside(Option<PathBuf>);

#[cfg(not(target_arch = "wasm32"))]
impl SetAside {
    /// Puts right what a process killed during an `--overwrite` left in `dir` (called with
    /// the folder's lock held): if the new run saved no checkpoint, the earlier run comes back
    /// from `.overwritten` (in place of the files the killed run wrote); if it did, the folder
    /// is its, and the set-aside files go as they would have.
    pub(super) fn recover(dir: &Path) -> Result<(), String> {
        let aside = dir.join(SET_ASIDE);
        // What a discard could not finish removing is nobody's run.
        let _ = std::fs::remove_dir_all(dir.join(SET_ASIDE_GONE));
        if !aside.is_dir() {
            return Ok(());
        }
        // Checkpoint folders in the run folder are the new run's once the earlier run's were
        // set aside: they go first, so either they are in the set-aside folder, or every file
        // is (the mark) and the earlier run had none. A state file beside them is the user's,
        // not a checkpoint of the new run.
        let moved = aside.join(SET_ASIDE_DONE).is_file()
            || aside.join(super::checkpoint::CHECKPOINTS).exists();
        if moved && !super::checkpoint::list(dir).is_empty() {
            return std::fs::remove_dir_all(&aside)
                .map_err(|e| format!("{}: cannot remove: {e}", aside.display()));
        }
        log::warn!(
            "{}: an --overwrite was stopped before its first checkpoint; the earlier run is put \
             back",
            dir.display()
        );
        // Dropping a guard over the folder restores it.
        drop(SetAside(Some(aside.clone())));
        if aside.exists() {
            return Err(format!(
                "{}: the earlier run set aside here could not all be put back; move its files \
                 into {} by hand",
                aside.display(),
                dir.display()
            ));
        }
        Ok(())
    }

    /// Moves the run files of `dir` into its `.overwritten` folder.
    pub(super) fn take(dir: &Path) -> Result<SetAside, String> {
        let aside = dir.join(SET_ASIDE);
        let present: Vec<&str> = RUN_FILES
            .iter()
            .copied()
            .filter(|f| dir.join(f).symlink_metadata().is_ok())
            .collect();
        if present.is_empty() {
            return Ok(SetAside(None));
        }
        std::fs::create_dir(&aside)
            .map_err(|e| format!("{}: cannot create: {e}", aside.display()))?;
        for (i, f) in present.iter().enumerate() {
            if let Err(e) = std::fs::rename(dir.join(f), aside.join(f)) {
                // The files moved so far go back; the others never left.
                for m in &present[..i] {
                    let _ = std::fs::rename(aside.join(m), dir.join(m));
                }
                let _ = std::fs::remove_dir(&aside);
                return Err(format!("{}: cannot move aside: {e}", dir.join(f).display()));
            }
        }
        if let Err(e) = std::fs::write(aside.join(SET_ASIDE_DONE), b"") {
            // Without the mark a restore keeps whatever the folder holds (the new run's
            // files among it), which loses nothing.
            log::warn!("{}: cannot mark as complete: {e}", aside.display());
        }
        Ok(SetAside(Some(aside)))
    }

    /// The new run has a checkpoint: the old run's files go for good. The folder is renamed
    /// first, so that a removal that fails part way never leaves a set-aside folder a later
    /// recovery could take for an earlier run to put back.
    pub(super) fn discard(&mut self) {
        if let Some(aside) = self.0.take() {
            let gone = aside.with_file_name(SET_ASIDE_GONE);
            let aside = match std::fs::rename(&aside, &gone) {
                Ok(()) => gone,
                Err(_) => aside,
            };
            if let Err(e) = std::fs::remove_dir_all(&aside) {
                log::warn!(
                    "{}: the replaced run's files stay here ({e})",
                    aside.display()
                );
            }
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Drop for SetAside {
    fn drop(&mut self) {
        let Some(aside) = self.0.take() else { return };
        let Some(dir) = aside.parent() else { return };
        // Once every file was set aside, what the folder holds is the new run's; before that
        // (a process killed among the moves) it is the earlier run's, not yet moved.
        let complete = aside.join(SET_ASIDE_DONE).is_file();
        // Gone before anything moves back: a process killed part way through the restore
        // leaves a folder the next run restores the rest of, never one it takes for the new
        // run's.
        let _ = std::fs::remove_file(aside.join(SET_ASIDE_DONE));
        let mut kept = true;
        for f in RUN_FILES {
            let (from, to) = (aside.join(f), dir.join(f));
            let set_aside = from.symlink_metadata().is_ok();
            // What the new run wrote goes, so that none of it (its data record, say) is taken
            // for the earlier run's.
            if complete || set_aside {
                if to.is_dir() && !to.is_symlink() {
                    let _ = std::fs::remove_dir_all(&to);
                } else {
                    let _ = std::fs::remove_file(&to);
                }
            }
            if set_aside {
                kept &= std::fs::rename(&from, &to).is_ok();
            }
        }
        if kept {
            let _ = std::fs::remove_dir(&aside);
        } else {
            log::warn!(
                "{}: the earlier run's files could not all be put back; they are here",
                aside.display()
            );
        }
    }
}

/// Writes which data the run in `dir` trains on (`None`: the bundled set), for its resumption.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn record_data(dir: &Path, data: Option<&Path>) -> Result<(), String> {
    let full = data.map(crate::io::full_path);
    // A path that is not UTF-8 is also kept byte for byte, so that resuming finds it.
    #[cfg(unix)]
    let bytes = full.as_ref().filter(|f| f.to_str().is_none()).map(|f| {
        use std::os::unix::ffi::OsStrExt;
        f.as_os_str().as_bytes().to_vec()
    });
    #[cfg(not(unix))]
    let bytes: Option<Vec<u8>> = None;
    let mut record = serde_json::json!({
        "data": full.as_ref().map(|f| f.to_string_lossy().to_string())
    });
    if let Some(b) = bytes {
        record["data_bytes"] = serde_json::json!(b);
    }
    let p = dir.join(DATA_RECORD);
    crate::io::write_atomic(&p, record.to_string().as_bytes())
        .map_err(|e| format!("{}: {e}", p.display()))
}

/// The path a data record holds: its bytes where it kept them (Unix) and its text still says
/// the same (a record edited by hand goes by its text), else its text.
#[cfg(not(target_arch = "wasm32"))]
fn recorded_path(v: &serde_json::Value, text: &str) -> PathBuf {
    #[cfg(unix)]
    if let Some(bytes) = v["data_bytes"].as_array().and_then(|a| {
        a.iter()
            .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
            .collect::<Option<Vec<u8>>>()
    }) {
        use std::os::unix::ffi::OsStringExt;
        let path = PathBuf::from(std::ffi::OsString::from_vec(bytes));
        if path.to_string_lossy() == text {
            return path;
        }
    }
    #[cfg(not(unix))]
    let _ = v;
    PathBuf::from(text)
}

/// The data a resumed run trains on, and what its folder recorded.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) struct ResumedData {
    /// The data (`None`: the bundled set).
    pub data: Option<PathBuf>,
    /// Whether the folder holds a record of its data (which then stays as it is).
    pub recorded: bool,
    /// A warning when the given data is not what the run was trained on.
    pub warning: Option<String>,
}

/// The data a resumed run trains on: `given` (`--data`) where there is one, with a warning when
/// the run recorded other data; else the data it recorded. A run folder without the record
/// (older ones) continues on `given` or the bundled set, as before.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn resumed_data(dir: &Path, given: Option<&Path>) -> Result<ResumedData, String> {
    let p = dir.join(DATA_RECORD);
    let recorded = match std::fs::read(&p) {
        Ok(bytes) => {
            let v: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", p.display()))?;
            match v.get("data") {
                // With --data given, that is the data, and the record is written anew.
                None if given.is_some() => {
                    log::warn!(
                        "{}: no \"data\" field; the run continues on the --data given",
                        p.display()
                    );
                    None
                }
                None => {
                    return Err(format!(
                        "{}: no \"data\" field (the run's data: a path, or null for the bundled \
                         Fashion-MNIST); give the run's data with --data",
                        p.display()
                    ))
                }
                Some(serde_json::Value::Null) => Some(None),
                Some(serde_json::Value::String(s)) if s.trim().is_empty() && given.is_some() => {
                    log::warn!(
                        "{}: \"data\" is an empty path; the run continues on the --data given",
                        p.display()
                    );
                    None
                }
                Some(serde_json::Value::String(s)) if s.trim().is_empty() => {
                    return Err(format!(
                        "{}: \"data\" is an empty path (the run's data: a path, or null for the \
                         bundled Fashion-MNIST); give the run's data with --data",
                        p.display()
                    ))
                }
                Some(serde_json::Value::String(s)) => Some(Some(recorded_path(&v, s))),
                Some(_) => {
                    return Err(format!(
                        "{}: \"data\" is neither a path nor null",
                        p.display()
                    ))
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("{}: {e}", p.display())),
    };
    let name = |d: &Option<PathBuf>| {
        d.as_ref()
            .map_or("the bundled Fashion-MNIST".to_string(), |p| {
                p.display().to_string()
            })
    };
    let has_record = recorded.is_some();
    let (data, warning) = match (given, recorded) {
        (Some(g), Some(r)) => {
            let differs = r.as_deref() != Some(crate::io::full_path(g).as_path());
            let warning = differs.then(|| {
                format!(
                    "the run was trained on {}; it continues on {}",
                    name(&r),
                    g.display()
                )
            });
            (Some(g.to_path_buf()), warning)
        }
        (Some(g), None) => (Some(g.to_path_buf()), None),
        (None, Some(r)) => {
            // A recorded folder since moved or removed: say where the path came from.
            if let Some(missing) = r.as_deref().filter(|d| !d.exists()) {
                return Err(format!(
                    "{}: the run's data, as {} records it, is not there; name where it is now \
                     (train --data, or the app's data field), or other data to continue on",
                    missing.display(),
                    p.display()
                ));
            }
            log::info!("continuing on {}, the run's data", name(&r));
            (r, None)
        }
        (None, None) => {
            // A desktop run records its data at its first step; without the record (removed,
            // or a folder from before records) the bundled set is a guess worth saying.
            if !super::checkpoint::list(dir).is_empty() {
                log::warn!(
                    "{}: missing, so the run's data is not known; it continues on the bundled \
                     Fashion-MNIST (give --data to continue on other data)",
                    p.display()
                );
            }
            (None, None)
        }
    };
    Ok(ResumedData {
        data,
        recorded: has_record,
        warning,
    })
}

/// Trains (or continues) a run; `on_step` sees every step's metrics and the run's length in
/// steps (which a time limit changes once it has timed the first steps). A new run that fails
/// or stops before its first step leaves no metrics log of its own (nor a run folder it made, if
/// empty), so the folder can take the run again.
#[cfg(not(target_arch = "wasm32"))]
pub fn run(
    gpu: &Gpu,
    cfg: TrainConfig,
    opts: &RunOptions,
    on_step: impl FnMut(&StepMetrics, u64),
) -> Result<RunSummary, String> {
    let made_dir = !opts.out_dir.exists();
    let result = steps::run_steps(gpu, cfg, opts, on_step);
    let nothing = |s: &RunSummary| !opts.resume && s.last.is_none();
    if made_dir && result.as_ref().map_or(true, nothing) {
        // Only if empty: nothing in it is lost.
        let _ = std::fs::remove_dir(&opts.out_dir);
    }
    result
}

/// k-NN accuracy (k = 20, T = 0.07) and linear-probe accuracy of the teacher backbone's
/// features: `knn_train` images to learn from, `knn_test` to score (blocks; native).
#[cfg(not(target_arch = "wasm32"))]
pub fn evaluate(
    gpu: &Gpu,
    trainer: &Trainer,
    train: &dyn Dataset,
    test: &dyn Dataset,
    cfg: &TrainConfig,
) -> Result<Evaluation, String> {
    pollster::block_on(evaluate_async(gpu, trainer, train, test, cfg))
}

/// [`evaluate`] without blocking, for the browser: every readback resolves as the page maps it.
pub async fn evaluate_async(
    gpu: &Gpu,
    trainer: &Trainer<'_>,
    train: &dyn Dataset,
    test: &dyn Dataset,
    cfg: &TrainConfig,
) -> Result<Evaluation, String> {
    let size = cfg.augment.global_size;
    let vit = trainer.teacher_backbone();
    let tr = super::knn::features_async(gpu, vit, train, cfg.knn_train, size, 128).await?;
    let te = super::knn::features_async(gpu, vit, test, cfg.knn_test, size, 128).await?;
    let d = cfg.model.dim;
    let knn =
        super::knn::knn_accuracy_async(&tr.cls, &tr.labels, &te.cls, &te.labels, d, 20, 0.07).await;
    let probe = super::probe::linear_probe_async(
        gpu,
        &tr.pooled,
        &tr.labels,
        &te.pooled,
        &te.labels,
        2 * d,
    )
    .await?;
    Ok(Evaluation { knn, probe })
}

#[cfg(all(test, unix))]
mod tests {
    use super::{latest_run, point_latest, resumed_data, DATA_RECORD};

    /// A data record without its `data` field is refused, not read as the bundled set: a run
    /// trained on a folder would go on silently on other pictures.
    #[test]
    fn a_data_record_without_its_field_is_refused() {
        let dir = std::env::temp_dir().join(format!("dinoscope-record-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        for text in ["{}", "[]", r#"{"Data": "/pictures"}"#] {
            std::fs::write(dir.join(DATA_RECORD), text).expect("write");
            let err = resumed_data(&dir, None).err().unwrap_or_default();
            assert!(
                err.contains("data.json") && err.contains("no \"data\" field"),
                "{text}: {err}"
            );
        }
        // With --data given, that is the data; the broken record is written anew.
        let given = std::path::Path::new("/pictures");
        let r = resumed_data(&dir, Some(given)).expect("the data given");
        assert!(r.data.as_deref() == Some(given) && !r.recorded);
        // An empty path is no record either.
        std::fs::write(dir.join(DATA_RECORD), r#"{"data": " "}"#).expect("write");
        let err = resumed_data(&dir, None).err().unwrap_or_default();
        assert!(
            err.contains("data.json: \"data\" is an empty path"),
            "{err}"
        );
        let r = resumed_data(&dir, Some(given)).expect("the data given");
        assert!(r.data.as_deref() == Some(given) && !r.recorded);
        std::fs::write(dir.join(DATA_RECORD), r#"{"data": null}"#).expect("write");
        let r = resumed_data(&dir, None).expect("the bundled set");
        assert!(r.data.is_none() && r.recorded);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `latest` is repointed when it is a link, made when absent, and left alone when it is
    /// the user's own file or folder.
    #[test]
    fn latest_is_repointed_only_when_it_is_a_pointer() {
        let root = std::env::temp_dir().join(format!("dinoscope-latest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("a")).expect("mkdir");
        std::fs::create_dir_all(root.join("b")).expect("mkdir");
        let latest = root.join("latest");
        point_latest(&root, &root.join("a")).expect("made");
        assert_eq!(
            std::fs::read_link(&latest).expect("link"),
            root.join("a").strip_prefix(&root).expect("in root")
        );
        point_latest(&root, &root.join("b")).expect("repointed");
        assert_eq!(
            std::fs::read_link(&latest).expect("link").to_str(),
            Some("b")
        );
        std::fs::remove_file(&latest).expect("rm");
        std::fs::write(&latest, "the user's notes").expect("write");
        point_latest(&root, &root.join("a")).expect("left alone");
        assert_eq!(
            std::fs::read_to_string(&latest).expect("read"),
            "the user's notes"
        );
        std::fs::remove_file(&latest).expect("rm");
        std::fs::create_dir(&latest).expect("mkdir");
        point_latest(&root, &root.join("a")).expect("left alone");
        assert!(latest.is_dir() && !latest.is_symlink());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn the_latest_run_is_the_link_here_and_the_named_folder_without_links() {
        let root = std::env::temp_dir().join(format!("dinoscope-named-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("b")).expect("mkdir");
        std::fs::write(root.join("latest.txt"), "b\n").expect("write");
        assert_eq!(latest_run(&root), root.join("b"));
        // An earlier version's `latest` folder beside the record.
        std::fs::create_dir(root.join("latest")).expect("mkdir");
        let want = if cfg!(unix) { "latest" } else { "b" };
        assert_eq!(latest_run(&root), root.join(want));
        let _ = std::fs::remove_dir_all(&root);
    }
}
