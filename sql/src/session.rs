//! A client session: settings, the open transaction, prepared statements' plans, and the dispatch
//! of each statement to transaction control, settings, DDL, DML or a query.

use std::collections::{BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::session_state::SessionState;
use datafusion::sql::sqlparser::ast;
use futures::Stream;
use tokio::sync::Notify;
use weft_storage::{Savepoint, Txn};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::pgtype::PgType;
use crate::push::{self, ListenChange, ListenTarget};
use crate::settings::Settings;
use crate::shared::{ReadView, SessionShared};
use crate::statement::{parse, Statement};
use crate::{ddl, dml, point, query, txn_control};

pub type RowStream = Pin<Box<dyn Stream<Item = Result<RecordBatch>> + Send>>;

/// A result column as RowDescription describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldInfo {
    pub name: String,
    pub pg_type: PgType,
    pub table_oid: u32,
    pub column_id: i16,
    pub type_modifier: i32,
}

/// What executing a statement produced.
pub enum QueryOutput {
    /// Rows; the front end counts them and builds the tag `"{command} n"` (`INSERT 0 n` for INSERT).
    Rows {
        fields: Arc<Vec<FieldInfo>>,
        stream: RowStream,
        command: &'static str,
    },
    Command {
        tag: String,
    },
    Empty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxStatus {
    Idle,
    InBlock,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub severity: String,
    pub sqlstate: String,
    pub message: String,
}

/// Cancels the statement running in a session (CancelRequest, statement_timeout).
#[derive(Clone, Default)]
pub struct CancelHandle {
    inner: Arc<CancelInner>,
}

#[derive(Default)]
struct CancelInner {
    cancelled: AtomicBool,
    timed_out: AtomicBool,
    notify: Notify,
}

impl CancelHandle {
    pub fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
    }

    fn time_out(&self) {
        self.inner.timed_out.store(true, Ordering::SeqCst);
        self.cancel();
    }

    fn reset(&self) {
        self.inner.cancelled.store(false, Ordering::SeqCst);
        self.inner.timed_out.store(false, Ordering::SeqCst);
    }

    pub(crate) fn check(&self) -> Result<()> {
        if self.inner.cancelled.load(Ordering::SeqCst) {
            if self.inner.timed_out.load(Ordering::SeqCst) {
                return Err(Error::StatementTimeout);
            }
            return Err(Error::QueryCanceled);
        }
        Ok(())
    }

    pub(crate) async fn cancelled(&self) -> Error {
        loop {
            let notified = self.inner.notify.notified();
            if let Err(e) = self.check() {
                return e;
            }
            notified.await;
        }
    }
}

/// A statement parsed and, where possible, planned: the unit of the extended protocol.
pub struct Prepared {
    pub param_types: Vec<PgType>,
    /// None when the statement returns no rows (NoData).
    pub fields: Option<Arc<Vec<FieldInfo>>>,
    /// None for an empty query.
    pub(crate) stmt: Option<Statement>,
    pub(crate) plan: Option<query::QueryPlan>,
    /// The primary-key point fast path, when the statement fits it.
    pub(crate) point: Option<point::PointPlan>,
    /// A COPY: the front end runs COPY's sub-protocol around the execution.
    pub copy: Option<crate::copy::CopySpec>,
}

/// An explicit transaction block.
pub(crate) struct Block {
    pub txn: Txn,
    pub failed: bool,
    pub savepoints: Vec<(String, Savepoint)>,
    pub read_only: bool,
    pub barrier: BlockBarrier,
    /// No statement has read or written data in the block yet: its snapshot is as good as one
    /// taken now, so its first statement may be run again on a new one (`execute_in_txn`).
    pub untouched: bool,
    /// When BEGIN ran: `now()` and `transaction_timestamp()` in the block.
    pub started: chrono::DateTime<chrono::Utc>,
    /// READ COMMITTED: each statement reads a new snapshot, and one that fails with 40001 runs
    /// again on a newer one (`execute_in_txn`).
    pub read_committed: bool,
}

/// How many times a statement that failed with 40001 before the client saw anything of it is
/// run again on a new snapshot (`Session::execute_in_txn`).
const STATEMENT_RETRIES: u32 = 64;

/// Where a transaction block stands with the cluster's read barrier. Like PostgreSQL, which
/// takes a transaction's snapshot at its first statement, the barrier waits for the first
/// statement that reads raft tables, so that a block touching only lww tables works on a node
/// cut off from the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockBarrier {
    /// Passed (or not needed: a single node).
    Done,
    /// No statement has run yet: the first one that needs it runs it and takes a new snapshot.
    /// A READ COMMITTED block stays here: each of its statements that needs it runs it.
    Pending,
    /// Statements ran on the local snapshot (lww tables only).
    Local,
}

pub struct Session {
    pub(crate) engine: Arc<Engine>,
    pub(crate) shared: Arc<SessionShared>,
    pub(crate) state: SessionState,
    pub(crate) settings: Settings,
    pub(crate) block: Option<Block>,
    pub(crate) notices: Vec<Notice>,
    pub(crate) cancel: CancelHandle,
    /// LISTEN/UNLISTEN of the open transaction block, applied when it commits.
    pub(crate) listen_pending: Vec<ListenChange>,
    /// The channels this session listens on (its committed LISTEN/UNLISTEN).
    listening: BTreeSet<String>,
    /// Where LISTEN/UNLISTEN take effect (`set_listen_target`); without one, nothing is
    /// delivered.
    listen_target: Option<Arc<dyn ListenTarget>>,
    /// The backend pid the front end gave this session (the sender pid of its notifications).
    pub(crate) pid: u32,
    /// Open SQL cursors (DECLARE … CURSOR).
    pub(crate) cursors: crate::cursor::Cursors,
    /// Statements prepared with SQL's PREPARE.
    named: crate::named::Named,
    /// The statement_timeout timer of the last statement whose rows are still being read.
    timer: Option<tokio::task::AbortHandle>,
}

