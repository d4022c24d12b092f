//! The grouped Q8_0 format (see the parent module): 8 rows per 32-element block.
//!
//! One block of a group holds exactly the bytes of the 8 ggml blocks it replaces (`r` a row of
//! the group, `s < 8`):
//! - `qs[8][32]` at [`QS`]: step `s` holds, at `4r`, quants `4s .. 4s + 4` of row `r`;
//! - `d[8]` (f16) at [`D`].

use super::GROUP;
use crate::types::f16_at;

/// Bytes of one block of a group.
pub const BLOCK: usize = 272;
pub(crate) const QS: usize = 0;
pub(crate) const D: usize = 256;
/// Bytes of a ggml Q8_0 block (weights and activations alike).
pub(super) const Q80: usize = 34;

/// Writes row `r`'s Q8_0 block `x` into the group block `o`.
pub(super) fn put_row_block(x: &[u8], r: usize, o: &mut [u8]) {
    for (s, q) in x[2..].chunks_exact(4).enumerate() {
        o[QS + 32 * s + 4 * r..QS + 32 * s + 4 * r + 4].copy_from_slice(q);
    }
    o[D + 2 * r..D + 2 * r + 2].copy_from_slice(&x[0..2]);
}

/// Row `r` of a grouped matrix `data` (`cols` wide) as ggml's Q8_0 bytes, into `out`.
pub(super) fn row_of(data: &[u8], cols: usize, r: usize, out: &mut [u8]) {
    let nb = cols / 32;
    let (g, lane) = (r / GROUP, r % GROUP);
    for (b, x) in out[..nb * Q80].chunks_exact_mut(Q80).enumerate() {
        let o = &data[(g * nb + b) * BLOCK..(g * nb + b + 1) * BLOCK];
        x[0..2].copy_from_slice(&o[D + 2 * lane..D + 2 * lane + 2]);
        for s in 0..8 {
            x[2 + 4 * s..6 + 4 * s].copy_from_slice(&o[QS + 32 * s + 4 * lane..][..4]);
        }
    }
}

/// The scalar kernel: `out[r]` = row `r` of group `g` · the Q8_0 row `a`.
pub(super) fn dot_group(g: &[u8], a: &[u8]) -> [f32; GROUP] {
    let mut out = [0f32; GROUP];
    for (o, y) in g.chunks_exact(BLOCK).zip(a.chunks_exact(Q80)) {
        let da = f16_at(y, 0);
        for (r, out) in out.iter_mut().enumerate() {
            let mut isum = 0i32;
            for s in 0..8 {
                for e in 0..4 {
                    let w = o[QS + 32 * s + 4 * r + e] as i8 as i32;
                    isum += w * y[2 + 4 * s + e] as i8 as i32;
                }
            }
            *out += f16_at(o, D + 2 * r) * da * isum as f32;
        }
    }
    out
}
