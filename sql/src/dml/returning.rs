//! RETURNING: expressions evaluated over the rows a statement wrote, as a result set.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::sql::sqlparser::ast;
use weft_storage::{Row, TableDef};

use crate::ddl::ident;
use crate::error::{Error, Result};
use crate::eval::{compile, table_batch, Compiled};
use crate::pgtype::{PgType, PG_TYPE_KEY};
use crate::query::rows_output;
use crate::session::{ExecCtx, FieldInfo, QueryOutput};

struct Item {
    name: String,
    /// The stored column it is, when it is a bare column (keeps uuid/jsonb/varchar types).
    column: Option<usize>,
    expr: Compiled,
}

fn bare_column(def: &TableDef, e: &ast::Expr) -> Option<usize> {
    let name = match e {
        ast::Expr::Identifier(i) => ident(i),
        ast::Expr::CompoundIdentifier(parts) if parts.len() == 2 => ident(&parts[1]),
        _ => return None,
    };
    def.column_index(&name).filter(|&i| !def.columns[i].hidden)
}

fn output_name(e: &ast::Expr) -> String {
    crate::naming::figure_name(e).unwrap_or_else(|| "?column?".to_string())
}

fn items(
    ctx: &ExecCtx<'_>,
    def: &TableDef,
    schema: &datafusion::common::DFSchema,
    list: &[ast::SelectItem],
) -> Result<Vec<Item>> {
    let mut out = Vec::new();
    for item in list {
        match item {
            ast::SelectItem::UnnamedExpr(e) => out.push(Item {
                name: output_name(e),
                column: bare_column(def, e),
                expr: compile(ctx.state, e, schema)?,
            }),
            ast::SelectItem::ExprWithAlias { expr, alias } => out.push(Item {
                name: ident(alias),
                column: bare_column(def, expr),
                expr: compile(ctx.state, expr, schema)?,
            }),
            ast::SelectItem::ExprWithAliases { .. } => {
                return Err(Error::unsupported("several aliases for one RETURNING item"))
            }
            ast::SelectItem::Wildcard(_) | ast::SelectItem::QualifiedWildcard(..) => {
                for (i, c) in def.visible_columns() {
                    let e = ast::Expr::Identifier(ast::Ident::with_quote('"', &c.name));
                    out.push(Item {
                        name: c.name.clone(),
                        column: Some(i),
                        expr: compile(ctx.state, &e, schema)?,
                    });
                }
            }
        }
    }
    Ok(out)
}

fn field(def: &TableDef, item: &Item, data_type: datafusion::arrow::datatypes::DataType) -> Field {
    let f = Field::new(&item.name, data_type, true);
    match item.column {
        Some(c) => {
            let t = def.columns[c].data_type;
            let f = f.with_metadata(HashMap::from([(
                PG_TYPE_KEY.to_string(),
                PgType::from_storage(t).name().to_string(),
            )]));
            if crate::pgtype::is_unconstrained_numeric(t) {
                crate::numeric_display::mark(f)
            } else {
                f
            }
        }
        None => f,
    }
}

pub(super) fn describe(
    ctx: &ExecCtx<'_>,
    def: &TableDef,
    qualifier: &str,
    list: &[ast::SelectItem],
) -> Result<Vec<FieldInfo>> {
    let tb = table_batch(def, qualifier, &[])?;
    let items = items(ctx, def, &tb.schema, list)?;
    let schema = tb.batch.schema();
    let fields: Vec<Field> = items
        .iter()
        .map(|i| Ok(field(def, i, i.expr.data_type(&schema)?)))
        .collect::<Result<_>>()?;
    Ok(crate::query::fields_of(&Schema::new(fields)))
}

/// The RETURNING result over `rows` (full rows of `def`).
pub(super) fn output(
    ctx: &ExecCtx<'_>,
    def: &TableDef,
    qualifier: &str,
    list: &[ast::SelectItem],
    rows: &[Row],
    command: &'static str,
) -> Result<QueryOutput> {
    let tb = table_batch(def, qualifier, rows)?;
    let items = items(ctx, def, &tb.schema, list)?;
    let arrays: Vec<ArrayRef> = items
        .iter()
        .map(|i| i.expr.evaluate(&tb.batch))
        .collect::<Result<_>>()?;
    let fields: Vec<Field> = items
        .iter()
        .zip(&arrays)
        .map(|(i, a)| field(def, i, a.data_type().clone()))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let infos = crate::query::fields_of(&schema);
    let batch = if rows.is_empty() {
        RecordBatch::new_empty(schema)
    } else {
        RecordBatch::try_new(schema, arrays).map_err(Error::from)?
    };
    // Unconstrained numerics stay decimals here (a data-modifying CTE reads them); the session
    // turns them into their display text (numeric_display::output).
    Ok(rows_output(infos, vec![batch], command))
}
