//! Hugging Face model folders: `config.json` with `model.safetensors`, or shards named by
//! `model.safetensors.index.json`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use herd_kernels::GgmlType;
use memmap2::Mmap;
use serde_json::Value as Json;

use crate::error::{Error, Result};
use crate::spec::{Activation, Arch, ModelSpec, RopeLayout, RopeScaling, RopeSpec};
use crate::tensor::StoredTensor;
use crate::weights::{Weights, layer_name};

/// A parsed `config.json`, with errors that name the file and the field.
pub struct Config<'a> {
    pub json: &'a Json,
    pub path: &'a Path,
}

impl<'a> Config<'a> {
    fn err(&self, msg: String) -> Error {
        Error::invalid(self.path, msg)
    }

    pub fn get(&self, key: &str) -> Option<&'a Json> {
        self.json.get(key).filter(|v| !v.is_null())
    }

    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
                self.err(format!(
                    "field '{key}' should be a non-negative integer, found {v}"
                ))
            }),
        }
    }

    pub fn usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?
            .ok_or_else(|| self.err(format!("required field '{key}' is missing")))
    }

    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.err(format!("field '{key}' should be a number, found {v}"))),
        }
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.err(format!("field '{key}' should be a string, found {v}"))),
        }
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| {
                self.err(format!("field '{key}' should be true or false, found {v}"))
            }),
        }
    }

    /// Token ids given as one integer or a list (`eos_token_id: [1, 2]`).
    pub fn token_ids(&self, key: &str) -> Result<Vec<u32>> {
        match self.get(key) {
            None => Ok(vec![]),
            Some(Json::Number(n)) => Ok(n.as_u64().map(|v| vec![v as u32]).unwrap_or_default()),
            Some(Json::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_u64()
                        .map(|x| x as u32)
                        .ok_or_else(|| self.err(format!("field '{key}' holds {v}, not a token id")))
                })
                .collect(),
            Some(v) => Err(self.err(format!("field '{key}' should be a token id, found {v}"))),
        }
    }
}

/// Reads `dir/config.json` and the folder's safetensors into a spec and weights.
pub fn load(dir: &Path) -> Result<(ModelSpec, Weights, Json)> {
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
    let json: Json = serde_json::from_str(&text)
        .map_err(|e| Error::invalid(&config_path, format!("not valid JSON: {e}")))?;
    let cfg = Config {
        json: &json,
        path: &config_path,
    };
    let mut spec = spec_from_config(&cfg)?;
    // generation_config.json may name more end-of-sequence tokens than config.json.
    let gen_path = dir.join("generation_config.json");
    if let Ok(text) = std::fs::read_to_string(&gen_path) {
        let gen_json: Json = serde_json::from_str(&text)
            .map_err(|e| Error::invalid(&gen_path, format!("not valid JSON: {e}")))?;
        let gen_cfg = Config {
            json: &gen_json,
            path: &gen_path,
        };
        for id in gen_cfg.token_ids("eos_token_id")? {
            if !spec.eos_token_ids.contains(&id) {
                spec.eos_token_ids.push(id);
            }
        }
    }
    let mut weights = load_safetensors(dir)?;
    split_fused(&spec, &mut weights)?;
    if !spec.tie_embeddings && weights.get(crate::weights::LM_HEAD).is_none() {
        // Some checkpoints omit lm_head and rely on tying without saying so.
        spec.tie_embeddings = true;
    }
    spec.validate()
        .map_err(|m| Error::invalid(&config_path, m))?;
    Ok((spec, weights, json))
}

