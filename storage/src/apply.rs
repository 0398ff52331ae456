//! Write sets and the deterministic function that applies them.
//!
//! `apply` validates a write set against the database plus everything staged earlier in the same
//! batch and, if no key it writes or checks carries a version newer than its `read_version`,
//! stages its writes, change records and counters. The single-node committer calls it with
//! consecutive versions; a Raft state machine will call it with the log index as the version.
//!
//! ```text
//!   WriteSet ──validate──▶ conflict? ──yes──▶ SerializationFailure (nothing staged)
//!                              │no
//!                              ▼
//!   stage data (header: version, live/tombstone) + changes (by position) + counters
//!                              │  … more write sets …
//!                              ▼
//!   ApplyBatch::write ── one RocksDB WriteBatch ──▶ DB
//! ```

use std::collections::HashMap;

use rocksdb::{WriteBatch, WriteOptions};
use serde::{Deserialize, Serialize};

use crate::change::{encode_record, EncodedChange};
use crate::codec::layout::{self, META_COMMIT, META_ROWID};
use crate::engine::{Engine, CF_CHANGES, CF_DATA};
use crate::error::{engine, Error, Result};

/// Everything a transaction changes, in a form that can be shipped (e.g. in a Raft entry) and
/// applied deterministically.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WriteSet {
    /// Last commit version visible to the transaction's snapshot.
    pub read_version: u64,
    /// `data` key → payload, or `None` for a delete (a tombstone). Sorted by key.
    pub writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Keys the transaction depends on but does not write (the catalog entries of the tables it
    /// wrote, the write markers of tables it altered).
    pub checks: Vec<Vec<u8>>,
    /// Keys stamped with the commit version without being validated (a table's write marker).
    pub touches: Vec<Vec<u8>>,
    /// Row changes in statement order.
    pub changes: Vec<EncodedChange>,
    /// `(channel, payload)` of NOTIFY, deduplicated.
    pub notifications: Vec<(String, String)>,
    pub catalog_changed: bool,
    /// Highest hidden-row-id counter value the transaction handed out (0: none).
    pub max_rowid: u64,
    /// Who committed it on the origin node (the backend pid of the session), for the sender pid
    /// of notifications; 0 when unknown.
    #[serde(default)]
    pub origin: u32,
}

impl WriteSet {
    pub fn is_read_only(&self) -> bool {
        self.writes.is_empty() && self.notifications.is_empty() && self.changes.is_empty()
    }
}

/// The counters every commit advances, stored under `META_COMMIT` (and `META_ROWID`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitState {
    pub version: u64,
    pub position: u64,
    /// Version of the last commit that changed the catalog.
    pub catalog_version: u64,
    /// HLC timestamp of the last commit.
    pub ts: u64,
    /// Highest hidden-row-id counter value committed.
    pub rowid: u64,
}

impl CommitState {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(32);
        for n in [self.version, self.position, self.catalog_version, self.ts] {
            v.extend_from_slice(&n.to_be_bytes());
        }
        v
    }

    /// Decodes the `META_COMMIT` payload; `rowid` is read separately.
    pub fn decode(b: &[u8]) -> Result<CommitState> {
        if b.len() != 32 {
            return Err(Error::Corruption(format!(
                "commit state of {} bytes",
                b.len()
            )));
        }
        let n = |i: usize| layout::decode_u64(&b[i * 8..i * 8 + 8]);
        Ok(CommitState {
            version: n(0)?,
            position: n(1)?,
            catalog_version: n(2)?,
            ts: n(3)?,
            rowid: 0,
        })
    }
}

/// What one applied write set was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub version: u64,
    pub ts: u64,
    /// Position of the first change record; `last_position + 1` when there are none.
    pub first_position: u64,
    pub last_position: u64,
}

/// Write sets staged into one atomic RocksDB write.
pub struct ApplyBatch<'a> {
    engine: &'a Engine,
    batch: WriteBatch,
    /// Versions of keys staged earlier in this batch; they shadow the database.
    staged: HashMap<Vec<u8>, u64>,
    pub(crate) state: CommitState,
    rowid_dirty: bool,
    /// LWW row states staged earlier in this batch, by `data` key; they shadow the `lww` CF.
    pub(crate) lww: HashMap<Vec<u8>, crate::lww::RowState>,
}

