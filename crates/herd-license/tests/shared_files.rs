//! Every licence file and dataset note in `../shared`, recognised as what it is.

mod common;

use std::path::{Path, PathBuf};

use common::shared;
use herd_license::detect::{is_licence_file, licence_file_facts, source_note_facts};
use herd_license::facts::{Evidence, RestrictionKind};
use herd_license::verdict::applicable;
use herd_license::{Verdict, assess, detect};

/// Each `LICENSE*` file under `../shared` and the licence its text is.
const LICENCE_FILES: &[(&str, &str)] = &[
    ("data/alpaca_eval/LICENSE", "Apache-2.0"),
    ("data/fastchat_dummy_conversation/LICENSE", "Apache-2.0"),
    ("data/gpteacher/LICENSE", "MIT"),
    ("data/gsm8k/LICENSE", "MIT"),
    ("data/hh_rlhf_harmless_test/LICENSE", "MIT"),
    ("data/hh_rlhf_helpful_test/LICENSE", "MIT"),
    ("data/huatuo_med_instruct/LICENSE", "Apache-2.0"),
    ("data/humaneval/LICENSE", "MIT"),
    ("data/mmlu/LICENSE", "MIT"),
    ("data/mt_bench/LICENSE", "Apache-2.0"),
    ("data/self_instruct_seed/LICENSE", "Apache-2.0"),
    ("data/self_instruct_user_oriented/LICENSE", "Apache-2.0"),
    ("data/vicuna_bench/LICENSE", "Apache-2.0"),
    ("data/vicuna_eval_2023/LICENSE", "Apache-2.0"),
    ("models/stories260K/LICENSE.crabml", "Apache-2.0"),
    ("models/stories260K/LICENSE.llama2.c", "MIT"),
    ("models/tokenizers/gguf-vocab/LICENSE.llama.cpp", "MIT"),
    ("models/tokenizers/hf/gpt2/LICENSE.skeletoken", "MIT"),
    (
        "models/tokenizers/hf/swift-transformers-vectors/LICENSE.swift-transformers",
        "Apache-2.0",
    ),
    (
        "models/tokenizers/sentencepiece/LICENSE.sentencepiece",
        "Apache-2.0",
    ),
];

fn find_files(dir: &Path, out: &mut Vec<PathBuf>, keep: &dyn Fn(&str) -> bool) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            find_files(&p, out, keep);
        } else if keep(&p.file_name().unwrap().to_string_lossy()) {
            out.push(p);
        }
    }
}

#[test]
fn every_licence_file_in_shared_is_listed_here() {
    let mut found = Vec::new();
    find_files(&shared(), &mut found, &is_licence_file);
    let mut found: Vec<String> = found
        .iter()
        .map(|p| {
            p.strip_prefix(shared())
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    found.sort();
    let mut listed: Vec<String> = LICENCE_FILES.iter().map(|(p, _)| p.to_string()).collect();
    listed.sort();
    assert_eq!(found, listed);
}

#[test]
fn every_licence_file_in_shared_is_recognised_by_its_text() {
    for (rel, want) in LICENCE_FILES {
        let facts = licence_file_facts(&shared().join(rel));
        assert_eq!(facts.licences.len(), 1, "{rel}: {facts:?}");
        let l = &facts.licences[0];
        assert_eq!(l.id.as_deref(), Some(*want), "{rel}: {l:?}");
        match l.evidence {
            Evidence::FullText { similarity } => {
                assert!(similarity >= 0.99, "{rel}: similarity {similarity}")
            }
            ref e => panic!("{rel}: recognised by {e:?}, not by its full text"),
        }
    }
}

struct Dataset {
    folder: &'static str,
    /// The licences that apply to the data (SOURCE.md statements scoped to data, unscoped
    /// ones, the LICENSE file unless SOURCE.md calls it the code's).
    data_licences: &'static [&'static str],
    /// Providers whose model outputs the data holds.
    providers: &'static [&'static str],
    verdict: Verdict,
}

