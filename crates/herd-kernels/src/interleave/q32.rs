//! The grouped formats of the 32-element types Q4_0, Q4_1, Q5_0 and Q5_1 (see the parent
//! module): 8 rows per block, `FIVE` for Q5_0/Q5_1, `MIN` for Q4_1/Q5_1.
//!
//! One block of a group holds exactly the bytes of the 8 ggml blocks it replaces (`r` a row of
//! the group, `k < 4`, `e < 4`):
//! - five-bit types only, first, a word of 4 bytes per row at [`QH`]: byte `e`, bits `2k`,
//!   `2k + 1`, hold the low two bits of step `k`'s high quant `e`; the kernel reads it before
//!   the quants, so it comes first in the stream;
//! - `qs[4][32]` at [`qs_at`]: step `k` holds 4 bytes of row `r` at `4r`, byte `e` for the
//!   low quant of element `4k + e` and the high one of `16 + 4k + e`:
//!   - four-bit types: row `r`'s `qs` byte `4k + e` as ggml has it (the nibbles);
//!   - five-bit types: the low quant in bits 0..5, the high quant's top three in bits 5..8,
//!     as Q5_K's (`q4_k`, which says why), so the kernels decode both alike;
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

/// The quant (0..16, or 0..32 if `FIVE`) of element `i` of the ggml block `x`: the low
/// (`i < 16`) or high nibble of `qs` byte `i % 16`, and if `FIVE` bit `i` of `qh` above it.
fn ggml_quant<const FIVE: bool, const MIN: bool>(x: &[u8], i: usize) -> u8 {
    let nibble = x[ggml_qs(FIVE, MIN) + i % 16] >> (4 * (i / 16)) & 0xF;
    if FIVE {
        let qh = u32::from_le_bytes(std::array::from_fn(|b| x[ggml_qh(MIN) + b]));
        nibble | ((qh >> i & 1) as u8) << 4
    } else {
        nibble
    }
}

/// The quant of element `4k + e` (`high == false`) or `16 + 4k + e` of row `r` of the group
/// block `o`.
fn quant<const FIVE: bool>(o: &[u8], r: usize, k: usize, e: usize, high: bool) -> u8 {
    let byte = o[qs_at(FIVE) + 32 * k + 4 * r + e];
    match (FIVE, high) {
        (false, false) => byte & 0xF,
        (false, true) => byte >> 4,
        (true, false) => byte & 0x1F,
        (true, true) => (byte >> 5) << 2 | o[QH + 4 * r + e] >> (2 * k) & 3,
    }
}

/// Writes row `r`'s ggml block `x` into the group block `o`.
pub(super) fn put_row_block<const FIVE: bool, const MIN: bool>(x: &[u8], r: usize, o: &mut [u8]) {
    if FIVE {
        // Row `r` owns these bytes of the word; the steps' bits are or-ed in.
        o[QH + 4 * r..QH + 4 * r + 4].fill(0);
    }
    for k in 0..4 {
        for e in 0..4 {
            let lo = ggml_quant::<FIVE, MIN>(x, 4 * k + e);
            let hi = ggml_quant::<FIVE, MIN>(x, 16 + 4 * k + e);
            o[qs_at(FIVE) + 32 * k + 4 * r + e] = if FIVE {
                o[QH + 4 * r + e] |= (hi & 3) << (2 * k);
                lo | (hi >> 2) << 5
            } else {
                lo | hi << 4
            };
        }
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
        let mut qh = 0u32;
        for k in 0..4 {
            for e in 0..4 {
                let (lo, hi) = (
                    quant::<FIVE>(o, lane, k, e, false),
                    quant::<FIVE>(o, lane, k, e, true),
                );
                x[ggml_qs(FIVE, MIN) + 4 * k + e] = (lo & 0xF) | (hi & 0xF) << 4;
                qh |= ((lo >> 4) as u32) << (4 * k + e) | ((hi >> 4) as u32) << (16 + 4 * k + e);
            }
        }
        if FIVE {
            x[ggml_qh(MIN)..ggml_qh(MIN) + 4].copy_from_slice(&qh.to_le_bytes());
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
            let mut isum = 0i32;
            for k in 0..4 {
                for e in 0..4 {
                    let (i, j) = (4 * k + e, 16 + 4 * k + e);
                    let lo = quant::<FIVE>(o, r, k, e, false) as i32 - zero;
                    let hi = quant::<FIVE>(o, r, k, e, true) as i32 - zero;
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
