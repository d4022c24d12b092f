//! Recognising a licence from its full text.
//!
//! Method: both texts become word tokens (lower case; punctuation, markup and URL schemes
//! dropped; letters and digits split, so `llama3` and `Llama 3` agree; lines that state a
//! copyright holder dropped, so a changed copyright line or filled-in `[yyyy] [name of
//! copyright owner]` placeholder does not count), and their similarity is the Sørensen–Dice
//! coefficient over multisets of word bigrams: `2·|A∩B| / (|A|+|B|)`. Bigrams rather than
//! words, because re-ordering and dropping clauses must cost something.
//!
//! A text is claimed as a reference licence only when all three hold:
//! - similarity ≥ [`CLAIM_THRESHOLD`] (0.95) — measured against the reference's *core* where
//!   one is defined (Apache-2.0 up to "END OF TERMS AND CONDITIONS", so files without the
//!   appendix match; Creative Commons 4.0 between "By exercising the Licensed Rights" and the
//!   "Creative Commons is not a party" trailer, so files without preamble or trailer match);
//! - every *required phrase* of the reference is present: the clauses that carry its meaning
//!   (MIT's grant, Llama's 700 million user threshold, "Attribution-NonCommercial 4.0
//!   International Public License" …). Close relatives differ by little text — CC BY and
//!   CC BY-NC score 0.978 against each other, Llama 3.1 and 3.2 0.972 — so these phrases, not
//!   the score, tell them apart;
//! - no *meaning-changing phrase* ("non-commercial", "research purposes only", "ShareAlike",
//!   "NoDerivatives", "endorse or promote") appears that the reference itself lacks, so a
//!   permissive text with a restriction written in is never claimed as the original.
//!
//! A text that resembles a reference (similarity ≥ [`RESEMBLE_THRESHOLD`]) but fails a test
//! is reported as a changed text, with the reason, and its licence stays unknown. Every real
//! licence file in `../shared` scores 1.000 (the MIT file of HumanEval 0.997: "The MIT
//! License" title); distinct licences in the reference set score at most 0.978 (CC BY vs
//! CC BY-NC), 0.972 (Llama 3.1 vs 3.2) and 0.931 (Qwen vs Tongyi Qianwen) against each other.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

/// Similarity at or above which a text can be claimed as a reference licence.
pub const CLAIM_THRESHOLD: f64 = 0.95;
/// Similarity at or above which a text is reported as a changed copy of a reference.
pub const RESEMBLE_THRESHOLD: f64 = 0.5;

struct Reference {
    id: &'static str,
    text: &'static str,
    required: &'static [&'static str],
    /// Phrases that bound the part compared: text before `start` / after `end` is left out of
    /// the similarity (both texts), when the candidate contains the phrase.
    start: Option<&'static str>,
    end: Option<&'static str>,
}

const CC_START: Option<&str> = Some("by exercising the licensed rights");
const CC_END: Option<&str> = Some("creative commons is not a party to its public licenses");
const BSD_COMMON: [&str; 3] = [
    "redistribution and use in source and binary forms with or without modification are permitted provided that the following conditions are met",
    "redistributions of source code must retain the above copyright notice",
    "redistributions in binary form must reproduce the above copyright notice",
];

macro_rules! reference {
    ($id:literal, [$($req:expr),* $(,)?]) => {
        reference!($id, [$($req),*], None, None)
    };
    ($id:literal, [$($req:expr),* $(,)?], $start:expr, $end:expr) => {
        Reference {
            id: $id,
            text: include_str!(concat!("../licenses/", $id, ".txt")),
            required: &[$($req),*],
            start: $start,
            end: $end,
        }
    };
}

