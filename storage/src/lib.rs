//! `weft-storage`: the bottom of Weft. It owns the RocksDB store — key and row encodings, the
//! catalog, snapshot-isolation transactions, the commit pipeline, the durable change log and the
//! in-process change stream. It depends on nothing else in the workspace and exposes no
//! `rocksdb` type.
//!
//! ```text
//!  sql ──▶ Storage::begin ──▶ Txn ─── get / insert / update / delete / DDL ──▶ write buffer
//!              │               │  └── reader() ─▶ TxnReader: scan / index_scan
//!              │               │        (snapshot ⋈ write buffer, codec decodes rows)
//!              │               ▼ commit
//!              │          WriteSet ──▶ committer thread: apply() many, one synced WriteBatch
//!              │                            │                  │
//!              │                            ▼                  ▼
//!              │                  RocksDB `data` CF     `changes` CF (by position)
//!              │                            │
//!              └── subscribe() ◀── CommitEvent (broadcast)   read_changes() ◀── `changes` CF
//! ```
//!
//! See `docs/ARCHITECTURE.md` for the key layout and the transaction model.

// Modules in the order a request passes through them; blank lines keep rustfmt from sorting.

/// SQL types and in-memory values.
pub mod types;

/// Catalog objects (tables, views, live queries) and the catalog snapshot.
pub mod catalog;

/// Error type.
pub mod error;

/// Opening the database, handing out transactions, the change log and stream.
mod storage;

/// Transactions: snapshot, write buffer, savepoints, commit.
mod txn;

/// Row writes with index maintenance and unique checks.
mod dml;

/// Catalog writes: ids, entries, truncate, index builds.
mod ddl;

/// Sequence state and the blocks of values a node hands out.
pub mod sequence;

/// Reads merging the snapshot with the write buffer; scans.
mod reader;

/// Secondary index entry layout.
mod index;

/// Key and row encodings.
mod codec;

/// Values rendered for error details.
mod display;

/// Write sets and the deterministic apply function.
pub mod apply;

/// The committer thread (group commit).
mod committer;

/// Change records and commit events.
mod change;

/// LWW tables: row states, the merge rule, origin log entries.
pub mod lww;

/// Applying LWW commits and peers' LWW log entries on the committer thread.
mod lww_apply;

/// What LWW replication between nodes needs from storage (logs, positions, full sync).
mod lww_sync;

/// The hooks a replication layer uses: commit takeover, replicated apply, snapshots, Raft log.
mod replica;

/// RocksDB setup and owned snapshots.
mod engine;

pub use apply::{apply, Applied, ApplyBatch, CommitState, WriteSet};
pub use catalog::*;
pub use change::{
    hlc_from_unix_millis, hlc_unix_millis, ChangeOp, ChangeRecord, CommitEvent, EncodedChange,
};
pub use codec::layout::row_key;
pub use codec::row::value_fits;
pub use ddl::FIRST_OBJECT_ID;
pub use display::format_value;
pub use engine::WAL_AHEAD_BYTES;
pub use error::{Error, Result, SequenceError};
pub use lww::{LogRead, LwwEntry, NodeId, RowState, Version, SYNC_BUCKETS};
pub use reader::{KeyRange, ScanBatch, TxnReader};
pub use replica::{
    replica_meta_key, ApplyOutcome, RaftLog, ReplicatedWrite, Replicator, RequestId, SnapshotFile,
};
pub use storage::{CommitInfo, Storage, StorageOptions};
pub use txn::{RiEvent, Savepoint, Txn};
pub use types::{ArrayElem, DataType, Row, Value};
