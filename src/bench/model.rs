//! `dinoscope bench vit|train|loader`: whole-model throughput, wall clock.

use super::{time, Row, TOOL};
use crate::gpu::{Gpu, Result};
use crate::selftest::checks_random as random;
use std::time::Instant;

/// ViT inference throughput: images per second and peak pooled GPU memory for each
/// (image size, batch) pair, with random weights of the given config. With `profile`, each
/// run's forward is then recorded `reps` more times with every dispatch timed, and its GPU time
/// printed by kernel and by product and attention pass (as `bench train --profile`).
pub fn vit(
    gpu: &Gpu,
    cfg: &crate::model::config::VitConfig,
    runs: &[(usize, usize)],
    reps: usize,
    dtype: crate::gpu::DType,
    profile: bool,
) -> Result<Vec<Row>> {
    if profile && !gpu.has_timestamps() {
        return Err(crate::gpu::GpuError::Wgpu(format!(
            "--profile needs GPU timestamps, which {} does not offer",
            gpu.info.name
        )));
    }
    // Each run's pixels in one buffer: refused before anything is allocated when they exceed
    // the adapter's largest binding (or overflow).
    let max_values = gpu.limits.max_storage_buffer_binding_size as usize / 4;
    for &(size, batch) in runs {
        let side = size / cfg.patch * cfg.patch;
        let values = [3, side, side]
            .iter()
            .try_fold(batch, |n, &f| n.checked_mul(f));
        if values.is_none_or(|v| v > max_values) {
            return Err(crate::gpu::GpuError::Wgpu(format!(
                "--runs {size}x{batch}: {batch} pictures of {side}×{side} pixels exceed {} MiB, \
                 the largest buffer {} binds; use a smaller size or batch",
                (max_values * 4) >> 20,
                gpu.info.name
            )));
        }
    }
    let mut rows = Vec::new();
    use crate::model::vit::{ForwardOptions, Vit};
    let layout = crate::model::vit::param_layout(cfg);
    // The random weights are made on the host in f32, packed into one flat copy (and an f16
    // one), then stored on the adapter: both are checked before either is allocated.
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let (host, device) = (
        layout.total as u64 * (8 + 2 * u64::from(dtype == crate::gpu::DType::F16)),
        (layout.total * dtype.bytes()) as u64,
    );
    let (host_have, device_have) = (
        crate::train::plan::host_available(),
        crate::train::plan::device_memory(gpu),
    );
    let fits = |need: u64, have: Option<u64>| have.is_none_or(|h| need <= h);
    if !fits(host, host_have) {
        return Err(crate::gpu::GpuError::Wgpu(format!(
            "the model's {} parameters need about {:.1} GiB of host memory for their random \
             values, more than the {:.1} GiB available; use a smaller config",
            layout.total,
            gib(host),
            gib(host_have.unwrap_or(0))
        )));
    }
    if !fits(device, device_have) {
        return Err(crate::gpu::GpuError::Wgpu(format!(
            "the model's {} parameters take {:.1} GiB, more than {}'s {:.1} GiB; use a smaller \
             config",
            layout.total,
            gib(device),
            gpu.info.name,
            gib(device_have.unwrap_or(0))
        )));
    }
    let values = layout
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            (
                e.name.clone(),
                random(e.numel(), 1000 + i as u64, -0.02, 0.02),
            )
        })
        .collect();
    let vit = Vit::from_host_as(gpu, cfg.clone(), &values, dtype)
        .map_err(|e| crate::gpu::GpuError::Wgpu(e.to_string()))?;
    let tag = match dtype {
        crate::gpu::DType::F32 => "",
        crate::gpu::DType::F16 => " (f16)",
    };
    crate::say!(
        "adapter: {} ({:?}); model dim {} depth {} heads {} patch {} registers {}; {} repetitions, median",
        gpu.info.name, gpu.info.backend, cfg.dim, cfg.depth, cfg.heads, cfg.patch, cfg.registers, reps
    );
    crate::say!(
        "{:<28} {:>12} {:>12} {:>14}  clock",
        "input",
        "time",
        "img/s",
        "peak memory"
    );
    for &(size, batch) in runs {
        let side = size / cfg.patch * cfg.patch;
        let pixels = gpu.upload(
            &random(batch * 3 * side * side, 7, -2.0, 2.0),
            &[batch, 3, side, side],
        );
        gpu.trim_pool();
        gpu.reset_peak_memory();
        // Records one forward; the dispatches it took.
        let forward = |rec: &mut crate::gpu::Recorder| -> Result<usize> {
            let opts = ForwardOptions::default();
            vit.forward(rec, &pixels, batch, side, side, None, &opts)
                .map_err(|e| crate::gpu::GpuError::Wgpu(e.to_string()))?;
            Ok(rec.dispatch_count())
        };
        let mut recorded = Ok(0);
        let (t, ts) = time(gpu, reps, |rec| recorded = forward(rec))?;
        let dispatches = recorded?;
        let peak_bytes = gpu.pool_stats().peak_bytes;
        let peak = peak_bytes as f64 / (1u64 << 20) as f64;
        rows.push(Row {
            tool: TOOL,
            bench: "vit",
            name: format!("vit {side}x{side} batch {batch}{tag}"),
            seconds: t,
            rate: batch as f64 / t,
            unit: "img/s".into(),
            peak_bytes: Some(peak_bytes),
            clock: if ts { "gpu" } else { "wall" }.into(),
            config: None,
        });
        crate::say!(
            "{:<28} {:>9.1} ms {:>12.2} {:>10.1} MiB  {}",
            format!("{side}x{side} batch {batch}{tag}"),
            t * 1e3,
            batch as f64 / t,
            peak,
            if ts { "gpu" } else { "wall" }
        );
        if profile {
            // After the timed runs, so the per-dispatch timing does not slow them.
            gpu.start_profile();
            let run = || -> Result<()> {
                for _ in 0..reps {
                    let mut rec = crate::gpu::Recorder::new(gpu);
                    forward(&mut rec)?;
                    rec.finish()?;
                }
                Ok(())
            };
            let done = run();
            // Taken before any error returns, so a failed run does not leave profiling on.
            let p = gpu.take_profile();
            done?;
            let busy: f64 = p.kernels.iter().map(|(_, k)| k.seconds).sum::<f64>() / reps as f64;
            // Below 100%, the GPU sat idle between dispatches (launches, barriers) for the rest;
            // above it, the pass a profile gives each dispatch cost more than that idle time.
            crate::say!(
                "profile of {side}x{side} batch {batch}{tag}: {dispatches} dispatches a forward; \
                 each timed alone, they add up to {:.2} ms, {:.0}% of the {:.2} ms forward",
                busy * 1e3,
                100.0 * busy / t.max(1e-12),
                t * 1e3
            );
            print_profile(&p, reps as u64, "forward");
        }
    }
    Ok(rows)
}

