//! Row dot products of the K-quant types with Q8_K activations (ggml's NEON scheme).
//!
//! Q8_K block: d f32 | qs[256] i8 | bsums[16] i16 (Σ of each 16 quants), 292 bytes. The weight
//! layouts are in `crate::dequant`; each kernel's comments say how elements are found.

use std::arch::aarch64::*;

use super::{dot_i8, f16_at, f32_at, load_i8, load_i16, load_u8, sums4};
use crate::dequant::{q3_k_scales, scale_min_k4};

const Q8K: usize = 292;
/// Offset of the 16 block sums in a Q8_K block.
const BSUMS: usize = 260;

/// Σ_j bsum[j]·m[j] over a Q8_K block's 16 sums and 16 byte weights `m` (< 128).
///
/// # Safety
/// `y` must be a whole Q8_K block.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn bsums_dot(y: *const u8, m: uint8x16_t) -> i32 {
    // SAFETY: forwarded to the caller.
    let (b0, b1) = unsafe { (load_i16(y.add(BSUMS)), load_i16(y.add(BSUMS + 16))) };
    let m0 = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(m)));
    let m1 = vreinterpretq_s16_u16(vmovl_high_u8(m));
    let p = vmull_s16(vget_low_s16(b0), vget_low_s16(m0));
    let p = vmlal_high_s16(p, b0, m0);
    let p = vmlal_s16(p, vget_low_s16(b1), vget_low_s16(m1));
    vaddvq_s32(vmlal_high_s16(p, b1, m1))
}

/// Σ_k scale[8·half + k]·Σ lanes of d[k] for the eight 16-element products of one half of a
/// block and the block's 16 signed scales.
#[target_feature(enable = "neon")]
#[inline]
fn scaled8(d: [int32x4_t; 8], scales: int8x16_t, half: usize) -> int32x4_t {
    let s = vmovl_s8(if half == 0 {
        vget_low_s8(scales)
    } else {
        vget_high_s8(scales)
    });
    let lo = vmulq_s32(sums4(d[0], d[1], d[2], d[3]), vmovl_s16(vget_low_s16(s)));
    vmlaq_s32(lo, sums4(d[4], d[5], d[6], d[7]), vmovl_high_s16(s))
}

/// The four 2-bit fields of each byte of `q`, lowest first.
#[target_feature(enable = "neon")]
#[inline]
fn all_crumbs(q: uint8x16_t) -> [uint8x16_t; 4] {
    let m = vdupq_n_u8(3);
    [
        vandq_u8(q, m),
        vandq_u8(vshrq_n_u8::<2>(q), m),
        vandq_u8(vshrq_n_u8::<4>(q), m),
        vshrq_n_u8::<6>(q),
    ]
}

/// Q2_K: scales[16] (low nibble scale, high nibble min) | qs[64] | d | dmin. Element
/// 128n + 32s + l is bits 2s..2s+2 of qs[32n + l]; its sub-block of 16 has index (element / 16).
///
/// # Safety
/// `w` and `a` must hold the same number of whole blocks (84 and 292 bytes).
#[target_feature(enable = "neon")]
pub(super) unsafe fn dot_q2_k<const SDOT: bool>(w: &[u8], a: &[u8]) -> f32 {
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let mut sum = 0.0;
    for i in 0..w.len() / 84 {
        // SAFETY: block i is within both rows.
        unsafe {
            let (x, y) = (wp.add(84 * i), ap.add(Q8K * i));
            let yd = f32_at(y);
            let sc = load_u8(x);
            let mins = bsums_dot(y, vshrq_n_u8::<4>(sc));
            let scales = vreinterpretq_s8_u8(vandq_u8(sc, vdupq_n_u8(0x0F)));
            let mut isum = vdupq_n_s32(0);
            for n in 0..2 {
                let (q0, q1) = (load_u8(x.add(16 + 32 * n)), load_u8(x.add(32 + 32 * n)));
                let (c0, c1) = (all_crumbs(q0), all_crumbs(q1));
                let y8 = y.add(4 + 128 * n);
                let mut d = [vdupq_n_s32(0); 8];
                for s in 0..4 {
                    let z = vdupq_n_s32(0);
                    let (w0, w1) = (vreinterpretq_s8_u8(c0[s]), vreinterpretq_s8_u8(c1[s]));
                    d[2 * s] = dot_i8::<SDOT>(z, w0, load_i8(y8.add(32 * s)));
                    d[2 * s + 1] = dot_i8::<SDOT>(z, w1, load_i8(y8.add(32 * s + 16)));
                }
                isum = vaddq_s32(isum, scaled8(d, scales, n));
            }
            let dall = yd * f16_at(x.add(80));
            let dmin = yd * f16_at(x.add(82));
            sum += dall * vaddvq_s32(isum) as f32 - dmin * mins as f32;
        }
    }
    sum
}

