//! The grouped Q6_K format (see the parent module): 8 rows per 256-element super-block.
//!
//! One super-block of a group holds exactly the bytes of the 8 ggml blocks it replaces
//! ([`BLOCK`]; `r` a row of the group, `h < 2` a half of 128 elements, `p < 2`, `k < 8`):
//! - `sc[16][8]` (i8) at [`SC`]: sub-block `j`'s scale of row `r` at `8j + r`;
//! - 16 steps of 96 bytes from [`step_at`]`(h, k)`, in the order the kernel reads them:
//!   `ql` parts `p = 0, 1` then `qh`, each 32 bytes holding, at `4r`, row `r`'s bytes
//!   `64h + 32p + 4k .. + 4` of `ql`, and `32h + 4k .. + 4` of `qh`;
//! - `d[8]` (f16) at [`D`].
//!
//! Everything lies in the order the kernel reads it. With `ql`, `qh` and the scales in three
//! regions of the block, decode ran at 5-6 GB/s against 22 for ggml's rows: each load waited
//! on memory, the hardware prefetcher not following the three interleaved streams.
//!
//! As in ggml, element `128h + 32m + 4k + e` (`m < 4`, `e < 4`) is the low (`m < 2`) or high
//! nibble of step `(h, k)`'s `ql` part `m % 2`, with bits `2m, 2m + 1` of its `qh` above it,
//! minus 32, and belongs to sub-block `8h + 2m + k / 4`.

use super::GROUP;
use crate::types::{QK_K, f16_at, f32_at};

/// Bytes of one super-block of a group.
pub const BLOCK: usize = 1680;
pub(crate) const SC: usize = 0;
pub(crate) const D: usize = 1664;

/// Where step `(h, k)` starts: its two `ql` parts, then its `qh`, 32 bytes each.
pub(crate) const fn step_at(h: usize, k: usize) -> usize {
    128 + 96 * (8 * h + k)
}
/// Bytes of a ggml Q6_K block and of a Q8_K block.
pub(super) const Q6K: usize = 210;
const Q8K: usize = 292;

/// Writes row `r`'s Q6_K block `x` into the group block `o`.
pub(super) fn put_row_block(x: &[u8], r: usize, o: &mut [u8]) {
    for h in 0..2 {
        for k in 0..8 {
            let at = step_at(h, k) + 4 * r;
            for p in 0..2 {
                let ql = 64 * h + 32 * p + 4 * k;
                o[at + 32 * p..at + 32 * p + 4].copy_from_slice(&x[ql..ql + 4]);
            }
            let qh = 128 + 32 * h + 4 * k;
            o[at + 64..at + 68].copy_from_slice(&x[qh..qh + 4]);
        }
    }
    for j in 0..16 {
        o[SC + 8 * j + r] = x[192 + j];
    }
    o[D + 2 * r..D + 2 * r + 2].copy_from_slice(&x[208..210]);
}

/// Row `r` of a grouped matrix `data` (`cols` wide) as ggml's Q6_K bytes, into `out`.
pub(super) fn row_of(data: &[u8], cols: usize, r: usize, out: &mut [u8]) {
    let nb = cols / QK_K;
    let (g, lane) = (r / GROUP, r % GROUP);
    for (b, x) in out[..nb * Q6K].chunks_exact_mut(Q6K).enumerate() {
        let o = &data[(g * nb + b) * BLOCK..(g * nb + b + 1) * BLOCK];
        for h in 0..2 {
            for k in 0..8 {
                let at = step_at(h, k) + 4 * lane;
                for p in 0..2 {
                    let ql = 64 * h + 32 * p + 4 * k;
                    x[ql..ql + 4].copy_from_slice(&o[at + 32 * p..at + 32 * p + 4]);
                }
                let qh = 128 + 32 * h + 4 * k;
                x[qh..qh + 4].copy_from_slice(&o[at + 64..at + 68]);
            }
        }
        for j in 0..16 {
            x[192 + j] = o[SC + 8 * j + lane];
        }
        x[208..210].copy_from_slice(&o[D + 2 * lane..D + 2 * lane + 2]);
    }
}

/// The scalar kernel: `out[r]` = row `r` of group `g` · the Q8_K row `a`.
pub(super) fn dot_group(g: &[u8], a: &[u8]) -> [f32; GROUP] {
    let mut out = [0f32; GROUP];
    for (o, y) in g.chunks_exact(BLOCK).zip(a.chunks_exact(Q8K)) {
        let da = f32_at(y, 0);
        let q8 = &y[4..260];
        for (r, out) in out.iter_mut().enumerate() {
            let mut sums = [0i32; 16];
            for h in 0..2 {
                for m in 0..4 {
                    for k in 0..8 {
                        for e in 0..4 {
                            let at = step_at(h, k) + 4 * r + e;
                            let (ql, qh) = (o[at + 32 * (m % 2)], o[at + 64]);
                            let low = if m < 2 { ql & 0xF } else { ql >> 4 };
                            let q = (low | ((qh >> (2 * m)) & 3) << 4) as i32 - 32;
                            let i = 128 * h + 32 * m + 4 * k + e;
                            sums[8 * h + 2 * m + k / 4] += q * q8[i] as i8 as i32;
                        }
                    }
                }
            }
            let isum: i32 = (0..16)
                .map(|j| o[SC + 8 * j + r] as i8 as i32 * sums[j])
                .sum();
            *out += da * (f16_at(o, D + 2 * r) * isum as f32);
        }
    }
    out
}
