//! Training configuration (RON) with presets, and the schedules of spec §4.2.

use super::head::HeadConfig;
use crate::data::augment::AugmentConfig;
use crate::model::config::VitConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;

mod gram;
mod schedule;
mod validate;
pub use gram::GramConfig;
pub use schedule::{cosine, StepValues};

/// Most trainable parameters (backbone and heads) a training config may have: ViT-g/14 with
/// its heads is under half of it; more would not fit one flat f32 buffer on any adapter.
pub const MAX_TRAINABLE_PARAMS: u128 = 1 << 31;
/// Most tokens per crop (class token, registers, patches) in training.
pub const MAX_TOKENS: u64 = 16_384;
/// Largest batch a training config may ask for.
pub const MAX_BATCH: usize = 1 << 16;
/// The most host memory one batch's crops may take (the loader holds a few batches at once).
pub const MAX_BATCH_PIXEL_BYTES: u64 = 4 << 30;

/// How teacher targets are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Targets {
    /// Softmax with centering (the default DINOv2 config).
    Centering,
    /// Sinkhorn-Knopp, 3 iterations (the ViT-L/g configs and DINOv3).
    SinkhornKnopp,
}

/// How the head's linear layers start.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum HeadInit {
    /// Truncated normal with this standard deviation (DINOv2: 0.02). At small widths it makes
    /// the bottleneck output far smaller than its biases, so every image's normalised
    /// bottleneck points the same way and the teacher's targets carry no information.
    TruncNormal(f32),
    /// Variance-preserving: N(0, 2/fan_in) before a GELU, N(0, 1/fan_in) for the bottleneck,
    /// so each layer's output keeps its input's scale at any width.
    FanIn,
}

/// How the weights start; the default is DINOv2's (spec §1.8 and §2).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InitConfig {
    /// Initial LayerScale γ (DINOv2: 1e-5; at that size a small model's blocks start as the
    /// identity and every image's CLS token starts equal).
    pub layerscale: f32,
    /// The DINO and iBOT heads' linear layers.
    pub head: HeadInit,
}

impl Default for InitConfig {
    fn default() -> Self {
        InitConfig {
            layerscale: 1e-5,
            head: HeadInit::TruncNormal(0.02),
        }
    }
}

/// Activation checkpointing of the student's blocks: a checkpointed block keeps only its input
/// through the step and is recomputed in the backward pass (same gradients, bit for bit, for
/// about one more forward pass of those blocks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Checkpoint {
    /// Every block keeps its activations.
    #[default]
    Off,
    /// The first n blocks are checkpointed.
    Blocks(usize),
    /// Every block is checkpointed.
    All,
}

impl Checkpoint {
    /// Parses `off`, `all` or a number of blocks.
    pub fn parse(s: &str) -> Result<Checkpoint, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "none" | "0" => Ok(Checkpoint::Off),
            "all" => Ok(Checkpoint::All),
            n => n
                .parse()
                .map(Checkpoint::Blocks)
                .map_err(|_| format!("checkpoint '{s}': use off, all, or a number of blocks")),
        }
    }

    /// How many of `depth` blocks are checkpointed.
    pub fn blocks(self, depth: usize) -> usize {
        match self {
            Checkpoint::Off => 0,
            Checkpoint::Blocks(n) => n.min(depth),
            Checkpoint::All => depth,
        }
    }
}

/// Precision of a training step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// The student's and teacher's forward passes run on f16 copies of their weights and store
    /// their activations in f16; the student backbone's backward products multiply the saved
    /// f16 activations, the f16 weights and the loss-scaled gradient rounded to f16, and the
    /// heads' products take f16 copies of their inputs and weights (every product accumulates
    /// in f32 and writes f32). Dynamic loss scaling (GradScaler's rule, on the GPU) skips a step
    /// whose gradients leave f16's range. The losses, the other kernels, gradients, AdamW and
    /// EMA stay in f32. Needs SHADER_F16.
    Mixed,
}

impl Precision {
    /// Whether this is the default (omitted from written configs).
    pub fn is_f32(&self) -> bool {
        *self == Precision::F32
    }

    /// `f32` or `mixed` (a command-line value).
    pub fn parse(s: &str) -> Result<Precision, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" => Ok(Precision::F32),
            "mixed" => Ok(Precision::Mixed),
            _ => Err(format!("precision '{s}': expected f32 or mixed")),
        }
    }
}

