//! Set-returning calls in FROM that read the tables before them (LATERAL in PostgreSQL):
//! `FROM pg_index i, unnest(i.indkey, i.indoption) WITH ORDINALITY k(key, option, n)`,
//! `FROM t CROSS JOIN LATERAL (SELECT unnest(t.tags) AS tag) u`,
//! `FROM t, jsonb_each(t.doc) e(k, v)`.
//!
//! DataFusion plans such a call as a join whose right side is a subquery over one empty row
//! that refers to the left side's columns (outer references), and cannot execute it. Every such
//! subquery that only projects, filters and unnests is the same computation run over the left
//! side's rows instead of the one empty row, so it is grafted onto the left side:
//!
//! ```text
//!  Join (inner, [ON p])                     [Filter p]
//!    L                                 ─►     Projection  L's columns, R's columns as alias.c
//!    SubqueryAlias alias                        (Projection | Filter | Unnest)*  (outer refs → L's columns,
//!      Subquery                                    L's columns carried through)
//!        (Projection | Filter | Unnest)*            L
//!          EmptyRelation (one row)
//! ```
//!
//! A row of L whose arrays are empty or NULL yields no row, as in PostgreSQL; under `LEFT JOIN
//! LATERAL … ON true` it keeps one row of NULLs. A subquery over a table that picks the first n
//! rows per key (`WHERE t.k = l.k ORDER BY … LIMIT n`) is computed for every key at once
//! (top_one.rs) and joined on the key. Other shapes (LEFT JOIN LATERAL with another condition,
//! LIMIT under a correlation that is not an equality, a reference to a query further out) are
//! left alone for DataFusion to refuse (0A000, error.rs names the column).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, ListArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{
    plan_err, Column, NullEquality, Result as DfResult, ScalarValue, TableReference,
};
use datafusion::functions::core::expr_fn::coalesce;
use datafusion::functions_nested::expr_fn::array_empty;
use datafusion::logical_expr::{
    lit, when, Expr, Filter, JoinType, LogicalPlan, LogicalPlanBuilder, Projection, SubqueryAlias,
};
use datafusion::optimizer::AnalyzerRule;

/// The analyzer rule; runs after type coercion, before the subquery decorrelation.
#[derive(Debug, Default)]
pub(crate) struct LateralCalls;