impl Session {
    pub(crate) fn new(engine: Arc<Engine>, params: &HashMap<String, String>) -> Session {
        let user = params
            .get("user")
            .cloned()
            .unwrap_or_else(|| "postgres".into());
        let database = params
            .get("database")
            .cloned()
            .unwrap_or_else(|| user.clone());
        let cancel = CancelHandle::default();
        let shared = SessionShared::new(
            engine.storage().clone(),
            engine.config().node_id,
            engine.cluster(),
            Arc::clone(engine.advisory()),
            cancel.clone(),
        );
        let state = query::new_state(&shared, &database);
        shared.set_state(Some(state.clone()));
        let mut settings = Settings::new(&user);
        for (k, v) in params {
            if matches!(k.as_str(), "user" | "database" | "options" | "replication") {
                continue;
            }
            // Unknown startup parameters are ignored here; PostgreSQL would refuse the connection.
            let _ = settings.set(k, v);
        }
        // `options` (PGOPTIONS) last: PostgreSQL applies its settings over the packet's others.
        if let Some(options) = params.get("options") {
            for (k, v) in crate::settings::startup_options(options) {
                let _ = settings.set(&k, &v);
            }
        }
        settings.take_changed();
        if let Some(ctx) = crate::pg_catalog::PgContext::of(&state) {
            ctx.set_user(&user);
            ctx.set_settings(settings.all());
        }
        Session {
            engine,
            shared,
            state,
            settings,
            block: None,
            notices: Vec::new(),
            cancel,
            listen_pending: Vec::new(),
            listening: BTreeSet::new(),
            listen_target: None,
            pid: 0,
            cursors: crate::cursor::Cursors::default(),
            named: crate::named::Named::default(),
            timer: None,
        }
    }

    /// The row description of an open cursor (a portal of the same name, for Describe).
    pub fn cursor_fields(&self, name: &str) -> Option<Arc<Vec<FieldInfo>>> {
        self.cursors.fields(name)
    }

    /// In a cluster, waits until this node has applied every commit acknowledged before now,
    /// unless the session chose `weft.read_consistency = 'local'`.
    pub(crate) async fn read_barrier(&self) -> Result<()> {
        if self.settings.get("weft.read_consistency") == Some("local") {
            return Ok(());
        }
        Ok(self.engine.storage().read_barrier().await?)
    }

    /// Whether `stmt` must see every commit acknowledged before it (see `read_barrier`): not if
    /// it reads only `weft_nodes`, only lww tables (local by design), or is a blind insert.
    fn needs_barrier(&self, stmt: &Statement) -> bool {
        !crate::cluster::reads_only_membership(stmt)
            && !crate::cluster::is_blind_insert(stmt)
            && !crate::cluster::only_lww_tables(stmt, &self.engine.storage().catalog())
    }

    /// The read barrier of a transaction block, at its first statement that needs it.
    async fn block_barrier(&mut self, stmt: &Statement) -> Result<()> {
        let needed = self.needs_barrier(stmt);
        let Some(block) = &mut self.block else {
            return Ok(());
        };
        match (block.barrier, needed) {
            (BlockBarrier::Done, _) => {}
            (BlockBarrier::Pending, false) => block.barrier = BlockBarrier::Local,
            (BlockBarrier::Local, false) => {}
            (BlockBarrier::Pending, true) => {
                self.read_barrier().await?;
                let Some(block) = &mut self.block else {
                    return Ok(());
                };
                // Nothing ran on the old snapshot: take one that sees the barrier.
                block.txn = self.engine.storage().begin();
                block.barrier = BlockBarrier::Done;
                let view = view_of(&block.txn);
                self.shared.set_read(Some(view));
            }
            (BlockBarrier::Local, true) => {
                let read_version = block.txn.read_version();
                self.read_barrier().await?;
                if self.engine.storage().begin().read_version() != read_version {
                    return Err(Error::SerializationFailure {
                        detail: Some(
                            "the transaction's snapshot, taken by a statement on lww tables, \
                             predates raft commits this statement must see"
                                .into(),
                        ),
                    });
                }
                if let Some(block) = &mut self.block {
                    block.barrier = BlockBarrier::Done;
                }
            }
        }
        Ok(())
    }

    /// READ COMMITTED: the statement reads a new snapshot, taken after the cluster's read barrier
    /// when it reads raft tables and reads are linearizable (the block's barrier stays Pending).
    async fn statement_snapshot(&mut self, stmt: &Statement) -> Result<()> {
        let linearizable = self
            .block
            .as_ref()
            .is_some_and(|b| b.barrier != BlockBarrier::Done);
        if linearizable && self.needs_barrier(stmt) {
            self.read_barrier().await?;
        }
        if let Some(b) = &mut self.block {
            b.txn.take_statement_snapshot();
        }
        Ok(())
    }

    pub fn parameter_status(&self) -> Vec<(String, String)> {
        self.settings.reported()
    }

    pub fn take_parameter_changes(&mut self) -> Vec<(String, String)> {
        self.settings.take_changed()
    }

    /// Sets the backend pid notifications from this session carry.
    pub fn set_backend_pid(&mut self, pid: i32) {
        self.pid = u32::try_from(pid).unwrap_or(0);
        if let Some(ctx) = crate::pg_catalog::PgContext::of(&self.state) {
            ctx.set_backend_pid(pid);
        }
    }

