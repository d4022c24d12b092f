//! Chat templates: turning a conversation into the prompt text a model was trained on.
//!
//! Models ship a Hugging Face chat template (Jinja) in `tokenizer_config.json` or the GGUF key
//! `tokenizer.chat_template`. The reference renderer is transformers' `apply_chat_template`,
//! so herd renders the way it does (`transformers/utils/chat_template_utils.py`):
//!
//! * Jinja with `trim_blocks` and `lstrip_blocks`, no trailing-newline keeping, loop controls,
//!   no auto-escaping, in an immutable sandbox (no list or dict mutation, no file access);
//! * variables `messages`, `tools`, `documents`, `add_generation_prompt`, the tokenizer's
//!   special tokens (`bos_token`, `eos_token`, …) and any extra keyword arguments;
//! * globals `raise_exception(msg)`, `strftime_now(fmt)`, `namespace`, `dict`, and a `tojson`
//!   that is Python's `json.dumps` (no HTML escaping; `indent`, `ensure_ascii`, `separators`,
//!   `sort_keys` arguments);
//! * messages with `None` values lose those keys, and reasoning given as `reasoning_content`,
//!   `thinking` or `reasoning` is visible under the first two names;
//! * `{% generation %}` blocks (assistant-mask tracking) render their content.
//!
//! Values print as Python prints them (`True`, `None`, `{'a': 1}`), strings have Python's
//! methods. A template gets a fuel budget and a recursion limit, so a hostile one (endless
//! loops, huge ranges, string blow-ups, runaway recursion) fails instead of hanging herd. One gap
//! remains, in minijinja 3.1 itself: concatenating lists costs no fuel, and a chain of more than
//! 32 concatenations is flattened eagerly, so a template that doubles a list 33 times allocates
//! 2^33 items (Python's Jinja2, which transformers uses, has no limits at all).

mod builtin;
mod objects;
mod python;
mod strftime;

use std::fmt::Write as _;
use std::path::Path;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::ValueKind;
use minijinja::{AutoEscape, Environment, ErrorKind, State, UndefinedBehavior, Value};

pub use builtin::BUILTIN;
pub use strftime::TemplateTime;

use crate::{Error, Result};

/// Instructions (plus bytes made / 64) one render may spend. Every real template in the tests
/// renders a six-message chat with tools in under 20,000; long chats grow that linearly, so
/// this leaves room for thousands of messages, while an endless loop stops within a second.
const FUEL: u64 = 5_000_000;

/// Why a template could not be loaded or rendered. The template's name comes first.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The template itself refused the input with `raise_exception(message)`.
    #[error("chat template '{name}' refused the conversation: {message}")]
    Raised { name: String, message: String },

    /// A syntax error, or an error while rendering (undefined attribute, wrong type, out of
    /// fuel …), at `line` of the template.
    #[error("chat template '{name}'{}: {detail}{}", line.map(|l| format!(", line {l}")).unwrap_or_default(), source_line.as_ref().map(|s| format!("\n  {l}: {s}", l = line.unwrap_or(0))).unwrap_or_default())]
    Jinja {
        name: String,
        line: Option<usize>,
        /// The text of that line, shortened.
        source_line: Option<String>,
        detail: String,
    },

    /// Nothing to render with: not a built-in name nor a file, or no template at all.
    #[error("{what}; built-in chat templates: {}", builtin_names().join(", "))]
    NotFound { what: String },

    /// The input is not something a template can be given.
    #[error("chat template '{name}': {msg}")]
    BadInput { name: String, msg: String },
}

/// The names `ChatTemplate::builtin` accepts.
pub fn builtin_names() -> Vec<&'static str> {
    BUILTIN.iter().map(|(n, _)| *n).collect()
}

