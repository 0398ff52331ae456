//! A live query compiled for matching change records: its table, predicate and projection, and
//! the JSON payload PostgreSQL's `to_jsonb` would give for the rows.
//!
//! ```text
//!   ChangeRecord(old, new) --predicate(old), predicate(new)--> insert | update | delete | nothing
//!                          --projection--> {"op", "pos", "ts", "key", "row", "old"}
//! ```

use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::execution::session_state::SessionState;
use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::parser::Parser;
use weft_storage::{
    format_value, hlc_unix_millis, Catalog, ChangeOp, ChangeRecord, DataType, LiveQueryDef, Row,
    TableDef, TableId, Value,
};

use crate::convert::rows_to_batch;
use crate::ddl::{ident, object_name};
use crate::error::{Error, Result};
use crate::eval::{compile, Compiled};
use crate::table::table_schema;

/// What a change did to a live query's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveOp {
    Insert,
    Update,
    Delete,
    /// The result may have changed in a way not described row by row (TRUNCATE, a snapshot
    /// install): re-read the live query.
    Reset,
}

impl LiveOp {
    pub fn as_str(self) -> &'static str {
        match self {
            LiveOp::Insert => "insert",
            LiveOp::Update => "update",
            LiveOp::Delete => "delete",
            LiveOp::Reset => "reset",
        }
    }
}

/// One change to a live query's result, its parts already JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveChange {
    pub op: LiveOp,
    pub position: u64,
    /// HLC commit timestamp.
    pub ts: u64,
    pub key: Option<String>,
    pub row: Option<String>,
    pub old: Option<String>,
}

impl LiveChange {
    /// The notification payload: `{"op", "pos", "ts", "key", "row", "old"}`.
    pub fn payload(&self) -> String {
        let mut out = String::with_capacity(
            64 + self.key.as_ref().map_or(0, String::len)
                + self.row.as_ref().map_or(0, String::len)
                + self.old.as_ref().map_or(0, String::len),
        );
        out.push_str("{\"op\": \"");
        out.push_str(self.op.as_str());
        out.push_str("\", \"pos\": ");
        out.push_str(&self.position.to_string());
        out.push_str(", \"ts\": \"");
        out.push_str(&format_ts(self.ts));
        out.push('"');
        for (name, part) in [("key", &self.key), ("row", &self.row), ("old", &self.old)] {
            if let Some(json) = part {
                out.push_str(", \"");
                out.push_str(name);
                out.push_str("\": ");
                out.push_str(json);
            }
        }
        out.push('}');
        out
    }
}

/// A commit timestamp as PostgreSQL prints a timestamptz in UTC, to the millisecond.
pub fn format_ts(ts: u64) -> String {
    match hlc_unix_millis(ts).and_then(chrono::DateTime::from_timestamp_millis) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S%.3f+00").to_string(),
        None => String::new(),
    }
}

enum Output {
    /// A column of the table, by position.
    Column(usize),
    Expr(Compiled),
}

/// A live query ready to match change records of its table.
pub struct LiveQuery {
    pub name: String,
    pub id: TableId,
    pub table_id: TableId,
    def: Arc<TableDef>,
    schema: datafusion::arrow::datatypes::SchemaRef,
    types: Vec<DataType>,
    predicate: Option<Compiled>,
    outputs: Vec<(String, Output)>,
    key: Vec<usize>,
}

impl std::fmt::Debug for LiveQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveQuery")
            .field("name", &self.name)
            .field("table", &self.def.name)
            .finish()
    }
}

/// The parts of a live query's SELECT: its table and the select itself.
pub(crate) struct Shape<'a> {
    pub table: String,
    pub qualifier: String,
    pub select: &'a ast::Select,
}

