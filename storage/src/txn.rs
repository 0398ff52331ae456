//! A snapshot-isolation transaction: snapshot, private write buffer, undo log for savepoints, and
//! the write set it becomes at COMMIT. Row operations live in `dml.rs`, catalog operations in
//! `ddl.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::apply::{CommitState, WriteSet};
use crate::catalog::Consistency;
use crate::catalog::{Catalog, CatalogEntry, ForeignKeyDef, TableId};
use crate::change::{ChangeRecord, EncodedChange};
use crate::codec::layout::TABLE_TAG;
use crate::codec::layout::{self, CATALOG_TAG, META_COMMIT};
use crate::committer::{submit, submit_lww};
use crate::engine::{load_catalog_at, OwnedSnapshot};
use crate::error::{Error, Result};
use crate::lww::{row_op, RowWrite};
use crate::reader::{Buffer, TxnReader};
use crate::storage::{CommitInfo, Inner};
use crate::types::{Row, Value};

/// A buffered write: `data` key and payload (`None`: delete).
type BufferedWrite = (Vec<u8>, Option<Vec<u8>>);

/// `(key, previous buffer entry)`; the previous entry is `None` when the key was not buffered.
type UndoEntry = (Vec<u8>, Option<Option<Vec<u8>>>);

/// Position in a transaction to roll back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Savepoint {
    undo: usize,
    changes: usize,
    notifications: usize,
    ri: usize,
    ri_deferred: usize,
    fk_modes: usize,
}

/// A row written to a table that has foreign keys or is referenced by one: the SQL layer
/// checks it (and runs the referential actions) at the end of the statement.
#[derive(Debug, Clone, PartialEq)]
pub struct RiEvent {
    pub table: TableId,
    pub old: Option<Row>,
    pub new: Option<Row>,
}

/// A transaction, owned by one SQL session.
pub struct Txn {
    pub(crate) inner: Arc<Inner>,
    pub(crate) reader: TxnReader,
    /// Last commit the current snapshot sees (READ COMMITTED takes one per statement).
    read_version: u64,
    /// Last commit the transaction's first snapshot saw: the version its writes and checks are
    /// validated against at COMMIT, except those in `later`.
    base_version: u64,
    /// Keys first written or checked under a later statement's snapshot, with that snapshot's
    /// version (READ COMMITTED).
    later: BTreeMap<Vec<u8>, u64>,
    snapshot_position: u64,
    /// An error met while starting (reading the snapshot's counters); reported by every write
    /// and by commit.
    poisoned: Option<Error>,
    base_catalog: Arc<Catalog>,
    catalog: Arc<Catalog>,
    undo: Vec<UndoEntry>,
    checks: BTreeSet<Vec<u8>>,
    touches: BTreeSet<Vec<u8>>,
    changes: Vec<EncodedChange>,
    records: Vec<ChangeRecord>,
    notifications: Vec<(String, String)>,
    max_rowid: AtomicU64,
    origin: u32,
    /// Row writes whose foreign keys are still to be checked (`take_ri_events`).
    ri: Vec<RiEvent>,
    /// Row writes whose deferred foreign keys are checked at COMMIT (`defer_ri`).
    ri_deferred: Vec<RiEvent>,
    /// `SET CONSTRAINTS`, in the order given: deferred (true) or immediate, for every deferrable
    /// foreign key (`None`) or for one, by its table and name. The last that names a key wins.
    fk_modes: Vec<(Option<(TableId, String)>, bool)>,
    /// Tables that have a foreign key or are referenced by one, as of that catalog (recomputed
    /// when the transaction's catalog is another one; holding it keeps its address unique).
    ri_tables: Option<(Arc<Catalog>, std::collections::HashSet<TableId>)>,
}

