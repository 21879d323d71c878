//! Golden op cases: read inputs, run forward and backward on the GPU (or the CPU twins), compare
//! every stored output and gradient with the golden tolerance rule.

use super::{CaseResult, Judge};
use crate::cpu;
use crate::cpu::interp::InterpMode;
use crate::fixtures::{FixtureError, HostTensor, Manifest, TensorFile};
use crate::gpu::{Gpu, Recorder, Tensor};
use crate::kernels;
use crate::kernels::attention::{AttnDims, OutLayout, QkvLayout};
use crate::kernels::cross_entropy::CrossEntropy;
use crate::kernels::interp::{GridLayout, InterpDims, InterpWeights};
use crate::kernels::matmul::MatmulDims;
use crate::kernels::patch_embed::PatchDims;

/// Where an op case runs.
pub enum Exec<'a> {
    /// The GPU kernels.
    Gpu(&'a Gpu),
    /// The CPU twins.
    Cpu,
}

/// The op an op case exercises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// matmul / bmm.
    Matmul,
    /// layer_norm*.
    LayerNorm,
    /// gelu.
    Gelu,
    /// softmax.
    Softmax,
    /// sdpa.
    Attention,
    /// linear.
    Linear,
    /// cross_entropy.
    CrossEntropy,
    /// patch_embed.
    PatchEmbed,
    /// `interp.<h>x<w>` and `interp.aa_<h>x<w>`.
    Interp,
    /// dino: centering, center update, Sinkhorn, the global, local and total DINO losses.
    Dino,
    /// ibot: masked-patch loss with centering and with Sinkhorn.
    Ibot,
    /// koleo: nearest neighbours and the loss over one chunk and per crop.
    Koleo,
}

/// The kind of an op case by its name, or `None` when no op here handles it.
pub fn op_case_kind(case: &str) -> Option<OpKind> {
    Some(match case {
        "matmul" | "bmm" => OpKind::Matmul,
        "gelu" => OpKind::Gelu,
        "softmax" => OpKind::Softmax,
        "sdpa" => OpKind::Attention,
        "linear" => OpKind::Linear,
        "cross_entropy" => OpKind::CrossEntropy,
        "patch_embed" => OpKind::PatchEmbed,
        c if c.starts_with("layer_norm") => OpKind::LayerNorm,
        c if c.starts_with("interp.") => OpKind::Interp,
        "dino" => OpKind::Dino,
        "ibot" => OpKind::Ibot,
        "koleo" => OpKind::Koleo,
        _ => return None,
    })
}

/// Runs one op case and judges its outputs.
pub fn run_op_case(
    exec: &Exec,
    file: &TensorFile,
    manifest: &Manifest,
    rel: &str,
    case: &str,
    kind: OpKind,
) -> CaseResult {
    let mut judge = Judge::new(case);
    let outputs = match compute(exec, file, manifest, rel, case, kind) {
        Ok(o) => o,
        Err(e) => {
            judge.fail(e.to_string());
            return judge.finish();
        }
    };
    let mut checked = std::collections::HashSet::new();
    for (suffix, got) in outputs {
        let name = format!("{case}.{suffix}");
        if let Ok(want) = file.get(&name) {
            let tol = manifest.tolerance(rel, &name, &want.data);
            judge.check(&name, &got, &want.data, tol);
            checked.insert(name);
        }
    }
    // Every output and gradient the file holds for the case is one we compare.
    let prefix = format!("{case}.");
    for name in file.names().iter().filter(|n| n.starts_with(&prefix)) {
        let role = manifest.get(rel, name).map(|e| e.role.as_str());
        if matches!(role, Some("output" | "grad")) && !checked.contains(name) {
            judge.fail(format!("{name}: in {rel}, but not computed"));
        }
    }
    judge.finish()
}

pub(crate) type Outputs = Vec<(&'static str, Vec<f32>)>;

pub(crate) fn bad(file: &TensorFile, msg: String) -> FixtureError {
    FixtureError::new(&file.path, msg)
}

fn rank_at_least<'a>(
    file: &TensorFile,
    name: &str,
    t: &'a HostTensor,
    r: usize,
) -> Result<&'a [usize], FixtureError> {
    if t.shape.len() < r {
        return Err(bad(
            file,
            format!(
                "tensor '{name}' has shape {:?}, expected rank ≥ {r}",
                t.shape
            ),
        ));
    }
    Ok(&t.shape)
}

