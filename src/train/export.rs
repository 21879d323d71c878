//! `dinoscope export RUN --to dinov2`: a run handed on to the official PyTorch trainer
//! (facebookresearch/dinov2, FSDP on a cluster); `--to hf` (`export_hf`): its teacher backbone
//! as a Hugging Face model folder.
//!
//! Three files: `config.yaml` (every field of the official `ssl_default_config.yaml`, with this
//! run's values where it has them), `weights.safetensors` (student and teacher backbone and
//! heads, and the losses' centers, under the official module names, `student.backbone.*`,
//! `teacher.dino_head.*`, `dino_loss.center`, …, as `SSLMetaArch.state_dict()` names them) and `to_dinov2_checkpoint.py` (turns the weights into
//! the checkpoint the trainer resumes from and the teacher checkpoint its evaluation scripts
//! read). Step-based schedules become epochs of `OFFICIAL_EPOCH_LENGTH` iterations, chosen so
//! every schedule length is a whole number of epochs.

use super::config::{Targets, TrainConfig};
use super::trainer::TrainState;
use crate::model::config::Ffn;
use crate::model::params::ParamLayout;
use crate::model::vit::param_layout;
use std::fmt::Write as _;
use std::path::Path;

/// The checkpoint `to_dinov2_checkpoint.py` writes beside the weights, which the config names.
const CHECKPOINT: &str = "dinoscope_checkpoint.pth";

/// Files written by [`export_dinov2`].
pub const FILES: [&str; 3] = [
    "config.yaml",
    "weights.safetensors",
    "to_dinov2_checkpoint.py",
];

/// The official architecture name of a backbone (`vit_small`, `vit_base`, `vit_large`,
/// `vit_giant2`), or why the official trainer cannot build it.
pub fn official_arch(cfg: &TrainConfig) -> Result<&'static str, String> {
    let m = &cfg.model;
    if m.is_rope() {
        return Err(
            "the backbone uses rotary positions (DINOv3); the DINOv2 trainer has no \
                    such model"
                .into(),
        );
    }
    if cfg.gram.is_some() {
        return Err("the run uses Gram anchoring, which the DINOv2 trainer does not have".into());
    }
    let want_ffn = |ffn: Ffn, hidden: usize| m.ffn == ffn && m.mlp_hidden == hidden;
    let arch = match (m.dim, m.depth, m.heads) {
        (384, 12, 6) if want_ffn(Ffn::Mlp, 1536) => "vit_small",
        (768, 12, 12) if want_ffn(Ffn::Mlp, 3072) => "vit_base",
        (1024, 24, 16) if want_ffn(Ffn::Mlp, 4096) => "vit_large",
        (1536, 40, 24) if want_ffn(Ffn::SwiGlu, 4096) => "vit_giant2",
        _ => {
            return Err(format!(
                "the official trainer builds only ViT-S/B/L/g (vit_small, vit_base, vit_large, \
                 vit_giant2); this run's backbone has dim {}, depth {}, {} heads, {:?} hidden {}",
                m.dim, m.depth, m.heads, m.ffn, m.mlp_hidden
            ))
        }
    };
    let grid = cfg.augment.global_size / m.patch.max(1);
    if m.pos_grid != grid {
        return Err(format!(
            "the official trainer sizes the position table for the global crops ({grid}×{grid} \
             patches); this run's table is {0}×{0}",
            m.pos_grid
        ));
    }
    if !m.ln_eps.eq(&1e-6) || !m.qkv_bias || m.in_chans != 3 {
        return Err(format!(
            "the official {arch} has LayerNorm eps 1e-6, a qkv bias and 3 input channels; this \
             run's backbone differs"
        ));
    }
    Ok(arch)
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Iterations per official "epoch": the largest length that divides every schedule length of
/// the run (steps, lr warmup, teacher-temperature warmup, last-layer freeze).
pub fn epoch_length(cfg: &TrainConfig) -> u64 {
    [
        cfg.warmup_steps,
        cfg.teacher_temp.2,
        cfg.freeze_last_layer_steps,
    ]
    .into_iter()
    .fold(cfg.steps, gcd)
    .max(1)
}

