//! The `herd` binary end to end: each command on real models from `../shared`.

use std::path::PathBuf;
use std::process::Command;

mod common;
use common::{f32s, herd_output as herd, shared};

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
        "-d",
        "0,40",
    ]);
    assert!(ok, "{err}");
    for needle in [
        "| pp32 |",
        "| tg16 |",
        "| 1 | pp32",
        "| 2 | tg16",
        "| 1 | pp32 @ d40 |",
        "| 2 | tg16 @ d40 |",
        "resident memory",
        // The kernels the numbers were taken with (AVX2 on every CI machine so far).
        &format!("\nkernels: {}\n", herd_kernels::simd::kernels()),
    ] {
        assert!(out.contains(needle), "missing {needle:?} in\n{out}");
    }
}

#[test]
fn a_reader_that_has_gone_ends_the_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    // The pipe's read end is closed before herd starts, so its first write meets no reader,
    // as `herd bench MODEL | head -1` does once head has its line.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let model = shared().join("models/stories260K/stories260K.gguf");
    let out = Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(["tokenize", model.to_str().unwrap(), "Once upon a time"])
        .stdout(writer)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    // 13 is SIGPIPE on Linux and the BSDs.
    assert_eq!(out.status.signal(), Some(13), "{:?} {err}", out.status);
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

fn fixture(name: &str) -> serde_json::Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../herd-model/tests/fixtures/llama_cpp")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn run_writes_llama_cpps_greedy_story() {
    let model = shared().join("models/stories260K/stories260K.gguf");
    for name in ["park", "bird", "once_upon_a_time"] {
        let fx = fixture(&format!("stories260K-F32-{name}.json"));
        let n = fx["greedy_new_ids"].as_array().unwrap().len().to_string();
        let prompt = fx["prompt"].as_str().unwrap();
        let (ok, out, err) = herd(&[
            "run",
            model.to_str().unwrap(),
            prompt,
            "--temp",
            "0",
            "-n",
            &n,
            "--ignore-eos",
        ]);
        assert!(ok, "{err}");
        // llama.cpp's text is the concatenation of its pieces; herd adds a final newline.
        assert_eq!(
            out.strip_suffix('\n').unwrap(),
            fx["continuation_text"].as_str().unwrap(),
            "'{name}'"
        );
    }
}