/// `t`'s shape, which must have rank `r` and no empty dimension.
fn rank_exactly<'a>(
    file: &TensorFile,
    name: &str,
    t: &'a HostTensor,
    r: usize,
) -> Result<&'a [usize], FixtureError> {
    if t.shape.len() != r || t.shape.contains(&0) {
        return Err(bad(
            file,
            format!(
                "tensor '{name}' has shape {:?}, expected {r} dimensions, none of them 0",
                t.shape
            ),
        ));
    }
    Ok(&t.shape)
}

/// Runs `f` on a recorder and reads back the listed tensors.
pub(crate) fn on_gpu(
    gpu: &Gpu,
    f: impl FnOnce(&mut Recorder) -> Vec<(&'static str, Tensor)>,
) -> Result<Outputs, FixtureError> {
    let mut rec = Recorder::new(gpu);
    let outs = f(&mut rec);
    let err =
        |e: crate::gpu::GpuError| FixtureError::new(std::path::Path::new("<gpu>"), e.to_string());
    rec.finish().map_err(err)?;
    outs.into_iter()
        .map(|(n, t)| Ok((n, read(gpu, &t).map_err(err)?)))
        .collect()
}

/// Reads a tensor back, with the error as text.
pub(crate) fn read_tensor(gpu: &Gpu, t: &Tensor) -> Result<Vec<f32>, String> {
    read(gpu, t).map_err(|e| e.to_string())
}

#[cfg(not(target_arch = "wasm32"))]
fn read(gpu: &Gpu, t: &Tensor) -> crate::gpu::Result<Vec<f32>> {
    gpu.read(t)
}

#[cfg(target_arch = "wasm32")]
fn read(_gpu: &Gpu, _t: &Tensor) -> crate::gpu::Result<Vec<f32>> {
    Err(crate::gpu::GpuError::Readback(
        "blocking readback is not available in the browser".into(),
    ))
}

fn layer_norm_eps(manifest: &Manifest, rel: &str, case: &str) -> f32 {
    // The eps is recorded in the description ("... eps=1e-6 ..."); DINOv2's 1e-6 otherwise.
    manifest
        .get(rel, &format!("{case}.y"))
        .and_then(|e| {
            let i = e.description.find("eps=")?;
            let rest = &e.description[i + 4..];
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || "eE.-+".contains(c)))
                .unwrap_or(rest.len());
            rest[..end].parse::<f32>().ok()
        })
        .unwrap_or(1e-6)
}

/// One op case: its tensors, their manifest entries and where it runs.
#[derive(Clone, Copy)]
struct Case<'a> {
    exec: &'a Exec<'a>,
    file: &'a TensorFile,
    manifest: &'a Manifest,
    rel: &'a str,
    case: &'a str,
}

impl Case<'_> {
    /// The case's tensor `name`; an empty one checks nothing and has kernels divide by zero
    /// sizes, so it is refused.
    fn tensor(&self, name: &str) -> Result<&HostTensor, FixtureError> {
        let x = self.file.get(&format!("{}.{name}", self.case))?;
        match x.shape.contains(&0) {
            true => Err(bad(
                self.file,
                format!(
                    "{}: tensor '{name}' of shape {:?} is empty",
                    self.case, x.shape
                ),
            )),
            false => Ok(x),
        }
    }
}

fn compute(
    exec: &Exec,
    file: &TensorFile,
    manifest: &Manifest,
    rel: &str,
    case: &str,
    kind: OpKind,
) -> Result<Outputs, FixtureError> {
    let c = Case {
        exec,
        file,
        manifest,
        rel,
        case,
    };
    match kind {
        OpKind::Dino | OpKind::Ibot | OpKind::Koleo => {
            super::losses::compute(exec, file, manifest, case, kind)
        }
        OpKind::Matmul => matmul_case(&c),
        OpKind::LayerNorm => layer_norm_case(&c),
        OpKind::Gelu => gelu_case(&c),
        OpKind::Softmax => softmax_case(&c),
        OpKind::Attention => attention_case(&c),
        OpKind::Linear => linear_case(&c),
        OpKind::CrossEntropy => cross_entropy_case(&c),
        OpKind::PatchEmbed => patch_embed_case(&c),
        OpKind::Interp => interp_case(&c),
    }
}

