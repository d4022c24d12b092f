//! Broken vocabularies give errors, not panics.

mod common;

use herd_model::gguf::{GgufFile, GgufWriter, Value, ValueType};
use herd_model::tokenizer::Tokenizer;
use herd_model::tokenizer::gguf::from_gguf;

fn strings(v: &[&str]) -> Value {
    ValueType::strings(v.iter().copied())
}

fn i32s(v: &[i32]) -> Value {
    Value::Array(ValueType::I32, v.iter().map(|&x| Value::I32(x)).collect())
}

/// The tokenizer of a vocabulary-only GGUF holding `meta`.
fn load(meta: &[(&str, Value)]) -> herd_model::Result<Tokenizer> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.gguf");
    let mut w = GgufWriter::new();
    for (k, v) in meta {
        w.set(k, v.clone());
    }
    w.write(&path).unwrap();
    from_gguf(&GgufFile::open(&path).unwrap())
}

fn err(meta: &[(&str, Value)], needle: &str) {
    match load(meta) {
        Ok(_) => panic!("expected an error about {needle:?}"),
        Err(e) => assert!(e.to_string().contains(needle), "{e}"),
    }
}

#[test]
fn broken_gguf_vocabularies() {
    let model = |m: &str| ("tokenizer.ggml.model", Value::String(m.into()));
    err(&[], "tokenizer.ggml.model");
    err(&[model("llama")], "tokenizer.ggml.tokens");
    err(
        &[model("llama"), ("tokenizer.ggml.tokens", strings(&[]))],
        "0 tokens",
    );
    err(
        &[model("rwkv"), ("tokenizer.ggml.tokens", strings(&["a"]))],
        "not supported",
    );
    err(
        &[model("llama"), ("tokenizer.ggml.tokens", Value::U32(3))],
        "not an array",
    );
    err(
        &[
            model("llama"),
            ("tokenizer.ggml.tokens", strings(&["a", "b"])),
            ("tokenizer.ggml.token_type", i32s(&[1])),
        ],
        "1 token types for 2 tokens",
    );
    err(
        &[
            model("llama"),
            ("tokenizer.ggml.tokens", strings(&["a", "b"])),
            ("tokenizer.ggml.scores", strings(&["x", "y"])),
        ],
        "scores",
    );
    err(
        &[model("gpt2"), ("tokenizer.ggml.tokens", strings(&["a"]))],
        "merges",
    );
    err(
        &[
            model("gpt2"),
            ("tokenizer.ggml.pre", Value::String("no-such-pre".into())),
            ("tokenizer.ggml.tokens", strings(&["a"])),
            ("tokenizer.ggml.merges", strings(&[])),
        ],
        "no-such-pre",
    );
    err(
        &[
            model("llama"),
            ("tokenizer.ggml.tokens", strings(&["a"])),
            ("tokenizer.ggml.bos_token_id", Value::String("1".into())),
        ],
        "bos_token_id",
    );
}

/// Odd but usable: ids outside the vocabulary are ignored and merges that do not join tokens
/// into tokens are dropped, as llama.cpp loads such files too.
#[test]
fn odd_gguf_vocabularies_load() {
    let tok = load(&[
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("gpt-2".into())),
        ("tokenizer.ggml.tokens", strings(&["a", "b", "ab", ""])),
        (
            "tokenizer.ggml.merges",
            strings(&["a b", "b c", "nospace", "ab ab"]),
        ),
        ("tokenizer.ggml.bos_token_id", Value::U32(99)),
        ("tokenizer.ggml.eos_token_id", Value::I32(-1)),
    ])
    .unwrap();
    assert_eq!(tok.bos, None);
    assert_eq!(tok.encode("ab", false, false).unwrap(), [2]);
    // An empty token gets llama.cpp's placeholder text.
    assert_eq!(tok.inner.id_to_token(3).as_deref(), Some("[EMPTY_3]"));
}

#[test]
fn broken_sentencepiece_files() {
    let dir = tempfile::tempdir().unwrap();
    let real = std::fs::read(
        common::shared().join("models/tokenizers/sentencepiece/botchan_en_bpe_1000.model"),
    )
    .unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("text", b"not a protobuf at all".to_vec()),
        ("truncated", real[..real.len() / 2].to_vec()),
        ("huge length", vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]),
        ("endless varint", vec![0x80; 20]),
    ];
    for (name, bytes) in cases {
        let p = dir.path().join(format!("{name}.model"));
        std::fs::write(&p, bytes).unwrap();
        assert!(Tokenizer::from_sentencepiece(&p).is_err(), "{name}");
    }
}
