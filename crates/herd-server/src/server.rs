//! Routes, authentication, limits and the handlers of the OpenAI API.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::stream::{self, Stream};
use herd_generate::FinishReason;
use herd_model::template::{ChatTemplate, RenderOptions};
use herd_model::tokenizer::Tokenizer;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::request::{ApiError, COMMON_FIELDS, Common, Fields, common, response_format};
use crate::scheduler::{Event, Job, JobParams, Scheduler, TokenLogprob, TokenPieces};
use crate::tools::{self, Choice, Tool};

pub struct ServerOptions {
    pub model_name: String,
    pub api_key: Option<String>,
    /// Allowed CORS origins (`*` for any); empty: CORS off.
    pub cors: Vec<String>,
    pub max_body_bytes: usize,
    /// Requests waiting for a slot before new ones get 429.
    pub max_queue: usize,
    pub shutdown_timeout: Duration,
}

pub struct AppState {
    pub sched: Scheduler,
    pub tok: Arc<Tokenizer>,
    pub pieces: TokenPieces,
    pub template: Option<ChatTemplate>,
    pub opts: ServerOptions,
    pub context: usize,
    pub created: u64,
    /// Cancel flags of the jobs in flight, for shutdown.
    pub cancels: Mutex<Vec<Weak<AtomicBool>>>,
    pub responses: Mutex<std::collections::BTreeMap<u16, u64>>,
    pub http_requests: AtomicU64,
}

impl AppState {
    fn count(&self, status: u16) {
        if let Ok(mut r) = self.responses.lock() {
            *r.entry(status).or_default() += 1;
        }
    }

    /// Cancels every job in flight (shutdown after the grace period).
    pub fn cancel_all(&self) {
        if let Ok(c) = self.cancels.lock() {
            for w in c.iter() {
                if let Some(flag) = w.upgrade() {
                    flag.store(true, Ordering::SeqCst);
                }
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let body = json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}});
        let mut r = (status, axum::Json(body)).into_response();
        if self.status == 429 {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    let mut app = Router::new()
        .route("/", get(page))
        .route("/health", get(health))
        .merge(api)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_responses,
        ))
        .layer(DefaultBodyLimit::max(state.opts.max_body_bytes));
    if !state.opts.cors.is_empty() {
        use tower_http::cors::{AllowOrigin, Any, CorsLayer};
        let origins = if state.opts.cors.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(state.opts.cors.iter().filter_map(|o| o.parse().ok()))
        };
        app = app.layer(
            CorsLayer::new()
                .allow_origin(origins)
                .allow_methods(Any)
                .allow_headers(Any),
        );
    }
    app.with_state(state)
}

async fn count_responses(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    st.http_requests.fetch_add(1, Ordering::Relaxed);
    let r = next.run(req).await;
    st.count(r.status().as_u16());
    r
}

/// Bearer-token check in constant time (no early exit on the first differing byte).
async fn auth(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    if let Some(key) = &st.opts.api_key {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(given.as_bytes(), key.as_bytes()) {
            return ApiError {
                status: 401,
                message: "Incorrect API key provided (send it as 'Authorization: Bearer KEY')."
                    .into(),
                param: None,
                code: "invalid_api_key",
                kind: "invalid_request_error",
            }
            .into_response();
        }
    }
    next.run(req).await
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() != b.len()) as u8;
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff);
    }
    diff == 0
}

async fn page() -> Html<&'static str> {
    Html(include_str!("../web/index.html"))
}

async fn health(State(st): State<Arc<AppState>>) -> axum::Json<Value> {
    axum::Json(
        json!({"status": "ok", "model": st.opts.model_name, "running": st.sched.stats.running.load(Ordering::Relaxed), "queued": st.sched.stats.queued.load(Ordering::Relaxed)}),
    )
}

async fn not_found() -> ApiError {
    ApiError {
        status: 404,
        message: "Unknown path.".into(),
        param: None,
        code: "not_found",
        kind: "invalid_request_error",
    }
}

fn model_json(st: &AppState) -> Value {
    json!({"id": st.opts.model_name, "object": "model", "created": st.created, "owned_by": "herd", "context_length": st.context})
}

