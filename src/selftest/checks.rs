//! Every kernel against its CPU twin at awkward sizes (1, 7, 65, 197, 257, 261), extreme values
//! and grids past 65,535 workgroups.

use super::attention_checks::{attention, attention_fused};
use super::{CaseResult, Judge};
use crate::cpu;
use crate::gpu::{Gpu, Recorder, Tensor};
use crate::kernels;
use crate::kernels::matmul::{Epilogue, MatmulDims};

/// A named check of one kernel pair against its CPU twin.
pub struct KernelCheck {
    /// Row name.
    pub name: &'static str,
    /// Runs the check on a device.
    pub run: fn(&Gpu) -> CaseResult,
}

/// Every kernel check, in table order (the f16 variants last).
pub fn kernel_checks() -> Vec<KernelCheck> {
    let mut all = vec![
        KernelCheck {
            name: "kernel.matmul",
            run: matmul,
        },
        KernelCheck {
            name: "kernel.matmul_epilogue",
            run: matmul_epilogue,
        },
        KernelCheck {
            name: "kernel.linear",
            run: linear,
        },
        KernelCheck {
            name: "kernel.layernorm",
            run: layernorm,
        },
        KernelCheck {
            name: "kernel.layernorm_extreme",
            run: layernorm_extreme,
        },
        KernelCheck {
            name: "kernel.gelu",
            run: gelu,
        },
        KernelCheck {
            name: "kernel.softmax",
            run: softmax,
        },
        KernelCheck {
            name: "kernel.attention",
            run: attention,
        },
        KernelCheck {
            name: "kernel.attention_fused_qkv",
            run: attention_fused,
        },
        KernelCheck {
            name: "kernel.patch_embed",
            run: super::embed_checks::patch_embed,
        },
        KernelCheck {
            name: "kernel.interp",
            run: super::embed_checks::interp,
        },
        KernelCheck {
            name: "kernel.cross_entropy",
            run: super::train_checks::cross_entropy,
        },
        KernelCheck {
            name: "kernel.elementwise",
            run: super::train_checks::elementwise,
        },
        KernelCheck {
            name: "kernel.lookup_bytes",
            run: super::train_checks::lookup_bytes,
        },
        KernelCheck {
            name: "kernel.reduce",
            run: super::train_checks::reduce,
        },
        KernelCheck {
            name: "kernel.adamw",
            run: super::train_checks::adamw,
        },
        KernelCheck {
            name: "kernel.ema",
            run: super::train_checks::ema,
        },
        KernelCheck {
            name: "kernel.tokens",
            run: super::embed_checks::tokens,
        },
        KernelCheck {
            name: "kernel.rope",
            run: super::embed_checks::rope,
        },
        KernelCheck {
            name: "kernel.losses",
            run: super::train_checks::losses,
        },
        KernelCheck {
            name: "kernel.normalize",
            run: super::train_checks::normalize,
        },
        KernelCheck {
            name: "kernel.gram",
            run: super::train_checks::gram,
        },
        KernelCheck {
            name: "kernel.large_grids",
            run: super::train_checks::large_grids,
        },
    ];
    all.extend(super::half::checks());
    all.extend(super::mixed::checks());
    all
}

/// Deterministic uniform values in [lo, hi) (xorshift; no dependency, same on every platform).
pub fn random(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            lo + (hi - lo) * ((s >> 40) as f32 / (1u64 << 24) as f32)
        })
        .collect()
}

pub(super) fn tol(want: &[f32], rel: f32) -> f32 {
    rel * want.iter().fold(1.0f32, |m, v| m.max(v.abs()))
}

/// The kernel layouts a check runs in: the GPUs' and the CPU drivers' ([`Recorder::cpu_layouts`]),
/// so that both are checked on whichever adapter runs the checks.
pub(super) const LAYOUTS: [(bool, &str); 2] = [(false, "gpu-layout"), (true, "cpu-layout")];

