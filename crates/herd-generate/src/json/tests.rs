//! The checker against texts that parse, texts that do not, and the schemas' limits.

use super::*;
use serde_json::{Value, json};

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
    let e =
        Schema::parse(&json!({"type": "object", "properties": {"a": {"anyOf": []}}})).unwrap_err();
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