/// The reference texts (`licenses/SOURCES.md` says where each comes from) and the phrases
/// that carry their terms.
static REFERENCES: &[Reference] = &[
    reference!(
        "Apache-2.0",
        [
            "apache license version 2 0",
            "grant of patent license",
            "you must give any other recipients of the work or derivative works a copy of this license",
        ],
        None,
        Some("end of terms and conditions")
    ),
    reference!(
        "MIT",
        [
            "permission is hereby granted free of charge",
            "without restriction including without limitation the rights to use copy modify merge publish distribute sublicense and or sell copies of the software",
            "the above copyright notice and this permission notice shall be included in all copies or substantial portions of the software",
        ]
    ),
    reference!(
        "BSD-2-Clause",
        [BSD_COMMON[0], BSD_COMMON[1], BSD_COMMON[2]]
    ),
    reference!(
        "BSD-3-Clause",
        [
            BSD_COMMON[0],
            BSD_COMMON[1],
            BSD_COMMON[2],
            "may be used to endorse or promote products derived from this software without specific prior written permission",
        ]
    ),
    reference!(
        "ISC",
        [
            "permission to use copy modify and or distribute this software for any purpose with or without fee is hereby granted"
        ]
    ),
    reference!("CC0-1.0", ["cc 0 1 0 universal", "waiver"]),
    reference!(
        "Unlicense",
        ["this is free and unencumbered software released into the public domain"]
    ),
    reference!(
        "CC-BY-4.0",
        ["attribution 4 0 international public license"],
        CC_START,
        CC_END
    ),
    reference!(
        "CC-BY-SA-4.0",
        ["attribution sharealike 4 0 international public license"],
        CC_START,
        CC_END
    ),
    reference!(
        "CC-BY-NC-4.0",
        ["attribution noncommercial 4 0 international public license"],
        CC_START,
        CC_END
    ),
    reference!(
        "CC-BY-NC-SA-4.0",
        ["attribution noncommercial sharealike 4 0 international public license"],
        CC_START,
        CC_END
    ),
    reference!(
        "CC-BY-ND-4.0",
        ["attribution noderivatives 4 0 international public license"],
        CC_START,
        CC_END
    ),
    reference!(
        "CC-BY-NC-ND-4.0",
        ["attribution noncommercial noderivatives 4 0 international public license"],
        CC_START,
        CC_END
    ),
    reference!(
        "llama1",
        [
            "llama license agreement",
            "non commercial research purposes"
        ]
    ),
    reference!(
        "llama2",
        [
            "llama 2 community license agreement",
            "700 million monthly active users",
            "acceptable use policy",
        ]
    ),
    reference!(
        "llama3.1",
        [
            "llama 3 1 community license",
            "llama 3 1 version release date",
            "700 million monthly active users",
            "built with llama",
            "acceptable use policy",
        ]
    ),
    reference!(
        "llama3.2",
        [
            "llama 3 2 community license",
            "llama 3 2 version release date",
            "700 million monthly active users",
            "built with llama",
            "acceptable use policy",
        ]
    ),
    reference!(
        "llama3.3",
        [
            "llama 3 3 community license",
            "llama 3 3 version release date",
            "700 million monthly active users",
            "built with llama",
            "acceptable use policy",
        ]
    ),
    reference!("gemma", ["gemma terms of use", "prohibited use policy"]),
    reference!(
        "qwen",
        [
            "qwen license agreement",
            "100 million monthly active users",
            "built with qwen",
        ]
    ),
    reference!(
        "tongyi-qianwen",
        [
            "tongyi qianwen license agreement",
            "100 million monthly active users",
        ]
    ),
    reference!(
        "deepseek",
        ["deepseek license agreement", "use restrictions"]
    ),
    reference!(
        "bigscience-openrail-m",
        ["bigscience open rail m license", "use restrictions"]
    ),
    reference!(
        "bigscience-bloom-rail-1.0",
        ["bigscience rail license v 1 0", "use restrictions"]
    ),
    reference!(
        "creativeml-openrail-m",
        ["creativeml open rail m", "use restrictions"]
    ),
    reference!(
        "bigcode-openrail-m",
        [
            "bigcode open rail m v 1 license agreement",
            "use restrictions"
        ]
    ),
];

/// Licences whose full text herd could not obtain from a registry: recognised by their title
/// together with the clause that carries their terms. All phrases must be present.
struct Marker {
    id: &'static str,
    all: &'static [&'static str],
}

static MARKERS: &[Marker] = &[
    Marker {
        id: "llama3",
        all: &[
            "meta llama 3 community license agreement",
            "700 million monthly active users",
        ],
    },
    Marker {
        id: "qwen-research",
        all: &["qwen research license agreement", "non commercial"],
    },
];

/// Phrases that change what a licence allows. One of these in a candidate text whose
/// reference lacks it stops the claim.
const MEANING_CHANGING: &[&str] = &[
    "non commercial",
    "noncommercial",
    "not for commercial",
    "no commercial",
    "research purposes only",
    "research use only",
    "research only",
    "sharealike",
    "share alike",
    "noderivatives",
    "no derivatives",
    "endorse or promote",
];

