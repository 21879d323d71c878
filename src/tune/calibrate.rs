//! First-run calibrations: what a device takes for large products and f16 attention without a
//! tune, timed once on a few representative calls and cached like `tune`'s choices.

use super::{cache_path, save, verify, verify_attention, AttnRun};
use crate::gpu::{DType, Gpu};
use crate::kernels::attention::AttnDims;
use crate::kernels::attention_plan::{self, Backward, Forward};
use crate::kernels::matmul::{
    large_tiles, matmul_planned, Epilogue, MatmulDims, Plan, V4Tile, LARGE_COOP, LARGE_TILE,
    SPLIT_F16,
};
use crate::selftest::checks_random as random;
use std::path::PathBuf;

/// The tile `calibrate` chose, and each tile's seconds when it timed them.
pub type Calibrated = (V4Tile, Vec<(V4Tile, f64)>);

/// The device's vec4 tile for large products: the one this adapter's cache names, else the
/// fastest of the vec4 tiles that pass a check against the CPU twin on one large product
/// (4096×4096×1024, f32), timed now and saved to
/// the cache so later runs skip the timing; products with many tiles then take it unless a
/// tuned plan of their own says otherwise (`Plan::untuned`). All the tiles add in the same
/// order, so the choice changes speed, never results. CPU drivers keep their barrier-free
/// default and are not timed, nor is a dry-run device; `DINOSCOPE_CALIBRATE=0` turns it off,
/// and `=1` times CPU drivers too (on a 256×256×256 product). Returns the tile and each tile's
/// seconds when it timed them (empty when the cache had it).
pub fn calibrate(gpu: &Gpu) -> Result<Option<Calibrated>, String> {
    if !calibration_on(gpu) {
        return Ok(None);
    }
    if let Some(ranked) = gpu.choice(LARGE_TILE).and_then(|v| large_tiles(&v)) {
        let best = ranked.first().copied().unwrap_or(V4Tile::T64);
        return Ok(Some((best, Vec::new())));
    }
    let all: Vec<Plan> = V4Tile::ALL
        .into_iter()
        .map(|tile| Plan::Vec4 { tile, splits: 1 })
        .collect();
    let _marker = UnderWay::new(gpu);
    let plans = passing(
        gpu,
        &all,
        &large_dims(gpu),
        DType::F32,
        "large-product tile",
    );
    if plans.is_empty() {
        log::warn!("no vec4 tile passed its check: large products keep the default, uncached");
        return Ok(None);
    }
    let times: Vec<(V4Tile, f64)> = time_large(gpu, DType::F32, &plans)?
        .into_iter()
        .filter_map(|(p, t)| match p {
            Plan::Vec4 { tile, .. } => Some((tile, t)),
            _ => None,
        })
        .collect();
    // Fastest first, down to the 64×64 tile: a product takes the first it has enough of.
    let mut ranked = times.clone();
    ranked.sort_by(|x, y| x.1.total_cmp(&y.1));
    let best = ranked.first().map_or(V4Tile::T64, |(t, _)| *t);
    let upto = ranked
        .iter()
        .position(|(t, _)| *t == V4Tile::T64)
        .map_or(ranked.len(), |i| i + 1);
    let value: Vec<&str> = ranked[..upto].iter().map(|(t, _)| t.name()).collect();
    keep(gpu, LARGE_TILE, &value.join(","));
    Ok(Some((best, times)))
}

/// The cooperative-matrix plan `calibrate_coop` chose, and each plan's seconds when it timed them.
pub type CalibratedCoop = (Plan, Vec<(Plan, f64)>);

