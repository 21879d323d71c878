//! Moving data between the host and the device: uploads (f32, f16, u32), pooled allocation,
//! writes, readback.

use super::*;

impl Gpu {
    /// Uploads f32 data as a new tensor.
    pub fn upload(&self, data: &[f32], shape: &[usize]) -> Tensor {
        self.upload_bytes(bytemuck::cast_slice(data), shape)
    }

    /// Uploads f32 data as a new tensor of `dtype` (f16: rounded to nearest on the host).
    pub fn upload_as(&self, data: &[f32], shape: &[usize], dtype: DType) -> Tensor {
        match dtype {
            DType::F32 => self.upload(data, shape),
            DType::F16 => {
                let mut bytes: Vec<u8> = data
                    .iter()
                    .flat_map(|&x| crate::half::from_f32(x).to_le_bytes())
                    .collect();
                // Queue writes are whole 4-byte words.
                bytes.resize(bytes.len().div_ceil(4) * 4, 0);
                let t = self.empty_fresh(shape, DType::F16);
                assert_eq!(
                    data.len(),
                    t.numel(),
                    "upload: shape {shape:?} does not match the data"
                );
                if !bytes.is_empty() && !self.dry && !t.is_placeholder() {
                    let _device = self.exclusive();
                    self.queue.write_buffer(t.buffer(), 0, &bytes);
                }
                t
            }
        }
    }

    /// Uploads u32 data (indices, masks) as a new tensor.
    pub fn upload_u32(&self, data: &[u32], shape: &[usize]) -> Tensor {
        self.upload_bytes(bytemuck::cast_slice(data), shape)
    }

    /// Uploads 8-bit values four to a word (the first in the lowest byte) as a new tensor of
    /// ⌈len / 4⌉ elements, for kernels that read them as `array<u32>`.
    pub fn upload_bytes_packed(&self, data: &[u8]) -> Tensor {
        let words = data.len().div_ceil(4).max(1);
        if data.len() == words * 4 {
            return self.upload_bytes(data, &[words]);
        }
        let mut padded = data.to_vec();
        padded.resize(words * 4, 0);
        self.upload_bytes(&padded, &[words])
    }

    fn upload_bytes(&self, bytes: &[u8], shape: &[usize]) -> Tensor {
        let _device = self.exclusive();
        let numel: usize = shape.iter().product();
        assert_eq!(
            numel * 4,
            bytes.len(),
            "upload: shape {shape:?} does not match the data"
        );
        // A fresh buffer (not a pooled one): a pooled buffer may still be read by recorded work,
        // and queue writes land before the whole next submission.
        let t = self.empty_fresh(shape, DType::F32);
        // A placeholder is refused where it is used; there is nothing to write into.
        if !bytes.is_empty() && !self.dry && !t.is_placeholder() {
            self.queue.write_buffer(t.buffer(), 0, bytes);
        }
        t
    }

    /// Overwrites a tensor's contents from the host before the next submission. Only for
    /// tensors no recorded-but-unsubmitted work reads (parameters between steps, fresh uploads).
    pub fn write(&self, t: &Tensor, data: &[f32]) {
        assert_eq!(
            data.len(),
            t.numel(),
            "write: {} values into a tensor of {}",
            data.len(),
            t.numel()
        );
        if !data.is_empty() && !self.dry && !t.is_placeholder() {
            let _device = self.exclusive();
            assert_eq!(t.dtype(), DType::F32, "write: f32 data into an f16 tensor");
            self.queue
                .write_buffer(t.buffer(), t.byte_offset(), bytemuck::cast_slice(data));
        }
    }

