//! Storage errors. Variants carry named fields so the SQL layer can map each one to a SQLSTATE
//! (`UniqueViolation` → 23505, `SerializationFailure` → 40001, the rest → XX000 / 58030).

use std::path::PathBuf;

/// Everything that can go wrong in `weft-storage`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum Error {
    /// Another process (or another `Storage` in this one) holds the directory's lock file.
    #[error("data directory {} is locked by another process", path.display())]
    Locked { path: PathBuf },

    /// A primary key or unique index value is already present in the transaction's view.
    /// `detail` reads like PostgreSQL's: `Key (a)=(1) already exists.`
    #[error("duplicate key value violates unique constraint \"{constraint}\"")]
    UniqueViolation {
        /// The table the index belongs to.
        table: String,
        constraint: String,
        detail: String,
    },

    /// A key this transaction wrote or depends on was changed by a transaction that committed
    /// after this one's snapshot was taken. Safe to retry (SQLSTATE 40001).
    #[error("could not serialize access due to concurrent update")]
    SerializationFailure { detail: String },

    /// `Storage::shutdown` was called; no more commits are accepted.
    #[error("storage is shutting down")]
    ShuttingDown,

    /// Bytes on disk (or values handed in) do not decode as they must.
    #[error("storage corruption: {0}")]
    Corruption(String),

    /// RocksDB reported an error.
    #[error("storage engine error: {0}")]
    Engine(String),

    /// A file-system operation outside RocksDB failed (creating the directory, the lock file).
    #[error("I/O error on {}: {message}", path.display())]
    Io { path: PathBuf, message: String },

    /// The cluster could not take the commit or the read (no leader, no majority, a peer gone
    /// mid-call). `maybe_committed`: the commit may have been proposed, so its outcome is unknown
    /// (SQLSTATE 40003); otherwise it surely did not commit (40001).
    #[error("{message}")]
    Unavailable {
        message: String,
        maybe_committed: bool,
    },

    /// Something storage does not do (SQLSTATE 0A000), e.g. a transaction writing both raft and
    /// lww tables.
    #[error("{feature} is not supported")]
    Unsupported { feature: String },

    /// Changes from an LWW peer carry timestamps further ahead of this node's clock than
    /// `--max-clock-offset`; none of them was applied.
    #[error("node {node}'s clock is {ahead_ms} ms ahead of this node's (more than the {max_ms} ms allowed)")]
    ClockAhead {
        node: u64,
        ahead_ms: i64,
        max_ms: u64,
    },

    /// A sequence cannot do what was asked: it reached its end, a value is outside its range, or
    /// it was dropped.
    #[error("{message}")]
    Sequence {
        kind: SequenceError,
        message: String,
    },

    /// A caller passed something storage cannot act on (an unknown index, a foreign scan cursor).
    #[error("invalid storage request: {0}")]
    InvalidArgument(String),
}

/// Why a sequence refused (`Error::Sequence`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SequenceError {
    /// `nextval` at the end of a sequence without CYCLE (SQLSTATE 2200H).
    Limit,
    /// `setval` outside the sequence's range (22003).
    OutOfBounds,
    /// The sequence was dropped (42P01).
    Gone,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Converts a RocksDB error without putting a `rocksdb` type into the public API.
pub(crate) fn engine(e: rocksdb::Error) -> Error {
    Error::Engine(e.into_string())
}
