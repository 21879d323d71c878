//! Golden model cases: a folder with config.json, model.safetensors and io.safetensors (the
//! format of tests/fixtures/tiny_dinov2). Every forward output of every input is compared.

use super::{CaseResult, Judge};
use crate::fixtures::{Manifest, TensorFile};
use crate::gpu::{Gpu, Recorder};
use crate::model::config::VitConfig;
use crate::model::vit::{ForwardOptions, Vit};
use crate::model::weights::load_backbone;
use std::path::Path;

/// Largest error of an f16 model's outputs, relative to the largest magnitude of each output
/// (at least 1). f16 keeps 11 significant bits (relative rounding 2⁻¹¹ ≈ 4.9e-4) at every
/// stored activation; through a few blocks of LayerNorm and attention that grows to about ten
/// roundings. Measured on the fixtures: see README ("Half precision").
pub const F16_TOLERANCE: f32 = 1e-2;

/// The f16 row of a model folder: the same forward outputs from the model stored in f16, at
/// [`F16_TOLERANCE`]; `None` when the adapter has no SHADER_F16.
#[cfg(not(target_arch = "wasm32"))]
pub fn run_model_case_f16(gpu: &Gpu, dir: &Path, rel: &str) -> Option<CaseResult> {
    if !gpu.features.contains(wgpu::Features::SHADER_F16) {
        return None;
    }
    let name = format!("{rel} (f16)");
    let mut judge = Judge::new(&name);
    let run = || -> Result<(Vit, TensorFile), String> {
        let cfg = VitConfig::load(&dir.join("config.json")).map_err(|e| e.to_string())?;
        let w = load_backbone(&dir.join("model.safetensors"), &cfg).map_err(|e| e.to_string())?;
        let half = Vit::new_as(gpu, cfg, &w, crate::gpu::DType::F16).map_err(|e| e.to_string())?;
        let io = TensorFile::open(&dir.join("io.safetensors")).map_err(|e| e.to_string())?;
        Ok((half, io))
    };
    match run() {
        Ok((vit, io)) => {
            let manifest = Manifest::default();
            let fwd = compare_forward(
                gpu,
                &vit,
                &io,
                &manifest,
                rel,
                &mut judge,
                Some(F16_TOLERANCE),
            );
            if let Err(e) = pollster::block_on(fwd) {
                judge.fail(e);
            }
        }
        Err(e) => judge.fail(e),
    }
    Some(judge.finish())
}

/// Runs one model folder; `rel` is its name relative to the fixtures root (manifest paths).
pub fn run_model_case(gpu: &Gpu, dir: &Path, manifest: &Manifest, rel: &str) -> CaseResult {
    let mut judge = Judge::new(rel);
    let cfg = match VitConfig::load(&dir.join("config.json")) {
        Ok(c) => c,
        Err(e) => {
            let msg = e.to_string();
            if msg.contains("not supported") {
                return CaseResult::unsupported(rel, msg);
            }
            judge.fail(msg);
            return judge.finish();
        }
    };
    let loaded = load_backbone(&dir.join("model.safetensors"), &cfg)
        .map_err(|e| e.to_string())
        .and_then(|w| Vit::new(gpu, cfg.clone(), &w).map_err(|e| e.to_string()))
        .and_then(|vit| {
            Ok((
                vit,
                TensorFile::open(&dir.join("io.safetensors")).map_err(|e| e.to_string())?,
            ))
        });
    let (vit, io) = match loaded {
        Ok(v) => v,
        Err(e) => {
            judge.fail(e);
            return judge.finish();
        }
    };
    #[cfg(not(target_arch = "wasm32"))]
    let forward = pollster::block_on(compare_forward(
        gpu, &vit, &io, manifest, rel, &mut judge, None,
    ));
    #[cfg(target_arch = "wasm32")]
    let forward: Result<(), String> =
        Err("in the browser use check_model_forward (asynchronous)".into());
    if let Err(e) = forward {
        judge.fail(e);
    }
    if dir.join("grads.safetensors").is_file() {
        if let Err(e) = compare_backward(gpu, &vit, &io, dir, manifest, rel, &mut judge) {
            judge.fail(e);
        }
    }
    judge.finish()
}

