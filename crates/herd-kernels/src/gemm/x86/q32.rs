//! Packed tiles for the 32-element block types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0.
//!
//! A packed block of a panel (8 rows, one 32-element block each) is
//! `q[8][32] | d[8] f32 | m[8] f32 (Q4_1, Q5_1)`: `q[s]` holds quants `4s..4s+4` of every row,
//! row `r` in lane `r`. Unsigned quants are stored as they are (0..15 or 0..31, the zero point
//! of Q4_0/Q5_0 comes off as `zero·Σa` from the activation block sums); Q8_0 stores `|q|` and
//! then `q`, for `maddubs`' unsigned × signed operands.
//!
//! 16-bit headroom: activations are within ±127 (quantised by 127/amax), so one `maddubs` lane
//! is at most 2·15·127 = 3810 for 4-bit quants and eight steps (a whole block) sum without
//! overflow; 5-bit quants (7874) take four.

use std::arch::x86_64::*;

use super::{PANEL, bcast_f32, drive_packed, transpose8};
use crate::interleave::{Layout, q8_0 as grouped_q8_0, q32 as grouped, x86::q32_steps};
use crate::matmul::{Prepared, WeightRef};
use crate::pool::ThreadPool;
use crate::simd::x86::{bcast4, bytes_from_bits32, f16_at, load128, load256, nibbles32};

pub(super) const Q4_0: u8 = 0;
pub(super) const Q4_1: u8 = 1;
pub(super) const Q5_0: u8 = 2;
pub(super) const Q5_1: u8 = 3;
pub(super) const Q8_0: u8 = 4;

/// Tokens per kernel call.
const RN: usize = 4;
/// Tokens per kernel call with VNNI.
const RN_VNNI: usize = 8;

const fn has_min(k: u8) -> bool {
    k == Q4_1 || k == Q5_1
}

/// Bytes of packed quants per block.
const fn qbytes(k: u8) -> usize {
    if k == Q8_0 { 512 } else { 256 }
}

/// Bytes of one packed block of a panel.
const fn packed(k: u8) -> usize {
    qbytes(k) + 32 + if has_min(k) { 32 } else { 0 }
}

/// Bytes of a weight block.
const fn wblock(k: u8) -> usize {
    [18, 20, 22, 24, 34][k as usize]
}

/// Bytes of an activation block (Q8_1 for the types with a min, else Q8_0) and the offset of
/// its quants.
const fn ablock(k: u8) -> (usize, usize) {
    if has_min(k) { (36, 4) } else { (34, 2) }
}

/// # Safety
/// The CPU must have AVX2, FMA and F16C; `x` must be prepared for `w` with `aux`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn run<const K: u8>(
    pool: &ThreadPool,
    w: WeightRef<'_>,
    x: &Prepared<'_>,
    y: &mut [f32],
) {
    let nb = w.cols / 32;
    let (rows, rb, data) = (w.rows, w.row_bytes(), w.data);
    let (arb, auxrb) = (x.row_bytes(), x.aux_row_bytes());
    assert_eq!(auxrb, nb * 8, "activations prepared without block sums");
    let (acts, aux) = (x.bytes, x.aux);
    let is_grouped = w.layout == Layout::Grouped;

    let pack = |r0: usize, dst: *mut u8| {
        // SAFETY: `drive_packed` calls this with panel starts inside `rows` and room for `nb`
        // packed blocks at `dst`.
        unsafe {
            if is_grouped && K == Q8_0 {
                pack_grouped_q8_0(data.as_ptr(), nb, r0, dst)
            } else if is_grouped {
                match K {
                    Q4_0 => pack_grouped::<false, false>(data.as_ptr(), nb, r0, dst),
                    Q4_1 => pack_grouped::<false, true>(data.as_ptr(), nb, r0, dst),
                    Q5_0 => pack_grouped::<true, false>(data.as_ptr(), nb, r0, dst),
                    _ => pack_grouped::<true, true>(data.as_ptr(), nb, r0, dst),
                }
            } else {
                pack::<K>(data.as_ptr(), rows, rb, nb, r0, dst)
            }
        }
    };
    // SAFETY: the closures are called with panel starts inside `rows` and token ranges inside
    // `x.n`, so every row and activation they read exists; `pack` writes `nb` packed blocks.
    unsafe {
        if crate::simd::x86::vnni() {
            drive_packed::<1, RN_VNNI>(pool, rows, x.n, y, nb * packed(K), pack, |p, t0, rn| {
                let (a, z) = (acts.as_ptr().add(t0 * arb), aux.as_ptr().add(t0 * auxrb));
                kern_any_vnni::<K>(p, nb, a, arb, z, auxrb, rn)
            })
        } else {
            drive_packed::<1, RN>(pool, rows, x.n, y, nb * packed(K), pack, |p, t0, rn| {
                let (a, z) = (acts.as_ptr().add(t0 * arb), aux.as_ptr().add(t0 * auxrb));
                kern_any::<K>(p, nb, a, arb, z, auxrb, rn)
            })
        }
    }
}

