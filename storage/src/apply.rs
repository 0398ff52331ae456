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
    /// Keys validated against a later snapshot than `read_version` (READ COMMITTED statements),
    /// with that snapshot's version. Sorted by key.
    #[serde(default)]
    pub later: Vec<(Vec<u8>, u64)>,
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
    /// Tombstones of commits before this HLC time are forgotten (`purge_tombstones`).
    pub gc_ts: u64,
    /// The highest version of a forgotten tombstone: a write set whose snapshot is older cannot
    /// tell whether a key it finds missing was deleted after its snapshot, so it is refused.
    pub gc_version: u64,
}

impl CommitState {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(48);
        for n in [
            self.version,
            self.position,
            self.catalog_version,
            self.ts,
            self.gc_ts,
            self.gc_version,
        ] {
            v.extend_from_slice(&n.to_be_bytes());
        }
        v
    }

    /// Decodes the `META_COMMIT` payload (32 bytes before tombstones were forgotten, 48 since);
    /// `rowid` is read separately.
    pub fn decode(b: &[u8]) -> Result<CommitState> {
        if b.len() != 32 && b.len() != 48 {
            return Err(Error::Corruption(format!(
                "commit state of {} bytes",
                b.len()
            )));
        }
        let n = |i: usize| -> Result<u64> {
            match b.get(i * 8..i * 8 + 8) {
                Some(x) => layout::decode_u64(x),
                None => Ok(0),
            }
        };
        Ok(CommitState {
            version: n(0)?,
            position: n(1)?,
            catalog_version: n(2)?,
            ts: n(3)?,
            rowid: 0,
            gc_ts: n(4)?,
            gc_version: n(5)?,
        })
    }
}

/// How long a deleted key's tombstone is kept, in HLC units (10 minutes of commit time). A
/// tombstone is what lets a transaction that read the key earlier learn, at commit, that it was
/// deleted since; a write set whose snapshot is older than the forgotten tombstones is refused
/// with 40001 when it finds a key missing (see `CommitState::gc_version`).
pub const TOMBSTONE_WINDOW: u64 = (10 * 60 * 1000) << 22;

/// Tombstones are forgotten when a commit's HLC time enters a new bucket of 2^38 units (about 65
/// seconds): decided by the commits' timestamps alone, so every Raft replica forgets the same
/// tombstones at the same log entry, however its entries are grouped into batches.
const GC_BUCKET_SHIFT: u32 = 38;

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
    /// Tombstones staged in this batch: (HLC time, `data` key, version); not yet in the
    /// database's tombstone queue, so a purge later in the batch finds them here.
    tombs: Vec<(u64, Vec<u8>, u64)>,
    /// Keys whose tombstone a purge in this batch deleted; they shadow the database.
    gone: std::collections::HashSet<Vec<u8>>,
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
            tombs: Vec::new(),
            gone: std::collections::HashSet::new(),
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
        if self.gone.contains(key) {
            return Ok(None);
        }
        match self.engine.get_latest(key)? {
            Some(stored) => Ok(Some(layout::decode_value(&stored)?.0)),
            None => Ok(None),
        }
    }

    /// Whether `key` is, as of this batch, the tombstone written at `version`.
    fn is_tombstone_of(&self, key: &[u8], version: u64) -> Result<bool> {
        if let Some(v) = self.staged.get(key) {
            // Staged in this batch: the tombstone itself if the versions match (a later write
            // of the key has a later version).
            return Ok(*v == version);
        }
        if self.gone.contains(key) {
            return Ok(false);
        }
        match self.engine.get_latest(key)? {
            Some(stored) => {
                let (v, payload) = layout::decode_value(&stored)?;
                Ok(v == version && payload.is_none())
            }
            None => Ok(false),
        }
    }
}

