//! The grouped decode kernels with AVX-512 VNNI, where the CPU has it (`simd::x86::vnni`):
//! `vpdpbusd` multiplies and sums four quant pairs into i32 lanes in one instruction where
//! AVX2 takes `maddubs` and an `add`, and i32 sums need no widening every few steps. They read
//! the same layouts as the AVX2 kernels in [`super::x86`], share their step decoding and their
//! block tails, and give the same products.

use std::arch::x86_64::*;

use super::x86::{Q8K, k45_finish, k45_steps, q6_k_finish, q6_k_step, q32_finish, q32_steps};
use super::{q4_k, q6_k, q8_0, q32};
use crate::simd::x86::{bcast4, load128, load256, prefetch_ahead, software_prefetch};

/// [`x86::dot_q4_k`](super::x86) with AVX-512 VNNI: `vpdpbusd` sums four quant pairs into i32 lanes where
/// `maddubs` + `add` took two instructions, so a sub-block pair's sums need no 16-bit runs and
/// meet their scales with one `vpmulld` each. Each sum alternates between two accumulators
/// (even and odd steps) to keep `vpdpbusd`'s latency off the chain.
///
/// # Safety
/// As `x86::dot_q4_k`, and the CPU must have AVX-512 F, VL and VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
#[inline]
pub(super) unsafe fn dot_q4_k<const FIVE: bool, const N: usize>(
    g: *const u8,
    nb: usize,
    a: *const u8,
    arb: usize,
    _z: *const u8,
    _zb: usize,
) -> [__m256; N] {
    let pf = software_prefetch();
    let mut acc = [_mm256_setzero_ps(); N];
    for b in 0..nb {
        // SAFETY (whole body): block `b < nb` of the group and of every token row.
        unsafe {
            let blk = g.add(b * q4_k::block(FIVE));
            prefetch_ahead(blk, q4_k::block(FIVE), pf);
            let ab: [*const u8; N] = std::array::from_fn(|t| a.add(t * arb + b * Q8K));
            let mut sumi = [_mm256_setzero_si256(); N];
            for j in 0..4 {
                // Scales of sub-blocks 2j and 2j + 1, one i32 per row lane.
                let sl = _mm256_cvtepu8_epi32(_mm_loadl_epi64(blk.add(q4_k::SC + 16 * j).cast()));
                let sh =
                    _mm256_cvtepu8_epi32(_mm_loadl_epi64(blk.add(q4_k::SC + 16 * j + 8).cast()));
                let mut lo = [[_mm256_setzero_si256(); 2]; N];
                let mut hi = [[_mm256_setzero_si256(); 2]; N];
                for w in 2 * j..2 * j + 2 {
                    for (kk, (wl, wh)) in k45_steps::<FIVE>(blk, w).iter().enumerate() {
                        let k = 4 * (w % 2) + kk;
                        for t in 0..N {
                            let q = ab[t].add(4 + 64 * j + 4 * k);
                            lo[t][k % 2] = _mm256_dpbusd_epi32(lo[t][k % 2], *wl, bcast4(q));
                            hi[t][k % 2] =
                                _mm256_dpbusd_epi32(hi[t][k % 2], *wh, bcast4(q.add(32)));
                        }
                    }
                }
                for t in 0..N {
                    let l = _mm256_add_epi32(lo[t][0], lo[t][1]);
                    let h = _mm256_add_epi32(hi[t][0], hi[t][1]);
                    let s = _mm256_add_epi32(_mm256_mullo_epi32(l, sl), _mm256_mullo_epi32(h, sh));
                    sumi[t] = _mm256_add_epi32(sumi[t], s);
                }
            }
            k45_finish(blk, &ab, &sumi, &mut acc);
        }
    }
    acc
}

/// [`x86::dot_q6_k`](super::x86) with AVX-512 VNNI: the four steps that share a sub-block's scale sum in i32
/// with `vpdpbusd` and meet the scale with one `vpmulld`, where `maddubs`, `add` and a `madd`
/// every two steps did.
///
/// # Safety
/// As `x86::dot_q6_k`, and the CPU must have AVX-512 F, VL and VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
#[inline]
pub(super) unsafe fn dot_q6_k<const N: usize>(
    g: *const u8,
    nb: usize,
    a: *const u8,
    arb: usize,
    _z: *const u8,
    _zb: usize,
) -> [__m256; N] {
    let pf = software_prefetch();
    let mut acc = [_mm256_setzero_ps(); N];
    for b in 0..nb {
        // SAFETY (whole body): block `b < nb` of the group and of every token row.
        unsafe {
            let blk = g.add(b * q6_k::BLOCK);
            prefetch_ahead(blk, q6_k::BLOCK, pf);
            let ab: [*const u8; N] = std::array::from_fn(|t| a.add(t * arb + b * Q8K));
            let mut sumi = [_mm256_setzero_si256(); N];
            for h in 0..2 {
                for q in 0..2 {
                    // Sub-blocks 8h + 2m + q, m < 4: their (signed) scales, an i32 per row.
                    let sc: [__m256i; 4] = std::array::from_fn(|m| {
                        let at = blk.add(q6_k::SC + 8 * (8 * h + 2 * m + q));
                        _mm256_cvtepi8_epi32(_mm_loadl_epi64(at.cast()))
                    });
                    let mut p = [[_mm256_setzero_si256(); 4]; N];
                    for k in 4 * q..4 * q + 4 {
                        let v = q6_k_step(blk, h, k);
                        for t in 0..N {
                            for m in 0..4 {
                                let av = bcast4(ab[t].add(4 + 128 * h + 32 * m + 4 * k));
                                p[t][m] = _mm256_dpbusd_epi32(p[t][m], v[m], av);
                            }
                        }
                    }
                    for t in 0..N {
                        for m in 0..4 {
                            let s = _mm256_mullo_epi32(p[t][m], sc[m]);
                            sumi[t] = _mm256_add_epi32(sumi[t], s);
                        }
                    }
                }
            }
            q6_k_finish(blk, &ab, &sumi, &mut acc);
        }
    }
    acc
}

