//! The AVX2 kernels of [`super::attend8`] and [`super::attend1`].

use std::arch::x86_64::*;

use super::{KEYS_PER_BLOCK, Rows, Single, Tile};

/// # Safety
/// AVX2, FMA and F16C; `Tile::check` holds; `scratch` holds [`Tile::scratch`] floats.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn attend8(t: &Tile<'_>, scratch: &mut [f32], out: &mut [f32]) {
    let (jmin, jmax) = t.span();
    let n = jmax - jmin + 1;
    let hd = t.hd;
    let q = t.q.as_ptr();
    // `[n][8]` scores, then (f16 rows only) one block of widened rows.
    let (scores, wide) = scratch.split_at_mut(8 * n);
    let s = scores.as_mut_ptr();
    let wide = wide.as_mut_ptr();
    let scale = _mm256_set1_ps(t.scale);
    // SAFETY (all blocks): indices stay below `8·hd` (q, out), `8·n` (scores),
    // `KEYS_PER_BLOCK·hd` (wide) and `jmax·stride + hd` (k, v), as the caller checked.
    unsafe {
        // Scores, eight keys at a time: eight independent sums keep both FMA units busy
        // (four left them waiting on the FMA's latency), and each query load serves eight.
        for b0 in (0..n).step_by(KEYS_PER_BLOCK) {
            let keys = (n - b0).min(KEYS_PER_BLOCK);
            let (kr, stride) = block(t.k, t.stride, hd, jmin + b0, keys, wide);
            // Streaming, the next block (or the first values) is asked for while this one is
            // scored, 8 rows per 8 keys.
            let (next, nj) = if b0 + KEYS_PER_BLOCK < n {
                (t.k, jmin + b0 + KEYS_PER_BLOCK)
            } else {
                (t.v, jmin)
            };
            let sb = s.add(b0 * 8);
            let mut i = 0;
            while i + 8 <= keys {
                prefetch_rows(next, t.stride, hd, nj + i, if t.stream { 8 } else { 0 });
                score_rows::<8>(q, kr.add(i * stride), stride, hd, scale, sb.add(i * 8));
                i += 8;
            }
            while i < keys {
                score_rows::<1>(q, kr.add(i * stride), stride, hd, scale, sb.add(i * 8));
                i += 1;
            }
        }
        let sum = softmax(t, s, n, jmin);
        // p·v, eight dimensions at a time over a block of keys, the sums kept in `out`
        // between blocks: a block's value rows stay in L1 while its dimensions go by,
        // where one pass over all keys per eight dimensions read them from memory again.
        let o = out.as_mut_ptr();
        for d in 0..hd {
            _mm256_storeu_ps(o.add(d * 8), _mm256_setzero_ps());
        }
        for b0 in (0..n).step_by(KEYS_PER_BLOCK) {
            let keys = (n - b0).min(KEYS_PER_BLOCK);
            let (vr, stride) = block(t.v, t.stride, hd, jmin + b0, keys, wide);
            // Streaming, the next block's values are asked for, a share per 8 dimensions
            // weighed.
            let nj = jmin + b0 + keys;
            let next = if t.stream {
                (n - (b0 + keys)).min(KEYS_PER_BLOCK)
            } else {
                0
            };
            let share = next.div_ceil(hd.div_ceil(8));
            let p = s.add(b0 * 8);
            let mut d0 = 0;
            while d0 + 8 <= hd {
                let from = share * (d0 / 8);
                prefetch_rows(
                    t.v,
                    t.stride,
                    hd,
                    nj + from,
                    share.min(next.saturating_sub(from)),
                );
                weigh::<8>(p, vr.add(d0), stride, keys, o.add(d0 * 8));
                d0 += 8;
            }
            while d0 < hd {
                weigh::<1>(p, vr.add(d0), stride, keys, o.add(d0 * 8));
                d0 += 1;
            }
        }
        for d in 0..hd {
            let x = _mm256_loadu_ps(o.add(d * 8));
            _mm256_storeu_ps(o.add(d * 8), _mm256_div_ps(x, sum));
        }
    }
}

