//! The dinoscope window (eframe, wgpu renderer): train a ViT with DINO and watch its loss,
//! k-NN accuracy and attention maps as it learns, or inspect a trained model's attention.
//!
//! The runtime shares eframe's wgpu device: [`Gpu::device_descriptor`] asks for the adapter's own
//! limits and the features the kernels use, and [`DinoscopeApp::new`] wraps that device in a
//! [`Gpu`] (on GL the runtime opens a device of its own: `compute_gpu`). On native a worker
//! thread owns the training loop ([`worker`]); in the browser the app steps within a per-frame
//! time budget (`web`).

pub mod curves;
pub mod dialogs;
mod files;
pub mod images;
pub mod inspect;
mod inspect_view;
pub mod memory;
mod run_control;
pub mod session;
pub mod settings;
mod train_view;
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

    /// Runs a future off the UI thread: on native on a thread of its own (a forward pass of a
    /// large model takes seconds, and the device may be busy with training steps), in the
    /// browser as [`Task::spawn`] does. The UI is asked to repaint when it is done.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn spawn_off(
        ctx: &egui::Context,
        fut: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Self
    where
        T: Send,
    {
        let slot = Arc::new(Mutex::new(None));
        let (s2, ctx) = (slot.clone(), ctx.clone());
        type Job = Box<dyn FnOnce() + Send>;
        let run: Job = Box::new(move || {
            let v = pollster::block_on(fut);
            if let Ok(mut s) = s2.lock() {
                *s = Some(v);
            }
            ctx.request_repaint();
        });
        // Kept here too, so that a thread that cannot be made leaves the work to this one.
        let job = Arc::new(Mutex::new(Some(run)));
        let take = |j: &Mutex<Option<Job>>| j.lock().ok().and_then(|mut g| g.take());
        let theirs = job.clone();
        let spawned = std::thread::Builder::new()
            .name("dinoscope-work".into())
            .spawn(move || take(&theirs).into_iter().for_each(|f| f()));
        if let Err(e) = spawned {
            log::warn!("no thread for the work ({e}); it runs on the UI thread");
            take(&job).into_iter().for_each(|f| f());
        }
        Task(slot)
    }

    /// [`Task::spawn`] (the browser has no threads to move work to).
    #[cfg(target_arch = "wasm32")]
    pub fn spawn_off(
        ctx: &egui::Context,
        fut: impl std::future::Future<Output = T> + 'static,
    ) -> Self {
        Task::spawn(ctx, fut)
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
    /// Set when the automated run could not do what it was asked (no run started, or it ended
    /// before `after_steps`), so the process exits with a failure.
    pub failed: std::sync::Arc<std::sync::atomic::AtomicBool>,
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
    /// A dropped checkpoint's config and state, and the metrics log it carried, for the run
    /// that resumes from it.
    #[cfg(target_arch = "wasm32")]
    web_resume: Option<(session::Origin, Vec<serde_json::Value>)>,
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
            inspect: Inspect::default(),
            weights_field,
            image_field,
            data_field,
            #[cfg(not(target_arch = "wasm32"))]
            worker: None,
            #[cfg(target_arch = "wasm32")]
            web: None,
            #[cfg(target_arch = "wasm32")]
            web_resume: None,
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

    /// The app eframe creates: its device wrapped (see `compute_gpu`), settings restored.
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
        // Tuned matmul plans of this adapter, if `dinoscope tune` ran on it, and its tile for
        // large products and f16 attention (`tune::calibrate_first_run`).
        #[cfg(not(target_arch = "wasm32"))]
        if let Err(e) = crate::tune::load(&gpu) {
            log::warn!("{e}");
        }
        #[cfg(not(target_arch = "wasm32"))]
        match crate::tune::calibrate_first_run(&gpu) {
            Ok(lines) => lines.iter().for_each(|l| log::info!("{l}")),
            Err(e) => log::warn!("{e}"),
        }
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
        #[cfg(target_arch = "wasm32")]
        web::share(app.gpu, &cc.egui_ctx);
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
        if web::take_start_request() {
            self.tab = Tab::Train;
            self.start(None);
        }
        #[cfg(target_arch = "wasm32")]
        for what in web::take_control_requests() {
            self.control(&what);
        }
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
                // From the recent steps' pace: pauses, evaluations and checkpoints left out.
                let batch = self.judge.as_ref().map_or(0, |c| c.batch_size);
                if ips > 0.0 && batch > 0 && total > done {
                    let per = batch as f64 / ips as f64;
                    ui.separator();
                    ui.label(format!("ETA {}", fmt_duration(per * (total - done) as f64)));
                }
            }
            if let Some(scale) = self
                .history
                .points
                .last()
                .and_then(|p| p.metrics.loss_scale)
            {
                let skipped = self
                    .history
                    .points
                    .iter()
                    .filter(|p| p.metrics.skipped)
                    .count();
                ui.separator();
                ui.label(format!("loss scale {scale:.0} ({skipped} steps skipped)"))
                    .on_hover_text(
                        "mixed precision: the gradient entering the backbone is multiplied by \
                         this scale so that its f16 products keep small values; a step whose f16 \
                         gradients overflow is skipped and halves it",
                    );
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

    fn automate(&mut self, ctx: &egui::Context) {
        let Some(path) = self.automation.screenshot.clone() else {
            return;
        };
        // The run starts with the window, so a window still idle is one whose run was refused.
        let failed = (self.state == RunState::Ended
            && self.progress.0 < self.automation.after_steps)
            || self.state == RunState::Idle;
        if failed {
            eprintln!(
                "automation: training ended before {} steps",
                self.automation.after_steps
            );
            self.automation
                .failed
                .store(true, std::sync::atomic::Ordering::SeqCst);
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
        let failed = self.automation.failed.clone();
        ctx.send_viewport_cmd(egui::ViewportCommand::Screenshot(
            egui::ScreenshotCallback::new(move |img| {
                let rgb: Vec<u8> = img.pixels.iter().flat_map(|c| [c.r(), c.g(), c.b()]).collect();
                let png = image::RgbImage::from_raw(img.size[0] as u32, img.size[1] as u32, rgb)
                    .ok_or_else(|| "bad screenshot size".to_string())
                    .and_then(|im| crate::viz::png_bytes(&im).map_err(|e| e.to_string()));
                let meta = serde_json::json!({
                    "step": step,
                    "knn": knn,
                    "probe": probe,
                    "pixels_per_point": ppp,
                    "panels": rects.iter().map(|(n, r)| (n.clone(), r.to_vec())).collect::<std::collections::BTreeMap<_, _>>(),
                });
                let saved = png.and_then(|png| save_screenshot(&path, &png, &meta.to_string()));
                match saved {
                    // Unchecked: a closed stdout must not end the run before its checkpoint.
                    Ok(()) => {
                        use std::io::Write as _;
                        let _ = writeln!(
                            std::io::stdout(),
                            "screenshot {} at step {step}",
                            path.display()
                        );
                    }
                    Err(e) => {
                        use std::io::Write as _;
                        let _ = writeln!(std::io::stderr(), "screenshot failed: {e}");
                        failed.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                }
                ctx2.send_viewport_cmd(egui::ViewportCommand::Close);
            }),
        ));
    }
}

/// Writes the screenshot and its layout (`shot.png`, `shot.json`) both or neither, and only
/// where neither exists: the run checked that before it started, and a file made since is
/// still the user's.
fn save_screenshot(path: &std::path::Path, png: &[u8], layout: &str) -> Result<(), String> {
    let meta_path = path.with_extension("json");
    let taken = |p: &&std::path::Path| p.exists() || p.is_symlink();
    if let Some(there) = [path, meta_path.as_path()].into_iter().find(taken) {
        return Err(format!("{}: exists now; left as it is", there.display()));
    }
    let name = |p: &std::path::Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
            .ok_or_else(|| format!("{}: not a UTF-8 file name", p.display()))
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let (png_name, meta_name) = (name(path)?, name(&meta_path)?);
    crate::io::write_all_atomic(&dir, &[(&png_name, png), (&meta_name, layout.as_bytes())])
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

/// How the window closed (native).
#[cfg(not(target_arch = "wasm32"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// By the user or the automation.
    Normally,
    /// By Ctrl-C (or SIGTERM, SIGHUP) in the terminal.
    Interrupted,
    /// By the automation, which could not do what it was asked.
    Failed,
}

/// Opens the window (native). Errors when no display or no GPU is available.
#[cfg(not(target_arch = "wasm32"))]
pub fn run_native(reset: bool, automation: Automation) -> Result<Closed, String> {
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
    let interrupted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = interrupted.clone();
    let failed = automation.failed.clone();
    eframe::run_native(
        "dinoscope",
        options,
        Box::new(move |cc| {
            // Ctrl-C in the terminal closes the window as its close button does, so a training
            // run writes its checkpoint first.
            let ctx = cc.egui_ctx.clone();
            let closes = crate::train::interrupt::on_signal(
                "closing the window (a training run saves its checkpoint first)",
                move || {
                    flag.store(true, std::sync::atomic::Ordering::SeqCst);
                    ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                    ctx.request_repaint();
                },
            );
            if let Err(e) = closes {
                log::warn!("{e}");
            }
            DinoscopeApp::from_creation_context(cc, reset, automation)
                .map(|a| Box::new(a) as Box<dyn eframe::App>)
                .map_err(|e| e.into())
        }),
    )
    .map_err(|e| format!("the window could not open: {e}"))?;
    Ok(if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
        Closed::Interrupted
    } else if failed.load(std::sync::atomic::Ordering::SeqCst) {
        Closed::Failed
    } else {
        Closed::Normally
    })
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
    let mut gpu = Gpu::from_device(rs.device.clone(), rs.queue.clone(), info);
    gpu.adopt_coop(&rs.adapter);
    #[cfg(not(target_arch = "wasm32"))]
    if let Err(e) = crate::kernels::matmul::probe_coop(&mut gpu) {
        log::warn!("{e}; f16 products use the plain kernels");
    }
    Ok(gpu)
}
