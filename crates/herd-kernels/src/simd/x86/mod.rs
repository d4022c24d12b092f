//! AVX2 + FMA + F16C kernels (x86-64).
//!
//! Everything here is compiled with `#[target_feature(enable = "avx2,fma,f16c")]` and reached
//! only through [`quant_dot`] / [`float_dot`] / [`quantize_activations`], which `super` calls
//! after checking the CPU has those features. The private safe wrappers below rely on that.
// Kernels walk several arrays (quants, scales, lanes) in lockstep by index; iterator chains
// would hide which element goes with which.
#![allow(clippy::needless_range_loop)]

pub(crate) mod act;
pub(crate) mod float;
mod k_quants;
mod q_small;

use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::{FloatDot, QuantDot, check};
use crate::types::GgmlType;

macro_rules! quant_wrappers {
    ($($name:ident: $t:expr => $imp:path;)*) => {
        $(
            fn $name(w: &[u8], a: &[u8]) -> f32 {
                check($t, w, a);
                // SAFETY: this wrapper is only handed out by `quant_dot`, whose caller checked
                // that the CPU has AVX2, FMA and F16C; `check` validated the lengths.
                unsafe { $imp(w, a) }
            }
        )*
    };
}

quant_wrappers! {
    f16_dot: GgmlType::F16 => float::dot_f16_f16;
    bf16_dot: GgmlType::BF16 => float::dot_bf16_bf16;
    q4_0_dot: GgmlType::Q4_0 => q_small::dot_q4_0;
    q4_1_dot: GgmlType::Q4_1 => q_small::dot_q4_1;
    q5_0_dot: GgmlType::Q5_0 => q_small::dot_q5_0;
    q5_1_dot: GgmlType::Q5_1 => q_small::dot_q5_1;
    q8_0_dot: GgmlType::Q8_0 => q_small::dot_q8_0;
    q2_k_dot: GgmlType::Q2_K => k_quants::dot_q2_k;
    q3_k_dot: GgmlType::Q3_K => k_quants::dot_q3_k;
    q4_k_dot: GgmlType::Q4_K => k_quants::dot_q4_k;
    q5_k_dot: GgmlType::Q5_K => k_quants::dot_q5_k;
    q6_k_dot: GgmlType::Q6_K => k_quants::dot_q6_k;
}

pub(crate) fn quant_dot(t: GgmlType) -> QuantDot {
    match t {
        GgmlType::F16 => f16_dot,
        GgmlType::BF16 => bf16_dot,
        GgmlType::Q4_0 => q4_0_dot,
        GgmlType::Q4_1 => q4_1_dot,
        GgmlType::Q5_0 => q5_0_dot,
        GgmlType::Q5_1 => q5_1_dot,
        GgmlType::Q8_0 => q8_0_dot,
        GgmlType::Q2_K => q2_k_dot,
        GgmlType::Q3_K => q3_k_dot,
        GgmlType::Q4_K => q4_k_dot,
        GgmlType::Q5_K => q5_k_dot,
        GgmlType::Q6_K => q6_k_dot,
        GgmlType::F32 | GgmlType::Q8_1 | GgmlType::Q8_K => {
            panic!("quant_dot called with {t}, which has no quantised dot product")
        }
    }
}

macro_rules! aux_wrappers {
    ($($name:ident: $t:expr => $imp:path;)*) => {
        $(
            fn $name(w: &[u8], a: &[u8], aux: &[u8]) -> f32 {
                check($t, w, a);
                assert_eq!(aux.len(), w.len() / $t.type_size() * 8, "{} dot: aux size", $t);
                // SAFETY: only handed out by `quant_dot_aux`, whose caller checked that the
                // CPU has AVX2, FMA and F16C; the lengths were checked just above.
                unsafe { $imp(w, a, aux) }
            }
        )*
    };
}

aux_wrappers! {
    q4_0_aux: GgmlType::Q4_0 => q_small::dot_q4_0_aux;
    q4_1_aux: GgmlType::Q4_1 => q_small::dot_q4_1_aux;
    q5_0_aux: GgmlType::Q5_0 => q_small::dot_q5_0_aux;
    q5_1_aux: GgmlType::Q5_1 => q_small::dot_q5_1_aux;
    q8_0_aux: GgmlType::Q8_0 => q_small::dot_q8_0_aux;
}

