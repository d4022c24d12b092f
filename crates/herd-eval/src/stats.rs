//! Means with standard errors and seeded bootstrap intervals.

use herd_generate::rng::Rng;
use serde::{Deserialize, Serialize};

/// A mean with its standard error (sample standard deviation / √n, as lm-evaluation-harness
/// reports) and a 95% interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub value: f64,
    pub stderr: f64,
    pub lo: f64,
    pub hi: f64,
    pub n: usize,
}

impl Estimate {
    /// Mean of `xs` with a normal-approximation 95% interval.
    pub fn mean(xs: &[f64]) -> Estimate {
        let n = xs.len();
        if n == 0 {
            return Estimate {
                value: f64::NAN,
                stderr: f64::NAN,
                lo: f64::NAN,
                hi: f64::NAN,
                n,
            };
        }
        let m = xs.iter().sum::<f64>() / n as f64;
        let se = if n > 1 {
            let var = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64;
            (var / n as f64).sqrt()
        } else {
            0.0
        };
        Estimate {
            value: m,
            stderr: se,
            lo: m - 1.96 * se,
            hi: m + 1.96 * se,
            n,
        }
    }
}

/// The `q` quantile of sorted values, linearly interpolated (numpy's default).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (i, f) = (pos.floor() as usize, pos - pos.floor());
    if i + 1 < sorted.len() {
        sorted[i] * (1.0 - f) + sorted[i + 1] * f
    } else {
        sorted[i]
    }
}

/// Indices of a resample with replacement of `n` things.
pub fn resample(rng: &mut Rng, n: usize) -> Vec<usize> {
    (0..n)
        .map(|_| ((rng.next_f64() * n as f64) as usize).min(n.saturating_sub(1)))
        .collect()
}

/// A statistic of a sample with a percentile-bootstrap 95% interval (`rounds` resamples).
pub fn bootstrap<T>(
    items: &[T],
    rounds: usize,
    seed: u64,
    stat: impl Fn(&[&T]) -> f64,
) -> Estimate {
    let all: Vec<&T> = items.iter().collect();
    let value = stat(&all);
    let mut rng = Rng::new(seed);
    let mut vals: Vec<f64> = (0..rounds)
        .map(|_| {
            let s: Vec<&T> = resample(&mut rng, items.len())
                .into_iter()
                .map(|i| &items[i])
                .collect();
            stat(&s)
        })
        .filter(|v| v.is_finite())
        .collect();
    vals.sort_by(f64::total_cmp);
    let m = vals.iter().sum::<f64>() / vals.len().max(1) as f64;
    let sd = (vals.iter().map(|v| (v - m).powi(2)).sum::<f64>()
        / vals.len().max(2).saturating_sub(1) as f64)
        .sqrt();
    Estimate {
        value,
        stderr: sd,
        lo: quantile(&vals, 0.025),
        hi: quantile(&vals, 0.975),
        n: items.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_stderr() {
        let e = Estimate::mean(&[1.0, 0.0, 1.0, 1.0]);
        assert_eq!(e.value, 0.75);
        assert!((e.stderr - 0.25).abs() < 1e-12);
    }

    #[test]
    fn quantiles_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.5), 2.5);
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert!((quantile(&v, 0.975) - 3.925).abs() < 1e-12);
    }

    #[test]
    fn bootstrap_is_seeded() {
        let xs: Vec<f64> = (0..50).map(|i| (i % 3) as f64).collect();
        let f = |s: &[&f64]| s.iter().copied().sum::<f64>() / s.len() as f64;
        let a = bootstrap(&xs, 200, 7, f);
        assert_eq!(a, bootstrap(&xs, 200, 7, f));
        assert!(a.lo <= a.value && a.value <= a.hi);
    }
}
