//! Golden loss cases (`dino`, `ibot`, `koleo` in losses.safetensors): the official dinov2 loss
//! code's values, centers, Sinkhorn targets and student gradients. Sizes come from the tensors;
//! temperatures, momentum and iterations from the manifest's settings.

use super::ops::{bad, on_gpu, Exec, OpKind, Outputs};
use crate::cpu;
use crate::fixtures::{FixtureError, Manifest, TensorFile};
use crate::kernels;
use crate::kernels::cross_entropy::CrossEntropy;
use crate::kernels::losses::DinoPairs;

/// Rows of [n_crops·B, K] with crop 0 and crop 1 swapped: the loss kernel pairs each global
/// student crop with the *other* teacher crop, while the fixture pairs them as stored.
fn swap_crops(x: &[f32], batch: usize, k: usize) -> Vec<f32> {
    let mut y = x.to_vec();
    let n = batch * k;
    y[..n].copy_from_slice(&x[n..2 * n]);
    y[n..2 * n].copy_from_slice(&x[..n]);
    y
}

/// Runs one loss case on the GPU or the CPU twins.
pub(crate) fn compute(
    exec: &Exec,
    file: &TensorFile,
    manifest: &Manifest,
    case: &str,
    kind: OpKind,
) -> Result<Outputs, FixtureError> {
    match kind {
        OpKind::Dino => dino_case(exec, file, manifest, case),
        OpKind::Ibot => ibot_case(exec, file, manifest, case),
        OpKind::Koleo => koleo_case(exec, file, manifest, case),
        _ => Err(bad(file, format!("{case}: not a loss case"))),
    }
}

