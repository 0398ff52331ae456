//! Applying LWW writes on the committer thread: a local commit (versioned, logged in this node's
//! origin log, synced) and entries of another node's log (merged, position recorded, not synced:
//! a lost suffix is pulled again). Both merge cell by cell into the row state, then rewrite the
//! visible row, its index entries and a change record only when the visible row changed.
//!
//! ```text
//!   RowWrite ──state(version)──▶ merge into RowState (lww CF) ──changed?──▶ data row, index
//!                                                                          entries, change record
//! ```

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use hlc_gen::HlcTimestamp;
use tokio::sync::oneshot;
use tracing::{error, warn};

use crate::apply::ApplyBatch;
use crate::catalog::{Catalog, ColumnId, Consistency, IndexDef, IndexId, TableDef, TableId};
use crate::change::{decode_record, encode_record, ChangeOp, CommitEvent, EncodedChange};
use crate::codec::layout;
use crate::codec::row::RowDecoder;
use crate::committer::Committer;
use crate::dml::entries;
use crate::engine::{Engine, CF_DATA, CF_LWW};
use crate::error::{engine, Error, Result};
use crate::lww::{
    log_key, position_key, row_state_key, tomb_key, LwwEntry, NodeId, RowState, RowWrite, Version,
    KEY_HEAD, TAG_POSITION,
};
use crate::storage::CommitInfo;

/// A local commit to lww tables, waiting for the committer.
pub(crate) struct LwwRequest {
    pub rows: Vec<RowWrite>,
    pub notifications: Vec<(String, String)>,
    pub pid: u32,
    pub reply: oneshot::Sender<Result<CommitInfo>>,
}

/// Entries of another node's origin log to apply.
pub(crate) struct LwwRemoteRequest {
    pub origin: NodeId,
    pub entries: Vec<LwwEntry>,
    pub max_offset_ms: u64,
    pub reply: oneshot::Sender<Result<usize>>,
}

/// Row states received by a full sync of one table.
pub(crate) struct LwwMergeRequest {
    pub table: TableId,
    pub rows: Vec<(Vec<u8>, RowState)>,
    pub reply: oneshot::Sender<Result<()>>,
}

/// The LWW side of the committer: this node's origin log head and clock.
pub(crate) struct LwwClock {
    pub node: NodeId,
    /// Last seq written to this node's origin log.
    pub head: u64,
    /// Last LWW timestamp this node committed with.
    pub last_ts: u64,
    /// Test hook: milliseconds added to this node's clock for LWW commits.
    pub skew_ms: Arc<AtomicI64>,
    /// Published `head` (after the write): log readers wait on it.
    pub head_tx: tokio::sync::watch::Sender<u64>,
    /// Own log head and last timestamp readable without the committer.
    pub published_ts: Arc<AtomicU64>,
}

/// `h`: `head:u64be last_ts:u64be`.
pub(crate) fn encode_head(head: u64, ts: u64) -> Vec<u8> {
    let mut v = head.to_be_bytes().to_vec();
    v.extend_from_slice(&ts.to_be_bytes());
    v
}

pub(crate) fn decode_pair(b: &[u8]) -> Result<(u64, u64)> {
    if b.len() != 16 {
        return Err(Error::Corruption(format!(
            "lww counter pair of {} bytes",
            b.len()
        )));
    }
    Ok((layout::decode_u64(&b[..8])?, layout::decode_u64(&b[8..])?))
}

/// `(head, last_ts)` of this node's origin log as stored.
pub(crate) fn read_head(engine: &Engine) -> Result<(u64, u64)> {
    let cf = engine.cf(CF_LWW)?;
    match engine.db.get_cf(&cf, KEY_HEAD).map_err(engine_err)? {
        Some(b) => decode_pair(&b),
        None => Ok((0, 0)),
    }
}

/// `(seq, ts)` of the last entry applied from `origin`.
pub(crate) fn read_position(engine: &Engine, origin: NodeId) -> Result<(u64, u64)> {
    let cf = engine.cf(CF_LWW)?;
    match engine
        .db
        .get_cf(&cf, position_key(origin))
        .map_err(engine_err)?
    {
        Some(b) => decode_pair(&b),
        None => Ok((0, 0)),
    }
}

