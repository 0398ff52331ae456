//! PostgreSQL functions DataFusion lacks: `num_nulls`, `num_nonnulls`, `width_bucket`,
//! `make_date`, `make_timestamp(tz)` and `isfinite`, with PostgreSQL's errors,
//! `statement_timestamp`, `transaction_timestamp` and `clock_timestamp`; and `weft_same`,
//! which rewrite.rs wraps casts in where DataFusion would give two expressions one name.

use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use datafusion::arrow::datatypes::{DataType, FieldRef, TimeUnit};
use datafusion::common::config::ConfigOptions;
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};

use crate::error::{to_df, Error};
use crate::functions::{scalar_rows, udf};

pub(crate) fn udfs() -> Vec<Arc<ScalarUDF>> {
    let counting = |name: &'static str, nulls: bool| {
        udf(
            name,
            Signature::variadic_any(Volatility::Immutable),
            DataType::Int32,
            None,
            Arc::new(move |args| {
                let rows = scalar_rows(args)?;
                let counts = rows.iter().map(|row| {
                    let n = row.iter().filter(|v| v.is_null() == nulls).count();
                    ScalarValue::Int32(Some(i32::try_from(n).unwrap_or(i32::MAX)))
                });
                crate::functions::rows_to_array(args, counts)
            }),
        )
    };
    vec![
        Arc::new(ScalarUDF::new_from_impl(Same {
            signature: Signature::any(1, Volatility::Immutable),
        })),
        counting("num_nulls", true),
        counting("num_nonnulls", false),
        udf(
            "width_bucket",
            Signature::one_of(
                vec![TypeSignature::Exact(vec![
                    DataType::Float64,
                    DataType::Float64,
                    DataType::Float64,
                    DataType::Int64,
                ])],
                Volatility::Immutable,
            ),
            DataType::Int32,
            None,
            Arc::new(|args| {
                let out = scalar_rows(args)?
                    .iter()
                    .map(|row| match row.as_slice() {
                        [ScalarValue::Float64(Some(x)), ScalarValue::Float64(Some(lo)), ScalarValue::Float64(Some(hi)), ScalarValue::Int64(Some(n))] => {
                            width_bucket(*x, *lo, *hi, *n).map(|b| ScalarValue::Int32(Some(b)))
                        }
                        _ => Ok(ScalarValue::Int32(None)),
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(to_df)?;
                crate::functions::rows_to_array(args, out)
            }),
        ),
        udf(
            "make_date",
            Signature::exact(
                vec![DataType::Int64, DataType::Int64, DataType::Int64],
                Volatility::Immutable,
            ),
            DataType::Date32,
            None,
            Arc::new(|args| {
                let out = scalar_rows(args)?
                    .iter()
                    .map(|row| match row.as_slice() {
                        [ScalarValue::Int64(Some(y)), ScalarValue::Int64(Some(m)), ScalarValue::Int64(Some(d))] => {
                            make_date(*y, *m, *d).map(|days| ScalarValue::Date32(Some(days)))
                        }
                        _ => Ok(ScalarValue::Date32(None)),
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(to_df)?;
                crate::functions::rows_to_array(args, out)
            }),
        ),
        make_timestamp("make_timestamp", None),
        make_timestamp("make_timestamptz", Some(crate::pgtype::UTC)),
        udf(
            "isfinite",
            Signature::any(1, Volatility::Immutable),
            DataType::Boolean,
            None,
            Arc::new(|args| {
                let out = scalar_rows(args)?
                    .iter()
                    .map(|row| {
                        ScalarValue::Boolean(match row.first() {
                            Some(ScalarValue::Date32(Some(d))) => {
                                Some(*d != i32::MAX && *d != i32::MIN)
                            }
                            Some(ScalarValue::TimestampMicrosecond(Some(t), _)) => {
                                Some(*t != i64::MAX && *t != i64::MIN)
                            }
                            Some(ScalarValue::IntervalMonthDayNano(Some(_))) => Some(true),
                            _ => None,
                        })
                    })
                    .collect::<Vec<_>>();
                crate::functions::rows_to_array(args, out)
            }),
        ),
    ]
}

/// `make_timestamp(year, month, day, hour, min, sec)` (and `make_timestamptz`, in UTC, the
/// session's only zone).
fn make_timestamp(name: &'static str, zone: Option<&'static str>) -> Arc<ScalarUDF> {
    let int = DataType::Int64;
    udf(
        name,
        Signature::exact(
            vec![
                int.clone(),
                int.clone(),
                int.clone(),
                int.clone(),
                int,
                DataType::Float64,
            ],
            Volatility::Immutable,
        ),
        DataType::Timestamp(
            datafusion::arrow::datatypes::TimeUnit::Microsecond,
            zone.map(Into::into),
        ),
        None,
        Arc::new(move |args| {
            let out = scalar_rows(args)?
                .iter()
                .map(|row| {
                    let micros = match row.as_slice() {
                        [ScalarValue::Int64(Some(y)), ScalarValue::Int64(Some(mo)), ScalarValue::Int64(Some(d)), ScalarValue::Int64(Some(h)), ScalarValue::Int64(Some(mi)), ScalarValue::Float64(Some(s))] => {
                            Some(timestamp_micros(*y, *mo, *d, *h, *mi, *s)?)
                        }
                        _ => None,
                    };
                    Ok(ScalarValue::TimestampMicrosecond(micros, zone.map(Into::into)))
                })
                .collect::<Result<Vec<_>, Error>>()
                .map_err(to_df)?;
            crate::functions::rows_to_array(args, out)
        }),
    )
}

/// Microseconds since 1970-01-01 00:00 of a date and a time of day, with PostgreSQL's range
/// checks (22008).
fn timestamp_micros(
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    min: i64,
    sec: f64,
) -> Result<i64, Error> {
    let days = make_date(year, month, day)?;
    // 60 seconds (a leap second) rolls over into the next minute, as in PostgreSQL.
    let valid = (0..=23).contains(&hour) && (0..=59).contains(&min) && (0.0..=60.0).contains(&sec)
        || (hour == 24 && min == 0 && sec == 0.0);
    if !valid || !sec.is_finite() {
        return Err(Error::DatetimeFieldOverflow {
            message: format!("time field value out of range: {hour}:{min:02}:{sec:02}"),
        });
    }
    let in_day = (hour * 3600 + min * 60) * 1_000_000 + (sec * 1_000_000.0).round() as i64;
    Ok(i64::from(days) * 86_400_000_000 + in_day)
}

/// The bucket of `x` among `count` equal buckets between `low` and `high` (0 below, count + 1
/// above; the bounds may be reversed).
fn width_bucket(x: f64, low: f64, high: f64, count: i64) -> Result<i32, Error> {
    let invalid = |message: &str| Error::Data {
        code: "2201G",
        message: message.into(),
    };
    if count <= 0 {
        return Err(invalid("count must be greater than zero"));
    }
    if low == high {
        return Err(invalid("lower bound cannot equal upper bound"));
    }
    if x.is_nan() || low.is_nan() || high.is_nan() || !low.is_finite() || !high.is_finite() {
        return Err(invalid(
            "operand, lower bound, and upper bound cannot be NaN or infinity",
        ));
    }
    let n = count as f64;
    let bucket = if low < high {
        if x < low {
            0.0
        } else if x >= high {
            n + 1.0
        } else {
            ((x - low) / (high - low) * n).floor() + 1.0
        }
    } else if x > low {
        0.0
    } else if x <= high {
        n + 1.0
    } else {
        ((low - x) / (low - high) * n).floor() + 1.0
    };
    i32::try_from(bucket as i64).map_err(|_| Error::NumericOutOfRange {
        message: "integer out of range".into(),
    })
}

/// Days since 1970-01-01 of a year, month and day; a negative year is BC, as in PostgreSQL.
fn make_date(year: i64, month: i64, day: i64) -> Result<i32, Error> {
    let overflow = || Error::DatetimeFieldOverflow {
        message: format!("date field value out of range: {year}-{month:02}-{day:02}"),
    };
    if year == 0 {
        return Err(overflow());
    }
    // 1 BC is year 0 in chrono's proleptic calendar.
    let y = if year < 0 { year + 1 } else { year };
    let date = i32::try_from(y)
        .ok()
        .zip(u32::try_from(month).ok())
        .zip(u32::try_from(day).ok())
        .and_then(|((y, m), d)| NaiveDate::from_ymd_opt(y, m, d))
        .ok_or_else(overflow)?;
    Ok(date.num_days_from_ce() - 719_163)
}

/// `weft_same(x)` is `x`, field and all (type, nullability, metadata). DataFusion names a cast
/// as it names its operand (apache/datafusion#18975), so `sum(x), sum(x::int8)` and `GROUP BY
/// x::int8, x` are two expressions of one name, which it refuses ("specified more than once");
/// rewrite.rs wraps the casts of such a query in this function, which is named after itself.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Same {
    signature: Signature,
}

impl ScalarUDFImpl for Same {
    fn name(&self) -> &str {
        "weft_same"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(arg_types.first().cloned().unwrap_or(DataType::Null))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        args.arg_fields
            .first()
            .cloned()
            .ok_or_else(|| to_df(Error::internal("weft_same without an operand")))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        args.args
            .into_iter()
            .next()
            .ok_or_else(|| to_df(Error::internal("weft_same without an operand")))
    }
}

/// The start of a session's running statement, in nanoseconds since the epoch; the session sets
/// it before each statement (`Session::execute_once`).
#[derive(Debug, Default, Clone)]
pub(crate) struct StatementStart(Arc<std::sync::atomic::AtomicI64>);

impl StatementStart {
    pub fn set(&self, nanos: i64) {
        self.0.store(nanos, std::sync::atomic::Ordering::Relaxed);
    }

    fn get(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl PartialEq for StatementStart {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for StatementStart {}

impl std::hash::Hash for StatementStart {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.0).hash(state)
    }
}

/// Which time a clock function gives.
#[derive(Debug, PartialEq, Eq, Hash)]
enum Reads {
    /// `transaction_timestamp()`, as `now()`: the transaction's start, which the session puts in
    /// DataFusion's `query_execution_start_time` (simplified to it while planning).
    Transaction,
    /// `statement_timestamp()`: the statement's start (also simplified while planning).
    Statement(StatementStart),
    /// `clock_timestamp()`: read when called.
    Clock,
}

/// `statement_timestamp()`, `transaction_timestamp()` and `clock_timestamp()`, of `now()`'s type
/// (the session's time zone).
#[derive(Debug, PartialEq, Eq, Hash)]
struct Clock {
    name: &'static str,
    reads: Reads,
    signature: Signature,
    timezone: Option<Arc<str>>,
}

impl Clock {
    fn new(name: &'static str, reads: Reads, config: &ConfigOptions) -> Clock {
        let volatility = if reads == Reads::Clock {
            Volatility::Volatile
        } else {
            Volatility::Stable
        };
        Clock {
            name,
            reads,
            signature: Signature::nullary(volatility),
            timezone: config
                .execution
                .time_zone
                .as_ref()
                .map(|tz| Arc::from(tz.as_str())),
        }
    }

    fn reads(&self) -> Reads {
        match &self.reads {
            Reads::Transaction => Reads::Transaction,
            Reads::Statement(s) => Reads::Statement(s.clone()),
            Reads::Clock => Reads::Clock,
        }
    }
}

pub(crate) fn clocks(config: &ConfigOptions, statement: &StatementStart) -> Vec<Arc<ScalarUDF>> {
    [
        ("statement_timestamp", Reads::Statement(statement.clone())),
        ("transaction_timestamp", Reads::Transaction),
        ("clock_timestamp", Reads::Clock),
    ]
    .into_iter()
    .map(|(name, reads)| Arc::new(ScalarUDF::new_from_impl(Clock::new(name, reads, config))))
    .collect()
}

impl ScalarUDFImpl for Clock {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        Some(ScalarUDF::new_from_impl(Clock::new(
            self.name,
            self.reads(),
            config,
        )))
    }

    fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Timestamp(
            TimeUnit::Nanosecond,
            self.timezone.clone(),
        ))
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> DfResult<ExprSimplifyResult> {
        let nanos = match (&self.reads, info.query_execution_start_time()) {
            (Reads::Clock, _) | (_, None) => return Ok(ExprSimplifyResult::Original(args)),
            (Reads::Transaction, Some(start)) => start.timestamp_nanos_opt(),
            (Reads::Statement(s), Some(_)) => Some(s.get()),
        };
        Ok(ExprSimplifyResult::Simplified(Expr::Literal(
            ScalarValue::TimestampNanosecond(nanos, self.timezone.clone()),
            None,
        )))
    }

    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        // Failing here (as DataFusion's now() does) keeps the constant folder, which runs before
        // `simplify`, from reading the clock for the statement's start.
        if self.reads != Reads::Clock {
            return Err(to_df(Error::internal(format!(
                "{}() is folded to the statement's start while planning",
                self.name
            ))));
        }
        Ok(ColumnarValue::Scalar(ScalarValue::TimestampNanosecond(
            chrono::Utc::now().timestamp_nanos_opt(),
            self.timezone.clone(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_as_postgres() {
        assert_eq!(width_bucket(5.35, 0.024, 10.06, 5).unwrap(), 3);
        assert_eq!(width_bucket(-1.0, 0.0, 10.0, 5).unwrap(), 0);
        assert_eq!(width_bucket(10.0, 0.0, 10.0, 5).unwrap(), 6);
        assert_eq!(width_bucket(7.0, 10.0, 0.0, 5).unwrap(), 2);
        assert!(width_bucket(1.0, 0.0, 10.0, 0).is_err());
        assert!(width_bucket(1.0, 2.0, 2.0, 3).is_err());
    }

    #[test]
    fn dates_and_their_errors() {
        assert_eq!(make_date(1970, 1, 2).unwrap(), 1);
        assert_eq!(make_date(2020, 2, 29).unwrap(), 18_321);
        assert!(make_date(2021, 2, 29).is_err());
        assert!(make_date(0, 1, 1).is_err());
        assert!(make_date(-1, 1, 1).is_ok());
    }
}
