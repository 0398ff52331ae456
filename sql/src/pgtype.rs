//! PostgreSQL types as the wire sees them, and their mapping to Arrow and storage types.
//!
//! Arrow has no uuid or jsonb type: such columns are `Utf8` with the field metadata key
//! [`PG_TYPE_KEY`] naming the PostgreSQL type, so RowDescription reports the right OID.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType as ArrowType, Field, FieldRef, TimeUnit};
use weft_storage::{ArrayElem, DataType};

/// Field metadata key carrying the PostgreSQL type name where Arrow's type is ambiguous.
pub const PG_TYPE_KEY: &str = "weft.pg_type";

/// The zone string of `timestamptz` columns.
pub const UTC: &str = "+00:00";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PgType {
    Bool,
    Bytea,
    Char,
    Name,
    Int8,
    Int2,
    Int4,
    Text,
    Oid,
    Json,
    Float4,
    Float8,
    Unknown,
    Bpchar,
    Varchar,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Interval,
    Numeric,
    Uuid,
    Jsonb,
    RegClass,
    RegType,
    BoolArray,
    Int2Array,
    Int4Array,
    Int8Array,
    TextArray,
    Float8Array,
    OidArray,
    NameArray,
    CharArray,
    Float4Array,
    NumericArray,
    DateArray,
    TimeArray,
    TimestampArray,
    TimestampTzArray,
    IntervalArray,
    UuidArray,
    JsonArray,
    JsonbArray,
    ByteaArray,
    VarcharArray,
    BpcharArray,
    Int2Vector,
    OidVector,
}

impl PgType {
    pub fn oid(self) -> u32 {
        use PgType::*;
        match self {
            Bool => 16,
            Bytea => 17,
            Char => 18,
            Name => 19,
            Int8 => 20,
            Int2 => 21,
            Int4 => 23,
            Text => 25,
            Oid => 26,
            Json => 114,
            Float4 => 700,
            Float8 => 701,
            Unknown => 705,
            Bpchar => 1042,
            Varchar => 1043,
            Date => 1082,
            Time => 1083,
            Timestamp => 1114,
            TimestampTz => 1184,
            Interval => 1186,
            Numeric => 1700,
            Uuid => 2950,
            Jsonb => 3802,
            RegClass => 2205,
            RegType => 2206,
            BoolArray => 1000,
            Int2Array => 1005,
            Int4Array => 1007,
            Int8Array => 1016,
            TextArray => 1009,
            Float8Array => 1022,
            OidArray => 1028,
            NameArray => 1003,
            CharArray => 1002,
            Float4Array => 1021,
            NumericArray => 1231,
            DateArray => 1182,
            TimeArray => 1183,
            TimestampArray => 1115,
            TimestampTzArray => 1185,
            IntervalArray => 1187,
            UuidArray => 2951,
            JsonArray => 199,
            JsonbArray => 3807,
            ByteaArray => 1001,
            VarcharArray => 1015,
            BpcharArray => 1014,
            Int2Vector => 22,
            OidVector => 30,
        }
    }

    pub const ALL: [PgType; 49] = {
        use PgType::*;
        [
            Bool,
            Bytea,
            Char,
            Name,
            Int8,
            Int2,
            Int4,
            Text,
            Oid,
            Json,
            Float4,
            Float8,
            Unknown,
            Bpchar,
            Varchar,
            Date,
            Time,
            Timestamp,
            TimestampTz,
            Interval,
            Numeric,
            Uuid,
            Jsonb,
            RegClass,
            RegType,
            BoolArray,
            Int2Array,
            Int4Array,
            Int8Array,
            TextArray,
            Float8Array,
            OidArray,
            NameArray,
            CharArray,
            Float4Array,
            NumericArray,
            DateArray,
            TimeArray,
            TimestampArray,
            TimestampTzArray,
            IntervalArray,
            UuidArray,
            JsonArray,
            JsonbArray,
            ByteaArray,
            VarcharArray,
            BpcharArray,
            Int2Vector,
            OidVector,
        ]
    };

