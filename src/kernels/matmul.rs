//! Batched matmul with transposes and a fused bias/GELU epilogue. Products whose contiguous
//! dimensions are multiples of 4 (every product of the ViTs and heads) run the register-resident
//! vec4 kernels of shaders/matmul_v4.wgsl, with split K for products too small to fill the GPU;
//! the rest run the general kernel of shaders/matmul.wgsl.

use crate::gpu::{grid_1d, Access::*, DType, Kernel, Recorder, Tensor};

mod dims;
mod plan;
pub use dims::MatmulDims;
pub use plan::{large_tiles, Plan, Tile, V4Tile, LARGE_COOP, LARGE_TILE, LARGE_TILES, SPLIT_F16};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch_offset: u32,
    a_batch_stride: u32,
    b_batch_stride: u32,
    c_batch_stride: u32,
    trans_a: u32,
    trans_b: u32,
    epilogue: u32,
    accumulate: u32,
    _pad0: u32,
    alpha: f32,
    _pad1: [u32; 3],
}

/// The storage bindings of every matmul kernel: A, B, bias, C, aux.
const BINDINGS: &[(u32, crate::gpu::Access)] = &[
    (1, Read),
    (2, Read),
    (3, Read),
    (4, ReadWrite),
    (5, ReadWrite),
];

/// C = alpha·op(A)·op(B) (+C) (+bias) (→ GELU).
pub static MATMUL: Kernel = Kernel::new::<Params>("matmul", "matmul", BINDINGS);

/// The general layouts without workgroup memory or barriers (CPU drivers), 16×64 tiles.
pub static MATMUL_GENERAL_DIRECT: Kernel =
    Kernel::new::<Params>("matmul", "matmul_general_direct", BINDINGS);

/// [`MATMUL_GENERAL_DIRECT`] reading A once per subgroup (adapters with subgroups).
pub static MATMUL_GENERAL_DIRECT_SG: Kernel =
    Kernel::new::<Params>("matmul_sg", "matmul_general_direct", BINDINGS);

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ParamsV4 {
    m: u32,
    n: u32,
    k: u32,
    batch_offset: u32,
    a_batch_stride: u32,
    b_batch_stride: u32,
    c_batch_stride: u32,
    k_split: u32,
    splits: u32,
    epilogue: u32,
    accumulate: u32,
    _pad0: u32,
    alpha: f32,
    _pad1: [u32; 3],
}

/// The vec4 kernel with 128×128 tiles, 8×8 outputs per invocation (overrides TA, TB).
pub static MATMUL_128: Kernel = Kernel::new::<ParamsV4>("matmul_v4", "matmul_128", BINDINGS);

/// The vec4 kernel with 128×64 tiles, 8×4 outputs per invocation (overrides TA, TB).
pub static MATMUL_128X64: Kernel = Kernel::new::<ParamsV4>("matmul_v4", "matmul_128x64", BINDINGS);

/// The vec4 kernel with 64×64 tiles, 4×4 outputs per invocation (overrides TA, TB).
pub static MATMUL_64: Kernel = Kernel::new::<ParamsV4>("matmul_v4", "matmul_64", BINDINGS);

/// 16×64 tiles without workgroup memory or barriers: the fast kernel on CPU drivers.
pub static MATMUL_DIRECT: Kernel = Kernel::new::<ParamsV4>("matmul_v4", "matmul_direct", BINDINGS);

/// [`MATMUL_DIRECT`] reading A once per subgroup (adapters with subgroups).
pub static MATMUL_DIRECT_SG: Kernel =
    Kernel::new::<ParamsV4>("matmul_v4_sg", "matmul_direct", BINDINGS);

/// The cooperative-matrix kernel with f16 16×16×16 matrices (overrides TA, TB, WG).
pub static MATMUL_COOP16: Kernel = Kernel::new::<ParamsV4>("matmul_coop", "matmul_coop", BINDINGS);

/// [`MATMUL_COOP16`] with 256×128 tiles (overrides TA, TB, WG).
pub static MATMUL_COOP16_WIDE: Kernel =
    Kernel::new::<ParamsV4>("matmul_coop_wide", "matmul_coop", BINDINGS);

