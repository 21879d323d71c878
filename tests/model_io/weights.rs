//! Backbone weights: both namings, the official DINOv3 names, half precision, writing, errors
//! and config inference.

use super::*;
use dinoscope::model::weights::CONFIG_KEY;

/// Checks a model loaded from Hugging Face names against the raw file.
fn check_hf_fixture(dir: &str) {
    let cfg = fixture_config(dir);
    let path = fixture(dir, "model.safetensors");
    let w = load_backbone(&path, &cfg).unwrap();
    assert_eq!(w.naming, Naming::HuggingFace);
    assert!(w.ignored.is_empty());
    let want: Vec<String> = {
        let mut v: Vec<String> = expected_tensors(&cfg).into_iter().map(|(n, _)| n).collect();
        v.sort();
        v
    };
    assert_eq!(w.tensors.keys().cloned().collect::<Vec<_>>(), want);
    assert_eq!(w.num_params(), cfg.num_params());

    let raw = TensorFile::open(&path).unwrap();
    let d = cfg.dim;
    for i in 0..cfg.depth {
        for param in ["weight", "bias"] {
            let qkv = &w.tensors[&format!("blocks.{i}.attn.qkv.{param}")];
            let per = if param == "weight" { d * d } else { d };
            assert_eq!(qkv.data.len(), 3 * per);
            for (k, part) in ["query", "key", "value"].iter().enumerate() {
                let src = raw
                    .get(&format!(
                        "encoder.layer.{i}.attention.attention.{part}.{param}"
                    ))
                    .unwrap();
                assert_eq!(
                    &qkv.data[k * per..(k + 1) * per],
                    &src.data[..],
                    "{i} {part}"
                );
            }
        }
        let pairs = [
            ("ls1.gamma", "layer_scale1.lambda1"),
            ("ls2.gamma", "layer_scale2.lambda1"),
            ("attn.proj.weight", "attention.output.dense.weight"),
            ("mlp.fc2.bias", "mlp.fc2.bias"),
            ("norm2.weight", "norm2.weight"),
        ];
        for (hub, hf) in pairs {
            let a = &w.tensors[&format!("blocks.{i}.{hub}")];
            let b = raw.get(&format!("encoder.layer.{i}.{hf}")).unwrap();
            assert!(same(a, b), "{hub}");
        }
    }
    for (hub, hf) in [
        ("pos_embed", "embeddings.position_embeddings"),
        ("mask_token", "embeddings.mask_token"),
        ("cls_token", "embeddings.cls_token"),
        (
            "patch_embed.proj.weight",
            "embeddings.patch_embeddings.projection.weight",
        ),
        ("norm.bias", "layernorm.bias"),
    ] {
        assert!(same(&w.tensors[hub], raw.get(hf).unwrap()), "{hub}");
    }
    if cfg.registers > 0 {
        assert!(same(
            &w.tensors["register_tokens"],
            raw.get("embeddings.register_tokens").unwrap()
        ));
    }
    // The bytes variant gives the same.
    let bytes = std::fs::read(&path).unwrap();
    let wb = from_bytes(&path, &bytes, &cfg).unwrap();
    assert_same_weights(&w, &wb);
}

#[test]
fn load_hf_fixture_plain() {
    check_hf_fixture("tiny_dinov2");
}

#[test]
fn load_hf_fixture_registers() {
    check_hf_fixture("tiny_dinov2_reg");
}

