//! Text to token ids and back, as the model's authors' tools do it.
//!
//! Every tokenizer is a Hugging Face `tokenizers::Tokenizer`: read from a folder's
//! `tokenizer.json`, or converted from the vocabulary inside a GGUF file (see [`gguf`]).

pub mod gguf;

use std::path::Path;

use crate::error::{Error, Result};
use crate::gguf::Value;
use crate::model::{Model, Source};

/// A tokenizer with the model's special-token conventions.
pub struct Tokenizer {
    pub inner: tokenizers::Tokenizer,
    pub bos: Option<u32>,
    pub eos: Vec<u32>,
    /// Whether the model expects BOS at the start of a prompt.
    pub add_bos: bool,
}

impl Tokenizer {
    /// The tokenizer of `model`: its folder's `tokenizer.json`, or its GGUF vocabulary.
    pub fn for_model(model: &Model) -> Result<Self> {
        match &model.source {
            Source::HuggingFace { dir, .. } => {
                let mut t = Self::from_hf_dir(dir)?;
                if t.bos.is_none() {
                    t.bos = model.spec.bos_token_id;
                }
                for &e in &model.spec.eos_token_ids {
                    if !t.eos.contains(&e) {
                        t.eos.push(e);
                    }
                }
                Ok(t)
            }
            Source::Gguf(f) => gguf::from_gguf(f),
        }
    }

    /// `dir/tokenizer.json`, with BOS/EOS from `tokenizer_config.json` when present.
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        let inner = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| Error::invalid(&path, format!("cannot load tokenizer: {e}")))?;
        let cfg: Option<serde_json::Value> =
            std::fs::read_to_string(dir.join("tokenizer_config.json"))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
        let token_of = |key: &str| -> Option<u32> {
            let v = cfg.as_ref()?.get(key)?;
            let s = v
                .as_str()
                .or_else(|| v.get("content").and_then(|c| c.as_str()))?;
            inner.token_to_id(s)
        };
        let bos = token_of("bos_token");
        let eos = token_of("eos_token").into_iter().collect();
        let add_bos = cfg
            .as_ref()
            .and_then(|c| c.get("add_bos_token"))
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        Ok(Tokenizer {
            inner,
            bos,
            eos,
            add_bos,
        })
    }

    /// Token ids of `text`. `add_special` adds BOS when the model asks for it (and whatever
    /// else the tokenizer's post-processor adds); `parse_special` lets special tokens written
    /// in the text (`<|im_start|>`) become their ids.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>> {
        // TODO(tokenizer): honour parse_special = false (special tokens as plain text).
        let _ = parse_special;
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Usage(format!("tokenizing: {e}")))?;
        let mut ids = enc.get_ids().to_vec();
        if add_special
            && self.add_bos
            && let Some(b) = self.bos
            && ids.first() != Some(&b)
        {
            ids.insert(0, b);
        }
        Ok(ids)
    }

    /// The text of `ids`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| Error::Usage(format!("decoding: {e}")))
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

/// The tokenizer of a Hugging Face folder as GGUF metadata, for `herd convert`. Empty for a
/// GGUF source (its `tokenizer.*` keys are copied as they are).
pub fn gguf_metadata_for(model: &Model) -> Result<Vec<(String, Value)>> {
    match &model.source {
        Source::Gguf(_) => Ok(vec![]),
        Source::HuggingFace { dir, .. } => gguf::metadata_from_hf(dir, model),
    }
}
