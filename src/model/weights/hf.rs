//! Backbone weights out as a Hugging Face model folder: a `config.json` and the tensors of
//! `model.safetensors` under the names transformers gives them, so `AutoModel.from_pretrained`
//! builds a `Dinov2Model`, `Dinov2WithRegistersModel` or `DINOv3ViTModel` with them. The names
//! are those `weights/names.rs` reads, the other way round: the fused qkv and SwiGLU tensors are
//! split into their row blocks, and a backbone without LayerScale gets γ = 1 (transformers'
//! DINO layers always scale).

use super::expected_tensors;
use crate::kernels::interp::InterpMode;
use crate::model::config::{Ffn, VitConfig};
use std::collections::BTreeMap;

/// One tensor of the folder's `model.safetensors`: name, shape, values.
pub type HfTensor = (String, Vec<usize>, Vec<f32>);

/// A Hugging Face model folder's two files, as text and tensors.
pub struct HfModel {
    /// The model class transformers builds (`Dinov2Model`, …).
    pub class: &'static str,
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
    let (class, config_json) = config_json(cfg)?;
    let mut w = Writer {
        hub,
        shapes,
        out: Vec::new(),
    };
    embeddings(&mut w, cfg);
    for i in 0..cfg.depth {
        block(&mut w, cfg, i)?;
    }
    let norm = if cfg.is_rope() { "norm" } else { "layernorm" };
    w.copy(format!("{norm}.weight"), "norm.weight");
    w.copy(format!("{norm}.bias"), "norm.bias");
    Ok(HfModel {
        class,
        config_json,
        tensors: w.out,
    })
}

/// The tensors written so far, and the torch-hub tensors (checked against the config) they
/// come from.
struct Writer<'a> {
    hub: &'a BTreeMap<String, Vec<f32>>,
    shapes: BTreeMap<String, Vec<usize>>,
    out: Vec<HfTensor>,
}

impl Writer<'_> {
    /// A torch-hub tensor under the name `hf`, its shape kept.
    fn copy(&mut self, hf: String, hub: &str) {
        let shape = self.shapes[hub].clone();
        self.out.push((hf, shape, self.hub[hub].clone()));
    }

    /// A torch-hub tensor under the name `hf` with another shape of the same size.
    fn reshaped(&mut self, hf: String, hub: &str, shape: Vec<usize>) {
        self.out.push((hf, shape, self.hub[hub].clone()));
    }

    /// Row block `part` of `parts` of a fused torch-hub weight or bias.
    fn rows(&mut self, hf: String, hub: &str, part: usize, parts: usize) {
        let mut shape = self.shapes[hub].clone();
        shape[0] /= parts;
        let n: usize = shape.iter().product();
        self.out
            .push((hf, shape, self.hub[hub][part * n..(part + 1) * n].to_vec()));
    }

    /// A linear layer's weight and bias.
    fn linear(&mut self, hf: &str, hub: &str) {
        self.copy(format!("{hf}.weight"), &format!("{hub}.weight"));
        self.copy(format!("{hf}.bias"), &format!("{hub}.bias"));
    }

    /// The row blocks of a fused linear layer, one per name of `hf`.
    fn split(&mut self, hf: &[&str], hub: &str) {
        for (p, name) in hf.iter().enumerate() {
            self.rows(
                format!("{name}.weight"),
                &format!("{hub}.weight"),
                p,
                hf.len(),
            );
            self.rows(format!("{name}.bias"), &format!("{hub}.bias"), p, hf.len());
        }
    }
}

/// The tokens and the patch embedding. DINOv3's mask token is [1, 1, D] in transformers.
fn embeddings(w: &mut Writer<'_>, cfg: &VitConfig) {
    let (d, v3) = (cfg.dim, cfg.is_rope());
    w.copy("embeddings.cls_token".into(), "cls_token");
    let mask_shape = if v3 { vec![1, 1, d] } else { vec![1, d] };
    w.reshaped("embeddings.mask_token".into(), "mask_token", mask_shape);
    if cfg.registers > 0 {
        w.copy("embeddings.register_tokens".into(), "register_tokens");
    }
    if !v3 {
        w.copy("embeddings.position_embeddings".into(), "pos_embed");
    }
    let patch = if v3 {
        "embeddings.patch_embeddings"
    } else {
        "embeddings.patch_embeddings.projection"
    };
    w.linear(patch, "patch_embed.proj");
}

