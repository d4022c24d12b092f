//! The `herd` binary end to end: each command on real models from `../shared`.

use std::path::PathBuf;
use std::process::Command;

fn shared() -> PathBuf {
    match std::env::var_os("HERD_SHARED") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    }
}

fn herd(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn f32s(st: &safetensors::SafeTensors, name: &str) -> Vec<f32> {
    st.tensor(name)
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn logits_by_ids_equal_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let model = shared().join("golden/hf-tiny/qwen2");
    let golden_bytes = std::fs::read(model.join("golden.safetensors")).unwrap();
    let golden = safetensors::SafeTensors::deserialize(&golden_bytes).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("golden.json")).unwrap()).unwrap();
    let ids: Vec<String> = json["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect();
    let want = f32s(&golden, "logits");
    let ids = ids.join(",");
    for engine in [&[][..], &["--reference"][..]] {
        let out = dir.path().join("l.safetensors");
        let mut args = vec![
            "logits",
            model.to_str().unwrap(),
            "--ids",
            &ids,
            "-o",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(engine);
        let (ok, _, err) = herd(&args);
        assert!(ok, "{err}");
        let bytes = std::fs::read(&out).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(
            st.tensor("logits").unwrap().shape(),
            &[want.len() / 384, 384]
        );
        let got = f32s(&st, "logits");
        let d = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(d < 1e-4, "{engine:?}: max |Δ| {d}");
    }
}

#[test]
fn logits_by_text_tokenizes_with_the_models_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let model = shared().join("golden/hf-tiny/llama");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("golden.json")).unwrap()).unwrap();
    let out = dir.path().join("l.safetensors");
    let (ok, _, err) = herd(&[
        "logits",
        model.to_str().unwrap(),
        "--text",
        json["text"].as_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let bytes = std::fs::read(&out).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let ids: Vec<u64> = st
        .tensor("input_ids")
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let want: Vec<u64> = json["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(ids, want);
}

#[test]
fn info_describes_the_model() {
    let (ok, out, err) = herd(&[
        "info",
        shared().join("golden/hf-tiny/gemma2").to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["architecture"], "gemma2");
    assert_eq!(v["layers"], 2);
    assert_eq!(v["sliding_window"], serde_json::json!([8, null]));
    assert_eq!(v["final_softcap"], 30.0);
    assert_eq!(v["chat_template"], true);
    let (ok, out, _) = herd(&[
        "info",
        shared()
            .join("models/stories260K/stories260K.gguf")
            .to_str()
            .unwrap(),
    ]);
    assert!(ok);
    assert!(
        out.contains("GGUF v3") && out.contains("F32 ×48") && out.contains("context length  2048"),
        "{out}"
    );
}

#[test]
fn bench_prints_a_table_with_both_tests() {
    let model = shared().join("models/stories260K/stories260K.gguf");
    let (ok, out, err) = herd(&[
        "bench",
        model.to_str().unwrap(),
        "-p",
        "32",
        "-n",
        "16",
        "-r",
        "1",
        "-t",
        "1,2",
    ]);
    assert!(ok, "{err}");
    for needle in [
        "| pp32 |",
        "| tg16 |",
        "| 1 | pp32",
        "| 2 | tg16",
        "resident memory",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in\n{out}");
    }
}

#[test]
fn convert_writes_a_gguf_that_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.gguf");
    let src = shared().join("models/stories260K/stories260K.gguf");
    let (ok, _, err) = herd(&[
        "convert",
        src.to_str().unwrap(),
        "--type",
        "q8_0",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let (ok, info, _) = herd(&["info", out.to_str().unwrap()]);
    assert!(ok);
    assert!(info.contains("Q8_0") && info.contains("F16"), "{info}");
    let (ok, _, err) = herd(&[
        "convert",
        src.to_str().unwrap(),
        "--type",
        "q9_9",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("unknown type 'q9_9'"), "{err}");
}

#[test]
fn a_missing_model_is_a_clear_error() {
    let (ok, _, err) = herd(&["info", "/nonexistent/model.gguf"]);
    assert!(!ok);
    assert!(
        err.contains("/nonexistent/model.gguf") && err.contains("No such file"),
        "{err}"
    );
}

#[test]
fn pulled_names_resolve_and_list_shows_them() {
    // A cache laid out as `herd pull` (and huggingface_hub) leave it.
    let cache = tempfile::tempdir().unwrap();
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let repo = cache.path().join("models--karpathy--tinyllamas");
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("snapshots").join(commit)).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::copy(
        shared().join("models/stories260K/stories260K.gguf"),
        repo.join("blobs/abc"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        "../../blobs/abc",
        repo.join("snapshots").join(commit).join("stories260K.gguf"),
    )
    .unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_herd"))
            .args(args)
            .env("HF_HUB_CACHE", cache.path())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(&["list"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("karpathy/tinyllamas:stories260K.gguf")
            && out.contains("llama")
            && out.contains("F32"),
        "{out}"
    );
    let (ok, out, err) = run(&["info", "karpathy/tinyllamas", "--json"]);
    assert!(ok, "{err}");
    assert!(out.contains("\"architecture\": \"llama\""), "{out}");
    let (ok, _, err) = run(&["info", "karpathy/nothere"]);
    assert!(!ok && err.contains("herd pull karpathy/nothere"), "{err}");
}
