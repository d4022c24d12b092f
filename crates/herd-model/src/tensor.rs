//! A tensor as stored in a model file: its element type, its shape and its bytes, usually a
//! window into a memory-mapped file.

use std::sync::Arc;

use herd_kernels::{GgmlType, Layout, SharedMut, ThreadPool, WeightRef, interleave};
use memmap2::Mmap;

/// Where a tensor's bytes live.
#[derive(Clone)]
enum Storage {
    /// A range of a memory map: of the model file (nothing is read until the bytes are
    /// touched), or an anonymous one holding the engine's copies ([`place_matrices`]).
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
    /// ggml's rows, or the grouped layout the engine gives the matrices its decode kernels
    /// stream fastest that way ([`place_matrices`]).
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

/// Huge page size the placed copies start on (x86-64, and aarch64 with 4 KiB pages).
const HUGE_PAGE: usize = 2 << 20;

/// Places the matrices decode streams, `tensors`, in one anonymous map built across `pool`:
/// those the CPU's kernels decode faster grouped (`herd_kernels::interleave`) in that layout,
/// the other 2-D ones that are mapped from the file as they are (ggml's rows). Where no map
/// can be had, all stay as they were.
///
/// The copies follow each other in the order given (the order decode reads them, so one
/// matrix's stream runs into the next), starting on a huge-page boundary, and the map asks to
/// be backed by huge pages: decode streams every matrix once per token, and with 4 KiB pages
/// each page costs a TLB miss and the hardware prefetcher stops at its edge (the kernels
/// benchmark, 1 thread, from memory: grouped Q4_0 26 -> 29 GB/s, F16 28 -> 31). One map for
/// all, as a map per matrix could only have the huge pages wholly inside each (two of three in
/// a 6.5 MB TinyLlama FFN matrix, none in a 2.4 MB attention one), and padding each to whole
/// huge pages would cost up to 2 MiB of memory per matrix. The file's pages under each copy are
/// handed back to the kernel once it is made, so the weights are resident once.
pub fn place_matrices(tensors: Vec<&mut StoredTensor>, pool: &ThreadPool) {
    let group = interleave::wanted(herd_kernels::simd::isa());
    // (tensor, grouped, offset in the map, bytes)
    let mut todo: Vec<(&mut StoredTensor, bool, usize, usize)> = Vec::new();
    let mut total = 0usize;
    for t in tensors {
        let (rows, cols) = (t.rows(), t.row_len());
        if t.layout != Layout::Rows || t.shape.len() != 2 {
            continue;
        }
        let grouped = group && interleave::supports(t.dtype, rows, cols);
        if !grouped && !t.is_mapped() {
            // Bytes herd made are on the heap already, and may be shared: a copy would
            // hold them twice.
            continue;
        }
        let len = if grouped {
            interleave::len(t.dtype, rows, cols)
        } else {
            t.bytes().len()
        };
        todo.push((t, grouped, total, len));
        // Page-aligned starts: the kernels' 32-byte loads never straddle cache lines.
        total += len.next_multiple_of(4096);
    }
    if todo.is_empty() {
        return;
    }
    // One huge page more than needed, to start the copies on a boundary inside it.
    let Ok(mut map) = memmap2::MmapMut::map_anon(total + HUGE_PAGE) else {
        return;
    };
    #[cfg(target_os = "linux")]
    let _ = map.advise(memmap2::Advice::HugePage);
    let base = (HUGE_PAGE - map.as_ptr() as usize % HUGE_PAGE) % HUGE_PAGE;
    for (t, grouped, at, len) in &todo {
        let dst = &mut map[base + at..base + at + len];
        if *grouped {
            interleave::interleave(pool, t.dtype, t.bytes(), t.rows(), t.row_len(), dst);
        } else {
            copy(pool, t.bytes(), dst);
        }
        // The file's pages under this copy go back now, not at the end, so the weights are
        // not resident twice at the peak.
        #[cfg(unix)]
        if let Storage::Mapped { map, start, len } = &t.storage {
            // SAFETY: the map is read-only and file-backed: dropping its pages only makes a
            // later read (of this tensor until it is switched to the copy below, or of a
            // neighbour sharing an edge page) fault them in again.
            let _ = unsafe {
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, *start, *len)
            };
        }
    }
    let Ok(map) = map.make_read_only() else {
        return;
    };
    let map = Arc::new(map);
    for (t, grouped, at, len) in todo.iter_mut() {
        if *grouped {
            t.layout = Layout::Grouped;
        }
        t.storage = Storage::Mapped {
            map: map.clone(),
            start: base + *at,
            len: *len,
        };
    }
}

