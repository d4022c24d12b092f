//! One description of a decoder-only transformer, whatever file it came from.
//!
//! The families herd runs differ in a handful of switches (norm offset, activation, biases,
//! q/k norms, sandwich norms, sliding windows, soft-capping, embedding scale, rope scaling);
//! [`ModelSpec`] holds them, and the forward passes read nothing else.

use std::fmt;

/// A model family, named as Hugging Face's `model_type` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    /// LLaMA 1/2/3 and everything fine-tuned from them (Vicuna, Alpaca, Koala, TinyLlama, stories).
    Llama,
    /// Mistral: llama with a sliding attention window.
    Mistral,
    /// Qwen2 / Qwen2.5: llama with biases on the q, k and v projections.
    Qwen2,
    /// Qwen3: RMS norms on each head's queries and keys.
    Qwen3,
    /// Phi-3: fused qkv and gate_up projections.
    Phi3,
    /// Gemma 2: (1 + w) norms around both blocks, soft-capping, alternating local/global attention.
    Gemma2,
}

impl Arch {
    pub const ALL: [Arch; 6] = [
        Arch::Llama,
        Arch::Mistral,
        Arch::Qwen2,
        Arch::Qwen3,
        Arch::Phi3,
        Arch::Gemma2,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Mistral => "mistral",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Phi3 => "phi3",
            Arch::Gemma2 => "gemma2",
        }
    }

    pub fn from_name(s: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.name() == s)
    }

    /// The `general.architecture` llama.cpp writes for this family (Mistral is "llama" there).
    pub fn gguf_name(self) -> &'static str {
        match self {
            Arch::Mistral => "llama",
            a => a.name(),
        }
    }

    pub fn supported_list() -> String {
        Arch::ALL.map(|a| a.name()).join(", ")
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// x·σ(x), llama's.
    Silu,
    /// GELU with the tanh approximation (`gelu_pytorch_tanh`, `gelu_new`), Gemma's.
    GeluTanh,
    /// Exact GELU with erf (`gelu`).
    Gelu,
}

impl Activation {
    pub fn from_hf(s: &str) -> Option<Self> {
        match s {
            "silu" | "swish" => Some(Activation::Silu),
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Some(Activation::GeluTanh),
            "gelu" => Some(Activation::Gelu),
            _ => None,
        }
    }
}

/// How the two halves of each rotated pair sit in a head's vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeLayout {
    /// Pairs `(x[i], x[i + d/2])`: Hugging Face's `rotate_half` (GPT-NeoX style).
    Neox,
    /// Pairs `(x[2i], x[2i + 1])`: llama.cpp stores llama-family Q and K rows permuted into this
    /// order, and rotating adjacent pairs of the permuted rows gives the same attention.
    Interleaved,
}

