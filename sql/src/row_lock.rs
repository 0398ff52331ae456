//! Row locks: `SELECT … FOR UPDATE | FOR SHARE [OF t, …] [NOWAIT | SKIP LOCKED]`, taken as
//! PostgreSQL's LockRows node takes them: on each row the query returns, after its ordering and
//! before its LIMIT, so that `ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED` hands each worker of a
//! job queue a different row.
//!
//! ```text
//!   SELECT id FROM jobs WHERE … ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
//!     ── prepare (AST) ──►  SELECT id, jobs.id AS __weft_lock_0_0_0 FROM jobs WHERE … ORDER BY id LIMIT 1
//!     ── place (plan) ──►   Projection(id)                     drops the key columns
//!                             Limit(1)
//!                               LockRows(jobs: key column 1)    LockRowsExec below
//!                                 … Sort(id) … Filter … Scan
//! ```
//!
//! `LockRowsExec` takes, for each row and each locked table, the lock named by the row's storage
//! key, exclusive for FOR UPDATE (and FOR NO KEY UPDATE), shared for FOR SHARE (and FOR KEY
//! SHARE), in the node's lock table (`advisory.rs`, which advisory locks share, so one waits-for
//! graph finds deadlocks across both). A lock held by another transaction is waited for, or fails
//! the statement with 55P03 (NOWAIT), or skips the row (SKIP LOCKED). Once it holds the lock, if a
//! commit after the statement's snapshot changed the row, the statement fails with 40001 as at
//! PostgreSQL's REPEATABLE READ (in READ COMMITTED the session runs it again on a new snapshot:
//! `Session::execute_in_txn`) — SKIP LOCKED skips such a row instead: another worker took it. A LIMIT counts locked rows only, and no row past
//! it is locked (the limit is pushed into the node as its `fetch`). Locks are held until the
//! transaction ends, and are per node, as advisory locks are (README).

use std::fmt;
use std::hash::Hash;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering as AtomicOrdering;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::UInt32Array;
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNodeRecursion};
use datafusion::common::{Column, DFSchemaRef, Result as DfResult};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{
    Expr, Extension, LogicalPlan, Projection, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, ExecutionPlanProperties,
    Partitioning, PlanProperties,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use datafusion::sql::sqlparser::ast::{self, VisitMut, VisitorMut};
use futures::StreamExt;
use weft_storage::{Catalog, CatalogEntry, TableId, Value};

use crate::advisory::{Key, Mode, Scope};
use crate::ddl::{ident, object_name};
use crate::error::{to_df, Error, Result};
use crate::shared::SessionShared;

/// Output columns carrying a locked table's primary key start with this.
const PREFIX: &str = "__weft_lock_";

/// What a locker does when another transaction holds a conflicting lock. Ordered as PostgreSQL
/// combines two clauses on one table: the stricter wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Wait {
    Block,
    Skip,
    NoWait,
}

/// One table a locking clause locks, as a query reads it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
pub(crate) struct Target {
    table: TableId,
    /// The table's name, for messages.
    relation: String,
    mode: Mode,
    wait: Wait,
    /// The output columns that carry its primary key, in key order.
    columns: Vec<String>,
}

/// The locking queries of a statement, each with the tables it locks, numbered as their
/// key columns are named.
#[derive(Debug, Default)]
pub(crate) struct Locking(Vec<Vec<Target>>);

/// Whether any query of `stmt` has a locking clause.
pub(crate) fn locks_rows(stmt: &ast::Statement) -> bool {
    first_lock(stmt).is_some()
}

/// The first locking clause of `stmt`, as PostgreSQL names it in messages (`FOR UPDATE`).
pub(crate) fn first_lock(stmt: &ast::Statement) -> Option<&'static str> {
    let mut found = None;
    let _ = ast::Visit::visit(stmt, &mut Finder(&mut found));
    found
}

struct Finder<'a>(&'a mut Option<&'static str>);

impl ast::Visitor for Finder<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, q: &ast::Query) -> ControlFlow<()> {
        match q.locks.first() {
            None => ControlFlow::Continue(()),
            Some(clause) => {
                *self.0 = Some(match clause.lock_type {
                    ast::LockType::Update => "FOR UPDATE",
                    ast::LockType::Share => "FOR SHARE",
                });
                ControlFlow::Break(())
            }
        }
    }
}

