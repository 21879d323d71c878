//! DINOv3 backbones and Gram anchoring.

use super::*;

/// A DINOv3 backbone (rotary positions, storage tokens, no key bias) trains with the DINOv2
/// losses and Sinkhorn-Knopp targets: the loss falls, and the exported teacher loads back (its
/// config inferred as DINOv3) and gives the checkpointed teacher's outputs bit for bit.
#[test]
fn a_dinov3_backbone_trains_and_its_export_loads_back() {
    let Some(gpu) = common::gpu() else { return };
    use dinoscope::gpu::Recorder;
    use dinoscope::model::vit::{param_layout, ForwardOptions, Vit};
    let mut cfg = micro();
    let v3 = TrainConfig::preset("debug_v3").expect("preset").model;
    assert!(v3.is_rope() && !v3.key_bias && v3.registers == 4);
    cfg.model = dinoscope::model::config::VitConfig {
        depth: 1,
        patch: 4,
        ..v3
    };
    cfg.drop_path = 0.0;
    cfg.steps = 40;
    cfg.checkpoint_every = 40;
    let dir = tmp("dinov3");
    let opts = RunOptions {
        out_dir: dir.clone(),
        ..Default::default()
    };
    let mut losses = Vec::new();
    run(gpu, cfg.clone(), &opts, |m, _| {
        assert!(m.non_finite().is_none(), "step {}: {m:?}", m.step);
        losses.push(m.loss);
    })
    .expect("trains");
    assert_eq!(losses.len(), 40);
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    let (first, last) = (mean(&losses[..10]), mean(&losses[30..]));
    eprintln!("loss: first ten {first:.4}, last ten {last:.4}");
    assert!(last < first, "loss did not fall: {first} → {last}");

    let w = dir.join("teacher_backbone.safetensors");
    let mcfg = dinoscope::model::weights::config_for_weights(&w).expect("config");
    assert_eq!(mcfg, cfg.model);
    let loaded = dinoscope::model::weights::load_backbone(&w, &mcfg).expect("strict load");
    assert!(!loaded.tensors.contains_key("pos_embed"));
    // The masked key bias stayed at zero; the query and value biases trained.
    let bias = &loaded.tensors["blocks.0.attn.qkv.bias"].data;
    let d = bias.len() / 3;
    assert!(bias[d..2 * d].iter().all(|v| *v == 0.0));
    assert!(bias[..d].iter().any(|v| *v != 0.0));
    let (_, state) = load_checkpoint(&dir).expect("checkpoint");
    let layout = param_layout(&cfg.model);
    let teacher = layout.unpack(&state.teacher[..layout.total]);
    let px: Vec<f32> = (0..2 * 3 * 16 * 24)
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let forward = |vit: &Vit| {
        let mut rec = Recorder::new(gpu);
        let pixels = gpu.upload(&px, &[2, 3, 16, 24]);
        let out = vit
            .forward(
                &mut rec,
                &pixels,
                2,
                16,
                24,
                None,
                &ForwardOptions::default(),
            )
            .expect("forward");
        rec.finish().expect("submit");
        gpu.read(&out.tokens).expect("read")
    };
    let from_state = Vit::from_host(gpu, cfg.model.clone(), &teacher).expect("model");
    let from_file = Vit::new(gpu, mcfg, &loaded).expect("model");
    assert_eq!(forward(&from_state), forward(&from_file));
    // `export --to hf`: transformers' DINOv3ViTModel folder, which gives the same tokens (its
    // LayerScale γ = 1 where the run has none).
    let out = common::command(env!("CARGO_BIN_EXE_dinoscope"))
        .args(["export", dir.to_str().expect("utf-8 path"), "--to", "hf"])
        .output()
        .expect("run dinoscope");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("DINOv3ViTModel"), "{text}");
    let hf = dir.join("export-hf");
    let hf_cfg = dinoscope::model::weights::config_for_weights(&hf.join("model.safetensors"))
        .expect("config.json");
    let hf_weights =
        dinoscope::model::weights::load_backbone(&hf.join("model.safetensors"), &hf_cfg)
            .expect("strict load");
    assert_eq!(
        hf_weights.naming,
        dinoscope::model::weights::Naming::HuggingFace
    );
    let from_hf = Vit::new(gpu, hf_cfg, &hf_weights).expect("model");
    assert_eq!(forward(&from_state), forward(&from_hf));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Gram anchoring (DINOv3): zero before its start step, positive after, its gradient reaches
