//! Presets, Hugging Face JSON and RON configs, and their error reports.

use super::*;

#[test]
fn preset_param_counts() {
    let cases = [
        ("vits14", 22_056_576u64),
        ("vits14_reg", 22_058_112),
        ("vitb14", 86_580_480),
        ("vitb14_reg", 86_580_480 + 4 * 768),
        ("vitl14", 304_368_640),
        ("vitl14_reg", 304_368_640 + 4 * 1024),
        ("vitg14", 1_136_480_768),
        ("vitg14_reg", 1_136_480_768 + 4 * 1536),
    ];
    for (name, want) in cases {
        let cfg = VitConfig::preset(name).unwrap();
        assert_eq!(cfg.num_params(), want, "{name}");
        cfg.validate().unwrap();
        assert_eq!(cfg.head_dim(), 64, "{name}");
        // expected_tensors agrees with num_params.
        let n: u64 = expected_tensors(&cfg)
            .iter()
            .map(|(_, s)| s.iter().product::<usize>() as u64)
            .sum();
        assert_eq!(n, want, "{name}: expected_tensors");
    }
    let s = VitConfig::preset("vits14").unwrap();
    assert_eq!(expected_tensors(&s).len(), 175);
    let sr = VitConfig::preset("dinov2_vits14_reg").unwrap();
    assert_eq!(expected_tensors(&sr).len(), 176);
    assert_eq!(sr.registers, 4);
    assert_eq!(sr.interp, InterpMode::BicubicAntialias);
    assert_eq!(s.interp, InterpMode::Bicubic);
    let g = VitConfig::preset("vitg14").unwrap();
    assert_eq!((g.ffn, g.mlp_hidden), (Ffn::SwiGlu, 4096));
    assert_eq!((g.dim, g.depth, g.heads), (1536, 40, 24));
    let l = VitConfig::preset("vitl14").unwrap();
    assert_eq!(
        (l.dim, l.depth, l.heads, l.mlp_hidden),
        (1024, 24, 16, 4096)
    );
}

#[test]
fn unknown_preset_lists_known_names() {
    let err = VitConfig::preset("vitx14").unwrap_err();
    assert!(matches!(err, ConfigError::UnknownPreset { .. }));
    let text = err.to_string();
    assert!(text.contains("vitx14"), "{text}");
    for p in PRESETS {
        assert!(text.contains(p), "{text}");
    }
}

/// A fixture's config.json as JSON, to read the expected values from (the sizes differ
/// between fixture sets).
fn hf_json(dir: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture(dir, "config.json")).expect("config.json");
    serde_json::from_str(&text).expect("config.json is JSON")
}

fn count(j: &serde_json::Value, key: &str) -> usize {
    j[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} in config.json")) as usize
}

/// What a DINOv2 config.json describes, read field by field.
fn dinov2_from(j: &serde_json::Value, interp: InterpMode) -> VitConfig {
    let dim = count(j, "hidden_size");
    let patch = count(j, "patch_size");
    let swiglu = j["use_swiglu_ffn"].as_bool() == Some(true);
    let hidden = dim * count(j, "mlp_ratio");
    VitConfig {
        dim,
        depth: count(j, "num_hidden_layers"),
        heads: count(j, "num_attention_heads"),
        // The official SwiGLU width: two thirds, rounded up to a multiple of 8.
        mlp_hidden: if swiglu {
            (hidden * 2 / 3).div_ceil(8) * 8
        } else {
            hidden
        },
        ffn: if swiglu { Ffn::SwiGlu } else { Ffn::Mlp },
        patch,
        in_chans: count(j, "num_channels"),
        registers: j["num_register_tokens"].as_u64().unwrap_or(0) as usize,
        pos_grid: count(j, "image_size") / patch,
        ln_eps: j["layer_norm_eps"].as_f64().expect("layer_norm_eps") as f32,
        interp,
        qkv_bias: j["qkv_bias"].as_bool().unwrap_or(true),
        layerscale: true,
        rope: None,
        key_bias: true,
    }
}

