//! A run's `metrics.jsonl`, as `dinoscope train` and the desktop app write it: one JSON line
//! per step (its [`StepMetrics`], with `knn` and `probe` where it was evaluated and the run's
//! wall time `elapsed_s`), and a `steps_done` line for an evaluation made before a run's first
//! step. A resumed run keeps the lines from before its checkpoint and writes the rest again.
//! (In the browser, where there is no file, the lines travel in the run's state file.)

use super::trainer::StepMetrics;
use serde_json::Value;
#[cfg(not(target_arch = "wasm32"))]
use std::io::Write;
#[cfg(not(target_arch = "wasm32"))]
use std::path::{Path, PathBuf};

/// The metrics log of a run, open for appending.
#[cfg(not(target_arch = "wasm32"))]
pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
}

#[cfg(not(target_arch = "wasm32"))]
impl MetricsLog {
    /// Opens the log at `path` for a run that starts at step `start`, keeping the lines from
    /// before it (the evaluations and the steps before the checkpoint; the later ones are done
    /// again, identically); returns the log and the kept lines.
    pub fn open(path: &Path, start: u64) -> Result<(MetricsLog, Vec<Value>), String> {
        if crate::io::is_device_or_pipe(path) {
            return Err(format!(
                "{}: not a regular file (a device or pipe); the metrics log goes there",
                path.display()
            ));
        }
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            // Never rewrite a log that could not be read: its lines would be lost.
            Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
        };
        let lines: Vec<&[u8]> = bytes
            .split(|&b| b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .collect();
        // A killed run can leave its last line cut short, without its newline.
        let end = bytes
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(0, |i| i + 1);
        let cut_short = !bytes[end..].contains(&b'\n');
        let mut kept_text = Vec::new();
        let mut kept = Vec::new();
        let mut unreadable = 0;
        for (i, line) in lines.iter().enumerate() {
            let Ok(v) = serde_json::from_slice::<Value>(line) else {
                // A line cut short is dropped; any other is the user's and stays where it was.
                // Every line the log writes is an object, so only one that starts as one can
                // be its cut-short last line (a note added without a newline is not).
                let ours = line.trim_ascii_start().starts_with(b"{");
                if i + 1 < lines.len() || !cut_short || !ours {
                    unreadable += 1;
                    kept_text.extend_from_slice(line);
                    kept_text.push(b'\n');
                }
                continue;
            };
            let keep = match v.get("step").and_then(Value::as_u64) {
                Some(s) => s < start,
                // An evaluation line: kept when made before the start, or at it on an earlier
                // resume (the same weights give the same figures); a new run's baseline is made
                // again.
                None => v
                    .get("steps_done")
                    .and_then(Value::as_u64)
                    .is_none_or(|s| s < start || (s == start && start > 0)),
            };
            if keep {
                kept_text.extend_from_slice(line);
                kept_text.push(b'\n');
                kept.push(v);
            }
        }
        if unreadable > 0 {
            log::warn!(
                "{}: {unreadable} line(s) that are not JSON metrics kept as they are",
                path.display()
            );
        }
        crate::io::write_atomic(path, &kept_text)
            .map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| format!("{}: cannot open: {e}", path.display()))?;
        Ok((
            MetricsLog {
                path: path.to_path_buf(),
                file,
            },
            kept,
        ))
    }

    /// Appends one line.
    pub fn write(&mut self, line: &Value) -> Result<(), String> {
        writeln!(self.file, "{line}")
            .map_err(|e| format!("{}: cannot write: {e}", self.path.display()))
    }
}

/// Where a run folder holds a state file but no `metrics.jsonl` (a checkpoint downloaded from
/// the browser, whose log travels in it), writes the log the state carries as the folder's, so
/// that a resumed run keeps the curve and the lines of the steps before it.
#[cfg(not(target_arch = "wasm32"))]
pub fn seed_from_state(dir: &Path) -> Result<(), String> {
    let (log, state) = (
        dir.join("metrics.jsonl"),
        dir.join(super::checkpoint::STATE),
    );
    if log.exists() || !state.is_file() {
        return Ok(());
    }
    // Verbatim: parsing and printing a float again may change its last digit.
    let text = super::checkpoint::state_log_text_of_file(&state)?;
    if text.is_empty() {
        return Ok(());
    }
    crate::io::write_atomic(&log, text.as_bytes())
        .map_err(|e| format!("{}: cannot write: {e}", log.display()))
}

