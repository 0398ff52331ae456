//! UPDATE … SET … [FROM …] WHERE … RETURNING: old rows and new values come from one query
//! `SELECT <all target columns>, <SET expressions> FROM target [, from…] WHERE …`.

use std::collections::HashSet;

use datafusion::sql::sqlparser::ast;
use weft_storage::{Catalog, Row, TableDef, Txn, Value};

use super::{column_of, constraints, returning, select, table_factor_target, Params};
use crate::convert::array_value;
use crate::error::{Error, Result};
use crate::pgtype::PgType;
use crate::session::{ExecCtx, QueryOutput};

pub(super) fn target(catalog: &Catalog, u: &ast::Update) -> Result<(TableDef, String)> {
    if !u.table.joins.is_empty() {
        return Err(Error::unsupported("UPDATE with JOIN (use FROM)"));
    }
    table_factor_target(catalog, &u.table.relation)
}

pub(super) fn assignments(def: &TableDef, u: &ast::Update) -> Result<Vec<(usize, ast::Expr)>> {
    let mut out: Vec<(usize, ast::Expr)> = Vec::new();
    for a in &u.assignments {
        match &a.target {
            ast::AssignmentTarget::ColumnName(n) => {
                let c = column_of(def, n)?;
                if out.iter().any(|(x, _)| *x == c) {
                    return Err(Error::syntax(format!(
                        "multiple assignments to same column \"{}\"",
                        def.columns[c].name
                    )));
                }
                out.push((c, a.value.clone()));
            }
            ast::AssignmentTarget::Tuple(_) => {
                return Err(Error::unsupported(
                    "multi-column assignment (SET (a, b) = ...)",
                ))
            }
        }
    }
    Ok(out)
}

pub(super) fn param_hints(def: &TableDef, u: &ast::Update) -> Result<Vec<(usize, PgType)>> {
    Ok(assignments(def, u)?
        .into_iter()
        .filter_map(|(c, e)| match e {
            ast::Expr::Value(v) => match v.value {
                ast::Value::Placeholder(p) => p
                    .strip_prefix('$')
                    .and_then(|n| n.parse::<usize>().ok())
                    .filter(|n| *n > 0)
                    .map(|n| (n, PgType::from_storage(def.columns[c].data_type))),
                _ => None,
            },
            _ => None,
        })
        .collect())
}

pub(super) fn source_query(
    def: &TableDef,
    qualifier: &str,
    u: &ast::Update,
) -> Result<ast::Statement> {
    let mut projection = select::all_columns(def, qualifier);
    for (i, (_, e)) in assignments(def, u)?.into_iter().enumerate() {
        // Named apart: a projection's names must be unique, and two SET expressions may be the
        // same (`SET a = 'x', b = 'x'`) or name a column listed above (`SET a = b`).
        projection.push(ast::SelectItem::ExprWithAlias {
            expr: e,
            alias: ast::Ident::new(format!("weft_set_{i}")),
        });
    }
    let mut from = vec![u.table.clone()];
    match &u.from {
        Some(ast::UpdateTableFromKind::BeforeSet(t))
        | Some(ast::UpdateTableFromKind::AfterSet(t)) => from.extend(t.iter().cloned()),
        None => {}
    }
    select::select_stmt(projection, from, u.selection.clone())
}

pub(super) async fn execute(
    ctx: &ExecCtx<'_>,
    txn: &mut Txn,
    u: &ast::Update,
    params: &Params,
) -> Result<QueryOutput> {
    let (def, qualifier) = target(&txn.catalog(), u)?;
    let sets = assignments(&def, u)?;
    let query = source_query(&def, &qualifier, u)?;
    let batches = select::run(ctx, def.id, &query, params).await?;
    let n = def.columns.len();
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut pairs: Vec<(Row, Row)> = Vec::new();
    for b in &batches {
        for r in 0..b.num_rows() {
            let old: Row = (0..n)
                .map(|c| array_value(b.column(c), r, def.columns[c].data_type))
                .collect::<Result<_>>()?;
            // With FROM, one target row may join several rows; PostgreSQL updates it once.
            let key: Vec<Value> = def.primary_key.iter().map(|&c| old[c].clone()).collect();
            if !seen.insert(format!("{key:?}").into_bytes()) {
                continue;
            }
            let mut new = old.clone();
            for (i, (c, _)) in sets.iter().enumerate() {
                new[*c] = array_value(b.column(n + i), r, def.columns[*c].data_type)?;
            }
            pairs.push((old, new));
        }
    }
    let new_rows: Vec<Row> = pairs.iter().map(|(_, n)| n.clone()).collect();
    constraints::check(ctx, &def, &new_rows)?;
    let olds: Vec<&Row> = pairs.iter().map(|(old, _)| old).collect();
    crate::row_lock::lock_for_write(ctx.shared, txn, &def, &olds).await?;
    drop(olds);
    for (old, new) in pairs {
        txn.update(&def, &old, new)?;
    }
    match &u.returning {
        Some(list) => returning::output(ctx, &def, &qualifier, list, &new_rows, "UPDATE"),
        None => Ok(QueryOutput::Command {
            tag: format!("UPDATE {}", new_rows.len()),
        }),
    }
}
