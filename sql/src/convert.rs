//! Conversions between storage values and Arrow, with PostgreSQL's assignment rules: a value
//! stored into a column is coerced to the column's type, and out-of-range or malformed input is
//! an error (22003, 22P02, 22001), never a silent truncation.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder,
    Float32Builder, Float64Builder, Int16Builder, Int32Builder, Int64Builder, ListArray,
    StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::datatypes::{DataType as ArrowType, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::ScalarValue;
use weft_storage::{ArrayElem, DataType, Row, Value};

use crate::error::{Error, Result};
use crate::json;
use crate::pgtype::UTC;

const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// Builds one Arrow column from the `col`-th value of each row.
pub fn build_array<'a>(t: DataType, values: impl Iterator<Item = &'a Value>) -> Result<ArrayRef> {
    macro_rules! build {
        ($builder:expr, $pat:pat => $v:expr) => {{
            let mut b = $builder;
            for value in values {
                match value {
                    Value::Null => b.append_null(),
                    $pat => b.append_value($v),
                    other => return Err(mismatch(t, other)),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    Ok(match t {
        DataType::Int16 => build!(Int16Builder::new(), Value::Int16(v) => *v),
        DataType::Int32 => build!(Int32Builder::new(), Value::Int32(v) => *v),
        DataType::Int64 => build!(Int64Builder::new(), Value::Int64(v) => *v),
        DataType::Float32 => build!(Float32Builder::new(), Value::Float32(v) => *v),
        DataType::Float64 => build!(Float64Builder::new(), Value::Float64(v) => *v),
        DataType::Numeric { precision, scale } => {
            let b = Decimal128Builder::new()
                .with_precision_and_scale(precision, scale)
                .map_err(Error::from)?;
            build!(b, Value::Numeric(v) => *v)
        }
        DataType::Text | DataType::Varchar(_) | DataType::Char(_) | DataType::Jsonb => {
            build!(StringBuilder::new(), Value::Text(v) => v.as_str())
        }
        DataType::Uuid => {
            build!(StringBuilder::new(), Value::Uuid(v) => uuid::Uuid::from_bytes(*v).to_string())
        }
        DataType::Bool => build!(BooleanBuilder::new(), Value::Bool(v) => *v),
        DataType::Bytea => build!(BinaryBuilder::new(), Value::Bytes(v) => v.as_slice()),
        DataType::Date => build!(Date32Builder::new(), Value::Date(v) => *v),
        DataType::Timestamp => {
            build!(TimestampMicrosecondBuilder::new(), Value::Timestamp(v) => *v)
        }
        DataType::TimestampTz => build!(
            TimestampMicrosecondBuilder::new().with_timezone(UTC),
            Value::TimestampTz(v) => *v
        ),
        DataType::Array(elem) => list_array(t, elem, values)?,
    })
}

/// A list column: the elements of every row flattened into one element array, with offsets.
fn list_array<'a>(
    t: DataType,
    elem: ArrayElem,
    values: impl Iterator<Item = &'a Value>,
) -> Result<ArrayRef> {
    let mut offsets = vec![0i32];
    let mut valid = Vec::new();
    let mut items: Vec<&Value> = Vec::new();
    for value in values {
        match value {
            Value::Null => valid.push(false),
            Value::Array(xs) => {
                items.extend(xs);
                valid.push(true);
            }
            other => return Err(mismatch(t, other)),
        }
        let end = i32::try_from(items.len())
            .map_err(|_| Error::internal("more array elements than a batch can hold"))?;
        offsets.push(end);
    }
    let field = crate::pgtype::list_item_field(elem);
    let elements = build_array(elem.scalar(), items.into_iter())?;
    let list = ListArray::try_new(
        field,
        OffsetBuffer::new(offsets.into()),
        elements,
        Some(NullBuffer::from(valid)),
    )
    .map_err(Error::from)?;
    Ok(Arc::new(list))
}

fn mismatch(t: DataType, v: &Value) -> Error {
    Error::internal(format!(
        "stored value {v:?} does not match column type {t:?}"
    ))
}

/// Builds a record batch from rows whose values follow `types`, one per schema field.
pub fn rows_to_batch(schema: SchemaRef, types: &[DataType], rows: &[Row]) -> Result<RecordBatch> {
    let columns = types
        .iter()
        .enumerate()
        .map(|(i, t)| build_array(*t, rows.iter().map(|r| r.get(i).unwrap_or(&Value::Null))))
        .collect::<Result<Vec<_>>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
    RecordBatch::try_new_with_options(schema, columns, &options).map_err(Error::from)
}

/// The value of one Arrow cell, coerced to a column's type.
pub fn array_value(array: &ArrayRef, row: usize, target: DataType) -> Result<Value> {
    let scalar = ScalarValue::try_from_array(array, row).map_err(Error::from)?;
    scalar_to_value(&scalar, target)
}

/// A stored value as a DataFusion scalar of the column's Arrow type.
pub fn value_to_scalar(v: &Value, t: DataType) -> ScalarValue {
    match (v, t) {
        (Value::Null, t) => {
            ScalarValue::try_from(&crate::pgtype::arrow_type(t)).unwrap_or(ScalarValue::Null)
        }
        (Value::Bool(b), _) => ScalarValue::Boolean(Some(*b)),
        (Value::Int16(i), _) => ScalarValue::Int16(Some(*i)),
        (Value::Int32(i), _) => ScalarValue::Int32(Some(*i)),
        (Value::Int64(i), _) => ScalarValue::Int64(Some(*i)),
        (Value::Float32(f), _) => ScalarValue::Float32(Some(*f)),
        (Value::Float64(f), _) => ScalarValue::Float64(Some(*f)),
        (Value::Numeric(n), DataType::Numeric { precision, scale }) => {
            ScalarValue::Decimal128(Some(*n), precision, scale)
        }
        (Value::Numeric(n), _) => ScalarValue::Decimal128(Some(*n), 38, 0),
        (Value::Text(s), _) => ScalarValue::Utf8(Some(s.clone())),
        (Value::Bytes(b), _) => ScalarValue::Binary(Some(b.clone())),
        (Value::Date(d), _) => ScalarValue::Date32(Some(*d)),
        (Value::Timestamp(t), _) => ScalarValue::TimestampMicrosecond(Some(*t), None),
        (Value::TimestampTz(t), _) => ScalarValue::TimestampMicrosecond(Some(*t), Some(UTC.into())),
        (Value::Uuid(u), _) => ScalarValue::Utf8(Some(uuid::Uuid::from_bytes(*u).to_string())),
        (Value::Array(_), DataType::Array(_)) => match build_array(t, std::iter::once(v)) {
            Ok(a) => ScalarValue::List(Arc::new(a.as_list::<i32>().clone())),
            Err(_) => ScalarValue::Null,
        },
        (Value::Array(_), _) => ScalarValue::Null,
    }
}

fn type_label(t: DataType) -> String {
    let label = match t {
        DataType::Int16 => "smallint",
        DataType::Int32 => "integer",
        DataType::Int64 => "bigint",
        DataType::Float32 => "real",
        DataType::Float64 => "double precision",
        DataType::Numeric { .. } => "numeric",
        DataType::Text => "text",
        DataType::Varchar(_) => "character varying",
        DataType::Char(_) => "character",
        DataType::Bool => "boolean",
        DataType::Bytea => "bytea",
        DataType::Date => "date",
        DataType::Timestamp => "timestamp without time zone",
        DataType::TimestampTz => "timestamp with time zone",
        DataType::Uuid => "uuid",
        DataType::Jsonb => "jsonb",
        DataType::Array(elem) => return format!("{}[]", type_label(elem.scalar())),
    };
    label.to_string()
}

fn bad_input(t: DataType, s: &str) -> Error {
    Error::InvalidTextRepresentation {
        message: format!("invalid input syntax for type {}: \"{s}\"", type_label(t)),
    }
}

fn out_of_range(t: DataType) -> Error {
    let message = match t {
        DataType::Int16 => "smallint out of range".to_string(),
        DataType::Int32 => "integer out of range".to_string(),
        DataType::Int64 => "bigint out of range".to_string(),
        DataType::Numeric { .. } => "numeric field overflow".to_string(),
        other => format!("value out of range for type {}", type_label(other)),
    };
    Error::NumericOutOfRange { message }
}

fn wrong_type(t: DataType, s: &ScalarValue) -> Error {
    Error::DatatypeMismatch {
        message: format!(
            "value of type {} cannot be assigned to a column of type {}",
            crate::pgtype::PgType::from_arrow(&s.data_type()).name(),
            type_label(t)
        ),
    }
}

/// An integer view of a numeric scalar, rounding like PostgreSQL (half away from zero).
fn scalar_as_i128(s: &ScalarValue, t: DataType) -> Result<Option<i128>> {
    Ok(Some(match s {
        ScalarValue::Int8(Some(v)) => i128::from(*v),
        ScalarValue::Int16(Some(v)) => i128::from(*v),
        ScalarValue::Int32(Some(v)) => i128::from(*v),
        ScalarValue::Int64(Some(v)) => i128::from(*v),
        ScalarValue::UInt8(Some(v)) => i128::from(*v),
        ScalarValue::UInt16(Some(v)) => i128::from(*v),
        ScalarValue::UInt32(Some(v)) => i128::from(*v),
        ScalarValue::UInt64(Some(v)) => i128::from(*v),
        ScalarValue::Float32(Some(v)) => float_to_i128(f64::from(*v), t)?,
        ScalarValue::Float64(Some(v)) => float_to_i128(*v, t)?,
        ScalarValue::Decimal128(Some(v), _, scale) => {
            rescale(*v, *scale, 0).ok_or_else(|| out_of_range(t))?
        }
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => {
            let trimmed = s.trim();
            match trimmed.parse::<i128>() {
                Ok(v) => v,
                Err(_) if is_integer_literal(trimmed) => return Err(out_of_range(t)),
                Err(_) => return Err(bad_input(t, s)),
            }
        }
        _ => return Ok(None),
    }))
}

fn is_integer_literal(s: &str) -> bool {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
}

fn float_to_i128(v: f64, t: DataType) -> Result<i128> {
    if !v.is_finite() || v.abs() > 1e30 {
        return Err(out_of_range(t));
    }
    // PostgreSQL rounds float to integer with rint(): half to even.
    Ok(v.round_ties_even() as i128)
}

/// Moves an unscaled decimal from one scale to another, rounding half away from zero.
pub fn rescale(v: i128, from: i8, to: i8) -> Option<i128> {
    let diff = i32::from(to) - i32::from(from);
    if diff >= 0 {
        v.checked_mul(10i128.checked_pow(diff.unsigned_abs())?)
    } else {
        let div = 10i128.checked_pow(diff.unsigned_abs())?;
        let q = v / div;
        let r = v % div;
        Some(if r.abs() * 2 >= div {
            q + v.signum()
        } else {
            q
        })
    }
}

fn parse_decimal(s: &str, scale: i8) -> Option<i128> {
    let s = s.trim();
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (mantissa, exp) = match digits.find(['e', 'E']) {
        Some(i) => (&digits[..i], digits[i + 1..].parse::<i32>().ok()?),
        None => (digits, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let all: String = format!("{int}{frac}");
    let unscaled: i128 = if all.is_empty() { 0 } else { all.parse().ok()? };
    let from_scale = i32::try_from(frac.len()).ok()? - exp;
    let from_scale = i8::try_from(from_scale).ok()?;
    let v = rescale(unscaled, from_scale, scale)?;
    Some(if neg { -v } else { v })
}

fn decimal_digits(v: i128) -> u32 {
    let mut n = v.unsigned_abs();
    let mut d = 0;
    while n > 0 {
        n /= 10;
        d += 1;
    }
    d
}

fn scalar_str(s: &ScalarValue) -> Option<&str> {
    match s {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Some(s),
        _ => None,
    }
}

/// Coerces a scalar to a column type, as PostgreSQL's assignment cast would.
pub fn scalar_to_value(s: &ScalarValue, t: DataType) -> Result<Value> {
    if s.is_null() {
        return Ok(Value::Null);
    }
    match t {
        DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            if matches!(s, ScalarValue::Boolean(_)) {
                return Err(wrong_type(t, s));
            }
            let v = scalar_as_i128(s, t)?.ok_or_else(|| wrong_type(t, s))?;
            // Text input names itself, as PostgreSQL's int4in does.
            let range = |_| match scalar_str(s) {
                Some(text) => Error::NumericOutOfRange {
                    message: format!(
                        "value \"{}\" is out of range for type {}",
                        text.trim(),
                        type_label(t)
                    ),
                },
                None => out_of_range(t),
            };
            match t {
                DataType::Int16 => i16::try_from(v).map(Value::Int16).map_err(range),
                DataType::Int32 => i32::try_from(v).map(Value::Int32).map_err(range),
                _ => i64::try_from(v).map(Value::Int64).map_err(range),
            }
        }
        DataType::Float32 | DataType::Float64 => {
            let v = match s {
                ScalarValue::Float32(Some(v)) => f64::from(*v),
                ScalarValue::Float64(Some(v)) => *v,
                ScalarValue::Decimal128(Some(v), _, scale) => {
                    *v as f64 / 10f64.powi(i32::from(*scale))
                }
                other => match scalar_str(other) {
                    Some(text) => parse_float(text).ok_or_else(|| bad_input(t, text))?,
                    None => scalar_as_i128(other, t)?.ok_or_else(|| wrong_type(t, other))? as f64,
                },
            };
            if t == DataType::Float32 {
                let f = v as f32;
                if f.is_infinite() && v.is_finite() {
                    return Err(out_of_range(t));
                }
                Ok(Value::Float32(f))
            } else {
                Ok(Value::Float64(v))
            }
        }
        DataType::Numeric { precision, scale } => {
            let v = match s {
                ScalarValue::Decimal128(Some(v), _, from) => rescale(*v, *from, scale),
                ScalarValue::Float32(Some(_)) | ScalarValue::Float64(Some(_)) => {
                    let f = match s {
                        ScalarValue::Float32(Some(v)) => f64::from(*v),
                        ScalarValue::Float64(Some(v)) => *v,
                        _ => 0.0,
                    };
                    if !f.is_finite() {
                        return Err(out_of_range(t));
                    }
                    parse_decimal(&format!("{f}"), scale)
                }
                other => match scalar_str(other) {
                    Some(text) => {
                        Some(parse_decimal(text, scale).ok_or_else(|| bad_input(t, text))?)
                    }
                    None => {
                        let i = scalar_as_i128(other, t)?.ok_or_else(|| wrong_type(t, other))?;
                        rescale(i, 0, scale)
                    }
                },
            };
            let v = v.ok_or_else(|| out_of_range(t))?;
            if decimal_digits(v) > u32::from(precision) {
                return Err(out_of_range(t));
            }
            Ok(Value::Numeric(v))
        }
        DataType::Text | DataType::Varchar(_) | DataType::Char(_) => {
            let text = match scalar_str(s) {
                Some(x) => x.to_string(),
                None => scalar_text(s),
            };
            string_for_column(text, t).map(Value::Text)
        }
        DataType::Jsonb => {
            let text = scalar_str(s)
                .map(str::to_string)
                .unwrap_or_else(|| scalar_text(s));
            json::normalize(&text).map(Value::Text)
        }
        DataType::Bool => match s {
            ScalarValue::Boolean(Some(b)) => Ok(Value::Bool(*b)),
            other => match scalar_str(other) {
                Some(text) => parse_bool(text)
                    .map(Value::Bool)
                    .ok_or_else(|| bad_input(t, text)),
                None => Err(wrong_type(t, other)),
            },
        },
        DataType::Bytea => match s {
            ScalarValue::Binary(Some(b))
            | ScalarValue::LargeBinary(Some(b))
            | ScalarValue::BinaryView(Some(b)) => Ok(Value::Bytes(b.clone())),
            ScalarValue::FixedSizeBinary(_, Some(b)) => Ok(Value::Bytes(b.clone())),
            other => match scalar_str(other) {
                Some(text) => parse_bytea(text)
                    .map(Value::Bytes)
                    .ok_or_else(|| bad_input(t, text)),
                None => Err(wrong_type(t, other)),
            },
        },
        DataType::Uuid => match s {
            ScalarValue::FixedSizeBinary(16, Some(b)) => {
                let mut u = [0u8; 16];
                u.copy_from_slice(b);
                Ok(Value::Uuid(u))
            }
            other => match scalar_str(other) {
                Some(text) => uuid::Uuid::parse_str(text.trim())
                    .map(|u| Value::Uuid(*u.as_bytes()))
                    .map_err(|_| bad_input(t, text)),
                None => Err(wrong_type(t, other)),
            },
        },
        DataType::Date => match s {
            ScalarValue::Date32(Some(d)) => Ok(Value::Date(*d)),
            ScalarValue::Date64(Some(ms)) => Ok(Value::Date((ms.div_euclid(86_400_000)) as i32)),
            other => {
                if let Some(us) = timestamp_micros(other) {
                    return Ok(Value::Date(us.div_euclid(86_400_000_000) as i32));
                }
                match scalar_str(other) {
                    Some(text) => parse_date(text)
                        .map(Value::Date)
                        .ok_or_else(|| crate::datetime_in::rejected("date", text)),
                    None => Err(wrong_type(t, other)),
                }
            }
        },
        DataType::Timestamp | DataType::TimestampTz => {
            let us = match s {
                ScalarValue::Date32(Some(d)) => Some(i64::from(*d) * 86_400_000_000),
                other => timestamp_micros(other),
            };
            let us = match us {
                Some(us) => us,
                None => match scalar_str(s) {
                    Some(text) => {
                        let zoned = t == DataType::TimestampTz;
                        parse_timestamp(text, zoned).ok_or_else(|| {
                            let name = if zoned {
                                "timestamp with time zone"
                            } else {
                                "timestamp"
                            };
                            crate::datetime_in::rejected(name, text)
                        })?
                    }
                    None => return Err(wrong_type(t, s)),
                },
            };
            Ok(if t == DataType::Timestamp {
                Value::Timestamp(us)
            } else {
                Value::TimestampTz(us)
            })
        }
        DataType::Array(elem) => array_of(s, elem, t),
    }
}

/// An array value from a list, or from PostgreSQL's array text (`{1,2,NULL}`), each element
/// coerced to the element type as a column of that type would coerce it.
fn array_of(s: &ScalarValue, elem: ArrayElem, t: DataType) -> Result<Value> {
    let parsed;
    let s = match scalar_str(s) {
        // Read as text elements first, so that a bad element gets its own type's error.
        Some(text) => {
            parsed = crate::datetime_in::array_in(text, &ArrowType::Utf8)?;
            &parsed
        }
        None => s,
    };
    let items: ArrayRef = match s {
        ScalarValue::List(l) if !l.is_empty() => l.value(0),
        ScalarValue::LargeList(l) if !l.is_empty() => l.value(0),
        ScalarValue::FixedSizeList(l) if !l.is_empty() => l.value(0),
        other => return Err(wrong_type(t, other)),
    };
    if matches!(
        items.data_type(),
        ArrowType::List(_) | ArrowType::LargeList(_) | ArrowType::FixedSizeList(..)
    ) {
        return Err(Error::FeatureNotSupported {
            feature: "multidimensional arrays".into(),
        });
    }
    (0..items.len())
        .map(|i| array_value(&items, i, elem.scalar()))
        .collect::<Result<Vec<_>>>()
        .map(Value::Array)
}

fn timestamp_micros(s: &ScalarValue) -> Option<i64> {
    match s {
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000),
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000),
        ScalarValue::TimestampMicrosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(v.div_euclid(1_000)),
        _ => None,
    }
}

/// Applies varchar(n)/char(n) length rules: excess trailing spaces are cut, anything else is 22001.
fn string_for_column(text: String, t: DataType) -> Result<String> {
    let limit = match t {
        DataType::Varchar(Some(n)) | DataType::Char(n) => n as usize,
        _ => return Ok(text),
    };
    let len = text.chars().count();
    let mut text = text;
    if len > limit {
        let keep: String = text.chars().take(limit).collect();
        if text.chars().skip(limit).all(|c| c == ' ') {
            text = keep;
        } else {
            let label = match t {
                DataType::Char(_) => "character",
                _ => "character varying",
            };
            return Err(Error::StringTooLong {
                message: format!("value too long for type {label}({limit})"),
            });
        }
    }
    if let DataType::Char(_) = t {
        let len = text.chars().count();
        text.extend(std::iter::repeat_n(' ', limit.saturating_sub(len)));
    }
    Ok(text)
}

/// Text of a scalar as PostgreSQL's output function would write it (for assignment to text columns).
pub fn scalar_text(s: &ScalarValue) -> String {
    match s {
        ScalarValue::Boolean(Some(b)) => if *b { "true" } else { "false" }.to_string(),
        ScalarValue::Decimal128(Some(v), _, scale) => format_decimal(*v, *scale),
        ScalarValue::Date32(Some(d)) => format_date(*d),
        other => match timestamp_micros(other) {
            Some(us) => format_timestamp(us),
            None => crate::array_text::scalar_list_text(other).unwrap_or_else(|| other.to_string()),
        },
    }
}

pub fn format_decimal(v: i128, scale: i8) -> String {
    if scale <= 0 {
        return rescale(v, scale, 0).unwrap_or(v).to_string();
    }
    let scale = scale as usize;
    let digits = v.unsigned_abs().to_string();
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{}{int}.{frac}", if v < 0 { "-" } else { "" })
}

pub fn format_date(days: i32) -> String {
    NaiveDate::from_num_days_from_ce_opt(days + UNIX_EPOCH_DAYS_FROM_CE)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| days.to_string())
}

pub fn format_timestamp(us: i64) -> String {
    DateTime::from_timestamp_micros(us)
        .map(|d| d.naive_utc().format("%Y-%m-%d %H:%M:%S%.f").to_string())
        .unwrap_or_else(|| us.to_string())
}

pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "t" | "true" | "y" | "yes" | "on" | "1" => Some(true),
        "f" | "false" | "n" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

pub fn parse_float(s: &str) -> Option<f64> {
    match s.trim().to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "infinity" | "+infinity" | "inf" => Some(f64::INFINITY),
        "-infinity" | "-inf" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

pub fn parse_bytea(s: &str) -> Option<Vec<u8>> {
    if let Some(hex) = s.strip_prefix("\\x") {
        let hex: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        if hex.len() % 2 != 0 {
            return None;
        }
        return hex
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
            .collect();
    }
    // Escape format: backslash-escaped octets, `\\` for a backslash.
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes.get(i + 1) == Some(&b'\\') {
                out.push(b'\\');
                i += 2;
            } else {
                let oct = std::str::from_utf8(bytes.get(i + 1..i + 4)?).ok()?;
                out.push(u8::from_str_radix(oct, 8).ok()?);
                i += 4;
            }
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Date input as PostgreSQL reads it (pgtime.rs): ISO forms, `BC`, `infinity`.
pub fn parse_date(s: &str) -> Option<i32> {
    crate::pgtime::parse_date(s)
}

/// Timestamp input (micros since the epoch): a zone is applied only `with_zone` (timestamptz), as
/// PostgreSQL ignores one given for a `timestamp`.
pub fn parse_timestamp(s: &str, with_zone: bool) -> Option<i64> {
    crate::pgtime::parse_timestamp(s, with_zone)
}

/// Arrow type of a column for casting query results before conversion.
pub fn is_string_type(t: &ArrowType) -> bool {
    matches!(
        t,
        ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View
    )
}

pub fn micros_unit() -> TimeUnit {
    TimeUnit::Microsecond
}

pub fn array_is_null(array: &dyn Array, row: usize) -> bool {
    array.is_null(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_range_checked() {
        assert_eq!(
            scalar_to_value(&ScalarValue::Int64(Some(5)), DataType::Int16).ok(),
            Some(Value::Int16(5))
        );
        let e = scalar_to_value(&ScalarValue::Int64(Some(40_000)), DataType::Int16).unwrap_err();
        assert_eq!(e.sqlstate(), "22003");
        let e =
            scalar_to_value(&ScalarValue::Utf8(Some("abc".into())), DataType::Int32).unwrap_err();
        assert_eq!(e.sqlstate(), "22P02");
        let e = scalar_to_value(
            &ScalarValue::Utf8(Some("99999999999".into())),
            DataType::Int32,
        )
        .unwrap_err();
        assert_eq!(e.sqlstate(), "22003");
    }

    #[test]
    fn numeric_rescales_and_checks_precision() {
        let t = DataType::Numeric {
            precision: 5,
            scale: 2,
        };
        assert_eq!(
            scalar_to_value(&ScalarValue::Utf8(Some("12.345".into())), t).ok(),
            Some(Value::Numeric(1235))
        );
        assert_eq!(
            scalar_to_value(&ScalarValue::Int64(Some(-3)), t).ok(),
            Some(Value::Numeric(-300))
        );
        assert_eq!(
            scalar_to_value(&ScalarValue::Int64(Some(1000)), t)
                .unwrap_err()
                .sqlstate(),
            "22003"
        );
        assert_eq!(format_decimal(-5, 2), "-0.05");
        assert_eq!(format_decimal(12345, 2), "123.45");
    }

    #[test]
    fn varchar_and_char_lengths() {
        let v = DataType::Varchar(Some(3));
        assert_eq!(
            scalar_to_value(&ScalarValue::Utf8(Some("abc  ".into())), v).ok(),
            Some(Value::Text("abc".into()))
        );
        assert_eq!(
            scalar_to_value(&ScalarValue::Utf8(Some("abcd".into())), v)
                .unwrap_err()
                .sqlstate(),
            "22001"
        );
        assert_eq!(
            scalar_to_value(&ScalarValue::Utf8(Some("a".into())), DataType::Char(3)).ok(),
            Some(Value::Text("a  ".into()))
        );
    }

    #[test]
    fn dates_and_timestamps_parse() {
        assert_eq!(parse_date("1970-01-02"), Some(1));
        assert_eq!(
            parse_timestamp("1970-01-01 00:00:01", false),
            Some(1_000_000)
        );
        assert_eq!(parse_timestamp("1970-01-01 01:00:00+01", true), Some(0));
        assert_eq!(
            parse_timestamp("1970-01-01 01:00:00+01", false),
            Some(3_600_000_000)
        );
        assert_eq!(format_timestamp(1_500_000), "1970-01-01 00:00:01.500");
    }

    #[test]
    fn bytea_hex_and_escape() {
        assert_eq!(parse_bytea("\\x4142"), Some(b"AB".to_vec()));
        assert_eq!(parse_bytea("a\\\\b"), Some(b"a\\b".to_vec()));
        assert_eq!(parse_bytea("\\x414"), None);
    }
}