fn spec_from_config(cfg: &Config) -> Result<ModelSpec> {
    let model_type = cfg
        .opt_str("model_type")?
        .ok_or_else(|| cfg.err("required field 'model_type' is missing".into()))?;
    let arch = Arch::from_name(model_type).ok_or_else(|| Error::UnsupportedArchitecture {
        path: cfg.path.to_path_buf(),
        arch: model_type.to_string(),
        supported: Arch::supported_list(),
    })?;
    let hidden = cfg.usize("hidden_size")?;
    let n_heads = cfg.usize("num_attention_heads")?;
    let n_kv_heads = cfg.opt_usize("num_key_value_heads")?.unwrap_or(n_heads);
    if n_heads == 0 {
        return Err(cfg.err("num_attention_heads is 0".into()));
    }
    let head_dim = cfg.opt_usize("head_dim")?.unwrap_or(hidden / n_heads);
    let n_layers = cfg.usize("num_hidden_layers")?;
    let context_length = cfg.usize("max_position_embeddings")?;

    // transformers 5 groups rope settings in `rope_parameters`; 4.x used `rope_theta` and
    // `rope_scaling` at the top level.
    let rope_params = cfg
        .get("rope_parameters")
        .or_else(|| cfg.get("rope_scaling"));
    let rp = rope_params.map(|json| Config {
        json,
        path: cfg.path,
    });
    let theta = match rp
        .as_ref()
        .map(|r| r.opt_f64("rope_theta"))
        .transpose()?
        .flatten()
    {
        Some(t) => t,
        None => cfg.opt_f64("rope_theta")?.unwrap_or(10000.0),
    } as f32;
    let partial = match rp
        .as_ref()
        .map(|r| r.opt_f64("partial_rotary_factor"))
        .transpose()?
        .flatten()
    {
        Some(p) => p,
        None => cfg.opt_f64("partial_rotary_factor")?.unwrap_or(1.0),
    };
    let rope_dim = (head_dim as f64 * partial) as usize;
    let scaling = match &rp {
        None => RopeScaling::None,
        Some(r) => {
            let kind = match r.opt_str("rope_type")? {
                Some(k) => Some(k),
                None => r.opt_str("type")?,
            };
            let factor = || -> Result<f32> {
                r.opt_f64("factor")?
                    .map(|f| f as f32)
                    .ok_or_else(|| cfg.err("rope scaling needs a 'factor'".into()))
            };
            let original = r
                .opt_usize("original_max_position_embeddings")?
                .or(cfg.opt_usize("original_max_position_embeddings")?);
            match kind.unwrap_or("default") {
                "default" => RopeScaling::None,
                "linear" => RopeScaling::Linear { factor: factor()? },
                "dynamic" => RopeScaling::Dynamic {
                    factor: factor()?,
                    original_max: context_length,
                },
                "llama3" => RopeScaling::Llama3 {
                    factor: factor()?,
                    low_freq_factor: r.opt_f64("low_freq_factor")?.unwrap_or(1.0) as f32,
                    high_freq_factor: r.opt_f64("high_freq_factor")?.unwrap_or(4.0) as f32,
                    original_max: original.ok_or_else(|| {
                        cfg.err(
                            "llama3 rope scaling needs 'original_max_position_embeddings'".into(),
                        )
                    })?,
                },
                other => {
                    return Err(cfg.err(format!(
                        "rope type '{other}' is not supported (herd supports default, linear, dynamic and llama3)"
                    )));
                }
            }
        }
    };

    let act_name = match cfg.opt_str("hidden_activation")? {
        Some(a) => a,
        None => cfg.opt_str("hidden_act")?.unwrap_or("silu"),
    };
    let activation = Activation::from_hf(act_name).ok_or_else(|| {
        cfg.err(format!(
            "activation '{act_name}' is not supported (silu, gelu, gelu_pytorch_tanh)"
        ))
    })?;

    let window = cfg.opt_usize("sliding_window")?.filter(|&w| w > 0);
    let layer_types: Option<Vec<String>> = match cfg.get("layer_types") {
        None => None,
        Some(Json::Array(a)) => Some(
            a.iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| cfg.err("field 'layer_types' should be a list of strings".into()))?,
        ),
        Some(v) => return Err(cfg.err(format!("field 'layer_types' should be a list, found {v}"))),
    };
    let sliding_window: Vec<Option<usize>> = (0..n_layers)
        .map(|i| {
            let sliding = match (&layer_types, arch) {
                (Some(t), _) => t.get(i).map(|s| s == "sliding_attention").unwrap_or(false),
                (None, Arch::Mistral | Arch::Phi3) => true,
                (None, Arch::Gemma2) => i % 2 == 0,
                (None, Arch::Qwen2 | Arch::Qwen3) => {
                    cfg.opt_bool("use_sliding_window")
                        .ok()
                        .flatten()
                        .unwrap_or(false)
                        && i >= cfg
                            .opt_usize("max_window_layers")
                            .ok()
                            .flatten()
                            .unwrap_or(0)
                }
                (None, Arch::Llama) => false,
            };
            if sliding { window } else { None }
        })
        .collect();

    let gemma = arch == Arch::Gemma2;
    let attn_scale = if gemma {
        let s = cfg
            .opt_f64("query_pre_attn_scalar")?
            .unwrap_or(head_dim as f64);
        (s as f32).powf(-0.5)
    } else {
        (head_dim as f32).powf(-0.5)
    };
    let softcap = |key: &str| -> Result<Option<f32>> {
        Ok(if gemma {
            cfg.opt_f64(key)?.map(|v| v as f32)
        } else {
            None
        })
    };
    let default_tie = matches!(arch, Arch::Gemma2);
    let mut eos = cfg.token_ids("eos_token_id")?;
    eos.dedup();
    Ok(ModelSpec {
        arch,
        vocab_size: cfg.usize("vocab_size")?,
        hidden_size: hidden,
        intermediate_size: cfg.usize("intermediate_size")?,
        n_layers,
        n_heads,
        n_kv_heads,
        head_dim,
        norm_eps: cfg.opt_f64("rms_norm_eps")?.unwrap_or(1e-6) as f32,
        norm_weight_offset: if gemma { 1.0 } else { 0.0 },
        activation,
        rope: RopeSpec {
            theta,
            dim: rope_dim,
            layout: RopeLayout::Neox,
            scaling,
        },
        context_length,
        tie_embeddings: cfg.opt_bool("tie_word_embeddings")?.unwrap_or(default_tie),
        qkv_bias: arch == Arch::Qwen2 || cfg.opt_bool("attention_bias")?.unwrap_or(false),
        qk_norm: arch == Arch::Qwen3,
        sandwich_norms: gemma,
        sliding_window,
        attn_scale,
        attn_softcap: softcap("attn_logit_softcapping")?,
        final_softcap: softcap("final_logit_softcapping")?,
        embed_scale: if gemma {
            Some((hidden as f32).sqrt())
        } else {
            None
        },
        bos_token_id: cfg.token_ids("bos_token_id")?.first().copied(),
        eos_token_ids: eos,
    })
}