/// `dst.copy_from_slice(src)` in 1 MiB pieces across `pool`: reading the file's pages and
/// faulting in (zeroing) the new ones is the cost, and it splits.
fn copy(pool: &ThreadPool, src: &[u8], dst: &mut [u8]) {
    const PIECE: usize = 1 << 20;
    let out = SharedMut(dst.as_mut_ptr());
    let n = src.len().min(dst.len());
    pool.run_dynamic(n.div_ceil(PIECE), |i| {
        let r = i * PIECE..n.min((i + 1) * PIECE);
        // SAFETY: piece `i` of `dst` is this call's alone and lies inside it.
        let d = unsafe { std::slice::from_raw_parts_mut(out.at(r.start), r.len()) };
        d.copy_from_slice(&src[r]);
    });
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A file holding `parts` back to back, mapped, and a tensor over each part.
    fn mapped_tensors(parts: &[(GgmlType, usize, usize, Vec<u8>)]) -> Vec<StoredTensor> {
        let mut f = tempfile::tempfile().unwrap();
        for p in parts {
            f.write_all(&p.3).unwrap();
        }
        // SAFETY: the temporary file is this test's alone and is not changed while mapped.
        let map = Arc::new(unsafe { Mmap::map(&f) }.unwrap());
        let mut at = 0;
        parts
            .iter()
            .map(|(t, rows, cols, bytes)| {
                let s = StoredTensor::mapped(*t, vec![*rows, *cols], map.clone(), at, bytes.len());
                at += bytes.len();
                s
            })
            .collect()
    }

    fn matrix(t: GgmlType, rows: usize, cols: usize, seed: usize) -> Vec<u8> {
        let rb = t.row_bytes(cols).unwrap();
        let mut out = vec![0u8; rows * rb];
        for (r, row) in out.chunks_exact_mut(rb).enumerate() {
            let x: Vec<f32> = (0..cols)
                .map(|i| (((i * 31 + r * 17 + seed * 7) % 97) as f32 - 48.0) / 16.0)
                .collect();
            assert!(herd_kernels::quantize_row(t, &x, row));
        }
        out
    }

    #[test]
    fn placed_matrices_keep_their_rows_and_start_on_a_huge_page() {
        let parts = [
            (GgmlType::Q4_0, 24, 96, matrix(GgmlType::Q4_0, 24, 96, 1)),
            // Over 1 MiB: copied in pieces.
            (
                GgmlType::F16,
                600,
                1024,
                matrix(GgmlType::F16, 600, 1024, 2),
            ),
            (GgmlType::Q8_0, 16, 64, matrix(GgmlType::Q8_0, 16, 64, 3)),
        ];
        let mut ts = mapped_tensors(&parts);
        let owned = StoredTensor::owned(GgmlType::F32, vec![2, 3], vec![7u8; 24]);
        let mut owned_after = owned.clone();
        let pool = ThreadPool::new(2);
        let mut all: Vec<&mut StoredTensor> = ts.iter_mut().collect();
        all.push(&mut owned_after);
        place_matrices(all, &pool);

        let group = interleave::wanted(herd_kernels::simd::isa());
        let grouped = ts.iter().filter(|t| t.layout == Layout::Grouped).count();
        assert_eq!(grouped, if group { 2 } else { 0 });
        let mut next = None;
        for (t, (dtype, rows, cols, bytes)) in ts.iter().zip(&parts) {
            let want = if group && *dtype != GgmlType::F16 {
                Layout::Grouped
            } else {
                Layout::Rows
            };
            assert_eq!(t.layout, want, "{dtype}");
            // One after the other in the given order, each on a page, the first on a huge page.
            let at = t.bytes().as_ptr() as usize;
            assert_eq!(
                at,
                *next.get_or_insert(at),
                "{dtype} follows the one before"
            );
            assert_eq!(at % 4096, 0, "{dtype} starts on a page");
            next = Some(at + t.bytes().len().next_multiple_of(4096));
            // Every row reads back as the file had it.
            let rb = dtype.row_bytes(*cols).unwrap();
            let mut buf = vec![0u8; rb];
            for r in 0..*rows {
                assert_eq!(
                    t.ggml_row(r, &mut buf),
                    &bytes[r * rb..(r + 1) * rb],
                    "{dtype} row {r}"
                );
            }
        }
        assert_eq!(
            ts[0].bytes().as_ptr() as usize % HUGE_PAGE,
            0,
            "the first on a huge page"
        );
        // Bytes herd made stay where they are.
        assert_eq!(owned_after.bytes().as_ptr(), owned.bytes().as_ptr());
    }
}
