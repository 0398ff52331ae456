//! `weft_changes('live query', since_pos)`: the changes to a live query after a position, read
//! from the durable change log, for a client that resumes after a disconnect or an overflow.
//!
//! ```text
//!   FROM weft_changes('q', $1) [AS a]
//!     --rewrite--> FROM (SELECT * FROM weft_changes('q') WHERE pos > ($1)) AS a
//!     --scan(filters: pos > 41)--> storage.read_changes(41..=snapshot) --LiveQuery::apply--> rows
//! ```
//!
//! The two-argument form is rewritten so that `since_pos` is an ordinary filter: it can be a bind
//! parameter of any integer type, and the scan sees its bound value as a pushed-down filter.

use std::any::Any;
use std::fmt;
use std::ops::ControlFlow;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int64Builder, StringBuilder};
use datafusion::arrow::datatypes::{DataType as ArrowType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session as DfSession, TableFunctionArgs, TableFunctionImpl};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::memory::{LazyBatchGenerator, LazyMemoryExec};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::sql::sqlparser::ast::{self, VisitMut, VisitorMut};
use parking_lot::RwLock;
use weft_storage::{CatalogEntry, DataType, Storage};

use super::live::{format_ts, LiveQuery};
use crate::error::{to_df, Error, Result};
use crate::pgtype::arrow_field;
use crate::shared::SessionShared;

pub(crate) const FUNCTION: &str = "weft_changes";

/// Change records read from the log per batch.
const READ_BATCH: usize = 1024;

/// Rewrites `FROM weft_changes(name, since)` into the one-argument form filtered on `pos`.
pub(crate) fn rewrite<V: VisitMut>(node: &mut V) {
    let _ = node.visit(&mut ChangesRewriter);
}

struct ChangesRewriter;

impl VisitorMut for ChangesRewriter {
    type Break = ();

    fn post_visit_table_factor(&mut self, factor: &mut ast::TableFactor) -> ControlFlow<()> {
        let ast::TableFactor::Table {
            name, args, alias, ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        let is_changes = name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .is_some_and(|i| i.value.eq_ignore_ascii_case(FUNCTION));
        let Some(a) = args.as_ref().filter(|a| is_changes && a.args.len() == 2) else {
            return ControlFlow::Continue(());
        };
        let sql = format!(
            "SELECT * FROM {FUNCTION}({}) WHERE pos > ({})",
            a.args[0], a.args[1]
        );
        let parsed = datafusion::sql::sqlparser::parser::Parser::parse_sql(
            &crate::dialect::WeftDialect::default(),
            &sql,
        );
        if let Ok(mut stmts) = parsed {
            if let Some(ast::Statement::Query(q)) = stmts.pop() {
                let alias = alias.take().unwrap_or_else(|| ast::TableAlias {
                    explicit: true,
                    name: ast::Ident::new(FUNCTION),
                    columns: Vec::new(),
                    at: None,
                });
                *factor = ast::TableFactor::Derived {
                    lateral: false,
                    subquery: q,
                    alias: Some(alias),
                    sample: None,
                };
            }
        }
        ControlFlow::Continue(())
    }
}

/// The `weft_changes` table function (one argument: the live query's name).
pub(crate) struct ChangesFunction {
    pub shared: Arc<SessionShared>,
}

impl fmt::Debug for ChangesFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(FUNCTION)
    }
}

