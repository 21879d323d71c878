//! The dinoscope window (eframe, wgpu renderer): train a ViT with DINO and watch its loss,
//! k-NN accuracy and attention maps as it learns, or inspect a trained model's attention.
//!
//! The runtime shares eframe's wgpu device: [`Gpu::device_descriptor`] asks for the adapter's own
//! limits and the features the kernels use, and [`DinoscopeApp::new`] wraps that device in a
//! [`Gpu`] (on GL the runtime opens a device of its own: [`compute_gpu`]). On native a worker thread owns the training loop ([`worker`]); in the browser the
//! app steps within a per-frame time budget ([`web`]).

pub mod curves;
pub mod dialogs;
pub mod images;
pub mod inspect;
pub mod memory;
pub mod session;
pub mod settings;
#[cfg(target_arch = "wasm32")]
pub mod web;
#[cfg(not(target_arch = "wasm32"))]
pub mod worker;

use crate::gpu::Gpu;
use crate::model::vit::Vit;
use curves::History;
use eframe::egui;
use images::{render, texture, MapKind};
use inspect::Inspect;
use session::{LogPoint, Snapshot};
use settings::{AppSettings, DataSource};
use std::sync::{Arc, Mutex};

/// A dropped file's name and contents (read asynchronously in the browser).
#[cfg(target_arch = "wasm32")]
type DroppedRead = (std::path::PathBuf, Result<Vec<u8>, String>);

/// A file chosen in the page's file picker: its name and contents.
#[cfg(target_arch = "wasm32")]
type PickedFile = (std::path::PathBuf, Vec<u8>);

/// The probe grid's textures (rows of maps) for (snapshot index, step).
type ProbeTextures = ((usize, u64), Vec<Vec<egui::TextureHandle>>);

/// Key of the persisted settings in eframe's storage.
pub const STORAGE_KEY: &str = "dinoscope-settings";

/// Snapshots kept for the replay slider; older ones are thinned out beyond this.
const MAX_SNAPSHOTS: usize = 240;

/// The result of work that finishes later (a GPU readback in the browser); native work
/// finishes before [`Task::spawn`] returns.
pub struct Task<T>(Arc<Mutex<Option<T>>>);

impl<T: 'static> Task<T> {
    /// Runs a future: to completion on native, in the background in the browser (the UI is
    /// asked to repaint when it is done).
    pub fn spawn(ctx: &egui::Context, fut: impl std::future::Future<Output = T> + 'static) -> Self {
        let slot = Arc::new(Mutex::new(None));
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = ctx;
            let v = pollster::block_on(fut);
            if let Ok(mut s) = slot.lock() {
                *s = Some(v);
            }
        }
        #[cfg(target_arch = "wasm32")]
        {
            let s2 = slot.clone();
            let ctx = ctx.clone();
            wasm_bindgen_futures::spawn_local(async move {
                let v = fut.await;
                if let Ok(mut s) = s2.lock() {
                    *s = Some(v);
                }
                ctx.request_repaint();
            });
        }
        Task(slot)
    }

    /// The result, once (None while running).
    pub fn take(&self) -> Option<T> {
        self.0.lock().ok()?.take()
    }
}

/// eframe's wgpu setup with [`Gpu::device_descriptor`].
pub fn wgpu_options() -> eframe::egui_wgpu::WgpuConfiguration {
    let mut setup = eframe::egui_wgpu::WgpuSetupCreateNew::without_display_handle();
    setup.device_descriptor = Arc::new(Gpu::device_descriptor);
    eframe::egui_wgpu::WgpuConfiguration {
        wgpu_setup: eframe::egui_wgpu::WgpuSetup::CreateNew(setup),
        ..Default::default()
    }
}

/// Where training stands.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum RunState {
    /// No run.
    #[default]
    Idle,
    /// Setting up.
    Starting,
    /// Stepping.
    Running,
    /// Paused by the user.
    Paused,
    /// Ended (finished, stopped or failed).
    Ended,
}

/// A message in the notices list.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    /// The text.
    pub text: String,
    /// Errors are red.
    pub error: bool,
}

/// Which tab is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    /// Training with live curves and attention.
    Train,
    /// Attention of a loaded model on one picture.
    Inspect,
}

/// Options of an automated run (tests, screenshots for the docs).
#[derive(Clone, Debug, Default)]
pub struct Automation {
    /// Save a screenshot here once `after_steps` steps are done (and a snapshot shown), then quit.
    pub screenshot: Option<std::path::PathBuf>,
    /// Steps to train before the screenshot.
    pub after_steps: u64,
    /// Settings given on the command line or in the page's link (`key=value`), applied over
    /// the first-run defaults.
    pub params: Vec<(String, String)>,
}

/// The app.
pub struct DinoscopeApp {
    gpu: &'static Gpu,
    /// Persisted settings.
    pub settings: AppSettings,
    /// Open tab.
    pub tab: Tab,
    /// Training state.
    pub state: RunState,
    /// Logged history of the current run.
    pub history: History,
    /// Probe snapshots of the current run.
    pub snapshots: Vec<Snapshot>,
    /// Snapshot shown (None: the latest).
    pub replay: Option<usize>,
    /// Probe map columns: the picture, mean, each head, thresholded, PCA.
    probe_textures: Option<ProbeTextures>,
    /// Probe pictures (the RGB crops the maps are drawn over).
    probe_images: Vec<image::RgbImage>,
    /// Notices, newest last.
    pub notices: Vec<Notice>,
    /// Steps done / total of the current run.
    pub progress: (u64, u64),
    /// The step the worker acknowledged pausing at (no step is in flight then).
    pub paused_at: Option<u64>,
    /// The step of the last checkpoint the worker reported written.
    pub saved_at: Option<u64>,
    /// Whether the current run measures k-NN accuracy.
    knn_expected: bool,
    run_started: Option<web_time::Instant>,
    steps_at_start: u64,
    /// The inspect view.
    pub inspect: Inspect,
    /// Path typed in the weights field.
    pub weights_field: String,
    /// Path typed in the picture field.
    pub image_field: String,
    /// Path typed in the data field.
    pub data_field: String,
    #[cfg(not(target_arch = "wasm32"))]
    worker: Option<worker::Worker>,
    #[cfg(target_arch = "wasm32")]
    web: Option<web::WebRun>,
    #[cfg(target_arch = "wasm32")]
    dropped_reads: Vec<Task<DroppedRead>>,
    /// Files chosen in the page's file picker, still being read.
    #[cfg(target_arch = "wasm32")]
    picked: Vec<Task<Option<PickedFile>>>,
    /// Shows a file dialog (the platform's; tests put their own here).
    #[cfg(not(target_arch = "wasm32"))]
    pub dialog: dialogs::Opener,
    /// Weights being read (and maybe downloaded) on their own thread: the path asked for, and
    /// where the model arrives.
    #[cfg(not(target_arch = "wasm32"))]
    loading: Option<(
        std::path::PathBuf,
        std::sync::mpsc::Receiver<Result<Vit, String>>,
    )>,
    automation: Automation,
    screenshot_requested: bool,
    /// Where the curves and the probe grid were drawn (for tests and screenshots).
    pub panel_rects: Vec<(String, egui::Rect)>,
    wake: Arc<Mutex<Option<egui::Context>>>,
    memory: memory::MemoryEstimate,
    /// GPU memory a run may use (the adapter's, where the driver tells; `None`: unknown).
    pub memory_budget: Option<u64>,
    /// The running config, for the collapse diagnosis.
    pub judge: Option<crate::train::config::TrainConfig>,
    /// The collapse this run shows, once found (with the remedy the app offers).
    pub diagnosis: Option<crate::train::diagnose::Diagnosis>,
}

