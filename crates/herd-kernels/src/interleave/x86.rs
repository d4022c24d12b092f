//! The AVX2 kernels for grouped weights (see the parent module for the layouts).
//!
//! Each kernel turns a 32-byte load of weights (or a few) into registers of quants, one row
//! per 32-bit lane, and `maddubs` each with 4 activation bytes broadcast; 4-bit products of 8
//! steps sum in 16 bits (at most 8·2·15·128 = 30720) before widening.
//! - Q4_K, per super-block: 32 loads; the low halves are sub-block `2j`, the high `2j + 1`,
//!   each `madd`-ed with its scale per row into i32 lanes; the mins come off through the
//!   activations' block sums. Q5_K alike, with 8 more loads of the words that hold the high
//!   quants' low bits (each step's load holds the low quants whole, see `q4_k`), and 4
//!   steps, not 8, summed in 16 bits.
//! - Q6_K, per super-block: 48 loads give 64 registers of 6-bit quants (see `q6_k`); as
//!   those reach 2·63·128 per pair, two steps sum in 16 bits before their sub-block's scale
//!   widens them; the zero point (32) comes off through the block sums.
//! - Q8_0, per block: 8 loads of signed quants; `maddubs` takes their magnitudes and the
//!   activations with their signs, and each step widens at once (2·127·127 fills 16 bits).
//! - Q4_0, Q4_1, Q5_0 and Q5_1, per block: 4 loads (and the word of Q5_0/Q5_1), the zero
//!   point (8, 16) off through the activation block's sum, or the min on through Q8_1's `s`.
//!
//! Where the CPU has AVX-512 VNNI, the kernels of [`super::vnni`] take over.

use std::arch::x86_64::*;
use std::ops::Range;

use super::GROUP;
use super::q4_k::{D, DMIN, MN, SC};
use super::vnni;
use super::{q4_k, q6_k, q8_0, q32};
use crate::matmul::SharedMut;
use crate::simd::x86::{bcast4, load128, load256, prefetch_ahead, software_prefetch};
use crate::types::GgmlType;

pub(super) const Q8K: usize = 292;

/// A group kernel: lane `r` of result `t` is row `r` of the group (`nb` blocks at `g`) · token
/// `t` (activation rows `arb` bytes apart at `a`, their block extras `zb` bytes apart at `z`,
/// read by the 32-element types only).
type Kernel<const N: usize> =
    unsafe fn(*const u8, usize, *const u8, usize, *const u8, usize) -> [__m256; N];

/// The kernel for grouped `dtype` and `N` tokens; the VNNI ones if `vnni`.
fn kernel<const N: usize>(dtype: GgmlType, vnni: bool) -> Kernel<N> {
    match dtype {
        GgmlType::Q4_K if vnni => vnni::dot_q4_k::<false, N>,
        GgmlType::Q5_K if vnni => vnni::dot_q4_k::<true, N>,
        GgmlType::Q4_K => dot_q4_k::<false, N>,
        GgmlType::Q5_K => dot_q4_k::<true, N>,
        GgmlType::Q6_K if vnni => vnni::dot_q6_k::<N>,
        GgmlType::Q6_K => dot_q6_k::<N>,
        GgmlType::Q8_0 if vnni => vnni::dot_q8_0::<N>,
        GgmlType::Q8_0 => dot_q8_0::<N>,
        GgmlType::Q4_1 if vnni => vnni::dot_q32::<false, true, N>,
        GgmlType::Q4_1 => dot_q32::<false, true, N>,
        GgmlType::Q5_0 if vnni => vnni::dot_q32::<true, false, N>,
        GgmlType::Q5_0 => dot_q32::<true, false, N>,
        GgmlType::Q5_1 if vnni => vnni::dot_q32::<true, true, N>,
        GgmlType::Q5_1 => dot_q32::<true, true, N>,
        _ if vnni => vnni::dot_q32::<false, false, N>,
        _ => dot_q32::<false, false, N>,
    }
}