/// What a text was recognised as.
#[derive(Clone, Debug, PartialEq)]
pub enum Recognition {
    /// The text is this reference licence.
    Match { id: &'static str, similarity: f64 },
    /// The text carries this licence's title and key clauses (no reference text available).
    Markers {
        id: &'static str,
        markers: Vec<&'static str>,
    },
    /// The text resembles a reference but is not claimed as it.
    Changed {
        closest: &'static str,
        similarity: f64,
        why: String,
    },
    /// Nothing close; `closest` is the best score when above 0.2.
    Unrecognised {
        closest: Option<(&'static str, f64)>,
    },
}

/// Word tokens of a licence text, as described in the module documentation.
pub fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        if !is_copyright_line(line) {
            push_tokens(line, &mut out);
        }
    }
    out
}

/// Tokens of a short phrase or statement (no line is dropped).
pub fn phrase_tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    push_tokens(text, &mut out);
    out
}

fn push_tokens(s: &str, out: &mut Vec<String>) {
    let mut cur = String::new();
    let mut prev = 0u8;
    let flush = |cur: &mut String, out: &mut Vec<String>| {
        if !cur.is_empty() && !matches!(cur.as_str(), "http" | "https" | "www") {
            out.push(std::mem::take(cur));
        }
        cur.clear();
    };
    for ch in s.chars() {
        let kind = if ch.is_alphabetic() {
            1
        } else if ch.is_numeric() {
            2
        } else {
            0
        };
        if kind == 0 || (prev != 0 && kind != prev) {
            flush(&mut cur, out);
        }
        if kind != 0 {
            cur.extend(ch.to_lowercase());
        }
        prev = kind;
    }
    flush(&mut cur, out);
}

/// "Copyright (c) 2023 Foo", "Copyright 2021 OpenAI", "Copyright [yyyy] [name …]",
/// "(c) 2020 Bar" — but not "copyright notice that is included …", a wrapped sentence.
fn is_copyright_line(line: &str) -> bool {
    let l = line
        .trim_start_matches(|c: char| c.is_whitespace() || matches!(c, '#' | '*' | '/' | '-'))
        .to_lowercase();
    let holder_follows = |rest: &str| {
        let rest = rest.trim_start();
        rest.starts_with("(c)")
            || rest.starts_with('©')
            || rest.starts_with('[')
            || rest.starts_with('<')
            || rest.starts_with(|c: char| c.is_ascii_digit())
    };
    if let Some(rest) = l.strip_prefix("copyright") {
        return holder_follows(rest);
    }
    for mark in ["(c)", "©"] {
        if let Some(rest) = l.strip_prefix(mark) {
            return rest.trim_start().starts_with(|c: char| c.is_ascii_digit());
        }
    }
    false
}

/// Whether `phrase` (a space-separated token sequence) occurs in `toks`.
pub fn contains_phrase(toks: &[String], phrase: &str) -> bool {
    find_phrase(toks, phrase).is_some()
}

fn find_phrase(toks: &[String], phrase: &str) -> Option<usize> {
    let p: Vec<&str> = phrase.split(' ').collect();
    if p.is_empty() || p.len() > toks.len() {
        return None;
    }
    (0..=toks.len() - p.len()).find(|&i| p.iter().zip(&toks[i..]).all(|(a, b)| *a == b))
}

fn bigrams(toks: &[String]) -> HashMap<u64, u32> {
    let mut m = HashMap::new();
    for w in toks.windows(2) {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        w[0].hash(&mut h);
        w[1].hash(&mut h);
        *m.entry(h.finish()).or_insert(0) += 1;
    }
    m
}

fn dice_counts(a: &HashMap<u64, u32>, b: &HashMap<u64, u32>) -> f64 {
    let na: u32 = a.values().sum();
    let nb: u32 = b.values().sum();
    if na + nb == 0 {
        return 0.0;
    }
    let common: u32 = a
        .iter()
        .map(|(k, &x)| b.get(k).map_or(0, |&y| x.min(y)))
        .sum();
    2.0 * common as f64 / (na + nb) as f64
}

/// Sørensen–Dice coefficient of two token lists over their word bigrams.
pub fn similarity(a: &[String], b: &[String]) -> f64 {
    dice_counts(&bigrams(a), &bigrams(b))
}

/// The token range of `toks` between the reference's `start` and `end` phrases, where present.
fn core(toks: &[String], r: &Reference) -> std::ops::Range<usize> {
    let from = r.start.and_then(|s| find_phrase(toks, s)).unwrap_or(0);
    let to = r
        .end
        .and_then(|e| find_phrase(&toks[from..], e).map(|i| from + i + e.split(' ').count()))
        .unwrap_or(toks.len());
    from..to
}

struct Prepared {
    reference: &'static Reference,
    all: Vec<String>,
    core_bigrams: HashMap<u64, u32>,
}

