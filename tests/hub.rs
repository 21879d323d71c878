//! `--weights org/name`: weights found in a Hugging Face cache laid out as transformers and
//! huggingface-cli leave it (blobs, snapshots linking to them, refs), located through HF_HOME or
//! HF_HUB_CACHE, at a branch, a tag or a commit (offline); and downloaded into that layout from a
//! stand-in for the Hub on 127.0.0.1 (HF_ENDPOINT), with a refused token and a missing file
//! named. Nothing leaves the machine.

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

/// `dinoscope embed ARGS` of one picture into `out` (replaced), run in the crate's folder.
fn embed_command(args: &[&str], out: &Path) -> Command {
    let mut c = common::command(env!("CARGO_BIN_EXE_dinoscope"));
    c.arg("embed")
        .args(args)
        .args([
            "assets/images/chelsea.png",
            "--size",
            "64",
            "--overwrite",
            "-o",
        ])
        .arg(out)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn embed(env: (&str, &Path), args: &[&str], out: &Path) -> std::process::Output {
    embed_command(args, out)
        .env_remove("HF_HUB_CACHE")
        .env_remove("HUGGINGFACE_HUB_CACHE")
        .env_remove("HF_HOME")
        .env("HF_HUB_OFFLINE", "1")
        .env(env.0, env.1)
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
    let dim = dinoscope::model::config::VitConfig::load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tiny_dinov3/config.json"
    )))
    .expect("config")
    .dim;
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
        assert_eq!(f.get("cls").expect("cls").shape, vec![1, dim]);
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

/// A stand-in for the Hub on 127.0.0.1: `GET /{repo}/resolve/{rev}/{file}` with the headers the
/// Hub sends (etag, x-repo-commit, Content-Range for ranged reads); 401 for the token "refused",
/// 404 for files it does not hold. Returns its address.
fn serve_hub(files: Vec<(String, Vec<u8>)>) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let (mut range, mut auth) = (None, None);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("range: bytes=") {
                    range = v
                        .trim()
                        .split('-')
                        .next()
                        .and_then(|s| s.parse::<usize>().ok());
                } else if lower.starts_with("authorization:") {
                    auth = Some(line.trim().to_string());
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
            let found = files.iter().find(|(p, _)| path == *p);
            let response: Vec<u8> = if auth.as_deref().is_some_and(|a| a.ends_with("refused")) {
                b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec()
            } else if let Some((_, body)) = found {
                let start = range.unwrap_or(0).min(body.len());
                let end = if request.contains("bytes=0-0") || path.is_empty() {
                    1
                } else {
                    body.len()
                };
                // The metadata probe asks for bytes 0-0; the download for bytes N-.
                let probe = range == Some(0) && end == 1;
                let slice = if probe { &body[..1] } else { &body[start..] };
                let last = if probe { 0 } else { body.len() - 1 };
                let mut head = format!(
                    "HTTP/1.1 206 Partial Content\r\netag: \"e{}\"\r\nx-repo-commit: {COMMIT}\r\n\
                     Content-Range: bytes {start}-{last}/{}\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n",
                    body.len(),
                    body.len(),
                    slice.len()
                )
                .into_bytes();
                head.extend_from_slice(slice);
                head
            } else {
                b"HTTP/1.1 404 Not Found\r\nx-error-code: EntryNotFound\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
            };
            let _ = stream.write_all(&response);
        }
    });
    format!("http://{addr}")
}

#[test]
fn weights_not_in_the_cache_are_downloaded_from_the_hub_endpoint() {
    if common::gpu().is_none() {
        return;
    }
    let read = |f: &str| std::fs::read(fixture(f)).expect("fixture");
    let endpoint = serve_hub(vec![
        (
            "/acme/tiny-v3/resolve/main/model.safetensors".into(),
            read("model.safetensors"),
        ),
        (
            "/acme/tiny-v3/resolve/main/config.json".into(),
            read("config.json"),
        ),
        (
            "/acme/no-config/resolve/main/model.safetensors".into(),
            read("model.safetensors"),
        ),
    ]);
    let root = std::env::temp_dir().join(format!("dinoscope-hub-dl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let cache = root.join("hub");
    let out = root.join("f.safetensors");
    let run = |args: &[&str], token: &str, offline: bool| {
        let mut c = embed_command(args, &out);
        c.env("HF_HUB_CACHE", &cache)
            .env("HF_ENDPOINT", &endpoint)
            .env("HF_TOKEN", token)
            .env_remove("HF_HOME");
        if offline {
            c.env("HF_HUB_OFFLINE", "1");
        } else {
            c.env_remove("HF_HUB_OFFLINE");
        }
        c.output().expect("run dinoscope")
    };
    // Offline, nothing is fetched.
    let o = run(&["--weights", "acme/tiny-v3"], "t", true);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("HF_HUB_OFFLINE"),
        "{err}"
    );
    // Downloaded into the standard layout, config.json beside the weights.
    let o = run(&["--weights", "acme/tiny-v3"], "t", false);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let snap = cache.join("models--acme--tiny-v3/snapshots").join(COMMIT);
    assert_eq!(
        std::fs::read(snap.join("model.safetensors")).expect("cached"),
        read("model.safetensors")
    );
    assert!(snap.join("config.json").is_file());
    let main = std::fs::read_to_string(cache.join("models--acme--tiny-v3/refs/main")).expect("ref");
    assert_eq!(main.trim(), COMMIT);
    // Now cached: works offline.
    let o = run(&["--weights", "acme/tiny-v3"], "t", true);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A repository without config.json: the config is inferred from the weights.
    let o = run(&["--weights", "acme/no-config"], "t", false);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A refused token and a missing file are named.
    let o = run(&["--weights", "acme/private"], "refused", false);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("refused access") && err.contains("HF_TOKEN"),
        "{err}"
    );
    let o = run(
        &["--weights", "acme/tiny-v3", "--revision", "v9"],
        "t",
        false,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("HTTP 404"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_folder_as_weights_means_the_weights_in_it_and_a_local_prefix_is_no_repository() {
    let dir = std::env::temp_dir().join(format!("dinoscope-hub-dirs-{}", std::process::id()));
    let run = dir.join("run");
    std::fs::create_dir_all(&run).expect("mkdir");
    let err = dinoscope::hub::resolve_weights(&run, None).unwrap_err();
    assert!(err.contains("teacher_backbone.safetensors"), "{err}");
    std::fs::write(run.join("teacher_backbone.safetensors"), b"").expect("write");
    assert_eq!(
        dinoscope::hub::resolve_weights(&run, None).expect("weights"),
        run.join("teacher_backbone.safetensors")
    );
    // `tests/p1` names no repository: `tests` is a local folder (the tests run in the crate's).
    assert!(!dinoscope::hub::is_repo_id("tests/p1"));
    assert!(dinoscope::hub::is_repo_id("facebook/dinov2-small"));
    let _ = std::fs::remove_dir_all(&dir);
}
