//! Memcomparable encoding of values and tuples: comparing two encodings byte-wise gives the same
//! answer as comparing the values in SQL (`ORDER BY … ASC NULLS LAST`, text in the C collation).
//!
//! Each value starts with a tag byte, so a tuple is the plain concatenation of its values and the
//! encoding of a column prefix is a byte prefix of the whole key. Tags group types into families
//! (all integers share one, both float widths share one), so a bound of a wider integer type still
//! orders correctly against an integer column.
//!
//! | family | payload |
//! | --- | --- |
//! | integers | `i64` with the sign bit flipped, big-endian |
//! | floats | `f64` bits: negatives inverted, positives with the sign bit set; `-0` → `0`, one NaN above `+inf` (as in PostgreSQL) |
//! | numeric | unscaled `i128`, sign bit flipped, big-endian |
//! | text / bytea | bytes with `00` escaped as `00 FF`, terminated by `00 01` |
//! | date, timestamp(tz) | integer with the sign bit flipped, big-endian |
//! | uuid | the 16 bytes |
//! | array | each element as `01` then its encoding, then `00` (a prefix sorts first) |
//! | NULL | the tag alone, above every other tag |
//!
//! Storage itself only compares, concatenates and skips encoded keys; full decoding is kept for
//! the property tests and for tools that print keys, hence the `dead_code` allowance.
#![cfg_attr(not(test), allow(dead_code))]

use crate::error::{Error, Result};
use crate::types::{DataType, Value};

const TAG_BOOL: u8 = 0x10;
const TAG_INT: u8 = 0x20;
const TAG_FLOAT: u8 = 0x21;
const TAG_NUMERIC: u8 = 0x22;
const TAG_STRING: u8 = 0x30;
const TAG_DATE: u8 = 0x40;
const TAG_TIMESTAMP: u8 = 0x41;
const TAG_TIMESTAMPTZ: u8 = 0x42;
const TAG_UUID: u8 = 0x50;
const TAG_ARRAY: u8 = 0x60;
/// Inside an array: another element follows, or the array ends.
const ARRAY_MORE: u8 = 0x01;
const ARRAY_END: u8 = 0x00;
/// Above every other tag: NULL sorts last.
const TAG_NULL: u8 = 0xF0;

const CANONICAL_NAN: u64 = 0x7FF8_0000_0000_0000;

/// Appends the memcomparable encoding of `v`.
pub fn encode_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(TAG_NULL),
        Value::Bool(b) => {
            out.push(TAG_BOOL);
            out.push(u8::from(*b));
        }
        Value::Int16(i) => encode_int(out, TAG_INT, i64::from(*i)),
        Value::Int32(i) => encode_int(out, TAG_INT, i64::from(*i)),
        Value::Int64(i) => encode_int(out, TAG_INT, *i),
        Value::Float32(f) => encode_float(out, f64::from(*f)),
        Value::Float64(f) => encode_float(out, *f),
        Value::Numeric(n) => {
            out.push(TAG_NUMERIC);
            out.extend_from_slice(&((*n as u128) ^ (1u128 << 127)).to_be_bytes());
        }
        Value::Text(s) => encode_bytes(out, s.as_bytes()),
        Value::Bytes(b) => encode_bytes(out, b),
        Value::Date(d) => {
            out.push(TAG_DATE);
            out.extend_from_slice(&((*d as u32) ^ (1u32 << 31)).to_be_bytes());
        }
        Value::Timestamp(t) => encode_int(out, TAG_TIMESTAMP, *t),
        Value::TimestampTz(t) => encode_int(out, TAG_TIMESTAMPTZ, *t),
        Value::Uuid(u) => {
            out.push(TAG_UUID);
            out.extend_from_slice(u);
        }
        Value::Array(items) => {
            out.push(TAG_ARRAY);
            for item in items {
                out.push(ARRAY_MORE);
                encode_value(out, item);
            }
            out.push(ARRAY_END);
        }
    }
}

/// Appends the encodings of `values` one after another.
pub fn encode_tuple(out: &mut Vec<u8>, values: &[Value]) {
    for v in values {
        encode_value(out, v);
    }
}

fn encode_int(out: &mut Vec<u8>, tag: u8, i: i64) {
    out.push(tag);
    out.extend_from_slice(&((i as u64) ^ (1u64 << 63)).to_be_bytes());
}

fn encode_float(out: &mut Vec<u8>, f: f64) {
    out.push(TAG_FLOAT);
    let bits = if f.is_nan() {
        CANONICAL_NAN
    } else if f == 0.0 {
        0 // folds -0.0 into +0.0: they are equal in SQL
    } else {
        f.to_bits()
    };
    let ordered = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1u64 << 63)
    };
    out.extend_from_slice(&ordered.to_be_bytes());
}

fn encode_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(TAG_STRING);
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0x00, 0x01]);
}

