//! What `TrainConfig::validate` refuses, by part: the model and its crops, the run's sizes, Gram
//! anchoring, and the numbers of the recipe; every refusal names the setting.

use super::{
    HeadInit, TrainConfig, MAX_BATCH, MAX_BATCH_PIXEL_BYTES, MAX_TOKENS, MAX_TRAINABLE_PARAMS,
};

impl TrainConfig {
    /// Checks values that would make training meaningless or crash.
    pub fn validate(&self) -> Result<(), String> {
        self.check_model_and_crops()?;
        self.check_run()?;
        self.check_sizes()?;
        self.check_gram()?;
        self.check_numbers()
    }

    /// The backbone, and the crops and masks as the loader checks them.
    fn check_model_and_crops(&self) -> Result<(), String> {
        self.model.validate().map_err(|e| e.to_string())?;
        if self.model.in_chans != 3 {
            return Err(format!(
                "model.in_chans is {}; training feeds RGB crops, so it must be 3 (grayscale \
                 pictures are repeated over the three channels)",
                self.model.in_chans
            ));
        }
        // The crops and masks as the loader checks them (crop sizes, scales, probabilities),
        // before the planner or the trainer sizes anything by them.
        let mut loader = self.loader_config();
        loader.mask_prob = self.mask_prob;
        loader.validate().map_err(|e| match e {
            crate::data::dataset::DataError::Config(m) => m,
            e => e.to_string(),
        })?;
        let p = self.model.patch;
        let a = &self.augment;
        if !a.global_size.is_multiple_of(p) || !a.local_size.is_multiple_of(p) {
            return Err(format!(
                "crop sizes {} and {} must be multiples of the patch size {p}",
                a.global_size, a.local_size
            ));
        }
        if !a.gram_size.is_multiple_of(p) {
            return Err(format!(
                "augment.gram_size {} must be a multiple of the patch size {p}",
                a.gram_size
            ));
        }
        Ok(())
    }

    /// Batch, run length, drop path, loss scale, RoPE rescaling and the heads' sizes.
    fn check_run(&self) -> Result<(), String> {
        if !(0.0..1.0).contains(&self.drop_path) {
            return Err(format!("drop_path {} must be in [0, 1)", self.drop_path));
        }
        if self.batch_size < 2 {
            return Err("batch_size must be at least 2 (KoLeo needs a neighbour)".into());
        }
        if let Some(r) = self.rope_rescale {
            if !(r.is_finite() && r >= 1.0) {
                return Err(format!("rope_rescale {r} must be at least 1"));
            }
        }
        if let Some(s) = self.loss_scale {
            if !(1.0..=crate::kernels::loss_scale::MAX_SCALE).contains(&s) {
                return Err(format!(
                    "loss_scale {s} must be between 1 and {}",
                    crate::kernels::loss_scale::MAX_SCALE
                ));
            }
        }
        if self.steps == 0 {
            return Err("steps must be at least 1".into());
        }
        if !self.model.dim.is_multiple_of(64) {
            return Err(format!(
                "model dim {} must be a multiple of 64 for training",
                self.model.dim
            ));
        }
        for (name, h) in std::iter::once(("head", &self.head))
            .chain(self.ibot_head.as_ref().map(|h| ("ibot_head", h)))
        {
            if h.prototypes == 0 || h.bottleneck == 0 || h.hidden == 0 {
                return Err(format!("{name}: sizes must be positive"));
            }
        }
        Ok(())
    }

    /// Gram anchoring's weights, and its crop size only with it on.
    fn check_gram(&self) -> Result<(), String> {
        if let Some(g) = &self.gram {
            if !(g.weight.is_finite() && g.weight >= 0.0) {
                return Err(format!("gram.weight is {}; it must be ≥ 0", g.weight));
            }
            if !(g.local_weight.is_finite() && g.local_weight >= 0.0) {
                return Err(format!(
                    "gram.local_weight is {}; it must be ≥ 0 (1 leaves the DINO loss as it is)",
                    g.local_weight
                ));
            }
        }
        let s = self.augment.gram_size;
        if s > 0 && self.gram.is_none() {
            return Err(format!(
                "augment.gram_size is {s}, but Gram anchoring is off (gram: None): set gram, or \
                 gram_size: 0"
            ));
        }
        Ok(())
    }

