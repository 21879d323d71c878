//! Weights from the Hugging Face cache: `--weights facebook/dinov2-small` finds the files a user
//! already fetched with transformers or `huggingface-cli download`, where those tools keep them
//! (`models--{org}--{name}/snapshots/{commit}/…`, with `refs/{branch or tag}` naming the commit).
//! The cache folder is `HF_HUB_CACHE`, else `HF_HOME/hub`, else `XDG_CACHE_HOME/huggingface/hub`,
//! else `~/.cache/huggingface/hub`, as the Hugging Face tools decide it. What is not cached is
//! downloaded into it (feature `hub`, through the `hf-hub` client: `HF_ENDPOINT`, `HF_TOKEN` or
//! the token file of `huggingface-cli login`), unless `HF_HUB_OFFLINE` is set.

use std::path::{Path, PathBuf};

/// The Hugging Face hub cache folder of this environment.
pub fn cache_dir() -> PathBuf {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = var("HF_HUB_CACHE").or_else(|| var("HUGGINGFACE_HUB_CACHE")) {
        return d;
    }
    if let Some(h) = var("HF_HOME") {
        return h.join("hub");
    }
    let base = var("XDG_CACHE_HOME").unwrap_or_else(|| {
        var("HOME")
            .or_else(|| var("USERPROFILE"))
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".cache")
    });
    base.join("huggingface").join("hub")
}

/// Whether `s` reads as a Hub repository id (`org/name`) rather than a file path: one slash,
/// both parts non-empty names, no file extension of a weights file, and no such file exists.
pub fn is_repo_id(s: &str) -> bool {
    let Some((org, name)) = s.split_once('/') else {
        return false;
    };
    let part_ok = |p: &str| {
        !p.is_empty()
            && !p.starts_with('.')
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    part_ok(org)
        && part_ok(name)
        && !name.ends_with(".safetensors")
        && !name.ends_with(".json")
        && !Path::new(s).exists()
        // `photos/p1` under an existing `photos/` is a mistyped path, not a repository.
        && !Path::new(org).is_dir()
}

fn is_commit(rev: &str) -> bool {
    rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The cached `file` of model repository `repo` at `revision` (a branch, tag or commit hash;
/// default `main`), or an error saying where it was looked for and how to get it.
pub fn cached_file(repo: &str, revision: Option<&str>, file: &str) -> Result<PathBuf, String> {
    cached_file_in(&cache_dir(), repo, revision, file)
}

/// [`cached_file`] in a given cache folder.
pub fn cached_file_in(
    cache: &Path,
    repo: &str,
    revision: Option<&str>,
    file: &str,
) -> Result<PathBuf, String> {
    let rev = revision.unwrap_or("main");
    let dir = cache.join(format!("models--{}", repo.replace('/', "--")));
    let fetch = format!(
        "fetch it with `huggingface-cli download {repo}{}` (or from Python with transformers), or \
         give --weights a file path",
        revision.map_or(String::new(), |r| format!(" --revision {r}"))
    );
    if !dir.is_dir() {
        return Err(format!(
            "{repo}: not in the Hugging Face cache ({} does not exist; the cache is HF_HUB_CACHE, \
             else HF_HOME/hub, else XDG_CACHE_HOME/huggingface/hub, else \
             ~/.cache/huggingface/hub); {fetch}",
            dir.display()
        ));
    }
    let commit = if is_commit(rev) {
        rev.to_string()
    } else {
        let r = dir.join("refs").join(rev);
        std::fs::read_to_string(&r)
            .map(|s| s.trim().to_string())
            .map_err(|_| {
                format!(
                    "{repo}: revision '{rev}' is not in the cache ({} is missing); {fetch}",
                    r.display()
                )
            })?
    };
    if commit.is_empty() || commit.contains(['/', '\\']) || commit == ".." {
        return Err(format!(
            "{repo}: the cache's {} names no snapshot ('{commit}'); {fetch}",
            dir.join("refs").join(rev).display()
        ));
    }
    let path = dir.join("snapshots").join(&commit).join(file);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{repo}: the cached snapshot {commit} has no {file} ({} is missing); {fetch}",
            path.display()
        ))
    }
}

