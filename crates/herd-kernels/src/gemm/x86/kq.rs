//! Packed tiles for the k-quants (Q2_K … Q6_K) with Q8_K activations.
//!
//! Every k-quant becomes the same packed form per super-block of a panel (8 rows):
//! - `q[64][32]`: unsigned quants `4s..4s+4` of every row in step `s`, row `r` in lane `r`
//!   (Q3_K stores `q + 4`, Q6_K `q + 32`: their zero points come off below);
//! - `sc[nsub][32]`: each sub-block's integer scale as i16, twice per row (lanes `2r, 2r+1`),
//!   to `madd` with the 16-bit pair sums of that row;
//! - `off[8][32]`: per row the i16 pair of "offsets" for Q8_K's block sums `2t, 2t+1`, so one
//!   `madd` with those two sums broadcast gives Σ offset·sum: the mins of Q2_K/Q4_K/Q5_K
//!   (times `dmin`) or the zero-point terms `scale·zero` of Q3_K/Q6_K (in integers);
//! - `d[8]` f32 and, for types with mins, `dmin[8]` f32.
//!
//! 16-bit headroom per `maddubs` lane (|a| ≤ 127): 2·3·127 (Q2_K), 2·7·127, 2·15·127,
//! 2·31·127, 2·63·127 = 16002 (Q6_K), so 4, 4, 8, 4 and 2 steps may be summed before widening.

use std::arch::x86_64::*;

use super::{PANEL, bcast_f32, drive_packed, transpose8};
use crate::dequant::{q3_k_scales, scale_min_k4};
use crate::interleave::x86::{k45_steps, q6_k_step, scale_masks};
use crate::interleave::{Layout, q4_k as grouped_q4_k, q6_k as grouped_q6_k};
use crate::matmul::{Prepared, WeightRef};
use crate::pool::ThreadPool;
use crate::simd::x86::{bcast4, f16_at, load128, load256};
use crate::types::QK_K;

pub(super) const Q2_K: u8 = 0;
pub(super) const Q3_K: u8 = 1;
pub(super) const Q4_K: u8 = 2;
pub(super) const Q5_K: u8 = 3;
pub(super) const Q6_K: u8 = 4;

/// Tokens per kernel call.
const RN: usize = 4;
/// Tokens per kernel call with VNNI: its 32 registers hold a sum per token for 8.
const RN_VNNI: usize = 8;
/// Bytes of a Q8_K block; its quants start at 4 and its 16 block sums (i16) at 260.
const Q8K: usize = 292;

const fn wblock(k: u8) -> usize {
    [84, 110, 144, 176, 210][k as usize]
}

/// Scale sub-blocks per super-block.
const fn nsub(k: u8) -> usize {
    if k == Q4_K || k == Q5_K { 8 } else { 16 }
}

/// Steps (4 quants each) whose 16-bit products may be summed before widening.
const fn run_len(k: u8) -> usize {
    [4, 4, 8, 4, 2][k as usize]
}

const fn has_min(k: u8) -> bool {
    k == Q2_K || k == Q4_K || k == Q5_K
}

const SC: usize = 2048;
const fn off_at(k: u8) -> usize {
    SC + 32 * nsub(k)
}
const fn d_at(k: u8) -> usize {
    off_at(k) + 256
}
const fn packed(k: u8) -> usize {
    d_at(k) + 32 + if has_min(k) { 32 } else { 0 }
}

