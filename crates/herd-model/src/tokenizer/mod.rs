//! Text to token ids and back, as the model's authors' tools do it.
//!
//! Every tokenizer is a Hugging Face `tokenizers::Tokenizer`: read from a folder's
//! `tokenizer.json`, converted from the vocabulary inside a GGUF file (see [`gguf`]), or from
//! a SentencePiece `.model` file (see [`sentencepiece`]). Conversions are built as
//! `tokenizer.json` documents ([`json`]) so that what herd runs can be written out and
//! compared with the original tools.

mod export;
pub mod gguf;
mod json;
pub mod pre;
pub mod sentencepiece;
mod stream;
mod vocab;

use std::path::Path;
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::gguf::Value;
use crate::model::{Model, Source};

pub use json::base64;
pub use stream::StreamDecoder;

/// A tokenizer with the model's special-token conventions.
pub struct Tokenizer {
    pub inner: tokenizers::Tokenizer,
    pub bos: Option<u32>,
    /// Tokens that end generation; the first is the model's EOS, the one `add_eos` appends.
    pub eos: Vec<u32>,
    /// Whether the model expects BOS at the start of a prompt.
    pub add_bos: bool,
    /// Whether the model expects EOS at the end of a prompt (BERT's `[SEP]`, T5's `</s>`).
    pub add_eos: bool,
    /// `inner` with special tokens read as plain text, made the first time it is needed
    /// (changing `inner` afterwards does not reach it).
    plain: OnceLock<tokenizers::Tokenizer>,
}

impl Tokenizer {
    pub fn new(
        inner: tokenizers::Tokenizer,
        bos: Option<u32>,
        eos: Vec<u32>,
        add_bos: bool,
        add_eos: bool,
    ) -> Self {
        Tokenizer {
            inner,
            bos,
            eos,
            add_bos,
            add_eos,
            plain: OnceLock::new(),
        }
    }

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

    /// The vocabulary of a GGUF file (a model or a vocabulary-only file): only its metadata
    /// is read.
    pub fn from_gguf_file(path: &Path) -> Result<Self> {
        gguf::from_gguf(&crate::gguf::GgufFile::open(path)?)
    }

    /// `dir/tokenizer.json`, with BOS/EOS from `tokenizer_config.json` when present.
    ///
    /// Whether BOS/EOS are added comes from `add_bos_token`/`add_eos_token` in
    /// `tokenizer_config.json`, or else from what the tokenizer's post-processor adds (Llama 3
    /// folders say it only there).
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
        let flag = |key: &str| cfg.as_ref()?.get(key)?.as_bool();
        let bos = token_of("bos_token");
        let eos: Vec<u32> = token_of("eos_token").into_iter().collect();
        // What the post-processor wraps around a text, to learn the defaults.
        let wrapped = inner
            .encode("a", true)
            .ok()
            .zip(inner.encode("a", false).ok())
            .map(|(with, without)| (with.get_ids().to_vec(), without.get_ids().to_vec()));
        let (pp_bos, pp_eos) = match &wrapped {
            Some((with, without)) if with.len() > without.len() => (
                bos.is_some() && with.first() == bos.as_ref(),
                !eos.is_empty() && with.last() == eos.first(),
            ),
            _ => (false, false),
        };
        let add_bos = flag("add_bos_token").unwrap_or(pp_bos);
        let add_eos = flag("add_eos_token").unwrap_or(pp_eos);
        Ok(Tokenizer::new(inner, bos, eos, add_bos, add_eos))
    }

    /// A SentencePiece model file (`.model`), tokenizing as the `sentencepiece` library does.
    pub fn from_sentencepiece(path: &Path) -> Result<Self> {
        sentencepiece::load(path)
    }

    /// Token ids of `text`. `add_special` adds BOS and EOS when the model asks for them; `parse_special` lets special tokens written in
    /// the text (`<|im_start|>`) become their ids, otherwise they are tokenized as the plain
    /// text they are (llama.cpp's `parse_special = false`). Tokens the vocabulary marks as
    /// user-defined are always recognised, as in llama.cpp and Hugging Face tokenizers.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>> {
        let tok = if parse_special {
            &self.inner
        } else {
            self.plain()
        };
        let enc = tok
            .encode_fast(text, false)
            .map_err(|e| Error::Usage(format!("tokenizing: {e}")))?;
        let mut ids = enc.get_ids().to_vec();
        if add_special {
            // Even before a BOS written in the text, as llama.cpp and transformers do: text
            // that carries its own BOS (a rendered chat template) wants add_special = false.
            if let (true, Some(b)) = (self.add_bos, self.bos) {
                ids.insert(0, b);
            }
            if let (true, Some(&e)) = (self.add_eos, self.eos.first()) {
                ids.push(e);
            }
        }
        Ok(ids)
    }

    fn plain(&self) -> &tokenizers::Tokenizer {
        self.plain.get_or_init(|| {
            let mut t = self.inner.clone();
            t.set_encode_special_tokens(true);
            t
        })
    }

    /// The text of `ids`. `skip_special` leaves out special (control) tokens.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| Error::Usage(format!("decoding: {e}")))
    }

    /// A decoder for ids that arrive one at a time (see [`StreamDecoder`]).
    pub fn stream_decoder(&self, skip_special: bool) -> StreamDecoder<'_> {
        StreamDecoder::new(self, skip_special)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The tokenizer as a `tokenizer.json` document.
    pub fn to_json(&self, pretty: bool) -> Result<String> {
        self.inner
            .to_string(pretty)
            .map_err(|e| Error::Usage(format!("serializing the tokenizer: {e}")))
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
