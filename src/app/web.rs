//! Training in the browser: no threads, so the app submits steps from its frame callback within
//! a time budget, and readbacks resolve asynchronously while the page keeps drawing.

use super::session::{LogPoint, Session, Snapshot};
use super::settings::TrainSettings;
use super::Task;
use crate::gpu::Gpu;
use crate::train::run::Evaluation;
use crate::train::trainer::StepMetrics;
use eframe::egui;
use std::rc::Rc;

/// Milliseconds of a frame spent submitting training work.
pub const FRAME_BUDGET_MS: f64 = 12.0;

/// A submitted step: its metrics to come, when it was submitted, images skipped in its batch.
type InFlight = (Task<Result<StepMetrics, String>>, web_time::Instant, usize);

/// A checkpoint read back: the step it holds and its files (name, bytes).
pub type SavedFiles = (u64, Vec<(&'static str, Vec<u8>)>);

/// A checkpoint being read back.
type Saving = Task<Result<SavedFiles, String>>;

/// A running evaluation: after which step, since when, and its accuracies and seconds to come.
type Evaluating = (
    u64,
    web_time::Instant,
    Task<(Option<Result<Evaluation, String>>, f64)>,
);

/// A training run driven by the page's frames.
pub struct WebRun {
    /// The run.
    pub session: Rc<Session>,
    gpu: &'static Gpu,
    in_flight: Option<InFlight>,
    /// The throughput over the last steps.
    rate: crate::train::rate::StepRate,
    snapshot: Option<Task<Result<Snapshot, String>>>,
    snapshot_due: bool,
    evaluation: Option<Evaluating>,
    /// The step whose weights the next evaluation must see.
    evaluation_due: Option<u64>,
    /// Seconds of evaluation not yet counted beside the steps (a time limit plans its
    /// evaluations from them; counted once nothing else holds the session).
    evaluated_s: f64,
    saving: Option<Saving>,
    /// Which of the checkpoint's files the user asked to download, until a save starts.
    save_due: Vec<&'static str>,
    /// The run has ended or was stopped; it stays for downloads and takes no more steps.
    pub done: bool,
    /// Whether the ended run's time-limit schedule was settled ([`Session::fit_early`]).
    early_fit_tried: bool,
    /// Whether stepping is paused.
    pub paused: bool,
    /// Since when, while it is (a pause does not count toward a time limit).
    paused_since: Option<web_time::Instant>,
    /// Seconds paused not yet counted (counted once nothing else holds the session).
    held_s: f64,
    /// Seconds of the running evaluation spent paused: counted as a pause, not as evaluating.
    paused_in_eval_s: f64,
    /// The run's metrics log lines (those of the checkpoint it resumed, then its own), which
    /// its downloaded state carries: a browser run has no folder for `metrics.jsonl`.
    log: Vec<serde_json::Value>,
}

/// What a frame of stepping produced.
#[derive(Default)]
pub struct Progress {
    /// Finished steps.
    pub points: Vec<LogPoint>,
    /// A finished snapshot.
    pub snapshot: Option<Snapshot>,
    /// A finished evaluation, with the number of steps its weights had taken.
    pub evaluation: Option<(u64, Evaluation)>,
    /// A finished save: the step and the asked-for files (name, bytes).
    pub saved: Option<SavedFiles>,
    /// A problem that ends the run.
    pub error: Option<String>,
    /// A problem that does not.
    pub notice: Option<String>,
    /// The schedule the time limit chose.
    pub fitted: Option<crate::train::budget::Fit>,
    /// The run is complete.
    pub finished: bool,
}

impl Progress {
    /// Adds a message that does not end the run.
    fn note(&mut self, text: String) {
        self.notice = Some(match self.notice.take() {
            Some(earlier) => format!("{earlier}; {text}"),
            None => text,
        });
    }
}

impl WebRun {
    /// Sets a run up from `origin` (fresh from the settings, or a dropped checkpoint's state,
    /// with the metrics log lines it carried), on the bundled data (the only data in the
    /// browser).
    pub fn start(
        gpu: &'static Gpu,
        settings: &TrainSettings,
        origin: super::session::Origin,
        log: Vec<serde_json::Value>,
    ) -> Result<WebRun, String> {
        let mut s = settings.clone();
        s.data = super::settings::DataSource::Bundled;
        let session = Session::start(gpu, &s, origin, None)?;
        Ok(WebRun {
            session: Rc::new(session),
            gpu,
            in_flight: None,
            rate: Default::default(),
            snapshot: None,
            snapshot_due: false,
            evaluation: None,
            evaluation_due: None,
            evaluated_s: 0.0,
            saving: None,
            save_due: Vec::new(),
            done: false,
            early_fit_tried: false,
            paused: false,
            paused_since: None,
            held_s: 0.0,
            paused_in_eval_s: 0.0,
            log,
        })
    }

    /// The run's metrics log lines so far.
    pub fn log(&self) -> &[serde_json::Value] {
        &self.log
    }

    /// Advances the run: collects finished readbacks, then submits the next step when the
    /// previous one is read (one step in flight keeps the loss curve exact and memory flat).
    pub fn frame(&mut self, ctx: &egui::Context, snapshot_every: u64) -> Progress {
        let mut out = Progress::default();
        let t0 = web_time::Instant::now();
        if self.paused {
            self.paused_since.get_or_insert(t0);
        } else if let Some(since) = self.paused_since.take() {
            self.held_s += since.elapsed().as_secs_f64();
            self.paused_in_eval_s += self.pause_in_evaluation(since);
        }
        self.collect(&mut out);
        if self.done {
            // A step in flight when the run was stopped is read (logged and checked) before
            // any download holds the state.
            if let Err(e) = self.read_in_flight(snapshot_every, &mut out) {
                out.error = Some(e);
                return out;
            }
            if self.in_flight.is_some() {
                return out;
            }
            // A time-limited run stopped before its fit takes a schedule fitted from its pace,
            // which a download then holds: no download starts before that is settled (a
            // snapshot or evaluation still holding the session ends in a later frame).
            if !self.early_fit_tried {
                let Some(s) = Rc::get_mut(&mut self.session) else {
                    return out;
                };
                out.fitted = s.fit_early().or(out.fitted);
                self.early_fit_tried = true;
            }
            self.start_save(ctx);
            return out;
        }
        loop {
            if let Err(e) = self.read_in_flight(snapshot_every, &mut out) {
                out.error = Some(e);
                return out;
            }
            if self.in_flight.is_some() {
                break;
            }
            if self.snapshot_due && self.snapshot.is_none() {
                self.snapshot_due = false;
                let s = self.session.clone();
                self.snapshot = Some(Task::spawn(ctx, async move { s.snapshot().await }));
            }
            // While it runs it holds the session, so no step changes the weights it reads.
            if self.evaluation.is_none() {
                if let Some(step) = self.evaluation_due.take() {
                    self.evaluate(ctx, step);
                }
            }
            self.start_save(ctx);
            if self.paused || self.session.finished() {
                // While paused the time limit is not looked at: the pause is added to it when
                // it ends.
                let finished = match self.paused {
                    true => self.session.trainer.step >= self.session.config().steps,
                    false => self.session.finished(),
                };
                out.finished = finished
                    && self.snapshot.is_none()
                    && self.evaluation.is_none()
                    && self.evaluation_due.is_none()
                    && self.saving.is_none()
                    && self.save_due.is_empty();
                break;
            }
            if t0.elapsed().as_secs_f64() * 1000.0 > FRAME_BUDGET_MS {
                break;
            }
            match self.submit(ctx) {
                Ok(true) => {}
                // A snapshot still reads the teacher; step once it is done.
                Ok(false) => break,
                Err(e) => {
                    out.error = Some(e);
                    return out;
                }
            }
        }
        out
    }

    /// Reads the step in flight if its metrics are back.
    fn read_in_flight(&mut self, snapshot_every: u64, out: &mut Progress) -> Result<(), String> {
        let Some((task, started, skipped)) = &self.in_flight else {
            return Ok(());
        };
        let (started, skipped) = (*started, *skipped);
        let Some(r) = task.take() else {
            return Ok(());
        };
        self.in_flight = None;
        let m = r?;
        let dt = started.elapsed().as_secs_f64();
        self.read_step(m, dt, skipped, snapshot_every, out)
    }

    /// Whether a download is asked for or being read.
    pub fn saving(&self) -> bool {
        self.saving.is_some() || !self.save_due.is_empty()
    }

    /// Hands over the snapshot, evaluation and save that finished since the last frame, and
    /// lets the session know the time they and any pause took.
    fn collect(&mut self, out: &mut Progress) {
        if let Some(task) = &self.snapshot {
            if let Some(r) = task.take() {
                self.snapshot = None;
                match r {
                    Ok(s) => out.snapshot = Some(s),
                    Err(e) => out.note(format!("attention snapshot failed: {e}")),
                }
            }
        }
        if let Some((step, _, task)) = &self.evaluation {
            if let Some((r, seconds)) = task.take() {
                // A pause still going on counts in full when it ends.
                let ongoing = self
                    .paused_since
                    .map_or(0.0, |s| self.pause_in_evaluation(s));
                let paused = std::mem::take(&mut self.paused_in_eval_s) + ongoing;
                self.evaluated_s += (seconds - paused).max(0.0);
                match r {
                    Some(Ok(e)) => {
                        self.log.push(serde_json::json!({
                            "steps_done": *step,
                            "knn": e.knn,
                            "probe": e.probe,
                        }));
                        out.evaluation = Some((*step, e));
                    }
                    Some(Err(e)) => out.note(format!("evaluation failed: {e}")),
                    None => {}
                }
                self.evaluation = None;
            }
        }
        if let Some(s) = Rc::get_mut(&mut self.session) {
            if self.held_s > 0.0 {
                s.hold(std::mem::take(&mut self.held_s));
            }
            if self.evaluated_s > 0.0 {
                s.paused_for(std::mem::take(&mut self.evaluated_s), true);
            }
        }
        if let Some(task) = &self.saving {
            if let Some(r) = task.take() {
                self.saving = None;
                match r {
                    Ok(saved) => out.saved = Some(saved),
                    Err(e) => out.note(format!("checkpoint not saved: {e}")),
                }
            }
        }
    }

    /// A step's metrics are back after `dt` seconds: its curve point, and what is due after it.
    fn read_step(
        &mut self,
        mut m: StepMetrics,
        dt: f64,
        skipped: usize,
        snapshot_every: u64,
        out: &mut Progress,
    ) -> Result<(), String> {
        self.session.check_finite(&m)?;
        let batch = self.session.config().batch_size as f64;
        let done = m.step + 1;
        m.seconds = dt;
        self.log.push(serde_json::to_value(&m).unwrap_or_default());
        out.points.push(LogPoint {
            metrics: m,
            images_per_s: self.rate.push(batch, dt) as f32,
            skipped,
        });
        // While a snapshot holds the trainer, the fit waits for a later step.
        // Nothing is in flight here: the next step is submitted after this.
        if let Some(s) = Rc::get_mut(&mut self.session) {
            out.fitted = s.after_step(done, true).or(out.fitted);
        }
        if snapshot_every > 0 && done.is_multiple_of(snapshot_every) {
            self.snapshot_due = true;
        }
        let (eval_every, steps) = {
            let c = self.session.config();
            (c.eval_every, c.steps)
        };
        // The run's last step is measured too, as `dinoscope train` does.
        if (eval_every > 0 && done.is_multiple_of(eval_every)) || done == steps {
            self.evaluation_due = Some(done);
        }
        Ok(())
    }

    /// Records and submits the next step, its readback a task; false while a snapshot still
    /// holds the session.
    fn submit(&mut self, ctx: &egui::Context) -> Result<bool, String> {
        let Some(session) = Rc::get_mut(&mut self.session) else {
            return Ok(false);
        };
        let started = web_time::Instant::now();
        let (pending, skipped) = session.submit()?;
        let gpu = self.gpu;
        let task = Task::spawn(ctx, async move {
            pending
                .read(gpu)
                .await
                .map_err(|e| super::session::gpu_message(&e.to_string()))
        });
        self.in_flight = Some((task, started, skipped));
        Ok(true)
    }

    /// Takes the first snapshot (before any step) and, with evaluations on, the random
    /// features' accuracy: the baseline the curve climbs from.
    pub fn first_snapshot(&mut self, ctx: &egui::Context) {
        let s = self.session.clone();
        self.snapshot = Some(Task::spawn(ctx, async move { s.snapshot().await }));
        if self.session.config().eval_every > 0 && self.session.trainer.step == 0 {
            self.evaluate(ctx, 0);
        }
    }

    /// Asks for the checkpoint's files named in `files` (`state.safetensors`,
    /// `teacher_backbone.safetensors`, `export-hf.zip`), handed over in a later frame's [`Progress::saved`]. They
    /// are read between steps (a step still in flight is part of them).
    pub fn request_save(&mut self, files: &'static [&'static str]) {
        for f in files {
            if !self.save_due.contains(f) {
                self.save_due.push(f);
            }
        }
    }

    /// Starts the asked-for save unless one is running. It holds the session until its reads
    /// are done, so no step is submitted under it.
    fn start_save(&mut self, ctx: &egui::Context) {
        if self.saving.is_some() {
            return;
        }
        if self.save_due.is_empty() {
            return;
        }
        let files = std::mem::take(&mut self.save_due);
        let s = self.session.clone();
        // No step is in flight here, so the log holds every step the state has taken.
        let log: String = self.log.iter().map(|l| format!("{l}\n")).collect();
        self.saving = Some(Task::spawn(ctx, async move {
            use crate::train::checkpoint::{
                backbone_file, hf_archive, state_file, HF_ARCHIVE, STATE,
            };
            let (cfg, trainer) = (s.config(), &s.trainer);
            let mut out = Vec::new();
            for name in files {
                let bytes = if name == STATE {
                    state_file(cfg, trainer, Some(log.clone())).await?
                } else if name == HF_ARCHIVE {
                    hf_archive(cfg, trainer).await?
                } else {
                    backbone_file(cfg, trainer).await?
                };
                out.push((name, bytes));
            }
            Ok((trainer.step, out))
        }));
    }

    /// Starts an evaluation of the weights after `step` steps.
    fn evaluate(&mut self, ctx: &egui::Context, step: u64) {
        if !self.session.has_knn() {
            return;
        }
        let s = self.session.clone();
        // Timed inside the task: a frame that picks the result up late adds nothing to it.
        let task = Task::spawn(ctx, async move {
            let t = web_time::Instant::now();
            let r = s.evaluate().await;
            (r, t.elapsed().as_secs_f64())
        });
        self.evaluation = Some((step, web_time::Instant::now(), task));
    }

    /// Seconds of a pause from `since` until now that fell within the running evaluation.
    fn pause_in_evaluation(&self, since: web_time::Instant) -> f64 {
        match &self.evaluation {
            Some((_, started, _)) => since.max(*started).elapsed().as_secs_f64(),
            None => 0.0,
        }
    }
}

/// Offers bytes as a file download (a checkpoint's files).
pub fn download_bytes(name: &str, bytes: &[u8]) -> Result<(), String> {
    use wasm_bindgen::JsCast;
    let fail = |e: wasm_bindgen::JsValue| format!("{name}: download failed ({e:?})");
    let doc = web_sys::window()
        .and_then(|w| w.document())
        .ok_or_else(|| format!("{name}: no document to download from"))?;
    let parts = js_sys::Array::of1(&js_sys::Uint8Array::from(bytes));
    let opts = web_sys::BlobPropertyBag::new();
    opts.set_type("application/octet-stream");
    let blob =
        web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &opts).map_err(fail)?;
    let url = web_sys::Url::create_object_url_with_blob(&blob).map_err(fail)?;
    let a = doc
        .create_element("a")
        .map_err(fail)?
        .dyn_into::<web_sys::HtmlElement>()
        .map_err(|_| format!("{name}: download failed"))?;
    a.set_attribute("href", &url).map_err(fail)?;
    a.set_attribute("download", name).map_err(fail)?;
    a.click();
    // The download reads the object after this returns; it is freed a minute later.
    let window = web_sys::window().ok_or_else(|| format!("{name}: no window"))?;
    let revoke = wasm_bindgen::closure::Closure::once_into_js(move || {
        let _ = web_sys::Url::revoke_object_url(&url);
    });
    window
        .set_timeout_with_callback_and_timeout_and_arguments_0(revoke.unchecked_ref(), 60_000)
        .map(|_| ())
        .map_err(fail)
}

