//! Lineage manifests: what an artefact came from.
//!
//! Every artefact herd writes (a converted or quantized GGUF, an adapter, a merged model, a
//! generated dataset, an evaluation report) carries a manifest: the artefact, the method that
//! made it, its base models and datasets with their licence facts, and the manifests of its
//! parents — lineage is a tree. It is stored as `herd-lineage.json` beside a folder's files,
//! under the GGUF key `herd.lineage` (plus llama.cpp's own `general.license`,
//! `general.base_model.*` and `general.dataset.*` keys, so other tools see the essentials), and
//! summarised in a model card's front matter (`license`, `base_model`, `datasets`).
//!
//! Schema `herd-lineage`, version 1 (JSON):
//! ```text
//! { "schema": "herd-lineage", "version": 1,
//!   "kind": "model" | "gguf" | "lora-adapter" | "merged-model" | "dataset" | "eval-report",
//!   "artefact": Component, "method": "found" | "convert" | "quantize" | "fine-tune-lora" | …,
//!   "hyperparameters": {…}, "base_models": [Component], "datasets": [Component],
//!   "parents": [Manifest], "herd_version": "0.1.0", "created": "2025-01-31T12:00:00Z" }
//! Component = { "name", "path"?, "repo_url"?, "sha256"?, "facts": Facts }
//! ```
//! Facts are `facts::Facts`: licences (id, what was stated, scope, evidence, origin), provider
//! outputs, restrictions and problems. A reader refuses another schema and newer versions.

use std::path::Path;

use herd_model::gguf::{GgufFile, Value};
use serde::{Deserialize, Serialize};

use crate::facts::{Facts, Origin, Problem};
use crate::{Error, Result, catalogue, frontmatter};

pub const SCHEMA: &str = "herd-lineage";
pub const VERSION: u32 = 1;
/// The manifest's file name in a model or dataset folder.
pub const FILE_NAME: &str = "herd-lineage.json";
/// The GGUF metadata key holding the manifest as JSON.
pub const GGUF_KEY: &str = "herd.lineage";
/// GGUF files list at most this many base models or datasets; a larger count is a broken file.
const MAX_LISTED: u64 = 4096;

/// The methods herd records. `found` marks facts read from an artefact herd did not make.
pub mod method {
    pub const FOUND: &str = "found";
    pub const CONVERT: &str = "convert";
    pub const QUANTIZE: &str = "quantize";
    pub const FINE_TUNE_LORA: &str = "fine-tune-lora";
    pub const FINE_TUNE_FULL: &str = "fine-tune-full";
    pub const DPO: &str = "dpo";
    pub const MERGE: &str = "merge";
    pub const EVAL: &str = "eval";
    pub const GENERATE_DATA: &str = "generate-data";
    /// A question, not an artefact: "what if I trained this on that?"
    pub const WHAT_IF: &str = "what-if-fine-tune";
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Model,
    Gguf,
    LoraAdapter,
    MergedModel,
    Dataset,
    EvalReport,
}

impl Kind {
    /// Data rather than weights: licence statements scoped to data apply to it.
    pub fn is_data(self) -> bool {
        matches!(self, Kind::Dataset | Kind::EvalReport)
    }

    pub fn noun(self) -> &'static str {
        match self {
            Kind::Dataset => "dataset",
            Kind::EvalReport => "evaluation report",
            _ => "model",
        }
    }
}

/// A model or dataset in a lineage, with its licence facts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Component {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Facts::is_empty")]
    pub facts: Facts,
}

impl Component {
    pub fn named(name: impl Into<String>) -> Self {
        Component {
            name: name.into(),
            ..Default::default()
        }
    }

    pub fn with_facts(mut self, facts: Facts) -> Self {
        self.facts = facts;
        self
    }

    /// `OWNER/NAME` from a Hugging Face URL, or the name.
    pub fn hub_id(&self) -> String {
        self.repo_url
            .as_deref()
            .and_then(|u| u.strip_prefix("https://huggingface.co/"))
            .map(|s| s.trim_end_matches('/').to_string())
            .unwrap_or_else(|| self.name.clone())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: String,
    pub version: u32,
    pub kind: Kind,
    pub artefact: Component,
    pub method: String,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub hyperparameters: serde_json::Value,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub base_models: Vec<Component>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datasets: Vec<Component>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<Manifest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub herd_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
}

impl Manifest {
    /// A manifest for an artefact herd is making now.
    pub fn new(kind: Kind, name: impl Into<String>, method: impl Into<String>) -> Self {
        Manifest {
            herd_version: Some(env!("CARGO_PKG_VERSION").to_string()),
            created: Some(utc_now()),
            ..Manifest::found(kind, Component::named(name))
        }
        .with_method(method)
    }

