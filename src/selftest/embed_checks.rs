//! Kernel checks of the embedding ops: patch embedding, position resize, token assembly,
//! rotary positions.

use super::checks::{random, run, tol};
use super::{CaseResult, Judge};
use crate::cpu;
use crate::cpu::interp::InterpMode;
use crate::gpu::Gpu;
use crate::kernels;
use crate::kernels::interp::{GridLayout, InterpDims, InterpWeights};
use crate::kernels::patch_embed::PatchDims;

pub(super) fn patch_embed(gpu: &Gpu) -> CaseResult {
    let mut j = Judge::new("kernel.patch_embed");
    for &(batch, c, hgt, wid, p, dim) in &[
        (1, 1, 14, 14, 14, 1),
        (2, 3, 30, 44, 14, 7),
        (1, 3, 32, 48, 16, 65),
    ] {
        let d = PatchDims {
            batch,
            channels: c,
            height: hgt,
            width: wid,
            patch: p,
        };
        let (gh, gw) = d.grid();
        let x = random(batch * c * hgt * wid, 71, -1.0, 1.0);
        let w = random(dim * c * p * p, 72, -0.1, 0.1);
        let bias = random(dim, 73, -0.5, 0.5);
        let dy = random(batch * gh * gw * dim, 74, -1.0, 1.0);
        let y = cpu::patch_embed::patch_embed_forward(&x, &w, &bias, d);
        let (dx, dw, db) = cpu::patch_embed::patch_embed_backward(&dy, &x, &w, dim, d);
        if let Some(out) = run(gpu, &mut j, |rec| {
            let (tx, tw, tb, tdy) = (
                gpu.upload(&x, &[batch, c, hgt, wid]),
                gpu.upload(&w, &[dim, c, p, p]),
                gpu.upload(&bias, &[dim]),
                gpu.upload(&dy, &[batch, gh * gw, dim]),
            );
            let ty = gpu.empty(&[batch, gh * gw, dim]);
            let cols = kernels::patch_embed::patch_embed_forward(rec, &ty, &tx, &tw, &tb, d);
            let (gx, gwt, gb) = (
                gpu.empty(&[x.len()]),
                gpu.empty(&[w.len()]),
                gpu.empty(&[dim]),
            );
            kernels::patch_embed::patch_embed_backward(
                rec,
                Some(&gx),
                &gwt,
                &gb,
                &tdy,
                &cols,
                &tw,
                d,
                false,
            );
            vec![ty, gx, gwt, gb]
        }) {
            let tag = format!("{batch}x{c}x{hgt}x{wid}/p{p}");
            j.check(&format!("{tag} y"), &out[0], &y, tol(&y, 2e-6));
            j.check(&format!("{tag} dx"), &out[1], &dx, tol(&dx, 2e-6));
            j.check(&format!("{tag} dw"), &out[2], &dw, tol(&dw, 2e-6));
            j.check(&format!("{tag} db"), &out[3], &db, tol(&db, 2e-6));
        }
    }
    j.finish()
}

/// [C, H, W] → [H·W, C].
pub(super) fn channel_last(x: &[f32], c: usize, hw: usize) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    for ch in 0..c {
        for s in 0..hw {
            y[s * c + ch] = x[ch * hw + s];
        }
    }
    y
}

/// [H·W, C] → [C, H, W].
fn channel_first(x: &[f32], c: usize, hw: usize) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    for ch in 0..c {
        for s in 0..hw {
            y[ch * hw + s] = x[s * c + ch];
        }
    }
    y
}