/// Checks that `query` is `SELECT cols FROM table [WHERE predicate]`, and nothing else.
pub(crate) fn shape(query: &ast::Query) -> Result<Shape<'_>> {
    let unsupported = |what: &str| {
        Err(Error::unsupported(format!(
            "{what} in a live query (a live query is SELECT columns FROM one table [WHERE predicate])"
        )))
    };
    if query.with.is_some() {
        return unsupported("WITH");
    }
    if query.order_by.is_some() {
        return unsupported("ORDER BY");
    }
    if query.limit_clause.is_some() || query.fetch.is_some() {
        return unsupported("LIMIT");
    }
    let ast::SetExpr::Select(select) = query.body.as_ref() else {
        return unsupported("a set operation or VALUES");
    };
    if select.distinct.is_some() {
        return unsupported("DISTINCT");
    }
    let group_by_empty = match &select.group_by {
        ast::GroupByExpr::Expressions(e, m) => e.is_empty() && m.is_empty(),
        ast::GroupByExpr::All(_) => false,
    };
    if !group_by_empty || select.having.is_some() {
        return unsupported("GROUP BY");
    }
    if !select.named_window.is_empty() {
        return unsupported("WINDOW");
    }
    let [from] = &select.from[..] else {
        return unsupported(if select.from.is_empty() {
            "a SELECT without FROM"
        } else {
            "a join"
        });
    };
    if !from.joins.is_empty() {
        return unsupported("a join");
    }
    let ast::TableFactor::Table {
        name, alias, args, ..
    } = &from.relation
    else {
        return unsupported("a subquery or table function in FROM");
    };
    if args.is_some() {
        return unsupported("a table function");
    }
    let table = object_name(name)?;
    let qualifier = alias
        .as_ref()
        .map(|a| ident(&a.name))
        .unwrap_or_else(|| table.clone());
    for item in &select.projection {
        let expr = match item {
            ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => e,
            _ => continue,
        };
        if has_aggregate_or_subquery(expr) {
            return unsupported("an aggregate, window function or subquery");
        }
    }
    if let Some(w) = &select.selection {
        if has_aggregate_or_subquery(w) {
            return unsupported("an aggregate, window function or subquery");
        }
    }
    Ok(Shape {
        table,
        qualifier,
        select,
    })
}

