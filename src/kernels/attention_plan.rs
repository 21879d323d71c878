//! Which kernels an attention call takes. Each pass has variants with the same sums (within
//! rounding), made for different hardware: CPU drivers keep a lane's arrays in memory and load
//! per lane, GPUs keep them in registers, and a GPU can split a token's head over two
//! invocations, whose partial sums meet through subgroup shuffles where the adapter has
//! subgroups and through workgroup memory elsewhere. The defaults follow that; `dinoscope tune`
//! times every variant that runs on the adapter at a config's shapes and caches the fastest,
//! which then wins over the default; the checks force each variant in turn
//! ([`Recorder::force`]). The GPU kernels also come with their loops over the head written out
//! (`-unrolled`, the GPU defaults): the same code, which no compiler has to unroll to keep the
//! head in registers. Adapters with cooperative matrices can run f16 calls on them (`coop`,
//! f16-rounded probabilities). A GPU's first run times the variants of each pass on one
//! ViT-S-sized call and calls without a tuned choice take the fastest: for f16 the default
//! against `coop` ([`F16_FORWARD`], [`F16_BACKWARD`]), for f32 the GPU layout's splits of a token
//! ([`F32_FORWARD`], [`F32_BACKWARD`]), and in both the register-tiled kernels where the
//! adapter's workgroup memory holds them.

use super::attention::{
    AttnDims, ATTENTION_BACKWARD_DKV, ATTENTION_BACKWARD_DKV2, ATTENTION_BACKWARD_DKV2_U,
    ATTENTION_BACKWARD_DKV2_WG_U, ATTENTION_BACKWARD_DKV_COOP16, ATTENTION_BACKWARD_DKV_TILED,
    ATTENTION_BACKWARD_DKV_U, ATTENTION_BACKWARD_DQ, ATTENTION_BACKWARD_DQ2,
    ATTENTION_BACKWARD_DQ2_U, ATTENTION_BACKWARD_DQ2_WG_U, ATTENTION_BACKWARD_DQ_COOP16,
    ATTENTION_BACKWARD_DQ_TILED, ATTENTION_BACKWARD_DQ_U, ATTENTION_FORWARD, ATTENTION_FORWARD2,
    ATTENTION_FORWARD2_U, ATTENTION_FORWARD4, ATTENTION_FORWARD4_U, ATTENTION_FORWARD_COOP16,
    ATTENTION_FORWARD_CROSSED_U, ATTENTION_FORWARD_CROSSED_WG_U, ATTENTION_FORWARD_SG,
    ATTENTION_FORWARD_TILED,
};
use crate::gpu::{DType, Kernel, Recorder};

/// The choice name of the forward pass (for [`Recorder::force`] and the tuning cache).
pub const FORWARD: &str = "attention forward";
/// The choice name of the backward pass.
pub const BACKWARD: &str = "attention backward";
/// The tuning cache's key of the forward variant f16 calls take without a tuned choice of their
/// own (`tune::calibrate_attention`: the default or `coop`).
pub const F16_FORWARD: &str = "f16 attention forward";
/// The same for the backward (`tune::calibrate_attention`).
pub const F16_BACKWARD: &str = "f16 attention backward";
/// The tuning cache's key of the forward variant f32 calls in the GPUs' layout take without a
/// tuned choice of their own (`tune::calibrate_attention`: the fastest of the GPU variants that
/// run on the adapter).
pub const F32_FORWARD: &str = "f32 attention forward";
/// The same for the backward.
pub const F32_BACKWARD: &str = "f32 attention backward";

/// The key of the first run's choice for a pass ("forward" or "backward") of calls with
/// `dtype` operands.
pub fn calibrated_key(pass: &str, dtype: DType) -> &'static str {
    match (pass, dtype) {
        ("forward", DType::F16) => F16_FORWARD,
        ("forward", DType::F32) => F32_FORWARD,
        (_, DType::F16) => F16_BACKWARD,
        (_, DType::F32) => F32_BACKWARD,
    }
}

