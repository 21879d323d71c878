//! A caching allocator for storage buffers: freed buffers are kept by size and handed out again.
//! Training allocates the same sizes every step, so after the first step nothing is created.
//!
//! A request takes the smallest free buffer that holds it, up to a little over twice its size:
//! sizes that vary a little from step to step (the masked rows of the iBOT head) reuse one
//! buffer instead of each keeping its own. In a dry run (planning) the pool keeps the same books without buffers.

use std::collections::BTreeMap;

/// Byte counts of the pool.
#[derive(Clone, Copy, Debug, Default)]
pub struct PoolStats {
    /// Bytes held by live tensors.
    pub live_bytes: u64,
    /// Bytes cached for reuse.
    pub cached_bytes: u64,
    /// The largest `live + cached` seen: the GPU memory the runtime needed.
    pub peak_bytes: u64,
    /// Buffers created so far.
    pub created: u64,
}

/// Live buffers by size: how many, and a shape that asked for one.
type LiveCensus = BTreeMap<u64, (usize, Vec<usize>)>;

/// A pooled buffer: a real one, or none in a dry run.
pub(crate) type Slot = Option<wgpu::Buffer>;

#[derive(Default)]
pub(crate) struct Pool {
    /// Free buffers by size, each with the recording it was given back in.
    free: BTreeMap<u64, Vec<(Slot, u64)>>,
    /// Counts recordings: buffers given back before the current one began are not used by any
    /// unsubmitted work, so dropping them frees their memory.
    epoch: u64,
    stats: PoolStats,
    /// Dry runs only: live buffers by size (count, a shape that asked for one), and that census
    /// at the peak, for the planner's "largest tensors".
    census: Option<(LiveCensus, Vec<LiveBuffers>)>,
}

/// Buffers of one size held at the peak, with a shape that asked for one of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveBuffers {
    /// Bytes of each buffer.
    pub bytes: u64,
    /// How many were live.
    pub count: usize,
    /// How many more were cached (free, kept for reuse).
    pub cached: usize,
    /// The shape of a tensor that took one.
    pub shape: Vec<usize>,
}

impl Pool {
    /// Usage of every pooled buffer: storage, and copies both ways.
    pub(crate) const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
        .union(wgpu::BufferUsages::COPY_SRC)
        .union(wgpu::BufferUsages::COPY_DST);

    /// Sizes are rounded to 256 bytes (and at least 16) so near sizes share buffers.
    pub(crate) fn round_size(bytes: u64) -> u64 {
        bytes.max(16).div_ceil(256) * 256
    }

    /// A pool that also keeps the census of live buffers (dry runs).
    pub(crate) fn with_census() -> Pool {
        Pool {
            census: Some(Default::default()),
            ..Default::default()
        }
    }

    /// Notes a live buffer of `size` bytes taken for `shape` (dry runs keep a census).
    pub(crate) fn note_live(&mut self, size: u64, shape: &[usize]) {
        if let Some((live, _)) = &mut self.census {
            let e = live.entry(size).or_insert((0, Vec::new()));
            e.0 += 1;
            if e.0 == 1 {
                e.1 = shape.to_vec();
            }
        }
        self.update_peak();
    }

    fn update_peak(&mut self) {
        let now = self.stats.live_bytes + self.stats.cached_bytes;
        if now > self.stats.peak_bytes {
            self.stats.peak_bytes = now;
            if let Some((live, at_peak)) = &mut self.census {
                let mut sizes: Vec<u64> = live.keys().chain(self.free.keys()).copied().collect();
                sizes.sort_unstable_by(|a, b| b.cmp(a));
                sizes.dedup();
                *at_peak = sizes
                    .into_iter()
                    .take(12)
                    .map(|bytes| {
                        let (count, shape) = live.get(&bytes).cloned().unwrap_or_default();
                        LiveBuffers {
                            bytes,
                            count,
                            cached: self.free.get(&bytes).map_or(0, Vec::len),
                            shape,
                        }
                    })
                    .collect();
            }
        }
    }

    /// The largest live buffers at the peak (dry runs; empty otherwise).
    pub(crate) fn largest_at_peak(&self) -> Vec<LiveBuffers> {
        self.census
            .as_ref()
            .map(|(_, at_peak)| at_peak.clone())
            .unwrap_or_default()
    }

    /// The smallest free buffer of at least `size` bytes and at most a little over twice that
    /// (2 + 1/16), with its size. The sixteenth lets a tensor's f16 copy take the f32 buffer of
    /// the same tensor at a few more rows (the iBOT logits' gradient, whose rows follow the
    /// masks), instead of creating a buffer of its own that would then sit cached.
    pub(crate) fn take(&mut self, size: u64) -> Option<(u64, Slot)> {
        let most = size.saturating_mul(2).saturating_add(size / 16);
        let (&found, _) = self.free.range(size..=most).find(|(_, v)| !v.is_empty())?;
        let list = self.free.get_mut(&found)?;
        let (b, _) = list.pop()?;
        if list.is_empty() {
            self.free.remove(&found);
        }
        self.stats.cached_bytes -= found;
        self.stats.live_bytes += found;
        Some((found, b))
    }

    /// A new recording begins.
    pub(crate) fn next_epoch(&mut self) {
        self.epoch += 1;
    }

    /// Before a buffer of `size` is created: drops free buffers of half that size up to just
    /// below it that were given back before this recording. They are most likely the same
    /// tensor at a smaller size (the iBOT head's rows vary with the masks), which no later
    /// request of this size can use; kept, they would pile up as the sizes creep up.
    pub(crate) fn evict_smaller(&mut self, size: u64) {
        let epoch = self.epoch;
        let mut freed = 0;
        for (&bytes, list) in self.free.range_mut(size / 2..size) {
            let before = list.len();
            list.retain(|(_, e)| *e >= epoch);
            freed += bytes * (before - list.len()) as u64;
        }
        self.free.retain(|_, v| !v.is_empty());
        self.stats.cached_bytes -= freed;
    }

    pub(crate) fn note_created(&mut self, size: u64) {
        self.stats.created += 1;
        self.stats.live_bytes += size;
    }

    pub(crate) fn give_back(&mut self, size: u64, buffer: Slot) {
        if let Some((live, _)) = &mut self.census {
            if let Some(e) = live.get_mut(&size) {
                e.0 = e.0.saturating_sub(1);
                if e.0 == 0 {
                    live.remove(&size);
                }
            }
        }
        self.stats.live_bytes = self.stats.live_bytes.saturating_sub(size);
        self.stats.cached_bytes += size;
        let epoch = self.epoch;
        self.free.entry(size).or_default().push((buffer, epoch));
    }

    /// Drops every cached buffer (frees GPU memory).
    pub(crate) fn trim(&mut self) {
        self.free.clear();
        self.stats.cached_bytes = 0;
    }

    pub(crate) fn reset_peak(&mut self) {
        self.stats.peak_bytes = 0;
        self.update_peak();
    }

    pub(crate) fn stats(&self) -> PoolStats {
        self.stats
    }
}
