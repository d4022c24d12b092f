//! `herd bench MODEL`: prompt processing (pp) and generation (tg) speed, as llama-bench
//! measures them: pp feeds N prompt tokens in one batch, tg decodes N tokens one at a time,
//! each after one warm-up run, from an empty context or, with `-d D`, after D tokens already
//! in the cache (llama-bench's `pp512 @ d2048`): attention then reads D more keys per token.

use std::time::Instant;

use anyhow::Result;
use herd_model::engine::{CacheType, Engine, KvCache, Logits, SeqInput};
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    /// A .gguf file, a Hugging Face model folder, or a pulled OWNER/REPO[:FILE].
    pub model: String,
    /// Prompt lengths to measure (0 to skip).
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_delimiter = ',',
        default_value = "512"
    )]
    pub n_prompt: Vec<usize>,
    /// Generated lengths to measure (0 to skip).
    #[arg(
        short = 'n',
        long = "n-gen",
        value_delimiter = ',',
        default_value = "128"
    )]
    pub n_gen: Vec<usize>,
    /// Tokens already in the cache when each test starts (llama-bench's `-d`).
    #[arg(
        short = 'd',
        long = "n-depth",
        value_delimiter = ',',
        default_value = "0"
    )]
    pub n_depth: Vec<usize>,
    /// Thread counts to measure [default: CPUs available to this process].
    #[arg(short, long, value_delimiter = ',')]
    pub threads: Vec<usize>,
    #[arg(long, default_value_t = CacheType::F16, help = super::CACHE_TYPE_HELP)]
    pub cache_type: CacheType,
    /// Repetitions of each test.
    #[arg(short, long, default_value_t = 3)]
    pub repetitions: usize,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Deterministic token ids spread over the vocabulary (llama-bench uses random ones).
fn tokens(n: usize, vocab: usize) -> Vec<u32> {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % vocab as u64) as u32
        })
        .collect()
}

/// Seconds to run `toks` on top of the first `depth` tokens of `cache`: in one batch (pp) or
/// one token at a time (tg). The cache's first `depth` tokens stay as they were, so the next
/// measurement starts from the same state.
fn time(
    e: &mut Engine,
    cache: &mut KvCache,
    depth: usize,
    toks: &[u32],
    batch: bool,
) -> Result<f64> {
    cache.truncate(depth);
    let steps: Vec<&[u32]> = if batch {
        vec![toks]
    } else {
        toks.chunks(1).collect()
    };
    let t0 = Instant::now();
    for tokens in steps {
        e.forward(&mut [SeqInput {
            tokens,
            cache,
            logits: Logits::Last,
        }])?;
    }
    Ok(t0.elapsed().as_secs_f64())
}

pub fn run(a: Args) -> Result<()> {
    let model = super::open_model(&a.model)?;
    let rss_open = super::resident_bytes();
    let threads = if a.threads.is_empty() {
        vec![super::default_threads()]
    } else {
        a.threads.clone()
    };
    let vocab = model.spec.vocab_size;
    let types: std::collections::BTreeSet<&str> = model
        .weights
        .tensors
        .values()
        .filter(|t| t.shape.len() == 2)
        .map(|t| t.dtype.name())
        .collect();
    let types = types.into_iter().collect::<Vec<_>>().join("+");
    let size = model.weights.total_bytes() as u64;
    let params: usize = model.weights.tensors.values().map(|t| t.elem_count()).sum();
    if !a.json {
        println!("| model | size | params | threads | test | t/s |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    }
    let name = format!("{} {}", model.spec.arch, types);
    // Measured while an engine is alive: it holds the matrices it regrouped at load.
    let mut rss_run: Option<u64> = None;
    for &th in &threads {
        let mut e = Engine::new(&model, th)?;
        e.set_cache_type(a.cache_type);
        let tests: Vec<(&str, usize)> = a
            .n_prompt
            .iter()
            .filter(|&&n| n > 0)
            .map(|&n| ("pp", n))
            .chain(a.n_gen.iter().filter(|&&n| n > 0).map(|&n| ("tg", n)))
            .collect();
        for &depth in &a.n_depth {
            // One cache per depth, its first `depth` tokens run once, untimed.
            let longest = tests.iter().map(|t| t.1).max().unwrap_or(0);
            let mut cache = e.new_cache(depth + longest);
            // In batches of 512 (llama-bench's default is 2048), so a deep cache does not size
            // the engine's buffers for all of it at once.
            for batch in tokens(depth, vocab).chunks(512) {
                let held = cache.len();
                time(&mut e, &mut cache, held, batch, true)?;
            }
            for &(kind, n) in &tests {
                let toks = tokens(n, vocab);
                let batch = kind == "pp";
                // Warm-up: maps the weights in, sizes the buffers.
                time(&mut e, &mut cache, depth, &toks, batch)?;
                let mut rates = Vec::with_capacity(a.repetitions);
                for _ in 0..a.repetitions.max(1) {
                    rates.push(n as f64 / time(&mut e, &mut cache, depth, &toks, batch)?);
                }
                let mean = rates.iter().sum::<f64>() / rates.len() as f64;
                let sd = (rates.iter().map(|r| (r - mean).powi(2)).sum::<f64>()
                    / rates.len().max(2).saturating_sub(1) as f64)
                    .sqrt();
                let test = if depth > 0 {
                    format!("{kind}{n} @ d{depth}")
                } else {
                    format!("{kind}{n}")
                };
                if a.json {
                    println!(
                        "{}",
                        json!({"model": model.path, "arch": model.spec.arch.name(), "types": types, "size": size,
                               "params": params, "threads": th, "test": test, "n_depth": depth,
                               "type_k": a.cache_type.name(), "type_v": a.cache_type.name(),
                               "kernels": herd_kernels::simd::kernels(),
                               "tokens_per_second": mean, "stddev": sd, "samples": rates})
                    );
                } else {
                    println!(
                        "| {name} | {} | {} | {th} | {test} | {mean:.2} ± {sd:.2} |",
                        super::human_bytes(size),
                        super::human_count(params)
                    );
                }
            }
        }
        rss_run = rss_run.max(super::resident_bytes());
    }
    if !a.json {
        println!("\nkernels: {}", herd_kernels::simd::kernels());
    }
    if !a.json
        && let (Some(open), Some(now)) = (rss_open, rss_run)
    {
        {
            println!(
                "\nresident memory: {} after opening (weights mapped, not read), {} after the runs (weights {})",
                super::human_bytes(open),
                super::human_bytes(now),
                super::human_bytes(size)
            );
        }
    }
    Ok(())
}
