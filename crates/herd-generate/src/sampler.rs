//! Choosing the next token from logits.
//!
//! Order of operations, as Hugging Face's `generate` applies its logits processors: logit bias,
//! repetition penalty, presence and frequency penalties, temperature, top-k, top-p, min-p, then
//! a draw (or the argmax when the temperature is 0). Every filter keeps exactly the tokens its
//! definition names; ties at a boundary are kept.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplerConfig {
    /// 0 means greedy.
    pub temperature: f32,
    /// Keep the `k` most likely tokens (0: off).
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches `p` (1: off).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one (0: off).
    pub min_p: f32,
    /// CTRL's penalty on tokens already present (1: off): positive logits divided by it,
    /// negative ones multiplied.
    pub repetition_penalty: f32,
    /// OpenAI's penalties on generated tokens: `logit -= presence·[count > 0] + frequency·count`.
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// How many recent tokens the repetition penalty looks at (0: all, prompt included).
    pub penalty_last_n: usize,
    /// Added to the logits of the given tokens before anything else.
    pub logit_bias: HashMap<u32, f32>,
    /// Seed of the draw; `None` picks one from the clock (and reports it).
    pub seed: Option<u64>,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            penalty_last_n: 64,
            logit_bias: HashMap::new(),
            seed: None,
        }
    }
}

impl SamplerConfig {
    pub fn greedy() -> Self {
        SamplerConfig {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..Default::default()
        }
    }