fn has_aggregate_or_subquery(e: &ast::Expr) -> bool {
    use std::ops::ControlFlow;
    let mut found = false;
    let _ = ast::visit_expressions(e, |e: &ast::Expr| {
        let hit = match e {
            ast::Expr::Subquery(_) | ast::Expr::Exists { .. } | ast::Expr::InSubquery { .. } => {
                true
            }
            ast::Expr::Function(f) => {
                f.over.is_some() || {
                    let name = f.name.to_string().to_ascii_lowercase();
                    AGGREGATES.contains(&name.as_str())
                }
            }
            _ => false,
        };
        if hit {
            found = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    found
}

const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "bool_and",
    "bool_or",
    "every",
    "string_agg",
    "array_agg",
    "json_agg",
    "jsonb_agg",
    "stddev",
    "stddev_samp",
    "stddev_pop",
    "variance",
    // `every` and `variance` after `rewrite` renames them.
    "weft_every",
    "weft_variance",
    "var_samp",
    "var_pop",
];

/// Parses a live query's stored SQL text.
pub(crate) fn parse_query(sql: &str) -> Result<ast::Query> {
    let mut stmts = Parser::parse_sql(&crate::dialect::WeftDialect::default(), sql)?;
    match (stmts.pop(), stmts.is_empty()) {
        (Some(ast::Statement::Query(mut q)), true) => {
            crate::rewrite::rewrite(&mut *q);
            Ok(*q)
        }
        _ => Err(Error::syntax("a live query must be one SELECT")),
    }
}

impl LiveQuery {
    /// Compiles `def` against `catalog` with the expression planner of `state`.
    pub fn compile(state: &SessionState, catalog: &Catalog, def: &LiveQueryDef) -> Result<Self> {
        let query = parse_query(&def.query)?;
        let shape = shape(&query)?;
        let table = catalog
            .table_by_id(def.table)
            .ok_or_else(|| Error::UndefinedTable {
                message: format!("the table of live query \"{}\" no longer exists", def.name),
            })?;
        let mut q = Self::compile_shape(state, table, &shape)?;
        q.name = def.name.clone();
        q.id = def.id;
        Ok(q)
    }

    pub(crate) fn compile_shape(
        state: &SessionState,
        table: &TableDef,
        shape: &Shape<'_>,
    ) -> Result<Self> {
        let all: Vec<usize> = (0..table.columns.len()).collect();
        let schema = table_schema(table, &all);
        let df_schema = DFSchema::try_from_qualified_schema(shape.qualifier.as_str(), &schema)?;
        let predicate = shape
            .select
            .selection
            .as_ref()
            .map(|w| compile(state, w, &df_schema))
            .transpose()?;
        if let Some(p) = &predicate {
            let t = p.data_type(&schema)?;
            if t != datafusion::arrow::datatypes::DataType::Boolean {
                return Err(Error::DatatypeMismatch {
                    message: "argument of WHERE must be type boolean".into(),
                });
            }
        }
        let mut outputs = Vec::new();
        for item in &shape.select.projection {
            match item {
                ast::SelectItem::Wildcard(_) | ast::SelectItem::QualifiedWildcard(..) => {
                    for (i, c) in table.visible_columns() {
                        outputs.push((c.name.clone(), Output::Column(i)));
                    }
                }
                ast::SelectItem::UnnamedExpr(e) => {
                    let name =
                        crate::naming::figure_name(e).unwrap_or_else(|| "?column?".to_string());
                    outputs.push((name, output(state, table, &df_schema, e)?));
                }
                ast::SelectItem::ExprWithAlias { expr, alias } => {
                    outputs.push((ident(alias), output(state, table, &df_schema, expr)?));
                }
                other => {
                    return Err(Error::unsupported(format!(
                        "select item {other} in a live query"
                    )))
                }
            }
        }
        let key = if table.primary_key.is_empty() {
            table
                .columns
                .iter()
                .position(|c| c.hidden)
                .into_iter()
                .collect()
        } else {
            table.primary_key.clone()
        };
        Ok(LiveQuery {
            name: String::new(),
            id: 0,
            table_id: table.id,
            types: table.columns.iter().map(|c| c.data_type).collect(),
            def: Arc::new(table.clone()),
            schema,
            predicate,
            outputs,
            key,
        })
    }

    /// What `change` does to this live query's result, if anything.
    pub fn apply(&self, change: &ChangeRecord) -> Result<Option<LiveChange>> {
        if change.table_id != self.table_id {
            return Ok(None);
        }
        let reset = |position| LiveChange {
            op: LiveOp::Reset,
            position,
            ts: change.ts,
            key: None,
            row: None,
            old: None,
        };
        if change.op == ChangeOp::Truncate {
            return Ok(Some(reset(change.position)));
        }
        let width = self.def.columns.len();
        let rows: Vec<&Row> = [&change.old, &change.new].into_iter().flatten().collect();
        let fits = |r: &Row| {
            r.len() == width
                && r.iter()
                    .zip(&self.types)
                    .all(|(v, t)| weft_storage::value_fits(*t, v))
        };
        if !rows.iter().all(|r| fits(r)) {
            // The table changed shape (a column added or dropped, or its type changed) after
            // this record was made; say so rather than guess.
            return Ok(Some(reset(change.position)));
        }
        let owned: Vec<Row> = rows.iter().map(|r| (*r).clone()).collect();
        let batch = rows_to_batch(self.schema.clone(), &self.types, &owned)?;
        let matches: Vec<bool> = match &self.predicate {
            None => vec![true; owned.len()],
            Some(p) => {
                let result = p.evaluate(&batch)?;
                let b = result
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .ok_or_else(|| Error::internal("live query predicate is not boolean"))?;
                (0..b.len()).map(|i| b.is_valid(i) && b.value(i)).collect()
            }
        };
        let (old_idx, new_idx) = match (&change.old, &change.new) {
            (Some(_), Some(_)) => (Some(0), Some(1)),
            (Some(_), None) => (Some(0), None),
            (None, Some(_)) => (None, Some(0)),
            (None, None) => return Ok(None),
        };
        let old_match = old_idx.filter(|&i| matches[i]);
        let new_match = new_idx.filter(|&i| matches[i]);
        let op = match (old_match, new_match) {
            (None, None) => return Ok(None),
            (None, Some(_)) => LiveOp::Insert,
            (Some(_), None) => LiveOp::Delete,
            (Some(_), Some(_)) => LiveOp::Update,
        };
        let key_row = new_idx.or(old_idx).map_or(0, |i| i);
        let outputs = self.evaluate_outputs(&batch)?;
        Ok(Some(LiveChange {
            op,
            position: change.position,
            ts: change.ts,
            key: Some(self.key_json(&owned[key_row])),
            row: new_match.map(|i| self.row_json(&owned[i], &outputs, i)),
            old: old_match.map(|i| self.row_json(&owned[i], &outputs, i)),
        }))
    }

    fn evaluate_outputs(
        &self,
        batch: &datafusion::arrow::record_batch::RecordBatch,
    ) -> Result<Vec<Option<datafusion::arrow::array::ArrayRef>>> {
        self.outputs
            .iter()
            .map(|(_, o)| match o {
                Output::Column(_) => Ok(None),
                Output::Expr(e) => e.evaluate(batch).map(Some),
            })
            .collect()
    }

    fn key_json(&self, row: &Row) -> String {
        let mut out = String::from("{");
        for (n, &i) in self.key.iter().enumerate() {
            if n > 0 {
                out.push_str(", ");
            }
            let c = &self.def.columns[i];
            push_json_string(&mut out, &c.name);
            out.push_str(": ");
            out.push_str(&value_json(c.data_type, &row[i]));
        }
        out.push('}');
        out
    }

    fn row_json(
        &self,
        row: &Row,
        computed: &[Option<datafusion::arrow::array::ArrayRef>],
        index: usize,
    ) -> String {
        let mut out = String::from("{");
        for (n, ((name, o), array)) in self.outputs.iter().zip(computed).enumerate() {
            if n > 0 {
                out.push_str(", ");
            }
            push_json_string(&mut out, name);
            out.push_str(": ");
            match (o, array) {
                (Output::Column(i), _) => {
                    out.push_str(&value_json(self.def.columns[*i].data_type, &row[*i]))
                }
                (Output::Expr(_), Some(a)) => out.push_str(&array_json(a, index)),
                (Output::Expr(_), None) => out.push_str("null"),
            }
        }
        out.push('}');
        out
    }
}

fn output(
    state: &SessionState,
    table: &TableDef,
    schema: &DFSchema,
    e: &ast::Expr,
) -> Result<Output> {
    let column = match e {
        ast::Expr::Identifier(i) => Some(ident(i)),
        ast::Expr::CompoundIdentifier(parts) if parts.len() == 2 => parts.last().map(ident),
        _ => None,
    };
    if let Some(i) = column.and_then(|c| table.column_index(&c)) {
        return Ok(Output::Column(i));
    }
    compile(state, e, schema).map(Output::Expr)
}

/// Appends `s` as a JSON string.
fn push_json_string(out: &mut String, s: &str) {
    match serde_json::to_string(s) {
        Ok(q) => out.push_str(&q),
        Err(_) => out.push_str("null"),
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::new();
    push_json_string(&mut out, s);
    out
}

/// A stored value as `to_jsonb` renders it.
pub fn value_json(ty: DataType, v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int16(i) => i.to_string(),
        Value::Int32(i) => i.to_string(),
        Value::Int64(i) => i.to_string(),
        Value::Float32(f) => float_json(f64::from(*f)),
        Value::Float64(f) => float_json(*f),
        // Unconstrained numeric at the value's own scale, as the query output shows it.
        Value::Numeric(n) if crate::pgtype::is_unconstrained_numeric(ty) => {
            if let DataType::Numeric { scale, .. } = ty {
                let (n, scale) = crate::numeric_display::own_scale(*n, scale);
                crate::convert::format_decimal(n, scale)
            } else {
                format_value(Some(ty), v)
            }
        }
        Value::Numeric(_) => format_value(Some(ty), v),
        Value::Text(s) if ty == DataType::Jsonb => {
            // Stored normalized; re-check so a payload is always valid JSON.
            match serde_json::from_str::<serde_json::Value>(s) {
                Ok(_) => s.clone(),
                Err(_) => json_string(s),
            }
        }
        Value::Text(s) => json_string(s),
        Value::Timestamp(_) => json_string(&format_value(Some(ty), v).replacen(' ', "T", 1)),
        Value::TimestampTz(_) => {
            let text = format_value(Some(ty), v);
            let text = text.strip_suffix("+00").unwrap_or(&text);
            json_string(&format!("{}+00:00", text.replacen(' ', "T", 1)))
        }
        Value::Bytes(_) | Value::Date(_) | Value::Uuid(_) => {
            json_string(&format_value(Some(ty), v))
        }
        Value::Array(items) => {
            let elem = match ty {
                DataType::Array(elem) => elem.scalar(),
                other => other,
            };
            let items: Vec<String> = items.iter().map(|x| value_json(elem, x)).collect();
            format!("[{}]", items.join(", "))
        }
    }
}

fn float_json(f: f64) -> String {
    if f.is_nan() {
        "\"NaN\"".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            "\"Infinity\""
        } else {
            "\"-Infinity\""
        }
        .into()
    } else {
        f.to_string()
    }
}

/// One value of a computed column as JSON.
fn array_json(a: &datafusion::arrow::array::ArrayRef, i: usize) -> String {
    let Ok(v) = ScalarValue::try_from_array(a, i) else {
        return "null".into();
    };
    if v.is_null() {
        return "null".into();
    }
    match v {
        ScalarValue::Boolean(Some(b)) => b.to_string(),
        ScalarValue::Int8(Some(n)) => n.to_string(),
        ScalarValue::Int16(Some(n)) => n.to_string(),
        ScalarValue::Int32(Some(n)) => n.to_string(),
        ScalarValue::Int64(Some(n)) => n.to_string(),
        ScalarValue::UInt8(Some(n)) => n.to_string(),
        ScalarValue::UInt16(Some(n)) => n.to_string(),
        ScalarValue::UInt32(Some(n)) => n.to_string(),
        ScalarValue::UInt64(Some(n)) => n.to_string(),
        ScalarValue::Float32(Some(f)) => float_json(f64::from(f)),
        ScalarValue::Float64(Some(f)) => float_json(f),
        ScalarValue::Decimal128(..) => v.to_string(),
        other => json_string(&other.to_string()),
    }
}
