//! PostgreSQL's date/time functions DataFusion lacks or types differently: `age`,
//! `justify_hours`/`justify_days`/`justify_interval`, `make_interval` (as `weft_make_interval`
//! of all seven arguments: rewrite.rs fills in the omitted and named ones), and `AT TIME ZONE` (as
//! `weft_at_time_zone`), which turns a timestamptz into the wall-clock timestamp of a zone and a
//! timestamp into the timestamptz it is in that zone.

use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDateTime, Offset, TimeZone, Timelike};
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, IntervalMonthDayNanoArray, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Float64Type, Int64Type, IntervalMonthDayNano, IntervalMonthDayNanoType, IntervalUnit,
    TimeUnit, TimestampMicrosecondType,
};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::error::{to_df, Error};
use crate::pgtype::UTC;

const USECS_PER_SEC: i64 = 1_000_000;
const USECS_PER_DAY: i64 = 86_400_000_000;
const INTERVAL: DataType = DataType::Interval(IntervalUnit::MonthDayNano);
const TIMESTAMP: DataType = DataType::Timestamp(TimeUnit::Microsecond, None);

fn timestamptz() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
}

pub(crate) fn udfs() -> Vec<Arc<ScalarUDF>> {
    vec![
        udf(Kind::Age),
        udf(Kind::JustifyHours),
        udf(Kind::JustifyDays),
        udf(Kind::JustifyInterval),
        udf(Kind::AtTimeZone),
        udf(Kind::MakeInterval),
    ]
}

