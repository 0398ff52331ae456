//! One cluster member: the Raft instance, the peer service, joining, and the `Replicator` that
//! storage hands every commit to.
//!
//! ```text
//!   COMMIT on any node ─▶ ClusterReplicator::commit(ws) ── id = (node, incarnation, seq)
//!        │ leader here?  yes ─▶ Raft::client_write ─▶ majority ─▶ state machine applies ─▶ outcome
//!        │               no  ─▶ propose RPC to the leader (same id; retried until the deadline,
//!        │                      the state machine applies an id at most once)
//!   read ─▶ read_barrier: leader: read index (heartbeat to a quorum);
//!                         follower: the leader's read index, then wait until applied locally
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures::StreamExt;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::type_config::alias::{SnapshotMetaOf, VoteOf};
use openraft::{ChangeMembers, ReadPolicy, ServerState, Snapshot};
use parking_lot::Mutex;
use tarpc::server::{BaseChannel, Channel};
use tarpc::tokio_serde::formats::Bincode;
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;
use tracing::{info, warn};
use weft_storage::{
    ApplyOutcome, CommitInfo, Error as StorageError, LogRead, ReplicatedWrite, Replicator,
    RequestId, RowState, SnapshotFile, Storage, WriteSet,
};

use crate::lww::{LwwConfig, LwwCtx, LwwState};

use crate::network::{unavailable, Faults, Network, Peer, PeerError, PeerStatus, Peers, MAX_FRAME};
use crate::store::{self, StateMachine};
use crate::types::{PeerNode, Request, Response, TypeConfig};

pub type WeftRaft = openraft::Raft<TypeConfig, StateMachine>;

/// How a node joins the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub node_id: u64,
    /// The PostgreSQL address clients use (shown in `weft_nodes`).
    pub pg_addr: String,
    pub peer_listen: SocketAddr,
    /// Members to contact when this data directory is not yet part of a cluster.
    pub join: Vec<String>,
    /// Longest a statement waits for the cluster.
    pub raft_timeout: Duration,
    /// Build a snapshot every this many log entries (the log before it is then purged).
    pub snapshot_logs: u64,
    /// LWW replication settings.
    pub lww: LwwConfig,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot listen for peers on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("raft: {0}")]
    Raft(String),
    #[error("storage: {0}")]
    Storage(#[from] std::io::Error),
}

/// A row of `weft_nodes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    pub node_id: u64,
    pub pg_addr: String,
    pub peer_addr: String,
    pub role: &'static str,
    pub voter: bool,
    pub last_applied: Option<u64>,
    pub status: String,
}

/// A running cluster member.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
    /// Where consensus runs (see `Cluster::start`).
    _runtime: Arc<RaftRuntime>,
}

/// The runtime of openraft's tasks and the peer service: one worker thread, so that the hops
/// between Raft's own tasks (core, state machine, replication streams, peer RPCs) are task
/// switches on that thread, not wake-ups of another worker. Shut down without waiting when the
/// last `Cluster` handle goes (it may go inside an async context).
struct RaftRuntime(Option<tokio::runtime::Runtime>);

impl Drop for RaftRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

struct Inner {
    id: u64,
    node: PeerNode,
    storage: Storage,
    raft: WeftRaft,
    peers: Arc<Peers>,
    incarnation: u64,
    seq: AtomicU64,
    raft_timeout: Duration,
    /// The snapshot being received, if any.
    incoming: tokio::sync::Mutex<Option<Incoming>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    lww: Arc<LwwState>,
}

