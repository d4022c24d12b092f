//! The engine thread's loop: admitting jobs into slots, one batched forward pass per step,
//! sampling, and sending each choice's text as it comes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Instant;

use herd_generate::json::JsonConstraint;
use herd_generate::{FinishReason, Sampler, StopMatcher};
use herd_model::engine::{Engine, KvCache, Logits, SeqInput};
use herd_model::tokenizer::{StreamDecoder, Tokenizer};
use tokio::sync::mpsc::UnboundedSender;

use super::logprobs::{TokenPieces, token_logprob};
use super::{Event, Job, JobParams, SchedulerConfig, Stats, TokenLogprob};

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Prefill,
    /// Another choice of the same job is prefilling the shared prompt.
    AwaitPrefix,
    Decode,
}

/// What the choices of one job share.
struct Shared {
    params: JobParams,
    events: UnboundedSender<Event>,
    cancel: Arc<AtomicBool>,
    queued: Instant,
    prompt: Vec<u32>,
    n: usize,
    cached: usize,
    remaining: AtomicUsize,
    first_token_sent: AtomicBool,
    prompt_logprobs: std::sync::Mutex<Vec<Option<TokenLogprob>>>,
}

struct Seq<'t> {
    job: Arc<Shared>,
    choice: usize,
    cache: KvCache,
    /// Tokens in the cache.
    tokens: Vec<u32>,
    /// Tokens to feed next.
    pending: Vec<u32>,
    phase: Phase,
    generated: usize,
    sampler: Sampler,
    stop: StopMatcher,
    decoder: StreamDecoder<'t>,
    json: Option<JsonConstraint>,
    /// Tokens fed and logits rows asked for in the current step.
    fed: usize,
    rows: usize,
    done: bool,
}

