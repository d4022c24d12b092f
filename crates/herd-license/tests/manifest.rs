//! Lineage manifests written and read back: as JSON, inside GGUF metadata and in model
//! cards; broken ones are reported with their file and problem, never a panic.

mod common;

use common::{metadata_gguf, s, shared};
use herd_license::manifest::{FILE_NAME, GGUF_KEY, method};
use herd_license::{Component, Kind, Manifest, Verdict, assess, detect};
use herd_model::gguf::{GgufFile, Value};

/// A LoRA fine-tune of a Llama 2 model (named on the hub) on two real datasets.
fn sample() -> Manifest {
    let base_facts = herd_license::Facts {
        licences: vec![herd_license::Facts::declared(
            "llama2",
            herd_license::Origin::new("meta-llama/Llama-2-7b-hf/README.md", Some("license".into())),
        )],
        ..Default::default()
    };
    let mut base = Component::named("meta-llama/Llama-2-7b-hf").with_facts(base_facts);
    base.repo_url = Some("https://huggingface.co/meta-llama/Llama-2-7b-hf".into());
    Manifest::new(Kind::LoraAdapter, "llama2-gsm8k", method::FINE_TUNE_LORA)
        .with_hyperparameters(serde_json::json!({"rank": 16, "alpha": 32, "epochs": 1}))
        .with_base(base)
        .with_parent(detect(&shared().join("data/gsm8k")).unwrap())
        .with_parent(detect(&shared().join("data/hh_rlhf_helpful_test")).unwrap())
}

#[test]
fn json_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let m = sample();
    let path = dir.path().join(FILE_NAME);
    m.write(&path).unwrap();
    assert_eq!(Manifest::read(&path).unwrap(), m);
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    let v: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
    assert_eq!(v["schema"], "herd-lineage");
    assert_eq!(v["version"], 1);
    assert_eq!(v["method"], "fine-tune-lora");
    assert_eq!(v["herd_version"], env!("CARGO_PKG_VERSION"));
    assert!(v["created"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn gguf_metadata_carries_llama_cpp_keys_and_the_whole_manifest() {
    let m = sample();
    let meta = m.to_gguf_metadata();
    let get = |k: &str| {
        meta.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        get("general.license"),
        Some(Value::String("llama2 AND MIT".into()))
    );
    assert_eq!(get("general.base_model.count"), Some(Value::U32(1)));
    assert_eq!(
        get("general.base_model.0.name"),
        Some(Value::String("Llama-2-7b-hf".into()))
    );
    assert_eq!(
        get("general.base_model.0.organization"),
        Some(Value::String("meta-llama".into()))
    );
    assert_eq!(get("general.dataset.count"), Some(Value::U32(2)));
    assert_eq!(
        get("general.dataset.1.name"),
        Some(Value::String("hh_rlhf_helpful_test".into()))
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("adapter.gguf");
    metadata_gguf(&path, &meta);
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(Manifest::from_gguf(&f).unwrap(), Some(m.clone()));
    assert_eq!(detect(&path).unwrap(), m);
}

#[test]
fn single_licence_gguf_names_and_links_it() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.gguf");
    metadata_gguf(&src, &[s("general.license", "apache-2.0")]);
    let m = Manifest::new(Kind::Gguf, "q", method::QUANTIZE).with_parent(detect(&src).unwrap());
    let meta = m.to_gguf_metadata();
    let get = |k: &str| {
        meta.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        get("general.license"),
        Some(Value::String("Apache-2.0".into()))
    );
    assert_eq!(
        get("general.license.name"),
        Some(Value::String("Apache License 2.0".into()))
    );
    assert!(get("general.license.link").is_some());
    assert!(get("general.base_model.count").is_none());
}

#[test]
fn a_gguf_without_a_manifest_gives_its_general_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    metadata_gguf(
        &path,
        &[
            s("general.name", "Some Chat"),
            s("general.license", "other"),
            s("general.license.name", "llama3.1"),
            s(
                "general.license.link",
                "https://www.llama.com/llama3_1/license/",
            ),
            ("general.dataset.count".into(), Value::U32(1)),
            s("general.dataset.0.name", "UltraChat 200k"),
        ],
    );
    let m = detect(&path).unwrap();
    assert_eq!(m.method, "found");
    assert_eq!(m.artefact.name, "Some Chat");
    let l = &m.artefact.facts.licences[0];
    assert_eq!(l.id.as_deref(), Some("llama3.1"));
    assert_eq!(l.origin.key.as_deref(), Some("general.license.name"));
    assert_eq!(m.datasets[0].name, "UltraChat 200k");
    // The dataset's licence is not stated: unknown.
    assert_eq!(assess(&m).verdict, Verdict::Unknown);
}

#[test]
fn model_cards_carry_the_front_matter_and_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let m = sample();
    m.write_card(dir.path()).unwrap();
    let card = std::fs::read_to_string(dir.path().join("README.md")).unwrap();
    let fm = herd_license::frontmatter::parse(&card).unwrap().unwrap();
    assert_eq!(
        fm.get("license").unwrap().0.strings(),
        ["other"],
        "two licences: no single hub id"
    );
    assert_eq!(
        fm.get("license_name").unwrap().0.strings(),
        ["llama2 AND MIT"]
    );
    assert_eq!(
        fm.get("base_model").unwrap().0.strings(),
        ["meta-llama/Llama-2-7b-hf"]
    );
    assert_eq!(
        fm.get("datasets").unwrap().0.strings(),
        ["gsm8k", "hh_rlhf_helpful_test"]
    );
    // The folder reads back as the manifest.
    assert_eq!(detect(dir.path()).unwrap(), m);
    // Without the manifest, the card alone still gives the licence names.
    std::fs::remove_file(dir.path().join(FILE_NAME)).unwrap();
    std::fs::write(dir.path().join("config.json"), "{}").unwrap();
    let from_card = detect(dir.path()).unwrap();
    assert_eq!(from_card.base_models[0].name, "meta-llama/Llama-2-7b-hf");
    let ids: Vec<Option<&str>> = from_card
        .artefact
        .facts
        .licences
        .iter()
        .map(|l| l.id.as_deref())
        .collect();
    assert_eq!(ids, [Some("llama2"), Some("MIT")], "read from license_name");
}