/// A float as YAML that Python's yaml.safe_load reads as a float (a dot in the mantissa and a
/// signed exponent: `1.0e-06`, not `1e-6`, which it would read as a string).
fn yaml_float(v: f32) -> String {
    let s = format!("{v:?}");
    match s.split_once('e') {
        None => s,
        Some((mant, exp)) => {
            let mant = if mant.contains('.') {
                mant.to_string()
            } else {
                format!("{mant}.0")
            };
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp.trim_start_matches('+')),
            };
            format!("{mant}e{sign}{digits:0>2}")
        }
    }
}

/// The official trainer's config with this run's values (`weights` names the checkpoint file
/// the trainer starts from), section by section in the order of its `ssl_default_config.yaml`.
pub fn config_yaml(cfg: &TrainConfig, weights: &str) -> Result<String, String> {
    let arch = official_arch(cfg)?;
    let l = epoch_length(cfg);
    let mut y = String::new();
    let w = &mut y;
    let _ = writeln!(
        w,
        "# The DINOv2 trainer's ssl_default_config.yaml with the values of a"
    );
    let _ = writeln!(
        w,
        "# dinoscope run ({} steps of {} images).",
        cfg.steps, cfg.batch_size
    );
    let _ = writeln!(
        w,
        "# Set train.dataset_path (and output_dir) before training."
    );
    let _ = writeln!(w, "MODEL:\n  WEIGHTS: {}", yaml_string(weights));
    let _ = write!(
        w,
        "compute_precision:\n  grad_scaler: true\n  teacher:\n{}  student:\n{}",
        yaml_precision("fp16"),
        yaml_precision("fp32")
    );
    yaml_losses(w, cfg);
    yaml_train(w, cfg, l);
    yaml_student(w, cfg, arch);
    yaml_schedules(w, cfg, l);
    yaml_crops(w, cfg);
    let _ = writeln!(w, "evaluation:\n  eval_period_iterations: 12500");
    Ok(y)
}

/// `compute_precision`'s per-module FSDP settings of one model (the heads reduce in `reduce_head`).
fn yaml_precision(reduce_head: &str) -> String {
    let mut s = String::new();
    for module in ["backbone", "dino_head", "ibot_head"] {
        let reduce = if module == "backbone" {
            "fp16"
        } else {
            reduce_head
        };
        let _ = write!(
            s,
            "    {module}:\n      sharding_strategy: SHARD_GRAD_OP\n      mixed_precision:\n        \
             param_dtype: fp16\n        reduce_dtype: {reduce}\n        buffer_dtype: fp32\n"
        );
    }
    s
}

/// The `dino` and `ibot` sections: loss weights, heads, masking.
fn yaml_losses(w: &mut String, cfg: &TrainConfig) {
    let f = yaml_float;
    let ibot = cfg.ibot_head.as_ref().unwrap_or(&cfg.head);
    let _ = write!(
        w,
        "dino:\n  loss_weight: {}\n  head_n_prototypes: {}\n  head_bottleneck_dim: {}\n  \
         head_nlayers: 3\n  head_hidden_dim: {}\n  koleo_loss_weight: {}\n",
        f(cfg.dino_weight),
        cfg.head.prototypes,
        cfg.head.bottleneck,
        cfg.head.hidden,
        f(cfg.koleo_weight)
    );
    let _ = write!(
        w,
        "ibot:\n  loss_weight: {}\n  mask_sample_probability: {}\n  mask_ratio_min_max:\n  - {}\n  \
         - {}\n  separate_head: {}\n  head_n_prototypes: {}\n  head_bottleneck_dim: {}\n  \
         head_nlayers: 3\n  head_hidden_dim: {}\n",
        f(cfg.ibot_weight),
        f(cfg.mask_prob),
        f(cfg.mask_ratio.0),
        f(cfg.mask_ratio.1),
        cfg.ibot_head.is_some(),
        ibot.prototypes,
        ibot.bottleneck,
        ibot.hidden
    );
}

