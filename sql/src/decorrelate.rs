//! Correlated aggregate subqueries DataFusion cannot decorrelate (in a select list, WHERE, HAVING
//! or ORDER BY): those whose correlation is not
//! `inner_column = outer_expression`, such as `(SELECT count(*) FROM t1 AS x WHERE x.b < t1.b)`.
//!
//! The subquery's value depends only on the outer columns it references, so it is computed once
//! per distinct combination of them (the domain) and joined back:
//!
//! ```text
//!  Projection/Filter (… (subquery) …)          Projection/Filter (… __weft_sqN_v …)
//!    input                                ─►     input ⟕ S  on outer columns IS NOT DISTINCT FROM keys
//!
//!  S = Aggregate  group by keys, each aggregate FILTER (WHERE marker IS NOT NULL)
//!        Distinct(input's outer columns AS keys)  ⟕  (inner, true AS marker)  on correlation
//! ```
//!
//! The left join keeps every domain row, so a key no inner row matches still forms a group:
//! `count(*)` gives 0 and other aggregates NULL there, as in PostgreSQL (the "count bug"); a
//! HAVING that rejects the group leaves the value NULL. A subquery that picks one row (`ORDER BY
//! … LIMIT 1`) is computed per key by top_one.rs and joined back the same way. Shapes outside this one (a LIMIT, a
//! correlated join, a correlation through a nested subquery, an input with volatile functions,
//! which would be read twice) are left as they are: DataFusion then reports them as not
//! supported (0A000), never a wrong answer.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, NullEquality, Result as DfResult};
use datafusion::logical_expr::expr::Exists;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    lit, Aggregate, BinaryExpr, Expr, Filter, JoinType, LogicalPlan, LogicalPlanBuilder, Operator,
    Projection, Sort, SortExpr, Subquery,
};
use datafusion::optimizer::AnalyzerRule;

/// The analyzer rule; runs after type coercion and Weft's other subquery rewrites.
#[derive(Debug, Default)]
pub(crate) struct Decorrelate;

impl AnalyzerRule for Decorrelate {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DfResult<LogicalPlan> {
        plan.transform_up_with_subqueries(rewrite_node)
            .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "weft_decorrelate_aggregate_subquery"
    }
}