/// Block `i`: norms, the attention's projections, LayerScale (γ = 1 where the backbone has
/// none) and the MLP.
fn block(w: &mut Writer<'_>, cfg: &VitConfig, i: usize) -> Result<(), String> {
    let (d, v3) = (cfg.dim, cfg.is_rope());
    let prefix = if v3 { "layer" } else { "encoder.layer" };
    let hf = |s: &str| format!("{prefix}.{i}.{s}");
    let hub = |s: &str| format!("blocks.{i}.{s}");
    w.linear(&hf("norm1"), &hub("norm1"));
    // The fused qkv's rows are query, key, value: transformers' three projections.
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
        w.rows(hf(&format!("{part}.weight")), &hub("attn.qkv.weight"), p, 3);
        if !cfg.qkv_bias {
            continue;
        }
        // DINOv3's key projection has no bias where the config says so (training keeps it
        // at 0, and a file with another value is not this model).
        if v3 && p == 1 && !cfg.key_bias {
            if w.hub[&hub("attn.qkv.bias")][d..2 * d]
                .iter()
                .any(|&x| x != 0.0)
            {
                return Err(format!(
                    "blocks.{i}.attn.qkv.bias: the key bias is not 0, but the config has none \
                     (key_bias: false)"
                ));
            }
            continue;
        }
        w.rows(hf(&format!("{part}.bias")), &hub("attn.qkv.bias"), p, 3);
    }
    let proj = if v3 {
        "attention.o_proj"
    } else {
        "attention.output.dense"
    };
    w.linear(&hf(proj), &hub("attn.proj"));
    for (ls, gamma) in [("layer_scale1", "ls1.gamma"), ("layer_scale2", "ls2.gamma")] {
        if cfg.layerscale {
            w.copy(hf(&format!("{ls}.lambda1")), &hub(gamma));
        } else {
            w.out
                .push((hf(&format!("{ls}.lambda1")), vec![d], vec![1.0; d]));
        }
    }
    w.linear(&hf("norm2"), &hub("norm2"));
    match (cfg.ffn, v3) {
        (Ffn::Mlp, false) => {
            w.linear(&hf("mlp.fc1"), &hub("mlp.fc1"));
            w.linear(&hf("mlp.fc2"), &hub("mlp.fc2"));
        }
        (Ffn::Mlp, true) => {
            w.linear(&hf("mlp.up_proj"), &hub("mlp.fc1"));
            w.linear(&hf("mlp.down_proj"), &hub("mlp.fc2"));
        }
        (Ffn::SwiGlu, false) => {
            w.linear(&hf("mlp.weights_in"), &hub("mlp.w12"));
            w.linear(&hf("mlp.weights_out"), &hub("mlp.w3"));
        }
        (Ffn::SwiGlu, true) => {
            // w12's rows: the gate (w1), then the up projection (w2).
            w.split(&[&hf("mlp.gate_proj"), &hf("mlp.up_proj")], &hub("mlp.w12"));
            w.linear(&hf("mlp.down_proj"), &hub("mlp.w3"));
        }
    }
    Ok(())
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
fn config_json(cfg: &VitConfig) -> Result<(&'static str, String), String> {
    use serde_json::json;
    let registers = cfg.registers > 0 || cfg.interp == InterpMode::BicubicAntialias;
    let class = match (cfg.is_rope(), registers) {
        (true, _) => "DINOv3ViTModel",
        (false, true) => "Dinov2WithRegistersModel",
        (false, false) => "Dinov2Model",
    };
    let mut c = if cfg.is_rope() {
        let rope = cfg.rope.as_ref().map_or(100.0, |r| decimal(r.base));
        let gated = cfg.ffn == Ffn::SwiGlu;
        json!({
            "architectures": [class],
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
        let mut c = json!({
            "architectures": [class],
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
    let text = serde_json::to_string_pretty(&c).map_err(|e| e.to_string())?;
    Ok((class, text))
}

/// An f32 setting as the decimal it was written as (1e-6, not 9.99999997e-7), for Python.
pub fn decimal(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}