/// Where [`dot_run`] reads and writes, for a product of `n` tokens.
pub(crate) struct Run<'a> {
    /// The grouped matrix, `gb` bytes a group.
    pub w: &'a [u8],
    pub gb: usize,
    /// The activations, `arb` bytes a token, and their block extras (`zb` bytes a token;
    /// read by the 32-element types only, empty for the k-quants).
    pub a: &'a [u8],
    pub arb: usize,
    pub z: &'a [u8],
    pub zb: usize,
    pub n: usize,
    /// The output, `rows` floats a token.
    pub y: SharedMut<f32>,
    pub rows: usize,
}

/// Rows of groups `groups` (of grouped `dtype`) · every token of `r`, into `r.y`: each group
/// streams once per (up to) four tokens, with the VNNI kernels if `vnni` (read once per
/// product by the caller). The kernel is chosen once for the run, not per group.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C, and AVX-512 F, VL and VNNI if `vnni`; `r.w` holds
/// the groups, `r.a` `n` activation rows in the type's `vec_dot_type`, each as many blocks as
/// a group, and for the 32-element types `r.z` their block extras (`gemm::AuxKind::Blocks`);
/// `r.y` has room for `n · rows` floats, of which no other thread writes these groups' rows.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_run(dtype: GgmlType, vnni: bool, groups: Range<usize>, r: &Run<'_>) {
    const TOKENS: usize = 4;
    let nb = r.gb / super::block_bytes(dtype).0;
    debug_assert!(groups.end * r.gb <= r.w.len());
    debug_assert!(r.a.len() >= r.n * r.arb && r.z.len() >= r.n * r.zb);
    let (k1, k2, k3, k4) = (
        kernel::<1>(dtype, vnni),
        kernel::<2>(dtype, vnni),
        kernel::<3>(dtype, vnni),
        kernel::<4>(dtype, vnni),
    );
    for gi in groups {
        // SAFETY: group `gi` lies in `r.w`; tokens `t0..t0 + m` in `r.a` and `r.z`; the
        // stores land in rows `8gi..8gi + 8` of tokens `t0..t0 + m`, inside `r.y` (the
        // caller's).
        unsafe {
            let g = r.w.as_ptr().add(gi * r.gb);
            let mut t0 = 0;
            while t0 < r.n {
                let m = TOKENS.min(r.n - t0);
                let (a, z) = (r.a.as_ptr().add(t0 * r.arb), r.z.as_ptr().add(t0 * r.zb));
                let y = r.y.at(t0 * r.rows + gi * GROUP);
                let store = |v: &[__m256]| {
                    for (t, v) in v.iter().enumerate() {
                        _mm256_storeu_ps(y.add(t * r.rows), *v);
                    }
                };
                match m {
                    1 => store(&k1(g, nb, a, r.arb, z, r.zb)),
                    2 => store(&k2(g, nb, a, r.arb, z, r.zb)),
                    3 => store(&k3(g, nb, a, r.arb, z, r.zb)),
                    _ => store(&k4(g, nb, a, r.arb, z, r.zb)),
                }
                t0 += m;
            }
        }
    }
}

