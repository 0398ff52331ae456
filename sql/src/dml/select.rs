//! The query a DML statement runs to find its rows: built as a SELECT over the target table (with
//! its hidden row id visible), planned by DataFusion and fully collected before any write.

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ParamValues;
use datafusion::physical_plan::collect;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::parser::Parser;
use weft_storage::{TableDef, TableId};

use super::Params;
use crate::error::{Error, Result};
use crate::pgtype::PgType;
use crate::query::infer_params;
use crate::session::ExecCtx;

/// `SELECT <projection> FROM <from> WHERE <selection>` as a statement.
pub(super) fn select_stmt(
    projection: Vec<ast::SelectItem>,
    from: Vec<ast::TableWithJoins>,
    selection: Option<ast::Expr>,
) -> Result<ast::Statement> {
    let mut stmt = Parser::parse_sql(&crate::dialect::WeftDialect::default(), "SELECT 1")?
        .pop()
        .ok_or_else(|| Error::internal("template query did not parse"))?;
    let ast::Statement::Query(q) = &mut stmt else {
        return Err(Error::internal("template is not a query"));
    };
    let ast::SetExpr::Select(s) = q.body.as_mut() else {
        return Err(Error::internal("template is not a select"));
    };
    s.projection = projection;
    s.from = from;
    s.selection = selection;
    Ok(stmt)
}

/// Every column of the target (hidden ones too), qualified, in table order.
pub(super) fn all_columns(def: &TableDef, qualifier: &str) -> Vec<ast::SelectItem> {
    def.columns
        .iter()
        .map(|c| {
            ast::SelectItem::UnnamedExpr(ast::Expr::CompoundIdentifier(vec![
                ast::Ident::with_quote('"', qualifier),
                ast::Ident::with_quote('"', &c.name),
            ]))
        })
        .collect()
}

pub(super) async fn plan(
    ctx: &ExecCtx<'_>,
    target: TableId,
    stmt: &ast::Statement,
    declared: &[Option<PgType>],
) -> Result<datafusion::logical_expr::LogicalPlan> {
    let mut stmt = stmt.clone();
    let locking = crate::row_lock::prepare(&mut stmt, &ctx.shared.catalog(), &|name| {
        ctx.state.aggregate_functions().contains_key(name)
    })?;
    ctx.shared.set_dml_target(Some(target));
    let planned = ctx
        .state
        .statement_to_plan(DfStatement::Statement(Box::new(stmt)))
        .await;
    ctx.shared.set_dml_target(None);
    infer_params(locking.place(planned?)?, declared)
}

/// Runs the query and returns all its rows.
pub(super) async fn run(
    ctx: &ExecCtx<'_>,
    target: TableId,
    stmt: &ast::Statement,
    params: &Params,
) -> Result<Vec<RecordBatch>> {
    let logical = plan(ctx, target, stmt, &params.declared()).await?;
    let logical = if params.values.is_empty() {
        logical
    } else {
        logical.with_param_values(ParamValues::from(params.values.clone()))?
    };
    let physical = ctx.state.create_physical_plan(&logical).await?;
    let physical = crate::union_order::in_order(physical)?;
    Ok(collect(physical, ctx.state.task_ctx()).await?)
}

/// Parameter types DataFusion infers for the query (by position; text where unknown).
pub(super) async fn param_types(
    ctx: &ExecCtx<'_>,
    target: TableId,
    stmt: &ast::Statement,
    declared: &[Option<PgType>],
) -> Result<Vec<PgType>> {
    let logical = plan(ctx, target, stmt, declared).await?;
    let fields = logical.get_parameter_fields()?;
    let mut out: Vec<PgType> = Vec::new();
    for (id, field) in fields {
        let Some(n) = id
            .strip_prefix('$')
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n > 0)
        else {
            continue;
        };
        if out.len() < n {
            out.resize(n, PgType::Text);
        }
        out[n - 1] = field
            .map(|f| PgType::from_arrow(f.data_type()))
            .unwrap_or(PgType::Text);
    }
    Ok(out)
}