/// The 32 quants of the weight block at `blk` as bytes in element order.
///
/// # Safety
/// `blk` must point at a whole block of type `K`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn decode<const K: u8>(blk: *const u8) -> __m256i {
    // SAFETY: offsets within the block layout (see `simd::x86::q_small`).
    unsafe {
        let fifth = |at: usize| {
            let bits = blk.add(at).cast::<u32>().read_unaligned();
            _mm256_and_si256(bytes_from_bits32(bits), _mm256_set1_epi8(0x10))
        };
        match K {
            Q4_0 => nibbles32(blk.add(2)),
            Q4_1 => nibbles32(blk.add(4)),
            Q5_0 => _mm256_or_si256(nibbles32(blk.add(6)), fifth(2)),
            Q5_1 => _mm256_or_si256(nibbles32(blk.add(8)), fifth(4)),
            _ => load256(blk.add(2)),
        }
    }
}

/// [`pack`] for Q4_0 rows `r0..r0 + 8` (Q5_0 if `FIVE`, Q4_1/Q5_1 if `MIN`) of a matrix in
/// the grouped layout (`crate::interleave::q32`), which already has the rows in lanes: its
/// steps only split into their low and high quants.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `data` is a grouped matrix of that type with `nb`
/// blocks per row holding rows `r0..r0 + 8` (`r0` a multiple of 8), and `dst` has room for
/// `nb` packed blocks.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pack_grouped<const FIVE: bool, const MIN: bool>(
    data: *const u8,
    nb: usize,
    r0: usize,
    dst: *mut u8,
) {
    let k = match (FIVE, MIN) {
        (false, false) => Q4_0,
        (false, true) => Q4_1,
        (true, false) => Q5_0,
        (true, true) => Q5_1,
    };
    for b in 0..nb {
        // SAFETY: group block `b` of group `r0 / 8` and packed block `b` lie inside the
        // caller's buffers; the offsets are those of the two layouts.
        unsafe {
            let g = data.add((r0 / PANEL * nb + b) * grouped::block(FIVE, MIN));
            let o = dst.add(b * packed(k));
            let steps = q32_steps::<FIVE>(g);
            for (s, (lo, hi)) in steps.iter().enumerate() {
                _mm256_storeu_si256(o.add(32 * s).cast(), *lo);
                _mm256_storeu_si256(o.add(32 * (4 + s)).cast(), *hi);
            }
            let d = _mm256_cvtph_ps(load128(g.add(grouped::d_at(FIVE))));
            _mm256_storeu_ps(o.add(qbytes(k)).cast(), d);
            if MIN {
                let m = _mm256_cvtph_ps(load128(g.add(grouped::m_at(FIVE))));
                _mm256_storeu_ps(o.add(qbytes(k) + 32).cast(), m);
            }
        }
    }
}

