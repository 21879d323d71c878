//! The f16 storage variants of the inference kernels against their CPU twins. Inputs are
//! rounded to f16 on the host first, so the twins see exactly the values the kernels load; what
//! remains is the kernels' own rounding of each stored output (half an f16 ulp, 2⁻¹¹ relative)
//! and f32 summation order.

use super::checks::{random, run, tol, KernelCheck};
use super::{CaseResult, Judge};
use crate::cpu;
use crate::gpu::{DType, Gpu, Tensor};
use crate::half::round_trip;
use crate::kernels;
use crate::kernels::attention::{AttnDims, OutLayout, QkvLayout};
use crate::kernels::matmul::{Epilogue, MatmulDims};

/// Relative tolerance of one f16 output: its own rounding (2⁻¹¹) with room for f32 order.
const OUT_TOL: f32 = 1e-3;

/// The f16 checks (they report "unsupported" on an adapter without SHADER_F16).
pub fn checks() -> Vec<KernelCheck> {
    vec![
        KernelCheck {
            name: "kernel.f16_cast",
            run: cast,
        },
        KernelCheck {
            name: "kernel.f16_matmul",
            run: matmul,
        },
        KernelCheck {
            name: "kernel.f16_forward_ops",
            run: forward_ops,
        },
        KernelCheck {
            name: "kernel.coop_matmul",
            run: coop_matmul,
        },
        KernelCheck {
            name: "kernel.f16_attention",
            run: f16_attention,
        },
        KernelCheck {
            name: "kernel.coop_attention",
            run: coop_attention,
        },
    ]
}

fn unsupported(gpu: &Gpu, name: &str) -> Option<CaseResult> {
    (!gpu.features.contains(wgpu::Features::SHADER_F16))
        .then(|| CaseResult::unsupported(name, "the adapter has no SHADER_F16"))
}

fn half(gpu: &Gpu, v: &[f32], shape: &[usize]) -> Tensor {
    gpu.upload_as(v, shape, DType::F16)
}

/// f32 → f16 → f32 on the GPU against the host's round-to-nearest: within one f16 ulp (WGSL
/// lets a conversion take either neighbour), and exactly back.
fn cast(gpu: &Gpu) -> CaseResult {
    let name = "kernel.f16_cast";
    if let Some(r) = unsupported(gpu, name) {
        return r;
    }
    let mut j = Judge::new(name);
    let mut x = random(1031, 61, -1000.0, 1000.0);
    x.extend(random(257, 62, -1e-6, 1e-6));
    x.extend([0.0, -0.0, 1.0, 65504.0, -65504.0, 1.0 + 2f32.powi(-11)]);
    let want = round_trip(&x);
    if let Some(out) = run(gpu, &mut j, |rec| {
        let src = gpu.upload(&x, &[x.len()]);
        let h = kernels::cast::to_dtype(rec, &src, DType::F16);
        let back = kernels::cast::to_dtype(rec, &h, DType::F32);
        vec![h, back]
    }) {
        // Distance from the host's rounding in units of the f16 spacing at that value.
        let ulps: Vec<f32> = out[0]
            .iter()
            .zip(&want)
            .map(|(g, w)| (g - w).abs() / ulp(*w))
            .collect();
        j.check(
            "f16 vs host rounding (ulps)",
            &ulps,
            &vec![0.0; ulps.len()],
            1.0,
        );
        j.check("f16 → f32 is exact", &out[1], &out[0], 0.0);
    }
    j.finish()
}

/// Spacing of f16 values around `x` (the subnormal spacing below the normal range).
fn ulp(x: f32) -> f32 {
    let a = x.abs().max(2f32.powi(-14));
    2f32.powi(a.log2().floor() as i32 - 10)
}

