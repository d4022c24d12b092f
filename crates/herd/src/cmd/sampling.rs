//! Flags shared by the commands that generate text (`run`, `chat`).

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use herd_generate::{GenerateOptions, SamplerConfig, Truncation};
use herd_model::Model;
use herd_model::engine::{CacheType, Engine};
use herd_model::tokenizer::Tokenizer;

#[derive(clap::Args, Clone, Debug)]
pub struct GenArgs {
    /// Maximum new tokens (-1: until end of sequence or a full context).
    #[arg(
        short = 'n',
        long = "max-tokens",
        default_value_t = 512,
        allow_negative_numbers = true
    )]
    pub max_tokens: i64,
    /// Sampling temperature; 0 is greedy.
    #[arg(long = "temp", default_value_t = 0.8)]
    pub temperature: f32,
    /// Keep the k most likely tokens (0: off).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Keep the most likely tokens up to this total probability (1: off).
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens below this fraction of the best one's probability (0: off).
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Penalty on tokens already present (1: off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Recent tokens the repeat penalty looks at (0: all).
    #[arg(long, default_value_t = 64)]
    pub repeat_last_n: usize,
    /// OpenAI-style presence penalty on generated tokens.
    #[arg(long, default_value_t = 0.0)]
    pub presence_penalty: f32,
    /// OpenAI-style frequency penalty on generated tokens.
    #[arg(long, default_value_t = 0.0)]
    pub frequency_penalty: f32,
    /// Bias added to a token's logit, as TOKEN_ID=BIAS (repeatable).
    #[arg(long = "logit-bias", value_name = "ID=BIAS")]
    pub logit_bias: Vec<String>,
    /// Seed of the sampler [default: from the clock; printed with -v].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop before this text (repeatable; also when split across tokens).
    #[arg(long = "stop")]
    pub stop: Vec<String>,
    /// Keep generating past end-of-sequence tokens.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Context length in tokens [default: the model's, at most 4096].
    #[arg(short = 'c', long = "ctx")]
    pub ctx: Option<usize>,
    /// A prompt longer than the context: error, or left (drop its start, keeping BOS).
    #[arg(long, default_value = "error", value_parser = ["error", "left"])]
    pub truncate: String,
    /// Threads [default: CPUs available to this process].
    #[arg(short, long)]
    pub threads: Option<usize>,
    #[arg(long, default_value_t = CacheType::F16, help = super::CACHE_TYPE_HELP)]
    pub cache_type: CacheType,
    /// Apply this PEFT LoRA adapter (a folder with adapter_config.json and
    /// adapter_model.safetensors, e.g. from `herd tune`) at run time.
    #[arg(long, value_name = "DIR")]
    pub lora: Option<PathBuf>,
    /// Print settings, the rendered prompt and speed to stderr.
    #[arg(short, long)]
    pub verbose: bool,
}

