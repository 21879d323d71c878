//! A backbone config from the tensor shapes (and names) of a weights file alone, and the
//! config found next to it.

use super::*;

/// Largest safetensors header accepted (as in the safetensors crate).
pub(super) const MAX_HEADER: u64 = 100_000_000;

/// Tensor names and shapes from a safetensors header (the JSON after the 8-byte length).
pub(super) fn parse_header(
    path: &Path,
    header: &[u8],
) -> Result<Vec<(String, Vec<usize>)>, WeightsError> {
    let map: BTreeMap<String, serde_json::Value> = serde_json::from_slice(header).map_err(|e| {
        format_err(
            path,
            format!("invalid JSON in header: {e} (this does not look like a safetensors file)"),
        )
    })?;
    let mut out = Vec::with_capacity(map.len());
    for (name, info) in map {
        if name == "__metadata__" {
            continue;
        }
        let shape = info
            .get("shape")
            .and_then(|s| s.as_array())
            .and_then(|a| {
                a.iter()
                    .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                    .collect::<Option<Vec<usize>>>()
            })
            .ok_or_else(|| format_err(path, format!("tensor '{name}' has no valid shape")))?;
        out.push((name, shape));
    }
    Ok(out)
}

pub(super) fn header_len(path: &Path, first8: &[u8], file_len: u64) -> Result<usize, WeightsError> {
    let arr: [u8; 8] = first8.try_into().map_err(|_| {
        format_err(
            path,
            format!("file is only {file_len} bytes (too short for a safetensors header)"),
        )
    })?;
    let n = u64::from_le_bytes(arr);
    if n > MAX_HEADER {
        return Err(format_err(
            path,
            format!(
                "header length {n} is over the {MAX_HEADER}-byte limit of safetensors headers \
                 (the file is damaged or is not a safetensors file)"
            ),
        ));
    }
    if n.saturating_add(8) > file_len {
        return Err(format_err(
            path,
            format!(
                "header length {n} does not fit a {file_len}-byte file (the file is truncated or \
                 is not a safetensors file)"
            ),
        ));
    }
    usize::try_from(n).map_err(|_| format_err(path, "header too large"))
}

/// The metadata key under which dinoscope writes a backbone's whole config (as RON) into its
/// weights file: what the shapes cannot say (heads, norm epsilon, position resize) travels with
/// the file, so a copy away from its run folder loads as the run's model.
pub const CONFIG_KEY: &str = "dinoscope_config";

/// The config a weights header carries under [`CONFIG_KEY`], if any; a config that does not
/// read or is unusable is an error naming the file.
fn embedded_config(path: &Path, header: &[u8]) -> Result<Option<VitConfig>, WeightsError> {
    #[derive(serde::Deserialize)]
    struct Header {
        #[serde(rename = "__metadata__", default)]
        metadata: BTreeMap<String, String>,
    }
    let Ok(h) = serde_json::from_slice::<Header>(header) else {
        // parse_header names what is wrong with a header that does not read.
        return Ok(None);
    };
    super::refuse_training_state(path, h.metadata.get("format").map(String::as_str))?;
    let Some(text) = h.metadata.get(CONFIG_KEY) else {
        return Ok(None);
    };
    let name = format!("{} (its {CONFIG_KEY})", path.display());
    let cfg = VitConfig::from_ron(text, &name)?;
    cfg.validate_named(&name)?;
    Ok(Some(cfg))
}

/// The config of a weights file from its header: the one it carries ([`CONFIG_KEY`]), else
/// inferred from its tensor shapes.
fn config_from_header(path: &Path, header: &[u8]) -> Result<VitConfig, WeightsError> {
    match embedded_config(path, header)? {
        Some(cfg) => Ok(cfg),
        None => infer_from_shapes(path, parse_header(path, header)?),
    }
}

/// The JSON header of a safetensors file, reading nothing past it.
fn read_header_bytes(path: &Path) -> Result<Vec<u8>, WeightsError> {
    use std::io::Read;
    let read_err = |e: std::io::Error| WeightsError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut file = std::fs::File::open(path).map_err(read_err)?;
    let file_len = file.metadata().map_err(read_err)?.len();
    let mut first8 = Vec::with_capacity(8);
    (&mut file)
        .take(8)
        .read_to_end(&mut first8)
        .map_err(read_err)?;
    let n = header_len(path, &first8, file_len)?;
    let mut header = vec![0u8; n];
    file.read_exact(&mut header).map_err(read_err)?;
    Ok(header)
}

