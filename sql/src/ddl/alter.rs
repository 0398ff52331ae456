//! ALTER TABLE: ADD / DROP / RENAME COLUMN, RENAME TO, and column DEFAULT / NOT NULL changes.
//! Rows are encoded by column id, so only ADD COLUMN with a value and SET NOT NULL touch rows
//! (and ALTER COLUMN … TYPE, which rewrites them: `alter_type`).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{self, visit_expressions, visit_expressions_mut};
use weft_storage::{CatalogEntry, ColumnDef, KeyRange, TableDef, Txn, Value};

use super::index::relation_name_taken;
use super::{column_type, ident, object_name, tag};
use crate::error::{Error, Result};
use crate::eval::{default_values, parse_expr};
use crate::session::{ExecCtx, QueryOutput};

const SCAN_BATCH: usize = 1024;

pub(super) async fn execute(
    ctx: &ExecCtx<'_>,
    txn: &mut Txn,
    at: &ast::AlterTable,
) -> Result<QueryOutput> {
    let name = object_name(&at.name)?;
    // Ownership: Weft has no roles beyond the connecting user (trust authentication; every user
    // is a superuser), so `OWNER TO` (pg_dump writes one per table and sequence) changes nothing.
    // The relation must exist, whatever its kind.
    if !at.operations.is_empty()
        && at
            .operations
            .iter()
            .all(|op| matches!(op, ast::AlterTableOperation::OwnerTo { .. }))
    {
        return match txn.catalog().get_by_name(&name) {
            Some(_) => Ok(tag("ALTER TABLE")),
            None if at.if_exists => Ok(tag("ALTER TABLE")),
            None => Err(Error::UndefinedTable {
                message: format!("relation \"{name}\" does not exist"),
            }),
        };
    }
    let mut def = match txn.catalog().get_by_name(&name) {
        Some(CatalogEntry::Table(t)) => t.clone(),
        Some(_) => {
            return Err(Error::WrongObjectType {
                message: format!("\"{name}\" is not a table"),
            })
        }
        None if at.if_exists => {
            ctx.shared.push_notice(
                "00000",
                format!("relation \"{name}\" does not exist, skipping"),
            );
            return Ok(tag("ALTER TABLE"));
        }
        None => {
            return Err(Error::UndefinedTable {
                message: format!("relation \"{name}\" does not exist"),
            })
        }
    };
    for op in &at.operations {
        def = match op {
            ast::AlterTableOperation::AlterColumn {
                column_name,
                op:
                    ast::AlterColumnOperation::SetDataType {
                        data_type, using, ..
                    },
            } => {
                let pos = column_position(&def, column_name)?;
                super::alter_type::retype(ctx, txn, def, pos, data_type, using.as_ref()).await?
            }
            op => apply(ctx, txn, def, op)?,
        };
    }
    Ok(tag("ALTER TABLE"))
}

pub(super) fn column_position(def: &TableDef, name: &ast::Ident) -> Result<usize> {
    let n = ident(name);
    def.column_index(&n)
        .filter(|&i| !def.columns[i].hidden)
        .ok_or_else(|| Error::UndefinedColumn {
            message: format!("column \"{n}\" of relation \"{}\" does not exist", def.name),
        })
}