pub(super) fn interp(gpu: &Gpu) -> CaseResult {
    let mut j = Judge::new("kernel.interp");
    let c = 7;
    for mode in [InterpMode::Bicubic, InterpMode::BicubicAntialias] {
        for &(hi, wi, ho, wo) in &[
            (4, 4, 1, 1),
            (4, 4, 7, 5),
            (16, 16, 37, 37),
            (37, 37, 16, 9),
            (1, 1, 3, 2),
        ] {
            let x = random(c * hi * wi, 81, -1.0, 1.0);
            let dy = random(c * ho * wo, 82, -1.0, 1.0);
            let y = cpu::interp::interp_forward(&x, c, hi, wi, ho, wo, mode);
            let dx = cpu::interp::interp_backward(&dy, c, hi, wi, ho, wo, mode);
            let (xl, dyl) = (channel_last(&x, c, hi * wi), channel_last(&dy, c, ho * wo));
            let (yl, dxl) = (channel_last(&y, c, ho * wo), channel_last(&dx, c, hi * wi));
            if let Some(out) = run(gpu, &mut j, |rec| {
                let dims = InterpDims {
                    channels: c,
                    h_in: hi,
                    w_in: wi,
                    h_out: ho,
                    w_out: wo,
                    mode,
                    layout: GridLayout::ChannelLast,
                };
                let w = InterpWeights::new(gpu, dims);
                let (tx, tdy) = (
                    gpu.upload(&xl, &[hi * wi, c]),
                    gpu.upload(&dyl, &[ho * wo, c]),
                );
                let (ty, tdx) = (gpu.empty(&[ho * wo, c]), gpu.empty(&[hi * wi, c]));
                kernels::interp::interp_forward(rec, &ty, &tx, &w);
                kernels::interp::interp_backward(rec, &tdx, &tdy, &w, false);
                vec![ty, tdx]
            }) {
                let tag = format!("{mode:?} {hi}x{wi}->{ho}x{wo}");
                j.check(&format!("{tag} y"), &out[0], &yl, tol(&yl, 2e-6));
                j.check(&format!("{tag} dx"), &out[1], &dxl, tol(&dxl, 2e-6));
            }
        }
    }
    // A batch of images' patch tokens behind `lead` class and register rows, as the Gram
    // teacher's features are resized: every grid in one call.
    let (images, lead, hi, ho) = (3, 2, 8, 4);
    let (n_in, n_out) = (lead + hi * hi, ho * ho);
    let x = random(images * n_in * c, 83, -1.0, 1.0);
    let dy = random(images * n_out * c, 84, -1.0, 1.0);
    let mode = InterpMode::Bicubic;
    let (mut y, mut dx) = (Vec::new(), vec![0.0; images * n_in * c]);
    for n in 0..images {
        let grid = &x[(n * n_in + lead) * c..(n + 1) * n_in * c];
        let first = channel_first(grid, c, hi * hi);
        let out = cpu::interp::interp_forward(&first, c, hi, hi, ho, ho, mode);
        y.extend(channel_last(&out, c, n_out));
        let up = channel_first(&dy[n * n_out * c..(n + 1) * n_out * c], c, n_out);
        let back = cpu::interp::interp_backward(&up, c, hi, hi, ho, ho, mode);
        dx[(n * n_in + lead) * c..(n + 1) * n_in * c].copy_from_slice(&channel_last(
            &back,
            c,
            hi * hi,
        ));
    }
    if let Some(out) = run(gpu, &mut j, |rec| {
        let dims = InterpDims {
            channels: c,
            h_in: hi,
            w_in: hi,
            h_out: ho,
            w_out: ho,
            mode,
            layout: GridLayout::ChannelLast,
        };
        let w = InterpWeights::new(gpu, dims)
            .with_input_offset(lead * c)
            .batched(images, n_in * c, n_out * c);
        let (tx, tdy) = (
            gpu.upload(&x, &[images * n_in, c]),
            gpu.upload(&dy, &[images * n_out, c]),
        );
        let ty = gpu.empty(&[images * n_out, c]);
        // The class rows are not the resize's: they must stay as they were.
        let tdx = gpu.upload(&vec![0.0; images * n_in * c], &[images * n_in, c]);
        kernels::interp::interp_forward(rec, &ty, &tx, &w);
        kernels::interp::interp_backward(rec, &tdx, &tdy, &w, false);
        vec![ty, tdx]
    }) {
        j.check("batched tokens y", &out[0], &y, tol(&y, 2e-6));
        j.check("batched tokens dx", &out[1], &dx, tol(&dx, 2e-6));
    }
    j.finish()
}

