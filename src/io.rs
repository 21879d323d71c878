//! Files written so that a crash never leaves a half-written one: a temporary file in the same
//! folder, fsync, then rename over the target (and fsync of the folder where the OS allows);
//! and the formats written whole in memory (safetensors, ZIP archives of stored files).

use std::io::Write;
use std::path::Path;

mod zip;
pub use zip::zip_stored;

/// The CRC-32 of `bytes` (ZIP's and gzip's: the IEEE polynomial).
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(bytes);
    c.sum()
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "out".into());
    let mut attempt = 0u32;
    let (tmp, file) = loop {
        let tmp = dir.join(format!(".{name}.tmp{attempt}"));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 1000 => {
                attempt += 1
            }
            Err(e) => return Err(e),
        }
    };
    // The file is closed at the end of this block, before the rename.
    let result = {
        let mut file = file;
        file.write_all(bytes).and_then(|_| file.sync_all())
    };
    if let Err(e) = result.and_then(|_| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(&dir);
    Ok(())
}

/// Makes a folder's entries (renames, new files) durable where the OS allows opening a folder.
pub fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// F32 tensors (name, shape, values) and string metadata as safetensors bytes.
pub fn safetensors_bytes(
    tensors: &[(String, Vec<usize>, &[f32])],
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<Vec<u8>, String> {
    let raw: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                s.clone(),
                bytemuck::cast_slice::<f32, u8>(d).to_vec(),
            )
        })
        .collect();
    let mut views = Vec::with_capacity(raw.len());
    for (n, s, b) in &raw {
        let v = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
            .map_err(|e| format!("tensor '{n}': {e}"))?;
        views.push((n.clone(), v));
    }
    safetensors::serialize(views, metadata).map_err(|e| e.to_string())
}

/// `p` as a full path (canonical), without the `\\?\` prefix Windows puts on canonical paths,
/// which other programs (and people) read badly; `p` itself when it cannot be resolved.
pub fn full_path(p: &Path) -> std::path::PathBuf {
    let Ok(full) = std::fs::canonicalize(p) else {
        return p.to_path_buf();
    };
    let s = full.to_string_lossy();
    match s.strip_prefix(r"\\?\") {
        // Only a drive path (`C:\…`); a verbatim UNC path keeps its form.
        Some(rest) if rest.as_bytes().get(1) == Some(&b':') => std::path::PathBuf::from(rest),
        _ => full,
    }
}
