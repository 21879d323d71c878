//! The smallest useful program: open the GPU, run a linear layer with fused GELU and its backward
//! pass in one submission, and compare with the CPU twin.

use dinoscope::cpu;
use dinoscope::gpu::{AdapterChoice, Gpu, Recorder};
use dinoscope::kernels::linear::{linear_backward, linear_forward};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let gpu = Gpu::new_blocking(&AdapterChoice::from_env())?;
    println!("adapter: {} ({:?})", gpu.info.name, gpu.info.backend);

    let (rows, d_in, d_out) = (4, 3, 2);
    let x: Vec<f32> = (0..rows * d_in).map(|i| i as f32 * 0.1 - 0.5).collect();
    let w: Vec<f32> = (0..d_out * d_in).map(|i| 0.3 - i as f32 * 0.1).collect();
    let b = vec![0.1, -0.2];

    let tx = gpu.upload(&x, &[rows, d_in]);
    let tw = gpu.upload(&w, &[d_out, d_in]);
    let tb = gpu.upload(&b, &[d_out]);
    let y = gpu.empty(&[rows, d_out]);
    let pre = gpu.empty(&[rows, d_out]);
    let dy = gpu.upload(&vec![1.0; rows * d_out], &[rows, d_out]);
    let (dx, dw, db) = (
        gpu.empty(&[rows, d_in]),
        gpu.empty(&[d_out, d_in]),
        gpu.empty(&[d_out]),
    );
    let dpre = gpu.empty(&[rows, d_out]);

    // Forward and backward recorded together, submitted once.
    let mut rec = Recorder::new(&gpu);
    linear_forward(&mut rec, &y, &tx, &tw, Some(&tb), Some(&pre)); // y = gelu(x·Wᵀ + b)
    dinoscope::kernels::gelu::gelu_backward(&mut rec, &dpre, &dy, &pre, false);
    linear_backward(
        &mut rec,
        Some(&dx),
        &dw,
        Some(&db),
        &dpre,
        &tx,
        &tw,
        false,
        false,
    );
    rec.finish()?;

    let y_gpu = gpu.read(&y)?;
    let y_cpu = cpu::gelu::gelu_forward(&cpu::matmul::linear_forward(&x, &w, Some(&b), d_out));
    println!("y (gpu) = {y_gpu:?}");
    println!("y (cpu) = {y_cpu:?}");
    println!("dW      = {:?}", gpu.read(&dw)?);
    println!("db      = {:?}", gpu.read(&db)?);
    Ok(())
}
