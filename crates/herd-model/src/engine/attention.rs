//! Attention of the new tokens' queries against each sequence's cached keys and values, in
//! tiles of up to 8 queries that share their keys (`herd_kernels::attention`), shared out
//! among the pool's threads.

use std::sync::atomic::{AtomicUsize, Ordering};

use herd_kernels::matmul::SharedMut;
use herd_kernels::pool::ThreadPool;

use super::{Buffers, SeqInput, ops};
use crate::spec::ModelSpec;

/// One unit of attention work: rows `row..row + rows` (of one sequence) × heads
/// `head..head + heads`, one of the two counts being 1. Up to 8 of them are a tile's lanes.
#[derive(Clone, Copy, Debug)]
pub(super) struct Item {
    row: usize,
    rows: usize,
    head: usize,
    heads: usize,
}

/// Fills `b.work` with this step's items and sizes each thread's score buffer.
///
/// A prompt's rows go in tiles of up to 8 consecutive rows of one sequence, head by head (they
/// share their keys). A lone row (decoding) goes with the heads that share a key/value head,
/// up to 8 at a time, so each cached key and value is read once for all of them.
pub(super) fn plan(spec: &ModelSpec, pool: &ThreadPool, seqs: &[SeqInput<'_>], b: &mut Buffers) {
    let (nh, group) = (spec.n_heads, spec.n_heads / spec.n_kv_heads);
    let n = b.rows.len();
    b.work.clear();
    let mut row = 0;
    while row < n {
        let mut end = row + 1;
        while end < n && end - row < 8 && b.rows[end].0 == b.rows[row].0 {
            end += 1;
        }
        let rows = end - row;
        if rows == 1 && group > 1 {
            for kvh in 0..spec.n_kv_heads {
                for h0 in (0..group).step_by(8) {
                    let (head, heads) = (kvh * group + h0, (group - h0).min(8));
                    b.work.push(Item {
                        row,
                        rows,
                        head,
                        heads,
                    });
                }
            }
        } else {
            b.work.extend((0..nh).map(|head| Item {
                row,
                rows,
                head,
                heads: 1,
            }));
        }
        row = end;
    }
    // Sized to the caches' capacity, not the current length, so that they do not grow (and
    // reallocate) as a sequence lengthens: a tile's scores for 8 queries, then its transposed
    // queries and output.
    let max_ctx = seqs.iter().map(|s| s.cache.capacity).max().unwrap_or(0);
    let nth = pool.n_threads();
    if b.scores.len() < nth {
        b.scores.resize_with(nth, Vec::new);
    }
    for s in b.scores.iter_mut() {
        super::grow(s, 8 * max_ctx + 16 * spec.head_dim);
    }
}

/// `attn[N, nh·hd]` from the queries in `b.q` and each sequence's cache, for layer `li`, item
/// by item (`b.work`, from [`plan`]).
pub(super) fn attend(
    spec: &ModelSpec,
    pool: &ThreadPool,
    b: &mut Buffers,
    li: usize,
    seqs: &[SeqInput<'_>],
) {
    let (nh, nkv, hd) = (spec.n_heads, spec.n_kv_heads, spec.head_dim);
    let qd = spec.q_dim();
    let window = spec.sliding_window[li];
    let group = nh / nkv;
    let scale = spec.attn_scale;
    let softcap = spec.attn_softcap;
    let rows = &b.rows;
    let q = &b.q;
    let attn = SharedMut(b.attn.as_mut_ptr());
    let scores = SharedMut(b.scores.as_mut_ptr());
    // Items (`b.work`) are claimed one at a time, last tile first: a causal prompt's
    // later tiles attend to more keys, so contiguous shares per thread (as before) left
    // the first thread idle for most of a prompt's attention, and the longest items
    // going first leaves the least to wait for at the end.
    let work = &b.work;
    let items = work.len();
    let next = AtomicUsize::new(0);
    pool.run(|ith, _| {
        let (scores, attn) = (scores, attn);
        // SAFETY: each thread uses only its own score buffer.
        let sc_buf: &mut Vec<f32> = unsafe { &mut *scores.at(ith) };
        loop {
            let claimed = next.fetch_add(1, Ordering::Relaxed);
            if claimed >= items {
                break;
            }
            let Item {
                row: r0,
                rows: count,
                head,
                heads,
            } = work[items - 1 - claimed];
            let (si, _) = rows[r0];
            let c = &*seqs[si].cache;
            let kvh = head / group;
            // This head's rows, `hd` floats apart.
            let off = c.head_offset(li, kvh);
            let (kc, vc) = (&c.k[off..], &c.v[off..]);
            let first_key = |pos: usize| window.map_or(0, |w| (pos + 1).saturating_sub(w));
            if count > 1 || heads > 1 {
                // The tile's lanes are a prompt's queries of one head, or a lone row's
                // (decoding's) heads that share key/value head `kvh`: either way each
                // cached key and value is read once for all of them, with no horizontal
                // sum per key.
                let lanes = count.max(heads);
                let lane = |l: usize| {
                    if count > 1 {
                        (r0 + l, head)
                    } else {
                        (r0, head + l)
                    }
                };
                let len = sc_buf.len();
                let (sc, rest) = sc_buf.split_at_mut(len - 16 * hd);
                let (qt, out) = rest.split_at_mut(8 * hd);
                let (mut lo, mut hi) = ([0u32; 8], [0u32; 8]);
                for l in 0..8 {
                    // Unused lanes repeat the last one.
                    let (r, h) = lane(l.min(lanes - 1));
                    let pos = rows[r].1;
                    (lo[l], hi[l]) = (first_key(pos) as u32, pos as u32);
                    for d in 0..hd {
                        qt[d * 8 + l] = q[r * qd + h * hd + d];
                    }
                }
                let tile = herd_kernels::attention::Tile {
                    q: qt,
                    k: kc,
                    v: vc,
                    stride: hd,
                    hd,
                    lo,
                    hi,
                    scale,
                    softcap,
                };
                herd_kernels::attention::attend8(&tile, sc, out);
                for l in 0..lanes {
                    let (r, h) = lane(l);
                    // SAFETY: (row, head) pairs are disjoint between threads.
                    let o = unsafe { std::slice::from_raw_parts_mut(attn.at(r * qd + h * hd), hd) };
                    for (d, x) in o.iter_mut().enumerate() {
                        *x = out[d * 8 + l];
                    }
                }
                continue;
            }
            let (r, pos) = (r0, rows[r0].1);
            let qv = &q[r * qd + head * hd..r * qd + (head + 1) * hd];
            let lo = first_key(pos);
            let sc = &mut sc_buf[..pos + 1 - lo];
            for (j, s) in (lo..=pos).zip(sc.iter_mut()) {
                let kv = &kc[j * hd..(j + 1) * hd];
                *s = ops::dot(qv, kv) * scale;
            }
            if let Some(cap) = softcap {
                ops::softcap(sc, cap);
            }
            ops::softmax(sc);
            // SAFETY: (row, head) pairs are disjoint between threads.
            let out = unsafe { std::slice::from_raw_parts_mut(attn.at(r * qd + head * hd), hd) };
            out.fill(0.0);
            for (j, &p) in (lo..=pos).zip(sc.iter()) {
                ops::axpy(p, &vc[j * hd..(j + 1) * hd], out);
            }
        }
    });
}