/// Rewrites every locking query of `stmt` to return its locked tables' primary keys as extra
/// output columns, and checks what PostgreSQL refuses. `aggregate` tells an aggregate
/// function's name.
///
/// A locking query inside another (a subquery, a CTE, a derived table) becomes a derived table
/// of a query that returns all its columns but the keys, so its shape stays what its place
/// needs (one column for `IN`):
/// `(SELECT * EXCLUDE (__weft_lock_…) FROM (SELECT id, jobs.id AS __weft_lock_… FROM jobs …) AS __weft_locked)`.
pub(crate) fn prepare(
    stmt: &mut ast::Statement,
    catalog: &Catalog,
    aggregate: &dyn Fn(&str) -> bool,
) -> Result<Locking> {
    let mut rewriter = Rewriter {
        catalog,
        aggregate,
        queries: Vec::new(),
    };
    // The statement's own query (also under EXPLAIN) needs no wrapper: `place` drops the keys.
    let top = match stmt {
        ast::Statement::Query(q) => Some(q),
        ast::Statement::Explain { statement, .. } => match statement.as_mut() {
            ast::Statement::Query(q) => Some(q),
            _ => None,
        },
        _ => None,
    };
    if let Some(q) = top.filter(|q| !q.locks.is_empty()) {
        rewriter.rewrite(q)?;
    }
    match stmt.visit(&mut rewriter) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(Locking(rewriter.queries)),
    }
}

struct Rewriter<'a> {
    catalog: &'a Catalog,
    aggregate: &'a dyn Fn(&str) -> bool,
    queries: Vec<Vec<Target>>,
}

impl Rewriter<'_> {
    /// Rewrites one locking query in place; the names of the key columns it got.
    fn rewrite(&mut self, q: &mut ast::Query) -> Result<Vec<String>> {
        let n = self.queries.len();
        let targets = rewrite(q, n, self.catalog, self.aggregate)?;
        let columns = targets.iter().flat_map(|t| t.columns.clone()).collect();
        // A query that locks nothing (only functions or VALUES) needs no node.
        if !targets.is_empty() {
            self.queries.push(targets);
        }
        Ok(columns)
    }

    /// `q`, a locking query inside another, rewritten and wrapped (see [`prepare`]).
    fn wrap(&mut self, q: &mut ast::Query) -> Result<()> {
        let columns = self.rewrite(q)?;
        if columns.is_empty() {
            return Ok(());
        }
        let template = "SELECT * FROM (SELECT 1) AS \"__weft_locked\"";
        let parsed = crate::statement::parse(template)?
            .pop()
            .ok_or_else(|| Error::internal("locking wrapper did not parse"))?;
        let ast::Statement::Query(mut wrapper) = (*parsed.ast).clone() else {
            return Err(Error::internal("locking wrapper is not a query"));
        };
        let ast::SetExpr::Select(select) = wrapper.body.as_mut() else {
            return Err(Error::internal("locking wrapper is not a select"));
        };
        let ast::TableFactor::Derived { subquery, .. } = &mut select.from[0].relation else {
            return Err(Error::internal("locking wrapper reads no subquery"));
        };
        let Some(ast::SelectItem::Wildcard(options)) = select.projection.first_mut() else {
            return Err(Error::internal("locking wrapper has no wildcard"));
        };
        options.opt_exclude = Some(ast::ExcludeSelectItem::Multiple(
            columns
                .iter()
                .map(|c| ast::ObjectName::from(vec![ast::Ident::with_quote('"', c)]))
                .collect(),
        ));
        std::mem::swap(subquery.as_mut(), q);
        // `q` is the template's `SELECT 1` now; the wrapper takes its place.
        std::mem::swap(q, wrapper.as_mut());
        Ok(())
    }
}

impl VisitorMut for Rewriter<'_> {
    type Break = Error;

    fn pre_visit_query(&mut self, q: &mut ast::Query) -> ControlFlow<Error> {
        if q.locks.is_empty() {
            return ControlFlow::Continue(());
        }
        match self.wrap(q) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => ControlFlow::Break(e),
        }
    }
}

