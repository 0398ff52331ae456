//! Row payloads, encoded by column id so `ADD COLUMN` / `DROP COLUMN` need no rewrite.
//!
//! ```text
//! row   := FORMAT_V1 field*
//! field := varint(column_id << 4 | wire) payload      (NULL columns are omitted)
//! ```
//!
//! The wire type says how long the payload is, so a decoder skips the fields of columns that have
//! since been dropped, and a column added later is simply absent (it reads as NULL).
//!
//! An array's payload is `varint(count) element*`, each element `varint(wire) payload` with wire
//! 0 for a NULL element (arrays do not nest).

use crate::catalog::{ColumnId, TableDef};
use crate::error::{Error, Result};
use crate::types::{DataType, Row, Value};

const FORMAT_V1: u8 = 1;

const WIRE_FALSE: u8 = 1;
const WIRE_TRUE: u8 = 2;
const WIRE_INT16: u8 = 3;
const WIRE_INT32: u8 = 4;
const WIRE_INT64: u8 = 5;
const WIRE_FLOAT32: u8 = 6;
const WIRE_FLOAT64: u8 = 7;
const WIRE_NUMERIC: u8 = 8;
const WIRE_TEXT: u8 = 9;
const WIRE_BYTES: u8 = 10;
const WIRE_DATE: u8 = 11;
const WIRE_TIMESTAMP: u8 = 12;
const WIRE_TIMESTAMPTZ: u8 = 13;
const WIRE_UUID: u8 = 14;
const WIRE_ARRAY: u8 = 15;
/// An array element that is NULL (only inside an array's payload).
const WIRE_NULL_ELEMENT: u8 = 0;

/// Encodes `row` (in `table`'s column order). Fails if the row does not fit the table.
pub fn encode_row(table: &TableDef, row: &[Value]) -> Result<Vec<u8>> {
    check_row(table, row)?;
    let mut out = Vec::with_capacity(16 + row.len() * 8);
    out.push(FORMAT_V1);
    for (col, v) in table.columns.iter().zip(row) {
        encode_field(&mut out, col.id, v);
    }
    Ok(out)
}

/// Checks arity and that each value has its column's type (or is NULL).
pub fn check_row(table: &TableDef, row: &[Value]) -> Result<()> {
    if row.len() != table.columns.len() {
        return Err(Error::InvalidArgument(format!(
            "row has {} values but table {} has {} columns",
            row.len(),
            table.name,
            table.columns.len()
        )));
    }
    for (col, v) in table.columns.iter().zip(row) {
        if !value_fits(col.data_type, v) {
            return Err(Error::InvalidArgument(format!(
                "value {v:?} does not have the type {:?} of column {}.{}",
                col.data_type, table.name, col.name
            )));
        }
    }
    Ok(())
}

/// Whether `v` is a valid in-memory value for a column of type `ty`.
pub fn value_fits(ty: DataType, v: &Value) -> bool {
    matches!(
        (ty, v),
        (_, Value::Null)
            | (DataType::Bool, Value::Bool(_))
            | (DataType::Int16, Value::Int16(_))
            | (DataType::Int32, Value::Int32(_))
            | (DataType::Int64, Value::Int64(_))
            | (DataType::Float32, Value::Float32(_))
            | (DataType::Float64, Value::Float64(_))
            | (DataType::Numeric { .. }, Value::Numeric(_))
            | (
                DataType::Text | DataType::Varchar(_) | DataType::Char(_) | DataType::Jsonb,
                Value::Text(_)
            )
            | (DataType::Bytea, Value::Bytes(_))
            | (DataType::Date, Value::Date(_))
            | (DataType::Timestamp, Value::Timestamp(_))
            | (DataType::TimestampTz, Value::TimestampTz(_))
            | (DataType::Uuid, Value::Uuid(_))
    ) || match (ty, v) {
        // An element type is never an array, so a nested array does not fit.
        (DataType::Array(elem), Value::Array(items)) => {
            items.iter().all(|x| value_fits(elem.scalar(), x))
        }
        _ => false,
    }
}

fn encode_field(out: &mut Vec<u8>, id: ColumnId, v: &Value) {
    if !v.is_null() {
        put_varint(out, (u64::from(id) << 4) | u64::from(wire_of(v)));
        encode_payload(out, v);
    }
}

