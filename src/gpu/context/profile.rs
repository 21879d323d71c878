//! The kernel profiler (`dinoscope bench train --profile`): every dispatch timed by GPU
//! timestamps, credited to its kernel entry and, where the launcher labelled it (each product
//! and attention pass), to that piece of work with its FLOPs.

use super::*;

/// A kernel's share of a profile: how often it ran and its GPU time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KernelTime {
    /// Dispatches timed.
    pub count: u64,
    /// GPU seconds, summed over them.
    pub seconds: f64,
}

/// A labelled piece of work's share of a profile (a product of some shape and plan, an
/// attention pass): its calls, their GPU time over all their dispatches, and their FLOPs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkTime {
    /// Calls (a split-K product's reduction is part of its call).
    pub calls: u64,
    /// GPU seconds, summed over every dispatch of every call.
    pub seconds: f64,
    /// Floating-point operations, summed over the calls.
    pub flops: f64,
}

impl WorkTime {
    /// The rate its calls ran at, in FLOP/s.
    pub fn flop_rate(&self) -> f64 {
        self.flops / self.seconds.max(1e-12)
    }
}

/// What a profile found, the longest first in each table.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    /// GPU time by kernel entry.
    pub kernels: Vec<(&'static str, KernelTime)>,
    /// GPU time by labelled piece of work.
    pub work: Vec<(String, WorkTime)>,
}

/// The tables a profile fills.
#[derive(Default)]
pub(crate) struct Tables {
    kernels: HashMap<&'static str, KernelTime>,
    work: HashMap<String, WorkTime>,
}

/// One timed dispatch: its kernel entry, the label and FLOPs of the work it belongs to (the
/// FLOPs on the work's first dispatch only), and its GPU seconds.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) type Timed = (&'static str, Option<(String, f64)>, f64);

impl Gpu {
    /// Times every dispatch from now on, one compute pass each, and waits for each submission
    /// (slower: for finding where a step's time goes). Needs timestamp queries and a native
    /// build (a browser cannot wait for the GPU); returns whether profiling started.
    pub fn start_profile(&self) -> bool {
        if cfg!(target_arch = "wasm32") || !self.has_timestamps() {
            return false;
        }
        if let Ok(mut p) = self.profile.lock() {
            *p = Some(Tables::default());
        }
        true
    }

    /// Whether dispatches are being timed.
    pub fn profiling(&self) -> bool {
        self.profile.lock().is_ok_and(|p| p.is_some())
    }

    /// Stops profiling and returns what it found.
    pub fn take_profile(&self) -> Profile {
        let tables = self.profile.lock().ok().and_then(|mut p| p.take());
        let tables = tables.unwrap_or_default();
        let mut kernels: Vec<_> = tables.kernels.into_iter().collect();
        kernels.sort_by(|a, b| b.1.seconds.total_cmp(&a.1.seconds));
        let mut work: Vec<_> = tables.work.into_iter().collect();
        work.sort_by(|a, b| b.1.seconds.total_cmp(&a.1.seconds));
        Profile { kernels, work }
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn add_profile(&self, times: impl Iterator<Item = Timed>) {
        let Ok(mut p) = self.profile.lock() else {
            return;
        };
        let Some(tables) = p.as_mut() else {
            return;
        };
        for (name, work, s) in times {
            let row = tables.kernels.entry(name).or_default();
            row.count += 1;
            row.seconds += s;
            if let Some((label, flops)) = work {
                let row = tables.work.entry(label).or_default();
                row.seconds += s;
                if flops > 0.0 {
                    row.calls += 1;
                    row.flops += flops;
                }
            }
        }
    }
}
