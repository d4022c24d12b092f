//! AVX2 tiled kernels and the loops that drive them.
// Kernels walk several arrays (quants, scales, lanes) in lockstep by index; iterator chains
// would hide which element goes with which.
#![allow(clippy::needless_range_loop)]

/// `$kern::<$k, n>($args)` for `$rn` tokens (`1..=` the largest of `$n`, which come highest
/// first; below the others, 1), into the first `$rn` of `$cap` single-register results: the
/// kernels take their token count as a constant, the tiles' last call has fewer.
macro_rules! tokens_at_run_time {
    ($rn:expr, $cap:expr, $kern:ident::<$k:ident> $args:tt, [$($n:literal),+]) => {{
        let mut out = [_mm256_setzero_ps(); $cap];
        match $rn {
            $($n => out[..$n].copy_from_slice(&$kern::<$k, $n> $args),)+
            _ => out[..1].copy_from_slice(&$kern::<$k, 1> $args),
        }
        out.map(|v| [v])
    }};
}

mod float;
mod kq;
mod q32;

use std::arch::x86_64::*;
use std::cell::RefCell;

use crate::matmul::{Prepared, SharedMut, WeightRef};
use crate::pool::ThreadPool;
use crate::types::GgmlType;

/// Weight bytes (raw or packed) a thread keeps hot while all tokens sweep over them: about
/// half of this machine's 512 KiB L2, leaving room for the activations.
const BLOCK_BYTES: usize = 256 << 10;

/// Rows per packed panel: one per 32-bit lane.
pub(super) const PANEL: usize = 8;

pub(super) fn run(pool: &ThreadPool, w: WeightRef<'_>, x: &Prepared<'_>, y: &mut [f32]) -> bool {
    // SAFETY (each arm): `gemm::run` only comes here at `Isa::Avx2`, which is only chosen on
    // CPUs with AVX2, FMA and F16C; `matmul_prepared` checked the shapes.
    unsafe {
        match w.dtype {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => float::run(pool, w, x, y),
            GgmlType::Q4_0 => q32::run::<{ q32::Q4_0 }>(pool, w, x, y),
            GgmlType::Q4_1 => q32::run::<{ q32::Q4_1 }>(pool, w, x, y),
            GgmlType::Q5_0 => q32::run::<{ q32::Q5_0 }>(pool, w, x, y),
            GgmlType::Q5_1 => q32::run::<{ q32::Q5_1 }>(pool, w, x, y),
            GgmlType::Q8_0 => q32::run::<{ q32::Q8_0 }>(pool, w, x, y),
            GgmlType::Q2_K => kq::run::<{ kq::Q2_K }>(pool, w, x, y),
            GgmlType::Q3_K => kq::run::<{ kq::Q3_K }>(pool, w, x, y),
            GgmlType::Q4_K => kq::run::<{ kq::Q4_K }>(pool, w, x, y),
            GgmlType::Q5_K => kq::run::<{ kq::Q5_K }>(pool, w, x, y),
            GgmlType::Q6_K => kq::run::<{ kq::Q6_K }>(pool, w, x, y),
            GgmlType::Q8_1 | GgmlType::Q8_K => return false,
        }
    }
    true
}

/// 64-byte aligned storage for packed panels.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([u8; 64]);

thread_local! {
    /// Each thread's packing buffer, grown as needed and kept (pool threads live as long as
    /// the pool, so steady-state prefill does not allocate).
    static PACK: RefCell<Vec<Line>> = const { RefCell::new(Vec::new()) };
}

