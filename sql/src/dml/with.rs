//! Data-modifying CTEs: `WITH moved AS (DELETE … RETURNING …) INSERT INTO archive SELECT * FROM
//! moved`; and an UPDATE or DELETE under CTEs (`WITH j AS (SELECT … FOR UPDATE SKIP LOCKED)
//! UPDATE jobs … FROM j`), whose CTEs, plain ones too, all run first, once each.
//!
//! ```text
//!   WITH a AS (DML₁ RETURNING …), b AS (SELECT …), c AS (DML₂ …)  main
//!     DML₁, DML₂ run first, in order, in the statement's transaction
//!     their RETURNING rows ──► in-memory tables named a, c (SessionShared::cte_tables)
//!     main (with the remaining CTEs) runs and reads them by name ──► tables dropped
//! ```
//!
//! PostgreSQL runs the CTEs and the main statement on one snapshot, so the main statement does
//! not see the CTEs' own changes to tables, only their RETURNING rows. Weft's statements read
//! their transaction's writes, so here the main statement (and a later DML CTE) does see them;
//! statements that read a changed table only through the CTE's name behave alike.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{MemTable, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast;
use futures::TryStreamExt;
use weft_storage::Txn;

use crate::ddl::ident;
use crate::error::{Error, Result};
use crate::pgtype::PgType;
use crate::session::{ExecCtx, FieldInfo, QueryOutput, Session};
use crate::statement::Statement;

/// Whether a query has a CTE that is an INSERT, UPDATE or DELETE, or is an UPDATE or DELETE
/// under CTEs (`WITH j AS (SELECT … FOR UPDATE SKIP LOCKED) UPDATE jobs … FROM j`): its CTEs run
/// first, here.
pub(crate) fn has_dml_ctes(q: &ast::Query) -> bool {
    q.with
        .as_ref()
        .is_some_and(|w| modifies(q) || w.cte_tables.iter().any(|c| dml_of(c).is_some()))
}

/// Whether the query's main part is an UPDATE or DELETE: then every CTE runs first (once, as in
/// PostgreSQL), its rows a table the main statement reads by the CTE's name.
fn modifies(q: &ast::Query) -> bool {
    matches!(
        q.body.as_ref(),
        ast::SetExpr::Update(_) | ast::SetExpr::Delete(_)
    )
}

/// Whether `cte` runs before the main statement: a data-modifying one, or any under an UPDATE
/// or DELETE.
fn runs_first(q: &ast::Query, cte: &ast::Cte) -> bool {
    dml_of(cte).is_some() || modifies(q)
}

/// A CTE that runs on its own cannot read itself: `WITH RECURSIVE … UPDATE` is not supported.
fn refuse_recursive(q: &ast::Query) -> Result<()> {
    if modifies(q) && q.with.as_ref().is_some_and(|w| w.recursive) {
        return Err(Error::unsupported("WITH RECURSIVE under UPDATE or DELETE"));
    }
    Ok(())
}

fn dml_of(cte: &ast::Cte) -> Option<&ast::Statement> {
    match cte.query.body.as_ref() {
        ast::SetExpr::Insert(s) | ast::SetExpr::Update(s) | ast::SetExpr::Delete(s) => Some(s),
        _ => None,
    }
}

/// The statement the CTEs are attached to, keeping the CTEs that are not data-modifying.
fn main_statement(q: &ast::Query) -> Result<ast::Statement> {
    let rest: Vec<ast::Cte> = q
        .with
        .iter()
        .flat_map(|w| w.cte_tables.iter())
        .filter(|c| dml_of(c).is_none())
        .cloned()
        .collect();
    let with = q.with.as_ref().and_then(|w| {
        (!rest.is_empty()).then(|| ast::With {
            with_token: w.with_token.clone(),
            recursive: w.recursive,
            cte_tables: rest,
        })
    });
    match q.body.as_ref() {
        ast::SetExpr::Insert(ast::Statement::Insert(i)) => {
            let mut i = i.clone();
            if let Some(with) = with {
                match i.source.as_mut() {
                    Some(source) if source.with.is_none() => source.with = Some(with),
                    _ => return Err(Error::unsupported("WITH on INSERT … VALUES or nested WITH")),
                }
            }
            Ok(ast::Statement::Insert(i))
        }
        // Every CTE ran first (`runs_first`).
        ast::SetExpr::Update(s) | ast::SetExpr::Delete(s) => Ok(s.clone()),
        _ => {
            let mut main = q.clone();
            main.with = with;
            Ok(ast::Statement::Query(Box::new(main)))
        }
    }
}

