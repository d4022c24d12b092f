//! Row dot products of the k-quants (256-element super-blocks) with Q8_K activations, after
//! ggml's AVX2 kernels: per super-block the sub-block scales multiply 16-bit pair sums
//! (`madd`), so the whole super-block accumulates in integers and costs one float FMA.
//!
//! Layouts (byte offsets): Q2_K scales[16]@0 qs[64]@16 d@80 dmin@82;
//! Q3_K hmask[32]@0 qs[64]@32 scales[12]@96 d@108; Q4_K d@0 dmin@2 scales[12]@4 qs[128]@16;
//! Q5_K d@0 dmin@2 scales[12]@4 qh[32]@16 qs[128]@48; Q6_K ql[128]@0 qh[64]@128
//! scales[16]@192 d@208; Q8_K d(f32)@0 qs[256]@4 bsums[16](i16)@260.

use std::arch::x86_64::*;

use super::{f16_bcast, hsum_ps, load128, load256, prefetch_ahead, software_prefetch};
use crate::dequant::q3_k_scales;

const Q8K: usize = 292;
const Q8K_SUMS: usize = 260;

/// `_mm256_shuffle_epi8` masks that spread 16-bit scale `2i` over the low 128-bit lane and
/// `2i + 1` over the high one (scales held as eight i16, the same in both lanes).
const SHUF_PAIR: [[u8; 32]; 4] = {
    let mut m = [[0u8; 32]; 4];
    let mut i = 0;
    while i < 4 {
        let mut b = 0;
        while b < 16 {
            m[i][b] = (4 * i + b % 2) as u8;
            m[i][16 + b] = (4 * i + 2 + b % 2) as u8;
            b += 1;
        }
        i += 1;
    }
    m
};

/// Masks that spread 16-bit scale `i` over the whole register.
const SHUF_ONE: [[u8; 32]; 8] = {
    let mut m = [[0u8; 32]; 8];
    let mut i = 0;
    while i < 8 {
        let mut b = 0;
        while b < 32 {
            m[i][b] = (2 * i + b % 2) as u8;
            b += 1;
        }
        i += 1;
    }
    m
};

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn shuf(m: &[u8; 32]) -> __m256i {
    // SAFETY: `m` is 32 readable bytes.
    unsafe { load256(m.as_ptr()) }
}

/// The f32 scale of the Q8_K block at `y`.
///
/// # Safety
/// `y` must point at a whole Q8_K block.
#[inline(always)]
unsafe fn q8k_d(y: *const u8) -> f32 {
    // SAFETY: forwarded to the caller.
    unsafe { y.cast::<f32>().read_unaligned() }
}

/// The f16 at `p` times `by`, in all eight lanes: kept in vector registers throughout, as a
/// scalar f16 conversion may be emitted as `vpinsrw` into a busy register (a false
/// dependency on it).
///
/// # Safety
/// `p` must be valid for reading two bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn scale8(p: *const u8, by: f32) -> __m256 {
    // SAFETY: forwarded to the caller.
    _mm256_mul_ps(unsafe { f16_bcast(p) }, _mm256_set1_ps(by))
}