/// Decodes one value of type `ty` from the front of `buf`, advancing it.
pub fn decode_value(buf: &mut &[u8], ty: DataType) -> Result<Value> {
    let tag = take(buf, 1)?[0];
    if tag == TAG_NULL {
        return Ok(Value::Null);
    }
    let want = tag_of(ty);
    if tag != want {
        return Err(corrupt(format!(
            "key tag {tag:#x} where {ty:?} ({want:#x}) was expected"
        )));
    }
    Ok(match ty {
        DataType::Bool => match take(buf, 1)?[0] {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            b => return Err(corrupt(format!("bool key byte {b:#x}"))),
        },
        DataType::Int16 => Value::Int16(narrow(decode_i64(buf)?)?),
        DataType::Int32 => Value::Int32(narrow(decode_i64(buf)?)?),
        DataType::Int64 => Value::Int64(decode_i64(buf)?),
        DataType::Float32 => Value::Float32(decode_f64(buf)? as f32),
        DataType::Float64 => Value::Float64(decode_f64(buf)?),
        DataType::Numeric { .. } => {
            let raw = u128::from_be_bytes(array(take(buf, 16)?)?);
            Value::Numeric((raw ^ (1u128 << 127)) as i128)
        }
        DataType::Text | DataType::Varchar(_) | DataType::Char(_) | DataType::Jsonb => {
            let bytes = decode_bytes(buf)?;
            Value::Text(
                String::from_utf8(bytes).map_err(|_| corrupt("text key is not UTF-8".into()))?,
            )
        }
        DataType::Bytea => Value::Bytes(decode_bytes(buf)?),
        DataType::Date => {
            let raw = u32::from_be_bytes(array(take(buf, 4)?)?);
            Value::Date((raw ^ (1u32 << 31)) as i32)
        }
        DataType::Timestamp => Value::Timestamp(decode_i64(buf)?),
        DataType::TimestampTz => Value::TimestampTz(decode_i64(buf)?),
        DataType::Uuid => Value::Uuid(array(take(buf, 16)?)?),
        DataType::Array(elem) => {
            let mut items = Vec::new();
            loop {
                match take(buf, 1)?[0] {
                    ARRAY_MORE => items.push(decode_value(buf, elem.scalar())?),
                    ARRAY_END => break Value::Array(items),
                    b => return Err(corrupt(format!("array key byte {b:#x}"))),
                }
            }
        }
    })
}

/// Skips one encoded value of any type at the front of `buf`.
pub fn skip_value(buf: &mut &[u8]) -> Result<()> {
    let tag = take(buf, 1)?[0];
    let len = match tag {
        TAG_NULL => 0,
        TAG_BOOL => 1,
        TAG_DATE => 4,
        TAG_INT | TAG_FLOAT | TAG_TIMESTAMP | TAG_TIMESTAMPTZ => 8,
        TAG_NUMERIC | TAG_UUID => 16,
        TAG_STRING => {
            decode_bytes(buf)?;
            0
        }
        TAG_ARRAY => {
            loop {
                match take(buf, 1)?[0] {
                    ARRAY_MORE => skip_value(buf)?,
                    ARRAY_END => break,
                    b => return Err(corrupt(format!("array key byte {b:#x}"))),
                }
            }
            0
        }
        t => return Err(corrupt(format!("unknown key tag {t:#x}"))),
    };
    take(buf, len)?;
    Ok(())
}

fn tag_of(ty: DataType) -> u8 {
    match ty {
        DataType::Bool => TAG_BOOL,
        DataType::Int16 | DataType::Int32 | DataType::Int64 => TAG_INT,
        DataType::Float32 | DataType::Float64 => TAG_FLOAT,
        DataType::Numeric { .. } => TAG_NUMERIC,
        DataType::Text
        | DataType::Varchar(_)
        | DataType::Char(_)
        | DataType::Jsonb
        | DataType::Bytea => TAG_STRING,
        DataType::Date => TAG_DATE,
        DataType::Timestamp => TAG_TIMESTAMP,
        DataType::TimestampTz => TAG_TIMESTAMPTZ,
        DataType::Uuid => TAG_UUID,
        DataType::Array(_) => TAG_ARRAY,
    }
}

fn decode_i64(buf: &mut &[u8]) -> Result<i64> {
    let raw = u64::from_be_bytes(array(take(buf, 8)?)?);
    Ok((raw ^ (1u64 << 63)) as i64)
}

fn decode_f64(buf: &mut &[u8]) -> Result<f64> {
    let ordered = u64::from_be_bytes(array(take(buf, 8)?)?);
    let bits = if ordered >> 63 == 1 {
        ordered & !(1u64 << 63)
    } else {
        !ordered
    };
    Ok(f64::from_bits(bits))
}

fn decode_bytes(buf: &mut &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let b = take(buf, 1)?[0];
        if b != 0 {
            out.push(b);
            continue;
        }
        match take(buf, 1)?[0] {
            0xFF => out.push(0),
            0x01 => return Ok(out),
            e => return Err(corrupt(format!("bad escape {e:#x} in key string"))),
        }
    }
}

fn narrow<T: TryFrom<i64>>(i: i64) -> Result<T> {
    T::try_from(i).map_err(|_| corrupt(format!("key integer {i} out of the column's range")))
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
    if buf.len() < n {
        return Err(corrupt("key ends early".into()));
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Ok(head)
}

fn array<const N: usize>(b: &[u8]) -> Result<[u8; N]> {
    b.try_into()
        .map_err(|_| corrupt("key field has the wrong width".into()))
}

fn corrupt(msg: String) -> Error {
    Error::Corruption(msg)
}