pub(super) fn run(
    mut engine: Engine,
    tok: &Tokenizer,
    cfg: SchedulerConfig,
    rx: mpsc::Receiver<Job>,
    stats: &Stats,
) {
    let mut queue: VecDeque<Job> = VecDeque::new();
    let mut running: Vec<Seq<'_>> = Vec::new();
    // Idle caches with the tokens they still hold, for prefix reuse.
    let mut idle: Vec<(KvCache, Vec<u32>)> = Vec::new();
    let mut allocated = 0usize;
    let mut eos: Vec<u32> = tok.eos.clone();
    for &e in &engine.spec().eos_token_ids {
        if !eos.contains(&e) {
            eos.push(e);
        }
    }
    let pieces = TokenPieces::new(tok, engine.spec().vocab_size);
    let v = engine.spec().vocab_size;
    let mut closed = false;
    loop {
        // New jobs: wait only when there is nothing to do.
        if running.is_empty() && queue.is_empty() {
            if closed {
                break;
            }
            match rx.recv() {
                Ok(j) => queue.push_back(j),
                Err(_) => break,
            }
        }
        loop {
            match rx.try_recv() {
                Ok(j) => queue.push_back(j),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        // Drop what nobody waits for any more.
        queue.retain(|j| {
            let gone = j.cancel.load(Ordering::Relaxed) || j.events.is_closed();
            if gone {
                stats.queued.fetch_sub(1, Ordering::SeqCst);
                stats.cancelled.fetch_add(1, Ordering::Relaxed);
            }
            !gone
        });
        for s in running.iter_mut() {
            if !s.done && (s.job.cancel.load(Ordering::Relaxed) || s.job.events.is_closed()) {
                s.done = true;
                stats.cancelled.fetch_add(1, Ordering::Relaxed);
            }
        }
        retire(&mut running, &mut idle, stats);

        // Embedding jobs run on their own (hidden states cannot share a call with logits).
        while let Some(pos) = queue.iter().position(|j| j.params.embed) {
            let Some(job) = queue.remove(pos) else { break };
            stats.queued.fetch_sub(1, Ordering::SeqCst);
            embed(&mut engine, &mut idle, &mut allocated, &cfg, job);
        }

        // Admit queued jobs, in order, while slots are free.
        while let Some(job) = queue.front() {
            let free = idle.len() + cfg.slots.saturating_sub(allocated);
            if job.n > free {
                break;
            }
            let Some(job) = queue.pop_front() else { break };
            stats.queued.fetch_sub(1, Ordering::SeqCst);
            admit(
                job,
                &engine,
                tok,
                &mut idle,
                &mut allocated,
                &cfg,
                &mut running,
                stats,
            );
        }
        stats.running.store(running.len(), Ordering::Relaxed);
        if running.is_empty() {
            continue;
        }

        // One batched step: a prompt chunk for prefilling sequences (within the budget), the
        // last token for decoding ones.
        let mut budget = cfg.prefill_chunk.max(1);
        let t0 = Instant::now();
        let mut inputs: Vec<SeqInput<'_>> = Vec::with_capacity(running.len());
        for s in running.iter_mut() {
            s.fed = 0;
            s.rows = 0;
            let Seq {
                cache,
                pending,
                phase,
                job,
                fed,
                rows,
                ..
            } = s;
            let logits = match phase {
                Phase::AwaitPrefix => continue,
                Phase::Decode => {
                    *fed = pending.len();
                    *rows = 1;
                    Logits::Last
                }
                Phase::Prefill => {
                    if budget == 0 {
                        continue;
                    }
                    *fed = pending.len().min(budget);
                    budget -= *fed;
                    let last = *fed == pending.len();
                    if job.params.prompt_logprobs.is_some() {
                        *rows = *fed;
                        Logits::All
                    } else if last {
                        *rows = 1;
                        Logits::Last
                    } else {
                        Logits::None
                    }
                }
            };
            inputs.push(SeqInput {
                tokens: &pending[..*fed],
                cache,
                logits,
            });
        }
        let n_seqs = inputs.len();
        let result = engine.forward(&mut inputs).map(|l| l.to_vec());
        drop(inputs);
        stats.steps.fetch_add(1, Ordering::Relaxed);
        stats
            .batched_sequences
            .fetch_add(n_seqs as u64, Ordering::Relaxed);
        let logits = match result {
            Ok(l) => l,
            Err(e) => {
                for s in running.iter_mut() {
                    let _ = s.job.events.send(Event::Error(e.to_string()));
                    s.done = true;
                }
                retire(&mut running, &mut idle, stats);
                continue;
            }
        };
        let mut offset = 0;
        let mut generated_now = 0u64;
        // (job, index of the choice that prefilled, its last logits row)
        let mut prefix_ready: Vec<(usize, Vec<f32>)> = vec![];
        for (si, s) in running.iter_mut().enumerate() {
            if s.fed == 0 {
                continue;
            }
            let my = &logits[offset * v..(offset + s.rows) * v];
            offset += s.rows;
            let fed_tokens: Vec<u32> = s.pending.drain(..s.fed).collect();
            let start = s.tokens.len();
            s.tokens.extend_from_slice(&fed_tokens);
            if s.phase == Phase::Prefill {
                if let Some(k) = s.job.params.prompt_logprobs {
                    // Row i predicts the prompt token after fed_tokens[i].
                    let mut lp = s
                        .job
                        .prompt_logprobs
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    if start == 0 {
                        lp.push(None);
                    }
                    for i in 0..fed_tokens.len() {
                        if let Some(&next) = s.job.prompt.get(start + i + 1) {
                            lp.push(Some(token_logprob(
                                &my[i * v..(i + 1) * v],
                                next,
                                k,
                                &pieces,
                            )));
                        }
                    }
                }
                if !s.pending.is_empty() {
                    continue;
                }
                s.phase = Phase::Decode;
                if s.job.params.prompt_logprobs.is_some() {
                    let lp = std::mem::take(
                        &mut *s
                            .job
                            .prompt_logprobs
                            .lock()
                            .unwrap_or_else(|e| e.into_inner()),
                    );
                    let _ = s.job.events.send(Event::Prompt(lp));
                }
                if s.job.n > 1 {
                    prefix_ready.push((si, my[(s.rows - 1) * v..s.rows * v].to_vec()));
                }
                if s.job.params.max_tokens == Some(0) {
                    finish(s, FinishReason::Length, stats);
                    continue;
                }
            }
            let mut row = my[(s.rows - 1) * v..s.rows * v].to_vec();
            generated_now += step_sample(s, &mut row, &eos, &pieces, stats);
        }
        // Choices waiting for the prompt another choice just finished: copy its cache and
        // sample from the same logits.
        for (src, row) in prefix_ready {
            for di in 0..running.len() {
                if di == src
                    || !Arc::ptr_eq(&running[di].job, &running[src].job)
                    || running[di].phase != Phase::AwaitPrefix
                {
                    continue;
                }
                let (a, b) = if src < di {
                    let (l, r) = running.split_at_mut(di);
                    (&l[src], &mut r[0])
                } else {
                    let (l, r) = running.split_at_mut(src);
                    (&r[0], &mut l[di])
                };
                let n_prompt = a.job.prompt.len();
                if b.cache.copy_prefix_from(&a.cache, n_prompt).is_err() {
                    b.done = true;
                    continue;
                }
                b.tokens = a.tokens[..n_prompt].to_vec();
                b.pending.clear();
                b.phase = Phase::Decode;
                if b.job.params.max_tokens == Some(0) {
                    finish(b, FinishReason::Length, stats);
                    continue;
                }
                generated_now += step_sample(b, &mut row.clone(), &eos, &pieces, stats);
            }
        }
        let secs = t0.elapsed().as_secs_f64().max(1e-9);
        stats.tokens_per_second_milli.store(
            (generated_now as f64 / secs * 1000.0) as u64,
            Ordering::Relaxed,
        );
        retire(&mut running, &mut idle, stats);
    }
    stats.running.store(0, Ordering::Relaxed);
}

/// A cache for a new sequence: the idle one sharing the longest prefix with `prompt` (its
/// tokens kept up to there), else a fresh one.
fn take_cache(
    engine: &Engine,
    idle: &mut Vec<(KvCache, Vec<u32>)>,
    allocated: &mut usize,
    cfg: &SchedulerConfig,
    prompt: &[u32],
) -> Option<(KvCache, Vec<u32>)> {
    let common = |t: &[u32]| t.iter().zip(prompt).take_while(|(a, b)| a == b).count();
    let best = idle
        .iter()
        .enumerate()
        .map(|(i, (_, t))| (i, common(t)))
        .max_by_key(|&(_, c)| c);
    match best {
        Some((i, c)) if c > 0 || *allocated >= cfg.slots => {
            let (mut cache, mut tokens) = idle.swap_remove(i);
            // Keep one prompt token to compute: its logits start the answer.
            let keep = c.min(prompt.len().saturating_sub(1));
            cache.truncate(keep);
            tokens.truncate(keep);
            Some((cache, tokens))
        }
        _ if *allocated < cfg.slots => {
            *allocated += 1;
            Some((engine.new_cache(cfg.context), Vec::new()))
        }
        _ => None,
    }
}

#[allow(clippy::too_many_arguments)]
fn admit<'t>(
    job: Job,
    engine: &Engine,
    tok: &'t Tokenizer,
    idle: &mut Vec<(KvCache, Vec<u32>)>,
    allocated: &mut usize,
    cfg: &SchedulerConfig,
    running: &mut Vec<Seq<'t>>,
    stats: &Stats,
) {
    let prompt_len = job.prompt.len();
    stats
        .prompt_tokens
        .fetch_add(prompt_len as u64, Ordering::Relaxed);
    let mut caches = Vec::with_capacity(job.n);
    for _ in 0..job.n {
        match take_cache(engine, idle, allocated, cfg, &job.prompt) {
            Some(c) => caches.push(c),
            None => break,
        }
    }
    let cached = caches.first().map_or(0, |(_, t)| t.len());
    // Prompt log-probabilities need logits for every prompt position: recompute it all.
    let cached = if job.params.prompt_logprobs.is_some() {
        0
    } else {
        cached
    };
    stats
        .cached_prompt_tokens
        .fetch_add(cached as u64, Ordering::Relaxed);
    let shared = Arc::new(Shared {
        params: job.params.clone(),
        events: job.events,
        cancel: job.cancel,
        queued: job.queued,
        prompt: job.prompt.clone(),
        n: job.n,
        cached,
        remaining: AtomicUsize::new(job.n),
        first_token_sent: AtomicBool::new(false),
        prompt_logprobs: std::sync::Mutex::new(Vec::new()),
    });
    let context = job.prompt[prompt_len.saturating_sub(4)..].to_vec();
    for (choice, (mut cache, mut tokens)) in caches.into_iter().enumerate() {
        if choice == 0 && cached < tokens.len() {
            cache.truncate(cached);
            tokens.truncate(cached);
        }
        let decoder = match tok.stream_decoder(true).with_context(&context) {
            Ok(d) => d,
            Err(e) => {
                let _ = shared.events.send(Event::Error(e.to_string()));
                idle.push((cache, tokens));
                continue;
            }
        };
        let mut sampler_cfg = job.params.sampler.clone();
        // Each choice draws its own stream from the request's seed.
        sampler_cfg.seed = sampler_cfg.seed.map(|s| s.wrapping_add(choice as u64));
        let phase = if choice == 0 {
            Phase::Prefill
        } else {
            Phase::AwaitPrefix
        };
        let pending = if choice == 0 {
            job.prompt[tokens.len()..].to_vec()
        } else {
            Vec::new()
        };
        running.push(Seq {
            job: shared.clone(),
            choice,
            cache,
            tokens,
            pending,
            phase,
            generated: 0,
            sampler: Sampler::new(sampler_cfg),
            stop: StopMatcher::new(job.params.stop.iter().cloned()),
            decoder,
            json: job.params.json.clone().map(JsonConstraint::new),
            fed: 0,
            rows: 0,
            done: false,
        });
    }
}

/// Samples the next token of `s` from `logits`, sends its text and decides whether `s`
/// continues. Returns 1 if a token was generated.
fn step_sample(
    s: &mut Seq<'_>,
    logits: &mut [f32],
    eos: &[u32],
    pieces: &TokenPieces,
    stats: &Stats,
) -> u64 {
    let p = &s.job.params;
    let lp_source = p.logprobs.map(|_| logits.to_vec());
    let next = match &s.json {
        Some(j) if j.is_complete() => {
            finish(s, FinishReason::Stop, stats);
            return 0;
        }
        Some(j) => {
            // Close the value in time: when the budget left is no more than the characters
            // its shortest completion needs, write that completion instead of sampling.
            let left = p
                .max_tokens
                .map_or(usize::MAX, |m| m.saturating_sub(s.generated))
                .min(s.cache.capacity().saturating_sub(s.tokens.len() + 1));
            let completion = j.completion();
            let needed = completion.chars().count();
            if left <= needed + 1 {
                pieces.longest_prefix_token(&completion, j)
            } else {
                // Near the end of the budget a token may not open more than the tokens left
                // can close (a new key with its value, a nested object): forced closing takes
                // at most one token per character of the completion.
                let near_end = left <= needed + 64;
                let j = j.clone();
                s.sampler
                    .sample_allowed(logits, &s.tokens, s.generated, &mut |id| {
                        pieces.get(id).is_some_and(|t| {
                            j.accepts(t)
                                && (!near_end || {
                                    let mut after = j.clone();
                                    after.feed(t);
                                    after.completion().chars().count() + 2 <= left
                                })
                        })
                    })
            }
        }
        None => Some(s.sampler.sample(logits, &s.tokens, s.generated)),
    };
    let Some(next) = next else {
        let _ = s
            .job
            .events
            .send(Event::Error("no token can continue the JSON output".into()));
        finish(s, FinishReason::Stop, stats);
        return 0;
    };
    if !p.ignore_eos && s.json.is_none() && eos.contains(&next) {
        finish(s, FinishReason::Eos, stats);
        return 0;
    }
    if let (Some(j), Some(t)) = (s.json.as_mut(), pieces.get(next)) {
        j.feed(t);
    }
    s.generated += 1;
    stats.generated_tokens.fetch_add(1, Ordering::Relaxed);
    if !s.job.first_token_sent.swap(true, Ordering::Relaxed) {
        stats
            .first_token_micros
            .fetch_add(s.job.queued.elapsed().as_micros() as u64, Ordering::Relaxed);
        stats.first_tokens.fetch_add(1, Ordering::Relaxed);
    }
    let logprob = match (p.logprobs, lp_source) {
        (Some(k), Some(src)) => Some(token_logprob(&src, next, k, pieces)),
        _ => None,
    };
    let piece = s.decoder.step(next).unwrap_or_default();
    let released = s.stop.push(&piece);
    let _ = s.job.events.send(Event::Token {
        choice: s.choice,
        text: released.text,
        id: Some(next),
        logprob,
    });
    if released.stopped || s.json.as_ref().is_some_and(JsonConstraint::is_complete) {
        finish(s, FinishReason::Stop, stats);
    } else if p.max_tokens.is_some_and(|m| s.generated >= m) {
        finish(s, FinishReason::Length, stats);
    } else if s.tokens.len() + 1 >= s.cache.capacity() {
        finish(s, FinishReason::ContextFull, stats);
    } else {
        s.pending.clear();
        s.pending.push(next);
    }
    1
}

/// Ends a choice: the text still held back, then `Finished`, then `Done` after the last.
fn finish(s: &mut Seq<'_>, reason: FinishReason, _stats: &Stats) {
    if s.done {
        return;
    }
    s.done = true;
    if reason != FinishReason::Stop || s.json.is_some() {
        let tail = s.decoder.flush().unwrap_or_default();
        let tail = s.stop.push(&tail).text + &s.stop.finish();
        if !tail.is_empty() {
            let _ = s.job.events.send(Event::Token {
                choice: s.choice,
                text: tail,
                id: None,
                logprob: None,
            });
        }
    }
    let _ = s.job.events.send(Event::Finished {
        choice: s.choice,
        finish: reason,
        completion_tokens: s.generated,
    });
    if s.job.remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
        let _ = s.job.events.send(Event::Done {
            prompt_tokens: s.job.prompt.len(),
            cached_tokens: s.job.cached,
        });
    }
}