/// matmul / bmm: the product and both operand gradients.
fn matmul_case(c: &Case) -> Result<Outputs, FixtureError> {
    let Case {
        exec, file, case, ..
    } = *c;
    let t = |s: &str| c.tensor(s);
    let (a, b, up) = (t("a")?, t("b")?, t("upstream_c")?);
    let sa = rank_at_least(file, "a", a, 2)?;
    let sb = rank_at_least(file, "b", b, 2)?;
    let (m, k) = (sa[sa.len() - 2], sa[sa.len() - 1]);
    let n = sb[sb.len() - 1];
    let batch = a.data.len() / (m * k).max(1);
    if sb[sb.len() - 2] != k || b.data.len() != batch * k * n || up.data.len() != batch * m * n {
        return Err(bad(
            file,
            format!("{case}: shapes {sa:?} · {sb:?} do not match"),
        ));
    }
    let d = MatmulDims::new(m, n, k).batched(batch);
    match exec {
        Exec::Cpu => {
            let c = cpu::matmul::matmul(&a.data, &b.data, d);
            let (ga, gb) = cpu::matmul::matmul_backward(&up.data, &a.data, &b.data, batch, m, n, k);
            Ok(vec![("c", c), ("grad_a", ga), ("grad_b", gb)])
        }
        Exec::Gpu(g) => on_gpu(g, |rec| {
            let (ta, tb, tu) = (
                g.upload(&a.data, &a.shape),
                g.upload(&b.data, &b.shape),
                g.upload(&up.data, &up.shape),
            );
            let c = g.empty(&up.shape);
            kernels::matmul::matmul_forward(rec, &c, &ta, &tb, d);
            let ga = g.empty(&a.shape);
            let gb = g.empty(&b.shape);
            kernels::matmul::matmul_backward(rec, Some(&ga), Some(&gb), &tu, &ta, &tb, d, false);
            vec![("c", c), ("grad_a", ga), ("grad_b", gb)]
        }),
    }
}

/// layer_norm*: the output and the input, weight and bias gradients.
fn layer_norm_case(c: &Case) -> Result<Outputs, FixtureError> {
    let Case {
        exec,
        file,
        case,
        manifest,
        rel,
    } = *c;
    let t = |s: &str| c.tensor(s);
    let (x, w, b, up) = (t("x")?, t("weight")?, t("bias")?, t("upstream_y")?);
    let dim = w.data.len();
    if dim == 0 || x.data.len() % dim != 0 || b.data.len() != dim || up.data.len() != x.data.len() {
        return Err(bad(
            file,
            format!(
                "{case}: x {:?} does not match weight {:?}",
                x.shape, w.shape
            ),
        ));
    }
    let eps = layer_norm_eps(manifest, rel, case);
    match exec {
        Exec::Cpu => {
            let (y, _, _) = cpu::layernorm::layernorm_forward(&x.data, &w.data, &b.data, eps);
            let (gx, gw, gb) = cpu::layernorm::layernorm_backward(&up.data, &x.data, &w.data, eps);
            Ok(vec![
                ("y", y),
                ("grad_x", gx),
                ("grad_weight", gw),
                ("grad_bias", gb),
            ])
        }
        Exec::Gpu(g) => on_gpu(g, |rec| {
            let (tx, tw, tb, tu) = (
                g.upload(&x.data, &x.shape),
                g.upload(&w.data, &w.shape),
                g.upload(&b.data, &b.shape),
                g.upload(&up.data, &up.shape),
            );
            let y = g.empty(&x.shape);
            let saved = kernels::layernorm::layernorm_forward(rec, &y, &tx, &tw, &tb, eps);
            let (gx, gw, gb) = (g.empty(&x.shape), g.empty(&w.shape), g.empty(&b.shape));
            kernels::layernorm::layernorm_backward(
                rec, &gx, &gw, &gb, &tu, &tx, &tw, &saved, false, false,
            );
            vec![
                ("y", y),
                ("grad_x", gx),
                ("grad_weight", gw),
                ("grad_bias", gb),
            ]
        }),
    }
}

/// gelu: the output and the input gradient.
fn gelu_case(c: &Case) -> Result<Outputs, FixtureError> {
    let Case {
        exec, file, case, ..
    } = *c;
    let t = |s: &str| c.tensor(s);
    let (x, up) = (t("x")?, t("upstream_y")?);
    if up.data.len() != x.data.len() {
        return Err(bad(file, format!("{case}: upstream shape differs from x")));
    }
    match exec {
        Exec::Cpu => Ok(vec![
            ("y", cpu::gelu::gelu_forward(&x.data)),
            ("grad_x", cpu::gelu::gelu_backward(&up.data, &x.data)),
        ]),
        Exec::Gpu(g) => on_gpu(g, |rec| {
            let (tx, tu) = (g.upload(&x.data, &x.shape), g.upload(&up.data, &up.shape));
            let (y, gx) = (g.empty(&x.shape), g.empty(&x.shape));
            kernels::gelu::gelu_forward(rec, &y, &tx);
            kernels::gelu::gelu_backward(rec, &gx, &tu, &tx, false);
            vec![("y", y), ("grad_x", gx)]
        }),
    }
}

