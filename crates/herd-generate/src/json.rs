//! Constrained decoding for JSON: a push-down checker that says whether a text is the start of
//! a JSON value (optionally one that fits a JSON schema), fed piece by piece as tokens are
//! chosen. The sampler asks it about each candidate token, so the output always parses.
//!
//! Supported schema keywords: `type` (a name or a list), `properties`, `required`,
//! `additionalProperties` (false or a schema), `items`, `enum`, `const`, `minItems`,
//! `maxItems`; annotations (`title`, `description`, `default`, `examples`, `$schema`, `format`)
//! are ignored. Other keywords are refused up front by [`Schema::parse`], so a request never
//! gets output that silently ignores part of its schema.

use serde_json::Value;

/// Whitespace allowed between tokens in a row: enough for pretty-printing, not enough for a
/// model to pad forever.
const MAX_BLANK_RUN: usize = 32;

#[derive(Clone, Debug, PartialEq)]
pub struct Schema {
    types: Option<Vec<Kind>>,
    properties: Vec<(String, Schema)>,
    required: Vec<String>,
    /// `None`: any other key, with any value; `Some(None)`: no other key; `Some(Some(s))`:
    /// other keys with values fitting `s`.
    additional: Option<Option<Box<Schema>>>,
    items: Option<Box<Schema>>,
    min_items: usize,
    max_items: Option<usize>,
    /// Allowed values, as compact JSON texts.
    enumeration: Option<Vec<String>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Object,
    Array,
    String,
    Number,
    Integer,
    Boolean,
    Null,
}

impl Schema {
    /// Any JSON value.
    pub fn any() -> Self {
        Schema {
            types: None,
            properties: vec![],
            required: vec![],
            additional: None,
            items: None,
            min_items: 0,
            max_items: None,
            enumeration: None,
        }
    }

    /// Any JSON object (OpenAI's `json_object` mode).
    pub fn any_object() -> Self {
        Schema {
            types: Some(vec![Kind::Object]),
            ..Self::any()
        }
    }

    /// Reads a JSON schema; the error names the first unsupported keyword and where it is.
    pub fn parse(v: &Value) -> Result<Self, String> {
        Self::parse_at(v, "$")
    }

