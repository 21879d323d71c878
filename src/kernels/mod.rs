//! Kernel launchers: one file per `shaders/<op>.wgsl`, each with its params struct, its kernel
//! descriptors and `<op>_forward` / `<op>_backward` functions that record into a [`Recorder`].
//!
//! Conventions: outputs first, dimensions last; shapes are checked with `assert!` naming the op
//! (a mismatch is a programming error, not user input). `accumulate` flags mean `+=` into the
//! output (parameter gradients, the residual stream); otherwise outputs are overwritten.
//!
//! [`Recorder`]: crate::gpu::Recorder

pub mod adamw;
pub mod attention;
pub mod attention_plan;
pub mod cast;
pub mod cross_entropy;
pub mod elementwise;
pub mod ema;
pub mod gather;
pub mod gelu;
pub mod gram;
pub mod interp;
pub mod layernorm;
pub mod linear;
pub mod loss_scale;
pub mod losses;
pub mod matmul;
pub mod normalize;
pub mod patch_embed;
pub mod reduce;
pub mod rope;
pub mod softmax;
pub mod tokens;

use crate::gpu::{Kernel, Recorder};

/// Every kernel descriptor, for the shader validation test and pipeline warm-up.
pub fn all_kernels() -> Vec<&'static Kernel> {
    vec![
        &adamw::ADAMW_STEP,
        &adamw::ADAMW_STEP_V4,
        &attention::ATTENTION_FORWARD,
        &attention::ATTENTION_FORWARD4,
        &attention::ATTENTION_BACKWARD_DKV2,
        &attention::ATTENTION_BACKWARD_DQ2,
        &attention::ATTENTION_FORWARD2,
        &attention::ATTENTION_PROBS,
        &attention::ATTENTION_BACKWARD_DELTA,
        &attention::ATTENTION_BACKWARD_DELTA16,
        &attention::ATTENTION_BACKWARD_DQ,
        &attention::ATTENTION_BACKWARD_DKV,
        &attention::ATTENTION_FORWARD_SG,
        &attention::ATTENTION_FORWARD4_U,
        &attention::ATTENTION_BACKWARD_DQ_U,
        &attention::ATTENTION_BACKWARD_DKV_U,
        &attention::ATTENTION_FORWARD2_U,
        &attention::ATTENTION_BACKWARD_DQ2_U,
        &attention::ATTENTION_BACKWARD_DKV2_U,
        &attention::ATTENTION_BACKWARD_DQ2_WG_U,
        &attention::ATTENTION_BACKWARD_DKV2_WG_U,
        &attention::ATTENTION_FORWARD_CROSSED_U,
        &attention::ATTENTION_FORWARD_CROSSED_WG_U,
        &attention::ATTENTION_FORWARD_TILED,
        &attention::ATTENTION_BACKWARD_DQ_TILED,
        &attention::ATTENTION_BACKWARD_DKV_TILED,
        &cast::CAST_TO_S,
        &cast::CAST_TO_F32,
        &cast::CAST_TO_S_CHECKED,
        &cross_entropy::CE_FORWARD,
        &cross_entropy::CE_BACKWARD,
        &elementwise::ADD_FORWARD,
        &elementwise::MUL_FORWARD,
        &elementwise::AXPBY,
        &elementwise::ADD_MUL,
        &elementwise::SCALE_ROWS,
        &elementwise::SCALE_ROWS_V4,
        &elementwise::MUL_BACKWARD4,
        &elementwise::ADD_FORWARD_V4,
        &elementwise::MUL_FORWARD_V4,
        &elementwise::AXPBY_V4,
        &elementwise::ADD_MUL_V4,
        &ema::EMA_UPDATE,
        &ema::EMA_UPDATE_V4,
        &gather::GATHER_ROWS,
        &gather::SCATTER_ADD_ROWS,
        &gather::LOOKUP_BYTES,
        &loss_scale::LOSS_SCALE_UPDATE,
        &loss_scale::SCALE_BY_STATE,
        &losses::TEACHER_SOFTMAX,
        &losses::DINO_LOSS_FORWARD,
        &losses::DINO_LOSS_BACKWARD,
        &losses::SINKHORN_INIT,
        &losses::SINKHORN_COL_LSE,
        &losses::SINKHORN_SUB_COLS,
        &losses::SINKHORN_ROWS,
        &losses::KOLEO_FORWARD,
        &losses::KOLEO_FORWARD_ROWS,
        &losses::KOLEO_BACKWARD,
        &gelu::GELU_FORWARD,
        &gelu::GELU_BACKWARD,
        &gelu::GELU_FORWARD_V4,
        &gelu::GELU_BACKWARD_V4,
        &gelu::SWIGLU_FORWARD,
        &gelu::SWIGLU_BACKWARD,
        &interp::INTERP_FORWARD,
        &interp::INTERP_BACKWARD,
        &layernorm::LN_FORWARD,
        &layernorm::LN_BACKWARD,
        &layernorm::LN_BACKWARD_PARAMS,
        &layernorm::LN_FORWARD_SG,
        &layernorm::LN_BACKWARD_SG,
        &matmul::MATMUL,
        &matmul::MATMUL_GENERAL_DIRECT,
        &matmul::MATMUL_GENERAL_DIRECT_SG,
        &matmul::MATMUL_128,
        &matmul::MATMUL_128X64,
        &matmul::MATMUL_64,
        &matmul::MATMUL_DIRECT,
        &matmul::MATMUL_DIRECT_SG,
        &attention::ATTENTION_FORWARD_COOP16,
        &attention::ATTENTION_FORWARD_COOP8,
        &attention::ATTENTION_BACKWARD_DQ_COOP16,
        &attention::ATTENTION_BACKWARD_DKV_COOP16,
        &attention::ATTENTION_BACKWARD_DQ_COOP8,
        &attention::ATTENTION_BACKWARD_DKV_COOP8,
        &matmul::MATMUL_COOP16,
        &matmul::MATMUL_COOP8,
        &matmul::MATMUL_COOP16_WIDE,
        &matmul::MATMUL_COOP8_WIDE,
        &matmul::MATMUL_REDUCE,
        &rope::ROPE_APPLY,
        &normalize::L2NORM_FORWARD,
        &normalize::L2NORM_BACKWARD,
        &normalize::WEIGHTNORM_FORWARD,
        &normalize::WEIGHTNORM_BACKWARD,
        &patch_embed::IM2COL,
        &patch_embed::COL2IM,
        &reduce::SUM_ROWS,
        &reduce::SUM_ROWS4,
        &reduce::REDUCE_FULL,
        &reduce::REDUCE_BACKWARD,
        &reduce::CLIP_BY_NORM,
        &softmax::SOFTMAX_FORWARD,
        &softmax::SOFTMAX_BACKWARD,
        &softmax::SOFTMAX_FORWARD_SG,
        &softmax::SOFTMAX_BACKWARD_SG,
        &tokens::TOKENS_FORWARD,
        &tokens::TOKENS_BACKWARD_PATCHES,
        &tokens::TOKENS_BACKWARD_PARAMS,
        &tokens::TOKENS_BACKWARD_MASK,
    ]
}

