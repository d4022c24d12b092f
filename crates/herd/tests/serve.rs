//! `herd serve` as a service: bounded queue (429), client disconnects, graceful shutdown,
//! CORS, body limits, the default bind address.

use std::io::{BufRead, BufReader, Read};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{Server, shared};

fn serve(extra: &[&str]) -> Server {
    let model = shared().join("models/stories260K/stories260K.gguf");
    let mut args = vec![model.to_str().unwrap(), "--ctx", "2048", "-t", "1"];
    args.extend_from_slice(extra);
    common::serve(&args)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent()
}

/// A streaming completion long enough to keep its slot busy.
fn long_stream(url: &str, max_tokens: usize) -> ureq::http::Response<ureq::Body> {
    let body = format!(
        r#"{{"model": "stories260K", "prompt": "Once upon a time", "max_tokens": {max_tokens}, "stream": true, "ignore_eos": true}}"#
    );
    agent()
        .post(&format!("{url}/v1/completions"))
        .header("content-type", "application/json")
        .send(body)
        .unwrap()
}

fn metric(url: &str, name: &str) -> f64 {
    let text = agent()
        .get(&format!("{url}/metrics"))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in\n{text}"))
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_full_queue_answers_429_with_retry_after() {
    let s = serve(&["--parallel", "1", "--max-queue", "1"]);
    let _running = long_stream(&s.url, 1900);
    wait_for("the first request to run", || {
        metric(&s.url, "herd_running_sequences") == 1.0
    });
    let _queued = long_stream(&s.url, 10);
    wait_for("the second request to queue", || {
        metric(&s.url, "herd_queue_depth") == 1.0
    });
    let r = long_stream(&s.url, 10);
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body = r.into_body().read_to_string().unwrap();
    assert!(body.contains("rate_limit_exceeded"), "{body}");
}

#[test]
fn a_client_that_goes_away_frees_its_slot_at_once() {
    let s = serve(&["--parallel", "1"]);
    let r = long_stream(&s.url, 1900);
    let mut reader = BufReader::new(r.into_body().into_reader());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("data: "), "{line}");
    assert_eq!(metric(&s.url, "herd_running_sequences"), 1.0);
    drop(reader);
    wait_for("the slot to be freed", || {
        metric(&s.url, "herd_running_sequences") == 0.0
    });
    assert_eq!(metric(&s.url, "herd_cancelled_total"), 1.0);
    // The freed slot serves the next request.
    let r = agent()
        .post(&format!("{}/v1/completions", s.url))
        .header("content-type", "application/json")
        .send(r#"{"model": "stories260K", "prompt": "Lily", "max_tokens": 5}"#)
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[test]
fn sigterm_finishes_running_streams_then_exits() {
    let mut s = serve(&[]);
    let r = long_stream(&s.url, 300);
    let mut body = BufReader::new(r.into_body().into_reader());
    let mut first = String::new();
    body.read_line(&mut first).unwrap();
    let pid = s.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut rest = String::new();
    body.read_to_string(&mut rest).unwrap();
    assert!(
        rest.trim_end().ends_with("data: [DONE]"),
        "the stream did not finish: …{}",
        &rest[rest.len().saturating_sub(200)..]
    );
    assert!(
        rest.contains("\"finish_reason\":\"length\""),
        "the stream was cut instead of finished"
    );
    let status = s.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn sigterm_cancels_what_outlasts_the_grace_period() {
    // No grace at all: stories260K decodes 1900 tokens in under a second in a release build,
    // so a grace of one second let the stream finish instead of being cancelled.
    let mut s = serve(&["--shutdown-timeout", "0"]);
    let r = long_stream(&s.url, 1900);
    let mut body = BufReader::new(r.into_body().into_reader());
    let mut first = String::new();
    body.read_line(&mut first).unwrap();
    let t0 = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &s.child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let mut rest = String::new();
    let _ = body.read_to_string(&mut rest);
    assert!(
        rest.contains("\"finish_reason\":\"cancelled\""),
        "…{}",
        &rest[rest.len().saturating_sub(300)..]
    );
    assert!(s.child.wait().unwrap().success());
    assert!(t0.elapsed() < Duration::from_secs(15));
}

#[test]
fn cors_is_off_unless_enabled_and_bodies_are_bounded() {
    let s = serve(&["--max-body-mb", "1"]);
    assert!(
        s.url.starts_with("http://127.0.0.1:"),
        "binds 127.0.0.1 by default: {}",
        s.url
    );
    let pre = |url: &str| {
        agent()
            .options(&format!("{url}/v1/chat/completions"))
            .header("origin", "http://example.com")
            .header("access-control-request-method", "POST")
            .call()
            .unwrap()
    };
    assert!(
        pre(&s.url)
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    // Just over the 1 MiB limit. The server answers 413 once it has read 1 MiB and closes the
    // connection, so a client still writing the rest may instead see its write fail (a broken
    // pipe or a reset): both refuse the body. Either way the server goes on serving.
    let big = format!(
        r#"{{"model": "stories260K", "prompt": "{}"}}"#,
        "a".repeat((1 << 20) + (64 << 10))
    );
    match agent()
        .post(&format!("{}/v1/completions", s.url))
        .header("content-type", "application/json")
        .send(big)
    {
        Ok(r) => assert_eq!(r.status().as_u16(), 413),
        Err(ureq::Error::Io(e)) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ),
            "{e}"
        ),
        Err(e) => panic!("{e}"),
    }
    let ok = agent()
        .post(&format!("{}/v1/completions", s.url))
        .header("content-type", "application/json")
        .send(r#"{"model": "stories260K", "prompt": "Lily", "max_tokens": 2}"#)
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    let c = serve(&["--cors", "http://example.com"]);
    let r = pre(&c.url);
    assert_eq!(
        r.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("http://example.com")
    );
}
