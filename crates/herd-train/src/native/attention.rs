//! Causal attention for training, forward and backward, without `[B, heads, T, T]` tensors.
//!
//! Each query sees a contiguous range of keys `[lo, i]` of its own row (causal order, packed
//! examples kept apart, sliding windows): [`ranges`] derives the ranges from the batch layout.
//! The forward pass keeps only each query's log-sum-exp; the backward pass recomputes the
//! probabilities from it (as FlashAttention does), so memory is `O(T)` per query head.
//!
//! Work is split by (sequence, KV head): a task owns its keys' and values' gradients, so the
//! query heads sharing them (grouped-query attention) never race. Keys and values are held
//! transposed (`[hd, T]`) so that every inner loop runs over consecutive keys, whatever the
//! head size (stories260K's heads have 8 dimensions).

use herd_kernels::vec::{axpy_f32, dot_f32, exp_sum_f32, max_f32};
use herd_model::reference::Layout;
use rayon::prelude::*;

/// Sizes of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    pub b: usize,
    pub t: usize,
    pub nh: usize,
    pub nkv: usize,
    pub hd: usize,
    /// Multiplier of `q·k`.
    pub scale: f32,
}

impl Dims {
    fn qd(&self) -> usize {
        self.nh * self.hd
    }
    fn kvd(&self) -> usize {
        self.nkv * self.hd
    }
    fn rep(&self) -> usize {
        self.nh / self.nkv
    }
}

/// For every row `b·T + i`, the first key it sees (`[lo, i]`), as the reference forward pass
/// masks: a valid key of the same example at an earlier or equal position, inside the window.
/// A padding query sees only itself (the reference lets it see more, which reaches no loss).
/// `None` when some query's visible keys are not one
/// contiguous range ending at itself (then the caller uses the reference pass).
pub fn ranges(layout: &Layout, window: Option<usize>) -> Option<Vec<u32>> {
    let t = layout.positions.first().map_or(0, Vec::len);
    let mut lo = Vec::with_capacity(layout.positions.len() * t);
    for (bi, pos) in layout.positions.iter().enumerate() {
        let valid = &layout.valid[bi];
        let seg = |j: usize| layout.segments.as_ref().map_or(0, |s| s[bi][j]);
        for i in 0..t {
            let visible = |j: usize| {
                valid[j]
                    && seg(j) == seg(i)
                    && pos[j] <= pos[i]
                    && window.is_none_or(|w| pos[i] - pos[j] < w)
            };
            if !valid[i] {
                // What a padding query sees reaches no loss: nothing attends to padding and
                // no target is predicted from it. Let it see itself.
                lo.push(i as u32);
                continue;
            }
            let mut first = i;
            while first > 0 && visible(first - 1) {
                first -= 1;
            }
            if (0..first).any(visible) {
                return None;
            }
            lo.push(first as u32);
        }
    }
    Some(lo)
}

/// One task's keys and values, transposed: `[hd, T]` each.
fn transposed(x: &[f32], d: &Dims, bi: usize, g: usize) -> Vec<f32> {
    let (t, hd, kvd) = (d.t, d.hd, d.kvd());
    let mut out = vec![0f32; hd * t];
    for j in 0..t {
        let row = &x[(bi * t + j) * kvd + g * hd..][..hd];
        for (c, &v) in row.iter().enumerate() {
            out[c * t + j] = v;
        }
    }
    out
}

/// `o` (`[N, nh·hd]`) = softmax(scale·q·kᵀ) · v over each query's range; returns `o` and the
/// log-sum-exp of each query's scores, `[B, nh, T]`. `q` is `[N, nh·hd]`, `k` and `v`
/// `[N, nkv·hd]`, all after rotary embedding.
pub fn forward(d: &Dims, q: &[f32], k: &[f32], v: &[f32], lo: &[u32]) -> (Vec<f32>, Vec<f32>) {
    let (t, hd, qd, rep) = (d.t, d.hd, d.qd(), d.rep());
    let parts: Vec<(Vec<f32>, Vec<f32>)> = (0..d.b * d.nkv)
        .into_par_iter()
        .map(|task| {
            let (bi, g) = (task / d.nkv, task % d.nkv);
            let (kt, vt) = (transposed(k, d, bi, g), transposed(v, d, bi, g));
            let mut o = vec![0f32; rep * t * hd];
            let mut lse = vec![0f32; rep * t];
            let mut s = vec![0f32; t];
            for r in 0..rep {
                let h = g * rep + r;
                for i in 0..t {
                    let first = lo[bi * t + i] as usize;
                    let qrow = &q[(bi * t + i) * qd + h * hd..][..hd];
                    let s = &mut s[..i + 1 - first];
                    s.fill(0.0);
                    for (c, &qc) in qrow.iter().enumerate() {
                        axpy_f32(qc, &kt[c * t + first..c * t + i + 1], s);
                    }
                    s.iter_mut().for_each(|x| *x *= d.scale);
                    let max = max_f32(s);
                    let sum = exp_sum_f32(s, max);
                    let orow = &mut o[(r * t + i) * hd..][..hd];
                    for (c, oc) in orow.iter_mut().enumerate() {
                        *oc = dot_f32(s, &vt[c * t + first..c * t + i + 1]) / sum;
                    }
                    lse[r * t + i] = max + sum.ln();
                }
            }
            (o, lse)
        })
        .collect();
    let mut o = vec![0f32; d.b * t * qd];
    let mut lse = vec![0f32; d.b * d.nh * t];
    for (task, (po, pl)) in parts.into_iter().enumerate() {
        let (bi, g) = (task / d.nkv, task % d.nkv);
        for r in 0..rep {
            let h = g * rep + r;
            for i in 0..t {
                o[(bi * t + i) * qd + h * hd..][..hd]
                    .copy_from_slice(&po[(r * t + i) * hd..][..hd]);
            }
            lse[(bi * d.nh + h) * t..][..t].copy_from_slice(&pl[r * t..][..t]);
        }
    }
    (o, lse)
}

