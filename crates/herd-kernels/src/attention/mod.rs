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
//!
//! A query whose keys no other query shares (multi-head attention, decoding) has no lanes to
//! fill: [`attend1`] runs vectors along the head's dimensions instead, 8 keys' products
//! reduced together.
//!
//! The hand-written kernels are AVX2 (`x86`). Elsewhere with SIMD (NEON on aarch64), and on
//! x86 for head sizes the one-query kernel does not take, `lanes` runs: the same schemes in
//! safe Rust, shaped so that the compiler vectorizes them. The `_scalar` functions are the
//! references, kept plain.

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
}

/// The most scratch ([`Tile::scratch`]) a tile of up to `keys` keys of `hd` dimensions needs.
pub fn scratch_len(keys: usize, hd: usize) -> usize {
    8 * keys + KEYS_PER_BLOCK * hd
}

/// Floats of scratch a kernel widens a block of f16 rows into, where keys or values are f16.
fn widened(k: Rows<'_>, v: Rows<'_>, hd: usize) -> usize {
    match (k, v) {
        (Rows::F32(_), Rows::F32(_)) => 0,
        _ => KEYS_PER_BLOCK * hd,
    }
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
        8 * (jmax + 1).saturating_sub(jmin) + widened(self.k, self.v, self.hd)
    }

    fn span(&self) -> (usize, usize) {
        (
            *self.lo.iter().min().unwrap_or(&0) as usize,
            *self.hi.iter().max().unwrap_or(&0) as usize,
        )
    }
}

/// One query against keys no other query shares (multi-head attention, decoding: each head
/// its own key/value head), so no tile of queries can share a key's loads.
#[derive(Clone, Copy, Debug)]
pub struct Single<'a> {
    /// The query, `hd` floats.
    pub q: &'a [f32],
    pub k: Rows<'a>,
    pub v: Rows<'a>,
    pub stride: usize,
    pub hd: usize,
    /// The keys it sees, `lo..=hi`.
    pub lo: usize,
    pub hi: usize,
    /// Multiplier of `q·k`.
    pub scale: f32,
    /// `cap·tanh(s/cap)` on the scores (Gemma 2).
    pub softcap: Option<f32>,
}

impl Single<'_> {
    /// Floats of scratch [`attend1`] needs: one per key, and a block of widened rows where
    /// keys or values are f16. At most [`scratch_len`] of its key count and head size.
    pub fn scratch(&self) -> usize {
        (self.hi + 1).saturating_sub(self.lo) + widened(self.k, self.v, self.hd)
    }
}

/// `out[d] = Σ_j softmax_j(scale·q·k_j) · v_j[d]` over keys `lo..=hi`. `scores` is scratch of
/// at least [`Single::scratch`] floats.
///
/// The keys stream from memory, each read once; vectors run along the head's dimensions, so
/// where the head size is a multiple of 8 a score is full-width products of 8 keys at a time
/// summed across at once, and a weight meets 8 dimensions of a value row per multiply-add.
pub fn attend1(t: &Single<'_>, scores: &mut [f32], out: &mut [f32]) {
    assert!(
        t.lo <= t.hi
            && t.q.len() >= t.hd
            && out.len() >= t.hd
            && t.hi * t.stride + t.hd <= t.k.len().min(t.v.len()),
        "attention of one query: inputs do not cover keys {}..={} of {} dimensions",
        t.lo,
        t.hi,
        t.hd
    );
    let need = t.scratch();
    assert!(
        scores.len() >= need,
        "attention of one query: {} floats of scratch, {need} needed",
        scores.len()
    );
    #[cfg(target_arch = "x86_64")]
    if isa() == Isa::Avx2 && t.hd.is_multiple_of(8) {
        // SAFETY: the CPU has AVX2, FMA and F16C; the assertions above bound every index the
        // kernel reads, and `hd % 8 == 0`.
        return unsafe { x86::attend1(t, &mut scores[..need], out) };
    }
    if isa() != Isa::Scalar {
        return lanes::attend1(t, &mut scores[..need], out);
    }
    attend1_scalar(t, &mut scores[..need], out)
}

/// The reference for [`attend1`]: a dot product per key, the softmax, a sum of value rows.
pub fn attend1_scalar(t: &Single<'_>, scores: &mut [f32], out: &mut [f32]) {
    let n = t.hi + 1 - t.lo;
    let s = &mut scores[..n];
    for (i, x) in s.iter_mut().enumerate() {
        let at = (t.lo + i) * t.stride;
        *x = (0..t.hd).map(|d| t.q[d] * t.k.at(at + d)).sum::<f32>() * t.scale;
        if let Some(cap) = t.softcap {
            *x = cap * (*x / cap).tanh();
        }
    }
    let m = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for x in s.iter_mut() {
        *x = ggml_expf((*x - m).max(-1e4));
        sum += *x;
    }
    for (d, o) in out[..t.hd].iter_mut().enumerate() {
        let acc: f32 = s
            .iter()
            .enumerate()
            .map(|(i, p)| p * t.v.at((t.lo + i) * t.stride + d))
            .sum();
        *o = acc / sum;
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
    if isa() != Isa::Scalar {
        return lanes::attend8(t, &mut scores[..need], out);
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

mod lanes;
#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(test)]
mod tests;
