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

/// Features of the first `n` images (all when n = 0) of a labelled dataset (blocks; native).
#[cfg(not(target_arch = "wasm32"))]
pub fn features(
    gpu: &Gpu,
    vit: &Vit,
    ds: &dyn Dataset,
    n: usize,
    size: usize,
    batch: usize,
) -> Result<Features, String> {
    pollster::block_on(features_async(gpu, vit, ds, n, size, batch))
}

/// [`features`] without blocking: each batch's tokens are read as the browser maps them.
pub async fn features_async(
    gpu: &Gpu,
    vit: &Vit,
    ds: &dyn Dataset,
    n: usize,
    size: usize,
    batch: usize,
) -> Result<Features, String> {
    let n = if n == 0 { ds.len() } else { n.min(ds.len()) };
    let d = vit.cfg.dim;
    let patch = vit.cfg.patch;
    // The view is cropped to whole patches, as `embed` crops.
    let side = size / patch * patch;
    if side == 0 {
        return Err(format!(
            "an evaluation size of {size} pixels is smaller than one {patch}×{patch} patch"
        ));
    }
    let mut feats = Features {
        cls: Vec::with_capacity(n * d),
        pooled: Vec::with_capacity(n * 2 * d),
        labels: Vec::with_capacity(n),
    };
    let mut i = 0;
    while i < n {
        let end = (i + batch.max(1)).min(n);
        let (pixels, labels) = eval_views(ds, i..end, side)?;
        let count = labels.len();
        i = end;
        if count == 0 {
            continue;
        }
        feats.labels.extend(labels);
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
        let tokens = gpu
            .read_async(&out.tokens)
            .await
            .map_err(|e| e.to_string())?;
        if !tokens.iter().all(|v| v.is_finite()) {
            return Err(format!("{}: {}", ds.describe(), vit.not_finite_message()));
        }
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
    }
    if feats.labels.is_empty() && n > 0 {
        return Err(format!(
            "{}: none of the {n} images could be read",
            ds.describe()
        ));
    }
    Ok(feats)
}

/// The evaluation views (`[n, 3, size, size]`, in order) and labels of images `range`, decoded
/// and resized on the host's cores.
fn eval_views(
    ds: &dyn Dataset,
    range: std::ops::Range<usize>,
    size: usize,
) -> Result<(Vec<f32>, Vec<u32>), String> {
    // An image that cannot be read is skipped with a warning, as the training loader skips it.
    let one = |j: usize| -> Result<Option<(Vec<f32>, u32)>, String> {
        let s = match ds.get(j) {
            Ok(s) => s,
            Err(e) => {
                log::warn!("skipped: {}", DataError::to_string(&e));
                return Ok(None);
            }
        };
        let Some(label) = s.label.or_else(|| ds.label(j)) else {
            return Err(format!(
                "{}: image {j} has no label (k-NN needs class labels)",
                ds.describe()
            ));
        };
        Ok(Some((eval_view(&s.image, size), label)))
    };
    let indices: Vec<usize> = range.collect();
    // A photo takes milliseconds to decode and resize, so even small batches are shared out.
    let views = crate::par::map_ordered(&indices, 8, |&j| one(j))
        .into_iter()
        .collect::<Result<Vec<_>, String>>()?
        .into_iter()
        .flatten();
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (v, label) in views {
        pixels.extend(v);
        labels.push(label);
    }
    Ok((pixels, labels))
}

/// Top-1 accuracy of weighted cosine k-NN (features already L2-normalised, [n, d]). The test
/// images are shared among the host's cores (one thread in the browser); each similarity is
/// summed over the dimensions in order, so the result does not depend on the core count.
pub fn knn_accuracy(
    train: &[f32],
    train_y: &[u32],
    test: &[f32],
    test_y: &[u32],
    d: usize,
    k: usize,
    temperature: f32,
) -> f32 {
    let Some(knn) = Knn::new(train, train_y, test, test_y, d, k, temperature) else {
        return 0.0;
    };
    let n_test = test_y.len();
    let correct: usize = crate::par::map_ranges(n_test, 64, |r| knn.correct(r))
        .into_iter()
        .sum();
    correct as f32 / n_test as f32
}

/// [`knn_accuracy`] for the browser's only thread: the test images in parts of 64, the page
/// drawn between two (a frame is not held for the whole vote). The same result; natively the
/// same call.
pub async fn knn_accuracy_async(
    train: &[f32],
    train_y: &[u32],
    test: &[f32],
    test_y: &[u32],
    d: usize,
    k: usize,
    temperature: f32,
) -> f32 {
    #[cfg(not(target_arch = "wasm32"))]
    {
        knn_accuracy(train, train_y, test, test_y, d, k, temperature)
    }
    #[cfg(target_arch = "wasm32")]
    {
        let Some(knn) = Knn::new(train, train_y, test, test_y, d, k, temperature) else {
            return 0.0;
        };
        let n_test = test_y.len();
        let mut correct = 0;
        for start in (0..n_test).step_by(64) {
            correct += knn.correct(start..(start + 64).min(n_test));
            crate::par::yield_to_host().await;
        }
        correct as f32 / n_test as f32
    }
}

/// A k-NN vote over one set of training features, for any range of test images.
struct Knn<'a> {
    /// The training features, `[d, n_train]`.
    train_t: Vec<f32>,
    train_y: &'a [u32],
    test: &'a [f32],
    test_y: &'a [u32],
    d: usize,
    k: usize,
    temperature: f32,
    classes: usize,
}