/// Maps every safetensors file of the folder; sharded folders go through their index.
fn load_safetensors(dir: &Path) -> Result<Weights> {
    let index_path = dir.join("model.safetensors.index.json");
    let single = dir.join("model.safetensors");
    let files: Vec<PathBuf> = if index_path.exists() {
        let text = std::fs::read_to_string(&index_path).map_err(|e| Error::io(&index_path, e))?;
        let json: Json = serde_json::from_str(&text)
            .map_err(|e| Error::invalid(&index_path, format!("not valid JSON: {e}")))?;
        let map = json
            .get("weight_map")
            .and_then(Json::as_object)
            .ok_or_else(|| Error::invalid(&index_path, "has no 'weight_map' object"))?;
        let mut files: Vec<String> = map
            .values()
            .map(|v| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    Error::invalid(
                        &index_path,
                        format!("weight_map value {v} is not a file name"),
                    )
                })
            })
            .collect::<Result<_>>()?;
        files.sort();
        files.dedup();
        let mut paths = Vec::new();
        for f in files {
            if f.contains('/') || f.contains('\\') || f.starts_with('.') {
                return Err(Error::invalid(
                    &index_path,
                    format!("shard name '{f}' is not a plain file name"),
                ));
            }
            let p = dir.join(&f);
            if !p.is_file() {
                return Err(Error::invalid(
                    &index_path,
                    format!("names shard '{f}', which is not in {}", dir.display()),
                ));
            }
            paths.push(p);
        }
        paths
    } else if single.is_file() {
        vec![single]
    } else {
        return Err(Error::invalid(
            dir,
            "no model.safetensors or model.safetensors.index.json in this folder",
        ));
    };

    let mut weights = Weights {
        source: dir.to_path_buf(),
        ..Default::default()
    };
    for path in files {
        let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        // SAFETY: read-only map of a model file (see GgufFile::open).
        let map = Arc::new(unsafe { Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?);
        let (header_len, meta) = safetensors::SafeTensors::read_metadata(&map[..])
            .map_err(|e| Error::invalid(&path, format!("bad safetensors header: {e}")))?;
        let data_start = 8 + header_len;
        for (name, info) in meta.tensors() {
            let dtype = match info.dtype {
                safetensors::Dtype::F32 => GgmlType::F32,
                safetensors::Dtype::F16 => GgmlType::F16,
                safetensors::Dtype::BF16 => GgmlType::BF16,
                other => {
                    return Err(Error::invalid(
                        &path,
                        format!(
                            "tensor '{name}' has dtype {other:?}; herd reads F32, F16 and BF16 safetensors"
                        ),
                    ));
                }
            };
            let (s, e) = info.data_offsets;
            let shape = if info.shape.is_empty() {
                vec![1]
            } else {
                info.shape.clone()
            };
            let t = StoredTensor::mapped(dtype, shape, map.clone(), data_start + s, e - s);
            if weights.tensors.insert(name.clone(), t).is_some() {
                return Err(Error::invalid(
                    &path,
                    format!("tensor '{name}' appears in two shards"),
                ));
            }
        }
    }
    Ok(weights)
}