impl Cluster {
    /// Opens the Raft state in `storage`, listens for peers, and bootstraps a one-node cluster
    /// or joins one when the data directory is not part of a cluster yet. Commits on `storage`
    /// go through Raft from now on.
    ///
    /// Consensus runs on a runtime of its own with one worker (`RaftRuntime`); sessions on
    /// the caller's runtime reach it through openraft's channels. On 2 vCPUs shared by three
    /// nodes, a commit woke the other worker of a node about 3 times per node (BENCHMARKS.md,
    /// "thread wake-ups per commit"). openraft's core is one task, so one worker does not
    /// limit it.
    pub async fn start(storage: Storage, cfg: ClusterConfig) -> Result<Cluster, ClusterError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("weft-raft")
            .enable_all()
            .build()
            .map_err(|e| ClusterError::Raft(format!("cannot start the raft runtime: {e}")))?;
        let handle = rt.handle().clone();
        let runtime = Arc::new(RaftRuntime(Some(rt)));
        let inner = handle
            .spawn(Cluster::start_inner(storage.clone(), cfg))
            .await
            .map_err(|e| ClusterError::Raft(format!("starting raft: {e}")))??;
        let cluster = Cluster {
            inner,
            _runtime: runtime,
        };
        storage.set_replicator(Arc::new(ClusterReplicator {
            inner: Arc::downgrade(&cluster.inner),
        }));
        Ok(cluster)
    }

    async fn start_inner(storage: Storage, cfg: ClusterConfig) -> Result<Arc<Inner>, ClusterError> {
        let (log, sm) = store::open(storage.clone(), cfg.node_id).await?;
        let raft_config = openraft::Config {
            cluster_name: "weft".into(),
            heartbeat_interval: 100,
            election_timeout_min: 400,
            election_timeout_max: 800,
            install_snapshot_timeout: 30_000,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(cfg.snapshot_logs),
            max_in_snapshot_log_to_keep: (cfg.snapshot_logs / 10).min(1_000),
            purge_batch_size: 1,
            // Followers receive entries while the leader's own WAL sync runs (store.rs syncs
            // appends on a thread of its own).
            broadcast_submitted_on_append: Some(true),
            ..Default::default()
        }
        .validate()
        .map_err(|e| ClusterError::Raft(e.to_string()))?;

        let mut listener = tarpc::serde_transport::tcp::listen(cfg.peer_listen, Bincode::default)
            .await
            .map_err(|source| ClusterError::Bind {
                addr: cfg.peer_listen,
                source,
            })?;
        listener.config_mut().max_frame_length(MAX_FRAME);
        let peer_addr = listener.local_addr();

        let faults = Arc::new(Faults::default());
        let peers = Peers::new(cfg.node_id, faults);
        let network = Network {
            peers: peers.clone(),
        };
        let raft = WeftRaft::new(cfg.node_id, Arc::new(raft_config), network, log, sm)
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let node = PeerNode {
            pg_addr: cfg.pg_addr.clone(),
            peer_addr: peer_addr.to_string(),
        };
        let inner = Arc::new(Inner {
            id: cfg.node_id,
            node: node.clone(),
            storage: storage.clone(),
            raft: raft.clone(),
            peers,
            incarnation: incarnation(),
            seq: AtomicU64::new(0),
            raft_timeout: cfg.raft_timeout,
            incoming: tokio::sync::Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
            lww: LwwState::new(cfg.lww.clone()),
        });

        let service = PeerService {
            inner: inner.clone(),
        };
        let server = tokio::spawn(async move {
            while let Some(conn) = listener.next().await {
                let Ok(transport) = conn else { continue };
                let _ = transport.get_ref().set_nodelay(true);
                let channel = BaseChannel::with_defaults(transport);
                let svc = service.clone();
                tokio::spawn(
                    channel
                        .execute(svc.serve())
                        .for_each_concurrent(None, |fut| fut),
                );
            }
        });
        inner.tasks.lock().push(server);

        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let has_data = !storage.catalog().entries.is_empty();
        if !initialized {
            if cfg.join.is_empty() {
                let members = BTreeMap::from([(cfg.node_id, node)]);
                raft.initialize(members)
                    .await
                    .map_err(|e| ClusterError::Raft(e.to_string()))?;
                info!(node_id = cfg.node_id, %peer_addr, "bootstrapped a one-node cluster");
                if has_data {
                    // The rows written before Raft are in no log entry: snapshot and purge so
                    // that nodes joining later receive them as a snapshot.
                    snapshot_and_purge(&raft, cfg.raft_timeout).await?;
                }
            } else if has_data {
                return Err(ClusterError::Raft(
                    "this data directory already holds tables: a node can only join a cluster \
                     with an empty data directory"
                        .into(),
                ));
            } else {
                let task = tokio::spawn(join_loop(inner.clone(), cfg.join.clone()));
                inner.tasks.lock().push(task);
            }
        } else if !cfg.join.is_empty() {
            info!("data directory is already part of a cluster: --join ignored");
        }

        let lww = tokio::spawn(crate::lww::supervise(LwwCtx {
            me: inner.id,
            storage: storage.clone(),
            raft: inner.raft.clone(),
            peers: inner.peers.clone(),
            state: inner.lww.clone(),
        }));
        inner.tasks.lock().push(lww);
        Ok(inner)
    }

    pub fn node_id(&self) -> u64 {
        self.inner.id
    }

    pub fn peer_addr(&self) -> &str {
        &self.inner.node.peer_addr
    }

    pub fn raft(&self) -> &WeftRaft {
        &self.inner.raft
    }

    /// Test hook: this node's LWW commits take timestamps `ms` ahead of its clock.
    pub fn set_clock_skew(&self, ms: i64) {
        self.inner.storage.set_clock_skew(ms);
    }

    pub fn faults(&self) -> &Arc<Faults> {
        self.inner.peers.faults()
    }

    /// Every member as this node sees it; other nodes are asked for their applied index.
    pub async fn nodes(&self) -> Vec<NodeRow> {
        let inner = &self.inner;
        let metrics = inner.raft.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership().clone();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        // Every peer is asked at once: an unreachable one costs one timeout, not one each.
        let rows = membership.nodes().map(|(id, node)| {
            let (id, metrics, voters) = (*id, &metrics, &voters);
            async move {
                let voter = voters.contains(&id);
                let role = if metrics.current_leader == Some(id) {
                    "leader"
                } else if voter {
                    "follower"
                } else {
                    "learner"
                };
                let (last_applied, status) = if id == inner.id {
                    (metrics.last_applied.as_ref().map(|l| l.index), "ok".into())
                } else {
                    let (applied, status) = peer_status(inner, id, &node.peer_addr).await;
                    (applied, inner.lww.refusal(id).unwrap_or(status))
                };
                NodeRow {
                    node_id: id,
                    pg_addr: node.pg_addr.clone(),
                    peer_addr: node.peer_addr.clone(),
                    role,
                    voter,
                    last_applied,
                    status,
                }
            }
        });
        futures::future::join_all(rows).await
    }

    /// Removes node `id` (through the leader; a leader being removed hands over first).
    pub async fn remove_node(&self, id: u64) -> Result<(), String> {
        self.inner
            .remove(id)
            .await
            .map_err(|e| format!("cannot remove node {id}: {e}"))
    }

    /// Stops Raft and the peer service.
    pub async fn shutdown(&self) {
        for t in self.inner.tasks.lock().drain(..) {
            t.abort();
        }
        self.inner.lww.stop();
        if let Err(e) = self.inner.raft.shutdown().await {
            warn!(error = %e, "raft shutdown");
        }
    }
}

