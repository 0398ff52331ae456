//! `interval * number`, `number * interval` and `interval / number`, as PostgreSQL's interval_mul
//! and interval_div compute them: the months' fraction carries into days (30 a month), the days'
//! fraction into time, rounded to the microsecond. DataFusion has no such operators.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, IntervalMonthDayNanoArray};
use datafusion::arrow::datatypes::{DataType, Float64Type, IntervalMonthDayNano, IntervalUnit};
use datafusion::common::{DFSchema, Result as DfResult};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ScalarUDF, Signature, Volatility,
};
use datafusion::sql::sqlparser::ast::BinaryOperator;

use crate::error::{to_df, Error};

const DAYS_PER_MONTH: f64 = 30.0;
const SECS_PER_DAY: f64 = 86_400.0;

/// Rounds to whole microseconds, as PostgreSQL's TSROUND.
fn ts_round(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn out_of_range() -> Error {
    Error::Data {
        code: "22008",
        message: "interval out of range".into(),
    }
}

/// `span * factor` (`divide`: `span / factor`).
fn scale(
    span: IntervalMonthDayNano,
    factor: f64,
    divide: bool,
) -> Result<IntervalMonthDayNano, Error> {
    if divide && factor == 0.0 {
        return Err(Error::Data {
            code: "22012",
            message: "division by zero".into(),
        });
    }
    let apply = |x: f64| if divide { x / factor } else { x * factor };
    let to_i32 = |x: f64| {
        let t = x.trunc();
        if t.is_finite() && t >= f64::from(i32::MIN) && t <= f64::from(i32::MAX) {
            Ok(t as i32)
        } else {
            Err(out_of_range())
        }
    };
    let months_f = apply(f64::from(span.months));
    let days_f = apply(f64::from(span.days));
    let months = to_i32(months_f)?;
    let mut days = to_i32(days_f)?;
    let month_remainder_days = ts_round((months_f - f64::from(months)) * DAYS_PER_MONTH);
    let mut sec_remainder = ts_round(
        (days_f - f64::from(days) + month_remainder_days - month_remainder_days.trunc())
            * SECS_PER_DAY,
    );
    if sec_remainder.abs() >= SECS_PER_DAY {
        let whole = (sec_remainder / SECS_PER_DAY).trunc();
        days = days.checked_add(to_i32(whole)?).ok_or_else(out_of_range)?;
        sec_remainder -= whole * SECS_PER_DAY;
    }
    days = days
        .checked_add(to_i32(month_remainder_days)?)
        .ok_or_else(out_of_range)?;
    let micros = (apply(span.nanoseconds as f64 / 1_000.0) + sec_remainder * 1e6).round();
    if !micros.is_finite() || micros.abs() >= 9.2e18 / 1_000.0 {
        return Err(out_of_range());
    }
    Ok(IntervalMonthDayNano::new(
        months,
        days,
        (micros as i64).saturating_mul(1_000),
    ))
}

fn udf(divide: bool) -> Arc<ScalarUDF> {
    crate::functions::udf(
        if divide {
            "weft_interval_div"
        } else {
            "weft_interval_mul"
        },
        Signature::exact(
            vec![
                DataType::Interval(IntervalUnit::MonthDayNano),
                DataType::Float64,
            ],
            Volatility::Immutable,
        ),
        DataType::Interval(IntervalUnit::MonthDayNano),
        None,
        Arc::new(move |args| {
            let spans = args.args[0].clone().into_array(args.number_rows)?;
            let factors = args.args[1].clone().into_array(args.number_rows)?;
            let spans =
                spans.as_primitive::<datafusion::arrow::datatypes::IntervalMonthDayNanoType>();
            let factors = factors.as_primitive::<Float64Type>();
            let out = (0..spans.len())
                .map(|i| {
                    if spans.is_null(i) || factors.is_null(i) {
                        Ok(None)
                    } else {
                        scale(spans.value(i), factors.value(i), divide).map(Some)
                    }
                })
                .collect::<Result<IntervalMonthDayNanoArray, Error>>()
                .map_err(to_df)?;
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    )
}

/// Plans `interval * n`, `n * interval` and `interval / n` as the functions above.
#[derive(Debug)]
pub(crate) struct IntervalPlanner;

impl ExprPlanner for IntervalPlanner {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> DfResult<PlannerResult<RawBinaryExpr>> {
        let type_of = |e: &Expr| e.get_type(schema).ok();
        let is_interval = |t: &Option<DataType>| matches!(t, Some(DataType::Interval(_)));
        let is_number = |t: &Option<DataType>| {
            t.as_ref()
                .is_some_and(|t| t.is_numeric() || matches!(t, DataType::Null))
        };
        let (left, right) = (type_of(&expr.left), type_of(&expr.right));
        let (span, factor, divide) = match expr.op {
            BinaryOperator::Multiply if is_interval(&left) && is_number(&right) => {
                (expr.left, expr.right, false)
            }
            BinaryOperator::Multiply if is_number(&left) && is_interval(&right) => {
                (expr.right, expr.left, false)
            }
            BinaryOperator::Divide if is_interval(&left) && is_number(&right) => {
                (expr.left, expr.right, true)
            }
            _ => return Ok(PlannerResult::Original(expr)),
        };
        let span = span.cast_to(&DataType::Interval(IntervalUnit::MonthDayNano), schema)?;
        let factor = factor.cast_to(&DataType::Float64, schema)?;
        Ok(PlannerResult::Planned(Expr::ScalarFunction(
            ScalarFunction::new_udf(udf(divide), vec![span, factor]),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(months: i32, days: i32, secs: i64) -> IntervalMonthDayNano {
        IntervalMonthDayNano::new(months, days, secs * 1_000_000_000)
    }

    #[test]
    fn fractions_carry_down_as_in_postgres() {
        // '1 mon' * 1.5 = 1 mon 15 days; '1 day' * 1.5 = 1 day 12:00:00; '1 hour' * 3 = 03:00:00
        assert_eq!(scale(iv(1, 0, 0), 1.5, false).ok(), Some(iv(1, 15, 0)));
        assert_eq!(scale(iv(0, 1, 0), 1.5, false).ok(), Some(iv(0, 1, 43_200)));
        assert_eq!(
            scale(iv(0, 0, 3_600), 3.0, false).ok(),
            Some(iv(0, 0, 10_800))
        );
        // '1 day' / 2 = 12:00:00; '1 mon' / 3 = 10 days
        assert_eq!(scale(iv(0, 1, 0), 2.0, true).ok(), Some(iv(0, 0, 43_200)));
        assert_eq!(scale(iv(1, 0, 0), 3.0, true).ok(), Some(iv(0, 10, 0)));
        assert_eq!(
            scale(iv(0, 1, 0), 0.0, true)
                .map_err(|e| e.sqlstate())
                .err(),
            Some("22012")
        );
    }
}