/// Splits Phi-3's fused `qkv_proj` and `gate_up_proj` into the separate projections the
/// forward pass reads. Rows are contiguous, so the parts are windows of the same bytes.
pub fn split_fused(spec: &ModelSpec, w: &mut Weights) -> Result<()> {
    for i in 0..spec.n_layers {
        let qkv = layer_name(i, "self_attn.qkv_proj.weight");
        if let Some(t) = w.tensors.remove(&qkv) {
            let (q, kv) = (spec.q_dim(), spec.kv_dim());
            if t.shape.len() != 2 || t.shape[0] != q + 2 * kv {
                return Err(Error::ShapeMismatch {
                    path: w.source.clone(),
                    name: qkv,
                    found: t.shape.clone(),
                    expected: vec![q + 2 * kv, spec.hidden_size],
                });
            }
            w.insert(
                layer_name(i, "self_attn.q_proj.weight"),
                t.narrow_rows(0, q),
            );
            w.insert(
                layer_name(i, "self_attn.k_proj.weight"),
                t.narrow_rows(q, kv),
            );
            w.insert(
                layer_name(i, "self_attn.v_proj.weight"),
                t.narrow_rows(q + kv, kv),
            );
        }
        let gate_up = layer_name(i, "mlp.gate_up_proj.weight");
        if let Some(t) = w.tensors.remove(&gate_up) {
            let ff = spec.intermediate_size;
            if t.shape.len() != 2 || t.shape[0] != 2 * ff {
                return Err(Error::ShapeMismatch {
                    path: w.source.clone(),
                    name: gate_up,
                    found: t.shape.clone(),
                    expected: vec![2 * ff, spec.hidden_size],
                });
            }
            w.insert(layer_name(i, "mlp.gate_proj.weight"), t.narrow_rows(0, ff));
            w.insert(layer_name(i, "mlp.up_proj.weight"), t.narrow_rows(ff, ff));
        }
    }
    Ok(())
}
