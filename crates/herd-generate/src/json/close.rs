//! Text that completes a value: what the checker offers when output must end early.

use super::ObjPhase;
use super::schema::{Kind, Schema};

/// The shortest value that fits `schema`.
pub(super) fn default_value(schema: &Schema) -> String {
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
pub(super) fn close_object(schema: &Schema, seen: &[String], phase: ObjPhase) -> String {
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
