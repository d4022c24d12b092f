//! The commercial-use verdict over a lineage.
//!
//! Rules:
//! - Each licence that applies to a model or dataset gives its catalogue verdict: allowed
//!   (permissive: MIT, Apache-2.0, BSD, CC BY, CC0 …), allowed with conditions (Llama, Gemma,
//!   Qwen, OpenRAIL, share-alike and copyleft licences) or not allowed (non-commercial,
//!   research-only). Which licences apply: those scoped to the thing itself (data for a
//!   dataset, weights for a model), and unscoped ones — except an unscoped licence that
//!   another statement places on another part (a dataset repository's `LICENSE` that its
//!   `SOURCE.md` calls the code licence).
//! - Outputs of a provider's models in a dataset add that provider's terms (allowed with
//!   conditions); a stated "non-commercial" makes it not allowed; "evaluation only" is a
//!   condition.
//! - Unknown: a model or dataset without any licence fact, an unrecognised licence name, a
//!   changed licence text, a file that could not be read. Unknown is never read as allowed.
//! - The lineage is combined by taking the most restrictive: not allowed > unknown >
//!   allowed with conditions > allowed. So anything unknown makes the whole unknown, unless
//!   something else already says not allowed.
//! - An artefact with a lineage (a herd-made one) has no terms of its own beyond its
//!   lineage's: no licence stated for it is not a reason for "unknown".

use serde::Serialize;

use crate::catalogue::{self, Commercial};
use crate::facts::{Evidence, LicenceFact, RestrictionKind, Scope};
use crate::manifest::{Component, Manifest, method};

/// Ordered from least to most restrictive; combining takes the maximum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Allowed,
    Conditional,
    Unknown,
    NotAllowed,
}

impl Verdict {
    pub fn describe(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Conditional => "allowed with conditions",
            Verdict::Unknown => "unknown",
            Verdict::NotAllowed => "not allowed",
        }
    }
}

impl From<Commercial> for Verdict {
    fn from(c: Commercial) -> Self {
        match c {
            Commercial::Allowed => Verdict::Allowed,
            Commercial::Conditional => Verdict::Conditional,
            Commercial::NotAllowed => Verdict::NotAllowed,
        }
    }
}

/// One step of the chain: a model or dataset (`subject`, with the path that leads to it) and
/// what one of its facts means.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Reason {
    pub subject: String,
    pub verdict: Verdict,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Condition {
    pub subject: String,
    /// The licence or provider it comes from.
    pub source: String,
    pub text: String,
}

/// A fact and where it came from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FactLine {
    pub subject: String,
    pub fact: String,
    pub origin: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Assessment {
    pub verdict: Verdict,
    pub reasons: Vec<Reason>,
    pub conditions: Vec<Condition>,
    pub facts: Vec<FactLine>,
    /// Recognised licence ids over the whole lineage, in first-seen order.
    pub licence_ids: Vec<String>,
    /// Whether any part of the lineage is unknown (also when "not allowed" hides it).
    pub any_unknown: bool,
}

impl Assessment {
    fn reason(&mut self, subject: &str, verdict: Verdict, text: String) {
        if verdict == Verdict::Unknown {
            self.any_unknown = true;
        }
        let r = Reason {
            subject: subject.to_string(),
            verdict,
            text,
        };
        if !self.reasons.contains(&r) {
            self.reasons.push(r);
        }
    }

    fn condition(&mut self, subject: &str, source: &str, text: String) {
        let c = Condition {
            subject: subject.to_string(),
            source: source.to_string(),
            text,
        };
        if !self.conditions.contains(&c) {
            self.conditions.push(c);
        }
    }

    fn fact(&mut self, subject: &str, fact: String, origin: String) {
        self.facts.push(FactLine {
            subject: subject.to_string(),
            fact,
            origin,
        });
    }
}

/// The licences of `licences` that apply to a dataset (`is_data`) or a model.
pub fn applicable(licences: &[LicenceFact], is_data: bool) -> Vec<&LicenceFact> {
    let own = if is_data { Scope::Data } else { Scope::Weights };
    let elsewhere: Vec<&str> = licences
        .iter()
        .filter(|l| l.scope != own && l.scope != Scope::All)
        .filter_map(|l| l.id.as_deref())
        .collect();
    licences
        .iter()
        .filter(|l| {
            l.scope == own
                || (l.scope == Scope::All
                    && !l.id.as_deref().is_some_and(|id| elsewhere.contains(&id)))
        })
        .collect()
}

fn describe_fact(l: &LicenceFact) -> String {
    let what = match (&l.id, &l.evidence) {
        (Some(id), Evidence::FullText { similarity }) => {
            format!("{id} (full text, similarity {similarity:.3})")
        }
        (Some(id), Evidence::Markers) => format!("{id} (title and key clauses)"),
        (Some(id), Evidence::Statement) => format!("{id} (stated: {:?})", l.stated),
        (Some(id), _) => format!("{id} (declared: {:?})", l.stated),
        (
            None,
            Evidence::ChangedText {
                closest,
                similarity,
                why,
            },
        ) => format!("changed {closest} text (similarity {similarity:.3}; {why})"),
        (None, _) => format!("unrecognised licence {:?}", l.stated),
    };
    match l.scope {
        Scope::All => what,
        s => format!(
            "{what}, for the {}",
            serde_json::to_value(s)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        ),
    }
}

