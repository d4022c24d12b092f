//! Hugging Face `tokenizer.json` files and swift-transformers' text→ids vectors
//! (`shared/models/tokenizers/hf/`), and GGUF vocabularies against the vectors of the Hugging
//! Face tokenizers they were converted from.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use herd_model::gguf::GgufFile;
use herd_model::tokenizer::{Tokenizer, gguf::from_gguf};
use serde_json::Value;

fn hf_dir(name: &str) -> PathBuf {
    common::shared().join("models/tokenizers/hf").join(name)
}

fn vectors_file(name: &str) -> Value {
    let p = hf_dir("swift-transformers-vectors").join(name);
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn gguf(vocab: &str) -> Tokenizer {
    from_gguf(&GgufFile::open(common::gguf_vocab(vocab)).unwrap()).unwrap()
}

/// Where each tokenizer of `tokenizer_tests.json` is checked: a tokenizer of ours, or why it
/// cannot be.
enum Under {
    Hf(&'static str),
    Gguf(&'static str),
    /// Whisper English-only uses GPT-2's vocabulary between its own task tokens (two before the
    /// text, one after), which GPT-2's tokenizer.json does not have: only the text is checked.
    WhisperEn,
    Missing(&'static str),
}

const NO_TOKENIZER: &str = "shared/ holds neither its tokenizer.json nor a GGUF of its vocabulary";

const TOKENIZER_TESTS: &[(&str, Under)] = &[
    ("distilgpt2", Under::Hf("gpt2")),
    ("tiiuae/falcon-7b", Under::Gguf("falcon")),
    (
        "coreml-projects/Llama-2-7b-chat-coreml",
        Under::Gguf("llama-spm"),
    ),
    (
        "pcuenq/Llama-3.2-1B-Instruct-tokenizer",
        Under::Gguf("llama-bpe"),
    ),
    // bge-small-en's vocabulary is bert-base-uncased's.
    ("bert-base-uncased", Under::Gguf("bert-bge")),
    ("google-bert/bert-base-uncased", Under::Gguf("bert-bge")),
    ("pcuenq/gemma-tokenizer", Under::Missing(NO_TOKENIZER)),
    ("openai/whisper-tiny.en", Under::WhisperEn),
    ("openai/whisper-large-v2", Under::Missing(NO_TOKENIZER)),
    ("t5-base", Under::Missing(NO_TOKENIZER)),
    (
        "distilbert/distilbert-base-multilingual-cased",
        Under::Missing(NO_TOKENIZER),
    ),
];

/// The text ids of a Whisper English-only encoding, after checking its task tokens.
fn whisper_text(ids: &[u32]) -> Vec<u32> {
    // <|startoftranscript|> <|notimestamps|> ... <|endoftext|>
    assert_eq!(&ids[..2], [50257, 50362]);
    assert_eq!(ids.last(), Some(&50256));
    ids[2..ids.len() - 1].to_vec()
}

fn load(under: &Under) -> Option<Tokenizer> {
    match under {
        Under::Hf(name) => Some(Tokenizer::from_hf_dir(&hf_dir(name)).unwrap()),
        Under::Gguf(vocab) => Some(gguf(vocab)),
        Under::WhisperEn => Some(Tokenizer::from_hf_dir(&hf_dir("gpt2")).unwrap()),
        Under::Missing(_) => None,
    }
}

#[test]
fn swift_transformers_tokenizer_tests() {
    let all = vectors_file("tokenizer_tests.json");
    let listed: BTreeSet<&str> = TOKENIZER_TESTS.iter().map(|(k, _)| *k).collect();
    let present: BTreeSet<&str> = all
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(listed, present, "every tokenizer of the file is listed");
    let mut report = vec![];
    for (key, under) in TOKENIZER_TESTS {
        let Some(tok) = load(under) else {
            if let Under::Missing(why) = under {
                report.push(format!("{key}: not checked: {why}"));
            }
            continue;
        };
        let cases = all[key].as_array().unwrap();
        for c in cases {
            let text = c["input"].as_str().unwrap();
            let mut want = ids(&c["encoded"]["input_ids"]);
            if let Under::WhisperEn = under {
                want = whisper_text(&want);
            }
            // The vectors are `tokenizer(text)`: special tokens added, none parsed from text.
            let got = tok.encode(text, true, false).unwrap();
            assert_eq!(got, want, "{key}: {text:?}");
            // Decoding is compared where the Python side did no clean-up of spaces.
            let plain = c["decoded_without_special"].as_str().unwrap();
            if plain == text && !matches!(under, Under::WhisperEn) {
                assert_eq!(
                    tok.decode(&got, true).unwrap(),
                    plain,
                    "{key}: decode {text:?}"
                );
                let with = c["decoded_with_special"].as_str().unwrap();
                assert_eq!(
                    tok.decode(&got, false).unwrap(),
                    with,
                    "{key}: decode {text:?}"
                );
            }
        }
        let part = match under {
            Under::WhisperEn => " (the text between Whisper's task tokens)",
            _ => "",
        };
        report.push(format!("{key}: {} texts exact{part}", cases.len()));
    }
    eprintln!("{}", report.join("\n"));
}

/// The long French text of the `*_encoded.json` files.
#[test]
fn swift_transformers_encoded_texts() {
    let files: &[(&str, Under)] = &[
        ("gpt2_encoded_tokens.json", Under::Hf("gpt2")),
        ("falcon_encoded.json", Under::Gguf("falcon")),
        ("llama_encoded.json", Under::Gguf("llama-spm")),
        ("llama_3.2_encoded.json", Under::Gguf("llama-bpe")),
        ("bert_uncased_encoded.json", Under::Gguf("bert-bge")),
        ("gemma_encoded.json", Under::Missing(NO_TOKENIZER)),
        ("t5_base_encoded.json", Under::Missing(NO_TOKENIZER)),
        (
            "whisper_large_v2_encoded.json",
            Under::Missing(NO_TOKENIZER),
        ),
        ("whisper_tiny_en_encoded.json", Under::WhisperEn),
        (
            "distilbert_cased_encoded.json",
            Under::Missing(NO_TOKENIZER),
        ),
    ];
    let dir = hf_dir("swift-transformers-vectors");
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with("_encoded.json") || n.ends_with("_encoded_tokens.json"))
        .collect();
    let listed: BTreeSet<String> = files.iter().map(|(f, _)| f.to_string()).collect();
    assert_eq!(listed, on_disk, "every vector file is listed");
    for (file, under) in files {
        let Some(tok) = load(under) else { continue };
        let v = vectors_file(file);
        let text = v["text"].as_str().unwrap();
        let mut want = ids(&v["token_ids"]);
        if let Under::WhisperEn = under {
            want = whisper_text(&want);
        }
        let got = tok.encode(text, true, false).unwrap();
        assert_eq!(got, want, "{file}");
        eprintln!("{file}: {} ids exact", want.len());
    }
}

/// GPT-NeoX-20B's tokenizer is MPT's: its tokenizer.json must give llama.cpp's MPT vectors.
#[test]
fn gpt_neox_tokenizer_json_gives_mpt_vectors() {
    let tok = Tokenizer::from_hf_dir(&hf_dir("gpt-neox-20b")).unwrap();
    let cases = common::llama_cpp_vectors("mpt");
    for (text, want) in &cases {
        assert_eq!(&tok.encode(text, false, false).unwrap(), want, "{text:?}");
    }
    eprintln!(
        "gpt-neox-20b tokenizer.json: {} mpt texts exact",
        cases.len()
    );
}

/// GPT-2's tokenizer.json and llama.cpp's GPT-2 vocabulary agree on llama.cpp's vectors.
#[test]
fn gpt2_tokenizer_json_gives_gpt2_vectors() {
    let tok = Tokenizer::from_hf_dir(&hf_dir("gpt2")).unwrap();
    let cases = common::llama_cpp_vectors("gpt-2");
    for (text, want) in &cases {
        assert_eq!(&tok.encode(text, false, false).unwrap(), want, "{text:?}");
    }
}
