//! Checkpoints as one unit: every file of a step is written into a hidden folder, fsynced, listed
//! with its size and CRC-32 in `manifest.json`, and published by one rename to
//! `checkpoints/step-NNNNNNNN/`. The previous checkpoint stays until the new one is whole, so a
//! crash or a full disk at any moment leaves at least one checkpoint that verifies. Loading checks
//! the manifest and that every value is finite, and falls back to the previous checkpoint (with a
//! message) when the latest one is damaged.
//!
//! The run folder's `teacher_backbone.safetensors`, `config.ron` and `train.ron` are links to
//! (copies where links are refused) the latest checkpoint's files, for the other commands and
//! PyTorch; the checkpoint folder is what resuming reads. On Unix the checkpoint's files are
//! read-only, so rewriting an export in place fails instead of damaging the checkpoint.

use super::config::TrainConfig;
use super::trainer::{TrainState, Trainer};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The folder of a run's checkpoints.
pub const CHECKPOINTS: &str = "checkpoints";
/// Full training state: student, teacher, AdamW moments, centers; step and config in metadata.
pub const STATE: &str = "state.safetensors";
/// The teacher backbone in torch-hub names.
pub const BACKBONE: &str = "teacher_backbone.safetensors";
/// The teacher backbone as a Hugging Face model folder, in one archive (the browser's
/// download; natively, `dinoscope export RUN --to hf` writes the folder).
pub const HF_ARCHIVE: &str = "export-hf.zip";
const MANIFEST: &str = "manifest.json";
const FORMAT: &str = "dinoscope-checkpoint-1";
/// The format tag in a state file's header.
pub const STATE_FORMAT: &str = "dinoscope-train-state-1";
/// The metadata key of the metrics log a state file may carry (a browser run's: it has no run
/// folder to keep `metrics.jsonl` in).
const LOG_KEY: &str = "metrics_log";
/// How many checkpoints a run keeps (the latest and the one to fall back to).
pub const KEEP: usize = 2;
/// Files mirrored into the run folder itself.
const EXPORTS: [&str; 3] = [BACKBONE, "config.ron", "train.ron"];

/// A checkpoint that loaded, and what was skipped on the way to it.
#[derive(Debug)]
pub struct Loaded {
    /// Its training config.
    pub cfg: TrainConfig,
    /// Its state.
    pub state: TrainState,
    /// The folder (or legacy file) it came from.
    pub from: PathBuf,
    /// One line per newer checkpoint that was damaged and skipped.
    pub skipped: Vec<String>,
}

fn step_name(step: u64) -> String {
    format!("step-{step:08}")
}

/// The checkpoint folders of a run, newest first.
pub fn list(run: &Path) -> Vec<(u64, PathBuf)> {
    let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(run.join(CHECKPOINTS))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let step = name.strip_prefix("step-")?.parse().ok()?;
            e.path().is_dir().then(|| (step, e.path()))
        })
        .collect();
    v.sort_by_key(|c| std::cmp::Reverse(c.0));
    v
}

/// The run folder that `dir` is a checkpoint of (`RUN/checkpoints/step-N`), if it is one.
pub fn run_of_checkpoint(dir: &Path) -> Option<PathBuf> {
    let step = dir.file_name()?.to_str()?.strip_prefix("step-")?;
    step.parse::<u64>().ok()?;
    let parent = dir.parent()?;
    if parent.file_name()? != CHECKPOINTS {
        return None;
    }
    let run = parent.parent()?;
    Some(if run.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        run.to_path_buf()
    })
}

/// Whether a run folder holds any checkpoint (new layout or a single legacy state file).
pub fn exists(run: &Path) -> bool {
    !list(run).is_empty() || run.join(STATE).is_file()
}

fn io_err(p: &Path, what: &str, e: std::io::Error) -> String {
    format!("{}: cannot {what}: {e}", p.display())
}

/// Writes a checkpoint file, read-only where the platform allows deleting such files: the run
/// folder's exports are hard links to them, and a program that rewrote an export in place
/// would otherwise damage the checkpoint.
fn write_synced(p: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let mut f = std::fs::File::create(p).map_err(|e| io_err(p, "create", e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| io_err(p, "write", e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o444))
            .map_err(|e| io_err(p, "make read-only", e))?;
    }
    Ok(())
}