/// What `apply_chat_template` receives besides the messages.
#[derive(Clone, Debug, Default)]
pub struct RenderOptions {
    /// End with the header that starts the assistant's reply.
    pub add_generation_prompt: bool,
    /// JSON tool definitions (`{"type": "function", "function": {...}}`); `None` is passed to
    /// the template as `none`, as transformers does.
    pub tools: Option<Vec<serde_json::Value>>,
    /// Retrieval documents (`{"title": ..., "text": ...}`) for RAG templates.
    pub documents: Option<Vec<serde_json::Value>>,
    /// The tokenizer's special tokens; left undefined when `None`, as when a tokenizer has none.
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    /// Further variables (`enable_thinking`, other special tokens …). They override the special
    /// tokens above, like keyword arguments of `apply_chat_template` do.
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// The time `strftime_now` reports; `None`: now, in UTC.
    pub now: Option<TemplateTime>,
}

/// A compiled chat template.
pub struct ChatTemplate {
    name: String,
    env: Environment<'static>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("name", &self.name)
            .finish()
    }
}

/// `{"role": role, "content": content}`.
pub fn message(role: &str, content: &str) -> serde_json::Value {
    serde_json::json!({ "role": role, "content": content })
}

/// The error `raise_exception` returns, found again in the error chain after rendering.
#[derive(Debug)]
struct Raised(String);

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

fn raise_exception(message: Value) -> std::result::Result<Value, minijinja::Error> {
    let mut text = String::new();
    python::py_str(&mut text, &message)?;
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, text.clone()).with_source(Raised(text)))
}

/// Jinja's `|string` and what `{{ }}` prints: Python's `str()`.
fn py_string(value: &Value) -> std::result::Result<Value, minijinja::Error> {
    if value.kind() == ValueKind::String {
        return Ok(value.clone());
    }
    let mut s = String::new();
    python::py_str(&mut s, value)?;
    Ok(Value::from(s))
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // transformers: ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).
    if let Ok(syntax) = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env.set_auto_escape_callback(|_| AutoEscape::None);
    // Errors quote the failing expression in release builds too (minijinja keeps its source
    // only under debug assertions by default), so a user sees what broke, not just where.
    env.set_debug(true);
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_fuel(Some(FUEL));
    // minijinja's default recursion limit (500, validated against the default thread stack)
    // stays: recursive macros over nested tool schemas need depth, and runaway recursion stops
    // there or on fuel.
    env.set_unknown_method_callback(python::unknown_method);
    env.set_formatter(
        |out: &mut minijinja::Output, _state: &mut State, value: &Value| {
            let mut s = String::new();
            python::py_str(&mut s, value)?;
            out.write_str(&s)
                .map_err(|_| minijinja::Error::new(ErrorKind::WriteFailure, "write failed"))
        },
    );
    env.add_filter("tojson", python::tojson_filter);
    env.add_filter("string", py_string);
    env.add_function("raise_exception", raise_exception);
    env.add_filter("map", objects::map);
    env.add_filter("select", objects::select);
    env.add_filter("reject", objects::reject);
    env.add_filter("selectattr", objects::selectattr);
    env.add_filter("rejectattr", objects::rejectattr);
    env.add_test("none", objects::test_none);
    env.add_test("iterable", objects::test_iterable);
    env
}

/// Rewrites `{% generation %}` / `{% endgeneration %}` (transformers' assistant-mask extension,
/// which minijinja lacks) to `{% if true %}` / `{% endif %}`: same output, and the same
/// whitespace handling since both are block tags with the same `-`/`+` markers.
fn rewrite_generation_tags(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while let Some(at) = rest.find("{%") {
        out.push_str(&rest[..at]);
        let tag = &rest[at..];
        let Some(end) = tag.find("%}") else {
            out.push_str(tag);
            return out;
        };
        let inner = &tag[2..end];
        let (lead, body) = split_marker(inner, true);
        let (body, trail) = split_marker(body, false);
        let replacement = match body.trim() {
            "generation" => Some("if true"),
            "endgeneration" => Some("endif"),
            _ => None,
        };
        match replacement {
            Some(r) => {
                let _ = write!(out, "{{%{lead} {r} {trail}%}}");
            }
            None => out.push_str(&tag[..end + 2]),
        }
        rest = &tag[end + 2..];
    }
    out.push_str(rest);
    out
}

