//! The endpoint backend against a misbehaving OpenAI-compatible test server: retries with
//! backoff on 5xx and 429 (honouring Retry-After), no retry on other 4xx, a request held past
//! the timeout abandoned and retried, never more requests in flight than the concurrency
//! bound, answers kept in order, and prompt log-probabilities split at the context's end.

mod common;

use std::time::Duration;

use common::fake_server::{FakeServer, State, answer_for};
use herd_eval::backend::{Backend, Endpoint, GenRequest};
use herd_eval::mc::LlRequest;

fn endpoint(url: &str, concurrency: usize, retries: usize, timeout: Duration) -> Endpoint {
    let mut e = Endpoint::new(url, "fake", None, concurrency, retries, timeout);
    e.backoff = Duration::from_millis(5);
    e
}

fn req(prompt: &str) -> GenRequest {
    GenRequest {
        messages: None,
        prompt: prompt.into(),
        max_tokens: 16,
        stop: vec![],
        temperature: 0.0,
        seed: 1,
        json: None,
    }
}

#[test]
fn server_errors_are_retried_with_backoff() {
    for status in [503, 500, 429] {
        let s = FakeServer::start(State {
            fail_first: 2,
            fail_status: status,
            ..Default::default()
        });
        let mut e = endpoint(&s.url, 1, 3, Duration::from_secs(30));
        let g = e.generate(&[req("Question: 2+2?")]).unwrap();
        assert_eq!(
            g[0].text,
            format!(" Let me think.\n#### {}", answer_for("Question: 2+2?"))
        );
        assert_eq!(s.with(|s| s.requests), 3, "HTTP {status}");
    }
    // Out of retries: the error says how often it tried and what the server said.
    let s = FakeServer::start(State {
        fail_first: 5,
        fail_status: 503,
        ..Default::default()
    });
    let err = endpoint(&s.url, 1, 1, Duration::from_secs(30))
        .generate(&[req("x")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("gave up after 2 tries: HTTP 503"), "{err}");
    assert_eq!(s.with(|s| s.requests), 2);
}

#[test]
fn client_errors_are_not_retried() {
    let s = FakeServer::start(State {
        fail_first: 1,
        fail_status: 400,
        ..Default::default()
    });
    let err = endpoint(&s.url, 1, 5, Duration::from_secs(30))
        .generate(&[req("x")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("HTTP 400"), "{err}");
    assert_eq!(s.with(|s| s.requests), 1);
}

#[test]
fn a_request_past_the_timeout_is_abandoned_and_retried() {
    let s = FakeServer::start(State {
        hold_first: Some(Duration::from_secs(4)),
        ..Default::default()
    });
    let mut e = endpoint(&s.url, 1, 2, Duration::from_millis(500));
    let g = e.generate(&[req("slow")]).unwrap();
    assert!(g[0].text.ends_with(&answer_for("slow").to_string()));
    assert_eq!(s.with(|s| s.requests), 2);
    // Without retries the timeout is the error.
    let s = FakeServer::start(State {
        hold_first: Some(Duration::from_secs(4)),
        ..Default::default()
    });
    let err = endpoint(&s.url, 1, 0, Duration::from_millis(500))
        .generate(&[req("slow")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("gave up after 1 tries"), "{err}");
}

#[test]
fn concurrency_is_bounded_and_order_kept() {
    let s = FakeServer::start(State {
        delay: Duration::from_millis(20),
        ..Default::default()
    });
    let mut e = endpoint(&s.url, 3, 0, Duration::from_secs(30));
    let prompts: Vec<String> = (0..24)
        .map(|i| format!("Question {i}: how many?"))
        .collect();
    let reqs: Vec<GenRequest> = prompts.iter().map(|p| req(p)).collect();
    let g = e.generate(&reqs).unwrap();
    for (p, g) in prompts.iter().zip(&g) {
        assert_eq!(g.text, format!(" Let me think.\n#### {}", answer_for(p)));
        assert_eq!(g.sent["prompt"], p.as_str(), "the request as sent is kept");
    }
    let (n, max) = s.with(|s| (s.requests, s.max_in_flight));
    assert_eq!(n, 24);
    assert!(
        (1..=3).contains(&max),
        "{max} requests in flight with a bound of 3"
    );
}

#[test]
fn prompt_logprobs_are_split_at_the_context() {
    let s = FakeServer::start(State::default());
    let mut e = endpoint(&s.url, 2, 0, Duration::from_secs(30));
    let r = LlRequest {
        context: "Q: pick\nAnswer:".into(),
        continuations: vec![" A".into(), " Bc".into()],
    };
    let (res, sent) = e.loglikelihood(std::slice::from_ref(&r)).unwrap();
    // The test server gives the character at position i (i > 0) log-probability
    // -((c mod 7 + 1) + i mod 3) / 4, one token per character.
    for (j, c) in r.continuations.iter().enumerate() {
        let text: Vec<char> = format!("{}{c}", r.context).chars().collect();
        let want: f64 = (r.context.chars().count()..text.len())
            .map(|i| -(((text[i] as u32 % 7 + 1) + i as u32 % 3) as f64) / 4.0)
            .sum();
        assert!(
            (res[0][j].logprob - want).abs() < 1e-12,
            "{c:?}: {} vs {want}",
            res[0][j].logprob
        );
        assert_eq!(sent[0][j]["continuation_tokens"], c.chars().count());
    }
    let bodies = s.with(|s| s.bodies.clone());
    assert!(
        bodies
            .iter()
            .all(|b| b["echo"] == true && b["max_tokens"] == 1)
    );
}