/// The `train` section: batch, seed, workers, the epoch length `l`, the targets.
fn yaml_train(w: &mut String, cfg: &TrainConfig, l: u64) {
    let centering = match cfg.targets {
        Targets::Centering => "centering",
        Targets::SinkhornKnopp => "sinkhorn_knopp",
    };
    let _ = write!(
        w,
        "train:\n  batch_size_per_gpu: {}\n  dataset_path: ImageNet:split=TRAIN\n  output_dir: .\n  \
         saveckp_freq: 20\n  seed: {}\n  num_workers: {}\n  OFFICIAL_EPOCH_LENGTH: {l}\n  \
         cache_dataset: true\n  centering: {centering}\n",
        cfg.batch_size, cfg.seed, cfg.workers
    );
}

/// The `student` section: the architecture.
fn yaml_student(w: &mut String, cfg: &TrainConfig, arch: &str) {
    let f = yaml_float;
    let m = &cfg.model;
    let layerscale = if m.layerscale {
        cfg.init.layerscale
    } else {
        0.0
    };
    let _ =
        write!(
        w,
        "student:\n  arch: {arch}\n  patch_size: {}\n  drop_path_rate: {}\n  layerscale: {}\n  \
         drop_path_uniform: true\n  pretrained_weights: ''\n  ffn_layer: {}\n  block_chunks: 0\n  \
         qkv_bias: true\n  proj_bias: true\n  ffn_bias: true\n  num_register_tokens: {}\n  \
         interpolate_antialias: {}\n  interpolate_offset: 0.1\n",
        m.patch,
        f(cfg.drop_path),
        f(layerscale),
        if m.ffn == Ffn::SwiGlu { "swiglufused" } else { "mlp" },
        m.registers,
        m.registers > 0
    );
}

/// The `teacher` and `optim` sections: the schedules, in epochs of `l` steps.
fn yaml_schedules(w: &mut String, cfg: &TrainConfig, l: u64) {
    let f = yaml_float;
    let _ = write!(
        w,
        "teacher:\n  momentum_teacher: {}\n  final_momentum_teacher: {}\n  warmup_teacher_temp: {}\n  \
         teacher_temp: {}\n  warmup_teacher_temp_epochs: {}\n",
        f(cfg.momentum.0),
        f(cfg.momentum.1),
        f(cfg.teacher_temp.0),
        f(cfg.teacher_temp.1),
        cfg.teacher_temp.2 / l
    );
    let _ = write!(
        w,
        "optim:\n  epochs: {}\n  weight_decay: {}\n  weight_decay_end: {}\n  base_lr: {}\n  lr: 0.0\n  \
         warmup_epochs: {}\n  min_lr: {}\n  clip_grad: {}\n  freeze_last_layer_epochs: {}\n  \
         scaling_rule: sqrt_wrt_1024\n  patch_embed_lr_mult: {}\n  layerwise_decay: {}\n  \
         adamw_beta1: 0.9\n  adamw_beta2: 0.999\n",
        cfg.steps / l,
        f(cfg.weight_decay.0),
        f(cfg.weight_decay.1),
        f(cfg.base_lr),
        cfg.warmup_steps / l,
        f(cfg.min_lr),
        f(cfg.clip_grad),
        cfg.freeze_last_layer_steps / l,
        f(cfg.patch_embed_lr_mult),
        f(cfg.layer_decay)
    );
}

/// The `crops` section.
fn yaml_crops(w: &mut String, cfg: &TrainConfig) {
    let f = yaml_float;
    let a = &cfg.augment;
    let _ = write!(
        w,
        "crops:\n  global_crops_scale:\n  - {}\n  - {}\n  local_crops_number: {}\n  \
         local_crops_scale:\n  - {}\n  - {}\n  global_crops_size: {}\n  local_crops_size: {}\n",
        f(a.global_scale.0),
        f(a.global_scale.1),
        a.n_local,
        f(a.local_scale.0),
        f(a.local_scale.1),
        a.global_size,
        a.local_size
    );
}

