//! The shape a product is asked for, and its key in the tuning cache.

use crate::gpu::DType;

use super::plan::Plan;

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
    /// Output tiles of side `t` over every batch: the workgroups of an unsplit product.
    pub fn tiles(&self, t: usize) -> usize {
        self.m.div_ceil(t) * self.n.div_ceil(t) * self.batch
    }

    /// Element strides between the batches of A and B (0 for a shared operand).
    pub(super) fn batch_strides(&self) -> (usize, usize) {
        (
            if self.broadcast_a { 0 } else { self.m * self.k },
            if self.broadcast_b { 0 } else { self.k * self.n },
        )
    }

    /// Workgroups of the cooperative-matrix kernel over every batch, with matrices of `side` (its
    /// tiles are 8·side square, or 16·side × 8·side where `wide`).
    pub fn coop_tiles(&self, side: u32, wide: bool) -> usize {
        let side = side as usize;
        let rows = if wide { 16 * side } else { 8 * side };
        self.m.div_ceil(rows) * self.n.div_ceil(8 * side) * self.batch
    }

    /// Elements A and B hold (a shared operand holds one matrix).
    pub fn operand_lens(&self) -> (usize, usize) {
        let n = |shared: bool| if shared { 1 } else { self.batch };
        (
            n(self.broadcast_a) * self.m * self.k,
            n(self.broadcast_b) * self.k * self.n,
        )
    }

    /// The key of these dims in the tuning table: `m,n,k,batch,ta,tb,shared_a,shared_b`.
    pub fn key(&self) -> String {
        let f = |b: bool| u8::from(b);
        format!(
            "{},{},{},{},{},{},{},{}",
            self.m,
            self.n,
            self.k,
            self.batch,
            f(self.trans_a),
            f(self.trans_b),
            f(self.broadcast_a),
            f(self.broadcast_b)
        )
    }

    /// The tuning key of this product with `dtype` operands: [`MatmulDims::key`], then `:f16`
    /// for f16 operands, whose plans are timed apart (the cooperative-matrix kernel is one).
    pub fn key_for(&self, dtype: DType) -> String {
        match dtype {
            DType::F16 => format!("{}:f16", self.key()),
            DType::F32 => self.key(),
        }
    }

    /// Parses [`MatmulDims::key_for`].
    pub fn from_key_for(key: &str) -> Option<(MatmulDims, DType)> {
        match key.strip_suffix(":f16") {
            Some(k) => Some((MatmulDims::from_key(k)?, DType::F16)),
            None => Some((MatmulDims::from_key(key)?, DType::F32)),
        }
    }

    /// Parses [`MatmulDims::key`].
    pub fn from_key(key: &str) -> Option<MatmulDims> {
        let v: Vec<usize> = key
            .split(',')
            .map(|x| x.trim().parse().ok())
            .collect::<Option<_>>()?;
        let [m, n, k, batch, ta, tb, ba, bb] = v[..] else {
            return None;
        };
        Some(MatmulDims {
            batch,
            m,
            n,
            k,
            trans_a: ta != 0,
            trans_b: tb != 0,
            broadcast_a: ba != 0,
            broadcast_b: bb != 0,
        })
    }

    /// Whether both operands' contiguous dimensions (and so every row, batch and vec4) are
    /// multiples of 4: the vec4 kernels' condition.
    pub fn vec4_ok(&self) -> bool {
        let a_contig = if self.trans_a { self.m } else { self.k };
        let b_contig = if self.trans_b { self.k } else { self.n };
        a_contig.is_multiple_of(4) && b_contig.is_multiple_of(4) && self.k > 0
    }

    /// How far `other`, a tuned product, is from these dims, where its `plan` can stand in for
    /// a plan of their own: the same batch and layout, two of M, N and K equal and the third
    /// within a factor of 1.5 (as |ln| of that factor), and `plan` runs these dims; `None`
    /// otherwise. The iBOT head's products take their rows from the batch's masked patches, a
    /// count that changes from step to step, so a tuning cache never holds most steps' exact
    /// dims for them.
    pub fn stand_in_distance(&self, other: &MatmulDims, plan: &Plan) -> Option<f64> {
        let layout = |d: &MatmulDims| (d.batch, d.trans_a, d.trans_b, d.broadcast_a, d.broadcast_b);
        if layout(self) != layout(other) || !plan.fits(self) {
            return None;
        }
        let pairs = [(self.m, other.m), (self.n, other.n), (self.k, other.k)];
        let mut differ = pairs.iter().filter(|(a, b)| a != b);
        let distance = match (differ.next(), differ.next()) {
            (None, _) => 0.0,
            (Some(&(a, b)), None) => (a as f64 / b as f64).ln().abs(),
            _ => return None,
        };
        (distance <= 1.5f64.ln()).then_some(distance)
    }

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
