//! `herd serve` against the official `openai` Python client (tests/openai/check_client.py):
//! chat and completions, streaming and not, n=2, logprobs, stop strings, seeds, JSON mode,
//! a tool call round trip, embeddings, errors, batched = alone. Needs `pip install openai`
//! (.ci/run does it).

mod common;

use common::{root, serve, shared};
use std::process::Command;

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
        .env("HERD_STORIES_URL", &stories.url)
        .env("HERD_TINY_URL", &tiny.url)
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
