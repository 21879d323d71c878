//! dinoscope: DINOv2-style self-supervised Vision Transformers trained and run on any GPU through
//! wgpu, with hand-written WGSL kernels.
//!
//! Layers, bottom up: [`gpu`] (device, tensors, recorder), [`kernels`] (one launcher file per
//! WGSL shader, forward and backward), [`cpu`] (plain-loop twins of every kernel), [`fixtures`]
//! (the PyTorch golden-tensor format) and [`selftest`] (kernels against their twins and the
//! golden tensors on the user's adapter).

#![warn(missing_docs)]

/// Writes a line to standard output as `println!` does, except that a write that fails (a full
/// disk, a closed pipe) ends the process through [`io::stdout_failed`] instead of a panic.
#[macro_export]
macro_rules! say {
    () => {
        $crate::say!("")
    };
    ($($t:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($t)*) {
            $crate::io::stdout_failed(e);
        }
    }};
}

#[cfg(feature = "app")]
pub mod app;
#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
pub mod cpu;
pub mod data;
pub mod fixtures;
pub mod gpu;
pub mod half;
#[cfg(not(target_arch = "wasm32"))]
pub mod hub;
pub mod infer;
pub mod io;
pub mod kernels;
pub mod model;
pub mod par;
pub mod selftest;
pub mod train;
#[cfg(not(target_arch = "wasm32"))]
pub mod tune;
pub mod viz;
