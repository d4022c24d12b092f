//! Multiple choice by log-likelihood, as lm-evaluation-harness scores it.
//!
//! The prompt is `description + (example + delimiter + target + fewshot_delimiter)* + question`,
//! each choice is the continuation `target_delimiter + choice`, and the score of a choice is
//! the sum of its tokens' log-probabilities given everything before. Tokens are split as
//! lm-eval's `_encode_pair` does: trailing spaces of the context move to the continuation, the
//! context and the whole text are encoded, and the continuation is what the whole adds beyond
//! the context's length. `acc` picks the highest log-likelihood, `acc_norm` the highest per
//! character of the choice (lm-eval's `len(choice)`).

use herd_model::engine::{Engine, Logits, SeqInput};
use herd_model::tokenizer::Tokenizer;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::judge::fill;
use crate::task::{Item, Targets, Task};

/// One item's context and the continuations to score.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LlRequest {
    pub context: String,
    pub continuations: Vec<String>,
}

/// The log-likelihood of one continuation.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct LlResult {
    pub logprob: f64,
    /// Every token of the continuation is the model's greedy pick.
    pub greedy: bool,
}

/// The question's text, without a target: the task template filled in.
pub fn doc_text(task: &Task, item: &Item) -> String {
    let p = &task.file.prompt;
    let choices: Vec<String> = item
        .choices
        .iter()
        .zip(&p.labels)
        .map(|(c, l)| format!("{l}. {c}"))
        .collect();
    let choices = choices.join("\n");
    let subject = item.category.replace('_', " ");
    let mut vars: Vec<(&str, &str)> = vec![
        ("question", &item.question),
        ("choices", &choices),
        ("subject", &subject),
        ("category", &item.category),
    ];
    for (k, v) in &item.fields {
        if let Some(s) = v.as_str() {
            vars.push((k.as_str(), s));
        }
    }
    fill(&p.template, &vars)
}

/// The strings the choices are scored as (without the delimiter).
pub fn targets(task: &Task, item: &Item) -> Vec<String> {
    match task.file.prompt.targets {
        Targets::Labels => task.file.prompt.labels
            [..item.choices.len().min(task.file.prompt.labels.len())]
            .to_vec(),
        Targets::Texts => item.choices.clone(),
    }
}

/// The full context for `item`, with `shots` as solved examples before it.
pub fn context(task: &Task, item: &Item, shots: &[&Item]) -> String {
    let p = &task.file.prompt;
    let subject = item.category.replace('_', " ");
    let mut s = fill(
        &p.description,
        &[("subject", &subject), ("category", &item.category)],
    );
    for shot in shots {
        let t = targets(task, shot);
        let gold = shot
            .gold
            .and_then(|g| t.get(g))
            .cloned()
            .unwrap_or_default();
        s.push_str(&doc_text(task, shot));
        s.push_str(&p.target_delimiter);
        s.push_str(&gold);
        s.push_str(&p.fewshot_delimiter);
    }
    s.push_str(&doc_text(task, item));
    s
}

/// The request for one item.
pub fn request(task: &Task, item: &Item, shots: &[&Item]) -> LlRequest {
    let d = &task.file.prompt.target_delimiter;
    LlRequest {
        context: context(task, item, shots),
        continuations: targets(task, item)
            .iter()
            .map(|t| format!("{d}{t}"))
            .collect(),
    }
}

/// Few-shot examples for `item`: the first `n` of the pool in its category (lm-eval's
/// `first_n` sampler), never the item itself (the same question and choices: keys can repeat
/// across files, as CMMLU's test and dev files share their names).
pub fn shots<'a>(pool: &'a [Item], item: &Item, n: usize) -> Vec<&'a Item> {
    pool.iter()
        .filter(|s| {
            s.category == item.category
                && !(s.question == item.question && s.choices == item.choices)
        })
        .take(n)
        .collect()
}

