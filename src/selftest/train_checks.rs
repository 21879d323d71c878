//! Kernel checks of the training ops: cross-entropy, elementwise, reductions, AdamW, EMA,
//! the DINO/iBOT/KoLeo and Gram losses, and grids past 65,535 workgroups.

use super::checks::{random, run, tol, LAYOUTS};
use super::{CaseResult, Judge};
use crate::cpu;
use crate::gpu::Gpu;
use crate::kernels;
use crate::kernels::adamw::{AdamWStep, Segment, Segments};
use crate::kernels::attention::{AttnDims, OutLayout, QkvLayout};
use crate::kernels::cross_entropy::CrossEntropy;
use crate::kernels::matmul::MatmulDims;
use crate::kernels::reduce::Reduce;

pub(super) fn cross_entropy(gpu: &Gpu) -> CaseResult {
    let mut j = Judge::new("kernel.cross_entropy");
    // Rows of up to 32 columns get one invocation each (300 rows: two groups); 65 columns get 32
    // lanes, 8 rows to a workgroup, the last one part empty.
    let cases = [
        (7usize, 1usize),
        (300, 10),
        (300, 32),
        (7, 65),
        (300, 65),
        (7, 261),
    ];
    for (&(rows, cols), (cpu_layout, kind)) in cases.iter().flat_map(|c| LAYOUTS.map(|l| (c, l))) {
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
            rec.set_cpu_layouts(cpu_layout);
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
                &format!("rows={rows} cols={cols} {kind} loss"),
                &out[0],
                &per_row,
                tol(&per_row, 2e-6),
            );
            j.check(
                &format!("rows={rows} cols={cols} {kind} grad"),
                &out[1],
                &grad,
                tol(&grad, 2e-6),
            );
        }
    }
    j.finish()
}

/// 8-bit crops through the normalisation table on the GPU, exactly as the loader's CPU twin
/// normalises them; element counts that are not whole words, and planes that split words.
pub(super) fn lookup_bytes(gpu: &Gpu) -> CaseResult {
    let mut j = Judge::new("kernel.lookup_bytes");
    let table = crate::data::augment::normalization_table();
    for &(rows, side) in &[(2usize, 7usize), (5, 28), (1, 1)] {
        let plane = side * side;
        let bytes: Vec<u8> = random(rows * 3 * plane, 131, 0.0, 256.0)
            .iter()
            .map(|&v| v.clamp(0.0, 255.0) as u8)
            .collect();
        let want = crate::data::augment::normalize_bytes(&bytes, plane);
        if let Some(out) = run(gpu, &mut j, |rec| {
            let (tt, tb) = (
                gpu.upload(&table, &[3, 256]),
                gpu.upload_bytes_packed(&bytes),
            );
            let out = gpu.empty(&[rows, 3, side, side]);
            kernels::gather::lookup_bytes(rec, &out, &tt, &tb, plane);
            vec![out]
        }) {
            j.check(&format!("{rows}x3x{side}x{side}"), &out[0], &want, 0.0);
        }
    }
    j.finish()
}

pub(super) fn elementwise(gpu: &Gpu) -> CaseResult {
    let mut j = Judge::new("kernel.elementwise");
    // Widths that are multiples of 4 take the vec4 kernels.
    elementwise_case(gpu, &mut j, 197, 65);
    elementwise_case(gpu, &mut j, 7, 64);
    // Several chunks of 256 rows and a last group of columns only partly used.
    elementwise_case(gpu, &mut j, 600, 132);
    j.finish()
}

fn elementwise_case(gpu: &Gpu, j: &mut Judge, rows: usize, cols: usize) {
    // Both layouts: on GPUs mul's backward is one pass (vec4 rows only).
    for cpu_layouts in [true, false] {
        elementwise_layout(gpu, j, rows, cols, cpu_layouts);
    }
}

