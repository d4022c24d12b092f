//! NEON kernels (aarch64), with and without the ARMv8.2 dot-product instruction `sdot`.
//!
//! Advanced SIMD is part of every aarch64 CPU, so the `Isa::Neon` kernels run anywhere;
//! `Isa::NeonDot` swaps the widening multiplies for `sdot` (Cortex-A55/A76 and later, Apple M1,
//! Graviton 2), which `super` hands out only where the CPU reports it. The two share every
//! kernel: a const parameter `SDOT` picks the integer product in [`dot_i8`].
//!
//! Two instructions come through `asm!` because their intrinsics are not stable Rust: `sdot`,
//! and `fcvtl`/`fcvtl2` (f16 -> f32; the intrinsics take the unstable `float16x4_t`). Both are
//! plain register-to-register instructions.
// Kernels walk several arrays (quants, scales, lanes) in lockstep by index; iterator chains
// would hide which element goes with which.
#![allow(clippy::needless_range_loop)]

mod float;
mod k_quants;
mod q_small;

use std::arch::aarch64::*;
use std::arch::asm;

use super::{FloatDot, QuantDot, check};
use crate::types::GgmlType;

macro_rules! quant_wrappers {
    ($($name:ident, $name_sdot:ident: $t:expr => $m:ident::$f:ident;)*) => {
        $(
            fn $name(w: &[u8], a: &[u8]) -> f32 {
                check($t, w, a);
                // SAFETY: `check` validated the lengths; NEON is part of every aarch64 CPU.
                unsafe { $m::$f::<false>(w, a) }
            }
            fn $name_sdot(w: &[u8], a: &[u8]) -> f32 {
                check($t, w, a);
                // SAFETY: only handed out by `quant_dot(true, _)`, whose caller checked that the
                // CPU has `sdot`; `check` validated the lengths.
                unsafe { $m::$f::<true>(w, a) }
            }
        )*
    };
}

quant_wrappers! {
    q4_0_dot, q4_0_sdot: GgmlType::Q4_0 => q_small::dot_q4_0;
    q4_1_dot, q4_1_sdot: GgmlType::Q4_1 => q_small::dot_q4_1;
    q5_0_dot, q5_0_sdot: GgmlType::Q5_0 => q_small::dot_q5_0;
    q5_1_dot, q5_1_sdot: GgmlType::Q5_1 => q_small::dot_q5_1;
    q8_0_dot, q8_0_sdot: GgmlType::Q8_0 => q_small::dot_q8_0;
    q2_k_dot, q2_k_sdot: GgmlType::Q2_K => k_quants::dot_q2_k;
    q3_k_dot, q3_k_sdot: GgmlType::Q3_K => k_quants::dot_q3_k;
    q4_k_dot, q4_k_sdot: GgmlType::Q4_K => k_quants::dot_q4_k;
    q5_k_dot, q5_k_sdot: GgmlType::Q5_K => k_quants::dot_q5_k;
    q6_k_dot, q6_k_sdot: GgmlType::Q6_K => k_quants::dot_q6_k;
}

fn f16_dot(w: &[u8], a: &[u8]) -> f32 {
    check(GgmlType::F16, w, a);
    // SAFETY: `check` validated the lengths; NEON is part of every aarch64 CPU.
    unsafe { float::dot_f16_f16(w, a) }
}

fn bf16_dot(w: &[u8], a: &[u8]) -> f32 {
    check(GgmlType::BF16, w, a);
    // SAFETY: as `f16_dot`.
    unsafe { float::dot_bf16_bf16(w, a) }
}

/// The quantised dot product for weights of type `t`, with `sdot` where `sdot` is set.
pub(crate) fn quant_dot(sdot: bool, t: GgmlType) -> QuantDot {
    match (t, sdot) {
        (GgmlType::F16, _) => f16_dot,
        (GgmlType::BF16, _) => bf16_dot,
        (GgmlType::Q4_0, false) => q4_0_dot,
        (GgmlType::Q4_0, true) => q4_0_sdot,
        (GgmlType::Q4_1, false) => q4_1_dot,
        (GgmlType::Q4_1, true) => q4_1_sdot,
        (GgmlType::Q5_0, false) => q5_0_dot,
        (GgmlType::Q5_0, true) => q5_0_sdot,
        (GgmlType::Q5_1, false) => q5_1_dot,
        (GgmlType::Q5_1, true) => q5_1_sdot,
        (GgmlType::Q8_0, false) => q8_0_dot,
        (GgmlType::Q8_0, true) => q8_0_sdot,
        (GgmlType::Q2_K, false) => q2_k_dot,
        (GgmlType::Q2_K, true) => q2_k_sdot,
        (GgmlType::Q3_K, false) => q3_k_dot,
        (GgmlType::Q3_K, true) => q3_k_sdot,
        (GgmlType::Q4_K, false) => q4_k_dot,
        (GgmlType::Q4_K, true) => q4_k_sdot,
        (GgmlType::Q5_K, false) => q5_k_dot,
        (GgmlType::Q5_K, true) => q5_k_sdot,
        (GgmlType::Q6_K, false) => q6_k_dot,
        (GgmlType::Q6_K, true) => q6_k_sdot,
        (GgmlType::F32 | GgmlType::Q8_1 | GgmlType::Q8_K, _) => {
            panic!("quant_dot called with {t}, which has no quantised dot product")
        }
    }
}

