//! Which kernel and tile a product runs (`Plan`, `Tile`) for the shape it is asked for
//! (`MatmulDims`, in dims.rs).

use crate::gpu::DType;

use super::dims::MatmulDims;

/// The tuning cache's key of the device's vec4 tiles for large products (`tune::calibrate`):
/// the tiles its timing ranked, fastest first, down to the 64×64 one, comma-separated
/// ([`large_tiles`]).
pub const LARGE_TILE: &str = "matmul large tile";

/// The tiles a [`LARGE_TILE`] value ranks ahead of the 64×64 tile, fastest first (a value of
/// one name, as caches written before the ranking hold, ranks that tile alone); `None` for a
/// value that names something else.
pub fn large_tiles(value: &str) -> Option<Vec<V4Tile>> {
    let mut ranked = Vec::new();
    for name in value.split(',') {
        let tile = V4Tile::ALL.into_iter().find(|t| t.name() == name.trim())?;
        if tile == V4Tile::T64 {
            break;
        }
        ranked.push(tile);
    }
    Some(ranked)
}

/// The tuning cache's key of the cooperative-matrix tile for large f16 products
/// (`tune::calibrate_coop`: `coop` or `coop-wide`).
pub const LARGE_COOP: &str = "matmul large coop tile";

/// How many tiles a product needs before it takes the device's large-product tile (a few
/// waves of workgroups on the largest GPUs, so the last wave's idle share stays small).
pub const LARGE_TILES: usize = 512;

/// The tuning cache's key of how untuned f16 products with a long K and few tiles split K
/// (`tune::calibrate_split`): `coop` (the cooperative kernel, [`Plan::CoopSplit`]) or `vec4`
/// (the vec4 kernel's split).
pub const SPLIT_F16: &str = "matmul f16 split";

/// How one product runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// The general kernel (any layout).
    General(Tile),
    /// The general layouts read without workgroup memory (CPU drivers); the same sums in the
    /// same order as `General`.
    GeneralDirect,
    /// The vec4 kernel with `tile`'s tiles, over `splits` K ranges.
    Vec4 {
        /// The tile of C one workgroup computes.
        tile: V4Tile,
        /// K ranges summed by a second pass (1: none).
        splits: usize,
    },
    /// The vec4 layouts' 16×64 tiles read without workgroup memory (CPU drivers), over `splits`
    /// K ranges; the same sums in the same order as `Vec4 { tile: V4Tile::T64, .. }`.
    Direct {
        /// K ranges summed by a second pass (1: none).
        splits: usize,
    },
    /// The cooperative-matrix kernel (f16 operands on adapters with cooperative matrices; vec4
    /// layouts, K whole).
    Coop,
    /// The same with 256×128 tiles (with 16×16 matrices): twice the multiply-adds per matrix
    /// load (a tuner candidate where the adapter's workgroup memory holds it).
    CoopWide,
    /// The cooperative-matrix kernel's square tiles over `splits` K ranges (single products),
    /// summed by a second pass: for long-K products with few tiles, the weight gradients.
    CoopSplit {
        /// K ranges (at least 2).
        splits: usize,
    },
}

impl Plan {
    /// The plan of a product on this device: the tuned one (`dinoscope tune`) if the device has
    /// one for these dims and operand type and it can run them, else [`Plan::untuned`]; an f16
    /// product without its own falls back to the f32 product's where the device has no
    /// cooperative matrices, and a product the cache lacks takes a near product's plan
    /// ([`MatmulDims::stand_in_distance`]). A dry run notes the product, so the tuner learns which products a
    /// config runs.
    pub fn choose(gpu: &crate::gpu::Gpu, d: &MatmulDims, dtype: DType) -> Plan {
        let untuned = Plan::untuned(gpu, d, dtype);
        if !gpu.is_dry() && !gpu.has_choices() {
            return untuned;
        }
        let key = d.key_for(dtype);
        if gpu.is_dry() {
            gpu.note_shape(&key);
        }
        let runs =
            |p: &Plan| p.fits(d) && (!p.is_coop() || (dtype == DType::F16 && p.coop_runs(gpu)));
        let tuned = |k: &str| gpu.choice(k).and_then(|v| Plan::parse(&v)).filter(runs);
        tuned(&key)
            .or_else(|| {
                (dtype == DType::F16 && !untuned.is_coop())
                    .then(|| tuned(&d.key()))
                    .flatten()
            })
            .or_else(|| {
                let near = |k: &str, v: &str| {
                    let plan = Plan::parse(v).filter(runs)?;
                    let (other, t) = MatmulDims::from_key_for(k)?;
                    (t == dtype).then(|| d.stand_in_distance(&other, &plan))?
                };
                let (_, v) = gpu.nearest_choice(&key, near)?;
                Plan::parse(&v)
            })
            .unwrap_or(untuned)
    }

