//! The `dinoscope` binary: `info`, `--version` and completions here; `selftest` on fixture
//! folders of other sizes and its errors, the model commands (attention, embed, knn) and the
//! tools (bench loader, tune) in the modules below.

#[path = "../common/mod.rs"]
mod common;
mod models;
mod selftest;
mod tools;

use dinoscope::cpu;
use dinoscope::cpu::interp::InterpMode;
use dinoscope::kernels::matmul::MatmulDims;
use dinoscope::kernels::patch_embed::PatchDims;
use dinoscope::selftest::checks_random as random;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::path::Path;
use std::process::Command;

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("dinoscope-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn dinoscope(args: &[&str]) -> std::process::Output {
    common::command(env!("CARGO_BIN_EXE_dinoscope"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run dinoscope")
}

#[test]
fn info_prints_adapter_limits_and_features() {
    if common::gpu().is_none() {
        return;
    }
    let out = common::command(env!("CARGO_BIN_EXE_dinoscope"))
        .arg("info")
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for key in [
        "adapter:",
        "backend:",
        "driver:",
        "max_storage_buffer_binding_size",
        "SHADER_F16",
        "TIMESTAMP_QUERY",
    ] {
        assert!(text.contains(key), "info lacks {key}:\n{text}");
    }
}

#[test]
fn unknown_backend_is_a_clear_error() {
    let out = common::command(env!("CARGO_BIN_EXE_dinoscope"))
        .args(["info", "--backend", "banana"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("unknown backend 'banana'"), "{err}");
}

#[test]
fn version_and_shell_completions() {
    let out = dinoscope(&["--version"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("dinoscope {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    for shell in ["bash", "zsh", "fish"] {
        let out = dinoscope(&["completions", shell]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{shell}");
        assert!(
            ["train", "selftest", "knn", "weights"]
                .iter()
                .all(|w| text.contains(w)),
            "{shell}: {text}"
        );
    }
    let out = dinoscope(&["completions", "tcsh"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tcsh"));
}

/// A printing command whose reader has gone away ends quietly, as other tools do: no panic
/// about a broken pipe.
#[cfg(unix)]
#[test]
fn a_closed_pipe_ends_a_printing_command_quietly() {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = common::command(env!("CARGO_BIN_EXE_dinoscope"))
        .args(["completions", "bash"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}", out.status);
}

/// A printing command whose output cannot be written (a full disk) says so and exits 1: no
/// panic.
#[cfg(target_os = "linux")]
#[test]
fn an_unwritable_stdout_is_an_error_not_a_panic() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let out = common::command(env!("CARGO_BIN_EXE_dinoscope"))
        .args(["completions", "bash"])
        .stdout(full)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot write to standard output") && !err.contains("panicked"),
        "{err}"
    );
}

/// Timing repetitions past 100 are refused when the command is read, before any work.
#[test]
fn repetitions_past_a_hundred_are_refused() {
    for args in [
        &["bench", "kernels", "--reps", "101"][..],
        &["tune", "--reps", "1000000"],
    ] {
        let out = dinoscope(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("at most 100"), "{args:?}: {err}");
    }
}

/// `train --overwrite` into a folder whose own config is the one given would remove it with the
/// rest of the old run: refused, and the file stays.
#[test]
fn overwrite_refuses_to_remove_the_config_it_was_given() {
    if common::gpu().is_none() {
        return;
    }
    let dir = tmp("overwrite-config");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let cfg = dir.join("train.ron");
    let text = dinoscope::train::config::TrainConfig::preset("debug")
        .expect("preset")
        .to_ron();
    std::fs::write(&cfg, &text).expect("write");
    let (c, d) = (cfg.to_str().expect("utf-8"), dir.to_str().expect("utf-8"));
    let out = dinoscope(&["train", "--config", c, "--out", d, "--overwrite"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("would remove this config"), "{err}");
    assert_eq!(std::fs::read_to_string(&cfg).ok(), Some(text));
    let _ = std::fs::remove_dir_all(&dir);
}
