//! openraft's log store and state machine, both over one `weft_storage::Storage`.
//!
//! ```text
//!   openraft ─ append / truncate / purge ─▶ LogStore ─▶ `raft_log` CF   index → bincode Entry
//!            ◀─ read back (replicate, apply) ─┘  └─▶ LogCache: the newest entries, decoded
//!            ─ save_vote / purge ─▶                   ─▶ `raft_meta` CF  vote, last purged id
//!
//!   openraft ─ apply(committed entries) ──▶ StateMachine ─▶ Storage::apply_replicated(writes, meta)
//!                                              │             one RocksDB batch: the write sets,
//!                                              │             `applied` and `membership`
//!                                              ├─▶ responders, in log order
//!                                              └─▶ applied_watch (last applied index) ─▶ read barrier
//!
//!   snapshot = Storage::export_snapshot: an SST file of the whole `data` CF (`applied` and
//!              `membership` included), streamed by the network in chunks, ingested on install
//! ```
//!
//! The state machine is persistent (its `last_applied` lives in the same batch as the data), so
//! the current snapshot is an export of the current state, written when asked for; the file is
//! deleted when openraft drops the snapshot.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use futures::{Stream, TryStreamExt};
use openraft::storage::{
    EntryResponder, IOFlushed, LogState, RaftLogReader, RaftLogStorage, RaftSnapshotBuilder,
    RaftStateMachine,
};
use openraft::type_config::alias::{
    EntryOf, LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf, VoteOf,
};
use openraft::{EntryPayload, OptionalSend, StoredMembership};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::watch;
use weft_storage::{replica_meta_key, RaftLog, ReplicatedWrite, SnapshotFile, Storage};

use crate::log_cache::LogCache;
use crate::types::{Request, Response, TypeConfig};

type Entry = EntryOf<TypeConfig>;
type LogId = LogIdOf<TypeConfig>;
type Vote = VoteOf<TypeConfig>;
type Membership = StoredMembershipOf<TypeConfig>;
type SnapshotMeta = SnapshotMetaOf<TypeConfig>;
/// A snapshot as openraft hands it around: the meta and an SST file of the `data` column family.
pub type Snapshot = SnapshotOf<TypeConfig, SnapshotFile>;

/// `raft_meta` keys.
const VOTE: &str = "vote";
const LAST_PURGED: &str = "last_purged";

/// Replica meta names (`weft_storage::replica_meta_key`), written with each apply. A data
/// directory with `APPLIED_META` belongs to a cluster.
pub const APPLIED_META: &str = "applied";
const APPLIED: &str = APPLIED_META;
const MEMBERSHIP: &str = "membership";

/// Opens the log store and the state machine of `storage`.
pub async fn open(storage: Storage, node_id: u64) -> io::Result<(LogStore, StateMachine)> {
    let log = LogStore {
        node_id,
        log: storage.raft_log(),
        syncer: Arc::new(Syncer::start(storage.raft_log())?),
        cache: Arc::new(LogCache::default()),
    };
    let applied = read_applied(&storage)?;
    let (applied_tx, _) = watch::channel(index_of(&applied));
    let sm = StateMachine {
        storage,
        applied_tx: Arc::new(applied_tx),
        has_snapshot: Arc::new(AtomicBool::new(false)),
    };
    Ok((log, sm))
}

/// The Raft log and the vote. Clones share the column families; openraft uses
/// a clone as the log reader of each replication task.
#[derive(Clone)]
pub struct LogStore {
    /// This node: entries another leader proposed are a follower's appends (see `append`).
    node_id: u64,
    log: RaftLog,
    syncer: Arc<Syncer>,
    /// The newest entries, decoded: replication and apply read them back from here.
    cache: Arc<LogCache>,
}

