//! jsonb as PostgreSQL stores and prints it: keys deduplicated (last wins) and ordered by length then
//! bytes, printed with `": "` and `", "` separators; `->` and `->>` lookups.

use serde_json::Value as Json;

use crate::error::{Error, Result};

/// Parses JSON text and returns PostgreSQL's canonical jsonb text for it.
pub fn normalize(text: &str) -> Result<String> {
    let value: Json = serde_json::from_str(text).map_err(|e| Error::InvalidTextRepresentation {
        message: format!("invalid input syntax for type json: {e}"),
    })?;
    Ok(to_text(&value))
}

/// Canonical jsonb text of a parsed value (json_fn.rs prints it).
pub fn to_text(value: &Json) -> String {
    crate::json_fn::from_serde(value).jsonb()
}

/// A key or array index, as the right side of `->` / `->>`.
pub enum PathStep<'a> {
    Key(&'a str),
    Index(i64),
}

fn step<'v>(value: &'v Json, path: &PathStep<'_>) -> Option<&'v Json> {
    match (value, path) {
        (Json::Object(map), PathStep::Key(k)) => map.get(*k),
        (Json::Array(items), PathStep::Index(i)) => {
            let len = i64::try_from(items.len()).ok()?;
            let idx = if *i < 0 { len + *i } else { *i };
            usize::try_from(idx).ok().and_then(|i| items.get(i))
        }
        _ => None,
    }
}

/// `json -> path`: the element as jsonb text, or None (SQL NULL).
pub fn get(text: &str, path: &PathStep<'_>) -> Result<Option<String>> {
    let value: Json = serde_json::from_str(text).map_err(|e| Error::InvalidTextRepresentation {
        message: format!("invalid input syntax for type json: {e}"),
    })?;
    Ok(step(&value, path).map(to_text))
}

/// `json ->> path`: the element as text (strings unquoted), or None.
pub fn get_text(text: &str, path: &PathStep<'_>) -> Result<Option<String>> {
    let value: Json = serde_json::from_str(text).map_err(|e| Error::InvalidTextRepresentation {
        message: format!("invalid input syntax for type json: {e}"),
    })?;
    Ok(step(&value, path).and_then(|v| match v {
        Json::String(s) => Some(s.clone()),
        Json::Null => None,
        other => Some(to_text(other)),
    }))
}

/// `jsonb ? key`: whether `key` is a top-level object key, a string element of a top-level
/// array, or the document itself as a string scalar.
pub fn has_key(text: &str, key: &str) -> Result<bool> {
    let value: Json = serde_json::from_str(text).map_err(|e| Error::InvalidTextRepresentation {
        message: format!("invalid input syntax for type json: {e}"),
    })?;
    Ok(match &value {
        Json::Object(map) => map.contains_key(key),
        Json::Array(items) => items.iter().any(|v| v.as_str() == Some(key)),
        Json::String(s) => s == key,
        _ => false,
    })
}

/// `a @> b` on jsonb texts: whether `a` contains `b`, by PostgreSQL's rules.
pub fn contains_text(a: &str, b: &str) -> Result<bool> {
    let parse = |text: &str| -> Result<Json> {
        serde_json::from_str(text).map_err(|e| Error::InvalidTextRepresentation {
            message: format!("invalid input syntax for type json: {e}"),
        })
    };
    let (a, b) = (parse(a)?, parse(b)?);
    Ok(match (&a, &b) {
        // At the top level only, an array contains a scalar that is one of its elements.
        (Json::Array(items), b) if !is_container(b) => items.iter().any(|x| scalar_eq(x, b)),
        _ => contains(&a, &b),
    })
}

fn is_container(v: &Json) -> bool {
    matches!(v, Json::Array(_) | Json::Object(_))
}

/// PostgreSQL's deep containment: an object contains each of `b`'s pairs (nested containers
/// contained, scalars equal); an array contains each element of `b` somewhere among its own;
/// scalars contain only an equal scalar; containers of different kinds never contain each other.
fn contains(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Object(a), Json::Object(b)) => b.iter().all(|(k, vb)| {
            a.get(k)
                .is_some_and(|va| match (is_container(va), is_container(vb)) {
                    (false, false) => scalar_eq(va, vb),
                    (true, true) => contains(va, vb),
                    _ => false,
                })
        }),
        (Json::Array(a), Json::Array(b)) => b.iter().all(|eb| {
            a.iter()
                .any(|ea| match (is_container(ea), is_container(eb)) {
                    (false, false) => scalar_eq(ea, eb),
                    (true, true) => contains(ea, eb),
                    _ => false,
                })
        }),
        (a, b) if !is_container(a) && !is_container(b) => scalar_eq(a, b),
        _ => false,
    }
}

/// Equality of JSON scalars; numbers compare by value (`1` equals `1.0`), as jsonb's numeric does.
fn scalar_eq(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => {
            x == y
                || match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
                    (Some(p), Some(q), _, _) => p == q,
                    (_, _, Some(p), Some(q)) => p == q,
                    _ => x.as_f64() == y.as_f64(),
                }
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containment_follows_postgres() {
        let c = |a: &str, b: &str| contains_text(a, b).expect("valid json");
        assert!(c(r#"{"a":1,"b":[1,2,{"x":3}]}"#, r#"{"b":[{"x":3}]}"#));
        assert!(c(r#"{"a":1,"b":2}"#, r#"{}"#));
        assert!(!c(r#"{"a":1}"#, r#"{"a":"1"}"#));
        assert!(c("[1,2,[3,4]]", "[[4],1]"));
        assert!(!c("[1,2,[3,4]]", "[3]"));
        assert!(c("[1,2]", "1"));
        assert!(!c(r#"{"a":[1,2]}"#, r#"{"a":1}"#));
        assert!(c("[1.0]", "[1]"));
        assert!(c(r#""x""#, r#""x""#));
        assert!(!c("[]", "{}"));
        assert!(!c(r#"{"a":1}"#, r#"[]"#));
        assert!(c("[1,1]", "[1,1,1]"));
    }

    #[test]
    fn normalizes_like_postgres() {
        assert_eq!(
            normalize(r#"{"bb":1,"a":[1,2],"a":{"x":null}}"#)
                .ok()
                .as_deref(),
            Some(r#"{"a": {"x": null}, "bb": 1}"#)
        );
        assert_eq!(normalize("not json").unwrap_err().sqlstate(), "22P02");
    }

    #[test]
    fn arrow_operators() {
        let doc = r#"{"a": {"b": "x"}, "n": [10, 20]}"#;
        assert_eq!(
            get(doc, &PathStep::Key("a")).ok().flatten().as_deref(),
            Some(r#"{"b": "x"}"#)
        );
        assert_eq!(
            get_text(r#"{"b": "x"}"#, &PathStep::Key("b"))
                .ok()
                .flatten()
                .as_deref(),
            Some("x")
        );
        assert_eq!(
            get(r#"[10, 20]"#, &PathStep::Index(-1))
                .ok()
                .flatten()
                .as_deref(),
            Some("20")
        );
        assert_eq!(get(doc, &PathStep::Key("zz")).ok().flatten(), None);
    }
}
