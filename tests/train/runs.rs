//! Run folders and checkpoints: refused settings, one process per folder, whole checkpoints,
//! non-finite steps, exports.

use super::*;

#[test]
fn out_of_range_settings_are_refused_with_their_name() {
    let base = TrainConfig::preset("debug").expect("preset");
    type Change = Box<dyn Fn(&mut TrainConfig)>;
    let cases: Vec<(&str, Change)> = vec![
        ("base_lr", Box::new(|c| c.base_lr = -1e-3)),
        ("base_lr", Box::new(|c| c.base_lr = f32::NAN)),
        ("min_lr", Box::new(|c| c.min_lr = 1.0)),
        ("student_temp", Box::new(|c| c.student_temp = 0.0)),
        ("teacher_temp", Box::new(|c| c.teacher_temp.1 = -0.04)),
        ("student_temp", Box::new(|c| c.student_temp = 1e-45)),
        ("teacher_temp", Box::new(|c| c.teacher_temp.0 = 5e-5)),
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
    // So is a folder holding only what a user put there that a run would write (a model's
    // config beside its weights), and resuming it says how to start over.
    let mine = tmp("mine");
    std::fs::create_dir_all(&mine).expect("mkdir");
    std::fs::write(mine.join("config.ron"), "mine").expect("write");
    let into_mine = |resume: bool| RunOptions {
        out_dir: mine.clone(),
        resume,
        ..Default::default()
    };
    let err = run(gpu, cfg.clone(), &into_mine(false), |_, _| {}).expect_err("refused");
    assert!(
        err.contains("config.ron") && err.contains("--overwrite"),
        "{err}"
    );
    let err = run(gpu, cfg.clone(), &into_mine(true), |_, _| {}).expect_err("nothing to resume");
    assert!(err.contains("--overwrite"), "{err}");
    assert_eq!(
        std::fs::read_to_string(mine.join("config.ron"))
            .ok()
            .as_deref(),
        Some("mine")
    );
    let _ = std::fs::remove_dir_all(&mine);
    // A file where the run folder goes is named as such and left alone.
    let file = tmp("a-file");
    std::fs::write(&file, "mine").expect("write");
    let into_file = RunOptions {
        out_dir: file.clone(),
        ..Default::default()
    };
    let err = run(gpu, cfg.clone(), &into_file, |_, _| {}).expect_err("a file");
    assert!(err.contains("is a file; --out takes a folder"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).expect("file"), "mine");
    let _ = std::fs::remove_file(&file);
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
    // An --overwrite that fails or stops before its first checkpoint puts the earlier run back:
    // on pictures too few for one batch, and stopped at once.
    let few = tmp("three-pictures");
    std::fs::create_dir_all(&few).expect("mkdir");
    for f in ["astronaut.png", "chelsea.png", "coffee.png"] {
        std::fs::copy(format!("assets/images/{f}"), few.join(f)).expect("copy");
    }
    let failing = RunOptions {
        data: Some(few.clone()),
        ..opts(false, true)
    };
    let err = run(gpu, cfg.clone(), &failing, |_, _| {}).expect_err("too few pictures");
    assert!(err.contains("fewer than one batch"), "{err}");
    let stopped = RunOptions {
        stop_after: Some(0),
        ..opts(false, true)
    };
    let _ = run(gpu, cfg.clone(), &stopped, |_, _| {});
    assert_eq!(
        std::fs::read_to_string(dir.join("metrics.jsonl")).expect("metrics"),
        metrics,
        "the earlier run is back"
    );
    assert!(dir.join("teacher_backbone.safetensors").exists());
    assert!(!dir.join(".overwritten").exists());
    let _ = std::fs::remove_dir_all(&few);
    // A process killed between setting the earlier run aside and the new run's first checkpoint
    // (here: its files moved by hand, and the baseline line the killed start wrote): the next
    // run into the folder puts the earlier run back first, so resuming continues it.
    let aside = dir.join(".overwritten");
    std::fs::create_dir(&aside).expect("mkdir");
    for f in [
        "checkpoints",
        "metrics.jsonl",
        "train.ron",
        "teacher_backbone.safetensors",
    ] {
        if dir.join(f).exists() {
            std::fs::rename(dir.join(f), aside.join(f)).expect("set aside");
        }
    }
    std::fs::write(aside.join(".complete"), "").expect("every file set aside");
    std::fs::write(
        dir.join("metrics.jsonl"),
        "{\"steps_done\":0,\"knn\":0.1}\n",
    )
    .expect("log");
    run(gpu, cfg.clone(), &zero, |_, _| {}).expect("the earlier run resumes");
    assert_eq!(
        std::fs::read_to_string(dir.join("metrics.jsonl")).expect("metrics"),
        metrics,
        "the earlier run is back, its log whole"
    );
    assert!(!aside.exists());
    // Killed among the moves (the checkpoints set aside, the rest not yet): what the folder
    // still holds is the earlier run's, and stays with the checkpoints put back.
    let record = std::fs::read(dir.join("train.ron")).expect("the run's config");
    std::fs::create_dir(&aside).expect("mkdir");
    std::fs::rename(dir.join("checkpoints"), aside.join("checkpoints")).expect("set aside");
    run(gpu, cfg.clone(), &zero, |_, _| {}).expect("the earlier run resumes");
    assert_eq!(
        std::fs::read_to_string(dir.join("metrics.jsonl")).expect("metrics"),
        metrics,
        "the log never moved, and stays"
    );
    assert_eq!(std::fs::read(dir.join("train.ron")).expect("kept"), record);
    assert!(dir.join("checkpoints").is_dir() && !aside.exists());
    // A live process's lock keeps others out; a dead one's is taken over.
    let lock = dir.join(".dinoscope.lock");
    std::fs::write(&lock, format!("{}\n", std::process::id())).expect("lock");
    let err = run(gpu, cfg.clone(), &opts(false, true), |_, _| {}).expect_err("locked");
    assert!(err.contains("another dinoscope"), "{err}");
    if cfg!(unix) {
        // Elsewhere a process cannot be looked up, so a stale lock is removed by hand.
        let mut gone = std::process::Command::new("true").spawn().expect("spawn");
        let dead = gone.id();
        gone.wait().expect("wait");
        // Another machine's process cannot be looked up either (a shared folder): kept.
        std::fs::write(&lock, format!("{dead}\nanother-machine.example\n")).expect("lock");
        let err = run(gpu, cfg.clone(), &opts(false, true), |_, _| {}).expect_err("locked");
        assert!(err.contains("on another-machine.example"), "{err}");
        std::fs::write(&lock, format!("{dead}\n")).expect("stale lock");
        run(gpu, cfg, &opts(false, true), |_, _| {}).expect("overwrite takes a stale lock");
        assert!(!lock.exists(), "the lock is released at the end");
        // The overwrite went through: the earlier run's files are gone, none kept aside.
        assert!(!dir.join(".overwritten").exists());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `bytes` with `from` replaced by `to` (of the same length) in the safetensors header.
fn retag(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let header = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let text = String::from_utf8_lossy(&bytes[8..8 + header]).to_string();
    let at = 8 + text.find(from).expect("the tag in the header");
    let mut out = bytes.to_vec();
    out[at..at + to.len()].copy_from_slice(to.as_bytes());
    out
}

/// Flips bytes in the middle of a file, keeping its length.
fn damage(p: &Path) {
    // Checkpoint files are read-only (a run's exports link to them).
    let mut perm = std::fs::metadata(p).expect("metadata").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(p, perm).expect("make writable");
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
    // A copy of the backbone alone (as the browser's download is) reads as the run's model:
    // its 2 heads of 32 come from the config it carries, where its shapes say 1 head of 64.
    let alone = tmp("backbone-alone");
    std::fs::create_dir_all(&alone).expect("folder");
    let copy = alone.join("teacher_backbone.safetensors");
    std::fs::copy(dir.join("teacher_backbone.safetensors"), &copy).expect("copy");
    assert_eq!(cfg.model.heads, 2);
    let read = dinoscope::model::weights::config_for_weights(&copy).expect("config");
    assert_eq!(read, cfg.model);
    let bytes = std::fs::read(&copy).expect("read");
    let from_bytes =
        dinoscope::model::weights::infer_config_from_bytes(&copy, &bytes).expect("config");
    assert_eq!(from_bytes, cfg.model);
    let _ = std::fs::remove_dir_all(&alone);
    // Read-only, so that rewriting the export in place cannot damage the checkpoint it links.
    #[cfg(unix)]
    for f in ["teacher_backbone.safetensors", "train.ron"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(f))
            .expect("export")
            .permissions()
            .mode();
        assert_eq!(mode & 0o222, 0, "{f}: mode {mode:o}");
    }
    let straight = checkpoint::load(&dir).expect("load");
    assert_eq!(straight.state.step, 4);
    assert!(straight.skipped.is_empty());
    // A state whose config asks for other sizes than its tensors have is named, tensor and file.
    let state_path = latest.join("state.safetensors");
    let mut bytes = std::fs::read(&state_path).expect("state");
    let header = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let text = String::from_utf8_lossy(&bytes[8..8 + header]).to_string();
    let at = 8 + text
        .find("prototypes: 32")
        .expect("the config in the header");
    bytes[at + "prototypes: 3".len()] = b'3'; // 32 → 33, the header's length unchanged
    let err = checkpoint::state_from_bytes(&state_path, &bytes).expect_err("sizes differ");
    assert!(
        err.contains("its training config needs") && err.contains("state.safetensors"),
        "{err}"
    );
    // Given as weights, a state file is named for what it is, whether the config comes from
    // beside it or from its header.
    let err = dinoscope::model::weights::load_backbone(&state_path, &cfg.model)
        .expect_err("a state is not weights")
        .to_string();
    assert!(
        err.contains("this is a training state") && err.contains("teacher_backbone"),
        "{err}"
    );
    let state_bytes = std::fs::read(&state_path).expect("state");
    let err = dinoscope::model::weights::infer_config_from_bytes(&state_path, &state_bytes)
        .expect_err("a state is not weights")
        .to_string();
    assert!(err.contains("this is a training state"), "{err}");
    // A later version of the state format is refused as such, not misread; it is still taken
    // for a state (so a dropped one gets this message, not a weights file's).
    let later = std::fs::read(&state_path).expect("state");
    let later = retag(&later, "dinoscope-train-state-1", "dinoscope-train-state-9");
    assert!(checkpoint::is_state(&later));
    let err = checkpoint::state_from_bytes(&state_path, &later).expect_err("a later format");
    assert!(
        err.contains("'dinoscope-train-state-9'") && err.contains("cannot read"),
        "{err}"
    );
    let other = retag(&later, "dinoscope-train-state-9", "another-tools-format-v9");
    let err = checkpoint::state_from_bytes(&state_path, &other).expect_err("not a state");
    assert!(err.contains("not a dinoscope training state"), "{err}");

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

    // The run folder's train.ron edited in place (an editor that writes into the file, which
    // is the checkpoint's too): the checkpoint stays usable, as its state holds the run.
    let ron = dir.join("train.ron");
    let mut perms = std::fs::metadata(&ron).expect("train.ron").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&ron, perms).expect("writable");
    let mut edited = std::fs::read(&ron).expect("read");
    edited.extend_from_slice(b"// my note\n");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&ron)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &edited))
        .expect("edited in place");
    assert_eq!(
        std::fs::read(latest.join("train.ron")).expect("read"),
        edited
    );
    let loaded = checkpoint::load(&dir).expect("still loads");
    assert!(loaded.state.step == 4 && loaded.skipped.is_empty());

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
    assert!(err.contains("lower the learning rate"), "{err}");
    // A weight decay this large does it at the recipe's learning rate: the advice names it.
    let mut cfg = micro();
    cfg.steps = 6;
    cfg.checkpoint_every = 0;
    cfg.weight_decay = (1e30, 1e30);
    let decay_dir = tmp("nan-decay");
    let decay_opts = RunOptions {
        out_dir: decay_dir.clone(),
        ..Default::default()
    };
    let err = run(gpu, cfg, &decay_opts, |_, _| {}).expect_err("diverges");
    assert!(
        err.contains("weight_decay (") && err.contains("the recipe's is (0.04, 0.2)"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&decay_dir);

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
            "depth 10000000 is over 1024",
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
    // A batch whose crops would not fit in host memory is refused before a plan or a new run
    // allocates one; a checkpoint's config from a larger machine still reads.
    let huge: [Change; 2] = [
        Box::new(|c| c.augment.n_local = 4_294_967_295),
        Box::new(|c| {
            c.batch_size = 65_536;
            c.augment.global_size = 889;
        }),
    ];
    for f in huge {
        let mut c = base.clone();
        f(&mut c);
        TrainConfig::from_ron(&c.to_ron(), "big.ron").expect("a config that reads");
        let err = c.check_batch_memory().expect_err("too large a batch");
        assert!(err.contains("host memory"), "{err}");
        if let Some(gpu) = common::gpu() {
            let err = dinoscope::train::plan::plan(gpu, &c, 1).expect_err("not planned");
            assert!(err.contains("host memory"), "{err}");
        }
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
        let out = common::command(exe)
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
    let cli = |args: &[&str]| {
        let o = common::command(exe)
            .current_dir(&cwd)
            .args(args)
            .output()
            .expect("run");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (o.status.success(), text)
    };
    // Runs that fail at start-up (no such data, no steps, no such config) leave no folder, and
    // runs/latest where it was.
    for (args, what) in [
        (["micro.ron", "--data", "no-such-folder"], "no-such-folder"),
        (["micro.ron", "--steps", "0"], "steps"),
        (
            ["missing.ron", "--steps", "2"],
            "missing.ron: no such config file",
        ),
    ] {
        let (ok, text) = cli(&[&["train", "--config"][..], &args[..]].concat());
        assert!(!ok && text.contains(what), "{args:?}: {text}");
        let folders = std::fs::read_dir(cwd.join("runs")).expect("runs/").count();
        assert_eq!(folders, 3, "{args:?}: two runs and latest");
        assert_eq!(state_of(&latest).step, 3);
    }
    // Resuming the finished run says so, and keeps its own config over another one given.
    let (ok, text) = cli(&["train", "--resume", "--config", "debug"]);
    assert!(
        ok && text.contains("the run is complete (3 of 3 steps)"),
        "{text}"
    );
    assert!(text.contains("--config debug left aside"), "{text}");
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

/// The files of a stored ZIP archive (name, bytes), read back through its central directory;
/// panics on anything a reader would refuse: a bad signature, a local header that disagrees with
/// its directory entry, a compressed entry, a wrong CRC, or bytes between the entries.
fn unzip_stored(zip: &[u8]) -> Vec<(String, Vec<u8>)> {
    let u16_at = |i: usize| u16::from_le_bytes([zip[i], zip[i + 1]]) as usize;
    let u32_at = |i: usize| u32::from_le_bytes([zip[i], zip[i + 1], zip[i + 2], zip[i + 3]]);
    let end = zip.len() - 22;
    assert_eq!(u32_at(end), 0x0605_4b50, "end of central directory");
    let (count, size, mut at) = (
        u16_at(end + 10),
        u32_at(end + 12),
        u32_at(end + 16) as usize,
    );
    assert_eq!(
        at + size as usize,
        end,
        "the directory ends where the end record starts"
    );
    let mut files = Vec::new();
    let mut next_local = 0;
    for _ in 0..count {
        assert_eq!(u32_at(at), 0x0201_4b50, "central directory entry");
        let (method, crc, csize, usize_) = (
            u16_at(at + 10),
            u32_at(at + 16),
            u32_at(at + 20),
            u32_at(at + 24),
        );
        let (n, extra, comment) = (u16_at(at + 28), u16_at(at + 30), u16_at(at + 32));
        let local = u32_at(at + 42) as usize;
        let name = String::from_utf8(zip[at + 46..at + 46 + n].to_vec()).expect("utf-8 name");
        assert_eq!((method, csize), (0, usize_), "{name}: stored");
        assert_eq!(local, next_local, "{name}: right after the entry before");
        assert_eq!(u32_at(local), 0x0403_4b50, "{name}: local header");
        assert_eq!(
            zip[local + 4..local + 26],
            zip[at + 6..at + 28],
            "{name}: local header fields"
        );
        let (ln, lextra) = (u16_at(local + 26), u16_at(local + 28));
        assert_eq!(&zip[local + 30..local + 30 + ln], name.as_bytes());
        let data = &zip[local + 30 + ln + lextra..][..usize_ as usize];
        let mut c = flate2::Crc::new();
        c.update(data);
        assert_eq!(c.sum(), crc, "{name}: CRC-32");
        next_local = local + 30 + ln + lextra + data.len();
        files.push((name, data.to_vec()));
        at += 46 + n + extra + comment;
    }
    assert_eq!(
        next_local,
        end - size as usize,
        "the directory follows the last entry"
    );
    files
}

/// The browser's "Download for transformers" archive holds, in `export-hf/`, the very files
/// `dinoscope export --to hf` writes for the same teacher.
#[test]
fn the_transformers_archive_holds_the_exports_files() {
    let Some(gpu) = common::gpu() else { return };
    use dinoscope::train::checkpoint::hf_archive;
    use dinoscope::train::export::{export_hf, HF_FILES};
    let cfg = micro();
    let mut trainer = dinoscope::train::trainer::Trainer::new(gpu, cfg.clone()).expect("trainer");
    let (ds, _) = dinoscope::train::run::datasets(None).expect("bundled data");
    let mut loader = dinoscope::data::loader::Loader::new(ds, cfg.loader_config(), 0);
    trainer
        .train_step(&loader.next_batch().expect("batch"))
        .expect("step");
    let zip = pollster::block_on(hf_archive(&cfg, &trainer)).expect("archive");
    let files = unzip_stored(&zip);
    let dir = tmp("hf-archive");
    export_hf(&cfg, &trainer.state().expect("state"), &dir, false).expect("export");
    let names: Vec<String> = HF_FILES.iter().map(|f| format!("export-hf/{f}")).collect();
    assert_eq!(
        files.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        names.iter().collect::<Vec<_>>()
    );
    for ((_, bytes), file) in files.iter().zip(HF_FILES) {
        assert!(
            *bytes == std::fs::read(dir.join(file)).expect("exported"),
            "{file} differs"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Pictures that stop reading part way through a run (a folder on a disk that was unplugged)
/// end it with a checkpoint of the steps it trained, which resumes once they are back.
#[test]
fn data_that_goes_away_mid_run_stops_it_with_a_checkpoint() {
    let Some(gpu) = common::gpu() else { return };
    let mut cfg = micro();
    cfg.steps = 100;
    cfg.checkpoint_every = 0;
    let dir = tmp("data-gone");
    let photos = dir.join("photos");
    let make = || {
        std::fs::create_dir_all(&photos).expect("mkdir");
        for i in 0..12u32 {
            let img = image::RgbImage::from_fn(24, 20, |x, y| {
                image::Rgb([(x * 9 + i * 20) as u8, (y * 11) as u8, (x * y + i) as u8])
            });
            img.save(photos.join(format!("{i:02}.png"))).expect("png");
        }
    };
    make();
    let opts = RunOptions {
        out_dir: dir.join("run"),
        data: Some(photos.clone()),
        ..Default::default()
    };
    let err = run(gpu, cfg.clone(), &opts, |m, _| {
        if m.step == 1 {
            std::fs::remove_dir_all(&photos).expect("the pictures go");
        }
    })
    .expect_err("the data went away");
    assert!(err.contains("photos"), "names the data: {err}");
    assert!(
        err.contains("the checkpoint of step") && err.contains("--resume"),
        "{err}"
    );
    let saved = dinoscope::train::checkpoint::list(&dir.join("run"));
    assert!(saved.first().is_some_and(|(s, _)| *s >= 2), "{saved:?}");
    make();
    let resumed = RunOptions {
        resume: true,
        stop_after: Some(1),
        ..opts
    };
    run(gpu, cfg, &resumed, |_, _| {}).expect("resumes once the data is back");
    let _ = std::fs::remove_dir_all(&dir);
}
