//! Bind parameters (text or binary) to DataFusion `ScalarValue`s.
//!
//! ```text
//!   text   --parse as the statement's parameter type-------------------> ScalarValue
//!   binary --read as the client-declared type (else the statement's)-->
//!          --convert to the statement's type (int2/4/8 interchange)--> ScalarValue
//! ```

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, IntervalMonthDayNano, IntervalUnit, TimeUnit};
use datafusion::scalar::ScalarValue;

use super::encode::{format_uuid, parse_uuid, Format};
use super::oid;
use super::{interval, numeric, pgtime};

/// Time zone attached to `timestamptz` parameters: values are UTC instants.
pub const UTC: &str = "+00:00";

/// A parameter value that cannot be used.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError {
    pub sqlstate: &'static str,
    pub message: String,
}

fn err(sqlstate: &'static str, message: impl Into<String>) -> DecodeError {
    DecodeError {
        sqlstate,
        message: message.into(),
    }
}

fn syntax(target: u32, text: &str) -> DecodeError {
    err(
        "22P02",
        format!(
            "invalid input syntax for type {}: \"{text}\"",
            oid::type_name(target)
        ),
    )
}

fn out_of_range(target: u32, text: &str) -> DecodeError {
    err(
        "22003",
        format!(
            "value \"{text}\" is out of range for type {}",
            oid::type_name(target)
        ),
    )
}

fn binary_format() -> DecodeError {
    err("22P03", "incorrect binary data format")
}

/// The element type of an array parameter (one dimension): `id = ANY($1)` with a list bound,
/// `unnest($1::timestamptz[])`.
fn param_array_element(oid: u32) -> Option<u32> {
    oid::array_element(oid)
}

/// The field of a list parameter's elements: uuid, json and character elements are Utf8 and
/// name their type, as the engine's own lists of them do (`weft_sql::PgType::to_arrow`).
fn item_field(element: u32, data_type: DataType) -> Arc<Field> {
    let field = Field::new_list_field(data_type, true);
    let tag = match element {
        oid::UUID => "uuid",
        oid::JSON => "json",
        oid::JSONB => "jsonb",
        oid::VARCHAR => "varchar",
        oid::BPCHAR => "bpchar",
        _ => return Arc::new(field),
    };
    Arc::new(
        field.with_metadata([(weft_sql::pgtype::PG_TYPE_KEY.to_string(), tag.to_string())].into()),
    )
}

/// The Arrow type a parameter of `oid` is given to the engine as.
pub fn data_type(oid: u32) -> DataType {
    if let Some(element) = param_array_element(oid) {
        return DataType::List(item_field(element, data_type(element)));
    }
    match oid {
        oid::BOOL => DataType::Boolean,
        oid::INT2 => DataType::Int16,
        oid::INT4 => DataType::Int32,
        oid::INT8 | oid::OID | oid::REGCLASS | oid::REGTYPE => DataType::Int64,
        oid::FLOAT4 => DataType::Float32,
        oid::FLOAT8 => DataType::Float64,
        oid::NUMERIC => DataType::Decimal128(38, 0),
        oid::BYTEA => DataType::Binary,
        oid::DATE => DataType::Date32,
        oid::TIME => DataType::Time64(TimeUnit::Microsecond),
        oid::INTERVAL => DataType::Interval(IntervalUnit::MonthDayNano),
        oid::TIMESTAMP => DataType::Timestamp(TimeUnit::Microsecond, None),
        oid::TIMESTAMPTZ => DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from(UTC))),
        _ => DataType::Utf8,
    }
}

