//! pg_proc, minimal: one row per function a session can call, with a name and a kind but no
//! signature (DataFusion's functions are not typed the way PostgreSQL's are).

use super::model::Model;
use super::oids::{PG_CATALOG_NAMESPACE, SUPERUSER_ROLE};
use super::table::{Cell, Col, Row, TableDef};
use crate::pg_row;

/// pg_proc oids are handed out from here in name order; below the first user object id.
const FIRST_PROC_OID: u32 = 8000;

pub const PG_PROC: TableDef = TableDef {
    name: "pg_proc",
    columns: &[
        ("oid", Col::Oid),
        ("proname", Col::Name),
        ("pronamespace", Col::Oid),
        ("proowner", Col::Oid),
        ("prolang", Col::Oid),
        ("procost", Col::Float4),
        ("prorows", Col::Float4),
        ("provariadic", Col::Oid),
        ("prosupport", Col::Text),
        ("prokind", Col::Char),
        ("prosecdef", Col::Bool),
        ("proleakproof", Col::Bool),
        ("proisstrict", Col::Bool),
        ("proretset", Col::Bool),
        ("provolatile", Col::Char),
        ("proparallel", Col::Char),
        ("pronargs", Col::Int2),
        ("pronargdefaults", Col::Int2),
        ("prorettype", Col::Oid),
        ("proargtypes", Col::OidArray),
        ("proallargtypes", Col::OidArray),
        ("proargmodes", Col::CharArray),
        ("proargnames", Col::TextArray),
        ("proargdefaults", Col::Text),
        ("protrftypes", Col::OidArray),
        ("prosrc", Col::Text),
        ("probin", Col::Text),
        ("prosqlbody", Col::Text),
        ("proconfig", Col::TextArray),
        ("proacl", Col::TextArray),
    ],
    rows,
};

/// 12 is `internal`, the language of built-in functions.
const INTERNAL_LANGUAGE: u32 = 12;

fn rows(m: &Model) -> Vec<Row> {
    m.functions
        .iter()
        .enumerate()
        .map(|(i, (name, kind))| {
            let oid = FIRST_PROC_OID + u32::try_from(i).unwrap_or(0);
            let mut row = pg_row![
                oid,
                name.as_str(),
                PG_CATALOG_NAMESPACE,
                SUPERUSER_ROLE,
                INTERNAL_LANGUAGE,
                Cell::Float(1.0),
                Cell::Float(0.0),
                0u32,
                "-",
                *kind,
                false,
                false,
                false,
                false,
                'v',
                's',
                0i16,
                0i16,
                25u32,
            ];
            row.extend([Cell::Ints(Vec::new())]);
            row.extend(pg_row![
                None::<String>,
                None::<String>,
                None::<String>,
                None::<String>,
                None::<String>
            ]);
            row.extend(pg_row![
                name.as_str(),
                None::<String>,
                None::<String>,
                None::<String>,
                None::<String>
            ]);
            row
        })
        .collect()
}

/// The function a pg_proc oid stands for (regproc output).
pub fn proc_name(m: &Model, oid: u32) -> Option<&str> {
    let i = usize::try_from(oid.checked_sub(FIRST_PROC_OID)?).ok()?;
    m.functions.get(i).map(|(n, _)| n.as_str())
}
