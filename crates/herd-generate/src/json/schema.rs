//! The JSON schemas the checker follows: the supported keywords, parsed and checked.

use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
pub struct Schema {
    pub(super) types: Option<Vec<Kind>>,
    pub(super) properties: Vec<(String, Schema)>,
    pub(super) required: Vec<String>,
    /// `None`: any other key, with any value; `Some(None)`: no other key; `Some(Some(s))`:
    /// other keys with values fitting `s`.
    pub(super) additional: Option<Option<Box<Schema>>>,
    pub(super) items: Option<Box<Schema>>,
    pub(super) min_items: usize,
    pub(super) max_items: Option<usize>,
    /// Allowed values, as compact JSON texts.
    pub(super) enumeration: Option<Vec<String>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
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

    pub(super) fn allows(&self, k: Kind) -> bool {
        match &self.types {
            None => true,
            Some(ts) => ts.contains(&k) || (k == Kind::Integer && ts.contains(&Kind::Number)),
        }
    }

    pub(super) fn property(&self, name: &str) -> Option<&Schema> {
        self.properties
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
    }

    /// May an object under this schema use the key `name`?
    pub(super) fn key_allowed(&self, name: &str) -> bool {
        self.property(name).is_some() || self.additional != Some(None)
    }

    pub(super) fn value_schema(&self, key: &str) -> Schema {
        match (self.property(key), &self.additional) {
            (Some(s), _) => s.clone(),
            (None, Some(Some(s))) => (**s).clone(),
            _ => Schema::any(),
        }
    }
}

/// Is `prefix` the start of one of `schema`'s allowed values (any text if it has none)?
pub(super) fn enum_prefix_ok(schema: &Schema, prefix: &str) -> bool {
    match &schema.enumeration {
        None => true,
        Some(vals) => vals.iter().any(|v| v.starts_with(prefix)),
    }
}

/// Is `text` one of `schema`'s allowed values (any text if it has none)?
pub(super) fn enum_complete(schema: &Schema, text: &str) -> bool {
    match &schema.enumeration {
        None => true,
        Some(vals) => vals.iter().any(|v| v == text),
    }
}
