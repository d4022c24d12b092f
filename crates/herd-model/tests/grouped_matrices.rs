//! Q4_K, Q5_K, Q6_K, Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 models whose matrices the engine
//! regroups for decoding (`herd_kernels::interleave`): their prompt logits (tiled kernels
//! packing from the grouped copy) and decode logits (the grouped kernels) equal those of an
//! engine on ggml's rows to float rounding, and agree with the candle reference forward over
//! the same weights, dequantised to f32, to the spread that 8-bit activations allow.
//!
//! The hf-tiny models are 64 wide, and the k-quants need rows of 256: this test writes a llama
//! of its own (hf-tiny llama's tokenizer, 256 wide), quantised to Q4_0, Q4_1, Q5_0, Q5_1 and
//! Q8_0 by herd, and as Q4_K, Q5_K and Q6_K with random but valid blocks for its matrices
//! (herd has no k-quant quantiser; the weights need not be good, only the same bytes on both
//! sides).

mod common;

use std::path::Path;

use candle_core::{Device, Tensor};
use common::*;
use herd_kernels::{GgmlType, Isa};
use herd_model::Model;
use herd_model::engine::Engine;
use herd_model::export::{tokenizer_metadata, uniform_plan, write_gguf};
use herd_model::gguf::{GgufFile, GgufWriter};
use herd_model::reference::{Layout, RefCache, RefModel};
use safetensors::tensor::TensorView;

const H: usize = 256;
const FF: usize = 512;
const V: usize = 384;
const LAYERS: usize = 2;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = H / HEADS;

/// Uniform floats in ±`scale` (xorshift), so the model's activations stay in a sane range.
fn random(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// A Hugging Face llama folder in `dir`: hf-tiny llama's tokenizer, 256-wide random weights.
fn write_hf_llama(dir: &Path, tied: bool) {
    let tiny = hf_tiny("llama");
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(tiny.join(f), dir.join(f)).unwrap();
    }
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tiny.join("config.json")).unwrap()).unwrap();
    config["hidden_size"] = H.into();
    config["intermediate_size"] = FF.into();
    config["head_dim"] = HEAD_DIM.into();
    config["num_attention_heads"] = HEADS.into();
    config["num_key_value_heads"] = KV_HEADS.into();
    config["num_hidden_layers"] = LAYERS.into();
    config["vocab_size"] = V.into();
    config["tie_word_embeddings"] = tied.into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();

    let kv = KV_HEADS * HEAD_DIM;
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        ("model.embed_tokens.weight".into(), vec![V, H]),
        ("model.norm.weight".into(), vec![H]),
    ];
    if !tied {
        shapes.push(("lm_head.weight".into(), vec![V, H]));
    }
    for i in 0..LAYERS {
        let l = |s: &str| format!("model.layers.{i}.{s}");
        shapes.extend([
            (l("input_layernorm.weight"), vec![H]),
            (l("post_attention_layernorm.weight"), vec![H]),
            (l("self_attn.q_proj.weight"), vec![H, H]),
            (l("self_attn.k_proj.weight"), vec![kv, H]),
            (l("self_attn.v_proj.weight"), vec![kv, H]),
            (l("self_attn.o_proj.weight"), vec![H, H]),
            (l("mlp.gate_proj.weight"), vec![FF, H]),
            (l("mlp.up_proj.weight"), vec![FF, H]),
            (l("mlp.down_proj.weight"), vec![H, FF]),
        ]);
    }
    let bytes: Vec<Vec<u8>> = shapes
        .iter()
        .enumerate()
        .map(|(k, (name, shape))| {
            let n: usize = shape.iter().product();
            let v = if shape.len() == 1 {
                random(n, k as u64, 0.2).iter().map(|x| 1.0 + x).collect()
            } else {
                // About 1/√fan-in, as trained weights are.
                random(n, k as u64, if name.contains("embed") { 1.0 } else { 0.1 })
            };
            v.iter().flat_map(|x| x.to_le_bytes()).collect()
        })
        .collect();
    let views = shapes.iter().zip(&bytes).map(|((name, shape), b)| {
        let view = TensorView::new(safetensors::Dtype::F32, shape.clone(), b).unwrap();
        (name.clone(), view)
    });
    let st = safetensors::serialize(views, None).unwrap();
    std::fs::write(dir.join("model.safetensors"), st).unwrap();
}