/// Highest timestamp applied from any peer's log (each position records its origin's). The HLC
/// restarts above it, so a local write after a restart still outranks what was received before.
pub(crate) fn read_received_ts(engine: &Engine) -> Result<u64> {
    let cf = engine.cf(CF_LWW)?;
    let mut opts = rocksdb::ReadOptions::default();
    opts.set_iterate_upper_bound(vec![TAG_POSITION + 1]);
    let mut it = engine.db.raw_iterator_cf_opt(&cf, opts);
    it.seek([TAG_POSITION]);
    let mut max = 0;
    while it.valid() {
        if let Some(v) = it.value() {
            max = max.max(decode_pair(v)?.1);
        }
        it.next();
    }
    it.status().map_err(engine_err)?;
    Ok(max)
}

fn engine_err(e: rocksdb::Error) -> Error {
    engine(e)
}

impl ApplyBatch<'_> {
    fn lww_state(&self, key: &[u8]) -> Result<RowState> {
        if let Some(s) = self.lww.get(key) {
            return Ok(s.clone());
        }
        let engine = self.engine();
        let cf = engine.cf(CF_LWW)?;
        match engine
            .db
            .get_cf(&cf, row_state_key(key))
            .map_err(engine_err)?
        {
            Some(b) => RowState::decode(&b),
            None => Ok(RowState::default()),
        }
    }

    fn put_lww(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let cf = self.engine().cf(CF_LWW)?;
        self.raw().put_cf(&cf, key, value);
        Ok(())
    }

    /// Merges `incoming` into the row `key` of `table`. Returns the change of the visible row,
    /// if it changed. Rows of tables that are gone (or not lww) are skipped.
    pub(crate) fn merge_lww(
        &mut self,
        catalog: &Catalog,
        table: TableId,
        key: &[u8],
        incoming: &RowState,
    ) -> Result<Option<EncodedChange>> {
        let Some(def) = catalog
            .table_by_id(table)
            .filter(|t| t.consistency == Consistency::Lww)
        else {
            return Ok(None);
        };
        if !key.starts_with(&layout::index_prefix(table, 0)) {
            return Err(Error::Corruption(format!(
                "lww row key does not belong to table {table}"
            )));
        }
        let current = self.lww_state(key)?;
        let mut next = current.clone();
        next.merge(incoming);
        if next == current {
            return Ok(None);
        }
        self.put_lww(&row_state_key(key), &next.encode())?;
        if !next.is_live() && next.tomb > current.tomb {
            self.put_lww(&tomb_key(next.tomb.ts, key), &[])?;
        }
        let before = current.payload();
        let after = next.payload();
        self.lww.insert(key.to_vec(), next);
        if before == after {
            return Ok(None);
        }
        let data = self.engine().cf(CF_DATA)?;
        let version = self.state.version;
        match &after {
            Some(p) => self
                .raw()
                .put_cf(&data, key, layout::encode_value(version, Some(p))),
            None => self.raw().delete_cf(&data, key),
        }
        if !def.indexes.is_empty() {
            self.rewrite_index_entries(def, key, before.as_deref(), after.as_deref())?;
        }
        let op = match (&before, &after) {
            (None, Some(_)) => ChangeOp::Insert,
            (Some(_), Some(_)) => ChangeOp::Update,
            (Some(_), None) => ChangeOp::Delete,
            (None, None) => return Ok(None),
        };
        Ok(Some(EncodedChange {
            table_id: table,
            op,
            old: before,
            new: after,
        }))
    }

    fn rewrite_index_entries(
        &mut self,
        def: &TableDef,
        key: &[u8],
        before: Option<&[u8]>,
        after: Option<&[u8]>,
    ) -> Result<()> {
        let decoder = RowDecoder::new(def, None)?;
        let pk = &key[layout::INDEX_PREFIX_LEN..];
        let old = match before {
            Some(b) => entries(def, &decoder.decode(b)?, pk)?
                .into_iter()
                .flatten()
                .collect(),
            None => Vec::new(),
        };
        let new = match after {
            Some(a) => entries(def, &decoder.decode(a)?, pk)?
                .into_iter()
                .flatten()
                .collect(),
            None => Vec::new(),
        };
        let data = self.engine().cf(CF_DATA)?;
        let version = self.state.version;
        for o in &old {
            if !new.iter().any(|n| n.key == o.key) {
                self.raw().delete_cf(&data, &o.key);
            }
        }
        for n in &new {
            if !old.iter().any(|o| o.key == n.key && o.value == n.value) {
                self.raw()
                    .put_cf(&data, &n.key, layout::encode_value(version, Some(&n.value)));
            }
        }
        Ok(())
    }

    /// Merges every row of one commit at `version`; the visible changes in order.
    fn merge_entry_rows(
        &mut self,
        catalog: &Catalog,
        version: Version,
        rows: &[RowWrite],
    ) -> Result<Vec<EncodedChange>> {
        let mut changes = Vec::new();
        for w in rows {
            if let Some(c) = self.merge_lww(catalog, w.table, &w.key, &w.state(version))? {
                changes.push(c);
            }
        }
        Ok(changes)
    }
}

