//! Linear probe: multinomial logistic regression on frozen features (the CLS token beside the
//! mean of the patch tokens), trained full-batch with Adam on the GPU from the runtime's own
//! kernels. The L2 strength is chosen on a held-out fifth of the training features, then the
//! probe is trained again on all of them.

use crate::gpu::{Gpu, Recorder, Tensor};
use crate::kernels::{self, adamw, cross_entropy::CrossEntropy};

/// Adam steps per fit.
const ITERATIONS: usize = 100;
/// Adam's learning rate (the features are standardised, so one rate fits every backbone).
const LR: f32 = 0.1;
/// L2 strengths tried; the held-out fifth picks one.
const L2: [f32; 4] = [1e-4, 1e-3, 1e-2, 1e-1];
/// Steps recorded per submission (keeps command buffers small on every backend).
const STEPS_PER_SUBMIT: usize = 50;

/// Features standardised with the training set's mean and standard deviation per channel.
fn standardise(train: &mut [f32], test: &mut [f32], f: usize) {
    let n = (train.len() / f).max(1) as f64;
    for c in 0..f {
        let mean = train
            .iter()
            .skip(c)
            .step_by(f)
            .map(|&v| v as f64)
            .sum::<f64>()
            / n;
        let var = train
            .iter()
            .skip(c)
            .step_by(f)
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        let inv = 1.0 / var.sqrt().max(1e-6);
        for x in train.iter_mut().chain(test.iter_mut()).skip(c).step_by(f) {
            *x = ((*x as f64 - mean) * inv) as f32;
        }
    }
}

/// Fitted probes on the GPU: for each of `variants` L2 strengths, W [classes, f], stacked into
/// W [variants·classes, f], then b [variants·classes], in one flat buffer.
struct Fit {
    params: Tensor,
    rows: usize,
    f: usize,
    b_off: usize,
}

impl Fit {
    fn w(&self) -> Tensor {
        self.params.view(0, &[self.rows, self.f])
    }
    fn b(&self) -> Tensor {
        self.params.view(self.b_off, &[self.rows])
    }
}

/// Fits one probe per L2 strength in `l2` at once on features x [n, f] (uploaded) with labels
/// y: `ITERATIONS` Adam steps on each probe's mean cross-entropy plus l2/2·|W|². The probes'
/// logits [n, V·C] are read as [n·V, C] rows, so one cross-entropy launch serves them all.
fn fit(
    gpu: &Gpu,
    x: &Tensor,
    y: &[u32],
    f: usize,
    classes: usize,
    l2: &[f32],
) -> Result<Fit, String> {
    let n = y.len();
    let v_count = l2.len();
    let rows = v_count * classes;
    let b_off = (rows * f).div_ceil(Tensor::VIEW_ALIGN) * Tensor::VIEW_ALIGN;
    let total = b_off + rows;
    let mut onehot = vec![0.0f32; n * rows];
    for (r, &c) in y.iter().enumerate() {
        for v in 0..v_count {
            onehot[(r * v_count + v) * classes + c as usize] = 1.0;
        }
    }
    let mut strength = vec![0.0f32; total];
    for (v, &l) in l2.iter().enumerate() {
        strength[v * classes * f..(v + 1) * classes * f].fill(l);
    }
    let target = gpu.upload(&onehot, &[n * v_count, classes]);
    let strength = gpu.upload(&strength, &[total]);
    let one = gpu.upload(&[1.0], &[1]);
    let zeros = vec![0.0; total];
    let fit = Fit {
        params: gpu.upload(&zeros, &[total]),
        rows,
        f,
        b_off,
    };
    let grads = gpu.upload(&zeros, &[total]);
    let regularised = gpu.upload(&zeros, &[total]);
    let (m, v) = (gpu.upload(&zeros, &[total]), gpu.upload(&zeros, &[total]));
    let segs = adamw::Segments::new(
        gpu,
        &[adamw::Segment {
            start: 0,
            end: total,
            lr_scale: 1.0,
            wd_scale: 0.0,
        }],
    );
    let (w, b) = (fit.w(), fit.b());
    let (dw, db) = (grads.view(0, &[rows, f]), grads.view(b_off, &[rows]));
    let logits = gpu.empty(&[n, rows]);
    let dlogits = gpu.empty(&[n, rows]);
    let ce = CrossEntropy {
        temperature: 1.0,
        scale: 1.0 / n as f32,
        row_weight: None,
    };
    let mut t = 0;
    while t < ITERATIONS {
        let mut rec = Recorder::new(gpu);
        for _ in 0..STEPS_PER_SUBMIT.min(ITERATIONS - t) {
            t += 1;
            kernels::linear::linear_forward(&mut rec, &logits, x, &w, Some(&b), None);
            kernels::cross_entropy::cross_entropy_backward(
                &mut rec, &dlogits, &one, &logits, &target, classes, ce, false,
            );
            kernels::linear::linear_backward(
                &mut rec,
                None,
                &dw,
                Some(&db),
                &dlogits,
                x,
                &w,
                false,
                false,
            );
            // The L2 term's gradient: l2·W beside the data term (biases are not penalised).
            kernels::elementwise::add_mul(&mut rec, &regularised, &grads, &strength, &fit.params);
            let h = adamw::AdamWStep {
                lr: LR,
                weight_decay: 0.0,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                t: t as u32,
            };
            kernels::adamw::adamw_step(&mut rec, &fit.params, &m, &v, &regularised, &segs, h);
        }
        rec.finish().map_err(|e| e.to_string())?;
    }
    Ok(fit)
}