/// `rows` rows of random `t` blocks (Q4_K, Q5_K or Q6_K) for `cols`: every quant, scale and min
/// byte random, the super-block scales small (weights of about ±0.05).
fn random_k_quant(t: GgmlType, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    let bs = t.type_size();
    let bytes = random(rows * cols / 256 * bs, seed, 1.0);
    let mut out: Vec<u8> = bytes.iter().map(|v| ((v + 1.0) * 127.9) as u8).collect();
    for b in out.chunks_exact_mut(bs) {
        let u = b[20] as f32 / 255.0;
        if t != GgmlType::Q6_K {
            // Q5_K's quants reach 31, Q4_K's 15: the same weight range takes half the scale.
            let bits = if t == GgmlType::Q5_K { 0.5 } else { 1.0 };
            let d = half::f16::from_f32((2e-4 + 1e-4 * u) * bits);
            let dmin = half::f16::from_f32(1e-4 * (b[21] as f32 / 255.0));
            b[0..2].copy_from_slice(&d.to_le_bytes());
            b[2..4].copy_from_slice(&dmin.to_le_bytes());
        } else {
            // Q6_K: d last; scales are signed bytes.
            let d = half::f16::from_f32(5e-5 + 5e-5 * u);
            b[bs - 2..].copy_from_slice(&d.to_le_bytes());
        }
    }
    out
}

/// The llama of [`write_hf_llama`] as GGUF, its matrices `t` (Q4_K, Q5_K or Q6_K; the embeddings
/// stay F32).
fn write_k_quant_gguf(dir: &Path, t: GgmlType) -> std::path::PathBuf {
    write_hf_llama(dir, false);
    let src = Model::open(dir).unwrap();
    let f32_path = dir.join("f32.gguf");
    let plan = uniform_plan(GgmlType::F32);
    write_gguf(&src, &f32_path, &plan, &tokenizer_metadata(&src)).unwrap();
    let f = GgufFile::open(&f32_path).unwrap();
    let mut w = GgufWriter::new();
    for k in &f.key_order {
        w.set(k, f.metadata[k].clone());
    }
    for (i, info) in f.tensors.iter().enumerate() {
        let stored = f.tensor(info);
        let shape = info.shape();
        if shape.len() == 2 && info.name != "token_embd.weight" {
            let data = random_k_quant(t, shape[0], shape[1], 100 + i as u64);
            w.add_tensor(&info.name, t, shape, data).unwrap();
        } else {
            let bytes = stored.bytes().to_vec();
            w.add_tensor(&info.name, stored.dtype, shape, bytes)
                .unwrap();
        }
    }
    let path = dir.join(format!("{t}.gguf"));
    w.write(&path).unwrap();
    path
}

#[test]
fn grouped_q4_k_matrices_give_the_reference_logits() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::open(write_k_quant_gguf(dir.path(), GgmlType::Q4_K)).unwrap();
    check_against_reference(&model, GgmlType::Q4_K, false);
}

#[test]
fn grouped_q5_k_matrices_give_the_reference_logits() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::open(write_k_quant_gguf(dir.path(), GgmlType::Q5_K)).unwrap();
    check_against_reference(&model, GgmlType::Q5_K, false);
}

#[test]
fn grouped_q6_k_matrices_give_the_reference_logits() {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::open(write_k_quant_gguf(dir.path(), GgmlType::Q6_K)).unwrap();
    check_against_reference(&model, GgmlType::Q6_K, false);
}

/// The llama of [`write_hf_llama`] quantised to `t` by herd.
fn check_herd_quantised(t: GgmlType, tied: bool) {
    let dir = tempfile::tempdir().unwrap();
    write_hf_llama(dir.path(), tied);
    let src = Model::open(dir.path()).unwrap();
    let path = dir.path().join(format!("{t}.gguf"));
    let plan = uniform_plan(t);
    write_gguf(&src, &path, &plan, &tokenizer_metadata(&src)).unwrap();
    check_against_reference(&Model::open(&path).unwrap(), t, tied);
}

#[test]
fn grouped_q4_0_matrices_give_the_reference_logits() {
    check_herd_quantised(GgmlType::Q4_0, false);
}

#[test]
fn grouped_q5_0_matrices_give_the_reference_logits() {
    check_herd_quantised(GgmlType::Q5_0, false);
}

#[test]
fn grouped_q4_1_matrices_give_the_reference_logits() {
    check_herd_quantised(GgmlType::Q4_1, false);
}

