//! No GPU: every CPU twin's backward against central finite differences of its forward.

mod common;

use common::{assert_close, FD};
use dinoscope::cpu;
use dinoscope::cpu::interp::InterpMode;
use dinoscope::kernels::matmul::MatmulDims;
use dinoscope::kernels::patch_embed::PatchDims;
use dinoscope::selftest::checks_random as random;

/// Central differences of L(x) = Σ f(x)·u at up to 24 spread-out indices.
fn fd(x: &[f32], u: &[f32], f: impl Fn(&[f32]) -> Vec<f32>) -> (Vec<usize>, Vec<f32>) {
    let h = 1e-2f32;
    let n = x.len();
    let idx: Vec<usize> = if n <= 24 {
        (0..n).collect()
    } else {
        (0..24).map(|i| i * (n - 1) / 23).collect()
    };
    let loss = |x: &[f32]| -> f64 { f(x).iter().zip(u).map(|(a, b)| *a as f64 * *b as f64).sum() };
    let grads = idx
        .iter()
        .map(|&i| {
            let mut xp = x.to_vec();
            xp[i] += h;
            let mut xm = x.to_vec();
            xm[i] -= h;
            ((loss(&xp) - loss(&xm)) / (2.0 * h as f64)) as f32
        })
        .collect();
    (idx, grads)
}

fn check(what: &str, x: &[f32], u: &[f32], analytic: &[f32], f: impl Fn(&[f32]) -> Vec<f32>) {
    let (idx, num) = fd(x, u, f);
    let picked: Vec<f32> = idx.iter().map(|&i| analytic[i]).collect();
    assert_close(what, &picked, &num, &FD);
}

#[test]
fn matmul_grads() {
    let (m, n, k) = (5, 7, 3);
    let a = random(2 * m * k, 1, -1.0, 1.0);
    let b = random(2 * k * n, 2, -1.0, 1.0);
    let u = random(2 * m * n, 3, -1.0, 1.0);
    let d = MatmulDims::new(m, n, k).batched(2);
    let (da, db) = cpu::matmul::matmul_backward(&u, &a, &b, 2, m, n, k);
    check("matmul dA", &a, &u, &da, |a| cpu::matmul::matmul(a, &b, d));
    check("matmul dB", &b, &u, &db, |b| cpu::matmul::matmul(&a, b, d));
}

#[test]
fn linear_grads() {
    let (rows, i, o) = (6, 5, 4);
    let x = random(rows * i, 4, -1.0, 1.0);
    let w = random(o * i, 5, -1.0, 1.0);
    let b = random(o, 6, -1.0, 1.0);
    let u = random(rows * o, 7, -1.0, 1.0);
    let (dx, dw, db) = cpu::matmul::linear_backward(&u, &x, &w, o);
    check("linear dx", &x, &u, &dx, |x| {
        cpu::matmul::linear_forward(x, &w, Some(&b), o)
    });
    check("linear dw", &w, &u, &dw, |w| {
        cpu::matmul::linear_forward(&x, w, Some(&b), o)
    });
    check("linear db", &b, &u, &db, |b| {
        cpu::matmul::linear_forward(&x, &w, Some(b), o)
    });
}

#[test]
fn layernorm_grads() {
    let d = 9;
    let x = random(4 * d, 8, -2.0, 2.0);
    let w = random(d, 9, 0.5, 1.5);
    let b = random(d, 10, -0.5, 0.5);
    let u = random(4 * d, 11, -1.0, 1.0);
    let eps = 1e-5;
    let (dx, dw, db) = cpu::layernorm::layernorm_backward(&u, &x, &w, eps);
    check("layernorm dx", &x, &u, &dx, |x| {
        cpu::layernorm::layernorm_forward(x, &w, &b, eps).0
    });
    check("layernorm dw", &w, &u, &dw, |w| {
        cpu::layernorm::layernorm_forward(&x, w, &b, eps).0
    });
    check("layernorm db", &b, &u, &db, |b| {
        cpu::layernorm::layernorm_forward(&x, &w, b, eps).0
    });
}

#[test]
fn gelu_grad() {
    let x = random(40, 12, -5.0, 5.0);
    let u = random(40, 13, -1.0, 1.0);
    let dx = cpu::gelu::gelu_backward(&u, &x);
    check("gelu dx", &x, &u, &dx, cpu::gelu::gelu_forward);
}

#[test]
fn softmax_grad() {
    let x = random(3 * 8, 14, -3.0, 3.0);
    let u = random(3 * 8, 15, -1.0, 1.0);
    for scale in [1.0f32, 0.5] {
        let y = cpu::softmax::softmax_forward(&x, 8, scale);
        let dx = cpu::softmax::softmax_backward(&u, &y, 8, scale);
        check("softmax dx", &x, &u, &dx, |x| {
            cpu::softmax::softmax_forward(x, 8, scale)
        });
    }
}