    /// Where this session's LISTEN/UNLISTEN take effect: its connection's place in the fan-out.
    pub fn set_listen_target(&mut self, target: Arc<dyn ListenTarget>) {
        self.listen_target = Some(target);
    }

    /// Starts listening on the channels `changes` add, before the transaction that made them
    /// publishes its notifications, so that it receives its own on them (PostgreSQL's
    /// PreCommit_Notify). Returns the channels listened to once the transaction has committed;
    /// `listen_end` then finishes or undoes the change.
    pub(crate) fn listen_begin(&mut self, changes: &[ListenChange]) -> BTreeSet<String> {
        let after = push::listened_after(&self.listening, changes);
        if let Some(t) = &self.listen_target {
            for channel in after.difference(&self.listening) {
                t.listen(channel, true);
            }
        }
        after
    }

    /// After the commit: on success the channels dropped stop, and `after` is what this session
    /// listens on; on failure the channels `listen_begin` added are revoked (see
    /// `ListenTarget::revoke`).
    pub(crate) fn listen_end(&mut self, after: BTreeSet<String>, committed: bool) {
        if let Some(t) = &self.listen_target {
            if committed {
                for channel in self.listening.difference(&after) {
                    t.listen(channel, false);
                }
            } else {
                for channel in after.difference(&self.listening) {
                    t.revoke(channel);
                }
            }
        }
        if committed {
            self.listening = after;
        }
    }

    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    pub fn tx_status(&self) -> TxStatus {
        match &self.block {
            None => TxStatus::Idle,
            Some(b) if b.failed => TxStatus::Failed,
            Some(_) => TxStatus::InBlock,
        }
    }

    /// How many statements this session answered by the primary-key point fast path.
    pub fn point_path_hits(&self) -> u64 {
        self.shared.point_hits.load(Ordering::Relaxed)
    }

    pub fn cancel_handle(&self) -> CancelHandle {
        self.cancel.clone()
    }

    pub(crate) fn notice(&mut self, severity: &str, sqlstate: &str, message: impl Into<String>) {
        self.notices.push(Notice {
            severity: severity.into(),
            sqlstate: sqlstate.into(),
            message: message.into(),
        });
    }

    /// Parses a simple-query string; a syntax error anywhere means none of it runs, and inside a
    /// transaction block it aborts the transaction, as in PostgreSQL.
    pub fn parse_batch(&mut self, sql: &str) -> Result<Vec<Statement>> {
        parse(sql).inspect_err(|_| self.fail_block())
    }

    /// The deferred foreign-key checks of `block` (taken out of the session): at COMMIT, or
    /// those a `SET CONSTRAINTS … IMMEDIATE` makes due.
    pub(crate) fn check_deferred(
        &self,
        block: &mut Block,
        when: crate::dml::foreign::Deferred,
    ) -> Result<()> {
        let ctx = ExecCtx {
            state: &self.state,
            shared: &self.shared,
            read_only: block.read_only,
            point_path: false,
            cancel: &self.cancel,
        };
        crate::dml::foreign::enforce_deferred(&ctx, &mut block.txn, when)
    }

    /// A statement failed before the session ran it (a COPY whose data never arrived whole):
    /// the open transaction block is failed, as if it had run.
    pub fn fail_block(&mut self) {
        if let Some(b) = &mut self.block {
            b.failed = true;
        }
        self.release_transaction_locks();
    }

    /// A transaction that ended or failed holds no transaction-level advisory lock (PostgreSQL
    /// aborts a failed block's transaction at the error, not at its ROLLBACK).
    fn release_transaction_locks(&self) {
        if self.block.as_ref().is_none_or(|b| b.failed)
            && self.shared.xact_advisory.swap(false, Ordering::AcqRel)
        {
            self.shared
                .advisory
                .release_transaction(self.shared.advisory_id);
        }
    }

    /// The data of the COPY … FROM STDIN about to be executed, or the client's CopyFail message.
    pub fn set_copy_data(&self, data: std::result::Result<Vec<u8>, String>) {
        self.shared.set_copy_data(data);
    }

    /// Parses and prepares one statement (extended protocol Parse). `param_types` are client-declared
    /// OIDs, 0 for "infer".
    pub async fn prepare(&mut self, sql: &str, param_types: &[u32]) -> Result<Arc<Prepared>> {
        let mut stmts = parse(sql).inspect_err(|_| self.fail_block())?;
        match stmts.len() {
            0 => Ok(Arc::new(Prepared {
                param_types: Vec::new(),
                fields: None,
                stmt: None,
                plan: None,
                point: None,
                copy: None,
            })),
            1 => self.prepare_statement(stmts.remove(0), param_types).await,
            _ => Err(Error::syntax(
                "cannot insert multiple commands into a prepared statement",
            )),
        }
    }

    pub async fn prepare_statement(
        &mut self,
        stmt: Statement,
        param_types: &[u32],
    ) -> Result<Arc<Prepared>> {
        let declared: Vec<Option<PgType>> = param_types
            .iter()
            .map(|&oid| PgType::from_oid(oid))
            .collect();
        if let Some(pos) = param_types
            .iter()
            .zip(&declared)
            .position(|(oid, t)| *oid != 0 && t.is_none())
        {
            return Err(Error::UndefinedObject {
                message: format!("type with OID {} does not exist", param_types[pos]),
            });
        }
        let view = self.read_view_for_planning();
        self.shared.set_read(view);
        let mut result = self.prepare_inner(stmt.clone(), &declared).await;
        if self.block.is_none()
            && self.engine.cluster().is_some()
            && matches!(
                result,
                Err(Error::UndefinedTable { .. } | Error::UndefinedColumn { .. })
            )
        {
            // Planned against this node's latest catalog, which may lag a DDL acknowledged on
            // another node: catch up as a read would, then plan again.
            self.read_barrier().await?;
            result = self.prepare_inner(stmt, &declared).await;
        }
        self.restore_read_view();
        if result.is_err() {
            self.fail_block();
        }
        result.map(Arc::new)
    }

