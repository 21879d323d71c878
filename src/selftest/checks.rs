//! Every kernel against its CPU twin at awkward sizes (1, 7, 65, 197, 257, 261), extreme values
//! and grids past 65,535 workgroups.

use super::{CaseResult, Judge};
use crate::cpu;
use crate::cpu::interp::InterpMode;
use crate::gpu::{Gpu, Recorder, Tensor};
use crate::kernels;
use crate::kernels::adamw::{AdamWStep, Segment, Segments};
use crate::kernels::attention::{AttnDims, OutLayout, QkvLayout};
use crate::kernels::cross_entropy::CrossEntropy;
use crate::kernels::interp::{GridLayout, InterpDims, InterpWeights};
use crate::kernels::matmul::{Epilogue, MatmulDims};
use crate::kernels::patch_embed::PatchDims;
use crate::kernels::reduce::Reduce;

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
            run: patch_embed,
        },
        KernelCheck {
            name: "kernel.interp",
            run: interp,
        },
        KernelCheck {
            name: "kernel.cross_entropy",
            run: cross_entropy,
        },
        KernelCheck {
            name: "kernel.elementwise",
            run: elementwise,
        },
        KernelCheck {
            name: "kernel.reduce",
            run: reduce,
        },
        KernelCheck {
            name: "kernel.adamw",
            run: adamw,
        },
        KernelCheck {
            name: "kernel.ema",
            run: ema,
        },
        KernelCheck {
            name: "kernel.tokens",
            run: tokens,
        },
        KernelCheck {
            name: "kernel.rope",
            run: rope,
        },
        KernelCheck {
            name: "kernel.losses",
            run: losses,
        },
        KernelCheck {
            name: "kernel.gram",
            run: gram,
        },
        KernelCheck {
            name: "kernel.large_grids",
            run: large_grids,
        },
    ];
    all.extend(super::half::checks());
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

const SIZES: [usize; 6] = [1, 7, 65, 197, 257, 261];