/// Row dots that also take the activations' per-block extras (see `q_small`), for the types
/// that have one.
pub(crate) fn quant_dot_aux(t: GgmlType) -> Option<super::AuxDot> {
    Some(match t {
        GgmlType::Q4_0 => q4_0_aux,
        GgmlType::Q4_1 => q4_1_aux,
        GgmlType::Q5_0 => q5_0_aux,
        GgmlType::Q5_1 => q5_1_aux,
        GgmlType::Q8_0 => q8_0_aux,
        _ => return None,
    })
}

fn q4_0_pairs(w: &[u8], a: &[u8], aux: &[u8]) -> f32 {
    check(GgmlType::Q4_0, w, a);
    let nb = w.len() / 18;
    assert_eq!(aux.len(), nb / 2 * 128 + nb % 2 * 8, "Q4_0 dot: aux size");
    // SAFETY: only handed out by `quant_dot_pairs`, whose caller checked that the CPU has
    // AVX2, FMA and F16C; the lengths were checked just above.
    unsafe { q_small::dot_pairs::<false>(w, a, aux) }
}

fn q5_0_pairs(w: &[u8], a: &[u8], aux: &[u8]) -> f32 {
    check(GgmlType::Q5_0, w, a);
    let nb = w.len() / 22;
    assert_eq!(aux.len(), nb / 2 * 128 + nb % 2 * 8, "Q5_0 dot: aux size");
    // SAFETY: as `q4_0_pairs`.
    unsafe { q_small::dot_pairs::<true>(w, a, aux) }
}

/// Row dots over activations with extras in pairs of blocks.
pub(crate) fn quant_dot_pairs(t: GgmlType) -> Option<super::AuxDot> {
    match t {
        GgmlType::Q4_0 => Some(q4_0_pairs),
        GgmlType::Q5_0 => Some(q5_0_pairs),
        _ => None,
    }
}

// SAFETY: only handed out by `float_dot`, whose caller checked the CPU's features; the
// wrappers check the lengths.
float_kernels!(float::dot_f32_f32, float::dot_f16_f32, float::dot_bf16_f32);

/// Quantises activations for a dot product with AVX2 when it has a kernel for `t`, producing
/// the same bytes as the scalar `quantize_activations`; `false` when it has none.
pub(crate) fn quantize_activations(t: GgmlType, src: &[f32], dst: &mut [u8]) -> bool {
    act::quantize(t, src, dst)
}

// ---- helpers shared by the kernels ----

/// Whether the tiled quantised products use AVX-512 VNNI (`vpdpbusd`): where the CPU has AVX-512
/// F, VL and VNNI, unless `HERD_VNNI=0` keeps the AVX2 tiles (to compare the two).
pub(crate) fn vnni() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    let has = *HAS.get_or_init(|| {
        std::env::var("HERD_VNNI").as_deref() != Ok("0")
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    });
    has && !VNNI_OFF.load(std::sync::atomic::Ordering::Relaxed)
}

/// Set by tests to run the AVX2 tiles on a CPU with VNNI too. Either path gives the same
/// products, so another test that runs while this is set is still checked, on the other path.
static VNNI_OFF: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[cfg(test)]
pub(crate) fn set_vnni_off(off: bool) {
    VNNI_OFF.store(off, std::sync::atomic::Ordering::Relaxed);
}

/// Whether decode's row dots ask for the weights ahead of the hardware prefetcher
/// ([`prefetch_ahead`]). Measured on the two machines this was tuned on: on an AVX2-only
/// Zen 3 it kept more reads in flight (TinyLlama F16 decode about +9 % tokens/s); on an
/// AVX-512 EPYC, whose hardware prefetcher keeps up on its own, the extra instructions cost
/// up to 25 % (Qwen F16 decode on one thread 22 -> 17 tokens/s) and no type gained. So it is
/// on where the CPU lacks AVX-512; `HERD_PREFETCH=0` or `1` overrides that.
pub(crate) fn software_prefetch() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| match std::env::var("HERD_PREFETCH").as_deref() {
        Ok("0") => false,
        Ok("1") => true,
        _ => !std::arch::is_x86_feature_detected!("avx512f"),
    })
}

