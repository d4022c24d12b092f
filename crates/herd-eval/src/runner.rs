//! Running a task against a backend, item by item into the store, resuming where a previous
//! run of the same id stopped; and the summaries (metrics with intervals, per category) that
//! reports show.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use crate::backend::{Backend, GenRequest};
use crate::error::{Error, Result};
use crate::extract::{Extractor, matches};
use crate::judge::{self, JudgePrompt, Verdict};
use crate::mc;
use crate::ratings::{Battle, Record, Winner};
use crate::stats::{Estimate, bootstrap};
use crate::store::{ItemRow, RunInfo, Store, now, sha256_hex};
use crate::task::{Item, JudgeStyle, Kind, Task};

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub run_id: Option<String>,
    /// Items per engine call or per round of endpoint requests. Results do not depend on it.
    pub batch: usize,
    pub seed: u64,
    /// Only the first `limit` items.
    pub limit: Option<usize>,
    pub num_fewshot: Option<usize>,
    /// FastChat answer files used instead of generating: the model's.
    pub answers: Option<std::path::PathBuf>,
    /// Ask the judge for JSON held to a schema (`{"verdict": "A"}`, `{"rating": "7"}`).
    pub judge_json: bool,
    pub bootstrap_rounds: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            run_id: None,
            batch: 8,
            seed: 1234,
            limit: None,
            num_fewshot: None,
            answers: None,
            judge_json: false,
            bootstrap_rounds: 1000,
        }
    }
}

/// Reports progress: (items done, items in the run).
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize);

/// Runs `task` and returns the run id and its summary.
pub fn run(
    task: &Task,
    backend: &mut dyn Backend,
    mut judge: Option<&mut dyn Backend>,
    store: &mut Store,
    opts: &RunOptions,
    progress: Progress<'_>,
) -> Result<(String, Value)> {
    let f = &task.file;
    let mut items = task.items()?;
    if let Some(n) = opts.limit {
        items.truncate(n);
    }
    let num_fewshot = opts.num_fewshot.unwrap_or(f.prompt.num_fewshot);
    let pool = if num_fewshot > 0 {
        task.fewshot_items()?
    } else {
        vec![]
    };
    if num_fewshot > 0 && pool.is_empty() {
        return Err(Error::file(
            &task.path,
            "few-shot prompts need data.fewshot_path",
        ));
    }
    let judge_name = judge.as_ref().map(|j| j.name());
    let judge_fp = match &judge {
        Some(j) => Some(j.fingerprint()?),
        None => None,
    };
    if matches!(f.kind, Kind::JudgeSingle | Kind::JudgePairwise) && judge.is_none() {
        return Err(Error::Usage(format!(
            "task {} needs a judge (--judge-endpoint or --judge-model)",
            f.name
        )));
    }
    let answers_sha = match &opts.answers {
        Some(p) => Some(sha256_hex(&std::fs::read(p).map_err(|e| Error::io(p, e))?)),
        None => None,
    };
    let settings = json!({
        "seed": opts.seed,
        "num_fewshot": num_fewshot,
        "limit": opts.limit,
        "backend": backend.settings(),
        "judge": judge.as_ref().map(|j| json!({"name": j.name(), "settings": j.settings(), "fingerprint": judge_fp})),
        "judge_json": opts.judge_json,
        "answers": opts.answers.as_ref().map(|p| json!({"path": p, "sha256": answers_sha})),
        "generation": f.generation,
    });
    let model = match &opts.answers {
        Some(p) => crate::answers::model_of(p)?.unwrap_or_else(|| backend.name()),
        None => backend.name(),
    };
    let id = opts
        .run_id
        .clone()
        .unwrap_or_else(|| format!("{}-{}-{}", f.name, model, now().replace([':', '-'], "")));
    let info = RunInfo {
        id: id.clone(),
        task: f.name.clone(),
        task_version: f.version.clone(),
        kind: serde_json::to_value(f.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        task_sha256: sha256_hex(task.text.as_bytes()),
        task_text: task.text.clone(),
        model: model.clone(),
        model_sha256: match &opts.answers {
            Some(_) => format!("answers:{}", answers_sha.clone().unwrap_or_default()),
            None => backend.fingerprint()?,
        },
        backend: backend
            .settings()
            .get("backend")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        settings,
        created: now(),
        finished: None,
        summary: None,
    };
    store.begin(&info)?;
    let done = store.done(&id)?;
    let seq: HashMap<&str, usize> = items
        .iter()
        .enumerate()
        .map(|(i, it)| (it.key.as_str(), i))
        .collect();
    let todo: Vec<&Item> = items.iter().filter(|it| !done.contains(&it.key)).collect();
    let total = items.len();
    let mut n_done = total - todo.len();
    progress(n_done, total);
    let answers = match &opts.answers {
        Some(p) => Some(crate::answers::read_answers(p)?),
        None => None,
    };
    let ctx = Ctx {
        task,
        opts,
        judge_name: judge_name.unwrap_or_default(),
        model: model.clone(),
    };
    for batch in todo.chunks(opts.batch.max(1)) {
        let rows = match f.kind {
            Kind::MultipleChoice => mc_batch(&ctx, backend, batch, &pool, num_fewshot)?,
            Kind::Generate => gen_batch(&ctx, backend, batch, &pool, num_fewshot)?,
            Kind::JudgeSingle | Kind::JudgePairwise => {
                let Some(j) = judge.as_deref_mut() else {
                    unreachable!("checked above")
                };
                judge_batch(&ctx, backend, j, batch, answers.as_ref())?
            }
        };
        let rows: Vec<ItemRow> = rows
            .into_iter()
            .map(|mut r| {
                r.seq = seq.get(r.key.as_str()).copied().unwrap_or(0) as i64;
                r
            })
            .collect();
        store.put(&id, &rows)?;
        n_done += rows.len();
        progress(n_done, total);
    }
    let summary = summarize(f.kind, &store.items(&id)?, opts.bootstrap_rounds, opts.seed);
    store.finish(&id, &summary)?;
    Ok((id, summary))
}

struct Ctx<'a> {
    task: &'a Task,
    opts: &'a RunOptions,
    judge_name: String,
    model: String,
}

