//! `herd eval` as a user runs it: a run killed with SIGKILL resumes without losing, repeating
//! or recomputing an item and ends with the numbers of an uninterrupted run; local runs store
//! what reproduces them and do not depend on batch size; malformed rows stop a run with their
//! file and line; MT-bench answers judged by a local model (herd serve) give
//! ratings end to end; reports are written.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use herd_eval::store::Store;

#[path = "../../herd-eval/tests/common/fake_server.rs"]
mod fake_server;
use fake_server::{FakeServer, State};

mod common;
use common::{Server, shared};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn herd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_herd"));
    c.env_remove("HERD_EVAL_DB");
    c
}

fn summary(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "herd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["summary"].clone()
}

fn gsm8k_run(db: &Path, url: &str, run_id: &str, batch: usize) -> Command {
    let mut c = herd();
    c.args(["eval", "run"])
        .arg(repo().join("tasks/gsm8k.toml"))
        .args([
            "--endpoint",
            url,
            "--endpoint-model",
            "fake",
            "--limit",
            "60",
            "--batch",
            &batch.to_string(),
            "--concurrency",
            "2",
        ])
        .args([
            "--run-id",
            run_id,
            "--json",
            "--rounds",
            "100",
            "--retries",
            "0",
        ])
        .arg("--db")
        .arg(db);
    c
}

