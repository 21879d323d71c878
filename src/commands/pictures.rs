//! `dinoscope embed` and `dinoscope attention`: features and maps of pictures, and the checks
//! their inputs and outputs share.

use super::{load_model_as, Model};
use dinoscope::data::image::{load_image, preprocess, Preprocessed, Resize};
use dinoscope::gpu::Gpu;
use dinoscope::infer;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Files, and the image files in folders at any depth (each folder once, sorted by path).
pub fn collect_images(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            out.extend(dinoscope::data::dataset::image_files(p).map_err(|e| e.to_string())?);
        } else if p.exists() {
            out.push(p.clone());
        } else {
            // A link to nowhere, or one in a loop, is there, but cannot be followed.
            return Err(match (std::fs::symlink_metadata(p), std::fs::metadata(p)) {
                (Ok(_), Err(e)) => format!("{}: a link that cannot be followed ({e})", p.display()),
                _ => format!("{}: no such file or folder", p.display()),
            });
        }
    }
    Ok(out)
}

/// Refuses to write `outputs` when one of them is one of `inputs` (the same file, however it is
/// named): a command never overwrites what it reads.
pub fn refuse_overwriting_inputs(outputs: &[PathBuf], inputs: &[PathBuf]) -> Result<(), String> {
    let canon = |p: &Path| std::fs::canonicalize(p).ok();
    let inputs: Vec<(PathBuf, PathBuf)> = inputs
        .iter()
        .filter_map(|p| canon(p).map(|c| (p.clone(), c)))
        .collect();
    for out in outputs {
        let Some(c) = canon(out) else { continue };
        if let Some((given, _)) = inputs.iter().find(|(_, ic)| *ic == c) {
            return Err(format!(
                "{}: this output is an input of the command ({}); choose another output path",
                out.display(),
                given.display()
            ));
        }
    }
    Ok(())
}

/// Makes an output folder and its parents; a file in the way is named as such.
fn create_folder(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| match dir.ancestors().find(|a| a.is_file()) {
        Some(file) if file == dir => format!("{}: is a file, not a folder", dir.display()),
        Some(file) => format!(
            "{}: is a file, so the folder {} cannot be made",
            file.display(),
            dir.display()
        ),
        None => format!("{}: cannot create: {e}", dir.display()),
    })
}

/// The error for an output path that is a device or a pipe, which no file is written over.
fn device_or_pipe(p: &Path) -> Option<String> {
    dinoscope::io::is_device_or_pipe(p).then(|| {
        format!(
            "{}: is a device or a pipe, not a file to write",
            p.display()
        )
    })
}