/// Every plan of every product shape, and the linear layer's bias and bias + GELU epilogues.
fn matmul(gpu: &Gpu) -> CaseResult {
    let name = "kernel.f16_matmul";
    if let Some(r) = unsupported(gpu, name) {
        return r;
    }
    let mut j = Judge::new(name);
    let shapes = [(7, 65, 197), (68, 132, 36), (260, 264, 52), (132, 68, 2052)];
    for (i, &(m, n, k)) in shapes.iter().enumerate() {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let mut d = MatmulDims::new(m, n, k);
            d.trans_a = ta;
            d.trans_b = tb;
            let a = round_trip(&random(m * k, 70 + i as u64, -1.0, 1.0));
            let b = round_trip(&random(k * n, 80 + i as u64, -1.0, 1.0));
            let want = cpu::matmul::matmul(&a, &b, d);
            let mut plans = kernels::matmul::Plan::candidates(&d);
            plans.extend(
                kernels::matmul::Plan::coop_plans(gpu)
                    .into_iter()
                    .filter(|p| p.fits(&d)),
            );
            for plan in plans {
                if let Some(out) = run(gpu, &mut j, |rec| {
                    let c = gpu.empty_as(&[m * n], DType::F16);
                    let (ta_, tb_) = (half(gpu, &a, &[a.len()]), half(gpu, &b, &[b.len()]));
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
                    let tag = format!("{m}x{n}x{k} ta={ta} tb={tb} {}", plan.name());
                    j.check(&tag, &out[0], &want, tol(&want, OUT_TOL));
                }
            }
        }
    }
    // A linear layer y = x·Wᵀ + b, then with GELU (pre-activation kept, and not).
    let (rows, in_f, out_f) = (65, 36, 132);
    let x = round_trip(&random(rows * in_f, 90, -1.0, 1.0));
    let w = round_trip(&random(out_f * in_f, 91, -0.5, 0.5));
    let bias = round_trip(&random(out_f, 92, -0.5, 0.5));
    let pre = cpu::matmul::linear_forward(&x, &w, Some(&bias), out_f);
    let act = cpu::gelu::gelu_forward(&round_trip(&pre));
    if let Some(out) = run(gpu, &mut j, |rec| {
        let (tx, tw, tb) = (
            half(gpu, &x, &[rows, in_f]),
            half(gpu, &w, &[out_f, in_f]),
            half(gpu, &bias, &[out_f]),
        );
        let y = gpu.empty_as(&[rows, out_f], DType::F16);
        kernels::linear::linear_forward(rec, &y, &tx, &tw, Some(&tb), None);
        let (g, p) = (
            gpu.empty_as(&[rows, out_f], DType::F16),
            gpu.empty_as(&[rows, out_f], DType::F16),
        );
        kernels::linear::linear_forward(rec, &g, &tx, &tw, Some(&tb), Some(&p));
        let g2 = gpu.empty_as(&[rows, out_f], DType::F16);
        kernels::linear::linear_gelu_forward(rec, &g2, &tx, &tw, &tb);
        vec![y, g, p, g2]
    }) {
        j.check("linear + bias", &out[0], &pre, tol(&pre, OUT_TOL));
        j.check(
            "linear + bias + GELU",
            &out[1],
            &act,
            tol(&act, 2.0 * OUT_TOL),
        );
        j.check("pre-activation", &out[2], &pre, tol(&pre, OUT_TOL));
        j.check(
            "linear + bias + GELU, pre-activation not kept",
            &out[3],
            &out[1],
            0.0,
        );
    }
    j.finish()
}

