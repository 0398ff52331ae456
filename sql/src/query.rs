//! Queries through DataFusion: a session's planning state, parameter type inference (client
//! declarations, casts, PostgreSQL's "unknown is text"), binding, and execution as a row stream.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::StringArray;
use datafusion::arrow::datatypes::{DataType as ArrowType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{CatalogProviderList, MemoryCatalogProviderList, SchemaProvider};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::expr::{Cast, Placeholder};
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::optimizer::simplify_expressions::SimplifyExpressions;
use datafusion::optimizer::Optimizer;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast;
use weft_storage::Catalog;

use crate::error::{Error, Result};
use crate::functions;
use crate::naming;
use crate::pg_catalog;
use crate::pgtype::{PgType, PG_TYPE_KEY};
use crate::schema::{PublicSchema, WeftCatalog, DEFAULT_SCHEMA};
use crate::session::{ExecCtx, FieldInfo, QueryOutput, RowStream};
use crate::shared::SessionShared;
use crate::statement::Statement;

/// A planned query, kept by a prepared statement and re-bound on every execution.
#[derive(Clone)]
pub(crate) struct QueryPlan {
    pub plan: LogicalPlan,
    /// `plan` analyzed and optimized with its parameters unbound; Execute binds the values,
    /// simplifies once more and plans it physically. None when the optimizer must see the
    /// statement itself (see [`reusable`]) or failed here (Execute then reports the error).
    optimized: Option<LogicalPlan>,
    pub param_types: Vec<PgType>,
    pub param_arrow: Vec<ArrowType>,
    pub fields: Arc<Vec<FieldInfo>>,
    declared: Vec<Option<PgType>>,
    /// The catalog the plan was made against; a changed catalog means planning again.
    catalog: Arc<Catalog>,
}

/// A DataFusion state for one session, resolving names through the session's transaction.
pub(crate) fn new_state(shared: &Arc<SessionShared>, database: &str) -> SessionState {
    let system = pg_catalog::schemas(shared, database);
    let config = SessionConfig::new()
        .with_default_catalog_and_schema(database, DEFAULT_SCHEMA)
        .with_create_default_catalog_and_schema(false)
        // PostgreSQL's information_schema (pg_catalog/), not DataFusion's.
        .with_information_schema(false)
        .with_extension(Arc::clone(&system.ctx))
        // One partition: point and small queries dominate; repartitioning costs more than it gives.
        .with_target_partitions(1)
        .set_str("datafusion.sql_parser.dialect", "PostgreSQL")
        // `timestamptz` plans as a zoned timestamp (OID 1184); sessions are UTC.
        .set_str("datafusion.execution.time_zone", crate::pgtype::UTC)
        .set_bool("datafusion.sql_parser.map_string_types_to_utf8view", false)
        // `1.5` is numeric, as in PostgreSQL, not float8.
        .set_bool("datafusion.sql_parser.parse_float_as_decimal", true)
        .set_bool(
            "datafusion.execution.parquet.schema_force_view_types",
            false,
        );
    let public: Arc<dyn SchemaProvider> = Arc::new(
        PublicSchema::new(Arc::clone(shared)).with_fallback(Arc::clone(&system.pg_catalog)),
    );
    let others = vec![
        (pg_catalog::PG_CATALOG.to_string(), system.pg_catalog),
        (
            pg_catalog::INFORMATION_SCHEMA.to_string(),
            system.information_schema,
        ),
    ];
    let catalog = Arc::new(WeftCatalog::new(public, others));
    let catalogs = Arc::new(MemoryCatalogProviderList::new());
    catalogs.register_catalog(database.to_string(), catalog);
    let mut builder = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_catalog_list(catalogs)
        .with_analyzer_rules(crate::arith::analyzer_rules(pg_catalog::analyzer_rules()))
        .with_optimizer_rules(crate::unnest_keys::optimizer_rules())
        .with_type_planner(Arc::new(crate::datetime_in::PgTypePlanner))
        .with_query_planner(crate::row_lock::planner(shared));
    if let Some(planners) = builder.expr_planners() {
        // Before DataFusion's, which would plan every subscript its own way.
        planners.insert(0, Arc::new(functions::SubscriptPlanner));
    }
    let mut state = builder.build();
    functions::register(&mut state, shared);
    use datafusion::execution::FunctionRegistry as _;
    for f in crate::aggregates::udafs()
        .into_iter()
        .chain(crate::ordered_set::udafs())
    {
        let _ = state.register_udaf(f);
    }
    let scalar = crate::extract::udfs()
        .into_iter()
        .chain(crate::datetime::udfs())
        .chain(crate::math::udfs())
        .chain([crate::similar::udf()])
        .chain(crate::regexp::udfs());
    for f in scalar {
        let _ = state.register_udf(f);
    }
    functions::register_database(&mut state, database);
    pg_catalog::register_functions(&mut state, &system.ctx);
    state
}

pub(crate) fn is_query(stmt: &ast::Statement) -> bool {
    matches!(
        stmt,
        ast::Statement::Query(_) | ast::Statement::Explain { .. }
    )
}

pub(crate) async fn plan(
    state: &SessionState,
    stmt: &Statement,
    declared: &[Option<PgType>],
    catalog: Arc<Catalog>,
) -> Result<QueryPlan> {
    let mut ast = (*stmt.ast).clone();
    crate::rewrite::whole_rows(&mut ast, &catalog);
    let names = naming::alias_outputs(&mut ast);
    let locking = crate::row_lock::prepare(&mut ast, &catalog, &|name| {
        state.aggregate_functions().contains_key(name)
    })?;
    let logical = state
        .statement_to_plan(DfStatement::Statement(Box::new(ast)))
        .await
        .map_err(|e| Error::from(e).with_sql_position(&stmt.sql))?;
    let logical = locking.place(logical)?;
    let logical = crate::numeric_display::mark_outputs(logical)?;
    let logical = infer_params(logical, declared)?;
    let logical = crate::unnest_fields::keep_element_types(logical)?;
    let (param_types, param_arrow) = param_types(&logical)?;
    let mut fields = fields_of(logical.schema().as_arrow());
    for f in &mut fields {
        f.name = naming::output_name(&names, &f.name).to_string();
    }
    let optimized = if reusable(&logical) {
        // A panic while optimizing (constant folding of a list too large for Arrow) leaves the
        // plan unoptimized; planning it again at execution reports the panic as an error.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| state.optimize(&logical)))
            .ok()
            .and_then(|r| r.ok())
    } else {
        None
    };
    analyzed_numeric_outputs(state, &logical, optimized.as_ref(), &mut fields);
    let fields = Arc::new(fields);
    Ok(QueryPlan {
        optimized,
        plan: logical,
        param_types,
        param_arrow,
        fields,
        declared: declared.to_vec(),
        catalog,
    })
}

/// Whether a plan may be optimized once for all its executions: not when it has functions that
/// are not immutable (the optimizer folds now() to the statement's start), subqueries (rewritten
/// by our analyzer rules, better seen with values), or is an EXPLAIN (which shows the planning).
fn reusable(plan: &LogicalPlan) -> bool {
    if matches!(plan, LogicalPlan::Explain(_) | LogicalPlan::Analyze(_)) {
        return false;
    }
    let mut ok = true;
    let walked = plan.apply_with_subqueries(|node| {
        if matches!(node, LogicalPlan::Subquery(_)) {
            ok = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        node.apply_expressions(|e| {
            e.apply(|e| {
                let fixed = match e {
                    Expr::ScalarFunction(f) => {
                        f.func.signature().volatility == Volatility::Immutable
                    }
                    Expr::AggregateFunction(f) => {
                        f.func.signature().volatility == Volatility::Immutable
                    }
                    Expr::ScalarSubquery(_)
                    | Expr::Exists(_)
                    | Expr::InSubquery(_)
                    | Expr::OuterReferenceColumn(..) => false,
                    _ => true,
                };
                ok &= fixed;
                Ok(if fixed {
                    TreeNodeRecursion::Continue
                } else {
                    TreeNodeRecursion::Stop
                })
            })
        })
    });
    walked.is_ok() && ok
}

/// Describes a numeric output (or an array of numbers) by the type the analyzed plan gives it when that differs from the
/// planned one: DataFusion plans integer literals as `Int64` and our analyzer makes them `Int32`
/// (`SELECT 1`, `VALUES (1)` are int4 in PostgreSQL), which also changes what is computed from
/// them (`sum` of int4 is bigint, of int8 numeric). The analyzed plan is what executes, so its
/// type is the one the rows have. Outputs with an explicit PostgreSQL type are left alone.
fn analyzed_numeric_outputs(
    state: &SessionState,
    logical: &LogicalPlan,
    optimized: Option<&LogicalPlan>,
    fields: &mut [FieldInfo],
) {
    // Numbers, and arrays of them (`ARRAY[1, 2]` is int4[]).
    let numeric = |t: &ArrowType| match t {
        ArrowType::List(item) => item.data_type().is_numeric(),
        t => t.is_numeric(),
    };
    let candidate = |f: &Field| numeric(f.data_type()) && !f.metadata().contains_key(PG_TYPE_KEY);
    if !logical.schema().fields().iter().any(|f| candidate(f)) {
        return;
    }
    let analyzed;
    let executed = match optimized {
        Some(plan) => plan,
        None => {
            let Ok(plan) = state.analyzer().execute_and_check(
                logical.clone(),
                state.config_options(),
                |_, _| {},
            ) else {
                return;
            };
            analyzed = plan;
            &analyzed
        }
    };
    let planned = logical.schema().fields();
    let run = executed.schema().fields();
    if planned.len() != run.len() {
        return;
    }
    for ((f, before), after) in fields.iter_mut().zip(planned).zip(run) {
        if candidate(before) && candidate(after) && before.data_type() != after.data_type() {
            f.pg_type = PgType::from_arrow(after.data_type());
        }
    }
}

/// RowDescription fields of an output schema.
pub(crate) fn fields_of(schema: &Schema) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .map(|f| FieldInfo {
            name: f.name().clone(),
            pg_type: PgType::from_field(f),
            table_oid: 0,
            column_id: 0,
            type_modifier: -1,
        })
        .collect()
}

fn declared_type(id: &str, declared: &[Option<PgType>]) -> Option<PgType> {
    let n: usize = id.strip_prefix('$')?.parse().ok()?;
    declared.get(n.checked_sub(1)?).copied().flatten()
}

/// Gives every placeholder a type: the client's declaration, else the type it is cast to, else
/// DataFusion's inference, else text (PostgreSQL resolves an unknown parameter as text).
pub(crate) fn infer_params(plan: LogicalPlan, declared: &[Option<PgType>]) -> Result<LogicalPlan> {
    let with_field = |p: Placeholder, t: ArrowType| -> Expr {
        Expr::Placeholder(Placeholder::new_with_field(
            p.id.clone(),
            Some(Arc::new(Field::new(&p.id, t, true))),
        ))
    };
    let lists = any_lists(&plan, declared)?;
    let pass = |plan: LogicalPlan, fallback: bool| -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let t = node.map_expressions(|e| {
                e.transform_up(|e| match e {
                    Expr::Placeholder(p) => match declared_type(&p.id, declared) {
                        Some(t)
                            if p.field.as_ref().map(|f| f.data_type()) != Some(&t.to_arrow()) =>
                        {
                            Ok(Transformed::yes(with_field(p, t.to_arrow())))
                        }
                        None if p.field.is_none() && lists.contains_key(&p.id) => {
                            let t = lists[&p.id].clone();
                            Ok(Transformed::yes(with_field(p, t)))
                        }
                        None if fallback && p.field.is_none() => {
                            Ok(Transformed::yes(with_field(p, ArrowType::Utf8)))
                        }
                        _ => Ok(Transformed::no(Expr::Placeholder(p))),
                    },
                    Expr::Cast(Cast { expr, field }) => match *expr {
                        Expr::Placeholder(p) if p.field.is_none() => {
                            let inner = with_field(p, field.data_type().clone());
                            Ok(Transformed::yes(Expr::Cast(Cast {
                                expr: Box::new(inner),
                                field,
                            })))
                        }
                        other => Ok(Transformed::no(Expr::Cast(Cast {
                            expr: Box::new(other),
                            field,
                        }))),
                    },
                    other => Ok(Transformed::no(other)),
                })
            })?;
            if t.transformed {
                t.map_data(|p| p.recompute_schema())
            } else {
                Ok(t)
            }
        })
        .map(|t| t.data)
        .map_err(Error::from)
    };
    let plan = pass(plan, false)?;
    pass(plan, true)
}

