//! The fast engine against transformers (hf-tiny) and llama.cpp (stories260K).

mod common;

use common::*;
use herd_model::Model;
use herd_model::engine::{CacheType, Engine, Logits, SeqInput};

/// How far from transformers' logits each cache type may be: an f32 cache keeps the keys and
/// values as computed; an f16 cache rounds them to 11 significant bits (as llama.cpp's default
/// cache does), which moved these models' logits by 4e-4 (llama) to over 1.2e-3 (qwen3).
const CACHE_TYPES: [(CacheType, f32); 2] = [(CacheType::F32, 1e-4), (CacheType::F16, 2e-3)];

#[test]
fn engine_prompt_logits_match_transformers_for_every_architecture() {
    for arch in HF_TINY {
        let g = golden(arch);
        let model = Model::open(hf_tiny(arch)).unwrap();
        for (threads, (ct, tol)) in [1, 2].into_iter().flat_map(|t| CACHE_TYPES.map(|c| (t, c))) {
            let mut e = Engine::new(&model, threads).unwrap();
            e.set_cache_type(ct);
            let mut cache = e.new_cache(64);
            let logits = e
                .forward(&mut [SeqInput {
                    tokens: &g.input_ids,
                    cache: &mut cache,
                    logits: Logits::All,
                }])
                .unwrap()
                .to_vec();
            let v = model.spec.vocab_size;
            for (pos, want) in g.logits.iter().enumerate() {
                let d = max_abs_diff(&logits[pos * v..(pos + 1) * v], want);
                assert!(
                    d < tol,
                    "{arch} ({threads} threads, {ct} cache): position {pos}: max |Δ| = {d}"
                );
            }
        }
    }
}

#[test]
fn engine_cached_decoding_matches_transformers_generate() {
    for arch in HF_TINY {
        let g = golden(arch);
        let model = Model::open(hf_tiny(arch)).unwrap();
        let mut e = Engine::new(&model, 2).unwrap();
        // Decoding goes on in the prompt's own cache, and in a copy of its prefix into a cache
        // of another capacity (as evaluation shares a prompt between its choices): each head's
        // rows start at a capacity-dependent place, so a copy that kept the source's offsets
        // would read other heads' keys. Each with either cache type.
        for (copied, (ct, tol)) in [false, true]
            .into_iter()
            .flat_map(|c| CACHE_TYPES.map(|t| (c, t)))
        {
            // A copied f16 cache is filled from an f32 prompt cache (rounding on the copy).
            e.set_cache_type(if copied { CacheType::F32 } else { ct });
            let mut prompt_cache = e.new_cache(64);
            let mut last = last_logits(&mut e, &mut prompt_cache, &g.input_ids);
            e.set_cache_type(ct);
            let mut cache = if copied {
                let mut c = e.new_cache(97);
                c.copy_prefix_from(&prompt_cache, g.input_ids.len())
                    .unwrap();
                c
            } else {
                prompt_cache
            };
            let mut generated = vec![];
            for (step, want) in g.step_logits.iter().enumerate() {
                let d = max_abs_diff(&last, want);
                assert!(
                    d < tol,
                    "{arch} ({ct} cache, copied: {copied}): step {step}: max |Δ| = {d}"
                );
                let next = argmax(&last);
                generated.push(next);
                last = last_logits(&mut e, &mut cache, &[next]);
            }
            assert_eq!(
                generated, g.greedy_new_ids,
                "{arch} ({ct} cache, copied: {copied}): greedy ids"
            );
        }
    }
}

/// hf-tiny llama as multi-head attention: each query head gets its own copy of the key/value
/// head it shared (rows of `k_proj` and `v_proj` repeated), which changes no output. Decoding
/// then runs one query per key/value head (`attention::attend1`), and still has to give
/// transformers' logits and greedy ids, with either cache type.
#[test]
fn multi_head_attention_decodes_as_transformers_generate() {
    let tiny = hf_tiny("llama");
    let dir = tempfile::tempdir().unwrap();
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(tiny.join(f), dir.path().join(f)).unwrap();
    }
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tiny.join("config.json")).unwrap()).unwrap();
    let heads = config["num_attention_heads"].as_u64().unwrap() as usize;
    let kv_heads = config["num_key_value_heads"].as_u64().unwrap() as usize;
    assert!(
        kv_heads < heads,
        "hf-tiny llama is grouped-query already multi-head"
    );
    config["num_key_value_heads"] = heads.into();
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let bytes = std::fs::read(tiny.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let (shape, data) = (view.shape().to_vec(), view.data());
            if !(name.ends_with("k_proj.weight") || name.ends_with("v_proj.weight")) {
                return (name, shape, data.to_vec());
            }
            // Query head h reads key/value head h / (heads / kv_heads): its rows, repeated.
            let row = shape[1] * 4;
            let per_head = shape[0] / kv_heads * row;
            let data: Vec<u8> = (0..heads)
                .flat_map(|h| {
                    let at = h / (heads / kv_heads) * per_head;
                    data[at..at + per_head].to_vec()
                })
                .collect();
            (name, vec![shape[0] / kv_heads * heads, shape[1]], data)
        })
        .collect();
    let views = tensors.iter().map(|(name, shape, data)| {
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                .unwrap();
        (name.clone(), view)
    });
    std::fs::write(
        dir.path().join("model.safetensors"),
        safetensors::serialize(views, None).unwrap(),
    )
    .unwrap();

    let g = golden("llama");
    let model = Model::open(dir.path()).unwrap();
    assert_eq!(model.spec.n_kv_heads, model.spec.n_heads);
    for (threads, (ct, tol)) in [1, 2].into_iter().flat_map(|t| CACHE_TYPES.map(|c| (t, c))) {
        let mut e = Engine::new(&model, threads).unwrap();
        e.set_cache_type(ct);
        let mut cache = e.new_cache(64);
        let mut last = last_logits(&mut e, &mut cache, &g.input_ids);
        let mut generated = vec![];
        for (step, want) in g.step_logits.iter().enumerate() {
            let d = max_abs_diff(&last, want);
            assert!(
                d < tol,
                "multi-head llama ({threads} threads, {ct} cache): step {step}: max |Δ| = {d}"
            );
            let next = argmax(&last);
            generated.push(next);
            last = last_logits(&mut e, &mut cache, &[next]);
        }
        assert_eq!(generated, g.greedy_new_ids, "multi-head llama: greedy ids");
    }
}

/// Prompt and greedy continuation from llama.cpp's own run (`../shared/golden/stories260K`).
fn llama_cpp_golden(name: &str) -> (Vec<u32>, Vec<u32>) {
    let path = shared().join("golden/stories260K").join(name);
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let ids = |k: &str| {
        j[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect()
    };
    (ids("prompt_ids"), ids("greedy_new_ids"))
}

#[test]
fn stories260k_greedy_continuation_equals_llama_cpp() {
    let model = Model::open(shared().join("models/stories260K/stories260K.gguf")).unwrap();
    for threads in [1, 2] {
        let mut e = Engine::new(&model, threads).unwrap();
        for name in [
            "once_upon_a_time_100.json",
            "once_upon_a_time_200_ignore_eos.json",
        ] {
            let (prompt, want) = llama_cpp_golden(name);
            let got = greedy(&mut e, &prompt, want.len());
            assert_eq!(got, want, "{name} with {threads} threads");
        }
    }
}