impl TableFunctionImpl for ChangesFunction {
    fn call_with_args(
        &self,
        args: TableFunctionArgs,
    ) -> datafusion::common::Result<Arc<dyn TableProvider>> {
        let name = match args.exprs() {
            [Expr::Literal(ScalarValue::Utf8(Some(s)), _)]
            | [Expr::Literal(ScalarValue::Utf8View(Some(s)), _)]
            | [Expr::Literal(ScalarValue::LargeUtf8(Some(s)), _)] => s.clone(),
            _ => {
                return Err(to_df(Error::unsupported(
                    "weft_changes with arguments other than (text constant, bigint)",
                )))
            }
        };
        let state = args
            .session()
            .as_any()
            .downcast_ref::<SessionState>()
            .ok_or_else(|| DataFusionError::Internal("weft_changes outside a session".into()))?;
        let catalog = self.shared.catalog();
        let def = match catalog.get_by_name(&name) {
            Some(CatalogEntry::LiveQuery(d)) => d.clone(),
            Some(_) => {
                return Err(to_df(Error::WrongObjectType {
                    message: format!("\"{name}\" is not a live query"),
                }))
            }
            None => {
                return Err(to_df(Error::UndefinedTable {
                    message: format!("live query \"{name}\" does not exist"),
                }))
            }
        };
        let live = LiveQuery::compile(state, &catalog, &def).map_err(to_df)?;
        Ok(Arc::new(ChangesTable {
            live: Arc::new(live),
            shared: Arc::clone(&self.shared),
            schema: changes_schema(),
        }))
    }
}

fn changes_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("pos", ArrowType::Int64, false),
        Field::new("ts", ArrowType::Utf8, false),
        Field::new("op", ArrowType::Utf8, false),
        arrow_field("key", DataType::Jsonb, true),
        arrow_field("row", DataType::Jsonb, true),
        arrow_field("old", DataType::Jsonb, true),
    ]))
}

struct ChangesTable {
    live: Arc<LiveQuery>,
    shared: Arc<SessionShared>,
    schema: SchemaRef,
}

impl fmt::Debug for ChangesTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "weft_changes({})", self.live.name)
    }
}

/// The lower bound a filter puts on `pos`: `pos > n` gives n, `pos >= n` gives n - 1.
fn since_of(filter: &Expr) -> Option<i64> {
    let Expr::BinaryExpr(b) = filter else {
        return None;
    };
    let column = |e: &Expr| matches!(e, Expr::Column(c) if c.name == "pos");
    let value = |e: &Expr| match e {
        Expr::Literal(v, _) => v.cast_to(&ArrowType::Int64).ok().and_then(|v| match v {
            ScalarValue::Int64(Some(n)) => Some(n),
            _ => None,
        }),
        Expr::Cast(c) => match c.expr.as_ref() {
            Expr::Literal(v, _) => v.cast_to(&ArrowType::Int64).ok().and_then(|v| match v {
                ScalarValue::Int64(Some(n)) => Some(n),
                _ => None,
            }),
            _ => None,
        },
        _ => None,
    };
    match (b.op, column(&b.left), column(&b.right)) {
        (Operator::Gt, true, false) => value(&b.right),
        (Operator::GtEq, true, false) => value(&b.right).map(|n| n.saturating_sub(1)),
        (Operator::Lt, false, true) => value(&b.left),
        (Operator::LtEq, false, true) => value(&b.left).map(|n| n.saturating_sub(1)),
        _ => None,
    }
}

#[async_trait]
impl TableProvider for ChangesTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::common::Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        _state: &dyn DfSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
        let since = filters
            .iter()
            .filter_map(since_of)
            .max()
            .unwrap_or(0)
            .max(0);
        let storage = self.shared.storage.clone();
        let upto = match self.shared.read() {
            Some(v) => v.position,
            None => storage.last_position(),
        };
        let since = u64::try_from(since).unwrap_or(0);
        let oldest = storage.oldest_position().map_err(|e| to_df(e.into()))?;
        if since < upto && since + 1 < oldest {
            return Err(to_df(too_old(since, oldest)));
        }
        let fields: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let schema = Arc::new(self.schema.project(&fields)?);
        let generator = ChangesGenerator {
            storage,
            live: Arc::clone(&self.live),
            schema: Arc::clone(&schema),
            fields,
            since,
            start: since,
            upto,
        };
        let generator: Arc<RwLock<dyn LazyBatchGenerator>> = Arc::new(RwLock::new(generator));
        Ok(Arc::new(LazyMemoryExec::try_new(schema, vec![generator])?))
    }
}