async fn models(State(st): State<Arc<AppState>>) -> axum::Json<Value> {
    axum::Json(json!({"object": "list", "data": [model_json(&st)]}))
}

async fn model(
    State(st): State<Arc<AppState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    check_model(&st, &id)?;
    Ok(axum::Json(model_json(&st)))
}

fn check_model(st: &AppState, name: &str) -> Result<(), ApiError> {
    if name == st.opts.model_name {
        return Ok(());
    }
    Err(ApiError {
        status: 404,
        message: format!(
            "The model '{name}' does not exist; this server serves '{}'.",
            st.opts.model_name
        ),
        param: Some("model".into()),
        code: "model_not_found",
        kind: "invalid_request_error",
    })
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad(format!("The request body is not valid JSON: {e}"), None))
}

/// Queues a job after the checks every endpoint shares; returns its event stream.
fn submit(
    st: &AppState,
    prompt: Vec<u32>,
    n: usize,
    params: JobParams,
) -> Result<(mpsc::UnboundedReceiver<Event>, Arc<AtomicBool>), ApiError> {
    if prompt.is_empty() {
        return Err(ApiError::bad("The prompt is empty.", Some("prompt")));
    }
    let want = prompt.len() + params.max_tokens.unwrap_or(1).max(1);
    if want > st.context {
        return Err(ApiError {
            code: "context_length_exceeded",
            ..ApiError::bad(
                format!(
                    "This model's maximum context length is {} tokens. However, you requested {want} tokens ({} in the prompt, {} for the completion). Shorten the prompt or lower max_tokens.",
                    st.context,
                    prompt.len(),
                    params.max_tokens.unwrap_or(1)
                ),
                Some("messages"),
            )
        });
    }
    if st.sched.stats.queued.load(Ordering::SeqCst) >= st.opts.max_queue {
        return Err(ApiError {
            status: 429,
            message: format!(
                "The server is busy ({} requests queued); retry shortly.",
                st.opts.max_queue
            ),
            param: None,
            code: "rate_limit_exceeded",
            kind: "requests",
        });
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let cancel = Arc::new(AtomicBool::new(false));
    if let Ok(mut c) = st.cancels.lock() {
        c.retain(|w| w.strong_count() > 0);
        c.push(Arc::downgrade(&cancel));
    }
    let job = Job {
        prompt,
        n,
        params,
        events: tx,
        cancel: cancel.clone(),
        queued: Instant::now(),
    };
    if !st.sched.submit(job) {
        return Err(ApiError {
            status: 503,
            message: "The engine has stopped.".into(),
            param: None,
            code: "unavailable",
            kind: "server_error",
        });
    }
    Ok((rx, cancel))
}

/// What a finished choice collected.
#[derive(Default, Clone)]
struct ChoiceOut {
    text: String,
    tokens: Vec<TokenLogprob>,
    finish: Option<FinishReason>,
    completion_tokens: usize,
}

struct Collected {
    choices: Vec<ChoiceOut>,
    prompt_logprobs: Vec<Option<TokenLogprob>>,
    prompt_tokens: usize,
    cached_tokens: usize,
    embedding: Option<Vec<f32>>,
}

/// Waits for a whole job (non-streaming responses).
async fn collect(mut rx: mpsc::UnboundedReceiver<Event>, n: usize) -> Result<Collected, ApiError> {
    let mut c = Collected {
        choices: vec![ChoiceOut::default(); n],
        prompt_logprobs: vec![],
        prompt_tokens: 0,
        cached_tokens: 0,
        embedding: None,
    };
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Prompt(lp) => c.prompt_logprobs = lp,
            Event::Token {
                choice,
                text,
                logprob,
                ..
            } => {
                if let Some(ch) = c.choices.get_mut(choice) {
                    ch.text.push_str(&text);
                    if let Some(lp) = logprob {
                        ch.tokens.push(lp);
                    }
                }
            }
            Event::Finished {
                choice,
                finish,
                completion_tokens,
            } => {
                if let Some(ch) = c.choices.get_mut(choice) {
                    ch.finish = Some(finish);
                    ch.completion_tokens = completion_tokens;
                }
            }
            Event::Embedding(e) => c.embedding = Some(e),
            Event::Done {
                prompt_tokens,
                cached_tokens,
            } => {
                c.prompt_tokens = prompt_tokens;
                c.cached_tokens = cached_tokens;
                return Ok(c);
            }
            Event::Error(e) => {
                return Err(ApiError {
                    status: 500,
                    message: e,
                    param: None,
                    code: "engine_error",
                    kind: "server_error",
                });
            }
        }
    }
    Err(ApiError {
        status: 503,
        message: "The request was cancelled (the server is shutting down).".into(),
        param: None,
        code: "cancelled",
        kind: "server_error",
    })
}