/// [`x86::dot_q32`](super::x86) with AVX-512 VNNI: each step's low and high halves go
/// straight into i32 sums with `vpdpbusd`, where `maddubs`, `add` and a closing `madd` did.
///
/// # Safety
/// As `x86::dot_q32`, and the CPU must have AVX-512 F, VL and VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
#[inline]
pub(super) unsafe fn dot_q32<const FIVE: bool, const MIN: bool, const N: usize>(
    g: *const u8,
    nb: usize,
    a: *const u8,
    arb: usize,
    z: *const u8,
    zb: usize,
) -> [__m256; N] {
    let (ab, aq) = q32::act_block(MIN);
    let gb = q32::block(FIVE, MIN);
    let pf = software_prefetch();
    let mut acc = [_mm256_setzero_ps(); N];
    for b in 0..nb {
        // SAFETY (whole body): block `b < nb` of the group, of every token row and of its
        // extras.
        unsafe {
            let blk = g.add(b * gb);
            prefetch_ahead(blk, gb, pf);
            let at: [*const u8; N] = std::array::from_fn(|t| a.add(t * arb + ab * b + aq));
            let mut lo = [_mm256_setzero_si256(); N];
            let mut hi = [_mm256_setzero_si256(); N];
            for (k, (wl, wh)) in q32_steps::<FIVE>(blk).iter().enumerate() {
                for t in 0..N {
                    let q = at[t].add(4 * k);
                    lo[t] = _mm256_dpbusd_epi32(lo[t], *wl, bcast4(q));
                    hi[t] = _mm256_dpbusd_epi32(hi[t], *wh, bcast4(q.add(16)));
                }
            }
            let s: [__m256i; N] = std::array::from_fn(|t| _mm256_add_epi32(lo[t], hi[t]));
            q32_finish::<FIVE, MIN, N>(blk, &s, z.add(8 * b), zb, &mut acc);
        }
    }
    acc
}

/// [`x86::dot_q8_0`](super::x86) with AVX-512 VNNI. `vpdpbusd` wants one side unsigned, so
/// the signed weights go in offset by 128 (`w ^ 0x80`): Σ (w + 128)·a = Σ w·a + 128·Σa, and the
/// activation block's sum from the extras takes the excess off. One instruction per step and
/// token where AVX2 took two sign fixes, `maddubs`, `madd` and an `add`.
///
/// # Safety
/// As `x86::dot_q8_0`, and the CPU must have AVX-512 F, VL and VNNI; the extras hold each
/// block's sum (`gemm::AuxKind::Blocks`) as well as its scale.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
#[inline]
pub(super) unsafe fn dot_q8_0<const N: usize>(
    g: *const u8,
    nb: usize,
    a: *const u8,
    arb: usize,
    z: *const u8,
    zb: usize,
) -> [__m256; N] {
    let flip = _mm256_set1_epi8(-128);
    let pf = software_prefetch();
    let mut acc = [_mm256_setzero_ps(); N];
    for b in 0..nb {
        // SAFETY (whole body): block `b < nb` of the group, of every token row and of its
        // extras.
        unsafe {
            let blk = g.add(b * q8_0::BLOCK);
            prefetch_ahead(blk, q8_0::BLOCK, pf);
            let ab: [*const u8; N] = std::array::from_fn(|t| a.add(t * arb + 34 * b + 2));
            let mut isum = [[_mm256_setzero_si256(); 2]; N];
            for s in 0..8 {
                let w = _mm256_xor_si256(load256(blk.add(q8_0::QS + 32 * s)), flip);
                for t in 0..N {
                    // Two chains, even and odd steps, to keep `vpdpbusd`'s latency off them.
                    let p = &mut isum[t][s % 2];
                    *p = _mm256_dpbusd_epi32(*p, w, bcast4(ab[t].add(4 * s)));
                }
            }
            let d = _mm256_cvtph_ps(load128(blk.add(q8_0::D)));
            for t in 0..N {
                let zt = z.add(t * zb + 8 * b);
                let da = _mm256_set1_ps(zt.cast::<f32>().read_unaligned());
                let excess = zt.add(4).cast::<i32>().read_unaligned() << 7;
                let s = _mm256_sub_epi32(
                    _mm256_add_epi32(isum[t][0], isum[t][1]),
                    _mm256_set1_epi32(excess),
                );
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(d, da), acc[t]);
            }
        }
    }
    acc
}