    /// The plan of a product without tuning: the cooperative-matrix kernel for f16 operands in
    /// the vec4 layout where the device takes it by default ([`Gpu::coop_by_default`]), a long
    /// K over few tiles split as `Plan::f16_default` says; else [`Plan::for_device`], whose
    /// vec4 products with many tiles take the device's calibrated large tile.
    ///
    /// [`Gpu::coop_by_default`]: crate::gpu::Gpu::coop_by_default
    pub fn untuned(gpu: &crate::gpu::Gpu, d: &MatmulDims, dtype: DType) -> Plan {
        let large = gpu
            .choice(LARGE_TILE)
            .and_then(|v| large_tiles(&v))
            .unwrap_or_default();
        let plan = match Plan::for_device(d, gpu.cpu_driver()) {
            Plan::Vec4 { .. } if !gpu.cpu_driver() => Plan::for_dims_with(d, &large),
            p => p,
        };
        match gpu.coop_side() {
            Some(side) if dtype == DType::F16 && gpu.coop_by_default() && d.vec4_ok() => {
                let wide =
                    gpu.choice(LARGE_COOP).as_deref() == Some("coop-wide") && gpu.coop_wide();
                let split_coop = gpu.choice(SPLIT_F16).as_deref() != Some("vec4");
                Plan::f16_default(d, plan, side, wide, split_coop)
            }
            _ => plan,
        }
    }

    /// The f16 default beside cooperative matrices (of `side`). A long K over few tiles is
    /// split: on the cooperative kernel ([`Plan::coop_splits`]) unless the adapter's
    /// calibration found the vec4 kernel's split faster (`split_coop` false; on an H200 the
    /// split vec4 kernel ran the weight gradients 1.1–4.7× faster than the cooperative one
    /// whole, before it could split). Where the calibration chose the wide cooperative tile
    /// (`wide`), a product with at least [`LARGE_TILES`] of those tiles takes it; every other
    /// product takes the square one.
    fn f16_default(d: &MatmulDims, plan: Plan, side: u32, wide: bool, split_coop: bool) -> Plan {
        let splits = Plan::coop_splits(d, side);
        match plan {
            _ if split_coop && splits > 1 => Plan::CoopSplit { splits },
            Plan::Vec4 { splits, .. } | Plan::Direct { splits }
                if !split_coop && splits > 1 && d.tiles(64) < 256 =>
            {
                plan
            }
            _ if wide && d.coop_tiles(side, true) >= LARGE_TILES => Plan::CoopWide,
            _ => Plan::Coop,
        }
    }

    /// How many K ranges the cooperative kernel's square tiles (matrices of `side`) split a
    /// product into without a tune: doubling from 1 (single products only) while the product
    /// has fewer than [`LARGE_TILES`] workgroups and each range keeps at least 512 of K (16
    /// slices of 16×16 matrices), up to 32.
    pub fn coop_splits(d: &MatmulDims, side: u32) -> usize {
        let tiles = d.coop_tiles(side, false);
        let mut splits = 1;
        while d.batch == 1
            && splits < 32
            && tiles * splits < LARGE_TILES
            && d.k / (2 * splits) >= 512
        {
            splits *= 2;
        }
        splits
    }