const DATASETS: &[Dataset] = &[
    Dataset {
        folder: "alpaca_eval",
        data_licences: &["CC-BY-NC-4.0"],
        providers: &["OpenAI"],
        verdict: Verdict::NotAllowed,
    },
    Dataset {
        folder: "cmmlu",
        data_licences: &["CC-BY-NC-SA-4.0"],
        providers: &[],
        verdict: Verdict::NotAllowed,
    },
    Dataset {
        folder: "fastchat_dummy_conversation",
        data_licences: &["Apache-2.0", "Apache-2.0"],
        providers: &[],
        verdict: Verdict::Allowed,
    },
    Dataset {
        folder: "gpteacher",
        data_licences: &["MIT", "MIT"],
        providers: &["OpenAI"],
        verdict: Verdict::Conditional,
    },
    Dataset {
        folder: "gsm8k",
        data_licences: &["MIT", "MIT"],
        providers: &[],
        verdict: Verdict::Allowed,
    },
    Dataset {
        folder: "hh_rlhf_harmless_test",
        data_licences: &["MIT", "MIT"],
        providers: &[],
        verdict: Verdict::Allowed,
    },
    Dataset {
        folder: "hh_rlhf_helpful_test",
        data_licences: &["MIT", "MIT"],
        providers: &[],
        verdict: Verdict::Allowed,
    },
    Dataset {
        folder: "huatuo_med_instruct",
        data_licences: &["Apache-2.0", "Apache-2.0"],
        providers: &["OpenAI"],
        verdict: Verdict::Conditional,
    },
    Dataset {
        folder: "humaneval",
        data_licences: &["MIT", "MIT"],
        providers: &[],
        verdict: Verdict::Allowed,
    },
    Dataset {
        folder: "mmlu",
        data_licences: &["MIT", "MIT"],
        providers: &[],
        verdict: Verdict::Allowed,
    },
    Dataset {
        folder: "mt_bench",
        data_licences: &["Apache-2.0", "Apache-2.0"],
        providers: &["OpenAI"],
        verdict: Verdict::Conditional,
    },
    Dataset {
        folder: "self_instruct_seed",
        data_licences: &["Apache-2.0", "Apache-2.0"],
        providers: &[],
        verdict: Verdict::Allowed,
    },
    Dataset {
        folder: "self_instruct_user_oriented",
        data_licences: &["Apache-2.0", "Apache-2.0"],
        providers: &[],
        // "The authors ask that it not be used for training (evaluation only)."
        verdict: Verdict::Conditional,
    },
    Dataset {
        folder: "vicuna_bench",
        data_licences: &["Apache-2.0", "Apache-2.0"],
        // reference_answer/gpt-4.jsonl
        providers: &["OpenAI"],
        verdict: Verdict::Conditional,
    },
    Dataset {
        folder: "vicuna_eval_2023",
        data_licences: &["Apache-2.0", "Apache-2.0"],
        // GPT-4 reviews, GPT-3.5 and Bard answers
        providers: &["OpenAI", "Google"],
        verdict: Verdict::Conditional,
    },
];

