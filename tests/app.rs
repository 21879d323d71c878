//! The app's logic driven headless: egui frames run without a window, on the test GPU.

#![cfg(feature = "app")]

mod common;

use dinoscope::app::curves::{log10, smooth, History};
use dinoscope::app::session::LogPoint;
use dinoscope::app::settings::{AppSettings, TrainSettings};
use dinoscope::app::{Automation, DinoscopeApp, RunState, Tab};
use dinoscope::gpu::{AdapterChoice, Gpu};
use eframe::egui;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn tmp(name: &str) -> common::Scratch {
    common::Scratch::new(&format!("app-{name}"))
}

fn app() -> Option<DinoscopeApp> {
    common::gpu()?;
    let gpu = Gpu::new_blocking(&AdapterChoice::from_env()).expect("adapter");
    let settings = AppSettings {
        autostart: false,
        ..AppSettings::first_run()
    };
    Some(DinoscopeApp::new(gpu, settings, Automation::default()))
}

/// Runs one UI frame of the app at 1280×800.
fn frame(ctx: &egui::Context, app: &mut DinoscopeApp) {
    let input = egui::RawInput {
        screen_rect: Some(egui::Rect::from_min_size(
            egui::Pos2::ZERO,
            egui::vec2(1280.0, 800.0),
        )),
        ..Default::default()
    };
    let _ = ctx.run_ui(input, |ui| app.show(ui));
}

/// Draws frames until `done` holds, each after the app asks for one: its worker and its loading
/// thread ask at once with every message, and the app asks again after a delay while it runs
/// (that request is kept as asked). Nothing here guesses how long a step takes: `HANG` only
/// turns a worker that never answers into a failure instead of a stuck CI job.
fn frames_until(
    ctx: &egui::Context,
    app: &mut DinoscopeApp,
    done: impl Fn(&DinoscopeApp) -> bool,
) -> bool {
    const HANG: Duration = Duration::from_secs(30 * 60);
    let (tx, rx) = std::sync::mpsc::channel::<Duration>();
    let tx = std::sync::Mutex::new(tx);
    ctx.set_request_repaint_callback(move |info| {
        if let Ok(tx) = tx.lock() {
            let _ = tx.send(info.delay);
        }
    });
    let t0 = Instant::now();
    loop {
        frame(ctx, app);
        if done(app) {
            return true;
        }
        // The soonest frame asked for so far (the frame just drawn may have asked too).
        let asked = rx.try_iter().min();
        let left = HANG.saturating_sub(t0.elapsed());
        if left.is_zero() {
            return false;
        }
        match asked {
            Some(d) if d.is_zero() => {}
            // A delayed request: draw then, or sooner if a thread asks first.
            Some(d) => {
                let _ = rx.recv_timeout(d.min(left));
            }
            None => {
                let _ = rx.recv_timeout(left);
            }
        }
    }
}

/// Stops the run and draws frames until the worker has ended it.
fn stop_and_wait(ctx: &egui::Context, app: &mut DinoscopeApp) -> bool {
    app.control("stop");
    frames_until(ctx, app, |a| a.state == RunState::Ended)
}

fn errors(app: &DinoscopeApp) -> Vec<String> {
    app.notices
        .iter()
        .filter(|n| n.error)
        .map(|n| n.text.clone())
        .collect()
}