    /// The tuner's cooperative-matrix candidates for `d` on this device: [`Plan::coop_plans`],
    /// and the square tile split in 2 to 32 where each range keeps 256 or more of K.
    pub fn coop_candidates(gpu: &crate::gpu::Gpu, d: &MatmulDims) -> Vec<Plan> {
        let mut v = Plan::coop_plans(gpu);
        if gpu.coop_side().is_some() {
            let split = |splits| Plan::CoopSplit { splits };
            v.extend(
                [2, 4, 8, 16, 32]
                    .into_iter()
                    .filter(|s| d.k / s >= 256)
                    .map(split),
            );
        }
        v.retain(|p| p.fits(d));
        v
    }

    /// The cooperative-matrix plans this device runs (for f16 operands): none, or `Coop` and,
    /// where it fits, `CoopWide`.
    pub fn coop_plans(gpu: &crate::gpu::Gpu) -> Vec<Plan> {
        [Plan::Coop, Plan::CoopWide]
            .into_iter()
            .filter(|p| p.coop_runs(gpu))
            .collect()
    }

    /// Whether this cooperative-matrix plan runs on the device (false for other plans).
    pub fn coop_runs(&self, gpu: &crate::gpu::Gpu) -> bool {
        match self {
            Plan::Coop | Plan::CoopSplit { .. } => gpu.coop_side().is_some(),
            Plan::CoopWide => gpu.coop_wide(),
            _ => false,
        }
    }

    /// Whether this is a cooperative-matrix plan.
    pub fn is_coop(&self) -> bool {
        matches!(self, Plan::Coop | Plan::CoopWide | Plan::CoopSplit { .. })
    }

    /// Whether this plan can run `d` (vec4 layouts, split K only for single products).
    pub fn fits(&self, d: &MatmulDims) -> bool {
        match *self {
            Plan::General(_) | Plan::GeneralDirect => true,
            Plan::Coop | Plan::CoopWide => d.vec4_ok(),
            Plan::CoopSplit { splits } => d.vec4_ok() && splits > 1 && d.batch == 1,
            Plan::Vec4 { splits, .. } | Plan::Direct { splits } => {
                d.vec4_ok() && (splits == 1 || d.batch == 1)
            }
        }
    }

    /// A short name: `general`, `general-direct`, `v4-64`, `v4-128x64`, `v4-128`, `direct`,
    /// `coop`, `coop-wide`, with `-splitN` for split K (`coop-splitN` for [`Plan::CoopSplit`]).
    pub fn name(&self) -> String {
        let (base, splits) = match *self {
            Plan::General(_) => return "general".into(),
            Plan::GeneralDirect => return "general-direct".into(),
            Plan::Coop => return "coop".into(),
            Plan::CoopWide => return "coop-wide".into(),
            Plan::Vec4 { tile, splits } => (tile.name(), splits),
            Plan::Direct { splits } => ("direct", splits),
            Plan::CoopSplit { splits } => ("coop", splits),
        };
        if splits > 1 {
            format!("{base}-split{splits}")
        } else {
            base.into()
        }
    }

    /// Parses [`Plan::name`] (the general kernel takes its default tile).
    pub fn parse(s: &str) -> Option<Plan> {
        if s == "general" {
            return Some(Plan::General(Tile::general()));
        }
        if s == "coop" {
            return Some(Plan::Coop);
        }
        if s == "coop-wide" {
            return Some(Plan::CoopWide);
        }
        if s == "general-direct" {
            return Some(Plan::GeneralDirect);
        }
        let (base, splits) = match s.split_once("-split") {
            Some((t, n)) => (t, n.parse().ok()?),
            None => (s, 1),
        };
        if splits < 1 {
            return None;
        }
        match base {
            "direct" => Some(Plan::Direct { splits }),
            "coop" if splits > 1 => Some(Plan::CoopSplit { splits }),
            _ => V4Tile::ALL
                .into_iter()
                .find(|t| t.name() == base)
                .map(|tile| Plan::Vec4 { tile, splits }),
        }
    }

