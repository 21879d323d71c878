//! CPU AdamW and EMA.

use crate::kernels::adamw::{AdamWStep, Segment};

/// One AdamW step in place (torch.optim.AdamW semantics, per-segment multipliers).
pub fn adamw_step(
    param: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    grad: &[f32],
    segs: &[Segment],
    h: AdamWStep,
) {
    let bc1 = 1.0 - h.beta1.powi(h.t as i32);
    let bc2 = 1.0 - h.beta2.powi(h.t as i32);
    for s in segs {
        let lr = h.lr * s.lr_scale;
        let wd = h.weight_decay * s.wd_scale;
        for i in s.start..s.end {
            let g = grad[i];
            let mut w = param[i] * (1.0 - lr * wd);
            m[i] = h.beta1 * m[i] + (1.0 - h.beta1) * g;
            v[i] = h.beta2 * v[i] + (1.0 - h.beta2) * g * g;
            w -= lr * (m[i] / bc1) / ((v[i] / bc2).sqrt() + h.eps);
            param[i] = w;
        }
    }
}

/// teacher ← m·teacher + (1 − m)·student.
pub fn ema_update(teacher: &mut [f32], student: &[f32], momentum: f32) {
    for (t, &s) in teacher.iter_mut().zip(student) {
        *t += (1.0 - momentum) * (s - *t);
    }
}
