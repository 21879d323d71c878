//! The run lock: one process trains into a run folder at a time.

use std::io::Write;
use std::path::{Path, PathBuf};

/// A run folder held by this process: `.dinoscope.lock` with our pid and this machine's name
/// (on Linux with its pid namespace, so that a container counts as a machine of its own),
/// removed when dropped if it is still ours. A lock left on this machine by a process that no
/// longer exists (killed) is taken over; one from another machine or container (a shared
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
        let here = machine_name();
        let text = format!("{}\n{here}\n", std::process::id());
        for _ in 0..2 {
            match create_whole(&path, &text) {
                Ok(()) => return Ok(RunLock { path, text }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let found = std::fs::read_to_string(&path).unwrap_or_default();
                    let mut lines = found.lines().map(str::trim);
                    let pid: Option<u32> = lines.next().and_then(|t| t.parse().ok());
                    // A lock without a name is from this machine (as earlier versions wrote it).
                    let host = lines.next().filter(|h| !h.is_empty() && *h != here);
                    match (pid, host) {
                        (Some(pid), Some(host)) => {
                            return Err(format!(
                                "{}: dinoscope (pid {pid}) on {host} is training into this \
                                 folder; wait for it, or choose another --out (a process of \
                                 another machine or container cannot be looked up from here: \
                                 if none runs there, remove {})",
                                dir.display(),
                                path.display()
                            ))
                        }
                        (Some(pid), None) if process_alive(pid) => {
                            return Err(format!(
                                "{}: another dinoscope (pid {pid}) is training into this folder; \
                                 wait for it, or choose another --out (if no dinoscope is \
                                 running, process {pid} is another program: remove {})",
                                dir.display(),
                                path.display()
                            ))
                        }
                        // Stale (its process is gone) or unreadable: take it over.
                        _ => {
                            let _ = std::fs::remove_file(&path);
                        }
                    }
                }
                Err(e) => return Err(format!("{}: cannot create: {e}", path.display())),
            }
        }
        Err(format!("{}: cannot take the run lock", path.display()))
    }
}

/// Creates `path` holding `text`, whole from its first moment: written aside, then linked into
/// place (which fails where the name is taken), so that no other process reads it empty and
/// takes it for a dead one's. Where the file system has no hard links, created, then written.
fn create_whole(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_file_name(format!(".dinoscope.lock.{}", std::process::id()));
    if std::fs::write(&tmp, text).is_ok() {
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(e),
            Err(_) => {}
        }
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(text.as_bytes())
}

/// This machine as the run lock records it: its name, and on Linux its pid namespace (each
/// container has its own, and pids are looked up only within one); empty where unknown.
fn machine_name() -> String {
    let host = host_name();
    match std::fs::read_link("/proc/self/ns/pid") {
        Ok(ns) if cfg!(target_os = "linux") => format!("{host} {}", ns.display()),
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
        std::env::var("COMPUTERNAME").unwrap_or_default()
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Only while it is ours: a lock removed by hand may since be another run's.
        if std::fs::read_to_string(&self.path).is_ok_and(|t| t == self.text) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Whether a process with this pid exists on this machine (Unix: asked of the kernel; elsewhere
/// assumed alive, so a stale lock must be removed by hand, as the message says).
fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    #[cfg(unix)]
    {
        // Signal 0 checks that the process exists without touching it; a pid of 0 or past
        // pid_t would name a process group, so such a lock is no process's.
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
        // No lookup here: a stale lock is removed by hand, as the error says.
        true
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
        let _ = std::fs::remove_dir_all(&dir);
    }
}
