//! `dinoscope export RUN --to dinov2`: the official trainer's config with the run's values, the
//! weights under the official module names and shapes (`SSLMetaArch`'s state dict), refusals. No GPU.

use dinoscope::train::config::TrainConfig;
use dinoscope::train::export::{config_yaml, epoch_length, export_dinov2, official_tensors};
use dinoscope::train::trainer::TrainState;
use std::collections::BTreeMap;

/// Every key of the official `ssl_default_config.yaml` (facebookresearch/dinov2), as paths.
const DEFAULT_KEYS: &[&str] = &[
    "MODEL.WEIGHTS",
    "dino.loss_weight",
    "dino.head_n_prototypes",
    "dino.head_bottleneck_dim",
    "dino.head_nlayers",
    "dino.head_hidden_dim",
    "dino.koleo_loss_weight",
    "ibot.loss_weight",
    "ibot.mask_sample_probability",
    "ibot.mask_ratio_min_max",
    "ibot.separate_head",
    "ibot.head_n_prototypes",
    "ibot.head_bottleneck_dim",
    "ibot.head_nlayers",
    "ibot.head_hidden_dim",
    "train.batch_size_per_gpu",
    "train.dataset_path",
    "train.output_dir",
    "train.saveckp_freq",
    "train.seed",
    "train.num_workers",
    "train.OFFICIAL_EPOCH_LENGTH",
    "train.cache_dataset",
    "train.centering",
    "student.arch",
    "student.patch_size",
    "student.drop_path_rate",
    "student.layerscale",
    "student.drop_path_uniform",
    "student.pretrained_weights",
    "student.ffn_layer",
    "student.block_chunks",
    "student.qkv_bias",
    "student.proj_bias",
    "student.ffn_bias",
    "student.num_register_tokens",
    "student.interpolate_antialias",
    "student.interpolate_offset",
    "teacher.momentum_teacher",
    "teacher.final_momentum_teacher",
    "teacher.warmup_teacher_temp",
    "teacher.teacher_temp",
    "teacher.warmup_teacher_temp_epochs",
    "optim.epochs",
    "optim.weight_decay",
    "optim.weight_decay_end",
    "optim.base_lr",
    "optim.lr",
    "optim.warmup_epochs",
    "optim.min_lr",
    "optim.clip_grad",
    "optim.freeze_last_layer_epochs",
    "optim.scaling_rule",
    "optim.patch_embed_lr_mult",
    "optim.layerwise_decay",
    "optim.adamw_beta1",
    "optim.adamw_beta2",
    "crops.global_crops_scale",
    "crops.local_crops_number",
    "crops.local_crops_scale",
    "crops.global_crops_size",
    "crops.local_crops_size",
    "evaluation.eval_period_iterations",
];

/// The leaves of our YAML subset (nested mappings, `- item` lists, no flow style) as
/// dotted path → value (lists joined with ",").
fn leaves(yaml: &str) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut stack: Vec<(usize, String)> = Vec::new();
    for line in yaml.lines() {
        let body = line.split(" #").next().unwrap_or("");
        if body.trim().is_empty() || body.trim_start().starts_with('#') {
            continue;
        }
        let indent = body.len() - body.trim_start().len();
        let t = body.trim();
        if let Some(item) = t.strip_prefix("- ") {
            let key = stack.last().expect("list under a key").1.clone();
            let v = out.entry(key).or_default();
            if !v.is_empty() {
                v.push(',');
            }
            v.push_str(item);
            continue;
        }
        let (k, v) = t.split_once(':').expect("key: value");
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        let path = match stack.last() {
            Some((_, p)) => format!("{p}.{k}"),
            None => k.to_string(),
        };
        let v = v.trim();
        if v.is_empty() {
            stack.push((indent, path.clone()));
            out.entry(path).or_default();
        } else {
            out.insert(path, v.to_string());
        }
    }
    // Keep leaves only (mapping nodes have no value of their own).
    let parents: Vec<String> = out
        .keys()
        .filter(|k| out.keys().any(|o| o.starts_with(&format!("{k}."))))
        .cloned()
        .collect();
    for p in parents {
        out.remove(&p);
    }
    out
}

