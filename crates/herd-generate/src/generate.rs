//! One prompt in, streamed text out: prefill, then sample, detokenize, check stops, repeat.
//!
//! A [`Session`] keeps the KV cache between calls, and a new prompt that starts with the
//! tokens already in the cache (the next turn of a chat) computes only what is new.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use herd_model::engine::{Engine, KvCache, Logits, SeqInput};
use herd_model::tokenizer::Tokenizer;

use crate::sampler::{Sampler, SamplerConfig};
use crate::stop::StopMatcher;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the prompt has {prompt} tokens and the context holds {context}: shorten it, raise the context (--ctx), or allow cutting its start (--truncate left)"
    )]
    PromptTooLong { prompt: usize, context: usize },
    #[error("{0}")]
    Model(#[from] herd_model::Error),
    #[error("sampler settings: {0}")]
    Sampler(String),
    #[error("writing output: {0}")]
    Output(std::io::Error),
}

/// What to do with a prompt longer than the context.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Truncation {
    /// Refuse it.
    #[default]
    Error,
    /// Drop tokens from its start (keeping a leading BOS), and say how many.
    Left,
}

#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// Stop after this many new tokens (`None`: when the context is full).
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    pub sampler: SamplerConfig,
    /// Keep going past end-of-sequence tokens.
    pub ignore_eos: bool,
    pub truncate: Truncation,
    /// Prompt tokens per forward call while prefilling.
    pub batch: usize,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: None,
            stop: vec![],
            sampler: SamplerConfig::default(),
            ignore_eos: false,
            truncate: Truncation::Error,
            batch: 512,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-sequence token.
    Eos,
    /// A stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The context is full.
    ContextFull,
    /// The caller cancelled (Ctrl-C, a client that went away).
    Cancelled,
}