    async fn prepare_inner(
        &mut self,
        stmt: Statement,
        declared: &[Option<PgType>],
    ) -> Result<Prepared> {
        // PREPARE returns nothing; EXECUTE returns its statement's rows (both run at Execute).
        let fields = match &*stmt.ast {
            ast::Statement::Prepare { .. } => Some(None),
            ast::Statement::Execute {
                name: Some(name),
                immediate: false,
                ..
            } => Some(self.named.get(&ddl::object_name(name)?)?.fields.clone()),
            _ => None,
        };
        if let Some(fields) = fields {
            return Ok(Prepared {
                param_types: Vec::new(),
                fields,
                stmt: Some(stmt),
                plan: None,
                point: None,
                copy: None,
            });
        }
        if let ast::Statement::Query(q) = &*stmt.ast {
            if dml::with::has_dml_ctes(q) {
                let (param_types, fields) = dml::with::describe(self, q, declared).await?;
                return Ok(Prepared {
                    param_types,
                    fields,
                    stmt: Some(stmt),
                    plan: None,
                    point: None,
                    copy: None,
                });
            }
        }
        if let ast::Statement::Copy { .. } = &*stmt.ast {
            return crate::copy::prepare(self, stmt, declared).await;
        }
        // DECLARE … CURSOR takes its query's parameters and keeps its plan (run at Execute);
        // FETCH returns its cursor's columns.
        if let Some((_, query)) = crate::cursor::declared_query(&stmt.ast) {
            crate::cursor::check_query(query)?;
            let source = Statement::query(query.clone(), Arc::clone(&stmt.sql));
            let plan = query::plan(&self.state, &source, declared, self.shared.catalog()).await?;
            return Ok(Prepared {
                param_types: plan.param_types.clone(),
                fields: None,
                stmt: Some(stmt),
                plan: Some(plan),
                point: None,
                copy: None,
            });
        }
        if let ast::Statement::Fetch { name, .. } = &*stmt.ast {
            let fields = self.cursors.describe_fetch(name)?;
            return Ok(Prepared {
                param_types: Vec::new(),
                fields: Some(fields),
                stmt: Some(stmt),
                plan: None,
                point: None,
                copy: None,
            });
        }
        if crate::txn_control::set_config_call(&stmt.ast).is_some() {
            return Ok(Prepared {
                param_types: Vec::new(),
                fields: Some(Arc::new(vec![query::text_field("set_config")])),
                stmt: Some(stmt),
                plan: None,
                point: None,
                copy: None,
            });
        }
        if query::is_query(&stmt.ast) {
            let catalog = self.shared.catalog();
            let plan = query::plan(&self.state, &stmt, declared, Arc::clone(&catalog)).await?;
            return Ok(Prepared {
                param_types: plan.param_types.clone(),
                fields: Some(Arc::clone(&plan.fields)),
                stmt: Some(stmt),
                point: point::for_query(&plan, catalog),
                plan: Some(plan),
                copy: None,
            });
        }
        let mut point = None;
        let (param_types, fields) = match &*stmt.ast {
            ast::Statement::Insert(_) => dml::describe(self, &stmt, declared).await?,
            ast::Statement::Update(_) | ast::Statement::Delete(_) => {
                let (param_types, fields) = dml::describe(self, &stmt, declared).await?;
                let ctx = ExecCtx {
                    state: &self.state,
                    shared: &self.shared,
                    read_only: false,
                    point_path: true,
                    cancel: &self.cancel,
                };
                point = dml::point::prepare(&ctx, &stmt, &param_types).await;
                (param_types, fields)
            }
            // CREATE TABLE … AS takes the parameters of its query, as PostgreSQL does.
            ast::Statement::CreateTable(ast::CreateTable {
                query: Some(query), ..
            }) => {
                let source = Statement::query((**query).clone(), Arc::clone(&stmt.sql));
                let plan =
                    query::plan(&self.state, &source, declared, self.shared.catalog()).await?;
                (plan.param_types, None)
            }
            ast::Statement::ShowVariable { variable } if is_show_live(variable) => (
                Vec::new(),
                Some(Arc::new(
                    ["name", "table", "query"]
                        .iter()
                        .map(|n| query::text_field(n))
                        .collect(),
                )),
            ),
            ast::Statement::ShowVariable { variable } => (
                Vec::new(),
                Some(Arc::new(vec![query::text_field(&show_name(variable))])),
            ),
            _ => (
                declared.iter().map(|t| t.unwrap_or(PgType::Text)).collect(),
                None,
            ),
        };
        Ok(Prepared {
            param_types,
            fields,
            stmt: Some(stmt),
            plan: None,
            point,
            copy: None,
        })
    }

    /// `PREPARE name [(types)] AS statement`: planned now, kept by name for EXECUTE. Like
    /// PostgreSQL's, it is not transactional (a ROLLBACK keeps it).
    async fn sql_prepare(
        &mut self,
        outer: &Statement,
        name: &ast::Ident,
        types: &[ast::DataType],
        inner: &ast::Statement,
    ) -> Result<QueryOutput> {
        let name = ddl::ident(name);
        self.named.check_free(&name)?;
        if !matches!(
            inner,
            ast::Statement::Query(_)
                | ast::Statement::Insert(_)
                | ast::Statement::Update(_)
                | ast::Statement::Delete(_)
        ) {
            return Err(Error::syntax(
                "PREPARE takes a SELECT, VALUES, INSERT, UPDATE or DELETE",
            ));
        }
        let oids = crate::named::param_oids(types)?;
        let prepared = self
            .prepare_statement(outer.inner(inner.clone()), &oids)
            .await?;
        self.named.insert(name, prepared)?;
        Ok(QueryOutput::Command {
            tag: "PREPARE".into(),
        })
    }

