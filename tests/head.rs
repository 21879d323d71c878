//! The DINO head on the GPU: forward against its CPU twin, and every gradient (input, MLP,
//! weight-normed prototypes) against finite differences of the twin.

mod common;

use dinoscope::gpu::Recorder;
use dinoscope::model::params::{ParamLayout, ParamStore};
use dinoscope::selftest::checks_random as random;
use dinoscope::train::head::{head_forward_cpu, head_tensors, DinoHead, HeadConfig};
use std::collections::BTreeMap;

#[test]
fn head_forward_and_gradients() {
    let Some(gpu) = common::gpu() else { return };
    let (dim, rows) = (24, 5);
    let h = HeadConfig {
        hidden: 32,
        bottleneck: 8,
        prototypes: 65,
    };
    let layout = ParamLayout::new(&head_tensors(dim, &h, "dino_head."));
    let values: BTreeMap<String, Vec<f32>> = layout
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let v = if e.name.ends_with("weight_g") {
                random(e.numel(), 50 + i as u64, 0.5, 1.5)
            } else {
                random(e.numel(), 50 + i as u64, -0.3, 0.3)
            };
            (e.name.clone(), v)
        })
        .collect();
    let x = random(rows * dim, 60, -1.0, 1.0);
    let u = random(rows * h.prototypes, 61, -1.0, 1.0);
    let params = ParamStore::upload(gpu, layout.clone(), &layout.pack(&values));
    let head = DinoHead::new(dim, h.clone(), "dino_head.");
    let mut rec = Recorder::new(gpu);
    let tx = gpu.upload(&x, &[rows, dim]);
    let (logits, acts) = head.forward(&mut rec, &params, &tx, rows);
    let grads = ParamStore {
        layout: layout.clone(),
        flat: rec.zeros(&[layout.total]),
    };
    let dl = gpu.upload(&u, &[rows, h.prototypes]);
    let dx = head.backward(&mut rec, &params, &grads, &acts, &dl);
    rec.finish().expect("submit");
    let got = gpu.read(&logits).expect("read");
    let want = head_forward_cpu(&values, "dino_head.", dim, &h, &x);
    common::assert_close(
        "head logits",
        &got,
        &want,
        &common::Tol {
            atol: 1e-5,
            rtol: 1e-4,
        },
    );
    let gflat = layout.unpack(&gpu.read(&grads.flat).expect("read"));
    let gdx = gpu.read(&dx).expect("read");

    let loss = |vals: &BTreeMap<String, Vec<f32>>, x: &[f32]| -> f64 {
        head_forward_cpu(vals, "dino_head.", dim, &h, x)
            .iter()
            .zip(&u)
            .map(|(a, b)| *a as f64 * *b as f64)
            .sum()
    };
    let eps = 1e-2f32;
    let tol = common::Tol {
        atol: 2e-3,
        rtol: 2e-2,
    };
    for (name, v) in &values {
        let picks: Vec<usize> = (0..6).map(|i| i * (v.len() - 1) / 5).collect();
        let mut num = Vec::new();
        let mut ana = Vec::new();
        for &i in &picks {
            let mut p = values.clone();
            p.get_mut(name).expect("name")[i] += eps;
            let mut m = values.clone();
            m.get_mut(name).expect("name")[i] -= eps;
            num.push(((loss(&p, &x) - loss(&m, &x)) / (2.0 * eps as f64)) as f32);
            ana.push(gflat[name][i]);
        }
        common::assert_close(&format!("d {name}"), &ana, &num, &tol);
    }
    let picks: Vec<usize> = (0..8).map(|i| i * (x.len() - 1) / 7).collect();
    let mut num = Vec::new();
    for &i in &picks {
        let (mut xp, mut xm) = (x.clone(), x.clone());
        xp[i] += eps;
        xm[i] -= eps;
        num.push(((loss(&values, &xp) - loss(&values, &xm)) / (2.0 * eps as f64)) as f32);
    }
    let ana: Vec<f32> = picks.iter().map(|&i| gdx[i]).collect();
    common::assert_close("d x", &ana, &num, &tol);
}
