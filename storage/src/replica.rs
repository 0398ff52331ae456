//! What a replication layer (the Raft state machine in `weft-consensus`) needs from storage:
//! a hook that takes over commits, a deterministic apply of replicated write sets that stores the
//! replication layer's own state in the same RocksDB write, snapshots of the whole `data` column
//! family, and the `raft_log` / `raft_meta` column families.
//!
//! ```text
//!   Txn::commit ──WriteSet──▶ Replicator::commit (propose; forward to the leader)
//!                                   │ committed by a majority
//!                                   ▼
//!   state machine ──Storage::apply_replicated(entries, meta)──▶ the committer (on the caller's
//!                                   │ thread when it is idle, else queued to its thread)
//!                                   │ apply() each with the next version, ts = max(proposed, last+1)
//!                                   │ one WriteBatch: data + changes + counters + meta + dedup ids
//!                                   ▼
//!                          CommitEvent (broadcast) as for a local commit
//! ```

use std::future::Future;
use std::pin::Pin;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rocksdb::{Direction, IteratorMode, Options, SstFileWriter, WriteBatch, WriteOptions};
use serde::{Deserialize, Serialize};

use crate::apply::WriteSet;
use crate::catalog::Consistency;
use crate::codec::layout;
use crate::engine::{load_catalog_at, Engine, OwnedSnapshot, CF_RAFT_LOG, CF_RAFT_META};
use crate::error::{engine, Error, Result};
use crate::storage::CommitInfo;

/// Prefix of the `data` keys that remember applied request ids (`m q ts node inc seq`).
pub(crate) const DEDUP_PREFIX: &[u8] = b"mq";
/// Prefix of the `data` keys a replication layer stores with each apply (`m x name`).
pub const REPLICA_META_PREFIX: &[u8] = b"mx";

/// Takes over `Txn::commit` when set with `Storage::set_replicator`.
pub trait Replicator: Send + Sync + 'static {
    /// Replicates `ws` and answers once it is applied locally (or surely failed).
    fn commit(&self, ws: WriteSet) -> Pin<Box<dyn Future<Output = Result<CommitInfo>> + Send>>;
    /// Waits until this node has applied every commit acknowledged anywhere before the call.
    fn read_barrier(&self) -> Pin<Box<dyn Future<Output = Result<()>> + Send>>;
}

/// Identifies a proposal so that a retried or forwarded one is applied at most once:
/// the proposing node, a random number drawn when that node's process started, a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RequestId {
    pub node: u64,
    pub incarnation: u64,
    pub seq: u64,
}

/// One replicated commit: what the state machine applies on every replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicatedWrite {
    pub id: RequestId,
    /// HLC timestamp chosen by the proposer; apply uses `max(ts, previous commit's ts + 1)`.
    pub ts: u64,
    pub ws: WriteSet,
}

/// Outcome of applying one replicated write, the same on every replica; serializable so that a
/// forwarded commit can answer over the network.
pub type ApplyOutcome = std::result::Result<CommitInfo, Error>;

pub(crate) fn encode_outcome(o: &ApplyOutcome) -> Vec<u8> {
    // Serializing plain enums and integers to JSON cannot fail.
    serde_json::to_vec(o).unwrap_or_default()
}

pub(crate) fn decode_outcome(b: &[u8]) -> Result<ApplyOutcome> {
    serde_json::from_slice(b).map_err(|e| Error::Corruption(format!("stored outcome: {e}")))
}

/// How long an applied request id is remembered, in HLC units (10 minutes of wall time): far
/// longer than any proposer retries (`--raft-timeout`). A write whose proposer timestamp is older
/// than this when it is applied is refused instead (its id may have been forgotten).
pub(crate) const DEDUP_WINDOW: u64 = (10 * 60 * 1000) << 22;

/// `m q ts id`: the proposer's timestamp first, so that forgetting old ids is one range deletion.
/// A retry carries the same `ReplicatedWrite`, hence the same timestamp and key.
pub(crate) fn dedup_key(w: &ReplicatedWrite) -> Vec<u8> {
    let mut k = DEDUP_PREFIX.to_vec();
    for n in [w.ts, w.id.node, w.id.incarnation, w.id.seq] {
        k.extend_from_slice(&n.to_be_bytes());
    }
    k
}

/// The first dedup key not older than `ts`.
pub(crate) fn dedup_bound(ts: u64) -> Vec<u8> {
    let mut k = DEDUP_PREFIX.to_vec();
    k.extend_from_slice(&ts.to_be_bytes());
    k
}

