//! Judgments made elsewhere, stored as runs so that the same relative scores, win rates and
//! ratings come out of them: the 2023 Vicuna GPT-4 review files (`review_A_B.jsonl`, scores
//! `x y` in free text), FastChat's MT-bench judgment files (`*_single.jsonl`,
//! `*_pair.jsonl`), and AlpacaEval annotations (`preference` 1, 2 or 0).
//!
//! Every judge text is parsed again by herd's parsers; where the file also holds the score
//! it recorded, both are kept so that the two can be compared.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::data::{self, ReadOptions, Record};
use crate::error::{Error, Result};
use crate::judge;
use crate::runner::{pair_detail, summarize};
use crate::store::{ItemRow, RunInfo, Store, now, sha256_hex};
use crate::task::Kind;

/// What an import did.
#[derive(Clone, Debug, Default)]
pub struct Imported {
    pub runs: Vec<String>,
    pub judgments: usize,
    /// Judge texts herd could not read a score from: file, line, reason.
    pub unparsed: Vec<(PathBuf, usize, String)>,
    /// Parsed scores that differ from the score the file records.
    pub disagreements: Vec<(PathBuf, usize, String)>,
}

/// One run made by an import: model, task name, items, kind.
type Group = (String, String, Vec<ItemRow>, Kind);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    VicunaReview,
    MtBenchSingle,
    MtBenchPair,
    AlpacaEval,
}

impl Source {
    /// Guesses the format from a file's name and first row.
    pub fn detect(path: &Path) -> Result<Source> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let rows = data::read(path, &ReadOptions::default())?;
        let first = rows.first().ok_or_else(|| Error::file(path, "no rows"))?;
        let has = |k: &str| first.fields.contains_key(k);
        Ok(if has("g1_winner") {
            Source::MtBenchPair
        } else if has("judgment") && has("score") {
            Source::MtBenchSingle
        } else if has("preference") && has("generator_1") {
            Source::AlpacaEval
        } else if has("answer1_id") || name.starts_with("review_") {
            Source::VicunaReview
        } else {
            return Err(Error::file(
                path,
                "not a review, MT-bench judgment or AlpacaEval annotation file",
            ));
        })
    }
}

/// Imports one file; the run id is `import:` and the file name (the folder too for Vicuna
/// reviews, whose names repeat across folders). Importing the same file again adds nothing.
pub fn import_file(
    store: &mut Store,
    path: &Path,
    source: Option<Source>,
    out: &mut Imported,
) -> Result<()> {
    let source = match source {
        Some(s) => s,
        None => Source::detect(path)?,
    };
    let rows = data::read(path, &ReadOptions::default())?;
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("judgments");
    let parent = path
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|s| s.to_str())
        .unwrap_or("");
    let groups: Vec<Group> = match source {
        Source::VicunaReview => vec![vicuna(path, &rows, out)?],
        Source::AlpacaEval => vec![alpaca(&rows, out)?],
        Source::MtBenchSingle => mt_single(path, &rows, out)?,
        Source::MtBenchPair => mt_pair(path, &rows, out)?,
    };
    for (model, task, items, kind) in groups {
        let id = format!("import:{parent}/{stem}:{model}");
        let info = RunInfo {
            id: id.clone(),
            task,
            task_version: "import".into(),
            kind: serde_json::to_value(kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            task_sha256: sha256_hex(&bytes),
            task_text: String::new(),
            model: model.clone(),
            model_sha256: format!("import:{}", sha256_hex(&bytes)),
            backend: "import".into(),
            settings: json!({"source": path, "format": format!("{source:?}")}),
            created: now(),
            finished: None,
            summary: None,
        };
        store.begin(&info)?;
        let done = store.done(&id)?;
        let new: Vec<ItemRow> = items
            .into_iter()
            .filter(|i| !done.contains(&i.key))
            .collect();
        out.judgments += new.len();
        store.put(&id, &new)?;
        let summary = summarize(kind, &store.items(&id)?, 1000, 1234);
        store.finish(&id, &summary)?;
        out.runs.push(id);
    }
    Ok(())
}

/// `model_id` of every answer in the answer files beside a review folder (`../../answer`).
fn answer_models(review: &Path) -> HashMap<String, String> {
    let mut m = HashMap::new();
    let Some(dir) = review
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .map(|p| p.join("answer"))
    else {
        return m;
    };
    for f in data::files(&dir).unwrap_or_default() {
        for r in data::read(&f, &ReadOptions::default()).unwrap_or_default() {
            if let (Ok(a), Ok(mid)) = (r.text("answer_id"), r.text("model_id")) {
                m.insert(a, mid);
            }
        }
    }
    m
}