#[test]
fn hf_json_fixture_configs() {
    let plain = fixture_config("tiny_dinov2");
    assert_eq!(
        plain,
        dinov2_from(&hf_json("tiny_dinov2"), InterpMode::Bicubic)
    );
    assert_eq!(plain.head_dim() * plain.heads, plain.dim);
    let reg = fixture_config("tiny_dinov2_reg");
    let j = hf_json("tiny_dinov2_reg");
    assert_eq!(reg, dinov2_from(&j, InterpMode::BicubicAntialias));
    assert!(reg.registers > 0, "the register model has registers");
    // Registers add their tokens' parameters to a model of the same sizes.
    let without = VitConfig {
        registers: 0,
        ..reg.clone()
    };
    assert_eq!(
        reg.num_params(),
        without.num_params() + (reg.registers * reg.dim) as u64
    );
}

#[test]
fn hf_json_small_and_giant_like_hub_configs() {
    // The published facebook/dinov2-small config, reduced to its fields.
    let small = r#"{"architectures":["Dinov2Model"],"hidden_act":"gelu","hidden_size":384,
        "image_size":518,"layer_norm_eps":1e-06,"layerscale_value":1.0,"mlp_ratio":4,
        "model_type":"dinov2","num_attention_heads":6,"num_channels":3,"num_hidden_layers":12,
        "patch_size":14,"qkv_bias":true,"use_swiglu_ffn":false}"#;
    let cfg = VitConfig::from_hf_json(small, "small/config.json").unwrap();
    assert_eq!(cfg, VitConfig::preset("vits14").unwrap());
    let giant = small
        .replace("\"hidden_size\":384", "\"hidden_size\":1536")
        .replace("\"num_attention_heads\":6", "\"num_attention_heads\":24")
        .replace("\"num_hidden_layers\":12", "\"num_hidden_layers\":40")
        .replace("\"use_swiglu_ffn\":false", "\"use_swiglu_ffn\":true")
        .replace(
            "\"model_type\":\"dinov2\"",
            "\"model_type\":\"dinov2_with_registers\"",
        )
        .replace(
            "\"patch_size\":14",
            "\"patch_size\":14,\"num_register_tokens\":4",
        );
    let cfg = VitConfig::from_hf_json(&giant, "giant/config.json").unwrap();
    assert_eq!(cfg, VitConfig::preset("vitg14_reg").unwrap());
}

