//! Every GPU kernel (forward and backward) against its CPU twin at awkward sizes and extreme
//! values, on the test adapter (lavapipe in CI).

mod common;

use dinoscope::selftest::{kernel_checks, Status};

fn check(name: &str) {
    let Some(gpu) = common::gpu() else { return };
    let checks = kernel_checks();
    let c = checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name}"));
    let r = (c.run)(gpu);
    eprintln!("{}", r.row());
    assert_eq!(r.status, Status::Pass, "{}", r.row());
}

#[test]
fn matmul_vs_cpu() {
    check("kernel.matmul");
}
#[test]
fn matmul_epilogue_vs_cpu() {
    check("kernel.matmul_epilogue");
}
#[test]
fn linear_vs_cpu() {
    check("kernel.linear");
}
#[test]
fn layernorm_vs_cpu() {
    check("kernel.layernorm");
}
#[test]
fn layernorm_extreme_vs_cpu() {
    check("kernel.layernorm_extreme");
}
#[test]
fn gelu_vs_cpu() {
    check("kernel.gelu");
}
#[test]
fn softmax_vs_cpu() {
    check("kernel.softmax");
}
#[test]
fn attention_vs_cpu() {
    check("kernel.attention");
}
#[test]
fn attention_fused_qkv_vs_cpu() {
    check("kernel.attention_fused_qkv");
}
#[test]
fn patch_embed_vs_cpu() {
    check("kernel.patch_embed");
}
#[test]
fn interp_vs_cpu() {
    check("kernel.interp");
}
#[test]
fn cross_entropy_vs_cpu() {
    check("kernel.cross_entropy");
}
#[test]
fn elementwise_vs_cpu() {
    check("kernel.elementwise");
}
#[test]
fn lookup_bytes_vs_cpu() {
    check("kernel.lookup_bytes");
}

#[test]
fn reduce_vs_cpu() {
    check("kernel.reduce");
}
#[test]
fn adamw_vs_cpu() {
    check("kernel.adamw");
}
#[test]
fn ema_vs_cpu() {
    check("kernel.ema");
}
#[test]
fn losses_vs_cpu() {
    check("kernel.losses");
}
#[test]
fn tokens_vs_cpu() {
    check("kernel.tokens");
}
#[test]
fn gram_vs_cpu() {
    check("kernel.gram");
}
#[test]
fn normalize_vs_cpu() {
    check("kernel.normalize");
}
#[test]
fn rope_vs_cpu() {
    check("kernel.rope");
}
#[test]
fn grids_past_65535_workgroups() {
    check("kernel.large_grids");
}

#[test]
fn every_check_has_a_test() {
    let src = include_str!("kernels.rs");
    for c in kernel_checks() {
        assert!(
            src.contains(&format!("check(\"{}\")", c.name))
                || src.contains(&format!("check_f16(\"{}\")", c.name))
                || src.contains(&format!("check_coop(\"{}\",", c.name)),
            "{} has no test",
            c.name
        );
    }
}

#[test]
fn recorder_keeps_one_submission_and_pool_reuses_buffers() {
    if common::gpu().is_none() {
        return;
    }
    // A device of its own: the other tests allocate from the shared one concurrently.
    use dinoscope::gpu::{AdapterChoice, Gpu, Recorder};
    let own = Gpu::new_blocking(&AdapterChoice::from_env()).expect("second device");
    let gpu = &own;
    let x = gpu.upload(&[1.0, 2.0, 3.0], &[3]);
    // A first step allocates, later steps of the same shapes reuse pooled buffers.
    let step = || {
        let mut rec = Recorder::new(gpu);
        let y = gpu.empty(&[3]);
        dinoscope::kernels::gelu::gelu_forward(&mut rec, &y, &x);
        let z = gpu.empty(&[3]);
        dinoscope::kernels::elementwise::add_forward(&mut rec, &z, &y, &x, false);
        assert_eq!(rec.dispatch_count(), 2);
        rec.finish().expect("submit");
        gpu.read(&z).expect("read")
    };
    let first = step();
    let created = gpu.pool_stats().created;
    let second = step();
    assert_eq!(first, second);
    assert_eq!(
        gpu.pool_stats().created,
        created,
        "second step created new buffers"
    );
}

