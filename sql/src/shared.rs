//! State a session shares with the DataFusion objects it registers (schema provider, tables), so
//! that a cached plan reads through whatever transaction is current when it executes.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::execution::session_state::SessionState;
use parking_lot::RwLock;
use weft_storage::{Catalog, Storage, TableId, TxnReader};

use crate::advisory::AdvisoryLocks;
use crate::cluster::ClusterAdmin;
use crate::session::CancelHandle;

pub(crate) struct SessionShared {
    pub storage: Storage,
    /// This node's id (for `weft_nodes` on a standalone node).
    pub node_id: u16,
    /// The cluster this node belongs to, if any.
    cluster: Option<Arc<dyn ClusterAdmin>>,
    /// The read view of the current transaction, if one is open.
    read: RwLock<Option<ReadView>>,
    /// While planning a DML statement: the target table, whose hidden row id is then visible.
    dml_target: RwLock<Option<TableId>>,
    /// The session's DataFusion state, for planning view definitions. It refers back to this struct
    /// through the schema providers, so the session clears it when it ends (else both would leak).
    state: parking_lot::Mutex<Option<SessionState>>,
    /// `pg_notify()` calls of the running statement, moved into its transaction when it ends.
    notifies: parking_lot::Mutex<Vec<(String, String)>>,
    /// NOTICEs and WARNINGs the running statement raised (severity, SQLSTATE, message), sent
    /// before its result.
    notices: parking_lot::Mutex<Vec<(&'static str, &'static str, String)>>,
    /// COPY FROM STDIN's data, or the client's CopyFail message, for the statement about to run.
    copy_data: parking_lot::Mutex<Option<std::result::Result<Vec<u8>, String>>>,
    /// Statements answered by the point fast path (`point.rs`), for tests and diagnostics.
    pub point_hits: AtomicU64,
    /// While a statement with data-modifying CTEs plans its main part: each such CTE's
    /// RETURNING rows under the CTE's name (`dml/with.rs`); they shadow tables, as CTEs do.
    cte_tables: RwLock<Vec<(String, Arc<dyn TableProvider>)>>,
    /// `currval`, `lastval` and the state of sequences the open transaction created.
    pub sequences: parking_lot::Mutex<crate::sequence::SessionSequences>,
    /// The node's advisory locks, and this session's id among their holders.
    pub advisory: Arc<AdvisoryLocks>,
    pub advisory_id: u64,
    /// Set when the session takes a transaction-level advisory lock, which its transaction's end
    /// releases.
    pub xact_advisory: AtomicBool,
    /// The session's cancel signal, for functions that wait (`pg_advisory_lock`).
    pub cancel: CancelHandle,
    /// When the running statement started, for `statement_timestamp()` (`now()` is the
    /// transaction's start).
    pub statement_start: crate::misc_fn::StatementStart,
}

#[derive(Clone)]
pub(crate) struct ReadView {
    pub reader: TxnReader,
    pub catalog: Arc<Catalog>,
    pub position: u64,
}

impl SessionShared {
    pub fn cluster(&self) -> Option<&Arc<dyn ClusterAdmin>> {
        self.cluster.as_ref()
    }

    pub fn new(
        storage: Storage,
        node_id: u16,
        cluster: Option<Arc<dyn ClusterAdmin>>,
        advisory: Arc<AdvisoryLocks>,
        cancel: CancelHandle,
    ) -> Arc<Self> {
        let advisory_id = advisory.register();
        Arc::new(SessionShared {
            storage,
            node_id,
            cluster,
            read: RwLock::new(None),
            dml_target: RwLock::new(None),
            state: parking_lot::Mutex::new(None),
            notifies: parking_lot::Mutex::new(Vec::new()),
            notices: parking_lot::Mutex::new(Vec::new()),
            copy_data: parking_lot::Mutex::new(None),
            point_hits: AtomicU64::new(0),
            cte_tables: RwLock::new(Vec::new()),
            sequences: Default::default(),
            advisory,
            advisory_id,
            xact_advisory: AtomicBool::new(false),
            cancel,
            statement_start: Default::default(),
        })
    }

    pub fn push_notify(&self, channel: String, payload: String) {
        self.notifies.lock().push((channel, payload));
    }

    pub fn take_notifies(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.notifies.lock())
    }

    /// A NOTICE for the client, as PostgreSQL raises when `IF [NOT] EXISTS` skips an object.
    pub fn push_notice(&self, sqlstate: &'static str, message: String) {
        self.notices.lock().push(("NOTICE", sqlstate, message));
    }

    /// A WARNING (SQLSTATE 01000) for the client, sent before the statement's result.
    pub fn push_warning(&self, message: String) {
        self.notices.lock().push(("WARNING", "01000", message));
    }

    pub fn set_copy_data(&self, data: std::result::Result<Vec<u8>, String>) {
        *self.copy_data.lock() = Some(data);
    }

    pub fn take_copy_data(&self) -> Option<std::result::Result<Vec<u8>, String>> {
        self.copy_data.lock().take()
    }

    /// The notices raised so far: severity, SQLSTATE, message.
    pub fn take_notices(&self) -> Vec<(&'static str, &'static str, String)> {
        std::mem::take(&mut *self.notices.lock())
    }

    pub fn set_state(&self, state: Option<SessionState>) {
        *self.state.lock() = state;
    }

    pub fn state(&self) -> Option<SessionState> {
        self.state.lock().clone()
    }

    pub fn set_read(&self, view: Option<ReadView>) {
        *self.read.write() = view;
    }

    pub fn read(&self) -> Option<ReadView> {
        self.read.read().clone()
    }

    /// The catalog statements see now: the open transaction's, or the latest committed one.
    pub fn catalog(&self) -> Arc<Catalog> {
        match &*self.read.read() {
            Some(v) => Arc::clone(&v.catalog),
            None => self.storage.catalog(),
        }
    }

    pub fn set_dml_target(&self, id: Option<TableId>) {
        *self.dml_target.write() = id;
    }

    pub fn dml_target(&self) -> Option<TableId> {
        *self.dml_target.read()
    }

    pub fn set_cte_tables(&self, tables: Vec<(String, Arc<dyn TableProvider>)>) {
        *self.cte_tables.write() = tables;
    }

    pub fn cte_table(&self, name: &str) -> Option<Arc<dyn TableProvider>> {
        self.cte_tables
            .read()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| Arc::clone(t))
    }
}