    /// Checks ranges; the error names the setting.
    pub fn validate(&self) -> Result<(), String> {
        let finite = |name: &str, v: f32| {
            if v.is_finite() {
                Ok(())
            } else {
                Err(format!("{name} must be a finite number, not {v}"))
            }
        };
        finite("temperature", self.temperature)?;
        finite("top_p", self.top_p)?;
        finite("min_p", self.min_p)?;
        finite("repetition_penalty", self.repetition_penalty)?;
        finite("presence_penalty", self.presence_penalty)?;
        finite("frequency_penalty", self.frequency_penalty)?;
        if self.temperature < 0.0 {
            return Err(format!("temperature must be ≥ 0, not {}", self.temperature));
        }
        if !(0.0..=1.0).contains(&self.top_p) || self.top_p == 0.0 {
            return Err(format!("top_p must be in (0, 1], not {}", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(format!("min_p must be in [0, 1], not {}", self.min_p));
        }
        if self.repetition_penalty <= 0.0 {
            return Err(format!(
                "repetition_penalty must be > 0, not {}",
                self.repetition_penalty
            ));
        }
        for (t, b) in &self.logit_bias {
            finite(&format!("logit_bias[{t}]"), *b)?;
        }
        Ok(())
    }
}

/// One candidate token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    pub id: u32,
    pub logit: f32,
    pub p: f32,
}

/// A sampler with its random state and reusable buffers.
pub struct Sampler {
    pub config: SamplerConfig,
    pub seed: u64,
    rng: Rng,
    cands: Vec<Candidate>,
    counts: HashMap<u32, u32>,
}

impl Sampler {
    pub fn new(config: SamplerConfig) -> Self {
        let seed = config.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        });
        Sampler {
            config,
            seed,
            rng: Rng::new(seed),
            cands: Vec::new(),
            counts: HashMap::new(),
        }
    }

    /// Chooses the next token. `context` is every token so far (prompt and generated);
    /// `generated` how many of its last tokens were generated (for OpenAI's penalties).
    pub fn sample(&mut self, logits: &mut [f32], context: &[u32], generated: usize) -> u32 {
        self.adjust(logits, context, generated);
        if self.config.temperature == 0.0 {
            return argmax(logits);
        }
        self.candidates(logits);
        let r = self.rng.next_f64();
        draw(&self.cands, r)
    }

    /// Like [`Sampler::sample`], but only among tokens that `allowed` accepts (constrained
    /// decoding): a drawn token that is not allowed is removed and the draw repeated among
    /// the rest; when the filtered candidates run out, the most likely allowed token of the
    /// whole vocabulary is taken. `None` when no token at all is allowed.
    pub fn sample_allowed(
        &mut self,
        logits: &mut [f32],
        context: &[u32],
        generated: usize,
        allowed: &mut dyn FnMut(u32) -> bool,
    ) -> Option<u32> {
        self.adjust(logits, context, generated);
        if self.config.temperature != 0.0 {
            self.candidates(logits);
            while !self.cands.is_empty() {
                let r = self.rng.next_f64();
                let id = draw(&self.cands, r);
                if allowed(id) {
                    return Some(id);
                }
                self.cands.retain(|c| c.id != id);
                let sum: f32 = self.cands.iter().map(|c| c.p).sum();
                self.cands.iter_mut().for_each(|c| c.p /= sum);
            }
        }
        let mut order: Vec<u32> = (0..logits.len() as u32).collect();
        order.sort_by(|&a, &b| {
            logits[b as usize]
                .total_cmp(&logits[a as usize])
                .then(a.cmp(&b))
        });
        order.into_iter().find(|&id| allowed(id))
    }

    /// Logit bias and penalties, in place.
    fn adjust(&mut self, logits: &mut [f32], context: &[u32], generated: usize) {
        let c = &self.config;
        for (&t, &b) in &c.logit_bias {
            if let Some(l) = logits.get_mut(t as usize) {
                *l += b;
            }
        }
        if c.repetition_penalty != 1.0 {
            let window = if c.penalty_last_n == 0 {
                context.len()
            } else {
                c.penalty_last_n.min(context.len())
            };
            let mut seen = std::mem::take(&mut self.counts);
            seen.clear();
            for &t in &context[context.len() - window..] {
                *seen.entry(t).or_default() += 1;
            }
            for &t in seen.keys() {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = if *l > 0.0 {
                        *l / c.repetition_penalty
                    } else {
                        *l * c.repetition_penalty
                    };
                }
            }
            self.counts = seen;
        }
        if c.presence_penalty != 0.0 || c.frequency_penalty != 0.0 {
            let mut counts = std::mem::take(&mut self.counts);
            counts.clear();
            for &t in &context[context.len() - generated.min(context.len())..] {
                *counts.entry(t).or_default() += 1;
            }
            for (&t, &n) in &counts {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l -= c.presence_penalty + c.frequency_penalty * n as f32;
                }
            }
            self.counts = counts;
        }
    }

    /// The tempered, filtered candidates with their probabilities.
    fn candidates(&mut self, logits: &[f32]) {
        let c = &self.config;
        let temperature = c.temperature;
        self.cands.clear();
        self.cands
            .extend(logits.iter().enumerate().map(|(i, &l)| Candidate {
                id: i as u32,
                logit: l / temperature,
                p: 0.0,
            }));
        filter(&mut self.cands, c.top_k, c.top_p, c.min_p);
    }

    pub fn rng_state(&self) -> [u64; 4] {
        self.rng.state()
    }
}

/// The candidate whose cumulative probability first exceeds `r` (in [0, 1)).
fn draw(cands: &[Candidate], r: f64) -> u32 {
    let mut acc = 0.0f64;
    for cand in cands {
        acc += cand.p as f64;
        if r < acc {
            return cand.id;
        }
    }
    cands.last().map_or(0, |c| c.id)
}

/// Index of the largest logit (the first, on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Sorts `cands` by logit, applies top-k, top-p and min-p, and leaves the survivors with
/// their renormalised probabilities in `p`.
pub fn filter(cands: &mut Vec<Candidate>, top_k: usize, top_p: f32, min_p: f32) {
    cands.sort_by(|a, b| b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id)));
    if top_k > 0 && top_k < cands.len() {
        let kth = cands[top_k - 1].logit;
        // Tokens tied with the k-th are kept.
        let keep = cands.iter().take_while(|c| c.logit >= kth).count();
        cands.truncate(keep);
    }
    softmax(cands);
    if top_p < 1.0 {
        let mut acc = 0.0f32;
        let mut keep = cands.len();
        for (i, c) in cands.iter().enumerate() {
            acc += c.p;
            if acc >= top_p {
                keep = i + 1;
                break;
            }
        }
        // Keep ties with the last kept token.
        let last = cands[keep - 1].logit;
        keep += cands[keep..].iter().take_while(|c| c.logit >= last).count();
        cands.truncate(keep);
        softmax(cands);
    }
    if min_p > 0.0 && !cands.is_empty() {
        let threshold = cands[0].p * min_p;
        let keep = cands.iter().take_while(|c| c.p >= threshold).count().max(1);
        cands.truncate(keep);
        softmax(cands);
    }
}

