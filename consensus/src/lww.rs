//! LWW replication: every node pulls every other member's LWW origin log over the peer RPC and
//! merges it; a node whose position was purged from an origin's log gets a full sync of only the
//! buckets whose checksums differ. Alongside: the origin log's purge (entries every member has
//! pulled, or beyond `--lww-log-retain`), idle ticks, and tombstone purge once every member has
//! applied every write older than the tombstone.
//!
//! ```text
//!   puller(origin) ──lww_pull(after = my position, stable = my frontier)──▶ origin
//!        ▲   │ Entries ──▶ Storage::lww_apply (clock check; position in the same batch)
//!        │   │ Purged  ──▶ full sync: lww_checksums ─▶ differing buckets ─▶ lww_rows ─▶ merge
//!        └───┘ (long poll: the origin answers when it has something or after `PULL_WAIT`)
//! ```

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::async_runtime::watch::WatchReceiver;
use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};
use weft_storage::{Error as StorageError, LogRead, Storage};

use crate::network::{PeerError, Peers};
use crate::node::WeftRaft;

/// How long an origin holds a pull open waiting for new entries.
pub const PULL_WAIT: Duration = Duration::from_millis(1000);
/// How long an origin that has just received a commit waits for more before answering a pull.
pub const PULL_COALESCE: Duration = Duration::from_millis(1);
/// Most entries one pull returns.
const PULL_MAX: u32 = 1024;
/// After a pull that brought entries, a puller waits this long before the next one, so that under
/// a stream of commits one pull (one RPC, one merge batch on this node, one read of the origin's
/// log) carries every commit of the interval instead of one or two each. It bounds what this
/// adds to replication lag (issue 5's goal: p99 under 100 ms); an idle origin's first commit is
/// still answered at once by the long poll.
pub const PULL_PACE: Duration = Duration::from_millis(10);
/// How often the supervisor looks at the membership, purges the log and tombstones.
const HOUSEKEEPING: Duration = Duration::from_millis(500);
/// Fewest acknowledged origin log entries worth one purge.
const PURGE_STEP: u64 = 1024;
/// An origin that committed nothing for this long commits an empty entry, so that peers' view
/// of how far it has sent (and with it, tombstone purge) moves on.
const TICK_AFTER: Duration = Duration::from_secs(5);

/// LWW replication settings.
#[derive(Debug, Clone)]
pub struct LwwConfig {
    /// Entries from a peer whose timestamps are further ahead of the local clock are refused.
    pub max_clock_offset: Duration,
    /// Most entries of the origin log kept for a peer that has not pulled them.
    pub log_retain: u64,
}

/// Shared state of this node's LWW replication.
pub(crate) struct LwwState {
    pub cfg: LwwConfig,
    /// Per peer: the last position it pulled from (it has applied everything before) and the
    /// stable timestamp it reported.
    pub peers: Mutex<HashMap<u64, PeerProgress>>,
    /// Per origin: why its entries are being refused (shown in `weft_nodes.status`).
    pub refused: Mutex<HashMap<u64, String>>,
    pullers: Mutex<HashMap<u64, JoinHandle<()>>>,
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PeerProgress {
    pub acked: u64,
    pub stable: u64,
}

impl LwwState {
    pub fn new(cfg: LwwConfig) -> Arc<LwwState> {
        Arc::new(LwwState {
            cfg,
            peers: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashMap::new()),
            pullers: Mutex::new(HashMap::new()),
        })
    }

    /// Records a peer's pull: it has applied our log up to `after`; `stable` is its frontier.
    pub fn on_pull(&self, peer: u64, after: u64, stable: u64) {
        let mut peers = self.peers.lock();
        let p = peers.entry(peer).or_default();
        p.acked = p.acked.max(after);
        p.stable = p.stable.max(stable);
    }

    /// The refusal shown for `origin` in `weft_nodes`, if its entries are being refused.
    pub fn refusal(&self, origin: u64) -> Option<String> {
        self.refused.lock().get(&origin).cloned()
    }

    pub fn stop(&self) {
        for (_, t) in self.pullers.lock().drain() {
            t.abort();
        }
    }
}

/// What the LWW tasks need of the node.
#[derive(Clone)]
pub(crate) struct LwwCtx {
    pub me: u64,
    pub storage: Storage,
    pub raft: WeftRaft,
    pub peers: Arc<Peers>,
    pub state: Arc<LwwState>,
}