    pub fn from_oid(oid: u32) -> Option<PgType> {
        PgType::ALL.iter().copied().find(|t| t.oid() == oid)
    }

    pub fn name(self) -> &'static str {
        use PgType::*;
        match self {
            Bool => "bool",
            Bytea => "bytea",
            Char => "char",
            Name => "name",
            Int8 => "int8",
            Int2 => "int2",
            Int4 => "int4",
            Text => "text",
            Oid => "oid",
            Json => "json",
            Float4 => "float4",
            Float8 => "float8",
            Unknown => "unknown",
            Bpchar => "bpchar",
            Varchar => "varchar",
            Date => "date",
            Time => "time",
            Timestamp => "timestamp",
            TimestampTz => "timestamptz",
            Interval => "interval",
            Numeric => "numeric",
            Uuid => "uuid",
            Jsonb => "jsonb",
            RegClass => "regclass",
            RegType => "regtype",
            BoolArray => "_bool",
            Int2Array => "_int2",
            Int4Array => "_int4",
            Int8Array => "_int8",
            TextArray => "_text",
            Float8Array => "_float8",
            OidArray => "_oid",
            NameArray => "_name",
            CharArray => "_char",
            Float4Array => "_float4",
            NumericArray => "_numeric",
            DateArray => "_date",
            TimeArray => "_time",
            TimestampArray => "_timestamp",
            TimestampTzArray => "_timestamptz",
            IntervalArray => "_interval",
            UuidArray => "_uuid",
            JsonArray => "_json",
            JsonbArray => "_jsonb",
            ByteaArray => "_bytea",
            VarcharArray => "_varchar",
            BpcharArray => "_bpchar",
            Int2Vector => "int2vector",
            OidVector => "oidvector",
        }
    }

    /// The name `format_type` and `pg_typeof` show.
    pub fn display_name(self) -> &'static str {
        use PgType::*;
        match self {
            Bool => "boolean",
            Int2 => "smallint",
            Int4 => "integer",
            Int8 => "bigint",
            Float4 => "real",
            Float8 => "double precision",
            Varchar => "character varying",
            Bpchar => "character",
            Time => "time without time zone",
            Timestamp => "timestamp without time zone",
            TimestampTz => "timestamp with time zone",
            BoolArray => "boolean[]",
            Int2Array => "smallint[]",
            Int4Array => "integer[]",
            Int8Array => "bigint[]",
            TextArray => "text[]",
            Float8Array => "double precision[]",
            OidArray => "oid[]",
            NameArray => "name[]",
            CharArray => "\"char\"[]",
            Float4Array => "real[]",
            NumericArray => "numeric[]",
            DateArray => "date[]",
            TimeArray => "time without time zone[]",
            TimestampArray => "timestamp without time zone[]",
            TimestampTzArray => "timestamp with time zone[]",
            IntervalArray => "interval[]",
            UuidArray => "uuid[]",
            JsonArray => "json[]",
            JsonbArray => "jsonb[]",
            ByteaArray => "bytea[]",
            VarcharArray => "character varying[]",
            BpcharArray => "character[]",
            Char => "\"char\"",
            other => other.name(),
        }
    }

    /// pg_type.typlen: the fixed size, or -1 for variable length.
    pub fn typlen(self) -> i16 {
        use PgType::*;
        match self {
            Bool | Char => 1,
            Int2 => 2,
            Int4 | Oid | Float4 | Date | RegClass | RegType => 4,
            Int8 | Float8 | Time | Timestamp | TimestampTz => 8,
            Interval | Uuid => 16,
            Name => 64,
            Unknown => -2,
            _ => -1,
        }
    }

    /// The PostgreSQL type of an Arrow field (metadata first, then the Arrow type).
    pub fn from_field(field: &Field) -> PgType {
        if let Some(name) = field.metadata().get(PG_TYPE_KEY) {
            if let Some(t) = PgType::ALL.iter().copied().find(|t| t.name() == name) {
                return t;
            }
        }
        PgType::from_arrow(field.data_type())
    }

    pub fn from_arrow(t: &ArrowType) -> PgType {
        match t {
            ArrowType::Boolean => PgType::Bool,
            ArrowType::Int8 | ArrowType::Int16 | ArrowType::UInt8 => PgType::Int2,
            ArrowType::Int32 | ArrowType::UInt16 => PgType::Int4,
            ArrowType::Int64 | ArrowType::UInt32 | ArrowType::UInt64 => PgType::Int8,
            ArrowType::Float16 | ArrowType::Float32 => PgType::Float4,
            ArrowType::Float64 => PgType::Float8,
            ArrowType::Decimal32(..)
            | ArrowType::Decimal64(..)
            | ArrowType::Decimal128(..)
            | ArrowType::Decimal256(..) => PgType::Numeric,
            ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View => PgType::Text,
            ArrowType::Binary
            | ArrowType::LargeBinary
            | ArrowType::BinaryView
            | ArrowType::FixedSizeBinary(_) => PgType::Bytea,
            ArrowType::Date32 | ArrowType::Date64 => PgType::Date,
            ArrowType::Time32(_) | ArrowType::Time64(_) => PgType::Time,
            ArrowType::Timestamp(_, None) => PgType::Timestamp,
            ArrowType::Timestamp(_, Some(_)) => PgType::TimestampTz,
            ArrowType::Interval(_) | ArrowType::Duration(_) => PgType::Interval,
            ArrowType::List(f) | ArrowType::LargeList(f) | ArrowType::FixedSizeList(f, _) => {
                let element = PgType::from_field(f);
                // A list of lists is a multidimensional array, of the same type in PostgreSQL.
                match element.element() {
                    Some(_) => element,
                    None => element.array().unwrap_or(PgType::TextArray),
                }
            }
            ArrowType::Null => PgType::Text,
            _ => PgType::Text,
        }
    }

    /// The Arrow type a parameter of this PostgreSQL type binds as.
    pub fn to_arrow(self) -> ArrowType {
        use PgType::*;
        match self {
            Bool => ArrowType::Boolean,
            Int2 => ArrowType::Int16,
            Int4 => ArrowType::Int32,
            Int8 | Oid | RegClass | RegType => ArrowType::Int64,
            Float4 => ArrowType::Float32,
            Float8 => ArrowType::Float64,
            Numeric => ArrowType::Decimal128(38, 10),
            Bytea => ArrowType::Binary,
            Date => ArrowType::Date32,
            Time => ArrowType::Time64(TimeUnit::Microsecond),
            Timestamp => ArrowType::Timestamp(TimeUnit::Microsecond, None),
            TimestampTz => ArrowType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
            Interval => {
                ArrowType::Interval(datafusion::arrow::datatypes::IntervalUnit::MonthDayNano)
            }
            _ if self.element().is_some() => {
                let element = self.element().unwrap_or(Text);
                let field = Field::new_list_field(element.to_arrow(), true);
                // Elements whose Arrow type is ambiguous (uuid, jsonb: Utf8) name their type.
                let field =
                    match element {
                        Uuid | Json | Jsonb | Varchar | Bpchar => field.with_metadata(
                            HashMap::from([(PG_TYPE_KEY.to_string(), element.name().to_string())]),
                        ),
                        _ => field,
                    };
                ArrowType::List(Arc::new(field))
            }
            _ => ArrowType::Utf8,
        }
    }

    /// The element type of an array type.
    pub fn element(self) -> Option<PgType> {
        PgType::ARRAYS
            .iter()
            .find(|(a, _)| *a == self)
            .map(|(_, e)| *e)
    }

    /// The array type whose elements are of this type (text[] stands for the others).
    pub fn array(self) -> Option<PgType> {
        PgType::ARRAYS
            .iter()
            .find(|(_, e)| *e == self)
            .map(|(a, _)| *a)
    }

    /// (array type, element type)
    const ARRAYS: [(PgType, PgType); 24] = {
        use PgType::*;
        [
            (BoolArray, Bool),
            (Int2Array, Int2),
            (Int4Array, Int4),
            (Int8Array, Int8),
            (TextArray, Text),
            (Float8Array, Float8),
            (OidArray, Oid),
            (NameArray, Name),
            (CharArray, Char),
            (Float4Array, Float4),
            (NumericArray, Numeric),
            (DateArray, Date),
            (TimeArray, Time),
            (TimestampArray, Timestamp),
            (TimestampTzArray, TimestampTz),
            (IntervalArray, Interval),
            (UuidArray, Uuid),
            (JsonArray, Json),
            (JsonbArray, Jsonb),
            (ByteaArray, Bytea),
            (VarcharArray, Varchar),
            (BpcharArray, Bpchar),
            // After int2[] and oid[], which `array()` finds first.
            (Int2Vector, Int2),
            (OidVector, Oid),
        ]
    };

    /// The PostgreSQL type of a stored column.
    pub fn from_storage(t: DataType) -> PgType {
        match t {
            DataType::Int16 => PgType::Int2,
            DataType::Int32 => PgType::Int4,
            DataType::Int64 => PgType::Int8,
            DataType::Float32 => PgType::Float4,
            DataType::Float64 => PgType::Float8,
            DataType::Numeric { .. } => PgType::Numeric,
            DataType::Text => PgType::Text,
            DataType::Varchar(_) => PgType::Varchar,
            DataType::Char(_) => PgType::Bpchar,
            DataType::Bool => PgType::Bool,
            DataType::Bytea => PgType::Bytea,
            DataType::Date => PgType::Date,
            DataType::Timestamp => PgType::Timestamp,
            DataType::TimestampTz => PgType::TimestampTz,
            DataType::Uuid => PgType::Uuid,
            DataType::Jsonb => PgType::Jsonb,
            DataType::Array(elem) => PgType::from_storage(elem.scalar())
                .array()
                .unwrap_or(PgType::TextArray),
        }
    }
}

