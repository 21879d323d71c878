//! The attention kernels against the CPU twin: every layout and forced variant, also in the
//! model's fused qkv layout.

use super::checks::{random, run, tol, LAYOUTS};
use super::{CaseResult, Judge};
use crate::cpu;
use crate::gpu::{Gpu, Recorder};
use crate::kernels;
use crate::kernels::attention::{AttnDims, OutLayout, QkvLayout};
use crate::kernels::attention_plan;

/// The attention runs of the checks: each layout's default kernels, then the variants those
/// leave out, forced (one key at a time without broadcast, the GPU kernels with their loops as
/// written, the pairs where there are subgroups): (CPU layouts, forced forward and backward,
/// label).
type AttnVariant = (
    bool,
    Option<(attention_plan::Forward, attention_plan::Backward)>,
    String,
);

fn attention_variants(gpu: &Gpu) -> Vec<AttnVariant> {
    use attention_plan::{Backward, Forward};
    let mut v: Vec<AttnVariant> = LAYOUTS
        .iter()
        .map(|&(cpu, kind)| (cpu, None, kind.to_string()))
        .collect();
    // With the layouts' defaults, every variant that runs here runs once.
    let mut forced = vec![(Forward::One, Backward::Single)];
    if gpu.subgroups() {
        forced.push((Forward::Four, Backward::Pairs));
        forced.push((Forward::Pairs, Backward::SingleUnrolled));
        forced.push((Forward::PairsUnrolled, Backward::Single));
        forced.push((Forward::Quads, Backward::Quads));
        forced.push((Forward::FourUnrolled, Backward::PairsShared));
        forced.push((Forward::Crossed, Backward::PairsUnrolled));
    } else {
        forced.push((Forward::Four, Backward::SingleUnrolled));
    }
    forced.push((Forward::CrossedShared, Backward::PairsShared));
    // Where workgroup memory holds its tiles (`runs`; elsewhere the default would run again).
    let rec = Recorder::new(gpu);
    if Forward::Tiled.runs(&rec, &AttnDims::new(1, 1, 1, 64), crate::gpu::DType::F32) {
        forced.push((Forward::Tiled, Backward::Tiled));
    }
    drop(rec);
    for (f, b) in forced {
        let label = format!("forward {} backward {}", f.name(), b.name());
        v.push((false, Some((f, b)), label));
    }
    v
}