/// Splits a leading (or trailing) whitespace-control marker `-`/`+` off a tag's inside.
fn split_marker(s: &str, leading: bool) -> (&str, &str) {
    if leading {
        match s.chars().next() {
            Some(c @ ('-' | '+')) => s.split_at(c.len_utf8()),
            _ => ("", s),
        }
    } else {
        match s.chars().last() {
            Some('-' | '+') => {
                let (a, b) = s.split_at(s.len() - 1);
                (a, b)
            }
            _ => (s, ""),
        }
    }
}

/// serde_json values as template values: objects keep their key order, as Python dicts do.
fn to_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(a) => Value::from(a.iter().map(to_value).collect::<Vec<_>>()),
        serde_json::Value::Object(o) => {
            Value::from_pairs(o.iter().map(|(k, v)| (k.as_str(), to_value(v))))
        }
    }
}

/// What `apply_chat_template` does to each message before rendering: drop keys whose value is
/// `None` (`_normalize_chat_messages`) and show reasoning under `thinking` and
/// `reasoning_content` whichever name it came under (`_alias_reasoning_fields`).
fn normalize_message(
    name: &str,
    m: &serde_json::Value,
) -> std::result::Result<serde_json::Map<String, serde_json::Value>, TemplateError> {
    let Some(obj) = m.as_object() else {
        return Err(TemplateError::BadInput {
            name: name.into(),
            msg: format!("chat messages must be JSON objects, got {m}"),
        });
    };
    let mut obj: serde_json::Map<_, _> = obj
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let reasoning = ["reasoning_content", "thinking", "reasoning"]
        .iter()
        .find_map(|k| obj.get(*k).cloned());
    if let Some(r) = reasoning {
        // Python: {"thinking": reasoning, **message, "reasoning_content": reasoning}
        let mut aliased = serde_json::Map::new();
        aliased.insert("thinking".into(), r.clone());
        for (k, v) in obj {
            aliased.insert(k, v);
        }
        aliased.insert("reasoning_content".into(), r);
        obj = aliased;
    }
    Ok(obj)
}

impl ChatTemplate {
    /// Compiles `source`; `name` is what errors call it (a model, a file, a built-in).
    pub fn new(name: impl Into<String>, source: &str) -> Result<Self> {
        let name = name.into();
        let mut env = environment();
        env.add_template_owned(name.clone(), rewrite_generation_tags(source))
            .map_err(|e| jinja_error(&name, e))?;
        Ok(ChatTemplate { name, env })
    }

    /// A built-in template by name (see [`BUILTIN`]).
    pub fn builtin(name: &str) -> Result<Self> {
        match builtin::builtin(name) {
            Some((n, src)) => Self::new(n, src),
            None => Err(TemplateError::NotFound {
                what: format!("no built-in chat template '{name}'"),
            }
            .into()),
        }
    }