#[test]
fn wrong_weights_are_refused_in_the_ui_and_the_app_goes_on() {
    let Some(mut app) = app() else { return };
    let ctx = egui::Context::default();
    let dir = tmp("weights");
    let bad = dir.join("not_a_model.safetensors");
    std::fs::write(&bad, b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":1").expect("write");
    app.handle_dropped(vec![(bad.clone(), None)]);
    // Weights are read on their own thread; the window keeps drawing meanwhile.
    assert!(frames_until(&ctx, &mut app, |a| { !a.weights_loading() }));
    assert_eq!(app.tab, Tab::Inspect);
    let errs = errors(&app);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("not_a_model.safetensors"), "{}", errs[0]);
    assert!(app.inspect.model.is_none());
    assert!(app
        .inspect
        .error
        .as_deref()
        .is_some_and(|e| e.contains("weights refused")));

    // A file that is not a picture is refused too, with its name.
    let junk = dir.join("broken.png");
    std::fs::write(&junk, b"not a png at all").expect("write");
    app.load_image(&junk, None);
    assert!(errors(&app).iter().any(|e| e.contains("broken.png")));

    // The app still works: real weights and a real picture give maps.
    let fixtures = common::fixtures_dir().join("tiny_dinov2");
    app.load_weights(&fixtures.join("model.safetensors"), None);
    // The call returns at once; the model arrives in a later frame.
    assert!(app.weights_loading());
    assert!(frames_until(&ctx, &mut app, |a| { !a.weights_loading() }));
    assert!(app.inspect.model.is_some(), "{:?}", errors(&app));
    app.inspect.size = 56;
    let photo = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/images/chelsea.png");
    app.load_image(&photo, None);
    assert!(app.inspect.error.is_none(), "{:?}", app.inspect.error);
    assert!(frames_until(&ctx, &mut app, |a| {
        a.inspect.current().is_some()
    }));
    let view = app.inspect.current().expect("view");
    let (_, cfg_heads) = (
        view.grid,
        app.inspect.model.as_ref().expect("model").0.cfg.heads,
    );
    assert_eq!(view.heads.len(), cfg_heads);
    let mean = view.mean();
    let spread = mean.iter().cloned().fold(f32::MIN, f32::max)
        - mean.iter().cloned().fold(f32::MAX, f32::min);
    assert!(spread > 0.0, "attention map is constant");
    // Another layer is computed on demand.
    app.inspect.layer = 0;
    assert!(frames_until(&ctx, &mut app, |a| {
        a.inspect.current().is_some_and(|v| v.layer == 0)
    }));
    // Similarity to a patch is 1 at that patch.
    let v = app.inspect.current().expect("view");
    let sim = v.similarity_to(3);
    assert!((sim[3] - 1.0).abs() < 1e-4, "{}", sim[3]);
}

fn write_png(path: &Path, seed: u32) {
    let img = image::RgbImage::from_fn(28, 28, |x, y| {
        let v = ((x * 7 + y * 13 + seed * 31) % 255) as u8;
        image::Rgb([v, v.wrapping_mul(3), 255 - v])
    });
    img.save(path).expect("png");
}

/// The header of a safetensors file with no tensors and `format` as its format tag.
fn header_only(format: &str) -> Vec<u8> {
    let json = format!("{{\"__metadata__\":{{\"format\":\"{format}\"}}}}");
    let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
    bytes.extend(json.as_bytes());
    bytes
}

/// A dropped checkpoint state file (what the browser's Download checkpoint gives) makes its
/// folder the run folder to resume; it is not taken for weights to inspect. One in a later
/// format, or with another format tag, is refused when dropped, and the run folder stays.
#[test]
fn a_dropped_state_file_sets_the_run_folder() {
    let Some(mut app) = app() else { return };
    let dir = tmp("dropped-state");
    let state = dir.join(dinoscope::train::checkpoint::STATE);
    std::fs::write(
        &state,
        header_only(dinoscope::train::checkpoint::STATE_FORMAT),
    )
    .expect("write");
    app.tab = Tab::Inspect;
    app.handle_dropped(vec![(state, None)]);
    assert_eq!(app.tab, Tab::Train);
    assert_eq!(app.settings.train.run_dir, dir.to_path_buf());
    assert!(!app.weights_loading());
    assert!(errors(&app).is_empty(), "{:?}", errors(&app));
    assert!(app
        .notices
        .iter()
        .any(|n| n.text.contains("Resume run folder")));

    for (name, format, says) in [
        ("later", "dinoscope-train-state-99", "cannot read"),
        ("other", "someone-else-1", "not a dinoscope training state"),
    ] {
        let other = tmp(&format!("dropped-state-{name}"));
        let state = other.join(dinoscope::train::checkpoint::STATE);
        std::fs::write(&state, header_only(format)).expect("write");
        app.handle_dropped(vec![(state, None)]);
        assert_eq!(app.settings.train.run_dir, dir.to_path_buf());
        let errs = errors(&app);
        assert!(
            errs.last()
                .is_some_and(|e| e.contains(says) && e.contains(&format!("dropped-state-{name}"))),
            "{errs:?}"
        );
    }
}

