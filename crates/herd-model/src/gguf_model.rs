//! A GGUF file as a model: llama.cpp's metadata keys and tensor names mapped onto herd's
//! [`ModelSpec`] and Hugging Face tensor names.

use crate::error::{Error, Result};
use crate::gguf::{GgufFile, Value};
use crate::hf::split_fused;
use crate::spec::{Activation, Arch, ModelSpec, RopeLayout, RopeScaling, RopeSpec};
use crate::weights::{self, Weights, layer_name};

struct Meta<'a> {
    f: &'a GgufFile,
    arch: &'a str,
}

impl Meta<'_> {
    fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.arch)
    }

    fn opt_u64(&self, k: &str) -> Result<Option<u64>> {
        let key = self.key(k);
        match self.f.get(&key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                Error::invalid(
                    &self.f.path,
                    format!(
                        "metadata '{key}' should be an integer, found {}",
                        v.display_short()
                    ),
                )
            }),
        }
    }

    fn u64(&self, k: &str) -> Result<u64> {
        self.opt_u64(k)?.ok_or_else(|| {
            Error::invalid(
                &self.f.path,
                format!("required metadata '{}' is missing", self.key(k)),
            )
        })
    }

    fn opt_f32(&self, k: &str) -> Result<Option<f32>> {
        let key = self.key(k);
        match self.f.get(&key) {
            None => Ok(None),
            Some(v) => v.as_f64().map(|x| Some(x as f32)).ok_or_else(|| {
                Error::invalid(
                    &self.f.path,
                    format!(
                        "metadata '{key}' should be a number, found {}",
                        v.display_short()
                    ),
                )
            }),
        }
    }

    fn opt_str(&self, k: &str) -> Option<&str> {
        self.f.get(&self.key(k)).and_then(Value::as_str)
    }
}

