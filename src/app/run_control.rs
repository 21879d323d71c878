//! Starting, stepping and controlling a training run from the app: the worker thread
//! (native) or per-frame steps (browser), and what comes back from it.

use super::*;

impl DinoscopeApp {
    /// Starts training from the settings, or resumes the checkpoint in `resume_from`.
    pub fn start(&mut self, resume_from: Option<std::path::PathBuf>) {
        if self.running() {
            return;
        }
        // A download of the finished run would go with it.
        #[cfg(target_arch = "wasm32")]
        if self.web.as_ref().is_some_and(|r| r.saving()) {
            self.notify(
                "a download is being prepared; start again once it is done".to_string(),
                true,
            );
            return;
        }
        self.settings.train.data = if self.data_field.trim().is_empty() {
            DataSource::Bundled
        } else {
            DataSource::Path(self.data_field.trim().into())
        };
        self.diagnosis = None;
        // The run's own config judges it, once it has started (a resumed run's is its own).
        self.judge = None;
        if resume_from.is_none() {
            let cfg = match self.settings.train.to_config() {
                Ok(c) => c,
                Err(e) => {
                    self.notify(format!("settings: {e}"), true);
                    return;
                }
            };
            // Refuse a run that cannot fit now, rather than failing in its first step.
            let fits = match self.memory.get(self.gpu, &cfg) {
                Ok(p) => crate::train::plan::check_fits(self.gpu, &cfg, p, self.memory_budget),
                Err(e) => Err(e.clone()),
            };
            if let Err(e) = fits {
                self.notify(format!("not started: {e}"), true);
                return;
            }
        }
        // A new run never replaces one: it goes to a fresh folder beside it.
        #[cfg(not(target_arch = "wasm32"))]
        if resume_from.is_none() && crate::train::run::holds_run(&self.settings.train.run_dir) {
            let fresh = crate::train::run::unused_run_dir(&self.settings.train.run_dir);
            self.notify(
                format!(
                    "{} holds a run; this one goes to {}",
                    self.settings.train.run_dir.display(),
                    fresh.display()
                ),
                false,
            );
            self.settings.train.run_dir = fresh;
        }
        self.history = History::default();
        self.snapshots.clear();
        self.replay = None;
        self.probe_textures = None;
        self.probe_images.clear();
        self.state = RunState::Starting;
        self.start_backend(resume_from);
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub(super) fn start_backend(&mut self, resume_from: Option<std::path::PathBuf>) {
        let job = worker::Job {
            settings: self.settings.train.clone(),
            resume_from,
            snapshot_every: self.settings.train.snapshot_every,
        };
        let wake = self.wake.clone();
        match worker::Worker::spawn(self.gpu, job, move || {
            if let Ok(w) = wake.lock() {
                if let Some(ctx) = w.as_ref() {
                    ctx.request_repaint();
                }
            }
        }) {
            Ok(w) => self.worker = Some(w),
            Err(e) => {
                self.state = RunState::Ended;
                self.notify(e, true);
            }
        }
    }

    #[cfg(target_arch = "wasm32")]
    pub(super) fn start_backend(&mut self, resume_from: Option<std::path::PathBuf>) {
        use super::session::Origin;
        // The browser resumes only from a dropped checkpoint (`resume_from` names it).
        let (origin, log) = match (resume_from, self.web_resume.take()) {
            (None, _) => (Origin::Fresh, Vec::new()),
            (Some(_), Some(state)) => state,
            (Some(name), None) => {
                self.state = RunState::Ended;
                self.notify(format!("{}: no checkpoint to resume", name.display()), true);
                return;
            }
        };
        // The finished run's buffers go before the new run's are made.
        self.web = None;
        match web::WebRun::start(self.gpu, &self.settings.train, origin, log) {
            Ok(mut run) => {
                // The curve starts with the steps the checkpoint's log holds.
                let batch = run.session.config().batch_size;
                let (points, evals) = super::session::earlier_points(run.log(), batch);
                self.history.points = points;
                (self.history.knn, self.history.probe) =
                    evals.into_iter().map(|(s, k, p)| ((s, k), (s, p))).unzip();
                run.first_snapshot(&self.wake_ctx());
                let (step, total) = (run.session.trainer.step, run.session.config().steps);
                let desc = run.session.data_description.clone();
                self.probe_images = run.session.probes.iter().map(|p| p.rgb.clone()).collect();
                let knn = run.session.has_knn();
                let cfg = run.session.config().clone();
                self.on_started(step, total, &desc, knn, cfg);
                self.web = Some(run);
            }
            Err(e) => {
                self.state = RunState::Ended;
                self.notify(e, true);
            }
        }
    }

    #[cfg(target_arch = "wasm32")]
    pub(super) fn step_web(&mut self, ctx: &egui::Context) {
        let Some(run) = &mut self.web else {
            return;
        };
        run.paused = self.state == RunState::Paused;
        let p = run.frame(ctx, self.settings.train.snapshot_every);
        for pt in p.points {
            self.on_step(pt);
        }
        if let Some(s) = p.snapshot {
            self.on_snapshot(s);
        }
        if let Some((step, e)) = p.evaluation {
            self.history.knn.push((step, e.knn));
            self.history.probe.push((step, e.probe));
        }
        if let Some((step, files)) = p.saved {
            for (name, bytes) in files {
                match web::download_bytes(name, &bytes) {
                    Ok(()) => {
                        self.saved_at = Some(step);
                        self.notify(format!("{name} of step {step} downloaded"), false);
                    }
                    Err(e) => self.notify(e, true),
                }
            }
        }
        if let Some(f) = p.fitted {
            let cfg = self.web.as_ref().map(|r| r.session.config().clone());
            self.on_fitted(f.steps, f.step_s, cfg);
        }
        if let Some(n) = p.notice {
            self.notify(n, false);
        }
        if let Some(e) = p.error {
            self.state = RunState::Ended;
            self.web = None;
            self.notify(format!("training stopped: {e}"), true);
        } else if p.finished {
            self.state = RunState::Ended;
            let timed_out = self.web.as_ref().is_some_and(|r| r.session.out_of_time());
            // Kept, without stepping, for its downloads until the next run starts.
            if let Some(r) = &mut self.web {
                r.done = true;
            }
            let (step, total) = self.progress;
            if timed_out && step < total {
                self.notify(
                    format!("the time limit ended the run at step {step} of {total}"),
                    false,
                );
            }
            self.notify(format!("training ended at step {step}"), false);
        }
        // Frames go on while the run steps or a download waits for one; readbacks ask for a
        // frame when they finish.
        if self
            .web
            .as_ref()
            .is_some_and(|r| (!r.done && !r.paused) || r.saving())
        {
            ctx.request_repaint();
        }
    }

    pub(super) fn on_started(
        &mut self,
        step: u64,
        total: u64,
        data: &str,
        knn: bool,
        cfg: crate::train::config::TrainConfig,
    ) {
        self.judge = Some(cfg);
        self.state = RunState::Running;
        self.progress = (step, total);
        self.knn_expected = knn;
        let note = if knn {
            ""
        } else {
            " (no k-NN: it needs labelled test pictures, as the bundled set has, or an IDX \
             file's test split beside it)"
        };
        self.notify(format!("training on {data}{note}"), false);
    }

    /// The time limit fitted the schedule: the progress bar's end moves to it.
    pub(super) fn on_fitted(
        &mut self,
        total: u64,
        step_s: f64,
        cfg: Option<crate::train::config::TrainConfig>,
    ) {
        self.progress.1 = total;
        if cfg.is_some() {
            self.judge = cfg;
        }
        let text = if step_s > 0.0 {
            format!(
                "time limit: {:.0} ms a step, so the schedule now spans {total} steps",
                step_s * 1e3
            )
        } else {
            format!("time limit: it ended the run at step {total}, before any step was timed")
        };
        self.notify(text, false);
    }

    /// Takes one step's metrics: progress, the curves, and the collapse diagnosis.
    pub fn on_step(&mut self, p: LogPoint) {
        self.progress.0 = p.metrics.step + 1;
        if let (None, Some(cfg)) = (&self.diagnosis, &self.judge) {
            if let Some(d) = crate::train::diagnose::diagnose(&p.metrics, cfg) {
                self.notify(d.message.clone(), true);
                self.diagnosis = Some(d);
            }
        }
        self.history.points.push(p);
    }

    /// Applies the diagnosed collapse's remedy to the next run's settings.
    pub fn apply_remedy(&mut self) {
        let Some(d) = &self.diagnosis else { return };
        let r = d.remedy;
        if !self.settings.train.remedies.contains(&r) {
            self.settings.train.remedies.push(r);
        }
        self.notify(format!("the next run uses {}", r.describe()), false);
    }

    pub(super) fn on_snapshot(&mut self, s: Snapshot) {
        self.snapshots.push(s);
        if self.snapshots.len() > MAX_SNAPSHOTS {
            // Keep the first and every other one after it: replay still spans the whole run.
            let mut i = 0;
            self.snapshots.retain(|_| {
                i += 1;
                i == 1 || i % 2 == 0
            });
            self.replay = None;
        }
    }

    /// Takes what the training backend reported since the last frame.
    pub fn poll_training(&mut self) {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let events = match &self.worker {
                Some(w) => w.events(),
                None => return,
            };
            for e in events {
                match e {
                    worker::Event::Started {
                        step,
                        total,
                        data,
                        params,
                        knn,
                        probes,
                        config,
                    } => {
                        self.probe_images = probes;
                        self.on_started(step, total, &data, knn, *config);
                        self.notify(format!("{params} parameters"), false);
                    }
                    worker::Event::Earlier { points, evals } => {
                        // The history starts with them: no step of this start has come yet.
                        self.history.points.splice(0..0, points);
                        let (knn, probe) = evals
                            .into_iter()
                            .map(|(s, k, p)| ((s, k), (s, p)))
                            .unzip::<_, _, Vec<_>, Vec<_>>();
                        self.history.knn.splice(0..0, knn);
                        self.history.probe.splice(0..0, probe);
                    }
                    worker::Event::Step(p) => self.on_step(p),
                    worker::Event::Knn {
                        step,
                        accuracy,
                        probe,
                    } => {
                        self.history.knn.push((step, accuracy));
                        self.history.probe.push((step, probe));
                    }
                    worker::Event::Snapshot(s) => self.on_snapshot(s),
                    worker::Event::Saved { step, dir } => {
                        self.saved_at = Some(step);
                        self.notify(
                            format!("checkpoint at step {step} written to {}", dir.display()),
                            false,
                        )
                    }
                    worker::Event::Paused { step } => self.paused_at = Some(step),
                    worker::Event::Fitted {
                        total,
                        step_s,
                        config,
                    } => self.on_fitted(total, step_s, Some(*config)),
                    worker::Event::Notice(t) => self.notify(t, false),
                    worker::Event::Warning(t) => self.notify(t, true),
                    worker::Event::Ended { step, error } => {
                        self.state = RunState::Ended;
                        match error {
                            Some(e) => self.notify(format!("training stopped: {e}"), true),
                            None => self.notify(format!("training ended at step {step}"), false),
                        }
                    }
                }
            }
            if self.state == RunState::Ended
                && self.worker.as_ref().is_some_and(|w| w.is_finished())
            {
                self.worker = None;
            }
        }
    }