fn too_old(since: u64, oldest: u64) -> Error {
    Error::ObjectNotInPrerequisiteState {
        message: format!(
            "changes after position {since} are no longer retained; the oldest retained position is {oldest}"
        ),
    }
}

struct ChangesGenerator {
    storage: Storage,
    live: Arc<LiveQuery>,
    schema: SchemaRef,
    fields: Vec<usize>,
    /// Where this scan started (for `reset_state`).
    start: u64,
    /// Last position read so far.
    since: u64,
    /// Last position the reading snapshot sees.
    upto: u64,
}

impl fmt::Debug for ChangesGenerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for ChangesGenerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WeftChanges: {} positions {}..={}",
            self.live.name,
            self.start + 1,
            self.upto
        )
    }
}

impl ChangesGenerator {
    fn next(&mut self) -> Result<Option<RecordBatch>> {
        while self.since < self.upto {
            let want = usize::try_from(self.upto - self.since)
                .unwrap_or(READ_BATCH)
                .min(READ_BATCH);
            let records = self.storage.read_changes(self.since, want)?;
            // Positions are dense: a hole means the retention purge got there first.
            if records.first().map(|r| r.position) != Some(self.since + 1) {
                let oldest = self.storage.oldest_position()?;
                return Err(too_old(self.since, oldest));
            }
            let mut columns = Columns::default();
            for r in records.iter().filter(|r| r.position <= self.upto) {
                self.since = r.position;
                if let Some(change) = self.live.apply(r)? {
                    columns.push(&change);
                }
            }
            if columns.len > 0 {
                return columns.finish(&self.schema, &self.fields).map(Some);
            }
        }
        Ok(None)
    }
}

#[derive(Default)]
struct Columns {
    len: usize,
    pos: Int64Builder,
    ts: StringBuilder,
    op: StringBuilder,
    key: StringBuilder,
    row: StringBuilder,
    old: StringBuilder,
}

impl Columns {
    fn push(&mut self, c: &super::live::LiveChange) {
        self.len += 1;
        self.pos
            .append_value(i64::try_from(c.position).unwrap_or(i64::MAX));
        self.ts.append_value(format_ts(c.ts));
        self.op.append_value(c.op.as_str());
        self.key.append_option(c.key.as_deref());
        self.row.append_option(c.row.as_deref());
        self.old.append_option(c.old.as_deref());
    }

    fn finish(mut self, schema: &SchemaRef, fields: &[usize]) -> Result<RecordBatch> {
        let all: [ArrayRef; 6] = [
            Arc::new(self.pos.finish()),
            Arc::new(self.ts.finish()),
            Arc::new(self.op.finish()),
            Arc::new(self.key.finish()),
            Arc::new(self.row.finish()),
            Arc::new(self.old.finish()),
        ];
        let columns: Vec<ArrayRef> = fields.iter().map(|&i| Arc::clone(&all[i])).collect();
        let options = datafusion::arrow::record_batch::RecordBatchOptions::new()
            .with_row_count(Some(self.len));
        Ok(RecordBatch::try_new_with_options(
            Arc::clone(schema),
            columns,
            &options,
        )?)
    }
}

impl LazyBatchGenerator for ChangesGenerator {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn generate_next_batch(&mut self) -> datafusion::common::Result<Option<RecordBatch>> {
        self.next().map_err(to_df)
    }

    fn reset_state(&self) -> Arc<RwLock<dyn LazyBatchGenerator>> {
        Arc::new(RwLock::new(ChangesGenerator {
            storage: self.storage.clone(),
            live: Arc::clone(&self.live),
            schema: Arc::clone(&self.schema),
            fields: self.fields.clone(),
            start: self.start,
            since: self.start,
            upto: self.upto,
        }))
    }
}
