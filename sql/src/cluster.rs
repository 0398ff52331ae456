//! What SQL sees of the cluster: the `weft_nodes` table, `weft_remove_node(n)` and the test hook
//! `weft_fault(action, arg)`. The binary implements `ClusterAdmin` over the Raft node; a
//! standalone node has none, and `weft_nodes` shows it alone.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, BooleanArray, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{MemTable, Session as DfSession, TableProvider};
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, Expr, Signature, TableType, Volatility};
use datafusion::physical_plan::ExecutionPlan;

use crate::error::Error;
use crate::shared::SessionShared;

/// Name of the membership table.
pub const NODES_TABLE: &str = "weft_nodes";

/// A member as `weft_nodes` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub node_id: u64,
    pub pg_addr: String,
    pub peer_addr: Option<String>,
    /// `leader`, `follower` or `learner`.
    pub role: String,
    pub voter: bool,
    pub last_applied: Option<u64>,
    /// `ok`, `unreachable`, or why the peer is refused.
    pub status: String,
}

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The cluster operations SQL can call.
pub trait ClusterAdmin: Send + Sync + 'static {
    fn nodes(&self) -> BoxFuture<Vec<NodeInfo>>;
    fn remove_node(&self, id: u64) -> BoxFuture<Result<(), String>>;
    /// Test hook; `Err` with a message when the node was not started with fault injection.
    fn fault(&self, action: &str, arg: &str) -> Result<String, String>;
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("node_id", DataType::Int64, false),
        Field::new("pg_addr", DataType::Utf8, true),
        Field::new("peer_addr", DataType::Utf8, true),
        Field::new("role", DataType::Utf8, false),
        Field::new("voter", DataType::Boolean, false),
        Field::new("last_applied", DataType::Int64, true),
        Field::new("status", DataType::Utf8, false),
    ]))
}

/// `weft_nodes`: asks the cluster when scanned (each scan is current).
pub(crate) struct NodesTable {
    pub shared: Arc<SessionShared>,
}

impl std::fmt::Debug for NodesTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodesTable")
    }
}

impl NodesTable {
    async fn rows(&self) -> Vec<NodeInfo> {
        match self.shared.cluster() {
            Some(c) => c.nodes().await,
            None => vec![NodeInfo {
                node_id: u64::from(self.shared.node_id),
                pg_addr: String::new(),
                peer_addr: None,
                role: "leader".into(),
                voter: true,
                last_applied: None,
                status: "ok".into(),
            }],
        }
    }
}

#[async_trait]
impl TableProvider for NodesTable {
    fn schema(&self) -> SchemaRef {
        schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn DfSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let rows = self.rows().await;
        let i64_of = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| i64_of(r.node_id)),
            )),
            Arc::new(StringArray::from_iter(
                rows.iter()
                    .map(|r| (!r.pg_addr.is_empty()).then_some(r.pg_addr.as_str())),
            )),
            Arc::new(StringArray::from_iter(
                rows.iter().map(|r| r.peer_addr.as_deref()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.role.as_str()),
            )),
            Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.voter)))),
            Arc::new(Int64Array::from_iter(
                rows.iter().map(|r| r.last_applied.map(i64_of)),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.status.as_str()),
            )),
        ];
        let batch = RecordBatch::try_new(schema(), columns)?;
        let mem = MemTable::try_new(schema(), vec![vec![batch]])?;
        mem.scan(state, projection, filters, limit).await
    }
}

