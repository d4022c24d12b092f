//! GGUF vocabularies (`tokenizer.ggml.*`) converted into Hugging Face tokenizers, and back.

use std::path::Path;

use crate::error::Result;
use crate::gguf::{GgufFile, Value};
use crate::model::Model;

use super::Tokenizer;
use super::vocab::GgufVocab;

/// The tokenizer stored in a GGUF file's metadata. Only the `tokenizer.*` keys are read, so a
/// vocabulary-only file (no tensors, no architecture) works.
pub fn from_gguf(f: &GgufFile) -> Result<Tokenizer> {
    from_metadata(&f.path, &|k| f.get(k))
}

/// The tokenizer described by GGUF metadata `get` (`path` is for error messages).
pub fn from_metadata<'a>(
    path: &'a Path,
    get: &'a dyn Fn(&str) -> Option<&'a Value>,
) -> Result<Tokenizer> {
    GgufVocab::read(path, get)?.build(path)
}

/// `dir/tokenizer.json` (and `tokenizer_config.json`) as GGUF `tokenizer.ggml.*` metadata.
/// The vocabulary is padded to the model's vocabulary size, as llama.cpp needs one token per
/// embedding row; BOS/EOS fall back to the model's config.
pub fn metadata_from_hf(dir: &Path, model: &Model) -> Result<Vec<(String, Value)>> {
    super::export::metadata(
        dir,
        Some(model.spec.vocab_size),
        model.spec.bos_token_id,
        model.spec.eos_token_ids.first().copied(),
    )
}

/// Like [`metadata_from_hf`] for a folder that holds only a tokenizer.
pub fn metadata_from_tokenizer_dir(dir: &Path) -> Result<Vec<(String, Value)>> {
    super::export::metadata(dir, None, None, None)
}
