//! pg_attribute (the columns of every relation, index columns included) and pg_attrdef (column
//! defaults, whose `adbin` holds the expression as SQL text for `pg_get_expr`).

use super::model::Model;
use super::oids::{default_oid, DEFAULT_COLLATION};
use super::table::{Col, Row, TableDef};
use super::types;
use crate::pg_row;

pub const PG_ATTRIBUTE: TableDef = TableDef {
    name: "pg_attribute",
    columns: &[
        ("attrelid", Col::Oid),
        ("attname", Col::Name),
        ("atttypid", Col::Oid),
        ("attstattarget", Col::Int4),
        ("attlen", Col::Int2),
        ("attnum", Col::Int2),
        ("attndims", Col::Int4),
        ("attcacheoff", Col::Int4),
        ("atttypmod", Col::Int4),
        ("attbyval", Col::Bool),
        ("attalign", Col::Char),
        ("attstorage", Col::Char),
        ("attcompression", Col::Char),
        ("attnotnull", Col::Bool),
        ("atthasdef", Col::Bool),
        ("atthasmissing", Col::Bool),
        ("attidentity", Col::Char),
        ("attgenerated", Col::Char),
        ("attisdropped", Col::Bool),
        ("attislocal", Col::Bool),
        ("attinhcount", Col::Int4),
        ("attcollation", Col::Oid),
        ("attacl", Col::TextArray),
        ("attoptions", Col::TextArray),
        ("attfdwoptions", Col::TextArray),
        ("attmissingval", Col::TextArray),
    ],
    rows: attributes,
};

fn attributes(m: &Model) -> Vec<Row> {
    let mut out = Vec::new();
    for r in &m.relations {
        for a in &r.columns {
            let ti = types::by_oid(a.type_oid);
            let len = ti.map_or(-1, |t| t.len);
            let collation = if ti.is_some_and(|t| t.collatable) {
                DEFAULT_COLLATION
            } else {
                0
            };
            let ndims = i32::from(ti.is_some_and(|t| t.category == 'A'));
            let mut row = pg_row![
                r.oid,
                a.name.as_str(),
                a.type_oid,
                -1i32,
                len,
                a.num,
                ndims,
                -1i32,
                a.typmod,
                matches!(len, 1 | 2 | 4 | 8),
                ti.map_or('i', |t| t.align),
                ti.map_or('x', |t| t.storage),
                "",
                a.not_null,
                a.default.is_some(),
            ];
            row.extend(pg_row![
                false,
                "",
                "",
                false,
                true,
                0i32,
                collation,
                None::<String>,
                None::<String>,
                None::<String>,
                None::<String>,
            ]);
            out.push(row);
        }
    }
    out
}

pub const PG_ATTRDEF: TableDef = TableDef {
    name: "pg_attrdef",
    columns: &[
        ("oid", Col::Oid),
        ("adrelid", Col::Oid),
        ("adnum", Col::Int2),
        ("adbin", Col::Text),
    ],
    rows: defaults,
};

fn defaults(m: &Model) -> Vec<Row> {
    m.user_relations()
        .flat_map(|r| {
            r.columns.iter().filter_map(move |a| {
                let d = a.default.as_deref()?;
                Some(pg_row![default_oid(r.oid, a.num), r.oid, a.num, d])
            })
        })
        .collect()
}