/// # Safety
/// The CPU must have AVX2, FMA and F16C; `x` must be Q8_K rows for `w`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn run<const K: u8>(
    pool: &ThreadPool,
    w: WeightRef<'_>,
    x: &Prepared<'_>,
    y: &mut [f32],
) {
    let nb = w.cols / QK_K;
    let (rows, rb, data) = (w.rows, w.row_bytes(), w.data);
    let arb = x.row_bytes();
    let acts = x.bytes;
    let grouped = w.layout == Layout::Grouped;
    let vnni = crate::simd::x86::vnni();
    debug_assert!(!grouped || K == Q4_K || K == Q5_K || K == Q6_K);
    let pack = |r0: usize, dst: *mut u8| {
        // SAFETY: `drive_packed` calls this with panel starts inside `rows` and room for `nb`
        // packed blocks at `dst`.
        unsafe {
            if grouped && K == Q6_K {
                pack_grouped_q6_k(data.as_ptr(), nb, r0, dst)
            } else if grouped && K == Q5_K {
                pack_grouped::<true>(data.as_ptr(), nb, r0, dst)
            } else if grouped {
                pack_grouped::<false>(data.as_ptr(), nb, r0, dst)
            } else {
                pack::<K>(data.as_ptr(), rows, rb, nb, r0, dst)
            }
        }
    };
    // SAFETY: the closures are called with panel starts inside `rows` and token ranges inside
    // `x.n`, so every row and activation they read exists; `pack` writes `nb` packed blocks.
    unsafe {
        if vnni {
            drive_packed::<1, RN_VNNI>(pool, rows, x.n, y, nb * packed(K), pack, |panel, t0, rn| {
                kern_any_vnni::<K>(panel, nb, acts.as_ptr().add(t0 * arb), arb, rn)
            })
        } else {
            drive_packed::<1, RN>(pool, rows, x.n, y, nb * packed(K), pack, |panel, t0, rn| {
                kern_any::<K>(panel, nb, acts.as_ptr().add(t0 * arb), arb, rn)
            })
        }
    }
}

/// [`pack`] for Q6_K rows `r0..r0 + 8` of a matrix in the grouped layout (`interleave::q6_k`):
/// its steps decode straight into rows-in-lanes quants, its scales only widen.
///
/// # Safety
/// As [`pack_grouped`], for a grouped Q6_K matrix.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pack_grouped_q6_k(data: *const u8, nb: usize, r0: usize, dst: *mut u8) {
    const K: u8 = Q6_K;
    let (dup, pairs) = scale_masks();
    for b in 0..nb {
        // SAFETY: group block `b` of group `r0 / 8` and packed block `b` lie inside the
        // caller's buffers; the offsets are those of the two layouts.
        unsafe {
            let g = data.add((r0 / PANEL * nb + b) * grouped_q6_k::BLOCK);
            let o = dst.add(b * packed(K));
            for h in 0..2 {
                for k in 0..8 {
                    // Step (h, k), part m holds elements 128h + 32m + 4k.., which is packed
                    // step 32h + 8m + k.
                    for (m, v) in q6_k_step(g, h, k).iter().enumerate() {
                        _mm256_storeu_si256(o.add(32 * (32 * h + 8 * m + k)).cast(), *v);
                    }
                }
            }
            for j in 0..16 {
                let s = _mm_loadl_epi64(g.add(grouped_q6_k::SC + 8 * j).cast());
                let s = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(s, dup));
                _mm256_storeu_si256(o.add(SC + 32 * j).cast(), s);
            }
            // `off[t]`: per row the scales of sub-blocks 2t, 2t + 1, for the zero point.
            for t in 0..8 {
                let s = load128(g.add(grouped_q6_k::SC + 16 * t));
                let s = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(s, pairs));
                _mm256_storeu_si256(o.add(off_at(K) + 32 * t).cast(), s);
            }
            let d = _mm256_cvtph_ps(load128(g.add(grouped_q6_k::D)));
            _mm256_storeu_ps(o.add(d_at(K)).cast(), d);
        }
    }
}

