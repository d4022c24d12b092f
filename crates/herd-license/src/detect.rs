//! Reading licence facts wherever they live.
//!
//! - a GGUF file: its `herd.lineage` manifest when herd wrote it, else llama.cpp's
//!   `general.license`, `general.license.name`, `general.license.link`,
//!   `general.base_model.*` and `general.dataset.*` keys; plus the card and licence files in
//!   its folder;
//! - a model folder (Hugging Face layout): `herd-lineage.json` when herd wrote it, else the
//!   model card's front matter (`license`, `license_name`, `license_link`, `base_model`,
//!   `datasets`) and `LICENSE`-like files recognised by their text;
//! - a dataset folder or file: `SOURCE.md` (herd's note of where data came from: its licence
//!   sentences, scoped to code or data as they say; names of models whose outputs it holds;
//!   "non-commercial", "evaluation only"), `LICENSE`-like files and a dataset card's front
//!   matter — for a file or a sub-folder without them, those of the folders above (two at
//!   most);
//! - a lineage manifest (`*.json` with `"schema": "herd-lineage"`).
//!
//! A file that cannot be read or parsed becomes a [`Problem`] of the artefact (so the verdict
//! says unknown and names the file), not an error that hides the other facts. Only a path
//! that does not exist, a broken GGUF or a broken manifest given directly is an error.

use std::path::{Path, PathBuf};

use herd_model::gguf::GgufFile;

use crate::facts::{
    Evidence, Facts, LicenceFact, Origin, Problem, ProviderOutputs, Restriction, RestrictionKind,
    Scope,
};
use crate::manifest::{self, Component, Kind, Manifest};
use crate::text::{self, Recognition, contains_phrase, phrase_tokens};
use crate::{Error, Result, frontmatter, names};

/// Notices shorter than this many words are read as statements ("This data is licensed under
/// CC BY-NC 4.0") when they are no licence text herd knows.
const SHORT_NOTICE_WORDS: usize = 80;
/// How many folders, from a data file's or sub-folder's own up, herd looks in for a
/// `SOURCE.md`, `LICENSE` or card.
const DATA_FILE_LEVELS: usize = 3;

/// Everything herd can find out about `path`, as a manifest (method `found` unless herd
/// wrote one).
pub fn detect(path: &Path) -> Result<Manifest> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        return detect_dir(path);
    }
    let name = file_name(path);
    let lower = name.to_lowercase();
    if lower.ends_with(".gguf") || starts_with_gguf_magic(path) {
        return detect_gguf(path);
    }
    if lower.ends_with(".json") && is_manifest_file(path) {
        return Manifest::read(path);
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // A card, licence file or a file of a model folder (weights, config) stands for its folder.
    if is_licence_file(&name)
        || matches!(lower.as_str(), "source.md" | "readme.md")
        || is_model_dir(dir)
    {
        return detect_dir(dir);
    }
    detect_data_file(path)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn dir_name(dir: &Path) -> String {
    let canon = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let n = file_name(&canon);
    if n.is_empty() {
        dir.display().to_string()
    } else {
        n
    }
}

fn starts_with_gguf_magic(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == herd_model::gguf::MAGIC
}

fn is_manifest_file(path: &Path) -> bool {
    if file_name(path) == manifest::FILE_NAME {
        return true;
    }
    // Only the start is read (data files can be large): a manifest says its schema first.
    use std::io::Read;
    let mut head = Vec::with_capacity(256);
    let read = std::fs::File::open(path).and_then(|f| f.take(256).read_to_end(&mut head));
    let head = String::from_utf8_lossy(&head);
    read.is_ok()
        && (head.contains(&format!("\"schema\": \"{}\"", manifest::SCHEMA))
            || head.contains(&format!("\"schema\":\"{}\"", manifest::SCHEMA)))
}

/// `LICENSE`, `LICENSE.txt`, `LICENCE`, `LICENSE-MODEL`, `LICENSE.llama2.c`, `COPYING` …
pub fn is_licence_file(name: &str) -> bool {
    let lower = name.to_lowercase();
    let stem = lower.split('.').next().unwrap_or("");
    ["license", "licence", "copying"].iter().any(|p| {
        stem == *p || stem.starts_with(&format!("{p}-")) || stem.starts_with(&format!("{p}_"))
    })
}

/// The part of a thing a licence file's name says it covers (`LICENSE-MODEL`, `LICENSE-CODE`).
fn scope_from_file_name(name: &str) -> Scope {
    let lower = name.to_lowercase();
    if lower.contains("model") || lower.contains("weight") {
        Scope::Weights
    } else if lower.contains("code") || lower.contains("software") {
        Scope::Code
    } else if lower.contains("data") {
        Scope::Data
    } else {
        Scope::All
    }
}

fn licence_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && is_licence_file(&file_name(p)))
        .collect();
    v.sort();
    v
}