/// The files of one checkpoint, as bytes: `state.safetensors`, `teacher_backbone.safetensors`,
/// `config.ron` and `train.ron`.
pub async fn checkpoint_files(
    cfg: &TrainConfig,
    trainer: &Trainer<'_>,
) -> Result<Vec<(&'static str, Vec<u8>)>, String> {
    Ok(vec![
        (STATE, state_file(cfg, trainer, None).await?),
        (BACKBONE, backbone_file(cfg, trainer).await?),
        (
            "config.ron",
            cfg.model.to_ron().unwrap_or_default().into_bytes(),
        ),
        ("train.ron", cfg.to_ron().into_bytes()),
    ])
}

/// `teacher_backbone.safetensors`: the teacher backbone under torch-hub names, with its step and
/// its config (`dinoscope_config`, RON) in the metadata.
pub async fn backbone_file(cfg: &TrainConfig, trainer: &Trainer<'_>) -> Result<Vec<u8>, String> {
    let backbone = trainer
        .teacher_backbone_values_async()
        .await
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
    let mut meta = HashMap::new();
    meta.insert("step".to_string(), trainer.step.to_string());
    // The heads, norm epsilon and position resize, which the shapes do not tell, for a copy of
    // the file read away from its config.ron.
    let config = cfg.model.to_ron().map_err(|e| e.to_string())?;
    meta.insert(crate::model::weights::CONFIG_KEY.to_string(), config);
    crate::io::safetensors_bytes(&tensors, Some(meta))
}

/// [`HF_ARCHIVE`]: the files of `dinoscope export --to hf` for the teacher backbone, in a folder
/// `export-hf/` of a ZIP archive.
pub async fn hf_archive(cfg: &TrainConfig, trainer: &Trainer<'_>) -> Result<Vec<u8>, String> {
    let backbone = trainer
        .teacher_backbone_values_async()
        .await
        .map_err(|e| e.to_string())?;
    let (_, files) = super::export::hf_files(&cfg.model, &backbone, cfg.augment.global_size)?;
    let named: Vec<(String, &[u8])> = files
        .iter()
        .map(|(n, b)| (format!("export-hf/{n}"), b.as_slice()))
        .collect();
    let entries: Vec<(&str, &[u8])> = named.iter().map(|(n, b)| (n.as_str(), *b)).collect();
    crate::io::zip_stored(&entries)
}

/// `state.safetensors`: everything a resumed run needs, its step and training config in the
/// header, and `log` (the run's metrics log lines, JSONL) where the run has no folder for it.
pub async fn state_file(
    cfg: &TrainConfig,
    trainer: &Trainer<'_>,
    log: Option<String>,
) -> Result<Vec<u8>, String> {
    let st = trainer.state_async().await.map_err(|e| e.to_string())?;
    let mut meta = HashMap::new();
    meta.insert("step".to_string(), st.step.to_string());
    meta.insert("train_config".to_string(), cfg.to_ron());
    meta.insert("format".to_string(), STATE_FORMAT.to_string());
    if let Some(log) = log {
        meta.insert(LOG_KEY.to_string(), log);
    }
    let n = st.student.len();
    let mut tensors: Vec<(String, Vec<usize>, &[f32])> = vec![
        ("student".into(), vec![n], &st.student[..]),
        ("teacher".into(), vec![n], &st.teacher[..]),
        ("adamw_m".into(), vec![n], &st.m1[..]),
        ("adamw_v".into(), vec![n], &st.m2[..]),
        (
            "center_dino".into(),
            vec![st.center_dino.len()],
            &st.center_dino[..],
        ),
        (
            "center_ibot".into(),
            vec![st.center_ibot.len()],
            &st.center_ibot[..],
        ),
    ];
    if let Some(g) = &st.gram_teacher {
        tensors.push(("gram_teacher".into(), vec![g.len()], &g[..]));
    }
    if let Some(l) = &st.loss_scale {
        tensors.push(("loss_scale".into(), vec![l.len()], &l[..]));
    }
    crate::io::safetensors_bytes(&tensors, Some(meta))
}

/// Writes the trainer's checkpoint into `run/checkpoints/step-N/` (published by one rename),
/// refreshes the run folder's exports and keeps the newest [`KEEP`] checkpoints. Returns the
/// checkpoint folder. On any error the previous checkpoints are untouched.
#[cfg(not(target_arch = "wasm32"))]
pub fn save(run: &Path, cfg: &TrainConfig, trainer: &Trainer) -> Result<PathBuf, String> {
    let files = pollster::block_on(checkpoint_files(cfg, trainer))?;
    save_files(run, trainer.step, &files)
}