impl AnalyzerRule for LateralCalls {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            Ok(match graft_join(&node) {
                Some(grafted) => Transformed::yes(grafted),
                None => Transformed::no(node),
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "weft_lateral_calls"
    }
}

/// Makes the names of the columns this rule adds unique (one counter for all sessions).
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// `node` rewritten if it is a join of the shape above; None leaves it as it is.
fn graft_join(node: &LogicalPlan) -> Option<LogicalPlan> {
    let LogicalPlan::Join(join) = node else {
        return None;
    };
    // LEFT JOIN LATERAL … ON true: a row of L whose arrays are all empty keeps one row of
    // NULLs; with any other condition a row could lose all its matches after the unnest.
    let keep_empty = match join.join_type {
        JoinType::Inner => false,
        JoinType::Left
            if join.filter.as_ref().is_none_or(|f| {
                matches!(f, Expr::Literal(ScalarValue::Boolean(Some(true)), _))
            }) =>
        {
            true
        }
        _ => return None,
    };
    if !join.on.is_empty() {
        return None;
    }
    let (alias, subquery) = match join.right.as_ref() {
        LogicalPlan::SubqueryAlias(SubqueryAlias { input, alias, .. }) => {
            (Some(alias.clone()), input.as_ref())
        }
        other => (None, other),
    };
    let LogicalPlan::Subquery(sq) = subquery else {
        return None;
    };
    let left = &join.left;
    if let Some(top) = crate::top_one::TopOne::of_limit(sq, left.schema(), usize::MAX) {
        return first_rows_join(join, alias, &top, keep_empty).ok();
    }
    let left_schema = left.schema();
    if !graftable(&sq.subquery, &|c| left_schema.has_column(c), keep_empty) {
        return None;
    }
    let carried: Vec<Expr> = left
        .schema()
        .columns()
        .into_iter()
        .map(Expr::Column)
        .collect();
    let grafted = graft(&sq.subquery, left, &carried, keep_empty, &|c| {
        Expr::Column(c.clone())
    })
    .ok()?;
    // Names of the subquery's columns on top of the grafted plan, unique so that a column of
    // L with the same name is never ambiguous with them.
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let right_schema = sq.subquery.schema();
    let LogicalPlan::Projection(top) = &grafted else {
        return None;
    };
    let n = right_schema.fields().len();
    let mut inner_exprs: Vec<Expr> = Vec::with_capacity(top.expr.len());
    for (i, e) in top.expr.iter().enumerate() {
        inner_exprs.push(if i < n {
            strip_alias(e.clone()).alias(format!("__weft_lat{id}_{i}"))
        } else {
            e.clone()
        });
    }
    let inner = Projection::try_new(inner_exprs, Arc::clone(&top.input)).ok()?;
    let mut outer: Vec<Expr> = carried;
    for (i, (qualifier, field)) in right_schema.iter().enumerate() {
        let qualifier: Option<TableReference> = alias.clone().or_else(|| qualifier.cloned());
        outer.push(
            Expr::Column(Column::from_name(format!("__weft_lat{id}_{i}")))
                .alias_qualified(qualifier, field.name()),
        );
    }
    let projected = Projection::try_new(outer, Arc::new(LogicalPlan::Projection(inner))).ok()?;
    let mut plan = LogicalPlan::Projection(projected);
    if plan.schema().fields().len() != join.schema.fields().len() {
        return None;
    }
    if let (Some(f), false) = (&join.filter, keep_empty) {
        plan = LogicalPlan::Filter(Filter::try_new(f.clone(), Arc::new(plan)).ok()?);
    }
    Some(plan)
}

/// Projections, filters and unnests down to one empty row, every outer reference a column of
/// `left`, and no subquery inside; for a LEFT JOIN, one unnest and no filter.
fn graftable(plan: &LogicalPlan, refs_ok: &dyn Fn(&Column) -> bool, keep_empty: bool) -> bool {
    if keep_empty {
        let mut unnests = 0;
        let _ = plan.apply(|n| {
            match n {
                LogicalPlan::Unnest(_) => unnests += 1,
                LogicalPlan::Filter(_) => unnests += 2,
                _ => {}
            }
            Ok(TreeNodeRecursion::Continue)
        });
        if unnests != 1 {
            return false;
        }
    }
    let mut node = plan;
    loop {
        let ok = node.expressions().iter().all(|e| outer_refs_in(e, refs_ok));
        if !ok {
            return false;
        }
        match node {
            LogicalPlan::Projection(Projection { input, .. })
            | LogicalPlan::Filter(Filter { input, .. })
            | LogicalPlan::Unnest(datafusion::logical_expr::Unnest { input, .. }) => node = input,
            LogicalPlan::EmptyRelation(e) => return e.produce_one_row,
            _ => return false,
        }
    }
}

/// Every outer reference in `e` is one `refs_ok` takes, and `e` holds no subquery.
fn outer_refs_in(e: &Expr, refs_ok: &dyn Fn(&Column) -> bool) -> bool {
    !e.exists(|x| {
        Ok(match x {
            Expr::OuterReferenceColumn(_, c) => !refs_ok(c),
            Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_) => true,
            _ => false,
        })
    })
    .unwrap_or(true)
}