/// [`pack`] for Q4_K (Q5_K if `FIVE`) rows `r0..r0 + 8` of a matrix in the grouped layout
/// (`interleave::q4_k`), which already has the rows in lanes: its steps only split into
/// their low and high quants.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `data` is a grouped matrix of `nb` super-blocks per
/// row holding rows `r0..r0 + 8` (`r0` a multiple of 8), and `dst` has room for `nb` packed
/// blocks.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pack_grouped<const FIVE: bool>(data: *const u8, nb: usize, r0: usize, dst: *mut u8) {
    let k = if FIVE { Q5_K } else { Q4_K };
    let dup = _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    for b in 0..nb {
        // SAFETY: group block `b` of group `r0 / 8` and packed block `b` lie inside the
        // caller's buffers; the offsets are those of the two layouts.
        unsafe {
            let g = data.add((r0 / PANEL * nb + b) * grouped_q4_k::block(FIVE));
            let o = dst.add(b * packed(k));
            for w in 0..8 {
                // Step 4w + kk is step k = 4(w % 2) + kk of sub-block pair j = w / 2.
                for (kk, (lo, hi)) in k45_steps::<FIVE>(g, w).iter().enumerate() {
                    let (j, k) = (w / 2, 4 * (w % 2) + kk);
                    _mm256_storeu_si256(o.add(32 * (16 * j + k)).cast(), *lo);
                    _mm256_storeu_si256(o.add(32 * (16 * j + 8 + k)).cast(), *hi);
                }
            }
            for s in 0..8 {
                let sc = _mm_loadl_epi64(g.add(grouped_q4_k::SC + 8 * s).cast());
                let sc = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(sc, dup));
                _mm256_storeu_si256(o.add(SC + 32 * s).cast(), sc);
            }
            // `off[t]` pairs: the min of sub-block t, for both of its 16-element sums.
            let mut off = [[0i16; 2 * PANEL]; 8];
            for (t, row) in off.iter_mut().enumerate() {
                for r in 0..PANEL {
                    let m = *g.add(grouped_q4_k::MN + 16 * (t / 2) + 2 * r + t % 2) as i16;
                    row[2 * r] = m;
                    row[2 * r + 1] = m;
                }
            }
            std::ptr::copy_nonoverlapping(off.as_ptr().cast::<u8>(), o.add(off_at(k)), 256);
            let d = _mm256_cvtph_ps(load128(g.add(grouped_q4_k::D)));
            let dmin = _mm256_cvtph_ps(load128(g.add(grouped_q4_k::DMIN)));
            _mm256_storeu_ps(o.add(d_at(k)).cast(), d);
            _mm256_storeu_ps(o.add(d_at(k) + 32).cast(), dmin);
        }
    }
}

/// One row's super-block, unpacked.
struct Unpacked {
    /// Unsigned quants, 32 per register, in element order.
    q: [__m256i; 8],
    /// Integer scale per sub-block.
    sc: [i16; 16],
    /// Offset per 16-element group (see the module comment).
    off: [i16; 16],
    d: f32,
    dmin: f32,
}

