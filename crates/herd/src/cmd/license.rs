//! `herd license ARTEFACT [--base MODEL]... [--data PATH]... [--json]`

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use herd_license::manifest::method;
use herd_license::verdict::Assessment;
use herd_license::{Kind, Manifest, Verdict, assess, detect};
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    /// A .gguf file, a model folder, a dataset folder or file, a herd-lineage.json, or a
    /// pulled OWNER/REPO[:FILE].
    pub artefact: String,
    /// What if a model were fine-tuned from this base too (repeatable): the verdict of the
    /// combination.
    #[arg(long = "base", value_name = "MODEL")]
    pub base: Vec<String>,
    /// What if ARTEFACT were fine-tuned on this dataset (repeatable).
    #[arg(long = "data", value_name = "PATH")]
    pub data: Vec<String>,
    /// Print JSON: verdict, reasons, conditions, facts and the lineage manifest.
    #[arg(long)]
    pub json: bool,
}

fn detect_arg(arg: &str) -> Result<Manifest> {
    let path = super::model_path(arg)?;
    detect(&path).with_context(|| format!("reading the licence facts of {arg}"))
}

/// The manifest to judge: the artefact's own, or a what-if fine-tune of it with `--base`
/// models and `--data` sets as its parents.
fn subject(a: &Args) -> Result<Manifest> {
    let found = detect_arg(&a.artefact)?;
    if a.base.is_empty() && a.data.is_empty() {
        return Ok(found);
    }
    let mut m = Manifest::new(Kind::Model, "what-if", method::WHAT_IF);
    for b in &a.base {
        m = m.with_parent(detect_arg(b)?);
    }
    m = m.with_parent(found);
    for d in &a.data {
        m = m.with_parent(detect_arg(d)?);
    }
    Ok(m)
}

fn mark(v: Verdict) -> &'static str {
    match v {
        Verdict::Allowed => "✓",
        Verdict::Conditional => "~",
        Verdict::Unknown => "?",
        Verdict::NotAllowed => "✗",
    }
}

fn print_human(m: &Manifest, a: &Assessment) {
    let headline = match a.verdict {
        Verdict::Allowed => "ALLOWED".to_string(),
        Verdict::Conditional => "ALLOWED WITH CONDITIONS (listed below)".to_string(),
        Verdict::NotAllowed => "NOT ALLOWED".to_string(),
        Verdict::Unknown => {
            "UNKNOWN — a licence in the lineage is missing or not recognised; herd does not guess"
                .to_string()
        }
    };
    println!("commercial use: {headline}");
    let top = format!("{} {}", m.kind.noun(), m.artefact.name);
    println!("artefact: {top} ({})", m.method);
    // Every subject starts with the artefact: "model x ← dataset y" reads as "← dataset y".
    let prefix = format!("{top} ");
    let short = |s: &str| -> String {
        match s.strip_prefix(&prefix) {
            Some(rest) => rest.to_string(),
            None => s.to_string(),
        }
    };

    println!("\nwhy (most restrictive first):");
    let mut reasons: Vec<_> = a.reasons.iter().collect();
    reasons.sort_by_key(|r| std::cmp::Reverse(r.verdict));
    for r in reasons {
        println!("  {} {}: {}", mark(r.verdict), short(&r.subject), r.text);
    }

    if !a.conditions.is_empty() {
        println!("\nconditions to honour:");
        let mut groups: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
        let mut order = Vec::new();
        for c in &a.conditions {
            let key = (c.subject.as_str(), c.source.as_str());
            if !groups.contains_key(&key) {
                order.push(key);
            }
            groups.entry(key).or_default().push(&c.text);
        }
        for key in order {
            println!("  {} — {}:", short(key.0), key.1);
            for t in &groups[&key] {
                println!("    - {t}");
            }
        }
    }

    if !a.facts.is_empty() {
        println!("\nfacts, and where each came from:");
        for f in &a.facts {
            println!("  {}: {}", short(&f.subject), f.fact);
            println!("      from {}", f.origin);
        }
    }
    if a.verdict == Verdict::Unknown {
        println!(
            "\nTo settle it, add the missing licence (a LICENSE file, the card's `license:`), or ask \
             `herd license MODEL --data DATASET` with folders whose licences are known."
        );
    }
}

pub fn run(a: Args) -> Result<()> {
    let m = subject(&a)?;
    let assessment = assess(&m);
    if a.json {
        let v = json!({
            "verdict": assessment.verdict,
            "verdict_text": assessment.verdict.describe(),
            "licences": assessment.licence_ids,
            "any_unknown": assessment.any_unknown,
            "reasons": assessment.reasons,
            "conditions": assessment.conditions,
            "facts": assessment.facts,
            "manifest": m,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    print_human(&m, &assessment);
    Ok(())
}
