//! `Storage`: opening the database, recovering counters and catalog, starting the committer, and
//! handing out transactions, the change log and the change stream.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hlc_gen::{HlcGenerator, HlcTimestamp};
use parking_lot::{Mutex, RwLock};
use rocksdb::{Direction, IteratorMode};
use tokio::sync::broadcast;
use tracing::{info, warn};

use crate::apply::CommitState;
use crate::catalog::Catalog;
use crate::change::{decode_record, ChangeRecord, CommitEvent, EventStream};
use crate::codec::layout::{self, META_COMMIT, META_ROWID};
use crate::committer::{Committer, Msg, ReplicatedRequest};
use crate::engine::{load_catalog_latest, Engine, OwnedSnapshot, CF_CHANGES};
use crate::error::{engine, Error, Result};
use crate::lww_apply::{read_head, read_received_ts, LwwClock};
use crate::replica::{
    export_sst, read_meta, replica_meta_key, ApplyOutcome, RaftLog, ReplicatedWrite, Replicator,
    SnapshotFile,
};
use crate::txn::Txn;

/// Capacity of the change stream; a subscriber that falls further behind gets `Lagged` and
/// re-reads the durable log with `read_changes`.
const EVENT_CAPACITY: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageOptions {
    /// This node's id; the high 16 bits of every hidden row id it hands out.
    pub node_id: u16,
    /// Fsync the WAL on every commit batch. Turn off only for tests and benchmarks.
    pub sync: bool,
    /// Write the first WAL file ahead at open, so that commits' fsyncs overwrite blocks already
    /// on disk (`Engine::open`): faster syncs for 48 MiB written and ~0.1 s at every open.
    pub prewrite_wal: bool,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            node_id: 0,
            sync: true,
            prewrite_wal: false,
        }
    }
}

/// What a commit was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommitInfo {
    pub version: u64,
    /// HLC timestamp.
    pub ts: u64,
    /// Change positions of this commit are `first_position..=last_position`; the range is empty
    /// (`first_position == last_position + 1`) for a commit without row changes.
    pub first_position: u64,
    pub last_position: u64,
}

/// The in-memory catalog and the commit version that last changed it.
#[derive(Debug, Clone)]
pub(crate) struct CatalogState {
    pub version: u64,
    pub catalog: Arc<Catalog>,
}

/// Handle to the open database; clones share it.
#[derive(Clone)]
pub struct Storage {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub engine: Arc<Engine>,
    pub opts: StorageOptions,
    pub catalog: Arc<RwLock<CatalogState>>,
    pub last_position: Arc<AtomicU64>,
    /// Hidden row id counter (the low 48 bits).
    pub rowid_counter: AtomicU64,
    pub hlc: Arc<HlcGenerator>,
    pub events: EventStream,
    /// Pacing of commits by the change stream's subscriber (see `Storage::pace_commits`).
    pub pace: CommitPace,
    pub commit_tx: mpsc::Sender<Msg>,
    pub shutting_down: AtomicBool,
    /// Snapshot files of a replication layer.
    pub snapshot_dir: PathBuf,
    /// Set in a cluster: commits are replicated through it instead of going to the committer.
    pub replicator: OnceLock<Arc<dyn Replicator>>,
    /// Last seq of this node's LWW origin log, published after each write.
    pub lww_head: tokio::sync::watch::Receiver<u64>,
    /// Timestamp of this node's last LWW commit.
    pub lww_ts: Arc<AtomicU64>,
    /// Oldest seq still in this node's origin log (`u64::MAX`: not looked up yet).
    pub lww_oldest: AtomicU64,
    /// Test hook: milliseconds this node's clock runs ahead for LWW commits.
    pub skew_ms: Arc<AtomicI64>,
    /// The committer's state, held by its thread while it works (see `apply_replicated`).
    committer_state: Arc<Mutex<Committer>>,
    committer: Mutex<Option<JoinHandle<()>>>,
    /// Sequence values this node took and has not handed out.
    pub sequences: crate::sequence::SequenceCache,
    /// Local commits handed to the committer and not yet answered (`committer::CommitPath`).
    commits_in_flight: AtomicUsize,
    last_concurrent_commit: AtomicU64,
}

/// See `Storage::pace_commits`.
#[derive(Default)]
pub(crate) struct CommitPace {
    backlog: AtomicUsize,
    /// What the subscriber has taken from the stream but not yet finished with.
    unsent: AtomicUsize,
    /// The longest one COMMIT waits (a stalled subscriber slows writers; it never stops them).
    max_wait: Mutex<Duration>,
    progress: tokio::sync::Notify,
}