    /// A tensor on a newly created buffer. A pooled one may have been given back during the
    /// recording under way, whose unsubmitted work still writes it, so work submitted ahead of
    /// that recording (to be read after it) must not take one.
    pub(crate) fn empty_fresh(&self, shape: &[usize], dtype: DType) -> Tensor {
        let _device = self.exclusive();
        let numel: usize = shape.iter().product();
        let size = Pool::round_size((numel * dtype.bytes()) as u64);
        // Past the adapter's largest buffer a placeholder stands in, which the recorder
        // refuses to use, naming the tensor: the caller gets that error, not a device error.
        // (A dry run creates no buffers and counts this one like any other.)
        if size > self.limits.max_buffer_size && !self.dry {
            let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("placeholder for a buffer past the adapter's limit"),
                size: Pool::round_size(1),
                usage: Pool::USAGE,
                mapped_at_creation: false,
            });
            return Tensor::placeholder(Some(buffer), shape.to_vec(), size, dtype);
        }
        let buffer = (!self.dry).then(|| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size,
                usage: Pool::USAGE,
                mapped_at_creation: false,
            })
        });
        if let Ok(mut p) = self.pool.lock() {
            p.evict_smaller(size);
            p.note_created(size);
            p.note_live(size, shape);
        }
        Tensor::from_buffer(
            buffer,
            shape.to_vec(),
            size,
            Arc::downgrade(&self.pool),
            dtype,
        )
    }

    /// A tensor with undefined contents, from the pool when a buffer of that size is free.
    /// Kernels that write every element need no clearing; use [`Recorder::zeros`] otherwise.
    ///
    /// [`Recorder::zeros`]: crate::gpu::Recorder::zeros
    pub fn empty(&self, shape: &[usize]) -> Tensor {
        self.empty_as(shape, DType::F32)
    }

    /// [`Gpu::empty`] with the given element type.
    pub fn empty_as(&self, shape: &[usize], dtype: DType) -> Tensor {
        let numel: usize = shape.iter().product();
        let size = Pool::round_size((numel * dtype.bytes()) as u64);
        let reused = self.pool.lock().ok().and_then(|mut p| {
            let found = p.take(size);
            if let Some((bytes, _)) = &found {
                p.note_live(*bytes, shape);
            }
            found
        });
        match reused {
            Some((found, buffer)) => Tensor::from_buffer(
                buffer,
                shape.to_vec(),
                found,
                Arc::downgrade(&self.pool),
                dtype,
            ),
            None => self.empty_fresh(shape, dtype),
        }
    }

    /// Reads a tensor back as f32 (blocks; native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read(&self, t: &Tensor) -> Result<Vec<f32>> {
        pollster::block_on(self.read_async(t))
    }

    /// Reads a tensor back as u32 (blocks; native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_u32(&self, t: &Tensor) -> Result<Vec<u32>> {
        let v = self.read(t)?;
        Ok(v.into_iter().map(f32::to_bits).collect())
    }

    /// Reads a tensor back as f32 (f16 tensors are widened), after all work submitted so far. On
    /// native the future polls the device; on the web it resolves when the browser maps the
    /// buffer, so it never blocks the page.
    pub async fn read_async(&self, t: &Tensor) -> Result<Vec<f32>> {
        if t.numel() == 0 || self.dry {
            return Ok(vec![0.0; t.numel()]);
        }
        if t.is_placeholder() {
            return Err(self.past_largest_buffer("read", t));
        }
        // Held across the await: on native the future completes within this call, and on the
        // web (one thread) holding is free.
        let _device = self.exclusive();
        let staged = self.staging_for(t);
        let mut enc = self.device.create_command_encoder(&Default::default());
        if let Some(b) = &staged.buffer {
            enc.copy_buffer_to_buffer(t.buffer(), t.byte_offset(), b, 0, t.binding_bytes());
        }
        let index = self.queue.submit([enc.finish()]);
        self.map_staged(staged, &Submitted(Some(index))).await
    }

    /// A mappable buffer the size of `t`, for a copy recorded elsewhere.
    pub(crate) fn staging_for(&self, t: &Tensor) -> Staged {
        let buffer = (t.numel() > 0 && !self.dry).then(|| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size: t.binding_bytes(),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        Staged {
            buffer,
            dtype: t.dtype(),
            numel: t.numel(),
        }
    }

    /// Reads a copy recorded with [`Recorder::stage`](crate::gpu::Recorder::stage), waiting
    /// for the submission that holds it and for nothing submitted later.
    pub async fn read_staged(&self, staged: Staged, after: &Submitted) -> Result<Vec<f32>> {
        let _device = self.exclusive();
        self.map_staged(staged, after).await
    }

    async fn map_staged(&self, staged: Staged, after: &Submitted) -> Result<Vec<f32>> {
        let Some(staging) = staged.buffer else {
            return Ok(vec![0.0; staged.numel]);
        };
        let (tx, rx) = futures_channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| tx.send(r));
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: after.0.clone(),
                timeout: None,
            })
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        #[cfg(target_arch = "wasm32")]
        let _ = &after.0;
        let mapped = rx.await;
        self.check()?;
        mapped.map_err(|e| GpuError::Readback(e.to_string()))?;
        let out = {
            let view = staging
                .get_mapped_range(..)
                .map_err(|e| GpuError::Readback(e.to_string()))?;
            match staged.dtype {
                DType::F32 => bytemuck::cast_slice::<u8, f32>(&view)[..staged.numel].to_vec(),
                DType::F16 => view
                    .chunks_exact(2)
                    .take(staged.numel)
                    .map(|h| crate::half::to_f32(u16::from_le_bytes([h[0], h[1]])))
                    .collect(),
            }
        };
        staging.unmap();
        Ok(out)
    }

    /// Waits until all submitted work has finished (native); a no-op on the web.
    pub fn wait(&self) -> Result<()> {
        let _device = self.exclusive();
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Wgpu(e.to_string()))?;
        self.check()
    }
}

/// A tensor's copy in a mappable buffer, recorded into a recording's own commands
/// ([`Recorder::stage`](crate::gpu::Recorder::stage)): reading it waits for that recording's
/// submission only, so the next step can already run while this one's results come back.
pub struct Staged {
    /// `None` for an empty tensor or a dry-run device (reads give zeros).
    pub(crate) buffer: Option<wgpu::Buffer>,
    dtype: DType,
    numel: usize,
}

impl Staged {
    /// A copy never made (its recording fails before it is submitted): zeros if read.
    pub(crate) fn empty(t: &Tensor) -> Staged {
        Staged {
            buffer: None,
            dtype: t.dtype(),
            numel: t.numel(),
        }
    }
}

/// The submission a recording became, which reading its [`Staged`] copies waits for.
#[derive(Clone, Debug, Default)]
pub struct Submitted(pub(crate) Option<wgpu::SubmissionIndex>);

impl Gpu {
    /// The error for `what` done with a tensor past the adapter's largest buffer.
    pub(crate) fn past_largest_buffer(&self, what: &str, t: &Tensor) -> GpuError {
        GpuError::Limit(format!(
            "{what}: a tensor of shape {:?} needs a buffer of {:.1} MiB, more than this \
             adapter's max_buffer_size ({:.1} MiB); use a smaller batch or model",
            t.shape(),
            t.storage_bytes() as f64 / 1048576.0,
            self.limits.max_buffer_size as f64 / 1048576.0
        ))
    }
}
