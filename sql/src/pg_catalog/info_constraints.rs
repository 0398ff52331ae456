//! information_schema's constraint views: table_constraints, key_column_usage, check_constraints,
//! constraint_column_usage, referential_constraints (empty: Weft has no foreign keys).
//!
//! As in PostgreSQL 15, NOT NULL columns appear as CHECK constraints named
//! `<namespace oid>_<table oid>_<attnum>_not_null`.

use super::model::{Constraint, Model, RelKind};
use super::oids::PUBLIC_NAMESPACE;
use super::table::{no_rows, Col, Row, TableDef};
use crate::pg_row;

/// One constraint as these views show it.
struct Info<'a> {
    name: String,
    /// constraint_type: PRIMARY KEY, UNIQUE or CHECK.
    kind: &'static str,
    table: &'a str,
    columns: Vec<&'a str>,
    clause: Option<String>,
}

fn all(m: &Model) -> Vec<Info<'_>> {
    let mut out = Vec::new();
    for r in m.user_relations().filter(|r| r.kind == RelKind::Table) {
        let names = |c: &Constraint| -> Vec<&str> {
            c.keys
                .iter()
                .filter_map(|k| {
                    r.columns
                        .iter()
                        .find(|a| a.num == *k)
                        .map(|a| a.name.as_str())
                })
                .collect()
        };
        for c in m.constraints.iter().filter(|c| c.table_oid == r.oid) {
            let kind = match c.kind {
                'p' => "PRIMARY KEY",
                'u' => "UNIQUE",
                _ => "CHECK",
            };
            out.push(Info {
                name: c.name.clone(),
                kind,
                table: &r.name,
                columns: names(c),
                // PostgreSQL deparses a check's expression with two sets of parentheses.
                clause: c.check.as_ref().map(|e| format!("(({e}))")),
            });
        }
        for a in r.columns.iter().filter(|a| a.not_null) {
            out.push(Info {
                name: format!("{PUBLIC_NAMESPACE}_{}_{}_not_null", r.oid, a.num),
                kind: "CHECK",
                table: &r.name,
                columns: vec![a.name.as_str()],
                clause: Some(format!("{} IS NOT NULL", a.name)),
            });
        }
    }
    out
}

pub const TABLE_CONSTRAINTS: TableDef = TableDef {
    name: "table_constraints",
    columns: &[
        ("constraint_catalog", Col::Name),
        ("constraint_schema", Col::Name),
        ("constraint_name", Col::Name),
        ("table_catalog", Col::Name),
        ("table_schema", Col::Name),
        ("table_name", Col::Name),
        ("constraint_type", Col::Varchar),
        ("is_deferrable", Col::Varchar),
        ("initially_deferred", Col::Varchar),
        ("enforced", Col::Varchar),
        ("nulls_distinct", Col::Varchar),
    ],
    rows: table_constraints,
};

fn table_constraints(m: &Model) -> Vec<Row> {
    let db = m.database.as_str();
    all(m)
        .into_iter()
        .map(|c| {
            let nulls_distinct = (c.kind == "UNIQUE" || c.kind == "PRIMARY KEY").then_some("YES");
            pg_row![
                db,
                "public",
                c.name,
                db,
                "public",
                c.table,
                c.kind,
                "NO",
                "NO",
                "YES",
                nulls_distinct
            ]
        })
        .collect()
}

pub const KEY_COLUMN_USAGE: TableDef = TableDef {
    name: "key_column_usage",
    columns: &[
        ("constraint_catalog", Col::Name),
        ("constraint_schema", Col::Name),
        ("constraint_name", Col::Name),
        ("table_catalog", Col::Name),
        ("table_schema", Col::Name),
        ("table_name", Col::Name),
        ("column_name", Col::Name),
        ("ordinal_position", Col::Int4),
        ("position_in_unique_constraint", Col::Int4),
    ],
    rows: key_column_usage,
};

fn key_column_usage(m: &Model) -> Vec<Row> {
    let db = m.database.as_str();
    let mut out = Vec::new();
    for c in all(m).into_iter().filter(|c| c.kind != "CHECK") {
        for (i, col) in c.columns.iter().enumerate() {
            out.push(pg_row![
                db,
                "public",
                c.name.as_str(),
                db,
                "public",
                c.table,
                *col,
                i + 1,
                None::<i32>
            ]);
        }
    }
    out
}

pub const CHECK_CONSTRAINTS: TableDef = TableDef {
    name: "check_constraints",
    columns: &[
        ("constraint_catalog", Col::Name),
        ("constraint_schema", Col::Name),
        ("constraint_name", Col::Name),
        ("check_clause", Col::Varchar),
    ],
    rows: check_constraints,
};

fn check_constraints(m: &Model) -> Vec<Row> {
    let db = m.database.as_str();
    all(m)
        .into_iter()
        .filter(|c| c.kind == "CHECK")
        .map(|c| pg_row![db, "public", c.name, c.clause])
        .collect()
}

pub const CONSTRAINT_COLUMN_USAGE: TableDef = TableDef {
    name: "constraint_column_usage",
    columns: &[
        ("table_catalog", Col::Name),
        ("table_schema", Col::Name),
        ("table_name", Col::Name),
        ("column_name", Col::Name),
        ("constraint_catalog", Col::Name),
        ("constraint_schema", Col::Name),
        ("constraint_name", Col::Name),
    ],
    rows: constraint_column_usage,
};

fn constraint_column_usage(m: &Model) -> Vec<Row> {
    let db = m.database.as_str();
    let mut out = Vec::new();
    // PostgreSQL lists the columns of primary keys and unique constraints here (check
    // constraints only by the columns their expression uses, which Weft does not track).
    for c in all(m).into_iter().filter(|c| c.kind != "CHECK") {
        for col in &c.columns {
            out.push(pg_row![
                db,
                "public",
                c.table,
                *col,
                db,
                "public",
                c.name.as_str()
            ]);
        }
    }
    out
}

pub const REFERENTIAL_CONSTRAINTS: TableDef = TableDef {
    name: "referential_constraints",
    columns: &[
        ("constraint_catalog", Col::Name),
        ("constraint_schema", Col::Name),
        ("constraint_name", Col::Name),
        ("unique_constraint_catalog", Col::Name),
        ("unique_constraint_schema", Col::Name),
        ("unique_constraint_name", Col::Name),
        ("match_option", Col::Varchar),
        ("update_rule", Col::Varchar),
        ("delete_rule", Col::Varchar),
    ],
    rows: no_rows,
};