/// The cooperative-matrix kernel on its own: edges against its tile and K step (dims are
/// multiples of 4, its vec4 condition), all four layouts, batches with a shared B, alpha with
/// accumulation, and the bias + GELU epilogue ("unsupported" on adapters without f16
/// cooperative matrices).
fn coop_matmul(gpu: &Gpu) -> CaseResult {
    use kernels::matmul::Plan;
    let name = "kernel.coop_matmul";
    let Some(side) = gpu.coop_side() else {
        return CaseResult::unsupported(name, "the adapter has no f16 cooperative matrices");
    };
    let mut j = Judge::new(name);
    let (t, step) = (8 * side as usize, 2 * side as usize);
    // One vec4; one tile and K step exactly; a vec4 past them in every dimension; ragged, skinny
    // and long K.
    // The wide tile (twice t rows) gets a row edge past its own.
    let shapes = [
        (4, 4, 4),
        (t, t, step),
        (t + 4, t + 4, step + 4),
        (12, 68, 196),
        (3 * t - 4, 20, 300),
        (2 * t + 4, t - 4, step),
    ];
    let plans = Plan::coop_plans(gpu);
    for (i, &(m, n, k)) in shapes.iter().enumerate() {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let mut d = MatmulDims::new(m, n, k);
            d.trans_a = ta;
            d.trans_b = tb;
            let a = round_trip(&random(m * k, 110 + i as u64, -1.0, 1.0));
            let b = round_trip(&random(k * n, 120 + i as u64, -1.0, 1.0));
            let want = cpu::matmul::matmul(&a, &b, d);
            for &plan in &plans {
                if let Some(out) = run(gpu, &mut j, |rec| {
                    let c = gpu.empty_as(&[m * n], DType::F16);
                    let (ha, hb) = (half(gpu, &a, &[a.len()]), half(gpu, &b, &[b.len()]));
                    let e = Epilogue::None;
                    kernels::matmul::matmul_planned(rec, &c, &ha, &hb, d, 1.0, false, e, plan);
                    vec![c]
                }) {
                    let tag = format!("{} {m}x{n}x{k} ta={ta} tb={tb}", plan.name());
                    j.check(&tag, &out[0], &want, tol(&want, OUT_TOL));
                }
            }
        }
    }
    // Three products sharing B, C = 0.5·A·B + C, then + bias → GELU with the pre-activation.
    let (batch, m, n, k) = (3, t + 4, 2 * t - 4, 3 * side as usize + 4);
    let d = MatmulDims::new(m, n, k).batched(batch).shared_b();
    let a = round_trip(&random(batch * m * k, 130, -1.0, 1.0));
    let b = round_trip(&random(k * n, 131, -1.0, 1.0));
    let c0 = round_trip(&random(batch * m * n, 132, -1.0, 1.0));
    let bias = round_trip(&random(n, 133, -0.5, 0.5));
    let prod = cpu::matmul::matmul(&a, &b, d);
    let acc: Vec<f32> = prod.iter().zip(&c0).map(|(p, c)| 0.5 * p + c).collect();
    let pre: Vec<f32> = prod
        .iter()
        .enumerate()
        .map(|(i, p)| p + bias[i % n])
        .collect();
    let act = cpu::gelu::gelu_forward(&round_trip(&pre));
    for &plan in &plans {
        let Some(out) = run(gpu, &mut j, |rec| {
            let (ha, hb) = (half(gpu, &a, &[a.len()]), half(gpu, &b, &[b.len()]));
            let c = half(gpu, &c0, &[c0.len()]);
            let e = Epilogue::None;
            kernels::matmul::matmul_planned(rec, &c, &ha, &hb, d, 0.5, true, e, plan);
            let (g, p) = (
                gpu.empty_as(&[batch * m * n], DType::F16),
                gpu.empty_as(&[batch * m * n], DType::F16),
            );
            let hbias = half(gpu, &bias, &[n]);
            let e = Epilogue::BiasGelu(&hbias, &p);
            kernels::matmul::matmul_planned(rec, &g, &ha, &hb, d, 1.0, false, e, plan);
            // The same without keeping the pre-activation.
            let g2 = gpu.empty_as(&[batch * m * n], DType::F16);
            let e = Epilogue::BiasGeluOnly(&hbias);
            kernels::matmul::matmul_planned(rec, &g2, &ha, &hb, d, 1.0, false, e, plan);
            vec![c, g, p, g2]
        }) else {
            continue;
        };
        let name = plan.name();
        j.check(
            &format!("{name} batched, shared B, 0.5·AB + C"),
            &out[0],
            &acc,
            tol(&acc, OUT_TOL),
        );
        j.check(
            &format!("{name} + bias → GELU"),
            &out[1],
            &act,
            tol(&act, 2.0 * OUT_TOL),
        );
        j.check(
            &format!("{name} pre-activation"),
            &out[2],
            &pre,
            tol(&pre, OUT_TOL),
        );
        j.check(
            &format!("{name} + bias → GELU, pre-activation not kept"),
            &out[3],
            &out[1],
            0.0,
        );
    }
    coop_split(gpu, &mut j, side as usize);
    j.finish()
}

