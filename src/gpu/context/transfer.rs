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
                if !bytes.is_empty() && !self.dry {
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
        if !bytes.is_empty() && !self.dry {
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
        if !data.is_empty() && !self.dry {
            let _device = self.exclusive();
            assert_eq!(t.dtype(), DType::F32, "write: f32 data into an f16 tensor");
            self.queue
                .write_buffer(t.buffer(), t.byte_offset(), bytemuck::cast_slice(data));
        }
    }

    fn empty_fresh(&self, shape: &[usize], dtype: DType) -> Tensor {
        let _device = self.exclusive();
        let numel: usize = shape.iter().product();
        let size = Pool::round_size((numel * dtype.bytes()) as u64);
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

    /// Reads a tensor back as f32 (f16 tensors are widened). On native the future polls the
    /// device; on the web it resolves when the browser maps the buffer, so it never blocks the
    /// page.
    pub async fn read_async(&self, t: &Tensor) -> Result<Vec<f32>> {
        let bytes = t.binding_bytes();
        if t.numel() == 0 {
            return Ok(Vec::new());
        }
        if self.dry {
            return Ok(vec![0.0; t.numel()]);
        }
        // Held across the await: on native the future completes within this call, and on the
        // web (one thread) holding is free.
        let _device = self.exclusive();
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(t.buffer(), t.byte_offset(), &staging, 0, bytes);
        self.queue.submit([enc.finish()]);
        let (tx, rx) = futures_channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| tx.send(r));
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        let mapped = rx.await;
        self.check()?;
        mapped.map_err(|e| GpuError::Readback(e.to_string()))?;
        let out = {
            let view = staging
                .get_mapped_range(..)
                .map_err(|e| GpuError::Readback(e.to_string()))?;
            match t.dtype() {
                DType::F32 => bytemuck::cast_slice::<u8, f32>(&view).to_vec(),
                DType::F16 => view
                    .chunks_exact(2)
                    .take(t.numel())
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
