//! What Python does with template values where minijinja would do otherwise: `str()` of values
//! (what `{{ x }}` prints in Jinja2), `json.dumps` (transformers' `tojson`), and the string, list
//! and dict methods that chat templates call. Templates were written against Python, so a
//! rendering that differs here changes the prompt the model sees.

use minijinja::value::{Kwargs, Rest, ValueKind, from_args};
use minijinja::{Error, ErrorKind, State, Value};

use super::objects;

/// Python's `str(value)`: what Jinja2 prints for `{{ value }}`.
pub fn py_str(out: &mut String, value: &Value) -> Result<(), Error> {
    match value.kind() {
        ValueKind::Undefined => {}
        ValueKind::String => out.push_str(value.as_str().unwrap_or_default()),
        _ => py_repr(out, value, 0)?,
    }
    Ok(())
}

/// Deep enough for any real data; stops self-referencing or hostile values.
const MAX_DEPTH: usize = 100;

fn too_deep() -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        "value is nested too deeply to print",
    )
}

/// Python's `repr(value)`: how values inside lists and dicts print.
fn py_repr(out: &mut String, value: &Value, depth: usize) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err(too_deep());
    }
    match value.kind() {
        ValueKind::Undefined => {}
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number => push_number(out, value),
        ValueKind::String => repr_str(out, value.as_str().unwrap_or_default()),
        ValueKind::Seq => {
            // `dict.items()` yields tuples: `('a', 1)`, and `(x,)` for one item.
            let tuple = value.is_tuple();
            out.push(if tuple { '(' } else { '[' });
            let mut n = 0;
            for (i, item) in value.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(out, &item, depth + 1)?;
                n += 1;
            }
            if tuple && n == 1 {
                out.push(',');
            }
            out.push(if tuple { ')' } else { ']' });
        }
        ValueKind::Map => {
            out.push('{');
            for (i, key) in value.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(out, &key, depth + 1)?;
                out.push_str(": ");
                py_repr(out, &value.get_item(&key)?, depth + 1)?;
            }
            out.push('}');
        }
        // Generators, namespaces, macros: Python prints an address; there is nothing faithful
        // to print, so fall back to minijinja's own text.
        _ => out.push_str(&value.to_string()),
    }
    Ok(())
}

fn push_number(out: &mut String, value: &Value) {
    if value.is_integer() {
        out.push_str(&value.to_string());
    } else {
        match f64::try_from(value.clone()) {
            Ok(f) => out.push_str(&float_repr(f)),
            Err(_) => out.push_str(&value.to_string()),
        }
    }
}

/// Python's `repr(str)`: single quotes unless the text has one and no double quote.
fn repr_str(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// Python's `repr(float)`: the shortest digits that round-trip, positional from 1e-4 up to
/// 1e16, scientific with a signed two-digit exponent outside that, always with a `.0` or an
/// exponent so it reads back as a float.
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits, e.g. "1.5e-7" or "-2e20".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        let s = if point <= 0 {
            format!("0.{}{}", "0".repeat((-point) as usize), digits)
        } else if point as usize >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
        } else {
            let (a, b) = digits.split_at(point as usize);
            format!("{a}.{b}")
        };
        format!("{sign}{s}")
    } else {
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{esign}{:02}", exp.abs())
    }
}

/// Options of Python's `json.dumps` that transformers' `tojson` passes on.
pub struct JsonOptions {
    pub ensure_ascii: bool,
    /// `None`: everything on one line.
    pub indent: Option<String>,
    pub item_sep: String,
    pub key_sep: String,
    pub sort_keys: bool,
}

