//! Row dot products of the 32-element block types with Q8_0/Q8_1 activations (ggml's AVX2
//! scheme: integer products per block, one float multiply-add per block).
//!
//! Block layouts (bytes): Q4_0 d|qs[16]; Q4_1 d|m|qs[16]; Q5_0 d|qh[4]|qs[16];
//! Q5_1 d|m|qh[4]|qs[16]; Q8_0 d|qs[32]; Q8_1 d|s|qs[32].

use std::arch::x86_64::*;

use super::{
    bytes_from_bits32, dot_i8_i32, dot_u8_i32, f16_at, f16_bcast, hsum_ps, load256, nibbles32,
    prefetch_ahead, software_prefetch,
};

/// Σ over blocks of `a·b` for the `(a, b)` that `f(i)` returns for block `i`, into two
/// accumulators so consecutive blocks do not wait on each other's FMA.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn fma_blocks(nb: usize, mut f: impl FnMut(usize) -> (__m256, __m256)) -> f32 {
    let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut i = 0;
    while i + 2 <= nb {
        let (a, b) = f(i);
        acc0 = _mm256_fmadd_ps(a, b, acc0);
        let (a, b) = f(i + 1);
        acc1 = _mm256_fmadd_ps(a, b, acc1);
        i += 2;
    }
    if i < nb {
        let (a, b) = f(i);
        acc0 = _mm256_fmadd_ps(a, b, acc0);
    }
    hsum_ps(_mm256_add_ps(acc0, acc1))
}