/// Makes the names of the columns this rule adds unique (one counter for all sessions).
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn rewrite_node(node: LogicalPlan) -> DfResult<Transformed<LogicalPlan>> {
    if let Some(widened) = widen_sort_input(&node)? {
        return Ok(Transformed::yes(widened));
    }
    let input = match &node {
        LogicalPlan::Projection(p) => Arc::clone(&p.input),
        LogicalPlan::Filter(f) => Arc::clone(&f.input),
        LogicalPlan::Sort(s) => Arc::clone(&s.input),
        _ => return Ok(Transformed::no(node)),
    };
    let mut found: Vec<Subquery> = Vec::new();
    for e in node.expressions() {
        e.apply(|x| {
            if let Expr::ScalarSubquery(sq) = x {
                let schema = input.schema().as_ref();
                let taken = Spine::of(sq, schema).is_some()
                    || crate::top_one::TopOne::of(sq, schema).is_some();
                if !found.contains(sq) && taken {
                    found.push(sq.clone());
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
    }
    // The input is read twice, for the domain and for the rows: volatile values would not meet.
    if found.is_empty() || volatile(&input) {
        return Ok(Transformed::no(node));
    }
    let mut joined = LogicalPlanBuilder::from(Arc::unwrap_or_clone(Arc::clone(&input)));
    let mut values = Vec::with_capacity(found.len());
    for sq in &found {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let schema = input.schema().as_ref();
        let (plan, keys, value, outer) = if let Some(spine) = Spine::of(sq, schema) {
            let (plan, keys, value) = spine.per_key(&input, id)?;
            (plan, keys, value, spine.outer.clone())
        } else if let Some(top) = crate::top_one::TopOne::of(sq, schema) {
            let (plan, keys, value) = top.per_key(id)?;
            (plan, keys, value, top.outer())
        } else {
            continue;
        };
        joined = joined.join_detailed(
            plan,
            JoinType::Left,
            (outer, keys),
            None,
            NullEquality::NullEqualsNull,
        )?;
        values.push((sq.clone(), value));
    }
    let joined = Arc::new(joined.build()?);
    let replace = |e: Expr| {
        e.transform_up(|x| match x {
            Expr::ScalarSubquery(sq) => match values.iter().find(|(s, _)| *s == sq) {
                Some((_, v)) => Ok(Transformed::yes(Expr::Column(Column::from_name(v)))),
                None => Ok(Transformed::no(Expr::ScalarSubquery(sq))),
            },
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
    };
    let rewritten = match node {
        LogicalPlan::Projection(p) => {
            let names = NamePreserver::new_for_projection();
            let exprs = p
                .expr
                .into_iter()
                .map(|e| {
                    let saved = names.save(&e);
                    replace(e).map(|e| saved.restore(e))
                })
                .collect::<DfResult<Vec<_>>>()?;
            LogicalPlan::Projection(Projection::try_new(exprs, joined)?)
        }
        LogicalPlan::Filter(f) => {
            let filtered = LogicalPlan::Filter(Filter::try_new(replace(f.predicate)?, joined)?);
            let columns = input.schema().columns().into_iter().map(Expr::Column);
            LogicalPlan::Projection(Projection::try_new(columns.collect(), Arc::new(filtered))?)
        }
        LogicalPlan::Sort(s) => {
            let expr = s
                .expr
                .into_iter()
                .map(|se| {
                    Ok(SortExpr {
                        expr: replace(se.expr)?,
                        ..se
                    })
                })
                .collect::<DfResult<Vec<_>>>()?;
            let sorted = LogicalPlan::Sort(Sort {
                expr,
                input: joined,
                fetch: s.fetch,
            });
            let columns = input.schema().columns().into_iter().map(Expr::Column);
            LogicalPlan::Projection(Projection::try_new(columns.collect(), Arc::new(sorted))?)
        }
        other => other,
    };
    Ok(Transformed::yes(rewritten))
}

/// `ORDER BY (subquery)` over a projection that dropped the outer columns the subquery reads
/// (`SELECT id FROM t ORDER BY (SELECT count(*) … WHERE x.b > t.b)`): the projection is widened
/// with them, the sort rewritten above it, and the original columns projected on top.
fn widen_sort_input(node: &LogicalPlan) -> DfResult<Option<LogicalPlan>> {
    let LogicalPlan::Sort(sort) = node else {
        return Ok(None);
    };
    let LogicalPlan::Projection(p) = sort.input.as_ref() else {
        return Ok(None);
    };
    let mut missing: Vec<Column> = Vec::new();
    for se in &sort.expr {
        se.expr.apply(|x| {
            if let Expr::ScalarSubquery(sq) = x {
                for c in sq.outer_ref_columns.iter().flat_map(outer_columns) {
                    if !p.schema.has_column(&c)
                        && p.input.schema().has_column(&c)
                        && !missing.contains(&c)
                    {
                        missing.push(c);
                    }
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
    }
    if missing.is_empty() {
        return Ok(None);
    }
    let mut exprs = p.expr.clone();
    exprs.extend(missing.into_iter().map(Expr::Column));
    let widened = LogicalPlan::Projection(Projection::try_new(exprs, Arc::clone(&p.input))?);
    let sorted = LogicalPlan::Sort(Sort {
        expr: sort.expr.clone(),
        input: Arc::new(widened),
        fetch: sort.fetch,
    });
    let rewritten = rewrite_node(sorted)?;
    if !rewritten.transformed {
        return Ok(None);
    }
    let original = p.schema.columns().into_iter().map(Expr::Column).collect();
    Ok(Some(LogicalPlan::Projection(Projection::try_new(
        original,
        Arc::new(rewritten.data),
    )?)))
}

/// A scalar subquery of the shape this rule takes apart, top down:
/// `(Projection | Filter)* → Aggregate (no GROUP BY) → Projection* → [Filter] → bottom`, where
/// only `bottom` is free of outer references.
struct Spine<'a> {
    above: Vec<&'a LogicalPlan>,
    aggregate: &'a Aggregate,
    between: Vec<&'a Projection>,
    predicate: Option<&'a Expr>,
    bottom: &'a LogicalPlan,
    /// The bottom reads the outer columns in one lateral call (lateral.rs).
    lateral_bottom: bool,
    /// The outer columns referenced, in a fixed order: the domain's columns.
    outer: Vec<Column>,
}

impl<'a> Spine<'a> {
    /// The spine of `sq` if it has this shape, every outer reference is a column of the plan
    /// the subquery sits in (`outer_schema`), and DataFusion cannot decorrelate it itself.
    fn of(sq: &'a Subquery, outer_schema: &datafusion::common::DFSchema) -> Option<Self> {
        let mut above = Vec::new();
        let mut node = sq.subquery.as_ref();
        let aggregate = loop {
            match node {
                LogicalPlan::Aggregate(a) if a.group_expr.is_empty() => break a,
                LogicalPlan::Projection(p) => {
                    above.push(node);
                    node = &p.input;
                }
                LogicalPlan::Filter(f) => {
                    above.push(node);
                    node = &f.input;
                }
                _ => return None,
            }
        };
        let mut between = Vec::new();
        let mut node = aggregate.input.as_ref();
        let in_outer = |c: &Column| outer_schema.has_column(c);
        let lateral = |n: &LogicalPlan| crate::lateral::lone_lateral_call(n, &in_outer);
        let (predicate, bottom) = loop {
            if !deeply_correlated(node) || lateral(node) {
                break (None, node);
            }
            match node {
                LogicalPlan::Projection(p) => {
                    between.push(p);
                    node = &p.input;
                }
                LogicalPlan::Filter(f) if !deeply_correlated(&f.input) || lateral(&f.input) => {
                    break (Some(&f.predicate), f.input.as_ref());
                }
                _ => return None,
            }
        };
        let lateral_bottom = deeply_correlated(bottom);
        let spine = Spine {
            above,
            aggregate,
            between,
            predicate,
            bottom,
            lateral_bottom,
            outer: Vec::new(),
        };
        let mut outer = Vec::new();
        let mut only_equi_in_filter = true;
        for e in spine.expressions() {
            if has_correlated_subquery(e) {
                return None;
            }
            let is_predicate = spine.predicate.is_some_and(|p| std::ptr::eq(p, e));
            let refs = outer_columns(e);
            if !refs.is_empty() && !is_predicate {
                only_equi_in_filter = false;
            }
            outer.extend(refs);
        }
        if let Some(p) = spine.predicate {
            for c in split_conjunction(p) {
                if !outer_columns(c).is_empty() && !is_equi_correlation(c) {
                    only_equi_in_filter = false;
                }
            }
        }
        if spine.lateral_bottom {
            // The lateral call's outer columns, and a correlation DataFusion cannot handle.
            let _ = spine.bottom.apply_with_subqueries(|n| {
                n.apply_expressions(|e| {
                    outer.extend(outer_columns(e));
                    Ok(TreeNodeRecursion::Continue)
                })
            });
            only_equi_in_filter = false;
        }
        let mut seen = HashSet::new();
        outer.retain(|c| seen.insert(c.clone()));
        if outer.is_empty()
            || only_equi_in_filter
            || !outer.iter().all(|c| outer_schema.has_column(c))
        {
            return None;
        }
        Some(Spine { outer, ..spine })
    }

    /// Every expression of the spine above `bottom`.
    fn expressions(&self) -> Vec<&'a Expr> {
        let mut out: Vec<&'a Expr> = Vec::new();
        for node in &self.above {
            match node {
                LogicalPlan::Projection(p) => out.extend(p.expr.iter()),
                LogicalPlan::Filter(f) => out.push(&f.predicate),
                _ => {}
            }
        }
        out.extend(self.aggregate.aggr_expr.iter());
        for p in &self.between {
            out.extend(p.expr.iter());
        }
        out.extend(self.predicate);
        out
    }

    /// The subquery computed for each distinct combination of the outer columns of `input`:
    /// the plan, its key columns (in the order of `self.outer`) and its value column.
    fn per_key(
        &self,
        input: &Arc<LogicalPlan>,
        id: u64,
    ) -> DfResult<(LogicalPlan, Vec<Column>, String)> {
        let key_names: Vec<String> = (0..self.outer.len())
            .map(|i| format!("__weft_sq{id}_k{i}"))
            .collect();
        let marker = format!("__weft_sq{id}_m");
        let value = format!("__weft_sq{id}_v");
        let keys = || key_names.iter().map(|k| Expr::Column(Column::from_name(k)));
        let bind = |e: Expr| -> DfResult<Expr> {
            e.transform_up(|x| match x {
                Expr::OuterReferenceColumn(f, c) => {
                    Ok(match self.outer.iter().position(|o| *o == c) {
                        Some(i) => Transformed::yes(Expr::Column(Column::from_name(&key_names[i]))),
                        None => Transformed::no(Expr::OuterReferenceColumn(f, c)),
                    })
                }
                other => Ok(Transformed::no(other)),
            })
            .map(|t| t.data)
        };

        let domain = LogicalPlanBuilder::from(Arc::unwrap_or_clone(Arc::clone(input)))
            .project(
                self.outer
                    .iter()
                    .zip(&key_names)
                    .map(|(c, k)| Expr::Column(c.clone()).alias(k)),
            )?
            .distinct()?;
        let mut bottom = self.bottom.clone();
        // A lateral call in the bottom runs once per domain row of a second copy of the domain,
        // whose keys (`…_jN`) come out with the bottom's rows and are matched to the first's.
        let mut same_row: Vec<Expr> = Vec::new();
        if self.lateral_bottom {
            let copy_names: Vec<String> = (0..self.outer.len())
                .map(|i| format!("__weft_sq{id}_j{i}"))
                .collect();
            let copy = LogicalPlanBuilder::from(Arc::unwrap_or_clone(Arc::clone(input)))
                .project(
                    self.outer
                        .iter()
                        .zip(&copy_names)
                        .map(|(c, k)| Expr::Column(c.clone()).alias(k)),
                )?
                .distinct()?
                .build()?;
            let carried: Vec<Expr> = copy_names
                .iter()
                .map(|k| Expr::Column(Column::from_name(k)))
                .collect();
            let binder = |c: &Column| match self.outer.iter().position(|o| o == c) {
                Some(i) => Expr::Column(Column::from_name(&copy_names[i])),
                None => Expr::Column(c.clone()),
            };
            bottom =
                crate::lateral::graft_lateral_call(&bottom, &Arc::new(copy), &carried, &binder)?;
            same_row = key_names
                .iter()
                .zip(&copy_names)
                .map(|(k, j)| {
                    Expr::BinaryExpr(BinaryExpr::new(
                        Box::new(Expr::Column(Column::from_name(k))),
                        Operator::IsNotDistinctFrom,
                        Box::new(Expr::Column(Column::from_name(j))),
                    ))
                })
                .collect();
        }
        let inner = LogicalPlanBuilder::from(bottom.clone())
            .project(
                bottom
                    .schema()
                    .columns()
                    .into_iter()
                    .map(Expr::Column)
                    .chain([lit(true).alias(&marker)]),
            )?
            .build()?;
        let on = match self.predicate {
            Some(p) => bind(p.clone())?,
            None => lit(true),
        };
        let on = same_row.into_iter().fold(on, Expr::and);
        let mut plan = domain.join_on(inner, JoinType::Left, [on])?;
        for p in self.between.iter().rev() {
            let exprs = p
                .expr
                .iter()
                .map(|e| bind(e.clone()))
                .chain(keys().map(Ok))
                .chain([Ok(Expr::Column(Column::from_name(&marker)))])
                .collect::<DfResult<Vec<_>>>()?;
            plan = plan.project(exprs)?;
        }
        let matched = Expr::Column(Column::from_name(&marker)).is_not_null();
        let agg_plan = LogicalPlan::Aggregate(self.aggregate.clone());
        let names = NamePreserver::new(&agg_plan);
        let aggregates = self
            .aggregate
            .aggr_expr
            .iter()
            .map(|e| {
                let saved = names.save(e);
                let e = bind(e.clone())?
                    .transform_up(|x| match x {
                        Expr::AggregateFunction(mut f) => {
                            f.params.filter = Some(Box::new(match f.params.filter.take() {
                                Some(old) => matched.clone().and(*old),
                                None => matched.clone(),
                            }));
                            Ok(Transformed::yes(Expr::AggregateFunction(f)))
                        }
                        other => Ok(Transformed::no(other)),
                    })?
                    .data;
                Ok(saved.restore(e))
            })
            .collect::<DfResult<Vec<_>>>()?;
        plan = plan.aggregate(keys(), aggregates)?;
        // Where the subquery's value sits among the rebuilt node's columns.
        let mut offset = key_names.len();
        for node in self.above.iter().rev() {
            match node {
                LogicalPlan::Projection(p) => {
                    let exprs = p
                        .expr
                        .iter()
                        .map(|e| bind(e.clone()))
                        .chain(keys().map(Ok))
                        .collect::<DfResult<Vec<_>>>()?;
                    plan = plan.project(exprs)?;
                    offset = 0;
                }
                LogicalPlan::Filter(f) => plan = plan.filter(bind(f.predicate.clone())?)?,
                _ => {}
            }
        }
        let built = plan.build()?;
        let (qualifier, field) = built.schema().qualified_field(offset);
        let value_column = Expr::Column(Column::new(qualifier.cloned(), field.name()));
        let plan = LogicalPlanBuilder::from(built)
            .project([value_column.alias(&value)].into_iter().chain(keys()))?
            .build()?;
        let key_columns = key_names.iter().map(Column::from_name).collect();
        Ok((plan, key_columns, value))
    }
}

fn outer_columns(e: &Expr) -> Vec<Column> {
    let mut out = Vec::new();
    let _ = e.apply(|x| {
        if let Expr::OuterReferenceColumn(_, c) = x {
            out.push(c.clone());
        }
        Ok(TreeNodeRecursion::Continue)
    });
    out
}

/// Any outer reference in `plan`, its nested subqueries included.
pub(crate) fn deeply_correlated(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|n| {
        n.apply_expressions(|e| {
            if e.exists(|x| Ok(matches!(x, Expr::OuterReferenceColumn(..))))? {
                found = true;
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        })
    });
    found
}

fn volatile(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|n| {
        n.apply_expressions(|e| {
            found |= e.is_volatile();
            Ok(if found {
                TreeNodeRecursion::Stop
            } else {
                TreeNodeRecursion::Continue
            })
        })
    });
    found
}

/// A subquery inside `e` that is itself correlated: this rule leaves such nesting alone.
fn has_correlated_subquery(e: &Expr) -> bool {
    e.exists(|x| {
        Ok(match x {
            Expr::ScalarSubquery(sq) | Expr::Exists(Exists { subquery: sq, .. }) => {
                deeply_correlated(&sq.subquery)
            }
            Expr::InSubquery(i) => deeply_correlated(&i.subquery.subquery),
            _ => false,
        })
    })
    .unwrap_or(true)
}

/// `inner_column = <outer expression>`: what DataFusion pulls above an aggregate itself.
fn is_equi_correlation(e: &Expr) -> bool {
    let column = |e: &Expr| match e {
        Expr::Column(_) => true,
        Expr::Cast(c) => matches!(c.expr.as_ref(), Expr::Column(_)),
        _ => false,
    };
    let no_columns = |e: &Expr| e.column_refs().is_empty();
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => (column(left) && no_columns(right)) || (column(right) && no_columns(left)),
        _ => false,
    }
}
