//! From the names in a weights file (Hugging Face, torch-hub, official DINOv3; prefixed,
//! chunked) to torch-hub names and the row blocks of fused tensors.

use super::*;

/// Where one tensor of a file goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Target {
    /// A torch-hub name.
    Hub(String),
    /// One row block of a fused tensor: a third of `attn.qkv` (query = 0, key = 1, value = 2)
    /// or a half of `mlp.w12` (gate = 0, up = 1).
    Part {
        hub: String,
        part: usize,
        parts: usize,
    },
    /// A known non-backbone tensor.
    Ignored,
    /// Not a name this loader knows.
    Unknown,
}

pub(super) const PREFIXES: [&str; 5] = [
    "teacher.backbone.",
    "module.",
    "backbone.",
    "dinov2_with_registers.",
    "dinov2.",
];

pub(super) const HEADS: [&str; 3] = ["classifier.", "dino_head.", "ibot_head."];

pub(super) const QKV_PARTS: [&str; 3] = ["query", "key", "value"];

/// Names of the rows of a fused tensor, for messages.
pub(super) fn part_label(hub: &str, part: usize) -> &'static str {
    if hub.contains("attn.qkv") {
        ["query", "key", "value"][part.min(2)]
    } else {
        ["gate (w1)", "up (w2)"][part.min(1)]
    }
}

/// The file name a missing part would have, from the name of a part that is present.
pub(super) fn sibling_name(present: &str, from: usize, to: usize) -> Option<String> {
    const TOKENS: [&[&str]; 4] = [
        &[".query.", ".key.", ".value."],
        &[".q_proj.", ".k_proj.", ".v_proj."],
        &[".gate_proj.", ".up_proj."],
        &[".w1.", ".w2."],
    ];
    TOKENS.iter().find_map(|set| {
        let (a, b) = (set.get(from)?, set.get(to)?);
        present.contains(a).then(|| present.replacen(a, b, 1))
    })
}

/// One part of block `i`'s qkv weight or bias.
pub(super) fn qkv_part(i: usize, part: usize, bias: bool) -> Target {
    Target::Part {
        hub: qkv_name(i, bias),
        part,
        parts: 3,
    }
}

/// Buffers of the official DINOv3 code that hold no weights, and the 7B's training-only norm.
pub(super) fn is_v3_buffer(name: &str) -> bool {
    name.ends_with("bias_mask")
        || name.ends_with("inv_freq")
        || name.starts_with("rope_embed.")
        || name.starts_with("rope_embeddings.")
        || name.starts_with("local_cls_norm.")
}

pub(super) fn strip_prefixes(mut name: &str) -> &str {
    loop {
        let before = name.len();
        for p in PREFIXES {
            if let Some(rest) = name.strip_prefix(p) {
                name = rest;
            }
        }
        if name.len() == before {
            return name;
        }
    }
}

pub(super) fn is_head(name: &str) -> bool {
    let n = name
        .strip_prefix("teacher.")
        .or_else(|| name.strip_prefix("student."))
        .unwrap_or(name);
    HEADS.iter().any(|h| n.starts_with(h))
}

pub(super) fn parse_index(s: &str) -> Option<usize> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `blocks.{chunk}.{i}.rest` → `blocks.{i}.rest`; other names unchanged.
pub(super) fn unchunk(name: &str) -> String {
    if let Some(rest) = name.strip_prefix("blocks.") {
        let mut it = rest.splitn(3, '.');
        if let (Some(a), Some(b), Some(tail)) = (it.next(), it.next(), it.next()) {
            if parse_index(a).is_some() && parse_index(b).is_some() && !tail.is_empty() {
                return format!("blocks.{b}.{tail}");
            }
        }
    }
    name.to_string()
}

pub(super) fn is_hf_name(stripped: &str) -> bool {
    stripped.starts_with("embeddings.")
        || stripped.starts_with("encoder.layer.")
        || stripped.starts_with("layer.")
        || stripped == "layernorm.weight"
        || stripped == "layernorm.bias"
}