/// Question categories from the `question.jsonl` of the benchmark folder `up` levels above
/// a judgment file (FastChat's layouts: `review/<run>/review_*.jsonl` is 3 levels below it,
/// `model_judgment/*.jsonl` 2).
fn question_categories(file: &Path, up: usize) -> HashMap<String, String> {
    let mut m = HashMap::new();
    let mut dir = Some(file);
    for _ in 0..up {
        dir = dir.and_then(Path::parent);
    }
    if let Some(q) = dir.map(|p| p.join("question.jsonl")) {
        for r in data::read(&q, &ReadOptions::default()).unwrap_or_default() {
            if let (Ok(id), Ok(c)) = (r.text("question_id"), r.text("category")) {
                m.insert(id, c);
            }
        }
    }
    m
}

fn vicuna(path: &Path, rows: &[Record], out: &mut Imported) -> Result<Group> {
    let models = answer_models(path);
    let cats = question_categories(path, 3);
    // review_<assistant 1>_<assistant 2>.jsonl, when the answers are not beside it.
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let names: Vec<&str> = stem.trim_start_matches("review_").splitn(2, '_').collect();
    let (mut m1, mut m2) = (
        names.first().unwrap_or(&"assistant-1").to_string(),
        names.get(1).unwrap_or(&"assistant-2").to_string(),
    );
    let mut items = vec![];
    for (seq, r) in rows.iter().enumerate() {
        if let (Some(a), Some(b)) = (
            r.text("answer1_id").ok().and_then(|a| models.get(&a)),
            r.text("answer2_id").ok().and_then(|b| models.get(&b)),
        ) {
            (m1, m2) = (a.clone(), b.clone());
        }
        let q = r.text("question_id")?;
        let text = r.text("text")?;
        let recorded = r
            .fields
            .get("score")
            .and_then(Value::as_array)
            .and_then(|s| Some((s.first()?.as_f64()?, s.get(1)?.as_f64()?)));
        // Assistant 2 is the model under evaluation, assistant 1 its baseline. The scores the
        // file records are the ones its figures were made from (FastChat fixed some by hand),
        // so they count; the text is parsed too, and a difference is reported.
        let parsed = judge::parse_pair_scores(&text);
        match (&parsed, recorded) {
            (Ok((s1, s2)), Some((a, b))) if (a, b) != (*s1, *s2) => {
                out.disagreements.push((
                    path.to_path_buf(),
                    r.line,
                    format!("parsed ({s1}, {s2}), the file records ({a}, {b})"),
                ));
            }
            (Err(e), _) => out.unparsed.push((path.to_path_buf(), r.line, e.0.clone())),
            _ => {}
        }
        let rec = recorded.map(|(a, b)| [b, a]);
        let game = match recorded.or(parsed.as_ref().ok().copied()) {
            Some((s1, s2)) => {
                let verdict = if s2 > s1 {
                    "model"
                } else if s1 > s2 {
                    "baseline"
                } else {
                    "tie"
                };
                json!({"turn": 1, "order": "baseline_first", "scores": [s2, s1], "verdict": verdict, "recorded": rec})
            }
            None => {
                let e = parsed.err().map(|e| e.0).unwrap_or_default();
                json!({"turn": 1, "order": "baseline_first", "verdict": null, "error": e, "recorded": rec})
            }
        };
        items.push(ItemRow {
            key: q.clone(),
            seq: seq as i64,
            category: cats.get(&q).cloned().unwrap_or_else(|| "all".into()),
            prompt: json!({"reviewer_id": r.fields.get("reviewer_id"), "answer1_id": r.fields.get("answer1_id"), "answer2_id": r.fields.get("answer2_id")}),
            output: json!({"judgments": [text]}),
            score: None,
            detail: Value::Null,
        });
        let last = items.len() - 1;
        items[last].detail = pair_detail(&m2, &m1, vec![game], 1);
    }
    Ok((m2, "vicuna_2023_review".into(), items, Kind::JudgePairwise))
}

fn alpaca(rows: &[Record], out: &mut Imported) -> Result<Group> {
    let mut items = vec![];
    let mut model = String::new();
    for (seq, r) in rows.iter().enumerate() {
        let (g1, g2) = (r.text("generator_1")?, r.text("generator_2")?);
        model = g2.clone();
        let pref = r.text("preference")?;
        // AlpacaEval: 1 prefers output_1 (the baseline), 2 output_2, 0 neither.
        let verdict = match pref.trim() {
            "1" | "1.0" => json!("baseline"),
            "2" | "2.0" => json!("model"),
            "0" | "0.0" | "1.5" => json!("tie"),
            other => {
                out.unparsed
                    .push((r.path.clone(), r.line, format!("preference {other:?}")));
                Value::Null
            }
        };
        let game = json!({"turn": 1, "order": "baseline_first", "verdict": verdict});
        items.push(ItemRow {
            key: format!("{seq}"),
            seq: seq as i64,
            category: r.text("dataset").unwrap_or_else(|_| "all".into()),
            prompt: json!({"instruction": r.fields.get("instruction")}),
            output: json!({"output_1": r.fields.get("output_1"), "output_2": r.fields.get("output_2")}),
            score: None,
            detail: pair_detail(&g2, &g1, vec![game], 1),
        });
    }
    Ok((model, "alpaca_eval".into(), items, Kind::JudgePairwise))
}