/// What one applied LWW commit publishes.
pub(crate) struct LwwApplied {
    pub ts: u64,
    pub changes: Vec<EncodedChange>,
    pub first_position: u64,
    pub notifications: Vec<(String, String)>,
    pub pid: u32,
}

impl Committer {
    /// A version for a local LWW commit: the HLC (advanced past every version received), raised
    /// by the test hook's skew if one is set.
    fn lww_next_ts(&mut self) -> u64 {
        let skew = self.lww.skew_ms.load(Ordering::Relaxed);
        if skew != 0 {
            let now = chrono_now_ms().saturating_add(skew);
            if let Ok(t) = HlcTimestamp::from_parts(now, 0) {
                let _ = self.hlc.update(&t);
            }
        }
        let ts = self.hlc.next_timestamp().map_or(0, |t| t.as_u64());
        let ts = ts.max(self.lww.last_ts + 1);
        self.lww.last_ts = ts;
        ts
    }

    /// Stages a local LWW commit into `batch`: checks its tables are still lww tables, versions
    /// it, merges it, appends it to the origin log.
    pub(crate) fn stage_local_lww(
        &mut self,
        batch: &mut ApplyBatch<'_>,
        catalog: &Catalog,
        req: &mut LwwRequest,
    ) -> Result<LwwApplied> {
        for w in &req.rows {
            match catalog.table_by_id(w.table) {
                Some(t) if t.consistency == Consistency::Lww => {}
                _ => {
                    return Err(Error::SerializationFailure {
                        detail: format!(
                            "table {} was dropped or changed by a concurrent transaction",
                            w.table
                        ),
                    })
                }
            }
        }
        let ts = self.lww_next_ts();
        let seq = self.lww.head + 1;
        let entry = LwwEntry {
            origin: self.lww.node,
            seq,
            ts,
            catalog_version: batch.state.catalog_version,
            rows: std::mem::take(&mut req.rows),
            notifications: std::mem::take(&mut req.notifications),
            pid: req.pid,
        };
        let changes = batch.merge_entry_rows(catalog, entry.version(), &entry.rows)?;
        batch.put_lww(&log_key(seq), &entry.encode())?;
        batch.put_lww(KEY_HEAD, &encode_head(seq, ts))?;
        self.lww.head = seq;
        let first_position = batch.stage_changes(ts, &changes)?;
        Ok(LwwApplied {
            ts,
            changes,
            first_position,
            notifications: entry.notifications,
            pid: entry.pid,
        })
    }

    /// After the batch holding local LWW commits is written: readers of the log may go on.
    pub(crate) fn lww_published(&self) {
        self.lww.head_tx.send_replace(self.lww.head);
        self.lww
            .published_ts
            .store(self.lww.last_ts, Ordering::Release);
    }