/// The forward half of a model case from file contents (the browser has no file system):
/// every output of `io.safetensors` compared against the model's, tolerances from `manifest`.
pub async fn check_model_forward(
    gpu: &Gpu,
    rel: &str,
    config_json: &str,
    model: &[u8],
    io: &[u8],
    manifest: &Manifest,
) -> CaseResult {
    let mut judge = Judge::new(rel);
    let base = Path::new(rel);
    let loaded = VitConfig::from_text(config_json, &format!("{rel}/config.json"))
        .map_err(|e| e.to_string())
        .and_then(|cfg| {
            let w = crate::model::weights::from_bytes(&base.join("model.safetensors"), model, &cfg)
                .map_err(|e| e.to_string())?;
            let vit = Vit::new(gpu, cfg, &w).map_err(|e| e.to_string())?;
            let io = TensorFile::from_bytes(&base.join("io.safetensors"), io)
                .map_err(|e| e.to_string())?;
            Ok((vit, io))
        });
    match loaded {
        Ok((vit, io)) => {
            if let Err(e) = compare_forward(gpu, &vit, &io, manifest, rel, &mut judge, None).await {
                judge.fail(e);
            }
        }
        Err(e) => judge.fail(e),
    }
    judge.finish()
}

/// Gradients named as Hugging Face names them, from ours in torch-hub names (qkv split into
/// query, key and value rows): `Dinov2Model` names, or `DINOv3ViTModel` names for a rotary
/// backbone.
pub fn hub_grads_to_hf(
    hub: &std::collections::BTreeMap<String, Vec<f32>>,
    cfg: &VitConfig,
) -> std::collections::BTreeMap<String, Vec<f32>> {
    if cfg.is_rope() {
        return hub_grads_to_hf_v3(hub, cfg);
    }
    let mut out = std::collections::BTreeMap::new();
    for (name, v) in hub {
        let simple = |s: &str| Some(s.to_string());
        let mapped = match name.as_str() {
            "cls_token" => simple("embeddings.cls_token"),
            "mask_token" => simple("embeddings.mask_token"),
            "register_tokens" => simple("embeddings.register_tokens"),
            "pos_embed" => simple("embeddings.position_embeddings"),
            "patch_embed.proj.weight" => simple("embeddings.patch_embeddings.projection.weight"),
            "patch_embed.proj.bias" => simple("embeddings.patch_embeddings.projection.bias"),
            "norm.weight" => simple("layernorm.weight"),
            "norm.bias" => simple("layernorm.bias"),
            _ => None,
        };
        if let Some(m) = mapped {
            out.insert(m, v.clone());
            continue;
        }
        let Some(rest) = name.strip_prefix("blocks.") else {
            continue;
        };
        let Some((i, tail)) = rest.split_once('.') else {
            continue;
        };
        let pre = format!("encoder.layer.{i}.");
        if let Some(kind) = tail.strip_prefix("attn.qkv.") {
            // Rows [0, D) are q, [D, 2D) k, [2D, 3D) v, for the weight and the bias alike.
            let per = v.len() / 3;
            for (j, which) in ["query", "key", "value"].iter().enumerate() {
                out.insert(
                    format!("{pre}attention.attention.{which}.{kind}"),
                    v[j * per..(j + 1) * per].to_vec(),
                );
            }
            continue;
        }
        let t = match tail {
            "attn.proj.weight" => "attention.output.dense.weight".to_string(),
            "attn.proj.bias" => "attention.output.dense.bias".to_string(),
            "ls1.gamma" => "layer_scale1.lambda1".to_string(),
            "ls2.gamma" => "layer_scale2.lambda1".to_string(),
            other => other.to_string(),
        };
        out.insert(format!("{pre}{t}"), v.clone());
    }
    out
}

/// [`hub_grads_to_hf`] for `DINOv3ViTModel`: `layer.{i}.attention.{q,k,v,o}_proj` (no key bias
/// unless the config has one), `mlp.{up,down}_proj` or the gated `gate_proj`/`up_proj`/
/// `down_proj`, `embeddings.patch_embeddings.*`, `norm.*`.
fn hub_grads_to_hf_v3(
    hub: &std::collections::BTreeMap<String, Vec<f32>>,
    cfg: &VitConfig,
) -> std::collections::BTreeMap<String, Vec<f32>> {
    let mut out = std::collections::BTreeMap::new();
    for (name, v) in hub {
        let top = match name.as_str() {
            "cls_token" | "mask_token" | "register_tokens" => Some(format!("embeddings.{name}")),
            "patch_embed.proj.weight" => Some("embeddings.patch_embeddings.weight".into()),
            "patch_embed.proj.bias" => Some("embeddings.patch_embeddings.bias".into()),
            "norm.weight" | "norm.bias" => Some(name.clone()),
            _ => None,
        };
        if let Some(t) = top {
            out.insert(t, v.clone());
            continue;
        }
        let Some((i, tail)) = name.strip_prefix("blocks.").and_then(|r| r.split_once('.')) else {
            continue;
        };
        let pre = format!("layer.{i}.");
        let (module, kind) = tail.rsplit_once('.').unwrap_or((tail, ""));
        let split = |parts: &[&str], out: &mut std::collections::BTreeMap<String, Vec<f32>>| {
            let per = v.len() / parts.len();
            for (j, p) in parts.iter().enumerate() {
                if !p.is_empty() {
                    out.insert(
                        format!("{pre}{p}.{kind}"),
                        v[j * per..(j + 1) * per].to_vec(),
                    );
                }
            }
        };
        match module {
            "attn.qkv" => {
                let key = if kind == "bias" && !cfg.key_bias {
                    ""
                } else {
                    "attention.k_proj"
                };
                split(&["attention.q_proj", key, "attention.v_proj"], &mut out);
            }
            "mlp.w12" => split(&["mlp.gate_proj", "mlp.up_proj"], &mut out),
            _ => {
                let m = match module {
                    "attn.proj" => "attention.o_proj",
                    "ls1" => "layer_scale1",
                    "ls2" => "layer_scale2",
                    "mlp.fc1" => "mlp.up_proj",
                    "mlp.fc2" | "mlp.w3" => "mlp.down_proj",
                    other => other,
                };
                let kind = if kind == "gamma" { "lambda1" } else { kind };
                out.insert(format!("{pre}{m}.{kind}"), v.clone());
            }
        }
    }
    out
}