#[test]
fn a_corrupt_image_in_the_folder_is_skipped_and_counted_while_training_goes_on() {
    let Some(mut app) = app() else { return };
    let ctx = egui::Context::default();
    let dir = tmp("folder");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    for i in 0..3 {
        write_png(&data.join(format!("img{i}.png")), i);
    }
    std::fs::write(data.join("broken.png"), b"\x89PNG\r\n\x1a\n truncated").expect("write");
    app.handle_dropped(vec![(data.clone(), None)]);
    assert_eq!(app.tab, Tab::Train);
    let t = &mut app.settings.train;
    *t = TrainSettings {
        batch_size: 4,
        steps: 2,
        eval_every: 0,
        snapshot_every: 1,
        checkpoint_every: 0,
        run_dir: dir.join("run"),
        ..TrainSettings::default()
    };
    app.start(None);
    assert!(frames_until(&ctx, &mut app, |a| {
        a.state == RunState::Ended
    }));
    assert_eq!(app.progress, (2, 2), "{:?}", app.notices);
    assert!(errors(&app).is_empty(), "{:?}", errors(&app));
    assert!(
        app.notices
            .iter()
            .any(|n| n.text.contains("unreadable image")),
        "{:?}",
        app.notices
    );
    assert_eq!(app.history.points.len(), 2);
    assert!(app.history.points.iter().any(|p| p.skipped > 0));
    assert!(app
        .history
        .points
        .iter()
        .all(|p| p.metrics.loss.is_finite()));
    // Snapshots at start and after each step, each with a map per probe (3 readable images).
    assert_eq!(
        app.snapshots.iter().map(|s| s.step).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert_eq!(app.snapshots[2].views.len(), 3);
    // The run ends with a checkpoint that resumes.
    assert!(dinoscope::train::checkpoint::exists(&dir.join("run")));
    assert!(app
        .notices
        .iter()
        .any(|n| n.text.contains("checkpoint at step 2")));
    // The run folder records its data: resumed with the data field empty, the run goes on with
    // the folder it trained on, not the bundled set.
    let seen = app.notices.len();
    app.data_field.clear();
    app.start(Some(dir.join("run")));
    assert!(frames_until(&ctx, &mut app, |a| {
        a.state == RunState::Ended
    }));
    assert!(errors(&app).is_empty(), "{:?}", errors(&app));
    let started: Vec<&str> = app.notices[seen..]
        .iter()
        .map(|n| n.text.as_str())
        .filter(|t| t.starts_with("training on"))
        .collect();
    let folder = data.display().to_string();
    assert!(
        started.len() == 1 && started[0].contains(&folder),
        "{started:?} should name {folder}"
    );
    // Another folder in the data field takes its place for this start, with a warning, and
    // the run's record stays as it was.
    let record = std::fs::read(dir.join("run/data.json")).expect("data.json");
    let other = dir.join("other");
    std::fs::create_dir_all(&other).expect("mkdir");
    for i in 0..3 {
        write_png(&other.join(format!("img{i}.png")), 10 + i);
    }
    let seen = app.notices.len();
    app.data_field = other.display().to_string();
    app.start(Some(dir.join("run")));
    assert!(frames_until(&ctx, &mut app, |a| {
        a.state == RunState::Ended
    }));
    assert!(
        app.notices[seen..]
            .iter()
            .any(|n| n.text.contains("the run was trained on")),
        "{:?}",
        &app.notices[seen..]
    );
    assert_eq!(
        std::fs::read(dir.join("run/data.json")).expect("data.json"),
        record
    );
}

#[test]
fn pause_resume_and_stop_control_the_worker() {
    let Some(mut app) = app() else { return };
    let ctx = egui::Context::default();
    let dir = tmp("control");
    app.settings.train = TrainSettings {
        batch_size: 8,
        steps: 1000,
        eval_every: 0,
        snapshot_every: 1000,
        checkpoint_every: 0,
        run_dir: dir.join("run"),
        ..TrainSettings::default()
    };
    app.start(None);
    assert!(frames_until(&ctx, &mut app, |a| { a.progress.0 >= 1 }));
    app.control("pause");
    assert_eq!(app.state, RunState::Paused);
    // The worker acknowledges the pause once the step in flight is done.
    assert!(frames_until(&ctx, &mut app, |a| a.paused_at.is_some()));
    let at_pause = app.paused_at.expect("paused");
    // A save asked for while paused is answered at the same step: the worker handled a command
    // after the pause without stepping in between.
    app.control("save");
    assert!(frames_until(&ctx, &mut app, |a| a.saved_at.is_some()));
    assert_eq!(app.saved_at, Some(at_pause), "stepped while paused");
    assert_eq!(app.progress.0, at_pause, "stepped while paused");
    app.control("resume");
    assert!(frames_until(&ctx, &mut app, |a| {
        a.progress.0 > at_pause
    }));
    assert!(stop_and_wait(&ctx, &mut app));
    assert!(app.progress.0 < 1000);
    // Stopping writes a checkpoint the run can resume from, and the run's metrics log holds a
    // line for every step, as `dinoscope train` writes it.
    assert!(dinoscope::train::checkpoint::exists(&dir.join("run")));
    let stopped_at = app.progress.0;
    let logged = |app: &DinoscopeApp| {
        let text = std::fs::read_to_string(dir.join("run/metrics.jsonl")).expect("metrics log");
        let steps: Vec<u64> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["step"].as_u64())
            .collect();
        assert_eq!(steps, (0..app.progress.0).collect::<Vec<_>>(), "{text}");
        // Each step's own time, which a resumed run's curve is rebuilt from.
        assert!(
            text.lines()
                .filter(|l| l.contains("\"step\""))
                .all(|l| l.contains("\"step_s\"")),
            "{text}"
        );
    };
    logged(&app);
    let live: Vec<f32> = app.history.points.iter().map(|p| p.images_per_s).collect();
    app.start(Some(dir.join("run")));
    assert!(frames_until(&ctx, &mut app, |a| {
        a.progress.0 > stopped_at
    }));
    assert!(stop_and_wait(&ctx, &mut app));
    assert!(errors(&app).is_empty(), "{:?}", errors(&app));
    // The resumed run's curves start at the run's first step, from its log.
    let shown: Vec<u64> = app.history.points.iter().map(|p| p.metrics.step).collect();
    assert_eq!(shown, (0..app.progress.0).collect::<Vec<_>>());
    // With the same throughput the live curve showed (evaluations and checkpoints left out).
    let rebuilt: Vec<f32> = app.history.points[..live.len()]
        .iter()
        .map(|p| p.images_per_s)
        .collect();
    assert_eq!(rebuilt, live);
    logged(&app);
    // The run's backbone, exported for transformers; an earlier export is kept.
    app.export_hf();
    let last = |app: &DinoscopeApp| app.notices.last().map(|n| (n.error, n.text.clone()));
    let (error, text) = last(&app).expect("a notice");
    assert!(!error && text.contains("AutoModel"), "{text}");
    let hf = dir.join("run/export-hf");
    let cfg = dinoscope::model::config::VitConfig::load(&hf.join("config.json")).expect("config");
    dinoscope::model::weights::load_backbone(&hf.join("model.safetensors"), &cfg).expect("load");
    app.export_hf();
    let (error, text) = last(&app).expect("a notice");
    assert!(error && text.contains("already exists"), "{text}");
    // Start (not resume) with the same run folder: the run goes beside it, the old one stays.
    let before = std::fs::read_to_string(dir.join("run/metrics.jsonl")).unwrap_or_default();
    let kept = dinoscope::train::checkpoint::list(&dir.join("run"));
    app.start(None);
    assert_eq!(app.settings.train.run_dir, dir.join("run-2"));
    assert!(stop_and_wait(&ctx, &mut app));
    assert_eq!(dinoscope::train::checkpoint::list(&dir.join("run")), kept);
    assert_eq!(
        std::fs::read_to_string(dir.join("run/metrics.jsonl")).unwrap_or_default(),
        before
    );
}