impl FinishReason {
    /// OpenAI's name for it.
    pub fn openai(self) -> &'static str {
        match self {
            FinishReason::Eos | FinishReason::Stop => "stop",
            FinishReason::Length | FinishReason::ContextFull => "length",
            FinishReason::Cancelled => "cancelled",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Generated {
    pub text: String,
    pub tokens: Vec<u32>,
    pub finish: FinishReason,
    pub prompt_tokens: usize,
    /// Prompt tokens whose keys and values were already in the session's cache.
    pub reused_tokens: usize,
    /// Prompt tokens dropped by `Truncation::Left`.
    pub truncated_tokens: usize,
    pub seed: u64,
    pub prefill_time: Duration,
    pub decode_time: Duration,
}

/// A KV cache and the tokens it holds.
pub struct Session {
    pub cache: KvCache,
    pub tokens: Vec<u32>,
}

impl Session {
    pub fn new(engine: &Engine, context: usize) -> Self {
        Session {
            cache: engine.new_cache(context),
            tokens: Vec::new(),
        }
    }

    pub fn context(&self) -> usize {
        self.cache.capacity()
    }

    pub fn reset(&mut self) {
        self.cache.clear();
        self.tokens.clear();
    }

    /// Keeps only the first `n` tokens.
    fn truncate(&mut self, n: usize) {
        self.cache.truncate(n);
        self.tokens.truncate(n);
    }
}

/// Generates a continuation of `prompt`, calling `on_text` with each piece of text as soon
/// as it is final (never half a character, never part of a stop string).
pub fn generate(
    engine: &mut Engine,
    tok: &Tokenizer,
    session: &mut Session,
    prompt: &[u32],
    opts: &GenerateOptions,
    cancel: &AtomicBool,
    on_text: &mut dyn FnMut(&str) -> std::io::Result<()>,
) -> Result<Generated, Error> {
    opts.sampler.validate().map_err(Error::Sampler)?;
    let context = session.context();
    // One free slot at least, for the first generated token.
    let mut prompt: Vec<u32> = prompt.to_vec();
    let mut truncated = 0;
    if prompt.len() >= context {
        match opts.truncate {
            Truncation::Error => {
                return Err(Error::PromptTooLong {
                    prompt: prompt.len(),
                    context,
                });
            }
            Truncation::Left => {
                // Leave room for the answer: a quarter of the context, or max_tokens if smaller.
                let room = opts.max_tokens.unwrap_or(context / 4).clamp(1, context / 2);
                let keep = context - room;
                let bos = tok.bos.filter(|&b| prompt.first() == Some(&b));
                truncated = prompt.len() - keep;
                let tail: Vec<u32> =
                    prompt[prompt.len() - keep + bos.is_some() as usize..].to_vec();
                prompt = bos.into_iter().chain(tail).collect();
            }
        }
    }
    if prompt.is_empty() {
        return Err(Error::Model(herd_model::Error::Usage(
            "the prompt has no tokens".into(),
        )));
    }

    // Reuse the cached prefix; at least the last prompt token is recomputed for its logits.
    let common = session
        .tokens
        .iter()
        .zip(&prompt)
        .take_while(|(a, b)| a == b)
        .count()
        .min(prompt.len() - 1);
    session.truncate(common);
    let t0 = Instant::now();
    let mut logits = Vec::new();
    let rest = &prompt[common..];
    for (i, chunk) in rest.chunks(opts.batch.max(1)).enumerate() {
        let last = (i + 1) * opts.batch.max(1) >= rest.len();
        let out = engine.forward(&mut [SeqInput {
            tokens: chunk,
            cache: &mut session.cache,
            logits: if last { Logits::Last } else { Logits::None },
        }])?;
        session.tokens.extend_from_slice(chunk);
        if last {
            logits.extend_from_slice(out);
        }
        if cancel.load(Ordering::Relaxed) {
            break;
        }
    }
    let prefill_time = t0.elapsed();

    let mut eos: Vec<u32> = tok.eos.clone();
    for &e in &engine.spec().eos_token_ids {
        if !eos.contains(&e) {
            eos.push(e);
        }
    }
    let mut sampler = Sampler::new(opts.sampler.clone());
    let mut stop = StopMatcher::new(opts.stop.iter().cloned());
    // A few prompt ids give the first new token its context (its leading space).
    let mut decoder = tok
        .stream_decoder(true)
        .with_context(&prompt[prompt.len().saturating_sub(4)..])?;
    let mut text = String::new();
    let mut tokens = Vec::new();
    let t1 = Instant::now();
    let mut emit = |s: &str, text: &mut String| -> Result<(), Error> {
        if !s.is_empty() {
            text.push_str(s);
            on_text(s).map_err(Error::Output)?;
        }
        Ok(())
    };
    let finish = loop {
        if cancel.load(Ordering::Relaxed) {
            break FinishReason::Cancelled;
        }
        if logits.is_empty() {
            break FinishReason::Cancelled;
        }
        let next = sampler.sample(&mut logits, &session.tokens, tokens.len());
        if !opts.ignore_eos && eos.contains(&next) {
            break FinishReason::Eos;
        }
        tokens.push(next);
        let piece = decoder.step(next)?;
        let released = stop.push(&piece);
        emit(&released.text, &mut text)?;
        if released.stopped {
            break FinishReason::Stop;
        }
        if opts.max_tokens.is_some_and(|m| tokens.len() >= m) {
            break FinishReason::Length;
        }
        if session.tokens.len() >= context {
            break FinishReason::ContextFull;
        }
        let out = engine.forward(&mut [SeqInput {
            tokens: &[next],
            cache: &mut session.cache,
            logits: Logits::Last,
        }])?;
        // Reuse the buffer: no allocation per token for the logits.
        logits.clear();
        logits.extend_from_slice(out);
        session.tokens.push(next);
    };
    if finish != FinishReason::Stop {
        let tail = decoder.finish()?;
        let mut rest = stop.push(&tail).text;
        rest.push_str(&stop.finish());
        emit(&rest, &mut text)?;
    }
    Ok(Generated {
        text,
        tokens,
        finish,
        prompt_tokens: prompt.len(),
        reused_tokens: common,
        truncated_tokens: truncated,
        seed: sampler.seed,
        prefill_time,
        decode_time: t1.elapsed(),
    })
}