/// Training throughput: images per second (wall clock, data loading included) and peak pooled GPU
/// memory over `steps` steps of a config, after one warm-up step, on `data` (an image folder or
/// IDX file) or the bundled Fashion-MNIST subset.
pub fn train(
    gpu: &Gpu,
    cfg: &crate::train::config::TrainConfig,
    data: Option<&std::path::Path>,
    steps: u64,
    profile: bool,
) -> std::result::Result<Vec<Row>, String> {
    use crate::data::loader::Loader;
    crate::train::plan::check_capacity(gpu, cfg)?;
    let (ds, _) = crate::train::run::datasets(data)?;
    let mut trainer =
        crate::train::trainer::Trainer::new(gpu, cfg.clone()).map_err(|e| e.to_string())?;
    let mut loader = Loader::new(ds, cfg.loader_config(), 0);
    let batch = loader.next_batch().map_err(|e| e.to_string())?;
    trainer.train_step(&batch).map_err(|e| e.to_string())?;
    // The host's share of a step: recording and submitting it with nothing else in flight (a CPU
    // driver such as lavapipe runs a submission before it accepts the next); the median of three.
    let mut recordings = Vec::new();
    let mut dispatches = 0;
    for _ in 0..3 {
        let batch = loader.next_batch().map_err(|e| e.to_string())?;
        let r0 = Instant::now();
        let pending = trainer.submit_step(&batch).map_err(|e| e.to_string())?;
        recordings.push(r0.elapsed().as_secs_f64());
        dispatches = pending.dispatches();
        pollster::block_on(pending.read(gpu)).map_err(|e| e.to_string())?;
    }
    recordings.sort_by(f64::total_cmp);
    let recording = recordings[1];
    gpu.reset_peak_memory();
    // As `dinoscope train` runs them: each step is submitted before the previous one's metrics
    // are read, so the GPU runs one step while the host records the next.
    let t0 = Instant::now();
    let mut in_flight = None;
    let mut waited = 0.0;
    for _ in 0..steps {
        let w0 = Instant::now();
        let batch = loader.next_batch().map_err(|e| e.to_string())?;
        waited += w0.elapsed().as_secs_f64();
        let pending = trainer.submit_step(&batch).map_err(|e| e.to_string())?;
        if let Some(p) = in_flight.replace(pending) {
            pollster::block_on(p.read(gpu)).map_err(|e| e.to_string())?;
        }
    }
    if let Some(p) = in_flight {
        pollster::block_on(p.read(gpu)).map_err(|e| e.to_string())?;
    }
    let dt = t0.elapsed().as_secs_f64();
    let a = &cfg.augment;
    crate::say!(
        "adapter: {} ({:?}); model dim {} depth {}; batch {} × (2×{} + {}×{} crops), {} prototypes",
        gpu.info.name,
        gpu.info.backend,
        cfg.model.dim,
        cfg.model.depth,
        cfg.batch_size,
        a.global_size,
        a.n_local,
        a.local_size,
        cfg.head.prototypes
    );
    crate::say!(
        "{steps} steps: {:.2} s/step, {:.1} img/s, peak pooled GPU memory {:.1} MiB (wall clock, data loading included)",
        dt / steps.max(1) as f64,
        (steps as usize * cfg.batch_size) as f64 / dt,
        gpu.pool_stats().peak_bytes as f64 / (1u64 << 20) as f64
    );
    crate::say!(
        "host: {:.2} ms to record and submit one step ({} dispatches, median of 3); {:.1} ms per \
         step waiting for the loader ({} worker threads)",
        recording * 1e3,
        dispatches,
        waited * 1e3 / steps.max(1) as f64,
        cfg.workers
    );
    if gpu.has_choices() {
        let (stood_in, alone) = gpu.missed_choices();
        crate::say!(
            "tuning cache: {stood_in} product shapes without a plan of their own took a near shape's; \
             {} ran untuned{}{}",
            alone.len(),
            if alone.is_empty() { "" } else { ": " },
            alone.join(" ")
        );
    }
    if profile {
        if !gpu.start_profile() {
            return Err(format!(
                "--profile needs GPU timestamps, which {} does not offer",
                gpu.info.name
            ));
        }
        for _ in 0..steps {
            let batch = loader.next_batch().map_err(|e| e.to_string())?;
            trainer.train_step(&batch).map_err(|e| e.to_string())?;
        }
        print_profile(&gpu.take_profile(), steps, "step");
    }
    Ok(vec![Row {
        tool: TOOL,
        bench: "train",
        name: format!(
            "train step batch {}{}",
            cfg.batch_size,
            match cfg.precision {
                crate::train::config::Precision::F32 => "",
                crate::train::config::Precision::Mixed => " (mixed)",
            }
        ),
        seconds: dt / steps.max(1) as f64,
        rate: (steps as usize * cfg.batch_size) as f64 / dt,
        unit: "img/s".into(),
        peak_bytes: Some(gpu.pool_stats().peak_bytes),
        clock: "wall".into(),
        config: None,
    }])
}

