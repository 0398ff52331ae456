//! Last-writer-wins tables: per-cell versions, the merge rule, and what travels between nodes.
//!
//! A row of an `lww` table has, besides its visible form in the `data` CF (the ordinary row
//! encoding, so every reader works unchanged), a `RowState` in the `lww` CF:
//!
//! ```text
//!   RowState { live: Version, tomb: Version, cells: column id → (Version, encoded field | NULL) }
//!   Version  = (HLC timestamp, origin node id), ordered by timestamp, then node
//! ```
//!
//! A write is itself a `RowState` (an upsert: `live` and the assigned cells at the commit's
//! version; a delete: `tomb` at it). Merging takes the higher version component by component and
//! then drops cells not newer than the tombstone. That is a join (commutative, associative,
//! idempotent: see the property tests), so every node that has merged the same writes holds the
//! same state, in whatever order they arrived. A row is visible iff `live > tomb`; a cell absent
//! from a visible row reads as NULL.
//!
//! `lww` CF keys:
//! ```text
//!   r data_key                row state (bincode)
//!   o seq:u64be               this node's origin log: one `LwwEntry` per commit
//!   p origin:u64be            last seq applied from `origin`'s log
//!   g tomb_ts:u64be data_key  a row deleted at `tomb_ts` (tombstone purge queue)
//!   h                         this node's last origin seq and LWW timestamp
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::catalog::{ColumnId, TableDef, TableId};
use crate::codec::row::{join_fields, split_fields};
use crate::error::{Error, Result};

pub type NodeId = u64;

/// A cell's (or a row's liveness / tombstone) version: the HLC timestamp of the commit that wrote
/// it and the node that committed it, which breaks ties.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Version {
    pub ts: u64,
    pub node: NodeId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    pub version: Version,
    /// The encoded field (`codec::row`), `None` for NULL.
    pub field: Option<Vec<u8>>,
}

/// Everything known about one row of an lww table (see the module comment).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowState {
    pub live: Version,
    pub tomb: Version,
    pub cells: BTreeMap<ColumnId, Cell>,
}

impl RowState {
    /// An upsert at `version` assigning `cells`.
    pub fn upsert(version: Version, cells: &[(ColumnId, Option<Vec<u8>>)]) -> RowState {
        RowState {
            live: version,
            tomb: Version::default(),
            cells: cells
                .iter()
                .map(|(id, field)| {
                    (
                        *id,
                        Cell {
                            version,
                            field: field.clone(),
                        },
                    )
                })
                .collect(),
        }
    }

    /// A delete at `version`.
    pub fn delete(version: Version) -> RowState {
        RowState {
            live: Version::default(),
            tomb: version,
            cells: BTreeMap::new(),
        }
    }

    pub fn is_live(&self) -> bool {
        self.live > self.tomb
    }

    /// Merges `other` into `self`: the higher version of each component, then every cell not
    /// newer than the tombstone is dropped. Equal versions come from the same commit; should
    /// their contents ever differ, the greater content wins, so the result still does not depend
    /// on the order.
    pub fn merge(&mut self, other: &RowState) {
        self.live = self.live.max(other.live);
        self.tomb = self.tomb.max(other.tomb);
        for (id, cell) in &other.cells {
            match self.cells.get_mut(id) {
                Some(mine) => {
                    if (cell.version, &cell.field) > (mine.version, &mine.field) {
                        *mine = cell.clone();
                    }
                }
                None => {
                    self.cells.insert(*id, cell.clone());
                }
            }
        }
        let tomb = self.tomb;
        self.cells.retain(|_, c| c.version > tomb);
    }

    /// The visible row payload (`codec::row` encoding), `None` if the row is deleted.
    pub fn payload(&self) -> Option<Vec<u8>> {
        self.is_live()
            .then(|| join_fields(self.cells.values().filter_map(|c| c.field.as_deref())))
    }

    /// The highest version anywhere in the state.
    pub fn max_version(&self) -> Version {
        self.live.max(self.tomb)
    }

    pub fn encode(&self) -> Vec<u8> {
        // Plain structs of integers and byte vectors always serialize.
        bincode::serialize(self).unwrap_or_default()
    }

    pub fn decode(b: &[u8]) -> Result<RowState> {
        bincode::deserialize(b).map_err(|e| Error::Corruption(format!("lww row state: {e}")))
    }

