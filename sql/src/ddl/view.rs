//! CREATE VIEW: the query is validated by planning it now and stored as SQL text.

use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast;
use weft_storage::{CatalogEntry, Txn, ViewDef};

use super::{ident, object_name, tag};
use crate::error::{Error, Result};
use crate::session::{ExecCtx, QueryOutput};

pub(super) async fn create(
    ctx: &ExecCtx<'_>,
    txn: &mut Txn,
    cv: &ast::CreateView,
) -> Result<QueryOutput> {
    if cv.materialized {
        return Err(Error::unsupported("CREATE MATERIALIZED VIEW"));
    }
    let name = object_name(&cv.name)?;
    let catalog = txn.catalog();
    let existing = catalog.get_by_name(&name).cloned();
    let id = match &existing {
        Some(CatalogEntry::View(v)) if cv.or_replace => v.id,
        Some(_) if cv.if_not_exists => return Ok(tag("CREATE VIEW")),
        Some(_) => {
            return Err(Error::DuplicateTable {
                message: format!("relation \"{name}\" already exists"),
            })
        }
        None => txn.alloc_id()?,
    };
    let mut query = cv.query.to_string();
    if !cv.columns.is_empty() {
        let cols: Vec<String> = cv
            .columns
            .iter()
            .map(|c| format!("\"{}\"", ident(&c.name)))
            .collect();
        query = format!("SELECT * FROM ({query}) AS \"{name}\"({})", cols.join(", "));
    }
    let stmt = datafusion::sql::sqlparser::parser::Parser::parse_sql(
        &crate::dialect::WeftDialect::default(),
        &query,
    )?
    .pop()
    .ok_or_else(|| Error::syntax("empty view definition"))?;
    let plan = ctx
        .state
        .statement_to_plan(DfStatement::Statement(Box::new(stmt)))
        .await?;
    let columns = plan
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    // CREATE OR REPLACE keeps the comments (COMMENT ON), as PostgreSQL does.
    let comments = match existing {
        Some(CatalogEntry::View(v)) => v.comments,
        _ => Default::default(),
    };
    txn.put_entry(CatalogEntry::View(ViewDef {
        id,
        name,
        query,
        columns,
        comments,
    }))?;
    Ok(tag("CREATE VIEW"))
}
