//! `ALTER TABLE t ADD [CONSTRAINT name] PRIMARY KEY (cols)` on a table created without one (as
//! pg_dump writes every table): the key columns become NOT NULL, the hidden row id goes, and
//! every row is rewritten under its new key.
//!
//! ```text
//!   refuse a second primary key (42P16); the key's columns must exist (42703)
//!   rows read --> a NULL in a key column: 23502; the hidden row id dropped from each row
//!   Txn::rewrite_table (a duplicate key: 23505, "could not create unique index")
//!   index and key positions after the row id shift down by one
//! ```

use datafusion::sql::sqlparser::ast;
use weft_storage::{CatalogEntry, Row, TableDef, Txn};

use super::alter::{column_position, for_each_row};
use super::ident;
use super::index::relation_name_taken;
use crate::error::{Error, ErrorObject, Result};

pub(super) fn add(
    txn: &mut Txn,
    mut def: TableDef,
    pk: &ast::PrimaryKeyConstraint,
) -> Result<TableDef> {
    let hidden = match def.primary_key.as_slice() {
        [p] if def.columns.get(*p).is_some_and(|c| c.hidden) => *p,
        _ => {
            return Err(Error::Detailed {
                code: "42P16",
                message: format!(
                    "multiple primary keys for table \"{}\" are not allowed",
                    def.name
                ),
                detail: None,
                hint: None,
                object: ErrorObject::default(),
            })
        }
    };
    let mut key = Vec::with_capacity(pk.columns.len());
    for ic in &pk.columns {
        let pos = match &ic.column.expr {
            ast::Expr::Identifier(i) => {
                column_position(&def, i).map_err(|_| Error::UndefinedColumn {
                    message: format!("column \"{}\" named in key does not exist", ident(i)),
                })?
            }
            other => return Err(Error::unsupported(format!("expression {other} in a key"))),
        };
        if !key.contains(&pos) {
            key.push(pos);
        }
    }
    let name = match &pk.name {
        Some(n) => ident(n),
        None => format!("{}_pkey", def.name),
    };
    // The hidden row id's key already goes by `<table>_pkey`; it gives the name up.
    if name != def.pkey_name && relation_name_taken(&txn.catalog(), &name) {
        return Err(Error::DuplicateTable {
            message: format!("relation \"{name}\" already exists"),
        });
    }
    let mut rows: Vec<Row> = Vec::new();
    for_each_row(txn, &def, |_, row| {
        rows.push(row);
        Ok(())
    })?;
    for &p in &key {
        if rows.iter().any(|r| r[p].is_null()) {
            let column = &def.columns[p].name;
            return Err(Error::NotNullViolation {
                message: format!(
                    "column \"{column}\" of relation \"{}\" contains null values",
                    def.name
                ),
                detail: None,
                object: ErrorObject::column(&def.name, column),
            });
        }
        def.columns[p].nullable = false;
    }
    // Without the row id, the positions after it move down by one.
    let shift = |p: usize| if p > hidden { p - 1 } else { p };
    def.columns.remove(hidden);
    for index in &mut def.indexes {
        for c in &mut index.columns {
            *c = shift(*c);
        }
        for c in &mut index.predicate {
            *c.column_mut() = shift(c.column());
        }
    }
    def.primary_key = key.into_iter().map(shift).collect();
    def.pkey_name = name;
    for row in &mut rows {
        row.remove(hidden);
    }
    txn.rewrite_table(&def, rows)
        .map_err(super::index::build_error)?;
    txn.put_entry(CatalogEntry::Table(def.clone()))?;
    Ok(def)
}
