//! Correlated subqueries DataFusion cannot decorrelate, in the shapes psql sends, such as
//! `(SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d WHERE d.adrelid = a.attrelid ...
//! AND a.atthasdef)`:
//!
//! - DataFusion only decorrelates scalar subqueries that aggregate. PostgreSQL runs any scalar
//!   subquery and fails if it yields more than one row. This analyzer rule wraps the subquery's
//!   one column in `weft_subquery_value`, an aggregate that returns its only input (NULL for
//!   none) and raises PostgreSQL's error for a second row, so DataFusion can decorrelate it.
//! - Such a subquery's conditions on outer columns alone (`a.atthasdef`) become a CASE around it:
//!   no rows and a false condition both give NULL. Other correlation than by equality
//!   (`a.attcollation <> t.typcollation`) is left to `crate::decorrelate`.
//! - `EXISTS (subquery)` outside WHERE becomes `(SELECT count(*) FROM subquery) > 0`, which
//!   DataFusion (or `crate::decorrelate`) can plan; `e IN (subquery)` outside WHERE a CASE over
//!   three such counts.

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::Spans;
use datafusion::common::{
    Column, DFSchema, DataFusionError, ExprSchema, Result as DfResult, ScalarValue,
};
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::logical_expr::expr::{AggregateFunction, Case, Exists, InSubquery};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{lit, Filter, Projection};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Expr, LogicalPlan, LogicalPlanBuilder, Signature,
    Subquery, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

use crate::error::{to_df, Error};

/// The analyzer rule; register it before DataFusion's own rules check subqueries.
#[derive(Debug, Default)]
pub struct ScalarSubqueryValue;

