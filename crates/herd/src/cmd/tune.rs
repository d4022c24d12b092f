//! `herd tune MODEL --data FILE …`: supervised fine-tuning (LoRA or full) on a CPU;
//! `herd tune --resume RUN`; `herd tune plot RUN`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use herd_data::{Encoder, Format, Sequence};
use herd_license::{Kind, Manifest, manifest::method};
use herd_model::template::ChatTemplate;
use herd_model::tokenizer::Tokenizer;
use herd_train::optim::{AdamWConfig, Schedule};
use herd_train::trainer::{StepReport, TrainConfig, train};
use herd_train::{LoraConfig, Method, TrainModel};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    pub sub: Option<Sub>,
    /// The base model: a .gguf file (its matrices stay in their type for LoRA), a Hugging Face
    /// folder, or a pulled name.
    #[arg(required_unless_present = "resume")]
    pub model: Option<String>,
    /// Training data (repeatable): Alpaca JSON/JSONL, ShareGPT, or OpenAI messages JSONL.
    #[arg(long = "data", required_unless_present = "resume")]
    pub data: Vec<PathBuf>,
    /// Data format [default: detected from the first record].
    #[arg(long)]
    pub format: Option<String>,
    /// Chat template for rendering the examples [default: the model's; a built-in name or file].
    #[arg(long)]
    pub template: Option<String>,
    /// Continue the run in this directory from its newest checkpoint.
    #[arg(long, conflicts_with_all = ["model", "data"])]
    pub resume: Option<PathBuf>,
    /// Train every weight instead of LoRA adapters.
    #[arg(long)]
    pub full: bool,
    /// LoRA rank.
    #[arg(long, default_value_t = 8)]
    pub rank: usize,
    /// LoRA alpha (the update is scaled by alpha / rank).
    #[arg(long, default_value_t = 16.0)]
    pub alpha: f64,
    /// LoRA dropout.
    #[arg(long, default_value_t = 0.05)]
    pub dropout: f32,
    /// Projections to adapt (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "q_proj,k_proj,v_proj,o_proj"
    )]
    pub targets: Vec<String>,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-4)]
    pub lr: f64,
    /// Learning-rate schedule after warm-up: constant, linear or cosine.
    #[arg(long, default_value = "cosine")]
    pub schedule: String,
    /// Warm-up steps (linear from 0).
    #[arg(long, default_value_t = 0)]
    pub warmup: usize,
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// Stop after this many optimizer steps (overrides --epochs).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Sequences per micro-batch.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    pub accum: usize,
    /// Clip gradients to this global norm (0: off).
    #[arg(long, default_value_t = 1.0)]
    pub clip: f64,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Longest example in tokens after templating; longer ones are reported and skipped.
    #[arg(long, default_value_t = 512)]
    pub max_len: usize,
    /// Pack several short examples into each sequence (attention stays within each).
    #[arg(long)]
    pub pack: bool,
    /// Fraction of examples held out for the evaluation loss.
    #[arg(long, default_value_t = 0.05)]
    pub val: f64,
    /// Use only the first N examples of the data.
    #[arg(long)]
    pub max_examples: Option<usize>,
    /// Held-out loss every N steps (0: at the start and the end only).
    #[arg(long, default_value_t = 0)]
    pub eval_every: usize,
    /// Checkpoint every N steps (and at the end).
    #[arg(long, default_value_t = 50)]
    pub save_every: usize,
    /// Gradient checkpointing (recompute activations layer by layer in the backward pass):
    /// on, off, or auto (on when a micro-batch's activations would take more than half of the
    /// memory available).
    #[arg(long, default_value = "auto", value_parser = ["auto", "on", "off"])]
    pub grad_checkpointing: String,
    /// Fail on the first bad row instead of reporting and skipping bad rows.
    #[arg(long)]
    pub strict: bool,
    /// Run directory [default: runs/<model>-<unix time>].
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Threads for the tensor maths [default: CPUs available to this process].
    #[arg(short, long)]
    pub threads: Option<usize>,
    /// No progress bar (steps are still logged to metrics.jsonl).
    #[arg(long)]
    pub quiet: bool,
}