/// `data` key for a replication layer's state named `name` (e.g. the last applied log id).
pub fn replica_meta_key(name: &str) -> Vec<u8> {
    let mut k = REPLICA_META_PREFIX.to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

/// Reads a replica meta value (written by `apply_replicated`) from the latest state.
pub(crate) fn read_meta(engine: &Engine, key: &[u8]) -> Result<Option<Vec<u8>>> {
    match engine.get_latest(key)? {
        Some(stored) => Ok(layout::decode_value(&stored)?.1.map(<[u8]>::to_vec)),
        None => Ok(None),
    }
}

/// A snapshot of the whole `data` column family as one SST file: a range deletion over every
/// `data` key, then every key and stored value of one RocksDB snapshot. Ingesting it replaces the
/// column family's contents atomically (point keys override a range deletion in the same file).
/// The file is deleted when this value is dropped.
#[derive(Debug)]
pub struct SnapshotFile {
    path: PathBuf,
}

static SNAPSHOT_SEQ: AtomicU64 = AtomicU64::new(0);

impl SnapshotFile {
    /// A new, not yet written, file name in `dir`.
    pub fn new_in(dir: &Path) -> SnapshotFile {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let seq = SNAPSHOT_SEQ.fetch_add(1, Ordering::Relaxed);
        SnapshotFile {
            path: dir.join(format!("snap-{nanos}-{seq}.sst")),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SnapshotFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Writes every `data` key of `snap` into `file` (see `SnapshotFile`), except the rows and index
/// entries of lww tables: those are not replicated by Raft (each node has its own, merged by the
/// LWW replication), so the file neither carries nor deletes them.
pub(crate) fn export_sst(snap: &OwnedSnapshot, file: &SnapshotFile) -> Result<()> {
    let catalog = load_catalog_at(snap)?;
    let mut lww: Vec<Vec<u8>> = catalog
        .tables()
        .filter(|t| t.consistency == Consistency::Lww)
        .map(|t| layout::table_prefix(t.id))
        .collect();
    lww.sort();
    let opts = Options::default();
    let mut writer = SstFileWriter::create(&opts);
    writer.open(file.path()).map_err(engine)?;
    // Range deletions over every `data` key outside the lww tables' prefixes.
    let mut from = vec![0u8];
    for prefix in &lww {
        if from.as_slice() < prefix.as_slice() {
            writer
                .delete_range(&from[..], &prefix[..])
                .map_err(engine)?;
        }
        from = layout::prefix_end(prefix).unwrap_or_else(|| DATA_KEY_END.to_vec());
    }
    if from.as_slice() < DATA_KEY_END {
        writer
            .delete_range(&from[..], DATA_KEY_END)
            .map_err(engine)?;
    }
    snap.with_iter(&[], DATA_KEY_END, |it| {
        while it.valid() {
            if let (Some(k), Some(v)) = (it.key(), it.value()) {
                if !lww.iter().any(|p| k.starts_with(p)) {
                    writer.put(k, v).map_err(engine)?;
                }
            }
            it.next();
        }
        it.status().map_err(engine)
    })?;
    writer.finish().map_err(engine)
}

/// The Raft log and Raft's own metadata (vote, committed id), in their own column families.
#[derive(Clone)]
pub struct RaftLog {
    pub(crate) engine: std::sync::Arc<Engine>,
}

impl RaftLog {
    /// Stores `(index, entry)` pairs; with `sync`, fsyncs the WAL before returning.
    pub fn append(&self, entries: &[(u64, Vec<u8>)], sync: bool) -> Result<()> {
        let cf = self.engine.cf(CF_RAFT_LOG)?;
        let mut batch = WriteBatch::default();
        for (index, bytes) in entries {
            batch.put_cf(&cf, index.to_be_bytes(), bytes);
        }
        self.write(batch, sync)
    }

    /// Entries with `start <= index < end`, in order.
    pub fn range(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>> {
        let cf = self.engine.cf(CF_RAFT_LOG)?;
        let mut out = Vec::new();
        let from = start.to_be_bytes();
        let it = self
            .engine
            .db
            .iterator_cf(&cf, IteratorMode::From(&from, Direction::Forward));
        for item in it {
            let (k, v) = item.map_err(engine)?;
            let index = layout::decode_u64(&k)?;
            if index >= end {
                break;
            }
            out.push((index, v.to_vec()));
        }
        Ok(out)
    }

    /// The entry with the highest index.
    pub fn last(&self) -> Result<Option<(u64, Vec<u8>)>> {
        let cf = self.engine.cf(CF_RAFT_LOG)?;
        let mut it = self.engine.db.iterator_cf(&cf, IteratorMode::End);
        match it.next() {
            Some(item) => {
                let (k, v) = item.map_err(engine)?;
                Ok(Some((layout::decode_u64(&k)?, v.to_vec())))
            }
            None => Ok(None),
        }
    }

    /// Deletes entries with `start <= index < end`.
    pub fn delete_range(&self, start: u64, end: u64, sync: bool) -> Result<()> {
        if end <= start {
            return Ok(());
        }
        let cf = self.engine.cf(CF_RAFT_LOG)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(&cf, start.to_be_bytes(), end.to_be_bytes());
        self.write(batch, sync)
    }

    pub fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let cf = self.engine.cf(CF_RAFT_META)?;
        self.engine.db.get_cf(&cf, key.as_bytes()).map_err(engine)
    }

    pub fn put_meta(&self, key: &str, value: &[u8], sync: bool) -> Result<()> {
        let cf = self.engine.cf(CF_RAFT_META)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(&cf, key.as_bytes(), value);
        self.write(batch, sync)
    }

    /// Fsyncs the WAL (everything written so far becomes durable).
    pub fn sync(&self) -> Result<()> {
        self.engine.db.flush_wal(true).map_err(engine)
    }

    fn write(&self, batch: WriteBatch, sync: bool) -> Result<()> {
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        self.engine.db.write_opt(batch, &opts).map_err(engine)
    }
}

/// Every `data` key sorts below this one (keys start with an ASCII tag).
pub(crate) const DATA_KEY_END: &[u8] = &[0xff; 16];
