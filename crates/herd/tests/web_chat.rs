//! The web chat page at `/` (crates/herd-server/web/index.html), driven in headless Chromium by
//! tests/web/chat.test.mjs against `herd serve` on stories260K: the page loads with no foreign
//! requests and no console errors, an answer streams in with tokens/s, a greedy answer (temperature
//! 0, fixed seed) equals what the API returns for the same request over two turns and is shown as
//! its Markdown rendering, the stop button and Esc end an answer and the server frees the slot, a
//! new chat starts empty, conversations survive a reload, the Markdown renderer escapes HTML,
//! errors (HTTP, a server killed mid-answer) are shown, and the API key is asked for.
//!
//! Needs node, playwright-core (`npm ci` in tests/web) and Debian's chromium at /usr/bin/chromium
//! (`apt-get install -y --no-install-recommends chromium`); .ci/run installs them. When one is
//! missing the test fails and says how to install it.

mod common;

use common::{root, serve, shared};
use std::path::PathBuf;
use std::process::Command;

/// What the browser test needs, each with how to install it when it is missing.
fn prerequisites() -> Vec<String> {
    let mut missing = vec![];
    let node = Command::new("node")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !node {
        missing.push("node (apt-get install -y --no-install-recommends nodejs npm)".to_string());
    }
    if !root()
        .join("tests/web/node_modules/playwright-core/package.json")
        .exists()
    {
        missing.push("playwright-core (cd tests/web && npm ci)".to_string());
    }
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.exists() {
        missing.push(format!(
            "chromium at {} (apt-get install -y --no-install-recommends chromium, or set CHROMIUM)",
            chromium.display()
        ));
    }
    missing
}

#[test]
fn the_web_chat_works_in_headless_chromium() {
    let missing = prerequisites();
    assert!(
        missing.is_empty(),
        "the web chat test needs {}; .ci/run installs them",
        missing.join(", ")
    );
    let model = shared().join("models/stories260K/stories260K.gguf");
    // Long answers (max tokens ~1500) fit in the context; 4 sequences at once.
    let args: Vec<String> = [
        model.to_str().unwrap(),
        "--template",
        "vicuna-v1.1",
        "--ctx",
        "2048",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let main = serve(&args);
    let mut keyed = args.clone();
    keyed.extend(["--api-key".to_string(), "sk-herd-web".to_string()]);
    let keyed = serve(&keyed);
    let shots = root().join("target");
    let status = Command::new("node")
        .arg(root().join("tests/web/chat.test.mjs"))
        .env("HERD_WEB_URL", &main.url)
        .env("HERD_WEB_KEY_URL", &keyed.url)
        .env("HERD_WEB_KEY", "sk-herd-web")
        .env("HERD_BIN", env!("CARGO_BIN_EXE_herd"))
        .env("HERD_SERVE_ARGS", serde_json::to_string(&args).unwrap())
        .env("HERD_WEB_SHOTS", &shots)
        .status()
        .expect("running node");
    assert!(
        status.success(),
        "the web chat checks failed (see the output above; a screenshot is in {})",
        shots.join("webchat-failure.png").display()
    );
}
