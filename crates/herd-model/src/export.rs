//! Writing a model as GGUF the way llama.cpp's `convert_hf_to_gguf.py` does, optionally
//! converting its weights to another type on the way (`herd convert`).

use std::path::Path;

use herd_kernels::{GgmlType, quantize::can_quantize, quantize_row};

use crate::error::{Error, Result};
use crate::gguf::{GgufWriter, Value};
use crate::model::Model;
use crate::spec::{Arch, RopeLayout, RopeScaling};
use crate::tensor::StoredTensor;

/// llama.cpp's `general.file_type` for a model whose matrices are mostly `t`.
fn file_type(t: GgmlType) -> u32 {
    match t {
        GgmlType::F32 => 0,
        GgmlType::F16 => 1,
        GgmlType::Q4_0 => 2,
        GgmlType::Q4_1 => 3,
        GgmlType::Q8_0 => 7,
        GgmlType::Q5_0 => 8,
        GgmlType::Q5_1 => 9,
        GgmlType::Q2_K => 10,
        GgmlType::Q3_K => 12,
        GgmlType::Q4_K => 15,
        GgmlType::Q5_K => 17,
        GgmlType::Q6_K => 18,
        GgmlType::BF16 => 32,
        GgmlType::Q8_1 | GgmlType::Q8_K => 0,
    }
}

/// The rows of a Q or K projection reordered from Hugging Face's rotary layout to llama.cpp's:
/// within each head, row `t·hd/2 + j` moves to `2j + t`.
fn permute_rows(t: &StoredTensor, n_heads: usize) -> StoredTensor {
    let rows = t.shape[0];
    let hd = rows / n_heads;
    let rb = t.bytes().len() / rows;
    let src = t.bytes();
    let mut out = vec![0u8; src.len()];
    for h in 0..n_heads {
        for j in 0..hd / 2 {
            for half in 0..2 {
                let from = h * hd + half * hd / 2 + j;
                let to = h * hd + 2 * j + half;
                out[to * rb..(to + 1) * rb].copy_from_slice(&src[from * rb..(from + 1) * rb]);
            }
        }
    }
    StoredTensor::owned(t.dtype, t.shape.clone(), out)
}

/// `t` converted to `target` (through f32), row by row.
fn convert(t: &StoredTensor, target: GgmlType, name: &str) -> Result<Vec<u8>> {
    if t.dtype == target {
        return Ok(t.bytes().to_vec());
    }
    if !can_quantize(target) {
        return Err(Error::Usage(format!(
            "herd cannot write {target} yet; choose F32, F16, BF16, Q8_0, Q5_1, Q5_0, Q4_1 or Q4_0 (or quantize with llama-quantize)"
        )));
    }
    let cols = t.row_len();
    let rb = target.row_bytes(cols).ok_or_else(|| {
        Error::Usage(format!(
            "tensor '{name}': rows of {cols} are not whole {target} blocks"
        ))
    })?;
    let src = t.to_f32();
    let mut out = vec![0u8; rb * t.rows()];
    for (x, y) in src.chunks_exact(cols).zip(out.chunks_exact_mut(rb)) {
        quantize_row(target, x, y);
    }
    Ok(out)
}

/// The type each weight matrix is written in, by GGUF tensor name and row length.
pub type TypePlan<'a> = &'a dyn Fn(&str, usize) -> GgmlType;

/// `t` for every matrix whose rows are whole `t` blocks; otherwise llama-quantize's fallback
/// (k-quants to the nearest 32-element type, then F16).
pub fn uniform_plan(t: GgmlType) -> impl Fn(&str, usize) -> GgmlType {
    uniform_plan_with_fallback(t, GgmlType::F16)
}

/// Like [`uniform_plan`], with `last` as the final fallback instead of F16.
pub fn uniform_plan_with_fallback(t: GgmlType, last: GgmlType) -> impl Fn(&str, usize) -> GgmlType {
    move |_, cols| {
        if t.row_bytes(cols).is_some() {
            return t;
        }
        let fallback = match t {
            GgmlType::Q2_K | GgmlType::Q3_K => GgmlType::Q4_0,
            GgmlType::Q4_K => GgmlType::Q5_0,
            GgmlType::Q5_K => GgmlType::Q5_1,
            GgmlType::Q6_K => GgmlType::Q8_0,
            _ => last,
        };
        if fallback.row_bytes(cols).is_some() {
            fallback
        } else {
            last
        }
    }
}

