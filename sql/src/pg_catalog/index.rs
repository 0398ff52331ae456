//! pg_index: one row per index, the primary key's included.

use super::model::Model;
use super::oids::DEFAULT_COLLATION;
use super::table::{Cell, Col, Row, TableDef};
use super::{describe, types};
use crate::pg_row;

pub const PG_INDEX: TableDef = TableDef {
    name: "pg_index",
    columns: &[
        ("indexrelid", Col::Oid),
        ("indrelid", Col::Oid),
        ("indnatts", Col::Int2),
        ("indnkeyatts", Col::Int2),
        ("indisunique", Col::Bool),
        ("indnullsnotdistinct", Col::Bool),
        ("indisprimary", Col::Bool),
        ("indisexclusion", Col::Bool),
        ("indimmediate", Col::Bool),
        ("indisclustered", Col::Bool),
        ("indisvalid", Col::Bool),
        ("indcheckxmin", Col::Bool),
        ("indisready", Col::Bool),
        ("indislive", Col::Bool),
        ("indisreplident", Col::Bool),
        ("indkey", Col::Int2Vector),
        ("indcollation", Col::OidVector),
        ("indclass", Col::OidVector),
        ("indoption", Col::Int2Vector),
        ("indexprs", Col::Text),
        ("indpred", Col::Text),
    ],
    rows,
};

fn rows(m: &Model) -> Vec<Row> {
    m.relations
        .iter()
        .filter_map(|r| {
            let ix = r.index.as_ref()?;
            let collations: Vec<i64> = r
                .columns
                .iter()
                .map(|a| {
                    if types::by_oid(a.type_oid).is_some_and(|t| t.collatable) {
                        i64::from(DEFAULT_COLLATION)
                    } else {
                        0
                    }
                })
                .collect();
            let n = ix.keys.len();
            let mut row = pg_row![
                r.oid,
                ix.table_oid,
                n,
                n,
                ix.unique,
                false,
                ix.primary,
                false,
                true,
                false,
                true,
                false,
                true,
                true,
                false,
            ];
            row.extend([
                Cell::Ints(ix.keys.iter().map(|k| i64::from(*k)).collect()),
                Cell::Ints(collations),
                Cell::Ints(vec![0; n]),
                Cell::Ints(vec![0; n]),
                Cell::Null,
                // Read back by pg_get_expr (SQLAlchemy's postgresql_where).
                describe::predicate_sql(ix, false).map_or(Cell::Null, Cell::Text),
            ]);
            Some(row)
        })
        .collect()
}