/// Lane `r` of result `t`: row `r` of the Q4_K (Q5_K if `FIVE`) group · token `t`.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `g` holds `nb` group blocks and `a` `N` Q8_K rows of
/// `nb` blocks, `arb` bytes apart.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn dot_q4_k<const FIVE: bool, const N: usize>(
    g: *const u8,
    nb: usize,
    a: *const u8,
    arb: usize,
    _z: *const u8,
    _zb: usize,
) -> [__m256; N] {
    // Each scale byte twice, so that after widening to i16 it meets both pair sums of its
    // row's lane: the low 8 bytes (sub-block 2j) or the high 8 (2j + 1).
    let dup_lo = _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    let dup_hi = _mm_setr_epi8(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    // 4-bit pair sums of 8 steps fit 16 bits; 5-bit ones of 4 (4·2·31·128 = 31744).
    let runs = if FIVE { 2 } else { 1 };
    let pf = software_prefetch();
    let mut acc = [_mm256_setzero_ps(); N];
    for b in 0..nb {
        // SAFETY (whole body): block `b < nb` of the group and of every token row.
        unsafe {
            let blk = g.add(b * q4_k::block(FIVE));
            prefetch_ahead(blk, q4_k::block(FIVE), pf);
            let ab: [*const u8; N] = std::array::from_fn(|t| a.add(t * arb + b * Q8K));
            let mut sumi = [_mm256_setzero_si256(); N];
            for j in 0..4 {
                let sc = load128(blk.add(SC + 16 * j));
                let sl = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(sc, dup_lo));
                let sh = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(sc, dup_hi));
                for run in 0..runs {
                    // i16 pair sums per row lane: sub-block 2j (low nibbles), 2j + 1 (high).
                    let mut lo = [_mm256_setzero_si256(); N];
                    let mut hi = [_mm256_setzero_si256(); N];
                    for w in (2 * j..2 * j + 2).skip(run).step_by(runs) {
                        for (kk, (wl, wh)) in k45_steps::<FIVE>(blk, w).iter().enumerate() {
                            let k = 4 * (w % 2) + kk;
                            for t in 0..N {
                                let q = ab[t].add(4 + 64 * j + 4 * k);
                                lo[t] =
                                    _mm256_add_epi16(lo[t], _mm256_maddubs_epi16(*wl, bcast4(q)));
                                hi[t] = _mm256_add_epi16(
                                    hi[t],
                                    _mm256_maddubs_epi16(*wh, bcast4(q.add(32))),
                                );
                            }
                        }
                    }
                    for t in 0..N {
                        let s = _mm256_add_epi32(
                            _mm256_madd_epi16(lo[t], sl),
                            _mm256_madd_epi16(hi[t], sh),
                        );
                        sumi[t] = _mm256_add_epi32(sumi[t], s);
                    }
                }
            }
            k45_finish(blk, &ab, &sumi, &mut acc);
        }
    }
    acc
}

/// Adds a Q4_K/Q5_K group block's integer sums `sumi` (per token, scales applied) to `acc`:
/// the mins off through the activations' block sums, both factors applied.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `blk` is a whole group block and `ab[t]` the
/// matching Q8_K block of token `t`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) unsafe fn k45_finish<const N: usize>(
    blk: *const u8,
    ab: &[*const u8; N],
    sumi: &[__m256i; N],
    acc: &mut [__m256; N],
) {
    // SAFETY: offsets inside the group block and the Q8_K blocks.
    unsafe {
        // Mins: per row Σ_s min_s · (the activations' sum over sub-block s).
        let mn: [__m256i; 4] =
            std::array::from_fn(|p| _mm256_cvtepu8_epi16(load128(blk.add(MN + 16 * p))));
        let d = _mm256_cvtph_ps(load128(blk.add(D)));
        let dmin = _mm256_cvtph_ps(load128(blk.add(DMIN)));
        for t in 0..N {
            // Q8_K's 16 sums of 16 → 8 sums of 32 (i16: at most 32·128), once per lane half.
            let bs = load256(ab[t].add(260));
            let s32 = _mm_hadd_epi16(
                _mm256_castsi256_si128(bs),
                _mm256_extracti128_si256::<1>(bs),
            );
            let s32 = _mm256_broadcastsi128_si256(s32);
            let mut summ = _mm256_madd_epi16(mn[0], _mm256_shuffle_epi32::<0x00>(s32));
            summ = _mm256_add_epi32(
                summ,
                _mm256_madd_epi16(mn[1], _mm256_shuffle_epi32::<0x55>(s32)),
            );
            summ = _mm256_add_epi32(
                summ,
                _mm256_madd_epi16(mn[2], _mm256_shuffle_epi32::<0xAA>(s32)),
            );
            summ = _mm256_add_epi32(
                summ,
                _mm256_madd_epi16(mn[3], _mm256_shuffle_epi32::<0xFF>(s32)),
            );
            let da = _mm256_set1_ps(ab[t].cast::<f32>().read_unaligned());
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi[t]), _mm256_mul_ps(d, da), acc[t]);
            acc[t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(summ), _mm256_mul_ps(dmin, da), acc[t]);
        }
    }
}