#[test]
fn hub_names_round_trip() {
    for dir_name in ["tiny_dinov2", "tiny_dinov2_reg"] {
        let cfg = fixture_config(dir_name);
        let w = load_backbone(&fixture(dir_name, "model.safetensors"), &cfg).unwrap();
        let dir = temp_dir(&format!("hub_{dir_name}"));
        let path = dir.join("hub.safetensors");
        save_hub_safetensors(&path, &w.tensors).unwrap();
        // Overwriting an existing file works too, and leaves no temporary file.
        save_hub_safetensors(&path, &w.tensors).unwrap();
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(files.len(), 1);
        let back = load_backbone(&path, &cfg).unwrap();
        assert_eq!(back.naming, Naming::TorchHub);
        assert_same_weights(&w, &back);
        // In-memory bytes are the same file.
        let bytes = hub_safetensors_bytes(&path, &w.tensors).unwrap();
        assert_eq!(bytes, std::fs::read(&path).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn prefixes_chunks_and_heads() {
    let cfg = fixture_config("tiny_dinov2_reg");
    let w = load_backbone(&fixture("tiny_dinov2_reg", "model.safetensors"), &cfg).unwrap();
    let dir = temp_dir("prefixes");

    // Training-checkpoint layout: teacher.backbone. prefix, 2 chunks of blocks, heads.
    let mut t: BTreeMap<String, HostTensor> = BTreeMap::new();
    for (name, tensor) in &w.tensors {
        // One block per chunk: blocks.{i}.{i}.…
        let name = match name.strip_prefix("blocks.") {
            Some(rest) => {
                let i: usize = rest.split('.').next().unwrap().parse().unwrap();
                format!("blocks.{i}.{rest}")
            }
            None => name.clone(),
        };
        t.insert(format!("teacher.backbone.{name}"), tensor.clone());
    }
    let head = HostTensor {
        shape: vec![2, 2],
        data: vec![1.0; 4],
    };
    t.insert("teacher.dino_head.mlp.0.weight".into(), head.clone());
    t.insert("ibot_head.last_layer.weight_g".into(), head.clone());
    let path = dir.join("ckpt.safetensors");
    save_hub_safetensors(&path, &t).unwrap();
    let back = load_backbone(&path, &cfg).unwrap();
    assert_eq!(back.naming, Naming::TorchHub);
    assert_same_weights(&w, &back);
    assert_eq!(
        back.ignored,
        vec![
            "ibot_head.last_layer.weight_g".to_string(),
            "teacher.dino_head.mlp.0.weight".to_string()
        ]
    );

    // Hugging Face classification checkpoint: dinov2_with_registers. prefix plus a classifier.
    let raw = TensorFile::open(&fixture("tiny_dinov2_reg", "model.safetensors")).unwrap();
    let mut t: BTreeMap<String, HostTensor> = BTreeMap::new();
    for name in raw.names() {
        t.insert(
            format!("dinov2_with_registers.{name}"),
            raw.get(name).unwrap().clone(),
        );
    }
    t.insert("classifier.weight".into(), head.clone());
    let path = dir.join("cls.safetensors");
    save_hub_safetensors(&path, &t).unwrap();
    let back = load_backbone(&path, &cfg).unwrap();
    assert_eq!(back.naming, Naming::HuggingFace);
    assert_same_weights(&w, &back);
    assert_eq!(back.ignored, vec!["classifier.weight".to_string()]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mismatch_lists_every_problem() {
    let cfg = fixture_config("tiny_dinov2");
    let w = load_backbone(&fixture("tiny_dinov2", "model.safetensors"), &cfg).unwrap();
    let dir = temp_dir("mismatch");

    // Hub names: one missing, one mis-shaped, one unexpected.
    let d = cfg.dim;
    let last = cfg.depth - 1;
    let past = cfg.depth + 5;
    let tokens = 1 + cfg.pos_grid * cfg.pos_grid;
    let mut t = w.tensors.clone();
    t.remove(&format!("blocks.{last}.mlp.fc2.bias"));
    t.insert(
        "pos_embed".into(),
        HostTensor {
            shape: vec![1, tokens + 3, d],
            data: vec![0.0; (tokens + 3) * d],
        },
    );
    t.insert(
        format!("blocks.{past}.norm1.weight"),
        HostTensor {
            shape: vec![d],
            data: vec![0.0; d],
        },
    );
    let path = dir.join("broken.safetensors");
    save_hub_safetensors(&path, &t).unwrap();
    let err = load_backbone(&path, &cfg).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, WeightsError::Mismatch { .. }), "{msg}");
    assert!(msg.contains("broken.safetensors"), "{msg}");
    assert!(
        msg.contains(&format!("blocks.{last}.mlp.fc2.bias [{d}]")),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "pos_embed: expected [1, {tokens}, {d}], found [1, {}, {d}]",
            tokens + 3
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("blocks.{past}.norm1.weight [{d}]")),
        "{msg}"
    );

    // Hugging Face names: a missing key projection and a mis-shaped fc1.
    let raw = TensorFile::open(&fixture("tiny_dinov2", "model.safetensors")).unwrap();
    let mut t: BTreeMap<String, HostTensor> = BTreeMap::new();
    for name in raw.names() {
        t.insert(name.clone(), raw.get(name).unwrap().clone());
    }
    t.remove("encoder.layer.0.attention.attention.key.weight");
    let (h, short) = (cfg.mlp_hidden, cfg.mlp_hidden / 2);
    t.insert(
        format!("encoder.layer.{last}.mlp.fc1.weight"),
        HostTensor {
            shape: vec![short, d],
            data: vec![0.0; short * d],
        },
    );
    let path = dir.join("broken_hf.safetensors");
    save_hub_safetensors(&path, &t).unwrap();
    let msg = load_backbone(&path, &cfg).unwrap_err().to_string();
    assert!(msg.contains("broken_hf.safetensors"), "{msg}");
    assert!(
        msg.contains("encoder.layer.0.attention.attention.key.weight"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "blocks.{last}.mlp.fc1.weight: expected [{h}, {d}], found [{short}, {d}]"
        )) && msg.contains(&format!("encoder.layer.{last}.mlp.fc1.weight")),
        "{msg}"
    );

    // A config that does not fit at all (registers expected, none present).
    let reg = fixture_config("tiny_dinov2_reg");
    let msg = load_backbone(&fixture("tiny_dinov2", "model.safetensors"), &reg)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(&format!(
            "register_tokens [1, {}, {}]",
            reg.registers, reg.dim
        )) && msg.contains("embeddings.register_tokens"),
        "{msg}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_files_give_clear_errors() {
    let cfg = fixture_config("tiny_dinov2");
    let dir = temp_dir("bad");
    let good = std::fs::read(fixture("tiny_dinov2", "model.safetensors")).unwrap();

    let truncated = dir.join("truncated.safetensors");
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    let msg = load_backbone(&truncated, &cfg).unwrap_err().to_string();
    assert!(
        msg.contains("truncated.safetensors") && msg.contains("truncated"),
        "{msg}"
    );

    let tiny = dir.join("tiny.safetensors");
    std::fs::write(&tiny, &good[..5]).unwrap();
    let msg = load_backbone(&tiny, &cfg).unwrap_err().to_string();
    assert!(msg.contains("tiny.safetensors"), "{msg}");
    let msg = infer_config(&tiny).unwrap_err().to_string();
    assert!(msg.contains("tiny.safetensors"), "{msg}");

    let text = dir.join("notes.safetensors");
    std::fs::write(
        &text,
        "these are not tensors, just some words in a text file",
    )
    .unwrap();
    let err = load_backbone(&text, &cfg).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, WeightsError::Format { .. }), "{msg}");
    assert!(msg.contains("notes.safetensors"), "{msg}");
    assert!(msg.contains("not a valid safetensors"), "{msg}");
    let msg = infer_config(&text).unwrap_err().to_string();
    assert!(msg.contains("notes.safetensors"), "{msg}");

    let missing = dir.join("absent.safetensors");
    let msg = load_backbone(&missing, &cfg).unwrap_err().to_string();
    assert!(msg.contains("absent.safetensors"), "{msg}");

    // Integer tensors are not weights.
    let mut meta = BTreeMap::new();
    let bytes: Vec<u8> = 7i32.to_le_bytes().to_vec();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::I32, vec![1], &bytes).unwrap();
    meta.insert("cls_token".to_string(), view);
    let ints = safetensors::serialize(meta, None).unwrap();
    let msg = from_bytes(Path::new("ints.safetensors"), &ints, &cfg)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("ints.safetensors") && msg.contains("I32"),
        "{msg}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn infer_config_matches_fixture_configs() {
    for dir in ["tiny_dinov2", "tiny_dinov2_reg"] {
        let cfg = fixture_config(dir);
        let path = fixture(dir, "model.safetensors");
        let inferred = infer_config(&path).unwrap();
        // Heads cannot be inferred: the fewest heads of head dim at most 64 (DINOv2's) are
        // assumed. ln_eps cannot be inferred either (1e-6 assumed).
        let assumed = (1..=cfg.dim)
            .find(|h| cfg.dim.is_multiple_of(*h) && cfg.dim / h <= 64)
            .unwrap();
        assert_eq!(inferred.heads, assumed);
        assert_eq!(inferred.ln_eps, 1e-6);
        assert_eq!(
            VitConfig {
                heads: cfg.heads,
                ln_eps: cfg.ln_eps,
                ..inferred.clone()
            },
            cfg,
            "{dir}"
        );
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(infer_config_from_bytes(&path, &bytes).unwrap(), inferred);
        // With config.json next to the weights, that config is used.
        assert_eq!(config_for_weights(&path).unwrap(), cfg);
    }
    // Hub names (after a round trip), no config in the folder: inferred.
    let cfg = fixture_config("tiny_dinov2_reg");
    let w = load_backbone(&fixture("tiny_dinov2_reg", "model.safetensors"), &cfg).unwrap();
    let dir = temp_dir("infer");
    let path = dir.join("w.safetensors");
    save_hub_safetensors(&path, &w.tensors).unwrap();
    let inferred = config_for_weights(&path).unwrap();
    assert_eq!(
        VitConfig {
            heads: 4,
            ..inferred
        },
        cfg
    );
    // A config.ron next to it wins, and is named as the source.
    std::fs::write(dir.join("config.ron"), cfg.to_ron().unwrap()).unwrap();
    assert_eq!(
        config_and_source(&path).unwrap(),
        (cfg.clone(), Some(dir.join("config.ron")))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A weights file that carries its config (`dinoscope_config`, as dinoscope's backbone files do)
/// reads as that config, where its shapes alone would give 1 head; a carried config that does
/// not read is an error naming the file and the key.
#[test]
fn a_config_carried_in_the_weights_wins_over_the_shapes() {
    let cfg = fixture_config("tiny_dinov2_reg");
    let w = load_backbone(&fixture("tiny_dinov2_reg", "model.safetensors"), &cfg).unwrap();
    let tensors: Vec<(String, Vec<usize>, &[f32])> = w
        .tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.shape.clone(), t.data.as_slice()))
        .collect();
    let with = |config: String| {
        let meta = std::collections::HashMap::from([(CONFIG_KEY.to_string(), config)]);
        dinoscope::io::safetensors_bytes(&tensors, Some(meta)).unwrap()
    };
    let dir = temp_dir("carried");
    let path = dir.join("w.safetensors");
    std::fs::write(&path, with(cfg.to_ron().unwrap())).unwrap();
    assert_eq!(config_for_weights(&path).unwrap(), cfg);
    // A config beside the file that says otherwise (an export into the run's folder, a stale
    // one) is left aside, as is one that does not read.
    let stale = VitConfig {
        heads: (1..=cfg.dim)
            .find(|h| cfg.dim.is_multiple_of(*h) && *h != cfg.heads)
            .unwrap(),
        ..cfg.clone()
    };
    std::fs::write(dir.join("config.ron"), stale.to_ron().unwrap()).unwrap();
    assert_eq!(config_and_source(&path).unwrap(), (cfg.clone(), None));
    std::fs::write(dir.join("config.ron"), "(dim: oops)").unwrap();
    assert_eq!(config_for_weights(&path).unwrap(), cfg);
    std::fs::remove_file(dir.join("config.ron")).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(infer_config_from_bytes(&path, &bytes).unwrap(), cfg);
    std::fs::write(&path, with("(dim: oops)".into())).unwrap();
    let msg = config_for_weights(&path).unwrap_err().to_string();
    assert!(
        msg.contains("w.safetensors") && msg.contains(CONFIG_KEY),
        "{msg}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn infer_config_of_a_full_size_layout() {
    // A giant-like layout (SwiGLU, registers, head dim 64) at toy size, under prefixed hub names.
    let cfg = VitConfig {
        dim: 128,
        depth: 3,
        heads: 2,
        mlp_hidden: 344,
        ffn: Ffn::SwiGlu,
        patch: 14,
        in_chans: 3,
        registers: 4,
        pos_grid: 5,
        ln_eps: 1e-6,
        interp: InterpMode::BicubicAntialias,
        qkv_bias: true,
        layerscale: true,
        rope: None,
        key_bias: true,
    };
    let mut t = BTreeMap::new();
    for (name, shape) in expected_tensors(&cfg) {
        let n = shape.iter().product();
        t.insert(
            format!("module.backbone.{name}"),
            HostTensor {
                shape,
                data: vec![0.5; n],
            },
        );
    }
    let bytes = hub_safetensors_bytes(Path::new("toy.safetensors"), &t).unwrap();
    let inferred = infer_config_from_bytes(Path::new("toy.safetensors"), &bytes).unwrap();
    assert_eq!(inferred, cfg);
    let w = from_bytes(Path::new("toy.safetensors"), &bytes, &cfg).unwrap();
    assert_eq!(w.num_params(), cfg.num_params());
    // One damaged block: the MLP width is the other blocks', and only that block's tensor is
    // reported (block 0's width alone would have made every other block's look wrong).
    let key = "module.backbone.blocks.0.mlp.w12.weight";
    let half = cfg.mlp_hidden * cfg.dim;
    t.insert(
        key.into(),
        HostTensor {
            shape: vec![cfg.mlp_hidden, cfg.dim],
            data: vec![0.5; half],
        },
    );
    let bytes = hub_safetensors_bytes(Path::new("toy.safetensors"), &t).unwrap();
    let inferred = infer_config_from_bytes(Path::new("toy.safetensors"), &bytes).unwrap();
    assert_eq!(inferred.mlp_hidden, cfg.mlp_hidden);
    let msg = from_bytes(Path::new("toy.safetensors"), &bytes, &inferred)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("blocks.0.mlp.w12.weight"), "{msg}");
    assert!(
        !msg.contains("blocks.1.") && !msg.contains("blocks.2."),
        "{msg}"
    );
}

