//! Judgments made elsewhere: every GPT-4 review of the 2023 Vicuna evaluation parsed from its
//! free text, the relative scores recomputed from the scores the files record, and AlpacaEval's
//! published win rate reproduced from its annotations.

mod common;

use std::path::PathBuf;

use herd_eval::import::{Imported, import_file};
use herd_eval::judge::parse_pair_scores;
use herd_eval::store::Store;

fn review_files() -> Vec<PathBuf> {
    let root = common::shared().join("data/vicuna_eval_2023/review");
    let mut out = vec![];
    for d in std::fs::read_dir(&root).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            out.push(f.unwrap().path());
        }
    }
    out.sort();
    out
}

#[test]
fn every_vicuna_review_parses_to_the_score_it_records() {
    let (mut n, mut first_line, mut failures) = (0, 0, vec![]);
    for f in review_files() {
        for (i, line) in std::fs::read_to_string(&f).unwrap().lines().enumerate() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let text = v["text"].as_str().unwrap();
            let recorded = (
                v["score"][0].as_f64().unwrap(),
                v["score"][1].as_f64().unwrap(),
            );
            n += 1;
            // FastChat's own parser read only the first line; these 39 maths reviews it could not.
            let fastchat = text.lines().next().unwrap().replace(',', " ");
            if fastchat.split(' ').filter(|s| !s.is_empty()).count() == 2 {
                first_line += 1;
            }
            match parse_pair_scores(text) {
                Ok(p) if p == recorded => {}
                other => failures.push(format!(
                    "{}:{}: {other:?}, recorded {recorded:?}",
                    f.display(),
                    i + 1
                )),
            }
        }
    }
    eprintln!(
        "{n} reviews, {first_line} with scores on the first line, {} failures",
        failures.len()
    );
    assert_eq!(n, 1040);
    assert_eq!(first_line, 1001);
    // Two reviews of the same maths question say "Assistant 2: 4" where the file records 2
    // (FastChat's authors entered the scores its parser missed by hand); herd reads the text.
    let known: Vec<&String> = failures
        .iter()
        .filter(|f| f.ends_with(":70: Ok((10.0, 4.0)), recorded (10.0, 2.0)"))
        .collect();
    assert_eq!(known.len(), 2, "{}", failures.join("\n"));
    assert_eq!(failures.len(), 2, "{}", failures.join("\n"));
}

#[test]
fn vicuna_relative_scores_from_imported_reviews() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("e.sqlite")).unwrap();
    let mut imp = Imported::default();
    for f in review_files() {
        import_file(&mut store, &f, None, &mut imp).unwrap();
    }
    assert_eq!(imp.judgments, 1040);
    // The recorded scores count; the two texts that say otherwise are reported.
    assert!(imp.unparsed.is_empty(), "{:?}", imp.unparsed);
    assert_eq!(imp.disagreements.len(), 2, "{:?}", imp.disagreements);
    assert!(
        imp.disagreements
            .iter()
            .all(|d| d.1 == 70 && d.2 == "parsed (10, 4), the file records (10, 2)"),
        "{:?}",
        imp.disagreements
    );
    assert_eq!(imp.runs.len(), 13);
    for (f, id) in review_files().iter().zip(&imp.runs) {
        // Independently: assistant 2's total over assistant 1's, from the recorded scores.
        let (mut a1, mut a2, mut win, mut tie) = (0.0, 0.0, 0, 0);
        for line in std::fs::read_to_string(f).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let (s1, s2) = (
                v["score"][0].as_f64().unwrap(),
                v["score"][1].as_f64().unwrap(),
            );
            a1 += s1;
            a2 += s2;
            win += (s2 > s1) as usize;
            tie += (s2 == s1) as usize;
        }
        let run = store.run(id).unwrap().unwrap();
        let m = &run.summary.as_ref().unwrap()["metrics"];
        let rel = m["relative_score"]["value"].as_f64().unwrap();
        assert!((rel - a2 / a1).abs() < 1e-12, "{id}: {rel} vs {}", a2 / a1);
        assert!(
            m["relative_score"]["lo"].as_f64().unwrap() <= rel
                && rel <= m["relative_score"]["hi"].as_f64().unwrap()
        );
        assert_eq!(m["wins"].as_u64().unwrap() as usize, win, "{id}");
        assert_eq!(m["ties"].as_u64().unwrap() as usize, tie, "{id}");
        eprintln!("{id}: relative score {rel:.4}, {win} wins, {tie} ties");
    }
    // "Vicuna reaches 92% of ChatGPT": 638 / 693.
    let gpt35 = store.run("import:vicuna-13b_20230322-clean-lang/review_gpt35_vicuna-13b:vicuna-13b:20230322-clean-lang").unwrap().unwrap();
    let m = &gpt35.summary.unwrap()["metrics"];
    assert_eq!(
        (
            m["model_total"].as_f64().unwrap(),
            m["baseline_total"].as_f64().unwrap()
        ),
        (638.0, 693.0)
    );
    assert_eq!(
        format!("{:.4}", m["relative_score"]["value"].as_f64().unwrap()),
        "0.9206"
    );
}