/// The run folder is the run's alone: one another process trains in (its lock held) is
/// refused before anything is written there, and the app's own lock goes with its run. The
/// run's last step is evaluated, as `dinoscope train` does, whatever the evaluation interval.
#[test]
fn a_locked_run_folder_is_refused_and_the_last_step_is_evaluated() {
    let Some(mut app) = app() else { return };
    let ctx = egui::Context::default();
    let dir = tmp("locked");
    let run = dir.join("run");
    std::fs::create_dir_all(&run).expect("mkdir");
    let held = dinoscope::train::run::RunLock::acquire(&run).expect("lock");
    app.settings.train = TrainSettings {
        batch_size: 8,
        steps: 2,
        eval_every: 1000,
        snapshot_every: 1000,
        checkpoint_every: 0,
        run_dir: run.clone(),
        ..TrainSettings::default()
    };
    app.start(None);
    assert!(frames_until(&ctx, &mut app, |a| a.state == RunState::Ended));
    let errs = errors(&app);
    assert!(
        errs.last().is_some_and(|e| e.contains(".dinoscope.lock")),
        "{errs:?}"
    );
    assert!(!dinoscope::train::run::holds_run(&run));
    drop(held);
    app.start(None);
    assert!(frames_until(&ctx, &mut app, |a| a.state == RunState::Ended));
    assert!(errors(&app).len() == errs.len(), "{:?}", errors(&app));
    assert_eq!(app.progress.0, 2);
    let evaluated: Vec<u64> = app.history.knn.iter().map(|(s, _)| *s).collect();
    assert_eq!(evaluated, [0, 2]);
    assert!(dinoscope::train::checkpoint::exists(&run));
    assert!(!run.join(".dinoscope.lock").exists());
}