/// Records with `f`, submits, reads back every returned tensor.
pub(super) fn run(
    gpu: &Gpu,
    judge: &mut Judge,
    f: impl FnOnce(&mut Recorder) -> Vec<Tensor>,
) -> Option<Vec<Vec<f32>>> {
    let mut rec = Recorder::new(gpu);
    let outs = f(&mut rec);
    if let Err(e) = rec.finish() {
        judge.fail(e.to_string());
        return None;
    }
    let mut v = Vec::new();
    for t in &outs {
        match read(gpu, t) {
            Ok(d) => v.push(d),
            Err(e) => {
                judge.fail(e.to_string());
                return None;
            }
        }
    }
    Some(v)
}

#[cfg(not(target_arch = "wasm32"))]
fn read(gpu: &Gpu, t: &Tensor) -> crate::gpu::Result<Vec<f32>> {
    gpu.read(t)
}

#[cfg(target_arch = "wasm32")]
fn read(_gpu: &Gpu, _t: &Tensor) -> crate::gpu::Result<Vec<f32>> {
    Err(crate::gpu::GpuError::Readback(
        "blocking readback is not available in the browser".into(),
    ))
}

pub(super) const SIZES: [usize; 6] = [1, 7, 65, 197, 257, 261];

fn matmul(gpu: &Gpu) -> CaseResult {
    let mut j = Judge::new("kernel.matmul");
    let shapes = [
        (1, 1, 1),
        (7, 65, 197),
        (65, 7, 261),
        (197, 257, 7),
        (261, 1, 65),
        (1, 261, 257),
        // These two also run the general kernel's 128×128 tile (M, N ≥ 256; `bench kernels
        // --general` times it), with partial edge tiles.
        (261, 257, 33),
        (300, 513, 17),
        // Contiguous dimensions that are multiples of 4 take the vec4 kernels: 64×64 tiles with
        // edges, 128×128 tiles with edges, and (K ≥ 1024, few tiles) split K on both.
        (4, 8, 12),
        (68, 132, 36),
        (260, 264, 52),
        (132, 68, 2052),
        (264, 260, 1028),
    ];
    for (i, &(m, n, k)) in shapes.iter().enumerate() {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            // The split-K shapes run as single products (split K needs batch 1).
            let batch = if i % 2 == 0 || k >= 1024 { 1 } else { 3 };
            let mut d = MatmulDims::new(m, n, k).batched(batch);
            d.trans_a = ta;
            d.trans_b = tb;
            d.broadcast_b = i == 3;
            let a = random(batch * m * k, 1 + i as u64, -1.0, 1.0);
            let b = random(
                if d.broadcast_b { k * n } else { batch * k * n },
                100 + i as u64,
                -1.0,
                1.0,
            );
            let want = cpu::matmul::matmul(&a, &b, d);
            // Every plan the runtime or the tuner may pick for this product: the general
            // kernel, the vec4 tiles, and each split of K; and the general kernel's large tile.
            let mut plans = kernels::matmul::Plan::candidates(&d);
            let large = kernels::matmul::Plan::General(kernels::matmul::Tile::for_problem(m, n));
            let extra = !plans.contains(&large);
            if extra {
                plans.push(large);
            }
            for plan in plans {
                if let Some(out) = run(gpu, &mut j, |rec| {
                    let (ta_, tb_) = (gpu.upload(&a, &[a.len()]), gpu.upload(&b, &[b.len()]));
                    let c = gpu.empty(&[want.len()]);
                    kernels::matmul::matmul_planned(
                        rec,
                        &c,
                        &ta_,
                        &tb_,
                        d,
                        1.0,
                        false,
                        Epilogue::None,
                        plan,
                    );
                    vec![c]
                }) {
                    let label = match extra && plan == large {
                        true => format!("{} large tile", plan.name()),
                        false => plan.name(),
                    };
                    j.check(
                        &format!("{m}x{n}x{k} ta={ta} tb={tb} batch={batch} {label}"),
                        &out[0],
                        &want,
                        tol(&want, 2e-6),
                    );
                }
            }
        }
        // Backward of the plain product.
        let batch = 2;
        let d = MatmulDims::new(m, n, k).batched(batch);
        let a = random(batch * m * k, 7 + i as u64, -1.0, 1.0);
        let b = random(batch * k * n, 8 + i as u64, -1.0, 1.0);
        let dc = random(batch * m * n, 9 + i as u64, -1.0, 1.0);
        let (wa, wb) = cpu::matmul::matmul_backward(&dc, &a, &b, batch, m, n, k);
        if let Some(out) = run(gpu, &mut j, |rec| {
            let (ta_, tb_, tdc) = (
                gpu.upload(&a, &[a.len()]),
                gpu.upload(&b, &[b.len()]),
                gpu.upload(&dc, &[dc.len()]),
            );
            let (ga, gb) = (gpu.empty(&[a.len()]), gpu.empty(&[b.len()]));
            kernels::matmul::matmul_backward(rec, Some(&ga), Some(&gb), &tdc, &ta_, &tb_, d, false);
            vec![ga, gb]
        }) {
            j.check(&format!("{m}x{n}x{k} grad_a"), &out[0], &wa, tol(&wa, 2e-6));
            j.check(&format!("{m}x{n}x{k} grad_b"), &out[1], &wb, tol(&wb, 2e-6));
        }
    }
    j.finish()
}