/// transformers' `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`,
/// which is `json.dumps` with those arguments (and no HTML escaping, unlike Jinja's own).
pub fn tojson_filter(
    state: &State,
    value: &Value,
    args: Rest<Value>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    if args.len() > 4 {
        return Err(Error::new(
            ErrorKind::TooManyArguments,
            "tojson takes at most 4 positional arguments",
        ));
    }
    // Positional arguments in the order of transformers' signature.
    let pos = |i: usize| args.get(i).cloned();
    let pick = |i: usize, name: &str| -> Result<Option<Value>, Error> {
        let kw: Option<Value> = kwargs.get(name)?;
        Ok(kw.or(pos(i)).filter(|v| !v.is_none() && !v.is_undefined()))
    };
    let ensure_ascii = pick(0, "ensure_ascii")?.is_some_and(|v| v.is_true());
    let sort_keys = pick(3, "sort_keys")?.is_some_and(|v| v.is_true());
    let indent = match pick(1, "indent")? {
        None => None,
        Some(v) if v.kind() == ValueKind::String => {
            Some(v.as_str().unwrap_or_default().to_string())
        }
        Some(v) => {
            let n = i64::try_from(v)?;
            Some(" ".repeat(n.clamp(0, 64) as usize))
        }
    };
    let (item_sep, key_sep) = match pick(2, "separators")? {
        Some(v) => {
            let (a, b): (String, String) = from_args(&v.try_iter()?.collect::<Vec<_>>())?;
            (a, b)
        }
        None if indent.is_some() => (",".into(), ": ".into()),
        None => (", ".into(), ": ".into()),
    };
    kwargs.assert_all_used()?;
    let opts = JsonOptions {
        ensure_ascii,
        indent,
        item_sep,
        key_sep,
        sort_keys,
    };
    let mut out = String::new();
    dumps(&mut out, value, &opts, 0)?;
    // Pay for the text made, like minijinja's own filters do, so `tojson` cannot blow up output.
    state.consume_fuel(out.len() as u64 / 64)?;
    Ok(Value::from(out))
}

fn not_serializable(value: &Value) -> Error {
    let what = match value.kind() {
        ValueKind::Undefined => "Undefined".to_string(),
        _ if objects::is_generator(value) => "generator".to_string(),
        ValueKind::Iterable => "generator".to_string(),
        kind => kind.to_string(),
    };
    Error::new(
        ErrorKind::InvalidOperation,
        format!("Object of type {what} is not JSON serializable"),
    )
}

/// Python's `json.dumps`.
pub fn dumps(out: &mut String, value: &Value, o: &JsonOptions, depth: usize) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err(too_deep());
    }
    let newline = |out: &mut String, level: usize| {
        if let Some(ind) = &o.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(ind);
            }
        }
    };
    if objects::is_py_none(value) {
        out.push_str("null");
        return Ok(());
    }
    if objects::is_generator(value) {
        return Err(not_serializable(value));
    }
    match value.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if value.is_integer() {
                out.push_str(&value.to_string());
            } else {
                let f = f64::try_from(value.clone())?;
                out.push_str(&match float_repr(f).as_str() {
                    "nan" => "NaN".to_string(),
                    "inf" => "Infinity".to_string(),
                    "-inf" => "-Infinity".to_string(),
                    s => s.to_string(),
                });
            }
        }
        ValueKind::String => json_str(out, value.as_str().unwrap_or_default(), o.ensure_ascii),
        ValueKind::Seq => {
            let items: Vec<Value> = value.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&o.item_sep);
                }
                newline(out, depth + 1);
                dumps(out, item, o, depth + 1)?;
            }
            newline(out, depth);
            out.push(']');
        }
        ValueKind::Map => {
            let mut pairs = Vec::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                let key = match key.kind() {
                    ValueKind::String => key.as_str().unwrap_or_default().to_string(),
                    ValueKind::None => "null".into(),
                    ValueKind::Bool | ValueKind::Number => {
                        let mut s = String::new();
                        dumps(&mut s, &key, o, depth + 1)?;
                        s
                    }
                    _ => {
                        return Err(Error::new(
                            ErrorKind::InvalidOperation,
                            format!(
                                "keys must be str, int, float, bool or None, not {}",
                                key.kind()
                            ),
                        ));
                    }
                };
                pairs.push((key, item));
            }
            if pairs.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            if o.sort_keys {
                pairs.sort_by(|a, b| a.0.cmp(&b.0));
            }
            out.push('{');
            for (i, (key, item)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push_str(&o.item_sep);
                }
                newline(out, depth + 1);
                json_str(out, key, o.ensure_ascii);
                out.push_str(&o.key_sep);
                dumps(out, item, o, depth + 1)?;
            }
            newline(out, depth);
            out.push('}');
        }
        _ => return Err(not_serializable(value)),
    }
    Ok(())
}