/// A relation of a locking query's FROM clause.
struct Relation {
    /// The name the query knows it by (its alias, else its table name).
    name: String,
    kind: Kind,
    /// On the nullable side of an outer join.
    nullable: bool,
}

enum Kind {
    Table(TableId),
    /// A subquery, a WITH query or a view: PostgreSQL locks the rows of its tables; Weft does
    /// not yet (0A000 when a clause applies to it).
    Nested(&'static str),
    /// A function, VALUES or a system table: nothing to lock (PostgreSQL ignores them too).
    Ignored,
}

fn refuse(message: String) -> Error {
    Error::Data {
        code: "0A000",
        message,
    }
}

fn rewrite(
    q: &mut ast::Query,
    n: usize,
    catalog: &Catalog,
    aggregate: &dyn Fn(&str) -> bool,
) -> Result<Vec<Target>> {
    let clauses = std::mem::take(&mut q.locks);
    let strength = |c: &ast::LockClause| match c.lock_type {
        ast::LockType::Update => "FOR UPDATE",
        ast::LockType::Share => "FOR SHARE",
    };
    let first = strength(&clauses[0]);
    let ctes: Vec<String> = q
        .with
        .iter()
        .flat_map(|w| &w.cte_tables)
        .map(|c| ident(&c.alias.name))
        .collect();
    let ast::SetExpr::Select(select) = q.body.as_mut() else {
        return Err(refuse(format!(
            "{first} is not allowed with UNION/INTERSECT/EXCEPT"
        )));
    };
    if select.distinct.is_some() {
        return Err(refuse(format!(
            "{first} is not allowed with DISTINCT clause"
        )));
    }
    let grouped = match &select.group_by {
        ast::GroupByExpr::All(_) => true,
        ast::GroupByExpr::Expressions(e, _) => !e.is_empty(),
    };
    if grouped {
        return Err(refuse(format!(
            "{first} is not allowed with GROUP BY clause"
        )));
    }
    if select.having.is_some() {
        return Err(refuse(format!("{first} is not allowed with HAVING clause")));
    }
    let mut found: Option<&'static str> = None;
    let _ = ast::visit_expressions(&select.projection, |e| {
        if let ast::Expr::Function(f) = e {
            let name = f
                .name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .map(ident)
                .unwrap_or_default();
            if f.over.is_some() {
                found = Some("window functions");
                return ControlFlow::Break(());
            }
            if aggregate(&name) {
                found = Some("aggregate functions");
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    });
    if let Some(what) = found {
        return Err(refuse(format!("{first} is not allowed with {what}")));
    }

    let mut relations = Vec::new();
    for from in &select.from {
        joined(from, catalog, &ctes, &mut relations)?;
    }

    // What each relation gets: the strongest lock and strictest wait of the clauses naming it.
    let mut applied: Vec<Option<(Mode, Wait, &'static str)>> = vec![None; relations.len()];
    for clause in &clauses {
        let mode = match clause.lock_type {
            ast::LockType::Update => Mode::Exclusive,
            ast::LockType::Share => Mode::Shared,
        };
        let wait = match clause.nonblock {
            None => Wait::Block,
            Some(ast::NonBlock::SkipLocked) => Wait::Skip,
            Some(ast::NonBlock::Nowait) => Wait::NoWait,
        };
        let named: Option<String> = match &clause.of {
            None => None,
            Some(of) => Some(
                of.0.last()
                    .and_then(|p| p.as_ident())
                    .map(ident)
                    .unwrap_or_default(),
            ),
        };
        let mut matched = false;
        for (i, r) in relations.iter().enumerate() {
            if named.as_ref().is_some_and(|name| *name != r.name) {
                continue;
            }
            matched = true;
            let entry = applied[i].get_or_insert((mode, wait, strength(clause)));
            if mode == Mode::Exclusive {
                entry.0 = Mode::Exclusive;
                entry.2 = strength(clause);
            }
            entry.1 = entry.1.max(wait);
        }
        if let (Some(name), false) = (&named, matched) {
            return Err(Error::UndefinedTable {
                message: format!(
                    "relation \"{name}\" in {} clause not found in FROM clause",
                    strength(clause)
                ),
            });
        }
    }

    let mut targets = Vec::new();
    for (r, applied) in relations.iter().zip(applied) {
        let Some((mode, wait, strength)) = applied else {
            continue;
        };
        let table = match r.kind {
            Kind::Ignored => continue,
            Kind::Nested(what) => {
                return Err(refuse(format!(
                    "{strength} of {what} (\"{}\") is not supported yet: lock the tables inside \
                     it, or name the tables to lock with {strength} OF",
                    r.name
                )))
            }
            Kind::Table(id) => id,
        };
        if r.nullable {
            return Err(refuse(format!(
                "{strength} cannot be applied to the nullable side of an outer join"
            )));
        }
        let Some(def) = catalog.table_by_id(table) else {
            return Err(Error::internal("locked table left the catalog"));
        };
        if def.primary_key.iter().any(|&c| def.columns[c].hidden) {
            return Err(refuse(format!(
                "{strength} of a table without a primary key (\"{}\") is not supported yet",
                def.name
            )));
        }
        let t = targets.len();
        let mut columns = Vec::new();
        for (j, &c) in def.primary_key.iter().enumerate() {
            let alias = format!("{PREFIX}{n}_{t}_{j}");
            select.projection.push(ast::SelectItem::ExprWithAlias {
                expr: ast::Expr::CompoundIdentifier(vec![
                    ast::Ident::with_quote('"', &r.name),
                    ast::Ident::with_quote('"', &def.columns[c].name),
                ]),
                alias: ast::Ident::with_quote('"', &alias),
            });
            columns.push(alias);
        }
        targets.push(Target {
            table,
            relation: def.name.clone(),
            mode,
            wait,
            columns,
        });
    }
    Ok(targets)
}

/// Adds the relations of a FROM item and its joins, those on the nullable side of an outer join
/// marked so.
fn joined(
    from: &ast::TableWithJoins,
    catalog: &Catalog,
    ctes: &[String],
    out: &mut Vec<Relation>,
) -> Result<()> {
    let start = out.len();
    relation(&from.relation, catalog, ctes, false, out)?;
    for join in &from.joins {
        use ast::JoinOperator as J;
        let (left, right) = match &join.join_operator {
            J::Left(_) | J::LeftOuter(_) | J::OuterApply => (false, true),
            J::Right(_) | J::RightOuter(_) => (true, false),
            J::FullOuter(_) => (true, true),
            _ => (false, false),
        };
        if left {
            for r in &mut out[start..] {
                r.nullable = true;
            }
        }
        relation(&join.relation, catalog, ctes, right, out)?;
    }
    Ok(())
}

/// Adds the relations of `factor` (several for a parenthesized join).
fn relation(
    factor: &ast::TableFactor,
    catalog: &Catalog,
    ctes: &[String],
    nullable: bool,
    out: &mut Vec<Relation>,
) -> Result<()> {
    let alias_of = |a: &Option<ast::TableAlias>| a.as_ref().map(|a| ident(&a.name));
    let (name, kind) = match factor {
        ast::TableFactor::Table {
            name, alias, args, ..
        } => {
            let own = name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .map(ident)
                .unwrap_or_default();
            let kind = if args.is_some() {
                Kind::Ignored
            } else if name.0.len() == 1 && ctes.contains(&own) {
                Kind::Nested("a WITH query")
            } else {
                match object_name(name)
                    .ok()
                    .and_then(|n| catalog.get_by_name(&n).cloned())
                {
                    Some(CatalogEntry::Table(def)) => Kind::Table(def.id),
                    Some(CatalogEntry::View(_)) | Some(CatalogEntry::LiveQuery(_)) => {
                        Kind::Nested("a view")
                    }
                    _ => Kind::Ignored,
                }
            };
            (alias_of(alias).unwrap_or(own), kind)
        }
        ast::TableFactor::Derived {
            alias, subquery, ..
        } => (
            alias_of(alias).unwrap_or_default(),
            match subquery.body.as_ref() {
                ast::SetExpr::Values(_) => Kind::Ignored,
                _ => Kind::Nested("a subquery in FROM"),
            },
        ),
        ast::TableFactor::NestedJoin {
            table_with_joins,
            alias,
        } => {
            if let Some(alias) = alias {
                out.push(Relation {
                    name: ident(&alias.name),
                    kind: Kind::Nested("a join in parentheses"),
                    nullable,
                });
                return Ok(());
            }
            let start = out.len();
            joined(table_with_joins, catalog, ctes, out)?;
            for r in &mut out[start..] {
                r.nullable |= nullable;
            }
            return Ok(());
        }
        other => (
            match other {
                ast::TableFactor::Function { alias, .. }
                | ast::TableFactor::UNNEST { alias, .. }
                | ast::TableFactor::TableFunction { alias, .. } => {
                    alias_of(alias).unwrap_or_default()
                }
                _ => String::new(),
            },
            Kind::Ignored,
        ),
    };
    out.push(Relation {
        name,
        kind,
        nullable,
    });
    Ok(())
}

impl Locking {
    /// Puts a LockRows node into each locking query's plan (below its LIMIT, above everything
    /// else) and drops the key columns from its output.
    pub fn place(&self, plan: LogicalPlan) -> Result<LogicalPlan> {
        if self.0.is_empty() {
            return Ok(plan);
        }
        let mut placed = vec![false; self.0.len()];
        let plan = plan
            .transform_down_with_subqueries(|node| {
                let found = (0..self.0.len()).find(|&n| {
                    !placed[n]
                        && node
                            .schema()
                            .fields()
                            .iter()
                            .any(|f| f.name().starts_with(&format!("{PREFIX}{n}_")))
                });
                let Some(n) = found else {
                    return Ok(Transformed::no(node));
                };
                placed[n] = true;
                let targets = self.0[n].clone();
                let locked = below_limit(node, targets)?;
                let keep: Vec<Expr> = locked
                    .schema()
                    .iter()
                    .filter(|(_, f)| !f.name().starts_with(PREFIX))
                    .map(|(q, f)| Expr::Column(Column::from((q, f))))
                    .collect();
                let dropped = Projection::try_new(keep, Arc::new(locked))?;
                Ok(Transformed::yes(LogicalPlan::Projection(dropped)))
            })?
            .data;
        if placed.iter().any(|p| !p) {
            return Err(Error::internal(
                "a locking query's key columns were not found",
            ));
        }
        Ok(plan)
    }
}

/// `node` with a LockRows node under its LIMIT (reached through projections), or on top.
fn below_limit(node: LogicalPlan, targets: Vec<Target>) -> DfResult<LogicalPlan> {
    fn has_limit(node: &LogicalPlan) -> bool {
        match node {
            LogicalPlan::Limit(_) => true,
            LogicalPlan::Projection(p) => has_limit(&p.input),
            LogicalPlan::SubqueryAlias(a) => has_limit(&a.input),
            _ => false,
        }
    }
    if !has_limit(&node) {
        return Ok(LogicalPlan::Extension(Extension {
            node: Arc::new(LockRows {
                input: node,
                targets,
            }),
        }));
    }
    match node {
        LogicalPlan::Limit(mut limit) => {
            let input = Arc::unwrap_or_clone(limit.input);
            limit.input = Arc::new(LogicalPlan::Extension(Extension {
                node: Arc::new(LockRows { input, targets }),
            }));
            Ok(LogicalPlan::Limit(limit))
        }
        other => {
            let input = other.inputs()[0].clone();
            let exprs = other.expressions();
            other.with_new_exprs(exprs, vec![below_limit(input, targets)?])
        }
    }
}

/// The logical node: its input's rows, locked (see the module's comment).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
struct LockRows {
    input: LogicalPlan,
    targets: Vec<Target>,
}

impl UserDefinedLogicalNodeCore for LockRows {
    fn name(&self) -> &str {
        "LockRows"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        self.input.schema()
    }

    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "LockRows: {}", describe(&self.targets))
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> DfResult<Self> {
        let input = inputs.into_iter().next().ok_or_else(|| {
            datafusion::error::DataFusionError::Internal("LockRows has one input".into())
        })?;
        Ok(LockRows {
            input,
            targets: self.targets.clone(),
        })
    }
}

fn describe(targets: &[Target]) -> String {
    targets
        .iter()
        .map(|t| {
            let mode = match t.mode {
                Mode::Exclusive => "update",
                Mode::Shared => "share",
            };
            let wait = match t.wait {
                Wait::Block => "",
                Wait::Skip => " skip locked",
                Wait::NoWait => " nowait",
            };
            format!("{} ({mode}{wait})", t.relation)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// DataFusion's planner, with LockRows planned as [`LockRowsExec`] for the session.
#[derive(Debug)]
pub(crate) struct Planner {
    pub shared: Weak<SessionShared>,
}

#[async_trait]
impl QueryPlanner for Planner {
    async fn create_physical_plan(
        &self,
        logical: &LogicalPlan,
        session: &dyn datafusion::catalog::Session,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let extension: Arc<dyn ExtensionPlanner + Send + Sync> = Arc::new(LockRowsPlanner {
            shared: Weak::clone(&self.shared),
        });
        DefaultPhysicalPlanner::with_extension_planners(vec![extension])
            .create_physical_plan(logical, session)
            .await
    }
}

struct LockRowsPlanner {
    shared: Weak<SessionShared>,
}

#[async_trait]
impl ExtensionPlanner for LockRowsPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session: &dyn datafusion::catalog::Session,
        _planning_ctx: &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext,
    ) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
        let Some(lock) = node.as_any().downcast_ref::<LockRows>() else {
            return Ok(None);
        };
        let input = Arc::clone(&physical_inputs[0]);
        let schema = input.schema();
        let mut targets = Vec::new();
        for t in &lock.targets {
            let columns = t
                .columns
                .iter()
                .map(|c| schema.index_of(c))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            targets.push((t.clone(), columns));
        }
        Ok(Some(Arc::new(LockRowsExec::new(
            input,
            Arc::new(targets),
            Weak::clone(&self.shared),
            None,
        ))))
    }
}

/// The physical node: takes the row locks of each row of its input, in order, up to `fetch` rows.
#[derive(Debug)]
struct LockRowsExec {
    input: Arc<dyn ExecutionPlan>,
    /// Each locked table, with the positions of its key columns in the input.
    targets: Arc<Vec<(Target, Vec<usize>)>>,
    shared: Weak<SessionShared>,
    fetch: Option<usize>,
    properties: Arc<PlanProperties>,
}

impl LockRowsExec {
    fn new(
        input: Arc<dyn ExecutionPlan>,
        targets: Arc<Vec<(Target, Vec<usize>)>>,
        shared: Weak<SessionShared>,
        fetch: Option<usize>,
    ) -> Self {
        let properties = PlanProperties::new(
            input.equivalence_properties().clone(),
            Partitioning::UnknownPartitioning(1),
            input.pipeline_behavior(),
            input.boundedness(),
        );
        LockRowsExec {
            input,
            targets,
            shared,
            fetch,
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for LockRowsExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let targets: Vec<Target> = self.targets.iter().map(|(t, _)| t.clone()).collect();
        write!(f, "LockRowsExec: {}", describe(&targets))?;
        if let Some(n) = self.fetch {
            write!(f, ", fetch={n}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for LockRowsExec {
    fn name(&self) -> &str {
        "LockRowsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![Distribution::SinglePartition]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let input = children.pop().ok_or_else(|| {
            datafusion::error::DataFusionError::Internal("LockRowsExec has one child".into())
        })?;
        Ok(Arc::new(LockRowsExec::new(
            input,
            Arc::clone(&self.targets),
            Weak::clone(&self.shared),
            self.fetch,
        )))
    }

    fn with_fetch(&self, fetch: Option<usize>) -> Option<Arc<dyn ExecutionPlan>> {
        Some(Arc::new(LockRowsExec::new(
            Arc::clone(&self.input),
            Arc::clone(&self.targets),
            Weak::clone(&self.shared),
            fetch,
        )))
    }

    fn fetch(&self) -> Option<usize> {
        self.fetch
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let shared = self
            .shared
            .upgrade()
            .ok_or_else(|| to_df(Error::internal("the session ended")))?;
        let input = self.input.execute(partition, context)?;
        let locker = Locker {
            shared,
            targets: Arc::clone(&self.targets),
            left: self.fetch,
        };
        let stream =
            futures::stream::unfold((input, locker), |(mut input, mut locker)| async move {
                loop {
                    if locker.left == Some(0) {
                        return None;
                    }
                    let batch = match input.next().await? {
                        Ok(b) => b,
                        Err(e) => return Some((Err(e), (input, locker))),
                    };
                    match locker.batch(&batch).await {
                        Ok(b) if b.num_rows() == 0 => continue,
                        Ok(b) => return Some((Ok(b), (input, locker))),
                        Err(e) => return Some((Err(to_df(e)), (input, locker))),
                    }
                }
            });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            stream,
        )))
    }
}

struct Locker {
    shared: Arc<SessionShared>,
    targets: Arc<Vec<(Target, Vec<usize>)>>,
    /// Rows still to lock before the LIMIT is reached.
    left: Option<usize>,
}

impl Locker {
    /// The rows of `batch` that were locked (all of them, but those SKIP LOCKED skipped), up to
    /// the rows still wanted.
    async fn batch(&mut self, batch: &RecordBatch) -> Result<RecordBatch> {
        let view = self
            .shared
            .read()
            .ok_or_else(|| Error::internal("locking rows outside a transaction"))?;
        let catalog = &view.catalog;
        let mut keep = Vec::new();
        for row in 0..batch.num_rows() {
            if self.left == Some(0) {
                break;
            }
            let mut locked = true;
            for (target, columns) in self.targets.iter() {
                let Some(def) = catalog.table_by_id(target.table) else {
                    return Err(Error::internal("locked table left the catalog"));
                };
                let mut pk: Vec<Value> = Vec::with_capacity(columns.len());
                for (&col, &key) in columns.iter().zip(&def.primary_key) {
                    pk.push(crate::convert::array_value(
                        batch.column(col),
                        row,
                        def.columns[key].data_type,
                    )?);
                }
                if !self.lock(target, &view.reader, &pk).await? {
                    locked = false;
                    break;
                }
            }
            if locked {
                keep.push(row as u32);
                if let Some(left) = &mut self.left {
                    *left -= 1;
                }
            }
        }
        if keep.len() == batch.num_rows() {
            return Ok(batch.clone());
        }
        Ok(take_record_batch(batch, &UInt32Array::from(keep))?)
    }

    /// Locks one row of `target`; false if SKIP LOCKED skips it.
    async fn lock(
        &self,
        target: &Target,
        reader: &weft_storage::TxnReader,
        pk: &[Value],
    ) -> Result<bool> {
        let shared = &self.shared;
        let (locks, id) = (&shared.advisory, shared.advisory_id);
        let storage_key = weft_storage::row_key(target.table, pk);
        let key = Key::Row(Arc::from(storage_key.as_slice()));
        let got = match target.wait {
            Wait::Block => {
                locks
                    .acquire(
                        id,
                        key.clone(),
                        target.mode,
                        Scope::Transaction,
                        &shared.cancel,
                    )
                    .await?;
                true
            }
            Wait::Skip | Wait::NoWait => {
                locks.try_acquire(id, key.clone(), target.mode, Scope::Transaction)?
            }
        };
        if !got {
            if target.wait == Wait::Skip {
                return Ok(false);
            }
            return Err(Error::Data {
                code: "55P03",
                message: format!(
                    "could not obtain lock on row in relation \"{}\"",
                    target.relation
                ),
            });
        }
        shared.xact_advisory.store(true, AtomicOrdering::Release);
        // Read once the lock is held: the holder a waiter waited for may have committed a change.
        if !reader.changed_since_snapshot(&storage_key)? {
            return Ok(true);
        }
        if target.wait == Wait::Skip {
            locks.release(id, &key, target.mode, Scope::Transaction);
            return Ok(false);
        }
        Err(Error::SerializationFailure {
            detail: Some(format!(
                "a row of \"{}\" this statement locks was changed by a commit after the \
                 transaction's snapshot",
                target.relation
            )),
        })
    }
}

/// UPDATE and DELETE lock each row before they change it, as PostgreSQL's do (at FOR UPDATE
/// strength: Weft does not tell FOR NO KEY UPDATE apart), in the same table as `SELECT … FOR
/// UPDATE`: a writer waits for a transaction that locked or wrote the row, and a locker or
/// `SKIP LOCKED` for the writer. Holding the lock, the writer checks whether a commit after its
/// snapshot changed the row (40001 now rather than at COMMIT, while an autocommit statement, the
/// first of a block or one of a READ COMMITTED block can still run again:
/// `Session::execute_in_txn`). LWW tables take no lock: their writes never conflict.
pub(crate) async fn lock_for_write(
    shared: &SessionShared,
    txn: &weft_storage::Txn,
    def: &weft_storage::TableDef,
    rows: &[&weft_storage::Row],
) -> Result<()> {
    if !takes_write_locks(def) {
        return Ok(());
    }
    for row in rows {
        let (storage_key, key) = write_key(def, row);
        if !try_lock_for_write(shared, key.clone())? {
            shared
                .advisory
                .acquire(
                    shared.advisory_id,
                    key,
                    Mode::Exclusive,
                    Scope::Transaction,
                    &shared.cancel,
                )
                .await?;
        }
        check_written(txn, def, &storage_key)?;
    }
    Ok(())
}

/// [`lock_for_write`] for synchronous code (the rows a foreign key's cascade changes): a row
/// another transaction holds is waited for by blocking the worker thread, as the advisory lock
/// functions do.
pub(crate) fn lock_for_write_blocking(
    shared: &SessionShared,
    txn: &weft_storage::Txn,
    def: &weft_storage::TableDef,
    rows: &[&weft_storage::Row],
) -> Result<()> {
    if !takes_write_locks(def) {
        return Ok(());
    }
    for (i, row) in rows.iter().enumerate() {
        let (storage_key, key) = write_key(def, row);
        if !try_lock_for_write(shared, key)? {
            return crate::functions::block_on(lock_for_write(shared, txn, def, &rows[i..]))?;
        }
        check_written(txn, def, &storage_key)?;
    }
    Ok(())
}

/// LWW tables take no write locks: their writes never conflict.
fn takes_write_locks(def: &weft_storage::TableDef) -> bool {
    def.consistency != weft_storage::Consistency::Lww
}

/// The storage key of a row, and the name of its lock.
fn write_key(def: &weft_storage::TableDef, row: &weft_storage::Row) -> (Vec<u8>, Key) {
    let pk: Vec<Value> = def.primary_key.iter().map(|&c| row[c].clone()).collect();
    let storage_key = weft_storage::row_key(def.id, &pk);
    let key = Key::Row(Arc::from(storage_key.as_slice()));
    (storage_key, key)
}

fn try_lock_for_write(shared: &SessionShared, key: Key) -> Result<bool> {
    shared.xact_advisory.store(true, AtomicOrdering::Release);
    shared
        .advisory
        .try_acquire(shared.advisory_id, key, Mode::Exclusive, Scope::Transaction)
}

fn check_written(txn: &weft_storage::Txn, def: &weft_storage::TableDef, key: &[u8]) -> Result<()> {
    if txn.changed_since_snapshot(key)? {
        return Err(Error::SerializationFailure {
            detail: Some(format!(
                "a row of \"{}\" this statement changes was changed by a commit after this \
                 transaction's snapshot",
                def.name
            )),
        });
    }
    Ok(())
}

/// A session state's query planner that knows LockRows.
pub(crate) fn planner(shared: &Arc<SessionShared>) -> Arc<dyn QueryPlanner + Send + Sync> {
    Arc::new(Planner {
        shared: Arc::downgrade(shared),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_locks_rows_when_any_of_its_queries_does() {
        let parse = |sql: &str| crate::statement::parse(sql).unwrap().remove(0);
        assert!(locks_rows(&parse("SELECT * FROM t FOR UPDATE").ast));
        assert!(locks_rows(
            &parse("DELETE FROM t WHERE id = (SELECT id FROM t LIMIT 1 FOR UPDATE SKIP LOCKED)")
                .ast
        ));
        assert!(!locks_rows(&parse("SELECT * FROM t").ast));
        assert!(Wait::NoWait > Wait::Skip && Wait::Skip > Wait::Block);
    }
}