/// The cooperative kernel with K split (2 ranges, and 3 with a short last one), every layout,
/// as the weight gradients run it: f32 products of f16 operands, C = 0.5·A·B + C + bias.
fn coop_split(gpu: &Gpu, j: &mut Judge, side: usize) {
    use kernels::matmul::Plan;
    let (t, step) = (8 * side, 2 * side);
    let (m, n, k) = (t + 4, t - 4, 7 * step + 4);
    let a = round_trip(&random(m * k, 140, -1.0, 1.0));
    let b = round_trip(&random(k * n, 141, -1.0, 1.0));
    let c0 = random(m * n, 142, -1.0, 1.0);
    let bias = round_trip(&random(n, 143, -0.5, 0.5));
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let mut d = MatmulDims::new(m, n, k);
        d.trans_a = ta;
        d.trans_b = tb;
        let prod = cpu::matmul::matmul(&a, &b, d);
        let want: Vec<f32> = (0..m * n)
            .map(|i| 0.5 * prod[i] + c0[i] + bias[i % n])
            .collect();
        for splits in [2, 3] {
            let plan = Plan::CoopSplit { splits };
            if let Some(out) = run(gpu, j, |rec| {
                let (ha, hb) = (half(gpu, &a, &[a.len()]), half(gpu, &b, &[b.len()]));
                let (c, hbias) = (gpu.upload(&c0, &[m * n]), half(gpu, &bias, &[n]));
                let e = Epilogue::Bias(&hbias);
                kernels::matmul::matmul_planned(rec, &c, &ha, &hb, d, 0.5, true, e, plan);
                vec![c]
            }) {
                let tag = format!("{} {m}x{n}x{k} ta={ta} tb={tb}", plan.name());
                j.check(&tag, &out[0], &want, tol(&want, 1e-5));
            }
        }
    }
}

/// Layer norm, GELU, residual + LayerScale, and attention (output and probabilities).
fn forward_ops(gpu: &Gpu) -> CaseResult {
    let name = "kernel.f16_forward_ops";
    if let Some(r) = unsupported(gpu, name) {
        return r;
    }
    let mut j = Judge::new(name);
    let (rows, dim) = (261, 65);
    let x = round_trip(&random(rows * dim, 101, -2.0, 2.0));
    let w = round_trip(&random(dim, 102, 0.5, 1.5));
    let b = round_trip(&random(dim, 103, -0.5, 0.5));
    let branch = round_trip(&random(rows * dim, 104, -1.0, 1.0));
    let (ln, _, _) = cpu::layernorm::layernorm_forward(&x, &w, &b, 1e-6);
    let gelu = cpu::gelu::gelu_forward(&x);
    let residual: Vec<f32> = (0..rows * dim)
        .map(|i| x[i] + w[i % dim] * branch[i])
        .collect();
    if let Some(out) = run(gpu, &mut j, |rec| {
        let (tx, tw, tb, tr) = (
            half(gpu, &x, &[rows, dim]),
            half(gpu, &w, &[dim]),
            half(gpu, &b, &[dim]),
            half(gpu, &branch, &[rows, dim]),
        );
        let (y, g, r) = (
            gpu.empty_as(&[rows, dim], DType::F16),
            gpu.empty_as(&[rows, dim], DType::F16),
            gpu.empty_as(&[rows, dim], DType::F16),
        );
        kernels::layernorm::layernorm_forward(rec, &y, &tx, &tw, &tb, 1e-6);
        kernels::gelu::gelu_forward(rec, &g, &tx);
        kernels::elementwise::add_mul(rec, &r, &tx, &tr, &tw);
        vec![y, g, r]
    }) {
        j.check("layernorm 261x65", &out[0], &ln, tol(&ln, OUT_TOL));
        j.check("gelu", &out[1], &gelu, tol(&gelu, OUT_TOL));
        j.check("x + γ·branch", &out[2], &residual, tol(&residual, OUT_TOL));
    }
    for &(bt, h, n, d) in &[(2, 3, 7, 16), (1, 2, 65, 64), (1, 1, 197, 33)] {
        let len = bt * h * n * d;
        let q = round_trip(&random(len, 111 + n as u64, -2.0, 2.0));
        let k = round_trip(&random(len, 112 + n as u64, -2.0, 2.0));
        let v = round_trip(&random(len, 113 + n as u64, -1.0, 1.0));
        let dims = AttnDims::new(bt, h, n, d);
        let (o, p, _) = cpu::attention::attention_forward(&q, &k, &v, bt * h, n, n, d, dims.scale);
        let s = [bt, h, n, d];
        if let Some(out) = run(gpu, &mut j, |rec| {
            let (tq, tk, tv) = (half(gpu, &q, &s), half(gpu, &k, &s), half(gpu, &v, &s));
            let (layout, ol) = (QkvLayout::bhnd(h, n, d), OutLayout::bhnd(h, n, d));
            let to = gpu.empty_as(&s, DType::F16);
            let lse =
                kernels::attention::attention_forward(rec, &to, &tq, &tk, &tv, dims, layout, ol);
            let probs = gpu.empty_as(&[bt, h, n, n], DType::F16);
            kernels::attention::attention_probs(rec, &probs, &tq, &tk, &lse, dims, layout);
            vec![to, probs]
        }) {
            let tag = format!("attention {bt}x{h}x{n}x{d}");
            j.check(&format!("{tag} out"), &out[0], &o, tol(&o, OUT_TOL));
            // Probabilities are at most 1: half an ulp of 1 is 2⁻¹¹.
            j.check(&format!("{tag} probs"), &out[1], &p, OUT_TOL);
        }
    }
    j.finish()
}

