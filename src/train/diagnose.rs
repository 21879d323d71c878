//! Collapse diagnosis: which of DINO's failures a run shows, and the config change that
//! addresses it. The CLI logs it, the app shows it and offers to apply the change to the next
//! run.

use super::config::{HeadInit, Targets, TrainConfig};
use super::trainer::StepMetrics;
use serde::{Deserialize, Serialize};

/// The ways a DINO run fails to learn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Collapse {
    /// The teacher's targets are near uniform and the DINO loss sits at ln K: the targets carry
    /// no information (tiny head outputs or LayerScale at init, a teacher temperature too high).
    Uniform,
    /// The teacher puts the whole batch on a few prototypes: every image gets the same target.
    OnePrototype,
    /// The student's CLS features barely vary over the batch.
    Features,
}

/// A change to the training config that the diagnosis can recommend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Remedy {
    /// Sinkhorn-Knopp targets at teacher temperature 0.02, a variance-preserving head and
    /// LayerScale starting at 1: the targets differ between images from the first step.
    InformativeTargets,
    /// Sinkhorn-Knopp targets (they spread the batch over the prototypes by construction) and,
    /// where they are already on, half the learning rate and a slower teacher.
    SpreadTargets,
    /// Half the learning rate and twice the KoLeo weight.
    Gentler,
}

impl Remedy {
    /// What the remedy changes, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Remedy::InformativeTargets => {
                "Sinkhorn-Knopp targets at teacher temperature 0.02, a variance-preserving head \
                 init (FanIn) and LayerScale starting at 1"
            }
            Remedy::SpreadTargets => {
                "Sinkhorn-Knopp targets (with them already on: half the learning rate and \
                 teacher momentum from 0.996)"
            }
            Remedy::Gentler => "half the learning rate and twice the KoLeo weight",
        }
    }

    /// Applies the remedy to a config.
    pub fn apply(self, cfg: &mut TrainConfig) {
        match self {
            Remedy::InformativeTargets => {
                cfg.targets = Targets::SinkhornKnopp;
                cfg.teacher_temp = (0.02, 0.02, cfg.teacher_temp.2.min(1));
                cfg.init.head = HeadInit::FanIn;
                cfg.init.layerscale = cfg.init.layerscale.max(1.0);
            }
            Remedy::SpreadTargets => {
                if cfg.targets == Targets::SinkhornKnopp {
                    cfg.base_lr *= 0.5;
                    cfg.momentum.0 = cfg.momentum.0.max(0.996);
                } else {
                    cfg.targets = Targets::SinkhornKnopp;
                }
            }
            Remedy::Gentler => {
                cfg.base_lr *= 0.5;
                cfg.koleo_weight = (2.0 * cfg.koleo_weight).max(0.1);
            }
        }
    }
}

/// What the diagnosis found.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnosis {
    /// Which failure.
    pub collapse: Collapse,
    /// The evidence and the advice, in words.
    pub message: String,
    /// The config change that addresses it.
    pub remedy: Remedy,
}

/// Steps a run is given before it is judged: DINO starts near ln K, and the targets need the
/// warm-up to sharpen.
pub fn settle_steps(cfg: &TrainConfig) -> u64 {
    (2 * cfg.warmup_steps).max(cfg.steps / 2)
}