/// dino: the centered and Sinkhorn-Knopp targets, the global, local and total losses, the
/// center update and the student gradients.
fn dino_case(
    exec: &Exec,
    file: &TensorFile,
    manifest: &Manifest,
    case: &str,
) -> Result<Outputs, FixtureError> {
    let t = |s: &str| file.get(&format!("{case}.{s}"));
    let ls = &manifest.losses;
    let (tl, sg, sl, c0) = (
        t("teacher_logits")?,
        t("student_global_logits")?,
        t("student_local_logits")?,
        t("center_before")?,
    );
    let k = c0.data.len();
    let ng = ls.n_global;
    if ng != 2
        || k == 0
        || tl.data.len() % (ng * k) != 0
        || sg.data.len() != tl.data.len()
        || sl.data.len() % k != 0
    {
        return Err(bad(
            file,
            format!(
                "{case}: teacher {:?}, student {:?} / {:?}, center {:?} do not fit",
                tl.shape, sg.shape, sl.shape, c0.shape
            ),
        ));
    }
    let b = tl.data.len() / (ng * k);
    let nl = sl.data.len() / (b * k);
    let tl_sw = swap_crops(&tl.data, b, k);
    let mut all_student = sg.data.clone();
    all_student.extend_from_slice(&sl.data);
    let global = DinoPairs {
        batch: b,
        n_student: ng,
        n_global: ng,
        n_teacher: ng,
        temp: ls.student_temp,
        local_weight: 1.0,
    };
    let local = DinoPairs {
        batch: b,
        n_student: nl,
        n_global: 0,
        n_teacher: ng,
        temp: ls.student_temp,
        local_weight: 1.0,
    };
    let total = DinoPairs {
        batch: b,
        n_student: ng + nl,
        n_global: ng,
        n_teacher: ng,
        temp: ls.student_temp,
        local_weight: 1.0,
    };
    let (sc_g, sc_l, sc_t) = (
        global.default_scale(),
        1.0 / b as f32,
        total.default_scale(),
    );
    match exec {
        Exec::Cpu => {
            let tsm = cpu::losses::teacher_softmax(&tl_sw, &c0.data, ls.teacher_temp);
            let sk = cpu::losses::sinkhorn(&tl_sw, k, ls.teacher_temp, ls.sk_iters);
            let (lg, gg) = cpu::losses::dino_loss(
                &sg.data,
                &tsm,
                k,
                b,
                ng,
                ng,
                ls.student_temp,
                sc_g,
                1.0,
                1.0,
            );
            let (ll, gl) = cpu::losses::dino_loss(
                &sl.data,
                &tsm,
                k,
                b,
                0,
                ng,
                ls.student_temp,
                sc_l,
                1.0,
                1.0,
            );
            let (lt, gt) = cpu::losses::dino_loss(
                &all_student,
                &tsm,
                k,
                b,
                ng,
                ng,
                ls.student_temp,
                sc_t,
                1.0,
                1.0,
            );
            let (lsk, gsk) = cpu::losses::dino_loss(
                &sg.data,
                &sk,
                k,
                b,
                ng,
                ng,
                ls.student_temp,
                sc_g,
                1.0,
                1.0,
            );
            let split = ng * b * k;
            Ok(vec![
                ("teacher_softmax_centered", swap_crops(&tsm, b, k)),
                (
                    "center_after",
                    cpu::losses::center_update(&c0.data, &tl.data, ls.center_momentum),
                ),
                ("loss_global", vec![lg]),
                ("grad_global", gg),
                ("loss_local", vec![ll]),
                ("grad_local", gl),
                ("loss_total_metaarch", vec![lt]),
                ("grad_total_metaarch_global", gt[..split].to_vec()),
                ("grad_total_metaarch_local", gt[split..].to_vec()),
                ("teacher_sinkhorn", swap_crops(&sk, b, k)),
                ("loss_sinkhorn", vec![lsk]),
                ("grad_sinkhorn", gsk),
            ])
        }
        Exec::Gpu(g) => {
            let outs = on_gpu(g, |rec| {
                let tt = g.upload(&tl_sw, &[ng * b, k]);
                let center = g.upload(&c0.data, &[k]);
                let one = g.upload(&[1.0], &[1]);
                let tsm = g.empty(&[ng * b, k]);
                kernels::losses::teacher_softmax(rec, &tsm, &tt, &center, ls.teacher_temp);
                kernels::losses::center_update(rec, &center, &tt, ls.center_momentum);
                let sk = g.empty(&[ng * b, k]);
                kernels::losses::sinkhorn(rec, &sk, &tt, k, ls.teacher_temp, ls.sk_iters);
                let tsg = g.upload(&sg.data, &[ng * b, k]);
                let tsl = g.upload(&sl.data, &[nl * b, k]);
                let tall = g.upload(&all_student, &[(ng + nl) * b, k]);
                let mut run = |s: &crate::gpu::Tensor,
                               targets: &crate::gpu::Tensor,
                               pairs: DinoPairs,
                               scale: f32| {
                    let loss = g.empty(&[1]);
                    let _ =
                        kernels::losses::dino_loss_forward(rec, &loss, s, targets, k, pairs, scale);
                    let grad = g.empty(s.shape());
                    kernels::losses::dino_loss_backward(
                        rec, &grad, &one, s, targets, k, pairs, scale, false,
                    );
                    (loss, grad)
                };
                let (lg, gg) = run(&tsg, &tsm, global, sc_g);
                let (ll, gl) = run(&tsl, &tsm, local, sc_l);
                let (lt, gt) = run(&tall, &tsm, total, sc_t);
                let (lsk, gsk) = run(&tsg, &sk, global, sc_g);
                vec![
                    ("teacher_softmax_centered", tsm),
                    ("center_after", center),
                    ("loss_global", lg),
                    ("grad_global", gg),
                    ("loss_local", ll),
                    ("grad_local", gl),
                    ("loss_total_metaarch", lt),
                    ("grad_total_metaarch_global", gt.clone()),
                    ("grad_total_metaarch_local", gt),
                    ("teacher_sinkhorn", sk),
                    ("loss_sinkhorn", lsk),
                    ("grad_sinkhorn", gsk),
                ]
            })?;
            let split = ng * b * k;
            Ok(outs
                .into_iter()
                .map(|(n, v)| match n {
                    "teacher_softmax_centered" | "teacher_sinkhorn" => (n, swap_crops(&v, b, k)),
                    "grad_total_metaarch_global" => (n, v[..split].to_vec()),
                    "grad_total_metaarch_local" => (n, v[split..].to_vec()),
                    _ => (n, v),
                })
                .collect())
        }
    }
}

