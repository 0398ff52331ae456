//! UPDATE and DELETE of one row by primary key without a DataFusion plan at Execute (see
//! `point.rs` for the pattern). The row is read with `Txn::get`; SET expressions, planned once at
//! Parse with parameters as extra input columns, are evaluated over that one row; NOT NULL, CHECK,
//! uniqueness, index maintenance and change records go through the same calls as the normal path.

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{Field, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::Expr;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::sql::sqlparser::ast;
use weft_storage::{DataType, Row, Txn};

use super::{constraints, delete, returning, select, update};
use crate::convert::{array_value, rows_to_batch};
use crate::error::{Error, Result};
use crate::pgtype::PgType;
use crate::point::{column_of, shape, PointPlan, Shape, Target};
use crate::session::{ExecCtx, QueryOutput};
use crate::statement::Statement;
use crate::table::table_schema;

pub(crate) struct PointWrite {
    pub target: Target,
    qualifier: String,
    kind: Kind,
}

enum Kind {
    Update {
        /// (column, new value) over `input`: the table's columns, then one column per parameter.
        sets: Vec<(usize, Arc<dyn PhysicalExpr>)>,
        input: SchemaRef,
    },
    Delete,
}

fn param_column(n: usize) -> String {
    format!("__weft_param_{}", n + 1)
}

/// The fast path of a prepared UPDATE or DELETE, if it writes one row by primary key.
pub(crate) async fn prepare(
    ctx: &ExecCtx<'_>,
    stmt: &Statement,
    param_types: &[PgType],
) -> Option<PointPlan> {
    let catalog = ctx.shared.catalog();
    let declared: Vec<Option<PgType>> = param_types.iter().copied().map(Some).collect();
    let param_arrow: Vec<_> = param_types.iter().map(|t| t.to_arrow()).collect();
    let (def, qualifier, query, sets) = match &*stmt.ast {
        ast::Statement::Update(u) if u.from.is_none() && u.or.is_none() => {
            let (def, qualifier) = update::target(&catalog, u).ok()?;
            let sets = update::assignments(&def, u).ok()?;
            let query = update::source_query(&def, &qualifier, u).ok()?;
            (def, qualifier, query, Some(sets))
        }
        ast::Statement::Delete(d) if d.using.is_none() && d.tables.is_empty() => {
            let (def, qualifier) = delete::target(&catalog, d).ok()?;
            let query = delete::source_query(&def, &qualifier, d).ok()?;
            (def, qualifier, query, None)
        }
        _ => return None,
    };
    let plan = select::plan(ctx, def.id, &query, &declared).await.ok()?;
    let shape = shape(&plan)?;
    let target = Target::new(&shape, &param_arrow, catalog)?;
    let n = target.def.columns.len();
    // The source query lists every column of the target, in order, before the SET expressions.
    if shape.table.def().id != def.id
        || shape.table.columns().len() != n
        || (0..n).any(|i| column_of(&shape.projection[i], shape.input, shape.table) != Some(i))
    {
        return None;
    }
    let kind = match sets {
        None if shape.projection.len() == n => Kind::Delete,
        Some(sets) if shape.projection.len() == n + sets.len() => {
            let (input, schema) = input_schema(&shape, &param_arrow)?;
            let compiled = sets
                .iter()
                .zip(&shape.projection[n..])
                .map(|((c, _), e)| Some((*c, compile(ctx, e, &input)?)))
                .collect::<Option<Vec<_>>>()?;
            Kind::Update {
                sets: compiled,
                input: schema,
            }
        }
        _ => return None,
    };
    Some(PointPlan::Write(PointWrite {
        target,
        qualifier,
        kind,
    }))
}

/// The table's columns as the source query qualifies them, then the parameters.
fn input_schema(
    shape: &Shape<'_>,
    param_arrow: &[datafusion::arrow::datatypes::DataType],
) -> Option<(DFSchema, SchemaRef)> {
    let params: Vec<Field> = param_arrow
        .iter()
        .enumerate()
        .map(|(i, t)| Field::new(param_column(i), t.clone(), true))
        .collect();
    let params = DFSchema::from_unqualified_fields(params.into(), Default::default()).ok()?;
    let joined = shape.input.join(&params).ok()?;
    let arrow = Arc::new(joined.as_arrow().clone());
    Some((joined, arrow))
}

/// Plans a SET expression once. Only operators, casts, columns, literals and parameters: no
/// functions (now() must be this statement's time), no subqueries.
fn compile(ctx: &ExecCtx<'_>, e: &Expr, input: &DFSchema) -> Option<Arc<dyn PhysicalExpr>> {
    let plain = !e
        .exists(|x| {
            Ok(!matches!(
                x,
                Expr::Column(_)
                    | Expr::Literal(..)
                    | Expr::Placeholder(_)
                    | Expr::BinaryExpr(_)
                    | Expr::Negative(_)
                    | Expr::Not(_)
                    | Expr::Cast(_)
                    | Expr::Alias(_)
                    | Expr::IsNull(_)
                    | Expr::IsNotNull(_)
            ))
        })
        .ok()?;
    if !plain {
        return None;
    }
    let e = e
        .clone()
        .transform_up(|x| match x {
            Expr::Placeholder(p) => {
                let n =
                    p.id.strip_prefix('$')
                        .and_then(|n| n.parse::<usize>().ok())
                        .and_then(|n| n.checked_sub(1))
                        .ok_or_else(|| {
                            datafusion::common::DataFusionError::Plan("bad parameter".into())
                        })?;
                Ok(Transformed::yes(Expr::Column(Column::new_unqualified(
                    param_column(n),
                ))))
            }
            other => Ok(Transformed::no(other)),
        })
        .ok()?
        .data;
    let schema = Arc::new(input.clone());
    let context = SimplifyContext::builder()
        .with_schema(Arc::clone(&schema))
        .with_config_options(Arc::clone(ctx.state.config_options()))
        .build();
    let simplifier = ExprSimplifier::new(context);
    let e = simplifier
        .coerce(e, input)
        .and_then(|e| crate::datetime_in::input_casts(e, input))
        .and_then(|e| simplifier.simplify(e))
        .and_then(|e| crate::arith::checked_expr(e, input))
        .ok()?;
    ctx.state.create_physical_expr(e, input).ok()
}

pub(crate) async fn execute(
    ctx: &ExecCtx<'_>,
    txn: &mut Txn,
    w: &PointWrite,
    stmt: &Statement,
    params: &[ScalarValue],
) -> Result<QueryOutput> {
    let def = Arc::clone(&w.target.def);
    let params = w.target.cast_params(params)?;
    let old = w.target.fetch(txn, &params)?;
    match (&w.kind, &*stmt.ast) {
        (Kind::Update { sets, input }, ast::Statement::Update(u)) => {
            let mut new_rows: Vec<Row> = Vec::new();
            if let Some(old) = old {
                crate::row_lock::lock_for_write(ctx.shared, txn, &def, &[&old]).await?;
                let batch = row_batch(&def, input, &old, &params)?;
                let mut new = old.clone();
                for (c, expr) in sets {
                    let value = expr.evaluate(&batch)?.into_array(1)?;
                    new[*c] = array_value(&value, 0, def.columns[*c].data_type)?;
                }
                constraints::check(ctx, &def, std::slice::from_ref(&new))?;
                txn.update(&def, &old, new.clone())?;
                new_rows.push(new);
            }
            match &u.returning {
                Some(list) => returning::output(ctx, &def, &w.qualifier, list, &new_rows, "UPDATE"),
                None => Ok(QueryOutput::Command {
                    tag: format!("UPDATE {}", new_rows.len()),
                }),
            }
        }
        (Kind::Delete, ast::Statement::Delete(d)) => {
            let rows: Vec<Row> = old.into_iter().collect();
            if let Some(row) = rows.first() {
                crate::row_lock::lock_for_write(ctx.shared, txn, &def, &[row]).await?;
            }
            for row in &rows {
                txn.delete(&def, row)?;
            }
            match &d.returning {
                Some(list) => returning::output(ctx, &def, &w.qualifier, list, &rows, "DELETE"),
                None => Ok(QueryOutput::Command {
                    tag: format!("DELETE {}", rows.len()),
                }),
            }
        }
        _ => Err(Error::internal("point plan does not match its statement")),
    }
}

/// One row of the table plus the parameter values, as the SET expressions' input.
fn row_batch(
    def: &weft_storage::TableDef,
    input: &SchemaRef,
    row: &Row,
    params: &[ScalarValue],
) -> Result<RecordBatch> {
    let all: Vec<usize> = (0..def.columns.len()).collect();
    let types: Vec<DataType> = def.columns.iter().map(|c| c.data_type).collect();
    let table = rows_to_batch(table_schema(def, &all), &types, std::slice::from_ref(row))?;
    let mut columns: Vec<ArrayRef> = table.columns().to_vec();
    for p in params {
        columns.push(p.to_array_of_size(1)?);
    }
    Ok(RecordBatch::try_new(Arc::clone(input), columns)?)
}