impl<'a> Knn<'a> {
    /// None when there is nothing to vote on (no dimensions or no test image).
    fn new(
        train: &[f32],
        train_y: &'a [u32],
        test: &'a [f32],
        test_y: &'a [u32],
        d: usize,
        k: usize,
        temperature: f32,
    ) -> Option<Knn<'a>> {
        if d == 0 || test_y.is_empty() {
            return None;
        }
        let classes = train_y
            .iter()
            .chain(test_y)
            .copied()
            .max()
            .map_or(0, |m| m as usize + 1);
        let n_train = train_y.len();
        Some(Knn {
            train_t: transpose(&train[..n_train * d], n_train, d),
            train_y,
            test,
            test_y,
            d,
            k,
            temperature,
            classes,
        })
    }

    /// How many of the test images in `range` the vote labels right.
    fn correct(&self, range: std::ops::Range<usize>) -> usize {
        let (d, n_train) = (self.d, self.train_y.len());
        let mut sims = vec![0.0f32; n_train];
        let mut order: Vec<(f32, u32)> = Vec::with_capacity(n_train);
        let mut votes = vec![0.0f64; self.classes];
        let mut correct = 0;
        for i in range {
            similarities(
                &self.train_t,
                n_train,
                &self.test[i * d..(i + 1) * d],
                &mut sims,
            );
            let kk = self.k.min(n_train);
            if kk == 0 {
                continue;
            }
            order.clear();
            order.extend(sims.iter().copied().zip(self.train_y.iter().copied()));
            order.select_nth_unstable_by(kk - 1, |a, b| b.0.total_cmp(&a.0));
            votes.fill(0.0);
            for &(s, c) in &order[..kk] {
                votes[c as usize] += ((s / self.temperature) as f64).exp();
            }
            let pred = votes
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i);
            correct += (pred as u32 == self.test_y[i]) as usize;
        }
        correct
    }
}

/// `[n, d]` row-major to `[d, n]`.
fn transpose(x: &[f32], n: usize, d: usize) -> Vec<f32> {
    let mut t = vec![0.0f32; n * d];
    for (i, row) in x.chunks_exact(d).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            t[c * n + i] = v;
        }
    }
    t
}

/// The similarity of one test feature to every training feature (`train_t` is `[d, n]`): a
/// dimension at a time over a tile of training images, so the inner loop runs over contiguous
/// memory and vectorises, while each pair's sum still runs over the dimensions in order from
/// -0.0, exactly as `Iterator::sum` of the products would.
fn similarities(train_t: &[f32], n: usize, t: &[f32], out: &mut [f32]) {
    const TILE: usize = 1024;
    for start in (0..n).step_by(TILE) {
        let end = (start + TILE).min(n);
        let acc = &mut out[start..end];
        acc.fill(-0.0);
        for (c, &tc) in t.iter().enumerate() {
            let row = &train_t[c * n + start..c * n + end];
            for (a, &w) in acc.iter_mut().zip(row) {
                *a += w * tc;
            }
        }
    }
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
    for start in (0..n).step_by(4096) {
        let (views, l) = eval_views(ds, start..(start + 4096).min(n), size)?;
        let dim = views.len() / l.len().max(1);
        for v in views.chunks_exact(dim.max(1)) {
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            feats.extend(v.iter().map(|x| x / norm));
        }
        labels.extend(l);
    }
    Ok((feats, labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1).
    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(2654435761).max(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 8) as f32 / (1u32 << 23) as f32 - 1.0
            })
            .collect()
    }

    #[test]
    fn similarities_equal_the_dot_product_of_each_pair_bit_for_bit() {
        let (n, d) = (2500, 37);
        let train = values(n * d, 1);
        let test = values(3 * d, 2);
        let train_t = transpose(&train, n, d);
        let mut sims = vec![0.0; n];
        for t in test.chunks(d) {
            similarities(&train_t, n, t, &mut sims);
            for (i, &s) in sims.iter().enumerate() {
                let dot: f32 = train[i * d..(i + 1) * d]
                    .iter()
                    .zip(t)
                    .map(|(a, b)| a * b)
                    .sum();
                assert_eq!(s.to_bits(), dot.to_bits(), "pair {i}");
            }
        }
    }

    #[test]
    fn knn_votes_like_a_plain_loop_on_any_split() {
        let (n_train, n_test, d, classes) = (700, 300, 8, 5u32);
        let norm = |v: Vec<f32>| -> Vec<f32> {
            v.chunks(d)
                .flat_map(|r| {
                    let l = r.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                    r.iter().map(move |x| x / l).collect::<Vec<_>>()
                })
                .collect()
        };
        let train = norm(values(n_train * d, 3));
        let test = norm(values(n_test * d, 4));
        // Labels that follow the first feature, so the vote has something to find.
        let label = |r: &[f32]| ((r[0] + 1.0) * 2.5).clamp(0.0, classes as f32 - 1.0) as u32;
        let train_y: Vec<u32> = train.chunks(d).map(label).collect();
        let test_y: Vec<u32> = test.chunks(d).map(label).collect();
        let mut correct = 0;
        for (t, &y) in test.chunks(d).zip(&test_y) {
            let mut sims: Vec<(f32, u32)> = train
                .chunks(d)
                .zip(&train_y)
                .map(|(r, &c)| (r.iter().zip(t).map(|(a, b)| a * b).sum::<f32>(), c))
                .collect();
            sims.select_nth_unstable_by(19, |a, b| b.0.total_cmp(&a.0));
            let mut votes = [0.0f64; 5];
            for &(s, c) in &sims[..20] {
                votes[c as usize] += ((s / 0.07) as f64).exp();
            }
            let pred = votes
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i);
            correct += (pred as u32 == y) as usize;
        }
        let plain = correct as f32 / n_test as f32;
        let acc = knn_accuracy(&train, &train_y, &test, &test_y, d, 20, 0.07);
        assert_eq!(acc, plain);
        assert!(acc > 0.5, "{acc}");
    }
}
