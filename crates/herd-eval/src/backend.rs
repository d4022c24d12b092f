//! Where answers come from: a local model through herd's engine, or any OpenAI-compatible
//! endpoint (herd serve, vLLM, a hosted API) with bounded concurrency, retries with backoff
//! and timeouts. A judge is a backend too.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use herd_generate::{GenerateOptions, SamplerConfig, Session};
use herd_model::Model;
use herd_model::engine::{CacheType, Engine};
use herd_model::template::{ChatTemplate, RenderOptions};
use herd_model::tokenizer::Tokenizer;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::mc::{Encoded, LlRequest, LlResult, score_local};

/// A generation request: chat messages (through the chat template or chat endpoint) or a
/// plain prompt.
#[derive(Clone, Debug)]
pub struct GenRequest {
    pub messages: Option<Vec<Value>>,
    pub prompt: String,
    pub max_tokens: usize,
    pub stop: Vec<String>,
    pub temperature: f32,
    pub seed: u64,
    /// A JSON schema the answer must follow (OpenAI `response_format`), for judges held to a
    /// format.
    pub json: Option<Value>,
}

/// A generated text with the prompt exactly as it was sent.
#[derive(Clone, Debug)]
pub struct Generation {
    pub text: String,
    pub sent: Value,
}

pub trait Backend: Send {
    /// The model's name as results show it.
    fn name(&self) -> String;
    /// What identifies the weights: a file hash, or the endpoint and model name.
    fn fingerprint(&self) -> Result<String>;
    /// Settings that change results (stored with the run).
    fn settings(&self) -> Value;
    /// Log-likelihoods of each request's continuations, and the token ids or texts sent.
    fn loglikelihood(&mut self, reqs: &[LlRequest]) -> Result<(Vec<Vec<LlResult>>, Vec<Value>)>;
    fn generate(&mut self, reqs: &[GenRequest]) -> Result<Vec<Generation>>;
}

/// A model run by herd's engine in this process.
pub struct Local {
    pub model: Model,
    pub tok: Tokenizer,
    pub engine: Engine,
    pub name: String,
    pub add_bos: bool,
    pub max_len: usize,
    template: Option<ChatTemplate>,
}

impl Local {
    pub fn open(path: &Path, threads: usize, add_bos: bool) -> Result<Local> {
        let model = Model::open(path)?;
        let tok = Tokenizer::for_model(&model)?;
        let mut engine = Engine::new(&model, threads)?;
        // Log-likelihoods exactly as computed, as lm-eval's float32 runs find them; an f16
        // cache moves them by a few 1e-4 (`engine.set_cache_type` chooses otherwise).
        engine.set_cache_type(CacheType::F32);
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("model")
            .trim_end_matches(".gguf")
            .to_string();
        let template = ChatTemplate::resolve(None, model.chat_template().as_deref()).ok();
        let max_len = model.spec.context_length;
        Ok(Local {
            model,
            tok,
            engine,
            name,
            add_bos,
            max_len,
            template,
        })
    }

    /// The prompt's token ids: chat messages rendered by the model's template (special tokens
    /// parsed, BOS added when the model wants one and the template did not write it).
    fn prompt_ids(&self, r: &GenRequest) -> Result<(Vec<u32>, String)> {
        match (&r.messages, &self.template) {
            (Some(m), Some(t)) => {
                let token_text = |id: Option<u32>| id.and_then(|i| self.tok.inner.id_to_token(i));
                let text = t.render(
                    m,
                    &RenderOptions {
                        add_generation_prompt: true,
                        bos_token: token_text(self.tok.bos),
                        eos_token: token_text(self.tok.eos.first().copied()),
                        ..Default::default()
                    },
                )?;
                let mut ids = self.tok.encode(&text, false, true)?;
                if self.tok.add_bos
                    && let Some(b) = self.tok.bos
                    && ids.first() != Some(&b)
                {
                    ids.insert(0, b);
                }
                Ok((ids, text))
            }
            (Some(_), None) => Err(Error::Usage(format!(
                "{} has no chat template for a chat task",
                self.name
            ))),
            (None, _) => Ok((self.tok.encode(&r.prompt, true, false)?, r.prompt.clone())),
        }
    }
}

