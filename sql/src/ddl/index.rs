//! CREATE [UNIQUE] INDEX: a secondary index, filled from existing rows and kept on every write.

use datafusion::sql::sqlparser::ast;
use weft_storage::{Catalog, CatalogEntry, Cond, DataType, IndexDef, KeyFn, TableDef, Txn};

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
    let keys: Vec<(usize, Option<KeyFn>)> = ci
        .columns
        .iter()
        .map(|ic| index_key(&def, &ic.column.expr))
        .collect::<Result<_>>()?;
    let predicate = match &ci.predicate {
        Some(p) => {
            let mut conds = Vec::new();
            index_predicate(&def, p, &mut conds)?;
            conds
        }
        None => Vec::new(),
    };
    let columns: Vec<usize> = keys.iter().map(|(c, _)| *c).collect();
    let functions: Vec<Option<KeyFn>> = if keys.iter().any(|(_, f)| f.is_some()) {
        keys.iter().map(|(_, f)| *f).collect()
    } else {
        Vec::new()
    };
    // PostgreSQL names an expression's part of the index after the function (`t_lower_idx`).
    let col_names: Vec<String> = keys
        .iter()
        .map(|&(c, f)| f.map_or_else(|| def.columns[c].name.clone(), |f| f.name().to_string()))
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
    let keys = IndexKeys {
        columns,
        functions,
        predicate,
    };
    add(txn, &mut def, name, keys, ci.unique, false)?;
    txn.put_entry(CatalogEntry::Table(def))?;
    Ok(tag("CREATE INDEX"))
}

/// One key of an index: a column (`email`), or `lower(email)` / `upper(email)` of a text
/// column (an expression index; other expressions are 0A000).
fn index_key(def: &TableDef, e: &ast::Expr) -> Result<(usize, Option<KeyFn>)> {
    let column = |i: &ast::Ident| {
        let n = ident(i);
        def.column_index(&n)
            .filter(|&c| !def.columns[c].hidden)
            .ok_or_else(|| Error::UndefinedColumn {
                message: format!("column \"{n}\" does not exist"),
            })
    };
    match e {
        ast::Expr::Identifier(i) => Ok((column(i)?, None)),
        ast::Expr::Nested(inner) => index_key(def, inner),
        ast::Expr::Function(f) => {
            let name = f.name.0.last().and_then(|p| p.as_ident()).map(ident);
            let function = match name.as_deref() {
                Some("lower") => KeyFn::Lower,
                Some("upper") => KeyFn::Upper,
                _ => {
                    return Err(Error::unsupported(format!(
                        "expression indexes ({e}) other than lower(column) and upper(column)"
                    )))
                }
            };
            let args = match &f.args {
                ast::FunctionArguments::List(l) if l.duplicate_treatment.is_none() => &l.args,
                _ => return Err(Error::unsupported(format!("expression indexes ({e})"))),
            };
            let [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(ast::Expr::Identifier(i)))] =
                args.as_slice()
            else {
                return Err(Error::unsupported(format!(
                    "expression indexes ({e}) other than lower(column) and upper(column)"
                )));
            };
            let c = column(i)?;
            let t = def.columns[c].data_type;
            if !matches!(t, DataType::Text | DataType::Varchar(_) | DataType::Char(_)) {
                return Err(Error::UndefinedFunction {
                    message: format!(
                        "function {}({}) does not exist",
                        function.name(),
                        crate::pgtype::sql_type_name(t)
                    ),
                });
            }
            Ok((c, Some(function)))
        }
        other => Err(Error::unsupported(format!("expression indexes ({other})"))),
    }
}

/// The condition of a partial index: `col IS [NOT] NULL`, a boolean column (`active`, `NOT
/// archived`, `active = true`), or several joined by AND; others are 0A000.
fn index_predicate(def: &TableDef, e: &ast::Expr, out: &mut Vec<Cond>) -> Result<()> {
    let unsupported = || {
        Error::unsupported(format!(
            "partial indexes with the condition {e} (only IS NULL, IS NOT NULL and boolean \
             columns, joined by AND)"
        ))
    };
    let column = |x: &ast::Expr| -> Result<Option<usize>> {
        let ast::Expr::Identifier(i) = x else {
            return Ok(None);
        };
        let n = ident(i);
        def.column_index(&n)
            .filter(|&c| !def.columns[c].hidden)
            .map(Some)
            .ok_or_else(|| Error::UndefinedColumn {
                message: format!("column \"{n}\" does not exist"),
            })
    };
    let boolean = |c: usize| -> Result<usize> {
        match def.columns[c].data_type {
            DataType::Bool => Ok(c),
            t => Err(Error::DatatypeMismatch {
                message: format!(
                    "argument of WHERE must be type boolean, not type {}",
                    crate::pgtype::sql_type_name(t)
                ),
            }),
        }
    };
    let cond = match e {
        ast::Expr::Nested(inner) => return index_predicate(def, inner, out),
        ast::Expr::BinaryOp {
            left,
            op: ast::BinaryOperator::And,
            right,
        } => {
            index_predicate(def, left, out)?;
            return index_predicate(def, right, out);
        }
        ast::Expr::IsNull(x) => Cond::IsNull(column(x)?.ok_or_else(unsupported)?),
        ast::Expr::IsNotNull(x) => Cond::IsNotNull(column(x)?.ok_or_else(unsupported)?),
        ast::Expr::Identifier(_) => Cond::IsTrue(boolean(column(e)?.ok_or_else(unsupported)?)?),
        ast::Expr::UnaryOp {
            op: ast::UnaryOperator::Not,
            expr,
        } => Cond::IsFalse(boolean(column(expr)?.ok_or_else(unsupported)?)?),
        ast::Expr::BinaryOp {
            left,
            op: ast::BinaryOperator::Eq,
            right,
        } => {
            let value = match &**right {
                ast::Expr::Value(v) => match v.value {
                    ast::Value::Boolean(b) => b,
                    _ => return Err(unsupported()),
                },
                _ => return Err(unsupported()),
            };
            let c = boolean(column(left)?.ok_or_else(unsupported)?)?;
            if value {
                Cond::EqTrue(c)
            } else {
                Cond::EqFalse(c)
            }
        }
        _ => return Err(unsupported()),
    };
    out.push(cond);
    Ok(())
}

/// What an index keys on: its columns, each through its function of `functions` (if any), and
/// the conditions of a partial index.
pub(super) struct IndexKeys {
    pub columns: Vec<usize>,
    pub functions: Vec<Option<KeyFn>>,
    pub predicate: Vec<Cond>,
}

impl IndexKeys {
    pub fn plain(columns: Vec<usize>) -> IndexKeys {
        IndexKeys {
            columns,
            functions: Vec::new(),
            predicate: Vec::new(),
        }
    }
}

/// Adds index `name` on `keys` to `def` and builds it from the rows (23505 for a unique index
/// over duplicates); the caller writes `def`.
pub(super) fn add(
    txn: &mut Txn,
    def: &mut TableDef,
    name: String,
    keys: IndexKeys,
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
        columns: keys.columns,
        unique,
        constraint,
        functions: keys.functions,
        predicate: keys.predicate,
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
