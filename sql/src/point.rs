//! The point-statement fast path: a prepared `SELECT cols FROM t WHERE pk = …`, `UPDATE t SET …
//! WHERE pk = …` or `DELETE FROM t WHERE pk = …` whose primary key is pinned by equalities runs
//! as one `Txn::get` (plus one write) with no DataFusion plan at Execute.
//!
//! ```text
//!  Parse ──► DataFusion logical plan (as the normal path makes it, for types and names)
//!              │ matches Projection ─ Filter(pk = $n AND …) ─ [SubqueryAlias] ─ TableScan(WeftTable)?
//!              ▼ yes
//!            PointPlan (table def, key sources, output schema / compiled SET expressions)
//!  Execute ──► catalog still has the same table? ──no──► normal path
//!              │ yes
//!              ▼
//!            Txn::get(pk) ──► rows / Txn::update / Txn::delete (dml/point.rs)
//! ```
//!
//! Anything outside the narrow pattern (joins, other predicates, casts on the key, LIMIT, ORDER BY,
//! functions, floats and char keys, parameters whose type differs from the key column's) keeps the
//! normal path. The statement's parameter types and RowDescription come from the normal path's
//! planning, so a client cannot tell the two apart.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType as ArrowType, SchemaRef};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::DefaultTableSource;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator, TableScan};
use weft_storage::{Catalog, DataType, Row, TableDef, Txn, Value};

use crate::convert::{rows_to_batch, scalar_to_value};
use crate::error::Result;
use crate::pgtype::arrow_type;
use crate::query::{cast_param, QueryPlan};
use crate::session::{ExecCtx, FieldInfo, QueryOutput, RowStream};
use crate::table::WeftTable;

/// A prepared statement's fast path.
pub(crate) enum PointPlan {
    Select(PointSelect),
    Write(crate::dml::point::PointWrite),
}

/// The target table as the statement was prepared against it, and its key's sources.
pub(crate) struct Target {
    pub def: Arc<TableDef>,
    catalog: Arc<Catalog>,
    /// One source per primary-key column, in key order.
    key: Vec<KeyPart>,
    /// Parameter types every bound value is cast to first, as the normal path does.
    pub param_arrow: Vec<ArrowType>,
}

#[derive(Debug, Clone)]
enum KeyPart {
    /// `$n`, 0-based, whose type is the key column's.
    Param(usize),
    Value(Value),
}

pub(crate) struct PointSelect {
    target: Target,
    /// Output schema of the normal plan and the table columns it projects.
    schema: SchemaRef,
    columns: Vec<usize>,
    types: Vec<DataType>,
    fields: Arc<Vec<FieldInfo>>,
}

/// The parts of `Projection ─ Filter ─ [SubqueryAlias] ─ TableScan(WeftTable)`.
pub(crate) struct Shape<'a> {
    pub projection: &'a [Expr],
    pub output: &'a DFSchema,
    pub predicate: &'a Expr,
    /// The schema the projection and predicate refer to (the scan's, maybe re-qualified).
    pub input: &'a DFSchema,
    pub table: &'a WeftTable,
}

pub(crate) fn shape(plan: &LogicalPlan) -> Option<Shape<'_>> {
    let LogicalPlan::Projection(p) = plan else {
        return None;
    };
    let LogicalPlan::Filter(f) = p.input.as_ref() else {
        return None;
    };
    let scan = match f.input.as_ref() {
        LogicalPlan::SubqueryAlias(a) => a.input.as_ref(),
        other => other,
    };
    let LogicalPlan::TableScan(TableScan {
        source,
        projection: None,
        filters,
        fetch: None,
        ..
    }) = scan
    else {
        return None;
    };
    if !filters.is_empty() {
        return None;
    }
    let table = source
        .as_ref()
        .downcast_ref::<DefaultTableSource>()?
        .table_provider
        .as_ref()
        .downcast_ref::<WeftTable>()?;
    Some(Shape {
        projection: &p.expr,
        output: p.schema.as_ref(),
        predicate: &f.predicate,
        input: f.input.schema().as_ref(),
        table,
    })
}

