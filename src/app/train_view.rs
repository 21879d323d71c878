//! The Train view: its settings panel, the curves and k-NN panel, the probe grid of
//! attention maps, the collapse diagnosis, and the CSV export.

use super::*;

impl DinoscopeApp {
    pub(super) fn diagnosis_panel(&mut self, ui: &mut egui::Ui) {
        if let Some(d) = &self.diagnosis {
            ui.colored_label(ui.visuals().warn_fg_color, &d.message);
            let applied = self.settings.train.remedies.contains(&d.remedy);
            if ui
                .add_enabled(!applied, egui::Button::new("Apply to the next run"))
                .on_hover_text(d.remedy.describe())
                .clicked()
            {
                self.apply_remedy();
            }
        }
        if !self.settings.train.remedies.is_empty() {
            ui.horizontal_wrapped(|ui| {
                let list: Vec<&str> = self
                    .settings
                    .train
                    .remedies
                    .iter()
                    .map(|r| r.describe())
                    .collect();
                ui.label(format!("on top of the preset: {}", list.join("; ")));
                if ui.small_button("clear").clicked() {
                    self.settings.train.remedies.clear();
                }
            });
        }
    }

    pub(super) fn train_settings(&mut self, ui: &mut egui::Ui) {
        let idle = !self.running();
        self.data_settings(ui, idle);
        ui.separator();
        self.recipe_settings(ui, idle);
        if let Ok(cfg) = self.settings.train.to_config() {
            let (line, bad) = self.memory.line(self.gpu, &cfg, self.memory_budget);
            let color = if bad {
                ui.visuals().error_fg_color
            } else {
                ui.visuals().weak_text_color()
            };
            ui.colored_label(color, line);
        }
        self.diagnosis_panel(ui);
        ui.checkbox(
            &mut self.settings.autostart,
            "start training when the app opens",
        );
        ui.separator();
        self.run_buttons(ui);
    }

    /// The training data: a folder or IDX file, or the bundled set.
    fn data_settings(&mut self, ui: &mut egui::Ui, idle: bool) {
        ui.heading("Data");
        #[cfg(target_arch = "wasm32")]
        {
            let _ = idle;
            ui.label(
                "The bundled Fashion-MNIST subset (image folders and IDX files: desktop app).",
            );
        }
        #[cfg(not(target_arch = "wasm32"))]
        ui.add_enabled_ui(idle, |ui| {
            ui.label("Image folder or IDX file (empty: bundled Fashion-MNIST). Drop one here.");
            ui.text_edit_singleline(&mut self.data_field);
            ui.horizontal_wrapped(|ui| {
                if ui.button("Folder…").clicked() {
                    self.browse(dialogs::Pick::DataFolder);
                }
                if ui.button("IDX file…").clicked() {
                    self.browse(dialogs::Pick::DataFile);
                }
                if ui.button("Use bundled Fashion-MNIST").clicked() {
                    self.data_field.clear();
                }
            });
        });
    }

    /// The preset, the model and recipe settings, and the run folder.
    fn recipe_settings(&mut self, ui: &mut egui::Ui, idle: bool) {
        ui.heading("Model and recipe");
        #[cfg_attr(target_arch = "wasm32", allow(unused_mut))]
        let mut choose_run = false;
        let t = &mut self.settings.train;
        ui.add_enabled_ui(idle, |ui| {
            egui::ComboBox::from_label("preset")
                .selected_text(t.preset.clone())
                .show_ui(ui, |ui| {
                    for p in crate::train::config::TRAIN_PRESETS {
                        if ui.selectable_label(t.preset == p, p).clicked() {
                            t.preset = p.to_string();
                            if let Ok(cfg) = crate::train::config::TrainConfig::preset(p) {
                                t.take_preset(&cfg);
                            }
                        }
                    }
                });
            let has_f16 = self.gpu.features.contains(wgpu::Features::SHADER_F16);
            recipe_grid(ui, t, has_f16);
            #[cfg(not(target_arch = "wasm32"))]
            {
                ui.label("run folder");
                let mut dir = t.run_dir.display().to_string();
                if ui.text_edit_singleline(&mut dir).changed() {
                    t.run_dir = dir.into();
                }
                choose_run = ui.button("Choose…").clicked();
            }
        });
        #[cfg(not(target_arch = "wasm32"))]
        if choose_run {
            self.browse(dialogs::Pick::RunFolder);
        }
        #[cfg(target_arch = "wasm32")]
        let _ = choose_run;
    }