    /// A read view for planning: the open transaction's, else none (the latest catalog is used).
    fn read_view_for_planning(&self) -> Option<ReadView> {
        self.block.as_ref().map(|b| view_of(&b.txn))
    }

    fn restore_read_view(&self) {
        self.shared
            .set_read(self.block.as_ref().map(|b| view_of(&b.txn)));
    }

    /// Executes a prepared statement with bound parameter values.
    pub async fn execute(
        &mut self,
        prepared: &Arc<Prepared>,
        params: Vec<datafusion::scalar::ScalarValue>,
    ) -> Result<QueryOutput> {
        let Some(stmt) = prepared.stmt.clone() else {
            return Ok(QueryOutput::Empty);
        };
        if params.len() != prepared.param_types.len() {
            return Err(Error::ProtocolViolation {
                message: format!(
                    "bind message supplies {} parameters, but prepared statement requires {}",
                    params.len(),
                    prepared.param_types.len()
                ),
            });
        }
        // The previous statement's rows, if still being read, are no longer timed.
        if let Some(t) = self.timer.take() {
            t.abort();
        }
        self.cancel.reset();
        let timeout_ms = self.settings.statement_timeout_ms();
        let cancel = self.cancel.clone();
        let timer = (timeout_ms > 0).then(|| {
            let c = cancel.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(timeout_ms)).await;
                c.time_out();
            })
        });
        let result = tokio::select! {
            r = self.dispatch(&stmt, prepared, params) => r,
            e = cancel.cancelled() => Err(e),
        };
        // Rows are computed while the client reads them: the timeout runs on until the last one
        // (or the stream is dropped, or the next statement starts).
        let timer = timer.map(|t| t.abort_handle());
        let streaming = matches!(result, Ok(QueryOutput::Rows { .. }));
        if let (true, Some(t)) = (streaming, &timer) {
            self.timer = Some(t.clone());
        } else if let Some(t) = &timer {
            t.abort();
        }
        if result.is_err() {
            self.restore_read_view();
            if let Some(b) = &mut self.block {
                b.failed = true;
            }
        }
        self.release_transaction_locks();
        let timer = AbortOnDrop(timer.filter(|_| streaming));
        result.map(|out| with_cancel(out, cancel, timer))
    }

    async fn dispatch(
        &mut self,
        stmt: &Statement,
        prepared: &Arc<Prepared>,
        params: Vec<datafusion::scalar::ScalarValue>,
    ) -> Result<QueryOutput> {
        if let Some(out) = txn_control::execute(self, stmt).await? {
            return Ok(out);
        }
        if self.block.as_ref().is_some_and(|b| b.failed) {
            // A COPY's data received for a statement that will not run is dropped now.
            self.shared.take_copy_data();
            return Err(Error::InFailedTransaction);
        }
        if let Some((names, deferred)) = crate::dialect::set_constraints(&stmt.ast) {
            return txn_control::set_constraints(self, &names, deferred);
        }
        match &*stmt.ast {
            ast::Statement::Prepare {
                name,
                data_types,
                statement,
            } => return self.sql_prepare(stmt, name, data_types, statement).await,
            ast::Statement::Execute {
                name: Some(name),
                parameters,
                immediate: false,
                ..
            } => {
                let name = ddl::object_name(name)?;
                let named = self.named.get(&name)?;
                let args = crate::named::arguments(&self.state, &name, &named, parameters)?;
                let Some(inner) = named.stmt.clone() else {
                    return Ok(QueryOutput::Empty);
                };
                return Box::pin(self.dispatch(&inner, &named, args)).await;
            }
            _ => {}
        }
        if crate::dialect::alter_sequence(&stmt.ast).is_some() {
            return self.execute_in_txn(stmt, prepared, params).await;
        }
        if let Some(out) = self.execute_setting(stmt)? {
            // current_setting() and pg_settings read the session's values.
            if let Some(ctx) = crate::pg_catalog::PgContext::of(&self.state) {
                ctx.set_settings(self.settings.all());
            }
            return Ok(out);
        }
        if let Some(out) = self.execute_listen(stmt) {
            return Ok(out);
        }
        match &*stmt.ast {
            ast::Statement::Fetch {
                name,
                direction,
                into: None,
                ..
            } => return self.cursors.fetch(name, direction).await,
            ast::Statement::Close { cursor } => return self.cursors.close(cursor),
            _ => {}
        }
        if let Some((declare, query)) = crate::cursor::declared_query(&stmt.ast) {
            let in_block = self.block.is_some();
            let name = self.cursors.check_declare(declare, in_block)?;
            let hold = declare.hold == Some(true);
            let source = Statement::query(query.clone(), Arc::clone(&stmt.sql));
            // The query as planned at Parse (planned again there if the catalog has changed).
            let plan = prepared
                .plan
                .clone()
                .ok_or_else(|| Error::internal("DECLARE prepared without its query's plan"))?;
            let inner = Arc::new(Prepared {
                param_types: prepared.param_types.clone(),
                fields: Some(Arc::clone(&plan.fields)),
                stmt: Some(source.clone()),
                plan: Some(plan),
                point: None,
                copy: None,
            });
            let rows = self.execute_in_txn(&source, &inner, params).await?;
            return self.cursors.open(name, rows, hold, in_block);
        }
        self.execute_in_txn(stmt, prepared, params).await
    }

    /// Runs a statement that reads or writes data inside the open block or an autocommit
    /// transaction.
    ///
    /// A statement that fails with 40001 before the client has seen anything of it runs again on
    /// a new snapshot, as long as it is in a transaction of its own (autocommit), the first to
    /// touch data in its block (whose snapshot PostgreSQL would take only now), or in a READ
    /// COMMITTED block (whose statements each take a snapshot; the block is rolled back to just
    /// before the statement): its commit lost to a concurrent one, or a row it waited to lock was
    /// changed by the holder. So concurrent `UPDATE t SET n = n + 1` statements all apply, one
    /// after another, as in PostgreSQL, where READ COMMITTED carries on from the row's new
    /// version. The row locks the failed attempt took stay held, so the next one does not queue
    /// again behind later lockers. Not run again: COPY (its data is consumed) and statements that call advisory lock
    /// functions (a session-level lock would be taken twice).
    async fn execute_in_txn(
        &mut self,
        stmt: &Statement,
        prepared: &Arc<Prepared>,
        params: Vec<datafusion::scalar::ScalarValue>,
    ) -> Result<QueryOutput> {
        let retryable = self
            .block
            .as_ref()
            .is_none_or(|b| b.read_committed || (b.untouched && b.savepoints.is_empty()))
            // (DECLARE runs its query through here as a Query.)
            && matches!(
                &*stmt.ast,
                ast::Statement::Insert(_)
                    | ast::Statement::Update(_)
                    | ast::Statement::Delete(_)
                    | ast::Statement::Query(_)
            )
            && !crate::advisory::mentioned(stmt.sql.as_bytes());
        if !retryable {
            let out = self.execute_once(stmt, prepared, params).await;
            if let Some(b) = &mut self.block {
                b.untouched = false;
            }
            return out;
        }
        let notices = self.notices.len();
        // READ COMMITTED: the statement's effects, undone before it runs again on a new snapshot.
        let start = match &mut self.block {
            Some(b) if b.read_committed => Some(b.txn.savepoint()),
            _ => None,
        };
        let mut attempt = 0;
        loop {
            let out = self.execute_once(stmt, prepared, params.clone()).await;
            match out {
                Err(Error::SerializationFailure { .. }) if attempt < STATEMENT_RETRIES => {
                    attempt += 1;
                    self.notices.truncate(notices);
                    if let Some(b) = &mut self.block {
                        match start {
                            Some(sp) => b.txn.rollback_to(sp),
                            None => {
                                // Everything the attempt wrote goes with its snapshot.
                                b.txn = self.engine.storage().begin();
                                if b.barrier == BlockBarrier::Done
                                    && self.engine.cluster().is_some()
                                {
                                    b.barrier = BlockBarrier::Pending;
                                }
                            }
                        }
                    }
                    if attempt > 2 {
                        tokio::time::sleep(Duration::from_millis(u64::from(attempt.min(20)))).await;
                    } else {
                        tokio::task::yield_now().await;
                    }
                }
                out => {
                    if let Some(b) = &mut self.block {
                        b.untouched = false;
                    }
                    return out;
                }
            }
        }
    }

    async fn execute_once(
        &mut self,
        stmt: &Statement,
        prepared: &Arc<Prepared>,
        params: Vec<datafusion::scalar::ScalarValue>,
    ) -> Result<QueryOutput> {
        if let Some(block) = &self.block {
            if block.read_committed {
                self.statement_snapshot(stmt).await?;
            } else if block.barrier != BlockBarrier::Done {
                self.block_barrier(stmt).await?;
            }
        }
        let mut auto = match self.block {
            Some(_) => None,
            None => {
                // Only a cluster needs the barrier; the statement checks cost an AST walk.
                if self.engine.cluster().is_some() && self.needs_barrier(stmt) {
                    self.read_barrier().await?;
                }
                Some(self.engine.storage().begin())
            }
        };
        // now() and friends read the transaction's start, statement_timestamp() the statement's.
        self.state.mark_start_execution();
        let now = self.state.execution_props().query_execution_start_time;
        if let Some(nanos) = now.and_then(|t| t.timestamp_nanos_opt()) {
            self.shared.statement_start.set(nanos);
        }
        if let Some(b) = &self.block {
            self.state.execution_props_mut().query_execution_start_time = Some(b.started);
        }
        let output = {
            let block = self.block.as_ref().map(|_| ());
            let (txn, read_only) = match (&mut self.block, &mut auto) {
                (Some(b), _) => (&mut b.txn, b.read_only),
                (None, Some(t)) => (t, false),
                (None, None) => return Err(Error::internal("no transaction")),
            };
            self.shared.set_read(Some(view_of(txn)));
            let ctx = ExecCtx {
                state: &self.state,
                shared: &self.shared,
                read_only,
                point_path: self.settings.point_fast_path(),
                cancel: &self.cancel,
            };
            self.shared.take_notifies();
            self.shared.sequences.lock().read_only = read_only;
            let mut out = run_statement(&ctx, txn, stmt, prepared, params).await;
            // pg_notify() runs while rows are produced: produce them now, inside the transaction.
            if out.is_ok() && calls_pg_notify(stmt) {
                out = collect_rows(out?).await;
            }
            // Foreign keys hold at the end of each statement (NOT DEFERRABLE), deferred ones at
            // COMMIT, which in autocommit is now.
            if out.is_ok() {
                let mut checked = crate::dml::foreign::enforce(&ctx, txn);
                if checked.is_ok() && block.is_none() {
                    checked = crate::dml::foreign::enforce_deferred(
                        &ctx,
                        txn,
                        crate::dml::foreign::Deferred::AtCommit,
                    );
                }
                if let Err(e) = checked {
                    out = Err(e);
                }
            } else {
                txn.take_ri_events();
            }
            if let Err(e) = crate::sequence::flush_pending(&self.shared, txn) {
                out = out.and(Err(e));
            }
            for (channel, payload) in self.shared.take_notifies() {
                txn.notify(&channel, &payload);
            }
            for (severity, sqlstate, message) in self.shared.take_notices() {
                self.notices.push(Notice {
                    severity: severity.into(),
                    sqlstate: sqlstate.into(),
                    message,
                });
            }
            // DDL and DML change the catalog or data the next statement must see.
            self.shared.set_read(Some(view_of(txn)));
            out?
        };
        if let Some(mut txn) = auto {
            self.shared.set_read(None);
            if txn.has_writes() {
                txn.set_origin(self.pid);
                txn.commit().await?;
            }
        }
        Ok(output)
    }

    /// LISTEN and UNLISTEN: take effect when the transaction commits (at once in autocommit).
    fn execute_listen(&mut self, stmt: &Statement) -> Option<QueryOutput> {
        let (change, tag) = match &*stmt.ast {
            ast::Statement::LISTEN { channel } => {
                (ListenChange::Listen(push::channel_name(channel)), "LISTEN")
            }
            ast::Statement::UNLISTEN { channel }
                if channel.value == "*" && channel.quote_style.is_none() =>
            {
                (ListenChange::UnlistenAll, "UNLISTEN")
            }
            ast::Statement::UNLISTEN { channel } => (
                ListenChange::Unlisten(push::channel_name(channel)),
                "UNLISTEN",
            ),
            _ => return None,
        };
        match self.block {
            Some(_) => self.listen_pending.push(change),
            None => {
                let after = self.listen_begin(std::slice::from_ref(&change));
                self.listen_end(after, true);
            }
        }
        Some(QueryOutput::Command { tag: tag.into() })
    }

    fn execute_setting(&mut self, stmt: &Statement) -> Result<Option<QueryOutput>> {
        if let Some((name, value)) = crate::txn_control::set_config_call(&stmt.ast) {
            self.settings.set(&name, &value)?;
            let shown = self.settings.get(&name).unwrap_or_default().to_string();
            return query::select_text("set_config", shown).map(Some);
        }
        match &*stmt.ast {
            ast::Statement::ShowVariable { variable } if is_show_live(variable) => {
                push::show(&self.shared.catalog()).map(Some)
            }
            ast::Statement::Set(set) => crate::txn_control::execute_set(self, set).map(Some),
            ast::Statement::ShowVariable { variable } => {
                let name = show_name(variable);
                if name.eq_ignore_ascii_case("all") {
                    return Ok(Some(query::show_all(self.settings.all())?));
                }
                let value = self.settings.show(&name)?;
                Ok(Some(query::single_text(&name, value)?))
            }
            ast::Statement::Reset(r) => {
                match &r.reset {
                    ast::Reset::ALL => self.settings.reset_all(),
                    ast::Reset::ConfigurationParameter(name) => {
                        self.settings.reset(&name.to_string())?
                    }
                }
                Ok(Some(QueryOutput::Command {
                    tag: "RESET".into(),
                }))
            }
            ast::Statement::Discard { object_type } => {
                if *object_type == ast::DiscardObject::ALL {
                    self.cursors.close(&ast::CloseCursor::All)?;
                    self.named.clear();
                }
                self.settings.reset_all();
                Ok(Some(QueryOutput::Command {
                    tag: "DISCARD ALL".into(),
                }))
            }
            ast::Statement::Deallocate { name, .. } => {
                self.named.deallocate(name)?;
                Ok(Some(QueryOutput::Command {
                    tag: "DEALLOCATE".into(),
                }))
            }
            other => crate::statement::maintenance(other, self.block.is_some()),
        }
    }
}