pub(super) fn tokens(gpu: &Gpu) -> CaseResult {
    use crate::kernels::tokens::{PosSource, TokenDims, TokenParams};
    let mut j = Judge::new("kernel.tokens");
    for &(batch, p, d, r, use_mask) in &[
        (1, 1, 1, 0, false),
        (2, 7, 65, 4, true),
        (3, 16, 64, 0, true),
        // More than one chunk of 256 patch rows and of 64 channels for the mask token's sums.
        (5, 61, 70, 1, true),
    ] {
        let patches = random(batch * p * d, 161, -1.0, 1.0);
        let cls = random(d, 162, -1.0, 1.0);
        let regs = random(r * d, 163, -1.0, 1.0);
        let mt = random(d, 164, -1.0, 1.0);
        let pos = random((1 + p) * d, 165, -1.0, 1.0);
        let mask: Vec<f32> = (0..batch * p)
            .map(|i| ((i * 7 + 3) % 3 == 0) as u8 as f32)
            .collect();
        let m = use_mask.then_some(mask.as_slice());
        let n = 1 + r + p;
        let dout = random(batch * n * d, 166, -1.0, 1.0);
        let want = cpu::tokens::tokens_forward(&patches, &cls, &regs, &mt, &pos, m, batch);
        let zeros = vec![0.0; pos.len()];
        let want_no_pos = cpu::tokens::tokens_forward(&patches, &cls, &regs, &mt, &zeros, m, batch);
        let (dp, dcls, dregs, dpos, dmask) = cpu::tokens::tokens_backward(&dout, d, r, p, m, batch);
        // Three position sources: the table with offsets (CLS row, then the grid), a separate
        // grid, and none (DINOv3).
        for (separate, no_pos) in [(false, false), (true, false), (false, true)] {
            if let Some(out) = run(gpu, &mut j, |rec| {
                let tp = gpu.upload(&patches, &[batch, p, d]);
                let tc = gpu.upload(&cls, &[d]);
                let tr = (r > 0).then(|| gpu.upload(&regs, &[r, d]));
                let tm = gpu.upload(&mt, &[d]);
                let table = gpu.upload(&pos, &[1 + p, d]);
                let grid = gpu.upload(&pos[d..], &[p, d]);
                let tmask = gpu.upload(&mask, &[batch, p]);
                let td = TokenDims {
                    batch,
                    n_patches: p,
                    dim: d,
                    registers: r,
                };
                let src = if separate {
                    PosSource {
                        cls: &table,
                        cls_off: 0,
                        patch: &grid,
                        patch_off: 0,
                    }
                } else {
                    PosSource {
                        cls: &table,
                        cls_off: 0,
                        patch: &table,
                        patch_off: d,
                    }
                };
                let params = TokenParams {
                    cls: &tc,
                    registers: tr.as_ref(),
                    mask_token: &tm,
                };
                let out = gpu.empty(&[batch, n, d]);
                let mk = use_mask.then_some(&tmask);
                let src = (!no_pos).then_some(src);
                kernels::tokens::tokens_forward(rec, &out, &tp, params, src, mk, td);
                let tdo = gpu.upload(&dout, &[batch, n, d]);
                let gp = gpu.empty(&[batch, p, d]);
                let (gc, gm) = (rec.zeros(&[d]), rec.zeros(&[d]));
                let gr = (r > 0).then(|| rec.zeros(&[r, d]));
                let gtable = rec.zeros(&[1 + p, d]);
                let ggrid = rec.zeros(&[p, d]);
                let dsrc = if separate {
                    PosSource {
                        cls: &gtable,
                        cls_off: 0,
                        patch: &ggrid,
                        patch_off: 0,
                    }
                } else {
                    PosSource {
                        cls: &gtable,
                        cls_off: 0,
                        patch: &gtable,
                        patch_off: d,
                    }
                };
                let grads = TokenParams {
                    cls: &gc,
                    registers: gr.as_ref(),
                    mask_token: &gm,
                };
                let dsrc = (!no_pos).then_some(dsrc);
                kernels::tokens::tokens_backward(rec, Some(&gp), grads, dsrc, &tdo, mk, td);
                let mut v = vec![out, gp, gc, gm, gtable, ggrid];
                v.extend(gr);
                v
            }) {
                let tag = format!(
                    "B={batch} P={p} D={d} R={r} mask={use_mask} separate={separate} \
                     no_pos={no_pos}"
                );
                let want = if no_pos { &want_no_pos } else { &want };
                j.check(&format!("{tag} tokens"), &out[0], want, 1e-6);
                j.check(&format!("{tag} d_patches"), &out[1], &dp, 1e-6);
                j.check(&format!("{tag} d_cls"), &out[2], &dcls, 1e-5);
                j.check(&format!("{tag} d_mask_token"), &out[3], &dmask, 1e-5);
                let gpos: Vec<f32> = if separate {
                    out[4][..d].iter().chain(out[5].iter()).copied().collect()
                } else {
                    out[4].clone()
                };
                if no_pos {
                    j.check(&format!("{tag} d_pos untouched"), &gpos, &zeros, 0.0);
                } else {
                    j.check(&format!("{tag} d_pos"), &gpos, &dpos, 1e-5);
                }
                if r > 0 {
                    j.check(&format!("{tag} d_regs"), &out[6], &dregs, 1e-5);
                }
            }
        }
    }
    j.finish()
}

