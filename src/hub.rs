//! Weights from the Hugging Face cache: `--weights facebook/dinov2-small` finds the files a user
//! already fetched with transformers or `huggingface-cli download`, where those tools keep them
//! (`models--{org}--{name}/snapshots/{commit}/…`, with `refs/{branch or tag}` naming the commit).
//! The cache folder is `HF_HUB_CACHE`, else `HF_HOME/hub`, else `XDG_CACHE_HOME/huggingface/hub`,
//! else `~/.cache/huggingface/hub`, as the Hugging Face tools decide it. Nothing is downloaded.

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
             else HF_HOME/hub, else ~/.cache/huggingface/hub); {fetch}",
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

/// `--weights` as given: a file path as is, or a repository id resolved to the cached
/// `model.safetensors` of its snapshot (its `config.json` sits beside it).
pub fn resolve_weights(arg: &Path, revision: Option<&str>) -> Result<PathBuf, String> {
    match arg.to_str() {
        Some(s) if is_repo_id(s) => cached_file(s, revision, "model.safetensors"),
        _ if revision.is_some() => Err(format!(
            "--revision applies to a Hugging Face repository id (org/name), not to the file {}",
            arg.display()
        )),
        _ => Ok(arg.to_path_buf()),
    }
}
