//! Task files: a small TOML document that says where a dataset is, which of its fields hold
//! the question, choices and answer, how the prompt is written, and how it is scored. Users
//! add datasets by writing one, without code.
//!
//! Paths in a task file are relative to the task file's folder, or to `--data-dir` when given.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::data::{self, Format, ReadOptions, Record};
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Choices scored by log-likelihood; `acc` and `acc_norm`.
    MultipleChoice,
    /// Generation, answer extraction and exact match.
    Generate,
    /// A judge grades each answer 1–10 (MT-bench single-answer grading).
    JudgeSingle,
    /// A judge compares the model's answer with a baseline model's, in both orders.
    JudgePairwise,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TaskFile {
    pub name: String,
    /// Bumped whenever a change to the task would change its numbers.
    pub version: String,
    pub kind: Kind,
    #[serde(default)]
    pub description: String,
    pub data: DataSpec,
    #[serde(default)]
    pub prompt: PromptSpec,
    #[serde(default)]
    pub generation: GenerationSpec,
    #[serde(default)]
    pub extract: ExtractSpec,
    #[serde(default)]
    pub judge: Option<JudgeSpec>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// A file or a folder of files.
    pub path: String,
    pub format: Option<Format>,
    /// Column names of a CSV file without a header row.
    pub columns: Option<Vec<String>>,
    /// A field that identifies an item (else file name and line).
    pub id: Option<String>,
    #[serde(default = "default_question")]
    pub question: String,
    /// Fields that hold the choices, in order; or one field holding a list.
    #[serde(default)]
    pub choices: Vec<String>,
    /// The answer: a label (`B`), a 0-based index, or the text of the right choice.
    pub answer: Option<String>,
    /// The text after which the reference answer stands (GSM8K's `####`).
    pub answer_after: Option<String>,
    /// A field with the category; without it, the file name is the category.
    pub category: Option<String>,
    /// Cut from the end of a file name to make its category (`"_test"`, or a list such as
    /// `["_test", "_dev"]` so that few-shot files name the same categories).
    #[serde(default, deserialize_with = "one_or_many")]
    pub strip_suffix: Vec<String>,
    /// A field with a list of user turns (multi-turn questions).
    pub turns: Option<String>,
    /// Reference answers (FastChat answer file), keyed by `id`.
    pub reference_answers: Option<String>,
    /// Examples for few-shot prompts, matched by category.
    pub fewshot_path: Option<String>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

fn default_question() -> String {
    "question".into()
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PromptSpec {
    /// Written once before the examples; `{subject}` is the category with spaces.
    pub description: String,
    /// One question; `{question}`, `{choices}` (one `label. text` line each), `{subject}`, and any
    /// field of the row as `{field}`.
    pub template: String,
    pub labels: Vec<String>,
    /// Continuations scored: `labels` (` A`) or `texts` (the choices themselves).
    pub targets: Targets,
    pub target_delimiter: String,
    pub fewshot_delimiter: String,
    pub num_fewshot: usize,
    /// Send the prompt through the model's chat template (generation tasks).
    pub chat: bool,
}

impl Default for PromptSpec {
    fn default() -> Self {
        PromptSpec {
            description: String::new(),
            template: "{question}".into(),
            labels: ["A", "B", "C", "D", "E", "F", "G", "H"]
                .map(String::from)
                .to_vec(),
            targets: Targets::Labels,
            target_delimiter: " ".into(),
            fewshot_delimiter: "\n\n".into(),
            num_fewshot: 0,
            chat: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Targets {
    Labels,
    Texts,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerationSpec {
    pub max_tokens: usize,
    pub stop: Vec<String>,
    pub temperature: f32,
}

impl Default for GenerationSpec {
    fn default() -> Self {
        GenerationSpec {
            max_tokens: 256,
            stop: vec![],
            temperature: 0.0,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExtractSpec {
    /// Regular expressions tried in order; the first capture group (or the match) is the answer.
    pub regex: Vec<String>,
    /// Without a regex match, the last number in the text.
    pub last_number: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeSpec {
    /// `mt_bench` (FastChat judge_prompts.jsonl) or `vicuna` (the 2023 prompt.jsonl).
    pub style: JudgeStyle,
    /// The judge prompt file.
    pub prompts: String,
    /// The baseline model's answers (FastChat answer file), for pairwise tasks.
    pub baseline_answers: Option<String>,
    /// Name of the baseline model.
    pub baseline: Option<String>,
    /// Categories whose questions are judged against the reference answer.
    #[serde(default)]
    pub reference_categories: Vec<String>,
    /// Judge the second turn too.
    #[serde(default = "yes")]
    pub multi_turn: bool,
    #[serde(default = "judge_tokens")]
    pub max_tokens: usize,
}

fn yes() -> bool {
    true
}

fn judge_tokens() -> usize {
    1024
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JudgeStyle {
    MtBench,
    Vicuna,
}

/// One question of a task, from one row.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Item {
    /// Stable across runs: the id field, else `file:line`.
    pub key: String,
    pub category: String,
    pub question: String,
    pub choices: Vec<String>,
    /// Index of the right choice.
    pub gold: Option<usize>,
    /// Reference answer text (generation tasks).
    pub reference: Option<String>,
    /// User turns (judge tasks; one turn for single-turn questions).
    pub turns: Vec<String>,
    /// Reference answers per turn (MT-bench maths and reasoning).
    pub reference_turns: Vec<String>,
    /// Every field of the row, for `{field}` in templates.
    #[serde(skip)]
    pub fields: serde_json::Map<String, Value>,
}

/// A task file read, with its text (stored with every run) and its folder.
pub struct Task {
    pub file: TaskFile,
    pub path: PathBuf,
    pub text: String,
    pub base: PathBuf,
}

impl Task {
    /// Reads a task file; relative paths in it resolve against `data_dir` or the file's folder.
    pub fn load(path: &Path, data_dir: Option<&Path>) -> Result<Task> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let file: TaskFile = toml::from_str(&text).map_err(|e| Error::file(path, e.to_string()))?;
        let base = match data_dir {
            Some(d) => d.to_path_buf(),
            None => path.parent().unwrap_or(Path::new(".")).to_path_buf(),
        };
        if file.kind == Kind::MultipleChoice && file.data.choices.is_empty() {
            return Err(Error::file(
                path,
                "a multiple_choice task needs data.choices",
            ));
        }
        if matches!(file.kind, Kind::JudgeSingle | Kind::JudgePairwise) && file.judge.is_none() {
            return Err(Error::file(path, "a judge task needs a [judge] table"));
        }
        Ok(Task {
            file,
            path: path.to_path_buf(),
            text,
            base,
        })
    }

    pub fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// Every item of the task, in file order.
    pub fn items(&self) -> Result<Vec<Item>> {
        self.items_from(&self.file.data.path)
    }

    /// The few-shot pool, if the task has one.
    pub fn fewshot_items(&self) -> Result<Vec<Item>> {
        match &self.file.data.fewshot_path {
            Some(p) => self.items_from(p),
            None => Ok(vec![]),
        }
    }

    fn items_from(&self, rel: &str) -> Result<Vec<Item>> {
        let d = &self.file.data;
        let opts = ReadOptions {
            format: d.format,
            columns: d.columns.clone(),
        };
        let refs = match &d.reference_answers {
            Some(p) => crate::answers::read_answers(&self.resolve(p))?,
            None => Default::default(),
        };
        let mut out = vec![];
        let mut seen = std::collections::HashSet::new();
        for f in data::files(&self.resolve(rel))? {
            let stem = f.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            let file_cat = d
                .strip_suffix
                .iter()
                .find_map(|x| stem.strip_suffix(x.as_str()))
                .unwrap_or(stem)
                .to_string();
            for r in data::read(&f, &opts)? {
                let item = self.item(&r, &file_cat, stem, &refs)?;
                if !seen.insert(item.key.clone()) {
                    return Err(r.error(format!("duplicate item id '{}'", item.key)));
                }
                out.push(item);
            }
        }
        Ok(out)
    }

    fn item(
        &self,
        r: &Record,
        file_cat: &str,
        stem: &str,
        refs: &std::collections::HashMap<String, Vec<String>>,
    ) -> Result<Item> {
        let d = &self.file.data;
        let key = match &d.id {
            Some(f) => r.text(f)?,
            None => format!("{stem}:{}", r.line),
        };
        let category = match &d.category {
            Some(f) => r.text(f)?,
            None => file_cat.to_string(),
        };
        let turns: Vec<String> = match &d.turns {
            Some(f) => match r.fields.get(f) {
                Some(Value::Array(a)) if !a.is_empty() => a
                    .iter()
                    .map(|t| {
                        t.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| r.error(format!("'{f}' must be a list of strings")))
                    })
                    .collect::<Result<_>>()?,
                _ => return Err(r.error(format!("'{f}' must be a non-empty list of strings"))),
            },
            None => vec![],
        };
        let question = if turns.is_empty() {
            r.text(&d.question)?.trim().to_string()
        } else {
            turns[0].clone()
        };
        if question.is_empty() {
            return Err(r.error("the question is empty"));
        }
        let choices = self.choices(r)?;
        let gold = match (&d.answer, self.file.kind) {
            (Some(f), Kind::MultipleChoice) => Some(self.gold(r, f, &choices)?),
            _ => None,
        };
        let reference = match (&d.answer, self.file.kind) {
            (Some(f), Kind::Generate) => {
                let a = r.text(f)?;
                Some(match &d.answer_after {
                    Some(m) => a
                        .rsplit_once(m.as_str())
                        .map(|(_, x)| x.trim().to_string())
                        .ok_or_else(|| r.error(format!("the answer has no '{m}'")))?,
                    None => a.trim().to_string(),
                })
            }
            _ => None,
        };
        Ok(Item {
            reference_turns: refs.get(&key).cloned().unwrap_or_default(),
            key,
            category,
            question,
            choices,
            gold,
            reference,
            turns,
            fields: r.fields.clone(),
        })
    }

    fn choices(&self, r: &Record) -> Result<Vec<String>> {
        let d = &self.file.data;
        match d.choices.as_slice() {
            [] => Ok(vec![]),
            [one] if matches!(r.fields.get(one), Some(Value::Array(_))) => {
                let Some(Value::Array(a)) = r.fields.get(one) else {
                    unreachable!("checked by the guard")
                };
                a.iter()
                    .map(|c| match c {
                        Value::String(s) => Ok(s.clone()),
                        Value::Number(n) => Ok(n.to_string()),
                        _ => Err(r.error(format!("a choice in '{one}' is not text"))),
                    })
                    .collect()
            }
            many => many.iter().map(|f| r.text(f)).collect(),
        }
    }

    fn gold(&self, r: &Record, field: &str, choices: &[String]) -> Result<usize> {
        let a = r.text(field)?;
        let a = a.trim();
        let labels = &self.file.prompt.labels;
        let idx = labels
            .iter()
            .take(choices.len())
            .position(|l| l == a)
            .or_else(|| a.parse::<usize>().ok().filter(|&i| i < choices.len()))
            .or_else(|| choices.iter().position(|c| c.trim() == a));
        idx.ok_or_else(|| {
            r.error(format!(
                "answer '{a}' is neither a label ({}), an index below {} nor one of the choices",
                labels[..choices.len().min(labels.len())].join(", "),
                choices.len()
            ))
        })
    }
}
