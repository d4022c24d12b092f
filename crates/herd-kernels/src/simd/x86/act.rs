//! Activation quantisation with AVX2, byte-identical to `quantize::quantize_activations`: the
//! same float operations in the same order per element (scale by `127/amax` or `-127/max`,
//! round half to even), only eight elements at a time.

use std::arch::x86_64::*;

use crate::types::{GgmlType, QK_K, put_f16};

pub(super) fn quantize(t: GgmlType, src: &[f32], dst: &mut [u8]) -> bool {
    if t.row_bytes(src.len()) != Some(dst.len()) {
        return false; // let the scalar path report it
    }
    match t {
        // SAFETY (all three): reached only through `simd::quantize_activations` at
        // `Isa::Avx2`, which is only chosen on CPUs with AVX2, FMA and F16C; sizes checked.
        GgmlType::Q8_0 => unsafe { q8_0(src, dst, 34, 2, None) },
        GgmlType::Q8_1 => unsafe { q8_0(src, dst, 36, 4, None) },
        GgmlType::Q8_K => unsafe { q8_k(src, dst) },
        GgmlType::F16 => unsafe { to_f16(src, dst) },
        _ => return false,
    }
    true
}

/// Q8_0 (`bs == 34`, quants at 2) or Q8_1 (`bs == 36`, quants at 4, with `d·Σq` at 2).
/// When `sums` is given, also writes each block's integer Σq there.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `dst` must hold `src.len() / 32` blocks of `bs`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn q8_0(
    src: &[f32],
    dst: &mut [u8],
    bs: usize,
    qs: usize,
    mut sums: Option<&mut [i32]>,
) {
    let sign = _mm256_set1_ps(-0.0);
    for (b, (x, y)) in src
        .chunks_exact(32)
        .zip(dst.chunks_exact_mut(bs))
        .enumerate()
    {
        // SAFETY: `x` holds 32 floats.
        let v: [__m256; 4] =
            std::array::from_fn(|k| unsafe { _mm256_loadu_ps(x.as_ptr().add(8 * k)) });
        let m = _mm256_max_ps(
            _mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
            _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])),
        );
        let amax = hmax(m);
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        put_f16(y, 0, d);
        let q = quantize32(v, _mm256_set1_ps(id));
        // SAFETY: `y` has 32 bytes from `qs`.
        unsafe { _mm256_storeu_si256(y.as_mut_ptr().add(qs).cast(), q.0) };
        if bs == 36 {
            put_f16(y, 2, d * q.1 as f32);
        }
        if let Some(s) = sums.as_deref_mut() {
            s[b] = q.1;
        }
    }
}

/// Largest lane.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hmax(v: __m256) -> f32 {
    let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    let m = _mm_max_ss(m, _mm_movehdup_ps(m));
    _mm_cvtss_f32(m)
}

/// `round_ties_even(x·scale)` of 32 floats as 32 bytes in order, and their sum.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn quantize32(v: [__m256; 4], scale: __m256) -> (__m256i, i32) {
    const RN: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    let i: [__m256i; 4] = std::array::from_fn(|k| {
        _mm256_cvtps_epi32(_mm256_round_ps::<RN>(_mm256_mul_ps(v[k], scale)))
    });
    let s = _mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3]));
    // The packs work per 128-bit lane; the permutation puts the bytes back in order.
    let p = _mm256_packs_epi16(
        _mm256_packs_epi32(i[0], i[1]),
        _mm256_packs_epi32(i[2], i[3]),
    );
    let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    (p, super::hsum_i32(s))
}

