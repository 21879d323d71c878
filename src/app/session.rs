//! One training run as the app drives it: the trainer, its data, the probe images whose
//! attention is re-rendered as it learns, k-NN and checkpoints. No UI and no threads here, so
//! the native worker thread and the browser's per-frame stepping share it.

use super::settings::{DataSource, TrainSettings};
use crate::data::dataset::Dataset;
use crate::data::image::{preprocess, Preprocessed, Resize};
use crate::data::loader::Loader;
use crate::gpu::Gpu;
use crate::infer::{layer_view, LayerView};
use crate::train::budget::{Budget, Fit};
use crate::train::config::TrainConfig;
use crate::train::run::EvalSets;
use crate::train::trainer::{StepMetrics, Trainer};
use std::path::{Path, PathBuf};

/// Probe images shown in the live attention grid.
pub const PROBES: usize = 8;

/// One logged step: the trainer's metrics plus what the app measures around it.
#[derive(Clone, Debug, Default)]
pub struct LogPoint {
    /// The step's metrics.
    pub metrics: StepMetrics,
    /// Images per second over this step and the few before it (data loading included;
    /// `train::rate`).
    pub images_per_s: f32,
    /// Unreadable images skipped in this step's batch.
    pub skipped: usize,
}

/// An earlier part of a run, from its metrics log lines (`metrics.jsonl`, or the log a
/// browser's checkpoint carries): the curve's points and the evaluations (after how many
/// steps, k-NN, probe). A step's throughput is taken over its logged `step_s`, as while the
/// run was live (in a log written before that field, over the wall time since the line
/// before, evaluations included).
pub fn earlier_points(
    kept: &[serde_json::Value],
    batch: usize,
) -> (Vec<LogPoint>, Vec<(u64, f32, f32)>) {
    let (steps, evals) = crate::train::metrics_log::earlier(kept);
    let mut last = 0.0f64;
    let mut rate = crate::train::rate::StepRate::default();
    let points = steps
        .into_iter()
        .map(|(metrics, elapsed, timed)| {
            let dt = if timed {
                metrics.seconds
            } else {
                elapsed.map_or(0.0, |e| e - last)
            };
            last = elapsed.unwrap_or(last);
            LogPoint {
                metrics,
                images_per_s: rate.push(batch as f64, dt) as f32,
                skipped: 0,
            }
        })
        .collect();
    (points, evals)
}

/// The probe grid's maps at one step.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Steps done when it was taken.
    pub step: u64,
    /// One view per probe image (last layer of the teacher).
    pub views: Vec<LayerView>,
}

/// A training run in progress.
pub struct Session {
    gpu: &'static Gpu,
    /// The trainer (student, teacher, optimiser state).
    pub trainer: Trainer<'static>,
    loader: Loader,
    eval: EvalSets,
    /// The probe images, preprocessed at the global crop size.
    pub probes: Vec<Preprocessed>,
    /// Where checkpoints go (`None` in the browser).
    pub run_dir: Option<PathBuf>,
    /// Unreadable images skipped so far.
    pub skipped_total: usize,
    /// What the data is, for the status line.
    pub data_description: String,
    /// A new run's time limit (the settings' `minutes`).
    budget: Option<Budget>,
    /// Steps done when the session started.
    start_step: u64,
    /// The data it trains on (`None`: the bundled set), recorded in the run folder at its first
    /// checkpoint so that a resumption continues on it.
    #[cfg(not(target_arch = "wasm32"))]
    data: Option<PathBuf>,
    /// Whether that record is written (a resumed folder's stays as it was).
    #[cfg(not(target_arch = "wasm32"))]
    data_recorded: std::cell::Cell<bool>,
    /// Said when the run starts: the data is not what the run was trained on.
    pub data_warning: Option<String>,
    /// Said when the run starts: damaged newer checkpoints of the run folder, skipped.
    pub skipped_checkpoints: Vec<String>,
}