/// [`MATMUL_COOP8`] with 128×64 tiles (overrides TA, TB, WG).
pub static MATMUL_COOP8_WIDE: Kernel =
    Kernel::new::<ParamsV4>("matmul_coop8_wide", "matmul_coop", BINDINGS);

/// The cooperative-matrix kernel with f16 8×8×8 matrices (overrides TA, TB, WG).
pub static MATMUL_COOP8: Kernel = Kernel::new::<ParamsV4>("matmul_coop8", "matmul_coop", BINDINGS);

/// Sums split-K partial products and applies alpha, accumulate and the epilogue.
pub static MATMUL_REDUCE: Kernel = Kernel::new::<ParamsV4>(
    "matmul_v4",
    "matmul_reduce",
    &[(3, Read), (4, ReadWrite), (5, ReadWrite), (6, Read)],
);

/// What happens to each output after the product.
#[derive(Clone, Copy, Debug)]
pub enum Epilogue<'a> {
    /// Nothing.
    None,
    /// + `bias[n]`.
    Bias(&'a Tensor),
    /// + `bias[n]`, store the pre-activation in the second tensor, then GELU.
    BiasGelu(&'a Tensor, &'a Tensor),
    /// Bias and GELU as `BiasGelu`, the pre-activation not kept (a forward pass that no
    /// backward pass follows: the teacher's, inference).
    BiasGeluOnly(&'a Tensor),
}

/// C (+)= alpha·op(A)·op(B) with an epilogue. `accumulate` adds into C before the epilogue.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    rec: &mut Recorder,
    c: &Tensor,
    a: &Tensor,
    b: &Tensor,
    d: MatmulDims,
    alpha: f32,
    accumulate: bool,
    epilogue: Epilogue,
) {
    let plan = Plan::choose(rec.gpu(), &d, a.dtype());
    matmul_planned(rec, c, a, b, d, alpha, accumulate, epilogue, plan)
}

/// [`matmul`] with a given plan (the tuner and the benchmarks; it must fit the dims).
#[allow(clippy::too_many_arguments)]
pub fn matmul_planned(
    rec: &mut Recorder,
    c: &Tensor,
    a: &Tensor,
    b: &Tensor,
    d: MatmulDims,
    alpha: f32,
    accumulate: bool,
    epilogue: Epilogue,
    plan: Plan,
) {
    let flops = 2.0 * (d.batch * d.m) as f64 * (d.n * d.k) as f64;
    rec.label_work(|| work_label(&d, a.dtype(), &plan), flops);
    launch(rec, c, a, b, d, alpha, accumulate, epilogue, plan);
    rec.end_work();
}

/// A product's row in a profile: `matmul MxNxK[ ta][ tb][ bBATCH] TYPE PLAN`.
fn work_label(d: &MatmulDims, dtype: DType, plan: &Plan) -> String {
    let mut s = format!("matmul {}x{}x{}", d.m, d.n, d.k);
    for (on, tag) in [(d.trans_a, " ta"), (d.trans_b, " tb")] {
        if on {
            s.push_str(tag);
        }
    }
    if d.batch > 1 {
        s.push_str(&format!(" b{}", d.batch));
    }
    let t = if dtype == DType::F16 { "f16" } else { "f32" };
    format!("{s} {t} {}", plan.name())
}