impl LwwCtx {
    fn members(&self) -> Vec<(u64, String)> {
        let m = self.raft.metrics().borrow_watched().clone();
        m.membership_config
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.peer_addr.clone()))
            .collect()
    }

    fn addr_of(&self, id: u64) -> Option<String> {
        self.members()
            .into_iter()
            .find(|(i, _)| *i == id)
            .map(|(_, a)| a)
    }

    /// Everything from every member with a timestamp up to this has been applied here (the
    /// minimum over members of the last timestamp applied from each; our own clock for us).
    pub fn stable(&self) -> u64 {
        let positions = self.storage.lww_positions().unwrap_or_default();
        let mut stable = self.storage.now();
        for (id, _) in self.members() {
            if id == self.me {
                continue;
            }
            stable = stable.min(positions.get(&id).map_or(0, |p| p.1));
        }
        stable
    }
}

/// Runs the supervisor: starts and stops a puller per member, purges the origin log and
/// tombstones, ticks when idle.
pub(crate) async fn supervise(ctx: LwwCtx) {
    let mut last_tick = Instant::now();
    let mut last_head = ctx.storage.lww_head();
    loop {
        tokio::time::sleep(HOUSEKEEPING).await;
        let members: BTreeSet<u64> = ctx
            .members()
            .into_iter()
            .map(|(id, _)| id)
            .filter(|id| *id != ctx.me)
            .collect();
        {
            let mut pullers = ctx.state.pullers.lock();
            pullers.retain(|id, task| {
                let keep = members.contains(id) && !task.is_finished();
                if !keep {
                    task.abort();
                }
                keep
            });
            for id in &members {
                if !pullers.contains_key(id) {
                    pullers.insert(*id, tokio::spawn(pull_loop(ctx.clone(), *id)));
                }
            }
        }
        ctx.state.peers.lock().retain(|id, _| members.contains(id));
        ctx.state
            .refused
            .lock()
            .retain(|id, _| members.contains(id));
        if ctx.storage.lww_tables().is_empty() {
            continue;
        }
        purge_log(&ctx, &members);
        // Tombstones: once every member's frontier is past them.
        let progress = ctx.state.peers.lock().clone();
        if members.iter().all(|id| progress.contains_key(id)) {
            let horizon = members
                .iter()
                .map(|id| progress[id].stable)
                .fold(ctx.stable(), u64::min);
            match ctx.storage.lww_purge_tombstones(horizon).await {
                Ok(0) => {}
                Ok(n) => info!(purged = n, "lww tombstones purged"),
                Err(e) => warn!(error = %e, "purging lww tombstones failed"),
            }
        }
        let head = ctx.storage.lww_head();
        if head != last_head {
            last_head = head;
            last_tick = Instant::now();
        } else if last_tick.elapsed() >= TICK_AFTER {
            last_tick = Instant::now();
            if let Err(e) = ctx.storage.lww_tick().await {
                warn!(error = %e, "lww idle tick failed");
            }
            last_head = ctx.storage.lww_head();
        }
    }
}

/// Deletes origin log entries every member has pulled, and entries beyond the retention.
fn purge_log(ctx: &LwwCtx, members: &BTreeSet<u64>) {
    let Ok((oldest, head)) = ctx.storage.lww_log_bounds() else {
        return;
    };
    let progress = ctx.state.peers.lock().clone();
    let acked_by_all = members
        .iter()
        .map(|id| progress.get(id).map_or(0, |p| p.acked))
        .min()
        .unwrap_or(head);
    let beyond_retention = head.saturating_sub(ctx.state.cfg.log_retain);
    let upto = acked_by_all.max(beyond_retention);
    // Each purge is a range deletion every later read of the CF must account for: purge in
    // steps of PURGE_STEP entries, unless the retention bound demands it.
    if upto >= oldest && (upto + 1 - oldest >= PURGE_STEP || beyond_retention >= oldest) {
        if let Err(e) = ctx.storage.lww_log_purge(upto) {
            warn!(error = %e, "purging the lww log failed");
            return;
        }
        // A member that had not pulled the purged entries will need a full sync: said once,
        // by the purge that first passes its position.
        for id in members {
            let acked = progress.get(id).map_or(0, |p| p.acked);
            if acked < upto && acked + 1 >= oldest {
                info!(
                    peer = id,
                    acked, upto, "lww log purged past a lagging peer's position: full sync ahead"
                );
            }
        }
    }
}

