//! Training in the browser: no threads, so the app submits steps from its frame callback within
//! a time budget, and readbacks resolve asynchronously while the page keeps drawing.

use super::session::{LogPoint, Session, Snapshot};
use super::settings::TrainSettings;
use super::Task;
use crate::gpu::Gpu;
use crate::train::trainer::StepMetrics;
use eframe::egui;
use std::rc::Rc;

/// Milliseconds of a frame spent submitting training work.
pub const FRAME_BUDGET_MS: f64 = 12.0;

/// A training run driven by the page's frames.
pub struct WebRun {
    /// The run.
    pub session: Rc<Session>,
    gpu: &'static Gpu,
    in_flight: Option<(Task<Result<StepMetrics, String>>, web_time::Instant, usize)>,
    snapshot: Option<Task<Result<Snapshot, String>>>,
    snapshot_due: bool,
    /// Whether stepping is paused.
    pub paused: bool,
}

/// What a frame of stepping produced.
#[derive(Default)]
pub struct Progress {
    /// Finished steps.
    pub points: Vec<LogPoint>,
    /// A finished snapshot.
    pub snapshot: Option<Snapshot>,
    /// A problem that ends the run.
    pub error: Option<String>,
    /// A problem that does not.
    pub notice: Option<String>,
    /// The run is complete.
    pub finished: bool,
}

impl WebRun {
    /// Sets a run up from the settings (bundled data only in the browser).
    pub fn start(gpu: &'static Gpu, settings: &TrainSettings) -> Result<WebRun, String> {
        let mut s = settings.clone();
        s.data = super::settings::DataSource::Bundled;
        let session = Session::start(gpu, &s, None, None)?;
        Ok(WebRun {
            session: Rc::new(session),
            gpu,
            in_flight: None,
            snapshot: None,
            snapshot_due: false,
            paused: false,
        })
    }

    /// Advances the run: collects finished readbacks, then submits the next step when the
    /// previous one is read (one step in flight keeps the loss curve exact and memory flat).
    pub fn frame(&mut self, ctx: &egui::Context, snapshot_every: u64) -> Progress {
        let mut out = Progress::default();
        let t0 = web_time::Instant::now();
        if let Some(task) = &self.snapshot {
            if let Some(r) = task.take() {
                self.snapshot = None;
                match r {
                    Ok(s) => out.snapshot = Some(s),
                    Err(e) => out.notice = Some(format!("attention snapshot failed: {e}")),
                }
            }
        }
        loop {
            if let Some((task, started, skipped)) = &self.in_flight {
                match task.take() {
                    None => break,
                    Some(Err(e)) => {
                        self.in_flight = None;
                        out.error = Some(e);
                        return out;
                    }
                    Some(Ok(m)) => {
                        let dt = started.elapsed().as_secs_f32().max(1e-6);
                        let batch = self.session.config().batch_size as f32;
                        if let Err(e) = self.session.check_finite(&m) {
                            out.error = Some(e);
                            return out;
                        }
                        let done = m.step + 1;
                        out.points.push(LogPoint {
                            metrics: m,
                            images_per_s: batch / dt,
                            skipped: *skipped,
                        });
                        self.in_flight = None;
                        if snapshot_every > 0 && done.is_multiple_of(snapshot_every) {
                            self.snapshot_due = true;
                        }
                    }
                }
            }
            if self.snapshot_due && self.snapshot.is_none() {
                self.snapshot_due = false;
                let s = self.session.clone();
                self.snapshot = Some(Task::spawn(ctx, async move { s.snapshot().await }));
            }
            if self.paused || self.session.finished() {
                out.finished = self.session.finished() && self.snapshot.is_none();
                break;
            }
            if t0.elapsed().as_secs_f64() * 1000.0 > FRAME_BUDGET_MS {
                break;
            }
            let Some(session) = Rc::get_mut(&mut self.session) else {
                // A snapshot still reads the teacher; step once it is done.
                break;
            };
            let started = web_time::Instant::now();
            match session.submit() {
                Ok((pending, skipped)) => {
                    let gpu = self.gpu;
                    let task = Task::spawn(ctx, async move {
                        pending
                            .read(gpu)
                            .await
                            .map_err(|e| super::session::gpu_message(&e.to_string()))
                    });
                    self.in_flight = Some((task, started, skipped));
                }
                Err(e) => {
                    out.error = Some(e);
                    return out;
                }
            }
        }
        out
    }

    /// Takes the first snapshot (before any step).
    pub fn first_snapshot(&mut self, ctx: &egui::Context) {
        let s = self.session.clone();
        self.snapshot = Some(Task::spawn(ctx, async move { s.snapshot().await }));
    }
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