/// ibot: the masked-patch loss and its student gradient, with centering and with Sinkhorn-Knopp.
fn ibot_case(
    exec: &Exec,
    file: &TensorFile,
    manifest: &Manifest,
    case: &str,
) -> Result<Outputs, FixtureError> {
    let t = |s: &str| file.get(&format!("{case}.{s}"));
    let ls = &manifest.losses;
    let (masks, w, s, tl, c0) = (
        t("masks")?,
        t("masks_weight")?,
        t("student_patch_logits_masked")?,
        t("teacher_patch_logits_masked")?,
        t("center_before")?,
    );
    let k = c0.data.len();
    let m = w.data.len();
    let n_crops = masks.shape.first().copied().unwrap_or(0);
    if k == 0 || m == 0 || s.data.len() != m * k || tl.data.len() != m * k || n_crops == 0 {
        return Err(bad(
            file,
            format!(
                "{case}: {m} masked patches, logits {:?} / {:?}, center {:?} do not fit",
                s.shape, tl.shape, c0.shape
            ),
        ));
    }
    let scale = 1.0 / n_crops as f32;
    let (st, tt) = (ls.student_temp, ls.teacher_temp);
    match exec {
        Exec::Cpu => {
            let tsm = cpu::losses::teacher_softmax(&tl.data, &c0.data, tt);
            let sk = cpu::losses::sinkhorn(&tl.data, k, tt, ls.sk_iters);
            let loss_of = |targets: &[f32]| {
                let per_row = cpu::cross_entropy::cross_entropy_forward(&s.data, targets, k, st);
                let l: f64 = per_row
                    .iter()
                    .zip(&w.data)
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum();
                let g = cpu::cross_entropy::cross_entropy_backward(
                    1.0,
                    &s.data,
                    targets,
                    k,
                    st,
                    scale,
                    Some(&w.data),
                );
                ((l * scale as f64) as f32, g)
            };
            let (l, gr) = loss_of(&tsm);
            let (lsk, gsk) = loss_of(&sk);
            Ok(vec![
                ("teacher_softmax_centered", tsm),
                (
                    "center_after",
                    cpu::losses::center_update(&c0.data, &tl.data, ls.center_momentum),
                ),
                ("loss", vec![l]),
                ("grad", gr),
                ("teacher_sinkhorn", sk),
                ("loss_sinkhorn", vec![lsk]),
                ("grad_sinkhorn", gsk),
            ])
        }
        Exec::Gpu(g) => on_gpu(g, |rec| {
            let ts = g.upload(&s.data, &[m, k]);
            let ttl = g.upload(&tl.data, &[m, k]);
            let center = g.upload(&c0.data, &[k]);
            let tw = g.upload(&w.data, &[m]);
            let one = g.upload(&[1.0], &[1]);
            let tsm = g.empty(&[m, k]);
            kernels::losses::teacher_softmax(rec, &tsm, &ttl, &center, tt);
            kernels::losses::center_update(rec, &center, &ttl, ls.center_momentum);
            let sk = g.empty(&[m, k]);
            kernels::losses::sinkhorn(rec, &sk, &ttl, k, tt, ls.sk_iters);
            let opt = CrossEntropy {
                temperature: st,
                scale,
                row_weight: Some(&tw),
            };
            let mut run = |targets: &crate::gpu::Tensor| {
                let per_row = g.empty(&[m]);
                kernels::cross_entropy::cross_entropy_forward(
                    rec, &per_row, None, &ts, targets, k, opt,
                );
                let weighted = g.empty(&[m]);
                kernels::elementwise::mul_forward(rec, &weighted, &per_row, &tw, false);
                let sum = g.empty(&[1]);
                kernels::reduce::reduce(rec, &sum, &weighted, kernels::reduce::Reduce::Sum, false);
                let loss = g.empty(&[1]);
                kernels::elementwise::axpby(rec, &loss, &sum, scale, 0.0);
                let grad = g.empty(&[m, k]);
                kernels::cross_entropy::cross_entropy_backward(
                    rec, &grad, &one, &ts, targets, k, opt, false,
                );
                (loss, grad)
            };
            let (l, gr) = run(&tsm);
            let (lsk, gsk) = run(&sk);
            vec![
                ("teacher_softmax_centered", tsm),
                ("center_after", center),
                ("loss", l),
                ("grad", gr),
                ("teacher_sinkhorn", sk),
                ("loss_sinkhorn", lsk),
                ("grad_sinkhorn", gsk),
            ]
        }),
    }
}