/// Every plain f16 attention variant that runs here (forward and backward, forced in pairs)
/// against the CPU twin, as [`coop_attention`] checks the cooperative ones: the backward of the
/// mixed-precision step runs on them where the adapter has no cooperative matrices.
fn f16_attention(gpu: &Gpu) -> CaseResult {
    use kernels::attention_plan::{Backward, Forward};
    let name = "kernel.f16_attention";
    if let Some(r) = unsupported(gpu, name) {
        return r;
    }
    let rec = crate::gpu::Recorder::new(gpu);
    let d = AttnDims::new(1, 1, 1, 8);
    let forwards: Vec<Forward> = Forward::ALL
        .into_iter()
        .filter(|f| *f != Forward::Coop && f.runs(&rec, &d, DType::F16))
        .collect();
    let backwards: Vec<Backward> = Backward::ALL
        .into_iter()
        .filter(|b| *b != Backward::Coop && b.runs(&rec, &d, DType::F16))
        .collect();
    drop(rec);
    // Each variant of either pass runs at least once.
    let pairs: Vec<_> = (0..forwards.len().max(backwards.len()))
        .map(|i| (forwards[i % forwards.len()], backwards[i % backwards.len()]))
        .collect();
    half_attention(gpu, name, 8, &pairs)
}

/// Attention on cooperative matrices (forward and backward, forced) against the CPU twin
/// ("unsupported" on adapters without f16 cooperative matrices); see [`half_attention`].
fn coop_attention(gpu: &Gpu) -> CaseResult {
    use kernels::attention_plan::{Backward, Forward};
    let name = "kernel.coop_attention";
    let Some(side) = gpu.coop_side().map(|s| s as usize) else {
        return CaseResult::unsupported(name, "the adapter has no f16 cooperative matrices");
    };
    if !gpu.coop_attention() {
        return CaseResult::unsupported(
            name,
            "the attention kernels are written for side²/8 lanes a subgroup, not this adapter's",
        );
    }
    half_attention(gpu, name, side, &[(Forward::Coop, Backward::Coop)])
}