    /// Publishes one applied LWW commit on the change stream.
    pub(crate) fn publish_lww(&self, applied: LwwApplied, catalog: &Catalog) {
        let mut records = Vec::with_capacity(applied.changes.len());
        for (i, c) in applied.changes.iter().enumerate() {
            let position = applied.first_position + i as u64;
            match decode_record(position, &encode_record(applied.ts, c), catalog) {
                Ok(r) => records.push(r),
                Err(e) => warn!(error = %e, position, "cannot decode an lww change"),
            }
        }
        let event = CommitEvent {
            version: self.state.version,
            ts: applied.ts,
            changes: records,
            notifications: applied.notifications,
            catalog_changed: false,
            origin: applied.pid,
            reset: false,
            seq: 0,
        };
        self.events.send(event);
    }

    /// Applies entries of `origin`'s log after the position recorded for it, in one batch with
    /// the new position. Refuses all of them if one is too far ahead of this node's clock. Stops
    /// before an entry written against a catalog this node has not applied yet.
    pub(crate) fn apply_lww_remote(&mut self, req: LwwRemoteRequest) {
        let result = self.apply_lww_remote_batch(&req);
        let _ = req.reply.send(result);
    }

    fn apply_lww_remote_batch(&mut self, req: &LwwRemoteRequest) -> Result<usize> {
        let now = chrono_now_ms();
        for e in &req.entries {
            let ms = crate::change::hlc_unix_millis(e.ts).unwrap_or(i64::MAX);
            let ahead = ms.saturating_sub(now);
            if ahead > req.max_offset_ms as i64 {
                return Err(Error::ClockAhead {
                    node: req.origin,
                    ahead_ms: ahead,
                    max_ms: req.max_offset_ms,
                });
            }
        }
        let (mut seq, mut last_ts) = read_position(&self.engine, req.origin)?;
        let catalog = self.catalog.read().catalog.clone();
        let mut batch = ApplyBatch::new(&self.engine, self.state);
        let mut applied = Vec::new();
        for e in &req.entries {
            if e.origin != req.origin {
                return Err(Error::InvalidArgument(format!(
                    "entry of node {} in node {}'s log",
                    e.origin, req.origin
                )));
            }
            if e.seq <= seq {
                continue;
            }
            if e.seq != seq + 1 {
                return Err(Error::InvalidArgument(format!(
                    "node {}'s log jumps from {seq} to {}",
                    req.origin, e.seq
                )));
            }
            if e.catalog_version > batch.state.catalog_version {
                break;
            }
            let changes = batch.merge_entry_rows(&catalog, e.version(), &e.rows)?;
            let first_position = batch.stage_changes(e.ts, &changes)?;
            seq = e.seq;
            last_ts = last_ts.max(e.ts);
            applied.push(LwwApplied {
                ts: e.ts,
                changes,
                first_position,
                notifications: e.notifications.clone(),
                pid: e.pid,
            });
        }
        if applied.is_empty() {
            return Ok(0);
        }
        batch.put_lww(&position_key(req.origin), &encode_head(seq, last_ts))?;
        self.state = batch.write(false)?;
        self.last_position
            .store(self.state.position, Ordering::Release);
        if let Ok(ts) = HlcTimestamp::try_from(last_ts) {
            // A local overwrite after this gets a higher version than anything received.
            let _ = self.hlc.update(&ts);
        }
        let n = applied.len();
        for a in applied {
            self.publish_lww(a, &catalog);
        }
        Ok(n)
    }

    /// Merges row states received by a full sync and records a reset of the table in the change
    /// log (its live queries push `{"op":"reset"}` rather than leave a silent gap).
    pub(crate) fn merge_lww_rows(&mut self, req: LwwMergeRequest) {
        let result = self.merge_lww_rows_batch(&req);
        if let Err(e) = &result {
            error!(error = %e, table = req.table, "merging a full sync failed");
        }
        let _ = req.reply.send(result);
    }