impl Backend for Local {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn fingerprint(&self) -> Result<String> {
        crate::store::model_sha256(&self.model.path)
    }

    fn settings(&self) -> Value {
        json!({"backend": "local", "add_bos": self.add_bos, "max_length": self.max_len,
               "cache_type": self.engine.cache_type().name()})
    }

    fn loglikelihood(&mut self, reqs: &[LlRequest]) -> Result<(Vec<Vec<LlResult>>, Vec<Value>)> {
        let enc: Vec<Encoded> = reqs
            .iter()
            .map(|r| Encoded::new(&self.tok, self.add_bos, r))
            .collect::<Result<_>>()?;
        let res = score_local(&mut self.engine, &enc, self.max_len)?;
        let sent = enc
            .iter()
            .map(|e| json!({"context_ids": e.context, "continuation_ids": e.continuations}))
            .collect();
        Ok((res, sent))
    }

    fn generate(&mut self, reqs: &[GenRequest]) -> Result<Vec<Generation>> {
        let mut out = vec![];
        for r in reqs {
            if r.json.is_some() {
                return Err(Error::Usage(
                    "a JSON-constrained judge needs an endpoint (herd serve holds answers to a schema)".into(),
                ));
            }
            let (ids, text) = self.prompt_ids(r)?;
            let mut session = Session::new(&self.engine, self.max_len);
            let opts = GenerateOptions {
                max_tokens: Some(r.max_tokens),
                stop: r.stop.clone(),
                sampler: if r.temperature == 0.0 {
                    SamplerConfig {
                        seed: Some(r.seed),
                        ..SamplerConfig::greedy()
                    }
                } else {
                    SamplerConfig {
                        temperature: r.temperature,
                        seed: Some(r.seed),
                        ..SamplerConfig::default()
                    }
                },
                truncate: herd_generate::Truncation::Left,
                ..Default::default()
            };
            let g = herd_generate::generate(
                &mut self.engine,
                &self.tok,
                &mut session,
                &ids,
                &opts,
                &AtomicBool::new(false),
                &mut |_| Ok(()),
            )?;
            out.push(Generation {
                text: g.text,
                sent: json!({"text": text, "ids": ids, "truncated": g.truncated_tokens}),
            });
        }
        Ok(out)
    }
}

/// An OpenAI-compatible endpoint.
pub struct Endpoint {
    pub url: String,
    pub model: String,
    pub api_key: Option<String>,
    pub concurrency: usize,
    pub retries: usize,
    pub timeout: Duration,
    /// The wait before the first retry; doubled for each further one (at most 30 s).
    pub backoff: Duration,
    /// Sends token ids for log-likelihoods (exactly the local split) when set.
    pub tokenizer: Option<(Tokenizer, bool)>,
    agent: ureq::Agent,
}

impl Endpoint {
    pub fn new(
        url: &str,
        model: &str,
        api_key: Option<String>,
        concurrency: usize,
        retries: usize,
        timeout: Duration,
    ) -> Endpoint {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .new_agent();
        Endpoint {
            url: url
                .trim_end_matches('/')
                .trim_end_matches("/v1")
                .to_string(),
            model: model.to_string(),
            api_key,
            concurrency: concurrency.max(1),
            retries,
            timeout,
            backoff: Duration::from_millis(500),
            tokenizer: None,
            agent,
        }
    }