/// # Safety
/// AVX2, FMA and F16C; `hd % 8 == 0`; the inputs cover the keys (as [`super::attend1`]
/// asserts); `scratch` holds [`Single::scratch`] floats and `out` `hd`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn attend1(t: &Single<'_>, scratch: &mut [f32], out: &mut [f32]) {
    let n = t.hi + 1 - t.lo;
    let hd = t.hd;
    let q = t.q.as_ptr();
    // `[n]` scores, then (f16 rows only) one block of widened rows.
    let (scores, wide) = scratch.split_at_mut(n);
    let s = scores.as_mut_ptr();
    let wide = wide.as_mut_ptr();
    let scale = _mm256_set1_ps(t.scale);
    // SAFETY (all blocks): indices stay below `hd` (q, out), `n` (scores), `KEYS_PER_BLOCK·hd`
    // (wide) and `hi·stride + hd` (k, v), as the caller checked.
    unsafe {
        // Scores, 8 keys at a time: 8 sums of full-width products (8 independent chains keep
        // both FMA units busy), reduced across together.
        for b0 in (0..n).step_by(KEYS_PER_BLOCK) {
            let keys = (n - b0).min(KEYS_PER_BLOCK);
            let (kr, stride) = block(t.k, t.stride, hd, t.lo + b0, keys, wide);
            // The next block (or the first values) is asked for while this one is scored.
            let (next, nj) = if b0 + KEYS_PER_BLOCK < n {
                (t.k, t.lo + b0 + KEYS_PER_BLOCK)
            } else {
                (t.v, t.lo)
            };
            let mut i = 0;
            while i + 8 <= keys {
                prefetch_rows(next, t.stride, hd, nj + i, 8);
                let mut a = [_mm256_setzero_ps(); 8];
                for d0 in (0..hd).step_by(8) {
                    let qv = _mm256_loadu_ps(q.add(d0));
                    for (r, acc) in a.iter_mut().enumerate() {
                        let k = _mm256_loadu_ps(kr.add((i + r) * stride + d0));
                        *acc = _mm256_fmadd_ps(qv, k, *acc);
                    }
                }
                _mm256_storeu_ps(s.add(b0 + i), _mm256_mul_ps(hsum8(a), scale));
                i += 8;
            }
            while i < keys {
                let mut acc = _mm256_setzero_ps();
                for d0 in (0..hd).step_by(8) {
                    let k = _mm256_loadu_ps(kr.add(i * stride + d0));
                    acc = _mm256_fmadd_ps(_mm256_loadu_ps(q.add(d0)), k, acc);
                }
                *s.add(b0 + i) = crate::simd::x86::hsum_ps(acc) * t.scale;
                i += 1;
            }
        }
        let scores = std::slice::from_raw_parts_mut(s, n);
        if let Some(cap) = t.softcap {
            crate::vec::softcap(scores, cap);
        }
        // Softmax along the keys, 8 at a time.
        let m = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let (mv, floor) = (_mm256_set1_ps(m), _mm256_set1_ps(-1e4));
        let mut sumv = _mm256_setzero_ps();
        let mut tail = 0.0;
        let mut i = 0;
        while i + 8 <= n {
            // A score of -∞ (an overflowed product) would give NaN unfloored.
            let x = _mm256_max_ps(_mm256_sub_ps(_mm256_loadu_ps(s.add(i)), mv), floor);
            let e = crate::vec::x86_expf8(x);
            _mm256_storeu_ps(s.add(i), e);
            sumv = _mm256_add_ps(sumv, e);
            i += 8;
        }
        for x in &mut scores[i..] {
            *x = crate::vec::ggml_expf((*x - m).max(-1e4));
            tail += *x;
        }
        let sum = crate::simd::x86::hsum_ps(sumv) + tail;
        // p·v: up to 64 dimensions at a time over a block of keys, the sums kept in `out`
        // between blocks.
        let o = out.as_mut_ptr();
        out[..hd].fill(0.0);
        for b0 in (0..n).step_by(KEYS_PER_BLOCK) {
            let keys = (n - b0).min(KEYS_PER_BLOCK);
            let (vr, stride) = block(t.v, t.stride, hd, t.lo + b0, keys, wide);
            let nj = t.lo + b0 + keys;
            let next = (n - (b0 + keys)).min(KEYS_PER_BLOCK);
            let p = s.add(b0);
            let mut d0 = 0;
            while d0 < hd {
                // The next block's values are asked for during the first 64 dimensions.
                let ahead = if d0 == 0 { next } else { 0 };
                let ahead = (t.v, t.stride, nj, ahead);
                if d0 + 64 <= hd {
                    weigh1::<8>(p, vr.add(d0), stride, keys, o.add(d0), hd, ahead);
                    d0 += 64;
                } else {
                    weigh1::<1>(p, vr.add(d0), stride, keys, o.add(d0), hd, ahead);
                    d0 += 8;
                }
            }
        }
        let inv = _mm256_set1_ps(1.0 / sum);
        for d0 in (0..hd).step_by(8) {
            _mm256_storeu_ps(o.add(d0), _mm256_mul_ps(_mm256_loadu_ps(o.add(d0)), inv));
        }
    }
}

/// Rows asked for ahead: `count` rows from row `j0` of these, `stride` elements apart.
type Ahead<'a> = (Rows<'a>, usize, usize, usize);

