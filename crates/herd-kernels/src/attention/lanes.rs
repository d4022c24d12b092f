//! [`super::attend8`] and [`super::attend1`] in safe Rust, shaped for the compiler to
//! vectorize: where herd has no hand-written attention (aarch64, whose NEON every build may
//! use), these run instead of the references.
//!
//! What makes them vectorize: the tile's eight lanes are the innermost loop over fixed arrays
//! (independent sums, so no reassociation is needed), the one-query dot product keeps eight
//! partial sums of its own, f16 rows are widened a block at a time, and several keys (or
//! dimensions) are in flight at once so the multiply-adds do not wait on each other. The
//! references loop lane by lane and convert every element where it is read.

// Lanes are indexed in lockstep across several fixed arrays; that is what vectorizes.
#![allow(clippy::needless_range_loop)]

use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};

use super::{KEYS_PER_BLOCK, Rows, Single, Tile};
use crate::vec::{ggml_expf, softcap};

/// Rows `j0..j0 + keys` of `r` as f32: the cache itself where it is f32 (row stride
/// `stride`), else widened into `wide` (row stride `hd`).
fn block<'a>(
    r: Rows<'a>,
    stride: usize,
    hd: usize,
    j0: usize,
    keys: usize,
    wide: &'a mut [f32],
) -> (&'a [f32], usize) {
    match r {
        Rows::F32(x) => (&x[j0 * stride..], stride),
        Rows::F16(x) => {
            for i in 0..keys {
                let at = (j0 + i) * stride;
                let src: &[half::f16] = x[at..at + hd].reinterpret_cast();
                src.convert_to_f32_slice(&mut wide[i * hd..(i + 1) * hd]);
            }
            (&wide[..keys * hd], hd)
        }
    }
}

/// Softmax over the keys, in place, of scores that are `[n][LANES]` lane-minor: each lane's
/// `e^(x - max)` (as the references compute it), and each lane's sum returned.
fn softmax<const LANES: usize>(s: &mut [f32]) -> [f32; LANES] {
    let mut m = [f32::NEG_INFINITY; LANES];
    for row in s.chunks_exact(LANES) {
        for l in 0..LANES {
            m[l] = m[l].max(row[l]);
        }
    }
    let mut sum = [0f32; LANES];
    for row in s.chunks_exact_mut(LANES) {
        for l in 0..LANES {
            row[l] = ggml_expf((row[l] - m[l]).max(-1e4));
            sum[l] += row[l];
        }
    }
    sum
}

pub(super) fn attend8(t: &Tile<'_>, scratch: &mut [f32], out: &mut [f32]) {
    let (jmin, jmax) = t.span();
    let n = jmax - jmin + 1;
    let hd = t.hd;
    // `[n][8]` scores, then (f16 rows only) one block of widened rows.
    let (s, wide) = scratch.split_at_mut(8 * n);
    let q = &t.q[..8 * hd];
    for b0 in (0..n).step_by(KEYS_PER_BLOCK) {
        let keys = (n - b0).min(KEYS_PER_BLOCK);
        let (kr, stride) = block(t.k, t.stride, hd, jmin + b0, keys, wide);
        // Four keys at a time: 4 × 8 independent sums, each query element loaded once for four.
        let mut i = 0;
        while i < keys {
            let m = (keys - i).min(4);
            let mut acc = [[0f32; 8]; 4];
            for d in 0..hd {
                let qd = &q[d * 8..d * 8 + 8];
                for (k, a) in acc.iter_mut().enumerate().take(m) {
                    let kd = kr[(i + k) * stride + d];
                    for l in 0..8 {
                        a[l] += qd[l] * kd;
                    }
                }
            }
            for (k, a) in acc.iter().enumerate().take(m) {
                let j = jmin + b0 + i + k;
                let row = &mut s[(b0 + i + k) * 8..(b0 + i + k + 1) * 8];
                for l in 0..8 {
                    row[l] = a[l] * t.scale;
                }
                if let Some(cap) = t.softcap {
                    softcap(row, cap);
                }
                for l in 0..8 {
                    if j < t.lo[l] as usize || j > t.hi[l] as usize {
                        row[l] = f32::NEG_INFINITY;
                    }
                }
            }
            i += m;
        }
    }
    let sum = softmax::<8>(s);
    // p·v a block of keys at a time (its value rows stay in L1), four dimensions at once.
    let o = &mut out[..8 * hd];
    o.fill(0.0);
    for b0 in (0..n).step_by(KEYS_PER_BLOCK) {
        let keys = (n - b0).min(KEYS_PER_BLOCK);
        let (vr, stride) = block(t.v, t.stride, hd, jmin + b0, keys, wide);
        let p = &s[b0 * 8..(b0 + keys) * 8];
        let mut d = 0;
        while d < hd {
            let m = (hd - d).min(4);
            let mut acc = [[0f32; 8]; 4];
            for (i, pi) in p.chunks_exact(8).enumerate() {
                for (k, a) in acc.iter_mut().enumerate().take(m) {
                    let v = vr[i * stride + d + k];
                    for l in 0..8 {
                        a[l] += pi[l] * v;
                    }
                }
            }
            for (k, a) in acc.iter().enumerate().take(m) {
                let od = &mut o[(d + k) * 8..(d + k + 1) * 8];
                for l in 0..8 {
                    od[l] += a[l];
                }
            }
            d += m;
        }
    }
    for od in o.chunks_exact_mut(8) {
        for l in 0..8 {
            od[l] /= sum[l];
        }
    }
}

/// q·k with eight partial sums (the compiler keeps them in vectors), then the tail.
fn dot(q: &[f32], k: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (qc, kc) = (q.chunks_exact(8), k.chunks_exact(8));
    let tail: f32 = qc
        .remainder()
        .iter()
        .zip(kc.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in qc.zip(kc) {
        for l in 0..8 {
            acc[l] += a[l] * b[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

pub(super) fn attend1(t: &Single<'_>, scratch: &mut [f32], out: &mut [f32]) {
    let n = t.hi + 1 - t.lo;
    let hd = t.hd;
    // `[n]` scores, then (f16 rows only) one block of widened rows.
    let (s, wide) = scratch.split_at_mut(n);
    let q = &t.q[..hd];
    for b0 in (0..n).step_by(KEYS_PER_BLOCK) {
        let keys = (n - b0).min(KEYS_PER_BLOCK);
        let (kr, stride) = block(t.k, t.stride, hd, t.lo + b0, keys, wide);
        for i in 0..keys {
            s[b0 + i] = dot(q, &kr[i * stride..i * stride + hd]) * t.scale;
        }
    }
    if let Some(cap) = t.softcap {
        softcap(s, cap);
    }
    let [sum] = softmax::<1>(s);
    let o = &mut out[..hd];
    o.fill(0.0);
    for b0 in (0..n).step_by(KEYS_PER_BLOCK) {
        let keys = (n - b0).min(KEYS_PER_BLOCK);
        let (vr, stride) = block(t.v, t.stride, hd, t.lo + b0, keys, wide);
        for (i, &p) in s[b0..b0 + keys].iter().enumerate() {
            for (od, &v) in o.iter_mut().zip(&vr[i * stride..i * stride + hd]) {
                *od += p * v;
            }
        }
    }
    for od in o.iter_mut() {
        *od /= sum;
    }
}
