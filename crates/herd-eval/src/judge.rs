//! LLM judges: the prompts (MT-bench's `judge_prompts.jsonl`, the 2023 Vicuna `prompt.jsonl`)
//! and robust parsers for what judges write back: a pair of scores (`8 9`, `(10, 1)`,
//! `Assistant 1: 7/10`), a single rating (`[[7]]`, `Rating: 6/10`), or a verdict (`[[A]]`,
//! or `{"verdict": "A"}` from a judge held to JSON).

use std::collections::HashMap;
use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::data::{self, ReadOptions};
use crate::error::{Error, Result};

/// Why a judgment gave no score.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unparsed(pub String);

fn re(s: &str) -> Regex {
    // Only constant patterns reach here, tested below.
    Regex::new(s).unwrap_or_else(|e| panic!("bad built-in pattern {s}: {e}"))
}

const NUM: &str = r"(\d+(?:\.\d+)?)";

static FIRST_LINE_PAIR: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"^\s*(?:\*\*)?{NUM}(?:/10)?(?:\*\*)?\s+(?:\*\*)?{NUM}(?:/10)?(?:\*\*)?\s*$"
    ))
});
static TUPLE: LazyLock<Regex> = LazyLock::new(|| re(&format!(r"\(\s*{NUM}\s*,\s*{NUM}\s*\)")));
static ASSISTANT_N: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"(?i)assistant\s*([12])\s*(?:'s score|score)?\s*(?::|=|-|a score of|receives a score of|gets a score of|scored)\s*\**\s*{NUM}(?:\s*/\s*10)?"
    ))
});
static DOUBLE_BRACKET: LazyLock<Regex> =
    LazyLock::new(|| re(&format!(r"\[\[\s*{NUM}\s*(?:/\s*10\s*)?\]\]")));
static SINGLE_BRACKET: LazyLock<Regex> = LazyLock::new(|| re(&format!(r"\[\s*{NUM}\s*\]")));
static RATING_WORD: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"(?i)(?:rating|score)\s*(?:is|of|:)?\s*\**\s*{NUM}\s*(?:/\s*10|out of 10)?"
    ))
});
static OUT_OF_TEN: LazyLock<Regex> =
    LazyLock::new(|| re(&format!(r"{NUM}\s*(?:/\s*10|out of 10)\b")));
static VERDICT: LazyLock<Regex> = LazyLock::new(|| re(r"\[\[\s*([ABC])\s*\]\]"));

fn num(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|x| x.is_finite())
}

/// The two scores of a pairwise review (the 2023 Vicuna format): the first line `8 9` as
/// FastChat read it, else the last `(x, y)`, else `Assistant 1: x … Assistant 2: y`.
pub fn parse_pair_scores(text: &str) -> Result<(f64, f64), Unparsed> {
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let first = first.replace(',', " ");
    if let Some(c) = FIRST_LINE_PAIR.captures(&first)
        && let (Some(a), Some(b)) = (num(&c[1]), num(&c[2]))
    {
        return Ok((a, b));
    }
    let (mut s1, mut s2) = (None, None);
    for c in ASSISTANT_N.captures_iter(text) {
        let v = num(&c[2]);
        if &c[1] == "1" {
            s1 = v.or(s1);
        } else {
            s2 = v.or(s2);
        }
    }
    if let (Some(a), Some(b)) = (s1, s2) {
        return Ok((a, b));
    }
    // A tuple last: coordinates such as `(10, 4)` in a maths review look the same.
    match TUPLE.captures_iter(text).last() {
        Some(c) if num(&c[1]).is_some_and(|a| a <= 10.0) && num(&c[2]).is_some_and(|b| b <= 10.0) => {
            Ok((num(&c[1]).unwrap_or(0.0), num(&c[2]).unwrap_or(0.0)))
        }
        _ => Err(Unparsed(
            "no score pair: the first line is not two numbers and no '(x, y)' or 'Assistant 1: x' / 'Assistant 2: y' was found".into(),
        )),
    }
}