impl Txn {
    pub(crate) fn new(inner: Arc<Inner>, snap: Arc<OwnedSnapshot>) -> Txn {
        let mut poisoned = None;
        let state = match read_state(&snap) {
            Ok(s) => s,
            Err(e) => {
                poisoned = Some(e);
                CommitState::default()
            }
        };
        let base_catalog = catalog_at(&inner, &snap, &state).unwrap_or_else(|(e, current)| {
            poisoned.get_or_insert(e);
            current
        });
        Txn {
            inner,
            reader: TxnReader {
                snap,
                buf: Arc::new(RwLock::new(Buffer::new())),
                read_version: state.version,
            },
            read_version: state.version,
            base_version: state.version,
            later: BTreeMap::new(),
            snapshot_position: state.position,
            poisoned,
            catalog: base_catalog.clone(),
            base_catalog,
            undo: Vec::new(),
            checks: BTreeSet::new(),
            touches: BTreeSet::new(),
            changes: Vec::new(),
            records: Vec::new(),
            notifications: Vec::new(),
            max_rowid: AtomicU64::new(0),
            origin: 0,
            ri: Vec::new(),
            ri_deferred: Vec::new(),
            fk_modes: Vec::new(),
            ri_tables: None,
        }
    }

    /// Last commit version visible to this transaction.
    pub fn read_version(&self) -> u64 {
        self.read_version
    }

    /// Last change-log position visible to this transaction.
    pub fn snapshot_position(&self) -> u64 {
        self.snapshot_position
    }