/// Whether the kept lines hold an evaluation made after `done` steps.
pub fn evaluated(kept: &[Value], done: u64) -> bool {
    kept.iter().any(|v| {
        let at = match v.get("step").and_then(Value::as_u64) {
            Some(s) => Some(s + 1),
            None => v.get("steps_done").and_then(Value::as_u64),
        };
        at == Some(done) && v.get("knn").is_some()
    })
}

/// The run's wall time so far: the largest `elapsed_s` of the kept lines.
pub fn elapsed_before(kept: &[Value]) -> f64 {
    kept.iter()
        .filter_map(|v| v.get("elapsed_s").and_then(Value::as_f64))
        .fold(0.0f64, f64::max)
}

/// What the kept lines say happened before a resumed run's start: each step's metrics with the
/// run's wall time after it and whether the line held the step's own time (`step_s`; lines
/// written before it existed do not), and each evaluation as (steps done, k-NN, probe).
#[allow(clippy::type_complexity)]
pub fn earlier(kept: &[Value]) -> (Vec<(StepMetrics, Option<f64>, bool)>, Vec<(u64, f32, f32)>) {
    let mut steps = Vec::new();
    let mut evals = Vec::new();
    for v in kept {
        let done = match v.get("step").and_then(Value::as_u64) {
            Some(s) => {
                if let Ok(m) = serde_json::from_value::<StepMetrics>(v.clone()) {
                    let elapsed = v.get("elapsed_s").and_then(Value::as_f64);
                    steps.push((m, elapsed, v.get("step_s").is_some()));
                }
                s + 1
            }
            None => match v.get("steps_done").and_then(Value::as_u64) {
                Some(d) => d,
                None => continue,
            },
        };
        let acc = |k: &str| v.get(k).and_then(Value::as_f64).map(|x| x as f32);
        if let (Some(knn), Some(probe)) = (acc("knn"), acc("probe")) {
            evals.push((done, knn, probe));
        }
    }
    (steps, evals)
}

#[cfg(test)]
mod tests {
    use super::MetricsLog;

    #[test]
    fn a_resumed_log_keeps_lines_it_cannot_read_and_never_rewrites_an_unreadable_file() {
        let dir = std::env::temp_dir().join(format!("dinoscope-mlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("metrics.jsonl");
        let mut text = b"{\"step\":0}\n\xff\xfe not json\n{\"step\":1}\n{\"step\":5}\n".to_vec();
        text.extend_from_slice(b"{\"step\":6,\"lo");
        std::fs::write(&path, &text).expect("write");
        let (_, kept) = MetricsLog::open(&path, 2).expect("open");
        assert_eq!(kept.len(), 2);
        let after = std::fs::read(&path).expect("read");
        assert_eq!(
            after,
            b"{\"step\":0}\n\xff\xfe not json\n{\"step\":1}\n".to_vec()
        );
        // A whole last line that is not JSON is the user's too.
        std::fs::write(&path, b"{\"step\":0}\nmy note\n").expect("write");
        MetricsLog::open(&path, 2).expect("open");
        assert_eq!(
            std::fs::read(&path).expect("read"),
            b"{\"step\":0}\nmy note\n".to_vec()
        );
        // And so is one without its newline: only a line that starts as the log's do can be
        // its cut-short last one.
        std::fs::write(&path, b"{\"step\":0}\nmy note").expect("write");
        MetricsLog::open(&path, 2).expect("open");
        assert_eq!(
            std::fs::read(&path).expect("read"),
            b"{\"step\":0}\nmy note\n".to_vec()
        );
        // A folder where the log should be cannot be read: an error, and nothing is written.
        let folder = dir.join("folder.jsonl");
        std::fs::create_dir_all(folder.join("inside")).expect("mkdir");
        let err = MetricsLog::open(&folder, 0)
            .err()
            .expect("a folder is refused");
        assert!(err.contains("folder.jsonl"), "{err}");
        assert!(folder.join("inside").is_dir());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