/// The quants of a Q4_0 (Q5_0 if `FIVE`) group block `blk`, step by step: the low and the
/// high halves, one row per 32-bit lane, 0..16 (0..32).
///
/// # Safety
/// `blk` must point at a whole group block of the type.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn q32_steps<const FIVE: bool>(blk: *const u8) -> [(__m256i, __m256i); 4] {
    // SAFETY (all): forwarded to the caller.
    let word = if FIVE {
        unsafe { load256(blk.add(q32::QH)) }
    } else {
        _mm256_setzero_si256()
    };
    unsafe {
        [
            q32_step::<FIVE, 0>(blk, word),
            q32_step::<FIVE, 1>(blk, word),
            q32_step::<FIVE, 2>(blk, word),
            q32_step::<FIVE, 3>(blk, word),
        ]
    }
}

/// Step `K`'s quants of a Q4_0/Q5_0 group block `blk`, as [`quants`] gives them (`word`:
/// the Q5_0 block's word).
///
/// # Safety
/// `blk` must point at a whole group block of the type.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn q32_step<const FIVE: bool, const K: i32>(
    blk: *const u8,
    word: __m256i,
) -> (__m256i, __m256i) {
    // SAFETY: step `K < 4` lies inside the block.
    let bits = unsafe { load256(blk.add(q32::qs_at(FIVE) + 32 * K as usize)) };
    quants::<FIVE, K>(bits, word)
}

/// A step's low and high quants, one row per 32-bit lane, from its 32 bytes `bits` (4 per
/// row): the nibbles (0..16), or if `FIVE` the 5-bit quants (0..32) of the Q5_0/Q5_1/Q5_K
/// layouts, whose run of 4 steps shares the `word` that holds the high quants' low two bits
/// (step `K < 4`'s at bits `2K, 2K + 1` of each byte).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn quants<const FIVE: bool, const K: i32>(bits: __m256i, word: __m256i) -> (__m256i, __m256i) {
    if FIVE {
        // The low quant in bits 0..5, the high one's top three in bits 5..8 (a 16-bit shift
        // brings the next byte's bits in above them, where the mask drops them).
        let lo = _mm256_and_si256(bits, _mm256_set1_epi8(0x1F));
        let top = _mm256_and_si256(_mm256_srli_epi16::<3>(bits), _mm256_set1_epi8(0x1C));
        let low2 = _mm256_srl_epi16(word, _mm_cvtsi32_si128(2 * K));
        let hi = _mm256_or_si256(top, _mm256_and_si256(low2, _mm256_set1_epi8(3)));
        (lo, hi)
    } else {
        let m4 = _mm256_set1_epi8(0xF);
        let lo = _mm256_and_si256(bits, m4);
        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4);
        (lo, hi)
    }
}

/// Step `4w + K` of a Q4_K (Q5_K if `FIVE`) group block `blk`: the quants of sub-blocks
/// `2j` and `2j + 1` (`j = w / 2`), one row per 32-bit lane, 0..16 (0..32); `word` is word
/// `w` of a Q5_K block, which holds the high quants' low two bits.
///
/// # Safety
/// `blk` must point at a whole group block of the type; `w < 8`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn k45_step<const FIVE: bool, const K: i32>(
    blk: *const u8,
    w: usize,
    word: __m256i,
) -> (__m256i, __m256i) {
    // SAFETY: step `4w + K < 32` lies inside the block.
    let bits = unsafe { load256(blk.add(q4_k::qs_at(FIVE, 4 * w + K as usize))) };
    quants::<FIVE, K>(bits, word)
}

/// Steps `4w .. 4w + 4` of a Q4_K (Q5_K if `FIVE`) group block, as [`k45_step`] gives them.
///
/// # Safety
/// As [`k45_step`].
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn k45_steps<const FIVE: bool>(
    blk: *const u8,
    w: usize,
) -> [(__m256i, __m256i); 4] {
    let word = if FIVE {
        // SAFETY: word `w < 8` lies inside the block.
        unsafe { load256(blk.add(q4_k::qh_at(w))) }
    } else {
        _mm256_setzero_si256()
    };
    // SAFETY: forwarded to the caller.
    unsafe {
        [
            k45_step::<FIVE, 0>(blk, w, word),
            k45_step::<FIVE, 1>(blk, w, word),
            k45_step::<FIVE, 2>(blk, w, word),
            k45_step::<FIVE, 3>(blk, w, word),
        ]
    }
}