/// Invocations per row for the row kernels (layer norm, softmax, the norms and losses): a power
/// of two near dim / 4 (at
/// most the workgroup's 256), so short rows share a workgroup and its barriers. In the CPU
/// layouts ([`Recorder::cpu_layouts`]) one invocation takes a whole row: a CPU driver runs a
/// workgroup's invocations as SIMD lanes, where every barrier of a shared reduction switches
/// between all of them, and that costs more than a lane walking its row alone.
fn row_lanes(rec: &Recorder, dim: usize) -> u32 {
    if rec.cpu_layouts() {
        return 1;
    }
    (dim.div_ceil(4).next_power_of_two().min(256)) as u32
}

/// Invocations per row for the row kernels that keep up to 16 elements a lane in registers
/// (layer norm, softmax): a power of two near dim / 16, but at least 32 (a subgroup on most
/// GPUs) while the row has that many quads, and at most 256. So the rows of attention (261) and
/// ViT-S (384) each take 32 lanes, which reduce without a barrier where the adapter has
/// subgroups, and rows up to 4,096 are read once. CPU layouts: one invocation a row. Without
/// [`Recorder::wide_rows`], [`row_lanes`]' four columns a lane.
fn row_lanes16(rec: &Recorder, dim: usize) -> u32 {
    if !rec.wide_rows() {
        return row_lanes(rec, dim);
    }
    if rec.cpu_layouts() {
        return 1;
    }
    gpu_lanes16(dim)
}

fn gpu_lanes16(dim: usize) -> u32 {
    let quads = dim.div_ceil(4).next_power_of_two();
    (dim.div_ceil(16)
        .next_power_of_two()
        .max(quads.min(32))
        .min(256)) as u32
}

/// The grid of a [`row_lanes16`] kernel for `rows` rows of `dim`.
fn row_grid16(rec: &Recorder, rows: usize, dim: usize) -> [u32; 3] {
    crate::gpu::grid_rows(rows.div_ceil(256 / row_lanes16(rec, dim) as usize))
}

/// Whether a row kernel takes its `_sg` variant: GPU layouts (several lanes a row) on a device
/// with subgroups, unless the recording turned them off.
fn row_subgroups(rec: &Recorder) -> bool {
    rec.subgroups() && !rec.cpu_layouts()
}

/// The grid of a row kernel for `rows` rows of `dim`.
fn row_grid(rec: &Recorder, rows: usize, dim: usize) -> [u32; 3] {
    crate::gpu::grid_rows(rows.div_ceil(256 / row_lanes(rec, dim) as usize))
}

fn flag(b: bool) -> u32 {
    b as u32
}

#[cfg(test)]
mod tests {
    #[test]
    fn wide_rows_take_a_subgroup_and_fit_in_sixteen_columns_a_lane() {
        let cases = [(1, 1), (7, 2), (65, 32), (261, 32), (384, 32), (500, 32)];
        let more = [(1024, 64), (2100, 256), (4096, 256), (4500, 256)];
        for (dim, lanes) in cases.into_iter().chain(more) {
            assert_eq!(super::gpu_lanes16(dim), lanes, "dim {dim}");
            assert!(256 % lanes == 0, "dim {dim}");
            assert!(dim > 4096 || dim <= 16 * lanes as usize, "dim {dim}");
        }
    }
}