fn elementwise_layout(gpu: &Gpu, j: &mut Judge, rows: usize, cols: usize, cpu_layouts: bool) {
    let tag = format!("{rows}x{cols} cpu_layouts={cpu_layouts}");
    let a = random(rows * cols, 101, -2.0, 2.0);
    let b = random(cols, 102, -2.0, 2.0);
    let dy = random(rows * cols, 103, -1.0, 1.0);
    let add = cpu::elementwise::add(&a, &b);
    let mul = cpu::elementwise::mul(&a, &b);
    let (da, db) = cpu::elementwise::mul_backward(&dy, &a, &b);
    // mul's backward adds its db into what the buffer holds (LayerScale's γ gradient).
    let db0 = random(cols, 104, -1.0, 1.0);
    let db_acc: Vec<f32> = db.iter().zip(&db0).map(|(x, y)| x + y).collect();
    let dbias = cpu::elementwise::sum_rows(&dy, rows, cols);
    let axpby: Vec<f32> = a.iter().zip(&dy).map(|(x, y)| 0.5 * x + 2.0 * y).collect();
    if let Some(out) = run(gpu, j, |rec| {
        rec.set_cpu_layouts(cpu_layouts);
        let (ta, tb, tdy) = (
            gpu.upload(&a, &[rows, cols]),
            gpu.upload(&b, &[cols]),
            gpu.upload(&dy, &[rows, cols]),
        );
        let (tadd, tmul) = (gpu.empty(&[rows, cols]), gpu.empty(&[rows, cols]));
        kernels::elementwise::add_forward(rec, &tadd, &ta, &tb, false);
        kernels::elementwise::mul_forward(rec, &tmul, &ta, &tb, false);
        let (gda, gdb) = (gpu.empty(&[rows, cols]), gpu.upload(&db0, &[cols]));
        kernels::elementwise::mul_backward(rec, &gda, &gdb, &tdy, (&ta, &tb), (false, true));
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
        j.check(&format!("{tag} add"), &out[0], &add, 1e-6);
        j.check(&format!("{tag} mul"), &out[1], &mul, 1e-6);
        j.check(&format!("{tag} mul da"), &out[2], &da, 1e-6);
        j.check(
            &format!("{tag} mul db (+=)"),
            &out[3],
            &db_acc,
            tol(&db_acc, 1e-6),
        );
        j.check(&format!("{tag} add da"), &out[4], &dy, 0.0);
        j.check(&format!("{tag} add db"), &out[5], &dbias, tol(&dbias, 1e-6));
        j.check(&format!("{tag} axpby"), &out[6], &axpby, 1e-6);
        let add_mul: Vec<f32> = (0..rows * cols)
            .map(|i| a[i] + dy[i] * b[i % cols])
            .collect();
        j.check(&format!("{tag} add_mul"), &out[7], &add_mul, 1e-6);
        let scaled: Vec<f32> = (0..rows * cols)
            .map(|i| a[i] * ((i / cols) % 3) as f32 * 0.5)
            .collect();
        j.check(&format!("{tag} scale_rows"), &out[8], &scaled, 1e-6);
    }
}

pub(super) fn reduce(gpu: &Gpu) -> CaseResult {
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
    // Both layouts: the GPUs' vec4 kernel takes the shapes whose columns come in fours (ending
    // inside a workgroup's 64, rows ending inside a lane's four loads, two passes), the one
    // thread a column kernel the rest. The second run of each shape starts one row into the
    // input and adds half its sum to what `out` holds.
    let shapes = [
        (1usize, 1usize),
        (5000, 65),
        (300_000, 3),
        (1, 8),
        (63, 64),
        (3000, 388),
        (40_000, 4),
    ];
    for (rows, cols) in shapes {
        let x = random((rows + 1) * cols, 120, -1.0, 1.0);
        let want = cpu::elementwise::sum_rows(&x[..rows * cols], rows, cols);
        let later = cpu::elementwise::sum_rows(&x[cols..], rows, cols);
        let both: Vec<f32> = want.iter().zip(&later).map(|(a, b)| a + 0.5 * b).collect();
        for cpu_layouts in [true, false] {
            if let Some(out) = run(gpu, &mut j, |rec| {
                rec.set_cpu_layouts(cpu_layouts);
                let tx = gpu.upload(&x, &[rows + 1, cols]);
                let (o, o2) = (gpu.empty(&[cols]), gpu.empty(&[cols]));
                kernels::reduce::sum_rows_at(rec, &o, &tx, 0, rows, cols, 1.0, false);
                kernels::reduce::sum_rows_at(rec, &o2, &tx, 0, rows, cols, 1.0, false);
                kernels::reduce::sum_rows_at(rec, &o2, &tx, cols, rows, cols, 0.5, true);
                vec![o, o2]
            }) {
                let tag = format!("sum_rows {rows}x{cols} cpu_layouts={cpu_layouts}");
                let t = (rows as f32).sqrt() * 1e-6;
                j.check(&tag, &out[0], &want, tol(&want, t));
                j.check(&format!("{tag} offset, +="), &out[1], &both, tol(&both, t));
            }
        }
    }
    clip_case(gpu, &mut j);
    gather_case(gpu, &mut j);
    j.finish()
}

/// Clipping to a norm (torch's clip_grad_norm_: x · min(1, max / (‖x‖ + 1e-6))), over a
/// vector longer than one workgroup's.
fn clip_case(gpu: &Gpu, j: &mut Judge) {
    let x = random(3001, 125, -1.0, 1.0);
    let ss = cpu::elementwise::sum_squares(&x);
    let norm = ss.sqrt();
    for max in [norm * 0.25, norm * 4.0] {
        let factor = (max / (norm + 1e-6)).min(1.0);
        let want: Vec<f32> = x.iter().map(|v| v * factor).collect();
        if let Some(out) = run(gpu, j, |rec| {
            let t = gpu.upload(&x, &[x.len()]);
            let s = kernels::reduce::clip_grad_norm(rec, &t, max);
            vec![t, s]
        }) {
            let tag = format!("clip to {:.2} of the norm", max / norm);
            j.check(
                &format!("{tag}: sum of squares"),
                &out[1],
                &[ss],
                tol(&[ss], 1e-5),
            );
            j.check(&tag, &out[0], &want, tol(&want, 1e-5));
        }
    }
}

/// Row gather and its backward, the scatter-add, against the CPU: rows picked out of order,
/// a row width that is not a multiple of the workgroup's.
fn gather_case(gpu: &Gpu, j: &mut Judge) {
    let (rows, cols) = (37, 67);
    let src = random(rows * cols, 126, -1.0, 1.0);
    let idx: Vec<usize> = vec![36, 0, 5, 17, 4, 30, 1];
    let idx_f: Vec<f32> = idx.iter().map(|&r| r as f32).collect();
    let want = cpu::losses::gather_rows(&src, &idx, cols);
    let dst0 = random(rows * cols, 127, -1.0, 1.0);
    let add = random(idx.len() * cols, 128, -1.0, 1.0);
    let mut scattered = dst0.clone();
    for (i, &r) in idx.iter().enumerate() {
        for c in 0..cols {
            scattered[r * cols + c] += add[i * cols + c];
        }
    }
    if let Some(out) = run(gpu, j, |rec| {
        let s = gpu.upload(&src, &[rows, cols]);
        let ti = gpu.upload(&idx_f, &[idx.len()]);
        let o = gpu.empty(&[idx.len(), cols]);
        kernels::gather::gather_rows(rec, &o, &s, &ti, cols);
        let d = gpu.upload(&dst0, &[rows, cols]);
        let a = gpu.upload(&add, &[idx.len(), cols]);
        kernels::gather::scatter_add_rows(rec, &d, &a, &ti, cols);
        vec![o, d]
    }) {
        j.check("gather_rows", &out[0], &want, 0.0);
        j.check("scatter_add_rows", &out[1], &scattered, 0.0);
    }
}

pub(super) fn adamw(gpu: &Gpu) -> CaseResult {
    let mut j = Judge::new("kernel.adamw");
    // 1,000 takes the vec4 kernel (with segment ends inside a vec4), 999 the scalar one.
    adamw_case(gpu, &mut j, 1000);
    adamw_case(gpu, &mut j, 999);
    j.finish()
}

fn adamw_case(gpu: &Gpu, j: &mut Judge, n: usize) {
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
            start: 302,
            end: 303,
            lr_scale: 0.1,
            wd_scale: 1.0,
        },
        Segment {
            start: 400,
            end: n,
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
    if let Some(out) = run(gpu, j, |rec| {
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
        j.check(&format!("n={n} param"), &out[0], &p, 1e-6);
        j.check(&format!("n={n} m"), &out[1], &m, 1e-6);
        j.check(&format!("n={n} v"), &out[2], &v, 1e-6);
    }
}

pub(super) fn ema(gpu: &Gpu) -> CaseResult {
    let mut j = Judge::new("kernel.ema");
    // 64·257 takes the vec4 kernel.
    for n in [65 * 257, 64 * 257] {
        ema_case(gpu, &mut j, n);
    }
    j.finish()
}

fn ema_case(gpu: &Gpu, j: &mut Judge, n: usize) {
    let mut t = random(n, 141, -1.0, 1.0);
    let s = random(n, 142, -1.0, 1.0);
    let t0 = t.clone();
    cpu::optim::ema_update(&mut t, &s, 0.992);
    if let Some(out) = run(gpu, j, |rec| {
        let (tt, ts) = (gpu.upload(&t0, &[n]), gpu.upload(&s, &[n]));
        kernels::ema::ema_update(rec, &tt, &ts, 0.992);
        vec![tt]
    }) {
        j.check(&format!("n={n} teacher"), &out[0], &t, 1e-6);
    }
}

/// Dispatches of more than 65,535 workgroups in one dimension, for the kernels whose grids grow
/// with the batch (rows of softmax, layer norm and cross-entropy, attention heads, matmul batches).
pub(super) fn large_grids(gpu: &Gpu) -> CaseResult {
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

pub(super) fn gram(gpu: &Gpu) -> CaseResult {
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

pub(super) fn losses(gpu: &Gpu) -> CaseResult {
    use crate::kernels::losses::DinoPairs;
    let mut j = Judge::new("kernel.losses");
    // b = 19 gives KoLeo more candidates than one pass of its row segments scores.
    for (case, layout) in [
        (1usize, 7usize, 0usize, false),
        (7, 261, 3, false),
        (4, 65, 2, true),
        (19, 33, 0, false),
    ]
    .iter()
    .flat_map(|c| LAYOUTS.map(|l| (c, l)))
    {
        let ((b, k, nl, big), (cpu_layout, kind)) = (*case, layout);
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
            local_weight: 0.6,
        };
        let scale = pairs.default_scale();
        let tsm = cpu::losses::teacher_softmax(&tl, &center, 0.04);
        let c_after = cpu::losses::center_update(&center, &tl, 0.9);
        let sk = cpu::losses::sinkhorn(&tl, k, 0.04, 3);
        let (loss, grad) = cpu::losses::dino_loss(&s, &tsm, k, b, ng, ng, 0.1, scale, 0.5, 0.6);
        let x = random(ng * b.max(2) * 65, 174, -1.0, 1.0);
        let kb = b.max(2);
        let (kl, kg, knn) = cpu::losses::koleo(&x, 65, kb, 1.0 / kb as f32, 0.5);
        if let Some(out) = run(gpu, &mut j, |rec| {
            rec.set_cpu_layouts(cpu_layout);
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
            vec![probs, tc, tsk, tl_, tg, kloss, kgrad, saved.neighbours]
        }) {
            let tag = format!("B={b} K={k} locals={nl} amp={amp} {kind}");
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
            let nn: Vec<f32> = out[7].iter().step_by(3).copied().collect();
            let want_nn: Vec<f32> = knn.iter().map(|&i| i as f32).collect();
            j.check(&format!("{tag} koleo neighbours"), &nn, &want_nn, 0.0);
        }
    }
    j.finish()
}

/// The DINO head's two norms: row L2 normalisation and weight normalisation, forward and
/// backward, in both layouts; rows short and long, and a zero row (the clamped branch).
pub(super) fn normalize(gpu: &Gpu) -> CaseResult {
    let mut j = Judge::new("kernel.normalize");
    let eps = 1e-6;
    for (&(rows, cols), (cpu_layout, kind)) in [(3usize, 7usize), (37, 64), (5, 300)]
        .iter()
        .flat_map(|c| LAYOUTS.map(|l| (c, l)))
    {
        let mut x = random(rows * cols, 181, -1.0, 1.0);
        x[..cols].fill(0.0);
        let dy = random(rows * cols, 182, -1.0, 1.0);
        let v = random(rows * cols, 183, -1.0, 1.0);
        let g = random(rows, 184, 0.5, 2.0);
        let y = cpu::normalize::l2norm_forward(&x, cols, eps);
        let dx = cpu::normalize::l2norm_backward(&dy, &x, cols, eps);
        let w = cpu::normalize::weightnorm_forward(&v, &g);
        let (dv, dg) = cpu::normalize::weightnorm_backward(&dy, &v, &g);
        if let Some(out) = run(gpu, &mut j, |rec| {
            rec.set_cpu_layouts(cpu_layout);
            let (tx, tdy, tv, tg) = (
                gpu.upload(&x, &[rows, cols]),
                gpu.upload(&dy, &[rows, cols]),
                gpu.upload(&v, &[rows, cols]),
                gpu.upload(&g, &[rows]),
            );
            let (ty, tdx, tw) = (
                gpu.empty(&[rows, cols]),
                gpu.empty(&[rows, cols]),
                gpu.empty(&[rows, cols]),
            );
            kernels::normalize::l2norm_forward(rec, &ty, &tx, cols, eps);
            kernels::normalize::l2norm_backward(rec, &tdx, &tdy, &tx, cols, eps, false);
            kernels::normalize::weightnorm_forward(rec, &tw, &tv, &tg);
            let (tdv, tdg) = (rec.zeros(&[rows, cols]), rec.zeros(&[rows]));
            kernels::normalize::weightnorm_backward(rec, &tdv, &tdg, &tdy, &tv, &tg);
            vec![ty, tdx, tw, tdv, tdg]
        }) {
            let tag = format!("{rows}x{cols} {kind}");
            j.check(&format!("{tag} l2 y"), &out[0], &y, tol(&y, 1e-6));
            j.check(&format!("{tag} l2 dx"), &out[1], &dx, tol(&dx, 2e-6));
            j.check(&format!("{tag} weight"), &out[2], &w, tol(&w, 1e-6));
            j.check(&format!("{tag} dv"), &out[3], &dv, tol(&dv, 2e-6));
            j.check(&format!("{tag} dg"), &out[4], &dg, tol(&dg, 2e-6));
        }
    }
    j.finish()
}