/// The pass ("forward" or "backward") and operand type whose first-run choice `key` holds
/// (the inverse of [`calibrated_key`]).
pub fn calibrated_pass(key: &str) -> Option<(&'static str, DType)> {
    ["forward", "backward"]
        .into_iter()
        .flat_map(|pass| [(pass, DType::F16), (pass, DType::F32)])
        .find(|(pass, t)| calibrated_key(pass, *t) == key)
}

/// The name of the variant `value` of a pass ("forward" or "backward"), if it names one.
pub fn variant_name(pass: &str, value: &str) -> Option<&'static str> {
    match pass {
        "forward" => Forward::parse(value).map(Forward::name),
        _ => Backward::parse(value).map(Backward::name),
    }
}

/// `default`, then those of `others` that differ from it and `run`: what a first run times.
fn default_then<T: Copy + PartialEq>(default: T, others: &[T], run: impl Fn(T) -> bool) -> Vec<T> {
    let mut v = vec![default];
    v.extend(others.iter().copied().filter(|&x| x != default && run(x)));
    v
}

/// The calibrated choice a call takes, if any: f16 calls the one of [`F16_FORWARD`] /
/// [`F16_BACKWARD`]; f32 calls in the GPUs' layout the one of [`F32_FORWARD`] /
/// [`F32_BACKWARD`] (timed among that layout's variants, so the CPU drivers' layout, which the
/// checks also run on GPUs, keeps its own default).
fn calibrated(rec: &Recorder, pass: &str, dtype: DType) -> Option<String> {
    if dtype == DType::F32 && rec.cpu_layouts() {
        return None;
    }
    rec.gpu().choice(calibrated_key(pass, dtype))
}

/// Whether the cooperative-matrix kernels take a call: f16 operands on an adapter with
/// cooperative matrices in subgroups of the size they are written for ([`Gpu::coop_attention`]),
/// whose workgroup memory holds the kernels' tiles, and a head of one to eight matrix sides.
///
/// [`Gpu::coop_attention`]: crate::gpu::Gpu::coop_attention
fn coop_runs(rec: &Recorder, d: &AttnDims, dtype: DType) -> bool {
    let gpu = rec.gpu();
    let Some(side) = gpu.coop_side().map(|s| s as usize) else {
        return false;
    };
    gpu.coop_attention()
        && dtype == DType::F16
        && d.head_dim.is_multiple_of(side)
        && d.head_dim <= 8 * side
        && super::attention::coop_workgroup_bytes(side)
            <= gpu.limits.max_compute_workgroup_storage_size as usize
}

/// Whether the tiled kernels run a call: a head of at most 64, and workgroup memory that holds
/// their 32 KiB.
fn tiled_runs(rec: &Recorder, d: &AttnDims) -> bool {
    d.head_dim <= super::attention::MAX_HEAD_DIM
        && super::attention::TILED_WORKGROUP_BYTES
            <= rec.gpu().limits.max_compute_workgroup_storage_size as usize
}

/// The forward kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forward {
    /// One invocation a query, one key at a time (CPU drivers without subgroups).
    One,
    /// The same with the tile reads broadcast from lane 0 (CPU drivers with subgroups).
    OneSg,
    /// One invocation a query, four keys at a time.
    Four,
    /// [`Forward::Four`] with its head loops written out (GPUs).
    FourUnrolled,
    /// Two invocations a query, each holding half the head, four keys at a time (adapters
    /// with subgroups, native).
    Pairs,
    /// [`Forward::Pairs`] with its head loops written out.
    PairsUnrolled,
    /// Four invocations a query, each holding a quarter of the head (head loops written out).
    Quads,
    /// Two invocations take two queries, each holding half of both (head loops written out;
    /// the halves meet through subgroup shuffles): each key and value read feeds two queries.
    Crossed,
    /// [`Forward::Crossed`] with the halves meeting through workgroup memory (every adapter).
    CrossedShared,
    /// Cooperative matrices (tensor cores), for f16 operands where the adapter has them and
    /// the head is a multiple of their side: two passes over the keys, 4·side queries a
    /// workgroup (`attention_coop`).
    Coop,
    /// Scores and outputs in 4 × 4 register blocks, 32 queries a workgroup and keys 64 at a
    /// time, as a matmul tile computes its outputs (`attention_tiled`; where workgroup memory
    /// holds 32 KiB).
    Tiled,
}

