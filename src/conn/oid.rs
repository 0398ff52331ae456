//! PostgreSQL type oids the wire codec knows, and the element type of each array type.
//!
//! The codec works on oids rather than on `weft_sql::PgType` so that it can encode whatever oid
//! the SQL layer reports, including array types it adds later.

pub const BOOL: u32 = 16;
pub const BYTEA: u32 = 17;
pub const CHAR: u32 = 18;
pub const NAME: u32 = 19;
pub const INT8: u32 = 20;
pub const INT2: u32 = 21;
pub const INT2VECTOR: u32 = 22;
pub const INT4: u32 = 23;
pub const TEXT: u32 = 25;
pub const OID: u32 = 26;
pub const OIDVECTOR: u32 = 30;
pub const JSON: u32 = 114;
pub const FLOAT4: u32 = 700;
pub const FLOAT8: u32 = 701;
pub const UNKNOWN: u32 = 705;
pub const BPCHAR: u32 = 1042;
pub const VARCHAR: u32 = 1043;
pub const DATE: u32 = 1082;
pub const TIME: u32 = 1083;
pub const TIMESTAMP: u32 = 1114;
pub const TIMESTAMPTZ: u32 = 1184;
pub const INTERVAL: u32 = 1186;
pub const NUMERIC: u32 = 1700;
pub const REGCLASS: u32 = 2205;
pub const REGTYPE: u32 = 2206;
pub const UUID: u32 = 2950;
pub const JSONB: u32 = 3802;

/// (array type oid, element type oid)
const ARRAYS: &[(u32, u32)] = &[
    (1000, BOOL),
    (1001, BYTEA),
    (1002, CHAR),
    (1003, NAME),
    (1005, INT2),
    (1007, INT4),
    (1009, TEXT),
    (1014, BPCHAR),
    (1015, VARCHAR),
    (1016, INT8),
    (1021, FLOAT4),
    (1022, FLOAT8),
    (1028, OID),
    (1115, TIMESTAMP),
    (1182, DATE),
    (1183, TIME),
    (1185, TIMESTAMPTZ),
    (1187, INTERVAL),
    (1231, NUMERIC),
    (199, JSON),
    (2951, UUID),
    (3807, JSONB),
    (INT2VECTOR, INT2),
    (OIDVECTOR, OID),
];

/// The element type of an array type, or `None` for a non-array type.
pub fn array_element(oid: u32) -> Option<u32> {
    ARRAYS.iter().find(|(a, _)| *a == oid).map(|(_, e)| *e)
}

/// The array type whose elements are `oid`.
#[cfg(test)]
pub fn array_of(oid: u32) -> Option<u32> {
    ARRAYS.iter().find(|(_, e)| *e == oid).map(|(a, _)| *a)
}

/// The name PostgreSQL uses for a type in error messages.
pub fn type_name(oid: u32) -> &'static str {
    match oid {
        BOOL => "boolean",
        BYTEA => "bytea",
        CHAR => "\"char\"",
        NAME => "name",
        INT8 => "bigint",
        INT2 => "smallint",
        INT2VECTOR => "int2vector",
        OIDVECTOR => "oidvector",
        INT4 => "integer",
        TEXT => "text",
        OID => "oid",
        JSON => "json",
        FLOAT4 => "real",
        FLOAT8 => "double precision",
        BPCHAR => "character",
        VARCHAR => "character varying",
        DATE => "date",
        TIME => "time without time zone",
        INTERVAL => "interval",
        REGCLASS => "regclass",
        REGTYPE => "regtype",
        TIMESTAMP => "timestamp without time zone",
        TIMESTAMPTZ => "timestamp with time zone",
        NUMERIC => "numeric",
        UUID => "uuid",
        JSONB => "jsonb",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_round_trip() {
        for (array, element) in ARRAYS {
            assert_eq!(array_element(*array), Some(*element));
            if !matches!(*array, INT2VECTOR | OIDVECTOR) {
                assert_eq!(array_of(*element), Some(*array));
            }
        }
        assert_eq!(array_element(INT4), None);
    }
}
