//! `dinoscope bench kernels`: GPU timestamps where the adapter has them, wall clock otherwise;
//! the median of repetitions.

use crate::gpu::{Gpu, Recorder, Result};
use crate::kernels;
use crate::kernels::attention::{AttnDims, OutLayout, QkvLayout};
use crate::kernels::matmul::{Epilogue, MatmulDims, Plan, V4Tile};
use crate::selftest::checks_random as random;
use serde::Serialize;
use std::time::Instant;

/// One benchmark figure (what `--json` writes; `bench/compare.sh` reads the same names from the
/// PyTorch side).
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// What was measured, e.g. `matmul 4096x4096x4096`.
    pub name: String,
    /// Median seconds per repetition.
    pub seconds: f64,
    /// Throughput in `unit`.
    pub rate: f64,
    /// GFLOP/s, GB/s or img/s.
    pub unit: String,
    /// Peak pooled GPU memory, where measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_bytes: Option<u64>,
    /// GPU timestamps or wall clock.
    pub clock: String,
}

/// Prints one kernel row and keeps it.
fn emit(rows: &mut Vec<Row>, name: String, t: f64, rate: f64, unit: &str, ts: bool) {
    let clock = if ts { "gpu" } else { "wall" };
    println!(
        "{name:<44} {:>9.3} ms {rate:>9.1} {unit:<8} {clock}",
        t * 1e3
    );
    rows.push(Row {
        name,
        seconds: t,
        rate,
        unit: unit.into(),
        peak_bytes: None,
        clock: clock.into(),
    });
}

