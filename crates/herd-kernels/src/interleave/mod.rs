//! Weights laid out for decoding: Q4_K rows in groups of 8, interleaved per super-block.
//!
//! A row dot (`simd`) reads its activation block again for every weight row, unpacks that
//! row's scales on its own and ends in a horizontal sum. In a group, one 32-byte load holds
//! 4 quant bytes of each of the 8 rows (one row per 32-bit lane): it multiplies 4 activation
//! bytes broadcast over the register, so one activation load serves 8 rows, the sums stay in
//! lanes to the end, and the group is one contiguous stream. llama.cpp repacks the same way
//! (`block_q4_Kx8`); this format also stores the 6-bit scales and mins unpacked, so no bit
//! twiddling is left in the loop, at 32 bytes per 1152 (2.8 %) more to read.
//!
//! One super-block of a group ([`BLOCK`] bytes; `r` a row of the group, `j < 4`, `k < 8`):
//! - `qs[32][32]` at [`QS`]: step `8j + k` holds, at `4r`, bytes `32j + 4k .. 32j + 4k + 4`
//!   of row `r`'s Q4_K `qs` (low nibbles: elements `64j + 4k ..`, high: `64j + 32 + 4k ..`);
//! - `sc[8][8]` at [`SC`]: sub-block `s`'s scale of row `r` at `8s + r`;
//! - `mn[4][8][2]` at [`MN`]: the mins of sub-blocks `2p`, `2p + 1` of row `r` at `16p + 2r`;
//! - `d[8]`, `dmin[8]` (f16) at [`D`], [`DMIN`].
//!
//! The layout is lossless ([`row_of`] gives back the ggml row), and prefill packs its tiles
//! from it directly (`gemm`), so a model holds its Q4_K matrices once, in this form.

use std::sync::OnceLock;

use crate::dequant::scale_min_k4;
use crate::matmul::{Prepared, SharedMut, WeightRef};
use crate::pool::ThreadPool;
use crate::simd::Isa;
use crate::types::{GgmlType, QK_K, f16_at, f32_at};

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

/// Rows per group.
pub const GROUP: usize = 8;
/// Bytes of one super-block of a group.
pub const BLOCK: usize = 1184;
pub(crate) const QS: usize = 0;
pub(crate) const SC: usize = 1024;
pub(crate) const MN: usize = 1088;
pub(crate) const D: usize = 1152;
pub(crate) const DMIN: usize = 1168;
/// Bytes of a ggml Q4_K block and of a Q8_K block.
const Q4K: usize = 144;
const Q8K: usize = 292;

/// How a weight matrix's bytes are arranged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Layout {
    /// ggml's: each row its blocks in order, rows one after another.
    #[default]
    Rows,
    /// Q4_K rows in groups of [`GROUP`], as this module describes.
    Q4kX8,
}

/// Whether a `rows × cols` matrix of `dtype` can take the grouped layout.
pub fn supports(dtype: GgmlType, rows: usize, cols: usize) -> bool {
    dtype == GgmlType::Q4_K
        && rows > 0
        && rows.is_multiple_of(GROUP)
        && cols > 0
        && cols.is_multiple_of(QK_K)
}

/// Whether matrices that can be grouped should be: yes where the kernels for it run fast
/// (AVX2), unless `HERD_INTERLEAVE=0` keeps ggml's rows (to compare the two).
pub fn wanted(isa: Isa) -> bool {
    static OFF: OnceLock<bool> = OnceLock::new();
    isa == Isa::Avx2 && !*OFF.get_or_init(|| std::env::var("HERD_INTERLEAVE").as_deref() == Ok("0"))
}

/// Bytes of a grouped `rows × cols` matrix.
pub fn len(rows: usize, cols: usize) -> usize {
    rows / GROUP * (cols / QK_K) * BLOCK
}

/// Rearranges the Q4_K matrix `src` (`rows × cols`, ggml rows) into `dst` (`len(rows, cols)`
/// bytes), a group at a time across `pool`.
///
/// # Panics
/// If the shape is not [`supports`]ed or a slice has the wrong length: the caller sizes both.
pub fn interleave_q4_k(pool: &ThreadPool, src: &[u8], rows: usize, cols: usize, dst: &mut [u8]) {
    assert!(
        supports(GgmlType::Q4_K, rows, cols),
        "interleave: shape {rows}×{cols}"
    );
    let nb = cols / QK_K;
    assert_eq!(src.len(), rows * nb * Q4K, "interleave: source length");
    assert_eq!(dst.len(), len(rows, cols), "interleave: destination length");
    let out = SharedMut(dst.as_mut_ptr());
    pool.run_dynamic(rows / GROUP, |g| {
        // SAFETY: group `g` owns bytes `g·nb·BLOCK ..` of `dst`, which outlives the call.
        let dst = unsafe { std::slice::from_raw_parts_mut(out.at(g * nb * BLOCK), nb * BLOCK) };
        for (b, o) in dst.chunks_exact_mut(BLOCK).enumerate() {
            for r in 0..GROUP {
                let at = ((g * GROUP + r) * nb + b) * Q4K;
                put_row_block(&src[at..at + Q4K], r, o);
            }
        }
    });
}

/// Writes row `r`'s Q4_K block `x` into the group block `o`.
fn put_row_block(x: &[u8], r: usize, o: &mut [u8]) {
    for (t, q) in x[16..].chunks_exact(4).enumerate() {
        // `t = 8j + k` walks qs in steps of 4 bytes, which is the step order.
        o[QS + 32 * t + 4 * r..QS + 32 * t + 4 * r + 4].copy_from_slice(q);
    }
    for s in 0..8 {
        let (sc, m) = scale_min_k4(s, &x[4..16]);
        o[SC + 8 * s + r] = sc;
        o[MN + 16 * (s / 2) + 2 * r + s % 2] = m;
    }
    o[D + 2 * r..D + 2 * r + 2].copy_from_slice(&x[0..2]);
    o[DMIN + 2 * r..DMIN + 2 * r + 2].copy_from_slice(&x[2..4]);
}

