//! Correlated scalar subqueries that pick one row: `(SELECT title FROM book b WHERE
//! b.author_id = a.id ORDER BY price DESC LIMIT 1)`, what Django's `Subquery(qs[:1])` and many
//! hand-written queries send. DataFusion cannot decorrelate a LIMIT; this computes the first row
//! of every key at once and joins it back (decorrelate.rs does the joining):
//!
//! ```text
//!   Limit 1 / Projection* / Sort / Projection* / [SubqueryAlias]*      Projection (value, keys)
//!     Filter  inner = outer_ref AND … rest                        ─►     … the same nodes, keys kept,
//!       bottom                                                           Sort → Filter rn = 1 over
//!                                                                          Window row_number() OVER
//!                                                                          (PARTITION BY keys ORDER BY …)
//!                                                                            Filter rest, keys NOT NULL
//!                                                                              bottom
//! ```
//!
//! Taken apart only when every correlation is `inner expression = outer column` and the nodes
//! between the filter and the limit keep rows as they are (projections, aliases, one sort);
//! anything else is left to DataFusion, which reports it as not supported (0A000).

use std::sync::Arc;

use datafusion::common::tree_node::TreeNode;
use datafusion::common::{Column, DFSchema, Result as DfResult};
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    lit, BinaryExpr, Expr, ExprFunctionExt, Filter, Limit, LogicalPlan, LogicalPlanBuilder,
    Operator, Projection, Sort, Subquery, SubqueryAlias,
};

/// A scalar subquery of the shape above.
pub(crate) struct TopOne<'a> {
    /// The nodes from the subquery's root down to the correlated filter.
    chain: Vec<&'a LogicalPlan>,
    filter: &'a Filter,
    /// `(inner expression, outer column)` of each correlation.
    correlation: Vec<(Expr, Column)>,
    /// The filter's other conjuncts, free of outer references.
    rest: Vec<Expr>,
    /// Rows kept per key: 1 for a scalar subquery, the LIMIT of a LATERAL one.
    fetch: usize,
}

fn outer_column(e: &Expr) -> Option<&Column> {
    match e {
        Expr::OuterReferenceColumn(_, c) => Some(c),
        _ => None,
    }
}

fn has_outer(e: &Expr) -> bool {
    e.exists(|x| Ok(matches!(x, Expr::OuterReferenceColumn(..))))
        .unwrap_or(true)
}

/// The row count of `LIMIT n` (no OFFSET), n a literal from 1 to `most`.
fn limit_of(l: &Limit, most: usize) -> Option<usize> {
    let literal = |e: &Option<Box<Expr>>| match e.as_deref() {
        None => Some(0),
        Some(Expr::Literal(v, _)) => {
            match v.cast_to(&datafusion::arrow::datatypes::DataType::Int64) {
                Ok(datafusion::scalar::ScalarValue::Int64(Some(n))) => usize::try_from(n).ok(),
                _ => None,
            }
        }
        Some(_) => None,
    };
    match (literal(&l.fetch)?, literal(&l.skip)?) {
        (n, 0) if (1..=most).contains(&n) => Some(n),
        _ => None,
    }
}

impl<'a> TopOne<'a> {
    pub(crate) fn of(sq: &'a Subquery, outer_schema: &DFSchema) -> Option<Self> {
        Self::of_limit(sq, outer_schema, 1)
    }