/// [`pack`] for Q8_0 rows `r0..r0 + 8` of a matrix in the grouped layout
/// (`crate::interleave::q8_0`): its steps are the packed quants already, beside their
/// magnitudes.
///
/// # Safety
/// As [`pack_grouped`], for a grouped Q8_0 matrix.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pack_grouped_q8_0(data: *const u8, nb: usize, r0: usize, dst: *mut u8) {
    for b in 0..nb {
        // SAFETY: group block `b` of group `r0 / 8` and packed block `b` lie inside the
        // caller's buffers; the offsets are those of the two layouts.
        unsafe {
            let g = data.add((r0 / PANEL * nb + b) * grouped_q8_0::BLOCK);
            let o = dst.add(b * packed(Q8_0));
            for s in 0..8 {
                let v = load256(g.add(grouped_q8_0::QS + 32 * s));
                _mm256_storeu_si256(o.add(32 * s).cast(), _mm256_sign_epi8(v, v));
                _mm256_storeu_si256(o.add(256 + 32 * s).cast(), v);
            }
            let d = _mm256_cvtph_ps(load128(g.add(grouped_q8_0::D)));
            _mm256_storeu_ps(o.add(qbytes(Q8_0)).cast(), d);
        }
    }
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
        let mut q = [_mm256_setzero_si256(); PANEL];
        let mut d = [0f32; PANEL];
        let mut m = [0f32; PANEL];
        for r in 0..live {
            // SAFETY: row `r0 + r < rows`, block `b < nb`.
            unsafe {
                let blk = data.add((r0 + r) * rb + b * wblock(K));
                q[r] = decode::<K>(blk);
                d[r] = f16_at(blk);
                if has_min(K) {
                    m[r] = f16_at(blk.add(2));
                }
            }
        }
        let t = transpose8(q);
        // SAFETY: packed block `b` lies within the `nb` blocks at `dst`.
        unsafe {
            let o = dst.add(b * packed(K));
            for (s, v) in t.iter().enumerate() {
                if K == Q8_0 {
                    _mm256_storeu_si256(o.add(32 * s).cast(), _mm256_sign_epi8(*v, *v));
                    _mm256_storeu_si256(o.add(256 + 32 * s).cast(), *v);
                } else {
                    _mm256_storeu_si256(o.add(32 * s).cast(), *v);
                }
            }
            _mm256_storeu_ps(o.add(qbytes(K)).cast(), _mm256_loadu_ps(d.as_ptr()));
            if has_min(K) {
                _mm256_storeu_ps(o.add(qbytes(K) + 32).cast(), _mm256_loadu_ps(m.as_ptr()));
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
    aux: *const u8,
    auxrb: usize,
    rn: usize,
) -> [[__m256; 1]; RN] {
    // SAFETY: forwarded to the caller.
    unsafe { tokens_at_run_time!(rn, RN, kern::<K>(panel, nb, a, arb, aux, auxrb), [4, 3, 2]) }
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
    aux: *const u8,
    auxrb: usize,
    rn: usize,
) -> [[__m256; 1]; RN_VNNI] {
    // SAFETY: forwarded to the caller.
    unsafe {
        tokens_at_run_time!(
            rn,
            RN_VNNI,
            kern_vnni::<K>(panel, nb, a, arb, aux, auxrb),
            [8, 7, 6, 5, 4, 3, 2]
        )
    }
}

/// Lane `r` of result `j`: row `r` of the panel · token `j`.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `panel` holds `nb` packed blocks; `a` and `aux` point
/// at `N` activation rows (`arb`, `auxrb` bytes apart) of `nb` blocks.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn kern<const K: u8, const N: usize>(
    panel: *const u8,
    nb: usize,
    a: *const u8,
    arb: usize,
    aux: *const u8,
    auxrb: usize,
) -> [__m256; N] {
    let ones = _mm256_set1_epi16(1);
    let (ab, qs) = ablock(K);
    // Steps whose 16-bit products may be summed before widening.
    let run = if K == Q5_0 || K == Q5_1 { 4 } else { 8 };
    let mut acc = [_mm256_setzero_ps(); N];
    for b in 0..nb {
        // SAFETY (whole body): block `b < nb` of the panel and of each token row.
        unsafe {
            let pb = panel.add(b * packed(K));
            let at = a.add(b * ab + qs);
            let mut isum = [_mm256_setzero_si256(); N];
            if K == Q8_0 {
                for s in 0..8 {
                    let wa = load256(pb.add(32 * s));
                    let ws = load256(pb.add(256 + 32 * s));
                    for (j, sum) in isum.iter_mut().enumerate() {
                        let av = _mm256_sign_epi8(bcast4(at.add(j * arb + 4 * s)), ws);
                        let p = _mm256_madd_epi16(_mm256_maddubs_epi16(wa, av), ones);
                        *sum = _mm256_add_epi32(*sum, p);
                    }
                }
            } else {
                for h in 0..8 / run {
                    let mut p16 = [_mm256_setzero_si256(); N];
                    for s in h * run..(h + 1) * run {
                        let wq = load256(pb.add(32 * s));
                        for (j, p) in p16.iter_mut().enumerate() {
                            let av = bcast4(at.add(j * arb + 4 * s));
                            *p = _mm256_add_epi16(*p, _mm256_maddubs_epi16(wq, av));
                        }
                    }
                    for (sum, p) in isum.iter_mut().zip(&p16) {
                        *sum = _mm256_add_epi32(*sum, _mm256_madd_epi16(*p, ones));
                    }
                }
            }
            finish::<K, N>(pb, aux.add(8 * b), auxrb, &isum, &mut acc);
        }
    }
    acc
}