fn json_str(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            // With ensure_ascii Python escapes everything outside ' '..'~', DEL included.
            c if ensure_ascii && (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Methods on strings, lists and dicts: minijinja-contrib's Python compatibility layer plus the
/// few it lacks or does differently from Python. Mutating methods (`append`, `pop`, `update`)
/// stay unknown: transformers renders in Jinja's *immutable* sandbox, which refuses them too.
pub fn unknown_method(
    state: &mut State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    if let Some(s) = value.as_str() {
        match method {
            // Python strips only whitespace by default; `chars=None` means the same.
            "strip" | "lstrip" | "rstrip" => {
                let (chars,): (Option<Value>,) = from_args(args)?;
                if let Some(chars) = chars.filter(|c| !c.is_none()) {
                    let set: Vec<char> = chars.as_str().unwrap_or_default().chars().collect();
                    let f = |c: char| set.contains(&c);
                    return Ok(Value::from(match method {
                        "strip" => s.trim_matches(f),
                        "lstrip" => s.trim_start_matches(f),
                        _ => s.trim_end_matches(f),
                    }));
                }
                return Ok(Value::from(match method {
                    "strip" => s.trim(),
                    "lstrip" => s.trim_start(),
                    _ => s.trim_end(),
                }));
            }
            "split" | "rsplit" => return split(s, method == "rsplit", args),
            "removeprefix" => {
                let (p,): (&str,) = from_args(args)?;
                return Ok(Value::from(s.strip_prefix(p).unwrap_or(s)));
            }
            "removesuffix" => {
                let (p,): (&str,) = from_args(args)?;
                return Ok(Value::from(s.strip_suffix(p).unwrap_or(s)));
            }
            "index" | "rindex" => {
                let (what,): (&str,) = from_args(args)?;
                let found = if method == "index" {
                    s.find(what)
                } else {
                    s.rfind(what)
                };
                return match found {
                    Some(i) => Ok(Value::from(s[..i].chars().count())),
                    None => Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "substring not found",
                    )),
                };
            }
            _ => {}
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// Python's `str.split` / `str.rsplit`: without a separator it splits on runs of whitespace and
/// drops empty pieces; `maxsplit` counts from the left (`split`) or the right (`rsplit`).
fn split(s: &str, from_right: bool, args: &[Value]) -> Result<Value, Error> {
    let (sep, maxsplit): (Option<Value>, Option<i64>) = from_args(args)?;
    let sep = sep.filter(|v| !v.is_none());
    let max = maxsplit.filter(|n| *n >= 0).map(|n| n as usize);
    let parts: Vec<String> = match sep {
        Some(sep) => {
            let sep = sep.as_str().ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    "split separator must be a string",
                )
            })?;
            if sep.is_empty() {
                return Err(Error::new(ErrorKind::InvalidOperation, "empty separator"));
            }
            match (max, from_right) {
                (None, _) => s.split(sep).map(String::from).collect(),
                (Some(n), false) => s.splitn(n + 1, sep).map(String::from).collect(),
                (Some(n), true) => {
                    let mut v: Vec<String> = s.rsplitn(n + 1, sep).map(String::from).collect();
                    v.reverse();
                    v
                }
            }
        }
        None => {
            let words: Vec<&str> = s.split_whitespace().collect();
            match max {
                Some(n) if n < words.len() => {
                    // The remainder keeps its inner whitespace, as in Python.
                    let mut rest = if from_right {
                        s.trim_end()
                    } else {
                        s.trim_start()
                    };
                    let mut v = Vec::new();
                    for _ in 0..n {
                        if from_right {
                            let cut = rest.rfind(char::is_whitespace).unwrap_or(0);
                            v.push(rest[cut..].trim_start().to_string());
                            rest = rest[..cut].trim_end();
                        } else {
                            let cut = rest.find(char::is_whitespace).unwrap_or(rest.len());
                            v.push(rest[..cut].to_string());
                            rest = rest[cut..].trim_start();
                        }
                    }
                    v.push(rest.to_string());
                    if from_right {
                        v.reverse();
                    }
                    v
                }
                _ => words.into_iter().map(String::from).collect(),
            }
        }
    };
    Ok(Value::from(parts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_python() {
        for (f, want) in [
            (22.5, "22.5"),
            (1.0, "1.0"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1234567890123456.0, "1234567890123456.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5e-7, "-2.5e-07"),
            (1.5e300, "1.5e+300"),
        ] {
            assert_eq!(float_repr(f), want, "{f}");
        }
    }

    #[test]
    fn repr_like_python() {
        let v = crate::template::to_value(&serde_json::json!({"a": [1, 2.0, "it's", null, true]}));
        let mut s = String::new();
        py_str(&mut s, &v).unwrap();
        assert_eq!(s, r#"{'a': [1, 2.0, "it's", None, True]}"#);
    }
}