fn softmax(cands: &mut [Candidate]) {
    let max = cands.first().map_or(0.0, |c| c.logit);
    let mut sum = 0.0f32;
    for c in cands.iter_mut() {
        c.p = (c.logit - max).exp();
        sum += c.p;
    }
    for c in cands.iter_mut() {
        c.p /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Candidates from probabilities (logits = ln p, so softmax gives them back).
    fn from_probs(ps: &[f32]) -> Vec<Candidate> {
        ps.iter()
            .enumerate()
            .map(|(i, &p)| Candidate {
                id: i as u32,
                logit: p.ln(),
                p: 0.0,
            })
            .collect()
    }

    fn kept(ps: &[f32], k: usize, top_p: f32, min_p: f32) -> Vec<u32> {
        let mut c = from_probs(ps);
        filter(&mut c, k, top_p, min_p);
        let mut ids: Vec<u32> = c.iter().map(|c| c.id).collect();
        ids.sort();
        ids
    }

    #[test]
    fn top_k_keeps_the_k_most_likely() {
        let ps = [0.1, 0.4, 0.05, 0.3, 0.15];
        assert_eq!(kept(&ps, 2, 1.0, 0.0), vec![1, 3]);
        assert_eq!(kept(&ps, 1, 1.0, 0.0), vec![1]);
        assert_eq!(kept(&ps, 0, 1.0, 0.0), vec![0, 1, 2, 3, 4]);
        // A tie at the k-th place keeps both.
        assert_eq!(kept(&[0.4, 0.2, 0.2, 0.2], 2, 1.0, 0.0), vec![0, 1, 2, 3]);
    }

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_p() {
        let ps = [0.1, 0.4, 0.05, 0.3, 0.15];
        // 0.4 < 0.5 ≤ 0.4 + 0.3
        assert_eq!(kept(&ps, 0, 0.5, 0.0), vec![1, 3]);
        // 0.4 + 0.3 = 0.7 exactly reaches 0.7
        assert_eq!(kept(&ps, 0, 0.7, 0.0), vec![1, 3]);
        assert_eq!(kept(&ps, 0, 0.71, 0.0), vec![1, 3, 4]);
        assert_eq!(kept(&ps, 0, 0.4, 0.0), vec![1]);
    }

    #[test]
    fn min_p_drops_tokens_below_the_scaled_maximum() {
        let ps = [0.1, 0.4, 0.05, 0.3, 0.15];
        // threshold 0.4 · 0.3 = 0.12: keeps 0.4, 0.3, 0.15
        assert_eq!(kept(&ps, 0, 1.0, 0.3), vec![1, 3, 4]);
        // threshold 0.4 · 0.25 = 0.1: keeps 0.1 too (≥)
        assert_eq!(kept(&ps, 0, 1.0, 0.25), vec![0, 1, 3, 4]);
        assert_eq!(kept(&ps, 0, 1.0, 1.0), vec![1]);
    }

    #[test]
    fn survivors_are_renormalised() {
        let mut c = from_probs(&[0.1, 0.4, 0.05, 0.3, 0.15]);
        filter(&mut c, 0, 0.5, 0.0);
        let p: Vec<f32> = c.iter().map(|c| c.p).collect();
        assert!(
            (p[0] - 0.4 / 0.7).abs() < 1e-6 && (p[1] - 0.3 / 0.7).abs() < 1e-6,
            "{p:?}"
        );
    }

    #[test]
    fn greedy_takes_the_argmax_and_penalties_change_it() {
        let mut s = Sampler::new(SamplerConfig::greedy());
        assert_eq!(s.sample(&mut [0.0, 3.0, 2.0], &[], 0), 1);
        let mut s = Sampler::new(SamplerConfig {
            repetition_penalty: 2.0,
            ..SamplerConfig::greedy()
        });
        // 3.0 / 2 = 1.5 < 2.0
        assert_eq!(s.sample(&mut [0.0, 3.0, 2.0], &[1], 1), 2);
        let mut s = Sampler::new(SamplerConfig {
            frequency_penalty: 0.6,
            ..SamplerConfig::greedy()
        });
        // token 1 generated twice: 3.0 - 1.2 = 1.8 < 2.0; the prompt (first token) does not count
        assert_eq!(s.sample(&mut [0.0, 3.0, 2.0], &[2, 1, 1], 2), 2);
        let mut s = Sampler::new(SamplerConfig {
            presence_penalty: 0.5,
            ..SamplerConfig::greedy()
        });
        assert_eq!(s.sample(&mut [0.0, 3.0, 2.0], &[1], 1), 1);
        let mut s = Sampler::new(SamplerConfig {
            logit_bias: [(0, 10.0)].into_iter().collect(),
            ..SamplerConfig::greedy()
        });
        assert_eq!(s.sample(&mut [0.0, 3.0, 2.0], &[], 0), 0);
    }

    #[test]
    fn a_seed_makes_draws_reproducible_and_follow_the_distribution() {
        let cfg = SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: Some(7),
            ..Default::default()
        };
        let logits: Vec<f32> = [0.5f32, 0.3, 0.2].iter().map(|p| p.ln()).collect();
        let draw = |cfg: &SamplerConfig| {
            let mut s = Sampler::new(cfg.clone());
            (0..20_000)
                .map(|_| s.sample(&mut logits.clone(), &[], 0))
                .collect::<Vec<_>>()
        };
        let a = draw(&cfg);
        assert_eq!(a, draw(&cfg));
        let freq = |t: u32| a.iter().filter(|&&x| x == t).count() as f64 / a.len() as f64;
        assert!(
            (freq(0) - 0.5).abs() < 0.015 && (freq(2) - 0.2).abs() < 0.015,
            "{} {}",
            freq(0),
            freq(2)
        );
        assert_ne!(
            a,
            draw(&SamplerConfig {
                seed: Some(8),
                ..cfg
            })
        );
    }

    #[test]
    fn constrained_sampling_picks_only_allowed_tokens() {
        let logits = [5.0f32, 4.0, 3.0, 2.0, 1.0];
        let mut s = Sampler::new(SamplerConfig::greedy());
        assert_eq!(
            s.sample_allowed(&mut logits.clone(), &[], 0, &mut |t| t >= 2),
            Some(2)
        );
        assert_eq!(
            s.sample_allowed(&mut logits.clone(), &[], 0, &mut |_| false),
            None
        );
        // Sampling with a narrow top-k: when every candidate is refused, the best allowed
        // token of the whole vocabulary is taken.
        let mut s = Sampler::new(SamplerConfig {
            temperature: 1.0,
            top_k: 2,
            top_p: 1.0,
            min_p: 0.0,
            seed: Some(3),
            ..Default::default()
        });
        for _ in 0..50 {
            let t = s
                .sample_allowed(&mut logits.clone(), &[], 0, &mut |t| t != 0)
                .unwrap();
            assert_eq!(t, 1, "the only allowed token among the top 2");
            assert_eq!(
                s.sample_allowed(&mut logits.clone(), &[], 0, &mut |t| t == 4),
                Some(4)
            );
        }
    }

    #[test]
    fn bad_settings_are_refused_by_name() {
        assert!(
            SamplerConfig {
                top_p: 0.0,
                ..Default::default()
            }
            .validate()
            .unwrap_err()
            .contains("top_p")
        );
        assert!(
            SamplerConfig {
                temperature: -1.0,
                ..Default::default()
            }
            .validate()
            .unwrap_err()
            .contains("temperature")
        );
        assert!(
            SamplerConfig {
                temperature: f32::NAN,
                ..Default::default()
            }
            .validate()
            .is_err()
        );
    }
}
