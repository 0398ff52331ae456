//! PostgreSQL's formatting functions that DataFusion lacks or spells differently: `format()`,
//! `div()`, and `to_char`/`to_date`/`to_timestamp` with PostgreSQL's templates (`YYYY-MM-DD`,
//! `FM9999.00`) rather than chrono's (`%Y-%m-%d`).

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, Signature, Volatility,
};

use crate::error::{to_df, Error};

/// Evaluates a function row by row on scalars (these functions see few rows; any argument type).
fn rowwise(
    args: &ScalarFunctionArgs,
    f: impl Fn(&[ScalarValue]) -> crate::Result<ScalarValue>,
) -> DfResult<ColumnarValue> {
    if args
        .args
        .iter()
        .all(|a| matches!(a, ColumnarValue::Scalar(_)))
    {
        let values: Vec<ScalarValue> = args
            .args
            .iter()
            .filter_map(|a| match a {
                ColumnarValue::Scalar(s) => Some(s.clone()),
                ColumnarValue::Array(_) => None,
            })
            .collect();
        return f(&values).map(ColumnarValue::Scalar).map_err(to_df);
    }
    let arrays = args
        .args
        .iter()
        .map(|a| a.clone().into_array(args.number_rows))
        .collect::<DfResult<Vec<_>>>()?;
    let mut out = Vec::with_capacity(args.number_rows);
    for row in 0..args.number_rows {
        let values = arrays
            .iter()
            .map(|a| ScalarValue::try_from_array(a, row))
            .collect::<DfResult<Vec<_>>>()?;
        out.push(f(&values).map_err(to_df)?);
    }
    crate::functions::rows_to_array(args, out)
}

fn text_of(v: &ScalarValue) -> Option<String> {
    match v {
        _ if v.is_null() => None,
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Some(s.clone()),
        ScalarValue::Boolean(Some(b)) => Some(if *b { "t" } else { "f" }.into()),
        other => Some(other.to_string()),
    }
}

pub(crate) fn udfs() -> Vec<Arc<ScalarUDF>> {
    vec![
        crate::functions::udf_any(
            "format",
            Signature::variadic_any(Volatility::Stable),
            DataType::Utf8,
            Arc::new(|args| rowwise(args, format)),
        ),
        crate::functions::udf_any(
            "div",
            Signature::any(2, Volatility::Immutable),
            DataType::Decimal128(38, 0),
            Arc::new(|args| rowwise(args, div)),
        ),
        crate::functions::udf_any(
            "to_char",
            Signature::any(2, Volatility::Stable),
            DataType::Utf8,
            Arc::new(|args| rowwise(args, to_char)),
        ),
        crate::functions::udf_any(
            "to_date",
            Signature::any(2, Volatility::Stable),
            DataType::Date32,
            Arc::new(|args| rowwise(args, to_date)),
        ),
    ]
}

/// `format(fmt, args...)`: `%s`, `%I`, `%L`, `%%`, with `n$` positions and `-`/width.
fn format(args: &[ScalarValue]) -> crate::Result<ScalarValue> {
    let Some(fmt) = args.first().and_then(text_of) else {
        return Ok(ScalarValue::Utf8(None));
    };
    let params = &args[1..];
    let mut out = String::new();
    let mut next = 0usize;
    let mut chars = fmt.chars().peekable();
    let bad = |m: &str| Error::InvalidParameterValue { message: m.into() };
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = String::new();
        let conv = loop {
            match chars.next() {
                Some(c) if c.is_ascii_digit() || c == '$' || c == '-' => spec.push(c),
                Some(c) => break c,
                None => return Err(bad("unterminated format() type specifier")),
            }
        };
        if conv == '%' && spec.is_empty() {
            out.push('%');
            continue;
        }
        let (pos, flags) = match spec.split_once('$') {
            Some((n, rest)) => {
                let n: usize = n.parse().map_err(|_| bad("invalid format() position"))?;
                if n == 0 {
                    return Err(bad(
                        "format specifies argument 0, but arguments are numbered from 1",
                    ));
                }
                (n - 1, rest.to_string())
            }
            None => (next, spec),
        };
        next = pos + 1;
        let left = flags.starts_with('-');
        let width: usize = flags.trim_start_matches('-').parse().unwrap_or(0);
        let arg = params
            .get(pos)
            .ok_or_else(|| bad("too few arguments for format()"))?;
        let text = match conv {
            's' => text_of(arg).unwrap_or_default(),
            'I' => match text_of(arg) {
                Some(s) => quote_ident(&s),
                None => {
                    return Err(Error::DataException {
                        message: "null values cannot be formatted as an SQL identifier".into(),
                    })
                }
            },
            'L' => match text_of(arg) {
                Some(s) => quote_literal(&s),
                None => "NULL".into(),
            },
            other => {
                return Err(bad(&format!(
                    "unrecognized format() type specifier \"{other}\""
                )))
            }
        };
        let pad = width.saturating_sub(text.chars().count());
        if left {
            out.push_str(&text);
            out.extend(std::iter::repeat_n(' ', pad));
        } else {
            out.extend(std::iter::repeat_n(' ', pad));
            out.push_str(&text);
        }
    }
    Ok(ScalarValue::Utf8(Some(out)))
}

