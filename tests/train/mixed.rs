//! Mixed precision against the f32 run.

use super::*;

/// The largest |a − b| / |a| over two loss curves, step by step.
fn worst_relative_difference(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs() / a.abs())
        .fold(0.0f32, f32::max)
}

/// Mixed precision (f16 forward passes on f16 copies of the weights, f16 backward products with
/// a loss scale, f32 update) follows the f32 run step for step on the same data, with
/// checkpointed and kept blocks; overflowed steps are skipped and halve the scale; and the
/// planner finds it needs less memory for the same step.
#[test]
fn mixed_precision_follows_the_f32_run_and_needs_less_memory() {
    let Some(gpu) = common::gpu() else { return };
    if !common::f16(gpu, "mixed_precision_follows_the_f32_run") {
        return;
    }
    use dinoscope::train::config::{Checkpoint, Precision};
    let mut cfg = micro();
    cfg.model.depth = 2;
    cfg.checkpoint = Checkpoint::Blocks(1);
    cfg.steps = 24;
    cfg.checkpoint_every = 24;
    let mut curves = Vec::new();
    let mut traces = Vec::new();
    // The f16 comparison starts from a loss scale this model's gradients never overflow at;
    // the default one (65,536) is tried after.
    for (precision, scale) in [
        (Precision::F32, None),
        (Precision::Mixed, Some(4096.0)),
        (Precision::Mixed, None),
    ] {
        let mut c = cfg.clone();
        c.precision = precision;
        c.loss_scale = scale;
        let (steps, _) = steps_and_state(gpu, c, &format!("mixed-{precision:?}-{scale:?}"));
        for m in &steps {
            assert!(
                m.non_finite().is_none(),
                "{precision:?} step {}: {m:?}",
                m.step
            );
        }
        curves.push(steps.iter().map(|m| m.loss).collect::<Vec<f32>>());
        traces.push(
            steps
                .iter()
                .map(|m| (m.loss_scale, m.skipped))
                .collect::<Vec<_>>(),
        );
    }
    // f32 steps report no scale; the f16 comparison run never skips.
    assert!(traces[0].iter().all(|&(s, skip)| s.is_none() && !skip));
    assert!(
        traces[1]
            .iter()
            .all(|&(s, skip)| s == Some(4096.0) && !skip),
        "{:?}",
        traces[1]
    );
    // From 65,536 this model's first gradients overflow f16: such a step is skipped and halves
    // the scale; a finite one keeps it (the growth interval is 2,000 steps).
    let default = &traces[2];
    eprintln!("default loss scale: {default:?}");
    assert_eq!(default[0], (Some(65536.0), true), "65,536 did not overflow");
    assert!(default.iter().any(|&(_, skip)| !skip), "every step skipped");
    for w in default.windows(2) {
        let ((Some(a), skip), (Some(b), _)) = (w[0], w[1]) else {
            panic!("a mixed step without a loss scale: {default:?}");
        };
        assert_eq!(b, if skip { a / 2.0 } else { a }, "{default:?}");
    }
    let (full, mixed) = (&curves[0], &curves[1]);
    let worst = worst_relative_difference(full, mixed);
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    eprintln!(
        "loss f32 {:.4} → {:.4}, mixed {:.4} → {:.4}; worst step difference {:.2}%",
        full[0],
        mean(&full[14..]),
        mixed[0],
        mean(&mixed[14..]),
        100.0 * worst
    );
    assert!(
        mixed != full,
        "the mixed run gave the f32 losses bit for bit"
    );
    assert!((full[0] - mixed[0]).abs() <= 1e-3 * full[0].abs());
    assert!(
        worst < 0.02,
        "mixed precision drifted {:.2}% from f32",
        100.0 * worst
    );
    // With attention on cooperative matrices (where the adapter has them: CI's Mesa 26.1
    // root): the forward, then the backward too, each run on a device of its own so that its
    // choices reach no other test. Each must change the losses, so each kernel ran.
    assert!(
        gpu.coop_attention() || std::env::var("DINOSCOPE_EXPECT_COOP").is_err(),
        "DINOSCOPE_EXPECT_COOP is set, but {} runs no attention on cooperative matrices",
        gpu.info.name
    );
    if gpu.coop_attention() {
        use dinoscope::kernels::attention_plan::{F16_BACKWARD, F16_FORWARD};
        let mut before = mixed.clone();
        for passes in [&[F16_FORWARD][..], &[F16_FORWARD, F16_BACKWARD]] {
            let choice = dinoscope::gpu::AdapterChoice::from_env();
            let mut own = dinoscope::gpu::Gpu::new_blocking(&choice).expect("adapter");
            dinoscope::kernels::matmul::probe_coop(&mut own).expect("cooperative matrices");
            for pass in passes {
                own.set_choice(pass, "coop");
            }
            let mut c = cfg.clone();
            c.precision = Precision::Mixed;
            c.loss_scale = Some(4096.0);
            let (steps, _) = steps_and_state(&own, c, &format!("mixed-coop-{}", passes.len()));
            assert!(steps.iter().all(|m| m.non_finite().is_none() && !m.skipped));
            let coop: Vec<f32> = steps.iter().map(|m| m.loss).collect();
            let worst_coop = worst_relative_difference(full, &coop);
            eprintln!(
                "{passes:?} on cooperative matrices: worst step difference {:.2}%",
                100.0 * worst_coop
            );
            assert!(
                coop != before,
                "{passes:?}: the last coop kernel did not run"
            );
            assert!(
                worst_coop < 0.02,
                "mixed precision with {passes:?} on cooperative matrices drifted {:.2}% from f32",
                100.0 * worst_coop
            );
            before = coop;
        }
    }

    // A DINOv3 backbone (rotary positions, storage tokens, no key bias) follows its f32 run the
    // same way.
    let v3 = TrainConfig::preset("debug_v3").expect("preset").model;
    let mut c3 = micro();
    c3.model = dinoscope::model::config::VitConfig {
        depth: 2,
        patch: 4,
        ..v3
    };
    c3.steps = 12;
    c3.checkpoint_every = 12;
    c3.loss_scale = Some(4096.0);
    // Without iBOT: under rotary positions a masked patch enters the first layer norm as the
    // zero mask token (as in DINOv3), whose backward multiplies its gradient by 1/√eps, so at
    // 4,096 the first steps would overflow and be skipped; the comparison wants none skipped.
    c3.ibot_weight = 0.0;
    let mut v3_curves = Vec::new();
    for precision in [Precision::F32, Precision::Mixed] {
        let mut c = c3.clone();
        c.precision = precision;
        let (steps, _) = steps_and_state(gpu, c, &format!("mixed-v3-{precision:?}"));
        for m in &steps {
            assert!(
                m.non_finite().is_none() && !m.skipped,
                "{precision:?}: {m:?}"
            );
        }
        v3_curves.push(steps.iter().map(|m| m.loss).collect::<Vec<f32>>());
    }
    let worst_v3 = worst_relative_difference(&v3_curves[0], &v3_curves[1]);
    eprintln!(
        "DINOv3 backbone: worst step difference {:.2}%",
        100.0 * worst_v3
    );
    assert!(v3_curves[0] != v3_curves[1]);
    assert!(
        worst_v3 < 0.02,
        "DINOv3 mixed drifted {:.2}%",
        100.0 * worst_v3
    );

    // The `debug` preset's step (batch 32, 2×28 + no locals): activations are stored in f16.
    let debug = TrainConfig::preset("debug").expect("preset");
    let mut half = debug.clone();
    half.precision = Precision::Mixed;
    let p32 = dinoscope::train::plan::plan(gpu, &debug, 1).expect("plan");
    let p16 = dinoscope::train::plan::plan(gpu, &half, 1).expect("plan");
    eprintln!(
        "debug peak: f32 {} B, mixed {} B (state {} / {} B)",
        p32.peak_bytes, p16.peak_bytes, p32.state_bytes, p16.state_bytes
    );
    assert!(p16.peak_bytes < p32.peak_bytes);
}
