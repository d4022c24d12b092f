//! The YAML front matter of Hugging Face model and dataset cards (`README.md` between two
//! `---` lines): the small part of YAML that cards use for `license`, `license_name`,
//! `base_model` and `datasets` — scalars, block lists and inline lists. Nested mappings
//! (`model-index`, `configs`) are skipped, not parsed: herd needs none of them, and a YAML
//! crate for them would be the only heavy dependency of this crate.

/// A top-level value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    List(Vec<String>),
    /// A mapping or anything else herd does not read.
    Other,
}

impl Value {
    /// The value as a list of strings (a scalar is a list of one).
    pub fn strings(&self) -> Vec<String> {
        match self {
            Value::Str(s) if s.is_empty() => Vec::new(),
            Value::Str(s) => vec![s.clone()],
            Value::List(v) => v.clone(),
            Value::Other => Vec::new(),
        }
    }
}

/// Top-level fields in order, with the 1-based line of each key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FrontMatter {
    pub fields: Vec<(String, Value, usize)>,
}

impl FrontMatter {
    pub fn get(&self, key: &str) -> Option<(&Value, usize)> {
        self.fields
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, v, l)| (v, *l))
    }
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    if s.len() >= 2
        && ((s.starts_with('"') && s.ends_with('"')) || (s.starts_with('\'') && s.ends_with('\'')))
    {
        let inner = &s[1..s.len() - 1];
        if s.starts_with('"') {
            return inner.replace("\\\"", "\"").replace("\\\\", "\\");
        }
        return inner.replace("''", "'");
    }
    // A plain scalar ends at " #" (a comment).
    match s.find(" #") {
        Some(i) => s[..i].trim_end().to_string(),
        None => s.to_string(),
    }
}

fn inline_list(s: &str) -> Option<Vec<String>> {
    let inner = s.trim().strip_prefix('[')?.strip_suffix(']')?;
    Some(
        inner
            .split(',')
            .map(unquote)
            .filter(|x| !x.is_empty())
            .collect(),
    )
}

/// Parses the front matter of a card. `Ok(None)`: the card has none. `Err`: it opens one
/// that is broken, with the line and the problem.
pub fn parse(text: &str) -> Result<Option<FrontMatter>, String> {
    let text = text.trim_start_matches('\u{feff}');
    let lines: Vec<&str> = text.lines().collect();
    if lines.first().map(|l| l.trim_end()) != Some("---") {
        return Ok(None);
    }
    let close = lines
        .iter()
        .skip(1)
        .position(|l| matches!(l.trim_end(), "---" | "..."))
        .ok_or("the front matter opened by '---' on line 1 is never closed")?
        + 1;
    let mut fm = FrontMatter::default();
    let mut i = 1;
    while i < close {
        let line = lines[i];
        let n = i + 1;
        i += 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) || line.starts_with('-') {
            // Belongs to a key handled below; reaching it here means no key owns it.
            return Err(format!(
                "line {n}: {trimmed:?} is indented or a list item, but no key comes before it"
            ));
        }
        let Some((key, rest)) = line.split_once(':') else {
            return Err(format!(
                "line {n}: expected 'key: value', found {trimmed:?}"
            ));
        };
        let key = unquote(key);
        let rest = rest.trim();
        // The lines that belong to this key: indented ones and list items.
        let start = i;
        while i < close {
            let l = lines[i];
            if l.trim().is_empty() || l.starts_with([' ', '\t']) || l.starts_with('-') {
                i += 1;
            } else {
                break;
            }
        }
        let body: Vec<&str> = lines[start..i]
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        let value = if rest.starts_with('[') {
            match inline_list(rest) {
                Some(v) => Value::List(v),
                None => return Err(format!("line {n}: the list of '{key}' is not closed")),
            }
        } else if rest.starts_with('{') {
            Value::Other
        } else if matches!(rest, "|" | ">" | "|-" | ">-") {
            Value::Str(body.join(if rest.starts_with('|') { "\n" } else { " " }))
        } else if !rest.is_empty() {
            Value::Str(unquote(rest))
        } else if body.iter().all(|l| l.starts_with('-')) && !body.is_empty() {
            let items: Vec<&str> = body.iter().map(|l| l[1..].trim()).collect();
            let mapping =
                |it: &str| !it.starts_with(['"', '\'']) && (it.contains(": ") || it.ends_with(':'));
            if !items.iter().any(|it| mapping(it)) {
                Value::List(items.iter().map(|it| unquote(it)).collect())
            } else {
                Value::Other
            }
        } else if body.is_empty() {
            Value::Str(String::new())
        } else {
            Value::Other
        };
        fm.fields.push((key, value, n));
    }
    Ok(Some(fm))
}

fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.starts_with(|c: char| "-?:,[]{}#&*!|>'\"%@`".contains(c) || c.is_whitespace())
        && !s.ends_with(char::is_whitespace)
        && !matches!(s, "true" | "false" | "null" | "yes" | "no" | "~");
    if plain {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// Renders fields as a front matter block (with both `---` lines).
pub fn render(fields: &[(String, Value)]) -> String {
    let mut out = String::from("---\n");
    for (k, v) in fields {
        match v {
            Value::Str(s) => out.push_str(&format!("{k}: {}\n", quote(s))),
            Value::List(items) => {
                out.push_str(&format!("{k}:\n"));
                for it in items {
                    out.push_str(&format!("- {}\n", quote(it)));
                }
            }
            Value::Other => {}
        }
    }
    out.push_str("---\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_cards_use() {
        let card = "---\nlicense: llama2\nlicense_name: \"Llama 2: community\"\nbase_model:\n  - meta-llama/Llama-2-7b-hf\ndatasets: [tatsu-lab/alpaca, 'gsm8k']\nmodel-index:\n- name: x\n  results: []\ntags:\n- a # comment\n---\n# body\n";
        let fm = parse(card).unwrap().unwrap();
        assert_eq!(fm.get("license").unwrap().0, &Value::Str("llama2".into()));
        assert_eq!(
            fm.get("license_name").unwrap().0,
            &Value::Str("Llama 2: community".into())
        );
        assert_eq!(
            fm.get("base_model").unwrap().0.strings(),
            ["meta-llama/Llama-2-7b-hf"]
        );
        assert_eq!(
            fm.get("datasets").unwrap().0.strings(),
            ["tatsu-lab/alpaca", "gsm8k"]
        );
        assert_eq!(fm.get("model-index").unwrap().0, &Value::Other);
        assert_eq!(fm.get("tags").unwrap().0.strings(), ["a"]);
    }

    #[test]
    fn broken_front_matter_is_a_problem_with_its_line() {
        assert!(parse("# no front matter\n").unwrap().is_none());
        let e = parse("---\nlicense: mit\n").unwrap_err();
        assert!(e.contains("never closed"), "{e}");
        let e = parse("---\nlicense mit\n---\n").unwrap_err();
        assert!(e.starts_with("line 2"), "{e}");
        let e = parse("---\ndatasets: [a, b\n---\n").unwrap_err();
        assert!(e.contains("not closed"), "{e}");
    }

    #[test]
    fn odd_input_is_an_answer_not_a_panic() {
        for text in [
            "---\n-\n---\n",
            "---\nkey: \"\n---\n",
            "---\n'\n---\n",
            "---\nlicense: é\n  - ü\n---\n",
            "---\n:\n---\n",
            "---\nlicense: [\n---\n",
            "---\n---\n",
            "---",
            "\u{feff}---\nlicense: mit\n---\n",
        ] {
            let _ = parse(text);
        }
        let fm = parse("\u{feff}---\nlicense: mit\n---\n").unwrap().unwrap();
        assert_eq!(fm.get("license").unwrap().0.strings(), ["mit"]);
    }

    #[test]
    fn render_then_parse_round_trips() {
        let fields = vec![
            ("license".to_string(), Value::Str("other".into())),
            (
                "license_name".to_string(),
                Value::Str("llama2 AND cc-by-nc-4.0".into()),
            ),
            (
                "base_model".to_string(),
                Value::List(vec!["a/b".into(), "x: y".into()]),
            ),
        ];
        let fm = parse(&render(&fields)).unwrap().unwrap();
        let back: Vec<(String, Value)> = fm.fields.into_iter().map(|(k, v, _)| (k, v)).collect();
        assert_eq!(back, fields);
    }
}