/// Prints a kernel profile of `steps` steps (or forwards: `per_what` names them): GPU time per
/// step by kernel, the longest first, with its share; then by product and attention pass
/// (shape, precision and kernel), with the rate each ran at.
fn print_profile(profile: &crate::gpu::Profile, steps: u64, per_what: &str) {
    let rows = &profile.kernels;
    let total: f64 = rows.iter().map(|(_, t)| t.seconds).sum();
    let per = |s: f64| s / steps.max(1) as f64 * 1e3;
    let share = |s: f64| 100.0 * s / total.max(1e-12);
    crate::say!(
        "GPU time by kernel over {steps} {per_what}{} (one pass per dispatch): {:.1} ms/{per_what}",
        if steps == 1 { "" } else { "s" },
        per(total)
    );
    crate::say!(
        "{:<34} {:>10} {:>10} {:>7}",
        "kernel",
        format!("ms/{per_what}"),
        format!("calls/{per_what}"),
        "share"
    );
    for (name, t) in rows.iter().take(25) {
        crate::say!(
            "{:<34} {:>10.2} {:>10.1} {:>6.1}%",
            name,
            per(t.seconds),
            t.count as f64 / steps.max(1) as f64,
            share(t.seconds)
        );
    }
    let work = &profile.work;
    if work.is_empty() {
        return;
    }
    let labelled: f64 = work.iter().map(|(_, t)| t.seconds).sum();
    crate::say!(
        "GPU time by product and attention pass: {:.1} ms/{per_what} ({:.1}% of the \
         {per_what}), the 30 longest",
        per(labelled),
        share(labelled)
    );
    crate::say!(
        "{:<50} {:>9} {:>10} {:>9} {:>7}",
        "work (m x n x k, ta/tb, batch; type; kernel)",
        format!("ms/{per_what}"),
        format!("calls/{per_what}"),
        "GFLOP/s",
        "share"
    );
    for (name, t) in work.iter().take(30) {
        crate::say!(
            "{:<50} {:>9.2} {:>10.1} {:>9.1} {:>6.1}%",
            name,
            per(t.seconds),
            t.calls as f64 / steps.max(1) as f64,
            t.flop_rate() / 1e9,
            share(t.seconds)
        );
    }
}

