//! Helpers shared by herd-model's integration tests: where `../shared` is, and golden files.
#![allow(dead_code)]

use std::path::PathBuf;

use herd_model::engine::{Engine, KvCache, Logits, SeqInput};

/// The read-only data folder beside the repository (`../shared`), or `$HERD_SHARED`.
pub fn shared() -> PathBuf {
    match std::env::var_os("HERD_SHARED") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    }
}

pub const HF_TINY: [&str; 7] = [
    "llama", "llama3", "mistral", "qwen2", "qwen3", "phi3", "gemma2",
];

pub fn hf_tiny(arch: &str) -> PathBuf {
    shared().join("golden/hf-tiny").join(arch)
}

/// transformers' outputs for one hf-tiny model.
pub struct Golden {
    pub input_ids: Vec<u32>,
    /// `[T][V]`: next-token logits after each prompt prefix.
    pub logits: Vec<Vec<f32>>,
    /// `[16][V]`: logits of each greedy decoding step.
    pub step_logits: Vec<Vec<f32>>,
    pub greedy_new_ids: Vec<u32>,
}

fn rows(st: &safetensors::SafeTensors, name: &str) -> Vec<Vec<f32>> {
    let t = st.tensor(name).unwrap();
    assert_eq!(t.dtype(), safetensors::Dtype::F32);
    let v = t.shape()[1];
    let data: Vec<f32> = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    data.chunks(v).map(<[f32]>::to_vec).collect()
}

pub fn golden(arch: &str) -> Golden {
    let dir = hf_tiny(arch);
    let bytes = std::fs::read(dir.join("golden.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let ids = st.tensor("input_ids").unwrap();
    let input_ids = ids
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32)
        .collect();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap()).unwrap();
    let greedy_new_ids = json["greedy_new_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    Golden {
        input_ids,
        logits: rows(&st, "logits"),
        step_logits: rows(&st, "step_logits"),
        greedy_new_ids,
    }
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// llama.cpp's tokenizer test vectors for `vocab` (`ggml-vocab-{vocab}.gguf.inp/.out`): the
/// texts, split as `tests/test-tokenizer-0.cpp` splits them, with their expected ids.
pub fn llama_cpp_vectors(vocab: &str) -> Vec<(String, Vec<u32>)> {
    let dir = shared().join("models/tokenizers/gguf-vocab");
    let inp = std::fs::read_to_string(dir.join(format!("ggml-vocab-{vocab}.gguf.inp"))).unwrap();
    let out = std::fs::read_to_string(dir.join(format!("ggml-vocab-{vocab}.gguf.out"))).unwrap();
    let sep = "\n__ggml_vocab_test__\n";
    let mut texts = vec![];
    let mut pos = 0;
    while pos < inp.len() {
        match inp[pos..].find(sep) {
            Some(i) => {
                texts.push(inp[pos..pos + i].to_string());
                pos += i + sep.len();
            }
            None => {
                texts.push(inp[pos..].to_string());
                break;
            }
        }
    }
    let ids: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
        .collect();
    assert_eq!(texts.len(), ids.len(), "{vocab}: .inp and .out disagree");
    texts.into_iter().zip(ids).collect()
}

pub fn gguf_vocab(vocab: &str) -> PathBuf {
    shared()
        .join("models/tokenizers/gguf-vocab")
        .join(format!("ggml-vocab-{vocab}.gguf"))
}

/// Logits of every prompt position, then of each step fed `feed` (teacher forcing).
pub fn teacher_forced(e: &mut Engine, prompt: &[u32], feed: &[u32]) -> Vec<Vec<f32>> {
    let mut cache = e.new_cache(64);
    let all = e
        .forward(&mut [SeqInput {
            tokens: prompt,
            cache: &mut cache,
            logits: Logits::All,
        }])
        .unwrap()
        .to_vec();
    let mut out: Vec<Vec<f32>> = all
        .chunks_exact(e.spec().vocab_size)
        .map(<[f32]>::to_vec)
        .collect();
    for &tok in feed {
        out.push(last_logits(e, &mut cache, &[tok]));
    }
    out
}

/// Runs `tokens` on top of `cache` and returns the last position's logits.
pub fn last_logits(e: &mut Engine, cache: &mut KvCache, tokens: &[u32]) -> Vec<f32> {
    e.forward(&mut [SeqInput {
        tokens,
        cache,
        logits: Logits::Last,
    }])
    .unwrap()
    .to_vec()
}

/// `n` greedy tokens after `prompt`.
pub fn greedy(e: &mut Engine, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut cache = e.new_cache(prompt.len() + n);
    let mut logits = last_logits(e, &mut cache, prompt);
    let mut out = vec![];
    while out.len() < n {
        let next = argmax(&logits);
        out.push(next);
        if out.len() < n {
            logits = last_logits(e, &mut cache, &[next]);
        }
    }
    out
}