#[test]
fn a_tensor_over_the_binding_limit_is_a_clear_error() {
    let Some(gpu) = common::gpu() else { return };
    use dinoscope::gpu::Recorder;
    let limit = gpu.limits.max_storage_buffer_binding_size as usize;
    let n = limit / 4 + 1024;
    let x = gpu.empty(&[n]);
    let y = gpu.empty(&[n]);
    let mut rec = Recorder::new(gpu);
    dinoscope::kernels::gelu::gelu_forward(&mut rec, &y, &x);
    let err = rec.finish().expect_err("over the limit").to_string();
    assert!(
        err.contains("max_storage_buffer_binding_size") && err.contains("gelu_forward"),
        "{err}"
    );
    drop((x, y));
    gpu.trim_pool();
    gpu.check().expect("no stray wgpu errors");
}

#[test]
fn a_grid_over_the_adapter_limit_is_a_clear_error() {
    // A matmul with more column tiles than one grid dimension allows used to panic in the
    // recorder; now the submission is refused with the limit named.
    let Some(gpu) = common::gpu() else { return };
    use dinoscope::gpu::Recorder;
    use dinoscope::kernels::matmul::{matmul_forward, MatmulDims};
    let max = gpu.limits.max_compute_workgroups_per_dimension as usize;
    let n = (max + 8) * 128;
    let a = gpu.empty(&[1, 4]);
    let b = gpu.empty(&[4, n]);
    let c = gpu.empty(&[1, n]);
    let mut rec = Recorder::new(gpu);
    matmul_forward(&mut rec, &c, &a, &b, MatmulDims::new(1, n, 4));
    let err = rec.finish().expect_err("too large a grid").to_string();
    assert!(
        err.contains("max_compute_workgroups_per_dimension"),
        "{err}"
    );
    drop((a, b, c));
    gpu.trim_pool();
    gpu.check().expect("no stray wgpu errors");
}

#[test]
fn threads_that_share_a_device_take_turns_while_it_works() {
    // One thread keeps the device busy (one submission of large products, then a wait long
    // enough on a software adapter to pass wgpu's 6 s GL context timeout) while another keeps
    // creating, filling and reading small buffers until it is done. On GL, wgpu's backend
    // panicked ("Could not lock adapter context") when a thread waited that long for the GL
    // context another thread held in its wait; the runtime now takes turns there.
    let Some(gpu) = common::gpu() else { return };
    use dinoscope::gpu::Recorder;
    use dinoscope::kernels::matmul::{matmul_forward, MatmulDims};
    use std::sync::atomic::{AtomicBool, Ordering};
    let n = 1536;
    let done = AtomicBool::new(false);
    let (busy, rounds) = std::thread::scope(|s| {
        let worker = s.spawn(|| {
            let ones = vec![1.0f32; n * n];
            let a = gpu.upload(&ones, &[n, n]);
            let b = gpu.upload(&ones, &[n, n]);
            let c = gpu.empty(&[n, n]);
            let mut rec = Recorder::new(gpu);
            for _ in 0..8 {
                matmul_forward(&mut rec, &c, &a, &b, MatmulDims::new(n, n, n));
            }
            rec.finish().expect("submit");
            let last = gpu.read(&c).map(|v| v[n * n - 1]);
            done.store(true, Ordering::SeqCst);
            last.expect("read")
        });
        let mut rounds = 0usize;
        while !done.load(Ordering::SeqCst) {
            let v = vec![rounds as f32; 1000 + rounds % 7];
            let t = gpu.upload(&v, &[v.len()]);
            assert_eq!(gpu.read(&t).expect("read"), v);
            rounds += 1;
        }
        (worker.join().expect("the busy thread"), rounds)
    });
    assert_eq!(busy, n as f32);
    assert!(rounds > 0);
    gpu.trim_pool();
    gpu.check().expect("no stray wgpu errors");
}

/// The f16 variants exist where the adapter has SHADER_F16 (lavapipe and most Vulkan, Metal
/// and DX12 drivers; not OpenGL): there they must pass.
fn check_f16(name: &str) {
    let Some(gpu) = common::gpu() else { return };
    if common::f16(gpu, name) {
        check(name);
    }
}

#[test]
fn f16_cast_matches_host_rounding() {
    check_f16("kernel.f16_cast");
}

#[test]
fn f16_matmul_vs_cpu() {
    check_f16("kernel.f16_matmul");
}