/// `x = ANY($1)` is `array_has($1, x)` (and `x <> ALL($1)` uses $1 more than once): an untyped
/// $1 there is an array of x's type, as PostgreSQL infers it (text would not plan). The other
/// way round, `$1 = ANY(arr)` is `array_has(arr, $1)`: $1 is of arr's element type. And an
/// untyped argument of a function whose signature names its type takes that type.
fn any_lists(
    plan: &LogicalPlan,
    declared: &[Option<PgType>],
) -> Result<HashMap<String, ArrowType>> {
    let mut lists = HashMap::new();
    let untyped = |p: &Placeholder| p.field.is_none() && declared_type(&p.id, declared).is_none();
    plan.apply_with_subqueries(|node| {
        let input = node
            .inputs()
            .first()
            .map(|i| Arc::clone(i.schema()))
            .unwrap_or_else(|| Arc::clone(node.schema()));
        let type_of = |e: &Expr| {
            datafusion::logical_expr::ExprSchemable::get_type(e, input.as_ref())
                .ok()
                .filter(|t| *t != ArrowType::Null)
        };
        node.apply_expressions(|e| {
            e.apply(|e| {
                let Expr::ScalarFunction(f) = e else {
                    return Ok(TreeNodeRecursion::Continue);
                };
                if f.name() == "generate_series" {
                    // `generate_series(1, $1)`: an untyped bound is of the other bound's type,
                    // int4 beside an integer literal that fits (PostgreSQL picks the int4 form),
                    // and an untyped step of a series of dates or times is an interval.
                    let small = |e: &Expr| match e {
                        Expr::Literal(ScalarValue::Int64(Some(n)), _) => i32::try_from(*n).is_ok(),
                        e => type_of(e) == Some(ArrowType::Int32),
                    };
                    let bounds: Vec<&Expr> = f
                        .args
                        .iter()
                        .take(2)
                        .filter(|a| !matches!(a, Expr::Placeholder(_)))
                        .collect();
                    let bound = if bounds.iter().all(|e| small(e)) {
                        Some(ArrowType::Int32)
                    } else {
                        bounds.first().and_then(|e| type_of(e))
                    };
                    for (i, a) in f.args.iter().enumerate() {
                        let Expr::Placeholder(p) = a else { continue };
                        let t = match (i, &bound) {
                            (2, Some(ArrowType::Timestamp(..) | ArrowType::Date32)) => {
                                Some(ArrowType::Interval(
                                    datafusion::arrow::datatypes::IntervalUnit::MonthDayNano,
                                ))
                            }
                            (_, t) => t.clone(),
                        };
                        if let (true, Some(t)) = (untyped(p), t) {
                            lists.entry(p.id.clone()).or_insert(t);
                        }
                    }
                    return Ok(TreeNodeRecursion::Continue);
                }
                if f.name() != "array_has" {
                    // `pg_advisory_lock($1)`: the type the function's signature takes there.
                    let sig = &f.func.signature().type_signature;
                    for (i, a) in f.args.iter().enumerate() {
                        if let Expr::Placeholder(p) = a {
                            if let (true, Some(t)) =
                                (untyped(p), signature_arg(sig, f.args.len(), i))
                            {
                                lists.entry(p.id.clone()).or_insert(t);
                            }
                        }
                    }
                    return Ok(TreeNodeRecursion::Continue);
                }
                match (f.args.first(), f.args.get(1)) {
                    (Some(Expr::Placeholder(p)), Some(x)) if untyped(p) => {
                        if let Some(t) = type_of(x) {
                            lists.insert(
                                p.id.clone(),
                                ArrowType::List(Arc::new(Field::new_list_field(t, true))),
                            );
                        }
                    }
                    (Some(list), Some(Expr::Placeholder(p))) if untyped(p) => {
                        if let Some(ArrowType::List(f) | ArrowType::LargeList(f)) = type_of(list) {
                            lists.insert(p.id.clone(), f.data_type().clone());
                        }
                    }
                    _ => {}
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })
    .map_err(Error::from)?;
    Ok(lists)
}

/// The one type a function's signature takes as argument `i` of `arity`, if it names one.
fn signature_arg(
    sig: &datafusion::logical_expr::TypeSignature,
    arity: usize,
    i: usize,
) -> Option<ArrowType> {
    use datafusion::logical_expr::TypeSignature as T;
    match sig {
        T::Exact(types) if types.len() == arity => types.get(i).cloned(),
        T::Uniform(n, types) if *n == arity && types.len() == 1 => types.first().cloned(),
        T::OneOf(sigs) => sigs.iter().find_map(|s| signature_arg(s, arity, i)),
        _ => None,
    }
}

fn param_types(plan: &LogicalPlan) -> Result<(Vec<PgType>, Vec<ArrowType>)> {
    let fields = plan.get_parameter_fields().map_err(Error::from)?;
    let mut by_index: HashMap<usize, ArrowType> = HashMap::new();
    // Parameters compared with an oid column are oids (tokio-postgres binds its u32 only to oid).
    let mut oids: Vec<usize> = Vec::new();
    for (id, field) in fields {
        let n: usize = id
            .strip_prefix('$')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| Error::syntax(format!("invalid parameter name {id}")))?;
        if field
            .as_ref()
            .is_some_and(|f| PgType::from_field(f) == PgType::Oid)
        {
            oids.push(n);
        }
        by_index.insert(
            n,
            field
                .map(|f| f.data_type().clone())
                .unwrap_or(ArrowType::Utf8),
        );
    }
    let count = by_index.keys().copied().max().unwrap_or(0);
    let arrow: Vec<ArrowType> = (1..=count)
        .map(|i| by_index.remove(&i).unwrap_or(ArrowType::Utf8))
        .collect();
    let pg = arrow
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if oids.contains(&(i + 1)) {
                PgType::Oid
            } else {
                PgType::from_arrow(t)
            }
        })
        .collect();
    Ok((pg, arrow))
}

/// Casts a bound value to its parameter's type (a client may send int4 where int8 is expected).
pub(crate) fn cast_param(v: ScalarValue, t: &ArrowType) -> Result<ScalarValue> {
    if &v.data_type() == t {
        return Ok(v);
    }
    v.cast_to(t).map_err(Error::from)
}

fn bind(
    logical: &LogicalPlan,
    types: &[ArrowType],
    params: Vec<ScalarValue>,
) -> Result<LogicalPlan> {
    if params.is_empty() {
        return Ok(logical.clone());
    }
    let values = params
        .into_iter()
        .zip(types)
        .map(|(v, t)| cast_param(v, t))
        .collect::<Result<Vec<_>>>()?;
    logical
        .clone()
        .with_param_values(ParamValues::from(values))
        .map_err(Error::from)
}

/// The physical plan for one execution: from the prepared optimized plan when there is one
/// (binding, then simplifying so that `CAST(k AS bigint) = 5` becomes a key lookup again),
/// else through DataFusion's whole optimizer.
/// The physical plan of `plan` with its parameters. A panic inside DataFusion's planning
/// (constant folding evaluates expressions: `generate_series(1, 3000000000)` in a select list
/// builds a list past Arrow's offsets and panics) becomes an error, not a dropped connection.
async fn physical_plan(
    state: &SessionState,
    plan: &QueryPlan,
    params: Vec<ScalarValue>,
) -> Result<Arc<dyn ExecutionPlan>> {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(physical_plan_of(state, plan, params))
        .catch_unwind()
        .await
    {
        Ok(planned) => planned,
        Err(panic) => Err(Error::internal(format!(
            "query planning failed: {}",
            crate::cpu::panic_text(panic.as_ref())
        ))),
    }
}

async fn physical_plan_of(
    state: &SessionState,
    plan: &QueryPlan,
    params: Vec<ScalarValue>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let Some(optimized) = &plan.optimized else {
        let logical = bind(&plan.plan, &plan.param_arrow, params)?;
        return Ok(state.create_physical_plan(&logical).await?);
    };
    let logical = if params.is_empty() {
        optimized.clone()
    } else {
        let bound = bind(optimized, &plan.param_arrow, params)?;
        Optimizer::with_rules(vec![Arc::new(SimplifyExpressions::new())]).optimize(
            bound,
            state,
            |_, _| {},
        )?
    };
    Ok(state
        .query_planner()
        .create_physical_plan(&logical, state)
        .await?)
}

pub(crate) async fn execute(
    ctx: &ExecCtx<'_>,
    plan: &QueryPlan,
    stmt: &Statement,
    params: Vec<ScalarValue>,
) -> Result<QueryOutput> {
    let current = ctx.shared.catalog();
    let fresh;
    let plan = if Arc::ptr_eq(&plan.catalog, &current) || plan.catalog.entries == current.entries {
        plan
    } else {
        fresh = self::plan(ctx.state, stmt, &plan.declared, Arc::clone(&current)).await?;
        if fresh.param_types != plan.param_types {
            return Err(Error::FeatureNotSupported {
                feature: "re-planning a prepared statement whose parameter types changed after DDL (prepare it again)".into(),
            });
        }
        &fresh
    };
    let physical = physical_plan(ctx.state, plan, params).await?;
    let physical = crate::interrupt::interruptible(physical, ctx.cancel)?;
    // The statement's planned schema: the optimizer need not keep field metadata.
    let schema = Arc::new(plan.plan.schema().as_arrow().clone());
    let stream = crate::cpu::execute(physical, ctx.state.task_ctx());
    let stream = crate::numeric_display::stream(&schema, stream);
    Ok(QueryOutput::Rows {
        fields: Arc::clone(&plan.fields),
        stream,
        command: "SELECT",
    })
}

/// Runs a planned query with its parameters and collects its rows as the plan typed them (no
/// display conversion): CREATE TABLE … AS stores them.
pub(crate) async fn collect(
    ctx: &ExecCtx<'_>,
    plan: &QueryPlan,
    params: Vec<ScalarValue>,
) -> Result<Vec<RecordBatch>> {
    use futures::StreamExt;

    let physical = physical_plan(ctx.state, plan, params).await?;
    let physical = crate::interrupt::interruptible(physical, ctx.cancel)?;
    let mut stream = crate::cpu::execute(physical, ctx.state.task_ctx());
    let mut batches = Vec::new();
    while let Some(batch) = stream.next().await {
        batches.push(batch?);
    }
    Ok(batches)
}

pub(crate) fn text_field(name: &str) -> FieldInfo {
    FieldInfo {
        name: name.to_string(),
        pg_type: PgType::Text,
        table_oid: 0,
        column_id: 0,
        type_modifier: -1,
    }
}

/// A one-row, one-column text result (SHOW).
pub(crate) fn single_text(name: &str, value: String) -> Result<QueryOutput> {
    one_text(name, value, "SHOW")
}

/// A one-row, one-column text result of a SELECT (`set_config`).
pub(crate) fn select_text(name: &str, value: String) -> Result<QueryOutput> {
    one_text(name, value, "SELECT")
}

fn one_text(name: &str, value: String, command: &'static str) -> Result<QueryOutput> {
    let schema = Arc::new(Schema::new(vec![Field::new(name, ArrowType::Utf8, false)]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(StringArray::from(vec![value]))],
    )?;
    Ok(rows_output(vec![text_field(name)], vec![batch], command))
}

pub(crate) fn show_all(values: Vec<(String, String)>) -> Result<QueryOutput> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("name", ArrowType::Utf8, false),
        Field::new("setting", ArrowType::Utf8, false),
        Field::new("description", ArrowType::Utf8, false),
    ]));
    let names: Vec<&str> = values.iter().map(|(n, _)| n.as_str()).collect();
    let settings: Vec<&str> = values.iter().map(|(_, v)| v.as_str()).collect();
    let desc: Vec<&str> = values.iter().map(|_| "").collect();
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::from(settings)),
            Arc::new(StringArray::from(desc)),
        ],
    )?;
    Ok(rows_output(
        vec![
            text_field("name"),
            text_field("setting"),
            text_field("description"),
        ],
        vec![batch],
        "SHOW",
    ))
}

/// Rows already in memory as a result.
pub(crate) fn rows_output(
    fields: Vec<FieldInfo>,
    batches: Vec<RecordBatch>,
    command: &'static str,
) -> QueryOutput {
    let stream: RowStream = Box::pin(futures::stream::iter(batches.into_iter().map(Ok)));
    QueryOutput::Rows {
        fields: Arc::new(fields),
        stream,
        command,
    }
}