#[derive(clap::Subcommand)]
pub enum Sub {
    /// Draw a run's loss curves (train and held-out) as SVG.
    Plot {
        /// The run directory.
        run: PathBuf,
        /// Output file [default: RUN/loss.svg].
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
}

/// Everything needed to rebuild a run, stored as `train.json` in its directory.
#[derive(Serialize, Deserialize)]
struct RunSpec {
    model: String,
    data: Vec<PathBuf>,
    format: Option<String>,
    template: Option<String>,
    max_len: usize,
    pack: bool,
    val: f64,
    max_examples: Option<usize>,
    strict: bool,
    train: TrainConfig,
}

pub fn run(a: Args) -> Result<()> {
    if let Some(Sub::Plot { run, out }) = a.sub {
        let out = out.unwrap_or_else(|| run.join("loss.svg"));
        super::plot::loss_svg(&run.join("metrics.jsonl"), &out)?;
        eprintln!("wrote {}", out.display());
        return Ok(());
    }
    if let Some(t) = a.threads {
        // candle's matrix products read this once, before their first use.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", t.to_string()) };
    }
    let (spec, dir, resume) = match &a.resume {
        Some(dir) => {
            let p = dir.join("train.json");
            let spec: RunSpec = serde_json::from_slice(
                &std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
            )
            .with_context(|| format!("{} is not a herd run description", p.display()))?;
            (spec, dir.clone(), true)
        }
        None => {
            let model = a
                .model
                .clone()
                .ok_or_else(|| anyhow!("MODEL is required"))?;
            let method = if a.full {
                Method::Full
            } else {
                Method::Lora(LoraConfig {
                    r: a.rank,
                    alpha: a.alpha,
                    dropout: a.dropout,
                    targets: a.targets.clone(),
                })
            };
            let schedule = Schedule::parse(&a.schedule)
                .ok_or_else(|| anyhow!("--schedule must be constant, linear or cosine"))?;
            if !(0.0..1.0).contains(&a.val) {
                bail!("--val must be in [0, 1)");
            }
            let train = TrainConfig {
                method,
                optimizer: AdamWConfig {
                    lr: a.lr,
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 1e-8,
                    weight_decay: a.weight_decay,
                },
                schedule,
                warmup_steps: a.warmup,
                epochs: a.epochs.max(1),
                max_steps: a.max_steps,
                batch_size: a.batch.max(1),
                grad_accum: a.accum.max(1),
                max_grad_norm: (a.clip > 0.0).then_some(a.clip),
                seed: a.seed,
                eval_every: a.eval_every,
                save_every: a.save_every,
                grad_checkpointing: a.grad_checkpointing == "on",
            };
            let dir = a.out.clone().unwrap_or_else(|| {
                let stem = Path::new(&model)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "model".into());
                let secs = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                PathBuf::from("runs").join(format!("{stem}-{secs}"))
            });
            if dir.join("latest").exists() {
                bail!(
                    "{} already holds a run: continue it with --resume {}, or choose another --out",
                    dir.display(),
                    dir.display()
                );
            }
            let spec = RunSpec {
                model,
                data: a.data.clone(),
                format: a.format.clone(),
                template: a.template.clone(),
                max_len: a.max_len,
                pack: a.pack,
                val: a.val,
                max_examples: a.max_examples,
                strict: a.strict,
                train,
            };
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            (spec, dir, false)
        }
    };

    let model_path = super::model_path(&spec.model)?;
    let model = herd_model::Model::open(&model_path)?;
    let tok = Tokenizer::for_model(&model)?;
    let template = ChatTemplate::resolve(spec.template.as_deref(), model.chat_template().as_deref())
        .context("the examples are rendered with a chat template: give --template NAME (e.g. alpaca, vicuna-v1.1, chatml) for a model without one")?;
    let (train_seqs, val_seqs, report) = prepare(&spec, &tok, &template)?;
    eprintln!("{report}");

