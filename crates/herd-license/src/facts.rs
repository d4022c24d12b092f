//! Licence facts: what one source (a metadata key, a card field, a licence file, a line of a
//! `SOURCE.md`) says about a model or dataset, and where it said it. Facts are kept as found;
//! the verdict engine (`verdict.rs`) decides what they mean together.

use serde::{Deserialize, Serialize};

/// Where a fact was read: a file, and the key or line inside it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub file: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl Origin {
    pub fn new(file: impl Into<String>, key: Option<String>) -> Self {
        Origin {
            file: file.into(),
            key,
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.key {
            Some(k) => write!(f, "{} ({k})", self.file),
            None => write!(f, "{}", self.file),
        }
    }
}

/// What part of a thing a licence covers, as its source says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// The source does not say: the whole thing.
    #[default]
    All,
    /// The code only (a dataset repository's `LICENSE` often covers its scripts, not its data).
    Code,
    /// The data only.
    Data,
    /// The model weights only.
    Weights,
}

/// How a licence was identified.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "how", rename_all = "kebab-case")]
pub enum Evidence {
    /// A metadata field or card field names it (`general.license`, `license:`).
    Declared,
    /// The full text matched the reference text (Sørensen–Dice over word bigrams).
    FullText { similarity: f64 },
    /// Title and key clauses of a licence whose full text herd does not hold.
    Markers,
    /// A sentence names it (`SOURCE.md`, a short notice).
    Statement,
    /// A licence text resembling a known one but changed; not claimed as it.
    ChangedText {
        closest: String,
        similarity: f64,
        why: String,
    },
    /// A licence text or name herd does not recognise.
    Unrecognised,
}

/// One licence that a source says applies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LicenceFact {
    /// Catalogue id (SPDX or named model licence); `None` when not recognised.
    pub id: Option<String>,
    /// What the source said, as it said it (or a description of the text).
    pub stated: String,
    #[serde(default)]
    pub scope: Scope,
    pub evidence: Evidence,
    pub origin: Origin,
}

/// A dataset made (partly) of a model provider's outputs; the provider's terms travel with it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProviderOutputs {
    /// "OpenAI", "Google", "Anthropic".
    pub provider: String,
    /// The models named ("GPT-4", "text-davinci-003").
    pub models: Vec<String>,
    pub origin: Origin,
}

impl ProviderOutputs {
    /// What the provider's terms say about building models from its outputs.
    pub fn terms(&self) -> String {
        let what = match self.provider.as_str() {
            "OpenAI" => {
                "OpenAI's terms of use forbid using output to develop models that compete with OpenAI"
            }
            "Google" => {
                "Google's generative AI terms forbid using output to develop models that compete with Google's"
            }
            "Anthropic" => {
                "Anthropic's terms forbid using output to build competing products or train competing models"
            }
            _ => "the provider's terms of use govern what its outputs may be used for",
        };
        format!(
            "provider terms: contains outputs of {} models ({}); {what} (they bind whoever generated the data; check them before training a model you sell)",
            self.provider,
            self.models.join(", ")
        )
    }
}

/// A limit stated outside a licence ("evaluation only", "non-commercial").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestrictionKind {
    NonCommercial,
    EvaluationOnly,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Restriction {
    pub kind: RestrictionKind,
    pub stated: String,
    pub origin: Origin,
}

/// A source that could not be read: its facts are missing, so the verdict cannot be known.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    pub origin: Origin,
    pub message: String,
}

/// Everything known about the terms of one model or dataset.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub licences: Vec<LicenceFact>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provider_outputs: Vec<ProviderOutputs>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restrictions: Vec<Restriction>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
}

impl Facts {
    pub fn is_empty(&self) -> bool {
        self.licences.is_empty()
            && self.provider_outputs.is_empty()
            && self.restrictions.is_empty()
            && self.problems.is_empty()
    }

    pub fn extend(&mut self, other: Facts) {
        self.licences.extend(other.licences);
        self.provider_outputs.extend(other.provider_outputs);
        self.restrictions.extend(other.restrictions);
        self.problems.extend(other.problems);
    }

    /// Facts from a field that may list several licences: an SPDX-style `A AND B` or a
    /// comma-separated list (llama.cpp joins a card's list of licences with commas). Each part
    /// applies. `A OR B` is left whole: herd does not choose for the licensee, so it stays
    /// unrecognised.
    pub fn declared_all(value: &str, origin: Origin) -> Vec<LicenceFact> {
        let parts: Vec<&str> = value
            .split(" AND ")
            .flat_map(|p| p.split(','))
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        if parts.len() <= 1 {
            return vec![Self::declared(value, origin)];
        }
        parts
            .into_iter()
            .map(|p| Self::declared(p, origin.clone()))
            .collect()
    }

    /// A fact that a field declares licence `value` (recognised or not).
    pub fn declared(value: &str, origin: Origin) -> LicenceFact {
        let id = crate::names::identify(value);
        LicenceFact {
            evidence: if id.is_some() {
                Evidence::Declared
            } else {
                Evidence::Unrecognised
            },
            id,
            stated: value.to_string(),
            scope: Scope::All,
            origin,
        }
    }
}
