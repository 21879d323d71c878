//! `Tensor`: a GPU buffer with a shape. No autograd: backward passes are explicit launcher calls.

use super::pool::Pool;
use std::sync::{Arc, Mutex, Weak};

struct Storage {
    buffer: Option<wgpu::Buffer>,
    size: u64,
    pool: Weak<Mutex<Pool>>,
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            if let Ok(mut p) = pool.lock() {
                p.give_back(self.size, self.buffer.take());
            }
        }
    }
}

/// A dense row-major tensor of 4-byte elements (f32, or u32 for indices and masks) on the GPU.
/// Clones share the buffer; the buffer returns to the pool when the last clone is dropped.
#[derive(Clone)]
pub struct Tensor {
    storage: Arc<Storage>,
    offset: usize,
    shape: Vec<usize>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor{:?}", self.shape)
    }
}

impl Tensor {
    pub(crate) fn from_buffer(
        buffer: Option<wgpu::Buffer>,
        shape: Vec<usize>,
        size: u64,
        pool: Weak<Mutex<Pool>>,
    ) -> Tensor {
        Tensor {
            storage: Arc::new(Storage { buffer, size, pool }),
            offset: 0,
            shape,
        }
    }

    /// Views start on 64-element (256-byte) boundaries: WebGPU's largest
    /// `min_storage_buffer_offset_alignment`.
    pub const VIEW_ALIGN: usize = 64;

    /// A view of `shape` starting `offset` elements into this tensor (a multiple of
    /// [`Tensor::VIEW_ALIGN`]), sharing its buffer: parameters live in one flat buffer this way.
    pub fn view(&self, offset: usize, shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        let start = self.offset + offset;
        assert!(
            start.is_multiple_of(Self::VIEW_ALIGN),
            "view offset {start} is not a multiple of {}",
            Self::VIEW_ALIGN
        );
        assert!(
            offset + n <= self.numel(),
            "view [{offset}, +{n}) outside a tensor of {}",
            self.numel()
        );
        Tensor {
            storage: self.storage.clone(),
            offset: start,
            shape: shape.to_vec(),
        }
    }

    /// Offset of element 0 in the buffer, in elements.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The binding of exactly this tensor's elements.
    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: self.buffer(),
            offset: self.offset as u64 * 4,
            size: wgpu::BufferSize::new(self.numel().max(1) as u64 * 4),
        })
    }

    /// Bytes this tensor's binding spans.
    pub fn binding_bytes(&self) -> u64 {
        self.numel().max(1) as u64 * 4
    }

    /// The wgpu buffer (may be larger than the tensor).
    pub fn buffer(&self) -> &wgpu::Buffer {
        // The buffer is only taken in Drop; dry-run tensors are never bound (the recorder skips
        // them).
        self.storage
            .buffer
            .as_ref()
            .expect("tensor buffer present until drop (and not a dry-run tensor)")
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The same buffer seen with another shape of equal element count.
    pub fn reshape(&self, shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        assert_eq!(n, self.numel(), "reshape {:?} -> {:?}", self.shape, shape);
        Tensor {
            storage: self.storage.clone(),
            offset: self.offset,
            shape: shape.to_vec(),
        }
    }

    /// Whether two tensors share one buffer.
    pub fn same_buffer(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.storage, &other.storage)
    }
}