/// The target of a Hugging Face name: `Dinov2Model` (`encoder.layer.{i}.…`) or
/// `DINOv3ViTModel` (`layer.{i}.…`); `gated` when the file has SwiGLU `gate_proj` tensors.
pub(super) fn hf_target(name: &str, gated: bool) -> Target {
    if let Some(rest) = name.strip_prefix("layer.") {
        return hf_v3_block_target(rest, gated);
    }
    if is_v3_buffer(name) {
        return Target::Ignored;
    }
    let direct = match name {
        "embeddings.cls_token" => Some("cls_token"),
        "embeddings.mask_token" => Some("mask_token"),
        "embeddings.register_tokens" => Some("register_tokens"),
        "embeddings.position_embeddings" => Some("pos_embed"),
        "embeddings.patch_embeddings.projection.weight" => Some("patch_embed.proj.weight"),
        "embeddings.patch_embeddings.projection.bias" => Some("patch_embed.proj.bias"),
        "layernorm.weight" => Some("norm.weight"),
        "layernorm.bias" => Some("norm.bias"),
        "embeddings.patch_embeddings.weight" => Some("patch_embed.proj.weight"),
        "embeddings.patch_embeddings.bias" => Some("patch_embed.proj.bias"),
        "norm.weight" => Some("norm.weight"),
        "norm.bias" => Some("norm.bias"),
        _ => None,
    };
    if let Some(d) = direct {
        return Target::Hub(d.to_string());
    }
    let Some(rest) = name.strip_prefix("encoder.layer.") else {
        return Target::Unknown;
    };
    let (i, module, param) = match block_parts(rest) {
        Ok(p) => p,
        Err(done) => return done,
    };
    let bias = param == "bias";
    if let Some(part) = module.strip_prefix("attention.attention.") {
        return match QKV_PARTS.iter().position(|p| *p == part) {
            Some(part) => qkv_part(i, part, bias),
            None => Target::Unknown,
        };
    }
    let hub_module = match module {
        "norm1" => "norm1",
        "norm2" => "norm2",
        "attention.output.dense" => "attn.proj",
        "mlp.fc1" => "mlp.fc1",
        "mlp.fc2" => "mlp.fc2",
        "mlp.weights_in" => "mlp.w12",
        "mlp.weights_out" => "mlp.w3",
        _ => return Target::Unknown,
    };
    Target::Hub(format!("blocks.{i}.{hub_module}.{param}"))
}

/// `{i}.{module}.{param}` of a Hugging Face block tensor name: the parts of a weight or bias,
/// or the finished target (LayerScale, which both namings call `layer_scale{1,2}.lambda1`, or
/// Unknown).
pub(super) fn block_parts(rest: &str) -> Result<(usize, &str, &str), Target> {
    let parsed = rest
        .split_once('.')
        .and_then(|(idx, tail)| Some((parse_index(idx)?, tail.rsplit_once('.')?)));
    let Some((i, (module, param))) = parsed else {
        return Err(Target::Unknown);
    };
    match (module, param) {
        ("layer_scale1", "lambda1") => Err(Target::Hub(format!("blocks.{i}.ls1.gamma"))),
        ("layer_scale2", "lambda1") => Err(Target::Hub(format!("blocks.{i}.ls2.gamma"))),
        (_, "weight") | (_, "bias") => Ok((i, module, param)),
        _ => Err(Target::Unknown),
    }
}

/// `DINOv3ViTModel` block tensors: `{i}.attention.{q,k,v,o}_proj`, `{i}.mlp.{up,down}_proj`
/// (gated: `gate_proj`, `up_proj` → w12 halves, `down_proj` → w3), norms and LayerScale.
pub(super) fn hf_v3_block_target(rest: &str, gated: bool) -> Target {
    let (i, module, param) = match block_parts(rest) {
        Ok(p) => p,
        Err(done) => return done,
    };
    let bias = param == "bias";
    let w12 = |part: usize| Target::Part {
        hub: format!("blocks.{i}.mlp.w12.{param}"),
        part,
        parts: 2,
    };
    let hub_module = match module {
        "attention.q_proj" => return qkv_part(i, 0, bias),
        "attention.k_proj" => return qkv_part(i, 1, bias),
        "attention.v_proj" => return qkv_part(i, 2, bias),
        "mlp.gate_proj" => return w12(0),
        "mlp.up_proj" if gated => return w12(1),
        "norm1" | "norm2" => module,
        "attention.o_proj" => "attn.proj",
        "mlp.up_proj" => "mlp.fc1",
        "mlp.down_proj" if gated => "mlp.w3",
        "mlp.down_proj" => "mlp.fc2",
        _ => return Target::Unknown,
    };
    Target::Hub(format!("blocks.{i}.{hub_module}.{param}"))
}

