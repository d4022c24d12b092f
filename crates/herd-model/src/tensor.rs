//! A tensor as stored in a model file: its element type, its shape and its bytes, usually a
//! window into a memory-mapped file.

use std::sync::Arc;

use herd_kernels::{GgmlType, Layout, ThreadPool, WeightRef, interleave};
use memmap2::Mmap;

/// Where a tensor's bytes live.
#[derive(Clone)]
enum Storage {
    /// A range of a memory map: of the model file (nothing is read until the bytes are
    /// touched), or an anonymous one holding a grouped copy ([`StoredTensor::grouped`]).
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
    /// ggml's rows, or the grouped layout the engine gives Q4_K matrices ([`Self::grouped`]).
    pub layout: Layout,
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
            layout: Layout::Rows,
            storage: Storage::Mapped { map, start, len },
        }
    }

    pub fn owned(dtype: GgmlType, shape: Vec<usize>, bytes: Vec<u8>) -> Self {
        StoredTensor {
            dtype,
            shape,
            layout: Layout::Rows,
            storage: Storage::Owned(Arc::new(bytes)),
        }
    }

    /// This Q4_K or Q4_0 matrix in the grouped layout the decode kernels stream fastest
    /// (`herd_kernels::interleave`), built across `pool`; `None` where the shape does not
    /// allow it, the CPU's kernels do not gain from it, or it is grouped already. The
    /// copy takes the place of the mapped bytes: their pages are handed back to the kernel,
    /// so the matrix is resident once.
    pub fn grouped(&self, pool: &ThreadPool) -> Option<StoredTensor> {
        let (rows, cols) = (self.rows(), self.row_len());
        if self.layout != Layout::Rows
            || self.shape.len() != 2
            || !interleave::supports(self.dtype, rows, cols)
            || !interleave::wanted(herd_kernels::simd::isa())
        {
            return None;
        }
        let len = interleave::len(self.dtype, rows, cols);
        // Anonymous pages (page-aligned, so the kernel's 32-byte loads never straddle cache
        // lines), asked to be huge where the kernel allows it: decode streams the whole
        // matrix every token, and with 4 KiB pages every page costs a TLB miss.
        let mut map = memmap2::MmapMut::map_anon(len).ok()?;
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::HugePage);
        interleave::interleave(pool, self.dtype, self.bytes(), rows, cols, &mut map[..]);
        let map = map.make_read_only().ok()?;
        #[cfg(unix)]
        if let Storage::Mapped { map, start, len } = &self.storage {
            // SAFETY: the map is read-only and file-backed: dropping its pages only makes a
            // later read (of a neighbour sharing an edge page) fault them in again.
            let _ = unsafe {
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, *start, *len)
            };
        }
        Some(StoredTensor {
            dtype: self.dtype,
            shape: self.shape.clone(),
            layout: Layout::Grouped,
            storage: Storage::Mapped {
                map: Arc::new(map),
                start: 0,
                len,
            },
        })
    }

    pub fn bytes(&self) -> &[u8] {
        match &self.storage {
            Storage::Mapped { map, start, len } => &map[*start..*start + *len],
            Storage::Owned(v) => v,
        }
    }

    /// Row `r` of a matrix in ggml's bytes: borrowed where the layout is ggml's, else
    /// rebuilt in `buf` (one row's bytes).
    fn ggml_row<'a>(&'a self, r: usize, buf: &'a mut [u8]) -> &'a [u8] {
        match self.layout {
            Layout::Rows => {
                let rb = buf.len();
                &self.bytes()[r * rb..(r + 1) * rb]
            }
            Layout::Grouped => {
                interleave::row_of(self.dtype, self.bytes(), self.row_len(), r, buf);
                buf
            }
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
            layout: self.layout,
            ..WeightRef::rows(self.dtype, self.rows(), self.row_len(), self.bytes())
        }
    }

    /// All elements as f32 (dequantised), in storage order.
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.elem_count()];
        let cols = self.row_len();
        let rb = self.dtype.row_bytes(cols).unwrap_or(0);
        if cols > 0 && rb > 0 {
            let mut buf = vec![0u8; rb];
            for (r, dst) in out.chunks_exact_mut(cols).enumerate() {
                herd_kernels::dequantize_row(self.dtype, self.ggml_row(r, &mut buf), dst);
            }
        }
        out
    }

    /// Rows `start..start + count` (of the outermost dimension) as a new tensor.
    pub fn narrow_rows(&self, start: usize, count: usize) -> StoredTensor {
        if self.layout != Layout::Rows {
            // A grouped matrix is 2-D: its rows come back to ggml's layout.
            let rb = self.dtype.row_bytes(self.row_len()).unwrap_or(0);
            let mut bytes = vec![0u8; count * rb];
            for (i, row) in bytes.chunks_exact_mut(rb.max(1)).enumerate() {
                interleave::row_of(self.dtype, self.bytes(), self.row_len(), start + i, row);
            }
            return StoredTensor::owned(self.dtype, vec![count, self.row_len()], bytes);
        }
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
