//! Lineage cases with their expected verdicts, built from real licence files and dataset
//! folders in `../shared` and from GGUF files and cards made here.

mod common;

use common::{metadata_gguf, s, shared};
use herd_license::detect::licence_file_facts;
use herd_license::manifest::method;
use herd_license::{Component, Kind, Manifest, Verdict, assess, detect};
use herd_model::gguf::Value;

/// A base model whose only fact is crabml's Apache-2.0 licence file.
fn apache_base() -> Manifest {
    Manifest::found(
        Kind::Model,
        Component::named("apache-model").with_facts(licence_file_facts(
            &shared().join("models/stories260K/LICENSE.crabml"),
        )),
    )
}

fn llama2_base(dir: &std::path::Path) -> Manifest {
    let path = dir.join("llama-2-7b.gguf");
    metadata_gguf(
        &path,
        &[
            s("general.name", "Llama 2 7B"),
            s("general.license", "llama2"),
        ],
    );
    detect(&path).unwrap()
}

fn fine_tune(base: Manifest, data: &[&str]) -> Manifest {
    let mut m = Manifest::new(Kind::LoraAdapter, "my-adapter", method::FINE_TUNE_LORA)
        .with_hyperparameters(serde_json::json!({"rank": 8, "lr": 2e-4}))
        .with_parent(base);
    for d in data {
        m = m.with_parent(detect(&shared().join("data").join(d)).unwrap());
    }
    m
}

#[test]
fn apache_base_and_mit_data_is_allowed() {
    let m = fine_tune(apache_base(), &["gsm8k", "hh_rlhf_helpful_test"]);
    let a = assess(&m);
    assert_eq!(a.verdict, Verdict::Allowed, "{:#?}", a.reasons);
    assert_eq!(a.licence_ids, ["Apache-2.0", "MIT"]);
    // Still with the notices to keep.
    assert!(a.conditions.iter().any(|c| c.source == "Apache-2.0"));
    assert!(a.conditions.iter().any(|c| c.source == "MIT"));
}

#[test]
fn llama2_base_is_allowed_with_its_conditions() {
    let dir = tempfile::tempdir().unwrap();
    let m = fine_tune(llama2_base(dir.path()), &["gsm8k"]);
    let a = assess(&m);
    assert_eq!(a.verdict, Verdict::Conditional, "{:#?}", a.reasons);
    let texts: Vec<&str> = a
        .conditions
        .iter()
        .filter(|c| c.source == "llama2")
        .map(|c| c.text.as_str())
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("700 million monthly active users"))
    );
    assert!(texts.iter().any(|t| t.contains("Acceptable Use Policy")));
    assert!(
        texts
            .iter()
            .any(|t| t.contains("improve any other large language model"))
    );
    let reason = a
        .reasons
        .iter()
        .find(|r| r.verdict == Verdict::Conditional)
        .unwrap();
    assert_eq!(
        reason.subject, "model my-adapter ← base model Llama 2 7B",
        "the chain names the path to the fact"
    );
    assert!(reason.text.contains("general.license"), "{}", reason.text);
}