/// [`save`] with the files already made (tests use it to simulate failures).
pub fn save_files(run: &Path, step: u64, files: &[(&str, Vec<u8>)]) -> Result<PathBuf, String> {
    let root = run.join(CHECKPOINTS);
    std::fs::create_dir_all(&root).map_err(|e| io_err(&root, "create", e))?;
    let name = step_name(step);
    let tmp = root.join(format!(".{name}.partial"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io_err(&tmp, "remove", e))?;
    }
    let written = (|| {
        std::fs::create_dir(&tmp).map_err(|e| io_err(&tmp, "create", e))?;
        let mut listed = serde_json::Map::new();
        for (f, bytes) in files {
            write_synced(&tmp.join(f), bytes)?;
            listed.insert(
                f.to_string(),
                serde_json::json!({ "bytes": bytes.len(), "crc32": crate::io::crc32(bytes) }),
            );
        }
        let manifest = serde_json::json!({ "format": FORMAT, "step": step, "files": listed });
        write_synced(&tmp.join(MANIFEST), manifest.to_string().as_bytes())?;
        crate::io::sync_dir(&tmp);
        Ok::<(), String>(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(format!(
            "{e}; the checkpoint of step {step} was not saved{}",
            previous_note(run)
        ));
    }
    let dest = root.join(&name);
    if dest.exists() {
        // The same step saved again (a resumed run passing a damaged checkpoint, or a final save
        // after a periodic one): the old folder steps aside only once the new one is whole.
        let old = root.join(format!(".{name}.old"));
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(&dest, &old).map_err(|e| io_err(&dest, "replace", e))?;
        std::fs::rename(&tmp, &dest).map_err(|e| io_err(&dest, "publish", e))?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(&tmp, &dest).map_err(|e| io_err(&dest, "publish", e))?;
    }
    crate::io::sync_dir(&root);
    for f in EXPORTS {
        if files.iter().any(|(n, _)| *n == f) {
            export(&dest.join(f), &run.join(f))?;
        }
    }
    // Never the one just written: newer damaged folders (a run resumed from an older
    // checkpoint past them) must not push it out.
    for (_, old) in list(run).into_iter().skip(KEEP).filter(|(s, _)| *s != step) {
        let _ = std::fs::remove_dir_all(old);
    }
    // Leftovers of saves a crash interrupted (never listed, never loaded).
    for e in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with(".step-") && (name.ends_with(".partial") || name.ends_with(".old")) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    // A state file beside the checkpoints (the browser's Download checkpoint, or one from
    // before checkpoint folders) is the user's: it stays, and the newer checkpoints come first.
    Ok(dest)
}

/// Points `to` at `from`: a hard link (no extra disk) or, where refused, an atomic copy.
fn export(from: &Path, to: &Path) -> Result<(), String> {
    let dir = to.parent().unwrap_or(Path::new("."));
    let name = to.file_name().map(|n| n.to_string_lossy().to_string());
    let tmp = dir.join(format!(".{}.link", name.unwrap_or_default()));
    let _ = std::fs::remove_file(&tmp);
    if std::fs::hard_link(from, &tmp).is_ok() && std::fs::rename(&tmp, to).is_ok() {
        return Ok(());
    }
    let _ = std::fs::remove_file(&tmp);
    let bytes = std::fs::read(from).map_err(|e| io_err(from, "read", e))?;
    crate::io::write_atomic(to, &bytes).map_err(|e| io_err(to, "write", e))
}

/// " (the checkpoint of step N in DIR is intact)" or " (no checkpoint was saved yet)".
pub fn previous_note(run: &Path) -> String {
    match list(run).first() {
        Some((s, d)) => format!("; the checkpoint of step {s} in {} is intact", d.display()),
        None if run.join(STATE).is_file() => {
            format!("; the checkpoint in {} is intact", run.display())
        }
        None => "; no checkpoint was saved yet".to_string(),
    }
}

/// Checks a checkpoint folder's files against its manifest: its step, and a note for each
/// copy beside the state that changed since (the run folder's `train.ron` is the same file as
/// the checkpoint's, so an editor that writes in place changes both). Those copies are written
/// from the state, which holds the run, so they do not make the checkpoint unusable.
fn verify(dir: &Path) -> Result<(u64, Vec<String>), String> {
    let mp = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&mp).map_err(|e| io_err(&mp, "read", e))?;
    let m: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: damaged ({e})", mp.display()))?;
    check_format(
        &mp,
        m.get("format").and_then(|f| f.as_str()),
        FORMAT,
        "checkpoint manifest",
    )?;
    let step = m
        .get("step")
        .and_then(|s| s.as_u64())
        .ok_or_else(|| format!("{}: no step", mp.display()))?;
    let files = m
        .get("files")
        .and_then(|f| f.as_object())
        .ok_or_else(|| format!("{}: no file list", mp.display()))?;
    if !files.contains_key(STATE) {
        return Err(format!("{}: does not list {STATE}", mp.display()));
    }
    let mut changed = Vec::new();
    for (name, want) in files {
        if name.contains('/') || name.contains('\\') || name.starts_with('.') {
            return Err(format!(
                "{}: lists an invalid file name '{name}'",
                mp.display()
            ));
        }
        let p = dir.join(name);
        let meta = std::fs::metadata(&p).map_err(|e| io_err(&p, "read", e))?;
        let bytes = want.get("bytes").and_then(|b| b.as_u64());
        let problem = if bytes != Some(meta.len()) {
            Some(format!(
                "{}: {} bytes, the manifest says {}",
                p.display(),
                meta.len(),
                bytes.map_or("nothing".to_string(), |b| b.to_string())
            ))
        } else {
            let data = std::fs::read(&p).map_err(|e| io_err(&p, "read", e))?;
            let crc = want.get("crc32").and_then(|c| c.as_u64());
            (crc != Some(crate::io::crc32(&data) as u64))
                .then(|| format!("{}: checksum mismatch (the file is damaged)", p.display()))
        };
        match problem {
            Some(e) if name == STATE => return Err(e),
            Some(e) => changed.push(format!(
                "{e}: changed since the checkpoint was saved (edited through the run folder's \
                 copy, the same file, or damaged); the checkpoint's state, which holds the run, \
                 is used, and a later checkpoint writes the file anew"
            )),
            None => {}
        }
    }
    Ok((step, changed))
}

/// Refuses a file whose format tag is not `want`, telling a later version of the format
/// (which this build would misread) from a file that is not dinoscope's at all.
fn check_format(p: &Path, found: Option<&str>, want: &str, what: &str) -> Result<(), String> {
    if found == Some(want) {
        return Ok(());
    }
    // Tags end in their version: "dinoscope-train-state-1".
    let family = want.trim_end_matches(|c: char| c.is_ascii_digit());
    match found {
        Some(f) if f.starts_with(family) => Err(format!(
            "{}: a {what} in format '{f}', which this build of dinoscope cannot read (it reads \
             '{want}'); open it with the dinoscope version that wrote it",
            p.display()
        )),
        Some(f) => Err(format!(
            "{}: not a dinoscope {what} (its format tag is '{f}')",
            p.display()
        )),
        None => Err(format!(
            "{}: not a dinoscope {what} (it has no format tag)",
            p.display()
        )),
    }
}

/// Reads a state file's config and state, refusing non-finite values.
fn read_state(p: &Path) -> Result<(TrainConfig, TrainState), String> {
    let bytes = std::fs::read(p).map_err(|e| io_err(p, "read the checkpoint", e))?;
    state_from_bytes(p, &bytes)
}

/// The metrics log lines a state file carries (see [`state_file`]) of the steps before its own,
/// with their evaluations, verbatim and each ending in a newline; empty if it carries no log.
/// Lines that do not parse are left out: the log only draws the earlier curve.
pub fn state_log_text(bytes: &[u8]) -> String {
    let Ok((_, m)) = safetensors::SafeTensors::read_metadata(bytes) else {
        return String::new();
    };
    log_text(&m.metadata().clone().unwrap_or_default())
}

/// [`state_log_text`] of the state file at `path`, reading its header alone (a state file
/// holds the whole model four times over).
#[cfg(not(target_arch = "wasm32"))]
pub fn state_log_text_of_file(path: &Path) -> Result<String, String> {
    Ok(log_text(&state_metadata_of_file(path)?))
}

/// Whether the file at `path` is a training state this build reads, by its header alone: the
/// error names a later format version, or what else the file is.
#[cfg(not(target_arch = "wasm32"))]
pub fn check_state_file(path: &Path) -> Result<(), String> {
    let meta = state_metadata_of_file(path)?;
    check_format(
        path,
        meta.get("format").map(String::as_str),
        STATE_FORMAT,
        "training state",
    )
}

/// The metadata of the safetensors file at `path`, from its header alone.
#[cfg(not(target_arch = "wasm32"))]
fn state_metadata_of_file(path: &Path) -> Result<HashMap<String, String>, String> {
    use std::io::Read;
    let err = |e: std::io::Error| io_err(path, "read", e);
    let mut file = std::fs::File::open(path).map_err(err)?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(err)?;
    let n = u64::from_le_bytes(len);
    // safetensors' own bound on a header.
    if n > 100_000_000 {
        return Err(format!(
            "{}: not a valid checkpoint (header of {n} bytes)",
            path.display()
        ));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header).map_err(err)?;
    #[derive(serde::Deserialize)]
    struct Header {
        #[serde(rename = "__metadata__", default)]
        metadata: HashMap<String, String>,
    }
    let h: Header = serde_json::from_slice(&header)
        .map_err(|e| format!("{}: not a valid checkpoint ({e})", path.display()))?;
    Ok(h.metadata)
}

/// The log lines a state's metadata carries, of the steps before its own.
fn log_text(meta: &HashMap<String, String>) -> String {
    let step: Option<u64> = meta.get("step").and_then(|s| s.parse().ok());
    let (Some(log), Some(step)) = (meta.get(LOG_KEY), step) else {
        return String::new();
    };
    let before = |v: &serde_json::Value| {
        let s = serde_json::Value::as_u64;
        v.get("step").and_then(s).map_or_else(
            || v.get("steps_done").and_then(s).is_some_and(|d| d <= step),
            |s| s < step,
        )
    };
    log.lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| before(&v)))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// [`state_log_text`]'s lines, parsed.
