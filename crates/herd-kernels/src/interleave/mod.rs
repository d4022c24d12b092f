//! Weights laid out for decoding: Q4_K, Q5_K, Q6_K, Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 rows in
//! groups of 8, interleaved per block.
//!
//! A row dot (`simd`) reads its activation block again for every weight row, unpacks that
//! row's scales on its own and ends in a horizontal sum. In a group, one 32-byte load holds
//! 4 quant bytes of each of the 8 rows (one row per 32-bit lane): it multiplies 4 activation
//! bytes broadcast over the register, so one activation load serves 8 rows, the sums stay in
//! lanes to the end, and the group is one contiguous stream. llama.cpp repacks the same way
//! (`block_q4_Kx8`, `block_q4_0x8`); here 4-byte steps put each row in its own lane with no
//! shuffles, and the Q4_K format stores its 6-bit scales and mins unpacked, so no bit
//! twiddling is left in the loop, at 32 bytes per 1152 (2.8 %) more to read (Q5_K likewise).
//! The formats are in [`q4_k`] (Q4_K, Q5_K), [`q6_k`], [`q32`] (Q4_0, Q4_1, Q5_0, Q5_1) and
//! [`q8_0`].
//!
//! The layout is lossless ([`row_of`] gives back the ggml row), and prefill packs its tiles
//! from it directly (`gemm`), so a model holds its grouped matrices once, in this form.

use std::sync::OnceLock;

use crate::matmul::{Prepared, SharedMut, WeightRef};
use crate::pool::ThreadPool;
use crate::simd::Isa;
use crate::types::{GgmlType, QK_K};

pub mod q32;
pub mod q4_k;
pub mod q6_k;
pub mod q8_0;
#[cfg(target_arch = "x86_64")]
mod vnni;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

/// Rows per group.
pub const GROUP: usize = 8;

/// How a weight matrix's bytes are arranged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Layout {
    /// ggml's: each row its blocks in order, rows one after another.
    #[default]
    Rows,
    /// Rows in groups of [`GROUP`], as this module describes for the matrix's type (Q4_K,
    /// Q5_K, Q6_K, Q4_0, Q4_1, Q5_0, Q5_1 or Q8_0).
    Grouped,
}

/// Whether a `rows × cols` matrix of `dtype` can take the grouped layout.
pub fn supports(dtype: GgmlType, rows: usize, cols: usize) -> bool {
    matches!(
        dtype,
        GgmlType::Q4_K
            | GgmlType::Q5_K
            | GgmlType::Q6_K
            | GgmlType::Q4_0
            | GgmlType::Q4_1
            | GgmlType::Q5_0
            | GgmlType::Q5_1
            | GgmlType::Q8_0
    ) && rows > 0
        && rows.is_multiple_of(GROUP)
        && cols > 0
        && cols.is_multiple_of(block_len(dtype))
}

/// Whether matrices that can be grouped should be: yes where the kernels for it run fast
/// (AVX2), unless `HERD_INTERLEAVE=0` keeps ggml's rows (to compare the two).
pub fn wanted(isa: Isa) -> bool {
    static OFF: OnceLock<bool> = OnceLock::new();
    isa == Isa::Avx2 && !*OFF.get_or_init(|| std::env::var("HERD_INTERLEAVE").as_deref() == Ok("0"))
}

/// Whether a groupable type is a k-quant (256-element blocks, Q8_K activations).
fn is_k_quant(dtype: GgmlType) -> bool {
    matches!(dtype, GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K)
}

/// Elements per block of a groupable type.
fn block_len(dtype: GgmlType) -> usize {
    if is_k_quant(dtype) { QK_K } else { 32 }
}

