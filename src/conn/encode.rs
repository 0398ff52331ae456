//! Arrow values to PostgreSQL `DataRow` fields, in text or binary format.
//!
//! ```text
//!   RecordBatch column --cast to the oid's canonical Arrow type--> ArrayRef
//!        --per row, per column--> i32 length (-1 = NULL) + text or binary bytes
//! ```
//!
//! The column's oid decides the wire form; the Arrow type only decides how to read the value,
//! so an `Int32` column reported as `int8` still goes out as 8 bytes.

use std::fmt::Write;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Field, Float32Type, Float64Type, Int16Type, Int32Type,
    Int64Type, IntervalMonthDayNanoType, IntervalUnit, Time64MicrosecondType, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use pgwire::messages::data::DataRow;

use super::oid;
use super::{array, float, interval, numeric, pgtime};

/// Text (0) or binary (1) wire format of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Binary,
}

impl Format {
    pub fn from_code(code: i16) -> Option<Format> {
        match code {
            0 => Some(Format::Text),
            1 => Some(Format::Binary),
            _ => None,
        }
    }

    pub fn code(self) -> i16 {
        match self {
            Format::Text => 0,
            Format::Binary => 1,
        }
    }
}

/// Expands Bind's format codes (none = all text, one = all alike, or one per column).
pub fn resolve_formats(codes: &[i16], count: usize) -> Result<Vec<Format>, String> {
    let one = |c: i16| Format::from_code(c).ok_or_else(|| format!("invalid format code: {c}"));
    match codes.len() {
        0 => Ok(vec![Format::Text; count]),
        1 => Ok(vec![one(codes[0])?; count]),
        n if n == count => codes.iter().map(|c| one(*c)).collect(),
        n => Err(format!(
            "bind message has {n} result formats but query has {count} columns"
        )),
    }
}

/// A value that cannot be sent to the client.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodeError {
    pub sqlstate: &'static str,
    pub message: String,
}

pub(super) fn err(sqlstate: &'static str, message: impl Into<String>) -> EncodeError {
    EncodeError {
        sqlstate,
        message: message.into(),
    }
}

pub(super) fn mismatch(dt: &DataType) -> EncodeError {
    err("XX000", format!("unexpected Arrow array type {dt}"))
}

/// Encodes record batches into `DataRow`s for a fixed list of (oid, format) columns.
#[derive(Debug, Clone)]
pub struct RowEncoder {
    columns: Vec<(u32, Format)>,
}

impl RowEncoder {
    pub fn new(columns: Vec<(u32, Format)>) -> Self {
        RowEncoder { columns }
    }

    /// Appends one `DataRow` per row of `batch`.
    pub fn encode(&self, batch: &RecordBatch, out: &mut Vec<DataRow>) -> Result<(), EncodeError> {
        if batch.num_columns() != self.columns.len() {
            return Err(err(
                "XX000",
                format!(
                    "result has {} columns but {} were described",
                    batch.num_columns(),
                    self.columns.len()
                ),
            ));
        }
        let arrays: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .zip(&self.columns)
            .map(|(a, (oid, _))| canonical(a, *oid))
            .collect();
        out.reserve(batch.num_rows());
        for row in 0..batch.num_rows() {
            let mut buf = BytesMut::new();
            for (array, (oid, format)) in arrays.iter().zip(&self.columns) {
                put_cell(array.as_ref(), row, *oid, *format, &mut buf)?;
            }
            out.push(DataRow::new(buf, self.columns.len() as i16));
        }
        Ok(())
    }
}

