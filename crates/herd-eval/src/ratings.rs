//! Ratings from pairwise battles, as Chatbot Arena computes them: online Elo (FastChat's
//! `compute_elo`: K = 4, scale 400, base 10, start 1000) and the Bradley–Terry maximum
//! likelihood fit (`compute_mle_elo`: a logistic regression where a win counts twice and a tie
//! once for each side), each with a seeded bootstrap interval. Also win/tie/loss rates and
//! relative scores against a baseline.

use std::collections::BTreeMap;

use herd_generate::rng::Rng;
use serde::{Deserialize, Serialize};

use crate::stats::{quantile, resample};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Winner {
    ModelA,
    ModelB,
    Tie,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Battle {
    pub model_a: String,
    pub model_b: String,
    pub winner: Winner,
}

pub const K: f64 = 4.0;
pub const SCALE: f64 = 400.0;
pub const BASE: f64 = 10.0;
pub const INIT: f64 = 1000.0;

/// Online Elo over the battles in order.
pub fn elo(battles: &[Battle]) -> BTreeMap<String, f64> {
    let refs: Vec<&Battle> = battles.iter().collect();
    elo_of(&refs)
}

fn elo_of(battles: &[&Battle]) -> BTreeMap<String, f64> {
    let mut r: BTreeMap<String, f64> = BTreeMap::new();
    for b in battles {
        let ra = *r.get(&b.model_a).unwrap_or(&INIT);
        let rb = *r.get(&b.model_b).unwrap_or(&INIT);
        let ea = 1.0 / (1.0 + BASE.powf((rb - ra) / SCALE));
        let eb = 1.0 / (1.0 + BASE.powf((ra - rb) / SCALE));
        let sa = match b.winner {
            Winner::ModelA => 1.0,
            Winner::ModelB => 0.0,
            Winner::Tie => 0.5,
        };
        r.insert(b.model_a.clone(), ra + K * (sa - ea));
        r.insert(b.model_b.clone(), rb + K * (1.0 - sa - eb));
    }
    r
}

/// Bradley–Terry ratings by maximum likelihood, on the Elo scale with mean 1000 (the
/// minimum-norm solution that an unpenalised logistic regression started at zero reaches).
pub fn bradley_terry(battles: &[Battle]) -> BTreeMap<String, f64> {
    let refs: Vec<&Battle> = battles.iter().collect();
    bt_of(&refs)
}

fn bt_of(battles: &[&Battle]) -> BTreeMap<String, f64> {
    let mut names: Vec<String> = battles
        .iter()
        .flat_map(|b| [b.model_a.clone(), b.model_b.clone()])
        .collect();
    names.sort();
    names.dedup();
    let p = names.len();
    let idx = |s: &str| names.binary_search_by(|n| n.as_str().cmp(s)).unwrap_or(0);
    // w[i][j]: weight of "i beats j": 2 per win, 1 per tie.
    let mut w = vec![vec![0.0f64; p]; p];
    for b in battles {
        let (a, c) = (idx(&b.model_a), idx(&b.model_b));
        match b.winner {
            Winner::ModelA => w[a][c] += 2.0,
            Winner::ModelB => w[c][a] += 2.0,
            Winner::Tie => {
                w[a][c] += 1.0;
                w[c][a] += 1.0;
            }
        }
    }
    let ln = BASE.ln();
    // Newton's method on β (natural-log strengths); the Hessian is singular along the all-ones
    // direction, which is held at mean zero by adding it to the Hessian.
    let mut beta = vec![0.0f64; p];
    for _ in 0..100 {
        let mut grad = vec![0.0; p];
        let mut h = vec![vec![1.0 / p as f64; p]; p];
        for i in 0..p {
            for j in 0..p {
                let n = w[i][j] + w[j][i];
                if i >= j || n == 0.0 {
                    continue;
                }
                let pij = 1.0 / (1.0 + (beta[j] - beta[i]).exp());
                let g = w[i][j] - n * pij;
                grad[i] += g;
                grad[j] -= g;
                let v = n * pij * (1.0 - pij);
                h[i][i] += v;
                h[j][j] += v;
                h[i][j] -= v;
                h[j][i] -= v;
            }
        }
        let Some(step) = solve(h, grad) else { break };
        let mut delta: f64 = 0.0;
        for (b, s) in beta.iter_mut().zip(&step) {
            *b += s;
            delta = delta.max(s.abs());
        }
        let mean = beta.iter().sum::<f64>() / p as f64;
        beta.iter_mut().for_each(|b| *b -= mean);
        if delta < 1e-12 {
            break;
        }
    }
    names
        .into_iter()
        .zip(beta)
        .map(|(n, b)| (n, INIT + SCALE * b / ln))
        .collect()
}

/// Solves `a x = b` by Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for c in 0..n {
        let piv = (c..n).max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))?;
        if a[piv][c].abs() < 1e-300 {
            return None;
        }
        a.swap(c, piv);
        b.swap(c, piv);
        let pivot = a[c].clone();
        for r in c + 1..n {
            let f = a[r][c] / pivot[c];
            for (x, p) in a[r][c..].iter_mut().zip(&pivot[c..]) {
                *x -= f * p;
            }
            b[r] -= f * b[c];
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        let s: f64 = (r + 1..n).map(|k| a[r][k] * x[k]).sum();
        x[r] = (b[r] - s) / a[r][r];
    }
    Some(x)
}

