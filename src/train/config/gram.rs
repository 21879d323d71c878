//! DINOv3's Gram anchoring: its settings and the schedules of its weights and refreshes.

use serde::{Deserialize, Serialize};

/// DINOv3's Gram anchoring (spec §8.1): the student's patch-similarity matrices held to those of
/// a frozen earlier snapshot of the EMA teacher (the Gram teacher), on the same global crops.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GramConfig {
    /// Weight of the loss once it is on.
    pub weight: f32,
    /// First step with the loss; the Gram teacher is the EMA teacher as this step begins.
    pub start: u64,
    /// Steps between refreshes of the Gram teacher from the EMA teacher (0: never).
    pub refresh_every: u64,
    /// Steps over which the weight rises from 0 to `weight` along a half cosine, the first at
    /// `start` (0 or 1: the whole weight from `start`). DINOv3's Gram-anchoring recipe: 1,000.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ramp: u64,
    /// The DINO loss's weight on the local crops once the ramp is done, reached from 1 along the
    /// same half cosine as the Gram weight rises (DINOv3's Gram-anchoring recipe: 0.5; its
    /// `reweight_dino_local_loss`). 1 leaves the DINO loss as without Gram anchoring.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub local_weight: f32,
    /// How many refreshes after the first take the Gram teacher again (None: no limit; DINOv3's
    /// `max_updates`: 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_refreshes: Option<u64>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

pub(super) fn one() -> f32 {
    1.0
}

fn is_one(v: &f32) -> bool {
    *v == 1.0
}

impl GramConfig {
    /// The loss's weight at `step`: 0 before `start`, then the ramp, then `weight` (as DINOv3's
    /// `loss_weight_schedule`: `np.linspace(0, π, ramp)` through a raised cosine).
    pub fn weight_at(&self, step: u64) -> f32 {
        match self.ramp_cosine(step) {
            None => 0.0,
            Some(None) => self.weight,
            Some(Some(c)) => (f64::from(self.weight) * (1.0 - c) / 2.0) as f32,
        }
    }

    /// The DINO loss's weight on the local crops at `step`: 1 before `start`, then from 1 to
    /// `local_weight` over the ramp (as DINOv3's `local_loss_weight_schedule`,
    /// `linear_warmup_cosine_decay` from peak 1 to end `local_weight`).
    pub fn local_weight_at(&self, step: u64) -> f32 {
        let end = f64::from(self.local_weight);
        match self.ramp_cosine(step) {
            None => 1.0,
            Some(None) => self.local_weight,
            Some(Some(c)) => ((1.0 - end) * (c + 1.0) / 2.0 + end) as f32,
        }
    }

    /// Where `step` lies on the ramp: None before `start`, Some(None) past it, else the cosine
    /// of its phase (1 at `start`, −1 at its last step).
    fn ramp_cosine(&self, step: u64) -> Option<Option<f64>> {
        if step < self.start {
            return None;
        }
        let i = step - self.start;
        if self.ramp <= 1 || i + 1 >= self.ramp {
            return Some(None);
        }
        let phase = std::f64::consts::PI * i as f64 / (self.ramp - 1) as f64;
        Some(Some(phase.cos()))
    }

    /// The first step whose weight is above 0 (never, for a weight of 0): the first that runs
    /// the Gram teacher.
    pub fn first_weighted_step(&self) -> u64 {
        if self.weight <= 0.0 {
            u64::MAX
        } else if self.ramp > 1 {
            self.start.saturating_add(1)
        } else {
            self.start
        }
    }

    /// Whether the Gram teacher is taken from the EMA teacher as `step` begins.
    pub fn refresh_at(&self, step: u64) -> bool {
        if step == self.start {
            return true;
        }
        if self.refresh_every == 0 || step < self.start {
            return false;
        }
        let since = step - self.start;
        since.is_multiple_of(self.refresh_every)
            && self
                .max_refreshes
                .is_none_or(|n| since / self.refresh_every <= n)
    }
}