#[test]
fn f16_operands_f32_products_vs_cpu() {
    check_f16("kernel.f16_products");
}

#[test]
fn loss_scale_vs_cpu() {
    check_f16("kernel.loss_scale");
}

/// Runs a check where the adapter offers f16 cooperative matrices (NVIDIA's tensor cores;
/// lavapipe in Mesa 26.1, on a CPU with 256-bit vectors); CI runs these in a phase with that
/// lavapipe, and sets `DINOSCOPE_EXPECT_COOP=1` there so that a missing feature fails instead of
/// passing quietly.
/// `attention`: the check needs the attention kernels' subgroup size too (not Apple's).
fn check_coop(name: &str, attention: bool) {
    let Some(gpu) = common::gpu() else { return };
    assert!(
        gpu.coop_side().is_some() || std::env::var("DINOSCOPE_EXPECT_COOP").is_err(),
        "DINOSCOPE_EXPECT_COOP is set, but {} offers no f16 cooperative matrices",
        gpu.info.name
    );
    assert!(
        !attention || gpu.coop_attention() || std::env::var("DINOSCOPE_EXPECT_COOP").is_err(),
        "DINOSCOPE_EXPECT_COOP is set, but {} runs no attention on cooperative matrices",
        gpu.info.name
    );
    if gpu.coop_side().is_some() && (gpu.coop_attention() || !attention) {
        check(name);
    } else {
        eprintln!(
            "{name}: no f16 cooperative matrices it runs on {}",
            gpu.info.name
        );
    }
}

#[test]
fn coop_matmul_vs_cpu() {
    check_coop("kernel.coop_matmul", false);
}

#[test]
fn coop_attention_vs_cpu() {
    check_coop("kernel.coop_attention", true);
}

#[test]
fn f16_attention_variants_vs_cpu() {
    check_f16("kernel.f16_attention");
}

#[test]
fn f16_forward_ops_vs_cpu() {
    check_f16("kernel.f16_forward_ops");
}

#[test]
fn direct_matmul_sums_like_the_tiled_kernels_bit_for_bit() {
    // The CPU-driver default (Plan::Direct) replaces the tiled kernels there; every tile must
    // give the very same floats, so a run's figures do not depend on which of them ran.
    use dinoscope::gpu::Recorder;
    use dinoscope::kernels::matmul::{matmul_planned, Epilogue, MatmulDims, Plan, V4Tile};
    let Some(gpu) = common::gpu() else { return };
    let shapes = [(68, 132, 36, 3), (36, 20, 1100, 1), (132, 68, 2064, 1)];
    for (m, n, k, batch) in shapes {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let mut d = MatmulDims::new(m, n, k).batched(batch);
            d.trans_a = ta;
            d.trans_b = tb;
            let (a_len, b_len) = d.operand_lens();
            let a = dinoscope::selftest::checks_random(a_len, 3, -1.0, 1.0);
            let b = dinoscope::selftest::checks_random(b_len, 4, -1.0, 1.0);
            let bias = dinoscope::selftest::checks_random(n, 5, -1.0, 1.0);
            let splits = if batch == 1 { vec![1, 2, 4] } else { vec![1] };
            for s in splits {
                let run = |plan: Plan| {
                    let (ta_, tb_) = (gpu.upload(&a, &[a_len]), gpu.upload(&b, &[b_len]));
                    let tbias = gpu.upload(&bias, &[n]);
                    let c = gpu.empty(&[batch * m * n]);
                    let pre = gpu.empty(&[batch * m * n]);
                    let mut rec = Recorder::new(gpu);
                    let e = Epilogue::BiasGelu(&tbias, &pre);
                    matmul_planned(&mut rec, &c, &ta_, &tb_, d, 0.5, false, e, plan);
                    rec.finish().expect("submit");
                    (gpu.read(&c).expect("read"), gpu.read(&pre).expect("read"))
                };
                let direct = run(Plan::Direct { splits: s });
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                for tile in V4Tile::ALL {
                    let tiled = run(Plan::Vec4 { tile, splits: s });
                    let what = format!("{d:?} {tile:?} split {s}");
                    assert_eq!(bits(&direct.1), bits(&tiled.1), "pre-activation, {what}");
                    assert_eq!(bits(&direct.0), bits(&tiled.0), "output, {what}");
                }
            }
        }
    }
}