/// `dinoscope embed`.
pub fn embed(
    gpu: &Gpu,
    (weights, config, dtype): Model,
    inputs: &[PathBuf],
    (output, overwrite): (&Path, bool),
    size: usize,
    batch: usize,
) -> Result<ExitCode, String> {
    let files = collect_images(inputs)?;
    if files.is_empty() {
        let given: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
        return Err(format!(
            "{}: no images found (png, jpeg, webp)",
            given.join(", ")
        ));
    }
    let mut read: Vec<PathBuf> = files.clone();
    read.push(weights.to_path_buf());
    read.extend(config.map(PathBuf::from));
    refuse_overwriting_inputs(&[output.to_path_buf()], &read)?;
    // Checked before the work, not after it.
    let folder_named = output
        .as_os_str()
        .as_encoded_bytes()
        .last()
        .is_some_and(|&b| std::path::is_separator(b as char));
    if output.is_dir() || folder_named {
        return Err(format!(
            "{}: names a folder; -o takes a file name (e.g. {})",
            output.display(),
            output.join("features.safetensors").display()
        ));
    }
    if let Some(e) = device_or_pipe(output) {
        return Err(e);
    }
    // Whatever is there, a link to nowhere included.
    if std::fs::symlink_metadata(output).is_ok() && !overwrite {
        return Err(format!(
            "{}: already exists (pass --overwrite to replace it)",
            output.display()
        ));
    }
    let vit = load_model_as(gpu, weights, config, dtype)?;
    at_least_a_patch(size, &vit, weights)?;
    if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_folder(dir)?;
    }
    let bar = indicatif::ProgressBar::new(files.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} images  {per_sec}  eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut cls = Vec::new();
    let mut mean_patch = Vec::new();
    let mut names = Vec::new();
    let mut skipped = Vec::new();
    for chunk in files.chunks(batch.max(1)) {
        let mut imgs: Vec<Preprocessed> = Vec::new();
        // Decoding and resizing a photo takes the host far longer than the GPU's forward pass,
        // so the chunk's pictures are prepared on all cores.
        let prepared = dinoscope::par::map_ordered(chunk, 1, |f| {
            load_image(f).map_err(|e| e.to_string()).and_then(|i| {
                preprocess(&i, Resize::CenterCrop(size), vit.cfg.patch)
                    .map_err(|e| format!("{}: {e}", f.display()))
            })
        });
        for (f, p) in chunk.iter().zip(prepared) {
            match p {
                Ok(p) => {
                    imgs.push(p);
                    names.push(dinoscope::io::text_of(f.as_os_str()));
                }
                Err(e) => {
                    bar.suspend(|| eprintln!("skipped: {e}"));
                    skipped.push(f.display().to_string());
                }
            }
            bar.inc(1);
        }
        let e = infer::embed(gpu, &vit, &imgs).map_err(|e| e.to_string())?;
        cls.extend(e.cls);
        mean_patch.extend(e.mean_patch);
    }
    bar.finish_and_clear();
    let n = names.len();
    if n == 0 {
        return Err(format!("none of the {} images could be read", files.len()));
    }
    let d = vit.cfg.dim;
    let mut meta = HashMap::new();
    meta.insert(
        "files".to_string(),
        serde_json::to_string(&names).unwrap_or_default(),
    );
    meta.insert("image_size".to_string(), size.to_string());
    meta.insert("weights".to_string(), weights.display().to_string());
    let bytes = dinoscope::io::safetensors_bytes(
        &[
            ("cls".into(), vec![n, d], &cls[..]),
            ("mean_patch".into(), vec![n, d], &mean_patch[..]),
        ],
        Some(meta),
    )?;
    let written = if overwrite {
        dinoscope::io::write_atomic(output, &bytes)
    } else {
        dinoscope::io::write_new_atomic(output, &bytes)
    };
    written.map_err(|e| format!("{}: cannot write: {e}", output.display()))?;
    dinoscope::say!(
        "{n} images → {} (cls and mean_patch, [{n}, {d}])",
        output.display()
    );
    if !skipped.is_empty() {
        dinoscope::say!("{} unreadable images skipped", skipped.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// `dinoscope attention`.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    gpu: &Gpu,
    (weights, config, dtype): Model,
    image: &Path,
    (out_dir, overwrite): (&Path, bool),
    layer: Option<usize>,
    size: usize,
    keep: f32,
) -> Result<ExitCode, String> {
    if let Some(e) = device_or_pipe(out_dir) {
        return Err(e);
    }
    if out_dir.exists() && !out_dir.is_dir() {
        return Err(format!(
            "{}: is a file; -o takes a folder for the maps",
            out_dir.display()
        ));
    }
    let vit = load_model_as(gpu, weights, config, dtype)?;
    let mut names: Vec<String> = ["input", "heads", "mean", "mean_overlay", "pca"]
        .iter()
        .map(|n| format!("{n}.png"))
        .collect();
    for i in 0..vit.cfg.heads {
        names.push(format!("head{i}.png"));
        names.push(format!("head{i}_threshold.png"));
    }
    let planned: Vec<PathBuf> = names.iter().map(|n| out_dir.join(n)).collect();
    let mut read = vec![weights.to_path_buf(), image.to_path_buf()];
    read.extend(config.map(PathBuf::from));
    refuse_overwriting_inputs(&planned, &read)?;
    if let Some(e) = planned.iter().find_map(|p| device_or_pipe(p)) {
        return Err(e);
    }
    let taken = |p: &&PathBuf| std::fs::symlink_metadata(p).is_ok();
    if let Some(p) = planned.iter().find(taken).filter(|_| !overwrite) {
        return Err(format!(
            "{}: already exists (pass --overwrite to replace the maps in {})",
            p.display(),
            out_dir.display()
        ));
    }
    let img = load_image(image).map_err(|e| e.to_string())?;
    let pre = preprocess(&img, Resize::ShorterSide(size), vit.cfg.patch)
        .map_err(|e| format!("{}: {e}", image.display()))?;
    let maps = infer::attention_maps(gpu, &vit, &pre, layer, keep).map_err(|e| {
        // One picture: its shape and --size are what there is to change.
        let e = e.to_string();
        if e.contains("GPU limit too small") {
            let p = vit.cfg.patch;
            format!(
                "{}: a {}×{} picture at --size {size} is {}×{} = {} patches, too many for this \
                 adapter: {}; use a smaller --size, or crop the picture nearer to square",
                image.display(),
                img.width(),
                img.height(),
                pre.width / p,
                pre.height / p,
                pre.width / p * (pre.height / p),
                e.trim_end_matches("; use a smaller batch or model")
            )
        } else {
            e
        }
    })?;
    create_folder(out_dir)?;
    // Encoded first, then written all or none: a full disk leaves no half set of maps.
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |img: &image::RgbImage, name: String| -> Result<(), String> {
        let png = dinoscope::viz::png_bytes(img).map_err(|e| format!("{name}: {e}"))?;
        files.push((name, png));
        Ok(())
    };
    add(&maps.image, "input.png".into())?;
    for (i, (raw, th)) in maps.heads.iter().zip(&maps.heads_thresholded).enumerate() {
        add(raw, format!("head{i}.png"))?;
        add(th, format!("head{i}_threshold.png"))?;
    }
    let cols = maps.heads.len().clamp(1, 4);
    let tiled = dinoscope::viz::tile_images(&maps.heads, cols);
    add(&tiled, "heads.png".into())?;
    add(&maps.mean, "mean.png".into())?;
    add(&maps.mean_overlay, "mean_overlay.png".into())?;
    add(&maps.pca, "pca.png".into())?;
    let parts: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    if overwrite {
        dinoscope::io::write_all_atomic(out_dir, &parts)?;
    } else {
        dinoscope::io::write_all_new_atomic(out_dir, &parts)?;
    }
    let written: Vec<PathBuf> = files.iter().map(|(n, _)| out_dir.join(n)).collect();
    // Replacing an earlier call's maps: those of heads this model does not have would otherwise
    // stay beside the new ones as if they were its.
    if overwrite {
        remove_stale_head_maps(out_dir, maps.heads.len());
    }
    let (gh, gw) = maps.grid;
    dinoscope::say!(
        "{}: {}×{} pixels, {gw}×{gh} patches, layer {}, {} heads",
        image.display(),
        pre.width,
        pre.height,
        layer.unwrap_or(vit.cfg.depth - 1),
        maps.heads.len()
    );
    for p in written {
        dinoscope::say!("  {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Removes `head{i}.png` and `head{i}_threshold.png` for i ≥ `heads` from `dir`: an earlier
/// `attention` call's maps of heads the new model does not have.
fn remove_stale_head_maps(dir: &Path, heads: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        // Only the names this command writes: `head{i}.png` and `head{i}_threshold.png`, with
        // `i` as it prints a number (no sign, no leading zero).
        let head = name
            .strip_prefix("head")
            .and_then(|r| r.strip_suffix(".png"))
            .map(|r| r.strip_suffix("_threshold").unwrap_or(r))
            .and_then(|i| i.parse::<usize>().ok().filter(|n| n.to_string() == i));
        if head.is_some_and(|i| i >= heads) {
            match std::fs::remove_file(e.path()) {
                Ok(()) => eprintln!(
                    "removed {} (a head this model does not have)",
                    e.path().display()
                ),
                Err(err) => eprintln!("warning: {}: cannot remove: {err}", e.path().display()),
            }
        }
    }
}

/// The model's patch size, or an error naming `--size` when `size` is smaller than one patch.
pub(super) fn at_least_a_patch(
    size: usize,
    vit: &dinoscope::model::vit::Vit,
    weights: &Path,
) -> Result<usize, String> {
    let p = vit.cfg.patch;
    if size < p {
        return Err(format!(
            "--size {size} is smaller than one {p}×{p} patch of {}",
            weights.display()
        ));
    }
    Ok(p)
}
