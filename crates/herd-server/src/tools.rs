//! Tool calls: the schema that forces one, and the parsers that find one in free text.

use herd_generate::json::Schema;
use serde_json::{Value, json};

use crate::request::ApiError;

/// A tool the request offers.
#[derive(Clone, Debug)]
pub struct Tool {
    pub name: String,
    pub parameters: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Choice {
    /// The model may answer or call a tool (parsed from its text).
    Auto,
    /// The model must not call tools.
    None,
    /// The model must call one of the tools (constrained output).
    Required,
    /// The model must call this tool (constrained output).
    Named(String),
}

/// `tools` and `tool_choice` of a chat request.
pub fn parse(
    tools: Option<&Value>,
    choice: Option<&Value>,
) -> Result<(Vec<Tool>, Choice), ApiError> {
    let mut out = vec![];
    if let Some(t) = tools {
        let list = t
            .as_array()
            .ok_or_else(|| ApiError::bad("'tools' must be a list", Some("tools")))?;
        for (i, item) in list.iter().enumerate() {
            let at = format!("tools[{i}]");
            if item.get("type").and_then(Value::as_str) != Some("function") {
                return Err(ApiError::bad(
                    format!("{at}.type must be \"function\""),
                    Some("tools"),
                ));
            }
            let f = item.get("function").ok_or_else(|| {
                ApiError::bad(format!("{at}.function is required"), Some("tools"))
            })?;
            let name = f
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| {
                    ApiError::bad(format!("{at}.function.name is required"), Some("tools"))
                })?;
            let parameters = f
                .get("parameters")
                .cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            Schema::parse(&parameters).map_err(|e| {
                ApiError::bad(format!("{at}.function.parameters: {e}"), Some("tools"))
            })?;
            out.push(Tool {
                name: name.to_string(),
                parameters,
            });
        }
    }
    let choice = match choice {
        None => Choice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => Choice::Auto,
            "none" => Choice::None,
            "required" => Choice::Required,
            other => {
                return Err(ApiError::bad(
                    format!("tool_choice '{other}' is not one of auto, none, required"),
                    Some("tool_choice"),
                ));
            }
        },
        Some(v) => {
            let name = v
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::bad("tool_choice must be a string or {\"type\": \"function\", \"function\": {\"name\": …}}", Some("tool_choice")))?;
            if !out.iter().any(|t| t.name == name) {
                return Err(ApiError::bad(
                    format!("tool_choice names '{name}', which is not in 'tools'"),
                    Some("tool_choice"),
                ));
            }
            Choice::Named(name.to_string())
        }
    };
    if matches!(choice, Choice::Required | Choice::Named(_)) && out.is_empty() {
        return Err(ApiError::bad(
            "tool_choice requires 'tools'",
            Some("tool_choice"),
        ));
    }
    Ok((out, choice))
}

/// The schema of a forced call: `{"name": …, "arguments": {…}}`.
pub fn forced_schema(tools: &[Tool], choice: &Choice) -> Option<Schema> {
    let chosen: Vec<&Tool> = match choice {
        Choice::Named(n) => tools.iter().filter(|t| &t.name == n).collect(),
        Choice::Required => tools.iter().collect(),
        _ => return None,
    };
    let names: Vec<Value> = chosen
        .iter()
        .map(|t| Value::String(t.name.clone()))
        .collect();
    // One tool: its own parameters; several: any object (a schema cannot tie the arguments
    // to the name without anyOf).
    let arguments = if chosen.len() == 1 {
        chosen[0].parameters.clone()
    } else {
        json!({"type": "object"})
    };
    let schema = json!({
        "type": "object",
        "properties": {"name": {"enum": names}, "arguments": arguments},
        "required": ["name", "arguments"],
        "additionalProperties": false
    });
    Schema::parse(&schema).ok()
}

/// A tool call as the API returns it.
pub fn call_json(index: usize, name: &str, arguments: &Value) -> Value {
    json!({
        "index": index,
        "id": format!("call_{}", random_id(24)),
        "type": "function",
        "function": {"name": name, "arguments": arguments.to_string()}
    })
}

/// Tool calls in a model's text, in the formats open models write them: Hermes/Qwen
/// `<tool_call>{…}</tool_call>`, Mistral `[TOOL_CALLS][…]`, and Llama 3.x's bare JSON object
/// (optionally after `<|python_tag|>`). Each call is `{"name": …, "arguments"|"parameters": …}`.
pub fn find_calls(text: &str, tools: &[Tool]) -> Vec<(String, Value)> {
    let mut found = vec![];
    let push = |found: &mut Vec<(String, Value)>, v: &Value| {
        let items: Vec<&Value> = match v {
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        for it in items {
            let name = it.get("name").and_then(Value::as_str);
            let args = it.get("arguments").or_else(|| it.get("parameters"));
            if let (Some(name), Some(args)) = (name, args)
                && tools.iter().any(|t| t.name == name)
            {
                // Some models write the arguments as a JSON string.
                let args = match args {
                    Value::String(s) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
                    other => other.clone(),
                };
                found.push((name.to_string(), args));
            }
        }
    };
    let mut rest = text;
    while let Some(start) = rest.find("<tool_call>") {
        let after = &rest[start + "<tool_call>".len()..];
        let end = after.find("</tool_call>").unwrap_or(after.len());
        if let Ok(v) = serde_json::from_str::<Value>(after[..end].trim()) {
            push(&mut found, &v);
        }
        rest = &after[end..];
    }
    if found.is_empty()
        && let Some(i) = text.find("[TOOL_CALLS]")
        && let Ok(v) = serde_json::from_str::<Value>(text[i + "[TOOL_CALLS]".len()..].trim())
    {
        push(&mut found, &v);
    }
    let t = text.trim().trim_start_matches("<|python_tag|>").trim();
    if found.is_empty()
        && (t.starts_with('{') || t.starts_with('['))
        && let Ok(v) = serde_json::from_str::<Value>(t)
    {
        push(&mut found, &v);
    }
    found
}

pub fn random_id(n: usize) -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let mut s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ (std::process::id() as u64).rotate_left(32);
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    s ^= COUNTER.fetch_add(0x9E37_79B9_7F4A_7C15, std::sync::atomic::Ordering::Relaxed);
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ALPHABET[(s % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> Vec<Tool> {
        vec![Tool {
            name: "get_weather".into(),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        }]
    }

    #[test]
    fn calls_are_found_in_the_formats_models_write() {
        let t = weather();
        for text in [
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
            "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]",
            "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
            "{\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": \\\"Paris\\\"}\"}",
        ] {
            assert_eq!(
                find_calls(text, &t),
                vec![("get_weather".to_string(), json!({"city": "Paris"}))],
                "{text}"
            );
        }
        assert!(find_calls("It is sunny in Paris.", &t).is_empty());
        assert!(find_calls("{\"name\": \"unknown\", \"arguments\": {}}", &t).is_empty());
    }

    #[test]
    fn tool_choice_is_checked_against_the_tools() {
        let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
        assert_eq!(
            parse(Some(&tools), Some(&json!("required"))).unwrap().1,
            Choice::Required
        );
        let e = parse(
            Some(&tools),
            Some(&json!({"type": "function", "function": {"name": "other"}})),
        )
        .unwrap_err();
        assert!(e.message.contains("'other'"));
        let bad =
            json!([{"type": "function", "function": {"name": "f", "parameters": {"anyOf": []}}}]);
        assert!(
            parse(Some(&bad), None)
                .unwrap_err()
                .message
                .contains("anyOf")
        );
    }
}
