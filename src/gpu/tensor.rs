//! `Tensor`: a GPU buffer with a shape. No autograd: backward passes are explicit launcher calls.

use super::pool::Pool;
use std::sync::{Arc, Mutex, Weak};

struct Storage {
    buffer: Option<wgpu::Buffer>,
    size: u64,
    pool: Weak<Mutex<Pool>>,
    /// A stand-in for a buffer past the adapter's largest: never bound, written, read or
    /// pooled (see [`Tensor::is_placeholder`]).
    placeholder: bool,
}

impl Drop for Storage {
    fn drop(&mut self) {
        if self.placeholder {
            return;
        }
        if let Some(pool) = self.pool.upgrade() {
            if let Ok(mut p) = pool.lock() {
                p.give_back(self.size, self.buffer.take());
            }
        }
    }
}

/// Element type of a tensor's storage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DType {
    /// 4-byte elements: f32, or u32 for indices and masks.
    #[default]
    F32,
    /// IEEE half floats: kernels load them to f32, compute in f32 and round on store.
    F16,
}

impl DType {
    /// Bytes per element.
    pub fn bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 => 2,
        }
    }
}

/// A dense row-major tensor on the GPU: 4-byte elements (f32, or u32 for indices and masks) or
/// f16. Clones share the buffer; the buffer returns to the pool when the last clone is dropped.
#[derive(Clone)]
pub struct Tensor {
    storage: Arc<Storage>,
    offset: usize,
    shape: Vec<usize>,
    dtype: DType,
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
        dtype: DType,
    ) -> Tensor {
        Self::with_storage(buffer, size, pool, false, shape, dtype)
    }

    /// A tensor of `shape` whose `size` bytes exceed the adapter's largest buffer: a small
    /// `buffer` stands in, which the recorder refuses to use (naming the tensor), so that the
    /// error is ours and not a device error, and which never returns to the pool.
    pub(crate) fn placeholder(
        buffer: Option<wgpu::Buffer>,
        shape: Vec<usize>,
        size: u64,
        dtype: DType,
    ) -> Tensor {
        Self::with_storage(buffer, size, Weak::new(), true, shape, dtype)
    }

    fn with_storage(
        buffer: Option<wgpu::Buffer>,
        size: u64,
        pool: Weak<Mutex<Pool>>,
        placeholder: bool,
        shape: Vec<usize>,
        dtype: DType,
    ) -> Tensor {
        Tensor {
            storage: Arc::new(Storage {
                buffer,
                size,
                pool,
                placeholder,
            }),
            offset: 0,
            shape,
            dtype,
        }
    }

    /// Whether this tensor (or the tensor it views) is past the adapter's largest buffer, and
    /// so has no real buffer: anything that would use it fails with a limit error instead.
    pub fn is_placeholder(&self) -> bool {
        self.storage.placeholder
    }

    /// Bytes of the whole buffer this tensor lives in (for a placeholder, those it would need).
    pub(crate) fn storage_bytes(&self) -> u64 {
        self.storage.size
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Offset of element 0 in the buffer, in bytes.
    pub fn byte_offset(&self) -> u64 {
        (self.offset * self.dtype.bytes()) as u64
    }

    /// Bytes of this tensor's elements.
    pub fn bytes(&self) -> u64 {
        (self.numel() * self.dtype.bytes()) as u64
    }

    /// Views of f32 tensors start on 64-element (256-byte) boundaries: WebGPU's largest
    /// `min_storage_buffer_offset_alignment`.
    pub const VIEW_ALIGN: usize = 64;

    /// Bytes a view's start must be a multiple of.
    pub const VIEW_ALIGN_BYTES: usize = 256;

    /// A view of `shape` starting `offset` elements into this tensor (on a 256-byte boundary:
    /// a multiple of [`Tensor::VIEW_ALIGN`] for f32), sharing its buffer: parameters live in one
    /// flat buffer this way.
    pub fn view(&self, offset: usize, shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        let start = self.offset + offset;
        assert!(
            (start * self.dtype.bytes()).is_multiple_of(Self::VIEW_ALIGN_BYTES),
            "view offset {start} is not on a {}-byte boundary",
            Self::VIEW_ALIGN_BYTES
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
            dtype: self.dtype,
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
            offset: self.byte_offset(),
            size: wgpu::BufferSize::new(self.binding_bytes()),
        })
    }

    /// Bytes this tensor's binding spans (whole 4-byte words: an f16 tensor of odd length binds
    /// its last word too).
    pub fn binding_bytes(&self) -> u64 {
        (self.numel().max(1) * self.dtype.bytes()).div_ceil(4) as u64 * 4
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
            dtype: self.dtype,
        }
    }

    /// Whether two tensors share one buffer.
    pub fn same_buffer(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.storage, &other.storage)
    }
}