fn matmul_epilogue(gpu: &Gpu) -> CaseResult {
    let mut j = Judge::new("kernel.matmul_epilogue");
    // The general kernel, the vec4 kernel, and the vec4 kernel with split K.
    for (m, n, k) in [(65, 197, 7), (64, 196, 8), (64, 68, 2048)] {
        matmul_epilogue_case(gpu, &mut j, m, n, k);
    }
    j.finish()
}

fn matmul_epilogue_case(gpu: &Gpu, j: &mut Judge, m: usize, n: usize, k: usize) {
    let a = random(m * k, 11 + k as u64, -2.0, 2.0);
    let b = random(k * n, 12, -2.0, 2.0);
    let bias = random(n, 13, -1.0, 1.0);
    let c0 = random(m * n, 14, -1.0, 1.0);
    let prod = cpu::matmul::matmul(&a, &b, MatmulDims::new(m, n, k));
    let pre: Vec<f32> = (0..m * n)
        .map(|i| 0.5 * prod[i] + c0[i] + bias[i % n])
        .collect();
    let want = cpu::gelu::gelu_forward(&pre);
    if let Some(out) = run(gpu, j, |rec| {
        let (ta, tb, tbias) = (
            gpu.upload(&a, &[m, k]),
            gpu.upload(&b, &[k, n]),
            gpu.upload(&bias, &[n]),
        );
        let c = gpu.upload(&c0, &[m, n]);
        let p = gpu.empty(&[m, n]);
        let d = MatmulDims::new(m, n, k);
        kernels::matmul::matmul(
            rec,
            &c,
            &ta,
            &tb,
            d,
            0.5,
            true,
            Epilogue::BiasGelu(&tbias, &p),
        );
        // The same GELU without keeping the pre-activation.
        let c2 = gpu.upload(&c0, &[m, n]);
        let e = Epilogue::BiasGeluOnly(&tbias);
        kernels::matmul::matmul(rec, &c2, &ta, &tb, d, 0.5, true, e);
        vec![c, p, c2]
    }) {
        let tag = format!("{m}x{n}x{k}");
        j.check(
            &format!("{tag} gelu(0.5·A·B + C + bias)"),
            &out[0],
            &want,
            tol(&want, 2e-6),
        );
        j.check(
            &format!("{tag} pre-activation"),
            &out[1],
            &pre,
            tol(&pre, 2e-6),
        );
        j.check(
            &format!("{tag} gelu, pre-activation not kept"),
            &out[2],
            &out[0],
            0.0,
        );
    }
}

