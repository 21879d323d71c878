//! The Inspect view's panel and what it loads: weights (on their own thread natively),
//! their precision, pictures.

use super::*;

impl DinoscopeApp {
    /// Loads backbone weights into the inspect view; a bad file is refused with the reason.
    /// A path (native) is read on its own thread, so a large file or a download never stalls
    /// the window: the model arrives in a later frame ([`DinoscopeApp::weights_loading`]).
    pub fn load_weights(&mut self, path: &std::path::Path, bytes: Option<Vec<u8>>) {
        let name = path.display().to_string();
        let dtype = self.inspect_dtype();
        match bytes {
            Some(b) => {
                let result = crate::infer::load_model_bytes(self.gpu, &name, &b, dtype);
                self.weights_loaded(path, result);
            }
            #[cfg(not(target_arch = "wasm32"))]
            None => {
                let gpu = self.gpu;
                let ctx = self.wake_ctx();
                let p = path.to_path_buf();
                let (tx, rx) = std::sync::mpsc::channel();
                let spawned = std::thread::Builder::new()
                    .name("load-weights".into())
                    .spawn(move || {
                        let file = if p.is_dir() {
                            Ok(p.join("teacher_backbone.safetensors"))
                        } else {
                            // A repository id (facebook/dinov2-small): the Hugging Face cache,
                            // or a download into it.
                            crate::hub::resolve_weights(&p, None)
                        };
                        let result =
                            file.and_then(|f| crate::infer::load_model_as(gpu, &f, None, dtype));
                        let _ = tx.send(result);
                        ctx.request_repaint();
                    });
                match spawned {
                    Ok(_) => {
                        self.inspect.error = None;
                        self.loading = Some((path.to_path_buf(), rx));
                    }
                    Err(e) => self.weights_loaded(path, Err(format!("{name}: {e}"))),
                }
            }
            #[cfg(target_arch = "wasm32")]
            None => self.weights_loaded(
                path,
                Err(format!("{name}: drop the file on the page to open it")),
            ),
        }
    }

    /// Whether weights are still being read.
    pub fn weights_loading(&self) -> bool {
        #[cfg(not(target_arch = "wasm32"))]
        return self.loading.is_some();
        #[cfg(target_arch = "wasm32")]
        false
    }

