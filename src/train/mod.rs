//! DINOv2 training: heads, initialisation, schedules, the training step, checkpoints, k-NN.

pub mod checkpoint;
pub mod config;
pub mod head;
pub mod init;
pub mod knn;
pub mod plan;
pub mod run;
pub mod trainer;