/// # Safety
/// `blk` must point at a whole block of type `K`; the CPU must have AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn unpack<const K: u8>(blk: *const u8) -> Unpacked {
    let mut u = Unpacked {
        q: [_mm256_setzero_si256(); 8],
        sc: [0; 16],
        off: [0; 16],
        d: 0.0,
        dmin: 0.0,
    };
    // SAFETY: a whole block of `wblock(K)` bytes is readable at `blk`.
    let b = unsafe { std::slice::from_raw_parts(blk, wblock(K)) };
    let m4 = _mm256_set1_epi8(0xF);
    let m3 = _mm256_set1_epi8(3);
    // `1 << bit` in every byte: where that bit of `v` is set, `val`; else 0.
    let bit = |v: __m256i, bit: usize, val: i8| {
        let m = _mm256_set1_epi8((1u8 << bit) as i8);
        _mm256_and_si256(
            _mm256_cmpeq_epi8(_mm256_and_si256(v, m), m),
            _mm256_set1_epi8(val),
        )
    };
    // SAFETY (loads): offsets inside the block layouts of `simd::x86::k_quants`.
    unsafe {
        match K {
            Q2_K => {
                for n in 0..2 {
                    let bits = load256(blk.add(16 + 32 * n));
                    for s in 0..4 {
                        let sh = _mm_cvtsi32_si128(2 * s as i32);
                        u.q[4 * n + s] = _mm256_and_si256(_mm256_srl_epi16(bits, sh), m3);
                    }
                }
                for j in 0..16 {
                    u.sc[j] = (b[j] & 0xF) as i16;
                    u.off[j] = (b[j] >> 4) as i16;
                }
                u.d = f16_at(blk.add(80));
                u.dmin = f16_at(blk.add(82));
            }
            Q3_K => {
                let hm = load256(blk);
                for n in 0..2 {
                    let bits = load256(blk.add(32 + 32 * n));
                    for s in 0..4 {
                        let sh = _mm_cvtsi32_si128(2 * s as i32);
                        let low = _mm256_and_si256(_mm256_srl_epi16(bits, sh), m3);
                        u.q[4 * n + s] = _mm256_or_si256(low, bit(hm, 4 * n + s, 4));
                    }
                }
                let sc = q3_k_scales(&b[96..108]);
                for j in 0..16 {
                    u.sc[j] = sc[j] as i16;
                    u.off[j] = sc[j] as i16;
                }
                u.d = f16_at(blk.add(108));
            }
            Q4_K | Q5_K => {
                let five = K == Q5_K;
                let qs = blk.add(if five { 48 } else { 16 });
                let hb = if five {
                    load256(blk.add(16))
                } else {
                    _mm256_setzero_si256()
                };
                for j in 0..4 {
                    let bits = load256(qs.add(32 * j));
                    let mut lo = _mm256_and_si256(bits, m4);
                    let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4);
                    if five {
                        lo = _mm256_or_si256(lo, bit(hb, 2 * j, 16));
                        hi = _mm256_or_si256(hi, bit(hb, 2 * j + 1, 16));
                    }
                    u.q[2 * j] = lo;
                    u.q[2 * j + 1] = hi;
                }
                for j in 0..8 {
                    let (sc, m) = scale_min_k4(j, &b[4..16]);
                    u.sc[j] = sc as i16;
                    u.off[2 * j] = m as i16;
                    u.off[2 * j + 1] = m as i16;
                }
                u.d = f16_at(blk);
                u.dmin = f16_at(blk.add(2));
            }
            _ => {
                for j in 0..2 {
                    let ql0 = load256(blk.add(64 * j));
                    let ql1 = load256(blk.add(64 * j + 32));
                    let qh = load256(blk.add(128 + 32 * j));
                    let hi = |sh: i32| {
                        let h = _mm256_srl_epi16(qh, _mm_cvtsi32_si128(sh));
                        _mm256_slli_epi16::<4>(_mm256_and_si256(h, m3))
                    };
                    let lo0 = _mm256_and_si256(ql0, m4);
                    let lo1 = _mm256_and_si256(ql1, m4);
                    let hi0 = _mm256_and_si256(_mm256_srli_epi16::<4>(ql0), m4);
                    let hi1 = _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), m4);
                    u.q[4 * j] = _mm256_or_si256(lo0, hi(0));
                    u.q[4 * j + 1] = _mm256_or_si256(lo1, hi(2));
                    u.q[4 * j + 2] = _mm256_or_si256(hi0, hi(4));
                    u.q[4 * j + 3] = _mm256_or_si256(hi1, hi(6));
                }
                for j in 0..16 {
                    u.sc[j] = b[192 + j] as i8 as i16;
                    u.off[j] = u.sc[j];
                }
                u.d = f16_at(blk.add(208));
            }
        }
    }
    u
}