    /// The id of the first model the endpoint lists (`GET /v1/models`), for when no model
    /// name is given.
    pub fn served_model(&self) -> Result<String> {
        let url = format!("{}/v1/models", self.url);
        let err = |msg: String| Error::Http {
            url: url.clone(),
            msg,
        };
        let mut req = self.agent.get(&url);
        if let Some(k) = &self.api_key {
            req = req.header("authorization", &format!("Bearer {k}"));
        }
        let resp = req.call().map_err(|e| err(e.to_string()))?;
        let status = resp.status().as_u16();
        let text = resp
            .into_body()
            .read_to_string()
            .map_err(|e| err(e.to_string()))?;
        if status != 200 {
            let head: String = text.chars().take(300).collect();
            return Err(err(format!("HTTP {status}: {head}")));
        }
        let v: Value =
            serde_json::from_str(&text).map_err(|e| err(format!("bad JSON reply: {e}")))?;
        v.pointer("/data/0/id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| err("lists no model: give the model's name".into()))
    }

    /// POSTs `body` to `path`, retrying transport errors, 408, 429 and 5xx with exponential
    /// backoff (or the server's `Retry-After`).
    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let url = format!("{}{path}", self.url);
        let err = |msg: String| Error::Http {
            url: url.clone(),
            msg,
        };
        let mut last = String::new();
        let mut wait = None;
        for attempt in 0..=self.retries {
            if attempt > 0 {
                let backoff = self.backoff.saturating_mul(1 << (attempt - 1).min(16));
                std::thread::sleep(wait.take().unwrap_or(backoff).min(Duration::from_secs(60)));
            }
            let mut req = self
                .agent
                .post(&url)
                .header("content-type", "application/json");
            if let Some(k) = &self.api_key {
                req = req.header("authorization", &format!("Bearer {k}"));
            }
            match req.send(body.to_string()) {
                Err(e) => last = e.to_string(),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    // The server's Retry-After (seconds) replaces the backoff.
                    wait = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let text = match resp.into_body().read_to_string() {
                        Ok(t) => t,
                        Err(e) => {
                            last = format!("reading the reply: {e}");
                            continue;
                        }
                    };
                    if status == 200 {
                        return serde_json::from_str(&text)
                            .map_err(|e| err(format!("bad JSON reply: {e}")));
                    }
                    last = format!(
                        "HTTP {status}: {}",
                        text.chars().take(300).collect::<String>()
                    );
                    if !(status == 408 || status == 429 || status >= 500) {
                        return Err(err(last));
                    }
                }
            }
        }
        Err(err(format!(
            "gave up after {} tries: {last}",
            self.retries + 1
        )))
    }

    /// Runs `f` over `jobs` on at most `concurrency` threads, keeping the order.
    fn parallel<T: Sync, R: Send>(
        &self,
        jobs: &[T],
        f: impl Fn(&T) -> Result<R> + Sync,
    ) -> Result<Vec<R>> {
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Option<Result<R>>>> =
            Mutex::new((0..jobs.len()).map(|_| None).collect());
        std::thread::scope(|s| {
            for _ in 0..self.concurrency.min(jobs.len()) {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= jobs.len() {
                            break;
                        }
                        let r = f(&jobs[i]);
                        let failed = r.is_err();
                        if let Ok(mut v) = results.lock() {
                            v[i] = Some(r);
                        }
                        if failed {
                            // Stop handing out work; what is running finishes.
                            next.store(jobs.len(), Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        let v = results
            .into_inner()
            .map_err(|_| Error::Usage("a worker panicked".into()))?;
        v.into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(Error::Usage(
                        "a request was not run (an earlier one failed)".into(),
                    ))
                })
            })
            .collect()
    }

    /// Prompt log-probabilities of `prompt` (echo, one new token, as lm-eval's
    /// `local-completions` asks), as (token text, logprob, greedy) per prompt token.
    fn prompt_logprobs(&self, prompt: Value) -> Result<Vec<(String, f64, bool)>> {
        let n_ids = prompt.as_array().map(Vec::len);
        let body = json!({"model": self.model, "prompt": prompt, "max_tokens": 1, "echo": true, "logprobs": 1, "temperature": 0});
        let v = self.post("/v1/completions", &body)?;
        let bad = |m: &str| Error::Http {
            url: self.url.clone(),
            msg: format!("completion logprobs: {m}"),
        };
        let lp = v
            .pointer("/choices/0/logprobs")
            .ok_or_else(|| bad("no logprobs in the reply"))?;
        let toks = lp
            .get("tokens")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no tokens"))?;
        let lps = lp
            .get("token_logprobs")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no token_logprobs"))?;
        let tops = lp.get("top_logprobs").and_then(Value::as_array);
        let n = n_ids
            .unwrap_or(toks.len().saturating_sub(1))
            .min(toks.len());
        let mut out = vec![];
        for (i, tok) in toks.iter().take(n).enumerate() {
            let text = tok.as_str().unwrap_or("").to_string();
            let l = lps.get(i).and_then(Value::as_f64).unwrap_or(f64::NAN);
            let greedy = tops
                .and_then(|t| t.get(i))
                .and_then(Value::as_object)
                .map(|o| {
                    o.iter()
                        .max_by(|a, b| {
                            a.1.as_f64()
                                .unwrap_or(f64::MIN)
                                .total_cmp(&b.1.as_f64().unwrap_or(f64::MIN))
                        })
                        .is_none_or(|(k, _)| *k == text)
                })
                .unwrap_or(false);
            out.push((text, l, greedy));
        }
        Ok(out)
    }
}