/// Removes finished sequences; their caches go back to the idle pool with their tokens, for
/// the next request with the same prefix.
fn retire(running: &mut Vec<Seq<'_>>, idle: &mut Vec<(KvCache, Vec<u32>)>, stats: &Stats) {
    let mut i = 0;
    while i < running.len() {
        if running[i].done {
            let s = running.swap_remove(i);
            // A sequence dropped without finishing (cancelled) still ends its job's stream.
            if s.job.remaining.load(Ordering::SeqCst) > 0
                && !s.job.events.is_closed()
                && s.job.cancel.load(Ordering::Relaxed)
            {
                let _ = s.job.events.send(Event::Finished {
                    choice: s.choice,
                    finish: FinishReason::Cancelled,
                    completion_tokens: s.generated,
                });
            }
            idle.push((s.cache, s.tokens));
        } else {
            i += 1;
        }
    }
    stats.running.store(running.len(), Ordering::Relaxed);
}

/// Mean of the final hidden states over the prompt (one slot, alone).
fn embed(
    engine: &mut Engine,
    idle: &mut Vec<(KvCache, Vec<u32>)>,
    allocated: &mut usize,
    cfg: &SchedulerConfig,
    job: Job,
) {
    let Some((mut cache, _)) = take_cache(engine, idle, allocated, cfg, &[]) else {
        let _ = job
            .events
            .send(Event::Error("no free slot for the embedding".into()));
        return;
    };
    cache.clear();
    let h = engine.spec().hidden_size;
    let mut sum = vec![0f64; h];
    let mut result = Ok(());
    for chunk in job.prompt.chunks(cfg.prefill_chunk.max(1)) {
        match engine.forward(&mut [SeqInput {
            tokens: chunk,
            cache: &mut cache,
            logits: Logits::Hidden,
        }]) {
            Ok(rows) => {
                for row in rows.chunks_exact(h) {
                    for (s, &x) in sum.iter_mut().zip(row) {
                        *s += x as f64;
                    }
                }
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    cache.clear();
    idle.push((cache, Vec::new()));
    match result {
        Ok(()) => {
            let n = job.prompt.len().max(1) as f64;
            let _ = job.events.send(Event::Embedding(
                sum.iter().map(|s| (s / n) as f32).collect(),
            ));
            let _ = job.events.send(Event::Done {
                prompt_tokens: job.prompt.len(),
                cached_tokens: 0,
            });
        }
        Err(e) => {
            let _ = job.events.send(Event::Error(e.to_string()));
        }
    }
}
