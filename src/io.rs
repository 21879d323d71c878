//! Files written so that a crash never leaves a half-written one: a temporary file in the same
//! folder, fsync, then rename over the target (and fsync of the folder where the OS allows);
//! and the formats written whole in memory (safetensors, ZIP archives of stored files), with
//! safetensors' tensors read back as f32 host tensors.

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
    check_target(path)?;
    let tmp = stage(path, bytes)?;
    publish(&tmp, path)
}

/// [`write_atomic`] where nothing may be at `path` yet: a file made there while the caller
/// worked (after it checked) is kept, and the write fails with `AlreadyExists`.
pub fn write_new_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    check_target(path)?;
    let tmp = stage(path, bytes)?;
    if let Err(e) = place_new(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(&parent_of(path));
    Ok(())
}

/// Moves a staged file to `path` only where nothing is there: a hard link refuses a taken name
/// at once; where the file system has no hard links, a check just before the rename.
fn place_new(tmp: &Path, path: &Path) -> std::io::Result<()> {
    let taken = || {
        std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "already exists (made while this command ran); pass --overwrite to replace it",
        )
    };
    match std::fs::hard_link(tmp, path) {
        Ok(()) => {
            let _ = std::fs::remove_file(tmp);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(taken()),
        Err(_) if std::fs::symlink_metadata(path).is_ok() => Err(taken()),
        Err(_) => std::fs::rename(tmp, path),
    }
}