fn linear(gpu: &Gpu) -> CaseResult {
    let mut j = Judge::new("kernel.linear");
    for &(rows, in_f, out_f) in &[(1, 7, 1), (197, 65, 261), (261, 257, 7)] {
        let x = random(rows * in_f, 21, -1.0, 1.0);
        let w = random(out_f * in_f, 22, -0.5, 0.5);
        let b = random(out_f, 23, -0.5, 0.5);
        let dy = random(rows * out_f, 24, -1.0, 1.0);
        let y = cpu::matmul::linear_forward(&x, &w, Some(&b), out_f);
        let (dx, dw, db) = cpu::matmul::linear_backward(&dy, &x, &w, out_f);
        if let Some(out) = run(gpu, &mut j, |rec| {
            let (tx, tw, tb, tdy) = (
                gpu.upload(&x, &[rows, in_f]),
                gpu.upload(&w, &[out_f, in_f]),
                gpu.upload(&b, &[out_f]),
                gpu.upload(&dy, &[rows, out_f]),
            );
            let ty = gpu.empty(&[rows, out_f]);
            kernels::linear::linear_forward(rec, &ty, &tx, &tw, Some(&tb), None);
            let (gx, gw, gb) = (
                gpu.empty(&[rows, in_f]),
                gpu.empty(&[out_f, in_f]),
                gpu.empty(&[out_f]),
            );
            kernels::linear::linear_backward(
                rec,
                Some(&gx),
                &gw,
                Some(&gb),
                &tdy,
                &tx,
                &tw,
                false,
                false,
            );
            vec![ty, gx, gw, gb]
        }) {
            let tag = format!("{rows}x{in_f}->{out_f}");
            j.check(&format!("{tag} y"), &out[0], &y, tol(&y, 2e-6));
            j.check(&format!("{tag} dx"), &out[1], &dx, tol(&dx, 2e-6));
            j.check(&format!("{tag} dw"), &out[2], &dw, tol(&dw, 2e-6));
            j.check(&format!("{tag} db"), &out[3], &db, tol(&db, 2e-6));
        }
    }
    j.finish()
}

fn ln_case(gpu: &Gpu, j: &mut Judge, tag: &str, x: &[f32], dim: usize, eps: f32, rel: f32) {
    let rows = x.len() / dim;
    let w = random(dim, 31, 0.5, 1.5);
    let b = random(dim, 32, -0.5, 0.5);
    let dy = random(x.len(), 33, -1.0, 1.0);
    let (y, _, _) = cpu::layernorm::layernorm_forward(x, &w, &b, eps);
    let (dx, dw, db) = cpu::layernorm::layernorm_backward(&dy, x, &w, eps);
    let mut by_layout = Vec::new();
    for layout in layouts_and_reductions(gpu) {
        let kind = layout.name;
        if let Some(out) = run(gpu, j, |rec| {
            layout.apply(rec);
            let (tx, tw, tb, tdy) = (
                gpu.upload(x, &[rows, dim]),
                gpu.upload(&w, &[dim]),
                gpu.upload(&b, &[dim]),
                gpu.upload(&dy, &[rows, dim]),
            );
            let ty = gpu.empty(&[rows, dim]);
            let saved = kernels::layernorm::layernorm_forward(rec, &ty, &tx, &tw, &tb, eps);
            let (gx, gw, gb) = (
                gpu.empty(&[rows, dim]),
                gpu.empty(&[dim]),
                gpu.empty(&[dim]),
            );
            kernels::layernorm::layernorm_backward(
                rec, &gx, &gw, &gb, &tdy, &tx, &tw, &saved, false, false,
            );
            vec![ty, gx, gw, gb]
        }) {
            j.check(&format!("{tag} {kind} y"), &out[0], &y, tol(&y, rel));
            j.check(&format!("{tag} {kind} dx"), &out[1], &dx, tol(&dx, rel));
            j.check(&format!("{tag} {kind} dw"), &out[2], &dw, tol(&dw, rel));
            j.check(&format!("{tag} {kind} db"), &out[3], &db, tol(&db, rel));
            by_layout.push((layout, out));
        }
    }
    same_reductions(j, tag, &by_layout);
}

/// One way the row kernels (layer norm, softmax) can be recorded.
#[derive(Clone, Copy)]
struct RowLayout {
    /// The CPU drivers' layout ([`Recorder::set_cpu_layouts`]).
    cpu: bool,
    /// Subgroup reductions ([`Recorder::set_subgroups`]).
    subgroups: bool,
    /// Up to 16 columns a lane ([`Recorder::set_wide_rows`]).
    wide: bool,
    name: &'static str,
}

impl RowLayout {
    fn apply(&self, rec: &mut Recorder) {
        rec.set_cpu_layouts(self.cpu);
        rec.set_subgroups(self.subgroups);
        rec.set_wide_rows(self.wide);
    }
}