    /// Start, resume and export when idle; pause, resume, save and stop while running.
    fn run_buttons(&mut self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| match self.state {
            RunState::Idle | RunState::Ended => {
                if ui.button("Start").clicked() {
                    self.start(None);
                }
                #[cfg(not(target_arch = "wasm32"))]
                if ui
                    .button("Resume run folder")
                    .on_hover_text("continue from the checkpoint in the run folder")
                    .clicked()
                {
                    let dir = self.settings.train.run_dir.clone();
                    self.start(Some(dir));
                }
                #[cfg(not(target_arch = "wasm32"))]
                if self
                    .settings
                    .train
                    .run_dir
                    .join(crate::train::checkpoint::BACKBONE)
                    .is_file()
                    && ui
                        .button("Export for transformers")
                        .on_hover_text(
                            "the teacher backbone as a Hugging Face folder, RUN/export-hf, \
                             which transformers' AutoModel.from_pretrained loads",
                        )
                        .clicked()
                {
                    self.export_hf();
                }
                #[cfg(target_arch = "wasm32")]
                if self.web.is_some() {
                    self.download_buttons(ui);
                }
            }
            RunState::Starting => {
                ui.spinner();
                ui.label("starting…");
            }
            RunState::Running | RunState::Paused => {
                if self.state == RunState::Running {
                    if ui.button("Pause").clicked() {
                        self.control("pause");
                    }
                } else if ui.button("Resume").clicked() {
                    self.control("resume");
                }
                #[cfg(not(target_arch = "wasm32"))]
                if ui.button("Save checkpoint").clicked() {
                    self.control("save");
                }
                #[cfg(target_arch = "wasm32")]
                self.download_buttons(ui);
                if ui.button("Stop").clicked() {
                    self.control("stop");
                }
            }
        });
    }

    /// The browser's checkpoints: the run's files as downloads, read between two steps.
    #[cfg(target_arch = "wasm32")]
    fn download_buttons(&mut self, ui: &mut egui::Ui) {
        if ui
            .button("Download weights")
            .on_hover_text(
                "the teacher backbone as teacher_backbone.safetensors (torch-hub names): \
                 Inspect, `dinoscope embed` and PyTorch load it",
            )
            .clicked()
        {
            self.control("download weights");
        }
        if ui
            .button("Download checkpoint")
            .on_hover_text(
                "the whole training state as state.safetensors: in a folder of its own, \
                 `dinoscope train --resume --out FOLDER` continues the run exactly",
            )
            .clicked()
        {
            self.control("download state");
        }
        if ui
            .button("Download for transformers")
            .on_hover_text(
                "the teacher backbone as a Hugging Face model folder (export-hf/ in \
                 export-hf.zip): unpacked, transformers' AutoModel.from_pretrained loads it",
            )
            .clicked()
        {
            self.control("download hf");
        }
    }

    pub(super) fn train_central(&mut self, ui: &mut egui::Ui) {
        let full = ui.available_size();
        ui.horizontal(|ui| {
            ui.checkbox(&mut self.settings.log_scale, "log scale");
            ui.add(egui::Slider::new(&mut self.settings.smoothing, 0.0..=0.99).text("smoothing"));
            if ui.button("Export CSV").clicked() {
                self.export_csv();
            }
            #[cfg(not(target_arch = "wasm32"))]
            if ui.button("Export CSV as…").clicked() {
                self.browse(dialogs::Pick::Csv);
            }
        });
        let curves_h = (full.y * 0.5).max(180.0);
        let top = ui.available_rect_before_wrap();
        let w = ((ui.available_width() - 40.0) / 3.0).max(150.0);
        egui::ScrollArea::vertical()
            .id_salt("curves")
            .max_height(curves_h)
            .show(ui, |ui| {
                let plot_h = (curves_h / 2.0 - 48.0).max(90.0);
                egui::Grid::new("curves-grid")
                    .num_columns(3)
                    .show(ui, |ui| {
                        for (i, (title, series)) in curves::PLOTS.iter().enumerate() {
                            let no_knn = series.first() == Some(&"knn")
                                && !self.knn_expected
                                && self.history.knn.is_empty()
                                && self.state != RunState::Idle;
                            ui.vertical(|ui| {
                                if no_knn {
                                    ui.label(egui::RichText::new(*title).strong());
                                    ui.allocate_ui(egui::vec2(w, plot_h), |ui| {
                                        ui.label(if cfg!(target_arch = "wasm32") {
                                            "k-NN and linear-probe accuracy are measured in the desktop app."
                                        } else {
                                            "k-NN and linear-probe accuracy need labelled test pictures: the bundled Fashion-MNIST set, or an IDX file with its test split beside it."
                                        });
                                    });
                                    return;
                                }
                                curves::plot(
                                    ui,
                                    &self.history,
                                    title,
                                    series,
                                    self.settings.log_scale && i != 1,
                                    self.settings.smoothing,
                                    w,
                                    plot_h,
                                );
                            });
                            if i % 3 == 2 {
                                ui.end_row();
                            }
                        }
                    });
            });
        let mut curves_rect = top;
        curves_rect.max.y = ui.min_rect().max.y;
        self.panel_rects.push(("curves".into(), curves_rect));
        ui.separator();
        let probes_top = ui.available_rect_before_wrap();
        self.probe_grid(ui);
        let mut probes_rect = probes_top;
        probes_rect.max.y = ui.min_rect().max.y;
        self.panel_rects.push(("attention".into(), probes_rect));
    }

    pub(super) fn probe_grid(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.label(egui::RichText::new("Attention of the teacher's last layer").strong());
            let n = self.snapshots.len();
            if n > 1 {
                let mut idx = self.replay.unwrap_or(n - 1);
                let step = self.snapshots.get(idx).map_or(0, |s| s.step);
                if ui
                    .add(
                        egui::Slider::new(&mut idx, 0..=n - 1).text(format!("replay: step {step}")),
                    )
                    .changed()
                {
                    self.replay = if idx + 1 == n { None } else { Some(idx) };
                }
                if self.replay.is_some() && ui.button("live").clicked() {
                    self.replay = None;
                }
            }
        });
        let Some(idx) = self.replay.or(self.snapshots.len().checked_sub(1)) else {
            ui.label("The first maps appear once the run has started.");
            return;
        };
        let step = self.snapshots[idx].step;
        let key = (idx, step);
        if self.probe_textures.as_ref().is_none_or(|(k, _)| *k != key) {
            let snap = &self.snapshots[idx];
            let ctx = ui.ctx().clone();
            let rows: Vec<Vec<egui::TextureHandle>> = snap
                .views
                .iter()
                .zip(&self.probe_images)
                .enumerate()
                .map(|(r, (v, img))| {
                    let mut kinds = vec![MapKind::Image, MapKind::Mean];
                    kinds.extend((0..v.heads.len()).map(MapKind::Head));
                    kinds.push(MapKind::Thresholded);
                    kinds.push(MapKind::Pca);
                    kinds
                        .iter()
                        .enumerate()
                        .map(|(c, k)| {
                            texture(&ctx, &format!("probe-{r}-{c}"), &render(v, img, *k, 0.6))
                        })
                        .collect()
                })
                .collect();
            self.probe_textures = Some((key, rows));
        }
        let Some((_, rows)) = &self.probe_textures else {
            return;
        };
        let heads = rows.first().map_or(0, |r| r.len().saturating_sub(4));
        let cols = rows.first().map_or(1, |r| r.len()).max(1);
        // Fit every probe in view when the window allows (probes side by side in groups when
        // it is wide); scroll otherwise.
        let n = rows.len().max(1);
        let avail = ui.available_size();
        let groups = ((avail.x / (cols as f32 * 64.0)) as usize).clamp(1, n);
        let per_group = n.div_ceil(groups);
        let by_width = (avail.x - 32.0 * groups as f32) / (cols * groups) as f32 - 6.0;
        let by_height = (avail.y - 24.0) / per_group as f32 - 4.0;
        let side = by_width.min(by_height.max(40.0)).clamp(32.0, 112.0);
        egui::ScrollArea::both().id_salt("probes").show(ui, |ui| {
            egui::Grid::new("probe-grid")
                .spacing([4.0, 4.0])
                .show(ui, |ui| {
                    for g in 0..groups {
                        ui.label("image");
                        ui.label("mean");
                        for h in 0..heads {
                            ui.label(format!("head {h}"));
                        }
                        ui.label("60% mass");
                        ui.label("PCA");
                        if g + 1 < groups {
                            ui.label("");
                        }
                    }
                    ui.end_row();
                    for r in 0..per_group {
                        for g in 0..groups {
                            match rows.get(g * per_group + r) {
                                Some(row) => {
                                    for t in row {
                                        ui.image((t.id(), egui::vec2(side, side)));
                                    }
                                }
                                None => {
                                    for _ in 0..cols {
                                        ui.label("");
                                    }
                                }
                            }
                            if g + 1 < groups {
                                ui.label("");
                            }
                        }
                        ui.end_row();
                    }
                });
        });
    }

    pub(super) fn export_csv(&mut self) {
        // An empty history would only replace an earlier export with a header.
        if self.history.points.is_empty() {
            self.notify("no curve to export yet".to_string(), false);
            return;
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let path = self.settings.train.run_dir.join("curves.csv");
            self.write_csv(&path);
        }
        #[cfg(target_arch = "wasm32")]
        web::download("dinoscope-curves.csv", &self.history.to_csv());
    }

    /// Writes the curves as CSV to `path` (its folder made if missing).
    #[cfg(not(target_arch = "wasm32"))]
    pub(super) fn write_csv(&mut self, path: &std::path::Path) {
        let csv = self.history.to_csv();
        let r = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(dir) => std::fs::create_dir_all(dir),
            None => Ok(()),
        }
        .and_then(|_| crate::io::write_atomic(path, csv.as_bytes()));
        match r {
            Ok(()) => self.notify(format!("curves written to {}", path.display()), false),
            Err(e) => self.notify(format!("{}: cannot write: {e}", path.display()), true),
        }
    }
}