/// A tensor's name, shape and values.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// Student and teacher under `SSLMetaArch.state_dict()` names: `student.backbone.cls_token`,
/// `teacher.dino_head.last_layer.weight_v`, … (`dino_head.*` and `ibot_head.*` are already the
/// official names in the flat layout).
pub fn official_tensors(cfg: &TrainConfig, st: &TrainState) -> Result<Vec<NamedTensor>, String> {
    let backbone = param_layout(&cfg.model);
    let mut specs: Vec<(String, Vec<usize>)> = backbone
        .entries
        .iter()
        .map(|e| (format!("backbone.{}", e.name), e.shape.clone()))
        .collect();
    specs.extend(cfg.head_specs());
    let layout = ParamLayout::new(&specs);
    let mut out = Vec::new();
    for (which, flat) in [("student", &st.student), ("teacher", &st.teacher)] {
        if flat.len() != layout.total {
            return Err(format!(
                "the checkpoint's {which} has {} values; the config's layout {}",
                flat.len(),
                layout.total
            ));
        }
        for e in &layout.entries {
            let v = flat[e.offset..e.offset + e.numel()].to_vec();
            out.push((format!("{which}.{}", e.name), e.shape.clone(), v));
        }
    }
    // The losses' centers are buffers of the official model (`register_buffer`), present where
    // it builds the loss (a weight above 0), and what softmax centering continues from.
    for (name, shape, weight, v) in [
        (
            "dino_loss.center",
            vec![1, cfg.head.prototypes],
            cfg.dino_weight,
            &st.center_dino,
        ),
        (
            "ibot_patch_loss.center",
            vec![1, 1, cfg.ibot_prototypes()],
            cfg.ibot_weight,
            &st.center_ibot,
        ),
    ] {
        if weight <= 0.0 {
            continue;
        }
        let n: usize = shape.iter().product();
        if v.len() != n {
            return Err(format!(
                "the checkpoint's {name} has {} values; the config's head {n}",
                v.len()
            ));
        }
        out.push((name.to_string(), shape, v.clone()));
    }
    Ok(out)
}