/// Everything a training run needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Backbone.
    pub model: VitConfig,
    /// DINO head (also the iBOT head unless `ibot_head` is set, as in the default DINOv2 config).
    pub head: HeadConfig,
    /// A separate iBOT head (the ViT-L/g configs of DINOv2); `None` shares the DINO head.
    #[serde(default)]
    pub ibot_head: Option<HeadConfig>,
    /// Multi-crop augmentation.
    pub augment: AugmentConfig,
    /// Images per step.
    pub batch_size: usize,
    /// Total steps.
    pub steps: u64,
    /// Accepted and ignored: configs written before every schedule was given in steps held an
    /// `epoch_steps` that no schedule read.
    #[serde(default, skip_serializing, rename = "epoch_steps")]
    pub legacy_epoch_steps: Option<u64>,
    /// Peak learning rate before √(batch/1024) scaling.
    pub base_lr: f32,
    /// Final learning rate.
    pub min_lr: f32,
    /// Linear warmup steps.
    pub warmup_steps: u64,
    /// Weight decay at the start and at the end (cosine).
    pub weight_decay: (f32, f32),
    /// Teacher EMA momentum at the start and at the end (cosine).
    pub momentum: (f32, f32),
    /// Teacher temperature warmup: from, to, over steps.
    pub teacher_temp: (f32, f32, u64),
    /// Student temperature.
    pub student_temp: f32,
    /// Steps with the prototype layer's learning rate at 0.
    pub freeze_last_layer_steps: u64,
    /// Layer-wise learning-rate decay.
    pub layer_decay: f32,
    /// Extra learning-rate multiplier of the patch embedding.
    pub patch_embed_lr_mult: f32,
    /// Per-module gradient-norm clip.
    pub clip_grad: f32,
    /// Stochastic depth of the student's residual branches (per-sample form, uniform over blocks).
    #[serde(default)]
    pub drop_path: f32,
    /// Activation checkpointing of the student's blocks (memory for compute).
    #[serde(default)]
    pub checkpoint: Checkpoint,
    /// Precision of the backbones' forward passes (f32 when the field is absent).
    #[serde(default, skip_serializing_if = "Precision::is_f32")]
    pub precision: Precision,
    /// DINOv3's `rescale_coords` for rotary backbones: in the student's forward passes every
    /// block multiplies its patch coordinates by one factor drawn log-uniform in [1/r, r] per
    /// step and crop set (the teacher, like DINOv3's in eval mode, and evaluation use none).
    /// DINOv3 trains with 2; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_rescale: Option<f32>,
    /// The loss scale a mixed-precision run starts from (65,536 when absent); it halves on
    /// every overflowed step and doubles after 2,000 finite ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<f32>,
    /// Loss weights.
    pub dino_weight: f32,
    /// iBOT weight (0 disables masking and the iBOT loss).
    pub ibot_weight: f32,
    /// KoLeo weight.
    pub koleo_weight: f32,
    /// Gram anchoring (DINOv3), off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gram: Option<GramConfig>,
    /// Teacher targets.
    pub targets: Targets,
    /// How the weights start (DINOv2's initialisation when the field is absent).
    #[serde(default)]
    pub init: InitConfig,
    /// Share of global crops masked, and the mask-ratio range.
    pub mask_prob: f32,
    /// Mask-ratio range of masked crops.
    pub mask_ratio: (f32, f32),
    /// Seed of everything random.
    pub seed: u64,
    /// Data workers (0: on the training thread). Without the field: one per core but the one the
    /// training loop uses, so the next batch is ready before the GPU asks for it. The data of a
    /// step does not depend on it.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Take the collapse diagnostics (teacher entropy, KL from uniform, feature std) every N
    /// steps; `metrics.jsonl` has a line for every step regardless.
    pub log_every: u64,
    /// k-NN evaluation every N steps (0: only at the end).
    pub eval_every: u64,
    /// Checkpoint every N steps (0: only at the end).
    pub checkpoint_every: u64,
    /// k-NN: train and test images used (0: all).
    pub knn_train: usize,
    /// Test images.
    pub knn_test: usize,
}

