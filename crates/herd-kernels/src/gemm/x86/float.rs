//! Float weights (F32, F16, BF16) × f32 activations.
//!
//! - Few tokens: dot-product tiles of 3 rows × 3 tokens, eight lanes along the row, straight
//!   from the weight bytes: each step loads eight elements of 3 activation and 3 weight rows
//!   (widening halves) for 9 FMAs. (4 × 3 needs 17 registers and spills an accumulator.)
//! - Many tokens: weights packed as panels of 16 rows (`[k][16]`, F16 weights as F16 and the
//!   others as f32), tokens regrouped six at a time (`[k][6]`), and a 16 × 6 outer-product
//!   kernel: per element, two panel loads (widened from F16 on the fly, which costs no FMA
//!   slot on Zen 3 and halves the bytes streamed from L2) and six broadcasts of consecutive
//!   activations feed 12 FMAs into 12 accumulators, with no horizontal sums at the end.

use std::arch::x86_64::*;

use super::{BLOCK_BYTES, drive_packed, transpose8};
use crate::matmul::{Prepared, SharedMut, WeightRef};
use crate::pool::ThreadPool;
use crate::simd::x86::float::{Bf16, F16, F32, Lanes};
use crate::simd::x86::hsum_ps;
use crate::types::GgmlType;

const RM: usize = 3;
const RN: usize = 3;
/// Tokens from which packing the weights pays.
const PACK_MIN: usize = 32;
/// Panel vectors (16 rows) and tokens of the packed kernel.
const PV: usize = 2;
const PRN: usize = 6;

