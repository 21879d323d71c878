//! Backbone weights out as a Hugging Face model folder: a `config.json` and the tensors of
//! `model.safetensors` under the names transformers gives them, so `AutoModel.from_pretrained`
//! builds a `Dinov2Model`, `Dinov2WithRegistersModel` or `DINOv3ViTModel` with them. The names
//! are those `weights/names.rs` reads, the other way round: the fused qkv and SwiGLU tensors are
//! split into their row blocks, and a backbone without LayerScale gets γ = 1 (transformers'
//! DINO layers always scale).

use super::expected_tensors;
use crate::cpu::interp::InterpMode;
use crate::model::config::{Ffn, VitConfig};
use std::collections::BTreeMap;

/// One tensor of the folder's `model.safetensors`: name, shape, values.
pub type HfTensor = (String, Vec<usize>, Vec<f32>);

/// A Hugging Face model folder's two files, as text and tensors.
pub struct HfModel {
    /// `config.json`.
    pub config_json: String,
    /// The tensors of `model.safetensors`, under transformers' names.
    pub tensors: Vec<HfTensor>,
}

/// The Hugging Face folder of a backbone whose tensors `hub` holds under torch-hub names (every
/// tensor of [`expected_tensors`] for `cfg`, flat).
pub fn to_hugging_face(
    cfg: &VitConfig,
    hub: &BTreeMap<String, Vec<f32>>,
) -> Result<HfModel, String> {
    let mut shapes = BTreeMap::new();
    for (name, shape) in expected_tensors(cfg) {
        let n: usize = shape.iter().product();
        match hub.get(&name) {
            Some(v) if v.len() == n => {}
            Some(v) => {
                return Err(format!(
                    "tensor {name} has {} values; the config gives it {n}",
                    v.len()
                ))
            }
            None => return Err(format!("tensor {name} is missing")),
        }
        shapes.insert(name, shape);
    }
    let get = |name: &str| hub[name].clone();
    let config_json = config_json(cfg)?;
    let d = cfg.dim;
    let mut out: Vec<HfTensor> = Vec::new();
    let ones = vec![1.0f32; d];
    let v3 = cfg.is_rope();
    let (emb, prefix) = if v3 {
        ("embeddings.patch_embeddings", "layer")
    } else {
        ("embeddings.patch_embeddings.projection", "encoder.layer")
    };
    out.push((
        "embeddings.cls_token".into(),
        vec![1, 1, d],
        get("cls_token"),
    ));
    let mask_shape = if v3 { vec![1, 1, d] } else { vec![1, d] };
    out.push((
        "embeddings.mask_token".into(),
        mask_shape,
        get("mask_token"),
    ));
    if cfg.registers > 0 {
        out.push((
            "embeddings.register_tokens".into(),
            shapes["register_tokens"].clone(),
            get("register_tokens"),
        ));
    }
    if !v3 {
        out.push((
            "embeddings.position_embeddings".into(),
            shapes["pos_embed"].clone(),
            get("pos_embed"),
        ));
    }
    out.push((
        format!("{emb}.weight"),
        shapes["patch_embed.proj.weight"].clone(),
        get("patch_embed.proj.weight"),
    ));
    out.push((format!("{emb}.bias"), vec![d], get("patch_embed.proj.bias")));
    for i in 0..cfg.depth {
        let hub_name = |s: &str| format!("blocks.{i}.{s}");
        let hf = |s: &str| format!("{prefix}.{i}.{s}");
        let mut push = |name: String, shape: Vec<usize>, values: Vec<f32>| {
            out.push((name, shape, values));
        };
        for n in ["norm1", "norm2"] {
            push(
                hf(&format!("{n}.weight")),
                vec![d],
                get(&hub_name(&format!("{n}.weight"))),
            );
            push(
                hf(&format!("{n}.bias")),
                vec![d],
                get(&hub_name(&format!("{n}.bias"))),
            );
        }
        // The fused qkv's rows are query, key, value, as transformers' three projections.
        let qkv_w = get(&hub_name("attn.qkv.weight"));
        let qkv_b = cfg.qkv_bias.then(|| get(&hub_name("attn.qkv.bias")));
        let parts: [&str; 3] = if v3 {
            ["attention.q_proj", "attention.k_proj", "attention.v_proj"]
        } else {
            [
                "attention.attention.query",
                "attention.attention.key",
                "attention.attention.value",
            ]
        };
        for (p, part) in parts.iter().enumerate() {
            push(
                hf(&format!("{part}.weight")),
                vec![d, d],
                qkv_w[p * d * d..(p + 1) * d * d].to_vec(),
            );
            // DINOv3's key projection has no bias where the config says so (training keeps
            // it at 0).
            let has_bias = cfg.qkv_bias && !(v3 && p == 1 && !cfg.key_bias);
            if let (false, Some(b)) = (has_bias, &qkv_b) {
                if b[p * d..(p + 1) * d].iter().any(|&x| x != 0.0) {
                    return Err(format!(
                        "blocks.{i}.attn.qkv.bias: the key bias is not 0, but the config has \
                         none (key_bias: false)"
                    ));
                }
            }
            if let (true, Some(b)) = (has_bias, &qkv_b) {
                push(
                    hf(&format!("{part}.bias")),
                    vec![d],
                    b[p * d..(p + 1) * d].to_vec(),
                );
            }
        }
        let proj = if v3 {
            "attention.o_proj"
        } else {
            "attention.output.dense"
        };
        push(
            hf(&format!("{proj}.weight")),
            vec![d, d],
            get(&hub_name("attn.proj.weight")),
        );
        push(
            hf(&format!("{proj}.bias")),
            vec![d],
            get(&hub_name("attn.proj.bias")),
        );
        for (ls, hub_ls) in [("layer_scale1", "ls1.gamma"), ("layer_scale2", "ls2.gamma")] {
            let gamma = if cfg.layerscale {
                get(&hub_name(hub_ls))
            } else {
                ones.clone()
            };
            push(hf(&format!("{ls}.lambda1")), vec![d], gamma);
        }
        let h = cfg.mlp_hidden;
        let linear = |push: &mut dyn FnMut(String, Vec<usize>, Vec<f32>),
                      hf_module: &str,
                      hub_module: &str| {
            let w = hub_name(&format!("{hub_module}.weight"));
            let b = hub_name(&format!("{hub_module}.bias"));
            push(
                hf(&format!("{hf_module}.weight")),
                shapes[&w].clone(),
                get(&w),
            );
            push(
                hf(&format!("{hf_module}.bias")),
                shapes[&b].clone(),
                get(&b),
            );
        };
        match (cfg.ffn, v3) {
            (Ffn::Mlp, false) => {
                linear(&mut push, "mlp.fc1", "mlp.fc1");
                linear(&mut push, "mlp.fc2", "mlp.fc2");
            }
            (Ffn::Mlp, true) => {
                linear(&mut push, "mlp.up_proj", "mlp.fc1");
                linear(&mut push, "mlp.down_proj", "mlp.fc2");
            }
            (Ffn::SwiGlu, false) => {
                linear(&mut push, "mlp.weights_in", "mlp.w12");
                linear(&mut push, "mlp.weights_out", "mlp.w3");
            }
            (Ffn::SwiGlu, true) => {
                // w12's rows: the gate (w1), then the up projection (w2).
                let w = get(&hub_name("mlp.w12.weight"));
                let b = get(&hub_name("mlp.w12.bias"));
                for (p, part) in ["mlp.gate_proj", "mlp.up_proj"].iter().enumerate() {
                    push(
                        hf(&format!("{part}.weight")),
                        vec![h, d],
                        w[p * h * d..(p + 1) * h * d].to_vec(),
                    );
                    push(
                        hf(&format!("{part}.bias")),
                        vec![h],
                        b[p * h..(p + 1) * h].to_vec(),
                    );
                }
                linear(&mut push, "mlp.down_proj", "mlp.w3");
            }
        }
    }
    let norm = if v3 { "norm" } else { "layernorm" };
    out.push((format!("{norm}.weight"), vec![d], get("norm.weight")));
    out.push((format!("{norm}.bias"), vec![d], get("norm.bias")));
    Ok(HfModel {
        config_json,
        tensors: out,
    })
}

