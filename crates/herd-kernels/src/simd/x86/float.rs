//! Float dot products: F32·F32 and F16/BF16 weights with f32 or same-type activations.
//!
//! Rows may have any length; the last `len % 8` elements are summed in scalar code.

use std::arch::x86_64::*;

use super::{f16_at, hsum_ps, prefetch_ahead, software_prefetch};

/// Eight f16 at `p` widened to f32.
///
/// # Safety
/// `p` must be valid for reading 16 bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn load_f16x8(p: *const u8) -> __m256 {
    // SAFETY: the caller guarantees 16 readable bytes.
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(p.cast()) })
}

/// Eight bf16 at `p` widened to f32 (a bf16 is the top half of an f32).
///
/// # Safety
/// `p` must be valid for reading 16 bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn load_bf16x8(p: *const u8) -> __m256 {
    // SAFETY: the caller guarantees 16 readable bytes.
    let h = unsafe { _mm_loadu_si128(p.cast()) };
    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
}

/// # Safety
/// `p` must be valid for reading 32 bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn load_f32x8(p: *const u8) -> __m256 {
    // SAFETY: the caller guarantees 32 readable bytes.
    unsafe { _mm256_loadu_ps(p.cast()) }
}

fn bf16_to_f32(p: &[u8]) -> f32 {
    f32::from_bits((u16::from_le_bytes([p[0], p[1]]) as u32) << 16)
}

/// An element format that loads eight lanes at a time as f32.
pub(crate) trait Lanes {
    /// Bytes per element.
    const SIZE: usize;
    /// # Safety
    /// `p` must be valid for reading `8 * SIZE` bytes; the CPU must have AVX2, FMA and F16C.
    unsafe fn load8(p: *const u8) -> __m256;
    /// Element `i` of the row at `p`.
    ///
    /// # Safety
    /// `p` must be valid for reading `(i + 1) * SIZE` bytes.
    unsafe fn get(p: *const u8, i: usize) -> f32;
}

pub(crate) struct F32;
pub(crate) struct F16;
pub(crate) struct Bf16;

impl Lanes for F32 {
    const SIZE: usize = 4;
    #[inline(always)]
    unsafe fn load8(p: *const u8) -> __m256 {
        // SAFETY: forwarded to the caller.
        unsafe { load_f32x8(p) }
    }
    #[inline(always)]
    unsafe fn get(p: *const u8, i: usize) -> f32 {
        // SAFETY: forwarded to the caller.
        unsafe { p.add(4 * i).cast::<f32>().read_unaligned() }
    }
}

impl Lanes for F16 {
    const SIZE: usize = 2;
    #[inline(always)]
    unsafe fn load8(p: *const u8) -> __m256 {
        // SAFETY: forwarded to the caller.
        unsafe { load_f16x8(p) }
    }
    #[inline(always)]
    unsafe fn get(p: *const u8, i: usize) -> f32 {
        // SAFETY: forwarded to the caller.
        half::f16::from_bits(unsafe { p.add(2 * i).cast::<u16>().read_unaligned() }).to_f32()
    }
}

impl Lanes for Bf16 {
    const SIZE: usize = 2;
    #[inline(always)]
    unsafe fn load8(p: *const u8) -> __m256 {
        // SAFETY: forwarded to the caller.
        unsafe { load_bf16x8(p) }
    }
    #[inline(always)]
    unsafe fn get(p: *const u8, i: usize) -> f32 {
        // SAFETY: forwarded to the caller.
        let b = unsafe { p.add(2 * i).cast::<u16>().read_unaligned() };
        f32::from_bits((b as u32) << 16)
    }
}

/// Σ w·x over the first `n - n % 8` elements of rows in formats `W` and `X`.
///
/// # Safety
/// `w` and `x` must be valid for `n` elements of their formats.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn dot8<W: Lanes, X: Lanes>(w: *const u8, x: *const u8, n: usize) -> f32 {
    let (wsz, xsz) = (W::SIZE, X::SIZE);
    // Four independent accumulators hide the FMA latency.
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    let pf = software_prefetch();
    // SAFETY (all loads below): `i + 8 * k + 8 <= n` elements, within both rows.
    unsafe {
        while i + 32 <= n {
            prefetch_ahead(w.wrapping_add(i * wsz), 32 * wsz, pf);
            for (k, a) in acc.iter_mut().enumerate() {
                let e = i + 8 * k;
                *a = _mm256_fmadd_ps(W::load8(w.add(e * wsz)), X::load8(x.add(e * xsz)), *a);
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(W::load8(w.add(i * wsz)), X::load8(x.add(i * xsz)), acc[0]);
            i += 8;
        }
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    hsum_ps(s)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_f32_f32(w: &[u8], x: &[f32]) -> f32 {
    let n = x.len();
    // SAFETY: `w` holds 4·n bytes (checked by the wrapper), `x` n floats.
    let mut s = unsafe { dot8::<F32, F32>(w.as_ptr(), x.as_ptr().cast(), n) };
    for i in n - n % 8..n {
        s += f32::from_le_bytes(w[4 * i..4 * i + 4].try_into().unwrap()) * x[i];
    }
    s
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_f16_f32(w: &[u8], x: &[f32]) -> f32 {
    let n = x.len();
    // SAFETY: `w` holds 2·n bytes (checked by the wrapper), `x` n floats.
    let mut s = unsafe { dot8::<F16, F32>(w.as_ptr(), x.as_ptr().cast(), n) };
    for i in n - n % 8..n {
        // SAFETY: `2 * i + 2 <= w.len()`.
        s += unsafe { f16_at(w.as_ptr().add(2 * i)) } * x[i];
    }
    s
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_bf16_f32(w: &[u8], x: &[f32]) -> f32 {
    let n = x.len();
    // SAFETY: `w` holds 2·n bytes (checked by the wrapper), `x` n floats.
    let mut s = unsafe { dot8::<Bf16, F32>(w.as_ptr(), x.as_ptr().cast(), n) };
    for i in n - n % 8..n {
        s += bf16_to_f32(&w[2 * i..]) * x[i];
    }
    s
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_f16_f16(w: &[u8], a: &[u8]) -> f32 {
    let n = w.len() / 2;
    // SAFETY: both rows hold n halves (checked by the wrapper).
    let mut s = unsafe { dot8::<F16, F16>(w.as_ptr(), a.as_ptr(), n) };
    for i in n - n % 8..n {
        // SAFETY: `2 * i + 2` bytes are within both rows.
        s += unsafe { f16_at(w.as_ptr().add(2 * i)) * f16_at(a.as_ptr().add(2 * i)) };
    }
    s
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_bf16_bf16(w: &[u8], a: &[u8]) -> f32 {
    let n = w.len() / 2;
    // SAFETY: both rows hold n bf16 (checked by the wrapper).
    let mut s = unsafe { dot8::<Bf16, Bf16>(w.as_ptr(), a.as_ptr(), n) };
    for i in n - n % 8..n {
        s += bf16_to_f32(&w[2 * i..]) * bf16_to_f32(&a[2 * i..]);
    }
    s
}