#[test]
fn crossed_attention_forward_sums_like_the_pairs_bit_for_bit() {
    // Two invocations taking two queries add the same halves in the same order as two taking
    // one, through shuffles or through workgroup memory; heads of 64, 16 and an odd 33 (the
    // second half ends inside the head), sequences ending inside a workgroup and a pair.
    use dinoscope::gpu::Recorder;
    use dinoscope::kernels::attention::{attention_forward, AttnDims, OutLayout, QkvLayout};
    use dinoscope::kernels::attention_plan::{Forward, FORWARD};
    let Some(gpu) = common::gpu() else { return };
    for (b, h, n, d) in [(1, 2, 65, 64), (2, 2, 17, 16), (1, 1, 51, 33)] {
        let len = b * h * n * d;
        let q = dinoscope::selftest::checks_random(len, 71, -2.0, 2.0);
        let k = dinoscope::selftest::checks_random(len, 72, -2.0, 2.0);
        let v = dinoscope::selftest::checks_random(len, 73, -1.0, 1.0);
        let dims = AttnDims::new(b, h, n, d);
        let s = [b, h, n, d];
        let run = |f: Forward| {
            let (tq, tk, tv) = (gpu.upload(&q, &s), gpu.upload(&k, &s), gpu.upload(&v, &s));
            let out = gpu.empty(&s);
            let mut rec = Recorder::new(gpu);
            rec.set_cpu_layouts(false);
            rec.force(FORWARD, Some(f.name()));
            let (layout, ol) = (QkvLayout::bhnd(h, n, d), OutLayout::bhnd(h, n, d));
            let lse = attention_forward(&mut rec, &out, &tq, &tk, &tv, dims, layout, ol);
            rec.finish().expect("submit");
            let bits = |t| -> Vec<u32> {
                let v: Vec<f32> = gpu.read(t).expect("read");
                v.iter().map(|x| x.to_bits()).collect()
            };
            (bits(&out), bits(&lse))
        };
        let shared = run(Forward::CrossedShared);
        if gpu.subgroups() {
            let pairs = run(Forward::PairsUnrolled);
            assert!(
                pairs == shared,
                "{b}x{h}x{n}x{d}: crossed-shared and pairs differ"
            );
            assert!(
                run(Forward::Crossed) == shared,
                "{b}x{h}x{n}x{d}: crossed differs"
            );
        } else {
            // Without subgroups (OpenGL, the browser) the workgroup-memory variant is the only
            // one: it is held to the CPU twin instead.
            let scale = 1.0 / (d as f32).sqrt();
            let (want, _, want_lse) =
                dinoscope::cpu::attention::attention_forward(&q, &k, &v, b * h, n, n, d, scale);
            assert_eq!((shared.0.len(), shared.1.len()), (b * h * n * d, b * h * n));
            let close = |got: &[u32], want: &[f32]| {
                got.len() == want.len()
                    && got.iter().zip(want).all(|(&g, &w)| {
                        let g = f32::from_bits(g);
                        (g - w).abs() <= 1e-5 + 1e-4 * w.abs()
                    })
            };
            assert!(
                close(&shared.0, &want) && close(&shared.1, &want_lse),
                "{b}x{h}x{n}x{d}: crossed-shared differs from the CPU twin"
            );
        }
    }
}

