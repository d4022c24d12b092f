//! Every real chat template in `shared/models/templates/` renders each conversation of
//! `tests/fixtures/templates/cases.json` byte for byte as transformers' `apply_chat_template`
//! does (`scripts/make_template_fixtures.py` made the expected files), and fails where it
//! fails — with the template's own message where the template raised.
//!
//! Set `HERD_TEMPLATE_DUMP=dir` to write herd's renderings there for a closer look.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use herd_model::Error;
use herd_model::template::{ChatTemplate, RenderOptions, TemplateError, TemplateTime};
use serde_json::Value;

/// Renderings herd cannot reproduce, with the reason. The test fails if one of these starts
/// to match (remove it then) or if anything else differs.
const KNOWN_DIFFERENCES: [(&str, &str, &str); 2] = [
    // `"text"|safe + x`: in Python, adding a plain string to a `Markup` HTML-escapes the plain
    // one, so this template's tool list reaches the model as `{&#34;name&#34;: ...`. minijinja
    // concatenates without escaping and has no hook for `+`.
    (
        "meetkai-functionary-medium-v3.1",
        "tools",
        "Markup + str escapes in Python",
    ),
    (
        "meetkai-functionary-medium-v3.1",
        "tools_no_content",
        "Markup + str escapes in Python",
    ),
];

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/templates")
}

fn read_json(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Where two texts first differ, with a little context of each.
fn describe_diff(want: &str, got: &str) -> String {
    let at = want
        .char_indices()
        .zip(got.chars())
        .find(|((_, a), b)| a != b)
        .map(|((i, _), _)| i)
        .unwrap_or(want.len().min(got.len()));
    let ctx = |s: &str| -> String {
        let start = s[..at.min(s.len())]
            .char_indices()
            .rev()
            .nth(40)
            .map(|(i, _)| i)
            .unwrap_or(0);
        s[start..].chars().take(100).collect()
    };
    format!(
        "lengths {} vs {}, first difference at byte {at}\n      want: {:?}\n      got:  {:?}",
        want.len(),
        got.len(),
        ctx(want),
        ctx(got)
    )
}

#[test]
fn real_templates_match_transformers() {
    let dir = common::shared().join("models/templates");
    let cases = read_json(&fixtures().join("cases.json"));
    let now = TemplateTime::parse(cases["now"].as_str().unwrap()).unwrap();
    let tokens = &cases["special_tokens"];
    let dump = std::env::var_os("HERD_TEMPLATE_DUMP").map(PathBuf::from);

    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jinja"))
        .collect();
    names.sort();
    assert!(
        names.len() >= 60,
        "only {} templates in {}",
        names.len(),
        dir.display()
    );

    let mut failures = Vec::new();
    let mut per_template: BTreeMap<String, bool> = BTreeMap::new();
    let mut checked = 0;
    let mut known_seen = Vec::new();
    for path in &names {
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        let expected_path = fixtures().join("expected").join(format!("{stem}.json"));
        if !expected_path.exists() {
            failures.push(format!(
                "{stem}: no expected file; rerun scripts/make_template_fixtures.py"
            ));
            continue;
        }
        let expected = read_json(&expected_path);
        let source = std::fs::read_to_string(path).unwrap();
        let tmpl = match ChatTemplate::new(stem.as_str(), &source) {
            Ok(t) => t,
            Err(e) => {
                failures.push(format!("{stem}: does not compile: {e}"));
                per_template.insert(stem, false);
                continue;
            }
        };
        let mut ok = true;
        for (case_name, case) in cases["cases"].as_object().unwrap() {
            let Some(want) = expected.get(case_name) else {
                failures.push(format!(
                    "{stem} / {case_name}: not in the expected file; rerun scripts/make_template_fixtures.py"
                ));
                continue;
            };
            let opts = RenderOptions {
                add_generation_prompt: case["add_generation_prompt"].as_bool().unwrap_or(false),
                tools: case.get("tools").and_then(|t| t.as_array().cloned()),
                documents: None,
                bos_token: tokens["bos_token"].as_str().map(String::from),
                eos_token: tokens["eos_token"].as_str().map(String::from),
                extra: Default::default(),
                now: Some(now),
            };
            let messages = case["messages"].as_array().unwrap();
            let got = tmpl.render(messages, &opts);
            checked += 1;
            if let (Some(dir), Ok(text)) = (&dump, &got) {
                std::fs::create_dir_all(dir).unwrap();
                std::fs::write(dir.join(format!("{stem}.{case_name}.txt")), text).unwrap();
            }
            let problem = match (want.get("output").and_then(|o| o.as_str()), got) {
                (Some(w), Ok(g)) if w == g => None,
                (Some(w), Ok(g)) => Some(describe_diff(w, &g)),
                (Some(_), Err(e)) => Some(format!("herd failed: {e}")),
                (None, Ok(_)) => Some(format!(
                    "herd rendered, transformers failed with {}",
                    want["error"]
                )),
                (None, Err(e)) => {
                    let msg = want["error"].as_str().unwrap_or_default();
                    match (want["raised"].as_bool(), &e) {
                        (Some(true), Error::Template(TemplateError::Raised { message, .. }))
                            if message == msg =>
                        {
                            None
                        }
                        (Some(true), _) => Some(format!(
                            "template should raise {msg:?}, herd failed with: {e}"
                        )),
                        _ => None,
                    }
                }
            };
            let known = KNOWN_DIFFERENCES
                .iter()
                .find(|(t, c, _)| *t == stem && c == case_name);
            match (problem, known) {
                (Some(p), None) => {
                    ok = false;
                    failures.push(format!("{stem} / {case_name}: {p}"));
                }
                (Some(_), Some((_, _, why))) => {
                    ok = false;
                    known_seen.push(format!("{stem} / {case_name}: {why}"));
                }
                (None, Some(_)) => failures.push(format!(
                    "{stem} / {case_name}: listed in KNOWN_DIFFERENCES but matches now"
                )),
                (None, None) => {}
            }
        }
        per_template.insert(stem, ok);
    }
    let matching = per_template.values().filter(|ok| **ok).count();
    eprintln!(
        "{matching} of {} templates match transformers in all {} cases ({checked} renderings)",
        per_template.len(),
        cases["cases"].as_object().unwrap().len(),
    );
    for k in &known_seen {
        eprintln!("  known difference: {k}");
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
