//! information_schema: schemata, tables, views. Column types follow PostgreSQL's domains by their
//! base types (sql_identifier is name, character_data and yes_or_no are varchar, cardinal_number
//! is integer), which is what PostgreSQL sends in RowDescription.

use super::describe;
use super::model::{Model, RelKind, Relation};
use super::table::{Col, Row, TableDef};
use super::views::namespace_name;
use crate::pg_row;

pub(super) fn yes_no(b: bool) -> &'static str {
    if b {
        "YES"
    } else {
        "NO"
    }
}

/// Tables and views (not indexes) in the schemas information_schema shows.
pub(super) fn relations(m: &Model) -> impl Iterator<Item = &Relation> {
    m.relations
        .iter()
        .filter(|r| matches!(r.kind, RelKind::Table | RelKind::View))
}

pub const SCHEMATA: TableDef = TableDef {
    name: "schemata",
    columns: &[
        ("catalog_name", Col::Name),
        ("schema_name", Col::Name),
        ("schema_owner", Col::Name),
        ("default_character_set_catalog", Col::Name),
        ("default_character_set_schema", Col::Name),
        ("default_character_set_name", Col::Name),
        ("sql_path", Col::Varchar),
    ],
    rows: schemata,
};

fn schemata(m: &Model) -> Vec<Row> {
    let owner = |s: &str| {
        if s == "public" {
            "pg_database_owner".to_string()
        } else {
            m.user.clone()
        }
    };
    ["pg_catalog", "public", "pg_toast", "information_schema"]
        .iter()
        .map(|s| {
            pg_row![
                m.database.as_str(),
                *s,
                owner(s),
                None::<String>,
                None::<String>,
                None::<String>,
                None::<String>
            ]
        })
        .collect()
}

pub const TABLES: TableDef = TableDef {
    name: "tables",
    columns: &[
        ("table_catalog", Col::Name),
        ("table_schema", Col::Name),
        ("table_name", Col::Name),
        ("table_type", Col::Varchar),
        ("self_referencing_column_name", Col::Name),
        ("reference_generation", Col::Varchar),
        ("user_defined_type_catalog", Col::Name),
        ("user_defined_type_schema", Col::Name),
        ("user_defined_type_name", Col::Name),
        ("is_insertable_into", Col::Varchar),
        ("is_typed", Col::Varchar),
        ("commit_action", Col::Varchar),
    ],
    rows: tables,
};

fn tables(m: &Model) -> Vec<Row> {
    relations(m)
        .map(|r| {
            let table = r.kind == RelKind::Table;
            let mut row = pg_row![
                m.database.as_str(),
                namespace_name(r.namespace),
                r.name.as_str(),
                if table { "BASE TABLE" } else { "VIEW" },
                None::<String>,
                None::<String>,
            ];
            row.extend(pg_row![
                None::<String>,
                None::<String>,
                None::<String>,
                yes_no(table),
                "NO",
                None::<String>
            ]);
            row
        })
        .collect()
}

pub const VIEWS: TableDef = TableDef {
    name: "views",
    columns: &[
        ("table_catalog", Col::Name),
        ("table_schema", Col::Name),
        ("table_name", Col::Name),
        ("view_definition", Col::Varchar),
        ("check_option", Col::Varchar),
        ("is_updatable", Col::Varchar),
        ("is_insertable_into", Col::Varchar),
        ("is_trigger_updatable", Col::Varchar),
        ("is_trigger_deletable", Col::Varchar),
        ("is_trigger_insertable_into", Col::Varchar),
    ],
    rows: views,
};

fn views(m: &Model) -> Vec<Row> {
    relations(m)
        .filter(|r| r.kind == RelKind::View)
        .map(|r| {
            pg_row![
                m.database.as_str(),
                namespace_name(r.namespace),
                r.name.as_str(),
                describe::view_def(m, r.oid),
                "NONE",
                "NO",
                "NO",
                "NO",
                "NO",
                "NO",
            ]
        })
        .collect()
}