#[test]
fn hf_json_dinov3_config() {
    let v3 = fixture_config("tiny_dinov3");
    let j = hf_json("tiny_dinov3");
    let gated = j["use_gated_mlp"].as_bool() == Some(true);
    assert_eq!(
        v3,
        VitConfig {
            dim: count(&j, "hidden_size"),
            depth: count(&j, "num_hidden_layers"),
            heads: count(&j, "num_attention_heads"),
            mlp_hidden: count(&j, "intermediate_size"),
            ffn: if gated { Ffn::SwiGlu } else { Ffn::Mlp },
            patch: count(&j, "patch_size"),
            in_chans: count(&j, "num_channels"),
            registers: count(&j, "num_register_tokens"),
            pos_grid: 0,
            ln_eps: j["layer_norm_eps"].as_f64().expect("layer_norm_eps") as f32,
            interp: InterpMode::Bicubic,
            qkv_bias: j["query_bias"].as_bool().expect("query_bias"),
            layerscale: true,
            rope: Some(dinoscope::model::config::Rope {
                base: j["rope_theta"].as_f64().expect("rope_theta") as f32,
            }),
            key_bias: j["key_bias"].as_bool().expect("key_bias"),
        }
    );
    // No position table in the parameter count.
    if !gated {
        let (d, h) = (v3.dim as u64, v3.mlp_hidden as u64);
        let p = (v3.patch * v3.patch * v3.in_chans) as u64;
        let block = 4 * d * d + 3 * d + d + 2 * d * h + h + d + 4 * d + 2 * d;
        let tokens = 2 * d + v3.registers as u64 * d;
        assert_eq!(
            v3.num_params(),
            d * p + d + tokens + v3.depth as u64 * block + 2 * d
        );
    }
    let text = std::fs::read_to_string(fixture("tiny_dinov3", "config.json")).unwrap();
    // A gated MLP must name SiLU; the runtime's qkv bias is on q and v together or on neither.
    let gated = text.replace("\"use_gated_mlp\": false", "\"use_gated_mlp\": true");
    assert_ne!(gated, text);
    let msg = VitConfig::from_hf_json(&gated, "g.json")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("g.json") && msg.contains("silu"), "{msg}");
    let silu = gated.replace("\"gelu\"", "\"silu\"");
    let cfg = VitConfig::from_hf_json(&silu, "s.json").unwrap();
    assert_eq!(cfg.ffn, Ffn::SwiGlu);
    let lopsided = text.replace("\"value_bias\": true", "\"value_bias\": false");
    assert_ne!(lopsided, text);
    let msg = VitConfig::from_hf_json(&lopsided, "l.json")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("value_bias"), "{msg}");
    // The released presets.
    let s16 = VitConfig::preset("dinov3_vits16").unwrap();
    assert_eq!((s16.dim, s16.patch, s16.registers), (384, 16, 4));
    assert_eq!(s16.num_params(), 21_601_152);
    let plus = VitConfig::preset("vits16plus").unwrap();
    assert_eq!((plus.ffn, plus.mlp_hidden), (Ffn::SwiGlu, 1536));
    let h = VitConfig::preset("vith16plus").unwrap();
    assert_eq!(h.mlp_hidden, 5120);
    let g = VitConfig::preset("vit7b16").unwrap();
    assert_eq!((g.mlp_hidden, g.qkv_bias), (8192, false));
}

#[test]
fn hf_json_errors() {
    let base = std::fs::read_to_string(fixture("tiny_dinov2", "config.json")).unwrap();
    let tanh = base.replace("\"gelu\"", "\"gelu_pytorch_tanh\"");
    let msg = VitConfig::from_hf_json(&tanh, "x.json")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("gelu_pytorch_tanh") && msg.contains("x.json"),
        "{msg}"
    );

    let json: serde_json::Value = serde_json::from_str(&base).unwrap();
    let edited = |f: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)| {
        let mut j = json.clone();
        f(j.as_object_mut().expect("an object"));
        j.to_string()
    };
    let no_dim = edited(&|j| {
        j.remove("hidden_size");
    });
    let msg = VitConfig::from_hf_json(&no_dim, "nodim.json")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("hidden_size") && msg.contains("nodim.json"),
        "{msg}"
    );

    let dim = count(&json, "hidden_size");
    let heads = (2..)
        .find(|h| !dim.is_multiple_of(*h))
        .expect("a count that does not divide");
    let bad_heads = edited(&|j| {
        j.insert("num_attention_heads".into(), heads.into());
    });
    let err = VitConfig::from_hf_json(&bad_heads, "heads.json").unwrap_err();
    assert!(matches!(err, ConfigError::Invalid { .. }));
    assert!(err.to_string().contains("not divisible"), "{err}");

    let msg = VitConfig::from_hf_json("not json", "junk.json")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("junk.json"), "{msg}");
}

#[test]
fn validate_reports_problems() {
    let mut cfg = VitConfig::preset("vits14").unwrap();
    cfg.heads = 3; // head dim 128
    let msg = cfg.validate().unwrap_err().to_string();
    assert!(msg.contains("head dim 128") && msg.contains("64"), "{msg}");
    cfg.heads = 5;
    assert!(cfg
        .validate()
        .unwrap_err()
        .to_string()
        .contains("divisible"));
    cfg.heads = 6;
    cfg.patch = 0;
    cfg.ln_eps = 0.0;
    let msg = cfg.validate().unwrap_err().to_string();
    assert!(msg.contains("patch") && msg.contains("ln_eps"), "{msg}");
    // A grid whose square wraps around is too large, not empty.
    let mut cfg = VitConfig::preset("vits14").unwrap();
    cfg.pos_grid = 1 << 32;
    let msg = cfg.validate().unwrap_err().to_string();
    assert!(msg.contains("position table"), "{msg}");
}