impl Forward {
    /// Every variant.
    pub const ALL: [Forward; 11] = [
        Forward::One,
        Forward::OneSg,
        Forward::Four,
        Forward::FourUnrolled,
        Forward::Pairs,
        Forward::PairsUnrolled,
        Forward::Quads,
        Forward::Crossed,
        Forward::CrossedShared,
        Forward::Coop,
        Forward::Tiled,
    ];

    /// Its name in the tuning cache and in `tune`'s report.
    pub fn name(self) -> &'static str {
        match self {
            Forward::One => "one",
            Forward::OneSg => "one-sg",
            Forward::Four => "four",
            Forward::FourUnrolled => "four-unrolled",
            Forward::Pairs => "pairs",
            Forward::PairsUnrolled => "pairs-unrolled",
            Forward::Quads => "quads",
            Forward::Crossed => "crossed",
            Forward::CrossedShared => "crossed-shared",
            Forward::Coop => "coop",
            Forward::Tiled => "tiled",
        }
    }

    /// The variant of a name.
    pub fn parse(s: &str) -> Option<Forward> {
        Forward::ALL.into_iter().find(|f| f.name() == s)
    }

    /// Whether it runs on the recording's device for a call of `d` with `dtype` operands.
    pub fn runs(self, rec: &Recorder, d: &AttnDims, dtype: DType) -> bool {
        match self {
            Forward::One | Forward::Four | Forward::FourUnrolled | Forward::CrossedShared => true,
            Forward::OneSg => rec.gpu().subgroups(),
            Forward::Pairs | Forward::PairsUnrolled | Forward::Quads | Forward::Crossed => {
                rec.subgroups()
            }
            Forward::Coop => coop_runs(rec, d, dtype),
            Forward::Tiled => tiled_runs(rec, d),
        }
    }

    /// The variant without tuning: the CPU drivers' layout (one key at a time, broadcast reads
    /// where there are subgroups) or the GPUs' (four keys at a time, head loops written out).
    pub fn default_for(rec: &Recorder) -> Forward {
        match (rec.cpu_layouts(), rec.gpu().subgroups()) {
            (false, _) => Forward::FourUnrolled,
            (true, true) => Forward::OneSg,
            (true, false) => Forward::One,
        }
    }

    /// What a first run times for calls of `d` with `dtype` operands in the recorder's layout
    /// (`tune::calibrate_attention`): the default first, then for f16 the cooperative-matrix
    /// kernel (and in the GPUs' layout the crossed pairs and the tiled kernel), for f32 in the
    /// GPUs' layout the splits over two and four invocations, the crossed pairs and the tiled
    /// kernel; those that run here.
    pub fn calibration_candidates(rec: &Recorder, d: &AttnDims, dtype: DType) -> Vec<Forward> {
        let default = Forward::default_for(rec);
        let others: &[Forward] = match (dtype, rec.cpu_layouts()) {
            (DType::F16, true) => &[Forward::Coop],
            // Beside the matrix units (or where there are none), the plain kernels that read
            // the least.
            (DType::F16, false) => &[
                Forward::Coop,
                Forward::Crossed,
                Forward::CrossedShared,
                Forward::Tiled,
            ],
            (DType::F32, true) => &[],
            (DType::F32, false) => &[
                Forward::PairsUnrolled,
                Forward::Quads,
                Forward::Crossed,
                Forward::CrossedShared,
                Forward::Tiled,
            ],
        };
        default_then(default, others, |f| f.runs(rec, d, dtype))
    }

    /// The kernel and how many invocations share a query.
    pub(super) fn kernel(self) -> (&'static Kernel, usize) {
        match self {
            Forward::One => (&ATTENTION_FORWARD, 1),
            Forward::OneSg => (&ATTENTION_FORWARD_SG, 1),
            Forward::Four => (&ATTENTION_FORWARD4, 1),
            Forward::FourUnrolled => (&ATTENTION_FORWARD4_U, 1),
            Forward::Pairs => (&ATTENTION_FORWARD2, 2),
            Forward::PairsUnrolled => (&ATTENTION_FORWARD2_U, 2),
            Forward::Quads => (&ATTENTION_FORWARD2_U, 4),
            // A workgroup of WG invocations holds WG queries, as the one-query kernels'.
            Forward::Crossed => (&ATTENTION_FORWARD_CROSSED_U, 1),
            Forward::CrossedShared => (&ATTENTION_FORWARD_CROSSED_WG_U, 1),
            // Dispatched apart (`attention::forward_coop`); the kernel of its 16×16 matrices.
            Forward::Coop => (&ATTENTION_FORWARD_COOP16, 1),
            // Dispatched apart too (32 queries a workgroup of 128).
            Forward::Tiled => (&ATTENTION_FORWARD_TILED, 1),
        }
    }
}

