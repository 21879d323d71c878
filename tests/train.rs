//! Training: schedules and parameter groups, exact resume (in process and after SIGKILL),
//! checkpoints that load as backbones, and learning on Fashion-MNIST.

mod common;

use dinoscope::train::config::{cosine, TrainConfig};
use dinoscope::train::run::{load_checkpoint, run, RunOptions};
use std::path::{Path, PathBuf};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dinoscope-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A very small run for exactness tests: a 1-block ViT on 16-px crops.
fn micro() -> TrainConfig {
    let mut c = TrainConfig::preset("debug").expect("preset");
    c.model.depth = 1;
    c.model.patch = 4;
    c.model.pos_grid = 4;
    c.augment.global_size = 16;
    c.augment.local_size = 8;
    c.augment.n_local = 1;
    c.head.hidden = 64;
    c.head.bottleneck = 16;
    c.head.prototypes = 32;
    c.batch_size = 4;
    c.steps = 6;
    c.warmup_steps = 2;
    c.freeze_last_layer_steps = 2;
    c.teacher_temp = (0.04, 0.07, 3);
    c.checkpoint_every = 3;
    c.eval_every = 0;
    c.knn_train = 40;
    c.knn_test = 20;
    c.workers = 0;
    // Drop path draws per step: resuming must draw the same.
    c.drop_path = 0.3;
    c
}

#[test]
fn schedules_follow_dinov2() {
    // Warmup is linear and inclusive at both ends, then cosine to the end value.
    assert_eq!(cosine(0, 1.0, 0.0, 100, 11, 0.0), 0.0);
    assert!((cosine(10, 1.0, 0.0, 100, 11, 0.0) - 1.0).abs() < 1e-12);
    assert!((cosine(11, 1.0, 0.0, 100, 11, 0.0) - 1.0).abs() < 1e-12);
    assert!(cosine(100, 1.0, 0.1, 100, 11, 0.0) == 0.1);
    let c = TrainConfig::preset("vits14").expect("preset");
    let s0 = c.at(0);
    assert_eq!(s0.lr, 0.0);
    assert!((c.at(c.warmup_steps - 1).lr - 4e-3 * (64.0f32 / 1024.0).sqrt()).abs() < 1e-7);
    assert!(
        (s0.weight_decay - 0.04).abs() < 1e-7 && (c.at(c.steps).weight_decay - 0.4).abs() < 1e-7
    );
    assert!((s0.momentum - 0.992).abs() < 1e-7 && c.at(c.steps).momentum == 1.0);
    assert!(
        (s0.teacher_temp - 0.04).abs() < 1e-7 && (c.at(37_500).teacher_temp - 0.07).abs() < 1e-7
    );
    assert!(s0.freeze_last_layer && !c.at(1250).freeze_last_layer);
}

#[test]
fn parameter_groups_follow_dinov2() {
    use dinoscope::model::params::ParamLayout;
    use dinoscope::train::head::head_tensors;
    let c = TrainConfig::preset("vits14").expect("preset");
    let bl = dinoscope::model::vit::param_layout(&c.model);
    let hl = ParamLayout::new(&head_tensors(c.model.dim, &c.head, "dino_head."));
    let segs = dinoscope::train::trainer::param_segments(&c, &bl, &hl, true);
    let seg = |name: &str| {
        let e = bl
            .get(name)
            .map(|e| e.offset)
            .or_else(|| hl.get(name).map(|e| e.offset + bl.total))
            .expect(name);
        *segs.iter().find(|s| s.start == e).expect("segment")
    };
    let d = 0.9f32;
    assert!(
        (seg("pos_embed").lr_scale - d.powi(13)).abs() < 1e-7 && seg("pos_embed").wd_scale == 1.0
    );
    assert!((seg("patch_embed.proj.weight").lr_scale - 0.2 * d.powi(13)).abs() < 1e-7);
    assert!((seg("blocks.0.attn.qkv.weight").lr_scale - d.powi(12)).abs() < 1e-7);
    assert!((seg("blocks.11.mlp.fc1.weight").lr_scale - d).abs() < 1e-7);
    assert_eq!(seg("blocks.3.attn.qkv.bias").wd_scale, 0.0);
    assert_eq!(seg("blocks.3.norm1.weight").wd_scale, 0.0);
    assert_eq!(seg("blocks.3.ls1.gamma").wd_scale, 0.0);
    assert_eq!(seg("norm.weight").lr_scale, 1.0);
    assert_eq!(seg("dino_head.last_layer.weight_v").lr_scale, 0.0);
    assert_eq!(seg("dino_head.last_layer.weight_g").wd_scale, 1.0);
    assert_eq!(seg("dino_head.mlp.0.bias").wd_scale, 0.0);
}

fn state_of(dir: &Path) -> dinoscope::train::trainer::TrainState {
    load_checkpoint(dir).expect("checkpoint").1
}

