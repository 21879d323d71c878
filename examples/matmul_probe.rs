//! Experiment: a 128×128-tile fp32 matmul whose accumulators are 16 vec4 registers indexed by
//! constants (examples/matmul_vec4.wgsl; square sizes that are multiples of 128, no transposes),
//! timed against the runtime's matmul on the same device and checked against its output.
//! On an H100 it ran 25.8 TFLOP/s at 4096³ where the runtime's kernel runs 1.6 (BENCHMARKS.md):
//! the blueprint for the runtime's next matmul.
//!
//! `cargo run --release --example matmul_probe`
use dinoscope::gpu::{AdapterChoice, Gpu, Recorder};
use dinoscope::kernels::matmul::{matmul_forward, MatmulDims};
use std::time::Instant;

fn main() {
    let gpu = Gpu::new_blocking(&AdapterChoice::from_env()).expect("gpu");
    println!("{}", gpu.info.name);
    let src = include_str!("matmul_vec4.wgsl");
    let checks = wgpu::ShaderRuntimeChecks {
        force_loop_bounding: false,
        ..wgpu::ShaderRuntimeChecks::checked()
    };
    let module = unsafe {
        gpu.device.create_shader_module_trusted(
            wgpu::ShaderModuleDescriptor {
                label: Some("mm"),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            },
            checks,
        )
    };
    let pipeline = gpu
        .device
        .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("mm"),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
    let sizes: Vec<usize> = match std::env::args().nth(1) {
        Some(a) => a.split(',').filter_map(|v| v.trim().parse().ok()).collect(),
        None => vec![256, 1024, 2048, 4096],
    };
    for s in sizes.into_iter().filter(|s| s % 128 == 0) {
        let (m, n, k) = (s, s, s);
        let av: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let bv: Vec<f32> = (0..k * n)
            .map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let a = gpu.upload(&av, &[m, k]);
        let b = gpu.upload(&bv, &[k, n]);
        let c = gpu.empty(&[m, n]);
        let c2 = gpu.empty(&[m, n]);
        let dims = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: 16,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        gpu.queue.write_buffer(
            &dims,
            0,
            bytemuck::cast_slice(&[m as u32, n as u32, k as u32, 0]),
        );
        let bg = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: dims.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: a.binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: b.binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 3,
                    resource: c.binding(),
                },
            ],
        });
        let run_new = |reps: usize| {
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                pass.set_pipeline(&pipeline);
                pass.set_bind_group(0, &bg, &[]);
                for _ in 0..reps {
                    pass.dispatch_workgroups((n / 128) as u32, (m / 128) as u32, 1);
                }
            }
            gpu.queue.submit([enc.finish()]);
            gpu.wait().expect("wait");
        };
        let run_old = |reps: usize| {
            let mut rec = Recorder::new(&gpu);
            for _ in 0..reps {
                matmul_forward(&mut rec, &c2, &a, &b, MatmulDims::new(m, n, k));
            }
            rec.finish().expect("finish");
            gpu.wait().expect("wait");
        };
        run_new(1);
        run_old(1);
        let got = gpu.read(&c).expect("read");
        let want = gpu.read(&c2).expect("read");
        let err = got
            .iter()
            .zip(&want)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        let reps = if s >= 2048 { 10 } else { 20 };
        let t = Instant::now();
        run_new(reps);
        let tn = t.elapsed().as_secs_f64() / reps as f64;
        let t = Instant::now();
        run_old(reps);
        let to = t.elapsed().as_secs_f64() / reps as f64;
        let fl = 2.0 * (m * n * k) as f64;
        println!("{s}^3: vec4 kernel {:.3} ms {:.1} TFLOP/s | runtime matmul {:.3} ms {:.1} TFLOP/s | max diff {err:.2e}",
            tn * 1e3, fl / tn / 1e12, to * 1e3, fl / to / 1e12);
    }
}