fn mc_batch(
    ctx: &Ctx<'_>,
    backend: &mut dyn Backend,
    batch: &[&Item],
    pool: &[Item],
    k: usize,
) -> Result<Vec<ItemRow>> {
    let reqs: Vec<mc::LlRequest> = batch
        .iter()
        .map(|it| mc::request(ctx.task, it, &mc::shots(pool, it, k)))
        .collect();
    let (res, sent) = backend.loglikelihood(&reqs)?;
    let mut rows = vec![];
    for (((it, r), lls), sent) in batch.iter().zip(&reqs).zip(res).zip(sent) {
        let targets = mc::targets(ctx.task, it);
        let ll: Vec<f64> = lls.iter().map(|x| x.logprob).collect();
        let (pred, pred_norm) = mc::predictions(&ll, &targets);
        let gold = it.gold.unwrap_or(usize::MAX);
        rows.push(ItemRow {
            key: it.key.clone(),
            seq: 0,
            category: it.category.clone(),
            prompt: json!({"context": r.context, "continuations": r.continuations, "sent": sent}),
            output: json!({"loglikelihoods": ll, "greedy": lls.iter().map(|x| x.greedy).collect::<Vec<_>>()}),
            score: Some((pred == gold) as u8 as f64),
            detail: json!({"gold": it.gold, "pred": pred, "pred_norm": pred_norm,
                           "acc": (pred == gold) as u8, "acc_norm": (pred_norm == gold) as u8}),
        });
    }
    Ok(rows)
}

