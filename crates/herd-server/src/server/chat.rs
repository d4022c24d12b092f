//! `/v1/chat/completions`: messages through the chat template, tool calls, streaming.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use herd_model::template::RenderOptions;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{
    AppState, SseResponse, check_model, collect, finish_name, now, parse_body, sse, submit, usage,
};
use crate::request::{ApiError, COMMON_FIELDS, Common, Fields, common, response_format};
use crate::scheduler::{Event, JobParams, TokenLogprob};
use crate::tools::{self, Choice, Tool};
fn chat_logprob(t: &TokenLogprob) -> Value {
    let entry =
        |text: &str, lp: f32| json!({"token": text, "logprob": lp, "bytes": text.as_bytes()});
    let mut e = entry(&t.text, t.logprob);
    e["top_logprobs"] = Value::Array(t.top.iter().map(|(_, text, lp)| entry(text, *lp)).collect());
    e
}

/// Messages as the template wants them: content parts joined, `developer` as `system`.
fn normalize_messages(v: &Value) -> Result<Vec<Value>, ApiError> {
    let list = v
        .as_array()
        .ok_or_else(|| ApiError::bad("'messages' must be a list", Some("messages")))?;
    if list.is_empty() {
        return Err(ApiError::bad(
            "'messages' must not be empty",
            Some("messages"),
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let f = Fields::new(m, &["role", "content", "name", "tool_calls", "tool_call_id", "refusal", "reasoning_content"], "")
                .map_err(|e| ApiError::bad(format!("messages[{i}]: {}", e.message), Some("messages")))?;
            let role = f.str("role")?.ok_or_else(|| ApiError::bad(format!("messages[{i}].role is required"), Some("messages")))?;
            let role = match role {
                "system" | "user" | "assistant" | "tool" => role,
                "developer" => "system",
                other => return Err(ApiError::bad(format!("messages[{i}].role '{other}' is not system, developer, user, assistant or tool"), Some("messages"))),
            };
            let mut out = m.clone();
            out["role"] = json!(role);
            if let Some(Value::Array(parts)) = m.get("content") {
                let mut text = String::new();
                for (j, p) in parts.iter().enumerate() {
                    match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
                        (Some("text"), Some(t)) => text.push_str(t),
                        (kind, _) => {
                            return Err(ApiError::bad(format!("messages[{i}].content[{j}]: part type {kind:?} is not supported (text only)"), Some("messages")));
                        }
                    }
                }
                out["content"] = json!(text);
            }
            if let Some(Value::Array(calls)) = m.get("tool_calls") {
                // Templates expect the arguments as an object.
                let calls: Vec<Value> = calls
                    .iter()
                    .map(|c| {
                        let mut c = c.clone();
                        if let Some(Value::String(a)) = c.pointer("/function/arguments").cloned() {
                            c["function"]["arguments"] = serde_json::from_str(&a).unwrap_or(Value::String(a));
                        }
                        c
                    })
                    .collect();
                out["tool_calls"] = Value::Array(calls);
            }
            Ok(out)
        })
        .collect()
}

/// The rendered and tokenized prompt of a conversation.
fn chat_prompt(st: &AppState, messages: &[Value], tools: &[Tool]) -> Result<Vec<u32>, ApiError> {
    let template = st.template.as_ref().ok_or_else(|| {
        ApiError::bad("This model has no chat template; start the server with --template NAME or use /v1/completions.", Some("messages"))
    })?;
    let token_text = |id: Option<u32>| id.and_then(|i| st.tok.inner.id_to_token(i));
    let opts = RenderOptions {
        add_generation_prompt: true,
        tools: (!tools.is_empty()).then(|| {
            tools.iter().map(|t| json!({"type": "function", "function": {"name": t.name, "parameters": t.parameters}})).collect()
        }),
        bos_token: token_text(st.tok.bos),
        eos_token: token_text(st.tok.eos.first().copied()),
        ..Default::default()
    };
    let text = template
        .render(messages, &opts)
        .map_err(|e| ApiError::bad(format!("chat template: {e}"), Some("messages")))?;
    let mut ids = st
        .tok
        .encode(&text, false, true)
        .map_err(|e| ApiError::bad(e.to_string(), Some("messages")))?;
    if let Some(b) = st
        .tok
        .bos
        .filter(|_| st.tok.add_bos && ids.first() != st.tok.bos.as_ref())
    {
        ids.insert(0, b);
    }
    Ok(ids)
}