#[test]
fn a_time_limit_fits_the_runs_schedule_and_its_progress() {
    use dinoscope::train::budget::FIT_AFTER;
    let Some(mut app) = app() else { return };
    let ctx = egui::Context::default();
    let dir = tmp("time-limit");
    app.settings.train = TrainSettings {
        batch_size: 8,
        steps: 40,
        minutes: 60.0,
        eval_every: 0,
        snapshot_every: 1000,
        checkpoint_every: 0,
        run_dir: dir.join("run"),
        ..TrainSettings::default()
    };
    app.start(None);
    // An hour holds far more than 40 steps of this model on any adapter that passes selftest.
    assert!(frames_until(&ctx, &mut app, |a| a.progress.1 > 40));
    assert!(app.progress.0 >= FIT_AFTER, "{:?}", app.progress);
    assert!(app
        .notices
        .iter()
        .any(|n| n.text.starts_with("time limit:") && n.text.contains("spans")));
    assert!(stop_and_wait(&ctx, &mut app));
    assert!(errors(&app).is_empty(), "{:?}", errors(&app));
    // The checkpoint holds the fitted schedule, which a resumed run follows.
    let (cfg, _) = dinoscope::train::run::load_checkpoint(&dir.join("run")).expect("checkpoint");
    assert_eq!(cfg.steps, app.progress.1);
}

#[test]
fn bad_settings_are_reported_not_started() {
    let Some(mut app) = app() else { return };
    app.settings.train.patch = 0;
    app.start(None);
    assert_ne!(app.state, RunState::Running);
    let errs = errors(&app);
    assert!(errs.iter().any(|e| e.starts_with("settings:")), "{errs:?}");
}

#[test]
fn a_run_that_cannot_fit_is_refused_with_settings_that_would() {
    let Some(mut app) = app() else { return };
    let ctx = egui::Context::default();
    app.settings.train.batch_size = 64;
    let dir = tmp("fit");
    app.settings.train.run_dir = dir.to_path_buf();
    // The debug preset at batch 64 plans about 63 MiB: give the adapter 40 MiB.
    app.memory_budget = Some(40 << 20);
    frame(&ctx, &mut app);
    app.start(None);
    assert_eq!(app.state, RunState::Idle, "a run that cannot fit started");
    let errs = errors(&app);
    assert!(
        errs.iter()
            .any(|e| e.contains("not started") && e.contains("batch_size:")),
        "{errs:?}"
    );
    // The checkpointing advice names a batch that fits, and taking it starts.
    app.settings.train.batch_size = 8;
    app.memory_budget = Some(1 << 30);
    app.start(None);
    assert_ne!(app.state, RunState::Idle, "{:?}", errors(&app));
    app.control("stop");
    assert!(frames_until(&ctx, &mut app, |a| { !a.running() }));
}

#[test]
fn settings_persist_and_every_preset_makes_a_valid_config() {
    let s = AppSettings::first_run();
    let text = ron::to_string(&s).expect("ron");
    let back: AppSettings = ron::from_str(&text).expect("parse");
    assert_eq!(s, back);
    // Settings saved by an older version (fewer fields) still load.
    let old: AppSettings = ron::from_str("(log_scale: true)").expect("parse old");
    assert!(old.log_scale);
    for preset in dinoscope::train::config::TRAIN_PRESETS {
        let mut t = TrainSettings {
            preset: preset.to_string(),
            ..TrainSettings::default()
        };
        let cfg = dinoscope::train::config::TrainConfig::preset(preset).expect("preset");
        t.take_preset(&cfg);
        let made = t.to_config().expect("valid");
        assert_eq!(made.model, cfg.model, "{preset}");
        assert_eq!(made.batch_size, cfg.batch_size);
    }
    let mut t = TrainSettings {
        dim: 192,
        ..TrainSettings::default()
    };
    let cfg = t.to_config().expect("width 192");
    assert_eq!(
        (cfg.model.dim, cfg.model.heads, cfg.model.mlp_hidden),
        (192, 3, 768)
    );
    t.patch = 0;
    assert!(t.to_config().is_err());
}

