//! The native training worker: a thread owns the [`Session`] and the training loop, and talks
//! to the UI over channels, so the window never waits for the GPU.

use super::session::{LogPoint, Session, Snapshot};
use super::settings::TrainSettings;
use crate::gpu::Gpu;
use crate::train::metrics_log::MetricsLog;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};

/// What the UI asks of the worker.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Stop stepping until resumed.
    Pause,
    /// Go on stepping.
    Resume,
    /// Write a checkpoint now.
    Save,
    /// Write a checkpoint and end the run.
    Stop,
}

/// What the worker tells the UI.
#[derive(Clone, Debug)]
pub enum Event {
    /// The run is set up.
    Started {
        /// Steps already done (a resumed run).
        step: u64,
        /// Steps scheduled.
        total: u64,
        /// The data, in words.
        data: String,
        /// Trainable parameters (student backbone and head).
        params: usize,
        /// Whether k-NN accuracy will be measured.
        knn: bool,
        /// The probe pictures the snapshots' maps are drawn over.
        probes: Vec<image::RgbImage>,
        /// The run's training config (a resumed run's is its checkpoint's).
        config: Box<crate::train::config::TrainConfig>,
    },
    /// A resumed run's steps and evaluations from before its start, from its metrics log:
    /// (steps done, k-NN, probe accuracy) for each evaluation.
    Earlier {
        /// The earlier steps.
        points: Vec<LogPoint>,
        /// The earlier evaluations.
        evals: Vec<(u64, f32, f32)>,
    },
    /// A step finished.
    Step(LogPoint),
    /// k-NN and linear-probe accuracy after `step` steps.
    Knn {
        /// Steps done.
        step: u64,
        /// k-NN accuracy in [0, 1].
        accuracy: f32,
        /// Linear-probe accuracy in [0, 1].
        probe: f32,
    },
    /// Fresh probe maps.
    Snapshot(Snapshot),
    /// A checkpoint was written.
    Saved {
        /// Steps done.
        step: u64,
        /// The run folder.
        dir: PathBuf,
    },
    /// The worker stopped stepping: every step up to `step` is done and none is in flight.
    Paused {
        /// Steps done.
        step: u64,
    },
    /// The time limit fitted the schedule: it now spans `total` steps.
    Fitted {
        /// Steps scheduled.
        total: u64,
        /// Seconds a timed step took.
        step_s: f64,
        /// The fitted training config.
        config: Box<crate::train::config::TrainConfig>,
    },
    /// Something the user should know that did not stop the run.
    Notice(String),
    /// Something that went wrong without stopping the run (a checkpoint not written).
    Warning(String),
    /// The run ended (finished, stopped, or failed with the message).
    Ended {
        /// Steps done.
        step: u64,
        /// `None` when it ended normally.
        error: Option<String>,
    },
}

/// The UI's handle on a running worker.
pub struct Worker {
    tx: Sender<Command>,
    rx: Receiver<Event>,
    handle: Option<std::thread::JoinHandle<()>>,
}

/// How a run starts.
#[derive(Clone, Debug)]
pub struct Job {
    /// The settings.
    pub settings: TrainSettings,
    /// Resume from this run folder's checkpoint.
    pub resume_from: Option<PathBuf>,
    /// Probe snapshots every N steps.
    pub snapshot_every: u64,
}

impl Worker {
    /// Starts the training thread; `wake` is called after each event (the UI repaints).
    pub fn spawn(
        gpu: &'static Gpu,
        job: Job,
        wake: impl Fn() + Send + 'static,
    ) -> Result<Worker, String> {
        let (tx, cmd_rx) = channel();
        let (ev_tx, rx) = channel();
        let handle = std::thread::Builder::new()
            .name("dinoscope-train".into())
            .spawn(move || {
                let send = |e: Event| {
                    let _ = ev_tx.send(e);
                    wake();
                };
                let step = run(gpu, job, &cmd_rx, &send);
                let (step, error) = match step {
                    Ok(s) => (s, None),
                    Err((s, e)) => (s, Some(e)),
                };
                send(Event::Ended { step, error });
            })
            .map_err(|e| format!("cannot start the training thread: {e}"))?;
        Ok(Worker {
            tx,
            rx,
            handle: Some(handle),
        })
    }

    /// Sends a command (ignored once the run has ended).
    pub fn send(&self, c: Command) {
        let _ = self.tx.send(c);
    }

