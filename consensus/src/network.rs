//! Node-to-node RPC: one tarpc service (bincode over TCP) carries Raft's messages and Weft's own
//! (forwarded commits, read index, join, status). Every call has a deadline. A `Faults` switch
//! lets tests partition and delay a node from inside.
//!
//! ```text
//!   openraft ──RaftNetworkV2──▶ PeerConn ──┐
//!   Cluster (forward, read index) ─────────┼──▶ Peers: one tarpc client per address, reconnects
//!                                          │     (Faults: blocked peers fail at once, delay)
//!                                          ▼
//!                               peer's PeerService (node.rs) ──▶ its Raft / Cluster
//! ```

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::type_config::alias::{SnapshotMetaOf, SnapshotOf, VoteOf};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tarpc::tokio_serde::formats::Bincode;
use tarpc::{client, context};
use tokio::io::AsyncReadExt;
use weft_storage::{ApplyOutcome, Error as StorageError, LogRead, RowState, SnapshotFile};

use crate::types::{PeerNode, Request, TypeConfig};

/// Largest frame on a peer connection (a snapshot chunk plus framing).
pub const MAX_FRAME: usize = 64 << 20;
/// Snapshot data travels in chunks of this size.
pub const SNAPSHOT_CHUNK: usize = 4 << 20;

/// What a node reports about itself to `weft_nodes` on other nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub node_id: u64,
    pub last_applied: u64,
}

/// Why a peer refused a forwarded request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum PeerError {
    /// The peer is not the leader (it names the one it knows, if any); nothing was proposed.
    #[error("node is not the leader")]
    NotLeader { leader: Option<u64> },
    /// The request cut this node off from the sender (fault injection).
    #[error("partitioned from node {0}")]
    Partitioned(u64),
    /// Anything else, with whether the request may have been proposed.
    #[error("{message}")]
    Failed {
        message: String,
        maybe_proposed: bool,
    },
}

/// The peer service. Every call names the calling node (`from`) so that a partitioned node's
/// requests are refused at the receiver too.
#[tarpc::service]
pub trait Peer {
    async fn append_entries(
        from: u64,
        req: AppendEntriesRequest<TypeConfig>,
    ) -> Result<AppendEntriesResponse<TypeConfig>, PeerError>;
    async fn vote(
        from: u64,
        req: VoteRequest<TypeConfig>,
    ) -> Result<VoteResponse<TypeConfig>, PeerError>;
    /// One chunk of a snapshot; the last one (`done`) installs it and answers.
    async fn snapshot_chunk(
        from: u64,
        vote: VoteOf<TypeConfig>,
        meta: SnapshotMetaOf<TypeConfig>,
        offset: u64,
        data: Vec<u8>,
        done: bool,
    ) -> Result<Option<SnapshotResponse<TypeConfig>>, PeerError>;
    /// A commit forwarded to the leader.
    async fn propose(from: u64, req: Request) -> Result<ApplyOutcome, PeerError>;
    /// The leader's commit index after confirming its leadership (follower reads wait for it).
    async fn read_index(from: u64) -> Result<u64, PeerError>;
    /// Adds node `id` as a learner, waits for it to catch up, then makes it a voter.
    async fn join(from: u64, id: u64, node: PeerNode) -> Result<(), PeerError>;
    /// Removes node `id` from the cluster (leader hands over first if it is `id`).
    async fn remove(from: u64, id: u64) -> Result<(), PeerError>;
    async fn status(from: u64) -> Result<PeerStatus, PeerError>;
    /// Entries of the callee's LWW origin log after `after` (held open up to `wait_ms` until
    /// there are some). `stable`: the caller's LWW frontier (for tombstone purge).
    async fn lww_pull(
        from: u64,
        after: u64,
        max: u32,
        wait_ms: u64,
        stable: u64,
    ) -> Result<LogRead, PeerError>;
    /// Range checksums of an lww table (full sync).
    async fn lww_checksums(from: u64, table: u32) -> Result<Vec<u64>, PeerError>;
    /// Row states of an lww table in the given buckets (full sync).
    async fn lww_rows(
        from: u64,
        table: u32,
        buckets: Vec<u32>,
    ) -> Result<Vec<(Vec<u8>, RowState)>, PeerError>;
}