impl Inner {
    /// Where this storage's commits go (`committer::submit`).
    pub(crate) fn commit_path(&self) -> crate::committer::CommitPath<'_> {
        crate::committer::CommitPath {
            tx: &self.commit_tx,
            state: &self.committer_state,
            in_flight: &self.commits_in_flight,
            last_concurrent: &self.last_concurrent_commit,
        }
    }

    /// How far behind the change stream's subscriber is: events it has not taken, and what it
    /// took but has not finished with.
    fn pace_behind(&self) -> usize {
        self.events.len() + self.pace.unsent.load(Ordering::Relaxed)
    }

    /// Waits while the change stream's subscribers are more events behind than allowed.
    pub(crate) async fn pace_commit(&self) {
        let backlog = self.pace.backlog.load(Ordering::Relaxed);
        if backlog == 0 || self.pace_behind() <= backlog {
            return;
        }
        let deadline = tokio::time::Instant::now() + *self.pace.max_wait.lock();
        loop {
            // Registered before the check, so a notification in between is not missed.
            let progressed = self.pace.progress.notified();
            if self.pace_behind() <= backlog {
                return;
            }
            if tokio::time::timeout_at(deadline, progressed).await.is_err() {
                return;
            }
        }
    }
}

impl Storage {
    /// Opens (creating if needed) the database in `dir`. Fails with `Locked` if another process
    /// has it open. After a crash RocksDB replays its WAL, so every acknowledged commit is back.
    pub fn open(dir: &Path, opts: StorageOptions) -> Result<Storage> {
        let engine = Arc::new(Engine::open(dir, opts.prewrite_wal)?);
        let state = read_commit_state(&engine)?;
        // Snapshot files left by a crash are of no use: start the directory empty.
        let snapshot_dir = dir.join("snapshots");
        let _ = std::fs::remove_dir_all(&snapshot_dir);
        std::fs::create_dir_all(&snapshot_dir).map_err(|e| Error::Io {
            path: snapshot_dir.clone(),
            message: e.to_string(),
        })?;
        let catalog = load_catalog_latest(&engine)?;
        crate::lww_apply::reconcile_all(&engine, &catalog)?;
        info!(
            dir = %dir.display(),
            version = state.version,
            position = state.position,
            objects = catalog.entries.len(),
            "storage opened"
        );

        let hlc = Arc::new(HlcGenerator::new(0));
        // Commit timestamps must keep increasing across restarts even if the wall clock went back.
        if let Ok(last) = HlcTimestamp::try_from(state.ts) {
            if let Err(e) = hlc.update(&last) {
                warn!(error = %e, "could not advance the HLC past the last commit");
            }
        }
        let catalog = Arc::new(RwLock::new(CatalogState {
            version: state.catalog_version,
            catalog: Arc::new(catalog),
        }));
        let last_position = Arc::new(AtomicU64::new(state.position));
        let events = EventStream::new(EVENT_CAPACITY);
        let (lww_head, lww_ts) = read_head(&engine)?;
        for ts in [lww_ts, read_received_ts(&engine)?] {
            if let Ok(last) = HlcTimestamp::try_from(ts) {
                let _ = hlc.update(&last);
            }
        }
        let (head_tx, lww_head_rx) = tokio::sync::watch::channel(lww_head);
        let skew_ms = Arc::new(AtomicI64::new(0));
        let lww_ts = Arc::new(AtomicU64::new(lww_ts));
        let lww = LwwClock {
            node: u64::from(opts.node_id),
            head: lww_head,
            last_ts: lww_ts.load(Ordering::Relaxed),
            skew_ms: skew_ms.clone(),
            head_tx,
            published_ts: lww_ts.clone(),
        };
        let (commit_tx, commit_rx) = mpsc::channel();
        let committer = Committer {
            engine: engine.clone(),
            catalog: catalog.clone(),
            last_position: last_position.clone(),
            hlc: hlc.clone(),
            events: events.clone(),
            sync: opts.sync,
            state,
            lww,
            stopped: false,
        };
        let committer = Arc::new(Mutex::new(committer));
        let shared = committer.clone();
        let handle = std::thread::Builder::new()
            .name("weft-committer".into())
            .spawn(move || crate::committer::run(shared, commit_rx))
            .map_err(|e| Error::Engine(format!("cannot start the committer thread: {e}")))?;

        Ok(Storage {
            inner: Arc::new(Inner {
                engine,
                opts,
                catalog,
                last_position,
                rowid_counter: AtomicU64::new(state.rowid),
                hlc,
                events,
                pace: CommitPace::default(),
                commit_tx,
                shutting_down: AtomicBool::new(false),
                replicator: OnceLock::new(),
                snapshot_dir,
                lww_head: lww_head_rx,
                lww_ts,
                lww_oldest: AtomicU64::new(u64::MAX),
                skew_ms,
                committer_state: committer,
                commits_in_flight: AtomicUsize::new(0),
                last_concurrent_commit: AtomicU64::new(0),
                committer: Mutex::new(Some(handle)),
                sequences: Default::default(),
            }),
        })
    }

