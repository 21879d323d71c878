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
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    on_signal("stopping at the next step, with a checkpoint", move || {
        set.store(true, Ordering::SeqCst)
    })?;
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

#[cfg(not(unix))]
fn exit_now() -> ! {
    std::process::exit(i32::from(EXIT_INTERRUPTED))
}