/// The cooperative-matrix tile for large f16 products, where the adapter runs both the square tile
/// and the wide one and untuned f16 products take them (`Gpu::coop_by_default`): the one this
/// adapter's cache names, else the faster of those that pass their check on one large f16 product,
/// timed now and cached as [`calibrate`] does (the same switches). Untuned f16 products with at
/// least [`LARGE_TILES`](crate::kernels::matmul::LARGE_TILES) wide tiles then take the wide one if
/// it won (`Plan::untuned`). Returns the plan and each plan's seconds when it timed them.
pub fn calibrate_coop(gpu: &Gpu) -> Result<Option<CalibratedCoop>, String> {
    let plans = Plan::coop_plans(gpu);
    if !calibration_on(gpu) || plans.len() < 2 || !gpu.coop_by_default() {
        return Ok(None);
    }
    if let Some(p) = gpu.choice(LARGE_COOP).and_then(|v| Plan::parse(&v)) {
        if plans.contains(&p) {
            return Ok(Some((p, Vec::new())));
        }
    }
    let _marker = UnderWay::new(gpu);
    let plans = passing(
        gpu,
        &plans,
        &large_dims(gpu),
        DType::F16,
        "large f16 product",
    );
    if plans.is_empty() {
        log::warn!(
            "no cooperative-matrix tile passed its check: f16 products keep the default, uncached"
        );
        return Ok(None);
    }
    let times = time_large(gpu, DType::F16, &plans)?;
    let best = times
        .iter()
        .min_by(|x, y| x.1.total_cmp(&y.1))
        .map_or(Plan::Coop, |(p, _)| *p);
    keep(gpu, LARGE_COOP, &best.name());
    Ok(Some((best, times)))
}

/// What `calibrate_split` chose (`coop` or `vec4`), and each split plan's seconds when it
/// timed them.
pub type CalibratedSplit = (String, Vec<(Plan, f64)>);

/// Which kernel splits K for untuned f16 products with a long K over few tiles (the weight
/// gradients), where f16 products take cooperative matrices by default: the choice this
/// adapter's cache holds, else the faster on one such product of the cooperative kernel's split
/// ([`Plan::coop_splits`]) and the vec4 kernel's ([`Plan::for_dims`]): the weight gradient of
/// ViT-S's fc1 at batch 64 (1536×384×32768, A transposed; 256×64×4096 on a CPU driver), f16
/// operands and f32 products as the mixed-precision step has them. Each is first checked against
/// the CPU twin, and one that fails is not taken; then cached as [`calibrate`] does (the same
/// switches). Without a calibration the cooperative split is the default.
pub fn calibrate_split(gpu: &Gpu) -> Result<Option<CalibratedSplit>, String> {
    let Some(side) = gpu.coop_side() else {
        return Ok(None);
    };
    if !calibration_on(gpu) || !gpu.coop_by_default() {
        return Ok(None);
    }
    if let Some(v) = gpu.choice(SPLIT_F16).filter(|v| v == "coop" || v == "vec4") {
        return Ok(Some((v, Vec::new())));
    }
    let d = if gpu.cpu_driver() {
        MatmulDims::new(256, 64, 4096).ta()
    } else {
        MatmulDims::new(1536, 384, 32768).ta()
    };
    let plans = [
        Plan::CoopSplit {
            splits: Plan::coop_splits(&d, side).max(2),
        },
        Plan::for_dims(&d),
    ];
    let _marker = UnderWay::new(gpu);
    let checked = passing(gpu, &plans, &d, DType::F16, "f16 split");
    if checked.is_empty() {
        // Never the cooperative split that just failed (the default otherwise).
        log::warn!("neither split passed its check: f16 products take the vec4 split");
        keep(gpu, SPLIT_F16, "vec4");
        return Ok(Some(("vec4".to_string(), Vec::new())));
    }
    let (a_len, b_len) = d.operand_lens();
    let a = gpu.upload_as(&random(a_len, 1, -1.0, 1.0), &[a_len], DType::F16);
    let b = gpu.upload_as(&random(b_len, 2, -1.0, 1.0), &[b_len], DType::F16);
    let c = gpu.empty(&[d.m, d.n]);
    let mut times = Vec::new();
    for plan in checked {
        let (t, _) = crate::bench::time(gpu, 3, |rec| {
            matmul_planned(rec, &c, &a, &b, d, 1.0, false, Epilogue::None, plan)
        })
        .map_err(|e| e.to_string())?;
        times.push((plan, t));
    }
    // A cooperative split that failed its check is never the default.
    let best = times.iter().min_by(|x, y| x.1.total_cmp(&y.1));
    let choice = if best.is_some_and(|(p, _)| p.is_coop()) {
        "coop"
    } else {
        "vec4"
    };
    keep(gpu, SPLIT_F16, choice);
    Ok(Some((choice.to_string(), times)))
}