/// Syncs the WAL for appended entries on its own thread and then tells openraft, in append
/// order; every callback waiting when a sync starts is answered by that one sync.
struct Syncer {
    tx: std::sync::mpsc::Sender<IOFlushed<TypeConfig>>,
    /// Callbacks submitted and not yet answered.
    pending: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Syncer {
    /// Waits for the thread: it holds the database, and one closed by a thread still running
    /// at process exit can abort in RocksDB's destroyed statics ("pthread lock: Invalid
    /// argument", seen once at the end of the consensus suite).
    fn drop(&mut self) {
        let (closed, _) = std::sync::mpsc::channel();
        drop(std::mem::replace(&mut self.tx, closed));
        if let Some(thread) = self.thread.take() {
            if thread.thread().id() != std::thread::current().id() && thread.join().is_err() {
                tracing::warn!("the raft log sync thread panicked");
            }
        }
    }
}

impl Syncer {
    fn start(log: RaftLog) -> io::Result<Syncer> {
        let (tx, rx) = std::sync::mpsc::channel::<IOFlushed<TypeConfig>>();
        let pending = Arc::new(AtomicUsize::new(0));
        let answered = Arc::clone(&pending);
        let thread = std::thread::Builder::new()
            .name("weft-raft-sync".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut waiting = vec![first];
                    waiting.extend(rx.try_iter());
                    let result = log.sync().map_err(|e| e.to_string());
                    let n = waiting.len();
                    for cb in waiting {
                        cb.io_completed(result.clone().map_err(io::Error::other));
                    }
                    answered.fetch_sub(n, Ordering::AcqRel);
                }
            })?;
        Ok(Syncer {
            tx,
            pending,
            thread: Some(thread),
        })
    }

    fn submit(&self, callback: IOFlushed<TypeConfig>) {
        self.pending.fetch_add(1, Ordering::AcqRel);
        if let Err(std::sync::mpsc::SendError(cb)) = self.tx.send(callback) {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            cb.io_completed(Err(io::Error::other("the raft log sync thread stopped")));
        }
    }

    /// Nothing submitted is still waiting for its sync.
    fn idle(&self) -> bool {
        self.pending.load(Ordering::Acquire) == 0
    }
}

impl LogStore {
    fn read_meta<T: DeserializeOwned>(&self, key: &str) -> io::Result<Option<T>> {
        match self.log.get_meta(key).map_err(io::Error::other)? {
            Some(bytes) => decode(&bytes, key).map(Some),
            None => Ok(None),
        }
    }