/// Lane `r` of result `t`: row `r` of the Q4_0 group · token `t`; Q5_0 if `FIVE`, Q4_1
/// (Q5_1) if `MIN`.
///
/// The quants are stored unsigned (0..16, 0..32); the zero point (8, 16) comes off as
/// `zero·Σa` through the activation block's sum, or the min as `m·d_a·Σa` through Q8_1's
/// `s`. Five-bit pair sums reach 2·31·128, so the low and high halves sum in separate 16-bit
/// registers (4 steps each).
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `g` holds `nb` group blocks, `a` `N` Q8_0 (Q8_1 if
/// `MIN`) rows of `nb` blocks (`arb` bytes apart) and `z` their extras (`zb` bytes apart: per
/// block the scale as f32, then Σq as i32, or `s` as f32 if `MIN`).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn dot_q32<const FIVE: bool, const MIN: bool, const N: usize>(
    g: *const u8,
    nb: usize,
    a: *const u8,
    arb: usize,
    z: *const u8,
    zb: usize,
) -> [__m256; N] {
    let ones = _mm256_set1_epi16(1);
    let (ab, aq) = q32::act_block(MIN);
    let gb = q32::block(FIVE, MIN);
    let pf = software_prefetch();
    let mut acc = [_mm256_setzero_ps(); N];
    for b in 0..nb {
        // SAFETY (whole body): block `b < nb` of the group, of every token row and of its
        // extras.
        unsafe {
            let blk = g.add(b * gb);
            prefetch_ahead(blk, gb, pf);
            let at: [*const u8; N] = std::array::from_fn(|t| a.add(t * arb + ab * b + aq));
            let steps = q32_steps::<FIVE>(blk);
            let mut plo = [_mm256_setzero_si256(); N];
            let mut phi = [_mm256_setzero_si256(); N];
            for (k, (wl, wh)) in steps.iter().enumerate() {
                for t in 0..N {
                    let q = at[t].add(4 * k);
                    plo[t] = _mm256_add_epi16(plo[t], _mm256_maddubs_epi16(*wl, bcast4(q)));
                    phi[t] = _mm256_add_epi16(phi[t], _mm256_maddubs_epi16(*wh, bcast4(q.add(16))));
                }
            }
            let s: [__m256i; N] = std::array::from_fn(|t| {
                if FIVE {
                    _mm256_add_epi32(
                        _mm256_madd_epi16(plo[t], ones),
                        _mm256_madd_epi16(phi[t], ones),
                    )
                } else {
                    // 8 steps of 4-bit products fit 16 bits.
                    _mm256_madd_epi16(_mm256_add_epi16(plo[t], phi[t]), ones)
                }
            });
            q32_finish::<FIVE, MIN, N>(blk, &s, z.add(8 * b), zb, &mut acc);
        }
    }
    acc
}

/// Adds a Q4_0/Q4_1/Q5_0/Q5_1 group block's products to `acc`: `s[t]` holds Σ q·a over the
/// block for token `t` (the quants as stored, unsigned), one row per lane; the zero point
/// comes off (or the min goes on) through the token's extras at `z` (`zb` bytes a token).
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `blk` is a whole group block of the type and `z`
/// this block's extras of the first token (as [`dot_q32`] describes them).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) unsafe fn q32_finish<const FIVE: bool, const MIN: bool, const N: usize>(
    blk: *const u8,
    s: &[__m256i; N],
    z: *const u8,
    zb: usize,
    acc: &mut [__m256; N],
) {
    let zero_shift = if FIVE { 4 } else { 3 };
    // SAFETY (whole body): the block's scales (and mins), and every token's extras.
    unsafe {
        let d = _mm256_cvtph_ps(load128(blk.add(q32::d_at(FIVE))));
        let m = if MIN {
            _mm256_cvtph_ps(load128(blk.add(q32::m_at(FIVE))))
        } else {
            _mm256_setzero_ps()
        };
        for t in 0..N {
            let zt = z.add(t * zb);
            let da = _mm256_set1_ps(zt.cast::<f32>().read_unaligned());
            if MIN {
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[t]), _mm256_mul_ps(d, da), acc[t]);
                let sa = _mm256_set1_ps(zt.add(4).cast::<f32>().read_unaligned());
                acc[t] = _mm256_fmadd_ps(m, sa, acc[t]);
            } else {
                // Σ (q - zero)·a = Σ q·a - zero·Σa.
                let sumz = zt.add(4).cast::<i32>().read_unaligned() << zero_shift;
                let s = _mm256_sub_epi32(s[t], _mm256_set1_epi32(sumz));
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(d, da), acc[t]);
            }
        }
    }
}

