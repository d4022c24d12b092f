//! Opening a model from a path: a GGUF file or a Hugging Face folder becomes one [`Model`].

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::gguf::Value;
use crate::spec::ModelSpec;
use crate::tensor::StoredTensor;
use crate::weights::{self, Weights, layer_name};

/// Where a model came from.
pub enum Source {
    Gguf(GgufFile),
    HuggingFace {
        dir: PathBuf,
        config: serde_json::Value,
    },
}

/// A model ready for a forward pass: its description and its (memory-mapped) tensors.
pub struct Model {
    pub path: PathBuf,
    pub spec: ModelSpec,
    pub weights: Weights,
    pub source: Source,
}

impl Model {
    /// Opens a `.gguf` file, or a folder with `config.json` and safetensors (a path to
    /// `config.json` or to a `.safetensors` file inside such a folder works too).
    pub fn open(path: impl AsRef<Path>) -> Result<Model> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let dir = if meta.is_dir() {
            Some(path.to_path_buf())
        } else if path.file_name().is_some_and(|n| n == "config.json")
            || path.extension().is_some_and(|e| e == "safetensors")
        {
            path.parent().map(Path::to_path_buf)
        } else {
            None
        };
        match dir {
            Some(dir) => {
                let (spec, weights, config) = crate::hf::load(&dir)?;
                Ok(Model {
                    path: dir.clone(),
                    spec,
                    weights,
                    source: Source::HuggingFace { dir, config },
                })
            }
            None => {
                let f = GgufFile::open(path)?;
                let (spec, weights) = crate::gguf_model::load(&f)?;
                Ok(Model {
                    path: path.to_path_buf(),
                    spec,
                    weights,
                    source: Source::Gguf(f),
                })
            }
        }
    }

    pub fn gguf(&self) -> Option<&GgufFile> {
        match &self.source {
            Source::Gguf(f) => Some(f),
            _ => None,
        }
    }

    /// The chat template a model carries, if any.
    pub fn chat_template(&self) -> Option<String> {
        match &self.source {
            Source::Gguf(f) => f
                .get("tokenizer.chat_template")
                .and_then(Value::as_str)
                .map(str::to_string),
            Source::HuggingFace { dir, .. } => {
                if let Ok(t) = std::fs::read_to_string(dir.join("chat_template.jinja")) {
                    return Some(t);
                }
                let text = std::fs::read_to_string(dir.join("tokenizer_config.json")).ok()?;
                let j: serde_json::Value = serde_json::from_str(&text).ok()?;
                match j.get("chat_template")? {
                    serde_json::Value::String(s) => Some(s.clone()),
                    // A list of named templates: the default one.
                    serde_json::Value::Array(a) => a
                        .iter()
                        .find(|t| t["name"] == "default")
                        .or(a.first())
                        .and_then(|t| t["template"].as_str())
                        .map(str::to_string),
                    _ => None,
                }
            }
        }
    }

    /// Every tensor the forward pass reads, checked for presence and shape.
    pub fn tensors(&self) -> Result<ModelTensors> {
        ModelTensors::new(&self.spec, &self.weights)
    }
}

/// One decoder layer's tensors (Hugging Face's layout: `[out, in]` weights).
#[derive(Clone, Debug)]
pub struct LayerTensors {
    pub attn_norm: StoredTensor,
    pub q: StoredTensor,
    pub k: StoredTensor,
    pub v: StoredTensor,
    pub o: StoredTensor,
    pub q_bias: Option<StoredTensor>,
    pub k_bias: Option<StoredTensor>,
    pub v_bias: Option<StoredTensor>,
    pub q_norm: Option<StoredTensor>,
    pub k_norm: Option<StoredTensor>,
    /// Norm of the attention output before the residual add (Gemma 2).
    pub attn_out_norm: Option<StoredTensor>,
    /// Norm before the MLP (`post_attention_layernorm` in llama's naming).
    pub mlp_norm: StoredTensor,
    /// Norm of the MLP output before the residual add (Gemma 2).
    pub mlp_out_norm: Option<StoredTensor>,
    pub gate: StoredTensor,
    pub up: StoredTensor,
    pub down: StoredTensor,
}

