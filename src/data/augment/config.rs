//! The multi-crop settings: what each crop draws, checked before a run starts.

use serde::{Deserialize, Serialize};

use crate::data::dataset::DataError;
#[cfg(doc)]
use crate::data::{augment::multi_crop_bytes, resample::reduce_box};

/// Widest Gaussian blur kernel (DINOv2 blurs with 9 taps, σ up to 2).
pub const MAX_BLUR_KERNEL: usize = 255;
/// Largest crop side accepted by `AugmentConfig::validate`.
const MAX_CROP_SIZE: usize = 4096;

/// Multi-crop settings; `Default` is DINOv2's recipe at 224/98 with 8 local crops.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AugmentConfig {
    /// Side of the two global crops, in pixels.
    pub global_size: usize,
    /// Side of each local crop, in pixels.
    pub local_size: usize,
    /// How many local crops per image.
    pub n_local: usize,
    /// Area fraction range of a global crop before resizing.
    pub global_scale: (f32, f32),
    /// Area fraction range of a local crop before resizing.
    pub local_scale: (f32, f32),
    /// Aspect-ratio (width / height) range of a crop, sampled log-uniformly.
    pub ratio: (f32, f32),
    /// Probability of a horizontal flip.
    pub flip_p: f32,
    /// Probability that ColorJitter is applied (all four parts together).
    pub jitter_p: f32,
    /// Brightness strength b: factor in [max(0, 1 − b), 1 + b].
    pub brightness: f32,
    /// Contrast strength c: factor in [max(0, 1 − c), 1 + c].
    pub contrast: f32,
    /// Saturation strength s: factor in [max(0, 1 − s), 1 + s].
    pub saturation: f32,
    /// Hue strength h ≤ 0.5: shift in [−h, h] of a full turn.
    pub hue: f32,
    /// Probability of converting to grey.
    pub grayscale_p: f32,
    /// Blur probability for global crop 1, global crop 2 and each local crop.
    ///
    /// The default is what the official DINOv2 code executes, 0.0 / 0.9 / 0.5, not what its
    /// config says (1.0 / 0.1 / 0.5): its blur wrapper hands 1 − p to torchvision's RandomApply,
    /// which takes the probability of applying. The released checkpoints were trained with the
    /// executed values, so training here matches them.
    pub blur_p: [f32; 3],
    /// Range of the blur's standard deviation σ, in pixels, sampled uniformly.
    pub blur_sigma: (f32, f32),
    /// Side of the square blur kernel (odd).
    pub blur_kernel: usize,
    /// Solarize probability for global crop 1 and global crop 2.
    pub solarize_p: [f32; 2],
    /// Side of the Gram teacher's crops, in pixels (0: none; the Gram teacher then sees the
    /// global crops). DINOv3 renders them at twice the global crops' side.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gram_size: usize,
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            global_size: 224,
            local_size: 98,
            n_local: 8,
            global_scale: (0.32, 1.0),
            local_scale: (0.05, 0.32),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            flip_p: 0.5,
            jitter_p: 0.8,
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.2,
            hue: 0.1,
            grayscale_p: 0.2,
            blur_p: [0.0, 0.9, 0.5],
            blur_sigma: (0.1, 2.0),
            blur_kernel: 9,
            solarize_p: [0.0, 0.2],
            gram_size: 0,
        }
    }
}

impl AugmentConfig {
    /// The integer factor [`multi_crop_bytes`] first shrinks a `width`×`height` picture by
    /// ([`reduce_box`]): the largest that leaves every crop's window, at its smallest scale and
    /// most elongated ratio, at least twice its crop's side, so no crop is enlarged by the
    /// shrink and each is still resampled from twice its size or more (the gap PIL's thumbnail
    /// keeps between `reduce` and the final filter). A phone photo's 12 megapixels are then not
    /// resampled in full for each of ten crops. 1 (no shrink) unless the picture is more than
    /// twice that large, so small pictures (Fashion-MNIST, the bundled photos) are cropped
    /// exactly as before.
    pub fn prefit_factor(&self, width: u32, height: u32) -> u32 {
        let elongation = f64::from(self.ratio.1.max(1.0 / self.ratio.0).max(1.0));
        // Not the Gram crops' side: the factor would then change every other crop (and
        // rendered from at least its own side, a Gram crop twice the global side is still not
        // enlarged).
        let mut kinds = vec![(self.global_size, self.global_scale.0)];
        if self.n_local > 0 {
            kinds.push((self.local_size, self.local_scale.0));
        }
        let (area, short) = (
            f64::from(width) * f64::from(height),
            f64::from(width.min(height)),
        );
        let mut factor = f64::INFINITY;
        for (size, scale) in kinds {
            let side = 2.0 * size as f64;
            let scale = f64::from(scale).min(1.0);
            if scale.is_nan() || scale <= 0.0 {
                return 1;
            }
            // A window of area s·W·H and ratio r has sides √(s·W·H·r) and √(s·W·H / r).
            let by_area = (area * scale / elongation).sqrt() / side;
            // The fallback window (ten draws that do not fit) spans the short side.
            factor = factor.min(by_area).min(short / side);
        }
        if factor.is_finite() {
            (factor.floor() as u32).max(1)
        } else {
            1
        }
    }

    /// Checks every setting is usable; the error says which one is not.
    pub fn validate(&self) -> Result<(), DataError> {
        let bad = |m: String| Err(DataError::Config(m));
        for (name, v) in [
            ("global_size", self.global_size),
            ("local_size", self.local_size),
        ] {
            if v == 0 || v > MAX_CROP_SIZE {
                return bad(format!("{name} is {v}; it must be in 1..={MAX_CROP_SIZE}"));
            }
        }
        if self.gram_size > MAX_CROP_SIZE {
            return bad(format!(
                "gram_size is {}; it must be in 0..={MAX_CROP_SIZE}",
                self.gram_size
            ));
        }
        for (name, (lo, hi)) in [
            ("global_scale", self.global_scale),
            ("local_scale", self.local_scale),
            ("ratio", self.ratio),
            ("blur_sigma", self.blur_sigma),
        ] {
            if !(lo.is_finite() && hi.is_finite() && lo > 0.0 && lo <= hi) {
                return bad(format!(
                    "{name} is ({lo}, {hi}); it needs 0 < low ≤ high, both finite"
                ));
            }
        }
        let probs = [
            ("flip_p", self.flip_p),
            ("jitter_p", self.jitter_p),
            ("grayscale_p", self.grayscale_p),
            ("blur_p[0]", self.blur_p[0]),
            ("blur_p[1]", self.blur_p[1]),
            ("blur_p[2]", self.blur_p[2]),
            ("solarize_p[0]", self.solarize_p[0]),
            ("solarize_p[1]", self.solarize_p[1]),
        ];
        for (name, p) in probs {
            if !(0.0..=1.0).contains(&p) {
                return bad(format!("{name} is {p}; a probability is in [0, 1]"));
            }
        }
        for (name, v) in [
            ("brightness", self.brightness),
            ("contrast", self.contrast),
            ("saturation", self.saturation),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(format!("{name} is {v}; it must be finite and ≥ 0"));
            }
        }
        if !(0.0..=0.5).contains(&self.hue) {
            return bad(format!("hue is {}; it must be in [0, 0.5]", self.hue));
        }
        if self.blur_kernel.is_multiple_of(2) || self.blur_kernel > MAX_BLUR_KERNEL {
            return bad(format!(
                "blur_kernel is {}; it must be odd and at most {MAX_BLUR_KERNEL} (DINOv2: 9)",
                self.blur_kernel
            ));
        }
        Ok(())
    }
}
