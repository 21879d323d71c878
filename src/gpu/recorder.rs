//! The recorder: a whole step of kernels in one command encoder, one compute pass where possible,
//! and one submission. Params go into a uniform arena written once per submission.
//!
//! The recorder does not keep the tensors it binds: a tensor's buffer goes back to the pool when
//! the caller drops it, and a later dispatch of the same recording may take it again. That is
//! safe because wgpu executes recorded work in order and puts a barrier between a dispatch that
//! reads or writes a buffer and a later one that writes it; the bind groups keep the buffers
//! themselves alive until the GPU is done. Host writes are the exception (queue writes land
//! before the whole submission), which is why uploads always take fresh buffers. Recordings on
//! one device are taken one thread at a time ([`Gpu::begin_recording`]), so another thread
//! never takes a buffer that unsubmitted work still uses.

use super::context::{Gpu, Staged, Submitted};
use super::registry::{Kernel, Types};
use super::tensor::{DType, Tensor};
use super::Result;

/// WebGPU guarantees at least this many workgroups per grid dimension.
pub const MAX_GROUPS: u32 = 65_535;

/// A grid of `groups` workgroups laid out as x (≤ 65,535) × y. Kernels rebuild the linear group
/// index as `wid.y * nwg.x + wid.x` and check it against their element count.
pub fn grid_1d(groups: usize) -> [u32; 3] {
    let groups = groups.max(1);
    let x = groups.min(MAX_GROUPS as usize);
    // Beyond 65,535² the y count is clamped past the limit; the recorder refuses that grid with
    // an error (instead of a panic here).
    let y = groups.div_ceil(x).min(u32::MAX as usize);
    [x as u32, y as u32, 1]
}

/// A grid with one workgroup per row (rows may exceed 65,535).
pub fn grid_rows(rows: usize) -> [u32; 3] {
    grid_1d(rows)
}

const ARENA_CHUNK: u64 = 256 * 1024;

/// Timestamps per profiling query set (wgpu allows 4,096): two per dispatch.
const PROFILE_SET: u32 = 4096;

/// A profiled dispatch's kernel entry and its work's label and FLOPs (on its first dispatch).
type Credit = (&'static str, Option<(String, f64)>);

struct ArenaChunk {
    buffer: wgpu::Buffer,
    bytes: Vec<u8>,
}

/// Records dispatches, clears and copies; [`Recorder::finish`] submits them all at once.
pub struct Recorder<'g> {
    gpu: &'g Gpu,
    encoder: Option<wgpu::CommandEncoder>,
    pass: Option<wgpu::ComputePass<'static>>,
    arena: Vec<ArenaChunk>,
    align: u64,
    timestamps: Option<(wgpu::QuerySet, bool)>,
    /// Per-dispatch timestamps while the device profiles ([`Gpu::start_profile`]): query sets of
    /// [`PROFILE_SET`] timestamps, each with the kernels timed in it and their work's label.
    profile: Option<Vec<(wgpu::QuerySet, Vec<Credit>)>>,
    /// While profiling: the label and FLOPs of the work being recorded ([`Recorder::label_work`]).
    work: Option<(String, f64)>,
    dispatches: usize,
    error: Option<super::GpuError>,
    submitted: Option<wgpu::SubmissionIndex>,
    cpu_layouts: bool,
    subgroups: bool,
    wide_rows: bool,
    forced: Vec<(&'static str, &'static str)>,
}

