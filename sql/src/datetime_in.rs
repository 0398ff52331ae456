//! PostgreSQL's input and arithmetic rules for `date`, `timestamp[tz]` and `interval`, and its
//! array input (`'{1,2}'::int[]`).
//!
//! Arrow's string casts read neither `BC`, `infinity`, nor PostgreSQL's interval forms (`1 day
//! 02:03:04`, `-1 mons +1 day`), and tell no malformed value (22007) from a field out of range
//! (22008). After DataFusion's type coercion, the `DateTimeInput` analyzer rule turns every cast
//! of a string to one of these types into a call of `weft_<type>_in`, which parses as PostgreSQL
//! does (pgtime.rs, interval.rs); `DateIntervalPlanner` plans `date ± interval` as a timestamp:
//!
//! ```text
//!   CAST(text AS date|timestamp|timestamptz|interval|time) ─► weft_<type>_in(text)
//!   CAST(text AS t[])                                       ─► weft_array_in(text)
//!   date ± interval                                         ─► date::timestamp ± interval
//! ```
//!
//! A SQL `timestamp` is planned with PostgreSQL's microsecond precision ([`PgTypePlanner`]), the
//! unit that holds `BC` and the `infinity` sentinels (`i64::MIN`/`i64::MAX`, as PostgreSQL
//! keeps them).

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, AsArray, Date32Array, IntervalMonthDayNanoArray, Time64MicrosecondArray,
    Time64NanosecondArray, TimestampMicrosecondArray, TimestampMillisecondArray,
    TimestampNanosecondArray, TimestampSecondArray,
};
use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano, IntervalUnit, TimeUnit};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result as DfResult, ScalarValue};
use datafusion::logical_expr::expr::{Cast, ScalarFunction};
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr, TypePlanner};
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::sql::sqlparser::ast::{self, TimezoneInfo};

use crate::error::{to_df, Error};
use crate::pgtime::{self, Invalid};
use crate::pgtype::UTC;
use crate::{interval, Result};

/// Plans SQL `timestamp` (without a precision) as microseconds, PostgreSQL's precision, and
/// `text` as a type of its own (see below).
#[derive(Debug)]
pub(crate) struct PgTypePlanner;

impl TypePlanner for PgTypePlanner {
    fn plan_type_field(
        &self,
        sql_type: &ast::DataType,
    ) -> DfResult<Option<datafusion::arrow::datatypes::FieldRef>> {
        let t = match sql_type {
            ast::DataType::Timestamp(None | Some(6), tz) => DataType::Timestamp(
                TimeUnit::Microsecond,
                matches!(tz, TimezoneInfo::Tz | TimezoneInfo::WithTimeZone).then(|| UTC.into()),
            ),
            // A cast to `text` names its type: DataFusion's cast to a bare type keeps the
            // operand's field metadata, so `'{"a":1}'::jsonb::text` stayed jsonb.
            ast::DataType::Text => {
                let field = datafusion::arrow::datatypes::Field::new("", DataType::Utf8, true)
                    .with_metadata(
                        [(
                            crate::pgtype::PG_TYPE_KEY.to_string(),
                            crate::pgtype::PgType::Text.name().to_string(),
                        )]
                        .into(),
                    );
                return Ok(Some(Arc::new(field)));
            }
            // Top-level casts to these become weft_json / weft_jsonb / weft_uuid (rewrite.rs);
            // here they are the elements of an array type (`$1::jsonb[]`).
            ast::DataType::JSON => return Ok(Some(tagged(crate::pgtype::PgType::Json))),
            ast::DataType::JSONB => return Ok(Some(tagged(crate::pgtype::PgType::Jsonb))),
            ast::DataType::Uuid => return Ok(Some(tagged(crate::pgtype::PgType::Uuid))),
            ast::DataType::Custom(name, m)
                if m.is_empty() && name.to_string().eq_ignore_ascii_case("jsonb") =>
            {
                return Ok(Some(tagged(crate::pgtype::PgType::Jsonb)))
            }
            _ => return Ok(None),
        };
        Ok(Some(Arc::new(datafusion::arrow::datatypes::Field::new(
            "", t, true,
        ))))
    }
}

/// A nullable Utf8 field holding values of `pg`.
fn tagged(pg: crate::pgtype::PgType) -> datafusion::arrow::datatypes::FieldRef {
    crate::pgtype::tagged_utf8_field("", pg)
}

/// Plans `date ± interval` as a timestamp, so that the statement's result type is PostgreSQL's.
#[derive(Debug)]
pub(crate) struct DateIntervalPlanner;