    /// Takes the model a loading thread finished, if any.
    #[cfg(not(target_arch = "wasm32"))]
    pub(super) fn poll_loading(&mut self) {
        let Some((path, rx)) = &self.loading else {
            return;
        };
        let result = match rx.try_recv() {
            Ok(r) => r,
            Err(std::sync::mpsc::TryRecvError::Empty) => return,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                Err(format!("{}: the loading thread stopped", path.display()))
            }
        };
        let path = path.clone();
        self.loading = None;
        self.weights_loaded(&path, result);
    }

    /// Takes a loaded model into the inspect view, or reports why it was refused.
    pub(super) fn weights_loaded(&mut self, path: &std::path::Path, result: Result<Vit, String>) {
        let name = path.display().to_string();
        match result {
            Ok(vit) => {
                let c = &vit.cfg;
                self.notify(
                    format!(
                        "loaded {name}: width {}, depth {}, heads {}, patch {}",
                        c.dim, c.depth, c.heads, c.patch
                    ),
                    false,
                );
                self.inspect.set_model(vit, name);
                self.settings.weights = Some(path.to_path_buf());
            }
            Err(e) => {
                self.inspect.error = Some(format!("weights refused: {e}"));
                self.notify(format!("weights refused: {e}"), true);
            }
        }
    }

    /// The storage precision the Inspect view loads models in (f32 where the adapter has no
    /// SHADER_F16, whatever the setting).
    pub fn inspect_dtype(&self) -> crate::gpu::DType {
        if self.settings.half && self.gpu.features.contains(wgpu::Features::SHADER_F16) {
            crate::gpu::DType::F16
        } else {
            crate::gpu::DType::F32
        }
    }

    /// Switches the Inspect model's storage precision to the setting's.
    pub fn apply_precision(&mut self) {
        let dtype = self.inspect_dtype();
        let Some((vit, name)) = self.inspect.model.clone() else {
            return;
        };
        if vit.dtype() == dtype {
            return;
        }
        #[cfg(not(target_arch = "wasm32"))]
        match vit.to_dtype(self.gpu, dtype) {
            Ok(v) => self.inspect.set_model(v, name),
            Err(e) => self.notify(format!("{name}: {e}"), true),
        }
        #[cfg(target_arch = "wasm32")]
        self.notify(format!("open {name} again to load it in {dtype:?}"), false);
    }

    /// Loads a picture into the inspect view; a bad one is refused with the reason.
    pub fn load_image(&mut self, path: &std::path::Path, bytes: Option<Vec<u8>>) {
        let name = path.display().to_string();
        let bytes = match bytes {
            Some(b) => Ok(b),
            None => crate::data::image::read_picture_file(path)
                .map_err(|e| format!("{name}: cannot read: {e}")),
        };
        match bytes.and_then(|b| self.inspect.set_image_bytes(&name, &b)) {
            Ok(()) => {
                self.inspect.error = None;
                self.settings.image = Some(path.to_path_buf());
            }
            Err(e) => {
                self.inspect.error = Some(format!("picture refused: {e}"));
                self.notify(format!("picture refused: {e}"), true);
            }
        }
    }

    pub(super) fn inspect_settings(&mut self, ui: &mut egui::Ui) {
        ui.heading("Weights");
        ui.label("A run folder, our teacher_backbone.safetensors, a Hugging Face DINOv2 or DINOv3 model.safetensors, or a repository id in the Hugging Face cache (facebook/dinov2-small). Drop one here.");
        #[cfg(not(target_arch = "wasm32"))]
        {
            ui.text_edit_singleline(&mut self.weights_field);
            let idle = !self.weights_loading();
            ui.horizontal(|ui| {
                if ui
                    .add_enabled(idle, egui::Button::new("Load weights"))
                    .clicked()
                {
                    let p = std::path::PathBuf::from(self.weights_field.trim());
                    self.load_weights(&p, None);
                }
                if ui.add_enabled(idle, egui::Button::new("Open…")).clicked() {
                    self.browse(dialogs::Pick::Weights);
                }
            });
            if let Some((p, _)) = &self.loading {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label(format!("loading {}…", p.display()));
                });
            }
        }
        #[cfg(target_arch = "wasm32")]
        if ui.button("Open weights…").clicked() {
            self.browse_web(ui.ctx(), dialogs::Pick::Weights);
        }
        let has_f16 = self.gpu.features.contains(wgpu::Features::SHADER_F16);
        let r = ui
            .add_enabled(
                has_f16,
                egui::Checkbox::new(&mut self.settings.half, "f16 (half the memory)"),
            )
            .on_hover_text(
                "Store the weights and activations as 16-bit floats (computed in f32): maps \
                 within 1% of f32's",
            )
            .on_disabled_hover_text("this adapter has no SHADER_F16");
        if r.changed() {
            self.apply_precision();
        }
        if let Some((m, name)) = &self.inspect.model {
            ui.label(format!(
                "{name}\nwidth {} · depth {} · heads {} · patch {} · {}",
                m.cfg.dim,
                m.cfg.depth,
                m.cfg.heads,
                m.cfg.patch,
                match m.dtype() {
                    crate::gpu::DType::F32 => "f32",
                    crate::gpu::DType::F16 => "f16",
                }
            ));
        }
        ui.separator();
        ui.heading("Picture");
        #[cfg(not(target_arch = "wasm32"))]
        {
            ui.text_edit_singleline(&mut self.image_field);
            ui.horizontal(|ui| {
                if ui.button("Open picture").clicked() {
                    let p = std::path::PathBuf::from(self.image_field.trim());
                    self.load_image(&p, None);
                }
                if ui.button("Open…").clicked() {
                    self.browse(dialogs::Pick::Picture);
                }
            });
        }
        #[cfg(target_arch = "wasm32")]
        if ui.button("Open picture…").clicked() {
            self.browse_web(ui.ctx(), dialogs::Pick::Picture);
        }
        ui.horizontal(|ui| {
            ui.label("size");
            let r = ui.add(egui::DragValue::new(&mut self.inspect.size).range(28..=1036));
            if r.lost_focus() || r.drag_stopped() {
                if let Err(e) = self.inspect.reprocess() {
                    self.inspect.error = Some(format!("picture refused: {e}"));
                }
            }
        });
        ui.separator();
        ui.heading("View");
        if let Some((m, _)) = &self.inspect.model {
            let depth = m.cfg.depth;
            let heads = m.cfg.heads;
            let before = self.inspect.layer;
            ui.add(egui::Slider::new(&mut self.inspect.layer, 0..=depth - 1).text("layer"));
            if before != self.inspect.layer {
                self.inspect.error = None;
            }
            egui::ComboBox::from_label("head")
                .selected_text(match self.inspect.head {
                    None => "mean".to_string(),
                    Some(h) => format!("head {h}"),
                })
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut self.inspect.head, None, "mean");
                    for h in 0..heads {
                        ui.selectable_value(&mut self.inspect.head, Some(h), format!("head {h}"));
                    }
                });
        }
        ui.add(egui::Slider::new(&mut self.settings.alpha, 0.0..=1.0).text("overlay"));
    }
}