/// A rating with its bootstrap interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rating {
    pub model: String,
    pub rating: f64,
    /// Median over the bootstrap rounds.
    pub median: f64,
    pub lo: f64,
    pub hi: f64,
    pub battles: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Elo,
    BradleyTerry,
}

/// Ratings with percentile-bootstrap 95% intervals: each round resamples the battles with
/// replacement (and, for online Elo, in the resampled order), as FastChat's
/// `get_bootstrap_result` does. Sorted by rating, best first.
pub fn with_intervals(battles: &[Battle], method: Method, rounds: usize, seed: u64) -> Vec<Rating> {
    let f = |b: &[&Battle]| match method {
        Method::Elo => elo_of(b),
        Method::BradleyTerry => bt_of(b),
    };
    let all: Vec<&Battle> = battles.iter().collect();
    let point = f(&all);
    let mut rng = Rng::new(seed);
    let mut samples: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for _ in 0..rounds {
        let s: Vec<&Battle> = resample(&mut rng, battles.len())
            .into_iter()
            .map(|i| &battles[i])
            .collect();
        for (m, r) in f(&s) {
            samples.entry(m).or_default().push(r);
        }
    }
    let mut out: Vec<Rating> = point
        .into_iter()
        .map(|(model, rating)| {
            let mut v = samples.remove(&model).unwrap_or_default();
            v.sort_by(f64::total_cmp);
            let battles = battles
                .iter()
                .filter(|b| b.model_a == model || b.model_b == model)
                .count();
            Rating {
                median: quantile(&v, 0.5),
                lo: quantile(&v, 0.025),
                hi: quantile(&v, 0.975),
                model,
                rating,
                battles,
            }
        })
        .collect();
    out.sort_by(|a, b| b.rating.total_cmp(&a.rating));
    out
}

/// Win, tie and loss counts of `model` against everyone else in `battles`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub win: usize,
    pub tie: usize,
    pub loss: usize,
}

impl Record {
    pub fn of(model: &str, battles: &[Battle]) -> Record {
        let mut r = Record::default();
        for b in battles {
            let side = if b.model_a == model {
                Winner::ModelA
            } else if b.model_b == model {
                Winner::ModelB
            } else {
                continue;
            };
            match b.winner {
                Winner::Tie => r.tie += 1,
                w if w == side => r.win += 1,
                _ => r.loss += 1,
            }
        }
        r
    }

    pub fn total(&self) -> usize {
        self.win + self.tie + self.loss
    }

    pub fn rates(&self) -> (f64, f64, f64) {
        let n = self.total().max(1) as f64;
        (
            self.win as f64 / n,
            self.tie as f64 / n,
            self.loss as f64 / n,
        )
    }

    /// Wins plus half the ties, over all games (AlpacaEval's and MT-bench's adjusted win rate).
    pub fn win_rate_adjusted(&self) -> f64 {
        (self.win as f64 + 0.5 * self.tie as f64) / self.total().max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(a: &str, c: &str, w: Winner) -> Battle {
        Battle {
            model_a: a.into(),
            model_b: c.into(),
            winner: w,
        }
    }

    #[test]
    fn one_elo_step() {
        let r = elo(&[b("x", "y", Winner::ModelA)]);
        assert_eq!(r["x"], 1002.0);
        assert_eq!(r["y"], 998.0);
    }

    #[test]
    fn bradley_terry_two_models() {
        // 3 wins against 1: P = 6 / 8 under the doubled weights, so the gap is 400·log10(3).
        let mut v = vec![b("x", "y", Winner::ModelA); 3];
        v.push(b("x", "y", Winner::ModelB));
        let r = bradley_terry(&v);
        assert!((r["x"] - r["y"] - 400.0 * 3f64.log10()).abs() < 1e-9);
        assert!((r["x"] + r["y"] - 2000.0).abs() < 1e-9);
    }

    #[test]
    fn records() {
        let v = [
            b("x", "y", Winner::ModelA),
            b("y", "x", Winner::Tie),
            b("y", "x", Winner::ModelA),
        ];
        let r = Record::of("x", &v);
        assert_eq!((r.win, r.tie, r.loss), (1, 1, 1));
        assert_eq!(r.win_rate_adjusted(), 0.5);
    }
}