    /// An order-independent digest term for this row (key, cells, versions); 0 for a deleted
    /// row, so that tombstones (purged at different times on different nodes) do not count.
    pub fn digest(&self, key: &[u8]) -> u64 {
        if !self.is_live() {
            return 0;
        }
        let mut bytes = Vec::with_capacity(key.len() + 64);
        bytes.extend_from_slice(&(key.len() as u64).to_be_bytes());
        bytes.extend_from_slice(key);
        for v in [self.live, self.tomb] {
            bytes.extend_from_slice(&v.ts.to_be_bytes());
            bytes.extend_from_slice(&v.node.to_be_bytes());
        }
        for (id, c) in &self.cells {
            bytes.extend_from_slice(&id.to_be_bytes());
            bytes.extend_from_slice(&c.version.ts.to_be_bytes());
            bytes.extend_from_slice(&c.version.node.to_be_bytes());
            match &c.field {
                Some(f) => {
                    bytes.extend_from_slice(&(f.len() as u64 + 1).to_be_bytes());
                    bytes.extend_from_slice(f);
                }
                None => bytes.extend_from_slice(&0u64.to_be_bytes()),
            }
        }
        twox_hash::XxHash64::oneshot(0, &bytes)
    }
}

/// What a transaction did to one row of an lww table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RowOp {
    /// Assigns these cells (`None`: NULL). Always includes the key columns.
    Upsert(Vec<(ColumnId, Option<Vec<u8>>)>),
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowWrite {
    pub table: TableId,
    /// The row's `data` key.
    pub key: Vec<u8>,
    pub op: RowOp,
}

impl RowWrite {
    pub fn state(&self, version: Version) -> RowState {
        match &self.op {
            RowOp::Upsert(cells) => RowState::upsert(version, cells),
            RowOp::Delete => RowState::delete(version),
        }
    }
}

/// One commit to lww tables, as its origin logged it and as peers apply it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LwwEntry {
    pub origin: NodeId,
    /// Position in the origin's log: 1, 2, 3, … without gaps.
    pub seq: u64,
    /// HLC timestamp of the commit; with `origin`, the version of every cell it wrote.
    pub ts: u64,
    /// The origin's catalog version when it committed: a peer applies the entry only once its
    /// own catalog (replicated by Raft) is at least as new, so it knows every column written.
    pub catalog_version: u64,
    pub rows: Vec<RowWrite>,
    /// NOTIFY `(channel, payload)` sent by the transaction; delivered on every node.
    pub notifications: Vec<(String, String)>,
    /// Backend pid of the committing session on the origin.
    pub pid: u32,
}

impl LwwEntry {
    pub fn version(&self) -> Version {
        Version {
            ts: self.ts,
            node: self.origin,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        bincode::serialize(self).unwrap_or_default()
    }

    pub fn decode(b: &[u8]) -> Result<LwwEntry> {
        bincode::deserialize(b).map_err(|e| Error::Corruption(format!("lww log entry: {e}")))
    }
}

/// An answer to "entries of your log after seq N".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogRead {
    /// The next entries in order (possibly none yet), and the log's last seq.
    Entries { entries: Vec<LwwEntry>, head: u64 },
    /// Entries after N were purged already: the reader needs a full sync. `head`: the log's last
    /// seq; a full sync that starts after reading it covers every entry up to it.
    Purged { oldest: u64, head: u64 },
}

/// Number of hash buckets a table is split into for full-sync range checksums.
pub const SYNC_BUCKETS: u32 = 256;

/// The bucket of a row key (a hash, so buckets are the same on every node).
pub fn bucket_of(key: &[u8]) -> u32 {
    (twox_hash::XxHash64::oneshot(1, key) % u64::from(SYNC_BUCKETS)) as u32
}

/// The row operation a transaction's write amounts to, from the row as its snapshot had it
/// (`old`) and as it leaves it (`new`, `None`: deleted). `None` when there is nothing to
/// replicate (inserted and deleted again, or no cell changed). Key columns are always assigned
/// by an upsert, so a row brought back after a delete has its key; other columns are assigned
/// when their value changed (or, for a new row, always).
pub(crate) fn row_op(
    table: &TableDef,
    old: Option<&[u8]>,
    new: Option<&[u8]>,
) -> Result<Option<RowOp>> {
    let new = match (old, new) {
        (None, None) => return Ok(None),
        (Some(_), None) => return Ok(Some(RowOp::Delete)),
        (_, Some(n)) => n,
    };
    let new_fields: BTreeMap<ColumnId, Vec<u8>> = split_fields(new)?.into_iter().collect();
    let old_fields: Option<BTreeMap<ColumnId, Vec<u8>>> = old
        .map(|o| split_fields(o).map(|f| f.into_iter().collect()))
        .transpose()?;
    let mut cells = Vec::new();
    let mut changed = false;
    for (pos, col) in table.columns.iter().enumerate() {
        let field = new_fields.get(&col.id);
        let is_key = table.primary_key.contains(&pos);
        let differs = match &old_fields {
            None => true,
            Some(o) => o.get(&col.id) != field,
        };
        if is_key || differs {
            cells.push((col.id, field.cloned()));
        }
        changed |= differs;
    }
    Ok(changed.then_some(RowOp::Upsert(cells)))
}

/// `lww` CF key tags.
pub(crate) const TAG_ROW: u8 = b'r';
pub(crate) const TAG_LOG: u8 = b'o';
pub(crate) const TAG_POSITION: u8 = b'p';
pub(crate) const TAG_TOMB: u8 = b'g';
pub(crate) const KEY_HEAD: &[u8] = b"h";

