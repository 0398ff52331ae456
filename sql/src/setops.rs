//! `INTERSECT ALL` and `EXCEPT ALL` with PostgreSQL's multiset semantics.
//!
//! DataFusion plans both as a semi / anti join of the two inputs on every column (nulls equal),
//! which is set semantics on the right side: `{2, 2, 3} EXCEPT ALL {2}` gives `{3}` instead of
//! `{2, 3}`, and `INTERSECT ALL` keeps every copy of the left. Numbering the copies of each row
//! on both sides and joining on the number too gives the multiset answer:
//!
//! ```text
//!  left ⋉ right  on c1..cn                 left' ⋉ right'  on c1..cn, n
//!                                  ─►       left'  = left  + row_number() OVER (PARTITION BY c1..cn) AS n
//!                                           right' = right + row_number() OVER (PARTITION BY c1..cn) AS n
//! ```
//!
//! The k-th copy of a left row survives `INTERSECT ALL` when the right has at least k copies and
//! `EXCEPT ALL` when it has fewer: min(l, r) and max(l − r, 0) copies, as in PostgreSQL.
//!
//! The set operations are recognised by shape: a semi or anti join whose nulls compare equal,
//! with no filter, on every column of the left, whose left is not a `DISTINCT` (that is the
//! plain `INTERSECT` / `EXCEPT`). SQL has no other way to write such a join before optimization.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, NullEquality, Result as DfResult};
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::{
    Expr, ExprFunctionExt, Join, JoinType, LogicalPlan, LogicalPlanBuilder,
};
use datafusion::optimizer::AnalyzerRule;

/// The analyzer rule; runs before type coercion, which then coerces the new join keys.
#[derive(Debug, Default)]
pub(crate) struct MultisetSetOps;

impl AnalyzerRule for MultisetSetOps {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| match &node {
            LogicalPlan::Join(j) if is_all_set_op(j) => rewrite(j).map(Transformed::yes),
            _ => Ok(Transformed::no(node)),
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "weft_multiset_intersect_except_all"
    }
}

const LEFT_COPY: &str = "__weft_copy_l";
const RIGHT_COPY: &str = "__weft_copy_r";

fn is_all_set_op(j: &Join) -> bool {
    matches!(j.join_type, JoinType::LeftSemi | JoinType::LeftAnti)
        && j.null_equality == NullEquality::NullEqualsNull
        && j.filter.is_none()
        && !matches!(j.left.as_ref(), LogicalPlan::Distinct(_))
        && j.on.len() == j.left.schema().fields().len()
        && j.on
            .iter()
            .all(|(l, r)| matches!((l, r), (Expr::Column(_), Expr::Column(_))))
}

/// `input` with a column `name` numbering the copies of each distinct row from 1.
fn numbered(input: Arc<LogicalPlan>, name: &str) -> DfResult<LogicalPlan> {
    let columns: Vec<Expr> = input
        .schema()
        .columns()
        .into_iter()
        .map(Expr::Column)
        .collect();
    let copy = row_number().partition_by(columns).build()?.alias(name);
    LogicalPlanBuilder::from(input).window(vec![copy])?.build()
}

fn rewrite(j: &Join) -> DfResult<LogicalPlan> {
    let output: Vec<Expr> = j
        .left
        .schema()
        .columns()
        .into_iter()
        .map(Expr::Column)
        .collect();
    let (mut left_keys, mut right_keys): (Vec<Column>, Vec<Column>) =
        j.on.iter()
            .filter_map(|(l, r)| match (l, r) {
                (Expr::Column(l), Expr::Column(r)) => Some((l.clone(), r.clone())),
                _ => None,
            })
            .unzip();
    left_keys.push(Column::from_name(LEFT_COPY));
    right_keys.push(Column::from_name(RIGHT_COPY));
    let right = numbered(Arc::clone(&j.right), RIGHT_COPY)?;
    LogicalPlanBuilder::from(numbered(Arc::clone(&j.left), LEFT_COPY)?)
        .join_detailed(
            right,
            j.join_type,
            (left_keys, right_keys),
            None,
            NullEquality::NullEqualsNull,
        )?
        .project(output)?
        .build()
}
