//! The convenience views over pg_class: pg_tables, pg_views, pg_indexes.

use super::describe;
use super::model::{Model, RelKind, Relation};
use super::oids;
use super::table::{Col, Row, TableDef};
use crate::pg_row;

pub fn namespace_name(oid: u32) -> &'static str {
    match oid {
        oids::PG_CATALOG_NAMESPACE => "pg_catalog",
        oids::INFORMATION_SCHEMA_NAMESPACE => "information_schema",
        oids::PG_TOAST_NAMESPACE => "pg_toast",
        _ => "public",
    }
}

fn of_kind(m: &Model, kind: RelKind) -> impl Iterator<Item = &Relation> {
    m.relations.iter().filter(move |r| r.kind == kind)
}

pub const PG_TABLES: TableDef = TableDef {
    name: "pg_tables",
    columns: &[
        ("schemaname", Col::Name),
        ("tablename", Col::Name),
        ("tableowner", Col::Name),
        ("tablespace", Col::Name),
        ("hasindexes", Col::Bool),
        ("hasrules", Col::Bool),
        ("hastriggers", Col::Bool),
        ("rowsecurity", Col::Bool),
    ],
    rows: tables,
};

fn tables(m: &Model) -> Vec<Row> {
    of_kind(m, RelKind::Table)
        .map(|r| {
            pg_row![
                namespace_name(r.namespace),
                r.name.as_str(),
                m.user.as_str(),
                None::<String>,
                r.has_index,
                false,
                false,
                false
            ]
        })
        .collect()
}

pub const PG_VIEWS: TableDef = TableDef {
    name: "pg_views",
    columns: &[
        ("schemaname", Col::Name),
        ("viewname", Col::Name),
        ("viewowner", Col::Name),
        ("definition", Col::Text),
    ],
    rows: views,
};

fn views(m: &Model) -> Vec<Row> {
    of_kind(m, RelKind::View)
        .map(|r| {
            pg_row![
                namespace_name(r.namespace),
                r.name.as_str(),
                m.user.as_str(),
                describe::view_def(m, r.oid)
            ]
        })
        .collect()
}

pub const PG_INDEXES: TableDef = TableDef {
    name: "pg_indexes",
    columns: &[
        ("schemaname", Col::Name),
        ("tablename", Col::Name),
        ("indexname", Col::Name),
        ("tablespace", Col::Name),
        ("indexdef", Col::Text),
    ],
    rows: indexes,
};

fn indexes(m: &Model) -> Vec<Row> {
    of_kind(m, RelKind::Index)
        .filter_map(|r| {
            let table = m.relation(r.index.as_ref()?.table_oid)?;
            Some(pg_row![
                namespace_name(r.namespace),
                table.name.as_str(),
                r.name.as_str(),
                None::<String>,
                describe::index_def(m, r.oid, 0, false)
            ])
        })
        .collect()
}