/// Prompts as sent of a run's items, by item key.
fn sent_prompts(db: &Path, run: &str) -> std::collections::BTreeMap<String, String> {
    Store::open(db)
        .unwrap()
        .items(run)
        .unwrap()
        .into_iter()
        .map(|r| (r.key, r.prompt["prompt"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn a_killed_run_resumes_without_losing_or_repeating_items() {
    // An endpoint that answers 20 requests and then holds every further one: the run is
    // SIGKILLed while its sixth batch of four waits, after five batches were stored.
    let server = FakeServer::start(State {
        stall_after: Some(20),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let (db, db_ref) = (
        dir.path().join("killed.sqlite"),
        dir.path().join("whole.sqlite"),
    );
    let mut child = gsm8k_run(&db, &server.url, "r", 4)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while server.with(|s| s.stalled) < 2 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "the run never reached the stall"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let done = sent_prompts(&db, "r");
    assert_eq!(done.len(), 20, "whole batches only");
    server.release();
    let before = server.with(|s| s.bodies.len());
    assert_eq!(before, 20);

    // Resumed: only the 40 missing items are asked for, each once.
    let resumed = summary(&gsm8k_run(&db, &server.url, "r", 4).output().unwrap());
    let asked: Vec<String> = server.with(|s| {
        s.bodies[before..]
            .iter()
            .map(|b| b["prompt"].as_str().unwrap().to_string())
            .collect()
    });
    assert_eq!(asked.len(), 40);
    let all = sent_prompts(&db, "r");
    assert_eq!(all.len(), 60);
    let asked_set: std::collections::BTreeSet<&String> = asked.iter().collect();
    assert_eq!(asked_set.len(), 40, "an item was asked for twice");
    for (k, p) in &all {
        assert_eq!(
            done.contains_key(k),
            !asked_set.contains(p),
            "{k}: recomputed or lost"
        );
    }

    // The same numbers as an uninterrupted run (another batch size).
    let n = server.with(|s| s.bodies.len());
    let whole = summary(&gsm8k_run(&db_ref, &server.url, "r", 7).output().unwrap());
    assert_eq!(server.with(|s| s.bodies.len()) - n, 60);
    assert_eq!(resumed["metrics"], whole["metrics"]);
    assert_eq!(resumed["categories"], whole["categories"]);
    let (a, b) = (
        Store::open(&db).unwrap().items("r").unwrap(),
        Store::open(&db_ref).unwrap().items("r").unwrap(),
    );
    assert_eq!(a.len(), 60);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (&x.key, &x.output, &x.detail),
            (&y.key, &y.output, &y.detail)
        );
    }
    // The test server answers right for some of the questions only.
    let em = resumed["metrics"]["exact_match"]["value"].as_f64().unwrap();
    assert!(em < 1.0, "{em}");
}

#[test]
fn local_runs_store_what_reproduces_them_and_do_not_depend_on_batch_size() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("e.sqlite");
    let model = shared().join("golden/hf-tiny/llama");
    let run = |id: &str, batch: &str| {
        let mut c = herd();
        c.args(["eval", "run"])
            .arg(repo().join("tasks/mmlu.toml"))
            .arg("--model")
            .arg(&model);
        c.args([
            "--limit",
            "30",
            "--num-fewshot",
            "1",
            "--batch",
            batch,
            "--run-id",
            id,
            "-t",
            "2",
            "--json",
            "--rounds",
            "100",
        ]);
        summary(&c.arg("--db").arg(&db).output().unwrap())
    };
    let (one, eight) = (run("b1", "1"), run("b8", "8"));
    assert_eq!(
        one["metrics"]["acc"]["value"],
        eight["metrics"]["acc"]["value"]
    );
    let store = Store::open(&db).unwrap();
    let (a, b) = (store.items("b1").unwrap(), store.items("b8").unwrap());
    assert_eq!(a.len(), 30);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.prompt, y.prompt, "{}: the prompts as sent", x.key);
        let (lx, ly) = (
            x.output["loglikelihoods"].as_array().unwrap(),
            y.output["loglikelihoods"].as_array().unwrap(),
        );
        for (p, q) in lx.iter().zip(ly) {
            assert!(
                (p.as_f64().unwrap() - q.as_f64().unwrap()).abs() < 1e-5,
                "{}: batch 1 vs 8",
                x.key
            );
        }
    }
    // What makes the run reproducible is stored with it.
    let info = store.run("b1").unwrap().unwrap();
    assert_eq!(info.model_sha256.len(), 64);
    assert_eq!(info.task_version, "1");
    assert_eq!(
        info.task_text,
        std::fs::read_to_string(repo().join("tasks/mmlu.toml")).unwrap()
    );
    assert_eq!(info.settings["seed"], 1234);
    assert_eq!(info.settings["num_fewshot"], 1);
    assert!(
        a[0].prompt["context"]
            .as_str()
            .unwrap()
            .ends_with("Answer:")
    );
    assert!(a[0].prompt["sent"]["context_ids"].is_array());
    // A run of that id with other settings is refused rather than mixed.
    let mut c = herd();
    c.args(["eval", "run"])
        .arg(repo().join("tasks/mmlu.toml"))
        .arg("--model")
        .arg(&model);
    let out = c
        .args(["--limit", "30", "--run-id", "b1", "-t", "2"])
        .arg("--db")
        .arg(&db)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("exists with a different set of settings")
    );
}

#[test]
fn malformed_rows_stop_the_run_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("quiz.csv");
    std::fs::write(
        &data,
        "question,a,b,answer\n\"What is 1+1?\",2,3,A\n\"Broken\nrow\",1,B\n",
    )
    .unwrap();
    let task = dir.path().join("quiz.toml");
    let run_quiz = || {
        herd()
            .args(["eval", "run"])
            .arg(&task)
            .arg("--model")
            .arg(shared().join("golden/hf-tiny/llama"))
            .arg("--db")
            .arg(dir.path().join("e.sqlite"))
            .output()
            .unwrap()
    };
    std::fs::write(&task, "name = \"quiz\"\nversion = \"1\"\nkind = \"multiple_choice\"\n[data]\npath = \"quiz.csv\"\nchoices = [\"a\", \"b\"]\nanswer = \"answer\"\n").unwrap();
    let out = run_quiz();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("quiz.csv:3: 3 fields, expected 4 (question, a, b, answer)"),
        "{err}"
    );

    std::fs::write(&data, "question,a,b,answer\n\"What is 1+1?\",2,3,C\n").unwrap();
    let out = run_quiz();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("quiz.csv:2: answer 'C' is neither a label (A, B)"),
        "{err}"
    );
}

