//! `dinoscope bench kernels`: matmul, the memory-bound kernels and attention, each row beside
//! the variants a GPU weighs against it.

use super::{emit, time, Row};
use crate::gpu::{Gpu, Recorder, Result};
use crate::kernels;
use crate::kernels::attention::{AttnDims, OutLayout, QkvLayout};
use crate::kernels::matmul::{Epilogue, MatmulDims, Plan, V4Tile};
use crate::selftest::checks_random as random;

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

/// ViT-S/14's qkv, fc1 and fc2 products at batch 1 (257 rows, weights transposed), f16 operands:
/// the plan an untuned f16 product takes ("default"), the vec4 kernel and the cooperative tiles,
/// so one run shows which suits the few-tile products of batch-1 inference.
fn f16_batch1_linears(gpu: &Gpu, reps: usize, figures: &mut Vec<Row>) -> Result<()> {
    use crate::gpu::DType;
    for (n, k) in [(3 * 384, 384), (1536, 384), (384, 1536)] {
        let d = MatmulDims::new(257, n, k).tb();
        let (a_len, b_len) = d.operand_lens();
        let a = gpu.upload_as(&random(a_len, 1, -1.0, 1.0), &[a_len], DType::F16);
        let b = gpu.upload_as(&random(b_len, 2, -0.1, 0.1), &[b_len], DType::F16);
        let c = gpu.empty_as(&[d.m, d.n], DType::F16);
        let default = Plan::untuned(gpu, &d, DType::F16);
        let mut plans = vec![default, Plan::for_device(&d, gpu.cpu_driver())];
        plans.extend(Plan::coop_plans(gpu));
        plans.dedup();
        for (i, plan) in plans.into_iter().enumerate() {
            if i > 0 && plan == default {
                continue;
            }
            let (t, ts) = time(gpu, reps, |rec| {
                let e = Epilogue::None;
                kernels::matmul::matmul_planned(rec, &c, &a, &b, d, 1.0, false, e, plan)
            })?;
            let flop = 2.0 * (d.m * d.n * d.k) as f64;
            let tag = if i == 0 { ", default" } else { "" };
            let name = format!(
                "matmul f16 {}x{}x{} tb ({}{tag})",
                d.m,
                d.n,
                d.k,
                plan.name()
            );
            emit(figures, name, t, flop / t / 1e9, "GFLOP/s", ts);
        }
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
    crate::say!(
        "adapter: {} ({:?}), {} repetitions, median",
        gpu.info.name,
        gpu.info.backend,
        reps
    );
    crate::say!("{:<44} {:>12} {:>18}  clock", "kernel", "time", "rate");
    let mut sizes = vec![(1024, 1024, 1024), (2048, 2048, 2048)];
    if !opts.quick {
        sizes.push((4096, 4096, 4096));
        sizes.push((8192, 8192, 8192));
    }
    square_matmuls(gpu, reps, &sizes, opts, &mut figures)?;
    if gpu.features.contains(wgpu::Features::SHADER_F16) {
        f16_matmuls(gpu, reps, &sizes, &mut figures)?;
        f16_weight_gradient(gpu, reps, opts.quick, &mut figures)?;
        f16_batch1_linears(gpu, reps, &mut figures)?;
    }
    vits_linears(gpu, reps, &mut figures)?;
    memory_bound(gpu, reps, opts.quick, &mut figures)?;
    attention(gpu, reps, opts.quick, &mut figures)?;
    let stats = gpu.pool_stats();
    crate::say!(
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

/// A pass's rows: the variant forced (`None`: the call's own choice) and the label's suffix.
type Variants = Vec<(Option<&'static str>, &'static str)>;

/// On GPUs, beside each pass's default, the variants the tuner weighs against it: the same
/// kernels with their head loops as written, the splits of a token over one, two or four
/// invocations the default does not take, and two invocations sharing two queries.
fn attention_variants(gpu: &Gpu) -> (Variants, Variants) {
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
    // On every adapter whose workgroup memory holds its tiles, CPU drivers included.
    if gpu.limits.max_compute_workgroup_storage_size as usize
        >= kernels::attention::TILED_WORKGROUP_BYTES
    {
        forwards.push((
            Some("tiled"),
            " (4×4 register blocks, 32 queries a workgroup)",
        ));
        backwards.push((
            Some("tiled"),
            " (4×4 register blocks, 32 tokens a workgroup)",
        ));
    }
    (forwards, backwards)
}

/// Flash attention forward and backward at the ViT-S/14 shapes, f32, then f16 where the
/// adapter has cooperative matrices.
fn attention(gpu: &Gpu, reps: usize, quick: bool, figures: &mut Vec<Row>) -> Result<()> {
    use kernels::attention_plan::{BACKWARD, FORWARD};
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
    let (forwards, backwards) = attention_variants(gpu);
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
    if gpu.coop_attention() {
        attention_f16(gpu, reps, dims, figures)?;
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

/// f16 operands (inference, the mixed-precision step): the f32 layouts' kernels on f16
/// storage ("plain", and the crossed forward) beside the ones on cooperative matrices.
fn attention_f16(gpu: &Gpu, reps: usize, dims: AttnDims, figures: &mut Vec<Row>) -> Result<()> {
    use crate::gpu::DType;
    use kernels::attention_plan::{BACKWARD, FORWARD};
    let (batch, h, n, d) = (dims.batch, dims.heads, dims.n_q, dims.head_dim);
    let len = batch * n * 3 * h * d;
    let flops = 4.0 * (batch * h * n * n * d) as f64;
    let layout = QkvLayout::fused(h, n, d);
    let ol = OutLayout::bnhd(h, n, d);
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
    // The crossed and tiled forwards are first-run candidates for f16 calls too.
    for (forced, label) in [
        (plain, "plain"),
        ("crossed", "crossed"),
        ("tiled", "tiled"),
        ("coop", "coop"),
    ] {
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
        for (forced, label) in [(plain_bwd, "plain"), ("tiled", "tiled"), ("coop", "coop")] {
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
    Ok(())
}