#[test]
fn alpaca_eval_win_rate_matches_its_leaderboard() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("e.sqlite")).unwrap();
    let mut imp = Imported::default();
    let root = common::shared().join("data/alpaca_eval");
    import_file(
        &mut store,
        &root.join("results/alpaca-7b/alpaca_eval_gpt4/annotations.json"),
        None,
        &mut imp,
    )
    .unwrap();
    assert!(imp.unparsed.is_empty());
    let run = store.run(&imp.runs[0]).unwrap().unwrap();
    let m = &run.summary.unwrap()["metrics"];
    let board = std::fs::read_to_string(root.join("leaderboards/alpaca_eval_gpt4_leaderboard.csv"))
        .unwrap();
    let row: Vec<&str> = board
        .lines()
        .find(|l| l.starts_with("alpaca-7b,"))
        .unwrap()
        .split(',')
        .collect();
    let (rate, wins, losses, draws): (f64, u64, u64, u64) = (
        row[1].parse().unwrap(),
        row[3].parse().unwrap(),
        row[4].parse().unwrap(),
        row[5].parse().unwrap(),
    );
    assert_eq!(
        (
            m["wins"].as_u64().unwrap(),
            m["losses"].as_u64().unwrap(),
            m["ties"].as_u64().unwrap()
        ),
        (wins, losses, draws)
    );
    let ours = 100.0 * m["win_rate_adjusted"]["value"].as_f64().unwrap();
    assert!((ours - rate).abs() < 1e-9, "{ours} vs {rate}");
}

/// FastChat's layout: `mt_bench/question.jsonl` and `mt_bench/model_judgment/*.jsonl`, with the
/// judgment files of `scripts/make_mt_bench_judgment_fixture.py`.
fn mt_bench_layout() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let judged = dir.path().join("mt_bench/model_judgment");
    std::fs::create_dir_all(&judged).unwrap();
    std::fs::copy(
        common::shared().join("data/mt_bench/question.jsonl"),
        dir.path().join("mt_bench/question.jsonl"),
    )
    .unwrap();
    let fx = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mt_bench_judgment");
    for f in ["gpt-4_single.jsonl", "gpt-4_pair.jsonl"] {
        std::fs::copy(fx.join(f), judged.join(f)).unwrap();
    }
    (dir, judged)
}

#[test]
fn mt_bench_single_grades_give_fastchats_scores() {
    let fx = common::fixture("mt_bench_judgment/expected.json");
    let (dir, judged) = mt_bench_layout();
    let mut store = Store::open(&dir.path().join("e.sqlite")).unwrap();
    let mut imp = Imported::default();
    import_file(
        &mut store,
        &judged.join("gpt-4_single.jsonl"),
        None,
        &mut imp,
    )
    .unwrap();
    assert_eq!(imp.judgments, 3 * 160);
    // Every text herd reads, it reads as FastChat did; what FastChat could not read (-1), herd
    // cannot either.
    assert!(imp.disagreements.is_empty(), "{:?}", imp.disagreements);
    assert_eq!(imp.runs.len(), 3);
    for id in &imp.runs {
        let run = store.run(id).unwrap().unwrap();
        let want = &fx["single"][&run.model];
        let m = &run.summary.as_ref().unwrap()["metrics"];
        for k in ["score", "turn_1", "turn_2"] {
            let got = m[k]["value"].as_f64().unwrap();
            assert!(
                (got - want[k].as_f64().unwrap()).abs() < 1e-12,
                "{} {k}: {got} vs FastChat {}",
                run.model,
                want[k]
            );
        }
        assert_eq!(m["score"]["n"], want["n"]);
        assert_eq!(m["unparsed"], want["unparsed"]);
        // Per category, from question.jsonl beside the judgments.
        let cats = run.summary.as_ref().unwrap()["categories"]
            .as_object()
            .unwrap()
            .clone();
        assert_eq!(cats.len(), 8, "{:?}", cats.keys().collect::<Vec<_>>());
        assert!(cats.contains_key("reasoning") && cats.contains_key("coding"));
    }
    let unparsed_files: usize = imp.unparsed.len();
    assert_eq!(
        unparsed_files as u64,
        ["vicuna-13b-v1.3", "alpaca-13b", "llama-13b"]
            .iter()
            .map(|m| fx["single"][m]["unparsed"].as_u64().unwrap())
            .sum::<u64>()
    );
}

#[test]
fn mt_bench_pairwise_judgments_give_fastchats_win_rates() {
    let fx = common::fixture("mt_bench_judgment/expected.json");
    let (dir, judged) = mt_bench_layout();
    let mut store = Store::open(&dir.path().join("e.sqlite")).unwrap();
    let mut imp = Imported::default();
    import_file(&mut store, &judged.join("gpt-4_pair.jsonl"), None, &mut imp).unwrap();
    assert!(imp.disagreements.is_empty(), "{:?}", imp.disagreements);
    let want = fx["pair"].as_object().unwrap();
    assert_eq!(imp.runs.len(), want.len());
    for id in &imp.runs {
        let run = store.run(id).unwrap().unwrap();
        let m = &run.summary.as_ref().unwrap()["metrics"];
        let model = m["model"].as_str().unwrap();
        let w = &want[model];
        assert_eq!(m["baseline"], "gpt-3.5-turbo");
        assert_eq!(
            (&m["wins"], &m["losses"], &m["ties"]),
            (&w["win"], &w["loss"], &w["tie"]),
            "{model}"
        );
        for (mine, theirs) in [("win_rate", "win_rate"), ("loss_rate", "loss_rate")] {
            assert!(
                (m[mine].as_f64().unwrap() - w[theirs].as_f64().unwrap()).abs() < 1e-12,
                "{model} {mine}"
            );
        }
        let adj = m["win_rate_adjusted"]["value"].as_f64().unwrap();
        assert!(
            (adj - w["win_rate_adjusted"].as_f64().unwrap()).abs() < 1e-12,
            "{model}: {adj} vs FastChat {}",
            w["win_rate_adjusted"]
        );
        let (lo, hi) = (
            m["win_rate_adjusted"]["lo"].as_f64().unwrap(),
            m["win_rate_adjusted"]["hi"].as_f64().unwrap(),
        );
        assert!(
            lo <= adj && adj <= hi && lo < hi,
            "{model}: interval [{lo}, {hi}]"
        );
    }
}