/// the backbone, the planner counts the Gram teacher's pass, and a run split around a refresh of
/// the Gram teacher resumes bit for bit (the Gram teacher is part of the checkpoint).
#[test]
fn gram_anchoring_trains_and_resumes_exactly() {
    let Some(gpu) = common::gpu() else { return };
    let mut cfg = micro();
    cfg.gram = Some(dinoscope::train::config::GramConfig {
        weight: 2.0,
        start: 2,
        refresh_every: 3,
        ramp: 0,
        local_weight: 1.0,
        max_refreshes: None,
    });
    let straight = tmp("gram-straight");
    let mut seen = Vec::new();
    run(
        gpu,
        cfg.clone(),
        &RunOptions {
            out_dir: straight.clone(),
            ..Default::default()
        },
        |m, _| seen.push((m.step, m.gram, m.loss, m.dino, m.ibot, m.koleo)),
    )
    .expect("run");
    assert_eq!(seen.len(), 6);
    for &(step, gram, loss, dino, ibot, koleo) in &seen {
        let g = gram.expect("a Gram value in a run that uses it");
        if step < 2 {
            assert_eq!(g, 0.0, "step {step}");
        } else {
            assert!(g > 0.0 && g.is_finite(), "step {step}: {g}");
        }
        let weighted = dino + ibot + 0.1 * koleo + if step >= 2 { 2.0 * g } else { 0.0 };
        assert!(
            (loss - weighted).abs() <= 1e-4 * weighted.abs(),
            "step {step}"
        );
    }
    let lines = std::fs::read_to_string(straight.join("metrics.jsonl")).expect("metrics");
    assert!(lines.contains("\"gram\":"), "{lines}");
    // Split at step 4: the Gram teacher was refreshed at 2 and is refreshed again at 5.
    let split = tmp("gram-split");
    let first = RunOptions {
        out_dir: split.clone(),
        stop_after: Some(4),
        ..Default::default()
    };
    run(gpu, cfg.clone(), &first, |_, _| {}).expect("first part");
    let mid = state_of(&split);
    assert!(mid.gram_teacher.is_some());
    let second = RunOptions {
        out_dir: split.clone(),
        resume: true,
        ..Default::default()
    };
    run(gpu, cfg.clone(), &second, |_, _| {}).expect("second part");
    let (a, b) = (state_of(&straight), state_of(&split));
    assert!(
        a == b,
        "6 steps straight differ from 4 + resume + 2 with Gram anchoring"
    );
    // Without the Gram loss the run ends elsewhere: its gradient reached the backbone.
    let mut off = cfg.clone();
    off.gram = None;
    let plain = tmp("gram-off");
    run(
        gpu,
        off.clone(),
        &RunOptions {
            out_dir: plain.clone(),
            ..Default::default()
        },
        |m, _| assert!(m.gram.is_none()),
    )
    .expect("run without Gram");
    let c = state_of(&plain);
    assert!(c.gram_teacher.is_none());
    assert!(a.student != c.student);
    // The plan of a Gram run counts the Gram teacher's weights and forward pass.
    let with = dinoscope::train::plan::plan(gpu, &cfg, 2).expect("plan");
    let without = dinoscope::train::plan::plan(gpu, &off, 2).expect("plan");
    assert!(with.peak_bytes > without.peak_bytes);
    for d in [straight, split, plain] {
        let _ = std::fs::remove_dir_all(&d);
    }
}

/// DINOv3 lowers the DINO loss's weight on the local crops as Gram anchoring starts
/// (`gram.local_weight`): the steps before the start are those of a run without it, and at the
/// start, from the same weights, the DINO loss at local weight ½ lies halfway between the runs at
/// 1 and 0 (the global crops' terms alone), as the kernel weighs each local crop's rows.
#[test]
fn the_local_dino_weight_falls_as_gram_anchoring_starts() {
    let Some(gpu) = common::gpu() else { return };
    let mut cfg = micro();
    cfg.drop_path = 0.0;
    let at = |local_weight: f32| {
        let mut c = cfg.clone();
        c.gram = Some(dinoscope::train::config::GramConfig {
            weight: 1.0,
            start: 2,
            refresh_every: 0,
            ramp: 0,
            local_weight,
            max_refreshes: None,
        });
        let dir = tmp(&format!("local-weight-{local_weight}"));
        let mut seen = Vec::new();
        run(
            gpu,
            c,
            &RunOptions {
                out_dir: dir.clone(),
                stop_after: Some(3),
                ..Default::default()
            },
            |m, _| seen.push((m.dino, m.loss, m.ibot, m.koleo, m.gram)),
        )
        .expect("run");
        let _ = std::fs::remove_dir_all(&dir);
        seen
    };
    let (whole, half, none) = (at(1.0), at(0.5), at(0.0));
    assert_eq!(whole.len(), 3);
    assert_eq!(
        whole[..2],
        half[..2],
        "the weight changed steps before the start"
    );
    assert_eq!(whole[..2], none[..2]);
    let (d1, dh, d0) = (whole[2].0, half[2].0, none[2].0);
    eprintln!("DINO loss at the start: local weight 1 {d1}, ½ {dh}, 0 {d0}");
    assert!(d0 > 0.0 && d0 < dh && dh < d1, "{d0} {dh} {d1}");
    assert!(
        (dh - (d1 + d0) / 2.0).abs() <= 1e-5 * d1,
        "{dh} is not halfway between {d0} and {d1}"
    );
    // The total is the weighted DINO loss plus the others.
    let (dino, loss, ibot, koleo, gram) = half[2];
    let weighted = dino + ibot + 0.1 * koleo + gram.expect("Gram on");
    assert!((loss - weighted).abs() <= 1e-4 * weighted.abs());
}