/// Builds a snapshot of everything applied and purges the log it covers.
async fn snapshot_and_purge(raft: &WeftRaft, timeout: Duration) -> Result<(), ClusterError> {
    let err = |e: String| ClusterError::Raft(format!("initial snapshot: {e}"));
    let m = raft
        .wait(Some(timeout))
        .metrics(
            |m| m.state == ServerState::Leader,
            "leader of a one-node cluster",
        )
        .await
        .map_err(|e| err(e.to_string()))?;
    let applied = m.last_applied.as_ref().map_or(0, |l| l.index);
    raft.trigger()
        .snapshot()
        .await
        .map_err(|e| err(e.to_string()))?;
    raft.wait(Some(timeout))
        .metrics(
            |m| m.snapshot.as_ref().is_some_and(|s| s.index >= applied),
            "initial snapshot",
        )
        .await
        .map_err(|e| err(e.to_string()))?;
    raft.trigger()
        .purge_log(applied)
        .await
        .map_err(|e| err(e.to_string()))
}

/// A peer's applied index and `weft_nodes.status` as it answers (or does not) within a second.
async fn peer_status(inner: &Inner, id: u64, addr: &str) -> (Option<u64>, String) {
    let r = inner
        .peers
        .call(id, addr, Duration::from_secs(1), |c, ctx| async move {
            c.status(ctx, inner.id).await
        })
        .await;
    match r {
        Ok(Ok(s)) if s.node_id == id => (Some(s.last_applied), "ok".into()),
        Ok(Ok(s)) => (
            None,
            format!("refused: address answers as node {}", s.node_id),
        ),
        Ok(Err(e)) => (None, format!("refused: {e}")),
        Err(_) => (None, "unreachable".into()),
    }
}