/// When `on`, asks for the cache lines of the `len`-byte block 1 KiB after `p`: decoding
/// streams the weights once, and on some CPUs this keeps more reads in flight than the
/// hardware prefetcher alone (see [`software_prefetch`], which callers read once per row).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn prefetch_ahead(p: *const u8, len: usize, on: bool) {
    if !on {
        return;
    }
    let mut off = 0;
    while off < len {
        // A prefetch never faults, whatever the address.
        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(1024 + off).cast());
        off += 64;
    }
}

/// Sum of the eight lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Sum of the eight i32 lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// The f16 at `p` as f32 (F16C; the `half` crate may not know the CPU has it).
///
/// # Safety
/// `p` must be valid for reading two bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees two readable bytes.
    let bits = unsafe { p.cast::<u16>().read_unaligned() };
    // A broadcast, not `_mm_cvtsi32_si128`: for that LLVM may emit `vpinsrw` into whatever
    // register it has, which made the conversion wait on an unrelated accumulator.
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_set1_epi16(bits as i16)))
}

/// The f16 at `p` as f32 in all eight lanes.
///
/// # Safety
/// `p` must be valid for reading two bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn f16_bcast(p: *const u8) -> __m256 {
    // SAFETY: the caller guarantees two readable bytes.
    let bits = unsafe { p.cast::<u16>().read_unaligned() };
    _mm256_cvtph_ps(_mm_set1_epi16(bits as i16))
}

/// Broadcast of the 4 bytes at `p`.
///
/// # Safety
/// `p` must be valid for reading 4 bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn bcast4(p: *const u8) -> __m256i {
    // SAFETY: forwarded to the caller.
    _mm256_set1_epi32(unsafe { p.cast::<i32>().read_unaligned() })
}

/// # Safety
/// `p` must be valid for reading 32 bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn load256(p: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 32 readable bytes; the load is unaligned.
    unsafe { _mm256_loadu_si256(p.cast()) }
}

/// # Safety
/// `p` must be valid for reading 16 bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn load128(p: *const u8) -> __m128i {
    // SAFETY: the caller guarantees 16 readable bytes; the load is unaligned.
    unsafe { _mm_loadu_si128(p.cast()) }
}

/// The 32 nibbles of 16 bytes as 32 bytes in 0..16: low nibbles first, then high nibbles (the
/// element order of Q4_0/Q4_1/Q5_x blocks).
///
/// # Safety
/// `p` must be valid for reading 16 bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn nibbles32(p: *const u8) -> __m256i {
    // SAFETY: forwarded to the caller.
    let lo = unsafe { load128(p) };
    let both = _mm256_set_m128i(_mm_srli_epi16::<4>(lo), lo);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0F))
}

/// The 32 bits of a little-endian u32 as 32 bytes: 0xFF where the bit is set, 0 elsewhere.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn bytes_from_bits32(bits: u32) -> __m256i {
    // Byte i of the result reads byte i/8 of `bits` and tests bit i%8 with an OR-mask that sets
    // every other bit; equality with all-ones then means that bit was set.
    let shuf = _mm256_set_epi64x(
        0x0303_0303_0303_0303,
        0x0202_0202_0202_0202,
        0x0101_0101_0101_0101,
        0,
    );
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(bits as i32), shuf);
    let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe));
    _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
}

/// Σ x·y over pairs of signed bytes, four adjacent products summed per i32 lane.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn dot_i8_i32(x: __m256i, y: __m256i) -> __m256i {
    // maddubs wants one unsigned operand: move x's sign onto y.
    let p = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
    _mm256_madd_epi16(p, _mm256_set1_epi16(1))
}

/// Σ u·y over unsigned bytes `u` (< 128) and signed bytes `y`, per i32 lane of four.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn dot_u8_i32(u: __m256i, y: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, y), _mm256_set1_epi16(1))
}