/// ViT-S/14 with a small head (the backbone must be an official architecture).
fn vits_run() -> TrainConfig {
    let mut c = TrainConfig::preset("vits14").expect("preset");
    c.head.hidden = 32;
    c.head.bottleneck = 16;
    c.head.prototypes = 24;
    c.steps = 2500;
    c.warmup_steps = 250;
    c.teacher_temp = (0.04, 0.07, 750);
    c.freeze_last_layer_steps = 125;
    c
}

fn state(cfg: &TrainConfig) -> TrainState {
    let n = dinoscope::model::vit::param_layout(&cfg.model).total
        + dinoscope::model::params::ParamLayout::new(&cfg.head_specs()).total;
    TrainState {
        step: 1200,
        student: (0..n).map(|i| i as f32).collect(),
        teacher: (0..n).map(|i| -(i as f32)).collect(),
        m1: vec![0.0; n],
        m2: vec![0.0; n],
        center_dino: (0..cfg.head.prototypes).map(|i| i as f32 + 0.5).collect(),
        center_ibot: (0..cfg.ibot_prototypes()).map(|i| -(i as f32)).collect(),
        gram_teacher: None,
        loss_scale: None,
    }
}

#[test]
fn the_yaml_has_every_official_key_with_the_runs_values() {
    let cfg = vits_run();
    assert_eq!(epoch_length(&cfg), 125);
    let y = leaves(&config_yaml(&cfg, "ck.pth").expect("yaml"));
    let ours: Vec<&str> = y
        .keys()
        .filter(|k| !k.starts_with("compute_precision"))
        .map(String::as_str)
        .collect();
    assert_eq!(ours, {
        let mut v = DEFAULT_KEYS.to_vec();
        v.sort();
        v
    });
    assert_eq!(
        y["compute_precision.student.dino_head.mixed_precision.reduce_dtype"],
        "fp32"
    );
    let want = [
        ("MODEL.WEIGHTS", "ck.pth"),
        ("student.arch", "vit_small"),
        ("student.patch_size", "14"),
        ("student.layerscale", "1.0e-05"),
        ("student.drop_path_rate", "0.3"),
        ("student.ffn_layer", "mlp"),
        ("student.num_register_tokens", "0"),
        ("dino.head_n_prototypes", "24"),
        ("dino.head_bottleneck_dim", "16"),
        ("dino.head_hidden_dim", "32"),
        ("dino.koleo_loss_weight", "0.1"),
        ("ibot.separate_head", "false"),
        ("ibot.mask_ratio_min_max", "0.1,0.5"),
        ("train.OFFICIAL_EPOCH_LENGTH", "125"),
        ("train.centering", "centering"),
        ("optim.epochs", "20"),
        ("optim.warmup_epochs", "2"),
        ("optim.freeze_last_layer_epochs", "1"),
        ("optim.min_lr", "1.0e-06"),
        ("optim.scaling_rule", "sqrt_wrt_1024"),
        ("teacher.warmup_teacher_temp_epochs", "6"),
        ("teacher.warmup_teacher_temp", "0.04"),
        ("teacher.teacher_temp", "0.07"),
        ("crops.global_crops_size", "224"),
        ("crops.local_crops_number", "8"),
        ("crops.global_crops_scale", "0.32,1.0"),
    ];
    for (k, v) in want {
        assert_eq!(y.get(k).map(String::as_str), Some(v), "{k}");
    }
    assert_eq!(y["optim.base_lr"], format!("{:?}", cfg.base_lr));
    assert_eq!(y["train.batch_size_per_gpu"], cfg.batch_size.to_string());
    // Sinkhorn-Knopp targets and registers carry over by name.
    let mut sk = vits_run();
    sk.targets = dinoscope::train::config::Targets::SinkhornKnopp;
    sk.model.registers = 4;
    let y = leaves(&config_yaml(&sk, "ck.pth").expect("yaml"));
    assert_eq!(y["train.centering"], "sinkhorn_knopp");
    assert_eq!(y["student.num_register_tokens"], "4");
    assert_eq!(y["student.interpolate_antialias"], "true");
}