/// Test hooks: peers this node refuses to talk to, and a delay added to every outgoing call.
#[derive(Debug, Default)]
pub struct Faults {
    blocked: RwLock<HashSet<u64>>,
    delay_ms: AtomicU64,
}

impl Faults {
    /// Cuts this node off from `peers` (both directions: calls out fail, calls in are refused).
    pub fn partition(&self, peers: impl IntoIterator<Item = u64>) {
        self.blocked.write().extend(peers);
    }

    /// Removes every partition and delay.
    pub fn heal(&self) {
        self.blocked.write().clear();
        self.delay_ms.store(0, Ordering::Relaxed);
    }

    pub fn set_delay(&self, d: Duration) {
        self.delay_ms.store(
            d.as_millis().try_into().unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub fn is_blocked(&self, peer: u64) -> bool {
        self.blocked.read().contains(&peer)
    }

    pub fn blocked(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.blocked.read().iter().copied().collect();
        v.sort_unstable();
        v
    }

    async fn delay(&self) {
        let ms = self.delay_ms.load(Ordering::Relaxed);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
}

/// Why a call to a peer failed on our side.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// Never sent: the peer is partitioned away or the connection could not be made.
    #[error("node {node} at {addr} is unreachable: {message}")]
    Unreachable {
        node: u64,
        addr: String,
        message: String,
    },
    /// Sent (maybe): the connection broke or the deadline passed before the answer.
    #[error("call to node {node} at {addr} failed: {message}")]
    Failed {
        node: u64,
        addr: String,
        message: String,
    },
}

impl CallError {
    /// Whether the request surely did not reach the peer.
    pub fn surely_not_sent(&self) -> bool {
        matches!(self, CallError::Unreachable { .. })
    }
}

/// Tarpc clients by peer address, created on first use and dropped on a broken connection.
pub struct Peers {
    me: u64,
    faults: Arc<Faults>,
    clients: Mutex<HashMap<String, PeerClient>>,
    connect_timeout: Duration,
}

impl Peers {
    pub fn new(me: u64, faults: Arc<Faults>) -> Arc<Peers> {
        Arc::new(Peers {
            me,
            faults,
            clients: Mutex::new(HashMap::new()),
            connect_timeout: Duration::from_secs(2),
        })
    }

    pub fn me(&self) -> u64 {
        self.me
    }

    pub fn faults(&self) -> &Arc<Faults> {
        &self.faults
    }

    async fn client(&self, node: u64, addr: &str) -> Result<PeerClient, CallError> {
        if let Some(c) = self.clients.lock().get(addr) {
            return Ok(c.clone());
        }
        let unreachable = |message: String| CallError::Unreachable {
            node,
            addr: addr.to_string(),
            message,
        };
        let sock: SocketAddr = tokio::net::lookup_host(addr)
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .next()
            .ok_or_else(|| unreachable("address does not resolve".into()))?;
        let mut connect = tarpc::serde_transport::tcp::connect(sock, Bincode::default);
        connect.config_mut().max_frame_length(MAX_FRAME);
        let transport = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| unreachable("connect timed out".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let _ = transport.get_ref().set_nodelay(true);
        let c = PeerClient::new(client::Config::default(), transport).spawn();
        self.clients.lock().insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// Calls `f` on the client for `node` at `addr` with a deadline of `timeout`.
    pub async fn call<T, F, Fut>(
        &self,
        node: u64,
        addr: &str,
        timeout: Duration,
        f: F,
    ) -> Result<T, CallError>
    where
        F: FnOnce(PeerClient, context::Context) -> Fut,
        Fut: Future<Output = Result<T, tarpc::client::RpcError>>,
    {
        if self.faults.is_blocked(node) {
            return Err(CallError::Unreachable {
                node,
                addr: addr.to_string(),
                message: "partitioned (fault injection)".into(),
            });
        }
        self.faults.delay().await;
        let client = self.client(node, addr).await?;
        let mut ctx = context::current();
        ctx.deadline = Instant::now() + timeout;
        match f(client, ctx).await {
            // A partition cuts calls in flight too: an answer (a long poll's, say) that arrives
            // after it is lost, as on a real network.
            Ok(_) if self.faults.is_blocked(node) => Err(CallError::Failed {
                node,
                addr: addr.to_string(),
                message: "partitioned (fault injection) while the call was in flight".into(),
            }),
            Ok(v) => Ok(v),
            Err(e) => {
                if matches!(e, tarpc::client::RpcError::Shutdown) {
                    self.clients.lock().remove(addr);
                    return Err(CallError::Unreachable {
                        node,
                        addr: addr.to_string(),
                        message: "connection closed".into(),
                    });
                }
                if !matches!(e, tarpc::client::RpcError::DeadlineExceeded) {
                    self.clients.lock().remove(addr);
                }
                Err(CallError::Failed {
                    node,
                    addr: addr.to_string(),
                    message: e.to_string(),
                })
            }
        }
    }
}

/// openraft's network factory: a `PeerConn` per target.
#[derive(Clone)]
pub struct Network {
    pub peers: Arc<Peers>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerConn;

    async fn new_client(&mut self, target: u64, node: &PeerNode) -> PeerConn {
        PeerConn {
            peers: self.peers.clone(),
            target,
            addr: node.peer_addr.clone(),
        }
    }
}

/// openraft's view of one peer.
pub struct PeerConn {
    peers: Arc<Peers>,
    target: u64,
    addr: String,
}

impl PeerConn {
    /// One Raft RPC to the target: a failed call becomes Unreachable (never sent) or Network
    /// (maybe sent); a peer's refusal becomes Unreachable (openraft backs off).
    async fn raft_call<T, F, Fut>(&self, ttl: Duration, f: F) -> Result<T, RPCError<TypeConfig>>
    where
        F: FnOnce(PeerClient, context::Context, u64) -> Fut,
        Fut: Future<Output = Result<Result<T, PeerError>, tarpc::client::RpcError>>,
    {
        let me = self.peers.me();
        let r = self
            .peers
            .call(self.target, &self.addr, ttl, |c, ctx| f(c, ctx, me))
            .await
            .map_err(|e| match e {
                CallError::Unreachable { .. } => RPCError::Unreachable(Unreachable::new(&e)),
                CallError::Failed { .. } => RPCError::Network(NetworkError::new(&e)),
            })?;
        r.map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }
}

impl RaftNetworkV2<TypeConfig> for PeerConn {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.raft_call(option.hard_ttl(), |c, ctx, me| async move {
            c.append_entries(ctx, me, rpc).await
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.raft_call(option.hard_ttl(), |c, ctx, me| async move {
            c.vote(ctx, me, rpc).await
        })
        .await
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, SnapshotFile>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let send = async {
            let me = self.peers.me();
            let unreachable = |e: &dyn std::fmt::Display| {
                StreamingError::Unreachable(Unreachable::from_string(e.to_string()))
            };
            let mut file = tokio::fs::File::open(snapshot.snapshot.path())
                .await
                .map_err(|e| unreachable(&e))?;
            let total = file.metadata().await.map_err(|e| unreachable(&e))?.len();
            let mut offset = 0u64;
            loop {
                let mut chunk = vec![0u8; SNAPSHOT_CHUNK];
                let mut filled = 0;
                while filled < chunk.len() {
                    let n = file
                        .read(&mut chunk[filled..])
                        .await
                        .map_err(|e| unreachable(&e))?;
                    if n == 0 {
                        break;
                    }
                    filled += n;
                }
                chunk.truncate(filled);
                let done = offset + filled as u64 >= total;
                let (v, m) = (vote.clone(), snapshot.meta.clone());
                let at = offset;
                let r =
                    self.peers
                        .call(
                            self.target,
                            &self.addr,
                            option.hard_ttl(),
                            |c, ctx| async move {
                                c.snapshot_chunk(ctx, me, v, m, at, chunk, done).await
                            },
                        )
                        .await
                        .map_err(|e| StreamingError::Unreachable(Unreachable::new(&e)))?;
                offset += filled as u64;
                match r {
                    Ok(Some(resp)) if done => return Ok(resp),
                    Ok(_) if !done => {}
                    Ok(_) => {
                        return Err(StreamingError::Unreachable(Unreachable::from_string(
                            "peer did not answer the last snapshot chunk",
                        )))
                    }
                    Err(e) => return Err(StreamingError::Unreachable(Unreachable::new(&e))),
                }
            }
        };
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            r = send => r,
        }
    }
}

/// Maps a failed forward into the storage error a client sees (40001 or 40003).
pub fn unavailable(message: impl Into<String>, maybe_committed: bool) -> StorageError {
    StorageError::Unavailable {
        message: message.into(),
        maybe_committed,
    }
}