/// The quants (0..64) of step `(h, k)` of a Q6_K group block: elements
/// `128h + 32m + 4k ..` for `m < 4`, one row per 32-bit lane.
///
/// # Safety
/// `blk` must point at a whole Q6_K group block; `h < 2`, `k < 8`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn q6_k_step(blk: *const u8, h: usize, k: usize) -> [__m256i; 4] {
    let m4 = _mm256_set1_epi8(0xF);
    let m6 = _mm256_set1_epi8(0x3F);
    let m30 = _mm256_set1_epi8(0x30);
    // SAFETY: the step lies inside the block.
    let (p0, p1, p2) = unsafe {
        let at = blk.add(q6_k::step_at(h, k));
        (load256(at), load256(at.add(32)), load256(at.add(64)))
    };
    // q_0 and q_1 whole below the top bits of q_2 and q_3, which 16-bit shifts bring to
    // bits 4, 5 (what crosses from the neighbouring byte lands outside the mask); their low
    // bits are part 2's nibbles.
    [
        _mm256_and_si256(p0, m6),
        _mm256_and_si256(p1, m6),
        _mm256_or_si256(
            _mm256_and_si256(p2, m4),
            _mm256_and_si256(_mm256_srli_epi16::<2>(p0), m30),
        ),
        _mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi16::<4>(p2), m4),
            _mm256_and_si256(_mm256_srli_epi16::<2>(p1), m30),
        ),
    ]
}

/// `vpshufb` masks over 16 scale bytes (sub-block `2p` then `2p + 1`, a byte per row): each
/// of the first 8 twice (to `madd` with a row's two pair sums), and the two interleaved (the
/// pair of scales that meets the pair of block sums `2p, 2p + 1`).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn scale_masks() -> (__m128i, __m128i) {
    (
        _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7),
        _mm_setr_epi8(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15),
    )
}

/// Lane `r` of result `t`: row `r` of the Q6_K group · token `t`.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `g` holds `nb` group blocks and `a` `N` Q8_K rows of
/// `nb` blocks, `arb` bytes apart.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn dot_q6_k<const N: usize>(
    g: *const u8,
    nb: usize,
    a: *const u8,
    arb: usize,
    _z: *const u8,
    _zb: usize,
) -> [__m256; N] {
    let (dup, _) = scale_masks();
    let pf = software_prefetch();
    let mut acc = [_mm256_setzero_ps(); N];
    for b in 0..nb {
        // SAFETY (whole body): block `b < nb` of the group and of every token row.
        unsafe {
            let blk = g.add(b * q6_k::BLOCK);
            prefetch_ahead(blk, q6_k::BLOCK, pf);
            let ab: [*const u8; N] = std::array::from_fn(|t| a.add(t * arb + b * Q8K));
            let mut sumi = [_mm256_setzero_si256(); N];
            for h in 0..2 {
                for q in 0..2 {
                    // Sub-blocks 8h + 2m + q, m < 4: their scales, twice per row lane.
                    let sc: [__m256i; 4] = std::array::from_fn(|m| {
                        let s = _mm_loadl_epi64(blk.add(q6_k::SC + 8 * (8 * h + 2 * m + q)).cast());
                        _mm256_cvtepi8_epi16(_mm_shuffle_epi8(s, dup))
                    });
                    for half in 0..2 {
                        let mut p = [[_mm256_setzero_si256(); 4]; N];
                        for kk in 0..2 {
                            let k = 4 * q + 2 * half + kk;
                            let v = q6_k_step(blk, h, k);
                            for t in 0..N {
                                for m in 0..4 {
                                    let av = bcast4(ab[t].add(4 + 128 * h + 32 * m + 4 * k));
                                    let prod = _mm256_maddubs_epi16(v[m], av);
                                    p[t][m] = _mm256_add_epi16(p[t][m], prod);
                                }
                            }
                        }
                        for t in 0..N {
                            for m in 0..4 {
                                let s = _mm256_madd_epi16(p[t][m], sc[m]);
                                sumi[t] = _mm256_add_epi32(sumi[t], s);
                            }
                        }
                    }
                }
            }
            q6_k_finish(blk, &ab, &sumi, &mut acc);
        }
    }
    acc
}

