//! k-NN and linear-probe accuracy of a training preset's backbone at initialisation (the
//! baseline training must beat), and of raw pixels, on the bundled Fashion-MNIST subset.
//!
//! `cargo run --release --example knn_at_init -- [PRESET]`

use dinoscope::gpu::{AdapterChoice, Gpu};
use dinoscope::train::config::TrainConfig;
use dinoscope::train::run::{datasets, evaluate};
use dinoscope::train::trainer::Trainer;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let preset = std::env::args().nth(1).unwrap_or_else(|| "debug".into());
    let cfg = TrainConfig::load(&preset)?;
    let gpu = Gpu::new_blocking(&AdapterChoice::from_env())?;
    let (_, eval) = datasets(None)?;
    let (tr, te) = eval.ok_or("no evaluation sets")?;
    let trainer = Trainer::new(&gpu, cfg.clone())?;
    let e = evaluate(&gpu, &trainer, tr.as_ref(), te.as_ref(), &cfg)?;
    println!(
        "{preset}: at initialisation k-NN {:.1}%, linear probe {:.1}%",
        e.knn * 100.0,
        e.probe * 100.0
    );
    let (a, ay) = dinoscope::train::knn::pixel_features(tr.as_ref(), cfg.knn_train, 28)?;
    let (b, by) = dinoscope::train::knn::pixel_features(te.as_ref(), cfg.knn_test, 28)?;
    let px = dinoscope::train::knn::knn_accuracy(&a, &ay, &b, &by, 3 * 28 * 28, 20, 0.07);
    let probe = dinoscope::train::probe::linear_probe(&gpu, &a, &ay, &b, &by, 3 * 28 * 28)?;
    println!(
        "raw pixels: k-NN {:.1}%, linear probe {:.1}%",
        px * 100.0,
        probe * 100.0
    );
    Ok(())
}
