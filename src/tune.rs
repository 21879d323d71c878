//! `dinoscope tune`: times the matmul plans (kernel, tile, split K) on this adapter for the
//! products a training config runs, keeps the fastest of each, and caches them as RON under the
//! platform's cache folder, keyed by adapter, driver and wgpu version. Every device the CLI or
//! the app opens loads the matching cache; without one the runtime uses [`Plan::untuned`].
//! Products of f16 operands (mixed-precision configs) are tuned apart from f32 ones, with the
//! cooperative-matrix kernel among their candidates where the adapter has it. The attention
//! passes of the step are tuned too: every forward and backward variant that runs on the
//! adapter ([`attention_plan`]). Every candidate variant is checked against the CPU twin before
//! it is timed.

use crate::gpu::{DType, Gpu, Recorder};
use crate::kernels::attention::{AttnDims, OutLayout, QkvLayout};
use crate::kernels::attention_plan::{self, Backward, Forward};
use crate::kernels::matmul::{
    large_tiles, matmul_planned, Epilogue, MatmulDims, Plan, LARGE_COOP, LARGE_TILE, SPLIT_F16,
};
use crate::selftest::checks_random as random;
use crate::train::config::TrainConfig;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

mod calibrate;
pub use calibrate::*;

/// The wgpu version the runtime is built with (part of the cache key: kernels compile anew).
pub const WGPU_VERSION: &str = "30.0.2";

/// A cache file: which adapter it is for, and the winning plan by product dims.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TuneCache {
    /// Adapter name.
    pub adapter: String,
    /// Driver and its version.
    pub driver: String,
    /// wgpu version.
    pub wgpu: String,
    /// Plan name by [`MatmulDims::key_for`].
    pub plans: BTreeMap<String, String>,
}

fn identity(gpu: &Gpu) -> (String, String) {
    (
        gpu.info.name.clone(),
        format!(
            "{:?} {} {}",
            gpu.info.backend, gpu.info.driver, gpu.info.driver_info
        ),
    )
}

/// The platform's cache folder for dinoscope: `DINOSCOPE_CACHE_DIR`, else `XDG_CACHE_HOME` or
/// `~/.cache` (Linux), `~/Library/Caches` (macOS), `%LOCALAPPDATA%` (Windows), + `dinoscope`.
pub fn cache_dir() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = env("DINOSCOPE_CACHE_DIR") {
        return Some(d);
    }
    let base = if cfg!(target_os = "windows") {
        env("LOCALAPPDATA")
    } else if cfg!(target_os = "macos") {
        env("HOME").map(|h| h.join("Library/Caches"))
    } else {
        env("XDG_CACHE_HOME").or_else(|| env("HOME").map(|h| h.join(".cache")))
    }?;
    Some(base.join("dinoscope"))
}

/// The cache file of this adapter, driver and wgpu version.
pub fn cache_path(gpu: &Gpu) -> Option<PathBuf> {
    let (adapter, driver) = identity(gpu);
    let raw = format!("{adapter}-{driver}-wgpu{WGPU_VERSION}");
    let name: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    Some(cache_dir()?.join(format!("tune-{name}.ron")))
}

/// Loads this adapter's cache into the device's choices (when there is one); returns how many
/// plans were loaded. A cache for another adapter, driver or wgpu is ignored; a damaged one is
/// reported and ignored.
pub fn load(gpu: &Gpu) -> Result<usize, String> {
    let Some(path) = cache_path(gpu) else {
        return Ok(0);
    };
    let Some(cache) = read_cache(&path)
        .map_err(|why| format!("{}: {why}; run `dinoscope tune` again", path.display()))?
    else {
        return Ok(0);
    };
    let (adapter, driver) = identity(gpu);
    if cache.adapter != adapter || cache.driver != driver || cache.wgpu != WGPU_VERSION {
        return Ok(0);
    }
    for (k, v) in &cache.plans {
        let matmul = MatmulDims::from_key_for(k).is_some() && Plan::parse(v).is_some();
        let large = k == LARGE_TILE && large_tiles(v).is_some();
        let coop = k == LARGE_COOP && matches!(Plan::parse(v), Some(Plan::Coop | Plan::CoopWide));
        let split = k == SPLIT_F16 && matches!(v.as_str(), "coop" | "vec4");
        let calibrated_attention = attention_plan::calibrated_pass(k)
            .is_some_and(|(pass, _)| attention_plan::variant_name(pass, v).is_some());
        if matmul
            || large
            || coop
            || split
            || calibrated_attention
            || attention_plan::valid_choice(k, v)
        {
            gpu.set_choice(k, v);
        }
    }
    Ok(cache.plans.len())
}