#[test]
fn cross_entropy_grad() {
    let (rows, cols) = (4, 6);
    let s = random(rows * cols, 16, -2.0, 2.0);
    let t = cpu::softmax::softmax_forward(&random(rows * cols, 17, -2.0, 2.0), cols, 1.0);
    let rw = random(rows, 18, 0.2, 1.0);
    let (temp, scale, up) = (0.5, 0.25, 1.3);
    let g = cpu::cross_entropy::cross_entropy_backward(up, &s, &t, cols, temp, scale, Some(&rw));
    // L = up·scale·Σ_r w_r·loss_r, so the "upstream" of each per-row loss is up·scale·w_r.
    let u: Vec<f32> = rw.iter().map(|w| up * scale * w).collect();
    check("cross-entropy dlogits", &s, &u, &g, |s| {
        cpu::cross_entropy::cross_entropy_forward(s, &t, cols, temp)
    });
}

#[test]
fn attention_grads() {
    let (bh, n, d) = (2, 5, 4);
    let q = random(bh * n * d, 19, -1.0, 1.0);
    let k = random(bh * n * d, 20, -1.0, 1.0);
    let v = random(bh * n * d, 21, -1.0, 1.0);
    let u = random(bh * n * d, 22, -1.0, 1.0);
    let s = 0.5;
    let (dq, dk, dv) = cpu::attention::attention_backward(&u, &q, &k, &v, bh, n, n, d, s);
    let fwd = |q: &[f32], k: &[f32], v: &[f32]| {
        cpu::attention::attention_forward(q, k, v, bh, n, n, d, s).0
    };
    check("attention dq", &q, &u, &dq, |q| fwd(q, &k, &v));
    check("attention dk", &k, &u, &dk, |k| fwd(&q, k, &v));
    check("attention dv", &v, &u, &dv, |v| fwd(&q, &k, v));
}

#[test]
fn patch_embed_grads() {
    let d = PatchDims {
        batch: 2,
        channels: 2,
        height: 9,
        width: 13,
        patch: 4,
    };
    let (gh, gw) = d.grid();
    let dim = 3;
    let x = random(2 * 2 * 9 * 13, 23, -1.0, 1.0);
    let w = random(dim * 2 * 16, 24, -0.5, 0.5);
    let b = random(dim, 25, -0.5, 0.5);
    let u = random(2 * gh * gw * dim, 26, -1.0, 1.0);
    let (dx, dw, db) = cpu::patch_embed::patch_embed_backward(&u, &x, &w, dim, d);
    check("patch_embed dx", &x, &u, &dx, |x| {
        cpu::patch_embed::patch_embed_forward(x, &w, &b, d)
    });
    check("patch_embed dw", &w, &u, &dw, |w| {
        cpu::patch_embed::patch_embed_forward(&x, w, &b, d)
    });
    check("patch_embed db", &b, &u, &db, |b| {
        cpu::patch_embed::patch_embed_forward(&x, &w, b, d)
    });
    // Pixels outside the patch grid (row 8, column 12) get no gradient.
    assert_eq!(dx[8 * 13 + 12], 0.0);
}

#[test]
fn interp_grads() {
    for mode in [InterpMode::Bicubic, InterpMode::BicubicAntialias] {
        for &(hi, wi, ho, wo) in &[(4, 4, 5, 6), (4, 4, 3, 7), (5, 5, 2, 2)] {
            let x = random(2 * hi * wi, 27, -1.0, 1.0);
            let u = random(2 * ho * wo, 28, -1.0, 1.0);
            let dx = cpu::interp::interp_backward(&u, 2, hi, wi, ho, wo, mode);
            check("interp dx", &x, &u, &dx, |x| {
                cpu::interp::interp_forward(x, 2, hi, wi, ho, wo, mode)
            });
        }
    }
}

#[test]
fn interp_weights_are_partitions_of_unity() {
    for mode in [InterpMode::Bicubic, InterpMode::BicubicAntialias] {
        for &(n_in, n_out) in &[(4, 5), (4, 3), (16, 37), (37, 16), (4, 4)] {
            let w = cpu::interp::axis_weights(n_in, n_out, mode);
            for row in w.chunks(n_in) {
                let s: f32 = row.iter().sum();
                assert!(
                    (s - 1.0).abs() < 1e-5,
                    "{mode:?} {n_in}->{n_out}: row sums to {s}"
                );
            }
        }
        // Same size: the identity.
        let w = cpu::interp::axis_weights(4, 4, mode);
        for i in 0..4 {
            for j in 0..4 {
                assert!((w[i * 4 + j] - (i == j) as u8 as f32).abs() < 1e-6);
            }
        }
    }
}