/// softmax: the output and the input gradient.
fn softmax_case(c: &Case) -> Result<Outputs, FixtureError> {
    let Case {
        exec, file, case, ..
    } = *c;
    let t = |s: &str| c.tensor(s);
    let (x, up) = (t("x")?, t("upstream_y")?);
    let cols = *rank_at_least(file, "x", x, 1)?.last().unwrap_or(&1);
    if up.data.len() != x.data.len() || cols == 0 {
        return Err(bad(file, format!("{case}: upstream shape differs from x")));
    }
    match exec {
        Exec::Cpu => {
            let y = cpu::softmax::softmax_forward(&x.data, cols, 1.0);
            let gx = cpu::softmax::softmax_backward(&up.data, &y, cols, 1.0);
            Ok(vec![("y", y), ("grad_x", gx)])
        }
        Exec::Gpu(g) => on_gpu(g, |rec| {
            let (tx, tu) = (g.upload(&x.data, &x.shape), g.upload(&up.data, &up.shape));
            let (y, gx) = (g.empty(&x.shape), g.empty(&x.shape));
            kernels::softmax::softmax_forward(rec, &y, &tx, cols, 1.0);
            kernels::softmax::softmax_backward(rec, &gx, &tu, &y, cols, 1.0, false);
            vec![("y", y), ("grad_x", gx)]
        }),
    }
}

/// sdpa: the output and the query, key and value gradients.
fn attention_case(c: &Case) -> Result<Outputs, FixtureError> {
    let Case {
        exec, file, case, ..
    } = *c;
    let t = |s: &str| c.tensor(s);
    let (q, k, v, up) = (t("q")?, t("k")?, t("v")?, t("upstream_out")?);
    let s = rank_exactly(file, "q", q, 4)?;
    let (b, h, n, d) = (s[0], s[1], s[2], s[3]);
    if k.shape != q.shape || v.shape != q.shape || up.shape != q.shape {
        return Err(bad(
            file,
            format!("{case}: q, k, v and upstream must share the shape {s:?}"),
        ));
    }
    if d > kernels::attention::MAX_HEAD_DIM {
        return Err(bad(
            file,
            format!(
                "{case}: head dim {d} exceeds {}",
                kernels::attention::MAX_HEAD_DIM
            ),
        ));
    }
    let dims = AttnDims::new(b, h, n, d);
    match exec {
        Exec::Cpu => {
            let (o, p, l) = cpu::attention::attention_forward(
                &q.data,
                &k.data,
                &v.data,
                b * h,
                n,
                n,
                d,
                dims.scale,
            );
            let (gq, gk, gv) = cpu::attention::attention_backward(
                &up.data,
                &q.data,
                &k.data,
                &v.data,
                b * h,
                n,
                n,
                d,
                dims.scale,
            );
            Ok(vec![
                ("out", o),
                ("probs", p),
                ("lse", l),
                ("grad_q", gq),
                ("grad_k", gk),
                ("grad_v", gv),
            ])
        }
        Exec::Gpu(g) => on_gpu(g, |rec| {
            let (tq, tk, tv, tu) = (
                g.upload(&q.data, s),
                g.upload(&k.data, s),
                g.upload(&v.data, s),
                g.upload(&up.data, s),
            );
            let layout = QkvLayout::bhnd(h, n, d);
            let ol = OutLayout::bhnd(h, n, d);
            let out = g.empty(s);
            let lse =
                kernels::attention::attention_forward(rec, &out, &tq, &tk, &tv, dims, layout, ol);
            let probs = g.empty(&[b, h, n, n]);
            kernels::attention::attention_probs(rec, &probs, &tq, &tk, &lse, dims, layout);
            let (gq, gk, gv) = (g.empty(s), g.empty(s), g.empty(s));
            kernels::attention::attention_backward(
                rec, &gq, &gk, &gv, &tu, &tq, &tk, &tv, &out, &lse, dims, layout, ol,
            );
            vec![
                ("out", out),
                ("probs", probs),
                ("lse", lse),
                ("grad_q", gq),
                ("grad_k", gk),
                ("grad_v", gv),
            ]
        }),
    }
}