/// Checks one plan variant (its kernel, tile, transposes and split) against the CPU twin on a
/// small product of the same kind with `dtype` operands (f16: on the twin's f16-rounded inputs,
/// within the f16 output's rounding).
pub fn verify(gpu: &Gpu, plan: Plan, d: &MatmulDims, dtype: DType) -> Result<(), String> {
    if plan.is_coop() && !plan.coop_runs(gpu) {
        return Err(format!(
            "{}: this device runs no such cooperative-matrix kernel",
            plan.name()
        ));
    }
    let mut small = *d;
    small.m = d.m.min(132);
    small.n = d.n.min(136);
    small.k = match plan {
        Plan::Vec4 { splits, .. } | Plan::Direct { splits } | Plan::CoopSplit { splits }
            if splits > 1 =>
        {
            256 * splits + 16
        }
        _ => d.k.min(100),
    };
    if d.vec4_ok() {
        small.m = small.m.div_ceil(4) * 4;
        small.n = small.n.div_ceil(4) * 4;
        small.k = small.k.div_ceil(4) * 4;
    }
    small.batch = d.batch.min(2);
    if !plan.fits(&small) {
        return Err(format!("{} cannot run {small:?}", plan.name()));
    }
    let (a_len, b_len) = small.operand_lens();
    let mut a = random(a_len, 41, -1.0, 1.0);
    let mut b = random(b_len, 42, -1.0, 1.0);
    if dtype == DType::F16 {
        a = crate::half::round_trip(&a);
        b = crate::half::round_trip(&b);
    }
    let want = crate::cpu::matmul::matmul(&a, &b, small);
    let (ta, tb) = (
        gpu.upload_as(&a, &[a_len], dtype),
        gpu.upload_as(&b, &[b_len], dtype),
    );
    let c = gpu.empty_as(&[want.len()], dtype);
    let mut rec = Recorder::new(gpu);
    matmul_planned(
        &mut rec,
        &c,
        &ta,
        &tb,
        small,
        1.0,
        false,
        Epilogue::None,
        plan,
    );
    rec.finish().map_err(|e| e.to_string())?;
    let got = gpu.read(&c).map_err(|e| e.to_string())?;
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(&want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0f32, f32::max);
    // f16 outputs round to 11 significant bits (half an ulp is 2^-11 of the value).
    let rel = match dtype {
        DType::F16 => 1e-3,
        DType::F32 => 4e-6,
    };
    if err.is_finite() && err <= rel * scale {
        Ok(())
    } else {
        Err(format!(
            "{} ({dtype:?}) on {small:?}: max error {err:e} against the CPU twin",
            plan.name()
        ))
    }
}

