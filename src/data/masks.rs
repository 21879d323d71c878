//! iBOT block masks for the student's global crops (DINOv2's `MaskingGenerator` and collate).
//!
//! Per batch of `n_crops` = 2B global crops, ⌊n_crops·mask_prob⌋ crops get a mask whose target
//! size is drawn from successive bins of `linspace(ratio.0, ratio.1)` (so the masked crops spread
//! over the whole ratio range), the rest get none, and the list is shuffled so which crops are
//! masked, and how much, is random. Masks are unions of rectangular blocks; a mask can end below
//! its target when no block fits, exactly as in DINOv2 (which does not top up).

use crate::data::rng::Rng;

/// Smallest block, in patches.
const MIN_BLOCK: usize = 4;
/// Smallest block aspect ratio (height / width); the largest is its inverse.
const MIN_ASPECT: f64 = 0.3;
/// Block placements tried before a round gives up.
const ATTEMPTS: usize = 10;

/// Fills a `grid_h`×`grid_w` patch grid with random rectangular blocks up to a target count.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskingGenerator {
    height: usize,
    width: usize,
    min_num_patches: usize,
    max_num_patches: f64,
    log_aspect: (f64, f64),
}

impl MaskingGenerator {
    /// DINOv2's settings: blocks of 4 to N/2 patches, aspect in [0.3, 1/0.3].
    pub fn new(grid_h: usize, grid_w: usize) -> Self {
        // train.py passes 0.5·N as the block maximum (128 on a 16×16 grid).
        let max = 0.5 * (grid_h * grid_w) as f64;
        MaskingGenerator {
            height: grid_h,
            width: grid_w,
            min_num_patches: MIN_BLOCK,
            max_num_patches: max,
            log_aspect: (MIN_ASPECT.ln(), (1.0 / MIN_ASPECT).ln()),
        }
    }

    /// Patches in the grid.
    pub fn num_patches(&self) -> usize {
        self.height * self.width
    }

    /// A row-major mask with about `target` patches set (never more, possibly fewer).
    pub fn generate(&self, target: usize, rng: &mut Rng) -> Vec<bool> {
        let mut mask = vec![false; self.num_patches()];
        let mut count = 0;
        while count < target {
            let allowed = ((target - count) as f64).min(self.max_num_patches);
            let delta = self.add_block(&mut mask, allowed, rng);
            if delta == 0 {
                break;
            }
            count += delta;
        }
        mask
    }

    /// Tries up to 10 placements of one block adding between 1 and `allowed` new patches.
    fn add_block(&self, mask: &mut [bool], allowed: f64, rng: &mut Rng) -> usize {
        let mut delta = 0;
        for _ in 0..ATTEMPTS {
            let area = rng.range_f64(self.min_num_patches as f64, allowed);
            let aspect = rng.range_f64(self.log_aspect.0, self.log_aspect.1).exp();
            // Python's round() rounds halves to even.
            let h = (area * aspect).sqrt().round_ties_even() as usize;
            let w = (area / aspect).sqrt().round_ties_even() as usize;
            if w < self.width && h < self.height {
                let top = rng.range_inclusive(0, self.height - h);
                let left = rng.range_inclusive(0, self.width - w);
                let cells = || {
                    (top..top + h)
                        .flat_map(move |i| (left..left + w).map(move |j| i * self.width + j))
                };
                let already = cells().filter(|&k| mask[k]).count();
                let new = h * w - already;
                if new > 0 && new as f64 <= allowed {
                    for k in cells() {
                        mask[k] = true;
                    }
                    delta += new;
                }
                if delta > 0 {
                    break;
                }
            }
        }
        delta
    }
}

/// `steps` evenly spaced f32 values from `lo` to `hi` inclusive (torch.linspace).
fn linspace(lo: f32, hi: f32, steps: usize) -> Vec<f32> {
    match steps {
        0 => Vec::new(),
        1 => vec![lo],
        _ => (0..steps)
            .map(|i| {
                if i + 1 == steps {
                    hi
                } else {
                    lo + (hi - lo) * i as f32 / (steps - 1) as f32
                }
            })
            .collect(),
    }
}

/// How many of `n_crops` crops get a mask: ⌊n_crops·mask_prob⌋, within 0..=n_crops.
pub fn masked_crop_count(n_crops: usize, mask_prob: f32) -> usize {
    let n = (n_crops as f64 * f64::from(mask_prob)).floor();
    if n.is_nan() || n <= 0.0 {
        0
    } else {
        (n as usize).min(n_crops)
    }
}

/// The masks of one batch with each mask's target count (0 for unmasked crops), shuffled together.
pub fn batch_masks_with_targets(
    n_crops: usize,
    grid_h: usize,
    grid_w: usize,
    mask_prob: f32,
    ratio: (f32, f32),
    rng: &mut Rng,
) -> Vec<(Vec<bool>, usize)> {
    let generator = MaskingGenerator::new(grid_h, grid_w);
    let n = generator.num_patches();
    let n_masked = masked_crop_count(n_crops, mask_prob);
    let bins = linspace(ratio.0, ratio.1, n_masked + 1);
    let mut out = Vec::with_capacity(n_crops);
    for i in 0..n_masked {
        let frac = rng.range(bins[i], bins[i + 1]);
        let target = ((n as f32 * frac).max(0.0) as usize).min(n);
        out.push((generator.generate(target, rng), target));
    }
    out.resize(n_crops, (vec![false; n], 0));
    rng.shuffle(&mut out);
    out
}

/// The masks of one batch of `n_crops` global crops, row-major `grid_h`×`grid_w`, true = masked.
pub fn batch_masks(
    n_crops: usize,
    grid_h: usize,
    grid_w: usize,
    mask_prob: f32,
    ratio: (f32, f32),
    rng: &mut Rng,
) -> Vec<Vec<bool>> {
    batch_masks_with_targets(n_crops, grid_h, grid_w, mask_prob, ratio, rng)
        .into_iter()
        .map(|(m, _)| m)
        .collect()
}

/// The static bound Σ ⌊N·bin_{i+1}⌋ on masked patches per batch (buffer sizing).
pub fn mask_upperbound(
    n_crops: usize,
    n_patches: usize,
    mask_prob: f32,
    ratio: (f32, f32),
) -> usize {
    let n_masked = masked_crop_count(n_crops, mask_prob);
    let bins = linspace(ratio.0, ratio.1, n_masked + 1);
    bins.iter()
        .skip(1)
        .map(|&b| ((n_patches as f32 * b).max(0.0) as usize).min(n_patches))
        .sum()
}

/// Flat indices of masked patches over all crops (crop·N + patch) and each one's weight
/// 1/max(masked patches in its crop, 1), so every masked crop's weights sum to 1.
pub fn mask_weights(masks: &[Vec<bool>]) -> (Vec<u32>, Vec<f32>) {
    let mut indices = Vec::new();
    let mut weights = Vec::new();
    let mut offset = 0usize;
    for mask in masks {
        let count = mask.iter().filter(|&&m| m).count();
        let w = 1.0 / count.max(1) as f32;
        for (p, _) in mask.iter().enumerate().filter(|(_, &m)| m) {
            indices.push((offset + p) as u32);
            weights.push(w);
        }
        offset += mask.len();
    }
    (indices, weights)
}