fn compare_backward(
    gpu: &Gpu,
    vit: &Vit,
    io: &TensorFile,
    dir: &Path,
    manifest: &Manifest,
    rel: &str,
    judge: &mut Judge,
) -> Result<(), String> {
    let cfg = &vit.cfg;
    let grads_file = TensorFile::open(&dir.join("grads.safetensors")).map_err(|e| e.to_string())?;
    let g_rel = format!("{rel}/grads.safetensors");
    let tags: Vec<String> = grads_file
        .names()
        .iter()
        .filter_map(|n| n.strip_suffix(".upstream").map(str::to_string))
        .collect();
    for tag in tags {
        let (px, mask) = case_input(io, &tag)?;
        let masked = mask.is_some();
        let (b, h, w) = (px.shape[0], px.shape[2], px.shape[3]);
        let up = grads_file
            .get(&format!("{tag}.upstream"))
            .map_err(|e| e.to_string())?;
        let opts = ForwardOptions {
            attention_layers: vec![],
            hidden_states: false,
            save_for_backward: true,
            drop_path: None,
            checkpoint_blocks: 0,
            rope_scales: None,
            cls_attention_only: false,
        };
        let mut rec = Recorder::new(gpu);
        let pixels = gpu.upload(&px.data, &px.shape);
        let mask_t = mask.as_ref().map(|m| gpu.upload(m, &[m.len()]));
        let mut out = vit
            .forward(&mut rec, &pixels, b, h, w, mask_t.as_ref(), &opts)
            .map_err(|e| format!("{}: the inputs of '{tag}': {e}", io.path.display()))?;
        let want = b * out.n_tokens * cfg.dim;
        if up.data.len() != want {
            return Err(format!(
                "{}: {tag}.upstream has shape {:?} ({} values), but the model's tokens for \
                 its input are [{b}, {}, {}] ({want} values)",
                grads_file.path.display(),
                up.shape,
                up.data.len(),
                out.n_tokens,
                cfg.dim
            ));
        }
        let d_tokens = gpu.upload(&up.data, &up.shape);
        let grads = vit.zero_grads(&mut rec);
        let d_pixels = gpu.empty(&px.shape);
        vit.backward(
            &mut rec,
            &mut out,
            &d_tokens,
            &grads,
            Some(&d_pixels),
            (b, h, w),
            mask_t.as_ref(),
        )
        .map_err(|e| e.to_string())?;
        rec.finish().map_err(|e| e.to_string())?;
        let flat = super::ops::read_tensor(gpu, &grads.flat)?;
        let hf = hub_grads_to_hf(&grads.layout.unpack(&flat), cfg);
        let mut check = |name: String, got: &[f32]| {
            if let Ok(want) = grads_file.get(&name) {
                let tol = manifest.tolerance(&g_rel, &name, &want.data);
                judge.check(&name, got, &want.data, tol);
                true
            } else {
                false
            }
        };
        check(
            format!("{tag}.grad.pixel_values"),
            &super::ops::read_tensor(gpu, &d_pixels)?,
        );
        let mut compared = 0;
        for (name, v) in &hf {
            if name == "embeddings.mask_token" && !masked {
                continue;
            }
            compared += check(format!("{tag}.grad.{name}"), v) as usize;
        }
        if compared == 0 {
            return Err(format!(
                "{g_rel}: no '{tag}.grad.*' weight gradients matched our parameter names"
            ));
        }
    }
    Ok(())
}