/// f16 attention with each (forward, backward) pair forced, against the CPU twin: output, lse
/// (through the probabilities recomputed from it), dQ, dK and dV; head sizes of one to eight
/// `side`s (a cooperative matrix's), sequences that end inside a query and a key block, and the
/// fused qkv layout as the mixed-precision step runs it (one dqkv buffer of f32 gradients, heads
/// merged in the output).
fn half_attention(
    gpu: &Gpu,
    name: &str,
    side: usize,
    pairs: &[(
        kernels::attention_plan::Forward,
        kernels::attention_plan::Backward,
    )],
) -> CaseResult {
    use kernels::attention_plan::{BACKWARD, FORWARD};
    let mut j = Judge::new(name);
    let heads = [side, 2 * side, 64.min(8 * side)];
    let shapes = [
        (1, 1, 1, heads[0], false),
        (2, 3, 7, heads[1], false),
        (1, 2, 4 * side + 1, heads[2], false),
        (2, 2, 197, heads[2], true),
    ];
    for (i, &(bt, h, n, d, fused)) in shapes.iter().enumerate() {
        let dims = AttnDims::new(bt, h, n, d);
        let rec = crate::gpu::Recorder::new(gpu);
        let runs = pairs
            .iter()
            .all(|(f, b)| f.runs(&rec, &dims, DType::F16) && b.runs(&rec, &dims, DType::F16));
        drop(rec);
        if !runs {
            j.fail(format!(
                "{bt}x{h}x{n}x{d}: a forced variant does not take it"
            ));
            continue;
        }
        let len = bt * h * n * d;
        let q = round_trip(&random(len, 140 + i as u64, -2.0, 2.0));
        let k = round_trip(&random(len, 150 + i as u64, -2.0, 2.0));
        let v = round_trip(&random(len, 160 + i as u64, -1.0, 1.0));
        let dout = round_trip(&random(len, 170 + i as u64, -1.0, 1.0));
        let (o, p, _) = cpu::attention::attention_forward(&q, &k, &v, bt * h, n, n, d, dims.scale);
        let (dq, dk, dv) =
            cpu::attention::attention_backward(&dout, &q, &k, &v, bt * h, n, n, d, dims.scale);
        // [B, H, N, d] → [B, N, H, d] (a fused qkv row holds q, k, v of every head in turn).
        let bnhd = |x: &[f32], slot: usize, per: usize| {
            let mut out = vec![0.0; bt * n * per * h * d];
            for b in 0..bt {
                for hh in 0..h {
                    for t in 0..n {
                        let src = ((b * h + hh) * n + t) * d;
                        let dst = ((b * n + t) * per + slot) * h * d + hh * d;
                        out[dst..dst + d].copy_from_slice(&x[src..src + d]);
                    }
                }
            }
            out
        };
        // A fused qkv (or dqkv) buffer from three [B, H, N, d] tensors.
        let pack3 = |x: &[f32], y: &[f32], z: &[f32]| {
            let mut out = bnhd(x, 0, 3);
            for (slot, t) in [(1, y), (2, z)] {
                for (a, b) in out.iter_mut().zip(bnhd(t, slot, 3)) {
                    *a += b;
                }
            }
            out
        };
        let (layout, ol) = if fused {
            (QkvLayout::fused(h, n, d), OutLayout::bnhd(h, n, d))
        } else {
            (QkvLayout::bhnd(h, n, d), OutLayout::bhnd(h, n, d))
        };
        let (want, dout_in, grads) = if fused {
            let g = vec![pack3(&dq, &dk, &dv)];
            (bnhd(&o, 0, 1), bnhd(&dout, 0, 1), g)
        } else {
            (
                o.clone(),
                dout.clone(),
                vec![dq.clone(), dk.clone(), dv.clone()],
            )
        };
        for &(fw, bw) in pairs {
            let Some(out) = run(gpu, &mut j, |rec| {
                rec.force(FORWARD, Some(fw.name()));
                rec.force(BACKWARD, Some(bw.name()));
                let (tq, tk, tv) = if fused {
                    let t = half(gpu, &pack3(&q, &k, &v), &[3 * len]);
                    (t.clone(), t.clone(), t)
                } else {
                    let s = [bt, h, n, d];
                    (half(gpu, &q, &s), half(gpu, &k, &s), half(gpu, &v, &s))
                };
                let to = gpu.empty_as(&[len], DType::F16);
                let lse = kernels::attention::attention_forward(
                    rec, &to, &tq, &tk, &tv, dims, layout, ol,
                );
                let probs = gpu.empty_as(&[bt, h, n, n], DType::F16);
                kernels::attention::attention_probs(rec, &probs, &tq, &tk, &lse, dims, layout);
                let tdo = half(gpu, &dout_in, &[len]);
                let g: Vec<Tensor> = if fused {
                    vec![gpu.empty(&[3 * len])]
                } else {
                    (0..3).map(|_| gpu.empty_as(&[len], DType::F16)).collect()
                };
                let (gq, gk, gv) = (&g[0], &g[g.len() / 2], &g[g.len() - 1]);
                kernels::attention::attention_backward(
                    rec, gq, gk, gv, &tdo, &tq, &tk, &tv, &to, &lse, dims, layout, ol,
                );
                let mut outs = vec![to, probs];
                outs.extend(g);
                outs
            }) else {
                continue;
            };
            let fused_tag = if fused { " fused, f32 gradients" } else { "" };
            let tag = format!("{bt}x{h}x{n}x{d}{fused_tag} {}/{}", fw.name(), bw.name());
            // The probabilities meet V rounded to f16: twice the output's own rounding.
            j.check(
                &format!("{tag} out"),
                &out[0],
                &want,
                tol(&want, 2.0 * OUT_TOL),
            );
            j.check(&format!("{tag} probs (from lse)"), &out[1], &p, OUT_TOL);
            // P and dS enter their products as f16, and D comes from the f16 output.
            let names: &[&str] = if fused {
                &["dqkv"]
            } else {
                &["dq", "dk", "dv"]
            };
            for ((name, got), want) in names.iter().zip(&out[2..]).zip(&grads) {
                j.check(
                    &format!("{tag} {name}"),
                    got,
                    want,
                    tol(want, 4.0 * OUT_TOL),
                );
            }
        }
    }
    j.finish()
}