    /// Events that arrived since the last call.
    pub fn events(&self) -> Vec<Event> {
        self.rx.try_iter().collect()
    }

    /// Whether the thread has exited.
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.tx.send(Command::Stop);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn run(
    gpu: &'static Gpu,
    job: Job,
    commands: &Receiver<Command>,
    send: &dyn Fn(Event),
) -> Result<u64, (u64, String)> {
    let mut d = Driver::start(gpu, job, send)?;
    d.baseline();
    let mut paused = false;
    let mut paused_since: Option<web_time::Instant> = None;
    // One step in flight, as `dinoscope train` runs: step n + 1 is recorded and submitted before
    // step n is read, so the GPU does not wait while the host records.
    let mut in_flight: Option<InFlight> = None;
    loop {
        // While paused, block on the next command; otherwise only look.
        let cmd = if paused {
            commands.recv().ok().or(Some(Command::Stop))
        } else {
            match commands.try_recv() {
                Ok(c) => Some(c),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => Some(Command::Stop),
            }
        };
        // Commands and the end act on the weights of every step submitted so far.
        if cmd.is_some() || d.session.finished() {
            if let Some(step) = in_flight.take() {
                d.report(step, true)?;
            }
        }
        match cmd {
            Some(Command::Pause) => {
                if !paused {
                    (d.send)(Event::Paused {
                        step: d.session.trainer.step,
                    });
                    paused_since = Some(web_time::Instant::now());
                }
                paused = true;
                continue;
            }
            Some(Command::Resume) => {
                paused = false;
                // A pause does not count toward a time limit.
                if let Some(t) = paused_since.take() {
                    d.session.hold(t.elapsed().as_secs_f64());
                    d.paused_s += t.elapsed().as_secs_f64();
                }
            }
            Some(Command::Save) => {
                // A failure is said; the run goes on.
                let _ = d.save();
            }
            Some(Command::Stop) => {
                // A pause under way at the stop is no training time either.
                if let Some(t) = paused_since.take() {
                    d.session.hold(t.elapsed().as_secs_f64());
                    d.paused_s += t.elapsed().as_secs_f64();
                }
                return d.close();
            }
            None => {}
        }
        if paused {
            continue;
        }
        if d.session.finished() {
            return d.finish();
        }
        let next = if in_flight
            .as_ref()
            .is_none_or(|f| !d.pauses(f.pending.step() + 1))
        {
            let since = web_time::Instant::now();
            let batch = match d.session.next_batch() {
                Ok(batch) => batch,
                Err(e) => {
                    // Only the data failed, not the run: the steps trained so far are saved.
                    if let Some(step) = in_flight.take() {
                        d.report(step, true)?;
                    }
                    let fit = d.session.fit_early();
                    if let Some(f) = fit {
                        d.fitted(f);
                    }
                    // A schedule fitted just now goes into the checkpoint even if one holds
                    // these steps.
                    if d.session.trainer.step > d.saved_step || fit.is_some() {
                        let _ = d.save();
                    }
                    return Err(d.failed(e));
                }
            };
            let (pending, skipped) = d.session.submit_batch(batch).map_err(|e| d.failed(e))?;
            Some(InFlight {
                pending,
                skipped,
                since,
            })
        } else {
            None
        };
        if let Some(step) = std::mem::replace(&mut in_flight, next) {
            d.report(step, in_flight.is_none())?;
        }
    }
}

/// The worker's side of a run: its session, its log, and what it has told the UI.
struct Driver<'a> {
    job: Job,
    session: Session,
    log: RunLog,
    send: &'a dyn Fn(Event),
    /// Time the user paused the run: left out of the log's wall time.
    paused_s: f64,
    /// When the last step was read: with steps overlapping, a step's time runs from there.
    last_read: Option<web_time::Instant>,
    /// Skipped images already told of.
    warned_skips: usize,
    /// The throughput over the last steps.
    rate: crate::train::rate::StepRate,
    /// Steps done at the last checkpoint (this start's, for a resumed run).
    saved_step: u64,
    /// Whether the collapse diagnosis was logged.
    warned: bool,
    /// The run folder's lock, held while the run trains (dropped last).
    _folder: FolderLock,
}

