//! Will it fit? The peak GPU memory of a training step, found by running the step's own code on
//! a dry-run device ([`Gpu::dry_run`]): every tensor is "allocated" from the same pool with the
//! same sizes, lifetimes and reuse as a real run, but no buffer exists and no kernel runs. The
//! figure is therefore the runtime's pooled peak of the real run, not a formula that can drift
//! from the code.

use super::config::{Checkpoint, TrainConfig};
use super::trainer::Trainer;
use crate::data::loader::{Batch, MASK_STREAM};
use crate::data::masks::batch_masks_with_targets;
use crate::data::rng::Rng;
use crate::gpu::{Gpu, LiveBuffers};

/// The memory of a training configuration on one adapter.
#[derive(Clone, Debug)]
pub struct MemoryPlan {
    /// Peak pooled GPU memory over the first steps of the run, with their own iBOT masks.
    pub peak_bytes: u64,
    /// The same with every masked crop at the top of its mask-ratio bin (the most masked rows
    /// any step can have): what the run must be able to hold.
    pub worst_bytes: u64,
    /// Parameters, EMA teacher, gradients, AdamW moments and centers.
    pub state_bytes: u64,
    /// The largest live buffers at the worst-case peak.
    pub largest: Vec<LiveBuffers>,
    /// A tensor larger than one storage binding of this adapter, if any.
    pub limit_error: Option<String>,
}

/// Steps simulated for [`MemoryPlan::peak_bytes`]: enough for the pool to reach its steady state
/// (`bench train` measures one warm-up step and then a few).
pub const PLAN_STEPS: u64 = 3;

/// Runs `steps` dry steps (with the run's real iBOT masks) and one worst-case step of `cfg` on
/// a dry twin of `gpu`.
pub fn plan(gpu: &Gpu, cfg: &TrainConfig, steps: u64) -> Result<MemoryPlan, String> {
    cfg.validate()?;
    cfg.check_batch_memory()?;
    // A step with Gram anchoring on holds more than one before it starts: plan that one.
    let mut cfg = cfg.clone();
    if let Some(g) = &mut cfg.gram {
        g.start = 0;
        g.ramp = 0;
    }
    let cfg = &cfg;
    let dry = gpu.dry_run();
    let mut trainer = Trainer::new(&dry, cfg.clone()).map_err(|e| e.to_string())?;
    let state_bytes = dry.pool_stats().live_bytes;
    let mut limit_error = None;
    let mut run = |trainer: &mut Trainer, batch: &Batch| -> Result<(), String> {
        match trainer.submit_step(batch) {
            Ok(_) => Ok(()),
            Err(e) => {
                let msg = e.to_string();
                if msg.contains("max_storage_buffer_binding_size") {
                    limit_error.get_or_insert(msg);
                    Ok(())
                } else {
                    Err(msg)
                }
            }
        }
    };
    for step in 0..steps.max(1) {
        run(&mut trainer, &dry_batch(cfg, step, false))?;
    }
    let peak_bytes = dry.pool_stats().peak_bytes;
    run(&mut trainer, &dry_batch(cfg, steps.max(1), true))?;
    let worst_bytes = dry.pool_stats().peak_bytes;
    Ok(MemoryPlan {
        peak_bytes,
        worst_bytes,
        state_bytes,
        largest: dry.largest_at_peak(),
        limit_error,
    })
}

/// A batch of zeros with step `step`'s iBOT masks, or with every masked crop at its bin's top.
pub fn dry_batch(cfg: &TrainConfig, step: u64, worst: bool) -> Batch {
    let b = cfg.batch_size;
    let a = &cfg.augment;
    let grid = a.global_size / cfg.model.patch.max(1);
    let mut rng = Rng::derive(cfg.seed, &[step, MASK_STREAM]);
    let masks =
        batch_masks_with_targets(2 * b, grid, grid, cfg.mask_prob, cfg.mask_ratio, &mut rng);
    let top = worst_targets(2 * b, grid * grid, cfg);
    let mut flat = Vec::with_capacity(2 * b * grid * grid);
    for (i, (m, _)) in masks.iter().enumerate() {
        if worst {
            let t = top.get(i).copied().unwrap_or(0);
            flat.extend((0..grid * grid).map(|p| if p < t { 1.0 } else { 0.0 }));
        } else {
            flat.extend(m.iter().map(|&v| if v { 1.0 } else { 0.0 }));
        }
    }
    Batch {
        step,
        epoch: 0,
        globals: vec![0; 2 * b * 3 * a.global_size * a.global_size],
        locals: vec![0; a.n_local * b * 3 * a.local_size * a.local_size],
        masks: flat,
        gram: vec![0; 2 * b * 3 * a.gram_size * a.gram_size],
        labels: vec![None; b],
        skipped: 0,
    }
}

