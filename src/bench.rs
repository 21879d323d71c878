//! `dinoscope bench`: kernels (`ops`: GPU timestamps where the adapter has them, wall clock
//! otherwise; the median of repetitions), ViT inference, training steps and the loader
//! (`model`).

mod model;
mod ops;

pub use model::{loader, train, vit};
pub use ops::{kernels, KernelOpts};

use crate::gpu::{Gpu, Recorder, Result};
use serde::Serialize;
use std::time::Instant;

/// One benchmark figure (what `--json` writes; `bench/compare.sh` reads the same names from the
/// PyTorch side).
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Which program measured it: always `dinoscope` here (`bench/pytorch_reference.py` writes
    /// `pytorch`), so `--json` never replaces the other side's file.
    pub tool: &'static str,
    /// Which benchmark: `kernels`, `vit`, `train` or `loader` (a rerun replaces only its own
    /// benchmark's rows in a `--json` file).
    pub bench: &'static str,
    /// What was measured, e.g. `matmul 4096x4096x4096`.
    pub name: String,
    /// Median seconds per repetition.
    pub seconds: f64,
    /// Throughput in `unit`.
    pub rate: f64,
    /// GFLOP/s, GB/s or img/s.
    pub unit: String,
    /// Peak pooled GPU memory, where measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_bytes: Option<u64>,
    /// GPU timestamps or wall clock.
    pub clock: String,
    /// The model or training config measured (`bench vit` and `bench train`: the preset's name
    /// or the file given), so rows of different configs in one file are told apart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
}

/// The `tool` field of every row this program writes.
pub const TOOL: &str = "dinoscope";

/// Prints one kernel row and keeps it.
fn emit(rows: &mut Vec<Row>, name: String, t: f64, rate: f64, unit: &str, ts: bool) {
    let clock = if ts { "gpu" } else { "wall" };
    crate::say!(
        "{name:<44} {:>9.3} ms {rate:>9.1} {unit:<8} {clock}",
        t * 1e3
    );
    rows.push(Row {
        tool: TOOL,
        bench: "kernels",
        name,
        seconds: t,
        rate,
        unit: unit.into(),
        peak_bytes: None,
        clock: clock.into(),
        config: None,
    });
}

/// Whether `--json FILE` may be written by benchmark `bench`, checked before it runs: its
/// folder exists, and the file is new, empty or an earlier run of the same benchmark's rows (a
/// rerun replaces its own rows of the same name and config and keeps the others; any other
/// file, another benchmark's rows and PyTorch's from `bench/pytorch_reference.py` included, is
/// kept as it is).
pub fn check_json_target(path: &std::path::Path, bench: &str) -> std::result::Result<(), String> {
    let shown = path.display();
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = parent.filter(|d| !d.is_dir()) {
        return Err(format!(
            "--json {shown}: the folder {} does not exist",
            dir.display()
        ));
    }
    if path.is_dir() {
        return Err(format!("--json {shown}: is a folder; give a file name"));
    }
    if !path.exists() {
        return Ok(());
    }
    // A device or pipe is never read (one may not end) nor renamed over.
    if !path.is_file() {
        return Err(format!(
            "--json {shown}: not a regular file (a device or pipe); give a file name"
        ));
    }
    // An empty file (made by `touch` or `mktemp` for the rows) holds nothing to keep.
    let rows = std::fs::read(path).ok().and_then(|b| {
        if b.iter().all(u8::is_ascii_whitespace) {
            return Some(Vec::new());
        }
        serde_json::from_slice::<Vec<serde_json::Value>>(&b).ok()
    });
    let ours = rows.as_ref().is_some_and(|rows| {
        rows.iter().all(|r| {
            // Rows written before the field existed have no `tool`.
            let tool = r.get("tool").map_or(Some(TOOL), |t| t.as_str());
            r.get("name").is_some() && r.get("rate").is_some() && tool == Some(TOOL)
        })
    });
    if !ours {
        return Err(format!(
            "--json {shown}: the file exists and is not an earlier `dinoscope bench --json` \
             output; it is left as it is (choose another file, or remove it)"
        ));
    }
    // Rows written before the field existed have no `bench`, and are replaced.
    let other = rows
        .iter()
        .flatten()
        .filter_map(|r| r.get("bench").and_then(|b| b.as_str()))
        .find(|b| *b != bench);
    if let Some(other) = other {
        return Err(format!(
            "--json {shown}: holds the rows of `dinoscope bench {other}`, which `bench {bench}` \
             would replace; it is left as it is (choose another file, or remove it)"
        ));
    }
    Ok(())
}