fn usage(prompt: usize, completion: usize, cached: usize) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion, "prompt_tokens_details": {"cached_tokens": cached}})
}

fn finish_name(f: Option<FinishReason>, tool_call: bool) -> Value {
    if tool_call {
        return json!("tool_calls");
    }
    match f {
        Some(f) => json!(f.openai()),
        None => Value::Null,
    }
}

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

async fn chat(State(st): State<Arc<AppState>>, body: Bytes) -> Result<Response, ApiError> {
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

type SseStream =
    std::pin::Pin<Box<dyn Stream<Item = Result<SseEvent, std::convert::Infallible>> + Send>>;

type SseResponse = Sse<axum::response::sse::KeepAliveStream<SseStream>>;

fn sse(s: impl Stream<Item = Value> + Send + 'static) -> SseResponse {
    use futures_util::StreamExt;
    let events = s
        .map(|v| Ok(SseEvent::default().data(v.to_string())))
        .chain(stream::once(async {
            Ok(SseEvent::default().data("[DONE]"))
        }));
    Sse::new(Box::pin(events) as SseStream).keep_alive(KeepAlive::default())
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

const COMPLETION_FIELDS: &[&str] = &["prompt", "echo", "logprobs", "best_of", "suffix"];

/// The token lists of `prompt`: a string, a list of strings, a token list or a list of them.
fn completion_prompts(st: &AppState, v: &Value) -> Result<Vec<Vec<u32>>, ApiError> {
    let encode = |s: &str| {
        st.tok
            .encode(s, true, false)
            .map_err(|e| ApiError::bad(e.to_string(), Some("prompt")))
    };
    let vocab = st.tok.vocab_size() as u64;
    let tokens = |a: &Vec<Value>| -> Result<Vec<u32>, ApiError> {
        a.iter()
            .map(|t| {
                t.as_u64()
                    .filter(|&x| x < vocab)
                    .map(|x| x as u32)
                    .ok_or_else(|| {
                        ApiError::bad(
                            format!("prompt token {t} is not an id below {vocab}"),
                            Some("prompt"),
                        )
                    })
            })
            .collect()
    };
    match v {
        Value::String(s) => Ok(vec![encode(s)?]),
        Value::Array(a) if a.is_empty() => Err(ApiError::bad("'prompt' is empty", Some("prompt"))),
        Value::Array(a) if a.iter().all(Value::is_string) => {
            a.iter().map(|s| encode(s.as_str().unwrap_or(""))).collect()
        }
        Value::Array(a) if a.iter().all(Value::is_number) => Ok(vec![tokens(a)?]),
        Value::Array(a) if a.iter().all(Value::is_array) => a
            .iter()
            .map(|x| tokens(x.as_array().unwrap_or(&vec![])))
            .collect(),
        _ => Err(ApiError::bad(
            "'prompt' must be a string, a list of strings, a list of token ids or a list of such lists",
            Some("prompt"),
        )),
    }
}

/// OpenAI's legacy logprobs object for a run of tokens starting at text offset `offset`.
fn legacy_logprobs(tokens: &[Option<TokenLogprob>], texts: &[String], mut offset: usize) -> Value {
    let (mut toks, mut lps, mut tops, mut offsets) = (vec![], vec![], vec![], vec![]);
    for (t, text) in tokens.iter().zip(texts) {
        toks.push(json!(text));
        offsets.push(json!(offset));
        offset += text.len();
        match t {
            Some(t) => {
                lps.push(json!(t.logprob));
                let top: serde_json::Map<String, Value> = t
                    .top
                    .iter()
                    .map(|(_, s, lp)| (s.clone(), json!(lp)))
                    .collect();
                tops.push(Value::Object(top));
            }
            None => {
                lps.push(Value::Null);
                tops.push(Value::Null);
            }
        }
    }
    json!({"tokens": toks, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets})
}

async fn completions(State(st): State<Arc<AppState>>, body: Bytes) -> Result<Response, ApiError> {
    let v = parse_body(&body)?;
    let known: Vec<&str> = COMMON_FIELDS
        .iter()
        .chain(COMPLETION_FIELDS)
        .copied()
        .collect();
    let f = Fields::new(&v, &known, "")?;
    let mut c = common(&f, st.sched.config.slots)?;
    check_model(&st, &c.model)?;
    if f.str("suffix")?.is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::unsupported("suffix"));
    }
    if let Some(b) = f.uint("best_of", 64)?
        && b as usize != c.n
    {
        return Err(ApiError::bad(
            "'best_of' other than 'n' is not supported",
            Some("best_of"),
        ));
    }
    c.max_tokens = Some(f.uint("max_tokens", u32::MAX as u64)?.unwrap_or(16) as usize);
    let echo = f.bool("echo")?.unwrap_or(false);
    let logprobs = f.uint("logprobs", 20)?.map(|k| k as usize);
    if c.max_tokens == Some(0) && !echo {
        return Err(ApiError::bad(
            "'max_tokens': 0 is only useful with 'echo': true",
            Some("max_tokens"),
        ));
    }
    if c.stream && echo {
        return Err(ApiError::bad(
            "'echo' with 'stream' is not supported",
            Some("echo"),
        ));
    }
    let prompts = completion_prompts(
        &st,
        f.get("prompt")
            .ok_or_else(|| ApiError::bad("'prompt' is required", Some("prompt")))?,
    )?;
    let params = JobParams {
        max_tokens: c.max_tokens,
        stop: c.stop.clone(),
        sampler: c.sampler.clone(),
        ignore_eos: f.bool("ignore_eos")?.unwrap_or(false),
        logprobs,
        prompt_logprobs: if echo { logprobs } else { None },
        json: None,
        embed: false,
    };
    let id = format!("cmpl-{}", tools::random_id(24));
    let created = now();
    let mut receivers = vec![];
    for p in &prompts {
        receivers.push(submit(&st, p.clone(), c.n, params.clone())?.0);
    }
    if c.stream {
        return Ok(completion_stream(
            st,
            receivers,
            id,
            created,
            c.n,
            c.include_usage,
            logprobs.is_some(),
        )
        .into_response());
    }
    let mut choices = vec![];
    let (mut prompt_total, mut completion_total, mut cached_total) = (0, 0, 0);
    for (pi, rx) in receivers.into_iter().enumerate() {
        let out = collect(rx, c.n).await?;
        prompt_total += out.prompt_tokens;
        cached_total += out.cached_tokens;
        let prompt_texts = prompt_pieces(&st, &prompts[pi]);
        let prompt_text: String = prompt_texts.concat();
        for (ci, ch) in out.choices.iter().enumerate() {
            completion_total += ch.completion_tokens;
            let gen_texts: Vec<String> = ch.tokens.iter().map(|t| t.text.clone()).collect();
            let mut text = ch.text.clone();
            let lp = if logprobs.is_some() {
                let generated: Vec<Option<TokenLogprob>> =
                    ch.tokens.iter().cloned().map(Some).collect();
                if echo {
                    let mut all = out.prompt_logprobs.clone();
                    all.extend(generated);
                    let texts: Vec<String> =
                        prompt_texts.iter().cloned().chain(gen_texts).collect();
                    legacy_logprobs(&all, &texts, 0)
                } else {
                    legacy_logprobs(&generated, &gen_texts, 0)
                }
            } else {
                Value::Null
            };
            if echo {
                text = format!("{prompt_text}{text}");
            }
            choices.push(json!({"text": text, "index": pi * c.n + ci, "logprobs": lp, "finish_reason": finish_name(ch.finish, false)}));
        }
    }
    Ok(axum::Json(json!({
        "id": id,
        "object": "text_completion",
        "created": created,
        "model": st.opts.model_name,
        "system_fingerprint": concat!("herd-", env!("CARGO_PKG_VERSION")),
        "choices": choices,
        "usage": usage(prompt_total, completion_total, cached_total),
    }))
    .into_response())
}