/// Packs rows `r0..r0 + 8` (zeros past `rows`) into `dst`.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `data` holds `rows` rows of `rb` bytes (`nb` blocks)
/// and `dst` has room for `nb` packed blocks.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pack<const K: u8>(
    data: *const u8,
    rows: usize,
    rb: usize,
    nb: usize,
    r0: usize,
    dst: *mut u8,
) {
    let live = PANEL.min(rows - r0);
    for b in 0..nb {
        let mut q = [[_mm256_setzero_si256(); 8]; PANEL];
        let mut sc = [[0i16; 2 * PANEL]; 16];
        let mut off = [[0i16; 2 * PANEL]; 8];
        let mut d = [0f32; PANEL];
        let mut dmin = [0f32; PANEL];
        for r in 0..live {
            // SAFETY: row `r0 + r < rows`, block `b < nb`.
            let u = unsafe { unpack::<K>(data.add((r0 + r) * rb + b * wblock(K))) };
            q[r] = u.q;
            for s in 0..nsub(K) {
                sc[s][2 * r] = u.sc[s];
                sc[s][2 * r + 1] = u.sc[s];
            }
            for t in 0..8 {
                off[t][2 * r] = u.off[2 * t];
                off[t][2 * r + 1] = u.off[2 * t + 1];
            }
            d[r] = u.d;
            dmin[r] = u.dmin;
        }
        // SAFETY: packed block `b` lies within the `nb` blocks at `dst`; the sources are
        // local arrays of the sizes copied.
        unsafe {
            let o = dst.add(b * packed(K));
            for g in 0..8 {
                let t = transpose8(std::array::from_fn(|r| q[r][g]));
                for (s, v) in t.iter().enumerate() {
                    _mm256_storeu_si256(o.add(32 * (8 * g + s)).cast(), *v);
                }
            }
            std::ptr::copy_nonoverlapping(sc.as_ptr().cast::<u8>(), o.add(SC), 32 * nsub(K));
            std::ptr::copy_nonoverlapping(off.as_ptr().cast::<u8>(), o.add(off_at(K)), 256);
            std::ptr::copy_nonoverlapping(d.as_ptr().cast::<u8>(), o.add(d_at(K)), 32);
            if has_min(K) {
                std::ptr::copy_nonoverlapping(dmin.as_ptr().cast::<u8>(), o.add(d_at(K) + 32), 32);
            }
        }
    }
}

/// [`kern`] for `rn` tokens at run time.
///
/// # Safety
/// As [`kern`].
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn kern_any<const K: u8>(
    panel: *const u8,
    nb: usize,
    a: *const u8,
    arb: usize,
    rn: usize,
) -> [[__m256; 1]; RN] {
    // SAFETY: forwarded to the caller.
    unsafe { tokens_at_run_time!(rn, RN, kern::<K>(panel, nb, a, arb), [4, 3, 2]) }
}

/// [`kern_vnni`] for `rn` tokens at run time.
///
/// # Safety
/// As [`kern_vnni`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
#[inline]
unsafe fn kern_any_vnni<const K: u8>(
    panel: *const u8,
    nb: usize,
    a: *const u8,
    arb: usize,
    rn: usize,
) -> [[__m256; 1]; RN_VNNI] {
    // SAFETY: forwarded to the caller.
    unsafe {
        tokens_at_run_time!(
            rn,
            RN_VNNI,
            kern_vnni::<K>(panel, nb, a, arb),
            [8, 7, 6, 5, 4, 3, 2]
        )
    }
}

/// [`kern`] with AVX-512 VNNI: `vpdpbusd` multiplies and sums four quant pairs into i32 lanes
/// in one instruction where `maddubs` + `add` take two, and i32 sums need no widening every
/// few steps; each sub-block's sum then meets its scale with one `vpmulld`. It takes 8 tokens
/// a call (AVX-512 VL gives the 32 registers their sums need): each weight load serves twice
/// the tokens, and 8 independent `vpdpbusd` chains per step hide its latency (one chain per
/// token at 4 tokens ran at 265 GFLOP/s, two per token 266, 8 tokens 300; AVX2 230).
/// The loop is [`kern`]'s; only the inner product and the widening differ.
///
/// # Safety
/// As [`kern`], and the CPU must have AVX-512 F, VL and VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
#[inline]
unsafe fn kern_vnni<const K: u8, const N: usize>(
    panel: *const u8,
    nb: usize,
    a: *const u8,
    arb: usize,
) -> [__m256; N] {
    let steps_per_sub = 64 / nsub(K);
    let mut acc = [_mm256_setzero_ps(); N];
    for b in 0..nb {
        // SAFETY (whole body): super-block `b < nb` of the panel and of each token row.
        unsafe {
            let pb = panel.add(b * packed(K));
            let ab = a.add(b * Q8K);
            let mut sumi = [_mm256_setzero_si256(); N];
            for s in 0..nsub(K) {
                // The i16 scale, twice per row lane, as one sign-extended i32.
                let sc = _mm256_srai_epi32::<16>(load256(pb.add(SC + 32 * s)));
                let mut p = [_mm256_setzero_si256(); N];
                for st in s * steps_per_sub..(s + 1) * steps_per_sub {
                    let wq = load256(pb.add(32 * st));
                    for (j, p) in p.iter_mut().enumerate() {
                        let av = bcast4(ab.add(j * arb + 4 + 4 * st));
                        *p = _mm256_dpbusd_epi32(*p, wq, av);
                    }
                }
                for (sum, p) in sumi.iter_mut().zip(&p) {
                    *sum = _mm256_add_epi32(*sum, _mm256_mullo_epi32(*p, sc));
                }
            }
            finish::<K, N>(pb, ab, arb, &sumi, &mut acc);
        }
    }
    acc
}