fn mt_single(path: &Path, rows: &[Record], out: &mut Imported) -> Result<Vec<Group>> {
    let cats = question_categories(path, 2);
    let mut by_model: HashMap<String, Vec<ItemRow>> = HashMap::new();
    for (seq, r) in rows.iter().enumerate() {
        let model = r.text("model")?;
        let turn = r.fields.get("turn").and_then(Value::as_u64).unwrap_or(1);
        let text = r.text("judgment")?;
        let recorded = r
            .fields
            .get("score")
            .and_then(Value::as_f64)
            .filter(|s| *s >= 0.0);
        let game = match judge::parse_rating(&text) {
            Ok(x) => {
                if let Some(s) = recorded
                    && s != x
                {
                    out.disagreements.push((
                        path.to_path_buf(),
                        r.line,
                        format!("parsed {x}, the file records {s}"),
                    ));
                }
                json!({"turn": turn, "rating": x, "recorded": recorded})
            }
            Err(e) => {
                out.unparsed.push((path.to_path_buf(), r.line, e.0.clone()));
                json!({"turn": turn, "rating": null, "error": e.0, "recorded": recorded})
            }
        };
        let q = r.text("question_id")?;
        by_model.entry(model.clone()).or_default().push(ItemRow {
            key: format!("{q}:{turn}"),
            seq: seq as i64,
            category: cats.get(&q).cloned().unwrap_or_else(|| "all".into()),
            prompt: json!({"user_prompt": r.fields.get("user_prompt"), "judge": r.fields.get("judge")}),
            output: json!({"judgments": [text]}),
            score: game["rating"].as_f64(),
            detail: json!({"model": model, "games": [game]}),
        });
    }
    let mut v: Vec<_> = by_model
        .into_iter()
        .map(|(m, items)| (m, "mt_bench_single".to_string(), items, Kind::JudgeSingle))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(v)
}

fn mt_pair(path: &Path, rows: &[Record], out: &mut Imported) -> Result<Vec<Group>> {
    let cats = question_categories(path, 2);
    let mut by_pair: HashMap<(String, String), Vec<ItemRow>> = HashMap::new();
    for (seq, r) in rows.iter().enumerate() {
        let (m1, m2) = (r.text("model_1")?, r.text("model_2")?);
        let turn = r.fields.get("turn").and_then(Value::as_u64).unwrap_or(1);
        let mut games = vec![];
        // g1: model_1 is assistant A; g2: the order swapped. FastChat records winners as
        // model_1 / model_2 / tie / error; the texts are parsed again where present.
        for (g, model_first) in [("g1", true), ("g2", false)] {
            let text = r.text(&format!("{g}_judgment")).unwrap_or_default();
            let recorded = r.text(&format!("{g}_winner")).ok();
            let parsed = judge::parse_verdict(&text)
                .ok()
                .map(|v| match (v, model_first) {
                    (judge::Verdict::Tie, _) => "tie",
                    (judge::Verdict::A, true) | (judge::Verdict::B, false) => "model",
                    _ => "baseline",
                });
            let from_file = recorded.as_deref().and_then(|w| match w {
                "model_1" => Some("model"),
                "model_2" => Some("baseline"),
                "tie" => Some("tie"),
                _ => None,
            });
            if let (Some(p), Some(f)) = (parsed, from_file)
                && p != f
            {
                out.disagreements.push((
                    path.to_path_buf(),
                    r.line,
                    format!("{g}: parsed {p}, the file records {f}"),
                ));
            }
            let verdict = parsed.or(from_file);
            if verdict.is_none() {
                out.unparsed
                    .push((path.to_path_buf(), r.line, format!("{g}: no verdict")));
            }
            games.push(json!({"turn": turn, "order": if model_first {"model_first"} else {"baseline_first"}, "verdict": verdict}));
        }
        let q = r.text("question_id")?;
        let mut detail = pair_detail(&m1, &m2, games, turn as usize);
        // pair_detail indexes winners by turn from 1; keep only this row's turn.
        if let Some(w) = detail["winners"].as_array().and_then(|w| w.last().cloned()) {
            detail["winners"] = json!([w]);
        }
        by_pair.entry((m1.clone(), m2.clone())).or_default().push(ItemRow {
            key: format!("{q}:{turn}"),
            seq: seq as i64,
            category: cats.get(&q).cloned().unwrap_or_else(|| "all".into()),
            prompt: json!({"g1_user_prompt": r.fields.get("g1_user_prompt"), "judge": r.fields.get("judge")}),
            output: json!({"judgments": [r.fields.get("g1_judgment"), r.fields.get("g2_judgment")]}),
            score: None,
            detail,
        });
    }
    let mut v: Vec<_> = by_pair
        .into_iter()
        .map(|((m1, m2), items)| {
            (
                format!("{m1}-vs-{m2}"),
                "mt_bench_pair".to_string(),
                items,
                Kind::JudgePairwise,
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(v)
}