impl<'g> Recorder<'g> {
    /// A new, empty recording.
    pub fn new(gpu: &'g Gpu) -> Recorder<'g> {
        gpu.begin_recording();
        let encoder = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("step"),
            });
        Recorder {
            gpu,
            encoder: Some(encoder),
            pass: None,
            arena: Vec::new(),
            align: gpu.limits.min_uniform_buffer_offset_alignment.max(16) as u64,
            timestamps: None,
            profile: (gpu.profiling() && gpu.has_timestamps() && !gpu.dry).then(Vec::new),
            work: None,
            dispatches: 0,
            error: None,
            submitted: None,
            cpu_layouts: gpu.cpu_driver(),
            subgroups: gpu.subgroups(),
            wide_rows: true,
            forced: Vec::new(),
        }
    }

    /// A recording whose first compute pass is timed with GPU timestamps (when available).
    pub fn new_timed(gpu: &'g Gpu) -> Recorder<'g> {
        let mut r = Self::new(gpu);
        if gpu.has_timestamps() {
            let qs = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            });
            r.timestamps = Some((qs, false));
        }
        r
    }

    /// The device this recording is for.
    pub fn gpu(&self) -> &'g Gpu {
        self.gpu
    }

    /// Whether the kernels with a layout for CPU drivers (the row kernels, attention) take it:
    /// by default where the adapter is one. Both layouts give results within the kernels'
    /// tolerances on every adapter; the checks run both.
    pub fn cpu_layouts(&self) -> bool {
        self.cpu_layouts
    }

    /// While the device profiles, credits the dispatches recorded until [`Recorder::end_work`]
    /// to one piece of work (`label()`, called only then) of `flops` operations, so the profile
    /// shows each product and attention pass with its rate; otherwise does nothing.
    pub fn label_work(&mut self, label: impl FnOnce() -> String, flops: f64) {
        if self.profile.is_some() {
            self.work = Some((label(), flops));
        }
    }

    /// Ends [`Recorder::label_work`].
    pub fn end_work(&mut self) {
        self.work = None;
    }

    /// Chooses the CPU drivers' kernel layouts (`true`) or the GPUs' for what is recorded next.
    pub fn set_cpu_layouts(&mut self, on: bool) {
        self.cpu_layouts = on;
    }

    /// Whether the GPU layouts use subgroup operations: where the device can
    /// ([`Gpu::subgroups`]), unless turned off. The row kernels then reduce through shuffles
    /// (the same results to the bit; the checks compare the two) and attention's dK/dV takes
    /// two invocations a key (the same results within rounding).
    pub fn subgroups(&self) -> bool {
        self.subgroups
    }

    /// Turns the GPU layouts' subgroup operations off (`false`) or back on where the device has
    /// them, for what is recorded next. The CPU drivers' layouts keep theirs (broadcast reads
    /// in attention's one-key forward and the direct products), which follow the device.
    pub fn set_subgroups(&mut self, on: bool) {
        self.subgroups = on && self.gpu.subgroups();
    }

    /// Whether layer norm and softmax in the GPU layouts give each lane up to 16 columns of a
    /// row (the default: a row of 261 or 384 columns per 32 lanes) rather than up to 4 (128
    /// lanes). Both sum each lane's columns in order; `dinoscope bench kernels` times both.
    pub fn wide_rows(&self) -> bool {
        self.wide_rows
    }

    /// Chooses the 16-column (`true`) or the 4-column row layout for what is recorded next.
    pub fn set_wide_rows(&mut self, on: bool) {
        self.wide_rows = on;
    }

    /// Forces the kernel choice `what` (such as "attention forward") to `choice` for what is
    /// recorded next, over the tuned and default ones (`None` lifts it): the checks run every
    /// variant this way, and `dinoscope tune` times them. A choice that cannot run on the
    /// device is ignored where it is read.
    pub fn force(&mut self, what: &'static str, choice: Option<&'static str>) {
        self.forced.retain(|(w, _)| *w != what);
        if let Some(c) = choice {
            self.forced.push((what, c));
        }
    }

    /// The forced choice `what`, if any (see [`Recorder::force`]).
    pub fn forced(&self, what: &str) -> Option<&'static str> {
        self.forced
            .iter()
            .find(|(w, _)| *w == what)
            .map(|(_, c)| *c)
    }

    /// Number of dispatches recorded so far.
    pub fn dispatch_count(&self) -> usize {
        self.dispatches
    }

    fn end_pass(&mut self) {
        self.pass = None;
    }

    fn encoder(&mut self) -> &mut wgpu::CommandEncoder {
        self.end_pass();
        self.encoder.as_mut().expect("encoder present until finish")
    }

    fn params_slot(&mut self, bytes: &[u8]) -> (usize, u64) {
        let need = (bytes.len() as u64).div_ceil(self.align) * self.align;
        let fits = self
            .arena
            .last()
            .is_some_and(|c| c.bytes.len() as u64 + need <= c.buffer.size());
        if !fits {
            let size = ARENA_CHUNK.max(need);
            let buffer = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("params"),
                size,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            self.arena.push(ArenaChunk {
                buffer,
                bytes: Vec::new(),
            });
        }
        let idx = self.arena.len() - 1;
        let chunk = &mut self.arena[idx];
        let offset = chunk.bytes.len() as u64;
        chunk.bytes.extend_from_slice(bytes);
        chunk.bytes.resize((offset + need) as usize, 0);
        (idx, offset)
    }

    /// Records one dispatch of `k` with its params and storage bindings (in binding order).
    pub fn dispatch<P: bytemuck::Pod>(
        &mut self,
        k: &'static Kernel,
        params: &P,
        bufs: &[&Tensor],
        grid: [u32; 3],
    ) {
        self.dispatch_with(k, &[], params, bufs, grid)
    }

    /// [`Recorder::dispatch`] with WGSL override constants.
    pub fn dispatch_with<P: bytemuck::Pod>(
        &mut self,
        k: &'static Kernel,
        overrides: &[(&str, f64)],
        params: &P,
        bufs: &[&Tensor],
        grid: [u32; 3],
    ) {
        assert_eq!(
            std::mem::size_of::<P>(),
            k.params_size,
            "{}: params struct size",
            k.entry
        );
        assert_eq!(
            bufs.len(),
            k.bindings.len(),
            "{}: number of bindings",
            k.entry
        );
        if !self.admits(k, bufs, grid) {
            return;
        }
        let types = dispatch_types(self.gpu, k, bufs);
        if self.gpu.dry {
            self.dispatches += 1;
            return;
        }
        let pipeline = self.gpu.pipeline(k, types, overrides);
        let bind_group = self.bind_group_of(k, &pipeline.layout, bytemuck::bytes_of(params), bufs);
        if self.profile.is_some() {
            // One pass per dispatch, so each gets its own begin and end timestamps.
            self.end_pass();
            self.open_profiled_pass(k.entry);
        }
        let pass = self.open_pass();
        pass.set_pipeline(&pipeline.pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(grid[0], grid[1], grid[2]);
        self.dispatches += 1;
    }

    /// Whether a dispatch of `k` over `grid` is recorded: an empty grid is nothing to do, and
    /// a grid or a binding past this adapter's limits is skipped and reported by `finish()`
    /// (the model or batch does not fit), as is a dispatch the recorder refuses.
    fn admits(&mut self, k: &'static Kernel, bufs: &[&Tensor], grid: [u32; 3]) -> bool {
        if grid.contains(&0) {
            return false;
        }
        let max = self.gpu.limits.max_compute_workgroups_per_dimension;
        if grid.iter().any(|&g| g > max) {
            if self.error.is_none() {
                self.error = Some(super::GpuError::Limit(format!(
                    "{}: a grid of {grid:?} workgroups exceeds this adapter's \
                     max_compute_workgroups_per_dimension ({max}); use a smaller batch or model",
                    k.entry
                )));
            }
            return false;
        }
        let max_binding = self.gpu.limits.max_storage_buffer_binding_size;
        if let Some(t) = bufs.iter().find(|t| t.binding_bytes() > max_binding) {
            if self.error.is_none() {
                self.error = Some(super::GpuError::Limit(format!(
                    "{}: a tensor of shape {:?} takes {:.1} MiB, more than this adapter's \
                     max_storage_buffer_binding_size ({:.1} MiB); use a smaller batch or model",
                    k.entry,
                    t.shape(),
                    t.binding_bytes() as f64 / 1048576.0,
                    max_binding as f64 / 1048576.0
                )));
            }
            return false;
        }
        if self.refuses(k.entry, bufs) {
            return false;
        }
        if let Some((a, b)) = writable_alias(k, bufs) {
            panic!(
                "{}: bindings {a} and {b} overlap in one buffer and one of them is writable \
                 (WebGPU rejects this; bind one range or use separate tensors)",
                k.entry
            );
        }
        true
    }

    /// The bind group of one dispatch: its params (binding 0, in the params arena) and its
    /// tensors at the kernel's bindings.
    fn bind_group_of(
        &mut self,
        k: &'static Kernel,
        layout: &wgpu::BindGroupLayout,
        params: &[u8],
        bufs: &[&Tensor],
    ) -> wgpu::BindGroup {
        let (chunk, offset) = self.params_slot(params);
        let psize = (k.params_size as u64).div_ceil(16) * 16;
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.arena[chunk].buffer,
                offset,
                size: wgpu::BufferSize::new(psize),
            }),
        }];
        for (t, &(binding, _)) in bufs.iter().zip(k.bindings) {
            entries.push(wgpu::BindGroupEntry {
                binding,
                resource: t.binding(),
            });
        }
        self.gpu
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(k.entry),
                layout,
                entries: &entries,
            })
    }

    /// The compute pass dispatches go into, begun now if none is open (the first one of the
    /// recording writes the step's begin and end timestamps, where they were asked for).
    fn open_pass(&mut self) -> &mut wgpu::ComputePass<'static> {
        if self.pass.is_none() {
            let timestamp_writes = match &mut self.timestamps {
                Some((qs, used)) if !*used => {
                    *used = true;
                    Some(wgpu::ComputePassTimestampWrites {
                        query_set: qs,
                        beginning_of_pass_write_index: Some(0),
                        end_of_pass_write_index: Some(1),
                    })
                }
                _ => None,
            };
            let enc = self.encoder.as_mut().expect("encoder present until finish");
            let pass = enc
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("step"),
                    timestamp_writes,
                })
                .forget_lifetime();
            self.pass = Some(pass);
        }
        self.pass.as_mut().expect("pass just opened")
    }

    fn open_profiled_pass(&mut self, entry: &'static str) {
        let Some(sets) = self.profile.as_mut() else {
            return;
        };
        if sets
            .last()
            .is_none_or(|(_, names)| names.len() as u32 * 2 >= PROFILE_SET)
        {
            let qs = self.gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("profile"),
                ty: wgpu::QueryType::Timestamp,
                count: PROFILE_SET,
            });
            sets.push((qs, Vec::new()));
        }
        let (qs, names) = sets.last_mut().expect("a set was just ensured");
        let at = names.len() as u32 * 2;
        // The work's FLOPs go with its first dispatch only.
        let work = self.work.as_mut().map(|(label, flops)| {
            let first = (label.clone(), *flops);
            *flops = 0.0;
            first
        });
        names.push((entry, work));
        let enc = self.encoder.as_mut().expect("encoder present until finish");
        let pass = enc
            .begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(entry),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: qs,
                    beginning_of_pass_write_index: Some(at),
                    end_of_pass_write_index: Some(at + 1),
                }),
            })
            .forget_lifetime();
        self.pass = Some(pass);
    }

    /// Whether one of `ts` is past the adapter's largest buffer ([`Tensor::is_placeholder`]):
    /// then `what` is skipped, and the recording fails with the first such error when it is
    /// submitted.
    fn refuses(&mut self, what: &str, ts: &[&Tensor]) -> bool {
        let Some(t) = ts.iter().find(|t| t.is_placeholder()) else {
            return false;
        };
        if self.error.is_none() {
            self.error = Some(self.gpu.past_largest_buffer(what, t));
        }
        true
    }

    /// Fills a tensor with zeros.
    pub fn clear(&mut self, t: &Tensor) {
        if self.refuses("clear", &[t]) {
            return;
        }
        if t.numel() > 0 && !self.gpu.dry {
            let (offset, size) = (t.byte_offset(), t.binding_bytes());
            self.encoder().clear_buffer(t.buffer(), offset, Some(size));
        }
    }

    /// A new tensor filled with zeros (for kernels that accumulate).
    pub fn zeros(&mut self, shape: &[usize]) -> Tensor {
        let t = self.gpu.empty(shape);
        self.clear(&t);
        t
    }

    /// Copies all of `src` into `dst` (same element count).
    pub fn copy(&mut self, src: &Tensor, dst: &Tensor) {
        assert_eq!(src.numel(), dst.numel(), "copy: element counts differ");
        assert_eq!(src.dtype(), dst.dtype(), "copy: element types differ");
        let bytes = src.bytes().div_ceil(4) * 4;
        if self.refuses("copy", &[src, dst]) {
            return;
        }
        if bytes > 0 && !self.gpu.dry {
            let (from, to) = (src.byte_offset(), dst.byte_offset());
            self.encoder()
                .copy_buffer_to_buffer(src.buffer(), from, dst.buffer(), to, bytes);
        }
    }

    /// Copies `len` elements from `src[src_off..]` to `dst[dst_off..]`.
    pub fn copy_range(
        &mut self,
        src: &Tensor,
        src_off: usize,
        dst: &Tensor,
        dst_off: usize,
        len: usize,
    ) {
        assert!(
            src_off + len <= src.numel() && dst_off + len <= dst.numel(),
            "copy_range: out of bounds"
        );
        assert!(
            src.dtype() == DType::F32 && dst.dtype() == DType::F32,
            "copy_range: f32 tensors only"
        );
        if self.refuses("copy", &[src, dst]) {
            return;
        }
        if len > 0 && !self.gpu.dry {
            self.encoder().copy_buffer_to_buffer(
                src.buffer(),
                (src.offset() + src_off) as u64 * 4,
                dst.buffer(),
                (dst.offset() + dst_off) as u64 * 4,
                len as u64 * 4,
            );
        }
    }

    /// Submits everything recorded.
    pub fn finish(mut self) -> Result<()> {
        self.submit()?;
        Ok(())
    }

    /// Records a copy of `t` into a mappable buffer at this point of the recording; read it
    /// with [`Gpu::read_staged`] and the [`Submitted`] that [`Recorder::finish_submitted`] gives.
    pub fn stage(&mut self, t: &Tensor) -> Staged {
        if self.refuses("read", &[t]) {
            return Staged::empty(t);
        }
        let staged = self.gpu.staging_for(t);
        if let Some(b) = &staged.buffer {
            let (from, bytes) = (t.byte_offset(), t.binding_bytes());
            self.encoder()
                .copy_buffer_to_buffer(t.buffer(), from, b, 0, bytes);
        }
        staged
    }

    /// Submits everything recorded; the result names the submission for [`Gpu::read_staged`].
    pub fn finish_submitted(mut self) -> Result<Submitted> {
        self.submit()?;
        Ok(Submitted(self.submitted.take()))
    }

    fn submit(&mut self) -> Result<Option<wgpu::Buffer>> {
        self.end_pass();
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        if self.gpu.dry {
            return Ok(None);
        }
        let mut enc = self.encoder.take().expect("finish called once");
        let mut ts_read = None;
        if let Some((qs, true)) = &self.timestamps {
            let resolve = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("ts-resolve"),
                size: 16,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let read = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("ts-read"),
                size: 16,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            enc.resolve_query_set(qs, 0..2, &resolve, 0);
            enc.copy_buffer_to_buffer(&resolve, 0, &read, 0, 16);
            ts_read = Some(read);
        }
        let profile_reads = self.resolve_profile(&mut enc);
        for c in &self.arena {
            self.gpu.queue.write_buffer(&c.buffer, 0, &c.bytes);
        }
        self.submitted = Some(self.gpu.queue.submit([enc.finish()]));
        self.gpu.check()?;
        self.read_profile(profile_reads)?;
        Ok(ts_read)
    }

    /// Copies the profiling timestamps into mappable buffers, one per query set.
    fn resolve_profile(
        &mut self,
        enc: &mut wgpu::CommandEncoder,
    ) -> Vec<(wgpu::Buffer, Vec<Credit>)> {
        let Some(sets) = self.profile.take() else {
            return Vec::new();
        };
        let mut reads = Vec::new();
        for (qs, names) in sets {
            let count = names.len() as u32 * 2;
            let bytes = count as u64 * 8;
            let buffer = |usage| {
                self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("profile"),
                    size: bytes,
                    usage,
                    mapped_at_creation: false,
                })
            };
            let resolve = buffer(wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC);
            let read = buffer(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
            enc.resolve_query_set(&qs, 0..count, &resolve, 0);
            enc.copy_buffer_to_buffer(&resolve, 0, &read, 0, bytes);
            reads.push((read, names));
        }
        reads
    }

    /// Waits for the submission and adds each dispatch's GPU time to the device's profile.
    fn read_profile(&self, reads: Vec<(wgpu::Buffer, Vec<Credit>)>) -> Result<()> {
        if reads.is_empty() {
            return Ok(());
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            for (read, _) in &reads {
                read.map_async(wgpu::MapMode::Read, .., |_| {});
            }
            self.gpu.wait()?;
            let period = self.gpu.queue.get_timestamp_period() as f64 * 1e-9;
            for (read, names) in reads {
                let ticks = mapped_ticks(&read)?;
                let times = names.into_iter().zip(ticks.chunks_exact(2));
                let seconds =
                    times.map(|((n, w), t)| (n, w, t[1].saturating_sub(t[0]) as f64 * period));
                self.gpu.add_profile(seconds);
            }
        }
        Ok(())
    }

    /// Submits, waits, and returns the GPU time of the first compute pass in seconds (or `None`
    /// without timestamp support). Native only.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn finish_timed(mut self) -> Result<Option<f64>> {
        let read = self.submit()?;
        let gpu = self.gpu;
        let Some(read) = read else {
            gpu.wait()?;
            return Ok(None);
        };
        read.map_async(wgpu::MapMode::Read, .., |_| {});
        gpu.wait()?;
        let ticks = mapped_ticks(&read)?;
        let period = gpu.queue.get_timestamp_period() as f64;
        Ok(Some(
            ticks[1].saturating_sub(ticks[0]) as f64 * period * 1e-9,
        ))
    }
}

