//! Memory: activation checkpointing gives the same gradients bit for bit, the planner's dry run
//! agrees with the measured peak of real steps, lifetimes keep the step near its live set, and
//! flat buffers larger than one storage binding are updated piecewise.

mod common;

use dinoscope::data::loader::{Batch, Loader};
use dinoscope::gpu::{AdapterChoice, Gpu};
use dinoscope::train::config::{Checkpoint, TrainConfig};
use dinoscope::train::plan::plan;
use dinoscope::train::trainer::Trainer;

/// A small config with two blocks, drop path and iBOT: every path through the block.
fn small() -> TrainConfig {
    let mut c = TrainConfig::preset("debug").expect("preset");
    c.model.depth = 2;
    c.model.patch = 4;
    c.model.pos_grid = 4;
    c.augment.global_size = 16;
    c.augment.local_size = 8;
    c.augment.n_local = 2;
    c.head.hidden = 64;
    c.head.bottleneck = 16;
    c.head.prototypes = 32;
    c.batch_size = 4;
    c.warmup_steps = 1;
    c.freeze_last_layer_steps = 0;
    c.drop_path = 0.3;
    c.workers = 0;
    c
}

fn batches(cfg: &TrainConfig, n: usize) -> Vec<Batch> {
    let (ds, _) = dinoscope::train::run::datasets(None).expect("bundled data");
    let mut loader = Loader::new(ds, cfg.loader_config(), 0);
    (0..n)
        .map(|_| loader.next_batch().expect("batch"))
        .collect()
}

fn bits(gpu: &Gpu, t: &dinoscope::gpu::Tensor) -> Vec<u32> {
    gpu.read_u32(t).expect("read")
}

#[test]
fn checkpointed_blocks_give_bit_identical_gradients_and_weights() {
    let Some(gpu) = common::gpu() else { return };
    let base = small();
    let data = batches(&base, 2);
    let run = |ck: Checkpoint| {
        let mut c = base.clone();
        c.checkpoint = ck;
        let mut t = Trainer::new(gpu, c).expect("trainer");
        let mut losses = Vec::new();
        for b in &data {
            losses.push(t.train_step(b).expect("step").loss.to_bits());
        }
        (
            losses,
            bits(gpu, &t.grads),
            bits(gpu, &t.student),
            bits(gpu, &t.teacher),
        )
    };
    let plain = run(Checkpoint::Off);
    assert!(plain.1.iter().any(|&g| g != 0), "gradients are all zero");
    for ck in [Checkpoint::Blocks(1), Checkpoint::All] {
        let other = run(ck);
        assert_eq!(plain.0, other.0, "{ck:?}: losses differ");
        assert!(plain.1 == other.1, "{ck:?}: gradients differ");
        assert!(plain.2 == other.2, "{ck:?}: student weights differ");
        assert!(plain.3 == other.3, "{ck:?}: teacher weights differ");
    }
}

/// Measured pooled peak of `steps` real steps on a fresh device (its own pool).
fn measured_peak(cfg: &TrainConfig, steps: usize) -> u64 {
    let gpu = Gpu::new_blocking(&AdapterChoice::from_env()).expect("adapter");
    let data = batches(cfg, steps);
    let mut t = Trainer::new(&gpu, cfg.clone()).expect("trainer");
    for b in &data {
        t.train_step(b).expect("step");
    }
    gpu.pool_stats().peak_bytes
}

fn check_plan(cfg: &TrainConfig, steps: usize) {
    let Some(gpu) = common::gpu() else { return };
    let p = plan(gpu, cfg, steps as u64).expect("plan");
    assert!(p.limit_error.is_none(), "{:?}", p.limit_error);
    let real = measured_peak(cfg, steps);
    let ratio = p.peak_bytes as f64 / real as f64;
    println!(
        "batch {} checkpoint {:?}: planned {} B, measured {} B (ratio {ratio:.4}); worst case {} B",
        cfg.batch_size, cfg.checkpoint, p.peak_bytes, real, p.worst_bytes
    );
    // The dry run allocates what the step allocates, in the same order, from the same pool.
    assert_eq!(p.peak_bytes, real, "planned vs measured peak");
    assert!(p.worst_bytes >= p.peak_bytes);
    assert!(p.state_bytes > 0 && p.state_bytes < p.peak_bytes);
}

#[test]
fn plan_matches_the_measured_peak_debug() {
    for (batch, ck) in [
        (2, Checkpoint::Off),
        (3, Checkpoint::Off),
        (2, Checkpoint::All),
    ] {
        let mut c = TrainConfig::preset("debug").expect("preset");
        c.batch_size = batch;
        c.checkpoint = ck;
        c.workers = 0;
        check_plan(&c, 3);
    }
}

