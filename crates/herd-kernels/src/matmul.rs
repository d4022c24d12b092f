//! Matrix products of activations with weight matrices in any ggml type, across a thread pool.
//!
//! Two regimes:
//! - decode (`n` small): memory-bound. Threads claim runs of weight rows and each row is read
//!   once, then dotted with every token by the row kernel of [`crate::simd`].
//! - prefill (`n` large): compute-bound. The tiled kernels (the private `gemm` module) multiply
//!   tiles of several rows by several tokens, so each weight block is decoded once per tile,
//!   not once per token.

use crate::gemm;
use crate::interleave::{self, Layout};
use crate::pool::ThreadPool;
use crate::simd::{self, Isa};
use crate::types::GgmlType;

/// A weight matrix as stored: `rows` output features, each a row of `cols` input features in
/// `dtype` (PyTorch's `[out, in]` layout, ggml's `ne = [in, out]`), arranged as `layout`
/// says.
#[derive(Clone, Copy, Debug)]
pub struct WeightRef<'a> {
    pub dtype: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
    pub layout: Layout,
}

impl<'a> WeightRef<'a> {
    /// A matrix in ggml's row layout.
    pub fn rows(dtype: GgmlType, rows: usize, cols: usize, data: &'a [u8]) -> Self {
        WeightRef {
            dtype,
            rows,
            cols,
            data,
            layout: Layout::Rows,
        }
    }

    pub fn row_bytes(&self) -> usize {
        self.dtype.row_bytes(self.cols).unwrap_or(0)
    }

    /// Row `r` in ggml's layout (only that layout has rows as contiguous bytes).
    pub fn row(&self, r: usize) -> &'a [u8] {
        debug_assert_eq!(self.layout, Layout::Rows);
        let rb = self.row_bytes();
        &self.data[r * rb..(r + 1) * rb]
    }

    /// Bytes the shape and layout take.
    pub fn data_len(&self) -> usize {
        match self.layout {
            Layout::Rows => self.rows * self.row_bytes(),
            Layout::Grouped => interleave::len(self.dtype, self.rows, self.cols),
        }
    }
}

/// A raw pointer that worker threads may share; each writes a disjoint part.
pub struct SharedMut<T>(pub *mut T);
// By hand: a derive would ask `T: Copy`, and the pointer copies whatever it points at.
impl<T> Clone for SharedMut<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SharedMut<T> {}
// SAFETY: users write disjoint elements from different threads and join before reading.
unsafe impl<T> Send for SharedMut<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    /// The element `i` places on. A method (not `.0`) so that closures capture the whole
    /// wrapper, which is `Sync`, rather than the raw pointer field, which is not.
    pub fn at(self, i: usize) -> *mut T {
        self.0.wrapping_add(i)
    }
}

/// Activations in the form a weight type's kernels want.
///
/// - F32 weights: the f32 rows as given.
/// - F16/BF16 weights: the rows converted to that type (ggml's scheme), except for the SIMD
///   tiled kernels, which get f32 rows holding exactly those rounded values, so that they
///   multiply the same numbers without converting activations in their inner loops.
/// - quantised weights: rows quantised to the weight's `vec_dot_type`, plus, when the tiled
///   kernels will run, per-block extras for them (`aux`, see the `gemm` module).
pub struct Prepared<'a> {
    pub dtype: GgmlType,
    pub cols: usize,
    pub n: usize,
    pub(crate) isa: Isa,
    pub(crate) f32s: &'a [f32],
    pub(crate) bytes: &'a [u8],
    pub(crate) aux: &'a [u8],
    pub(crate) aux_kind: gemm::AuxKind,
}

impl Prepared<'_> {
    /// Bytes of one quantised activation row.
    pub(crate) fn row_bytes(&self) -> usize {
        self.dtype.row_bytes(self.cols).unwrap_or(0)
    }

    /// Bytes of one row of `aux`.
    pub(crate) fn aux_row_bytes(&self) -> usize {
        self.aux.len() / self.n.max(1)
    }
}

