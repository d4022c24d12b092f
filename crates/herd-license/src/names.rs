//! Licence names as people write them ("Apache 2.0", "cc-by-nc-sa-4.0", "CC BY-NC 4.0",
//! "llama3.1", "Meta Llama 3 Community License") to catalogue ids.
//!
//! Text is compared as word tokens (`text::phrase_tokens`: lower case, punctuation dropped,
//! letters split from digits), so `Apache-2.0`, `apache 2.0` and `Apache License, Version 2.0`
//! meet. At each position the longest alias wins, so "Llama 3.1" is not read as "Llama 3" and
//! "CC BY-NC 4.0" is not read as "CC BY".

use std::sync::OnceLock;

use crate::catalogue;
use crate::text::phrase_tokens;

/// A licence named in a text.
#[derive(Clone, Debug, PartialEq)]
pub struct Mention {
    pub id: String,
    /// Token range of the name in the text's tokens.
    pub start: usize,
    pub end: usize,
}

fn alias_table() -> &'static [(Vec<String>, &'static str)] {
    static T: OnceLock<Vec<(Vec<String>, &'static str)>> = OnceLock::new();
    T.get_or_init(|| {
        let mut t: Vec<(Vec<String>, &'static str)> = catalogue::aliases()
            .into_iter()
            .map(|(a, id)| (a.split(' ').map(String::from).collect(), id))
            .collect();
        // Longest first, so the first match at a position is the longest.
        t.sort_by_key(|(a, _)| std::cmp::Reverse(a.len()));
        t
    })
}

/// A Creative Commons name at `toks[i..]`: `cc by nc sa 4 0`, `creative commons
/// attribution noncommercial sharealike 4 0`, `cc by 4`. Returns the id and the end.
fn creative_commons_at(toks: &[String], i: usize) -> Option<(String, usize)> {
    let t = |k: usize| toks.get(k).map(String::as_str);
    let mut j = match (t(i), t(i + 1)) {
        (Some("cc"), _) => i + 1,
        (Some("creative"), Some("commons")) => i + 2,
        _ => return None,
    };
    if !matches!(t(j), Some("by" | "attribution")) {
        return None;
    }
    j += 1;
    let mut id = String::from("CC-BY");
    let (mut nc, mut nd, mut sa) = (false, false, false);
    loop {
        match (t(j), t(j + 1)) {
            (Some("nc" | "noncommercial"), _) if !nc => (nc, j) = (true, j + 1),
            (Some("non"), Some("commercial")) if !nc => (nc, j) = (true, j + 2),
            (Some("nd" | "noderivatives" | "noderivs"), _) if !nd => (nd, j) = (true, j + 1),
            (Some("no"), Some("derivatives")) if !nd => (nd, j) = (true, j + 2),
            (Some("sa" | "sharealike"), _) if !sa => (sa, j) = (true, j + 1),
            (Some("share"), Some("alike")) if !sa => (sa, j) = (true, j + 2),
            _ => break,
        }
    }
    if nd && sa {
        return None;
    }
    for (on, s) in [(nc, "-NC"), (nd, "-ND"), (sa, "-SA")] {
        if on {
            id.push_str(s);
        }
    }
    let major = t(j).filter(|v| matches!(*v, "1" | "2" | "3" | "4"));
    if let Some(major) = major {
        let minor = t(j + 1).filter(|v| matches!(*v, "0" | "5"));
        id.push_str(&format!("-{major}.{}", minor.unwrap_or("0")));
        j += 1 + usize::from(minor.is_some());
    }
    catalogue::lookup(&id).map(|terms| (terms.id, j))
}

/// Every licence named in `text`, in order.
pub fn mentions(text: &str) -> Vec<Mention> {
    mentions_in(&phrase_tokens(text))
}

pub(crate) fn mentions_in(toks: &[String]) -> Vec<Mention> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if let Some((id, end)) = creative_commons_at(toks, i) {
            out.push(Mention { id, start: i, end });
            i = end;
            continue;
        }
        let hit = alias_table().iter().find(|(a, _)| {
            a.len() <= toks.len() - i && a.iter().zip(&toks[i..]).all(|(x, y)| x == y)
        });
        match hit {
            Some((a, id)) => {
                out.push(Mention {
                    id: id.to_string(),
                    start: i,
                    end: i + a.len(),
                });
                i += a.len();
            }
            None => i += 1,
        }
    }
    out
}

/// The catalogue id of a licence field's value (a card's `license:`, GGUF `general.license`),
/// or `None` when it names no licence herd knows ("other", "unknown", a custom name) or
/// names several different ones.
pub fn identify(value: &str) -> Option<String> {
    if let Some(t) = catalogue::lookup(value) {
        return Some(t.id);
    }
    let found = mentions(value);
    let first = found.first()?;
    found
        .iter()
        .all(|m| m.id == first.id)
        .then(|| first.id.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(text: &str) -> Vec<String> {
        mentions(text).into_iter().map(|m| m.id).collect()
    }

    #[test]
    fn names_as_written_become_catalogue_ids() {
        for (written, id) in [
            ("Apache-2.0", "Apache-2.0"),
            ("apache 2.0", "Apache-2.0"),
            ("Apache License, Version 2.0", "Apache-2.0"),
            ("MIT", "MIT"),
            ("The MIT License", "MIT"),
            ("cc-by-nc-sa-4.0", "CC-BY-NC-SA-4.0"),
            ("CC BY-NC 4.0", "CC-BY-NC-4.0"),
            (
                "Creative Commons Attribution-NonCommercial-ShareAlike 4.0",
                "CC-BY-NC-SA-4.0",
            ),
            ("CC BY-SA 3.0", "CC-BY-SA-3.0"),
            ("CC BY-NC", "CC-BY-NC"),
            ("cc0-1.0", "CC0-1.0"),
            ("llama2", "llama2"),
            ("llama3", "llama3"),
            ("llama3.1", "llama3.1"),
            ("Llama 3.2 Community License", "llama3.2"),
            ("META LLAMA 3 COMMUNITY LICENSE AGREEMENT", "llama3"),
            ("gemma", "gemma"),
            ("tongyi-qianwen", "tongyi-qianwen"),
            ("qwen-research", "qwen-research"),
            ("openrail++", "openrail"),
            ("bigscience-bloom-rail-1.0", "bigscience-bloom-rail-1.0"),
            ("creativeml-openrail-m", "creativeml-openrail-m"),
            ("GPL-3.0", "GPL-3.0-only"),
        ] {
            assert_eq!(identify(written).as_deref(), Some(id), "{written}");
        }
        for unknown in ["other", "unknown", "", "proprietary", "MIT OR CC-BY-NC-4.0"] {
            assert_eq!(identify(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn statements_name_each_licence_once() {
        assert_eq!(
            ids(
                "License: code Apache-2.0 (LICENSE copied); README badge: Data License CC BY-NC 4.0, so non-commercial."
            ),
            ["Apache-2.0", "CC-BY-NC-4.0"]
        );
        assert_eq!(
            ids("dual licensed under MIT or Apache 2.0"),
            ["MIT", "Apache-2.0"]
        );
    }
}
