//! Attention of the new tokens' queries against each sequence's cached keys and values, in
//! tiles of up to 8 queries that share their keys (`herd_kernels::attention`), shared out
//! among the pool's threads.

use std::sync::atomic::{AtomicUsize, Ordering};

use herd_kernels::attention::{Rows, Single, Tile, scratch_len};
use herd_kernels::matmul::SharedMut;
use herd_kernels::pool::ThreadPool;

use super::{Buffers, CacheType, SeqInput};
use crate::spec::ModelSpec;

/// One unit of attention work: rows `row..row + rows` (of one sequence) × heads
/// `head..head + heads` (which share one key/value head).
///
/// - A lone row with one head: a dot product per key ([`attend`]'s single path).
/// - A lone row with several heads (decoding): one tile, the heads in its lanes.
/// - Several rows (a prompt): tiles of 8 consecutive rows, each with every head in turn.
#[derive(Clone, Copy, Debug)]
pub(super) struct Item {
    row: usize,
    rows: usize,
    head: usize,
    heads: usize,
}

/// Most tiles of a prompt in one item. An f16 cache's keys and values are widened to f32 once
/// per item, for all of its tiles and heads: per tile and head, the widening cost a prompt 5 to
/// 11 % at 2048 cached tokens, as TinyLlama's 8 heads per key/value head widened each key 8
/// times per tile.
const MAX_RUN: usize = 8;