#[test]
fn base_with_cc_by_nc_data_is_not_allowed() {
    for data in ["alpaca_eval", "cmmlu"] {
        let m = fine_tune(apache_base(), &["gsm8k", data]);
        let a = assess(&m);
        assert_eq!(a.verdict, Verdict::NotAllowed, "{data}");
        let r = a
            .reasons
            .iter()
            .find(|r| r.verdict == Verdict::NotAllowed)
            .unwrap();
        assert_eq!(r.subject, format!("model my-adapter ← dataset {data}"));
        assert!(
            r.text.contains("non-commercial ⇒ not allowed"),
            "{}",
            r.text
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let a = assess(&fine_tune(llama2_base(dir.path()), &["alpaca_eval"]));
    assert_eq!(a.verdict, Verdict::NotAllowed);
    assert!(a.reasons.iter().any(|r| r.verdict == Verdict::Conditional));
}

#[test]
fn an_unknown_dataset_makes_the_verdict_unknown() {
    let m = fine_tune(apache_base(), &["gsm8k"])
        .with_dataset(Component::named("someone/scraped-chats"));
    let a = assess(&m);
    assert_eq!(a.verdict, Verdict::Unknown);
    let r = a
        .reasons
        .iter()
        .find(|r| r.verdict == Verdict::Unknown)
        .unwrap();
    assert_eq!(
        r.subject,
        "model my-adapter ← dataset someone/scraped-chats"
    );

    // A data folder with no licence anywhere is the same.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("train.jsonl"), "{\"text\": \"hi\"}\n").unwrap();
    let data = detect(&dir.path().join("train.jsonl")).unwrap();
    let a = assess(
        &apache_base()
            .with_method(method::FINE_TUNE_FULL)
            .with_parent(data),
    );
    assert_eq!(a.verdict, Verdict::Unknown);
}

#[test]
fn not_allowed_outranks_unknown() {
    let m = fine_tune(apache_base(), &["cmmlu"]).with_dataset(Component::named("mystery"));
    let a = assess(&m);
    assert_eq!(a.verdict, Verdict::NotAllowed);
    assert!(a.any_unknown);
}

#[test]
fn provider_outputs_add_the_providers_terms() {
    let a = assess(&fine_tune(apache_base(), &["gpteacher"]));
    assert_eq!(a.verdict, Verdict::Conditional);
    let c = a
        .conditions
        .iter()
        .find(|c| c.source == "OpenAI terms")
        .unwrap();
    assert!(c.text.contains("compete with OpenAI"), "{}", c.text);
}

#[test]
fn a_conversion_inherits_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let src = llama2_base(dir.path());
    let q = Manifest::new(Kind::Gguf, "llama-2-7b.Q4_0", method::QUANTIZE).with_parent(src);
    let a = assess(&q);
    assert_eq!(a.verdict, Verdict::Conditional);
    assert_eq!(a.licence_ids, ["llama2"]);
    assert_eq!(
        a.reasons[0].subject,
        "model llama-2-7b.Q4_0 ← source model Llama 2 7B"
    );
}

#[test]
fn a_gguf_listing_bases_without_licences_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ft.gguf");
    metadata_gguf(
        &path,
        &[
            s("general.license", "apache-2.0"),
            ("general.base_model.count".into(), Value::U32(1)),
            s("general.base_model.0.name", "Mistral 7B v0.1"),
            s("general.base_model.0.organization", "Mistralai"),
            s(
                "general.base_model.0.repo_url",
                "https://huggingface.co/mistralai/Mistral-7B-v0.1",
            ),
        ],
    );
    let m = detect(&path).unwrap();
    assert_eq!(m.base_models[0].name, "Mistralai/Mistral 7B v0.1");
    let a = assess(&m);
    assert_eq!(a.verdict, Verdict::Unknown);
    assert!(a.reasons.iter().any(|r| r.verdict == Verdict::Allowed));
}

#[test]
fn card_license_other_with_a_name_is_read_by_its_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), "{}").unwrap();
    std::fs::write(
        dir.path().join("README.md"),
        "---\nlicense: other\nlicense_name: llama3\nlicense_link: LICENSE\n---\n# A model\n",
    )
    .unwrap();
    let a = assess(&detect(dir.path()).unwrap());
    assert_eq!(a.licence_ids, ["llama3"]);
    assert_eq!(a.verdict, Verdict::Conditional);
    assert!(
        a.conditions
            .iter()
            .any(|c| c.text.contains("Built with Meta Llama 3"))
    );
}

#[test]
fn a_short_licence_notice_is_read_as_a_statement() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.jsonl"), "{}\n").unwrap();
    std::fs::write(
        dir.path().join("LICENSE.txt"),
        "The data in this folder is licensed under CC BY-NC 4.0.\n",
    )
    .unwrap();
    let m = detect(dir.path()).unwrap();
    let l = &m.artefact.facts.licences[0];
    assert_eq!(l.id.as_deref(), Some("CC-BY-NC-4.0"));
    assert_eq!(l.scope, herd_license::Scope::Data);
    assert_eq!(l.evidence, herd_license::Evidence::Statement);
    assert_eq!(assess(&m).verdict, Verdict::NotAllowed);
}

#[test]
fn a_code_only_licence_leaves_the_data_unknown() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.jsonl"), "{}\n").unwrap();
    std::fs::write(
        dir.path().join("SOURCE.md"),
        "# Some data\n- License: code MIT; the data licence is not stated.\n",
    )
    .unwrap();
    let a = assess(&detect(dir.path()).unwrap());
    assert_eq!(a.verdict, Verdict::Unknown);
    assert!(
        a.reasons[0].text.contains("only licences for other parts"),
        "{:#?}",
        a.reasons
    );
}