    /// Facts read from an artefact that herd did not make.
    pub fn found(kind: Kind, artefact: Component) -> Self {
        Manifest {
            schema: SCHEMA.to_string(),
            version: VERSION,
            kind,
            artefact,
            method: method::FOUND.to_string(),
            hyperparameters: serde_json::Value::Null,
            base_models: Vec::new(),
            datasets: Vec::new(),
            parents: Vec::new(),
            herd_version: None,
            created: None,
        }
    }

    pub fn with_method(mut self, m: impl Into<String>) -> Self {
        self.method = m.into();
        self
    }

    pub fn with_path(mut self, p: impl AsRef<Path>) -> Self {
        self.artefact.path = Some(p.as_ref().display().to_string());
        self
    }

    pub fn with_facts(mut self, f: Facts) -> Self {
        self.artefact.facts.extend(f);
        self
    }

    pub fn with_base(mut self, c: Component) -> Self {
        self.base_models.push(c);
        self
    }

    pub fn with_dataset(mut self, c: Component) -> Self {
        self.datasets.push(c);
        self
    }

    pub fn with_parent(mut self, m: Manifest) -> Self {
        self.parents.push(m);
        self
    }

    pub fn with_hyperparameters(mut self, v: serde_json::Value) -> Self {
        self.hyperparameters = v;
        self
    }

    /// Whether the artefact has anything it came from.
    pub fn has_lineage(&self) -> bool {
        !(self.base_models.is_empty() && self.datasets.is_empty() && self.parents.is_empty())
    }

    /// Conversions keep the model: its bases and datasets are those of its parent.
    fn transparent(&self) -> bool {
        matches!(self.method.as_str(), method::CONVERT | method::QUANTIZE)
    }

    /// The base models to list in GGUF metadata and cards: named ones, and each model parent
    /// (or, through a conversion, the parent's own bases).
    pub fn lineage_bases(&self) -> Vec<Component> {
        let mut out = self.base_models.clone();
        for p in self.parents.iter().filter(|p| !p.kind.is_data()) {
            if self.transparent() {
                out.extend(p.lineage_bases());
            } else {
                out.push(p.artefact.clone());
            }
        }
        out
    }

    /// The datasets to list in GGUF metadata and cards, found the same way.
    pub fn lineage_datasets(&self) -> Vec<Component> {
        let mut out = self.datasets.clone();
        for p in &self.parents {
            if p.kind.is_data() {
                out.push(p.artefact.clone());
            } else if self.transparent() {
                out.extend(p.lineage_datasets());
            }
        }
        out
    }

    /// Parses manifest JSON; `where_` names the file or key for errors.
    pub fn from_json(text: &str, where_: &str) -> Result<Self> {
        let bad = |msg: String| Error::Manifest {
            where_: where_.to_string(),
            msg,
        };
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        match v.get("schema").and_then(|s| s.as_str()) {
            Some(SCHEMA) => {}
            Some(other) => return Err(bad(format!("schema is {other:?}, not {SCHEMA:?}"))),
            None => return Err(bad(format!("no \"schema\": {SCHEMA:?} field"))),
        }
        match v.get("version").and_then(|s| s.as_u64()) {
            Some(n) if n >= 1 && n <= VERSION as u64 => {}
            Some(n) => {
                return Err(bad(format!(
                    "version {n} is not one this herd reads (1 to {VERSION}); a newer herd wrote it"
                )));
            }
            None => return Err(bad("no numeric \"version\" field".into())),
        }
        serde_json::from_value(v).map_err(|e| bad(e.to_string()))
    }

    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(&text, &path.display().to_string())
    }

    pub fn to_json(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Writes the manifest atomically: a temporary file in the same folder, then a rename, so
    /// a reader never sees half a manifest.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        write_atomic(path.as_ref(), self.to_json().as_bytes())
    }

    /// The licence ids of the whole lineage, in first-seen order, and whether any fact is
    /// unrecognised or missing.
    pub fn licence_ids(&self) -> (Vec<String>, bool) {
        let a = crate::verdict::assess(self);
        (a.licence_ids, a.any_unknown)
    }