    fn parse_at(v: &Value, path: &str) -> Result<Self, String> {
        let obj = match v {
            Value::Bool(true) => return Ok(Self::any()),
            Value::Object(o) => o,
            other => return Err(format!("{path}: a schema must be an object, not {other}")),
        };
        let mut s = Self::any();
        for (k, val) in obj {
            let at = format!("{path}.{k}");
            match k.as_str() {
                "title" | "description" | "default" | "examples" | "$schema" | "format" | "$id"
                | "strict" => {}
                "type" => {
                    let names: Vec<&str> = match val {
                        Value::String(t) => vec![t.as_str()],
                        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                        _ => {
                            return Err(format!(
                                "{at}: 'type' must be a string or a list of strings"
                            ));
                        }
                    };
                    let kinds = names
                        .iter()
                        .map(|n| match *n {
                            "object" => Ok(Kind::Object),
                            "array" => Ok(Kind::Array),
                            "string" => Ok(Kind::String),
                            "number" => Ok(Kind::Number),
                            "integer" => Ok(Kind::Integer),
                            "boolean" => Ok(Kind::Boolean),
                            "null" => Ok(Kind::Null),
                            other => Err(format!("{at}: unknown type '{other}'")),
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    s.types = Some(kinds);
                }
                "properties" => {
                    let props = val
                        .as_object()
                        .ok_or(format!("{at}: 'properties' must be an object"))?;
                    for (name, sub) in props {
                        s.properties
                            .push((name.clone(), Self::parse_at(sub, &format!("{at}.{name}"))?));
                    }
                }
                "required" => {
                    s.required = val
                        .as_array()
                        .ok_or(format!("{at}: 'required' must be a list"))?
                        .iter()
                        .map(|r| {
                            r.as_str()
                                .map(str::to_string)
                                .ok_or(format!("{at}: names must be strings"))
                        })
                        .collect::<Result<_, _>>()?;
                }
                "additionalProperties" => {
                    s.additional = Some(match val {
                        Value::Bool(false) => None,
                        Value::Bool(true) => Some(Box::new(Self::any())),
                        sub => Some(Box::new(Self::parse_at(sub, &at)?)),
                    });
                }
                "items" => s.items = Some(Box::new(Self::parse_at(val, &at)?)),
                "minItems" => {
                    s.min_items = val.as_u64().ok_or(format!("{at}: must be a count"))? as usize
                }
                "maxItems" => {
                    s.max_items =
                        Some(val.as_u64().ok_or(format!("{at}: must be a count"))? as usize)
                }
                "enum" => {
                    let vals = val
                        .as_array()
                        .ok_or(format!("{at}: 'enum' must be a list"))?;
                    s.enumeration = Some(vals.iter().map(|v| v.to_string()).collect());
                }
                "const" => s.enumeration = Some(vec![val.to_string()]),
                other => {
                    return Err(format!(
                        "{at}: the JSON schema keyword '{other}' is not supported (herd supports type, properties, required, additionalProperties, items, enum, const, minItems, maxItems)"
                    ));
                }
            }
        }
        for r in &s.required {
            if s.additional == Some(None) && !s.properties.iter().any(|(n, _)| n == r) {
                return Err(format!(
                    "{path}: required property '{r}' is not allowed by additionalProperties: false"
                ));
            }
        }
        Ok(s)
    }

    fn allows(&self, k: Kind) -> bool {
        match &self.types {
            None => true,
            Some(ts) => ts.contains(&k) || (k == Kind::Integer && ts.contains(&Kind::Number)),
        }
    }

    fn property(&self, name: &str) -> Option<&Schema> {
        self.properties
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
    }

    /// May an object under this schema use the key `name`?
    fn key_allowed(&self, name: &str) -> bool {
        self.property(name).is_some() || self.additional != Some(None)
    }

    fn value_schema(&self, key: &str) -> Schema {
        match (self.property(key), &self.additional) {
            (Some(s), _) => s.clone(),
            (None, Some(Some(s))) => (**s).clone(),
            _ => Schema::any(),
        }
    }
}

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

/// The shortest value that fits `schema`.
fn default_value(schema: &Schema) -> String {
    if let Some(first) = schema.enumeration.as_ref().and_then(|e| e.first()) {
        return first.clone();
    }
    let kind = schema
        .types
        .as_ref()
        .and_then(|t| t.first().copied())
        .unwrap_or(Kind::Object);
    match kind {
        Kind::Object => format!("{{{}", close_object(schema, &[], ObjPhase::KeyOrEnd)),
        Kind::Array => {
            let item = default_value(&schema.items.as_deref().cloned().unwrap_or_else(Schema::any));
            format!("[{}]", vec![item; schema.min_items].join(", "))
        }
        Kind::String => "\"\"".into(),
        Kind::Number | Kind::Integer => "0".into(),
        Kind::Boolean => "false".into(),
        Kind::Null => "null".into(),
    }
}

/// Text that ends an object: its missing required properties, then `}`.
fn close_object(schema: &Schema, seen: &[String], phase: ObjPhase) -> String {
    let mut out = String::new();
    let mut first = phase == ObjPhase::KeyOrEnd;
    match phase {
        ObjPhase::Colon => {
            let key = seen.last().cloned().unwrap_or_default();
            out.push_str(": ");
            out.push_str(&default_value(&schema.value_schema(&key)));
            first = false;
        }
        ObjPhase::Key => {
            // After a comma a key must come: the first missing required one, else any allowed.
            let name = schema
                .required
                .iter()
                .find(|r| !seen.contains(r))
                .cloned()
                .or_else(|| {
                    schema
                        .properties
                        .iter()
                        .find(|(n, _)| !seen.contains(n))
                        .map(|(n, _)| n.clone())
                })
                .unwrap_or_else(|| "_".into());
            out.push_str(&format!(
                "{}: {}",
                serde_json::to_string(&name).unwrap_or_default(),
                default_value(&schema.value_schema(&name))
            ));
            let mut seen = seen.to_vec();
            seen.push(name);
            return out + &close_object(schema, &seen, ObjPhase::CommaOrEnd);
        }
        _ => {}
    }
    for r in &schema.required {
        if seen.contains(r) {
            continue;
        }
        if !first {
            out.push_str(", ");
        }
        first = false;
        out.push_str(&format!(
            "{}: {}",
            serde_json::to_string(r).unwrap_or_default(),
            default_value(&schema.value_schema(r))
        ));
    }
    out.push('}');
    out
}

/// Is `s` the start of a JSON number (an integer if `integer`)?
fn number_prefix_ok(s: &str, integer: bool) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i += 1;
    }
    if i == b.len() {
        return true;
    }
    if b[i] == b'0' {
        i += 1;
    } else if b[i].is_ascii_digit() {
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    } else {
        return false;
    }
    if i == b.len() {
        return true;
    }
    if b[i] == b'.' {
        if integer {
            return false;
        }
        i += 1;
        let digits_from = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == b.len() {
            return true;
        }
        // A fraction needs a digit before anything else.
        if i == digits_from {
            return false;
        }
    }
    if b[i] == b'e' || b[i] == b'E' {
        if integer {
            return false;
        }
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    i == b.len()
}

fn number_complete(s: &str) -> bool {
    let last = s.as_bytes().last().copied().unwrap_or(b'-');
    last.is_ascii_digit() && serde_json::from_str::<serde_json::Number>(s).is_ok()
}

fn enum_prefix_ok(schema: &Schema, prefix: &str) -> bool {
    match &schema.enumeration {
        None => true,
        Some(vals) => vals.iter().any(|v| v.starts_with(prefix)),
    }
}

fn enum_complete(schema: &Schema, text: &str) -> bool {
    match &schema.enumeration {
        None => true,
        Some(vals) => vals.iter().any(|v| v == text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(schema: &Value, text: &str) -> (bool, bool) {
        let mut c = JsonConstraint::new(Schema::parse(schema).unwrap());
        let fed = c.feed(text);
        (fed, fed && c.is_complete())
    }

    #[test]
    fn any_valid_json_passes_and_completes_and_nothing_may_follow() {
        let any = json!({});
        for text in [
            r#"{"a": [1, 2.5, -3e2, true, false, null, "x\"y\u00e9"], "b": {}}"#,
            "[]",
            "\"s\"",
            "0",
            "-0.5E+3",
            "null",
        ] {
            // Numbers at the root end only when something follows; objects and the rest end at once.
            let (fed, done) = ok(&any, text);
            assert!(fed, "{text}");
            if !text.chars().last().unwrap().is_ascii_digit() {
                assert!(done, "{text}");
            }
        }
        let mut c = JsonConstraint::new(Schema::any_object());
        assert!(c.feed("{}"));
        assert!(c.is_complete());
        assert!(!c.accepts(" "));
    }

    #[test]
    fn invalid_prefixes_are_refused() {
        let obj = Schema::any_object();
        for bad in [
            "x",
            "{a",
            "{\"a\" 1",
            "{\"a\":}",
            "{\"a\":1,}",
            "[1,]",
            "01",
            "1.e",
            "\"\n\"",
            "{\"a\":tru e}",
            "--1",
        ] {
            let mut c = JsonConstraint::new(
                if bad.starts_with('[')
                    || bad.starts_with('0')
                    || bad.starts_with('1')
                    || bad.starts_with('-')
                    || bad.starts_with('"')
                {
                    Schema::any()
                } else {
                    obj.clone()
                },
            );
            assert!(!c.feed(bad), "{bad:?} should be refused");
        }
        // json_object mode: the root must be an object.
        assert!(!JsonConstraint::new(Schema::any_object()).accepts("["));
    }

    #[test]
    fn schemas_steer_keys_types_and_enums() {
        let schema = json!({
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
                "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2}
            },
            "required": ["city", "unit"],
            "additionalProperties": false
        });
        assert_eq!(
            ok(
                &schema,
                r#"{"city": "Paris", "unit": "celsius", "days": 3, "tags": ["a", "b"]}"#
            ),
            (true, true)
        );
        assert_eq!(
            ok(&schema, r#"{"unit":"fahrenheit","city":""}"#),
            (true, true)
        );
        // Closing before the required keys, an unknown key, a wrong type, an enum miss,
        // a float for an integer, too many items, a repeated key.
        for bad in [
            r#"{"city": "Paris"}"#,
            r#"{"country""#,
            r#"{"city": 3"#,
            r#"{"unit": "kelvin""#,
            r#"{"days": 3.5"#,
            r#"{"tags": ["a", "b", "c""#,
            r#"{"city": "a", "city""#,
        ] {
            assert!(!ok(&schema, bad).0, "{bad} should be refused");
        }
        // Prefixes of allowed keys and enum values pass.
        assert!(ok(&schema, r#"{"ci"#).0 && ok(&schema, r#"{"unit": "fahr"#).0);
    }

    #[test]
    fn unsupported_keywords_are_named() {
        let e = Schema::parse(&json!({"type": "object", "properties": {"a": {"anyOf": []}}}))
            .unwrap_err();
        assert!(
            e.contains("$.properties.a.anyOf") && e.contains("not supported"),
            "{e}"
        );
        assert!(Schema::parse(&json!({"type": "thing"})).is_err());
    }

    #[test]
    fn every_prefix_has_a_completion_that_parses_and_fits() {
        let schema = json!({
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}, "pet": {"enum": ["cat", "dog"]},
                           "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
            "required": ["name", "age", "pet", "tags"],
            "additionalProperties": false
        });
        let full = r#"{"name": "Ann \u00e9", "age": -12, "pet": "dog", "tags": ["a", "b"]}"#;
        for s in [Schema::parse(&schema).unwrap(), Schema::any_object()] {
            for cut in 0..full.len() {
                let mut c = JsonConstraint::new(s.clone());
                if !c.feed(&full[..cut]) {
                    continue;
                }
                let comp = c.completion();
                let mut d = c.clone();
                assert!(
                    d.feed(&comp) && d.is_complete(),
                    "prefix {:?} + completion {comp:?} is not a whole value",
                    &full[..cut]
                );
                let v: Value = serde_json::from_str(&format!("{}{comp}", &full[..cut])).unwrap();
                assert!(v.is_object());
            }
        }
    }

    #[test]
    fn endless_whitespace_is_cut_off() {
        let mut c = JsonConstraint::new(Schema::any_object());
        assert!(c.feed("{"));
        assert!(c.feed(&" ".repeat(MAX_BLANK_RUN)));
        assert!(!c.accepts(" "));
        assert!(c.accepts("}"));
    }
}