/// Whether `path` names a device or a pipe (`/dev/null`, a FIFO): never read (one may not
/// end) nor written over (a rename would put a file in its place).
pub fn is_device_or_pipe(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

/// Refuses a target that is a device or a pipe.
fn check_target(path: &Path) -> std::io::Result<()> {
    if is_device_or_pipe(path) {
        return Err(std::io::Error::other(
            "not a regular file (a device or pipe); name a file to write",
        ));
    }
    Ok(())
}

/// Writes every one of `files` (name, bytes) into `dir`, or none: all are written and synced
/// to temporary files first, then each is renamed over its place (so every file is always
/// whole, old or new) while the file it replaces is kept aside; a rename that fails puts the
/// earlier ones back.
pub fn write_all_atomic(dir: &Path, files: &[(&str, &[u8])]) -> Result<(), String> {
    write_all(dir, files, true)
}

/// [`write_all_atomic`] where none of the files may exist yet: one made while the caller
/// worked is kept, and nothing is written.
pub fn write_all_new_atomic(dir: &Path, files: &[(&str, &[u8])]) -> Result<(), String> {
    write_all(dir, files, false)
}

fn write_all(dir: &Path, files: &[(&str, &[u8])], replace: bool) -> Result<(), String> {
    let mut names = std::collections::HashSet::new();
    if let Some((n, _)) = files.iter().find(|(n, _)| !names.insert(n.to_lowercase())) {
        return Err(format!("{}: given twice", dir.join(n).display()));
    }
    // A folder in a file's place would refuse its rename; say so before anything is written.
    if let Some(p) = files.iter().map(|(n, _)| dir.join(n)).find(|p| p.is_dir()) {
        return Err(format!("{}: is a folder, where a file goes", p.display()));
    }
    for p in files.iter().map(|(n, _)| dir.join(n)) {
        check_target(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    let mut staged = Vec::new();
    for (name, bytes) in files {
        let path = dir.join(name);
        match stage(&path, bytes) {
            Ok(tmp) => staged.push((tmp, path)),
            Err(e) => {
                for (tmp, _) in &staged {
                    let _ = std::fs::remove_file(tmp);
                }
                return Err(format!("{}: {e}", path.display()));
            }
        }
    }
    // Each placed file, with the one it replaced kept aside (a hard link, or a copy where the
    // file system has none).
    let mut placed: Vec<(&Path, Option<std::path::PathBuf>)> = Vec::new();
    let mut failure = None;
    for (tmp, path) in &staged {
        if !replace {
            if let Err(e) = place_new(tmp, path) {
                failure = Some(format!("{}: {e}", path.display()));
                break;
            }
            placed.push((path, None));
            continue;
        }
        let old = if std::fs::symlink_metadata(path).is_ok() {
            let old = unused_name(path, "old");
            let kept =
                std::fs::hard_link(path, &old).or_else(|_| std::fs::copy(path, &old).map(|_| ()));
            if let Err(e) = kept {
                failure = Some(format!("{}: cannot keep it aside: {e}", path.display()));
                break;
            }
            Some(old)
        } else {
            None
        };
        if let Err(e) = std::fs::rename(tmp, path) {
            if let Some(old) = old {
                let _ = std::fs::remove_file(old);
            }
            failure = Some(format!("{}: {e}", path.display()));
            break;
        }
        placed.push((path, old));
    }
    if let Some(e) = failure {
        let mut stranded = Vec::new();
        for (path, old) in placed.into_iter().rev() {
            match old {
                Some(old) => {
                    if std::fs::rename(&old, path).is_err() {
                        stranded.push(old.display().to_string());
                    }
                }
                None => {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        for (tmp, _) in &staged {
            let _ = std::fs::remove_file(tmp);
        }
        sync_dir(dir);
        if !stranded.is_empty() {
            return Err(format!(
                "{e}; the earlier files could not be put back and are kept as {}",
                stranded.join(", ")
            ));
        }
        return Err(e);
    }
    for (_, old) in placed {
        if let Some(old) = old {
            let _ = std::fs::remove_file(old);
        }
    }
    sync_dir(dir);
    Ok(())
}

/// `path` with `.TAG` added to its file name, then `.TAG2`, `.TAG3`, … (999 names in all): the
/// names a copy of a file kept beside it can take.
pub fn tagged_names<'a>(
    path: &'a Path,
    tag: &'a str,
) -> impl Iterator<Item = std::path::PathBuf> + 'a {
    (1u32..1000).map(move |i| {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(match i {
            1 => format!(".{tag}"),
            i => format!(".{tag}{i}"),
        });
        path.with_file_name(name)
    })
}

/// A name or path as text: as it is where it is UTF-8, else with each byte that is not written
/// `\xNN` (a lossy `?` would make two names one: two class folders, two files in a list).
pub fn text_of(name: &std::ffi::OsStr) -> String {
    if let Some(s) = name.to_str() {
        return s.to_string();
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let mut out = String::new();
        for chunk in name.as_bytes().utf8_chunks() {
            out.push_str(chunk.valid());
            for b in chunk.invalid() {
                out.push_str(&format!("\\x{b:02X}"));
            }
        }
        out
    }
    #[cfg(not(unix))]
    {
        format!("{name:?}")
    }
}

/// A hidden name beside `path` that nothing has yet: `.NAME.TAGn`.
fn unused_name(path: &Path, tag: &str) -> std::path::PathBuf {
    (0u32..)
        .map(|i| beside(path, tag, i))
        .find(|p| !p.exists())
        .unwrap_or_else(|| beside(path, tag, u32::MAX))
}

/// `.NAME.TAGi` in the folder of `path` (NAME its file name).
fn beside(path: &Path, tag: &str, i: u32) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "out".into());
    parent_of(path).join(format!(".{name}.{tag}{i}"))
}

/// The folder `path` is in (`.` for a bare name).
fn parent_of(path: &Path) -> std::path::PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    }
}