impl ExprPlanner for DateIntervalPlanner {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> DfResult<PlannerResult<RawBinaryExpr>> {
        let op = match expr.op {
            ast::BinaryOperator::Plus => Operator::Plus,
            ast::BinaryOperator::Minus => Operator::Minus,
            _ => return Ok(PlannerResult::Original(expr)),
        };
        let (lt, rt) = (
            expr.left.get_type(schema).ok(),
            expr.right.get_type(schema).ok(),
        );
        let is_interval = |t: &Option<DataType>| matches!(t, Some(DataType::Interval(_)));
        let is_date = |t: &Option<DataType>| matches!(t, Some(DataType::Date32));
        let ts = |e: Expr| {
            Expr::Cast(Cast::new(
                Box::new(e),
                DataType::Timestamp(TimeUnit::Microsecond, None),
            ))
        };
        let (left, right) = if is_date(&lt) && is_interval(&rt) {
            (ts(expr.left), expr.right)
        } else if op == Operator::Plus && is_interval(&lt) && is_date(&rt) {
            (expr.left, ts(expr.right))
        } else {
            return Ok(PlannerResult::Original(expr));
        };
        Ok(PlannerResult::Planned(Expr::BinaryExpr(BinaryExpr::new(
            Box::new(left),
            op,
            Box::new(right),
        ))))
    }
}

/// Casts of strings to date and time types as input functions; after DataFusion's type
/// coercion, so that the casts it adds (`ts < '2000-01-01'`) are covered.
#[derive(Debug)]
pub(crate) struct DateTimeInput;

impl AnalyzerRule for DateTimeInput {
    fn name(&self) -> &str {
        "weft_datetime_input"
    }

    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> DfResult<LogicalPlan> {
        crate::arith::rewrite_plan(plan, &input_node)
    }
}

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn is_input_target(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Date32
            | DataType::Timestamp(..)
            | DataType::Interval(IntervalUnit::MonthDayNano)
            | DataType::Time64(_)
    )
}

/// The same for one expression compiled outside a plan (eval.rs: VALUES, defaults).
pub(crate) fn input_casts(e: Expr, schema: &DFSchema) -> DfResult<Expr> {
    e.transform_up(|e| input_node(e, schema)).map(|t| t.data)
}

fn input_node(e: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    Ok(match e {
        Expr::Cast(c)
            if matches!(c.field.data_type(), DataType::List(_))
                && c.expr.get_type(schema).is_ok_and(|t| is_string(&t)) =>
        {
            let target = c.field.data_type().clone();
            Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(
                Arc::new(ScalarUDF::new_from_impl(ArrayIn {
                    target,
                    signature: Signature::any(1, Volatility::Immutable),
                })),
                vec![*c.expr],
            )))
        }
        Expr::Cast(c)
            if is_input_target(c.field.data_type())
                && c.expr.get_type(schema).is_ok_and(|t| is_string(&t)) =>
        {
            let target = c.field.data_type().clone();
            Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(
                input_udf(target),
                vec![*c.expr],
            )))
        }
        other => Transformed::no(other),
    })
}

fn input_udf(target: DataType) -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(DateTimeIn {
        name: match &target {
            DataType::Date32 => "weft_date_in",
            DataType::Timestamp(_, None) => "weft_timestamp_in",
            DataType::Timestamp(_, Some(_)) => "weft_timestamptz_in",
            DataType::Time64(_) => "weft_time_in",
            _ => "weft_interval_in",
        },
        target,
        signature: Signature::any(1, Volatility::Immutable),
    }))
}

/// `weft_<type>_in(text)`: PostgreSQL's input function of the target type.
#[derive(Debug, PartialEq, Eq, Hash)]
struct DateTimeIn {
    name: &'static str,
    target: DataType,
    signature: Signature,
}

impl ScalarUDFImpl for DateTimeIn {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(self.target.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let Some(arg) = args.args.first() else {
            return Err(to_df(Error::internal("input function without an operand")));
        };
        let scalar = matches!(arg, ColumnarValue::Scalar(_));
        let a = arg.clone().into_array(args.number_rows)?;
        let a = datafusion::arrow::compute::cast(&a, &DataType::Utf8)?;
        let texts = a.as_string::<i32>();
        let out = convert(texts.iter(), &self.target).map_err(to_df)?;
        if scalar && out.len() == 1 {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?));
        }
        Ok(ColumnarValue::Array(out))
    }
}

