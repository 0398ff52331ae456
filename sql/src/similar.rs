//! `SIMILAR TO`: PostgreSQL turns the SQL pattern into a POSIX regular expression with
//! `similar_to_escape(pattern [, escape])` and matches it with `~`; Weft does the same (see
//! `rewrite`), since DataFusion would match the SQL pattern as a regular expression itself.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

use crate::error::{to_df, Error};

pub(crate) fn udf() -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(SimilarToEscape {
        signature: Signature::one_of(
            vec![
                TypeSignature::Exact(vec![DataType::Utf8]),
                TypeSignature::Exact(vec![DataType::Utf8, DataType::Utf8]),
            ],
            Volatility::Immutable,
        ),
    }))
}

/// PostgreSQL's `similar_escape_internal`: `%` → `.*`, `_` → `.`, `(` → `(?:`, regex
/// metacharacters escaped, the whole anchored; `<escape>"` separates the parts `substring`
/// uses.
pub(crate) fn similar_to_regex(pattern: &str, escape: Option<char>) -> crate::Result<String> {
    let mut out = String::with_capacity(pattern.len() + 8);
    out.push_str("^(?:");
    let (mut after_escape, mut in_class, mut quotes) = (false, false, 0);
    for c in pattern.chars() {
        if after_escape {
            if c == '"' && !in_class {
                match quotes {
                    0 => out.push_str("){1,1}?("),
                    1 => out.push_str("){1,1}(?:"),
                    _ => {
                        return Err(Error::InvalidEscapeSequence {
                            message: "SQL regular expression may not contain more than two escape-double-quote separators".into(),
                        })
                    }
                }
                quotes += 1;
            } else {
                out.push('\\');
                out.push(c);
            }
            after_escape = false;
        } else if Some(c) == escape {
            after_escape = true;
        } else if in_class {
            if c == '\\' {
                out.push('\\');
            }
            out.push(c);
            if c == ']' {
                in_class = false;
            }
        } else {
            match c {
                '[' => {
                    out.push('[');
                    in_class = true;
                }
                '%' => out.push_str(".*"),
                '_' => out.push('.'),
                '(' => out.push_str("(?:"),
                '\\' | '.' | '^' | '$' => {
                    out.push('\\');
                    out.push(c);
                }
                c => out.push(c),
            }
        }
    }
    out.push_str(")$");
    Ok(out)
}

/// The escape character of `ESCAPE e`: one character, or none for the empty string.
fn escape_char(e: &str) -> crate::Result<Option<char>> {
    let mut chars = e.chars();
    match (chars.next(), chars.next()) {
        (None, _) => Ok(None),
        (Some(c), None) => Ok(Some(c)),
        _ => Err(Error::InvalidEscapeSequence {
            message: "invalid escape string".into(),
        }),
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct SimilarToEscape {
    signature: Signature,
}

impl ScalarUDFImpl for SimilarToEscape {
    fn name(&self) -> &str {
        "similar_to_escape"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = args
            .args
            .iter()
            .map(|a| {
                Ok(cast(
                    &a.clone().into_array(args.number_rows)?,
                    &DataType::Utf8,
                )?)
            })
            .collect::<DfResult<Vec<ArrayRef>>>()?;
        let patterns: &StringArray = arrays[0].as_string();
        let escapes: Option<&StringArray> = arrays.get(1).map(|a| a.as_string());
        let out: StringArray = (0..patterns.len())
            .map(|i| {
                if patterns.is_null(i) || escapes.is_some_and(|e| e.is_null(i)) {
                    return Ok(None);
                }
                let escape = match escapes {
                    Some(e) => escape_char(e.value(i)).map_err(to_df)?,
                    None => Some('\\'),
                };
                similar_to_regex(patterns.value(i), escape)
                    .map(Some)
                    .map_err(to_df)
            })
            .collect::<DfResult<_>>()?;
        if scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
        } else {
            Ok(ColumnarValue::Array(Arc::new(out)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_translate_as_in_postgres() {
        let r = |p: &str| similar_to_regex(p, Some('\\')).unwrap_or_default();
        assert_eq!(r("H%"), "^(?:H.*)$");
        assert_eq!(r("a_c"), "^(?:a.c)$");
        assert_eq!(r("(a|b)%"), "^(?:(?:a|b).*)$");
        assert_eq!(r("a.b"), "^(?:a\\.b)$");
        assert_eq!(r("\\%"), "^(?:\\%)$");
        assert_eq!(r("[%_]x"), "^(?:[%_]x)$");
    }
}