#[allow(clippy::too_many_arguments)]
fn launch(
    rec: &mut Recorder,
    c: &Tensor,
    a: &Tensor,
    b: &Tensor,
    d: MatmulDims,
    alpha: f32,
    accumulate: bool,
    epilogue: Epilogue,
    plan: Plan,
) {
    assert!(plan.fits(&d), "matmul: plan {plan:?} cannot run {d:?}");
    let (a_len, b_len) = d.operand_lens();
    assert_eq!(
        a.numel(),
        a_len,
        "matmul: A has {} elements, dims {d:?}",
        a.numel()
    );
    assert_eq!(
        b.numel(),
        b_len,
        "matmul: B has {} elements, dims {d:?}",
        b.numel()
    );
    assert_eq!(
        c.numel(),
        d.batch * d.m * d.n,
        "matmul: C has {} elements, dims {d:?}",
        c.numel()
    );
    let gpu = rec.gpu();
    let (bias, aux, mode) = match epilogue {
        Epilogue::None => (gpu.dummy_read.clone(), gpu.dummy_write.clone(), 0),
        Epilogue::Bias(bias) => (bias.clone(), gpu.dummy_write.clone(), 1),
        Epilogue::BiasGelu(bias, pre) => {
            assert_eq!(pre.numel(), c.numel(), "matmul: pre-activation size");
            (bias.clone(), pre.clone(), 2)
        }
        Epilogue::BiasGeluOnly(bias) => (bias.clone(), gpu.dummy_write.clone(), 3),
    };
    if mode >= 1 {
        assert_eq!(bias.numel(), d.n, "matmul: bias must have N elements");
    }
    let e = (&bias, &aux, mode);
    let (kernel, t, splits) = match plan {
        Plan::General(tile) => {
            let k = (&MATMUL, &tile.overrides()[..], (tile.bm, tile.bn));
            return general(rec, c, a, b, d, alpha, accumulate, e, k);
        }
        Plan::GeneralDirect => {
            let kernel = match rec.gpu().subgroups() {
                true => &MATMUL_GENERAL_DIRECT_SG,
                false => &MATMUL_GENERAL_DIRECT,
            };
            let k = (kernel, &[][..], (16, 64));
            return general(rec, c, a, b, d, alpha, accumulate, e, k);
        }
        Plan::Vec4 { tile, splits } => {
            let kernel = match tile {
                V4Tile::T64 => &MATMUL_64,
                V4Tile::T128x64 => &MATMUL_128X64,
                V4Tile::T128 => &MATMUL_128,
            };
            (kernel, tile.shape(), splits)
        }
        Plan::Direct { splits } if rec.gpu().subgroups() => (&MATMUL_DIRECT_SG, (16, 64), splits),
        Plan::Direct { splits } => (&MATMUL_DIRECT, (16, 64), splits),
        Plan::Coop => return coop(rec, c, a, b, d, alpha, accumulate, e, (false, 1)),
        Plan::CoopWide => return coop(rec, c, a, b, d, alpha, accumulate, e, (true, 1)),
        Plan::CoopSplit { splits } => {
            return coop(rec, c, a, b, d, alpha, accumulate, e, (false, splits))
        }
    };
    vec4(rec, c, a, b, d, alpha, accumulate, e, (kernel, t), splits)
}

/// (first batch, batches) of each dispatch: one grid holds at most the adapter's z limit.
fn batch_ranges(rec: &Recorder, batch: usize) -> Vec<(usize, usize)> {
    let max_z = rec.gpu().limits.max_compute_workgroups_per_dimension as usize;
    (0..batch)
        .step_by(max_z.max(1))
        .map(|o| (o, (batch - o).min(max_z)))
        .collect()
}

/// Bias, pre-activation output and epilogue mode of one product.
type EpilogueBindings<'t> = (&'t Tensor, &'t Tensor, u32);

#[allow(clippy::too_many_arguments)]
fn general(
    rec: &mut Recorder,
    c: &Tensor,
    a: &Tensor,
    b: &Tensor,
    d: MatmulDims,
    alpha: f32,
    accumulate: bool,
    (bias, aux, mode): EpilogueBindings,
    (kernel, overrides, (tm, tn)): (&'static Kernel, &[(&'static str, f64)], (usize, usize)),
) {
    let (a_stride, b_stride) = d.batch_strides();
    for (offset, nb) in batch_ranges(rec, d.batch) {
        let p = Params {
            m: d.m as u32,
            n: d.n as u32,
            k: d.k as u32,
            batch_offset: offset as u32,
            a_batch_stride: a_stride as u32,
            b_batch_stride: b_stride as u32,
            c_batch_stride: (d.m * d.n) as u32,
            trans_a: super::flag(d.trans_a),
            trans_b: super::flag(d.trans_b),
            epilogue: mode,
            accumulate: super::flag(accumulate),
            _pad0: 0,
            alpha,
            _pad1: [0; 3],
        };
        let grid = [d.n.div_ceil(tn) as u32, d.m.div_ceil(tm) as u32, nb as u32];
        rec.dispatch_with(kernel, overrides, &p, &[a, b, bias, c, aux], grid);
    }
}

