//! Ctrl-C (and SIGTERM, SIGHUP) as a request to stop cleanly. A training run that is killed
//! outright loses every step since its last checkpoint, which on a long run can be hours; so the
//! first signal only asks the run to stop at its next step and write a checkpoint there, and a
//! second one exits at once, for a run that does not get that far (a hung driver). A signal
//! the parent left ignored stays ignored: `nohup dinoscope train` outlives its terminal, and a
//! script's background run does not stop when Ctrl-C stops the script's foreground command.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The exit status of a process that stopped at a signal's request: 128 + SIGINT, as shells
/// report a process that Ctrl-C ended.
pub const EXIT_INTERRUPTED: u8 = 130;

/// Installs the process's signal handler: the first signal calls `first` and says `what`
/// happens now; a Ctrl-C after it exits with [`EXIT_INTERRUPTED`] without waiting for
/// anything. A repeated SIGTERM or SIGHUP is not a second request: `timeout` sends its SIGTERM
/// to the process and to its group, and a closing terminal's shell sends SIGHUP twice. One
/// handler per process.
pub fn on_signal(what: &'static str, first: impl Fn() + Send + 'static) -> Result<(), String> {
    let seen = AtomicBool::new(false);
    install(move |ctrl_c: bool| {
        // Writes may fail (the terminal that sent SIGHUP is gone), so nothing here panics on
        // them, and the request goes out before anything is written.
        if seen.swap(true, Ordering::SeqCst) {
            if ctrl_c {
                let _ = writeln!(std::io::stderr(), "interrupted again: exiting at once");
                exit_now();
            }
            return;
        }
        first();
        // On its own line, not after a progress bar's.
        let gap = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            "\n"
        } else {
            ""
        };
        let _ = writeln!(
            std::io::stderr(),
            "{gap}interrupted: {what} (Ctrl-C again to quit at once)"
        );
    })
}

/// A flag the first signal sets (see [`on_signal`]), for a loop that checks it between steps.
pub fn stop_flag() -> Result<Arc<AtomicBool>, String> {
    stop_flag_saying("stopping at the next step, with a checkpoint")
}

/// [`stop_flag`] for another loop, whose first signal says `what` happens now.
pub fn stop_flag_saying(what: &'static str) -> Result<Arc<AtomicBool>, String> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    on_signal(what, move || set.store(true, Ordering::SeqCst))?;
    Ok(flag)
}

/// SIGINT, SIGTERM and SIGHUP, each unless this process started with it ignored, delivered to
/// `on` (with whether it is SIGINT) on a thread of its own.
#[cfg(unix)]
fn install(on: impl Fn(bool) + Send + 'static) -> Result<(), String> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let caught: Vec<libc::c_int> = [SIGINT, SIGTERM, SIGHUP]
        .into_iter()
        .filter(|&sig| !ignored(sig))
        .collect();
    if caught.is_empty() {
        return Ok(());
    }
    let mut signals = signal_hook::iterator::Signals::new(&caught)
        .map_err(|e| format!("cannot install the Ctrl-C handler: {e}"))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || signals.forever().for_each(|sig| on(sig == SIGINT)))
        .map(|_| ())
        .map_err(|e| format!("cannot start the Ctrl-C handler's thread: {e}"))
}

/// Whether `sig` is ignored (inherited from the parent: nohup, a script's background job).
#[cfg(unix)]
fn ignored(sig: libc::c_int) -> bool {
    // SAFETY: a null new action only reads the current one into `old`.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}

#[cfg(unix)]
fn exit_now() -> ! {
    // SAFETY: _exit ends the process without running exit handlers or destructors, which a
    // driver thread caught mid-call could otherwise hang in.
    unsafe { libc::_exit(i32::from(EXIT_INTERRUPTED)) }
}

#[cfg(not(unix))]
fn install(on: impl Fn(bool) + Send + 'static) -> Result<(), String> {
    ctrlc::set_handler(move || on(true))
        .map_err(|e| format!("cannot install the Ctrl-C handler: {e}"))
}

#[cfg(windows)]
fn exit_now() -> ! {
    use windows_sys::Win32::System::Threading::{GetCurrentProcess, TerminateProcess};
    // SAFETY: the pseudo-handle of this process is always valid; TerminateProcess ends every
    // thread at once and runs no DLL detach, which a driver thread stuck in a call could hang.
    unsafe {
        TerminateProcess(GetCurrentProcess(), u32::from(EXIT_INTERRUPTED));
    }
    std::process::exit(i32::from(EXIT_INTERRUPTED))
}

#[cfg(all(not(unix), not(windows)))]
fn exit_now() -> ! {
    std::process::exit(i32::from(EXIT_INTERRUPTED))
}

/// While it lives, a signal that would end the process (SIGINT, SIGTERM or SIGHUP, each where
/// nothing handles or ignores it) moves a file aside before the process ends; see
/// [`move_on_signal`].
pub struct MoveOnSignal {
    #[cfg(any(unix, windows))]
    active: bool,
}

/// Renames `path` to `to` if a signal ends the process while the returned guard lives: a marker
/// that says a process died mid-way becomes one that says it was interrupted (which may be a
/// hung driver, or just a user). Signals that something else handles (the training run's
/// Ctrl-C) or that are ignored are left alone, and so is a crash. One path at a time: a guard
/// made while another's lives does nothing. On Windows a console handler (Ctrl-C, Ctrl-Break,
/// the console closing) moves it before the handlers after it run, which may end the process or
/// not; a guard that ends without the process ending removes both names anyway.
pub fn move_on_signal(path: &std::path::Path, to: &std::path::Path) -> MoveOnSignal {
    #[cfg(unix)]
    {
        MoveOnSignal {
            active: unix_move::hold(path, to),
        }
    }
    #[cfg(windows)]
    {
        MoveOnSignal {
            active: windows_move::hold(path, to),
        }
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = (path, to);
        MoveOnSignal {}
    }
}

impl Drop for MoveOnSignal {
    fn drop(&mut self) {
        #[cfg(unix)]
        if self.active {
            unix_move::release();
        }
        #[cfg(windows)]
        if self.active {
            windows_move::release();
        }
    }
}

/// [`move_on_signal`] on Windows: a console control handler, added once, in front of the others
/// (Windows calls the last added first), that renames the held path and passes the event on.
#[cfg(windows)]
mod windows_move {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    /// The path and where it goes, and how many guards hold them.
    static HELD: Mutex<Option<((PathBuf, PathBuf), usize)>> = Mutex::new(None);
    static ADDED: std::sync::Once = std::sync::Once::new();

    /// Windows runs it on a thread of its own, so plain file calls are fine here.
    unsafe extern "system" fn on_console_event(_kind: u32) -> windows_sys::core::BOOL {
        if let Ok(held) = HELD.try_lock() {
            if let Some(((from, to), _)) = held.as_ref() {
                let _ = std::fs::rename(from, to);
            }
        }
        // Not handled here: the next handler (a run's stop, or the default end) follows.
        0
    }

    pub(super) fn hold(path: &Path, to: &Path) -> bool {
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        let paths = (path.to_path_buf(), to.to_path_buf());
        match held.as_mut() {
            Some((p, guards)) if *p == paths => {
                *guards += 1;
                return true;
            }
            Some(_) => return false,
            None => {}
        }
        ADDED.call_once(|| {
            // SAFETY: the handler is a plain function that lives as long as the process.
            unsafe {
                windows_sys::Win32::System::Console::SetConsoleCtrlHandler(
                    Some(on_console_event),
                    1,
                );
            }
        });
        *held = Some((paths, 1));
        true
    }

    pub(super) fn release() {
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, guards)) = held.as_mut() {
            *guards -= 1;
            if *guards == 0 {
                *held = None;
            }
        }
    }
}

