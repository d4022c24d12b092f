//! `herd tune`, `herd merge` and `--lora` end to end on stories260K and real Alpaca-format
//! data from `../shared`, against peft and llama.cpp (fixtures from
//! scripts/make_lora_fixtures.sh).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{f32s, herd_output as herd, shared};

fn base() -> String {
    shared()
        .join("models/stories260K/stories260K.gguf")
        .to_string_lossy()
        .into_owned()
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stories_lora")
}

/// A short LoRA run on 120 GPTeacher toolformer examples (Alpaca format, MIT).
fn tune_args(out: &Path) -> Vec<String> {
    let data = shared().join("data/gpteacher/toolformer-similarity-0.6-dataset.json");
    [
        "tune",
        &base(),
        "--data",
        data.to_str().unwrap(),
        "--template",
        "alpaca",
        "--max-examples",
        "120",
        "--val",
        "0.1",
        "--max-steps",
        "60",
        "--batch",
        "2",
        "--lr",
        "5e-3",
        "--eval-every",
        "30",
        "--save-every",
        "4",
        "--seed",
        "5",
        "--threads",
        "1",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The metrics log without its timing fields, one JSON object per step.
fn losses(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            for k in ["tokens_per_second", "elapsed"] {
                o.remove(k);
            }
            v
        })
        .collect()
}

#[test]
fn lora_tuning_lowers_held_out_loss_and_a_killed_run_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));

    let (ok, _, err) = herd(&tune_args(&a).iter().map(|s| s.as_str()).collect::<Vec<_>>());
    assert!(ok, "{err}");
    // "60 steps; held-out loss 5.6175 → 4.2"
    let line = err.lines().find(|l| l.contains("held-out loss")).unwrap();
    let nums: Vec<f64> = line
        .rsplit("held-out loss ")
        .next()
        .unwrap()
        .split(" → ")
        .map(|x| x.trim().parse().unwrap())
        .collect();
    assert!(
        nums[1] < 0.8 * nums[0],
        "held-out loss did not fall: {line}"
    );
    let full = losses(&a);
    assert_eq!(full.len(), 60);
    assert!(a.join("adapter/adapter_model.safetensors").exists());
    assert!(a.join("adapter/herd-lineage.json").exists());
    // The loss curves: one path for training, one (with a point per measurement) held-out.
    let (ok, _, err) = herd(&["tune", "plot", a.to_str().unwrap()]);
    assert!(ok, "{err}");
    let svg = std::fs::read_to_string(a.join("loss.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<path").count(), 2, "{svg}");
    assert_eq!(svg.matches("<circle").count(), 2, "{svg}");
    // The adapter's lineage: stories260K (MIT) and GPTeacher (MIT) allow commercial use.
    let (ok, out, err) = herd(&["license", a.join("adapter").to_str().unwrap(), "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let text = v.to_string();
    assert!(
        text.contains("MIT") && text.contains("toolformer"),
        "{text}"
    );

    // The same run, killed (SIGKILL) as soon as its first checkpoint is written, then resumed.
    // 56 steps remain after that checkpoint: with 16, a run whose poller was starved by the
    // tests beside it once finished before the kill came.
    let mut child = Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(tune_args(&b))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !b.join("checkpoint-4").exists() {
        assert!(t0.elapsed() < Duration::from_secs(600), "no checkpoint");
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !b.join("adapter").exists(),
        "the run finished before it was killed"
    );
    // The kill can land between a checkpoint's rename and the write of `latest`; the resume
    // goes by the checkpoint folders, so it must not need `latest` at all.
    let _ = std::fs::remove_file(b.join("latest"));
    let (ok, _, err) = herd(&["tune", "--resume", b.to_str().unwrap(), "--quiet"]);
    assert!(ok, "{err}");
    assert!(err.contains("resumed from step"), "{err}");
    let resumed = losses(&b);
    assert_eq!(resumed.len(), full.len());
    for (x, y) in full.iter().zip(&resumed) {
        assert_eq!(x, y, "the resumed run differs");
    }
    // And the adapters are the same bytes.
    assert_eq!(
        std::fs::read(a.join("adapter/adapter_model.safetensors")).unwrap(),
        std::fs::read(b.join("adapter/adapter_model.safetensors")).unwrap()
    );
}

#[test]
fn a_herd_adapter_gives_peft_logits_at_run_time_and_merged() {
    let fx_bytes = std::fs::read(fixtures().join("peft_logits.safetensors")).unwrap();
    let fx = safetensors::SafeTensors::deserialize(&fx_bytes).unwrap();
    let ids: Vec<String> = fx
        .tensor("input_ids")
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()).to_string())
        .collect();
    let ids = ids.join(",");
    let want = f32s(&fx, "logits");
    let dir = tempfile::tempdir().unwrap();
    let lora = fixtures();
    let base = base();
    let logits = |extra: &[&str]| -> Vec<f32> {
        let out = dir.path().join("l.safetensors");
        let mut args = vec!["logits", &base, "--ids", &ids, "-o", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        let (ok, _, err) = herd(&args);
        assert!(ok, "{err}");
        let bytes = std::fs::read(&out).unwrap();
        f32s(
            &safetensors::SafeTensors::deserialize(&bytes).unwrap(),
            "logits",
        )
    };
    let max_diff = |a: &[f32], b: &[f32]| {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };
    let plain = logits(&[]);
    assert!(
        max_diff(&plain, &want) > 0.5,
        "the adapter barely changes the logits: the comparison would prove nothing"
    );
    let lora_arg = lora.to_str().unwrap();
    let engine = logits(&["--lora", lora_arg]);
    assert!(
        max_diff(&engine, &want) < 2e-4,
        "{}",
        max_diff(&engine, &want)
    );
    let reference = logits(&["--lora", lora_arg, "--reference"]);
    assert!(
        max_diff(&reference, &want) < 2e-4,
        "{}",
        max_diff(&reference, &want)
    );
}