/// The backward kernels (dQ by queries, dK and dV by keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backward {
    /// One invocation a token.
    Single,
    /// Two invocations a token, each holding half the head (adapters with subgroups, native):
    /// one invocation would hold 192 (dQ) or 256 (dK, dV) floats of arrays, more registers
    /// than a GPU gives it.
    Pairs,
    /// [`Backward::Single`] with its head loops written out.
    SingleUnrolled,
    /// [`Backward::Pairs`] with its head loops written out (GPUs with subgroups).
    PairsUnrolled,
    /// Four invocations a token, each holding a quarter of the head (head loops written out):
    /// half the registers of pairs again (dK/dV pairs hold 204–252).
    Quads,
    /// [`Backward::PairsUnrolled`] with the halves' partial sums meeting through workgroup
    /// memory, one barrier per exchange: every adapter (GPUs without subgroups, the browser's
    /// included, where one invocation a token spills).
    PairsShared,
    /// Cooperative matrices (tensor cores), for f16 operands where the adapter has them and the
    /// head is a multiple of their side (`attention_coop`).
    Coop,
    /// Scores and gradients in register blocks, 32 tokens a workgroup and the other side's 32
    /// at a time, as [`Forward::Tiled`] (`attention_tiled`; where workgroup memory holds 32 KiB).
    Tiled,
}

impl Backward {
    /// Every variant.
    pub const ALL: [Backward; 8] = [
        Backward::Single,
        Backward::Pairs,
        Backward::SingleUnrolled,
        Backward::PairsUnrolled,
        Backward::Quads,
        Backward::PairsShared,
        Backward::Coop,
        Backward::Tiled,
    ];

