//! GGUF vocabularies against llama.cpp's own tokenizer test vectors
//! (`tests/test-tokenizer-0.cpp`: `add_special = false`, `parse_special = false`).

mod common;

use herd_model::gguf::GgufFile;
use herd_model::tokenizer::{Tokenizer, gguf::from_gguf};

fn load(vocab: &str) -> Tokenizer {
    let f = GgufFile::open(common::gguf_vocab(vocab)).unwrap();
    from_gguf(&f).unwrap()
}

/// Every vector of `vocab` must give llama.cpp's ids, except the texts listed in `known`
/// (index into the vectors, and why it differs), which must still differ.
fn check(vocab: &str, lossless: bool, known: &[(usize, &str)]) {
    let tok = load(vocab);
    let cases = common::llama_cpp_vectors(vocab);
    let mut bad = vec![];
    let mut exact = 0;
    for (i, (text, want)) in cases.iter().enumerate() {
        let got = tok.encode(text, false, false).unwrap();
        if &got == want {
            exact += 1;
            assert!(
                !known.iter().any(|(k, _)| *k == i),
                "{vocab}: text #{i} now matches; remove it from the known differences"
            );
        } else if !known.iter().any(|(k, _)| *k == i) {
            bad.push(format!("#{i} {text:?}\n   want {want:?}\n   got  {got:?}"));
        }
        if lossless {
            let back = tok.decode(&got, false).unwrap();
            assert_eq!(&back, text, "{vocab}: decode(encode(#{i})) differs");
        }
    }
    eprintln!("{vocab}: {exact}/{} texts exact", cases.len());
    assert!(
        bad.is_empty(),
        "{vocab}: {} texts differ:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn llama_spm() {
    check("llama-spm", true, &[]);
}

#[test]
fn phi_3() {
    check("phi-3", true, &[]);
}

#[test]
fn llama_bpe() {
    check("llama-bpe", true, &[]);
}

#[test]
fn qwen2() {
    check("qwen2", true, &[]);
}

#[test]
fn gpt_2() {
    check("gpt-2", true, &[]);
}

#[test]
fn deepseek_llm() {
    check("deepseek-llm", true, &[]);
}

#[test]
fn deepseek_coder() {
    check("deepseek-coder", true, &[]);
}

#[test]
fn falcon() {
    check("falcon", true, &[]);
}

#[test]
fn starcoder() {
    check("starcoder", true, &[]);
}

#[test]
fn mpt() {
    check("mpt", true, &[]);
}

#[test]
fn refact() {
    check("refact", true, &[]);
}

#[test]
fn bert_bge() {
    // WordPiece lowercases and drops accents and spaces: not lossless.
    check("bert-bge", false, &[]);
}

/// `parse_special` decides whether special tokens written in the text are read as such;
/// user-defined tokens are read either way (llama.cpp and Hugging Face agree).
#[test]
fn parse_special() {
    let tok = load("qwen2");
    let text = "<|im_start|>user\nHi<|im_end|>";
    assert_eq!(
        tok.encode(text, false, true).unwrap(),
        [151644, 872, 198, 13048, 151645]
    );
    let plain = tok.encode(text, false, false).unwrap();
    assert!(
        !plain.contains(&151644) && !plain.contains(&151645),
        "{plain:?}"
    );
    assert_eq!(tok.decode(&plain, false).unwrap(), text);
    // A user-defined token of Qwen2's vocabulary.
    assert_eq!(tok.encode("[PAD151646]", false, false).unwrap(), [151646]);

    // SentencePiece: a text after a special token starts a new word (gets the ▁).
    let tok = load("llama-spm");
    assert_eq!(tok.encode("<s>Hi</s>", false, true).unwrap(), [1, 6324, 2]);
    assert_eq!(tok.encode("Hi", true, false).unwrap(), [1, 6324]);
    assert_eq!(tok.decode(&[1, 6324, 2], true).unwrap(), "Hi");
    assert_eq!(tok.decode(&[1, 6324, 2], false).unwrap(), "<s> Hi</s>");
}
