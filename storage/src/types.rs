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
    /// A one-dimensional array of a scalar type (`int[]`, `text[]`, …).
    Array(ArrayElem),
}

/// The element type of an array column: the scalar types an array may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ArrayElem {
    Bool,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Numeric { precision: u8, scale: i8 },
    Text,
    Varchar(Option<u32>),
    Date,
    Timestamp,
    TimestampTz,
    Uuid,
}

impl ArrayElem {
    /// The scalar column type of one element.
    pub fn scalar(self) -> DataType {
        match self {
            ArrayElem::Bool => DataType::Bool,
            ArrayElem::Int16 => DataType::Int16,
            ArrayElem::Int32 => DataType::Int32,
            ArrayElem::Int64 => DataType::Int64,
            ArrayElem::Float32 => DataType::Float32,
            ArrayElem::Float64 => DataType::Float64,
            ArrayElem::Numeric { precision, scale } => DataType::Numeric { precision, scale },
            ArrayElem::Text => DataType::Text,
            ArrayElem::Varchar(n) => DataType::Varchar(n),
            ArrayElem::Date => DataType::Date,
            ArrayElem::Timestamp => DataType::Timestamp,
            ArrayElem::TimestampTz => DataType::TimestampTz,
            ArrayElem::Uuid => DataType::Uuid,
        }
    }

    /// The element type for arrays of `t`, if arrays of it are supported.
    pub fn of(t: DataType) -> Option<ArrayElem> {
        Some(match t {
            DataType::Bool => ArrayElem::Bool,
            DataType::Int16 => ArrayElem::Int16,
            DataType::Int32 => ArrayElem::Int32,
            DataType::Int64 => ArrayElem::Int64,
            DataType::Float32 => ArrayElem::Float32,
            DataType::Float64 => ArrayElem::Float64,
            DataType::Numeric { precision, scale } => ArrayElem::Numeric { precision, scale },
            DataType::Text => ArrayElem::Text,
            DataType::Varchar(n) => ArrayElem::Varchar(n),
            DataType::Date => ArrayElem::Date,
            DataType::Timestamp => ArrayElem::Timestamp,
            DataType::TimestampTz => ArrayElem::TimestampTz,
            DataType::Uuid => ArrayElem::Uuid,
            DataType::Char(_) | DataType::Bytea | DataType::Jsonb | DataType::Array(_) => {
                return None
            }
        })
    }
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
    /// The elements of a one-dimensional array, each of the element type or NULL.
    Array(Vec<Value>),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

/// A row: one value per column of the table, in the table's column order.
pub type Row = Vec<Value>;
