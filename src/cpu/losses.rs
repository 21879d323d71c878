//! CPU twins of the DINOv2 losses (f64 inside).

/// softmax((t − c)/τ) per row.
pub fn teacher_softmax(logits: &[f32], center: &[f32], temp: f32) -> Vec<f32> {
    let k = center.len();
    let mut out = vec![0.0f32; logits.len()];
    for (row, o) in logits.chunks(k).zip(out.chunks_mut(k)) {
        let z: Vec<f64> = row
            .iter()
            .zip(center)
            .map(|(&t, &c)| (t as f64 - c as f64) / temp as f64)
            .collect();
        let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = z.iter().map(|v| (v - m).exp()).sum();
        for (oo, v) in o.iter_mut().zip(&z) {
            *oo = ((v - m).exp() / s) as f32;
        }
    }
    out
}

/// m·center + (1 − m)·mean of the rows.
pub fn center_update(center: &[f32], logits: &[f32], momentum: f32) -> Vec<f32> {
    let k = center.len();
    let rows = logits.len() / k;
    let mean = super::elementwise::sum_rows(logits, rows, k);
    center
        .iter()
        .zip(mean)
        .map(|(&c, s)| {
            (momentum as f64 * c as f64 + (1.0 - momentum as f64) * s as f64 / rows as f64) as f32
        })
        .collect()
}

/// Sinkhorn-Knopp targets of logits [n, K] (rows sum to 1), in the log domain like the kernel:
/// the official iterations with each normalisation as a log-sum-exp subtraction.
pub fn sinkhorn(logits: &[f32], k: usize, temp: f32, iterations: usize) -> Vec<f32> {
    let n = logits.len() / k;
    let lse = |v: &mut dyn Iterator<Item = f64>| {
        let vals: Vec<f64> = v.collect();
        let m = vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        m + vals.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
    };
    let mut l: Vec<f64> = logits.iter().map(|&t| t as f64 / temp as f64).collect();
    for _ in 0..iterations {
        for c in 0..k {
            let s = lse(&mut (0..n).map(|r| l[r * k + c]));
            for r in 0..n {
                l[r * k + c] -= s + (k as f64).ln();
            }
        }
        for r in 0..n {
            let s = lse(&mut l[r * k..(r + 1) * k].iter().copied());
            for v in &mut l[r * k..(r + 1) * k] {
                *v -= s + (n as f64).ln();
            }
        }
    }
    l.into_iter()
        .map(|v| (v + (n as f64).ln()).exp() as f32)
        .collect()
}

fn log_softmax(s: &[f32], inv_temp: f64) -> Vec<f64> {
    let z: Vec<f64> = s.iter().map(|&v| v as f64 * inv_temp).collect();
    let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
    z.iter().map(|v| v - lse).collect()
}

fn paired(v: usize, g: usize, n_global: usize) -> bool {
    v >= n_global || v != g
}

/// DINO loss scale·Σ_rows w_v·Σ_pairs CE(`T_g[b]`, `S_v[b]`) and its gradient w.r.t. the student
/// logits (`upstream` times). Student rows are crop-major [n_student·B, K], the first `n_global`
/// crops global (w = 1), the rest local (w = `local_weight`); teacher probabilities [n_teacher·B, K].
#[allow(clippy::too_many_arguments)]
pub fn dino_loss(
    student: &[f32],
    teacher: &[f32],
    k: usize,
    batch: usize,
    n_global: usize,
    n_teacher: usize,
    temp: f32,
    scale: f32,
    upstream: f32,
    local_weight: f32,
) -> (f32, Vec<f32>) {
    let rows = student.len() / k;
    let inv = 1.0 / temp as f64;
    let mut loss = 0.0f64;
    let mut grad = vec![0.0f32; student.len()];
    for r in 0..rows {
        let (v, b) = (r / batch, r % batch);
        let w = if v < n_global {
            1.0
        } else {
            local_weight as f64
        };
        let ls = log_softmax(&student[r * k..(r + 1) * k], inv);
        for g in (0..n_teacher).filter(|&g| paired(v, g, n_global)) {
            let t = &teacher[(g * batch + b) * k..(g * batch + b + 1) * k];
            let st: f64 = t.iter().map(|&x| x as f64).sum();
            for c in 0..k {
                loss -= w * t[c] as f64 * ls[c];
                grad[r * k + c] +=
                    (upstream as f64 * scale as f64 * w * inv * (ls[c].exp() * st - t[c] as f64))
                        as f32;
            }
        }
    }
    ((loss * scale as f64) as f32, grad)
}