pub fn state_log(bytes: &[u8]) -> Vec<serde_json::Value> {
    state_log_text(bytes)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Whether `bytes` are a training state file (a checkpoint's `state.safetensors`), by its
/// header's format tag; any version of it, so that a later one is refused as such.
pub fn is_state(bytes: &[u8]) -> bool {
    let family = STATE_FORMAT.trim_end_matches(|c: char| c.is_ascii_digit());
    safetensors::SafeTensors::read_metadata(bytes).is_ok_and(|(_, m)| {
        m.metadata()
            .as_ref()
            .and_then(|m| m.get("format"))
            .is_some_and(|f| f.starts_with(family))
    })
}

/// Parses the bytes of a `state.safetensors` (`p` names it in errors): its training config and
/// state, refusing non-finite values and tensors of unequal length.
pub fn state_from_bytes(p: &Path, bytes: &[u8]) -> Result<(TrainConfig, TrainState), String> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| format!("{}: not a valid checkpoint ({e})", p.display()))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    check_format(
        p,
        meta.get("format").map(String::as_str),
        STATE_FORMAT,
        "training state",
    )?;
    let step: u64 = meta
        .get("step")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{}: the checkpoint has no step", p.display()))?;
    let cfg = TrainConfig::from_ron(
        meta.get("train_config").map_or("", |s| s.as_str()),
        &p.display().to_string(),
    )?;
    let f = crate::fixtures::TensorFile::from_bytes(p, bytes).map_err(|e| e.to_string())?;
    let get = |n: &str| {
        let t = f.get(n).map_err(|e| e.to_string())?;
        let bad = t.data.iter().filter(|v| !v.is_finite()).count();
        if bad > 0 {
            return Err(format!(
                "{}: tensor '{n}' holds {bad} NaN or infinite values (training had diverged)",
                p.display()
            ));
        }
        Ok(t.data.clone())
    };
    let st = TrainState {
        step,
        student: get("student")?,
        teacher: get("teacher")?,
        m1: get("adamw_m")?,
        m2: get("adamw_v")?,
        center_dino: get("center_dino")?,
        center_ibot: get("center_ibot")?,
        gram_teacher: match f.get("gram_teacher") {
            Ok(_) => Some(get("gram_teacher")?),
            Err(_) => None,
        },
        loss_scale: match f.get("loss_scale") {
            Ok(_) => Some(get("loss_scale")?),
            Err(_) => None,
        },
    };
    let n = st.student.len();
    if [st.teacher.len(), st.m1.len(), st.m2.len()] != [n; 3] {
        return Err(format!(
            "{}: the state tensors differ in length",
            p.display()
        ));
    }
    // Sizes the config implies, checked here so that a mismatch names the file and a run
    // falls back to its previous checkpoint.
    let backbone = crate::model::vit::param_layout(&cfg.model).total;
    let params = backbone + crate::model::params::ParamLayout::new(&cfg.head_specs()).total;
    let sizes = [
        ("student", n, params),
        ("center_dino", st.center_dino.len(), cfg.head.prototypes),
        ("center_ibot", st.center_ibot.len(), cfg.ibot_prototypes()),
        (
            "gram_teacher",
            st.gram_teacher.as_ref().map_or(backbone, Vec::len),
            backbone,
        ),
    ];
    if let Some((name, got, want)) = sizes.into_iter().find(|(_, got, want)| got != want) {
        return Err(format!(
            "{}: tensor '{name}' has {got} values; its training config needs {want}",
            p.display()
        ));
    }
    Ok((cfg, st))
}