/// The kernel layouts of [`LAYOUTS`], the GPUs' also with four columns a lane, and run a
/// second time with the row kernels' subgroup reductions where the device has them.
fn layouts_and_reductions(gpu: &Gpu) -> Vec<RowLayout> {
    let mut v: Vec<_> = LAYOUTS
        .iter()
        .map(|&(cpu, name)| RowLayout {
            cpu,
            subgroups: false,
            wide: true,
            name,
        })
        .collect();
    v.push(RowLayout {
        cpu: false,
        subgroups: false,
        wide: false,
        name: "gpu-layout 4 a lane",
    });
    if gpu.subgroups() {
        v.push(RowLayout {
            cpu: false,
            subgroups: true,
            wide: true,
            name: "gpu-layout subgroups",
        });
    }
    v
}

/// Fails unless the GPU layout gave the same bits with and without subgroup reductions
/// (`runs`: each layout of [`layouts_and_reductions`] with its outputs).
fn same_reductions(j: &mut Judge, tag: &str, runs: &[(RowLayout, Vec<Vec<f32>>)]) {
    let gpu_runs: Vec<_> = runs.iter().filter(|(l, _)| !l.cpu && l.wide).collect();
    let [(_, plain), (_, sg)] = gpu_runs.as_slice() else {
        return;
    };
    for (i, (a, b)) in plain.iter().zip(sg).enumerate() {
        let differ = a
            .iter()
            .zip(b)
            .filter(|(x, y)| x.to_bits() != y.to_bits())
            .count();
        if differ > 0 || a.len() != b.len() {
            j.fail(format!(
                "{tag} output {i}: {differ} of {} values differ between the workgroup and the \
                 subgroup reductions",
                a.len()
            ));
        }
    }
}

fn layernorm(gpu: &Gpu) -> CaseResult {
    let mut j = Judge::new("kernel.layernorm");
    for &rows in &[1, 7, 261] {
        // 500: all four register chunks of a lane in use at 32 lanes a row.
        for &dim in &[7, 65, 257, 500] {
            let x = random(rows * dim, (rows * 1000 + dim) as u64, -2.0, 2.0);
            ln_case(gpu, &mut j, &format!("{rows}x{dim}"), &x, dim, 1e-6, 1e-5);
        }
    }
    // More rows than one pass of the column reduction handles.
    let x = random(1100 * 65, 34, -2.0, 2.0);
    ln_case(gpu, &mut j, "1100x65", &x, 65, 1e-5, 1e-5);
    // 2,100: 256 lanes a row, in registers; 4,500: longer rows than the kernels keep in
    // registers (4,096) take their re-reading path.
    for dim in [2100, 4500] {
        let x = random(3 * dim, 37, -2.0, 2.0);
        ln_case(gpu, &mut j, &format!("3x{dim}"), &x, dim, 1e-6, 1e-5);
    }
    j.finish()
}

fn layernorm_extreme(gpu: &Gpu) -> CaseResult {
    let mut j = Judge::new("kernel.layernorm_extreme");
    let dim = 197;
    let offset: Vec<f32> = random(5 * dim, 35, -1.0, 1.0)
        .iter()
        .map(|v| v + 100.0)
        .collect();
    // Centered at 100, an E[x²] − E[x]² variance loses ~3 digits; the two-pass one does not.
    ln_case(gpu, &mut j, "offset+100", &offset, dim, 1e-6, 2e-4);
    let tiny: Vec<f32> = random(5 * dim, 36, -1e-3, 1e-3);
    ln_case(gpu, &mut j, "variance~eps", &tiny, dim, 1e-6, 2e-5);
    j.finish()
}