    /// Every plan worth timing for `d` (the tuner's candidates).
    pub fn candidates(d: &MatmulDims) -> Vec<Plan> {
        let mut v = vec![Plan::General(Tile::general()), Plan::GeneralDirect];
        if d.vec4_ok() {
            let splits: Vec<usize> = [1, 2, 4, 8, 16]
                .into_iter()
                .filter(|&s| s == 1 || (d.batch == 1 && d.k / s >= 256))
                .collect();
            for &splits in &splits {
                for tile in V4Tile::ALL {
                    v.push(Plan::Vec4 { tile, splits });
                }
                v.push(Plan::Direct { splits });
            }
        }
        v
    }

    /// The candidates worth timing on this device (`cpu`: a CPU driver): all of them on a CPU
    /// driver; on a GPU the vec4 tiles and splits where the layout allows, since the
    /// barrier-free kernels are made for CPU drivers and the general one for other layouts (on
    /// an H200 the general one ran 13× slower than the 64×64 tile at 1024³).
    pub fn candidates_for(d: &MatmulDims, cpu: bool) -> Vec<Plan> {
        let all = Plan::candidates(d);
        if cpu || !d.vec4_ok() {
            return all;
        }
        all.into_iter()
            .filter(|p| matches!(p, Plan::Vec4 { .. }))
            .collect()
    }

    /// The default plan of a product on a GPU: the vec4 kernel with 64×64 tiles where its
    /// layout allows, with K split in two, four, eight or sixteen while there are fewer than
    /// 1,024 workgroups (eight per multiprocessor of a large GPU) and each range keeps 256 or
    /// more of K. On an H200 `dinoscope tune` chose about that for the `vits14` step, and
    /// 64×64 tiles for every product whose default was 128×128: those ran 7–13× slower there
    /// (BENCHMARKS.md), so 128×128 tiles are left to the tuner. `dinoscope tune` replaces these
    /// guesses with measurements.
    pub fn for_dims(d: &MatmulDims) -> Plan {
        Plan::for_dims_with(d, &[])
    }

    /// [`Plan::for_dims`], with the device's tiles for large products (`large`: the vec4 tiles
    /// that ran one large product faster than the 64×64 tile, fastest first, `tune::calibrate`):
    /// the first of them the product has at least [`LARGE_TILES`] of, taken whole, with no
    /// split. So where 128×128 tiles won, a product too narrow for 512 of them (ViT-S/14's fc2
    /// and proj at batch 64: 387) can still take 128×64 ones (774), if those beat 64×64 too.
    pub fn for_dims_with(d: &MatmulDims, large: &[V4Tile]) -> Plan {
        for &tile in large.iter().filter(|t| **t != V4Tile::T64 && d.vec4_ok()) {
            let (tm, tn) = tile.shape();
            if d.m.div_ceil(tm) * d.n.div_ceil(tn) * d.batch >= LARGE_TILES {
                return Plan::Vec4 { tile, splits: 1 };
            }
        }
        if !d.vec4_ok() {
            return Plan::General(Tile::general());
        }
        let groups = d.tiles(64);
        let mut splits = 1;
        while d.batch == 1 && splits < 16 && groups * splits < 1024 && d.k / (2 * splits) >= 256 {
            splits *= 2;
        }
        Plan::Vec4 {
            tile: V4Tile::T64,
            splits,
        }
    }

    /// The default plan on a CPU driver (`cpu`): the tiles read directly, where the
    /// barrier-free kernels are faster and sum in the same order, and K split only when there
    /// are fewer than 64 workgroups; else [`Plan::for_dims`].
    pub fn for_device(d: &MatmulDims, cpu: bool) -> Plan {
        if !cpu {
            return Plan::for_dims(d);
        }
        if !d.vec4_ok() {
            return Plan::GeneralDirect;
        }
        let groups = d.tiles(64);
        let mut splits = 1;
        if d.batch == 1 && groups < 64 && d.k >= 512 {
            splits = (128 / groups).clamp(1, d.k / 256);
        }
        Plan::Direct { splits }
    }
}

/// The tiles of the vec4 kernel (`shaders/matmul_v4.wgsl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum V4Tile {
    /// 64×64, 4×4 outputs per invocation (`matmul_64`).
    T64,
    /// 128 rows × 64 columns, 8×4 per invocation (`matmul_128x64`).
    T128x64,
    /// 128×128, 8×8 per invocation (`matmul_128`).
    T128,
}

