//! The kernels of mixed-precision backward passes against their CPU twins: products of f16
//! operands written in f32 (every plan, split K included), the linear layer's f16 backward, the
//! checked gradient cast, the loss-scale rule and the AdamW step it gates. f16 inputs are
//! rounded on the host first, so the twins see the values the kernels load; products accumulate
//! and store in f32, so only summation order differs.

use super::checks::{random, run, tol, KernelCheck};
use super::{CaseResult, Judge};
use crate::cpu;
use crate::gpu::{DType, Gpu};
use crate::half::{round_checked, round_trip};
use crate::kernels;
use crate::kernels::adamw::{AdamWStep, Segment, Segments};
use crate::kernels::loss_scale::{LossScale, MAX_SCALE, SKIP};
use crate::kernels::matmul::{Epilogue, MatmulDims, Plan};

/// Relative tolerance of an f32 product of f16 operands: f32 summation order only.
const SUM_TOL: f32 = 1e-5;

/// The mixed-precision checks ("unsupported" without SHADER_F16).
pub fn checks() -> Vec<KernelCheck> {
    vec![
        KernelCheck {
            name: "kernel.f16_products",
            run: products,
        },
        KernelCheck {
            name: "kernel.loss_scale",
            run: loss_scale,
        },
    ]
}

fn unsupported(gpu: &Gpu, name: &str) -> Option<CaseResult> {
    (!gpu.features.contains(wgpu::Features::SHADER_F16))
        .then(|| CaseResult::unsupported(name, "the adapter has no SHADER_F16"))
}

/// Every plan (the cooperative-matrix one where the adapter has it) of f16 A and B into an f32
/// C, with alpha and accumulation; then the linear layer's f16 backward.
fn products(gpu: &Gpu) -> CaseResult {
    let name = "kernel.f16_products";
    if let Some(r) = unsupported(gpu, name) {
        return r;
    }
    let mut j = Judge::new(name);
    let shapes = [(7, 65, 197), (68, 132, 36), (132, 68, 2052)];
    for (i, &(m, n, k)) in shapes.iter().enumerate() {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let mut d = MatmulDims::new(m, n, k);
            d.trans_a = ta;
            d.trans_b = tb;
            let a = round_trip(&random(m * k, 140 + i as u64, -1.0, 1.0));
            let b = round_trip(&random(k * n, 150 + i as u64, -1.0, 1.0));
            let c0 = random(m * n, 160 + i as u64, -1.0, 1.0);
            let prod = cpu::matmul::matmul(&a, &b, d);
            let want: Vec<f32> = prod.iter().zip(&c0).map(|(p, c)| 0.5 * p + c).collect();
            let mut plans = Plan::candidates(&d);
            plans.extend(Plan::coop_plans(gpu).into_iter().filter(|p| p.fits(&d)));
            for plan in plans {
                if let Some(out) = run(gpu, &mut j, |rec| {
                    let ha = gpu.upload_as(&a, &[a.len()], DType::F16);
                    let hb = gpu.upload_as(&b, &[b.len()], DType::F16);
                    let c = gpu.upload(&c0, &[m * n]);
                    let e = Epilogue::None;
                    kernels::matmul::matmul_planned(rec, &c, &ha, &hb, d, 0.5, true, e, plan);
                    vec![c]
                }) {
                    let tag = format!("{m}x{n}x{k} ta={ta} tb={tb} {}", plan.name());
                    j.check(&tag, &out[0], &want, tol(&want, SUM_TOL));
                }
            }
        }
    }
    // dx = dy·W, dW += dyᵀ·x, db += Σ dy with dy rounded to f16 on its way into the products
    // (the bias gradient sums the f32 dy).
    let (rows, in_f, out_f) = (65, 36, 132);
    let x = round_trip(&random(rows * in_f, 170, -1.0, 1.0));
    let w = round_trip(&random(out_f * in_f, 171, -0.5, 0.5));
    let dy = random(rows * out_f, 172, -1.0, 1.0);
    let (dx, dw, _) = cpu::matmul::linear_backward(&round_trip(&dy), &x, &w, out_f);
    let (_, _, db) = cpu::matmul::linear_backward(&dy, &x, &w, out_f);
    let dw0 = random(out_f * in_f, 173, -1.0, 1.0);
    let dw_want: Vec<f32> = dw.iter().zip(&dw0).map(|(a, b)| a + b).collect();
    if let Some(out) = run(gpu, &mut j, |rec| {
        let tx = gpu.upload_as(&x, &[rows, in_f], DType::F16);
        let tw = gpu.upload_as(&w, &[out_f, in_f], DType::F16);
        let tdy = gpu.upload(&dy, &[rows, out_f]);
        let (gx, gw, gb) = (
            gpu.empty(&[rows, in_f]),
            gpu.upload(&dw0, &[out_f, in_f]),
            rec.zeros(&[out_f]),
        );
        let flag = rec.zeros(&[1]);
        kernels::linear::linear_backward_half(
            rec,
            Some(&gx),
            &gw,
            Some(&gb),
            &tdy,
            (&tx, &tw),
            &flag,
            false,
            true,
        );
        vec![gx, gw, gb, flag]
    }) {
        j.check("linear dx", &out[0], &dx, tol(&dx, SUM_TOL));
        j.check(
            "linear dW (accumulated)",
            &out[1],
            &dw_want,
            tol(&dw_want, SUM_TOL),
        );
        j.check("linear db", &out[2], &db, tol(&db, SUM_TOL));
        j.check("no overflow raised", &out[3], &[0.0], 0.0);
    }
    j.finish()
}

