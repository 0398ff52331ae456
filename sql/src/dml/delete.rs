//! DELETE FROM … [USING …] WHERE … RETURNING.

use std::collections::HashSet;

use datafusion::sql::sqlparser::ast;
use weft_storage::{Catalog, Row, TableDef, Txn, Value};

use super::{returning, select, table_factor_target, Params};
use crate::convert::array_value;
use crate::error::{Error, Result};
use crate::session::{ExecCtx, QueryOutput};

fn from_list(d: &ast::Delete) -> &Vec<ast::TableWithJoins> {
    match &d.from {
        ast::FromTable::WithFromKeyword(t) | ast::FromTable::WithoutKeyword(t) => t,
    }
}

pub(super) fn target(catalog: &Catalog, d: &ast::Delete) -> Result<(TableDef, String)> {
    let from = from_list(d);
    match from.as_slice() {
        [t] if t.joins.is_empty() => table_factor_target(catalog, &t.relation),
        _ => Err(Error::unsupported("DELETE from several tables (use USING)")),
    }
}

pub(super) fn source_query(
    def: &TableDef,
    qualifier: &str,
    d: &ast::Delete,
) -> Result<ast::Statement> {
    if d.limit.is_some() || !d.order_by.is_empty() {
        return Err(Error::unsupported("DELETE with ORDER BY or LIMIT"));
    }
    let mut from = from_list(d).clone();
    if let Some(using) = &d.using {
        from.extend(using.iter().cloned());
    }
    select::select_stmt(
        select::all_columns(def, qualifier),
        from,
        d.selection.clone(),
    )
}

pub(super) async fn execute(
    ctx: &ExecCtx<'_>,
    txn: &mut Txn,
    d: &ast::Delete,
    params: &Params,
) -> Result<QueryOutput> {
    let (def, qualifier) = target(&txn.catalog(), d)?;
    let query = source_query(&def, &qualifier, d)?;
    let batches = select::run(ctx, def.id, &query, params).await?;
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut rows: Vec<Row> = Vec::new();
    for b in &batches {
        for r in 0..b.num_rows() {
            let row: Row = (0..def.columns.len())
                .map(|c| array_value(b.column(c), r, def.columns[c].data_type))
                .collect::<Result<_>>()?;
            let key: Vec<Value> = def.primary_key.iter().map(|&c| row[c].clone()).collect();
            if seen.insert(format!("{key:?}").into_bytes()) {
                rows.push(row);
            }
        }
    }
    let locked: Vec<&Row> = rows.iter().collect();
    crate::row_lock::lock_for_write(ctx.shared, txn, &def, &locked).await?;
    drop(locked);
    for row in &rows {
        txn.delete(&def, row)?;
    }
    match &d.returning {
        Some(list) => returning::output(ctx, &def, &qualifier, list, &rows, "DELETE"),
        None => Ok(QueryOutput::Command {
            tag: format!("DELETE {}", rows.len()),
        }),
    }
}