/// `SHOW LIVE QUERIES`.
fn is_show_live(variable: &[ast::Ident]) -> bool {
    matches!(variable, [a, b] if a.value.eq_ignore_ascii_case("live") && b.value.eq_ignore_ascii_case("queries"))
}

fn show_name(variable: &[ast::Ident]) -> String {
    let name = variable
        .iter()
        .map(|i| i.value.clone())
        .collect::<Vec<_>>()
        .join(" ");
    // The SQL-standard spellings PostgreSQL's SHOW accepts (SQLAlchemy sends the first).
    match name.to_lowercase().as_str() {
        "transaction isolation level" => "transaction_isolation".into(),
        "time zone" => "timezone".into(),
        "session authorization" => "session_authorization".into(),
        _ => name,
    }
}

pub(crate) fn view_of(txn: &Txn) -> ReadView {
    ReadView {
        reader: txn.reader(),
        catalog: txn.catalog(),
        position: txn.snapshot_position(),
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Break the cycle session state → schema providers → shared → session state.
        self.shared.set_state(None);
        self.shared.set_read(None);
        // A statement still waiting for an advisory lock stops, and the locks are released.
        self.cancel.cancel();
        self.shared.advisory.unregister(self.shared.advisory_id);
    }
}

/// What a statement's executor may use besides the transaction.
pub(crate) struct ExecCtx<'a> {
    pub state: &'a SessionState,
    pub shared: &'a Arc<SessionShared>,
    pub read_only: bool,
    /// Whether the point fast path may answer (`SET weft.point_fast_path = off` disables it).
    pub point_path: bool,
    /// The statement's cancel signal, for operators that must check it themselves.
    pub cancel: &'a CancelHandle,
}