    /// Writes the run folder's teacher backbone as a Hugging Face folder, `RUN/export-hf`, for
    /// transformers (as `dinoscope export RUN --to hf`); an earlier export is kept.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn export_hf(&mut self) {
        let run = self.settings.train.run_dir.clone();
        let out = run.join("export-hf");
        let done = crate::train::run::load_checkpoint(&run)
            .and_then(|(cfg, st)| crate::train::export::export_hf(&cfg, &st, &out, false));
        match done {
            Ok(class) => self.notify(
                format!(
                    "{} written ({class}): transformers' AutoModel.from_pretrained loads it",
                    out.display()
                ),
                false,
            ),
            Err(e) => self.notify(format!("not exported for transformers: {e}"), true),
        }
    }

    /// Pauses, resumes, saves or stops the run.
    pub fn control(&mut self, what: &str) {
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(w) = &self.worker {
            let c = match what {
                "pause" => worker::Command::Pause,
                "resume" => worker::Command::Resume,
                "save" => worker::Command::Save,
                "stop" => worker::Command::Stop,
                _ => return,
            };
            w.send(c);
        }
        #[cfg(target_arch = "wasm32")]
        if let Some(run) = &mut self.web {
            // The run steps, and a download starts, in the frames that follow.
            self.wake
                .lock()
                .ok()
                .and_then(|w| w.clone())
                .inspect(|c| c.request_repaint());
            if what == "stop" {
                self.state = RunState::Ended;
                run.done = true;
                return;
            }
            if let Some(files) = what.strip_prefix("download ") {
                use crate::train::checkpoint::{BACKBONE, HF_ARCHIVE, STATE};
                run.request_save(match files {
                    "state" => &[STATE],
                    "hf" => &[HF_ARCHIVE],
                    _ => &[BACKBONE],
                });
            }
        }
        match what {
            "pause" if self.state == RunState::Running => self.state = RunState::Paused,
            "resume" if self.state == RunState::Paused => {
                self.state = RunState::Running;
                self.paused_at = None;
            }
            _ => {}
        }
    }

    /// Images per second over the last few steps: their images over their time (the
    /// harmonic mean of their rates, as every step has the same batch).
    pub fn throughput(&self) -> f32 {
        let n = self.history.points.len();
        let recent: Vec<f32> = self.history.points[n.saturating_sub(10)..]
            .iter()
            .map(|p| p.images_per_s)
            .filter(|&r| r > 0.0)
            .collect();
        if recent.is_empty() {
            return 0.0;
        }
        recent.len() as f32 / recent.iter().map(|r| 1.0 / r).sum::<f32>()
    }
}