/// Adds `Σ_{i < keys} p_i · v_i` over `8D` dimensions to `o`: `p` the weights, `vr` the first
/// key's value row at the first of those dimensions; one row `ahead` is asked for per key,
/// until its count (rows of `hd` elements) is asked for.
///
/// # Safety
/// AVX2 and FMA; `p` holds `keys` floats, `vr` row `keys − 1` at `stride` (`8D` floats), and
/// `o` `8D`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn weigh1<const D: usize>(
    p: *const f32,
    vr: *const f32,
    stride: usize,
    keys: usize,
    o: *mut f32,
    hd: usize,
    ahead: Ahead<'_>,
) {
    let (next, nstride, nj, count) = ahead;
    // SAFETY: within the bounds the caller gives.
    unsafe {
        let mut a: [__m256; D] = std::array::from_fn(|i| _mm256_loadu_ps(o.add(8 * i)));
        for i in 0..keys {
            prefetch_rows(next, nstride, hd, nj + i, usize::from(i < count));
            let pi = _mm256_broadcast_ss(&*p.add(i));
            let row = vr.add(i * stride);
            for (dd, acc) in a.iter_mut().enumerate() {
                *acc = _mm256_fmadd_ps(pi, _mm256_loadu_ps(row.add(8 * dd)), *acc);
            }
        }
        for (dd, acc) in a.iter().enumerate() {
            _mm256_storeu_ps(o.add(8 * dd), *acc);
        }
    }
}

/// The sums of the 8 vectors' lanes: lane `i` of the result is the sum of `a[i]`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hsum8(a: [__m256; 8]) -> __m256 {
    // [a0₀₁ a0₂₃ a1₀₁ a1₂₃ | a0₄₅ a0₆₇ a1₄₅ a1₆₇] and so on; then a0..a3's (a4..a7's) 4 sums
    // per 128-bit half; the halves added.
    let t0 = _mm256_hadd_ps(a[0], a[1]);
    let t1 = _mm256_hadd_ps(a[2], a[3]);
    let t2 = _mm256_hadd_ps(a[4], a[5]);
    let t3 = _mm256_hadd_ps(a[6], a[7]);
    let u0 = _mm256_hadd_ps(t0, t1);
    let u1 = _mm256_hadd_ps(t2, t3);
    _mm256_add_ps(
        _mm256_permute2f128_ps::<0x20>(u0, u1),
        _mm256_permute2f128_ps::<0x31>(u0, u1),
    )
}

/// Softcap, mask and softmax of the scores `s` (`[n][8]`, key `jmin + i` at row `i`) down
/// each lane, in place; gives each lane's sum of weights (the weights are not divided by it).
///
/// # Safety
/// AVX2 and FMA; `s` holds `8·n` floats.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn softmax(t: &Tile<'_>, s: *mut f32, n: usize, jmin: usize) -> __m256 {
    // SAFETY: `8·n` floats at `s`.
    unsafe {
        if let Some(cap) = t.softcap {
            crate::vec::softcap(std::slice::from_raw_parts_mut(s, 8 * n), cap);
        }
        // Mask, and the running maximum per lane. Only keys that some lane does not see are
        // masked (a prompt tile's last 7, say; none in a decoding step): LLVM makes the
        // masked rewrite a masked store (`vmaskmovps`), slow on AMD cores: with it, this
        // function took 20 % of a tile of 2048 keys; without, 12 %, nearly all exponentials.
        let lo = _mm256_loadu_si256(t.lo.as_ptr().cast());
        let hi = _mm256_loadu_si256(t.hi.as_ptr().cast());
        let (all_from, all_to) = (
            t.lo.iter().copied().max().unwrap_or(0) as usize,
            t.hi.iter().copied().min().unwrap_or(0) as usize,
        );
        let ninf = _mm256_set1_ps(f32::NEG_INFINITY);
        let mut m = ninf;
        for i in 0..n {
            let mut x = _mm256_loadu_ps(s.add(i * 8));
            let key = jmin + i;
            if key < all_from || key > all_to {
                let j = _mm256_set1_epi32(key as i32);
                let hidden = _mm256_castsi256_ps(_mm256_or_si256(
                    _mm256_cmpgt_epi32(lo, j),
                    _mm256_cmpgt_epi32(j, hi),
                ));
                x = _mm256_blendv_ps(x, ninf, hidden);
                _mm256_storeu_ps(s.add(i * 8), x);
            }
            m = _mm256_max_ps(m, x);
        }
        // e^(s − max): hidden keys give e^-10000 = 0.
        let floor = _mm256_set1_ps(-1e4);
        let mut sum = _mm256_setzero_ps();
        for i in 0..n {
            let x = _mm256_max_ps(_mm256_sub_ps(_mm256_loadu_ps(s.add(i * 8)), m), floor);
            let e = crate::vec::x86_expf8(x);
            _mm256_storeu_ps(s.add(i * 8), e);
            sum = _mm256_add_ps(sum, e);
        }
        sum
    }
}