/// Whether `HF_HUB_OFFLINE` asks for the cache only.
pub fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
        .unwrap_or(false)
}

/// The model weights of repository `repo`: from the cache, else downloaded into it with the
/// snapshot's `config.json` (when the repository has one) beside them.
pub fn model_weights(repo: &str, revision: Option<&str>) -> Result<PathBuf, String> {
    let cached = cached_file(repo, revision, "model.safetensors");
    match cached {
        Ok(p) => Ok(p),
        Err(e) if offline() => Err(format!(
            "{e} (HF_HUB_OFFLINE is set: nothing is downloaded)"
        )),
        Err(e) => download(repo, revision).map_err(|d| if d.is_empty() { e } else { d }),
    }
}

/// Downloads `config.json` (if the repository has one) and `model.safetensors` into the cache;
/// an empty error when this build cannot download.
#[cfg(feature = "hub")]
fn download(repo: &str, revision: Option<&str>) -> Result<PathBuf, String> {
    use hf_hub::api::sync::ApiBuilder;
    use hf_hub::{Repo, RepoType};
    let cache = cache_dir();
    let token = std::env::var("HF_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .or_else(|| hf_hub::Cache::new(cache.clone()).token());
    let api = ApiBuilder::from_env()
        .with_cache_dir(cache)
        .with_token(token)
        .with_progress(true)
        .with_retries(2)
        .build()
        .map_err(|e| format!("{repo}: cannot reach the Hugging Face Hub: {e}"))?;
    let rev = revision.unwrap_or("main").to_string();
    let handle = api.repo(Repo::with_revision(
        repo.to_string(),
        RepoType::Model,
        rev.clone(),
    ));
    let explain = |file: &str, e: hf_hub::api::sync::ApiError| -> String {
        use hf_hub::api::sync::ApiError;
        let status = match &e {
            ApiError::RequestError(b) => match b.as_ref() {
                ureq::Error::Status(code, _) => Some(*code),
                _ => None,
            },
            _ => None,
        };
        match status {
            Some(401) | Some(403) => format!(
                "{repo}: the Hugging Face Hub refused access to {file} (HTTP {}): the repository \
                 does not exist, or is gated or private (accept its licence on the Hub and set \
                 HF_TOKEN, or run `huggingface-cli login`)",
                status.unwrap_or(0)
            ),
            Some(404) => format!(
                "{repo}: no {file} at revision '{rev}' on the Hugging Face Hub (HTTP 404: check the \
                 repository id and --revision)"
            ),
            _ => format!("{repo}: downloading {file} failed: {e}"),
        }
    };
    eprintln!(
        "downloading {repo} ({rev}) from the Hugging Face Hub into {}",
        cache_dir().display()
    );
    if let Err(e) = handle.get("config.json") {
        let msg = explain("config.json", e);
        // A repository without config.json still has weights; anything else is an error.
        if !msg.contains("HTTP 404") {
            return Err(msg);
        }
    }
    handle
        .get("model.safetensors")
        .map_err(|e| explain("model.safetensors", e))
}

#[cfg(not(feature = "hub"))]
fn download(_repo: &str, _revision: Option<&str>) -> Result<PathBuf, String> {
    Err(String::new())
}

/// `--weights` as given: a file path as is, a run folder (or a model folder) as the weights in
/// it, or a repository id resolved to the `model.safetensors` of its snapshot (its
/// `config.json` sits beside it), downloaded if needed.
pub fn resolve_weights(arg: &Path, revision: Option<&str>) -> Result<PathBuf, String> {
    if arg.is_dir() {
        return ["teacher_backbone.safetensors", "model.safetensors"]
            .iter()
            .map(|f| arg.join(f))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                format!(
                    "{}: a folder without teacher_backbone.safetensors (a training run) or \
                     model.safetensors; give the weights file",
                    arg.display()
                )
            });
    }
    match arg.to_str() {
        Some(s) if is_repo_id(s) => model_weights(s, revision),
        _ if revision.is_some() => Err(format!(
            "--revision applies to a Hugging Face repository id (org/name), not to the file {}",
            arg.display()
        )),
        _ => Ok(arg.to_path_buf()),
    }
}
