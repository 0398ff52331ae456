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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use hlc_gen::HlcGenerator;
use parking_lot::RwLock;
use tokio::sync::{broadcast, oneshot};
use tracing::{error, warn};

use crate::apply::{apply, Applied, ApplyBatch, CommitState, WriteSet};
use crate::change::{ChangeRecord, CommitEvent};
use crate::engine::{load_catalog_latest, Engine, CF_CHANGES, CF_DATA};
use crate::error::{engine, Error, Result};
use crate::storage::{CatalogState, CommitInfo};

/// Most write sets put into one batch; bounds latency for the first of a large burst.
const MAX_BATCH: usize = 512;

pub(crate) struct CommitRequest {
    pub ws: WriteSet,
    /// The write set's change records with rows decoded, positions and ts not yet assigned.
    pub records: Vec<ChangeRecord>,
    pub reply: oneshot::Sender<Result<CommitInfo>>,
}

pub(crate) enum Msg {
    Commit(Box<CommitRequest>),
    Shutdown,
}

pub(crate) struct Committer {
    pub engine: Arc<Engine>,
    pub catalog: Arc<RwLock<CatalogState>>,
    pub last_position: Arc<AtomicU64>,
    pub hlc: Arc<HlcGenerator>,
    pub events: broadcast::Sender<Arc<CommitEvent>>,
    pub sync: bool,
    pub state: CommitState,
}

impl Committer {
    pub fn run(mut self, rx: Receiver<Msg>) {
        let mut stop = false;
        while !stop {
            let Ok(first) = rx.recv() else { break };
            let mut reqs = Vec::new();
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Commit(req) => reqs.push(*req),
                    Msg::Shutdown => {
                        stop = true;
                        break;
                    }
                }
                if reqs.len() >= MAX_BATCH {
                    break;
                }
                // Empty: the batch is complete. Disconnected: handled by the next recv().
                next = rx.try_recv().ok();
            }
            if !reqs.is_empty() {
                self.commit_group(reqs);
            }
        }
        // Requests still queued get their reply sender dropped, which their txn reports as
        // ShuttingDown.
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

    fn commit_group(&mut self, reqs: Vec<CommitRequest>) {
        let mut batch = ApplyBatch::new(&self.engine, self.state);
        let mut outcomes: Vec<Result<Applied>> = Vec::with_capacity(reqs.len());
        for req in &reqs {
            let version = batch.state().version + 1;
            let ts = self.next_ts(batch.state().ts);
            outcomes.push(apply(&mut batch, &req.ws, version, ts));
        }
        let any_applied = outcomes.iter().any(Result::is_ok);
        // A group of NOTIFY-only transactions changes no data: like PostgreSQL, which writes no
        // commit record for a transaction without an XID, it is not worth an fsync. Its counters
        // are made durable by the next synced group (or the flush at shutdown).
        let durable = reqs
            .iter()
            .zip(&outcomes)
            .any(|(r, o)| o.is_ok() && !(r.ws.writes.is_empty() && r.ws.changes.is_empty()));
        if any_applied {
            match batch.write(self.sync && durable) {
                Ok(state) => self.state = state,
                Err(e) => {
                    error!(error = %e, "writing a commit batch failed");
                    for o in outcomes.iter_mut().filter(|o| o.is_ok()) {
                        *o = Err(e.clone());
                    }
                }
            }
        }
        self.last_position
            .store(self.state.position, Ordering::Release);

        let catalog_changed = reqs
            .iter()
            .zip(&outcomes)
            .any(|(r, o)| o.is_ok() && r.ws.catalog_changed);
        if catalog_changed {
            if let Err(e) = self.refresh_catalog() {
                // Transactions fall back to loading the catalog from their snapshot when the
                // in-memory copy's version does not match, so this only costs speed.
                error!(error = %e, "reloading the catalog after DDL failed");
            }
        }

        for (req, outcome) in reqs.into_iter().zip(outcomes) {
            let reply = match outcome {
                Ok(applied) => {
                    self.publish(req.ws, req.records, &applied);
                    Ok(CommitInfo {
                        version: applied.version,
                        ts: applied.ts,
                        first_position: applied.first_position,
                        last_position: applied.last_position,
                    })
                }
                Err(e) => Err(e),
            };
            // The transaction may have been dropped while waiting; nothing to tell then.
            let _ = req.reply.send(reply);
        }
    }

    /// An HLC timestamp strictly above the previous commit's.
    fn next_ts(&self, last: u64) -> u64 {
        let ts = self.hlc.next_timestamp().map_or(0, |t| t.as_u64());
        ts.max(last + 1)
    }

    fn refresh_catalog(&self) -> Result<()> {
        let catalog = load_catalog_latest(&self.engine)?;
        *self.catalog.write() = CatalogState {
            version: self.state.catalog_version,
            catalog: Arc::new(catalog),
        };
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
        };
        // No subscribers is fine: the durable log has everything.
        let _ = self.events.send(Arc::new(event));
    }
}

/// Sends `req` to the committer and waits for its answer.
pub(crate) async fn submit(
    tx: &std::sync::mpsc::Sender<Msg>,
    ws: WriteSet,
    records: Vec<ChangeRecord>,
) -> Result<CommitInfo> {
    let (reply, rx) = oneshot::channel();
    tx.send(Msg::Commit(Box::new(CommitRequest { ws, records, reply })))
        .map_err(|_| Error::ShuttingDown)?;
    rx.await.map_err(|_| Error::ShuttingDown)?
}
