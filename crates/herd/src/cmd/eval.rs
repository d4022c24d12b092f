//! `herd eval`: run evaluation tasks, import judgments made elsewhere, compute ratings, and
//! write reports, all through the results store of herd-eval.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use herd_eval::backend::{Backend, Endpoint, Local};
use herd_eval::ratings::{self, Method};
use herd_eval::runner::{self, RunOptions};
use herd_eval::store::Store;
use herd_eval::task::Task;
use herd_model::engine::CacheType;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub cmd: EvalCmd,
}

#[derive(clap::Subcommand)]
pub enum EvalCmd {
    /// Run a task file against a model or an endpoint (resumes a run given by --run-id).
    #[command(alias = "judge")]
    Run(Box<RunArgs>),
    /// Import judgments made elsewhere (Vicuna review files, MT-bench judgment files,
    /// AlpacaEval annotations) as runs.
    Import(ImportArgs),
    /// Elo and Bradley–Terry ratings with bootstrap intervals from the pairwise runs.
    Ratings(RatingsArgs),
    /// Write a self-contained HTML page and Markdown for some or all runs.
    Report(ReportArgs),
    /// List the runs in the store.
    List(ListArgs),
}

#[derive(clap::Args)]
pub struct DbArg {
    /// The results store (SQLite).
    #[arg(long, env = "HERD_EVAL_DB", default_value = "herd-eval.sqlite")]
    pub db: PathBuf,
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// A task file (TOML), e.g. tasks/mmlu.toml.
    pub task: PathBuf,
    /// A local model: .gguf, Hugging Face folder, or pulled OWNER/REPO[:FILE].
    #[arg(long, conflicts_with = "endpoint")]
    pub model: Option<String>,
    /// An OpenAI-compatible endpoint (http://host:port) instead of a local model.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// The model name sent to the endpoint (default: the first one its /v1/models lists).
    #[arg(long)]
    pub endpoint_model: Option<String>,
    /// Bearer token for the endpoint and the judge endpoint.
    #[arg(long, env = "HERD_EVAL_API_KEY")]
    pub api_key: Option<String>,
    /// Tokenize locally with this model's tokenizer and send token ids to the endpoint
    /// (log-likelihoods then split exactly as a local run splits them).
    #[arg(long)]
    pub tokenizer: Option<String>,
    /// Judge through an OpenAI-compatible endpoint.
    #[arg(long)]
    pub judge_endpoint: Option<String>,
    /// The judge's model name at the judge endpoint (default: the first one it lists).
    #[arg(long)]
    pub judge_name: Option<String>,
    /// Judge with a local model.
    #[arg(long, conflicts_with = "judge_endpoint")]
    pub judge_model: Option<String>,
    /// Hold the judge to a JSON schema (`{"verdict": "A"}`); needs a judge endpoint that
    /// supports `response_format` json_schema, such as herd serve.
    #[arg(long)]
    pub judge_json: bool,
    /// The model's answers as a FastChat answer file, instead of generating them.
    #[arg(long)]
    pub answers: Option<PathBuf>,
    /// Resolve the task's relative data paths against this folder instead of the task's.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Name of the run; an existing run of that name is resumed.
    #[arg(long)]
    pub run_id: Option<String>,
    /// Items per engine call (results do not depend on it).
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Only the first N items.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Few-shot examples (default: the task's).
    #[arg(long)]
    pub num_fewshot: Option<usize>,
    #[arg(long, default_value_t = 1234)]
    pub seed: u64,
    /// Add BOS before each context (lm-eval's add_bos_token; off by default, as lm-eval's).
    #[arg(long)]
    pub add_bos: bool,
    /// Threads of the local engine.
    #[arg(short, long)]
    pub threads: Option<usize>,
    /// Element type of the local engine's KV cache: f32 (log-likelihoods exactly as computed,
    /// as lm-eval's float32 runs find them) or f16 (half the memory; they move by a few 1e-4).
    #[arg(long, default_value_t = CacheType::F32)]
    pub cache_type: CacheType,
    /// Requests in flight to an endpoint at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Retries of a failed request (transport error, 408, 429, 5xx), with exponential backoff.
    #[arg(long, default_value_t = 5)]
    pub retries: usize,
    /// Seconds before a request is abandoned (and retried).
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Bootstrap resamples for intervals.
    #[arg(long, default_value_t = 1000)]
    pub rounds: usize,
    #[command(flatten)]
    pub db: DbArg,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct ImportArgs {
    /// Files or folders (searched recursively for .jsonl/.json files).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub db: DbArg,
}

#[derive(clap::Args)]
pub struct RatingsArgs {
    /// Runs to take battles from (default: every pairwise run).
    #[arg(long = "run")]
    pub runs: Vec<String>,
    /// Only runs of this task.
    #[arg(long)]
    pub task: Option<String>,
    #[arg(long, default_value_t = 1000)]
    pub rounds: usize,
    #[arg(long, default_value_t = 1234)]
    pub seed: u64,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub db: DbArg,
}

#[derive(clap::Args)]
pub struct ReportArgs {
    /// Runs to include (default: all).
    #[arg(long = "run")]
    pub runs: Vec<String>,
    /// Folder for report.html and report.md.
    #[arg(long, short)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 1000)]
    pub rounds: usize,
    #[arg(long, default_value_t = 1234)]
    pub seed: u64,
    #[command(flatten)]
    pub db: DbArg,
}

#[derive(clap::Args)]
pub struct ListArgs {
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub db: DbArg,
}

pub fn run(a: Args) -> Result<()> {
    match a.cmd {
        EvalCmd::Run(r) => run_task(*r),
        EvalCmd::Import(i) => import(i),
        EvalCmd::Ratings(r) => ratings_cmd(r),
        EvalCmd::Report(r) => report(r),
        EvalCmd::List(l) => list(l),
    }
}

fn endpoint(url: &str, model: Option<&str>, a: &RunArgs) -> Result<Endpoint> {
    let mut e = Endpoint::new(
        url,
        model.unwrap_or(""),
        a.api_key.clone(),
        a.concurrency,
        a.retries,
        Duration::from_secs(a.timeout),
    );
    if model.is_none() {
        e.model = e
            .served_model()
            .context("finding the endpoint's model name")?;
    }
    Ok(e)
}

/// The model `arg` run by this process's engine.
fn local(arg: &str, threads: usize, add_bos: bool, cache: CacheType) -> Result<Local> {
    let mut l = Local::open(&super::model_path(arg)?, threads, add_bos)?;
    l.engine.set_cache_type(cache);
    Ok(l)
}

fn run_task(a: RunArgs) -> Result<()> {
    let task = Task::load(&a.task, a.data_dir.as_deref())?;
    let threads = a.threads.unwrap_or_else(super::default_threads);
    let mut backend: Box<dyn Backend> = match (&a.model, &a.endpoint) {
        (Some(m), _) => Box::new(local(m, threads, a.add_bos, a.cache_type)?),
        (None, Some(url)) => {
            let mut e = endpoint(url, a.endpoint_model.as_deref(), &a)?;
            if let Some(t) = &a.tokenizer {
                let m = super::open_model(t)?;
                e.tokenizer = Some((herd_model::tokenizer::Tokenizer::for_model(&m)?, a.add_bos));
            }
            Box::new(e)
        }
        (None, None) if a.answers.is_some() => {
            Box::new(endpoint("http://unused", Some("answers"), &a)?)
        }
        (None, None) => bail!("give --model or --endpoint (or --answers for a judge task)"),
    };
    let mut judge: Option<Box<dyn Backend>> = match (&a.judge_endpoint, &a.judge_model) {
        (Some(url), _) => Some(Box::new(endpoint(url, a.judge_name.as_deref(), &a)?)),
        (None, Some(m)) => Some(Box::new(local(m, threads, false, a.cache_type)?)),
        _ => None,
    };
    let mut store = Store::open(&a.db.db)?;
    let opts = RunOptions {
        run_id: a.run_id.clone(),
        batch: a.batch,
        seed: a.seed,
        limit: a.limit,
        num_fewshot: a.num_fewshot,
        answers: a.answers.clone(),
        judge_json: a.judge_json,
        bootstrap_rounds: a.rounds,
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} items, {elapsed} (eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(task.file.name.clone());
    let (id, summary) = runner::run(
        &task,
        backend.as_mut(),
        judge.as_mut().map(|j| j.as_mut() as &mut dyn Backend),
        &mut store,
        &opts,
        &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    )?;
    bar.finish_and_clear();
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"run_id": id, "summary": summary}))?
        );
        return Ok(());
    }
    println!("run {id} ({} items) in {}", summary["n"], a.db.db.display());
    print_metrics(&summary["metrics"]);
    Ok(())
}

