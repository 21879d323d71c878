//! The CLI's tools: `plan` (a step's memory), `tune` (the fastest kernels, cached) and `export`
//! (a run for the official trainer, or its backbone for transformers).

use super::shell_word;
use dinoscope::gpu::Gpu;
use std::ops::ControlFlow;
use std::path::Path;
use std::process::ExitCode;

/// `dinoscope plan`: the step's peak GPU memory (a dry run of the step's own code), the largest
/// tensors, whether it fits this adapter, and settings that would when it does not.
pub fn plan(
    gpu: &Gpu,
    cfg: &dinoscope::train::config::TrainConfig,
    memory: Option<&str>,
) -> Result<ExitCode, String> {
    use dinoscope::train::plan::{self, human};
    let budget = match memory {
        Some(m) => Some(plan::parse_size(m).map_err(|e| format!("--memory: {e}"))?),
        None => plan::device_memory(gpu),
    };
    let p = plan::plan(gpu, cfg, plan::PLAN_STEPS)?;
    let a = &cfg.augment;
    dinoscope::say!("adapter: {} ({:?})", gpu.info.name, gpu.info.backend);
    dinoscope::say!(
        "model: dim {} depth {} patch {}, {} registers; head {} prototypes",
        cfg.model.dim,
        cfg.model.depth,
        cfg.model.patch,
        cfg.model.registers,
        cfg.head.prototypes
    );
    dinoscope::say!(
        "step: batch {} × (2×{} + {}×{} crops), checkpointing {} of {} blocks, precision {:?}",
        cfg.batch_size,
        a.global_size,
        a.n_local,
        a.local_size,
        cfg.checkpoint.blocks(cfg.model.depth),
        cfg.model.depth,
        cfg.precision
    );
    dinoscope::say!(
        "weights, teacher, gradients, AdamW moments (and f16 copies): {}",
        human(p.state_bytes)
    );
    dinoscope::say!(
        "peak GPU memory: {} over the first {} steps; {} with the most masked patches a step can have",
        human(p.peak_bytes),
        plan::PLAN_STEPS,
        human(p.worst_bytes)
    );
    dinoscope::say!("largest tensors at the peak:");
    for l in p.largest.iter().take(6) {
        // A buffer no tensor holds at the peak is the pool's, kept for reuse.
        let cached = match (l.count, l.cached) {
            (_, 0) => String::new(),
            (0, c) => format!("{c} cached for reuse"),
            (_, c) => format!(" (and {c} cached for reuse)"),
        };
        if l.count == 0 {
            dinoscope::say!("        {:>10}  {cached}", human(l.bytes));
        } else {
            dinoscope::say!(
                "  {:>3} × {:>10}  e.g. {:?}{cached}",
                l.count,
                human(l.bytes),
                l.shape
            );
        }
    }
    let mut fits = true;
    if let Some(e) = &p.limit_error {
        dinoscope::say!("does not fit: {e}");
        fits = false;
    }
    match budget {
        Some(b) => {
            let ok = p.worst_bytes <= b;
            dinoscope::say!(
                "adapter memory: {}; the step's memory {} ({:.0}%){}",
                human(b),
                if ok { "fits" } else { "does NOT fit" },
                100.0 * p.worst_bytes as f64 / b as f64,
                if ok && !fits {
                    ", but a buffer is over the limit above"
                } else {
                    ""
                }
            );
            fits &= ok;
            if !fits {
                let advice = plan::advice(gpu, cfg, b);
                if advice.is_empty() {
                    dinoscope::say!("no batch size ≥ 2 fits, with or without checkpointing");
                } else {
                    dinoscope::say!("settings that fit:");
                    for a in advice {
                        dinoscope::say!("  {a}");
                    }
                }
            }
        }
        None => dinoscope::say!(
            "adapter memory: not reported by this backend; pass --memory (e.g. --memory 4GiB)"
        ),
    }
    Ok(if fits {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A line of `tune`'s report on stdout. A reader that went away (`| head`) does not stop the
/// tune: the cache it writes is what it is for.
macro_rules! report {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// `dinoscope tune`: the fastest matmul plan of every product the configs' steps run, and the
/// fastest kernels of every attention pass, cached.
pub fn tune(
    gpu: &Gpu,
    configs: &[String],
    (batch, precision): (Option<usize>, Option<&str>),
    reps: usize,
) -> Result<ExitCode, String> {
    let (dims, calls) = tune_targets(gpu, configs, batch, precision)?;
    // Minutes of timing are worth nothing without a cache to keep them: find out first.
    dinoscope::tune::save(gpu).map_err(|e| {
        format!(
            "the tuning cache cannot be written, so nothing would be kept: {e} (set \
             DINOSCOPE_CACHE_DIR to a writable folder)"
        )
    })?;
    report!(
        "adapter: {} ({:?}); {} products, {} repetitions each",
        gpu.info.name,
        gpu.info.backend,
        dims.len(),
        reps.max(1)
    );
    report!(
        "{:<38} {:>16} {:>10} {:>18} {:>10}",
        "product (m,n,k,batch,ta,tb type)",
        "default",
        "ms",
        "best",
        "ms"
    );
    // The cache is written after every product, so a tune stopped part way (a time limit, a
    // kill) keeps what it measured; Ctrl-C stops it after the product being timed, with the
    // summary of those timed.
    let stop = dinoscope::train::interrupt::stop_flag_saying(
        "stopping after this product, with a summary of those timed",
    )
    .map_err(|e| log::warn!("{e}; Ctrl-C ends the tune without a summary"))
    .ok();
    let stopping = || {
        if stop
            .as_ref()
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst))
        {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    let mut save_error = None;
    let tuned = dinoscope::tune::tune(gpu, &dims, reps.max(1), |t| {
        if let Err(e) = dinoscope::tune::save(gpu) {
            save_error.get_or_insert(e);
        }
        product_row(t);
        stopping()
    })?;
    let (before, after): (f64, f64) = tuned
        .iter()
        .fold((0.0, 0.0), |(a, b), t| (a + t.default.1, b + t.best.1));
    let of = if tuned.len() < dims.len() {
        format!(" (the {} of {} timed)", tuned.len(), dims.len())
    } else {
        String::new()
    };
    report!(
        "all products{of}: {:.3} ms with the defaults, {:.3} ms tuned",
        before * 1e3,
        after * 1e3
    );
    // A stop during the last item still timed it: only what was left undone is interrupted.
    if stopping().is_break() && (tuned.len() < dims.len() || !calls.is_empty()) {
        return interrupted(gpu, save_error, "attention passes not timed");
    }
    report!(
        "{:<38} {:>16} {:>10} {:>18} {:>10}",
        "attention (pass heads,nq,nk,d type)",
        "default",
        "ms",
        "best",
        "ms"
    );
    let attn = dinoscope::tune::tune_attention(gpu, &calls, reps.max(1), |t| {
        if let Err(e) = dinoscope::tune::save(gpu) {
            save_error.get_or_insert(e);
        }
        attention_row(t);
        stopping()
    })?;
    let (before, after): (f64, f64) = attn
        .iter()
        .fold((0.0, 0.0), |(a, b), t| (a + t.default.1, b + t.best.1));
    let of = if attn.len() < calls.len() {
        format!(" (the {} of {} timed)", attn.len(), calls.len())
    } else {
        String::new()
    };
    report!(
        "all attention passes{of}: {:.3} ms with the defaults, {:.3} ms tuned",
        before * 1e3,
        after * 1e3
    );
    if stopping().is_break() && attn.len() < calls.len() {
        return interrupted(gpu, save_error, "the remaining attention passes not timed");
    }
    if let Some(e) = save_error {
        return Err(format!("the tuning cache could not be written: {e}"));
    }
    let path = dinoscope::tune::save(gpu)?;
    report!("saved {}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// What `tune` times: products (with their operands' type) and attention passes.
type TuneTargets = (
    Vec<(
        dinoscope::kernels::matmul::MatmulDims,
        dinoscope::gpu::DType,
    )>,
    Vec<dinoscope::tune::AttnCall>,
);

/// The products and attention passes of the configs' training steps, each once.
fn tune_targets(
    gpu: &Gpu,
    configs: &[String],
    batch: Option<usize>,
    precision: Option<&str>,
) -> Result<TuneTargets, String> {
    use dinoscope::train::config::TrainConfig;
    let mut dims = Vec::new();
    let mut calls = Vec::new();
    for c in configs {
        let cfg = TrainConfig::load(c)?.with_overrides(batch, None, precision)?;
        let named = |e: String| format!("{c}: {e}");
        for call in dinoscope::tune::attention_calls(gpu, &cfg).map_err(named)? {
            let key = |(p, d, t): &dinoscope::tune::AttnCall| {
                dinoscope::kernels::attention_plan::key(p, d, *t)
            };
            if !calls.iter().any(|c| key(c) == key(&call)) {
                calls.push(call);
            }
        }
        for (d, t) in dinoscope::tune::products(gpu, &cfg).map_err(named)? {
            let key = d.key_for(t);
            if !dims
                .iter()
                .any(|(x, u): &(dinoscope::kernels::matmul::MatmulDims, _)| x.key_for(*u) == key)
            {
                dims.push((d, t));
            }
        }
    }
    Ok((dims, calls))
}

/// A product's line of `tune`'s report: its shape, the default plan and the fastest, timed.
fn product_row(t: &dinoscope::tune::Tuned) {
    let d = &t.dims;
    report!(
        "{:<38} {:>16} {:>10.3} {:>18} {:>10.3}",
        format!(
            "{},{},{},{},{},{} {}",
            d.m,
            d.n,
            d.k,
            d.batch,
            u8::from(d.trans_a),
            u8::from(d.trans_b),
            if t.dtype == dinoscope::gpu::DType::F16 {
                "f16"
            } else {
                "f32"
            }
        ),
        t.default.0.name(),
        t.default.1 * 1e3,
        t.best.0.name(),
        t.best.1 * 1e3
    );
}

/// An attention pass's line of `tune`'s report: the pass, the default variant and the fastest.
fn attention_row(t: &dinoscope::tune::TunedAttention) {
    let (pass, d, dtype) = &t.call;
    let ty = if *dtype == dinoscope::gpu::DType::F16 {
        "f16"
    } else {
        "f32"
    };
    report!(
        "{:<38} {:>16} {:>10.3} {:>18} {:>10.3}",
        format!(
            "{pass} {},{},{},{} {ty}",
            d.batch * d.heads,
            d.n_q,
            d.n_k,
            d.head_dim
        ),
        t.default.0,
        t.default.1 * 1e3,
        t.best.0,
        t.best.1 * 1e3
    );
}

/// The end of a tune that Ctrl-C stopped: what it timed is in the cache (written after each
/// product and pass), and the exit status says it was interrupted.
fn interrupted(gpu: &Gpu, save_error: Option<String>, left: &str) -> Result<ExitCode, String> {
    if let Some(e) = save_error {
        return Err(format!("the tuning cache could not be written: {e}"));
    }
    let path = dinoscope::tune::save(gpu)?;
    report!(
        "interrupted ({left}); what was timed is saved in {}",
        path.display()
    );
    Ok(ExitCode::from(
        dinoscope::train::interrupt::EXIT_INTERRUPTED,
    ))
}

/// `dinoscope export RUN --to dinov2`: the run's newest verified checkpoint for the official
/// trainer.
pub fn export(
    run: &Path,
    to: &str,
    output: Option<&Path>,
    overwrite: bool,
) -> Result<ExitCode, String> {
    if to != "dinov2" && to != "hf" {
        return Err(format!(
            "unknown export target '{to}' (known: dinov2, the facebookresearch/dinov2 trainer; \
             hf, a Hugging Face model folder for transformers)"
        ));
    }
    let (cfg, state) = dinoscope::train::run::load_checkpoint(run)?;
    if to == "hf" {
        let out = output.map_or_else(|| run.join("export-hf"), Path::to_path_buf);
        let class = dinoscope::train::export::export_hf(&cfg, &state, &out, overwrite)
            .map_err(|e| format!("{}: cannot export to hf: {e}", run.display()))?;
        dinoscope::say!(
            "step {} of {}: the teacher backbone → {}: {} ({class})",
            state.step,
            run.display(),
            out.display(),
            dinoscope::train::export::HF_FILES.join(", ")
        );
        let full = dinoscope::io::full_path(&out);
        dinoscope::say!(
            "transformers loads it: AutoModel.from_pretrained({:?})",
            full.to_string_lossy()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let out = output.map_or_else(|| run.join("export-dinov2"), Path::to_path_buf);
    dinoscope::train::export::export_dinov2(&cfg, &state, &out, overwrite)
        .map_err(|e| format!("{}: cannot export to dinov2: {e}", run.display()))?;
    dinoscope::say!(
        "step {} of {} → {}: {}",
        state.step,
        run.display(),
        out.display(),
        dinoscope::train::export::FILES.join(", ")
    );
    // Full paths: the second command runs in another folder.
    let full = dinoscope::io::full_path(&out);
    let script = full.join("to_dinov2_checkpoint.py");
    let yaml = full.join("config.yaml");
    dinoscope::say!(
        "next: python {} (torch, safetensors), then in a dinov2 checkout: \
         python dinov2/train/train.py --config-file {} --output-dir OUT train.dataset_path=…",
        shell_word(&script.to_string_lossy()),
        shell_word(&yaml.to_string_lossy())
    );
    Ok(ExitCode::SUCCESS)
}
