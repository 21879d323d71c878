//! CPU AdamW, EMA and the loss-scaling rule.

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

/// One update of the loss-scaling state [S, finite steps in a row, skipped, skip, 1/S] after a
/// backward pass that did (`overflow`) or did not leave f16's range; the twin of
/// `loss_scale_update` in shaders/loss_scale.wgsl.
pub fn loss_scale_update(state: &mut [f32; 5], overflow: bool, interval: u32, max_scale: f32) {
    let s = state[0];
    if overflow {
        *state = [(0.5 * s).max(1.0), 0.0, state[2] + 1.0, 1.0, 0.0];
        return;
    }
    state[3] = 0.0;
    state[4] = 1.0 / s;
    let good = state[1] + 1.0;
    if good >= interval as f32 {
        state[0] = (2.0 * s).min(max_scale);
        state[1] = 0.0;
    } else {
        state[1] = good;
    }
}