/// The MLP ratio transformers' DINOv2 config needs for `cfg`'s hidden width, a whole number (its
/// `mlp_ratio` is an int): `dim · ratio` is the MLP's width (SwiGLU: the width its
/// `(int(w · 2/3) + 7) // 8 · 8` rule starts from).
fn mlp_ratio(cfg: &VitConfig) -> Result<usize, String> {
    (1..=64)
        .find(|r| {
            let w = cfg.dim * r;
            match cfg.ffn {
                Ffn::Mlp => w == cfg.mlp_hidden,
                Ffn::SwiGlu => (w * 2 / 3).div_ceil(8) * 8 == cfg.mlp_hidden,
            }
        })
        .ok_or_else(|| {
            format!(
                "an MLP of hidden width {} at dim {} is not a whole MLP ratio, which \
                 transformers' DINOv2 config needs",
                cfg.mlp_hidden, cfg.dim
            )
        })
}

/// transformers' `config.json` for `cfg`: `Dinov2Model` (no registers, the position table
/// resized without antialiasing), `Dinov2WithRegistersModel` (with antialiasing) or
/// `DINOv3ViTModel` (rotary positions).
fn config_json(cfg: &VitConfig) -> Result<String, String> {
    use serde_json::json;
    let mut c = if cfg.is_rope() {
        let rope = cfg.rope.as_ref().map_or(100.0, |r| decimal(r.base));
        let gated = cfg.ffn == Ffn::SwiGlu;
        json!({
            "architectures": ["DINOv3ViTModel"],
            "model_type": "dinov3_vit",
            "hidden_size": cfg.dim,
            "intermediate_size": cfg.mlp_hidden,
            "num_hidden_layers": cfg.depth,
            "num_attention_heads": cfg.heads,
            "hidden_act": if gated { "silu" } else { "gelu" },
            "use_gated_mlp": gated,
            "patch_size": cfg.patch,
            "num_channels": cfg.in_chans,
            "num_register_tokens": cfg.registers,
            "layer_norm_eps": decimal(cfg.ln_eps),
            "rope_theta": rope,
            "query_bias": cfg.qkv_bias,
            "key_bias": cfg.qkv_bias && cfg.key_bias,
            "value_bias": cfg.qkv_bias,
            "proj_bias": true,
            "mlp_bias": true,
            "layerscale_value": 1.0,
            "image_size": 224,
            "pos_embed_shift": null,
            "pos_embed_jitter": null,
            "pos_embed_rescale": 2.0,
        })
    } else {
        let registers = cfg.registers > 0 || cfg.interp == InterpMode::BicubicAntialias;
        let mut c = json!({
            "architectures": [if registers { "Dinov2WithRegistersModel" } else { "Dinov2Model" }],
            "model_type": if registers { "dinov2_with_registers" } else { "dinov2" },
            "hidden_size": cfg.dim,
            "num_hidden_layers": cfg.depth,
            "num_attention_heads": cfg.heads,
            "mlp_ratio": mlp_ratio(cfg)?,
            "hidden_act": "gelu",
            "use_swiglu_ffn": cfg.ffn == Ffn::SwiGlu,
            "image_size": cfg.pos_grid * cfg.patch,
            "patch_size": cfg.patch,
            "num_channels": cfg.in_chans,
            "layer_norm_eps": decimal(cfg.ln_eps),
            "qkv_bias": cfg.qkv_bias,
            "layerscale_value": 1.0,
            "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0,
        });
        if registers {
            c["num_register_tokens"] = json!(cfg.registers);
        }
        c
    };
    c["drop_path_rate"] = json!(0.0);
    c["initializer_range"] = json!(0.02);
    c["apply_layernorm"] = json!(true);
    c["reshape_hidden_states"] = json!(true);
    c["dtype"] = json!("float32");
    serde_json::to_string_pretty(&c).map_err(|e| e.to_string())
}

/// An f32 setting as the decimal it was written as (1e-6, not 9.99999997e-7), for Python.
pub fn decimal(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}