/// A 1–10 rating: `[[7]]`, else `[7]` (the first of either, as FastChat's `run_judge_single`
/// reads them), else the last `Rating: 6/10`, `score of 8` or `6/10`; or `{"rating": 7}`.
pub fn parse_rating(text: &str) -> Result<f64, Unparsed> {
    if let Ok(serde_json::Value::Object(o)) = serde_json::from_str::<serde_json::Value>(text.trim())
        && let Some(v) = o.get("rating").or_else(|| o.get("score"))
        && let Some(x) = v.as_f64().or_else(|| v.as_str().and_then(num))
    {
        return in_range(x);
    }
    for pat in [&*DOUBLE_BRACKET, &*SINGLE_BRACKET] {
        if let Some(c) = pat.captures(text)
            && let Some(x) = num(&c[1])
        {
            return in_range(x);
        }
    }
    for pat in [&*RATING_WORD, &*OUT_OF_TEN] {
        if let Some(c) = pat.captures_iter(text).last()
            && let Some(x) = num(&c[1])
        {
            return in_range(x);
        }
    }
    Err(Unparsed(
        "no rating: no [[n]], 'Rating: n' or 'n/10' found".into(),
    ))
}

fn in_range(x: f64) -> Result<f64, Unparsed> {
    if (0.0..=10.0).contains(&x) {
        Ok(x)
    } else {
        Err(Unparsed(format!("rating {x} is outside 0-10")))
    }
}

/// A pairwise verdict: which answer won.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    A,
    B,
    Tie,
}

/// `[[A]]`, `[[B]]` or `[[C]]` (a tie) as MT-bench asks for. A judge that writes more than one
/// is read as FastChat's `run_judge_pair` reads it: any `[[A]]` wins, then `[[B]]`, then
/// `[[C]]`. Also `{"verdict": "A"}` from a judge held to JSON.
pub fn parse_verdict(text: &str) -> Result<Verdict, Unparsed> {
    if let Ok(serde_json::Value::Object(o)) = serde_json::from_str::<serde_json::Value>(text.trim())
        && let Some(v) = o.get("verdict").and_then(|v| v.as_str())
    {
        return verdict_letter(v.trim());
    }
    let found: Vec<String> = VERDICT
        .captures_iter(text)
        .map(|c| c[1].to_string())
        .collect();
    for letter in ["A", "B", "C"] {
        if found.iter().any(|f| f == letter) {
            return verdict_letter(letter);
        }
    }
    Err(Unparsed(
        "no verdict: no [[A]], [[B]] or [[C]] found".into(),
    ))
}

fn verdict_letter(s: &str) -> Result<Verdict, Unparsed> {
    match s {
        "A" => Ok(Verdict::A),
        "B" => Ok(Verdict::B),
        "C" | "tie" | "TIE" | "Tie" => Ok(Verdict::Tie),
        other => Err(Unparsed(format!("verdict {other:?} is not A, B or C"))),
    }
}

/// One judge prompt: a system prompt and a template with `{question}`-style holes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JudgePrompt {
    pub name: String,
    pub system: String,
    pub template: String,
    /// Vicuna prompts fill `{prompt}` with this.
    pub default_prompt: Option<String>,
}

impl JudgePrompt {
    /// The template with `{key}` replaced by its value (other braces are left alone, as the
    /// prompts contain JSON examples).
    pub fn fill(&self, vars: &[(&str, &str)]) -> String {
        fill(&self.template, vars)
    }
}