/// `weft_array_in(text)`: a one-dimensional array literal (`{1,2}`) as a list; Arrow's cast
/// would make the whole string one element.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ArrayIn {
    target: DataType,
    signature: Signature,
}

impl ScalarUDFImpl for ArrayIn {
    fn name(&self) -> &str {
        "weft_array_in"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(self.target.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let DataType::List(field) = &self.target else {
            return Err(to_df(Error::internal("array input to a non-list type")));
        };
        let Some(arg) = args.args.first() else {
            return Err(to_df(Error::internal("input function without an operand")));
        };
        let scalar = matches!(arg, ColumnarValue::Scalar(_));
        let a = arg.clone().into_array(args.number_rows)?;
        let a = datafusion::arrow::compute::cast(&a, &DataType::Utf8)?;
        let values = a
            .as_string::<i32>()
            .iter()
            .map(|t| match t {
                None => ScalarValue::try_from(&self.target),
                Some(s) => array_in(s, field.data_type()).map_err(to_df),
            })
            .collect::<DfResult<Vec<_>>>()?;
        if values.is_empty() {
            return Ok(ColumnarValue::Array(
                datafusion::arrow::array::new_empty_array(&self.target),
            ));
        }
        let out = ScalarValue::iter_to_array(values)?;
        // Exactly the declared type, the element field's metadata included (a cast's target
        // may tag its elements, `::uuid[]`): the plan's schema carries it.
        let out = if out.data_type() == &self.target {
            out
        } else {
            datafusion::arrow::compute::cast(&out, &self.target)?
        };
        if scalar && out.len() == 1 {
            // As the one-row list itself: `try_from_array` rebuilds its field without metadata.
            if let Some(list) = out.as_list_opt::<i32>() {
                return Ok(ColumnarValue::Scalar(ScalarValue::List(Arc::new(
                    list.clone(),
                ))));
            }
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?));
        }
        Ok(ColumnarValue::Array(out))
    }
}

pub(crate) fn array_in(s: &str, element: &DataType) -> Result<ScalarValue> {
    let t = s.trim();
    if t.starts_with('[') {
        return Err(Error::FeatureNotSupported {
            feature: "array lower bounds other than 1".into(),
        });
    }
    if t.strip_prefix('{')
        .is_some_and(|r| r.trim_start().starts_with('{'))
    {
        return Err(Error::FeatureNotSupported {
            feature: "multidimensional array input".into(),
        });
    }
    let malformed = || Error::InvalidTextRepresentation {
        message: format!("malformed array literal: \"{s}\""),
    };
    if !is_input_target(element) {
        return crate::pg_catalog::array_literal::parse(t, element).ok_or_else(malformed);
    }
    // Dates and times: each element through PostgreSQL's input function (`{epoch,today}`).
    let texts = crate::array_text::array_items(t).ok_or_else(malformed)?;
    let items = convert(texts.iter().map(Option::as_deref), element)?;
    Ok(datafusion::common::utils::SingleRowListArrayBuilder::new(items).build_list_scalar())
}

/// The error for input `s` that type `type_name` rejected: 22008 or 22007 as PostgreSQL tells.
pub(crate) fn rejected(type_name: &str, s: &str) -> Error {
    match pgtime::invalid_reason(s) {
        Invalid::FieldOutOfRange if type_name != "interval" && type_name != "time" => {
            Error::DatetimeFieldOverflow {
                message: format!("date/time field value out of range: \"{s}\""),
            }
        }
        _ => Error::InvalidDatetimeFormat {
            message: format!("invalid input syntax for type {type_name}: \"{s}\""),
        },
    }
}

/// Microseconds to `unit`, keeping the `infinity` sentinels; None when out of the unit's range.
fn from_micros(us: i64, unit: &TimeUnit) -> Option<i64> {
    if us == i64::MAX || us == i64::MIN {
        return Some(us);
    }
    match unit {
        TimeUnit::Second => Some(us.div_euclid(1_000_000)),
        TimeUnit::Millisecond => Some(us.div_euclid(1_000)),
        TimeUnit::Microsecond => Some(us),
        TimeUnit::Nanosecond => us.checked_mul(1_000),
    }
}