impl DinoscopeApp {
    /// An app on a device (leaked: it lives as long as the program, and the training thread
    /// borrows it).
    pub fn new(gpu: Gpu, settings: AppSettings, automation: Automation) -> Self {
        // Tuned matmul plans of this adapter, if `dinoscope tune` ran on it.
        #[cfg(not(target_arch = "wasm32"))]
        if let Err(e) = crate::tune::load(&gpu) {
            log::warn!("{e}");
        }
        let gpu: &'static Gpu = Box::leak(Box::new(gpu));
        let data_field = match &settings.train.data {
            DataSource::Bundled => String::new(),
            DataSource::Path(p) => p.display().to_string(),
        };
        let weights_field = settings
            .weights
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let image_field = settings
            .image
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        DinoscopeApp {
            gpu,
            settings,
            tab: Tab::Train,
            state: RunState::Idle,
            history: History::default(),
            snapshots: Vec::new(),
            replay: None,
            probe_textures: None,
            probe_images: Vec::new(),
            notices: Vec::new(),
            progress: (0, 0),
            paused_at: None,
            saved_at: None,
            knn_expected: true,
            run_started: None,
            steps_at_start: 0,
            inspect: Inspect::default(),
            weights_field,
            image_field,
            data_field,
            #[cfg(not(target_arch = "wasm32"))]
            worker: None,
            #[cfg(target_arch = "wasm32")]
            web: None,
            #[cfg(target_arch = "wasm32")]
            dropped_reads: Vec::new(),
            #[cfg(target_arch = "wasm32")]
            picked: Vec::new(),
            #[cfg(not(target_arch = "wasm32"))]
            dialog: Box::new(dialogs::native),
            #[cfg(not(target_arch = "wasm32"))]
            loading: None,
            automation,
            screenshot_requested: false,
            panel_rects: Vec::new(),
            wake: Arc::default(),
            memory: Default::default(),
            memory_budget: crate::train::plan::device_memory(gpu),
            judge: None,
            diagnosis: None,
        }
    }

    /// The app eframe creates: its device wrapped (see [`compute_gpu`]), settings restored.
    pub fn from_creation_context(
        cc: &eframe::CreationContext<'_>,
        reset: bool,
        automation: Automation,
    ) -> Result<Self, String> {
        let rs = cc
            .wgpu_render_state
            .as_ref()
            .ok_or("the window has no wgpu renderer")?;
        let gpu = compute_gpu(rs)?;
        let settings = if reset || !automation.params.is_empty() {
            None
        } else {
            cc.storage
                .and_then(|s| eframe::get_value::<AppSettings>(s, STORAGE_KEY))
        };
        let first_start = settings.is_none() && automation.params.is_empty();
        let mut settings = settings.unwrap_or_else(AppSettings::first_run);
        if first_start {
            let preset = memory::first_run_preset(&gpu);
            if let Ok(cfg) = crate::train::config::TrainConfig::preset(preset) {
                settings.train.preset = preset.to_string();
                settings.train.take_preset(&cfg);
            }
        }
        let mut problems = Vec::new();
        for (k, v) in &automation.params {
            if let Err(e) = settings.apply_param(k, v) {
                problems.push(e);
            }
        }
        let mut app = Self::new(gpu, settings, automation);
        for p in problems {
            app.notify(p, true);
        }
        if let Ok(mut w) = app.wake.lock() {
            *w = Some(cc.egui_ctx.clone());
        }
        if app.settings.autostart || app.automation.screenshot.is_some() {
            app.start(None);
        }
        Ok(app)
    }

