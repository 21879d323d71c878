//! What the user picks in the train panel, persisted between runs, and how it becomes a
//! [`TrainConfig`].

use crate::model::config::Ffn;
use crate::train::config::TrainConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where training images come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DataSource {
    /// The Fashion-MNIST subset shipped in the binary (with k-NN evaluation).
    Bundled,
    /// A folder of png/jpeg/webp images (subfolders as classes), or an IDX images file.
    Path(PathBuf),
}

/// The train panel's choices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainSettings {
    /// Training data.
    pub data: DataSource,
    /// Preset the rest starts from (`debug`, `tiny`, `vits14`).
    pub preset: String,
    /// Backbone width.
    pub dim: usize,
    /// Backbone depth.
    pub depth: usize,
    /// Patch size in pixels.
    pub patch: usize,
    /// DINO prototypes.
    pub prototypes: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Peak learning rate before √(batch/1024) scaling.
    pub base_lr: f32,
    /// Global crop side.
    pub global_size: usize,
    /// Local crop side.
    pub local_size: usize,
    /// Local crops per image.
    pub n_local: usize,
    /// Total steps (the schedules span them).
    pub steps: u64,
    /// Fit a new run into this many minutes (the schedules span what fits); 0: `steps`.
    pub minutes: f32,
    /// k-NN evaluation every N steps (bundled data only; 0 = never during the run).
    pub eval_every: u64,
    /// Attention snapshot of the probe images every N steps.
    pub snapshot_every: u64,
    /// Checkpoint every N steps (0 = only on stop).
    pub checkpoint_every: u64,
    /// Run folder for checkpoints.
    pub run_dir: PathBuf,
    /// Seed.
    pub seed: u64,
    /// Changes the collapse diagnosis recommended and the user applied, on top of the preset.
    pub remedies: Vec<crate::train::diagnose::Remedy>,
    /// Mixed precision (f16 forward passes and saved activations; needs SHADER_F16).
    pub mixed: bool,
}

impl Default for TrainSettings {
    fn default() -> Self {
        let mut s = TrainSettings {
            data: DataSource::Bundled,
            preset: "debug".into(),
            dim: 64,
            depth: 4,
            patch: 4,
            prototypes: 256,
            batch_size: 32,
            base_lr: 0.016,
            global_size: 28,
            local_size: 12,
            n_local: 2,
            steps: 400,
            minutes: 0.0,
            eval_every: 50,
            snapshot_every: 5,
            checkpoint_every: 50,
            run_dir: PathBuf::from("runs/app"),
            seed: 0,
            remedies: Vec::new(),
            mixed: false,
        };
        if let Ok(cfg) = TrainConfig::preset("debug") {
            s.take_preset(&cfg);
            s.steps = 400;
        }
        s
    }
}

impl TrainSettings {
    /// Copies a preset's main numbers into the settings (the rest of the preset stays behind
    /// in [`TrainSettings::to_config`]).
    pub fn take_preset(&mut self, cfg: &TrainConfig) {
        self.dim = cfg.model.dim;
        self.depth = cfg.model.depth;
        self.patch = cfg.model.patch;
        self.prototypes = cfg.head.prototypes;
        self.batch_size = cfg.batch_size;
        self.base_lr = cfg.base_lr;
        self.global_size = cfg.augment.global_size;
        self.local_size = cfg.augment.local_size;
        self.n_local = cfg.augment.n_local;
        self.steps = cfg.steps;
        self.seed = cfg.seed;
    }