/// A random tiny chat model as the judge, behind herd serve. Its context is stretched past
/// the 256 positions it was made with so that MT-bench's real judge prompts fit.
fn judge_server() -> Server {
    let model = shared().join("golden/hf-tiny/qwen2");
    common::serve(&[
        model.to_str().unwrap(),
        "--ctx",
        "16384",
        "-t",
        "2",
        "--parallel",
        "4",
    ])
}

/// `herd eval run TASK --answers ANSWERS --json --db DB ARGS…`: the summary.
fn judge_run(task: &Path, answers: &Path, db: &Path, args: &[&str]) -> serde_json::Value {
    let mut c = herd();
    c.args(["eval", "run"])
        .arg(task)
        .arg("--answers")
        .arg(answers);
    c.args(["--json", "--rounds", "100"])
        .args(args)
        .arg("--db")
        .arg(db);
    summary(&c.output().unwrap())
}

#[test]
fn mt_bench_answers_judged_by_a_local_model_give_ratings() {
    let server = judge_server();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("e.sqlite");
    let mt = shared().join("data/mt_bench");
    // MT-bench pairwise with the real judge prompts, first turns only, short judge answers.
    let task = dir.path().join("mt.toml");
    std::fs::write(
        &task,
        format!(
            "name = \"mt_bench_pairwise\"\nversion = \"1\"\nkind = \"judge_pairwise\"\n[data]\npath = {q:?}\nid = \"question_id\"\nturns = \"turns\"\ncategory = \"category\"\nreference_answers = {r:?}\n[judge]\nstyle = \"mt_bench\"\nprompts = {p:?}\nbaseline = \"gpt-3.5-turbo\"\nbaseline_answers = {b:?}\nreference_categories = [\"math\", \"reasoning\", \"coding\"]\nmulti_turn = false\nmax_tokens = 48\n",
            q = mt.join("question.jsonl"),
            r = mt.join("reference_answer/gpt-4.jsonl"),
            p = mt.join("judge_prompts.jsonl"),
            b = mt.join("model_answer/gpt-3.5-turbo.jsonl"),
        ),
    )
    .unwrap();
    let judge = |answers: &str, json: bool, limit: &str| {
        let mut args = vec!["--judge-endpoint", server.url.as_str(), "--limit", limit];
        if json {
            args.push("--judge-json");
        }
        judge_run(&task, &mt.join("model_answer").join(answers), &db, &args)
    };
    // Held to JSON, every verdict parses.
    for answers in [
        "vicuna-7b-v1.3.jsonl",
        "alpaca-13b.jsonl",
        "llama-13b.jsonl",
    ] {
        let s = judge(answers, true, "4");
        assert_eq!(s["metrics"]["unparsed"], 0, "{s}");
        assert_eq!(s["metrics"]["games"], 8, "{s}");
    }
    // Free text from a random model: unparsable verdicts are counted, not guessed.
    let s = judge("mpt-7b-chat.jsonl", false, "2");
    assert_eq!(s["metrics"]["games"], 4);
    eprintln!(
        "free-text judge: {} of 4 games unparsed",
        s["metrics"]["unparsed"]
    );

    // Single-answer grading, by the served judge held to JSON and by a local judge model.
    let single = dir.path().join("single.toml");
    std::fs::write(
        &single,
        format!(
            "name = \"mt_bench_single\"\nversion = \"1\"\nkind = \"judge_single\"\n[data]\npath = {q:?}\nid = \"question_id\"\nturns = \"turns\"\ncategory = \"category\"\nreference_answers = {r:?}\n[judge]\nstyle = \"mt_bench\"\nprompts = {p:?}\nreference_categories = [\"math\", \"reasoning\", \"coding\"]\nmax_tokens = 48\n",
            q = mt.join("question.jsonl"),
            r = mt.join("reference_answer/gpt-4.jsonl"),
            p = mt.join("judge_prompts.jsonl"),
        ),
    )
    .unwrap();
    let gpt4 = mt.join("model_answer/gpt-4.jsonl");
    let served = ["--judge-endpoint", server.url.as_str(), "--judge-json"];
    let s = judge_run(
        &single,
        &gpt4,
        &db,
        &[&served[..], &["--limit", "2"]].concat(),
    );
    assert_eq!(s["metrics"]["unparsed"], 0, "{s}");
    assert_eq!(
        s["metrics"]["score"]["n"], 4,
        "two questions, two turns: {s}"
    );
    let x = s["metrics"]["score"]["value"].as_f64().unwrap();
    assert!((1.0..=10.0).contains(&x), "{s}");
    let qwen2 = shared().join("golden/hf-tiny/qwen2");
    let local = [
        "--judge-model",
        qwen2.to_str().unwrap(),
        "--limit",
        "1",
        "--run-id",
        "local-judge",
        "-t",
        "2",
    ];
    let s = judge_run(&single, &gpt4, &db, &local);
    assert_eq!(s["n"], 1, "{s}");

    // The 2023 Vicuna pairwise review with scores: a relative score comes out.
    let vicuna = shared().join("data/vicuna_eval_2023");
    let vt = dir.path().join("vicuna.toml");
    std::fs::write(
        &vt,
        format!(
            "name = \"vicuna_pairwise\"\nversion = \"1\"\nkind = \"judge_pairwise\"\n[data]\npath = {q:?}\nid = \"question_id\"\nquestion = \"text\"\ncategory = \"category\"\n[judge]\nstyle = \"vicuna\"\nprompts = {p:?}\nbaseline = \"gpt-3.5-turbo:20230327\"\nbaseline_answers = {b:?}\nmulti_turn = false\nmax_tokens = 48\n",
            q = vicuna.join("question.jsonl"),
            p = vicuna.join("prompt.jsonl"),
            b = vicuna.join("answer/answer_gpt35.jsonl"),
        ),
    )
    .unwrap();
    let answers = vicuna.join("answer/answer_vicuna-13b.jsonl");
    let s = judge_run(
        &vt,
        &answers,
        &db,
        &[&served[..], &["--limit", "3"]].concat(),
    );
    assert_eq!(s["metrics"]["unparsed"], 0, "{s}");
    assert_eq!(s["metrics"]["games"], 6, "{s}");
    let (m, b) = (
        s["metrics"]["model_total"].as_f64().unwrap(),
        s["metrics"]["baseline_total"].as_f64().unwrap(),
    );
    let rel = s["metrics"]["relative_score"]["value"].as_f64().unwrap();
    assert!(
        (rel - m / b).abs() < 1e-12 && (6.0..=60.0).contains(&m),
        "{s}"
    );

    let out = herd()
        .args(["eval", "ratings", "--json", "--rounds", "200"])
        .arg("--db")
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = r["elo"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["model"].as_str().unwrap())
        .collect();
    for m in ["gpt-3.5-turbo", "vicuna-7b-v1.3", "alpaca-13b", "llama-13b"] {
        assert!(names.contains(&m), "{m} missing from {names:?}");
    }
    for x in r["elo"]
        .as_array()
        .unwrap()
        .iter()
        .chain(r["bradley_terry"].as_array().unwrap())
    {
        let (v, lo, hi) = (
            x["rating"].as_f64().unwrap(),
            x["lo"].as_f64().unwrap(),
            x["hi"].as_f64().unwrap(),
        );
        assert!(v.is_finite() && lo <= hi, "{x}");
    }

    let out = herd()
        .args(["eval", "report", "--out"])
        .arg(dir.path().join("report"))
        .arg("--db")
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(dir.path().join("report/report.html")).unwrap();
    assert!(
        html.contains("<svg") && html.contains("Ratings: online Elo") && !html.contains("<script")
    );
    let md = std::fs::read_to_string(dir.path().join("report/report.md")).unwrap();
    assert!(md.contains("| vicuna-7b-v1.3 |"), "{md}");
}
