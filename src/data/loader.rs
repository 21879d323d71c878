//! The training batch loader: multi-crop views and iBOT masks, built ahead on worker threads.
//!
//! Batches are a pure function of (dataset, config, seed, step). Epoch e walks a permutation
//! shuffled by `Rng::derive(seed, [e])`; batch `step` takes positions step·B.. of that epoch
//! (the last partial batch is dropped); each sample's crops use `Rng::derive(seed, [epoch,
//! position])` and the batch's masks `Rng::derive(seed, [step, MASK_STREAM])`. So a run resumed
//! at any step sees exactly the batches an uninterrupted run would, whatever the number of
//! workers and however the threads are scheduled.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::data::augment::{multi_crop_bytes, normalize_bytes, AugmentConfig};
use crate::data::dataset::{DataError, Dataset, Sample};
use crate::data::masks::batch_masks;
use crate::data::rng::Rng;

/// The key word that separates the mask stream from the per-sample streams.
pub const MASK_STREAM: u64 = u64::MAX;
/// Most worker threads a loader starts.
const MAX_WORKERS: usize = 256;

/// How batches are made.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LoaderConfig {
    /// Images per batch (B).
    pub batch_size: usize,
    /// Seed of every random choice: order, crops, masks.
    pub seed: u64,
    /// Worker threads; 0 builds each batch on the calling thread (always so in the browser).
    pub workers: usize,
    /// Batches built ahead in total (at least one per worker).
    pub prefetch: usize,
    /// Patch size; the mask grid is (global_size / patch)².
    pub patch: usize,
    /// Fraction of the 2B global crops that get an iBOT mask (DINOv2: 0.5).
    pub mask_prob: f32,
    /// Range of the masked fraction of a masked crop (DINOv2: 0.1 to 0.5).
    pub mask_ratio: (f32, f32),
    /// The multi-crop augmentation.
    pub augment: AugmentConfig,
    /// First step whose batch holds the Gram teacher's crops (`augment.gram_size`): before it
    /// the Gram teacher does not run, and each such crop holds four times a global crop's
    /// pixels at DINOv3's twice the side. They draw nothing, so leaving them out changes no
    /// other crop.
    #[serde(default)]
    pub gram_from: u64,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            batch_size: 32,
            seed: 0,
            workers: 2,
            prefetch: 2,
            patch: 14,
            mask_prob: 0.5,
            mask_ratio: (0.1, 0.5),
            augment: AugmentConfig::default(),
            gram_from: 0,
        }
    }
}

impl LoaderConfig {
    /// Checks every setting is usable; the error says which one is not.
    pub fn validate(&self) -> Result<(), DataError> {
        let bad = |m: String| Err(DataError::Config(m));
        self.augment.validate()?;
        if self.batch_size == 0 {
            return bad("batch_size is 0".into());
        }
        if self.workers > MAX_WORKERS {
            return bad(format!(
                "workers is {}; at most {MAX_WORKERS}",
                self.workers
            ));
        }
        if self.patch == 0 || self.patch > self.augment.global_size {
            return bad(format!(
                "patch is {}; it must be in 1..={} (the global crop size)",
                self.patch, self.augment.global_size
            ));
        }
        if !(0.0..=1.0).contains(&self.mask_prob) {
            return bad(format!(
                "mask_prob is {}; a probability is in [0, 1]",
                self.mask_prob
            ));
        }
        let (lo, hi) = self.mask_ratio;
        if !(0.0 <= lo && lo <= hi && hi <= 1.0) {
            return bad(format!(
                "mask_ratio is ({lo}, {hi}); it needs 0 ≤ low ≤ high ≤ 1"
            ));
        }
        Ok(())
    }

    /// Side of the mask grid: global crop size over the patch size.
    pub fn grid(&self) -> usize {
        self.augment.global_size / self.patch.max(1)
    }
}

