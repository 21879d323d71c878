//! The kernel profiler (`dinoscope bench train --profile`): every dispatch is timed and credited
//! to its kernel, and results still come out right while it runs.

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
        assert!(gpu.take_profile().is_empty());
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
    rec.finish().expect("profiled submission");
    let rows = gpu.take_profile();
    let count = |name: &str| rows.iter().find(|r| r.0 == name).map(|r| r.1.count);
    assert_eq!(count("layernorm_forward"), Some(3), "{rows:?}");
    // 4·65 elements: a multiple of 4, so GELU runs its vec4 kernel.
    assert_eq!(count("gelu_forward_v4"), Some(1), "{rows:?}");
    assert!(rows
        .iter()
        .all(|r| r.1.seconds >= 0.0 && r.1.seconds.is_finite()));
    assert!(!gpu.profiling(), "take_profile ends profiling");
    // Each row is normalised while profiling, as it is without.
    let out = gpu.read(&y).expect("read back");
    for row in out.chunks(65) {
        let mean = row.iter().sum::<f32>() / 65.0;
        assert!(mean.abs() < 1e-5, "row mean {mean}");
    }
}