/// The state behind [`move_on_signal`]: the paths the handler renames (read by the handler, so
/// atomic pointers) and the actions it replaced, put back when the last guard goes where they
/// are still its own.
#[cfg(unix)]
mod unix_move {
    use std::ffi::CString;
    use std::sync::atomic::{AtomicPtr, Ordering};
    use std::sync::Mutex;

    static FROM: AtomicPtr<libc::c_char> = AtomicPtr::new(std::ptr::null_mut());
    static TO: AtomicPtr<libc::c_char> = AtomicPtr::new(std::ptr::null_mut());

    struct Held {
        paths: (CString, CString),
        guards: usize,
        replaced: Vec<(libc::c_int, libc::sigaction)>,
    }

    static HELD: Mutex<Option<Held>> = Mutex::new(None);
    // The last paths, kept allocated: a handler already running on another thread may still
    // read them.
    static LAST: Mutex<Option<(CString, CString)>> = Mutex::new(None);

    extern "C" fn on_fatal(sig: libc::c_int) {
        let (from, to) = (FROM.load(Ordering::SeqCst), TO.load(Ordering::SeqCst));
        // SAFETY: rename, signal and raise are async-signal-safe; the pointers are null or
        // CStrings that stay allocated while the handler is installed.
        unsafe {
            if !from.is_null() && !to.is_null() {
                libc::rename(from, to);
            }
            // The default action, delivered as the handler returns: the process ends as the
            // signal would have ended it.
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
    }

    fn handler() -> libc::sighandler_t {
        on_fatal as extern "C" fn(libc::c_int) as libc::sighandler_t
    }

    pub(super) fn hold(path: &std::path::Path, to: &std::path::Path) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let (Ok(from), Ok(to)) = (
            CString::new(path.as_os_str().as_bytes()),
            CString::new(to.as_os_str().as_bytes()),
        ) else {
            return false;
        };
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = held.as_mut() {
            if h.paths == (from.clone(), to.clone()) {
                h.guards += 1;
                return true;
            }
            return false;
        }
        // Set before any handler can read them.
        FROM.store(from.as_ptr().cast_mut(), Ordering::SeqCst);
        TO.store(to.as_ptr().cast_mut(), Ordering::SeqCst);
        let mut replaced = Vec::new();
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: sigaction reads the current action into `old` and, where it is the
            // default, installs `on_fatal`, an async-signal-safe handler.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, std::ptr::null(), &mut old) != 0
                    || old.sa_sigaction != libc::SIG_DFL
                {
                    continue;
                }
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = handler();
                new.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut new.sa_mask);
                if libc::sigaction(sig, &new, std::ptr::null_mut()) == 0 {
                    replaced.push((sig, old));
                }
            }
        }
        *held = Some(Held {
            paths: (from, to),
            guards: 1,
            replaced,
        });
        true
    }

    pub(super) fn release() {
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        let Some(h) = held.as_mut() else { return };
        h.guards -= 1;
        if h.guards > 0 {
            return;
        }
        for (sig, old) in &h.replaced {
            // SAFETY: reads the current action, and puts back the one `on_fatal` replaced only
            // where `on_fatal` is still installed (a handler installed since stays).
            unsafe {
                let mut now: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(*sig, std::ptr::null(), &mut now) == 0
                    && now.sa_sigaction == handler()
                {
                    libc::sigaction(*sig, old, std::ptr::null_mut());
                }
            }
        }
        FROM.store(std::ptr::null_mut(), Ordering::SeqCst);
        TO.store(std::ptr::null_mut(), Ordering::SeqCst);
        if let Some(h) = held.take() {
            *LAST.lock().unwrap_or_else(|e| e.into_inner()) = Some(h.paths);
        }
    }
}