/// Unpacks the 12 packed bytes of Q4_K/Q5_K scales and mins into 8 scales then 8 mins
/// (ggml's `get_scale_min_k4`, four at a time).
#[inline(always)]
pub(crate) fn k4_scales_mins(packed: &[u8]) -> [u32; 4] {
    const KM1: u32 = 0x3f3f_3f3f;
    const KM2: u32 = 0x0f0f_0f0f;
    const KM3: u32 = 0x0303_0303;
    let w = |i: usize| u32::from_le_bytes(packed[4 * i..4 * i + 4].try_into().unwrap());
    let (u0, u1, u2) = (w(0), w(1), w(2));
    [
        u0 & KM1,
        (u2 & KM2) | (((u0 >> 6) & KM3) << 4),
        u1 & KM1,
        ((u2 >> 4) & KM2) | (((u1 >> 6) & KM3) << 4),
    ]
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_q2_k(w: &[u8], a: &[u8]) -> f32 {
    let m3 = _mm256_set1_epi8(3);
    let mut acc = _mm256_setzero_ps();
    for (x, yb) in w.chunks_exact(84).zip(a.chunks_exact(Q8K)) {
        let (xp, y) = (x.as_ptr(), yb.as_ptr());
        // SAFETY: `x` is a whole Q2_K block and `yb` a whole Q8_K block.
        unsafe {
            let yd = q8k_d(y);
            let d = scale8(xp.add(80), yd);
            let dmin = scale8(xp.add(82), -yd);
            let sc = load128(xp);
            let scales8 = _mm_and_si128(sc, _mm_set1_epi8(0xF));
            let mins8 = _mm_and_si128(_mm_srli_epi16::<4>(sc), _mm_set1_epi8(0xF));
            let prod = _mm256_madd_epi16(_mm256_cvtepi8_epi16(mins8), load256(y.add(Q8K_SUMS)));
            acc = _mm256_fmadd_ps(dmin, _mm256_cvtepi32_ps(prod), acc);
            let all = _mm256_cvtepi8_epi16(scales8);
            let halves = [
                _mm256_permute2x128_si256::<0x00>(all, all),
                _mm256_permute2x128_si256::<0x11>(all, all),
            ];
            let mut sumi = _mm256_setzero_si256();
            for (j, &scales) in halves.iter().enumerate() {
                let bits = load256(xp.add(16 + 32 * j));
                let q8 = y.add(4 + 128 * j);
                for (s, m) in SHUF_PAIR.iter().enumerate() {
                    let q2 = _mm256_and_si256(
                        _mm256_srl_epi16(bits, _mm_cvtsi32_si128(2 * s as i32)),
                        m3,
                    );
                    let p = _mm256_maddubs_epi16(q2, load256(q8.add(32 * s)));
                    let p = _mm256_madd_epi16(_mm256_shuffle_epi8(scales, shuf(m)), p);
                    sumi = _mm256_add_epi32(sumi, p);
                }
            }
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
        }
    }
    hsum_ps(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_q3_k(w: &[u8], a: &[u8]) -> f32 {
    let m3 = _mm256_set1_epi8(3);
    let mut acc = _mm256_setzero_ps();
    for (x, yb) in w.chunks_exact(110).zip(a.chunks_exact(Q8K)) {
        let (xp, y) = (x.as_ptr(), yb.as_ptr());
        let sc = q3_k_scales(&x[96..108]);
        // SAFETY: `x` is a whole Q3_K block, `yb` a whole Q8_K block, `sc` 16 bytes.
        unsafe {
            let d = scale8(xp.add(108), q8k_d(y));
            let all = _mm256_cvtepi8_epi16(load128(sc.as_ptr().cast()));
            let halves = [
                _mm256_permute2x128_si256::<0x00>(all, all),
                _mm256_permute2x128_si256::<0x11>(all, all),
            ];
            // Where a high bit is clear the weight is 4 lower: subtract 4·y there.
            let hbits = load256(xp);
            let mut sumi = _mm256_setzero_si256();
            for (j, &scales) in halves.iter().enumerate() {
                let bits = load256(xp.add(32 + 32 * j));
                let q8 = y.add(4 + 128 * j);
                for (s, m) in SHUF_PAIR.iter().enumerate() {
                    let bit = 4 * j + s;
                    let shift = _mm_cvtsi32_si128(2 * s as i32);
                    let q3l = _mm256_and_si256(_mm256_srl_epi16(bits, shift), m3);
                    let mask = _mm256_set1_epi8(1 << bit);
                    let clear =
                        _mm256_cmpeq_epi8(_mm256_and_si256(hbits, mask), _mm256_setzero_si256());
                    let q3h = _mm256_and_si256(clear, _mm256_set1_epi8(4));
                    let y8 = load256(q8.add(32 * s));
                    let p = _mm256_sub_epi16(
                        _mm256_maddubs_epi16(q3l, y8),
                        _mm256_maddubs_epi16(q3h, y8),
                    );
                    let p = _mm256_madd_epi16(_mm256_shuffle_epi8(scales, shuf(m)), p);
                    sumi = _mm256_add_epi32(sumi, p);
                }
            }
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
        }
    }
    hsum_ps(acc)
}

/// Q4_K and Q5_K share everything but the fifth bit.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dot_q45_k<const FIVE: bool>(w: &[u8], a: &[u8]) -> f32 {
    let bs = if FIVE { 176 } else { 144 };
    let m4 = _mm256_set1_epi8(0xF);
    let mut acc = _mm256_setzero_ps();
    let mut acc_m = _mm_setzero_ps();
    let pf = software_prefetch();
    for (x, yb) in w.chunks_exact(bs).zip(a.chunks_exact(Q8K)) {
        let (xp, y) = (x.as_ptr(), yb.as_ptr());
        prefetch_ahead(xp, bs, pf);
        let sm = k4_scales_mins(&x[4..16]);
        // SAFETY: `x` is a whole Q4_K/Q5_K block, `yb` a whole Q8_K block, `sm` 16 bytes.
        unsafe {
            let yd = q8k_d(y);
            let d = scale8(xp, yd);
            let dmin = _mm256_castps256_ps128(scale8(xp.add(2), -yd));
            let mins_scales = _mm256_cvtepu8_epi16(load128(sm.as_ptr().cast()));
            let sums = load256(y.add(Q8K_SUMS));
            let sums32 = _mm_hadd_epi16(
                _mm256_castsi256_si128(sums),
                _mm256_extracti128_si256::<1>(sums),
            );
            let prod = _mm_madd_epi16(_mm256_extracti128_si256::<1>(mins_scales), sums32);
            acc_m = _mm_fmadd_ps(dmin, _mm_cvtepi32_ps(prod), acc_m);
            let sc = _mm256_castsi256_si128(mins_scales);
            let scales = _mm256_set_m128i(sc, sc);
            let qs = xp.add(if FIVE { 48 } else { 16 });
            let hbits = if FIVE {
                load256(xp.add(16))
            } else {
                _mm256_setzero_si256()
            };
            let mut sumi = _mm256_setzero_si256();
            for j in 0..4 {
                let bits = load256(qs.add(32 * j));
                let mut lo = _mm256_and_si256(bits, m4);
                let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4);
                if FIVE {
                    // Bit 2j of qh[l] is the fifth bit of element 64j + l, bit 2j+1 of 64j+32+l.
                    let b0 = _mm256_set1_epi8(1 << (2 * j));
                    let b1 = _mm256_set1_epi8(1 << (2 * j + 1));
                    let set0 = _mm256_cmpeq_epi8(_mm256_and_si256(hbits, b0), b0);
                    let set1 = _mm256_cmpeq_epi8(_mm256_and_si256(hbits, b1), b1);
                    lo = _mm256_or_si256(lo, _mm256_and_si256(set0, _mm256_set1_epi8(16)));
                    hi = _mm256_or_si256(hi, _mm256_and_si256(set1, _mm256_set1_epi8(16)));
                }
                let q8 = y.add(4 + 64 * j);
                let pl = _mm256_maddubs_epi16(lo, load256(q8));
                let ph = _mm256_maddubs_epi16(hi, load256(q8.add(32)));
                let pl = _mm256_madd_epi16(_mm256_shuffle_epi8(scales, shuf(&SHUF_ONE[2 * j])), pl);
                let ph =
                    _mm256_madd_epi16(_mm256_shuffle_epi8(scales, shuf(&SHUF_ONE[2 * j + 1])), ph);
                sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
            }
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
        }
    }
    let m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
    let m = _mm_add_ss(m, _mm_movehdup_ps(m));
    hsum_ps(acc) + _mm_cvtss_f32(m)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_q4_k(w: &[u8], a: &[u8]) -> f32 {
    dot_q45_k::<false>(w, a)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_q5_k(w: &[u8], a: &[u8]) -> f32 {
    dot_q45_k::<true>(w, a)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_q6_k(w: &[u8], a: &[u8]) -> f32 {
    let m4 = _mm256_set1_epi8(0xF);
    let m3 = _mm256_set1_epi8(3);
    let mut acc = _mm256_setzero_ps();
    let pf = software_prefetch();
    for (x, yb) in w.chunks_exact(210).zip(a.chunks_exact(Q8K)) {
        let (xp, y) = (x.as_ptr(), yb.as_ptr());
        prefetch_ahead(xp, 210, pf);
        // SAFETY: `x` is a whole Q6_K block and `yb` a whole Q8_K block.
        unsafe {
            let d = scale8(xp.add(208), q8k_d(y));
            let scales = load128(xp.add(192));
            // The weights are stored as q + 32; the 32·Σ scale·y term comes off at the end,
            // from the block sums.
            let offset = _mm256_slli_epi32::<5>(_mm256_madd_epi16(
                load256(y.add(Q8K_SUMS)),
                _mm256_cvtepi8_epi16(scales),
            ));
            let mut sumi = _mm256_setzero_si256();
            for j in 0..2 {
                let ql0 = load256(xp.add(64 * j));
                let ql1 = load256(xp.add(64 * j + 32));
                let qh = load256(xp.add(128 + 32 * j));
                let q = [
                    _mm256_or_si256(
                        _mm256_and_si256(ql0, m4),
                        _mm256_slli_epi16::<4>(_mm256_and_si256(qh, m3)),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(ql1, m4),
                        _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<2>(qh), m3)),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16::<4>(ql0), m4),
                        _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<4>(qh), m3)),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), m4),
                        _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<6>(qh), m3)),
                    ),
                ];
                for (k, &qk) in q.iter().enumerate() {
                    // Scales 8j + 2k and 8j + 2k + 1 cover the 32 elements of this register.
                    let s = 8 * j + 2 * k;
                    let pair = _mm_set_epi64x(
                        0x0101_0101_0101_0101 * (s as i64 + 1),
                        0x0101_0101_0101_0101 * s as i64,
                    );
                    let sc = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, pair));
                    let p = _mm256_maddubs_epi16(qk, load256(y.add(4 + 128 * j + 32 * k)));
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(sc, p));
                }
            }
            let sumi = _mm256_sub_epi32(sumi, offset);
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
        }
    }
    hsum_ps(acc)
}
