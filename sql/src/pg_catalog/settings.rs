//! pg_settings: the session's parameters (as the session last reported them to the catalog,
//! else their defaults).

use super::model::Model;
use super::table::{Col, Row, TableDef};
use crate::pg_row;

pub const PG_SETTINGS: TableDef = TableDef {
    name: "pg_settings",
    columns: &[
        ("name", Col::Text),
        ("setting", Col::Text),
        ("unit", Col::Text),
        ("category", Col::Text),
        ("short_desc", Col::Text),
        ("extra_desc", Col::Text),
        ("context", Col::Text),
        ("vartype", Col::Text),
        ("source", Col::Text),
        ("min_val", Col::Text),
        ("max_val", Col::Text),
        ("enumvals", Col::TextArray),
        ("boot_val", Col::Text),
        ("reset_val", Col::Text),
        ("sourcefile", Col::Text),
        ("sourceline", Col::Int4),
        ("pending_restart", Col::Bool),
    ],
    rows,
};

fn vartype(name: &str, value: &str) -> &'static str {
    if matches!(value, "on" | "off") {
        "bool"
    } else if name.ends_with("timeout") || value.parse::<i64>().is_ok() {
        "integer"
    } else {
        "string"
    }
}

fn rows(m: &Model) -> Vec<Row> {
    let mut settings = m.settings.clone();
    settings.sort_by_key(|(n, _)| n.to_ascii_lowercase());
    settings
        .iter()
        .map(|(name, value)| {
            let unit = (name.ends_with("timeout")).then_some("ms");
            let context = if matches!(
                name.as_str(),
                "server_version" | "server_version_num" | "server_encoding"
            ) {
                "internal"
            } else {
                "user"
            };
            let mut row = pg_row![
                name.as_str(),
                value.as_str(),
                unit,
                "Weft",
                "",
                None::<String>,
                context,
                vartype(name, value),
                "default",
                None::<String>,
                None::<String>,
                None::<String>,
            ];
            row.extend(pg_row![
                value.as_str(),
                value.as_str(),
                None::<String>,
                None::<i32>,
                false
            ]);
            row
        })
        .collect()
}
