//! The DINO/iBOT projection head (spec §2): a 3-layer MLP with exact GELU, a bottleneck,
//! L2 normalisation and a weight-normed prototype layer without bias, so logits are about cosine
//! similarities. Parameter names follow the official `dino_head.*` keys.

use crate::gpu::{DType, Recorder, Tensor};
use crate::kernels;
use crate::kernels::cast::to_dtype;
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

/// Activations of one head forward, for its backward. With f16 products the inputs of the
/// products (`x`, `h0`, `h2`, `zn`) and the weights they met (`w`, `mlp_w`) are the f16 copies
/// the forward multiplied.
pub struct HeadActs {
    x: Tensor,
    pre0: Tensor,
    h0: Tensor,
    pre2: Tensor,
    h2: Tensor,
    z: Tensor,
    zn: Tensor,
    w: Tensor,
    /// The f16 copies of mlp.0, mlp.2 and mlp.4's weights (f16 products only).
    mlp_w: Option<[Tensor; 3]>,
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
        self.forward_mixed(rec, params, x, rows, false)
    }

    /// [`DinoHead::forward`], with `half` its four products multiplying f16 copies of their
    /// inputs and weights (f32 accumulation, f32 outputs), as a mixed-precision step does; the
    /// GELUs, the normalisations and the weight norm stay in f32.
    pub fn forward_mixed(
        &self,
        rec: &mut Recorder,
        params: &ParamStore,
        x: &Tensor,
        rows: usize,
        half: bool,
    ) -> (Tensor, HeadActs) {
        let gpu = rec.gpu();
        let h = &self.cfg;
        let dt = if half { DType::F16 } else { DType::F32 };
        let p = |rec: &mut Recorder, s: &str| to_dtype(rec, &params.get(&self.name(s)), dt);
        let mlp_w = [
            p(rec, "mlp.0.weight"),
            p(rec, "mlp.2.weight"),
            p(rec, "mlp.4.weight"),
        ];
        let x = to_dtype(rec, x, dt);
        // An f16 product's output is cast for the next product and its f32 copy freed at once
        // (`down`), so the step never holds both.
        let pre0 = gpu.empty(&[rows, h.hidden]);
        let h0 = gpu.empty(&[rows, h.hidden]);
        let b0 = p(rec, "mlp.0.bias");
        kernels::linear::linear_forward(rec, &h0, &x, &mlp_w[0], Some(&b0), Some(&pre0));
        let h0 = down(rec, h0, dt);
        let pre2 = gpu.empty(&[rows, h.hidden]);
        let h2 = gpu.empty(&[rows, h.hidden]);
        let b2 = p(rec, "mlp.2.bias");
        kernels::linear::linear_forward(rec, &h2, &h0, &mlp_w[1], Some(&b2), Some(&pre2));
        let h2 = down(rec, h2, dt);
        let z = gpu.empty(&[rows, h.bottleneck]);
        let b4 = p(rec, "mlp.4.bias");
        kernels::linear::linear_forward(rec, &z, &h2, &mlp_w[2], Some(&b4), None);
        let zn = gpu.empty(&[rows, h.bottleneck]);
        kernels::normalize::l2norm_forward(rec, &zn, &z, h.bottleneck, L2_EPS);
        let zn = down(rec, zn, dt);
        let w = gpu.empty(&[h.prototypes, h.bottleneck]);
        kernels::normalize::weightnorm_forward(
            rec,
            &w,
            &params.get(&self.name("last_layer.weight_v")),
            &params.get(&self.name("last_layer.weight_g")),
        );
        let w = down(rec, w, dt);
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
                x,
                pre0,
                h0,
                pre2,
                h2,
                z,
                zn,
                w,
                mlp_w: half.then_some(mlp_w),
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
        self.backward_mixed(rec, params, grads, a, d_logits.clone(), None)
    }

    /// [`DinoHead::backward`] after a forward with f16 products: `overflow` is the flag the
    /// loss-scaled gradients raise on their way into f16 (see
    /// [`crate::kernels::linear::linear_backward_half`]); it must be given exactly when the
    /// forward multiplied in f16. `d_logits` is taken so that, rounded to f16, its f32 copy can
    /// go back to the pool before the products (the logits' gradient is the step's largest
    /// tensor).
    pub fn backward_mixed(
        &self,
        rec: &mut Recorder,
        params: &ParamStore,
        grads: &ParamStore,
        a: &HeadActs,
        d_logits: Tensor,
        overflow: Option<&Tensor>,
    ) -> Tensor {
        assert_eq!(
            a.mlp_w.is_some(),
            overflow.is_some(),
            "head backward: f16 products need the overflow flag (and only they)"
        );
        let gpu = rec.gpu();
        let h = &self.cfg;
        let rows = a.rows;
        let p = |s: &str| params.get(&self.name(s));
        let g = |s: &str| grads.get(&self.name(s));
        // logits = zn·Wᵀ, with the gradient rounded to f16 for f16 products.
        let dy = match overflow {
            Some(flag) => {
                let t = gpu.empty_as(d_logits.shape(), DType::F16);
                kernels::cast::cast_checked(rec, &t, &d_logits, flag);
                t
            }
            None => d_logits,
        };
        let d_zn = gpu.empty(&[rows, h.bottleneck]);
        matmul(
            rec,
            &d_zn,
            &dy,
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
            &dy,
            &a.zn,
            MatmulDims::new(h.prototypes, h.bottleneck, rows).ta(),
            1.0,
            false,
            Epilogue::None,
        );
        drop(dy);
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
        // One linear layer: dx = dy·W, dW += dyᵀ·x, db += Σ dy.
        let linear = |rec: &mut Recorder, dx: &Tensor, layer: usize, dy: &Tensor, x: &Tensor| {
            let name = |t: &str| format!("mlp.{layer}.{t}");
            let (dw, db) = (g(&name("weight")), g(&name("bias")));
            match (&a.mlp_w, overflow) {
                (Some(ws), Some(flag)) => kernels::linear::linear_backward_half(
                    rec,
                    Some(dx),
                    &dw,
                    Some(&db),
                    dy,
                    (x, &ws[layer / 2]),
                    flag,
                    false,
                    true,
                ),
                _ => kernels::linear::linear_backward(
                    rec,
                    Some(dx),
                    &dw,
                    Some(&db),
                    dy,
                    x,
                    &p(&name("weight")),
                    false,
                    true,
                ),
            }
        };
        let d_h2 = gpu.empty(&[rows, h.hidden]);
        linear(rec, &d_h2, 4, &d_z, &a.h2);
        let d_pre2 = gpu.empty(&[rows, h.hidden]);
        kernels::gelu::gelu_backward(rec, &d_pre2, &d_h2, &a.pre2, false);
        let d_h0 = gpu.empty(&[rows, h.hidden]);
        linear(rec, &d_h0, 2, &d_pre2, &a.h0);
        let d_pre0 = gpu.empty(&[rows, h.hidden]);
        kernels::gelu::gelu_backward(rec, &d_pre0, &d_h0, &a.pre0, false);
        let dx = gpu.empty(&[rows, self.dim]);
        linear(rec, &dx, 0, &d_pre0, &a.x);
        dx
    }
}

/// `t` in `dtype`, the original freed (a no-op when it already is).
fn down(rec: &mut Recorder, t: Tensor, dtype: DType) -> Tensor {
    to_dtype(rec, &t, dtype)
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