impl V4Tile {
    /// Every tile, smallest first.
    pub const ALL: [V4Tile; 3] = [V4Tile::T64, V4Tile::T128x64, V4Tile::T128];

    /// The plan-name stem (`v4-64`, `v4-128x64`, `v4-128`).
    pub fn name(self) -> &'static str {
        match self {
            V4Tile::T64 => "v4-64",
            V4Tile::T128x64 => "v4-128x64",
            V4Tile::T128 => "v4-128",
        }
    }

    /// (rows, columns) of C per workgroup.
    pub fn shape(self) -> (usize, usize) {
        match self {
            V4Tile::T64 => (64, 64),
            V4Tile::T128x64 => (128, 64),
            V4Tile::T128 => (128, 128),
        }
    }
}

/// Tile shape of one matmul pipeline (WGSL overrides BM, BN, BK, TM, TN, WG).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    /// Output rows per workgroup.
    pub bm: usize,
    /// Output columns per workgroup.
    pub bn: usize,
    /// K step through workgroup memory.
    pub bk: usize,
    /// Rows per invocation.
    pub tm: usize,
    /// Columns per invocation.
    pub tn: usize,
}

impl Tile {
    /// The general kernel's tile on GPUs and in tuned plans: 64×64, 4×4 per invocation. Its
    /// 128×128 tile keeps 64 accumulators in an array indexed in loops; Mesa's NVIDIA compiler
    /// puts that array in local memory (256 bytes an invocation, bench/shader_stats.sh), and on
    /// an H200 that tile ran 1.6–2.1 TFLOP/s, as slow as the vec4 128×128 tile did with its
    /// accumulators in an array, where the 64×64 tile's 16 stay in registers.
    pub fn general() -> Tile {
        Tile::for_problem(0, 0)
    }

    /// 128×128 tiles with 8×8 per invocation for large products; 64×64 with 4×4 otherwise, so
    /// small products still spread over enough workgroups.
    pub fn for_problem(m: usize, n: usize) -> Tile {
        if m >= 256 && n >= 256 {
            Tile {
                bm: 128,
                bn: 128,
                bk: 8,
                tm: 8,
                tn: 8,
            }
        } else {
            Tile {
                bm: 64,
                bn: 64,
                bk: 16,
                tm: 4,
                tn: 4,
            }
        }
    }