/// Whether `stmt` reads no table but `weft_nodes` (e.g. `SELECT weft_fault(...)`,
/// `SELECT * FROM weft_nodes`): such a statement runs without the read barrier, so that a node
/// cut off from the leader can still be inspected and healed.
pub(crate) fn reads_only_membership(stmt: &crate::Statement) -> bool {
    use datafusion::sql::sqlparser::ast::{visit_relations, SetExpr, Statement as Ast};
    use std::ops::ControlFlow;
    if !matches!(&*stmt.ast, Ast::Query(q) if matches!(&*q.body, SetExpr::Select(_))) || stmt.live {
        return false;
    }
    let other = visit_relations(&*stmt.ast, |name| {
        let last = name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(|i| i.value.as_str());
        if name.0.len() == 1 && last == Some(NODES_TABLE) {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    });
    other.is_continue()
}

/// Whether every table `stmt` names is an lww table (or `weft_nodes`), and it names one: its
/// reads are local by design, so it needs no read barrier, and it works on a node cut off from
/// the others.
pub(crate) fn only_lww_tables(stmt: &crate::Statement, catalog: &weft_storage::Catalog) -> bool {
    use datafusion::sql::sqlparser::ast::visit_relations;
    use datafusion::sql::sqlparser::ast::Statement as Ast;
    use std::ops::ControlFlow;
    // DML and queries only: DDL naming an lww table changes the Raft-replicated catalog.
    let dml = matches!(
        &*stmt.ast,
        Ast::Query(_) | Ast::Insert(_) | Ast::Update(_) | Ast::Delete(_)
    );
    if !dml
        || stmt.live
        || !catalog
            .tables()
            .any(|t| t.consistency == weft_storage::Consistency::Lww)
    {
        return false;
    }
    let mut any = false;
    let other = visit_relations(&*stmt.ast, |name| {
        let Some(ident) = name.0.last().and_then(|p| p.as_ident()) else {
            return ControlFlow::Break(());
        };
        let folded = match ident.quote_style {
            Some(_) => ident.value.clone(),
            None => ident.value.to_lowercase(),
        };
        if name.0.len() == 1 && folded == NODES_TABLE {
            return ControlFlow::Continue(());
        }
        match catalog.table(&folded) {
            Some(t) if t.consistency == weft_storage::Consistency::Lww => {
                any = true;
                ControlFlow::Continue(())
            }
            _ => ControlFlow::Break(()),
        }
    });
    any && other.is_continue()
}

/// Whether `stmt` is an `INSERT … VALUES` without subqueries: it reads nothing but the keys it
/// writes (its unique checks), and a stale read of those fails the commit (the state machine
/// finds the keys changed since the snapshot), so it needs no read barrier to be linearizable.
pub(crate) fn is_blind_insert(stmt: &crate::Statement) -> bool {
    use datafusion::sql::sqlparser::ast::{visit_expressions, Expr, SetExpr, Statement as Ast};
    use std::ops::ControlFlow;
    let Ast::Insert(insert) = &*stmt.ast else {
        return false;
    };
    let Some(source) = &insert.source else {
        return false;
    };
    if !matches!(&*source.body, SetExpr::Values(_)) || source.with.is_some() {
        return false;
    }
    let subquery = visit_expressions(&*stmt.ast, |e| match e {
        Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    });
    subquery.is_continue()
}

fn scalar_arg(args: &[ColumnarValue], i: usize) -> Option<ScalarValue> {
    match args.get(i)? {
        ColumnarValue::Scalar(s) => Some(s.clone()),
        ColumnarValue::Array(a) if a.len() == 1 => ScalarValue::try_from_array(a, 0).ok(),
        ColumnarValue::Array(_) => None,
    }
}

fn not_clustered() -> Error {
    Error::ObjectNotInPrerequisiteState {
        message: "this node is not part of a cluster (start it with --peer-listen)".into(),
    }
}

/// `weft_remove_node(bigint)`, `weft_fault(text, text)` and `weft_table_checksum(text)` (an
/// order-independent digest of a table's rows; for an lww table with their cell versions).
pub(crate) fn udfs(shared: &Arc<SessionShared>) -> Vec<Arc<datafusion::logical_expr::ScalarUDF>> {
    let remove_shared = Arc::clone(shared);
    let fault_shared = Arc::clone(shared);
    let checksum_shared = Arc::clone(shared);
    vec![
        crate::functions::udf_any(
            "weft_table_checksum",
            Signature::exact(vec![DataType::Utf8], Volatility::Volatile),
            DataType::Utf8,
            Arc::new(move |args| {
                let name = match scalar_arg(&args.args, 0) {
                    Some(ScalarValue::Utf8(Some(s))) => s,
                    _ => {
                        return Err(crate::error::to_df(Error::InvalidParameterValue {
                            message: "weft_table_checksum takes one table name".into(),
                        }))
                    }
                };
                let catalog = checksum_shared.catalog();
                let table = catalog.table(&name).ok_or_else(|| {
                    crate::error::to_df(Error::UndefinedTable {
                        message: format!("relation \"{name}\" does not exist"),
                    })
                })?;
                let sum = checksum_shared
                    .storage
                    .table_checksum(table.id)
                    .map_err(|e| crate::error::to_df(e.into()))?;
                Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(format!(
                    "{sum:016x}"
                )))))
            }),
        ),
        crate::functions::udf_any(
            "weft_remove_node",
            Signature::exact(vec![DataType::Int64], Volatility::Volatile),
            DataType::Boolean,
            Arc::new(move |args| {
                let id = match scalar_arg(&args.args, 0) {
                    Some(ScalarValue::Int64(Some(v))) if v > 0 => v as u64,
                    _ => {
                        return Err(crate::error::to_df(Error::InvalidParameterValue {
                            message: "weft_remove_node takes one positive node id".into(),
                        }))
                    }
                };
                let cluster = remove_shared
                    .cluster()
                    .ok_or_else(|| crate::error::to_df(not_clustered()))?;
                crate::functions::block_on(cluster.remove_node(id))
                    .map_err(crate::error::to_df)?
                    .map_err(|m| {
                        crate::error::to_df(Error::ObjectNotInPrerequisiteState { message: m })
                    })?;
                Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))))
            }),
        ),
        crate::functions::udf_any(
            "weft_fault",
            Signature::exact(vec![DataType::Utf8, DataType::Utf8], Volatility::Volatile),
            DataType::Utf8,
            Arc::new(move |args| {
                let text = |i| match scalar_arg(&args.args, i) {
                    Some(ScalarValue::Utf8(Some(s))) => Ok(s),
                    _ => Err(DataFusionError::Plan(
                        "weft_fault takes two text arguments".into(),
                    )),
                };
                let (action, arg) = (text(0)?, text(1)?);
                let cluster = fault_shared
                    .cluster()
                    .ok_or_else(|| crate::error::to_df(not_clustered()))?;
                let out = cluster.fault(&action, &arg).map_err(|m| {
                    crate::error::to_df(Error::ObjectNotInPrerequisiteState { message: m })
                })?;
                Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(out))))
            }),
        ),
    ]
}
