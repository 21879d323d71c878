//! A run's `metrics.jsonl`, as `dinoscope train` and the desktop app write it: one JSON line
//! per step (its [`StepMetrics`], with `knn` and `probe` where it was evaluated and the run's
//! wall time `elapsed_s`), and a `steps_done` line for an evaluation made before a run's first
//! step. A resumed run keeps the lines from before its checkpoint and writes the rest again.

use super::trainer::StepMetrics;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The metrics log of a run, open for appending.
pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
}

impl MetricsLog {
    /// Opens the log at `path` for a run that starts at step `start`, keeping the lines from
    /// before it (the evaluations and the steps before the checkpoint; the later ones are done
    /// again, identically); returns the log and the kept lines.
    pub fn open(path: &Path, start: u64) -> Result<(MetricsLog, Vec<Value>), String> {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut kept_text = String::new();
        let mut kept = Vec::new();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
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
                kept_text.push_str(line);
                kept_text.push('\n');
                kept.push(v);
            }
        }
        crate::io::write_atomic(path, kept_text.as_bytes())
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
/// run's wall time after it, and each evaluation as (steps done, k-NN, probe accuracy).
#[allow(clippy::type_complexity)]
pub fn earlier(kept: &[Value]) -> (Vec<(StepMetrics, Option<f64>)>, Vec<(u64, f32, f32)>) {
    let mut steps = Vec::new();
    let mut evals = Vec::new();
    for v in kept {
        let done = match v.get("step").and_then(Value::as_u64) {
            Some(s) => {
                if let Ok(m) = serde_json::from_value::<StepMetrics>(v.clone()) {
                    steps.push((m, v.get("elapsed_s").and_then(Value::as_f64)));
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