    /// Metadata for a GGUF file: llama.cpp's `general.*` licence and lineage keys, and the
    /// whole manifest under [`GGUF_KEY`].
    pub fn to_gguf_metadata(&self) -> Vec<(String, Value)> {
        let s = |v: &str| Value::String(v.to_string());
        let mut out = Vec::new();
        let (ids, unknown) = self.licence_ids();
        let mut expr: Vec<String> = ids.clone();
        if unknown || ids.is_empty() {
            expr.push("unknown".into());
        }
        out.push(("general.license".to_string(), s(&expr.join(" AND "))));
        let single = match ids.as_slice() {
            [only] if !unknown => catalogue::lookup(only),
            _ => None,
        };
        if let Some(t) = single {
            out.push(("general.license.name".to_string(), s(&t.name)));
            if let Some(l) = &t.link {
                out.push(("general.license.link".to_string(), s(l)));
            }
        }
        for (prefix, list) in [
            ("general.base_model", self.lineage_bases()),
            ("general.dataset", self.lineage_datasets()),
        ] {
            if list.is_empty() {
                continue;
            }
            out.push((format!("{prefix}.count"), Value::U32(list.len() as u32)));
            for (i, c) in list.iter().enumerate() {
                let hub = c.hub_id();
                let (org, name) = match hub.split_once('/') {
                    Some((o, n)) if c.repo_url.is_some() => (Some(o.to_string()), n.to_string()),
                    _ => (None, c.name.clone()),
                };
                out.push((format!("{prefix}.{i}.name"), s(&name)));
                if let Some(o) = org {
                    out.push((format!("{prefix}.{i}.organization"), s(&o)));
                }
                if let Some(u) = &c.repo_url {
                    out.push((format!("{prefix}.{i}.repo_url"), s(u)));
                }
            }
        }
        let compact = serde_json::to_string(self).unwrap_or_default();
        out.push((GGUF_KEY.to_string(), Value::String(compact)));
        out
    }

    /// The manifest embedded in a GGUF file, `Ok(None)` when it has none.
    pub fn from_gguf(f: &GgufFile) -> Result<Option<Self>> {
        let where_ = format!("{} ({GGUF_KEY})", f.path.display());
        match f.get(GGUF_KEY) {
            None => Ok(None),
            Some(v) => match v.as_str() {
                Some(text) => Self::from_json(text, &where_).map(Some),
                None => Err(Error::Manifest {
                    where_,
                    msg: "the value is not a string".into(),
                }),
            },
        }
    }

    /// Facts from llama.cpp's `general.*` keys of a GGUF file that carries no manifest.
    pub fn from_gguf_general(f: &GgufFile) -> Self {
        let file = f.path.display().to_string();
        let get = |k: &str| f.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let origin = |k: &str| Origin::new(file.clone(), Some(k.to_string()));
        let mut facts = Facts::default();
        let licence = get("general.license");
        let name = get("general.license.name");
        let link = get("general.license.link");
        let known = |v: &Option<String>| v.as_deref().and_then(crate::names::identify).is_some();
        let chosen = if known(&licence) || (licence.is_some() && !known(&name)) {
            licence.as_deref().map(|v| (v, "general.license"))
        } else {
            name.as_deref().map(|v| (v, "general.license.name"))
        };
        if let Some((value, key)) = chosen {
            for mut fact in Facts::declared_all(value, origin(key)) {
                if let Some(l) = &link {
                    fact.stated = format!("{} ({l})", fact.stated);
                }
                facts.licences.push(fact);
            }
        }
        let mut m = Manifest::found(Kind::Gguf, Self::gguf_component(f).with_facts(facts));
        m.base_models = Self::gguf_list(f, "general.base_model", &mut m.artefact.facts);
        m.datasets = Self::gguf_list(f, "general.dataset", &mut m.artefact.facts);
        m
    }

    fn gguf_component(f: &GgufFile) -> Component {
        let name = f
            .get("general.name")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .or_else(|| f.path.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "model".into());
        Component {
            name,
            path: Some(f.path.display().to_string()),
            ..Default::default()
        }
    }