/// `acc` and `acc_norm` of one item from its choices' log-likelihoods.
pub fn predictions(lls: &[f64], targets: &[String]) -> (usize, usize) {
    let argmax = |xs: &mut dyn Iterator<Item = f64>| {
        xs.enumerate()
            .fold((0, f64::NEG_INFINITY), |(bi, bv), (i, v)| {
                if v > bv { (i, v) } else { (bi, bv) }
            })
            .0
    };
    let acc = argmax(&mut lls.iter().copied());
    let acc_norm = argmax(
        &mut lls
            .iter()
            .zip(targets)
            .map(|(l, t)| l / t.chars().count().max(1) as f64),
    );
    (acc, acc_norm)
}

/// Context and continuation token ids, split as lm-eval's `_encode_pair` splits them.
pub fn encode_pair(
    tok: &Tokenizer,
    add_bos: bool,
    context: &str,
    continuation: &str,
) -> Result<(Vec<u32>, Vec<u32>)> {
    let enc = |s: &str| -> Result<Vec<u32>> {
        let mut ids = tok.encode(s, false, false)?;
        if add_bos && let Some(b) = tok.bos {
            ids.insert(0, b);
        }
        Ok(ids)
    };
    if context.is_empty() {
        let prefix = tok.bos.or(tok.eos.first().copied()).ok_or_else(|| {
            Error::Usage("an empty context needs a BOS or EOS token to start from".into())
        })?;
        return Ok((vec![prefix], enc(continuation)?));
    }
    let trimmed = context.trim_end();
    let (ctx, cont) = (
        trimmed,
        format!("{}{continuation}", &context[trimmed.len()..]),
    );
    let whole = enc(&format!("{ctx}{cont}"))?;
    let ctx_ids = enc(ctx)?;
    let cont_ids = whole.get(ctx_ids.len()..).unwrap_or(&[]).to_vec();
    if cont_ids.is_empty() {
        return Err(Error::Usage(format!(
            "the continuation {continuation:?} has no tokens"
        )));
    }
    Ok((ctx_ids, cont_ids))
}

/// One item tokenized: what the engine is fed for each choice.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Encoded {
    pub context: Vec<u32>,
    pub continuations: Vec<Vec<u32>>,
}

impl Encoded {
    pub fn new(tok: &Tokenizer, add_bos: bool, r: &LlRequest) -> Result<Encoded> {
        let mut context = vec![];
        let mut continuations = vec![];
        for c in &r.continuations {
            let (ctx, cont) = encode_pair(tok, add_bos, &r.context, c)?;
            context = ctx;
            continuations.push(cont);
        }
        Ok(Encoded {
            context,
            continuations,
        })
    }
}

/// Log-softmax of `row` at `t`, and whether `t` is its argmax; in f64 so that sums over long
/// continuations do not drift.
fn logprob(row: &[f32], t: u32) -> (f64, bool) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = max
        + row
            .iter()
            .map(|&x| (x as f64 - max).exp())
            .sum::<f64>()
            .ln();
    let x = row[t as usize];
    let greedy = !row.iter().any(|&y| y > x);
    (x as f64 - lse, greedy)
}