/// Whether the first-run calibrations run on this device (see [`calibrate`]).
fn calibration_on(gpu: &Gpu) -> bool {
    let env = std::env::var("DINOSCOPE_CALIBRATE").unwrap_or_default();
    let forced = env == "1";
    !(env == "0" || gpu.is_dry() || (gpu.cpu_driver() && !forced) || !gpu.has_timestamps())
}

/// Those of `plans` that give the CPU twin's results on a small product of `d`'s layout and
/// `dtype` operands ([`verify`]); each that does not is left out with a warning naming the
/// calibration. So a kernel that a driver compiles wrong is never a default: it costs speed,
/// not results.
fn passing(gpu: &Gpu, plans: &[Plan], d: &MatmulDims, dtype: DType, what: &str) -> Vec<Plan> {
    let mut ok = Vec::new();
    for &plan in plans {
        match verify(gpu, plan, d, dtype) {
            Ok(()) => ok.push(plan),
            Err(e) => log::warn!("{} left out of the {what} calibration: {e}", plan.name()),
        }
    }
    ok
}

/// The large product the tile calibrations time: 4096×4096×1024, or 256³ on a CPU driver.
fn large_dims(gpu: &Gpu) -> MatmulDims {
    if gpu.cpu_driver() {
        MatmulDims::new(256, 256, 256)
    } else {
        MatmulDims::new(4096, 4096, 1024)
    }
}

/// Each plan's seconds on the large product with `dtype` operands, the median of three.
fn time_large(gpu: &Gpu, dtype: DType, plans: &[Plan]) -> Result<Vec<(Plan, f64)>, String> {
    let d = large_dims(gpu);
    let a = gpu.upload_as(&random(d.m * d.k, 1, -1.0, 1.0), &[d.m, d.k], dtype);
    let b = gpu.upload_as(&random(d.k * d.n, 2, -1.0, 1.0), &[d.k, d.n], dtype);
    let c = gpu.empty_as(&[d.m, d.n], dtype);
    let mut times = Vec::new();
    for &plan in plans {
        let (t, _) = crate::bench::time(gpu, 3, |rec| {
            matmul_planned(rec, &c, &a, &b, d, 1.0, false, Epilogue::None, plan)
        })
        .map_err(|e| e.to_string())?;
        times.push((plan, t));
    }
    Ok(times)
}

/// Stores a calibration's choice and saves the cache; without a writable cache the choice
/// still holds for this run.
fn keep(gpu: &Gpu, key: &str, value: &str) {
    gpu.set_choice(key, value);
    if let Err(e) = save(gpu) {
        log::warn!("the {key} could not be cached: {e}");
    }
}