/// Drives a packed kernel over the whole product.
///
/// Panels are `8·V` rows. Work items are runs of consecutive panels, claimed by whichever
/// thread is free; an item packs its panels (at most [`BLOCK_BYTES`]) with
/// `pack(first_row, dst)`, then for every group of up to `RN` tokens calls
/// `kern(panel, first_token, tokens)` on each of them, whose result `[j][v]` lane `r` is
/// `y[first_token + j][first_row + 8v + r]`.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C. `pack` must write at most `panel_bytes` bytes, and
/// `kern` must only read the panel and the activations of the tokens it is given.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn drive_packed<const V: usize, const RN: usize>(
    pool: &ThreadPool,
    rows: usize,
    n: usize,
    y: &mut [f32],
    panel_bytes: usize,
    pack: impl Fn(usize, *mut u8) + Sync,
    kern: impl Fn(*const u8, usize, usize) -> [[__m256; V]; RN] + Sync,
) {
    let out = SharedMut(y.as_mut_ptr());
    let prows = 8 * V;
    let panels = rows.div_ceil(prows);
    // Panels per work item: what fits the cache, but at least four items per thread so that
    // a thread slowed by other work on its core hands the rest over.
    let per_item = (BLOCK_BYTES / panel_bytes)
        .min(panels.div_ceil(4 * pool.n_threads()))
        .max(1);
    pool.run_dynamic(panels.div_ceil(per_item), |item| {
        let p0 = item * per_item;
        let count = per_item.min(panels - p0);
        PACK.with(|buf| {
            let mut buf = buf.borrow_mut();
            let lines = (per_item * panel_bytes).div_ceil(64);
            if buf.len() < lines {
                buf.resize(lines, Line([0; 64]));
            }
            let base = buf.as_mut_ptr().cast::<u8>();
            for p in 0..count {
                // The buffer holds `per_item` panels.
                pack(prows * (p0 + p), base.wrapping_add(p * panel_bytes));
            }
            let mut t0 = 0;
            while t0 < n {
                let rn = RN.min(n - t0);
                for p in 0..count {
                    let acc = kern(base.wrapping_add(p * panel_bytes), t0, rn);
                    for (j, vs) in acc.iter().enumerate().take(rn) {
                        for (v, x) in vs.iter().enumerate() {
                            let r0 = prows * (p0 + p) + 8 * v;
                            if r0 >= rows {
                                break;
                            }
                            let valid = 8.min(rows - r0);
                            let dst = out.at((t0 + j) * rows + r0);
                            // SAFETY: this item alone writes rows `r0..r0 + valid` of `y` (its
                            // panels); `(t0 + j) * rows + r0 + valid <= y.len()`.
                            unsafe {
                                if valid == 8 {
                                    _mm256_storeu_ps(dst, *x);
                                } else {
                                    let mut tmp = [0f32; 8];
                                    _mm256_storeu_ps(tmp.as_mut_ptr(), *x);
                                    std::ptr::copy_nonoverlapping(tmp.as_ptr(), dst, valid);
                                }
                            }
                        }
                    }
                }
                t0 += rn;
            }
        });
    });
}

/// Transposes an 8×8 matrix of 32-bit elements: output `k` holds element `k` of every input,
/// input `r` in lane `r`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn transpose8(r: [__m256i; 8]) -> [__m256i; 8] {
    let f = r.map(|v| _mm256_castsi256_ps(v));
    // Pairs of rows interleaved, then quadruples, then the 128-bit halves swapped into place.
    let t: [__m256; 8] = std::array::from_fn(|i| {
        let (a, b) = (f[i / 2 * 2], f[i / 2 * 2 + 1]);
        if i % 2 == 0 {
            _mm256_unpacklo_ps(a, b)
        } else {
            _mm256_unpackhi_ps(a, b)
        }
    });
    // u[4h + k]: rows 4h..4h+4, elements k (low half) and k + 4 (high half).
    let u: [__m256; 8] = std::array::from_fn(|i| {
        let (h, k) = (i / 4, i % 4);
        let (a, b) = (t[4 * h + k / 2], t[4 * h + 2 + k / 2]);
        if k % 2 == 0 {
            _mm256_shuffle_ps::<0x44>(a, b)
        } else {
            _mm256_shuffle_ps::<0xEE>(a, b)
        }
    });
    std::array::from_fn(|k| {
        let v = if k < 4 {
            _mm256_permute2f128_ps::<0x20>(u[k], u[4 + k])
        } else {
            _mm256_permute2f128_ps::<0x31>(u[k - 4], u[k])
        };
        _mm256_castps_si256(v)
    })
}

/// Broadcast of the f32 at `p`.
///
/// # Safety
/// `p` must be valid for reading 4 bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) unsafe fn bcast_f32(p: *const u8) -> __m256 {
    // SAFETY: forwarded to the caller.
    _mm256_set1_ps(unsafe { p.cast::<f32>().read_unaligned() })
}