/// Data workers when a config does not say: the machine's cores less one, at least one.
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get().saturating_sub(1))
        .clamp(1, 16)
}

/// Preset names.
pub const TRAIN_PRESETS: [&str; 7] = [
    "debug",
    "debug_long",
    "debug_v3",
    "fmnist",
    "tiny",
    "laptop",
    "vits14",
];

impl TrainConfig {
    /// A preset: `debug` (minutes on a CPU Vulkan driver), `debug_long` (its recipe over 20,000
    /// steps), `debug_v3` (its model on a DINOv3 backbone), `fmnist` (the same for the full
    /// Fashion-MNIST on a GPU), `tiny`, `laptop` (ViT-S/14 in under 3 GiB), `vits14`.
    pub fn preset(name: &str) -> Result<TrainConfig, String> {
        let text = match name {
            "debug" => include_str!("../../assets/configs/train_debug.ron"),
            "debug_long" => include_str!("../../assets/configs/train_debug_long.ron"),
            "debug_v3" => include_str!("../../assets/configs/train_debug_v3.ron"),
            "fmnist" => include_str!("../../assets/configs/train_fmnist.ron"),
            "tiny" => include_str!("../../assets/configs/train_tiny.ron"),
            "laptop" => include_str!("../../assets/configs/train_laptop.ron"),
            "vits14" => include_str!("../../assets/configs/train_vits14.ron"),
            // A path, not a preset name: the file is missing.
            _ if Path::new(name).is_dir() => {
                return Err(format!("{name}: is a folder, not a config file"));
            }
            _ if Path::new(name).exists() => {
                return Err(format!(
                    "{name}: not a regular file (a device or pipe), not a config file"
                ));
            }
            _ if name.ends_with(".ron")
                || name.contains(std::path::MAIN_SEPARATOR)
                || name.contains('/') =>
            {
                return Err(format!("{name}: no such config file"));
            }
            _ => {
                return Err(format!(
                    "unknown training preset '{name}' (known: {})",
                    TRAIN_PRESETS.join(", ")
                ))
            }
        };
        Self::from_ron(text, name)
    }

    /// This config with the batch size and checkpointing replaced where given (validated).
    pub fn with_overrides(
        mut self,
        batch: Option<usize>,
        checkpoint: Option<&str>,
        precision: Option<&str>,
    ) -> Result<TrainConfig, String> {
        if let Some(b) = batch {
            self.batch_size = b;
        }
        if let Some(c) = checkpoint {
            self.checkpoint = Checkpoint::parse(c)?;
            // A config file's Blocks(n) past the depth means every block (saved runs keep
            // loading); a number typed on the command line that exceeds it is more likely a slip.
            if let Checkpoint::Blocks(n) = self.checkpoint {
                if n > self.model.depth {
                    return Err(format!(
                        "checkpoint {n}: the model has {} blocks (all checkpoints every one)",
                        self.model.depth
                    ));
                }
            }
        }
        if let Some(p) = precision {
            self.precision = Precision::parse(p)?;
        }
        self.validate()?;
        Ok(self)
    }

    /// The config with its run length replaced, if one is given: the cosine schedules span it,
    /// and a shorter run scales its warm-ups with it.
    pub fn with_steps(mut self, steps: Option<u64>) -> Result<TrainConfig, String> {
        if let Some(s) = steps {
            if s < self.steps {
                self.shrink_warm_ups(s, 0, |_| true);
            }
            self.steps = s;
            self.validate()?;
        }
        Ok(self)
    }

    /// A warning for a run whose learning-rate warm-up outlasts the run (the warm-up reaches
    /// base_lr at its last step, so one as long as the run still does).
    pub fn warm_up_warning(&self) -> Option<String> {
        (self.warmup_steps > self.steps).then(|| {
            format!(
                "warmup_steps {} is past steps {}: the learning rate never reaches base_lr",
                self.warmup_steps, self.steps
            )
        })
    }

    /// Whether `other` is this config but for the run's length and what follows it (`--steps`
    /// and `--time-limit` change those): the same model, data, losses and rates.
    pub fn same_recipe(&self, other: &TrainConfig) -> bool {
        let mut a = self.clone();
        a.steps = other.steps;
        a.warmup_steps = other.warmup_steps;
        a.teacher_temp.2 = other.teacher_temp.2;
        a.freeze_last_layer_steps = other.freeze_last_layer_steps;
        a.eval_every = other.eval_every;
        a.checkpoint_every = other.checkpoint_every;
        if let (Some(g), Some(o)) = (&mut a.gram, &other.gram) {
            g.start = o.start;
            g.ramp = o.ramp;
        }
        a == *other
    }

