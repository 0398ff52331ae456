//! DROP TABLE / VIEW / INDEX and TRUNCATE.

use datafusion::sql::sqlparser::ast;
use weft_storage::{CatalogEntry, Txn};

use super::index::find_index;
use super::{object_name, tag};
use crate::error::{Error, Result};
use crate::session::QueryOutput;
use crate::shared::SessionShared;

pub(super) fn execute(
    shared: &SessionShared,
    txn: &mut Txn,
    kind: ast::ObjectType,
    if_exists: bool,
    names: &[ast::ObjectName],
) -> Result<QueryOutput> {
    let (label, done) = match kind {
        ast::ObjectType::Table => ("table", "DROP TABLE"),
        ast::ObjectType::View => ("view", "DROP VIEW"),
        ast::ObjectType::Index => ("index", "DROP INDEX"),
        other => return Err(Error::unsupported(format!("DROP {other}"))),
    };
    // Resolve every name first: PostgreSQL drops all or none.
    let catalog = txn.catalog();
    let mut plan = Vec::new();
    for n in names {
        let name = object_name(n)?;
        let found = match kind {
            ast::ObjectType::Index => find_index(&catalog, &name).map(|(t, i)| (t.id, Some(i.id))),
            _ => match catalog.get_by_name(&name) {
                Some(CatalogEntry::Table(t)) if kind == ast::ObjectType::Table => {
                    Some((t.id, None))
                }
                Some(CatalogEntry::View(v)) if kind == ast::ObjectType::View => Some((v.id, None)),
                Some(_) => {
                    return Err(Error::WrongObjectType {
                        message: format!("\"{name}\" is not a {label}"),
                    });
                }
                None => None,
            },
        };
        match found {
            Some(f) => plan.push(f),
            None if if_exists => shared.push_notice(
                "00000",
                format!("{label} \"{name}\" does not exist, skipping"),
            ),
            // PostgreSQL: a missing table or view is 42P01, a missing index 42704.
            None if kind == ast::ObjectType::Index => {
                return Err(Error::UndefinedObject {
                    message: format!("{label} \"{name}\" does not exist"),
                });
            }
            None => {
                return Err(Error::UndefinedTable {
                    message: format!("{label} \"{name}\" does not exist"),
                });
            }
        }
    }
    for (id, index) in &plan {
        let live = crate::push::dependents(&catalog, *id);
        if index.is_none() && !live.is_empty() {
            return Err(Error::DependentObjects {
                message: format!(
                    "cannot drop {label} {} because other objects depend on it (live query {}); drop the live queries first",
                    catalog.entries.get(id).map(|e| e.name().to_string()).unwrap_or_default(),
                    live.join(", ")
                ),
            });
        }
    }
    for (id, index) in plan {
        match index {
            None => txn.drop_entry(id)?,
            Some(index_id) => {
                let mut def = catalog
                    .table_by_id(id)
                    .cloned()
                    .ok_or_else(|| Error::internal("index owner vanished"))?;
                txn.drop_index(&def, index_id)?;
                def.indexes.retain(|i| i.id != index_id);
                txn.put_entry(CatalogEntry::Table(def))?;
            }
        }
    }
    Ok(tag(done))
}

pub(super) fn truncate(txn: &mut Txn, t: &ast::Truncate) -> Result<QueryOutput> {
    let catalog = txn.catalog();
    let mut defs = Vec::new();
    for target in &t.table_names {
        let name = object_name(&target.name)?;
        match catalog.get_by_name(&name) {
            Some(CatalogEntry::Table(def)) => defs.push(def.clone()),
            Some(_) => {
                return Err(Error::WrongObjectType {
                    message: format!("\"{name}\" is not a table"),
                })
            }
            None if t.if_exists => {}
            None => {
                return Err(Error::UndefinedTable {
                    message: format!("relation \"{name}\" does not exist"),
                })
            }
        }
    }
    for def in defs {
        txn.truncate(&def)?;
    }
    Ok(tag("TRUNCATE TABLE"))
}
