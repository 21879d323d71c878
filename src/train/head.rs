//! The DINO/iBOT projection head (spec §2): a 3-layer MLP with exact GELU, a bottleneck,
//! L2 normalisation and a weight-normed prototype layer without bias, so logits are about cosine
//! similarities. Parameter names follow the official `dino_head.*` keys.

use crate::gpu::{Recorder, Tensor};
use crate::kernels;
use crate::kernels::matmul::{matmul, Epilogue, MatmulDims};
use crate::model::params::ParamStore;
use serde::{Deserialize, Serialize};

/// Head sizes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadConfig {
    /// MLP width (2048 in DINOv2).
    pub hidden: usize,
    /// Bottleneck (256).
    pub bottleneck: usize,
    /// Prototypes K (65,536 in DINOv2; laptop presets use far fewer).
    pub prototypes: usize,
}

/// The L2 normalisation's eps in fp32.
pub const L2_EPS: f32 = 1e-12;

/// (name, shape) of every head parameter, with `prefix` (e.g. "dino_head.").
pub fn head_tensors(dim: usize, h: &HeadConfig, prefix: &str) -> Vec<(String, Vec<usize>)> {
    vec![
        (format!("{prefix}mlp.0.weight"), vec![h.hidden, dim]),
        (format!("{prefix}mlp.0.bias"), vec![h.hidden]),
        (format!("{prefix}mlp.2.weight"), vec![h.hidden, h.hidden]),
        (format!("{prefix}mlp.2.bias"), vec![h.hidden]),
        (
            format!("{prefix}mlp.4.weight"),
            vec![h.bottleneck, h.hidden],
        ),
        (format!("{prefix}mlp.4.bias"), vec![h.bottleneck]),
        (
            format!("{prefix}last_layer.weight_g"),
            vec![h.prototypes, 1],
        ),
        (
            format!("{prefix}last_layer.weight_v"),
            vec![h.prototypes, h.bottleneck],
        ),
    ]
}

/// Activations of one head forward, for its backward.
pub struct HeadActs {
    x: Tensor,
    pre0: Tensor,
    h0: Tensor,
    pre2: Tensor,
    h2: Tensor,
    z: Tensor,
    zn: Tensor,
    w: Tensor,
    rows: usize,
}

/// A head whose parameters are views of a [`ParamStore`] (named `prefix` + local name).
pub struct DinoHead {
    /// Sizes.
    pub cfg: HeadConfig,
    /// Input width.
    pub dim: usize,
    prefix: String,
}

impl DinoHead {
    /// A head reading its parameters under `prefix` ("dino_head.").
    pub fn new(dim: usize, cfg: HeadConfig, prefix: &str) -> DinoHead {
        DinoHead {
            cfg,
            dim,
            prefix: prefix.to_string(),
        }
    }

    fn name(&self, s: &str) -> String {
        format!("{}{s}", self.prefix)
    }

    /// logits [rows, K] of x [rows, D].
    pub fn forward(
        &self,
        rec: &mut Recorder,
        params: &ParamStore,
        x: &Tensor,
        rows: usize,
    ) -> (Tensor, HeadActs) {
        let gpu = rec.gpu();
        let h = &self.cfg;
        let p = |s: &str| params.get(&self.name(s));
        let pre0 = gpu.empty(&[rows, h.hidden]);
        let h0 = gpu.empty(&[rows, h.hidden]);
        kernels::linear::linear_forward(
            rec,
            &h0,
            x,
            &p("mlp.0.weight"),
            Some(&p("mlp.0.bias")),
            Some(&pre0),
        );
        let pre2 = gpu.empty(&[rows, h.hidden]);
        let h2 = gpu.empty(&[rows, h.hidden]);
        kernels::linear::linear_forward(
            rec,
            &h2,
            &h0,
            &p("mlp.2.weight"),
            Some(&p("mlp.2.bias")),
            Some(&pre2),
        );
        let z = gpu.empty(&[rows, h.bottleneck]);
        kernels::linear::linear_forward(
            rec,
            &z,
            &h2,
            &p("mlp.4.weight"),
            Some(&p("mlp.4.bias")),
            None,
        );
        let zn = gpu.empty(&[rows, h.bottleneck]);
        kernels::normalize::l2norm_forward(rec, &zn, &z, h.bottleneck, L2_EPS);
        let w = gpu.empty(&[h.prototypes, h.bottleneck]);
        kernels::normalize::weightnorm_forward(
            rec,
            &w,
            &p("last_layer.weight_v"),
            &p("last_layer.weight_g"),
        );
        let logits = gpu.empty(&[rows, h.prototypes]);
        matmul(
            rec,
            &logits,
            &zn,
            &w,
            MatmulDims::new(rows, h.prototypes, h.bottleneck).tb(),
            1.0,
            false,
            Epilogue::None,
        );
        (
            logits,
            HeadActs {
                x: x.clone(),
                pre0,
                h0,
                pre2,
                h2,
                z,
                zn,
                w,
                rows,
            },
        )
    }