/// Offers text as a file download.
pub fn download(name: &str, text: &str) {
    use wasm_bindgen::JsCast;
    let Some(doc) = web_sys::window().and_then(|w| w.document()) else {
        return;
    };
    let href = format!(
        "data:text/csv;charset=utf-8,{}",
        String::from(js_sys::encode_uri_component(text))
    );
    if let Ok(a) = doc.create_element("a") {
        let _ = a.set_attribute("href", &href);
        let _ = a.set_attribute("download", name);
        if let Ok(a) = a.dyn_into::<web_sys::HtmlElement>() {
            a.click();
        }
    }
}

thread_local! {
    static STATUS: std::cell::RefCell<String> = std::cell::RefCell::new("{}".into());
    static FRAMES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    static RUNNER: std::cell::RefCell<Option<eframe::WebRunner>> = const { std::cell::RefCell::new(None) };
    static APP: std::cell::RefCell<Option<(&'static Gpu, egui::Context)>> = const { std::cell::RefCell::new(None) };
    static OWN_GPU: std::cell::Cell<Option<&'static Gpu>> = const { std::cell::Cell::new(None) };
    static START_ASKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static CONTROLS_ASKED: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Gives the page's hooks the app's device and context (called once the app has them).
pub fn share(gpu: &'static Gpu, ctx: &egui::Context) {
    APP.with(|a| *a.borrow_mut() = Some((gpu, ctx.clone())));
}

/// The device the page's checks run on: the app's once it has started, so the pipelines they
/// build are those its training takes next (a software adapter compiles each in seconds);
/// before that, a device of their own, kept for the next check.
async fn checks_gpu() -> Result<&'static Gpu, String> {
    if let Some(gpu) = APP.with(|a| a.borrow().as_ref().map(|(g, _)| *g)) {
        return Ok(gpu);
    }
    if let Some(gpu) = OWN_GPU.with(|g| g.get()) {
        return Ok(gpu);
    }
    let gpu = Gpu::new(&crate::gpu::AdapterChoice::default())
        .await
        .map_err(|e| e.to_string())?;
    let gpu: &'static Gpu = Box::leak(Box::new(gpu));
    OWN_GPU.with(|g| g.set(Some(gpu)));
    Ok(gpu)
}

/// Asks the app to start training with its settings at its next frame, as its Start button
/// does; false before the app has started.
pub fn request_start() -> bool {
    APP.with(|a| match a.borrow().as_ref() {
        Some((_, ctx)) => {
            START_ASKED.with(|s| s.set(true));
            ctx.request_repaint();
            true
        }
        None => false,
    })
}

/// Whether a start was asked for since the last frame.
pub fn take_start_request() -> bool {
    START_ASKED.with(|s| s.replace(false))
}

/// Asks the app for what a run's button does at its next frame: `pause`, `resume`, `stop`,
/// `download weights`, `download state`, `download hf`; false for anything else or before the
/// app has started.
pub fn request_control(what: &str) -> bool {
    let known = [
        "pause",
        "resume",
        "stop",
        "download weights",
        "download state",
        "download hf",
    ];
    APP.with(|a| match a.borrow().as_ref() {
        Some((_, ctx)) if known.contains(&what) => {
            CONTROLS_ASKED.with(|c| c.borrow_mut().push(what.to_string()));
            ctx.request_repaint();
            true
        }
        _ => false,
    })
}

/// The controls asked for since the last frame, in order.
pub fn take_control_requests() -> Vec<String> {
    CONTROLS_ASKED.with(|c| std::mem::take(&mut *c.borrow_mut()))
}

/// Records the app's state for [`status_json`] (called every frame).
pub fn publish_status(app: &super::DinoscopeApp, pixels_per_point: f32) {
    let panels: std::collections::BTreeMap<&str, [f32; 4]> = app
        .panel_rects
        .iter()
        .map(|(n, r)| (n.as_str(), [r.min.x, r.min.y, r.max.x, r.max.y]))
        .collect();
    let losses: Vec<f32> = app.history.points.iter().map(|p| p.metrics.loss).collect();
    let v = serde_json::json!({
        "state": format!("{:?}", app.state),
        "step": app.progress.0,
        "total": app.progress.1,
        "losses": losses,
        "snapshots": app.snapshots.len(),
        "last_snapshot_step": app.snapshots.last().map(|s| s.step),
        "knn": &app.history.knn,
        "probe": &app.history.probe,
        "adapter": app.gpu().info.name,
        "backend": format!("{:?}", app.gpu().info.backend),
        "errors": app.notices.iter().filter(|n| n.error).map(|n| n.text.clone()).collect::<Vec<_>>(),
        "panels": panels,
        "tab": format!("{:?}", app.tab),
        "inspect": {
            "model": app.inspect.model.as_ref().map(|(_, n)| n.clone()),
            "image": app.inspect.image.as_ref().map(|(_, n)| n.clone()),
            "layer": app.inspect.current().map(|v| v.layer),
            "heads": app.inspect.current().map(|v| v.heads.len()),
            "error": app.inspect.error.clone(),
        },
        "pixels_per_point": pixels_per_point,
        // Frames drawn so far: a frame's status is published before it is painted, so once
        // this has moved by two, the frame after a change is on screen.
        "frame": FRAMES.with(|f| {
            f.set(f.get() + 1);
            f.get()
        }),
        "notices": app.notices.iter().map(|n| n.text.clone()).collect::<Vec<_>>(),
    });
    STATUS.with(|s| *s.borrow_mut() = v.to_string());
}

/// The last published state as JSON.
pub fn status_json() -> String {
    STATUS.with(|s| s.borrow().clone())
}

/// Shows a message in the page's message box (no WebGPU, a failed start).
pub fn show_page_message(text: &str) {
    log::error!("{text}");
    let Some(doc) = web_sys::window().and_then(|w| w.document()) else {
        return;
    };
    if let Some(el) = doc.get_element_by_id("message") {
        el.set_text_content(Some(text));
        let _ = el.set_attribute("class", "shown");
    }
    STATUS.with(|s| {
        *s.borrow_mut() = serde_json::json!({ "state": "Failed", "errors": [text] }).to_string()
    });
}

/// Starts the app on the canvas with this id, on WebGPU.
pub async fn start_page(canvas_id: &str) -> Result<(), String> {
    use wasm_bindgen::JsCast;
    let window = web_sys::window().ok_or("no window")?;
    let gpu = js_sys::Reflect::get(&window.navigator(), &"gpu".into()).unwrap_or_default();
    if gpu.is_undefined() || gpu.is_null() {
        return Err(
            "This browser has no WebGPU (navigator.gpu is missing). dinoscope computes on \
                    the GPU through WebGPU: use a recent Chrome, Edge or Firefox with WebGPU \
                    enabled, or the desktop app."
                .into(),
        );
    }
    let canvas = window
        .document()
        .and_then(|d| d.get_element_by_id(canvas_id))
        .ok_or_else(|| format!("no element with id '{canvas_id}'"))?
        .dyn_into::<web_sys::HtmlCanvasElement>()
        .map_err(|_| format!("'{canvas_id}' is not a canvas"))?;
    let mut wgpu_options = super::wgpu_options();
    if let eframe::egui_wgpu::WgpuSetup::CreateNew(setup) = &mut wgpu_options.wgpu_setup {
        setup.instance_descriptor.backends = wgpu::Backends::BROWSER_WEBGPU;
    }
    // Settings in the link: ?preset=debug&batch=8&train=0 …
    let search = window.location().search().unwrap_or_default();
    let params: Vec<(String, String)> = search
        .trim_start_matches('?')
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_string(), v.to_string())
        })
        .collect();
    let options = eframe::WebOptions {
        wgpu_options,
        ..Default::default()
    };
    let runner = eframe::WebRunner::new();
    runner
        .start(
            canvas,
            options,
            Box::new(|cc| {
                let automation = super::Automation {
                    params,
                    ..Default::default()
                };
                super::DinoscopeApp::from_creation_context(cc, false, automation)
                    .map(|a| Box::new(a) as Box<dyn eframe::App>)
                    .map_err(|e| e.into())
            }),
        )
        .await
        .map_err(|e| {
            format!(
                "WebGPU did not start: {}",
                e.as_string().unwrap_or_else(|| format!("{e:?}"))
            )
        })?;
    RUNNER.with(|r| *r.borrow_mut() = Some(runner));
    Ok(())
}

