//! FOREIGN KEY / REFERENCES: the definition (CREATE TABLE, ALTER TABLE ADD CONSTRAINT), the
//! check of existing rows, and what DROP and TRUNCATE must respect. Enforcement is
//! `dml::foreign`.

use datafusion::sql::sqlparser::ast;
use weft_storage::{
    Catalog, CatalogEntry, Consistency, FkAction, ForeignKeyDef, KeyRange, TableDef, Txn,
};

use super::ident;
use crate::dml::foreign::{compatible, positions, unique_key};
use crate::error::{Error, Result};
use crate::pgtype::sql_type_name;

/// Rows read at a time while checking existing rows.
const SCAN_BATCH: usize = 1024;

fn invalid(message: String) -> Error {
    Error::Detailed {
        code: "42830",
        message,
        detail: None,
        hint: None,
        object: crate::error::ErrorObject::default(),
    }
}

fn action(a: Option<ast::ReferentialAction>) -> FkAction {
    match a {
        None | Some(ast::ReferentialAction::NoAction) => FkAction::NoAction,
        Some(ast::ReferentialAction::Restrict) => FkAction::Restrict,
        Some(ast::ReferentialAction::Cascade) => FkAction::Cascade,
        Some(ast::ReferentialAction::SetNull) => FkAction::SetNull,
        Some(ast::ReferentialAction::SetDefault) => FkAction::SetDefault,
    }
}

/// Whether `name` is taken by a constraint of `def` (PostgreSQL's names are per table).
fn constraint_taken(def: &TableDef, name: &str) -> bool {
    def.pkey_name == name
        || def.checks.iter().any(|c| c.name == name)
        || def.indexes.iter().any(|i| i.constraint && i.name == name)
        || def.foreign_keys.iter().any(|f| f.name == name)
}