    /// `general.base_model.{i}.*` or `general.dataset.{i}.*` entries, by their count key.
    fn gguf_list(f: &GgufFile, prefix: &str, facts: &mut Facts) -> Vec<Component> {
        let count_key = format!("{prefix}.count");
        let Some(count) = f.get(&count_key).map(|v| v.as_u64()) else {
            return Vec::new();
        };
        let count = match count {
            Some(n) if n <= MAX_LISTED => n,
            _ => {
                facts.problems.push(Problem {
                    origin: Origin::new(f.path.display().to_string(), Some(count_key)),
                    message: format!("not a count from 0 to {MAX_LISTED}"),
                });
                return Vec::new();
            }
        };
        (0..count)
            .map(|i| {
                let get = |k: &str| {
                    f.get(&format!("{prefix}.{i}.{k}"))
                        .and_then(|v| v.as_str())
                        .map(str::to_string)
                };
                let org = get("organization");
                let name = get("name")
                    .map(|n| match &org {
                        Some(o) => format!("{o}/{n}"),
                        None => n,
                    })
                    .or_else(|| get("repo_url"))
                    .unwrap_or_else(|| format!("{prefix}.{i}"));
                Component {
                    name,
                    repo_url: get("repo_url"),
                    ..Default::default()
                }
            })
            .collect()
    }

    /// Model card front matter (`license`, `license_name`, `license_link`, `base_model`,
    /// `datasets`), as the Hugging Face hub reads it.
    pub fn card_front_matter(&self) -> String {
        use frontmatter::Value as Y;
        let (ids, unknown) = self.licence_ids();
        let mut fields: Vec<(String, Y)> = Vec::new();
        let single = match ids.as_slice() {
            [only] if !unknown => catalogue::lookup(only),
            _ => None,
        };
        match &single {
            Some(t) if t.hf_id.is_some() => fields.push((
                "license".into(),
                Y::Str(t.hf_id.clone().unwrap_or_default()),
            )),
            _ => {
                let mut name = ids.clone();
                if unknown || ids.is_empty() {
                    name.push("unknown".into());
                }
                fields.push(("license".into(), Y::Str("other".into())));
                fields.push(("license_name".into(), Y::Str(name.join(" AND "))));
            }
        }
        if let Some(l) = single.as_ref().and_then(|t| t.link.clone()) {
            fields.push(("license_link".into(), Y::Str(l)));
        }
        let bases: Vec<String> = self.lineage_bases().iter().map(|c| c.hub_id()).collect();
        if !bases.is_empty() {
            fields.push(("base_model".into(), Y::List(bases)));
        }
        let data: Vec<String> = self.lineage_datasets().iter().map(|c| c.hub_id()).collect();
        if !data.is_empty() {
            fields.push(("datasets".into(), Y::List(data)));
        }
        fields.push(("tags".into(), Y::List(vec!["herd".into()])));
        frontmatter::render(&fields)
    }

    /// Writes `dir/README.md` (a model card with the front matter) and `dir/herd-lineage.json`.
    pub fn write_card(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        let mut card = self.card_front_matter();
        card.push_str(&format!(
            "\n# {}\n\nMade by herd ({}) from:\n\n",
            self.artefact.name, self.method
        ));
        for c in self.lineage_bases() {
            card.push_str(&format!("- base model: {}\n", c.hub_id()));
        }
        for c in self.lineage_datasets() {
            card.push_str(&format!("- dataset: {}\n", c.hub_id()));
        }
        card.push_str(&format!(
            "\nThe full lineage with every licence fact is in `{FILE_NAME}`; `herd license` on this folder gives the commercial-use verdict.\n"
        ));
        write_atomic(&dir.join("README.md"), card.as_bytes())?;
        self.write(dir.join(FILE_NAME))
    }
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "manifest".into());
    let tmp_name = format!(".{name}.tmp{}", std::process::id());
    let tmp = match dir {
        Some(d) => d.join(tmp_name),
        None => Path::new(&tmp_name).to_path_buf(),
    };
    let written = (|| -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// The current UTC time as RFC 3339 (`2025-01-31T12:00:00Z`).
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format_utc(secs)
}

/// Seconds since 1970 as RFC 3339 UTC (Howard Hinnant's days-to-civil algorithm).
pub fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_706_702_400 + 3661), "2024-01-31T13:01:01Z");
    }

    #[test]
    fn other_schemas_and_newer_versions_are_refused() {
        let e = Manifest::from_json("{\"schema\":\"x\",\"version\":1}", "m.json").unwrap_err();
        assert!(e.to_string().contains("schema is \"x\""), "{e}");
        let e = Manifest::from_json("{\"schema\":\"herd-lineage\",\"version\":9}", "m.json")
            .unwrap_err();
        assert!(e.to_string().contains("newer herd"), "{e}");
        let e = Manifest::from_json("[1,", "m.json").unwrap_err();
        assert!(e.to_string().starts_with("m.json: not a valid"), "{e}");
    }
}