pub(super) fn rope(gpu: &Gpu) -> CaseResult {
    use crate::kernels::rope::RopeDims;
    let mut j = Judge::new("kernel.rope");
    // (batch, grid h, grid w, prefix, heads, head_dim)
    for &(batch, gh, gw, prefix, heads, hd) in
        &[(1, 1, 1, 0, 1, 4), (2, 3, 5, 5, 3, 16), (3, 7, 2, 1, 2, 64)]
    {
        let n = prefix + gh * gw;
        let (cos, sin) = crate::model::rope::tables(gh, gw, hd, 100.0);
        let x = random(batch * n * 3 * heads * hd, 181, -2.0, 2.0);
        let dims = RopeDims {
            batch,
            tokens: n,
            prefix,
            heads,
            head_dim: hd,
        };
        let twin = |inverse: bool| {
            let mut v = x.clone();
            cpu::rope::rope_apply(&mut v, &cos, &sin, batch, n, prefix, heads, hd, inverse);
            v
        };
        let (fwd, inv) = (twin(false), twin(true));
        // The inverse is the transpose of a rotation: it undoes the forward.
        let mut back = fwd.clone();
        cpu::rope::rope_apply(&mut back, &cos, &sin, batch, n, prefix, heads, hd, true);
        let tag = format!("B={batch} grid={gh}x{gw} prefix={prefix} heads={heads} hd={hd}");
        j.check(
            &format!("{tag} inverse undoes forward (twin)"),
            &back,
            &x,
            1e-5,
        );
        if let Some(out) = run(gpu, &mut j, |rec| {
            let tc = gpu.upload(&cos, &[gh * gw, hd]);
            let ts = gpu.upload(&sin, &[gh * gw, hd]);
            let a = gpu.upload(&x, &[batch, n, 3 * heads * hd]);
            let b = gpu.upload(&x, &[batch, n, 3 * heads * hd]);
            crate::kernels::rope::rope_apply(rec, &a, &tc, &ts, dims, false);
            crate::kernels::rope::rope_apply(rec, &b, &tc, &ts, dims, true);
            vec![a, b]
        }) {
            j.check(&format!("{tag} forward"), &out[0], &fwd, 1e-6);
            j.check(&format!("{tag} inverse"), &out[1], &inv, 1e-6);
        }
    }
    j.finish()
}
