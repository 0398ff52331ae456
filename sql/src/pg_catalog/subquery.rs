//! Correlated scalar subqueries without an aggregate, such as psql's
//! `(SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d WHERE d.adrelid = a.attrelid ...)`.
//!
//! DataFusion only decorrelates scalar subqueries that aggregate. PostgreSQL runs any scalar
//! subquery and fails if it yields more than one row. This analyzer rule wraps the subquery's
//! one column in `weft_subquery_value`, an aggregate that returns its only input (NULL for none)
//! and raises PostgreSQL's error for a second row, so DataFusion can decorrelate it as a join.

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, Result as DfResult, ScalarValue};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Expr, LogicalPlan, LogicalPlanBuilder, Signature, Subquery,
    Volatility,
};
use datafusion::optimizer::AnalyzerRule;

use crate::error::{to_df, Error};

/// The analyzer rule; register it before DataFusion's own rules check subqueries.
#[derive(Debug, Default)]
pub struct ScalarSubqueryValue;

impl AnalyzerRule for ScalarSubqueryValue {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            node.map_expressions(|e| {
                e.transform_up(|e| match e {
                    Expr::ScalarSubquery(sq) if needs_value_aggregate(&sq) => {
                        Ok(Transformed::yes(Expr::ScalarSubquery(wrap(sq)?)))
                    }
                    other => Ok(Transformed::no(other)),
                })
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "weft_scalar_subquery_value"
    }
}

fn strip(plan: &LogicalPlan) -> &LogicalPlan {
    match plan {
        LogicalPlan::Projection(p) => strip(&p.input),
        LogicalPlan::SubqueryAlias(a) => strip(&a.input),
        other => other,
    }
}

/// Correlated, one column, and not already at most one row (DataFusion's own test).
fn needs_value_aggregate(sq: &Subquery) -> bool {
    if sq.outer_ref_columns.is_empty() || sq.subquery.schema().fields().len() != 1 {
        return false;
    }
    let aggregated = match strip(&sq.subquery) {
        LogicalPlan::Aggregate(_) => true,
        LogicalPlan::Filter(f) => matches!(f.input.as_ref(), LogicalPlan::Aggregate(_)),
        _ => false,
    };
    !aggregated && !sq.subquery.max_rows().is_some_and(|n| n <= 1)
}

fn wrap(sq: Subquery) -> DfResult<Subquery> {
    let plan = Arc::unwrap_or_clone(sq.subquery);
    let (qualifier, field) = plan.schema().qualified_field(0);
    let name = field.name().clone();
    let column = Expr::Column(Column::new(qualifier.cloned(), name.clone()));
    let value = Expr::AggregateFunction(AggregateFunction::new_udf(value_aggregate(), vec![column], false, None, vec![], None));
    let wrapped = LogicalPlanBuilder::from(plan)
        .aggregate(Vec::<Expr>::new(), vec![value.clone()])?
        .project(vec![Expr::Column(Column::from_name(value.schema_name().to_string())).alias(name)])?
        .build()?;
    Ok(Subquery { subquery: Arc::new(wrapped), ..sq })
}

fn value_aggregate() -> Arc<AggregateUDF> {
    Arc::new(AggregateUDF::new_from_impl(SubqueryValue { signature: Signature::any(1, Volatility::Immutable) }))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct SubqueryValue {
    signature: Signature,
}

impl AggregateUDFImpl for SubqueryValue {
    fn name(&self) -> &str {
        "weft_subquery_value"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(arg_types.first().cloned().unwrap_or(DataType::Null))
    }

    /// Keeps the input field's metadata (the PostgreSQL type of a uuid or oid column).
    fn return_field(&self, arg_fields: &[FieldRef]) -> DfResult<FieldRef> {
        Ok(match arg_fields.first() {
            Some(f) => Arc::new(f.as_ref().clone().with_name(self.name()).with_nullable(true)),
            None => Arc::new(Field::new(self.name(), DataType::Null, true)),
        })
    }

    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        Ok(Box::new(ValueAccumulator { value: ScalarValue::try_from(args.return_field.data_type())?, rows: 0 }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(format!("{}_value", args.name), args.return_field.data_type().clone(), true)),
            Arc::new(Field::new(format!("{}_rows", args.name), DataType::Int64, true)),
        ])
    }
}

#[derive(Debug)]
struct ValueAccumulator {
    value: ScalarValue,
    rows: i64,
}

impl ValueAccumulator {
    fn add(&mut self, rows: i64, value: impl FnOnce() -> DfResult<ScalarValue>) -> DfResult<()> {
        if rows == 0 {
            return Ok(());
        }
        self.rows += rows;
        if self.rows > 1 {
            return Err(to_df(Error::DataException {
                message: "more than one row returned by a subquery used as an expression".into(),
            }));
        }
        self.value = value()?;
        Ok(())
    }
}

impl Accumulator for ValueAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let Some(values) = values.first() else { return Ok(()) };
        for i in 0..values.len() {
            self.add(1, || ScalarValue::try_from_array(values, i))?;
        }
        Ok(())
    }

    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        Ok(self.value.clone())
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.value.size()
    }

    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        Ok(vec![self.value.clone(), ScalarValue::Int64(Some(self.rows))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        let (Some(values), Some(rows)) = (states.first(), states.get(1)) else { return Ok(()) };
        for i in 0..values.len() {
            let n = match ScalarValue::try_from_array(rows, i)? {
                ScalarValue::Int64(Some(n)) => n,
                _ => 0,
            };
            self.add(n, || ScalarValue::try_from_array(values, i))?;
        }
        Ok(())
    }
}
