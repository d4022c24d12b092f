//! Tiled matrix products for many tokens (prefill).
//!
//! A dot product per (row, token) decodes every weight block once per token. Here the inner
//! kernels take several rows × several tokens at once, so each decoded weight value is used
//! for several tokens while it sits in a register:
//! - float weights (F32/F16/BF16): below 32 tokens, 3 rows × 3 tokens of dot products straight
//!   from the weight bytes; from 32, rows repacked as panels of 16 (F16 or f32) and a 16 × 6
//!   outer-product kernel (see `x86/float.rs`);
//! - quantised weights: the rows of a block of the matrix are first repacked ("panels" of 8
//!   rows, 4 consecutive quants of each row side by side), then each 32-byte load of a panel
//!   multiplies with 4 bytes of a token broadcast over the register, one lane per row. The
//!   integer sums stay per row in lanes, so no horizontal sums or per-pair scale products are
//!   needed, and the repacking is paid once per matrix, not per token.
//!
//! Work split: work items are runs of consecutive panels (so every weight byte is read by one
//! thread), at most a cache-sized block and at least four per thread, claimed by whichever
//! thread is free (`ThreadPool::run_dynamic`); each item is swept by all tokens.

use crate::interleave::Layout;
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

/// The per-block extras `prepare` stores beside Q8_0 / Q8_1 activation rows for the SIMD
/// kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AuxKind {
    None,
    /// 8 bytes per block: its scale as f32, then its quant sum Σq (i32, Q8_0) or the stored
    /// `d·Σq` (f32, Q8_1). For the tiles, the grouped Q4_0 kernel and the row kernels of the
    /// other 32-block types.
    Blocks,
    /// For Q4_0 / Q5_0 row kernels, which take two blocks per step: per pair of blocks
    /// `i, i+1`, 128 bytes: quants `i[0..16] i+1[0..16]`, then `i[16..32] i+1[16..32]` (the
    /// order of the weights' low and high nibbles), the zero-point correction per i32 lane
    /// (`z/4·Σq` four times per block, z = 8 or 16), and the two scales as f32 four times
    /// each; then, for an odd block count, the last block's 8 bytes as in `Blocks`.
    Pairs,
}

pub(crate) fn aux_kind(isa: Isa, wt: GgmlType, layout: Layout, n: usize) -> AuxKind {
    if isa != Isa::Avx2 || !matches!(wt.vec_dot_type(), GgmlType::Q8_0 | GgmlType::Q8_1) {
        AuxKind::None
    } else if matches!(wt, GgmlType::Q4_0 | GgmlType::Q5_0)
        && layout == Layout::Rows
        && !tiled(isa, wt, n)
    {
        AuxKind::Pairs
    } else {
        AuxKind::Blocks
    }
}

/// Bytes of extras per activation row of `cols`.
pub(crate) fn aux_row_bytes(kind: AuxKind, cols: usize) -> usize {
    let nb = cols / 32;
    match kind {
        AuxKind::None => 0,
        AuxKind::Blocks => nb * 8,
        AuxKind::Pairs => nb / 2 * 128 + nb % 2 * 8,
    }
}

/// Quantises an activation row for weights `wt` (to Q8_0 or Q8_1) and writes its extras.
pub(crate) fn quantize_with_aux(
    isa: Isa,
    wt: GgmlType,
    kind: AuxKind,
    src: &[f32],
    dst: &mut [u8],
    aux: &mut [u8],
) {
    let at = wt.vec_dot_type();
    let bs = at.type_size();
    let nb = src.len() / 32;
    // A chunk of blocks at a time (an even number, so pairs never straddle chunks) to keep
    // the sums on the stack.
    const CHUNK: usize = 64;
    let mut sums = [0i32; CHUNK];
    for c in (0..nb).step_by(CHUNK) {
        let m = (nb - c).min(CHUNK);
        let (x, q) = (&src[32 * c..32 * (c + m)], &mut dst[bs * c..bs * (c + m)]);
        #[cfg(target_arch = "x86_64")]
        let have_sums = isa == Isa::Avx2 && at == GgmlType::Q8_0;
        #[cfg(target_arch = "x86_64")]
        if have_sums {
            // SAFETY: `Isa::Avx2` is only chosen on CPUs with AVX2, FMA and F16C; `q` holds
            // the `m` blocks of `x`.
            unsafe { simd::x86::act::q8_0(x, q, 34, 2, Some(&mut sums[..m])) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let have_sums = false;
        if !have_sums {
            simd::quantize_activations(isa, at, x, q);
            for (s, b) in sums.iter_mut().zip(q.chunks_exact(bs)) {
                *s = b[bs - 32..].iter().map(|&v| v as i8 as i32).sum();
            }
        }
        let f16 = |b: &[u8], i: usize| crate::types::f16_at(b, i);
        let block_entry = |out: &mut [u8], b: usize| {
            let blk = &q[bs * b..bs * (b + 1)];
            out[0..4].copy_from_slice(&f16(blk, 0).to_le_bytes());
            if at == GgmlType::Q8_1 {
                out[4..8].copy_from_slice(&f16(blk, 2).to_le_bytes());
            } else {
                out[4..8].copy_from_slice(&sums[b].to_le_bytes());
            }
        };
        match kind {
            AuxKind::None => {}
            AuxKind::Blocks => {
                for b in 0..m {
                    block_entry(&mut aux[8 * (c + b)..8 * (c + b + 1)], b);
                }
            }
            AuxKind::Pairs => {
                let z = if wt == GgmlType::Q5_0 { 4 } else { 2 };
                for p in 0..m / 2 {
                    let o = &mut aux[128 * (c / 2 + p)..128 * (c / 2 + p + 1)];
                    let (b0, b1) = (&q[34 * 2 * p..], &q[34 * (2 * p + 1)..]);
                    o[0..16].copy_from_slice(&b0[2..18]);
                    o[16..32].copy_from_slice(&b1[2..18]);
                    o[32..48].copy_from_slice(&b0[18..34]);
                    o[48..64].copy_from_slice(&b1[18..34]);
                    for k in 0..4 {
                        let (s0, s1) = (z * sums[2 * p], z * sums[2 * p + 1]);
                        o[64 + 4 * k..68 + 4 * k].copy_from_slice(&s0.to_le_bytes());
                        o[80 + 4 * k..84 + 4 * k].copy_from_slice(&s1.to_le_bytes());
                        o[96 + 4 * k..100 + 4 * k].copy_from_slice(&f16(b0, 0).to_le_bytes());
                        o[112 + 4 * k..116 + 4 * k].copy_from_slice(&f16(b1, 0).to_le_bytes());
                    }
                }
                if m % 2 == 1 {
                    let at = nb / 2 * 128;
                    block_entry(&mut aux[at..at + 8], m - 1);
                }
            }
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