/// Decodes one parameter. `declared` is the type the client gave in Parse (0 if none);
/// `target` is the type the statement expects.
pub fn decode(
    value: Option<&[u8]>,
    format: Format,
    declared: u32,
    target: u32,
) -> Result<ScalarValue, DecodeError> {
    let Some(bytes) = value else {
        return ScalarValue::try_from(&data_type(target)).map_err(|e| err("XX000", e.to_string()));
    };
    match format {
        Format::Text => {
            let text = std::str::from_utf8(bytes)
                .map_err(|_| err("22021", "invalid byte sequence for encoding \"UTF8\""))?;
            from_text(text, target)
        }
        Format::Binary => {
            let wire = if declared == 0 { target } else { declared };
            let v = from_binary(bytes, wire)?;
            convert(v, target)
        }
    }
}

/// Parses the text form of a `target` value.
pub fn from_text(text: &str, target: u32) -> Result<ScalarValue, DecodeError> {
    if let Some(element) = param_array_element(target) {
        let items = weft_sql::array_text::array_items(text).ok_or_else(|| syntax(target, text))?;
        let values = items
            .into_iter()
            .map(|item| match item {
                Some(t) => from_text(&t, element),
                None => ScalarValue::try_from(&data_type(element))
                    .map_err(|e| err("XX000", e.to_string())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        return list(&values, element);
    }
    let t = text.trim();
    Ok(match target {
        oid::BOOL => ScalarValue::Boolean(Some(parse_bool(t).ok_or_else(|| syntax(target, text))?)),
        oid::INT2 | oid::INT4 | oid::INT8 | oid::OID => {
            let v: i128 = t.parse().map_err(|_| syntax(target, text))?;
            int_value(v, target).ok_or_else(|| out_of_range(target, text))?
        }
        oid::FLOAT4 => {
            let v: f32 = t.parse().map_err(|_| syntax(target, text))?;
            if v.is_infinite() && !is_infinity_word(t) {
                return Err(out_of_range(target, text));
            }
            ScalarValue::Float32(Some(v))
        }
        oid::FLOAT8 => {
            let v: f64 = t.parse().map_err(|_| syntax(target, text))?;
            if v.is_infinite() && !is_infinity_word(t) {
                return Err(out_of_range(target, text));
            }
            ScalarValue::Float64(Some(v))
        }
        oid::NUMERIC => decimal(
            &numeric::parse(t).ok_or_else(|| syntax(target, text))?,
            text,
        )?,
        oid::BYTEA => {
            ScalarValue::Binary(Some(parse_bytea(text).ok_or_else(|| syntax(target, text))?))
        }
        oid::DATE => ScalarValue::Date32(Some(
            pgtime::parse_date(t).ok_or_else(|| syntax(target, text))?,
        )),
        oid::TIMESTAMP => ScalarValue::TimestampMicrosecond(
            Some(pgtime::parse_timestamp(t, false).ok_or_else(|| syntax(target, text))?),
            None,
        ),
        oid::TIMESTAMPTZ => ScalarValue::TimestampMicrosecond(
            Some(pgtime::parse_timestamp(t, true).ok_or_else(|| syntax(target, text))?),
            Some(Arc::from(UTC)),
        ),
        oid::UUID => uuid_value(&parse_uuid(t).ok_or_else(|| syntax(target, text))?),
        oid::TIME => ScalarValue::Time64Microsecond(Some(
            interval::parse_time(t).ok_or_else(|| syntax(target, text))?,
        )),
        oid::INTERVAL => {
            interval_value(interval::parse_interval(t).ok_or_else(|| syntax(target, text))?)?
        }
        oid::REGCLASS | oid::REGTYPE => match t.parse::<u32>() {
            Ok(v) => ScalarValue::Int64(Some(i64::from(v))),
            Err(_) => ScalarValue::Utf8(Some(text.to_string())),
        },
        // text, varchar, bpchar, name, "char", json, jsonb, unknown and anything else: as given.
        _ => ScalarValue::Utf8(Some(text.to_string())),
    })
}

fn is_infinity_word(t: &str) -> bool {
    let lower = t.trim_start_matches(['+', '-']).to_ascii_lowercase();
    lower == "inf" || lower == "infinity"
}

/// PostgreSQL's boolean input: t/f, true/false, yes/no, on/off, 1/0 and unique prefixes.
fn parse_bool(t: &str) -> Option<bool> {
    let lower = t.to_ascii_lowercase();
    let prefix_of = |word: &str| !lower.is_empty() && word.starts_with(lower.as_str());
    match lower.as_str() {
        "1" | "on" => Some(true),
        "0" | "of" | "off" => Some(false),
        _ if prefix_of("true") || prefix_of("yes") => Some(true),
        _ if prefix_of("false") || prefix_of("no") => Some(false),
        _ => None,
    }
}

/// `\x` hex form, or the escape form (`\\` and `\ooo` octal).
fn parse_bytea(text: &str) -> Option<Vec<u8>> {
    if let Some(hex) = text
        .strip_prefix("\\x")
        .or_else(|| text.strip_prefix("\\X"))
    {
        let digits: Vec<u32> = hex
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .map(|c| c.to_digit(16))
            .collect::<Option<_>>()?;
        if !digits.len().is_multiple_of(2) {
            return None;
        }
        return Some(digits.chunks(2).map(|p| (p[0] * 16 + p[1]) as u8).collect());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
        } else if bytes.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let oct = bytes.get(i + 1..i + 4)?;
            if !oct.iter().all(|b| (b'0'..=b'7').contains(b)) || oct[0] > b'3' {
                return None;
            }
            out.push((oct[0] - b'0') * 64 + (oct[1] - b'0') * 8 + (oct[2] - b'0'));
            i += 4;
        }
    }
    Some(out)
}

fn int_value(v: i128, target: u32) -> Option<ScalarValue> {
    Some(match target {
        oid::INT2 => ScalarValue::Int16(Some(i16::try_from(v).ok()?)),
        oid::INT4 => ScalarValue::Int32(Some(i32::try_from(v).ok()?)),
        oid::OID => ScalarValue::Int64(Some(i64::from(u32::try_from(v).ok()?))),
        _ => ScalarValue::Int64(Some(i64::try_from(v).ok()?)),
    })
}

fn decimal(parsed: &numeric::Parsed, text: &str) -> Result<ScalarValue, DecodeError> {
    match parsed {
        numeric::Parsed::Finite { .. } => {
            let (v, scale) =
                numeric::to_i128(parsed).ok_or_else(|| out_of_range(oid::NUMERIC, text))?;
            Ok(ScalarValue::Decimal128(Some(v), 38, scale as i8))
        }
        _ => Err(err(
            "0A000",
            format!("numeric value {text} is not supported"),
        )),
    }
}

fn fixed<const N: usize>(bytes: &[u8]) -> Result<[u8; N], DecodeError> {
    bytes.try_into().map_err(|_| binary_format())
}

/// Reads the binary form of a `wire` value. Integers are read by their length, so an int2,
/// int4 or int8 is accepted wherever an integer is expected.
/// A one-dimensional list value of `element`s. Numeric elements share the largest scale.
fn list(values: &[ScalarValue], element: u32) -> Result<ScalarValue, DecodeError> {
    let mut item_type = data_type(element);
    let rescaled;
    let values = if element == oid::NUMERIC {
        let scale = values
            .iter()
            .filter_map(|v| match v {
                ScalarValue::Decimal128(_, _, s) => Some(*s),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        item_type = DataType::Decimal128(38, scale);
        rescaled = values
            .iter()
            .map(|v| {
                v.cast_to(&item_type)
                    .map_err(|_| err("22003", "numeric field overflow"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        &rescaled[..]
    } else {
        values
    };
    let items = if values.is_empty() {
        datafusion::arrow::array::new_empty_array(&item_type)
    } else {
        ScalarValue::iter_to_array(values.iter().cloned())
            .map_err(|e| err("XX000", e.to_string()))?
    };
    let list = datafusion::arrow::array::ListArray::new(
        item_field(element, item_type),
        datafusion::arrow::buffer::OffsetBuffer::from_lengths([items.len()]),
        items,
        None,
    );
    Ok(ScalarValue::List(Arc::new(list)))
}

/// A one-dimensional array in PostgreSQL's binary form: ndim, has-null flag, element oid, then
/// (length, lower bound) and each element as a length (-1 for NULL) and its bytes.
fn array_from_binary(bytes: &[u8], element: u32) -> Result<ScalarValue, DecodeError> {
    let mut at = 0usize;
    let word = |at: &mut usize| -> Result<[u8; 4], DecodeError> {
        let w = fixed::<4>(bytes.get(*at..*at + 4).ok_or_else(binary_format)?)?;
        *at += 4;
        Ok(w)
    };
    let ndim = i32::from_be_bytes(word(&mut at)?);
    let _has_null = word(&mut at)?;
    let wire_element = u32::from_be_bytes(word(&mut at)?);
    let count = match ndim {
        0 => 0,
        1 => {
            let n = i32::from_be_bytes(word(&mut at)?);
            let _lower = word(&mut at)?;
            usize::try_from(n).map_err(|_| binary_format())?
        }
        _ => {
            return Err(err(
                "0A000",
                "array parameters of more than one dimension are not supported",
            ))
        }
    };
    let mut values = Vec::with_capacity(count.min(bytes.len()));
    for _ in 0..count {
        let len = i32::from_be_bytes(word(&mut at)?);
        let value = if len < 0 {
            ScalarValue::try_from(&data_type(element)).map_err(|e| err("XX000", e.to_string()))?
        } else {
            let len = usize::try_from(len).map_err(|_| binary_format())?;
            let item = bytes.get(at..at + len).ok_or_else(binary_format)?;
            at += len;
            convert(from_binary(item, wire_element)?, element)?
        };
        values.push(value);
    }
    if at != bytes.len() {
        return Err(binary_format());
    }
    list(&values, element)
}

fn from_binary(bytes: &[u8], wire: u32) -> Result<ScalarValue, DecodeError> {
    if let Some(element) = param_array_element(wire) {
        return array_from_binary(bytes, element);
    }
    if matches!(wire, oid::INT2 | oid::INT4 | oid::INT8) {
        let v = match bytes.len() {
            2 => i64::from(i16::from_be_bytes(fixed(bytes)?)),
            4 => i64::from(i32::from_be_bytes(fixed(bytes)?)),
            8 => i64::from_be_bytes(fixed(bytes)?),
            _ => return Err(binary_format()),
        };
        return Ok(ScalarValue::Int64(Some(v)));
    }
    Ok(match wire {
        oid::BOOL => match bytes {
            [b] => ScalarValue::Boolean(Some(*b != 0)),
            _ => return Err(binary_format()),
        },
        oid::OID | oid::REGCLASS | oid::REGTYPE => {
            ScalarValue::Int64(Some(i64::from(u32::from_be_bytes(fixed(bytes)?))))
        }
        oid::TIME => ScalarValue::Time64Microsecond(Some(i64::from_be_bytes(fixed(bytes)?))),
        oid::INTERVAL => {
            let b: [u8; 16] = fixed(bytes)?;
            let [m0, m1, m2, m3, m4, m5, m6, m7, d0, d1, d2, d3, n0, n1, n2, n3] = b;
            interval_value(interval::Interval {
                micros: i64::from_be_bytes([m0, m1, m2, m3, m4, m5, m6, m7]),
                days: i32::from_be_bytes([d0, d1, d2, d3]),
                months: i32::from_be_bytes([n0, n1, n2, n3]),
            })?
        }
        oid::FLOAT4 => ScalarValue::Float32(Some(f32::from_be_bytes(fixed(bytes)?))),
        oid::FLOAT8 => ScalarValue::Float64(Some(f64::from_be_bytes(fixed(bytes)?))),
        oid::NUMERIC => {
            let parsed = numeric::from_binary(bytes).ok_or_else(binary_format)?;
            decimal(&parsed, "binary numeric")?
        }
        oid::BYTEA => ScalarValue::Binary(Some(bytes.to_vec())),
        oid::DATE => {
            let d = i32::from_be_bytes(fixed(bytes)?);
            let days = match d {
                i32::MAX | i32::MIN => d,
                _ => d
                    .checked_add(pgtime::PG_EPOCH_DAYS)
                    .ok_or_else(|| err("22008", "date out of range"))?,
            };
            ScalarValue::Date32(Some(days))
        }
        oid::TIMESTAMP | oid::TIMESTAMPTZ => {
            let t = i64::from_be_bytes(fixed(bytes)?);
            let micros = match t {
                i64::MAX | i64::MIN => t,
                _ => t
                    .checked_add(pgtime::PG_EPOCH_MICROS)
                    .ok_or_else(|| err("22008", "timestamp out of range"))?,
            };
            let tz = (wire == oid::TIMESTAMPTZ).then(|| Arc::from(UTC));
            ScalarValue::TimestampMicrosecond(Some(micros), tz)
        }
        oid::UUID => uuid_value(&fixed::<16>(bytes)?),
        oid::JSONB => match bytes.split_first() {
            Some((1, rest)) => ScalarValue::Utf8(Some(utf8(rest)?)),
            _ => return Err(err("22P03", "unsupported jsonb version number")),
        },
        _ => ScalarValue::Utf8(Some(utf8(bytes)?)),
    })
}

/// uuid parameters are text in canonical form: the engine keeps uuid columns as `Utf8`.
fn uuid_value(bytes: &[u8; 16]) -> ScalarValue {
    ScalarValue::Utf8(Some(format_uuid(bytes)))
}

fn interval_value(iv: interval::Interval) -> Result<ScalarValue, DecodeError> {
    let nanos = iv
        .micros
        .checked_mul(1_000)
        .ok_or_else(|| err("22008", "interval out of range"))?;
    Ok(ScalarValue::IntervalMonthDayNano(Some(
        IntervalMonthDayNano::new(iv.months, iv.days, nanos),
    )))
}

fn utf8(bytes: &[u8]) -> Result<String, DecodeError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| err("22021", "invalid byte sequence for encoding \"UTF8\""))
}

/// Converts a value read in the client's type to the statement's type.
fn convert(v: ScalarValue, target: u32) -> Result<ScalarValue, DecodeError> {
    let want = data_type(target);
    if target == oid::NUMERIC {
        if let ScalarValue::Decimal128(..) = v {
            return Ok(v);
        }
    }
    if v.data_type() == want {
        return Ok(v);
    }
    // Numeric elements were converted as they were read (`array_from_binary`), at the list's
    // largest scale, which the target type (scale 0) does not say.
    if param_array_element(target) == Some(oid::NUMERIC) && matches!(v, ScalarValue::List(_)) {
        return Ok(v);
    }
    match (&v, target) {
        (ScalarValue::Int64(Some(i)), oid::INT2 | oid::INT4 | oid::INT8 | oid::OID) => {
            int_value(i128::from(*i), target).ok_or_else(|| out_of_range(target, &i.to_string()))
        }
        (ScalarValue::Int64(Some(i)), oid::NUMERIC) => {
            Ok(ScalarValue::Decimal128(Some(i128::from(*i)), 38, 0))
        }
        // Text sent in binary is its own text form.
        (ScalarValue::Utf8(Some(s)), _) => from_text(s, target),
        _ => v.cast_to(&want).map_err(|_| {
            err(
                "42804",
                format!(
                    "parameter of type {} cannot be used as type {}",
                    v.data_type(),
                    oid::type_name(target)
                ),
            )
        }),
    }
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