    pub(super) fn overrides(&self) -> [(&'static str, f64); 6] {
        let wg = (self.bm / self.tm) * (self.bn / self.tn);
        [
            ("BM", self.bm as f64),
            ("BN", self.bn as f64),
            ("BK", self.bk as f64),
            ("TM", self.tm as f64),
            ("TN", self.tn as f64),
            ("WG", wg as f64),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_product_tile_applies_to_products_with_enough_tiles_only() {
        let big = MatmulDims::new(4096, 4096, 1024);
        let whole = |tile| Plan::Vec4 { tile, splits: 1 };
        assert_eq!(
            Plan::for_dims_with(&big, &[V4Tile::T128]),
            whole(V4Tile::T128)
        );
        assert_eq!(
            Plan::for_dims_with(&big, &[V4Tile::T128x64]),
            whole(V4Tile::T128x64)
        );
        // 16 × 16 tiles of 128: too few; and the 64 tile keeps the default's splits.
        for d in [MatmulDims::new(2048, 2048, 4096), big] {
            for large in [&[V4Tile::T64][..], &[]] {
                assert_eq!(Plan::for_dims_with(&d, large), Plan::for_dims(&d));
            }
        }
        assert_ne!(
            Plan::for_dims_with(&MatmulDims::new(2048, 2048, 4096), &[V4Tile::T128]),
            whole(V4Tile::T128)
        );
        // Layouts the vec4 kernels cannot read stay on the general kernel.
        let odd = MatmulDims::new(4096, 4096, 1022);
        assert_eq!(
            Plan::for_dims_with(&odd, &[V4Tile::T128]),
            Plan::General(Tile::general())
        );
        // ViT-S/14 at batch 64 (16,448 token rows), 128×128 ranked first and 128×64 second:
        // fc1 takes the first (129 × 12 tiles), fc2 the second (129 × 3 of the first, too
        // few; 129 × 6 of the second); ranked the other way, both take 128×64.
        let (fc1, fc2) = (
            MatmulDims::new(16448, 1536, 384),
            MatmulDims::new(16448, 384, 1536),
        );
        let ranked = [V4Tile::T128, V4Tile::T128x64];
        assert_eq!(Plan::for_dims_with(&fc1, &ranked), whole(V4Tile::T128));
        assert_eq!(Plan::for_dims_with(&fc2, &ranked), whole(V4Tile::T128x64));
        assert_eq!(
            Plan::for_dims_with(&fc2, &ranked[..1]),
            Plan::for_dims(&fc2)
        );
        let other_way = [V4Tile::T128x64, V4Tile::T128];
        for d in [fc1, fc2] {
            assert_eq!(Plan::for_dims_with(&d, &other_way), whole(V4Tile::T128x64));
        }
    }

    #[test]
    fn a_large_tile_value_ranks_the_tiles_ahead_of_the_64_tile() {
        use V4Tile::*;
        let value = [T128, T64, T128x64].map(V4Tile::name).join(",");
        assert_eq!(large_tiles(&value), Some(vec![T128]));
        assert_eq!(large_tiles(T128x64.name()), Some(vec![T128x64]));
        assert_eq!(large_tiles(T64.name()), Some(vec![]));
        assert_eq!(large_tiles("v4-96"), None);
        assert_eq!(large_tiles(&format!("{},huge", T128.name())), None);
    }

    #[test]
    fn a_stand_in_differs_in_one_of_m_n_k_by_less_than_half() {
        let plan = Plan::Vec4 {
            tile: V4Tile::T64,
            splits: 4,
        };
        let tuned = MatmulDims::new(4882, 2048, 2048);
        let near = |d: MatmulDims| d.stand_in_distance(&tuned, &plan);
        assert_eq!(near(tuned), Some(0.0));
        let d = near(MatmulDims::new(4700, 2048, 2048)).expect("near in M");
        assert!((d - (4882f64 / 4700.0).ln()).abs() < 1e-12, "{d}");
        assert!(near(MatmulDims::new(4882, 2048, 3000)).is_some());
        // Too far, two dims apart, another layout, or a plan the dims cannot run.
        assert!(near(MatmulDims::new(3200, 2048, 2048)).is_none());
        assert!(near(MatmulDims::new(4700, 2000, 2048)).is_none());
        assert!(near(MatmulDims::new(4700, 2048, 2048).tb()).is_none());
        assert!(near(MatmulDims::new(4882, 2048, 2048).batched(2)).is_none());
        let odd = MatmulDims::new(4882, 2046, 2048);
        assert!(odd.stand_in_distance(&tuned, &plan).is_none());
    }

    /// A stored [K, M] where K is no multiple of 4, as the step's weight gradients are.
    fn dims(m: usize, n: usize, k: usize) -> MatmulDims {
        MatmulDims {
            batch: 1,
            m,
            n,
            k,
            trans_a: !k.is_multiple_of(4),
            trans_b: false,
            broadcast_a: false,
            broadcast_b: false,
        }
    }

    #[test]
    fn gpu_defaults_split_long_k_over_few_tiles() {
        let v4 = |splits| Plan::Vec4 {
            tile: V4Tile::T64,
            splits,
        };
        // Weight gradients of ViT-S at batch 64 (K = token rows), as tuned on an H200.
        assert_eq!(Plan::for_dims(&dims(1152, 384, 25600)), v4(16));
        assert_eq!(Plan::for_dims(&dims(1536, 384, 25600)), v4(8));
        assert_eq!(Plan::for_dims(&dims(384, 384, 32896)), v4(16));
        // K too short to share, or enough tiles already.
        assert_eq!(Plan::for_dims(&dims(2048, 384, 640)), v4(2));
        assert_eq!(Plan::for_dims(&dims(128, 2048, 384)), v4(1));
        assert_eq!(Plan::for_dims(&dims(25600, 1536, 384)), v4(1));
        let mut batched = dims(128, 128, 4096);
        batched.batch = 8;
        assert_eq!(Plan::for_dims(&batched), v4(1));
        // Every default is one of the tuner's candidates, so `tune` times it.
        for d in [
            dims(1152, 384, 25600),
            dims(2048, 384, 4882),
            dims(640, 256, 65536),
        ] {
            assert!(Plan::candidates(&d).contains(&Plan::for_dims(&d)));
        }
    }

    #[test]
    fn cpu_defaults_are_unchanged_by_the_gpu_rule() {
        assert_eq!(
            Plan::for_device(&dims(384, 384, 25600), true),
            Plan::Direct { splits: 3 }
        );
        assert_eq!(
            Plan::for_device(&dims(1152, 384, 25600), true),
            Plan::Direct { splits: 1 }
        );
        assert_eq!(Plan::for_device(&dims(3, 5, 7), true), Plan::GeneralDirect);
    }

    #[test]
    fn f16_splits_long_k_over_few_tiles_on_the_kernel_the_calibration_chose() {
        let default = |d: &MatmulDims, wide, split_coop| {
            Plan::f16_default(d, Plan::for_dims(d), 16, wide, split_coop)
        };
        // The qkv weight gradient: 9 × 3 square tiles, split 32 ways (each range 800 of K).
        let d = dims(1152, 384, 25600);
        for wide in [false, true] {
            assert_eq!(default(&d, wide, true), Plan::CoopSplit { splits: 32 });
            assert_eq!(default(&d, wide, false), Plan::for_dims(&d));
        }
        // The prototypes' input gradient: 39 × 2 tiles, split until 512 workgroups; the vec4
        // kernel splits it over 308 tiles of its own, too many for its split to be the default.
        let d = dims(4882, 256, 65536);
        assert_eq!(default(&d, false, true), Plan::CoopSplit { splits: 8 });
        assert_eq!(default(&d, false, false), Plan::Coop);
        // A K of 384 is never split.
        let d = dims(25600, 1536, 384);
        assert_eq!(default(&d, false, true), Plan::Coop);
        // With the wide tile chosen: 100 × 12 of its 256×128 tiles take it; ViT-S's
        // 16,448 × 384 products (65 × 3 tiles) keep the square one.
        assert_eq!(default(&d, true, true), Plan::CoopWide);
        assert_eq!(d.coop_tiles(16, true), 100 * 12);
        let d = dims(16448, 384, 384);
        assert_eq!(default(&d, true, true), Plan::Coop);
        // Batched products are never split.
        let d = dims(384, 384, 25600).batched(2);
        assert_eq!(Plan::coop_splits(&d, 16), 1);
        assert!(!Plan::CoopSplit { splits: 2 }.fits(&d));
    }

    #[test]
    fn gpus_time_every_vec4_tile_and_split_and_nothing_made_for_cpu_drivers() {
        let d = dims(2048, 384, 4096);
        let gpu = Plan::candidates_for(&d, false);
        assert!(gpu.iter().all(|p| matches!(p, Plan::Vec4 { .. })));
        for tile in V4Tile::ALL {
            for splits in [1, 2, 4, 8, 16] {
                assert!(
                    gpu.contains(&Plan::Vec4 { tile, splits }),
                    "{tile:?} {splits}"
                );
            }
        }
        assert_eq!(Plan::candidates_for(&d, true), Plan::candidates(&d));
        // Names round-trip, the new tile's and the cooperative kernels' included.
        let coop = [Plan::Coop, Plan::CoopWide, Plan::CoopSplit { splits: 4 }];
        for p in gpu.into_iter().chain(coop) {
            assert_eq!(Plan::parse(&p.name()), Some(p));
        }
        // Layouts the vec4 kernels cannot read keep the general candidates.
        let odd = MatmulDims::new(7, 5, 3);
        assert_eq!(Plan::candidates_for(&odd, false), Plan::candidates(&odd));
    }
}