/// Mixed precision: the planner counts f16 tensors by their bytes, as the device does.
#[test]
fn plan_matches_the_measured_peak_mixed_precision() {
    let Some(gpu) = common::gpu() else { return };
    if !common::f16(gpu, "plan mixed precision") {
        return;
    }
    for ck in [Checkpoint::Off, Checkpoint::Blocks(2)] {
        let mut c = TrainConfig::preset("debug").expect("preset");
        c.batch_size = 3;
        c.checkpoint = ck;
        c.precision = dinoscope::train::config::Precision::Mixed;
        c.workers = 0;
        check_plan(&c, 3);
    }
}

#[test]
fn plan_matches_the_measured_peak_tiny() {
    let mut c = TrainConfig::preset("tiny").expect("preset");
    c.batch_size = 2;
    c.workers = 0;
    check_plan(&c, 2);
}

#[test]
fn plan_matches_the_measured_peak_vits14() {
    // One real step of the ViT-S/14 recipe at batch 2 (the KoLeo loss needs two images): its
    // flat parameter buffers are larger than lavapipe's 128 MiB storage binding, so this also
    // runs the piecewise AdamW, EMA and clipping.
    let mut c = TrainConfig::preset("vits14").expect("preset");
    c.batch_size = 2;
    c.workers = 0;
    check_plan(&c, 1);
}

#[test]
fn checkpointing_and_lifetimes_shrink_the_planned_peak() {
    let Some(gpu) = common::gpu() else { return };
    let mut c = TrainConfig::preset("tiny").expect("preset");
    c.batch_size = 8;
    let plain = plan(gpu, &c, 1).expect("plan");
    c.checkpoint = Checkpoint::All;
    let ck = plan(gpu, &c, 1).expect("plan");
    println!(
        "tiny at batch 8: {} B plain, {} B checkpointed, state {} B",
        plain.peak_bytes, ck.peak_bytes, plain.state_bytes
    );
    assert!(ck.peak_bytes < plain.peak_bytes);
    // Activations, not state, are what checkpointing removes: the saving is most of the
    // difference between the plain peak and the state.
    assert!(
        (plain.peak_bytes - ck.peak_bytes) * 2 > plain.peak_bytes - plain.state_bytes,
        "checkpointing saved too little"
    );
}

#[test]
fn piecewise_updates_match_one_dispatch() {
    // AdamW, EMA and clipping over a flat buffer split into binding-sized pieces must give
    // exactly the single-dispatch result. Two fresh devices: one with small pieces.
    use dinoscope::gpu::Recorder;
    use dinoscope::kernels::adamw::{adamw_step, AdamWStep, Segment, Segments};
    if common::gpu().is_none() {
        return;
    }
    let n = 3 * (1 << 17) + 1000;
    let run = |piece: Option<usize>| {
        let gpu = Gpu::new_blocking(&AdapterChoice::from_env()).expect("adapter");
        if let Some(p) = piece {
            gpu.limit_binding_chunk(p);
        }
        let chunks = gpu.binding_chunks(n);
        let val = |k: usize| -> Vec<f32> {
            (0..n)
                .map(|i| (((i * 7919 + k * 104729) % 2003) as f32 - 1001.0) * 1e-3)
                .collect()
        };
        let param = gpu.upload(&val(1), &[n]);
        let grad = gpu.upload(&val(2), &[n]);
        let m = gpu.upload(&val(3), &[n]);
        let v = gpu.upload(&val(4).iter().map(|x| x.abs()).collect::<Vec<_>>(), &[n]);
        let teacher = gpu.upload(&val(5), &[n]);
        // Segments straddle the piece boundaries.
        let segs = Segments::new(
            &gpu,
            &[
                Segment {
                    start: 0,
                    end: 200_000,
                    lr_scale: 0.5,
                    wd_scale: 1.0,
                },
                Segment {
                    start: 200_000,
                    end: n - 10,
                    lr_scale: 1.0,
                    wd_scale: 0.0,
                },
            ],
        );
        let mut rec = Recorder::new(&gpu);
        dinoscope::kernels::reduce::clip_grad_norm(&mut rec, &grad, 0.5);
        let h = AdamWStep {
            lr: 1e-2,
            weight_decay: 0.04,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            t: 3,
        };
        adamw_step(&mut rec, &param, &m, &v, &grad, &segs, h);
        dinoscope::kernels::ema::ema_update(&mut rec, &teacher, &param, 0.99);
        rec.finish().expect("submit");
        let read = |t| gpu.read_u32(t).expect("read");
        (
            chunks.len(),
            [
                read(&param),
                read(&grad),
                read(&m),
                read(&v),
                read(&teacher),
            ],
        )
    };
    let (one, whole) = run(None);
    let (pieces, split) = run(Some(1 << 17));
    assert_eq!(one, 1, "the default piece holds the whole buffer here");
    assert_eq!(pieces, 4);
    for (i, (a, b)) in whole.iter().zip(&split).enumerate() {
        assert!(a == b, "buffer {i} differs between one dispatch and pieces");
    }
}
