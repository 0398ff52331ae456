//! `EXTRACT(field FROM x)` and `date_part('field', x)` as PostgreSQL computes them: `extract`
//! returns numeric (exact, with fractional seconds: `extract(epoch FROM timestamp …)` has scale 6),
//! `date_part` double precision. DataFusion's own `date_part` returns integers and drops the
//! fraction of a second. `EXTRACT` reaches here as `weft_extract('field', x)` (see `rewrite`).

use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Decimal128Array, Float64Array, PrimitiveArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Field, FieldRef, IntervalMonthDayNanoType, IntervalUnit,
    Time64MicrosecondType, TimeUnit, TimestampMicrosecondType,
};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::error::{to_df, Error};

const USECS_PER_MINUTE: i64 = 60_000_000;
const USECS_PER_HOUR: i64 = 3_600_000_000;

/// `weft_extract` (numeric) and `date_part` (double precision).
pub(crate) fn udfs() -> [Arc<ScalarUDF>; 2] {
    [
        Arc::new(ScalarUDF::new_from_impl(Extract::new(
            "weft_extract",
            false,
        ))),
        Arc::new(ScalarUDF::new_from_impl(Extract::new("date_part", true))),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Microseconds,
    Milliseconds,
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Quarter,
    Year,
    Decade,
    Century,
    Millennium,
    Dow,
    IsoDow,
    Doy,
    IsoYear,
    Epoch,
    Timezone,
    TimezoneHour,
    TimezoneMinute,
}

/// PostgreSQL's spellings of a field (`extract`/`date_part` units and their abbreviations).
fn unit(name: &str) -> Option<Unit> {
    use Unit::*;
    Some(match name.trim().to_ascii_lowercase().as_str() {
        "microsecond" | "microseconds" | "us" | "usec" | "usecs" | "useconds" => Microseconds,
        "millisecond" | "milliseconds" | "ms" | "msec" | "msecs" | "mseconds" => Milliseconds,
        "second" | "seconds" | "s" | "sec" | "secs" => Second,
        "minute" | "minutes" | "m" | "min" | "mins" => Minute,
        "hour" | "hours" | "h" | "hr" | "hrs" => Hour,
        "day" | "days" | "d" => Day,
        "week" | "weeks" | "w" => Week,
        "month" | "months" | "mon" | "mons" => Month,
        "quarter" | "qtr" => Quarter,
        "year" | "years" | "y" | "yr" | "yrs" => Year,
        "decade" | "decades" | "dec" | "decs" => Decade,
        "century" | "centuries" | "c" | "cent" => Century,
        "millennium" | "millennia" | "mil" | "mils" => Millennium,
        "dow" => Dow,
        "isodow" => IsoDow,
        "doy" => Doy,
        "isoyear" => IsoYear,
        "epoch" => Epoch,
        "timezone" => Timezone,
        "timezone_h" | "timezone_hour" => TimezoneHour,
        "timezone_m" | "timezone_minute" => TimezoneMinute,
        _ => return None,
    })
}

/// The kinds of value a field is extracted from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Timestamp,
    TimestampTz,
    Date,
    Time,
    Interval,
}

impl Source {
    fn of(t: &DataType) -> Option<Source> {
        Some(match t {
            DataType::Timestamp(_, None) => Source::Timestamp,
            DataType::Timestamp(_, Some(_)) => Source::TimestampTz,
            DataType::Date32 | DataType::Date64 => Source::Date,
            DataType::Time32(_) | DataType::Time64(_) => Source::Time,
            DataType::Interval(_) | DataType::Duration(_) => Source::Interval,
            _ => return None,
        })
    }

    /// The Arrow type values are read as.
    fn arrow(self) -> DataType {
        match self {
            Source::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Source::TimestampTz => {
                DataType::Timestamp(TimeUnit::Microsecond, Some(crate::pgtype::UTC.into()))
            }
            Source::Date => DataType::Date32,
            Source::Time => DataType::Time64(TimeUnit::Microsecond),
            Source::Interval => DataType::Interval(IntervalUnit::MonthDayNano),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Source::Timestamp => "timestamp without time zone",
            Source::TimestampTz => "timestamp with time zone",
            Source::Date => "date",
            Source::Time => "time without time zone",
            Source::Interval => "interval",
        }
    }

    fn supports(self, u: Unit) -> bool {
        use Unit::*;
        match self {
            Source::Timestamp => !matches!(u, Timezone | TimezoneHour | TimezoneMinute),
            Source::TimestampTz => true,
            Source::Date => !matches!(
                u,
                Microseconds
                    | Milliseconds
                    | Second
                    | Minute
                    | Hour
                    | Timezone
                    | TimezoneHour
                    | TimezoneMinute
            ),
            Source::Time => matches!(
                u,
                Microseconds | Milliseconds | Second | Minute | Hour | Epoch
            ),
            Source::Interval => !matches!(
                u,
                Week | Dow | IsoDow | Doy | IsoYear | Timezone | TimezoneHour | TimezoneMinute
            ),
        }
    }
}