/// Facts from one licence file, recognised by its text.
pub fn licence_file_facts(path: &Path) -> Facts {
    let display = path.display().to_string();
    let mut facts = Facts::default();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            facts.problems.push(Problem {
                origin: Origin::new(display, None),
                message: e.to_string(),
            });
            return facts;
        }
    };
    let text = String::from_utf8_lossy(&bytes);
    let scope = scope_from_file_name(&file_name(path));
    let fact = |id: Option<&str>, stated: String, evidence: Evidence| LicenceFact {
        id: id.map(str::to_string),
        stated,
        scope,
        evidence,
        origin: Origin::new(display.clone(), None),
    };
    match text::recognise(&text) {
        Recognition::Match { id, similarity } => facts.licences.push(fact(
            Some(id),
            format!("full text of {id}"),
            Evidence::FullText { similarity },
        )),
        Recognition::Markers { id, markers } => facts.licences.push(fact(
            Some(id),
            format!("text with {}", markers.join("; ")),
            Evidence::Markers,
        )),
        Recognition::Changed {
            closest,
            similarity,
            why,
        } => facts.licences.push(fact(
            None,
            format!("licence text resembling {closest}"),
            Evidence::ChangedText {
                closest: closest.to_string(),
                similarity,
                why,
            },
        )),
        Recognition::Unrecognised { .. } => {
            let toks = text::tokens(&text);
            let found = if toks.len() <= SHORT_NOTICE_WORDS {
                names::mentions_in(&toks)
            } else {
                Vec::new()
            };
            if found.is_empty() {
                facts.licences.push(fact(
                    None,
                    format!("a licence text herd does not know ({} words)", toks.len()),
                    Evidence::Unrecognised,
                ));
            }
            for m in found {
                let s = match scope_before(&toks[..m.start]) {
                    Scope::All => scope,
                    s => s,
                };
                facts.licences.push(LicenceFact {
                    scope: s,
                    ..fact(Some(&m.id), text.trim().to_string(), Evidence::Statement)
                });
            }
        }
    }
    facts
}

/// What a licence sentence says the licence covers, from the words before the name.
fn scope_before(toks: &[String]) -> Scope {
    let has = |ws: &[&str]| toks.iter().any(|t| ws.contains(&t.as_str()));
    match (
        has(&["data", "dataset", "datasets"]),
        has(&["code", "software", "scripts"]),
        has(&["weights"]),
    ) {
        (true, false, false) => Scope::Data,
        (false, true, false) => Scope::Code,
        (false, false, true) => Scope::Weights,
        _ => Scope::All,
    }
}

/// Models whose outputs a dataset note may name, by provider.
const PROVIDER_MODELS: &[(&str, &str, &str)] = &[
    ("OpenAI", "gpt 4", "GPT-4"),
    ("OpenAI", "gpt 3 5", "GPT-3.5"),
    ("OpenAI", "gpt 35", "GPT-3.5"),
    ("OpenAI", "chatgpt", "ChatGPT"),
    ("OpenAI", "text davinci 003", "text-davinci-003"),
    ("OpenAI", "text davinci 002", "text-davinci-002"),
    ("OpenAI", "text davinci", "text-davinci"),
    ("OpenAI", "davinci", "davinci"),
    ("Google", "bard", "Bard"),
    ("Google", "gemini", "Gemini"),
    ("Google", "palm 2", "PaLM 2"),
    ("Anthropic", "claude", "Claude"),
];

const NON_COMMERCIAL: &[&str] = &[
    "non commercial",
    "noncommercial",
    "not for commercial",
    "research purposes only",
    "research use only",
    "research only",
];
const EVALUATION_ONLY: &[&str] = &[
    "not be used for training",
    "not for training",
    "evaluation only",
    "only for evaluation",
];

