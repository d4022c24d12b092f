//! The grouped Q4_0 format (see the parent module): 8 rows per 32-element block.
//!
//! One block of a group ([`BLOCK`] bytes, exactly the 8 ggml blocks it holds; `r` a row of
//! the group, `k < 4`):
//! - `qs[4][32]` at [`QS`]: step `k` holds, at `4r`, bytes `4k .. 4k + 4` of row `r`'s `qs`
//!   (low nibbles: elements `4k ..`, high: `16 + 4k ..`);
//! - `d[8]` (f16) at [`D`].

use super::GROUP;
use crate::types::f16_at;

/// Bytes of one block of a group.
pub const BLOCK: usize = 144;
pub(crate) const QS: usize = 0;
pub(crate) const D: usize = 128;
/// Bytes of a ggml Q4_0 block and of a Q8_0 block.
pub(super) const Q40: usize = 18;
const Q80: usize = 34;

/// Writes row `r`'s Q4_0 block `x` into the group block `o`.
pub(super) fn put_row_block(x: &[u8], r: usize, o: &mut [u8]) {
    for (k, q) in x[2..].chunks_exact(4).enumerate() {
        o[QS + 32 * k + 4 * r..QS + 32 * k + 4 * r + 4].copy_from_slice(q);
    }
    o[D + 2 * r..D + 2 * r + 2].copy_from_slice(&x[0..2]);
}

/// Row `r` of a grouped matrix `data` (`cols` wide) as ggml's Q4_0 bytes, into `out`.
pub(super) fn row_of(data: &[u8], cols: usize, r: usize, out: &mut [u8]) {
    let nb = cols / 32;
    let (g, lane) = (r / GROUP, r % GROUP);
    for (b, x) in out[..nb * Q40].chunks_exact_mut(Q40).enumerate() {
        let o = &data[(g * nb + b) * BLOCK..(g * nb + b + 1) * BLOCK];
        x[0..2].copy_from_slice(&o[D + 2 * lane..D + 2 * lane + 2]);
        for k in 0..4 {
            x[2 + 4 * k..6 + 4 * k].copy_from_slice(&o[QS + 32 * k + 4 * lane..][..4]);
        }
    }
}

/// The scalar kernel: `out[r]` = row `r` of group `g` · the Q8_0 row `a`.
pub(super) fn dot_group(g: &[u8], a: &[u8]) -> [f32; GROUP] {
    let mut out = [0f32; GROUP];
    for (o, y) in g.chunks_exact(BLOCK).zip(a.chunks_exact(Q80)) {
        let da = f16_at(y, 0);
        let q8 = &y[2..34];
        for (r, out) in out.iter_mut().enumerate() {
            let mut isum = 0i32;
            for k in 0..4 {
                for e in 0..4 {
                    let byte = o[QS + 32 * k + 4 * r + e];
                    let lo = (byte & 0xF) as i32 - 8;
                    let hi = (byte >> 4) as i32 - 8;
                    isum += lo * q8[4 * k + e] as i8 as i32 + hi * q8[16 + 4 * k + e] as i8 as i32;
                }
            }
            *out += f16_at(o, D + 2 * r) * da * isum as f32;
        }
    }
    out
}
