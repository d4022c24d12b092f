//! Reading dataset files into records (field name → JSON value) that remember where they came
//! from: CSV (RFC 4180: quoted fields may hold commas, quotes and newlines), JSON lines, and a
//! JSON array. A row that cannot be read is an error with its file and line, never skipped.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// One row of a dataset file.
#[derive(Clone, Debug)]
pub struct Record {
    pub path: PathBuf,
    /// 1-based line where the row starts.
    pub line: usize,
    pub fields: Map<String, Value>,
}

impl Record {
    /// A row error at this record's place.
    pub fn error(&self, msg: impl Into<String>) -> Error {
        Error::row(&self.path, self.line, msg)
    }

    /// The field `name` as text (numbers are written as JSON writes them).
    pub fn text(&self, name: &str) -> Result<String> {
        match self.fields.get(name) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            Some(Value::Bool(b)) => Ok(b.to_string()),
            Some(Value::Null) | None => Err(self.error(format!("no field '{name}'"))),
            Some(other) => Err(self.error(format!("field '{name}' is not text: {other}"))),
        }
    }
}

/// File formats a task can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Jsonl,
    Json,
}

impl Format {
    /// From a file's extension.
    pub fn of(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "csv" => Some(Format::Csv),
            "jsonl" => Some(Format::Jsonl),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// How to read one file.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    pub format: Option<Format>,
    /// Column names of a CSV file without a header row.
    pub columns: Option<Vec<String>>,
}

/// The files of `path`: the file itself, or the data files of a folder in name order.
pub fn files(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = vec![];
    for e in std::fs::read_dir(path).map_err(|e| Error::io(path, e))? {
        let p = e.map_err(|e| Error::io(path, e))?.path();
        if Format::of(&p).is_some() {
            out.push(p);
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(Error::file(
            path,
            "no .csv, .jsonl or .json files in this folder",
        ));
    }
    Ok(out)
}

/// Every record of one file.
pub fn read(path: &Path, opts: &ReadOptions) -> Result<Vec<Record>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let format = opts.format.or_else(|| Format::of(path)).ok_or_else(|| {
        Error::file(
            path,
            "unknown data format (give format = csv, jsonl or json)",
        )
    })?;
    match format {
        Format::Jsonl => read_jsonl(path, &text),
        Format::Json => read_json(path, &text),
        Format::Csv => read_csv(path, &text, opts.columns.as_deref()),
    }
}

fn object(path: &Path, line: usize, v: Value) -> Result<Record> {
    match v {
        Value::Object(fields) => Ok(Record {
            path: path.to_path_buf(),
            line,
            fields,
        }),
        other => Err(Error::row(
            path,
            line,
            format!("expected a JSON object, found {}", kind(&other)),
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn read_jsonl(path: &Path, text: &str) -> Result<Vec<Record>> {
    let mut out = vec![];
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(l)
            .map_err(|e| Error::row(path, i + 1, format!("bad JSON: {e}")))?;
        out.push(object(path, i + 1, v)?);
    }
    Ok(out)
}

fn read_json(path: &Path, text: &str) -> Result<Vec<Record>> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| Error::row(path, e.line(), format!("bad JSON: {e}")))?;
    let Value::Array(rows) = v else {
        return Err(Error::file(path, "expected a JSON array of objects"));
    };
    // serde_json gives no positions inside a parsed value; the line of each element is found
    // by scanning for the start of each top-level object.
    let starts = top_level_object_lines(text);
    rows.into_iter()
        .enumerate()
        .map(|(i, r)| object(path, starts.get(i).copied().unwrap_or(0), r))
        .collect()
}

/// Lines (1-based) where each object directly inside the outer array starts.
fn top_level_object_lines(text: &str) -> Vec<usize> {
    let (mut depth, mut line, mut in_str, mut esc) = (0usize, 1usize, false, false);
    let mut out = vec![];
    for c in text.chars() {
        if c == '\n' {
            line += 1;
        }
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, '\\') => esc = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '[' | '{' => {
                if depth == 1 && c == '{' {
                    out.push(line);
                }
                depth += 1;
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    out
}

/// Splits CSV text into rows of fields, each with the line it starts on.
pub fn parse_csv(path: &Path, text: &str) -> Result<Vec<(usize, Vec<String>)>> {
    let mut rows = vec![];
    let mut row: Vec<String> = vec![];
    let mut field = String::new();
    let (mut line, mut row_line) = (1usize, 1usize);
    let mut chars = text.chars().peekable();
    let mut in_quotes = false;
    let mut quoted_at = 0;
    let mut any = false;
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => {
                in_quotes = true;
                quoted_at = line;
                any = true;
            }
            ',' => {
                row.push(std::mem::take(&mut field));
                any = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                if any || !field.is_empty() {
                    row.push(std::mem::take(&mut field));
                    rows.push((row_line, std::mem::take(&mut row)));
                }
                any = false;
                line += 1;
                row_line = line;
            }
            _ => {
                field.push(c);
                any = true;
            }
        }
    }
    if in_quotes {
        return Err(Error::row(
            path,
            quoted_at,
            "a quoted field is never closed",
        ));
    }
    if any || !field.is_empty() {
        row.push(field);
        rows.push((row_line, row));
    }
    Ok(rows)
}

fn read_csv(path: &Path, text: &str, columns: Option<&[String]>) -> Result<Vec<Record>> {
    let mut rows = parse_csv(path, text)?.into_iter();
    let header: Vec<String> = match columns {
        Some(c) => c.to_vec(),
        None => match rows.next() {
            Some((_, h)) => h,
            None => return Ok(vec![]),
        },
    };
    rows.map(|(line, r)| {
        if r.len() != header.len() {
            return Err(Error::row(
                path,
                line,
                format!(
                    "{} fields, expected {} ({})",
                    r.len(),
                    header.len(),
                    header.join(", ")
                ),
            ));
        }
        let fields = header
            .iter()
            .cloned()
            .zip(r.into_iter().map(Value::String))
            .collect();
        Ok(Record {
            path: path.to_path_buf(),
            line,
            fields,
        })
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_commas_and_newlines() {
        let p = Path::new("x.csv");
        let rows = parse_csv(p, "a,\"b,c\",\"d\"\"e\"\n\"multi\nline\",2,3\n").unwrap();
        assert_eq!(rows[0], (1, vec!["a".into(), "b,c".into(), "d\"e".into()]));
        assert_eq!(
            rows[1],
            (2, vec!["multi\nline".into(), "2".into(), "3".into()])
        );
    }

    #[test]
    fn csv_wrong_field_count_names_the_line() {
        let e = read_csv(Path::new("x.csv"), "q,a\n1,2\n\"two\nlines\",3,4\n", None).unwrap_err();
        assert_eq!(e.to_string(), "x.csv:3: 3 fields, expected 2 (q, a)");
    }

    #[test]
    fn unclosed_quote_is_an_error() {
        let e = parse_csv(Path::new("x.csv"), "a,b\n\"open,2\n").unwrap_err();
        assert_eq!(e.to_string(), "x.csv:2: a quoted field is never closed");
    }

    #[test]
    fn jsonl_bad_line_names_the_line() {
        let e = read_jsonl(Path::new("x.jsonl"), "{\"a\":1}\n\n{\"a\":\n").unwrap_err();
        assert!(e.to_string().starts_with("x.jsonl:3: bad JSON"), "{e}");
        let e = read_jsonl(Path::new("x.jsonl"), "[1]\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "x.jsonl:1: expected a JSON object, found an array"
        );
    }

    #[test]
    fn json_array_rows_know_their_lines() {
        let r = read_json(Path::new("x.json"), "[\n {\"a\": \"{\"},\n {\"a\": 2}\n]").unwrap();
        assert_eq!((r[0].line, r[1].line), (2, 3));
    }
}
