//! pg_type (the built-in types, which drivers look up by oid), and the empty pg_enum and
//! pg_range that type lookups join (tokio-postgres reads `rngsubtype`).

use super::model::Model;
use super::oids::{DEFAULT_COLLATION, PG_CATALOG_NAMESPACE, SUPERUSER_ROLE};
use super::table::{no_rows, Col, Row, TableDef};
use super::types::{TypeInfo, TYPES};
use crate::pg_row;

pub const PG_TYPE: TableDef = TableDef {
    name: "pg_type",
    columns: &[
        ("oid", Col::Oid),
        ("typname", Col::Name),
        ("typnamespace", Col::Oid),
        ("typowner", Col::Oid),
        ("typlen", Col::Int2),
        ("typbyval", Col::Bool),
        ("typtype", Col::Char),
        ("typcategory", Col::Char),
        ("typispreferred", Col::Bool),
        ("typisdefined", Col::Bool),
        ("typdelim", Col::Char),
        ("typrelid", Col::Oid),
        ("typsubscript", Col::Text),
        ("typelem", Col::Oid),
        ("typarray", Col::Oid),
        ("typinput", Col::Text),
        ("typoutput", Col::Text),
        ("typreceive", Col::Text),
        ("typsend", Col::Text),
        ("typmodin", Col::Text),
        ("typmodout", Col::Text),
        ("typanalyze", Col::Text),
        ("typalign", Col::Char),
        ("typstorage", Col::Char),
        ("typnotnull", Col::Bool),
        ("typbasetype", Col::Oid),
        ("typtypmod", Col::Int4),
        ("typndims", Col::Int4),
        ("typcollation", Col::Oid),
        ("typdefaultbin", Col::Text),
        ("typdefault", Col::Text),
        ("typacl", Col::TextArray),
    ],
    rows,
};

/// The I/O function names PostgreSQL gives a type (regproc output).
fn io(t: &TypeInfo, suffix: &str) -> String {
    if t.elem != 0 {
        return format!("array_{suffix}");
    }
    format!("{}{suffix}", t.name)
}

fn rows(_: &Model) -> Vec<Row> {
    TYPES
        .iter()
        .map(|t| {
            let byval = matches!(t.len, 1 | 2 | 4 | 8);
            let subscript = if t.elem != 0 {
                "array_subscript_handler"
            } else {
                "-"
            };
            let typmod_fns = match t.name {
                "varchar" | "bpchar" => (
                    format!("{}typmodin", t.name),
                    format!("{}typmodout", t.name),
                ),
                "numeric" | "timestamp" | "timestamptz" | "time" | "interval" => (
                    format!("{}typmodin", t.name),
                    format!("{}typmodout", t.name),
                ),
                _ => ("-".to_string(), "-".to_string()),
            };
            let collation = if t.collatable { DEFAULT_COLLATION } else { 0 };
            let mut row = pg_row![
                t.oid,
                t.name,
                PG_CATALOG_NAMESPACE,
                SUPERUSER_ROLE,
                t.len,
                byval,
                t.kind,
                t.category,
                t.preferred,
                true,
                ',',
                0u32,
                subscript,
                t.elem,
                t.array,
                io(t, "in"),
            ];
            row.extend(pg_row![
                io(t, "out"),
                io(t, "recv"),
                io(t, "send"),
                typmod_fns.0,
                typmod_fns.1,
                if t.elem != 0 { "array_typanalyze" } else { "-" },
                t.align,
                t.storage,
                false,
                0u32,
                -1i32,
                0i32,
                collation,
                None::<String>,
                None::<String>,
                None::<String>,
            ]);
            row
        })
        .collect()
}

pub const PG_ENUM: TableDef = TableDef {
    name: "pg_enum",
    columns: &[
        ("oid", Col::Oid),
        ("enumtypid", Col::Oid),
        ("enumsortorder", Col::Float4),
        ("enumlabel", Col::Name),
    ],
    rows: no_rows,
};

pub const PG_RANGE: TableDef = TableDef {
    name: "pg_range",
    columns: &[
        ("rngtypid", Col::Oid),
        ("rngsubtype", Col::Oid),
        ("rngmultitypid", Col::Oid),
        ("rngcollation", Col::Oid),
        ("rngsubopc", Col::Oid),
        ("rngcanonical", Col::Text),
        ("rngsubdiff", Col::Text),
    ],
    rows: no_rows,
};