fn point(step: u64, loss: f32) -> LogPoint {
    let mut p = LogPoint::default();
    p.metrics.step = step;
    p.metrics.loss = loss;
    p.images_per_s = 10.0;
    p
}

#[test]
fn the_status_throughput_is_images_over_time() {
    let Some(mut app) = app() else { return };
    for (i, r) in [1000.0, 10.0].into_iter().enumerate() {
        let mut p = point(i as u64, 1.0);
        p.images_per_s = r;
        app.history.points.push(p);
    }
    // Two steps of equal batches at 1000 and 10 img/s took 1/1000 + 1/10 of a batch's seconds.
    let expected = 2.0 / (1.0 / 1000.0 + 1.0 / 10.0);
    assert!(
        (app.throughput() - expected).abs() < 1e-3,
        "{}",
        app.throughput()
    );
}

#[test]
fn curves_export_smooth_and_log_scale() {
    let mut h = History::default();
    for (i, l) in [4.0, 2.0, 1.0].into_iter().enumerate() {
        h.points.push(point(i as u64, l));
    }
    h.knn.push((2, 0.5));
    let csv = h.to_csv();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4);
    assert!(lines[0].starts_with("step,loss,dino"));
    assert!(lines[0].ends_with(",knn_accuracy,probe_accuracy"));
    assert!(lines[1].starts_with("1,4,"));
    assert!(lines[2].ends_with(",0.5,"), "{}", lines[2]);
    assert!(lines[3].ends_with(','), "{}", lines[3]);
    let loss = h.series("loss");
    assert_eq!(loss, vec![[1.0, 4.0], [2.0, 2.0], [3.0, 1.0]]);
    assert_eq!(smooth(&loss, 0.0), loss);
    let s = smooth(&loss, 0.5);
    assert_eq!(s[1], [2.0, 3.0]);
    assert_eq!(s[2], [3.0, 2.0]);
    let l = log10(&[[1.0, 100.0], [2.0, 0.0], [3.0, 0.1]]);
    assert_eq!(l.len(), 2);
    assert!((l[0][1] - 2.0).abs() < 1e-12 && (l[1][1] + 1.0).abs() < 1e-12);
    assert_eq!(h.series("knn"), vec![[2.0, 50.0]]);
}

#[test]
fn settings_from_a_link_apply_and_bad_ones_are_named() {
    let mut s = AppSettings::first_run();
    s.apply_param("batch", "8").expect("batch");
    s.apply_param("depth", "2").expect("depth");
    s.apply_param("train", "0").expect("train");
    assert_eq!(
        (s.train.batch_size, s.train.depth, s.autostart),
        (8, 2, false)
    );
    s.apply_param("preset", "tiny").expect("preset");
    assert_eq!(s.train.dim, 192);
    let e = s.apply_param("batch", "many").expect_err("not a number");
    assert!(e.contains("batch") && e.contains("many"), "{e}");
    s.apply_param("minutes", "15").expect("minutes");
    assert_eq!(s.train.minutes, 15.0);
    let e = s.apply_param("minutes", "-1").expect_err("negative");
    assert!(e.contains("minutes") && e.contains("-1"), "{e}");
    let e = s.apply_param("colour", "red").expect_err("unknown");
    assert!(e.contains("colour"), "{e}");
    assert!(s.apply_param("preset", "huge").is_err());
    assert!(s.apply_param("train", "/somewhere").is_err());
    s.apply_param("train", "true").expect("train");
    assert!(s.autostart);
}