/// The most patches each masked crop can get: the top of its mask-ratio bin.
fn worst_targets(n_crops: usize, n_patches: usize, cfg: &TrainConfig) -> Vec<usize> {
    let n_masked = crate::data::masks::masked_crop_count(n_crops, cfg.mask_prob);
    let (lo, hi) = cfg.mask_ratio;
    (1..=n_masked)
        .map(|i| {
            let frac = lo + (hi - lo) * i as f32 / n_masked as f32;
            ((n_patches as f32 * frac).max(0.0) as usize).min(n_patches)
        })
        .collect()
}

/// Whether a planned step fits in `budget` bytes (unknown: only the adapter's binding limits are
/// checked): `Err` holds the reason and the settings that would fit.
pub fn check_fits(
    gpu: &Gpu,
    cfg: &TrainConfig,
    p: &MemoryPlan,
    budget: Option<u64>,
) -> Result<(), String> {
    if let Some(e) = &p.limit_error {
        return Err(format!("this run does not fit the adapter: {e}"));
    }
    let Some(budget) = budget else {
        return Ok(());
    };
    if p.worst_bytes <= budget {
        return Ok(());
    }
    let advice = advice(gpu, cfg, budget);
    Err(format!(
        "a step needs {} of GPU memory and the adapter has {}; {}",
        human(p.worst_bytes),
        human(budget),
        if advice.is_empty() {
            "choose a smaller model or crops".to_string()
        } else {
            format!("settings that fit: {}", advice.join("; "))
        }
    ))
}

/// Refuses a config whose parameters alone cannot fit this adapter's largest buffer, its
/// memory, or the host's available memory, before anything is allocated. (The full step's peak
/// is [`plan`]'s job; this is the cheap check every run makes.)
pub fn check_capacity(gpu: &Gpu, cfg: &TrainConfig) -> Result<(), String> {
    cfg.check_batch_memory()?;
    let params = cfg.trainable_params();
    let bytes = params.saturating_mul(4);
    let max_buffer = gpu.limits.max_buffer_size as u128;
    if bytes > max_buffer {
        return Err(format!(
            "the {params} trainable parameters take {}, more than this adapter's largest buffer \
             ({}); lower the model or head sizes",
            human(bytes as u64),
            human(max_buffer as u64)
        ));
    }
    // Student, teacher, two AdamW moments and the gradients live on the device.
    let state = bytes.saturating_mul(5);
    if let Some(mem) = device_memory(gpu) {
        if state > mem as u128 {
            return Err(format!(
                "the training state takes {} (parameters, teacher, AdamW moments, gradients), \
                 more than this adapter's {}; lower the model or head sizes",
                human(state as u64),
                human(mem)
            ));
        }
    }
    // Initialisation and checkpoints hold about four copies of the parameters on the host.
    let host = bytes.saturating_mul(4);
    if let Some(avail) = host_available() {
        if host > avail as u128 {
            return Err(format!(
                "initialising and checkpointing this model needs about {} of host memory; {} is \
                 available",
                human(host as u64),
                human(avail)
            ));
        }
    }
    Ok(())
}

/// [`check_capacity`], then the planner's dry run of the first steps against the adapter's
/// memory where it is known: a run that cannot fit is refused with settings that would.
pub fn check_run(gpu: &Gpu, cfg: &TrainConfig) -> Result<(), String> {
    check_capacity(gpu, cfg)?;
    // One step, as the app's estimate: the worst case covers every mask draw.
    let p = plan(gpu, cfg, 1)?;
    check_fits(gpu, cfg, &p, device_memory(gpu))
}

/// Host memory available to new allocations (Linux: MemAvailable), where the OS says.
pub fn host_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// The device-local memory of the adapter behind `gpu`, where the backend tells it (Vulkan), or
/// `DINOSCOPE_GPU_MEMORY` (bytes, or with a KiB/MiB/GiB or kB/MB/GB suffix) when set.
pub fn device_memory(gpu: &Gpu) -> Option<u64> {
    if let Ok(text) = std::env::var("DINOSCOPE_GPU_MEMORY") {
        match parse_size(&text) {
            Ok(v) => return Some(v),
            Err(e) => {
                // Once: the planner asks for every config it sizes.
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| log::warn!("DINOSCOPE_GPU_MEMORY left aside: {e}"));
            }
        }
    }
    vulkan_device_local(gpu)
}