/// The data a run trains on (`None`: the bundled set), whether its folder already records it,
/// and a warning: the settings' data for a new run; for a resumed run folder, the one it
/// recorded unless the settings name a folder (as `--data` does for `dinoscope train
/// --resume`), which does not change the record.
fn chosen_data(
    source: &DataSource,
    origin: &Origin,
) -> Result<(Option<PathBuf>, bool, Option<String>), String> {
    let given = match source {
        DataSource::Bundled => None,
        DataSource::Path(p) => Some(p.as_path()),
    };
    match origin {
        #[cfg(not(target_arch = "wasm32"))]
        Origin::Folder(dir) => {
            let r = crate::train::run::resumed_data(dir, given)?;
            let warning = r
                .warning
                .map(|w| format!("{w} (the data field; empty it to continue on the run's)"));
            Ok((r.data, r.recorded, warning))
        }
        _ => Ok((given.map(Path::to_path_buf), false, None)),
    }
}

/// The first readable image of each class (then any readable ones) until `n` are found.
fn pick_probes(ds: &dyn Dataset, n: usize, size: usize, patch: usize) -> Vec<Preprocessed> {
    let mut seen = std::collections::HashSet::new();
    let mut picked: Vec<(usize, Preprocessed)> = Vec::new();
    let limit = ds.len().min(500);
    for pass in 0..2 {
        for i in 0..limit {
            if picked.len() >= n {
                break;
            }
            if picked.iter().any(|(j, _)| *j == i) {
                continue;
            }
            let label = ds.label(i);
            if pass == 0 && label.is_some_and(|l| !seen.insert(l)) {
                continue;
            }
            if let Ok(s) = ds.get(i) {
                if let Ok(p) = preprocess(&s.image, Resize::CenterCrop(size), patch) {
                    picked.push((i, p));
                }
            }
        }
    }
    picked.into_iter().map(|(_, p)| p).collect()
}

/// Where a run starts.
pub enum Origin {
    /// Fresh weights, from the settings.
    Fresh,
    /// The newest checkpoint of a run folder, which the run goes on writing (native).
    Folder(PathBuf),
    /// A checkpoint's training config and state, already read (the browser's dropped
    /// `state.safetensors`).
    State(
        Box<(
            crate::train::config::TrainConfig,
            crate::train::trainer::TrainState,
        )>,
    ),
}

impl Session {
    /// Starts a run from `origin`.
    pub fn start(
        gpu: &'static Gpu,
        settings: &TrainSettings,
        origin: Origin,
        run_dir: Option<PathBuf>,
    ) -> Result<Session, String> {
        // A resumed run keeps its checkpoint's schedule, fitted or not.
        let budget = (settings.minutes > 0.0 && matches!(origin, Origin::Fresh))
            .then(|| std::time::Duration::try_from_secs_f64(settings.minutes as f64 * 60.0).ok())
            .flatten()
            .map(Budget::new);
        let (trainer, cfg, skipped_checkpoints) = match &origin {
            #[cfg(not(target_arch = "wasm32"))]
            Origin::Folder(dir) => {
                let (cfg, st, skipped) = crate::train::run::load_checkpoint_noting(dir)?;
                crate::train::run::keep_edited_config(dir, &cfg);
                let t = Trainer::from_state(gpu, cfg.clone(), &st).map_err(|e| e.to_string())?;
                (t, cfg, skipped)
            }
            #[cfg(target_arch = "wasm32")]
            Origin::Folder(_) => {
                return Err("a run folder needs a file system (desktop app)".into())
            }
            Origin::State(state) => {
                let (cfg, st) = state.as_ref();
                let t = Trainer::from_state(gpu, cfg.clone(), st).map_err(|e| e.to_string())?;
                (t, cfg.clone(), Vec::new())
            }
            Origin::Fresh => {
                let cfg = settings.to_config()?;
                crate::train::plan::check_capacity(gpu, &cfg)?;
                let t = Trainer::new(gpu, cfg.clone()).map_err(|e| e.to_string())?;
                (t, cfg, Vec::new())
            }
        };
        let (data, recorded, data_warning) = chosen_data(&settings.data, &origin)?;
        #[cfg(target_arch = "wasm32")]
        let _ = recorded;
        let (train, eval) = crate::train::run::datasets(data.as_deref())?;
        let mut loader_cfg = cfg.loader_config();
        // A time limit may move the Gram loss's start earlier: every batch then holds its crops.
        if budget.is_some() {
            loader_cfg.gram_from = 0;
        }
        let data_description = train.describe();
        let probe_source: &dyn Dataset = match &eval {
            Some((_, test)) => test.as_ref(),
            None => train.as_ref(),
        };
        let probes = pick_probes(
            probe_source,
            PROBES,
            cfg.augment.global_size,
            cfg.model.patch,
        );
        let loader = Loader::new(train, loader_cfg, trainer.step);
        Ok(Session {
            gpu,
            start_step: trainer.step,
            budget,
            trainer,
            loader,
            eval,
            probes,
            run_dir: match origin {
                Origin::Folder(dir) => Some(dir),
                _ => run_dir,
            },
            skipped_total: 0,
            data_description,
            #[cfg(not(target_arch = "wasm32"))]
            data,
            #[cfg(not(target_arch = "wasm32"))]
            data_recorded: std::cell::Cell::new(recorded),
            data_warning,
            skipped_checkpoints,
        })
    }

