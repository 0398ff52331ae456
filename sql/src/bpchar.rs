//! `character(n)` and `character varying(n)` as PostgreSQL has them, on Arrow's one string type.
//!
//! A `char(n)` value is held padded with spaces to `n` (as PostgreSQL stores it) in a `Utf8`
//! field tagged `bpchar`; its trailing spaces are not significant. Where PostgreSQL turns it into
//! `text` (a cast, `||`, `length`) or compares it as `bpchar`, the `BpcharSemantics` analyzer rule
//! strips them:
//!
//! ```text
//!   c::text, c || x, length(c)        ─► trim(c)
//!   c = x, c < x, c IN (…)            ─► trim(c) and trim(x) where x is bpchar or a literal
//! ```
//!
//! `LIKE` sees the padding, as in PostgreSQL (`'ab'::char(4) LIKE 'ab'` is false).
//!
//! Explicit casts (`x::char(n)`, `x::varchar(n)`) are rewritten from the statement (rewrite.rs)
//! into `weft_bpchar(x::text, n)` and `weft_varchar(x::text, n)`, which truncate to `n`
//! characters as PostgreSQL's explicit casts do, and tag their result with its type.
//!
//! `length` is PostgreSQL's: characters of text, characters without the padding of `bpchar`,
//! bytes of `bytea` (DataFusion's reads `bytea` as UTF-8).

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Int32Array, StringArray};
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, Result as DfResult, ScalarValue};
use datafusion::logical_expr::expr::{InList, ScalarFunction};
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ReturnFieldArgs,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

use crate::pgtype::{tagged_field, PgType, PG_TYPE_KEY};

/// The UDFs of this module, for registration.
pub(crate) fn functions() -> Vec<Arc<ScalarUDF>> {
    vec![
        Arc::new(ScalarUDF::new_from_impl(Resize::new(PgType::Bpchar))),
        Arc::new(ScalarUDF::new_from_impl(Resize::new(PgType::Varchar))),
        trim_udf(),
        length_udf(),
    ]
}

/// `length(text | bpchar | bytea)`.
fn length_udf() -> Arc<ScalarUDF> {
    crate::functions::udf_any(
        "length",
        Signature::any(1, Volatility::Immutable),
        DataType::Int32,
        Arc::new(|args| {
            let Some(arg) = args.args.first() else {
                return Ok(ColumnarValue::Scalar(ScalarValue::Int32(None)));
            };
            let bpchar = args.arg_fields.first().is_some_and(|f| {
                f.metadata().get(PG_TYPE_KEY).map(String::as_str) == Some(PgType::Bpchar.name())
            });
            let scalar = matches!(arg, ColumnarValue::Scalar(_));
            let a = arg.clone().into_array(args.number_rows)?;
            let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
            let out: Int32Array = match a.data_type() {
                DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
                    let a = datafusion::arrow::compute::cast(&a, &DataType::Binary)?;
                    a.as_binary::<i32>()
                        .iter()
                        .map(|v| v.map(|b| count(b.len())))
                        .collect()
                }
                _ => {
                    let a = datafusion::arrow::compute::cast(&a, &DataType::Utf8)?;
                    a.as_string::<i32>()
                        .iter()
                        .map(|v| {
                            v.map(|s| {
                                let s = if bpchar { s.trim_end_matches(' ') } else { s };
                                count(s.chars().count())
                            })
                        })
                        .collect()
                }
            };
            if scalar && out.len() == 1 {
                return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?));
            }
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    )
}

/// `weft_bpchar(text, n)` and `weft_varchar(text[, n])`: truncate to `n` characters (and pad to
/// `n` for `bpchar`; `char` without a length is `char(1)`).
#[derive(Debug, PartialEq, Eq, Hash)]
struct Resize {
    pg: PgType,
    signature: Signature,
}

impl Resize {
    fn new(pg: PgType) -> Self {
        Resize {
            pg,
            signature: Signature::one_of(
                vec![TypeSignature::Any(1), TypeSignature::Any(2)],
                Volatility::Immutable,
            ),
        }
    }
}

fn resize(s: &str, n: Option<usize>, pad: bool) -> String {
    match n {
        None => s.to_string(),
        Some(n) => {
            let mut out: String = s.chars().take(n).collect();
            if pad {
                let len = out.chars().count();
                out.extend(std::iter::repeat_n(' ', n - len));
            }
            out
        }
    }
}

