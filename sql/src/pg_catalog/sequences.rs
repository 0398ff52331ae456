//! pg_sequence and pg_sequences: each sequence's definition. `last_value` is NULL: a sequence's
//! value lives in storage and each node hands out its own block of it.

use super::model::Model;
use super::table::{Cell, Col, Row, TableDef};
use super::types::storage_type_oid;
use crate::pg_row;
use weft_storage::DataType;

pub const PG_SEQUENCE: TableDef = TableDef {
    name: "pg_sequence",
    columns: &[
        ("seqrelid", Col::Oid),
        ("seqtypid", Col::Oid),
        ("seqstart", Col::Int8),
        ("seqincrement", Col::Int8),
        ("seqmax", Col::Int8),
        ("seqmin", Col::Int8),
        ("seqcache", Col::Int8),
        ("seqcycle", Col::Bool),
    ],
    rows: |m: &Model| -> Vec<Row> {
        m.sequences
            .iter()
            .map(|(s, _)| {
                pg_row![
                    s.id,
                    storage_type_oid(s.data_type),
                    s.start,
                    s.increment,
                    s.max,
                    s.min,
                    s.cache,
                    s.cycle,
                ]
            })
            .collect()
    },
};

pub const PG_SEQUENCES: TableDef = TableDef {
    name: "pg_sequences",
    columns: &[
        ("schemaname", Col::Name),
        ("sequencename", Col::Name),
        ("sequenceowner", Col::Name),
        ("data_type", Col::Text),
        ("start_value", Col::Int8),
        ("min_value", Col::Int8),
        ("max_value", Col::Int8),
        ("increment_by", Col::Int8),
        ("cycle", Col::Bool),
        ("cache_size", Col::Int8),
        ("last_value", Col::Int8),
    ],
    rows: |m: &Model| -> Vec<Row> {
        m.sequences
            .iter()
            .map(|(s, _)| {
                let type_name = match s.data_type {
                    DataType::Int16 => "smallint",
                    DataType::Int32 => "integer",
                    _ => "bigint",
                };
                let mut row = pg_row![
                    "public",
                    s.name.as_str(),
                    m.user.as_str(),
                    type_name,
                    s.start,
                    s.min,
                    s.max,
                    s.increment,
                    s.cycle,
                    s.cache,
                ];
                row.push(Cell::Null);
                row
            })
            .collect()
    },
};

/// `pg_get_serial_sequence(table, column)`: `public.<sequence>` of a serial or identity column.
pub fn serial_sequence(m: &Model, table: &str, column: &str) -> Option<String> {
    m.sequences.iter().find_map(|(s, owner)| {
        let (t, c) = owner.as_ref()?;
        (t == table && c == column)
            .then(|| format!("public.{}", super::describe::quote_ident(&s.name)))
    })
}