/// The numeric scale of `extract(u FROM <s>)`.
fn scale(u: Unit, s: Source) -> i8 {
    match u {
        Unit::Second => 6,
        Unit::Milliseconds => 3,
        Unit::Epoch if s != Source::Date => 6,
        _ => 0,
    }
}

/// Checks that `u` names a field of `s`, with PostgreSQL's errors.
fn checked_unit(part: &str, s: Source) -> DfResult<Unit> {
    let Some(u) = unit(part) else {
        return Err(to_df(Error::InvalidParameterValue {
            message: format!("unit \"{part}\" not recognized for type {}", s.name()),
        }));
    };
    if !s.supports(u) {
        return Err(to_df(Error::FeatureNotSupported {
            feature: format!("unit \"{part}\" for type {}", s.name()),
        }));
    }
    Ok(u)
}

/// PostgreSQL's year: there is no year 0, the year before 1 AD is -1 (1 BC).
fn pg_year(y: i32) -> i64 {
    let y = i64::from(y);
    if y <= 0 {
        y - 1
    } else {
        y
    }
}

fn date_field(d: NaiveDate, u: Unit) -> i64 {
    // Astronomical year: 0 is 1 BC.
    let a = i64::from(d.year());
    match u {
        Unit::Day => i64::from(d.day()),
        Unit::Week => i64::from(d.iso_week().week()),
        Unit::Month => i64::from(d.month()),
        Unit::Quarter => i64::from((d.month() - 1) / 3 + 1),
        Unit::Year => pg_year(d.year()),
        Unit::Decade if a >= 0 => a / 10,
        Unit::Decade => -((8 - (a - 1)) / 10),
        Unit::Century if a > 0 => (a + 99) / 100,
        Unit::Century => -((99 - (a - 1)) / 100),
        Unit::Millennium if a > 0 => (a + 999) / 1000,
        Unit::Millennium => -((999 - (a - 1)) / 1000),
        Unit::Dow => i64::from(d.weekday().num_days_from_sunday()),
        Unit::IsoDow => i64::from(d.weekday().number_from_monday()),
        Unit::Doy => i64::from(d.ordinal()),
        Unit::IsoYear => pg_year(d.iso_week().year()),
        _ => 0,
    }
}

/// The field `u` of a timestamp (microseconds since 1970, wall time) as an unscaled numeric.
fn timestamp_field(micros: i64, u: Unit) -> Option<i128> {
    let in_minute = micros.rem_euclid(USECS_PER_MINUTE);
    let t: NaiveDateTime = DateTime::from_timestamp_micros(micros)?.naive_utc();
    Some(i128::from(match u {
        Unit::Microseconds | Unit::Milliseconds | Unit::Second => in_minute,
        Unit::Minute => i64::from(t.minute()),
        Unit::Hour => i64::from(t.hour()),
        Unit::Epoch => micros,
        Unit::Timezone | Unit::TimezoneHour | Unit::TimezoneMinute => 0,
        _ => date_field(t.date(), u),
    }))
}

fn time_field(micros: i64, u: Unit) -> i128 {
    i128::from(match u {
        Unit::Minute => micros / USECS_PER_MINUTE % 60,
        Unit::Hour => micros / USECS_PER_HOUR,
        Unit::Epoch => micros,
        _ => micros % USECS_PER_MINUTE,
    })
}

fn interval_field(months: i32, days: i32, nanos: i64, u: Unit) -> i128 {
    let time = i128::from(nanos / 1000);
    let (months, days) = (i128::from(months), i128::from(days));
    let year = months / 12;
    match u {
        Unit::Microseconds | Unit::Milliseconds | Unit::Second => time % 60_000_000,
        Unit::Minute => time / 60_000_000 % 60,
        Unit::Hour => time / 3_600_000_000,
        Unit::Day => days,
        Unit::Month => months % 12,
        Unit::Quarter => months % 12 / 3 + 1,
        Unit::Year => year,
        Unit::Decade => year / 10,
        Unit::Century => year / 100,
        Unit::Millennium => year / 1000,
        // A year is 365.25 days and a month 30, as PostgreSQL counts them.
        Unit::Epoch => {
            (31_557_600 * year + 2_592_000 * (months % 12) + 86_400 * days) * 1_000_000 + time
        }
        _ => 0,
    }
}