/// Arrow type of a stored column.
pub fn arrow_type(t: DataType) -> ArrowType {
    match t {
        DataType::Int16 => ArrowType::Int16,
        DataType::Int32 => ArrowType::Int32,
        DataType::Int64 => ArrowType::Int64,
        DataType::Float32 => ArrowType::Float32,
        DataType::Float64 => ArrowType::Float64,
        DataType::Numeric { precision, scale } => ArrowType::Decimal128(precision, scale),
        DataType::Text | DataType::Varchar(_) | DataType::Char(_) => ArrowType::Utf8,
        DataType::Uuid | DataType::Jsonb => ArrowType::Utf8,
        DataType::Bool => ArrowType::Boolean,
        DataType::Bytea => ArrowType::Binary,
        DataType::Date => ArrowType::Date32,
        DataType::Timestamp => ArrowType::Timestamp(TimeUnit::Microsecond, None),
        DataType::TimestampTz => ArrowType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
        DataType::Array(elem) => ArrowType::List(list_item_field(elem)),
    }
}

/// The element field of an array column's Arrow list: plain, without metadata, as DataFusion's
/// array functions build their results' (a plan's schema must match what they return); the
/// array's PostgreSQL type is carried on the column's own field instead ([`arrow_field`]).
pub fn list_item_field(elem: ArrayElem) -> FieldRef {
    Arc::new(Field::new_list_field(arrow_type(elem.scalar()), true))
}