pub(crate) fn row_state_key(data_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(data_key.len() + 1);
    k.push(TAG_ROW);
    k.extend_from_slice(data_key);
    k
}

pub(crate) fn log_key(seq: u64) -> [u8; 9] {
    let mut k = [TAG_LOG; 9];
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

pub(crate) fn position_key(origin: NodeId) -> [u8; 9] {
    let mut k = [TAG_POSITION; 9];
    k[1..].copy_from_slice(&origin.to_be_bytes());
    k
}

pub(crate) fn tomb_key(ts: u64, data_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(data_key.len() + 9);
    k.push(TAG_TOMB);
    k.extend_from_slice(&ts.to_be_bytes());
    k.extend_from_slice(data_key);
    k
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn version() -> impl Strategy<Value = Version> {
        // Few distinct values so that ties and equal timestamps from different nodes occur.
        (0u64..6, 1u64..4).prop_map(|(ts, node)| Version { ts, node })
    }

    /// A write as a commit makes it: one version for all its cells, and the contents a function
    /// of that version (one commit writes a cell once).
    fn write() -> impl Strategy<Value = RowState> {
        (
            version(),
            any::<bool>(),
            proptest::collection::btree_set(1u32..5, 0..4),
        )
            .prop_map(|(v, delete, cols)| {
                if delete {
                    RowState::delete(v)
                } else {
                    let cells: Vec<_> = cols
                        .into_iter()
                        .map(|c| {
                            let field =
                                (v.ts % 3 != 0).then(|| vec![c as u8, v.ts as u8, v.node as u8]);
                            (c, field)
                        })
                        .collect();
                    RowState::upsert(v, &cells)
                }
            })
    }

    fn merged(states: &[RowState]) -> RowState {
        let mut s = RowState::default();
        for x in states {
            s.merge(x);
        }
        s
    }

    proptest! {
        #[test]
        fn merge_is_commutative(a in write(), b in write()) {
            prop_assert_eq!(merged(&[a.clone(), b.clone()]), merged(&[b, a]));
        }

        #[test]
        fn merge_is_associative(a in write(), b in write(), c in write()) {
            let mut ab = a.clone();
            ab.merge(&b);
            ab.merge(&c);
            let mut bc = b.clone();
            bc.merge(&c);
            let mut a_bc = a.clone();
            a_bc.merge(&bc);
            prop_assert_eq!(ab, a_bc);
        }

        #[test]
        fn merge_is_idempotent(a in write(), b in write()) {
            let mut once = a.clone();
            once.merge(&b);
            let mut twice = once.clone();
            twice.merge(&b);
            twice.merge(&a);
            prop_assert_eq!(&once, &twice);
            let mut self_merge = once.clone();
            self_merge.merge(&once);
            prop_assert_eq!(once, self_merge);
        }

        /// Any order of arrival of a history of writes ends in the same state and digest.
        #[test]
        fn any_order_converges(
            writes in proptest::collection::vec(write(), 1..12),
            seed in any::<u64>(),
        ) {
            let mut shuffled = writes.clone();
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            // A node may also see some writes twice (a resent batch).
            let mut replayed = shuffled.clone();
            replayed.extend(writes.iter().take(3).cloned());
            let a = merged(&writes);
            let b = merged(&replayed);
            prop_assert_eq!(a.digest(b"k"), b.digest(b"k"));
            prop_assert_eq!(a, b);
        }

        /// The newest write to a cell wins; a delete hides every older cell.
        #[test]
        fn newest_cell_wins(writes in proptest::collection::vec(write(), 1..10)) {
            let s = merged(&writes);
            let tomb = writes.iter().map(|w| w.tomb).max().unwrap_or_default();
            for col in 1u32..5 {
                let newest = writes
                    .iter()
                    .filter_map(|w| w.cells.get(&col))
                    .max_by(|a, b| (a.version, &a.field).cmp(&(b.version, &b.field)));
                let expect = newest.filter(|c| c.version > tomb);
                prop_assert_eq!(s.cells.get(&col), expect);
            }
        }
    }

    #[test]
    fn delete_then_older_write_stays_deleted_newer_revives() {
        let v = |ts| Version { ts, node: 1 };
        let mut s = RowState::upsert(v(1), &[(1, Some(vec![1])), (2, Some(vec![2]))]);
        s.merge(&RowState::delete(v(5)));
        assert!(!s.is_live());
        s.merge(&RowState::upsert(v(3), &[(2, Some(vec![9]))]));
        assert!(!s.is_live(), "an older write does not resurrect");
        s.merge(&RowState::upsert(v(7), &[(1, Some(vec![7]))]));
        assert!(s.is_live());
        assert_eq!(s.cells.len(), 1, "cells older than the delete read as NULL");
        assert_eq!(
            s.payload(),
            Some(join_fields([vec![7u8]].iter().map(|f| &f[..])))
        );
    }
}