/// Facts from a `SOURCE.md` note (or any free text about where data came from).
pub fn source_note_facts(text: &str, file: &str) -> Facts {
    let mut facts = Facts::default();
    for (n, line) in text.lines().enumerate() {
        let origin = || Origin::new(file, Some(format!("line {}", n + 1)));
        let toks = phrase_tokens(line);
        if line.to_lowercase().contains("licen") {
            for clause in line.split([';']).flat_map(|c| c.split(". ")) {
                let ct = phrase_tokens(clause);
                for m in names::mentions_in(&ct) {
                    facts.licences.push(LicenceFact {
                        id: Some(m.id),
                        stated: clause.trim().trim_start_matches("- ").to_string(),
                        scope: scope_before(&ct[..m.start]),
                        evidence: Evidence::Statement,
                        origin: origin(),
                    });
                }
            }
        }
        for (phrases, kind) in [
            (NON_COMMERCIAL, RestrictionKind::NonCommercial),
            (EVALUATION_ONLY, RestrictionKind::EvaluationOnly),
        ] {
            if let Some(p) = phrases.iter().find(|p| contains_phrase(&toks, p)) {
                facts.restrictions.push(Restriction {
                    kind,
                    stated: p.to_string(),
                    origin: origin(),
                });
            }
        }
    }
    let toks = phrase_tokens(text);
    // Specific names come first in the table; a generic one ("davinci") counts only where no
    // specific one ("text davinci 003") already matched.
    let mut covered = vec![false; toks.len()];
    let mut by_provider: Vec<ProviderOutputs> = Vec::new();
    for (provider, phrase, model) in PROVIDER_MODELS {
        let p: Vec<&str> = phrase.split(' ').collect();
        let mut hit = false;
        for i in 0..toks.len().saturating_sub(p.len() - 1) {
            let here = p.iter().zip(&toks[i..]).all(|(a, b)| *a == b);
            if here && !covered[i..i + p.len()].iter().any(|&c| c) {
                covered[i..i + p.len()].iter_mut().for_each(|c| *c = true);
                hit = true;
            }
        }
        if !hit {
            continue;
        }
        match by_provider.iter_mut().find(|p| p.provider == *provider) {
            Some(p) if !p.models.iter().any(|m| m == model) => p.models.push(model.to_string()),
            Some(_) => {}
            None => by_provider.push(ProviderOutputs {
                provider: provider.to_string(),
                models: vec![model.to_string()],
                origin: Origin::new(file, None),
            }),
        }
    }
    facts.provider_outputs = by_provider;
    facts
}

/// Licence facts and named lineage from a card's front matter.
struct Card {
    facts: Facts,
    base_models: Vec<Component>,
    datasets: Vec<Component>,
}

fn read_card(path: &Path) -> Option<Card> {
    let display = path.display().to_string();
    let mut card = Card {
        facts: Facts::default(),
        base_models: Vec::new(),
        datasets: Vec::new(),
    };
    let text = match std::fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            card.facts.problems.push(Problem {
                origin: Origin::new(display, None),
                message: e.to_string(),
            });
            return Some(card);
        }
    };
    let fm = match frontmatter::parse(&text) {
        Ok(Some(fm)) => fm,
        Ok(None) => return None,
        Err(msg) => {
            card.facts.problems.push(Problem {
                origin: Origin::new(display, Some("front matter".into())),
                message: msg,
            });
            return Some(card);
        }
    };
    let origin =
        |key: &str, line: usize| Origin::new(&display, Some(format!("{key}, line {line}")));
    let link = fm.get("license_link").and_then(|(v, _)| v.strings().pop());
    let name = fm.get("license_name").map(|(v, l)| (v.strings(), l));
    if let Some((v, line)) = fm.get("license") {
        for value in v.strings() {
            let named = name.as_ref().filter(|_| names::identify(&value).is_none());
            let declared = match named {
                Some((n, nl)) if !n.is_empty() => {
                    Facts::declared_all(&n.join(" "), origin("license_name", *nl))
                }
                _ => Facts::declared_all(&value, origin("license", line)),
            };
            for mut fact in declared {
                if let Some(l) = &link {
                    fact.stated = format!("{} ({l})", fact.stated);
                }
                card.facts.licences.push(fact);
            }
        }
    }
    let component = |id: String| {
        let hub = id.contains('/') && !id.contains("://") && !id.starts_with(['.', '/']);
        Component {
            repo_url: hub.then(|| format!("https://huggingface.co/{id}")),
            name: id,
            ..Default::default()
        }
    };
    for key in ["base_model", "base_models"] {
        if let Some((v, _)) = fm.get(key) {
            card.base_models
                .extend(v.strings().into_iter().map(component));
        }
    }
    if let Some((v, _)) = fm.get("datasets") {
        card.datasets.extend(v.strings().into_iter().map(component));
    }
    Some(card)
}