/// # Safety
/// The CPU must have AVX2, FMA and F16C; `x` must hold f32 rows (`x.f32s`) of `w.cols`.
pub(super) unsafe fn run(pool: &ThreadPool, w: WeightRef<'_>, x: &Prepared<'_>, y: &mut [f32]) {
    // SAFETY: forwarded to the caller.
    unsafe {
        let packed = x.n >= PACK_MIN;
        match w.dtype {
            GgmlType::F32 if packed => go_packed::<F32, F32>(pool, w, x, y),
            GgmlType::F16 if packed => go_packed::<F16, F16>(pool, w, x, y),
            GgmlType::BF16 if packed => go_packed::<Bf16, F32>(pool, w, x, y),
            GgmlType::F32 => go::<F32>(pool, w, x, y),
            GgmlType::F16 => go::<F16>(pool, w, x, y),
            GgmlType::BF16 => go::<Bf16>(pool, w, x, y),
            t => unreachable!("float tiles for {t}"),
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn go<W: Lanes>(pool: &ThreadPool, w: WeightRef<'_>, x: &Prepared<'_>, y: &mut [f32]) {
    let (rows, k, n) = (w.rows, w.cols, x.n);
    assert_eq!(x.f32s.len(), n * k, "float tiles need f32 activations");
    let rb = w.row_bytes();
    let units = rows.div_ceil(RM);
    let per_item = (BLOCK_BYTES / (RM * rb).max(1))
        .min(units.div_ceil(4 * pool.n_threads()))
        .max(1);
    let out = SharedMut(y.as_mut_ptr());
    let (wd, xd) = (w.data, x.f32s);
    pool.run_dynamic(units.div_ceil(per_item), |item| {
        let u0 = item * per_item;
        let u1 = (u0 + per_item).min(units);
        let mut t0 = 0;
        while t0 < n {
            let rn = RN.min(n - t0);
            for u in u0..u1 {
                let r0 = u * RM;
                let rm = RM.min(rows - r0);
                // SAFETY: rows `r0..r0 + rm` and tokens `t0..t0 + rn` exist; this item
                // alone writes rows `r0..r0 + rm` of `y`.
                unsafe {
                    tile_any::<W>(
                        rm,
                        rn,
                        wd.as_ptr().add(r0 * rb),
                        rb,
                        xd.as_ptr().add(t0 * k),
                        k,
                        out.at(t0 * rows + r0),
                        rows,
                    )
                };
            }
            t0 += rn;
        }
    });
}

/// [`tile`] for a run-time tile shape.
///
/// # Safety
/// As [`tile`].
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_any<W: Lanes>(
    rm: usize,
    rn: usize,
    w: *const u8,
    ws: usize,
    x: *const f32,
    k: usize,
    y: *mut f32,
    ys: usize,
) {
    macro_rules! shapes {
        ($(($m:literal, $n:literal)),*) => {
            match (rm, rn) {
                // SAFETY: forwarded to the caller.
                $(($m, $n) => unsafe { tile::<W, $m, $n>(w, ws, x, k, y, ys) },)*
                _ => unreachable!("tile shape {rm}×{rn}"),
            }
        };
    }
    shapes!(
        (4, 3),
        (4, 2),
        (4, 1),
        (3, 3),
        (3, 2),
        (3, 1),
        (2, 3),
        (2, 2),
        (2, 1),
        (1, 3),
        (1, 2),
        (1, 1)
    )
}

/// `y[j·ys + i] = Σ_k w[i][k]·x[j][k]` for `M` weight rows (`ws` bytes apart) and `N` token
/// rows of `k` f32 (`k` apart).
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; all rows must be readable for `k` elements and the
/// `M × N` outputs writable.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn tile<W: Lanes, const M: usize, const N: usize>(
    w: *const u8,
    ws: usize,
    x: *const f32,
    k: usize,
    y: *mut f32,
    ys: usize,
) {
    let mut acc = [[_mm256_setzero_ps(); N]; M];
    let k8 = k - k % 8;
    let mut e = 0;
    // SAFETY (loads): element `e + 8 <= k8 <= k` of every row.
    while e < k8 {
        let xv: [__m256; N] = std::array::from_fn(|j| unsafe { _mm256_loadu_ps(x.add(j * k + e)) });
        for (i, row) in acc.iter_mut().enumerate() {
            let wv = unsafe { W::load8(w.add(i * ws + e * W::SIZE)) };
            for (a, &xj) in row.iter_mut().zip(&xv) {
                *a = _mm256_fmadd_ps(wv, xj, *a);
            }
        }
        e += 8;
    }
    for (i, row) in acc.iter().enumerate() {
        for (j, a) in row.iter().enumerate() {
            let mut s = hsum_ps(*a);
            for t in k8..k {
                // SAFETY: element `t < k` of weight row `i` and token row `j`.
                unsafe { s += W::get(w.add(i * ws), t) * *x.add(j * k + t) };
            }
            // SAFETY: output `(i, j)` is writable (caller).
            unsafe { *y.add(j * ys + i) = s };
        }
    }
}

/// Weights `W` packed as panels of `P` (F16 weights stay F16: half the bytes of each panel to
/// stream from L2 and twice the rows per cache-sized work item, for one conversion per load).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn go_packed<W: Lanes, P: Panel>(
    pool: &ThreadPool,
    w: WeightRef<'_>,
    x: &Prepared<'_>,
    y: &mut [f32],
) {
    let (rows, k) = (w.rows, w.cols);
    assert_eq!(x.f32s.len(), x.n * k, "float tiles need f32 activations");
    let (rb, data) = (w.row_bytes(), w.data);
    XPACK.with(|buf| {
        let mut buf = buf.borrow_mut();
        let xs = pack_tokens(pool, x.f32s, x.n, k, &mut buf);
        // SAFETY: the closures are called with panel starts inside `rows` and token ranges
        // inside `x.n` starting at multiples of `PRN` (`drive_packed` steps by it); `pack`
        // writes one panel of `16 · P::SIZE · k` bytes; group `t0 / PRN` of `xs` holds
        // `PRN · k` floats.
        unsafe {
            drive_packed::<PV, PRN>(
                pool,
                rows,
                x.n,
                y,
                16 * P::SIZE * k,
                |r0, dst| pack::<W, P>(data.as_ptr(), rows, rb, k, r0, dst),
                |panel, t0, rn| kern_any::<P>(panel, k, xs.as_ptr().add(t0 * k), rn),
            )
        }
    });
}

thread_local! {
    /// The caller's buffer of activations regrouped for the packed kernel, kept between calls
    /// so that steady-state prefill does not allocate.
    static XPACK: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Regroups `n` token rows of `k` as groups of [`PRN`] tokens, `[k][PRN]` each (the last
/// group's lanes past `n` left as they were): the kernel's six broadcasts per element then
/// read one stream of consecutive floats instead of six rows `k` apart.
fn pack_tokens<'b>(
    pool: &ThreadPool,
    xs: &[f32],
    n: usize,
    k: usize,
    buf: &'b mut Vec<f32>,
) -> &'b [f32] {
    let groups = n.div_ceil(PRN);
    let need = groups * PRN * k;
    // Grown, never cleared: zero-filling it first, serially, held the other threads up, and
    // the last group's lanes past `n` are never read (the kernel takes its live tokens only).
    if buf.len() < need {
        buf.resize(need, 0.0);
    }
    let out = SharedMut(buf.as_mut_ptr());
    // Spread over the pool: done serially it held the other threads up (about 5 % of a
    // two-thread prefill).
    pool.run_dynamic(groups, |g| {
        // SAFETY: group `g` (`PRN · k` floats at `g · PRN · k`) is claimed once and lies
        // inside `buf`, which outlives `run_dynamic`.
        let dst = unsafe { std::slice::from_raw_parts_mut(out.at(g * PRN * k), PRN * k) };
        for j in 0..PRN.min(n - g * PRN) {
            let t = g * PRN + j;
            for (e, &v) in xs[t * k..(t + 1) * k].iter().enumerate() {
                dst[e * PRN + j] = v;
            }
        }
    });
    &buf[..need]
}

/// Packs rows `r0..r0 + 16` (zeros past `rows`) as `[k][16]` elements of `P` (F32, or F16
/// for F16 weights) at `dst`.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `data` holds `rows` rows of `rb` bytes (`k`
/// elements) and `dst` has room for `16 · P::SIZE · k` bytes.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn pack<W: Lanes, P: Panel>(
    data: *const u8,
    rows: usize,
    rb: usize,
    k: usize,
    r0: usize,
    dst: *mut u8,
) {
    let k8 = k - k % 8;
    for h in 0..PV {
        let first = r0 + 8 * h;
        let live = rows.saturating_sub(first).min(8);
        let mut e = 0;
        while e < k8 {
            let v: [__m256i; 8] = std::array::from_fn(|r| {
                if r < live {
                    // SAFETY: row `first + r < rows`, elements `e..e + 8 <= k`.
                    _mm256_castps_si256(unsafe {
                        W::load8(data.add((first + r) * rb + e * W::SIZE))
                    })
                } else {
                    _mm256_setzero_si256()
                }
            });
            for (kk, t) in transpose8(v).iter().enumerate() {
                // SAFETY: element `e + kk < k` of the panel, half `h`.
                unsafe { P::store8(dst.add(((e + kk) * 16 + 8 * h) * P::SIZE), *t) };
            }
            e += 8;
        }
        for e in k8..k {
            for r in 0..8 {
                // SAFETY: as above, one element at a time.
                unsafe {
                    let v = if r < live {
                        W::get(data.add((first + r) * rb), e)
                    } else {
                        0.0
                    };
                    P::store1(dst.add((e * 16 + 8 * h + r) * P::SIZE), v);
                }
            }
        }
    }
}

