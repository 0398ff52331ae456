//! pg_constraint: primary keys (`p`), unique constraints (`u`), checks (`c`) and foreign keys
//! (`f`).

use super::model::Model;
use super::oids::PUBLIC_NAMESPACE;
use super::table::{Cell, Col, Row, TableDef};
use crate::pg_row;

pub const PG_CONSTRAINT: TableDef = TableDef {
    name: "pg_constraint",
    columns: &[
        ("oid", Col::Oid),
        ("conname", Col::Name),
        ("connamespace", Col::Oid),
        ("contype", Col::Char),
        ("condeferrable", Col::Bool),
        ("condeferred", Col::Bool),
        ("convalidated", Col::Bool),
        ("conrelid", Col::Oid),
        ("contypid", Col::Oid),
        ("conindid", Col::Oid),
        ("conparentid", Col::Oid),
        ("confrelid", Col::Oid),
        ("confupdtype", Col::Char),
        ("confdeltype", Col::Char),
        ("confmatchtype", Col::Char),
        ("conislocal", Col::Bool),
        ("coninhcount", Col::Int4),
        ("connoinherit", Col::Bool),
        ("conkey", Col::Int2Array),
        ("confkey", Col::Int2Array),
        ("conpfeqop", Col::OidArray),
        ("conppeqop", Col::OidArray),
        ("conffeqop", Col::OidArray),
        ("confdelsetcols", Col::Int2Array),
        ("conexclop", Col::OidArray),
        ("conbin", Col::Text),
    ],
    rows,
};

fn rows(m: &Model) -> Vec<Row> {
    m.constraints
        .iter()
        .map(|c| {
            let mut row = pg_row![
                c.oid,
                c.name.as_str(),
                PUBLIC_NAMESPACE,
                c.kind,
                c.foreign.as_ref().is_some_and(|f| f.deferrable),
                c.foreign.as_ref().is_some_and(|f| f.deferred),
                true,
                c.table_oid,
                0u32,
                c.index_oid,
                0u32,
                c.foreign.as_ref().map_or(0u32, |f| f.table_oid),
                c.foreign.as_ref().map_or(' ', |f| f.on_update),
                c.foreign.as_ref().map_or(' ', |f| f.on_delete),
                if c.foreign.is_some() { 's' } else { ' ' },
                true,
                0i32,
                c.kind == 'c',
            ];
            let keys = if c.keys.is_empty() {
                Cell::Null
            } else {
                Cell::Ints(c.keys.iter().map(|k| i64::from(*k)).collect())
            };
            let ref_keys = match &c.foreign {
                Some(f) => Cell::Ints(f.keys.iter().map(|k| i64::from(*k)).collect()),
                None => Cell::Null,
            };
            row.extend([
                keys,
                ref_keys,
                Cell::Null,
                Cell::Null,
                Cell::Null,
                Cell::Null,
            ]);
            row.push(Cell::from(c.check.clone()));
            row
        })
        .collect()
}