#[test]
fn elementwise_grads() {
    let (rows, cols) = (4, 5);
    let a = random(rows * cols, 29, -1.0, 1.0);
    let b = random(cols, 30, -1.0, 1.0);
    let u = random(rows * cols, 31, -1.0, 1.0);
    let (da, db) = cpu::elementwise::mul_backward(&u, &a, &b);
    check("mul da", &a, &u, &da, |a| cpu::elementwise::mul(a, &b));
    check("mul db", &b, &u, &db, |b| cpu::elementwise::mul(&a, b));
}

#[test]
fn erfc_matches_known_values() {
    // Reference values of erfc to 10 digits.
    for (x, want) in [
        (0.0, 1.0),
        (0.5, 0.4795001222),
        (1.0, 0.1572992071),
        (2.0, 0.004677734981),
        (-1.0, 1.842700793),
    ] {
        let got = cpu::gelu::erfc(x);
        assert!(
            ((got - want) / want).abs() < 2e-7,
            "erfc({x}) = {got}, want {want}"
        );
    }
}

#[test]
fn dino_loss_grad() {
    let (b, k) = (3, 5);
    // 2 global + 2 local student crops (weighted 0.4) against 2 teacher crops.
    let s = random(4 * b * k, 40, -2.0, 2.0);
    let t = cpu::losses::teacher_softmax(&random(2 * b * k, 41, -2.0, 2.0), &vec![0.0; k], 0.5);
    let (_, g) = cpu::losses::dino_loss(&s, &t, k, b, 2, 2, 0.3, 0.1, 1.0, 0.4);
    let u = vec![1.0f32];
    check("dino dS", &s, &u, &g, |s| {
        vec![cpu::losses::dino_loss(s, &t, k, b, 2, 2, 0.3, 0.1, 1.0, 0.4).0]
    });
}

#[test]
fn koleo_grad() {
    let (n, d) = (6, 5);
    let x = random(n * d, 42, -1.0, 1.0);
    let (_, g, _) = cpu::losses::koleo(&x, d, 3, 1.0 / 3.0, 1.0);
    check("koleo dx", &x, &[1.0], &g, |x| {
        vec![cpu::losses::koleo(x, d, 3, 1.0 / 3.0, 1.0).0]
    });
}

#[test]
fn sinkhorn_rows_sum_to_one_and_prototypes_balance() {
    let (n, k) = (6, 4);
    // Large logits at a low temperature: exp would overflow without the shift.
    let t: Vec<f32> = random(n * k, 43, -30.0, 30.0);
    let q = cpu::losses::sinkhorn(&t, k, 0.04, 50);
    assert!(q.iter().all(|v| v.is_finite()));
    for row in q.chunks(k) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    }
    // With moderate logits, many iterations give every prototype about n/k of the mass.
    let q = cpu::losses::sinkhorn(&random(n * k, 44, -1.0, 1.0), k, 0.5, 50);
    for c in 0..k {
        let col: f32 = (0..n).map(|r| q[r * k + c]).sum();
        assert!(
            (col - n as f32 / k as f32).abs() < 1e-2,
            "prototype {c}: {col}"
        );
    }
}

#[test]
fn swiglu_grad() {
    let h = 4;
    let x = random(3 * 2 * h, 45, -3.0, 3.0);
    let u = random(3 * h, 46, -1.0, 1.0);
    let dx = cpu::gelu::swiglu_backward(&u, &x, h);
    check("swiglu dx", &x, &u, &dx, |x| {
        cpu::gelu::swiglu_forward(x, h)
    });
}

#[test]
fn gram_loss_grads() {
    let (batch, patches, dim) = (2, 5, 6);
    let xs = random(batch * patches * dim, 61, -1.0, 1.0);
    let xt = random(batch * patches * dim, 62, -1.0, 1.0);
    let (_, g) = cpu::losses::gram_loss(&xs, &xt, batch, patches, dim, 1.0);
    check("gram dX_student", &xs, &[1.0], &g, |x| {
        vec![cpu::losses::gram_loss(x, &xt, batch, patches, dim, 1.0).0]
    });
}

#[test]
fn rope_is_a_rotation_and_its_inverse_the_transpose() {
    let (batch, gh, gw, prefix, heads, hd) = (2, 2, 3, 1, 2, 8);
    let n = prefix + gh * gw;
    let (cos, sin) = dinoscope::model::rope::tables(gh, gw, hd, 100.0);
    let x = random(batch * n * 3 * heads * hd, 63, -1.0, 1.0);
    let u = random(x.len(), 64, -1.0, 1.0);
    let apply = |v: &[f32], inverse: bool| {
        let mut v = v.to_vec();
        cpu::rope::rope_apply(&mut v, &cos, &sin, batch, n, prefix, heads, hd, inverse);
        v
    };
    // The forward is linear, so its gradient is the inverse applied to the upstream.
    let grad = apply(&u, true);
    check("rope dX", &x, &u, &grad, |x| apply(x, false));
}