/// Each fitted probe's share of `y` predicted correctly on features x [n, f] (uploaded).
async fn accuracies(
    gpu: &Gpu,
    fit: &Fit,
    x: &Tensor,
    y: &[u32],
    classes: usize,
) -> Result<Vec<f32>, String> {
    let n = y.len();
    let logits = gpu.empty(&[n, fit.rows]);
    let mut rec = Recorder::new(gpu);
    kernels::linear::linear_forward(&mut rec, &logits, x, &fit.w(), Some(&fit.b()), None);
    rec.finish().map_err(|e| e.to_string())?;
    let l = gpu.read_async(&logits).await.map_err(|e| e.to_string())?;
    let variants = fit.rows / classes;
    let mut correct = vec![0usize; variants];
    for (row, &c) in l.chunks(fit.rows).zip(y) {
        for (v, scores) in row.chunks(classes).enumerate() {
            let pred = scores
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i as u32);
            correct[v] += (pred == Some(c)) as usize;
        }
    }
    Ok(correct
        .iter()
        .map(|&k| k as f32 / n.max(1) as f32)
        .collect())
}

/// Test accuracy of a linear probe trained on `train` [n, f] with labels `train_y`; labels
/// outside the training classes count as wrong (blocks; native).
#[cfg(not(target_arch = "wasm32"))]
pub fn linear_probe(
    gpu: &Gpu,
    train: &[f32],
    train_y: &[u32],
    test: &[f32],
    test_y: &[u32],
    f: usize,
) -> Result<f32, String> {
    pollster::block_on(linear_probe_async(gpu, train, train_y, test, test_y, f))
}

/// [`linear_probe`] without blocking: its accuracies are read as the browser maps them.
pub async fn linear_probe_async(
    gpu: &Gpu,
    train: &[f32],
    train_y: &[u32],
    test: &[f32],
    test_y: &[u32],
    f: usize,
) -> Result<f32, String> {
    if train_y.is_empty() || test_y.is_empty() || f == 0 {
        return Err("linear probe: no features".into());
    }
    if train.len() != train_y.len() * f || test.len() != test_y.len() * f {
        return Err(format!(
            "linear probe: {} train and {} test values are not {} and {} rows of {f}",
            train.len(),
            test.len(),
            train_y.len(),
            test_y.len()
        ));
    }
    let classes = train_y.iter().copied().max().map_or(1, |m| m as usize + 1);
    // Features beyond one storage binding are left out of the fit (and scored in pieces).
    let max_rows = (gpu.limits.max_storage_buffer_binding_size as usize / 4 / f).max(1);
    let train_y = if train_y.len() > max_rows {
        log::warn!(
            "linear probe: fitted on the first {max_rows} of {} training features (one storage \
             binding of this adapter)",
            train_y.len()
        );
        &train_y[..max_rows]
    } else {
        train_y
    };
    let (mut tr, mut te) = (train[..train_y.len() * f].to_vec(), test.to_vec());
    standardise(&mut tr, &mut te, f);
    // Every fifth training feature is held out to choose the L2 strength.
    let (mut fit_x, mut fit_y, mut val_x, mut val_y) = (vec![], vec![], vec![], vec![]);
    for (i, (row, &c)) in tr.chunks(f).zip(train_y).enumerate() {
        let (x, y) = if i % 5 == 4 {
            (&mut val_x, &mut val_y)
        } else {
            (&mut fit_x, &mut fit_y)
        };
        x.extend_from_slice(row);
        y.push(c);
    }
    let mut l2 = L2[0];
    if !val_y.is_empty() && !fit_y.is_empty() {
        let fx = gpu.upload(&fit_x, &[fit_y.len(), f]);
        let vx = gpu.upload(&val_x, &[val_y.len(), f]);
        let probes = fit(gpu, &fx, &fit_y, f, classes, &L2)?;
        let acc = accuracies(gpu, &probes, &vx, &val_y, classes).await?;
        // The strongest regularisation among the best on the held-out fifth.
        let best = acc.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if let Some(i) = acc.iter().rposition(|&a| a == best) {
            l2 = L2[i];
        }
    }
    let x = gpu.upload(&tr, &[train_y.len(), f]);
    // Four copies keep the product's rows a multiple of four (the vec4 kernels).
    let probe = fit(gpu, &x, train_y, f, classes, &[l2; 4])?;
    let mut correct = 0.0f64;
    for (x, y) in te.chunks(max_rows * f).zip(test_y.chunks(max_rows)) {
        let tx = gpu.upload(x, &[y.len(), f]);
        correct += accuracies(gpu, &probe, &tx, y, classes).await?[0] as f64 * y.len() as f64;
    }
    Ok((correct / test_y.len() as f64) as f32)
}
