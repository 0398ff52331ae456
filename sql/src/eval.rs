//! Evaluating SQL expressions over rows of one table: DEFAULT, CHECK, SET and RETURNING. Each
//! expression is planned once per statement and evaluated over a whole batch of rows.

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::DFSchema;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::ast::ExprWithAlias;
use datafusion::sql::sqlparser::parser::Parser;
use weft_storage::{DataType, Row, TableDef};

use crate::convert::{array_value, rows_to_batch};
use crate::error::{Error, Result};
use crate::table::table_schema;

/// A planned expression ready to evaluate over batches of the schema it was planned against.
pub(crate) struct Compiled {
    expr: Arc<dyn PhysicalExpr>,
}

pub(crate) fn parse_expr(sql: &str) -> Result<ast::Expr> {
    let mut e = Parser::new(&crate::dialect::WeftDialect::default())
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .map_err(Error::from)?;
    crate::rewrite::rewrite(&mut e);
    Ok(e)
}

/// Plans an expression against a (possibly multi-qualifier) schema.
pub(crate) fn compile(
    state: &SessionState,
    expr: &ast::Expr,
    schema: &DFSchema,
) -> Result<Compiled> {
    let logical = state
        .create_logical_expr_from_sql_expr(
            ExprWithAlias {
                expr: expr.clone(),
                alias: None,
            },
            schema,
        )
        .map_err(Error::from)?;
    // Fold now() and other stable functions to this statement's start, as PostgreSQL does.
    let context = SimplifyContext::builder()
        .with_schema(Arc::new(schema.clone()))
        .with_config_options(Arc::clone(state.config_options()))
        // now() is the transaction's start, which the session has put here (`execute_once`).
        .with_query_execution_start_time(
            state
                .execution_props()
                .query_execution_start_time
                .or_else(|| Some(chrono::Utc::now())),
        )
        .build();
    let simplifier = ExprSimplifier::new(context);
    let logical = simplifier
        .coerce(logical, schema)
        .and_then(|e| crate::datetime_in::input_casts(e, schema))
        .and_then(|e| simplifier.simplify(e))
        .map_err(Error::from)?;
    let physical = state
        .create_physical_expr(logical, schema)
        .map_err(Error::from)?;
    Ok(Compiled { expr: physical })
}

impl Compiled {
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        let value = self.expr.evaluate(batch).map_err(Error::from)?;
        value.into_array(batch.num_rows()).map_err(Error::from)
    }

    pub fn data_type(
        &self,
        schema: &datafusion::arrow::datatypes::Schema,
    ) -> Result<datafusion::arrow::datatypes::DataType> {
        self.expr.data_type(schema).map_err(Error::from)
    }
}

/// A batch of full table rows (all columns, hidden included), qualified by the table name.
pub(crate) struct TableBatch {
    pub batch: RecordBatch,
    pub schema: DFSchema,
}

pub(crate) fn table_batch(def: &TableDef, qualifier: &str, rows: &[Row]) -> Result<TableBatch> {
    let all: Vec<usize> = (0..def.columns.len()).collect();
    let schema = table_schema(def, &all);
    let types: Vec<DataType> = def.columns.iter().map(|c| c.data_type).collect();
    let batch = rows_to_batch(Arc::clone(&schema), &types, rows)?;
    let df = DFSchema::try_from_qualified_schema(qualifier, &schema).map_err(Error::from)?;
    Ok(TableBatch { batch, schema: df })
}

/// An empty-column batch of `n` rows, for evaluating constant or volatile expressions n times.
pub(crate) fn rows_only(n: usize) -> Result<RecordBatch> {
    let schema = Arc::new(datafusion::arrow::datatypes::Schema::empty());
    RecordBatch::try_new_with_options(
        schema,
        vec![],
        &RecordBatchOptions::new().with_row_count(Some(n)),
    )
    .map_err(Error::from)
}

/// Evaluates a column's DEFAULT for `n` rows.
pub(crate) fn default_values(
    ctx: &crate::session::ExecCtx<'_>,
    def: &TableDef,
    col: usize,
    n: usize,
) -> Result<Vec<weft_storage::Value>> {
    let column = &def.columns[col];
    let Some(sql) = &column.default else {
        return Ok(vec![weft_storage::Value::Null; n]);
    };
    // A serial or identity column's default takes its values without planning an expression.
    if let Some(values) = crate::sequence::default_values(ctx.shared, sql, column.data_type, n) {
        return values;
    }
    let expr = parse_expr(sql)?;
    let compiled = compile(ctx.state, &expr, &DFSchema::empty())?;
    let array = compiled.evaluate(&rows_only(n)?)?;
    (0..n)
        .map(|i| array_value(&array, i, column.data_type))
        .collect()
}
