//! The grouped Q4_K and Q5_K formats (see the parent module): 8 rows per 256-element
//! super-block, `FIVE` for Q5_K.
//!
//! A block of a group (`r` a row of the group, step `t = 8j + k` for `j < 4`, `k < 8`; the
//! step's low quants are elements `64j + 4k + e`, `e < 4`, of sub-block `2j`, its high ones
//! `64j + 32 + 4k + e` of sub-block `2j + 1`):
//! - the 6-bit scales and mins unpacked, a byte each: scale of sub-block `s` at
//!   `SC + 8s + r`, min at `MN + 16(s / 2) + 2r + s % 2`; then `d[8]` and `dmin[8]` (f16);
//! - step `t` at [`qs_at`], 4 bytes per row at `4r`, byte `e` for the pair of quants `e`:
//!   - Q4_K: row `r`'s `qs` bytes `32j + 4k .. + 4` as ggml has them (low nibble the low
//!     quant, high nibble the high one);
//!   - Q5_K: the low quant's five bits in bits 0..5, the high quant's top three in bits 5..8;
//! - Q5_K only, before each run of 4 steps `4w .. 4w + 4`, the word `w` at [`qh_at`] (u32
//!   per row): byte `e`, bits `2kk, 2kk + 1`, hold the low two bits of the high quant `e` of
//!   step `4w + kk`.
//!
//! Why Q5_K is not ggml's nibbles plus fifth bits: decoding a step from those takes 9 vector
//! operations (3 for the nibbles, a shift, an `and` and an `or` to put each half's fifth bit
//! in place), against 6 here (an `and` for the low quants; a shift and an `and` for the high
//! ones' top bits, a shift, an `and` and an `or` for their low two). On AVX2 the grouped
//! Q5_K product is bound by those operations, not by memory, on a fast host; the bytes read
//! are the same.
//!
//! Everything is in the order the kernel reads it: the scales first (they are read after each
//! sub-block pair's quants; behind all the quants, that load ran ahead of the hardware
//! prefetcher and stalled), then the quants, each run of Q5_K steps after its word.

use super::GROUP;
use crate::dequant::scale_min_k4;
use crate::types::{QK_K, f16_at, f32_at};

/// Bytes of one super-block of a group: 8 · 144 (Q4_K) or 8 · 176 (Q5_K) ggml bytes, plus 32
/// for the unpacked scales.
pub const fn block(five: bool) -> usize {
    if five { 1440 } else { 1184 }
}
pub(crate) const SC: usize = 0;
pub(crate) const MN: usize = 64;
pub(crate) const D: usize = 128;
pub(crate) const DMIN: usize = 144;
const HEAD: usize = 160;
/// Where step `t` (`< 32`) of a block starts.
pub(crate) const fn qs_at(five: bool, t: usize) -> usize {
    if five {
        HEAD + 160 * (t / 4) + 32 + 32 * (t % 4)
    } else {
        HEAD + 32 * t
    }
}
/// Where the Q5_K word `w` (`< 8`, steps `4w .. 4w + 4`) of a block starts.
pub(crate) const fn qh_at(w: usize) -> usize {
    HEAD + 160 * w
}
/// Bytes of a ggml Q4_K (Q5_K) block, and where its `qs` start; Q5_K's `qh` start at 16.
pub(super) const fn ggml_block(five: bool) -> usize {
    if five { 176 } else { 144 }
}
const fn ggml_qs(five: bool) -> usize {
    if five { 48 } else { 16 }
}
const Q8K: usize = 292;

/// The element of a super-block that step `t`'s low (high) nibble `e` holds.
fn element(t: usize, e: usize, high: bool) -> usize {
    64 * (t / 8) + 32 * high as usize + 4 * (t % 8) + e
}

/// Where ggml keeps element `i`'s nibble: the byte of `qs`, and the shift (the low nibble
/// for `i % 64 < 32`, the high one from 32).
const fn ggml_nibble(i: usize) -> (usize, usize) {
    (32 * (i / 64) + i % 32, 4 * (i / 32 % 2))
}

/// The quant (0..16, or 0..32 for Q5_K) of element `i` of the ggml block `x`: its nibble
/// and, for Q5_K, its fifth bit, bit `i / 32` of `qh` byte `i % 32`.
fn ggml_quant<const FIVE: bool>(x: &[u8], i: usize) -> u8 {
    let (at, shift) = ggml_nibble(i);
    let nibble = x[ggml_qs(FIVE) + at] >> shift & 0xF;
    if FIVE {
        nibble | (x[16 + i % 32] >> (i / 32) & 1) << 4
    } else {
        nibble
    }
}