fn print_metrics(m: &serde_json::Value) {
    if let Some(o) = m.as_object() {
        for (k, v) in o {
            if let Some(x) = v.get("value").and_then(|x| x.as_f64()) {
                println!(
                    "  {k:<20} {x:.4}  95% CI [{:.4}, {:.4}]  n={}",
                    v["lo"].as_f64().unwrap_or(f64::NAN),
                    v["hi"].as_f64().unwrap_or(f64::NAN),
                    v["n"]
                );
            } else if v.is_number() {
                println!("  {k:<20} {v}");
            }
        }
    }
}

fn import(a: ImportArgs) -> Result<()> {
    let mut store = Store::open(&a.db.db)?;
    let mut out = herd_eval::import::Imported::default();
    let mut files = vec![];
    for p in &a.paths {
        collect(p, &mut files)?;
    }
    for f in &files {
        herd_eval::import::import_file(&mut store, f, None, &mut out)
            .with_context(|| format!("importing {}", f.display()))?;
    }
    println!(
        "imported {} judgments into {} runs ({} files) in {}",
        out.judgments,
        out.runs.len(),
        files.len(),
        a.db.db.display()
    );
    for r in &out.runs {
        if let Some(info) = store.run(r)? {
            let h = info
                .summary
                .as_ref()
                .map(|s| s["metrics"].clone())
                .unwrap_or_default();
            let rel = h["relative_score"]["value"].as_f64();
            let win = h["win_rate_adjusted"]["value"].as_f64();
            let score = h["score"]["value"].as_f64();
            println!(
                "  {r}: {}",
                match (rel, win, score) {
                    (Some(r), Some(w), _) =>
                        format!("relative score {r:.4}, adjusted win rate {w:.4}"),
                    (None, Some(w), _) => format!("adjusted win rate {w:.4}"),
                    (_, _, Some(s)) => format!("mean score {s:.3}"),
                    _ => "no scores".into(),
                }
            );
        }
    }
    if !out.unparsed.is_empty() {
        eprintln!("{} judgments without a readable score:", out.unparsed.len());
        for (p, l, why) in &out.unparsed {
            eprintln!("  {}:{l}: {why}", p.display());
        }
    }
    if !out.disagreements.is_empty() {
        eprintln!(
            "{} parsed scores differ from the score the file records:",
            out.disagreements.len()
        );
        for (p, l, why) in &out.disagreements {
            eprintln!("  {}:{l}: {why}", p.display());
        }
    }
    Ok(())
}