/// Writes `bytes` to a new hidden file beside `path` (`.NAME.tmp-MACHINE-PID-n`) and syncs it;
/// returns its path. Staged files of `path` that a process of this machine no longer running
/// left (killed while it wrote) go first: they would otherwise stay, hidden, as large as what
/// they held.
fn stage(path: &Path, bytes: &[u8]) -> std::io::Result<std::path::PathBuf> {
    let here = machine_tag();
    if let Some(here) = &here {
        remove_stale_stages(path, here);
    }
    let tag = format!(
        "tmp-{}-{}-",
        here.as_deref().unwrap_or("0"),
        std::process::id()
    );
    let mut attempt = 0u32;
    let (tmp, file) = loop {
        let tmp = beside(path, &tag, attempt);
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
    // The file is closed at the end of this block, before any rename.
    let result = {
        let mut file = file;
        file.write_all(bytes).and_then(|_| file.sync_all())
    };
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(tmp)
}

/// This machine's name as eight hex digits (FNV-1a), for staged files' names; `None` where the
/// name is unknown (then no staged file is ever taken for a leftover).
fn machine_tag() -> Option<String> {
    let name = machine_name();
    if name.is_empty() {
        return None;
    }
    let h = name.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    Some(format!("{h:08x}"))
}

/// Removes `path`'s staged files (`.NAME.tmp-MACHINE-PID-n`) made on this machine (`here`) by
/// a process that is no longer running. Another machine's (a shared folder) are never touched:
/// their processes cannot be looked up from here.
fn remove_stale_stages(path: &Path, here: &str) {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().to_string()) else {
        return;
    };
    let prefix = format!(".{name}.tmp-{here}-");
    let Ok(entries) = std::fs::read_dir(parent_of(path)) else {
        return;
    };
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().to_string();
        let pid = file
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split_once('-'))
            .filter(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        if pid.is_some_and(|pid| !process_alive(pid)) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// This machine as the run lock and the staged files record it: its name, and on Linux its pid
/// namespace (each container has its own, and pids are looked up only within one); empty where
/// unknown.
pub fn machine_name() -> String {
    let host = host_name();
    // Trimmed as the lock's lines are read back (a host without a name included).
    match std::fs::read_link("/proc/self/ns/pid") {
        Ok(ns) if cfg!(target_os = "linux") => format!("{host} {}", ns.display()).trim().into(),
        _ => host,
    }
}

/// This machine's name (empty where it cannot be read).
fn host_name() -> String {
    #[cfg(unix)]
    {
        let mut buf = [0u8; 256];
        // SAFETY: gethostname writes at most `len` bytes into the buffer it is given.
        if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
            return String::new();
        }
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).trim().to_string()
    }
    #[cfg(not(unix))]
    {
        std::env::var("COMPUTERNAME")
            .map(|n| n.trim().to_string())
            .unwrap_or_default()
    }
}

/// Whether a process with this pid exists on this machine (Unix: asked of the kernel; elsewhere
/// assumed alive, so that nothing of a running process is ever taken for a leftover).
pub fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    #[cfg(unix)]
    {
        // Signal 0 checks that the process exists without touching it; a pid of 0 or past
        // pid_t would name a process group, so no process has it.
        let Ok(raw) = libc::pid_t::try_from(pid) else {
            return false;
        };
        if raw <= 0 {
            return false;
        }
        // SAFETY: kill with signal 0 sends nothing; it only reports whether `raw` exists.
        let r = unsafe { libc::kill(raw, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        true
    }
}

/// Renames a staged file over `path` and syncs the folder; the staged file goes on failure.
fn publish(tmp: &Path, path: &Path) -> std::io::Result<()> {
    if let Err(e) = std::fs::rename(tmp, path) {
        let _ = std::fs::remove_file(tmp);
        return Err(e);
    }
    sync_dir(&parent_of(path));
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

/// Ends the process after standard output refused a write ([`say!`](crate::say)): quietly
/// with 141 (a shell's code for SIGPIPE) where the reader went away, as `| head` leaves it;
/// else with the reason and exit code 1.
pub fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(141);
    }
    eprintln!("error: cannot write to standard output: {e}");
    std::process::exit(1)
}

/// A tensor read from a safetensors file, converted to f32 (or kept as integers).
#[derive(Clone, Debug)]
pub struct HostTensor {
    /// Shape.
    pub shape: Vec<usize>,
    /// Values as f32 (integers converted).
    pub data: Vec<f32>,
}

