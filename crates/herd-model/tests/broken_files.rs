//! Broken and unsupported model files: each gives an error that names the file and the
//! problem, never a panic.

mod common;

use std::path::Path;

use common::*;
use herd_model::Model;

/// Opens `path` expecting an error whose message contains every one of `needles`.
fn expect_error(path: &Path, needles: &[&str]) -> String {
    let err = match Model::open(path) {
        Ok(_) => panic!(
            "{} opened, expected an error containing {needles:?}",
            path.display()
        ),
        Err(e) => e.to_string(),
    };
    for n in needles {
        assert!(err.contains(n), "error {err:?} should mention {n:?}");
    }
    err
}

/// A GGUF header by hand: magic, version, counts, then `body`.
fn gguf_bytes(version: u32, n_tensors: u64, n_kv: u64, body: &[u8]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(version.to_le_bytes());
    b.extend(n_tensors.to_le_bytes());
    b.extend(n_kv.to_le_bytes());
    b.extend(body);
    b
}

fn gguf_string(s: &str) -> Vec<u8> {
    let mut b = (s.len() as u64).to_le_bytes().to_vec();
    b.extend(s.as_bytes());
    b
}

/// Metadata `general.architecture = arch` followed by one tensor info.
fn one_tensor(arch: &str, name: &str, dims: &[u64], ggml_type: u32, offset: u64) -> Vec<u8> {
    let mut body = gguf_string("general.architecture");
    body.extend(8u32.to_le_bytes());
    body.extend(gguf_string(arch));
    body.extend(gguf_string(name));
    body.extend((dims.len() as u32).to_le_bytes());
    for d in dims {
        body.extend(d.to_le_bytes());
    }
    body.extend(ggml_type.to_le_bytes());
    body.extend(offset.to_le_bytes());
    gguf_bytes(3, 1, 1, &body)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn truncated_gguf_is_refused_with_the_place_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read(shared().join("models/stories260K/stories260K.gguf")).unwrap();
    // Cut inside the metadata: the header cannot be read.
    let p = write(dir.path(), "cut-header.gguf", &full[..200]);
    expect_error(&p, &["cut-header.gguf", "truncated"]);
    // Cut inside the tensor data: the header reads, the last tensors do not fit.
    let p = write(dir.path(), "cut-data.gguf", &full[..full.len() - 1000]);
    expect_error(&p, &["cut-data.gguf", "extends past the end of the file"]);
}

#[test]
fn tensor_offset_past_the_end_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "offset.gguf",
        &one_tensor("llama", "token_embd.weight", &[64, 8], 0, 1 << 40),
    );
    expect_error(&p, &["token_embd.weight", "extends past the end"]);
}

#[test]
fn wrong_magic_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(shared().join("models/stories260K/stories260K.gguf")).unwrap();
    bytes[..4].copy_from_slice(b"GGML");
    let p = write(dir.path(), "magic.gguf", &bytes);
    expect_error(&p, &["not a GGUF file", "GGML"]);
}

#[test]
fn metadata_string_with_a_huge_length_is_refused_without_allocating_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut body = gguf_string("general.name");
    body.extend(8u32.to_le_bytes());
    body.extend(u64::MAX.to_le_bytes()); // the string's length
    body.extend(b"short");
    let p = write(dir.path(), "huge.gguf", &gguf_bytes(3, 0, 1, &body));
    expect_error(
        &p,
        &[
            "metadata 'general.name'",
            "declares a length of 18446744073709551615",
        ],
    );
}