    /// Learning rates, temperatures, decays, loss weights, initial values and momentum.
    fn check_numbers(&self) -> Result<(), String> {
        let positive = [
            ("base_lr", self.base_lr),
            ("student_temp", self.student_temp),
            ("teacher_temp (start)", self.teacher_temp.0),
            ("teacher_temp (end)", self.teacher_temp.1),
            ("clip_grad", self.clip_grad),
        ];
        for (name, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{name} is {v}; it must be a positive number"));
            }
        }
        // Logits divided by a temperature near zero overflow (1e-45 turns the cosine logits
        // into infinities), and the divergence that follows would be blamed on the rate.
        for (name, v) in [
            ("student_temp", self.student_temp),
            ("teacher_temp (start)", self.teacher_temp.0),
            ("teacher_temp (end)", self.teacher_temp.1),
        ] {
            if v < 1e-4 {
                return Err(format!(
                    "{name} is {v:e}; a temperature under 1e-4 overflows the softmax (DINOv2: \
                     student 0.1, teacher 0.04 → 0.07)"
                ));
            }
        }
        let non_negative = [
            ("min_lr", self.min_lr),
            ("weight_decay (start)", self.weight_decay.0),
            ("weight_decay (end)", self.weight_decay.1),
            ("layer_decay", self.layer_decay),
            ("patch_embed_lr_mult", self.patch_embed_lr_mult),
            ("dino_weight", self.dino_weight),
            ("ibot_weight", self.ibot_weight),
            ("koleo_weight", self.koleo_weight),
        ];
        for (name, v) in non_negative {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{name} is {v}; it must be a number ≥ 0"));
            }
        }
        // The cosine runs from the peak down to min_lr: above the peak it would climb instead.
        let peak = self.base_lr as f64 * (self.batch_size as f64 / 1024.0).sqrt();
        if self.batch_size > 0 && self.min_lr as f64 > peak {
            return Err(format!(
                "min_lr is {:e}, above the peak learning rate {peak:.3e} (base_lr {:e} × \
                 √(batch {} / 1024)); the schedule would raise the rate instead of lowering \
                 it (DINOv2: min_lr 1e-6)",
                self.min_lr, self.base_lr, self.batch_size
            ));
        }
        if let HeadInit::TruncNormal(std) = self.init.head {
            // Values fall within ±2 (PyTorch's bounds): a far wider normal is mostly redrawn.
            if !(std.is_finite() && std > 0.0 && std <= 1.0) {
                return Err(format!(
                    "init.head is TruncNormal({std}); its standard deviation must be in (0, 1] \
                     (DINOv2: 0.02)"
                ));
            }
        }
        let ls = self.init.layerscale;
        if self.model.layerscale && !(ls.is_finite() && ls.abs() <= 1.0) {
            return Err(format!(
                "init.layerscale is {ls}; LayerScale's starting γ must be a number in [-1, 1] \
                 (DINOv2: 1e-5)"
            ));
        }
        let gram_weight = self.gram.as_ref().map_or(0.0, |g| g.weight);
        if self.dino_weight + self.ibot_weight + self.koleo_weight + gram_weight == 0.0 {
            return Err(
                "dino_weight, ibot_weight and koleo_weight are all 0 (and no Gram loss): \
                 nothing would be learned"
                    .into(),
            );
        }
        for (name, (a, b)) in [("momentum", self.momentum)] {
            if !((0.0..=1.0).contains(&a) && (0.0..=1.0).contains(&b)) {
                return Err(format!("{name} is ({a}, {b}); both ends must be in [0, 1]"));
            }
        }
        Ok(())
    }

    /// Refuses sizes no GPU this runs on can hold, naming the setting, before any allocation.
    fn check_sizes(&self) -> Result<(), String> {
        let n = self.trainable_params();
        if n > MAX_TRAINABLE_PARAMS {
            return Err(format!(
                "the model and head would have {n} trainable parameters (backbone {}, head \
                 {hidden}→{bottleneck}→{prototypes} prototypes); training handles up to \
                 {MAX_TRAINABLE_PARAMS}: lower dim, depth, mlp_hidden or the head sizes",
                self.model.num_params(),
                hidden = self.head.hidden,
                bottleneck = self.head.bottleneck,
                prototypes = self.head.prototypes,
            ));
        }
        let p = self.model.patch;
        for (what, size) in [
            ("global_size", self.augment.global_size),
            ("local_size", self.augment.local_size),
            ("gram_size", self.augment.gram_size),
        ] {
            let side = (size / p.max(1)) as u64;
            let tokens = 1 + self.model.registers as u64 + side * side;
            if tokens > MAX_TOKENS {
                return Err(format!(
                    "{what} {size} with patch {p} and {} registers gives {tokens} tokens per \
                     crop; training handles up to {MAX_TOKENS}",
                    self.model.registers
                ));
            }
        }
        if self.batch_size > MAX_BATCH {
            return Err(format!(
                "batch_size {} is over {MAX_BATCH}",
                self.batch_size
            ));
        }
        Ok(())
    }

    /// Refuses a batch whose crops would take more host memory than
    /// [`MAX_BATCH_PIXEL_BYTES`]: checked before a new run, a memory plan or a tune allocates
    /// one (not on loading a checkpoint, which an earlier run on a larger machine may have made).
    pub fn check_batch_memory(&self) -> Result<(), String> {
        let bytes = self.batch_pixel_bytes();
        if bytes > MAX_BATCH_PIXEL_BYTES {
            return Err(format!(
                "one batch's crops (batch_size {} × 2 global, {} local and the Gram crops) \
                 would take {:.1} GiB of host memory; at most {} GiB (fewer or smaller crops, \
                 or a smaller batch)",
                self.batch_size,
                self.augment.n_local,
                bytes as f64 / (1u64 << 30) as f64,
                MAX_BATCH_PIXEL_BYTES >> 30
            ));
        }
        Ok(())
    }

    /// Bytes of one batch's 8-bit RGB crops on the host (global, local and Gram crops).
    fn batch_pixel_bytes(&self) -> u64 {
        let a = &self.augment;
        let crops = |n: u64, side: usize| {
            n.saturating_mul(self.batch_size as u64)
                .saturating_mul(3)
                .saturating_mul((side as u64).saturating_pow(2))
        };
        crops(2, a.global_size)
            .saturating_add(crops(a.n_local as u64, a.local_size))
            .saturating_add(crops(2, a.gram_size))
    }
}