#[test]
fn every_dataset_folder_in_shared_is_listed_here() {
    let mut found: Vec<String> = std::fs::read_dir(shared().join("data"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("SOURCE.md").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    let listed: Vec<&str> = DATASETS.iter().map(|d| d.folder).collect();
    assert_eq!(found, listed);
}

#[test]
fn every_dataset_gets_its_data_licence_providers_and_verdict() {
    for d in DATASETS {
        let m = detect(&shared().join("data").join(d.folder)).unwrap();
        assert_eq!(m.kind, herd_license::Kind::Dataset, "{}", d.folder);
        let facts = &m.artefact.facts;
        let ids: Vec<&str> = applicable(&facts.licences, true)
            .iter()
            .map(|l| l.id.as_deref().unwrap())
            .collect();
        assert_eq!(ids, d.data_licences, "{}: {:#?}", d.folder, facts.licences);
        let providers: Vec<&str> = facts
            .provider_outputs
            .iter()
            .map(|p| p.provider.as_str())
            .collect();
        assert_eq!(providers, d.providers, "{}", d.folder);
        let a = assess(&m);
        assert_eq!(a.verdict, d.verdict, "{}: {:#?}", d.folder, a.reasons);
        assert!(facts.problems.is_empty(), "{}", d.folder);
    }
}

#[test]
fn cmmlu_is_non_commercial_share_alike_from_its_source_note() {
    let note = shared().join("data/cmmlu/SOURCE.md");
    let facts = source_note_facts(&std::fs::read_to_string(&note).unwrap(), "SOURCE.md");
    assert_eq!(facts.licences.len(), 1);
    let l = &facts.licences[0];
    assert_eq!(l.id.as_deref(), Some("CC-BY-NC-SA-4.0"));
    assert_eq!(l.evidence, Evidence::Statement);
    assert_eq!(l.origin.key.as_deref(), Some("line 3"));
    let t = herd_license::catalogue::lookup("CC-BY-NC-SA-4.0").unwrap();
    assert!(t.non_commercial && t.share_alike);
    assert_eq!(facts.restrictions[0].kind, RestrictionKind::NonCommercial);
}

#[test]
fn alpaca_eval_data_is_cc_by_nc_while_its_licence_file_is_the_code_apache() {
    let m = detect(&shared().join("data/alpaca_eval")).unwrap();
    let scopes: Vec<(Option<&str>, herd_license::Scope)> = m
        .artefact
        .facts
        .licences
        .iter()
        .map(|l| (l.id.as_deref(), l.scope))
        .collect();
    use herd_license::Scope::*;
    assert_eq!(
        scopes,
        [
            (Some("Apache-2.0"), Code),
            (Some("CC-BY-NC-4.0"), Data),
            (Some("Apache-2.0"), All),
        ]
    );
    let a = assess(&m);
    assert_eq!(a.verdict, Verdict::NotAllowed);
    assert!(
        a.reasons
            .iter()
            .any(|r| r.verdict == Verdict::NotAllowed && r.text.starts_with("CC-BY-NC-4.0")),
        "{:#?}",
        a.reasons
    );
    let openai = &m.artefact.facts.provider_outputs[0];
    assert_eq!(openai.models, ["GPT-4", "text-davinci-003"]);
}

#[test]
fn hh_rlhf_is_mit_and_allowed() {
    for folder in ["hh_rlhf_helpful_test", "hh_rlhf_harmless_test"] {
        let m = detect(&shared().join("data").join(folder)).unwrap();
        let a = assess(&m);
        assert_eq!(a.verdict, Verdict::Allowed, "{folder}");
        assert_eq!(a.licence_ids, ["MIT"]);
        assert!(
            a.conditions
                .iter()
                .any(|c| c.text.starts_with("attribution"))
        );
    }
}

#[test]
fn a_data_file_or_sub_folder_takes_the_facts_of_its_dataset() {
    let m = detect(&shared().join("data/cmmlu/test/agronomy.csv")).unwrap();
    assert_eq!(m.artefact.name, "agronomy.csv");
    assert_eq!(assess(&m).verdict, Verdict::NotAllowed);
    let m = detect(&shared().join("data/gsm8k/test.jsonl")).unwrap();
    assert_eq!(assess(&m).verdict, Verdict::Allowed);
    // A sub-folder of a dataset too.
    let m = detect(&shared().join("data/cmmlu/test")).unwrap();
    assert_eq!(m.artefact.name, "test");
    assert_eq!(assess(&m).verdict, Verdict::NotAllowed);
}

#[test]
fn stories260k_gguf_takes_the_licence_files_beside_it() {
    // The GGUF itself states no licence; its folder holds llama2.c's MIT and crabml's Apache.
    let m = detect(&shared().join("models/stories260K/stories260K.gguf")).unwrap();
    let a = assess(&m);
    assert_eq!(a.licence_ids, ["Apache-2.0", "MIT"]);
    assert_eq!(a.verdict, Verdict::Allowed);
    // Its folder holds one GGUF file, so the folder is that file.
    assert_eq!(detect(&shared().join("models/stories260K")).unwrap(), m);
}

#[test]
fn a_model_folder_without_any_licence_is_unknown() {
    let m = detect(&shared().join("golden/hf-tiny/qwen2")).unwrap();
    assert_eq!(m.kind, herd_license::Kind::Model);
    let a = assess(&m);
    assert_eq!(a.verdict, Verdict::Unknown);
    assert!(a.reasons[0].text.contains("no licence is stated"));
}