    /// Scales the warm-ups (learning rate, teacher temperature, the frozen prototype layer, the
    /// Gram loss's start) that `shrink` picks by `steps / self.steps`, for a run cut to `steps`
    /// (a run of a tenth of a preset's length would otherwise never leave its warm-up). In a run
    /// `done` steps along, one that has not ended stays at `done` or later: the Gram teacher is
    /// taken at its start step, which must still come.
    pub fn shrink_warm_ups(&mut self, steps: u64, done: u64, shrink: impl Fn(u64) -> bool) {
        let old = self.steps.max(1);
        let scaled = |w: u64| {
            if w == 0 || w < done || !shrink(w) {
                w
            } else {
                let s = (u128::from(w) * u128::from(steps)).div_ceil(u128::from(old)) as u64;
                s.clamp(1, w).max(done)
            }
        };
        self.warmup_steps = scaled(self.warmup_steps);
        self.teacher_temp.2 = scaled(self.teacher_temp.2);
        self.freeze_last_layer_steps = scaled(self.freeze_last_layer_steps);
        if let Some(g) = &mut self.gram {
            // A ramp already under way keeps its length; one to come shrinks with the run.
            if done <= g.start && g.ramp > 1 && shrink(g.ramp) {
                let s = (u128::from(g.ramp) * u128::from(steps)).div_ceil(u128::from(old)) as u64;
                g.ramp = s.clamp(1, g.ramp);
            }
            g.start = scaled(g.start);
        }
    }

    /// Parses RON.
    pub fn from_ron(text: &str, name: &str) -> Result<TrainConfig, String> {
        // Some editors start a UTF-8 file with a byte-order mark.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut c: TrainConfig =
            ron::from_str(text).map_err(|e| format!("{name}: not a valid training config: {e}"))?;
        c.legacy_epoch_steps = None;
        c.validate().map_err(|e| format!("{name}: {e}"))?;
        Ok(c)
    }

    /// A preset name or a .ron file.
    pub fn load(name_or_path: &str) -> Result<TrainConfig, String> {
        let p = Path::new(name_or_path);
        if p.is_file() {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("{}: cannot read: {e}", p.display()))?;
            Self::from_ron(&text, &p.display().to_string())
        } else {
            Self::preset(name_or_path)
        }
    }

    /// As RON.
    pub fn to_ron(&self) -> String {
        ron::ser::to_string_pretty(self, ron::ser::PrettyConfig::default()).unwrap_or_default()
    }

    /// The data loader settings of this run (masking only when iBOT is on).
    pub fn loader_config(&self) -> crate::data::loader::LoaderConfig {
        crate::data::loader::LoaderConfig {
            batch_size: self.batch_size,
            seed: self.seed,
            workers: self.workers,
            prefetch: 2,
            patch: self.model.patch,
            mask_prob: if self.ibot_weight > 0.0 {
                self.mask_prob
            } else {
                0.0
            },
            mask_ratio: self.mask_ratio,
            augment: self.augment.clone(),
            gram_from: self
                .gram
                .as_ref()
                .map_or(u64::MAX, |g| g.first_weighted_step()),
        }
    }
}

impl TrainConfig {
    /// Trainable parameters: backbone and head(s), counted without building any layout (a
    /// config with absurd sizes must be refused before anything is allocated).
    pub fn trainable_params(&self) -> u128 {
        let head = |h: &HeadConfig| {
            let (d, hid, b, k) = (
                self.model.dim as u128,
                h.hidden as u128,
                h.bottleneck as u128,
                h.prototypes as u128,
            );
            d * hid + hid + hid * hid + hid + hid * b + b + k + k * b
        };
        self.model.num_params() as u128 + head(&self.head) + self.ibot_head.as_ref().map_or(0, head)
    }

    /// Prototypes of the head that scores masked patches.
    pub fn ibot_prototypes(&self) -> usize {
        self.ibot_head
            .as_ref()
            .map_or(self.head.prototypes, |h| h.prototypes)
    }