/// The text each prompt token adds, decoded in sequence so that the pieces join to the
/// prompt's text (special tokens add nothing; a character split over several byte tokens
/// comes with its last one).
fn prompt_pieces(st: &AppState, ids: &[u32]) -> Vec<String> {
    let mut d = st.tok.stream_decoder(true);
    let mut out: Vec<String> = ids.iter().map(|&t| d.step(t).unwrap_or_default()).collect();
    if let (Some(last), Ok(rest)) = (out.last_mut(), d.finish()) {
        last.push_str(&rest);
    }
    out
}

fn completion_stream(
    st: Arc<AppState>,
    receivers: Vec<mpsc::UnboundedReceiver<Event>>,
    id: String,
    created: u64,
    n: usize,
    include_usage: bool,
    logprobs: bool,
) -> SseResponse {
    use futures_util::StreamExt;
    let model = st.opts.model_name.clone();
    let k = receivers.len();
    let merged = stream::select_all(receivers.into_iter().enumerate().map(|(pi, rx)| {
        tokio_stream::wrappers::UnboundedReceiverStream::new(rx).map(move |e| (pi, e))
    }));
    struct Totals {
        prompt: usize,
        completion: usize,
        cached: usize,
        done: usize,
    }
    let totals = Arc::new(Mutex::new(Totals {
        prompt: 0,
        completion: 0,
        cached: 0,
        done: 0,
    }));
    let s = merged.filter_map(move |(pi, ev)| {
        let (id, model, totals) = (id.clone(), model.clone(), totals.clone());
        async move {
            let chunk = |choices: Value| json!({"id": id, "object": "text_completion", "created": created, "model": model, "choices": choices});
            let mut t = totals.lock().ok()?;
            match ev {
                Event::Token { choice, text, logprob, .. } => {
                    let lp = match (logprobs, logprob) {
                        (true, Some(l)) => legacy_logprobs(&[Some(l.clone())], &[l.text], 0),
                        _ => Value::Null,
                    };
                    Some(chunk(json!([{"text": text, "index": pi * n + choice, "logprobs": lp, "finish_reason": null}])))
                }
                Event::Finished { choice, finish, completion_tokens } => {
                    t.completion += completion_tokens;
                    Some(chunk(json!([{"text": "", "index": pi * n + choice, "logprobs": null, "finish_reason": finish.openai()}])))
                }
                Event::Done { prompt_tokens, cached_tokens } => {
                    t.prompt += prompt_tokens;
                    t.cached += cached_tokens;
                    t.done += 1;
                    (include_usage && t.done == k).then(|| {
                        let mut c = chunk(json!([]));
                        c["usage"] = usage(t.prompt, t.completion, t.cached);
                        c
                    })
                }
                Event::Error(e) => Some(json!({"error": {"message": e, "type": "server_error", "param": null, "code": "engine_error"}})),
                _ => None,
            }
        }
    });
    sse(s)
}