#[test]
fn a_merged_gguf_generates_llama_cpps_greedy_text_and_so_does_run_time_lora() {
    let fx: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("llama_cpp_merged.json")).unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let merged = dir.path().join("merged.gguf");
    let lora = fixtures();
    let (ok, _, err) = herd(&[
        "merge",
        &base(),
        "--lora",
        lora.to_str().unwrap(),
        "--type",
        "f32",
        "-o",
        merged.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let n = fx["greedy_new_ids"].as_array().unwrap().len().to_string();
    let prompt = fx["prompt"].as_str().unwrap();
    let want = fx["continuation_text"].as_str().unwrap();
    let base = base();
    let merged_s = merged.to_str().unwrap();
    for args in [
        vec!["run", merged_s, prompt],
        vec!["run", &base, prompt, "--lora", lora.to_str().unwrap()],
    ] {
        let mut args = args.clone();
        args.extend(["--temp", "0", "-n", &n, "--ignore-eos"]);
        let (ok, out, err) = herd(&args);
        assert!(ok, "{err}");
        assert_eq!(out.strip_suffix('\n').unwrap(), want, "{args:?}");
    }
    // The base model without the adapter writes something else.
    let (_, out, _) = herd(&[
        "run",
        &base,
        prompt,
        "--temp",
        "0",
        "-n",
        &n,
        "--ignore-eos",
    ]);
    assert_ne!(out.strip_suffix('\n').unwrap(), want);
    // The merged model's lineage names the base and the adapter.
    let (ok, out, err) = herd(&["license", merged_s, "--json"]);
    assert!(ok, "{err}");
    assert!(out.contains("stories260K"), "{out}");
}

#[test]
fn data_inspect_counts_real_data_and_names_every_bad_row() {
    let data = shared().join("data/gpteacher/toolformer-similarity-0.6-dataset.json");
    let (ok, out, err) = herd(&[
        "data",
        "inspect",
        data.to_str().unwrap(),
        "--model",
        &base(),
        "--template",
        "alpaca",
    ]);
    assert!(ok, "{err}");
    // The file's own count (a JSON array of 2,396 Alpaca records) and its MIT licence.
    let records =
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&data).unwrap())
            .unwrap()
            .as_array()
            .unwrap()
            .len();
    assert!(
        out.contains(&format!("rows        {records} usable, 0 skipped")),
        "{out}"
    );
    assert!(out.contains("format      alpaca"), "{out}");
    assert!(
        out.contains("MIT") && out.contains("commercial use allowed"),
        "{out}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        concat!(
            "{\"instruction\": \"Say hi.\", \"input\": \"\", \"output\": \"Hi!\"}\n",
            "{\"instruction\": \"Broken\", \"output\": \n",
            "{\"instruction\": \"No answer\", \"input\": \"\"}\n",
            "{\"instruction\": \"Empty\", \"input\": \"\", \"output\": \"\"}\n",
            "{\"instruction\": 5, \"input\": \"\", \"output\": \"x\"}\n",
        ),
    )
    .unwrap();
    let (ok, out, err) = herd(&["data", "inspect", bad.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("1 usable, 4 skipped"), "{out}");
    for (line, why) in [
        (2, "not valid JSON"),
        (3, "missing field 'output'"),
        (4, "empty answer"),
        (5, "field 'instruction' should be a string"),
    ] {
        assert!(
            out.lines()
                .any(|l| l.contains(&format!("bad.jsonl:{line} ")) && l.contains(why)),
            "line {line}: {out}"
        );
    }
    // Training reports the skipped rows; --strict stops at the first, naming it.
    let run = dir.path().join("run");
    let (ok, _, err) = herd(&[
        "tune",
        &base(),
        "--data",
        bad.to_str().unwrap(),
        "--template",
        "alpaca",
        "--strict",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("bad.jsonl:2") && err.contains("not valid JSON"),
        "{err}"
    );
}