/// The Arrow type values of `oid` are read from, when `dt` is not already readable.
fn target_type(dt: &DataType, oid: u32) -> Option<DataType> {
    use DataType::*;
    let want = match oid {
        oid::BOOL => Boolean,
        oid::INT2 => Int16,
        oid::INT4 => Int32,
        oid::INT8 | oid::OID | oid::REGCLASS | oid::REGTYPE => Int64,
        oid::FLOAT4 => Float32,
        oid::FLOAT8 => Float64,
        oid::NUMERIC => match dt {
            Decimal128(..) | Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64
            | Float32 | Float64 => return None,
            Decimal32(_, s) | Decimal64(_, s) | Decimal256(_, s) => Decimal128(38, *s),
            _ => Utf8,
        },
        oid::TEXT
        | oid::VARCHAR
        | oid::BPCHAR
        | oid::NAME
        | oid::UNKNOWN
        | oid::JSON
        | oid::JSONB
        | oid::CHAR => Utf8,
        oid::BYTEA => Binary,
        oid::DATE => Date32,
        oid::TIME => Time64(TimeUnit::Microsecond),
        oid::INTERVAL => Interval(IntervalUnit::MonthDayNano),
        oid::TIMESTAMP | oid::TIMESTAMPTZ => match dt {
            Timestamp(..) => return None,
            _ => Timestamp(TimeUnit::Microsecond, None),
        },
        oid::UUID => match dt {
            FixedSizeBinary(16) | Utf8 => return None,
            _ => Utf8,
        },
        other => {
            let element = oid::array_element(other)?;
            let child = match dt {
                List(f) | LargeList(f) | FixedSizeList(f, _) => f.data_type().clone(),
                _ => return None,
            };
            // A list of lists is a multidimensional array of the same type.
            let of = match child {
                List(_) | LargeList(_) | FixedSizeList(..) => other,
                _ => element,
            };
            let child = target_type(&child, of).unwrap_or(child);
            List(Arc::new(Field::new("item", child, true)))
        }
    };
    (want != *dt).then_some(want)
}

/// `array` cast to the type its oid is read from; unchanged if it already is or cannot be cast.
fn canonical(array: &ArrayRef, oid: u32) -> ArrayRef {
    match target_type(array.data_type(), oid) {
        Some(t) => cast(array, &t).unwrap_or_else(|_| Arc::clone(array)),
        None => Arc::clone(array),
    }
}