fn collect(p: &std::path::Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if p.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
            .with_context(|| format!("reading {}", p.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            if e.is_dir() || e.extension().is_some_and(|x| x == "jsonl" || x == "json") {
                collect(&e, out)?;
            }
        }
    } else {
        out.push(p.to_path_buf());
    }
    Ok(())
}

/// Battles from the chosen pairwise runs.
fn battles(store: &Store, runs: &[String], task: Option<&str>) -> Result<Vec<ratings::Battle>> {
    let mut all = vec![];
    for r in store.runs()? {
        let chosen = if runs.is_empty() {
            r.kind == "judge_pairwise"
        } else {
            runs.contains(&r.id)
        };
        if chosen && task.is_none_or(|t| t == r.task) {
            all.extend(runner::battles(&store.items(&r.id)?));
        }
    }
    Ok(all)
}

fn ratings_cmd(a: RatingsArgs) -> Result<()> {
    let store = Store::open(&a.db.db)?;
    let b = battles(&store, &a.runs, a.task.as_deref())?;
    if b.is_empty() {
        bail!(
            "no pairwise battles in {} (run or import pairwise judgments first)",
            a.db.db.display()
        );
    }
    let elo = ratings::with_intervals(&b, Method::Elo, a.rounds, a.seed);
    let bt = ratings::with_intervals(&b, Method::BradleyTerry, a.rounds, a.seed);
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"battles": b.len(), "elo": elo, "bradley_terry": bt})
            )?
        );
        return Ok(());
    }
    println!(
        "{} battles; 95% intervals from {} bootstrap rounds (seed {})",
        b.len(),
        a.rounds,
        a.seed
    );
    for (name, rs) in [("online Elo (K=4)", &elo), ("Bradley-Terry (MLE)", &bt)] {
        println!("\n{name}");
        for r in rs {
            println!(
                "  {:<40} {:>7.1}  [{:>7.1}, {:>7.1}]  {} battles",
                r.model, r.rating, r.lo, r.hi, r.battles
            );
        }
    }
    Ok(())
}