    /// (name, shape) of every head parameter: `dino_head.*`, then `ibot_head.*` when separate.
    pub fn head_specs(&self) -> Vec<(String, Vec<usize>)> {
        let mut v = super::head::head_tensors(self.model.dim, &self.head, "dino_head.");
        if let Some(h) = &self.ibot_head {
            v.extend(super::head::head_tensors(self.model.dim, h, "ibot_head."));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::TrainConfig;

    #[test]
    fn a_shorter_run_scales_its_warm_ups_and_a_longer_one_keeps_them() {
        let tiny = TrainConfig::preset("tiny").expect("preset");
        let short = tiny.clone().with_steps(Some(1000)).expect("steps");
        let ratio = |w: u64| (w * 1000).div_ceil(tiny.steps);
        assert_eq!(short.steps, 1000);
        assert_eq!(short.warmup_steps, ratio(tiny.warmup_steps));
        assert_eq!(
            short.freeze_last_layer_steps,
            ratio(tiny.freeze_last_layer_steps)
        );
        assert_eq!(short.teacher_temp.2, ratio(tiny.teacher_temp.2).max(1));
        let long = tiny
            .clone()
            .with_steps(Some(tiny.steps * 2))
            .expect("steps");
        assert_eq!(long.warmup_steps, tiny.warmup_steps);
        assert_eq!(long.freeze_last_layer_steps, tiny.freeze_last_layer_steps);
    }

    /// DINOv3's `linear_warmup_cosine_decay(start, peak, end, warmup, total, cosine)` at `i`,
    /// written from its definition: `warmup` steps of `np.linspace(start, peak, warmup,
    /// endpoint=False)`, `cosine` steps of `(peak − end)·(cos(np.linspace(0, π, cosine)) + 1)/2
    /// + end`, then `end`.
    fn official_schedule(start: f64, peak: f64, end: f64, warmup: u64, cosine: u64, i: u64) -> f64 {
        if i < warmup {
            return start + (peak - start) * i as f64 / warmup as f64;
        }
        let j = i - warmup;
        if j >= cosine {
            return end;
        }
        let phase = if cosine > 1 {
            std::f64::consts::PI / (cosine - 1) as f64 * j as f64
        } else {
            0.0
        };
        (peak - end) * (phase.cos() + 1.0) / 2.0 + end
    }

    /// The Gram-anchoring stage of DINOv3's ViT-7B recipe at a thousandth of its length (Gram
    /// weight 0 → 2 and the local DINO weight 1 → 0.5 over one "epoch" after the first 1,000;
    /// the Gram teacher taken again every 10 steps from 10 steps later, 3 times at most), step
    /// by step against the official schedules and its refresh rule in `train.py`.
    #[test]
    fn gram_anchoring_schedules_follow_dinov3() {
        let g = super::GramConfig {
            weight: 2.0,
            start: 1000,
            refresh_every: 10,
            ramp: 1000,
            local_weight: 0.5,
            max_refreshes: Some(3),
        };
        let mut updates = 0;
        for step in 0..2100u64 {
            let gram = official_schedule(0.0, 0.0, 2.0, 1000, 1000, step);
            let local = official_schedule(1.0, 1.0, 0.5, 1000, 1000, step);
            assert!(
                (f64::from(g.weight_at(step)) - gram).abs() < 1e-6,
                "step {step}"
            );
            assert!(
                (f64::from(g.local_weight_at(step)) - local).abs() < 1e-6,
                "step {step}"
            );
            // train.py refreshes after iteration `it` when (it + 1) ≥ it_first_update and
            // (it + 1) % update_frequency == 0, up to max_updates times: as step it + 1 begins.
            let official = step >= 1010 && step % 10 == 0 && updates < 3;
            if official {
                updates += 1;
            }
            assert_eq!(g.refresh_at(step), official || step == 1000, "step {step}");
        }
        assert_eq!(g.local_weight_at(999), 1.0);
        assert_eq!(g.local_weight_at(5000), 0.5);
        let unlimited = super::GramConfig {
            max_refreshes: None,
            ..g.clone()
        };
        assert!(unlimited.refresh_at(5000) && !unlimited.refresh_at(5001));
        // DINOv3's high-resolution stage: 0.5 throughout (no ramp).
        let flat = super::GramConfig {
            start: 0,
            ramp: 0,
            ..g
        };
        assert_eq!((flat.local_weight_at(0), flat.weight_at(0)), (0.5, 2.0));
    }

    /// Crops and masks the loader would refuse are refused before anything is planned or
    /// allocated (a zero crop once reached the planner's kernels).
    #[test]
    fn the_loaders_settings_are_checked_with_the_config() {
        let base = TrainConfig::preset("debug").expect("preset");
        assert!(base.validate().is_ok());
        type Break = fn(&mut TrainConfig);
        let cases: [(&str, Break); 8] = [
            ("global_size is 0", |c| c.augment.global_size = 0),
            ("local_size is 0", |c| c.augment.local_size = 0),
            ("global_scale", |c| c.augment.global_scale = (0.0, 0.0)),
            ("mask_ratio", |c| c.mask_ratio = (0.6, 0.5)),
            ("mask_prob", |c| c.mask_prob = 1.5),
            ("blur_kernel", |c| c.augment.blur_kernel = 4),
            ("at most 255", |c| c.augment.blur_kernel = 4_294_967_295),
            ("depth 4000000000 is over", |c| {
                c.model.depth = 4_000_000_000
            }),
        ];
        for (says, break_it) in cases {
            let mut c = base.clone();
            break_it(&mut c);
            let err = c.validate().expect_err(says);
            assert!(err.contains(says), "{says}: {err}");
        }
    }

    /// Starting weights that cannot be drawn, or that would start the run with NaN, are
    /// refused by the setting's name.
    #[test]
    fn impossible_starting_weights_are_refused() {
        let base = TrainConfig::preset("debug").expect("preset");
        type Break = fn(&mut TrainConfig);
        let cases: [(&str, Break); 4] = [
            ("TruncNormal(NaN)", |c| {
                c.init.head = super::HeadInit::TruncNormal(f32::NAN)
            }),
            ("TruncNormal(0)", |c| {
                c.init.head = super::HeadInit::TruncNormal(0.0)
            }),
            ("TruncNormal(5)", |c| {
                c.init.head = super::HeadInit::TruncNormal(5.0)
            }),
            ("init.layerscale is NaN", |c| {
                c.model.layerscale = true;
                c.init.layerscale = f32::NAN;
            }),
        ];
        for (says, break_it) in cases {
            let mut c = base.clone();
            break_it(&mut c);
            let err = c.validate().expect_err(says);
            assert!(err.contains(says), "{says}: {err}");
        }
        let mut c = base.clone();
        c.init.head = super::HeadInit::TruncNormal(0.05);
        assert!(c.validate().is_ok());
    }

    /// A file saved with a byte-order mark reads as without one; a recipe whose every loss
    /// weighs 0 is refused.
    #[test]
    fn a_byte_order_mark_is_read_and_a_recipe_without_losses_refused() {
        let base = TrainConfig::preset("debug").expect("preset");
        let text = format!("\u{feff}{}", base.to_ron());
        assert_eq!(TrainConfig::from_ron(&text, "bom.ron").expect("bom"), base);
        let mut c = base.clone();
        (c.dino_weight, c.ibot_weight, c.koleo_weight) = (0.0, 0.0, 0.0);
        let err = c.validate().expect_err("no loss");
        assert!(err.contains("all 0"), "{err}");
    }
}

#[cfg(test)]
mod override_tests {
    use super::{Checkpoint, TrainConfig};

    /// `--checkpoint N` past the model's depth is refused; N up to the depth, and `all`, pass.
    #[test]
    fn a_checkpoint_count_past_the_depth_is_refused() {
        let base = TrainConfig::preset("debug").expect("preset");
        let depth = base.model.depth;
        let err = base
            .clone()
            .with_overrides(None, Some(&(depth + 1).to_string()), None)
            .expect_err("past the depth");
        assert!(err.contains(&format!("has {depth} blocks")), "{err}");
        let c = base
            .clone()
            .with_overrides(None, Some(&depth.to_string()), None)
            .expect("the depth");
        assert_eq!(c.checkpoint, Checkpoint::Blocks(depth));
        let c = base.with_overrides(None, Some("all"), None).expect("all");
        assert_eq!(c.checkpoint, Checkpoint::All);
    }
}