async fn run_statement(
    ctx: &ExecCtx<'_>,
    txn: &mut Txn,
    stmt: &Statement,
    prepared: &Arc<Prepared>,
    params: Vec<datafusion::scalar::ScalarValue>,
) -> Result<QueryOutput> {
    let is_write = match &*stmt.ast {
        ast::Statement::Insert(_) | ast::Statement::Update(_) | ast::Statement::Delete(_) => true,
        ast::Statement::Copy { to: false, .. } => true,
        ast::Statement::Query(q) => dml::with::has_dml_ctes(q),
        _ => false,
    };
    if is_write && ctx.read_only {
        return Err(read_only_error(stmt));
    }
    if ctx.read_only {
        if let Some(lock) = crate::row_lock::first_lock(&stmt.ast) {
            return Err(Error::ReadOnlyTransaction {
                message: format!("cannot execute SELECT {lock} in a read-only transaction"),
            });
        }
    }
    if let (Some(p), true) = (&prepared.point, ctx.point_path) {
        if let Some(out) = point::execute(ctx, txn, p, stmt, &params).await? {
            return Ok(crate::numeric_display::output(out));
        }
    }
    if let Some(plan) = &prepared.plan {
        return query::execute(ctx, plan, stmt, params).await;
    }
    match &*stmt.ast {
        ast::Statement::NOTIFY { channel, payload } => {
            push::notify(txn, channel, payload.as_deref())
        }
        ast::Statement::Copy { to: false, .. } => crate::copy::copy_from(ctx, txn, stmt),
        ast::Statement::Insert(_) | ast::Statement::Update(_) | ast::Statement::Delete(_) => {
            dml::execute(ctx, txn, stmt, &prepared.param_types, params)
                .await
                .map(crate::numeric_display::output)
        }
        ast::Statement::Query(q) if dml::with::has_dml_ctes(q) => {
            dml::with::execute(ctx, txn, stmt, q, &prepared.param_types, params)
                .await
                .map(crate::numeric_display::output)
        }
        _ => {
            if ctx.read_only && ddl::is_ddl(&stmt.ast) {
                return Err(read_only_error(stmt));
            }
            ddl::execute(ctx, txn, stmt, &prepared.param_types, params).await
        }
    }
}