impl AnalyzerRule for ScalarSubqueryValue {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let in_filter = matches!(node, LogicalPlan::Filter(_));
            let inputs: Vec<_> = node
                .inputs()
                .iter()
                .map(|i| Arc::clone(i.schema()))
                .collect();
            node.map_expressions(|e| {
                e.transform_up(|e| match e {
                    Expr::ScalarSubquery(sq) if needs_nullable_value(&sq) => {
                        Ok(Transformed::yes(Expr::ScalarSubquery(nullable_value(sq)?)))
                    }
                    Expr::ScalarSubquery(sq) if needs_value_aggregate(&sq) => {
                        let (condition, sq) = hoist_outer_conditions(sq)?;
                        let value = Expr::ScalarSubquery(wrap(sq)?);
                        Ok(Transformed::yes(match condition {
                            Some(c) => Expr::Case(Case::new(
                                None,
                                vec![(Box::new(c), Box::new(value))],
                                None,
                            )),
                            None => value,
                        }))
                    }
                    Expr::Exists(Exists { subquery, negated }) if !in_filter => {
                        Ok(Transformed::yes(exists_as_count(subquery, negated)?))
                    }
                    Expr::InSubquery(InSubquery {
                        expr,
                        subquery,
                        negated,
                    }) if !in_filter => Ok(Transformed::yes(in_as_counts(
                        *expr, subquery, negated, &inputs,
                    )?)),
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
    !aggregated && sq.subquery.max_rows().is_none_or(|n| n > 1)
}

/// An uncorrelated scalar subquery whose one column cannot be NULL (`(SELECT 1 WHERE $1 = 2)`):
/// it is NULL when the subquery has no row, but DataFusion types the value as its column, and
/// executing it failed with "declared as non-nullable but contains null values".
fn needs_nullable_value(sq: &Subquery) -> bool {
    let fields = sq.subquery.schema().fields();
    sq.outer_ref_columns.is_empty() && fields.len() == 1 && !fields[0].is_nullable()
}

/// The subquery with its column passed through `weft_nullable`, which makes it nullable.
fn nullable_value(sq: Subquery) -> DfResult<Subquery> {
    let plan = Arc::unwrap_or_clone(sq.subquery);
    let (qualifier, field) = plan.schema().qualified_field(0);
    let name = field.name().clone();
    let column = Expr::Column(Column::new(qualifier.cloned(), name.clone()));
    let value = Expr::ScalarFunction(datafusion::logical_expr::expr::ScalarFunction::new_udf(
        Arc::new(datafusion::logical_expr::ScalarUDF::new_from_impl(
            Nullable {
                signature: Signature::any(1, Volatility::Volatile),
            },
        )),
        vec![column],
    ));
    let wrapped = LogicalPlanBuilder::from(plan)
        .project(vec![value.alias(name)])?
        .build()?;
    Ok(Subquery {
        subquery: Arc::new(wrapped),
        ..sq
    })
}

/// Its argument, as a nullable value. Volatile, so that constant folding does not turn
/// `weft_nullable(1)` back into a literal that cannot be NULL.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Nullable {
    signature: Signature,
}

impl datafusion::logical_expr::ScalarUDFImpl for Nullable {
    fn name(&self) -> &str {
        "weft_nullable"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(arg_types.first().cloned().unwrap_or(DataType::Null))
    }

    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> DfResult<FieldRef> {
        let Some(arg) = args.arg_fields.first() else {
            return Err(DataFusionError::Internal(
                "weft_nullable takes one value".into(),
            ));
        };
        Ok(Arc::new(arg.as_ref().clone().with_nullable(true)))
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> DfResult<datafusion::logical_expr::ColumnarValue> {
        args.args
            .into_iter()
            .next()
            .ok_or_else(|| DataFusionError::Internal("weft_nullable takes one value".into()))
    }
}

fn has_outer(e: &Expr) -> bool {
    e.exists(|x| Ok(matches!(x, Expr::OuterReferenceColumn(..))))
        .unwrap_or(false)
}

fn is_outer_only(e: &Expr) -> bool {
    e.column_refs().is_empty() && has_outer(e)
}

fn subquery_of(plan: LogicalPlan, spans: &Spans) -> Subquery {
    let mut outer_ref_columns: Vec<Expr> = Vec::new();
    for e in plan.all_out_ref_exprs() {
        if !outer_ref_columns.contains(&e) {
            outer_ref_columns.push(e);
        }
    }
    Subquery {
        subquery: Arc::new(plan),
        outer_ref_columns,
        spans: spans.clone(),
    }
}

/// Takes the conditions of the subquery's top filter on outer columns alone out, as a condition
/// on the outer row. Those comparing outer with inner columns other than by equality stay:
/// `crate::decorrelate` joins them per distinct outer value.
fn hoist_outer_conditions(sq: Subquery) -> DfResult<(Option<Expr>, Subquery)> {
    let (projection, filter) = match sq.subquery.as_ref() {
        LogicalPlan::Projection(p) => match p.input.as_ref() {
            LogicalPlan::Filter(f) => (Some(p), f),
            _ => return Ok((None, sq)),
        },
        LogicalPlan::Filter(f) => (None, f),
        _ => return Ok((None, sq)),
    };
    let (outer_only, keep): (Vec<&Expr>, Vec<&Expr>) = split_conjunction(&filter.predicate)
        .into_iter()
        .partition(|c| is_outer_only(c));
    if outer_only.is_empty() {
        return Ok((None, sq));
    }
    let input = match conjunction(keep.into_iter().cloned()) {
        Some(p) => LogicalPlan::Filter(Filter::try_new(p, Arc::clone(&filter.input))?),
        None => Arc::unwrap_or_clone(Arc::clone(&filter.input)),
    };
    let mut conditions = Vec::new();
    for c in outer_only {
        let c = c.clone().transform_up(|x| match x {
            Expr::OuterReferenceColumn(_, col) => Ok(Transformed::yes(Expr::Column(col))),
            other => Ok(Transformed::no(other)),
        })?;
        conditions.push(c.data);
    }
    let plan = match projection {
        Some(p) => LogicalPlan::Projection(Projection::try_new(p.expr.clone(), Arc::new(input))?),
        None => input,
    };
    Ok((conjunction(conditions), subquery_of(plan, &sq.spans)))
}

static NEXT_IN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Stands for the subquery's row in a predicate given to [`filter_rows`].
const IN_ROW: &str = "__weft_in_row";

/// The rows of a one-column subquery for which `predicate` over [`IN_ROW`] holds.
///
/// A correlated subquery `SELECT x … WHERE corr` gets the condition below its projection, beside
/// its own (`WHERE corr AND x = e`), where DataFusion decorrelates it; a subquery of another shape
/// or an uncorrelated one is filtered on top, under a name of its own so that its columns cannot
/// be mistaken for the outer query's once DataFusion joins the two (`a IN (SELECT a FROM t)`
/// over `t`).
fn filter_rows(plan: LogicalPlan, predicate: Expr, correlated: bool) -> DfResult<LogicalPlan> {
    let substitute = |value: Expr| {
        predicate
            .clone()
            .transform_up(|x| match x {
                Expr::Column(c) if c.relation.is_none() && c.name == IN_ROW => {
                    Ok(Transformed::yes(value.clone()))
                }
                other => Ok(Transformed::no(other)),
            })
            .map(|t| t.data)
    };
    if correlated {
        if let LogicalPlan::Projection(p) = &plan {
            if let [value] = p.expr.as_slice() {
                let condition = substitute(value.clone().unalias_nested().data)?;
                // One filter, as DataFusion decorrelates a single one below the projection.
                let filtered = match p.input.as_ref() {
                    LogicalPlan::Filter(f) => LogicalPlan::Filter(Filter::try_new(
                        f.predicate.clone().and(condition),
                        Arc::clone(&f.input),
                    )?),
                    _ => LogicalPlan::Filter(Filter::try_new(condition, Arc::clone(&p.input))?),
                };
                return Ok(LogicalPlan::Projection(Projection::try_new(
                    p.expr.clone(),
                    Arc::new(filtered),
                )?));
            }
        }
    }
    let alias = format!(
        "__weft_in{}",
        NEXT_IN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let plan = LogicalPlanBuilder::from(plan).alias(alias)?.build()?;
    let (qualifier, field) = plan.schema().qualified_field(0);
    let condition = substitute(Expr::Column(Column::new(qualifier.cloned(), field.name())))?;
    Ok(LogicalPlan::Filter(Filter::try_new(
        condition,
        Arc::new(plan),
    )?))
}

/// `e IN (subquery)` outside WHERE, with PostgreSQL's three values, from three row counts that
/// DataFusion can plan: true if a row equals `e`; else false if there is no row; else NULL if `e`
/// or a row is NULL; else false.
fn in_as_counts(e: Expr, sq: Subquery, negated: bool, inputs: &[Arc<DFSchema>]) -> DfResult<Expr> {
    let correlated = !sq.outer_ref_columns.is_empty();
    let plan = Arc::unwrap_or_clone(sq.subquery);
    let outer = e
        .clone()
        .transform_up(|x| match x {
            Expr::Column(c) => {
                let field = inputs
                    .iter()
                    .find_map(|s| ExprSchema::field_from_column(s.as_ref(), &c).ok())
                    .ok_or_else(|| {
                        DataFusionError::Plan(format!("column {c} of an IN is not an input"))
                    })?;
                Ok(Transformed::yes(Expr::OuterReferenceColumn(
                    Arc::clone(field),
                    c,
                )))
            }
            other => Ok(Transformed::no(other)),
        })?
        .data;
    let count = |predicate: Option<Expr>| -> DfResult<Expr> {
        let rows = match predicate {
            Some(p) => filter_rows(plan.clone(), p, correlated)?,
            None => plan.clone(),
        };
        exists_as_count(subquery_of(rows, &sq.spans), false)
    };
    let row = || -> Expr { Expr::Column(Column::from_name(IN_ROW)) };
    let equal = count(Some(row().eq(outer)))?;
    let null_row = count(Some(row().is_null()))?;
    let any_row = count(None)?;
    let unknown = lit(ScalarValue::Boolean(None));
    let value = Expr::Case(Case::new(
        None,
        vec![
            (Box::new(equal), Box::new(lit(true))),
            (Box::new(Expr::Not(Box::new(any_row))), Box::new(lit(false))),
            (Box::new(e.is_null().or(null_row)), Box::new(unknown)),
        ],
        Some(Box::new(lit(false))),
    ));
    Ok(if negated {
        Expr::Not(Box::new(value))
    } else {
        value
    })
}

fn exists_as_count(sq: Subquery, negated: bool) -> DfResult<Expr> {
    let mut plan = Arc::unwrap_or_clone(sq.subquery);
    if sq.outer_ref_columns.is_empty() {
        // Uncorrelated: one row answers it.
        plan = LogicalPlanBuilder::from(plan).limit(0, Some(1))?.build()?;
    }
    let count = count_udaf()
        .call(vec![lit(1i64)])
        .alias("weft_exists_count");
    let counted = LogicalPlanBuilder::from(plan)
        .aggregate(Vec::<Expr>::new(), vec![count])?
        .build()?;
    let rows = Expr::ScalarSubquery(Subquery {
        subquery: Arc::new(counted),
        ..sq
    });
    Ok(if negated {
        rows.eq(lit(0i64))
    } else {
        rows.gt(lit(0i64))
    })
}

fn wrap(sq: Subquery) -> DfResult<Subquery> {
    let plan = Arc::unwrap_or_clone(sq.subquery);
    let (qualifier, field) = plan.schema().qualified_field(0);
    let name = field.name().clone();
    let column = Expr::Column(Column::new(qualifier.cloned(), name.clone()));
    let value = Expr::AggregateFunction(AggregateFunction::new_udf(
        value_aggregate(),
        vec![column],
        false,
        None,
        vec![],
        None,
    ));
    let wrapped = LogicalPlanBuilder::from(plan)
        .aggregate(Vec::<Expr>::new(), vec![value.clone()])?
        .project(vec![Expr::Column(Column::from_name(
            value.schema_name().to_string(),
        ))
        .alias(name)])?
        .build()?;
    Ok(Subquery {
        subquery: Arc::new(wrapped),
        ..sq
    })
}

fn value_aggregate() -> Arc<AggregateUDF> {
    Arc::new(AggregateUDF::new_from_impl(SubqueryValue {
        signature: Signature::any(1, Volatility::Immutable),
    }))
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
            Some(f) => Arc::new(
                f.as_ref()
                    .clone()
                    .with_name(self.name())
                    .with_nullable(true),
            ),
            None => Arc::new(Field::new(self.name(), DataType::Null, true)),
        })
    }

    fn accumulator(&self, args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        Ok(Box::new(ValueAccumulator {
            value: ScalarValue::try_from(args.return_field.data_type())?,
            rows: 0,
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(
                format!("{}_value", args.name),
                args.return_field.data_type().clone(),
                true,
            )),
            Arc::new(Field::new(
                format!("{}_rows", args.name),
                DataType::Int64,
                true,
            )),
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
            return Err(to_df(Error::CardinalityViolation));
        }
        self.value = value()?;
        Ok(())
    }
}

impl Accumulator for ValueAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let Some(values) = values.first() else {
            return Ok(());
        };
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
        Ok(vec![
            self.value.clone(),
            ScalarValue::Int64(Some(self.rows)),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        let (Some(values), Some(rows)) = (states.first(), states.get(1)) else {
            return Ok(());
        };
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
