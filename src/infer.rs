//! Inference pipelines shared by the CLI, the examples and the app: features of a batch of
//! images, and the attention / PCA maps of one image.

use crate::data::image::Preprocessed;
use crate::gpu::{DType, Gpu, Recorder, Tensor};
use crate::model::vit::{ForwardOptions, Vit};
use crate::viz;
#[cfg(not(target_arch = "wasm32"))]
use crate::viz::Colormap;
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

/// Loads a backbone: config from `config` (a preset name, a `config.json`, a `.ron`) or found
/// next to the weights (`config.json`, `config.ron`), else inferred from the tensor shapes.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_model(
    gpu: &Gpu,
    weights: &std::path::Path,
    config: Option<&str>,
) -> Result<Vit, String> {
    load_model_as(gpu, weights, config, DType::F32)
}

/// [`load_model`] with the parameters stored as `dtype` (f16 needs SHADER_F16).
#[cfg(not(target_arch = "wasm32"))]
pub fn load_model_as(
    gpu: &Gpu,
    weights: &std::path::Path,
    config: Option<&str>,
    dtype: DType,
) -> Result<Vit, String> {
    use crate::model::config::VitConfig;
    use crate::model::weights::{config_and_source, load_backbone};
    let mut beside = None;
    let cfg = match config {
        // A path (a file, or a name that only a file has) is read as one; a missing one is
        // reported as missing, not as an unknown preset.
        Some(c)
            if std::path::Path::new(c).is_file()
                || c.ends_with(".json")
                || c.ends_with(".ron")
                || c.contains('/')
                || c.contains(std::path::MAIN_SEPARATOR) =>
        {
            VitConfig::load(std::path::Path::new(c)).map_err(|e| {
                let e = e.to_string();
                if e.contains("field named `model`") {
                    format!(
                        "{e} (this is a training config; a run's model config is its config.ron)"
                    )
                } else {
                    e
                }
            })?
        }
        Some(c) => VitConfig::preset(c).map_err(|e| e.to_string())?,
        None => {
            let (cfg, source) = config_and_source(weights).map_err(|e| e.to_string())?;
            beside = source;
            cfg
        }
    };
    rgb_only(&cfg, &weights.display().to_string())?;
    let w = load_backbone(weights, &cfg).map_err(|e| match &beside {
        Some(other) => format!(
            "{e} (the config is {}, beside the weights)",
            other.display()
        ),
        None => e.to_string(),
    })?;
    Vit::new_as(gpu, cfg, &w, dtype).map_err(|e| format!("{}: {e}", weights.display()))
}

/// Pictures reach the model as RGB: a model with another channel count is refused by name.
fn rgb_only(cfg: &crate::model::config::VitConfig, name: &str) -> Result<(), String> {
    if cfg.in_chans == 3 {
        return Ok(());
    }
    Err(format!(
        "{name}: the model takes {} input channels; dinoscope feeds models RGB pictures \
         (3 channels; grayscale pictures are repeated over the three)",
        cfg.in_chans
    ))
}

/// Loads a backbone from the bytes of a safetensors file (a dropped file in the browser),
/// config inferred from the shapes, parameters stored as `dtype`; `name` names the file in
/// errors.
pub fn load_model_bytes(gpu: &Gpu, name: &str, bytes: &[u8], dtype: DType) -> Result<Vit, String> {
    use crate::model::weights::{from_bytes, infer_config_from_bytes};
    let path = std::path::Path::new(name);
    let cfg = infer_config_from_bytes(path, bytes).map_err(|e| e.to_string())?;
    rgb_only(&cfg, name)?;
    let w = from_bytes(path, bytes, &cfg).map_err(|e| e.to_string())?;
    Vit::new_as(gpu, cfg, &w, dtype).map_err(|e| format!("{name}: {e}"))
}