/// Floating-point safetensors data (F32, F64, F16, BF16) as f32; `None` for other dtypes.
pub fn decode_float(dtype: safetensors::Dtype, raw: &[u8]) -> Option<Vec<f32>> {
    use safetensors::Dtype;
    Some(match dtype {
        Dtype::F32 => raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F64 => raw
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        Dtype::F16 => raw
            .chunks_exact(2)
            .map(|c| crate::half::to_f32(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        Dtype::BF16 => raw
            .chunks_exact(2)
            .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
            .collect(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::{write_all_atomic, write_all_new_atomic, write_new_atomic};

    /// A staged file of a process that is gone (killed as it wrote) is removed by the next
    /// write of the same name; one of a running process, another name's, another machine's
    /// (a shared folder) and an older version's unnumbered one stay.
    #[cfg(unix)]
    #[test]
    fn a_dead_writers_staged_file_goes_with_the_next_write() {
        let dir = std::env::temp_dir().join(format!("dinoscope-io-stale-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let me = std::process::id();
        let here = super::machine_tag().expect("this machine has a name");
        let dead = format!(".w.safetensors.tmp-{here}-2147483000-0");
        let elsewhere = if here == "00000000" {
            "00000001"
        } else {
            "00000000"
        };
        let kept = [
            format!(".w.safetensors.tmp-{here}-{me}-7"),
            format!(".x.safetensors.tmp-{here}-2147483000-0"),
            format!(".w.safetensors.tmp-{elsewhere}-2147483000-0"),
            ".w.safetensors.tmp0".to_string(),
        ];
        for name in kept.iter().map(String::as_str).chain([dead.as_str()]) {
            std::fs::write(dir.join(name), b"partial").expect("write");
        }
        super::write_atomic(&dir.join("w.safetensors"), b"whole").expect("write");
        assert!(!dir.join(&dead).exists());
        for name in &kept {
            assert!(dir.join(name).exists(), "{name}");
        }
        assert_eq!(
            std::fs::read(dir.join("w.safetensors")).expect("read"),
            b"whole"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_new_file_never_replaces_one_made_meanwhile() {
        let dir = std::env::temp_dir().join(format!("dinoscope-io-new-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let p = dir.join("features.safetensors");
        write_new_atomic(&p, b"first").expect("nothing there yet");
        let e = write_new_atomic(&p, b"second").expect_err("taken");
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&p).expect("kept"), b"first");
        // A set: nothing of it is written, the file there is kept.
        std::fs::write(dir.join("b.png"), b"the user's").expect("write");
        let err = write_all_new_atomic(&dir, &[("a.png", b"a"), ("b.png", b"b")]).unwrap_err();
        assert!(
            err.contains("b.png") && err.contains("already exists"),
            "{err}"
        );
        assert!(!dir.join("a.png").exists());
        assert_eq!(std::fs::read(dir.join("b.png")).expect("b"), b"the user's");
        let names: Vec<String> = std::fs::read_dir(&dir)
            .expect("list")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_set_of_files_replaces_the_old_ones_and_leaves_nothing_aside() {
        let dir = std::env::temp_dir().join(format!("dinoscope-io-set-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("a.json"), b"old a").expect("write");
        write_all_atomic(&dir, &[("a.json", b"new a"), ("b.bin", b"new b")]).expect("write");
        assert_eq!(std::fs::read(dir.join("a.json")).expect("a"), b"new a");
        assert_eq!(std::fs::read(dir.join("b.bin")).expect("b"), b"new b");
        let hidden = std::fs::read_dir(&dir)
            .expect("list")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .count();
        assert_eq!(hidden, 0);
        // The same name twice (in any case) is refused before anything is written.
        let err = write_all_atomic(&dir, &[("a.json", b"x"), ("A.json", b"y")]).unwrap_err();
        assert!(err.contains("given twice"), "{err}");
        assert_eq!(std::fs::read(dir.join("a.json")).expect("a"), b"new a");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(all(test, unix))]
mod fifo_tests {
    use std::os::unix::fs::FileTypeExt;

    /// A pipe (as `/dev/null`, not a regular file) is refused as a target, and left a pipe.
    #[test]
    fn a_pipe_is_not_written_over() {
        let dir = std::env::temp_dir().join(format!("dinoscope-io-fifo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let fifo = dir.join("out.json");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo");
        let err = super::write_atomic(&fifo, b"x").expect_err("a pipe");
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let err = super::write_all_atomic(&dir, &[("out.json", b"x")]).expect_err("a pipe");
        assert!(err.contains("not a regular file"), "{err}");
        let still = std::fs::symlink_metadata(&fifo).is_ok_and(|m| m.file_type().is_fifo());
        assert!(still, "the pipe was replaced");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