/// One training batch, crop-major as DINOv2 collates it.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The step this batch belongs to.
    pub step: u64,
    /// The epoch the step falls in.
    pub epoch: u64,
    /// `[2B, 3, G, G]`: global crop 1 of all B images, then global crop 2, as 8-bit values
    /// before normalisation ([`Batch::globals_normalized`] gives the model's input).
    pub globals: Vec<u8>,
    /// `[n_local·B, 3, L, L]`: local crop s of all B images at rows s·B..(s+1)·B, 8-bit.
    pub locals: Vec<u8>,
    /// `[2B, (G/patch)²]`, 1 = masked, rows aligned with `globals`.
    pub masks: Vec<f32>,
    /// `[2B, 3, S, S]`: the Gram teacher's crops of the global crops, rows aligned with
    /// `globals`, 8-bit (empty unless the augmentation's `gram_size` S is set and the step is
    /// at least the loader's `gram_from`).
    pub gram: Vec<u8>,
    /// The class of each of the B images, if known.
    pub labels: Vec<Option<u32>>,
    /// Unreadable images replaced by the next readable one in this batch.
    pub skipped: usize,
}

impl Batch {
    /// The global crops as the model sees them: ImageNet-normalised floats, `[2B, 3, G, G]`.
    pub fn globals_normalized(&self) -> Vec<f32> {
        normalize_bytes(&self.globals, self.plane(&self.globals, 2))
    }

    /// The local crops as the model sees them, `[n_local·B, 3, L, L]`.
    pub fn locals_normalized(&self, n_local: usize) -> Vec<f32> {
        normalize_bytes(&self.locals, self.plane(&self.locals, n_local))
    }

    /// The Gram teacher's crops as it sees them, `[2B, 3, S, S]` (empty without them).
    pub fn gram_normalized(&self) -> Vec<f32> {
        normalize_bytes(&self.gram, self.plane(&self.gram, 2))
    }

    /// Values per channel plane of `crops`, `per_image` crops of each of the B images.
    fn plane(&self, crops: &[u8], per_image: usize) -> usize {
        crops.len() / (3 * per_image * self.labels.len()).max(1)
    }
}

/// Checks the config and that the dataset fills at least one batch.
fn check(ds: &dyn Dataset, cfg: &LoaderConfig) -> Result<(), DataError> {
    cfg.validate()?;
    if ds.len() < cfg.batch_size {
        return Err(DataError::TooSmall {
            dataset: ds.describe(),
            len: ds.len(),
            batch_size: cfg.batch_size,
        });
    }
    Ok(())
}

/// Items decoded before the first batch, spread evenly over the dataset.
const READABLE_SAMPLE: usize = 32;

/// Refuses a dataset most of whose items cannot be read, by decoding [`READABLE_SAMPLE`] of
/// them spread over it before training starts: otherwise the loader would skip its way through
/// it, building batches of the few readable items over and over, or stop part way through an
/// epoch. A few unreadable items are skipped and counted as before.
fn sample_readable(ds: &dyn Dataset, cfg: &LoaderConfig) -> Result<(), DataError> {
    let len = ds.len();
    let n = len.min(READABLE_SAMPLE);
    let factor = |w: u32, h: u32| cfg.augment.prefit_factor(w, h);
    let mut last = None;
    let mut bad = 0;
    for k in 0..n {
        if let Err(e) = ds.get_reduced(k * len / n, &factor) {
            bad += 1;
            last = Some(e.to_string());
        }
    }
    match last {
        Some(last) if 2 * bad > n => Err(DataError::MostlyUnreadable {
            dataset: ds.describe(),
            bad,
            sampled: n,
            last,
        }),
        _ => Ok(()),
    }
}

/// Builds batches; one per thread, sharing only the set of known-unreadable items.
struct Builder {
    ds: Arc<dyn Dataset>,
    cfg: LoaderConfig,
    /// The permutation of the epoch last used, since consecutive steps share it.
    perm: Option<(u64, Arc<Vec<usize>>)>,
    /// Items that failed to decode: skipped without retrying, warned about once.
    bad: Arc<Mutex<HashSet<usize>>>,
}