#[test]
fn weights_carry_the_official_names_and_shapes() {
    let cfg = vits_run();
    let st = state(&cfg);
    let t = official_tensors(&cfg, &st).expect("tensors");
    let by: BTreeMap<&str, (&Vec<usize>, &Vec<f32>)> =
        t.iter().map(|(n, s, v)| (n.as_str(), (s, v))).collect();
    // Spec §9.1: 175 backbone tensors for ViT-S/14 without registers; §9.4: the head.
    for side in ["student", "teacher"] {
        let backbone = by
            .keys()
            .filter(|k| k.starts_with(&format!("{side}.backbone.")))
            .count();
        assert_eq!(backbone, 175, "{side}");
        let shapes = [
            ("backbone.cls_token", vec![1, 1, 384]),
            // The trainer builds its position table for the global crops: 224/14 = 16 per side.
            ("backbone.pos_embed", vec![1, 257, 384]),
            ("backbone.mask_token", vec![1, 384]),
            ("backbone.patch_embed.proj.weight", vec![384, 3, 14, 14]),
            ("backbone.blocks.0.attn.qkv.weight", vec![1152, 384]),
            ("backbone.blocks.11.attn.qkv.bias", vec![1152]),
            ("backbone.blocks.5.ls1.gamma", vec![384]),
            ("backbone.blocks.11.mlp.fc1.weight", vec![1536, 384]),
            ("backbone.blocks.11.mlp.fc2.weight", vec![384, 1536]),
            ("backbone.norm.bias", vec![384]),
            ("dino_head.mlp.0.weight", vec![32, 384]),
            ("dino_head.mlp.2.weight", vec![32, 32]),
            ("dino_head.mlp.4.weight", vec![16, 32]),
            ("dino_head.last_layer.weight_g", vec![24, 1]),
            ("dino_head.last_layer.weight_v", vec![24, 16]),
        ];
        for (name, shape) in shapes {
            let key = format!("{side}.{name}");
            assert_eq!(by.get(key.as_str()).map(|x| x.0), Some(&shape), "{key}");
        }
        assert_eq!(by.keys().filter(|k| k.starts_with(side)).count(), 175 + 8);
    }
    // Values come from the right side and offset: the student's flat buffer starts with the
    // CLS token; the teacher's is its negation here.
    let cls = by["student.backbone.cls_token"].1;
    assert_eq!(&cls[..3], &[0.0, 1.0, 2.0]);
    assert_eq!(by["teacher.backbone.cls_token"].1[2], -2.0);
    // The losses' centers, as the official modules register them.
    let (shape, v) = by["dino_loss.center"];
    assert_eq!((shape, &v[..2]), (&vec![1, 24], &[0.5, 1.5][..]));
    let (shape, v) = by["ibot_patch_loss.center"];
    assert_eq!((shape, v[1]), (&vec![1, 1, 24], -1.0));
    assert_eq!(by.len(), 2 * (175 + 8) + 2);
    // Without the iBOT loss the official model has no iBOT loss module, and no such center.
    let mut no_ibot = cfg.clone();
    no_ibot.ibot_weight = 0.0;
    let t = official_tensors(&no_ibot, &st).expect("tensors");
    assert!(t.iter().any(|x| x.0 == "dino_loss.center"));
    assert!(!t.iter().any(|x| x.0 == "ibot_patch_loss.center"));
}

