//! The run lock: one process trains into a run folder at a time.

use std::io::Write;
use std::path::{Path, PathBuf};

/// A run folder held by this process: `.dinoscope.lock` with our pid and this machine's name
/// (on Linux with its pid namespace, so that a container counts as a machine of its own),
/// removed when dropped if it is still ours. A lock left on this machine by a process that no
/// longer exists (killed) is taken over on Unix; one from another machine or container (a shared
/// folder) is never guessed stale, since its process cannot be looked up from here: the error
/// says to remove it.
pub struct RunLock {
    path: PathBuf,
    /// What this process wrote: the file is removed only while it still holds it.
    text: String,
}

impl RunLock {
    /// Takes the lock of `dir`, or says which process holds it.
    pub fn acquire(dir: &Path) -> Result<RunLock, String> {
        let path = dir.join(".dinoscope.lock");
        let here = crate::io::machine_name();
        let text = format!("{}\n{here}\n", std::process::id());
        let mut last = String::new();
        for _ in 0..3 {
            match create_whole(&path, &text) {
                Ok(()) => return Ok(RunLock { path, text }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(format!("{}: cannot create: {e}", path.display())),
            }
            let found = match std::fs::read_to_string(&path) {
                Ok(found) => found,
                // Gone since (its run ended): try again.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
            };
            let mut lines = found.lines().map(str::trim);
            let pid: Option<u32> = lines.next().and_then(|t| t.parse().ok());
            // A lock without a name is from this machine (as earlier versions wrote it).
            let host = lines.next().filter(|h| !h.is_empty() && *h != here);
            match (pid, host) {
                (None, _) => {
                    // Being written where links are not to be had, or cut short by a crash:
                    // never guessed stale.
                    return Err(format!(
                        "{}: names no process (another dinoscope may be starting into this \
                         folder); if none is, remove it",
                        path.display()
                    ));
                }
                (Some(pid), Some(host)) => {
                    return Err(format!(
                        "{}: dinoscope (pid {pid}) on {host} is training into this folder; wait \
                         for it, or choose another run folder (a process of another machine or \
                         container cannot be looked up from here: if none runs there, remove {})",
                        dir.display(),
                        path.display()
                    ))
                }
                (Some(pid), None) if crate::io::process_alive(pid) => {
                    return Err(format!(
                        "{}: another dinoscope (pid {pid}) is training into this folder; wait \
                         for it, or choose another run folder (if no dinoscope is running, process \
                         {pid} is another program, or on Windows none: remove {})",
                        dir.display(),
                        path.display()
                    ))
                }
                // Stale: its process is gone.
                (Some(_), None) => {
                    if let Err(e) = take_over(&path, &found) {
                        last = e;
                    }
                }
            }
        }
        Err(format!(
            "{}: cannot take the run lock{last}",
            path.display()
        ))
    }
}

/// Removes the stale lock `path` that held `found`: moved to a name of this process's first, so
/// that a lock another process made in its place since is never the one removed (it is put
/// back).
fn take_over(path: &Path, found: &str) -> Result<(), String> {
    let gone = unique_beside(path, "stale");
    if let Err(e) = std::fs::rename(path, &gone) {
        return match e.kind() {
            std::io::ErrorKind::NotFound => Ok(()),
            _ => Err(format!(" (cannot move the stale lock aside: {e})")),
        };
    }
    if std::fs::read_to_string(&gone).is_ok_and(|t| t == found) {
        let _ = std::fs::remove_file(&gone);
        return Ok(());
    }
    // Another process's new lock: back in place (never over a newer one), then retried.
    let _ = std::fs::hard_link(&gone, path);
    let _ = std::fs::remove_file(&gone);
    Ok(())
}

/// `.dinoscope.lock.TAG-PID-NANOS` beside `path`: a name no other process uses, on this machine
/// or another sharing the folder.
fn unique_beside(path: &Path, tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    path.with_file_name(format!(
        ".dinoscope.lock.{tag}-{}-{nanos}",
        std::process::id()
    ))
}

/// Creates `path` holding `text`, whole from its first moment: written to a new file of its
/// own, then linked into place (which fails where the name is taken), so that no other process
/// reads it empty. Where the file system has no hard links, created, then written.
fn create_whole(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = unique_beside(path, "new");
    let staged = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    if staged.is_ok() {
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(e),
            Err(_) => {}
        }
    } else {
        let _ = std::fs::remove_file(&tmp);
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(text.as_bytes()).inspect_err(|_| {
        let _ = std::fs::remove_file(path);
    })
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Only while it is ours: a lock removed by hand may since be another run's.
        if std::fs::read_to_string(&self.path).is_ok_and(|t| t == self.text) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RunLock;

    #[test]
    fn a_lock_is_whole_from_the_start_and_removed_only_while_ours() {
        let dir = std::env::temp_dir().join(format!("dinoscope-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let lock = RunLock::acquire(&dir).expect("free");
        let path = dir.join(".dinoscope.lock");
        let text = std::fs::read_to_string(&path).expect("lock");
        assert!(
            text.starts_with(&format!("{}\n", std::process::id())),
            "{text}"
        );
        let names: Vec<_> = std::fs::read_dir(&dir).expect("list").flatten().collect();
        assert_eq!(names.len(), 1, "only the lock: {names:?}");
        let err = RunLock::acquire(&dir).err().expect("held");
        assert!(err.contains("another dinoscope"), "{err}");
        drop(lock);
        assert!(!path.exists());
        // A lock removed by hand and taken by another run since stays that run's.
        let lock = RunLock::acquire(&dir).expect("free again");
        std::fs::write(&path, "1\nanother-machine.example\n").expect("another run's");
        drop(lock);
        assert!(path.exists());
        // A lock that names no process is never guessed stale.
        std::fs::write(&path, "").expect("empty");
        let err = RunLock::acquire(&dir).err().expect("refused");
        assert!(err.contains("names no process"), "{err}");
        // This machine's own lock, as this version writes it, is taken over once its process
        // is gone; nothing is left beside it.
        #[cfg(unix)]
        {
            let mut gone = std::process::Command::new("true").spawn().expect("spawn");
            let dead = gone.id();
            gone.wait().expect("wait");
            std::fs::write(&path, format!("{dead}\n{}\n", crate::io::machine_name()))
                .expect("lock");
            let lock = RunLock::acquire(&dir).expect("a dead process's lock is taken over");
            let names: Vec<_> = std::fs::read_dir(&dir).expect("list").flatten().collect();
            assert_eq!(names.len(), 1, "only the lock: {names:?}");
            drop(lock);
            assert!(!path.exists());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
