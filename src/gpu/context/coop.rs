//! The f16 cooperative matrices a device offers and which of them the kernels use: the
//! matmul's shape and subgroup size per adapter, and whether untuned products and attention
//! take them.

use super::*;

/// Whether cooperative matrices may be used: `DINOSCOPE_COOP=0` (or `off`) turns them off.
pub(super) fn coop_wanted() -> bool {
    !matches!(
        std::env::var("DINOSCOPE_COOP").as_deref().map(str::trim),
        Ok("0" | "off" | "false" | "no")
    )
}

/// Whether `DINOSCOPE_COOP=1` (or `on`) asks for cooperative matrices even where they are not
/// the default (CPU drivers, which emulate them with vector code).
fn coop_forced() -> bool {
    static FORCED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FORCED.get_or_init(|| {
        matches!(
            std::env::var("DINOSCOPE_COOP").as_deref().map(str::trim),
            Ok("1" | "on" | "true" | "yes")
        )
    })
}

/// The f16 cooperative matrices a device's kernels use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Coop {
    /// Side of the square matrices: 16 or 8.
    pub(super) side: u32,
    /// Invocations in a subgroup, the same in every pipeline.
    pub(super) lanes: u32,
}

impl Coop {
    /// Whether the attention kernels run with these matrices: they give each subgroup MS²/8
    /// lanes (shaders/attention_coop.wgsl); the matmul also takes up to four times as many.
    pub(super) fn attention(&self) -> bool {
        self.lanes == self.side * self.side / 8
    }
}

/// The f16 cooperative-matrix shape the matmul can use on `adapter`: square f16 × f16 → f32
/// matrices of side 16 (preferred) or 8, with subgroups of one fixed size (eight of them make a
/// workgroup) from side²/8 to side²/2 lanes, and room for the kernel's workgroup memory
/// (shaders/matmul_coop.wgsl). On Vulkan, the subgroup size the adapter reports as fixed
/// (NVIDIA: 16×16 on 32 lanes; lavapipe: 8×8 on 8). On Metal, Apple's GPUs only: their
/// simdgroups are always 32 lanes (8×8 matrices), where wgpu reports Metal's whole range (4 to
/// 64), which other Macs' GPUs use.
pub(super) fn coop_config(adapter: &wgpu::Adapter) -> Option<Coop> {
    let need = wgpu::Features::SHADER_F16
        | wgpu::Features::SUBGROUP
        | wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
    let info = adapter.get_info();
    if !adapter.features().contains(need) {
        return None;
    }
    let lanes = match info.backend {
        wgpu::Backend::Vulkan if info.subgroup_min_size == info.subgroup_max_size => {
            info.subgroup_min_size
        }
        wgpu::Backend::Metal if apple_gpu(&info.name) => 32,
        _ => return None,
    };
    let limits = adapter.limits();
    let props = adapter.cooperative_matrix_properties();
    [16u32, 8]
        .into_iter()
        .map(|side| Coop { side, lanes })
        .find(|c| {
            props.iter().any(|p| {
                p.m_size == c.side
                    && p.n_size == c.side
                    && p.k_size == c.side
                    && p.ab_type == wgpu::CooperativeScalarType::F16
                    && p.cr_type == wgpu::CooperativeScalarType::F32
            }) && coop_lanes_fit(c.side, lanes)
                && 8 * lanes <= limits.max_compute_invocations_per_workgroup
                && 8 * lanes <= limits.max_compute_workgroup_size_x
                && coop_workgroup_bytes(c.side, false) <= limits.max_compute_workgroup_storage_size
        })
}

/// Whether the cooperative matmul's slices divide among eight subgroups of `lanes` with
/// matrices of `side`: one to eight vec4 loads an invocation of op(A), one to four of op(B)
/// (shaders/matmul_coop.wgsl, AV and BV), so side²/8 to side²/2 lanes, a power of two.
fn coop_lanes_fit(side: u32, lanes: u32) -> bool {
    lanes.is_power_of_two() && lanes >= side * side / 8 && lanes <= side * side / 2
}

/// The cooperative-matrix configurations `adapter` offers, each as `A·B→C MxNxK` (f16·f16→f32
/// 16x16x16, say), for `dinoscope info`: which ones the kernels could use next.
fn offered_coop(adapter: &wgpu::Adapter) -> Vec<String> {
    if !adapter
        .features()
        .contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
    {
        return Vec::new();
    }
    let name = |t: wgpu::CooperativeScalarType| format!("{t:?}").to_lowercase();
    adapter
        .cooperative_matrix_properties()
        .iter()
        .map(|p| {
            format!(
                "{a}·{a}→{c} {}x{}x{}",
                p.m_size,
                p.n_size,
                p.k_size,
                a = name(p.ab_type),
                c = name(p.cr_type)
            )
        })
        .collect()
}

/// Whether a Metal adapter is one of Apple's own GPUs (M-series, A-series), by its name.
fn apple_gpu(name: &str) -> bool {
    name.starts_with("Apple ")
}

/// Workgroup memory of the cooperative-matrix matmul with matrices of `side`, square tiles or
/// the wide ones (shaders/matmul_coop.wgsl: op(A)'s and op(B)'s padded f16 slices and two f32
/// matrices a subgroup).
fn coop_workgroup_bytes(side: u32, wide: bool) -> u32 {
    let (rows, cols, step) = (if wide { 16 } else { 8 } * side, 8 * side, 2 * side);
    2 * rows * (step + 8) + 2 * step * (cols + 8) + 4 * 16 * side * side
}

