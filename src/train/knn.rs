//! Cosine k-NN evaluation (spec §6): L2-normalised final CLS features, the top k neighbours
//! weighted by exp(similarity / T), T = 0.07, k = 20.

use crate::data::augment::eval_view;
use crate::data::dataset::{DataError, Dataset};
use crate::gpu::{Gpu, Recorder};
use crate::model::vit::{ForwardOptions, Vit};

/// Features of labelled images, for k-NN and the linear probe.
#[derive(Clone, Debug, Default)]
pub struct Features {
    /// L2-normalised final CLS tokens [n, D] (k-NN).
    pub cls: Vec<f32>,
    /// The final CLS token beside the mean of the final patch tokens [n, 2D] (linear probe).
    pub pooled: Vec<f32>,
    /// Class of each image.
    pub labels: Vec<u32>,
}

/// Features of the first `n` images (all when n = 0) of a labelled dataset.
pub fn features(
    gpu: &Gpu,
    vit: &Vit,
    ds: &dyn Dataset,
    n: usize,
    size: usize,
    batch: usize,
) -> Result<Features, String> {
    let n = if n == 0 { ds.len() } else { n.min(ds.len()) };
    let d = vit.cfg.dim;
    let mut feats = Features {
        cls: Vec::with_capacity(n * d),
        pooled: Vec::with_capacity(n * 2 * d),
        labels: Vec::with_capacity(n),
    };
    let mut i = 0;
    while i < n {
        let end = (i + batch.max(1)).min(n);
        let mut pixels = Vec::new();
        let mut count = 0;
        for j in i..end {
            let s = ds.get(j).map_err(|e: DataError| e.to_string())?;
            let Some(label) = s.label.or_else(|| ds.label(j)) else {
                return Err(format!(
                    "{}: image {j} has no label (k-NN needs class labels)",
                    ds.describe()
                ));
            };
            pixels.extend(eval_view(&s.image, size));
            feats.labels.push(label);
            count += 1;
        }
        let side = size / vit.cfg.patch * vit.cfg.patch;
        let mut rec = Recorder::new(gpu);
        let px = gpu.upload(&pixels, &[count, 3, side, side]);
        let out = vit
            .forward(
                &mut rec,
                &px,
                count,
                side,
                side,
                None,
                &ForwardOptions::default(),
            )
            .map_err(|e| e.to_string())?;
        rec.finish().map_err(|e| e.to_string())?;
        let tokens = read(gpu, &out.tokens)?;
        let nt = out.n_tokens;
        let first_patch = 1 + vit.cfg.registers;
        for b in 0..count {
            let img = &tokens[b * nt * d..(b + 1) * nt * d];
            let cls = &img[..d];
            let norm = cls.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            feats.cls.extend(cls.iter().map(|v| v / norm));
            feats.pooled.extend_from_slice(cls);
            let patches = img[first_patch * d..].chunks(d);
            let np = patches.len().max(1) as f32;
            let mut mean = vec![0.0f32; d];
            for p in patches {
                for (m, v) in mean.iter_mut().zip(p) {
                    *m += v / np;
                }
            }
            feats.pooled.extend(mean);
        }
        i = end;
    }
    Ok(feats)
}

#[cfg(not(target_arch = "wasm32"))]
fn read(gpu: &Gpu, t: &crate::gpu::Tensor) -> Result<Vec<f32>, String> {
    gpu.read(t).map_err(|e| e.to_string())
}

#[cfg(target_arch = "wasm32")]
fn read(_gpu: &Gpu, _t: &crate::gpu::Tensor) -> Result<Vec<f32>, String> {
    Err("blocking readback is not available in the browser".into())
}

/// Top-1 accuracy of weighted cosine k-NN (features already L2-normalised, [n, d]).
pub fn knn_accuracy(
    train: &[f32],
    train_y: &[u32],
    test: &[f32],
    test_y: &[u32],
    d: usize,
    k: usize,
    temperature: f32,
) -> f32 {
    let classes = train_y
        .iter()
        .chain(test_y)
        .copied()
        .max()
        .map_or(0, |m| m as usize + 1);
    let n_train = train_y.len();
    let mut correct = 0usize;
    for (t, &y) in test.chunks(d).zip(test_y) {
        let mut sims: Vec<(f32, u32)> = (0..n_train)
            .map(|i| {
                (
                    train[i * d..(i + 1) * d]
                        .iter()
                        .zip(t)
                        .map(|(a, b)| a * b)
                        .sum::<f32>(),
                    train_y[i],
                )
            })
            .collect();
        let kk = k.min(n_train);
        if kk == 0 {
            continue;
        }
        sims.select_nth_unstable_by(kk - 1, |a, b| b.0.total_cmp(&a.0));
        let mut votes = vec![0.0f64; classes];
        for &(s, c) in &sims[..kk] {
            votes[c as usize] += ((s / temperature) as f64).exp();
        }
        let pred = votes
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i);
        correct += (pred as u32 == y) as usize;
    }
    correct as f32 / test_y.len().max(1) as f32
}

/// k-NN accuracy of raw pixels (normalised eval views) — the baseline features must beat.
pub fn pixel_features(
    ds: &dyn Dataset,
    n: usize,
    size: usize,
) -> Result<(Vec<f32>, Vec<u32>), String> {
    let n = if n == 0 { ds.len() } else { n.min(ds.len()) };
    let mut feats = Vec::new();
    let mut labels = Vec::new();
    for j in 0..n {
        let s = ds.get(j).map_err(|e| e.to_string())?;
        let v = eval_view(&s.image, size);
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        feats.extend(v.iter().map(|x| x / norm));
        labels.push(s.label.or_else(|| ds.label(j)).ok_or("unlabelled image")?);
    }
    Ok((feats, labels))
}
