//! `herd license` end to end on real files from `../shared`, and the lineage that
//! `herd convert` embeds.

mod common;
use common::{herd_output as herd, shared};

fn json(args: &[&str]) -> serde_json::Value {
    let (ok, out, err) = herd(args);
    assert!(ok, "{err}");
    serde_json::from_str(&out).unwrap()
}

fn path(rel: &str) -> String {
    shared().join(rel).to_string_lossy().into_owned()
}

#[test]
fn license_prints_the_verdict_first_then_reasons_conditions_and_sources() {
    let (ok, out, err) = herd(&["license", &path("data/cmmlu")]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "commercial use: NOT ALLOWED");
    let why = out.find("why (most restrictive first):").unwrap();
    let conditions = out.find("conditions to honour:").unwrap();
    let facts = out.find("facts, and where each came from:").unwrap();
    assert!(why < conditions && conditions < facts, "{out}");
    assert!(out.contains("CC-BY-NC-SA-4.0"), "{out}");
    assert!(out.contains("cmmlu/SOURCE.md (line 3)"), "{out}");
}

#[test]
fn license_json_for_datasets_in_shared() {
    for (folder, verdict, licence) in [
        ("alpaca_eval", "not-allowed", "CC-BY-NC-4.0"),
        ("hh_rlhf_helpful_test", "allowed", "MIT"),
        ("mt_bench", "conditional", "Apache-2.0"),
    ] {
        let v = json(&["license", &path(&format!("data/{folder}")), "--json"]);
        assert_eq!(v["verdict"], verdict, "{folder}");
        assert!(
            v["licences"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!(licence)),
            "{folder}: {v}"
        );
        assert_eq!(v["manifest"]["schema"], "herd-lineage");
    }
}

#[test]
fn what_if_a_model_were_fine_tuned_on_a_dataset() {
    let model = path("models/stories260K/stories260K.gguf");
    let v = json(&["license", &model, "--json"]);
    assert_eq!(v["verdict"], "allowed");
    let v = json(&["license", &model, "--data", &path("data/gsm8k"), "--json"]);
    assert_eq!(v["verdict"], "allowed");
    let v = json(&[
        "license",
        &model,
        "--data",
        &path("data/gsm8k"),
        "--data",
        &path("data/alpaca_eval"),
        "--json",
    ]);
    assert_eq!(v["verdict"], "not-allowed");
    assert_eq!(v["manifest"]["method"], "what-if-fine-tune");
    // A dataset with --base asks the same question from the other side.
    let v = json(&[
        "license",
        &path("data/gpteacher"),
        "--base",
        &model,
        "--json",
    ]);
    assert_eq!(v["verdict"], "conditional");
}

#[test]
fn unknown_is_said_plainly() {
    let (ok, out, _) = herd(&["license", &path("golden/hf-tiny/llama")]);
    assert!(ok);
    assert!(out.starts_with("commercial use: UNKNOWN"), "{out}");
    assert!(out.contains("no licence is stated"), "{out}");
}

#[test]
fn a_missing_artefact_is_an_error() {
    let (ok, _, err) = herd(&["license", "/no/such/dir"]);
    assert!(!ok);
    assert!(err.contains("/no/such/dir"), "{err}");
}

#[test]
fn convert_embeds_the_lineage_and_license_walks_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("stories-q8.gguf");
    let (ok, _, err) = herd(&[
        "convert",
        &path("models/stories260K/stories260K.gguf"),
        "-o",
        out.to_str().unwrap(),
        "--type",
        "q8_0",
        "--fallback",
        "f32",
    ]);
    assert!(ok, "{err}");
    let v = json(&["license", out.to_str().unwrap(), "--json"]);
    assert_eq!(v["verdict"], "allowed", "{v}");
    let m = &v["manifest"];
    assert_eq!(m["method"], "quantize");
    assert_eq!(m["kind"], "gguf");
    assert_eq!(m["hyperparameters"]["type"], "q8_0");
    // The source's name is its `general.name`.
    assert_eq!(m["parents"][0]["artefact"]["name"], "llama");
    assert!(
        m["parents"][0]["artefact"]["path"]
            .as_str()
            .unwrap()
            .ends_with("stories260K.gguf")
    );
    let reasons = v["reasons"].as_array().unwrap();
    assert!(
        reasons
            .iter()
            .any(|r| r["subject"] == "model stories-q8 ← source model llama"),
        "{v}"
    );
    // llama.cpp's own keys are there too.
    let (ok, info, _) = herd(&["info", out.to_str().unwrap()]);
    assert!(ok);
    assert!(
        info.contains("general.license = \"Apache-2.0 AND MIT\""),
        "{info}"
    );
}