/// Arrow field of a stored column, with the PostgreSQL type in its metadata where Arrow is ambiguous.
pub fn arrow_field(name: &str, t: DataType, nullable: bool) -> Field {
    let field = Field::new(name, arrow_type(t), nullable);
    let pg = match t {
        DataType::Uuid => Some("uuid"),
        DataType::Jsonb => Some("jsonb"),
        DataType::Varchar(_) => Some("varchar"),
        DataType::Char(_) => Some("bpchar"),
        DataType::Array(_) => Some(PgType::from_storage(t).name()),
        _ => None,
    };
    let field = match pg {
        Some(name) => {
            field.with_metadata(HashMap::from([(PG_TYPE_KEY.to_string(), name.to_string())]))
        }
        None => field,
    };
    let own_scale = match t {
        DataType::Array(elem) => is_unconstrained_numeric(elem.scalar()),
        t => is_unconstrained_numeric(t),
    };
    if own_scale {
        crate::numeric_display::mark(field)
    } else {
        field
    }
}

/// Unconstrained `numeric`, which storage holds as `numeric(38, 16)` (ddl/mod.rs).
pub fn is_unconstrained_numeric(t: DataType) -> bool {
    t == DataType::Numeric {
        precision: 38,
        scale: 16,
    }
}

/// pg_attribute.atttypmod of a stored column (-1 where none); an array's is its element's.
pub fn type_modifier(t: DataType) -> i32 {
    match t {
        DataType::Array(elem) => type_modifier(elem.scalar()),
        DataType::Varchar(Some(n)) | DataType::Char(n) => {
            i32::try_from(n).unwrap_or(i32::MAX - 4) + 4
        }
        DataType::Numeric { precision, scale } if !is_unconstrained_numeric(t) => {
            ((i32::from(precision) << 16) | i32::from(scale as u8)) + 4
        }
        _ => -1,
    }
}