/// KoLeo over chunks of `batch` rows: (scale·Σ −log(d_i + 1e-8), gradient times `upstream`,
/// neighbour indices).
pub fn koleo(
    x: &[f32],
    dim: usize,
    batch: usize,
    scale: f32,
    upstream: f32,
) -> (f32, Vec<f32>, Vec<usize>) {
    let eps = 1e-8f64;
    let rows = x.len() / dim;
    let norms: Vec<f64> = (0..rows)
        .map(|i| {
            x[i * dim..(i + 1) * dim]
                .iter()
                .map(|&v| v as f64 * v as f64)
                .sum::<f64>()
                .sqrt()
                .max(eps)
        })
        .collect();
    let xh = |i: usize, c: usize| x[i * dim + c] as f64 / norms[i];
    let mut nn = vec![0usize; rows];
    let mut d = vec![0.0f64; rows];
    let mut loss = 0.0f64;
    for i in 0..rows {
        let c0 = i / batch * batch;
        let mut best = f64::NEG_INFINITY;
        for j in c0..c0 + batch {
            if j == i {
                continue;
            }
            let cos: f64 = (0..dim).map(|c| xh(i, c) * xh(j, c)).sum();
            if cos > best {
                best = cos;
                nn[i] = j;
            }
        }
        d[i] = (0..dim)
            .map(|c| (xh(i, c) - xh(nn[i], c) + eps).powi(2))
            .sum::<f64>()
            .sqrt();
        loss -= (d[i] + eps).ln();
    }
    let g = upstream as f64 * scale as f64;
    // dL/dx̂, then through the normalisation.
    let mut gh = vec![0.0f64; x.len()];
    for i in 0..rows {
        let w = -g / (d[i] * (d[i] + eps));
        for c in 0..dim {
            let u = xh(i, c) - xh(nn[i], c) + eps;
            gh[i * dim + c] += w * u;
            gh[nn[i] * dim + c] -= w * u;
        }
    }
    let mut dx = vec![0.0f32; x.len()];
    for i in 0..rows {
        let dot: f64 = (0..dim).map(|c| gh[i * dim + c] * xh(i, c)).sum();
        for c in 0..dim {
            let v = if norms[i] <= eps {
                gh[i * dim + c] / eps
            } else {
                (gh[i * dim + c] - xh(i, c) * dot) / norms[i]
            };
            dx[i * dim + c] = v as f32;
        }
    }
    ((loss * scale as f64) as f32, dx, nn)
}

/// Rows `idx` of src [_, cols].
pub fn gather_rows(src: &[f32], idx: &[usize], cols: usize) -> Vec<f32> {
    idx.iter()
        .flat_map(|&r| src[r * cols..(r + 1) * cols].iter().copied())
        .collect()
}

/// DINOv3's Gram anchoring loss (spec §8.1) on `batch` images of `patches` features of width
/// `dim`: rows L2-normalised, G = X̂X̂ᵀ per image, loss = mean over all B·P·P entries of
/// (G_student − G_teacher)². Returns the loss and its gradient in the student's features (the
/// teacher is frozen), times `upstream`.
pub fn gram_loss(
    student: &[f32],
    teacher: &[f32],
    batch: usize,
    patches: usize,
    dim: usize,
    upstream: f32,
) -> (f32, Vec<f32>) {
    let eps = 1e-12f64;
    let normed = |x: &[f32]| -> (Vec<f64>, Vec<f64>) {
        let rows = x.len() / dim;
        let mut out = vec![0.0f64; x.len()];
        let mut norms = vec![0.0f64; rows];
        for r in 0..rows {
            let row = &x[r * dim..(r + 1) * dim];
            let n = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
            norms[r] = n;
            for c in 0..dim {
                out[r * dim + c] = row[c] as f64 / n.max(eps);
            }
        }
        (out, norms)
    };
    let (xs, ns) = normed(student);
    let (xt, _) = normed(teacher);
    let (p, d) = (patches, dim);
    let count = (batch * p * p) as f64;
    let mut loss = 0.0f64;
    let mut gh = vec![0.0f64; xs.len()];
    for b in 0..batch {
        let row = |i: usize| (b * p + i) * d;
        for i in 0..p {
            for j in 0..p {
                let dot =
                    |x: &[f64]| -> f64 { (0..d).map(|c| x[row(i) + c] * x[row(j) + c]).sum() };
                let diff = dot(&xs) - dot(&xt);
                loss += diff * diff;
                // d/dx̂_i of Σ_ij diff² (G symmetric): 4·diff_ij·x̂_j over j, scaled by 1/count.
                let g = 4.0 * diff / count * upstream as f64;
                for c in 0..d {
                    gh[row(i) + c] += g * xs[row(j) + c];
                }
            }
        }
    }
    let mut dx = vec![0.0f32; xs.len()];
    for r in 0..xs.len() / d {
        // At or under eps the norm is the constant eps: no projection (as the kernel, and
        // torch's normalize, differentiate x / max(‖x‖, eps)).
        if ns[r] <= eps {
            for c in 0..d {
                dx[r * d + c] = (gh[r * d + c] / eps) as f32;
            }
            continue;
        }
        let dot: f64 = (0..d).map(|c| gh[r * d + c] * xs[r * d + c]).sum();
        for c in 0..d {
            dx[r * d + c] = ((gh[r * d + c] - xs[r * d + c] * dot) / ns[r]) as f32;
        }
    }
    ((loss / count) as f32, dx)
}
