//! A tensor as stored in a model file: its element type, its shape and its bytes, usually a
//! window into a memory-mapped file.

use std::sync::Arc;

use herd_kernels::{GgmlType, WeightRef};
use memmap2::Mmap;

/// Where a tensor's bytes live.
#[derive(Clone)]
enum Storage {
    /// A range of a memory-mapped file: nothing is read until the bytes are touched.
    Mapped {
        map: Arc<Mmap>,
        start: usize,
        len: usize,
    },
    /// Bytes herd made (a split of a fused tensor, a converted copy).
    Owned(Arc<Vec<u8>>),
}

/// One stored tensor. `shape` is in PyTorch order, outermost first: a linear layer's weight
/// is `[out_features, in_features]` and each of its `out_features` rows is stored contiguously.
#[derive(Clone)]
pub struct StoredTensor {
    pub dtype: GgmlType,
    pub shape: Vec<usize>,
    storage: Storage,
}

impl std::fmt::Debug for StoredTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoredTensor({} {:?})", self.dtype, self.shape)
    }
}

impl StoredTensor {
    /// A window of `len` bytes at `start` in `map`; the caller has checked it lies inside.
    pub fn mapped(
        dtype: GgmlType,
        shape: Vec<usize>,
        map: Arc<Mmap>,
        start: usize,
        len: usize,
    ) -> Self {
        debug_assert!(start + len <= map.len());
        StoredTensor {
            dtype,
            shape,
            storage: Storage::Mapped { map, start, len },
        }
    }

    pub fn owned(dtype: GgmlType, shape: Vec<usize>, bytes: Vec<u8>) -> Self {
        StoredTensor {
            dtype,
            shape,
            storage: Storage::Owned(Arc::new(bytes)),
        }
    }

    pub fn bytes(&self) -> &[u8] {
        match &self.storage {
            Storage::Mapped { map, start, len } => &map[*start..*start + *len],
            Storage::Owned(v) => v,
        }
    }

    pub fn elem_count(&self) -> usize {
        self.shape.iter().product()
    }

    /// Elements in one stored row (the innermost dimension).
    pub fn row_len(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }

    pub fn rows(&self) -> usize {
        self.elem_count() / self.row_len().max(1)
    }

    /// The tensor as a matrix of `rows × row_len` for the kernels.
    pub fn as_weight(&self) -> WeightRef<'_> {
        WeightRef {
            dtype: self.dtype,
            rows: self.rows(),
            cols: self.row_len(),
            data: self.bytes(),
        }
    }

    /// All elements as f32 (dequantised), in storage order.
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.elem_count()];
        let cols = self.row_len();
        let rb = self.dtype.row_bytes(cols).unwrap_or(0);
        if cols > 0 && rb > 0 {
            for (src, dst) in self
                .bytes()
                .chunks_exact(rb)
                .zip(out.chunks_exact_mut(cols))
            {
                herd_kernels::dequantize_row(self.dtype, src, dst);
            }
        }
        out
    }

    /// Rows `start..start + count` (of the outermost dimension) as a new tensor.
    pub fn narrow_rows(&self, start: usize, count: usize) -> StoredTensor {
        let per_outer = self.elem_count() / self.shape[0].max(1);
        let bytes_per_outer = self.bytes().len() / self.shape[0].max(1);
        debug_assert_eq!(per_outer * self.shape[0], self.elem_count());
        let mut shape = self.shape.clone();
        shape[0] = count;
        let range = start * bytes_per_outer..(start + count) * bytes_per_outer;
        match &self.storage {
            Storage::Mapped { map, start: s, .. } => {
                StoredTensor::mapped(self.dtype, shape, map.clone(), s + range.start, range.len())
            }
            Storage::Owned(v) => StoredTensor::owned(self.dtype, shape, v[range].to_vec()),
        }
    }

    /// Whether the bytes are a window of a mapped file (for the memory figures `herd info` gives).
    pub fn is_mapped(&self) -> bool {
        matches!(self.storage, Storage::Mapped { .. })
    }
}