/// Q3_K: hmask[32] | qs[64] | scales[12] | d. Element 128n + 32s + l is bits 2s..2s+2 of
/// qs[32n + l], less 4 where bit 4n + s of hmask[l] is clear; 16 signed scales.
///
/// # Safety
/// `w` and `a` must hold the same number of whole blocks (110 and 292 bytes).
#[target_feature(enable = "neon")]
pub(super) unsafe fn dot_q3_k<const SDOT: bool>(w: &[u8], a: &[u8]) -> f32 {
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let mut sum = 0.0;
    for i in 0..w.len() / 110 {
        // SAFETY: block i is within both rows; the scales are 12 bytes at 96.
        unsafe {
            let (x, y) = (wp.add(110 * i), ap.add(Q8K * i));
            let scales = q3_k_scales(std::slice::from_raw_parts(x.add(96), 12));
            let scales = vld1q_s8(scales.as_ptr());
            let (hm0, hm1) = (load_u8(x), load_u8(x.add(16)));
            let four = vdupq_n_u8(4);
            let mut isum = vdupq_n_s32(0);
            for n in 0..2 {
                let (q0, q1) = (load_u8(x.add(32 + 32 * n)), load_u8(x.add(48 + 32 * n)));
                let (c0, c1) = (all_crumbs(q0), all_crumbs(q1));
                let y8 = y.add(4 + 128 * n);
                let mut d = [vdupq_n_s32(0); 8];
                for s in 0..4 {
                    let bit = vdupq_n_u8(1 << (4 * n + s));
                    // 4 where the high bit is clear, 0 where it is set.
                    let (h0, h1) = (
                        vbicq_u8(four, vtstq_u8(hm0, bit)),
                        vbicq_u8(four, vtstq_u8(hm1, bit)),
                    );
                    let w0 = vsubq_s8(vreinterpretq_s8_u8(c0[s]), vreinterpretq_s8_u8(h0));
                    let w1 = vsubq_s8(vreinterpretq_s8_u8(c1[s]), vreinterpretq_s8_u8(h1));
                    let z = vdupq_n_s32(0);
                    d[2 * s] = dot_i8::<SDOT>(z, w0, load_i8(y8.add(32 * s)));
                    d[2 * s + 1] = dot_i8::<SDOT>(z, w1, load_i8(y8.add(32 * s + 16)));
                }
                isum = vaddq_s32(isum, scaled8(d, scales, n));
            }
            sum += f16_at(x.add(108)) * f32_at(y) * vaddvq_s32(isum) as f32;
        }
    }
    sum
}

/// The eight 6-bit scales and eight mins of a Q4_K/Q5_K block, as (scales, mins); each min
/// doubled into the two 16-sums of its 32 elements.
///
/// # Safety
/// `p` must be valid for reading the block's 12 scale bytes.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn scales_mins_k4(p: *const u8) -> (int8x8_t, uint8x16_t) {
    // SAFETY: forwarded to the caller.
    let packed = unsafe { std::slice::from_raw_parts(p, 12) };
    let (mut sc, mut mn) = ([0u8; 8], [0u8; 16]);
    for j in 0..8 {
        let (s, m) = scale_min_k4(j, packed);
        sc[j] = s;
        mn[2 * j] = m;
        mn[2 * j + 1] = m;
    }
    // SAFETY: reads of local arrays of the right sizes.
    unsafe { (vld1_s8(sc.as_ptr().cast()), vld1q_u8(mn.as_ptr())) }
}