impl Builder {
    fn permutation(&mut self, epoch: u64) -> Arc<Vec<usize>> {
        if let Some((e, p)) = &self.perm {
            if *e == epoch {
                return p.clone();
            }
        }
        let mut order: Vec<usize> = (0..self.ds.len()).collect();
        Rng::derive(self.cfg.seed, &[epoch]).shuffle(&mut order);
        let order = Arc::new(order);
        self.perm = Some((epoch, order.clone()));
        order
    }

    fn is_bad(&self, idx: usize) -> bool {
        // A poisoned lock only means another thread panicked; the set itself is still valid.
        match self.bad.lock() {
            Ok(set) => set.contains(&idx),
            Err(poisoned) => poisoned.into_inner().contains(&idx),
        }
    }

    fn mark_bad(&self, idx: usize) -> bool {
        match self.bad.lock() {
            Ok(mut set) => set.insert(idx),
            Err(poisoned) => poisoned.into_inner().insert(idx),
        }
    }

    /// The sample at `pos` of the epoch, or the next readable one after it (wrapping), with the
    /// number of unreadable items passed over.
    ///
    /// Known-bad items are passed over without decoding; that gives the same result as trying
    /// them again, so the outcome does not depend on which thread found them first.
    fn sample_at(&self, perm: &[usize], pos: usize) -> Result<(Sample, usize), DataError> {
        let len = perm.len();
        let mut last = String::from("none tried");
        for tried in 0..len {
            let idx = perm[(pos + tried) % len];
            if self.is_bad(idx) {
                continue;
            }
            // Phone photos are shrunk while decoding, as multi-crop would shrink them anyway.
            let factor = |w: u32, h: u32| self.cfg.augment.prefit_factor(w, h);
            match self.ds.get_reduced(idx, &factor) {
                Ok(s) => return Ok((s, tried)),
                Err(e) => {
                    last = e.to_string();
                    if self.mark_bad(idx) {
                        log::warn!("skipping unreadable item {idx}: {e}");
                    }
                }
            }
        }
        Err(DataError::NothingReadable {
            dataset: self.ds.describe(),
            skipped: len,
            last,
        })
    }

    /// Builds batch `step`; `stop` ends early (with `None`) when the loader is dropped.
    fn build(&mut self, step: u64, stop: Option<&AtomicFlag>) -> Option<Result<Batch, DataError>> {
        let b = self.cfg.batch_size;
        let batches_per_epoch = (self.ds.len() / b) as u64;
        if batches_per_epoch == 0 {
            return Some(Err(DataError::TooSmall {
                dataset: self.ds.describe(),
                len: self.ds.len(),
                batch_size: b,
            }));
        }
        let epoch = step / batches_per_epoch;
        let first = (step % batches_per_epoch) as usize * b;
        let perm = self.permutation(epoch);
        let without_gram;
        let aug = if step >= self.cfg.gram_from || self.cfg.augment.gram_size == 0 {
            &self.cfg.augment
        } else {
            without_gram = AugmentConfig {
                gram_size: 0,
                ..self.cfg.augment.clone()
            };
            &without_gram
        };
        let (g, l, n_local) = (aug.global_size, aug.local_size, aug.n_local);
        let (gplane, lplane) = (3 * g * g, 3 * l * l);
        let splane = 3 * aug.gram_size * aug.gram_size;
        let mut globals = vec![0u8; 2 * b * gplane];
        let mut gram = vec![0u8; 2 * b * splane];
        let mut locals = vec![0u8; n_local * b * lplane];
        let mut labels = Vec::with_capacity(b);
        let mut skipped = 0;
        for k in 0..b {
            if stop.is_some_and(AtomicFlag::is_set) {
                return None;
            }
            let pos = first + k;
            let (sample, passed) = match self.sample_at(&perm, pos) {
                Ok(found) => found,
                Err(e) => return Some(Err(e)),
            };
            skipped += passed;
            let mut rng = Rng::derive(self.cfg.seed, &[epoch, pos as u64]);
            let crops = multi_crop_bytes(&sample.image, aug, &mut rng);
            for (c, crop) in crops.globals.iter().enumerate() {
                let row = c * b + k;
                globals[row * gplane..(row + 1) * gplane].copy_from_slice(crop);
            }
            for (s, crop) in crops.locals.iter().enumerate() {
                let row = s * b + k;
                locals[row * lplane..(row + 1) * lplane].copy_from_slice(crop);
            }
            for (c, crop) in crops.gram.iter().enumerate() {
                let row = c * b + k;
                gram[row * splane..(row + 1) * splane].copy_from_slice(crop);
            }
            labels.push(sample.label);
        }
        let grid = self.cfg.grid();
        let mut mask_rng = Rng::derive(self.cfg.seed, &[step, MASK_STREAM]);
        let masks = batch_masks(
            2 * b,
            grid,
            grid,
            self.cfg.mask_prob,
            self.cfg.mask_ratio,
            &mut mask_rng,
        )
        .into_iter()
        .flatten()
        .map(|m| if m { 1.0 } else { 0.0 })
        .collect();
        Some(Ok(Batch {
            step,
            epoch,
            globals,
            locals,
            masks,
            gram,
            labels,
            skipped,
        }))
    }
}