#[test]
fn grouped_q5_1_matrices_give_the_reference_logits() {
    check_herd_quantised(GgmlType::Q5_1, false);
}

/// Tied embeddings, as Qwen2.5-0.5B has: the output projection is grouped, the lookup reads
/// the file's rows.
#[test]
fn grouped_q8_0_matrices_give_the_reference_logits_with_tied_embeddings() {
    check_herd_quantised(GgmlType::Q8_0, true);
}

fn check_against_reference(model: &Model, dtype: GgmlType, tied: bool) {
    let matrices = model
        .weights
        .tensors
        .iter()
        .filter(|(name, w)| w.dtype == dtype && w.shape.len() == 2 && !name.contains("embed"))
        .count();
    let head = usize::from(!tied);
    assert_eq!(matrices, 7 * LAYERS + head, "the file's {dtype} matrices");
    assert_eq!(model.spec.tie_embeddings, tied);
    let prompt: Vec<u32> = (0..12).map(|i| 3 + 29 * i % (V as u32 - 3)).collect();
    let feed: Vec<u32> = (0..8).map(|i| 5 + 37 * i % (V as u32 - 5)).collect();

    // The reference: f32 candle ops over the dequantised weights.
    let rm = RefModel::load(model, &Device::Cpu).unwrap();
    let mut rcache = RefCache::default();
    let t = prompt.len();
    let toks = Tensor::from_vec(prompt.clone(), (1, t), &Device::Cpu).unwrap();
    let ref_prompt = rm
        .forward(&toks, &Layout::contiguous(&[0], t), Some(&mut rcache))
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let mut ref_steps = vec![];
    for (i, &tok) in feed.iter().enumerate() {
        let x = Tensor::from_vec(vec![tok], (1, 1), &Device::Cpu).unwrap();
        let l = rm
            .forward(&x, &Layout::contiguous(&[t + i], 1), Some(&mut rcache))
            .unwrap();
        ref_steps.push(l.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    }
    let scale = ref_prompt
        .iter()
        .flatten()
        .fold(0f32, |m, v| m.max(v.abs()));
    let reference: Vec<Vec<f32>> = ref_prompt.into_iter().chain(ref_steps).collect();

    for threads in [1, 2] {
        let mut e = Engine::new(model, threads).unwrap();
        // Every matrix is 256 wide with rows a multiple of 8, so all of them (and the output
        // projection, tied or not) are grouped wherever the grouped kernels run.
        let want_grouped = if herd_kernels::simd::isa() == Isa::Avx2 {
            7 * LAYERS + 1
        } else {
            0
        };
        assert_eq!(e.grouped_matrices(), want_grouped);
        let mut rows = Engine::with_ggml_rows(model, threads).unwrap();
        assert_eq!(rows.grouped_matrices(), 0);
        let grouped_logits = teacher_forced(&mut e, &prompt, &feed);
        let row_logits = teacher_forced(&mut rows, &prompt, &feed);
        for (i, ((g, r), want)) in grouped_logits
            .iter()
            .zip(&row_logits)
            .zip(&reference)
            .enumerate()
        {
            let what = if i < prompt.len() {
                format!("prompt position {i}")
            } else {
                format!("decode step {}", i - prompt.len())
            };
            // The same activation bytes and exact integer block sums as ggml's row kernels:
            // only the order of float sums differs. Through a layer that can move one
            // activation across a rounding boundary of the next 8-bit quantisation, so the
            // logits may differ by a few of those steps: 0.6 % of the scale at most here (Q4_0).
            let d = max_abs_diff(g, r);
            assert!(
                d < 0.02 * scale,
                "{dtype}, {threads} threads, {what}: grouped vs ggml rows, max |Δ| = {d} (scale {scale})"
            );
            // The engine quantises activations to 8 bits (Q8_K for the k-quants, Q8_0 for
            // Q4_0/Q5_0) where the reference multiplies f32: with these random weights a
            // spread of up to 0.05 % (Q4_K), 1.3 % (Q4_0) and 6.4 % (Q6_K) of the logits'
            // scale, the same in ggml's rows. A wrong scale or row moves them by the whole
            // scale.
            let d = max_abs_diff(g, want);
            assert!(
                d < 0.15 * scale,
                "{dtype}, {threads} threads, {what}: grouped vs reference, max |Δ| = {d} (scale {scale})"
            );
        }
    }
}