/// The schema of a CTE's rows: its first batch's types (those of the describing fields when it
/// has none) under the output names the client would see.
fn schema_of(fields: &[FieldInfo], first: Option<&RecordBatch>) -> Schema {
    Schema::new(
        fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let data_type = first
                    .and_then(|b| b.schema().fields().get(i).map(|x| x.data_type().clone()))
                    .unwrap_or_else(|| f.pg_type.to_arrow());
                Field::new(&f.name, data_type, true)
            })
            .collect::<Vec<_>>(),
    )
}

fn cte_name(cte: &ast::Cte) -> String {
    ident(&cte.alias.name)
}

/// The rows of a CTE's RETURNING as a table, its columns renamed as the CTE's alias says.
fn table_of(cte: &ast::Cte, schema: &Schema, batches: Vec<RecordBatch>) -> Result<MemTable> {
    let names: Vec<String> = cte.alias.columns.iter().map(|c| ident(&c.name)).collect();
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| match names.get(i) {
            Some(n) => f.as_ref().clone().with_name(n),
            None => f.as_ref().clone(),
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let batches = batches
        .into_iter()
        .map(|b| RecordBatch::try_new(Arc::clone(&schema), b.columns().to_vec()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(Error::from)?;
    MemTable::try_new(schema, vec![batches]).map_err(Error::from)
}

/// Clears the CTE tables when dropped, whether the statement succeeded or not.
struct CteScope<'a>(&'a crate::shared::SessionShared);

impl Drop for CteScope<'_> {
    fn drop(&mut self) {
        self.0.set_cte_tables(Vec::new());
    }
}

pub(crate) async fn execute(
    ctx: &ExecCtx<'_>,
    txn: &mut Txn,
    stmt: &Statement,
    q: &ast::Query,
    param_types: &[PgType],
    params: Vec<ScalarValue>,
) -> Result<QueryOutput> {
    refuse_recursive(q)?;
    let scope = CteScope(ctx.shared);
    let mut tables: Vec<(String, Arc<dyn TableProvider>)> = Vec::new();
    for cte in q.with.iter().flat_map(|w| w.cte_tables.iter()) {
        if !runs_first(q, cte) {
            continue;
        }
        // Earlier CTEs are visible to later ones by name.
        scope.0.set_cte_tables(tables.clone());
        let Some(dml) = dml_of(cte) else {
            let sub = Statement::query((*cte.query).clone(), Arc::clone(&stmt.sql));
            let declared: Vec<Option<PgType>> = param_types.iter().copied().map(Some).collect();
            let plan = crate::query::plan(ctx.state, &sub, &declared, ctx.shared.catalog()).await?;
            let out = crate::query::execute(ctx, &plan, &sub, params.clone()).await?;
            if let QueryOutput::Rows { fields, stream, .. } = out {
                let batches: Vec<RecordBatch> = stream.try_collect().await?;
                let table = table_of(cte, &schema_of(&fields, batches.first()), batches)?;
                tables.push((cte_name(cte), Arc::new(table)));
            }
            continue;
        };
        let sub = Statement {
            ast: Arc::new(dml.clone()),
            sql: Arc::clone(&stmt.sql),
            live: false,
            overriding: None,
        };
        let out = Box::pin(super::execute(ctx, txn, &sub, param_types, params.clone())).await?;
        if let QueryOutput::Rows { stream, .. } = out {
            let batches: Vec<RecordBatch> = stream.try_collect().await?;
            let Some(schema) = batches.first().map(|b| b.schema()) else {
                return Err(Error::internal("RETURNING without a batch"));
            };
            let table = table_of(cte, &schema, batches)?;
            tables.push((cte_name(cte), Arc::new(table)));
        }
    }
    scope.0.set_cte_tables(tables);
    let main = Statement {
        ast: Arc::new(main_statement(q)?),
        sql: Arc::clone(&stmt.sql),
        live: false,
        overriding: None,
    };
    let out = match &*main.ast {
        ast::Statement::Query(_) => {
            let catalog = ctx.shared.catalog();
            let declared: Vec<Option<PgType>> = param_types.iter().copied().map(Some).collect();
            let plan = crate::query::plan(ctx.state, &main, &declared, catalog).await?;
            // Planned: the tables are captured by the plan; the stream reads them from there.
            crate::query::execute(ctx, &plan, &main, params).await?
        }
        _ => Box::pin(super::execute(ctx, txn, &main, param_types, params)).await?,
    };
    drop(scope);
    Ok(out)
}

/// Parameter types and RowDescription, planning the main statement over empty CTE tables typed
/// as the CTEs' RETURNING lists are.
pub(crate) async fn describe(
    session: &Session,
    q: &ast::Query,
    declared: &[Option<PgType>],
) -> Result<(Vec<PgType>, Option<Arc<Vec<FieldInfo>>>)> {
    let shared = &session.shared;
    let scope = CteScope(shared);
    let mut types: Vec<Option<PgType>> = declared.to_vec();
    let merge = |types: &mut Vec<Option<PgType>>, found: &[PgType]| {
        for (i, t) in found.iter().enumerate() {
            if types.len() <= i {
                types.resize(i + 1, None);
            }
            if types[i].is_none() && *t != PgType::Text {
                types[i] = Some(*t);
            }
        }
    };
    refuse_recursive(q)?;
    let mut tables: Vec<(String, Arc<dyn TableProvider>)> = Vec::new();
    for cte in q.with.iter().flat_map(|w| w.cte_tables.iter()) {
        if !runs_first(q, cte) {
            continue;
        }
        scope.0.set_cte_tables(tables.clone());
        let (found, fields) = match dml_of(cte) {
            Some(dml) => {
                Box::pin(super::describe(session, &statement(dml.clone()), &types)).await?
            }
            None => {
                let sub = statement(ast::Statement::Query(cte.query.clone()));
                let plan =
                    crate::query::plan(&session.state, &sub, &types, shared.catalog()).await?;
                (plan.param_types.clone(), Some(Arc::clone(&plan.fields)))
            }
        };
        merge(&mut types, &found);
        // Without RETURNING there is no table: the main statement cannot name it.
        let Some(fields) = fields else {
            continue;
        };
        let schema = schema_of(&fields, None);
        let table = table_of(
            cte,
            &schema,
            vec![RecordBatch::new_empty(Arc::new(schema.clone()))],
        )?;
        tables.push((cte_name(cte), Arc::new(table)));
    }
    scope.0.set_cte_tables(tables);
    let main = statement(main_statement(q)?);
    let (found, fields) = match &*main.ast {
        ast::Statement::Query(_) => {
            let plan = crate::query::plan(&session.state, &main, &types, shared.catalog()).await?;
            (plan.param_types.clone(), Some(Arc::clone(&plan.fields)))
        }
        _ => Box::pin(super::describe(session, &main, &types)).await?,
    };
    merge(&mut types, &found);
    drop(scope);
    Ok((
        types
            .into_iter()
            .map(|t| t.unwrap_or(PgType::Text))
            .collect(),
        fields,
    ))
}

fn statement(ast: ast::Statement) -> Statement {
    let sql: Arc<str> = Arc::from(ast.to_string());
    Statement {
        ast: Arc::new(ast),
        sql,
        live: false,
        overriding: None,
    }
}