fn component(a: &mut Assessment, subject: &str, c: &Component, is_data: bool, lineage: bool) {
    let f = &c.facts;
    for p in &f.problems {
        a.fact(
            subject,
            format!("problem: {}", p.message),
            p.origin.to_string(),
        );
        a.reason(
            subject,
            Verdict::Unknown,
            format!(
                "{} could not be read ({}), so its facts are missing",
                p.origin, p.message
            ),
        );
    }
    let apply = applicable(&f.licences, is_data);
    for l in &f.licences {
        let mut line = describe_fact(l);
        if !apply.contains(&l) {
            line.push_str(&format!(
                " — not the {}'s licence",
                if is_data { "data" } else { "weights" }
            ));
        }
        a.fact(subject, line, l.origin.to_string());
    }
    if apply.is_empty() {
        if !f.licences.is_empty() {
            a.reason(
                subject,
                Verdict::Unknown,
                format!(
                    "only licences for other parts are stated; the {}'s licence is not",
                    if is_data { "data" } else { "weights" }
                ),
            );
        } else if !lineage {
            a.reason(
                subject,
                Verdict::Unknown,
                "no licence is stated anywhere herd looked".to_string(),
            );
        }
    }
    for l in apply {
        let terms = l.id.as_deref().and_then(catalogue::lookup);
        let Some(t) = terms else {
            let why = match &l.evidence {
                Evidence::ChangedText {
                    closest,
                    similarity,
                    why,
                } => format!(
                    "{} resembles {closest} (similarity {similarity:.3}) but is not it: {why}; its terms are not known",
                    l.origin
                ),
                _ => format!(
                    "licence {:?} ({}) is not one herd knows",
                    l.stated, l.origin
                ),
            };
            a.reason(subject, Verdict::Unknown, why);
            continue;
        };
        if !a.licence_ids.contains(&t.id) {
            a.licence_ids.push(t.id.clone());
        }
        let v = Verdict::from(t.commercial);
        let consequence = match v {
            Verdict::NotAllowed => "non-commercial ⇒ not allowed".to_string(),
            other => format!("commercial use {}", other.describe()),
        };
        a.reason(
            subject,
            v,
            format!("{} [{}] → {consequence}", t.id, l.origin),
        );
        for cond in t.conditions() {
            a.condition(subject, &t.id, cond);
        }
    }
    for p in &f.provider_outputs {
        a.fact(
            subject,
            format!("outputs of {} models ({})", p.provider, p.models.join(", ")),
            p.origin.to_string(),
        );
        a.reason(
            subject,
            Verdict::Conditional,
            format!(
                "contains outputs of {} models [{}] → the provider's terms apply",
                p.provider, p.origin
            ),
        );
        a.condition(subject, &format!("{} terms", p.provider), p.terms());
    }
    for r in &f.restrictions {
        a.fact(
            subject,
            format!("says {:?}", r.stated),
            r.origin.to_string(),
        );
        match r.kind {
            RestrictionKind::NonCommercial => a.reason(
                subject,
                Verdict::NotAllowed,
                format!("{} says {:?} ⇒ not allowed", r.origin, r.stated),
            ),
            RestrictionKind::EvaluationOnly => {
                a.reason(
                    subject,
                    Verdict::Conditional,
                    format!("{} limits its use: {:?}", r.origin, r.stated),
                );
                a.condition(
                    subject,
                    "authors' request",
                    "evaluation only: the authors ask that it not be used for training".into(),
                );
            }
        }
    }
}

fn walk(a: &mut Assessment, m: &Manifest, subject: &str) {
    component(a, subject, &m.artefact, m.kind.is_data(), m.has_lineage());
    for b in &m.base_models {
        let s = format!("{subject} ← base model {}", b.name);
        component(a, &s, b, false, false);
    }
    for d in &m.datasets {
        let s = format!("{subject} ← dataset {}", d.name);
        component(a, &s, d, true, false);
    }
    let conversion = matches!(m.method.as_str(), method::CONVERT | method::QUANTIZE);
    for p in &m.parents {
        let role = if p.kind.is_data() {
            p.kind.noun()
        } else if conversion {
            "source model"
        } else {
            "base model"
        };
        walk(a, p, &format!("{subject} ← {role} {}", p.artefact.name));
    }
}

/// The verdict on an artefact and its whole lineage.
pub fn assess(m: &Manifest) -> Assessment {
    let mut a = Assessment {
        verdict: Verdict::Allowed,
        reasons: Vec::new(),
        conditions: Vec::new(),
        facts: Vec::new(),
        licence_ids: Vec::new(),
        any_unknown: false,
    };
    let top = format!("{} {}", m.kind.noun(), m.artefact.name);
    walk(&mut a, m, &top);
    if a.reasons.is_empty() {
        a.reason(
            &top,
            Verdict::Unknown,
            "nothing is known about its terms".into(),
        );
    }
    a.verdict = a
        .reasons
        .iter()
        .map(|r| r.verdict)
        .max()
        .unwrap_or(Verdict::Unknown);
    a
}