/// A stop signal shared with the workers.
struct AtomicFlag(std::sync::atomic::AtomicBool);

impl AtomicFlag {
    fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Builds batch `step` directly on this thread, without a loader.
pub fn build_batch(
    ds: Arc<dyn Dataset>,
    cfg: &LoaderConfig,
    step: u64,
) -> Result<Batch, DataError> {
    check(ds.as_ref(), cfg)?;
    let mut builder = Builder {
        ds,
        cfg: cfg.clone(),
        perm: None,
        bad: Arc::default(),
    };
    match builder.build(step, None) {
        Some(result) => result,
        None => Err(DataError::WorkerStopped { step }),
    }
}

/// Worker threads, each building every W-th step into its own bounded channel.
#[cfg(not(target_arch = "wasm32"))]
struct Workers {
    /// Worker w's batches; step s comes from worker (s − start) mod W.
    receivers: Vec<std::sync::mpsc::Receiver<Result<Batch, DataError>>>,
    handles: Vec<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicFlag>,
    start: u64,
}

#[cfg(not(target_arch = "wasm32"))]
impl Workers {
    fn start(
        ds: &Arc<dyn Dataset>,
        cfg: &LoaderConfig,
        start: u64,
        bad: &Arc<Mutex<HashSet<usize>>>,
    ) -> Result<Self, DataError> {
        let n = cfg.workers;
        let capacity = cfg.prefetch.div_ceil(n).max(1);
        let stop = Arc::new(AtomicFlag(std::sync::atomic::AtomicBool::new(false)));
        let mut workers = Workers {
            receivers: Vec::with_capacity(n),
            handles: Vec::with_capacity(n),
            stop: stop.clone(),
            start,
        };
        for w in 0..n {
            let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
            let mut builder = Builder {
                ds: ds.clone(),
                cfg: cfg.clone(),
                perm: None,
                bad: bad.clone(),
            };
            let stop = stop.clone();
            let handle = std::thread::Builder::new()
                .name(format!("data-loader-{w}"))
                .spawn(move || {
                    let mut step = start + w as u64;
                    while !stop.is_set() {
                        let Some(result) = builder.build(step, Some(&stop)) else {
                            break;
                        };
                        // A send fails once the loader is gone: time to stop.
                        if tx.send(result).is_err() {
                            break;
                        }
                        step += n as u64;
                    }
                })
                .map_err(|e| DataError::Config(format!("cannot start a loader thread: {e}")))?;
            workers.receivers.push(rx);
            workers.handles.push(handle);
        }
        Ok(workers)
    }