async fn embeddings(State(st): State<Arc<AppState>>, body: Bytes) -> Result<Response, ApiError> {
    let v = parse_body(&body)?;
    let f = Fields::new(
        &v,
        &["model", "input", "encoding_format", "dimensions", "user"],
        "",
    )?;
    let model = f
        .str("model")?
        .ok_or_else(|| ApiError::bad("'model' is required", Some("model")))?;
    check_model(&st, model)?;
    let base64 = match f.str("encoding_format")? {
        None | Some("float") => false,
        // Little-endian f32s, base64-encoded (what the openai client asks for by default).
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad(
                format!("encoding_format '{other}' is not supported (float, base64)"),
                Some("encoding_format"),
            ));
        }
    };
    if f.get("dimensions").is_some() {
        return Err(ApiError::unsupported("dimensions"));
    }
    let inputs = completion_prompts(
        &st,
        f.get("input")
            .ok_or_else(|| ApiError::bad("'input' is required", Some("input")))?,
    )
    .map_err(|e| ApiError {
        message: e.message.replace("'prompt'", "'input'"),
        param: Some("input".into()),
        ..e
    })?;
    let mut data = vec![];
    let mut total = 0;
    for (i, ids) in inputs.into_iter().enumerate() {
        let params = JobParams {
            max_tokens: Some(0),
            stop: vec![],
            sampler: Default::default(),
            ignore_eos: false,
            logprobs: None,
            prompt_logprobs: None,
            json: None,
            embed: true,
        };
        let (rx, _) = submit(&st, ids, 1, params)?;
        let out = collect(rx, 1).await?;
        total += out.prompt_tokens;
        let e = out.embedding.unwrap_or_default();
        let embedding = if base64 {
            json!(base64_encode(
                &e.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()
            ))
        } else {
            json!(e)
        };
        data.push(json!({"object": "embedding", "index": i, "embedding": embedding}));
    }
    Ok(axum::Json(json!({"object": "list", "data": data, "model": st.opts.model_name, "usage": {"prompt_tokens": total, "total_tokens": total}})).into_response())
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    let s = &st.sched.stats;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        out.push_str(&format!(
            "# HELP herd_{name} {help}\n# TYPE herd_{name} {kind}\nherd_{name} {value}\n"
        ));
    };
    let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    metric(
        "requests_total",
        "counter",
        "Generation and embedding requests accepted.",
        ld(&s.requests).to_string(),
    );
    metric(
        "prompt_tokens_total",
        "counter",
        "Prompt tokens admitted.",
        ld(&s.prompt_tokens).to_string(),
    );
    metric(
        "prompt_tokens_cached_total",
        "counter",
        "Prompt tokens whose KV cache was reused.",
        ld(&s.cached_prompt_tokens).to_string(),
    );
    metric(
        "generated_tokens_total",
        "counter",
        "Tokens generated.",
        ld(&s.generated_tokens).to_string(),
    );
    metric(
        "cancelled_total",
        "counter",
        "Requests dropped because the client went away or shutdown.",
        ld(&s.cancelled).to_string(),
    );
    metric(
        "queue_depth",
        "gauge",
        "Requests waiting for a slot.",
        s.queued.load(Ordering::Relaxed).to_string(),
    );
    metric(
        "running_sequences",
        "gauge",
        "Sequences being decoded.",
        s.running.load(Ordering::Relaxed).to_string(),
    );
    metric(
        "batch_steps_total",
        "counter",
        "Batched forward steps.",
        ld(&s.steps).to_string(),
    );
    metric(
        "batch_sequences_total",
        "counter",
        "Sum over steps of the sequences in each (mean batch size = this / batch_steps_total).",
        ld(&s.batched_sequences).to_string(),
    );
    out.push_str("# HELP herd_time_to_first_token_seconds Time from queueing to the first generated token.\n# TYPE herd_time_to_first_token_seconds summary\n");
    out.push_str(&format!(
        "herd_time_to_first_token_seconds_sum {}\n",
        ld(&s.first_token_micros) as f64 / 1e6
    ));
    out.push_str(&format!(
        "herd_time_to_first_token_seconds_count {}\n",
        ld(&s.first_tokens)
    ));
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        out.push_str(&format!(
            "# HELP herd_{name} {help}\n# TYPE herd_{name} {kind}\nherd_{name} {value}\n"
        ));
    };
    metric(
        "generation_tokens_per_second",
        "gauge",
        "Tokens generated per second in the last step.",
        format!("{}", ld(&s.tokens_per_second_milli) as f64 / 1000.0),
    );
    out.push_str("# HELP herd_http_responses_total HTTP responses by status code.\n# TYPE herd_http_responses_total counter\n");
    if let Ok(r) = st.responses.lock() {
        for (code, n) in r.iter() {
            out.push_str(&format!(
                "herd_http_responses_total{{code=\"{code}\"}} {n}\n"
            ));
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

fn base64_encode(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::base64_encode(i.as_bytes()), o);
        }
    }

    #[test]
    fn keys_compare_in_full() {
        assert!(super::constant_time_eq(b"sk-abc", b"sk-abc"));
        assert!(!super::constant_time_eq(b"sk-abc", b"sk-abd"));
        assert!(!super::constant_time_eq(b"sk-ab", b"sk-abc"));
        assert!(!super::constant_time_eq(b"", b"x"));
    }
}
