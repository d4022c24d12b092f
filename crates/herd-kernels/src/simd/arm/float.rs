//! Dot products of float rows: F32/F16/BF16 weights with f32 activations, and F16·F16 and
//! BF16·BF16 (the `quant_dot` of those types).

use std::arch::aarch64::*;

use super::{f16_hi, f16_lo, load_u8};

/// Σ w[i]·x[i] for i < n, 16 elements per step into four accumulators. `w16(i)` and `x16(i)`
/// are elements i..i+16 as four vectors; `w1(i)`, `x1(i)` element i alone, for the tail.
#[target_feature(enable = "neon")]
#[inline]
fn fma16(
    n: usize,
    w16: impl Fn(usize) -> [float32x4_t; 4],
    x16: impl Fn(usize) -> [float32x4_t; 4],
    w1: impl Fn(usize) -> f32,
    x1: impl Fn(usize) -> f32,
) -> f32 {
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut i = 0;
    while i + 16 <= n {
        let (w, x) = (w16(i), x16(i));
        for k in 0..4 {
            acc[k] = vfmaq_f32(acc[k], w[k], x[k]);
        }
        i += 16;
    }
    let v = vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]));
    let mut s = vaddvq_f32(v);
    while i < n {
        s += w1(i) * x1(i);
        i += 1;
    }
    s
}

/// 16 f32 from 64 bytes at `p`.
///
/// # Safety
/// `p` must be valid for reading 64 bytes.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn f32x16(p: *const u8) -> [float32x4_t; 4] {
    // SAFETY: forwarded to the caller; byte loads need no alignment.
    unsafe { [0, 16, 32, 48].map(|o| vreinterpretq_f32_u8(load_u8(p.add(o)))) }
}

/// Eight u16 from 16 bytes at `p`.
///
/// # Safety
/// `p` must be valid for reading 16 bytes.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn load_u16(p: *const u8) -> uint16x8_t {
    // SAFETY: forwarded to the caller; byte loads need no alignment.
    vreinterpretq_u16_u8(unsafe { load_u8(p) })
}

/// 16 f16 from 32 bytes at `p`, widened.
///
/// # Safety
/// `p` must be valid for reading 32 bytes.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn f16x16(p: *const u8) -> [float32x4_t; 4] {
    // SAFETY: forwarded to the caller.
    let (a, b) = unsafe { (load_u16(p), load_u16(p.add(16))) };
    [f16_lo(a), f16_hi(a), f16_lo(b), f16_hi(b)]
}

/// 16 bf16 from 32 bytes at `p`, widened (a bf16 is the top half of an f32).
///
/// # Safety
/// `p` must be valid for reading 32 bytes.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn bf16x16(p: *const u8) -> [float32x4_t; 4] {
    // SAFETY: forwarded to the caller.
    let (a, b) = unsafe { (load_u16(p), load_u16(p.add(16))) };
    [
        vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(a))),
        vreinterpretq_f32_u32(vshll_high_n_u16::<16>(a)),
        vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(b))),
        vreinterpretq_f32_u32(vshll_high_n_u16::<16>(b)),
    ]
}

fn f16_1(b: &[u8], i: usize) -> f32 {
    crate::types::f16_at(b, 2 * i)
}

fn bf16_1(b: &[u8], i: usize) -> f32 {
    f32::from_bits((u16::from_le_bytes([b[2 * i], b[2 * i + 1]]) as u32) << 16)
}

/// # Safety
/// `w` must hold `4 * x.len()` bytes.
#[target_feature(enable = "neon")]
pub(super) unsafe fn dot_f32_f32(w: &[u8], x: &[f32]) -> f32 {
    let (wp, xp) = (w.as_ptr(), x.as_ptr().cast::<u8>());
    fma16(
        x.len(),
        // SAFETY (both): i + 16 <= len, and `w` holds as many f32 as `x`.
        |i| unsafe { f32x16(wp.add(4 * i)) },
        |i| unsafe { f32x16(xp.add(4 * i)) },
        |i| crate::types::f32_at(w, 4 * i),
        |i| x[i],
    )
}

/// # Safety
/// `w` must hold `2 * x.len()` bytes.
#[target_feature(enable = "neon")]
pub(super) unsafe fn dot_f16_f32(w: &[u8], x: &[f32]) -> f32 {
    let (wp, xp) = (w.as_ptr(), x.as_ptr().cast::<u8>());
    fma16(
        x.len(),
        // SAFETY (both): i + 16 <= len, and `w` holds as many f16 as `x` has f32.
        |i| unsafe { f16x16(wp.add(2 * i)) },
        |i| unsafe { f32x16(xp.add(4 * i)) },
        |i| f16_1(w, i),
        |i| x[i],
    )
}

/// # Safety
/// `w` must hold `2 * x.len()` bytes.
#[target_feature(enable = "neon")]
pub(super) unsafe fn dot_bf16_f32(w: &[u8], x: &[f32]) -> f32 {
    let (wp, xp) = (w.as_ptr(), x.as_ptr().cast::<u8>());
    fma16(
        x.len(),
        // SAFETY (both): as in `dot_f16_f32`.
        |i| unsafe { bf16x16(wp.add(2 * i)) },
        |i| unsafe { f32x16(xp.add(4 * i)) },
        |i| bf16_1(w, i),
        |i| x[i],
    )
}

/// # Safety
/// `w` and `a` must have the same, even length.
#[target_feature(enable = "neon")]
pub(super) unsafe fn dot_f16_f16(w: &[u8], a: &[u8]) -> f32 {
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    fma16(
        w.len() / 2,
        // SAFETY (both): i + 16 <= len, and both rows hold len f16.
        |i| unsafe { f16x16(wp.add(2 * i)) },
        |i| unsafe { f16x16(ap.add(2 * i)) },
        |i| f16_1(w, i),
        |i| f16_1(a, i),
    )
}

/// # Safety
/// `w` and `a` must have the same, even length.
#[target_feature(enable = "neon")]
pub(super) unsafe fn dot_bf16_bf16(w: &[u8], a: &[u8]) -> f32 {
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    fma16(
        w.len() / 2,
        // SAFETY (both): as in `dot_f16_f16`.
        |i| unsafe { bf16x16(wp.add(2 * i)) },
        |i| unsafe { bf16x16(ap.add(2 * i)) },
        |i| bf16_1(w, i),
        |i| bf16_1(a, i),
    )
}