/// Checks every choice the device holds from a tuning cache against the CPU twin: each
/// product's plan, each attention variant (at its head size and type) and the large-product
/// tile; returns how many there were and what failed (an unreadable choice fails too).
pub fn verify_cached(gpu: &Gpu) -> (usize, Vec<String>) {
    let choices = gpu.choices();
    let mut fails = Vec::new();
    // A cooperative plan the device does not run (cooperative matrices turned off) is never
    // chosen, so it cannot give a wrong result here.
    let check = |p: Plan, d: &MatmulDims, t: DType| {
        if p.is_coop() && !p.coop_runs(gpu) {
            Ok(())
        } else {
            verify(gpu, p, d, t)
        }
    };
    for (key, value) in &choices {
        let checked = if let Some((d, t)) = MatmulDims::from_key_for(key) {
            Plan::parse(value)
                .ok_or_else(|| format!("{key}: unreadable plan '{value}'"))
                .and_then(|p| check(p, &d, t))
        } else if let Some((pass, d, t)) = attention_plan::from_key(key) {
            attention_plan::variant_name(&pass, value)
                .ok_or_else(|| format!("{key}: unreadable variant '{value}'"))
                .and_then(|v| verify_attention(gpu, &pass, v, d.head_dim, t))
        } else if key == LARGE_TILE {
            // Every tile a product may take from the ranking.
            large_tiles(value)
                .ok_or_else(|| format!("{key}: unreadable tiles '{value}'"))
                .and_then(|tiles| {
                    let d = MatmulDims::new(132, 136, 100);
                    tiles.into_iter().try_for_each(|tile| {
                        verify(gpu, Plan::Vec4 { tile, splits: 1 }, &d, DType::F32)
                    })
                })
        } else if let Some((pass, t)) = attention_plan::calibrated_pass(key) {
            // A variant the device does not run here is never taken (see `check` above).
            let rec = Recorder::new(gpu);
            let d = AttnDims::new(1, 2, 37, 64);
            let runs = if pass == "forward" {
                Forward::parse(value).map(|f| (f.name(), f.runs(&rec, &d, t)))
            } else {
                Backward::parse(value).map(|b| (b.name(), b.runs(&rec, &d, t)))
            };
            match runs {
                None => Err(format!("{key}: unreadable variant '{value}'")),
                Some((name, true)) => verify_attention(gpu, pass, name, 64, t),
                Some((_, false)) => Ok(()),
            }
        } else if key == SPLIT_F16 {
            // Which of two checked defaults split K: nothing of its own to check.
            match value.as_str() {
                "coop" | "vec4" => Ok(()),
                _ => Err(format!("{key}: unreadable choice '{value}'")),
            }
        } else if key == LARGE_COOP {
            Plan::parse(value)
                .filter(|p| matches!(p, Plan::Coop | Plan::CoopWide))
                .ok_or_else(|| format!("{key}: unreadable plan '{value}'"))
                .and_then(|p| check(p, &MatmulDims::new(132, 136, 100), DType::F16))
        } else {
            Err(format!("{key}: not a choice this version knows"))
        };
        if let Err(e) = checked {
            fails.push(e);
        }
    }
    (choices.len(), fails)
}

/// One tuned product: its dims and operand type, the default plan's time, and the winner's.
#[derive(Clone, Debug)]
pub struct Tuned {
    /// The product.
    pub dims: MatmulDims,
    /// Its operands' storage type.
    pub dtype: DType,
    /// Default plan and its seconds.
    pub default: (Plan, f64),
    /// Fastest plan and its seconds.
    pub best: (Plan, f64),
}

/// The shape keys of the kernels one training step of `cfg` runs (from a dry run).
fn step_shapes(gpu: &Gpu, cfg: &TrainConfig) -> Result<Vec<String>, String> {
    cfg.check_batch_memory()?;
    let dry = gpu.dry_run();
    let mut trainer =
        crate::train::trainer::Trainer::new(&dry, cfg.clone()).map_err(|e| e.to_string())?;
    let batch = crate::train::plan::dry_batch(cfg, 0, false);
    trainer.submit_step(&batch).map_err(|e| e.to_string())?;
    Ok(dry.shapes())
}

/// The distinct products one training step of `cfg` runs, with their operands' type (from a dry
/// run).
pub fn products(gpu: &Gpu, cfg: &TrainConfig) -> Result<Vec<(MatmulDims, DType)>, String> {
    Ok(step_shapes(gpu, cfg)?
        .iter()
        .filter_map(|k| MatmulDims::from_key_for(k))
        .collect())
}

/// The distinct attention passes one training step of `cfg` runs: ("forward" or "backward",
/// dims, operand type), from a dry run.
pub fn attention_calls(gpu: &Gpu, cfg: &TrainConfig) -> Result<Vec<AttnCall>, String> {
    Ok(step_shapes(gpu, cfg)?
        .iter()
        .filter_map(|k| attention_plan::from_key(k))
        .collect())
}