#[test]
fn ron_round_trip() {
    let mut configs: Vec<VitConfig> = PRESETS
        .iter()
        .map(|p| VitConfig::preset(p).unwrap())
        .collect();
    // The 7B's heads are 128 wide, past the attention kernel's 64: its config says so.
    let big = configs.pop().unwrap();
    assert_eq!(big, VitConfig::preset("vit7b16").unwrap());
    let msg = big.validate().unwrap_err().to_string();
    assert!(msg.contains("head dim 128"), "{msg}");
    configs.push(fixture_config("tiny_dinov2_reg"));
    for cfg in configs {
        let text = cfg.to_ron().unwrap();
        let back = VitConfig::from_ron(&text, "round.ron").unwrap();
        assert_eq!(back, cfg, "{text}");
    }
    let dir = temp_dir("ron");
    let path = dir.join("m.ron");
    let cfg = VitConfig::preset("vitb14_reg").unwrap();
    std::fs::write(&path, cfg.to_ron().unwrap()).unwrap();
    assert_eq!(VitConfig::load(&path).unwrap(), cfg);
    // Errors name the file.
    std::fs::write(&path, "(dim: 384, oops: 1)").unwrap();
    let msg = VitConfig::load(&path).unwrap_err().to_string();
    assert!(msg.contains("m.ron"), "{msg}");
    let msg = VitConfig::load(&dir.join("missing.ron"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("missing.ron"), "{msg}");
    let msg = VitConfig::load(&dir.join("m.yaml"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("m.yaml"), "{msg}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn asset_configs() {
    let dir = root().join("assets/configs");
    for name in ["vits14", "vits14_reg"] {
        let cfg = VitConfig::load(&dir.join(format!("{name}.ron"))).unwrap();
        assert_eq!(cfg, VitConfig::preset(name).unwrap(), "{name}.ron");
    }
    let tiny = VitConfig::load(&dir.join("tiny.ron")).unwrap();
    assert_eq!((tiny.dim, tiny.depth, tiny.heads), (192, 6, 3));
    assert_eq!(tiny.head_dim(), 64);
    tiny.validate().unwrap();
}

/// A header is the file's to choose: a width or a block index far past any model's is answered
/// at once (these looped for hours, over every candidate head count or block).
#[test]
fn config_inference_bounds_what_a_header_names() {
    let file = |tensors: &[(&str, &str)]| {
        let entries: Vec<String> = tensors
            .iter()
            .map(|(n, shape)| {
                format!("\"{n}\":{{\"dtype\":\"F32\",\"shape\":{shape},\"data_offsets\":[0,0]}}")
            })
            .collect();
        let header = format!("{{{}}}", entries.join(","));
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        bytes
    };
    let p = Path::new("crafted.safetensors");
    let wide = file(&[
        ("cls_token", "[0,1,1000000000000000]"),
        ("blocks.0.norm1.weight", "[0]"),
        ("patch_embed.proj.weight", "[0,3,14,14]"),
        ("pos_embed", "[0,5,0]"),
        ("blocks.0.mlp.fc1.weight", "[0,0]"),
    ]);
    // The width is refused by the config's own check, after heads were chosen in 64 steps.
    assert!(infer_config_from_bytes(p, &wide).is_err());
    let deep = file(&[
        ("cls_token", "[0,1,384]"),
        ("blocks.99999999999999.norm1.weight", "[0]"),
        ("patch_embed.proj.weight", "[0,3,14,14]"),
    ]);
    let err = infer_config_from_bytes(p, &deep).unwrap_err().to_string();
    assert!(
        err.contains("crafted.safetensors") && err.contains("99999999999999"),
        "{err}"
    );
}