    /// The snapshot's catalog with this transaction's own DDL applied.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.clone()
    }

    /// [`TxnReader::changed_since_snapshot`] for this transaction.
    pub fn changed_since_snapshot(&self, key: &[u8]) -> Result<bool> {
        self.reader.changed_since_snapshot(key)
    }

    /// A shared read handle (snapshot + this transaction's writes, present and future).
    pub fn reader(&self) -> TxnReader {
        self.reader.clone()
    }

    /// READ COMMITTED: the next statement reads a new snapshot (with this transaction's writes
    /// over it). What the transaction writes or checks from now on is validated at COMMIT
    /// against that snapshot; what it wrote or checked before, against the earlier ones.
    /// Readers handed out before keep their snapshot.
    pub fn take_statement_snapshot(&mut self) {
        let snap = Arc::new(OwnedSnapshot::take(self.inner.engine.clone()));
        let state = match read_state(&snap) {
            Ok(s) => s,
            Err(e) => {
                self.poisoned.get_or_insert(e);
                return;
            }
        };
        // (lww commits advance the position, not the version: the snapshot is replaced anyway.)
        let base_catalog = match catalog_at(&self.inner, &snap, &state) {
            Ok(c) => c,
            Err((e, _)) => {
                self.poisoned.get_or_insert(e);
                return;
            }
        };
        self.reader.snap = snap;
        self.reader.read_version = state.version;
        self.read_version = state.version;
        self.snapshot_position = state.position;
        if !Arc::ptr_eq(&base_catalog, &self.base_catalog) {
            self.base_catalog = base_catalog;
            if let Err(e) = self.rebuild_catalog() {
                self.poisoned.get_or_insert(e);
            }
        }
    }

    /// A new hidden row id: `(node_id << 48) | counter`; the counter is never reused, even after a
    /// restart, for ids that were committed.
    pub fn next_rowid(&self) -> i64 {
        let (id, counter) = self.inner.next_rowid();
        self.max_rowid.fetch_max(counter, Ordering::Relaxed);
        id
    }

    /// Queues `NOTIFY channel, payload`; delivered in the `CommitEvent` if this commits.
    pub fn notify(&mut self, channel: &str, payload: &str) {
        let dup = self
            .notifications
            .iter()
            .any(|(c, p)| c == channel && p == payload);
        if !dup {
            self.notifications
                .push((channel.to_string(), payload.to_string()));
        }
    }

    /// Tags the commit with the committing session's backend pid (`CommitEvent::origin`).
    pub fn set_origin(&mut self, pid: u32) {
        self.origin = pid;
    }

    pub fn savepoint(&mut self) -> Savepoint {
        Savepoint {
            undo: self.undo.len(),
            changes: self.changes.len(),
            notifications: self.notifications.len(),
            ri: self.ri.len(),
            ri_deferred: self.ri_deferred.len(),
            fk_modes: self.fk_modes.len(),
        }
    }

    /// Undoes writes, catalog changes, notifications and change records made after `sp`.
    pub fn rollback_to(&mut self, sp: Savepoint) {
        if sp.undo < self.undo.len() {
            let mut buf = self.reader.buf.write();
            for (key, prev) in self.undo.drain(sp.undo..).rev() {
                match prev {
                    Some(v) => {
                        buf.insert(key, v);
                    }
                    None => {
                        buf.remove(&key);
                    }
                }
            }
        }
        self.changes.truncate(sp.changes);
        self.records.truncate(sp.changes);
        self.notifications.truncate(sp.notifications);
        self.ri.truncate(sp.ri);
        self.ri_deferred.truncate(sp.ri_deferred);
        self.fk_modes.truncate(sp.fk_modes);
        if let Err(e) = self.rebuild_catalog() {
            self.poisoned.get_or_insert(e);
        }
    }

    /// Whether the transaction has anything to commit (rows, index entries, catalog, counters,
    /// notifications).
    pub fn has_writes(&self) -> bool {
        !self.reader.buf.read().is_empty()
            || !self.changes.is_empty()
            || !self.notifications.is_empty()
    }

    /// Commits: hands the write set to the committer and waits until it is durable.
    /// A transaction that wrote nothing commits at once without touching the committer.
    /// One that did is then paced by the change stream's subscriber (`Storage::pace_commits`).
    pub async fn commit(self) -> Result<CommitInfo> {
        if !self.has_writes() {
            return self.commit_now().await;
        }
        let inner = self.inner.clone();
        let info = self.commit_now().await?;
        inner.pace_commit().await;
        Ok(info)
    }

    async fn commit_now(self) -> Result<CommitInfo> {
        if let Some(e) = self.poisoned {
            return Err(e);
        }
        let writes: Vec<(Vec<u8>, Option<Vec<u8>>)> = std::mem::take(&mut *self.reader.buf.write())
            .into_iter()
            .collect();
        if writes.is_empty() && self.changes.is_empty() && self.notifications.is_empty() {
            return Ok(CommitInfo {
                version: self.read_version,
                ts: self.inner.hlc.timestamp().as_u64(),
                first_position: self.snapshot_position + 1,
                last_position: self.snapshot_position,
            });
        }
        if self.inner.shutting_down.load(Ordering::Acquire) {
            return Err(Error::ShuttingDown);
        }
        let catalog_changed = writes.iter().any(|(k, _)| k.first() == Some(&CATALOG_TAG));
        let (lww, writes) = split_lww(&self.catalog, writes);
        if !lww.is_empty() {
            // A TRUNCATE of an empty raft table writes no key, yet its change record and
            // conflict checks belong to a raft commit.
            let raft_changes = self.changes.iter().any(|c| {
                self.catalog
                    .table_by_id(c.table_id)
                    .is_none_or(|t| t.consistency != Consistency::Lww)
            });
            if !writes.is_empty() || catalog_changed || raft_changes {
                return Err(Error::Unsupported {
                    feature: "a transaction that writes both lww tables and raft tables (or \
                              changes the schema)"
                        .into(),
                });
            }
            let rows = lww_rows(&self.reader, &self.catalog, lww)?;
            if rows.is_empty() && self.notifications.is_empty() {
                return Ok(CommitInfo {
                    version: self.read_version,
                    ts: self.inner.hlc.timestamp().as_u64(),
                    first_position: self.snapshot_position + 1,
                    last_position: self.snapshot_position,
                });
            }
            let path = self.inner.commit_path();
            return submit_lww(path, rows, self.notifications, self.origin).await;
        }
        let ws = WriteSet {
            read_version: self.base_version,
            writes,
            checks: self.checks.into_iter().collect(),
            touches: self.touches.into_iter().collect(),
            changes: self.changes,
            notifications: self.notifications,
            catalog_changed,
            max_rowid: self.max_rowid.load(Ordering::Relaxed),
            origin: self.origin,
            later: self.later.into_iter().collect(),
        };
        if let Some(r) = self.inner.replicator.get() {
            // Every replica decodes the change records itself when it applies the write set.
            return r.commit(ws).await;
        }
        submit(self.inner.commit_path(), ws, self.records).await
    }

    pub(crate) fn check_usable(&self) -> Result<()> {
        match &self.poisoned {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Puts `key → value` (`None`: delete) into the buffer, remembering what it replaces.
    pub(crate) fn write(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        let prev = self.reader.buf.write().insert(key.clone(), value);
        // A key already written (or checked) keeps the version it was first used under.
        if prev.is_none() && self.read_version != self.base_version && !self.checks.contains(&key) {
            self.later.entry(key.clone()).or_insert(self.read_version);
        }
        self.undo.push((key, prev));
    }

    /// Validates `key` at COMMIT: nobody changed it after the snapshot it was first used under.
    fn check(&mut self, key: Vec<u8>) {
        if self.read_version != self.base_version
            && !self.checks.contains(&key)
            && !self.reader.buf.read().contains_key(&key)
        {
            self.later.entry(key.clone()).or_insert(self.read_version);
        }
        self.checks.insert(key);
    }

    pub(crate) fn record(&mut self, change: EncodedChange, record: ChangeRecord) {
        self.changes.push(change);
        self.records.push(record);
    }

    /// Writing a table's rows depends on its definition (a concurrent DROP / ALTER conflicts)
    /// and marks the table as written (a concurrent ALTER / CREATE INDEX conflicts).
    pub(crate) fn note_table_write(&mut self, table: TableId) {
        self.check(layout::catalog_key(table));
        self.touches.insert(layout::table_write_key(table));
    }

    /// Changing a table's definition or all its rows requires that nobody wrote its rows since
    /// our snapshot.
    pub(crate) fn note_table_ddl(&mut self, table: TableId) {
        self.check(layout::table_write_key(table));
    }

    /// Queues a row write for the foreign-key checks if `table` takes part in one.
    pub(crate) fn note_ri(&mut self, table: TableId, old: Option<&Row>, new: Option<&Row>) {
        if self
            .ri_tables
            .as_ref()
            .is_none_or(|(c, _)| !Arc::ptr_eq(c, &self.catalog))
        {
            let mut set = std::collections::HashSet::new();
            for t in self.catalog.tables() {
                for f in &t.foreign_keys {
                    set.insert(t.id);
                    set.insert(f.ref_table);
                }
            }
            self.ri_tables = Some((Arc::clone(&self.catalog), set));
        }
        if self
            .ri_tables
            .as_ref()
            .is_some_and(|(_, set)| set.contains(&table))
        {
            self.ri.push(RiEvent {
                table,
                old: old.cloned(),
                new: new.cloned(),
            });
        }
    }

    /// The row writes queued for foreign-key checks since the last call, in write order.
    pub fn take_ri_events(&mut self) -> Vec<RiEvent> {
        std::mem::take(&mut self.ri)
    }

    /// Keeps a row write for the checks of deferred foreign keys, made at COMMIT.
    pub fn defer_ri(&mut self, event: RiEvent) {
        self.ri_deferred.push(event);
    }

    /// `SET CONSTRAINTS`: from now on in this transaction (a savepoint rolled back to undoes
    /// it), the foreign key `name` of `table`, or every deferrable one (`None`), is checked at
    /// COMMIT (`deferred`) or at the end of each statement.
    pub fn set_fk_mode(&mut self, key: Option<(TableId, String)>, deferred: bool) {
        self.fk_modes.push((key, deferred));
    }

    /// Whether the check of foreign key `fk` of table `table` waits for COMMIT: never if it is
    /// not DEFERRABLE; else as `SET CONSTRAINTS` last said, or as it was declared.
    pub fn fk_deferred(&self, table: TableId, fk: &ForeignKeyDef) -> bool {
        if !fk.deferrable {
            return false;
        }
        self.fk_modes
            .iter()
            .rev()
            .find(|(key, _)| {
                key.as_ref()
                    .is_none_or(|(t, name)| *t == table && *name == fk.name)
            })
            .map_or(fk.deferred, |(_, deferred)| *deferred)
    }

    /// The row writes kept for deferred foreign keys, in write order.
    pub fn take_deferred_ri(&mut self) -> Vec<RiEvent> {
        std::mem::take(&mut self.ri_deferred)
    }

    /// A row of this transaction references `key` of table `table`, which it found: the commit
    /// fails (40001) if another transaction made that key stop existing after this one's
    /// snapshot, and one that would make it stop existing later fails instead.
    pub fn fk_reference(&mut self, table: TableId, key: &[Value]) {
        let (gone, referenced) = layout::fk_keys(table, key);
        self.check(gone);
        self.touches.insert(referenced);
    }

    /// Key `key` of table `table` stops existing and this transaction found no row still
    /// referencing it (or dealt with them): the commit fails (40001) if another transaction
    /// made a row reference it after this one's snapshot, and one that would later fails.
    pub fn fk_release(&mut self, table: TableId, key: &[Value]) {
        let (gone, referenced) = layout::fk_keys(table, key);
        self.touches.insert(gone);
        self.check(referenced);
    }

    /// Recomputes the catalog from the snapshot's plus the catalog keys in the buffer.
    pub(crate) fn rebuild_catalog(&mut self) -> Result<()> {
        let mut catalog = (*self.base_catalog).clone();
        let buf = self.reader.buf.read();
        let start = vec![CATALOG_TAG];
        let end = vec![CATALOG_TAG + 1];
        for (key, value) in buf.range(start..end) {
            let id = key
                .get(1..5)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_be_bytes)
                .ok_or_else(|| Error::Corruption("short catalog key".into()))?;
            match value {
                Some(json) => {
                    let entry: CatalogEntry = serde_json::from_slice(json)
                        .map_err(|e| Error::Corruption(format!("catalog entry: {e}")))?;
                    catalog.entries.insert(id, entry);
                }
                None => {
                    catalog.entries.remove(&id);
                }
            }
        }
        drop(buf);
        self.catalog = Arc::new(catalog);
        Ok(())
    }

    pub(crate) fn set_catalog(&mut self, catalog: Catalog) {
        self.catalog = Arc::new(catalog);
    }
}