impl<'a> Driver<'a> {
    /// Opens the session (a fresh run or the job's run folder), tells the UI, opens the
    /// metrics log and takes the first snapshot.
    fn start(
        gpu: &'static Gpu,
        job: Job,
        send: &'a dyn Fn(Event),
    ) -> Result<Driver<'a>, (u64, String)> {
        let origin = match &job.resume_from {
            Some(dir) => super::session::Origin::Folder(dir.clone()),
            None => super::session::Origin::Fresh,
        };
        let run_dir = Some(job.settings.run_dir.clone());
        let folder = job.resume_from.as_ref().unwrap_or(&job.settings.run_dir);
        let folder = FolderLock::take(folder, job.resume_from.is_none()).map_err(|e| (0, e))?;
        let session = Session::start(gpu, &job.settings, origin, run_dir).map_err(|e| (0, e))?;
        let cfg = session.config();
        let started_at = session.trainer.step;
        send(Event::Started {
            step: started_at,
            total: cfg.steps,
            data: session.data_description.clone(),
            params: session.trainer.layout.total,
            knn: session.has_knn(),
            probes: session.probes.iter().map(|p| p.rgb.clone()).collect(),
            config: Box::new(cfg.clone()),
        });
        for skipped in &session.skipped_checkpoints {
            send(Event::Warning(skipped.clone()));
        }
        if let Some(w) = &session.data_warning {
            send(Event::Notice(w.clone()));
        }
        let log = RunLog::open(session.run_dir.clone(), started_at, cfg.batch_size, send);
        let d = Driver {
            job,
            session,
            log,
            send,
            paused_s: 0.0,
            last_read: None,
            warned_skips: 0,
            rate: Default::default(),
            saved_step: started_at,
            warned: false,
            _folder: folder,
        };
        d.snapshot();
        Ok(d)
    }

    fn snapshot(&self) {
        match pollster::block_on(self.session.snapshot()) {
            Ok(snap) => (self.send)(Event::Snapshot(snap)),
            Err(e) => (self.send)(Event::Notice(format!("attention snapshot failed: {e}"))),
        }
    }

    /// Writes a checkpoint; a failure is reported (and logged, for a window already closed)
    /// and returned.
    fn save(&mut self) -> Result<(), String> {
        let step = self.session.trainer.step;
        match self.session.save() {
            Ok((dir, warning)) => {
                if let Some(w) = warning {
                    (self.send)(Event::Notice(w));
                }
                self.saved_step = step;
                (self.send)(Event::Saved { step, dir });
                Ok(())
            }
            Err(e) => {
                let e = format!(
                    "the checkpoint of step {step} was not written: {e}{}",
                    self.session.last_checkpoint_note()
                );
                log::error!("{e}");
                (self.send)(Event::Warning(e.clone()));
                Err(e)
            }
        }
    }

    /// Tells the UI of a time limit's schedule.
    fn fitted(&self, f: crate::train::budget::Fit) {
        (self.send)(Event::Fitted {
            total: f.steps,
            step_s: f.step_s,
            config: Box::new(self.session.config().clone()),
        });
    }

    /// Ends the run where it stands: its checkpoint, unless the last one holds these steps;
    /// the steps done, or why they are not saved.
    fn close(&mut self) -> Result<u64, (u64, String)> {
        let step = self.session.trainer.step;
        let fit = self.session.fit_early();
        if let Some(f) = fit {
            self.fitted(f);
        }
        // A schedule fitted just now goes into the checkpoint even if one holds these steps.
        if step > self.saved_step || (fit.is_some() && step > 0) {
            self.save().map_err(|e| (step, e))?;
        }
        Ok(step)
    }

    /// A failure at the current step, with where the last checkpoint stands.
    fn failed(&self, e: String) -> (u64, String) {
        (
            self.session.trainer.step,
            e + &self.session.last_checkpoint_note(),
        )
    }

    /// The k-NN and probe accuracy of the weights as they stand (None: the run measures none);
    /// a time limit plans the run's evaluations from how long it took.
    fn evaluate(&mut self) -> Option<Result<crate::train::run::Evaluation, String>> {
        let t = web_time::Instant::now();
        let r = self.session.knn();
        self.session.paused_for(t.elapsed().as_secs_f64(), true);
        r
    }

    /// The accuracy of random features: the baseline the curve should climb from.
    fn baseline(&mut self) {
        if self.session.config().eval_every == 0 || self.session.trainer.step != 0 {
            return;
        }
        if let Some(Ok(e)) = self.evaluate() {
            (self.send)(Event::Knn {
                step: 0,
                accuracy: e.knn,
                probe: e.probe,
            });
            let line = serde_json::json!({
                "steps_done": 0,
                "knn": e.knn,
                "probe": e.probe,
                "elapsed_s": 0.0,
            });
            self.log.write(line, self.send);
        }
    }

    /// After step `done`: whether a snapshot, an evaluation or a checkpoint is due, which must
    /// see that step's weights before the next step starts, or the time limit's fit, which the
    /// next step's schedule must see.
    fn pauses(&self, done: u64) -> bool {
        let c = self.session.config();
        [self.job.snapshot_every, c.eval_every, c.checkpoint_every]
            .iter()
            .any(|&every| every > 0 && done.is_multiple_of(every))
            || self.session.fits_after(done)
    }

    /// Reports a step: its metrics, then what is due after it. `quiet`: no other step is in
    /// flight (a time limit's new length applies only then).
    fn report(&mut self, step: InFlight, quiet: bool) -> Result<(), (u64, String)> {
        // A step's time runs from when the host began on it, or read the step before when the
        // two overlapped.
        let since = self.last_read.map_or(step.since, |t| t.max(step.since));
        let point = self.session.finish(step.pending, step.skipped);
        let mut point = point.map_err(|e| self.failed(e))?;
        let batch = self.session.config().batch_size as f64;
        point.metrics.seconds = since.elapsed().as_secs_f64();
        point.images_per_s = self.rate.push(batch, point.metrics.seconds) as f32;
        self.last_read = Some(web_time::Instant::now());
        if self.session.skipped_total > self.warned_skips {
            self.warned_skips = self.session.skipped_total;
            (self.send)(Event::Notice(format!(
                "{} unreadable image(s) skipped so far (see the log for their names)",
                self.session.skipped_total
            )));
        }
        let done = point.metrics.step + 1;
        log::debug!("step {done} done: loss {:.4}", point.metrics.loss);
        let mut line = serde_json::to_value(&point.metrics).unwrap_or_default();
        // The collapse diagnosis in the log, as `dinoscope train` writes it.
        if let Some(d) = crate::train::diagnose::diagnose(&point.metrics, self.session.config()) {
            if !self.warned {
                log::warn!("{}", d.message);
                self.warned = true;
            }
            line["warning"] = Value::String(d.message);
            line["remedy"] = serde_json::json!(d.remedy);
        }
        (self.send)(Event::Step(point));
        let every = self.job.snapshot_every;
        if every > 0 && done.is_multiple_of(every) {
            self.snapshot();
        }
        let (eval_every, checkpoint_every, steps) = {
            let c = self.session.config();
            (c.eval_every, c.checkpoint_every, c.steps)
        };
        // The run's last step is measured too, as `dinoscope train` does.
        if (eval_every > 0 && done.is_multiple_of(eval_every)) || done == steps {
            match self.evaluate() {
                Some(Ok(e)) => {
                    line["knn"] = serde_json::json!(e.knn);
                    line["probe"] = serde_json::json!(e.probe);
                    (self.send)(Event::Knn {
                        step: done,
                        accuracy: e.knn,
                        probe: e.probe,
                    })
                }
                Some(Err(e)) => (self.send)(Event::Notice(format!("k-NN failed: {e}"))),
                None => {}
            }
        }
        line["elapsed_s"] = serde_json::json!(self.log.clock_s() - self.paused_s);
        self.log.write(line, self.send);
        if checkpoint_every > 0 && done.is_multiple_of(checkpoint_every) {
            let t = web_time::Instant::now();
            // A failure is said; the run goes on, and the next checkpoint tries again.
            let _ = self.save();
            self.session.paused_for(t.elapsed().as_secs_f64(), false);
        }
        if let Some(f) = self.session.after_step(done, quiet) {
            self.fitted(f);
        }
        Ok(())
    }

    /// The run reached its end (its schedule or a time limit): its last checkpoint, if it
    /// stepped since the last one; the steps done.
    fn finish(&mut self) -> Result<u64, (u64, String)> {
        if self.session.out_of_time() {
            (self.send)(Event::Notice(format!(
                "the time limit ended the run at step {} of {}",
                self.session.trainer.step,
                self.session.config().steps
            )));
        }
        self.close()
    }
}