    let mut spec = spec;
    if !resume {
        if a.grad_checkpointing == "auto" {
            let longest = train_seqs.iter().map(Sequence::len).max().unwrap_or(0);
            let (b, spec_m) = (spec.train.batch_size, &model.spec);
            // The native pass keeps far less than candle's autograd (no `[T, T]` scores).
            let need = match herd_train::native::unsupported_for(spec_m, &spec.train.method) {
                None => herd_train::native::activation_bytes(spec_m, b, longest, false),
                Some(_) => herd_train::recompute::activation_bytes(spec_m, b, longest),
            };
            if let Some(avail) = super::available_memory()
                && need > avail / 2
            {
                eprintln!(
                    "gradient checkpointing on: a micro-batch's activations (about {}) would take more than half of the {} available",
                    super::human_bytes(need),
                    super::human_bytes(avail)
                );
                spec.train.grad_checkpointing = true;
            }
        }
        // Written once the data is known to be usable, with the checkpointing decision in it,
        // so that a resumed run computes exactly as this one.
        herd_model::io::atomic_write(&dir.join("train.json"), &serde_json::to_vec_pretty(&spec)?)?;
    }
    let mut tm = TrainModel::new(&model, &spec.train.method, spec.train.seed)?;
    if !a.quiet {
        match herd_train::native::unsupported(&tm) {
            None => eprintln!("training on herd's native LoRA pass"),
            Some(why) => eprintln!("training on the reference pass (candle autograd): {why}"),
        }
    }
    let total = herd_train::trainer::total_steps(train_seqs.len(), &spec.train);
    let bar = if a.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut on_step = |r: &StepReport| {
        bar.set_position(r.step as u64);
        let eval = r
            .eval_loss
            .map_or(String::new(), |e| format!(" held-out {e:.4}"));
        bar.set_message(format!(
            "loss {:.4}{eval}  lr {:.2e}  {:.0} tok/s",
            r.loss, r.lr, r.tokens_per_second
        ));
    };
    let summary = train(
        &mut tm,
        &train_seqs,
        &val_seqs,
        &spec.train,
        &dir,
        resume,
        &mut on_step,
    )?;
    bar.finish();
    match summary.resumed_from {
        Some(s) => eprintln!("resumed from step {s}"),
        None if resume => eprintln!(
            "{} held no checkpoint yet: the run started again from step 0",
            dir.display()
        ),
        None => {}
    }
    eprintln!(
        "{} steps; held-out loss {} → {}",
        summary.steps,
        summary
            .first_eval_loss
            .map_or("-".into(), |v| format!("{v:.4}")),
        summary
            .final_eval_loss
            .map_or("-".into(), |v| format!("{v:.4}"))
    );
    let lineage = lineage(&spec, &model_path);
    match &spec.train.method {
        Method::Lora(_) => {
            let out = dir.join("adapter");
            herd_train::adapter::write(&tm, &out, &spec.model)?;
            lineage
                .clone()
                .with_path(&out)
                .write(out.join(herd_license::manifest::FILE_NAME))?;
            lineage.with_path(&out).write_card(&out)?;
            eprintln!(
                "adapter: {} (PEFT format; herd run MODEL --lora {} applies it)",
                out.display(),
                out.display()
            );
        }
        Method::Full => {
            let out = herd_train::merge::write_full(
                &tm,
                &model,
                &dir.join("model"),
                &lineage.to_gguf_metadata(),
            )?;
            lineage
                .with_path(&out)
                .write(dir.join("model").join(herd_license::manifest::FILE_NAME))?;
            eprintln!("model: {}", out.display());
        }
    }
    Ok(())
}

