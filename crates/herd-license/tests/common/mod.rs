//! Helpers shared by herd-license's tests: where `../shared` is, and small GGUF files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use herd_model::gguf::{GgufWriter, Value};

/// The read-only data folder beside the repository (`../shared`), or `$HERD_SHARED`.
pub fn shared() -> PathBuf {
    match std::env::var_os("HERD_SHARED") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    }
}

/// Writes a GGUF file holding only `metadata` (no tensors): enough for licence facts.
pub fn metadata_gguf(path: &Path, metadata: &[(String, Value)]) {
    let mut w = GgufWriter::new();
    w.set_str("general.architecture", "llama");
    for (k, v) in metadata {
        w.set(k, v.clone());
    }
    w.write(path).unwrap();
}

pub fn s(k: &str, v: &str) -> (String, Value) {
    (k.to_string(), Value::String(v.to_string()))
}
