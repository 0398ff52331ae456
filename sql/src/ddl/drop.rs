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
    cascade: bool,
) -> Result<QueryOutput> {
    let (label, done) = match kind {
        ast::ObjectType::Table => ("table", "DROP TABLE"),
        ast::ObjectType::View => ("view", "DROP VIEW"),
        ast::ObjectType::Index => ("index", "DROP INDEX"),
        ast::ObjectType::Sequence => ("sequence", "DROP SEQUENCE"),
        other => return Err(Error::unsupported(format!("DROP {other}"))),
    };
    // Resolve every name first: PostgreSQL drops all or none.
    let catalog = txn.catalog();
    let mut plan = Vec::new();
    for n in names {
        let name = object_name(n)?;
        let found = match kind {
            ast::ObjectType::Index => match find_index(&catalog, &name) {
                Some((t, i)) if i.constraint => {
                    return Err(Error::DependentObjects {
                        message: format!(
                            "cannot drop index {name} because constraint {name} on table {} requires it (use ALTER TABLE ... DROP CONSTRAINT)",
                            t.name
                        ),
                    })
                }
                found => found.map(|(t, i)| (t.id, Some(i.id))),
            },
            _ => match catalog.get_by_name(&name) {
                Some(CatalogEntry::Table(t)) if kind == ast::ObjectType::Table => {
                    Some((t.id, None))
                }
                Some(CatalogEntry::View(v)) if kind == ast::ObjectType::View => Some((v.id, None)),
                Some(CatalogEntry::Sequence(s)) if kind == ast::ObjectType::Sequence => {
                    Some((s.id, None))
                }
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
    // Foreign keys of other tables on a dropped table, or on a dropped unique index.
    let dropped_tables: Vec<u32> = plan
        .iter()
        .filter(|(_, i)| i.is_none())
        .map(|(id, _)| *id)
        .collect();
    let mut fk_deps = Vec::new();
    for (id, index) in &plan {
        let Some(def) = catalog.table_by_id(*id) else {
            continue;
        };
        let (deps, what, on) = match index {
            None => (
                super::foreign_key::referencing_others(&catalog, def, &dropped_tables),
                format!("table {}", def.name),
                format!("table {}", def.name),
            ),
            Some(index_id) => {
                let name = def
                    .indexes
                    .iter()
                    .find(|i| i.id == *index_id)
                    .map(|i| i.name.clone())
                    .unwrap_or_default();
                (
                    super::foreign_key::using_key(&catalog, def, Some(*index_id))?,
                    format!("index {name}"),
                    format!("index {name}"),
                )
            }
        };
        if deps.is_empty() {
            continue;
        }
        if !cascade {
            return Err(super::foreign_key::dependents_error(what, &deps, &on));
        }
        fk_deps.extend(deps);
    }
    super::foreign_key::drop_dependents(shared, txn, &fk_deps)?;
    if kind == ast::ObjectType::Sequence {
        let dropped: Vec<String> = plan
            .iter()
            .filter_map(|(id, _)| catalog.entries.get(id).map(|e| e.name().to_string()))
            .collect();
        for name in &dropped {
            if let Some((table, column)) = crate::sequence::dependents(&catalog, name).first() {
                return Err(Error::DependentObjects {
                    message: format!(
                        "cannot drop sequence {name} because other objects depend on it (default value for column {column} of table {table}); drop or alter that default first"
                    ),
                });
            }
        }
    }
    for (id, index) in plan {
        match index {
            None => {
                // A table's serial and identity sequences go with it.
                let owned: Vec<_> = catalog.owned_sequences(id).map(|s| s.id).collect();
                txn.drop_entry(id)?;
                for seq in owned {
                    if txn.catalog().entries.contains_key(&seq) {
                        txn.drop_entry(seq)?;
                    }
                }
            }
            Some(index_id) => {
                let mut def = txn
                    .catalog()
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

pub(super) fn truncate(
    shared: &SessionShared,
    txn: &mut Txn,
    t: &ast::Truncate,
) -> Result<QueryOutput> {
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
    // A table referenced by a foreign key goes only with its referencing tables.
    let cascade = matches!(t.cascade, Some(ast::CascadeOption::Cascade));
    let mut i = 0;
    while i < defs.len() {
        let referencing: Vec<_> = catalog
            .referencing(defs[i].id)
            .map(|(child, _)| child.clone())
            .collect();
        for child in referencing {
            if defs.iter().any(|d| d.id == child.id) {
                continue;
            }
            if !cascade {
                return Err(Error::Detailed {
                    code: "0A000",
                    message: "cannot truncate a table referenced in a foreign key constraint"
                        .into(),
                    detail: Some(format!(
                        "Table \"{}\" references \"{}\".",
                        child.name, defs[i].name
                    )),
                    hint: Some(format!(
                        "Truncate table \"{}\" at the same time, or use TRUNCATE ... CASCADE.",
                        child.name
                    )),
                    object: crate::error::ErrorObject::default(),
                });
            }
            shared.push_notice(
                "00000",
                format!("truncate cascades to table \"{}\"", child.name),
            );
            defs.push(child);
        }
        i += 1;
    }
    let restart = t.identity == Some(ast::TruncateIdentityOption::Restart);
    for def in defs {
        txn.truncate(&def)?;
        if restart {
            for seq in catalog.owned_sequences(def.id) {
                txn.restart_sequence(seq)?;
            }
        }
    }
    Ok(tag("TRUNCATE TABLE"))
}