fn prepared() -> &'static [Prepared] {
    static P: OnceLock<Vec<Prepared>> = OnceLock::new();
    P.get_or_init(|| {
        REFERENCES
            .iter()
            .map(|r| {
                let all = tokens(r.text);
                let core_bigrams = bigrams(&all[core(&all, r)]);
                Prepared {
                    reference: r,
                    all,
                    core_bigrams,
                }
            })
            .collect()
    })
}

/// The ids of all reference texts, with the texts (for tests and documentation).
pub fn references() -> impl Iterator<Item = (&'static str, &'static str)> {
    REFERENCES.iter().map(|r| (r.id, r.text))
}

/// The ids recognised by markers only, with their marker phrases.
pub fn marker_licences() -> impl Iterator<Item = (&'static str, &'static [&'static str])> {
    MARKERS.iter().map(|m| (m.id, m.all))
}

/// Why a candidate close to `p` is not claimed as it, or `None` when it is.
fn rejection(p: &Prepared, cand: &[String], score: f64) -> Option<String> {
    if score < CLAIM_THRESHOLD {
        return Some(format!(
            "similarity {score:.3} is below {CLAIM_THRESHOLD}: more than small edits"
        ));
    }
    if let Some(missing) = p
        .reference
        .required
        .iter()
        .find(|ph| !contains_phrase(cand, ph))
    {
        return Some(format!("the clause \"{missing}\" is missing or changed"));
    }
    if let Some(added) = MEANING_CHANGING
        .iter()
        .find(|ph| contains_phrase(cand, ph) && !contains_phrase(&p.all, ph))
    {
        return Some(format!(
            "it adds \"{added}\", which the original does not say"
        ));
    }
    None
}

/// Recognises a licence text; see the module documentation for the method.
pub fn recognise(text: &str) -> Recognition {
    let cand = tokens(text);
    if cand.len() < 2 {
        return Recognition::Unrecognised { closest: None };
    }
    // Most references compare the whole text; the bigrams of each distinct cut are counted once.
    let mut cuts: HashMap<(usize, usize), HashMap<u64, u32>> = HashMap::new();
    let mut scored: Vec<(&Prepared, f64)> = prepared()
        .iter()
        .map(|p| {
            let range = core(&cand, p.reference);
            let b = cuts
                .entry((range.start, range.end))
                .or_insert_with(|| bigrams(&cand[range]));
            (p, dice_counts(b, &p.core_bigrams))
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    for &(p, s) in &scored {
        if s < CLAIM_THRESHOLD {
            break;
        }
        if rejection(p, &cand, s).is_none() {
            return Recognition::Match {
                id: p.reference.id,
                similarity: s,
            };
        }
    }
    for m in MARKERS {
        if m.all.iter().all(|ph| contains_phrase(&cand, ph)) {
            return Recognition::Markers {
                id: m.id,
                markers: m.all.to_vec(),
            };
        }
    }
    let Some(&(best, score)) = scored.first() else {
        return Recognition::Unrecognised { closest: None };
    };
    if score >= RESEMBLE_THRESHOLD {
        return Recognition::Changed {
            closest: best.reference.id,
            similarity: score,
            why: rejection(best, &cand, score).unwrap_or_default(),
        };
    }
    Recognition::Unrecognised {
        closest: Some((best.reference.id, score)).filter(|_| score > 0.2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copyright_lines_are_told_from_wrapped_sentences() {
        assert!(is_copyright_line("Copyright (c) 2023 Teknium"));
        assert!(is_copyright_line(
            "   Copyright [yyyy] [name of copyright owner]"
        ));
        assert!(is_copyright_line("Copyright 2021 OpenAI"));
        assert!(is_copyright_line("(c) 2020 Someone"));
        assert!(!is_copyright_line(
            "      copyright notice that is included in or attached to the work"
        ));
        assert!(!is_copyright_line(
            "(c) You must retain, in the Source form of any Derivative Works"
        ));
    }

    #[test]
    fn tokens_split_letters_from_digits_and_drop_schemes() {
        assert_eq!(
            phrase_tokens("Llama3.1 — see https://www.llama.com/"),
            ["llama", "3", "1", "see", "llama", "com"]
        );
    }

    #[test]
    fn every_reference_recognises_itself() {
        for (id, text) in references() {
            match recognise(text) {
                Recognition::Match {
                    id: got,
                    similarity,
                } => {
                    assert_eq!(got, id);
                    assert!(similarity > 0.999, "{id}: {similarity}");
                }
                other => panic!("{id}: {other:?}"),
            }
        }
    }
}
