//! The step loop of a run (native): open the run folder, evaluate the baseline, then submit,
//! read and report steps, one in flight, with evaluations, checkpoints and a time limit's fit.

use super::super::budget::Budget;
use super::super::config::TrainConfig;
use super::super::metrics_log::{self, MetricsLog};
use super::super::trainer::{PendingStep, StepMetrics, Trainer};
use super::{
    datasets, evaluate, load_checkpoint, record_data, resumed_data, save_checkpoint, EvalSets,
    Evaluation, RunLock, RunOptions, RunSummary, SetAside, RUN_FILES,
};
use crate::data::loader::Loader;
use crate::gpu::Gpu;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Removes, when dropped armed, the metrics log that a new run created: the run failed before
/// its first step. Made while the run folder's lock is held, and dropped before it is released.
struct UnusedLog(Option<PathBuf>);

impl Drop for UnusedLog {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Trains (or continues) the run of `opts`; see [`super::run`].
pub(super) fn run_steps(
    gpu: &Gpu,
    cfg: TrainConfig,
    opts: &RunOptions,
    mut on_step: impl FnMut(&StepMetrics, u64),
) -> Result<RunSummary, String> {
    let mut r = StepLoop::open(gpu, cfg, opts)?;
    r.baseline()?;
    r.steps(&mut on_step)?;
    let unreadable = r.data_lost.take();
    let start = r.start;
    let summary = match (r.close(), &unreadable) {
        // The data's failure is the cause; a failed last save (the same disk gone) follows it.
        (Err(e), Some(lost)) => return Err(format!("{lost}; then {e}")),
        (closed, _) => closed?,
    };
    match unreadable {
        // Before any step: nothing was trained, and there is nothing to continue.
        Some(e) if summary.steps == start => Err(e),
        // The steps already trained are saved: only the data failed, not the run.
        Some(e) => Err(format!(
            "{e}; training stopped{} (continue with --resume once the data reads again)",
            super::super::checkpoint::previous_note(&opts.out_dir)
        )),
        None => Ok(summary),
    }
}

/// A run folder taken for training, and where its run stands.
struct StepLoop<'a> {
    gpu: &'a Gpu,
    opts: &'a RunOptions,
    trainer: Trainer<'a>,
    /// The run's config (the checkpoint's when resuming; a time limit's fit once made).
    cfg: TrainConfig,
    /// The data it trains on (None: the bundled Fashion-MNIST).
    data: Option<PathBuf>,
    eval: EvalSets,
    budget: Option<Budget>,
    loader: Loader,
    /// Fields drop in this order: the log's file closes, an unused log goes, a replaced run's
    /// files come back (if this run saved no checkpoint), the lock is last.
    log_file: MetricsLog,
    unused_log: UnusedLog,
    set_aside: SetAside,
    _lock: RunLock,
    /// Whether the kept log lines already hold the evaluation due at `start`.
    start_evaluated: bool,
    /// Steps done when this invocation began, and where it ends.
    start: u64,
    end: u64,
    /// Wall time of the run before this invocation, from the last kept log line.
    elapsed_before: f64,
    summary: RunSummary,
    data_recorded: bool,
    /// The steps done when the checkpoint on disk was written.
    saved_at: u64,
    warned: bool,
    /// Why the data stopped giving batches (a folder that went away mid-run): the run ends
    /// there, as a stopped one does, with its checkpoint.
    data_lost: Option<String>,
    t0: Instant,
}