/// linear: the output and the input, weight and bias gradients.
fn linear_case(c: &Case) -> Result<Outputs, FixtureError> {
    let Case {
        exec, file, case, ..
    } = *c;
    let t = |s: &str| c.tensor(s);
    let (x, w, b, up) = (t("x")?, t("weight")?, t("bias")?, t("upstream_y")?);
    let ws = rank_at_least(file, "weight", w, 2)?;
    let (out_f, in_f) = (ws[0], ws[1]);
    let rows = x.data.len() / in_f.max(1);
    if rows * in_f != x.data.len() || b.data.len() != out_f || up.data.len() != rows * out_f {
        return Err(bad(
            file,
            format!(
                "{case}: x {:?}, weight {ws:?}, bias {:?} do not fit",
                x.shape, b.shape
            ),
        ));
    }
    match exec {
        Exec::Cpu => {
            let y = cpu::matmul::linear_forward(&x.data, &w.data, Some(&b.data), out_f);
            let (gx, gw, gb) = cpu::matmul::linear_backward(&up.data, &x.data, &w.data, out_f);
            Ok(vec![
                ("y", y),
                ("grad_x", gx),
                ("grad_weight", gw),
                ("grad_bias", gb),
            ])
        }
        Exec::Gpu(g) => on_gpu(g, |rec| {
            let (tx, tw, tb, tu) = (
                g.upload(&x.data, &x.shape),
                g.upload(&w.data, ws),
                g.upload(&b.data, &b.shape),
                g.upload(&up.data, &up.shape),
            );
            let y = g.empty(&up.shape);
            kernels::linear::linear_forward(rec, &y, &tx, &tw, Some(&tb), None);
            let (gx, gw, gb) = (g.empty(&x.shape), g.empty(ws), g.empty(&b.shape));
            kernels::linear::linear_backward(
                rec,
                Some(&gx),
                &gw,
                Some(&gb),
                &tu,
                &tx,
                &tw,
                false,
                false,
            );
            vec![
                ("y", y),
                ("grad_x", gx),
                ("grad_weight", gw),
                ("grad_bias", gb),
            ]
        }),
    }
}

/// cross_entropy: the loss and the logits gradient.
fn cross_entropy_case(c: &Case) -> Result<Outputs, FixtureError> {
    let Case {
        exec, file, case, ..
    } = *c;
    let t = |s: &str| c.tensor(s);
    let (s, tg) = (t("logits")?, t("target")?);
    let cols = *rank_at_least(file, "logits", s, 1)?.last().unwrap_or(&1);
    if tg.data.len() != s.data.len() || cols == 0 {
        return Err(bad(
            file,
            format!("{case}: target shape differs from logits"),
        ));
    }
    let rows = s.data.len() / cols;
    let scale = 1.0 / rows as f32;
    match exec {
        Exec::Cpu => {
            let per_row = cpu::cross_entropy::cross_entropy_forward(&s.data, &tg.data, cols, 1.0);
            let loss = cpu::elementwise::sum(&per_row) * scale;
            let gl = cpu::cross_entropy::cross_entropy_backward(
                1.0, &s.data, &tg.data, cols, 1.0, scale, None,
            );
            Ok(vec![
                ("loss", vec![loss]),
                ("loss_per_row", per_row),
                ("grad_logits", gl),
            ])
        }
        Exec::Gpu(g) => on_gpu(g, |rec| {
            let (ts, tt) = (g.upload(&s.data, &s.shape), g.upload(&tg.data, &tg.shape));
            let one = g.upload(&[1.0], &[1]);
            let opt = CrossEntropy {
                temperature: 1.0,
                scale,
                row_weight: None,
            };
            let (per_row, loss) = (g.empty(&[rows]), g.empty(&[1]));
            kernels::cross_entropy::cross_entropy_forward(
                rec,
                &per_row,
                Some(&loss),
                &ts,
                &tt,
                cols,
                opt,
            );
            let gl = g.empty(&s.shape);
            kernels::cross_entropy::cross_entropy_backward(
                rec, &gl, &one, &ts, &tt, cols, opt, false,
            );
            vec![
                ("loss", loss),
                ("loss_per_row", per_row),
                ("grad_logits", gl),
            ]
        }),
    }
}

