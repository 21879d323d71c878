//! Batched matmul with transposes and a fused bias/GELU epilogue (shaders/matmul.wgsl).

use crate::gpu::{Access::*, Kernel, Recorder, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch_offset: u32,
    a_batch_stride: u32,
    b_batch_stride: u32,
    c_batch_stride: u32,
    trans_a: u32,
    trans_b: u32,
    epilogue: u32,
    accumulate: u32,
    _pad0: u32,
    alpha: f32,
    _pad1: [u32; 3],
}

/// C = alpha·op(A)·op(B) (+C) (+bias) (→ GELU).
pub static MATMUL: Kernel = Kernel::new::<Params>(
    "matmul",
    "matmul",
    &[
        (1, Read),
        (2, Read),
        (3, Read),
        (4, ReadWrite),
        (5, ReadWrite),
    ],
);

/// Tile shape of one matmul pipeline (WGSL overrides BM, BN, BK, TM, TN, WG).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    /// Output rows per workgroup.
    pub bm: usize,
    /// Output columns per workgroup.
    pub bn: usize,
    /// K step through workgroup memory.
    pub bk: usize,
    /// Rows per invocation.
    pub tm: usize,
    /// Columns per invocation.
    pub tn: usize,
}

impl Tile {
    /// 128×128 tiles with 8×8 per invocation for large products; 64×64 with 4×4 otherwise, so
    /// small products still spread over enough workgroups.
    pub fn for_problem(m: usize, n: usize) -> Tile {
        if m >= 256 && n >= 256 {
            Tile {
                bm: 128,
                bn: 128,
                bk: 8,
                tm: 8,
                tn: 8,
            }
        } else {
            Tile {
                bm: 64,
                bn: 64,
                bk: 16,
                tm: 4,
                tn: 4,
            }
        }
    }

    fn overrides(&self) -> [(&'static str, f64); 6] {
        let wg = (self.bm / self.tm) * (self.bn / self.tn);
        [
            ("BM", self.bm as f64),
            ("BN", self.bn as f64),
            ("BK", self.bk as f64),
            ("TM", self.tm as f64),
            ("TN", self.tn as f64),
            ("WG", wg as f64),
        ]
    }
}

/// What happens to each output after the product.
#[derive(Clone, Copy, Debug)]
pub enum Epilogue<'a> {
    /// Nothing.
    None,
    /// + bias[n].
    Bias(&'a Tensor),
    /// + bias[n], store the pre-activation in the second tensor, then GELU.
    BiasGelu(&'a Tensor, &'a Tensor),
}

/// Shape and layout of one (batched) product.
#[derive(Clone, Copy, Debug)]
pub struct MatmulDims {
    /// Number of products.
    pub batch: usize,
    /// Rows of op(A) and C.
    pub m: usize,
    /// Columns of op(B) and C.
    pub n: usize,
    /// Inner dimension.
    pub k: usize,
    /// A is stored [K, M].
    pub trans_a: bool,
    /// B is stored [N, K].
    pub trans_b: bool,
    /// A is shared by every batch (stride 0).
    pub broadcast_a: bool,
    /// B is shared by every batch (stride 0).
    pub broadcast_b: bool,
}

impl MatmulDims {
    /// A single [M, K]·[K, N] product.
    pub fn new(m: usize, n: usize, k: usize) -> Self {
        MatmulDims {
            batch: 1,
            m,
            n,
            k,
            trans_a: false,
            trans_b: false,
            broadcast_a: false,
            broadcast_b: false,
        }
    }
    /// With `batch` products.
    pub fn batched(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }
    /// With A stored transposed.
    pub fn ta(mut self) -> Self {
        self.trans_a = true;
        self
    }
    /// With B stored transposed.
    pub fn tb(mut self) -> Self {
        self.trans_b = true;
        self
    }
    /// With B shared by every batch.
    pub fn shared_b(mut self) -> Self {
        self.broadcast_b = true;
        self
    }
}

/// C (+)= alpha·op(A)·op(B) with an epilogue. `accumulate` adds into C before the epilogue.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    rec: &mut Recorder,
    c: &Tensor,
    a: &Tensor,
    b: &Tensor,
    d: MatmulDims,
    alpha: f32,
    accumulate: bool,
    epilogue: Epilogue,
) {
    let a_stride = if d.broadcast_a { 0 } else { d.m * d.k };
    let b_stride = if d.broadcast_b { 0 } else { d.k * d.n };
    let a_len = if d.broadcast_a {
        d.m * d.k
    } else {
        d.batch * d.m * d.k
    };
    let b_len = if d.broadcast_b {
        d.k * d.n
    } else {
        d.batch * d.k * d.n
    };
    assert_eq!(
        a.numel(),
        a_len,
        "matmul: A has {} elements, dims {d:?}",
        a.numel()
    );
    assert_eq!(
        b.numel(),
        b_len,
        "matmul: B has {} elements, dims {d:?}",
        b.numel()
    );
    assert_eq!(
        c.numel(),
        d.batch * d.m * d.n,
        "matmul: C has {} elements, dims {d:?}",
        c.numel()
    );
    let gpu = rec.gpu();
    let (bias, aux, mode) = match epilogue {
        Epilogue::None => (gpu.dummy_read.clone(), gpu.dummy_write.clone(), 0),
        Epilogue::Bias(bias) => (bias.clone(), gpu.dummy_write.clone(), 1),
        Epilogue::BiasGelu(bias, pre) => {
            assert_eq!(pre.numel(), c.numel(), "matmul: pre-activation size");
            (bias.clone(), pre.clone(), 2)
        }
    };
    if mode >= 1 {
        assert_eq!(bias.numel(), d.n, "matmul: bias must have N elements");
    }
    let tile = Tile::for_problem(d.m, d.n);
    let overrides = tile.overrides();
    let max_z = gpu.limits.max_compute_workgroups_per_dimension as usize;
    let mut offset = 0;
    while offset < d.batch {
        let nb = (d.batch - offset).min(max_z);
        let p = Params {
            m: d.m as u32,
            n: d.n as u32,
            k: d.k as u32,
            batch_offset: offset as u32,
            a_batch_stride: a_stride as u32,
            b_batch_stride: b_stride as u32,
            c_batch_stride: (d.m * d.n) as u32,
            trans_a: super::flag(d.trans_a),
            trans_b: super::flag(d.trans_b),
            epilogue: mode,
            accumulate: super::flag(accumulate),
            _pad0: 0,
            alpha,
            _pad1: [0; 3],
        };
        let grid = [
            d.n.div_ceil(tile.bn) as u32,
            d.m.div_ceil(tile.bm) as u32,
            nb as u32,
        ];
        rec.dispatch_with(&MATMUL, &overrides, &p, &[a, b, &bias, c, &aux], grid);
        offset += nb;
    }
}

