//! `herd serve MODEL`: the OpenAI-compatible API and the web chat.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use herd_model::engine::CacheType;
use herd_model::template::ChatTemplate;
use herd_model::tokenizer::Tokenizer;
use herd_server::scheduler::{Scheduler, SchedulerConfig, TokenPieces};
use herd_server::{AppState, ServerOptions};

#[derive(clap::Args)]
pub struct Args {
    /// A .gguf file, a Hugging Face model folder, or a pulled OWNER/REPO[:FILE].
    pub model: String,
    /// Address to bind (only this machine by default).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Require `Authorization: Bearer KEY` on /v1 and /metrics.
    #[arg(long, env = "HERD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Allow browsers on this origin to call the API (repeatable; `*` for any). Off by default.
    #[arg(long)]
    pub cors: Vec<String>,
    /// Sequences decoded together (each keeps a KV cache of --ctx tokens).
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// Context per sequence [default: the model's, at most 4096].
    #[arg(short = 'c', long = "ctx")]
    pub ctx: Option<usize>,
    /// Requests waiting for a free sequence before new ones get 429 with Retry-After.
    #[arg(long, default_value_t = 64)]
    pub max_queue: usize,
    /// Largest request body, in MiB.
    #[arg(long, default_value_t = 8)]
    pub max_body_mb: usize,
    /// Prompt tokens processed per step while others decode: smaller keeps running streams
    /// smoother when new requests arrive.
    #[arg(long, default_value_t = 256)]
    pub prefill_chunk: usize,
    /// Chat template (built-in name, Jinja file or tokenizer_config.json) [default: the model's].
    #[arg(long)]
    pub template: Option<String>,
    /// The model's name in the API [default: the file or folder name].
    #[arg(long)]
    pub name: Option<String>,
    /// Apply this PEFT LoRA adapter (a folder with adapter_config.json and
    /// adapter_model.safetensors, e.g. from `herd tune`) at run time.
    #[arg(long, value_name = "DIR")]
    pub lora: Option<PathBuf>,
    /// Threads [default: CPUs available to this process].
    #[arg(short, long)]
    pub threads: Option<usize>,
    #[arg(long, default_value_t = CacheType::F16, help = super::CACHE_TYPE_HELP)]
    pub cache_type: CacheType,
    /// Seconds to let running requests finish after SIGTERM before cancelling them.
    #[arg(long, default_value_t = 30)]
    pub shutdown_timeout: u64,
}

pub fn run(a: Args) -> Result<()> {
    let path = super::model_path(&a.model)?;
    let model = herd_model::Model::open(&path)?;
    let tok = Arc::new(Tokenizer::for_model(&model)?);
    let template = match (&a.template, model.chat_template()) {
        (None, None) => None,
        (choice, own) => Some(ChatTemplate::resolve(choice.as_deref(), own.as_deref())?),
    };
    let threads = a.threads.unwrap_or_else(super::default_threads);
    let engine = super::engine(&model, threads, a.cache_type, a.lora.as_deref())?;
    let context = a.ctx.unwrap_or(model.spec.context_length.min(4096)).max(2);
    let name = a.name.clone().unwrap_or_else(|| {
        let stem = path
            .file_stem()
            .or(path.file_name())
            .map(|s| s.to_string_lossy().into_owned());
        if model.gguf().is_some() {
            stem.unwrap_or_else(|| "model".into())
        } else {
            path.file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into())
        }
    });
    let pieces = TokenPieces::new(&tok, model.spec.vocab_size);
    let sched = Scheduler::start(
        engine,
        tok.clone(),
        SchedulerConfig {
            slots: a.parallel.max(1),
            context,
            prefill_chunk: a.prefill_chunk.max(1),
        },
    );
    let state = Arc::new(AppState {
        sched,
        tok,
        pieces,
        template,
        opts: ServerOptions {
            model_name: name.clone(),
            api_key: a.api_key.clone(),
            cors: a.cors.clone(),
            max_body_bytes: a.max_body_mb.max(1) << 20,
            max_queue: a.max_queue,
            shutdown_timeout: Duration::from_secs(a.shutdown_timeout),
        },
        context,
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        cancels: Default::default(),
        responses: Default::default(),
        http_requests: Default::default(),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind((a.host.as_str(), a.port))
            .await
            .with_context(|| format!("binding {}:{}", a.host, a.port))?;
        let addr = listener.local_addr()?;
        // Each sequence's cache is allocated when it first runs; this is all of them.
        let cache_bytes = a.cache_type.bytes(&model.spec, context * a.parallel.max(1));
        eprintln!(
            "herd serve: {name} ({}, context {context} × {} sequences, {} KV cache up to {}, {threads} threads) on http://{addr}{}",
            model.spec.arch,
            a.parallel,
            a.cache_type,
            super::human_bytes(cache_bytes as u64),
            if a.api_key.is_some() { " (API key required)" } else { "" }
        );
        // Scripts wait for this line.
        println!("listening on http://{addr}");
        herd_server::serve(listener, state.clone()).await?;
        anyhow::Ok(())
    })?;
    eprintln!("herd serve: stopped");
    Ok(())
}