    fn merge_lww_rows_batch(&mut self, req: &LwwMergeRequest) -> Result<()> {
        let catalog = self.catalog.read().catalog.clone();
        let mut batch = ApplyBatch::new(&self.engine, self.state);
        let mut max_ts = 0;
        for (key, state) in &req.rows {
            batch.merge_lww(&catalog, req.table, key, state)?;
            max_ts = max_ts.max(state.max_version().ts);
        }
        let ts = self.hlc.next_timestamp().map_or(0, |t| t.as_u64());
        let reset = EncodedChange {
            table_id: req.table,
            op: ChangeOp::Truncate,
            old: None,
            new: None,
        };
        let first_position = batch.stage_changes(ts, std::slice::from_ref(&reset))?;
        self.state = batch.write(false)?;
        self.last_position
            .store(self.state.position, Ordering::Release);
        if let Ok(t) = HlcTimestamp::try_from(max_ts) {
            let _ = self.hlc.update(&t);
        }
        self.publish_lww(
            LwwApplied {
                ts,
                changes: vec![reset],
                first_position,
                notifications: Vec::new(),
                pid: 0,
            },
            &catalog,
        );
        Ok(())
    }
}

/// Wall-clock Unix milliseconds.
pub(crate) fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `lww` CF key written with every catalog change and deleted once the lww data was brought in
/// line with it: found at startup, a crash came in between, and `reconcile_all` runs.
pub(crate) const RECONCILE_MARK: &[u8] = b"n";

/// What an index's entries are made of: its id, the ids of its columns (positions shift when an
/// earlier column is dropped, ids do not) and uniqueness. Index ids are reused (`max + 1`), so
/// one transaction may drop an index and create another under its id.
fn index_shape(table: &TableDef, index: &IndexDef) -> (IndexId, Vec<Option<ColumnId>>, bool) {
    let columns = index
        .columns
        .iter()
        .map(|&p| table.columns.get(p).map(|c| c.id))
        .collect();
    (index.id, columns, index.unique)
}

/// Brings this node's lww data in line with a catalog change (replicated by Raft, so every node
/// does it for its own rows): a dropped lww table's rows, states and index entries are deleted,
/// a new index is built from the rows, a dropped index's entries are deleted. Synced.
pub(crate) fn reconcile_lww(engine: &Engine, old: &Catalog, new: &Catalog) -> Result<()> {
    let data = engine.cf(CF_DATA)?;
    let lww = engine.cf(CF_LWW)?;
    let mut batch = rocksdb::WriteBatch::default();
    for before in old.tables().filter(|t| t.consistency == Consistency::Lww) {
        match new.table_by_id(before.id) {
            None => delete_table(&mut batch, engine, before.id)?,
            Some(after) => {
                for idx in &before.indexes {
                    let shape = index_shape(before, idx);
                    if !after.indexes.iter().any(|i| index_shape(after, i) == shape) {
                        let p = layout::index_prefix(before.id, idx.id);
                        let e = layout::prefix_end(&p).unwrap_or_default();
                        batch.delete_range_cf(&data, &p, &e);
                    }
                }
            }
        }
    }
    for after in new.tables().filter(|t| t.consistency == Consistency::Lww) {
        let known: Vec<_> = old
            .table_by_id(after.id)
            .map(|t| t.indexes.iter().map(|i| index_shape(t, i)).collect())
            .unwrap_or_default();
        let added: Vec<_> = after
            .indexes
            .iter()
            .filter(|i| !known.contains(&index_shape(after, i)))
            .collect();
        build_indexes(&mut batch, engine, after, &added)?;
    }
    batch.delete_cf(&lww, RECONCILE_MARK);
    let mut opts = rocksdb::WriteOptions::default();
    opts.set_sync(true);
    engine.db.write_opt(batch, &opts).map_err(engine_err)
}

