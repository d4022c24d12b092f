//! Float weights (F32, F16, BF16) × f32 activations: tiles of 4 rows × 3 tokens.
//!
//! Each step loads eight elements of 3 activation rows and of 4 weight rows (widening halves
//! to f32) and makes 12 FMAs into 12 accumulators: 7 loads feed 12 FMAs, and with the 3
//! activation vectors held the tile uses 16 registers. No packing: the weight bytes are read
//! where they lie.

use std::arch::x86_64::*;

use super::BLOCK_BYTES;
use crate::matmul::{Prepared, SharedMut, WeightRef};
use crate::pool::{ThreadPool, chunk};
use crate::simd::x86::float::{Bf16, F16, F32, Lanes};
use crate::simd::x86::hsum_ps;
use crate::types::GgmlType;

const RM: usize = 4;
const RN: usize = 3;

/// # Safety
/// The CPU must have AVX2, FMA and F16C; `x` must hold f32 rows (`x.f32s`) of `w.cols`.
pub(super) unsafe fn run(pool: &ThreadPool, w: WeightRef<'_>, x: &Prepared<'_>, y: &mut [f32]) {
    // SAFETY: forwarded to the caller.
    unsafe {
        match w.dtype {
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
    let per_block = (BLOCK_BYTES / (RM * rb).max(1)).max(1);
    let out = SharedMut(y.as_mut_ptr());
    let (wd, xd) = (w.data, x.f32s);
    pool.run(|ith, nth| {
        let mine = chunk(units, ith, nth);
        let mut u0 = mine.start;
        while u0 < mine.end {
            let u1 = (u0 + per_block).min(mine.end);
            let mut t0 = 0;
            while t0 < n {
                let rn = RN.min(n - t0);
                for u in u0..u1 {
                    let r0 = u * RM;
                    let rm = RM.min(rows - r0);
                    // SAFETY: rows `r0..r0 + rm` and tokens `t0..t0 + rn` exist; thread `ith`
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
            u0 = u1;
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