/// Trains `cfg` into a fresh folder named `tag`: its steps' metrics and its final state (the
/// folder is removed).
fn steps_and_state(
    gpu: &dinoscope::gpu::Gpu,
    cfg: TrainConfig,
    tag: &str,
) -> (
    Vec<dinoscope::train::trainer::StepMetrics>,
    dinoscope::train::trainer::TrainState,
) {
    let dir = tmp(tag);
    let opts = RunOptions {
        out_dir: dir.clone(),
        ..Default::default()
    };
    let mut steps = Vec::new();
    run(gpu, cfg, &opts, |m, _| steps.push(m.clone())).expect("trains");
    let state = state_of(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    (steps, state)
}

/// The final state of `cfg` trained for 3 steps, then resumed to its end in a second run (the
/// folder is removed).
fn resumed_after_3(
    gpu: &dinoscope::gpu::Gpu,
    cfg: TrainConfig,
    tag: &str,
) -> dinoscope::train::trainer::TrainState {
    let dir = tmp(tag);
    let first = RunOptions {
        out_dir: dir.clone(),
        stop_after: Some(3),
        ..Default::default()
    };
    run(gpu, cfg.clone(), &first, |_, _| {}).expect("first half");
    let second = RunOptions {
        out_dir: dir.clone(),
        resume: true,
        ..Default::default()
    };
    run(gpu, cfg, &second, |_, _| {}).expect("second half");
    let state = state_of(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    state
}

#[test]
fn a_time_limit_fits_the_schedule_and_resumes_on_it() {
    use dinoscope::train::budget::FIT_AFTER;
    let Some(gpu) = common::gpu() else { return };
    let mut cfg = micro();
    cfg.steps = 40;
    cfg.eval_every = 20;
    cfg.checkpoint_every = 10;
    let dir = tmp("time-limit");
    let limited = RunOptions {
        out_dir: dir.clone(),
        stop_after: Some(FIT_AFTER + 2),
        time_limit: Some(std::time::Duration::from_secs(3600)),
        ..Default::default()
    };
    let mut seen = Vec::new();
    let summary = run(gpu, cfg.clone(), &limited, |m, steps| {
        seen.push((m.clone(), steps))
    })
    .expect("runs");
    let fit = summary.fit.expect("fitted after the timed steps");
    assert_eq!(summary.steps, FIT_AFTER + 2);
    assert!(!summary.stopped_at_limit);
    // An hour holds far more than 40 steps of this model on any adapter that passes selftest.
    assert!(fit.steps > 40 && fit.planned_steps == 40, "{fit:?}");
    assert!(fit.step_s > 0.0 && fit.eval_s > 0.0, "{fit:?}");
    // The checkpoint holds the fitted schedule, with the config's 2 evaluations and 4
    // checkpoints spread along it.
    let (fitted, state) = load_checkpoint(&dir).expect("checkpoint");
    assert_eq!(state.step, FIT_AFTER + 2);
    assert_eq!(fitted.steps, fit.steps);
    assert_eq!(fitted.eval_every, fit.steps.div_ceil(2));
    assert_eq!(fitted.checkpoint_every, fit.steps.div_ceil(4));
    // The baseline and step 20 were evaluated on the config's schedule.
    let evaluated: Vec<u64> = summary.evals.iter().map(|e| e.0).collect();
    assert_eq!(evaluated, [0, 20]);
    // Steps before the fit follow the config's schedule, later ones the fitted one.
    let follows = |m: &dinoscope::train::trainer::StepMetrics, c: &TrainConfig| {
        m.lr == c.at(m.step).lr && m.momentum == c.at(m.step).momentum
    };
    assert_ne!(cfg.at(FIT_AFTER).lr, fitted.at(FIT_AFTER).lr);
    for (m, steps) in &seen {
        let before = m.step < FIT_AFTER;
        let c = if before { &cfg } else { &fitted };
        assert!(follows(m, c), "step {}: lr {}", m.step, m.lr);
        assert_eq!(*steps, c.steps, "step {}", m.step);
    }
    // Resuming continues on the fitted schedule; a time limit cannot refit a resumed run.
    let err = run(
        gpu,
        cfg.clone(),
        &RunOptions {
            resume: true,
            ..limited.clone()
        },
        |_, _| {},
    )
    .expect_err("refused");
    assert!(err.contains("time limit"), "{err}");
    let mut resumed = Vec::new();
    let more = RunOptions {
        out_dir: dir.clone(),
        resume: true,
        stop_after: Some(2),
        ..Default::default()
    };
    run(gpu, cfg.clone(), &more, |m, _| resumed.push(m.clone())).expect("resumes");
    assert_eq!(resumed.len(), 2);
    assert!(resumed.iter().all(|m| follows(m, &fitted)));
    let _ = std::fs::remove_dir_all(&dir);
    // A limit that has passed before the first step stops the run with nothing to save.
    let passed = tmp("time-limit-passed");
    let summary = run(
        gpu,
        cfg,
        &RunOptions {
            out_dir: passed.clone(),
            time_limit: Some(std::time::Duration::from_nanos(1)),
            ..Default::default()
        },
        |_, _| panic!("no step runs"),
    )
    .expect("stops");
    assert!(summary.stopped_at_limit && summary.steps == 0 && summary.fit.is_none());
    assert!(!passed.join("checkpoints").exists());
    let _ = std::fs::remove_dir_all(&passed);
}

#[test]
fn resume_is_bit_exact() {
    let Some(gpu) = common::gpu() else { return };
    let cfg = micro();
    let straight = tmp("straight");
    let summary = run(
        gpu,
        cfg.clone(),
        &RunOptions {
            out_dir: straight.clone(),
            ..Default::default()
        },
        |_, _| {},
    )
    .expect("run");
    // The time spent waiting for batches is part of the loop's time.
    assert!(
        summary.loop_s > 0.0 && (0.0..=summary.loop_s).contains(&summary.data_wait_s),
        "waited {} s of {} s",
        summary.data_wait_s,
        summary.loop_s
    );
    let split = tmp("split");
    let first = RunOptions {
        out_dir: split.clone(),
        stop_after: Some(3),
        ..Default::default()
    };
    run(gpu, cfg.clone(), &first, |_, _| {}).expect("first half");
    assert_eq!(state_of(&split).step, 3);
    let second = RunOptions {
        out_dir: split.clone(),
        resume: true,
        ..Default::default()
    };
    run(gpu, cfg, &second, |_, _| {}).expect("second half");
    let (a, b) = (state_of(&straight), state_of(&split));
    assert_eq!(a.step, 6);
    assert!(a == b, "6 steps straight differ from 3 + resume + 3");
    // The metrics log holds the k-NN baseline and each step once.
    let lines = std::fs::read_to_string(split.join("metrics.jsonl")).expect("metrics");
    assert_eq!(lines.lines().count(), 7);
    assert_eq!(lines.matches("\"steps_done\":0").count(), 1);
    // With every block checkpointed, 3 + resume + 3 still ends exactly where the plain run did.
    let mut ck = micro();
    ck.checkpoint = dinoscope::train::config::Checkpoint::All;
    let c = resumed_after_3(gpu, ck, "split-checkpointed");
    assert!(
        a.student == c.student && a.teacher == c.teacher && a.m1 == c.m1 && a.m2 == c.m2,
        "checkpointed 3 + resume + 3 differs from 6 plain steps"
    );
    let _ = std::fs::remove_dir_all(&straight);
    let _ = std::fs::remove_dir_all(&split);
}

/// DINOv3's rotary coordinate rescaling draws its factors from the step, so a run with it (and
/// a checkpointed block, whose recomputation must rotate with the same factors) resumes
/// exactly; and the factors change the run.
#[test]
fn rope_rescaling_changes_the_run_and_resumes_exactly() {
    let Some(gpu) = common::gpu() else { return };
    let v3 = TrainConfig::preset("debug_v3").expect("preset").model;
    let mut cfg = micro();
    cfg.model = dinoscope::model::config::VitConfig {
        depth: 2,
        patch: 4,
        ..v3
    };
    cfg.checkpoint = dinoscope::train::config::Checkpoint::Blocks(1);
    let (_, p) = steps_and_state(gpu, cfg.clone(), "rope-plain");
    cfg.rope_rescale = Some(2.0);
    let (_, a) = steps_and_state(gpu, cfg.clone(), "rope-straight");
    let b = resumed_after_3(gpu, cfg, "rope-split");
    assert!(p.student != a.student, "rescaling changed nothing");
    assert!(a == b, "6 steps straight differ from 3 + resume + 3");
}

/// A mixed-precision run resumes with its loss scale: from 65,536 the first steps of this model
/// overflow and halve it, and 3 + resume + 3 steps end exactly where 6 straight ones do (a
/// resumed run that started the scale afresh would skip those steps again).
#[test]
fn a_mixed_run_resumes_with_its_loss_scale() {
    let Some(gpu) = common::gpu() else { return };
    if !gpu.features.contains(wgpu::Features::SHADER_F16) {
        return;
    }
    let mut cfg = micro();
    cfg.precision = dinoscope::train::config::Precision::Mixed;
    let (steps, a) = steps_and_state(gpu, cfg.clone(), "mixed-straight");
    let skipped = steps.iter().filter(|m| m.skipped).count();
    assert!(skipped >= 1, "no step overflowed at 65,536");
    let b = resumed_after_3(gpu, cfg, "mixed-split");
    let scale = a
        .loss_scale
        .as_ref()
        .expect("a mixed run saves its loss scale");
    assert!(scale[0] < 65536.0, "{scale:?}");
    assert!(a == b, "6 mixed steps straight differ from 3 + resume + 3");
}

#[test]
fn a_killed_run_resumes_exactly() {
    if common::gpu().is_none() {
        return;
    }
    let mut cfg = micro();
    cfg.steps = 8;
    cfg.checkpoint_every = 2;
    let cfg_dir = tmp("killcfg");
    std::fs::create_dir_all(&cfg_dir).expect("mkdir");
    let cfg_path = cfg_dir.join("micro.ron");
    std::fs::write(&cfg_path, cfg.to_ron()).expect("config");
    let exe = env!("CARGO_BIN_EXE_dinoscope");
    let train = |out: &Path, resume: bool| {
        let mut c = std::process::Command::new(exe);
        c.args(["train", "--config"])
            .arg(&cfg_path)
            .arg("--out")
            .arg(out);
        if resume {
            c.arg("--resume");
        }
        c
    };
    let straight = tmp("kill-straight");
    assert!(train(&straight, false).status().expect("run").success());
    let killed = tmp("killed");
    // Kill it with SIGKILL once a checkpoint past the start is written: the event is the run's
    // own log line for it, read as it comes.
    let mut child = train(&killed, false)
        .env("RUST_LOG", "dinoscope=info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let written = std::io::BufRead::lines(std::io::BufReader::new(stderr))
        .map_while(Result::ok)
        .find(|l| {
            l.split("checkpoint of step ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n >= 2)
        });
    assert!(written.is_some(), "the run logged no checkpoint");
    let (_, st) = load_checkpoint(&killed).expect("the checkpoint it logged");
    assert!(st.step >= 2);
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let at_kill = state_of(&killed).step;
    eprintln!("killed after the checkpoint of step {at_kill}");
    assert!(train(&killed, true).status().expect("resume").success());
    let (a, b) = (state_of(&straight), state_of(&killed));
    assert_eq!(a.step, 8);
    assert!(a == b, "the resumed run differs from the uninterrupted one");
    // The exported teacher backbone loads with its config, with exactly the expected tensors.
    let w = killed.join("teacher_backbone.safetensors");
    let mcfg =
        dinoscope::model::weights::config_for_weights(&w).expect("config.ron next to the weights");
    let loaded = dinoscope::model::weights::load_backbone(&w, &mcfg).expect("strict load");
    assert_eq!(
        loaded.tensors.len(),
        dinoscope::model::weights::expected_tensors(&mcfg).len()
    );
    for d in [straight, killed, cfg_dir] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// The CI learning test: the `debug` preset, as shipped and run whole, leaves ln K (the DINO
/// loss of the last tenth of its steps below 0.95·ln K) and gains at least ten k-NN points over
/// its own random init on the bundled Fashion-MNIST (BENCHMARKS.md's learning curve).
#[test]
fn debug_preset_leaves_ln_k_and_gains_ten_knn_points() {
    let Some(gpu) = common::gpu() else { return };
    use dinoscope::train::run::datasets;
    let mut cfg = TrainConfig::preset("debug").expect("preset");
    let steps = cfg.steps;
    // Only the baseline and the evaluation at the end.
    cfg.eval_every = steps;
    cfg.checkpoint_every = 0;
    let (_, eval) = datasets(None).expect("bundled data");
    let (tr, te) = eval.expect("labelled sets");
    assert!(tr.len() >= 2000 && te.len() >= 1000);
    let out = tmp("learn");
    let t0 = std::time::Instant::now();
    let mut dino = Vec::new();
    let summary = run(
        gpu,
        cfg.clone(),
        &RunOptions {
            out_dir: out.clone(),
            ..Default::default()
        },
        |m, _| dino.push(m.dino),
    )
    .expect("train");
    // The random-init baseline is measured before the first step and logged as such.
    let (at, before) = summary.evals[0];
    assert_eq!(at, 0);
    let first = std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics");
    let first: serde_json::Value =
        serde_json::from_str(first.lines().next().expect("a line")).expect("json");
    assert_eq!(first["steps_done"], 0);
    assert_eq!(first["knn"].as_f64().map(|v| v as f32), Some(before.knn));
    assert_eq!(
        first["probe"].as_f64().map(|v| v as f32),
        Some(before.probe)
    );
    let (end, after) = *summary.evals.last().expect("evaluation at the end");
    assert_eq!((end, dino.len() as u64), (steps, steps));
    let ln_k = (cfg.head.prototypes as f32).ln();
    let tail = &dino[dino.len() - (dino.len() / 10).max(1)..];
    let late = tail.iter().sum::<f32>() / tail.len() as f32;
    eprintln!(
        "debug preset, {steps} steps of {} images ({:.0} s): DINO loss {:.3} ln K over the last tenth; \
         k-NN (k=20, T=0.07, {} train → {} test) {:.1}% at init → {:.1}%; linear probe {:.1}% → {:.1}%",
        cfg.batch_size,
        t0.elapsed().as_secs_f64(),
        late / ln_k,
        cfg.knn_train,
        cfg.knn_test,
        before.knn * 100.0,
        after.knn * 100.0,
        before.probe * 100.0,
        after.probe * 100.0
    );
    assert!(
        late < 0.95 * ln_k,
        "the DINO loss {late} did not leave ln K = {ln_k} (0.95 ln K = {})",
        0.95 * ln_k
    );
    assert!(
        after.knn >= before.knn + 0.10,
        "k-NN {} is not 10 points above {} at init",
        after.knn,
        before.knn
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn separate_ibot_head_and_sinkhorn_targets_train() {
    let Some(gpu) = common::gpu() else { return };
    use dinoscope::train::head::HeadConfig;
    let mut cfg = micro();
    cfg.ibot_head = Some(HeadConfig {
        hidden: 64,
        bottleneck: 16,
        prototypes: 24,
    });
    cfg.targets = dinoscope::train::config::Targets::SinkhornKnopp;
    cfg.steps = 2;
    let out = tmp("ibot-head");
    let mut seen = Vec::new();
    run(
        gpu,
        cfg.clone(),
        &RunOptions {
            out_dir: out.clone(),
            ..Default::default()
        },
        |m, _| seen.push(m.clone()),
    )
    .expect("run");
    assert_eq!(seen.len(), 2);
    for m in &seen {
        assert!(m.dino.is_finite() && m.ibot.is_finite() && m.koleo.is_finite());
        assert!(m.masked > 0 && m.ibot > 0.0, "iBOT loss on masked patches");
    }
    let (_, st) = load_checkpoint(&out).expect("checkpoint");
    assert_eq!(st.center_ibot.len(), 24);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn out_of_range_settings_are_refused_with_their_name() {
    let base = TrainConfig::preset("debug").expect("preset");
    type Change = Box<dyn Fn(&mut TrainConfig)>;
    let cases: Vec<(&str, Change)> = vec![
        ("base_lr", Box::new(|c| c.base_lr = -1e-3)),
        ("base_lr", Box::new(|c| c.base_lr = f32::NAN)),
        ("student_temp", Box::new(|c| c.student_temp = 0.0)),
        ("teacher_temp", Box::new(|c| c.teacher_temp.1 = -0.04)),
        (
            "weight_decay",
            Box::new(|c| c.weight_decay.0 = f32::INFINITY),
        ),
        ("momentum", Box::new(|c| c.momentum = (0.99, 1.5))),
        ("koleo_weight", Box::new(|c| c.koleo_weight = -0.1)),
    ];
    for (name, f) in cases {
        let mut c = base.clone();
        f(&mut c);
        let err = TrainConfig::from_ron(&c.to_ron(), "test.ron").expect_err(name);
        assert!(err.contains(name) && err.contains("test.ron"), "{err}");
    }
    for p in dinoscope::train::config::TRAIN_PRESETS {
        TrainConfig::preset(p).expect(p);
    }
}

#[test]
fn a_run_folder_is_never_restarted_silently_and_one_process_trains_into_it() {
    let Some(gpu) = common::gpu() else { return };
    let mut cfg = micro();
    cfg.steps = 2;
    cfg.checkpoint_every = 0;
    let dir = tmp("guarded");
    let opts = |resume: bool, overwrite: bool| RunOptions {
        out_dir: dir.clone(),
        resume,
        overwrite,
        ..Default::default()
    };
    run(gpu, cfg.clone(), &opts(false, false), |_, _| {}).expect("first run");
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).expect("metrics");
    assert_eq!(
        metrics.lines().count(),
        3,
        "the k-NN baseline and two steps"
    );
    // A second run into the same folder without --resume is refused and changes nothing.
    let err = run(gpu, cfg.clone(), &opts(false, false), |_, _| {}).expect_err("refused");
    assert!(
        err.contains("--resume") && err.contains("--overwrite"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("metrics.jsonl")).expect("metrics"),
        metrics
    );
    // Resuming for zero more steps keeps every line.
    let zero = RunOptions {
        stop_after: Some(0),
        ..opts(true, false)
    };
    run(gpu, cfg.clone(), &zero, |_, _| {}).expect("resume for 0 steps");
    assert_eq!(
        std::fs::read_to_string(dir.join("metrics.jsonl")).expect("metrics"),
        metrics
    );
    // A live process's lock keeps others out; a dead one's is taken over.
    let lock = dir.join(".dinoscope.lock");
    std::fs::write(&lock, format!("{}\n", std::process::id())).expect("lock");
    let err = run(gpu, cfg.clone(), &opts(false, true), |_, _| {}).expect_err("locked");
    assert!(err.contains("another dinoscope"), "{err}");
    if cfg!(target_os = "linux") {
        // Elsewhere a process cannot be looked up, so a stale lock is removed by hand.
        let mut gone = std::process::Command::new("true").spawn().expect("spawn");
        let dead = gone.id();
        gone.wait().expect("wait");
        std::fs::write(&lock, format!("{dead}\n")).expect("stale lock");
        run(gpu, cfg, &opts(false, true), |_, _| {}).expect("overwrite takes a stale lock");
        assert!(!lock.exists(), "the lock is released at the end");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Flips bytes in the middle of a file, keeping its length.
fn damage(p: &Path) {
    let mut b = std::fs::read(p).expect("read");
    let mid = b.len() / 2;
    for x in &mut b[mid..mid + 8] {
        *x ^= 0x5A;
    }
    std::fs::write(p, b).expect("write");
}

#[test]
fn checkpoints_are_whole_verified_and_fall_back_when_damaged() {
    use dinoscope::train::checkpoint;
    let Some(gpu) = common::gpu() else { return };
    let mut cfg = micro();
    cfg.steps = 4;
    cfg.checkpoint_every = 1;
    let dir = tmp("units");
    let opts = RunOptions {
        out_dir: dir.clone(),
        ..Default::default()
    };
    run(gpu, cfg.clone(), &opts, |_, _| {}).expect("run");
    // The newest two are kept, each a folder with its manifest; the run folder's exports are
    // the latest checkpoint's.
    let kept: Vec<u64> = checkpoint::list(&dir).iter().map(|c| c.0).collect();
    assert_eq!(kept, vec![4, 3]);
    let latest = &checkpoint::list(&dir)[0].1;
    assert_eq!(
        std::fs::read(dir.join("teacher_backbone.safetensors")).expect("export"),
        std::fs::read(latest.join("teacher_backbone.safetensors")).expect("checkpoint")
    );
    let straight = checkpoint::load(&dir).expect("load");
    assert_eq!(straight.state.step, 4);
    assert!(straight.skipped.is_empty());

    // A write that fails half-way (here: a file that cannot be created) publishes nothing and
    // leaves the previous checkpoint whole, and says so.
    let err = checkpoint::save_files(
        &dir,
        5,
        &[
            ("state.safetensors", vec![1, 2, 3]),
            ("no/such/folder.ron", vec![4]),
        ],
    )
    .expect_err("a failing write");
    assert!(
        err.contains("step 5 was not saved") && err.contains("checkpoint of step 4"),
        "{err}"
    );
    assert_eq!(checkpoint::list(&dir).len(), 2);
    assert!(std::fs::read_dir(dir.join("checkpoints"))
        .expect("list")
        .flatten()
        .all(|e| !e.file_name().to_string_lossy().ends_with(".partial")));
    assert_eq!(checkpoint::load(&dir).expect("load").state.step, 4);

    // Damaged bytes in the latest state: the checksum catches it, and loading falls back.
    damage(&latest.join("state.safetensors"));
    let fell_back = checkpoint::load(&dir).expect("fallback");
    assert_eq!(fell_back.state.step, 3);
    assert!(
        fell_back.skipped.len() == 1 && fell_back.skipped[0].contains("checksum"),
        "{:?}",
        fell_back.skipped
    );
    // Resuming goes on from step 3 and ends where the undamaged run ended, bit for bit.
    let resumed = RunOptions {
        out_dir: dir.clone(),
        resume: true,
        ..Default::default()
    };
    run(gpu, cfg.clone(), &resumed, |_, _| {}).expect("resume");
    let again = checkpoint::load(&dir).expect("load");
    assert!(again.skipped.is_empty());
    assert!(again.state == straight.state, "the redone steps differ");

    // Every checkpoint damaged: an error that names each, never a silent restart.
    for (_, d) in checkpoint::list(&dir) {
        damage(&d.join("state.safetensors"));
    }
    let err = checkpoint::load(&dir).expect_err("nothing usable");
    assert!(
        err.contains("no usable checkpoint") && err.matches("skipped").count() == 2,
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn non_finite_steps_stop_the_run_with_the_term_and_weights_with_nan_are_refused() {
    let Some(gpu) = common::gpu() else { return };
    // A learning rate this large sends the weights to infinity in one update.
    let mut cfg = micro();
    cfg.steps = 6;
    cfg.checkpoint_every = 0;
    cfg.base_lr = 1e30;
    cfg.warmup_steps = 0;
    let dir = tmp("nan");
    let opts = RunOptions {
        out_dir: dir.clone(),
        ..Default::default()
    };
    let err = run(gpu, cfg, &opts, |_, _| {}).expect_err("diverges");
    assert!(err.starts_with("step "), "{err}");
    assert!(
        err.contains("NaN") || err.contains("inf"),
        "names the non-finite term: {err}"
    );
    assert!(err.contains("no checkpoint was saved yet"), "{err}");

    // Weights holding NaN are refused on load, with the tensor named.
    let mut good = micro();
    good.steps = 1;
    let ok_dir = tmp("nan-weights");
    let opts = RunOptions {
        out_dir: ok_dir.clone(),
        ..Default::default()
    };
    run(gpu, good, &opts, |_, _| {}).expect("run");
    let w = ok_dir.join("teacher_backbone.safetensors");
    let f = dinoscope::fixtures::TensorFile::open(&w).expect("read");
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = f
        .names()
        .iter()
        .map(|n| {
            let t = f.get(n).expect("tensor");
            (n.clone(), t.shape.clone(), t.data.clone())
        })
        .collect();
    let victim = tensors
        .iter_mut()
        .find(|t| t.0 == "cls_token")
        .expect("cls_token");
    victim.2[0] = f32::NAN;
    let refs: Vec<(String, Vec<usize>, &[f32])> = tensors
        .iter()
        .map(|(n, s, d)| (n.clone(), s.clone(), d.as_slice()))
        .collect();
    let bad = ok_dir.join("bad.safetensors");
    std::fs::write(
        &bad,
        dinoscope::io::safetensors_bytes(&refs, None).expect("bytes"),
    )
    .expect("write");
    let cfg = dinoscope::model::weights::config_for_weights(&bad).expect("config.ron");
    let err = dinoscope::model::weights::load_backbone(&bad, &cfg)
        .expect_err("NaN refused")
        .to_string();
    assert!(err.contains("cls_token") && err.contains("NaN"), "{err}");
    for d in [dir, ok_dir] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn unknown_fields_and_impossible_sizes_are_refused_by_name_before_allocating() {
    let base = TrainConfig::preset("debug").expect("preset");
    // An unknown field: named, with its place in the file.
    let text = base
        .to_ron()
        .replacen("batch_size:", "batch_sise: 8,\n    batch_size:", 1);
    let err = TrainConfig::from_ron(&text, "typo.ron").expect_err("unknown field");
    assert!(
        err.contains("batch_sise") && err.contains("typo.ron"),
        "{err}"
    );
    let line = text
        .lines()
        .position(|l| l.contains("batch_sise"))
        .expect("inserted")
        + 1;
    assert!(err.contains(&format!("{line}:")), "line and column: {err}");
    type Change = Box<dyn Fn(&mut TrainConfig)>;
    let cases: Vec<(&str, Change)> = vec![
        (
            "prototypes",
            Box::new(|c| c.head.prototypes = 1_000_000_000),
        ),
        (
            "trainable parameters",
            Box::new(|c| c.head.hidden = 600_000),
        ),
        (
            "trainable parameters",
            Box::new(|c| {
                c.model.dim = 64_000;
                c.model.heads = 1_000;
            }),
        ),
        (
            "trainable parameters",
            Box::new(|c| c.model.depth = 10_000_000),
        ),
        ("tokens", Box::new(|c| c.model.registers = 300_000)),
        ("in_chans", Box::new(|c| c.model.in_chans = 1)),
        ("batch_size", Box::new(|c| c.batch_size = 100_000_000)),
    ];
    for (what, f) in cases {
        let mut c = base.clone();
        if what == "tokens" {
            // Keep the registers' own size check out of the way.
            c.model.dim = 64;
            c.model.heads = 1;
        }
        f(&mut c);
        let err = TrainConfig::from_ron(&c.to_ron(), "big.ron").expect_err(what);
        assert!(
            err.contains(what) && err.contains("big.ron"),
            "{what}: {err}"
        );
    }
}

#[test]
fn train_makes_a_new_folder_per_run_and_latest_points_at_it() {
    if common::gpu().is_none() {
        return;
    }
    let mut cfg = micro();
    cfg.steps = 2;
    cfg.checkpoint_every = 0;
    let cwd = tmp("cwd");
    std::fs::create_dir_all(&cwd).expect("mkdir");
    std::fs::write(cwd.join("micro.ron"), cfg.to_ron()).expect("config");
    let exe = env!("CARGO_BIN_EXE_dinoscope");
    let train = |extra: &[&str]| {
        let out = std::process::Command::new(exe)
            .current_dir(&cwd)
            .args(["train", "--config", "micro.ron"])
            .args(extra)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    train(&["--stop-after", "1"]);
    // The second run is longer than its config says; its own config records that.
    train(&["--stop-after", "1", "--steps", "3"]);
    let mut runs: Vec<PathBuf> = std::fs::read_dir(cwd.join("runs"))
        .expect("runs/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| !p.ends_with("latest"))
        .collect();
    runs.sort();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(runs.iter().all(|r| r
        .file_name()
        .is_some_and(
            |n| n.to_string_lossy().ends_with("micro") || n.to_string_lossy().contains("micro-")
        )));
    let latest = cwd.join("runs/latest");
    assert!(state_of(&latest).step == 1);
    // --resume without --out continues the latest run to its own length; the first is untouched.
    let first = state_of(&runs[0]);
    train(&["--resume"]);
    assert_eq!(state_of(&latest).step, 3);
    assert!(state_of(&runs[0]) == first);
    let zero = std::process::Command::new(exe)
        .current_dir(&cwd)
        .args(["train", "--config", "micro.ron", "--steps", "0"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&zero.stderr);
    assert!(!zero.status.success() && err.contains("steps"), "{err}");
    let _ = std::fs::remove_dir_all(&cwd);
}

#[test]
fn a_model_without_layerscale_trains_and_exports() {
    // `layerscale: false` used to panic in the first forward ("no parameter
    // 'blocks.0.ls1.gamma'").
    let Some(gpu) = common::gpu() else { return };
    let mut cfg = micro();
    cfg.model.layerscale = false;
    cfg.steps = 2;
    cfg.checkpoint_every = 0;
    let dir = tmp("no-layerscale");
    let opts = RunOptions {
        out_dir: dir.clone(),
        ..Default::default()
    };
    let summary = run(gpu, cfg, &opts, |m, _| {
        assert!(m.non_finite().is_none(), "step {}: {m:?}", m.step)
    })
    .expect("trains");
    assert_eq!(summary.steps, 2);
    let w = dir.join("teacher_backbone.safetensors");
    let mcfg = dinoscope::model::weights::config_for_weights(&w).expect("config.ron");
    assert!(!mcfg.layerscale);
    let loaded = dinoscope::model::weights::load_backbone(&w, &mcfg).expect("strict load");
    assert!(!loaded.tensors.keys().any(|k| k.contains("gamma")));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The first collapse the diagnosis finds in a run of `cfg`, and the run's last metrics.
fn first_collapse(
    gpu: &dinoscope::gpu::Gpu,
    cfg: &TrainConfig,
    name: &str,
) -> (
    Option<dinoscope::train::diagnose::Diagnosis>,
    dinoscope::train::trainer::StepMetrics,
) {
    use dinoscope::train::diagnose::diagnose;
    let out = tmp(name);
    let mut found = None;
    let mut last = None;
    run(
        gpu,
        cfg.clone(),
        &RunOptions {
            out_dir: out.clone(),
            ..Default::default()
        },
        |m, _| {
            if found.is_none() {
                found = diagnose(m, cfg);
            }
            last = Some(m.clone());
        },
    )
    .expect("run");
    let _ = std::fs::remove_dir_all(&out);
    (found, last.expect("steps"))
}

/// Runs that collapse each way are told apart, and each remedy, applied, changes what it says.
#[test]
fn collapses_are_told_apart_and_their_remedies_apply() {
    let Some(gpu) = common::gpu() else { return };
    use dinoscope::train::config::{HeadInit, InitConfig, Targets};
    use dinoscope::train::diagnose::{Collapse, Remedy};
    // A step without the logged diagnostics is not judged uniform by its loss alone: with
    // Sinkhorn-Knopp targets a run that learns keeps its loss near ln K for a long time.
    let near = dinoscope::train::trainer::StepMetrics {
        step: 1000,
        dino: 0.98 * (256f32).ln(),
        ..Default::default()
    };
    let mut judged = TrainConfig::preset("debug").expect("preset");
    judged.head.prototypes = 256;
    assert_eq!(dinoscope::train::diagnose::diagnose(&near, &judged), None);
    let mut base = micro();
    base.steps = 24;
    base.warmup_steps = 4;
    base.log_every = 1;
    base.drop_path = 0.0;
    base.checkpoint_every = 0;
    // DINOv2's recipe (LayerScale from 1e-5, its head init, centering): every image's target is
    // the same flat one.
    let mut flat = base.clone();
    flat.model.layerscale = true;
    flat.init = InitConfig::default();
    flat.targets = Targets::Centering;
    flat.teacher_temp = (0.04, 0.07, 10);
    let (d, m) = first_collapse(gpu, &flat, "flat");
    let d = d.unwrap_or_else(|| panic!("no collapse found; last step {m:?}"));
    assert_eq!(d.collapse, Collapse::Uniform, "{}", d.message);
    assert_eq!(d.remedy, Remedy::InformativeTargets);
    assert!(d.message.contains("Sinkhorn-Knopp"), "{}", d.message);
    let mut fixed = flat.clone();
    d.remedy.apply(&mut fixed);
    assert_eq!(fixed.targets, Targets::SinkhornKnopp);
    assert_eq!(fixed.init.head, HeadInit::FanIn);
    assert!(fixed.init.layerscale >= 0.1 && fixed.teacher_temp.0 == 0.02);
    let (d2, m2) = first_collapse(gpu, &fixed, "flat-fixed");
    assert!(
        d2.as_ref().is_none_or(|d| d.collapse != Collapse::Uniform),
        "the remedy left the targets uniform: {d2:?} {m2:?}"
    );
    // A far too cold teacher with centering and a high learning rate: one prototype takes all.
    let mut one = base.clone();
    one.targets = Targets::Centering;
    one.teacher_temp = (0.002, 0.002, 1);
    one.base_lr = 0.5;
    let (d, m) = first_collapse(gpu, &one, "one");
    let d = d.unwrap_or_else(|| panic!("no collapse found; last step {m:?}"));
    assert_eq!(d.collapse, Collapse::OnePrototype, "{}", d.message);
    assert_eq!(d.remedy, Remedy::SpreadTargets);
    let mut fixed = one.clone();
    d.remedy.apply(&mut fixed);
    assert_eq!(fixed.targets, Targets::SinkhornKnopp);
    let (d2, m2) = first_collapse(gpu, &fixed, "one-fixed");
    assert!(
        d2.as_ref()
            .is_none_or(|d| d.collapse != Collapse::OnePrototype),
        "the remedy left one prototype: {d2:?} {m2:?}"
    );
}

/// The linear probe learns a linearly separable problem and cannot learn labels that are noise.
#[test]
fn the_linear_probe_separates_classes_and_not_noise() {
    let Some(gpu) = common::gpu() else { return };
    let (f, classes) = (24usize, 3u32);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f32 / (1u64 << 53) as f32
    };
    // Class c is shifted by 4 along axis c, on top of unit-scale noise in every channel (the
    // best linear rule errs on well under 1%).
    let mut sample = |n: usize| {
        let mut x = Vec::with_capacity(n * f);
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let c = i as u32 % classes;
            for j in 0..f {
                let noise = (uniform() - 0.5) * 3.4;
                x.push(noise + if j == c as usize { 4.0 } else { 0.0 } + 5.0);
            }
            y.push(c);
        }
        (x, y)
    };
    let (tr, tr_y) = sample(600);
    let (te, te_y) = sample(300);
    let acc = dinoscope::train::probe::linear_probe(gpu, &tr, &tr_y, &te, &te_y, f).expect("probe");
    assert!(acc > 0.95, "separable classes: {acc}");
    // Labels unrelated to the features: the probe cannot beat chance by much on new samples.
    let shuffled: Vec<u32> = (0..600u32).map(|i| (i * 7 / 5) % classes).collect();
    let acc =
        dinoscope::train::probe::linear_probe(gpu, &tr, &shuffled, &te, &te_y, f).expect("probe");
    assert!(acc < 0.5, "noise labels: {acc}");
}

/// A DINOv3 backbone (rotary positions, storage tokens, no key bias) trains with the DINOv2
/// losses and Sinkhorn-Knopp targets: the loss falls, and the exported teacher loads back (its
/// config inferred as DINOv3) and gives the checkpointed teacher's outputs bit for bit.
#[test]
fn a_dinov3_backbone_trains_and_its_export_loads_back() {
    let Some(gpu) = common::gpu() else { return };
    use dinoscope::gpu::Recorder;
    use dinoscope::model::vit::{param_layout, ForwardOptions, Vit};
    let mut cfg = micro();
    let v3 = TrainConfig::preset("debug_v3").expect("preset").model;
    assert!(v3.is_rope() && !v3.key_bias && v3.registers == 4);
    cfg.model = dinoscope::model::config::VitConfig {
        depth: 1,
        patch: 4,
        ..v3
    };
    cfg.drop_path = 0.0;
    cfg.steps = 40;
    cfg.checkpoint_every = 40;
    let dir = tmp("dinov3");
    let opts = RunOptions {
        out_dir: dir.clone(),
        ..Default::default()
    };
    let mut losses = Vec::new();
    run(gpu, cfg.clone(), &opts, |m, _| {
        assert!(m.non_finite().is_none(), "step {}: {m:?}", m.step);
        losses.push(m.loss);
    })
    .expect("trains");
    assert_eq!(losses.len(), 40);
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    let (first, last) = (mean(&losses[..10]), mean(&losses[30..]));
    eprintln!("loss: first ten {first:.4}, last ten {last:.4}");
    assert!(last < first, "loss did not fall: {first} → {last}");

    let w = dir.join("teacher_backbone.safetensors");
    let mcfg = dinoscope::model::weights::config_for_weights(&w).expect("config");
    assert_eq!(mcfg, cfg.model);
    let loaded = dinoscope::model::weights::load_backbone(&w, &mcfg).expect("strict load");
    assert!(!loaded.tensors.contains_key("pos_embed"));
    // The masked key bias stayed at zero; the query and value biases trained.
    let bias = &loaded.tensors["blocks.0.attn.qkv.bias"].data;
    let d = bias.len() / 3;
    assert!(bias[d..2 * d].iter().all(|v| *v == 0.0));
    assert!(bias[..d].iter().any(|v| *v != 0.0));
    let (_, state) = load_checkpoint(&dir).expect("checkpoint");
    let layout = param_layout(&cfg.model);
    let teacher = layout.unpack(&state.teacher[..layout.total]);
    let px: Vec<f32> = (0..2 * 3 * 16 * 24)
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let forward = |vit: &Vit| {
        let mut rec = Recorder::new(gpu);
        let pixels = gpu.upload(&px, &[2, 3, 16, 24]);
        let out = vit
            .forward(
                &mut rec,
                &pixels,
                2,
                16,
                24,
                None,
                &ForwardOptions::default(),
            )
            .expect("forward");
        rec.finish().expect("submit");
        gpu.read(&out.tokens).expect("read")
    };
    let from_state = Vit::from_host(gpu, cfg.model.clone(), &teacher).expect("model");
    let from_file = Vit::new(gpu, mcfg, &loaded).expect("model");
    assert_eq!(forward(&from_state), forward(&from_file));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Gram anchoring (DINOv3): zero before its start step, positive after, its gradient reaches
/// the backbone, the planner counts the Gram teacher's pass, and a run split around a refresh of
/// the Gram teacher resumes bit for bit (the Gram teacher is part of the checkpoint).
#[test]
fn gram_anchoring_trains_and_resumes_exactly() {
    let Some(gpu) = common::gpu() else { return };
    let mut cfg = micro();
    cfg.gram = Some(dinoscope::train::config::GramConfig {
        weight: 2.0,
        start: 2,
        refresh_every: 3,
    });
    let straight = tmp("gram-straight");
    let mut seen = Vec::new();
    run(
        gpu,
        cfg.clone(),
        &RunOptions {
            out_dir: straight.clone(),
            ..Default::default()
        },
        |m, _| seen.push((m.step, m.gram, m.loss, m.dino, m.ibot, m.koleo)),
    )
    .expect("run");
    assert_eq!(seen.len(), 6);
    for &(step, gram, loss, dino, ibot, koleo) in &seen {
        let g = gram.expect("a Gram value in a run that uses it");
        if step < 2 {
            assert_eq!(g, 0.0, "step {step}");
        } else {
            assert!(g > 0.0 && g.is_finite(), "step {step}: {g}");
        }
        let weighted = dino + ibot + 0.1 * koleo + if step >= 2 { 2.0 * g } else { 0.0 };
        assert!(
            (loss - weighted).abs() <= 1e-4 * weighted.abs(),
            "step {step}"
        );
    }
    let lines = std::fs::read_to_string(straight.join("metrics.jsonl")).expect("metrics");
    assert!(lines.contains("\"gram\":"), "{lines}");
    // Split at step 4: the Gram teacher was refreshed at 2 and is refreshed again at 5.
    let split = tmp("gram-split");
    let first = RunOptions {
        out_dir: split.clone(),
        stop_after: Some(4),
        ..Default::default()
    };
    run(gpu, cfg.clone(), &first, |_, _| {}).expect("first part");
    let mid = state_of(&split);
    assert!(mid.gram_teacher.is_some());
    let second = RunOptions {
        out_dir: split.clone(),
        resume: true,
        ..Default::default()
    };
    run(gpu, cfg.clone(), &second, |_, _| {}).expect("second part");
    let (a, b) = (state_of(&straight), state_of(&split));
    assert!(
        a == b,
        "6 steps straight differ from 4 + resume + 2 with Gram anchoring"
    );
    // Without the Gram loss the run ends elsewhere: its gradient reached the backbone.
    let mut off = cfg.clone();
    off.gram = None;
    let plain = tmp("gram-off");
    run(
        gpu,
        off.clone(),
        &RunOptions {
            out_dir: plain.clone(),
            ..Default::default()
        },
        |m, _| assert!(m.gram.is_none()),
    )
    .expect("run without Gram");
    let c = state_of(&plain);
    assert!(c.gram_teacher.is_none());
    assert!(a.student != c.student);
    // The plan of a Gram run counts the Gram teacher's weights and forward pass.
    let with = dinoscope::train::plan::plan(gpu, &cfg, 2).expect("plan");
    let without = dinoscope::train::plan::plan(gpu, &off, 2).expect("plan");
    assert!(with.peak_bytes > without.peak_bytes);
    for d in [straight, split, plain] {
        let _ = std::fs::remove_dir_all(&d);
    }
}

/// The largest |a − b| / |a| over two loss curves, step by step.
fn worst_relative_difference(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs() / a.abs())
        .fold(0.0f32, f32::max)
}

/// Mixed precision (f16 forward passes on f16 copies of the weights, f16 backward products with
/// a loss scale, f32 update) follows the f32 run step for step on the same data, with
/// checkpointed and kept blocks; overflowed steps are skipped and halve the scale; and the
/// planner finds it needs less memory for the same step.
#[test]
fn mixed_precision_follows_the_f32_run_and_needs_less_memory() {
    let Some(gpu) = common::gpu() else { return };
    if !gpu.features.contains(wgpu::Features::SHADER_F16) {
        return;
    }
    use dinoscope::train::config::{Checkpoint, Precision};
    let mut cfg = micro();
    cfg.model.depth = 2;
    cfg.checkpoint = Checkpoint::Blocks(1);
    cfg.steps = 24;
    cfg.checkpoint_every = 24;
    let mut curves = Vec::new();
    let mut traces = Vec::new();
    // The f16 comparison starts from a loss scale this model's gradients never overflow at;
    // the default one (65,536) is tried after.
    for (precision, scale) in [
        (Precision::F32, None),
        (Precision::Mixed, Some(4096.0)),
        (Precision::Mixed, None),
    ] {
        let mut c = cfg.clone();
        c.precision = precision;
        c.loss_scale = scale;
        let (steps, _) = steps_and_state(gpu, c, &format!("mixed-{precision:?}-{scale:?}"));
        for m in &steps {
            assert!(
                m.non_finite().is_none(),
                "{precision:?} step {}: {m:?}",
                m.step
            );
        }
        curves.push(steps.iter().map(|m| m.loss).collect::<Vec<f32>>());
        traces.push(
            steps
                .iter()
                .map(|m| (m.loss_scale, m.skipped))
                .collect::<Vec<_>>(),
        );
    }
    // f32 steps report no scale; the f16 comparison run never skips.
    assert!(traces[0].iter().all(|&(s, skip)| s.is_none() && !skip));
    assert!(
        traces[1]
            .iter()
            .all(|&(s, skip)| s == Some(4096.0) && !skip),
        "{:?}",
        traces[1]
    );
    // From 65,536 this model's first gradients overflow f16: such a step is skipped and halves
    // the scale; a finite one keeps it (the growth interval is 2,000 steps).
    let default = &traces[2];
    eprintln!("default loss scale: {default:?}");
    assert_eq!(default[0], (Some(65536.0), true), "65,536 did not overflow");
    assert!(default.iter().any(|&(_, skip)| !skip), "every step skipped");
    for w in default.windows(2) {
        let ((Some(a), skip), (Some(b), _)) = (w[0], w[1]) else {
            panic!("a mixed step without a loss scale: {default:?}");
        };
        assert_eq!(b, if skip { a / 2.0 } else { a }, "{default:?}");
    }
    let (full, mixed) = (&curves[0], &curves[1]);
    let worst = worst_relative_difference(full, mixed);
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    eprintln!(
        "loss f32 {:.4} → {:.4}, mixed {:.4} → {:.4}; worst step difference {:.2}%",
        full[0],
        mean(&full[14..]),
        mixed[0],
        mean(&mixed[14..]),
        100.0 * worst
    );
    assert!(
        mixed != full,
        "the mixed run gave the f32 losses bit for bit"
    );
    assert!((full[0] - mixed[0]).abs() <= 1e-3 * full[0].abs());
    assert!(
        worst < 0.02,
        "mixed precision drifted {:.2}% from f32",
        100.0 * worst
    );
    // With attention on cooperative matrices (where the adapter has them: CI's Mesa 26.1
    // root): the forward, then the backward too, each run on a device of its own so that its
    // choices reach no other test. Each must change the losses, so each kernel ran.
    if gpu.coop_side().is_some() {
        use dinoscope::kernels::attention_plan::{F16_BACKWARD, F16_FORWARD};
        let mut before = mixed.clone();
        for passes in [&[F16_FORWARD][..], &[F16_FORWARD, F16_BACKWARD]] {
            let choice = dinoscope::gpu::AdapterChoice::from_env();
            let mut own = dinoscope::gpu::Gpu::new_blocking(&choice).expect("adapter");
            dinoscope::kernels::matmul::probe_coop(&mut own).expect("cooperative matrices");
            for pass in passes {
                own.set_choice(pass, "coop");
            }
            let mut c = cfg.clone();
            c.precision = Precision::Mixed;
            c.loss_scale = Some(4096.0);
            let (steps, _) = steps_and_state(&own, c, &format!("mixed-coop-{}", passes.len()));
            assert!(steps.iter().all(|m| m.non_finite().is_none() && !m.skipped));
            let coop: Vec<f32> = steps.iter().map(|m| m.loss).collect();
            let worst_coop = worst_relative_difference(full, &coop);
            eprintln!(
                "{passes:?} on cooperative matrices: worst step difference {:.2}%",
                100.0 * worst_coop
            );
            assert!(
                coop != before,
                "{passes:?}: the last coop kernel did not run"
            );
            assert!(
                worst_coop < 0.02,
                "mixed precision with {passes:?} on cooperative matrices drifted {:.2}% from f32",
                100.0 * worst_coop
            );
            before = coop;
        }
    }

    // A DINOv3 backbone (rotary positions, storage tokens, no key bias) follows its f32 run the
    // same way.
    let v3 = TrainConfig::preset("debug_v3").expect("preset").model;
    let mut c3 = micro();
    c3.model = dinoscope::model::config::VitConfig {
        depth: 2,
        patch: 4,
        ..v3
    };
    c3.steps = 12;
    c3.checkpoint_every = 12;
    c3.loss_scale = Some(4096.0);
    // Without iBOT: under rotary positions a masked patch enters the first layer norm as the
    // zero mask token (as in DINOv3), whose backward multiplies its gradient by 1/√eps, so at
    // 4,096 the first steps would overflow and be skipped; the comparison wants none skipped.
    c3.ibot_weight = 0.0;
    let mut v3_curves = Vec::new();
    for precision in [Precision::F32, Precision::Mixed] {
        let mut c = c3.clone();
        c.precision = precision;
        let (steps, _) = steps_and_state(gpu, c, &format!("mixed-v3-{precision:?}"));
        for m in &steps {
            assert!(
                m.non_finite().is_none() && !m.skipped,
                "{precision:?}: {m:?}"
            );
        }
        v3_curves.push(steps.iter().map(|m| m.loss).collect::<Vec<f32>>());
    }
    let worst_v3 = worst_relative_difference(&v3_curves[0], &v3_curves[1]);
    eprintln!(
        "DINOv3 backbone: worst step difference {:.2}%",
        100.0 * worst_v3
    );
    assert!(v3_curves[0] != v3_curves[1]);
    assert!(
        worst_v3 < 0.02,
        "DINOv3 mixed drifted {:.2}%",
        100.0 * worst_v3
    );

    // The `debug` preset's step (batch 32, 2×28 + no locals): activations are stored in f16.
    let debug = TrainConfig::preset("debug").expect("preset");
    let mut half = debug.clone();
    half.precision = Precision::Mixed;
    let p32 = dinoscope::train::plan::plan(gpu, &debug, 1).expect("plan");
    let p16 = dinoscope::train::plan::plan(gpu, &half, 1).expect("plan");
    eprintln!(
        "debug peak: f32 {} B, mixed {} B (state {} / {} B)",
        p32.peak_bytes, p16.peak_bytes, p32.state_bytes, p16.state_bytes
    );
    assert!(p16.peak_bytes < p32.peak_bytes);
}