#[test]
fn a_single_hub_licence_is_written_as_the_hub_id() {
    let m = Manifest::new(Kind::Gguf, "x", method::CONVERT)
        .with_parent(detect(&shared().join("data/gsm8k")).unwrap());
    let fm = m.card_front_matter();
    assert!(fm.contains("license: mit\n"), "{fm}");
    assert!(
        fm.contains("license_link: https://opensource.org/license/mit\n"),
        "{fm}"
    );
}

#[test]
fn a_broken_manifest_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    std::fs::write(
        &path,
        "{\"schema\": \"herd-lineage\", \"version\": 1, \"kind\": \"dataset\"",
    )
    .unwrap();
    let e = detect(dir.path()).unwrap_err().to_string();
    assert!(e.starts_with(&path.display().to_string()), "{e}");
    assert!(e.contains("not a valid herd lineage manifest"), "{e}");
    std::fs::write(
        &path,
        "{\"schema\": \"herd-lineage\", \"version\": 1, \"kind\": \"spaceship\"}",
    )
    .unwrap();
    let e = detect(&path).unwrap_err().to_string();
    assert!(e.contains("spaceship"), "{e}");
}

#[test]
fn a_broken_manifest_in_a_gguf_is_a_problem_and_the_verdict_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    metadata_gguf(
        &path,
        &[s("general.license", "mit"), s(GGUF_KEY, "{not json")],
    );
    let m = detect(&path).unwrap();
    assert_eq!(m.artefact.facts.licences[0].id.as_deref(), Some("MIT"));
    let a = assess(&m);
    assert_eq!(a.verdict, Verdict::Unknown);
    assert!(
        a.reasons.iter().any(|r| r.text.contains(GGUF_KEY)),
        "{:#?}",
        a.reasons
    );
    metadata_gguf(&path, &[(GGUF_KEY.into(), Value::U32(7))]);
    let a = assess(&detect(&path).unwrap());
    assert!(
        a.reasons.iter().any(|r| r.text.contains("not a string")),
        "{:#?}",
        a.reasons
    );
}

#[test]
fn a_broken_card_is_a_problem_naming_the_card() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), "{}").unwrap();
    std::fs::write(
        dir.path().join("README.md"),
        "---\nlicense: mit\n# forgot to close\n",
    )
    .unwrap();
    let a = assess(&detect(dir.path()).unwrap());
    assert_eq!(a.verdict, Verdict::Unknown);
    assert!(
        a.reasons
            .iter()
            .any(|r| r.text.contains("README.md") && r.text.contains("never closed")),
        "{:#?}",
        a.reasons
    );
    std::fs::write(dir.path().join("README.md"), [0xff, 0xfe, 0x00]).unwrap();
    assert_eq!(
        assess(&detect(dir.path()).unwrap()).verdict,
        Verdict::Unknown
    );
}

#[test]
fn a_missing_path_is_an_error_naming_it() {
    let e = detect(std::path::Path::new("/no/such/model.gguf")).unwrap_err();
    assert!(e.to_string().starts_with("/no/such/model.gguf"), "{e}");
}
