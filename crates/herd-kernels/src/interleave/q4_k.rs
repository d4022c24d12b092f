//! The grouped Q4_K format (see the parent module): 8 rows per 256-element super-block.

use super::GROUP;
use crate::dequant::scale_min_k4;
use crate::types::{QK_K, f16_at, f32_at};

/// Bytes of one super-block of a group.
pub const BLOCK: usize = 1184;
// Scales, mins and the two f16 factors of the 8 rows first, then the quants: the kernel reads
// sub-block 2j's scales after its quants, and when they sat behind all 1024 quant bytes that
// load ran ahead of the hardware prefetcher and stalled on memory (a fifth of the kernel's
// time). At the front they arrive with the block's first lines.
pub(crate) const SC: usize = 0;
pub(crate) const MN: usize = 64;
pub(crate) const D: usize = 128;
pub(crate) const DMIN: usize = 144;
pub(crate) const QS: usize = 160;
/// Bytes of a ggml Q4_K block and of a Q8_K block.
pub(super) const Q4K: usize = 144;
const Q8K: usize = 292;

/// Writes row `r`'s Q4_K block `x` into the group block `o`.
pub(super) fn put_row_block(x: &[u8], r: usize, o: &mut [u8]) {
    for (t, q) in x[16..].chunks_exact(4).enumerate() {
        // `t = 8j + k` walks qs in steps of 4 bytes, which is the step order.
        o[QS + 32 * t + 4 * r..QS + 32 * t + 4 * r + 4].copy_from_slice(q);
    }
    for s in 0..8 {
        let (sc, m) = scale_min_k4(s, &x[4..16]);
        o[SC + 8 * s + r] = sc;
        o[MN + 16 * (s / 2) + 2 * r + s % 2] = m;
    }
    o[D + 2 * r..D + 2 * r + 2].copy_from_slice(&x[0..2]);
    o[DMIN + 2 * r..DMIN + 2 * r + 2].copy_from_slice(&x[2..4]);
}

/// Row `r` of a grouped matrix `data` (`cols` wide) as ggml's Q4_K bytes, into `out`.
pub(super) fn row_of(data: &[u8], cols: usize, r: usize, out: &mut [u8]) {
    let nb = cols / QK_K;
    let (g, lane) = (r / GROUP, r % GROUP);
    for (b, x) in out[..nb * Q4K].chunks_exact_mut(Q4K).enumerate() {
        let o = &data[(g * nb + b) * BLOCK..(g * nb + b + 1) * BLOCK];
        x[0..2].copy_from_slice(&o[D + 2 * lane..D + 2 * lane + 2]);
        x[2..4].copy_from_slice(&o[DMIN + 2 * lane..DMIN + 2 * lane + 2]);
        let sc = |s: usize| o[SC + 8 * s + lane];
        let mn = |s: usize| o[MN + 16 * (s / 2) + 2 * lane + s % 2];
        // The inverse of `scale_min_k4`: six bits each, the high two of sub-blocks 4..8 in the
        // top bits of the first eight bytes.
        for j in 0..4 {
            x[4 + j] = sc(j) | (sc(j + 4) >> 4) << 6;
            x[8 + j] = mn(j) | (mn(j + 4) >> 4) << 6;
            x[12 + j] = (sc(j + 4) & 0xF) | (mn(j + 4) & 0xF) << 4;
        }
        for t in 0..32 {
            x[16 + 4 * t..20 + 4 * t].copy_from_slice(&o[QS + 32 * t + 4 * lane..][..4]);
        }
    }
}

/// The scalar kernel: `out[r]` = row `r` of group `g` (`nb` super-blocks) · the Q8_K row `a`.
pub(super) fn dot_group(g: &[u8], a: &[u8]) -> [f32; GROUP] {
    let mut out = [0f32; GROUP];
    for (o, y) in g.chunks_exact(BLOCK).zip(a.chunks_exact(Q8K)) {
        let da = f32_at(y, 0);
        let q8 = &y[4..260];
        let bsum = |s: usize| {
            let at = |i: usize| i16::from_le_bytes([y[260 + 2 * i], y[261 + 2 * i]]) as i32;
            at(2 * s) + at(2 * s + 1)
        };
        for (r, out) in out.iter_mut().enumerate() {
            let (mut isum, mut msum) = (0i32, 0i32);
            for s in 0..8 {
                let (j, high) = (s / 2, s % 2 == 1);
                let mut sub = 0i32;
                for k in 0..8 {
                    for e in 0..4 {
                        let byte = o[QS + 32 * (8 * j + k) + 4 * r + e];
                        let q = if high { byte >> 4 } else { byte & 0xF };
                        sub += q as i32 * q8[32 * s + 4 * k + e] as i8 as i32;
                    }
                }
                isum += o[SC + 8 * s + r] as i32 * sub;
                msum += o[MN + 16 * j + 2 * r + s % 2] as i32 * bsum(s);
            }
            let (d, dmin) = (f16_at(o, D + 2 * r), f16_at(o, DMIN + 2 * r));
            *out += da * (d * isum as f32) - da * (dmin * msum as f32);
        }
    }
    out
}
