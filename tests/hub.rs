//! `--weights org/name`: weights found in a Hugging Face cache laid out as transformers and
//! huggingface-cli leave it (blobs, snapshots linking to them, refs), located through HF_HOME or
//! HF_HUB_CACHE, at a branch, a tag or a commit; clear errors for what is not there.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn fixture(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tiny_dinov3")
        .join(file)
}

/// A hub cache holding `acme/tiny-v3` (the DINOv3 fixture model) at `main` and tag `v1`.
fn make_cache(hub: &Path) {
    let repo = hub.join("models--acme--tiny-v3");
    let snap = repo.join("snapshots").join(COMMIT);
    std::fs::create_dir_all(repo.join("blobs")).expect("mkdir");
    std::fs::create_dir_all(&snap).expect("mkdir");
    std::fs::create_dir_all(repo.join("refs")).expect("mkdir");
    for (i, f) in ["model.safetensors", "config.json"].iter().enumerate() {
        let blob = repo.join("blobs").join(format!("blob{i}"));
        std::fs::copy(fixture(f), &blob).expect("copy");
        #[cfg(unix)]
        std::os::unix::fs::symlink(format!("../../blobs/blob{i}"), snap.join(f)).expect("link");
        #[cfg(not(unix))]
        std::fs::copy(&blob, snap.join(f)).expect("copy");
    }
    std::fs::write(repo.join("refs/main"), COMMIT).expect("ref");
    std::fs::write(repo.join("refs/v1"), format!("{COMMIT}\n")).expect("ref");
}

fn embed(env: (&str, &Path), args: &[&str], out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dinoscope"))
        .arg("embed")
        .args(args)
        .args(["assets/images/chelsea.png", "--size", "64", "-o"])
        .arg(out)
        .env_remove("HF_HUB_CACHE")
        .env_remove("HUGGINGFACE_HUB_CACHE")
        .env_remove("HF_HOME")
        .env(env.0, env.1)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run dinoscope")
}

#[test]
fn weights_by_repository_id_come_from_the_hugging_face_cache() {
    if common::gpu().is_none() {
        return;
    }
    let root = std::env::temp_dir().join(format!("dinoscope-hub-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    make_cache(&root.join("home/hub"));
    let out = root.join("f.safetensors");
    // HF_HOME/hub with the default revision (main), HF_HUB_CACHE with a tag, and a commit.
    for (env, args) in [
        (
            ("HF_HOME", root.join("home")),
            vec!["--weights", "acme/tiny-v3"],
        ),
        (
            ("HF_HUB_CACHE", root.join("home/hub")),
            vec!["--weights", "acme/tiny-v3", "--revision", "v1"],
        ),
        (
            ("HF_HUB_CACHE", root.join("home/hub")),
            vec!["--weights", "acme/tiny-v3", "--revision", COMMIT],
        ),
    ] {
        let _ = std::fs::remove_file(&out);
        let o = embed((env.0, &env.1), &args, &out);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{args:?}: {err}");
        let f = dinoscope::fixtures::TensorFile::open(&out).expect("features");
        assert_eq!(f.get("cls").expect("cls").shape, vec![1, 64]);
    }
    // What is not there is named, with where it was looked for.
    let hub = root.join("home/hub");
    for (args, want) in [
        (
            vec!["--weights", "acme/missing"],
            "not in the Hugging Face cache",
        ),
        (
            vec!["--weights", "acme/tiny-v3", "--revision", "v2"],
            "revision 'v2'",
        ),
        (
            vec![
                "--weights",
                "tests/fixtures/tiny_dinov3/model.safetensors",
                "--revision",
                "v1",
            ],
            "--revision applies to a Hugging Face repository id",
        ),
    ] {
        let o = embed(("HF_HUB_CACHE", &hub), &args, &out);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    std::fs::remove_file(
        hub.join("models--acme--tiny-v3/snapshots")
            .join(COMMIT)
            .join("model.safetensors"),
    )
    .expect("rm");
    let o = embed(("HF_HUB_CACHE", &hub), &["--weights", "acme/tiny-v3"], &out);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("has no model.safetensors")
            && err.contains("huggingface-cli download acme/tiny-v3"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&root);
}