/// The checks that run without blocking reads ([`crate::selftest::layouts`]) on this browser's
/// adapter: every kernel pipeline the browser builds, and attention in the GPUs' layout. A JSON
/// array with one object (name, pass, row) per check.
pub async fn check_layouts() -> String {
    let gpu = match checks_gpu().await {
        Ok(g) => g,
        Err(e) => {
            return serde_json::json!([{ "name": "device", "pass": false, "row": e }]).to_string()
        }
    };
    let results = [
        crate::selftest::layouts::pipelines(gpu).await,
        crate::selftest::layouts::attention(gpu).await,
    ];
    let rows: Vec<_> = results
        .iter()
        .map(|r| {
            serde_json::json!({
                "name": r.name,
                "pass": matches!(r.status, crate::selftest::Status::Pass),
                "row": r.row(),
            })
        })
        .collect();
    serde_json::Value::Array(rows).to_string()
}

/// A golden model case on this browser's adapter, as JSON: name, pass, worst error and
/// tolerance, tensors compared, and the reason when it fails.
pub async fn check_fixture(
    name: &str,
    config_json: &str,
    model: &[u8],
    io: &[u8],
    manifest_json: &str,
) -> String {
    let result = async {
        let manifest = crate::fixtures::Manifest::from_json(
            manifest_json,
            std::path::Path::new("manifest.json"),
        )
        .map_err(|e| e.to_string())?;
        let gpu = checks_gpu().await?;
        let r = crate::selftest::check_model_forward(gpu, name, config_json, model, io, &manifest)
            .await;
        Ok::<_, String>(r)
    }
    .await;
    match result {
        Ok(r) => serde_json::json!({
            "name": r.name,
            "pass": matches!(r.status, crate::selftest::Status::Pass),
            "max_err": r.max_err,
            "tol": r.tol,
            "compared": r.compared,
            "row": r.row(),
        })
        .to_string(),
        Err(e) => serde_json::json!({ "name": name, "pass": false, "row": e }).to_string(),
    }
}
