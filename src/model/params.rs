//! Parameters in one flat GPU buffer with named views: one AdamW and one EMA dispatch update
//! the whole model, and gradients share the same layout.

use crate::gpu::{DType, Gpu, Tensor};
use std::collections::{BTreeMap, HashMap};

/// One named parameter inside the flat buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamEntry {
    /// Name (torch-hub style).
    pub name: String,
    /// First element (a multiple of [`Tensor::VIEW_ALIGN`]).
    pub offset: usize,
    /// Shape.
    pub shape: Vec<usize>,
}

impl ParamEntry {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Where every parameter lives in a flat buffer of `total` elements.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamLayout {
    /// Entries in order.
    pub entries: Vec<ParamEntry>,
    /// Flat length including alignment padding.
    pub total: usize,
    index: HashMap<String, usize>,
}

impl ParamLayout {
    /// Lays out `specs` in order, each start aligned for binding as a view.
    pub fn new(specs: &[(String, Vec<usize>)]) -> ParamLayout {
        Self::aligned(specs, DType::F32)
    }

    /// [`ParamLayout::new`] for a buffer of `dtype` elements (views start on 256 bytes).
    pub fn aligned(specs: &[(String, Vec<usize>)], dtype: DType) -> ParamLayout {
        let align = Tensor::VIEW_ALIGN_BYTES / dtype.bytes();
        let mut entries = Vec::with_capacity(specs.len());
        let mut offset = 0;
        for (name, shape) in specs {
            let n: usize = shape.iter().product();
            entries.push(ParamEntry {
                name: name.clone(),
                offset,
                shape: shape.clone(),
            });
            offset += n.div_ceil(align).max(1) * align;
        }
        let index = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        ParamLayout {
            entries,
            total: offset,
            index,
        }
    }

    /// The entry of `name`.
    pub fn get(&self, name: &str) -> Option<&ParamEntry> {
        self.index.get(name).map(|&i| &self.entries[i])
    }

    /// Parameters without padding.
    pub fn num_params(&self) -> usize {
        self.entries.iter().map(|e| e.numel()).sum()
    }

    /// A host flat vector from named host values (missing names stay zero).
    pub fn pack(&self, values: &BTreeMap<String, Vec<f32>>) -> Vec<f32> {
        let mut flat = vec![0.0f32; self.total];
        for e in &self.entries {
            if let Some(v) = values.get(&e.name) {
                let n = e.numel().min(v.len());
                flat[e.offset..e.offset + n].copy_from_slice(&v[..n]);
            }
        }
        flat
    }

    /// Named host values from a flat vector.
    pub fn unpack(&self, flat: &[f32]) -> BTreeMap<String, Vec<f32>> {
        self.entries
            .iter()
            .map(|e| {
                (
                    e.name.clone(),
                    flat[e.offset..e.offset + e.numel()].to_vec(),
                )
            })
            .collect()
    }
}

/// A flat GPU buffer laid out by a [`ParamLayout`].
#[derive(Clone)]
pub struct ParamStore {
    /// The layout.
    pub layout: ParamLayout,
    /// All values, `[total]`.
    pub flat: Tensor,
}

impl ParamStore {
    /// Uploads a host flat vector.
    pub fn upload(gpu: &Gpu, layout: ParamLayout, flat: &[f32]) -> ParamStore {
        assert_eq!(flat.len(), layout.total, "ParamStore: flat length");
        Self::upload_as(gpu, layout, flat, DType::F32)
    }

    /// Uploads a host flat vector stored as `dtype`.
    pub fn upload_as(gpu: &Gpu, layout: ParamLayout, flat: &[f32], dtype: DType) -> ParamStore {
        assert_eq!(flat.len(), layout.total, "ParamStore: flat length");
        let flat = gpu.upload_as(flat, &[layout.total], dtype);
        ParamStore { layout, flat }
    }

    /// The view of one parameter; panics on an unknown name (names come from the layout).
    pub fn get(&self, name: &str) -> Tensor {
        let e = self
            .layout
            .get(name)
            .unwrap_or_else(|| panic!("no parameter '{name}'"));
        self.flat.view(e.offset, &e.shape)
    }

    /// The view of one parameter, if it exists.
    pub fn try_get(&self, name: &str) -> Option<Tensor> {
        self.layout
            .get(name)
            .map(|e| self.flat.view(e.offset, &e.shape))
    }
}
