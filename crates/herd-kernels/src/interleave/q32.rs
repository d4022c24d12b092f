//! The grouped formats of the 32-element types Q4_0, Q4_1, Q5_0 and Q5_1 (see the parent
//! module): 8 rows per block, `FIVE` for Q5_0/Q5_1, `MIN` for Q4_1/Q5_1.
//!
//! One block of a group holds exactly the bytes of the 8 ggml blocks it replaces (`r` a row of
//! the group, `k < 4`, `e < 4`):
//! - five-bit types only, first, `qh[8]` (u32) at [`QH`]: row `r`'s fifth bits, rearranged so
//!   that one shift brings a step's four to bit 4 of its four bytes: element `4k + e`'s at bit
//!   `8e + 4 + k` (shift right by `k`), element `16 + 4k + e`'s at bit `8e + k` (shift left by
//!   `4 - k`); the kernel reads them before the quants, so they come first in the stream;
//! - `qs[4][32]` at [`qs_at`]: step `k` holds, at `4r`, bytes `4k .. 4k + 4` of row `r`'s `qs`
//!   (low nibbles: elements `4k + e`, high: `16 + 4k + e`);
//! - `d[8]` (f16) at [`d_at`], and for the types with a min, `m[8]` (f16) after them.

use super::GROUP;
use crate::types::f16_at;

/// Bytes of one block of a group.
pub const fn block(five: bool, min: bool) -> usize {
    d_at(five) + 16 + if min { 16 } else { 0 }
}
pub(crate) const QH: usize = 0;
pub(crate) const fn qs_at(five: bool) -> usize {
    if five { 32 } else { 0 }
}
pub(crate) const fn d_at(five: bool) -> usize {
    qs_at(five) + 128
}
/// Where the mins of a type with a min start.
pub(crate) const fn m_at(five: bool) -> usize {
    d_at(five) + 16
}
/// Bytes of a ggml block: `d`, then `m` (types with a min), `qh` (five-bit types), `qs`.
pub(super) const fn ggml_block(five: bool, min: bool) -> usize {
    ggml_qs(five, min) + 16
}
const fn ggml_qh(min: bool) -> usize {
    if min { 4 } else { 2 }
}
const fn ggml_qs(five: bool, min: bool) -> usize {
    ggml_qh(min) + if five { 4 } else { 0 }
}
/// Bytes of an activation block (Q8_1 for the types with a min, Q8_0 for the others) and
/// where its quants start.
pub(crate) const fn act_block(min: bool) -> (usize, usize) {
    if min { (36, 4) } else { (34, 2) }
}

/// Where fifth bit `i` of a ggml `qh` goes in the grouped word (Q5_K's words too).
pub(super) const fn high_bit_at(i: usize) -> usize {
    let (half, k, e) = (i / 16, i % 16 / 4, i % 4);
    8 * e + k + if half == 0 { 4 } else { 0 }
}

fn spread_high(qh: u32) -> u32 {
    (0..32).fold(0, |o, i| o | ((qh >> i) & 1) << high_bit_at(i))
}

fn gather_high(q: u32) -> u32 {
    (0..32).fold(0, |o, i| o | ((q >> high_bit_at(i)) & 1) << i)
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Writes row `r`'s ggml block `x` into the group block `o`.
pub(super) fn put_row_block<const FIVE: bool, const MIN: bool>(x: &[u8], r: usize, o: &mut [u8]) {
    for (k, q) in x[ggml_qs(FIVE, MIN)..].chunks_exact(4).enumerate() {
        o[qs_at(FIVE) + 32 * k + 4 * r..qs_at(FIVE) + 32 * k + 4 * r + 4].copy_from_slice(q);
    }
    if FIVE {
        let qh = spread_high(u32_at(x, ggml_qh(MIN)));
        o[QH + 4 * r..QH + 4 * r + 4].copy_from_slice(&qh.to_le_bytes());
    }
    let d = d_at(FIVE);
    o[d + 2 * r..d + 2 * r + 2].copy_from_slice(&x[0..2]);
    if MIN {
        let m = m_at(FIVE);
        o[m + 2 * r..m + 2 * r + 2].copy_from_slice(&x[2..4]);
    }
}

/// Row `r` of a grouped matrix `data` (`cols` wide) as ggml's bytes, into `out`.
pub(super) fn row_of<const FIVE: bool, const MIN: bool>(
    data: &[u8],
    cols: usize,
    r: usize,
    out: &mut [u8],
) {
    let (nb, gb, wb) = (cols / 32, block(FIVE, MIN), ggml_block(FIVE, MIN));
    let (g, lane) = (r / GROUP, r % GROUP);
    for (b, x) in out[..nb * wb].chunks_exact_mut(wb).enumerate() {
        let o = &data[(g * nb + b) * gb..(g * nb + b + 1) * gb];
        let d = d_at(FIVE);
        x[0..2].copy_from_slice(&o[d + 2 * lane..d + 2 * lane + 2]);
        if MIN {
            let m = m_at(FIVE);
            x[2..4].copy_from_slice(&o[m + 2 * lane..m + 2 * lane + 2]);
        }
        if FIVE {
            let qh = gather_high(u32_at(o, QH + 4 * lane));
            x[ggml_qh(MIN)..ggml_qh(MIN) + 4].copy_from_slice(&qh.to_le_bytes());
        }
        for k in 0..4 {
            let at = ggml_qs(FIVE, MIN) + 4 * k;
            x[at..at + 4].copy_from_slice(&o[qs_at(FIVE) + 32 * k + 4 * lane..][..4]);
        }
    }
}

/// The scalar kernel: `out[r]` = row `r` of group `g` · the activation row `a` (Q8_1 for the
/// types with a min, else Q8_0).
pub(super) fn dot_group<const FIVE: bool, const MIN: bool>(g: &[u8], a: &[u8]) -> [f32; GROUP] {
    let mut out = [0f32; GROUP];
    let zero = match (MIN, FIVE) {
        (true, _) => 0,
        (false, true) => 16,
        (false, false) => 8,
    };
    let (ab, aq) = act_block(MIN);
    for (o, y) in g.chunks_exact(block(FIVE, MIN)).zip(a.chunks_exact(ab)) {
        let da = f16_at(y, 0);
        let q8 = &y[aq..aq + 32];
        for (r, out) in out.iter_mut().enumerate() {
            let high = if FIVE { u32_at(o, QH + 4 * r) } else { 0 };
            let fifth = |i: usize| (((high >> high_bit_at(i)) & 1) << 4) as i32;
            let mut isum = 0i32;
            for k in 0..4 {
                for e in 0..4 {
                    let byte = o[qs_at(FIVE) + 32 * k + 4 * r + e];
                    let (i, j) = (4 * k + e, 16 + 4 * k + e);
                    let lo = (byte & 0xF) as i32 + fifth(i) - zero;
                    let hi = (byte >> 4) as i32 + fifth(j) - zero;
                    isum += lo * q8[i] as i8 as i32 + hi * q8[j] as i8 as i32;
                }
            }
            *out += f16_at(o, d_at(FIVE) + 2 * r) * da * isum as f32;
            if MIN {
                // Q8_1 keeps d·Σq beside d: the min meets the activations' sum.
                *out += f16_at(o, m_at(FIVE) + 2 * r) * f16_at(y, 2);
            }
        }
    }
    out
}
