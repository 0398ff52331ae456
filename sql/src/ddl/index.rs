//! CREATE [UNIQUE] INDEX: a secondary index, filled from existing rows and kept on every write.

use datafusion::sql::sqlparser::ast;
use weft_storage::{Catalog, CatalogEntry, IndexDef, TableDef, Txn};

use super::{ident, object_name, tag};
use crate::error::{Error, Result};
use crate::session::QueryOutput;
use crate::shared::SessionShared;

/// The table owning an index of this name, if any.
pub(super) fn find_index<'a>(
    catalog: &'a Catalog,
    name: &str,
) -> Option<(&'a TableDef, &'a IndexDef)> {
    catalog
        .tables()
        .find_map(|t| t.indexes.iter().find(|i| i.name == name).map(|i| (t, i)))
}

/// Whether a relation-level name (table, view, index, pkey) is taken.
pub(super) fn relation_name_taken(catalog: &Catalog, name: &str) -> bool {
    catalog.get_by_name(name).is_some()
        || find_index(catalog, name).is_some()
        || catalog.tables().any(|t| t.pkey_name == name)
}

pub(super) fn create(
    shared: &SessionShared,
    txn: &mut Txn,
    ci: &ast::CreateIndex,
) -> Result<QueryOutput> {
    if ci.predicate.is_some() {
        return Err(Error::unsupported(
            "partial indexes (CREATE INDEX ... WHERE)",
        ));
    }
    if !ci.include.is_empty() {
        return Err(Error::unsupported("INCLUDE columns in an index"));
    }
    let table_name = object_name(&ci.table_name)?;
    let catalog = txn.catalog();
    let mut def = match catalog.get_by_name(&table_name) {
        Some(CatalogEntry::Table(t)) => t.clone(),
        Some(_) => {
            return Err(Error::WrongObjectType {
                message: format!("\"{table_name}\" is not a table"),
            })
        }
        None => {
            return Err(Error::UndefinedTable {
                message: format!("relation \"{table_name}\" does not exist"),
            })
        }
    };
    let columns: Vec<usize> = ci
        .columns
        .iter()
        .map(|ic| match &ic.column.expr {
            ast::Expr::Identifier(i) => {
                let n = ident(i);
                def.column_index(&n)
                    .filter(|&c| !def.columns[c].hidden)
                    .ok_or_else(|| Error::UndefinedColumn {
                        message: format!("column \"{n}\" does not exist"),
                    })
            }
            other => Err(Error::unsupported(format!("expression indexes ({other})"))),
        })
        .collect::<Result<_>>()?;
    let col_names: Vec<&str> = columns
        .iter()
        .map(|&c| def.columns[c].name.as_str())
        .collect();
    let name = match &ci.name {
        Some(n) => object_name(n)?,
        None => {
            let base = format!("{table_name}_{}_idx", col_names.join("_"));
            let mut candidate = base.clone();
            let mut n = 1;
            while relation_name_taken(&catalog, &candidate) {
                candidate = format!("{base}{n}");
                n += 1;
            }
            candidate
        }
    };
    if relation_name_taken(&catalog, &name) {
        if ci.if_not_exists {
            shared.push_notice(
                "42P07",
                format!("relation \"{name}\" already exists, skipping"),
            );
            return Ok(tag("CREATE INDEX"));
        }
        return Err(Error::DuplicateTable {
            message: format!("relation \"{name}\" already exists"),
        });
    }
    add(txn, &mut def, name, columns, ci.unique, false)?;
    txn.put_entry(CatalogEntry::Table(def))?;
    Ok(tag("CREATE INDEX"))
}

/// Adds index `name` on `columns` to `def` and builds it from the rows (23505 for a unique index
/// over duplicates); the caller writes `def`.
pub(super) fn add(
    txn: &mut Txn,
    def: &mut TableDef,
    name: String,
    columns: Vec<usize>,
    unique: bool,
    constraint: bool,
) -> Result<()> {
    if unique && def.consistency == weft_storage::Consistency::Lww {
        return Err(Error::unsupported(
            "unique indexes on an lww table (only the primary key is unique without coordination)",
        ));
    }
    let id = def.indexes.iter().map(|i| i.id).max().unwrap_or(0) + 1;
    let index = IndexDef {
        id,
        name,
        columns,
        unique,
        constraint,
    };
    def.indexes.push(index.clone());
    txn.build_index(def, &index).map_err(build_error)?;
    Ok(())
}

/// An error of building a unique index over existing rows, as PostgreSQL words it: two rows
/// with one key are "duplicated", not a key that "already exists".
pub(super) fn build_error(e: weft_storage::Error) -> Error {
    match e {
        weft_storage::Error::UniqueViolation {
            table,
            constraint,
            detail,
        } => Error::UniqueViolation {
            message: format!("could not create unique index \"{constraint}\""),
            detail: Some(detail.replace(" already exists.", " is duplicated.")),
            object: crate::error::ErrorObject::constraint(&table, &constraint),
        },
        other => other.into(),
    }
}