/// Writes one length-prefixed field.
pub(super) fn put_cell(
    array: &dyn Array,
    row: usize,
    oid: u32,
    format: Format,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    if array.is_null(row) {
        buf.put_i32(-1);
        return Ok(());
    }
    let at = buf.len();
    buf.put_i32(0);
    match format {
        Format::Text => put_text(array, row, oid, buf)?,
        Format::Binary => put_binary(array, row, oid, buf)?,
    }
    let len =
        i32::try_from(buf.len() - at - 4).map_err(|_| err("54000", "value too large to send"))?;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

macro_rules! prim {
    ($array:expr, $t:ty, $row:expr) => {
        $array
            .as_primitive_opt::<$t>()
            .ok_or_else(|| mismatch($array.data_type()))?
            .value($row)
    };
}

fn timestamp_micros(array: &dyn Array, row: usize, unit: &TimeUnit) -> Result<i64, EncodeError> {
    let overflow = || err("22008", "timestamp out of range");
    Ok(match unit {
        TimeUnit::Second => prim!(array, TimestampSecondType, row)
            .checked_mul(1_000_000)
            .ok_or_else(overflow)?,
        TimeUnit::Millisecond => prim!(array, TimestampMillisecondType, row)
            .checked_mul(1_000)
            .ok_or_else(overflow)?,
        TimeUnit::Microsecond => prim!(array, TimestampMicrosecondType, row),
        TimeUnit::Nanosecond => prim!(array, TimestampNanosecondType, row).div_euclid(1_000),
    })
}

fn month_day_micros(array: &dyn Array, row: usize) -> Result<interval::Interval, EncodeError> {
    let v = prim!(array, IntervalMonthDayNanoType, row);
    Ok(interval::Interval {
        months: v.months,
        days: v.days,
        micros: v.nanoseconds.div_euclid(1_000),
    })
}

fn str_value(array: &dyn Array, row: usize) -> Result<&str, EncodeError> {
    Ok(array
        .as_string_opt::<i32>()
        .ok_or_else(|| mismatch(array.data_type()))?
        .value(row))
}

/// Writes PostgreSQL's text form of a non-null value.
pub(super) fn put_text(
    array: &dyn Array,
    row: usize,
    oid: u32,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    let mut s = String::new();
    match array.data_type() {
        DataType::Boolean => {
            let v = array
                .as_boolean_opt()
                .ok_or_else(|| mismatch(array.data_type()))?;
            buf.put_u8(if v.value(row) { b't' } else { b'f' });
            return Ok(());
        }
        DataType::Int16 => s = prim!(array, Int16Type, row).to_string(),
        DataType::Int32 => s = prim!(array, Int32Type, row).to_string(),
        DataType::Int64 if oid == oid::REGTYPE => {
            let v = prim!(array, Int64Type, row);
            s = match u32::try_from(v) {
                Ok(o) => weft_sql::pgtype::regtype_name(o),
                Err(_) => v.to_string(),
            }
        }
        DataType::Int64 => s = prim!(array, Int64Type, row).to_string(),
        DataType::Float32 => s = float::float4(prim!(array, Float32Type, row)),
        DataType::Float64 => s = float::float8(prim!(array, Float64Type, row)),
        DataType::Decimal128(_, scale) => {
            s = numeric::decimal_to_string(prim!(array, Decimal128Type, row), *scale)
        }
        DataType::Utf8 => {
            buf.put_slice(str_value(array, row)?.as_bytes());
            return Ok(());
        }
        DataType::Binary => {
            let v = array
                .as_binary_opt::<i32>()
                .ok_or_else(|| mismatch(array.data_type()))?;
            put_hex(v.value(row), buf);
            return Ok(());
        }
        DataType::FixedSizeBinary(_) => {
            let v = array
                .as_fixed_size_binary_opt()
                .ok_or_else(|| mismatch(array.data_type()))?
                .value(row);
            if oid == oid::UUID && v.len() == 16 {
                s = format_uuid(v);
            } else {
                put_hex(v, buf);
                return Ok(());
            }
        }
        DataType::Date32 => {
            pgtime::format_date(prim!(array, Date32Type, row), &mut s)
                .ok_or_else(|| err("22008", "date out of range"))?;
        }
        DataType::Timestamp(unit, tz) => {
            let micros = timestamp_micros(array, row, unit)?;
            let with_zone = oid == oid::TIMESTAMPTZ || (oid != oid::TIMESTAMP && tz.is_some());
            pgtime::format_timestamp(micros, with_zone, &mut s)
                .ok_or_else(|| err("22008", "timestamp out of range"))?;
        }
        DataType::Time64(TimeUnit::Microsecond) => {
            interval::format_time(prim!(array, Time64MicrosecondType, row), &mut s)
                .ok_or_else(|| err("22008", "time out of range"))?;
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            interval::format_interval(month_day_micros(array, row)?, &mut s)
        }
        DataType::List(_) => s = array::text(array, row, oid)?,
        DataType::Struct(_) => s = record_text(array, row)?,
        _ => {
            let formatter = ArrayFormatter::try_new(array, &FormatOptions::default())
                .map_err(|e| err("XX000", e.to_string()))?;
            let _ = write!(s, "{}", formatter.value(row));
        }
    }
    buf.put_slice(s.as_bytes());
    Ok(())
}

/// A row value (`ROW(1, 'a b')`) as PostgreSQL's record_out writes it: `(1,"a b")`, a NULL
/// field empty, a field quoted when empty or holding a delimiter, quote, backslash or space.
fn record_text(array: &dyn Array, row: usize) -> Result<String, EncodeError> {
    let record = array
        .as_struct_opt()
        .ok_or_else(|| mismatch(array.data_type()))?;
    let mut out = String::from("(");
    for (i, (field, column)) in record.fields().iter().zip(record.columns()).enumerate() {
        if i > 0 {
            out.push(',');
        }
        if column.logical_nulls().is_some_and(|n| n.is_null(row)) {
            continue;
        }
        let mut item = BytesMut::new();
        let oid = weft_sql::pgtype::PgType::from_field(field).oid();
        put_text(column.as_ref(), row, oid, &mut item)?;
        array::push_element(&mut out, &String::from_utf8_lossy(&item), true);
    }
    out.push(')');
    Ok(out)
}

fn put_hex(bytes: &[u8], buf: &mut BytesMut) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.reserve(2 + bytes.len() * 2);
    buf.put_slice(b"\\x");
    for b in bytes {
        buf.put_u8(HEX[usize::from(b >> 4)]);
        buf.put_u8(HEX[usize::from(b & 0xf)]);
    }
}

pub fn format_uuid(b: &[u8]) -> String {
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        let _ = write!(s, "{byte:02x}");
    }
    s
}

/// Parses `xxxxxxxx-xxxx-...` (hyphens optional, braces allowed) into 16 bytes.
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = s
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .bytes()
        .filter(|b| *b != b'-')
        .collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// Writes PostgreSQL's binary form of a non-null value.