    /// The device.
    pub fn gpu(&self) -> &'static Gpu {
        self.gpu
    }

    /// Adds a notice (errors are also logged).
    pub fn notify(&mut self, text: impl Into<String>, error: bool) {
        let text = text.into();
        if error {
            log::error!("{text}");
        } else {
            log::info!("{text}");
        }
        self.notices.push(Notice { text, error });
        if self.notices.len() > 50 {
            self.notices.remove(0);
        }
    }

    /// Whether a run is in progress (running or paused).
    pub fn running(&self) -> bool {
        matches!(
            self.state,
            RunState::Starting | RunState::Running | RunState::Paused
        )
    }

    /// Starts training from the settings, or resumes the checkpoint in `resume_from`.
    pub fn start(&mut self, resume_from: Option<std::path::PathBuf>) {
        if self.running() {
            return;
        }
        self.settings.train.data = if self.data_field.trim().is_empty() {
            DataSource::Bundled
        } else {
            DataSource::Path(self.data_field.trim().into())
        };
        self.diagnosis = None;
        self.judge = self.settings.train.to_config().ok();
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
    fn start_backend(&mut self, resume_from: Option<std::path::PathBuf>) {
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
    fn start_backend(&mut self, resume_from: Option<std::path::PathBuf>) {
        if resume_from.is_some() {
            self.state = RunState::Ended;
            self.notify("resuming a checkpoint needs the desktop app", true);
            return;
        }
        match web::WebRun::start(self.gpu, &self.settings.train) {
            Ok(mut run) => {
                run.first_snapshot(&self.wake_ctx());
                let (step, total) = (run.session.trainer.step, run.session.config().steps);
                let desc = run.session.data_description.clone();
                // The browser does not evaluate k-NN (it would need blocking readbacks).
                self.probe_images = run.session.probes.iter().map(|p| p.rgb.clone()).collect();
                self.on_started(step, total, &desc, false);
                self.web = Some(run);
            }
            Err(e) => {
                self.state = RunState::Ended;
                self.notify(e, true);
            }
        }
    }

    #[cfg(target_arch = "wasm32")]
    fn step_web(&mut self, ctx: &egui::Context) {
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
        if let Some(n) = p.notice {
            self.notify(n, false);
        }
        if let Some(e) = p.error {
            self.state = RunState::Ended;
            self.web = None;
            self.notify(format!("training stopped: {e}"), true);
        } else if p.finished {
            self.state = RunState::Ended;
            self.web = None;
            let step = self.progress.0;
            self.notify(format!("training ended at step {step}"), false);
        }
        ctx.request_repaint();
    }

    fn on_started(&mut self, step: u64, total: u64, data: &str, knn: bool) {
        self.state = RunState::Running;
        self.progress = (step, total);
        self.steps_at_start = step;
        self.run_started = Some(web_time::Instant::now());
        self.knn_expected = knn;
        let note = if knn {
            ""
        } else if cfg!(target_arch = "wasm32") {
            " (k-NN evaluation runs in the desktop app)"
        } else {
            " (k-NN is measured on the bundled set only)"
        };
        self.notify(format!("training on {data}{note}"), false);
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

    fn diagnosis_panel(&mut self, ui: &mut egui::Ui) {
        if let Some(d) = &self.diagnosis {
            ui.colored_label(ui.visuals().warn_fg_color, &d.message);
            let applied = self.settings.train.remedies.contains(&d.remedy);
            if ui
                .add_enabled(!applied, egui::Button::new("Apply to the next run"))
                .on_hover_text(d.remedy.describe())
                .clicked()
            {
                self.apply_remedy();
            }
        }
        if !self.settings.train.remedies.is_empty() {
            ui.horizontal_wrapped(|ui| {
                let list: Vec<&str> = self
                    .settings
                    .train
                    .remedies
                    .iter()
                    .map(|r| r.describe())
                    .collect();
                ui.label(format!("on top of the preset: {}", list.join("; ")));
                if ui.small_button("clear").clicked() {
                    self.settings.train.remedies.clear();
                }
            });
        }
    }

    fn on_snapshot(&mut self, s: Snapshot) {
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
                    } => {
                        self.probe_images = probes;
                        self.on_started(step, total, &data, knn);
                        self.notify(format!("{params} parameters"), false);
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
                    worker::Event::Notice(t) => self.notify(t, false),
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

    /// Pauses, resumes, saves or stops the run.
    pub fn control(&mut self, what: &str) {
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(w) = &self.worker {
            let c = match what {
                "pause" => worker::Command::Pause,
                "resume" => worker::Command::Resume,
                "save" => worker::Command::Save,
                _ => worker::Command::Stop,
            };
            w.send(c);
        }
        #[cfg(target_arch = "wasm32")]
        if self.web.is_some() {
            if what == "stop" {
                self.state = RunState::Ended;
                self.web = None;
                return;
            }
            if what == "save" {
                self.notify("checkpoints need the desktop app", false);
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

    /// Images per second over the last few steps.
    pub fn throughput(&self) -> f32 {
        let n = self.history.points.len();
        let recent = &self.history.points[n.saturating_sub(10)..];
        if recent.is_empty() {
            return 0.0;
        }
        recent.iter().map(|p| p.images_per_s).sum::<f32>() / recent.len() as f32
    }

    /// Handles files dropped on the window: weights, pictures, image folders, IDX files.
    pub fn handle_dropped(&mut self, paths: Vec<(std::path::PathBuf, Option<Vec<u8>>)>) {
        for (path, bytes) in paths {
            let name = path.display().to_string();
            let lower = name.to_ascii_lowercase();
            if lower.ends_with(".safetensors") {
                self.tab = Tab::Inspect;
                self.weights_field = name.clone();
                self.load_weights(&path, bytes);
            } else if [".png", ".jpg", ".jpeg", ".webp"]
                .iter()
                .any(|e| lower.ends_with(e))
            {
                self.tab = Tab::Inspect;
                self.image_field = name.clone();
                self.load_image(&path, bytes);
            } else if path.is_dir() || lower.contains("-ubyte") {
                self.tab = Tab::Train;
                self.data_field = name;
                self.notify(
                    format!("training data set to {}; press Start", path.display()),
                    false,
                );
            } else {
                self.notify(
                    format!(
                        "{name}: not something dinoscope opens (weights: .safetensors; pictures: \
                         png, jpeg, webp; data: a folder or an IDX file)"
                    ),
                    true,
                );
            }
        }
    }

    /// Opens the file dialog for `pick` and uses what is chosen: the data, weights or picture
    /// field (weights and pictures are loaded at once), the run folder, or the CSV export.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn browse(&mut self, pick: dialogs::Pick) {
        use dialogs::Pick;
        let current = match pick {
            Pick::DataFolder | Pick::DataFile => self.data_field.clone(),
            Pick::Weights => self.weights_field.clone(),
            Pick::Picture => self.image_field.clone(),
            Pick::RunFolder | Pick::Csv => self.settings.train.run_dir.display().to_string(),
        };
        let spec = dialogs::spec(pick, &current);
        let Some(path) = (self.dialog)(&spec) else {
            return;
        };
        match pick {
            Pick::DataFolder | Pick::DataFile => {
                self.data_field = path.display().to_string();
                self.notify(
                    format!("training data set to {}; press Start", path.display()),
                    false,
                );
            }
            Pick::Weights => {
                self.weights_field = path.display().to_string();
                self.load_weights(&path, None);
            }
            Pick::Picture => {
                self.image_field = path.display().to_string();
                self.load_image(&path, None);
            }
            Pick::RunFolder => self.settings.train.run_dir = path,
            Pick::Csv => self.write_csv(&path),
        }
    }

    /// Opens the page's file picker for weights or a picture; the file is read and handled
    /// as a dropped one.
    #[cfg(target_arch = "wasm32")]
    fn browse_web(&mut self, ctx: &egui::Context, pick: dialogs::Pick) {
        let spec = dialogs::spec(pick, "");
        self.picked.push(Task::spawn(
            ctx,
            async move { dialogs::browser(spec).await },
        ));
    }

    /// Loads backbone weights into the inspect view; a bad file is refused with the reason.
    /// A path (native) is read on its own thread, so a large file or a download never stalls
    /// the window: the model arrives in a later frame ([`DinoscopeApp::weights_loading`]).
    pub fn load_weights(&mut self, path: &std::path::Path, bytes: Option<Vec<u8>>) {
        let name = path.display().to_string();
        let dtype = self.inspect_dtype();
        match bytes {
            Some(b) => {
                let result = crate::infer::load_model_bytes(self.gpu, &name, &b, dtype);
                self.weights_loaded(path, result);
            }
            #[cfg(not(target_arch = "wasm32"))]
            None => {
                let gpu = self.gpu;
                let ctx = self.wake_ctx();
                let p = path.to_path_buf();
                let (tx, rx) = std::sync::mpsc::channel();
                let spawned = std::thread::Builder::new()
                    .name("load-weights".into())
                    .spawn(move || {
                        let file = if p.is_dir() {
                            Ok(p.join("teacher_backbone.safetensors"))
                        } else {
                            // A repository id (facebook/dinov2-small): the Hugging Face cache,
                            // or a download into it.
                            crate::hub::resolve_weights(&p, None)
                        };
                        let result =
                            file.and_then(|f| crate::infer::load_model_as(gpu, &f, None, dtype));
                        let _ = tx.send(result);
                        ctx.request_repaint();
                    });
                match spawned {
                    Ok(_) => {
                        self.inspect.error = None;
                        self.loading = Some((path.to_path_buf(), rx));
                    }
                    Err(e) => self.weights_loaded(path, Err(format!("{name}: {e}"))),
                }
            }
            #[cfg(target_arch = "wasm32")]
            None => self.weights_loaded(
                path,
                Err(format!("{name}: drop the file on the page to open it")),
            ),
        }
    }

    /// Whether weights are still being read.
    pub fn weights_loading(&self) -> bool {
        #[cfg(not(target_arch = "wasm32"))]
        return self.loading.is_some();
        #[cfg(target_arch = "wasm32")]
        false
    }

    /// Takes the model a loading thread finished, if any.
    #[cfg(not(target_arch = "wasm32"))]
    fn poll_loading(&mut self) {
        let Some((path, rx)) = &self.loading else {
            return;
        };
        let result = match rx.try_recv() {
            Ok(r) => r,
            Err(std::sync::mpsc::TryRecvError::Empty) => return,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                Err(format!("{}: the loading thread stopped", path.display()))
            }
        };
        let path = path.clone();
        self.loading = None;
        self.weights_loaded(&path, result);
    }

    /// Takes a loaded model into the inspect view, or reports why it was refused.
    fn weights_loaded(&mut self, path: &std::path::Path, result: Result<Vit, String>) {
        let name = path.display().to_string();
        match result {
            Ok(vit) => {
                let c = &vit.cfg;
                self.notify(
                    format!(
                        "loaded {name}: width {}, depth {}, heads {}, patch {}",
                        c.dim, c.depth, c.heads, c.patch
                    ),
                    false,
                );
                self.inspect.set_model(vit, name);
                self.settings.weights = Some(path.to_path_buf());
            }
            Err(e) => {
                self.inspect.error = Some(format!("weights refused: {e}"));
                self.notify(format!("weights refused: {e}"), true);
            }
        }
    }

    /// The storage precision the Inspect view loads models in (f32 where the adapter has no
    /// SHADER_F16, whatever the setting).
    pub fn inspect_dtype(&self) -> crate::gpu::DType {
        if self.settings.half && self.gpu.features.contains(wgpu::Features::SHADER_F16) {
            crate::gpu::DType::F16
        } else {
            crate::gpu::DType::F32
        }
    }

    /// Switches the Inspect model's storage precision to the setting's.
    pub fn apply_precision(&mut self) {
        let dtype = self.inspect_dtype();
        let Some((vit, name)) = self.inspect.model.clone() else {
            return;
        };
        if vit.dtype() == dtype {
            return;
        }
        #[cfg(not(target_arch = "wasm32"))]
        match vit.to_dtype(self.gpu, dtype) {
            Ok(v) => self.inspect.set_model(v, name),
            Err(e) => self.notify(format!("{name}: {e}"), true),
        }
        #[cfg(target_arch = "wasm32")]
        self.notify(format!("open {name} again to load it in {dtype:?}"), false);
    }

    /// Loads a picture into the inspect view; a bad one is refused with the reason.
    pub fn load_image(&mut self, path: &std::path::Path, bytes: Option<Vec<u8>>) {
        let name = path.display().to_string();
        let bytes = match bytes {
            Some(b) => Ok(b),
            None => std::fs::read(path).map_err(|e| format!("{name}: cannot read: {e}")),
        };
        match bytes.and_then(|b| self.inspect.set_image_bytes(&name, &b)) {
            Ok(()) => {
                self.inspect.error = None;
                self.settings.image = Some(path.to_path_buf());
            }
            Err(e) => {
                self.inspect.error = Some(format!("picture refused: {e}"));
                self.notify(format!("picture refused: {e}"), true);
            }
        }
    }

    /// One frame of the whole UI.
    pub fn show(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        self.set_waker(&ctx);
        self.poll_training();
        #[cfg(not(target_arch = "wasm32"))]
        self.poll_loading();
        #[cfg(target_arch = "wasm32")]
        self.step_web(&ctx);
        let files: Vec<egui::DroppedFileHandle> = ctx.input(|i| i.raw.dropped_files.clone());
        #[cfg(not(target_arch = "wasm32"))]
        if !files.is_empty() {
            // Native drops carry paths; the loaders read the files themselves.
            self.handle_dropped(
                files
                    .iter()
                    .map(|f| (f.path().to_path_buf(), None))
                    .collect(),
            );
        }
        #[cfg(target_arch = "wasm32")]
        {
            // The browser hands over file contents asynchronously.
            for f in files {
                let path = f.path().to_path_buf();
                self.dropped_reads.push(Task::spawn(
                    &ctx,
                    async move { (path, f.bytes_async().await) },
                ));
            }
            let mut ready = Vec::new();
            self.dropped_reads.retain(|t| match t.take() {
                Some(r) => {
                    ready.push(r);
                    false
                }
                None => true,
            });
            for (path, bytes) in ready {
                match bytes {
                    Ok(b) => self.handle_dropped(vec![(path, Some(b))]),
                    Err(e) => self.notify(format!("{}: cannot read: {e}", path.display()), true),
                }
            }
            let mut chosen = Vec::new();
            self.picked.retain(|t| match t.take() {
                Some(r) => {
                    chosen.extend(r);
                    false
                }
                None => true,
            });
            for (path, bytes) in chosen {
                self.handle_dropped(vec![(path, Some(bytes))]);
            }
        }
        self.inspect.update(self.gpu, &ctx);
        self.panel_rects.clear();

        egui::Panel::top("tabs").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.heading("dinoscope");
                ui.separator();
                ui.selectable_value(&mut self.tab, Tab::Train, "Train");
                ui.selectable_value(&mut self.tab, Tab::Inspect, "Inspect");
            });
        });
        egui::Panel::bottom("status").show(ui, |ui| self.status_bar(ui));
        if !self.notices.is_empty() {
            egui::Panel::bottom("notices")
                .resizable(true)
                .default_size(70.0)
                .show(ui, |ui| self.notices_panel(ui));
        }
        match self.tab {
            Tab::Train => {
                egui::Panel::left("train-settings")
                    .resizable(true)
                    .default_size(250.0)
                    .show(ui, |ui| {
                        egui::ScrollArea::vertical().show(ui, |ui| self.train_settings(ui));
                    });
                egui::CentralPanel::default().show(ui, |ui| self.train_central(ui));
            }
            Tab::Inspect => {
                egui::Panel::left("inspect-settings")
                    .resizable(true)
                    .default_size(250.0)
                    .show(ui, |ui| self.inspect_settings(ui));
                egui::CentralPanel::default().show(ui, |ui| {
                    egui::ScrollArea::both().show(ui, |ui| {
                        if let Some(e) = &self.inspect.error {
                            ui.colored_label(egui::Color32::LIGHT_RED, e);
                        }
                        self.inspect.show_maps(ui, self.settings.alpha);
                    })
                });
            }
        }
        if self.running() || self.inspect.busy() || self.weights_loading() {
            ctx.request_repaint_after(std::time::Duration::from_millis(100));
        }
        self.automate(&ctx);
        #[cfg(target_arch = "wasm32")]
        web::publish_status(self, ctx.pixels_per_point());
    }

    fn wake_ctx(&self) -> egui::Context {
        self.wake
            .lock()
            .ok()
            .and_then(|w| w.clone())
            .unwrap_or_default()
    }

    fn set_waker(&mut self, ctx: &egui::Context) {
        if let Ok(mut w) = self.wake.lock() {
            if w.is_none() {
                *w = Some(ctx.clone());
            }
        }
    }

    fn status_bar(&self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            let info = &self.gpu.info;
            ui.label(format!("{} · {:?}", info.name, info.backend));
            ui.separator();
            let s = self.gpu.pool_stats();
            ui.label(format!(
                "GPU memory {:.0} MiB (peak {:.0})",
                (s.live_bytes + s.cached_bytes) as f64 / 1048576.0,
                s.peak_bytes as f64 / 1048576.0
            ));
            ui.separator();
            let (done, total) = self.progress;
            ui.label(format!("{:?} · step {done}/{total}", self.state));
            if self.running() {
                let ips = self.throughput();
                ui.separator();
                ui.label(format!("{ips:.1} img/s"));
                if let Some(t0) = self.run_started {
                    let did = done.saturating_sub(self.steps_at_start);
                    if did > 0 && total > done {
                        let per = t0.elapsed().as_secs_f64() / did as f64;
                        ui.separator();
                        ui.label(format!("ETA {}", fmt_duration(per * (total - done) as f64)));
                    }
                }
            }
            if let Some(&(_, acc)) = self.history.knn.last() {
                ui.separator();
                ui.label(format!("k-NN {:.1}%", 100.0 * acc));
            }
            if let Some(&(_, acc)) = self.history.probe.last() {
                ui.label(format!("· linear probe {:.1}%", 100.0 * acc));
            }
        });
    }

    fn notices_panel(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.label(egui::RichText::new("Messages").strong());
            if ui.small_button("clear").clicked() {
                self.notices.clear();
            }
        });
        egui::ScrollArea::vertical()
            .stick_to_bottom(true)
            .show(ui, |ui| {
                for n in &self.notices {
                    if n.error {
                        ui.colored_label(egui::Color32::LIGHT_RED, &n.text);
                    } else {
                        ui.label(&n.text);
                    }
                }
            });
    }

    fn train_settings(&mut self, ui: &mut egui::Ui) {
        let idle = !self.running();
        ui.heading("Data");
        ui.add_enabled_ui(idle, |ui| {
            ui.label("Image folder or IDX file (empty: bundled Fashion-MNIST). Drop one here.");
            ui.text_edit_singleline(&mut self.data_field);
            ui.horizontal_wrapped(|ui| {
                #[cfg(not(target_arch = "wasm32"))]
                {
                    if ui.button("Folder…").clicked() {
                        self.browse(dialogs::Pick::DataFolder);
                    }
                    if ui.button("IDX file…").clicked() {
                        self.browse(dialogs::Pick::DataFile);
                    }
                }
                if ui.button("Use bundled Fashion-MNIST").clicked() {
                    self.data_field.clear();
                }
            });
        });
        ui.separator();
        ui.heading("Model and recipe");
        #[cfg_attr(target_arch = "wasm32", allow(unused_mut))]
        let mut choose_run = false;
        let t = &mut self.settings.train;
        ui.add_enabled_ui(idle, |ui| {
            egui::ComboBox::from_label("preset")
                .selected_text(t.preset.clone())
                .show_ui(ui, |ui| {
                    for p in crate::train::config::TRAIN_PRESETS {
                        if ui.selectable_label(t.preset == p, p).clicked() {
                            t.preset = p.to_string();
                            if let Ok(cfg) = crate::train::config::TrainConfig::preset(p) {
                                t.take_preset(&cfg);
                            }
                        }
                    }
                });
            egui::Grid::new("train-grid").num_columns(2).show(ui, |ui| {
                ui.label("width");
                egui::ComboBox::from_id_salt("width")
                    .selected_text(t.dim.to_string())
                    .show_ui(ui, |ui| {
                        for w in [64, 128, 192, 384, 768] {
                            ui.selectable_value(&mut t.dim, w, w.to_string());
                        }
                    });
                ui.end_row();
                ui.label("depth");
                ui.add(egui::Slider::new(&mut t.depth, 1..=12));
                ui.end_row();
                ui.label("patch");
                ui.add(egui::Slider::new(&mut t.patch, 2..=16));
                ui.end_row();
                ui.label("prototypes");
                ui.add(egui::DragValue::new(&mut t.prototypes).range(2..=65536));
                ui.end_row();
                ui.label("batch");
                ui.add(egui::DragValue::new(&mut t.batch_size).range(2..=1024));
                ui.end_row();
                ui.label("base lr");
                ui.add(
                    egui::DragValue::new(&mut t.base_lr)
                        .speed(0.0005)
                        .range(0.0..=1.0),
                );
                ui.end_row();
                ui.label("global crop");
                ui.add(egui::DragValue::new(&mut t.global_size).range(4..=518));
                ui.end_row();
                ui.label("local crop");
                ui.add(egui::DragValue::new(&mut t.local_size).range(2..=224));
                ui.end_row();
                ui.label("local crops");
                ui.add(egui::Slider::new(&mut t.n_local, 0..=10));
                ui.end_row();
                ui.label("steps");
                ui.add(egui::DragValue::new(&mut t.steps).range(1..=10_000_000));
                ui.end_row();
                ui.label("k-NN every");
                ui.add(egui::DragValue::new(&mut t.eval_every).range(0..=100_000));
                ui.end_row();
                ui.label("maps every");
                ui.add(egui::DragValue::new(&mut t.snapshot_every).range(1..=100_000));
                ui.end_row();
                ui.label("checkpoint every");
                ui.add(egui::DragValue::new(&mut t.checkpoint_every).range(0..=100_000));
                ui.end_row();
                ui.label("precision");
                let has_f16 = self.gpu.features.contains(wgpu::Features::SHADER_F16);
                ui.add_enabled(has_f16, egui::Checkbox::new(&mut t.mixed, "mixed (f16)"))
                    .on_hover_text(
                        "f16 forward passes and saved activations, f32 gradients and weights: \
                         less memory per step",
                    )
                    .on_disabled_hover_text("this adapter has no SHADER_F16");
                ui.end_row();
            });
            #[cfg(not(target_arch = "wasm32"))]
            {
                ui.label("run folder");
                let mut dir = t.run_dir.display().to_string();
                if ui.text_edit_singleline(&mut dir).changed() {
                    t.run_dir = dir.into();
                }
                choose_run = ui.button("Choose…").clicked();
            }
        });
        #[cfg(not(target_arch = "wasm32"))]
        if choose_run {
            self.browse(dialogs::Pick::RunFolder);
        }
        #[cfg(target_arch = "wasm32")]
        let _ = choose_run;
        if let Ok(cfg) = self.settings.train.to_config() {
            let (line, bad) = self.memory.line(self.gpu, &cfg, self.memory_budget);
            let color = if bad {
                ui.visuals().error_fg_color
            } else {
                ui.visuals().weak_text_color()
            };
            ui.colored_label(color, line);
        }
        self.diagnosis_panel(ui);
        ui.checkbox(
            &mut self.settings.autostart,
            "start training when the app opens",
        );
        ui.separator();
        ui.horizontal_wrapped(|ui| match self.state {
            RunState::Idle | RunState::Ended => {
                if ui.button("Start").clicked() {
                    self.start(None);
                }
                #[cfg(not(target_arch = "wasm32"))]
                if ui
                    .button("Resume run folder")
                    .on_hover_text("continue from the checkpoint in the run folder")
                    .clicked()
                {
                    let dir = self.settings.train.run_dir.clone();
                    self.start(Some(dir));
                }
            }
            RunState::Starting => {
                ui.spinner();
                ui.label("starting…");
            }
            RunState::Running | RunState::Paused => {
                if self.state == RunState::Running {
                    if ui.button("Pause").clicked() {
                        self.control("pause");
                    }
                } else if ui.button("Resume").clicked() {
                    self.control("resume");
                }
                #[cfg(not(target_arch = "wasm32"))]
                if ui.button("Save checkpoint").clicked() {
                    self.control("save");
                }
                if ui.button("Stop").clicked() {
                    self.control("stop");
                }
            }
        });
    }

    fn train_central(&mut self, ui: &mut egui::Ui) {
        let full = ui.available_size();
        ui.horizontal(|ui| {
            ui.checkbox(&mut self.settings.log_scale, "log scale");
            ui.add(egui::Slider::new(&mut self.settings.smoothing, 0.0..=0.99).text("smoothing"));
            if ui.button("Export CSV").clicked() {
                self.export_csv();
            }
            #[cfg(not(target_arch = "wasm32"))]
            if ui.button("Export CSV as…").clicked() {
                self.browse(dialogs::Pick::Csv);
            }
        });
        let curves_h = (full.y * 0.5).max(180.0);
        let top = ui.available_rect_before_wrap();
        let w = ((ui.available_width() - 40.0) / 3.0).max(150.0);
        egui::ScrollArea::vertical()
            .id_salt("curves")
            .max_height(curves_h)
            .show(ui, |ui| {
                let plot_h = (curves_h / 2.0 - 48.0).max(90.0);
                egui::Grid::new("curves-grid")
                    .num_columns(3)
                    .show(ui, |ui| {
                        for (i, (title, series)) in curves::PLOTS.iter().enumerate() {
                            let no_knn = series.first() == Some(&"knn")
                                && !self.knn_expected
                                && self.history.knn.is_empty()
                                && self.state != RunState::Idle;
                            ui.vertical(|ui| {
                                if no_knn {
                                    ui.label(egui::RichText::new(*title).strong());
                                    ui.allocate_ui(egui::vec2(w, plot_h), |ui| {
                                        ui.label(if cfg!(target_arch = "wasm32") {
                                            "k-NN and linear-probe accuracy are measured in the desktop app."
                                        } else {
                                            "k-NN and linear-probe accuracy are measured on the bundled Fashion-MNIST set."
                                        });
                                    });
                                    return;
                                }
                                curves::plot(
                                    ui,
                                    &self.history,
                                    title,
                                    series,
                                    self.settings.log_scale && i != 1,
                                    self.settings.smoothing,
                                    w,
                                    plot_h,
                                );
                            });
                            if i % 3 == 2 {
                                ui.end_row();
                            }
                        }
                    });
            });
        let mut curves_rect = top;
        curves_rect.max.y = ui.min_rect().max.y;
        self.panel_rects.push(("curves".into(), curves_rect));
        ui.separator();
        let probes_top = ui.available_rect_before_wrap();
        self.probe_grid(ui);
        let mut probes_rect = probes_top;
        probes_rect.max.y = ui.min_rect().max.y;
        self.panel_rects.push(("attention".into(), probes_rect));
    }

    fn probe_grid(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.label(egui::RichText::new("Attention of the teacher's last layer").strong());
            let n = self.snapshots.len();
            if n > 1 {
                let mut idx = self.replay.unwrap_or(n - 1);
                let step = self.snapshots.get(idx).map_or(0, |s| s.step);
                if ui
                    .add(
                        egui::Slider::new(&mut idx, 0..=n - 1).text(format!("replay: step {step}")),
                    )
                    .changed()
                {
                    self.replay = if idx + 1 == n { None } else { Some(idx) };
                }
                if self.replay.is_some() && ui.button("live").clicked() {
                    self.replay = None;
                }
            }
        });
        let Some(idx) = self.replay.or(self.snapshots.len().checked_sub(1)) else {
            ui.label("The first maps appear once the run has started.");
            return;
        };
        let step = self.snapshots[idx].step;
        let key = (idx, step);
        if self.probe_textures.as_ref().is_none_or(|(k, _)| *k != key) {
            let snap = &self.snapshots[idx];
            let ctx = ui.ctx().clone();
            let rows: Vec<Vec<egui::TextureHandle>> = snap
                .views
                .iter()
                .zip(&self.probe_images)
                .enumerate()
                .map(|(r, (v, img))| {
                    let mut kinds = vec![MapKind::Image, MapKind::Mean];
                    kinds.extend((0..v.heads.len()).map(MapKind::Head));
                    kinds.push(MapKind::Thresholded);
                    kinds.push(MapKind::Pca);
                    kinds
                        .iter()
                        .enumerate()
                        .map(|(c, k)| {
                            texture(&ctx, &format!("probe-{r}-{c}"), &render(v, img, *k, 0.6))
                        })
                        .collect()
                })
                .collect();
            self.probe_textures = Some((key, rows));
        }
        let Some((_, rows)) = &self.probe_textures else {
            return;
        };
        let heads = rows.first().map_or(0, |r| r.len().saturating_sub(4));
        let cols = rows.first().map_or(1, |r| r.len()).max(1);
        // Fit every probe in view when the window allows (probes side by side in groups when
        // it is wide); scroll otherwise.
        let n = rows.len().max(1);
        let avail = ui.available_size();
        let groups = ((avail.x / (cols as f32 * 64.0)) as usize).clamp(1, n);
        let per_group = n.div_ceil(groups);
        let by_width = (avail.x - 32.0 * groups as f32) / (cols * groups) as f32 - 6.0;
        let by_height = (avail.y - 24.0) / per_group as f32 - 4.0;
        let side = by_width.min(by_height.max(40.0)).clamp(32.0, 112.0);
        egui::ScrollArea::both().id_salt("probes").show(ui, |ui| {
            egui::Grid::new("probe-grid")
                .spacing([4.0, 4.0])
                .show(ui, |ui| {
                    for g in 0..groups {
                        ui.label("image");
                        ui.label("mean");
                        for h in 0..heads {
                            ui.label(format!("head {h}"));
                        }
                        ui.label("60% mass");
                        ui.label("PCA");
                        if g + 1 < groups {
                            ui.label("");
                        }
                    }
                    ui.end_row();
                    for r in 0..per_group {
                        for g in 0..groups {
                            match rows.get(g * per_group + r) {
                                Some(row) => {
                                    for t in row {
                                        ui.image((t.id(), egui::vec2(side, side)));
                                    }
                                }
                                None => {
                                    for _ in 0..cols {
                                        ui.label("");
                                    }
                                }
                            }
                            if g + 1 < groups {
                                ui.label("");
                            }
                        }
                        ui.end_row();
                    }
                });
        });
    }

    fn export_csv(&mut self) {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let path = self.settings.train.run_dir.join("curves.csv");
            self.write_csv(&path);
        }
        #[cfg(target_arch = "wasm32")]
        web::download("dinoscope-curves.csv", &self.history.to_csv());
    }

    /// Writes the curves as CSV to `path` (its folder made if missing).
    #[cfg(not(target_arch = "wasm32"))]
    fn write_csv(&mut self, path: &std::path::Path) {
        let csv = self.history.to_csv();
        let r = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(dir) => std::fs::create_dir_all(dir),
            None => Ok(()),
        }
        .and_then(|_| crate::io::write_atomic(path, csv.as_bytes()));
        match r {
            Ok(()) => self.notify(format!("curves written to {}", path.display()), false),
            Err(e) => self.notify(format!("{}: cannot write: {e}", path.display()), true),
        }
    }

    fn inspect_settings(&mut self, ui: &mut egui::Ui) {
        ui.heading("Weights");
        ui.label("A run folder, our teacher_backbone.safetensors, a Hugging Face DINOv2 or DINOv3 model.safetensors, or a repository id in the Hugging Face cache (facebook/dinov2-small). Drop one here.");
        #[cfg(not(target_arch = "wasm32"))]
        {
            ui.text_edit_singleline(&mut self.weights_field);
            let idle = !self.weights_loading();
            ui.horizontal(|ui| {
                if ui
                    .add_enabled(idle, egui::Button::new("Load weights"))
                    .clicked()
                {
                    let p = std::path::PathBuf::from(self.weights_field.trim());
                    self.load_weights(&p, None);
                }
                if ui.add_enabled(idle, egui::Button::new("Open…")).clicked() {
                    self.browse(dialogs::Pick::Weights);
                }
            });
            if let Some((p, _)) = &self.loading {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label(format!("loading {}…", p.display()));
                });
            }
        }
        #[cfg(target_arch = "wasm32")]
        if ui.button("Open weights…").clicked() {
            self.browse_web(ui.ctx(), dialogs::Pick::Weights);
        }
        let has_f16 = self.gpu.features.contains(wgpu::Features::SHADER_F16);
        let r = ui
            .add_enabled(
                has_f16,
                egui::Checkbox::new(&mut self.settings.half, "f16 (half the memory)"),
            )
            .on_hover_text(
                "Store the weights and activations as 16-bit floats (computed in f32): maps \
                 within 1% of f32's",
            )
            .on_disabled_hover_text("this adapter has no SHADER_F16");
        if r.changed() {
            self.apply_precision();
        }
        if let Some((m, name)) = &self.inspect.model {
            ui.label(format!(
                "{name}\nwidth {} · depth {} · heads {} · patch {} · {}",
                m.cfg.dim,
                m.cfg.depth,
                m.cfg.heads,
                m.cfg.patch,
                match m.dtype() {
                    crate::gpu::DType::F32 => "f32",
                    crate::gpu::DType::F16 => "f16",
                }
            ));
        }
        ui.separator();
        ui.heading("Picture");
        #[cfg(not(target_arch = "wasm32"))]
        {
            ui.text_edit_singleline(&mut self.image_field);
            ui.horizontal(|ui| {
                if ui.button("Open picture").clicked() {
                    let p = std::path::PathBuf::from(self.image_field.trim());
                    self.load_image(&p, None);
                }
                if ui.button("Open…").clicked() {
                    self.browse(dialogs::Pick::Picture);
                }
            });
        }
        #[cfg(target_arch = "wasm32")]
        if ui.button("Open picture…").clicked() {
            self.browse_web(ui.ctx(), dialogs::Pick::Picture);
        }
        ui.horizontal(|ui| {
            ui.label("size");
            let r = ui.add(egui::DragValue::new(&mut self.inspect.size).range(28..=1036));
            if r.lost_focus() || r.drag_stopped() {
                if let Err(e) = self.inspect.reprocess() {
                    self.inspect.error = Some(format!("picture refused: {e}"));
                }
            }
        });
        ui.separator();
        ui.heading("View");
        if let Some((m, _)) = &self.inspect.model {
            let depth = m.cfg.depth;
            let heads = m.cfg.heads;
            let before = self.inspect.layer;
            ui.add(egui::Slider::new(&mut self.inspect.layer, 0..=depth - 1).text("layer"));
            if before != self.inspect.layer {
                self.inspect.error = None;
            }
            egui::ComboBox::from_label("head")
                .selected_text(match self.inspect.head {
                    None => "mean".to_string(),
                    Some(h) => format!("head {h}"),
                })
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut self.inspect.head, None, "mean");
                    for h in 0..heads {
                        ui.selectable_value(&mut self.inspect.head, Some(h), format!("head {h}"));
                    }
                });
        }
        ui.add(egui::Slider::new(&mut self.settings.alpha, 0.0..=1.0).text("overlay"));
    }

    fn automate(&mut self, ctx: &egui::Context) {
        let Some(path) = self.automation.screenshot.clone() else {
            return;
        };
        let failed = self.state == RunState::Ended && self.progress.0 < self.automation.after_steps;
        if failed {
            eprintln!(
                "automation: training ended before {} steps",
                self.automation.after_steps
            );
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            return;
        }
        let ready = self.progress.0 >= self.automation.after_steps
            && self.snapshots.last().is_some_and(|s| s.step > 0);
        if !ready || self.screenshot_requested {
            return;
        }
        self.screenshot_requested = true;
        let rects: Vec<(String, [f32; 4])> = self
            .panel_rects
            .iter()
            .map(|(n, r)| (n.clone(), [r.min.x, r.min.y, r.max.x, r.max.y]))
            .collect();
        let ppp = ctx.pixels_per_point();
        let step = self.progress.0;
        let knn = self.history.knn.last().map(|k| k.1);
        let probe = self.history.probe.last().map(|k| k.1);
        let ctx2 = ctx.clone();
        ctx.send_viewport_cmd(egui::ViewportCommand::Screenshot(
            egui::ScreenshotCallback::new(move |img| {
                let rgb: Vec<u8> = img.pixels.iter().flat_map(|c| [c.r(), c.g(), c.b()]).collect();
                let saved = image::RgbImage::from_raw(img.size[0] as u32, img.size[1] as u32, rgb)
                    .ok_or_else(|| "bad screenshot size".to_string())
                    .and_then(|im| crate::viz::save_png(&im, &path).map_err(|e| e.to_string()));
                let meta = serde_json::json!({
                    "step": step,
                    "knn": knn,
                    "probe": probe,
                    "pixels_per_point": ppp,
                    "panels": rects.iter().map(|(n, r)| (n.clone(), r.to_vec())).collect::<std::collections::BTreeMap<_, _>>(),
                });
                let meta_path = path.with_extension("json");
                let _ = std::fs::write(&meta_path, meta.to_string());
                match saved {
                    Ok(()) => println!("screenshot {} at step {step}", path.display()),
                    Err(e) => eprintln!("screenshot failed: {e}"),
                }
                ctx2.send_viewport_cmd(egui::ViewportCommand::Close);
            }),
        ));
    }
}