/// `extract(u FROM values)` as unscaled numerics of scale `scale(u, s)`.
fn extract(values: &ArrayRef, u: Unit, s: Source) -> DfResult<Vec<Option<i128>>> {
    let values = cast(values, &s.arrow())?;
    Ok(match s {
        Source::Timestamp | Source::TimestampTz => values
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .map(|v| v.and_then(|m| timestamp_field(m, u)))
            .collect(),
        Source::Date => values
            .as_primitive::<Date32Type>()
            .iter()
            .map(|v| {
                v.map(|days| match u {
                    Unit::Epoch => i128::from(days) * 86_400,
                    _ => i128::from(date_field(
                        DateTime::from_timestamp(i64::from(days) * 86_400, 0)
                            .map(|t| t.date_naive())
                            .unwrap_or_default(),
                        u,
                    )),
                })
            })
            .collect(),
        Source::Time => values
            .as_primitive::<Time64MicrosecondType>()
            .iter()
            .map(|v| v.map(|m| time_field(m, u)))
            .collect(),
        Source::Interval => values
            .as_primitive::<IntervalMonthDayNanoType>()
            .iter()
            .map(|v| v.map(|i| interval_field(i.months, i.days, i.nanoseconds, u)))
            .collect(),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Extract {
    name: &'static str,
    /// `date_part`: double precision instead of numeric.
    float: bool,
    signature: Signature,
}

impl Extract {
    fn new(name: &'static str, float: bool) -> Self {
        Self {
            name,
            float,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    fn result_type(&self, scale: i8) -> DataType {
        if self.float {
            DataType::Float64
        } else {
            DataType::Decimal128(38, scale)
        }
    }
}

fn part_and_source<'a>(name: &str, types: &'a [DataType]) -> DfResult<&'a DataType> {
    match types {
        [_, t] => Ok(t),
        _ => Err(to_df(Error::UndefinedFunction {
            message: format!("function {name} takes two arguments"),
        })),
    }
}

impl ScalarUDFImpl for Extract {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        let t = part_and_source(self.name, arg_types)?;
        let source = match t {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => {
                Source::Timestamp
            }
            t => Source::of(t).ok_or_else(|| {
                to_df(Error::UndefinedFunction {
                    message: format!(
                        "function {}(text, {}) does not exist",
                        self.name,
                        crate::pgtype::PgType::from_arrow(t).name()
                    ),
                })
            })?,
        };
        Ok(vec![DataType::Utf8, source.arrow()])
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(self.result_type(0))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let source = args
            .arg_fields
            .get(1)
            .and_then(|f| Source::of(f.data_type()))
            .unwrap_or(Source::Timestamp);
        let part = args
            .scalar_arguments
            .first()
            .copied()
            .flatten()
            .and_then(|v| v.try_as_str().flatten());
        let scale = match part.and_then(unit) {
            Some(u) => scale(u, source),
            None if part.is_some() || self.float => 0,
            None => {
                return Err(to_df(Error::FeatureNotSupported {
                    feature: format!("{} with a field that is not a constant", self.name),
                }))
            }
        };
        Ok(Arc::new(Field::new(
            self.name,
            self.result_type(scale),
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [part, value] = args.args.as_slice() else {
            return Err(to_df(Error::internal("extract without two arguments")));
        };
        let scalar = matches!(value, ColumnarValue::Scalar(_));
        let ColumnarValue::Scalar(part) = part else {
            return Err(to_df(Error::FeatureNotSupported {
                feature: format!("{} with a field that is not a constant", self.name),
            }));
        };
        let Some(part) = part.try_as_str().flatten() else {
            return Err(to_df(Error::FeatureNotSupported {
                feature: format!("{} with a NULL field", self.name),
            }));
        };
        let values = value.clone().into_array(args.number_rows)?;
        let source = Source::of(values.data_type()).unwrap_or(Source::Timestamp);
        let u = checked_unit(part, source)?;
        let scale = scale(u, source);
        let unscaled = extract(&values, u, source)?;
        let out: ArrayRef = if self.float {
            let div = 10f64.powi(i32::from(scale));
            Arc::new(
                unscaled
                    .into_iter()
                    .map(|v| v.map(|v| v as f64 / div))
                    .collect::<Float64Array>(),
            )
        } else {
            let array: Decimal128Array = PrimitiveArray::from_iter(unscaled);
            Arc::new(array.with_precision_and_scale(38, scale)?)
        };
        if scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
        } else {
            Ok(ColumnarValue::Array(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn years_before_christ_have_no_zero() {
        let d = NaiveDate::from_ymd_opt(0, 6, 1).unwrap_or_default();
        assert_eq!(date_field(d, Unit::Year), -1);
        assert_eq!(date_field(d, Unit::Century), -1);
        let d = NaiveDate::from_ymd_opt(2000, 6, 1).unwrap_or_default();
        assert_eq!(date_field(d, Unit::Century), 20);
        assert_eq!(date_field(d, Unit::Millennium), 2);
        let d = NaiveDate::from_ymd_opt(2001, 1, 1).unwrap_or_default();
        assert_eq!(date_field(d, Unit::Century), 21);
        assert_eq!(date_field(d, Unit::Millennium), 3);
    }

    #[test]
    fn seconds_keep_their_fraction() {
        // 1970-01-01 00:01:12.5
        assert_eq!(timestamp_field(72_500_000, Unit::Second), Some(12_500_000));
        assert_eq!(timestamp_field(-1, Unit::Second), Some(59_999_999));
        assert_eq!(
            interval_field(13, 2, 1_500_000_000, Unit::Epoch),
            34_322_401_500_000
        );
    }
}