/// `plan` computed over `left`'s rows: outer references read `left`'s columns, which every
/// projection carries after its own.
fn graft(
    plan: &LogicalPlan,
    left: &Arc<LogicalPlan>,
    carried: &[Expr],
    keep_empty: bool,
    binder: &dyn Fn(&Column) -> Expr,
) -> DfResult<LogicalPlan> {
    let bind = |e: Expr| -> DfResult<Expr> {
        e.transform_up(|x| match x {
            Expr::OuterReferenceColumn(_, c) => Ok(Transformed::yes(binder(&c))),
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
    };
    match plan {
        LogicalPlan::EmptyRelation(_) => Ok(left.as_ref().clone()),
        LogicalPlan::Projection(p) => {
            let input = graft(&p.input, left, carried, keep_empty, binder)?;
            let mut exprs = Vec::with_capacity(p.expr.len() + carried.len());
            for (e, (qualifier, field)) in p.expr.iter().zip(p.schema.iter()) {
                let bound = bind(e.clone())?;
                exprs.push(if bound == *e {
                    bound
                } else {
                    strip_alias(bound).alias_qualified(qualifier.cloned(), field.name())
                });
            }
            exprs.extend(carried.iter().cloned());
            Ok(LogicalPlan::Projection(Projection::try_new(
                exprs,
                Arc::new(input),
            )?))
        }
        LogicalPlan::Filter(f) => {
            let input = graft(&f.input, left, carried, keep_empty, binder)?;
            Ok(LogicalPlan::Filter(Filter::try_new(
                bind(f.predicate.clone())?,
                Arc::new(input),
            )?))
        }
        LogicalPlan::Unnest(u) => {
            let mut input = graft(&u.input, left, carried, keep_empty, binder)?;
            if keep_empty {
                input = pad_empty(input, &u.exec_columns)?;
            }
            plan.with_new_exprs(vec![], vec![input])
        }
        other => plan_err!("not a lateral call: {}", other.display()),
    }
}

fn strip_alias(e: Expr) -> Expr {
    match e {
        Expr::Alias(a) => *a.expr,
        other => other,
    }
}

/// The projection under an unnest with each unnested list replaced by a list of one NULL when
/// every list of the row is empty or NULL: the row then unnests to one row of NULLs.
fn pad_empty(input: LogicalPlan, unnested: &[Column]) -> DfResult<LogicalPlan> {
    let LogicalPlan::Projection(p) = input else {
        return plan_err!("no projection under the unnest");
    };
    let mut lists: Vec<usize> = Vec::new();
    for (i, (qualifier, field)) in p.schema.iter().enumerate() {
        let column = Column::new(qualifier.cloned(), field.name());
        if unnested.contains(&column) {
            lists.push(i);
        }
    }
    let mut all_empty: Option<Expr> = None;
    for &i in &lists {
        let e = strip_alias(p.expr[i].clone());
        let empty = coalesce(vec![array_empty(e), lit(true)]);
        all_empty = Some(match all_empty {
            Some(a) => a.and(empty),
            None => empty,
        });
    }
    let Some(all_empty) = all_empty else {
        return plan_err!("nothing unnested");
    };
    let mut exprs = p.expr.clone();
    for &i in &lists {
        let (qualifier, field) = p.schema.qualified_field(i);
        let DataType::List(element) = field.data_type() else {
            return plan_err!("unnest of a {}", field.data_type());
        };
        if !element.is_nullable() {
            return plan_err!("list elements are not nullable");
        }
        let one_null = ListArray::new(
            Arc::clone(element),
            OffsetBuffer::from_lengths([1]),
            new_null_array(element.data_type(), 1),
            None,
        );
        let padded = when(
            all_empty.clone(),
            Expr::Literal(ScalarValue::List(Arc::new(one_null)), None),
        )
        .otherwise(strip_alias(exprs[i].clone()))?;
        exprs[i] = padded.alias_qualified(qualifier.cloned(), field.name());
    }
    Ok(LogicalPlan::Projection(Projection::try_new(
        exprs,
        Arc::clone(&p.input),
    )?))
}

/// The one lateral call inside `plan` (the bottom of a correlated subquery) that reads the
/// outer query, reached through joins and filters that do not: `FROM unnest(c.conkey) …
/// JOIN pg_attribute …` in `ARRAY(SELECT …)`. Its outer references are the only ones in
/// `plan`, all taken by `refs_ok`.
pub(crate) fn lone_lateral_call(plan: &LogicalPlan, refs_ok: &dyn Fn(&Column) -> bool) -> bool {
    count_calls(plan, refs_ok) == Some(1)
}

fn count_calls(plan: &LogicalPlan, refs_ok: &dyn Fn(&Column) -> bool) -> Option<usize> {
    if let Some(sq) = lateral_subquery(plan) {
        return graftable(&sq.subquery, refs_ok, false).then_some(1);
    }
    let none = |e: &Expr| outer_refs_in(e, &|_| false);
    match plan {
        LogicalPlan::Join(j) => {
            let exprs_ok =
                j.on.iter().all(|(a, b)| none(a) && none(b)) && j.filter.as_ref().is_none_or(none);
            if !exprs_ok || !matches!(j.join_type, JoinType::Inner) {
                return None;
            }
            Some(count_calls(&j.left, refs_ok)? + count_calls(&j.right, refs_ok)?)
        }
        LogicalPlan::Filter(f) if none(&f.predicate) => count_calls(&f.input, refs_ok),
        other if !crate::decorrelate::deeply_correlated(other) => Some(0),
        _ => None,
    }
}

/// The subquery of `[SubqueryAlias] Subquery` in FROM.
fn lateral_subquery(plan: &LogicalPlan) -> Option<&datafusion::logical_expr::Subquery> {
    let inner = match plan {
        LogicalPlan::SubqueryAlias(SubqueryAlias { input, .. }) => input.as_ref(),
        other => other,
    };
    match inner {
        LogicalPlan::Subquery(sq) => Some(sq),
        _ => None,
    }
}

/// `plan` (see [`lone_lateral_call`]) with its lateral call computed over the rows of `base`
/// instead: outer references become `binder`'s expressions over `base`, and `base`'s columns
/// (`carried`) come out beside the call's.
pub(crate) fn graft_lateral_call(
    plan: &LogicalPlan,
    base: &Arc<LogicalPlan>,
    carried: &[Expr],
    binder: &dyn Fn(&Column) -> Expr,
) -> DfResult<LogicalPlan> {
    if let Some(sq) = lateral_subquery(plan) {
        let grafted = graft(&sq.subquery, base, carried, false, binder)?;
        return match plan {
            LogicalPlan::SubqueryAlias(a) => Ok(LogicalPlan::SubqueryAlias(
                SubqueryAlias::try_new(Arc::new(grafted), a.alias.clone())?,
            )),
            _ => Ok(grafted),
        };
    }
    if !crate::decorrelate::deeply_correlated(plan) {
        return Ok(plan.clone());
    }
    let inputs = plan
        .inputs()
        .into_iter()
        .map(|i| graft_lateral_call(i, base, carried, binder))
        .collect::<DfResult<Vec<_>>>()?;
    plan.with_new_exprs(plan.expressions(), inputs)
}

/// `FROM l, LATERAL (SELECT … FROM t WHERE t.k = l.k … ORDER BY … LIMIT n) a` (top n per key):
/// the first n rows of every key of t at once (top_one.rs), joined to l on the key; a LEFT
/// JOIN LATERAL … ON true keeps l's rows that have none.
fn first_rows_join(
    join: &datafusion::logical_expr::Join,
    alias: Option<TableReference>,
    top: &crate::top_one::TopOne<'_>,
    keep_empty: bool,
) -> DfResult<LogicalPlan> {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let (rows, keys) = top.rows_per_key(id)?;
    let rows = match alias {
        Some(a) => LogicalPlan::SubqueryAlias(SubqueryAlias::try_new(Arc::new(rows), a)?),
        None => rows,
    };
    let join_type = if keep_empty {
        JoinType::Left
    } else {
        JoinType::Inner
    };
    let mut plan = LogicalPlanBuilder::from(join.left.as_ref().clone())
        .join_detailed(
            rows,
            join_type,
            (top.outer(), keys),
            None,
            NullEquality::NullEqualsNothing,
        )?
        .project(
            join.schema
                .iter()
                .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name()))),
        )?;
    if let (Some(f), false) = (&join.filter, keep_empty) {
        plan = plan.filter(f.clone())?;
    }
    plan.build()
}