/// The tensor list of a Hugging Face `Dinov2Model` / `Dinov2WithRegistersModel` file (spec §9.2).
fn hf_layout(cfg: &VitConfig) -> Vec<(String, Vec<usize>)> {
    let d = cfg.dim;
    let h = cfg.mlp_hidden;
    let m2 = cfg.pos_grid * cfg.pos_grid;
    let mut v: Vec<(String, Vec<usize>)> = vec![
        ("embeddings.cls_token".into(), vec![1, 1, d]),
        ("embeddings.mask_token".into(), vec![1, d]),
        ("embeddings.position_embeddings".into(), vec![1, 1 + m2, d]),
        (
            "embeddings.patch_embeddings.projection.weight".into(),
            vec![d, 3, 14, 14],
        ),
        (
            "embeddings.patch_embeddings.projection.bias".into(),
            vec![d],
        ),
        ("layernorm.weight".into(), vec![d]),
        ("layernorm.bias".into(), vec![d]),
    ];
    if cfg.registers > 0 {
        v.push((
            "embeddings.register_tokens".into(),
            vec![1, cfg.registers, d],
        ));
    }
    for i in 0..cfg.depth {
        let l = |s: &str| format!("encoder.layer.{i}.{s}");
        for n in ["norm1", "norm2"] {
            v.push((l(&format!("{n}.weight")), vec![d]));
            v.push((l(&format!("{n}.bias")), vec![d]));
        }
        for p in ["query", "key", "value"] {
            v.push((l(&format!("attention.attention.{p}.weight")), vec![d, d]));
            v.push((l(&format!("attention.attention.{p}.bias")), vec![d]));
        }
        v.push((l("attention.output.dense.weight"), vec![d, d]));
        v.push((l("attention.output.dense.bias"), vec![d]));
        v.push((l("layer_scale1.lambda1"), vec![d]));
        v.push((l("layer_scale2.lambda1"), vec![d]));
        v.push((l("mlp.fc1.weight"), vec![h, d]));
        v.push((l("mlp.fc1.bias"), vec![h]));
        v.push((l("mlp.fc2.weight"), vec![d, h]));
        v.push((l("mlp.fc2.bias"), vec![d]));
    }
    v
}

