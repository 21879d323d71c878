//! Elementwise add, mul and axpby with wrap-around broadcasting (shaders/elementwise.wgsl).

use crate::gpu::{grid_1d, Access::*, Kernel, Recorder, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    nb: u32,
    accumulate: u32,
    row_len: u32,
    alpha: f32,
    beta: f32,
    _pad1: [u32; 2],
}

const B: &[(u32, crate::gpu::Access)] = &[(1, Read), (2, Read), (3, ReadWrite)];
/// out = a + b.
pub static ADD_FORWARD: Kernel = Kernel::new::<Params>("elementwise", "add_forward", B);
/// out = a·b.
pub static MUL_FORWARD: Kernel = Kernel::new::<Params>("elementwise", "mul_forward", B);
/// out = a + b·c.
pub static ADD_MUL: Kernel = Kernel::new::<Params>(
    "elementwise",
    "add_mul",
    &[(1, Read), (2, Read), (3, ReadWrite), (4, Read)],
);
/// out = a·`s[row]`.
pub static SCALE_ROWS: Kernel = Kernel::new::<Params>(
    "elementwise",
    "scale_rows",
    &[(1, Read), (3, ReadWrite), (5, Read)],
);
/// scale_rows on vec4s.
pub static SCALE_ROWS_V4: Kernel = Kernel::new::<Params>(
    "elementwise",
    "scale_rows_v4",
    &[(1, Read), (3, ReadWrite), (5, Read)],
);
/// out = alpha·a + beta·out.
pub static AXPBY: Kernel = Kernel::new::<Params>("elementwise", "axpby", B);
/// add_forward on vec4s.
pub static ADD_FORWARD_V4: Kernel = Kernel::new::<Params>("elementwise", "add_forward_v4", B);
/// mul_forward on vec4s.
pub static MUL_FORWARD_V4: Kernel = Kernel::new::<Params>("elementwise", "mul_forward_v4", B);
/// add_mul on vec4s.
pub static ADD_MUL_V4: Kernel = Kernel::new::<Params>(
    "elementwise",
    "add_mul_v4",
    &[(1, Read), (2, Read), (3, ReadWrite), (4, Read)],
);
/// mul_backward in one pass on GPUs: da (+)= dy·b and partial column sums of dy·a.
pub static MUL_BACKWARD4: Kernel = Kernel::new::<Params>(
    "elementwise",
    "mul_backward4",
    &[
        (1, Read),
        (2, Read),
        (3, ReadWrite),
        (4, Read),
        (6, ReadWrite),
    ],
);
/// axpby on vec4s.
pub static AXPBY_V4: Kernel = Kernel::new::<Params>("elementwise", "axpby_v4", B);

/// Element counts as the kernel sees them: divided by 4 for the vec4 variant when every length
/// is a non-zero multiple of 4, so each invocation moves 16 bytes per load (an empty tensor's
/// binding is too small for a vec4 array).
fn lanes4<const N: usize>(
    scalar: &'static Kernel,
    v4: &'static Kernel,
    lens: [usize; N],
) -> (&'static Kernel, [usize; N]) {
    if lens.iter().all(|&n| n > 0 && n.is_multiple_of(4)) {
        (v4, lens.map(|n| n / 4))
    } else {
        (scalar, lens)
    }
}

fn launch(
    rec: &mut Recorder,
    (k, k4): (&'static Kernel, &'static Kernel),
    out: &Tensor,
    a: &Tensor,
    b: &Tensor,
    accumulate: bool,
) {
    let n = a.numel();
    let nb = b.numel();
    assert_eq!(out.numel(), n, "{}: out and a sizes", k.entry);
    assert!(
        nb > 0 && n.is_multiple_of(nb),
        "{}: b ({nb}) must divide a ({n})",
        k.entry
    );
    let (k, [n, nb]) = lanes4(k, k4, [n, nb]);
    let p = Params {
        n: n as u32,
        nb: nb as u32,
        accumulate: super::flag(accumulate),
        row_len: 1,
        alpha: 0.0,
        beta: 0.0,
        _pad1: [0; 2],
    };
    rec.dispatch(k, &p, &[a, b, out], grid_1d(n.div_ceil(256)));
}

/// out (+)= a + b, b broadcast by wrapping (row vector, scalar or full).
pub fn add_forward(rec: &mut Recorder, out: &Tensor, a: &Tensor, b: &Tensor, accumulate: bool) {
    launch(rec, (&ADD_FORWARD, &ADD_FORWARD_V4), out, a, b, accumulate)
}

/// out (+)= a·b, b broadcast by wrapping. Also the backward of mul: da = dy·b.
pub fn mul_forward(rec: &mut Recorder, out: &Tensor, a: &Tensor, b: &Tensor, accumulate: bool) {
    launch(rec, (&MUL_FORWARD, &MUL_FORWARD_V4), out, a, b, accumulate)
}