/// Pulls `origin`'s log forever (until aborted).
async fn pull_loop(ctx: LwwCtx, origin: u64) {
    let mut backoff = Duration::from_millis(50);
    loop {
        match pull_once(&ctx, origin).await {
            Ok(Pulled::Some) => {
                backoff = Duration::from_millis(50);
                tokio::time::sleep(PULL_PACE).await;
            }
            Ok(Pulled::Nothing | Pulled::Full) => backoff = Duration::from_millis(50),
            Err(wait) => {
                tokio::time::sleep(wait.min(backoff)).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// What one pull brought.
enum Pulled {
    /// Nothing new (the long poll timed out), or a full sync was done.
    Nothing,
    /// Some entries, applied.
    Some,
    /// As many entries as one pull may carry: more are likely waiting, pull again at once.
    Full,
}

/// One pull and its apply. `Err(d)`: wait about `d` before the next.
async fn pull_once(ctx: &LwwCtx, origin: u64) -> Result<Pulled, Duration> {
    let Some(addr) = ctx.addr_of(origin) else {
        return Err(Duration::from_secs(1));
    };
    let after = ctx
        .storage
        .lww_positions()
        .map_err(|_| Duration::from_secs(1))?
        .get(&origin)
        .map_or(0, |p| p.0);
    let stable = ctx.stable();
    let me = ctx.me;
    let wait_ms = PULL_WAIT.as_millis() as u64;
    let read = ctx
        .peers
        .call(
            origin,
            &addr,
            PULL_WAIT + Duration::from_secs(5),
            |c, cx| async move { c.lww_pull(cx, me, after, PULL_MAX, wait_ms, stable).await },
        )
        .await
        .map_err(|_| Duration::from_millis(200))?
        .map_err(|_| Duration::from_millis(200))?;
    match read {
        LogRead::Entries { entries, .. } if entries.is_empty() => Ok(Pulled::Nothing),
        LogRead::Entries { entries, .. } => {
            let full = entries.len() >= PULL_MAX as usize;
            apply(ctx, origin, entries).await?;
            Ok(if full { Pulled::Full } else { Pulled::Some })
        }
        LogRead::Purged { oldest, head } => {
            info!(
                origin,
                after, oldest, head, "lww log purged past this node's position: full sync"
            );
            match full_sync(ctx, origin, &addr, head).await {
                Ok(()) => Ok(Pulled::Nothing),
                Err(e) => {
                    warn!(origin, error = %e, "lww full sync failed");
                    Err(Duration::from_secs(1))
                }
            }
        }
    }
}

async fn apply(
    ctx: &LwwCtx,
    origin: u64,
    entries: Vec<weft_storage::LwwEntry>,
) -> Result<(), Duration> {
    let n = entries.len();
    let max = ctx.state.cfg.max_clock_offset;
    match ctx.storage.lww_apply(origin, entries, max).await {
        Ok(applied) => {
            if ctx.state.refused.lock().remove(&origin).is_some() {
                info!(origin, "lww entries accepted again");
            }
            if applied < n {
                // An entry needs a catalog (DDL) this node has not applied yet: catch up.
                if ctx.storage.read_barrier().await.is_err() {
                    return Err(Duration::from_millis(200));
                }
            }
            Ok(())
        }
        Err(e @ StorageError::ClockAhead { .. }) => {
            let status = format!("refused: {e}");
            if ctx.state.refused.lock().insert(origin, status).is_none() {
                error!(origin, error = %e, "refusing lww changes from a node whose clock is ahead");
            }
            Err(Duration::from_millis(500))
        }
        Err(e) => {
            warn!(origin, error = %e, "applying lww entries failed");
            Err(Duration::from_secs(1))
        }
    }
}

/// Brings every lww table in line with `origin` by shipping only the buckets whose checksums
/// differ, then continues from `head` of its log.
async fn full_sync(ctx: &LwwCtx, origin: u64, addr: &str, head: u64) -> Result<(), String> {
    // Our catalog must know every table the origin may have rows of.
    ctx.storage
        .read_barrier()
        .await
        .map_err(|e| e.to_string())?;
    let me = ctx.me;
    let timeout = Duration::from_secs(30);
    let mut shipped = 0usize;
    for table in ctx.storage.lww_tables() {
        let theirs = ctx
            .peers
            .call(origin, addr, timeout, |c, cx| async move {
                c.lww_checksums(cx, me, table).await
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e: PeerError| e.to_string())?;
        let mine = ctx
            .storage
            .lww_bucket_checksums(table)
            .map_err(|e| e.to_string())?;
        let differ: Vec<u32> = (0..mine.len())
            .filter(|&b| theirs.get(b) != mine.get(b))
            .map(|b| b as u32)
            .collect();
        if differ.is_empty() {
            continue;
        }
        let rows = ctx
            .peers
            .call(origin, addr, timeout, |c, cx| async move {
                c.lww_rows(cx, me, table, differ).await
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e: PeerError| e.to_string())?;
        shipped += rows.len();
        ctx.storage
            .lww_merge_rows(table, rows)
            .await
            .map_err(|e| e.to_string())?;
    }
    ctx.storage
        .lww_set_position(origin, head, 0)
        .await
        .map_err(|e| e.to_string())?;
    info!(origin, head, rows = shipped, "lww full sync done");
    Ok(())
}