/// Rope frequency scaling, as transformers defines each `rope_type`.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor`.
    Linear {
        factor: f32,
    },
    /// NTK-aware base stretching once the sequence outgrows `original_max`.
    Dynamic {
        factor: f32,
        original_max: usize,
    },
    /// Llama 3.x: low frequencies divided by `factor`, a smooth ramp between.
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_max: usize,
    },
    /// Per-frequency divisors, as GGUF files store llama3 scaling (`rope_freqs.weight`).
    FreqFactors(Vec<f32>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct RopeSpec {
    pub theta: f32,
    /// Rotated dimensions per head (`head_dim` unless `partial_rotary_factor < 1`).
    pub dim: usize,
    pub layout: RopeLayout,
    pub scaling: RopeScaling,
}

impl RopeSpec {
    /// Inverse frequencies for a sequence whose positions reach `seq_len - 1`, as transformers
    /// computes them (float32 powers of the base).
    pub fn inv_freq(&self, seq_len: usize) -> Vec<f32> {
        let dim = self.dim;
        let base_freqs = |base: f32| -> Vec<f32> {
            (0..dim / 2)
                .map(|i| 1.0 / base.powf((2 * i) as f32 / dim as f32))
                .collect()
        };
        match &self.scaling {
            RopeScaling::None => base_freqs(self.theta),
            RopeScaling::Linear { factor } => base_freqs(self.theta)
                .into_iter()
                .map(|f| f / factor)
                .collect(),
            RopeScaling::Dynamic {
                factor,
                original_max,
            } => {
                let seq = seq_len.max(*original_max) as f64;
                let base = self.theta as f64
                    * ((*factor as f64 * seq / *original_max as f64) - (*factor as f64 - 1.0))
                        .powf(dim as f64 / (dim as f64 - 2.0));
                base_freqs(base as f32)
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max,
            } => {
                let old = *original_max as f32;
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                base_freqs(self.theta)
                    .into_iter()
                    .map(|f| {
                        let wavelen = 2.0 * std::f32::consts::PI / f;
                        if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / factor
                        } else {
                            let smooth = (old / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
            RopeScaling::FreqFactors(factors) => base_freqs(self.theta)
                .into_iter()
                .zip(factors)
                .map(|(f, d)| f / d)
                .collect(),
        }
    }

    /// Whether the frequencies depend on the sequence length (recomputed per forward call).
    pub fn is_dynamic(&self) -> bool {
        matches!(self.scaling, RopeScaling::Dynamic { .. })
    }
}

/// Everything the forward pass needs to know about a model's shape and switches.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    pub arch: Arch,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub norm_eps: f32,
    /// Added to every RMS-norm weight: 1 for Gemma as Hugging Face stores it (`x·(1 + w)`),
    /// 0 when the file already holds `1 + w` (llama.cpp's Gemma conversion) and for the rest.
    pub norm_weight_offset: f32,
    pub activation: Activation,
    pub rope: RopeSpec,
    /// Positions the model was trained for (`max_position_embeddings`, `context_length`).
    pub context_length: usize,
    pub tie_embeddings: bool,
    /// Biases on the q, k and v projections (Qwen2).
    pub qkv_bias: bool,
    /// RMS norms on each head's queries and keys before rope (Qwen3).
    pub qk_norm: bool,
    /// Norms after attention and around the MLP as well as before (Gemma 2).
    pub sandwich_norms: bool,
    /// Per layer: `Some(w)` when a query sees only the `w` most recent positions (itself included).
    pub sliding_window: Vec<Option<usize>>,
    /// Multiplier of `q·k` (usually `head_dim^-1/2`).
    pub attn_scale: f32,
    /// `cap·tanh(x/cap)` on attention scores (Gemma 2).
    pub attn_softcap: Option<f32>,
    /// `cap·tanh(x/cap)` on the final logits (Gemma 2).
    pub final_softcap: Option<f32>,
    /// Multiplier of the token embeddings (Gemma: `sqrt(hidden_size)`).
    pub embed_scale: Option<f32>,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

impl ModelSpec {
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Checks the numbers fit together; `what` names the source in errors.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.n_layers),
            ("num_attention_heads", self.n_heads),
            ("num_key_value_heads", self.n_kv_heads),
            ("head_dim", self.head_dim),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("{name} is 0"));
            }
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(format!(
                "num_attention_heads ({}) is not a multiple of num_key_value_heads ({})",
                self.n_heads, self.n_kv_heads
            ));
        }
        if self.rope.dim > self.head_dim || !self.rope.dim.is_multiple_of(2) {
            return Err(format!(
                "rotary dimension {} does not fit head_dim {}",
                self.rope.dim, self.head_dim
            ));
        }
        if self.sliding_window.len() != self.n_layers {
            return Err("sliding window list does not have one entry per layer".into());
        }
        if let RopeScaling::FreqFactors(f) = &self.rope.scaling
            && f.len() != self.rope.dim / 2
        {
            return Err(format!(
                "rope_freqs has {} factors, expected {}",
                f.len(),
                self.rope.dim / 2
            ));
        }
        Ok(())
    }

    /// Parameters, counted from the shapes.
    pub fn n_params(&self) -> usize {
        let h = self.hidden_size;
        let attn = h * self.q_dim() * 2 + h * self.kv_dim() * 2;
        let bias = if self.qkv_bias {
            self.q_dim() + 2 * self.kv_dim()
        } else {
            0
        };
        let mlp = 3 * h * self.intermediate_size;
        let norms = h * if self.sandwich_norms { 4 } else { 2 }
            + if self.qk_norm { 2 * self.head_dim } else { 0 };
        let per_layer = attn + bias + mlp + norms;
        let embed = self.vocab_size * h;
        let head = if self.tie_embeddings { 0 } else { embed };
        per_layer * self.n_layers + embed + head + h
    }
}
