//! COMMENT ON { TABLE | VIEW | COLUMN } name IS 'text' | NULL: the text is kept in the catalog
//! entry (`TableDef::comments`, `ViewDef::comments`), so it is transactional and replicated like
//! any DDL, dropped with its object, and shown by pg_description, `obj_description`,
//! `col_description` and psql's `\d+` / `\dt+`. An empty text removes the comment, as in
//! PostgreSQL.

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::ast;
use weft_storage::{CatalogEntry, Txn};

use super::{ident, object_name, tag};
use crate::error::{Error, Result};
use crate::session::QueryOutput;

pub(super) fn execute(
    txn: &mut Txn,
    object_type: ast::CommentObject,
    name: &ast::ObjectName,
    comment: &Option<String>,
) -> Result<QueryOutput> {
    let text = comment.clone().filter(|c| !c.is_empty());
    match object_type {
        ast::CommentObject::Table | ast::CommentObject::View => {
            let relation = object_name(name)?;
            let table = object_type == ast::CommentObject::Table;
            match lookup(txn, &relation)? {
                CatalogEntry::Table(mut def) if table => {
                    set(&mut def.comments, 0, text);
                    txn.put_entry(CatalogEntry::Table(def))?;
                }
                CatalogEntry::View(mut view) if !table => {
                    set(&mut view.comments, 0, text);
                    txn.put_entry(CatalogEntry::View(view))?;
                }
                _ => {
                    return Err(Error::WrongObjectType {
                        message: format!(
                            "\"{relation}\" is not a {}",
                            if table { "table" } else { "view" }
                        ),
                    })
                }
            }
        }
        ast::CommentObject::Column => {
            let Some((column, relation)) = name.0.split_last().filter(|(_, r)| !r.is_empty())
            else {
                return Err(Error::syntax("column name must be qualified"));
            };
            let column = column
                .as_ident()
                .map(ident)
                .ok_or_else(|| Error::syntax(format!("invalid name {name}")))?;
            let relation = object_name(&ast::ObjectName(relation.to_vec()))?;
            let missing = || Error::UndefinedColumn {
                message: format!("column \"{column}\" of relation \"{relation}\" does not exist"),
            };
            match lookup(txn, &relation)? {
                CatalogEntry::Table(mut def) => {
                    let id = def
                        .visible_columns()
                        .find(|(_, c)| c.name == column)
                        .map(|(_, c)| c.id)
                        .ok_or_else(missing)?;
                    set(&mut def.comments, id, text);
                    txn.put_entry(CatalogEntry::Table(def))?;
                }
                CatalogEntry::View(mut view) => {
                    let position = view
                        .columns
                        .iter()
                        .position(|c| *c == column)
                        .ok_or_else(missing)?;
                    set(&mut view.comments, position as u32 + 1, text);
                    txn.put_entry(CatalogEntry::View(view))?;
                }
                _ => {
                    return Err(Error::unsupported(format!(
                        "COMMENT ON COLUMN of \"{relation}\" (only tables and views)"
                    )))
                }
            }
        }
        other => return Err(Error::unsupported(format!("COMMENT ON {other}"))),
    }
    Ok(tag("COMMENT"))
}

/// The catalog entry named `relation`; 42P01 if there is none.
fn lookup(txn: &Txn, relation: &str) -> Result<CatalogEntry> {
    txn.catalog()
        .get_by_name(relation)
        .cloned()
        .ok_or_else(|| Error::UndefinedTable {
            message: format!("relation \"{relation}\" does not exist"),
        })
}

fn set(comments: &mut BTreeMap<u32, String>, key: u32, text: Option<String>) {
    match text {
        Some(t) => {
            comments.insert(key, t);
        }
        None => {
            comments.remove(&key);
        }
    }
}
