//! The commit pipeline: one thread drains every queued write set, applies them into one batch,
//! writes it with a single WAL sync, then publishes and answers.
//!
//! ```text
//!  Txn::commit ──CommitRequest──▶ [queue] ──▶ committer thread
//!                                               │ drain all waiting
//!                                               │ apply() each (conflicts → 40001)
//!                                               │ one WriteBatch, sync=true
//!                                               │ refresh catalog if DDL
//!                                               │ broadcast CommitEvent
//!  Txn::commit ◀──────── oneshot reply ─────────┘
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use hlc_gen::{HlcGenerator, HlcTimestamp};
use parking_lot::{Mutex, RwLock};
use rocksdb::{IngestExternalFileOptions, WriteBatch, WriteOptions};
use tokio::sync::oneshot;
use tracing::{error, warn};

use crate::apply::{apply, Applied, ApplyBatch, CommitState, WriteSet};
use crate::catalog::Catalog;
use crate::change::{decode_record, encode_record, ChangeRecord, CommitEvent, EventStream};
use crate::engine::{load_catalog_latest, Engine, CF_CHANGES, CF_DATA};
use crate::error::{engine, Error, Result};
use crate::lww_apply::{LwwApplied, LwwClock, LwwMergeRequest, LwwRemoteRequest, LwwRequest};
use crate::replica::{
    decode_outcome, dedup_bound, dedup_key, encode_outcome, read_meta, ApplyOutcome,
    ReplicatedWrite, RequestId, DEDUP_WINDOW,
};
use crate::storage::{read_commit_state, CatalogState, CommitInfo};

/// `lww` CF key: the lowest change position the next commit may take after a snapshot install.
pub(crate) const POSITION_FLOOR: &[u8] = b"f";

/// Most write sets put into one batch; bounds latency for the first of a large burst.
const MAX_BATCH: usize = 512;

pub(crate) struct CommitRequest {
    pub ws: WriteSet,
    /// The write set's change records with rows decoded, positions and ts not yet assigned.
    pub records: Vec<ChangeRecord>,
    pub reply: oneshot::Sender<Result<CommitInfo>>,
}

/// Write sets committed by a replication layer, applied in log order.
pub(crate) struct ReplicatedRequest {
    pub writes: Vec<ReplicatedWrite>,
    /// Replication layer state written in the same batch (`replica_meta_key` → value).
    pub meta: Vec<(Vec<u8>, Vec<u8>)>,
    pub reply: oneshot::Sender<Result<Vec<ApplyOutcome>>>,
}

pub(crate) enum Msg {
    Commit(Box<CommitRequest>),
    /// A local commit to lww tables (grouped with `Commit`s into one synced batch).
    Lww(Box<LwwRequest>),
    /// Entries of another node's LWW log.
    LwwRemote(Box<LwwRemoteRequest>),
    /// Rows of a full LWW sync.
    LwwMerge(Box<LwwMergeRequest>),
    /// Work that must not interleave with commits (e.g. purging LWW tombstones).
    Run(Box<dyn FnOnce(&mut Committer) + Send>),
    Replicated(Box<ReplicatedRequest>),
    /// Replace the whole `data` CF with a snapshot file; empty the change log.
    Install(PathBuf, oneshot::Sender<Result<()>>),
    Shutdown,
}

pub(crate) struct Committer {
    pub engine: Arc<Engine>,
    pub catalog: Arc<RwLock<CatalogState>>,
    pub last_position: Arc<AtomicU64>,
    pub hlc: Arc<HlcGenerator>,
    pub events: EventStream,
    pub sync: bool,
    pub state: CommitState,
    pub lww: LwwClock,
    /// Set once the thread has stopped: nothing is written after the shutdown flush.
    pub stopped: bool,
}

/// A local commit waiting in the committer's queue.
pub(crate) enum Pending {
    Raft(CommitRequest),
    Lww(LwwRequest),
}

/// The committer thread: waits for a message, then handles it and everything queued behind it
/// while holding the committer. `Storage::apply_replicated` may take the committer in between
/// (it applies on the caller's thread when the committer is free: one thread hand-off less per
/// Raft apply).
pub(crate) fn run(shared: Arc<Mutex<Committer>>, rx: Receiver<Msg>) {
    loop {
        let Ok(first) = rx.recv() else { break };
        let mut c = shared.lock();
        if c.handle(first, &rx) {
            break;
        }
    }
    shared.lock().finish();
}