fn gen_batch(
    ctx: &Ctx<'_>,
    backend: &mut dyn Backend,
    batch: &[&Item],
    pool: &[Item],
    k: usize,
) -> Result<Vec<ItemRow>> {
    let f = &ctx.task.file;
    let ex = Extractor::new(&f.extract)?;
    let reqs: Vec<GenRequest> = batch
        .iter()
        .map(|it| {
            let mut prompt = String::new();
            for s in mc::shots(pool, it, k) {
                prompt.push_str(&mc::doc_text(ctx.task, s));
                prompt.push_str(&f.prompt.target_delimiter);
                // The worked solution: the whole answer field, as lm-eval's GSM8K shots show it.
                let solution = f.data.answer.as_deref().and_then(|a| s.fields.get(a));
                prompt.push_str(solution.and_then(Value::as_str).unwrap_or(""));
                prompt.push_str(&f.prompt.fewshot_delimiter);
            }
            prompt.push_str(&mc::doc_text(ctx.task, it));
            GenRequest {
                messages: f
                    .prompt
                    .chat
                    .then(|| vec![json!({"role": "user", "content": prompt})]),
                prompt,
                max_tokens: f.generation.max_tokens,
                stop: f.generation.stop.clone(),
                temperature: f.generation.temperature,
                seed: ctx.opts.seed,
                json: None,
            }
        })
        .collect();
    let gens = backend.generate(&reqs)?;
    Ok(batch
        .iter()
        .zip(gens)
        .map(|(it, g)| {
            let got = ex.extract(&g.text);
            let gold = it.reference.clone().unwrap_or_default();
            let ok = got.as_deref().is_some_and(|p| matches(p, &gold));
            ItemRow {
                key: it.key.clone(),
                seq: 0,
                category: it.category.clone(),
                prompt: g.sent,
                output: json!({"text": g.text}),
                score: Some(ok as u8 as f64),
                detail: json!({"extracted": got, "reference": gold, "exact_match": ok as u8}),
            }
        })
        .collect())
}

/// Answers to every turn of `it`: from an answer file, or generated turn by turn.
fn answer_turns(
    backend: &mut dyn Backend,
    it: &Item,
    answers: Option<&HashMap<String, Vec<String>>>,
    ctx: &Ctx<'_>,
) -> Result<(Vec<String>, Value)> {
    if let Some(a) = answers {
        let t = a.get(&it.key).cloned().ok_or_else(|| {
            Error::Usage(format!(
                "the answer file has no answer to question {}",
                it.key
            ))
        })?;
        return Ok((t, json!("from the answer file")));
    }
    let g = &ctx.task.file.generation;
    let mut messages = vec![];
    let mut out = vec![];
    let mut sent = vec![];
    for turn in &it.turns {
        messages.push(json!({"role": "user", "content": turn}));
        let r = GenRequest {
            messages: Some(messages.clone()),
            prompt: String::new(),
            max_tokens: g.max_tokens,
            stop: g.stop.clone(),
            temperature: g.temperature,
            seed: ctx.opts.seed,
            json: None,
        };
        let a = backend.generate(&[r])?.remove(0);
        messages.push(json!({"role": "assistant", "content": a.text}));
        out.push(a.text);
        sent.push(a.sent);
    }
    Ok((out, Value::Array(sent)))
}