const CHAT_FIELDS: &[&str] = &[
    "messages",
    "max_completion_tokens",
    "logprobs",
    "top_logprobs",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
];

pub(super) async fn chat(
    State(st): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let v = parse_body(&body)?;
    let known: Vec<&str> = COMMON_FIELDS.iter().chain(CHAT_FIELDS).copied().collect();
    let f = Fields::new(&v, &known, "")?;
    let mut c: Common = common(&f, st.sched.config.slots)?;
    check_model(&st, &c.model)?;
    c.max_tokens = match (
        f.uint("max_completion_tokens", u32::MAX as u64)?,
        f.uint("max_tokens", u32::MAX as u64)?,
    ) {
        (Some(m), _) | (None, Some(m)) => Some(m as usize),
        (None, None) => None,
    };
    if c.max_tokens == Some(0) {
        return Err(ApiError::bad(
            "'max_tokens' must be at least 1",
            Some("max_tokens"),
        ));
    }
    let logprobs = f.bool("logprobs")?.unwrap_or(false);
    let top = f.uint("top_logprobs", 20)?;
    if top.is_some() && !logprobs {
        return Err(ApiError::bad(
            "'top_logprobs' needs 'logprobs': true",
            Some("top_logprobs"),
        ));
    }
    let messages = normalize_messages(
        f.get("messages")
            .ok_or_else(|| ApiError::bad("'messages' is required", Some("messages")))?,
    )?;
    let (tools, tool_choice) = tools::parse(f.get("tools"), f.get("tool_choice"))?;
    let _ = f.bool("parallel_tool_calls")?;
    let mut json_schema = response_format(&f)?;
    let forced = tools::forced_schema(&tools, &tool_choice);
    if forced.is_some() {
        if json_schema.is_some() {
            return Err(ApiError::bad(
                "'response_format' and a forced tool_choice cannot be combined",
                Some("response_format"),
            ));
        }
        json_schema = forced;
    }
    let prompt = chat_prompt(
        &st,
        &messages,
        if tool_choice == Choice::None {
            &[]
        } else {
            &tools
        },
    )?;
    let max_tokens = c
        .max_tokens
        .or(Some(st.context.saturating_sub(prompt.len()).max(1)));
    let params = JobParams {
        max_tokens,
        stop: c.stop.clone(),
        sampler: c.sampler.clone(),
        ignore_eos: f.bool("ignore_eos")?.unwrap_or(false),
        logprobs: logprobs.then_some(top.unwrap_or(0) as usize),
        prompt_logprobs: None,
        json: json_schema,
        embed: false,
    };
    let n = c.n;
    let (rx, _cancel) = submit(&st, prompt, n, params)?;
    let id = format!("chatcmpl-{}", tools::random_id(24));
    let created = now();
    // With tools in play the answer may turn out to be a call: it is sent whole at the end.
    let tool_mode = !tools.is_empty() && tool_choice != Choice::None;
    let forced_call = matches!(tool_choice, Choice::Required | Choice::Named(_));
    if c.stream {
        return Ok(chat_stream(
            st,
            rx,
            id,
            created,
            n,
            c.include_usage,
            logprobs,
            tool_mode.then_some((tools, forced_call)),
        )
        .into_response());
    }
    let out = collect(rx, n).await?;
    let completion: usize = out.choices.iter().map(|c| c.completion_tokens).sum();
    let choices: Vec<Value> = out
        .choices
        .iter()
        .enumerate()
        .map(|(i, ch)| {
            let calls = if tool_mode { tool_calls(&ch.text, &tools, forced_call) } else { vec![] };
            let message = if calls.is_empty() {
                json!({"role": "assistant", "content": ch.text})
            } else {
                json!({"role": "assistant", "content": Value::Null, "tool_calls": calls})
            };
            json!({
                "index": i,
                "message": message,
                "logprobs": if logprobs { json!({"content": ch.tokens.iter().map(chat_logprob).collect::<Vec<_>>()}) } else { Value::Null },
                "finish_reason": finish_name(ch.finish, !calls.is_empty()),
            })
        })
        .collect();
    Ok(axum::Json(json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": st.opts.model_name,
        "system_fingerprint": concat!("herd-", env!("CARGO_PKG_VERSION")),
        "choices": choices,
        "usage": usage(out.prompt_tokens, completion, out.cached_tokens),
    }))
    .into_response())
}