    /// The shape above with `LIMIT n`, n at most `most` (a LATERAL subquery: the first n rows
    /// of each key).
    pub(crate) fn of_limit(sq: &'a Subquery, outer_schema: &DFSchema, most: usize) -> Option<Self> {
        let mut chain = Vec::new();
        let mut node = sq.subquery.as_ref();
        let mut limited: Option<usize> = None;
        let mut sorted = false;
        let filter = loop {
            match node {
                LogicalPlan::Limit(l) if limited.is_none() && !sorted => {
                    limited = Some(limit_of(l, most)?);
                }
                LogicalPlan::Sort(s) if !sorted => {
                    sorted = true;
                    if limited.is_none() {
                        limited = s.fetch.filter(|n| (1..=most).contains(n));
                    }
                    if s.expr.iter().any(|se| has_outer(&se.expr)) {
                        return None;
                    }
                }
                LogicalPlan::Projection(p) if !p.expr.iter().any(has_outer) => {}
                LogicalPlan::SubqueryAlias(_) => {}
                LogicalPlan::Filter(f) => break f,
                _ => return None,
            }
            chain.push(node);
            node = node.inputs().first()?;
        };
        let fetch = limited?;
        if crate::decorrelate::deeply_correlated(&filter.input) {
            return None;
        }
        let mut correlation = Vec::new();
        let mut rest = Vec::new();
        for c in split_conjunction(&filter.predicate) {
            if !has_outer(c) {
                rest.push(c.clone());
                continue;
            }
            let Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Eq,
                right,
            }) = c
            else {
                return None;
            };
            let (inner, outer) = match (outer_column(left), outer_column(right)) {
                (None, Some(o)) if !has_outer(left) => (left.as_ref().clone(), o.clone()),
                (Some(o), None) if !has_outer(right) => (right.as_ref().clone(), o.clone()),
                _ => return None,
            };
            if !outer_schema.has_column(&outer) {
                return None;
            }
            correlation.push((inner, outer));
        }
        if correlation.is_empty() {
            return None;
        }
        Some(TopOne {
            chain,
            filter,
            correlation,
            rest,
            fetch,
        })
    }

    /// The outer columns the subquery reads, in key order.
    pub(crate) fn outer(&self) -> Vec<Column> {
        self.correlation.iter().map(|(_, c)| c.clone()).collect()
    }

    /// The first row of each key: the plan, its key columns and its value column.
    pub(crate) fn per_key(&self, id: u64) -> DfResult<(LogicalPlan, Vec<Column>, String)> {
        let (plan, key_columns) = self.rows_per_key(id)?;
        let value = format!("__weft_sq{id}_v");
        let (qualifier, field) = plan.schema().qualified_field(0);
        let value_column = Expr::Column(Column::new(qualifier.cloned(), field.name()));
        let keys = key_columns.iter().cloned().map(Expr::Column);
        let plan = LogicalPlanBuilder::from(plan)
            .project([value_column.alias(&value)].into_iter().chain(keys))?
            .build()?;
        Ok((plan, key_columns, value))
    }

    /// The first rows of each key (`fetch` of them): the subquery's columns, then the keys.
    pub(crate) fn rows_per_key(&self, id: u64) -> DfResult<(LogicalPlan, Vec<Column>)> {
        let key_names: Vec<String> = (0..self.correlation.len())
            .map(|i| format!("__weft_sq{id}_k{i}"))
            .collect();
        let row = format!("__weft_sq{id}_rn");
        let keys = || key_names.iter().map(|k| Expr::Column(Column::from_name(k)));
        let bottom = self.filter.input.as_ref().clone();
        let mut kept: Vec<Expr> = self
            .correlation
            .iter()
            .map(|(inner, _)| inner.clone().is_not_null())
            .collect();
        kept.extend(self.rest.iter().cloned());
        let columns = bottom.schema().columns().into_iter().map(Expr::Column);
        let mut plan = LogicalPlanBuilder::from(bottom)
            .filter(conjunction(kept))?
            .project(
                columns.chain(
                    self.correlation
                        .iter()
                        .zip(&key_names)
                        .map(|((inner, _), k)| inner.clone().alias(k)),
                ),
            )?
            .build()?;
        let mut windowed = false;
        for node in self.chain.iter().rev() {
            plan = match node {
                LogicalPlan::Projection(p) => {
                    let exprs = p.expr.iter().cloned().chain(keys()).collect();
                    LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(plan))?)
                }
                LogicalPlan::SubqueryAlias(a) => LogicalPlan::SubqueryAlias(
                    SubqueryAlias::try_new(Arc::new(plan), a.alias.clone())?,
                ),
                LogicalPlan::Sort(s) => {
                    windowed = true;
                    first_of_each(plan, keys().collect(), Some(s), &row, self.fetch)?
                }
                LogicalPlan::Limit(_) if !windowed => {
                    windowed = true;
                    first_of_each(plan, keys().collect(), None, &row, self.fetch)?
                }
                _ => plan,
            };
        }
        let key_columns = key_names.iter().map(Column::from_name).collect();
        Ok((plan, key_columns))
    }
}

fn conjunction(exprs: Vec<Expr>) -> Expr {
    exprs
        .into_iter()
        .reduce(Expr::and)
        .unwrap_or_else(|| lit(true))
}

/// The rows of `plan` numbered within each key in `sort`'s order, only the first `fetch` kept,
/// and the columns of `plan` projected again (the number dropped).
fn first_of_each(
    plan: LogicalPlan,
    keys: Vec<Expr>,
    sort: Option<&Sort>,
    row: &str,
    fetch: usize,
) -> DfResult<LogicalPlan> {
    let columns: Vec<Expr> = plan
        .schema()
        .columns()
        .into_iter()
        .map(Expr::Column)
        .collect();
    let mut number = row_number().partition_by(keys);
    if let Some(s) = sort {
        number = number.order_by(s.expr.clone());
    }
    LogicalPlanBuilder::from(plan)
        .window([number.build()?.alias(row)])?
        .filter(Expr::Column(Column::from_name(row)).lt_eq(lit(fetch as u64)))?
        .project(columns)?
        .build()
}