/// Row `r` of a grouped matrix `data` (`cols` wide) as ggml's Q4_K bytes, into `out`.
pub fn row_of(data: &[u8], cols: usize, r: usize, out: &mut [u8]) {
    let nb = cols / QK_K;
    let (g, lane) = (r / GROUP, r % GROUP);
    for (b, x) in out[..nb * Q4K].chunks_exact_mut(Q4K).enumerate() {
        let o = &data[(g * nb + b) * BLOCK..(g * nb + b + 1) * BLOCK];
        x[0..2].copy_from_slice(&o[D + 2 * lane..D + 2 * lane + 2]);
        x[2..4].copy_from_slice(&o[DMIN + 2 * lane..DMIN + 2 * lane + 2]);
        let sc = |s: usize| o[SC + 8 * s + lane];
        let mn = |s: usize| o[MN + 16 * (s / 2) + 2 * lane + s % 2];
        // The inverse of `scale_min_k4`: six bits each, the high two of sub-blocks 4..8 in the
        // top bits of the first eight bytes.
        for j in 0..4 {
            x[4 + j] = sc(j) | (sc(j + 4) >> 4) << 6;
            x[8 + j] = mn(j) | (mn(j + 4) >> 4) << 6;
            x[12 + j] = (sc(j + 4) & 0xF) | (mn(j + 4) & 0xF) << 4;
        }
        for t in 0..32 {
            x[16 + 4 * t..20 + 4 * t].copy_from_slice(&o[QS + 32 * t + 4 * lane..][..4]);
        }
    }
}

/// The scalar kernel: `out[r]` = row `r` of group `g` (`nb` super-blocks) · the Q8_K row `a`.
pub(crate) fn dot_group(g: &[u8], a: &[u8]) -> [f32; GROUP] {
    let mut out = [0f32; GROUP];
    for (o, y) in g.chunks_exact(BLOCK).zip(a.chunks_exact(Q8K)) {
        let da = f32_at(y, 0);
        let q8 = &y[4..260];
        let bsum = |s: usize| {
            let at = |i: usize| i16::from_le_bytes([y[260 + 2 * i], y[261 + 2 * i]]) as i32;
            at(2 * s) + at(2 * s + 1)
        };
        for (r, out) in out.iter_mut().enumerate() {
            let (mut isum, mut msum) = (0i32, 0i32);
            for s in 0..8 {
                let (j, high) = (s / 2, s % 2 == 1);
                let mut sub = 0i32;
                for k in 0..8 {
                    for e in 0..4 {
                        let byte = o[QS + 32 * (8 * j + k) + 4 * r + e];
                        let q = if high { byte >> 4 } else { byte & 0xF };
                        sub += q as i32 * q8[32 * s + 4 * k + e] as i8 as i32;
                    }
                }
                isum += o[SC + 8 * s + r] as i32 * sub;
                msum += o[MN + 16 * j + 2 * r + s % 2] as i32 * bsum(s);
            }
            let (d, dmin) = (f16_at(o, D + 2 * r), f16_at(o, DMIN + 2 * r));
            *out += da * (d * isum as f32) - da * (dmin * msum as f32);
        }
    }
    out
}

/// `y[n, rows] = x · wᵀ` for a grouped `w` and few tokens (decode): threads claim runs of
/// groups, and each group streams once per (up to) four tokens.
pub(crate) fn matmul(pool: &ThreadPool, w: WeightRef<'_>, x: &Prepared<'_>, y: &mut [f32]) {
    const TOKENS: usize = 4;
    let (n, rows) = (x.n, w.rows);
    let gb = w.cols / QK_K * BLOCK;
    let rb = x.row_bytes();
    let groups = rows / GROUP;
    let out = SharedMut(y.as_mut_ptr());
    let per = (groups / (8 * pool.n_threads())).clamp(2, 32);
    pool.run_dynamic(groups.div_ceil(per), |c| {
        for gi in c * per..groups.min((c + 1) * per) {
            let g = &w.data[gi * gb..(gi + 1) * gb];
            let mut t0 = 0;
            while t0 < n {
                let m = TOKENS.min(n - t0);
                let a = &x.bytes[t0 * rb..(t0 + m) * rb];
                let mut res = [[0f32; GROUP]; TOKENS];
                match x.isa {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: `Isa::Avx2` is only chosen on CPUs with AVX2, FMA and F16C; `g`
                    // is a whole group and `a` holds `m` Q8_K rows of `rb` bytes for it.
                    Isa::Avx2 => unsafe { x86::dot_group_any(g, a, rb, m, &mut res) },
                    _ => {
                        for (j, r) in res.iter_mut().take(m).enumerate() {
                            *r = dot_group(g, &a[j * rb..(j + 1) * rb]);
                        }
                    }
                }
                for (j, r) in res.iter().take(m).enumerate() {
                    let at = (t0 + j) * rows + gi * GROUP;
                    // SAFETY: group `gi` belongs to one claimed run, so one thread writes
                    // these outputs, and `at + GROUP <= n · rows = y.len()`.
                    unsafe { std::ptr::copy_nonoverlapping(r.as_ptr(), out.at(at), GROUP) };
                }
                t0 += m;
            }
        }
    });
}

#[cfg(test)]
mod tests;
