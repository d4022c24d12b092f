//! Sequences for training: single examples or several packed into one, and a held-out split.

use crate::encode::Encoded;

/// One training sequence: tokens of one or more examples.
#[derive(Clone, Debug, PartialEq)]
pub struct Sequence {
    pub ids: Vec<u32>,
    pub train: Vec<bool>,
    /// Position of each token within its own example (restarts at 0 for each).
    pub positions: Vec<usize>,
    /// Which example each token belongs to: attention never crosses examples.
    pub segments: Vec<u32>,
}

impl Sequence {
    pub fn single(e: &Encoded) -> Self {
        Sequence {
            ids: e.ids.clone(),
            train: e.train.clone(),
            positions: (0..e.ids.len()).collect(),
            segments: vec![0; e.ids.len()],
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Packs examples, in order, into sequences of at most `max_len` tokens (first fit: a
/// sequence is closed when the next example does not fit).
pub fn pack(examples: &[Encoded], max_len: usize) -> Vec<Sequence> {
    let mut out: Vec<Sequence> = vec![];
    let mut cur = Sequence {
        ids: vec![],
        train: vec![],
        positions: vec![],
        segments: vec![],
    };
    let mut seg = 0u32;
    for e in examples {
        if !cur.is_empty() && cur.len() + e.ids.len() > max_len {
            out.push(std::mem::replace(
                &mut cur,
                Sequence {
                    ids: vec![],
                    train: vec![],
                    positions: vec![],
                    segments: vec![],
                },
            ));
            seg = 0;
        }
        cur.ids.extend(&e.ids);
        // The first token of an example is never a target: nothing of its own precedes it.
        cur.train
            .extend(e.train.iter().enumerate().map(|(i, &t)| t && i > 0));
        cur.positions.extend(0..e.ids.len());
        cur.segments.extend(std::iter::repeat_n(seg, e.ids.len()));
        seg += 1;
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Splits `n` items into (train, held-out) indices: a seeded shuffle, the last `fraction`
/// held out (at least one when `fraction > 0` and `n > 1`).
pub fn split(n: usize, fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut idx: Vec<usize> = (0..n).collect();
    shuffle(&mut idx, seed);
    let held = if fraction > 0.0 && n > 1 {
        ((n as f64 * fraction).round() as usize).clamp(1, n - 1)
    } else {
        0
    };
    let val = idx.split_off(n - held);
    (idx, val)
}

/// Fisher–Yates with splitmix64: the same order for the same seed on every machine.
pub fn shuffle<T>(v: &mut [T], seed: u64) {
    let mut s = seed;
    let mut next = || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for i in (1..v.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::Location;

    fn ex(n: usize) -> Encoded {
        Encoded {
            ids: (0..n as u32).collect(),
            train: (0..n).map(|i| i >= n / 2).collect(),
            location: Location {
                file: "x".into(),
                line: 1,
                index: 0,
            },
        }
    }

    #[test]
    fn packing_keeps_examples_whole_and_apart() {
        let seqs = pack(&[ex(4), ex(3), ex(5), ex(2)], 8);
        assert_eq!(
            seqs.iter().map(Sequence::len).collect::<Vec<_>>(),
            vec![7, 7]
        );
        assert_eq!(seqs[0].segments, vec![0, 0, 0, 0, 1, 1, 1]);
        assert_eq!(seqs[0].positions, vec![0, 1, 2, 3, 0, 1, 2]);
        assert_eq!(seqs[1].segments, vec![0, 0, 0, 0, 0, 1, 1]);
        let trained: usize = seqs
            .iter()
            .map(|s| s.train.iter().filter(|&&t| t).count())
            .sum();
        assert_eq!(trained, 2 + 2 + 3 + 1);
    }

    #[test]
    fn the_split_is_seeded_disjoint_and_complete() {
        let (a, b) = split(100, 0.1, 7);
        assert_eq!((a.len(), b.len()), (90, 10));
        let mut all: Vec<usize> = a.iter().chain(&b).copied().collect();
        all.sort();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert_eq!(split(100, 0.1, 7), (a, b.clone()));
        assert_ne!(split(100, 0.1, 8).1, b);
    }
}