#[test]
fn export_writes_three_files_and_refuses_what_it_cannot_express() {
    let cfg = vits_run();
    let st = state(&cfg);
    let dir = std::env::temp_dir().join(format!("dinoscope-export-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    export_dinov2(&cfg, &st, &dir, false).expect("export");
    for f in dinoscope::train::export::FILES {
        assert!(dir.join(f).is_file(), "{f}");
    }
    let w = dinoscope::fixtures::TensorFile::open(&dir.join("weights.safetensors")).expect("read");
    assert_eq!(w.names().len(), 2 * (175 + 8) + 2);
    // The config names the checkpoint by its full path: the trainer runs in its own folder.
    let yaml = std::fs::read_to_string(dir.join("config.yaml")).expect("config");
    let full = std::fs::canonicalize(&dir)
        .expect("folder")
        .join("dinoscope_checkpoint.pth");
    assert!(
        yaml.contains(&format!("WEIGHTS: {}", full.display()))
            || yaml.contains(&format!("WEIGHTS: '{}'", full.display())),
        "{yaml}"
    );
    let script = std::fs::read_to_string(dir.join("to_dinov2_checkpoint.py")).expect("script");
    assert!(script.contains("\"teacher\"") && script.contains("\"model\""));
    // Nothing is replaced without --overwrite.
    let err = export_dinov2(&cfg, &st, &dir, false).unwrap_err();
    assert!(
        err.contains("already exists") && err.contains("--overwrite"),
        "{err}"
    );
    export_dinov2(&cfg, &st, &dir, true).expect("overwrite");
    let _ = std::fs::remove_dir_all(&dir);
    // Sizes, rotary backbones and Gram anchoring have no counterpart in the DINOv2 trainer.
    let debug = TrainConfig::preset("debug").expect("preset");
    let err = config_yaml(&debug, "x").unwrap_err();
    assert!(err.contains("vit_small") && err.contains("dim 64"), "{err}");
    let v3 = TrainConfig::preset("debug_v3").expect("preset");
    assert!(config_yaml(&v3, "x").unwrap_err().contains("rotary"));
    let mut gram = vits_run();
    gram.gram = Some(dinoscope::train::config::GramConfig {
        weight: 1.0,
        start: 0,
        refresh_every: 0,
        ramp: 0,
        local_weight: 1.0,
        max_refreshes: None,
    });
    assert!(config_yaml(&gram, "x").unwrap_err().contains("Gram"));
}

/// The backbone tensors (torch-hub names) and config of a Hugging Face fixture folder.
fn fixture_backbone(
    name: &str,
) -> (
    std::path::PathBuf,
    dinoscope::model::config::VitConfig,
    BTreeMap<String, Vec<f32>>,
) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let cfg = dinoscope::model::config::VitConfig::load(&dir.join("config.json")).expect("config");
    let w = dinoscope::model::weights::load_backbone(&dir.join("model.safetensors"), &cfg)
        .expect("weights");
    let hub = w.tensors.into_iter().map(|(k, t)| (k, t.data)).collect();
    (dir, cfg, hub)
}

/// `export --to hf` names and shapes every tensor as transformers does: each fixture folder that
/// transformers wrote (`Dinov2Model`, `Dinov2WithRegistersModel`, `DINOv3ViTModel`), read and
/// written again, gives its own tensors back under its own names and shapes, bit for bit, and a
/// `config.json` that reads back as the same config and agrees with transformers' on every field
/// both hold (but the DINOv3 `image_size`, which its model does not use).
#[test]
fn hugging_face_folders_give_back_the_fixtures_transformers_wrote() {
    use dinoscope::model::weights::hf::to_hugging_face;
    for name in ["tiny_dinov2", "tiny_dinov2_reg", "tiny_dinov3"] {
        let (dir, cfg, hub) = fixture_backbone(name);
        let model = to_hugging_face(&cfg, &hub).expect("export");
        let theirs =
            dinoscope::fixtures::TensorFile::open(&dir.join("model.safetensors")).expect("read");
        let mut want: Vec<String> = theirs.names().iter().map(|s| s.to_string()).collect();
        want.sort();
        let mut got: Vec<String> = model.tensors.iter().map(|t| t.0.clone()).collect();
        got.sort();
        assert_eq!(got, want, "{name}: tensor names");
        for (n, shape, values) in &model.tensors {
            let t = theirs.get(n).expect("tensor");
            assert_eq!(shape, &t.shape, "{name}: {n}");
            assert!(values == &t.data, "{name}: {n} differs");
        }
        let ours: serde_json::Value = serde_json::from_str(&model.config_json).expect("json");
        let back = dinoscope::model::config::VitConfig::from_hf_json(&model.config_json, name)
            .expect("reads back");
        assert_eq!(back, cfg, "{name}");
        let text = std::fs::read_to_string(dir.join("config.json")).expect("config");
        let theirs: serde_json::Value = serde_json::from_str(&text).expect("json");
        let mut shared = 0;
        for (key, v) in ours.as_object().expect("object") {
            let Some(t) = theirs.get(key) else { continue };
            if name == "tiny_dinov3" && key == "image_size" {
                continue;
            }
            let same = match (v.as_f64(), t.as_f64()) {
                (Some(a), Some(b)) => a == b,
                _ => v == t,
            };
            assert!(same, "{name}: {key} is {v}, transformers wrote {t}");
            shared += 1;
        }
        assert!(shared >= 18, "{name}: only {shared} fields in common");
    }
}

/// A run's export: a backbone without LayerScale gets γ = 1 (transformers always scales), the
/// folder reads back into the run's teacher, nothing is replaced without --overwrite, and a
/// run's shapes transformers' config cannot express are refused by name.
#[test]
fn a_runs_hugging_face_folder_reads_back_as_its_teacher() {
    use dinoscope::train::export::{export_hf, HF_FILES};
    let mut gated = TrainConfig::preset("debug_v3").expect("preset");
    gated.model.ffn = dinoscope::model::config::Ffn::SwiGlu;
    gated.model.mlp_hidden = 176;
    let runs = ["debug", "tiny", "debug_v3"]
        .map(|p| (p, TrainConfig::preset(p).expect("preset")))
        .into_iter()
        .chain([("gated", gated)]);
    for (preset, cfg) in runs {
        let mut st = state(&cfg);
        let layout = dinoscope::model::vit::param_layout(&cfg.model);
        if !cfg.model.key_bias {
            // Training keeps a masked key bias at 0; the export drops it.
            let d = cfg.model.dim;
            for e in layout
                .entries
                .iter()
                .filter(|e| e.name.ends_with("attn.qkv.bias"))
            {
                st.teacher[e.offset + d..e.offset + 2 * d].fill(0.0);
            }
            let mut wrong = st.clone();
            let e = &layout
                .entries
                .iter()
                .find(|e| e.name == "blocks.0.attn.qkv.bias");
            wrong.teacher[e.expect("bias").offset + d] = 1.0;
            let err = export_hf(&cfg, &wrong, &std::env::temp_dir(), false).unwrap_err();
            assert!(
                err.contains("key bias") && err.contains("blocks.0"),
                "{err}"
            );
        }
        let dir = std::env::temp_dir().join(format!(
            "dinoscope-export-hf-{preset}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let class = export_hf(&cfg, &st, &dir, false).expect("export");
        let want = match preset {
            "debug" => "Dinov2Model",
            "tiny" => "Dinov2WithRegistersModel",
            _ => "DINOv3ViTModel",
        };
        let json = std::fs::read_to_string(dir.join("config.json")).expect("config");
        assert_eq!(json.contains("\"use_gated_mlp\": true"), preset == "gated");
        // The picture preparation: the training crops' size, as `embed --size` takes it.
        let pre: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("preprocessor_config.json")).expect("processor"),
        )
        .expect("json");
        let size = cfg.augment.global_size as u64;
        assert_eq!(pre["size"]["shortest_edge"].as_u64(), Some(size));
        assert_eq!(pre["crop_size"]["height"].as_u64(), Some(size));
        assert_eq!(pre["image_mean"][0].as_f64(), Some(0.485));
        assert_eq!(class, want);
        for f in HF_FILES {
            assert!(dir.join(f).is_file(), "{f}");
        }
        let back =
            dinoscope::model::config::VitConfig::load(&dir.join("config.json")).expect("config");
        let mut expected = cfg.model.clone();
        expected.layerscale = true;
        assert_eq!(back, expected, "{preset}");
        let w = dinoscope::model::weights::load_backbone(&dir.join("model.safetensors"), &back)
            .expect("weights");
        let teacher = layout.unpack(&st.teacher[..layout.total]);
        for (n, v) in &teacher {
            assert!(&w.tensors[n].data == v, "{preset}: {n}");
        }
        assert!(!cfg.model.layerscale, "{preset} trains without LayerScale");
        assert!(w.tensors["blocks.0.ls1.gamma"]
            .data
            .iter()
            .all(|g| *g == 1.0));
        let err = export_hf(&cfg, &st, &dir, false).unwrap_err();
        assert!(
            err.contains("already exists") && err.contains("--overwrite"),
            "{err}"
        );
        export_hf(&cfg, &st, &dir, true).expect("overwrite");
        // An export that cannot write one of its files writes none of them.
        let before = b"an earlier export's".to_vec();
        std::fs::write(dir.join("config.json"), &before).expect("marker");
        std::fs::remove_file(dir.join("model.safetensors")).expect("remove");
        std::fs::create_dir(dir.join("model.safetensors")).expect("a folder in its place");
        let err = export_hf(&cfg, &st, &dir, true).unwrap_err();
        assert!(err.contains("model.safetensors"), "{err}");
        assert_eq!(std::fs::read(dir.join("config.json")).ok(), Some(before));
        let left: Vec<_> = std::fs::read_dir(&dir)
            .expect("list")
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n.to_string_lossy().starts_with('.'))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