    fn next(&mut self, step: u64) -> Result<Batch, DataError> {
        let w = ((step - self.start) % self.receivers.len() as u64) as usize;
        match self.receivers[w].recv() {
            Ok(result) => result,
            Err(_) => Err(DataError::WorkerStopped { step }),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Drop for Workers {
    fn drop(&mut self) {
        self.stop
            .0
            .store(true, std::sync::atomic::Ordering::Relaxed);
        // Dropping the receivers wakes any worker blocked on a full channel.
        self.receivers.clear();
        for h in self.handles.drain(..) {
            // A worker that panicked has nothing left to clean up.
            let _ = h.join();
        }
    }
}

enum Mode {
    /// The config or dataset is unusable: the first call reports why (later ones the
    /// settings' check, or that the loader did not start).
    Invalid(Option<DataError>),
    /// Batches are built on the calling thread.
    Inline(Builder),
    /// Batches are built ahead on worker threads.
    #[cfg(not(target_arch = "wasm32"))]
    Threads(Workers),
}

/// Hands out training batches in step order, built ahead on worker threads when asked.
pub struct Loader {
    ds: Arc<dyn Dataset>,
    cfg: LoaderConfig,
    next_step: u64,
    mode: Mode,
}

impl Loader {
    /// A loader whose first batch is `start_step`; a bad config surfaces from `next_batch`.
    pub fn new(ds: Arc<dyn Dataset>, cfg: LoaderConfig, start_step: u64) -> Self {
        let bad = Arc::new(Mutex::new(HashSet::new()));
        // The sample is decoded once, here, before any batch: not per batch.
        let mode = match check(ds.as_ref(), &cfg).and_then(|()| sample_readable(ds.as_ref(), &cfg))
        {
            Err(e) => Mode::Invalid(Some(e)),
            Ok(()) => Self::start_mode(&ds, &cfg, start_step, bad),
        };
        Loader {
            ds,
            cfg,
            next_step: start_step,
            mode,
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn start_mode(
        ds: &Arc<dyn Dataset>,
        cfg: &LoaderConfig,
        start_step: u64,
        bad: Arc<Mutex<HashSet<usize>>>,
    ) -> Mode {
        if cfg.workers > 0 {
            match Workers::start(ds, cfg, start_step, &bad) {
                Ok(w) => return Mode::Threads(w),
                Err(e) => log::warn!("{e}; building batches on the calling thread"),
            }
        }
        Mode::Inline(Builder {
            ds: ds.clone(),
            cfg: cfg.clone(),
            perm: None,
            bad,
        })
    }

    /// The browser has no threads: batches are always built on the calling thread.
    #[cfg(target_arch = "wasm32")]
    fn start_mode(
        ds: &Arc<dyn Dataset>,
        cfg: &LoaderConfig,
        _start_step: u64,
        bad: Arc<Mutex<HashSet<usize>>>,
    ) -> Mode {
        Mode::Inline(Builder {
            ds: ds.clone(),
            cfg: cfg.clone(),
            perm: None,
            bad,
        })
    }

    /// The next batch in step order; the step advances even when the batch fails, but not
    /// on a loader that never started (no step has a batch there).
    pub fn next_batch(&mut self) -> Result<Batch, DataError> {
        let step = self.next_step;
        let result = match &mut self.mode {
            // Why it did not start, once; then the settings' check again (the sample is not
            // decoded twice).
            Mode::Invalid(first) => match first.take() {
                Some(e) => return Err(e),
                None => match check(self.ds.as_ref(), &self.cfg) {
                    Err(e) => return Err(e),
                    Ok(()) => Err(DataError::Config("the loader did not start".into())),
                },
            },
            Mode::Inline(builder) => builder
                .build(step, None)
                .unwrap_or(Err(DataError::WorkerStopped { step })),
            #[cfg(not(target_arch = "wasm32"))]
            Mode::Threads(workers) => workers.next(step),
        };
        self.next_step += 1;
        result
    }

    /// The step the next call to `next_batch` returns.
    pub fn step(&self) -> u64 {
        self.next_step
    }

    /// Full batches per epoch: dataset length over batch size, rounded down.
    pub fn batches_per_epoch(&self) -> u64 {
        (self.ds.len() / self.cfg.batch_size.max(1)) as u64
    }

    /// The settings this loader was made with.
    pub fn config(&self) -> &LoaderConfig {
        &self.cfg
    }

    /// The dataset batches are drawn from.
    pub fn dataset(&self) -> &Arc<dyn Dataset> {
        &self.ds
    }
}