/// PostgreSQL's quote_ident (keywords quoted too).
pub(crate) fn quote_ident(s: &str) -> String {
    crate::pg_catalog::describe::quote_ident(s)
}

/// PostgreSQL's quote_literal: quotes doubled; with a backslash, an E'' string.
pub(crate) fn quote_literal(s: &str) -> String {
    if s.contains('\\') {
        format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

/// An exact decimal as (unscaled, scale); floats go through their shortest text.
fn decimal_of(v: &ScalarValue) -> crate::Result<Option<(i128, i8)>> {
    Ok(match v {
        _ if v.is_null() => None,
        ScalarValue::Decimal128(Some(n), _, s) => Some((*n, *s)),
        ScalarValue::Float32(_) | ScalarValue::Float64(_) | ScalarValue::Utf8(_) => {
            let text = text_of(v).unwrap_or_default();
            let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
            let digits = format!("{int}{frac}");
            let n: i128 = digits
                .parse()
                .map_err(|_| Error::InvalidTextRepresentation {
                    message: format!("invalid input syntax for type numeric: \"{text}\""),
                })?;
            Some((n, i8::try_from(frac.len()).unwrap_or(i8::MAX)))
        }
        other => {
            let i = other
                .cast_to(&DataType::Int64)
                .ok()
                .and_then(|s| match s {
                    ScalarValue::Int64(v) => v,
                    _ => None,
                })
                .ok_or_else(|| Error::UndefinedFunction {
                    message: format!("function not defined for type {}", other.data_type()),
                })?;
            Some((i128::from(i), 0))
        }
    })
}

fn rescale(n: i128, from: i8, to: i8) -> Option<i128> {
    if to >= from {
        n.checked_mul(10i128.checked_pow(u32::try_from(to - from).ok()?)?)
    } else {
        Some(n / 10i128.checked_pow(u32::try_from(from - to).ok()?)?)
    }
}

/// `div(a, b)`: the integer part of a / b, as numeric.
fn div(args: &[ScalarValue]) -> crate::Result<ScalarValue> {
    let (Some(a), Some(b)) = (decimal_of(&args[0])?, decimal_of(&args[1])?) else {
        return Ok(ScalarValue::Decimal128(None, 38, 0));
    };
    let scale = a.1.max(b.1);
    let overflow = || Error::NumericOutOfRange {
        message: "value overflows numeric format".into(),
    };
    let x = rescale(a.0, a.1, scale).ok_or_else(overflow)?;
    let y = rescale(b.0, b.1, scale).ok_or_else(overflow)?;
    if y == 0 {
        return Err(Error::DivisionByZero);
    }
    Ok(ScalarValue::Decimal128(Some(x / y), 38, 0))
}

/// A timestamp argument as a naive date-time (timestamptz in UTC, the session zone).
fn datetime_of(v: &ScalarValue) -> Option<NaiveDateTime> {
    let micros = match v.cast_to(&DataType::Timestamp(TimeUnit::Microsecond, None)) {
        Ok(ScalarValue::TimestampMicrosecond(Some(m), _)) => m,
        _ => return None,
    };
    DateTime::from_timestamp_micros(micros).map(|d| d.naive_utc())
}

fn to_char(args: &[ScalarValue]) -> crate::Result<ScalarValue> {
    let (Some(value), Some(fmt)) = (args.first(), args.get(1).and_then(text_of)) else {
        return Ok(ScalarValue::Utf8(None));
    };
    if value.is_null() {
        return Ok(ScalarValue::Utf8(None));
    }
    let out = match value.data_type() {
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(..) => {
            let dt = datetime_of(value).ok_or_else(|| Error::DataException {
                message: "timestamp out of range".into(),
            })?;
            dt.format(&chrono_template(&fmt)).to_string()
        }
        _ => match decimal_of(value)? {
            Some((n, scale)) => number_template(n, scale, &fmt),
            None => return Ok(ScalarValue::Utf8(None)),
        },
    };
    Ok(ScalarValue::Utf8(Some(out)))
}

fn to_date(args: &[ScalarValue]) -> crate::Result<ScalarValue> {
    let (Some(text), Some(fmt)) = (
        args.first().and_then(text_of),
        args.get(1).and_then(text_of),
    ) else {
        return Ok(ScalarValue::Date32(None));
    };
    let date = NaiveDate::parse_from_str(text.trim(), &chrono_template(&fmt)).map_err(|_| {
        Error::InvalidDatetimeFormat {
            message: format!("invalid value \"{text}\" for \"{fmt}\""),
        }
    })?;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    let days = i32::try_from((date - epoch).num_days()).map_err(|_| Error::DataException {
        message: "date out of range".into(),
    })?;
    Ok(ScalarValue::Date32(Some(days)))
}

/// PostgreSQL's date/time template patterns as a chrono format string (the common ones).
fn chrono_template(fmt: &str) -> String {
    const PATTERNS: &[(&str, &str, &str)] = &[
        // (pattern, chrono, chrono with FM)
        ("HH24", "%H", "%-H"),
        ("HH12", "%I", "%-I"),
        ("HH", "%I", "%-I"),
        ("MI", "%M", "%-M"),
        ("SS", "%S", "%-S"),
        ("MS", "%3f", "%3f"),
        ("US", "%6f", "%6f"),
        ("YYYY", "%Y", "%Y"),
        ("YY", "%y", "%y"),
        ("MONTH", "%B", "%B"),
        ("Month", "%B", "%B"),
        ("month", "%B", "%B"),
        ("MON", "%b", "%b"),
        ("Mon", "%b", "%b"),
        ("mon", "%b", "%b"),
        ("MM", "%m", "%-m"),
        ("DAY", "%A", "%A"),
        ("Day", "%A", "%A"),
        ("day", "%A", "%A"),
        ("DY", "%a", "%a"),
        ("Dy", "%a", "%a"),
        ("dy", "%a", "%a"),
        ("DDD", "%j", "%-j"),
        ("DD", "%d", "%-d"),
        ("D", "%u", "%u"),
        ("AM", "%p", "%p"),
        ("PM", "%p", "%p"),
        ("am", "%P", "%P"),
        ("pm", "%P", "%P"),
        ("TZ", "UTC", "UTC"),
        ("tz", "utc", "utc"),
        ("IW", "%V", "%V"),
        ("Q", "%q", "%q"),
    ];
    let mut out = String::new();
    let mut rest = fmt;
    let mut fill_mode = false;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("FM") {
            fill_mode = true;
            rest = r;
            continue;
        }
        if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').unwrap_or(r.len());
            out.push_str(&r[..end].replace('%', "%%"));
            rest = r.get(end + 1..).unwrap_or("");
            continue;
        }
        if let Some((p, plain, fm)) = PATTERNS.iter().find(|(p, ..)| rest.starts_with(p)) {
            out.push_str(if fill_mode { fm } else { plain });
            fill_mode = false;
            rest = &rest[p.len()..];
            continue;
        }
        let c = rest.chars().next().unwrap_or(' ');
        if c == '%' {
            out.push_str("%%");
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// `to_char(number, template)` for the digit patterns `9`, `0`, `.`/`D`, `,`/`G` and `FM`.
fn number_template(n: i128, scale: i8, fmt: &str) -> String {
    let fill_mode = fmt.contains("FM");
    let body = fmt.replace("FM", "");
    let (int_pat, frac_pat) = match body.find(['.', 'D']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body.as_str(), None),
    };
    let frac_digits = frac_pat.map_or(0, |f| f.chars().filter(|c| matches!(c, '9' | '0')).count());
    // Round half away from zero to the template's fraction digits.
    let target = i8::try_from(frac_digits).unwrap_or(i8::MAX);
    let value = if target >= scale {
        rescale(n, scale, target).unwrap_or(n)
    } else {
        let div = 10i128.pow(u32::try_from(scale - target).unwrap_or(0));
        let q = n / div;
        let r = (n % div).abs();
        if r * 2 >= div {
            q + n.signum()
        } else {
            q
        }
    };
    let negative = value < 0;
    let digits = value.unsigned_abs().to_string();
    let (int_digits, frac_str) = if frac_digits > 0 {
        let padded = format!("{digits:0>width$}", width = frac_digits + 1);
        let (i, f) = padded.split_at(padded.len() - frac_digits);
        (i.to_string(), f.to_string())
    } else {
        (digits, String::new())
    };
    let int_slots = int_pat.chars().filter(|c| matches!(c, '9' | '0')).count();
    let int_digits = if int_digits == "0" {
        String::new()
    } else {
        int_digits
    };
    if int_digits.len() > int_slots {
        let hashes: String = body
            .chars()
            .map(|c| if matches!(c, '9' | '0') { '#' } else { c })
            .collect();
        return format!(" {hashes}");
    }
    // Integer part: slots filled right to left.
    let first_zero = int_pat.find('0').map(|i| {
        int_pat[..i]
            .chars()
            .filter(|c| matches!(c, '9' | '0'))
            .count()
    });
    let mut int_out = String::new();
    let mut digit_iter = int_digits.chars().rev();
    let slots: Vec<char> = int_pat.chars().collect();
    let mut slot_index = int_slots;
    let mut started_padding = false;
    for &c in slots.iter().rev() {
        match c {
            '9' | '0' => {
                slot_index -= 1;
                match digit_iter.next() {
                    Some(d) => int_out.push(d),
                    None if first_zero.is_some_and(|z| slot_index >= z) => int_out.push('0'),
                    None if frac_digits == 0
                        && slot_index + 1 == int_slots
                        && int_out.is_empty() =>
                    {
                        int_out.push('0')
                    }
                    None => {
                        started_padding = true;
                        if !fill_mode {
                            int_out.push(' ');
                        }
                    }
                }
            }
            ',' | 'G' => {
                if !started_padding {
                    int_out.push(',');
                } else if !fill_mode {
                    int_out.push(' ');
                }
            }
            other => int_out.push(other),
        }
    }
    let mut int_out: String = int_out.chars().rev().collect();
    // The sign goes just before the first digit.
    let sign = if negative {
        "-"
    } else if fill_mode {
        ""
    } else {
        " "
    };
    let lead = int_out.len() - int_out.trim_start_matches(' ').len();
    int_out.insert_str(lead, sign);
    let mut out = int_out;
    if let Some(fp) = frac_pat {
        out.push('.');
        let mut frac_out = String::new();
        let mut fd = frac_str.chars();
        let mut last_zero_slot = 0;
        for (i, c) in fp.chars().enumerate() {
            match c {
                '9' | '0' => {
                    frac_out.push(fd.next().unwrap_or('0'));
                    if c == '0' {
                        last_zero_slot = frac_out.len();
                    }
                }
                other => {
                    let _ = i;
                    frac_out.push(other)
                }
            }
        }
        if fill_mode {
            let keep = frac_out.trim_end_matches('0').len().max(last_zero_slot);
            frac_out.truncate(keep);
        }
        out.push_str(&frac_out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> ScalarValue {
        ScalarValue::Utf8(Some(v.into()))
    }

    #[test]
    fn format_specifiers() {
        let r = format(&[
            s("%s has %s items, %I %L %%"),
            s("cart"),
            ScalarValue::Int32(Some(3)),
            s("Tab"),
            s("it's"),
        ]);
        assert_eq!(r.ok(), Some(s("cart has 3 items, \"Tab\" 'it''s' %")));
        assert_eq!(
            format(&[s("%2$s %1$s|%-3s|"), s("a"), s("b")]).ok(),
            Some(s("b a|b  |"))
        );
    }

    #[test]
    fn number_templates() {
        assert_eq!(number_template(12345, 1, "FM9999.00"), "1234.50");
        assert_eq!(number_template(12345, 1, "9999.00"), " 1234.50");
        assert_eq!(number_template(-5, 0, "999"), "  -5");
        assert_eq!(number_template(1234567, 0, "9,999,999"), " 1,234,567");
        assert_eq!(number_template(5, 1, "0.99"), " 0.50");
    }

    #[test]
    fn date_templates() {
        assert_eq!(chrono_template("YYYY/MM/DD"), "%Y/%m/%d");
        assert_eq!(
            chrono_template("FMDD \"of\" Month HH24:MI"),
            "%-d of %B %H:%M"
        );
    }
}
