//! Plain-loop CPU twins of every kernel, forward and backward, accumulating in f64. They are the
//! reference the GPU kernels are tested against (tests, `dinoscope selftest`), and are checked
//! themselves against finite differences and the PyTorch golden tensors.

pub mod attention;
pub mod cross_entropy;
pub mod elementwise;
pub mod gelu;
pub mod interp;
pub mod layernorm;
pub mod losses;
pub mod matmul;
pub mod normalize;
pub mod optim;
pub mod patch_embed;
pub mod rope;
pub mod softmax;
pub mod tokens;