/// An element type of the packed panels: f32, or F16 for F16 weights (exact, so packing them
/// loses nothing). Only these two implement it, so a panel is never stored in one half type
/// and read back as another.
trait Panel: Lanes {
    /// Stores the eight f32 lanes of `t` (as float bits) at `dst`.
    ///
    /// # Safety
    /// `dst` must be valid for writing `8 · SIZE` bytes; the CPU must have AVX2, FMA and F16C.
    unsafe fn store8(dst: *mut u8, t: __m256i);
    /// Stores `v` at `dst`.
    ///
    /// # Safety
    /// `dst` must be valid for writing `SIZE` bytes.
    unsafe fn store1(dst: *mut u8, v: f32);
}

impl Panel for F32 {
    #[inline(always)]
    unsafe fn store8(dst: *mut u8, t: __m256i) {
        // SAFETY: forwarded to the caller.
        unsafe { _mm256_storeu_si256(dst.cast(), t) }
    }
    #[inline(always)]
    unsafe fn store1(dst: *mut u8, v: f32) {
        // SAFETY: forwarded to the caller.
        unsafe { dst.cast::<f32>().write_unaligned(v) }
    }
}

impl Panel for F16 {
    #[inline(always)]
    unsafe fn store8(dst: *mut u8, t: __m256i) {
        // SAFETY: forwarded to the caller (who has F16C).
        unsafe {
            let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_castsi256_ps(t));
            _mm_storeu_si128(dst.cast(), h);
        }
    }
    #[inline(always)]
    unsafe fn store1(dst: *mut u8, v: f32) {
        // SAFETY: forwarded to the caller.
        unsafe {
            dst.cast::<u16>()
                .write_unaligned(half::f16::from_f32(v).to_bits())
        }
    }
}

/// [`kern`] for `rn` tokens at run time.
///
/// # Safety
/// As [`kern`].
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn kern_any<P: Lanes>(
    panel: *const u8,
    k: usize,
    x: *const f32,
    rn: usize,
) -> [[__m256; PV]; PRN] {
    let mut out = [[_mm256_setzero_ps(); PV]; PRN];
    macro_rules! widths {
        ($($n:literal),*) => {
            match rn {
                // SAFETY: forwarded to the caller.
                $($n => out[..$n].copy_from_slice(&unsafe { kern::<P, $n>(panel, k, x) }),)*
                _ => unreachable!("{rn} tokens"),
            }
        };
    }
    widths!(1, 2, 3, 4, 5, 6);
    out
}

/// `[j][v]` lane `r`: panel row `8v + r` · token `j`.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `panel` holds `k` packed elements of `P` and `x` a
/// group of tokens as [`pack_tokens`] lays it out (`[k][PRN]`), of which the first `N` are
/// used.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn kern<P: Lanes, const N: usize>(
    panel: *const u8,
    k: usize,
    x: *const f32,
) -> [[__m256; PV]; N] {
    let mut acc = [[_mm256_setzero_ps(); PV]; N];
    let (mut p, mut xp) = (panel, x);
    for _ in 0..k {
        // SAFETY: element `e < k` of the panel (at `p`) and of the token group (at `xp`).
        unsafe {
            let w0 = P::load8(p);
            let w1 = P::load8(p.add(8 * P::SIZE));
            for (j, a) in acc.iter_mut().enumerate() {
                let xv = _mm256_broadcast_ss(&*xp.add(j));
                a[0] = _mm256_fmadd_ps(w0, xv, a[0]);
                a[1] = _mm256_fmadd_ps(w1, xv, a[1]);
            }
            p = p.add(16 * P::SIZE);
            xp = xp.add(PRN);
        }
    }
    acc
}