/// The tool calls in a finished answer: the forced call's JSON, or calls found in free text.
fn tool_calls(text: &str, tools: &[Tool], forced: bool) -> Vec<Value> {
    if forced {
        return match serde_json::from_str::<Value>(text) {
            Ok(v) => match (v.get("name").and_then(Value::as_str), v.get("arguments")) {
                (Some(name), Some(args)) => vec![tools::call_json(0, name, args)],
                _ => vec![],
            },
            Err(_) => vec![],
        };
    }
    tools::find_calls(text, tools)
        .iter()
        .enumerate()
        .map(|(i, (n, a))| tools::call_json(i, n, a))
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn chat_stream(
    st: Arc<AppState>,
    rx: mpsc::UnboundedReceiver<Event>,
    id: String,
    created: u64,
    n: usize,
    include_usage: bool,
    logprobs: bool,
    tools: Option<(Vec<Tool>, bool)>,
) -> SseResponse {
    let model = st.opts.model_name.clone();
    let chunk = move |choices: Value, usage: Option<Value>| {
        let mut c = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                           "system_fingerprint": concat!("herd-", env!("CARGO_PKG_VERSION")), "choices": choices});
        if let Some(u) = usage {
            c["usage"] = u;
        }
        c
    };
    struct S {
        rx: mpsc::UnboundedReceiver<Event>,
        started: Vec<bool>,
        buffered: Vec<String>,
        completion: usize,
        queue: std::collections::VecDeque<Value>,
        ended: bool,
    }
    let state = S {
        rx,
        started: vec![false; n],
        buffered: vec![String::new(); n],
        completion: 0,
        queue: Default::default(),
        ended: false,
    };
    let s = stream::unfold(state, move |mut s| {
        let chunk = chunk.clone();
        let tools = tools.clone();
        async move {
            loop {
                if let Some(v) = s.queue.pop_front() {
                    return Some((v, s));
                }
                if s.ended {
                    return None;
                }
                let Some(ev) = s.rx.recv().await else {
                    s.ended = true;
                    continue;
                };
                match ev {
                    Event::Token {
                        choice,
                        text,
                        logprob,
                        ..
                    } => {
                        if choice >= n {
                            continue;
                        }
                        let mut delta = json!({});
                        if !s.started[choice] {
                            s.started[choice] = true;
                            delta["role"] = json!("assistant");
                        }
                        if tools.is_some() {
                            s.buffered[choice].push_str(&text);
                            if delta.get("role").is_none() {
                                continue;
                            }
                            delta["content"] = json!("");
                        } else {
                            delta["content"] = json!(text);
                        }
                        let lp = match (logprobs, logprob) {
                            (true, Some(t)) => json!({"content": [chat_logprob(&t)]}),
                            _ => Value::Null,
                        };
                        s.queue.push_back(chunk(json!([{"index": choice, "delta": delta, "logprobs": lp, "finish_reason": null}]), None));
                    }
                    Event::Finished {
                        choice,
                        finish,
                        completion_tokens,
                    } => {
                        s.completion += completion_tokens;
                        let mut is_call = false;
                        if let Some((tools, forced)) = &tools {
                            let text = std::mem::take(&mut s.buffered[choice]);
                            let calls = tool_calls(&text, tools, *forced);
                            let delta = if calls.is_empty() {
                                json!({"content": text})
                            } else {
                                json!({"tool_calls": calls})
                            };
                            is_call = !calls.is_empty();
                            s.queue.push_back(chunk(json!([{"index": choice, "delta": delta, "logprobs": null, "finish_reason": null}]), None));
                        }
                        s.queue.push_back(chunk(json!([{"index": choice, "delta": {}, "logprobs": null, "finish_reason": finish_name(Some(finish), is_call)}]), None));
                    }
                    Event::Done {
                        prompt_tokens,
                        cached_tokens,
                    } => {
                        if include_usage {
                            s.queue.push_back(chunk(
                                json!([]),
                                Some(usage(prompt_tokens, s.completion, cached_tokens)),
                            ));
                        }
                        s.ended = true;
                    }
                    Event::Error(e) => {
                        s.queue.push_back(json!({"error": {"message": e, "type": "server_error", "param": null, "code": "engine_error"}}));
                        s.ended = true;
                    }
                    Event::Prompt(_) | Event::Embedding(_) => {}
                }
            }
        }
    });
    sse(s)
}