fn wire_of(v: &Value) -> u8 {
    match v {
        Value::Null => WIRE_NULL_ELEMENT,
        Value::Bool(false) => WIRE_FALSE,
        Value::Bool(true) => WIRE_TRUE,
        Value::Int16(_) => WIRE_INT16,
        Value::Int32(_) => WIRE_INT32,
        Value::Int64(_) => WIRE_INT64,
        Value::Float32(_) => WIRE_FLOAT32,
        Value::Float64(_) => WIRE_FLOAT64,
        Value::Numeric(_) => WIRE_NUMERIC,
        Value::Text(_) => WIRE_TEXT,
        Value::Bytes(_) => WIRE_BYTES,
        Value::Date(_) => WIRE_DATE,
        Value::Timestamp(_) => WIRE_TIMESTAMP,
        Value::TimestampTz(_) => WIRE_TIMESTAMPTZ,
        Value::Uuid(_) => WIRE_UUID,
        Value::Array(_) => WIRE_ARRAY,
    }
}

/// The payload of `v` (its wire type written by the caller); nothing for NULL and booleans.
fn encode_payload(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null | Value::Bool(_) => {}
        Value::Int16(i) => put_varint(out, zigzag(i64::from(*i))),
        Value::Int32(i) => put_varint(out, zigzag(i64::from(*i))),
        Value::Int64(i) => put_varint(out, zigzag(*i)),
        Value::Float32(f) => out.extend_from_slice(&f.to_le_bytes()),
        Value::Float64(f) => out.extend_from_slice(&f.to_le_bytes()),
        Value::Numeric(n) => out.extend_from_slice(&n.to_le_bytes()),
        Value::Text(s) => {
            put_varint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Bytes(b) => {
            put_varint(out, b.len() as u64);
            out.extend_from_slice(b);
        }
        Value::Date(d) => put_varint(out, zigzag(i64::from(*d))),
        Value::Timestamp(t) => put_varint(out, zigzag(*t)),
        Value::TimestampTz(t) => put_varint(out, zigzag(*t)),
        Value::Uuid(u) => out.extend_from_slice(u),
        Value::Array(items) => {
            put_varint(out, items.len() as u64);
            for item in items {
                put_varint(out, u64::from(wire_of(item)));
                encode_payload(out, item);
            }
        }
    }
}

/// Decodes row payloads of one table into rows of its current columns, or of a projection.
pub struct RowDecoder {
    /// Output slot for each column id; `usize::MAX` for columns not wanted (or dropped).
    slot_by_id: Vec<usize>,
    /// `(to, from)`: slots of a projection that repeats a column, copied after decoding.
    repeats: Vec<(usize, usize)>,
    width: usize,
}

impl RowDecoder {
    /// `projection`: positions into `table.columns`; the decoded row holds those, in that order.
    pub fn new(table: &TableDef, projection: Option<&[usize]>) -> Result<RowDecoder> {
        let max_id = table.columns.iter().map(|c| c.id).max().unwrap_or(0);
        let mut slot_by_id = vec![usize::MAX; max_id as usize + 1];
        let mut repeats = Vec::new();
        let width = match projection {
            None => {
                for (pos, col) in table.columns.iter().enumerate() {
                    slot_by_id[col.id as usize] = pos;
                }
                table.columns.len()
            }
            Some(proj) => {
                for (slot, &pos) in proj.iter().enumerate() {
                    let col = table.columns.get(pos).ok_or_else(|| {
                        Error::InvalidArgument(format!(
                            "projection position {pos} is out of range for table {}",
                            table.name
                        ))
                    })?;
                    match slot_by_id[col.id as usize] {
                        usize::MAX => slot_by_id[col.id as usize] = slot,
                        first => repeats.push((slot, first)),
                    }
                }
                proj.len()
            }
        };
        Ok(RowDecoder {
            slot_by_id,
            repeats,
            width,
        })
    }

    pub fn decode(&self, bytes: &[u8]) -> Result<Row> {
        let mut row = vec![Value::Null; self.width];
        let mut buf = bytes;
        match take(&mut buf, 1)?[0] {
            FORMAT_V1 => {}
            f => return Err(Error::Corruption(format!("unknown row format {f}"))),
        }
        while !buf.is_empty() {
            let head = get_varint(&mut buf)?;
            let wire = (head & 0xF) as u8;
            let id = head >> 4;
            let value = decode_payload(&mut buf, wire)?;
            let slot = usize::try_from(id)
                .ok()
                .and_then(|id| self.slot_by_id.get(id).copied())
                .unwrap_or(usize::MAX);
            if let Some(cell) = row.get_mut(slot) {
                *cell = value;
            }
        }
        for &(to, from) in &self.repeats {
            if let Some(v) = row.get(from).cloned() {
                row[to] = v;
            }
        }
        Ok(row)
    }
}