/// Writes rows as JSON (for `--json FILE`).
pub fn write_json(path: &std::path::Path, rows: &[Row]) -> std::result::Result<(), String> {
    let text = serde_json::to_string_pretty(rows).map_err(|e| e.to_string())?;
    crate::io::write_atomic(path, text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
}

/// Times `record` (one recording, one submit) `reps` times after a warm-up; median seconds and
/// whether GPU timestamps were used.
pub fn time(gpu: &Gpu, reps: usize, mut record: impl FnMut(&mut Recorder)) -> Result<(f64, bool)> {
    let mut times = Vec::new();
    let mut gpu_ts = false;
    for i in 0..=reps {
        let mut rec = Recorder::new_timed(gpu);
        record(&mut rec);
        let t0 = Instant::now();
        let ts = rec.finish_timed()?;
        let wall = t0.elapsed().as_secs_f64();
        if i == 0 {
            continue; // warm-up: pipelines compile, buffers allocate
        }
        gpu_ts = ts.is_some();
        times.push(ts.unwrap_or(wall));
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok((times[times.len() / 2], gpu_ts))
}

/// The square products with f16 operands (the `--precision f16` path): on the plain vec4
/// kernels, and on the cooperative-matrix kernel where the adapter has one.
fn f16_matmuls(
    gpu: &Gpu,
    reps: usize,
    sizes: &[(usize, usize, usize)],
    figures: &mut Vec<Row>,
) -> Result<()> {
    use crate::gpu::DType;
    for &(m, n, k) in sizes {
        let a = gpu.upload_as(&random(m * k, 1, -1.0, 1.0), &[m, k], DType::F16);
        let b = gpu.upload_as(&random(k * n, 2, -1.0, 1.0), &[k, n], DType::F16);
        let c = gpu.empty_as(&[m, n], DType::F16);
        let d = MatmulDims::new(m, n, k);
        let cpu = gpu.cpu_driver();
        let mut plans = vec![("vec4", Plan::for_device(&d, cpu))];
        for p in Plan::coop_plans(gpu) {
            plans.push((
                if p == Plan::Coop {
                    "coop"
                } else {
                    "coop 256x128"
                },
                p,
            ));
        }
        for (label, plan) in plans {
            let (t, ts) = time(gpu, reps, |rec| {
                let e = Epilogue::None;
                kernels::matmul::matmul_planned(rec, &c, &a, &b, d, 1.0, false, e, plan)
            })?;
            let flop = 2.0 * (m * n * k) as f64;
            let name = format!("matmul f16 {m}x{n}x{k} ({label})");
            emit(figures, name, t, flop / t / 1e9, "GFLOP/s", ts);
        }
    }
    Ok(())
}

/// A weight gradient of the mixed-precision step (fc1's at `vits14` batch 64: dW = dyᵀ·x, K =
/// every token of the global crops; a quarter of the tokens with `quick`), f16 operands and an
/// f32 product: the vec4 kernel's default split, and where the adapter has cooperative matrices
/// their kernel whole and split as it splits untuned.
fn f16_weight_gradient(gpu: &Gpu, reps: usize, quick: bool, figures: &mut Vec<Row>) -> Result<()> {
    use crate::gpu::DType;
    let tokens = if quick { 8224 } else { 32896 };
    let d = MatmulDims::new(1536, 384, tokens).ta();
    let (a_len, b_len) = d.operand_lens();
    let a = gpu.upload_as(&random(a_len, 1, -1.0, 1.0), &[a_len], DType::F16);
    let b = gpu.upload_as(&random(b_len, 2, -1.0, 1.0), &[b_len], DType::F16);
    let c = gpu.empty(&[d.m, d.n]);
    let mut plans = vec![Plan::for_device(&d, gpu.cpu_driver())];
    if let Some(side) = gpu.coop_side() {
        let splits = Plan::coop_splits(&d, side).max(2);
        plans.extend([Plan::Coop, Plan::CoopSplit { splits }]);
    }
    for plan in plans {
        let (t, ts) = time(gpu, reps, |rec| {
            let e = Epilogue::None;
            kernels::matmul::matmul_planned(rec, &c, &a, &b, d, 1.0, false, e, plan)
        })?;
        let flop = 2.0 * (d.m * d.n * d.k) as f64;
        let name = format!("matmul f16 {}x{}x{} ta ({})", d.m, d.n, d.k, plan.name());
        emit(figures, name, t, flop / t / 1e9, "GFLOP/s", ts);
    }
    Ok(())
}

/// What `dinoscope bench kernels` runs beside its default rows.
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelOpts {
    /// Skip the largest sizes (matmul 4096 and 8192, attention at batch 64, layer norm on
    /// 65,536 rows).
    pub quick: bool,
    /// The general matmul kernel (the runtime's only one before the vec4 kernels) beside each
    /// square matmul, for a before and after on one machine.
    pub general: bool,
    /// Every vec4 tile (64×64, 128×64, 128×128, K whole) beside each square matmul, so one run
    /// shows which tile suits the adapter at each size.
    pub tiles: bool,
}

/// Prints the kernel benchmark table and returns its rows.
pub fn kernels(gpu: &Gpu, reps: usize, opts: KernelOpts) -> Result<Vec<Row>> {
    let reps = reps.max(1);
    let mut figures = Vec::new();
    println!(
        "adapter: {} ({:?}), {} repetitions, median",
        gpu.info.name, gpu.info.backend, reps
    );
    println!("{:<44} {:>12} {:>18}  clock", "kernel", "time", "rate");
    let mut sizes = vec![(1024, 1024, 1024), (2048, 2048, 2048)];
    if !opts.quick {
        sizes.push((4096, 4096, 4096));
        sizes.push((8192, 8192, 8192));
    }
    square_matmuls(gpu, reps, &sizes, opts, &mut figures)?;
    if gpu.features.contains(wgpu::Features::SHADER_F16) {
        f16_matmuls(gpu, reps, &sizes, &mut figures)?;
        f16_weight_gradient(gpu, reps, opts.quick, &mut figures)?;
    }
    vits_linears(gpu, reps, &mut figures)?;
    memory_bound(gpu, reps, opts.quick, &mut figures)?;
    attention(gpu, reps, opts.quick, &mut figures)?;
    let stats = gpu.pool_stats();
    println!(
        "peak pooled GPU memory: {:.1} MiB",
        stats.peak_bytes as f64 / (1 << 20) as f64
    );
    Ok(figures)
}

/// Square f32 products with the runtime's plan, and with the plans `opts` asks for beside it.
fn square_matmuls(
    gpu: &Gpu,
    reps: usize,
    sizes: &[(usize, usize, usize)],
    opts: KernelOpts,
    figures: &mut Vec<Row>,
) -> Result<()> {
    for &(m, n, k) in sizes {
        let a = gpu.upload(&random(m * k, 1, -1.0, 1.0), &[m, k]);
        let b = gpu.upload(&random(k * n, 2, -1.0, 1.0), &[k, n]);
        let c = gpu.empty(&[m, n]);
        let d = MatmulDims::new(m, n, k);
        let flop = 2.0 * (m * n * k) as f64;
        let (t, ts) = time(gpu, reps, |rec| {
            kernels::matmul::matmul_forward(rec, &c, &a, &b, d)
        })?;
        let name = format!("matmul {m}x{n}x{k}");
        emit(figures, name, t, flop / t / 1e9, "GFLOP/s", ts);
        let mut others = Vec::new();
        if opts.general {
            // The tile GPUs give the general kernel (its 128×128 one also where there are many
            // tiles, as the runtime chose before).
            let tile = kernels::matmul::Tile::general();
            others.push(("general kernel".to_string(), Plan::General(tile)));
            let large = kernels::matmul::Tile::for_problem(m, n);
            if large != tile {
                others.push(("general kernel 128x128".to_string(), Plan::General(large)));
            }
        }
        if opts.tiles {
            for tile in V4Tile::ALL {
                others.push((tile.name().to_string(), Plan::Vec4 { tile, splits: 1 }));
            }
        }
        for (label, plan) in others {
            let (t, ts) = time(gpu, reps, |rec| {
                let e = Epilogue::None;
                kernels::matmul::matmul_planned(rec, &c, &a, &b, d, 1.0, false, e, plan)
            })?;
            let name = format!("matmul {m}x{n}x{k} ({label})");
            emit(figures, name, t, flop / t / 1e9, "GFLOP/s", ts);
        }
    }
    Ok(())
}

/// The four linear layers of ViT-S/14 at batch 64 (261 tokens, width 384, MLP 1536).
fn vits_linears(gpu: &Gpu, reps: usize, figures: &mut Vec<Row>) -> Result<()> {
    let rows = 64 * 261;
    let vits = [
        (rows, 3 * 384, 384, "qkv"),
        (rows, 384, 384, "proj"),
        (rows, 1536, 384, "fc1"),
        (rows, 384, 1536, "fc2"),
    ];
    for &(m, n, k, name) in &vits {
        let x = gpu.upload(&random(m * k, 3, -1.0, 1.0), &[m, k]);
        let w = gpu.upload(&random(n * k, 4, -0.1, 0.1), &[n, k]);
        let bias = gpu.upload(&random(n, 5, -0.1, 0.1), &[n]);
        let y = gpu.empty(&[m, n]);
        let (t, ts) = time(gpu, reps, |rec| {
            kernels::linear::linear_forward(rec, &y, &x, &w, Some(&bias), None)
        })?;
        let gf = 2.0 * (m * n * k) as f64 / t / 1e9;
        let name = format!("linear ViT-S {name} {m}x{n}x{k}");
        emit(figures, name, t, gf, "GFLOP/s", ts);
    }
    Ok(())
}

/// The memory-bound kernels in GB/s (bytes each must read and write once): a copy (the roof the
/// others are set against), layer norm, GELU, softmax, a bias gradient's column sums, residual +
/// LayerScale, AdamW and the teacher EMA.
fn memory_bound(gpu: &Gpu, reps: usize, quick: bool, figures: &mut Vec<Row>) -> Result<()> {
    let mut gb_row = |name: String, bytes: usize, (t, ts): (f64, bool)| {
        emit(figures, name, t, bytes as f64 / t / 1e9, "GB/s", ts);
    };
    // The MLP activations of ViT-S/14 at batch 64: 16,704 tokens × 1,536.
    let n = 64 * 261 * 1536;
    let xg = gpu.upload(&random(n, 7, -3.0, 3.0), &[n]);
    let yg = gpu.empty(&[n]);
    let t = time(gpu, reps, |rec| {
        kernels::elementwise::scale_forward(rec, &yg, &xg, 1.0)
    })?;
    gb_row(format!("copy {n}"), 2 * n * 4, t);
    // On GPUs, layer norm and softmax also in the layout before 16 columns a lane.
    let both: &[(bool, &str)] = &[(true, ""), (false, " (4 columns a lane)")];
    let row_layouts = if gpu.cpu_driver() { &both[..1] } else { both };
    let ln_rows: &[usize] = if quick { &[16704] } else { &[16704, 65536] };
    for &r in ln_rows {
        let d = 384;
        let x = gpu.upload(&random(r * d, 6, -1.0, 1.0), &[r, d]);
        let w = gpu.upload(&vec![1.0; d], &[d]);
        let b = gpu.upload(&vec![0.0; d], &[d]);
        let y = gpu.empty(&[r, d]);
        for &(wide, label) in row_layouts {
            let t = time(gpu, reps, |rec| {
                rec.set_wide_rows(wide);
                let _ = kernels::layernorm::layernorm_forward(rec, &y, &x, &w, &b, 1e-6);
            })?;
            gb_row(format!("layernorm {r}x{d}{label}"), 2 * r * d * 4, t);
        }
    }
    let t = time(gpu, reps, |rec| kernels::gelu::gelu_forward(rec, &yg, &xg))?;
    gb_row(format!("gelu {n}"), 2 * n * 4, t);
    let (sr, sc) = (64 * 6 * 261, 261);
    let xs = gpu.upload(&random(sr * sc, 8, -3.0, 3.0), &[sr, sc]);
    let ys = gpu.empty(&[sr, sc]);
    for &(wide, label) in row_layouts {
        let t = time(gpu, reps, |rec| {
            rec.set_wide_rows(wide);
            kernels::softmax::softmax_forward(rec, &ys, &xs, sc, 1.0)
        })?;
        gb_row(format!("softmax {sr}x{sc}{label}"), 2 * sr * sc * 4, t);
    }
    // The bias gradient of fc1 (the column sums of [16704, 1536]); on GPUs also with one
    // thread a column, the kernel CPU drivers take.
    let sums: &[(bool, &str)] = &[(false, ""), (true, " (one thread a column)")];
    let sum_layouts = if gpu.cpu_driver() { &sums[1..] } else { sums };
    let db = gpu.empty(&[1536]);
    for &(cpu, label) in sum_layouts {
        let t = time(gpu, reps, |rec| {
            rec.set_cpu_layouts(cpu);
            kernels::reduce::sum_rows(rec, &db, &xg, n / 1536, 1536, 1.0, false)
        })?;
        gb_row(format!("sum_rows {}x1536{label}", n / 1536), n * 4, t);
    }
    // out = x + branch·γ over the same activations, γ of width 384.
    let branch = gpu.upload(&random(n, 11, -1.0, 1.0), &[n]);
    let gamma = gpu.upload(&random(384, 12, 0.5, 1.5), &[384]);
    let t = time(gpu, reps, |rec| {
        kernels::elementwise::add_mul(rec, &yg, &xg, &branch, &gamma)
    })?;
    gb_row(format!("residual+layerscale {n}"), 3 * n * 4, t);
    // Teacher EMA and AdamW over n parameters (flat buffers, as the step keeps them).
    let t = time(gpu, reps, |rec| {
        kernels::ema::ema_update(rec, &yg, &xg, 0.996)
    })?;
    gb_row(format!("ema {n}"), 3 * n * 4, t);
    let (m, v) = (
        gpu.upload(&vec![0.0; n], &[n]),
        gpu.upload(&vec![0.0; n], &[n]),
    );
    use kernels::adamw::{AdamWStep, Segment, Segments};
    let segs = Segments::new(
        gpu,
        &[Segment {
            start: 0,
            end: n,
            lr_scale: 1.0,
            wd_scale: 1.0,
        }],
    );
    let h = AdamWStep {
        lr: 1e-4,
        weight_decay: 0.04,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        t: 1,
    };
    let t = time(gpu, reps, |rec| {
        kernels::adamw::adamw_step(rec, &yg, &m, &v, &branch, &segs, h)
    })?;
    // Reads parameter, gradient, both moments; writes parameter and moments.
    gb_row(format!("adamw {n}"), 7 * n * 4, t);
    Ok(())
}

/// Flash attention forward and backward at the ViT-S/14 shapes.
fn attention(gpu: &Gpu, reps: usize, quick: bool, figures: &mut Vec<Row>) -> Result<()> {
    let batch = if quick { 4 } else { 64 };
    let (h, n, d) = (6, 261, 64);
    let dims = AttnDims::new(batch, h, n, d);
    let len = batch * n * 3 * h * d;
    let qkv = gpu.upload(&random(len, 9, -1.0, 1.0), &[batch, n, 3 * h * d]);
    let out = gpu.empty(&[batch, n, h * d]);
    let dout = gpu.upload(
        &random(batch * n * h * d, 10, -1.0, 1.0),
        &[batch, n, h * d],
    );
    let dqkv = gpu.empty(&[batch, n, 3 * h * d]);
    let layout = QkvLayout::fused(h, n, d);
    let ol = OutLayout::bnhd(h, n, d);
    use kernels::attention_plan::{BACKWARD, FORWARD};
    // On GPUs, beside each pass's default, the variants the tuner weighs against it: the same
    // kernels with their head loops as written, the splits of a token over one, two or four
    // invocations the default does not take, and two invocations sharing two queries.
    let gpu_rows = !gpu.cpu_driver();
    let sg = gpu_rows && gpu.subgroups();
    let mut forwards = vec![(None, "")];
    let mut backwards = vec![(None, "")];
    if gpu_rows {
        forwards.push((Some("four"), " (loops as written)"));
    }
    if sg {
        forwards.push((Some("pairs-unrolled"), " (two invocations a query)"));
        forwards.push((
            Some("pairs"),
            " (two invocations a query, loops as written)",
        ));
        forwards.push((Some("quads"), " (four invocations a query)"));
        forwards.push((Some("crossed"), " (two invocations, two queries)"));
        backwards.push((Some("pairs"), " (loops as written)"));
        backwards.push((Some("single-unrolled"), " (one invocation a token)"));
        backwards.push((Some("quads"), " (four invocations a token)"));
        backwards.push((
            Some("pairs-shared"),
            " (two invocations a token, through workgroup memory)",
        ));
    } else if gpu_rows {
        backwards.push((Some("single-unrolled"), " (one invocation a token)"));
    }
    if gpu_rows {
        forwards.push((
            Some("crossed-shared"),
            " (two invocations, two queries, through workgroup memory)",
        ));
    }
    let flops = 4.0 * (batch * h * n * n * d) as f64;
    let mut lse = None;
    for (forced, label) in forwards {
        let (t, ts) = time(gpu, reps, |rec| {
            rec.force(FORWARD, forced);
            let l = kernels::attention::attention_forward(
                rec, &out, &qkv, &qkv, &qkv, dims, layout, ol,
            );
            if forced.is_none() {
                lse = Some(l);
            }
        })?;
        emit(
            figures,
            format!("attention fwd B={batch} H={h} T={n} d={d}{label}"),
            t,
            flops / t / 1e9,
            "GFLOP/s",
            ts,
        );
    }
    // f16 operands (inference, the mixed-precision step): the f32 layouts' kernels on f16
    // storage ("plain") beside the ones on cooperative matrices, where the adapter has them.
    if gpu.coop_side().is_some() {
        use crate::gpu::DType;
        let rec = Recorder::new(gpu);
        let plain = kernels::attention_plan::Forward::default_for(&rec).name();
        let plain_bwd = kernels::attention_plan::Backward::default_for(&rec).name();
        drop(rec);
        let qkv16 = gpu.upload_as(&random(len, 9, -1.0, 1.0), &[len], DType::F16);
        let out16 = gpu.empty_as(&[batch * n * h * d], DType::F16);
        let dout16 = gpu.upload_as(
            &random(batch * n * h * d, 10, -1.0, 1.0),
            &[batch * n * h * d],
            DType::F16,
        );
        let dqkv16 = gpu.empty_as(&[len], DType::F16);
        let mut lse16 = None;
        for (forced, label) in [(plain, "plain"), ("coop", "coop")] {
            let (t, ts) = time(gpu, reps, |rec| {
                rec.force(FORWARD, Some(forced));
                lse16 = Some(kernels::attention::attention_forward(
                    rec, &out16, &qkv16, &qkv16, &qkv16, dims, layout, ol,
                ));
            })?;
            emit(
                figures,
                format!("attention fwd f16 B={batch} H={h} T={n} d={d} ({label})"),
                t,
                flops / t / 1e9,
                "GFLOP/s",
                ts,
            );
        }
        if let Some(lse16) = lse16 {
            for (forced, label) in [(plain_bwd, "plain"), ("coop", "coop")] {
                let (t, ts) = time(gpu, reps, |rec| {
                    rec.force(BACKWARD, Some(forced));
                    kernels::attention::attention_backward(
                        rec, &dqkv16, &dqkv16, &dqkv16, &dout16, &qkv16, &qkv16, &qkv16, &out16,
                        &lse16, dims, layout, ol,
                    )
                })?;
                emit(
                    figures,
                    format!("attention bwd f16 B={batch} H={h} T={n} d={d} ({label})"),
                    t,
                    2.5 * flops / t / 1e9,
                    "GFLOP/s",
                    ts,
                );
            }
        }
    }
    let Some(lse) = lse else { return Ok(()) };
    for (forced, label) in backwards {
        let (t, ts) = time(gpu, reps, |rec| {
            rec.force(BACKWARD, forced);
            kernels::attention::attention_backward(
                rec, &dqkv, &dqkv, &dqkv, &dout, &qkv, &qkv, &qkv, &out, &lse, dims, layout, ol,
            )
        })?;
        emit(
            figures,
            format!("attention bwd B={batch} H={h} T={n} d={d}{label}"),
            t,
            2.5 * flops / t / 1e9,
            "GFLOP/s",
            ts,
        );
    }
    Ok(())
}

/// ViT inference throughput: images per second and peak pooled GPU memory for each
/// (image size, batch) pair, with random weights of the given config.
pub fn vit(
    gpu: &Gpu,
    cfg: &crate::model::config::VitConfig,
    runs: &[(usize, usize)],
    reps: usize,
    dtype: crate::gpu::DType,
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    use crate::model::vit::{ForwardOptions, Vit};
    let layout = crate::model::vit::param_layout(cfg);
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
    println!(
        "adapter: {} ({:?}); model dim {} depth {} heads {} patch {} registers {}; {} repetitions, median",
        gpu.info.name, gpu.info.backend, cfg.dim, cfg.depth, cfg.heads, cfg.patch, cfg.registers, reps
    );
    println!(
        "{:<28} {:>12} {:>12} {:>14}  clock",
        "input", "time", "img/s", "peak memory"
    );
    for &(size, batch) in runs {
        let side = size / cfg.patch * cfg.patch;
        let pixels = gpu.upload(
            &random(batch * 3 * side * side, 7, -2.0, 2.0),
            &[batch, 3, side, side],
        );
        gpu.trim_pool();
        gpu.reset_peak_memory();
        let mut err = None;
        let (t, ts) = time(gpu, reps, |rec| {
            if let Err(e) = vit.forward(
                rec,
                &pixels,
                batch,
                side,
                side,
                None,
                &ForwardOptions::default(),
            ) {
                err = Some(e);
            }
        })?;
        if let Some(e) = err {
            return Err(crate::gpu::GpuError::Wgpu(e.to_string()));
        }
        let peak_bytes = gpu.pool_stats().peak_bytes;
        let peak = peak_bytes as f64 / (1u64 << 20) as f64;
        rows.push(Row {
            name: format!("vit {side}x{side} batch {batch}{tag}"),
            seconds: t,
            rate: batch as f64 / t,
            unit: "img/s".into(),
            peak_bytes: Some(peak_bytes),
            clock: if ts { "gpu" } else { "wall" }.into(),
        });
        println!(
            "{:<28} {:>9.1} ms {:>12.2} {:>10.1} MiB  {}",
            format!("{side}x{side} batch {batch}{tag}"),
            t * 1e3,
            batch as f64 / t,
            peak,
            if ts { "gpu" } else { "wall" }
        );
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
    println!(
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
    println!(
        "{steps} steps: {:.2} s/step, {:.1} img/s, peak pooled GPU memory {:.1} MiB (wall clock, data loading included)",
        dt / steps.max(1) as f64,
        (steps as usize * cfg.batch_size) as f64 / dt,
        gpu.pool_stats().peak_bytes as f64 / (1u64 << 20) as f64
    );
    println!(
        "host: {:.2} ms to record and submit one step ({} dispatches, median of 3); {:.1} ms per \
         step waiting for the loader ({} worker threads)",
        recording * 1e3,
        dispatches,
        waited * 1e3 / steps.max(1) as f64,
        cfg.workers
    );
    if gpu.has_choices() {
        let (stood_in, alone) = gpu.missed_choices();
        println!(
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
        print_profile(&gpu.take_profile(), steps);
    }
    Ok(vec![Row {
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
    }])
}

/// Prints a kernel profile: GPU time per step by kernel, the longest first, with its share;
/// then by product and attention pass (shape, precision and kernel), with the rate each ran at.
fn print_profile(profile: &crate::gpu::Profile, steps: u64) {
    let rows = &profile.kernels;
    let total: f64 = rows.iter().map(|(_, t)| t.seconds).sum();
    let per = |s: f64| s / steps.max(1) as f64 * 1e3;
    let share = |s: f64| 100.0 * s / total.max(1e-12);
    println!(
        "GPU time by kernel over {steps} steps (one pass per dispatch): {:.1} ms/step",
        per(total)
    );
    println!(
        "{:<34} {:>10} {:>10} {:>7}",
        "kernel", "ms/step", "calls/step", "share"
    );
    for (name, t) in rows.iter().take(25) {
        println!(
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
    println!(
        "GPU time by product and attention pass: {:.1} ms/step ({:.1}% of the step), the 30 longest",
        per(labelled),
        share(labelled)
    );
    println!(
        "{:<50} {:>9} {:>10} {:>9} {:>7}",
        "work (m x n x k, ta/tb, batch; type; kernel)", "ms/step", "calls/step", "GFLOP/s", "share"
    );
    for (name, t) in work.iter().take(30) {
        println!(
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
    let (ds, _) = crate::train::run::datasets(data)?;
    let lc = cfg.loader_config();
    let b = cfg.batch_size as f64;
    let a = &cfg.augment;
    println!(
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
    println!(
        "1 thread: {:.1} ms per batch, {:.1} µs per image, {:.0} img/s",
        t1 * 1e3,
        t1 * 1e6 / b,
        b / t1
    );
    rows.push(Row {
        name: "loader 1 thread".into(),
        seconds: t1,
        rate: b / t1,
        unit: "img/s".into(),
        peak_bytes: None,
        clock: "wall".into(),
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
        println!(
            "{} worker threads: {:.1} ms per batch, {:.0} img/s",
            cfg.workers,
            t * 1e3,
            b / t
        );
        rows.push(Row {
            name: format!("loader {} worker threads", cfg.workers),
            seconds: t,
            rate: b / t,
            unit: "img/s".into(),
            peak_bytes: None,
            clock: "wall".into(),
        });
    }
    Ok(rows)
}