/// Quantises the `n` rows of `x` (`[n, cols]`) for weights of type `wt` laid out as `layout`,
/// in parallel, into `scratch` (grown as needed, never shrunk, so steady-state decoding does
/// not allocate).
pub fn prepare<'a>(
    pool: &ThreadPool,
    wt: GgmlType,
    layout: Layout,
    x: &'a [f32],
    n: usize,
    cols: usize,
    scratch: &'a mut Vec<u8>,
) -> Prepared<'a> {
    prepare_with(simd::isa(), pool, wt, layout, x, n, cols, scratch)
}

/// [`prepare`] for the kernels of level `isa` (tests and benchmarks compare levels).
#[allow(clippy::too_many_arguments)]
pub fn prepare_with<'a>(
    isa: Isa,
    pool: &ThreadPool,
    wt: GgmlType,
    layout: Layout,
    x: &'a [f32],
    n: usize,
    cols: usize,
    scratch: &'a mut Vec<u8>,
) -> Prepared<'a> {
    debug_assert_eq!(x.len(), n * cols);
    // Everything downstream trusts `Prepared::isa` to run on this CPU.
    isa.require();
    let at = wt.vec_dot_type();
    let unprepared = Prepared {
        dtype: at,
        cols,
        n,
        isa,
        f32s: &[],
        bytes: &[],
        aux: &[],
        aux_kind: gemm::AuxKind::None,
    };
    if at == GgmlType::F32 {
        return Prepared {
            f32s: x,
            ..unprepared
        };
    }
    // The tiled kernels want f32 activations. The row kernels (decode) take them in the
    // weight's own half type instead: at the same values and summation order the dots are
    // bit-identical, and the activation row the dot re-reads per weight row is half the size.
    // That matters when the weights stream through L1 past it: on an AVX-512 EPYC, TinyLlama
    // F16 rows (4 KiB weights against 8-22 KiB of f32 activations) read at 21-25 GB/s with
    // f32 activations and 28-30 GB/s with f16 ones (bench/RESULTS.md, 2026-12-05 (2)).
    if isa != Isa::Scalar && matches!(at, GgmlType::F16 | GgmlType::BF16) && gemm::tiled(isa, wt, n)
    {
        // f32 rows of half-rounded values; 64 bytes of slack to align them.
        let need = n * cols * 4 + 64;
        if scratch.len() < need {
            scratch.resize(need, 0);
        }
        let off = scratch.as_ptr().align_offset(64);
        let out = SharedMut(scratch[off..].as_mut_ptr().cast::<f32>());
        pool.run_dynamic(n, |i| {
            // SAFETY: each row `i` is claimed once and lies inside `scratch` (aligned for f32
            // by `off`), which outlives `run_dynamic`.
            let dst = unsafe { std::slice::from_raw_parts_mut(out.at(i * cols), cols) };
            gemm::round_to_half(isa, at, &x[i * cols..(i + 1) * cols], dst);
        });
        // SAFETY: `n * cols` f32 were written from the aligned offset; the slice borrows
        // `scratch` for `'a`.
        let f32s =
            unsafe { std::slice::from_raw_parts(scratch[off..].as_ptr().cast::<f32>(), n * cols) };
        return Prepared { f32s, ..unprepared };
    }
    let rb = at
        .row_bytes(cols)
        .expect("weight columns are whole blocks (checked at load)");
    let aux_kind = gemm::aux_kind(isa, wt, layout, n);
    let aux_rb = gemm::aux_row_bytes(aux_kind, cols);
    let need = n * (rb + aux_rb);
    if scratch.len() < need {
        scratch.resize(need, 0);
    }
    let out = SharedMut(scratch.as_mut_ptr());
    pool.run_dynamic(n, |i| {
        // SAFETY: each row `i` (of both parts) is claimed once and lies inside `scratch`,
        // which outlives `run_dynamic`.
        let (dst, aux) = unsafe {
            (
                std::slice::from_raw_parts_mut(out.at(i * rb), rb),
                std::slice::from_raw_parts_mut(out.at(n * rb + i * aux_rb), aux_rb),
            )
        };
        let src = &x[i * cols..(i + 1) * cols];
        if aux_kind != gemm::AuxKind::None {
            gemm::quantize_with_aux(isa, wt, aux_kind, src, dst, aux);
        } else {
            simd::quantize_activations(isa, at, src, dst);
        }
    });
    let (bytes, aux) = scratch[..need].split_at(n * rb);
    Prepared {
        bytes,
        aux,
        aux_kind,
        ..unprepared
    }
}