/// C = op(A)·op(B), nothing fused.
pub fn matmul_forward(rec: &mut Recorder, c: &Tensor, a: &Tensor, b: &Tensor, d: MatmulDims) {
    matmul(rec, c, a, b, d, 1.0, false, Epilogue::None)
}

/// Gradients of C = A·B (no transposes in the forward): dA (+)= dC·Bᵀ, dB (+)= Aᵀ·dC.
/// A broadcast B (a shared weight) gets its gradient summed over the batch.
#[allow(clippy::too_many_arguments)]
pub fn matmul_backward(
    rec: &mut Recorder,
    da: Option<&Tensor>,
    db: Option<&Tensor>,
    dc: &Tensor,
    a: &Tensor,
    b: &Tensor,
    d: MatmulDims,
    accumulate: bool,
) {
    assert!(
        !d.trans_a && !d.trans_b && !d.broadcast_a,
        "matmul_backward: plain or shared-B products only"
    );
    if let Some(da) = da {
        // dA[z] = dC[z] [M,N] · B[z]ᵀ  (B stored [K,N] → transposed read)
        let dd = MatmulDims {
            batch: d.batch,
            m: d.m,
            n: d.k,
            k: d.n,
            trans_a: false,
            trans_b: true,
            broadcast_a: false,
            broadcast_b: d.broadcast_b,
        };
        matmul(rec, da, dc, b, dd, 1.0, accumulate, Epilogue::None);
    }
    if let Some(db) = db {
        if d.broadcast_b {
            // dB = Σ_z A[z]ᵀ·dC[z] = (A viewed [batch·M, K])ᵀ · (dC viewed [batch·M, N]).
            let dd = MatmulDims::new(d.k, d.n, d.batch * d.m).ta();
            matmul(rec, db, a, dc, dd, 1.0, accumulate, Epilogue::None);
        } else {
            let dd = MatmulDims::new(d.k, d.n, d.m).batched(d.batch).ta();
            matmul(rec, db, a, dc, dd, 1.0, accumulate, Epilogue::None);
        }
    }
}
