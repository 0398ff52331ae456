//! `regexp_split_to_array`, and the list functions behind `regexp_split_to_table` and
//! `regexp_matches` (rewrite.rs unnests them), with PostgreSQL's rules: a split ignores a
//! zero-length match at the start or end of the string or right after the previous match;
//! `regexp_matches` gives each match's capture groups (the whole match when there are none),
//! every match with the `g` flag, else the first.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, ListBuilder, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Signature, TypeSignature, Volatility};
use regex::Regex;

use crate::error::{to_df, Error, Result};

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidParameterValue {
        message: message.into(),
    }
}

/// The pattern compiled with PostgreSQL's flags (`i` case-insensitive, `c` sensitive, `g`
/// global where allowed); whether `g` was given.
fn compile(pattern: &str, flags: &str, function: &str, global_ok: bool) -> Result<(Regex, bool)> {
    let mut insensitive = false;
    let mut global = false;
    for f in flags.chars() {
        match f {
            'i' => insensitive = true,
            'c' => insensitive = false,
            'g' if global_ok => global = true,
            'g' => {
                return Err(invalid(format!(
                    "{function}() does not support the \"global\" option"
                )))
            }
            other => {
                return Err(invalid(format!(
                    "invalid regular expression option: \"{other}\""
                )))
            }
        }
    }
    let source = if insensitive {
        format!("(?i){pattern}")
    } else {
        pattern.to_string()
    };
    let re = Regex::new(&source).map_err(|e| Error::Data {
        code: "2201B",
        message: format!("invalid regular expression: {e}"),
    })?;
    Ok((re, global))
}

/// PostgreSQL's split.
fn split(s: &str, re: &Regex) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut last_end = None;
    for m in re.find_iter(s) {
        if m.start() == m.end()
            && (m.start() == 0 || m.start() == s.len() || Some(m.start()) == last_end)
        {
            continue;
        }
        out.push(s[start..m.start()].to_string());
        start = m.end();
        last_end = Some(m.end());
    }
    out.push(s[start..].to_string());
    out
}

fn matches(s: &str, re: &Regex, global: bool) -> Vec<Vec<Option<String>>> {
    let mut out = Vec::new();
    for caps in re.captures_iter(s) {
        let groups: Vec<Option<String>> = if caps.len() > 1 {
            (1..caps.len())
                .map(|i| caps.get(i).map(|m| m.as_str().to_string()))
                .collect()
        } else {
            vec![caps.get(0).map(|m| m.as_str().to_string())]
        };
        out.push(groups);
        if !global {
            break;
        }
    }
    out
}

fn text_list() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

fn signature() -> Signature {
    Signature::one_of(
        vec![
            TypeSignature::Exact(vec![DataType::Utf8, DataType::Utf8]),
            TypeSignature::Exact(vec![DataType::Utf8, DataType::Utf8, DataType::Utf8]),
        ],
        Volatility::Immutable,
    )
}

/// Each row's (text, pattern, flags), NULL if any is NULL.
fn rows(
    args: &datafusion::logical_expr::ScalarFunctionArgs,
) -> datafusion::common::Result<Vec<Option<(String, String, String)>>> {
    let columns = args
        .args
        .iter()
        .map(|a| a.clone().into_array(args.number_rows))
        .collect::<datafusion::common::Result<Vec<_>>>()?;
    let strings: Vec<_> = columns.iter().map(|c| c.as_string::<i32>()).collect();
    Ok((0..args.number_rows)
        .map(|row| {
            if strings.iter().any(|s| s.is_null(row)) {
                return None;
            }
            let flags = strings.get(2).map(|f| f.value(row)).unwrap_or("");
            Some((
                strings[0].value(row).to_string(),
                strings[1].value(row).to_string(),
                flags.to_string(),
            ))
        })
        .collect())
}

fn split_udf() -> Arc<ScalarUDF> {
    crate::functions::udf(
        "regexp_split_to_array",
        signature(),
        text_list(),
        None,
        Arc::new(|args| {
            let mut out = ListBuilder::new(StringBuilder::new());
            for row in rows(args)? {
                match row {
                    None => out.append_null(),
                    Some((s, p, f)) => {
                        let (re, _) =
                            compile(&p, &f, "regexp_split_to_array", false).map_err(to_df)?;
                        for part in split(&s, &re) {
                            out.values().append_value(part);
                        }
                        out.append(true);
                    }
                }
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    )
}

fn matches_udf() -> Arc<ScalarUDF> {
    crate::functions::udf(
        "weft_regexp_matches",
        signature(),
        DataType::List(Arc::new(Field::new("item", text_list(), true))),
        None,
        Arc::new(|args| {
            let mut out = ListBuilder::new(ListBuilder::new(StringBuilder::new()));
            for row in rows(args)? {
                match row {
                    None => out.append_null(),
                    Some((s, p, f)) => {
                        let (re, global) =
                            compile(&p, &f, "regexp_matches", true).map_err(to_df)?;
                        for groups in matches(&s, &re, global) {
                            for g in groups {
                                out.values().values().append_option(g);
                            }
                            out.values().append(true);
                        }
                        out.append(true);
                    }
                }
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }),
    )
}

pub(crate) fn udfs() -> Vec<Arc<ScalarUDF>> {
    vec![split_udf(), matches_udf()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn re(p: &str) -> Regex {
        compile(p, "", "t", false)
            .map(|(r, _)| r)
            .expect("valid pattern")
    }

    #[test]
    fn splits_as_postgres() {
        assert_eq!(split("a1b2c", &re("[0-9]")), ["a", "b", "c"]);
        assert_eq!(split("abc", &re("")), ["a", "b", "c"]);
        assert_eq!(split("a,b,,c", &re(",")), ["a", "b", "", "c"]);
        assert_eq!(
            split("hello world", &re(r"\s*")),
            ["h", "e", "l", "l", "o", "w", "o", "r", "l", "d"]
        );
        assert_eq!(split("", &re(",")), [""]);
    }

    #[test]
    fn matches_groups_or_whole() {
        let (r, _) = compile("([a-z])([0-9])", "g", "t", true).expect("valid");
        assert_eq!(
            matches("a1b2", &r, true),
            vec![
                vec![Some("a".to_string()), Some("1".to_string())],
                vec![Some("b".to_string()), Some("2".to_string())]
            ]
        );
        assert_eq!(
            matches("a1b2", &re("[0-9]"), false),
            vec![vec![Some("1".to_string())]]
        );
        assert_eq!(
            compile("x", "g", "regexp_split_to_array", false)
                .unwrap_err()
                .sqlstate(),
            "22023"
        );
    }
}