#[test]
fn dinov2_small_hf_layout_loads() {
    for name in ["vits14", "vits14_reg"] {
        let cfg = VitConfig::preset(name).unwrap();
        let layout = hf_layout(&cfg);
        assert_eq!(layout.len(), if cfg.registers > 0 { 224 } else { 223 });
        let mut t = BTreeMap::new();
        for (k, (n, shape)) in layout.into_iter().enumerate() {
            let len = shape.iter().product();
            t.insert(
                n,
                HostTensor {
                    shape,
                    data: vec![k as f32; len],
                },
            );
        }
        let p = Path::new("dinov2-small/model.safetensors");
        let bytes = hub_safetensors_bytes(p, &t).unwrap();
        assert_eq!(infer_config_from_bytes(p, &bytes).unwrap(), cfg);
        let w = from_bytes(p, &bytes, &cfg).unwrap();
        assert_eq!(w.naming, Naming::HuggingFace);
        assert_eq!(w.tensors.len(), if cfg.registers > 0 { 176 } else { 175 });
        assert_eq!(w.num_params(), cfg.num_params());
        let qkv = &w.tensors["blocks.11.attn.qkv.bias"];
        let q = t["encoder.layer.11.attention.attention.query.bias"].data[0];
        let v = t["encoder.layer.11.attention.attention.value.bias"].data[0];
        assert_eq!((qkv.data[0], qkv.data[1151]), (q, v));
    }
}