/// Gradients of `q`, `k` and `v` from the output's gradient `d_o`, recomputing each query's
/// probabilities from `lse`: with `p = softmax`, `dp = d_o·vᵀ`, `ds = p·(dp − d_o·o)`:
/// `dq = scale·ds·k`, `dk = scale·dsᵀ·q`, `dv = pᵀ·d_o`.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    d: &Dims,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    o: &[f32],
    lse: &[f32],
    d_o: &[f32],
    lo: &[u32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (t, hd, qd, kvd, rep) = (d.t, d.hd, d.qd(), d.kvd(), d.rep());
    type Part = (Vec<f32>, Vec<f32>, Vec<f32>);
    let parts: Vec<Part> = (0..d.b * d.nkv)
        .into_par_iter()
        .map(|task| {
            let (bi, g) = (task / d.nkv, task % d.nkv);
            let (kt, vt) = (transposed(k, d, bi, g), transposed(v, d, bi, g));
            let mut dkt = vec![0f32; hd * t];
            let mut dvt = vec![0f32; hd * t];
            let mut dq = vec![0f32; rep * t * hd];
            let (mut p, mut dp) = (vec![0f32; t], vec![0f32; t]);
            for r in 0..rep {
                let h = g * rep + r;
                for i in 0..t {
                    let first = lo[bi * t + i] as usize;
                    let n = i + 1 - first;
                    let at = (bi * t + i) * qd + h * hd;
                    let (qrow, orow, drow) = (&q[at..at + hd], &o[at..at + hd], &d_o[at..at + hd]);
                    let (p, dp) = (&mut p[..n], &mut dp[..n]);
                    p.fill(0.0);
                    dp.fill(0.0);
                    for c in 0..hd {
                        let (ks, vs) = (c * t + first, c * t + i + 1);
                        axpy_f32(qrow[c], &kt[ks..vs], p);
                        axpy_f32(drow[c], &vt[ks..vs], dp);
                    }
                    let row_lse = lse[(bi * d.nh + h) * t + i];
                    p.iter_mut().for_each(|x| *x *= d.scale);
                    exp_sum_f32(p, row_lse);
                    let delta = dot_f32(drow, orow);
                    // dp becomes ds.
                    dp.iter_mut()
                        .zip(p.iter())
                        .for_each(|(x, &pv)| *x = pv * (*x - delta));
                    let dqrow = &mut dq[(r * t + i) * hd..][..hd];
                    for c in 0..hd {
                        let (ks, ke) = (c * t + first, c * t + i + 1);
                        axpy_f32(drow[c], p, &mut dvt[ks..ke]);
                        dqrow[c] = d.scale * dot_f32(dp, &kt[ks..ke]);
                        axpy_f32(d.scale * qrow[c], dp, &mut dkt[ks..ke]);
                    }
                }
            }
            (dq, dkt, dvt)
        })
        .collect();
    let mut dq = vec![0f32; d.b * t * qd];
    let mut dk = vec![0f32; d.b * t * kvd];
    let mut dv = vec![0f32; d.b * t * kvd];
    for (task, (pq, pk, pv)) in parts.into_iter().enumerate() {
        let (bi, g) = (task / d.nkv, task % d.nkv);
        for r in 0..rep {
            let h = g * rep + r;
            for i in 0..t {
                dq[(bi * t + i) * qd + h * hd..][..hd]
                    .copy_from_slice(&pq[(r * t + i) * hd..][..hd]);
            }
        }
        for j in 0..t {
            for c in 0..hd {
                dk[(bi * t + j) * kvd + g * hd + c] = pk[c * t + j];
                dv[(bi * t + j) * kvd + g * hd + c] = pv[c * t + j];
            }
        }
    }
    (dq, dk, dv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::native::test_values as values;

    /// Row 0: two packed examples; row 1: one example and padding.
    fn layout() -> Layout {
        Layout {
            positions: vec![vec![0, 1, 2, 0, 1, 2], vec![0, 1, 2, 3, 0, 0]],
            valid: vec![vec![true; 6], vec![true, true, true, true, false, false]],
            segments: Some(vec![
                vec![0, 0, 0, 1, 1, 1],
                vec![0, 0, 0, 0, u32::MAX, u32::MAX],
            ]),
        }
    }

    /// The dense reference: masked softmax over all keys, in f64.
    fn naive(d: &Dims, q: &[f32], k: &[f32], v: &[f32], lo: &[u32]) -> Vec<f64> {
        let (t, hd, qd, kvd) = (d.t, d.hd, d.qd(), d.kvd());
        let mut o = vec![0f64; d.b * t * qd];
        for bi in 0..d.b {
            for h in 0..d.nh {
                let g = h / d.rep();
                for i in 0..t {
                    let keys = lo[bi * t + i] as usize..=i;
                    let s: Vec<f64> = keys
                        .clone()
                        .map(|j| {
                            (0..hd)
                                .map(|c| {
                                    q[(bi * t + i) * qd + h * hd + c] as f64
                                        * k[(bi * t + j) * kvd + g * hd + c] as f64
                                })
                                .sum::<f64>()
                                * d.scale as f64
                        })
                        .collect();
                    let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
                    for (sj, j) in s.iter().zip(keys) {
                        for c in 0..hd {
                            o[(bi * t + i) * qd + h * hd + c] +=
                                (sj - m).exp() / z * v[(bi * t + j) * kvd + g * hd + c] as f64;
                        }
                    }
                }
            }
        }
        o
    }

    #[test]
    fn ranges_follow_the_reference_mask() {
        let lo = ranges(&layout(), None).unwrap();
        assert_eq!(lo, vec![0, 0, 0, 3, 3, 3, 0, 0, 0, 0, 4, 5]);
        assert_eq!(ranges(&layout(), Some(2)).unwrap()[..6], [0, 0, 1, 3, 3, 4]);
        // Two examples interleaved in one row cannot be ranges.
        let mut l = layout();
        l.segments = Some(vec![vec![0, 1, 0, 1, 0, 1], vec![0; 6]]);
        assert!(ranges(&l, None).is_none());
    }

    #[test]
    fn forward_and_backward_match_the_dense_reference_and_finite_differences() {
        let d = Dims {
            b: 2,
            t: 6,
            nh: 4,
            nkv: 2,
            hd: 3,
            scale: 0.7,
        };
        let lo = ranges(&layout(), None).unwrap();
        let n = d.b * d.t;
        let (q, k, v) = (
            values(n * d.qd(), 1),
            values(n * d.kvd(), 2),
            values(n * d.kvd(), 3),
        );
        let (o, lse) = forward(&d, &q, &k, &v, &lo);
        for (a, b) in o.iter().zip(naive(&d, &q, &k, &v, &lo)) {
            assert!((*a as f64 - b).abs() < 1e-5, "{a} vs {b}");
        }
        let d_o = values(n * d.qd(), 4);
        let (dq, dk, dv) = backward(&d, &q, &k, &v, &o, &lse, &d_o, &lo);
        let f = |q: &[f32], k: &[f32], v: &[f32]| -> f64 {
            naive(&d, q, k, v, &lo)
                .iter()
                .zip(&d_o)
                .map(|(a, b)| a * *b as f64)
                .sum()
        };
        let eps = 1e-3f32;
        let check = |which: usize, grad: &[f32]| {
            let base = [&q, &k, &v][which];
            for i in 0..base.len() {
                let (mut p, mut m) = (base.clone(), base.clone());
                p[i] += eps;
                m[i] -= eps;
                let args = |x: &Vec<f32>| -> f64 {
                    match which {
                        0 => f(x, &k, &v),
                        1 => f(&q, x, &v),
                        _ => f(&q, &k, x),
                    }
                };
                let fd = (args(&p) - args(&m)) / (2.0 * eps as f64);
                assert!(
                    (fd - grad[i] as f64).abs() < 1e-3,
                    "input {which} element {i}: {fd} vs {}",
                    grad[i]
                );
            }
        };
        check(0, &dq);
        check(1, &dk);
        check(2, &dv);
    }
}
