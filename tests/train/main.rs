//! Training: schedules and parameter groups here; exact resume (in process and after SIGKILL),
//! run folders and checkpoints, learning on Fashion-MNIST, DINOv3 backbones and mixed precision
//! in the modules below.

#[path = "../common/mod.rs"]
mod common;
mod dinov3;
mod learning;
mod mixed;
mod resume;
mod runs;

use dinoscope::train::config::{cosine, TrainConfig};
use dinoscope::train::run::{load_checkpoint, run, RunOptions};
use std::path::{Path, PathBuf};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dinoscope-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A very small run for exactness tests: a 1-block ViT on 16-px crops.
fn micro() -> TrainConfig {
    let mut c = TrainConfig::preset("debug").expect("preset");
    c.model.depth = 1;
    c.model.patch = 4;
    c.model.pos_grid = 4;
    c.augment.global_size = 16;
    c.augment.local_size = 8;
    c.augment.n_local = 1;
    c.head.hidden = 64;
    c.head.bottleneck = 16;
    c.head.prototypes = 32;
    c.batch_size = 4;
    c.steps = 6;
    c.warmup_steps = 2;
    c.freeze_last_layer_steps = 2;
    c.teacher_temp = (0.04, 0.07, 3);
    c.checkpoint_every = 3;
    c.eval_every = 0;
    c.knn_train = 40;
    c.knn_test = 20;
    c.workers = 0;
    // Drop path draws per step: resuming must draw the same.
    c.drop_path = 0.3;
    c
}

#[test]
fn schedules_follow_dinov2() {
    // Warmup is linear and inclusive at both ends, then cosine to the end value.
    assert_eq!(cosine(0, 1.0, 0.0, 100, 11, 0.0), 0.0);
    assert!((cosine(10, 1.0, 0.0, 100, 11, 0.0) - 1.0).abs() < 1e-12);
    assert!((cosine(11, 1.0, 0.0, 100, 11, 0.0) - 1.0).abs() < 1e-12);
    assert!(cosine(100, 1.0, 0.1, 100, 11, 0.0) == 0.1);
    let c = TrainConfig::preset("vits14").expect("preset");
    let s0 = c.at(0);
    assert_eq!(s0.lr, 0.0);
    assert!((c.at(c.warmup_steps - 1).lr - 4e-3 * (64.0f32 / 1024.0).sqrt()).abs() < 1e-7);
    assert!(
        (s0.weight_decay - 0.04).abs() < 1e-7 && (c.at(c.steps).weight_decay - 0.4).abs() < 1e-7
    );
    assert!((s0.momentum - 0.992).abs() < 1e-7 && c.at(c.steps).momentum == 1.0);
    assert!(
        (s0.teacher_temp - 0.04).abs() < 1e-7 && (c.at(37_500).teacher_temp - 0.07).abs() < 1e-7
    );
    assert!(s0.freeze_last_layer && !c.at(1250).freeze_last_layer);
}

#[test]
fn parameter_groups_follow_dinov2() {
    use dinoscope::model::params::ParamLayout;
    use dinoscope::train::head::head_tensors;
    let c = TrainConfig::preset("vits14").expect("preset");
    let bl = dinoscope::model::vit::param_layout(&c.model);
    let hl = ParamLayout::new(&head_tensors(c.model.dim, &c.head, "dino_head."));
    let segs = dinoscope::train::trainer::param_segments(&c, &bl, &hl, true);
    let seg = |name: &str| {
        let e = bl
            .get(name)
            .map(|e| e.offset)
            .or_else(|| hl.get(name).map(|e| e.offset + bl.total))
            .expect(name);
        *segs.iter().find(|s| s.start == e).expect("segment")
    };
    let d = 0.9f32;
    assert!(
        (seg("pos_embed").lr_scale - d.powi(13)).abs() < 1e-7 && seg("pos_embed").wd_scale == 1.0
    );
    assert!((seg("patch_embed.proj.weight").lr_scale - 0.2 * d.powi(13)).abs() < 1e-7);
    assert!((seg("blocks.0.attn.qkv.weight").lr_scale - d.powi(12)).abs() < 1e-7);
    assert!((seg("blocks.11.mlp.fc1.weight").lr_scale - d).abs() < 1e-7);
    assert_eq!(seg("blocks.3.attn.qkv.bias").wd_scale, 0.0);
    assert_eq!(seg("blocks.3.norm1.weight").wd_scale, 0.0);
    assert_eq!(seg("blocks.3.ls1.gamma").wd_scale, 0.0);
    assert_eq!(seg("norm.weight").lr_scale, 1.0);
    assert_eq!(seg("dino_head.last_layer.weight_v").lr_scale, 0.0);
    assert_eq!(seg("dino_head.last_layer.weight_g").wd_scale, 1.0);
    assert_eq!(seg("dino_head.mlp.0.bias").wd_scale, 0.0);
}

fn state_of(dir: &Path) -> dinoscope::train::trainer::TrainState {
    load_checkpoint(dir).expect("checkpoint").1
}

/// Trains `cfg` into a fresh folder named `tag`: its steps' metrics and its final state (the
/// folder is removed).
fn steps_and_state(
    gpu: &dinoscope::gpu::Gpu,
    cfg: TrainConfig,
    tag: &str,
) -> (
    Vec<dinoscope::train::trainer::StepMetrics>,
    dinoscope::train::trainer::TrainState,
) {
    let dir = tmp(tag);
    let opts = RunOptions {
        out_dir: dir.clone(),
        ..Default::default()
    };
    let mut steps = Vec::new();
    run(gpu, cfg, &opts, |m, _| steps.push(m.clone())).expect("trains");
    let state = state_of(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    (steps, state)
}

/// The final state of `cfg` trained for 3 steps, then resumed to its end in a second run (the
/// folder is removed).
fn resumed_after_3(
    gpu: &dinoscope::gpu::Gpu,
    cfg: TrainConfig,
    tag: &str,
) -> dinoscope::train::trainer::TrainState {
    let dir = tmp(tag);
    let first = RunOptions {
        out_dir: dir.clone(),
        stop_after: Some(3),
        ..Default::default()
    };
    run(gpu, cfg.clone(), &first, |_, _| {}).expect("first half");
    let second = RunOptions {
        out_dir: dir.clone(),
        resume: true,
        ..Default::default()
    };
    run(gpu, cfg, &second, |_, _| {}).expect("second half");
    let state = state_of(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    state
}
