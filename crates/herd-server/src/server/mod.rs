//! Routes, authentication, limits, metrics, and what the handlers of the OpenAI API share:
//! submitting a job to the scheduler, collecting it, and the response pieces common to them.
//! The handlers are in the modules `chat`, `completions` and `embeddings`.

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
use herd_model::template::ChatTemplate;
use herd_model::tokenizer::Tokenizer;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::request::ApiError;
use crate::scheduler::{Event, Job, JobParams, Scheduler, TokenLogprob, TokenPieces};

mod chat;
mod completions;
mod embeddings;

use chat::chat;
use completions::completions;
use embeddings::embeddings;

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
    Html(include_str!("../../web/index.html"))
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

#[cfg(test)]
mod tests {
    #[test]
    fn keys_compare_in_full() {
        assert!(super::constant_time_eq(b"sk-abc", b"sk-abc"));
        assert!(!super::constant_time_eq(b"sk-abc", b"sk-abd"));
        assert!(!super::constant_time_eq(b"sk-ab", b"sk-abc"));
        assert!(!super::constant_time_eq(b"", b"x"));
    }
}
