//! `herd pull OWNER/REPO[:FILE]` and `herd list`.

use anyhow::Result;
use herd_hub::{Cache, Hub, ModelRef, Progress};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(clap::Args)]
pub struct PullArgs {
    /// OWNER/REPO (a safetensors model, or a GGUF repository with one file),
    /// OWNER/REPO:FILE, optionally @REVISION.
    pub name: String,
}

#[derive(clap::Args)]
pub struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

struct Bar(Option<ProgressBar>);

impl Progress for Bar {
    fn start(&mut self, file: &str, total: Option<u64>, already: u64) {
        let bar = match total {
            Some(t) => ProgressBar::new(t),
            None => ProgressBar::new_spinner(),
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:30!} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(file.to_string());
        bar.set_position(already);
        self.0 = Some(bar);
    }
    fn advance(&mut self, bytes: u64) {
        if let Some(b) = &self.0 {
            b.inc(bytes);
        }
    }
    fn finish(&mut self, _: &str) {
        if let Some(b) = self.0.take() {
            b.finish_and_clear();
        }
    }
}

pub fn pull(a: PullArgs) -> Result<()> {
    let r = ModelRef::parse(&a.name)?;
    let hub = Hub::from_env();
    eprintln!(
        "pulling {} from {} into {}",
        a.name,
        hub.endpoint,
        hub.cache.root.display()
    );
    let report = hub.pull(&r, &mut Bar(None))?;
    for (f, size, how) in &report.files {
        eprintln!("  {f:40} {:>12}  {how}", super::human_bytes(*size));
    }
    eprintln!("commit {}", report.commit);
    println!("{}", report.model_path.display());
    Ok(())
}

pub fn list(a: ListArgs) -> Result<()> {
    let cache = Cache::from_env();
    let mut rows = vec![];
    for m in cache.list() {
        // A GGUF file is a model by itself; a folder with config.json is one model.
        let mut targets: Vec<(String, std::path::PathBuf)> = m
            .files
            .iter()
            .filter(|f| f.ends_with(".gguf"))
            .map(|f| (format!("{}:{f}", m.repo), m.dir.join(f)))
            .collect();
        if m.files.iter().any(|f| f == "config.json") {
            targets.push((m.repo.clone(), m.dir.clone()));
        }
        for (name, path) in targets {
            let size: u64 = if path.is_dir() {
                m.files
                    .iter()
                    .filter_map(|f| std::fs::metadata(m.dir.join(f)).ok())
                    .map(|md| md.len())
                    .sum()
            } else {
                std::fs::metadata(&path).map(|md| md.len()).unwrap_or(0)
            };
            let (arch, quant, licence) = match herd_model::Model::open(&path) {
                Ok(model) => {
                    let mut types: Vec<(&str, usize)> = vec![];
                    for t in model
                        .weights
                        .tensors
                        .values()
                        .filter(|t| t.shape.len() == 2)
                    {
                        match types.iter_mut().find(|(n, _)| *n == t.dtype.name()) {
                            Some(e) => e.1 += t.bytes().len(),
                            None => types.push((t.dtype.name(), t.bytes().len())),
                        }
                    }
                    types.sort_by_key(|x| std::cmp::Reverse(x.1));
                    let licence = super::info::licence_facts(&model)
                        .into_iter()
                        .find(|(k, _)| k == "general.license" || k == "license")
                        .map(|(_, v)| v.trim_matches('"').to_string())
                        .unwrap_or_else(|| "unknown".into());
                    (
                        model.spec.arch.name().to_string(),
                        types.first().map_or("-".into(), |t| t.0.to_string()),
                        licence,
                    )
                }
                Err(e) => ("?".into(), "?".into(), format!("unreadable: {e}")),
            };
            rows.push((name, size, arch, quant, licence, path));
        }
    }
    if a.json {
        let v: Vec<_> = rows
            .iter()
            .map(|(n, s, a, q, l, p)| serde_json::json!({"name": n, "bytes": s, "architecture": a, "quantization": q, "license": l, "path": p}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!(
            "no models in {} (herd pull OWNER/REPO[:FILE] adds one)",
            cache.root.display()
        );
        return Ok(());
    }
    println!(
        "{:50} {:>10}  {:8} {:6} licence",
        "name", "size", "arch", "quant"
    );
    for (n, s, a, q, l, _) in rows {
        println!("{n:50} {:>10}  {a:8} {q:6} {l}", super::human_bytes(s));
    }
    Ok(())
}