#[test]
fn gguf_version_1_unknown_tensor_type_and_unknown_architecture_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "v1.gguf", &gguf_bytes(1, 0, 0, &[]));
    expect_error(&p, &["GGUF version 1 is not supported", "versions 2 and 3"]);

    // Type 16 is IQ2_XXS, which herd does not read.
    let p = write(
        dir.path(),
        "iq2.gguf",
        &one_tensor("llama", "blk.0.attn_q.weight", &[256, 4], 16, 0),
    );
    expect_error(&p, &["blk.0.attn_q.weight", "IQ2_XXS", "Q4_K"]);

    let mut bytes = one_tensor("mamba", "token_embd.weight", &[32, 2], 0, 0);
    let pad = bytes.len().div_ceil(32) * 32 - bytes.len();
    bytes.extend(vec![0u8; pad + 32 * 2 * 4]);
    let p = write(dir.path(), "mamba.gguf", &bytes);
    expect_error(&p, &["architecture 'mamba' is not supported", "qwen2"]);
}

/// A copy of an hf-tiny folder that a test may break.
fn copy_folder(arch: &str, dir: &Path) -> std::path::PathBuf {
    let out = dir.join(arch);
    std::fs::create_dir_all(&out).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(hf_tiny(arch).join(f), out.join(f)).unwrap();
    }
    out
}

#[test]
fn config_missing_a_field_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let folder = copy_folder("llama", dir.path());
    let cfg = folder.join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    json.as_object_mut().unwrap().remove("hidden_size");
    std::fs::write(&cfg, json.to_string()).unwrap();
    expect_error(&folder, &["config.json", "'hidden_size' is missing"]);
}

#[test]
fn safetensors_header_whose_sizes_lie_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let folder = copy_folder("llama", dir.path());
    // A 4×4 f32 tensor needs 64 bytes; the header claims it spans 32.
    let header =
        r#"{"model.embed_tokens.weight":{"dtype":"F32","shape":[4,4],"data_offsets":[0,32]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header.as_bytes());
    bytes.extend([0u8; 32]);
    std::fs::write(folder.join("model.safetensors"), bytes).unwrap();
    expect_error(&folder, &["model.safetensors", "bad safetensors header"]);
}

#[test]
fn shard_index_naming_a_missing_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let folder = copy_folder("llama", dir.path());
    std::fs::rename(
        folder.join("model.safetensors"),
        folder.join("model-00001-of-00002.safetensors"),
    )
    .unwrap();
    let index = serde_json::json!({
        "metadata": {"total_size": 0},
        "weight_map": {
            "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
            "lm_head.weight": "model-00002-of-00002.safetensors"
        }
    });
    std::fs::write(
        folder.join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    expect_error(
        &folder,
        &[
            "model.safetensors.index.json",
            "model-00002-of-00002.safetensors",
        ],
    );
}

#[test]
fn sharded_folder_loads_like_the_single_file() {
    // Split the real hf-tiny llama checkpoint into two shards with an index and check that
    // every tensor reads back identically.
    let dir = tempfile::tempdir().unwrap();
    let folder = copy_folder("llama", dir.path());
    let bytes = std::fs::read(folder.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    names.sort();
    let (a, b) = names.split_at(names.len() / 2);
    let mut map = serde_json::Map::new();
    for (i, part) in [a, b].iter().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i + 1);
        let views: Vec<(String, safetensors::tensor::TensorView)> = part
            .iter()
            .map(|n| (n.clone(), st.tensor(n).unwrap()))
            .collect();
        safetensors::serialize_to_file(views, None, &folder.join(&file)).unwrap();
        for n in part.iter() {
            map.insert(n.clone(), serde_json::Value::String(file.clone()));
        }
    }
    std::fs::remove_file(folder.join("model.safetensors")).unwrap();
    std::fs::write(
        folder.join("model.safetensors.index.json"),
        serde_json::json!({"metadata": {}, "weight_map": map}).to_string(),
    )
    .unwrap();
    let sharded = Model::open(&folder).unwrap();
    let single = Model::open(hf_tiny("llama")).unwrap();
    assert_eq!(sharded.weights.tensors.len(), single.weights.tensors.len());
    for (name, t) in &single.weights.tensors {
        assert_eq!(
            sharded.weights.get(name).unwrap().bytes(),
            t.bytes(),
            "{name}"
        );
    }
}