impl ScalarUDFImpl for Resize {
    fn name(&self) -> &str {
        match self.pg {
            PgType::Bpchar => "weft_bpchar",
            _ => "weft_varchar",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn return_field_from_args(&self, _: ReturnFieldArgs) -> DfResult<FieldRef> {
        Ok(tagged_field(self.name(), DataType::Utf8, self.pg))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = match args.args.get(1) {
            Some(ColumnarValue::Scalar(v)) => match v.cast_to(&DataType::Int64)? {
                ScalarValue::Int64(Some(n)) => usize::try_from(n).ok(),
                _ => None,
            },
            _ => None,
        };
        let pad = self.pg == PgType::Bpchar;
        let n = if pad { Some(n.unwrap_or(1)) } else { n };
        let Some(arg) = args.args.first() else {
            return Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)));
        };
        let scalar = matches!(arg, ColumnarValue::Scalar(_));
        let a = arg.clone().into_array(args.number_rows)?;
        let a = datafusion::arrow::compute::cast(&a, &DataType::Utf8)?;
        let out: StringArray = a
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(|s| resize(s, n, pad)))
            .collect();
        if scalar && out.len() == 1 {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?));
        }
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// `weft_bpchar_trim(bpchar)`: the value as text, without its trailing spaces.
fn trim_udf() -> Arc<ScalarUDF> {
    crate::functions::udf_any(
        "weft_bpchar_trim",
        Signature::any(1, Volatility::Immutable),
        DataType::Utf8,
        Arc::new(|args| {
            let Some(arg) = args.args.first() else {
                return Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)));
            };
            if let ColumnarValue::Scalar(v) = arg {
                let v = v.cast_to(&DataType::Utf8)?;
                let ScalarValue::Utf8(s) = v else {
                    return Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None)));
                };
                return Ok(ColumnarValue::Scalar(ScalarValue::Utf8(
                    s.map(|s| s.trim_end_matches(' ').to_string()),
                )));
            }
            let a = arg.clone().into_array(args.number_rows)?;
            let a = datafusion::arrow::compute::cast(&a, &DataType::Utf8)?;
            let out: StringArray = a
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(|s| s.trim_end_matches(' ')))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    )
}

fn trim(e: Expr) -> Expr {
    match e {
        Expr::Literal(ScalarValue::Utf8(s), meta) => Expr::Literal(
            ScalarValue::Utf8(s.map(|s| s.trim_end_matches(' ').to_string())),
            meta,
        ),
        e => Expr::ScalarFunction(ScalarFunction::new_udf(trim_udf(), vec![e])),
    }
}

fn is_bpchar(e: &Expr, schema: &DFSchema) -> bool {
    // An operator's field carries no metadata: not worth building (it formats the operator's
    // whole subtree, see `arith::expr_type`).
    let operator = match e {
        Expr::BinaryExpr(_) => true,
        Expr::ScalarFunction(f) => crate::arith::is_checked(f.name()),
        _ => false,
    };
    !operator
        && e.to_field(schema).is_ok_and(|(_, f)| {
            f.metadata().get(PG_TYPE_KEY).map(String::as_str) == Some(PgType::Bpchar.name())
        })
}

fn is_string_literal(e: &Expr) -> bool {
    matches!(e, Expr::Literal(ScalarValue::Utf8(_), _))
}

/// The analyzer rule of the module doc.
#[derive(Debug)]
pub(crate) struct BpcharSemantics;

impl AnalyzerRule for BpcharSemantics {
    fn name(&self) -> &str {
        "weft_bpchar_semantics"
    }

    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> DfResult<LogicalPlan> {
        crate::arith::rewrite_plan(plan, &bpchar_node)
    }
}

fn bpchar_node(e: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    Ok(match e {
        Expr::Cast(c)
            if matches!(c.field.data_type(), DataType::Utf8 | DataType::LargeUtf8)
                && is_bpchar(&c.expr, schema) =>
        {
            Transformed::yes(trim(*c.expr))
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (l, r) = (is_bpchar(&left, schema), is_bpchar(&right, schema));
            let comparison = matches!(
                op,
                Operator::Eq
                    | Operator::NotEq
                    | Operator::Lt
                    | Operator::LtEq
                    | Operator::Gt
                    | Operator::GtEq
                    | Operator::IsDistinctFrom
                    | Operator::IsNotDistinctFrom
            );
            let (tl, tr) = if op == Operator::StringConcat {
                (l, r)
            } else if comparison && (l || r) {
                (
                    l || is_string_literal(&left),
                    r || is_string_literal(&right),
                )
            } else {
                (false, false)
            };
            if !(tl || tr) {
                return Ok(Transformed::no(Expr::BinaryExpr(BinaryExpr {
                    left,
                    op,
                    right,
                })));
            }
            let side = |e: Box<Expr>, t: bool| if t { Box::new(trim(*e)) } else { e };
            Transformed::yes(Expr::BinaryExpr(BinaryExpr {
                left: side(left, tl),
                op,
                right: side(right, tr),
            }))
        }
        Expr::InList(InList {
            expr,
            list,
            negated,
        }) if is_bpchar(&expr, schema) => {
            let list = list
                .into_iter()
                .map(|x| {
                    if is_string_literal(&x) || is_bpchar(&x, schema) {
                        trim(x)
                    } else {
                        x
                    }
                })
                .collect();
            Transformed::yes(Expr::InList(InList {
                expr: Box::new(trim(*expr)),
                list,
                negated,
            }))
        }
        Expr::ScalarFunction(f)
            if f.func.name() == "character_length"
                && f.args.first().is_some_and(|a| is_bpchar(a, schema)) =>
        {
            let mut args = f.args;
            let first = args.remove(0);
            args.insert(0, trim(first));
            Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(f.func, args)))
        }
        other => Transformed::no(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_truncates_and_pads() {
        assert_eq!(resize("toolong", Some(3), false), "too");
        assert_eq!(resize("ab", Some(4), true), "ab  ");
        assert_eq!(resize("abcde", Some(4), true), "abcd");
        assert_eq!(resize("héllo", Some(2), false), "hé");
        assert_eq!(resize("x", None, false), "x");
    }
}