#[test]
fn run_reads_the_prompt_from_stdin() {
    use std::io::Write;
    let model = shared().join("models/stories260K/stories260K.gguf");
    let mut child = Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(["run", model.to_str().unwrap(), "--temp", "0", "-n", "12"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Once upon a time")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(", there was a little girl"));
}

#[test]
fn a_stop_string_split_across_tokens_ends_the_text_before_it() {
    let model = shared().join("models/stories260K/stories260K.gguf");
    let fx = fixture("stories260K-F32-once_upon_a_time.json");
    let full = fx["continuation_text"].as_str().unwrap();
    // "irl nam" starts inside one token ("girl") and ends inside another (" named").
    let stop = "irl nam";
    let at = full.find(stop).unwrap();
    let (ok, out, err) = herd(&[
        "run",
        model.to_str().unwrap(),
        "Once upon a time",
        "--temp",
        "0",
        "-n",
        "100",
        "--stop",
        "xyz",
        "--stop",
        stop,
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.strip_suffix('\n').unwrap(), &full[..at]);
}

#[test]
fn a_seed_makes_sampled_runs_identical() {
    let model = shared().join("models/stories260K/stories260K.gguf");
    let m = model.to_str().unwrap();
    let run = |seed: &str| {
        herd(&[
            "run",
            m,
            "Once upon a time",
            "--temp",
            "1.0",
            "-n",
            "60",
            "--seed",
            seed,
        ])
        .1
    };
    let a = run("42");
    assert_eq!(a, run("42"));
    assert_ne!(a, run("43"));
}

#[test]
fn a_prompt_longer_than_the_context_is_refused_unless_truncation_is_asked_for() {
    let model = shared().join("models/stories260K/stories260K.gguf");
    let m = model.to_str().unwrap();
    let long = "Once upon a time there was a dog. ".repeat(20);
    let (ok, _, err) = herd(&["run", m, &long, "-c", "64", "-n", "4"]);
    assert!(
        !ok && err.contains("context holds 64") && err.contains("--truncate left"),
        "{err}"
    );
    let (ok, _, err) = herd(&["run", m, &long, "-c", "64", "-n", "4", "--truncate", "left"]);
    assert!(ok, "{err}");
    assert!(err.contains("tokens were cut to fit the context"), "{err}");
}

#[test]
fn tokenize_matches_llama_cpp_ids_and_reads_vocabulary_only_files() {
    let model = shared().join("models/stories260K/stories260K.gguf");
    let (ok, out, _) = herd(&[
        "tokenize",
        model.to_str().unwrap(),
        "Once upon a time",
        "--ids",
    ]);
    assert!(ok);
    assert_eq!(out.trim(), "1,403,407,261,378");
    let (_, out, _) = herd(&[
        "tokenize",
        model.to_str().unwrap(),
        "Once upon a time",
        "--ids",
        "--no-bos",
    ]);
    assert_eq!(out.trim(), "403,407,261,378");
    let vocab = shared().join("models/tokenizers/gguf-vocab/ggml-vocab-llama-bpe.gguf");
    let (ok, out, err) = herd(&[
        "tokenize",
        vocab.to_str().unwrap(),
        "<|begin_of_text|>Hello",
        "--json",
        "--no-bos",
        "--special",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["piece"], "<|begin_of_text|>");
    assert_eq!(v[1]["piece"], "Hello");
    let (_, out, _) = herd(&[
        "tokenize",
        vocab.to_str().unwrap(),
        "<|begin_of_text|>",
        "--json",
        "--no-bos",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        v.as_array().unwrap().len() > 1,
        "without --special the text stays text: {out}"
    );
}

#[test]
fn chat_drives_the_models_chatml_template_turn_by_turn() {
    use std::io::Write;
    let model = shared().join("golden/hf-tiny/qwen2");
    let mut child = Command::new(env!("CARGO_BIN_EXE_herd"))
        .args([
            "chat",
            model.to_str().unwrap(),
            "--temp",
            "0",
            "-n",
            "6",
            "--show-prompt",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"/system Be terse.\nHello\nHow are you?\n/reset\nAgain\n/exit\nnever read\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    let prompts: Vec<&str> = stderr
        .split("--- prompt ---\n")
        .skip(1)
        .map(|p| p.split("\n--- end of prompt ---").next().unwrap())
        .collect();
    assert_eq!(prompts.len(), 3, "{stderr}");
    let first = "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n";
    assert_eq!(prompts[0], first);
    // The second turn carries the first answer, as the model wrote it.
    let answer = stdout.lines().next().unwrap();
    assert_eq!(
        prompts[1],
        format!(
            "{first}{answer}<|im_end|>\n<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant\n"
        )
    );
    // After /reset only the system prompt remains.
    assert_eq!(
        prompts[2],
        "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nAgain<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn ctrl_c_stops_the_answer_not_the_chat() {
    use std::io::Write;
    let model = shared().join("models/stories260K/stories260K.gguf");
    let mut child = Command::new(env!("CARGO_BIN_EXE_herd"))
        .args([
            "chat",
            model.to_str().unwrap(),
            "--template",
            "alpaca",
            "-n",
            "-1",
            "--ignore-eos",
            "-t",
            "1",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"Tell me a long story.\n").unwrap();
    stdin.flush().unwrap();
    // Wait until the answer is streaming, then interrupt it.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = [0u8; 1];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // The chat goes on: the next message gets an answer too.
    stdin.write_all(b"/system Short.\n/exit\n").unwrap();
    drop(stdin);
    // As bytes: the first byte read may have split a character (the story is sampled).
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut stdout, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("(stopped)") && stderr.contains("(system prompt set)"),
        "{stderr}"
    );
}
