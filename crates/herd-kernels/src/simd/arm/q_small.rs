//! Row dot products of the 32-element block types with Q8_0/Q8_1 activations (ggml's NEON
//! scheme: integer products per block, one float multiply-add per block).
//!
//! Block layouts (bytes): Q4_0 d|qs[16]; Q4_1 d|m|qs[16]; Q5_0 d|qh[4]|qs[16];
//! Q5_1 d|m|qh[4]|qs[16]; Q8_0 d|qs[32]; Q8_1 d|s|qs[32]. In the 4- and 5-bit types the low
//! nibbles of `qs` are elements 0..16 and the high nibbles 16..32; bit j of `qh` is element j's
//! fifth bit.

use std::arch::aarch64::*;

use super::{dot_i8, f16_at, load_i8, load_u8};

/// Σ over blocks of `d·Σp + m` for the `(p, d, m)` that `f(i)` returns for block `i`, into
/// two accumulators so consecutive blocks do not wait on each other's multiply-add.
#[target_feature(enable = "neon")]
#[inline]
fn sum_blocks(nb: usize, f: impl Fn(usize) -> (int32x4_t, f32, f32)) -> f32 {
    let (mut acc0, mut acc1) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
    let mut m = 0.0;
    let mut i = 0;
    while i + 2 <= nb {
        let (p, d, m0) = f(i);
        acc0 = vfmaq_n_f32(acc0, vcvtq_f32_s32(p), d);
        let (p, d, m1) = f(i + 1);
        acc1 = vfmaq_n_f32(acc1, vcvtq_f32_s32(p), d);
        m += m0 + m1;
        i += 2;
    }
    if i < nb {
        let (p, d, m0) = f(i);
        acc0 = vfmaq_n_f32(acc0, vcvtq_f32_s32(p), d);
        m += m0;
    }
    vaddvq_f32(vaddq_f32(acc0, acc1)) + m
}

/// The 32 nibbles of the 16 bytes at `p`: (low nibbles = elements 0..16, high = 16..32).
///
/// # Safety
/// `p` must be valid for reading 16 bytes.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn nibbles(p: *const u8) -> (uint8x16_t, uint8x16_t) {
    // SAFETY: forwarded to the caller.
    let q = unsafe { load_u8(p) };
    (vandq_u8(q, vdupq_n_u8(0x0F)), vshrq_n_u8::<4>(q))
}

/// The fifth bits of a Q5 block, from its `qh` at `p`, as 0x10 or 0 per element: (elements
/// 0..16, elements 16..32).
///
/// # Safety
/// `p` must be valid for reading four bytes.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn fifth_bits(p: *const u8) -> (uint8x16_t, uint8x16_t) {
    // SAFETY: forwarded to the caller.
    let qh = unsafe { p.cast::<u32>().read_unaligned() };
    let bytes = vreinterpretq_u8_u32(vdupq_n_u32(qh));
    // Element j reads byte j/8 of qh and tests bit j%8.
    let idx_lo = vcombine_u8(vdup_n_u8(0), vdup_n_u8(1));
    let idx_hi = vcombine_u8(vdup_n_u8(2), vdup_n_u8(3));
    let bit = vreinterpretq_u8_u64(vdupq_n_u64(0x8040_2010_0804_0201));
    let five = vdupq_n_u8(0x10);
    let lo = vandq_u8(vtstq_u8(vqtbl1q_u8(bytes, idx_lo), bit), five);
    let hi = vandq_u8(vtstq_u8(vqtbl1q_u8(bytes, idx_hi), bit), five);
    (lo, hi)
}

/// Σ over 32 elements of the two weight vectors (elements 0..16, 16..32) times the activation
/// quants at `y`.
///
/// # Safety
/// `y` must be valid for reading 32 bytes.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn dot32<const SDOT: bool>(lo: int8x16_t, hi: int8x16_t, y: *const u8) -> int32x4_t {
    // SAFETY: forwarded to the caller.
    let (y0, y1) = unsafe { (load_i8(y), load_i8(y.add(16))) };
    dot_i8::<SDOT>(dot_i8::<SDOT>(vdupq_n_s32(0), lo, y0), hi, y1)
}