#[allow(clippy::too_many_arguments)]
fn vec4(
    rec: &mut Recorder,
    c: &Tensor,
    a: &Tensor,
    b: &Tensor,
    d: MatmulDims,
    alpha: f32,
    accumulate: bool,
    e: EpilogueBindings,
    (kernel, tile): (&'static Kernel, (usize, usize)),
    splits: usize,
) {
    let overrides = [
        ("TA", f64::from(u8::from(d.trans_a))),
        ("TB", f64::from(u8::from(d.trans_b))),
    ];
    let k = TiledKernel {
        kernel,
        overrides: &overrides,
        tile,
        slice: 16,
    };
    tiled(rec, [c, a, b], d, alpha, accumulate, e, k, splits);
}

/// The cooperative-matrix kernel: 8·side square tiles, or 16·side × 8·side ones (`wide`),
/// eight subgroups per workgroup; with `splits` > 1 over as many K ranges (multiples of the
/// kernel's K slice of 2·side), summed by `matmul_reduce` as the vec4 kernel's splits are.
#[allow(clippy::too_many_arguments)]
fn coop(
    rec: &mut Recorder,
    c: &Tensor,
    a: &Tensor,
    b: &Tensor,
    d: MatmulDims,
    alpha: f32,
    accumulate: bool,
    e: EpilogueBindings,
    (wide, splits): (bool, usize),
) {
    let (side, lanes) = rec
        .gpu()
        .coop_side()
        .zip(rec.gpu().coop_lanes())
        .expect("matmul: the coop plan needs a device with cooperative matrices");
    let kernel = match (side == 16, wide) {
        (true, false) => &MATMUL_COOP16,
        (true, true) => &MATMUL_COOP16_WIDE,
        (false, false) => &MATMUL_COOP8,
        (false, true) => &MATMUL_COOP8_WIDE,
    };
    let side = side as usize;
    let overrides = [
        ("TA", f64::from(u8::from(d.trans_a))),
        ("TB", f64::from(u8::from(d.trans_b))),
        ("WG", f64::from(8 * lanes)),
    ];
    let k = TiledKernel {
        kernel,
        overrides: &overrides,
        tile: (if wide { 16 } else { 8 } * side, 8 * side),
        slice: 2 * side,
    };
    tiled(rec, [c, a, b], d, alpha, accumulate, e, k, splits);
}

/// A tiled kernel of `matmul_v4.wgsl`'s or `matmul_coop.wgsl`'s kind: its pipeline constants,
/// the tile of C a workgroup computes, and the K slice its loop takes (split ranges are whole
/// slices).
struct TiledKernel<'o> {
    kernel: &'static Kernel,
    overrides: &'o [(&'static str, f64)],
    tile: (usize, usize),
    slice: usize,
}

/// Runs a tiled kernel on C = op(A)·op(B): with `splits` > 1 as raw partial products over K
/// ranges, then `matmul_reduce` (alpha, accumulation, epilogue); else per batch range.
#[allow(clippy::too_many_arguments)]
fn tiled(
    rec: &mut Recorder,
    [c, a, b]: [&Tensor; 3],
    d: MatmulDims,
    alpha: f32,
    accumulate: bool,
    (bias, aux, mode): EpilogueBindings,
    k: TiledKernel,
    splits: usize,
) {
    let grid_xy = [d.n.div_ceil(k.tile.1) as u32, d.m.div_ceil(k.tile.0) as u32];
    if splits > 1 {
        let k_split = d.k.div_ceil(splits).div_ceil(k.slice) * k.slice;
        let splits = d.k.div_ceil(k_split);
        let partial = rec.gpu().empty(&[splits, d.m, d.n]);
        let p = split_params(&d, k_split, splits);
        let (dummy, dummy_read) = (rec.gpu().dummy_write.clone(), rec.gpu().dummy_read.clone());
        rec.dispatch_with(
            k.kernel,
            k.overrides,
            &p,
            &[a, b, &dummy_read, &partial, &dummy],
            [grid_xy[0], grid_xy[1], splits as u32],
        );
        reduce_splits(rec, &p, (bias, c, aux, mode), &partial, alpha, accumulate);
        return;
    }
    let (a_stride, b_stride) = d.batch_strides();
    for (offset, nb) in batch_ranges(rec, d.batch) {
        let p = ParamsV4 {
            m: d.m as u32,
            n: d.n as u32,
            k: d.k as u32,
            batch_offset: offset as u32,
            a_batch_stride: a_stride as u32,
            b_batch_stride: b_stride as u32,
            c_batch_stride: (d.m * d.n) as u32,
            k_split: d.k as u32,
            splits: 1,
            epilogue: mode,
            accumulate: super::flag(accumulate),
            _pad0: 0,
            alpha,
            _pad1: [0; 3],
        };
        rec.dispatch_with(
            k.kernel,
            k.overrides,
            &p,
            &[a, b, bias, c, aux],
            [grid_xy[0], grid_xy[1], nb as u32],
        );
    }
}