fn gelu(gpu: &Gpu) -> CaseResult {
    let mut j = Judge::new("kernel.gelu");
    let mut x: Vec<f32> = (0..257).map(|i| -20.0 + 40.0 * i as f32 / 256.0).collect();
    x.extend(random(65 * 261, 41, -6.0, 6.0));
    // Lengths that are multiples of 4 take the vec4 kernels.
    for &n in &[1usize, 256, 257, 17220, x.len()] {
        let xs = &x[..n];
        let dy = random(n, 42, -1.0, 1.0);
        let y = cpu::gelu::gelu_forward(xs);
        let dx = cpu::gelu::gelu_backward(&dy, xs);
        if let Some(out) = run(gpu, &mut j, |rec| {
            let (tx, tdy) = (gpu.upload(xs, &[n]), gpu.upload(&dy, &[n]));
            let (ty, tdx) = (gpu.empty(&[n]), gpu.empty(&[n]));
            kernels::gelu::gelu_forward(rec, &ty, &tx);
            kernels::gelu::gelu_backward(rec, &tdx, &tdy, &tx, false);
            vec![ty, tdx]
        }) {
            j.check(&format!("n={n} y"), &out[0], &y, tol(&y, 1e-6));
            j.check(&format!("n={n} dx"), &out[1], &dx, tol(&dx, 1e-6));
        }
    }
    // SwiGLU (ViT-g's feed-forward) on rows of 2·65.
    let (rows, h) = (7, 65);
    let x = random(rows * 2 * h, 44, -6.0, 6.0);
    let dy = random(rows * h, 45, -1.0, 1.0);
    let y = cpu::gelu::swiglu_forward(&x, h);
    let dx = cpu::gelu::swiglu_backward(&dy, &x, h);
    if let Some(out) = run(gpu, &mut j, |rec| {
        let (tx, tdy) = (gpu.upload(&x, &[rows, 2 * h]), gpu.upload(&dy, &[rows, h]));
        let (ty, tdx) = (gpu.empty(&[rows, h]), gpu.empty(&[rows, 2 * h]));
        kernels::gelu::swiglu_forward(rec, &ty, &tx, h);
        kernels::gelu::swiglu_backward(rec, &tdx, &tdy, &tx, h, false);
        vec![ty, tdx]
    }) {
        j.check("swiglu y", &out[0], &y, tol(&y, 1e-6));
        j.check("swiglu dx", &out[1], &dx, tol(&dx, 1e-6));
    }
    j.finish()
}

fn softmax(gpu: &Gpu) -> CaseResult {
    let mut j = Judge::new("kernel.softmax");
    // 500: all four register chunks of a lane at 32 lanes a row; 2,100: 256 lanes a row;
    // 4,500 columns: longer rows than the kernels keep in registers (4,096).
    for &cols in SIZES.iter().chain(&[500, 2100, 4500]) {
        let rows = 7;
        let mut x = random(rows * cols, cols as u64, -5.0, 5.0);
        // Row 1: +100 everywhere (needs the max subtraction); row 2: one dominant logit.
        for v in &mut x[cols..2 * cols] {
            *v += 100.0;
        }
        x[2 * cols] = 80.0;
        let dy = random(rows * cols, 43, -1.0, 1.0);
        // A row's sum of exponentials rounds once per column in the CPU layouts' one lane.
        let y_tol = 1e-6 * (cols as f32 / 2048.0).max(1.0);
        for scale in [1.0f32, 0.125] {
            let y = cpu::softmax::softmax_forward(&x, cols, scale);
            let dx = cpu::softmax::softmax_backward(&dy, &y, cols, scale);
            let mut by_layout = Vec::new();
            for layout in layouts_and_reductions(gpu) {
                let kind = layout.name;
                if let Some(out) = run(gpu, &mut j, |rec| {
                    layout.apply(rec);
                    let (tx, tdy) = (
                        gpu.upload(&x, &[rows, cols]),
                        gpu.upload(&dy, &[rows, cols]),
                    );
                    let (ty, tdx) = (gpu.empty(&[rows, cols]), gpu.empty(&[rows, cols]));
                    kernels::softmax::softmax_forward(rec, &ty, &tx, cols, scale);
                    kernels::softmax::softmax_backward(rec, &tdx, &tdy, &ty, cols, scale, false);
                    vec![ty, tdx]
                }) {
                    j.check(
                        &format!("cols={cols} scale={scale} {kind} y"),
                        &out[0],
                        &y,
                        y_tol,
                    );
                    j.check(
                        &format!("cols={cols} scale={scale} {kind} dx"),
                        &out[1],
                        &dx,
                        tol(&dx, 1e-5),
                    );
                    by_layout.push((layout, out));
                }
            }
            same_reductions(&mut j, &format!("cols={cols} scale={scale}"), &by_layout);
        }
    }
    j.finish()
}
