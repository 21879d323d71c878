//! The kernel profiler (`dinoscope bench train --profile`): every dispatch is timed and credited
//! to its kernel and, for products and attention passes, to that piece of work with its FLOPs;
//! results still come out right while it runs.

mod common;

use dinoscope::gpu::Recorder;
use dinoscope::kernels;

#[test]
fn the_profiler_times_every_dispatch_by_kernel() {
    let Some(gpu) = common::gpu() else { return };
    if !gpu.start_profile() {
        // Only adapters without timestamp queries (OpenGL) get here; lavapipe has them.
        eprintln!(
            "no timestamp queries on {}: nothing to profile",
            gpu.info.name
        );
        let p = gpu.take_profile();
        assert!(p.kernels.is_empty() && p.work.is_empty());
        return;
    }
    let x: Vec<f32> = (0..4 * 65).map(|i| (i as f32 * 0.37).sin()).collect();
    let tx = gpu.upload(&x, &[4, 65]);
    let (w, b) = (gpu.upload(&[1.0; 65], &[65]), gpu.upload(&[0.0; 65], &[65]));
    let (y, g) = (gpu.empty(&[4, 65]), gpu.empty(&[4, 65]));
    let mut rec = Recorder::new(gpu);
    for _ in 0..3 {
        let _ = kernels::layernorm::layernorm_forward(&mut rec, &y, &tx, &w, &b, 1e-6);
    }
    kernels::gelu::gelu_forward(&mut rec, &g, &y);
    // A product split over K in two (its reduction is part of the same call), twice, and an
    // attention forward.
    use kernels::matmul::{matmul_planned, Epilogue, MatmulDims, Plan};
    let (m, n, k) = (8, 16, 512);
    let (a, bm) = (
        gpu.upload(&vec![0.5; m * k], &[m, k]),
        gpu.upload(&vec![0.25; k * n], &[k, n]),
    );
    let c = gpu.empty(&[m, n]);
    let split = Plan::Direct { splits: 2 };
    for _ in 0..2 {
        let d = MatmulDims::new(m, n, k);
        matmul_planned(&mut rec, &c, &a, &bm, d, 1.0, false, Epilogue::None, split);
    }
    let ad = kernels::attention::AttnDims::new(1, 2, 5, 8);
    let layout = kernels::attention::QkvLayout::bhnd(2, 5, 8);
    let ol = kernels::attention::OutLayout::bhnd(2, 5, 8);
    let qkv = gpu.upload(&vec![0.1; 80], &[1, 2, 5, 8]);
    let o = gpu.empty(&[1, 2, 5, 8]);
    let _ = kernels::attention::attention_forward(&mut rec, &o, &qkv, &qkv, &qkv, ad, layout, ol);
    rec.finish().expect("profiled submission");
    let profile = gpu.take_profile();
    let rows = profile.kernels;
    let count = |name: &str| rows.iter().find(|r| r.0 == name).map(|r| r.1.count);
    assert_eq!(count("layernorm_forward"), Some(3), "{rows:?}");
    // 4·65 elements: a multiple of 4, so GELU runs its vec4 kernel.
    assert_eq!(count("gelu_forward_v4"), Some(1), "{rows:?}");
    assert!(rows
        .iter()
        .all(|r| r.1.seconds >= 0.0 && r.1.seconds.is_finite()));
    assert_eq!(count("matmul_reduce"), Some(2), "{rows:?}");
    let work = profile.work;
    let product = format!("matmul {m}x{n}x{k} f32 {}", split.name());
    let row = work.iter().find(|w| w.0 == product);
    let row = row
        .unwrap_or_else(|| panic!("no row {product}: {work:?}"))
        .1
        .clone();
    assert_eq!(row.calls, 2, "{work:?}");
    assert_eq!(row.flops, 2.0 * 2.0 * (m * n * k) as f64, "{work:?}");
    // Its time is its dispatches' (both products and both reductions).
    let kernel_s: f64 = rows
        .iter()
        .filter(|r| r.0 == "matmul_reduce" || r.0.starts_with("matmul_direct"))
        .map(|r| r.1.seconds)
        .sum();
    assert!(
        (row.seconds - kernel_s).abs() <= 1e-9 + 1e-6 * kernel_s,
        "{row:?} vs {kernel_s}"
    );
    let attn = work
        .iter()
        .find(|w| w.0.starts_with("attention fwd 2x5x5x8 f32 "));
    let attn = attn
        .unwrap_or_else(|| panic!("no attention row: {work:?}"))
        .1
        .clone();
    assert_eq!((attn.calls, attn.flops), (1, 4.0 * 2.0 * 5.0 * 5.0 * 8.0));
    assert_eq!(
        work.len(),
        2,
        "unlabelled kernels credited to work: {work:?}"
    );
    assert!(!gpu.profiling(), "take_profile ends profiling");
    // Each row is normalised while profiling, as it is without.
    let out = gpu.read(&y).expect("read back");
    for row in out.chunks(65) {
        let mean = row.iter().sum::<f32>() / 65.0;
        assert!(mean.abs() < 1e-5, "row mean {mean}");
    }
}
