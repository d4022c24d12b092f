//! Attention of a tile of up to 8 queries against shared keys and values, the queries in the
//! 8 lanes of a vector: a prompt's queries of one head, or, decoding, one token's heads that
//! share a key/value head (grouped-query attention).
//!
//! Why lanes are queries: queries that share their keys let one key row serve 8 of them at
//! once. Each score is then a broadcast multiply-add per dimension (no horizontal sums, no
//! call per key), softmax runs down the lanes with the vector exp, and `p·v` is again a
//! broadcast multiply-add. With 8-dimensional heads (stories260K) a per-key dot product was
//! nearly all overhead; with 64 it still paid a horizontal sum per key.
//!
//! Layout: keys and values are rows `j` at `j·stride` (the head's `hd` values first, so callers
//! pass the slice starting at the head's offset), in f32 or f16 ([`Rows`]). Queries and output
//! are transposed, `[hd][8]`. Lane `l` sees keys `lo[l]..=hi[l]`.
//!
//! f16 rows are widened a block of [`KEYS_PER_BLOCK`] keys at a time into scratch that stays
//! in L1, and the block is then scored (or weighed) exactly as f32 rows are: a broadcast of
//! one key element serves 8 lanes, so widening each element where it is used would cost a
//! conversion per multiply-add.

use crate::simd::{Isa, isa};
use crate::vec::ggml_expf;

/// Keys (or values) of a cache: f32, or f16 bits (half the memory and half the bytes read
/// per decoded token, as llama.cpp's default cache).
#[derive(Clone, Copy, Debug)]
pub enum Rows<'a> {
    F32(&'a [f32]),
    F16(&'a [u16]),
}

impl Rows<'_> {
    /// Elements held.
    pub fn len(&self) -> usize {
        match self {
            Rows::F32(x) => x.len(),
            Rows::F16(x) => x.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` as f32.
    pub fn at(&self, i: usize) -> f32 {
        match self {
            Rows::F32(x) => x[i],
            Rows::F16(x) => half::f16::from_bits(x[i]).to_f32(),
        }
    }

    /// Elements `at..at + buf.len()` as f32: borrowed where they are f32, else widened into
    /// `buf`.
    pub fn row<'b>(&'b self, at: usize, buf: &'b mut [f32]) -> &'b [f32] {
        match self {
            Rows::F32(x) => &x[at..at + buf.len()],
            Rows::F16(x) => {
                crate::vec::f16_to_f32(&x[at..at + buf.len()], buf);
                buf
            }
        }
    }
}

/// The most scratch ([`Tile::scratch`]) a tile of up to `keys` keys of `hd` dimensions needs.
pub fn scratch_len(keys: usize, hd: usize) -> usize {
    8 * keys + KEYS_PER_BLOCK * hd
}

/// Keys one step of the tile covers: 64 rows of a 64-dimensional head are 16 KiB.
pub const KEYS_PER_BLOCK: usize = 64;

/// One tile's inputs.
#[derive(Clone, Copy, Debug)]
pub struct Tile<'a> {
    /// `[hd][8]` queries, lane-minor.
    pub q: &'a [f32],
    pub k: Rows<'a>,
    pub v: Rows<'a>,
    pub stride: usize,
    pub hd: usize,
    /// Per lane, the first and last key it sees (`lo ≤ hi`). Unused lanes repeat a used one.
    pub lo: [u32; 8],
    pub hi: [u32; 8],
    /// Multiplier of `q·k`.
    pub scale: f32,
    /// `cap·tanh(s/cap)` on the scores (Gemma 2).
    pub softcap: Option<f32>,
    /// Whether the keys and values stream from memory, read once (a decoding step): then each
    /// block's successor is asked for while it is used, which gained 5–7 % in decoding at
    /// 2048 cached tokens. Rows read again by many tiles (a prompt's) are in cache already,
    /// and there the requests cost 3–5 %.
    pub stream: bool,
}

impl Tile<'_> {
    fn check(&self, out: &[f32]) {
        let (jmin, jmax) = self.span();
        assert!(
            self.q.len() >= 8 * self.hd
                && out.len() >= 8 * self.hd
                && (0..8).all(|l| self.lo[l] <= self.hi[l])
                && jmax * self.stride + self.hd <= self.k.len().min(self.v.len())
                && jmin <= jmax,
            "attention tile: inputs do not cover keys {jmin}..={jmax} of {} dimensions",
            self.hd
        );
    }

    /// Floats of scratch [`attend8`] needs: 8 per key in the tile's span, and a block of
    /// widened rows where keys or values are f16. At most [`scratch_len`] of its key count
    /// and head size.
    pub fn scratch(&self) -> usize {
        let (jmin, jmax) = self.span();
        let widened = match (self.k, self.v) {
            (Rows::F32(_), Rows::F32(_)) => 0,
            _ => KEYS_PER_BLOCK * self.hd,
        };
        8 * (jmax + 1).saturating_sub(jmin) + widened
    }

    fn span(&self) -> (usize, usize) {
        (
            *self.lo.iter().min().unwrap_or(&0) as usize,
            *self.hi.iter().max().unwrap_or(&0) as usize,
        )
    }
}

/// `out[d][l] = Σ_j softmax_j(scale·q_l·k_j) · v_j[d]` over lane `l`'s keys. `scores` is
/// scratch of at least [`Tile::scratch`] floats.
pub fn attend8(t: &Tile<'_>, scores: &mut [f32], out: &mut [f32]) {
    t.check(out);
    let need = t.scratch();
    assert!(
        scores.len() >= need,
        "attention tile: {} floats of scratch, {need} needed",
        scores.len()
    );
    #[cfg(target_arch = "x86_64")]
    if isa() == Isa::Avx2 {
        // SAFETY: the CPU has AVX2, FMA and F16C; `check` bounds every index the kernel reads.
        return unsafe { x86::attend8(t, &mut scores[..need], out) };
    }
    attend8_scalar(t, &mut scores[..need], out)
}

/// The reference for [`attend8`]: the same steps lane by lane.
pub fn attend8_scalar(t: &Tile<'_>, scores: &mut [f32], out: &mut [f32]) {
    let (jmin, jmax) = t.span();
    let n = jmax - jmin + 1;
    for l in 0..8 {
        let s = &mut scores[..n];
        for (i, sj) in s.iter_mut().enumerate() {
            let j = jmin + i;
            let k = |d: usize| t.k.at(j * t.stride + d);
            let mut x = (0..t.hd).map(|d| t.q[d * 8 + l] * k(d)).sum::<f32>() * t.scale;
            if let Some(cap) = t.softcap {
                x = cap * (x / cap).tanh();
            }
            let visible = j >= t.lo[l] as usize && j <= t.hi[l] as usize;
            *sj = if visible { x } else { f32::NEG_INFINITY };
        }
        let m = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for x in s.iter_mut() {
            *x = ggml_expf((*x - m).max(-1e4));
            sum += *x;
        }
        for d in 0..t.hd {
            let acc: f32 = s
                .iter()
                .enumerate()
                .map(|(i, p)| p * t.v.at((jmin + i) * t.stride + d))
                .sum();
            out[d * 8 + l] = acc / sum;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(test)]
mod tests;
