//! Row dot products of the 32-element block types with Q8_0/Q8_1 activations (ggml's AVX2
//! scheme: integer products per block, one float multiply-add per block).
//!
//! Block layouts (bytes): Q4_0 d|qs[16]; Q4_1 d|m|qs[16]; Q5_0 d|qh[4]|qs[16];
//! Q5_1 d|m|qh[4]|qs[16]; Q8_0 d|qs[32]; Q8_1 d|s|qs[32].

use std::arch::x86_64::*;

use super::{bytes_from_bits32, dot_i8_i32, dot_u8_i32, f16_at, hsum_ps, load256, nibbles32};

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