/// Bytes of one block of a group, and of one ggml block, for a groupable type.
fn block_bytes(dtype: GgmlType) -> (usize, usize) {
    match dtype {
        GgmlType::Q4_K => (q4_k::block(false), q4_k::ggml_block(false)),
        GgmlType::Q5_K => (q4_k::block(true), q4_k::ggml_block(true)),
        GgmlType::Q6_K => (q6_k::BLOCK, q6_k::Q6K),
        GgmlType::Q4_1 => (q32::block(false, true), q32::ggml_block(false, true)),
        GgmlType::Q5_0 => (q32::block(true, false), q32::ggml_block(true, false)),
        GgmlType::Q5_1 => (q32::block(true, true), q32::ggml_block(true, true)),
        GgmlType::Q8_0 => (q8_0::BLOCK, q8_0::Q80),
        _ => (q32::block(false, false), q32::ggml_block(false, false)),
    }
}

/// Bytes of a grouped `rows × cols` matrix of `dtype`.
pub fn len(dtype: GgmlType, rows: usize, cols: usize) -> usize {
    rows / GROUP * (cols / block_len(dtype)) * block_bytes(dtype).0
}

/// Rearranges the matrix `src` (`rows × cols` of `dtype`, ggml rows) into `dst`
/// (`len(dtype, rows, cols)` bytes), a group at a time across `pool`.
///
/// # Panics
/// If the shape is not [`supports`]ed or a slice has the wrong length: the caller sizes both.
pub fn interleave(
    pool: &ThreadPool,
    dtype: GgmlType,
    src: &[u8],
    rows: usize,
    cols: usize,
    dst: &mut [u8],
) {
    assert!(
        supports(dtype, rows, cols),
        "interleave: {dtype} {rows}×{cols}"
    );
    let nb = cols / block_len(dtype);
    let (gb, wb) = block_bytes(dtype);
    assert_eq!(src.len(), rows * nb * wb, "interleave: source length");
    assert_eq!(
        dst.len(),
        len(dtype, rows, cols),
        "interleave: destination length"
    );
    let put = match dtype {
        GgmlType::Q4_K => q4_k::put_row_block::<false>,
        GgmlType::Q5_K => q4_k::put_row_block::<true>,
        GgmlType::Q6_K => q6_k::put_row_block,
        GgmlType::Q4_1 => q32::put_row_block::<false, true>,
        GgmlType::Q5_0 => q32::put_row_block::<true, false>,
        GgmlType::Q5_1 => q32::put_row_block::<true, true>,
        GgmlType::Q8_0 => q8_0::put_row_block,
        _ => q32::put_row_block::<false, false>,
    };
    let out = SharedMut(dst.as_mut_ptr());
    pool.run_dynamic(rows / GROUP, |g| {
        // SAFETY: group `g` owns bytes `g·nb·gb ..` of `dst`, which outlives the call.
        let dst = unsafe { std::slice::from_raw_parts_mut(out.at(g * nb * gb), nb * gb) };
        for (b, o) in dst.chunks_exact_mut(gb).enumerate() {
            for r in 0..GROUP {
                let at = ((g * GROUP + r) * nb + b) * wb;
                put(&src[at..at + wb], r, o);
            }
        }
    });
}

/// Row `r` of a grouped matrix `data` (`cols` wide, of `dtype`) as ggml's bytes, into `out`
/// (one row's bytes).
pub fn row_of(dtype: GgmlType, data: &[u8], cols: usize, r: usize, out: &mut [u8]) {
    match dtype {
        GgmlType::Q4_K => q4_k::row_of::<false>(data, cols, r, out),
        GgmlType::Q5_K => q4_k::row_of::<true>(data, cols, r, out),
        GgmlType::Q6_K => q6_k::row_of(data, cols, r, out),
        GgmlType::Q4_1 => q32::row_of::<false, true>(data, cols, r, out),
        GgmlType::Q5_0 => q32::row_of::<true, false>(data, cols, r, out),
        GgmlType::Q5_1 => q32::row_of::<true, true>(data, cols, r, out),
        GgmlType::Q8_0 => q8_0::row_of(data, cols, r, out),
        _ => q32::row_of::<false, false>(data, cols, r, out),
    }
}

