//! Data: image decoding and preprocessing, datasets (image folders, IDX files, the bundled
//! Fashion-MNIST subset), multi-crop augmentation, iBOT masks and the batch loader.

pub mod augment;
pub mod color;
pub mod dataset;
pub mod image;
pub mod loader;
pub mod masks;
pub mod resample;
pub mod rng;
