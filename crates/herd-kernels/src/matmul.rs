//! Matrix products of activations with weight matrices in any ggml type, across a thread pool.

use crate::pool::{ThreadPool, chunk};
use crate::quantize::quantize_activations;
use crate::simd;
use crate::types::GgmlType;

/// A weight matrix as stored: `rows` output features, each a row of `cols` input features in
/// `dtype` (PyTorch's `[out, in]` layout, ggml's `ne = [in, out]`).
#[derive(Clone, Copy, Debug)]
pub struct WeightRef<'a> {
    pub dtype: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
}

impl<'a> WeightRef<'a> {
    pub fn row_bytes(&self) -> usize {
        self.dtype.row_bytes(self.cols).unwrap_or(0)
    }

    pub fn row(&self, r: usize) -> &'a [u8] {
        let rb = self.row_bytes();
        &self.data[r * rb..(r + 1) * rb]
    }
}

/// A raw pointer that worker threads may share; each writes a disjoint part.
#[derive(Clone, Copy)]
struct SharedMut<T>(*mut T);
unsafe impl<T> Send for SharedMut<T> {}
unsafe impl<T> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    /// The element `i` places on. A method (not `.0`) so that closures capture the whole
    /// wrapper, which is `Sync`, rather than the raw pointer field, which is not.
    fn at(self, i: usize) -> *mut T {
        self.0.wrapping_add(i)
    }
}

/// Activations in the form a weight type's dot product wants: f32 for float weights, quantised
/// rows (in `scratch`) for quantised ones.
pub struct Prepared<'a> {
    pub dtype: GgmlType,
    pub cols: usize,
    pub n: usize,
    f32s: &'a [f32],
    bytes: &'a [u8],
}

impl Prepared<'_> {
    fn dot(&self, t: GgmlType, w: &[u8], i: usize) -> f32 {
        if self.dtype == GgmlType::F32 {
            simd::dot_float(t, w, &self.f32s[i * self.cols..(i + 1) * self.cols])
        } else {
            let rb = self.dtype.row_bytes(self.cols).unwrap_or(0);
            simd::dot_quant(t, w, &self.bytes[i * rb..(i + 1) * rb])
        }
    }
}

/// Quantises the `n` rows of `x` (`[n, cols]`) for weights of type `wt`, in parallel, into
/// `scratch` (grown as needed, never shrunk, so steady-state decoding does not allocate).
pub fn prepare<'a>(
    pool: &ThreadPool,
    wt: GgmlType,
    x: &'a [f32],
    n: usize,
    cols: usize,
    scratch: &'a mut Vec<u8>,
) -> Prepared<'a> {
    debug_assert_eq!(x.len(), n * cols);
    let at = wt.vec_dot_type();
    if at == GgmlType::F32 {
        return Prepared {
            dtype: at,
            cols,
            n,
            f32s: x,
            bytes: &[],
        };
    }
    let rb = at
        .row_bytes(cols)
        .expect("weight columns are whole blocks (checked at load)");
    if scratch.len() < n * rb {
        scratch.resize(n * rb, 0);
    }
    let out = SharedMut(scratch.as_mut_ptr());
    pool.run(|ith, nth| {
        for i in chunk(n, ith, nth) {
            // SAFETY: rows `chunk(n, ith, nth)` are disjoint between threads and lie inside
            // `scratch`, which outlives `run`.
            let dst = unsafe { std::slice::from_raw_parts_mut(out.at(i * rb), rb) };
            quantize_activations(at, &x[i * cols..(i + 1) * cols], dst);
        }
    });
    Prepared {
        dtype: at,
        cols,
        n,
        f32s: &[],
        bytes: &scratch[..n * rb],
    }
}

/// `y[n, rows] = x[n, cols] · wᵀ`, with `x` already prepared for `w`'s type.
pub fn matmul_prepared(pool: &ThreadPool, w: WeightRef<'_>, x: &Prepared<'_>, y: &mut [f32]) {
    let n = x.n;
    debug_assert_eq!(x.cols, w.cols);
    debug_assert_eq!(y.len(), n * w.rows);
    let rows = w.rows;
    let out = SharedMut(y.as_mut_ptr());
    pool.run(|ith, nth| {
        for r in chunk(rows, ith, nth) {
            let wr = w.row(r);
            for i in 0..n {
                // SAFETY: thread `ith` alone writes column block `chunk(rows, ..)` of `y`.
                unsafe { *out.at(i * rows + r) = x.dot(w.dtype, wr, i) };
            }
        }
    });
}

/// `y[n, rows] = x[n, cols] · wᵀ` for a weight matrix of any type.
pub fn matmul(
    pool: &ThreadPool,
    w: WeightRef<'_>,
    x: &[f32],
    n: usize,
    y: &mut [f32],
    scratch: &mut Vec<u8>,
) {
    let p = prepare(pool, w.dtype, x, n, w.cols, scratch);
    matmul_prepared(pool, w, &p, y);
}