/// The parameters of a split product's first pass: raw partial products over K ranges of
/// `k_split`, one [M, N] slab each.
fn split_params(d: &MatmulDims, k_split: usize, splits: usize) -> ParamsV4 {
    ParamsV4 {
        m: d.m as u32,
        n: d.n as u32,
        k: d.k as u32,
        batch_offset: 0,
        a_batch_stride: 0,
        b_batch_stride: 0,
        c_batch_stride: (d.m * d.n) as u32,
        k_split: k_split as u32,
        splits: splits as u32,
        epilogue: 0,
        accumulate: 0,
        _pad0: 0,
        alpha: 1.0,
        _pad1: [0; 3],
    }
}

/// The second pass of a split product: C (+)= alpha·Σ partials, then the epilogue.
fn reduce_splits(
    rec: &mut Recorder,
    p: &ParamsV4,
    (bias, c, aux, mode): (&Tensor, &Tensor, &Tensor, u32),
    partial: &Tensor,
    alpha: f32,
    accumulate: bool,
) {
    let p = ParamsV4 {
        epilogue: mode,
        accumulate: super::flag(accumulate),
        alpha,
        ..*p
    };
    let mn = (p.m * p.n) as usize;
    rec.dispatch(
        &MATMUL_REDUCE,
        &p,
        &[bias, c, aux, partial],
        grid_1d(mn.div_ceil(256)),
    );
}

/// C = op(A)·op(B), nothing fused.
pub fn matmul_forward(rec: &mut Recorder, c: &Tensor, a: &Tensor, b: &Tensor, d: MatmulDims) {
    matmul(rec, c, a, b, d, 1.0, false, Epilogue::None)
}

/// Gradients of C = A·B (no transposes in the forward): dA (+)= dC·Bᵀ, dB (+)= Aᵀ·dC.
/// A broadcast B (a shared weight) gets its gradient summed over the batch.
#[allow(clippy::too_many_arguments)]
pub fn matmul_backward(
    rec: &mut Recorder,
    da: Option<&Tensor>,
    db: Option<&Tensor>,
    dc: &Tensor,
    a: &Tensor,
    b: &Tensor,
    d: MatmulDims,
    accumulate: bool,
) {
    assert!(
        !d.trans_a && !d.trans_b && !d.broadcast_a,
        "matmul_backward: plain or shared-B products only"
    );
    if let Some(da) = da {
        // dA[z] = dC[z] [M,N] · B[z]ᵀ  (B stored [K,N] → transposed read)
        let dd = MatmulDims {
            batch: d.batch,
            m: d.m,
            n: d.k,
            k: d.n,
            trans_a: false,
            trans_b: true,
            broadcast_a: false,
            broadcast_b: d.broadcast_b,
        };
        matmul(rec, da, dc, b, dd, 1.0, accumulate, Epilogue::None);
    }
    if let Some(db) = db {
        if d.broadcast_b {
            // dB = Σ_z A[z]ᵀ·dC[z] = (A viewed [batch·M, K])ᵀ · (dC viewed [batch·M, N]).
            let dd = MatmulDims::new(d.k, d.n, d.batch * d.m).ta();
            matmul(rec, db, a, dc, dd, 1.0, accumulate, Epilogue::None);
        } else {
            let dd = MatmulDims::new(d.k, d.n, d.m).batched(d.batch).ta();
            matmul(rec, db, a, dc, dd, 1.0, accumulate, Epilogue::None);
        }
    }
}