fn fmt_duration(s: f64) -> String {
    let s = s.max(0.0) as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

impl eframe::App for DinoscopeApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, STORAGE_KEY, &self.settings);
    }
}

/// Opens the window (native). Errors when no display or no GPU is available.
#[cfg(not(target_arch = "wasm32"))]
pub fn run_native(reset: bool, automation: Automation) -> Result<(), String> {
    let no_display = std::env::var_os("DISPLAY").is_none()
        && std::env::var_os("WAYLAND_DISPLAY").is_none()
        && cfg!(target_os = "linux");
    if no_display {
        return Err(
            "no display found (DISPLAY and WAYLAND_DISPLAY are unset): the app needs a \
                    window. Train without one with `dinoscope train`, or see `dinoscope --help`."
                .into(),
        );
    }
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("dinoscope")
            .with_app_id("dinoscope")
            .with_inner_size([1280.0, 800.0]),
        renderer: eframe::Renderer::Wgpu,
        wgpu_options: wgpu_options(),
        ..Default::default()
    };
    eframe::run_native(
        "dinoscope",
        options,
        Box::new(move |cc| {
            DinoscopeApp::from_creation_context(cc, reset, automation)
                .map(|a| Box::new(a) as Box<dyn eframe::App>)
                .map_err(|e| e.into())
        }),
    )
    .map_err(|e| format!("the window could not open: {e}"))
}

/// The runtime's device: eframe's own, except on native GL. wgpu's GL backend lets one thread at
/// a time hold the GL context and panics when another waits for it over a second; the window's
/// renderer does not take turns with the runtime's worker, so on GL the runtime opens a device
/// (and GL context) of its own.
fn compute_gpu(rs: &eframe::egui_wgpu::RenderState) -> Result<Gpu, String> {
    let info = rs.adapter.get_info();
    #[cfg(not(target_arch = "wasm32"))]
    if info.backend == wgpu::Backend::Gl {
        return Gpu::new_blocking(&crate::gpu::AdapterChoice {
            backend: Some("gl".into()),
            adapter: None,
        })
        .map_err(|e| format!("cannot open a compute device on GL: {e}"));
    }
    Ok(Gpu::from_device(rs.device.clone(), rs.queue.clone(), info))
}