// wgpu's Vulkan backend exists on Linux, Windows and Android (not on Apple platforms, where
// Metal has no such query here, nor in the browser).
#[cfg(not(any(target_arch = "wasm32", target_vendor = "apple")))]
fn vulkan_device_local(gpu: &Gpu) -> Option<u64> {
    // SAFETY: the hal device is only read (memory properties of its physical device) while the
    // guard keeps it alive.
    let hal = unsafe { gpu.device.as_hal::<wgpu::hal::api::Vulkan>() }?;
    let instance = hal.shared_instance().raw_instance();
    // SAFETY: a valid physical device of this instance.
    let props =
        unsafe { instance.get_physical_device_memory_properties(hal.raw_physical_device()) };
    let n = (props.memory_heap_count as usize).min(props.memory_heaps.len());
    // Bit 0 of the heap flags: DEVICE_LOCAL.
    props.memory_heaps[..n]
        .iter()
        .filter(|h| h.flags.as_raw() & 1 != 0)
        .map(|h| h.size)
        .max()
}

#[cfg(any(target_arch = "wasm32", target_vendor = "apple"))]
fn vulkan_device_local(_gpu: &Gpu) -> Option<u64> {
    None
}

/// Parses "4GiB", "512 MiB", "4G", "4096M", "1.5e3M", "8GB" or a byte count (K, M and G count
/// in 1,024s, alone or with "iB"; kB, MB and GB in 1,000s); a GPU's memory, so at least 1 MiB
/// and at most 1 PiB.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    // The unit is the letters at the end; the number before it may have an exponent.
    let split = t.trim_end_matches(|c: char| c.is_ascii_alphabetic()).len();
    let (num, unit) = t.split_at(split);
    let num = num.trim();
    let v: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size (use e.g. 4GiB, 512MiB or a byte count)"))?;
    // A card sold as "8 GB" has 8 GiB; read as SI, `8GB` plans for 7.45 GiB, on the safe side.
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        _ => return Err(format!("'{s}': unknown size unit (use KiB, MiB or GiB)")),
    };
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("'{s}': a size must be positive"));
    }
    let bytes = v * mult;
    if bytes < (1u64 << 20) as f64 {
        return Err(format!("'{s}': less than 1 MiB, not a GPU's memory"));
    }
    // A float cast saturates: 1e30GiB would plan for 16 EiB without a word.
    if bytes > (1u64 << 50) as f64 {
        return Err(format!("'{s}': more than 1 PiB, not a GPU's memory"));
    }
    Ok(bytes as u64)
}

/// Bytes as GiB or MiB.
pub fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", b / (1024.0 * 1024.0 * 1024.0))
    } else {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    }
}

/// Settings that fit `budget` bytes when `cfg` does not: for each checkpointing choice, the
/// largest batch (halving from the configured one) whose worst-case peak fits.
pub fn advice(gpu: &Gpu, cfg: &TrainConfig, budget: u64) -> Vec<String> {
    let mut out = Vec::new();
    let mut choices = vec![cfg.checkpoint];
    if cfg.checkpoint != Checkpoint::All {
        choices.push(Checkpoint::All);
    }
    for ck in choices {
        let mut batch = cfg.batch_size;
        while batch >= 2 {
            let mut c = cfg.clone();
            c.batch_size = batch;
            c.checkpoint = ck;
            if let Ok(p) = plan(gpu, &c, 1) {
                if p.limit_error.is_none() && p.worst_bytes <= budget {
                    out.push(format!(
                        "batch_size: {batch}, checkpoint: {ck:?} (peak {})",
                        human(p.worst_bytes)
                    ));
                    break;
                }
            }
            batch /= 2;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_read_with_units_exponents_and_a_floor() {
        let g = 1u64 << 30;
        assert_eq!(parse_size("4GiB"), Ok(4 * g));
        assert_eq!(parse_size(" 512 MiB "), Ok(512 << 20));
        assert_eq!(parse_size("4G"), Ok(4 * g));
        assert_eq!(parse_size("8GB"), Ok(8_000_000_000));
        assert_eq!(parse_size("300 MB"), Ok(300_000_000));
        assert_eq!(parse_size("1.5e3M"), Ok(1500 << 20));
        assert_eq!(parse_size("1048576GiB"), Ok(1 << 50));
        assert_eq!(parse_size("1073741824"), Ok(g));
        for bad in [
            "1KiB",
            "4 apples",
            "GiB",
            "-1G",
            "NaN G",
            "1e99GiB",
            "18446744073709551616",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