/// Forgets the tombstones written before HLC time `horizon`: each queued one that is still the
/// key's latest value is deleted, and `gc_version` rises to the newest of them. Deterministic:
/// it reads the replicated state only (the database plus this batch).
fn purge_tombstones(batch: &mut ApplyBatch<'_>, horizon: u64) -> Result<()> {
    if horizon <= batch.state.gc_ts {
        return Ok(());
    }
    let from = layout::tomb_queue_bound(batch.state.gc_ts);
    let to = layout::tomb_queue_bound(horizon);
    let data = batch.engine.cf(CF_DATA)?;
    let mut queued: Vec<(Vec<u8>, u64)> = Vec::new();
    {
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_iterate_upper_bound(to.clone());
        let mut it = batch.engine.db.raw_iterator_cf_opt(&data, opts);
        it.seek(&from);
        while it.valid() {
            if let (Some(k), Some(v)) = (it.key(), it.value()) {
                let version = match layout::decode_value(v)? {
                    (_, Some(payload)) => layout::decode_u64(payload)?,
                    (_, None) => 0,
                };
                queued.push((layout::tomb_queue_data_key(k).to_vec(), version));
            }
            it.next();
        }
        it.status().map_err(engine)?;
    }
    let (old, young): (Vec<_>, Vec<_>) = std::mem::take(&mut batch.tombs)
        .into_iter()
        .partition(|(ts, _, _)| *ts < horizon);
    batch.tombs = young;
    queued.extend(old.into_iter().map(|(_, key, version)| (key, version)));
    for (key, version) in queued {
        if version == 0 || !batch.is_tombstone_of(&key, version)? {
            continue;
        }
        batch.batch.delete_cf(&data, &key);
        batch.staged.remove(&key);
        batch.gone.insert(key);
        batch.state.gc_version = batch.state.gc_version.max(version);
    }
    // The batch's own queue entries before `horizon` are covered too (a range deletion applies
    // to what the batch put before it).
    batch.batch.delete_range_cf(&data, &from, &to);
    batch.state.gc_ts = horizon;
    Ok(())
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
        let read_version = match ws.later.binary_search_by(|(k, _)| k.as_slice().cmp(key)) {
            Ok(i) => ws.later[i].1,
            Err(_) => ws.read_version,
        };
        match batch.current_version(key)? {
            Some(v) if v > read_version => {
                return Err(Error::SerializationFailure {
                    detail: format!(
                        "a row or catalog object this transaction uses was changed by commit {v}, \
                         after its snapshot at {read_version}"
                    ),
                });
            }
            // The key may have been deleted after the snapshot, its tombstone since forgotten.
            None if read_version < batch.state.gc_version => {
                return Err(Error::SerializationFailure {
                    detail: format!(
                        "the transaction's snapshot at commit {read_version} is older than the \
                         deleted rows forgotten since (up to commit {})",
                        batch.state.gc_version
                    ),
                });
            }
            _ => {}
        }
    }

    let data = batch.engine.cf(CF_DATA)?;
    for (key, payload) in &ws.writes {
        let stored = layout::encode_value(version, payload.as_deref());
        batch.batch.put_cf(&data, key, stored);
        batch.staged.insert(key.clone(), version);
        batch.gone.remove(key);
        if payload.is_none() {
            let queued = layout::encode_value(version, Some(&version.to_be_bytes()));
            batch
                .batch
                .put_cf(&data, layout::tomb_queue_key(ts, key), queued);
            batch.tombs.push((ts, key.clone(), version));
        }
    }
    for key in &ws.touches {
        batch
            .batch
            .put_cf(&data, key, layout::encode_value(version, Some(&[])));
        batch.staged.insert(key.clone(), version);
    }
    let first_position = batch.stage_changes(ts, &ws.changes)?;
    batch.state.version = version;
    let previous_ts = batch.state.ts;
    batch.state.ts = batch.state.ts.max(ts);
    if previous_ts >> GC_BUCKET_SHIFT != batch.state.ts >> GC_BUCKET_SHIFT
        && batch.state.ts > TOMBSTONE_WINDOW
    {
        purge_tombstones(batch, batch.state.ts - TOMBSTONE_WINDOW)?;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    const BUCKET: u64 = 1 << GC_BUCKET_SHIFT;

    fn ws(read_version: u64, writes: &[(&str, Option<&str>)]) -> WriteSet {
        WriteSet {
            read_version,
            writes: writes
                .iter()
                .map(|(k, v)| (key(k), v.map(|v| v.as_bytes().to_vec())))
                .collect(),
            ..WriteSet::default()
        }
    }

    fn key(k: &str) -> Vec<u8> {
        let mut out = vec![layout::TABLE_TAG];
        out.extend_from_slice(k.as_bytes());
        out
    }

    /// Applies each `(write set, ts)` in one batch; the state after it.
    fn commit_all(engine: &Engine, state: CommitState, sets: &[(WriteSet, u64)]) -> CommitState {
        let mut batch = ApplyBatch::new(engine, state);
        for (ws, ts) in sets {
            let version = batch.state.version + 1;
            apply(&mut batch, ws, version, *ts).unwrap();
        }
        batch.write(false).unwrap()
    }

    fn refused(engine: &Engine, state: CommitState, ws: &WriteSet, ts: u64) -> bool {
        let mut batch = ApplyBatch::new(engine, state);
        matches!(
            apply(&mut batch, ws, state.version + 1, ts),
            Err(Error::SerializationFailure { .. })
        )
    }

    /// Every `data` key and value.
    fn contents(engine: &Engine) -> Vec<(Vec<u8>, Vec<u8>)> {
        let data = engine.cf(CF_DATA).unwrap();
        let mut it = engine.db.raw_iterator_cf(&data);
        it.seek_to_first();
        let mut out = Vec::new();
        while it.valid() {
            out.push((it.key().unwrap().to_vec(), it.value().unwrap().to_vec()));
            it.next();
        }
        out
    }

    fn queue_len(engine: &Engine) -> usize {
        contents(engine)
            .iter()
            .filter(|(k, _)| k.starts_with(b"mg"))
            .count()
    }

    /// A history with deletes spread over more than the window, and what a later write sees.
    fn history(t0: u64) -> Vec<(WriteSet, u64)> {
        vec![
            (
                ws(
                    0,
                    &[
                        ("a", Some("1")),
                        ("b", Some("2")),
                        ("c", Some("3")),
                        ("f", Some("6")),
                    ],
                ),
                t0,
            ),
            (ws(1, &[("a", None)]), t0 + 1),
            (ws(2, &[("b", None)]), t0 + BUCKET),
            // Deleted, then written again: the row stays.
            (ws(3, &[("c", None)]), t0 + BUCKET + 1),
            (ws(4, &[("c", Some("33"))]), t0 + BUCKET + 2),
            (ws(5, &[("d", Some("4"))]), t0 + TOMBSTONE_WINDOW + BUCKET),
            (
                ws(6, &[("e", Some("5"))]),
                t0 + TOMBSTONE_WINDOW + 3 * BUCKET,
            ),
        ]
    }

    #[test]
    fn keys_first_used_under_a_later_snapshot_are_checked_against_it() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path(), false).unwrap();
        let mut state = CommitState::default();
        state = commit_all(&engine, state, &[(ws(0, &[("a", Some("1"))]), 1)]);
        state = commit_all(&engine, state, &[(ws(1, &[("b", Some("2"))]), 2)]);
        assert_eq!(state.version, 2);
        // Snapshot 1 wrote `a`; a later statement's snapshot (2) saw `b` and wrote it.
        let mut set = ws(1, &[("a", Some("x")), ("b", Some("y"))]);
        assert!(refused(&engine, state, &set, 3));
        set.later = vec![(key("b"), 2)];
        let state = commit_all(&engine, state, &[(set.clone(), 3)]);
        assert_eq!(state.version, 3);
        // `a` is still checked against snapshot 1: a commit changed it since.
        let mut again = ws(1, &[("a", Some("z")), ("b", Some("w"))]);
        again.later = vec![(key("b"), 3)];
        assert!(refused(&engine, state, &again, 4));
        again.later.insert(0, (key("a"), 3));
        assert_eq!(commit_all(&engine, state, &[(again, 4)]).version, 4);
    }

    #[test]
    fn tombstones_are_forgotten_after_the_window_and_old_snapshots_refused() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path(), false).unwrap();
        let t0 = TOMBSTONE_WINDOW + 10 * BUCKET;
        let sets = history(t0);
        let mut state = CommitState::default();
        for (i, set) in sets.iter().enumerate() {
            if i == 2 {
                // Before any purge, a transaction that read `a` before its delete conflicts.
                assert!(refused(&engine, state, &ws(1, &[("a", Some("x"))]), t0 + 2));
                assert_eq!(queue_len(&engine), 1);
            }
            state = commit_all(&engine, state, std::slice::from_ref(set));
        }
        assert_eq!(engine.get_latest(&key("a")).unwrap(), None);
        assert_eq!(engine.get_latest(&key("b")).unwrap(), None);
        let c = engine.get_latest(&key("c")).unwrap().unwrap();
        assert_eq!(layout::decode_value(&c).unwrap(), (5, Some(&b"33"[..])));
        assert_eq!(queue_len(&engine), 0);
        assert_eq!(state.gc_version, 3);
        // A transaction whose snapshot predates a forgotten delete is refused when it finds a
        // key missing; a newer one is not; a present key is judged by its version as before.
        assert!(refused(
            &engine,
            state,
            &ws(1, &[("a", Some("x"))]),
            t0 + TOMBSTONE_WINDOW + 4 * BUCKET
        ));
        assert!(refused(
            &engine,
            state,
            &ws(2, &[("z", Some("x"))]),
            t0 + TOMBSTONE_WINDOW + 4 * BUCKET
        ));
        assert!(!refused(
            &engine,
            state,
            &ws(3, &[("a", Some("x"))]),
            t0 + TOMBSTONE_WINDOW + 4 * BUCKET
        ));
        assert!(!refused(
            &engine,
            state,
            &ws(2, &[("f", Some("x"))]),
            t0 + TOMBSTONE_WINDOW + 4 * BUCKET
        ));
        assert!(refused(
            &engine,
            state,
            &ws(5, &[("d", Some("x"))]),
            t0 + TOMBSTONE_WINDOW + 4 * BUCKET
        ));
        // The counters survive a decode.
        let stored = engine.get_latest(META_COMMIT).unwrap().unwrap();
        let decoded =
            CommitState::decode(layout::decode_value(&stored).unwrap().1.unwrap()).unwrap();
        assert_eq!(
            (decoded.gc_ts, decoded.gc_version),
            (state.gc_ts, state.gc_version)
        );
    }

    #[test]
    fn batching_does_not_change_what_is_forgotten() {
        let t0 = TOMBSTONE_WINDOW + 10 * BUCKET;
        let sets = history(t0);
        let one = tempfile::tempdir().unwrap();
        let one = Engine::open(one.path(), false).unwrap();
        let mut state = CommitState::default();
        for set in &sets {
            state = commit_all(&one, state, std::slice::from_ref(set));
        }
        let all = tempfile::tempdir().unwrap();
        let all = Engine::open(all.path(), false).unwrap();
        let together = commit_all(&all, CommitState::default(), &sets);
        assert_eq!(together, state);
        assert_eq!(contents(&all), contents(&one));
    }

    #[test]
    fn an_old_commit_state_decodes() {
        let state = CommitState {
            version: 7,
            position: 9,
            catalog_version: 3,
            ts: 11,
            ..CommitState::default()
        };
        let old = &state.encode()[..32];
        assert_eq!(CommitState::decode(old).unwrap(), state);
        assert!(CommitState::decode(&[0; 40]).is_err());
    }
}
