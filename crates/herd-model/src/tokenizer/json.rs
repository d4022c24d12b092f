//! Building Hugging Face tokenizers out of other vocabulary formats. The steps around the model
//! are written as `tokenizer.json` pieces, the format the Hugging Face tools read too (and
//! `Tokenizer::to_json` writes the whole).

use std::path::Path;

use serde_json::{Value as Json, json};
use tokenizers::AddedToken;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::ModelWrapper;
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;

use crate::error::{Error, Result};

/// SentencePiece's visible space.
pub const SPACE: &str = "\u{2581}";

/// The parts of a tokenizer: the model built directly (large vocabularies load several times
/// faster than through JSON), the small steps around it as `tokenizer.json` pieces.
pub struct Parts {
    pub model: ModelWrapper,
    pub normalizer: Json,
    pub pre_tokenizer: Json,
    pub decoder: Json,
    pub added_tokens: Vec<AddedToken>,
}

impl Parts {
    pub fn load(self, path: &Path) -> Result<tokenizers::Tokenizer> {
        let bad = |e: String| Error::invalid(path, format!("cannot build the tokenizer: {e}"));
        let normalizer: Option<NormalizerWrapper> =
            serde_json::from_value(self.normalizer).map_err(|e| bad(e.to_string()))?;
        let pre: Option<PreTokenizerWrapper> =
            serde_json::from_value(self.pre_tokenizer).map_err(|e| bad(e.to_string()))?;
        let decoder: Option<DecoderWrapper> =
            serde_json::from_value(self.decoder).map_err(|e| bad(e.to_string()))?;
        let mut t = tokenizers::Tokenizer::new(self.model);
        // The normalizer goes first: added tokens are matched against its output when they
        // ask for it.
        t.with_normalizer(normalizer)
            .map_err(|e| bad(e.to_string()))?;
        t.with_pre_tokenizer(pre);
        t.with_decoder(decoder);
        t.add_tokens(self.added_tokens)
            .map_err(|e| bad(e.to_string()))?;
        Ok(t)
    }
}

/// Options of a BPE model that differ between vocabulary formats.
#[derive(Default)]
pub struct BpeOptions {
    pub unk_token: Option<String>,
    pub byte_fallback: bool,
    pub fuse_unk: bool,
    pub ignore_merges: bool,
}

/// A BPE model over `tokens` (by id; a repeated text means its last id) and ranked `merges`,
/// which must join tokens into tokens.
pub fn bpe(
    tokens: Vec<String>,
    merges: Vec<(String, String)>,
    o: BpeOptions,
) -> std::result::Result<ModelWrapper, String> {
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| (t, i as u32))
        .collect();
    let mut b = tokenizers::models::bpe::BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(o.byte_fallback)
        .fuse_unk(o.fuse_unk)
        .ignore_merges(o.ignore_merges);
    if let Some(u) = o.unk_token {
        b = b.unk_token(u);
    }
    b.build().map(ModelWrapper::from).map_err(|e| e.to_string())
}

/// A model from its `tokenizer.json` form.
pub fn model(json: Json) -> std::result::Result<ModelWrapper, String> {
    serde_json::from_value(json).map_err(|e| e.to_string())
}

/// An added token: split out of the text before anything else. `special` ones are control
/// tokens (left out by `decode(.., skip_special)`, read as text when `parse_special` is off).
pub fn added_token(content: &str, special: bool, rstrip: bool) -> AddedToken {
    AddedToken::from(content, special)
        .rstrip(rstrip)
        .normalized(false)
}

pub fn sequence_normalizer(items: Vec<Json>) -> Json {
    match items.len() {
        0 => Json::Null,
        _ => json!({"type": "Sequence", "normalizers": items}),
    }
}

pub fn replace_normalizer(from: &str, to: &str) -> Json {
    json!({"type": "Replace", "pattern": {"String": from}, "content": to})
}

pub fn replace_regex_normalizer(regex: &str, to: &str) -> Json {
    json!({"type": "Replace", "pattern": {"Regex": regex}, "content": to})
}

pub fn prepend_normalizer(s: &str) -> Json {
    json!({"type": "Prepend", "prepend": s})
}

/// Cuts every piece into `regex` matches and the text between them.
pub fn split(regex: &str) -> Json {
    json!({"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false})
}

/// Bytes to GPT-2's printable characters, without a regex of its own.
pub fn byte_level() -> Json {
    json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false})
}

/// SentencePiece-style output: `▁` back to spaces, `<0xNN>` tokens to bytes, and the space
/// that encoding put in front of the text removed.
pub fn spm_decoder(strip_leading_space: bool) -> Json {
    let mut steps = vec![
        json!({"type": "Replace", "pattern": {"String": SPACE}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if strip_leading_space {
        steps.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    json!({"type": "Sequence", "decoders": steps})
}

/// `<0xNN>` of a byte-fallback token.
#[cfg(test)]
pub fn byte_token(b: u8) -> String {
    format!("<0x{b:02X}>")
}

/// The byte of a `<0xNN>` token.
pub fn parse_byte_token(t: &str) -> Option<u8> {
    let hex = t.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// Standard base64 (RFC 4648, padded), for the normalization tables `tokenizer.json` stores
/// that way; the server encodes embeddings with it too.
pub fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_examples() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn byte_tokens_round_trip() {
        for b in 0..=255u8 {
            assert_eq!(parse_byte_token(&byte_token(b)), Some(b));
        }
        assert_eq!(parse_byte_token("<0x1>"), None);
        assert_eq!(parse_byte_token("<0xZZ>"), None);
    }
}