fn detect_gguf(path: &Path) -> Result<Manifest> {
    let f = GgufFile::open(path)?;
    let mut m = match Manifest::from_gguf(&f) {
        Ok(Some(m)) => return Ok(m),
        Ok(None) => Manifest::from_gguf_general(&f),
        Err(e) => {
            let mut m = Manifest::from_gguf_general(&f);
            m.artefact.facts.problems.push(Problem {
                origin: Origin::new(path.display().to_string(), Some(manifest::GGUF_KEY.into())),
                message: e.to_string(),
            });
            m
        }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        add_folder_files(&mut m, dir);
    }
    Ok(m)
}

/// Adds a folder's card and licence files to `m`.
fn add_folder_files(m: &mut Manifest, dir: &Path) {
    if let Some(card) = read_card(&dir.join("README.md")) {
        m.artefact.facts.extend(card.facts);
        m.base_models.extend(card.base_models);
        m.datasets.extend(card.datasets);
    }
    for lf in licence_files(dir) {
        m.artefact.facts.extend(licence_file_facts(&lf));
    }
}

fn files_ending(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && file_name(p).to_lowercase().ends_with(ext))
        .collect();
    v.sort();
    v
}

fn is_model_dir(dir: &Path) -> bool {
    ["config.json", "adapter_config.json"]
        .iter()
        .any(|f| dir.join(f).is_file())
        || !files_ending(dir, ".safetensors").is_empty()
}

fn detect_dir(dir: &Path) -> Result<Manifest> {
    let lineage = dir.join(manifest::FILE_NAME);
    if lineage.is_file() {
        return Manifest::read(&lineage);
    }
    let component = Component {
        name: dir_name(dir),
        path: Some(dir.display().to_string()),
        ..Default::default()
    };
    // A folder holding one GGUF file (a hub snapshot of a GGUF repository) is that file.
    let ggufs = files_ending(dir, ".gguf");
    if let ([gguf], false) = (ggufs.as_slice(), is_model_dir(dir)) {
        return detect_gguf(gguf);
    }
    if is_model_dir(dir) || !ggufs.is_empty() {
        let kind = if dir.join("adapter_config.json").is_file() {
            Kind::LoraAdapter
        } else {
            Kind::Model
        };
        let mut m = Manifest::found(kind, component);
        add_folder_files(&mut m, dir);
        return Ok(m);
    }
    data_facts_from(Manifest::found(Kind::Dataset, component), dir.to_path_buf())
}

fn add_data_folder_files(m: &mut Manifest, dir: &Path) {
    let source = dir.join("SOURCE.md");
    match std::fs::read(&source) {
        Ok(b) => m.artefact.facts.extend(source_note_facts(
            &String::from_utf8_lossy(&b),
            &source.display().to_string(),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => m.artefact.facts.problems.push(Problem {
            origin: Origin::new(source.display().to_string(), None),
            message: e.to_string(),
        }),
    }
    add_folder_files(m, dir);
}

fn detect_data_file(path: &Path) -> Result<Manifest> {
    let m = Manifest::found(
        Kind::Dataset,
        Component {
            name: file_name(path),
            path: Some(path.display().to_string()),
            ..Default::default()
        },
    );
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    data_facts_from(m, dir)
}

/// Adds the facts of `dir` to a dataset (or a file or sub-folder of one); where `dir` has
/// none, those of the folders above it, [`DATA_FILE_LEVELS`] at most. A manifest found on
/// the way describes the dataset the thing belongs to.
fn data_facts_from(mut m: Manifest, mut dir: PathBuf) -> Result<Manifest> {
    for _ in 0..DATA_FILE_LEVELS {
        let lineage = dir.join(manifest::FILE_NAME);
        if lineage.is_file() {
            return Manifest::read(&lineage);
        }
        add_data_folder_files(&mut m, &dir);
        if !m.artefact.facts.is_empty() {
            break;
        }
        match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => dir = p.to_path_buf(),
            _ => break,
        }
    }
    Ok(m)
}