#[test]
fn general_direct_matmul_sums_like_the_general_kernel_bit_for_bit() {
    // The CPU-driver default for layouts the vec4 kernels cannot read (the patch embedding's
    // K = 3·p², odd sizes): the very same floats as the tiled general kernel, in every layout,
    // batched with a shared B, accumulating, at sizes that end inside a tile.
    use dinoscope::gpu::Recorder;
    use dinoscope::kernels::matmul::{matmul_planned, Epilogue, MatmulDims, Plan, Tile};
    let Some(gpu) = common::gpu() else { return };
    let shapes = [
        (37, 147, 13, 2, false),
        (70, 21, 147, 1, false),
        (5, 66, 9, 3, true),
    ];
    for (m, n, k, batch, shared_b) in shapes {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let mut d = MatmulDims::new(m, n, k).batched(batch);
            if shared_b {
                d = d.shared_b();
            }
            d.trans_a = ta;
            d.trans_b = tb;
            let (a_len, b_len) = d.operand_lens();
            let a = dinoscope::selftest::checks_random(a_len, 6, -1.0, 1.0);
            let b = dinoscope::selftest::checks_random(b_len, 7, -1.0, 1.0);
            let bias = dinoscope::selftest::checks_random(n, 8, -1.0, 1.0);
            let c0 = dinoscope::selftest::checks_random(batch * m * n, 9, -1.0, 1.0);
            let run = |plan: Plan| {
                let (ta_, tb_) = (gpu.upload(&a, &[a_len]), gpu.upload(&b, &[b_len]));
                let tbias = gpu.upload(&bias, &[n]);
                let c = gpu.upload(&c0, &[batch * m * n]);
                let pre = gpu.empty(&[batch * m * n]);
                let mut rec = Recorder::new(gpu);
                let e = Epilogue::BiasGelu(&tbias, &pre);
                matmul_planned(&mut rec, &c, &ta_, &tb_, d, 0.5, true, e, plan);
                rec.finish().expect("submit");
                (gpu.read(&c).expect("read"), gpu.read(&pre).expect("read"))
            };
            let tiled = run(Plan::General(Tile::for_problem(m, n)));
            let direct = run(Plan::GeneralDirect);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&direct.1), bits(&tiled.1), "pre-activation, {d:?}");
            assert_eq!(bits(&direct.0), bits(&tiled.0), "output, {d:?}");
        }
    }
}

/// The checks the browser test runs on its adapter (`check_layouts`), here on a device of their
/// own (the pipeline check reports only a device's first build of each pipeline, and fails on
/// one built before).
#[test]
fn browser_checks_pass_natively() {
    if common::gpu().is_none() {
        return;
    }
    let choice = dinoscope::gpu::AdapterChoice::from_env();
    let gpu = dinoscope::gpu::Gpu::new_blocking(&choice).expect("a second device");
    for r in [
        pollster::block_on(dinoscope::selftest::layouts::pipelines(&gpu)),
        pollster::block_on(dinoscope::selftest::layouts::attention(&gpu)),
    ] {
        eprintln!("{}", r.row());
        assert_eq!(r.status, Status::Pass, "{}", r.row());
    }
    // Its pipelines built, the check cannot pass again on this device: it would check nothing.
    let again = pollster::block_on(dinoscope::selftest::layouts::pipelines(&gpu));
    assert!(
        matches!(&again.status, Status::Fail(why) if why.contains("not checked")),
        "{}",
        again.row()
    );
}

/// A tensor past the adapter's largest buffer gets a small stand-in that nothing uses: a
/// recording that binds, copies or reads it (or a view of it) fails naming the limit, no
/// device error is raised, and the stand-in never reaches the pool (where a tensor of a legal
/// size could be handed it).
#[test]
fn a_tensor_past_the_largest_buffer_is_refused_wherever_it_is_used() {
    use dinoscope::gpu::Recorder;
    let Some(gpu) = common::gpu() else { return };
    // Adapters whose largest buffer is past any real size have nothing to check here.
    let max = gpu.limits.max_buffer_size;
    if max > 1 << 40 {
        eprintln!("largest buffer {max} bytes: no tensor is past it");
        return;
    }
    let past = (max / 4 + 64) as usize;
    let big = gpu.empty(&[past]);
    assert!(big.is_placeholder());
    let small = gpu.empty(&[64]);
    let view = big.view(0, &[64]);
    type Use = fn(&mut Recorder, &dinoscope::gpu::Tensor, &dinoscope::gpu::Tensor);
    let uses: [(&str, Use); 3] = [
        ("copy", |rec, v, s| rec.copy(v, s)),
        ("clear", |rec, v, _| rec.clear(v)),
        ("gelu", |rec, v, s| {
            dinoscope::kernels::gelu::gelu_forward(rec, s, v);
        }),
    ];
    for (what, apply) in uses {
        let mut rec = Recorder::new(gpu);
        apply(&mut rec, &view, &small);
        let err = rec.finish().expect_err(what).to_string();
        assert!(err.contains("max_buffer_size"), "{what}: {err}");
    }
    let err = gpu.read(&view).expect_err("read").to_string();
    assert!(err.contains("max_buffer_size"), "{err}");
    drop((big, view, small));
    let cached = gpu.pool_stats().cached_bytes;
    assert!(
        cached < past as u64 * 4,
        "the stand-in went to the pool: {cached} bytes"
    );
    gpu.check().expect("no device error");
}