/// The config of a weights file (reads only the header): the one dinoscope wrote into it
/// ([`CONFIG_KEY`]), else inferred from its tensor shapes.
///
/// Inferred: `dim` (cls_token), `depth` (block count), `registers`, `patch` and `in_chans`
/// (patch_embed weight), `pos_grid` (pos_embed), `ffn` and `mlp_hidden` (fc1 or w12),
/// `qkv_bias`, `layerscale`, and `rope` (no position table: a DINOv3 backbone, rotary positions
/// of base 100, with no key bias). Not inferable, so assumed: `heads` = dim / 64 (the head dim
/// of every DINOv2 and DINOv3 model; for other widths the fewest heads with head dim ≤ 64),
/// `ln_eps` = 1e-6 (1e-5 for DINOv3), and `interp` = antialiased iff the model has registers and
/// a position table (Hugging Face's choice for DINOv2; DINOv3 resizes no table).
pub fn infer_config(path: &Path) -> Result<VitConfig, WeightsError> {
    config_from_header(path, &read_header_bytes(path)?)
}

/// [`infer_config`] on the bytes of a safetensors file; `path` names it in errors.
pub fn infer_config_from_bytes(path: &Path, bytes: &[u8]) -> Result<VitConfig, WeightsError> {
    let file_len = bytes.len() as u64;
    let n = header_len(path, bytes.get(..8).unwrap_or(bytes), file_len)?;
    let header = bytes
        .get(8..8 + n)
        .ok_or_else(|| format_err(path, "truncated header"))?;
    config_from_header(path, header)
}

pub(super) fn infer_from_shapes(
    path: &Path,
    entries: Vec<(String, Vec<usize>)>,
) -> Result<VitConfig, WeightsError> {
    let shapes = hub_shapes(entries);
    let need = |name: &str| required_shape(path, &shapes, name);
    let dim = need("cls_token")?.last().copied().unwrap_or(0);
    if dim == 0 {
        return Err(infer_err(path, "cls_token has no width"));
    }
    let last = shapes
        .keys()
        .filter_map(|n| n.strip_prefix("blocks."))
        .filter_map(|r| r.split_once('.').and_then(|(i, _)| parse_index(i)))
        .max()
        .ok_or_else(|| infer_err(path, "no transformer blocks"))?;
    // Before anything loops over the blocks: a header may name any index.
    let max_depth = crate::model::config::MAX_DEPTH;
    if last >= max_depth {
        return Err(infer_err(
            path,
            format!("a block index of {last} is past the {max_depth} blocks a model may have"),
        ));
    }
    let depth = last + 1;
    // The fewest heads: the largest head width up to 64 that divides the width (1 always does).
    let head_dim = (1..=DINOV2_HEAD_DIM)
        .rev()
        .find(|&hd| dim.is_multiple_of(hd))
        .unwrap_or(1);
    let registers = match shapes.get("register_tokens") {
        Some(s) if s.len() == 3 => s[1],
        Some(s) => {
            return Err(infer_err(
                path,
                format!(
                    "register_tokens has shape {}, expected [1, R, D]",
                    shape_str(s)
                ),
            ))
        }
        None => 0,
    };
    let pw = need("patch_embed.proj.weight")?;
    let (in_chans, patch) = match pw.as_slice() {
        [_, c, p, q] if p == q => (*c, *p),
        _ => {
            return Err(infer_err(
                path,
                format!(
                    "patch_embed.proj.weight has shape {}, expected [D, C, P, P]",
                    shape_str(pw)
                ),
            ))
        }
    };
    // No position table: a DINOv3 backbone (rotary positions).
    let rope = !shapes.contains_key("pos_embed");
    let pos_grid = if rope {
        0
    } else {
        pos_grid_of(path, need("pos_embed")?)?
    };
    let (ffn, mlp_hidden) = if shapes.contains_key("blocks.0.mlp.w12.weight") {
        (
            Ffn::SwiGlu,
            voted_width(&shapes, depth, "w12", 2).unwrap_or(0),
        )
    } else {
        need("blocks.0.mlp.fc1.weight")?;
        (Ffn::Mlp, voted_width(&shapes, depth, "fc1", 1).unwrap_or(0))
    };
    let cfg = VitConfig {
        dim,
        depth,
        heads: dim / head_dim,
        mlp_hidden,
        ffn,
        patch,
        in_chans,
        registers,
        pos_grid,
        ln_eps: if rope { 1e-5 } else { 1e-6 },
        interp: if registers > 0 && !rope {
            crate::kernels::interp::InterpMode::BicubicAntialias
        } else {
            crate::kernels::interp::InterpMode::Bicubic
        },
        qkv_bias: shapes.contains_key("blocks.0.attn.qkv.bias"),
        layerscale: shapes.contains_key("blocks.0.ls1.gamma"),
        rope: rope.then_some(crate::model::config::Rope { base: 100.0 }),
        key_bias: !rope,
    };
    cfg.validate_named(&path.display().to_string())?;
    Ok(cfg)
}

