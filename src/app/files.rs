//! Files reaching the app: drops on the window, the platform's file dialogs, the page's picker.

use super::*;

impl DinoscopeApp {
    /// Handles files dropped on the window: weights, pictures, image folders, IDX files.
    pub fn handle_dropped(&mut self, paths: Vec<(std::path::PathBuf, Option<Vec<u8>>)>) {
        for (path, bytes) in paths {
            let name = path.display().to_string();
            let lower = name.to_ascii_lowercase();
            if self.take_checkpoint(&path, &bytes) {
                continue;
            }
            if lower.ends_with(".safetensors") {
                self.tab = Tab::Inspect;
                self.weights_field = name.clone();
                self.load_weights(&path, bytes);
            } else if [".png", ".jpg", ".jpeg", ".webp"]
                .iter()
                .any(|e| lower.ends_with(e))
            {
                self.tab = Tab::Inspect;
                self.image_field = name.clone();
                self.load_image(&path, bytes);
            } else if cfg!(target_arch = "wasm32") && lower.contains("-ubyte") {
                self.notify(
                    format!(
                        "{name}: the browser trains on the bundled Fashion-MNIST subset; image \
                         folders and IDX files are for the desktop app"
                    ),
                    true,
                );
            } else if path.is_dir() || lower.contains("-ubyte") {
                self.tab = Tab::Train;
                self.data_field = name;
                self.notify(
                    format!("training data set to {}; press Start", path.display()),
                    false,
                );
            } else {
                self.notify(
                    format!(
                        "{name}: not something dinoscope opens (weights: .safetensors; pictures: \
                         png, jpeg, webp; data: a folder or an IDX file)"
                    ),
                    true,
                );
            }
        }
    }

    /// A dropped training checkpoint (`state.safetensors`): the browser resumes the run from it
    /// at once; the desktop app takes its folder as the run folder to resume. False for any
    /// other file.
    fn take_checkpoint(&mut self, path: &std::path::Path, bytes: &Option<Vec<u8>>) -> bool {
        let is_state = match bytes {
            Some(b) => crate::train::checkpoint::is_state(b),
            None => path
                .file_name()
                .is_some_and(|n| n == crate::train::checkpoint::STATE),
        };
        if !is_state {
            return false;
        }
        self.tab = Tab::Train;
        // The run under way keeps its folder (and, in the browser, its session).
        if self.running() {
            self.notify(
                format!(
                    "{}: stop the current run to resume this one",
                    path.display()
                ),
                true,
            );
            return true;
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            // A state this build cannot resume is named now, not when Resume is pressed.
            if let Err(e) = crate::train::checkpoint::check_state_file(path) {
                self.notify(e, true);
                return true;
            }
            let dir = path
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .to_path_buf();
            // One of a run's own checkpoints: the run is the folder that holds them (a run
            // resumed inside a checkpoint would be removed with it when that one is pruned).
            let dir = match crate::train::checkpoint::run_of_checkpoint(&dir) {
                Some(run) => {
                    self.notify(
                        format!(
                            "{} is a checkpoint of the run in {}; Resume run folder continues \
                             that run from its newest intact checkpoint",
                            dir.display(),
                            run.display()
                        ),
                        false,
                    );
                    run
                }
                None => dir,
            };
            self.notify(
                format!(
                    "run folder set to {}; Resume run folder continues the run there, writing \
                     its checkpoints, metrics and exports into that folder",
                    dir.display()
                ),
                false,
            );
            self.settings.train.run_dir = dir;
        }
        #[cfg(target_arch = "wasm32")]
        {
            let Some(b) = bytes else {
                return true;
            };
            match crate::train::checkpoint::state_from_bytes(path, b) {
                Ok((cfg, st)) => {
                    let step = st.step;
                    let log = crate::train::checkpoint::state_log(b);
                    self.web_resume =
                        Some((super::session::Origin::State(Box::new((cfg, st))), log));
                    self.notify(
                        format!("{}: resuming at step {step}", path.display()),
                        false,
                    );
                    self.start(Some(path.to_path_buf()));
                }
                Err(e) => self.notify(e, true),
            }
        }
        true
    }

    /// Opens the file dialog for `pick` and uses what is chosen: the data, weights or picture
    /// field (weights and pictures are loaded at once), the run folder, or the CSV export.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn browse(&mut self, pick: dialogs::Pick) {
        use dialogs::Pick;
        let current = match pick {
            Pick::DataFolder | Pick::DataFile => self.data_field.clone(),
            Pick::Weights => self.weights_field.clone(),
            Pick::Picture => self.image_field.clone(),
            Pick::RunFolder | Pick::Csv => self.settings.train.run_dir.display().to_string(),
        };
        let spec = dialogs::spec(pick, &current);
        let Some(path) = (self.dialog)(&spec) else {
            return;
        };
        match pick {
            Pick::DataFolder | Pick::DataFile => {
                self.data_field = path.display().to_string();
                self.notify(
                    format!("training data set to {}; press Start", path.display()),
                    false,
                );
            }
            Pick::Weights => {
                self.weights_field = path.display().to_string();
                self.load_weights(&path, None);
            }
            Pick::Picture => {
                self.image_field = path.display().to_string();
                self.load_image(&path, None);
            }
            Pick::RunFolder => self.settings.train.run_dir = path,
            Pick::Csv => self.write_csv(&path),
        }
    }

    /// Opens the page's file picker for weights or a picture; the file is read and handled
    /// as a dropped one.
    #[cfg(target_arch = "wasm32")]
    pub(super) fn browse_web(&mut self, ctx: &egui::Context, pick: dialogs::Pick) {
        let spec = dialogs::spec(pick, "");
        self.picked.push(Task::spawn(
            ctx,
            async move { dialogs::browser(spec).await },
        ));
    }
}