/// The definition of `fk` on `child` (its referencing columns at `columns`): `parent` is the
/// referenced table, `None` when it is `child` itself (a table being created that references
/// itself).
pub(super) fn define(
    catalog: &Catalog,
    child: &TableDef,
    fk: &ast::ForeignKeyConstraint,
    columns: &[usize],
) -> Result<ForeignKeyDef> {
    let parent_name = super::object_name(&fk.foreign_table)?;
    let parent = if parent_name == child.name {
        child
    } else {
        match catalog.get_by_name(&parent_name) {
            Some(CatalogEntry::Table(t)) => t,
            Some(_) => {
                return Err(Error::WrongObjectType {
                    message: format!("referenced relation \"{parent_name}\" is not a table"),
                })
            }
            None => {
                return Err(Error::UndefinedTable {
                    message: format!("relation \"{parent_name}\" does not exist"),
                })
            }
        }
    };
    if child.consistency == Consistency::Lww || parent.consistency == Consistency::Lww {
        return Err(Error::unsupported(
            "foreign keys on or to lww tables (a parent deleted on one node while a child is inserted on another would both win)",
        ));
    }
    if let Some(m) = &fk.match_kind {
        if !matches!(m, ast::ConstraintReferenceMatchKind::Simple) {
            return Err(Error::unsupported(format!("MATCH {m} foreign keys")));
        }
    }
    let (mut deferrable, mut deferred) = (false, false);
    if let Some(c) = &fk.characteristics {
        deferred = matches!(c.initially, Some(ast::DeferrableInitial::Deferred));
        if deferred && c.deferrable == Some(false) {
            return Err(Error::Syntax {
                message: "constraint declared INITIALLY DEFERRED must be DEFERRABLE".into(),
                position: None,
            });
        }
        deferrable = deferred || c.deferrable == Some(true);
        if c.enforced == Some(false) {
            return Err(Error::unsupported("NOT ENFORCED foreign keys"));
        }
    }
    let refs: Vec<usize> = if fk.referred_columns.is_empty() {
        if parent.primary_key.iter().any(|&p| parent.columns[p].hidden) {
            return Err(Error::UndefinedObject {
                message: format!(
                    "there is no primary key for referenced table \"{}\"",
                    parent.name
                ),
            });
        }
        parent.primary_key.clone()
    } else {
        fk.referred_columns
            .iter()
            .map(|c| {
                let n = ident(c);
                parent
                    .column_index(&n)
                    .filter(|&i| !parent.columns[i].hidden)
                    .ok_or_else(|| Error::UndefinedColumn {
                        message: format!(
                            "column \"{n}\" referenced in foreign key constraint does not exist"
                        ),
                    })
            })
            .collect::<Result<_>>()?
    };
    if unique_key(parent, &refs).is_none() {
        return Err(invalid(format!(
            "there is no unique constraint matching given keys for referenced table \"{}\"",
            parent.name
        )));
    }
    if refs.len() != columns.len() {
        return Err(invalid(
            "number of referencing and referenced columns for foreign key disagree".into(),
        ));
    }
    let name = match &fk.name {
        Some(n) => ident(n),
        None => {
            let names: Vec<&str> = columns
                .iter()
                .map(|&c| child.columns[c].name.as_str())
                .collect();
            let base = format!("{}_{}_fkey", child.name, names.join("_"));
            let mut name = base.clone();
            let mut n = 0;
            while constraint_taken(child, &name) {
                n += 1;
                name = format!("{base}{n}");
            }
            name
        }
    };
    for (&c, &r) in columns.iter().zip(&refs) {
        let (a, b) = (&child.columns[c], &parent.columns[r]);
        if !compatible(a.data_type, b.data_type) {
            return Err(Error::Detailed {
                code: "42804",
                message: format!("foreign key constraint \"{name}\" cannot be implemented"),
                detail: Some(format!(
                    "Key columns \"{}\" and \"{}\" are of incompatible types: {} and {}.",
                    a.name,
                    b.name,
                    sql_type_name(a.data_type),
                    sql_type_name(b.data_type)
                )),
                hint: None,
                object: crate::error::ErrorObject::default(),
            });
        }
    }
    Ok(ForeignKeyDef {
        name,
        columns: columns.iter().map(|&c| child.columns[c].id).collect(),
        ref_table: parent.id,
        ref_columns: refs.iter().map(|&r| parent.columns[r].id).collect(),
        on_delete: action(fk.on_delete),
        on_update: action(fk.on_update),
        deferrable,
        deferred,
    })
}

/// Positions in `def` of the referencing columns `cols` names (empty: the one column of a
/// column constraint, `column`).
pub(super) fn referencing_columns(
    def: &TableDef,
    cols: &[ast::Ident],
    column: Option<usize>,
) -> Result<Vec<usize>> {
    if cols.is_empty() {
        return column
            .map(|c| vec![c])
            .ok_or_else(|| Error::syntax("FOREIGN KEY needs a column list"));
    }
    cols.iter()
        .map(|c| {
            let n = ident(c);
            def.column_index(&n)
                .filter(|&i| !def.columns[i].hidden)
                .ok_or_else(|| Error::UndefinedColumn {
                    message: format!(
                        "column \"{n}\" referenced in foreign key constraint does not exist"
                    ),
                })
        })
        .collect()
}

/// ALTER TABLE ADD FOREIGN KEY: every existing row of `child` must reference a row.
pub(super) fn add(
    txn: &mut Txn,
    child: &mut TableDef,
    fk: &ast::ForeignKeyConstraint,
    column: Option<usize>,
) -> Result<()> {
    let columns = referencing_columns(child, &fk.columns, column)?;
    let catalog = txn.catalog();
    let def = define(&catalog, child, fk, &columns)?;
    if constraint_taken(child, &def.name) {
        return Err(Error::DuplicateObject {
            message: format!(
                "constraint \"{}\" for relation \"{}\" already exists",
                def.name, child.name
            ),
        });
    }
    let parent = if def.ref_table == child.id {
        child.clone()
    } else {
        catalog
            .table_by_id(def.ref_table)
            .cloned()
            .ok_or_else(|| Error::internal("referenced table vanished"))?
    };
    check_existing_rows(txn, child, &def, &parent)?;
    child.foreign_keys.push(def);
    Ok(())
}