fn lineage(spec: &RunSpec, model_path: &Path) -> Manifest {
    let (kind, how) = match spec.train.method {
        Method::Lora(_) => (Kind::LoraAdapter, method::FINE_TUNE_LORA),
        Method::Full => (Kind::Model, method::FINE_TUNE_FULL),
    };
    let mut m = Manifest::new(kind, "fine-tune", how)
        .with_hyperparameters(serde_json::to_value(&spec.train).unwrap_or_default());
    match herd_license::detect(model_path) {
        Ok(base) => m = m.with_parent(base),
        Err(e) => eprintln!("herd: warning: the base model's licence facts could not be read: {e}"),
    }
    for d in &spec.data {
        match herd_license::detect(d) {
            Ok(data) => m = m.with_parent(data),
            Err(e) => eprintln!(
                "herd: warning: the licence facts of {} could not be read: {e}",
                d.display()
            ),
        }
    }
    m
}

/// Reads, validates, renders and splits the data; the report says what was skipped and why.
fn prepare(
    spec: &RunSpec,
    tok: &Tokenizer,
    template: &ChatTemplate,
) -> Result<(Vec<Sequence>, Vec<Sequence>, String)> {
    let format = spec
        .format
        .as_deref()
        .map(|f| {
            Format::parse(f).ok_or_else(|| anyhow!("--format must be alpaca, sharegpt or messages"))
        })
        .transpose()?;
    let enc = Encoder {
        tok,
        template,
        max_len: spec.max_len,
    };
    let mut examples = vec![];
    let mut skipped: Vec<String> = vec![];
    let mut rows_total = 0;
    for path in &spec.data {
        let d = herd_data::load(path, format, spec.strict)?;
        rows_total += d.rows.len() + d.skipped.len();
        skipped.extend(d.skipped.iter().map(|e| e.to_string()));
        for row in d.rows {
            if spec.max_examples.is_some_and(|m| examples.len() >= m) {
                break;
            }
            match enc.encode(&row) {
                Ok(e) => examples.push(e),
                Err(reason) => {
                    let msg = format!("{}: {reason}", row.location);
                    if spec.strict {
                        bail!("{msg}");
                    }
                    skipped.push(msg);
                }
            }
        }
    }
    if examples.is_empty() {
        bail!(
            "no usable examples ({} rows, {} skipped){}",
            rows_total,
            skipped.len(),
            skipped
                .first()
                .map(|s| format!("; first: {s}"))
                .unwrap_or_default()
        );
    }
    let (tr, va) = herd_data::split(examples.len(), spec.val, spec.train.seed);
    let pick = |idx: &[usize]| -> Vec<herd_data::Encoded> {
        idx.iter().map(|&i| examples[i].clone()).collect()
    };
    let (tr_ex, va_ex) = (pick(&tr), pick(&va));
    let to_seqs = |ex: &[herd_data::Encoded]| -> Vec<Sequence> {
        if spec.pack {
            herd_data::pack(ex, spec.max_len)
        } else {
            ex.iter().map(Sequence::single).collect()
        }
    };
    let (train_seqs, val_seqs) = (to_seqs(&tr_ex), to_seqs(&va_ex));
    let tokens: usize = examples.iter().map(|e| e.ids.len()).sum();
    let trained: usize = examples.iter().map(|e| e.trained_tokens()).sum();
    let mut report = format!(
        "data: {rows_total} rows, {} examples ({tokens} tokens, {trained} trained), {} skipped; {} training / {} held-out sequences{}",
        examples.len(),
        skipped.len(),
        train_seqs.len(),
        val_seqs.len(),
        if spec.pack { " (packed)" } else { "" }
    );
    for s in skipped.iter().take(5) {
        report.push_str(&format!("\n  skipped {s}"));
    }
    if skipped.len() > 5 {
        report.push_str(&format!(
            "\n  … and {} more (--strict stops at the first)",
            skipped.len() - 5
        ));
    }
    Ok((train_seqs, val_seqs, report))
}