/// A run folder held for one run: its lock ([`crate::train::run::RunLock`]), so that no other
/// process (`dinoscope train`, another window) trains into it meanwhile, and a folder made for
/// a new run is removed again if the run leaves nothing in it.
struct FolderLock {
    lock: Option<crate::train::run::RunLock>,
    made: Option<PathBuf>,
}

impl FolderLock {
    /// Takes `dir`'s lock (making the folder for a new run); a new run is refused where
    /// another process has put a run since the folder was chosen.
    fn take(dir: &std::path::Path, fresh: bool) -> Result<FolderLock, String> {
        let made = (!dir.exists()).then(|| dir.to_path_buf());
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("{}: cannot create: {e}", dir.display()))?;
        let mut folder = FolderLock { lock: None, made };
        folder.lock = Some(crate::train::run::RunLock::acquire(dir)?);
        if fresh && crate::train::run::holds_run(dir) {
            return Err(format!(
                "{}: another process started a run there; start again for a new folder",
                dir.display()
            ));
        }
        Ok(folder)
    }
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        drop(self.lock.take());
        if let Some(dir) = &self.made {
            // Only an empty folder goes: one the run wrote into is the run's.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// A submitted step whose metrics are not read yet, and when the host started on it.
struct InFlight {
    pending: crate::train::trainer::PendingStep,
    skipped: usize,
    since: web_time::Instant,
}

/// The run's `metrics.jsonl` in its folder, in the lines `dinoscope train` writes. A resumed
/// run's log is opened at its start, the lines from before its checkpoint kept and sent to the
/// curves ([`Event::Earlier`]); a fresh run's is made with its first step's line, so a run
/// stopped before any step leaves no folder behind. A log that cannot be written is said once
/// and the run goes on without it.
struct RunLog {
    dir: Option<PathBuf>,
    log: Option<MetricsLog>,
    /// Lines from before the first step (the baseline evaluation), for a log not made yet.
    pending: Vec<Value>,
    /// The run's wall time before this start (from the kept lines), and this start's clock.
    elapsed_before: f64,
    clock: web_time::Instant,
}

impl RunLog {
    fn open(dir: Option<PathBuf>, start: u64, batch: usize, send: &dyn Fn(Event)) -> RunLog {
        let mut log = RunLog {
            dir,
            log: None,
            pending: Vec::new(),
            elapsed_before: 0.0,
            clock: web_time::Instant::now(),
        };
        if start > 0 {
            if let Some(dir) = log.dir.clone() {
                let seeded = crate::train::metrics_log::seed_from_state(&dir);
                match seeded.and_then(|()| MetricsLog::open(&dir.join("metrics.jsonl"), start)) {
                    Ok((file, kept)) => {
                        log.log = Some(file);
                        log.elapsed_before = crate::train::metrics_log::elapsed_before(&kept);
                        send(earlier(&kept, batch));
                    }
                    Err(e) => log.fail(e, send),
                }
            }
        }
        log
    }

    /// Seconds of the run's wall time: before this start, and since it.
    fn clock_s(&self) -> f64 {
        self.elapsed_before + self.clock.elapsed().as_secs_f64()
    }

    fn write(&mut self, line: Value, send: &dyn Fn(Event)) {
        if self.log.is_none() {
            let Some(dir) = &self.dir else { return };
            if line.get("step").is_none() {
                self.pending.push(line);
                return;
            }
            let made = std::fs::create_dir_all(dir)
                .map_err(|e| format!("{}: cannot create: {e}", dir.display()))
                .and_then(|()| MetricsLog::open(&dir.join("metrics.jsonl"), 0));
            match made {
                Ok((file, _)) => self.log = Some(file),
                Err(e) => return self.fail(e, send),
            }
        }
        let Some(file) = &mut self.log else { return };
        let written = std::mem::take(&mut self.pending)
            .iter()
            .chain(std::iter::once(&line))
            .try_for_each(|l| file.write(l));
        if let Err(e) = written {
            self.fail(e, send);
        }
    }

    fn fail(&mut self, e: String, send: &dyn Fn(Event)) {
        send(Event::Notice(format!(
            "the metrics log is not written: {e}"
        )));
        self.dir = None;
        self.log = None;
    }
}

/// The curves' points and evaluations from a resumed run's kept log lines.
fn earlier(kept: &[Value], batch: usize) -> Event {
    let (points, evals) = super::session::earlier_points(kept, batch);
    Event::Earlier { points, evals }
}