#[test]
fn half_precision_files_decode_to_f32() {
    let cfg = fixture_config("tiny_dinov2");
    let w = load_backbone(&fixture("tiny_dinov2", "model.safetensors"), &cfg).unwrap();
    // BF16 keeps the top 16 bits of an f32.
    let encoded: Vec<(String, Vec<usize>, Vec<u8>)> = w
        .tensors
        .iter()
        .map(|(n, t)| {
            let bytes = t
                .data
                .iter()
                .flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes())
                .collect();
            (n.clone(), t.shape.clone(), bytes)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = encoded
        .iter()
        .map(|(n, s, b)| {
            let view = safetensors::tensor::TensorView::new(safetensors::Dtype::BF16, s.clone(), b)
                .unwrap();
            (n.clone(), view)
        })
        .collect();
    let bytes = safetensors::serialize(views, None).unwrap();
    let back = from_bytes(Path::new("bf16.safetensors"), &bytes, &cfg).unwrap();
    for (name, t) in &w.tensors {
        let want: Vec<f32> = t
            .data
            .iter()
            .map(|v| f32::from_bits(v.to_bits() & 0xffff_0000))
            .collect();
        assert_eq!(back.tensors[name].data, want, "{name}");
    }
}

#[test]
fn dinov3_style_mask_token_is_accepted() {
    let cfg = fixture_config("tiny_dinov2");
    let w = load_backbone(&fixture("tiny_dinov2", "model.safetensors"), &cfg).unwrap();
    let mut t = w.tensors.clone();
    t.get_mut("mask_token").unwrap().shape = vec![1, 1, cfg.dim];
    let bytes = hub_safetensors_bytes(Path::new("m.safetensors"), &t).unwrap();
    let back = from_bytes(Path::new("m.safetensors"), &bytes, &cfg).unwrap();
    assert_same_weights(&w, &back);
}

#[test]
fn an_oversized_safetensors_header_is_called_that() {
    let dir = temp_dir("bigheader");
    let p = dir.join("model.safetensors");
    let mut bytes = 150_000_000u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    std::fs::write(&p, bytes).expect("write");
    let err = dinoscope::model::weights::infer_config(&p)
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("over the") && err.contains("limit") && !err.contains("does not fit"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn host(shape: &[usize], seed: usize) -> HostTensor {
    let n: usize = shape.iter().product();
    HostTensor {
        shape: shape.to_vec(),
        data: (0..n)
            .map(|i| ((i * 7 + seed * 13) % 23) as f32 - 11.0)
            .collect(),
    }
}

fn cat(parts: &[&HostTensor]) -> HostTensor {
    let rows: usize = parts.iter().map(|p| p.shape[0]).sum();
    let mut shape = parts[0].shape.clone();
    shape[0] = rows;
    HostTensor {
        shape,
        data: parts.iter().flat_map(|p| p.data.clone()).collect(),
    }
}

fn load_named(cfg: &VitConfig, tensors: &BTreeMap<String, HostTensor>) -> BackboneWeights {
    let path = Path::new("v3.safetensors");
    let bytes = hub_safetensors_bytes(path, tensors).unwrap();
    from_bytes(path, &bytes, cfg).unwrap()
}

/// The official facebookresearch/dinov3 names (fused qkv with a masked key bias, storage tokens,
/// separate SwiGLU w1/w2/w3, weightless buffers) load to the same tensors as the Hugging Face
/// `DINOv3ViTModel` names, for the MLP fixture and a gated toy model; the config is inferred as
/// DINOv3 from the names alone.
#[test]
fn dinov3_official_and_hf_names_agree() {
    let cfg = fixture_config("tiny_dinov3");
    let hf_path = fixture("tiny_dinov3", "model.safetensors");
    let hf = load_backbone(&hf_path, &cfg).unwrap();
    assert_eq!(hf.naming, Naming::HuggingFace);
    // The key third of the bias is zero: Hugging Face has none.
    let d = cfg.dim;
    let bias = &hf.tensors["blocks.0.attn.qkv.bias"].data;
    assert!(bias[d..2 * d].iter().all(|v| *v == 0.0));
    assert!(bias[..d].iter().any(|v| *v != 0.0));
    let file = TensorFile::open(&hf_path).unwrap();
    let get = |n: &str| file.get(n).unwrap().clone();
    let mut official = BTreeMap::new();
    official.insert("cls_token".into(), get("embeddings.cls_token"));
    let mut mask = get("embeddings.mask_token");
    mask.shape = vec![1, d];
    official.insert("mask_token".into(), mask);
    official.insert("storage_tokens".into(), get("embeddings.register_tokens"));
    for p in ["weight", "bias"] {
        official.insert(
            format!("patch_embed.proj.{p}"),
            get(&format!("embeddings.patch_embeddings.{p}")),
        );
        official.insert(format!("norm.{p}"), get(&format!("norm.{p}")));
    }
    official.insert("rope_embed.periods".into(), host(&[cfg.head_dim() / 4], 1));
    for i in 0..cfg.depth {
        let l = |s: &str| get(&format!("layer.{i}.{s}"));
        let b = |s: &str| format!("blocks.{i}.{s}");
        let qkv_w = cat(&[
            &l("attention.q_proj.weight"),
            &l("attention.k_proj.weight"),
            &l("attention.v_proj.weight"),
        ]);
        // A nonzero key bias that the official bias_mask switches off.
        let qkv_b = cat(&[
            &l("attention.q_proj.bias"),
            &host(&[d], 2),
            &l("attention.v_proj.bias"),
        ]);
        official.insert(b("attn.qkv.weight"), qkv_w);
        official.insert(b("attn.qkv.bias"), qkv_b);
        official.insert(b("attn.qkv.bias_mask"), host(&[3 * d], 3));
        for p in ["weight", "bias"] {
            official.insert(
                b(&format!("attn.proj.{p}")),
                l(&format!("attention.o_proj.{p}")),
            );
            official.insert(b(&format!("mlp.fc1.{p}")), l(&format!("mlp.up_proj.{p}")));
            official.insert(b(&format!("mlp.fc2.{p}")), l(&format!("mlp.down_proj.{p}")));
            official.insert(b(&format!("norm1.{p}")), l(&format!("norm1.{p}")));
            official.insert(b(&format!("norm2.{p}")), l(&format!("norm2.{p}")));
        }
        official.insert(b("ls1.gamma"), l("layer_scale1.lambda1"));
        official.insert(b("ls2.gamma"), l("layer_scale2.lambda1"));
    }
    let loaded = load_named(&cfg, &official);
    assert_eq!(loaded.naming, Naming::TorchHub);
    assert_eq!(loaded.tensors.len(), hf.tensors.len());
    for (name, t) in &hf.tensors {
        let got = &loaded.tensors[name];
        assert_eq!((&got.shape, &got.data), (&t.shape, &t.data), "{name}");
    }
    // Inferred from the names alone: rotary, registers, eps 1e-5, no position table.
    let path = Path::new("official.safetensors");
    let bytes = hub_safetensors_bytes(path, &official).unwrap();
    let inferred = infer_config_from_bytes(path, &bytes).unwrap();
    assert_eq!(
        VitConfig {
            heads: 4,
            ..inferred
        },
        cfg
    );

    // Gated (S+/H+ style): gate_proj/up_proj/down_proj and w1/w2/w3 both fill w12 and w3.
    let gated = VitConfig {
        ffn: Ffn::SwiGlu,
        mlp_hidden: 40,
        depth: 1,
        ..cfg.clone()
    };
    let mut hf_names = BTreeMap::new();
    let mut off_names = BTreeMap::new();
    for (k, (name, shape)) in expected_tensors(&gated).into_iter().enumerate() {
        let t = host(&shape, k);
        match name.as_str() {
            "blocks.0.mlp.w12.weight" | "blocks.0.mlp.w12.bias" => {
                let p = name.rsplit('.').next().unwrap();
                let half = t.data.len() / 2;
                let mut s = shape.clone();
                s[0] /= 2;
                let (g, u) = (
                    HostTensor {
                        shape: s.clone(),
                        data: t.data[..half].to_vec(),
                    },
                    HostTensor {
                        shape: s,
                        data: t.data[half..].to_vec(),
                    },
                );
                hf_names.insert(format!("layer.0.mlp.gate_proj.{p}"), g.clone());
                hf_names.insert(format!("layer.0.mlp.up_proj.{p}"), u.clone());
                off_names.insert(format!("blocks.0.mlp.w1.{p}"), g);
                off_names.insert(format!("blocks.0.mlp.w2.{p}"), u);
            }
            "blocks.0.mlp.w3.weight" | "blocks.0.mlp.w3.bias" => {
                let p = name.rsplit('.').next().unwrap();
                hf_names.insert(format!("layer.0.mlp.down_proj.{p}"), t.clone());
                off_names.insert(name.clone(), t);
            }
            _ => {
                off_names.insert(name.clone(), t.clone());
                // The rest under Hugging Face names, from the fixture's mapping.
                let hf_name = match name.as_str() {
                    "cls_token" | "mask_token" | "register_tokens" => format!("embeddings.{name}"),
                    "patch_embed.proj.weight" => "embeddings.patch_embeddings.weight".into(),
                    "patch_embed.proj.bias" => "embeddings.patch_embeddings.bias".into(),
                    "blocks.0.attn.qkv.weight" | "blocks.0.attn.qkv.bias" => {
                        let p = name.rsplit('.').next().unwrap();
                        let third = t.data.len() / 3;
                        let mut s = shape.clone();
                        s[0] /= 3;
                        for (j, which) in ["q", "k", "v"].iter().enumerate() {
                            if p == "bias" && *which == "k" {
                                continue;
                            }
                            hf_names.insert(
                                format!("layer.0.attention.{which}_proj.{p}"),
                                HostTensor {
                                    shape: s.clone(),
                                    data: t.data[j * third..(j + 1) * third].to_vec(),
                                },
                            );
                        }
                        continue;
                    }
                    other => other
                        .replace("blocks.0.", "layer.0.")
                        .replace("attn.proj", "attention.o_proj")
                        .replace("ls1.gamma", "layer_scale1.lambda1")
                        .replace("ls2.gamma", "layer_scale2.lambda1"),
                };
                hf_names.insert(hf_name, t);
            }
        }
    }
    let a = load_named(&gated, &hf_names);
    let b = load_named(&gated, &off_names);
    assert_eq!(a.naming, Naming::HuggingFace);
    for (name, t) in &a.tensors {
        let got = &b.tensors[name];
        assert_eq!((&got.shape, &got.data), (&t.shape, &t.data), "{name}");
    }
    assert_eq!(a.tensors.len(), b.tensors.len());
}
