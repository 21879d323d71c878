//! DINOv2 training: heads, initialisation, schedules, the training step, checkpoints, k-NN.

pub mod head;
pub mod init;