fn put_binary(
    array: &dyn Array,
    row: usize,
    oid: u32,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    let dt = array.data_type();
    match (oid, dt) {
        (oid::BOOL, DataType::Boolean) => {
            let v = array.as_boolean_opt().ok_or_else(|| mismatch(dt))?;
            buf.put_u8(u8::from(v.value(row)));
        }
        (oid::INT2, DataType::Int16) => buf.put_i16(prim!(array, Int16Type, row)),
        (oid::INT4, DataType::Int32) => buf.put_i32(prim!(array, Int32Type, row)),
        (oid::INT8, DataType::Int64) => buf.put_i64(prim!(array, Int64Type, row)),
        (oid::OID | oid::REGCLASS | oid::REGTYPE, DataType::Int64) => {
            let v = u32::try_from(prim!(array, Int64Type, row))
                .map_err(|_| err("22003", "OID out of range"))?;
            buf.put_u32(v);
        }
        (oid::FLOAT4, DataType::Float32) => buf.put_f32(prim!(array, Float32Type, row)),
        (oid::FLOAT8, DataType::Float64) => buf.put_f64(prim!(array, Float64Type, row)),
        (oid::NUMERIC, _) => {
            let text = match dt {
                DataType::Float32 => numeric_of_float(f64::from(prim!(array, Float32Type, row))),
                DataType::Float64 => numeric_of_float(prim!(array, Float64Type, row)),
                DataType::Decimal128(_, scale) => {
                    numeric::decimal_to_string(prim!(array, Decimal128Type, row), *scale)
                }
                DataType::Utf8 => str_value(array, row)?.to_string(),
                _ => {
                    let mut b = BytesMut::new();
                    put_text(array, row, oid, &mut b)?;
                    String::from_utf8_lossy(&b).into_owned()
                }
            };
            let parsed = numeric::parse(&text)
                .ok_or_else(|| err("22P02", format!("invalid numeric value: {text}")))?;
            numeric::to_binary(&parsed, buf);
        }
        (oid::JSONB, DataType::Utf8) => {
            buf.put_u8(1);
            buf.put_slice(str_value(array, row)?.as_bytes());
        }
        (oid::UUID, DataType::Utf8) => {
            let s = str_value(array, row)?;
            let bytes = parse_uuid(s).ok_or_else(|| {
                err(
                    "22P02",
                    format!("invalid input syntax for type uuid: \"{s}\""),
                )
            })?;
            buf.put_slice(&bytes);
        }
        (_, DataType::Utf8) => buf.put_slice(str_value(array, row)?.as_bytes()),
        (_, DataType::Binary) => {
            let v = array.as_binary_opt::<i32>().ok_or_else(|| mismatch(dt))?;
            buf.put_slice(v.value(row));
        }
        (_, DataType::FixedSizeBinary(_)) => {
            let v = array
                .as_fixed_size_binary_opt()
                .ok_or_else(|| mismatch(dt))?;
            buf.put_slice(v.value(row));
        }
        (oid::DATE, DataType::Date32) => {
            let days = prim!(array, Date32Type, row);
            let v = match days {
                i32::MAX | i32::MIN => days,
                _ => days
                    .checked_sub(pgtime::PG_EPOCH_DAYS)
                    .ok_or_else(|| err("22008", "date out of range"))?,
            };
            buf.put_i32(v);
        }
        (oid::TIMESTAMP | oid::TIMESTAMPTZ, DataType::Timestamp(unit, _)) => {
            let micros = timestamp_micros(array, row, unit)?;
            let v = match micros {
                i64::MAX | i64::MIN => micros,
                _ => micros
                    .checked_sub(pgtime::PG_EPOCH_MICROS)
                    .ok_or_else(|| err("22008", "timestamp out of range"))?,
            };
            buf.put_i64(v);
        }
        (oid::TIME, DataType::Time64(TimeUnit::Microsecond)) => {
            buf.put_i64(prim!(array, Time64MicrosecondType, row))
        }
        (oid::INTERVAL, DataType::Interval(IntervalUnit::MonthDayNano)) => {
            let iv = month_day_micros(array, row)?;
            buf.put_i64(iv.micros);
            buf.put_i32(iv.days);
            buf.put_i32(iv.months);
        }
        (_, DataType::List(_)) if oid::array_element(oid).is_some() => {
            array::binary(array, row, oid, buf)?
        }
        // A value announced as text (a row value, say) is its text form; text's binary form is
        // the same bytes.
        (oid::TEXT, _) => put_text(array, row, oid, buf)?,
        _ => {
            return Err(err(
                "0A000",
                format!("binary output of {dt} as type oid {oid} is not supported"),
            ))
        }
    }
    Ok(())
}

fn numeric_of_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        // Display never uses exponent notation and round-trips.
        format!("{v}")
    }
}

#[cfg(test)]
#[path = "encode_tests.rs"]
mod tests;
