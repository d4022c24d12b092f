//! `herd serve` against the official `openai` Python client (tests/openai/check_client.py):
//! chat and completions, streaming and not, n=2, logprobs, stop strings, seeds, JSON mode,
//! a tool call round trip, embeddings, errors, batched = alone. Needs `pip install openai`
//! (.ci/run does it).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn shared() -> PathBuf {
    match std::env::var_os("HERD_SHARED") {
        Some(p) => PathBuf::from(p),
        None => root().join("../shared"),
    }
}

struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `herd serve` on a free port and waits for its "listening on" line.
fn serve(args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_herd"))
        .arg("serve")
        .args(args)
        .args(["--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Server(child, url)
}

#[test]
fn the_official_openai_client_works_against_herd_serve() {
    let ok = Command::new("python3")
        .args(["-c", "import openai"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "this test needs python3 with the openai package: pip install openai (.ci/run installs it)"
    );
    let stories = serve(&[
        shared()
            .join("models/stories260K/stories260K.gguf")
            .to_str()
            .unwrap(),
        "--template",
        "vicuna-v1.1",
        "--api-key",
        "sk-herd-test",
        "--parallel",
        "8",
        "--ctx",
        "1024",
    ]);
    let tiny = serve(&[shared().join("golden/hf-tiny/qwen2").to_str().unwrap()]);
    let status = Command::new("python3")
        .arg(root().join("tests/openai/check_client.py"))
        .env("HERD_STORIES_URL", &stories.1)
        .env("HERD_TINY_URL", &tiny.1)
        .env(
            "HERD_STORY_FIXTURE",
            root().join(
                "crates/herd-model/tests/fixtures/llama_cpp/stories260K-F32-once_upon_a_time.json",
            ),
        )
        .status()
        .unwrap();
    assert!(
        status.success(),
        "the openai client checks failed (see the output above)"
    );
}