fn report(a: ReportArgs) -> Result<()> {
    let store = Store::open(&a.db.db)?;
    let runs: Vec<_> = store
        .runs()?
        .into_iter()
        .filter(|r| a.runs.is_empty() || a.runs.contains(&r.id))
        .collect();
    if runs.is_empty() {
        bail!("no runs to report in {}", a.db.db.display());
    }
    let ids: Vec<String> = runs
        .iter()
        .filter(|r| r.kind == "judge_pairwise")
        .map(|r| r.id.clone())
        .collect();
    let b = if ids.is_empty() {
        vec![]
    } else {
        battles(&store, &ids, None)?
    };
    let mut sets = vec![];
    if !b.is_empty() {
        sets.push((
            "online Elo".to_string(),
            ratings::with_intervals(&b, Method::Elo, a.rounds, a.seed),
        ));
        sets.push((
            "Bradley-Terry".to_string(),
            ratings::with_intervals(&b, Method::BradleyTerry, a.rounds, a.seed),
        ));
    }
    let (html, md) = herd_eval::report::render(&runs, &sets);
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let (h, m) = (a.out.join("report.html"), a.out.join("report.md"));
    std::fs::write(&h, html).with_context(|| format!("writing {}", h.display()))?;
    std::fs::write(&m, md).with_context(|| format!("writing {}", m.display()))?;
    println!(
        "wrote {} and {} ({} runs)",
        h.display(),
        m.display(),
        runs.len()
    );
    Ok(())
}

fn list(a: ListArgs) -> Result<()> {
    let store = Store::open(&a.db.db)?;
    let runs = store.runs()?;
    if a.json {
        let v: Vec<_> = runs
            .iter()
            .map(|r| json!({"id": r.id, "task": r.task, "model": r.model, "kind": r.kind, "created": r.created, "finished": r.finished, "summary": r.summary}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for r in &runs {
        let h = herd_eval::report::headline(r)
            .map(|(m, v, lo, hi)| format!("{m} {v:.4} [{lo:.4}, {hi:.4}]"))
            .unwrap_or_else(|| "unfinished".into());
        println!("{:<50} {:<20} {:<30} {h}", r.id, r.task, r.model);
    }
    Ok(())
}