/// `y[n, rows] = x[n, cols] · wᵀ`, with `x` already prepared for `w`'s type.
pub fn matmul_prepared(pool: &ThreadPool, w: WeightRef<'_>, x: &Prepared<'_>, y: &mut [f32]) {
    let n = x.n;
    assert_eq!(
        x.cols, w.cols,
        "matmul: activation and weight widths differ"
    );
    assert_eq!(y.len(), n * w.rows, "matmul: output size");
    // The tiled kernels read rows through raw pointers: this is what keeps them in bounds.
    assert!(
        w.data.len() >= w.data_len(),
        "matmul: weight data shorter than its shape"
    );
    if w.layout == Layout::Grouped {
        assert!(
            interleave::supports(w.dtype, w.rows, w.cols),
            "matmul: {} {}×{} cannot be grouped",
            w.dtype,
            w.rows,
            w.cols
        );
    }
    if gemm::run(pool, w, x, y) {
        return;
    }
    if w.layout == Layout::Grouped {
        interleave::matmul(pool, w, x, y);
        return;
    }
    let rows = w.rows;
    let out = SharedMut(y.as_mut_ptr());
    let float = x.dtype == GgmlType::F32 || !x.f32s.is_empty();
    let (fdot, qdot) = if float {
        (Some(simd::float_dot(x.isa, w.dtype)), None)
    } else {
        (None, Some(simd::quant_dot(x.isa, w.dtype)))
    };
    let adot = match x.aux_kind {
        gemm::AuxKind::None => None,
        gemm::AuxKind::Blocks => simd::quant_dot_aux(x.isa, w.dtype),
        gemm::AuxKind::Pairs => simd::quant_dot_pairs(x.isa, w.dtype),
    };
    let (rb, zb) = (x.row_bytes(), x.aux_row_bytes());
    // Contiguous runs of rows, claimed by whichever thread is free; several per thread so a
    // thread slowed by other work on its core hands the rest over.
    let per = (rows / (8 * pool.n_threads())).clamp(16, 256);
    pool.run_dynamic(rows.div_ceil(per), |c| {
        for r in c * per..rows.min((c + 1) * per) {
            let wr = w.row(r);
            for i in 0..n {
                let v = match (fdot, qdot, adot) {
                    (Some(f), _, _) => f(wr, &x.f32s[i * x.cols..(i + 1) * x.cols]),
                    (_, _, Some(a)) => a(
                        wr,
                        &x.bytes[i * rb..(i + 1) * rb],
                        &x.aux[i * zb..(i + 1) * zb],
                    ),
                    (_, Some(q), _) => q(wr, &x.bytes[i * rb..(i + 1) * rb]),
                    _ => unreachable!(),
                };
                // SAFETY: row `r` belongs to one claimed run, so one thread writes its column.
                unsafe { *out.at(i * rows + r) = v };
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
    matmul_with(simd::isa(), pool, w, x, n, y, scratch);
}

/// [`matmul`] with the kernels of level `isa` (`Isa::Scalar` is the reference).
pub fn matmul_with(
    isa: Isa,
    pool: &ThreadPool,
    w: WeightRef<'_>,
    x: &[f32],
    n: usize,
    y: &mut [f32],
    scratch: &mut Vec<u8>,
) {
    let p = prepare_with(isa, pool, w.dtype, w.layout, x, n, w.cols, scratch);
    matmul_prepared(pool, w, &p, y);
}

#[cfg(test)]
mod tests;