/// The model's output tokens, or an error when one is not finite: in f16 an activation past
/// ±65,504 overflows, and the features would be silently wrong.
fn finite(vit: &Vit, tokens: Vec<f32>) -> Result<Vec<f32>, InferError> {
    if tokens.iter().all(|v| v.is_finite()) {
        return Ok(tokens);
    }
    Err(InferError::Input(vit.not_finite_message().into()))
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
    let tokens = finite(vit, read(gpu, &out.tokens)?)?;
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
/// `keep` is the share of attention mass the thresholded maps keep (DINO uses 0.6). Native
/// only (it blocks on the readback); the browser uses [`layer_view`].
#[cfg(not(target_arch = "wasm32"))]
pub fn attention_maps(
    gpu: &Gpu,
    vit: &Vit,
    img: &Preprocessed,
    layer: Option<usize>,
    keep: f32,
) -> Result<AttentionMaps, InferError> {
    let layer = layer.unwrap_or(vit.cfg.depth.saturating_sub(1));
    let view = pollster::block_on(layer_view(gpu, vit, img, layer))?;
    let (gh, gw) = view.grid;
    let (h, w) = (img.height, img.width);
    let (wu, hu) = (w as u32, h as u32);
    let up = |m: &[f32]| viz::upsample_nearest(m, gh, gw, h, w);
    let head_imgs: Vec<RgbImage> = view
        .heads
        .iter()
        .map(|m| viz::colorize(&up(m), wu, hu, Colormap::Inferno))
        .collect();
    let thresholded: Vec<RgbImage> = view
        .heads
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
    let mean_map = view.mean();
    let mean = viz::colorize(&up(&mean_map), wu, hu, Colormap::Inferno);
    let smooth = viz::upsample_bilinear(&mean_map, gh, gw, h, w);
    let mean_overlay = viz::overlay(
        &img.rgb,
        &viz::colorize(&smooth, wu, hu, Colormap::Inferno),
        0.6,
    );
    let pca = view.pca()?;
    let pca_big = image::imageops::resize(&pca.rgb, wu, hu, image::imageops::FilterType::Nearest);
    Ok(AttentionMaps {
        grid: (gh, gw),
        raw: view.heads,
        heads: head_imgs,
        heads_thresholded: thresholded,
        mean,
        mean_overlay,
        pca: pca_big,
        image: img.rgb.clone(),
    })
}

/// One layer's CLS attention and the final patch features of one image: what the app's views
/// are drawn from.
#[derive(Clone, Debug)]
pub struct LayerView {
    /// Patch grid (rows, columns).
    pub grid: (usize, usize),
    /// The layer the maps belong to.
    pub layer: usize,
    /// CLS→patch attention per head, `grid.0·grid.1` values each.
    pub heads: Vec<Vec<f32>>,
    /// Final-normed patch tokens `[grid.0·grid.1, dim]` (registers excluded).
    pub patch_features: Vec<f32>,
    /// Feature width.
    pub dim: usize,
}

impl LayerView {
    /// Mean attention over heads.
    pub fn mean(&self) -> Vec<f32> {
        viz::head_mean(&self.heads)
    }

    /// PCA colours of the patch features, one pixel per patch.
    pub fn pca(&self) -> Result<viz::PcaMaps, InferError> {
        let (gh, gw) = self.grid;
        Ok(viz::pca_rgb(
            &self.patch_features,
            gh * gw,
            self.dim,
            gh,
            gw,
        )?)
    }

    /// Cosine similarity of every patch to patch `index` (row-major).
    pub fn similarity_to(&self, index: usize) -> Vec<f32> {
        let d = self.dim;
        let n = self.patch_features.len() / d.max(1);
        if index >= n {
            return vec![0.0; n];
        }
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        let q = &self.patch_features[index * d..(index + 1) * d];
        let qn = norm(q);
        self.patch_features
            .chunks_exact(d)
            .map(|p| p.iter().zip(q).map(|(a, b)| a * b).sum::<f32>() / (norm(p) * qn))
            .collect()
    }
}

/// Runs the backbone on one image and reads back `layer`'s CLS attention and the final patch
/// features. Asynchronous so the browser never blocks; native callers use `pollster`.
pub async fn layer_view(
    gpu: &Gpu,
    vit: &Vit,
    img: &Preprocessed,
    layer: usize,
) -> Result<LayerView, InferError> {
    let depth = vit.cfg.depth;
    if layer >= depth {
        return Err(InferError::Input(format!(
            "layer {layer} does not exist: the model has {depth} layers (0..{})",
            depth.saturating_sub(1)
        )));
    }
    let (h, w) = (img.height, img.width);
    let mut rec = Recorder::new(gpu);
    let pixels = gpu.upload(&img.data, &[1, 3, h, w]);
    let opts = ForwardOptions {
        attention_layers: vec![layer],
        cls_attention_only: true,
        ..Default::default()
    };
    let out = vit.forward(&mut rec, &pixels, 1, h, w, None, &opts)?;
    rec.finish()?;
    let (gh, gw) = out.grid;
    let probs = match out.attentions.first() {
        Some((_, t)) => gpu.read_async(t).await?,
        None => return Err(InferError::Input("no attention maps were produced".into())),
    };
    let heads = viz::cls_attention(
        &probs,
        vit.cfg.heads,
        out.n_tokens,
        vit.cfg.registers,
        gh,
        gw,
    )?;
    let tokens = finite(vit, gpu.read_async(&out.tokens).await?)?;
    let d = vit.cfg.dim;
    let first_patch = 1 + vit.cfg.registers;
    Ok(LayerView {
        grid: (gh, gw),
        layer,
        heads,
        patch_features: tokens[first_patch * d..].to_vec(),
        dim: d,
    })
}