/// Key column types whose stored encoding compares as SQL `=` does. Floats (-0, NaN) and char(n)
/// (blank padding) do not; varchar(n) would need a length check the comparison must not make.
fn key_type_ok(t: DataType) -> bool {
    matches!(
        t,
        DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::Text
            | DataType::Bool
            | DataType::Date
            | DataType::Timestamp
            | DataType::TimestampTz
            | DataType::Uuid
    )
}

/// A literal as a key value, only where that is exactly what `=` means.
fn literal_key(v: &ScalarValue, t: DataType) -> Option<Value> {
    if v.is_null() {
        return None;
    }
    let lt = v.data_type();
    let int_col = matches!(t, DataType::Int16 | DataType::Int32 | DataType::Int64);
    if (int_col && lt.is_integer()) || (t == DataType::Text && lt == ArrowType::Utf8) {
        // Out of the column's range: no row matches, which the normal path handles.
        return scalar_to_value(v, t).ok();
    }
    None
}

fn param_index(id: &str) -> Option<usize> {
    id.strip_prefix('$')?.parse::<usize>().ok()?.checked_sub(1)
}

/// The table column (position in `def.columns`) an expression is, if it is a bare column.
pub(crate) fn column_of(e: &Expr, input: &DFSchema, table: &WeftTable) -> Option<usize> {
    let e = match e {
        Expr::Alias(a) => a.expr.as_ref(),
        e => e,
    };
    let Expr::Column(c) = e else { return None };
    let i = input.index_of_column(c).ok()?;
    table.columns().get(i).copied()
}

/// Matches `pk1 = a AND pk2 = b …`: every key column exactly once, nothing else.
fn match_key(
    shape: &Shape<'_>,
    param_arrow: &[ArrowType],
    catalog: Arc<Catalog>,
) -> Option<Target> {
    let def = shape.table.def();
    let mut parts: Vec<Option<KeyPart>> = vec![None; def.primary_key.len()];
    for conjunct in split_conjunction(shape.predicate) {
        let Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) = conjunct
        else {
            return None;
        };
        let (col, other) = match (left.as_ref(), right.as_ref()) {
            (c @ Expr::Column(_), o) if !matches!(o, Expr::Column(_)) => (c, o),
            (o, c @ Expr::Column(_)) if !matches!(o, Expr::Column(_)) => (c, o),
            _ => return None,
        };
        let column = column_of(col, shape.input, shape.table)?;
        let pos = def.primary_key.iter().position(|&k| k == column)?;
        let t = def.columns[column].data_type;
        if parts[pos].is_some() || !key_type_ok(t) || def.columns[column].hidden {
            return None;
        }
        let part = match other {
            Expr::Placeholder(p) => {
                let n = param_index(&p.id)?;
                let declared = p.field.as_ref()?.data_type();
                let want = arrow_type(t);
                if declared != &want || param_arrow.get(n)? != &want {
                    return None;
                }
                KeyPart::Param(n)
            }
            Expr::Literal(v, _) => KeyPart::Value(literal_key(v, t)?),
            _ => return None,
        };
        parts[pos] = Some(part);
    }
    let key = parts.into_iter().collect::<Option<Vec<_>>>()?;
    Some(Target {
        def: Arc::clone(def),
        catalog,
        key,
        param_arrow: param_arrow.to_vec(),
    })
}

impl Target {
    pub fn new(
        shape: &Shape<'_>,
        param_arrow: &[ArrowType],
        catalog: Arc<Catalog>,
    ) -> Option<Target> {
        match_key(shape, param_arrow, catalog)
    }

    /// Whether the transaction's catalog still has the table exactly as prepared.
    pub fn valid_for(&self, catalog: &Arc<Catalog>) -> bool {
        Arc::ptr_eq(catalog, &self.catalog)
            || catalog.table_by_id(self.def.id) == Some(self.def.as_ref())
    }