/// After a crash between a catalog change and its `reconcile_lww`: rebuilds every index of every
/// lww table and deletes the rows of lww tables that are gone.
pub(crate) fn reconcile_all(engine: &Engine, catalog: &Catalog) -> Result<()> {
    let lww = engine.cf(CF_LWW)?;
    if engine
        .db
        .get_cf(&lww, RECONCILE_MARK)
        .map_err(engine_err)?
        .is_none()
    {
        return Ok(());
    }
    let data = engine.cf(CF_DATA)?;
    let mut batch = rocksdb::WriteBatch::default();
    // Tables with lww row states that are no longer lww tables.
    let mut seen = std::collections::BTreeSet::new();
    let mut it = engine.db.raw_iterator_cf(&lww);
    it.seek(row_state_key(&[layout::TABLE_TAG]));
    while it.valid() {
        let Some(k) = it.key() else { break };
        if k.len() < 6 || k[0] != crate::lww::TAG_ROW || k[1] != layout::TABLE_TAG {
            break;
        }
        let id = u32::from_be_bytes([k[2], k[3], k[4], k[5]]);
        seen.insert(id);
        // Skip to the next table.
        it.seek(row_state_key(
            &layout::prefix_end(&layout::table_prefix(id)).unwrap_or_default(),
        ));
    }
    it.status().map_err(engine_err)?;
    drop(it);
    for id in seen {
        let lww_table = catalog
            .table_by_id(id)
            .is_some_and(|t| t.consistency == Consistency::Lww);
        if !lww_table {
            delete_table(&mut batch, engine, id)?;
        }
    }
    for t in catalog
        .tables()
        .filter(|t| t.consistency == Consistency::Lww)
    {
        for idx in &t.indexes {
            let p = layout::index_prefix(t.id, idx.id);
            let e = layout::prefix_end(&p).unwrap_or_default();
            batch.delete_range_cf(&data, &p, &e);
        }
        let all: Vec<_> = t.indexes.iter().collect();
        build_indexes(&mut batch, engine, t, &all)?;
    }
    batch.delete_cf(&lww, RECONCILE_MARK);
    let mut opts = rocksdb::WriteOptions::default();
    opts.set_sync(true);
    engine.db.write_opt(batch, &opts).map_err(engine_err)
}

/// Stages the deletion of an lww table's rows, index entries and row states.
fn delete_table(batch: &mut rocksdb::WriteBatch, engine: &Engine, id: TableId) -> Result<()> {
    let data = engine.cf(CF_DATA)?;
    let lww = engine.cf(CF_LWW)?;
    let prefix = layout::table_prefix(id);
    let end = layout::prefix_end(&prefix).unwrap_or_default();
    batch.delete_range_cf(&data, &prefix, &end);
    batch.delete_range_cf(&lww, row_state_key(&prefix), row_state_key(&end));
    Ok(())
}

/// Stages the entries of `indexes` for every row of `table` as stored now.
fn build_indexes(
    batch: &mut rocksdb::WriteBatch,
    engine: &Engine,
    table: &TableDef,
    indexes: &[&crate::catalog::IndexDef],
) -> Result<()> {
    if indexes.is_empty() {
        return Ok(());
    }
    let data = engine.cf(CF_DATA)?;
    let decoder = RowDecoder::new(table, None)?;
    let prefix = layout::index_prefix(table.id, 0);
    let end = layout::prefix_end(&prefix).unwrap_or_default();
    let mut opts = rocksdb::ReadOptions::default();
    opts.set_iterate_upper_bound(end);
    let mut it = engine.db.raw_iterator_cf_opt(&data, opts);
    it.seek(&prefix);
    while it.valid() {
        if let (Some(k), Some(v)) = (it.key(), it.value()) {
            if let (version, Some(payload)) = layout::decode_value(v)? {
                let row = decoder.decode(payload)?;
                let pk = &k[layout::INDEX_PREFIX_LEN..];
                for idx in indexes {
                    let Some(e) = crate::index::entry(table, idx, &row, pk)? else {
                        continue;
                    };
                    batch.put_cf(&data, &e.key, layout::encode_value(version, Some(&e.value)));
                }
            }
        }
        it.next();
    }
    it.status().map_err(engine_err)
}