/// [`kern`] with AVX-512 VNNI, 8 tokens a call (as `kq::kern_vnni`, which says why):
/// `vpdpbusd` sums four quant pairs into i32 lanes at once, so the unsigned types need no
/// 16-bit runs and Q8_0 takes its quants' magnitudes against the activations with their signs
/// in two instructions where `maddubs`, `madd` and `add` took three more.
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
    aux: *const u8,
    auxrb: usize,
) -> [__m256; N] {
    let (ab, qs) = ablock(K);
    let mut acc = [_mm256_setzero_ps(); N];
    for b in 0..nb {
        // SAFETY (whole body): block `b < nb` of the panel and of each token row.
        unsafe {
            let pb = panel.add(b * packed(K));
            let at = a.add(b * ab + qs);
            let mut isum = [_mm256_setzero_si256(); N];
            for s in 0..8 {
                let wq = load256(pb.add(32 * s));
                if K == Q8_0 {
                    let ws = load256(pb.add(256 + 32 * s));
                    for (j, sum) in isum.iter_mut().enumerate() {
                        let av = _mm256_sign_epi8(bcast4(at.add(j * arb + 4 * s)), ws);
                        *sum = _mm256_dpbusd_epi32(*sum, wq, av);
                    }
                } else {
                    for (j, sum) in isum.iter_mut().enumerate() {
                        *sum = _mm256_dpbusd_epi32(*sum, wq, bcast4(at.add(j * arb + 4 * s)));
                    }
                }
            }
            finish::<K, N>(pb, aux.add(8 * b), auxrb, &isum, &mut acc);
        }
    }
    acc
}

/// Adds a packed block's integer sums `isum` (per token) to `acc`: the zero point off (Q4_0,
/// Q5_0) or the min on (Q4_1, Q5_1) through the activation blocks' extras `x` (`auxrb` bytes
/// apart), both scales applied.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `pb` is a whole packed block and `x` the extras of
/// the matching block of `N` activation rows.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn finish<const K: u8, const N: usize>(
    pb: *const u8,
    x: *const u8,
    auxrb: usize,
    isum: &[__m256i; N],
    acc: &mut [__m256; N],
) {
    // SAFETY: offsets inside the packed block and the extras.
    unsafe {
        let dw = _mm256_loadu_ps(pb.add(qbytes(K)).cast());
        for (j, (acc, sum)) in acc.iter_mut().zip(isum).enumerate() {
            let x = x.add(j * auxrb);
            let s = match K {
                Q4_0 => _mm256_sub_epi32(*sum, _mm256_slli_epi32::<3>(bcast4(x.add(4)))),
                Q5_0 => _mm256_sub_epi32(*sum, _mm256_slli_epi32::<4>(bcast4(x.add(4)))),
                _ => *sum,
            };
            *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, bcast_f32(x)), *acc);
            if has_min(K) {
                let mw = _mm256_loadu_ps(pb.add(qbytes(K) + 32).cast());
                *acc = _mm256_fmadd_ps(mw, bcast_f32(x.add(4)), *acc);
            }
        }
    }
}