/// Official DINOv3 names that differ from DINOv2's torch-hub names: `storage_tokens` and the
/// separate SwiGLU `w1`/`w2` (fused here as `w12`); weightless buffers are ignored.
pub(super) fn hub_target(name: &str) -> Target {
    if is_v3_buffer(name) {
        return Target::Ignored;
    }
    if name == "storage_tokens" {
        return Target::Hub("register_tokens".into());
    }
    let name = unchunk(name);
    if let Some(rest) = name.strip_prefix("blocks.") {
        if let Some((i, tail)) = rest.split_once('.') {
            for (part, w) in ["mlp.w1.", "mlp.w2."].iter().enumerate() {
                if let Some(param) = tail.strip_prefix(w) {
                    return Target::Part {
                        hub: format!("blocks.{i}.mlp.w12.{param}"),
                        part,
                        parts: 2,
                    };
                }
            }
        }
    }
    Target::Hub(name)
}

/// The Hugging Face name of a torch-hub name (for messages).
pub(super) fn hub_to_hf(hub: &str) -> Option<String> {
    let direct = match hub {
        "cls_token" => Some("embeddings.cls_token"),
        "mask_token" => Some("embeddings.mask_token"),
        "register_tokens" => Some("embeddings.register_tokens"),
        "pos_embed" => Some("embeddings.position_embeddings"),
        "patch_embed.proj.weight" => Some("embeddings.patch_embeddings.projection.weight"),
        "patch_embed.proj.bias" => Some("embeddings.patch_embeddings.projection.bias"),
        "norm.weight" => Some("layernorm.weight"),
        "norm.bias" => Some("layernorm.bias"),
        _ => None,
    };
    if let Some(d) = direct {
        return Some(d.to_string());
    }
    let rest = hub.strip_prefix("blocks.")?;
    let (i, tail) = rest.split_once('.')?;
    let hf_tail = match tail {
        "ls1.gamma" => "layer_scale1.lambda1".to_string(),
        "ls2.gamma" => "layer_scale2.lambda1".to_string(),
        "attn.qkv.weight" => "attention.attention.{query,key,value}.weight".to_string(),
        "attn.qkv.bias" => "attention.attention.{query,key,value}.bias".to_string(),
        _ => {
            let (module, param) = tail.rsplit_once('.')?;
            let m = match module {
                "norm1" | "norm2" | "mlp.fc1" | "mlp.fc2" => module,
                "attn.proj" => "attention.output.dense",
                "mlp.w12" => "mlp.weights_in",
                "mlp.w3" => "mlp.weights_out",
                _ => return None,
            };
            format!("{m}.{param}")
        }
    };
    Some(format!("encoder.layer.{i}.{hf_tail}"))
}

/// Detects the naming of a list of file names and maps each one.
pub(super) fn plan<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> (Naming, Vec<(String, Target)>) {
    let names: Vec<&str> = names.into_iter().collect();
    let hf = names.iter().any(|n| is_hf_name(strip_prefixes(n)));
    let gated = names.iter().any(|n| n.contains(".mlp.gate_proj."));
    let naming = if hf {
        Naming::HuggingFace
    } else {
        Naming::TorchHub
    };
    let entries = names
        .into_iter()
        .map(|orig| {
            let stripped = strip_prefixes(orig);
            let target = if is_head(stripped) {
                Target::Ignored
            } else if hf {
                hf_target(stripped, gated)
            } else if stripped.is_empty() {
                Target::Unknown
            } else {
                hub_target(stripped)
            };
            (orig.to_string(), target)
        })
        .collect();
    (naming, entries)
}