    /// Writes a `raft_meta` value: a synced write off the async runtime (it waits for an
    /// fsync), an unsynced one in place. openraft awaits these inside its core loop, so a
    /// hand-off to the blocking pool would hold the core for two thread switches to write a few
    /// bytes to the memtable.
    async fn write_meta<T: Serialize>(
        &self,
        key: &'static str,
        value: &T,
        sync: bool,
    ) -> io::Result<()> {
        let bytes = encode(value)?;
        if !sync {
            return self
                .log
                .put_meta(key, &bytes, false)
                .map_err(io::Error::other);
        }
        let log = self.log.clone();
        blocking(move || log.put_meta(key, &bytes, sync)).await
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<Entry>> {
        let (start, end) = index_bounds(&range);
        if let Some(entries) = self.cache.get(start, end) {
            return Ok(entries);
        }
        let stored = self.log.range(start, end).map_err(io::Error::other)?;
        let mut entries = Vec::with_capacity(stored.len());
        for (index, bytes) in stored {
            let entry: Entry = decode(&bytes, "log entry")?;
            // The log never has holes; a gap here means a damaged column family.
            if let Some(prev) = entries.last().map(|e: &Entry| e.log_id.index) {
                if index != prev + 1 {
                    return Err(io::Error::other(format!(
                        "hole in the Raft log between {prev} and {index}"
                    )));
                }
            }
            entries.push(entry);
        }
        Ok(entries)
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        self.read_meta(VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId> = self.read_meta(LAST_PURGED)?;
        let last = match self.log.last().map_err(io::Error::other)? {
            Some((_, bytes)) => Some(decode::<Entry>(&bytes, "log entry")?.log_id),
            None => None,
        };
        Ok(LogState {
            last_log_id: last.or(last_purged_log_id),
            last_purged_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        // A vote must survive a crash, or this node could grant two votes in one term.
        self.write_meta(VOTE, vote, true).await
    }

    // `save_committed` / `read_committed`: openraft's defaults, which keep nothing. The state
    // machine is durable (its applied id is written with the data), so the committed id would
    // only let a restarted node re-apply entries before it hears from a leader, and writing it
    // costs a RocksDB write on every node at every commit (1-7 % of the commits/s in A/B runs
    // on 8 Dec, BENCHMARKS.md).

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = Vec::new();
        let mut cached = Vec::new();
        let mut proposed_here = false;
        for entry in entries {
            proposed_here = entry.log_id.leader_id.node_id == self.node_id;
            let bytes = encode(&entry)?;
            let size = bytes.len();
            batch.push((entry.log_id.index, bytes));
            cached.push((entry, size));
        }
        // A leader's own entries are written now and synced by the syncer thread: openraft
        // counts them toward a commit quorum only once the callback fires, after the WAL sync.
        // Returning before the sync lets the leader send them to followers while its own disk
        // syncs, and lets many appends share one sync.
        //
        // A follower's entries (proposed by another node) are synced right here when no earlier
        // append waits for the syncer: the follower has nothing to overlap the sync with (it
        // answers the leader once they are durable), and the syncer thread's two wake-ups, on
        // two shared CPUs, cost more than the sync itself. Callbacks still fire in append order.
        let inline = !proposed_here && self.syncer.idle();
        if let Err(e) = self.log.append(&batch, inline) {
            callback.io_completed(Err(io::Error::other(e.to_string())));
            return Err(io::Error::other(e));
        }
        // Before returning: openraft reads these entries back only after `append` returned.
        self.cache.appended(cached);
        if inline {
            callback.io_completed(Ok(()));
        } else {
            self.syncer.submit(callback);
        }
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        let from = last_log_id.map_or(0, |id| id.index.saturating_add(1));
        self.cache.truncated(from);
        let log = self.log.clone();
        // Synced (it is rare): entries openraft has dropped as conflicting must not come back.
        blocking(move || log.delete_range(from, u64::MAX, true)).await
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        let upto = log_id.index.saturating_add(1);
        self.cache.purged(upto);
        // The purged id first: entries at or below it are never read again, so a crash between
        // the two writes leaves only dead entries. Neither is synced: openraft purges only what a
        // durable snapshot (or the durable state machine) already covers.
        self.write_meta(LAST_PURGED, &log_id, false).await?;
        let log = self.log.clone();
        blocking(move || log.delete_range(0, upto, false)).await
    }
}

/// Applies committed entries to `Storage`, builds and installs snapshots.
pub struct StateMachine {
    storage: Storage,
    /// Index of the last applied entry (0 before any: index 0 is openraft's initial membership
    /// entry, which carries no data).
    applied_tx: Arc<watch::Sender<u64>>,
    /// Whether a snapshot was built or installed since open; until then there is none to send.
    has_snapshot: Arc<AtomicBool>,
}

impl StateMachine {
    /// Follows the index of the last applied entry.
    pub fn applied_watch(&self) -> watch::Receiver<u64> {
        self.applied_tx.subscribe()
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, Membership)> {
        Ok((
            read_applied(&self.storage)?,
            read_membership(&self.storage)?,
        ))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin + OptionalSend,
    {
        let mut writes: Vec<ReplicatedWrite> = Vec::new();
        // Per entry: its responder and whether it carried a write set (answered in order).
        let mut answers = Vec::new();
        let mut last: Option<LogId> = None;
        let mut membership: Option<Membership> = None;
        while let Some((entry, responder)) = entries.try_next().await? {
            let has_write = match entry.payload {
                EntryPayload::Blank => false,
                EntryPayload::Normal(Request(w)) => {
                    writes.push(w);
                    true
                }
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(entry.log_id), m));
                    false
                }
            };
            answers.push((responder, has_write));
            last = Some(entry.log_id);
        }
        let Some(last) = last else {
            return Ok(());
        };

        // `membership` is rewritten only by a batch that changes it.
        let mut meta = vec![(replica_meta_key(APPLIED), encode(&last)?)];
        if let Some(m) = &membership {
            meta.push((replica_meta_key(MEMBERSHIP), encode(m)?));
        }
        let expected = writes.len();
        let outcomes = self
            .storage
            .apply_replicated(writes, meta)
            .await
            .map_err(io::Error::other)?;
        if outcomes.len() != expected {
            return Err(io::Error::other(format!(
                "storage answered {} outcomes for {expected} writes",
                outcomes.len()
            )));
        }
        self.applied_tx.send_replace(last.index);

        let mut outcomes = outcomes.into_iter();
        for (responder, has_write) in answers {
            let response = Response(if has_write { outcomes.next() } else { None });
            if let Some(r) = responder {
                r.send(response);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            storage: self.storage.clone(),
            has_snapshot: self.has_snapshot.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotFile,
    ) -> io::Result<()> {
        self.storage
            .install_snapshot(&snapshot)
            .await
            .map_err(io::Error::other)?;
        let applied = read_applied(&self.storage)?;
        self.applied_tx.send_replace(index_of(&applied));
        self.has_snapshot.store(true, Ordering::Release);
        tracing::info!(last_log_id = ?applied, "installed a snapshot from the leader");
        if applied != meta.last_log_id {
            return Err(io::Error::other(format!(
                "snapshot data was applied up to {applied:?}, its meta says {:?}",
                meta.last_log_id
            )));
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<Snapshot>> {
        // The state machine is durable, so the current state (at or past the last built or
        // installed snapshot) is the snapshot; an export is a consistent, synced copy of it.
        if !self.has_snapshot.load(Ordering::Acquire) {
            return Ok(None);
        }
        export(&self.storage).await.map(Some)
    }
}

/// Builds a snapshot from a consistent export of the state machine.
pub struct SnapshotBuilder {
    storage: Storage,
    has_snapshot: Arc<AtomicBool>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> io::Result<Snapshot> {
        let snapshot = export(&self.storage).await?;
        self.has_snapshot.store(true, Ordering::Release);
        Ok(snapshot)
    }
}

/// The whole state machine with the applied id and membership read from the same RocksDB
/// snapshot, after a WAL sync (so the log up to it may be purged).
async fn export(storage: &Storage) -> io::Result<Snapshot> {
    let storage = storage.clone();
    let (data, metas) = blocking(move || storage.export_snapshot(&[APPLIED, MEMBERSHIP])).await?;
    let mut metas = metas.into_iter();
    let last_log_id = match metas.next().flatten() {
        Some(b) => Some(decode::<LogId>(&b, APPLIED)?),
        None => None,
    };
    let last_membership = match metas.next().flatten() {
        Some(b) => decode::<Membership>(&b, MEMBERSHIP)?,
        None => Membership::default(),
    };
    Ok(Snapshot {
        meta: SnapshotMeta {
            last_log_id,
            last_membership,
        },
        snapshot: data,
    })
}

fn read_applied(storage: &Storage) -> io::Result<Option<LogId>> {
    match storage.replica_meta(APPLIED).map_err(io::Error::other)? {
        Some(b) => decode(&b, APPLIED).map(Some),
        None => Ok(None),
    }
}

fn read_membership(storage: &Storage) -> io::Result<Membership> {
    match storage.replica_meta(MEMBERSHIP).map_err(io::Error::other)? {
        Some(b) => decode(&b, MEMBERSHIP),
        None => Ok(Membership::default()),
    }
}

fn index_of(applied: &Option<LogId>) -> u64 {
    applied.as_ref().map_or(0, |id| id.index)
}

/// `start..end` (end exclusive) of any index range.
fn index_bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

/// Runs a storage call that may wait for an fsync on the blocking pool.
async fn blocking<T, F>(f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> weft_storage::Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
        .map_err(io::Error::other)
}

fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    bincode::serialize(value).map_err(io::Error::other)
}

fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> io::Result<T> {
    bincode::deserialize(bytes).map_err(|e| io::Error::other(format!("stored {what}: {e}")))
}
