//! The openraft type configuration: what a log entry carries and what applying it answers.

use std::fmt;

use serde::{Deserialize, Serialize};
use weft_storage::{ApplyOutcome, ReplicatedWrite};

/// A Raft log entry's application payload: one transaction's write set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request(pub ReplicatedWrite);

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = &self.0.id;
        write!(
            f,
            "commit {}/{}/{} ({} writes)",
            id.node,
            id.incarnation,
            id.seq,
            self.0.ws.writes.len()
        )
    }
}

/// What applying an entry answered: the commit's version and positions, or why it did not
/// commit (40001 on a conflict). `None` for entries without a write set (blank, membership).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response(pub Option<ApplyOutcome>);

/// A cluster member's addresses, stored in the Raft membership.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerNode {
    /// PostgreSQL wire address clients use.
    pub pg_addr: String,
    /// Node-to-node RPC address.
    pub peer_addr: String,
}

impl fmt::Display for PeerNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pg {} peer {}", self.pg_addr, self.peer_addr)
    }
}

openraft::declare_raft_types!(
    /// Weft's Raft types: node ids are `u64`, entries carry a `Request`.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = PeerNode,
);
