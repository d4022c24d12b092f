//! Tokenizers written as GGUF metadata (`herd convert`) and read back tokenize as the original:
//! hf-tiny folders' tokenizer.json, and every GGUF vocabulary taken through tokenizer.json
//! and back (the llama.cpp test vectors must still come out exact).

mod common;

use std::path::Path;

use herd_model::Model;
use herd_model::gguf::{GgufFile, GgufWriter, Value};
use herd_model::tokenizer::Tokenizer;
use herd_model::tokenizer::gguf::{from_gguf, metadata_from_tokenizer_dir};

const TEXTS: &[&str] = &[
    "",
    "Hello world",
    " leading space and trailing space ",
    "<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\n",
    "numbers 1234567 and symbols $%^&*() ++ --",
    "multi\n\nline\r\n\ttabs",
    "中文测试 emoji 🦙 naïve",
];

/// Writes `metadata` as a vocabulary-only GGUF and reads its tokenizer back.
fn through_gguf(metadata: &[(String, Value)], dir: &Path) -> Tokenizer {
    let path = dir.join("vocab.gguf");
    let mut w = GgufWriter::new();
    for (k, v) in metadata {
        w.set(k, v.clone());
    }
    w.write(&path).unwrap();
    from_gguf(&GgufFile::open(&path).unwrap()).unwrap()
}

fn same_tokens(a: &Tokenizer, b: &Tokenizer, texts: &[&str], what: &str) {
    for text in texts {
        for (add, parse) in [(false, false), (false, true), (true, true)] {
            assert_eq!(
                a.encode(text, add, parse).unwrap(),
                b.encode(text, add, parse).unwrap(),
                "{what}: {text:?} add_special={add} parse_special={parse}"
            );
        }
        let ids = a.encode(text, false, true).unwrap();
        assert_eq!(
            a.decode(&ids, false).unwrap(),
            b.decode(&ids, false).unwrap(),
            "{what}: decode {text:?}"
        );
    }
}

#[test]
fn hf_tiny_tokenizers_survive_conversion() {
    let tmp = tempfile::tempdir().unwrap();
    for arch in common::HF_TINY {
        let model = Model::open(common::hf_tiny(arch)).unwrap();
        let meta = herd_model::tokenizer::gguf_metadata_for(&model).unwrap();
        let get = |k: &str| meta.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        assert_eq!(
            get("tokenizer.ggml.model").and_then(Value::as_str),
            Some("gpt2")
        );
        assert_eq!(
            get("tokenizer.ggml.pre").and_then(Value::as_str),
            Some("gpt-2")
        );
        assert!(
            get("tokenizer.chat_template")
                .and_then(Value::as_str)
                .is_some_and(|t| t.contains("<|im_start|>")),
            "{arch}: chat template"
        );
        let back = through_gguf(&meta, tmp.path());
        let orig = Tokenizer::for_model(&model).unwrap();
        assert_eq!(back.bos, orig.bos, "{arch}");
        assert_eq!(back.eos.first(), orig.eos.first(), "{arch}");
        assert_eq!(back.add_bos, orig.add_bos, "{arch}");
        assert_eq!(back.vocab_size(), model.spec.vocab_size, "{arch}");
        same_tokens(&orig, &back, TEXTS, arch);
        // The golden prompt, as transformers tokenized it.
        let golden = common::golden(arch);
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(common::hf_tiny(arch).join("golden.json")).unwrap(),
        )
        .unwrap();
        let prompt = json["text"].as_str().unwrap();
        assert_eq!(
            back.encode(prompt, true, true).unwrap(),
            golden.input_ids,
            "{arch}"
        );
    }
}

/// A GGUF vocabulary as tokenizer.json (what herd runs), then as GGUF metadata again.
fn gguf_via_tokenizer_json(vocab: &str, tmp: &Path) -> (Tokenizer, Tokenizer) {
    let orig = from_gguf(&GgufFile::open(common::gguf_vocab(vocab)).unwrap()).unwrap();
    let dir = tmp.join(vocab);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tokenizer.json"), orig.to_json(false).unwrap()).unwrap();
    let text = |id: Option<u32>| id.and_then(|i| orig.inner.id_to_token(i));
    let cfg = serde_json::json!({
        "bos_token": text(orig.bos),
        "eos_token": text(orig.eos.first().copied()),
        "add_bos_token": orig.add_bos,
        "add_eos_token": orig.add_eos,
    });
    std::fs::write(dir.join("tokenizer_config.json"), cfg.to_string()).unwrap();
    let meta = metadata_from_tokenizer_dir(&dir).unwrap();
    let back = through_gguf(&meta, &dir);
    (orig, back)
}

#[test]
fn gguf_vocabularies_survive_tokenizer_json() {
    let tmp = tempfile::tempdir().unwrap();
    for vocab in [
        "llama-spm",
        "phi-3",
        "llama-bpe",
        "qwen2",
        "gpt-2",
        "deepseek-llm",
        "deepseek-coder",
        "falcon",
        "starcoder",
        "mpt",
        "refact",
        "bert-bge",
    ] {
        let (orig, back) = gguf_via_tokenizer_json(vocab, tmp.path());
        assert_eq!(back.bos, orig.bos, "{vocab}");
        assert_eq!(back.eos.first(), orig.eos.first(), "{vocab}");
        assert_eq!(
            (back.add_bos, back.add_eos),
            (orig.add_bos, orig.add_eos),
            "{vocab}"
        );
        for (text, want) in common::llama_cpp_vectors(vocab) {
            assert_eq!(
                back.encode(&text, false, false).unwrap(),
                want,
                "{vocab}: {text:?}"
            );
        }
        same_tokens(&orig, &back, TEXTS, vocab);
    }
}