/// Loader throughput without a GPU: batches of a config built from `data` (or the bundled
/// subset) on the calling thread, then by `cfg.workers` threads as training takes them.
pub fn loader(
    cfg: &crate::train::config::TrainConfig,
    data: Option<&std::path::Path>,
    batches: u64,
) -> std::result::Result<Vec<Row>, String> {
    use crate::data::loader::{build_batch, Loader};
    cfg.check_batch_memory()?;
    let (ds, _) = crate::train::run::datasets(data)?;
    let lc = cfg.loader_config();
    let b = cfg.batch_size as f64;
    let a = &cfg.augment;
    crate::say!(
        "{}: batch {} × (2×{} + {}×{} crops)",
        ds.describe(),
        cfg.batch_size,
        a.global_size,
        a.n_local,
        a.local_size
    );
    let mut rows = Vec::new();
    let t0 = Instant::now();
    let one = batches.clamp(1, 4);
    for step in 0..one {
        build_batch(ds.clone(), &lc, step).map_err(|e| e.to_string())?;
    }
    let t1 = t0.elapsed().as_secs_f64() / one as f64;
    crate::say!(
        "1 thread: {:.1} ms per batch, {:.1} µs per image, {:.0} img/s",
        t1 * 1e3,
        t1 * 1e6 / b,
        b / t1
    );
    rows.push(Row {
        tool: TOOL,
        bench: "loader",
        name: "loader 1 thread".into(),
        seconds: t1,
        rate: b / t1,
        unit: "img/s".into(),
        peak_bytes: None,
        clock: "wall".into(),
        config: None,
    });
    if cfg.workers > 0 {
        let mut loader = Loader::new(ds, lc, 0);
        // The first batches wait for every worker to start; time the steady state after them.
        for _ in 0..cfg.workers {
            loader.next_batch().map_err(|e| e.to_string())?;
        }
        let t0 = Instant::now();
        for _ in 0..batches {
            loader.next_batch().map_err(|e| e.to_string())?;
        }
        let t = t0.elapsed().as_secs_f64() / batches.max(1) as f64;
        crate::say!(
            "{} worker threads: {:.1} ms per batch, {:.0} img/s",
            cfg.workers,
            t * 1e3,
            b / t
        );
        rows.push(Row {
            tool: TOOL,
            bench: "loader",
            name: format!("loader {} worker threads", cfg.workers),
            seconds: t,
            rate: b / t,
            unit: "img/s".into(),
            peak_bytes: None,
            clock: "wall".into(),
            config: None,
        });
    } else {
        crate::say!("0 worker threads: training builds each batch itself, at the 1-thread rate");
    }
    Ok(rows)
}