    /// The run's training config.
    pub fn config(&self) -> &TrainConfig {
        &self.trainer.cfg
    }

    /// Whether every scheduled step is done, or the time limit has passed.
    pub fn finished(&self) -> bool {
        self.trainer.step >= self.trainer.cfg.steps || self.out_of_time()
    }

    /// Whether the time limit has passed.
    pub fn out_of_time(&self) -> bool {
        self.budget.as_ref().is_some_and(|b| b.expired())
    }

    /// Whether the run pauses after `done` steps (nothing in flight) to fit its schedule to the
    /// time limit.
    pub fn fits_after(&self, done: u64) -> bool {
        let here = done.saturating_sub(self.start_step);
        self.budget.as_ref().and_then(|b| b.fits_after()) == Some(here)
    }

    /// Counts `seconds` spent beside the steps (an evaluation when `eval`, else a checkpoint)
    /// out of the time limit's step timing.
    pub fn paused_for(&mut self, seconds: f64, eval: bool) {
        if let Some(b) = &mut self.budget {
            b.paused(seconds, eval);
        }
    }

    /// Leaves `seconds` the user paused the run out of its time limit.
    pub fn hold(&mut self, seconds: f64) {
        if let Some(b) = &mut self.budget {
            b.hold(seconds);
        }
    }

    /// After the step that made `done` steps (`quiet`: none in flight): once the first steps are
    /// timed, and at later quiet points when the pace has changed, the schedule becomes what
    /// fits in the time limit, and this returns what was chosen.
    pub fn after_step(&mut self, done: u64, quiet: bool) -> Option<Fit> {
        let b = self.budget.as_mut()?;
        let fitted = b.after_step(done - self.start_step, done, &self.trainer.cfg, quiet)?;
        self.trainer.cfg = fitted;
        b.fit
    }

    /// A time-limited run that ends before its schedule was fitted (stopped, or out of time
    /// before its steps were timed): its schedule fitted from the pace so far, which the
    /// checkpoint then holds and a resumption follows ([`Budget::fit_early`]). Call with no
    /// step in flight.
    pub fn fit_early(&mut self) -> Option<Fit> {
        let done = self.trainer.step;
        if done >= self.trainer.cfg.steps {
            return None;
        }
        let b = self.budget.as_mut()?;
        let fitted = b.fit_early(done - self.start_step, done, &self.trainer.cfg)?;
        self.trainer.cfg = fitted;
        b.fit
    }

    /// Builds the next batch and submits its step; the metrics come from [`PendingStep::read`].
    ///
    /// [`PendingStep::read`]: crate::train::trainer::PendingStep::read
    pub fn submit(&mut self) -> Result<(crate::train::trainer::PendingStep, usize), String> {
        let batch = self.next_batch()?;
        self.submit_batch(batch)
    }

    /// The next batch of crops; an error when the data no longer reads (a folder gone mid-run).
    pub fn next_batch(&mut self) -> Result<crate::data::loader::Batch, String> {
        self.loader.next_batch().map_err(|e| e.to_string())
    }

    /// Submits the step of `batch` (see [`Session::submit`]).
    pub fn submit_batch(
        &mut self,
        batch: crate::data::loader::Batch,
    ) -> Result<(crate::train::trainer::PendingStep, usize), String> {
        self.skipped_total += batch.skipped;
        let pending = self
            .trainer
            .submit_step(&batch)
            .map_err(|e| gpu_message(&e.to_string()))?;
        Ok((pending, batch.skipped))
    }