fn apply(
    ctx: &ExecCtx<'_>,
    txn: &mut Txn,
    mut def: TableDef,
    op: &ast::AlterTableOperation,
) -> Result<TableDef> {
    use ast::AlterTableOperation as Op;
    match op {
        Op::AddColumn {
            if_not_exists,
            column_def,
            ..
        } => {
            let col_name = ident(&column_def.name);
            if def.column_index(&col_name).is_some() {
                if *if_not_exists {
                    ctx.shared.push_notice(
                        "42701",
                        format!(
                            "column \"{col_name}\" of relation \"{}\" already exists, skipping",
                            def.name
                        ),
                    );
                    return Ok(def);
                }
                return Err(Error::DuplicateColumn {
                    message: format!(
                        "column \"{col_name}\" of relation \"{}\" already exists",
                        def.name
                    ),
                });
            }
            let serial = crate::sequence::serial_type(&column_def.data_type);
            let mut col = ColumnDef {
                id: def.next_column_id,
                name: col_name.clone(),
                data_type: match serial {
                    Some(t) => t,
                    None => column_type(&column_def.data_type)?,
                },
                nullable: true,
                default: None,
                hidden: false,
                identity: None,
            };
            let mut sequence = None;
            let mut foreign = Vec::new();
            for o in &column_def.options {
                match &o.option {
                    ast::ColumnOption::ForeignKey(fk) => {
                        let mut fk = fk.clone();
                        if fk.name.is_none() {
                            fk.name = o.name.clone();
                        }
                        foreign.push(fk);
                    }
                    ast::ColumnOption::Null => {}
                    ast::ColumnOption::NotNull => col.nullable = false,
                    ast::ColumnOption::Default(e) => col.default = Some(e.to_string()),
                    ast::ColumnOption::Generated {
                        generated_as,
                        sequence_options,
                        generation_expr: None,
                        ..
                    } => {
                        sequence = Some(crate::sequence::identity(
                            &mut col,
                            &def.name,
                            serial.is_some(),
                            generated_as,
                            sequence_options,
                        )?);
                    }
                    other => return Err(Error::unsupported(format!("ADD COLUMN with {other}"))),
                }
            }
            if serial.is_some() {
                sequence = Some(Vec::new());
            }
            if let Some(options) = &sequence {
                if def.consistency == weft_storage::Consistency::Lww {
                    // Filling the existing rows would need each node's own rows.
                    return Err(Error::unsupported(
                        "adding a serial or identity column to an lww table",
                    ));
                }
                crate::sequence::attach(txn, &def, &mut col, options)?;
            }
            if def.consistency == weft_storage::Consistency::Lww && !col.nullable {
                return Err(Error::unsupported(
                    "NOT NULL on a non-key column of an lww table",
                ));
            }
            def.next_column_id += 1;
            def.columns.push(col);
            let pos = def.columns.len() - 1;
            txn.put_entry(CatalogEntry::Table(def.clone()))?;
            // The defaults below may call a sequence created just now.
            ctx.shared.set_read(Some(crate::session::view_of(txn)));
            fill_new_column(ctx, txn, &def, pos)?;
            if !foreign.is_empty() {
                for fk in &foreign {
                    super::foreign_key::add(txn, &mut def, fk, Some(pos))?;
                }
                txn.put_entry(CatalogEntry::Table(def.clone()))?;
            }
            Ok(def)
        }
        Op::AddConstraint {
            constraint,
            not_valid: false,
        } => {
            add_constraint(ctx, txn, &mut def, constraint)?;
            txn.put_entry(CatalogEntry::Table(def.clone()))?;
            Ok(def)
        }
        Op::DropConstraint {
            if_exists,
            name,
            drop_behavior,
        } => {
            let name = ident(name);
            let cascade = matches!(drop_behavior, Some(ast::DropBehavior::Cascade));
            if let Some(i) = def.checks.iter().position(|c| c.name == name) {
                def.checks.remove(i);
            } else if let Some(i) = def.foreign_keys.iter().position(|f| f.name == name) {
                def.foreign_keys.remove(i);
            } else if let Some(index) = def.indexes.iter().find(|i| i.name == name && i.constraint)
            {
                let id = index.id;
                let mut deps = super::foreign_key::using_key(&txn.catalog(), &def, Some(id))?;
                // Its own foreign keys go with it.
                def.foreign_keys
                    .retain(|f| !deps.iter().any(|(n, t)| *n == f.name && *t == def.name));
                deps.retain(|(_, t)| *t != def.name);
                if !deps.is_empty() {
                    if !cascade {
                        return Err(super::foreign_key::dependents_error(
                            format!("constraint {name} on table {}", def.name),
                            &deps,
                            &format!("index {name}"),
                        ));
                    }
                    super::foreign_key::drop_dependents(ctx.shared, txn, &deps)?;
                }
                txn.drop_index(&def, id)?;
                def.indexes.retain(|i| i.id != id);
            } else if def.pkey_name == name {
                return Err(Error::unsupported("dropping a primary key"));
            } else if *if_exists {
                ctx.shared.push_notice(
                    "00000",
                    format!(
                        "constraint \"{name}\" of relation \"{}\" does not exist, skipping",
                        def.name
                    ),
                );
                return Ok(def);
            } else {
                return Err(Error::UndefinedObject {
                    message: format!(
                        "constraint \"{name}\" of relation \"{}\" does not exist",
                        def.name
                    ),
                });
            }
            txn.put_entry(CatalogEntry::Table(def.clone()))?;
            Ok(def)
        }
        Op::DropColumn {
            column_names,
            if_exists,
            drop_behavior,
            ..
        } => {
            let cascade = matches!(drop_behavior, Some(ast::DropBehavior::Cascade));
            for n in column_names {
                let pos = match column_position(&def, n) {
                    Ok(p) => p,
                    Err(_) if *if_exists => {
                        ctx.shared.push_notice(
                            "00000",
                            format!(
                                "column \"{}\" of relation \"{}\" does not exist, skipping",
                                ident(n),
                                def.name
                            ),
                        );
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                // A serial or identity column's sequence goes with it.
                let owner = Some((def.id, def.columns[pos].id));
                let owned: Vec<_> = txn
                    .catalog()
                    .owned_sequences(def.id)
                    .filter(|s| s.owned_by == owner)
                    .map(|s| s.id)
                    .collect();
                // Foreign keys of its own on the column go with it; those of other tables that
                // reference it need CASCADE.
                let id = def.columns[pos].id;
                def.foreign_keys.retain(|f| {
                    !f.columns.contains(&id)
                        && !(f.ref_table == def.id && f.ref_columns.contains(&id))
                });
                let deps: Vec<(String, String)> = txn
                    .catalog()
                    .referencing(def.id)
                    .filter(|(t, f)| t.id != def.id && f.ref_columns.contains(&id))
                    .map(|(t, f)| (f.name.clone(), t.name.clone()))
                    .collect();
                if !deps.is_empty() {
                    let column = &def.columns[pos].name;
                    if !cascade {
                        return Err(super::foreign_key::dependents_error(
                            format!("column {column} of table {}", def.name),
                            &deps,
                            &format!("column {column} of table {}", def.name),
                        ));
                    }
                    super::foreign_key::drop_dependents(ctx.shared, txn, &deps)?;
                }
                def.comments.remove(&id);
                def = drop_column(txn, def, pos)?;
                for seq in owned {
                    txn.drop_entry(seq)?;
                }
            }
            txn.put_entry(CatalogEntry::Table(def.clone()))?;
            Ok(def)
        }
        Op::RenameColumn {
            old_column_name,
            new_column_name,
        } => {
            let pos = column_position(&def, old_column_name)?;
            let old = def.columns[pos].name.clone();
            let new = ident(new_column_name);
            if def.column_index(&new).is_some() {
                return Err(Error::DuplicateColumn {
                    message: format!(
                        "column \"{new}\" of relation \"{}\" already exists",
                        def.name
                    ),
                });
            }
            def.columns[pos].name = new.clone();
            for check in &mut def.checks {
                check.expr = rename_in_expr(&check.expr, &old, &new)?;
            }
            txn.put_entry(CatalogEntry::Table(def.clone()))?;
            Ok(def)
        }
        Op::RenameTable { table_name } => {
            let new = match table_name {
                ast::RenameTableNameKind::As(n) | ast::RenameTableNameKind::To(n) => {
                    object_name(n)?
                }
            };
            if relation_name_taken(&txn.catalog(), &new) {
                return Err(Error::DuplicateTable {
                    message: format!("relation \"{new}\" already exists"),
                });
            }
            def.name = new;
            txn.put_entry(CatalogEntry::Table(def.clone()))?;
            Ok(def)
        }
        Op::AlterColumn { column_name, op } => {
            let pos = column_position(&def, column_name)?;
            match op {
                ast::AlterColumnOperation::SetDefault { value } => {
                    def.columns[pos].default = Some(value.to_string())
                }
                ast::AlterColumnOperation::DropDefault => def.columns[pos].default = None,
                ast::AlterColumnOperation::DropNotNull => {
                    if def.primary_key.contains(&pos) {
                        return Err(Error::InvalidTableDefinition {
                            message: format!(
                                "column \"{}\" is in a primary key",
                                def.columns[pos].name
                            ),
                        });
                    }
                    def.columns[pos].nullable = true;
                }
                ast::AlterColumnOperation::SetNotNull => {
                    if def.consistency == weft_storage::Consistency::Lww
                        && !def.primary_key.contains(&pos)
                    {
                        return Err(Error::unsupported(
                            "NOT NULL on a non-key column of an lww table",
                        ));
                    }
                    check_no_nulls(txn, &def, pos)?;
                    def.columns[pos].nullable = false;
                }
                other => return Err(Error::unsupported(format!("ALTER COLUMN ... {other}"))),
            }
            txn.put_entry(CatalogEntry::Table(def.clone()))?;
            Ok(def)
        }
        other => Err(Error::unsupported(format!("ALTER TABLE ... {other}"))),
    }
}

/// Visits every row of a table in batches, in key order.
pub(super) fn for_each_row(
    txn: &mut Txn,
    def: &TableDef,
    mut f: impl FnMut(&mut Txn, weft_storage::Row) -> Result<()>,
) -> Result<()> {
    let mut resume: Option<Vec<u8>> = None;
    loop {
        let batch =
            txn.reader()
                .scan(def, &KeyRange::full(), resume.as_deref(), None, SCAN_BATCH)?;
        for row in batch.rows {
            f(txn, row)?;
        }
        match batch.resume {
            Some(r) => resume = Some(r),
            None => return Ok(()),
        }
    }
}

/// `ADD CONSTRAINT … UNIQUE (…)` (an index, built from the rows) or `… CHECK (…)` (checked
/// against every row first).
fn add_constraint(
    ctx: &ExecCtx<'_>,
    txn: &mut Txn,
    def: &mut TableDef,
    constraint: &ast::TableConstraint,
) -> Result<()> {
    let taken = |def: &TableDef, name: &str| -> Result<()> {
        if def.checks.iter().any(|c| c.name == name) || relation_name_taken(&txn.catalog(), name) {
            return Err(Error::DuplicateObject {
                message: format!(
                    "constraint \"{name}\" for relation \"{}\" already exists",
                    def.name
                ),
            });
        }
        Ok(())
    };
    match constraint {
        ast::TableConstraint::Unique(u) => {
            let columns = u
                .columns
                .iter()
                .map(|ic| match &ic.column.expr {
                    ast::Expr::Identifier(i) => column_position(def, i),
                    other => Err(Error::unsupported(format!("expression {other} in a key"))),
                })
                .collect::<Result<Vec<_>>>()?;
            let names: Vec<&str> = columns
                .iter()
                .map(|&c| def.columns[c].name.as_str())
                .collect();
            let name = match &u.name {
                Some(n) => ident(n),
                None => format!("{}_{}_key", def.name, names.join("_")),
            };
            taken(def, &name)?;
            super::index::add(
                txn,
                def,
                name,
                super::index::IndexKeys::plain(columns),
                true,
                true,
            )
        }
        ast::TableConstraint::Check(chk) => {
            if def.consistency == weft_storage::Consistency::Lww {
                return Err(Error::unsupported(
                    "CHECK constraints on an lww table (a row merged cell by cell from concurrent writes may not satisfy them)",
                ));
            }
            let name = chk.name.as_ref().map(ident).unwrap_or_else(|| {
                super::check_name(&def.name, &chk.expr, None, |c| {
                    def.checks.iter().any(|x| x.name == c)
                })
            });
            taken(def, &name)?;
            // Plan it now, so a bad CHECK fails here even on an empty table.
            let all: Vec<usize> = (0..def.columns.len()).collect();
            let schema = datafusion::common::DFSchema::try_from_qualified_schema(
                def.name.as_str(),
                &crate::table::table_schema(def, &all),
            )?;
            crate::eval::compile(ctx.state, &chk.expr, &schema)?;
            let check = weft_storage::CheckDef {
                name: name.clone(),
                expr: chk.expr.to_string(),
            };
            let only = TableDef {
                checks: vec![check.clone()],
                ..def.clone()
            };
            let mut rows = Vec::new();
            for_each_row(txn, def, |_, row| {
                rows.push(row);
                Ok(())
            })?;
            crate::dml::constraints::check(ctx, &only, &rows).map_err(|e| match e {
                Error::CheckViolation { detail, object, .. } => Error::CheckViolation {
                    message: format!(
                        "check constraint \"{name}\" of relation \"{}\" is violated by some row",
                        def.name
                    ),
                    detail,
                    object,
                },
                other => other,
            })?;
            def.checks.push(check);
            Ok(())
        }
        ast::TableConstraint::ForeignKey(fk) => super::foreign_key::add(txn, def, fk, None),
        ast::TableConstraint::PrimaryKey(pk) => {
            if def.consistency == weft_storage::Consistency::Lww {
                return Err(Error::unsupported(
                    "adding a primary key to an lww table (each node holds its own rows)",
                ));
            }
            *def = super::primary_key::add(txn, def.clone(), pk)?;
            Ok(())
        }
        other => Err(Error::unsupported(format!("ALTER TABLE ... ADD {other}"))),
    }
}

fn fill_new_column(ctx: &ExecCtx<'_>, txn: &mut Txn, def: &TableDef, pos: usize) -> Result<()> {
    let col = &def.columns[pos];
    if col.default.is_none() && col.nullable {
        return Ok(());
    }
    let mut rows = Vec::new();
    for_each_row(txn, def, |_, row| {
        rows.push(row);
        Ok(())
    })?;
    if rows.is_empty() {
        return Ok(());
    }
    if def.consistency == weft_storage::Consistency::Lww {
        // The existing rows differ from node to node; a Raft-replicated DDL cannot fill them.
        return Err(Error::unsupported(
            "ADD COLUMN with a DEFAULT on an lww table that has rows (each node holds its own \
             rows; add the column without a default and UPDATE them)",
        ));
    }
    let values = default_values(ctx, def, pos, rows.len())?;
    for (old, value) in rows.into_iter().zip(values) {
        if value.is_null() && !col.nullable {
            return Err(Error::NotNullViolation {
                message: format!(
                    "column \"{}\" of relation \"{}\" contains null values",
                    col.name, def.name
                ),
                detail: None,
                object: crate::error::ErrorObject::column(&def.name, &col.name),
            });
        }
        let mut new = old.clone();
        new[pos] = value;
        txn.update(def, &old, new)?;
    }
    Ok(())
}

fn check_no_nulls(txn: &mut Txn, def: &TableDef, pos: usize) -> Result<()> {
    for_each_row(txn, def, |_, row| {
        if row.get(pos).is_none_or(Value::is_null) {
            return Err(Error::NotNullViolation {
                message: format!(
                    "column \"{}\" of relation \"{}\" contains null values",
                    def.columns[pos].name, def.name
                ),
                detail: None,
                object: crate::error::ErrorObject::column(&def.name, &def.columns[pos].name),
            });
        }
        Ok(())
    })
}

fn drop_column(txn: &mut Txn, mut def: TableDef, pos: usize) -> Result<TableDef> {
    if def.primary_key.contains(&pos) {
        return Err(Error::unsupported(format!(
            "dropping primary key column \"{}\" (rows are stored by their primary key)",
            def.columns[pos].name
        )));
    }
    if def.columns.iter().filter(|c| !c.hidden).count() == 1
        && def.primary_key.iter().all(|&k| def.columns[k].hidden)
    {
        // PostgreSQL allows a zero-column table; Weft keeps at least one visible column.
        return Err(Error::unsupported("dropping the last column of a table"));
    }
    let name = def.columns[pos].name.clone();
    let dropped: Vec<u32> = def
        .indexes
        .iter()
        .filter(|i| i.columns.contains(&pos) || i.predicate.iter().any(|c| c.column() == pos))
        .map(|i| i.id)
        .collect();
    for id in dropped {
        txn.drop_index(&def, id)?;
        def.indexes.retain(|i| i.id != id);
    }
    def.checks.retain(|c| !expr_mentions(&c.expr, &name));
    def.columns.remove(pos);
    let remap = |i: &mut usize| {
        if *i > pos {
            *i -= 1;
        }
    };
    def.primary_key.iter_mut().for_each(remap);
    for index in &mut def.indexes {
        index.columns.iter_mut().for_each(remap);
        index
            .predicate
            .iter_mut()
            .for_each(|c| remap(c.column_mut()));
    }
    Ok(def)
}

fn expr_mentions(sql: &str, column: &str) -> bool {
    let Ok(e) = parse_expr(sql) else { return true };
    let mut found = false;
    let _ = visit_expressions(&e, |x: &ast::Expr| {
        match x {
            ast::Expr::Identifier(i) if ident(i) == column => found = true,
            ast::Expr::CompoundIdentifier(parts)
                if parts.last().is_some_and(|i| ident(i) == column) =>
            {
                found = true
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

fn rename_in_expr(sql: &str, old: &str, new: &str) -> Result<String> {
    let mut e = parse_expr(sql)?;
    let _ = visit_expressions_mut(&mut e, |x: &mut ast::Expr| {
        match x {
            ast::Expr::Identifier(i) if ident(i) == old => *i = ast::Ident::with_quote('"', new),
            ast::Expr::CompoundIdentifier(parts) => {
                if let Some(last) = parts.last_mut() {
                    if ident(last) == old {
                        *last = ast::Ident::with_quote('"', new);
                    }
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    Ok(e.to_string())
}
