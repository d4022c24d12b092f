//! A llama.cpp vocabulary (the `tokenizer.ggml.*` metadata of a GGUF file) and the Hugging
//! Face tokenizer that tokenizes as llama.cpp does with it (`llama-vocab.cpp`).

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Value as Json, json};
use tokenizers::AddedToken;

use super::Tokenizer;
use super::json::{self as tj, BpeOptions, Parts, SPACE};
use super::pre::{self, PreSpec};
use crate::error::{Error, Result};
use crate::gguf::Value;

/// `tokenizer.ggml.token_type` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    Undefined = 0,
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

impl TokenType {
    pub fn from_i64(v: i64) -> Self {
        match v {
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => TokenType::Undefined,
        }
    }
}

/// Which of llama.cpp's tokenizers the vocabulary is for.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// `llama`: SentencePiece pieces with scores, merged best score first, bytes as `<0xNN>`.
    Spm,
    /// `gpt2`: byte-level BPE with ranked merges, after a regex split.
    Bpe(PreSpec),
    /// `bert`: WordPiece, word starts marked with `▁`.
    Wpm,
}

/// Token texts that llama.cpp treats as end-of-generation control tokens whatever their type
/// says (`llama_vocab::impl::load`).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>",
    "[e~[",
];

/// The tokenizer part of a GGUF file's metadata, with llama.cpp's defaults filled in.
pub struct GgufVocab {
    pub kind: Kind,
    pub tokens: Vec<String>,
    pub scores: Vec<f32>,
    pub types: Vec<TokenType>,
    pub merges: Vec<(String, String)>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub unk: Option<u32>,
    /// Other end-of-generation ids named in the metadata (EOT, EOM, FIM pad/rep/sep).
    pub other_eog: Vec<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_space_prefix: bool,
    pub lowercase: bool,
    pub strip_accents: bool,
    /// Phi-3's special tokens eat the spaces after them (llama.cpp sets this by model name).
    pub rstrip_special: bool,
}

/// Reads typed metadata values, naming the key in errors.
struct Meta<'a> {
    path: &'a Path,
    get: &'a dyn Fn(&str) -> Option<&'a Value>,
}

impl<'a> Meta<'a> {
    fn bad(&self, key: &str, what: &str) -> Error {
        Error::invalid(self.path, format!("metadata '{key}' is not {what}"))
    }

    fn str(&self, key: &str) -> Result<Option<&'a str>> {
        match (self.get)(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.bad(key, "a string")),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>> {
        match (self.get)(key) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| self.bad(key, "a bool")),
        }
    }

    /// A token id; ids outside the vocabulary (-1 for "none" included) are ignored, as
    /// llama.cpp does (with a warning).
    fn id(&self, key: &str, n: usize) -> Result<Option<u32>> {
        match (self.get)(key) {
            None => Ok(None),
            Some(v) => {
                let id = v.as_i64().ok_or_else(|| self.bad(key, "a token id"))?;
                Ok(u32::try_from(id).ok().filter(|&i| (i as usize) < n))
            }
        }
    }

    fn array(&self, key: &str) -> Result<Option<&'a [Value]>> {
        match (self.get)(key) {
            None => Ok(None),
            Some(v) => v
                .as_array()
                .map(Some)
                .ok_or_else(|| self.bad(key, "an array")),
        }
    }

    fn strings(&self, key: &str) -> Result<Option<Vec<String>>> {
        let Some(a) = self.array(key)? else {
            return Ok(None);
        };
        a.iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| self.bad(key, "an array of strings"))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }
}

