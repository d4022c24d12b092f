//! A small OpenAI-compatible test server (std only, a thread per connection, keep-alive) whose
//! answers are a pure function of the request, and which can misbehave on purpose: answer the
//! first requests with 503 or 429, hold a request longer than the client's timeout, or hold
//! every request after the n-th until released. It counts requests and the most it had in
//! flight at once, and keeps every body it was sent.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

#[derive(Default)]
pub struct State {
    pub requests: usize,
    pub in_flight: usize,
    pub max_in_flight: usize,
    /// Answer the first `fail_first` requests with this status (503 or 429).
    pub fail_first: usize,
    pub fail_status: u16,
    /// Hold the first request this long (longer than the client's timeout).
    pub hold_first: Option<Duration>,
    /// Requests after this many wait until `released`, then are dropped unanswered.
    pub stall_after: Option<usize>,
    pub released: bool,
    /// Requests waiting in a stall.
    pub stalled: usize,
    /// Extra time every request takes (so that concurrent ones overlap).
    pub delay: Duration,
    /// Bodies of the requests that were answered with 200.
    pub bodies: Vec<Value>,
}

pub struct FakeServer {
    pub url: String,
    pub state: Arc<(Mutex<State>, Condvar)>,
}

impl FakeServer {
    pub fn start(init: State) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new((Mutex::new(init), Condvar::new()));
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || serve(conn, st));
            }
        });
        FakeServer { url, state }
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.0.lock().unwrap())
    }

    /// Lets stalled requests (and later ones) through.
    pub fn release(&self) {
        self.with(|s| s.released = true);
        self.state.1.notify_all();
    }
}

/// The number the server "answers" for a prompt: a hash of its text, mod 50.
pub fn answer_for(prompt: &str) -> u64 {
    prompt
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64))
        % 50
}

fn serve(conn: TcpStream, st: Arc<(Mutex<State>, Condvar)>) {
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let (status, reply, hold) = {
            let (m, cv) = &*st;
            let mut s = m.lock().unwrap();
            s.requests += 1;
            let n = s.requests;
            s.in_flight += 1;
            s.max_in_flight = s.max_in_flight.max(s.in_flight);
            if s.stall_after.is_some_and(|k| n > k) && !s.released {
                s.stalled += 1;
                while !s.released {
                    s = cv.wait(s).unwrap();
                }
                // Its client is gone (killed): the request is dropped unanswered.
                s.stalled -= 1;
                s.in_flight -= 1;
                return;
            }
            let hold = if n == 1 { s.hold_first } else { None };
            if n <= s.fail_first {
                (
                    s.fail_status,
                    json!({"error": {"message": "try again"}}),
                    hold,
                )
            } else {
                s.bodies.push(body.clone());
                (200, answer(&path, &body), hold)
            }
        };
        let delay = st.0.lock().unwrap().delay;
        std::thread::sleep(delay + hold.unwrap_or_default());
        st.0.lock().unwrap().in_flight -= 1;
        let text = reply.to_string();
        let extra = if status == 429 {
            "Retry-After: 0\r\n"
        } else {
            ""
        };
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}\r\n",
            text.len()
        );
        if w.write_all(head.as_bytes())
            .and_then(|_| w.write_all(text.as_bytes()))
            .is_err()
        {
            return;
        }
        if hold.is_some() {
            return;
        }
    }
}

fn answer(path: &str, body: &Value) -> Value {
    if path.ends_with("/chat/completions") {
        let text = body["messages"].to_string();
        return json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": format!("Rating: [[{}]]", answer_for(&text) % 10 + 1)}, "finish_reason": "stop"}]});
    }
    let prompt = match &body["prompt"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if body["echo"].as_bool() == Some(true) {
        // One "token" per character of the prompt, each with a log-probability from its
        // position and byte, plus the one new token asked for.
        let chars: Vec<char> = prompt.chars().collect();
        let tokens: Vec<String> = chars
            .iter()
            .map(|c| c.to_string())
            .chain(["!".to_string()])
            .collect();
        let lps: Vec<Value> = (0..tokens.len())
            .map(|i| {
                if i == 0 {
                    Value::Null
                } else {
                    json!(
                        -((chars.get(i).map_or(1, |&c| c as u32 % 7 + 1) + i as u32 % 3) as f64)
                            / 4.0
                    )
                }
            })
            .collect();
        let tops: Vec<Value> = tokens.iter().map(|t| json!({ t.clone(): -0.1 })).collect();
        return json!({"choices": [{"index": 0, "text": format!("{prompt}!"), "logprobs": {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops}, "finish_reason": "length"}]});
    }
    json!({"choices": [{"index": 0, "text": format!(" Let me think.\n#### {}", answer_for(&prompt)), "finish_reason": "stop"}]})
}