fn decode_payload(buf: &mut &[u8], wire: u8) -> Result<Value> {
    Ok(match wire {
        WIRE_FALSE => Value::Bool(false),
        WIRE_TRUE => Value::Bool(true),
        WIRE_INT16 => Value::Int16(narrow(unzigzag(get_varint(buf)?))?),
        WIRE_INT32 => Value::Int32(narrow(unzigzag(get_varint(buf)?))?),
        WIRE_INT64 => Value::Int64(unzigzag(get_varint(buf)?)),
        WIRE_FLOAT32 => Value::Float32(f32::from_le_bytes(array(take(buf, 4)?)?)),
        WIRE_FLOAT64 => Value::Float64(f64::from_le_bytes(array(take(buf, 8)?)?)),
        WIRE_NUMERIC => Value::Numeric(i128::from_le_bytes(array(take(buf, 16)?)?)),
        WIRE_TEXT => {
            let len = length(get_varint(buf)?)?;
            let bytes = take(buf, len)?.to_vec();
            Value::Text(
                String::from_utf8(bytes)
                    .map_err(|_| Error::Corruption("text field is not UTF-8".into()))?,
            )
        }
        WIRE_BYTES => {
            let len = length(get_varint(buf)?)?;
            Value::Bytes(take(buf, len)?.to_vec())
        }
        WIRE_DATE => Value::Date(narrow(unzigzag(get_varint(buf)?))?),
        WIRE_TIMESTAMP => Value::Timestamp(unzigzag(get_varint(buf)?)),
        WIRE_TIMESTAMPTZ => Value::TimestampTz(unzigzag(get_varint(buf)?)),
        WIRE_UUID => Value::Uuid(array(take(buf, 16)?)?),
        WIRE_ARRAY => {
            let count = length(get_varint(buf)?)?;
            // Each element takes at least one byte: a count beyond the payload is corrupt.
            if count > buf.len() {
                return Err(Error::Corruption(format!(
                    "array of {count} elements ends early"
                )));
            }
            let mut items = Vec::with_capacity(count);
            for _ in 0..count {
                let wire = get_varint(buf)?;
                items.push(match u8::try_from(wire) {
                    Ok(WIRE_NULL_ELEMENT) => Value::Null,
                    Ok(w) if w != WIRE_ARRAY => decode_payload(buf, w)?,
                    _ => {
                        return Err(Error::Corruption(format!(
                            "array element of wire type {wire}"
                        )))
                    }
                });
            }
            Value::Array(items)
        }
        w => return Err(Error::Corruption(format!("unknown row wire type {w}"))),
    })
}

fn zigzag(i: i64) -> u64 {
    ((i << 1) ^ (i >> 63)) as u64
}

fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// LEB128.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn get_varint(buf: &mut &[u8]) -> Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = take(buf, 1)?[0];
        v |= u64::from(b & 0x7F) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(Error::Corruption("varint longer than 10 bytes".into()))
}

fn length(v: u64) -> Result<usize> {
    usize::try_from(v).map_err(|_| Error::Corruption(format!("length {v} does not fit")))
}

fn narrow<T: TryFrom<i64>>(i: i64) -> Result<T> {
    T::try_from(i).map_err(|_| Error::Corruption(format!("integer {i} out of range")))
}

pub fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
    if buf.len() < n {
        return Err(Error::Corruption("encoded data ends early".into()));
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Ok(head)
}

fn array<const N: usize>(b: &[u8]) -> Result<[u8; N]> {
    b.try_into()
        .map_err(|_| Error::Corruption("field has the wrong width".into()))
}

/// The fields of an encoded row, each with its column id and its encoded bytes (head included),
/// so that a row can be taken apart and put together again cell by cell (`join_fields`).
pub fn split_fields(bytes: &[u8]) -> Result<Vec<(ColumnId, Vec<u8>)>> {
    let mut buf = bytes;
    match take(&mut buf, 1)?[0] {
        FORMAT_V1 => {}
        f => return Err(Error::Corruption(format!("unknown row format {f}"))),
    }
    let mut out = Vec::new();
    while !buf.is_empty() {
        let start = buf;
        let head = get_varint(&mut buf)?;
        decode_payload(&mut buf, (head & 0xF) as u8)?;
        let id = ColumnId::try_from(head >> 4)
            .map_err(|_| Error::Corruption(format!("column id {} too large", head >> 4)))?;
        let len = start.len() - buf.len();
        out.push((id, start[..len].to_vec()));
    }
    Ok(out)
}

/// A row payload made of encoded fields (as `split_fields` returns them).
pub fn join_fields<'a>(fields: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = vec![FORMAT_V1];
    for f in fields {
        out.extend_from_slice(f);
    }
    out
}
