//! information_schema.columns, with PostgreSQL's type spellings and size columns.

use super::info_schema::{relations, yes_no};
use super::model::{Attribute, Model, RelKind};
use super::table::{Col, Row, TableDef};
use super::types::{self, information_schema_name};
use super::views::namespace_name;
use crate::pg_row;

pub const COLUMNS: TableDef = TableDef {
    name: "columns",
    columns: &[
        ("table_catalog", Col::Name),
        ("table_schema", Col::Name),
        ("table_name", Col::Name),
        ("column_name", Col::Name),
        ("ordinal_position", Col::Int4),
        ("column_default", Col::Varchar),
        ("is_nullable", Col::Varchar),
        ("data_type", Col::Varchar),
        ("character_maximum_length", Col::Int4),
        ("character_octet_length", Col::Int4),
        ("numeric_precision", Col::Int4),
        ("numeric_precision_radix", Col::Int4),
        ("numeric_scale", Col::Int4),
        ("datetime_precision", Col::Int4),
        ("interval_type", Col::Varchar),
        ("interval_precision", Col::Int4),
        ("character_set_catalog", Col::Name),
        ("character_set_schema", Col::Name),
        ("character_set_name", Col::Name),
        ("collation_catalog", Col::Name),
        ("collation_schema", Col::Name),
        ("collation_name", Col::Name),
        ("domain_catalog", Col::Name),
        ("domain_schema", Col::Name),
        ("domain_name", Col::Name),
        ("udt_catalog", Col::Name),
        ("udt_schema", Col::Name),
        ("udt_name", Col::Name),
        ("scope_catalog", Col::Name),
        ("scope_schema", Col::Name),
        ("scope_name", Col::Name),
        ("maximum_cardinality", Col::Int4),
        ("dtd_identifier", Col::Name),
        ("is_self_referencing", Col::Varchar),
        ("is_identity", Col::Varchar),
        ("identity_generation", Col::Varchar),
        ("identity_start", Col::Varchar),
        ("identity_increment", Col::Varchar),
        ("identity_maximum", Col::Varchar),
        ("identity_minimum", Col::Varchar),
        ("identity_cycle", Col::Varchar),
        ("is_generated", Col::Varchar),
        ("generation_expression", Col::Varchar),
        ("is_updatable", Col::Varchar),
    ],
    rows,
};

/// The size columns: (character_maximum_length, character_octet_length, numeric_precision,
/// numeric_precision_radix, numeric_scale, datetime_precision).
type Sizes = (
    Option<i32>,
    Option<i32>,
    Option<i32>,
    Option<i32>,
    Option<i32>,
    Option<i32>,
);

fn sizes(a: &Attribute) -> Sizes {
    let modifier = (a.typmod >= 4).then_some(a.typmod - 4);
    match a.type_oid {
        21 => (None, None, Some(16), Some(2), Some(0), None),
        23 => (None, None, Some(32), Some(2), Some(0), None),
        20 => (None, None, Some(64), Some(2), Some(0), None),
        700 => (None, None, Some(24), Some(2), None, None),
        701 => (None, None, Some(53), Some(2), None, None),
        1700 => (
            None,
            None,
            modifier.map(|m| (m >> 16) & 0xffff),
            Some(10),
            modifier.map(|m| m & 0xffff),
            None,
        ),
        // Text types: PostgreSQL's maximum octet length is 1 GB; four bytes per character in UTF8.
        25 | 1043 | 1042 => match modifier {
            Some(n) => (Some(n), Some(n.saturating_mul(4)), None, None, None, None),
            None => (None, Some(1_073_741_824), None, None, None, None),
        },
        1082 => (None, None, None, None, None, Some(0)),
        1083 | 1114 | 1184 | 1186 => (
            None,
            None,
            None,
            None,
            None,
            Some(if a.typmod >= 0 { a.typmod } else { 6 }),
        ),
        _ => (None, None, None, None, None, None),
    }
}

fn rows(m: &Model) -> Vec<Row> {
    let mut out = Vec::new();
    for r in relations(m) {
        let schema = namespace_name(r.namespace);
        for a in &r.columns {
            let (max_len, octets, precision, radix, scale, dt_precision) = sizes(a);
            let udt = types::by_oid(a.type_oid).map_or("unknown", |t| t.name);
            let mut row = pg_row![
                m.database.as_str(),
                schema,
                r.name.as_str(),
                a.name.as_str(),
                a.num,
                a.default.clone(),
                yes_no(!a.not_null),
                information_schema_name(a.type_oid),
                max_len,
                octets,
                precision,
                radix,
                scale,
                dt_precision,
                None::<String>,
                None::<i32>,
            ];
            row.extend(pg_row![
                None::<String>,
                None::<String>,
                None::<String>,
                None::<String>,
                None::<String>,
                None::<String>,
                None::<String>,
                None::<String>,
                None::<String>,
                m.database.as_str(),
                "pg_catalog",
                udt,
                None::<String>,
                None::<String>,
                None::<String>,
                None::<i32>,
                a.num.to_string(),
                "NO",
                "NO",
            ]);
            row.extend(pg_row![
                None::<String>,
                None::<String>,
                None::<String>,
                None::<String>,
                None::<String>,
                "NO",
                "NEVER",
                None::<String>,
                yes_no(r.kind == RelKind::Table),
            ]);
            out.push(row);
        }
    }
    out
}
