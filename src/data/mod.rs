//! Data: image decoding and preprocessing (datasets and augmentation come with training).

pub mod image;
