//! Ctrl-C (and SIGTERM, SIGHUP) as a request to stop cleanly. A training run that is killed
//! outright loses every step since its last checkpoint, which on a long run can be hours; so the
//! first signal only asks the run to end after the step in flight and write a checkpoint there,
//! and a second one exits at once for a run that does not get that far (a hung driver).
//! SIGTERM and SIGHUP that the parent left ignored stay ignored: `nohup dinoscope train` keeps
//! running when its terminal closes, as it did before there was a handler.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The exit status of a process that stopped at a signal's request: 128 + SIGINT, as shells
/// report a process that Ctrl-C ended.
pub const EXIT_INTERRUPTED: u8 = 130;

/// Installs the process's signal handler: the first signal says `what` happens now and calls
/// `first`, a second one exits with [`EXIT_INTERRUPTED`] without waiting for anything. One
/// handler per process.
pub fn on_signal(what: &'static str, first: impl Fn() + Send + 'static) -> Result<(), String> {
    let kept = ignored_at_start();
    let seen = AtomicBool::new(false);
    ctrlc::set_handler(move || {
        if seen.swap(true, Ordering::SeqCst) {
            eprintln!("interrupted again: exiting without a checkpoint");
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
        eprintln!("interrupted: {what} (interrupt again to quit at once)");
        first();
    })
    .map_err(|e| format!("cannot install the Ctrl-C handler: {e}"))?;
    ignore_again(&kept);
    Ok(())
}

/// A flag the first signal sets (see [`on_signal`]), for a loop that checks it between steps.
pub fn stop_flag() -> Result<Arc<AtomicBool>, String> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    on_signal(
        "stopping after the step in flight, with a checkpoint",
        move || set.store(true, Ordering::SeqCst),
    )?;
    Ok(flag)
}

/// SIGTERM and SIGHUP where this process started with them ignored.
#[cfg(unix)]
fn ignored_at_start() -> Vec<libc::c_int> {
    [libc::SIGTERM, libc::SIGHUP]
        .into_iter()
        .filter(|&sig| {
            // SAFETY: a null new action only reads the current one into `old`.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                    && old.sa_sigaction == libc::SIG_IGN
            }
        })
        .collect()
}

#[cfg(unix)]
fn ignore_again(signals: &[libc::c_int]) {
    for &sig in signals {
        // SAFETY: SIG_IGN installs no code of ours; it restores what the process started with.
        unsafe {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
}

#[cfg(not(unix))]
fn ignored_at_start() -> Vec<i32> {
    Vec::new()
}

#[cfg(not(unix))]
fn ignore_again(_: &[i32]) {}