/// Scores a batch of items in two engine calls: every item's shared prefix (its context, or
/// what all its choices have in common after truncation) as one sequence each, then every
/// choice's remaining tokens on a copy of its item's prefix cache. Each row of the engine is
/// computed independently, so results do not depend on how items are batched.
///
/// `max_len` is the model's context: longer inputs lose their start, as lm-eval's
/// `(context + continuation)[-(max_length + 1):][:-1]` does.
pub fn score_local(
    engine: &mut Engine,
    items: &[Encoded],
    max_len: usize,
) -> Result<Vec<Vec<LlResult>>> {
    let vocab = engine.spec().vocab_size;
    struct Plan {
        /// Per choice: tokens fed, offset of the first fed token in `context + cont`.
        fed: Vec<(Vec<u32>, usize)>,
        shared: usize,
    }
    let mut plans = vec![];
    for e in items {
        let mut fed = vec![];
        for cont in &e.continuations {
            if cont.len() > max_len {
                return Err(Error::Usage(format!(
                    "a continuation of {} tokens does not fit the context of {max_len}",
                    cont.len()
                )));
            }
            let whole: Vec<u32> = e.context.iter().chain(cont).copied().collect();
            let start = whole.len().saturating_sub(max_len + 1);
            fed.push((whole[start..whole.len() - 1].to_vec(), start));
        }
        // The shared prefix ends at or before the first position whose logits any choice needs.
        let mut shared = fed
            .iter()
            .map(|(f, s)| f.len().min(e.context.len() - s))
            .min()
            .unwrap_or(0);
        for (f, _) in &fed[1..] {
            shared = shared.min(f.iter().zip(&fed[0].0).take_while(|(a, b)| a == b).count());
        }
        plans.push(Plan { fed, shared });
    }

    // 1. Prefixes.
    let mut prefix_caches: Vec<_> = plans
        .iter()
        .map(|p| engine.new_cache(p.shared.max(1)))
        .collect();
    let mut prefix_rows: Vec<Option<Vec<f32>>> = vec![None; plans.len()];
    {
        let mut seqs = vec![];
        let mut which = vec![];
        for (i, (p, c)) in plans.iter().zip(prefix_caches.iter_mut()).enumerate() {
            if p.shared > 0 {
                seqs.push(SeqInput {
                    tokens: &p.fed[0].0[..p.shared],
                    cache: c,
                    logits: Logits::Last,
                });
                which.push(i);
            }
        }
        if !seqs.is_empty() {
            let out = engine.forward(&mut seqs)?;
            for (k, &i) in which.iter().enumerate() {
                prefix_rows[i] = Some(out[k * vocab..(k + 1) * vocab].to_vec());
            }
        }
    }

    // 2. Choices, each on a copy of its item's prefix.
    let mut caches = vec![];
    for (p, pc) in plans.iter().zip(&prefix_caches) {
        for (f, _) in &p.fed {
            let mut c = engine.new_cache(f.len().max(1));
            if p.shared > 0 {
                c.copy_prefix_from(pc, p.shared)?;
            }
            caches.push(c);
        }
    }
    let mut seqs = vec![];
    let mut owners = vec![];
    let mut cache_iter = caches.iter_mut();
    for (i, p) in plans.iter().enumerate() {
        for (j, (f, _)) in p.fed.iter().enumerate() {
            let Some(c) = cache_iter.next() else { break };
            if f.len() > p.shared {
                seqs.push(SeqInput {
                    tokens: &f[p.shared..],
                    cache: c,
                    logits: Logits::All,
                });
                owners.push((i, j, f.len() - p.shared));
            }
        }
    }
    let out: Vec<f32> = if seqs.is_empty() {
        vec![]
    } else {
        engine.forward(&mut seqs)?.to_vec()
    };
    let mut row_start = vec![vec![None; 0]; plans.len()];
    for (i, p) in plans.iter().enumerate() {
        row_start[i] = vec![None; p.fed.len()];
    }
    let mut off = 0;
    for &(i, j, n) in &owners {
        row_start[i][j] = Some(off);
        off += n;
    }

    let mut results = vec![];
    for (i, (p, e)) in plans.iter().zip(items).enumerate() {
        let mut item = vec![];
        for (j, ((_, start), cont)) in p.fed.iter().zip(&e.continuations).enumerate() {
            let (mut lp, mut greedy) = (0.0, true);
            for (k, &t) in cont.iter().enumerate() {
                // Position (in fed coordinates) whose logits predict this token.
                let q = e.context.len() + k - 1 - start;
                let row: &[f32] = if q + 1 == p.shared {
                    prefix_rows[i]
                        .as_deref()
                        .ok_or_else(|| Error::Usage("missing prefix logits".into()))?
                } else {
                    let r = row_start[i][j]
                        .ok_or_else(|| Error::Usage("missing choice logits".into()))?
                        + q
                        - p.shared;
                    &out[r * vocab..(r + 1) * vocab]
                };
                let (l, g) = logprob(row, t);
                lp += l;
                greedy &= g;
            }
            item.push(LlResult {
                logprob: lp,
                greedy,
            });
        }
        results.push(item);
    }
    Ok(results)
}