impl GgufVocab {
    /// The vocabulary described by `get` (a GGUF file's metadata). Only `tokenizer.*` keys and
    /// `general.name` are read, so vocabulary-only files work.
    pub fn read<'a>(path: &'a Path, get: &'a dyn Fn(&str) -> Option<&'a Value>) -> Result<Self> {
        let m = Meta { path, get };
        let model = m.str("tokenizer.ggml.model")?.ok_or_else(|| {
            Error::invalid(
                path,
                "no tokenizer: metadata 'tokenizer.ggml.model' is missing",
            )
        })?;
        let pre_name = m.str("tokenizer.ggml.pre")?;
        let mut tokens = m.strings("tokenizer.ggml.tokens")?.ok_or_else(|| {
            Error::invalid(
                path,
                "no vocabulary: metadata 'tokenizer.ggml.tokens' is missing",
            )
        })?;
        let n = tokens.len();
        if n == 0 || n > u32::MAX as usize {
            return Err(Error::invalid(
                path,
                format!("the vocabulary has {n} tokens"),
            ));
        }
        for (i, t) in tokens.iter_mut().enumerate() {
            if t.is_empty() {
                // llama.cpp's name for them; an empty token cannot be matched or merged.
                *t = format!("[EMPTY_{i}]");
            }
        }
        let scores = match m.array("tokenizer.ggml.scores")? {
            None => vec![0.0; n],
            Some(a) if a.len() >= n => a[..n]
                .iter()
                .map(|v| v.as_f64().map(|f| f as f32))
                .collect::<Option<Vec<f32>>>()
                .ok_or_else(|| m.bad("tokenizer.ggml.scores", "an array of numbers"))?,
            Some(a) => {
                return Err(Error::invalid(
                    path,
                    format!("{} scores for {n} tokens", a.len()),
                ));
            }
        };
        let types = match m.array("tokenizer.ggml.token_type")? {
            None => vec![TokenType::Normal; n],
            Some(a) if a.len() >= n => a[..n]
                .iter()
                .map(|v| v.as_i64().map(TokenType::from_i64))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| m.bad("tokenizer.ggml.token_type", "an array of integers"))?,
            Some(a) => {
                return Err(Error::invalid(
                    path,
                    format!("{} token types for {n} tokens", a.len()),
                ));
            }
        };

        // llama.cpp's defaults per tokenizer type, then what the file says.
        let (kind, mut bos, mut eos, mut unk, mut add_bos, mut add_eos);
        let mut merges = vec![];
        match model {
            "llama" => {
                kind = Kind::Spm;
                (bos, eos, unk) = (Some(1), Some(2), Some(0));
                (add_bos, add_eos) = (true, false);
            }
            "gpt2" => {
                let spec = pre::lookup(pre_name).ok_or_else(|| {
                    Error::invalid(
                        path,
                        format!(
                            "pre-tokenizer '{}' is not supported; herd knows {}",
                            pre_name.unwrap_or_default(),
                            pre::KNOWN
                        ),
                    )
                })?;
                kind = Kind::Bpe(spec);
                // llama.cpp's historical default (Falcon's <|endoftext|>).
                (bos, eos, unk) = (Some(11), Some(11), None);
                if spec.no_bos {
                    bos = None;
                }
                (add_bos, add_eos) = (spec.add_bos, false);
                let list = m.strings("tokenizer.ggml.merges")?.ok_or_else(|| {
                    Error::invalid(path, "a BPE vocabulary needs 'tokenizer.ggml.merges'")
                })?;
                merges = list.iter().filter_map(|s| split_merge(s)).collect();
            }
            "bert" => {
                kind = Kind::Wpm;
                (bos, eos, unk) = (Some(101), Some(102), Some(100));
                (add_bos, add_eos) = (true, true);
            }
            other => {
                return Err(Error::invalid(
                    path,
                    format!(
                        "tokenizer '{other}' is not supported; herd reads llama (SentencePiece), \
                         gpt2 (byte-level BPE) and bert (WordPiece) vocabularies"
                    ),
                ));
            }
        }
        let in_range = |id: Option<u32>| id.filter(|&i| (i as usize) < n);
        (bos, eos, unk) = (in_range(bos), in_range(eos), in_range(unk));
        if let Some(b) = m.id("tokenizer.ggml.bos_token_id", n)? {
            bos = Some(b);
        }
        if let Some(e) = m.id("tokenizer.ggml.eos_token_id", n)? {
            eos = Some(e);
        }
        if let Some(u) = m.id("tokenizer.ggml.unknown_token_id", n)? {
            unk = Some(u);
        }
        if let Kind::Wpm = kind {
            // BERT's prompt is [CLS] text [SEP].
            if let Some(c) = m.id("tokenizer.ggml.cls_token_id", n)? {
                bos = Some(c);
            }
            if let Some(s) = m.id("tokenizer.ggml.seperator_token_id", n)? {
                eos = Some(s);
            }
        }
        let mut other_eog = vec![];
        for key in [
            "eot_token_id",
            "eom_token_id",
            "fim_pad_token_id",
            "fim_rep_token_id",
            "fim_sep_token_id",
        ] {
            if let Some(id) = m.id(&format!("tokenizer.ggml.{key}"), n)? {
                other_eog.push(id);
            }
        }
        // llama.cpp always wraps a BERT text in [CLS] .. [SEP] when adding special tokens.
        if !matches!(kind, Kind::Wpm) {
            if let Some(a) = m.bool("tokenizer.ggml.add_bos_token")? {
                add_bos = a;
            }
            if let Some(a) = m.bool("tokenizer.ggml.add_eos_token")? {
                add_eos = a;
            }
        }
        let add_space_prefix = m
            .bool("tokenizer.ggml.add_space_prefix")?
            .unwrap_or(matches!(kind, Kind::Spm));
        let lowercase = m
            .bool("tokenizer.ggml.normalizer.lowercase")?
            .unwrap_or(true);
        let strip_accents = m
            .bool("tokenizer.ggml.normalizer.strip_accents")?
            .unwrap_or(lowercase);
        let name = m.str("general.name")?.unwrap_or_default().to_lowercase();
        let rstrip_special = name.contains("phi-3") || name.contains("phi3");
        Ok(GgufVocab {
            kind,
            tokens,
            scores,
            types,
            merges,
            bos,
            eos,
            unk,
            other_eog,
            add_bos,
            add_eos,
            add_space_prefix,
            lowercase,
            strip_accents,
            rstrip_special,
        })
    }

    /// The Hugging Face tokenizer that tokenizes as llama.cpp does with this vocabulary.
    pub fn build(mut self, path: &Path) -> Result<Tokenizer> {
        // End-of-generation tokens become control tokens, as in llama.cpp.
        let mut eog: Vec<u32> = self.eos.into_iter().collect();
        eog.extend(&self.other_eog);
        for (i, t) in self.tokens.iter().enumerate() {
            if EOG_TEXTS.contains(&t.as_str()) {
                self.types[i] = TokenType::Control;
                eog.push(i as u32);
            }
        }
        let mut seen = std::collections::HashSet::new();
        eog.retain(|id| seen.insert(*id));

        let added = self.added_tokens();
        let (bos, add_bos, add_eos) = (self.bos, self.add_bos, self.add_eos);
        let parts = match self.kind {
            Kind::Spm => self.spm_parts(added),
            Kind::Bpe(spec) => self.bpe_parts(spec, added),
            Kind::Wpm => self.wpm_parts(added),
        }
        .map_err(|e| Error::invalid(path, format!("cannot build the tokenizer: {e}")))?;
        let inner = parts.load(path)?;
        Ok(Tokenizer::new(inner, bos, eog, add_bos, add_eos))
    }

    /// Control, unknown and user-defined tokens, which llama.cpp cuts out of the text before
    /// tokenizing it; only user-defined ones are cut when special tokens are not parsed.
    fn added_tokens(&self) -> Vec<AddedToken> {
        let mut out = vec![];
        for (i, t) in self.tokens.iter().enumerate() {
            let special = match self.types[i] {
                TokenType::Control | TokenType::Unknown => true,
                TokenType::UserDefined => false,
                _ => continue,
            };
            let rstrip = self.rstrip_special
                && (t == "</s>" || !matches!(t.as_str(), "<unk>" | "<s>" | "<|endoftext|>"));
            out.push(tj::added_token(t, special, rstrip));
        }
        out
    }

    fn spm_parts(self, added_tokens: Vec<AddedToken>) -> Result<Parts, String> {
        let merges = spm_merges(&self.tokens, &self.scores, &ids(&self.tokens));
        let unk_token = self.unk.map(|u| self.tokens[u as usize].clone());
        let mut norm = vec![];
        if self.add_space_prefix {
            norm.push(tj::prepend_normalizer(SPACE));
        }
        norm.push(tj::replace_normalizer(" ", SPACE));
        let options = BpeOptions {
            unk_token,
            byte_fallback: true,
            ..Default::default()
        };
        Ok(Parts {
            model: tj::bpe(self.tokens, merges, options)?,
            normalizer: tj::sequence_normalizer(norm),
            pre_tokenizer: Json::Null,
            decoder: tj::spm_decoder(self.add_space_prefix),
            added_tokens,
        })
    }

    fn bpe_parts(self, spec: PreSpec, added_tokens: Vec<AddedToken>) -> Result<Parts, String> {
        // Hugging Face's BPE only merges into tokens it has; llama.cpp would merge and then
        // spell an unknown result out in bytes. Converted vocabularies have no such merges.
        let index = ids(&self.tokens);
        let mut joined = String::new();
        let mut known = |a: &str, b: &str| {
            joined.clear();
            joined.push_str(a);
            joined.push_str(b);
            index.contains_key(a) && index.contains_key(b) && index.contains_key(joined.as_str())
        };
        let merges: Vec<(String, String)> = self
            .merges
            .into_iter()
            .filter(|(a, b)| known(a, b))
            .collect();
        drop(index);
        let mut steps: Vec<Json> = spec.regexes.iter().map(|r| tj::split(r)).collect();
        steps.push(tj::byte_level());
        let options = BpeOptions {
            ignore_merges: spec.ignore_merges,
            ..Default::default()
        };
        Ok(Parts {
            model: tj::bpe(self.tokens, merges, options)?,
            normalizer: Json::Null,
            pre_tokenizer: json!({"type": "Sequence", "pretokenizers": steps}),
            decoder: json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}),
            added_tokens,
        })
    }

    fn wpm_parts(self, added_tokens: Vec<AddedToken>) -> Result<Parts, String> {
        // llama.cpp's converter marks word starts with ▁ and drops WordPiece's ## from
        // continuations; undo that.
        let mut vocab = serde_json::Map::new();
        for (i, (t, ty)) in self.tokens.iter().zip(&self.types).enumerate() {
            let text = match (ty, t.strip_prefix(SPACE)) {
                (TokenType::Control, _) => t.clone(),
                (_, Some(word)) => word.to_string(),
                (_, None) => format!("##{t}"),
            };
            vocab.insert(text, json!(i));
        }
        let unk = self.unk.map(|u| self.tokens[u as usize].clone());
        let model = tj::model(json!({
            "type": "WordPiece",
            "unk_token": unk.unwrap_or_else(|| "[UNK]".into()),
            "continuing_subword_prefix": "##",
            // llama.cpp has no limit on word length.
            "max_input_chars_per_word": u32::MAX,
            "vocab": vocab,
        }))?;
        Ok(Parts {
            model,
            normalizer: json!({
                "type": "BertNormalizer",
                "clean_text": true,
                "handle_chinese_chars": true,
                "strip_accents": self.strip_accents,
                "lowercase": self.lowercase,
            }),
            pre_tokenizer: json!({"type": "BertPreTokenizer"}),
            decoder: json!({"type": "WordPiece", "prefix": "##", "cleanup": true}),
            added_tokens,
        })
    }
}