    /// The full training config: the preset with the settings applied, validated.
    pub fn to_config(&self) -> Result<TrainConfig, String> {
        let mut cfg = TrainConfig::preset(&self.preset)?;
        let m = &mut cfg.model;
        if self.dim != m.dim {
            let old = m.dim.max(1);
            m.dim = self.dim;
            // Every DINOv2 model keeps 64 channels per head; narrower models keep two heads.
            m.heads = (self.dim / 64).max(2).min(self.dim.max(1));
            // Saturating: a width past any model's is refused by validation, not an overflow.
            m.mlp_hidden = match m.ffn {
                Ffn::Mlp => self.dim.saturating_mul(4),
                Ffn::SwiGlu => m.mlp_hidden.saturating_mul(self.dim) / old,
            };
        }
        let m = &mut cfg.model;
        m.depth = self.depth;
        m.patch = self.patch;
        if !m.is_rope() {
            m.pos_grid = (self.global_size / self.patch.max(1)).max(1);
        }
        cfg.head.prototypes = self.prototypes;
        cfg.batch_size = self.batch_size;
        cfg.base_lr = self.base_lr;
        cfg.augment.global_size = self.global_size;
        cfg.augment.local_size = self.local_size;
        cfg.augment.n_local = self.n_local;
        cfg.steps = self.steps;
        cfg.warmup_steps = cfg.warmup_steps.min(self.steps / 4);
        cfg.teacher_temp.2 = cfg.teacher_temp.2.min(self.steps);
        cfg.freeze_last_layer_steps = cfg.freeze_last_layer_steps.min(self.steps / 10);
        cfg.eval_every = self.eval_every;
        cfg.checkpoint_every = self.checkpoint_every;
        cfg.seed = self.seed;
        if self.mixed {
            cfg.precision = crate::train::config::Precision::Mixed;
        }
        for r in &self.remedies {
            r.apply(&mut cfg);
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Everything the app remembers between runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppSettings {
    /// The train panel.
    pub train: TrainSettings,
    /// Curves: log-scale y axes.
    pub log_scale: bool,
    /// Curves: exponential smoothing weight in [0, 1).
    pub smoothing: f32,
    /// Inspect: the last weights file.
    pub weights: Option<PathBuf>,
    /// Inspect: the last image.
    pub image: Option<PathBuf>,
    /// Inspect: overlay opacity.
    pub alpha: f32,
    /// Inspect: store the model in f16 (half the memory; needs SHADER_F16).
    #[serde(default)]
    pub half: bool,
    /// Start training as soon as the app opens (the default first run does).
    pub autostart: bool,
}

impl AppSettings {
    /// The settings of a first start: train the bundled data at once.
    pub fn first_run() -> Self {
        AppSettings {
            smoothing: 0.6,
            alpha: 0.6,
            autostart: true,
            ..Default::default()
        }
    }
}

impl AppSettings {
    /// Applies one `key=value` setting from a link (the browser page's query string):
    /// `train` (0/1: start at once), `preset`, `batch`, `width`, `depth`, `locals`, `steps`,
    /// `minutes` (a time limit), `maps` (snapshot every N steps), `eval` (k-NN and linear probe
    /// every N steps; 0: never), `seed`.
    pub fn apply_param(&mut self, key: &str, value: &str) -> Result<(), String> {
        let bad = || format!("setting '{key}': '{value}' is not a valid value");
        let num = |v: &str| v.parse::<u64>().map_err(|_| bad());
        let t = &mut self.train;
        match key {
            "train" => {
                self.autostart = match value {
                    "1" | "true" => true,
                    "0" | "false" => false,
                    _ => return Err(bad()),
                }
            }
            "preset" => {
                let cfg = TrainConfig::preset(value)?;
                t.preset = value.to_string();
                t.take_preset(&cfg);
            }
            "batch" => t.batch_size = num(value)? as usize,
            "width" => t.dim = num(value)? as usize,
            "depth" => t.depth = num(value)? as usize,
            "locals" => t.n_local = num(value)? as usize,
            "steps" => t.steps = num(value)?,
            "minutes" => {
                t.minutes = value
                    .parse::<f32>()
                    .ok()
                    .filter(|m| m.is_finite() && *m >= 0.0)
                    .ok_or_else(bad)?
            }
            "maps" => t.snapshot_every = num(value)?.max(1),
            "eval" => t.eval_every = num(value)?,
            "seed" => t.seed = num(value)?,
            _ => return Err(format!("unknown setting '{key}'")),
        }
        Ok(())
    }
}