/// A Utf8 field tagged with a PostgreSQL type, for function results such as `->` (jsonb).
pub fn tagged_utf8_field(name: &str, pg: PgType) -> Arc<Field> {
    tagged_field(name, ArrowType::Utf8, pg)
}

/// A field of Arrow type `t` tagged with a PostgreSQL type (`regtype` held as an `Int64` oid).
pub fn tagged_field(name: &str, t: ArrowType, pg: PgType) -> Arc<Field> {
    Arc::new(Field::new(name, t, true).with_metadata(HashMap::from([(
        PG_TYPE_KEY.to_string(),
        pg.name().to_string(),
    )])))
}

/// The text form of a `regtype` value: the type's SQL name, or the number for an unknown oid.
pub fn regtype_name(oid: u32) -> String {
    crate::pg_catalog::regtype_name(oid)
}

/// SQL spelling of a stored type, as `format_type` and `information_schema` show it.
pub fn sql_type_name(t: DataType) -> String {
    match t {
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "integer".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Numeric { .. } if is_unconstrained_numeric(t) => "numeric".into(),
        DataType::Numeric { precision, scale } => format!("numeric({precision},{scale})"),
        DataType::Text => "text".into(),
        DataType::Varchar(Some(n)) => format!("character varying({n})"),
        DataType::Varchar(None) => "character varying".into(),
        DataType::Char(n) => format!("character({n})"),
        DataType::Bool => "boolean".into(),
        DataType::Bytea => "bytea".into(),
        DataType::Date => "date".into(),
        DataType::Timestamp => "timestamp without time zone".into(),
        DataType::TimestampTz => "timestamp with time zone".into(),
        DataType::Uuid => "uuid".into(),
        DataType::Jsonb => "jsonb".into(),
        DataType::Array(elem) => format!("{}[]", sql_type_name(elem.scalar())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_round_trip() {
        for t in PgType::ALL {
            assert_eq!(PgType::from_oid(t.oid()), Some(t), "{t:?}");
        }
    }

    #[test]
    fn storage_types_report_their_pg_type_through_arrow() {
        for (t, pg) in [
            (DataType::Uuid, PgType::Uuid),
            (DataType::Jsonb, PgType::Jsonb),
            (DataType::Varchar(Some(3)), PgType::Varchar),
            (DataType::Int32, PgType::Int4),
            (
                DataType::Numeric {
                    precision: 10,
                    scale: 2,
                },
                PgType::Numeric,
            ),
            (DataType::TimestampTz, PgType::TimestampTz),
        ] {
            assert_eq!(PgType::from_field(&arrow_field("c", t, true)), pg);
        }
    }
}
