//! The real app in a real window: `dinoscope app` under Xvfb trains on the bundled data, takes a
//! screenshot of itself and quits; the curves and the attention grid must not be blank.

#![cfg(all(feature = "app", target_os = "linux"))]

use std::io::BufRead;
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::Duration;

/// The longest the app may print nothing before it counts as hung: every step logs a line
/// (`dinoscope::app=debug`), so only a hang is this quiet, however slow the machine.
const NO_PROGRESS: Duration = Duration::from_secs(900);

/// The app under Xvfb in a process group of its own, its stderr read line by line; a silence of
/// [`NO_PROGRESS`] kills the group and fails the test.
struct Watched {
    child: std::process::Child,
    rx: Receiver<String>,
    log: Vec<String>,
    waited: bool,
}

impl Watched {
    fn spawn(cmd: &mut Command) -> Watched {
        use std::os::unix::process::CommandExt;
        // SIGINT as a terminal's foreground command has it, whatever this test inherited (a
        // background job, as CI runs the tests, ignores it, and the exec'd app would too).
        // SAFETY: only signal(2), which is async-signal-safe, runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                Ok(())
            });
        }
        let mut child = cmd
            .process_group(0)
            .env("RUST_LOG", "warn,dinoscope::app=debug")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run xvfb-run");
        let err = child.stderr.take().expect("stderr");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Watched {
            child,
            rx,
            log: Vec::new(),
            waited: false,
        }
    }

    /// Reads lines until one satisfies `done` (true), or until stderr ends (false).
    fn until(&mut self, done: impl Fn(&str) -> bool) -> bool {
        loop {
            match self.rx.recv_timeout(NO_PROGRESS) {
                Ok(l) => {
                    let hit = done(&l);
                    self.log.push(l);
                    if hit {
                        return true;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return false,
                Err(RecvTimeoutError::Timeout) => self.fail("printed nothing for 15 minutes"),
            }
        }
    }

    /// Kills the app's process group and fails with its log.
    fn fail(&mut self, why: &str) -> ! {
        self.kill();
        panic!("the app {why}:\n{}", self.log.join("\n"));
    }

    fn kill(&mut self) {
        // The whole group: xvfb-run, Xvfb and the app.
        if let Ok(group) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill sends a signal to the process group this test made; nothing else.
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
    }

    /// The app's exit status and everything it printed, once it ends; a step logged past
    /// `last_step` means it did not stop when it should have (the event that fails the test,
    /// rather than a deadline).
    fn finish(mut self, last_step: u64) -> (std::process::ExitStatus, String) {
        let past = |l: &str| {
            l.split("step ")
                .nth(1)
                .and_then(|r| r.strip_suffix(" done").or_else(|| r.split(" done").next()))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .is_some_and(|n| n > last_step)
        };
        if self.until(past) {
            self.fail(&format!("went on past step {last_step}"));
        }
        let status = self.child.wait().expect("wait");
        self.waited = true;
        (status, self.log.join("\n"))
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        // A test that failed part way leaves no app running.
        if !self.waited {
            self.kill();
            let _ = self.child.wait();
        }
    }
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Distinct colours and the share of pixels that differ from the panel's most common colour.
fn busyness(img: &image::RgbImage, rect: [f32; 4], ppp: f32) -> (usize, f32) {
    let [x0, y0, x1, y1] = rect.map(|v| (v * ppp).max(0.0) as u32);
    let (x1, y1) = (x1.min(img.width()), y1.min(img.height()));
    let mut counts = std::collections::HashMap::new();
    let mut total = 0usize;
    for y in y0..y1 {
        for x in x0..x1 {
            *counts.entry(img.get_pixel(x, y).0).or_insert(0usize) += 1;
            total += 1;
        }
    }
    let most = counts.values().copied().max().unwrap_or(0);
    (counts.len(), 1.0 - most as f32 / total.max(1) as f32)
}

#[test]
fn the_app_trains_under_xvfb_and_its_screenshot_shows_curves_and_attention() {
    if !have("xvfb-run") {
        assert!(!ci(), "CI=true but xvfb-run is not installed");
        eprintln!("skipping: xvfb-run is not installed");
        return;
    }
    let dir = std::env::temp_dir().join(format!("dinoscope-window-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("xdg")).expect("temp dir");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir.join("xdg"), std::fs::Permissions::from_mode(0o700));
    }
    let shot = dir.join("shot.png");
    let (status, stderr) = Watched::spawn(
        Command::new("xvfb-run")
            .args(["-a", "-s", "-screen 0 1280x800x24"])
            .arg(env!("CARGO_BIN_EXE_dinoscope"))
            .args(["app", "--reset", "--after-steps", "3", "--screenshot"])
            .arg(&shot)
            .current_dir(&dir)
            .env("DINOSCOPE_CACHE_DIR", dir.join("cache"))
            .env("XDG_DATA_HOME", dir.join("data"))
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .env("XDG_RUNTIME_DIR", dir.join("xdg")),
    )
    // Asked to stop after 3 steps; the steps in flight and a margin are allowed.
    .finish(20);
    assert!(
        status.success() && shot.is_file(),
        "app failed ({status:?})\nstderr:\n{stderr}"
    );
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(shot.with_extension("json")).expect("screenshot metadata"),
    )
    .expect("json");
    let step = meta["step"].as_u64().expect("step");
    assert!(step >= 3, "training did not advance: step {step}");
    let ppp = meta["pixels_per_point"].as_f64().unwrap_or(1.0) as f32;
    let img = image::open(&shot).expect("png").to_rgb8();
    assert!(
        img.width() >= 800 && img.height() >= 600,
        "{}x{}",
        img.width(),
        img.height()
    );
    for (panel, min_colours) in [("curves", 100), ("attention", 200)] {
        let r: Vec<f32> = meta["panels"][panel]
            .as_array()
            .unwrap_or_else(|| panic!("no {panel} rect in {meta}"))
            .iter()
            .map(|v| v.as_f64().unwrap_or(0.0) as f32)
            .collect();
        let (colours, busy) = busyness(&img, [r[0], r[1], r[2], r[3]], ppp);
        eprintln!(
            "{panel}: {colours} colours, {:.0}% non-background",
            busy * 100.0
        );
        assert!(
            colours >= min_colours && busy > 0.05,
            "{panel} panel looks blank: {colours} colours, {busy} non-background"
        );
    }
    // Nothing failed along the way.
    assert!(!stderr.contains("ERROR"), "{stderr}");
    let keep = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/app-screenshot.png");
    let _ = std::fs::copy(&shot, &keep);
    eprintln!("screenshot: {}", keep.display());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_a_display_the_app_says_so_and_points_to_train() {
    let out = Command::new(env!("CARGO_BIN_EXE_dinoscope"))
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .expect("run dinoscope");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no display"), "{stderr}");
    assert!(stderr.contains("dinoscope train"), "{stderr}");
}

#[test]
fn a_bad_setting_on_the_command_line_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_dinoscope"))
        .args(["app", "--set", "batch"])
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .expect("run dinoscope");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("KEY=VALUE"), "{stderr}");
}

#[test]
fn ctrl_c_closes_the_app_and_its_training_run_saves_first() {
    if !have("xvfb-run") {
        assert!(!ci(), "CI=true but xvfb-run is not installed");
        eprintln!("skipping: xvfb-run is not installed");
        return;
    }
    let dir = std::env::temp_dir().join(format!("dinoscope-window-int-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("xdg")).expect("temp dir");
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir.join("xdg"), std::fs::Permissions::from_mode(0o700));
    }
    // The app's own process id, for the signal: xvfb-run does not pass one on.
    let pid_file = dir.join("pid");
    let mut app = Watched::spawn(
        Command::new("xvfb-run")
            .args(["-a", "-s", "-screen 0 1280x800x24"])
            .args(["sh", "-c", "echo $$ > \"$0\"; exec \"$1\" app --reset"])
            .arg(&pid_file)
            .arg(env!("CARGO_BIN_EXE_dinoscope"))
            .current_dir(&dir)
            .env("DINOSCOPE_CACHE_DIR", dir.join("cache"))
            .env("XDG_DATA_HOME", dir.join("data"))
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .env("XDG_RUNTIME_DIR", dir.join("xdg")),
    );
    // The event: the worker's log line for its second step.
    let second = app.until(|l| l.contains("step 2 done"));
    assert!(second, "{}", app.log.join("\n"));
    let pid = std::fs::read_to_string(&pid_file).expect("pid file");
    let sent = Command::new("kill")
        .args(["-INT", pid.trim()])
        .status()
        .expect("kill -INT");
    assert!(sent.success(), "{}", app.log.join("\n"));
    // Interrupted after step 2: it stops at its next step.
    let (status, log) = app.finish(20);
    assert_eq!(status.code(), Some(130), "{log}");
    assert!(log.contains("interrupted: closing the window"), "{log}");
    // The run folder holds a whole checkpoint of at least the two steps seen.
    let (_, st) = dinoscope::train::run::load_checkpoint(&dir.join("runs/app"))
        .unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert!(st.step >= 2, "checkpoint of step {}\n{log}", st.step);
    assert!(!log.contains("ERROR"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Settings the app cannot use are refused before any window opens, naming the `--set`, so a
/// script waiting on `--screenshot` fails at once instead of waiting on a run that never starts.
#[test]
fn unusable_settings_fail_before_a_window_opens() {
    for (set, says) in [
        ("batch=0", "batch_size"),
        ("foo=1", "unknown setting"),
        ("train=/tmp", "'/tmp' is not a valid value"),
    ] {
        let shot = std::env::temp_dir().join(format!("dinoscope-never-{}.png", std::process::id()));
        let out = Command::new(env!("CARGO_BIN_EXE_dinoscope"))
            .args(["app", "--screenshot"])
            .arg(&shot)
            .args(["--set", set])
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .output()
            .expect("run dinoscope");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{set}: {err}");
        assert!(
            err.contains(&format!("--set {set}")) && err.contains(says),
            "{set}: {err}"
        );
        assert!(!shot.exists());
    }
}

/// A screenshot never replaces a file (the picture, or the JSON written beside it), and its
/// folder must exist: both are refused before a window opens, not after the run trained.
#[test]
fn a_screenshot_path_in_the_way_is_refused_before_a_window_opens() {
    let dir = std::env::temp_dir().join(format!("dinoscope-shot-taken-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let run = |shot: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_dinoscope"))
            .args(["app", "--screenshot"])
            .arg(shot)
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .output()
            .expect("run dinoscope")
    };
    let shot = dir.join("shot.png");
    for (taken, content) in [("shot.png", "a picture"), ("shot.json", "notes")] {
        let _ = std::fs::remove_file(dir.join("shot.png"));
        let _ = std::fs::remove_file(dir.join("shot.json"));
        std::fs::write(dir.join(taken), content).expect("write");
        let out = run(&shot);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{taken}: {err}");
        assert!(
            err.contains(taken) && err.contains("exists"),
            "{taken}: {err}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join(taken)).expect("read"),
            content
        );
    }
    // The picture named as its own notes' file would be written over by them.
    let out = run(&dir.join("notes.json"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("name a .png"), "{err}");
    let out = run(&dir.join("missing").join("shot.png"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is not a folder"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