/// The model and recipe settings a run takes, in a grid of labelled controls.
fn recipe_grid(ui: &mut egui::Ui, t: &mut super::settings::TrainSettings, has_f16: bool) {
    egui::Grid::new("train-grid").num_columns(2).show(ui, |ui| {
        ui.label("width");
        egui::ComboBox::from_id_salt("width")
            .selected_text(t.dim.to_string())
            .show_ui(ui, |ui| {
                for w in [64, 128, 192, 384, 768] {
                    ui.selectable_value(&mut t.dim, w, w.to_string());
                }
            });
        ui.end_row();
        ui.label("depth");
        ui.add(egui::Slider::new(&mut t.depth, 1..=12));
        ui.end_row();
        ui.label("patch");
        ui.add(egui::Slider::new(&mut t.patch, 2..=16));
        ui.end_row();
        ui.label("prototypes");
        ui.add(egui::DragValue::new(&mut t.prototypes).range(2..=65536));
        ui.end_row();
        ui.label("batch");
        ui.add(egui::DragValue::new(&mut t.batch_size).range(2..=1024));
        ui.end_row();
        ui.label("base lr");
        ui.add(
            egui::DragValue::new(&mut t.base_lr)
                .speed(0.0005)
                .range(0.0..=1.0),
        );
        ui.end_row();
        ui.label("global crop");
        ui.add(egui::DragValue::new(&mut t.global_size).range(4..=518));
        ui.end_row();
        ui.label("local crop");
        ui.add(egui::DragValue::new(&mut t.local_size).range(2..=224));
        ui.end_row();
        ui.label("local crops");
        ui.add(egui::Slider::new(&mut t.n_local, 0..=10));
        ui.end_row();
        ui.label("steps");
        ui.add_enabled(
            t.minutes == 0.0,
            egui::DragValue::new(&mut t.steps).range(1..=10_000_000),
        )
        .on_disabled_hover_text("the time limit sets the steps");
        ui.end_row();
        ui.label("time limit");
        ui.add(
            egui::DragValue::new(&mut t.minutes)
                .range(0.0..=10_000.0)
                .speed(0.5)
                .custom_formatter(|m, _| {
                    if m == 0.0 {
                        "off".into()
                    } else {
                        format!("{m} min")
                    }
                })
                .custom_parser(|text| {
                    let t = text.trim().trim_end_matches("min").trim();
                    if t == "off" {
                        Some(0.0)
                    } else {
                        t.parse().ok()
                    }
                }),
        )
        .on_hover_text(
            "a new run times its first 20 steps, then its schedule spans as many steps \
                 as fit in this time, evaluations included; it also stops there",
        );
        ui.end_row();
        ui.label("k-NN every");
        ui.add(egui::DragValue::new(&mut t.eval_every).range(0..=100_000));
        ui.end_row();
        ui.label("maps every");
        ui.add(egui::DragValue::new(&mut t.snapshot_every).range(1..=100_000));
        ui.end_row();
        // The browser has no run folder to write into; its checkpoints are downloads.
        #[cfg(not(target_arch = "wasm32"))]
        {
            ui.label("checkpoint every");
            ui.add(egui::DragValue::new(&mut t.checkpoint_every).range(0..=100_000));
            ui.end_row();
        }
        ui.label("precision");
        // Left on from another adapter, it can still be turned off here.
        ui.add_enabled(
            has_f16 || t.mixed,
            egui::Checkbox::new(&mut t.mixed, "mixed (f16)"),
        )
        .on_hover_text(
            "f16 forward passes, saved activations and backward products with a \
                     dynamic loss scale; f32 gradients and weights: less memory per step, \
                     and faster where the GPU has fast f16",
        )
        .on_disabled_hover_text("this adapter has no SHADER_F16");
        ui.end_row();
    });
}
