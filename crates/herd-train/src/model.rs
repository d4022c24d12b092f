//! The reference model made trainable: every weight a variable (full fine-tuning), or frozen
//! weights with LoRA adapters on chosen projections (the base may stay quantised).

use std::sync::Arc;

use candle_core::{Device, Tensor, Var};
use herd_model::Model;
use herd_model::reference::{Linear, LinearWeight, Lora, RefLayer, RefModel};
use herd_model::rng::Rng;
use herd_model::spec::{Arch, RopeLayout};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The projections LoRA can adapt, by the names PEFT uses for them.
pub const MODULES: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    pub r: usize,
    pub alpha: f64,
    pub dropout: f32,
    pub targets: Vec<String>,
}

impl LoraConfig {
    pub fn scaling(&self) -> f64 {
        self.alpha / self.r as f64
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Method {
    Lora(LoraConfig),
    Full,
}

/// A trainable tensor and its name (PEFT's for adapters, Hugging Face's for weights).
#[derive(Clone, Debug)]
pub struct Param {
    pub name: String,
    pub var: Var,
}

/// A parameter's name, shape and values.
pub type NamedValues = (String, Vec<usize>, Vec<f32>);

pub struct TrainModel {
    pub model: RefModel,
    pub params: Vec<Param>,
    pub method: Method,
    /// llama.cpp stores llama-family Q and K rows permuted: adapters on them are trained in
    /// that order and written in Hugging Face's. `(n_heads, n_kv_heads, head_dim)`.
    pub permuted_qk: Option<(usize, usize, usize)>,
}

fn module<'a>(l: &'a mut RefLayer, name: &str) -> Option<(&'a mut Linear, &'static str)> {
    Some(match name {
        "q_proj" => (&mut l.q, "self_attn"),
        "k_proj" => (&mut l.k, "self_attn"),
        "v_proj" => (&mut l.v, "self_attn"),
        "o_proj" => (&mut l.o, "self_attn"),
        "gate_proj" => (&mut l.gate, "mlp"),
        "up_proj" => (&mut l.up, "mlp"),
        "down_proj" => (&mut l.down, "mlp"),
        _ => return None,
    })
}

/// PEFT's key of an adapter matrix.
pub fn peft_key(layer: usize, parent: &str, module: &str, ab: &str) -> String {
    format!("base_model.model.model.layers.{layer}.{parent}.{module}.lora_{ab}.weight")
}

impl TrainModel {
    pub fn new(m: &Model, method: &Method, seed: u64) -> Result<Self> {
        let device = Device::Cpu;
        let mut model = RefModel::load(m, &device)?;
        let permuted_qk = (matches!(m.spec.arch, Arch::Llama | Arch::Mistral)
            && m.spec.rope.layout == RopeLayout::Interleaved)
            .then_some((m.spec.n_heads, m.spec.n_kv_heads, m.spec.head_dim));
        let mut params = vec![];
        match method {
            Method::Full => {
                let mut var = |name: String, t: &mut Tensor| -> Result<()> {
                    let v = Var::from_tensor(t)?;
                    *t = v.as_tensor().clone();
                    params.push(Param { name, var: v });
                    Ok(())
                };
                var("model.embed_tokens.weight".into(), &mut model.embed)?;
                let tied = m.spec.tie_embeddings;
                for (i, l) in model.layers.iter_mut().enumerate() {
                    let p = |s: &str| format!("model.layers.{i}.{s}");
                    var(p("input_layernorm.weight"), &mut l.attn_norm)?;
                    for name in MODULES {
                        let (lin, parent) =
                            module(l, name).ok_or_else(|| Error::Usage(name.into()))?;
                        let LinearWeight::Dense(w) = &mut lin.weight else {
                            return Err(Error::Usage(
                                "full fine-tuning needs dense weights".into(),
                            ));
                        };
                        var(p(&format!("{parent}.{name}.weight")), w)?;
                        if let Some(b) = &mut lin.bias {
                            var(p(&format!("{parent}.{name}.bias")), b)?;
                        }
                    }
                    for (n, t) in [
                        ("self_attn.q_norm.weight", &mut l.q_norm),
                        ("self_attn.k_norm.weight", &mut l.k_norm),
                    ] {
                        if let Some(t) = t {
                            var(p(n), t)?;
                        }
                    }
                    let gemma = l.attn_out_norm.is_some();
                    var(
                        p(if gemma {
                            "pre_feedforward_layernorm.weight"
                        } else {
                            "post_attention_layernorm.weight"
                        }),
                        &mut l.mlp_norm,
                    )?;
                    if let Some(t) = &mut l.attn_out_norm {
                        var(p("post_attention_layernorm.weight"), t)?;
                    }
                    if let Some(t) = &mut l.mlp_out_norm {
                        var(p("post_feedforward_layernorm.weight"), t)?;
                    }
                }
                var("model.norm.weight".into(), &mut model.final_norm)?;
                if tied {
                    model.lm_head = model.embed.clone();
                } else {
                    var("lm_head.weight".into(), &mut model.lm_head)?;
                }
            }
            Method::Lora(cfg) => {
                if cfg.r == 0 {
                    return Err(Error::Usage("LoRA rank must be at least 1".into()));
                }
                for t in &cfg.targets {
                    if !MODULES.contains(&t.as_str()) {
                        return Err(Error::Usage(format!(
                            "unknown LoRA target '{t}'; choose from {}",
                            MODULES.join(", ")
                        )));
                    }
                }
                // Frozen base: quantised matrices stay in their stored type.
                let t = m.tensors()?;
                let mut rng = Rng::new(seed);
                for (i, (l, lt)) in model.layers.iter_mut().zip(&t.layers).enumerate() {
                    for (name, stored) in [
                        ("q_proj", &lt.q),
                        ("k_proj", &lt.k),
                        ("v_proj", &lt.v),
                        ("o_proj", &lt.o),
                        ("gate_proj", &lt.gate),
                        ("up_proj", &lt.up),
                        ("down_proj", &lt.down),
                    ] {
                        let (lin, parent) =
                            module(l, name).ok_or_else(|| Error::Usage(name.into()))?;
                        if stored.dtype.is_quantized() {
                            lin.weight = LinearWeight::Quantized(Arc::new(stored.clone()));
                        }
                        if !cfg.targets.iter().any(|t| t == name) {
                            continue;
                        }
                        let (out, inp) = (stored.shape[0], stored.shape[1]);
                        // PEFT's default: A ~ kaiming_uniform(a=√5), i.e. U(-1/√in, 1/√in); B = 0.
                        let bound = 1.0 / (inp as f64).sqrt();
                        let a_init: Vec<f32> = (0..cfg.r * inp)
                            .map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound) as f32)
                            .collect();
                        let a =
                            Var::from_tensor(&Tensor::from_vec(a_init, (cfg.r, inp), &device)?)?;
                        let b = Var::from_tensor(&Tensor::zeros(
                            (out, cfg.r),
                            candle_core::DType::F32,
                            &device,
                        )?)?;
                        lin.lora = Some(Lora {
                            a: a.as_tensor().clone(),
                            b: b.as_tensor().clone(),
                            scaling: cfg.scaling(),
                            mask: None,
                        });
                        params.push(Param {
                            name: peft_key(i, parent, name, "A"),
                            var: a,
                        });
                        params.push(Param {
                            name: peft_key(i, parent, name, "B"),
                            var: b,
                        });
                    }
                }
            }
        }
        Ok(TrainModel {
            model,
            params,
            method: method.clone(),
            permuted_qk,
        })
    }

    /// Draws fresh dropout masks (`[B, T, in]`) for every adapter, from `rng`.
    pub fn set_dropout(&mut self, rng: &mut Rng, b: usize, t: usize) -> Result<()> {
        let Method::Lora(cfg) = &self.method else {
            return Ok(());
        };
        let p = cfg.dropout;
        for l in self.model.layers.iter_mut() {
            for name in MODULES {
                let Some((lin, _)) = module(l, name) else {
                    continue;
                };
                let Some(lora) = &mut lin.lora else { continue };
                lora.mask = if p > 0.0 {
                    let inp = lora.a.dim(1)?;
                    let keep = 1.0 / (1.0 - p);
                    let m: Vec<f32> = (0..b * t * inp)
                        .map(|_| if rng.next_f64() < p as f64 { 0.0 } else { keep })
                        .collect();
                    Some(Tensor::from_vec(m, (b, t, inp), &Device::Cpu)?)
                } else {
                    None
                };
            }
        }
        Ok(())
    }

    /// Turns dropout off (held-out evaluation).
    pub fn clear_dropout(&mut self) {
        for l in self.model.layers.iter_mut() {
            for name in MODULES {
                if let Some((lin, _)) = module(l, name)
                    && let Some(lora) = &mut lin.lora
                {
                    lora.mask = None;
                }
            }
        }
    }

    /// Sets every parameter from `values` (name → row-major f32s), e.g. a checkpoint or an
    /// adapter's initial weights. Names missing from `values` are an error.
    pub fn set_values(&self, values: &std::collections::HashMap<String, Vec<f32>>) -> Result<()> {
        for p in &self.params {
            let v = values
                .get(&p.name)
                .ok_or_else(|| Error::Usage(format!("no values for parameter {}", p.name)))?;
            let shape = p.var.shape().clone();
            if v.len() != shape.elem_count() {
                return Err(Error::Usage(format!(
                    "{}: {} values for shape {:?}",
                    p.name,
                    v.len(),
                    shape.dims()
                )));
            }
            p.var
                .set(&Tensor::from_vec(v.clone(), shape, &Device::Cpu)?)?;
        }
        Ok(())
    }

    /// Each trainable parameter as (name, shape, values).
    pub fn values(&self) -> Result<Vec<NamedValues>> {
        self.params
            .iter()
            .map(|p| {
                Ok((
                    p.name.clone(),
                    p.var.dims().to_vec(),
                    p.var.as_tensor().flatten_all()?.to_vec1::<f32>()?,
                ))
            })
            .collect()
    }

    /// The model's f32 value of a dense frozen or trained weight (for merging).
    pub fn dense_weight(&self, lin: &Linear) -> Result<Tensor> {
        Ok(lin.weight_f32(&Device::Cpu)?)
    }
}

/// Reorders the rows of a `[out, …]` matrix between llama.cpp's rotary layout and Hugging
/// Face's, head by head. `to_hf`: GGUF row `2j + t` → HF row `t·hd/2 + j`.
pub fn permute_rows(data: &[f32], rows: usize, cols: usize, heads: usize, to_hf: bool) -> Vec<f32> {
    let hd = rows / heads.max(1);
    let mut out = vec![0f32; data.len()];
    for h in 0..heads {
        for j in 0..hd / 2 {
            for t in 0..2 {
                let gguf = h * hd + 2 * j + t;
                let hf = h * hd + t * hd / 2 + j;
                let (from, to) = if to_hf { (gguf, hf) } else { (hf, gguf) };
                out[to * cols..(to + 1) * cols]
                    .copy_from_slice(&data[from * cols..(from + 1) * cols]);
            }
        }
    }
    out
}
