//! Tiled matrix products for many tokens (prefill).
//!
//! A dot product per (row, token) decodes every weight block once per token. Here the inner
//! kernels take several rows × several tokens at once, so each decoded weight value is used
//! for several tokens while it sits in a register:
//! - float weights (F32/F16/BF16): 4 rows × 3 tokens of dot products, eight lanes along the
//!   row, straight from the weight bytes;
//! - quantised weights: the rows of a block of the matrix are first repacked ("panels" of 8
//!   rows, 4 consecutive quants of each row side by side), then each 32-byte load of a panel
//!   multiplies with 4 bytes of a token broadcast over the register, one lane per row. The
//!   integer sums stay per row in lanes, so no horizontal sums or per-pair scale products are
//!   needed, and the repacking is paid once per matrix, not per token.
//!
//! Work split: each thread takes a contiguous range of panels (weight rows), so every weight
//! byte is read by one thread; within it, rows are taken a cache-sized block at a time and the
//! block is swept by all tokens.

use crate::matmul::{Prepared, WeightRef};
use crate::pool::ThreadPool;
use crate::simd::{self, Isa};
use crate::types::GgmlType;

#[cfg(target_arch = "x86_64")]
mod x86;

/// Smallest token count for which the tiled kernels beat one row dot per token (measured on
/// Zen 3: packing a k-quant panel costs more than a 32-element block's, so it pays later).
fn min_tokens(wt: GgmlType) -> usize {
    match wt {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 2,
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0 => 4,
        _ => 8,
    }
}

/// Whether `matmul` runs the tiled kernels for weights of type `wt` and `n` tokens.
pub(crate) fn tiled(isa: Isa, wt: GgmlType, n: usize) -> bool {
    isa == Isa::Avx2 && n >= min_tokens(wt) && cfg!(target_arch = "x86_64")
}

/// Bytes of per-block extras `prepare` must store per activation row for the SIMD kernels
/// (tiled and row): for Q8_0 / Q8_1 activations, each block's scale as f32 and its quant sum
/// (i32, Q8_0) or stored `d·Σq` (f32, Q8_1), 8 bytes per block. Zero where none are used.
pub(crate) fn aux_row_bytes(isa: Isa, wt: GgmlType, cols: usize) -> usize {
    match wt.vec_dot_type() {
        GgmlType::Q8_0 | GgmlType::Q8_1 if isa == Isa::Avx2 => cols / 32 * 8,
        _ => 0,
    }
}

/// Quantises an activation row to `at` (Q8_0 or Q8_1) and writes its `aux` entries.
pub(crate) fn quantize_with_aux(
    isa: Isa,
    at: GgmlType,
    src: &[f32],
    dst: &mut [u8],
    aux: &mut [u8],
) {
    let nb = src.len() / 32;
    let mut sums = [0i32; 64];
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx2 && at == GgmlType::Q8_0 {
        // A chunk at a time to keep the sums on the stack.
        for c in (0..nb).step_by(64) {
            let m = (nb - c).min(64);
            // SAFETY: `isa == Avx2` is only chosen on CPUs with AVX2, FMA and F16C; the
            // slices hold `m` blocks.
            unsafe {
                simd::x86::act::q8_0(
                    &src[32 * c..32 * (c + m)],
                    &mut dst[34 * c..34 * (c + m)],
                    34,
                    2,
                    Some(&mut sums[..m]),
                )
            };
            for (b, s) in (c..c + m).zip(&sums[..m]) {
                aux[8 * b + 4..8 * b + 8].copy_from_slice(&s.to_le_bytes());
            }
        }
        done = nb;
    }
    if done == 0 {
        simd::quantize_activations(isa, at, src, dst);
    }
    let bs = at.type_size();
    for b in 0..nb {
        let blk = &dst[b * bs..(b + 1) * bs];
        let d = crate::types::f16_at(blk, 0);
        aux[8 * b..8 * b + 4].copy_from_slice(&d.to_le_bytes());
        if at == GgmlType::Q8_1 {
            aux[8 * b + 4..8 * b + 8].copy_from_slice(&crate::types::f16_at(blk, 2).to_le_bytes());
        } else if done == 0 {
            let s: i32 = blk[2..34].iter().map(|&q| q as i8 as i32).sum();
            aux[8 * b + 4..8 * b + 8].copy_from_slice(&s.to_le_bytes());
        }
    }
}

/// `src` rounded to the half type `at` (F16 or BF16) and widened back to f32.
pub(crate) fn round_to_half(isa: Isa, at: GgmlType, src: &[f32], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx2 && at == GgmlType::F16 {
        // SAFETY: `Isa::Avx2` is only chosen on CPUs with AVX2, FMA and F16C; equal lengths.
        unsafe { simd::x86::act::round_f16(src, dst) };
        return;
    }
    let _ = isa;
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = match at {
            GgmlType::F16 => half::f16::from_f32(s).to_f32(),
            _ => half::bf16::from_f32(s).to_f32(),
        };
    }
}

/// Computes `y = x · wᵀ` with the tiled kernels if they apply; `false` if not (the caller
/// then runs the row kernels).
pub(crate) fn run(pool: &ThreadPool, w: WeightRef<'_>, x: &Prepared<'_>, y: &mut [f32]) -> bool {
    if !tiled(x.isa, w.dtype, x.n) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        x86::run(pool, w, x, y)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (pool, y);
        false
    }
}