/// Writes `model` to `out` as GGUF with its matrices in the types `plan` gives (vectors stay
/// F32). `extra` metadata (tokenizer, licence, lineage) is added as given.
pub fn write_gguf(
    model: &Model,
    out: &Path,
    plan: TypePlan<'_>,
    extra: &[(String, Value)],
) -> Result<()> {
    let spec = &model.spec;
    let t = model.tensors()?;
    let arch = spec.arch.gguf_name();
    let mut w = GgufWriter::new();
    let k = |s: &str| format!("{arch}.{s}");
    w.set_str("general.architecture", arch);
    let name = model
        .path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    w.set_str("general.name", &name);
    let matrix_type = plan("blk.0.attn_q.weight", spec.hidden_size);
    w.set_u32("general.file_type", file_type(matrix_type));
    w.set_u32(&k("context_length"), spec.context_length as u32);
    w.set_u32(&k("embedding_length"), spec.hidden_size as u32);
    w.set_u32(&k("block_count"), spec.n_layers as u32);
    w.set_u32(&k("feed_forward_length"), spec.intermediate_size as u32);
    w.set_u32(&k("attention.head_count"), spec.n_heads as u32);
    w.set_u32(&k("attention.head_count_kv"), spec.n_kv_heads as u32);
    w.set_u32(&k("attention.key_length"), spec.head_dim as u32);
    w.set_u32(&k("attention.value_length"), spec.head_dim as u32);
    w.set_f32(&k("attention.layer_norm_rms_epsilon"), spec.norm_eps);
    w.set_f32(&k("rope.freq_base"), spec.rope.theta);
    w.set_u32(&k("rope.dimension_count"), spec.rope.dim as u32);
    w.set_u32(&k("vocab_size"), spec.vocab_size as u32);
    if (spec.attn_scale - (spec.head_dim as f32).powf(-0.5)).abs() > 1e-7 {
        w.set_f32(&k("attention.scale"), spec.attn_scale);
    }
    if let Some(c) = spec.attn_softcap {
        w.set_f32(&k("attn_logit_softcapping"), c);
    }
    if let Some(c) = spec.final_softcap {
        w.set_f32(&k("final_logit_softcapping"), c);
    }
    let windows: Vec<usize> = spec.sliding_window.iter().flatten().copied().collect();
    if let Some(&win) = windows.first() {
        let expected: Vec<Option<usize>> = (0..spec.n_layers)
            .map(|i| match spec.arch {
                Arch::Gemma2 => Some(win).filter(|_| i % 2 == 0),
                _ => Some(win),
            })
            .collect();
        if spec.sliding_window != expected {
            return Err(Error::Usage(format!(
                "this model's sliding-window layers {:?} cannot be expressed in GGUF metadata",
                spec.sliding_window
            )));
        }
        w.set_u32(&k("attention.sliding_window"), win as u32);
    }
    let mut rope_freqs = None;
    match &spec.rope.scaling {
        RopeScaling::None => {}
        RopeScaling::Linear { factor } => {
            w.set_str(&k("rope.scaling.type"), "linear");
            w.set_f32(&k("rope.scaling.factor"), *factor);
        }
        RopeScaling::Llama3 { .. } | RopeScaling::FreqFactors(_) => {
            // llama.cpp stores llama3 scaling as per-frequency divisors.
            let plain = crate::spec::RopeSpec {
                scaling: RopeScaling::None,
                ..spec.rope.clone()
            };
            let factors: Vec<f32> = plain
                .inv_freq(0)
                .iter()
                .zip(spec.rope.inv_freq(0))
                .map(|(base, scaled)| base / scaled)
                .collect();
            rope_freqs = Some(factors);
        }
        RopeScaling::Dynamic { .. } => {
            return Err(Error::Usage(
                "dynamic rope scaling has no GGUF representation".into(),
            ));
        }
    }
    if let Some(b) = spec.bos_token_id {
        w.set_u32("tokenizer.ggml.bos_token_id", b);
    }
    if let Some(&e) = spec.eos_token_ids.first() {
        w.set_u32("tokenizer.ggml.eos_token_id", e);
    }
    for (key, v) in extra {
        w.set(key, v.clone());
    }

    let permute =
        matches!(spec.arch, Arch::Llama | Arch::Mistral) && spec.rope.layout == RopeLayout::Neox;
    let gemma_offset = spec.norm_weight_offset;
    let vector = |st: &StoredTensor, offset: f32| -> Vec<u8> {
        st.to_f32()
            .iter()
            .flat_map(|v| (v + offset).to_le_bytes())
            .collect()
    };
    let add_vec = |w: &mut GgufWriter, name: &str, st: &StoredTensor, offset: f32| -> Result<()> {
        w.add_tensor(name, GgmlType::F32, st.shape.clone(), vector(st, offset))
    };
    let add_mat = |w: &mut GgufWriter, name: &str, st: &StoredTensor| -> Result<()> {
        let dtype = plan(name, st.row_len());
        let data = convert(st, dtype, name)?;
        w.add_tensor(name, dtype, st.shape.clone(), data)
    };

    add_mat(&mut w, "token_embd.weight", &t.embed)?;
    if let Some(f) = rope_freqs {
        let n = f.len();
        w.add_tensor(
            "rope_freqs.weight",
            GgmlType::F32,
            vec![n],
            f.iter().flat_map(|v| v.to_le_bytes()).collect(),
        )?;
    }
    for (i, l) in t.layers.iter().enumerate() {
        let b = |s: &str| format!("blk.{i}.{s}");
        add_vec(&mut w, &b("attn_norm.weight"), &l.attn_norm, gemma_offset)?;
        let (q, kk) = if permute {
            (
                permute_rows(&l.q, spec.n_heads),
                permute_rows(&l.k, spec.n_kv_heads),
            )
        } else {
            (l.q.clone(), l.k.clone())
        };
        if spec.arch == Arch::Phi3 {
            let qkv = concat_rows(&[&q, &kk, &l.v]);
            add_mat(&mut w, &b("attn_qkv.weight"), &qkv)?;
        } else {
            add_mat(&mut w, &b("attn_q.weight"), &q)?;
            add_mat(&mut w, &b("attn_k.weight"), &kk)?;
            add_mat(&mut w, &b("attn_v.weight"), &l.v)?;
        }
        for (name, bias, heads) in [
            ("attn_q.bias", &l.q_bias, spec.n_heads),
            ("attn_k.bias", &l.k_bias, spec.n_kv_heads),
            ("attn_v.bias", &l.v_bias, 0),
        ] {
            if let Some(bias) = bias {
                let bias = if permute && heads > 0 {
                    let as_rows = StoredTensor::owned(
                        bias.dtype,
                        vec![bias.shape[0], 1],
                        bias.bytes().to_vec(),
                    );
                    let p = permute_rows(&as_rows, heads);
                    StoredTensor::owned(bias.dtype, bias.shape.clone(), p.bytes().to_vec())
                } else {
                    bias.clone()
                };
                add_vec(&mut w, &b(name), &bias, 0.0)?;
            }
        }
        add_mat(&mut w, &b("attn_output.weight"), &l.o)?;
        if let Some(n) = &l.q_norm {
            add_vec(&mut w, &b("attn_q_norm.weight"), n, gemma_offset)?;
        }
        if let Some(n) = &l.k_norm {
            add_vec(&mut w, &b("attn_k_norm.weight"), n, gemma_offset)?;
        }
        if let Some(n) = &l.attn_out_norm {
            add_vec(&mut w, &b("post_attention_norm.weight"), n, gemma_offset)?;
        }
        add_vec(&mut w, &b("ffn_norm.weight"), &l.mlp_norm, gemma_offset)?;
        if let Some(n) = &l.mlp_out_norm {
            add_vec(&mut w, &b("post_ffw_norm.weight"), n, gemma_offset)?;
        }
        if spec.arch == Arch::Phi3 {
            add_mat(&mut w, &b("ffn_up.weight"), &concat_rows(&[&l.gate, &l.up]))?;
        } else {
            add_mat(&mut w, &b("ffn_gate.weight"), &l.gate)?;
            add_mat(&mut w, &b("ffn_up.weight"), &l.up)?;
        }
        add_mat(&mut w, &b("ffn_down.weight"), &l.down)?;
    }
    add_vec(&mut w, "output_norm.weight", &t.final_norm, gemma_offset)?;
    if !spec.tie_embeddings {
        add_mat(&mut w, "output.weight", &t.lm_head)?;
    }
    w.write(out)
}

/// Rows of several same-typed matrices stacked (for fused projections).
fn concat_rows(parts: &[&StoredTensor]) -> StoredTensor {
    let dtype = parts[0].dtype;
    let cols = parts[0].row_len();
    let rows: usize = parts.iter().map(|p| p.shape[0]).sum();
    if parts.iter().all(|p| p.dtype == dtype) {
        let bytes: Vec<u8> = parts
            .iter()
            .flat_map(|p| p.bytes().iter().copied())
            .collect();
        StoredTensor::owned(dtype, vec![rows, cols], bytes)
    } else {
        let f: Vec<u8> = parts
            .iter()
            .flat_map(|p| p.to_f32())
            .flat_map(f32::to_le_bytes)
            .collect();
        StoredTensor::owned(GgmlType::F32, vec![rows, cols], f)
    }
}

/// Metadata keys of the tokenizer in a GGUF source, to carry into a converted copy.
pub fn tokenizer_metadata(model: &Model) -> Vec<(String, Value)> {
    match model.gguf() {
        Some(f) => f
            .key_order
            .iter()
            .filter(|k| k.starts_with("tokenizer."))
            .filter_map(|k| f.get(k).map(|v| (k.clone(), v.clone())))
            .collect(),
        None => vec![],
    }
}
