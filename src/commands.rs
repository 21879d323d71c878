//! The CLI's commands: train and knn here; embed and attention in pictures.rs; plan, tune and
//! export in tools.rs; selftest in its own file.

mod pictures;
pub mod selftest;
mod tools;

pub use pictures::{attention, embed};
pub use tools::{export, plan, tune};

use pictures::at_least_a_patch;

use dinoscope::gpu::Gpu;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub use dinoscope::infer::load_model_as;

/// The model an inference command runs: weights, config and storage precision.
pub type Model<'a> = (&'a Path, Option<&'a str>, dinoscope::gpu::DType);

/// `dinoscope train`.
pub fn train(
    gpu: &Gpu,
    given: Option<&str>,
    data: Option<&Path>,
    out: Option<&Path>,
    (resume, overwrite): (bool, bool),
    (stop_after, steps, time_limit): (Option<u64>, Option<u64>, Option<std::time::Duration>),
    (backend, adapter): (Option<&str>, Option<&str>),
) -> Result<ExitCode, String> {
    use dinoscope::train::config::TrainConfig;
    use dinoscope::train::run::{create_run_dir, latest_run, point_latest, run, RunOptions};
    let config = given.unwrap_or("debug");
    // A new run's config is checked before any folder is made for it.
    let fresh = if resume {
        None
    } else {
        Some(TrainConfig::load(config)?.with_steps(steps)?)
    };
    if let Some(w) = fresh.as_ref().and_then(TrainConfig::warm_up_warning) {
        log::warn!("{config}: {w}");
    }
    if let Some(c) = &fresh {
        c.check_batch_memory()
            .map_err(|e| format!("{config}: {e}"))?;
    }
    let root = Path::new("runs");
    // A new folder of our own: runs/latest points at it once its first step is done, and it
    // goes again if the run fails before then (a wrong --data), so that `--resume` still finds
    // the previous run.
    let mut created = None;
    let out = match out {
        Some(o) => o.to_path_buf(),
        None if resume => latest_run(root),
        None => {
            let label = Path::new(config)
                .file_stem()
                .map_or("run".into(), |s| s.to_string_lossy().to_string());
            let dir = create_run_dir(root, &label)?;
            created = Some(dir.clone());
            dir
        }
    };
    eprintln!("run folder: {}", out.display());
    if overwrite && !resume && dinoscope::train::run::overwrite_removes(&out, Path::new(config)) {
        return Err(format!(
            "{config}: --overwrite would remove this config with the rest of the run in {}; \
             copy it out of the folder first",
            out.display()
        ));
    }
    let cfg = run_config(fresh, given, config, &out)?;
    let opts = RunOptions {
        out_dir: out.clone(),
        resume,
        data: data.map(Path::to_path_buf),
        stop_after,
        overwrite,
        time_limit,
        stop: dinoscope::train::interrupt::stop_flag()
            .map_err(|e| log::warn!("{e}; Ctrl-C ends the run without a checkpoint"))
            .ok(),
    };
    let total = cfg.steps;
    let cfg_workers = cfg.workers;
    let mut progress = Progress::new(total, cfg.batch_size, opts.time_limit.is_some());
    let mut pointed = false;
    let summary = run(gpu, cfg, &opts, |m, steps| {
        if let (Some(dir), false) = (&created, pointed) {
            pointed = true;
            if let Err(e) = point_latest(root, dir) {
                log::warn!("{e}");
            }
        }
        progress.step(m, steps);
    });
    progress.bar.finish_and_clear();
    let remove_created = || {
        if let (Some(dir), false) = (&created, pointed) {
            // Only if empty: nothing in it is lost.
            let _ = std::fs::remove_dir(dir);
        }
    };
    let resume = resume_command((backend, adapter), data, &out);
    let summary = summary.map_err(|e| {
        remove_created();
        // A run stopped part way with its steps saved (its data gone, say): the command that
        // continues it, `--out` and all, not only the flag.
        if e.contains("once the data reads again") {
            format!("{e}\n  continue with: {resume}")
        } else {
            e
        }
    })?;
    // A new run stopped before its first step: nothing trained, nothing kept.
    if !opts.resume && summary.last.is_none() {
        remove_created();
        let why = if summary.interrupted {
            "interrupted"
        } else {
            "the time limit ran out"
        };
        // Unchecked: after a SIGHUP the terminal is gone, and eprintln! would panic there.
        let _ = writeln!(
            std::io::stderr(),
            "{why} before the first step; nothing was trained"
        );
        return Ok(if summary.interrupted {
            ExitCode::from(dinoscope::train::interrupt::EXIT_INTERRUPTED)
        } else {
            ExitCode::FAILURE
        });
    }
    if opts.resume && summary.last.is_none() && summary.steps >= total {
        // Unchecked, as the report below.
        let _ = writeln!(
            std::io::stdout(),
            "{}: the run is complete ({} of {total} steps); nothing to continue",
            out.display(),
            summary.steps
        );
    }
    let report = train_report(&summary, progress.scaled, cfg_workers, &out, &resume);
    // Written whole and unchecked: after a SIGHUP the terminal is gone, and the run is saved.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), report.as_bytes());
    if summary.interrupted {
        return Ok(ExitCode::from(
            dinoscope::train::interrupt::EXIT_INTERRUPTED,
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// The config of a run: a new run's (`fresh`, checked before any folder is made); a resumed
/// run's own (the checkpoint's, which train.ron links to), with a warning when `--config` asked
/// for another recipe.
fn run_config(
    fresh: Option<dinoscope::train::config::TrainConfig>,
    given: Option<&str>,
    config: &str,
    out: &Path,
) -> Result<dinoscope::train::config::TrainConfig, String> {
    use dinoscope::train::config::TrainConfig;
    let own = out.join("train.ron");
    Ok(match (fresh, TrainConfig::load(&own.to_string_lossy())) {
        (Some(c), _) => c,
        (None, Ok(c)) => {
            if let Some(g) = given {
                if !TrainConfig::load(g)?.same_recipe(&c) {
                    eprintln!(
                        "warning: --config {g} left aside: a resumed run keeps its own ({})",
                        own.display()
                    );
                }
            }
            c
        }
        (None, Err(e)) => {
            if own.exists() {
                log::warn!("{e} (left aside: the checkpoint holds the run's config)");
            }
            TrainConfig::load(config)?
        }
    })
}

/// `dinoscope train`'s progress bar: steps, losses, learning rate, loss scale and img/s.
struct Progress {
    bar: indicatif::ProgressBar,
    /// The config's length, and whether a time limit may fit another.
    total: u64,
    fitted: bool,
    batch: usize,
    /// The throughput over the last steps.
    rate: dinoscope::train::rate::StepRate,
    /// Mixed precision: (steps, skipped, last loss scale).
    scaled: (u64, u64, f32),
}

impl Progress {
    fn new(total: u64, batch: usize, fitted: bool) -> Progress {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} eta {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Progress {
            bar,
            total,
            fitted,
            batch,
            rate: Default::default(),
            scaled: (0, 0, 0.0),
        }
    }

    /// Step `m` is done of a run now `steps` long (a resumed run keeps its checkpoint's
    /// length, which the bar learns at its first step).
    fn step(&mut self, m: &dinoscope::train::trainer::StepMetrics, steps: u64) {
        let bar = &self.bar;
        let rate = self.rate.push(self.batch as f64, m.seconds);
        if bar.length() != Some(steps) {
            if self.fitted {
                let line = format!(
                    "the schedule now spans {steps} steps (the config: {}), fitted to the \
                     time limit",
                    self.total
                );
                // Written at once also when the bar is hidden (output to a file).
                if bar.is_hidden() {
                    let _ = writeln!(std::io::stderr(), "{line}");
                } else {
                    bar.println(line);
                }
            }
            bar.set_length(steps);
        }
        bar.set_position(m.step + 1);
        let scale = match m.loss_scale {
            Some(s) => {
                let (n, skipped, _) = self.scaled;
                self.scaled = (n + 1, skipped + u64::from(m.skipped), s);
                format!(" scale {s:.0}")
            }
            None => String::new(),
        };
        bar.set_message(format!(
            "loss {:.4} (dino {:.4} ibot {:.4} koleo {:.4}) lr {:.2e}{scale} {:.1} img/s",
            m.loss, m.dino, m.ibot, m.koleo, m.lr, rate
        ));
    }
}

/// The command that continues a run: on the same adapter too, so that the continuation is
/// exact.
fn resume_command(
    (backend, adapter): (Option<&str>, Option<&str>),
    data: Option<&Path>,
    out: &Path,
) -> String {
    let mut c = "dinoscope".to_string();
    for (flag, v) in [("--backend", backend), ("--adapter", adapter)] {
        if let Some(v) = v {
            c += &format!(" {flag} {}", shell_word(v));
        }
    }
    c += " train --resume";
    if let Some(d) = data {
        c += &format!(" --data {}", shell_word(&d.to_string_lossy()));
    }
    c + &format!(" --out {}", shell_word(&out.to_string_lossy()))
}

/// `s` as one word of a POSIX shell command: as it is where that is safe, else single-quoted.
pub(crate) fn shell_word(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_./-:=,+@%".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// What `dinoscope train` prints after its run: mixed precision's skipped steps `(steps,
/// skipped, last loss scale)`, the last step, the time limit's fit, the evaluations, the
/// loader's waits and, for an interrupted run, how to continue it.
fn train_report(
    summary: &dinoscope::train::run::RunSummary,
    scaled: (u64, u64, f32),
    cfg_workers: usize,
    out: &Path,
    resume: &str,
) -> String {
    use std::fmt::Write;
    let mut r = String::new();
    if scaled.0 > 0 {
        let _ = writeln!(
            r,
            "mixed precision: {} of {} steps skipped (f16 gradients overflowed); loss scale {:.0}",
            scaled.1, scaled.0, scaled.2
        );
    }
    if let Some(m) = &summary.last {
        let _ = writeln!(
            r,
            "step {}: loss {:.4} (dino {:.4}, ibot {:.4}, koleo {:.4})",
            summary.steps, m.loss, m.dino, m.ibot, m.koleo
        );
    }
    // A limit that ended the run before any step was timed has no pace to tell.
    if let Some(f) = summary.fit.as_ref().filter(|f| f.step_s > 0.0) {
        let _ = writeln!(
            r,
            "time limit: {:.1} ms a step and {:.1} s an evaluation; {} steps planned (the \
             config: {})",
            f.step_s * 1e3,
            f.eval_s,
            f.steps,
            f.planned_steps
        );
    }
    if summary.stopped_at_limit {
        let ended = summary.fit.is_some_and(|f| f.steps <= summary.steps);
        let _ = match ended {
            // Stopped before its pace was timed: its schedule ends here.
            true => writeln!(
                r,
                "the time limit ended the run at step {} before its steps were timed; a longer \
                 limit trains a fitted schedule",
                summary.steps
            ),
            false => writeln!(
                r,
                "the time limit stopped the run at step {} before its schedule's end; continue \
                 it with --resume",
                summary.steps
            ),
        };
    }
    for (s, e) in &summary.evals {
        let _ = writeln!(
            r,
            "evaluation at step {s}: k-NN {:.1}%, linear probe {:.1}%",
            e.knn * 100.0,
            e.probe * 100.0
        );
    }
    if summary.loop_s > 0.0 {
        // Where this is more than a few percent, the GPU waited for crops: more `workers` help.
        let _ = writeln!(
            r,
            "data loader: waited {:.1} s of {:.1} s ({:.0}%) for batches ({})",
            summary.data_wait_s,
            summary.loop_s,
            100.0 * summary.data_wait_s / summary.loop_s,
            match cfg_workers {
                0 => "built on the training thread".to_string(),
                1 => "1 worker thread".to_string(),
                n => format!("{n} worker threads"),
            }
        );
    }
    let _ = writeln!(r, "checkpoint and metrics in {}", out.display());
    if summary.interrupted {
        let _ = writeln!(
            r,
            "interrupted at step {}; continue with `{resume}`",
            summary.steps
        );
    }
    r
}

fn labelled(
    spec: &str,
    test: bool,
) -> Result<std::sync::Arc<dyn dinoscope::data::dataset::Dataset>, String> {
    // A file or folder of that name is the user's own data, not the keyword.
    if spec == "fashion-mnist" && !Path::new(spec).exists() {
        let (tr, te) =
            dinoscope::data::dataset::fashion_mnist_bundled().map_err(|e| e.to_string())?;
        return Ok(if test {
            std::sync::Arc::new(te)
        } else {
            std::sync::Arc::new(tr)
        });
    }
    Ok(std::sync::Arc::from(
        dinoscope::data::dataset::open_dataset(Path::new(spec)).map_err(|e| e.to_string())?,
    ))
}

/// Images whose features `knn` takes in one batch.
const KNN_BATCH: usize = 64;

/// Host memory one batch of `knn`'s views may take (f32 RGB): views up to 1,672 pixels a side.
const KNN_BATCH_BYTES: u64 = 2 << 30;

/// `n` and the noun, plural unless `n` is 1 ("class" → "classes").
fn counted(n: usize, noun: &str) -> String {
    match (n, noun.ends_with('s')) {
        (1, _) => format!("1 {noun}"),
        (_, true) => format!("{n} {noun}es"),
        _ => format!("{n} {noun}s"),
    }
}

/// The names of the test classes in `test` whose train class (by `to_train`) is not in `train`.
fn unmatched<'a>(
    test: &std::collections::BTreeSet<u32>,
    train: &std::collections::BTreeSet<u32>,
    to_train: &[Option<u32>],
    te_names: &'a [String],
) -> Vec<&'a str> {
    test.iter()
        .filter(|&&l| {
            to_train
                .get(l as usize)
                .copied()
                .flatten()
                .is_none_or(|t| !train.contains(&t))
        })
        .filter_map(|&l| te_names.get(l as usize).map(String::as_str))
        .collect()
}

/// "; DIR holds N pictures outside its class subfolders (e.g. FILE) …" where a folder of class
/// subfolders also has pictures of its own, which leave it unlabelled; else nothing.
fn loose_pictures(dir: &Path) -> String {
    let Ok(files) = dinoscope::data::dataset::image_files(dir) else {
        return String::new();
    };
    let (loose, filed): (Vec<&PathBuf>, Vec<&PathBuf>) =
        files.iter().partition(|f| f.parent() == Some(dir));
    match loose.first() {
        Some(first) if !filed.is_empty() => format!(
            "; {} holds {} pictures outside its class subfolders (e.g. {}), and one such \
             picture leaves the whole folder unlabelled: move them into a class folder",
            dir.display(),
            loose.len(),
            first.display()
        ),
        _ => String::new(),
    }
}

/// `dinoscope knn`.
pub fn knn(
    gpu: &Gpu,
    (weights, config, dtype): Model,
    train: &str,
    test: &str,
    size: usize,
    k: usize,
) -> Result<ExitCode, String> {
    let vit = load_model_as(gpu, weights, config, dtype)?;
    let p = at_least_a_patch(size, &vit, weights)?;
    // Features are taken KNN_BATCH views at a time, each size × size × 3 floats on the host.
    let batch_bytes = (KNN_BATCH as u64)
        .saturating_mul((size as u64).saturating_mul(size as u64))
        .saturating_mul(12);
    if batch_bytes > KNN_BATCH_BYTES {
        return Err(format!(
            "--size {size}: a batch of {KNN_BATCH} views of {size}×{size} would take {:.1} GiB \
             of memory, more than the {} GiB k-NN gives one (its usual size is 224)",
            batch_bytes as f64 / (1u64 << 30) as f64,
            KNN_BATCH_BYTES >> 30
        ));
    }
    if !size.is_multiple_of(p) {
        let side = size / p * p;
        eprintln!("--size {size}: views cropped to {side}×{side}, whole {p}-pixel patches");
    }
    let (tr, te) = (labelled(train, false)?, labelled(test, true)?);
    let (tr_names, te_names) = (tr.class_names(), te.class_names());
    if tr_names.is_empty() || te_names.is_empty() {
        let side = if tr_names.is_empty() { train } else { test };
        return Err(format!(
            "{side}: k-NN needs labelled images on both sides (one subfolder per class, or an \
             IDX file with labels){}",
            loose_pictures(Path::new(side))
        ));
    }
    // Test classes are matched to train classes by name, never by position.
    let to_train: Vec<Option<u32>> = te_names
        .iter()
        .map(|n| tr_names.iter().position(|t| t == n).map(|p| p as u32))
        .collect();
    // The classes each side holds images of (an IDX set names every label up to its largest).
    let present = |d: &dyn dinoscope::data::dataset::Dataset| -> std::collections::BTreeSet<u32> {
        (0..d.len()).filter_map(|i| d.label(i)).collect()
    };
    let (tr_present, te_present) = (present(tr.as_ref()), present(te.as_ref()));
    let missing = unmatched(&te_present, &tr_present, &to_train, &te_names);
    if !missing.is_empty() {
        return Err(format!(
            "{test}: test classes {missing:?} have no images in {train}; k-NN can only predict \
             classes it has seen"
        ));
    }
    dinoscope::say!(
        "train: {} in {}; test: {} in {} (matched by name)",
        counted(tr.len(), "image"),
        counted(tr_present.len(), "class"),
        counted(te.len(), "image"),
        counted(te_present.len(), "class")
    );
    let trf = dinoscope::train::knn::features(gpu, &vit, tr.as_ref(), 0, size, KNN_BATCH)?;
    let mut tef = dinoscope::train::knn::features(gpu, &vit, te.as_ref(), 0, size, KNN_BATCH)?;
    // Unreadable images are skipped: a class may have lost all of its training images.
    let tr_read: std::collections::BTreeSet<u32> = trf.labels.iter().copied().collect();
    let te_read: std::collections::BTreeSet<u32> = tef.labels.iter().copied().collect();
    let unreadable = unmatched(&te_read, &tr_read, &to_train, &te_names);
    if !unreadable.is_empty() {
        return Err(format!(
            "{test}: test classes {unreadable:?} have no readable images in {train} (each of \
             theirs failed to load; see the warnings above); k-NN can only predict classes it \
             has seen"
        ));
    }
    for l in tef.labels.iter_mut() {
        *l = to_train
            .get(*l as usize)
            .copied()
            .flatten()
            .unwrap_or(u32::MAX);
    }
    let d = vit.cfg.dim;
    // No more neighbours than there are images to be neighbours.
    let k = k.min(trf.labels.len()).max(1);
    let acc = dinoscope::train::knn::knn_accuracy(
        &trf.cls,
        &trf.labels,
        &tef.cls,
        &tef.labels,
        d,
        k,
        0.07,
    );
    dinoscope::say!(
        "k-NN (k = {k}, T = 0.07) on {} train → {} test images: {:.2}%",
        trf.labels.len(),
        tef.labels.len(),
        acc * 100.0
    );
    let probe = dinoscope::train::probe::linear_probe(
        gpu,
        &trf.pooled,
        &trf.labels,
        &tef.pooled,
        &tef.labels,
        2 * d,
    )?;
    dinoscope::say!(
        "linear probe (CLS and mean patch token, logistic regression): {:.2}%",
        probe * 100.0
    );
    Ok(ExitCode::SUCCESS)
}