fn judge_batch(
    ctx: &Ctx<'_>,
    backend: &mut dyn Backend,
    judge: &mut dyn Backend,
    batch: &[&Item],
    answers: Option<&HashMap<String, Vec<String>>>,
) -> Result<Vec<ItemRow>> {
    let task = ctx.task;
    let spec = task
        .file
        .judge
        .as_ref()
        .ok_or_else(|| Error::file(&task.path, "no [judge] table"))?;
    let prompts_path = task.resolve(&spec.prompts);
    let prompts = match spec.style {
        JudgeStyle::MtBench => judge::read_mt_bench_prompts(&prompts_path)?,
        JudgeStyle::Vicuna => judge::read_vicuna_prompts(&prompts_path)?,
    };
    let baseline = match &spec.baseline_answers {
        Some(p) => Some(crate::answers::read_answers(&task.resolve(p))?),
        None => None,
    };
    let baseline_name = spec.baseline.clone().unwrap_or_else(|| "baseline".into());
    let mut rows = vec![];
    for it in batch {
        let (turns, gen_sent) = answer_turns(backend, it, answers, ctx)?;
        let n_turns = if spec.multi_turn {
            it.turns.len().max(1)
        } else {
            1
        };
        let mut jobs = vec![]; // (turn, model_first, prompt)
        let pair = task.file.kind == Kind::JudgePairwise;
        let base_turns = if pair {
            baseline
                .as_ref()
                .and_then(|b| b.get(&it.key))
                .cloned()
                .ok_or_else(|| Error::Usage(format!("no baseline answer to question {}", it.key)))?
        } else {
            vec![]
        };
        for t in 0..n_turns {
            let orders: &[bool] = if pair { &[true, false] } else { &[true] };
            for &model_first in orders {
                let (a, b) = if model_first {
                    (&turns, &base_turns)
                } else {
                    (&base_turns, &turns)
                };
                let (system, user) = match spec.style {
                    JudgeStyle::MtBench => {
                        mt_bench_prompt(&prompts, it, t, a, b, pair, &spec.reference_categories)?
                    }
                    JudgeStyle::Vicuna => vicuna_prompt(&prompts, it, a, b)?,
                };
                jobs.push((t, model_first, system, user));
            }
        }
        let schema = ctx.opts.judge_json.then(|| {
            if pair && spec.style == JudgeStyle::MtBench {
                json!({"type": "object", "properties": {"verdict": {"enum": ["A", "B", "C"]}}, "required": ["verdict"], "additionalProperties": false})
            } else if pair {
                json!({"type": "object", "properties": {"score_1": {"enum": (1..=10).map(|i| i.to_string()).collect::<Vec<_>>()}, "score_2": {"enum": (1..=10).map(|i| i.to_string()).collect::<Vec<_>>()}}, "required": ["score_1", "score_2"], "additionalProperties": false})
            } else {
                json!({"type": "object", "properties": {"rating": {"enum": (1..=10).map(|i| i.to_string()).collect::<Vec<_>>()}}, "required": ["rating"], "additionalProperties": false})
            }
        });
        let reqs: Vec<GenRequest> = jobs
            .iter()
            .map(|(_, _, system, user)| GenRequest {
                messages: Some(vec![
                    json!({"role": "system", "content": system}),
                    json!({"role": "user", "content": user}),
                ]),
                prompt: String::new(),
                max_tokens: spec.max_tokens,
                stop: vec![],
                temperature: 0.0,
                seed: ctx.opts.seed,
                json: schema.clone(),
            })
            .collect();
        let outs = judge.generate(&reqs)?;
        let mut games = vec![];
        for ((t, model_first, _, _), o) in jobs.iter().zip(&outs) {
            games.push(parse_game(&o.text, *t, *model_first, pair, spec.style));
        }
        let detail = if pair {
            pair_detail(&ctx.model, &baseline_name, games, n_turns)
        } else {
            json!({"model": ctx.model, "judge": ctx.judge_name, "games": games})
        };
        let score = item_score(&detail, pair);
        rows.push(ItemRow {
            key: it.key.clone(),
            seq: 0,
            category: it.category.clone(),
            prompt: json!({"turns": it.turns, "answers_sent": gen_sent, "judge": outs.iter().map(|o| o.sent.clone()).collect::<Vec<_>>()}),
            output: json!({"answers": turns, "judgments": outs.iter().map(|o| o.text.clone()).collect::<Vec<_>>()}),
            score,
            detail,
        });
    }
    Ok(rows)
}