/// The collapse a step's metrics show in a run of `cfg`, once it has settled. The teacher's
/// entropy and KL to uniform are measured on logging steps only; on other steps only a loss
/// near 0 (one prototype) is judged.
pub fn diagnose(m: &StepMetrics, cfg: &TrainConfig) -> Option<Diagnosis> {
    let k = cfg.head.prototypes;
    let ln_k = (k as f32).ln();
    if m.step < settle_steps(cfg) {
        return None;
    }
    // Prototypes the batch's mean target uses, exp(H(mean)) = K·exp(−KL): a healthy batch uses
    // about as many as it has rows (or all K); a collapsed one, one or two.
    let rows = (2 * cfg.batch_size).min(k).max(1) as f32;
    let used = m.teacher_kl_uniform.map(|kl| k as f32 * (-kl).exp());
    if used.is_some_and(|u| u < 0.5 * rows) || m.dino < 0.05 {
        let remedy = Remedy::SpreadTargets;
        return Some(Diagnosis {
            collapse: Collapse::OnePrototype,
            message: format!(
                "collapse to one prototype: the teacher puts the whole batch of {rows} crops on \
                 {:.1} prototypes of {k} (KL of its mean target to uniform {:.2} of ln K = \
                 {ln_k:.2}, DINO loss {:.3}). Try {}.",
                used.unwrap_or(f32::NAN),
                m.teacher_kl_uniform.unwrap_or(f32::NAN),
                m.dino,
                remedy.describe()
            ),
            remedy,
        });
    }
    // Only measured entropy tells uniform targets apart: with Sinkhorn-Knopp targets a run that
    // learns keeps its loss near ln K for hundreds of steps.
    if m.teacher_entropy.is_some_and(|h| h > 0.95 * ln_k) {
        let remedy = Remedy::InformativeTargets;
        return Some(Diagnosis {
            collapse: Collapse::Uniform,
            message: format!(
                "uniform targets: the teacher's targets are near uniform (entropy {:.2} of \
                 ln K = {ln_k:.2}, DINO loss {:.3}), so they carry nothing to learn. Try {}.",
                m.teacher_entropy.unwrap_or(f32::NAN),
                m.dino,
                remedy.describe()
            ),
            remedy,
        });
    }
    if m.feature_std.is_some_and(|s| s < 1e-4) {
        let remedy = Remedy::Gentler;
        return Some(Diagnosis {
            collapse: Collapse::Features,
            message: format!(
                "collapsed features: the student's CLS features barely vary over the batch. \
                 Try {}.",
                remedy.describe()
            ),
            remedy,
        });
    }
    None
}

/// What to change after a step whose loss or gradients went non-finite: the settings far past
/// the DINOv2 recipe's, named with the recipe's values, where the config has any (these blow
/// up a run whatever its learning rate); otherwise the learning rate and the warm-up.
pub fn divergence_advice(cfg: &TrainConfig) -> String {
    // Values far past the recipe can be huge: 1e30 rather than thirty-one digits.
    let short = |v: f32| match v.abs() >= 1e6 {
        true => format!("{v:e}"),
        false => v.to_string(),
    };
    let (wd0, wd1) = (short(cfg.weight_decay.0), short(cfg.weight_decay.1));
    let far: Vec<String> = [
        (
            cfg.weight_decay.0.max(cfg.weight_decay.1) > 1.0,
            format!("weight_decay ({wd0}, {wd1}); the recipe's is (0.04, 0.2)"),
        ),
        (
            cfg.koleo_weight > 1.0,
            format!(
                "koleo_weight {}; the recipe's is 0.1",
                short(cfg.koleo_weight)
            ),
        ),
        (
            cfg.dino_weight > 10.0,
            format!("dino_weight {}; the recipe's is 1", short(cfg.dino_weight)),
        ),
        (
            cfg.ibot_weight > 10.0,
            format!("ibot_weight {}; the recipe's is 1", short(cfg.ibot_weight)),
        ),
        (
            cfg.clip_grad > 100.0,
            format!("clip_grad {}; the recipe's is 3", short(cfg.clip_grad)),
        ),
        (
            cfg.layer_decay > 1.0,
            format!(
                "layer_decay {} (above 1 the first blocks learn fastest); the recipe's is 0.9 \
                 or 1",
                short(cfg.layer_decay)
            ),
        ),
        (
            cfg.patch_embed_lr_mult > 1.0,
            format!(
                "patch_embed_lr_mult {}; the recipe's is 0.2",
                short(cfg.patch_embed_lr_mult)
            ),
        ),
    ]
    .into_iter()
    .filter_map(|(far, what)| far.then_some(what))
    .collect();
    if far.is_empty() {
        "lower the learning rate or raise the warm-up".to_string()
    } else {
        format!(
            "settings far past the DINOv2 recipe: {}; bring them back, then lower the \
             learning rate if it still diverges",
            far.join("; ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divergence_advice_names_settings_far_past_the_recipe() {
        let base = TrainConfig::preset("debug").expect("preset");
        assert_eq!(
            divergence_advice(&base),
            "lower the learning rate or raise the warm-up"
        );
        let mut cfg = base.clone();
        cfg.weight_decay = (0.04, 1000.0);
        cfg.koleo_weight = 50.0;
        let advice = divergence_advice(&cfg);
        assert!(
            advice.contains("weight_decay (0.04, 1000)")
                && !divergence_advice(&TrainConfig {
                    weight_decay: (1e30, 1e30),
                    ..base.clone()
                })
                .contains("000000")
                && advice.contains("koleo_weight 50; the recipe's is 0.1")
                && !advice.contains("clip_grad"),
            "{advice}"
        );
    }
}