impl LayerTensors {
    /// The seven projection matrices: q, k, v, o, gate, up, down.
    pub fn matrices(&self) -> [&StoredTensor; 7] {
        [
            &self.q, &self.k, &self.v, &self.o, &self.gate, &self.up, &self.down,
        ]
    }

    /// [`Self::matrices`], mutably.
    pub fn matrices_mut(&mut self) -> [&mut StoredTensor; 7] {
        [
            &mut self.q,
            &mut self.k,
            &mut self.v,
            &mut self.o,
            &mut self.gate,
            &mut self.up,
            &mut self.down,
        ]
    }
}

#[derive(Clone, Debug)]
pub struct ModelTensors {
    pub embed: StoredTensor,
    pub layers: Vec<LayerTensors>,
    pub final_norm: StoredTensor,
    /// The output projection: `lm_head`, or the embeddings when tied.
    pub lm_head: StoredTensor,
}

impl ModelTensors {
    pub fn new(spec: &ModelSpec, w: &Weights) -> Result<Self> {
        let h = spec.hidden_size;
        let (qd, kvd, ff) = (spec.q_dim(), spec.kv_dim(), spec.intermediate_size);
        let get = |name: &str, shape: &[usize], what: &str| w.expect(name, shape, what).cloned();
        let mut layers = Vec::with_capacity(spec.n_layers);
        for i in 0..spec.n_layers {
            let l = |s: &str| layer_name(i, s);
            let what = format!("layer {i}");
            let opt = |name: String, shape: &[usize], on: bool| -> Result<Option<StoredTensor>> {
                if on {
                    get(&name, shape, &what).map(Some)
                } else {
                    Ok(None)
                }
            };
            let gemma = spec.sandwich_norms;
            layers.push(LayerTensors {
                attn_norm: get(&l("input_layernorm.weight"), &[h], &what)?,
                q: get(&l("self_attn.q_proj.weight"), &[qd, h], &what)?,
                k: get(&l("self_attn.k_proj.weight"), &[kvd, h], &what)?,
                v: get(&l("self_attn.v_proj.weight"), &[kvd, h], &what)?,
                o: get(&l("self_attn.o_proj.weight"), &[h, qd], &what)?,
                q_bias: opt(l("self_attn.q_proj.bias"), &[qd], spec.qkv_bias)?,
                k_bias: opt(l("self_attn.k_proj.bias"), &[kvd], spec.qkv_bias)?,
                v_bias: opt(l("self_attn.v_proj.bias"), &[kvd], spec.qkv_bias)?,
                q_norm: opt(l("self_attn.q_norm.weight"), &[spec.head_dim], spec.qk_norm)?,
                k_norm: opt(l("self_attn.k_norm.weight"), &[spec.head_dim], spec.qk_norm)?,
                attn_out_norm: opt(l("post_attention_layernorm.weight"), &[h], gemma)?,
                mlp_norm: if gemma {
                    get(&l("pre_feedforward_layernorm.weight"), &[h], &what)?
                } else {
                    get(&l("post_attention_layernorm.weight"), &[h], &what)?
                },
                mlp_out_norm: opt(l("post_feedforward_layernorm.weight"), &[h], gemma)?,
                gate: get(&l("mlp.gate_proj.weight"), &[ff, h], &what)?,
                up: get(&l("mlp.up_proj.weight"), &[ff, h], &what)?,
                down: get(&l("mlp.down_proj.weight"), &[h, ff], &what)?,
            });
        }
        let embed = get(
            weights::EMBED,
            &[spec.vocab_size, h],
            "the token embeddings",
        )?;
        let lm_head = if spec.tie_embeddings {
            embed.clone()
        } else {
            get(
                weights::LM_HEAD,
                &[spec.vocab_size, h],
                "the output projection",
            )?
        };
        for t in [&embed, &lm_head] {
            if t.dtype.row_bytes(h).is_none() {
                return Err(Error::invalid(
                    &w.source,
                    format!("embedding rows of {h} are not whole {} blocks", t.dtype),
                ));
            }
        }
        Ok(ModelTensors {
            embed,
            layers,
            final_norm: get(weights::FINAL_NORM, &[h], "the final norm")?,
            lm_head,
        })
    }
}
