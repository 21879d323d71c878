//! Inference pipelines shared by the CLI, the examples and the app: features of a batch of
//! images, and the attention / PCA maps of one image.

use crate::data::image::Preprocessed;
use crate::gpu::{Gpu, Recorder, Tensor};
use crate::model::vit::{ForwardOptions, Vit};
use crate::viz::{self, Colormap};
use image::RgbImage;

/// A problem running inference.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// From the model.
    #[error(transparent)]
    Model(#[from] crate::model::vit::ModelError),
    /// From the device.
    #[error(transparent)]
    Gpu(#[from] crate::gpu::GpuError),
    /// From the image maps.
    #[error(transparent)]
    Viz(#[from] crate::viz::VizError),
    /// Inputs that do not fit together.
    #[error("{0}")]
    Input(String),
}

#[cfg(not(target_arch = "wasm32"))]
fn read(gpu: &Gpu, t: &Tensor) -> Result<Vec<f32>, InferError> {
    Ok(gpu.read(t)?)
}

#[cfg(target_arch = "wasm32")]
fn read(_gpu: &Gpu, _t: &Tensor) -> Result<Vec<f32>, InferError> {
    Err(InferError::Input(
        "use the async pipeline in the browser".into(),
    ))
}

/// Image-level features of a batch of same-size images.
pub struct Embeddings {
    /// Final-normed CLS token per image [B, D].
    pub cls: Vec<f32>,
    /// Mean of the final-normed patch tokens per image [B, D] (registers excluded).
    pub mean_patch: Vec<f32>,
}

/// Runs the backbone on same-size preprocessed images.
pub fn embed(gpu: &Gpu, vit: &Vit, images: &[Preprocessed]) -> Result<Embeddings, InferError> {
    let Some(first) = images.first() else {
        return Ok(Embeddings {
            cls: vec![],
            mean_patch: vec![],
        });
    };
    let (h, w) = (first.height, first.width);
    let data = crate::data::image::batch(images).map_err(|e| InferError::Input(e.to_string()))?;
    let b = images.len();
    let mut rec = Recorder::new(gpu);
    let pixels = gpu.upload(&data, &[b, 3, h, w]);
    let out = vit.forward(&mut rec, &pixels, b, h, w, None, &ForwardOptions::default())?;
    rec.finish()?;
    let tokens = read(gpu, &out.tokens)?;
    let d = vit.cfg.dim;
    let n = out.n_tokens;
    let first_patch = 1 + vit.cfg.registers;
    let n_p = n - first_patch;
    let mut cls = Vec::with_capacity(b * d);
    let mut mean_patch = vec![0.0f32; b * d];
    for i in 0..b {
        let img = &tokens[i * n * d..(i + 1) * n * d];
        cls.extend_from_slice(&img[..d]);
        for t in first_patch..n {
            for c in 0..d {
                mean_patch[i * d + c] += img[t * d + c] / n_p as f32;
            }
        }
    }
    Ok(Embeddings { cls, mean_patch })
}

/// The maps of one image, all at the preprocessed image's size.
pub struct AttentionMaps {
    /// Patch grid (rows, columns).
    pub grid: (usize, usize),
    /// CLS→patch attention per head, [grid_h·grid_w] each.
    pub raw: Vec<Vec<f32>>,
    /// Each head's map, colour-mapped.
    pub heads: Vec<RgbImage>,
    /// Each head's map thresholded to keep the given share of the attention mass, over the image.
    pub heads_thresholded: Vec<RgbImage>,
    /// Mean over heads, colour-mapped.
    pub mean: RgbImage,
    /// Mean over heads over the image.
    pub mean_overlay: RgbImage,
    /// PCA of the final patch features: foreground, then three components as RGB.
    pub pca: RgbImage,
    /// The picture the maps are drawn over.
    pub image: RgbImage,
}

/// Attention of the CLS token in `layer` (default: the last) and the PCA map of one image.
/// `keep` is the share of attention mass the thresholded maps keep (DINO uses 0.6).
pub fn attention_maps(
    gpu: &Gpu,
    vit: &Vit,
    img: &Preprocessed,
    layer: Option<usize>,
    keep: f32,
) -> Result<AttentionMaps, InferError> {
    let depth = vit.cfg.depth;
    let layer = layer.unwrap_or(depth.saturating_sub(1));
    if layer >= depth {
        return Err(InferError::Input(format!(
            "layer {layer} does not exist: the model has {depth} layers (0..{})",
            depth - 1
        )));
    }
    let (h, w) = (img.height, img.width);
    let mut rec = Recorder::new(gpu);
    let pixels = gpu.upload(&img.data, &[1, 3, h, w]);
    let opts = ForwardOptions {
        attention_layers: vec![layer],
        ..Default::default()
    };
    let out = vit.forward(&mut rec, &pixels, 1, h, w, None, &opts)?;
    rec.finish()?;
    let (gh, gw) = out.grid;
    let probs = match out.attentions.first() {
        Some((_, t)) => read(gpu, t)?,
        None => return Err(InferError::Input("no attention maps were produced".into())),
    };
    let heads = vit.cfg.heads;
    let raw = viz::cls_attention(&probs, heads, out.n_tokens, vit.cfg.registers, gh, gw)?;
    let (wu, hu) = (w as u32, h as u32);
    let up = |m: &[f32]| viz::upsample_nearest(m, gh, gw, h, w);
    let head_imgs: Vec<RgbImage> = raw
        .iter()
        .map(|m| viz::colorize(&up(m), wu, hu, Colormap::Inferno))
        .collect();
    let thresholded: Vec<RgbImage> = raw
        .iter()
        .map(|m| {
            viz::mask_overlay(
                &img.rgb,
                &viz::threshold_mass(m, keep),
                gw as u32,
                gh as u32,
                0.25,
            )
        })
        .collect();
    let mean_map = viz::head_mean(&raw);
    let mean = viz::colorize(&up(&mean_map), wu, hu, Colormap::Inferno);
    let smooth = viz::upsample_bilinear(&mean_map, gh, gw, h, w);
    let mean_overlay = viz::overlay(
        &img.rgb,
        &viz::colorize(&smooth, wu, hu, Colormap::Inferno),
        0.6,
    );
    let tokens = read(gpu, &out.tokens)?;
    let d = vit.cfg.dim;
    let first_patch = 1 + vit.cfg.registers;
    let patches = &tokens[first_patch * d..];
    let pca = viz::pca_rgb(patches, gh * gw, d, gh, gw)?;
    let pca_big = image::imageops::resize(&pca.rgb, wu, hu, image::imageops::FilterType::Nearest);
    Ok(AttentionMaps {
        grid: (gh, gw),
        raw,
        heads: head_imgs,
        heads_thresholded: thresholded,
        mean,
        mean_overlay,
        pca: pca_big,
        image: img.rgb.clone(),
    })
}
