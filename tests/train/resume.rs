//! Exact resume: in process, after a stop request, SIGINT and SIGKILL, with a time limit, rotary rescaling and a loss scale.

use super::*;

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
        cfg.clone(),
        &RunOptions {
            out_dir: passed.clone(),
            time_limit: Some(std::time::Duration::from_nanos(1)),
            ..Default::default()
        },
        |_, _| panic!("no step runs"),
    )
    .expect("stops");
    assert!(summary.stopped_at_limit && summary.steps == 0 && summary.fit.is_none());
    // Nothing trained, nothing kept: not even the folder the run made.
    assert!(!passed.exists());
    let _ = std::fs::remove_dir_all(&passed);
    // A run that ends before its steps were timed saves a schedule fitted from the pace of the
    // steps it took (the hour left holds more than the config's 40), not the config's own.
    let early = tmp("time-limit-early");
    let summary = run(
        gpu,
        cfg.clone(),
        &RunOptions {
            out_dir: early.clone(),
            stop_after: Some(5),
            time_limit: Some(std::time::Duration::from_secs(3600)),
            ..Default::default()
        },
        |_, _| {},
    )
    .expect("runs");
    let fit = summary.fit.expect("fitted when it ended");
    let (saved, state) = load_checkpoint(&early).expect("checkpoint");
    assert_eq!(state.step, 5);
    assert_eq!(saved.steps, fit.steps);
    assert!(fit.steps > 40 && fit.planned_steps == 40, "{fit:?}");
    let _ = std::fs::remove_dir_all(&early);
    // The same when a stop request lands at a checkpoint (nothing in flight there): the
    // checkpoint written at that step is written again with the fitted schedule.
    let quiet = tmp("time-limit-quiet");
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut at_checkpoint = cfg.clone();
    at_checkpoint.checkpoint_every = 5;
    let summary = run(
        gpu,
        at_checkpoint,
        &RunOptions {
            out_dir: quiet.clone(),
            time_limit: Some(std::time::Duration::from_secs(3600)),
            stop: Some(flag.clone()),
            ..Default::default()
        },
        |m, _| {
            if m.step + 1 == 5 {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        },
    )
    .expect("runs");
    assert!(summary.interrupted && summary.steps == 5, "{summary:?}");
    let fit = summary.fit.expect("fitted when it stopped");
    let (saved, state) = load_checkpoint(&quiet).expect("checkpoint");
    assert_eq!(state.step, 5);
    assert_eq!(saved.steps, fit.steps);
    assert!(fit.steps > 40, "{fit:?}");
    let _ = std::fs::remove_dir_all(&quiet);
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
    run(gpu, cfg.clone(), &second, |_, _| {}).expect("second half");
    let (a, b) = (state_of(&straight), state_of(&split));
    assert_eq!(a.step, 6);
    assert!(a == b, "6 steps straight differ from 3 + resume + 3");
    // A checkpoint's state file alone in a folder (what the browser's "Download checkpoint"
    // gives) resumes the same way.
    let step3 = dinoscope::train::checkpoint::list(&split)
        .into_iter()
        .find(|(s, _)| *s == 3)
        .expect("the checkpoint of step 3")
        .1;
    let lone = tmp("lone-state");
    std::fs::create_dir_all(&lone).expect("folder");
    let state = dinoscope::train::checkpoint::STATE;
    // The browser's state file carries the run's log (it has no folder for it): here the
    // split run's lines before step 3.
    let split_log = std::fs::read_to_string(split.join("metrics.jsonl")).expect("log");
    let before: Vec<&str> = split_log
        .lines()
        .filter(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json line");
            v["step"].as_u64().is_none_or(|s| s < 3)
        })
        .collect();
    let bytes = std::fs::read(step3.join(state)).expect("state");
    let carried = with_metadata(&bytes, "metrics_log", &before.join("\n"));
    std::fs::write(lone.join(state), &carried).expect("write");
    let from_file = RunOptions {
        out_dir: lone.clone(),
        resume: true,
        ..Default::default()
    };
    run(gpu, cfg.clone(), &from_file, |_, _| {}).expect("resumed from the state file");
    assert!(state_of(&lone) == a, "a lone state file resumed elsewhere");
    // Its folder now records its data (the bundled set), as a new run's does.
    let record = std::fs::read_to_string(lone.join("data.json")).expect("the data recorded");
    assert!(record.contains("\"data\":null"), "{record}");
    // Its log became the folder's: the steps before the checkpoint as the split run logged
    // them, then the resumed ones.
    let lone_log = std::fs::read_to_string(lone.join("metrics.jsonl")).expect("log");
    let steps: Vec<u64> = lone_log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["step"].as_u64())
        .collect();
    assert_eq!(steps, [0, 1, 2, 3, 4, 5], "{lone_log}");
    assert!(lone_log.starts_with(&before.join("\n")), "{lone_log}");
    // A train.ron written over the run's (a changed recipe) is kept before a checkpoint
    // replaces it; the run goes on with its checkpoint's config.
    let own = lone.join("train.ron");
    let mut changed = cfg.clone();
    changed.steps += 10;
    std::fs::remove_file(&own).expect("the run's train.ron");
    std::fs::write(&own, changed.to_ron()).expect("write");
    let again = RunOptions {
        stop_after: Some(0),
        ..from_file.clone()
    };
    run(gpu, cfg.clone(), &again, |_, _| {}).expect("resumes");
    assert_eq!(
        std::fs::read_to_string(lone.join("train.ron.edited")).expect("kept"),
        changed.to_ron()
    );
    // The downloaded file is the user's and stays; the run's newer checkpoint is the one read.
    assert!(std::fs::read(lone.join(state)).is_ok_and(|b| b == carried));
    let loaded = dinoscope::train::checkpoint::load(&lone).expect("loads");
    assert_ne!(loaded.from, lone.join(state));
    let _ = std::fs::remove_dir_all(&lone);
    // A stop request (what Ctrl-C sets) ends the run after the step in flight, with a
    // checkpoint there, though the config saves only at the end; the run resumes from it
    // exactly.
    let mut no_saves = cfg.clone();
    no_saves.checkpoint_every = 0;
    // An evaluation is due at the step the run stops on: the resumed run makes it first.
    no_saves.eval_every = 3;
    let stopped = tmp("stopped");
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let asked = RunOptions {
        out_dir: stopped.clone(),
        stop: Some(flag.clone()),
        ..Default::default()
    };
    let mut seen = 0;
    let summary = run(gpu, no_saves.clone(), &asked, |m, _| {
        seen += 1;
        if m.step == 1 {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    })
    .expect("stopped run");
    // Step 2 was already submitted when step 1's metrics asked to stop.
    assert!(
        summary.interrupted && summary.steps == 3 && seen == 3,
        "interrupted {}, {} steps, {seen} reported",
        summary.interrupted,
        summary.steps
    );
    assert_eq!(state_of(&stopped).step, 3);
    let resumed = RunOptions {
        out_dir: stopped.clone(),
        resume: true,
        ..Default::default()
    };
    let evals = |s: &dinoscope::train::run::RunSummary| -> Vec<u64> {
        s.evals.iter().map(|e| e.0).collect()
    };
    assert_eq!(evals(&summary), [0]);
    // An evaluation was due at step 3, where the run stopped: resuming makes it first (here a
    // resume that stops at once), once, however often the run resumes from there.
    let none = RunOptions {
        stop_after: Some(0),
        ..resumed.clone()
    };
    let eval_only = run(gpu, no_saves.clone(), &none, |_, _| {}).expect("resumed for 0 steps");
    assert_eq!((evals(&eval_only), eval_only.steps), (vec![3], 3));
    let rest = run(gpu, no_saves, &resumed, |_, _| {}).expect("resumed");
    assert!(!rest.interrupted);
    assert_eq!(evals(&rest), [6]);
    let log = std::fs::read_to_string(stopped.join("metrics.jsonl")).expect("metrics");
    let evaluated = |s: &str| {
        log.lines()
            .filter(|l| l.contains(s) && l.contains("knn"))
            .count()
    };
    assert_eq!(
        (
            evaluated("\"steps_done\":0"),
            evaluated("\"steps_done\":3"),
            evaluated("\"step\":5,")
        ),
        (1, 1, 1),
        "{log}"
    );
    assert!(
        state_of(&stopped) == a,
        "stopped at 3 + resume differs from 6 steps straight"
    );
    let _ = std::fs::remove_dir_all(&stopped);
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
    if !common::f16(gpu, "a_mixed_run_resumes_with_its_loss_scale") {
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
    // Long enough that the kill, sent as the log line of step 2's checkpoint is read, lands
    // well before the end (asserted below: a run that finished first would prove nothing).
    cfg.steps = 24;
    cfg.checkpoint_every = 2;
    let cfg_dir = tmp("killcfg");
    std::fs::create_dir_all(&cfg_dir).expect("mkdir");
    let cfg_path = cfg_dir.join("micro.ron");
    std::fs::write(&cfg_path, cfg.to_ron()).expect("config");
    let train = |out: &Path, resume: bool| {
        let extra: &[&str] = if resume { &["--resume"] } else { &[] };
        cli_train(&cfg_path, out, extra)
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
    // Killed as soon as the line is read, before anything else here takes time.
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert!(written.is_some(), "the run logged no checkpoint");
    let (_, st) = load_checkpoint(&killed).expect("the checkpoint it logged");
    assert!(st.step >= 2);
    let at_kill = state_of(&killed).step;
    eprintln!("killed after the checkpoint of step {at_kill}");
    assert!(at_kill < cfg.steps, "the run ended before the kill");
    assert!(train(&killed, true).status().expect("resume").success());
    let (a, b) = (state_of(&straight), state_of(&killed));
    assert_eq!(a.step, cfg.steps);
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

/// A run started on an image folder records it (`data.json`), and `--resume` without `--data`
/// continues on it: the resumed run ends where an uninterrupted run on the folder does, bit for
/// bit (the bundled Fashion-MNIST would give other batches), also where the folder's name is
/// not UTF-8 (Unix). `--stop-after 0` is refused before
/// any folder is made.
#[test]
fn a_resumed_run_continues_on_its_own_data() {
    if common::gpu().is_none() {
        return;
    }
    let mut cfg = micro();
    cfg.steps = 6;
    cfg.checkpoint_every = 1;
    let dir = tmp("owndata");
    #[cfg(unix)]
    let photos = {
        use std::os::unix::ffi::OsStrExt;
        dir.join(std::ffi::OsStr::from_bytes(b"photos\xff"))
    };
    #[cfg(not(unix))]
    let photos = dir.join("photos");
    std::fs::create_dir_all(&photos).expect("mkdir");
    for i in 0..12u32 {
        let img = image::RgbImage::from_fn(24, 20, |x, y| {
            image::Rgb([
                (x * 9 + i * 20) as u8,
                (y * 11 + i * 7) as u8,
                (x * y + i) as u8,
            ])
        });
        img.save(photos.join(format!("{i:02}.png"))).expect("png");
    }
    let cfg_path = dir.join("micro.ron");
    std::fs::write(&cfg_path, cfg.to_ron()).expect("config");
    let (split, straight) = (dir.join("split"), dir.join("straight"));
    let ok = |c: &mut std::process::Command| {
        let out = c.output().expect("run dinoscope");
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{err}");
        err
    };
    ok(cli_train(&cfg_path, &straight, &["--stop-after", "3"])
        .arg("--data")
        .arg(&photos));
    ok(cli_train(&cfg_path, &split, &["--stop-after", "2"])
        .arg("--data")
        .arg(&photos));
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(split.join("data.json")).expect("data.json"))
            .expect("json");
    let full = std::fs::canonicalize(&photos).expect("canonical");
    assert_eq!(
        record["data"].as_str(),
        Some(full.to_string_lossy().as_ref()),
        "{record}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let bytes: Vec<u64> = full
            .as_os_str()
            .as_bytes()
            .iter()
            .map(|&b| b as u64)
            .collect();
        assert_eq!(record["data_bytes"], serde_json::json!(bytes), "{record}");
    }
    let err = ok(
        cli_train(&cfg_path, &split, &["--resume", "--stop-after", "1"])
            .env("RUST_LOG", "dinoscope=info"),
    );
    assert!(err.contains("the run's data"), "{err}");
    let (a, b) = (state_of(&straight), state_of(&split));
    assert_eq!((a.step, b.step), (3, 3));
    assert!(a == b, "the resumed run did not continue on its folder");
    // Its folder moved away: the error names it and the record it came from.
    let moved = dir.join("moved");
    std::fs::rename(&photos, &moved).expect("move the data");
    let out = cli_train(&cfg_path, &split, &["--resume", "--stop-after", "1"])
        .output()
        .expect("run dinoscope");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("data.json") && err.contains("--data"),
        "{err}"
    );
    assert_eq!(state_of(&split).step, 3, "the run went on without its data");
    let zero = dir.join("zero");
    let out = cli_train(&cfg_path, &zero, &["--stop-after", "0"])
        .output()
        .expect("run dinoscope");
    assert_eq!(out.status.code(), Some(2));
    assert!(!zero.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `dinoscope train --config CFG --out OUT EXTRA…`.
fn cli_train(cfg: &Path, out: &Path, extra: &[&str]) -> std::process::Command {
    let mut c = common::command(env!("CARGO_BIN_EXE_dinoscope"));
    c.args(["train", "--config"])
        .arg(cfg)
        .arg("--out")
        .arg(out)
        .args(extra);
    c
}

/// A child's stderr, line by line as it comes, read on a thread of its own so its pipe never
/// fills; the run's per-step debug lines are the events the signal test waits for.
#[cfg(unix)]
struct Stderr {
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

#[cfg(unix)]
impl Stderr {
    fn of(child: &mut std::process::Child) -> Stderr {
        let pipe = child.stderr.take().expect("stderr piped");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in std::io::BufRead::lines(std::io::BufReader::new(pipe)).map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Stderr {
            lines,
            seen: Vec::new(),
        }
    }

    /// The next line `pick` accepts. Panics with what came so far when the child's stderr
    /// closes first (it ended), or when nothing comes for ten minutes (a hang, not a wait).
    fn until(&mut self, pick: impl Fn(&str) -> bool) -> String {
        loop {
            match self.lines.recv_timeout(std::time::Duration::from_secs(600)) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if pick(&l) {
                        return l;
                    }
                }
                Err(e) => panic!("{e}; stderr so far:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// The step of the next "step N done" line.
    fn step(&mut self) -> u64 {
        let n = |l: &str| -> Option<u64> {
            l.split("step ").nth(1)?.split_once(" done")?.0.parse().ok()
        };
        let l = self.until(|l| n(l).is_some());
        n(&l).unwrap_or_default()
    }

    /// Everything the child writes until it ends.
    fn rest(&mut self) -> String {
        self.seen.extend(self.lines.iter());
        self.seen.join("\n")
    }
}

#[cfg(unix)]
#[test]
fn ctrl_c_saves_a_checkpoint_and_an_ignored_sighup_stays_ignored() {
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    let Some(gpu) = common::gpu() else { return };
    let mut cfg = micro();
    // Far more steps than run before the signal, and no checkpoint but the last: the one the
    // signal writes.
    cfg.steps = 5000;
    cfg.checkpoint_every = 0;
    let dir = tmp("sigint");
    std::fs::create_dir_all(&dir).expect("mkdir");
    // A space in the name: the resume command the run prints must quote it.
    let cfg_path = dir.join("micro run.ron");
    std::fs::write(&cfg_path, cfg.to_ron()).expect("config");
    let exe = env!("CARGO_BIN_EXE_dinoscope");
    // Each step's debug line is the event to signal on.
    let log_steps = "warn,dinoscope::train::run=debug";
    let train = |out: &Path, extra: &[&str]| {
        let mut c = cli_train(&cfg_path, out, extra);
        c.env("RUST_LOG", "warn");
        c
    };
    let stopped = dir.join("run");
    let stdout_path = dir.join("stdout");
    let file = |p: &Path| std::fs::File::create(p).expect("log file");
    // Started as `nohup` starts it, with SIGHUP ignored; SIGINT as a terminal's foreground
    // command has it, whatever this test inherited (a background job ignores it).
    let mut sh = common::command("sh");
    sh.args([
        "-c",
        "trap '' HUP; exec \"$0\" \"$@\"",
        exe,
        // The adapter (a name with spaces) goes into the resume command.
        "--adapter",
        &gpu.info.name,
        "train",
        "--config",
    ])
    .arg(&cfg_path)
    .arg("--out")
    .arg(&stopped)
    .env("RUST_LOG", log_steps)
    .stdout(file(&stdout_path))
    .stderr(Stdio::piped());
    // SAFETY: only signal(2), which is async-signal-safe, runs between fork and exec.
    unsafe {
        sh.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut child = sh.spawn().expect("spawn");
    let mut err = Stderr::of(&mut child);
    let metrics = stopped.join("metrics.jsonl");
    let lines = || std::fs::read_to_string(&metrics).map_or(0, |m| m.lines().count());
    let signal = |sig: &str, pid: u32| {
        let sent = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill {sig}");
    };
    while err.step() < 2 {}
    // An ignored SIGHUP stays ignored: the run goes on for three more steps (a stop would
    // allow two: the step in flight and one submitted as the signal came).
    signal("-HUP", child.id());
    let seen = err.step();
    while err.step() < seen + 3 {}
    signal("-INT", child.id());
    let stderr = err.rest();
    let status = child.wait().expect("wait");
    let stdout = std::fs::read_to_string(&stdout_path).expect("stdout");
    assert_eq!(
        status.code(),
        Some(130),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert_eq!(
        stderr
            .matches("interrupted: stopping at the next step")
            .count(),
        1,
        "{stderr}"
    );
    assert!(!stderr.contains("interrupted again"), "{stderr}");
    let at: u64 = stdout
        .split("interrupted at step ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no step in: {stdout}"));
    assert!(
        stdout.contains(&format!(
            "dinoscope --adapter '{}' train --resume --out",
            gpu.info.name
        )),
        "{stdout}"
    );
    assert!((seen + 3..cfg.steps).contains(&at), "stopped at {at}");
    // Every step the log holds is in the checkpoint.
    assert_eq!(state_of(&stopped).step, at);
    assert_eq!(lines() as u64, at + 1);
    // Two more steps from there equal a run straight to the same step.
    let ok = |c: &mut std::process::Command| {
        let o = c.output().expect("run");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    // The printed command, run by a shell, continues it.
    let hint = stdout
        .split('`')
        .nth(1)
        .unwrap_or_else(|| panic!("no command in: {stdout}"));
    let bin_dir = Path::new(exe).parent().expect("bin dir");
    let path = std::env::join_paths(std::iter::once(bin_dir.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .expect("PATH");
    ok(std::process::Command::new("sh")
        .args(["-c", &format!("{hint} --stop-after 2")])
        .env("PATH", path)
        .env("RUST_LOG", "warn"));
    let straight = dir.join("straight");
    let n = (at + 2).to_string();
    ok(&mut train(&straight, &["--stop-after", &n]));
    let (a, b) = (state_of(&straight), state_of(&stopped));
    assert_eq!(a.step, at + 2);
    assert!(
        a == b,
        "interrupted at {at} + resume differs from a straight run"
    );
    // Two SIGTERMs at once (`timeout` sends one to the process and one to its group) are one
    // request: the run still stops at its next step with its checkpoint.
    let mut again = train(&stopped, &["--resume"])
        .env("RUST_LOG", log_steps)
        .stdout(file(&stdout_path))
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut err = Stderr::of(&mut again);
    err.step();
    signal("-TERM", again.id());
    // The second once the first is taken (a run already gone ignores it).
    err.until(|l| l.contains("interrupted: stopping"));
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &again.id().to_string()])
        .status();
    let stderr = err.rest();
    let status = again.wait().expect("wait");
    let stdout = std::fs::read_to_string(&stdout_path).expect("stdout");
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(!stderr.contains("interrupted again"), "{stderr}");
    assert!(stdout.contains("interrupted at step"), "{stdout}");
    assert!(state_of(&stopped).step > at + 2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `bytes` (a safetensors file) with `key: value` added to its header's metadata.
fn with_metadata(bytes: &[u8], key: &str, value: &str) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).expect("header");
    header["__metadata__"][key] = value.into();
    let mut text = serde_json::to_vec(&header).expect("json");
    // The data's offsets count from the header's end, so they hold; it stays 8-byte aligned.
    while !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + n..]);
    out
}
