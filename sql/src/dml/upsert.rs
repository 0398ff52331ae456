//! INSERT … ON CONFLICT: DO NOTHING, or DO UPDATE SET … = EXCLUDED.… [WHERE …] on the row that
//! holds the conflicting key.

use std::ops::Bound;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::sql::sqlparser::ast;
use weft_storage::{KeyRange, Row, TableDef, Txn, Value};

use super::{column_of, constraints, Params};
use crate::convert::array_value;
use crate::ddl::ident;
use crate::error::{Error, Result};
use crate::eval::{compile, table_batch, Compiled};
use crate::session::ExecCtx;

/// Which key decides a conflict: the primary key (None) or a unique index.
type Arbiter = Option<weft_storage::IndexId>;

fn arbiters(def: &TableDef, target: &Option<ast::ConflictTarget>) -> Result<Vec<Arbiter>> {
    let no_match = || Error::InvalidColumnReference {
        message:
            "there is no unique or exclusion constraint matching the ON CONFLICT specification"
                .into(),
    };
    Ok(match target {
        None => std::iter::once(None)
            .chain(def.indexes.iter().filter(|i| i.unique).map(|i| Some(i.id)))
            .collect(),
        Some(ast::ConflictTarget::Columns(cols)) => {
            let mut wanted: Vec<usize> = cols
                .iter()
                .map(|c| column_of(def, &ast::ObjectName::from(vec![c.clone()])))
                .collect::<Result<_>>()?;
            wanted.sort_unstable();
            let same = |cols: &[usize]| {
                let mut c = cols.to_vec();
                c.sort_unstable();
                c == wanted
            };
            if same(&def.primary_key) {
                vec![None]
            } else {
                let idx = def
                    .indexes
                    .iter()
                    .find(|i| i.unique && i.is_plain_and_total() && same(&i.columns))
                    .ok_or_else(no_match)?;
                vec![Some(idx.id)]
            }
        }
        Some(ast::ConflictTarget::OnConstraint(name)) => {
            let n = name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .map(ident)
                .unwrap_or_default();
            if n == def.pkey_name {
                vec![None]
            } else {
                let idx = def
                    .indexes
                    .iter()
                    .find(|i| i.unique && i.name == n)
                    .ok_or_else(|| Error::UndefinedObject {
                        message: format!(
                            "constraint \"{n}\" for table \"{}\" does not exist",
                            def.name
                        ),
                    })?;
                vec![Some(idx.id)]
            }
        }
    })
}

fn existing(txn: &Txn, def: &TableDef, arbiter: Arbiter, row: &Row) -> Result<Option<Row>> {
    match arbiter {
        None => {
            let pk: Vec<Value> = def.primary_key.iter().map(|&c| row[c].clone()).collect();
            Ok(txn.get(def, &pk)?)
        }
        Some(id) => {
            // A row a partial index leaves out conflicts with nothing in it.
            let Some(index) = def.indexes.iter().find(|i| i.id == id && i.covers(row)) else {
                return Ok(None);
            };
            let key: Vec<Value> = index
                .columns
                .iter()
                .enumerate()
                .map(|(i, &c)| match index.function(i) {
                    Some(f) => f.apply(&row[c]),
                    None => row[c].clone(),
                })
                .collect();
            if key.iter().any(Value::is_null) {
                return Ok(None);
            }
            let range = KeyRange {
                lower: Bound::Included(key.clone()),
                upper: Bound::Included(key),
            };
            let batch = txn.reader().index_scan(def, id, &range, None, None, 1)?;
            Ok(batch.rows.into_iter().next())
        }
    }
}

struct DoUpdate {
    sets: Vec<(usize, Compiled)>,
    filter: Option<Compiled>,
}

/// Evaluates DO UPDATE over one (existing, proposed) pair; None if its WHERE rejects the row.
fn updated_row(
    def: &TableDef,
    qualifier: &str,
    plan: &DoUpdate,
    old: &Row,
    proposed: &Row,
) -> Result<Option<Row>> {
    let a = table_batch(def, qualifier, std::slice::from_ref(old))?;
    let b = table_batch(def, "excluded", std::slice::from_ref(proposed))?;
    let schema = Arc::new(Schema::new(
        a.batch
            .schema()
            .fields()
            .iter()
            .chain(b.batch.schema().fields().iter())
            .cloned()
            .collect::<Vec<_>>(),
    ));
    let columns = a
        .batch
        .columns()
        .iter()
        .chain(b.batch.columns())
        .cloned()
        .collect();
    let batch = RecordBatch::try_new(schema, columns)?;
    if let Some(f) = &plan.filter {
        let v = f.evaluate(&batch)?;
        let v =
            datafusion::arrow::compute::cast(&v, &datafusion::arrow::datatypes::DataType::Boolean)?;
        let b = v.as_boolean();
        if b.is_null(0) || !b.value(0) {
            return Ok(None);
        }
    }
    let mut new = old.clone();
    for (c, e) in &plan.sets {
        new[*c] = array_value(&e.evaluate(&batch)?, 0, def.columns[*c].data_type)?;
    }
    Ok(Some(new))
}

pub(super) async fn execute(
    ctx: &ExecCtx<'_>,
    txn: &mut Txn,
    def: &TableDef,
    qualifier: &str,
    oc: &ast::OnConflict,
    rows: Vec<Row>,
    params: &Params,
) -> Result<Vec<Row>> {
    let arbiters = arbiters(def, &oc.conflict_target)?;
    let plan = match &oc.action {
        ast::OnConflictAction::DoNothing => None,
        ast::OnConflictAction::DoUpdate(du) => {
            if oc.conflict_target.is_none() {
                return Err(Error::syntax(
                    "ON CONFLICT DO UPDATE requires inference specification or constraint name",
                ));
            }
            let a = table_batch(def, qualifier, &[])?;
            let b = table_batch(def, "excluded", &[])?;
            let schema = a.schema.join(&b.schema)?;
            // `SET name = $3`: the statement's parameters, bound.
            let bound = |e: &ast::Expr| -> Result<ast::Expr> {
                let mut e = e.clone();
                super::insert::substitute_params(&mut e, params)?;
                Ok(e)
            };
            let sets = du
                .assignments
                .iter()
                .map(|asg| match &asg.target {
                    ast::AssignmentTarget::ColumnName(n) => Ok((
                        column_of(def, n)?,
                        compile(ctx.state, &bound(&asg.value)?, &schema)?,
                    )),
                    ast::AssignmentTarget::Tuple(_) => {
                        Err(Error::unsupported("multi-column assignment in ON CONFLICT"))
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            let filter = du
                .selection
                .as_ref()
                .map(|e| compile(ctx.state, &bound(e)?, &schema))
                .transpose()?;
            Some(DoUpdate { sets, filter })
        }
    };
    let mut written = Vec::new();
    'rows: for row in rows {
        for &arbiter in &arbiters {
            if let Some(old) = existing(txn, def, arbiter, &row)? {
                if let Some(plan) = &plan {
                    crate::row_lock::lock_for_write(ctx.shared, txn, def, &[&old]).await?;
                    if let Some(new) = updated_row(def, qualifier, plan, &old, &row)? {
                        constraints::check(ctx, def, std::slice::from_ref(&new))?;
                        txn.update(def, &old, new.clone())?;
                        written.push(new);
                    }
                }
                continue 'rows;
            }
        }
        txn.insert(def, row.clone())?;
        written.push(row);
    }
    Ok(written)
}