    /// The latest committed catalog.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.inner.catalog.read().catalog.clone()
    }

    /// Starts a snapshot-isolation transaction. If reading the snapshot's counters fails (a
    /// broken disk), the transaction reports that error on its first write and at commit.
    pub fn begin(&self) -> Txn {
        let snap = Arc::new(OwnedSnapshot::take(self.inner.engine.clone()));
        Txn::new(self.inner.clone(), snap)
    }

    /// The change stream: one event per commit, after it is durable.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<CommitEvent>> {
        self.inner.events.subscribe()
    }

    /// The number (`CommitEvent::seq`) of the last event published on the change stream: an
    /// event committed after this call has a greater one.
    pub fn published(&self) -> u64 {
        self.inner.events.published()
    }

    /// From now on a transaction's COMMIT is acknowledged only once the change stream's
    /// subscribers are at most `backlog` events behind (or after `max_wait`), so that a
    /// writer cannot run ahead of the fan-out: without it, a fan-out that falls behind queues
    /// ever more (its latency grows without bound) and the stream's ring buffer finally
    /// overwrites events it has not read. The commit itself is durable and published before
    /// the wait; commits applied from replication are not paced. The subscriber calls
    /// `events_received` whenever it has taken events or finished with some (what it took but
    /// has not finished counts as behind too). 0 turns pacing off (the default: a
    /// subscriber that does not call `events_received` must not stall commits).
    pub fn pace_commits(&self, backlog: usize, max_wait: Duration) {
        *self.inner.pace.max_wait.lock() = max_wait;
        self.inner.pace.backlog.store(backlog, Ordering::Relaxed);
    }

    /// Which NOTIFY channels are listened to: from the first call on, a commit that carries
    /// only NOTIFY messages, none of them on a listened channel, is not published on the
    /// change stream (it would wake the subscriber for nothing). Call it before acknowledging
    /// the LISTEN that adds a channel.
    pub fn listen_filter(&self, channel: &str, listened: bool) {
        self.inner.events.set_listened(channel, listened);
    }

    /// The subscriber has taken events from the change stream, or finished with some: `unsent`
    /// (events, or messages made from them) of what it took are not done yet, and count as
    /// events behind; paced commits may go on if that is few enough.
    pub fn events_received(&self, unsent: usize) {
        self.inner.pace.unsent.store(unsent, Ordering::Relaxed);
        self.inner.pace.progress.notify_waiters();
    }

    /// Up to `limit` change records with positions above `after_position`, in order, rows decoded
    /// against the current catalog (see `change::decode_record`).
    pub fn read_changes(&self, after_position: u64, limit: usize) -> Result<Vec<ChangeRecord>> {
        let catalog = self.catalog();
        let engine = &self.inner.engine;
        let cf = engine.cf(CF_CHANGES)?;
        let Some(start) = after_position.checked_add(1) else {
            return Ok(Vec::new());
        };
        let start = start.to_be_bytes();
        let mut out = Vec::new();
        let iter = engine
            .db
            .iterator_cf(&cf, IteratorMode::From(&start, Direction::Forward));
        for item in iter.take(limit) {
            let (key, value) = item.map_err(engine_err)?;
            let position = layout::decode_u64(&key)?;
            out.push(decode_record(position, &value, &catalog)?);
        }
        Ok(out)
    }

    /// Position of the oldest change record still in the log (`last_position() + 1` when the log
    /// is empty). Positions are dense, so every position from here to `last_position()` is there.
    pub fn oldest_position(&self) -> Result<u64> {
        let engine = &self.inner.engine;
        let cf = engine.cf(CF_CHANGES)?;
        // Read the last position first: a commit racing with us only appends above it.
        let last = self.last_position();
        let mut iter = engine.db.iterator_cf(&cf, IteratorMode::Start);
        match iter.next() {
            Some(item) => {
                let (key, _) = item.map_err(engine_err)?;
                Ok(layout::decode_u64(&key)?.min(last + 1))
            }
            None => Ok(last + 1),
        }
    }

    /// Deletes the change records committed before the HLC timestamp `before_ts` (the retention
    /// window's start); returns how many were deleted. Records are in commit order, so the
    /// deleted ones are a prefix of the log.
    pub fn purge_changes(&self, before_ts: u64) -> Result<u64> {
        let engine = &self.inner.engine;
        let cf = engine.cf(CF_CHANGES)?;
        let mut first = None;
        let mut end = None;
        for item in engine.db.iterator_cf(&cf, IteratorMode::Start) {
            let (key, value) = item.map_err(engine_err)?;
            let position = layout::decode_u64(&key)?;
            first.get_or_insert(position);
            let ts = value
                .get(..8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| Error::Corruption("change record without a timestamp".into()))?;
            if ts >= before_ts {
                end = Some(position);
                break;
            }
            end = Some(position + 1);
        }
        let (Some(first), Some(end)) = (first, end) else {
            return Ok(0);
        };
        if end <= first {
            return Ok(0);
        }
        engine
            .db
            .delete_range_cf(&cf, first.to_be_bytes(), end.to_be_bytes())
            .map_err(engine_err)?;
        Ok(end - first)
    }

    /// Hands commits to `r` from now on (a cluster's replication layer). Only the first call
    /// takes effect.
    pub fn set_replicator(&self, r: Arc<dyn Replicator>) {
        let _ = self.inner.replicator.set(r);
    }

    /// Waits until this node has applied every commit acknowledged anywhere in the cluster
    /// before the call (a linearizable read starts after it). Immediate on a single node.
    pub async fn read_barrier(&self) -> Result<()> {
        match self.inner.replicator.get() {
            Some(r) => r.read_barrier().await,
            None => Ok(()),
        }
    }

    /// A fresh HLC timestamp (for a proposer to stamp a replicated write).
    pub fn now(&self) -> u64 {
        self.inner.hlc.next_timestamp().map_or(0, |t| t.as_u64())
    }

    /// Applies replicated writes in order, with `meta` (`replica_meta_key` → value) in the same
    /// atomic write. Fails only if the disk does; conflicts are per-write outcomes.
    pub async fn apply_replicated(
        &self,
        writes: Vec<ReplicatedWrite>,
        meta: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<Vec<ApplyOutcome>> {
        // When the committer is idle, apply here: no wake-up of its thread and none of ours
        // when it answers (two context switches per applied batch). The apply writes without
        // an fsync, so it holds this thread only briefly. Order is kept: the Raft state machine
        // applies one batch at a time and waits for it, so no earlier batch can still be queued.
        if let Some(mut c) = self.inner.committer_state.try_lock() {
            return c.apply_replicated(writes, &meta);
        }
        let (reply, rx) = tokio::sync::oneshot::channel();
        let req = ReplicatedRequest {
            writes,
            meta,
            reply,
        };
        self.inner
            .commit_tx
            .send(Msg::Replicated(Box::new(req)))
            .map_err(|_| Error::ShuttingDown)?;
        rx.await.map_err(|_| Error::ShuttingDown)?
    }

    /// A replica meta value as last applied (`None` if never written).
    pub fn replica_meta(&self, name: &str) -> Result<Option<Vec<u8>>> {
        read_meta(&self.inner.engine, &replica_meta_key(name))
    }

    /// Where snapshot files are written and received (`<data dir>/snapshots`).
    pub fn snapshot_dir(&self) -> &Path {
        &self.inner.snapshot_dir
    }

    /// Writes the whole `data` column family as of now into a new snapshot file, after making
    /// everything applied so far durable, with the replica meta values `names` read from the same
    /// RocksDB snapshot.
    pub fn export_snapshot(&self, names: &[&str]) -> Result<(SnapshotFile, Vec<Option<Vec<u8>>>)> {
        self.inner.engine.db.flush_wal(true).map_err(engine)?;
        let snap = OwnedSnapshot::take(self.inner.engine.clone());
        let mut metas = Vec::with_capacity(names.len());
        for name in names {
            let value = match snap.get(&replica_meta_key(name))? {
                Some(stored) => layout::decode_value(&stored)?.1.map(<[u8]>::to_vec),
                None => None,
            };
            metas.push(value);
        }
        let file = SnapshotFile::new_in(&self.inner.snapshot_dir);
        export_sst(&snap, &file)?;
        Ok((file, metas))
    }

    /// Replaces the database with a snapshot file (durably), empties the change log and
    /// publishes a `reset` event.
    pub async fn install_snapshot(&self, file: &SnapshotFile) -> Result<()> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.inner
            .commit_tx
            .send(Msg::Install(file.path().to_path_buf(), reply))
            .map_err(|_| Error::ShuttingDown)?;
        rx.await.map_err(|_| Error::ShuttingDown)??;
        let rowid = read_commit_state(&self.inner.engine)?.rowid;
        self.inner.rowid_counter.fetch_max(rowid, Ordering::Relaxed);
        Ok(())
    }

    /// The Raft log and Raft metadata column families.
    pub fn raft_log(&self) -> RaftLog {
        RaftLog {
            engine: self.inner.engine.clone(),
        }
    }

    /// Position of the last durable change record (0 if none).
    pub fn last_position(&self) -> u64 {
        self.inner.last_position.load(Ordering::Acquire)
    }

    /// Stops the committer after the batch in progress and syncs the WAL. Commits after this fail
    /// with `ShuttingDown`. Idempotent.
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }

    /// Shuts down and closes the database on this thread, once every other handle on it is gone
    /// (waiting `grace` at most); false if some handle outlived `grace`.
    ///
    /// A process must not exit while another thread may still close the database: RocksDB's
    /// close locks a static mutex that `exit` has already destroyed, and the process aborts
    /// ("pthread lock: Invalid argument"). So a server closes its database through this before
    /// it exits. If a handle outlives `grace`, the database's background work (flushes,
    /// compactions, periodic tasks) is stopped instead, so that at least none of it runs during
    /// exit.
    pub fn close(self, grace: Duration) -> bool {
        self.inner.shutdown();
        let engine = Arc::clone(&self.inner.engine);
        drop(self);
        let deadline = Instant::now() + grace;
        let mut pause = Duration::from_millis(1);
        while Arc::strong_count(&engine) > 1 {
            if Instant::now() >= deadline {
                warn!(
                    handles = Arc::strong_count(&engine) - 1,
                    "the database is still in use at shutdown: stopping its background work"
                );
                engine.db.cancel_all_background_work(true);
                return false;
            }
            // Handles go as the tasks and threads that hold them finish: poll, backing off.
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
        drop(engine);
        true
    }
}