fn convert<'a>(
    texts: impl Iterator<Item = Option<&'a str>>,
    target: &DataType,
) -> Result<ArrayRef> {
    Ok(match target {
        DataType::Date32 => {
            let v: Vec<Option<i32>> = texts
                .map(|t| {
                    t.map(|s| pgtime::parse_date(s).ok_or_else(|| rejected("date", s)))
                        .transpose()
                })
                .collect::<Result<_>>()?;
            Arc::new(Date32Array::from(v))
        }
        DataType::Timestamp(unit, tz) => {
            let name = if tz.is_some() {
                "timestamp with time zone"
            } else {
                "timestamp"
            };
            let v: Vec<Option<i64>> = texts
                .map(|t| {
                    t.map(|s| {
                        let us = pgtime::parse_timestamp(s, tz.is_some())
                            .ok_or_else(|| rejected(name, s))?;
                        from_micros(us, unit).ok_or_else(|| Error::DatetimeFieldOverflow {
                            message: format!("timestamp out of range: \"{s}\""),
                        })
                    })
                    .transpose()
                })
                .collect::<Result<_>>()?;
            let tz = tz.clone();
            match unit {
                TimeUnit::Second => Arc::new(TimestampSecondArray::from(v).with_timezone_opt(tz)),
                TimeUnit::Millisecond => {
                    Arc::new(TimestampMillisecondArray::from(v).with_timezone_opt(tz))
                }
                TimeUnit::Microsecond => {
                    Arc::new(TimestampMicrosecondArray::from(v).with_timezone_opt(tz))
                }
                TimeUnit::Nanosecond => {
                    Arc::new(TimestampNanosecondArray::from(v).with_timezone_opt(tz))
                }
            }
        }
        DataType::Time64(unit) => {
            let v: Vec<Option<i64>> = texts
                .map(|t| {
                    t.map(|s| {
                        interval::parse_time(s)
                            .and_then(|us| from_micros(us, unit))
                            .ok_or_else(|| rejected("time", s))
                    })
                    .transpose()
                })
                .collect::<Result<_>>()?;
            match unit {
                TimeUnit::Nanosecond => Arc::new(Time64NanosecondArray::from(v)),
                _ => Arc::new(Time64MicrosecondArray::from(v)),
            }
        }
        _ => {
            let v: Vec<Option<IntervalMonthDayNano>> = texts
                .map(|t| {
                    t.map(|s| {
                        let iv =
                            interval::parse_interval(s).ok_or_else(|| rejected("interval", s))?;
                        let nanos = iv.micros.checked_mul(1_000).ok_or_else(|| {
                            Error::DatetimeFieldOverflow {
                                message: format!("interval out of range: \"{s}\""),
                            }
                        })?;
                        Ok(IntervalMonthDayNano::new(iv.months, iv.days, nanos))
                    })
                    .transpose()
                })
                .collect::<Result<_>>()?;
            Arc::new(IntervalMonthDayNanoArray::from(v))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Array;

    fn one(s: &str, t: DataType) -> Result<ScalarValue> {
        let a = convert(std::iter::once(Some(s)), &t)?;
        Ok(ScalarValue::try_from_array(&a, 0).expect("one value"))
    }

    #[test]
    fn reads_postgres_forms() {
        let iv = one(
            "1 day 02:03:04",
            DataType::Interval(IntervalUnit::MonthDayNano),
        )
        .expect("parses");
        assert_eq!(
            iv,
            ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(
                0,
                1,
                7_384_000_000_000
            )))
        );
        let inf =
            one("infinity", DataType::Timestamp(TimeUnit::Microsecond, None)).expect("parses");
        assert_eq!(inf, ScalarValue::TimestampMicrosecond(Some(i64::MAX), None));
        assert!(one("0044-03-15 BC", DataType::Date32).is_ok());
    }

    #[test]
    fn arrays_read_their_elements() {
        let list = array_in("{1, NULL,3}", &DataType::Int32).expect("parses");
        let ScalarValue::List(list) = list else {
            panic!("not a list: {list:?}");
        };
        assert_eq!(list.value(0).len(), 3);
        assert!(list.value(0).is_null(1));
        let code = |s: &str| array_in(s, &DataType::Int32).err().map(|e| e.sqlstate());
        assert_eq!(code("[0:1]={5,6}"), Some("0A000"));
        assert_eq!(code("{{1,2},{3,4}}"), Some("0A000"));
        assert_eq!(code("{1,x}"), Some("22P02"));
    }

    #[test]
    fn rejections_carry_postgres_sqlstates() {
        let code = |s: &str| {
            one(s, DataType::Date32)
                .err()
                .map(|e| e.sqlstate())
                .unwrap_or("ok")
        };
        assert_eq!(code("2023-02-29"), "22008");
        assert_eq!(code("not a date"), "22007");
        let a = convert(std::iter::once(None), &DataType::Date32).expect("null");
        assert!(a.is_null(0));
    }
}
