//! A caching allocator for storage buffers: freed buffers are kept by size and handed out again.
//! Training allocates the same sizes every step, so after the first step nothing is created.

use std::collections::HashMap;

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

#[derive(Default)]
pub(crate) struct Pool {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    stats: PoolStats,
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

    pub(crate) fn take(&mut self, size: u64) -> Option<wgpu::Buffer> {
        let b = self.free.get_mut(&size)?.pop()?;
        self.stats.cached_bytes -= size;
        self.stats.live_bytes += size;
        Some(b)
    }

    pub(crate) fn note_created(&mut self, size: u64) {
        self.stats.created += 1;
        self.stats.live_bytes += size;
        self.stats.peak_bytes = self
            .stats
            .peak_bytes
            .max(self.stats.live_bytes + self.stats.cached_bytes);
    }

    pub(crate) fn give_back(&mut self, size: u64, buffer: wgpu::Buffer) {
        self.stats.live_bytes = self.stats.live_bytes.saturating_sub(size);
        self.stats.cached_bytes += size;
        self.free.entry(size).or_default().push(buffer);
    }

    /// Drops every cached buffer (frees GPU memory).
    pub(crate) fn trim(&mut self) {
        self.free.clear();
        self.stats.cached_bytes = 0;
    }

    pub(crate) fn reset_peak(&mut self) {
        self.stats.peak_bytes = self.stats.live_bytes + self.stats.cached_bytes;
    }

    pub(crate) fn stats(&self) -> PoolStats {
        self.stats
    }
}
