//! Reading instruction datasets row by row, with the file and line of every problem.
//!
//! - Alpaca: `{"instruction", "input"?, "output"}` objects, as a JSON array or JSON lines.
//!   The user turn is the instruction, followed by a blank line and the input when there is
//!   one (Alpaca's own prompt joins them the same way).
//! - ShareGPT: `{"conversations": [{"from": "human"|"gpt"|"system", "value"}]}`.
//! - OpenAI messages: `{"messages": [{"role", "content"}]}`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Alpaca,
    ShareGpt,
    Messages,
}

impl Format {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "alpaca" => Some(Format::Alpaca),
            "sharegpt" => Some(Format::ShareGpt),
            "messages" | "openai" => Some(Format::Messages),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Alpaca => "alpaca",
            Format::ShareGpt => "sharegpt",
            Format::Messages => "messages",
        }
    }

    /// The format a record looks like.
    fn detect(v: &Value) -> Option<Self> {
        if v.get("conversations").is_some() {
            Some(Format::ShareGpt)
        } else if v.get("messages").is_some() {
            Some(Format::Messages)
        } else if v.get("instruction").is_some() || v.get("output").is_some() {
            Some(Format::Alpaca)
        } else {
            None
        }
    }
}

/// Where a row is: file and 1-based line of the start of its record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    /// 0-based position of the record in the file.
    pub index: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{} (record {})",
            self.file.display(),
            self.line,
            self.index + 1
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

#[derive(Clone, Debug)]
pub struct Row {
    pub messages: Vec<Message>,
    pub location: Location,
}

/// A row that could not be used, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError {
    pub location: Location,
    pub reason: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.location, self.reason)
    }
}

#[derive(Clone, Debug)]
pub struct Dataset {
    pub format: Format,
    pub rows: Vec<Row>,
    /// Rows skipped, with reasons (empty with `strict`: the first one is an error instead).
    pub skipped: Vec<RowError>,
}

/// A record's byte offset and its value, or why it does not parse.
type Record = (usize, std::result::Result<Value, String>);

/// Byte offsets and values of the records of a JSON array or of JSON lines.
fn records(path: &Path, text: &str) -> Result<Vec<Record>> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let start = text.len() - trimmed.len();
        return split_array(text, start).map_err(|(at, msg)| Error::Format {
            location: Location {
                file: path.to_path_buf(),
                line: line_of(text, at),
                index: 0,
            },
            reason: msg,
        });
    }
    let mut out = vec![];
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if !line.trim().is_empty() {
            out.push((
                offset,
                serde_json::from_str::<Value>(line).map_err(|e| format!("not valid JSON: {e}")),
            ));
        }
        offset += line.len();
    }
    Ok(out)
}

/// The elements of the top-level array starting at `start`, each parsed on its own so that a
/// broken element is reported where it is and the rest are still read.
fn split_array(text: &str, start: usize) -> std::result::Result<Vec<Record>, (usize, String)> {
    let b = text.as_bytes();
    let mut out = vec![];
    let (mut depth, mut in_str, mut esc) = (0usize, false, false);
    let mut elem_start = None;
    let mut i = start + 1;
    let mut closed = false;
    while i < b.len() {
        let c = b[i];
        if in_str {
            if esc {
                esc = false;
            } else if c == b'\\' {
                esc = true;
            } else if c == b'"' {
                in_str = false;
            }
        } else {
            match c {
                b'"' => {
                    in_str = true;
                    elem_start.get_or_insert(i);
                }
                b'{' | b'[' => {
                    depth += 1;
                    elem_start.get_or_insert(i);
                }
                b'}' | b']' if depth > 0 => depth -= 1,
                b',' | b']' if depth == 0 => {
                    if let Some(s) = elem_start.take() {
                        out.push((
                            s,
                            serde_json::from_str::<Value>(&text[s..i])
                                .map_err(|e| format!("not valid JSON: {e}")),
                        ));
                    } else if c == b',' {
                        return Err((i, "an empty element in the top-level array".into()));
                    }
                    if c == b']' {
                        closed = true;
                        break;
                    }
                }
                c if c.is_ascii_whitespace() => {}
                _ => {
                    elem_start.get_or_insert(i);
                }
            }
        }
        i += 1;
    }
    if !closed {
        return Err((
            text.len(),
            "the top-level array is not closed (truncated file?)".into(),
        ));
    }
    Ok(out)
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&c| c == b'\n')
        .count()
        + 1
}