fn matmul(gpu: &Gpu) -> CaseResult {
    let mut j = Judge::new("kernel.matmul");
    let shapes = [
        (1, 1, 1),
        (7, 65, 197),
        (65, 7, 261),
        (197, 257, 7),
        (261, 1, 65),
        (1, 261, 257),
        // These two take the 128×128 tile (M, N ≥ 256), with partial edge tiles.
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
            // kernel, both vec4 tiles, and each split of K.
            for plan in kernels::matmul::Plan::candidates(&d) {
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
                    j.check(
                        &format!("{m}x{n}x{k} ta={ta} tb={tb} batch={batch} {}", plan.name()),
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
        kernels::matmul::matmul(
            rec,
            &c,
            &ta,
            &tb,
            MatmulDims::new(m, n, k),
            0.5,
            true,
            Epilogue::BiasGelu(&tbias, &p),
        );
        vec![c, p]
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
    if let Some(out) = run(gpu, j, |rec| {
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
        j.check(&format!("{tag} y"), &out[0], &y, tol(&y, rel));
        j.check(&format!("{tag} dx"), &out[1], &dx, tol(&dx, rel));
        j.check(&format!("{tag} dw"), &out[2], &dw, tol(&dw, rel));
        j.check(&format!("{tag} db"), &out[3], &db, tol(&db, rel));
    }
}

fn layernorm(gpu: &Gpu) -> CaseResult {
    let mut j = Judge::new("kernel.layernorm");
    for &rows in &[1, 7, 261] {
        for &dim in &[7, 65, 257] {
            let x = random(rows * dim, (rows * 1000 + dim) as u64, -2.0, 2.0);
            ln_case(gpu, &mut j, &format!("{rows}x{dim}"), &x, dim, 1e-6, 1e-5);
        }
    }
    // More rows than one pass of the column reduction handles.
    let x = random(1100 * 65, 34, -2.0, 2.0);
    ln_case(gpu, &mut j, "1100x65", &x, 65, 1e-5, 1e-5);
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
    for &n in &[1usize, 257, x.len()] {
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
    for &cols in &SIZES {
        let rows = 7;
        let mut x = random(rows * cols, cols as u64, -5.0, 5.0);
        // Row 1: +100 everywhere (needs the max subtraction); row 2: one dominant logit.
        for v in &mut x[cols..2 * cols] {
            *v += 100.0;
        }
        x[2 * cols] = 80.0;
        let dy = random(rows * cols, 43, -1.0, 1.0);
        for &scale in &[1.0f32, 0.125] {
            let y = cpu::softmax::softmax_forward(&x, cols, scale);
            let dx = cpu::softmax::softmax_backward(&dy, &y, cols, scale);
            if let Some(out) = run(gpu, &mut j, |rec| {
                let (tx, tdy) = (
                    gpu.upload(&x, &[rows, cols]),
                    gpu.upload(&dy, &[rows, cols]),
                );
                let (ty, tdx) = (gpu.empty(&[rows, cols]), gpu.empty(&[rows, cols]));
                kernels::softmax::softmax_forward(rec, &ty, &tx, cols, scale);
                kernels::softmax::softmax_backward(rec, &tdx, &tdy, &ty, cols, scale, false);
                vec![ty, tdx]
            }) {
                j.check(&format!("cols={cols} scale={scale} y"), &out[0], &y, 1e-6);
                j.check(
                    &format!("cols={cols} scale={scale} dx"),
                    &out[1],
                    &dx,
                    tol(&dx, 1e-5),
                );
            }
        }
    }
    j.finish()
}

fn attention(gpu: &Gpu) -> CaseResult {
    let mut j = Judge::new("kernel.attention");
    for &(b, h, n, d) in &[
        (1, 1, 1, 1),
        (2, 3, 7, 16),
        (1, 2, 65, 64),
        (1, 1, 197, 33),
        (1, 1, 261, 8),
    ] {
        let len = b * h * n * d;
        let q = random(len, 51 + n as u64, -2.0, 2.0);
        let k = random(len, 52 + n as u64, -2.0, 2.0);
        let v = random(len, 53 + n as u64, -1.0, 1.0);
        let dout = random(len, 54 + n as u64, -1.0, 1.0);
        let dims = AttnDims::new(b, h, n, d);
        let (o, p, l) = cpu::attention::attention_forward(&q, &k, &v, b * h, n, n, d, dims.scale);
        let (dq, dk, dv) =
            cpu::attention::attention_backward(&dout, &q, &k, &v, b * h, n, n, d, dims.scale);
        let s = [b, h, n, d];
        if let Some(out) = run(gpu, &mut j, |rec| {
            let (tq, tk, tv, tdo) = (
                gpu.upload(&q, &s),
                gpu.upload(&k, &s),
                gpu.upload(&v, &s),
                gpu.upload(&dout, &s),
            );
            let layout = QkvLayout::bhnd(h, n, d);
            let ol = OutLayout::bhnd(h, n, d);
            let to = gpu.empty(&s);
            let lse =
                kernels::attention::attention_forward(rec, &to, &tq, &tk, &tv, dims, layout, ol);
            let probs = gpu.empty(&[b, h, n, n]);
            kernels::attention::attention_probs(rec, &probs, &tq, &tk, &lse, dims, layout);
            let (gq, gk, gv) = (gpu.empty(&s), gpu.empty(&s), gpu.empty(&s));
            kernels::attention::attention_backward(
                rec, &gq, &gk, &gv, &tdo, &tq, &tk, &tv, &to, &lse, dims, layout, ol,
            );
            vec![to, probs, lse, gq, gk, gv]
        }) {
            let tag = format!("{b}x{h}x{n}x{d}");
            j.check(&format!("{tag} out"), &out[0], &o, tol(&o, 1e-5));
            j.check(&format!("{tag} probs"), &out[1], &p, 1e-5);
            j.check(&format!("{tag} lse"), &out[2], &l, tol(&l, 1e-5));
            j.check(&format!("{tag} dq"), &out[3], &dq, tol(&dq, 2e-5));
            j.check(&format!("{tag} dk"), &out[4], &dk, tol(&dk, 2e-5));
            j.check(&format!("{tag} dv"), &out[5], &dv, tol(&dv, 2e-5));
        }
    }
    j.finish()
}

/// [B, H, N, d] → [B, N, 3, H, d] slot `which`.
fn to_fused(x: &[f32], dst: &mut [f32], which: usize, b: usize, h: usize, n: usize, d: usize) {
    for bi in 0..b {
        for hi in 0..h {
            for t in 0..n {
                for c in 0..d {
                    dst[(((bi * n + t) * 3 + which) * h + hi) * d + c] =
                        x[((bi * h + hi) * n + t) * d + c];
                }
            }
        }
    }
}

fn attention_fused(gpu: &Gpu) -> CaseResult {
    let mut j = Judge::new("kernel.attention_fused_qkv");
    let (b, h, n, d) = (2, 3, 65, 16);
    let len = b * h * n * d;
    let (q, k, v, dout) = (
        random(len, 61, -2.0, 2.0),
        random(len, 62, -2.0, 2.0),
        random(len, 63, -1.0, 1.0),
        random(len, 64, -1.0, 1.0),
    );
    let dims = AttnDims::new(b, h, n, d);
    let (o, _, _) = cpu::attention::attention_forward(&q, &k, &v, b * h, n, n, d, dims.scale);
    let (dq, dk, dv) =
        cpu::attention::attention_backward(&dout, &q, &k, &v, b * h, n, n, d, dims.scale);
    let mut qkv = vec![0.0; 3 * len];
    for (i, t) in [&q, &k, &v].iter().enumerate() {
        to_fused(t, &mut qkv, i, b, h, n, d);
    }
    let mut want_dqkv = vec![0.0; 3 * len];
    for (i, t) in [&dq, &dk, &dv].iter().enumerate() {
        to_fused(t, &mut want_dqkv, i, b, h, n, d);
    }
    // O and dO in [B, N, H, d].
    let to_bnhd = |x: &[f32]| {
        let mut y = vec![0.0; len];
        for bi in 0..b {
            for hi in 0..h {
                for t in 0..n {
                    for c in 0..d {
                        y[((bi * n + t) * h + hi) * d + c] = x[((bi * h + hi) * n + t) * d + c];
                    }
                }
            }
        }
        y
    };
    let (want_o, dout_bnhd) = (to_bnhd(&o), to_bnhd(&dout));
    if let Some(out) = run(gpu, &mut j, |rec| {
        let tqkv = gpu.upload(&qkv, &[b, n, 3 * h * d]);
        let tdo = gpu.upload(&dout_bnhd, &[b, n, h * d]);
        let layout = QkvLayout::fused(h, n, d);
        let ol = OutLayout::bnhd(h, n, d);
        let to = gpu.empty(&[b, n, h * d]);
        let lse =
            kernels::attention::attention_forward(rec, &to, &tqkv, &tqkv, &tqkv, dims, layout, ol);
        let dqkv = gpu.empty(&[b, n, 3 * h * d]);
        kernels::attention::attention_backward(
            rec, &dqkv, &dqkv, &dqkv, &tdo, &tqkv, &tqkv, &tqkv, &to, &lse, dims, layout, ol,
        );
        vec![to, dqkv]
    }) {
        j.check("out [B,N,H,d]", &out[0], &want_o, tol(&want_o, 1e-5));
        j.check(
            "dqkv [B,N,3,H,d]",
            &out[1],
            &want_dqkv,
            tol(&want_dqkv, 2e-5),
        );
    }
    j.finish()
}

fn patch_embed(gpu: &Gpu) -> CaseResult {
    let mut j = Judge::new("kernel.patch_embed");
    for &(batch, c, hgt, wid, p, dim) in &[
        (1, 1, 14, 14, 14, 1),
        (2, 3, 30, 44, 14, 7),
        (1, 3, 32, 48, 16, 65),
    ] {
        let d = PatchDims {
            batch,
            channels: c,
            height: hgt,
            width: wid,
            patch: p,
        };
        let (gh, gw) = d.grid();
        let x = random(batch * c * hgt * wid, 71, -1.0, 1.0);
        let w = random(dim * c * p * p, 72, -0.1, 0.1);
        let bias = random(dim, 73, -0.5, 0.5);
        let dy = random(batch * gh * gw * dim, 74, -1.0, 1.0);
        let y = cpu::patch_embed::patch_embed_forward(&x, &w, &bias, d);
        let (dx, dw, db) = cpu::patch_embed::patch_embed_backward(&dy, &x, &w, dim, d);
        if let Some(out) = run(gpu, &mut j, |rec| {
            let (tx, tw, tb, tdy) = (
                gpu.upload(&x, &[batch, c, hgt, wid]),
                gpu.upload(&w, &[dim, c, p, p]),
                gpu.upload(&bias, &[dim]),
                gpu.upload(&dy, &[batch, gh * gw, dim]),
            );
            let ty = gpu.empty(&[batch, gh * gw, dim]);
            let cols = kernels::patch_embed::patch_embed_forward(rec, &ty, &tx, &tw, &tb, d);
            let (gx, gwt, gb) = (
                gpu.empty(&[x.len()]),
                gpu.empty(&[w.len()]),
                gpu.empty(&[dim]),
            );
            kernels::patch_embed::patch_embed_backward(
                rec,
                Some(&gx),
                &gwt,
                &gb,
                &tdy,
                &cols,
                &tw,
                d,
                false,
            );
            vec![ty, gx, gwt, gb]
        }) {
            let tag = format!("{batch}x{c}x{hgt}x{wid}/p{p}");
            j.check(&format!("{tag} y"), &out[0], &y, tol(&y, 2e-6));
            j.check(&format!("{tag} dx"), &out[1], &dx, tol(&dx, 2e-6));
            j.check(&format!("{tag} dw"), &out[2], &dw, tol(&dw, 2e-6));
            j.check(&format!("{tag} db"), &out[3], &db, tol(&db, 2e-6));
        }
    }
    j.finish()
}

/// [C, H, W] → [H·W, C].
fn channel_last(x: &[f32], c: usize, hw: usize) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    for ch in 0..c {
        for s in 0..hw {
            y[s * c + ch] = x[ch * hw + s];
        }
    }
    y
}

fn interp(gpu: &Gpu) -> CaseResult {
    let mut j = Judge::new("kernel.interp");
    let c = 7;
    for mode in [InterpMode::Bicubic, InterpMode::BicubicAntialias] {
        for &(hi, wi, ho, wo) in &[
            (4, 4, 1, 1),
            (4, 4, 7, 5),
            (16, 16, 37, 37),
            (37, 37, 16, 9),
            (1, 1, 3, 2),
        ] {
            let x = random(c * hi * wi, 81, -1.0, 1.0);
            let dy = random(c * ho * wo, 82, -1.0, 1.0);
            let y = cpu::interp::interp_forward(&x, c, hi, wi, ho, wo, mode);
            let dx = cpu::interp::interp_backward(&dy, c, hi, wi, ho, wo, mode);
            let (xl, dyl) = (channel_last(&x, c, hi * wi), channel_last(&dy, c, ho * wo));
            let (yl, dxl) = (channel_last(&y, c, ho * wo), channel_last(&dx, c, hi * wi));
            if let Some(out) = run(gpu, &mut j, |rec| {
                let dims = InterpDims {
                    channels: c,
                    h_in: hi,
                    w_in: wi,
                    h_out: ho,
                    w_out: wo,
                    mode,
                    layout: GridLayout::ChannelLast,
                };
                let w = InterpWeights::new(gpu, dims);
                let (tx, tdy) = (
                    gpu.upload(&xl, &[hi * wi, c]),
                    gpu.upload(&dyl, &[ho * wo, c]),
                );
                let (ty, tdx) = (gpu.empty(&[ho * wo, c]), gpu.empty(&[hi * wi, c]));
                kernels::interp::interp_forward(rec, &ty, &tx, &w);
                kernels::interp::interp_backward(rec, &tdx, &tdy, &w, false);
                vec![ty, tdx]
            }) {
                let tag = format!("{mode:?} {hi}x{wi}->{ho}x{wo}");
                j.check(&format!("{tag} y"), &out[0], &yl, tol(&yl, 2e-6));
                j.check(&format!("{tag} dx"), &out[1], &dxl, tol(&dxl, 2e-6));
            }
        }
    }
    j.finish()
}

fn cross_entropy(gpu: &Gpu) -> CaseResult {
    let mut j = Judge::new("kernel.cross_entropy");
    // Rows of up to 32 columns take the one-invocation-per-row kernels (300 rows: two groups).
    for &(rows, cols) in &[(7usize, 1usize), (300, 10), (300, 32), (7, 65), (7, 261)] {
        let mut s = random(rows * cols, 91, -3.0, 3.0);
        s[0] = 60.0; // large logit at temperature 0.1 → 600 before the max subtraction
        let raw = random(rows * cols, 92, 0.0, 1.0);
        let t = cpu::softmax::softmax_forward(&raw, cols, 5.0);
        let rw = random(rows, 93, 0.1, 1.0);
        let temp = 0.1;
        let scale = 1.0 / rows as f32;
        let per_row = cpu::cross_entropy::cross_entropy_forward(&s, &t, cols, temp);
        let up = 0.7f32;
        let grad =
            cpu::cross_entropy::cross_entropy_backward(up, &s, &t, cols, temp, scale, Some(&rw));
        if let Some(out) = run(gpu, &mut j, |rec| {
            let (ts, tt, trw, tup) = (
                gpu.upload(&s, &[rows, cols]),
                gpu.upload(&t, &[rows, cols]),
                gpu.upload(&rw, &[rows]),
                gpu.upload(&[up], &[1]),
            );
            let lr = gpu.empty(&[rows]);
            let opt = CrossEntropy {
                temperature: temp,
                scale,
                row_weight: Some(&trw),
            };
            kernels::cross_entropy::cross_entropy_forward(rec, &lr, None, &ts, &tt, cols, opt);
            let g = gpu.empty(&[rows, cols]);
            kernels::cross_entropy::cross_entropy_backward(
                rec, &g, &tup, &ts, &tt, cols, opt, false,
            );
            vec![lr, g]
        }) {
            j.check(
                &format!("cols={cols} loss"),
                &out[0],
                &per_row,
                tol(&per_row, 2e-6),
            );
            j.check(
                &format!("cols={cols} grad"),
                &out[1],
                &grad,
                tol(&grad, 2e-6),
            );
        }
    }
    j.finish()
}

fn elementwise(gpu: &Gpu) -> CaseResult {
    let mut j = Judge::new("kernel.elementwise");
    let (rows, cols) = (197, 65);
    let a = random(rows * cols, 101, -2.0, 2.0);
    let b = random(cols, 102, -2.0, 2.0);
    let dy = random(rows * cols, 103, -1.0, 1.0);
    let add = cpu::elementwise::add(&a, &b);
    let mul = cpu::elementwise::mul(&a, &b);
    let (da, db) = cpu::elementwise::mul_backward(&dy, &a, &b);
    let dbias = cpu::elementwise::sum_rows(&dy, rows, cols);
    let axpby: Vec<f32> = a.iter().zip(&dy).map(|(x, y)| 0.5 * x + 2.0 * y).collect();
    if let Some(out) = run(gpu, &mut j, |rec| {
        let (ta, tb, tdy) = (
            gpu.upload(&a, &[rows, cols]),
            gpu.upload(&b, &[cols]),
            gpu.upload(&dy, &[rows, cols]),
        );
        let (tadd, tmul) = (gpu.empty(&[rows, cols]), gpu.empty(&[rows, cols]));
        kernels::elementwise::add_forward(rec, &tadd, &ta, &tb, false);
        kernels::elementwise::mul_forward(rec, &tmul, &ta, &tb, false);
        let (gda, gdb) = (gpu.empty(&[rows, cols]), gpu.empty(&[cols]));
        kernels::elementwise::mul_backward(rec, &gda, &gdb, &tdy, &ta, &tb, false);
        let (gadd_a, gadd_b) = (gpu.empty(&[rows, cols]), gpu.empty(&[cols]));
        kernels::elementwise::add_backward(rec, &gadd_a, &gadd_b, &tdy, false);
        let t = gpu.upload(&dy, &[rows, cols]);
        kernels::elementwise::axpby(rec, &t, &ta, 0.5, 2.0);
        let tam = gpu.empty(&[rows, cols]);
        kernels::elementwise::add_mul(rec, &tam, &ta, &tdy, &tb);
        let srow = gpu.upload(
            &(0..rows).map(|r| (r % 3) as f32 * 0.5).collect::<Vec<_>>(),
            &[rows],
        );
        let tsr = gpu.empty(&[rows, cols]);
        kernels::elementwise::scale_rows(rec, &tsr, &ta, &srow);
        vec![tadd, tmul, gda, gdb, gadd_a, gadd_b, t, tam, tsr]
    }) {
        j.check("add", &out[0], &add, 1e-6);
        j.check("mul", &out[1], &mul, 1e-6);
        j.check("mul da", &out[2], &da, 1e-6);
        j.check("mul db", &out[3], &db, tol(&db, 1e-6));
        j.check("add da", &out[4], &dy, 0.0);
        j.check("add db", &out[5], &dbias, tol(&dbias, 1e-6));
        j.check("axpby", &out[6], &axpby, 1e-6);
        let add_mul: Vec<f32> = (0..rows * cols)
            .map(|i| a[i] + dy[i] * b[i % cols])
            .collect();
        j.check("add_mul", &out[7], &add_mul, 1e-6);
        let scaled: Vec<f32> = (0..rows * cols)
            .map(|i| a[i] * ((i / cols) % 3) as f32 * 0.5)
            .collect();
        j.check("scale_rows", &out[8], &scaled, 1e-6);
    }
    j.finish()
}

fn reduce(gpu: &Gpu) -> CaseResult {
    let mut j = Judge::new("kernel.reduce");
    for &n in &[1usize, 7, 2049, 300_001] {
        let x = random(n, 111 + n as u64, -1.0, 1.0);
        let g = 1.5f32;
        let want = [
            cpu::elementwise::sum(&x),
            cpu::elementwise::sum(&x) / n as f32,
            cpu::elementwise::sum_squares(&x),
        ];
        if let Some(out) = run(gpu, &mut j, |rec| {
            let tx = gpu.upload(&x, &[n]);
            let tg = gpu.upload(&[g], &[1]);
            let mut outs = Vec::new();
            for kind in [Reduce::Sum, Reduce::Mean, Reduce::SumSquares] {
                let o = gpu.empty(&[1]);
                kernels::reduce::reduce(rec, &o, &tx, kind, false);
                outs.push(o);
            }
            let dsq = gpu.empty(&[n]);
            kernels::reduce::reduce_backward(rec, &dsq, &tg, &tx, Reduce::SumSquares, false);
            let dmean = gpu.empty(&[n]);
            kernels::reduce::reduce_backward(rec, &dmean, &tg, &tx, Reduce::Mean, false);
            outs.push(dsq);
            outs.push(dmean);
            outs
        }) {
            let scale = (n as f32).sqrt() * 1e-6;
            j.check(
                &format!("n={n} sum"),
                &out[0],
                &want[..1],
                tol(&want[..1], scale),
            );
            j.check(
                &format!("n={n} mean"),
                &out[1],
                &want[1..2],
                tol(&want[1..2], scale),
            );
            j.check(
                &format!("n={n} sumsq"),
                &out[2],
                &want[2..3],
                tol(&want[2..3], scale),
            );
            let dsq: Vec<f32> = x.iter().map(|v| 2.0 * v * g).collect();
            j.check(&format!("n={n} d sumsq"), &out[3], &dsq, 1e-6);
            let dmean = vec![g / n as f32; n];
            j.check(&format!("n={n} d mean"), &out[4], &dmean, 1e-7);
        }
    }
    for &(rows, cols) in &[(1usize, 1usize), (5000, 65), (300_000, 3)] {
        let x = random(rows * cols, 120, -1.0, 1.0);
        let want = cpu::elementwise::sum_rows(&x, rows, cols);
        if let Some(out) = run(gpu, &mut j, |rec| {
            let tx = gpu.upload(&x, &[rows, cols]);
            let o = gpu.empty(&[cols]);
            kernels::reduce::sum_rows(rec, &o, &tx, rows, cols, 1.0, false);
            vec![o]
        }) {
            j.check(
                &format!("sum_rows {rows}x{cols}"),
                &out[0],
                &want,
                tol(&want, (rows as f32).sqrt() * 1e-6),
            );
        }
    }
    j.finish()
}

fn adamw(gpu: &Gpu) -> CaseResult {
    let mut j = Judge::new("kernel.adamw");
    let n = 1000;
    let segs = [
        Segment {
            start: 0,
            end: 300,
            lr_scale: 1.0,
            wd_scale: 1.0,
        },
        Segment {
            start: 300,
            end: 301,
            lr_scale: 0.2,
            wd_scale: 0.0,
        },
        Segment {
            start: 400,
            end: 1000,
            lr_scale: 0.5,
            wd_scale: 1.0,
        },
    ];
    let mut p = random(n, 131, -1.0, 1.0);
    let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
    let grads: Vec<Vec<f32>> = (0..3).map(|s| random(n, 132 + s, -1.0, 1.0)).collect();
    let step = |t| AdamWStep {
        lr: 1e-2,
        weight_decay: 0.04,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        t,
    };
    let p0 = p.clone();
    for (t, g) in grads.iter().enumerate() {
        cpu::optim::adamw_step(&mut p, &mut m, &mut v, g, &segs, step(t as u32 + 1));
    }
    if let Some(out) = run(gpu, &mut j, |rec| {
        let tp = gpu.upload(&p0, &[n]);
        let (tm, tv) = (
            gpu.upload(&vec![0.0; n], &[n]),
            gpu.upload(&vec![0.0; n], &[n]),
        );
        let table = Segments::new(gpu, &segs);
        for (t, g) in grads.iter().enumerate() {
            let tg = gpu.upload(g, &[n]);
            kernels::adamw::adamw_step(rec, &tp, &tm, &tv, &tg, &table, step(t as u32 + 1));
        }
        vec![tp, tm, tv]
    }) {
        j.check("param", &out[0], &p, 1e-6);
        j.check("m", &out[1], &m, 1e-6);
        j.check("v", &out[2], &v, 1e-6);
    }
    j.finish()
}

fn ema(gpu: &Gpu) -> CaseResult {
    let mut j = Judge::new("kernel.ema");
    let n = 65 * 257;
    let mut t = random(n, 141, -1.0, 1.0);
    let s = random(n, 142, -1.0, 1.0);
    let t0 = t.clone();
    cpu::optim::ema_update(&mut t, &s, 0.992);
    if let Some(out) = run(gpu, &mut j, |rec| {
        let (tt, ts) = (gpu.upload(&t0, &[n]), gpu.upload(&s, &[n]));
        kernels::ema::ema_update(rec, &tt, &ts, 0.992);
        vec![tt]
    }) {
        j.check("teacher", &out[0], &t, 1e-6);
    }
    j.finish()
}

/// Dispatches of more than 65,535 workgroups in one dimension, for the kernels whose grids grow
/// with the batch (rows of softmax, layer norm and cross-entropy, attention heads, matmul batches).
fn large_grids(gpu: &Gpu) -> CaseResult {
    let mut j = Judge::new("kernel.large_grids");
    let rows = 70_000;
    let x = random(rows * 2, 151, -3.0, 3.0);
    let sm = cpu::softmax::softmax_forward(&x, 2, 1.0);
    let w = [1.0f32, 0.5];
    let b = [0.0f32, 0.25];
    let (ln, _, _) = cpu::layernorm::layernorm_forward(&x, &w, &b, 1e-5);
    let q = random(rows * 2, 152, -1.0, 1.0);
    let d = MatmulDims::new(1, 1, 2).batched(rows);
    let prod = cpu::matmul::matmul(&q, &x, MatmulDims::new(1, 1, 2).batched(rows).tb());
    let ce = cpu::cross_entropy::cross_entropy_forward(&x, &sm, 2, 1.0);
    if let Some(out) = run(gpu, &mut j, |rec| {
        let tx = gpu.upload(&x, &[rows, 2]);
        let ty = gpu.empty(&[rows, 2]);
        kernels::softmax::softmax_forward(rec, &ty, &tx, 2, 1.0);
        let tln = gpu.empty(&[rows, 2]);
        let _ = kernels::layernorm::layernorm_forward(
            rec,
            &tln,
            &tx,
            &gpu.upload(&w, &[2]),
            &gpu.upload(&b, &[2]),
            1e-5,
        );
        // Attention with one token per batch: the output is v itself.
        let dims = AttnDims::new(rows, 1, 1, 2);
        let tq = gpu.upload(&q, &[rows, 1, 1, 2]);
        let to = gpu.empty(&[rows, 1, 1, 2]);
        let _ = kernels::attention::attention_forward(
            rec,
            &to,
            &tq,
            &tq,
            &tx,
            dims,
            QkvLayout::bhnd(1, 1, 2),
            OutLayout::bhnd(1, 1, 2),
        );
        let tp = gpu.empty(&[rows]);
        let mut dt = d;
        dt.trans_b = true;
        kernels::matmul::matmul_forward(rec, &tp, &tq, &tx, dt);
        let tce = gpu.empty(&[rows]);
        let opt = CrossEntropy {
            temperature: 1.0,
            scale: 1.0,
            row_weight: None,
        };
        kernels::cross_entropy::cross_entropy_forward(rec, &tce, None, &tx, &ty, 2, opt);
        vec![ty, tln, to, tp, tce]
    }) {
        j.check("softmax 70000 rows", &out[0], &sm, 1e-6);
        j.check("layernorm 70000 rows", &out[1], &ln, 1e-4);
        j.check("attention 70000 batches", &out[2], &x, 1e-6);
        j.check("matmul 70000 batches", &out[3], &prod, 1e-5);
        j.check("cross-entropy 70000 rows", &out[4], &ce, 1e-5);
    }
    j.finish()
}

fn tokens(gpu: &Gpu) -> CaseResult {
    use crate::kernels::tokens::{PosSource, TokenDims, TokenParams};
    let mut j = Judge::new("kernel.tokens");
    for &(batch, p, d, r, use_mask) in &[
        (1, 1, 1, 0, false),
        (2, 7, 65, 4, true),
        (3, 16, 64, 0, true),
    ] {
        let patches = random(batch * p * d, 161, -1.0, 1.0);
        let cls = random(d, 162, -1.0, 1.0);
        let regs = random(r * d, 163, -1.0, 1.0);
        let mt = random(d, 164, -1.0, 1.0);
        let pos = random((1 + p) * d, 165, -1.0, 1.0);
        let mask: Vec<f32> = (0..batch * p)
            .map(|i| ((i * 7 + 3) % 3 == 0) as u8 as f32)
            .collect();
        let m = use_mask.then_some(mask.as_slice());
        let n = 1 + r + p;
        let dout = random(batch * n * d, 166, -1.0, 1.0);
        let want = cpu::tokens::tokens_forward(&patches, &cls, &regs, &mt, &pos, m, batch);
        let zeros = vec![0.0; pos.len()];
        let want_no_pos = cpu::tokens::tokens_forward(&patches, &cls, &regs, &mt, &zeros, m, batch);
        let (dp, dcls, dregs, dpos, dmask) = cpu::tokens::tokens_backward(&dout, d, r, p, m, batch);
        // Three position sources: the table with offsets (CLS row, then the grid), a separate
        // grid, and none (DINOv3).
        for (separate, no_pos) in [(false, false), (true, false), (false, true)] {
            if let Some(out) = run(gpu, &mut j, |rec| {
                let tp = gpu.upload(&patches, &[batch, p, d]);
                let tc = gpu.upload(&cls, &[d]);
                let tr = (r > 0).then(|| gpu.upload(&regs, &[r, d]));
                let tm = gpu.upload(&mt, &[d]);
                let table = gpu.upload(&pos, &[1 + p, d]);
                let grid = gpu.upload(&pos[d..], &[p, d]);
                let tmask = gpu.upload(&mask, &[batch, p]);
                let td = TokenDims {
                    batch,
                    n_patches: p,
                    dim: d,
                    registers: r,
                };
                let src = if separate {
                    PosSource {
                        cls: &table,
                        cls_off: 0,
                        patch: &grid,
                        patch_off: 0,
                    }
                } else {
                    PosSource {
                        cls: &table,
                        cls_off: 0,
                        patch: &table,
                        patch_off: d,
                    }
                };
                let params = TokenParams {
                    cls: &tc,
                    registers: tr.as_ref(),
                    mask_token: &tm,
                };
                let out = gpu.empty(&[batch, n, d]);
                let mk = use_mask.then_some(&tmask);
                let src = (!no_pos).then_some(src);
                kernels::tokens::tokens_forward(rec, &out, &tp, params, src, mk, td);
                let tdo = gpu.upload(&dout, &[batch, n, d]);
                let gp = gpu.empty(&[batch, p, d]);
                let (gc, gm) = (rec.zeros(&[d]), rec.zeros(&[d]));
                let gr = (r > 0).then(|| rec.zeros(&[r, d]));
                let gtable = rec.zeros(&[1 + p, d]);
                let ggrid = rec.zeros(&[p, d]);
                let dsrc = if separate {
                    PosSource {
                        cls: &gtable,
                        cls_off: 0,
                        patch: &ggrid,
                        patch_off: 0,
                    }
                } else {
                    PosSource {
                        cls: &gtable,
                        cls_off: 0,
                        patch: &gtable,
                        patch_off: d,
                    }
                };
                let grads = TokenParams {
                    cls: &gc,
                    registers: gr.as_ref(),
                    mask_token: &gm,
                };
                let dsrc = (!no_pos).then_some(dsrc);
                kernels::tokens::tokens_backward(rec, Some(&gp), grads, dsrc, &tdo, mk, td);
                let mut v = vec![out, gp, gc, gm, gtable, ggrid];
                v.extend(gr);
                v
            }) {
                let tag = format!(
                    "B={batch} P={p} D={d} R={r} mask={use_mask} separate={separate} \
                     no_pos={no_pos}"
                );
                let want = if no_pos { &want_no_pos } else { &want };
                j.check(&format!("{tag} tokens"), &out[0], want, 1e-6);
                j.check(&format!("{tag} d_patches"), &out[1], &dp, 1e-6);
                j.check(&format!("{tag} d_cls"), &out[2], &dcls, 1e-5);
                j.check(&format!("{tag} d_mask_token"), &out[3], &dmask, 1e-5);
                let gpos: Vec<f32> = if separate {
                    out[4][..d].iter().chain(out[5].iter()).copied().collect()
                } else {
                    out[4].clone()
                };
                if no_pos {
                    j.check(&format!("{tag} d_pos untouched"), &gpos, &zeros, 0.0);
                } else {
                    j.check(&format!("{tag} d_pos"), &gpos, &dpos, 1e-5);
                }
                if r > 0 {
                    j.check(&format!("{tag} d_regs"), &out[6], &dregs, 1e-5);
                }
            }
        }
    }
    j.finish()
}

fn gram(gpu: &Gpu) -> CaseResult {
    use crate::kernels::gram::{gram_loss_backward, gram_loss_forward, gram_matrices, GramDims};
    let mut j = Judge::new("kernel.gram");
    // (images, patches, width): odd patch counts take the general matmul; the 15-patch case has
    // a zero row (the normalisation's clamp).
    for &(batch, patches, dim) in &[(1, 1, 4), (2, 15, 24), (3, 16, 64)] {
        let n = batch * patches * dim;
        let mut xs = random(n, 191, -1.0, 1.0);
        let xt = random(n, 192, -1.0, 1.0);
        if patches == 15 {
            xs[dim..2 * dim].fill(0.0);
        }
        let (want_loss, want_grad) = cpu::losses::gram_loss(&xs, &xt, batch, patches, dim, 0.7);
        let dims = GramDims {
            batch,
            patches,
            dim,
        };
        if let Some(out) = run(gpu, &mut j, |rec| {
            let s = gpu.upload(&xs, &[batch * patches, dim]);
            let t = gpu.upload(&xt, &[batch * patches, dim]);
            let tg = gram_matrices(rec, &t, dims);
            let loss = gpu.empty(&[1]);
            let saved = gram_loss_forward(rec, &loss, &s, &tg, dims);
            let g = gpu.empty(&[batch * patches, dim]);
            gram_loss_backward(rec, &g, &saved, 0.7, dims, false);
            vec![loss, g]
        }) {
            let tag = format!("B={batch} P={patches} D={dim}");
            j.check(
                &format!("{tag} loss"),
                &out[0],
                &[want_loss],
                tol(&[want_loss], 1e-5),
            );
            j.check(
                &format!("{tag} grad"),
                &out[1],
                &want_grad,
                tol(&want_grad, 1e-4),
            );
        }
    }
    j.finish()
}

fn rope(gpu: &Gpu) -> CaseResult {
    use crate::kernels::rope::RopeDims;
    let mut j = Judge::new("kernel.rope");
    // (batch, grid h, grid w, prefix, heads, head_dim)
    for &(batch, gh, gw, prefix, heads, hd) in
        &[(1, 1, 1, 0, 1, 4), (2, 3, 5, 5, 3, 16), (3, 7, 2, 1, 2, 64)]
    {
        let n = prefix + gh * gw;
        let (cos, sin) = crate::model::rope::tables(gh, gw, hd, 100.0);
        let x = random(batch * n * 3 * heads * hd, 181, -2.0, 2.0);
        let dims = RopeDims {
            batch,
            tokens: n,
            prefix,
            heads,
            head_dim: hd,
        };
        let twin = |inverse: bool| {
            let mut v = x.clone();
            cpu::rope::rope_apply(&mut v, &cos, &sin, batch, n, prefix, heads, hd, inverse);
            v
        };
        let (fwd, inv) = (twin(false), twin(true));
        // The inverse is the transpose of a rotation: it undoes the forward.
        let mut back = fwd.clone();
        cpu::rope::rope_apply(&mut back, &cos, &sin, batch, n, prefix, heads, hd, true);
        let tag = format!("B={batch} grid={gh}x{gw} prefix={prefix} heads={heads} hd={hd}");
        j.check(
            &format!("{tag} inverse undoes forward (twin)"),
            &back,
            &x,
            1e-5,
        );
        if let Some(out) = run(gpu, &mut j, |rec| {
            let tc = gpu.upload(&cos, &[gh * gw, hd]);
            let ts = gpu.upload(&sin, &[gh * gw, hd]);
            let a = gpu.upload(&x, &[batch, n, 3 * heads * hd]);
            let b = gpu.upload(&x, &[batch, n, 3 * heads * hd]);
            crate::kernels::rope::rope_apply(rec, &a, &tc, &ts, dims, false);
            crate::kernels::rope::rope_apply(rec, &b, &tc, &ts, dims, true);
            vec![a, b]
        }) {
            j.check(&format!("{tag} forward"), &out[0], &fwd, 1e-6);
            j.check(&format!("{tag} inverse"), &out[1], &inv, 1e-6);
        }
    }
    j.finish()
}

fn losses(gpu: &Gpu) -> CaseResult {
    use crate::kernels::losses::DinoPairs;
    let mut j = Judge::new("kernel.losses");
    for &(b, k, nl, big) in &[(1, 7, 0, false), (7, 261, 3, false), (4, 65, 2, true)] {
        let ng = 2;
        // `big`: logits far beyond what exp takes in f32 at τ = 0.04 (Sinkhorn must shift them).
        let amp = if big { 50.0 } else { 2.0 };
        let tl = random(ng * b * k, 171, -amp, amp);
        let center = random(k, 172, -0.5, 0.5);
        let s = random((ng + nl) * b * k, 173, -3.0, 3.0);
        let pairs = DinoPairs {
            batch: b,
            n_student: ng + nl,
            n_global: ng,
            n_teacher: ng,
            temp: 0.1,
        };
        let scale = pairs.default_scale();
        let tsm = cpu::losses::teacher_softmax(&tl, &center, 0.04);
        let c_after = cpu::losses::center_update(&center, &tl, 0.9);
        let sk = cpu::losses::sinkhorn(&tl, k, 0.04, 3);
        let (loss, grad) = cpu::losses::dino_loss(&s, &tsm, k, b, ng, ng, 0.1, scale, 0.5);
        let x = random(ng * b.max(2) * 65, 174, -1.0, 1.0);
        let kb = b.max(2);
        let (kl, kg, knn) = cpu::losses::koleo(&x, 65, kb, 1.0 / kb as f32, 0.5);
        if let Some(out) = run(gpu, &mut j, |rec| {
            let ttl = gpu.upload(&tl, &[ng * b, k]);
            let tc = gpu.upload(&center, &[k]);
            let ts = gpu.upload(&s, &[(ng + nl) * b, k]);
            let up = gpu.upload(&[0.5], &[1]);
            let probs = gpu.empty(&[ng * b, k]);
            kernels::losses::teacher_softmax(rec, &probs, &ttl, &tc, 0.04);
            kernels::losses::center_update(rec, &tc, &ttl, 0.9);
            let tsk = gpu.empty(&[ng * b, k]);
            kernels::losses::sinkhorn(rec, &tsk, &ttl, k, 0.04, 3);
            let tl_ = gpu.empty(&[1]);
            let _ = kernels::losses::dino_loss_forward(rec, &tl_, &ts, &probs, k, pairs, scale);
            let tg = gpu.empty(&[(ng + nl) * b, k]);
            kernels::losses::dino_loss_backward(rec, &tg, &up, &ts, &probs, k, pairs, scale, false);
            let tx = gpu.upload(&x, &[ng * kb, 65]);
            let kloss = gpu.empty(&[1]);
            let saved = kernels::losses::koleo_forward(rec, &kloss, &tx, 65, kb, 1.0 / kb as f32);
            let kgrad = gpu.empty(&[ng * kb, 65]);
            kernels::losses::koleo_backward(
                rec,
                &kgrad,
                &up,
                &tx,
                &saved,
                65,
                kb,
                1.0 / kb as f32,
                false,
            );
            vec![probs, tc, tsk, tl_, tg, kloss, kgrad, saved.pairs]
        }) {
            let tag = format!("B={b} K={k} locals={nl} amp={amp}");
            // Dividing by τ = 0.04 multiplies the f32 rounding of the logits by 25.
            j.check(
                &format!("{tag} teacher softmax"),
                &out[0],
                &tsm,
                2.5e-5 * amp,
            );
            j.check(&format!("{tag} center"), &out[1], &c_after, 1e-5);
            j.check(&format!("{tag} sinkhorn"), &out[2], &sk, 2.5e-5 * amp);
            j.check(
                &format!("{tag} dino loss"),
                &out[3],
                &[loss],
                tol(&[loss], 1e-5),
            );
            j.check(
                &format!("{tag} dino grad"),
                &out[4],
                &grad,
                tol(&grad, 1e-5),
            );
            j.check(
                &format!("{tag} koleo loss"),
                &out[5],
                &[kl],
                tol(&[kl], 1e-5),
            );
            j.check(&format!("{tag} koleo grad"), &out[6], &kg, tol(&kg, 1e-4));
            let nn: Vec<f32> = out[7].iter().step_by(2).copied().collect();
            let want_nn: Vec<f32> = knn.iter().map(|&i| i as f32).collect();
            j.check(&format!("{tag} koleo neighbours"), &nn, &want_nn, 0.0);
        }
    }
    j.finish()
}