/// Every row of `child` references a row of `parent` through `fk` (or has a NULL in its key):
/// when the key is added, or its columns change type.
pub(super) fn check_existing_rows(
    txn: &mut Txn,
    child: &TableDef,
    fk: &ForeignKeyDef,
    parent: &TableDef,
) -> Result<()> {
    let mut resume: Option<Vec<u8>> = None;
    loop {
        let batch = txn.reader().scan(
            child,
            &KeyRange::full(),
            resume.as_deref(),
            None,
            SCAN_BATCH,
        )?;
        for row in &batch.rows {
            crate::dml::foreign::check_reference(txn, child, fk, parent, row)?;
        }
        match batch.resume {
            Some(r) => resume = Some(r),
            None => return Ok(()),
        }
    }
}

/// Foreign keys of other tables than those in `dropped` that reference table `table`, as
/// `(constraint, its table)`.
pub(super) fn referencing_others(
    catalog: &Catalog,
    table: &TableDef,
    dropped: &[u32],
) -> Vec<(String, String)> {
    catalog
        .referencing(table.id)
        .filter(|(child, _)| !dropped.contains(&child.id))
        .map(|(child, fk)| (fk.name.clone(), child.name.clone()))
        .collect()
}

/// Foreign keys (of any table) whose referenced key is `table`'s index `index` (None: its
/// primary key), as `(constraint, its table)`.
pub(super) fn using_key(
    catalog: &Catalog,
    table: &TableDef,
    index: Option<u32>,
) -> Result<Vec<(String, String)>> {
    let mut found = Vec::new();
    for (child, fk) in catalog.referencing(table.id) {
        let refs = positions(table, &fk.ref_columns)?;
        let key_cols = match index {
            None => table.primary_key.clone(),
            Some(id) => match table.indexes.iter().find(|i| i.id == id) {
                Some(i) if i.is_plain_and_total() => i.columns.clone(),
                _ => continue,
            },
        };
        if key_cols.len() == refs.len() && key_cols.iter().all(|c| refs.contains(c)) {
            found.push((fk.name.clone(), child.name.clone()));
        }
    }
    Ok(found)
}

/// 2BP01 for dropping `what` while foreign keys `deps` need it.
pub(super) fn dependents_error(what: String, deps: &[(String, String)], on: &str) -> Error {
    let detail: Vec<String> = deps
        .iter()
        .map(|(fk, table)| format!("constraint {fk} on table {table} depends on {on}"))
        .collect();
    Error::Detailed {
        code: "2BP01",
        message: format!("cannot drop {what} because other objects depend on it"),
        detail: Some(detail.join("\n")),
        hint: Some("Use DROP ... CASCADE to drop the dependent objects too.".into()),
        object: crate::error::ErrorObject::default(),
    }
}

/// Removes the foreign keys named in `deps` (`(constraint, table)`) from their tables, with
/// PostgreSQL's NOTICE for each.
pub(super) fn drop_dependents(
    shared: &crate::shared::SessionShared,
    txn: &mut Txn,
    deps: &[(String, String)],
) -> Result<()> {
    match deps {
        [] => {}
        [(fk, table)] => shared.push_notice(
            "00000",
            format!("drop cascades to constraint {fk} on table {table}"),
        ),
        more => shared.push_notice(
            "00000",
            format!("drop cascades to {} other objects", more.len()),
        ),
    }
    for (fk, table) in deps {
        let Some(mut def) = txn.catalog().table(table).cloned() else {
            continue;
        };
        def.foreign_keys.retain(|f| &f.name != fk);
        txn.put_entry(CatalogEntry::Table(def))?;
    }
    Ok(())
}
