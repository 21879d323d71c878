//! The GPU context: adapter choice, device with the adapter's own limits, shader registry, pipeline
//! cache, buffer pool, tensors, the step recorder and readback.
//!
//! One [`Gpu`] owns one wgpu device. Work is recorded into a [`Recorder`] (one compute pass, one
//! submission) and results come back through [`Gpu::read`] (blocking, native) or
//! [`Gpu::read_async`] (both native and web).

mod context;
mod pool;
mod recorder;
mod registry;
mod tensor;

pub use context::{AdapterChoice, Gpu, KernelTime, Profile, Staged, Submitted, WorkTime};
pub use pool::{LiveBuffers, PoolStats};
pub use recorder::{grid_1d, grid_rows, Recorder};
#[cfg(not(target_arch = "wasm32"))]
pub use registry::indexes_proven;
pub use registry::{
    half_bindings, out_bindings, shader_source, shader_source_as, shader_source_typed, Access,
    Kernel, Types, PRELUDE, SHADERS,
};
pub use tensor::{DType, Tensor};

/// Everything that can go wrong at the device boundary.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// No adapter matched the request.
    #[error("no GPU adapter found{0}")]
    NoAdapter(String),
    /// The adapter refused to create a device.
    #[error("could not create a device on adapter '{adapter}': {message}")]
    Device {
        /// Adapter name.
        adapter: String,
        /// What wgpu said.
        message: String,
    },
    /// A request exceeds what the adapter offers.
    #[error("GPU limit too small: {0}")]
    Limit(String),
    /// A validation or out-of-memory error reported by wgpu.
    #[error("GPU error: {0}")]
    Wgpu(String),
    /// Mapping a buffer for readback failed.
    #[error("reading back from the GPU failed: {0}")]
    Readback(String),
}

/// Result type of the GPU layer.
pub type Result<T> = std::result::Result<T, GpuError>;
