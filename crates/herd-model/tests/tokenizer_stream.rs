//! Streaming decode: ids fed one at a time give whole characters only, and all the pieces
//! together are the text `decode` gives for all the ids.

mod common;

use herd_model::gguf::GgufFile;
use herd_model::tokenizer::{Tokenizer, gguf::from_gguf};

const TEXTS: &[&str] = &[
    "Hello world",
    " leading space, then   three",
    "中文测试：生活的真谛是什么？",
    "emoji 🦙🚀 and a family 👨‍👩‍👧 and 😶‍🌫️ fog",
    "naïve café — “quoted” … ½",
    "mixed 日本語 text with ｶﾀｶﾅ and Ελληνικά\nnew line\tand tab",
];

fn gguf(vocab: &str) -> Tokenizer {
    from_gguf(&GgufFile::open(common::gguf_vocab(vocab)).unwrap()).unwrap()
}

/// Streams `ids`; returns the pieces.
fn stream(tok: &Tokenizer, ids: &[u32], skip_special: bool) -> Vec<String> {
    let mut d = tok.stream_decoder(skip_special);
    let mut pieces: Vec<String> = ids.iter().map(|&id| d.step(id).unwrap()).collect();
    pieces.push(d.finish().unwrap());
    pieces
}

/// Returns how many ids gave no text (held back until their character was whole).
fn check(name: &str, tok: &Tokenizer) -> usize {
    let mut held = 0;
    for text in TEXTS {
        for (add_special, skip_special) in [(false, false), (true, true), (true, false)] {
            let ids = tok.encode(text, add_special, false).unwrap();
            let whole = tok.decode(&ids, skip_special).unwrap();
            let pieces = stream(tok, &ids, skip_special);
            assert_eq!(pieces.concat(), whole, "{name}: {text:?}");
            for p in &pieces {
                assert!(!p.contains('\u{FFFD}'), "{name}: half a character in {p:?}");
            }
            assert_eq!(
                pieces.last().unwrap(),
                "",
                "{name}: nothing left for finish()"
            );
            held += pieces[..ids.len()].iter().filter(|p| p.is_empty()).count();
        }
    }
    held
}

#[test]
fn spm_byte_fallback() {
    // Llama 2's vocabulary spells most CJK characters and emoji as <0xNN> bytes.
    let held = check("llama-spm", &gguf("llama-spm"));
    assert!(held > 10, "the texts should split characters over tokens");
}

#[test]
fn byte_level_bpe() {
    let held = check("qwen2", &gguf("qwen2"));
    assert!(held > 0, "the texts should split characters over tokens");
    check("llama-bpe", &gguf("llama-bpe"));
    check("gpt-2", &gguf("gpt-2"));
}

#[test]
fn hf_tokenizer_json() {
    let dir = common::shared().join("models/tokenizers/hf/gpt2");
    check(
        "gpt2 tokenizer.json",
        &Tokenizer::from_hf_dir(&dir).unwrap(),
    );
}

#[test]
fn sentencepiece_unigram() {
    let p = common::shared().join("models/tokenizers/sentencepiece/kyoto_ja_unigram_8000.model");
    let tok = Tokenizer::from_sentencepiece(&p).unwrap();
    // Only texts this model knows every character of (its unknowns decode as "<unk>").
    let text = "吾輩は猫である。名前はまだ無い。";
    let ids = tok.encode(text, false, false).unwrap();
    assert_eq!(
        stream(&tok, &ids, false).concat(),
        tok.decode(&ids, false).unwrap()
    );
}

/// The first token of a SentencePiece text carries the space `encode` put in front of it:
/// decoding drops it once, at the very start, however the ids are fed.
#[test]
fn spm_leading_space() {
    let tok = gguf("llama-spm");
    let ids = tok.encode("Hello world", true, false).unwrap();
    assert_eq!(ids, [1, 15043, 3186]);
    assert_eq!(stream(&tok, &ids, true), ["", "Hello", " world", ""]);
    assert_eq!(stream(&tok, &ids, false), ["<s>", " Hello", " world", ""]);
    let ids = tok.encode("Hello world", false, false).unwrap();
    assert_eq!(stream(&tok, &ids, false), ["Hello", " world", ""]);
}

/// Ids that stop in the middle of a character: `finish` gives what `decode` gives.
#[test]
fn unfinished_character() {
    let tok = gguf("llama-spm");
    let ids = tok.encode("ok 🦙", false, false).unwrap();
    let cut = &ids[..ids.len() - 1];
    let pieces = stream(&tok, cut, false);
    assert_eq!(pieces.concat(), tok.decode(cut, false).unwrap());
    assert!(pieces.last().unwrap().contains('\u{FFFD}'));
}