/// Checks the cooperative-matrix kernel on this device before anything relies on it: one product
/// per layout, one split over K and one per layout on the wide tile where it fits, with edges past its tile and K step, of small integers (exact
/// in f16 and summed exactly in f32) against integer arithmetic. Where any output differs, or the
/// GPU reports an error, the device goes back to the plain kernels and the reason is returned (and
/// shown by `dinoscope info`). The kernel has been checked only on the adapters CI runs, so a
/// driver or shader translator that gets it wrong must cost speed, never correct features.
#[cfg(not(target_arch = "wasm32"))]
pub fn probe_coop(gpu: &mut crate::gpu::Gpu) -> Result<(), String> {
    let Some(side) = gpu.coop_side() else {
        return Ok(());
    };
    // bench/shader_stats.sh compiles the kernels on drivers with no GPU behind them (Mesa's DRM
    // shims), which run no dispatch: there the probe would fail and hide the kernel's code.
    if std::env::var("DINOSCOPE_COOP_PROBE").as_deref() == Ok("0") {
        return Ok(());
    }
    let t = 8 * side as usize;
    let (n, k) = (t + 4, 2 * side as usize + 4);
    // Values in -2..=2: every partial sum is an integer of magnitude ≤ 4k.
    let ints = |len: usize, seed: usize| -> Vec<i32> {
        (0..len)
            .map(|i| ((i * 7 + seed * 13 + i / 5) % 5) as i32 - 2)
            .collect()
    };
    let mut failure = None;
    // Every layout whole, then split K in two (the weight gradients' layout: A transposed), which
    // untuned f16 products with a long K over few tiles take without a calibration.
    let split = Plan::CoopSplit { splits: 2 };
    let mut runs = vec![
        (false, false, Plan::Coop),
        (true, false, Plan::Coop),
        (false, true, Plan::Coop),
        (true, true, Plan::Coop),
        (true, false, split),
    ];
    // The wide tile moves twice the square one's share of op(A) an invocation (two vec4 where
    // Apple's 32 lanes take one), in every layout.
    if gpu.coop_wide() {
        runs.extend(
            [false, true]
                .into_iter()
                .flat_map(|ta| [false, true].map(|tb| (ta, tb, Plan::CoopWide))),
        );
    }
    for (layout, (ta, tb, plan)) in runs.into_iter().enumerate() {
        // Past one tile and into a second row of tiles (the wide tile is twice as tall).
        let m = if plan == Plan::CoopWide {
            2 * t + 4
        } else {
            t + 4
        };
        let mut d = MatmulDims::new(m, n, k);
        d.trans_a = ta;
        d.trans_b = tb;
        let (a, b) = (ints(m * k, layout), ints(k * n, layout + 4));
        let at = |i: usize, p: usize| if ta { a[p * m + i] } else { a[i * k + p] };
        let bt = |p: usize, j: usize| if tb { b[j * k + p] } else { b[p * n + j] };
        let want: Vec<f32> = (0..m * n)
            .map(|ij| (0..k).map(|p| at(ij / n, p) * bt(p, ij % n)).sum::<i32>() as f32)
            .collect();
        let f = |v: &[i32]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let ha = gpu.upload_as(&f(&a), &[a.len()], crate::gpu::DType::F16);
        let hb = gpu.upload_as(&f(&b), &[b.len()], crate::gpu::DType::F16);
        let c = gpu.empty(&[m * n]);
        let mut rec = Recorder::new(gpu);
        matmul_planned(&mut rec, &c, &ha, &hb, d, 1.0, false, Epilogue::None, plan);
        let got = rec
            .finish()
            .map_err(|e| e.to_string())
            .and_then(|()| gpu.read(&c).map_err(|e| e.to_string()));
        match got {
            Ok(got) => {
                let wrong = got.iter().zip(&want).filter(|(g, w)| g != w).count();
                if wrong > 0 {
                    failure = Some(format!(
                        "its {m}x{n}x{k} product ({}, ta={ta}, tb={tb}) is wrong in {wrong} of \
                         {} outputs",
                        plan.name(),
                        m * n
                    ));
                }
            }
            Err(e) => {
                failure = Some(format!(
                    "its {m}x{n}x{k} product ({}) failed: {e}",
                    plan.name()
                ))
            }
        }
        if failure.is_some() {
            break;
        }
    }
    match failure {
        None => Ok(()),
        Some(why) => {
            let why = format!("the cooperative-matrix matmul failed its check ({why})");
            gpu.disable_coop(why.clone());
            Err(why)
        }
    }
}