// SAFETY: only handed out by `float_dot`, whose caller checked the CPU's features; the
// wrappers check the lengths.
float_kernels!(float::dot_f32_f32, float::dot_f16_f32, float::dot_bf16_f32);

// ---- helpers shared by the kernels ----

/// `acc` plus the products of the signed bytes of `a` and `b`, four per i32 lane.
///
/// Which four products land in which lane differs between the two paths (`sdot` sums bytes
/// 4i..4i+3; the widening path bytes 2i, 2i+1, 8+2i, 9+2i), so callers only ever use sums over
/// whole vectors.
#[target_feature(enable = "neon")]
#[inline]
pub(crate) fn dot_i8<const SDOT: bool>(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    if SDOT {
        let mut acc = acc;
        // SAFETY: a register-only instruction; the `SDOT` kernels are only handed out where the
        // CPU has it (`super::detect_hw`).
        unsafe {
            asm!(
                ".arch_extension dotprod",
                "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
                acc = inout(vreg) acc,
                a = in(vreg) a,
                b = in(vreg) b,
                options(pure, nomem, nostack, preserves_flags)
            );
        }
        acc
    } else {
        // i8·i8 fits i16; pairs of those are added into the i32 lanes.
        let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
        let hi = vmull_high_s8(a, b);
        vpadalq_s16(vpadalq_s16(acc, lo), hi)
    }
}

/// The sums of four i32 vectors, one per lane: `[Σa, Σb, Σc, Σd]`.
#[target_feature(enable = "neon")]
#[inline]
pub(crate) fn sums4(a: int32x4_t, b: int32x4_t, c: int32x4_t, d: int32x4_t) -> int32x4_t {
    vpaddq_s32(vpaddq_s32(a, b), vpaddq_s32(c, d))
}

/// The low four f16 of `h` as f32 (`fcvtl`: exact, subnormals, infinities and NaN included).
#[target_feature(enable = "neon")]
#[inline]
pub(crate) fn f16_lo(h: uint16x8_t) -> float32x4_t {
    let r: float32x4_t;
    // SAFETY: a register-only instruction of base AArch64.
    unsafe {
        asm!(
            "fcvtl {r:v}.4s, {h:v}.4h",
            r = lateout(vreg) r,
            h = in(vreg) h,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    r
}

/// The high four f16 of `h` as f32 (`fcvtl2`).
#[target_feature(enable = "neon")]
#[inline]
pub(crate) fn f16_hi(h: uint16x8_t) -> float32x4_t {
    let r: float32x4_t;
    // SAFETY: a register-only instruction of base AArch64.
    unsafe {
        asm!(
            "fcvtl2 {r:v}.4s, {h:v}.8h",
            r = lateout(vreg) r,
            h = in(vreg) h,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    r
}

/// The f16 at `p` as f32.
///
/// # Safety
/// `p` must be valid for reading two bytes.
#[target_feature(enable = "neon")]
#[inline]
pub(crate) unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees two readable bytes.
    let bits = unsafe { p.cast::<u16>().read_unaligned() };
    vgetq_lane_f32::<0>(f16_lo(vdupq_n_u16(bits)))
}

/// The f32 at `p`.
///
/// # Safety
/// `p` must be valid for reading four bytes.
#[inline(always)]
pub(crate) unsafe fn f32_at(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees four readable bytes.
    unsafe { p.cast::<f32>().read_unaligned() }
}

/// 16 bytes at `p` (byte loads have no alignment to meet).
///
/// # Safety
/// `p` must be valid for reading 16 bytes.
#[target_feature(enable = "neon")]
#[inline]
pub(crate) unsafe fn load_u8(p: *const u8) -> uint8x16_t {
    // SAFETY: forwarded to the caller.
    unsafe { vld1q_u8(p) }
}

/// 16 signed bytes at `p`.
///
/// # Safety
/// `p` must be valid for reading 16 bytes.
#[target_feature(enable = "neon")]
#[inline]
pub(crate) unsafe fn load_i8(p: *const u8) -> int8x16_t {
    // SAFETY: forwarded to the caller.
    vreinterpretq_s8_u8(unsafe { vld1q_u8(p) })
}

/// Eight little-endian i16 at `p`.
///
/// # Safety
/// `p` must be valid for reading 16 bytes.
#[target_feature(enable = "neon")]
#[inline]
pub(crate) unsafe fn load_i16(p: *const u8) -> int16x8_t {
    // SAFETY: forwarded to the caller; loaded as bytes, so `p` need not be aligned.
    vreinterpretq_s16_u8(unsafe { vld1q_u8(p) })
}
