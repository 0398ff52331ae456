//! SQL types and values as storage sees them: what a column may hold and how one cell is held in
//! memory. The SQL layer maps these to Arrow and PostgreSQL types; storage only encodes them.

use serde::{Deserialize, Serialize};

/// A column's declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DataType {
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    /// `numeric(precision, scale)`; unconstrained `numeric` is stored as (38, 16).
    Numeric {
        precision: u8,
        scale: i8,
    },
    Text,
    /// `varchar(n)`; `None` for unbounded `varchar`.
    Varchar(Option<u32>),
    /// `char(n)`, blank-padded to n on write.
    Char(u32),
    Bool,
    Bytea,
    /// Days since 1970-01-01.
    Date,
    /// Microseconds since 1970-01-01 00:00:00, no zone.
    Timestamp,
    /// Microseconds since 1970-01-01 00:00:00 UTC.
    TimestampTz,
    Uuid,
    /// JSON text, normalized by the SQL layer on write.
    Jsonb,
}

/// One cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Null,
    Bool(bool),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    Float32(f32),
    Float64(f64),
    /// Unscaled value; the scale comes from the column's type.
    Numeric(i128),
    /// text, varchar, char and jsonb.
    Text(String),
    Bytes(Vec<u8>),
    Date(i32),
    Timestamp(i64),
    TimestampTz(i64),
    Uuid([u8; 16]),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

/// A row: one value per column of the table, in the table's column order.
pub type Row = Vec<Value>;