    /// Reads a submitted step's metrics back (native); the caller times it
    /// (`LogPoint::images_per_s` is 0 here).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn finish(
        &self,
        pending: crate::train::trainer::PendingStep,
        skipped: usize,
    ) -> Result<LogPoint, String> {
        let metrics =
            pollster::block_on(pending.read(self.gpu)).map_err(|e| gpu_message(&e.to_string()))?;
        self.check_finite(&metrics)?;
        Ok(LogPoint {
            images_per_s: 0.0,
            metrics,
            skipped,
        })
    }

    /// An error when the loss is not finite, naming the last checkpoint.
    pub fn check_finite(&self, m: &StepMetrics) -> Result<(), String> {
        let Some(what) = m.non_finite() else {
            return Ok(());
        };
        Err(format!(
            "step {}: {what}; training stopped{}",
            m.step,
            self.last_checkpoint_note()
        ))
    }

    /// "; the checkpoint of step N in DIR is intact", or that none was saved yet.
    pub fn last_checkpoint_note(&self) -> String {
        match &self.run_dir {
            Some(d) => crate::train::checkpoint::previous_note(d),
            None => "; no checkpoint was saved yet".to_string(),
        }
    }

    /// The teacher's last-layer maps of every probe image.
    pub async fn snapshot(&self) -> Result<Snapshot, String> {
        let vit = self.trainer.teacher_backbone();
        let layer = vit.cfg.depth.saturating_sub(1);
        let mut views = Vec::with_capacity(self.probes.len());
        for p in &self.probes {
            views.push(
                layer_view(self.gpu, vit, p, layer)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        Ok(Snapshot {
            step: self.trainer.step,
            views,
        })
    }

    /// Whether k-NN accuracy can be measured (labelled evaluation sets).
    pub fn has_knn(&self) -> bool {
        self.eval.is_some()
    }

    /// k-NN and linear-probe accuracy of the teacher's features (native; `None` without
    /// labelled sets).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn knn(&self) -> Option<Result<crate::train::run::Evaluation, String>> {
        let (train, test) = self.eval.as_ref()?;
        Some(crate::train::run::evaluate(
            self.gpu,
            &self.trainer,
            train.as_ref(),
            test.as_ref(),
            self.config(),
        ))
    }

    /// [`Session::knn`] without blocking: the browser's evaluation, its readbacks resolved as
    /// the page maps them (`None` without labelled sets).
    pub async fn evaluate(&self) -> Option<Result<crate::train::run::Evaluation, String>> {
        let (train, test) = self.eval.as_ref()?;
        Some(
            crate::train::run::evaluate_async(
                self.gpu,
                &self.trainer,
                train.as_ref(),
                test.as_ref(),
                self.config(),
            )
            .await,
        )
    }

    /// Writes a checkpoint into the run folder (atomically); returns the folder, and a warning
    /// when the record of the run's data could not be written (the checkpoint was).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn save(&self) -> Result<(PathBuf, Option<String>), String> {
        let dir = self
            .run_dir
            .clone()
            .ok_or_else(|| "no run folder is set".to_string())?;
        crate::train::run::save_checkpoint(&dir, self.config(), &self.trainer)?;
        let mut warning = None;
        if !self.data_recorded.get() {
            // Tried once: a failure is said once, not at every checkpoint.
            self.data_recorded.set(true);
            if let Err(e) = crate::train::run::record_data(&dir, self.data.as_deref()) {
                warning = Some(format!(
                    "the run's data is not recorded ({e}); resuming it takes its folder in the \
                     data field"
                ));
            }
        }
        Ok((dir, warning))
    }
}

/// Device errors in words a user can act on.
pub fn gpu_message(e: &str) -> String {
    if e.contains("Out of Memory") || e.contains("OutOfMemory") {
        format!(
            "the GPU ran out of memory: lower the batch size, the model width or the crop sizes \
             ({})",
            e.lines().next().unwrap_or(e)
        )
    } else {
        e.to_string()
    }
}