/// Σ_j scale[j]·Σ lanes of d[j] for four 32-element products and four of the scales.
#[target_feature(enable = "neon")]
#[inline]
fn scaled4(d: [int32x4_t; 4], scales: int32x4_t) -> int32x4_t {
    vmulq_s32(sums4(d[0], d[1], d[2], d[3]), scales)
}

/// Q4_K (`FIVE` false): d | dmin | scales[12] | qs[128]. Q5_K (`FIVE`): d | dmin | scales[12]
/// | qh[32] | qs[128]. Elements 64j + l and 64j + 32 + l (l < 32) are the low and high nibbles
/// of qs[32j + l], plus 16 where bit 2j (low) or 2j + 1 (high) of qh[l] is set; sub-blocks of 32.
///
/// # Safety
/// `w` and `a` must hold the same number of whole blocks (144 or 176 bytes, and 292).
#[target_feature(enable = "neon")]
unsafe fn dot_q45_k<const SDOT: bool, const FIVE: bool>(w: &[u8], a: &[u8]) -> f32 {
    let bs = if FIVE { 176 } else { 144 };
    let qs_at = if FIVE { 48 } else { 16 };
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let m4 = vdupq_n_u8(0x0F);
    let mut sum = 0.0;
    for i in 0..w.len() / bs {
        // SAFETY: block i is within both rows.
        unsafe {
            let (x, y) = (wp.add(bs * i), ap.add(Q8K * i));
            let yd = f32_at(y);
            let (sc, mn) = scales_mins_k4(x.add(4));
            let mins = bsums_dot(y, mn);
            let (mut qh0, mut qh1) = if FIVE {
                (load_u8(x.add(16)), load_u8(x.add(32)))
            } else {
                (vdupq_n_u8(0), vdupq_n_u8(0))
            };
            let mut d = [vdupq_n_s32(0); 8];
            for j in 0..4 {
                let (q0, q1) = (
                    load_u8(x.add(qs_at + 32 * j)),
                    load_u8(x.add(qs_at + 16 + 32 * j)),
                );
                let (mut l0, mut l1) = (vandq_u8(q0, m4), vandq_u8(q1, m4));
                let (mut h0, mut h1) = (vshrq_n_u8::<4>(q0), vshrq_n_u8::<4>(q1));
                if FIVE {
                    let one = vdupq_n_u8(1);
                    let two = vdupq_n_u8(2);
                    l0 = vorrq_u8(l0, vshlq_n_u8::<4>(vandq_u8(qh0, one)));
                    l1 = vorrq_u8(l1, vshlq_n_u8::<4>(vandq_u8(qh1, one)));
                    h0 = vorrq_u8(h0, vshlq_n_u8::<3>(vandq_u8(qh0, two)));
                    h1 = vorrq_u8(h1, vshlq_n_u8::<3>(vandq_u8(qh1, two)));
                    qh0 = vshrq_n_u8::<2>(qh0);
                    qh1 = vshrq_n_u8::<2>(qh1);
                }
                let y8 = y.add(4 + 64 * j);
                let z = vdupq_n_s32(0);
                let lo = dot_i8::<SDOT>(z, vreinterpretq_s8_u8(l0), load_i8(y8));
                d[2 * j] = dot_i8::<SDOT>(lo, vreinterpretq_s8_u8(l1), load_i8(y8.add(16)));
                let hi = dot_i8::<SDOT>(z, vreinterpretq_s8_u8(h0), load_i8(y8.add(32)));
                d[2 * j + 1] = dot_i8::<SDOT>(hi, vreinterpretq_s8_u8(h1), load_i8(y8.add(48)));
            }
            let s = vmovl_s8(sc);
            let isum = vaddq_s32(
                scaled4([d[0], d[1], d[2], d[3]], vmovl_s16(vget_low_s16(s))),
                scaled4([d[4], d[5], d[6], d[7]], vmovl_high_s16(s)),
            );
            let (dd, dmin) = (yd * f16_at(x), yd * f16_at(x.add(2)));
            sum += dd * vaddvq_s32(isum) as f32 - dmin * mins as f32;
        }
    }
    sum
}