/// patch_embed: the tokens and the pixel, weight and bias gradients.
fn patch_embed_case(c: &Case) -> Result<Outputs, FixtureError> {
    let Case {
        exec, file, case, ..
    } = *c;
    let t = |s: &str| c.tensor(s);
    let (x, w, b, up) = (t("x")?, t("weight")?, t("bias")?, t("upstream_y")?);
    let xs = rank_exactly(file, "x", x, 4)?;
    let ws = rank_exactly(file, "weight", w, 4)?;
    let dims = PatchDims {
        batch: xs[0],
        channels: xs[1],
        height: xs[2],
        width: xs[3],
        patch: ws[2],
    };
    let (gh, gw) = dims.grid();
    if ws[1] != xs[1]
        || ws[2] != ws[3]
        || gh == 0
        || gw == 0
        || b.data.len() != ws[0]
        || up.data.len() != xs[0] * gh * gw * ws[0]
    {
        return Err(bad(
            file,
            format!(
                "{case}: x {xs:?}, weight {ws:?} and upstream {:?} do not fit",
                up.shape
            ),
        ));
    }
    match exec {
        Exec::Cpu => {
            let y = cpu::patch_embed::patch_embed_forward(&x.data, &w.data, &b.data, dims);
            let (gx, gwt, gb) =
                cpu::patch_embed::patch_embed_backward(&up.data, &x.data, &w.data, ws[0], dims);
            Ok(vec![
                ("y", y),
                ("grad_x", gx),
                ("grad_weight", gwt),
                ("grad_bias", gb),
            ])
        }
        Exec::Gpu(g) => on_gpu(g, |rec| {
            let (tx, tw, tb, tu) = (
                g.upload(&x.data, xs),
                g.upload(&w.data, ws),
                g.upload(&b.data, &b.shape),
                g.upload(&up.data, &up.shape),
            );
            let y = g.empty(&up.shape);
            let cols = kernels::patch_embed::patch_embed_forward(rec, &y, &tx, &tw, &tb, dims);
            let (gx, gwt, gb) = (g.empty(xs), g.empty(ws), g.empty(&b.shape));
            kernels::patch_embed::patch_embed_backward(
                rec,
                Some(&gx),
                &gwt,
                &gb,
                &tu,
                &cols,
                &tw,
                dims,
                false,
            );
            vec![
                ("y", y),
                ("grad_x", gx),
                ("grad_weight", gwt),
                ("grad_bias", gb),
            ]
        }),
    }
}

/// interp: the resized grid and its gradient.
fn interp_case(c: &Case) -> Result<Outputs, FixtureError> {
    let Case {
        exec, file, case, ..
    } = *c;
    let t = |s: &str| c.tensor(s);
    let x = file.get("interp.x")?;
    let up = t("upstream_y")?;
    let xs = rank_at_least(file, "interp.x", x, 3)?;
    let us = rank_at_least(file, "upstream_y", up, 3)?;
    let (h_in, w_in) = (xs[xs.len() - 2], xs[xs.len() - 1]);
    let (h_out, w_out) = (us[us.len() - 2], us[us.len() - 1]);
    let c = x.data.len() / (h_in * w_in).max(1);
    if up.data.len() != c * h_out * w_out {
        return Err(bad(
            file,
            format!("{case}: upstream {us:?} does not match input {xs:?}"),
        ));
    }
    let mode = if case.starts_with("interp.aa_") {
        InterpMode::BicubicAntialias
    } else {
        InterpMode::Bicubic
    };
    match exec {
        Exec::Cpu => Ok(vec![
            (
                "y",
                cpu::interp::interp_forward(&x.data, c, h_in, w_in, h_out, w_out, mode),
            ),
            (
                "grad_x",
                cpu::interp::interp_backward(&up.data, c, h_in, w_in, h_out, w_out, mode),
            ),
        ]),
        Exec::Gpu(g) => on_gpu(g, |rec| {
            let dims = InterpDims {
                channels: c,
                h_in,
                w_in,
                h_out,
                w_out,
                mode,
                layout: GridLayout::ChannelFirst,
            };
            let w = InterpWeights::new(g, dims);
            let (tx, tu) = (g.upload(&x.data, xs), g.upload(&up.data, us));
            let (y, gx) = (g.empty(us), g.empty(xs));
            kernels::interp::interp_forward(rec, &y, &tx, &w);
            kernels::interp::interp_backward(rec, &gx, &tu, &w, false);
            vec![("y", y), ("grad_x", gx)]
        }),
    }
}