    /// Casts bound values to the parameter types, as the normal path's binding does.
    pub fn cast_params(&self, params: &[ScalarValue]) -> Result<Vec<ScalarValue>> {
        params
            .iter()
            .zip(&self.param_arrow)
            .map(|(v, t)| cast_param(v.clone(), t))
            .collect()
    }

    /// The key, or None when a NULL parameter means no row can match.
    pub fn key(&self, params: &[ScalarValue]) -> Result<Option<Vec<Value>>> {
        let mut key = Vec::with_capacity(self.key.len());
        for (part, &col) in self.key.iter().zip(&self.def.primary_key) {
            match part {
                KeyPart::Value(v) => key.push(v.clone()),
                KeyPart::Param(n) => {
                    let Some(v) = params.get(*n) else {
                        return Ok(None);
                    };
                    if v.is_null() {
                        return Ok(None);
                    }
                    key.push(scalar_to_value(v, self.def.columns[col].data_type)?);
                }
            }
        }
        Ok(Some(key))
    }

    /// The row the key selects, as the transaction sees it.
    pub fn fetch(&self, txn: &Txn, params: &[ScalarValue]) -> Result<Option<Row>> {
        match self.key(params)? {
            Some(key) => Ok(txn.get(&self.def, &key)?),
            None => Ok(None),
        }
    }
}

/// The fast path of a prepared query, if it is a primary-key point SELECT.
pub(crate) fn for_query(plan: &QueryPlan, catalog: Arc<Catalog>) -> Option<PointPlan> {
    let shape = shape(&plan.plan)?;
    let target = Target::new(&shape, &plan.param_arrow, catalog)?;
    let columns = shape
        .projection
        .iter()
        .map(|e| column_of(e, shape.input, shape.table))
        .collect::<Option<Vec<_>>>()?;
    let def = &target.def;
    let types: Vec<DataType> = columns.iter().map(|&c| def.columns[c].data_type).collect();
    let schema: SchemaRef = Arc::new(shape.output.as_arrow().clone());
    if schema.fields().len() != columns.len()
        || schema
            .fields()
            .iter()
            .zip(&types)
            .any(|(f, t)| f.data_type() != &arrow_type(*t))
    {
        return None;
    }
    Some(PointPlan::Select(PointSelect {
        target,
        schema,
        columns,
        types,
        fields: Arc::clone(&plan.fields),
    }))
}

/// Runs the fast path; None when the catalog changed since Parse (the normal path re-plans).
pub(crate) async fn execute(
    ctx: &ExecCtx<'_>,
    txn: &mut Txn,
    point: &PointPlan,
    stmt: &crate::statement::Statement,
    params: &[ScalarValue],
) -> Result<Option<QueryOutput>> {
    let out = match point {
        PointPlan::Select(s) => {
            if !s.target.valid_for(&txn.catalog()) {
                return Ok(None);
            }
            select(txn, s, params)?
        }
        PointPlan::Write(w) => {
            if !w.target.valid_for(&txn.catalog()) {
                return Ok(None);
            }
            crate::dml::point::execute(ctx, txn, w, stmt, params).await?
        }
    };
    ctx.shared.point_hits.fetch_add(1, Ordering::Relaxed);
    Ok(Some(out))
}

fn select(txn: &Txn, s: &PointSelect, params: &[ScalarValue]) -> Result<QueryOutput> {
    let params = s.target.cast_params(params)?;
    let batches = match s.target.fetch(txn, &params)? {
        Some(row) => {
            let projected: Row = s
                .columns
                .iter()
                .map(|&c| row.get(c).cloned().unwrap_or(Value::Null))
                .collect();
            vec![rows_to_batch(
                Arc::clone(&s.schema),
                &s.types,
                &[projected],
            )?]
        }
        None => Vec::new(),
    };
    let batches = crate::numeric_display::batches(&s.schema, batches)?;
    let stream: RowStream = Box::pin(futures::stream::iter(batches.into_iter().map(Ok)));
    Ok(QueryOutput::Rows {
        fields: Arc::clone(&s.fields),
        stream,
        command: "SELECT",
    })
}