/// Writes rows as JSON (for `--json FILE`): an earlier run's rows of the same name and config
/// are replaced, its others kept ([`check_json_target`] has made sure they are this
/// benchmark's).
pub fn write_json(path: &std::path::Path, rows: &[Row]) -> std::result::Result<(), String> {
    let key = |v: &serde_json::Value| {
        (
            v.get("name").and_then(|n| n.as_str()).map(str::to_string),
            v.get("config").and_then(|c| c.as_str()).map(str::to_string),
        )
    };
    let new: Vec<serde_json::Value> = rows
        .iter()
        .map(serde_json::to_value)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let mut all: Vec<serde_json::Value> = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Vec<serde_json::Value>>(&b).ok())
        .unwrap_or_default()
        .into_iter()
        .filter(|old| {
            // Rows from before the fields existed are this benchmark's and are replaced (one
            // without a config by a new row of its name).
            let (name, config) = key(old);
            let replaced = |n: &serde_json::Value| {
                let (new_name, new_config) = key(n);
                new_name == name && (config.is_none() || new_config == config)
            };
            old.get("bench").is_some() && !new.iter().any(replaced)
        })
        .collect();
    all.extend(new);
    let text = serde_json::to_string_pretty(&all).map_err(|e| e.to_string())?;
    crate::io::write_atomic(path, text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
}

/// Times `record` (one recording, one submit) `reps` times after a warm-up; median seconds and
/// whether GPU timestamps were used.
pub fn time(gpu: &Gpu, reps: usize, mut record: impl FnMut(&mut Recorder)) -> Result<(f64, bool)> {
    let mut times = Vec::new();
    let mut gpu_ts = false;
    for i in 0..=reps {
        let mut rec = Recorder::new_timed(gpu);
        record(&mut rec);
        let t0 = Instant::now();
        let ts = rec.finish_timed()?;
        let wall = t0.elapsed().as_secs_f64();
        if i == 0 {
            continue; // warm-up: pipelines compile, buffers allocate
        }
        gpu_ts = ts.is_some();
        times.push(ts.unwrap_or(wall));
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok((times[times.len() / 2], gpu_ts))
}

#[cfg(test)]
mod tests {
    use super::{write_json, Row, TOOL};

    fn row(name: &str, config: &str, rate: f64) -> Row {
        Row {
            tool: TOOL,
            bench: "train",
            name: name.into(),
            seconds: 1.0,
            rate,
            unit: "img/s".into(),
            peak_bytes: None,
            clock: "wall".into(),
            config: Some(config.into()),
        }
    }

    /// A rerun replaces its own rows of the same name and config; other configs' rows stay.
    #[test]
    fn a_rerun_replaces_only_rows_of_its_name_and_config() {
        let dir = std::env::temp_dir().join(format!("dinoscope-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("rows.json");
        write_json(&path, &[row("train step batch 32", "debug", 1.0)]).expect("write");
        write_json(&path, &[row("train step batch 32", "tiny", 2.0)]).expect("write");
        write_json(&path, &[row("train step batch 32", "debug", 3.0)]).expect("write");
        let rows: Vec<serde_json::Value> =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        let seen: Vec<(&str, f64)> = rows
            .iter()
            .map(|r| {
                (
                    r["config"].as_str().unwrap_or(""),
                    r["rate"].as_f64().unwrap_or(0.0),
                )
            })
            .collect();
        assert_eq!(seen, [("tiny", 2.0), ("debug", 3.0)]);
        // A row written before rows named their config is replaced by a new row of its name.
        let old = r#"[{"tool": "dinoscope", "bench": "train", "name": "train step batch 32",
            "seconds": 1, "rate": 9, "unit": "img/s", "clock": "wall"}]"#;
        std::fs::write(&path, old).expect("write");
        write_json(&path, &[row("train step batch 32", "debug", 4.0)]).expect("write");
        let rows: Vec<serde_json::Value> =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["rate"], 4.0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
