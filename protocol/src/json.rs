//! JSON as the protocol reads and writes it: a cheap nesting-depth scan that runs before any
//! parser, strict parsing (duplicate keys refused), and the canonical form that is hashed.
//!
//! Canonical form: object keys sorted by their UTF-8 bytes, no whitespace between tokens, strings
//! escaped as serde_json writes them (`"`, `\` and control characters escaped, everything else
//! verbatim UTF-8), numbers as serde_json writes them (integers in decimal, floats in their
//! shortest round-tripping form). Key order does not depend on serde_json's `preserve_order`
//! feature, which another crate of the build could switch on.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Writes `value` in canonical form (see the module documentation).
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_value(value, &mut out);
    out
}

fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_value(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::String(s) => write_string(s, out),
        // Null, booleans and numbers have exactly one serde_json spelling.
        other => out.push_str(&other.to_string()),
    }
}

fn write_string(s: &str, out: &mut String) {
    // Serialising a `str` cannot fail; the fallback keeps this total without a panic path.
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
    }
}

/// The deepest nesting of objects and arrays in `text`, not counting brackets inside strings
/// (escapes respected). Works on any input, valid JSON or not, in one pass without allocating, so
/// a depth bomb is measured before it can reach a recursive parser.
pub fn nesting_depth(text: &str) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Parses one JSON document like `serde_json::from_str`, but refuses an object that repeats a key
/// (parsers disagree on which copy wins, so such a row has no single meaning).
///
/// Recursion follows the document's nesting: bound it with [`nesting_depth`] first (serde_json
/// also stops at 128 levels with an error).
pub fn parse_strict(text: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str::<Strict>(text).map(|s| s.0)
}

/// A `Value` whose objects had no repeated key.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // serde_json never produces a non-finite float; `from` maps one to null anyway.
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "duplicate key {}",
                    preview(&key, 40)
                )));
            }
            let Strict(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// A quoted, escaped excerpt of untrusted text for an error message: at most `max_chars`
/// characters of it, `…` marking a cut.
pub fn preview(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_at_every_level_without_whitespace() {
        let v = json!({"b": 1, "a": {"z": [true, null, 1.5], "y": "é\n\"q\""}, "B": -2});
        assert_eq!(
            canonical_json(&v),
            r#"{"B":-2,"a":{"y":"é\n\"q\"","z":[true,null,1.5]},"b":1}"#
        );
    }

    #[test]
    fn floats_use_the_shortest_form() {
        assert_eq!(
            canonical_json(&json!([2e-4, 32.0, 0.0, 1e-9, u64::MAX, -7])),
            "[0.0002,32.0,0.0,1e-9,18446744073709551615,-7]"
        );
    }

    #[test]
    fn depth_ignores_brackets_in_strings_and_escaped_quotes() {
        assert_eq!(nesting_depth(""), 0);
        assert_eq!(nesting_depth("1"), 0);
        assert_eq!(nesting_depth(r#"{"a":[{"b":[]}]}"#), 4);
        assert_eq!(nesting_depth(r#"{"a":"[[[{{{"}"#), 1);
        // `\"` does not end the string; `\\` does not escape the closing quote.
        assert_eq!(nesting_depth(r#"{"a":"\"[[[","b":"\\"}"#), 1);
        assert_eq!(nesting_depth(r#"["\\",[[]]]"#), 3);
        // Unbalanced input is measured, never a panic.
        assert_eq!(nesting_depth("]]]}}[["), 2);
        assert_eq!(nesting_depth("\"unterminated [[["), 0);
    }

    #[test]
    fn strict_parse_refuses_repeated_keys_at_any_level() {
        assert_eq!(
            parse_strict(r#"{"a":1,"b":[{"c":null}]}"#).expect("valid"),
            json!({"a":1,"b":[{"c":null}]})
        );
        let e = parse_strict(r#"{"a":1,"a":2}"#).expect_err("repeated");
        assert!(e.to_string().contains("duplicate key \"a\""), "{e}");
        let e = parse_strict(r#"{"x":[{"k":1,"k":1}]}"#).expect_err("repeated");
        assert!(e.to_string().contains("duplicate key \"k\""), "{e}");
        // A key spelled with an escape is the same key.
        assert!(parse_strict(r#"{"a":1,"\u0061":2}"#).is_err());
        assert!(parse_strict(r#"{"a":1} x"#).is_err(), "trailing characters");
    }

    #[test]
    fn preview_cuts_long_text_on_a_character_boundary() {
        assert_eq!(preview("ab\n", 40), "\"ab\\n\"");
        assert_eq!(preview("abc", 2), "\"ab\"…");
        let long = "é".repeat(100);
        let p = preview(&long, 40);
        assert!(p.ends_with('…') && p.chars().count() == 43, "{p}");
    }
}
