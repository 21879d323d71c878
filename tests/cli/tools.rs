//! The tools: `bench loader` and `tune`.

use super::*;

#[test]
fn bench_loader_times_the_loader_and_names_a_bad_data_path() {
    let json = tmp("bench_loader.json");
    let _ = std::fs::remove_file(&json);
    let out = dinoscope(&[
        "bench",
        "loader",
        "--config",
        "debug",
        "--workers",
        "2",
        "--batches",
        "3",
        "--json",
        json.to_str().expect("utf-8 path"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("1 thread:") && text.contains("2 worker threads:"),
        "{text}"
    );
    let rows: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("json");
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    for r in rows {
        assert_eq!(r["tool"], "dinoscope");
        assert_eq!(r["unit"], "img/s");
        assert!(r["rate"].as_f64().expect("rate") > 0.0, "{r}");
    }
    // A rerun replaces its own rows; a file that holds anything else is the user's and stays,
    // and a folder that does not exist is named before the benchmark runs.
    let again = |target: &Path| {
        dinoscope(&[
            "bench",
            "loader",
            "--batches",
            "1",
            "--json",
            target.to_str().expect("utf-8 path"),
        ])
    };
    assert!(again(&json).status.success());
    // Another benchmark's rows are not this one's to replace.
    let before = std::fs::read(&json).expect("rows");
    let out = dinoscope(&["bench", "vit", "--json", json.to_str().expect("utf-8 path")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("holds the rows of `dinoscope bench loader`"),
        "{err}"
    );
    assert_eq!(std::fs::read(&json).expect("kept"), before);
    let mine = tmp("bench_mine.ron");
    std::fs::write(&mine, "(my: \"config\")").expect("write");
    let out = again(&mine);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("not an earlier `dinoscope bench --json` output"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&mine).expect("kept"),
        "(my: \"config\")"
    );
    // PyTorch's rows (`bench/pytorch_reference.py`) look like ours but are the other side's.
    let torch = tmp("bench_torch.json");
    let theirs = r#"[{"tool": "pytorch", "name": "loader 1 thread", "seconds": 1, "rate": 1}]"#;
    std::fs::write(&torch, theirs).expect("write");
    let out = again(&torch);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("not an earlier `dinoscope bench --json` output"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&torch).expect("kept"), theirs);
    let _ = std::fs::remove_file(&torch);
    let out = again(&tmp("no_such_folder").join("rows.json"));
    let (text, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        !out.status.success() && err.contains("does not exist"),
        "{err}"
    );
    assert!(!text.contains("thread:"), "ran before refusing: {text}");
    let _ = std::fs::remove_file(&json);
    let _ = std::fs::remove_file(&mine);

    let missing = tmp("no_such_images");
    let out = dinoscope(&[
        "bench",
        "loader",
        "--data",
        missing.to_str().expect("utf-8 path"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no_such_images"), "{err}");
}

/// Ctrl-C stops `tune` after the product being timed: it prints the summary of those timed,
/// exits with the interrupted status, and its cache holds their plans.
#[cfg(unix)]
#[test]
fn tune_keeps_what_it_measured_when_stopped_part_way() {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    if common::gpu().is_none() {
        return;
    }
    let dir = tmp("tune_stopped");
    let mut cmd = common::command(env!("CARGO_BIN_EXE_dinoscope"));
    cmd.args(["tune", "--config", "debug", "--reps", "1"])
        .env("DINOSCOPE_CACHE_DIR", &dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    // SIGINT as a terminal's foreground command has it, whatever this test inherited.
    // SAFETY: only signal(2), which is async-signal-safe, runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("run dinoscope");
    // The event waited for: the first tuned product's line (a row of the table starts with its
    // dims); Ctrl-C comes there, long before the last of the debug step's products.
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok);
    let first = lines.find(|l| l.starts_with(|c: char| c.is_ascii_digit()));
    assert!(first.is_some(), "tune printed no product");
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let rest: Vec<String> = lines.collect();
    let status = child.wait().expect("wait");
    let text = rest.join("\n");
    assert_eq!(status.code(), Some(130), "{status:?}\n{text}");
    let summary = rest
        .iter()
        .find(|l| l.starts_with("all products (the "))
        .unwrap_or_else(|| panic!("no summary of the products timed:\n{text}"));
    assert!(summary.contains("tuned"), "{summary}");
    assert!(
        text.contains("interrupted (attention passes not timed)"),
        "{text}"
    );
    assert!(!text.contains("all attention passes"), "{text}");
    let cache = std::fs::read_dir(&dir)
        .expect("the cache folder, written before the first product was printed")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "ron"))
        .expect("the cache file");
    let text = std::fs::read_to_string(&cache).expect("cache");
    let parsed: dinoscope::tune::TuneCache = ron::from_str(&text).expect("a whole cache");
    assert!(!parsed.plans.is_empty(), "{text}");
    for plan in parsed.plans.values() {
        assert!(
            dinoscope::kernels::matmul::Plan::parse(plan).is_some(),
            "{plan}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A cache folder that cannot be written is named before anything is timed, and what stands
/// in its way is left alone.
#[test]
fn tune_refuses_an_unwritable_cache_before_timing() {
    if common::gpu().is_none() {
        return;
    }
    let file = tmp("tune_cache_is_a_file");
    std::fs::write(&file, b"the user's file").expect("write");
    let out = common::command(env!("CARGO_BIN_EXE_dinoscope"))
        .args(["tune", "--config", "debug", "--reps", "1"])
        .env("DINOSCOPE_CACHE_DIR", &file)
        .output()
        .expect("run dinoscope");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("the tuning cache cannot be written")
            && stderr.contains("tune_cache_is_a_file"),
        "{stderr}"
    );
    assert!(
        !stdout
            .lines()
            .any(|l| l.starts_with(|c: char| c.is_ascii_digit())),
        "a product was timed:\n{stdout}"
    );
    assert_eq!(std::fs::read(&file).expect("read"), b"the user's file");
    let _ = std::fs::remove_file(&file);
}

/// A first run stopped by Ctrl-C while it calibrates moves its calibration marker aside, so the
/// next run calibrates again instead of skipping as after a driver fault; if that run is
/// stopped in them too (a hung driver, say), the marker stays and later runs skip them.
#[cfg(unix)]
#[test]
fn ctrl_c_during_the_first_run_calibrations_retries_them_once() {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let Some(gpu) = common::gpu() else { return };
    if !gpu.has_timestamps() {
        return; // no first-run timings without GPU timestamps
    }
    let dir = tmp("calibration_interrupted");
    let info = || {
        let mut c = common::command(env!("CARGO_BIN_EXE_dinoscope"));
        c.arg("info")
            .env("DINOSCOPE_CACHE_DIR", &dir)
            .env("DINOSCOPE_CALIBRATE", "1")
            .stdout(std::process::Stdio::null());
        c
    };
    let with_ext = |x: &str| {
        std::fs::read_dir(&dir).ok().and_then(|d| {
            d.flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|e| e == x))
        })
    };
    // Starts `info`, waits for the event that a calibration has written its marker (its debug
    // line on stderr) and sends SIGINT there.
    let interrupted_run = || {
        use std::io::BufRead;
        let mut first = info();
        first
            .env("RUST_LOG", "warn,dinoscope::tune=debug")
            .stderr(std::process::Stdio::piped());
        // SIGINT as a terminal's foreground command has it, whatever this test inherited (a
        // background job ignores it).
        // SAFETY: only signal(2), which is async-signal-safe, runs between fork and exec.
        unsafe {
            first.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                Ok(())
            });
        }
        let mut child = first.spawn().expect("run dinoscope");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok);
        let written = "calibration marker written: ";
        let seen = lines
            .find_map(|l| {
                l.split_once(written)
                    .map(|(_, p)| std::path::PathBuf::from(p))
            })
            .unwrap_or_else(|| panic!("no calibration marker written in {}", dir.display()));
        let sent = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        // Read to the end, so the child never waits on a full pipe.
        lines.for_each(drop);
        let status = child.wait().expect("wait");
        // Ended by the signal, as without the marker's handler.
        assert_eq!(status.signal(), Some(libc::SIGINT), "{status:?}");
        seen
    };
    let marker = interrupted_run();
    assert!(!marker.exists(), "{} left behind", marker.display());
    assert!(with_ext("interrupted").is_some());
    // The next run calibrates, and a whole calibration clears both files.
    let again = info().output().expect("run dinoscope");
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success() && !err.contains("skipped"), "{err}");
    assert!(with_ext("calibrating").is_none() && with_ext("interrupted").is_none());
    // Stopped twice in a row: the marker stays, and the next run skips the timings.
    let _ = std::fs::remove_dir_all(&dir);
    interrupted_run();
    let marker = interrupted_run();
    assert!(marker.exists(), "{} removed", marker.display());
    let next = info().output().expect("run dinoscope");
    let err = String::from_utf8_lossy(&next.stderr);
    assert!(err.contains("skipped"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `bench kernels --quick` runs every row it lists and writes each with a positive time and
/// rate: the f32 products, the f16 ones where the adapter stores f16 (ViT-S/14's batch-1
/// linears on the untuned default among them), the memory-bound kernels and attention.
#[test]
fn bench_kernels_writes_every_row_with_a_time() {
    let Some(gpu) = common::gpu() else { return };
    let json = tmp("bench_kernels.json");
    let _ = std::fs::remove_file(&json);
    let path = json.to_str().expect("utf-8 path");
    let out = dinoscope(&["bench", "kernels", "--quick", "--reps", "1", "--json", path]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("json");
    let names: Vec<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
    for r in &rows {
        let (s, rate) = (r["seconds"].as_f64(), r["rate"].as_f64());
        assert!(
            s.is_some_and(|s| s > 0.0) && rate.is_some_and(|r| r > 0.0),
            "{r}"
        );
    }
    let has = |prefix: &str| names.iter().any(|n| n.starts_with(prefix));
    assert!(
        has("matmul 1024x1024x1024") && has("layernorm") && has("attention fwd"),
        "{names:?}"
    );
    if common::f16(gpu, "bench kernels f16 rows") {
        for n in [1152, 1536, 384] {
            let k = if n == 384 { 1536 } else { 384 };
            let default = format!("matmul f16 257x{n}x{k} tb (");
            assert!(
                names
                    .iter()
                    .any(|r| r.starts_with(&default) && r.ends_with(", default)")),
                "{names:?}"
            );
        }
    }
    let _ = std::fs::remove_file(&json);
}

/// `bench vit --profile` times the run, then profiles its forward: the dispatches it took, the
/// kernels by GPU time (the products among them) and each product and attention pass with its
/// rate; the JSON keeps one row a run. Without timestamps (OpenGL) it says what it needs.
#[test]
fn bench_vit_profiles_each_run_forward() {
    let Some(gpu) = common::gpu() else { return };
    let json = tmp("bench_vit.json");
    let _ = std::fs::remove_file(&json);
    let path = json.to_str().expect("utf-8 path");
    let args = [
        "bench",
        "vit",
        "--runs",
        "28x1,28x2",
        "--reps",
        "1",
        "--profile",
        "--json",
        path,
    ];
    // Sizes past the adapter's largest buffer (or overflowing) are refused before anything
    // is allocated.
    for runs in [
        "28x18446744073709551615",
        "18446744073709551615x1",
        "99999x1",
    ] {
        let out = dinoscope(&["bench", "vit", "--runs", runs]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("use a smaller size or batch"),
            "{runs}: {err}"
        );
    }
    let out = dinoscope(&args);
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    if !gpu.has_timestamps() {
        assert!(!out.status.success() && err.contains("timestamps"), "{err}");
        return;
    }
    assert!(out.status.success(), "{text}{err}");
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("json");
    let names: Vec<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["vit 28x28 batch 1", "vit 28x28 batch 2"], "{text}");
    for run in ["28x28 batch 1", "28x28 batch 2"] {
        let head = format!("profile of {run}: ");
        let line = text.lines().find(|l| l.starts_with(&head)).expect(&head);
        let dispatches: usize = line[head.len()..]
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("a dispatch count");
        // ViT-S/14 has 12 blocks, each with at least its four linear layers and attention.
        assert!(dispatches >= 12 * 5, "{line}");
    }
    // One kernel table and one work table a run, with the products and attention in them.
    assert_eq!(
        text.matches("GPU time by kernel over 1 forward ").count(),
        2,
        "{text}"
    );
    assert_eq!(
        text.matches("GPU time by product and attention pass")
            .count(),
        2,
        "{text}"
    );
    assert!(text.contains("\nmatmul_"), "{text}");
    for work in [
        "matmul 5x1152x384 tb f32 ",
        "matmul 10x1536x384 tb f32 ",
        "attention fwd 6x5x5x64 f32 ",
    ] {
        assert!(text.contains(work), "{work} in {text}");
    }
    let _ = std::fs::remove_file(&json);
}

/// `bench vit` refuses a model whose random weights would not fit the adapter before making
/// them (a 7-billion-parameter config once aborted on the host's memory).
#[test]
fn bench_vit_refuses_a_model_past_the_adapters_memory() {
    if common::gpu().is_none() {
        return;
    }
    let out = common::command(env!("CARGO_BIN_EXE_dinoscope"))
        .args([
            "bench", "vit", "--config", "vitl14", "--runs", "28x1", "--reps", "1",
        ])
        .env("DINOSCOPE_GPU_MEMORY", "512MiB")
        .output()
        .expect("run dinoscope");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    // ViT-L/14's 304 million parameters: 1.1 GiB in f32, past either limit.
    assert!(
        err.contains("parameters") && err.contains("use a smaller config"),
        "{err}"
    );
}

/// `bench vit --runs` refuses a batch of 0 and a picture smaller than a patch by name, before
/// any GPU work (a batch of 0 once divided by zero in the planner).
#[test]
fn bench_vit_refuses_empty_runs() {
    for runs in ["224x0", "1x1", "28"] {
        let out = dinoscope(&["bench", "vit", "--runs", runs]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{runs}: {err}");
        assert!(
            err.contains(&format!("--runs: '{runs}'")) && !err.contains("panicked"),
            "{runs}: {err}"
        );
    }
}