/// Fills `b.work` with this step's items and sizes each thread's buffers.
///
/// A prompt's rows go in runs of tiles of up to 8 consecutive rows of one sequence, each run
/// with the heads of one key/value head; a lone row (decoding) goes with the heads that share
/// a key/value head, up to 8 at a time (the lanes of one tile). Either way each cached key and
/// value is read once for all of them.
pub(super) fn plan(spec: &ModelSpec, pool: &ThreadPool, seqs: &[SeqInput<'_>], b: &mut Buffers) {
    let (nkv, group) = (spec.n_kv_heads, spec.n_heads / spec.n_kv_heads);
    let nth = pool.n_threads();
    let n = b.rows.len();
    b.work.clear();
    let mut widened = false;
    let mut row = 0;
    while row < n {
        let si = b.rows[row].0;
        let mut end = row + 1;
        while end < n && b.rows[end].0 == si {
            end += 1;
        }
        if end - row == 1 {
            for kvh in 0..nkv {
                // Heads one at a time where none share a key/value head (the single path).
                let per = if group > 1 { 8 } else { 1 };
                for h0 in (0..group).step_by(per) {
                    b.work.push(Item {
                        row,
                        rows: 1,
                        head: kvh * group + h0,
                        heads: (group - h0).min(per),
                    });
                }
            }
        } else {
            widened |= seqs[si].cache.cache_type() == CacheType::F16;
            // Shorter runs where there are few: at least 4 items per thread to share out.
            let tiles = (end - row).div_ceil(8);
            let run = (tiles * nkv / (4 * nth)).clamp(1, MAX_RUN);
            for t0 in (0..tiles).step_by(run) {
                let r0 = row + 8 * t0;
                let r1 = (r0 + 8 * run).min(end);
                b.work.extend((0..nkv).map(|kvh| Item {
                    row: r0,
                    rows: r1 - r0,
                    head: kvh * group,
                    heads: group,
                }));
            }
        }
        row = end;
    }
    // Sized to the caches' capacity, not the current length, so that they do not grow (and
    // reallocate) as a sequence lengthens: a tile's scratch, then its transposed queries and
    // output; and where a prompt meets an f16 cache, one key/value head's keys and values
    // widened.
    let max_ctx = seqs.iter().map(|s| s.cache.capacity).max().unwrap_or(0);
    let hd = spec.head_dim;
    for (bufs, len) in [
        (&mut b.scores, scratch_len(max_ctx, hd) + 16 * hd),
        (&mut b.wide, if widened { 2 * max_ctx * hd } else { 0 }),
    ] {
        if bufs.len() < nth {
            bufs.resize_with(nth, Vec::new);
        }
        for s in bufs.iter_mut() {
            super::grow(s, len);
        }
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
    let wide = SharedMut(b.wide.as_mut_ptr());
    // Items (`b.work`) are claimed one at a time, last first: a causal prompt's later tiles
    // attend to more keys, so contiguous shares per thread (as before) left the first thread
    // idle for most of a prompt's attention, and the longest items going first leaves the
    // least to wait for at the end.
    let work = &b.work;
    let items = work.len();
    let next = AtomicUsize::new(0);
    pool.run(|ith, _| {
        let (scores, attn, wide) = (scores, attn, wide);
        // SAFETY: each thread uses only its own buffers.
        let sc_buf: &mut Vec<f32> = unsafe { &mut *scores.at(ith) };
        let wide: &mut Vec<f32> = unsafe { &mut *wide.at(ith) };
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
            // This head's rows, `hd` elements apart.
            let off = c.head_offset(li, kvh);
            let (mut kc, mut vc) = (c.k.rows(off), c.v.rows(off));
            let first_key = |pos: usize| window.map_or(0, |w| (pos + 1).saturating_sub(w));
            // Runs one tile: lane `l < lanes` is `lane(l)`'s (row, head).
            let mut tile = |lanes: usize, lane: &dyn Fn(usize) -> (usize, usize), k, v, stream| {
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
                let t = Tile {
                    q: qt,
                    k,
                    v,
                    stride: hd,
                    hd,
                    lo,
                    hi,
                    scale,
                    softcap,
                    stream,
                };
                herd_kernels::attention::attend8(&t, sc, out);
                for l in 0..lanes {
                    let (r, h) = lane(l);
                    // SAFETY: (row, head) pairs are disjoint between threads.
                    let o = unsafe { std::slice::from_raw_parts_mut(attn.at(r * qd + h * hd), hd) };
                    for (d, x) in o.iter_mut().enumerate() {
                        *x = out[d * 8 + l];
                    }
                }
            };
            if count > 1 {
                // A prompt's run of tiles. An f16 cache's span for it is widened once here,
                // for every tile and head of the run.
                let (lo, hi) = (first_key(rows[r0].1), rows[r0 + count - 1].1);
                if let (Rows::F16(k16), Rows::F16(v16)) = (kc, vc) {
                    let half = wide.len() / 2;
                    let (wk, wv) = wide.split_at_mut(half);
                    let span = lo * hd..(hi + 1) * hd;
                    herd_kernels::vec::f16_to_f32(&k16[span.clone()], &mut wk[span.clone()]);
                    herd_kernels::vec::f16_to_f32(&v16[span.clone()], &mut wv[span]);
                    (kc, vc) = (Rows::F32(wk), Rows::F32(wv));
                }
                for t0 in (r0..r0 + count).step_by(8) {
                    let lanes = (r0 + count - t0).min(8);
                    for h in head..head + heads {
                        tile(lanes, &|l| (t0 + l, h), kc, vc, false);
                    }
                }
                continue;
            }
            if heads > 1 {
                // Decoding: the heads that share key/value head `kvh` are the tile's lanes, so
                // each cached key and value is read once for all of them, with no horizontal
                // sum per key; they stream from memory, so the tile asks for them ahead.
                tile(heads, &|l| (r0, head + l), kc, vc, true);
                continue;
            }
            // One head alone on its key/value head (multi-head attention): its own kernel,
            // with no lanes to share a key's loads.
            let (r, pos) = (r0, rows[r0].1);
            let t = Single {
                q: &q[r * qd + head * hd..r * qd + (head + 1) * hd],
                k: kc,
                v: vc,
                stride: hd,
                hd,
                lo: first_key(pos),
                hi: pos,
                scale,
                softcap,
            };
            // SAFETY: (row, head) pairs are disjoint between threads.
            let out = unsafe { std::slice::from_raw_parts_mut(attn.at(r * qd + head * hd), hd) };
            herd_kernels::attention::attend1(&t, sc_buf, out);
        }
    });
}