/// Every forward output of a model folder, compared at the fixture's tolerances, or (`half`
/// given) at `half` times each expected tensor's largest magnitude (at least 1).
async fn compare_forward(
    gpu: &Gpu,
    vit: &Vit,
    io: &TensorFile,
    manifest: &Manifest,
    rel: &str,
    judge: &mut Judge,
    half: Option<f32>,
) -> Result<(), String> {
    let cfg = &vit.cfg;
    let io_rel = format!("{rel}/io.safetensors");
    let tags: Vec<String> = io
        .names()
        .iter()
        .filter_map(|n| n.strip_suffix(".last_hidden_state").map(str::to_string))
        .collect();
    if tags.is_empty() {
        return Err(format!(
            "{}: no '*.last_hidden_state' outputs",
            io.path.display()
        ));
    }
    for (i, tag) in tags.into_iter().enumerate() {
        let first = i == 0;
        let (px, mask) = case_input(io, &tag)?;
        let (b, h, w) = (px.shape[0], px.shape[2], px.shape[3]);
        let opts = ForwardOptions {
            attention_layers: (0..cfg.depth).collect(),
            hidden_states: true,
            save_for_backward: false,
            drop_path: None,
            checkpoint_blocks: 0,
            rope_scales: None,
            cls_attention_only: false,
        };
        let mut rec = Recorder::new(gpu);
        let pixels = gpu.upload(&px.data, &px.shape);
        let mask_t = mask.as_ref().map(|m| gpu.upload(m, &[m.len()]));
        let out = vit
            .forward(&mut rec, &pixels, b, h, w, mask_t.as_ref(), &opts)
            .map_err(|e| format!("{}: the inputs of '{tag}': {e}", io.path.display()))?;
        rec.finish().map_err(|e| e.to_string())?;
        let read =
            async |t: &crate::gpu::Tensor| gpu.read_async(t).await.map_err(|e| e.to_string());
        let mut check = |name: String, got: Vec<f32>| {
            if let Ok(want) = io.get(&name) {
                let tol = match half {
                    Some(rel) => rel * want.data.iter().fold(1.0f32, |m, v| m.max(v.abs())),
                    None => manifest.tolerance(&io_rel, &name, &want.data),
                };
                judge.check(&name, &got, &want.data, tol);
            }
        };
        let tokens = read(&out.tokens).await?;
        let (n, d) = (out.n_tokens, cfg.dim);
        let pooled: Vec<f32> = (0..b)
            .flat_map(|i| tokens[i * n * d..i * n * d + d].to_vec())
            .collect();
        check(format!("{tag}.last_hidden_state"), tokens);
        check(format!("{tag}.pooler_output"), pooled);
        check(
            format!("{tag}.patch_embeddings"),
            read(&out.patch_embeddings).await?,
        );
        for (l, t) in &out.attentions {
            check(format!("{tag}.attentions.{l}"), read(t).await?);
        }
        for (l, t) in out.hidden_states.iter().enumerate() {
            check(format!("{tag}.hidden_states.{l}"), read(t).await?);
        }
        if let Some(rope) = cfg.rope {
            let (gh, gw) = out.grid;
            let (cos, sin) = crate::model::rope::tables(gh, gw, cfg.head_dim(), rope.base);
            check(format!("{tag}.rope_cos"), cos);
            check(format!("{tag}.rope_sin"), sin);
            check(
                format!("{tag}.rope_coords"),
                crate::model::rope::coords(gh, gw),
            );
            // One table for the model: checked once, so that the count of checks is the
            // count of the io file's outputs covered.
            if first {
                check(
                    "rope.inv_freq".to_string(),
                    crate::model::rope::inv_freq(cfg.head_dim(), rope.base),
                );
            }
        }
        if let Some(pp) = &out.pos_patch {
            let table = read(&vit.params.get("pos_embed")).await?;
            let mut full = table[..d].to_vec();
            full.extend(read(pp).await?);
            check(format!("{tag}.interp_pos_embed"), full);
        }
    }
    Ok(())
}

/// The pixels and (for `*_masked` tags) the patch mask of an output tag `outK[_masked]`, from
/// the io file's `inputK.*` tensors.
fn case_input(
    io: &TensorFile,
    tag: &str,
) -> Result<(crate::fixtures::HostTensor, Option<Vec<f32>>), String> {
    let (base, masked) = match tag.strip_suffix("_masked") {
        Some(b) => (b, true),
        None => (tag, false),
    };
    let input_tag = base.replacen("out", "input", 1);
    let px = io
        .get(&format!("{input_tag}.pixel_values"))
        .map_err(|e| e.to_string())?;
    if px.shape.len() != 4 {
        return Err(format!(
            "{}: {input_tag}.pixel_values has shape {:?}, expected [B, C, H, W]",
            io.path.display(),
            px.shape
        ));
    }
    let mask = if masked {
        Some(
            io.get(&format!("{input_tag}.bool_masked_pos"))
                .map_err(|e| e.to_string())?
                .data
                .clone(),
        )
    } else {
        None
    };
    Ok((px.clone(), mask))
}