/// Loads the newest checkpoint of a run that verifies, skipping damaged newer ones.
pub fn load(run: &Path) -> Result<Loaded, String> {
    // Checkpoint folders newest first, then a state file from before checkpoint folders.
    let legacy = run.join(STATE);
    let candidates = list(run)
        .into_iter()
        .map(|(step, dir)| (Some(step), dir))
        .chain(legacy.is_file().then_some((None, legacy)));
    let mut skipped = Vec::new();
    for (step, from) in candidates {
        let r = match step {
            Some(step) => verify(&from).and_then(|(s, changed)| {
                if s != step {
                    return Err(format!("{}: the manifest says step {s}", from.display()));
                }
                changed.iter().for_each(|c| log::warn!("{c}"));
                read_state(&from.join(STATE))
            }),
            None => read_state(&from),
        };
        match (r, step) {
            (Ok((cfg, state)), _) => {
                return Ok(Loaded {
                    cfg,
                    state,
                    from,
                    skipped,
                })
            }
            (Err(e), Some(step)) => skipped.push(format!("checkpoint of step {step} skipped: {e}")),
            (Err(e), None) => skipped.push(e),
        }
    }
    if skipped.is_empty() {
        Err(if !run.exists() {
            format!("{}: does not exist", run.display())
        } else if !run.is_dir() {
            format!("{}: not a folder (a run folder is expected)", run.display())
        } else {
            format!("{}: holds no checkpoint", run.display())
        })
    } else {
        Err(format!(
            "{}: no usable checkpoint:\n  {}",
            run.display(),
            skipped.join("\n  ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_folder_names_its_run() {
        let run = |p: &str| run_of_checkpoint(Path::new(p));
        assert_eq!(
            run("runs/x/checkpoints/step-00000400"),
            Some(PathBuf::from("runs/x"))
        );
        assert_eq!(run("checkpoints/step-00000001"), Some(PathBuf::from(".")));
        assert_eq!(run("runs/x"), None);
        assert_eq!(run("runs/x/other/step-00000400"), None);
        assert_eq!(run("runs/x/checkpoints/step-latest"), None);
    }

    #[test]
    fn a_state_carries_the_log_of_the_steps_before_its_own() {
        let lines = [
            r#"{"steps_done":0,"knn":0.5,"probe":0.6}"#,
            r#"{"step":0,"loss":3.0}"#,
            r#"{"step":1,"loss":2.5}"#,
            "not json",
            r#"{"step":2,"loss":2.0}"#,
            r#"{"steps_done":3,"knn":0.7,"probe":0.8}"#,
            r#"{"step":3,"loss":1.5}"#,
            r#"{"steps_done":4,"knn":0.9,"probe":0.9}"#,
        ];
        let meta = HashMap::from([
            ("step".to_string(), "3".to_string()),
            ("format".to_string(), STATE_FORMAT.to_string()),
            (LOG_KEY.to_string(), lines.join("\n")),
        ]);
        let zero = [0.0f32];
        let bytes =
            crate::io::safetensors_bytes(&[("student".into(), vec![1], &zero[..])], Some(meta))
                .expect("bytes");
        let want: Vec<serde_json::Value> = [0, 1, 2, 4, 5]
            .iter()
            .map(|&i| serde_json::from_str(lines[i]).expect("json"))
            .collect();
        assert_eq!(
            state_log(&bytes),
            want,
            "the steps before step 3 and the evaluations up to it"
        );
        // A state without a log (as natively written: the log is the run folder's) has none.
        let bare = crate::io::safetensors_bytes(&[("student".into(), vec![1], &zero[..])], None)
            .expect("bytes");
        assert!(state_log(&bare).is_empty());
    }
}