fn mt_bench_prompt(
    prompts: &HashMap<String, JudgePrompt>,
    it: &Item,
    t: usize,
    a: &[String],
    b: &[String],
    pair: bool,
    ref_cats: &[String],
) -> Result<(String, String)> {
    let needs_ref = ref_cats.contains(&it.category) && !it.reference_turns.is_empty();
    let multi = t > 0;
    let name = match (pair, needs_ref, multi) {
        (false, false, false) => "single-v1",
        (false, false, true) => "single-v1-multi-turn",
        (false, true, false) => "single-math-v1",
        (false, true, true) => "single-math-v1-multi-turn",
        (true, false, false) => "pair-v2",
        (true, false, true) => "pair-v2-multi-turn",
        (true, true, false) => "pair-math-v1",
        (true, true, true) => "pair-math-v1-multi-turn",
    };
    let p = prompts
        .get(name)
        .ok_or_else(|| Error::Usage(format!("no judge prompt named {name}")))?;
    let get = |v: &[String], i: usize| v.get(i).cloned().unwrap_or_default();
    let q = |i: usize| {
        it.turns
            .get(i)
            .cloned()
            .unwrap_or_else(|| it.question.clone())
    };
    let (q1, q2) = (q(0), q(1));
    let (a1, a2, b1, b2) = (get(a, 0), get(a, 1), get(b, 0), get(b, 1));
    let (r1, r2) = (get(&it.reference_turns, 0), get(&it.reference_turns, 1));
    let vars: Vec<(&str, &str)> = vec![
        ("question", &q1),
        ("question_1", &q1),
        ("question_2", &q2),
        ("answer", &a1),
        ("answer_1", &a1),
        ("answer_2", &a2),
        ("answer_a", &a1),
        ("answer_b", &b1),
        ("answer_a_1", &a1),
        ("answer_a_2", &a2),
        ("answer_b_1", &b1),
        ("answer_b_2", &b2),
        ("ref_answer_1", &r1),
        ("ref_answer_2", &r2),
    ];
    Ok((p.system.clone(), p.fill(&vars)))
}

fn vicuna_prompt(
    prompts: &HashMap<String, JudgePrompt>,
    it: &Item,
    a: &[String],
    b: &[String],
) -> Result<(String, String)> {
    let p = prompts
        .get(&it.category)
        .or_else(|| prompts.get("general"))
        .ok_or_else(|| Error::Usage("no general prompt".into()))?;
    let (a1, b1) = (
        a.first().cloned().unwrap_or_default(),
        b.first().cloned().unwrap_or_default(),
    );
    let dp = p.default_prompt.clone().unwrap_or_default();
    Ok((
        p.system.clone(),
        p.fill(&[
            ("question", &it.question),
            ("answer_1", &a1),
            ("answer_2", &b1),
            ("prompt", &dp),
        ]),
    ))
}

/// One judged game, with the verdict in terms of the model and the baseline.
fn parse_game(text: &str, turn: usize, model_first: bool, pair: bool, style: JudgeStyle) -> Value {
    let order = if model_first {
        "model_first"
    } else {
        "baseline_first"
    };
    if !pair {
        return match judge::parse_rating(text) {
            Ok(r) => json!({"turn": turn + 1, "rating": r}),
            Err(e) => json!({"turn": turn + 1, "rating": null, "error": e.0}),
        };
    }
    let side = |first_won: bool| {
        if first_won == model_first {
            "model"
        } else {
            "baseline"
        }
    };
    match style {
        JudgeStyle::MtBench => match judge::parse_verdict(text) {
            Ok(Verdict::A) => json!({"turn": turn + 1, "order": order, "verdict": side(true)}),
            Ok(Verdict::B) => json!({"turn": turn + 1, "order": order, "verdict": side(false)}),
            Ok(Verdict::Tie) => json!({"turn": turn + 1, "order": order, "verdict": "tie"}),
            Err(e) => json!({"turn": turn + 1, "order": order, "verdict": null, "error": e.0}),
        },
        JudgeStyle::Vicuna => {
            let parsed = serde_json::from_str::<Value>(text.trim())
                .ok()
                .and_then(|v| {
                    let g = |k: &str| {
                        v.get(k).and_then(|x| {
                            x.as_f64()
                                .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
                        })
                    };
                    Some((g("score_1")?, g("score_2")?))
                });
            match parsed
                .map(Ok)
                .unwrap_or_else(|| judge::parse_pair_scores(text))
            {
                Ok((s1, s2)) => {
                    let (m, b) = if model_first { (s1, s2) } else { (s2, s1) };
                    let verdict = if m > b {
                        "model"
                    } else if b > m {
                        "baseline"
                    } else {
                        "tie"
                    };
                    json!({"turn": turn + 1, "order": order, "scores": [m, b], "verdict": verdict})
                }
                Err(e) => json!({"turn": turn + 1, "order": order, "verdict": null, "error": e.0}),
            }
        }
    }
}

