//! The engine's own thread: continuous batching.
//!
//! Requests arrive as [`Job`]s over a channel. Every step the scheduler admits queued jobs
//! into free slots (each slot is a KV cache; an idle cache whose tokens share the longest
//! prefix with the new prompt is reused, so repeated system prompts are not recomputed),
//! gives each prefilling sequence a chunk of its prompt and each decoding sequence its last
//! token, runs them all through one batched forward pass, samples, and sends each piece of
//! text to its request as an [`Event`]. A request whose client went away is dropped before
//! the next step and its slot freed.

mod logprobs;
mod step;

pub use logprobs::TokenPieces;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Instant;

use herd_generate::json::Schema;
use herd_generate::{FinishReason, SamplerConfig};
use herd_model::engine::Engine;
use herd_model::tokenizer::Tokenizer;
use tokio::sync::mpsc::UnboundedSender;

/// What a request asks the engine for.
#[derive(Clone, Debug)]
pub struct JobParams {
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    pub sampler: SamplerConfig,
    pub ignore_eos: bool,
    /// Log-probabilities of each generated token with this many alternatives.
    pub logprobs: Option<usize>,
    /// Log-probabilities of the prompt's tokens (completions `echo`), with alternatives.
    pub prompt_logprobs: Option<usize>,
    /// Output must be JSON fitting this schema.
    pub json: Option<Schema>,
    /// Mean-pooled final hidden state instead of text.
    pub embed: bool,
}

pub struct Job {
    pub prompt: Vec<u32>,
    pub n: usize,
    pub params: JobParams,
    pub events: UnboundedSender<Event>,
    /// Set when the client goes away or the server shuts down.
    pub cancel: Arc<AtomicBool>,
    pub queued: Instant,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    pub id: u32,
    pub text: String,
    pub logprob: f32,
    /// The most likely tokens at this position: (id, text, logprob).
    pub top: Vec<(u32, String, f32)>,
}

#[derive(Clone, Debug)]
pub enum Event {
    /// Prompt tokens' log-probabilities (the first has none: nothing precedes it).
    Prompt(Vec<Option<TokenLogprob>>),
    /// Text of a choice; `id` is the token that produced it (`None` for text released at the
    /// end, held back until then).
    Token {
        choice: usize,
        text: String,
        id: Option<u32>,
        logprob: Option<TokenLogprob>,
    },
    Finished {
        choice: usize,
        finish: FinishReason,
        completion_tokens: usize,
    },
    Embedding(Vec<f32>),
    /// Every choice finished.
    Done {
        prompt_tokens: usize,
        cached_tokens: usize,
    },
    Error(String),
}

/// Counters for `/metrics`, shared with the HTTP side.
#[derive(Default)]
pub struct Stats {
    pub queued: AtomicUsize,
    pub running: AtomicUsize,
    pub requests: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    pub cached_prompt_tokens: AtomicU64,
    pub steps: AtomicU64,
    /// Sum of sequences per step (batch size = this / steps).
    pub batched_sequences: AtomicU64,
    pub first_token_micros: AtomicU64,
    pub first_tokens: AtomicU64,
    /// Generated tokens per second over the last step, ×1000.
    pub tokens_per_second_milli: AtomicU64,
    pub cancelled: AtomicU64,
}

#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Sequences decoded together (KV caches kept).
    pub slots: usize,
    /// Tokens per sequence.
    pub context: usize,
    /// Prompt tokens processed per step, across all prefilling sequences: bounds the time
    /// running streams wait while new requests join.
    pub prefill_chunk: usize,
}

/// The handle the HTTP side holds.
pub struct Scheduler {
    tx: mpsc::Sender<Job>,
    pub stats: Arc<Stats>,
    pub config: SchedulerConfig,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Scheduler {
    pub fn start(engine: Engine, tok: Arc<Tokenizer>, config: SchedulerConfig) -> Self {
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(Stats::default());
        let (st, cfg) = (stats.clone(), config.clone());
        let thread = std::thread::Builder::new()
            .name("herd-engine".into())
            .spawn(move || step::run(engine, &tok, cfg, rx, &st))
            .ok();
        Scheduler {
            tx,
            stats,
            config,
            thread,
        }
    }

    /// Queues a job; false if the engine thread is gone.
    pub fn submit(&self, job: Job) -> bool {
        self.stats.queued.fetch_add(1, Ordering::SeqCst);
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(job).is_err() {
            self.stats.queued.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Closes the queue and waits for the engine thread to finish what it runs.
    pub fn shutdown(mut self) {
        drop(self.tx);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
