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
    /// widened rows where keys or values are f16.
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
mod x86 {
    use std::arch::x86_64::*;

    use super::{KEYS_PER_BLOCK, Rows, Tile};

    /// # Safety
    /// AVX2, FMA and F16C; `Tile::check` holds; `scratch` holds [`Tile::scratch`] floats.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn attend8(t: &Tile<'_>, scratch: &mut [f32], out: &mut [f32]) {
        let (jmin, jmax) = t.span();
        let n = jmax - jmin + 1;
        let hd = t.hd;
        let q = t.q.as_ptr();
        // `[n][8]` scores, then (f16 rows only) one block of widened rows.
        let (scores, wide) = scratch.split_at_mut(8 * n);
        let s = scores.as_mut_ptr();
        let wide = wide.as_mut_ptr();
        let scale = _mm256_set1_ps(t.scale);
        // SAFETY (all blocks): indices stay below `8·hd` (q, out), `8·n` (scores),
        // `KEYS_PER_BLOCK·hd` (wide) and `jmax·stride + hd` (k, v), as the caller checked.
        unsafe {
            // Scores, eight keys at a time: eight independent sums keep both FMA units busy
            // (four left them waiting on the FMA's latency), and each query load serves eight.
            for b0 in (0..n).step_by(KEYS_PER_BLOCK) {
                let keys = (n - b0).min(KEYS_PER_BLOCK);
                let (kr, stride) = block(t.k, t.stride, hd, jmin + b0, keys, wide);
                let sb = s.add(b0 * 8);
                let mut i = 0;
                while i + 8 <= keys {
                    score_rows::<8>(q, kr.add(i * stride), stride, hd, scale, sb.add(i * 8));
                    i += 8;
                }
                while i < keys {
                    score_rows::<1>(q, kr.add(i * stride), stride, hd, scale, sb.add(i * 8));
                    i += 1;
                }
            }
            if let Some(cap) = t.softcap {
                for x in std::slice::from_raw_parts_mut(s, 8 * n) {
                    *x = cap * (*x / cap).tanh();
                }
            }
            // Mask, and the running maximum per lane.
            let lo = _mm256_loadu_si256(t.lo.as_ptr().cast());
            let hi = _mm256_loadu_si256(t.hi.as_ptr().cast());
            let ninf = _mm256_set1_ps(f32::NEG_INFINITY);
            let mut m = ninf;
            for i in 0..n {
                let j = _mm256_set1_epi32((jmin + i) as i32);
                let hidden = _mm256_castsi256_ps(_mm256_or_si256(
                    _mm256_cmpgt_epi32(lo, j),
                    _mm256_cmpgt_epi32(j, hi),
                ));
                let x = _mm256_blendv_ps(_mm256_loadu_ps(s.add(i * 8)), ninf, hidden);
                _mm256_storeu_ps(s.add(i * 8), x);
                m = _mm256_max_ps(m, x);
            }
            // e^(s − max): hidden keys give e^-10000 = 0.
            let floor = _mm256_set1_ps(-1e4);
            let mut sum = _mm256_setzero_ps();
            for i in 0..n {
                let x = _mm256_max_ps(_mm256_sub_ps(_mm256_loadu_ps(s.add(i * 8)), m), floor);
                let e = crate::vec::x86_expf8(x);
                _mm256_storeu_ps(s.add(i * 8), e);
                sum = _mm256_add_ps(sum, e);
            }
            // p·v, eight dimensions at a time over a block of keys, the sums kept in `out`
            // between blocks: a block's value rows stay in L1 while its dimensions go by,
            // where one pass over all keys per eight dimensions read them from memory again.
            let o = out.as_mut_ptr();
            for d in 0..hd {
                _mm256_storeu_ps(o.add(d * 8), _mm256_setzero_ps());
            }
            for b0 in (0..n).step_by(KEYS_PER_BLOCK) {
                let keys = (n - b0).min(KEYS_PER_BLOCK);
                let (vr, stride) = block(t.v, t.stride, hd, jmin + b0, keys, wide);
                let p = s.add(b0 * 8);
                let mut d0 = 0;
                while d0 + 8 <= hd {
                    weigh::<8>(p, vr.add(d0), stride, keys, o.add(d0 * 8));
                    d0 += 8;
                }
                while d0 < hd {
                    weigh::<1>(p, vr.add(d0), stride, keys, o.add(d0 * 8));
                    d0 += 1;
                }
            }
            for d in 0..hd {
                let x = _mm256_loadu_ps(o.add(d * 8));
                _mm256_storeu_ps(o.add(d * 8), _mm256_div_ps(x, sum));
            }
        }
    }

    /// Rows `j0..j0 + keys` of `rows` as f32 rows: where they are (and their stride) for f32,
    /// else widened into `wide` (`[keys][hd]`, stride `hd`).
    ///
    /// # Safety
    /// AVX2 and F16C; `rows` holds row `j0 + keys − 1` at `stride` (`hd` elements); for f16
    /// rows `wide` holds `keys·hd` floats.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn block(
        rows: Rows<'_>,
        stride: usize,
        hd: usize,
        j0: usize,
        keys: usize,
        wide: *mut f32,
    ) -> (*const f32, usize) {
        match rows {
            // SAFETY: row `j0` is in bounds.
            Rows::F32(x) => (unsafe { x.as_ptr().add(j0 * stride) }, stride),
            Rows::F16(x) => {
                for i in 0..keys {
                    // SAFETY: `wide` holds row `i` (the caller's bound); the source row is
                    // sliced (checked).
                    unsafe {
                        let dst = std::slice::from_raw_parts_mut(wide.add(i * hd), hd);
                        crate::vec::x86_f16_to_f32(&x[(j0 + i) * stride..][..hd], dst);
                    }
                }
                (wide.cast_const(), hd)
            }
        }
    }

    /// Scores of the `R` key rows from `kr` (`stride` apart) for the 8 lanes' queries `q`
    /// (`[hd][8]`), times `scale`, into `s` (`[R][8]`).
    ///
    /// # Safety
    /// AVX2 and FMA; `q` holds `8·hd` floats, `kr` `(R − 1)·stride + hd`, `s` `8·R`.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn score_rows<const R: usize>(
        q: *const f32,
        kr: *const f32,
        stride: usize,
        hd: usize,
        scale: __m256,
        s: *mut f32,
    ) {
        // SAFETY: within the bounds the caller gives.
        unsafe {
            let mut a = [_mm256_setzero_ps(); R];
            for d in 0..hd {
                let qd = _mm256_loadu_ps(q.add(d * 8));
                for (r, acc) in a.iter_mut().enumerate() {
                    *acc = _mm256_fmadd_ps(_mm256_broadcast_ss(&*kr.add(r * stride + d)), qd, *acc);
                }
            }
            for (r, acc) in a.iter().enumerate() {
                _mm256_storeu_ps(s.add(r * 8), _mm256_mul_ps(*acc, scale));
            }
        }
    }

    /// Adds `Σ_{i < keys} p_i · v_i[d]` for `D` dimensions to `o` (`[D][8]`): `p` the weights
    /// (`[i][8]`), `vr` the first key's value row at the first of the `D` dimensions.
    ///
    /// # Safety
    /// AVX2 and FMA; `p` holds `8·keys` floats, `vr` row `keys − 1` at `stride`, and `o`
    /// `8·D`.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn weigh<const D: usize>(
        p: *const f32,
        vr: *const f32,
        stride: usize,
        keys: usize,
        o: *mut f32,
    ) {
        // SAFETY: within the bounds the caller gives.
        unsafe {
            let mut a = [_mm256_setzero_ps(); D];
            for (dd, acc) in a.iter_mut().enumerate() {
                *acc = _mm256_loadu_ps(o.add(dd * 8));
            }
            for i in 0..keys {
                let pi = _mm256_loadu_ps(p.add(i * 8));
                let row = vr.add(i * stride);
                for (dd, acc) in a.iter_mut().enumerate() {
                    *acc = _mm256_fmadd_ps(pi, _mm256_broadcast_ss(&*row.add(dd)), *acc);
                }
            }
            for (dd, acc) in a.iter().enumerate() {
                _mm256_storeu_ps(o.add(dd * 8), *acc);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::tests::random_floats as values;

    /// `x` rounded to f16 bits.
    fn to16(x: &[f32]) -> Vec<u16> {
        x.iter()
            .map(|&x| half::f16::from_f32(x).to_bits())
            .collect()
    }

    /// Both kernels against softmax attention computed in f64, lane by lane, with f32 rows
    /// and with f16 rows (the reference then reads the f16 values: widening is exact).
    #[test]
    fn tiles_agree_with_f64_attention() {
        for (hd, stride, keys, cap) in [
            (8, 32, 37, None),
            (64, 128, 70, None),
            (64, 128, 300, None),
            (64, 64, 131, None),
            (12, 12, 9, Some(5.0)),
            (3, 5, 11, None),
        ] {
            let q = values(8 * hd, hd as u64);
            let k32: Vec<f32> = values(keys * stride, 7 + hd as u64)
                .iter()
                .map(|x| x * 3.0)
                .collect();
            let v32 = values(keys * stride, 9 + hd as u64);
            let (k16, v16) = (to16(&k32), to16(&v32));
            // Causal queries at the last 8 positions, one windowed lane, one repeated lane.
            let mut lo = [0u32; 8];
            let mut hi = [0u32; 8];
            for (l, h) in hi.iter_mut().enumerate() {
                *h = (keys - 8 + l) as u32;
            }
            lo[3] = hi[3] - 2;
            hi[7] = hi[6];
            for (k, v) in [
                (Rows::F32(&k32), Rows::F32(&v32)),
                (Rows::F16(&k16), Rows::F16(&v16)),
            ] {
                let t = Tile {
                    q: &q,
                    k,
                    v,
                    stride,
                    hd,
                    lo,
                    hi,
                    scale: 0.3,
                    softcap: cap,
                };
                let kind = if matches!(k, Rows::F16(_)) {
                    "f16"
                } else {
                    "f32"
                };
                let (mut a, mut b) = (vec![0f32; 8 * hd], vec![0f32; 8 * hd]);
                attend8(&t, &mut vec![0f32; t.scratch()], &mut a);
                attend8_scalar(&t, &mut vec![0f32; 8 * keys], &mut b);
                for l in 0..8 {
                    let s: Vec<f64> = (lo[l]..=hi[l])
                        .map(|j| {
                            let x = (0..hd)
                                .map(|d| q[d * 8 + l] as f64 * k.at(j as usize * stride + d) as f64)
                                .sum::<f64>()
                                * 0.3;
                            cap.map_or(x, |c| c as f64 * (x / c as f64).tanh())
                        })
                        .collect();
                    let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
                    for d in 0..hd {
                        let want: f64 = s
                            .iter()
                            .zip(lo[l]..=hi[l])
                            .map(|(x, j)| (x - m).exp() / z * v.at(j as usize * stride + d) as f64)
                            .sum();
                        for (what, got) in [("simd", a[d * 8 + l]), ("scalar", b[d * 8 + l])] {
                            assert!(
                                // f32 sums of up to 300 terms and a 1-ulp exp; a key or a
                                // lane out of place costs 1e-2 and more.
                                (got as f64 - want).abs() < 1e-5 * want.abs().max(1.0),
                                "{what} {kind} hd={hd} keys={keys} lane {l} dim {d}: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// f16 rows change the answer only by their rounding: against the same tile in f32, the
    /// outputs differ by about f16's relative precision, not more.
    #[test]
    fn f16_rows_stay_within_their_rounding_of_f32() {
        let (hd, keys) = (64, 200);
        let q = values(8 * hd, 1);
        let (k, v) = (values(keys * hd, 2), values(keys * hd, 3));
        let (k16, v16) = (to16(&k), to16(&v));
        let tile = |k, v| Tile {
            q: &q,
            k,
            v,
            stride: hd,
            hd,
            lo: [0; 8],
            hi: [(keys - 1) as u32; 8],
            scale: 0.125,
            softcap: None,
        };
        let (t32, t16) = (
            tile(Rows::F32(&k), Rows::F32(&v)),
            tile(Rows::F16(&k16), Rows::F16(&v16)),
        );
        let (mut a, mut b) = (vec![0f32; 8 * hd], vec![0f32; 8 * hd]);
        attend8(&t32, &mut vec![0f32; t32.scratch()], &mut a);
        attend8(&t16, &mut vec![0f32; t16.scratch()], &mut b);
        let d = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(d > 0.0 && d < 2e-3, "max |f32 − f16| = {d}");
    }
}