    /// Picks the template to use: `choice` is a built-in name or a template file (Jinja text,
    /// or a `tokenizer_config.json` with a `chat_template`); without a choice, the model's own
    /// template; without that, an error listing the built-in names.
    pub fn resolve(choice: Option<&str>, model_template: Option<&str>) -> Result<Self> {
        match (choice, model_template) {
            (Some(c), _) => {
                if builtin::builtin(c).is_some() {
                    return Self::builtin(c);
                }
                let path = Path::new(c);
                if path.is_file() {
                    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
                    let source = template_from_file_text(&text).ok_or_else(|| {
                        Error::invalid(path, "no \"chat_template\" in this JSON file")
                    })?;
                    return Self::new(path.display().to_string(), &source);
                }
                Err(TemplateError::NotFound {
                    what: format!("chat template '{c}' is neither a built-in name nor a file"),
                }
                .into())
            }
            (None, Some(src)) => Self::new("model", src),
            (None, None) => Err(TemplateError::NotFound {
                what: "the model has no chat template; choose one".into(),
            }
            .into()),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renders `messages` (`{"role": ..., "content": ...}` objects, possibly with `tool_calls`
    /// whose `function.arguments` is an object, and `tool` messages) as transformers'
    /// `apply_chat_template(messages, tokenize=False, ...)` would.
    pub fn render(&self, messages: &[serde_json::Value], opts: &RenderOptions) -> Result<String> {
        let msgs = messages
            .iter()
            .map(|m| {
                normalize_message(&self.name, m).map(|o| to_value(&serde_json::Value::Object(o)))
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let list = |v: &Option<Vec<serde_json::Value>>| match v {
            Some(items) => Value::from(items.iter().map(to_value).collect::<Vec<_>>()),
            None => objects::py_none(),
        };
        let now = opts.now.unwrap_or_else(TemplateTime::now_utc);
        let mut ctx: Vec<(String, Value)> = Vec::new();
        for (k, v) in [
            ("bos_token", &opts.bos_token),
            ("eos_token", &opts.eos_token),
        ] {
            if let Some(v) = v {
                ctx.push((k.into(), Value::from(v.as_str())));
            }
        }
        for (k, v) in &opts.extra {
            ctx.push((k.clone(), to_value(v)));
        }
        ctx.push(("messages".into(), Value::from(msgs)));
        ctx.push(("tools".into(), list(&opts.tools)));
        ctx.push(("documents".into(), list(&opts.documents)));
        ctx.push((
            "add_generation_prompt".into(),
            Value::from(opts.add_generation_prompt),
        ));
        ctx.push((
            "strftime_now".into(),
            Value::from_function(move |fmt: &str| now.strftime(fmt)),
        ));
        // Later keys win, so the special tokens give way to `extra`, and `extra` to the above.
        let ctx = Value::from_pairs(ctx);
        let tmpl = self
            .env
            .get_template(&self.name)
            .map_err(|e| jinja_error(&self.name, e))?;
        tmpl.render(ctx).map_err(|e| jinja_error(&self.name, e))
    }
}

/// A template file's text: Jinja as is, or the `chat_template` of a `tokenizer_config.json`
/// (a string, or a list of `{"name", "template"}` of which `default` is taken).
fn template_from_file_text(text: &str) -> Option<String> {
    let Ok(serde_json::Value::Object(cfg)) = serde_json::from_str::<serde_json::Value>(text) else {
        return Some(text.to_string());
    };
    match cfg.get("chat_template")? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(list) => list
            .iter()
            .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
            .or_else(|| list.first())
            .and_then(|t| t.get("template"))
            .and_then(|t| t.as_str())
            .map(String::from),
        _ => None,
    }
}

fn jinja_error(name: &str, e: minijinja::Error) -> Error {
    // `raise_exception` may be wrapped by the macro or filter it was called from.
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(c) = cause {
        if let Some(Raised(message)) = c.downcast_ref::<Raised>() {
            return TemplateError::Raised {
                name: name.into(),
                message: message.clone(),
            }
            .into();
        }
        cause = c.source();
    }
    let line = e.line();
    let source_line = line.and_then(|l| {
        let src = e.template_source()?;
        let text = src.lines().nth(l.checked_sub(1)?)?.trim();
        Some(if text.chars().count() > 160 {
            format!("{}…", text.chars().take(160).collect::<String>())
        } else {
            text.to_string()
        })
    });
    let detail = match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    };
    TemplateError::Jinja {
        name: name.into(),
        line,
        source_line,
        detail,
    }
    .into()
}

#[cfg(test)]
mod tests;