/// Times every candidate plan of every product in `products` (`reps` repetitions, median), after
/// checking each variant against the CPU twin (one that fails is left out with a warning, or is
/// an error if it is the default); stores the winners in the device's choices. `progress` sees
/// each product as it is done and may stop the tune there.
pub fn tune(
    gpu: &Gpu,
    products: &[(MatmulDims, DType)],
    reps: usize,
    mut progress: impl FnMut(&Tuned) -> ControlFlow<()>,
) -> Result<Vec<Tuned>, String> {
    let (mut verified, mut rejected) = (BTreeSet::new(), BTreeSet::new());
    let mut out = Vec::new();
    for &(d, dtype) in products {
        let default = Plan::untuned(gpu, &d, dtype);
        let (a_len, b_len) = d.operand_lens();
        let a = gpu.upload_as(&random(a_len, 1, -1.0, 1.0), &[a_len], dtype);
        let b = gpu.upload_as(&random(b_len, 2, -1.0, 1.0), &[b_len], dtype);
        let c = gpu.empty_as(&[d.batch * d.m * d.n], dtype);
        let mut plans = Plan::candidates_for(&d, gpu.cpu_driver());
        if dtype == DType::F16 {
            plans.extend(Plan::coop_candidates(gpu, &d));
        }
        // A CPU driver's default split (128 / tiles) need not be a candidate; timed anyway, so
        // the report's "default" column is measured, not the best one repeated.
        if !plans.contains(&default) {
            plans.push(default);
        }
        let mut times = Vec::new();
        for plan in plans {
            let variant = (
                plan.name(),
                d.trans_a,
                d.trans_b,
                d.broadcast_b,
                dtype == DType::F16,
            );
            if rejected.contains(&variant) {
                continue;
            }
            if verified.insert(variant.clone()) {
                // A plan other than the default that fails its check is left out, so the tune
                // still weighs the rest (a failing default is an error), as for attention.
                if let Err(e) = verify(gpu, plan, &d, dtype) {
                    if plan == default {
                        return Err(e);
                    }
                    log::warn!("{e}; left out of the tune");
                    rejected.insert(variant);
                    continue;
                }
            }
            let (t, _) = crate::bench::time(gpu, reps, |rec| {
                matmul_planned(rec, &c, &a, &b, d, 1.0, false, Epilogue::None, plan)
            })
            .map_err(|e| e.to_string())?;
            times.push((plan, t));
        }
        let best = times
            .iter()
            .copied()
            .min_by(|x, y| x.1.total_cmp(&y.1))
            .ok_or("no candidate plan")?;
        let def = times
            .iter()
            .copied()
            .find(|(p, _)| p.name() == default.name())
            .unwrap_or(best);
        gpu.set_choice(&d.key_for(dtype), &best.0.name());
        let t = Tuned {
            dims: d,
            dtype,
            default: def,
            best,
        };
        let flow = progress(&t);
        out.push(t);
        if flow.is_break() {
            break;
        }
    }
    Ok(out)
}

