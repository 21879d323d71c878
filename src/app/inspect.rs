//! The inspect view: open weights (a run's checkpoint or Hugging Face DINOv2), drop in a
//! picture, and see each layer's and head's attention over it, the PCA map, and the
//! similarity of every patch to a clicked one.

use super::images::{render, texture, MapKind};
use super::Task;
use crate::data::image::{decode_image, preprocess, Preprocessed, Resize};
use crate::gpu::Gpu;
use crate::infer::{layer_view, LayerView};
use crate::model::vit::Vit;
use eframe::egui;
use std::collections::HashMap;
use std::sync::Arc;

/// What the cached textures show: layer, head, clicked patch, overlay opacity in percent.
type TextureKey = (usize, Option<usize>, Option<usize>, u32);

/// The inspect view's state.
pub struct Inspect {
    /// The loaded model and the name of its file.
    pub model: Option<(Arc<Vit>, String)>,
    /// The picture (preprocessed at `size`) and its name.
    pub image: Option<(Arc<Preprocessed>, String)>,
    /// Shorter side the picture is resized to.
    pub size: usize,
    /// The decoded picture before resizing (kept so a new size needs no file access).
    original: Option<(image::RgbImage, String)>,
    /// Layer shown.
    pub layer: usize,
    /// Head shown (`None`: the mean over heads).
    pub head: Option<usize>,
    /// Patch clicked for the similarity map (row-major index).
    pub patch: Option<usize>,
    /// Computed views per layer for the current model and picture.
    views: HashMap<usize, LayerView>,
    pending: Option<(usize, Task<Result<LayerView, String>>)>,
    /// The last problem, shown in the panel.
    pub error: Option<String>,
    textures: Option<(TextureKey, Vec<egui::TextureHandle>)>,
}

impl Default for Inspect {
    fn default() -> Self {
        Inspect {
            model: None,
            image: None,
            size: 224,
            original: None,
            layer: 0,
            head: None,
            patch: None,
            views: HashMap::new(),
            pending: None,
            error: None,
            textures: None,
        }
    }
}

impl Inspect {
    /// Takes a model; the views of the previous one are dropped.
    pub fn set_model(&mut self, vit: Vit, name: String) {
        self.layer = vit.cfg.depth.saturating_sub(1);
        self.head = None;
        self.model = Some((Arc::new(vit), name));
        self.reset_views();
        self.error = None;
    }

    /// Decodes and preprocesses a picture; a bad one leaves the current picture in place.
    pub fn set_image_bytes(&mut self, name: &str, bytes: &[u8]) -> Result<(), String> {
        let patch = self.model.as_ref().map_or(14, |(m, _)| m.cfg.patch);
        let img = decode_image(bytes, name).map_err(|e| e.to_string())?;
        let p = preprocess(&img, Resize::ShorterSide(self.size), patch)
            .map_err(|e| format!("{name}: {e}"))?;
        self.image = Some((Arc::new(p), name.to_string()));
        self.original = Some((img, name.to_string()));
        self.patch = None;
        self.reset_views();
        Ok(())
    }

    /// Resizes the picture again after `size` changed.
    pub fn reprocess(&mut self) -> Result<(), String> {
        let Some((img, name)) = &self.original else {
            return Ok(());
        };
        let patch = self.model.as_ref().map_or(14, |(m, _)| m.cfg.patch);
        let p = preprocess(img, Resize::ShorterSide(self.size), patch)
            .map_err(|e| format!("{name}: {e}"))?;
        self.image = Some((Arc::new(p), name.clone()));
        self.patch = None;
        self.reset_views();
        Ok(())
    }

    fn reset_views(&mut self) {
        self.views.clear();
        self.pending = None;
        self.textures = None;
        // A picture preprocessed for another patch size is redone when the model changes.
        if let (Some((m, _)), Some((img, name))) = (&self.model, &self.image) {
            let patch = m.cfg.patch;
            if img.height % patch != 0 || img.width % patch != 0 {
                if let Ok(p) = preprocess(&img.rgb, Resize::ShorterSide(self.size), patch) {
                    self.image = Some((Arc::new(p), name.clone()));
                }
            }
        }
    }