/// # Safety
/// As [`dot_q45_k`].
#[target_feature(enable = "neon")]
pub(super) unsafe fn dot_q4_k<const SDOT: bool>(w: &[u8], a: &[u8]) -> f32 {
    // SAFETY: forwarded to the caller.
    unsafe { dot_q45_k::<SDOT, false>(w, a) }
}

/// # Safety
/// As [`dot_q45_k`].
#[target_feature(enable = "neon")]
pub(super) unsafe fn dot_q5_k<const SDOT: bool>(w: &[u8], a: &[u8]) -> f32 {
    // SAFETY: forwarded to the caller.
    unsafe { dot_q45_k::<SDOT, true>(w, a) }
}

/// Q6_K: ql[128] | qh[64] | scales[16] i8 | d. In half n (128 elements), element l, l + 32,
/// l + 64, l + 96 (l < 32) take the low nibble of ql[l], the low nibble of ql[l + 32], the high
/// nibble of ql[l], the high nibble of ql[l + 32], with bits 0-1, 2-3, 4-5, 6-7 of qh[l] on top,
/// less 32; sub-blocks of 16.
///
/// # Safety
/// `w` and `a` must hold the same number of whole blocks (210 and 292 bytes).
#[target_feature(enable = "neon")]
pub(super) unsafe fn dot_q6_k<const SDOT: bool>(w: &[u8], a: &[u8]) -> f32 {
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let m4 = vdupq_n_u8(0x0F);
    let m3 = vdupq_n_u8(0x30);
    let bias = vdupq_n_s8(32);
    let mut sum = 0.0;
    for i in 0..w.len() / 210 {
        // SAFETY: block i is within both rows.
        unsafe {
            let (x, y) = (wp.add(210 * i), ap.add(Q8K * i));
            let scales = vld1q_s8(x.add(192).cast());
            let mut isum = vdupq_n_s32(0);
            for n in 0..2 {
                let ql = x.add(64 * n);
                let (qh0, qh1) = (load_u8(x.add(128 + 32 * n)), load_u8(x.add(144 + 32 * n)));
                let ql = [0, 16, 32, 48].map(|o| load_u8(ql.add(o)));
                let v = [
                    vorrq_u8(
                        vandq_u8(ql[0], m4),
                        vshlq_n_u8::<4>(vandq_u8(qh0, vdupq_n_u8(3))),
                    ),
                    vorrq_u8(
                        vandq_u8(ql[1], m4),
                        vshlq_n_u8::<4>(vandq_u8(qh1, vdupq_n_u8(3))),
                    ),
                    vorrq_u8(vandq_u8(ql[2], m4), vandq_u8(vshlq_n_u8::<2>(qh0), m3)),
                    vorrq_u8(vandq_u8(ql[3], m4), vandq_u8(vshlq_n_u8::<2>(qh1), m3)),
                    vorrq_u8(vshrq_n_u8::<4>(ql[0]), vandq_u8(qh0, m3)),
                    vorrq_u8(vshrq_n_u8::<4>(ql[1]), vandq_u8(qh1, m3)),
                    vorrq_u8(vshrq_n_u8::<4>(ql[2]), vandq_u8(vshrq_n_u8::<2>(qh0), m3)),
                    vorrq_u8(vshrq_n_u8::<4>(ql[3]), vandq_u8(vshrq_n_u8::<2>(qh1), m3)),
                ];
                let y8 = y.add(4 + 128 * n);
                let mut d = [vdupq_n_s32(0); 8];
                for k in 0..8 {
                    let q = vsubq_s8(vreinterpretq_s8_u8(v[k]), bias);
                    d[k] = dot_i8::<SDOT>(vdupq_n_s32(0), q, load_i8(y8.add(16 * k)));
                }
                isum = vaddq_s32(isum, scaled8(d, scales, n));
            }
            sum += f16_at(x.add(208)) * f32_at(y) * vaddvq_s32(isum) as f32;
        }
    }
    sum
}