/// Writes the device's choices to this adapter's cache file (atomically), merged over what the
/// file already holds; returns its path.
pub fn save(gpu: &Gpu) -> Result<PathBuf, String> {
    let path = cache_path(gpu).ok_or("no cache folder (set DINOSCOPE_CACHE_DIR)")?;
    let (adapter, driver) = identity(gpu);
    let mut cache = match read_cache(&path) {
        Ok(found) => found,
        Err(why) => {
            // A hand edit's typo must not cost every plan timed so far: the file is kept.
            // An earlier damaged file kept here stays too.
            let kept = crate::io::tagged_names(&path, "damaged")
                .find(|p| p.symlink_metadata().is_err())
                .ok_or_else(|| format!("{} ({why}): no free name to keep it", path.display()))?;
            std::fs::rename(&path, &kept).map_err(|e| {
                format!(
                    "{} ({why}) cannot be moved aside to {}: {e}",
                    path.display(),
                    kept.display()
                )
            })?;
            log::warn!(
                "{}: {why}; kept as {} and a new cache started",
                path.display(),
                kept.display()
            );
            None
        }
    }
    .filter(|c| c.adapter == adapter && c.driver == driver && c.wgpu == WGPU_VERSION)
    .unwrap_or_default();
    cache.adapter = adapter;
    cache.driver = driver;
    cache.wgpu = WGPU_VERSION.into();
    cache.plans.extend(gpu.choices());
    let text = ron::ser::to_string_pretty(&cache, ron::ser::PrettyConfig::default())
        .map_err(|e| e.to_string())?;
    if let Some(dir) = path.parent() {
        if dir.exists() && !dir.is_dir() {
            return Err(format!("{}: not a folder", dir.display()));
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    crate::io::write_atomic(&path, text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

/// The cache file at `path`: `None` where there is none, an error saying why where a file is
/// there but does not read as a cache.
fn read_cache(path: &Path) -> Result<Option<TuneCache>, String> {
    if crate::io::is_device_or_pipe(path) {
        return Err("not a regular file, so not a tuning cache".into());
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read the tuning cache: {e}")),
    };
    let text =
        String::from_utf8(bytes).map_err(|_| "not a tuning cache (not UTF-8 text)".to_string())?;
    ron::from_str::<TuneCache>(&text)
        .map(Some)
        .map_err(|e| format!("not a tuning cache ({e})"))
}

/// One attention pass of a step: "forward" or "backward", its dims, its operands' type.
pub type AttnCall = (String, AttnDims, DType);

/// One tuned attention pass: the call, the default variant's name and time, the winner's.
#[derive(Clone, Debug)]
pub struct TunedAttention {
    /// The pass.
    pub call: AttnCall,
    /// Default variant and its seconds.
    pub default: (&'static str, f64),
    /// Fastest variant and its seconds.
    pub best: (&'static str, f64),
}

/// The variants of a pass that run on this device for `dims` and `dtype`, the default first.
fn attention_variants(gpu: &Gpu, pass: &str, dims: &AttnDims, dtype: DType) -> Vec<&'static str> {
    let rec = Recorder::new(gpu);
    if pass == "forward" {
        let d = Forward::default_for(&rec);
        std::iter::once(d)
            .chain(
                Forward::ALL
                    .into_iter()
                    .filter(|f| *f != d && f.runs(&rec, dims, dtype)),
            )
            .map(Forward::name)
            .collect()
    } else {
        let d = Backward::default_for(&rec);
        std::iter::once(d)
            .chain(
                Backward::ALL
                    .into_iter()
                    .filter(|b| *b != d && b.runs(&rec, dims, dtype)),
            )
            .map(Backward::name)
            .collect()
    }
}

/// The tensors of one attention call on [B·H, N, d] heads, and how to record its pass with a
/// forced variant.
struct AttnRun {
    d: AttnDims,
    q: crate::gpu::Tensor,
    k: crate::gpu::Tensor,
    v: crate::gpu::Tensor,
    dout: crate::gpu::Tensor,
    out: crate::gpu::Tensor,
    lse: crate::gpu::Tensor,
    grads: [crate::gpu::Tensor; 3],
}

impl AttnRun {
    fn new(gpu: &Gpu, d: AttnDims, dtype: DType, data: &[Vec<f32>; 4]) -> Result<AttnRun, String> {
        let s = [d.batch, d.heads, d.n_q, d.head_dim];
        let up = |x: &[f32]| gpu.upload_as(x, &s, dtype);
        let (q, k, v, dout) = (up(&data[0]), up(&data[1]), up(&data[2]), up(&data[3]));
        let out = gpu.empty_as(&s, dtype);
        let mut rec = Recorder::new(gpu);
        let lse = crate::kernels::attention::attention_forward(
            &mut rec,
            &out,
            &q,
            &k,
            &v,
            d,
            Self::layout(&d),
            Self::out_layout(&d),
        );
        rec.finish().map_err(|e| e.to_string())?;
        let grads = [0; 3].map(|_| gpu.empty_as(&s, dtype));
        Ok(AttnRun {
            d,
            q,
            k,
            v,
            dout,
            out,
            lse,
            grads,
        })
    }

    fn layout(d: &AttnDims) -> QkvLayout {
        QkvLayout::bhnd(d.heads, d.n_q, d.head_dim)
    }

    fn out_layout(d: &AttnDims) -> OutLayout {
        OutLayout::bhnd(d.heads, d.n_q, d.head_dim)
    }

    /// Records the pass with `variant` forced; the forward writes `out`, the backward `grads`.
    fn record(&self, rec: &mut Recorder, pass: &str, variant: &'static str) {
        let (d, l, ol) = (self.d, Self::layout(&self.d), Self::out_layout(&self.d));
        if pass == "forward" {
            rec.force(attention_plan::FORWARD, Some(variant));
            let _ = crate::kernels::attention::attention_forward(
                rec, &self.out, &self.q, &self.k, &self.v, d, l, ol,
            );
        } else {
            rec.force(attention_plan::BACKWARD, Some(variant));
            let [dq, dk, dv] = &self.grads;
            crate::kernels::attention::attention_backward(
                rec, dq, dk, dv, &self.dout, &self.q, &self.k, &self.v, &self.out, &self.lse, d, l,
                ol,
            );
        }
    }
}

/// Checks one variant of a pass against the CPU twin on a small call of the same head size
/// with `dtype` operands (f16: on the twin's f16-rounded inputs, within f16 rounding).
pub fn verify_attention(
    gpu: &Gpu,
    pass: &str,
    variant: &'static str,
    hd: usize,
    dtype: DType,
) -> Result<(), String> {
    let (b, h, n) = (1, 2, 37);
    let d = AttnDims::new(b, h, n, hd);
    let len = b * h * n * hd;
    let mut data = [
        random(len, 71, -2.0, 2.0),
        random(len, 72, -2.0, 2.0),
        random(len, 73, -1.0, 1.0),
        random(len, 74, -1.0, 1.0),
    ];
    if dtype == DType::F16 {
        for x in &mut data {
            *x = crate::half::round_trip(x);
        }
    }
    let [q, k, v, dout] = &data;
    let run = AttnRun::new(gpu, d, dtype, &data)?;
    let mut rec = Recorder::new(gpu);
    run.record(&mut rec, pass, variant);
    rec.finish().map_err(|e| e.to_string())?;
    let read = |t: &crate::gpu::Tensor| gpu.read(t).map_err(|e| e.to_string());
    let pairs: Vec<(Vec<f32>, Vec<f32>)> = if pass == "forward" {
        let (o, _, l) = crate::cpu::attention::attention_forward(q, k, v, b * h, n, n, hd, d.scale);
        vec![(read(&run.out)?, o), (read(&run.lse)?, l)]
    } else {
        let (dq, dk, dv) =
            crate::cpu::attention::attention_backward(dout, q, k, v, b * h, n, n, hd, d.scale);
        let [gq, gk, gv] = &run.grads;
        vec![(read(gq)?, dq), (read(gk)?, dk), (read(gv)?, dv)]
    };
    let rel = match dtype {
        DType::F16 => 4e-3,
        DType::F32 => 2e-5,
    };
    for (got, want) in &pairs {
        let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let err = got
            .iter()
            .zip(want)
            .map(|(g, w)| (g - w).abs())
            .fold(0.0f32, f32::max);
        if !(err.is_finite() && err <= rel * scale) {
            return Err(format!(
                "attention {pass} '{variant}' ({dtype:?}, head {hd}): max error {err:e} against \
                 the CPU twin"
            ));
        }
    }
    Ok(())
}

/// Times every variant of every attention pass in `calls` that runs on this device (`reps`
/// repetitions, median), after checking each against the CPU twin (one that fails is left out
/// with a warning; a failing default is an error); stores the winners in the device's choices.
/// `progress` sees each pass as it is done and may stop the tune there.
pub fn tune_attention(
    gpu: &Gpu,
    calls: &[AttnCall],
    reps: usize,
    mut progress: impl FnMut(&TunedAttention) -> ControlFlow<()>,
) -> Result<Vec<TunedAttention>, String> {
    let mut verified = BTreeSet::new();
    let mut rejected = BTreeSet::new();
    let mut out = Vec::new();
    for (pass, d, dtype) in calls {
        // The runtime's attention is self-attention: as many keys as queries.
        if d.n_q != d.n_k {
            continue;
        }
        let len = d.batch * d.heads * d.n_q * d.head_dim;
        let data = [
            random(len, 81, -2.0, 2.0),
            random(len, 82, -2.0, 2.0),
            random(len, 83, -1.0, 1.0),
            random(len, 84, -1.0, 1.0),
        ];
        let run = AttnRun::new(gpu, *d, *dtype, &data)?;
        let mut times = Vec::new();
        for (i, variant) in attention_variants(gpu, pass, d, *dtype)
            .into_iter()
            .enumerate()
        {
            let id = (pass.clone(), variant, d.head_dim, *dtype == DType::F16);
            if rejected.contains(&id) {
                continue;
            }
            if verified.insert(id.clone()) {
                // A variant other than the default that fails its check is left out, so the
                // tune still weighs the rest (a failing default is an error).
                if let Err(e) = verify_attention(gpu, pass, variant, d.head_dim, *dtype) {
                    if i == 0 {
                        return Err(e);
                    }
                    log::warn!("{e}; left out of the tune");
                    rejected.insert(id);
                    continue;
                }
            }
            let (t, _) = crate::bench::time(gpu, reps, |rec| run.record(rec, pass, variant))
                .map_err(|e| e.to_string())?;
            times.push((variant, t));
        }
        let default = *times.first().ok_or("no attention variant")?;
        let best = times
            .iter()
            .copied()
            .min_by(|x, y| x.1.total_cmp(&y.1))
            .unwrap_or(default);
        gpu.set_choice(&attention_plan::key(pass, d, *dtype), best.0);
        let t = TunedAttention {
            call: (pass.clone(), *d, *dtype),
            default,
            best,
        };
        let flow = progress(&t);
        out.push(t);
        if flow.is_break() {
            break;
        }
    }
    Ok(out)
}