/// koleo: the nearest neighbours and the loss over one chunk and per crop, with its gradient.
fn koleo_case(
    exec: &Exec,
    file: &TensorFile,
    manifest: &Manifest,
    case: &str,
) -> Result<Outputs, FixtureError> {
    let t = |s: &str| file.get(&format!("{case}.{s}"));
    let ls = &manifest.losses;
    let x = t("x")?;
    let d = *x.shape.last().unwrap_or(&0);
    let n = x.data.len() / d.max(1);
    let ng = ls.n_global;
    if d == 0 || n < 2 || n % ng != 0 || n / ng < 2 {
        return Err(bad(
            file,
            format!("{case}: x {:?} is not [crops·B, D] with B ≥ 2", x.shape),
        ));
    }
    let chunk = n / ng;
    match exec {
        Exec::Cpu => {
            let (lf, gf, nn) = cpu::losses::koleo(&x.data, d, n, 1.0 / n as f32, 1.0);
            let (lc, gc, _) = cpu::losses::koleo(&x.data, d, chunk, 1.0 / chunk as f32, 1.0);
            Ok(vec![
                ("nn_index", nn.iter().map(|&i| i as f32).collect()),
                ("loss_full", vec![lf]),
                ("grad_full", gf),
                ("loss_chunked", vec![lc]),
                ("grad_chunked", gc),
            ])
        }
        Exec::Gpu(g) => {
            let outs = on_gpu(g, |rec| {
                let tx = g.upload(&x.data, &[n, d]);
                let one = g.upload(&[1.0], &[1]);
                let mut run = |batch: usize| {
                    let loss = g.empty(&[1]);
                    let saved = kernels::losses::koleo_forward(
                        rec,
                        &loss,
                        &tx,
                        d,
                        batch,
                        1.0 / batch as f32,
                    );
                    let grad = g.empty(&[n, d]);
                    kernels::losses::koleo_backward(
                        rec,
                        &grad,
                        &one,
                        &tx,
                        &saved,
                        d,
                        batch,
                        1.0 / batch as f32,
                        false,
                    );
                    (loss, grad, saved.neighbours)
                };
                let (lf, gf, pf) = run(n);
                let (lc, gc, _) = run(chunk);
                vec![
                    ("nn_index", pf),
                    ("loss_full", lf),
                    ("grad_full", gf),
                    ("loss_chunked", lc),
                    ("grad_chunked", gc),
                ]
            })?;
            Ok(outs
                .into_iter()
                .map(|(name, v)| {
                    if name == "nn_index" {
                        (name, v.iter().step_by(3).copied().collect())
                    } else {
                        (name, v)
                    }
                })
                .collect())
        }
    }
}