impl Backend for Endpoint {
    fn name(&self) -> String {
        self.model.clone()
    }

    fn fingerprint(&self) -> Result<String> {
        Ok(format!("endpoint:{}#{}", self.url, self.model))
    }

    fn settings(&self) -> Value {
        json!({"backend": "endpoint", "url": self.url, "model": self.model,
               "tokenized": self.tokenizer.as_ref().map(|t| t.1)})
    }

    fn loglikelihood(&mut self, reqs: &[LlRequest]) -> Result<(Vec<Vec<LlResult>>, Vec<Value>)> {
        let this = &*self;
        // One job per (request, continuation).
        let jobs: Vec<(usize, usize)> = reqs
            .iter()
            .enumerate()
            .flat_map(|(i, r)| (0..r.continuations.len()).map(move |j| (i, j)))
            .collect();
        let res = this.parallel(&jobs, |&(i, j)| {
            let r = &reqs[i];
            match &this.tokenizer {
                Some((tok, add_bos)) => {
                    let (ctx, cont) =
                        crate::mc::encode_pair(tok, *add_bos, &r.context, &r.continuations[j])?;
                    let ids: Vec<u32> = ctx.iter().chain(&cont).copied().collect();
                    let lps = this.prompt_logprobs(json!(ids))?;
                    let tail = &lps[lps.len().saturating_sub(cont.len())..];
                    let sent = json!({"prompt_ids": ids, "continuation_tokens": cont.len()});
                    Ok((sum(tail), sent))
                }
                None => {
                    let text = format!("{}{}", r.context, r.continuations[j]);
                    let lps = this.prompt_logprobs(json!(text))?;
                    // Continuation tokens: those that end past the context's text.
                    let (mut end, mut first) = (0, lps.len());
                    for (k, (t, _, _)) in lps.iter().enumerate() {
                        end += t.len();
                        if end > r.context.len() {
                            first = k;
                            break;
                        }
                    }
                    let sent = json!({"prompt": text, "continuation_tokens": lps.len() - first});
                    Ok((sum(&lps[first..]), sent))
                }
            }
        })?;
        let mut out: Vec<Vec<LlResult>> = reqs.iter().map(|_| vec![]).collect();
        let mut sent: Vec<Vec<Value>> = reqs.iter().map(|_| vec![]).collect();
        for (&(i, _), (r, s)) in jobs.iter().zip(res) {
            out[i].push(r);
            sent[i].push(s);
        }
        Ok((out, sent.into_iter().map(Value::Array).collect()))
    }

    fn generate(&mut self, reqs: &[GenRequest]) -> Result<Vec<Generation>> {
        let this = &*self;
        this.parallel(reqs, |r| {
            let mut body = json!({"model": this.model, "max_tokens": r.max_tokens, "temperature": r.temperature, "seed": r.seed});
            if !r.stop.is_empty() {
                body["stop"] = json!(r.stop.iter().take(4).collect::<Vec<_>>());
            }
            let (path, pointer) = match &r.messages {
                Some(m) => {
                    body["messages"] = json!(m);
                    if let Some(schema) = &r.json {
                        body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "judgment", "schema": schema}});
                    }
                    ("/v1/chat/completions", "/choices/0/message/content")
                }
                None => {
                    body["prompt"] = json!(r.prompt);
                    ("/v1/completions", "/choices/0/text")
                }
            };
            let v = this.post(path, &body)?;
            let text = v
                .pointer(pointer)
                .and_then(Value::as_str)
                .ok_or_else(|| Error::Http { url: this.url.clone(), msg: format!("no {pointer} in the reply") })?
                .to_string();
            Ok(Generation { text, sent: body })
        })
    }
}

fn sum(lps: &[(String, f64, bool)]) -> LlResult {
    LlResult {
        logprob: lps.iter().map(|t| t.1).sum(),
        greedy: lps.iter().all(|t| t.2),
    }
}