/// The timestamps in a mapped readback buffer, which is then unmapped.
#[cfg(not(target_arch = "wasm32"))]
fn mapped_ticks(read: &wgpu::Buffer) -> Result<Vec<u64>> {
    let ticks = {
        let view = read
            .get_mapped_range(..)
            .map_err(|e| super::GpuError::Readback(e.to_string()))?;
        bytemuck::cast_slice(&view).to_vec()
    };
    read.unmap();
    Ok(ticks)
}

impl Drop for Recorder<'_> {
    fn drop(&mut self) {
        // Close the pass before the encoder goes (finish has already submitted).
        self.pass = None;
        // The recording's wgpu objects go while this thread still holds the device: on GL
        // destroying a buffer takes the GL context, and waiting for it while another thread
        // holds it for a slow submission panics (see `Gpu::exclusive`).
        self.encoder = None;
        self.arena.clear();
        self.timestamps = None;
        self.profile = None;
        self.gpu.end_recording();
    }
}

/// The precision a dispatch runs in: `S` is f16 when its `S` bindings hold f16 tensors, `O` the
/// type of the tensors in its `O` bindings (`S` when none is bound). Every `S` binding must then
/// hold `S`, every `O` binding `O` and every other binding 4-byte elements; a mix is a bug in
/// the launcher (wgpu cannot see element types, so it would read garbage). The device's
/// placeholder tensors (never read) may sit in any binding.
fn dispatch_types(gpu: &Gpu, k: &Kernel, bufs: &[&Tensor]) -> Types {
    let half = super::registry::half_bindings(k.shader);
    let out = super::registry::out_bindings(k.shader);
    let placeholder = |t: &Tensor| {
        [&gpu.dummy_read, &gpu.dummy_write, &gpu.dummy_write2]
            .iter()
            .any(|d| d.same_buffer(t))
    };
    let bound = || bufs.iter().zip(k.bindings).filter(|(t, _)| !placeholder(t));
    let first_in = |set: &[u32]| {
        bound()
            .find(|(_, (b, _))| set.contains(b))
            .map(|(t, _)| t.dtype())
    };
    let s = first_in(half).unwrap_or(DType::F32);
    let o = first_in(out).unwrap_or(s);
    for (t, &(b, _)) in bound() {
        let want = if half.contains(&b) {
            s
        } else if out.contains(&b) {
            o
        } else {
            DType::F32
        };
        assert_eq!(
            t.dtype(),
            want,
            "{}: binding {b} holds a {:?} tensor of shape {:?} where {want:?} is declared",
            k.entry,
            t.dtype(),
            t.shape()
        );
    }
    Types { s, o }
}

/// The first pair of bindings that overlap in one buffer where at least one is writable: WebGPU
/// (Dawn) rejects such bind groups, and native backends would race on them.
fn writable_alias(k: &Kernel, bufs: &[&Tensor]) -> Option<(u32, u32)> {
    let range = |t: &Tensor| {
        let start = t.byte_offset();
        (start, start + t.binding_bytes())
    };
    for (i, (ta, &(ba, aa))) in bufs.iter().zip(k.bindings).enumerate() {
        for (tb, &(bb, ab)) in bufs.iter().zip(k.bindings).skip(i + 1) {
            if aa != super::registry::Access::ReadWrite && ab != super::registry::Access::ReadWrite
            {
                continue;
            }
            if !ta.same_buffer(tb) {
                continue;
            }
            let ((s0, e0), (s1, e1)) = (range(ta), range(tb));
            if s0 < e1 && s1 < e0 {
                return Some((ba, bb));
            }
        }
    }
    None
}
