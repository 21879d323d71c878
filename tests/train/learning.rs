//! Learning: the CI learning test, a separate iBOT head, collapse diagnosis and the linear probe.

use super::*;

/// The CI learning test: the `debug` preset, as shipped and run whole, leaves ln K (the DINO
/// loss of the last tenth of its steps below 0.95·ln K) and gains at least ten k-NN points over
/// its own random init on the bundled Fashion-MNIST (BENCHMARKS.md's learning curve).
#[test]
fn debug_preset_leaves_ln_k_and_gains_ten_knn_points() {
    let Some(gpu) = common::gpu() else { return };
    use dinoscope::train::run::datasets;
    let mut cfg = TrainConfig::preset("debug").expect("preset");
    let steps = cfg.steps;
    // Only the baseline and the evaluation at the end.
    cfg.eval_every = steps;
    cfg.checkpoint_every = 0;
    let (_, eval) = datasets(None).expect("bundled data");
    let (tr, te) = eval.expect("labelled sets");
    assert!(tr.len() >= 2000 && te.len() >= 1000);
    let out = tmp("learn");
    let t0 = std::time::Instant::now();
    let mut dino = Vec::new();
    let summary = run(
        gpu,
        cfg.clone(),
        &RunOptions {
            out_dir: out.clone(),
            ..Default::default()
        },
        |m, _| dino.push(m.dino),
    )
    .expect("train");
    // The random-init baseline is measured before the first step and logged as such.
    let (at, before) = summary.evals[0];
    assert_eq!(at, 0);
    let first = std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics");
    let first: serde_json::Value =
        serde_json::from_str(first.lines().next().expect("a line")).expect("json");
    assert_eq!(first["steps_done"], 0);
    assert_eq!(first["knn"].as_f64().map(|v| v as f32), Some(before.knn));
    assert_eq!(
        first["probe"].as_f64().map(|v| v as f32),
        Some(before.probe)
    );
    let (end, after) = *summary.evals.last().expect("evaluation at the end");
    assert_eq!((end, dino.len() as u64), (steps, steps));
    let ln_k = (cfg.head.prototypes as f32).ln();
    let tail = &dino[dino.len() - (dino.len() / 10).max(1)..];
    let late = tail.iter().sum::<f32>() / tail.len() as f32;
    eprintln!(
        "debug preset, {steps} steps of {} images ({:.0} s): DINO loss {:.3} ln K over the last tenth; \
         k-NN (k=20, T=0.07, {} train → {} test) {:.1}% at init → {:.1}%; linear probe {:.1}% → {:.1}%",
        cfg.batch_size,
        t0.elapsed().as_secs_f64(),
        late / ln_k,
        cfg.knn_train,
        cfg.knn_test,
        before.knn * 100.0,
        after.knn * 100.0,
        before.probe * 100.0,
        after.probe * 100.0
    );
    assert!(
        late < 0.95 * ln_k,
        "the DINO loss {late} did not leave ln K = {ln_k} (0.95 ln K = {})",
        0.95 * ln_k
    );
    assert!(
        after.knn >= before.knn + 0.10,
        "k-NN {} is not 10 points above {} at init",
        after.knn,
        before.knn
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn separate_ibot_head_and_sinkhorn_targets_train() {
    let Some(gpu) = common::gpu() else { return };
    use dinoscope::train::head::HeadConfig;
    let mut cfg = micro();
    cfg.ibot_head = Some(HeadConfig {
        hidden: 64,
        bottleneck: 16,
        prototypes: 24,
    });
    cfg.targets = dinoscope::train::config::Targets::SinkhornKnopp;
    cfg.steps = 2;
    let out = tmp("ibot-head");
    let mut seen = Vec::new();
    run(
        gpu,
        cfg.clone(),
        &RunOptions {
            out_dir: out.clone(),
            ..Default::default()
        },
        |m, _| seen.push(m.clone()),
    )
    .expect("run");
    assert_eq!(seen.len(), 2);
    for m in &seen {
        assert!(m.dino.is_finite() && m.ibot.is_finite() && m.koleo.is_finite());
        assert!(m.masked > 0 && m.ibot > 0.0, "iBOT loss on masked patches");
    }
    let (_, st) = load_checkpoint(&out).expect("checkpoint");
    assert_eq!(st.center_ibot.len(), 24);
    let _ = std::fs::remove_dir_all(&out);
}

/// The first collapse the diagnosis finds in a run of `cfg`, and the run's last metrics.
fn first_collapse(
    gpu: &dinoscope::gpu::Gpu,
    cfg: &TrainConfig,
    name: &str,
) -> (
    Option<dinoscope::train::diagnose::Diagnosis>,
    dinoscope::train::trainer::StepMetrics,
) {
    use dinoscope::train::diagnose::diagnose;
    let out = tmp(name);
    let mut found = None;
    let mut last = None;
    run(
        gpu,
        cfg.clone(),
        &RunOptions {
            out_dir: out.clone(),
            ..Default::default()
        },
        |m, _| {
            if found.is_none() {
                found = diagnose(m, cfg);
            }
            last = Some(m.clone());
        },
    )
    .expect("run");
    let _ = std::fs::remove_dir_all(&out);
    (found, last.expect("steps"))
}

/// Runs that collapse each way are told apart, and each remedy, applied, changes what it says.
#[test]
fn collapses_are_told_apart_and_their_remedies_apply() {
    let Some(gpu) = common::gpu() else { return };
    use dinoscope::train::config::{HeadInit, InitConfig, Targets};
    use dinoscope::train::diagnose::{Collapse, Remedy};
    // A step without the logged diagnostics is not judged uniform by its loss alone: with
    // Sinkhorn-Knopp targets a run that learns keeps its loss near ln K for a long time.
    let near = dinoscope::train::trainer::StepMetrics {
        step: 1000,
        dino: 0.98 * (256f32).ln(),
        ..Default::default()
    };
    let mut judged = TrainConfig::preset("debug").expect("preset");
    judged.head.prototypes = 256;
    assert_eq!(dinoscope::train::diagnose::diagnose(&near, &judged), None);
    let mut base = micro();
    base.steps = 24;
    base.warmup_steps = 4;
    base.log_every = 1;
    base.drop_path = 0.0;
    base.checkpoint_every = 0;
    // DINOv2's recipe (LayerScale from 1e-5, its head init, centering): every image's target is
    // the same flat one.
    let mut flat = base.clone();
    flat.model.layerscale = true;
    flat.init = InitConfig::default();
    flat.targets = Targets::Centering;
    flat.teacher_temp = (0.04, 0.07, 10);
    let (d, m) = first_collapse(gpu, &flat, "flat");
    let d = d.unwrap_or_else(|| panic!("no collapse found; last step {m:?}"));
    assert_eq!(d.collapse, Collapse::Uniform, "{}", d.message);
    assert_eq!(d.remedy, Remedy::InformativeTargets);
    assert!(d.message.contains("Sinkhorn-Knopp"), "{}", d.message);
    let mut fixed = flat.clone();
    d.remedy.apply(&mut fixed);
    assert_eq!(fixed.targets, Targets::SinkhornKnopp);
    assert_eq!(fixed.init.head, HeadInit::FanIn);
    assert!(fixed.init.layerscale >= 0.1 && fixed.teacher_temp.0 == 0.02);
    let (d2, m2) = first_collapse(gpu, &fixed, "flat-fixed");
    assert!(
        d2.as_ref().is_none_or(|d| d.collapse != Collapse::Uniform),
        "the remedy left the targets uniform: {d2:?} {m2:?}"
    );
    // A far too cold teacher with centering and a high learning rate: one prototype takes all.
    let mut one = base.clone();
    one.targets = Targets::Centering;
    one.teacher_temp = (0.002, 0.002, 1);
    one.base_lr = 0.5;
    let (d, m) = first_collapse(gpu, &one, "one");
    let d = d.unwrap_or_else(|| panic!("no collapse found; last step {m:?}"));
    assert_eq!(d.collapse, Collapse::OnePrototype, "{}", d.message);
    assert_eq!(d.remedy, Remedy::SpreadTargets);
    let mut fixed = one.clone();
    d.remedy.apply(&mut fixed);
    assert_eq!(fixed.targets, Targets::SinkhornKnopp);
    let (d2, m2) = first_collapse(gpu, &fixed, "one-fixed");
    assert!(
        d2.as_ref()
            .is_none_or(|d| d.collapse != Collapse::OnePrototype),
        "the remedy left one prototype: {d2:?} {m2:?}"
    );
}

/// The linear probe learns a linearly separable problem and cannot learn labels that are noise.
#[test]
fn the_linear_probe_separates_classes_and_not_noise() {
    let Some(gpu) = common::gpu() else { return };
    let (f, classes) = (24usize, 3u32);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f32 / (1u64 << 53) as f32
    };
    // Class c is shifted by 4 along axis c, on top of unit-scale noise in every channel (the
    // best linear rule errs on well under 1%).
    let mut sample = |n: usize| {
        let mut x = Vec::with_capacity(n * f);
        let mut y = Vec::with_capacity(n);
        for i in 0..n {
            let c = i as u32 % classes;
            for j in 0..f {
                let noise = (uniform() - 0.5) * 3.4;
                x.push(noise + if j == c as usize { 4.0 } else { 0.0 } + 5.0);
            }
            y.push(c);
        }
        (x, y)
    };
    let (tr, tr_y) = sample(600);
    let (te, te_y) = sample(300);
    let acc = dinoscope::train::probe::linear_probe(gpu, &tr, &tr_y, &te, &te_y, f).expect("probe");
    assert!(acc > 0.95, "separable classes: {acc}");
    // Labels unrelated to the features: the probe cannot beat chance by much on new samples.
    let shuffled: Vec<u32> = (0..600u32).map(|i| (i * 7 / 5) % classes).collect();
    let acc =
        dinoscope::train::probe::linear_probe(gpu, &tr, &shuffled, &te, &te_y, f).expect("probe");
    assert!(acc < 0.5, "noise labels: {acc}");
}