#[test]
fn a_diagnosed_collapse_offers_its_remedy_for_the_next_run() {
    use dinoscope::train::config::{HeadInit, Targets};
    use dinoscope::train::diagnose::{settle_steps, Collapse, Remedy};
    let Some(mut app) = app() else { return };
    let ctx = egui::Context::default();
    // DINOv2's own recipe: centering and its initialisation.
    app.settings
        .apply_param("preset", "vits14")
        .expect("preset");
    let cfg = app.settings.train.to_config().expect("config");
    assert_eq!(cfg.targets, Targets::Centering);
    app.judge = Some(cfg.clone());
    let ln_k = (cfg.head.prototypes as f32).ln();
    // Before the run has settled nothing is judged.
    let mut early = point(0, ln_k);
    early.metrics.dino = ln_k;
    early.metrics.teacher_entropy = Some(0.99 * ln_k);
    app.on_step(early.clone());
    assert!(app.diagnosis.is_none());
    let mut flat = early;
    flat.metrics.step = settle_steps(&cfg);
    flat.metrics.dino = 1.01 * ln_k;
    app.on_step(flat);
    let d = app.diagnosis.clone().expect("diagnosed");
    assert_eq!(d.collapse, Collapse::Uniform);
    assert_eq!(d.remedy, Remedy::InformativeTargets);
    assert!(
        errors(&app).iter().any(|e| e.contains("uniform targets")),
        "{:?}",
        errors(&app)
    );
    // The panel with the offer draws; applying it changes the next run's config only.
    frame(&ctx, &mut app);
    app.apply_remedy();
    app.apply_remedy();
    assert_eq!(
        app.settings.train.remedies,
        vec![Remedy::InformativeTargets]
    );
    let next = app.settings.train.to_config().expect("config");
    assert_eq!(next.targets, Targets::SinkhornKnopp);
    assert_eq!(next.init.head, HeadInit::FanIn);
    assert_eq!(next.teacher_temp.0, 0.02);
    frame(&ctx, &mut app);
    // The applied remedy persists with the settings.
    let json = serde_json::to_string(&app.settings).expect("json");
    let back: AppSettings = serde_json::from_str(&json).expect("settings");
    assert_eq!(back.train.remedies, vec![Remedy::InformativeTargets]);
}

#[test]
fn the_first_start_picks_a_preset_the_adapter_can_carry() {
    let Some(app) = app() else { return };
    let gpu = app.gpu();
    let preset = dinoscope::app::memory::first_run_preset(gpu);
    assert!(
        dinoscope::train::config::TRAIN_PRESETS.contains(&preset),
        "{preset}"
    );
    // A CPU adapter gets the small preset: anything larger takes seconds per step there.
    if gpu.info.device_type == wgpu::DeviceType::Cpu {
        assert_eq!(preset, "debug");
    }
}

/// The "Open…", "Folder…", "Choose…" and "Export CSV as…" buttons: each opens its dialog (kind,
/// filters, starting folder) and uses the path chosen in it; a cancelled dialog changes nothing.
/// A stand-in takes the person's place at the dialog (the platform's dialog cannot be driven
/// headless).
#[test]
fn file_dialogs_fill_their_fields_and_load_what_is_chosen() {
    use dinoscope::app::dialogs::{DialogKind, DialogSpec, Pick};
    use std::sync::{Arc, Mutex};
    let Some(mut app) = app() else { return };
    let ctx = egui::Context::default();
    let dir = tmp("dialogs");
    let fixtures = common::fixtures_dir().join("tiny_dinov3");
    let photo = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/images/chelsea.png");
    let seen: Arc<Mutex<Vec<DialogSpec>>> = Arc::default();
    let answers: Arc<Mutex<Vec<Option<PathBuf>>>> = Arc::default();
    {
        let (seen, answers) = (seen.clone(), answers.clone());
        app.dialog = Box::new(move |spec: &DialogSpec| {
            seen.lock().expect("lock").push(spec.clone());
            answers.lock().expect("lock").remove(0)
        });
    }
    let answer = |p: Option<PathBuf>| answers.lock().expect("lock").push(p);

    // Weights: a DINOv3 model, loaded at once.
    answer(Some(fixtures.join("model.safetensors")));
    app.browse(Pick::Weights);
    assert!(frames_until(&ctx, &mut app, |a| {
        a.inspect.model.is_some()
    }));
    assert!(app.weights_field.ends_with("tiny_dinov3/model.safetensors"));
    // Picture, loaded at once; then the maps come.
    answer(Some(photo.clone()));
    app.inspect.size = 64;
    app.browse(Pick::Picture);
    assert!(frames_until(&ctx, &mut app, |a| {
        a.inspect.current().is_some()
    }));
    // The weights dialog now starts in the folder of the current weights.
    answer(None);
    app.browse(Pick::Weights);
    // Data folder, run folder, and the CSV written where the save dialog says.
    answer(Some(dir.clone()));
    app.browse(Pick::DataFolder);
    assert_eq!(app.data_field, dir.display().to_string());
    answer(Some(dir.join("runs")));
    app.browse(Pick::RunFolder);
    assert_eq!(app.settings.train.run_dir, dir.join("runs"));
    let csv = dir.join("exported/curves-here.csv");
    answer(Some(csv.clone()));
    app.browse(Pick::Csv);
    assert!(std::fs::read_to_string(&csv)
        .expect("csv")
        .starts_with("step,"));
    // Cancelled: nothing changes.
    answer(None);
    app.browse(Pick::DataFile);
    assert_eq!(app.data_field, dir.display().to_string());

    let seen = seen.lock().expect("lock");
    let kinds: Vec<(Pick, DialogKind)> = seen.iter().map(|s| (s.pick, s.kind)).collect();
    assert_eq!(
        kinds,
        vec![
            (Pick::Weights, DialogKind::OpenFile),
            (Pick::Picture, DialogKind::OpenFile),
            (Pick::Weights, DialogKind::OpenFile),
            (Pick::DataFolder, DialogKind::OpenFolder),
            (Pick::RunFolder, DialogKind::OpenFolder),
            (Pick::Csv, DialogKind::SaveFile),
            (Pick::DataFile, DialogKind::OpenFile),
        ]
    );
    assert_eq!(seen[2].directory.as_deref(), Some(fixtures.as_path()));
    assert_eq!(seen[0].filters[0].1, &["safetensors"]);
    assert_eq!(seen[5].file_name.as_deref(), Some("curves.csv"));
}