fn read_only_error(stmt: &Statement) -> Error {
    let verb = match &*stmt.ast {
        ast::Statement::Copy { to: false, .. } => "COPY FROM".to_string(),
        // Also when run by EXECUTE, whose text is the PREPARE's.
        ast::Statement::Insert(_) => "INSERT".to_string(),
        ast::Statement::Update(_) => "UPDATE".to_string(),
        ast::Statement::Delete(_) => "DELETE".to_string(),
        // `WITH … UPDATE …` is its main statement's verb; a SELECT with data-modifying CTEs is
        // a SELECT, as PostgreSQL names them.
        ast::Statement::Query(q) => match q.body.as_ref() {
            ast::SetExpr::Insert(_) => "INSERT",
            ast::SetExpr::Update(_) => "UPDATE",
            ast::SetExpr::Delete(_) => "DELETE",
            _ => "SELECT",
        }
        .to_string(),
        _ => stmt
            .sql
            .split_whitespace()
            .next()
            .unwrap_or("statement")
            .to_ascii_uppercase(),
    };
    Error::ReadOnlyTransaction {
        message: format!("cannot execute {verb} in a read-only transaction"),
    }
}

/// Whether the statement's text mentions `pg_notify`, `nextval`, `setval` or an advisory lock
/// function (any case), without allocating, or it locks rows (`FOR UPDATE`): this runs for every
/// statement, the point fast path's included. Their effects (a notification, the state of a
/// sequence this transaction created, a transaction-level lock) belong to the transaction.
fn calls_pg_notify(stmt: &Statement) -> bool {
    let sql = stmt.sql.as_bytes();
    sql.windows(9).any(|w| w.eq_ignore_ascii_case(b"pg_notify"))
        || crate::advisory::mentioned(sql)
        || (sql
            .windows(5)
            .any(|w| w.eq_ignore_ascii_case(b"share") || w.eq_ignore_ascii_case(b"updat"))
            && crate::row_lock::locks_rows(&stmt.ast))
        || sql
            .windows(6)
            .any(|w| w.eq_ignore_ascii_case(b"nextva") || w.eq_ignore_ascii_case(b"setval"))
}

/// Runs a result stream to its end, keeping the rows in memory.
async fn collect_rows(out: QueryOutput) -> Result<QueryOutput> {
    use futures::TryStreamExt;
    match out {
        QueryOutput::Rows {
            fields,
            stream,
            command,
        } => {
            let batches: Vec<RecordBatch> = stream.try_collect().await?;
            let stream: RowStream = Box::pin(futures::stream::iter(batches.into_iter().map(Ok)));
            Ok(QueryOutput::Rows {
                fields,
                stream,
                command,
            })
        }
        other => Ok(other),
    }
}

/// Makes a result stream stop with 57014 once the statement is cancelled.
/// Stops a statement's timeout timer when dropped.
struct AbortOnDrop(Option<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            t.abort();
        }
    }
}

fn with_cancel(out: QueryOutput, cancel: CancelHandle, timer: AbortOnDrop) -> QueryOutput {
    match out {
        QueryOutput::Rows {
            fields,
            stream,
            command,
        } => {
            use futures::StreamExt;
            // Race every batch against the cancel signal, so a long scan or aggregate stops at
            // once; the timeout timer lives as long as the stream.
            let state = Some((stream, cancel, timer));
            let stream = futures::stream::unfold(state, |state| async move {
                let (mut stream, cancel, timer) = state?;
                tokio::select! {
                    item = stream.next() => item.map(|i| (i, Some((stream, cancel, timer)))),
                    e = cancel.cancelled() => Some((Err(e), None)),
                }
            });
            QueryOutput::Rows {
                fields,
                stream: Box::pin(stream),
                command,
            }
        }
        other => other,
    }
}