/// The checked cast (values at and past f16's range), the loss-scale update over a run of
/// finite and overflowed steps against its twin, unscaling (0 for a skipped step, also over
/// infinities), and AdamW skipping the steps it is told to.
fn loss_scale(gpu: &Gpu) -> CaseResult {
    let name = "kernel.loss_scale";
    if let Some(r) = unsupported(gpu, name) {
        return r;
    }
    let mut j = Judge::new(name);
    let mut fine = random(1000, 180, -60000.0, 60000.0);
    fine.extend([65504.0, -65504.0, 65519.0, 1e-8, 0.0]);
    let mut past = fine.clone();
    past.extend([65520.0, f32::INFINITY, f32::NAN, -1e9]);
    for (tag, x) in [("within f16", &fine), ("past f16", &past)] {
        let (want, raised) = round_checked(x);
        if let Some(out) = run(gpu, &mut j, |rec| {
            let src = gpu.upload(x, &[x.len()]);
            let dst = gpu.empty_as(&[x.len()], DType::F16);
            let flag = rec.zeros(&[1]);
            kernels::cast::cast_checked(rec, &dst, &src, &flag);
            vec![dst, flag]
        }) {
            j.check(&format!("checked cast, {tag}"), &out[0], &want, 0.0);
            let got = [f32::from(u8::from(out[1][0].to_bits() != 0))];
            j.check(
                &format!("overflow flag, {tag}"),
                &got,
                &[f32::from(u8::from(raised))],
                0.0,
            );
        }
    }
    // Steps: finite ×3 (interval 3: the scale doubles), overflow by the flag, overflow by a
    // non-finite sum of squares, finite, and overflows down to the floor of 1.
    let events = [
        false, false, false, true, true, false, true, true, true, true,
    ];
    let (start, interval) = (8.0, 3);
    let mut twin = [start, 0.0, 0.0, 0.0, 1.0 / start];
    let ls = LossScale::new(gpu, start, interval);
    let grads = [1.5f32, -2.0, f32::INFINITY, 3.0];
    for (step, &overflow) in events.iter().enumerate() {
        cpu::optim::loss_scale_update(&mut twin, overflow, interval, MAX_SCALE);
        let by_flag = overflow && step % 2 == 1;
        let g: Vec<f32> = if overflow && !by_flag {
            grads.to_vec()
        } else {
            grads.iter().map(|v| v.min(4.0)).collect()
        };
        let unscaled: Vec<f32> = g
            .iter()
            .map(|v| if twin[4] == 0.0 { 0.0 } else { v * twin[4] })
            .collect();
        if let Some(out) = run(gpu, &mut j, |rec| {
            if by_flag {
                gpu.write(&ls.overflow, &[f32::from_bits(1)]);
            }
            let t = gpu.upload(&g, &[g.len()]);
            ls.unscale(rec, &t);
            // The next step's upstream gradient, scaled by the scale just decided.
            let up = gpu.upload(&grads[..2], &[2]);
            ls.scale(rec, &up);
            vec![t, ls.state.clone(), ls.overflow.clone(), up]
        }) {
            j.check(&format!("state after step {step}"), &out[1], &twin, 0.0);
            j.check(&format!("unscaled, step {step}"), &out[0], &unscaled, 0.0);
            j.check(&format!("flag cleared, step {step}"), &out[2], &[0.0], 0.0);
            let scaled: Vec<f32> = grads[..2].iter().map(|v| v * twin[0]).collect();
            j.check(&format!("scaled, after step {step}"), &out[3], &scaled, 0.0);
        }
    }
    // AdamW with the gate: a skipped step changes nothing, a finite one is the plain step.
    let n = 40;
    let p0 = random(n, 190, -1.0, 1.0);
    let g = random(n, 191, -1.0, 1.0);
    let seg = [Segment {
        start: 0,
        end: n,
        lr_scale: 1.0,
        wd_scale: 1.0,
    }];
    let h = AdamWStep {
        lr: 1e-2,
        weight_decay: 0.05,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        t: 1,
    };
    let (mut p1, mut m1, mut v1) = (p0.clone(), vec![0.0; n], vec![0.0; n]);
    cpu::optim::adamw_step(&mut p1, &mut m1, &mut v1, &g, &seg, h);
    for (skip, want) in [(1.0, &p0), (0.0, &p1)] {
        if let Some(out) = run(gpu, &mut j, |rec| {
            let (p, m, v) = (gpu.upload(&p0, &[n]), rec.zeros(&[n]), rec.zeros(&[n]));
            let gate = gpu.upload(&[0.0, 0.0, 0.0, skip, 0.0], &[5]);
            let segs = Segments::new(gpu, &seg);
            let tg = gpu.upload(&g, &[n]);
            kernels::adamw::adamw_step_gated(rec, &p, &m, &v, &tg, &segs, h, Some((&gate, SKIP)));
            vec![p]
        }) {
            j.check(&format!("AdamW, skip flag {skip}"), &out[0], want, 1e-6);
        }
    }
    j.finish()
}