impl Committer {
    /// Handles `first` and the messages queued behind it; true on `Shutdown`.
    fn handle(&mut self, first: Msg, rx: &Receiver<Msg>) -> bool {
        let mut stop = false;
        let mut reqs = Vec::new();
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Commit(req) => reqs.push(Pending::Raft(*req)),
                Msg::Lww(req) => reqs.push(Pending::Lww(*req)),
                Msg::LwwRemote(req) => {
                    if !reqs.is_empty() {
                        self.commit_group(std::mem::take(&mut reqs));
                    }
                    self.apply_lww_remote(*req);
                }
                Msg::Run(job) => {
                    if !reqs.is_empty() {
                        self.commit_group(std::mem::take(&mut reqs));
                    }
                    job(self);
                }
                Msg::LwwMerge(req) => {
                    if !reqs.is_empty() {
                        self.commit_group(std::mem::take(&mut reqs));
                    }
                    self.merge_lww_rows(*req);
                }
                Msg::Replicated(req) => {
                    // Keep commit order: what was queued before goes first.
                    if !reqs.is_empty() {
                        self.commit_group(std::mem::take(&mut reqs));
                    }
                    let req = *req;
                    let _ = req.reply.send(self.apply_replicated(req.writes, &req.meta));
                }
                Msg::Install(data, reply) => {
                    if !reqs.is_empty() {
                        self.commit_group(std::mem::take(&mut reqs));
                    }
                    let _ = reply.send(self.install(&data));
                }
                Msg::Shutdown => {
                    stop = true;
                    break;
                }
            }
            // A schema change ends the group: lww commits after it must merge with the new
            // table definitions (e.g. maintain a new index).
            let ddl = matches!(reqs.last(), Some(Pending::Raft(r)) if r.ws.catalog_changed);
            if reqs.len() >= MAX_BATCH || ddl {
                break;
            }
            // Empty: the batch is complete. Disconnected: handled by the next recv().
            next = rx.try_recv().ok();
        }
        if !reqs.is_empty() {
            self.commit_group(reqs);
        }
        stop
    }

    /// After the last message: later callers get `ShuttingDown`. Requests still queued get their
    /// reply sender dropped, which their txn reports as ShuttingDown.
    fn finish(&mut self) {
        self.stopped = true;
        // Every commit was already synced; flushing memtables only shortens the next open's
        // WAL replay.
        for name in [CF_DATA, CF_CHANGES] {
            let flushed = self
                .engine
                .cf(name)
                .and_then(|cf| self.engine.db.flush_cf(&cf).map_err(engine));
            if let Err(e) = flushed {
                warn!(error = %e, cf = name, "flushing at shutdown failed");
            }
        }
    }

    fn commit_group(&mut self, mut reqs: Vec<Pending>) {
        let catalog = self.catalog.read().catalog.clone();
        let engine = self.engine.clone();
        let mut batch = ApplyBatch::new(&engine, self.state);
        let mut outcomes: Vec<Result<Staged>> = Vec::with_capacity(reqs.len());
        for req in &mut reqs {
            outcomes.push(match req {
                Pending::Raft(r) => {
                    let version = batch.state().version + 1;
                    let ts = self.next_ts(batch.state().ts);
                    apply(&mut batch, &r.ws, version, ts).map(Staged::Raft)
                }
                Pending::Lww(r) => self
                    .stage_local_lww(&mut batch, &catalog, r)
                    .map(Staged::Lww),
            });
        }
        let any_applied = outcomes.iter().any(Result::is_ok);
        // A group of NOTIFY-only transactions changes no data: like PostgreSQL, which writes no
        // commit record for a transaction without an XID, it is not worth an fsync. Its counters
        // are made durable by the next synced group (or the flush at shutdown).
        let durable = reqs.iter().zip(&outcomes).any(|(r, o)| {
            o.is_ok()
                && match r {
                    Pending::Raft(r) => !(r.ws.writes.is_empty() && r.ws.changes.is_empty()),
                    Pending::Lww(_) => true,
                }
        });
        if any_applied {
            match batch.write(self.sync && durable) {
                Ok(state) => self.state = state,
                Err(e) => {
                    error!(error = %e, "writing a commit batch failed");
                    for o in outcomes.iter_mut().filter(|o| o.is_ok()) {
                        *o = Err(e.clone());
                    }
                    // The origin log's head did not move on disk: take it back in memory.
                    if let Ok((head, _)) = crate::lww_apply::read_head(&self.engine) {
                        self.lww.head = head;
                    }
                }
            }
        }
        self.last_position
            .store(self.state.position, Ordering::Release);
        self.lww_published();

        let catalog_changed = reqs
            .iter()
            .zip(&outcomes)
            .any(|(r, o)| o.is_ok() && matches!(r, Pending::Raft(r) if r.ws.catalog_changed));
        if catalog_changed {
            if let Err(e) = self.refresh_catalog() {
                // Transactions fall back to loading the catalog from their snapshot when the
                // in-memory copy's version does not match, so this only costs speed.
                error!(error = %e, "reloading the catalog after DDL failed");
            }
        }

        for (req, outcome) in reqs.into_iter().zip(outcomes) {
            match (req, outcome) {
                (Pending::Raft(req), Ok(Staged::Raft(applied))) => {
                    self.publish(req.ws, req.records, &applied);
                    let _ = req.reply.send(Ok(CommitInfo {
                        version: applied.version,
                        ts: applied.ts,
                        first_position: applied.first_position,
                        last_position: applied.last_position,
                    }));
                }
                (Pending::Lww(req), Ok(Staged::Lww(applied))) => {
                    let info = CommitInfo {
                        version: self.state.version,
                        ts: applied.ts,
                        first_position: applied.first_position,
                        last_position: applied.first_position + applied.changes.len() as u64 - 1,
                    };
                    self.publish_lww(applied, &catalog);
                    let _ = req.reply.send(Ok(info));
                }
                // The transaction may have been dropped while waiting; nothing to tell then.
                (Pending::Raft(req), Err(e)) => {
                    let _ = req.reply.send(Err(e));
                }
                (Pending::Lww(req), Err(e)) => {
                    let _ = req.reply.send(Err(e));
                }
                (Pending::Raft(req), Ok(_)) => {
                    let _ = req
                        .reply
                        .send(Err(Error::Engine("commit outcome mismatch".into())));
                }
                (Pending::Lww(req), Ok(_)) => {
                    let _ = req
                        .reply
                        .send(Err(Error::Engine("commit outcome mismatch".into())));
                }
            }
        }
    }

    /// An HLC timestamp strictly above the previous commit's.
    fn next_ts(&self, last: u64) -> u64 {
        let ts = self.hlc.next_timestamp().map_or(0, |t| t.as_u64());
        ts.max(last + 1)
    }

    fn refresh_catalog(&self) -> Result<()> {
        let catalog = Arc::new(load_catalog_latest(&self.engine)?);
        let old = std::mem::replace(
            &mut *self.catalog.write(),
            CatalogState {
                version: self.state.catalog_version,
                catalog: catalog.clone(),
            },
        );
        if let Err(e) = crate::lww_apply::reconcile_lww(&self.engine, &old.catalog, &catalog) {
            error!(error = %e, "updating lww tables after a schema change failed");
        }
        Ok(())
    }

    fn publish(&self, ws: WriteSet, mut records: Vec<ChangeRecord>, applied: &Applied) {
        for (i, r) in records.iter_mut().enumerate() {
            r.position = applied.first_position + i as u64;
            r.ts = applied.ts;
        }
        let event = CommitEvent {
            version: applied.version,
            ts: applied.ts,
            changes: records,
            notifications: ws.notifications,
            catalog_changed: ws.catalog_changed,
            origin: ws.origin,
            reset: false,
            seq: 0,
        };
        self.events.send(event);
    }
}

