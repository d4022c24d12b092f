//! The AVX2 kernel for grouped Q4_K weights (see the parent module for the layout).
//!
//! Per super-block and token: 32 loads of 32 weight bytes, each split into its low and high
//! nibbles, each half `maddubs`-ed with 4 activation bytes broadcast (sub-block `2j` and
//! `2j + 1` respectively), summed in 16 bits over a sub-block (8 steps: at most
//! 8·2·15·128 = 30720), then `madd`-ed with that sub-block's scale per row into i32 lanes.

use std::arch::x86_64::*;

use super::{BLOCK, D, DMIN, GROUP, MN, QS, SC};
use crate::simd::x86::{bcast4, load128, load256, prefetch_ahead, software_prefetch};

const Q8K: usize = 292;

/// [`dot_group`] for `m` (1..=4) tokens at run time, into `out[..m]`.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `g` is a whole group and `a` holds `m` Q8_K rows of
/// `arb` bytes, each as many super-blocks as `g`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_group_any(
    g: &[u8],
    a: &[u8],
    arb: usize,
    m: usize,
    out: &mut [[f32; GROUP]; 4],
) {
    let nb = g.len() / BLOCK;
    debug_assert!(a.len() >= m * arb && arb >= nb * Q8K);
    let (g, a) = (g.as_ptr(), a.as_ptr());
    let mut store = |v: &[__m256]| {
        for (o, v) in out.iter_mut().zip(v) {
            // SAFETY: `o` is 8 f32.
            unsafe { _mm256_storeu_ps(o.as_mut_ptr(), *v) };
        }
    };
    // SAFETY: forwarded to the caller.
    unsafe {
        match m {
            1 => store(&dot_group::<1>(g, nb, a, arb)),
            2 => store(&dot_group::<2>(g, nb, a, arb)),
            3 => store(&dot_group::<3>(g, nb, a, arb)),
            _ => store(&dot_group::<4>(g, nb, a, arb)),
        }
    }
}

/// Lane `r` of result `t`: row `r` of the group · token `t`.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `g` holds `nb` group blocks and `a` `N` Q8_K rows of
/// `nb` blocks, `arb` bytes apart.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn dot_group<const N: usize>(
    g: *const u8,
    nb: usize,
    a: *const u8,
    arb: usize,
) -> [__m256; N] {
    let m4 = _mm256_set1_epi8(0xF);
    // Each scale byte twice, so that after widening to i16 it meets both pair sums of its
    // row's lane: the low 8 bytes (sub-block 2j) or the high 8 (2j + 1).
    let dup_lo = _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    let dup_hi = _mm_setr_epi8(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    let pf = software_prefetch();
    let mut acc = [_mm256_setzero_ps(); N];
    for b in 0..nb {
        // SAFETY (whole body): block `b < nb` of the group and of every token row.
        unsafe {
            let blk = g.add(b * BLOCK);
            prefetch_ahead(blk, BLOCK, pf);
            let ab: [*const u8; N] = std::array::from_fn(|t| a.add(t * arb + b * Q8K));
            let mut sumi = [_mm256_setzero_si256(); N];
            for j in 0..4 {
                // i16 pair sums per row lane: sub-block 2j (low nibbles), 2j + 1 (high).
                let mut lo = [_mm256_setzero_si256(); N];
                let mut hi = [_mm256_setzero_si256(); N];
                for k in 0..8 {
                    let bits = load256(blk.add(QS + 32 * (8 * j + k)));
                    let wl = _mm256_and_si256(bits, m4);
                    let wh = _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4);
                    for t in 0..N {
                        let q = ab[t].add(4 + 64 * j + 4 * k);
                        lo[t] = _mm256_add_epi16(lo[t], _mm256_maddubs_epi16(wl, bcast4(q)));
                        hi[t] =
                            _mm256_add_epi16(hi[t], _mm256_maddubs_epi16(wh, bcast4(q.add(32))));
                    }
                }
                let sc = load128(blk.add(SC + 16 * j));
                let sl = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(sc, dup_lo));
                let sh = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(sc, dup_hi));
                for t in 0..N {
                    let s = _mm256_add_epi32(
                        _mm256_madd_epi16(lo[t], sl),
                        _mm256_madd_epi16(hi[t], sh),
                    );
                    sumi[t] = _mm256_add_epi32(sumi[t], s);
                }
            }
            // Mins: per row Σ_s min_s · (the activations' sum over sub-block s).
            let mn: [__m256i; 4] =
                std::array::from_fn(|p| _mm256_cvtepu8_epi16(load128(blk.add(MN + 16 * p))));
            let d = _mm256_cvtph_ps(load128(blk.add(D)));
            let dmin = _mm256_cvtph_ps(load128(blk.add(DMIN)));
            for t in 0..N {
                // Q8_K's 16 sums of 16 → 8 sums of 32 (i16: at most 32·128), once per lane half.
                let bs = load256(ab[t].add(260));
                let s32 = _mm_hadd_epi16(
                    _mm256_castsi256_si128(bs),
                    _mm256_extracti128_si256::<1>(bs),
                );
                let s32 = _mm256_broadcastsi128_si256(s32);
                let mut summ = _mm256_madd_epi16(mn[0], _mm256_shuffle_epi32::<0x00>(s32));
                summ = _mm256_add_epi32(
                    summ,
                    _mm256_madd_epi16(mn[1], _mm256_shuffle_epi32::<0x55>(s32)),
                );
                summ = _mm256_add_epi32(
                    summ,
                    _mm256_madd_epi16(mn[2], _mm256_shuffle_epi32::<0xAA>(s32)),
                );
                summ = _mm256_add_epi32(
                    summ,
                    _mm256_madd_epi16(mn[3], _mm256_shuffle_epi32::<0xFF>(s32)),
                );
                let da = _mm256_set1_ps(ab[t].cast::<f32>().read_unaligned());
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi[t]), _mm256_mul_ps(d, da), acc[t]);
                acc[t] =
                    _mm256_fnmadd_ps(_mm256_cvtepi32_ps(summ), _mm256_mul_ps(dmin, da), acc[t]);
            }
        }
    }
    acc
}
