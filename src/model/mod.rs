//! The DINOv2 ViT backbone: configs, weights, forward.

pub mod config;
pub mod params;
pub mod rope;
pub mod vit;
pub mod weights;