/// Splits a transaction's writes into rows of lww tables and the rest. Index entries of lww
/// tables are dropped: every node derives them from its merged rows.
fn split_lww(
    catalog: &Catalog,
    writes: Vec<BufferedWrite>,
) -> (Vec<BufferedWrite>, Vec<BufferedWrite>) {
    if !catalog.tables().any(|t| t.consistency == Consistency::Lww) {
        return (Vec::new(), writes);
    }
    let mut lww = Vec::new();
    let mut rest = Vec::new();
    for (key, value) in writes {
        let table = (key.first() == Some(&TABLE_TAG))
            .then(|| key.get(1..5).and_then(|b| <[u8; 4]>::try_from(b).ok()))
            .flatten()
            .map(u32::from_be_bytes)
            .and_then(|id| catalog.table_by_id(id))
            .filter(|t| t.consistency == Consistency::Lww);
        match table {
            Some(_) if key.get(5..9) == Some(&[0, 0, 0, 0][..]) => lww.push((key, value)),
            Some(_) => {}
            None => rest.push((key, value)),
        }
    }
    (lww, rest)
}

/// The row operations of a transaction's lww rows, each against the row in its snapshot.
fn lww_rows(
    reader: &TxnReader,
    catalog: &Catalog,
    writes: Vec<BufferedWrite>,
) -> Result<Vec<RowWrite>> {
    let mut rows = Vec::with_capacity(writes.len());
    for (key, new) in writes {
        let id = u32::from_be_bytes([key[1], key[2], key[3], key[4]]);
        let Some(table) = catalog.table_by_id(id) else {
            continue;
        };
        let stored = reader.snap.get(&key)?;
        let old = match &stored {
            Some(s) => layout::decode_value(s)?.1,
            None => None,
        };
        if let Some(op) = row_op(table, old, new.as_deref())? {
            rows.push(RowWrite { table: id, key, op });
        }
    }
    Ok(rows)
}

/// The catalog as of a snapshot whose counters are `state`: the published one, unless the
/// committer changed it between the snapshot and now (or has not yet published its change), then
/// the one read from the snapshot. On an error, the published one beside it.
fn catalog_at(
    inner: &Inner,
    snap: &OwnedSnapshot,
    state: &CommitState,
) -> std::result::Result<Arc<Catalog>, (Error, Arc<Catalog>)> {
    let current = inner.catalog.read().clone();
    if current.version == state.catalog_version {
        return Ok(current.catalog);
    }
    load_catalog_at(snap)
        .map(Arc::new)
        .map_err(|e| (e, current.catalog))
}

/// The commit counters as of the snapshot.
fn read_state(snap: &OwnedSnapshot) -> Result<CommitState> {
    match snap.get(META_COMMIT)? {
        Some(stored) => match layout::decode_value(&stored)? {
            (_, Some(payload)) => CommitState::decode(payload),
            (_, None) => Err(Error::Corruption("commit state is a tombstone".into())),
        },
        None => Ok(CommitState::default()),
    }
}