/// The commit counters (and the hidden row id counter) as last written.
pub(crate) fn read_commit_state(engine: &Engine) -> Result<CommitState> {
    let mut state = match engine.get_latest(META_COMMIT)? {
        Some(stored) => match layout::decode_value(&stored)? {
            (_, Some(payload)) => CommitState::decode(payload)?,
            (_, None) => return Err(Error::Corruption("commit state is a tombstone".into())),
        },
        None => CommitState::default(),
    };
    let lww = engine.cf(crate::engine::CF_LWW)?;
    if let Some(b) = engine
        .db
        .get_cf(&lww, crate::committer::POSITION_FLOOR)
        .map_err(engine_err)?
    {
        state.position = state.position.max(layout::decode_u64(&b)?);
    }
    if let Some(stored) = engine.get_latest(META_ROWID)? {
        if let (_, Some(payload)) = layout::decode_value(&stored)? {
            state.rowid = layout::decode_u64(payload)?;
        }
    }
    Ok(state)
}

fn engine_err(e: rocksdb::Error) -> Error {
    engine(e)
}

impl Inner {
    fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        let Some(handle) = self.committer.lock().take() else {
            return;
        };
        // Send fails only if the thread already exited; joining is still right.
        let _ = self.commit_tx.send(Msg::Shutdown);
        if handle.join().is_err() {
            warn!("the committer thread panicked");
        }
    }

    /// Next hidden row id: node id in the high 16 bits, a per-node counter below.
    pub fn next_rowid(&self) -> (i64, u64) {
        let counter = self.rowid_counter.fetch_add(1, Ordering::Relaxed) + 1;
        let id = (u64::from(self.opts.node_id) << 48) | (counter & ((1 << 48) - 1));
        (id as i64, counter)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown();
    }
}
