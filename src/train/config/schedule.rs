//! The schedules: every value that changes along a run, at any step.

use serde::{Deserialize, Serialize};

use super::TrainConfig;

/// DINOv2's CosineScheduler: linear warmup from `start` to `base` over `warmup` steps, then a
/// cosine from `base` to `end` until `total`; `end` afterwards.
pub fn cosine(step: u64, base: f64, end: f64, total: u64, warmup: u64, start: f64) -> f64 {
    if step < warmup {
        if warmup <= 1 {
            return base;
        }
        return start + (base - start) * step as f64 / (warmup - 1) as f64;
    }
    if step >= total {
        return end;
    }
    let j = (step - warmup) as f64;
    let span = (total - warmup).max(1) as f64;
    end + 0.5 * (base - end) * (1.0 + (std::f64::consts::PI * j / span).cos())
}

/// The values of every schedule at one step.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepValues {
    /// Learning rate (already √(batch/1024)-scaled).
    pub lr: f32,
    /// Weight decay.
    pub weight_decay: f32,
    /// Teacher momentum.
    pub momentum: f32,
    /// Teacher temperature.
    pub teacher_temp: f32,
    /// Whether the prototype layer is frozen.
    pub freeze_last_layer: bool,
    /// Weight of the Gram loss at this step (0 before it starts or without it).
    pub gram_weight: f32,
    /// Whether the Gram teacher is refreshed from the EMA teacher as this step begins.
    pub gram_refresh: bool,
    /// Weight of the local crops' terms in the DINO loss (1 but where Gram anchoring lowers it).
    #[serde(default = "super::gram::one")]
    pub dino_local_weight: f32,
}

impl TrainConfig {
    /// Schedules at `step`.
    pub fn at(&self, step: u64) -> StepValues {
        let scale = (self.batch_size as f64 / 1024.0).sqrt();
        let lr = cosine(
            step,
            self.base_lr as f64 * scale,
            self.min_lr as f64,
            self.steps,
            self.warmup_steps,
            0.0,
        );
        let wd = cosine(
            step,
            self.weight_decay.0 as f64,
            self.weight_decay.1 as f64,
            self.steps,
            0,
            0.0,
        );
        let m = cosine(
            step,
            self.momentum.0 as f64,
            self.momentum.1 as f64,
            self.steps,
            0,
            0.0,
        );
        let (t0, t1, tw) = self.teacher_temp;
        let tt = if step < tw && tw > 1 {
            t0 as f64 + (t1 - t0) as f64 * step as f64 / (tw - 1) as f64
        } else {
            t1 as f64
        };
        StepValues {
            lr: lr as f32,
            weight_decay: wd as f32,
            momentum: m as f32,
            teacher_temp: tt as f32,
            freeze_last_layer: step < self.freeze_last_layer_steps,
            gram_weight: self.gram.as_ref().map_or(0.0, |g| g.weight_at(step)),
            gram_refresh: self.gram.as_ref().is_some_and(|g| g.refresh_at(step)),
            dino_local_weight: self.gram.as_ref().map_or(1.0, |g| g.local_weight_at(step)),
        }
    }
}