/// Q8_K as `quantize_row`'s reference: scale `-127/max` where `max` is the first element of
/// largest magnitude, quants clamped at 127, sums of 16.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `dst` must hold `src.len() / 256` blocks.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_k(src: &[f32], dst: &mut [u8]) {
    let sign = _mm256_set1_ps(-0.0);
    for (x, y) in src.chunks_exact(QK_K).zip(dst.chunks_exact_mut(292)) {
        let mut m = _mm256_setzero_ps();
        for c in x.chunks_exact(8) {
            // SAFETY: `c` holds 8 floats.
            m = _mm256_max_ps(
                m,
                _mm256_andnot_ps(sign, unsafe { _mm256_loadu_ps(c.as_ptr()) }),
            );
        }
        let amax = hmax(m);
        if amax == 0.0 {
            y.fill(0);
            continue;
        }
        // The reference keeps the first element whose magnitude beats all before it.
        let max = *x.iter().find(|v| v.abs() == amax).unwrap_or(&amax);
        let iscale = -127.0 / max;
        let sc = _mm256_set1_ps(iscale);
        for (k, c) in x.chunks_exact(32).enumerate() {
            // SAFETY: `c` holds 32 floats.
            let v: [__m256; 4] =
                std::array::from_fn(|j| unsafe { _mm256_loadu_ps(c.as_ptr().add(8 * j)) });
            let q = quantize32_clamped(v, sc);
            // SAFETY: quants `32k..32k+32` of the block lie at `4 + 32k`.
            unsafe { _mm256_storeu_si256(y.as_mut_ptr().add(4 + 32 * k).cast(), q) };
            let s = _mm256_madd_epi16(
                _mm256_maddubs_epi16(_mm256_set1_epi8(1), q),
                _mm256_set1_epi16(1),
            );
            // Lanes 0-3 sum the first 16 quants, lanes 4-7 the second.
            let h = _mm256_hadd_epi32(s, s);
            let h = _mm256_hadd_epi32(h, h);
            let lo = _mm256_cvtsi256_si32(h) as i16;
            let hi = _mm256_extract_epi32::<4>(h) as i16;
            let off = 4 + QK_K + 4 * k;
            y[off..off + 2].copy_from_slice(&lo.to_le_bytes());
            y[off + 2..off + 4].copy_from_slice(&hi.to_le_bytes());
        }
        y[0..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
    }
}

/// As `quantize32` without the sum, clamping at 127 first as the Q8_K reference does.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn quantize32_clamped(v: [__m256; 4], scale: __m256) -> __m256i {
    const RN: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    let top = _mm256_set1_epi32(127);
    let i: [__m256i; 4] = std::array::from_fn(|k| {
        _mm256_min_epi32(
            _mm256_cvtps_epi32(_mm256_round_ps::<RN>(_mm256_mul_ps(v[k], scale))),
            top,
        )
    });
    let p = _mm256_packs_epi16(
        _mm256_packs_epi32(i[0], i[1]),
        _mm256_packs_epi32(i[2], i[3]),
    );
    _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// f32 to f16 bytes, rounding to nearest even as `half` does.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `dst` must hold `2 * src.len()` bytes.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn to_f16(src: &[f32], dst: &mut [u8]) {
    let n8 = src.len() / 8 * 8;
    for i in (0..n8).step_by(8) {
        // SAFETY: elements `i..i+8` exist in `src` and bytes `2i..2i+16` in `dst`.
        unsafe {
            let h =
                _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(src.as_ptr().add(i)));
            _mm_storeu_si128(dst.as_mut_ptr().add(2 * i).cast(), h);
        }
    }
    for i in n8..src.len() {
        put_f16(dst, 2 * i, src[i]);
    }
}

/// `src` rounded to f16 and back, as f32: the values ggml's F16 dot product multiplies.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `dst.len() == src.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn round_f16(src: &[f32], dst: &mut [f32]) {
    let n8 = src.len() / 8 * 8;
    for i in (0..n8).step_by(8) {
        // SAFETY: elements `i..i+8` exist in both.
        unsafe {
            let h =
                _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(src.as_ptr().add(i)));
            _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
        }
    }
    for i in n8..src.len() {
        dst[i] = half::f16::from_f32(src[i]).to_f32();
    }
}