impl GenArgs {
    pub fn options(&self) -> Result<GenerateOptions> {
        let mut logit_bias = HashMap::new();
        for b in &self.logit_bias {
            let (id, bias) = b
                .split_once('=')
                .ok_or_else(|| anyhow!("--logit-bias '{b}' is not ID=BIAS"))?;
            let id: u32 = id
                .trim()
                .parse()
                .map_err(|_| anyhow!("--logit-bias '{b}': '{id}' is not a token id"))?;
            let bias: f32 = bias
                .trim()
                .parse()
                .map_err(|_| anyhow!("--logit-bias '{b}': '{bias}' is not a number"))?;
            logit_bias.insert(id, bias);
        }
        if self.max_tokens < -1 || self.max_tokens == 0 {
            bail!("--max-tokens must be positive, or -1 for no limit");
        }
        let sampler = SamplerConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repetition_penalty: self.repeat_penalty,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            penalty_last_n: self.repeat_last_n,
            logit_bias,
            seed: self.seed,
        };
        sampler.validate().map_err(|e| anyhow!(e))?;
        Ok(GenerateOptions {
            max_tokens: (self.max_tokens > 0).then_some(self.max_tokens as usize),
            stop: self.stop.clone(),
            sampler,
            ignore_eos: self.ignore_eos,
            truncate: if self.truncate == "left" {
                Truncation::Left
            } else {
                Truncation::Error
            },
            batch: 512,
        })
    }

    pub fn context(&self, model: &Model) -> usize {
        self.ctx
            .unwrap_or(model.spec.context_length.min(4096))
            .max(1)
    }

    pub fn threads(&self) -> usize {
        self.threads.unwrap_or_else(super::default_threads)
    }

    /// The model, its tokenizer and an engine, with the settings printed under -v.
    pub fn load(&self, model_arg: &str) -> Result<(Model, Tokenizer, Engine)> {
        let model = super::open_model(model_arg)?;
        let tok = Tokenizer::for_model(&model)?;
        let engine = super::engine(
            &model,
            self.threads(),
            self.cache_type,
            self.lora.as_deref(),
        )?;
        Ok((model, tok, engine))
    }

    pub fn print_settings(&self, model: &Model, opts: &GenerateOptions, extra: &[(&str, String)]) {
        if !self.verbose {
            return;
        }
        let s = &opts.sampler;
        eprintln!(
            "model      {} ({}, {} layers, context {})",
            model.path.display(),
            model.spec.arch,
            model.spec.n_layers,
            model.spec.context_length
        );
        eprintln!("threads    {}", self.threads());
        let ctx = self.context(model);
        let cache_bytes = self.cache_type.bytes(&model.spec, ctx);
        eprintln!(
            "context    {ctx} tokens (truncate: {}), KV cache {} ({})",
            self.truncate,
            self.cache_type,
            super::human_bytes(cache_bytes as u64)
        );
        eprintln!(
            "sampling   temp {} top_k {} top_p {} min_p {} repeat_penalty {} (last {}) presence {} frequency {} seed {}",
            s.temperature,
            s.top_k,
            s.top_p,
            s.min_p,
            s.repetition_penalty,
            s.penalty_last_n,
            s.presence_penalty,
            s.frequency_penalty,
            s.seed
                .map_or("from the clock".to_string(), |v| v.to_string())
        );
        eprintln!(
            "stopping   max_tokens {} stop {:?} ignore_eos {}",
            opts.max_tokens
                .map_or("none".to_string(), |m| m.to_string()),
            opts.stop,
            opts.ignore_eos
        );
        for (k, v) in extra {
            eprintln!("{k:10} {v}");
        }
    }
}

/// Prints speed figures under -v.
pub fn print_stats(verbose: bool, g: &herd_generate::Generated) {
    if !verbose {
        return;
    }
    let pp = (g.prompt_tokens - g.reused_tokens) as f64 / g.prefill_time.as_secs_f64().max(1e-9);
    let tg = g.tokens.len() as f64 / g.decode_time.as_secs_f64().max(1e-9);
    eprintln!(
        "\n[{} prompt tokens ({} reused, {} cut), {} generated, finish: {:?}, seed {}; prompt {pp:.1} t/s, generation {tg:.1} t/s]",
        g.prompt_tokens,
        g.reused_tokens,
        g.truncated_tokens,
        g.tokens.len(),
        g.finish,
        g.seed
    );
}

/// Generates into stdout, flushing each piece, and ends the line. `Ok(None)` when stdout was
/// closed by its reader (`herd run … | head`), which is not an error.
pub fn generate_to_stdout(
    engine: &mut herd_model::engine::Engine,
    tok: &Tokenizer,
    session: &mut herd_generate::Session,
    ids: &[u32],
    opts: &GenerateOptions,
    cancel: &std::sync::atomic::AtomicBool,
) -> Result<Option<herd_generate::Generated>, herd_generate::generate::Error> {
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let g = herd_generate::generate(engine, tok, session, ids, opts, cancel, &mut |s| {
        out.write_all(s.as_bytes())?;
        out.flush()
    });
    match g {
        Err(herd_generate::generate::Error::Output(e))
            if e.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
        Ok(g) => {
            let _ = writeln!(out);
            Ok(Some(g))
        }
    }
}
