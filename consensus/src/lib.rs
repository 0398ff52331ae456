//! `weft-consensus`: Raft for Weft's `raft` tables, through openraft.
//!
//! ```text
//!   Txn::commit ─▶ Replicator (node.rs) ─▶ leader? Raft::client_write : forward over peer RPC
//!                                              │
//!                    log store (store.rs, `raft_log` CF) ◀── openraft ──▶ peers (network.rs)
//!                                              │ committed
//!                    state machine (store.rs) ─▶ Storage::apply_replicated (one RocksDB batch
//!                                                 with last_applied and membership)
//!
//!   lww tables: commit locally ─▶ origin log ◀── pulled by every peer (lww.rs) ─▶ merged there
//! ```

/// openraft type configuration and the entry and response types.
pub mod types;

/// Log store and state machine over `weft-storage`.
pub mod store;

/// The newest Raft log entries, decoded, for openraft's read-backs.
mod log_cache;

pub use types::{PeerNode, Request, Response, TypeConfig};

/// Peer RPC (tarpc), openraft's network, fault injection for tests.
pub mod network;

/// A cluster member: Raft, the peer service, join/remove, the storage `Replicator`.
pub mod node;

/// LWW replication: pulling peers' origin logs, full sync, log and tombstone purge.
pub mod lww;

pub use lww::LwwConfig;
pub use network::Faults;
pub use node::{Cluster, ClusterConfig, ClusterError, NodeRow};