    /// Its name in the tuning cache and in `tune`'s report.
    pub fn name(self) -> &'static str {
        match self {
            Backward::Single => "single",
            Backward::Pairs => "pairs",
            Backward::SingleUnrolled => "single-unrolled",
            Backward::PairsUnrolled => "pairs-unrolled",
            Backward::Quads => "quads",
            Backward::PairsShared => "pairs-shared",
            Backward::Coop => "coop",
            Backward::Tiled => "tiled",
        }
    }

    /// The variant of a name.
    pub fn parse(s: &str) -> Option<Backward> {
        Backward::ALL.into_iter().find(|f| f.name() == s)
    }

    /// Whether it runs on the recording's device for a call of `d` with `dtype` operands.
    pub fn runs(self, rec: &Recorder, d: &AttnDims, dtype: DType) -> bool {
        match self {
            Backward::Single | Backward::SingleUnrolled | Backward::PairsShared => true,
            Backward::Pairs | Backward::PairsUnrolled | Backward::Quads => rec.subgroups(),
            Backward::Coop => coop_runs(rec, d, dtype),
            Backward::Tiled => tiled_runs(rec, d),
        }
    }

    /// The variant without tuning: in the GPU layout, pairs with head loops written out,
    /// meeting through shuffles where there are subgroups and through workgroup memory where
    /// there are none (one invocation a token spills there: bench/shader_stats.sh).
    pub fn default_for(rec: &Recorder) -> Backward {
        match (rec.cpu_layouts(), rec.subgroups()) {
            (true, _) => Backward::Single,
            (false, true) => Backward::PairsUnrolled,
            (false, false) => Backward::PairsShared,
        }
    }

    /// What a first run times, as [`Forward::calibration_candidates`]: the default, then for
    /// f16 the cooperative-matrix kernels (and in the GPUs' layout the tiled pair), for f32 in
    /// the GPUs' layout the pairs (both exchanges), the quads, one invocation a token and the
    /// tiled pair; those that run here.
    pub fn calibration_candidates(rec: &Recorder, d: &AttnDims, dtype: DType) -> Vec<Backward> {
        let default = Backward::default_for(rec);
        let others: &[Backward] = match (dtype, rec.cpu_layouts()) {
            (DType::F16, true) => &[Backward::Coop],
            (DType::F16, false) => &[Backward::Coop, Backward::Tiled],
            (DType::F32, true) => &[],
            (DType::F32, false) => &[
                Backward::PairsUnrolled,
                Backward::PairsShared,
                Backward::Quads,
                Backward::SingleUnrolled,
                Backward::Tiled,
            ],
        };
        default_then(default, others, |b| b.runs(rec, d, dtype))
    }

    /// The dQ and the dK/dV kernels and how many invocations share a token.
    pub(super) fn kernels(self) -> (&'static Kernel, &'static Kernel, usize) {
        match self {
            Backward::Single => (&ATTENTION_BACKWARD_DQ, &ATTENTION_BACKWARD_DKV, 1),
            Backward::Pairs => (&ATTENTION_BACKWARD_DQ2, &ATTENTION_BACKWARD_DKV2, 2),
            Backward::SingleUnrolled => (&ATTENTION_BACKWARD_DQ_U, &ATTENTION_BACKWARD_DKV_U, 1),
            Backward::PairsUnrolled => (&ATTENTION_BACKWARD_DQ2_U, &ATTENTION_BACKWARD_DKV2_U, 2),
            Backward::Quads => (&ATTENTION_BACKWARD_DQ2_U, &ATTENTION_BACKWARD_DKV2_U, 4),
            Backward::PairsShared => (
                &ATTENTION_BACKWARD_DQ2_WG_U,
                &ATTENTION_BACKWARD_DKV2_WG_U,
                2,
            ),
            // Dispatched apart (`attention::attention_backward`).
            Backward::Tiled => (
                &ATTENTION_BACKWARD_DQ_TILED,
                &ATTENTION_BACKWARD_DKV_TILED,
                1,
            ),
            // Dispatched apart (`attention::backward_coop`); the kernels of 16×16 matrices.
            Backward::Coop => (
                &ATTENTION_BACKWARD_DQ_COOP16,
                &ATTENTION_BACKWARD_DKV_COOP16,
                1,
            ),
        }
    }
}

/// The tuning cache's key of one pass ("forward" or "backward") of an attention call.
pub fn key(pass: &str, d: &AttnDims, dtype: DType) -> String {
    let t = if dtype == DType::F16 { "f16" } else { "f32" };
    format!(
        "attention {pass} {}x{}x{}x{} {t}",
        d.batch * d.heads,
        d.n_q,
        d.n_k,
        d.head_dim
    )
}