    /// The view of the current layer, if computed.
    pub fn current(&self) -> Option<&LayerView> {
        self.views.get(&self.layer)
    }

    /// Starts computing the current layer's view if it is missing; collects finished work.
    pub fn update(&mut self, gpu: &'static Gpu, ctx: &egui::Context) {
        if let Some((layer, task)) = &self.pending {
            if let Some(r) = task.take() {
                let layer = *layer;
                self.pending = None;
                match r {
                    Ok(v) => {
                        self.views.insert(layer, v);
                    }
                    Err(e) => self.error = Some(e),
                }
            }
        }
        if self.pending.is_some() || self.views.contains_key(&self.layer) || self.error.is_some() {
            return;
        }
        let (Some((vit, _)), Some((img, _))) = (&self.model, &self.image) else {
            return;
        };
        let (vit, img, layer) = (vit.clone(), img.clone(), self.layer);
        let task = Task::spawn_off(ctx, async move {
            layer_view(gpu, &vit, &img, layer)
                .await
                .map_err(|e| e.to_string())
        });
        self.pending = Some((layer, task));
    }

    /// Whether a forward pass is running.
    pub fn busy(&self) -> bool {
        self.pending.is_some()
    }

    /// Draws the maps; clicking the picture picks the patch for the similarity map.
    pub fn show_maps(&mut self, ui: &mut egui::Ui, alpha: f32) {
        let Some((img, _)) = &self.image else {
            ui.label("Drop a picture (png, jpeg, webp) here, or open one on the left.");
            return;
        };
        let Some(view) = self.views.get(&self.layer) else {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("running the model…");
            });
            return;
        };
        let overlay = match self.head {
            Some(h) => MapKind::Head(h),
            None => MapKind::Mean,
        };
        let key = (self.layer, self.head, self.patch, (alpha * 100.0) as u32);
        if self.textures.as_ref().is_none_or(|(k, _)| *k != key) {
            let mut kinds = vec![overlay, MapKind::Thresholded, MapKind::Pca];
            if let Some(p) = self.patch {
                kinds.push(MapKind::Similarity(p));
            }
            let tex = kinds
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    texture(
                        ui.ctx(),
                        &format!("inspect-{i}"),
                        &render(view, &img.rgb, *k, alpha),
                    )
                })
                .collect();
            self.textures = Some((key, tex));
        }
        let Some((_, tex)) = &self.textures else {
            return;
        };
        let titles = [
            "attention (click a patch)",
            "60% of the mass",
            "PCA of patch features",
            "similarity to the clicked patch",
        ];
        let avail = ui.available_width();
        let side = ((avail - 24.0) / 2.0).clamp(96.0, 512.0);
        let aspect = img.height as f32 / img.width.max(1) as f32;
        let size = egui::vec2(side, side * aspect);
        let mut clicked = None;
        egui::Grid::new("inspect-grid").show(ui, |ui| {
            for (i, t) in tex.iter().enumerate() {
                ui.vertical(|ui| {
                    ui.label(titles[i]);
                    let r = ui.add(egui::Image::new((t.id(), size)).sense(egui::Sense::click()));
                    if i == 0 && r.clicked() {
                        if let Some(pos) = r.interact_pointer_pos() {
                            let rel = (pos - r.rect.min) / r.rect.size();
                            let (gh, gw) = view.grid;
                            let col = ((rel.x * gw as f32) as usize).min(gw - 1);
                            let row = ((rel.y * gh as f32) as usize).min(gh - 1);
                            clicked = Some(row * gw + col);
                        }
                    }
                });
                if i % 2 == 1 {
                    ui.end_row();
                }
            }
        });
        if clicked.is_some() {
            self.patch = clicked;
        }
    }
}
