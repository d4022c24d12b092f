//! `herd data inspect FILE`: what a dataset holds before training on it.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use herd_data::{Encoder, Format};
use herd_model::template::ChatTemplate;
use herd_model::tokenizer::Tokenizer;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub sub: Sub,
}

#[derive(clap::Subcommand)]
pub enum Sub {
    /// Counts, lengths, tokens, a rendered example, skipped rows and the licence of a dataset.
    Inspect {
        file: PathBuf,
        /// alpaca, sharegpt or messages [default: detected].
        #[arg(long)]
        format: Option<String>,
        /// Count tokens and render with this model's tokenizer and chat template.
        #[arg(long)]
        model: Option<String>,
        /// Chat template (built-in name or file) [default: the model's].
        #[arg(long)]
        template: Option<String>,
        /// Example length limit in tokens (longer ones are reported).
        #[arg(long, default_value_t = 512)]
        max_len: usize,
    },
}

/// A text histogram of `values` in `bins` buckets.
fn histogram(values: &[usize], bins: usize, unit: &str) -> String {
    let (lo, hi) = (
        values.iter().min().copied().unwrap_or(0),
        values.iter().max().copied().unwrap_or(0),
    );
    // No more buckets than distinct lengths could fill.
    let bins = bins.clamp(1, hi - lo + 1);
    let width = (hi - lo + 1).div_ceil(bins).max(1);
    let mut counts = vec![0usize; bins];
    for &v in values {
        counts[((v - lo) / width).min(bins - 1)] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(1).max(1);
    counts
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let from = lo + i * width;
            format!(
                "  {:>6}–{:<6} {unit} {:>6} {}\n",
                from,
                from + width - 1,
                c,
                "█".repeat((c * 40).div_ceil(top))
            )
        })
        .collect()
}

pub fn run(a: Args) -> Result<()> {
    let Sub::Inspect {
        file,
        format,
        model,
        template,
        max_len,
    } = a.sub;
    let format = format
        .as_deref()
        .map(|f| {
            Format::parse(f).ok_or_else(|| anyhow!("--format must be alpaca, sharegpt or messages"))
        })
        .transpose()?;
    let d = herd_data::load(&file, format, false)?;
    println!("file        {}", file.display());
    println!("format      {}", d.format.name());
    println!(
        "rows        {} usable, {} skipped",
        d.rows.len(),
        d.skipped.len()
    );
    let turns: usize = d
        .rows
        .iter()
        .map(|r| r.messages.iter().filter(|m| m.role == "assistant").count())
        .sum();
    println!("answers     {turns} assistant turns");
    for s in d.skipped.iter().take(10) {
        println!("  skipped   {s}");
    }
    if d.skipped.len() > 10 {
        println!("  … and {} more", d.skipped.len() - 10);
    }
    match model {
        Some(m) => {
            let model = super::open_model(&m)?;
            let tok = Tokenizer::for_model(&model)?;
            let tpl = ChatTemplate::resolve(template.as_deref(), model.chat_template().as_deref())?;
            let enc = Encoder {
                tok: &tok,
                template: &tpl,
                max_len,
            };
            let mut lens = vec![];
            let (mut total, mut trained, mut too_long, mut other) =
                (0usize, 0usize, 0usize, vec![]);
            for r in &d.rows {
                match enc.encode(r) {
                    Ok(e) => {
                        lens.push(e.ids.len());
                        total += e.ids.len();
                        trained += e.trained_tokens();
                    }
                    Err(reason) if reason.contains("maximum length") => too_long += 1,
                    Err(reason) => other.push(format!("{}: {reason}", r.location)),
                }
            }
            println!(
                "tokens      {total} in all, {trained} trained (assistant turns), with {}'s tokenizer",
                model.spec.arch
            );
            println!("too long    {too_long} examples over {max_len} tokens");
            for o in other.iter().take(5) {
                println!("  unusable  {o}");
            }
            if !lens.is_empty() {
                print!(
                    "lengths (tokens, template {}):\n{}",
                    tpl.name(),
                    histogram(&lens, 8, "tok")
                );
            }
            if let Some(r) = d.rows.first() {
                let e = enc.encode(r).map_err(|e| anyhow!(e))?;
                println!("example ({}), trained tokens in [brackets]:", r.location);
                let mut out = String::new();
                let mut i = 0;
                while i < e.ids.len() {
                    let t = e.train[i];
                    let j = (i..e.ids.len())
                        .find(|&j| e.train[j] != t)
                        .unwrap_or(e.ids.len());
                    let text = tok.decode(&e.ids[i..j], false)?;
                    out.push_str(&if t { format!("[{text}]") } else { text });
                    i = j;
                }
                println!("{out}");
            }
        }
        None => {
            let lens: Vec<usize> = d
                .rows
                .iter()
                .map(|r| r.messages.iter().map(|m| m.content.chars().count()).sum())
                .collect();
            if !lens.is_empty() {
                print!(
                    "lengths (characters; give --model for tokens):\n{}",
                    histogram(&lens, 8, "chr")
                );
            }
            if let Some(r) = d.rows.first() {
                println!("example ({}):", r.location);
                for m in &r.messages {
                    println!(
                        "  {:>9}: {}",
                        m.role,
                        m.content.chars().take(300).collect::<String>()
                    );
                }
            }
        }
    }
    match herd_license::detect(&file) {
        Ok(m) => {
            let a = herd_license::assess(&m);
            println!(
                "licence     {:?}: {}",
                a.verdict,
                a.reasons
                    .first()
                    .map(|r| format!("{}: {}", r.subject, r.text))
                    .unwrap_or_default()
            );
        }
        Err(e) => println!("licence     unknown ({e})"),
    }
    Ok(())
}