/// The qh word of a Q5 block at `p`.
///
/// # Safety
/// `p` must be valid for reading four bytes.
#[inline(always)]
unsafe fn qh_at(p: *const u8) -> u32 {
    // SAFETY: forwarded to the caller.
    unsafe { p.cast::<u32>().read_unaligned() }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_q4_0(w: &[u8], a: &[u8]) -> f32 {
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    fma_blocks(w.len() / 18, |i| {
        // SAFETY: block i is within both rows (the wrapper checked they hold as many blocks).
        unsafe {
            let (x, y) = (wp.add(18 * i), ap.add(34 * i));
            let d = _mm256_set1_ps(f16_at(x) * f16_at(y));
            let qx = _mm256_sub_epi8(nibbles32(x.add(2)), _mm256_set1_epi8(8));
            let q = _mm256_cvtepi32_ps(dot_i8_i32(qx, load256(y.add(2))));
            (d, q)
        }
    })
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_q4_1(w: &[u8], a: &[u8]) -> f32 {
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let mut mins = 0.0f32;
    let s = fma_blocks(w.len() / 20, |i| {
        // SAFETY: block i is within both rows.
        unsafe {
            let (x, y) = (wp.add(20 * i), ap.add(36 * i));
            mins += f16_at(x.add(2)) * f16_at(y.add(2));
            let d = _mm256_set1_ps(f16_at(x) * f16_at(y));
            let q = _mm256_cvtepi32_ps(dot_u8_i32(nibbles32(x.add(4)), load256(y.add(4))));
            (d, q)
        }
    });
    s + mins
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_q5_0(w: &[u8], a: &[u8]) -> f32 {
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    fma_blocks(w.len() / 22, |i| {
        // SAFETY: block i is within both rows.
        unsafe {
            let (x, y) = (wp.add(22 * i), ap.add(34 * i));
            let d = _mm256_set1_ps(f16_at(x) * f16_at(y));
            // q - 16 as a signed byte: the nibble where the fifth bit is set, the nibble with
            // its top four bits set where it is not.
            let hi = _mm256_andnot_si256(bytes_from_bits32(qh_at(x.add(2))), _mm256_set1_epi8(-16));
            let qx = _mm256_or_si256(nibbles32(x.add(6)), hi);
            let q = _mm256_cvtepi32_ps(dot_i8_i32(qx, load256(y.add(2))));
            (d, q)
        }
    })
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_q5_1(w: &[u8], a: &[u8]) -> f32 {
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let mut mins = 0.0f32;
    let s = fma_blocks(w.len() / 24, |i| {
        // SAFETY: block i is within both rows.
        unsafe {
            let (x, y) = (wp.add(24 * i), ap.add(36 * i));
            mins += f16_at(x.add(2)) * f16_at(y.add(2));
            let d = _mm256_set1_ps(f16_at(x) * f16_at(y));
            let hi = _mm256_and_si256(bytes_from_bits32(qh_at(x.add(4))), _mm256_set1_epi8(0x10));
            let qx = _mm256_or_si256(nibbles32(x.add(8)), hi);
            let q = _mm256_cvtepi32_ps(dot_u8_i32(qx, load256(y.add(4))));
            (d, q)
        }
    });
    s + mins
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_q8_0(w: &[u8], a: &[u8]) -> f32 {
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    fma_blocks(w.len() / 34, |i| {
        // SAFETY: block i is within both rows.
        unsafe {
            let (x, y) = (wp.add(34 * i), ap.add(34 * i));
            let d = _mm256_set1_ps(f16_at(x) * f16_at(y));
            let q = _mm256_cvtepi32_ps(dot_i8_i32(load256(x.add(2)), load256(y.add(2))));
            (d, q)
        }
    })
}

// ---- with per-block activation extras ----
//
// The matrix product's decode path prepares, next to each Q8_0 / Q8_1 activation row, 8 bytes
// per block: its scale as f32 and its quant sum Σq (i32, Q8_0) or stored d·Σq (f32, Q8_1).
// With them the 4- and 5-bit kernels multiply the unsigned quants directly (no sign fix-ups)
// and take the zero point off in integers: Σ(q - z)·a = Σq·a - z·Σa, which is what subtracting
// z·Σa/8 from each of the eight i32 lanes does (z/8 = 1 or 2).

/// The f32 at `p`.
///
/// # Safety
/// `p` must be valid for reading four bytes.
#[inline(always)]
unsafe fn f32_at(p: *const u8) -> f32 {
    // SAFETY: forwarded to the caller.
    unsafe { p.cast::<f32>().read_unaligned() }
}

/// Σ(q - 8z')·a for unsigned quants `q` against the Q8_0 quants at `y` whose sum is at `sum`,
/// `Z` being the zero point over 8 (1 for Q4_0, 2 for Q5_0).
///
/// # Safety
/// `y` must be valid for 32 bytes and `sum` for 4.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn zero_point_dot<const Z: i32>(q: __m256i, y: *const u8, sum: *const u8) -> __m256 {
    // SAFETY: forwarded to the caller.
    unsafe {
        let s = dot_u8_i32(q, load256(y));
        let z = _mm256_set1_epi32(Z * sum.cast::<i32>().read_unaligned());
        _mm256_cvtepi32_ps(_mm256_sub_epi32(s, z))
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_q4_0_aux(w: &[u8], a: &[u8], aux: &[u8]) -> f32 {
    let (wp, ap, zp) = (w.as_ptr(), a.as_ptr(), aux.as_ptr());
    fma_blocks(w.len() / 18, |i| {
        // SAFETY: block i is within all three rows (checked by the wrapper).
        unsafe {
            let (x, y, z) = (wp.add(18 * i), ap.add(34 * i), zp.add(8 * i));
            let d = _mm256_mul_ps(f16_bcast(x), _mm256_set1_ps(f32_at(z)));
            (
                d,
                zero_point_dot::<1>(nibbles32(x.add(2)), y.add(2), z.add(4)),
            )
        }
    })
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_q5_0_aux(w: &[u8], a: &[u8], aux: &[u8]) -> f32 {
    let (wp, ap, zp) = (w.as_ptr(), a.as_ptr(), aux.as_ptr());
    fma_blocks(w.len() / 22, |i| {
        // SAFETY: block i is within all three rows.
        unsafe {
            let (x, y, z) = (wp.add(22 * i), ap.add(34 * i), zp.add(8 * i));
            let d = _mm256_mul_ps(f16_bcast(x), _mm256_set1_ps(f32_at(z)));
            let hi = _mm256_and_si256(bytes_from_bits32(qh_at(x.add(2))), _mm256_set1_epi8(0x10));
            let q = _mm256_or_si256(nibbles32(x.add(6)), hi);
            (d, zero_point_dot::<2>(q, y.add(2), z.add(4)))
        }
    })
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_q4_1_aux(w: &[u8], a: &[u8], aux: &[u8]) -> f32 {
    let (wp, ap, zp) = (w.as_ptr(), a.as_ptr(), aux.as_ptr());
    let mut mins = 0.0f32;
    let s = fma_blocks(w.len() / 20, |i| {
        // SAFETY: block i is within all three rows.
        unsafe {
            let (x, y, z) = (wp.add(20 * i), ap.add(36 * i), zp.add(8 * i));
            mins += f16_at(x.add(2)) * f32_at(z.add(4));
            let d = _mm256_mul_ps(f16_bcast(x), _mm256_set1_ps(f32_at(z)));
            let q = _mm256_cvtepi32_ps(dot_u8_i32(nibbles32(x.add(4)), load256(y.add(4))));
            (d, q)
        }
    });
    s + mins
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_q5_1_aux(w: &[u8], a: &[u8], aux: &[u8]) -> f32 {
    let (wp, ap, zp) = (w.as_ptr(), a.as_ptr(), aux.as_ptr());
    let mut mins = 0.0f32;
    let s = fma_blocks(w.len() / 24, |i| {
        // SAFETY: block i is within all three rows.
        unsafe {
            let (x, y, z) = (wp.add(24 * i), ap.add(36 * i), zp.add(8 * i));
            mins += f16_at(x.add(2)) * f32_at(z.add(4));
            let d = _mm256_mul_ps(f16_bcast(x), _mm256_set1_ps(f32_at(z)));
            let hi = _mm256_and_si256(bytes_from_bits32(qh_at(x.add(4))), _mm256_set1_epi8(0x10));
            let q = _mm256_or_si256(nibbles32(x.add(8)), hi);
            (d, _mm256_cvtepi32_ps(dot_u8_i32(q, load256(y.add(4)))))
        }
    });
    s + mins
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_q8_0_aux(w: &[u8], a: &[u8], aux: &[u8]) -> f32 {
    let (wp, ap, zp) = (w.as_ptr(), a.as_ptr(), aux.as_ptr());
    let pf = software_prefetch();
    fma_blocks(w.len() / 34, |i| {
        // SAFETY: block i is within all three rows.
        unsafe {
            let (x, y, z) = (wp.add(34 * i), ap.add(34 * i), zp.add(8 * i));
            prefetch_ahead(x, 34, pf);
            let d = _mm256_mul_ps(f16_bcast(x), _mm256_set1_ps(f32_at(z)));
            let q = _mm256_cvtepi32_ps(dot_i8_i32(load256(x.add(2)), load256(y.add(2))));
            (d, q)
        }
    })
}

// ---- two blocks per step ----

/// Q4_0 (`FIVE == false`) or Q5_0 against activations with extras in pairs (see
/// `gemm::AuxKind::Pairs`): the quants of two blocks fill one register, so the scale
/// conversions and float multiply-adds are per pair, not per block.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_pairs<const FIVE: bool>(w: &[u8], a: &[u8], aux: &[u8]) -> f32 {
    let wb = if FIVE { 22 } else { 18 };
    let qs = if FIVE { 6 } else { 2 };
    let nb = w.len() / wb;
    let (wp, zp) = (w.as_ptr(), aux.as_ptr());
    let m4 = _mm256_set1_epi8(0xF);
    let fifth = _mm256_set1_epi8(0x10);
    let pf = software_prefetch();
    let s = fma_blocks(nb / 2, |p| {
        // SAFETY: blocks `2p, 2p + 1 < nb` of the weight row and pair `p` of the extras
        // (checked by the wrapper).
        unsafe {
            let (x, z) = (wp.add(2 * p * wb), zp.add(128 * p));
            prefetch_ahead(x, 2 * wb, pf);
            let v = _mm256_loadu2_m128i(x.add(wb + qs).cast(), x.add(qs).cast());
            let mut lo = _mm256_and_si256(v, m4);
            let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), m4);
            if FIVE {
                let (h0, h1) = (qh_at(x.add(2)), qh_at(x.add(wb + 2)));
                let lo_bits = (h0 & 0xFFFF) | (h1 << 16);
                let hi_bits = (h0 >> 16) | (h1 & 0xFFFF_0000);
                lo = _mm256_or_si256(lo, _mm256_and_si256(bytes_from_bits32(lo_bits), fifth));
                hi = _mm256_or_si256(hi, _mm256_and_si256(bytes_from_bits32(hi_bits), fifth));
            }
            let s16 = _mm256_add_epi16(
                _mm256_maddubs_epi16(lo, load256(z)),
                _mm256_maddubs_epi16(hi, load256(z.add(32))),
            );
            let s = _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
            let s = _mm256_sub_epi32(s, load256(z.add(64)));
            let d0 = _mm_set1_epi16(x.cast::<i16>().read_unaligned());
            let d1 = _mm_set1_epi16(x.add(wb).cast::<i16>().read_unaligned());
            let dw = _mm256_cvtph_ps(_mm_unpacklo_epi64(d0, d1));
            let d = _mm256_mul_ps(dw, _mm256_loadu_ps(z.add(96).cast()));
            (d, _mm256_cvtepi32_ps(s))
        }
    });
    if nb.is_multiple_of(2) {
        return s;
    }
    // The odd last block, with its 8-byte extras after the pairs.
    let b = nb - 1;
    // SAFETY: block `b` of the weight and activation rows, its extras at `nb / 2 * 128`.
    unsafe {
        let (x, y, z) = (wp.add(b * wb), a.as_ptr().add(34 * b), zp.add(nb / 2 * 128));
        let d = f16_at(x) * f32_at(z);
        let q = if FIVE {
            let hi = _mm256_and_si256(bytes_from_bits32(qh_at(x.add(2))), fifth);
            _mm256_or_si256(nibbles32(x.add(6)), hi)
        } else {
            nibbles32(x.add(2))
        };
        let t = if FIVE {
            zero_point_dot::<2>(q, y.add(2), z.add(4))
        } else {
            zero_point_dot::<1>(q, y.add(2), z.add(4))
        };
        s + d * hsum_ps(t)
    }
}