fn text_field<'a>(
    v: &'a Value,
    key: &str,
    required: bool,
) -> std::result::Result<Option<&'a str>, String> {
    match v.get(key) {
        None | Some(Value::Null) if !required => Ok(None),
        None | Some(Value::Null) => Err(format!("missing field '{key}'")),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!(
            "field '{key}' should be a string, found {}",
            kind(other)
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn messages_of(format: Format, v: &Value) -> std::result::Result<Vec<Message>, String> {
    if !v.is_object() {
        return Err(format!("a record should be an object, found {}", kind(v)));
    }
    let msgs = match format {
        Format::Alpaca => {
            let instruction = text_field(v, "instruction", true)?.unwrap_or("");
            let input = text_field(v, "input", false)?.unwrap_or("");
            let output = text_field(v, "output", true)?.unwrap_or("");
            let mut user = instruction.to_string();
            if !input.trim().is_empty() {
                user.push_str("\n\n");
                user.push_str(input);
            }
            let mut m = vec![];
            if let Some(system) = text_field(v, "system", false)? {
                m.push(Message {
                    role: "system".into(),
                    content: system.into(),
                });
            }
            m.push(Message {
                role: "user".into(),
                content: user,
            });
            m.push(Message {
                role: "assistant".into(),
                content: output.into(),
            });
            m
        }
        Format::ShareGpt => {
            let conv = v
                .get("conversations")
                .and_then(Value::as_array)
                .ok_or("field 'conversations' should be a list")?;
            conv.iter()
                .enumerate()
                .map(|(i, turn)| {
                    let from = text_field(turn, "from", true)
                        .map_err(|e| format!("conversations[{i}]: {e}"))?
                        .unwrap_or("");
                    let value = text_field(turn, "value", true)
                        .map_err(|e| format!("conversations[{i}]: {e}"))?
                        .unwrap_or("");
                    let role = match from {
                        "human" | "user" => "user",
                        "gpt" | "assistant" | "chatgpt" | "bard" | "bing" => "assistant",
                        "system" => "system",
                        other => {
                            return Err(format!("conversations[{i}]: unknown speaker '{other}'"));
                        }
                    };
                    Ok(Message {
                        role: role.into(),
                        content: value.into(),
                    })
                })
                .collect::<std::result::Result<Vec<_>, String>>()?
        }
        Format::Messages => {
            let list = v
                .get("messages")
                .and_then(Value::as_array)
                .ok_or("field 'messages' should be a list")?;
            list.iter()
                .enumerate()
                .map(|(i, m)| {
                    let role = text_field(m, "role", true)
                        .map_err(|e| format!("messages[{i}]: {e}"))?
                        .unwrap_or("");
                    let content = text_field(m, "content", true)
                        .map_err(|e| format!("messages[{i}]: {e}"))?
                        .unwrap_or("");
                    if !matches!(role, "system" | "user" | "assistant") {
                        return Err(format!(
                            "messages[{i}]: role '{role}' is not system, user or assistant"
                        ));
                    }
                    Ok(Message {
                        role: role.into(),
                        content: content.into(),
                    })
                })
                .collect::<std::result::Result<Vec<_>, String>>()?
        }
    };
    if !msgs.iter().any(|m| m.role == "assistant") {
        return Err("no assistant answer to learn from".into());
    }
    if let Some(m) = msgs
        .iter()
        .find(|m| m.role == "assistant" && m.content.trim().is_empty())
    {
        let _ = m;
        return Err("an empty answer".into());
    }
    Ok(msgs)
}

/// Reads `path` (format detected from its first record unless given). Bad rows are collected
/// with their location, or, with `strict`, the first one is returned as an error.
pub fn load(path: &Path, format: Option<Format>, strict: bool) -> Result<Dataset> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let recs = records(path, &text)?;
    let format = match format {
        Some(f) => f,
        None => recs
            .iter()
            .find_map(|(_, v)| v.as_ref().ok().and_then(Format::detect))
            .ok_or_else(|| Error::Format {
                location: Location { file: path.to_path_buf(), line: 1, index: 0 },
                reason: "cannot tell the format: no record has instruction/output (alpaca), conversations (sharegpt) or messages".into(),
            })?,
    };
    let mut rows = vec![];
    let mut skipped = vec![];
    for (index, (offset, value)) in recs.into_iter().enumerate() {
        let location = Location {
            file: path.to_path_buf(),
            line: line_of(&text, offset),
            index,
        };
        match value.and_then(|v| messages_of(format, &v)) {
            Ok(messages) => rows.push(Row { messages, location }),
            Err(reason) => {
                if strict {
                    return Err(Error::Format { location, reason });
                }
                skipped.push(RowError { location, reason });
            }
        }
    }
    Ok(Dataset {
        format,
        rows,
        skipped,
    })
}