/// Asks for the cache lines of rows `j0..j0 + keys` of `rows` (`hd` elements each, `stride`
/// apart), to be read soon: with the hardware prefetcher alone, a decoding step's reads of
/// the cache waited on memory at the start of every block.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn prefetch_rows(rows: Rows<'_>, stride: usize, hd: usize, j0: usize, keys: usize) {
    let (base, size) = match rows {
        Rows::F32(x) => (x.as_ptr().cast::<u8>(), 4),
        Rows::F16(x) => (x.as_ptr().cast::<u8>(), 2),
    };
    for j in j0..j0 + keys {
        let row = base.wrapping_add(j * stride * size);
        let mut off = 0;
        while off < hd * size {
            // A prefetch never faults, whatever the address.
            _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(off).cast());
            off += 64;
        }
    }
}

/// Rows `j0..j0 + keys` of `rows` as f32 rows: where they are (and their stride) for f32,
/// else widened into `wide` (`[keys][hd]`, stride `hd`).
///
/// # Safety
/// AVX2 and F16C; `rows` holds row `j0 + keys − 1` at `stride` (`hd` elements); for f16
/// rows `wide` holds `keys·hd` floats.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn block(
    rows: Rows<'_>,
    stride: usize,
    hd: usize,
    j0: usize,
    keys: usize,
    wide: *mut f32,
) -> (*const f32, usize) {
    match rows {
        // SAFETY: row `j0` is in bounds.
        Rows::F32(x) => (unsafe { x.as_ptr().add(j0 * stride) }, stride),
        Rows::F16(x) if stride == hd => {
            // SAFETY: `wide` holds `keys·hd` floats (the caller's bound); the source rows
            // are sliced (checked).
            unsafe {
                let dst = std::slice::from_raw_parts_mut(wide, keys * hd);
                crate::vec::x86_f16_to_f32(&x[j0 * hd..][..keys * hd], dst);
            }
            (wide.cast_const(), hd)
        }
        Rows::F16(x) => {
            for i in 0..keys {
                // SAFETY: `wide` holds row `i` (the caller's bound); the source row is
                // sliced (checked).
                unsafe {
                    let dst = std::slice::from_raw_parts_mut(wide.add(i * hd), hd);
                    crate::vec::x86_f16_to_f32(&x[(j0 + i) * stride..][..hd], dst);
                }
            }
            (wide.cast_const(), hd)
        }
    }
}

/// Scores of the `R` key rows from `kr` (`stride` apart) for the 8 lanes' queries `q`
/// (`[hd][8]`), times `scale`, into `s` (`[R][8]`).
///
/// # Safety
/// AVX2 and FMA; `q` holds `8·hd` floats, `kr` `(R − 1)·stride + hd`, `s` `8·R`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn score_rows<const R: usize>(
    q: *const f32,
    kr: *const f32,
    stride: usize,
    hd: usize,
    scale: __m256,
    s: *mut f32,
) {
    // SAFETY: within the bounds the caller gives.
    unsafe {
        let mut a = [_mm256_setzero_ps(); R];
        for d in 0..hd {
            let qd = _mm256_loadu_ps(q.add(d * 8));
            for (r, acc) in a.iter_mut().enumerate() {
                *acc = _mm256_fmadd_ps(_mm256_broadcast_ss(&*kr.add(r * stride + d)), qd, *acc);
            }
        }
        for (r, acc) in a.iter().enumerate() {
            _mm256_storeu_ps(s.add(r * 8), _mm256_mul_ps(*acc, scale));
        }
    }
}

/// Adds `Σ_{i < keys} p_i · v_i[d]` for `D` dimensions to `o` (`[D][8]`): `p` the weights
/// (`[i][8]`), `vr` the first key's value row at the first of the `D` dimensions.
///
/// # Safety
/// AVX2 and FMA; `p` holds `8·keys` floats, `vr` row `keys − 1` at `stride`, and `o`
/// `8·D`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn weigh<const D: usize>(
    p: *const f32,
    vr: *const f32,
    stride: usize,
    keys: usize,
    o: *mut f32,
) {
    // SAFETY: within the bounds the caller gives.
    unsafe {
        let mut a = [_mm256_setzero_ps(); D];
        for (dd, acc) in a.iter_mut().enumerate() {
            *acc = _mm256_loadu_ps(o.add(dd * 8));
        }
        for i in 0..keys {
            let pi = _mm256_loadu_ps(p.add(i * 8));
            let row = vr.add(i * stride);
            for (dd, acc) in a.iter_mut().enumerate() {
                *acc = _mm256_fmadd_ps(pi, _mm256_broadcast_ss(&*row.add(dd)), *acc);
            }
        }
        for (dd, acc) in a.iter().enumerate() {
            _mm256_storeu_ps(o.add(dd * 8), *acc);
        }
    }
}
