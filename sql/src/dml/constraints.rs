//! Row constraints checked before a write reaches storage: NOT NULL (23502) and CHECK (23514).
//! Uniqueness (23505) is storage's, against the transaction's view.

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::DataType as ArrowType;
use weft_storage::{Row, TableDef, Value};

use crate::convert::scalar_text;
use crate::error::{Error, Result};
use crate::eval::{compile, parse_expr, table_batch};
use crate::session::ExecCtx;

fn failing_row(def: &TableDef, row: &Row) -> String {
    let cells: Vec<String> = def
        .visible_columns()
        .map(|(i, c)| match row.get(i) {
            None | Some(Value::Null) => "null".to_string(),
            Some(v) => scalar_text(&crate::convert::value_to_scalar(v, c.data_type)),
        })
        .collect();
    format!("Failing row contains ({}).", cells.join(", "))
}

/// Checks NOT NULL and CHECK constraints of `rows` (full rows of `def`).
pub(crate) fn check(ctx: &ExecCtx<'_>, def: &TableDef, rows: &[Row]) -> Result<()> {
    for row in rows {
        for (i, c) in def.columns.iter().enumerate() {
            if !c.nullable && row.get(i).is_none_or(Value::is_null) {
                return Err(Error::NotNullViolation {
                    message: format!("null value in column \"{}\" of relation \"{}\" violates not-null constraint", c.name, def.name),
                    detail: Some(failing_row(def, row)),
                    object: crate::error::ErrorObject::column(&def.name, &c.name),
                });
            }
        }
    }
    if def.checks.is_empty() || rows.is_empty() {
        return Ok(());
    }
    let tb = table_batch(def, &def.name, rows)?;
    for check in &def.checks {
        let compiled = compile(ctx.state, &parse_expr(&check.expr)?, &tb.schema)?;
        let result = compiled.evaluate(&tb.batch)?;
        let result = if result.data_type() == &ArrowType::Boolean {
            result
        } else {
            datafusion::arrow::compute::cast(&result, &ArrowType::Boolean)?
        };
        let bools = result.as_boolean();
        // NULL satisfies a CHECK, as in PostgreSQL.
        if let Some(i) = (0..bools.len()).find(|&i| bools.is_valid(i) && !bools.value(i)) {
            return Err(Error::CheckViolation {
                message: format!(
                    "new row for relation \"{}\" violates check constraint \"{}\"",
                    def.name, check.name
                ),
                detail: Some(failing_row(def, &rows[i])),
                object: crate::error::ErrorObject::constraint(&def.name, &check.name),
            });
        }
    }
    Ok(())
}