impl Gpu {
    /// Lets the matmul use `adapter`'s cooperative matrices, if the device was opened with them
    /// (by [`Gpu::device_descriptor`]); [`Gpu::from_device`] alone leaves them unused.
    pub fn adopt_coop(&mut self, adapter: &wgpu::Adapter) {
        self.coop_offered = offered_coop(adapter);
        self.coop = self
            .features
            .contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
            .then(|| coop_config(adapter))
            .flatten();
    }

    /// Side of the f16 cooperative matrices the matmul uses on this device (16 or 8), or `None`
    /// where it uses the plain kernels.
    pub fn coop_side(&self) -> Option<u32> {
        self.coop.map(|c| c.side)
    }

    /// Invocations in a subgroup of the cooperative-matrix kernels (8 × this make a matmul
    /// workgroup, 4 × this an attention one), where the device has them.
    pub fn coop_lanes(&self) -> Option<u32> {
        self.coop.map(|c| c.lanes)
    }

    /// Whether the attention kernels run on cooperative matrices here: they need side²/8 lanes
    /// a subgroup (NVIDIA's 16×16 on 32, lavapipe's 8×8 on 8, not Apple's 8×8 on 32).
    pub fn coop_attention(&self) -> bool {
        self.coop.is_some_and(|c| c.attention())
    }

    /// Whether the cooperative-matrix matmul's wide tile fits this adapter's workgroup memory
    /// (44.5 KiB with 16×16 matrices; the square tile takes 34.5).
    pub fn coop_wide(&self) -> bool {
        self.coop.is_some_and(|c| {
            coop_workgroup_bytes(c.side, true) <= self.limits.max_compute_workgroup_storage_size
        })
    }

    /// Whether untuned f16 products take the cooperative-matrix kernel: where the device has
    /// one in the layout NVIDIA's GPUs have run (side²/8 lanes a subgroup), except on CPU
    /// drivers, which emulate the matrices and run the plain kernels 2–6× faster
    /// (BENCHMARKS.md); unless `DINOSCOPE_COOP=1` asks for them. Elsewhere (Apple's GPUs on
    /// Metal, other subgroup sizes) the kernel has not been timed against the plain ones, so
    /// only `dinoscope tune`, which times both, gives it the products it wins.
    pub fn coop_by_default(&self) -> bool {
        self.coop.is_some_and(|c| {
            (c.attention() && !self.cpu_driver() && self.info.backend != wgpu::Backend::Metal)
                || coop_forced()
        })
    }

    /// Stops using the cooperative matrices (the matmul falls back to the plain kernels), and
    /// keeps `reason` for [`Gpu::describe`].
    pub fn disable_coop(&mut self, reason: String) {
        self.coop = None;
        self.coop_off = Some(reason);
    }
}

#[cfg(test)]
mod tests {
    use super::{apple_gpu, coop_lanes_fit, Coop};

    /// shaders/matmul_coop.wgsl's slice loads for matrices of `side`, eight subgroups of
    /// `lanes` and the square or wide tile: (AV, BV), or None where they do not divide evenly
    /// into the one to eight vec4 of op(A) and one to four of op(B) an invocation it moves.
    fn loads(side: u32, lanes: u32, wide: bool) -> Option<(u32, u32)> {
        let (sgm, sgn, fn_) = if wide { (4, 2, 4) } else { (2, 4, 2) };
        let (tm, tn, bk, wg) = (sgm * 4 * side, sgn * fn_ * side, 2 * side, 8 * lanes);
        let ok =
            |n: u32, most: u32| n.is_multiple_of(4 * wg) && (1..=most).contains(&(n / (4 * wg)));
        (ok(tm * bk, 8) && ok(bk * tn, 4)).then(|| (tm * bk / (4 * wg), bk * tn / (4 * wg)))
    }

    #[test]
    fn the_cooperative_matmul_takes_the_subgroup_sizes_its_loads_divide_among() {
        for side in [8, 16] {
            for lanes in [4, 8, 16, 32, 64, 128, 256, 24] {
                let fits =
                    loads(side, lanes, false).is_some() && loads(side, lanes, true).is_some();
                assert_eq!(
                    coop_lanes_fit(side, lanes),
                    fits,
                    "side {side}, {lanes} lanes"
                );
            }
        }
        // NVIDIA, lavapipe, Apple: the loads of each tile, and whether attention runs.
        assert_eq!(loads(16, 32, false), Some((4, 4)));
        assert_eq!(loads(16, 32, true), Some((8, 4)));
        assert_eq!(loads(8, 8, false), Some((4, 4)));
        assert_eq!(loads(8, 32, false), Some((1, 1)));
        assert_eq!(loads(8, 32, true), Some((2, 1)));
        assert!(Coop {
            side: 16,
            lanes: 32
        }
        .attention());
        assert!(Coop { side: 8, lanes: 8 }.attention());
        assert!(!Coop { side: 8, lanes: 32 }.attention());
    }

    #[test]
    fn apple_gpus_are_told_from_other_macs_by_name() {
        assert!(apple_gpu("Apple M2 Pro"));
        assert!(!apple_gpu("AMD Radeon Pro 5500M"));
        assert!(!apple_gpu("Intel(R) Iris(TM) Plus Graphics"));
    }
}