/// DINOv3's Gram teacher on crops of its own (`augment.gram_size`): at the global crops' side,
/// with no distortions for them to leave out, the run is bit for bit the run without them (its
/// crops, its features resized to the student's grid as a copy); at twice the side the features
/// come from a grid twice as fine and are resized, the loss's weight follows its ramp, the plan
/// holds the larger pass, and a run split between steps resumes exactly.
#[test]
fn a_gram_teacher_on_larger_crops_trains_and_resumes_exactly() {
    let Some(gpu) = common::gpu() else { return };
    let mut cfg = micro();
    cfg.augment.jitter_p = 0.0;
    cfg.augment.grayscale_p = 0.0;
    cfg.augment.blur_p = [0.0; 3];
    cfg.augment.solarize_p = [0.0; 2];
    cfg.gram = Some(dinoscope::train::config::GramConfig {
        weight: 2.0,
        start: 1,
        refresh_every: 0,
        ramp: 3,
        local_weight: 1.0,
        max_refreshes: None,
    });
    let weights: Vec<f32> = (0..5).map(|s| cfg.at(s).gram_weight).collect();
    assert_eq!(weights, [0.0, 0.0, 1.0, 2.0, 2.0]);
    let straight = |c: &TrainConfig, name: &str| {
        let dir = tmp(name);
        let mut seen = Vec::new();
        run(
            gpu,
            c.clone(),
            &RunOptions {
                out_dir: dir.clone(),
                ..Default::default()
            },
            |m, _| seen.push((m.step, m.gram, m.loss, m.dino, m.ibot, m.koleo)),
        )
        .expect("run");
        let state = state_of(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        (seen, state)
    };
    let (plain_seen, plain) = straight(&cfg, "gram-own-none");
    let mut same = cfg.clone();
    same.augment.gram_size = cfg.augment.global_size;
    let (same_seen, same_state) = straight(&same, "gram-own-same");
    assert_eq!(same_seen, plain_seen);
    assert!(
        same_state == plain,
        "the Gram teacher's own crops at the same size changed the run"
    );

    let mut twice = cfg.clone();
    twice.augment.gram_size = 2 * cfg.augment.global_size;
    let (seen, state) = straight(&twice, "gram-own-twice");
    assert_eq!(seen.len(), 6);
    for (&(step, gram, loss, dino, ibot, koleo), before) in seen.iter().zip(&plain_seen) {
        let g = gram.expect("a Gram value in a run that uses it");
        let w = twice.at(step).gram_weight;
        if w > 0.0 {
            assert!(g > 0.0 && g.is_finite(), "step {step}: {g}");
            // The targets come from other features than the global crops' own.
            assert_ne!(gram, before.1, "step {step}");
        }
        let weighted = dino + ibot + 0.1 * koleo + w * g;
        assert!(
            (loss - weighted).abs() <= 1e-4 * weighted.abs(),
            "step {step}"
        );
    }
    let split = tmp("gram-own-split");
    let first = RunOptions {
        out_dir: split.clone(),
        stop_after: Some(3),
        ..Default::default()
    };
    run(gpu, twice.clone(), &first, |_, _| {}).expect("first part");
    let second = RunOptions {
        out_dir: split.clone(),
        resume: true,
        ..Default::default()
    };
    run(gpu, twice.clone(), &second, |_, _| {}).expect("second part");
    assert!(
        state_of(&split) == state,
        "6 steps straight differ from 3 + resume + 3 with the Gram teacher's own crops"
    );
    let _ = std::fs::remove_dir_all(&split);
    let larger = dinoscope::train::plan::plan(gpu, &twice, 2).expect("plan");
    let smaller = dinoscope::train::plan::plan(gpu, &same, 2).expect("plan");
    assert!(larger.peak_bytes > smaller.peak_bytes);
    // Without Gram anchoring the crops are refused, by name.
    let mut off = twice.clone();
    off.gram = None;
    let err = off.validate().unwrap_err();
    assert!(err.contains("gram_size"), "{err}");
}