/// GGUF tensor name → Hugging Face name, for the family `arch`.
fn hf_name(arch: Arch, gguf: &str) -> Option<String> {
    match gguf {
        "token_embd.weight" => return Some(weights::EMBED.into()),
        "output_norm.weight" => return Some(weights::FINAL_NORM.into()),
        "output.weight" => return Some(weights::LM_HEAD.into()),
        _ => {}
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (idx, suffix) = rest.split_once('.')?;
    let i: usize = idx.parse().ok()?;
    let (base, kind) = suffix.rsplit_once('.')?;
    let hf = match (base, arch) {
        ("attn_norm", _) => "input_layernorm",
        ("attn_q", _) => "self_attn.q_proj",
        ("attn_k", _) => "self_attn.k_proj",
        ("attn_v", _) => "self_attn.v_proj",
        ("attn_qkv", _) => "self_attn.qkv_proj",
        ("attn_output", _) => "self_attn.o_proj",
        ("attn_q_norm", _) => "self_attn.q_norm",
        ("attn_k_norm", _) => "self_attn.k_norm",
        ("post_attention_norm", _) => "post_attention_layernorm",
        ("ffn_norm", Arch::Gemma2) => "pre_feedforward_layernorm",
        ("ffn_norm", _) => "post_attention_layernorm",
        ("post_ffw_norm", _) => "post_feedforward_layernorm",
        ("ffn_gate", _) => "mlp.gate_proj",
        // Phi-3's GGUF keeps gate and up fused in ffn_up.
        ("ffn_up", Arch::Phi3) => "mlp.gate_up_proj",
        ("ffn_up", _) => "mlp.up_proj",
        ("ffn_down", _) => "mlp.down_proj",
        _ => return None,
    };
    Some(layer_name(i, &format!("{hf}.{kind}")))
}

/// The spec and weights of a GGUF model file.
pub fn load(f: &GgufFile) -> Result<(ModelSpec, Weights)> {
    let arch_name = f
        .get("general.architecture")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Error::invalid(
                &f.path,
                "metadata 'general.architecture' is missing: is this a vocabulary-only file?",
            )
        })?;
    let arch = match arch_name {
        "llama" => Arch::Llama,
        "mistral" => Arch::Mistral,
        "qwen2" => Arch::Qwen2,
        "qwen3" => Arch::Qwen3,
        "phi3" => Arch::Phi3,
        "gemma2" => Arch::Gemma2,
        other => {
            return Err(Error::UnsupportedArchitecture {
                path: f.path.clone(),
                arch: other.to_string(),
                supported:
                    "llama (also Mistral, Vicuna, Alpaca, TinyLlama …), qwen2, qwen3, phi3, gemma2"
                        .into(),
            });
        }
    };
    let m = Meta { f, arch: arch_name };

    let mut w = Weights {
        source: f.path.clone(),
        ..Default::default()
    };
    let mut rope_freqs = None;
    for info in &f.tensors {
        if info.name == "rope_freqs.weight" {
            rope_freqs = Some(f.tensor(info).to_f32());
            continue;
        }
        match hf_name(arch, &info.name) {
            Some(name) => w.insert(name, f.tensor(info)),
            // Tensors herd does not use (e.g. rope_factors of long-context Phi-3) are kept
            // under their GGUF name so that `herd info` can show them.
            None => w.insert(info.name.clone(), f.tensor(info)),
        }
    }

    let hidden = m.u64("embedding_length")? as usize;
    let n_heads = m.u64("attention.head_count")? as usize;
    if n_heads == 0 {
        return Err(Error::invalid(
            &f.path,
            format!("{arch_name}.attention.head_count is 0"),
        ));
    }
    let n_kv_heads = m
        .opt_u64("attention.head_count_kv")?
        .map(|v| v as usize)
        .unwrap_or(n_heads);
    let head_dim = m
        .opt_u64("attention.key_length")?
        .map(|v| v as usize)
        .unwrap_or(hidden / n_heads);
    let n_layers = m.u64("block_count")? as usize;
    let context_length = m.u64("context_length")? as usize;
    let vocab_size = match m.opt_u64("vocab_size")? {
        Some(v) => v as usize,
        None => match w.get(weights::EMBED) {
            Some(t) if t.shape.len() == 2 => t.shape[0],
            _ => {
                return Err(Error::MissingTensor {
                    path: f.path.clone(),
                    name: "token_embd.weight".into(),
                    needed_for: "the token embeddings".into(),
                });
            }
        },
    };

    let rope_dim = m
        .opt_u64("rope.dimension_count")?
        .map(|v| v as usize)
        .unwrap_or(head_dim);
    let scaling = match (m.opt_str("rope.scaling.type"), rope_freqs) {
        (_, Some(factors)) => RopeScaling::FreqFactors(factors),
        (None | Some("none"), None) => RopeScaling::None,
        (Some("linear"), None) => {
            let factor = m.opt_f32("rope.scaling.factor")?.unwrap_or(1.0);
            if factor == 1.0 {
                RopeScaling::None
            } else {
                RopeScaling::Linear { factor }
            }
        }
        (Some(other), None) => {
            return Err(Error::invalid(
                &f.path,
                format!(
                    "rope scaling '{other}' is not supported (herd supports none, linear and llama3 frequency factors)"
                ),
            ));
        }
    };
    let is_gemma = arch == Arch::Gemma2;
    // llama.cpp's converter permutes the Q and K rows of llama-family models for its rotary
    // layout; other families keep Hugging Face's order and use NeoX-style rope.
    let layout = if matches!(arch, Arch::Llama | Arch::Mistral) {
        RopeLayout::Interleaved
    } else {
        RopeLayout::Neox
    };
    let window = m
        .opt_u64("attention.sliding_window")?
        .map(|v| v as usize)
        .filter(|&v| v > 0);
    let sliding_window = (0..n_layers)
        .map(|i| match arch {
            Arch::Gemma2 => window.or(Some(4096)).filter(|_| i % 2 == 0),
            _ => window,
        })
        .collect();
    let attn_scale = match m.opt_f32("attention.scale")? {
        Some(s) => s,
        // llama.cpp's rule for Gemma 2 27B, whose query_pre_attn_scalar is hidden/heads.
        None if is_gemma && n_layers == 46 => ((hidden / n_heads) as f32).powf(-0.5),
        None => (head_dim as f32).powf(-0.5),
    };
    let tok = |k: &str| f.get(k).and_then(Value::as_u64).map(|v| v as u32);
    let mut eos: Vec<u32> = tok("tokenizer.ggml.eos_token_id").into_iter().collect();
    if let Some(eot) = tok("tokenizer.ggml.eot_token_id").filter(|e| !eos.contains(e)) {
        eos.push(eot);
    }
    let qkv_bias = (0..n_layers).any(|i| w.get(&layer_name(i, "self_attn.q_proj.bias")).is_some())
        || (0..n_layers).any(|i| w.get(&layer_name(i, "self_attn.qkv_proj.bias")).is_some());
    let spec = ModelSpec {
        arch,
        vocab_size,
        hidden_size: hidden,
        intermediate_size: m.u64("feed_forward_length")? as usize,
        n_layers,
        n_heads,
        n_kv_heads,
        head_dim,
        norm_eps: m
            .opt_f32("attention.layer_norm_rms_epsilon")?
            .unwrap_or(1e-5),
        // llama.cpp's Gemma converter stores 1 + w.
        norm_weight_offset: 0.0,
        activation: if is_gemma {
            Activation::GeluTanh
        } else {
            Activation::Silu
        },
        rope: RopeSpec {
            theta: m.opt_f32("rope.freq_base")?.unwrap_or(10000.0),
            dim: rope_dim,
            layout,
            scaling,
        },
        context_length,
        tie_embeddings: w.get(weights::LM_HEAD).is_none(),
        qkv_bias,
        qk_norm: arch == Arch::Qwen3,
        sandwich_norms: is_gemma,
        sliding_window,
        attn_scale,
        attn_softcap: if is_gemma {
            m.opt_f32("attn_logit_softcapping")?
        } else {
            None
        },
        final_softcap: if is_gemma {
            m.opt_f32("final_logit_softcapping")?
        } else {
            None
        },
        embed_scale: if is_gemma {
            Some((hidden as f32).sqrt())
        } else {
            None
        },
        bos_token_id: tok("tokenizer.ggml.bos_token_id"),
        eos_token_ids: eos,
    };
    split_fused(&spec, &mut w)?;
    spec.validate()
        .map_err(|msg| Error::invalid(&f.path, msg))?;
    Ok((spec, w))
}