/// Adds a Q6_K group block's integer sums `sumi` (per token, scales applied) to `acc`: the
/// zero point off through the activations' block sums, both factors applied.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `blk` is a whole group block and `ab[t]` the
/// matching Q8_K block of token `t`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) unsafe fn q6_k_finish<const N: usize>(
    blk: *const u8,
    ab: &[*const u8; N],
    sumi: &[__m256i; N],
    acc: &mut [__m256; N],
) {
    let (_, pairs) = scale_masks();
    // SAFETY: offsets inside the group block and the Q8_K blocks.
    unsafe {
        let d = _mm256_cvtph_ps(load128(blk.add(q6_k::D)));
        for t in 0..N {
            // Zero point: 32 · Σ_j scale_j · (the activations' sum over sub-block j).
            let mut summ = _mm256_setzero_si256();
            for p in 0..8 {
                let s = load128(blk.add(q6_k::SC + 16 * p));
                let s = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(s, pairs));
                let sums = bcast4(ab[t].add(260 + 4 * p));
                summ = _mm256_add_epi32(summ, _mm256_madd_epi16(s, sums));
            }
            let s = _mm256_sub_epi32(sumi[t], _mm256_slli_epi32::<5>(summ));
            let da = _mm256_set1_ps(ab[t].cast::<f32>().read_unaligned());
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(d, da), acc[t]);
        }
    }
}

/// Lane `r` of result `t`: row `r` of the Q8_0 group · token `t`.
///
/// # Safety
/// As [`dot_q32`], for a Q8_0 group (the extras' scales are read, not their sums).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn dot_q8_0<const N: usize>(
    g: *const u8,
    nb: usize,
    a: *const u8,
    arb: usize,
    z: *const u8,
    zb: usize,
) -> [__m256; N] {
    let ones = _mm256_set1_epi16(1);
    let pf = software_prefetch();
    let mut acc = [_mm256_setzero_ps(); N];
    for b in 0..nb {
        // SAFETY (whole body): block `b < nb` of the group, of every token row and of its
        // extras.
        unsafe {
            let blk = g.add(b * q8_0::BLOCK);
            prefetch_ahead(blk, q8_0::BLOCK, pf);
            let ab: [*const u8; N] = std::array::from_fn(|t| a.add(t * arb + 34 * b + 2));
            let mut isum = [_mm256_setzero_si256(); N];
            for s in 0..8 {
                let w = load256(blk.add(q8_0::QS + 32 * s));
                let wa = _mm256_sign_epi8(w, w);
                for t in 0..N {
                    let av = _mm256_sign_epi8(bcast4(ab[t].add(4 * s)), w);
                    let p = _mm256_madd_epi16(_mm256_maddubs_epi16(wa, av), ones);
                    isum[t] = _mm256_add_epi32(isum[t], p);
                }
            }
            let d = _mm256_cvtph_ps(load128(blk.add(q8_0::D)));
            for t in 0..N {
                let da = _mm256_set1_ps(z.add(t * zb + 8 * b).cast::<f32>().read_unaligned());
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(d, da), acc[t]);
            }
        }
    }
    acc
}