impl<'a> ApplyBatch<'a> {
    pub(crate) fn new(engine: &'a Engine, state: CommitState) -> ApplyBatch<'a> {
        ApplyBatch {
            engine,
            batch: WriteBatch::default(),
            staged: HashMap::new(),
            state,
            rowid_dirty: false,
            lww: HashMap::new(),
        }
    }

    /// Counters after everything applied so far.
    pub fn state(&self) -> CommitState {
        self.state
    }

    /// Writes the batch with the counters; `sync` makes RocksDB fsync its WAL before returning.
    pub(crate) fn write(mut self, sync: bool) -> Result<CommitState> {
        let data = self.engine.cf(CF_DATA)?;
        let meta = layout::encode_value(self.state.version, Some(&self.state.encode()));
        self.batch.put_cf(&data, META_COMMIT, meta);
        if self.rowid_dirty {
            let rowid = layout::encode_u64(self.state.rowid);
            let stored = layout::encode_value(self.state.version, Some(&rowid));
            self.batch.put_cf(&data, META_ROWID, stored);
        }
        let mut opts = WriteOptions::default();
        // Durability: with sync the WAL is fsynced before we acknowledge, so an acknowledged
        // commit survives kill -9 and power loss; without it (tests, benchmarks) only a crash of
        // this process is survived.
        opts.set_sync(sync);
        self.engine
            .db
            .write_opt(self.batch, &opts)
            .map_err(engine)?;
        Ok(self.state)
    }

    /// Stages `key → value` (a replication layer's state, an applied request id), stamped with
    /// the batch's current version.
    pub(crate) fn stage_meta(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let data = self.engine.cf(CF_DATA)?;
        let stored = layout::encode_value(self.state.version, Some(value));
        self.batch.put_cf(&data, key, stored);
        Ok(())
    }

    /// Stages the deletion of `data` keys in `[from, to)`.
    pub(crate) fn stage_delete_range(&mut self, from: &[u8], to: &[u8]) -> Result<()> {
        let data = self.engine.cf(CF_DATA)?;
        self.batch.delete_range_cf(&data, from, to);
        Ok(())
    }

    /// Stages change records at the next positions; returns the first one.
    pub(crate) fn stage_changes(&mut self, ts: u64, changes: &[EncodedChange]) -> Result<u64> {
        let cf = self.engine.cf(CF_CHANGES)?;
        let first_position = self.state.position + 1;
        for (i, change) in changes.iter().enumerate() {
            let position = first_position + i as u64;
            self.batch
                .put_cf(&cf, position.to_be_bytes(), encode_record(ts, change));
        }
        self.state.position += changes.len() as u64;
        Ok(first_position)
    }

    pub(crate) fn engine(&self) -> &'a Engine {
        self.engine
    }

    pub(crate) fn raw(&mut self) -> &mut WriteBatch {
        &mut self.batch
    }

    fn current_version(&self, key: &[u8]) -> Result<Option<u64>> {
        if let Some(v) = self.staged.get(key) {
            return Ok(Some(*v));
        }
        match self.engine.get_latest(key)? {
            Some(stored) => Ok(Some(layout::decode_value(&stored)?.0)),
            None => Ok(None),
        }
    }
}

/// Validates `ws` and, if it does not conflict, stages it into `batch` as commit `version` at HLC
/// time `ts`. On conflict returns `SerializationFailure` and stages nothing.
pub fn apply(batch: &mut ApplyBatch<'_>, ws: &WriteSet, version: u64, ts: u64) -> Result<Applied> {
    if version <= batch.state.version {
        return Err(Error::InvalidArgument(format!(
            "commit version {version} does not follow {}",
            batch.state.version
        )));
    }
    let keys = ws.writes.iter().map(|(k, _)| k).chain(ws.checks.iter());
    for key in keys {
        if let Some(v) = batch.current_version(key)? {
            if v > ws.read_version {
                return Err(Error::SerializationFailure {
                    detail: format!(
                        "a row or catalog object this transaction uses was changed by commit {v}, \
                         after its snapshot at {}",
                        ws.read_version
                    ),
                });
            }
        }
    }

    let data = batch.engine.cf(CF_DATA)?;
    for (key, payload) in &ws.writes {
        let stored = layout::encode_value(version, payload.as_deref());
        batch.batch.put_cf(&data, key, stored);
        batch.staged.insert(key.clone(), version);
    }
    for key in &ws.touches {
        batch
            .batch
            .put_cf(&data, key, layout::encode_value(version, Some(&[])));
        batch.staged.insert(key.clone(), version);
    }
    let first_position = batch.stage_changes(ts, &ws.changes)?;
    batch.state.version = version;
    batch.state.ts = batch.state.ts.max(ts);
    if ws.catalog_changed {
        batch.state.catalog_version = version;
        // Until the lww data is brought in line with the new catalog (`reconcile_lww`).
        let lww = batch.engine.cf(crate::engine::CF_LWW)?;
        batch
            .batch
            .put_cf(&lww, crate::lww_apply::RECONCILE_MARK, []);
    }
    if ws.max_rowid > batch.state.rowid {
        batch.state.rowid = ws.max_rowid;
        batch.rowid_dirty = true;
    }
    Ok(Applied {
        version,
        ts,
        first_position,
        last_position: batch.state.position,
    })
}
