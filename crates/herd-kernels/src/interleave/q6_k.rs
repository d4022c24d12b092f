//! The grouped Q6_K format (see the parent module): 8 rows per 256-element super-block.
//!
//! One super-block of a group holds exactly the bytes of the 8 ggml blocks it replaces
//! ([`BLOCK`]; `r` a row of the group, `h < 2` a half of 128 elements, `k < 8`):
//! - `sc[16][8]` (i8) at [`SC`]: sub-block `j`'s scale of row `r` at `8j + r`;
//! - 16 steps of 96 bytes from [`step_at`]`(h, k)`, in the order the kernel reads them: three
//!   parts of 32 bytes, each with row `r`'s 4 bytes at `4r`. Byte `e` of the parts holds the
//!   quants `q_m` (6 bits, `m < 4`) of elements `128h + 32m + 4k + e`:
//!   - part 0: `q_0`, and the top two bits of `q_2` in bits 6, 7;
//!   - part 1: `q_1`, and the top two bits of `q_3` in bits 6, 7;
//!   - part 2: the low four bits of `q_2`, then those of `q_3`;
//! - `d[8]` (f16) at [`D`].
//!
//! Everything lies in the order the kernel reads it. With `ql`, `qh` and the scales in three
//! regions of the block, decode ran at 5-6 GB/s against 22 for ggml's rows: each load waited
//! on memory, the hardware prefetcher not following the three interleaved streams.
//!
//! Why the quants are not ggml's `ql` nibbles and `qh` pairs: rebuilding four registers of
//! 6-bit quants from those takes 17 vector operations a step, against 11 from these parts
//! (an `and` each for `q_0` and `q_1`), and on AVX2 the grouped Q6_K product is bound by
//! those operations, not by memory, on a fast host.
//!
//! As in ggml, element `128h + 32m + 4k + e` (`m < 4`, `e < 4`) holds `q_m - 32` and belongs
//! to sub-block `8h + 2m + k / 4`.

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

/// The 6-bit quant of element `i` of the ggml Q6_K block `x`: a nibble of `ql` byte
/// `64(i / 128) + i % 64` (the low one for `i % 128 < 64`), below bits `2m, 2m + 1`
/// (`m = i % 128 / 32`) of `qh` byte `32(i / 128) + i % 32`.
fn ggml_quant(x: &[u8], i: usize) -> u8 {
    let (h, m) = (i / 128, i % 128 / 32);
    let low = x[64 * h + i % 64] >> (4 * (m / 2)) & 0xF;
    low | (x[128 + 32 * h + i % 32] >> (2 * m) & 3) << 4
}

/// The element of a super-block that quant `m` of byte `e` of step `(h, k)` holds.
fn element(h: usize, k: usize, m: usize, e: usize) -> usize {
    128 * h + 32 * m + 4 * k + e
}

/// Writes row `r`'s Q6_K block `x` into the group block `o`.
pub(super) fn put_row_block(x: &[u8], r: usize, o: &mut [u8]) {
    for h in 0..2 {
        for k in 0..8 {
            for e in 0..4 {
                let q: [u8; 4] = std::array::from_fn(|m| ggml_quant(x, element(h, k, m, e)));
                let at = step_at(h, k) + 4 * r + e;
                o[at] = q[0] | (q[2] >> 4) << 6;
                o[at + 32] = q[1] | (q[3] >> 4) << 6;
                o[at + 64] = (q[2] & 0xF) | (q[3] & 0xF) << 4;
            }
        }
    }
    for j in 0..16 {
        o[SC + 8 * j + r] = x[192 + j];
    }
    o[D + 2 * r..D + 2 * r + 2].copy_from_slice(&x[208..210]);
}

/// Quant `m` (0..64) of byte `e` of step `(h, k)`, row `r`, of the group block `o`.
fn quant(o: &[u8], r: usize, h: usize, k: usize, m: usize, e: usize) -> u8 {
    let at = step_at(h, k) + 4 * r + e;
    let part = |p: usize| o[at + 32 * p];
    match m {
        0 | 1 => part(m) & 0x3F,
        _ => (part(2) >> (4 * (m - 2)) & 0xF) | (part(m - 2) >> 6) << 4,
    }
}

/// Row `r` of a grouped matrix `data` (`cols` wide) as ggml's Q6_K bytes, into `out`.
pub(super) fn row_of(data: &[u8], cols: usize, r: usize, out: &mut [u8]) {
    let nb = cols / QK_K;
    let (g, lane) = (r / GROUP, r % GROUP);
    for (b, x) in out[..nb * Q6K].chunks_exact_mut(Q6K).enumerate() {
        let o = &data[(g * nb + b) * BLOCK..(g * nb + b + 1) * BLOCK];
        // ql and qh: the quants' bits are or-ed in.
        x[..192].fill(0);
        for h in 0..2 {
            for k in 0..8 {
                for m in 0..4 {
                    for e in 0..4 {
                        let (i, q) = (element(h, k, m, e), quant(o, lane, h, k, m, e));
                        x[64 * h + i % 64] |= (q & 0xF) << (4 * (m / 2));
                        x[128 + 32 * h + i % 32] |= (q >> 4) << (2 * m);
                    }
                }
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
                            let q = quant(o, r, h, k, m, e) as i32 - 32;
                            let i = element(h, k, m, e);
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