/// Replaces `{key}` holes in one pass, so that text put in never gets replaced again.
pub fn fill(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match after.find('}').and_then(|j| {
            let key = &after[..j];
            vars.iter().find(|(k, _)| *k == key).map(|(_, v)| (j, *v))
        }) {
            Some((j, v)) => {
                out.push_str(v);
                rest = &after[j + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// MT-bench's judge prompts by name (`single-v1`, `pair-v2-multi-turn` …).
pub fn read_mt_bench_prompts(path: &Path) -> Result<HashMap<String, JudgePrompt>> {
    let mut out = HashMap::new();
    for r in data::read(path, &ReadOptions::default())? {
        let name = r.text("name")?;
        out.insert(
            name.clone(),
            JudgePrompt {
                name,
                system: r.text("system_prompt")?,
                template: r.text("prompt_template")?,
                default_prompt: None,
            },
        );
    }
    Ok(out)
}

/// The 2023 Vicuna prompts by category (`general`, `coding`, `math`); other categories use
/// `general`, as FastChat's `eval_gpt_review.py` did.
pub fn read_vicuna_prompts(path: &Path) -> Result<HashMap<String, JudgePrompt>> {
    let mut out = HashMap::new();
    for r in data::read(path, &ReadOptions::default())? {
        let category = r.text("category")?;
        let default_prompt = r
            .fields
            .get("defaults")
            .and_then(|d| d.get("prompt"))
            .and_then(|p| p.as_str())
            .map(str::to_string);
        out.insert(
            category.clone(),
            JudgePrompt {
                name: category,
                system: r.text("system_prompt")?,
                template: r.text("prompt_template")?,
                default_prompt,
            },
        );
    }
    if !out.contains_key("general") {
        return Err(Error::file(path, "no prompt for the 'general' category"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_scores_in_the_forms_judges_write() {
        assert_eq!(parse_pair_scores("8 9\nBoth were good."), Ok((8.0, 9.0)));
        assert_eq!(parse_pair_scores("8.5 9\n"), Ok((8.5, 9.0)));
        assert_eq!(parse_pair_scores("7, 10\nx"), Ok((7.0, 10.0)));
        assert_eq!(
            parse_pair_scores("Work...\nOutput: (1, 10)"),
            Ok((1.0, 10.0))
        );
        assert_eq!(
            parse_pair_scores("First...\nScores:\nAssistant 1: 2 (bad)\nAssistant 2: 1/10\n"),
            Ok((2.0, 1.0))
        );
        assert_eq!(
            parse_pair_scores(
                "I would give Assistant 1 a score of 10 and Assistant 2 a score of 1."
            ),
            Ok((10.0, 1.0))
        );
        assert!(parse_pair_scores("Both are fine.").is_err());
    }

    #[test]
    fn ratings_in_the_forms_judges_write() {
        assert_eq!(parse_rating("Good answer. Rating: [[7]]"), Ok(7.0));
        assert_eq!(parse_rating("[[8.5]]"), Ok(8.5));
        // The first [[n]], as FastChat reads it, even when the judge writes another later.
        assert_eq!(parse_rating("[[3]] ... on reflection [[5]]"), Ok(3.0));
        assert_eq!(parse_rating("Rating: [5]"), Ok(5.0));
        assert_eq!(
            parse_rating("8.5 9"),
            Err(Unparsed(
                "no rating: no [[n]], 'Rating: n' or 'n/10' found".into()
            ))
        );
        assert_eq!(parse_rating("Rating: 6/10"), Ok(6.0));
        assert_eq!(parse_rating("I give it a score of 4."), Ok(4.0));
        assert_eq!(parse_rating("{\"rating\": 3}"), Ok(3.0));
        assert!(parse_rating("[[42]]").is_err());
        assert!(parse_rating("no idea").is_err());
    }

    #[test]
    fn verdicts() {
        assert_eq!(parse_verdict("... [[A]]"), Ok(Verdict::A));
        assert_eq!(parse_verdict("[[C]]"), Ok(Verdict::Tie));
        // FastChat's precedence when a judge writes several.
        assert_eq!(parse_verdict("not [[C]] but [[B]]"), Ok(Verdict::B));
        assert_eq!(parse_verdict("[[B]] or [[A]]"), Ok(Verdict::A));
        assert_eq!(parse_verdict("{\"verdict\": \"B\"}"), Ok(Verdict::B));
        assert!(parse_verdict("A is better").is_err());
    }

    #[test]
    fn fill_replaces_once_and_keeps_other_braces() {
        let t = "Q: {question}\n{\"a\": 1}\nA: {answer}";
        assert_eq!(
            fill(t, &[("question", "{answer}"), ("answer", "42")]),
            "Q: {answer}\n{\"a\": 1}\nA: 42"
        );
    }
}
