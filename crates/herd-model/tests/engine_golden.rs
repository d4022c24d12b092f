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
