//! Constrained decoding for JSON: a push-down checker that says whether a text is the start of
//! a JSON value (optionally one that fits a JSON schema), fed piece by piece as tokens are
//! chosen. The sampler asks it about each candidate token, so the output always parses.
//!
//! Supported schema keywords: `type` (a name or a list), `properties`, `required`,
//! `additionalProperties` (false or a schema), `items`, `enum`, `const`, `minItems`,
//! `maxItems`; annotations (`title`, `description`, `default`, `examples`, `$schema`, `format`)
//! are ignored. Other keywords are refused up front by [`Schema::parse`], so a request never
//! gets output that silently ignores part of its schema.

mod close;
mod number;
mod schema;
#[cfg(test)]
mod tests;

use close::{close_object, default_value};
use number::{number_complete, number_prefix_ok};
pub use schema::Schema;
use schema::{Kind, enum_complete, enum_prefix_ok};

/// Whitespace allowed between tokens in a row: enough for pretty-printing, not enough for a
/// model to pad forever.
const MAX_BLANK_RUN: usize = 32;

#[derive(Clone, Debug)]
enum Frame {
    /// Expecting a value of this schema (after optional whitespace).
    Value(Schema),
    Object {
        schema: Schema,
        seen: Vec<String>,
        phase: ObjPhase,
    },
    Array {
        schema: Schema,
        count: usize,
        phase: ArrPhase,
    },
    Str {
        buf: String,
        esc: Esc,
        key: bool,
        schema: Schema,
    },
    Num {
        buf: String,
        integer: bool,
        schema: Schema,
    },
    Lit {
        text: &'static str,
        at: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum ObjPhase {
    /// After `{`: a key or `}`.
    KeyOrEnd,
    /// After `,`: a key.
    Key,
    /// After the key: `:`.
    Colon,
    /// After a value: `,` or `}`.
    CommaOrEnd,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum ArrPhase {
    ValueOrEnd,
    CommaOrEnd,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Esc {
    None,
    Backslash,
    Unicode(u8),
}

/// The checker's state after some text.
#[derive(Clone, Debug)]
pub struct JsonConstraint {
    stack: Vec<Frame>,
    /// The root value is complete.
    complete: bool,
    blank_run: usize,
}

impl JsonConstraint {
    pub fn new(schema: Schema) -> Self {
        JsonConstraint {
            stack: vec![Frame::Value(schema)],
            complete: false,
            blank_run: 0,
        }
    }

    /// Whether the text so far is a whole value: generation may (and must) end here.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// The shortest text that makes the output a complete value fitting the schema: used to
    /// close the output when the token budget runs out, so that it still parses.
    pub fn completion(&self) -> String {
        let mut out = String::new();
        for (depth, frame) in self.stack.iter().enumerate().rev() {
            let top = depth + 1 == self.stack.len();
            match frame {
                Frame::Value(schema) => out.push_str(&default_value(schema)),
                Frame::Lit { text, at } => out.push_str(&text[*at..]),
                Frame::Num { buf, .. } => {
                    if !number_complete(buf) {
                        out.push('0');
                    }
                }
                Frame::Str {
                    buf,
                    esc,
                    key,
                    schema,
                } => {
                    match esc {
                        Esc::Backslash => out.push('n'),
                        Esc::Unicode(n) => out.push_str(&"0".repeat(4 - *n as usize)),
                        Esc::None => {}
                    }
                    if *key {
                        // Finish the key as the first allowed property it can become.
                        if let Some(Frame::Object {
                            schema: obj, seen, ..
                        }) = self.stack.get(depth.wrapping_sub(1))
                        {
                            let name = obj
                                .properties
                                .iter()
                                .find(|(n, _)| n.starts_with(buf.as_str()) && !seen.contains(n))
                                .map(|(n, _)| n.clone())
                                .unwrap_or_else(|| buf.clone());
                            out.push_str(&name[buf.len().min(name.len())..]);
                            out.push_str("\": ");
                            out.push_str(&default_value(&obj.value_schema(&name)));
                            // The object's own closing below must know this key is now present.
                            let mut seen = seen.clone();
                            seen.push(name);
                            out.push_str(&close_object(obj, &seen, ObjPhase::CommaOrEnd));
                            // The object frame is handled here; skip it.
                            return out + &self.close_below(depth.saturating_sub(1));
                        }
                    } else {
                        match &schema.enumeration {
                            Some(vals) => {
                                let prefix = format!("\"{buf}");
                                if let Some(v) = vals.iter().find(|v| v.starts_with(&prefix)) {
                                    out.push_str(&v[prefix.len()..]);
                                }
                            }
                            None => out.push('"'),
                        }
                    }
                }
                Frame::Object {
                    schema,
                    seen,
                    phase,
                } => {
                    if top
                        || !matches!(self.stack.get(depth + 1), Some(Frame::Value(_)))
                        || *phase != ObjPhase::CommaOrEnd
                    {
                        out.push_str(&close_object(schema, seen, *phase));
                    } else {
                        out.push_str(&close_object(schema, seen, ObjPhase::CommaOrEnd));
                    }
                }
                Frame::Array {
                    schema,
                    count,
                    phase,
                } => {
                    let mut n = *count;
                    // A value being written (above this frame) counts once it is done.
                    if !top {
                        n += 1;
                    }
                    let item = default_value(
                        &schema.items.as_deref().cloned().unwrap_or_else(Schema::any),
                    );
                    let mut first = n == 0 && *phase == ArrPhase::ValueOrEnd;
                    while n < schema.min_items {
                        if !first {
                            out.push_str(", ");
                        }
                        first = false;
                        out.push_str(&item);
                        n += 1;
                    }
                    out.push(']');
                }
            }
        }
        out
    }

    /// Closing text for the frames below index `depth` (exclusive), outermost last.
    fn close_below(&self, depth: usize) -> String {
        let below = JsonConstraint {
            stack: self.stack[..depth].to_vec(),
            complete: false,
            blank_run: 0,
        };
        // Frames below are containers waiting for their current value to end.
        let mut out = String::new();
        for frame in below.stack.iter().rev() {
            match frame {
                Frame::Object { schema, seen, .. } => {
                    out.push_str(&close_object(schema, seen, ObjPhase::CommaOrEnd))
                }
                Frame::Array { schema, count, .. } => {
                    let item = default_value(
                        &schema.items.as_deref().cloned().unwrap_or_else(Schema::any),
                    );
                    let mut n = count + 1;
                    while n < schema.min_items {
                        out.push_str(", ");
                        out.push_str(&item);
                        n += 1;
                    }
                    out.push(']');
                }
                _ => {}
            }
        }
        out
    }

    /// Feeds `text`; false (leaving the state undefined) when it cannot continue a valid value.
    pub fn feed(&mut self, text: &str) -> bool {
        text.chars().all(|c| self.push(c))
    }

    /// Whether `text` could follow, without changing the state.
    pub fn accepts(&self, text: &str) -> bool {
        !text.is_empty() && self.clone().feed(text)
    }

    fn blank(&mut self, c: char) -> bool {
        if matches!(c, ' ' | '\n' | '\t' | '\r') {
            self.blank_run += 1;
            return self.blank_run <= MAX_BLANK_RUN;
        }
        false
    }

    fn push(&mut self, c: char) -> bool {
        if self.complete {
            // Nothing may follow the root value (not even whitespace: the output ends).
            return false;
        }
        let Some(top) = self.stack.pop() else {
            return false;
        };
        if !matches!(top, Frame::Str { .. }) && !matches!(c, ' ' | '\n' | '\t' | '\r') {
            self.blank_run = 0;
        }
        match top {
            Frame::Value(schema) => {
                if self.blank(c) {
                    self.stack.push(Frame::Value(schema));
                    return true;
                }
                self.start_value(schema, c)
            }
            Frame::Lit { text, at } => {
                if text.as_bytes().get(at) != Some(&(c as u8)) || !c.is_ascii() {
                    return false;
                }
                if at + 1 < text.len() {
                    self.stack.push(Frame::Lit { text, at: at + 1 });
                } else {
                    self.value_done();
                }
                true
            }
            Frame::Num {
                mut buf,
                integer,
                schema,
            } => {
                let mut next = buf.clone();
                next.push(c);
                if number_prefix_ok(&next, integer) && enum_prefix_ok(&schema, &next) {
                    buf = next;
                    self.stack.push(Frame::Num {
                        buf,
                        integer,
                        schema,
                    });
                    return true;
                }
                // The number ended: it must be whole, then `c` continues the enclosing value.
                if !number_complete(&buf) || !enum_complete(&schema, &buf) {
                    return false;
                }
                self.value_done();
                self.push(c)
            }
            Frame::Str {
                mut buf,
                esc,
                key,
                schema,
            } => {
                let esc = match esc {
                    Esc::Backslash => {
                        if c == 'u' {
                            Esc::Unicode(0)
                        } else if "\"\\/bfnrt".contains(c) {
                            Esc::None
                        } else {
                            return false;
                        }
                    }
                    Esc::Unicode(n) => {
                        if !c.is_ascii_hexdigit() {
                            return false;
                        }
                        if n == 3 {
                            Esc::None
                        } else {
                            Esc::Unicode(n + 1)
                        }
                    }
                    Esc::None => {
                        if c == '"' {
                            return self.string_done(buf, key, schema);
                        }
                        if (c as u32) < 0x20 {
                            return false;
                        }
                        if c == '\\' { Esc::Backslash } else { Esc::None }
                    }
                };
                buf.push(c);
                if key && !self.key_prefix_ok(&buf) {
                    return false;
                }
                if !key && !enum_prefix_ok(&schema, &format!("\"{buf}")) {
                    return false;
                }
                self.stack.push(Frame::Str {
                    buf,
                    esc,
                    key,
                    schema,
                });
                true
            }
            Frame::Object {
                schema,
                seen,
                phase,
            } => self.object_char(schema, seen, phase, c),
            Frame::Array {
                schema,
                count,
                phase,
            } => self.array_char(schema, count, phase, c),
        }
    }

    fn start_value(&mut self, schema: Schema, c: char) -> bool {
        let kind = match c {
            '{' => Kind::Object,
            '[' => Kind::Array,
            '"' => Kind::String,
            '-' | '0'..='9' => Kind::Number,
            't' | 'f' => Kind::Boolean,
            'n' => Kind::Null,
            _ => return false,
        };
        let ok = schema.allows(kind) || (kind == Kind::Number && schema.allows(Kind::Integer));
        if !ok {
            return false;
        }
        match kind {
            Kind::Object => {
                if !enum_prefix_ok(&schema, "{") {
                    return false;
                }
                self.stack.push(Frame::Object {
                    schema,
                    seen: vec![],
                    phase: ObjPhase::KeyOrEnd,
                })
            }
            Kind::Array => {
                if !enum_prefix_ok(&schema, "[") {
                    return false;
                }
                self.stack.push(Frame::Array {
                    schema,
                    count: 0,
                    phase: ArrPhase::ValueOrEnd,
                })
            }
            Kind::String => {
                if !enum_prefix_ok(&schema, "\"") {
                    return false;
                }
                self.stack.push(Frame::Str {
                    buf: String::new(),
                    esc: Esc::None,
                    key: false,
                    schema,
                })
            }
            Kind::Number | Kind::Integer => {
                let integer = !schema.allows(Kind::Number)
                    || matches!(&schema.types, Some(t) if !t.contains(&Kind::Number));
                let buf = c.to_string();
                if !enum_prefix_ok(&schema, &buf) {
                    return false;
                }
                self.stack.push(Frame::Num {
                    buf,
                    integer,
                    schema,
                })
            }
            Kind::Boolean | Kind::Null => {
                let text = match c {
                    't' => "true",
                    'f' => "false",
                    _ => "null",
                };
                if !enum_prefix_ok(&schema, text) && schema.enumeration.is_some() {
                    // Literals are checked whole against the enum.
                    if !schema
                        .enumeration
                        .as_ref()
                        .is_some_and(|e| e.iter().any(|v| v == text))
                    {
                        return false;
                    }
                }
                self.stack.push(Frame::Lit { text, at: 1 })
            }
        }
        true
    }

    /// The innermost value finished: tell its container.
    fn value_done(&mut self) {
        match self.stack.last_mut() {
            None => self.complete = true,
            Some(Frame::Object { phase, .. }) => *phase = ObjPhase::CommaOrEnd,
            Some(Frame::Array { phase, count, .. }) => {
                *phase = ArrPhase::CommaOrEnd;
                *count += 1;
            }
            Some(_) => {}
        }
    }

    fn string_done(&mut self, buf: String, key: bool, schema: Schema) -> bool {
        if key {
            // The object frame is on top again: record the key and wait for the colon.
            let Some(Frame::Object {
                schema: obj,
                seen,
                phase,
            }) = self.stack.last_mut()
            else {
                return false;
            };
            if seen.contains(&buf) || !obj.key_allowed(&buf) {
                return false;
            }
            seen.push(buf);
            *phase = ObjPhase::Colon;
            return true;
        }
        if !enum_complete(&schema, &format!("\"{buf}\"")) {
            return false;
        }
        self.value_done();
        true
    }

    fn key_prefix_ok(&self, prefix: &str) -> bool {
        match self.stack.last() {
            Some(Frame::Object { schema, seen, .. }) => {
                if schema.additional != Some(None) {
                    return true;
                }
                schema
                    .properties
                    .iter()
                    .any(|(n, _)| n.starts_with(prefix) && !seen.contains(n))
            }
            _ => false,
        }
    }

    fn object_char(&mut self, schema: Schema, seen: Vec<String>, phase: ObjPhase, c: char) -> bool {
        let blank = matches!(c, ' ' | '\n' | '\t' | '\r');
        match phase {
            _ if blank => {
                self.stack.push(Frame::Object {
                    schema,
                    seen,
                    phase,
                });
                self.blank(c)
            }
            ObjPhase::KeyOrEnd | ObjPhase::Key if c == '"' => {
                self.stack.push(Frame::Object {
                    schema,
                    seen,
                    phase,
                });
                let possible = self.key_prefix_ok("");
                self.stack.push(Frame::Str {
                    buf: String::new(),
                    esc: Esc::None,
                    key: true,
                    schema: Schema::any(),
                });
                possible
            }
            ObjPhase::KeyOrEnd | ObjPhase::CommaOrEnd if c == '}' => {
                if !schema.required.iter().all(|r| seen.contains(r)) {
                    return false;
                }
                self.value_done();
                true
            }
            ObjPhase::CommaOrEnd if c == ',' => {
                // Another key must be possible.
                let more = schema.additional != Some(None)
                    || schema.properties.iter().any(|(n, _)| !seen.contains(n));
                self.stack.push(Frame::Object {
                    schema,
                    seen,
                    phase: ObjPhase::Key,
                });
                more
            }
            ObjPhase::Colon if c == ':' => {
                let key = seen.last().cloned().unwrap_or_default();
                let vs = schema.value_schema(&key);
                self.stack.push(Frame::Object {
                    schema,
                    seen,
                    phase: ObjPhase::CommaOrEnd,
                });
                self.stack.push(Frame::Value(vs));
                true
            }
            _ => false,
        }
    }

    fn array_char(&mut self, schema: Schema, count: usize, phase: ArrPhase, c: char) -> bool {
        let blank = matches!(c, ' ' | '\n' | '\t' | '\r');
        let items = schema.items.as_deref().cloned().unwrap_or_else(Schema::any);
        match phase {
            _ if blank => {
                self.stack.push(Frame::Array {
                    schema,
                    count,
                    phase,
                });
                self.blank(c)
            }
            ArrPhase::ValueOrEnd | ArrPhase::CommaOrEnd if c == ']' => {
                if count < schema.min_items {
                    return false;
                }
                self.value_done();
                true
            }
            ArrPhase::CommaOrEnd if c == ',' => {
                if schema.max_items.is_some_and(|m| count >= m) {
                    return false;
                }
                // A value must follow a comma (no trailing commas).
                self.stack.push(Frame::Array {
                    schema,
                    count,
                    phase: ArrPhase::ValueOrEnd,
                });
                self.stack.push(Frame::Value(items));
                true
            }
            ArrPhase::ValueOrEnd => {
                if schema.max_items.is_some_and(|m| count >= m) {
                    return false;
                }
                // The value's end (`value_done`) counts it and moves to CommaOrEnd.
                self.stack.push(Frame::Array {
                    schema,
                    count,
                    phase: ArrPhase::ValueOrEnd,
                });
                self.start_value(items, c)
            }
            _ => false,
        }
    }
}