/// The pass, dims (as one batch of `batch·heads` heads) and operand type of a [`key`].
pub fn from_key(k: &str) -> Option<(String, AttnDims, DType)> {
    let mut it = k.strip_prefix("attention ")?.split(' ');
    let pass = it.next()?;
    let sizes: Vec<usize> = it
        .next()?
        .split('x')
        .map(|s| s.parse().ok())
        .collect::<Option<_>>()?;
    let dtype = match it.next()? {
        "f16" => DType::F16,
        "f32" => DType::F32,
        _ => return None,
    };
    let sizes: [usize; 4] = sizes.try_into().ok()?;
    let [bh, n_q, n_k, hd] = sizes;
    if it.next().is_some() {
        return None;
    }
    let ok = matches!(pass, "forward" | "backward")
        && bh > 0
        && n_q > 0
        && n_k > 0
        && (1..=super::attention::MAX_HEAD_DIM).contains(&hd);
    let mut d = AttnDims::new(1, bh, n_q, hd);
    d.n_k = n_k;
    ok.then(|| (pass.to_string(), d, dtype))
}

/// Whether `value` names a variant of the pass in `key` (a cache entry worth loading).
pub fn valid_choice(key: &str, value: &str) -> bool {
    match from_key(key) {
        Some((pass, _, _)) => variant_name(&pass, value).is_some(),
        None => false,
    }
}

/// The forward variant of a call: forced, else tuned, else the device's calibrated choice
/// ([`F16_FORWARD`] for f16 operands, [`F32_FORWARD`] for f32 ones in the GPUs' layout), else
/// the default (a choice that cannot run here falls back to the default). A dry run notes the
/// call for the tuner.
pub fn forward_for(rec: &Recorder, d: &AttnDims, dtype: DType) -> Forward {
    let gpu = rec.gpu();
    let k = key("forward", d, dtype);
    if gpu.is_dry() {
        gpu.note_shape(&k);
    }
    rec.forced(FORWARD)
        .and_then(Forward::parse)
        .or_else(|| gpu.choice(&k).and_then(|v| Forward::parse(&v)))
        .or_else(|| calibrated(rec, "forward", dtype).and_then(|v| Forward::parse(&v)))
        .filter(|f| f.runs(rec, d, dtype))
        .unwrap_or_else(|| Forward::default_for(rec))
}

/// The backward variant of a call, chosen as [`forward_for`] chooses.
pub fn backward_for(rec: &Recorder, d: &AttnDims, dtype: DType) -> Backward {
    let gpu = rec.gpu();
    let k = key("backward", d, dtype);
    if gpu.is_dry() {
        gpu.note_shape(&k);
    }
    rec.forced(BACKWARD)
        .and_then(Backward::parse)
        .or_else(|| gpu.choice(&k).and_then(|v| Backward::parse(&v)))
        .or_else(|| calibrated(rec, "backward", dtype).and_then(|v| Backward::parse(&v)))
        .filter(|b| b.runs(rec, d, dtype))
        .unwrap_or_else(|| Backward::default_for(rec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_bad_ones_are_refused() {
        let mut d = AttnDims::new(4, 6, 261, 64);
        d.n_k = 200;
        let k = key("backward", &d, DType::F16);
        assert_eq!(k, "attention backward 24x261x200x64 f16");
        let (pass, e, t) = from_key(&k).expect("parses");
        assert_eq!((pass.as_str(), t), ("backward", DType::F16));
        assert_eq!(
            (e.batch * e.heads, e.n_q, e.n_k, e.head_dim),
            (24, 261, 200, 64)
        );
        for bad in [
            "attention sideways 1x2x2x8 f32",
            "attention forward 1x2x2 f32",
            "attention forward 1x2x2x65 f32",
            "attention forward 1x2x2x8 f64",
            "attention forward 1x2x2x8 f32 extra",
            "matmul 1 2 3",
        ] {
            assert!(from_key(bad).is_none(), "{bad}");
        }
        assert!(valid_choice(&k, "pairs") && !valid_choice(&k, "four"));
        assert!(valid_choice("attention forward 1x2x2x8 f32", "four"));
    }
}