impl Committer {
    /// Applies replicated write sets in log order into one batch, with the replication layer's
    /// state and the applied request ids, so that the data and `last_applied` never disagree.
    /// The batch is not synced: the replicated log is durable and is replayed after a crash
    /// (`Storage::export_snapshot` syncs before a snapshot lets the log be purged).
    pub(crate) fn apply_replicated(
        &mut self,
        writes: Vec<ReplicatedWrite>,
        meta: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<Vec<ApplyOutcome>> {
        if self.stopped {
            return Err(Error::ShuttingDown);
        }
        let result = self.apply_replicated_batch(&writes, meta);
        match result {
            Ok(done) => {
                self.last_position
                    .store(self.state.position, Ordering::Release);
                let catalog_changed = writes
                    .iter()
                    .zip(&done)
                    .any(|(w, (_, fresh))| *fresh && w.ws.catalog_changed);
                if catalog_changed {
                    if let Err(e) = self.refresh_catalog() {
                        error!(error = %e, "reloading the catalog after DDL failed");
                    }
                }
                let catalog = self.catalog.read().catalog.clone();
                let mut outcomes = Vec::with_capacity(done.len());
                for (w, (outcome, fresh)) in writes.into_iter().zip(done) {
                    if let (Ok(info), true) = (&outcome, fresh) {
                        self.publish_replicated(w, info, &catalog);
                    }
                    outcomes.push(outcome);
                }
                Ok(outcomes)
            }
            Err(e) => {
                error!(error = %e, "applying replicated commits failed");
                Err(e)
            }
        }
    }

    /// `(outcome, applied now)` per write; a write whose request id was applied before gets
    /// the outcome recorded then and changes nothing.
    fn apply_replicated_batch(
        &mut self,
        writes: &[ReplicatedWrite],
        meta: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<Vec<(ApplyOutcome, bool)>> {
        let mut batch = ApplyBatch::new(&self.engine, self.state);
        let mut seen: HashMap<RequestId, ApplyOutcome> = HashMap::new();
        let mut done = Vec::with_capacity(writes.len());
        for w in writes {
            if let Some(o) = seen.get(&w.id) {
                done.push((o.clone(), false));
                continue;
            }
            let key = dedup_key(w);
            if let Some(stored) = read_meta(&self.engine, &key)? {
                done.push((decode_outcome(&stored)?, false));
                continue;
            }
            if w.ts.saturating_add(DEDUP_WINDOW) < batch.state().ts {
                // Its id may have been forgotten already: applying it could apply it twice.
                // Decided from replicated state only, so every replica refuses it alike.
                done.push((
                    Err(Error::Unavailable {
                        message: "the commit reached the state machine after its retry window"
                            .into(),
                        maybe_committed: true,
                    }),
                    false,
                ));
                continue;
            }
            let version = batch.state().version + 1;
            let ts = w.ts.max(batch.state().ts + 1);
            let outcome = match apply(&mut batch, &w.ws, version, ts) {
                Ok(a) => Ok(CommitInfo {
                    version: a.version,
                    ts: a.ts,
                    first_position: a.first_position,
                    last_position: a.last_position,
                }),
                // A conflict is decided by the data, the same on every replica.
                Err(e @ Error::SerializationFailure { .. }) => Err(e),
                // Anything else (a disk error) is not deterministic: stop applying.
                Err(e) => return Err(e),
            };
            batch.stage_meta(&key, &encode_outcome(&outcome))?;
            seen.insert(w.id, outcome.clone());
            done.push((outcome, true));
        }
        for (k, v) in meta {
            batch.stage_meta(k, v)?;
        }
        // Forget request ids older than the window, about once a minute of commit time (the
        // bucket is a function of the replicated timestamps, so every replica does it at the
        // same entry; one range deletion per minute keeps range tombstones few).
        let (before, after) = (self.state.ts >> 38, batch.state().ts >> 38);
        if before != after && batch.state().ts > DEDUP_WINDOW {
            let horizon = batch.state().ts - DEDUP_WINDOW;
            batch.stage_delete_range(&dedup_bound(0), &dedup_bound(horizon))?;
        }
        self.state = batch.write(false)?;
        if let Ok(ts) = HlcTimestamp::try_from(self.state.ts) {
            // Keeps locally proposed timestamps ahead of what was applied.
            let _ = self.hlc.update(&ts);
        }
        Ok(done)
    }

    fn publish_replicated(&self, w: ReplicatedWrite, info: &CommitInfo, catalog: &Catalog) {
        let mut records = Vec::with_capacity(w.ws.changes.len());
        for (i, c) in w.ws.changes.iter().enumerate() {
            let position = info.first_position + i as u64;
            match decode_record(position, &encode_record(info.ts, c), catalog) {
                Ok(r) => records.push(r),
                Err(e) => warn!(error = %e, position, "cannot decode a replicated change"),
            }
        }
        let event = CommitEvent {
            version: info.version,
            ts: info.ts,
            changes: records,
            notifications: w.ws.notifications,
            catalog_changed: w.ws.catalog_changed,
            origin: w.ws.origin,
            reset: false,
            seq: 0,
        };
        self.events.send(event);
    }

    /// Replaces the database contents with a snapshot file and empties the change log, then
    /// tells subscribers that what they had is reset.
    fn install(&mut self, path: &Path) -> Result<()> {
        let data_cf = self.engine.cf(CF_DATA)?;
        let changes_cf = self.engine.cf(CF_CHANGES)?;
        // The change log first: a crash between the two leaves the old data with an empty log,
        // which readers of the log see as "everything before is gone" (55000), never as records
        // that do not match the data.
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(&changes_cf, 0u64.to_be_bytes(), u64::MAX.to_be_bytes());
        // Change positions never go back, though local lww commits may have taken this node's
        // past the snapshot's: remember the floor with the emptied log.
        let lww_cf = self.engine.cf(crate::engine::CF_LWW)?;
        batch.put_cf(&lww_cf, POSITION_FLOOR, self.state.position.to_be_bytes());
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.engine.db.write_opt(batch, &opts).map_err(engine)?;
        // One ingestion replaces every `data` key atomically (the file's range deletion).
        let mut ingest = IngestExternalFileOptions::default();
        ingest.set_move_files(false);
        self.engine
            .db
            .ingest_external_file_cf_opts(&data_cf, &ingest, vec![path])
            .map_err(engine)?;
        self.state = read_commit_state(&self.engine)?;
        self.last_position
            .store(self.state.position, Ordering::Release);
        if let Ok(ts) = HlcTimestamp::try_from(self.state.ts) {
            let _ = self.hlc.update(&ts);
        }
        self.refresh_catalog()?;
        let event = CommitEvent {
            version: self.state.version,
            ts: self.state.ts,
            changes: Vec::new(),
            notifications: Vec::new(),
            catalog_changed: true,
            origin: 0,
            reset: true,
            seq: 0,
        };
        self.events.send(event);
        Ok(())
    }
}

/// What a pending commit staged.
pub(crate) enum Staged {
    Raft(Applied),
    Lww(LwwApplied),
}

/// Where commits are handed: the committer thread's queue, and the committer itself.
pub(crate) struct CommitPath<'a> {
    pub tx: &'a std::sync::mpsc::Sender<Msg>,
    pub state: &'a Mutex<Committer>,
    /// Local commits handed over and not yet answered.
    pub in_flight: &'a AtomicUsize,
    /// When (µs since `clock_base`) a commit was last handed over while others were in flight.
    pub last_concurrent: &'a AtomicU64,
}

/// How long after the last concurrent commit commits keep going to the committer's thread:
/// under concurrent load, the one that finds nobody in flight right after a group was answered
/// would otherwise be written alone, and the others that follow it a moment later as a second
/// group, two fsyncs where one did.
const CONCURRENT_SPELL_US: u64 = 50_000;

fn clock_us() -> u64 {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    BASE.get_or_init(std::time::Instant::now)
        .elapsed()
        .as_micros() as u64
}

/// Counts a commit in flight until dropped (answered, or its caller gone).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<'a> CommitPath<'a> {
    /// Commits `req`. A commit that is the only one in flight, with the committer idle and no
    /// concurrent commit for a while (`CONCURRENT_SPELL_US`), is written on this thread: no wake-up of the committer's thread and none of this one when
    /// it answers, which on a busy machine each cost a wait for a CPU (up to a scheduler
    /// tick). With others in flight it goes to the committer's thread, which gathers them into
    /// one group and one fsync. Commits that arrive while one is written here queue for the
    /// committer's thread and form the next group.
    fn hand_over(&self, req: Pending) -> Result<InFlight<'a>> {
        let now = clock_us();
        let alone = self.in_flight.fetch_add(1, Ordering::AcqRel) == 0;
        let guard = InFlight(self.in_flight);
        if !alone {
            self.last_concurrent.store(now, Ordering::Relaxed);
        }
        let quiet =
            now.saturating_sub(self.last_concurrent.load(Ordering::Relaxed)) > CONCURRENT_SPELL_US;
        if alone && quiet {
            if let Some(mut c) = self.state.try_lock() {
                if c.stopped {
                    return Err(Error::ShuttingDown);
                }
                c.commit_group(vec![req]);
                return Ok(guard);
            }
        }
        let msg = match req {
            Pending::Raft(r) => Msg::Commit(Box::new(r)),
            Pending::Lww(r) => Msg::Lww(Box::new(r)),
        };
        self.tx.send(msg).map_err(|_| Error::ShuttingDown)?;
        Ok(guard)
    }
}

/// Commits a write set and waits for the answer.
pub(crate) async fn submit(
    path: CommitPath<'_>,
    ws: WriteSet,
    records: Vec<ChangeRecord>,
) -> Result<CommitInfo> {
    let (reply, rx) = oneshot::channel();
    let _in_flight = path.hand_over(Pending::Raft(CommitRequest { ws, records, reply }))?;
    rx.await.map_err(|_| Error::ShuttingDown)?
}

/// Commits a local commit to lww tables and waits until it is durable.
pub(crate) async fn submit_lww(
    path: CommitPath<'_>,
    rows: Vec<crate::lww::RowWrite>,
    notifications: Vec<(String, String)>,
    pid: u32,
) -> Result<CommitInfo> {
    let (reply, rx) = oneshot::channel();
    let _in_flight = path.hand_over(Pending::Lww(LwwRequest {
        rows,
        notifications,
        pid,
        reply,
    }))?;
    rx.await.map_err(|_| Error::ShuttingDown)?
}
