//! Checks that read back without blocking, so the browser runs them too: every kernel pipeline
//! its compiler is asked to build, and attention in the GPUs' layout. A software adapter (the
//! browser test's) runs the CPU drivers' layouts by default, so without these the kernels a
//! browser on a real GPU takes would never meet WebGPU's compiler, which checks more than
//! wgpu's (the uniformity of every barrier's control flow, for one).

use super::checks::{random, tol};
use super::{CaseResult, Judge};
use crate::cpu;
use crate::gpu::{DType, Gpu, Recorder, Tensor, Types};
use crate::kernels::attention::{self as attn, AttnDims, OutLayout, QkvLayout};
use crate::kernels::attention_plan::{self, Backward, Forward};

/// Whether a shader's code (comments aside) needs what only native adapters give (subgroups,
/// cooperative matrices): the browser never builds those.
fn native_only(src: &str) -> bool {
    src.lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .any(|code| {
            ["subgroup", "wgpu_cooperative_matrix", "coop_mat"]
                .iter()
                .any(|w| code.contains(w))
        })
}

/// Builds the f32 pipeline of every kernel that can run in the browser, with its override
/// constants at their defaults, each inside an error scope: the case fails with the names and
/// messages of those the adapter refuses. Pipelines are cached, so only a device's first build
/// reports: on a device that built one before, the case fails naming it (unchecked).
pub async fn pipelines(gpu: &Gpu) -> CaseResult {
    let mut judge = Judge::new("browser.pipelines");
    let mut refused = 0usize;
    for k in crate::kernels::all_kernels() {
        let Some(src) = crate::gpu::shader_source(k.shader) else {
            judge.fail(format!("{}: unknown shader {}", k.entry, k.shader));
            continue;
        };
        if native_only(&src) {
            continue;
        }
        // The tiled kernels run only where workgroup memory holds their tiles
        // (`Forward::runs`, `Backward::runs`): 32 KiB, over WebGPU's default 16.
        if k.shader == "attention_tiled"
            && (gpu.limits.max_compute_workgroup_storage_size as usize)
                < attn::TILED_WORKGROUP_BYTES
        {
            continue;
        }
        let types = Types::of(DType::F32);
        if gpu.has_pipeline(k, types, &[]) {
            judge.fail(format!(
                "{}::{}: built on this device before this check, so not checked",
                k.shader, k.entry
            ));
            continue;
        }
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let _ = gpu.pipeline(k, types, &[]);
        if let Some(e) = scope.pop().await {
            judge.fail(format!("{}::{}: {e}", k.shader, k.entry));
            refused += 1;
        }
    }
    judge.check("pipelines refused", &[refused as f32], &[0.0], 0.0);
    judge.finish()
}

/// Attention's forward and backward in the GPUs' layout with the variants this adapter takes
/// there by default, and the forward and backward whose halves meet through workgroup memory
/// (the backward is the default where there are no subgroups; the forward a first run's
/// candidate), and the register-tiled pair where workgroup memory holds it, against the CPU
/// twin at `kernel.attention`'s
/// tolerances. Heads of 64 (the presets'), 16 and an odd 33 (a pair's second half ends inside
/// the head), sequences that end inside a workgroup.
pub async fn attention(gpu: &Gpu) -> CaseResult {
    let mut judge = Judge::new("browser.attention_gpu_layout");
    for &(b, h, n, d) in &[(2, 2, 17, 16), (1, 2, 65, 64), (1, 1, 50, 33)] {
        let len = b * h * n * d;
        let seed = n as u64;
        let (q, k, v, dout) = (
            random(len, 61 + seed, -2.0, 2.0),
            random(len, 62 + seed, -2.0, 2.0),
            random(len, 63 + seed, -1.0, 1.0),
            random(len, 64 + seed, -1.0, 1.0),
        );
        let dims = AttnDims::new(b, h, n, d);
        let (o, _, l) = cpu::attention::attention_forward(&q, &k, &v, b * h, n, n, d, dims.scale);
        let (dq, dk, dv) =
            cpu::attention::attention_backward(&dout, &q, &k, &v, b * h, n, n, d, dims.scale);
        let mut rec = Recorder::new(gpu);
        rec.set_cpu_layouts(false);
        let mut variants = vec![(Forward::default_for(&rec), Backward::default_for(&rec))];
        variants.push((Forward::CrossedShared, Backward::PairsShared));
        // The register-tiled pair, where the adapter's workgroup memory holds its tiles.
        if Forward::Tiled.runs(&rec, &dims, DType::F32) {
            variants.push((Forward::Tiled, Backward::Tiled));
        }
        drop(rec);
        for (forward, bw) in variants {
            let tag = format!("{b}x{h}x{n}x{d} {} {}", forward.name(), bw.name());
            let s = [b, h, n, d];
            let (tq, tk, tv, tdo) = (
                gpu.upload(&q, &s),
                gpu.upload(&k, &s),
                gpu.upload(&v, &s),
                gpu.upload(&dout, &s),
            );
            let (to, gq, gk, gv) = (gpu.empty(&s), gpu.empty(&s), gpu.empty(&s), gpu.empty(&s));
            let mut rec = Recorder::new(gpu);
            rec.set_cpu_layouts(false);
            rec.force(attention_plan::FORWARD, Some(forward.name()));
            rec.force(attention_plan::BACKWARD, Some(bw.name()));
            let layout = QkvLayout::bhnd(h, n, d);
            let ol = OutLayout::bhnd(h, n, d);
            let lse = attn::attention_forward(&mut rec, &to, &tq, &tk, &tv, dims, layout, ol);
            attn::attention_backward(
                &mut rec, &gq, &gk, &gv, &tdo, &tq, &tk, &tv, &to, &lse, dims, layout, ol,
            );
            if let Err(e) = rec.finish() {
                judge.fail(format!("{tag}: {e}"));
                continue;
            }
            let outs: [(&str, &Tensor, &[f32], f32); 5] = [
                ("out", &to, &o, 1e-5),
                ("lse", &lse, &l, 1e-5),
                ("dq", &gq, &dq, 2e-5),
                ("dk", &gk, &dk, 2e-5),
                ("dv", &gv, &dv, 2e-5),
            ];
            for (what, t, want, rel) in outs {
                match gpu.read_async(t).await {
                    Ok(got) => judge.check(&format!("{tag} {what}"), &got, want, tol(want, rel)),
                    Err(e) => judge.fail(format!("{tag} {what}: {e}")),
                }
            }
        }
    }
    judge.finish()
}