/// Writes row `r`'s Q4_K (Q5_K) block `x` into the group block `o`.
pub(super) fn put_row_block<const FIVE: bool>(x: &[u8], r: usize, o: &mut [u8]) {
    if FIVE {
        // Row `r` owns these bytes of the words; the steps' bits are or-ed in.
        for w in 0..8 {
            o[qh_at(w) + 4 * r..qh_at(w) + 4 * r + 4].fill(0);
        }
        for t in 0..32 {
            for e in 0..4 {
                let (lo, hi) = (
                    ggml_quant::<true>(x, element(t, e, false)),
                    ggml_quant::<true>(x, element(t, e, true)),
                );
                o[qs_at(true, t) + 4 * r + e] = lo | (hi >> 2) << 5;
                o[qh_at(t / 4) + 4 * r + e] |= (hi & 3) << (2 * (t % 4));
            }
        }
    } else {
        for (t, q) in x[ggml_qs(false)..].chunks_exact(4).enumerate() {
            // `t = 8j + k` walks qs in steps of 4 bytes, which is the step order.
            let at = qs_at(false, t) + 4 * r;
            o[at..at + 4].copy_from_slice(q);
        }
    }
    for s in 0..8 {
        let (sc, m) = scale_min_k4(s, &x[4..16]);
        o[SC + 8 * s + r] = sc;
        o[MN + 16 * (s / 2) + 2 * r + s % 2] = m;
    }
    o[D + 2 * r..D + 2 * r + 2].copy_from_slice(&x[0..2]);
    o[DMIN + 2 * r..DMIN + 2 * r + 2].copy_from_slice(&x[2..4]);
}

/// Element `e` of step `t`'s low (`high == false`) or high quants, row `r`, of the group
/// block `o`.
fn quant<const FIVE: bool>(o: &[u8], r: usize, t: usize, e: usize, high: bool) -> u8 {
    let byte = o[qs_at(FIVE, t) + 4 * r + e];
    match (FIVE, high) {
        (false, false) => byte & 0xF,
        (false, true) => byte >> 4,
        (true, false) => byte & 0x1F,
        (true, true) => (byte >> 5) << 2 | o[qh_at(t / 4) + 4 * r + e] >> (2 * (t % 4)) & 3,
    }
}

/// Row `r` of a grouped matrix `data` (`cols` wide) as ggml's Q4_K (Q5_K) bytes, into `out`.
pub(super) fn row_of<const FIVE: bool>(data: &[u8], cols: usize, r: usize, out: &mut [u8]) {
    let nb = cols / QK_K;
    let (gb, wb) = (block(FIVE), ggml_block(FIVE));
    let (g, lane) = (r / GROUP, r % GROUP);
    for (b, x) in out[..nb * wb].chunks_exact_mut(wb).enumerate() {
        let o = &data[(g * nb + b) * gb..(g * nb + b + 1) * gb];
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
        // qs (and Q5_K's qh) to the end of the block: the quants' bits are or-ed in.
        x[16..].fill(0);
        for t in 0..32 {
            for e in 0..4 {
                for high in [false, true] {
                    let (i, q) = (element(t, e, high), quant::<FIVE>(o, lane, t, e, high));
                    let (at, shift) = ggml_nibble(i);
                    x[ggml_qs(FIVE) + at] |= (q & 0xF) << shift;
                    if FIVE {
                        x[16 + i % 32] |= (q >> 4) << (i / 32);
                    }
                }
            }
        }
    }
}

/// The scalar kernel: `out[r]` = row `r` of group `g` (`nb` super-blocks of Q4_K, or Q5_K if
/// `FIVE`) · the Q8_K row `a`.
pub(super) fn dot_group<const FIVE: bool>(g: &[u8], a: &[u8]) -> [f32; GROUP] {
    let mut out = [0f32; GROUP];
    for (o, y) in g.chunks_exact(block(FIVE)).zip(a.chunks_exact(Q8K)) {
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
                    let t = 8 * j + k;
                    for e in 0..4 {
                        let q = quant::<FIVE>(o, r, t, e, high);
                        sub += q as i32 * q8[element(t, e, high)] as i8 as i32;
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