/// Token text to id; a repeated text means its last id, as in llama.cpp.
fn ids(tokens: &[String]) -> HashMap<&str, u32> {
    let mut m = HashMap::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        m.insert(t.as_str(), i as u32);
    }
    m
}

/// `"a b"` as llama.cpp splits a merge: at the first space after the first byte.
pub fn split_merge(s: &str) -> Option<(String, String)> {
    let (i, _) = s.char_indices().skip(1).find(|&(_, c)| c == ' ')?;
    Some((s[..i].to_string(), s[i + 1..].to_string()))
}

/// SentencePiece's merge order as ranked BPE merges: every way of cutting a token into two
/// tokens, best-scoring result first. llama.cpp (like SentencePiece) merges the adjacent pair
/// whose joined text is the best-scoring token, the leftmost among equals; ranking the cuts
/// by that score gives the same merges (Hugging Face's converter does the same), except that
/// two cuts of one token at different places rank by cut rather than by position.
pub fn spm_merges(
    tokens: &[String],
    scores: &[f32],
    ids: &HashMap<&str, u32>,
) -> Vec<(String, String)> {
    let mut cands: Vec<(f32, u32, u32)> = vec![];
    let mut local = vec![];
    for (id, t) in tokens.iter().enumerate() {
        if ids.get(t.as_str()) != Some(&(id as u32)) {
            continue;
        }
        local.clear();
        for (i, _) in t.char_indices().skip(1) {
            if let (Some(&l), Some(&r)) = (ids.get(&t[..i]), ids.get(&t[i..])) {
                local.push((l, r));
            }
        }
        local.sort_unstable();
        let score = scores.get(id).copied().unwrap_or(0.0);
        cands.extend(local.iter().map(|&(l, r)| (score, l, r)));
    }
    // Stable: equal scores keep vocabulary order.
    cands.sort_by(|a, b| b.0.total_cmp(&a.0));
    cands
        .into_iter()
        .map(|(_, l, r)| (tokens[l as usize].clone(), tokens[r as usize].clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_split_like_llama_cpp() {
        assert_eq!(split_merge("a b"), Some(("a".into(), "b".into())));
        assert_eq!(split_merge("Ġ Ġ"), Some(("Ġ".into(), "Ġ".into())));
        // A leading space belongs to the first part.
        assert_eq!(split_merge("  x"), Some((" ".into(), "x".into())));
        assert_eq!(split_merge("ab"), None);
        assert_eq!(split_merge(""), None);
    }
}