/// Per-turn winners from both orders: agreeing verdicts stand, disagreeing ones are a tie
/// (MT-bench's rule for position bias); a turn with an unparsed game has no winner.
pub fn pair_detail(model: &str, baseline: &str, games: Vec<Value>, n_turns: usize) -> Value {
    let mut winners = vec![];
    let mut inconsistent = 0;
    for t in 1..=n_turns {
        let v: Vec<Option<&str>> = games
            .iter()
            .filter(|g| g["turn"].as_u64() == Some(t as u64))
            .map(|g| g["verdict"].as_str())
            .collect();
        let w = if v.is_empty() || v.iter().any(Option::is_none) {
            Value::Null
        } else if v.iter().all(|x| *x == v[0]) {
            json!(v[0])
        } else {
            inconsistent += 1;
            json!("tie")
        };
        winners.push(w);
    }
    json!({"model": model, "baseline": baseline, "games": games, "winners": winners, "inconsistent": inconsistent})
}

fn item_score(detail: &Value, pair: bool) -> Option<f64> {
    let games = detail["games"].as_array()?;
    let xs: Vec<f64> = if pair {
        detail["winners"]
            .as_array()?
            .iter()
            .filter_map(|w| match w.as_str()? {
                "model" => Some(1.0),
                "tie" => Some(0.5),
                _ => Some(0.0),
            })
            .collect()
    } else {
        games.iter().filter_map(|g| g["rating"].as_f64()).collect()
    };
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// Battles (model against baseline, per turn with a winner) from pairwise items.
pub fn battles(rows: &[ItemRow]) -> Vec<Battle> {
    let mut out = vec![];
    for r in rows {
        let d = &r.detail;
        let (Some(m), Some(b)) = (d["model"].as_str(), d["baseline"].as_str()) else {
            continue;
        };
        for w in d["winners"].as_array().into_iter().flatten() {
            let winner = match w.as_str() {
                Some("model") => Winner::ModelA,
                Some("baseline") => Winner::ModelB,
                Some("tie") => Winner::Tie,
                _ => continue,
            };
            out.push(Battle {
                model_a: m.into(),
                model_b: b.into(),
                winner,
            });
        }
    }
    out
}

fn est(e: &Estimate) -> Value {
    json!({"value": e.value, "stderr": e.stderr, "lo": e.lo, "hi": e.hi, "n": e.n})
}

/// Metrics of a run from its items: what reports show.
pub fn summarize(kind: Kind, rows: &[ItemRow], rounds: usize, seed: u64) -> Value {
    let mut by_cat: BTreeMap<String, Vec<&ItemRow>> = BTreeMap::new();
    for r in rows {
        by_cat.entry(r.category.clone()).or_default().push(r);
    }
    let metrics = |rs: &[&ItemRow]| -> Value {
        let col =
            |k: &str| -> Vec<f64> { rs.iter().filter_map(|r| r.detail[k].as_f64()).collect() };
        match kind {
            Kind::MultipleChoice => {
                json!({"acc": est(&Estimate::mean(&col("acc"))), "acc_norm": est(&Estimate::mean(&col("acc_norm")))})
            }
            Kind::Generate => json!({"exact_match": est(&Estimate::mean(&col("exact_match")))}),
            Kind::JudgeSingle => {
                let turn = |t: u64| -> Vec<f64> {
                    rs.iter()
                        .flat_map(|r| r.detail["games"].as_array().into_iter().flatten())
                        .filter(|g| t == 0 || g["turn"].as_u64() == Some(t))
                        .filter_map(|g| g["rating"].as_f64())
                        .collect()
                };
                let unparsed = rs
                    .iter()
                    .flat_map(|r| r.detail["games"].as_array().into_iter().flatten())
                    .filter(|g| g["rating"].is_null())
                    .count();
                json!({"score": est(&Estimate::mean(&turn(0))), "turn_1": est(&Estimate::mean(&turn(1))), "turn_2": est(&Estimate::mean(&turn(2))), "unparsed": unparsed})
            }
            Kind::JudgePairwise => pair_metrics(rs, rounds, seed),
        }
    };
    let all: Vec<&ItemRow> = rows.iter().collect();
    let cats: serde_json::Map<String, Value> = by_cat
        .iter()
        .map(|(c, rs)| (c.clone(), metrics(rs)))
        .collect();
    json!({"n": rows.len(), "metrics": metrics(&all), "categories": cats})
}

/// Win/tie/loss, adjusted win rate and (when the judge gave scores) the relative score: the
/// model's total over the baseline's, as the 2023 Vicuna evaluation reported it.
pub fn pair_metrics(rs: &[&ItemRow], rounds: usize, seed: u64) -> Value {
    let owned: Vec<ItemRow> = rs.iter().map(|r| (*r).clone()).collect();
    let b = battles(&owned);
    let model = rs
        .first()
        .and_then(|r| r.detail["model"].as_str())
        .unwrap_or("");
    let rec = Record::of(model, &b);
    let (w, t, l) = rec.rates();
    let games: Vec<&Value> = rs
        .iter()
        .flat_map(|r| r.detail["games"].as_array().into_iter().flatten())
        .collect();
    let unparsed = games.iter().filter(|g| g["verdict"].is_null()).count();
    let inconsistent: u64 = rs
        .iter()
        .filter_map(|r| r.detail["inconsistent"].as_u64())
        .sum();
    // Per item (model total, baseline total) over its parsed scored games: the bootstrap unit.
    let totals: Vec<(f64, f64)> = rs
        .iter()
        .map(|r| {
            r.detail["games"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|g| Some((g["scores"][0].as_f64()?, g["scores"][1].as_f64()?)))
                .fold((0.0, 0.0), |(a, b), (m, s)| (a + m, b + s))
        })
        .collect();
    let scored = games.iter().any(|g| g["scores"].is_array());
    let rel = |s: &[&(f64, f64)]| {
        let (m, b) = s.iter().fold((0.0, 0.0), |(x, y), (m, b)| (x + m, y + b));
        m / b
    };
    let outcomes: Vec<f64> = b
        .iter()
        .map(|x| match x.winner {
            Winner::ModelA => 1.0,
            Winner::Tie => 0.5,
            Winner::ModelB => 0.0,
        })
        .collect();
    let adj = bootstrap(&outcomes, rounds, seed, |s| {
        s.iter().copied().sum::<f64>() / s.len() as f64
    });
    let mut out = json!({
        "model": model,
        "baseline": rs.first().and_then(|r| r.detail["baseline"].as_str()),
        "win_rate": w, "tie_rate": t, "loss_rate": l,
        "win_rate_adjusted": est(&adj),
        "wins": rec.win, "ties": rec.tie, "losses": rec.loss,
        "unparsed": unparsed, "inconsistent": inconsistent, "games": games.len(),
    });
    if scored {
        let (m, b) = totals
            .iter()
            .fold((0.0, 0.0), |(x, y), (m, b)| (x + m, y + b));
        out["relative_score"] = est(&bootstrap(&totals, rounds, seed, rel));
        out["model_total"] = json!(m);
        out["baseline_total"] = json!(b);
    }
    out
}
