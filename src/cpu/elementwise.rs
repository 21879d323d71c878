//! CPU elementwise ops and reductions.

/// out = a + b (b wraps).
pub fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter()
        .enumerate()
        .map(|(i, &x)| x + b[i % b.len()])
        .collect()
}

/// out = a·b (b wraps).
pub fn mul(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter()
        .enumerate()
        .map(|(i, &x)| x * b[i % b.len()])
        .collect()
}

/// Backward of `a·b` with b wrapping over rows of width b.len(): (da, db).
pub fn mul_backward(dy: &[f32], a: &[f32], b: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let da = mul(dy, b);
    let prod: Vec<f32> = dy.iter().zip(a).map(|(g, x)| g * x).collect();
    let db = sum_rows(&prod, dy.len() / b.len(), b.len());
    (da, db)
}

/// Column sums of x viewed as [rows, cols].
pub fn sum_rows(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut acc = vec![0.0f64; cols];
    for r in 0..rows {
        for c in 0..cols {
            acc[c] += x[r * cols + c] as f64;
        }
    }
    acc.into_iter().map(|v| v as f32).collect()
}

/// Σ x.
pub fn sum(x: &[f32]) -> f32 {
    x.iter().map(|&v| v as f64).sum::<f64>() as f32
}

/// Σ x².
pub fn sum_squares(x: &[f32]) -> f32 {
    x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() as f32
}