/// A number that differs between two runs of the same node (request ids must not repeat after
/// a restart).
fn incarnation() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// Asks the `join` addresses, in turn, to add this node, until one accepts.
async fn join_loop(inner: Arc<Inner>, join: Vec<String>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        for addr in &join {
            let r = inner
                .peers
                .call(0, addr, Duration::from_secs(60), |c, ctx| {
                    let (id, node) = (inner.id, inner.node.clone());
                    async move { c.join(ctx, id, id, node).await }
                })
                .await;
            match r {
                Ok(Ok(())) => {
                    info!(node_id = inner.id, via = %addr, "joined the cluster");
                    return;
                }
                Ok(Err(e)) => warn!(via = %addr, error = %e, "join refused; retrying"),
                Err(e) => warn!(via = %addr, error = %e, "join failed; retrying"),
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

impl Inner {
    fn leader(&self) -> Option<u64> {
        self.raft.metrics().borrow_watched().current_leader
    }

    fn node_of(&self, id: u64) -> Option<PeerNode> {
        self.raft
            .metrics()
            .borrow_watched()
            .membership_config
            .membership()
            .get_node(&id)
            .cloned()
    }

    /// True when this node is the only voter and the leader: every acknowledged commit was
    /// applied here first, so reads need no barrier.
    fn alone(&self) -> bool {
        let rx = self.raft.metrics();
        let m = rx.borrow_watched();
        let mut voters = m.membership_config.membership().voter_ids();
        m.current_leader == Some(self.id)
            && m.state == ServerState::Leader
            && voters.next() == Some(self.id)
            && voters.next().is_none()
    }

    /// Waits (until `deadline`) for a known leader.
    async fn wait_leader(&self, deadline: Instant) -> Option<u64> {
        let mut rx = self.raft.metrics();
        loop {
            if let Some(l) = rx.borrow_watched().current_leader {
                return Some(l);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            if tokio::time::timeout(left, rx.changed()).await.is_err() {
                return None;
            }
        }
    }

    /// Proposes on this node, which believes it is the leader.
    async fn propose_local(&self, req: Request) -> Result<ApplyOutcome, PeerError> {
        match self.raft.client_write(req).await {
            Ok(resp) => match resp.data {
                Response(Some(outcome)) => Ok(outcome),
                Response(None) => Err(PeerError::Failed {
                    message: "the commit entry produced no outcome".into(),
                    maybe_proposed: true,
                }),
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(PeerError::NotLeader {
                    leader: f.leader_id,
                })
            }
            Err(e) => Err(PeerError::Failed {
                message: e.to_string(),
                maybe_proposed: true,
            }),
        }
    }

    /// Commits `ws` through the leader, retrying with the same request id until `raft_timeout`.
    async fn commit(&self, ws: WriteSet, ts: u64) -> Result<CommitInfo, StorageError> {
        let id = RequestId {
            node: self.id,
            incarnation: self.incarnation,
            seq: self.seq.fetch_add(1, Ordering::Relaxed),
        };
        let req = Request(ReplicatedWrite { id, ts, ws });
        let deadline = Instant::now() + self.raft_timeout;
        let mut maybe_proposed = false;
        let mut last_error = String::from("no leader");
        loop {
            let Some(leader) = self.wait_leader(deadline).await else {
                return Err(unavailable(
                    timeout_message(self.raft_timeout, &last_error),
                    maybe_proposed,
                ));
            };
            let attempt = if leader == self.id {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, self.propose_local(req.clone())).await {
                    Ok(r) => r,
                    Err(_) => Err(PeerError::Failed {
                        message: "timed out waiting for a majority".into(),
                        maybe_proposed: true,
                    }),
                }
            } else {
                self.forward(leader, req.clone(), deadline).await
            };
            match attempt {
                Ok(outcome) => return outcome,
                Err(PeerError::NotLeader { .. }) => {
                    last_error = format!("node {leader} is no longer the leader");
                    // Let the metrics catch up with the new leader.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(PeerError::Partitioned(_)) => {
                    last_error = format!("node {leader} is partitioned away");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(PeerError::Failed {
                    message,
                    maybe_proposed: m,
                }) => {
                    maybe_proposed |= m;
                    last_error = message;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            if Instant::now() >= deadline {
                return Err(unavailable(
                    timeout_message(self.raft_timeout, &last_error),
                    maybe_proposed,
                ));
            }
        }
    }

    async fn forward(
        &self,
        leader: u64,
        req: Request,
        deadline: Instant,
    ) -> Result<ApplyOutcome, PeerError> {
        let Some(node) = self.node_of(leader) else {
            return Err(PeerError::NotLeader { leader: None });
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let r = self
            .peers
            .call(leader, &node.peer_addr, left, |c, ctx| async move {
                c.propose(ctx, self.id, req).await
            })
            .await;
        match r {
            Ok(r) => r,
            Err(e) => Err(PeerError::Failed {
                maybe_proposed: !e.surely_not_sent(),
                message: e.to_string(),
            }),
        }
    }

    /// Returns once this node has applied everything committed before the call.
    async fn read_barrier(&self) -> Result<(), StorageError> {
        if self.alone() {
            return Ok(());
        }
        let deadline = Instant::now() + self.raft_timeout;
        let fail = |m: String| {
            unavailable(
                format!("cannot confirm that this read sees the latest commits: {m}"),
                false,
            )
        };
        let mut last_error = String::from("no leader");
        loop {
            let Some(leader) = self.wait_leader(deadline).await else {
                return Err(fail(timeout_message(self.raft_timeout, &last_error)));
            };
            let index = if leader == self.id {
                self.local_read_index().await
            } else {
                match self.node_of(leader) {
                    Some(node) => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        match self
                            .peers
                            .call(leader, &node.peer_addr, left, |c, ctx| async move {
                                c.read_index(ctx, self.id).await
                            })
                            .await
                        {
                            Ok(r) => r,
                            Err(e) => Err(PeerError::Failed {
                                message: e.to_string(),
                                maybe_proposed: false,
                            }),
                        }
                    }
                    None => Err(PeerError::NotLeader { leader: None }),
                }
            };
            match index {
                Ok(index) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    return self
                        .raft
                        .wait(Some(left))
                        .applied_index_at_least(Some(index), "read barrier")
                        .await
                        .map(|_| ())
                        .map_err(|e| fail(e.to_string()));
                }
                Err(e) => last_error = e.to_string(),
            }
            if Instant::now() >= deadline {
                return Err(fail(timeout_message(self.raft_timeout, &last_error)));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The read index on the leader: by lease while the leader's quorum lease is fresh (no
    /// network round trip; assumes the clocks' rates on the nodes agree, as openraft's lease
    /// does), else by a heartbeat round to a quorum (ReadIndex).
    async fn local_read_index(&self) -> Result<u64, PeerError> {
        if let Ok(l) = self.raft.get_read_linearizer(ReadPolicy::LeaseRead).await {
            return Ok(l.read_log_id().index());
        }
        match self.raft.get_read_linearizer(ReadPolicy::ReadIndex).await {
            Ok(l) => Ok(l.read_log_id().index()),
            Err(e) => match e.forward_to_leader() {
                Some(f) => Err(PeerError::NotLeader {
                    leader: f.leader_id,
                }),
                None => Err(PeerError::Failed {
                    message: e.to_string(),
                    maybe_proposed: false,
                }),
            },
        }
    }

    /// Forwards a membership request to the leader when this node is not it.
    async fn on_leader<F, Fut>(&self, local: F, remote: RemoteOp) -> Result<(), PeerError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(), PeerError>>,
    {
        let deadline = Instant::now() + self.raft_timeout;
        let leader = self
            .wait_leader(deadline)
            .await
            .ok_or(PeerError::NotLeader { leader: None })?;
        if leader == self.id {
            return local().await;
        }
        let node = self
            .node_of(leader)
            .ok_or(PeerError::NotLeader { leader: None })?;
        let r = self
            .peers
            .call(
                leader,
                &node.peer_addr,
                Duration::from_secs(60),
                |c, ctx| async move {
                    match remote {
                        RemoteOp::Join(id, n) => c.join(ctx, self.id, id, n).await,
                        RemoteOp::Remove(id) => c.remove(ctx, self.id, id).await,
                    }
                },
            )
            .await;
        match r {
            Ok(r) => r,
            Err(e) => Err(PeerError::Failed {
                message: e.to_string(),
                maybe_proposed: !e.surely_not_sent(),
            }),
        }
    }

    /// `change_membership`, retried while another membership change is still being committed
    /// (e.g. the second, uniform step of a join), until the raft timeout.
    async fn change_membership(
        &self,
        change: ChangeMembers<u64, PeerNode>,
    ) -> Result<(), PeerError> {
        let deadline = Instant::now() + self.raft_timeout;
        loop {
            match self.raft.change_membership(change.clone(), false).await {
                Ok(_) => return Ok(()),
                Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                    ChangeMembershipError::InProgress(_),
                ))) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                // Leadership moved (or is being elected): nothing was proposed; the caller asks
                // the new leader.
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                    return Err(PeerError::NotLeader {
                        leader: f.leader_id,
                    })
                }
                Err(e) => {
                    return Err(PeerError::Failed {
                        message: e.to_string(),
                        maybe_proposed: true,
                    })
                }
            }
        }
    }

    async fn join(&self, id: u64, node: PeerNode) -> Result<(), PeerError> {
        let n = node.clone();
        self.on_leader(|| self.join_here(id, n), RemoteOp::Join(id, node))
            .await
    }

    async fn join_here(&self, id: u64, node: PeerNode) -> Result<(), PeerError> {
        let failed = |e: String| PeerError::Failed {
            message: e,
            maybe_proposed: true,
        };
        let membership = self
            .raft
            .metrics()
            .borrow_watched()
            .membership_config
            .clone();
        if membership.membership().voter_ids().any(|v| v == id) {
            return Ok(());
        }
        info!(node_id = id, peer = %node.peer_addr, "adding a learner");
        self.raft
            .add_learner(id, node, true)
            .await
            .map_err(|e| failed(e.to_string()))?;
        info!(node_id = id, "promoting to voter");
        self.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])))
            .await
    }

    async fn remove(&self, id: u64) -> Result<(), PeerError> {
        let deadline = Instant::now() + self.raft_timeout;
        loop {
            match self
                .on_leader(|| self.remove_here(id), RemoteOp::Remove(id))
                .await
            {
                // Leadership moved between finding the leader and proposing: ask again.
                Err(PeerError::NotLeader { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                r => return r,
            }
        }
    }

    async fn remove_here(&self, id: u64) -> Result<(), PeerError> {
        let failed = |e: String| PeerError::Failed {
            message: e,
            maybe_proposed: true,
        };
        let membership = self
            .raft
            .metrics()
            .borrow_watched()
            .membership_config
            .clone();
        let m = membership.membership();
        if m.get_node(&id).is_none() {
            return Err(failed(format!("node {id} is not a member")));
        }
        if id == self.id {
            // Hand leadership to another voter, then ask it to remove us.
            let Some(to) = m.voter_ids().find(|v| *v != id) else {
                return Err(failed("cannot remove the only voter".into()));
            };
            self.raft
                .trigger()
                .transfer_leader(to)
                .await
                .map_err(|e| failed(e.to_string()))?;
            let deadline = Instant::now() + self.raft_timeout;
            loop {
                match self.leader() {
                    Some(l) if l != self.id => break,
                    _ if Instant::now() >= deadline => {
                        return Err(failed("leadership transfer did not finish".into()))
                    }
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            return Box::pin(self.remove(id)).await;
        }
        let change = if m.voter_ids().any(|v| v == id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        self.change_membership(change).await
    }
}

/// A snapshot arriving in chunks.
struct Incoming {
    /// The snapshot's last log id, as text.
    id: String,
    file: SnapshotFile,
    len: u64,
}

enum RemoteOp {
    Join(u64, PeerNode),
    Remove(u64),
}

fn timeout_message(timeout: Duration, last: &str) -> String {
    format!(
        "the cluster did not answer within the raft timeout ({}): {last}",
        humantime_secs(timeout)
    )
}

fn humantime_secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The storage hook: commits and reads on this node go through the cluster. Weak: the cluster
/// holds the storage, so a strong reference back would keep both alive (and the data directory
/// locked) after shutdown.
struct ClusterReplicator {
    inner: Weak<Inner>,
}

impl ClusterReplicator {
    fn cluster(&self) -> Result<Arc<Inner>, StorageError> {
        self.inner.upgrade().ok_or(StorageError::ShuttingDown)
    }
}

impl Replicator for ClusterReplicator {
    fn commit(
        &self,
        ws: WriteSet,
    ) -> Pin<Box<dyn Future<Output = Result<CommitInfo, StorageError>> + Send>> {
        let inner = self.cluster();
        Box::pin(async move {
            let inner = inner?;
            let ts = inner.raft_ts();
            inner.commit(ws, ts).await
        })
    }

    fn read_barrier(&self) -> Pin<Box<dyn Future<Output = Result<(), StorageError>> + Send>> {
        let inner = self.cluster();
        Box::pin(async move { inner?.read_barrier().await })
    }
}

impl Inner {
    /// The proposer's HLC timestamp for a commit (apply keeps them increasing).
    fn raft_ts(&self) -> u64 {
        self.storage.now()
    }
}

/// The peer service's handlers.
#[derive(Clone)]
struct PeerService {
    inner: Arc<Inner>,
}

impl PeerService {
    fn check(&self, from: u64) -> Result<(), PeerError> {
        if self.inner.peers.faults().is_blocked(from) {
            return Err(PeerError::Partitioned(self.inner.id));
        }
        Ok(())
    }
}

fn failed(e: impl std::fmt::Display) -> PeerError {
    PeerError::Failed {
        message: e.to_string(),
        maybe_proposed: false,
    }
}

impl Peer for PeerService {
    async fn append_entries(
        self,
        _: tarpc::context::Context,
        from: u64,
        req: AppendEntriesRequest<TypeConfig>,
    ) -> Result<AppendEntriesResponse<TypeConfig>, PeerError> {
        self.check(from)?;
        self.inner.raft.append_entries(req).await.map_err(failed)
    }

    async fn vote(
        self,
        _: tarpc::context::Context,
        from: u64,
        req: VoteRequest<TypeConfig>,
    ) -> Result<VoteResponse<TypeConfig>, PeerError> {
        self.check(from)?;
        self.inner.raft.vote(req).await.map_err(failed)
    }

    async fn snapshot_chunk(
        self,
        _: tarpc::context::Context,
        from: u64,
        vote: VoteOf<TypeConfig>,
        meta: SnapshotMetaOf<TypeConfig>,
        offset: u64,
        data: Vec<u8>,
        done: bool,
    ) -> Result<Option<SnapshotResponse<TypeConfig>>, PeerError> {
        self.check(from)?;
        let id = format!("{:?}", meta.last_log_id);
        let mut incoming = self.inner.incoming.lock().await;
        if offset == 0 {
            // A new transfer replaces any unfinished one (its file is deleted on drop).
            *incoming = Some(Incoming {
                id: id.clone(),
                file: SnapshotFile::new_in(self.inner.storage.snapshot_dir()),
                len: 0,
            });
        }
        let Some(cur) = incoming.as_mut().filter(|c| c.id == id) else {
            return Err(failed(format!(
                "snapshot {id}: chunk at {offset} without a start"
            )));
        };
        if cur.len != offset {
            let have = cur.len;
            *incoming = None;
            return Err(failed(format!(
                "snapshot {id}: chunk at {offset}, expected {have}"
            )));
        }
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(cur.file.path())
            .await
            .map_err(failed)?;
        f.write_all(&data).await.map_err(failed)?;
        if done {
            f.sync_all().await.map_err(failed)?;
        }
        cur.len += data.len() as u64;
        if !done {
            return Ok(None);
        }
        let Some(whole) = incoming.take() else {
            return Err(failed("snapshot transfer vanished"));
        };
        drop(incoming);
        let snapshot = Snapshot {
            meta,
            snapshot: whole.file,
        };
        let resp = self
            .inner
            .raft
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(failed)?;
        Ok(Some(resp))
    }

    async fn propose(
        self,
        _: tarpc::context::Context,
        from: u64,
        req: Request,
    ) -> Result<ApplyOutcome, PeerError> {
        self.check(from)?;
        self.inner.propose_local(req).await
    }

    async fn read_index(self, _: tarpc::context::Context, from: u64) -> Result<u64, PeerError> {
        self.check(from)?;
        self.inner.local_read_index().await
    }

    async fn join(
        self,
        _: tarpc::context::Context,
        from: u64,
        id: u64,
        node: PeerNode,
    ) -> Result<(), PeerError> {
        self.check(from)?;
        self.inner.join(id, node).await
    }

    async fn remove(self, _: tarpc::context::Context, from: u64, id: u64) -> Result<(), PeerError> {
        self.check(from)?;
        self.inner.remove(id).await
    }

    async fn lww_pull(
        self,
        _: tarpc::context::Context,
        from: u64,
        after: u64,
        max: u32,
        wait_ms: u64,
        stable: u64,
    ) -> Result<LogRead, PeerError> {
        self.check(from)?;
        let storage = &self.inner.storage;
        self.inner.lww.on_pull(from, after, stable);
        let head = storage.lww_head();
        if head <= after {
            let wait = Duration::from_millis(wait_ms.min(5_000));
            let head = storage.lww_log_wait(after, wait).await;
            if head > after && head - after < u64::from(max) / 4 {
                // Under a stream of commits, a moment's wait lets one answer carry many entries
                // (fewer round trips and merges on both sides) for a lag of about a millisecond.
                tokio::time::sleep(crate::lww::PULL_COALESCE).await;
            }
            // A partition made during the wait refuses the answer too.
            self.check(from)?;
        }
        storage.lww_log_read(after, max as usize).map_err(failed)
    }

    async fn lww_checksums(
        self,
        _: tarpc::context::Context,
        from: u64,
        table: u32,
    ) -> Result<Vec<u64>, PeerError> {
        self.check(from)?;
        let storage = self.inner.storage.clone();
        tokio::task::spawn_blocking(move || storage.lww_bucket_checksums(table))
            .await
            .map_err(failed)?
            .map_err(failed)
    }

    async fn lww_rows(
        self,
        _: tarpc::context::Context,
        from: u64,
        table: u32,
        buckets: Vec<u32>,
    ) -> Result<Vec<(Vec<u8>, RowState)>, PeerError> {
        self.check(from)?;
        let storage = self.inner.storage.clone();
        tokio::task::spawn_blocking(move || storage.lww_bucket_rows(table, &buckets))
            .await
            .map_err(failed)?
            .map_err(failed)
    }

    async fn status(self, _: tarpc::context::Context, from: u64) -> Result<PeerStatus, PeerError> {
        self.check(from)?;
        let m = self.inner.raft.metrics().borrow_watched().clone();
        Ok(PeerStatus {
            node_id: self.inner.id,
            last_applied: m.last_applied.map_or(0, |l| l.index),
        })
    }
}