/// With "f16" ticked the Inspect view loads the model in half precision; its maps follow the
/// f32 model's, and unticking converts the loaded model back.
#[test]
fn inspect_in_f16_gives_the_f32_maps_within_tolerance() {
    let Some(mut app) = app() else { return };
    if !common::f16(app.gpu(), "app f16") {
        return;
    }
    let ctx = egui::Context::default();
    let fixtures = common::fixtures_dir().join("tiny_dinov2_reg");
    let photo = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/images/chelsea.png");
    let mut means = Vec::new();
    for half in [false, true] {
        app.settings.half = half;
        app.load_weights(&fixtures.join("model.safetensors"), None);
        assert!(frames_until(&ctx, &mut app, |a| { !a.weights_loading() }));
        let model = &app.inspect.model.as_ref().expect("model").0;
        assert_eq!(model.dtype() == dinoscope::gpu::DType::F16, half);
        app.inspect.size = 56;
        app.load_image(&photo, None);
        assert!(frames_until(&ctx, &mut app, |a| {
            a.inspect.current().is_some()
        }));
        means.push(app.inspect.current().expect("view").mean());
    }
    let err = means[0]
        .iter()
        .zip(&means[1])
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    let scale = means[0].iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(err > 0.0 && err <= dinoscope::selftest::F16_TOLERANCE * scale.max(1.0));
    app.settings.half = false;
    app.apply_precision();
    let model = &app.inspect.model.as_ref().expect("model").0;
    assert_eq!(model.dtype(), dinoscope::gpu::DType::F32);
    assert!(errors(&app).is_empty(), "{:?}", errors(&app));
}

/// The train panel's "mixed (f16)" box turns on mixed precision in the run's config.
#[test]
fn the_mixed_precision_box_reaches_the_training_config() {
    use dinoscope::train::config::Precision;
    let mut t = TrainSettings::default();
    assert_eq!(t.to_config().expect("config").precision, Precision::F32);
    t.mixed = true;
    assert_eq!(t.to_config().expect("config").precision, Precision::Mixed);
    // Older settings without the field load as f32.
    let old: TrainSettings = serde_json::from_str("{}").expect("defaults");
    assert!(!old.mixed);
}

/// A mixed-precision run started from the app trains, and its steps carry the loss scale the
/// status bar shows.
#[test]
fn a_mixed_precision_run_reports_its_loss_scale() {
    let Some(mut app) = app() else { return };
    if !common::f16(app.gpu(), "app f16") {
        return;
    }
    let ctx = egui::Context::default();
    let dir = tmp("mixed");
    app.settings.train = TrainSettings {
        batch_size: 8,
        steps: 1000,
        eval_every: 0,
        snapshot_every: 1000,
        checkpoint_every: 0,
        mixed: true,
        run_dir: dir.join("run"),
        ..TrainSettings::default()
    };
    app.start(None);
    assert!(frames_until(&ctx, &mut app, |a| a.history.points.len() >= 3));
    assert!(app
        .history
        .points
        .iter()
        .all(|p| p.metrics.loss_scale.is_some_and(|s| s >= 1.0)));
    assert!(stop_and_wait(&ctx, &mut app));
    assert!(errors(&app).is_empty(), "{:?}", errors(&app));
}