/// What `calibrate_attention` chose for one pass: the operand type, the pass ("forward" or
/// "backward"), the variant's name, and each variant's seconds when it timed them (empty: the
/// cache had it).
pub type CalibratedPass = (DType, &'static str, &'static str, Vec<(&'static str, f64)>);

/// The attention variants calls take without a tuned choice of their own, each pass: the ones
/// this adapter's cache names, else the fastest on a ViT-S-sized call (16 images, 6 heads, 257
/// tokens, head 64; 1 image of 65 tokens on a CPU driver), each first checked against the CPU
/// twin (one that fails is left out), then cached as [`calibrate`] does (the same switches).
/// The variants are each pass's `calibration_candidates` in the device's own layout: for f32
/// the GPU layout's splits of a token and the crossed forward, for f16 the default against
/// cooperative matrices where f16 products take them by default and, in the GPUs' layout,
/// against the crossed forward (also where there are no cooperative matrices). Returns one
/// entry a pass and type with more than one candidate.
pub fn calibrate_attention(gpu: &Gpu) -> Result<Vec<CalibratedPass>, String> {
    calibrate_attention_in(gpu, gpu.cpu_driver())
}

/// [`calibrate_attention`] in the CPU drivers' layout or the GPUs' (`cpu_layouts`), so a CPU
/// adapter can time the GPU variants too (the tests).
pub fn calibrate_attention_in(gpu: &Gpu, cpu_layouts: bool) -> Result<Vec<CalibratedPass>, String> {
    if !calibration_on(gpu) {
        return Ok(Vec::new());
    }
    let (batch, n) = if gpu.cpu_driver() { (1, 65) } else { (16, 257) };
    let d = AttnDims::new(batch, 6, n, 64);
    let mut rec = crate::gpu::Recorder::new(gpu);
    rec.set_cpu_layouts(cpu_layouts);
    let coop = Forward::Coop.runs(&rec, &d, DType::F16)
        && Backward::Coop.runs(&rec, &d, DType::F16)
        && gpu.coop_by_default();
    // f16 calls: the cooperative kernels where they are the default; else, on a GPU, the plain
    // kernels' variants, where the adapter runs f16 at all. (Not on a CPU driver timing the
    // GPUs' layout: f16 choices hold in both layouts.)
    let f16 = coop || (!gpu.cpu_driver() && gpu.features.contains(wgpu::Features::SHADER_F16));
    let mut passes: Vec<(DType, &'static str, Vec<&'static str>)> = Vec::new();
    for dtype in [DType::F32, DType::F16] {
        if dtype == DType::F16 && !f16 {
            continue;
        }
        let forwards = Forward::calibration_candidates(&rec, &d, dtype);
        let backwards = Backward::calibration_candidates(&rec, &d, dtype);
        let names: [(&'static str, Vec<&'static str>); 2] = [
            ("forward", forwards.into_iter().map(Forward::name).collect()),
            (
                "backward",
                backwards.into_iter().map(Backward::name).collect(),
            ),
        ];
        for (pass, names) in names {
            if names.len() > 1 {
                passes.push((dtype, pass, names));
            }
        }
    }
    drop(rec);
    let mut out = Vec::new();
    let mut runs: Vec<(DType, AttnRun)> = Vec::new();
    let mut marker = None;
    for (dtype, pass, variants) in passes {
        let key = attention_plan::calibrated_key(pass, dtype);
        if let Some(name) = gpu
            .choice(key)
            .and_then(|v| attention_plan::variant_name(pass, &v))
        {
            out.push((dtype, pass, name, Vec::new()));
            continue;
        }
        marker.get_or_insert_with(|| UnderWay::new(gpu));
        if !runs.iter().any(|(t, _)| *t == dtype) {
            let len = batch * 6 * n * 64;
            let data = [81, 82, 83, 84].map(|seed| random(len, seed, -1.0, 1.0));
            runs.push((dtype, AttnRun::new(gpu, d, dtype, &data)?));
        }
        let Some((_, run)) = runs.iter().find(|(t, _)| *t == dtype) else {
            continue;
        };
        let mut times = Vec::new();
        for v in &variants {
            // A variant that fails its check is left out (and the default kept), so a driver
            // that gets a kernel wrong costs a warning once, not every start.
            if let Err(e) = verify_attention(gpu, pass, v, 64, dtype) {
                log::warn!("{e}; {dtype:?} attention keeps the other kernels");
                continue;
            }
            let (t, _) = crate::bench::time(gpu, 3, |rec| {
                rec.set_cpu_layouts(cpu_layouts);
                run.record(rec, pass, v)
            })
            .map_err(|e| e.to_string())?;
            times.push((*v, t));
        }
        let best = times
            .iter()
            .min_by(|x, y| x.1.total_cmp(&y.1))
            .map_or(variants[0], |(v, _)| *v);
        keep(gpu, key, best);
        out.push((dtype, pass, best, times));
    }
    Ok(out)
}

/// The calibrations' marker file, beside this adapter's cache: it exists while a calibration
/// checks and times kernels (see [`calibrate_first_run`]).
pub fn marker_path(gpu: &Gpu) -> Option<PathBuf> {
    cache_path(gpu).map(|p| p.with_extension("calibrating"))
}

/// While alive, the calibrations' marker file exists: made before a calibration runs its first
/// kernel, removed when it returns (with the `.interrupted` one an earlier stopped run left). A
/// process that crashes in between (or panics) leaves it; one that a signal ends moves it to
/// `.interrupted` the first time, so the next run calibrates again.
struct UnderWay {
    path: Option<PathBuf>,
    _on_signal: Option<crate::train::interrupt::MoveOnSignal>,
}

impl UnderWay {
    fn new(gpu: &Gpu) -> UnderWay {
        let Some(path) = marker_path(gpu) else {
            return UnderWay {
                path: None,
                _on_signal: None,
            };
        };
        // A Ctrl-C (or SIGTERM, SIGHUP) may stop a hung driver or just a user: the first time
        // the marker is moved aside and the next run times again; if that run is stopped too,
        // the marker stays and later runs skip the timings.
        let interrupted = path.with_extension("interrupted");
        let guard = (!interrupted.exists())
            .then(|| crate::train::interrupt::move_on_signal(&path, &interrupted));
        let text = "dinoscope is timing kernels for this adapter's first-run calibrations. If no \
                    dinoscope process is running, one stopped while doing so (a fault in the GPU \
                    driver, or an interruption); delete this file to time them again.\n";
        let written = path
            .parent()
            .is_some_and(|dir| std::fs::create_dir_all(dir).is_ok())
            && std::fs::write(&path, text).is_ok();
        if written {
            log::debug!("calibration marker written: {}", path.display());
        }
        UnderWay {
            path: written.then_some(path),
            _on_signal: guard,
        }
    }
}

impl Drop for UnderWay {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            if !std::thread::panicking() {
                let _ = std::fs::remove_file(path.with_extension("interrupted"));
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// Every first-run calibration ([`calibrate`], [`calibrate_coop`], [`calibrate_split`],
/// [`calibrate_attention`]); returns a line for each that timed something (what it chose and the
/// times), for the log. A marker file lives beside the cache while they check and time kernels
/// ([`marker_path`]). If it is there when they start, an earlier run died while timing (a driver
/// fault would otherwise take down every start) or another is timing now: they are skipped, the
/// defaults and cached choices stand, and the error names the file to delete.
pub fn calibrate_first_run(gpu: &Gpu) -> Result<Vec<String>, String> {
    if let Some(path) = marker_path(gpu).filter(|p| calibration_on(gpu) && p.exists()) {
        return Err(format!(
            "the first-run calibrations were skipped: {} says an earlier run stopped while \
             timing them (a fault in the GPU driver, or an interruption), or another is timing \
             them now; the defaults stand. Delete it to time them again",
            path.display()
        ));
    }
    let mut lines = Vec::new();
    if let Some((tile, times)) = calibrate(gpu)? {
        if !times.is_empty() {
            // The ranking too: a product with too few of the first takes the next.
            let ranked = gpu.choice(LARGE_TILE).unwrap_or_default();
            lines.push(format!(
                "large products take {} tiles (ranked {ranked}; {times:?})",
                tile.name()
            ));
        }
    }
    if let Some((plan, times)) = calibrate_coop(gpu)? {
        if !times.is_empty() {
            lines.push(format!(
                "large f16 products take {} ({times:?})",
                plan.name()
            ));
        }
    }
    if let Some((choice, times)) = calibrate_split(gpu)? {
        if !times.is_empty() {
            lines.push(format!(
                "long-K f16 products take the {choice} kernel's split ({times:?})"
            ));
        }
    }
    for (dtype, pass, variant, times) in calibrate_attention(gpu)? {
        if !times.is_empty() {
            let t = if dtype == DType::F16 { "f16" } else { "f32" };
            lines.push(format!(
                "{t} attention takes the {variant} {pass} ({times:?})"
            ));
        }
    }
    Ok(lines)
}