fn udf(kind: Kind) -> Arc<ScalarUDF> {
    Arc::new(ScalarUDF::new_from_impl(DateTimeFn {
        kind,
        signature: Signature::user_defined(Volatility::Immutable),
    }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Age,
    JustifyHours,
    JustifyDays,
    JustifyInterval,
    AtTimeZone,
    MakeInterval,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct DateTimeFn {
    kind: Kind,
    signature: Signature,
}

fn is_text(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
    )
}

/// The timestamp type an argument is read as: zoned stays zoned, a date or text is zoned as
/// PostgreSQL's preferred datetime type; None for what is not a point in time.
fn as_timestamp(t: &DataType, text_as: DataType) -> Option<DataType> {
    match t {
        DataType::Timestamp(_, None) => Some(TIMESTAMP),
        DataType::Timestamp(_, Some(_)) => Some(timestamptz()),
        DataType::Date32 | DataType::Date64 => Some(text_as),
        t if is_text(t) => Some(text_as),
        _ => None,
    }
}

impl DateTimeFn {
    fn no_such_function(&self, types: &[DataType]) -> datafusion::error::DataFusionError {
        let names: Vec<&str> = types
            .iter()
            .map(|t| crate::pgtype::PgType::from_arrow(t).name())
            .collect();
        to_df(Error::UndefinedFunction {
            message: format!(
                "function {}({}) does not exist",
                self.name(),
                names.join(", ")
            ),
        })
    }
}

impl ScalarUDFImpl for DateTimeFn {
    fn name(&self) -> &str {
        match self.kind {
            Kind::Age => "age",
            Kind::JustifyHours => "justify_hours",
            Kind::JustifyDays => "justify_days",
            Kind::JustifyInterval => "justify_interval",
            Kind::AtTimeZone => "weft_at_time_zone",
            Kind::MakeInterval => "weft_make_interval",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        let coerced = match (self.kind, arg_types) {
            (Kind::Age, [a, b]) => {
                // Two timestamps or two timestamptz values; mixed, both as timestamptz.
                match (as_timestamp(a, TIMESTAMP), as_timestamp(b, TIMESTAMP)) {
                    (Some(x), Some(y)) if x == y => Some(vec![x, y]),
                    (Some(_), Some(_)) => Some(vec![timestamptz(), timestamptz()]),
                    _ => None,
                }
            }
            (Kind::JustifyHours | Kind::JustifyDays | Kind::JustifyInterval, [t])
                if matches!(t, DataType::Interval(_)) || is_text(t) =>
            {
                Some(vec![INTERVAL])
            }
            (Kind::AtTimeZone, [ts, zone]) => {
                let zone = if matches!(zone, DataType::Interval(_)) {
                    Some(INTERVAL)
                } else {
                    is_text(zone).then_some(DataType::Utf8)
                };
                match (as_timestamp(ts, timestamptz()), zone) {
                    (Some(ts), Some(zone)) => Some(vec![ts, zone]),
                    _ => None,
                }
            }
            (Kind::MakeInterval, [ints @ .., secs]) if ints.len() == 6 => {
                let int = |t: &DataType| t.is_integer() || t.is_null();
                (ints.iter().all(int) && (secs.is_numeric() || secs.is_null())).then(|| {
                    let mut types = vec![DataType::Int64; 6];
                    types.push(DataType::Float64);
                    types
                })
            }
            _ => None,
        };
        coerced.ok_or_else(|| self.no_such_function(arg_types))
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(match self.kind {
            Kind::AtTimeZone => match arg_types.first() {
                Some(DataType::Timestamp(_, Some(_))) => TIMESTAMP,
                _ => timestamptz(),
            },
            _ => INTERVAL,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = args
            .args
            .iter()
            .map(|a| a.clone().into_array(args.number_rows))
            .collect::<DfResult<Vec<_>>>()?;
        let out: ArrayRef = match (self.kind, arrays.as_slice()) {
            (Kind::Age, [a, b]) => {
                let (a, b) = (micros(a)?, micros(b)?);
                let out: IntervalMonthDayNanoArray = a
                    .iter()
                    .zip(b.iter())
                    .map(|(a, b)| match (a, b) {
                        (Some(a), Some(b)) => age(a, b).map(Some),
                        _ => Ok(None),
                    })
                    .collect::<DfResult<_>>()?;
                Arc::new(out)
            }
            (Kind::JustifyHours | Kind::JustifyDays | Kind::JustifyInterval, [i]) => {
                let f = match self.kind {
                    Kind::JustifyHours => justify_hours,
                    Kind::JustifyDays => justify_days,
                    _ => justify_interval,
                };
                let out: IntervalMonthDayNanoArray = cast(i, &INTERVAL)?
                    .as_primitive::<IntervalMonthDayNanoType>()
                    .iter()
                    .map(|v| v.map(f).transpose())
                    .collect::<DfResult<_>>()?;
                Arc::new(out)
            }
            (Kind::AtTimeZone, [ts, zone]) => at_time_zone(ts, zone)?,
            (Kind::MakeInterval, [_, _, _, _, _, _, secs]) => {
                let ints = arrays[..6]
                    .iter()
                    .map(|a| {
                        Ok(cast(a, &DataType::Int64)?
                            .as_primitive::<Int64Type>()
                            .clone())
                    })
                    .collect::<DfResult<Vec<_>>>()?;
                let secs = cast(secs, &DataType::Float64)?;
                let secs = secs.as_primitive::<Float64Type>();
                let out: IntervalMonthDayNanoArray = (0..args.number_rows)
                    .map(|row| {
                        let mut parts = [0i64; 6];
                        for (part, a) in parts.iter_mut().zip(&ints) {
                            if a.is_null(row) {
                                return Ok(None);
                            }
                            *part = a.value(row);
                        }
                        if secs.is_null(row) {
                            return Ok(None);
                        }
                        make_interval(parts, secs.value(row)).map(Some)
                    })
                    .collect::<DfResult<_>>()?;
                Arc::new(out)
            }
            _ => return Err(to_df(Error::internal("date/time function arity"))),
        };
        if scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
        } else {
            Ok(ColumnarValue::Array(out))
        }
    }
}

fn micros(a: &ArrayRef) -> DfResult<TimestampMicrosecondArray> {
    Ok(cast(a, &TIMESTAMP)?
        .as_primitive::<TimestampMicrosecondType>()
        .clone())
}

fn out_of_range(what: &str) -> datafusion::error::DataFusionError {
    to_df(Error::NumericOutOfRange {
        message: format!("{what} out of range"),
    })
}

fn wall_time(micros: i64) -> DfResult<NaiveDateTime> {
    DateTime::from_timestamp_micros(micros)
        .map(|t| t.naive_utc())
        .ok_or_else(|| out_of_range("timestamp"))
}

fn days_in_month(year: i32, month: u32) -> i64 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `age(a, b)`: the difference in years, months and days as PostgreSQL's `timestamp_age` forms
/// it, borrowing days from the month of the earlier operand.
fn age(a: i64, b: i64) -> DfResult<IntervalMonthDayNano> {
    let (t1, t2) = (wall_time(a)?, wall_time(b)?);
    let flip = a < b;
    let sign = if flip { -1 } else { 1 };
    let field = |x: i64, y: i64| sign * (x - y);
    let sub_usec = |t: &NaiveDateTime| i64::from(t.nanosecond() / 1000);
    let mut fsec = field(sub_usec(&t1), sub_usec(&t2));
    let mut sec = field(i64::from(t1.second()), i64::from(t2.second()));
    let mut min = field(i64::from(t1.minute()), i64::from(t2.minute()));
    let mut hour = field(i64::from(t1.hour()), i64::from(t2.hour()));
    let mut mday = field(i64::from(t1.day()), i64::from(t2.day()));
    let mut mon = field(i64::from(t1.month()), i64::from(t2.month()));
    let mut year = field(i64::from(t1.year()), i64::from(t2.year()));
    while fsec < 0 {
        fsec += USECS_PER_SEC;
        sec -= 1;
    }
    while sec < 0 {
        sec += 60;
        min -= 1;
    }
    while min < 0 {
        min += 60;
        hour -= 1;
    }
    while hour < 0 {
        hour += 24;
        mday -= 1;
    }
    // Borrow the days of the earlier operand's month, as PostgreSQL does.
    let borrow = if flip { &t1 } else { &t2 };
    while mday < 0 {
        mday += days_in_month(borrow.year(), borrow.month());
        mon -= 1;
    }
    while mon < 0 {
        mon += 12;
        year -= 1;
    }
    let months = i32::try_from(sign * (year * 12 + mon)).map_err(|_| out_of_range("interval"))?;
    let days = i32::try_from(sign * mday).map_err(|_| out_of_range("interval"))?;
    let time = sign * ((((hour * 60) + min) * 60 + sec) * USECS_PER_SEC + fsec);
    Ok(IntervalMonthDayNano::new(months, days, time * 1000))
}

fn justify_hours(i: IntervalMonthDayNano) -> DfResult<IntervalMonthDayNano> {
    let time = i.nanoseconds / 1000;
    let mut days = i64::from(i.days) + time / USECS_PER_DAY;
    let mut time = time % USECS_PER_DAY;
    if days > 0 && time < 0 {
        time += USECS_PER_DAY;
        days -= 1;
    } else if days < 0 && time > 0 {
        time -= USECS_PER_DAY;
        days += 1;
    }
    let days = i32::try_from(days).map_err(|_| out_of_range("interval"))?;
    Ok(IntervalMonthDayNano::new(i.months, days, time * 1000))
}

fn justify_days(i: IntervalMonthDayNano) -> DfResult<IntervalMonthDayNano> {
    let mut months = i64::from(i.months) + i64::from(i.days) / 30;
    let mut days = i64::from(i.days) % 30;
    if months > 0 && days < 0 {
        days += 30;
        months -= 1;
    } else if months < 0 && days > 0 {
        days -= 30;
        months += 1;
    }
    let months = i32::try_from(months).map_err(|_| out_of_range("interval"))?;
    let days = i32::try_from(days).map_err(|_| out_of_range("interval"))?;
    Ok(IntervalMonthDayNano::new(months, days, i.nanoseconds))
}

/// PostgreSQL's make_interval: years and months in months, weeks and days in days, the rest in
/// microseconds (secs rounded to one), each argument an int4 but secs.
fn make_interval(parts: [i64; 6], secs: f64) -> DfResult<IntervalMonthDayNano> {
    let mut int4 = [0i32; 6];
    for (to, from) in int4.iter_mut().zip(parts) {
        *to = i32::try_from(from).map_err(|_| out_of_range("integer"))?;
    }
    let [years, months, weeks, days, hours, mins] = int4;
    let overflow = || {
        to_df(Error::Data {
            code: "22008",
            message: "interval out of range".into(),
        })
    };
    let months = years
        .checked_mul(12)
        .and_then(|m| m.checked_add(months))
        .ok_or_else(overflow)?;
    let days = weeks
        .checked_mul(7)
        .and_then(|d| d.checked_add(days))
        .ok_or_else(overflow)?;
    let secs = (secs * USECS_PER_SEC as f64).round_ties_even();
    // (i64::MAX as f64 rounds up to 2^63, which does not fit.)
    if !secs.is_finite() || secs < i64::MIN as f64 || secs >= i64::MAX as f64 {
        return Err(overflow());
    }
    let micros = i64::from(hours) * 3_600 * USECS_PER_SEC + i64::from(mins) * 60 * USECS_PER_SEC;
    let nanos = micros
        .checked_add(secs as i64)
        .and_then(|t| t.checked_mul(1000))
        .ok_or_else(overflow)?;
    Ok(IntervalMonthDayNano::new(months, days, nanos))
}

fn justify_interval(i: IntervalMonthDayNano) -> DfResult<IntervalMonthDayNano> {
    let time = i.nanoseconds / 1000;
    let mut months = i64::from(i.months) + i64::from(i.days) / 30;
    let mut days = i64::from(i.days) % 30 + time / USECS_PER_DAY;
    let mut time = time % USECS_PER_DAY;
    if months > 0 && (days < 0 || (days == 0 && time < 0)) {
        days += 30;
        months -= 1;
    } else if months < 0 && (days > 0 || (days == 0 && time > 0)) {
        days -= 30;
        months += 1;
    }
    if days > 0 && time < 0 {
        time += USECS_PER_DAY;
        days -= 1;
    } else if days < 0 && time > 0 {
        time -= USECS_PER_DAY;
        days += 1;
    }
    let months = i32::try_from(months).map_err(|_| out_of_range("interval"))?;
    let days = i32::try_from(days).map_err(|_| out_of_range("interval"))?;
    Ok(IntervalMonthDayNano::new(months, days, time * 1000))
}

/// A zone of `AT TIME ZONE`.
enum Zone {
    Fixed(FixedOffset),
    Named(Tz),
}

/// `+02`, `-5:30`: a bare offset is POSIX, hours *west* of Greenwich (PostgreSQL's reading).
fn posix_offset(s: &str) -> Option<FixedOffset> {
    let s = s
        .strip_prefix("UTC")
        .or_else(|| s.strip_prefix("GMT"))
        .unwrap_or(s);
    let (west, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        b'0'..=b'9' => (1, s),
        _ => return None,
    };
    let mut parts = rest.split(':');
    let mut seconds = 0i32;
    for (i, unit) in [3600, 60, 1].iter().enumerate() {
        match parts.next() {
            Some(p) if !p.is_empty() && p.len() <= 2 && p.bytes().all(|b| b.is_ascii_digit()) => {
                seconds += p.parse::<i32>().ok()? * unit
            }
            None if i > 0 => break,
            _ => return None,
        }
    }
    if parts.next().is_some() {
        return None;
    }
    FixedOffset::east_opt(-west * seconds)
}

fn zone(name: &str) -> DfResult<Zone> {
    let trimmed = name.trim();
    if let Some(offset) = posix_offset(&trimmed.to_ascii_uppercase()) {
        return Ok(Zone::Fixed(offset));
    }
    let upper = trimmed.to_ascii_uppercase();
    let candidate = if matches!(upper.as_str(), "UTC" | "GMT" | "Z" | "ZULU") {
        "UTC"
    } else {
        trimmed
    };
    Tz::from_str(candidate).map(Zone::Named).map_err(|_| {
        to_df(Error::InvalidParameterValue {
            message: format!("time zone \"{name}\" not recognized"),
        })
    })
}

impl Zone {
    /// Seconds east of UTC at the instant `utc`.
    fn offset_at_instant(&self, utc: &NaiveDateTime) -> i64 {
        match self {
            Zone::Fixed(o) => i64::from(o.local_minus_utc()),
            Zone::Named(tz) => i64::from(tz.offset_from_utc_datetime(utc).fix().local_minus_utc()),
        }
    }

    /// Seconds east of UTC for the wall time `local` (the earlier reading where it is ambiguous,
    /// the offset before the gap where it does not exist).
    fn offset_at_local(&self, local: &NaiveDateTime) -> i64 {
        match self {
            Zone::Fixed(o) => i64::from(o.local_minus_utc()),
            Zone::Named(tz) => match tz.offset_from_local_datetime(local).earliest() {
                Some(o) => i64::from(o.fix().local_minus_utc()),
                None => self.offset_at_instant(local),
            },
        }
    }
}

fn at_time_zone(ts: &ArrayRef, zones: &ArrayRef) -> DfResult<ArrayRef> {
    let to_local = matches!(ts.data_type(), DataType::Timestamp(_, Some(_)));
    let values = micros(ts)?;
    let zone_at = |row: usize| -> DfResult<Option<Zone>> {
        if zones.is_null(row) {
            return Ok(None);
        }
        match zones.data_type() {
            DataType::Interval(_) => {
                let i = cast(zones, &INTERVAL)?
                    .as_primitive::<IntervalMonthDayNanoType>()
                    .value(row);
                let seconds = i.nanoseconds / 1_000_000_000 + i64::from(i.days) * 86_400;
                let offset = i32::try_from(seconds)
                    .ok()
                    .and_then(FixedOffset::east_opt)
                    .ok_or_else(|| {
                        to_df(Error::InvalidParameterValue {
                            message: "interval time zone must be between -15 and +15 hours".into(),
                        })
                    })?;
                Ok(Some(Zone::Fixed(offset)))
            }
            _ => {
                let text = cast(zones, &DataType::Utf8)?;
                let text: &StringArray = text.as_string();
                zone(text.value(row)).map(Some)
            }
        }
    };
    let mut cached: Option<(String, Zone)> = None;
    let mut out = Vec::with_capacity(values.len());
    for row in 0..values.len() {
        if values.is_null(row) {
            out.push(None);
            continue;
        }
        let key = format!("{:?}", ScalarValue::try_from_array(zones, row)?);
        if cached.as_ref().is_none_or(|(k, _)| *k != key) {
            cached = zone_at(row)?.map(|z| (key, z));
        }
        let Some((_, z)) = &cached else {
            out.push(None);
            continue;
        };
        let v = values.value(row);
        let t = wall_time(v)?;
        let shifted = if to_local {
            v + z.offset_at_instant(&t) * USECS_PER_SEC
        } else {
            v - z.offset_at_local(&t) * USECS_PER_SEC
        };
        out.push(Some(shifted));
    }
    let array = TimestampMicrosecondArray::from(out);
    Ok(if to_local {
        Arc::new(array)
    } else {
        Arc::new(array.with_timezone(UTC))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_interval_adds_its_parts_and_refuses_what_does_not_fit() {
        let i = make_interval([1, 2, 3, 4, 5, 6], 7.5).expect("fits");
        assert_eq!(
            i,
            IntervalMonthDayNano::new(14, 25, ((5 * 3600 + 6 * 60) * 1_000_000 + 7_500_000) * 1000)
        );
        // Half a microsecond rounds to even, as PostgreSQL's rint does.
        let i = make_interval([0; 6], 0.0000025).expect("fits");
        assert_eq!(i.nanoseconds, 2000);
        for (parts, secs) in [
            ([178_956_971, 0, 0, 0, 0, 0], 0.0),
            ([0, 0, 306_783_379, 0, 0, 0], 0.0),
            ([0; 6], f64::NAN),
            ([0; 6], f64::INFINITY),
            ([0; 6], 1e300),
            ([0, 0, 0, 0, 0, 0], 9.3e12),
            ([0, 0, 0, 0, 3_000_000_000, 0], 0.0),
        ] {
            assert!(make_interval(parts, secs).is_err(), "{parts:?} {secs}");
        }
    }

    fn ts(s: &str) -> i64 {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
            .map(|t| t.and_utc().timestamp_micros())
            .unwrap_or_default()
    }

    #[test]
    fn age_borrows_days_like_postgres() {
        let i = age(ts("2024-03-17 00:00:00"), ts("2023-01-01 00:00:00")).expect("age");
        assert_eq!((i.months, i.days, i.nanoseconds), (14, 16, 0));
        let i = age(ts("2024-03-01 00:00:00"), ts("2024-01-31 00:00:00")).expect("age");
        assert_eq!((i.months, i.days), (1, 1));
        let i = age(ts("2023-01-01 00:00:00"), ts("2024-03-17 12:00:00")).expect("age");
        assert_eq!(
            (i.months, i.days, i.nanoseconds),
            (-14, -16, -43_200_000_000_000)
        );
    }

    #[test]
    fn justify_moves_whole_days_and_months() {
        let h = 3_600_000_000_000i64;
        let i = justify_hours(IntervalMonthDayNano::new(0, 0, 49 * h)).expect("justify");
        assert_eq!((i.days, i.nanoseconds), (2, h));
        let i = justify_hours(IntervalMonthDayNano::new(0, 1, -h)).expect("justify");
        assert_eq!((i.days, i.nanoseconds), (0, 23 * h));
        let i = justify_days(IntervalMonthDayNano::new(0, 35, 0)).expect("justify");
        assert_eq!((i.months, i.days), (1, 5));
        let i = justify_interval(IntervalMonthDayNano::new(1, 0, -h)).expect("justify");
        assert_eq!((i.months, i.days, i.nanoseconds), (0, 29, 23 * h));
    }

    #[test]
    fn bare_offsets_are_posix() {
        let o = posix_offset("+02").map(|o| o.local_minus_utc());
        assert_eq!(o, Some(-7200));
        let o = posix_offset("UTC-5:30").map(|o| o.local_minus_utc());
        assert_eq!(o, Some(19800));
        assert!(posix_offset("EUROPE/PARIS").is_none());
    }
}