    /// Adds the parameter gradients into `grads` and returns dL/dx [rows, D].
    pub fn backward(
        &self,
        rec: &mut Recorder,
        params: &ParamStore,
        grads: &ParamStore,
        a: &HeadActs,
        d_logits: &Tensor,
    ) -> Tensor {
        let gpu = rec.gpu();
        let h = &self.cfg;
        let rows = a.rows;
        let p = |s: &str| params.get(&self.name(s));
        let g = |s: &str| grads.get(&self.name(s));
        // logits = zn·Wᵀ.
        let d_zn = gpu.empty(&[rows, h.bottleneck]);
        matmul(
            rec,
            &d_zn,
            d_logits,
            &a.w,
            MatmulDims::new(rows, h.bottleneck, h.prototypes),
            1.0,
            false,
            Epilogue::None,
        );
        let d_w = gpu.empty(&[h.prototypes, h.bottleneck]);
        matmul(
            rec,
            &d_w,
            d_logits,
            &a.zn,
            MatmulDims::new(h.prototypes, h.bottleneck, rows).ta(),
            1.0,
            false,
            Epilogue::None,
        );
        kernels::normalize::weightnorm_backward(
            rec,
            &g("last_layer.weight_v"),
            &g("last_layer.weight_g"),
            &d_w,
            &p("last_layer.weight_v"),
            &p("last_layer.weight_g"),
        );
        let d_z = gpu.empty(&[rows, h.bottleneck]);
        kernels::normalize::l2norm_backward(rec, &d_z, &d_zn, &a.z, h.bottleneck, L2_EPS, false);
        let d_h2 = gpu.empty(&[rows, h.hidden]);
        kernels::linear::linear_backward(
            rec,
            Some(&d_h2),
            &g("mlp.4.weight"),
            Some(&g("mlp.4.bias")),
            &d_z,
            &a.h2,
            &p("mlp.4.weight"),
            false,
            true,
        );
        let d_pre2 = gpu.empty(&[rows, h.hidden]);
        kernels::gelu::gelu_backward(rec, &d_pre2, &d_h2, &a.pre2, false);
        let d_h0 = gpu.empty(&[rows, h.hidden]);
        kernels::linear::linear_backward(
            rec,
            Some(&d_h0),
            &g("mlp.2.weight"),
            Some(&g("mlp.2.bias")),
            &d_pre2,
            &a.h0,
            &p("mlp.2.weight"),
            false,
            true,
        );
        let d_pre0 = gpu.empty(&[rows, h.hidden]);
        kernels::gelu::gelu_backward(rec, &d_pre0, &d_h0, &a.pre0, false);
        let dx = gpu.empty(&[rows, self.dim]);
        kernels::linear::linear_backward(
            rec,
            Some(&dx),
            &g("mlp.0.weight"),
            Some(&g("mlp.0.bias")),
            &d_pre0,
            &a.x,
            &p("mlp.0.weight"),
            false,
            true,
        );
        dx
    }
}

/// CPU twin of the head forward: logits of x [rows, D] from named values.
pub fn head_forward_cpu(
    values: &std::collections::BTreeMap<String, Vec<f32>>,
    prefix: &str,
    dim: usize,
    h: &HeadConfig,
    x: &[f32],
) -> Vec<f32> {
    use crate::cpu;
    let v = |s: &str| values[&format!("{prefix}{s}")].as_slice();
    let h0 = cpu::gelu::gelu_forward(&cpu::matmul::linear_forward(
        x,
        v("mlp.0.weight"),
        Some(v("mlp.0.bias")),
        h.hidden,
    ));
    let h2 = cpu::gelu::gelu_forward(&cpu::matmul::linear_forward(
        &h0,
        v("mlp.2.weight"),
        Some(v("mlp.2.bias")),
        h.hidden,
    ));
    let z =
        cpu::matmul::linear_forward(&h2, v("mlp.4.weight"), Some(v("mlp.4.bias")), h.bottleneck);
    let _ = dim;
    let zn = cpu::normalize::l2norm_forward(&z, h.bottleneck, L2_EPS);
    let w = cpu::normalize::weightnorm_forward(v("last_layer.weight_v"), v("last_layer.weight_g"));
    cpu::matmul::linear_forward(&zn, &w, None, h.prototypes)
}
