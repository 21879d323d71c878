//! DINOv2 training: heads, initialisation, schedules, the training step, checkpoints, k-NN and
//! the linear probe.

pub mod budget;
pub mod checkpoint;
pub mod config;
pub mod diagnose;
pub mod export;
pub mod head;
pub mod init;
#[cfg(not(target_arch = "wasm32"))]
pub mod interrupt;
pub mod knn;
pub mod metrics_log;
pub mod plan;
pub mod probe;
pub mod rate;
pub mod run;
pub mod trainer;