pub(super) fn attention(gpu: &Gpu) -> CaseResult {
    let mut j = Judge::new("kernel.attention");
    for &(b, h, n, d) in &[
        (1, 1, 1, 1),
        (2, 3, 7, 16),
        (1, 2, 16, 8),
        (2, 2, 17, 16),
        (1, 1, 32, 64),
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
        for (cpu, forced, kind) in attention_variants(gpu) {
            // The tiled kernels at two heads: 64 (the models') and 33 (a partial quad), over
            // sequences of two and four key blocks with short tails. Each head is a pipeline of
            // three large written-out kernels, which a CPU driver takes seconds to compile; the
            // fused-layout case adds a head of 16.
            let tiled = forced.is_some_and(|(f, _)| f == attention_plan::Forward::Tiled);
            if tiled && d != 64 && d != 33 {
                continue;
            }
            if let Some(out) = run(gpu, &mut j, |rec| {
                rec.set_cpu_layouts(cpu);
                if let Some((f, bw)) = forced {
                    rec.force(attention_plan::FORWARD, Some(f.name()));
                    rec.force(attention_plan::BACKWARD, Some(bw.name()));
                }
                let (tq, tk, tv, tdo) = (
                    gpu.upload(&q, &s),
                    gpu.upload(&k, &s),
                    gpu.upload(&v, &s),
                    gpu.upload(&dout, &s),
                );
                let layout = QkvLayout::bhnd(h, n, d);
                let ol = OutLayout::bhnd(h, n, d);
                let to = gpu.empty(&s);
                let lse = kernels::attention::attention_forward(
                    rec, &to, &tq, &tk, &tv, dims, layout, ol,
                );
                let probs = gpu.empty(&[b, h, n, n]);
                kernels::attention::attention_probs(rec, &probs, &tq, &tk, &lse, dims, layout);
                let (gq, gk, gv) = (gpu.empty(&s), gpu.empty(&s), gpu.empty(&s));
                kernels::attention::attention_backward(
                    rec, &gq, &gk, &gv, &tdo, &tq, &tk, &tv, &to, &lse, dims, layout, ol,
                );
                vec![to, probs, lse, gq, gk, gv]
            }) {
                let tag = format!("{b}x{h}x{n}x{d} {kind}");
                j.check(&format!("{tag} out"), &out[0], &o, tol(&o, 1e-5));
                j.check(&format!("{tag} probs"), &out[1], &p, 1e-5);
                j.check(&format!("{tag} lse"), &out[2], &l, tol(&l, 1e-5));
                j.check(&format!("{tag} dq"), &out[3], &dq, tol(&dq, 2e-5));
                j.check(&format!("{tag} dk"), &out[4], &dk, tol(&dk, 2e-5));
                j.check(&format!("{tag} dv"), &out[5], &dv, tol(&dv, 2e-5));
            }
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

pub(super) fn attention_fused(gpu: &Gpu) -> CaseResult {
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
    let (o, p, _) = cpu::attention::attention_forward(&q, &k, &v, b * h, n, n, d, dims.scale);
    let (dq, dk, dv) =
        cpu::attention::attention_backward(&dout, &q, &k, &v, b * h, n, n, d, dims.scale);
    // The probabilities of the first two queries alone (attention maps take the first, CLS).
    let first_rows = 2;
    let want_rows: Vec<f32> = p
        .chunks_exact(n * n)
        .flat_map(|head| head[..first_rows * n].to_vec())
        .collect();
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
    // Each layout's defaults, and the tiled kernels (the model's layout is this one) where
    // they run.
    let mut runs: Vec<(bool, Option<&'static str>, String)> = LAYOUTS
        .iter()
        .map(|&(cpu, kind)| (cpu, None, kind.to_string()))
        .collect();
    let tiled = attention_plan::Forward::Tiled;
    if tiled.runs(&Recorder::new(gpu), &dims, crate::gpu::DType::F32) {
        runs.push((false, Some(tiled.name()), tiled.name().to_string()));
    }
    for (cpu, forced, kind) in runs {
        if let Some(out) = run(gpu, &mut j, |rec| {
            rec.set_cpu_layouts(cpu);
            rec.force(attention_plan::FORWARD, forced);
            rec.force(attention_plan::BACKWARD, forced);
            let tqkv = gpu.upload(&qkv, &[b, n, 3 * h * d]);
            let tdo = gpu.upload(&dout_bnhd, &[b, n, h * d]);
            let layout = QkvLayout::fused(h, n, d);
            let ol = OutLayout::bnhd(h, n, d);
            let to = gpu.empty(&[b, n, h * d]);
            let lse = kernels::attention::attention_forward(
                rec, &to, &tqkv, &tqkv, &tqkv, dims, layout, ol,
            );
            let dqkv = gpu.empty(&[b, n, 3 * h * d]);
            kernels::attention::attention_backward(
                rec, &dqkv, &dqkv, &dqkv, &tdo, &tqkv, &tqkv, &tqkv, &to, &lse, dims, layout, ol,
            );
            let rows = gpu.empty(&[b, h, first_rows, n]);
            kernels::attention::attention_probs_rows(
                rec, &rows, &tqkv, &tqkv, &lse, dims, layout, first_rows,
            );
            vec![to, dqkv, rows]
        }) {
            j.check(
                &format!("out [B,N,H,d] {kind}"),
                &out[0],
                &want_o,
                tol(&want_o, 1e-5),
            );
            j.check(
                &format!("dqkv [B,N,3,H,d] {kind}"),
                &out[1],
                &want_dqkv,
                tol(&want_dqkv, 2e-5),
            );
            j.check(
                &format!("probs of the first {first_rows} queries {kind}"),
                &out[2],
                &want_rows,
                1e-5,
            );
        }
    }
    j.finish()
}