/// The shapes of a file's tensors under their torch-hub names; a tensor stored in parts
/// (Hugging Face's query, key and value) counts as its first part's shape with its rows
/// multiplied by the parts.
fn hub_shapes(entries: Vec<(String, Vec<usize>)>) -> BTreeMap<String, Vec<usize>> {
    let (_, plan) = plan(entries.iter().map(|(n, _)| n.as_str()));
    let mut shapes = BTreeMap::new();
    for ((_, target), (_, shape)) in plan.into_iter().zip(entries) {
        match target {
            Target::Hub(h) => {
                shapes.insert(h, shape);
            }
            Target::Part {
                hub,
                part: 0,
                parts,
            } => {
                let mut s = shape;
                if let Some(r) = s.first_mut() {
                    *r = r.saturating_mul(parts);
                }
                shapes.insert(hub, s);
            }
            _ => {}
        }
    }
    shapes
}

/// The shape of tensor `name`, or an error naming it (by either of its names).
fn required_shape<'a>(
    path: &Path,
    shapes: &'a BTreeMap<String, Vec<usize>>,
    name: &str,
) -> Result<&'a Vec<usize>, WeightsError> {
    shapes.get(name).ok_or_else(|| {
        infer_err(
            path,
            format!("no '{name}' tensor (or its Hugging Face name)"),
        )
    })
}

/// The side of the square patch grid a position table `[1, 1 + M², D]` was trained at.
fn pos_grid_of(path: &Path, pe: &[usize]) -> Result<usize, WeightsError> {
    let tokens = match pe {
        [1, n, _] if *n >= 2 => n - 1,
        _ => {
            return Err(infer_err(
                path,
                format!(
                    "pos_embed has shape {}, expected [1, 1 + M², D]",
                    shape_str(pe)
                ),
            ))
        }
    };
    let root = (tokens as f64).sqrt().round() as usize;
    (root.saturating_sub(1)..=root.saturating_add(1))
        .find(|&m| m > 0 && m.checked_mul(m) == Some(tokens))
        .ok_or_else(|| {
            infer_err(
                path,
                format!("pos_embed has {tokens} patch entries, not a square grid"),
            )
        })
}

/// The MLP width most blocks have (`tensor`'s rows over `per_row`; the smaller on a tie): one
/// damaged block then shows as the one mis-shaped tensor it is, not as every other block's.
fn voted_width(
    shapes: &BTreeMap<String, Vec<usize>>,
    depth: usize,
    tensor: &str,
    per_row: usize,
) -> Option<usize> {
    let mut votes: BTreeMap<usize, usize> = BTreeMap::new();
    for b in 0..depth {
        if let Some(rows) = shapes
            .get(&format!("blocks.{b}.mlp.{tensor}.weight"))
            .and_then(|s| s.first())
        {
            *votes.entry(rows / per_row).or_default() += 1;
        }
    }
    votes
        .into_iter()
        .max_by_key(|&(w, n)| (n, std::cmp::Reverse(w)))
        .map(|(w, _)| w)
}

/// The config for a weights file: the one it carries ([`CONFIG_KEY`]), else `config.json`
/// (Hugging Face) or `config.ron` in the same folder, else [`infer_config`].
pub fn config_for_weights(path: &Path) -> Result<VitConfig, WeightsError> {
    config_and_source(path).map(|(cfg, _)| cfg)
}

/// [`config_for_weights`] and the file beside the weights it came from, if it came from one
/// (for messages: a stale config there is the likely cause of weights that do not fit it).
/// The carried config was written with these very tensors, so it wins over a file beside
/// them (an export into the run folder, or an earlier run's, may leave one that differs);
/// one that differs is named in a warning.
pub fn config_and_source(path: &Path) -> Result<(VitConfig, Option<PathBuf>), WeightsError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let beside = ["config.json", "config.ron"]
        .into_iter()
        .map(|name| dir.join(name))
        .find(|candidate| candidate.is_file());
    let header = read_header_bytes(path)?;
    let carried = match (embedded_config(path, &header), &beside) {
        // A carried config that does not read gives way to a config the user put beside it.
        (Err(e @ WeightsError::Config(_)), Some(other)) => {
            log::warn!("{e}; the config beside it, {}, is used", other.display());
            None
        }
        (carried, _) => carried?,
    };
    match (carried, beside) {
        (Some(carried), Some(other)) => {
            match VitConfig::load(&other) {
                Ok(c) if c == carried => {}
                Ok(_) => log::warn!(
                    "{}: left aside: it differs from the config {} carries, which is used",
                    other.display(),
                    path.display()
                ),
                Err(e) => log::warn!(
                    "left aside ({e}): {} carries its own config, which is used",
                    path.display()
                ),
            }
            Ok((carried, None))
        }
        (Some(carried), None) => Ok((carried, None)),
        (None, Some(other)) => Ok((VitConfig::load(&other)?, Some(other))),
        (None, None) => {
            let cfg = infer_from_shapes(path, parse_header(path, &header)?)?;
            // The one guess shapes cannot settle, and a wrong one gives other features.
            log::warn!(
                "{}: no config in or beside it; read from its tensors, with {} heads of width {} \
                 assumed (DINOv2's and DINOv3's; put the model's config.json beside it if it has \
                 others)",
                path.display(),
                cfg.heads,
                cfg.head_dim()
            );
            Ok((cfg, None))
        }
    }
}