/// `y[n, rows] = x · wᵀ` for a grouped `w` and few tokens (decode): threads claim runs of
/// groups, and each group streams once per (up to) four tokens.
pub(crate) fn matmul(pool: &ThreadPool, w: WeightRef<'_>, x: &Prepared<'_>, y: &mut [f32]) {
    let (n, rows) = (x.n, w.rows);
    // The k-quants take Q8_K activations, the 32-element types Q8_0 (Q8_1 for those with a
    // min) with extras.
    let kq = is_k_quant(w.dtype);
    let nb = w.cols / block_len(w.dtype);
    let gb = nb * block_bytes(w.dtype).0;
    let (rb, zb) = (x.row_bytes(), x.aux_row_bytes());
    // The 32-element kernels take each activation block's scale (and quant sum) from
    // the extras: `prepare` makes them for grouped weights.
    let with_sums = x.isa == Isa::Avx2 && !kq;
    assert!(
        !with_sums || (x.aux_kind == crate::gemm::AuxKind::Blocks && zb == nb * 8),
        "grouped {} activations prepared without block sums",
        w.dtype
    );
    let groups = rows / GROUP;
    // The AVX2 kernels read through pointers: the lengths they rely on are checked here, once.
    assert!(
        w.data.len() >= groups * gb
            && x.bytes.len() >= n * rb
            && (kq || x.aux.len() >= n * zb)
            && y.len() >= n * rows,
        "grouped {} product: buffers shorter than the shape",
        w.dtype
    );
    let out = SharedMut(y.as_mut_ptr());
    let per = (groups / (8 * pool.n_threads())).clamp(2, 32);
    let claims = groups.div_ceil(per);
    match x.isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            let vnni = crate::simd::x86::vnni();
            let run = x86::Run {
                w: w.data,
                gb,
                a: x.bytes,
                arb: rb,
                z: if kq { &[] } else { x.aux },
                zb: if kq { 0 } else { zb },
                n,
                y: out,
                rows,
            };
            let run = &run;
            pool.run_dynamic(claims, |c| {
                // SAFETY: `Isa::Avx2` is only chosen on CPUs with AVX2, FMA and F16C, and
                // `vnni()` only on CPUs with AVX-512 F, VL and VNNI; the run's slices hold
                // the whole matrix and `n` activation rows (Q8_K for the k-quants; Q8_0/Q8_1
                // for the others, with extras of `zb` bytes), and `y` `n · rows` floats, as
                // asserted above; run `c` is claimed once, so one thread writes its groups'
                // rows of `y`.
                unsafe { x86::dot_run(w.dtype, vnni, c * per..groups.min((c + 1) * per), run) }
            });
        }
        _ => pool.run_dynamic(claims, |c| {
            for gi in c * per..groups.min((c + 1) * per) {
                let g = &w.data[gi * gb..(gi + 1) * gb];
                for t in 0..n {
                    let a = &x.bytes[t * rb..(t + 1) * rb];
                    let r = match w.dtype {
                        GgmlType::Q4_K => q4_k::dot_group::<false>(g, a),
                        GgmlType::Q5_K => q4_k::dot_group::<true>(g, a),
                        GgmlType::Q6_K => q6_k::dot_group(g, a),
                        GgmlType::Q4_1 => q32::dot_group::<false, true>(g, a),
                        GgmlType::Q5_0 => q32::dot_group::<true, false>(g, a),
                        GgmlType::Q5_1 => q32::dot_group::<true, true>(g, a),
                        GgmlType::Q8_0 => q8_0::dot_group(g, a),
                        _ => q32::dot_group::<false, false>(g, a),
                    };
                    let at = t * rows + gi * GROUP;
                    // SAFETY: group `gi` belongs to one claimed run, so one thread writes
                    // these outputs, and `at + GROUP <= n · rows = y.len()`.
                    unsafe { std::ptr::copy_nonoverlapping(r.as_ptr(), out.at(at), GROUP) };
                }
            }
        }),
    }
}

#[cfg(test)]
mod tests;