/// # Safety
/// `w` and `a` must hold the same number of whole blocks (18 and 34 bytes).
#[target_feature(enable = "neon")]
pub(super) unsafe fn dot_q4_0<const SDOT: bool>(w: &[u8], a: &[u8]) -> f32 {
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    sum_blocks(w.len() / 18, |i| {
        // SAFETY: block i is within both rows.
        unsafe {
            let (x, y) = (wp.add(18 * i), ap.add(34 * i));
            let (lo, hi) = nibbles(x.add(2));
            let eight = vdupq_n_s8(8);
            let lo = vsubq_s8(vreinterpretq_s8_u8(lo), eight);
            let hi = vsubq_s8(vreinterpretq_s8_u8(hi), eight);
            (dot32::<SDOT>(lo, hi, y.add(2)), f16_at(x) * f16_at(y), 0.0)
        }
    })
}

/// # Safety
/// `w` and `a` must hold the same number of whole blocks (20 and 36 bytes).
#[target_feature(enable = "neon")]
pub(super) unsafe fn dot_q4_1<const SDOT: bool>(w: &[u8], a: &[u8]) -> f32 {
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    sum_blocks(w.len() / 20, |i| {
        // SAFETY: block i is within both rows.
        unsafe {
            let (x, y) = (wp.add(20 * i), ap.add(36 * i));
            let (lo, hi) = nibbles(x.add(4));
            let p = dot32::<SDOT>(vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi), y.add(4));
            (
                p,
                f16_at(x) * f16_at(y),
                f16_at(x.add(2)) * f16_at(y.add(2)),
            )
        }
    })
}

/// # Safety
/// `w` and `a` must hold the same number of whole blocks (22 and 34 bytes).
#[target_feature(enable = "neon")]
pub(super) unsafe fn dot_q5_0<const SDOT: bool>(w: &[u8], a: &[u8]) -> f32 {
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    sum_blocks(w.len() / 22, |i| {
        // SAFETY: block i is within both rows.
        unsafe {
            let (x, y) = (wp.add(22 * i), ap.add(34 * i));
            let (lo, hi) = nibbles(x.add(6));
            let (h_lo, h_hi) = fifth_bits(x.add(2));
            let sixteen = vdupq_n_s8(16);
            let lo = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(lo, h_lo)), sixteen);
            let hi = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(hi, h_hi)), sixteen);
            (dot32::<SDOT>(lo, hi, y.add(2)), f16_at(x) * f16_at(y), 0.0)
        }
    })
}

/// # Safety
/// `w` and `a` must hold the same number of whole blocks (24 and 36 bytes).
#[target_feature(enable = "neon")]
pub(super) unsafe fn dot_q5_1<const SDOT: bool>(w: &[u8], a: &[u8]) -> f32 {
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    sum_blocks(w.len() / 24, |i| {
        // SAFETY: block i is within both rows.
        unsafe {
            let (x, y) = (wp.add(24 * i), ap.add(36 * i));
            let (lo, hi) = nibbles(x.add(8));
            let (h_lo, h_hi) = fifth_bits(x.add(4));
            let lo = vreinterpretq_s8_u8(vorrq_u8(lo, h_lo));
            let hi = vreinterpretq_s8_u8(vorrq_u8(hi, h_hi));
            let p = dot32::<SDOT>(lo, hi, y.add(4));
            (
                p,
                f16_at(x) * f16_at(y),
                f16_at(x.add(2)) * f16_at(y.add(2)),
            )
        }
    })
}

/// # Safety
/// `w` and `a` must hold the same number of whole blocks (34 bytes each).
#[target_feature(enable = "neon")]
pub(super) unsafe fn dot_q8_0<const SDOT: bool>(w: &[u8], a: &[u8]) -> f32 {
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    sum_blocks(w.len() / 34, |i| {
        // SAFETY: block i is within both rows.
        unsafe {
            let (x, y) = (wp.add(34 * i), ap.add(34 * i));
            let p = dot32::<SDOT>(load_i8(x.add(2)), load_i8(x.add(18)), y.add(2));
            (p, f16_at(x) * f16_at(y), 0.0)
        }
    })
}