/// `s` as a YAML scalar: as it is where that reads back as the same string, else single-quoted.
fn yaml_string(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_./-".contains(c);
    if !s.is_empty() && s.chars().all(plain) && !s.starts_with('-') {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

/// The conversion script written beside the weights.
pub const SCRIPT: &str = include_str!("../../assets/to_dinov2_checkpoint.py");

/// Writes [`FILES`] into `out` for a run's config and state. Refuses a folder that already
/// holds any of them unless `overwrite`.
pub fn export_dinov2(
    cfg: &TrainConfig,
    st: &TrainState,
    out: &Path,
    overwrite: bool,
) -> Result<(), String> {
    // Checked before anything is written.
    config_yaml(cfg, CHECKPOINT)?;
    prepare_folder(out, &FILES, overwrite)?;
    // By its full path: the trainer reads MODEL.WEIGHTS from its own working folder.
    let checkpoint = crate::io::full_path(out)
        .join(CHECKPOINT)
        .to_string_lossy()
        .to_string();
    let yaml = config_yaml(cfg, &checkpoint)?;
    let tensors = official_tensors(cfg, st)?;
    let meta = [("iteration", st.step.to_string())];
    let weights = torch_safetensors(&tensors, &meta)?;
    crate::io::write_all_atomic(
        out,
        &[
            ("weights.safetensors", &weights),
            ("config.yaml", yaml.as_bytes()),
            ("to_dinov2_checkpoint.py", SCRIPT.as_bytes()),
        ],
    )
}

/// Files written by [`export_hf`].
pub const HF_FILES: [&str; 3] = [
    "config.json",
    "model.safetensors",
    "preprocessor_config.json",
];

/// The run's teacher backbone as a Hugging Face model folder (`config.json`,
/// `model.safetensors`) that transformers' `AutoModel.from_pretrained` loads: `Dinov2Model`,
/// `Dinov2WithRegistersModel` or `DINOv3ViTModel` (see [`crate::model::weights::hf`]). Returns
/// the model class.
pub fn export_hf(
    cfg: &TrainConfig,
    st: &TrainState,
    out: &Path,
    overwrite: bool,
) -> Result<String, String> {
    let layout = param_layout(&cfg.model);
    let teacher = st
        .teacher
        .get(..layout.total)
        .ok_or("the checkpoint's teacher is shorter than its backbone")?;
    write_hf(
        &cfg.model,
        &layout.unpack(teacher),
        cfg.augment.global_size,
        out,
        overwrite,
    )
}

/// Writes the Hugging Face folder of the backbone `hub` holds (torch-hub names), trained on
/// `image_size`-pixel crops, into `out`, replacing an earlier export only with `overwrite`;
/// returns the model class.
pub fn write_hf(
    model_cfg: &crate::model::config::VitConfig,
    hub: &std::collections::BTreeMap<String, Vec<f32>>,
    image_size: usize,
    out: &Path,
    overwrite: bool,
) -> Result<String, String> {
    let (class, files) = hf_files(model_cfg, hub, image_size)?;
    prepare_folder(out, &HF_FILES, overwrite)?;
    let named: Vec<(&str, &[u8])> = files.iter().map(|(n, d)| (*n, d.as_slice())).collect();
    crate::io::write_all_atomic(out, &named)?;
    Ok(class)
}

/// Files by name, as bytes.
pub type NamedFiles = Vec<(&'static str, Vec<u8>)>;

/// The model class and the bytes of [`HF_FILES`] for the backbone `hub` holds (torch-hub names),
/// trained on `image_size`-pixel crops: what [`write_hf`] writes, and what the browser offers
/// as one archive.
pub fn hf_files(
    model_cfg: &crate::model::config::VitConfig,
    hub: &std::collections::BTreeMap<String, Vec<f32>>,
    image_size: usize,
) -> Result<(String, NamedFiles), String> {
    let model = crate::model::weights::hf::to_hugging_face(model_cfg, hub)?;
    let files = vec![
        (HF_FILES[0], model.config_json.into_bytes()),
        (HF_FILES[1], torch_safetensors(&model.tensors, &[])?),
        (HF_FILES[2], preprocessor_json(image_size).into_bytes()),
    ];
    Ok((model.class.to_string(), files))
}

/// Refuses an output folder holding one of `files` unless `overwrite`, then makes it.
fn prepare_folder(out: &Path, files: &[&str], overwrite: bool) -> Result<(), String> {
    if out.exists() && !out.is_dir() {
        return Err(format!(
            "{}: is a file; the export is a folder of files",
            out.display()
        ));
    }
    if !overwrite {
        if let Some(f) = files.iter().find(|f| out.join(f).exists()) {
            return Err(format!(
                "{}: already exists (pass --overwrite to replace it)",
                out.join(f).display()
            ));
        }
    }
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))
}

/// A safetensors file of named f32 tensors, with `format: pt` (as PyTorch writes) and `meta`.
fn torch_safetensors(tensors: &[NamedTensor], meta: &[(&str, String)]) -> Result<Vec<u8>, String> {
    let views: Vec<(String, Vec<usize>, &[f32])> = tensors
        .iter()
        .map(|(n, s, v)| (n.clone(), s.clone(), v.as_slice()))
        .collect();
    let mut m = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    m.extend(meta.iter().map(|(k, v)| (k.to_string(), v.clone())));
    crate::io::safetensors_bytes(&views, Some(m))
}

/// transformers' `preprocessor_config.json` for a backbone trained on `size`-pixel crops: the
/// shorter side to `size` (bicubic, a = −0.5, as `dinoscope embed` resizes), a centre
/// `size`×`size` crop and ImageNet's mean and deviation, so `AutoImageProcessor` and the
/// feature-extraction pipeline prepare pictures as `embed --size SIZE` does.
pub fn preprocessor_json(size: usize) -> String {
    use crate::data::image::{IMAGENET_MEAN, IMAGENET_STD};
    use crate::model::weights::hf::decimal;
    let c = serde_json::json!({
        "image_processor_type": "BitImageProcessor",
        "do_convert_rgb": true,
        "do_resize": true,
        "size": {"shortest_edge": size},
        "resample": 3,
        "do_center_crop": true,
        "crop_size": {"height": size, "width": size},
        "do_rescale": true,
        "rescale_factor": 1.0 / 255.0,
        "do_normalize": true,
        "image_mean": IMAGENET_MEAN.map(decimal),
        "image_std": IMAGENET_STD.map(decimal),
    });
    serde_json::to_string_pretty(&c).unwrap_or_default()
}