impl<'a> StepLoop<'a> {
    /// Checks the folder and the config, opens the data and the trainer (from the checkpoint
    /// when resuming), takes the folder's lock and opens its metrics log.
    fn open(gpu: &'a Gpu, cfg: TrainConfig, opts: &'a RunOptions) -> Result<Self, String> {
        if opts.out_dir.exists() && !opts.out_dir.is_dir() {
            return Err(format!(
                "{}: is a file; --out takes a folder for the run",
                opts.out_dir.display()
            ));
        }
        let budget = opts.time_limit.map(Budget::new);
        if budget.is_some() && opts.resume {
            return Err(
                "a time limit fits a new run's schedule; a resumed run keeps its \
                 checkpoint's (bound this invocation with --stop-after instead)"
                    .into(),
            );
        }
        // The lock first where the folder exists: an --overwrite that a killed process left
        // half done (the earlier run set aside, the new one never begun) is put right before
        // anything looks at the folder.
        let early_lock = match opts.out_dir.is_dir() {
            true => {
                let lock = RunLock::acquire(&opts.out_dir)?;
                SetAside::recover(&opts.out_dir)?;
                Some(lock)
            }
            false => None,
        };
        if !opts.resume && !opts.overwrite {
            if let Some(f) = RUN_FILES.iter().find(|f| opts.out_dir.join(f).exists()) {
                return Err(format!(
                    "{}: already holds a training run ({f}); continue it with --resume, start \
                     over with --overwrite, or choose another --out",
                    opts.out_dir.display()
                ));
            }
        }
        // A resumed folder without a record of its data (the browser's state file, an older
        // run) gets one at its first step, as a new run does.
        let (data, recorded) = if opts.resume {
            let r = resumed_data(&opts.out_dir, opts.data.as_deref())?;
            if let Some(w) = &r.warning {
                log::warn!("{w} (--data)");
            }
            (r.data, r.recorded)
        } else {
            (opts.data.clone(), false)
        };
        let (train_ds, eval) = datasets(data.as_deref())?;
        if !opts.resume {
            super::super::plan::check_run(gpu, &cfg)?;
        }
        let trainer = if opts.resume {
            let (ck_cfg, st) = load_checkpoint(&opts.out_dir).map_err(|e| {
                use super::super::checkpoint::{exists, CHECKPOINTS};
                let none = !exists(&opts.out_dir) && !opts.out_dir.join(CHECKPOINTS).exists();
                if none && opts.out_dir.is_dir() {
                    format!(
                        "{e}: a run stopped before its first checkpoint has nothing to continue \
                         from; start it over with --overwrite"
                    )
                } else {
                    e
                }
            })?;
            if ck_cfg != cfg {
                log::warn!("resuming with the checkpoint's own training config");
            }
            keep_edited_config(&opts.out_dir, &ck_cfg);
            Trainer::from_state(gpu, ck_cfg, &st).map_err(|e| e.to_string())?
        } else {
            Trainer::new(gpu, cfg).map_err(|e| e.to_string())?
        };
        let cfg = trainer.cfg.clone();
        let start = trainer.step;
        std::fs::create_dir_all(&opts.out_dir)
            .map_err(|e| format!("{}: cannot create: {e}", opts.out_dir.display()))?;
        let lock = match early_lock {
            Some(lock) => lock,
            None => RunLock::acquire(&opts.out_dir)?,
        };
        let set_aside = if opts.overwrite && !opts.resume {
            SetAside::take(&opts.out_dir)?
        } else {
            SetAside(None)
        };
        let metrics_path = opts.out_dir.join("metrics.jsonl");
        let unused_log = UnusedLog((!metrics_path.exists()).then(|| metrics_path.clone()));
        if opts.resume {
            super::super::metrics_log::seed_from_state(&opts.out_dir)?;
        }
        let (log_file, kept) = MetricsLog::open(&metrics_path, start)?;
        let mut loader_cfg = cfg.loader_config();
        // A time limit may move the Gram loss's start earlier: every batch then holds its crops.
        if budget.is_some() {
            loader_cfg.gram_from = 0;
        }
        let loader = Loader::new(train_ds, loader_cfg, start);
        let end = end_of(opts, start, &cfg);
        Ok(StepLoop {
            gpu,
            opts,
            trainer,
            cfg,
            data,
            eval,
            budget,
            loader,
            log_file,
            unused_log,
            set_aside,
            _lock: lock,
            start_evaluated: metrics_log::evaluated(&kept, start),
            start,
            end,
            elapsed_before: metrics_log::elapsed_before(&kept),
            summary: RunSummary {
                steps: start,
                ..Default::default()
            },
            data_recorded: recorded,
            saved_at: start,
            warned: false,
            data_lost: None,
            t0: Instant::now(),
        })
    }