/// Lane `r` of result `j`: row `r` of the panel · token `j`.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `panel` holds `nb` packed super-blocks; `a` points at
/// `N` Q8_K rows (`arb` bytes apart) of `nb` blocks.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn kern<const K: u8, const N: usize>(
    panel: *const u8,
    nb: usize,
    a: *const u8,
    arb: usize,
) -> [__m256; N] {
    let steps_per_sub = 64 / nsub(K);
    let run = run_len(K);
    let mut acc = [_mm256_setzero_ps(); N];
    for b in 0..nb {
        // SAFETY (whole body): super-block `b < nb` of the panel and of each token row.
        unsafe {
            let pb = panel.add(b * packed(K));
            let ab = a.add(b * Q8K);
            let mut sumi = [_mm256_setzero_si256(); N];
            for s in 0..nsub(K) {
                let sc = load256(pb.add(SC + 32 * s));
                for h in 0..steps_per_sub / run {
                    let first = s * steps_per_sub + h * run;
                    let mut p16 = [_mm256_setzero_si256(); N];
                    for st in first..first + run {
                        let wq = load256(pb.add(32 * st));
                        for (j, p) in p16.iter_mut().enumerate() {
                            let av = bcast4(ab.add(j * arb + 4 + 4 * st));
                            *p = _mm256_add_epi16(*p, _mm256_maddubs_epi16(wq, av));
                        }
                    }
                    for (sum, p) in sumi.iter_mut().zip(&p16) {
                        *sum = _mm256_add_epi32(*sum, _mm256_madd_epi16(*p, sc));
                    }
                }
            }
            finish::<K, N>(pb, ab, arb, &sumi, &mut acc);
        }
    }
    acc
}

/// Adds super-block `pb`'s integer sums `sumi` (per token) to `acc`, with the mins or zero
/// points taken off through the activations' block sums and both scales applied.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `pb` is a whole packed super-block and `ab` the
/// matching block of `N` Q8_K rows, `arb` bytes apart.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn finish<const K: u8, const N: usize>(
    pb: *const u8,
    ab: *const u8,
    arb: usize,
    sumi: &[__m256i; N],
    acc: &mut [__m256; N],
) {
    // SAFETY: offsets inside the packed block and the activation blocks.
    unsafe {
        let mut summ = [_mm256_setzero_si256(); N];
        for t in 0..8 {
            let o = load256(pb.add(off_at(K) + 32 * t));
            for (j, m) in summ.iter_mut().enumerate() {
                let sums = bcast4(ab.add(j * arb + 260 + 4 * t));
                *m = _mm256_add_epi32(*m, _mm256_madd_epi16(o, sums));
            }
        }
        let dw = _mm256_loadu_ps(pb.add(d_at(K)).cast());
        for (j, acc) in acc.iter_mut().enumerate() {
            let da = bcast_f32(ab.add(j * arb));
            let dd = _mm256_mul_ps(dw, da);
            match K {
                Q3_K => {
                    let s = _mm256_sub_epi32(sumi[j], _mm256_slli_epi32::<2>(summ[j]));
                    *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), dd, *acc);
                }
                Q6_K => {
                    let s = _mm256_sub_epi32(sumi[j], _mm256_slli_epi32::<5>(summ[j]));
                    *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), dd, *acc);
                }
                _ => {
                    let dm = _mm256_mul_ps(_mm256_loadu_ps(pb.add(d_at(K) + 32).cast()), da);
                    *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi[j]), dd, *acc);
                    *acc = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(summ[j]), dm, *acc);
                }
            }
        }
    }
}
