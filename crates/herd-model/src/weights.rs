//! The tensors of a model under Hugging Face's names, whatever file they came from.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::tensor::StoredTensor;

/// Tensors by their Hugging Face name (`model.layers.0.self_attn.q_proj.weight`).
#[derive(Clone, Debug, Default)]
pub struct Weights {
    pub tensors: BTreeMap<String, StoredTensor>,
    /// The file or folder they came from, for error messages.
    pub source: PathBuf,
}

impl Weights {
    pub fn get(&self, name: &str) -> Option<&StoredTensor> {
        self.tensors.get(name)
    }

    /// The tensor `name`, which must have `shape`.
    pub fn expect(&self, name: &str, shape: &[usize], needed_for: &str) -> Result<&StoredTensor> {
        let t = self.tensors.get(name).ok_or_else(|| Error::MissingTensor {
            path: self.source.clone(),
            name: name.to_string(),
            needed_for: needed_for.to_string(),
        })?;
        if t.shape != shape {
            return Err(Error::ShapeMismatch {
                path: self.source.clone(),
                name: name.to_string(),
                found: t.shape.clone(),
                expected: shape.to_vec(),
            });
        }
        Ok(t)
    }

    pub fn insert(&mut self, name: impl Into<String>, t: StoredTensor) {
        self.tensors.insert(name.into(), t);
    }

    /// Bytes of all tensors.
    pub fn total_bytes(&self) -> usize {
        self.tensors.values().map(|t| t.bytes().len()).sum()
    }
}

/// Hugging Face names of layer `i`'s tensors.
pub fn layer_name(i: usize, suffix: &str) -> String {
    format!("model.layers.{i}.{suffix}")
}

pub const EMBED: &str = "model.embed_tokens.weight";
pub const FINAL_NORM: &str = "model.norm.weight";
pub const LM_HEAD: &str = "lm_head.weight";