    fn stop_asked(&self) -> bool {
        self.opts
            .stop
            .as_ref()
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// Whether an evaluation is due after `done` steps.
    fn evaluates(&self, done: u64) -> bool {
        let cfg = &self.cfg;
        self.eval.is_some()
            && ((cfg.eval_every > 0 && done.is_multiple_of(cfg.eval_every)) || done == cfg.steps)
    }

    /// Whether a checkpoint is due after `done` steps.
    fn saves(&self, done: u64) -> bool {
        let every = self.cfg.checkpoint_every;
        (every > 0 && done.is_multiple_of(every)) || done == self.end
    }

    /// Whether the run pauses (nothing in flight) after `done` steps: what follows must see that
    /// step's weights (an evaluation, a checkpoint, the end), or a time limit's new schedule.
    fn pauses(&self, done: u64) -> bool {
        done >= self.end
            || self.evaluates(done)
            || self.saves(done)
            || self.budget.as_ref().and_then(|b| b.fits_after()) == Some(done - self.start)
    }

    /// The evaluation of the weights as they stand; a time limit does not count its time.
    fn evaluate_now(&mut self) -> Result<Option<Evaluation>, String> {
        let Some((tr, te)) = &self.eval else {
            return Ok(None);
        };
        let e0 = Instant::now();
        let ev = evaluate(self.gpu, &self.trainer, tr.as_ref(), te.as_ref(), &self.cfg).map_err(
            |e| {
                format!(
                    "the evaluation after step {} failed: {e}; training stopped{}",
                    self.trainer.step,
                    super::super::checkpoint::previous_note(&self.opts.out_dir)
                )
            },
        )?;
        if let Some(b) = &mut self.budget {
            b.paused(e0.elapsed().as_secs_f64(), true);
        }
        Ok(Some(ev))
    }

    /// The random-init baseline, as the app shows it; or, on resuming, the evaluation that a
    /// stop skipped at the step it stopped on.
    fn baseline(&mut self) -> Result<(), String> {
        let start = self.start;
        let due = start == 0 || (self.evaluates(start) && !self.start_evaluated);
        if !due || self.stop_asked() {
            return Ok(());
        }
        if let Some(ev) = self.evaluate_now()? {
            let line = serde_json::json!({
                "steps_done": start,
                "knn": ev.knn,
                "probe": ev.probe,
                "elapsed_s": self.elapsed_before,
            });
            self.log_file.write(&line)?;
            self.summary.evals.push((start, ev));
        }
        Ok(())
    }

    /// The steps, one in flight: step n + 1 is recorded and submitted before step n's metrics
    /// are read, so the GPU is not idle while the host records. The order of the GPU's work,
    /// and therefore every result, is the same as one step at a time. The run pauses (nothing
    /// in flight) where [`StepLoop::pauses`] says.
    fn steps(&mut self, on_step: &mut impl FnMut(&StepMetrics, u64)) -> Result<(), String> {
        self.t0 = Instant::now();
        // A step and when the host began on it.
        let mut in_flight: Option<(PendingStep, Instant)> = None;
        let mut last_read: Option<Instant> = None;
        loop {
            if self.trainer.step < self.end && self.budget.as_ref().is_some_and(|b| b.expired()) {
                self.end = self.trainer.step;
                self.summary.stopped_at_limit = true;
            }
            if self.trainer.step < self.end && self.stop_asked() {
                self.end = self.trainer.step;
                self.summary.interrupted = true;
            }
            let submits = self.trainer.step < self.end
                && in_flight
                    .as_ref()
                    .is_none_or(|(p, _)| !self.pauses(p.step() + 1));
            let batch = if submits {
                let w0 = Instant::now();
                match self.loader.next_batch() {
                    Ok(batch) => Some((batch, w0)),
                    Err(e) => {
                        // The step in flight is the last; it is read and saved below.
                        self.data_lost = Some(e.to_string());
                        self.end = self.trainer.step;
                        None
                    }
                }
            } else {
                None
            };
            let next = if let Some((batch, w0)) = batch {
                self.summary.data_wait_s += w0.elapsed().as_secs_f64();
                Some((
                    self.trainer
                        .submit_step(&batch)
                        .map_err(|e| e.to_string())?,
                    w0,
                ))
            } else {
                None
            };
            let Some((pending, began)) = std::mem::replace(&mut in_flight, next) else {
                if in_flight.is_none() {
                    return Ok(());
                }
                continue;
            };
            let mut m = pollster::block_on(pending.read(self.gpu)).map_err(|e| e.to_string())?;
            let now = Instant::now();
            let since = last_read.map_or(began, |t: Instant| t.max(began));
            m.seconds = now.duration_since(since).as_secs_f64();
            last_read = Some(now);
            self.report(m, in_flight.is_none(), on_step)?;
        }
    }

    /// After a step's metrics are read: the collapse check, the evaluation, the log line, the
    /// checkpoint and a time limit's fit that are due. `quiet`: no other step is in flight.
    fn report(
        &mut self,
        m: StepMetrics,
        quiet: bool,
        on_step: &mut impl FnMut(&StepMetrics, u64),
    ) -> Result<(), String> {
        let out_dir = &self.opts.out_dir;
        if let Some(what) = m.non_finite() {
            return Err(format!(
                "step {}: {what}; training stopped{} ({})",
                m.step,
                super::super::checkpoint::previous_note(out_dir),
                super::super::diagnose::divergence_advice(&self.cfg)
            ));
        }
        let mut line = serde_json::to_value(&m).unwrap_or_default();
        if let Some(d) = super::super::diagnose::diagnose(&m, &self.cfg) {
            if !self.warned {
                log::warn!("{}", d.message);
                self.warned = true;
            }
            line["warning"] = serde_json::Value::String(d.message);
            line["remedy"] = serde_json::json!(d.remedy);
        }
        let done = m.step + 1;
        // A stopping run skips the evaluation due at its last step and goes straight to its
        // checkpoint: a SIGTERM's grace period may not hold an evaluation too, and data that
        // stopped reading may take the evaluation's pictures with it.
        let stopping = (self.summary.interrupted || self.data_lost.is_some()) && done == self.end;
        if self.evaluates(done) && !stopping {
            if let Some(ev) = self.evaluate_now()? {
                line["knn"] = serde_json::json!(ev.knn);
                line["probe"] = serde_json::json!(ev.probe);
                self.summary.evals.push((done, ev));
            }
        }
        line["elapsed_s"] =
            serde_json::json!(self.elapsed_before + self.t0.elapsed().as_secs_f64());
        self.log_file.write(&line)?;
        self.unused_log.0 = None;
        if !self.data_recorded {
            // Without the record a resume needs --data; the run itself goes on.
            if let Err(e) = record_data(out_dir, self.data.as_deref()) {
                log::warn!("the run's data is not recorded ({e}); resume it with --data");
            }
            self.data_recorded = true;
        }
        log::debug!("step {done} done: loss {:.4}", m.loss);
        on_step(&m, self.cfg.steps);
        if done == self.end {
            self.fit_early(done);
        }
        if self.saves(done) {
            let c0 = Instant::now();
            save_checkpoint(out_dir, &self.cfg, &self.trainer)?;
            log::info!("checkpoint of step {done} written to {}", out_dir.display());
            self.saved_at = done;
            self.set_aside.discard();
            if let Some(b) = &mut self.budget {
                b.paused(c0.elapsed().as_secs_f64(), false);
            }
        }
        self.summary.last = Some(m);
        self.summary.steps = done;
        let start = self.start;
        let fitted = self
            .budget
            .as_mut()
            .filter(|_| !self.summary.interrupted && self.data_lost.is_none())
            .and_then(|b| b.after_step(done - start, done, &self.cfg, quiet));
        if let Some(fitted) = fitted {
            self.trainer.cfg = fitted.clone();
            self.cfg = fitted;
            self.end = end_of(self.opts, start, &self.cfg);
            self.summary.fit = self.budget.as_ref().and_then(|b| b.fit);
        }
        Ok(())
    }

    /// A time-limited run that ends before its schedule was fitted takes one fitted from its
    /// pace (see [`super::super::budget::Budget::fit_early`]), which its checkpoint then holds
    /// and a resumption follows; whether it did.
    fn fit_early(&mut self, done: u64) -> bool {
        if done >= self.cfg.steps || done <= self.start {
            return false;
        }
        let here = done - self.start;
        let Some(c) = self
            .budget
            .as_mut()
            .and_then(|b| b.fit_early(here, done, &self.cfg))
        else {
            return false;
        };
        self.trainer.cfg = c.clone();
        self.cfg = c;
        self.summary.fit = self.budget.as_ref().and_then(|b| b.fit);
        true
    }

    /// The last checkpoint, if the steps since the last one are not saved yet (a run the limit
    /// stopped right after a pause has no step in flight to save with), and the summary. A new
    /// run stopped before its first step (a time limit, a signal) trained nothing: its metrics
    /// log stays armed and goes with `unused_log`, so the folder holds no run.
    fn close(mut self) -> Result<RunSummary, String> {
        // Stopped at a pause (an evaluation, a checkpoint) with nothing in flight: the step
        // read last did not know it was the last.
        let fitted = self.fit_early(self.summary.steps);
        if self.summary.steps > self.saved_at || (fitted && self.summary.steps > self.start) {
            save_checkpoint(&self.opts.out_dir, &self.cfg, &self.trainer)?;
            self.set_aside.discard();
        }
        self.summary.loop_s = self.t0.elapsed().as_secs_f64();
        Ok(std::mem::take(&mut self.summary))
    }
}

/// A run folder's `train.ron` that is not its checkpoint's config (a file the user wrote in its
/// place) would be replaced at the next checkpoint: it is copied beside it as
/// `train.ron.edited` (or `.edited2`, …), and a warning says the run goes on with its own.
pub(crate) fn keep_edited_config(dir: &Path, own: &TrainConfig) {
    let path = dir.join("train.ron");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    let name = path.display().to_string();
    if TrainConfig::from_ron(&text, &name).ok().as_ref() == Some(own) {
        return;
    }
    let mut kept = None;
    for p in crate::io::tagged_names(&path, "edited") {
        match std::fs::read_to_string(&p) {
            // Kept by an earlier resume that saved no checkpoint.
            Ok(earlier) if earlier == text => return,
            Ok(_) => {}
            Err(_) if p.symlink_metadata().is_err() => {
                kept = Some(p);
                break;
            }
            Err(_) => {}
        }
    }
    let Some(kept) = kept else {
        return;
    };
    match std::fs::copy(&path, &kept) {
        Ok(_) => log::warn!(
            "{}: not the checkpoint's training config, which the run keeps (a changed recipe \
             is a new run); kept as {}",
            path.display(),
            kept.display()
        ),
        Err(e) => log::warn!(
            "{}: not the checkpoint's training config, and cannot be copied aside ({e}); the \
             next checkpoint replaces it",
            path.display()
        ),
    }
}

/// Where this invocation stops: the schedule's end, or `--stop-after` steps from `start`.
fn end_of(opts: &RunOptions, start: u64, cfg: &TrainConfig) -> u64 {
    opts.stop_after
        .map_or(cfg.steps, |s| (start + s).min(cfg.steps))
}
