//! pg_class: tables (`r`), views (`v`), indexes (`i`, primary keys included as `<table>_pkey`),
//! and the system catalogs themselves.

use super::model::{Model, RelKind};
use super::oids::{BTREE_AM, HEAP_AM, SUPERUSER_ROLE};
use super::table::{Cell, Col, Row, TableDef};
use crate::pg_row;

pub const PG_CLASS: TableDef = TableDef {
    name: "pg_class",
    columns: &[
        ("oid", Col::Oid),
        ("relname", Col::Name),
        ("relnamespace", Col::Oid),
        ("reltype", Col::Oid),
        ("reloftype", Col::Oid),
        ("relowner", Col::Oid),
        ("relam", Col::Oid),
        ("relfilenode", Col::Oid),
        ("reltablespace", Col::Oid),
        ("relpages", Col::Int4),
        ("reltuples", Col::Float4),
        ("relallvisible", Col::Int4),
        ("reltoastrelid", Col::Oid),
        ("relhasindex", Col::Bool),
        ("relisshared", Col::Bool),
        ("relpersistence", Col::Char),
        ("relkind", Col::Char),
        ("relnatts", Col::Int2),
        ("relchecks", Col::Int2),
        ("relhasrules", Col::Bool),
        ("relhastriggers", Col::Bool),
        ("relhassubclass", Col::Bool),
        ("relrowsecurity", Col::Bool),
        ("relforcerowsecurity", Col::Bool),
        ("relispopulated", Col::Bool),
        ("relreplident", Col::Char),
        ("relispartition", Col::Bool),
        ("relrewrite", Col::Oid),
        ("relfrozenxid", Col::Int8),
        ("relminmxid", Col::Int8),
        ("relacl", Col::TextArray),
        ("reloptions", Col::TextArray),
        ("relpartbound", Col::Text),
    ],
    rows,
};

fn rows(m: &Model) -> Vec<Row> {
    m.relations
        .iter()
        .map(|r| {
            let am = match r.kind {
                RelKind::Table => HEAP_AM,
                RelKind::Index => BTREE_AM,
                RelKind::View | RelKind::Sequence => 0,
            };
            let replident = if r.kind == RelKind::Table { 'd' } else { 'n' };
            let filenode = if r.kind == RelKind::View { 0 } else { r.oid };
            let mut row = pg_row![
                r.oid,
                r.name.as_str(),
                r.namespace,
                0u32,
                0u32,
                SUPERUSER_ROLE,
                am,
                filenode,
                0u32,
                0i32,
                Cell::Float(-1.0),
                0i32,
                0u32,
                r.has_index,
                false,
                'p',
                r.kind.relkind(),
                r.columns.len(),
                r.checks,
            ];
            // Foreign keys are triggers in PostgreSQL: psql lists them only when this is set.
            let triggers = m.constraints.iter().any(|c| {
                c.foreign
                    .as_ref()
                    .is_some_and(|f| c.table_oid == r.oid || f.table_oid == r.oid)
            });
            row.extend(pg_row![
                false,
                triggers,
                false,
                false,
                false,
                true,
                replident,
                false,
                0u32,
                0i64,
                0i64,
                None::<String>,
                None::<String>,
                None::<String>,
            ]);
            row
        })
        .collect()
}