/// Backward of `out = a + b` with b broadcast over rows of width b.numel():
/// da (+)= dy, db (+)= Σ_rows dy.
pub fn add_backward(rec: &mut Recorder, da: &Tensor, db: &Tensor, dy: &Tensor, accumulate: bool) {
    axpby(rec, da, dy, 1.0, if accumulate { 1.0 } else { 0.0 });
    let cols = db.numel();
    super::reduce::sum_rows(rec, db, dy, dy.numel() / cols, cols, 1.0, accumulate);
}

/// Backward of `out = a·b` with b broadcast over rows of width b.numel() (LayerScale):
/// da (+)= dy·b, db (+)= Σ_rows dy·a (`accumulate`: for da, for db).
pub fn mul_backward(
    rec: &mut Recorder,
    da: &Tensor,
    db: &Tensor,
    dy: &Tensor,
    (a, b): (&Tensor, &Tensor),
    (accumulate_da, accumulate_db): (bool, bool),
) {
    let cols = db.numel();
    let rows = dy.numel() / cols.max(1);
    assert!(
        b.numel() == cols && a.numel() == dy.numel() && da.numel() == dy.numel(),
        "mul_backward: sizes"
    );
    if !rec.cpu_layouts() && cols.is_multiple_of(4) && rows > 0 {
        let chunks = rows.div_ceil(256);
        let partial = rec.gpu().empty(&[chunks, cols]);
        let p = Params {
            n: rows as u32,
            nb: (cols / 4) as u32,
            accumulate: super::flag(accumulate_da),
            row_len: (cols / 4) as u32,
            alpha: 0.0,
            beta: 0.0,
            _pad1: [0; 2],
        };
        let grid = [(cols / 4).div_ceil(16) as u32, chunks as u32, 1];
        rec.dispatch(&MUL_BACKWARD4, &p, &[dy, b, da, a, &partial], grid);
        super::reduce::sum_rows(rec, db, &partial, chunks, cols, 1.0, accumulate_db);
        return;
    }
    mul_forward(rec, da, dy, b, accumulate_da);
    let tmp = rec.gpu().empty(dy.shape());
    mul_forward(rec, &tmp, dy, a, false);
    super::reduce::sum_rows(rec, db, &tmp, rows, cols, 1.0, accumulate_db);
}

/// out = alpha·a + beta·out (beta = 0 overwrites: a scaled copy).
pub fn axpby(rec: &mut Recorder, out: &Tensor, a: &Tensor, alpha: f32, beta: f32) {
    let n = a.numel();
    assert_eq!(out.numel(), n, "axpby: sizes");
    let (k, [n]) = lanes4(&AXPBY, &AXPBY_V4, [n]);
    let p = Params {
        n: n as u32,
        nb: 1,
        accumulate: 0,
        row_len: 1,
        alpha,
        beta,
        _pad1: [0; 2],
    };
    let dummy = rec.gpu().dummy_read.clone();
    rec.dispatch(k, &p, &[a, &dummy, out], grid_1d(n.div_ceil(256)));
}

/// out = alpha·a; its backward is da = alpha·dy.
pub fn scale_forward(rec: &mut Recorder, out: &Tensor, a: &Tensor, alpha: f32) {
    axpby(rec, out, a, alpha, 0.0)
}

/// out = a + b·c with c wrapping (a residual branch scaled by LayerScale), written to a new
/// tensor so `a` survives for the backward pass. Backward: da = dy, db = dy·c (mul_forward),
/// dc = Σ_rows dy·b (mul_backward).
pub fn add_mul(rec: &mut Recorder, out: &Tensor, a: &Tensor, b: &Tensor, c: &Tensor) {
    let n = a.numel();
    let nc = c.numel();
    assert!(out.numel() == n && b.numel() == n, "add_mul: sizes");
    assert!(
        nc > 0 && n.is_multiple_of(nc),
        "add_mul: c ({nc}) must divide a ({n})"
    );
    let (k, [n, nc]) = lanes4(&ADD_MUL, &ADD_MUL_V4, [n, nc]);
    let p = Params {
        n: n as u32,
        nb: nc as u32,
        accumulate: 0,
        row_len: 1,
        alpha: 0.0,
        beta: 0.0,
        _pad1: [0; 2],
    };
    rec.dispatch(k, &p, &[a, b, out, c], grid_1d(n.div_ceil(256)));
}

/// out = a·s[i / row_len]: one scale per sample (drop path); also its own backward.
pub fn scale_rows(rec: &mut Recorder, out: &Tensor, a: &Tensor, s: &Tensor) {
    let n = a.numel();
    let rows = s.numel();
    assert!(
        out.numel() == n && rows > 0 && n.is_multiple_of(rows),
        "scale_rows: sizes"
    );
    let (kernel, [n, row_len]) = lanes4(&SCALE_ROWS, &SCALE_ROWS_V4, [n, n / rows]);
    let p = Params {
        n: n as u32,
        nb: 1,
        accumulate: 0,
        row_len: row_len as u32,
        alpha: 0.0,
        beta: 0.0,
        _pad1: [0; 2],
    };
    rec.dispatch(kernel, &p, &[a, out, s], grid_1d(n.div_ceil(256)));
}
