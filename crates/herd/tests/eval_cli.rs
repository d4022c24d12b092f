//! `herd eval` as a user runs it: a run killed with SIGKILL resumes without losing or
//! repeating an item and ends with the numbers of an uninterrupted run; malformed rows stop a
//! run with their file and line; MT-bench answers judged by a local model (herd serve) give
//! ratings end to end; reports are written.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use herd_eval::store::Store;

fn shared() -> PathBuf {
    match std::env::var_os("HERD_SHARED") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn herd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_herd"));
    c.env_remove("HERD_EVAL_DB");
    c
}

fn mmlu_run(db: &Path, run_id: &str, limit: usize, batch: usize) -> Command {
    let mut c = herd();
    c.args(["eval", "run"])
        .arg(repo().join("tasks/mmlu.toml"))
        .arg("--model")
        .arg(shared().join("golden/hf-tiny/llama"))
        .args(["--limit", &limit.to_string(), "--batch", &batch.to_string(), "--run-id", run_id, "-t", "1", "--json", "--rounds", "100"])
        .arg("--db")
        .arg(db);
    c
}

fn summary(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "herd failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["summary"].clone()
}

#[test]
fn a_killed_run_resumes_without_losing_or_repeating_items() {
    let dir = tempfile::tempdir().unwrap();
    let (db, db_ref) = (dir.path().join("killed.sqlite"), dir.path().join("whole.sqlite"));
    const N: usize = 400;
    let mut child = mmlu_run(&db, "r", N, 4).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let t0 = Instant::now();
    let killed_at = loop {
        std::thread::sleep(Duration::from_millis(20));
        let n = Store::open(&db).ok().and_then(|s| s.done("r").ok()).map_or(0, |d| d.len());
        if n >= 40 {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            break n;
        }
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        assert!(t0.elapsed() < Duration::from_secs(120), "no progress");
    };
    let after_kill = Store::open(&db).unwrap().done("r").unwrap().len();
    assert!(after_kill >= killed_at && after_kill < N, "{after_kill} items after the kill");

    let resumed = summary(&mmlu_run(&db, "r", N, 4).output().unwrap());
    let whole = summary(&mmlu_run(&db_ref, "r", N, 7).output().unwrap());
    assert_eq!(resumed["metrics"], whole["metrics"]);
    assert_eq!(resumed["categories"], whole["categories"]);

    let (a, b) = (Store::open(&db).unwrap().items("r").unwrap(), Store::open(&db_ref).unwrap().items("r").unwrap());
    assert_eq!(a.len(), N);
    let keys: std::collections::HashSet<_> = a.iter().map(|r| r.key.clone()).collect();
    assert_eq!(keys.len(), N, "an item was written twice");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.key, y.key);
        let (lx, ly) = (x.output["loglikelihoods"].as_array().unwrap(), y.output["loglikelihoods"].as_array().unwrap());
        for (p, q) in lx.iter().zip(ly) {
            assert!((p.as_f64().unwrap() - q.as_f64().unwrap()).abs() < 1e-5, "{}: batch 4 vs 7", x.key);
        }
    }
    eprintln!("killed after {after_kill} of {N} items; resumed to the same numbers as an uninterrupted run");
}

#[test]
fn malformed_rows_stop_the_run_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("quiz.csv");
    std::fs::write(&data, "question,a,b,answer\n\"What is 1+1?\",2,3,A\n\"Broken\nrow\",1,B\n").unwrap();
    let task = dir.path().join("quiz.toml");
    std::fs::write(&task, "name = \"quiz\"\nversion = \"1\"\nkind = \"multiple_choice\"\n[data]\npath = \"quiz.csv\"\nchoices = [\"a\", \"b\"]\nanswer = \"answer\"\n").unwrap();
    let out = herd()
        .args(["eval", "run"])
        .arg(&task)
        .arg("--model")
        .arg(shared().join("golden/hf-tiny/llama"))
        .arg("--db")
        .arg(dir.path().join("e.sqlite"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("quiz.csv:3: 3 fields, expected 4 (question, a, b, answer)"), "{err}");

    std::fs::write(&data, "question,a,b,answer\n\"What is 1+1?\",2,3,C\n").unwrap();
    let out = herd().args(["eval", "run"]).arg(&task).arg("--model").arg(shared().join("golden/hf-tiny/llama")).arg("--db").arg(dir.path().join("e.sqlite")).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("quiz.csv:2: answer 'C' is neither a label (A, B)"), "{err}");
}

struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A random tiny chat model as the judge, behind herd serve. Its context is stretched past
/// the 256 positions it was made with so that MT-bench's real judge prompts fit.
fn judge_server() -> Server {
    let mut child = herd()
        .arg("serve")
        .arg(shared().join("golden/hf-tiny/qwen2"))
        .args(["--port", "0", "--ctx", "16384", "-t", "2", "--parallel", "4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("listening on ").unwrap().to_string();
    Server(child, url)
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
        let mut c = herd();
        c.args(["eval", "run"]).arg(&task).arg("--answers").arg(mt.join("model_answer").join(answers));
        c.args(["--judge-endpoint", &server.1, "--limit", limit, "--json", "--rounds", "100"]).arg("--db").arg(&db);
        if json {
            c.arg("--judge-json");
        }
        summary(&c.output().unwrap())
    };
    // Held to JSON, every verdict parses.
    for answers in ["vicuna-7b-v1.3.jsonl", "alpaca-13b.jsonl", "llama-13b.jsonl"] {
        let s = judge(answers, true, "4");
        assert_eq!(s["metrics"]["unparsed"], 0, "{s}");
        assert_eq!(s["metrics"]["games"], 8, "{s}");
    }
    // Free text from a random model: unparsable verdicts are counted, not guessed.
    let s = judge("mpt-7b-chat.jsonl", false, "2");
    assert_eq!(s["metrics"]["games"], 4);
    eprintln!("free-text judge: {} of 4 games unparsed", s["metrics"]["unparsed"]);

    let out = herd().args(["eval", "ratings", "--json", "--rounds", "200"]).arg("--db").arg(&db).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = r["elo"].as_array().unwrap().iter().map(|x| x["model"].as_str().unwrap()).collect();
    for m in ["gpt-3.5-turbo", "vicuna-7b-v1.3", "alpaca-13b", "llama-13b"] {
        assert!(names.contains(&m), "{m} missing from {names:?}");
    }
    for x in r["elo"].as_array().unwrap().iter().chain(r["bradley_terry"].as_array().unwrap()) {
        let (v, lo, hi) = (x["rating"].as_f64().unwrap(), x["lo"].as_f64().unwrap(), x["hi"].as_f64().unwrap());
        assert!(v.is_finite() && lo <= hi, "{x}");
    }

    let out = herd().args(["eval", "report", "--out"]).arg(dir.path().join("report")).arg("--db").arg(&db).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let html = std::fs::read_to_string(dir.path().join("report/report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("Ratings: online Elo") && !html.contains("<script"));
    let md = std::fs::read_to_string(dir.path().join("report/report.md")).unwrap();
    assert!(md.contains("| vicuna-7b-v1.3 |"), "{md}");
}
