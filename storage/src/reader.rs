//! Reads of a transaction: its snapshot merged with its own uncommitted writes.
//!
//! ```text
//!   snapshot iterator (tombstones skipped) ─┐
//!                                           ├─ merge by key, buffer wins ─▶ rows
//!   write buffer (BTreeMap, None = delete) ─┘
//! ```
//!
//! Scans are built batch by batch: each batch seeks a fresh iterator to just after the previous
//! batch's last key, so no iterator (or lock) is held between calls.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::catalog::{IndexId, TableDef};
use crate::codec::layout::{self, index_prefix, tuple_range};
use crate::codec::row::RowDecoder;
use crate::engine::OwnedSnapshot;
use crate::error::{engine, Error, Result};
use crate::index;
use crate::types::{Row, Value};

/// A transaction's uncommitted writes: key → payload, `None` for a delete.
pub(crate) type Buffer = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Bounds on key columns; each bound is a prefix of the key (or index) columns.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRange {
    pub lower: Bound<Vec<Value>>,
    pub upper: Bound<Vec<Value>>,
}

impl KeyRange {
    pub fn full() -> KeyRange {
        KeyRange {
            lower: Bound::Unbounded,
            upper: Bound::Unbounded,
        }
    }

    /// Every key starting with `prefix`.
    pub fn prefix(prefix: Vec<Value>) -> KeyRange {
        KeyRange {
            lower: Bound::Included(prefix.clone()),
            upper: Bound::Included(prefix),
        }
    }
}

/// One batch of a scan.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanBatch {
    pub rows: Vec<Row>,
    /// Cursor for the next batch; `None` when the scan is done.
    pub resume: Option<Vec<u8>>,
}

/// Shared read handle of a transaction: its snapshot plus its writes, including writes made
/// through the `Txn` after this handle was taken (until the transaction commits).
#[derive(Clone)]
pub struct TxnReader {
    pub(crate) snap: Arc<OwnedSnapshot>,
    pub(crate) buf: Arc<RwLock<Buffer>>,
    /// The last commit the snapshot sees.
    pub(crate) read_version: u64,
}

/// The merged view with the buffer locked once.
pub(crate) struct View<'a> {
    pub snap: &'a OwnedSnapshot,
    pub buf: &'a Buffer,
}

impl View<'_> {
    /// Live payload of `key`, or `None` if absent or deleted.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(v) = self.buf.get(key) {
            return Ok(v.clone());
        }
        match self.snap.get(key)? {
            Some(stored) => Ok(layout::decode_value(&stored)?.1.map(<[u8]>::to_vec)),
            None => Ok(None),
        }
    }

    /// Calls `f(key, payload)` for live entries in `[start, end)` in key order while it returns
    /// `true`.
    pub fn walk(
        &self,
        start: &[u8],
        end: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        if start >= end {
            return Ok(());
        }
        let mut buffered = self
            .buf
            .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
            .peekable();
        self.snap.with_iter(start, end, |it| {
            loop {
                let order = match (it.key(), buffered.peek()) {
                    (None, None) => break,
                    (Some(_), None) => Ordering::Less,
                    (None, Some(_)) => Ordering::Greater,
                    (Some(sk), Some((bk, _))) => sk.cmp(bk.as_slice()),
                };
                let go_on = match order {
                    Ordering::Less => {
                        let go_on = match (it.key(), it.value()) {
                            (Some(k), Some(stored)) => match layout::decode_value(stored)? {
                                (_, Some(payload)) => f(k, payload)?,
                                (_, None) => true,
                            },
                            _ => true,
                        };
                        it.next();
                        go_on
                    }
                    Ordering::Equal | Ordering::Greater => {
                        if order == Ordering::Equal {
                            it.next();
                        }
                        match buffered.next() {
                            Some((k, Some(payload))) => f(k, payload)?,
                            _ => true,
                        }
                    }
                };
                if !go_on {
                    break;
                }
            }
            it.status().map_err(engine)
        })
    }
}

impl TxnReader {
    pub(crate) fn with_view<T>(&self, f: impl FnOnce(&View<'_>) -> Result<T>) -> Result<T> {
        let buf = self.buf.read();
        f(&View {
            snap: &self.snap,
            buf: &buf,
        })
    }

    /// Whether a commit after this snapshot wrote or deleted the row stored at `key`
    /// ([`crate::row_key`]): what `SELECT … FOR UPDATE`, UPDATE and DELETE check once they hold
    /// the row's lock. The transaction's own writes do not count. One read of the latest stored
    /// version in the common case; only when nothing is stored any more (a tombstone already
    /// forgotten) is the snapshot read, to tell a deleted row from one this transaction inserted.
    pub fn changed_since_snapshot(&self, key: &[u8]) -> Result<bool> {
        match self.snap.engine().get_latest(key)? {
            Some(stored) => Ok(layout::decode_value(&stored)?.0 > self.read_version),
            None => Ok(self.snap.get(key)?.is_some()),
        }
    }

    /// The row with primary key `pk`, all columns.
    pub fn get(&self, table: &TableDef, pk: &[Value]) -> Result<Option<Row>> {
        let key = layout::row_key(table.id, pk);
        match self.with_view(|v| v.get(&key))? {
            Some(payload) => Ok(Some(RowDecoder::new(table, None)?.decode(&payload)?)),
            None => Ok(None),
        }
    }

    /// Rows in primary-key order within `range`, at most `limit` of them, continuing after
    /// `resume` (the previous batch's cursor). `projection` lists positions in `table.columns`.
    pub fn scan(
        &self,
        table: &TableDef,
        range: &KeyRange,
        resume: Option<&[u8]>,
        projection: Option<&[usize]>,
        limit: usize,
    ) -> Result<ScanBatch> {
        let prefix = index_prefix(table.id, 0);
        let (start, end) = bounds(&prefix, range, resume)?;
        let decoder = RowDecoder::new(table, projection)?;
        let limit = limit.max(1);
        let mut rows = Vec::new();
        let mut last = None;
        let mut more = false;
        self.with_view(|view| {
            view.walk(&start, &end, |key, payload| {
                if rows.len() == limit {
                    more = true;
                    return Ok(false);
                }
                rows.push(decoder.decode(payload)?);
                last = Some(key.to_vec());
                Ok(true)
            })
        })?;
        Ok(ScanBatch {
            rows,
            resume: if more { last } else { None },
        })
    }

    /// Like `scan`, over secondary index `index_id`: `range` bounds are prefixes of the index's
    /// columns; rows come back in index order.
    pub fn index_scan(
        &self,
        table: &TableDef,
        index_id: IndexId,
        range: &KeyRange,
        resume: Option<&[u8]>,
        projection: Option<&[usize]>,
        limit: usize,
    ) -> Result<ScanBatch> {
        let index = table
            .indexes
            .iter()
            .find(|i| i.id == index_id)
            .ok_or_else(|| {
                Error::InvalidArgument(format!("table {} has no index {index_id}", table.name))
            })?;
        let prefix = index_prefix(table.id, index_id);
        let (start, end) = bounds(&prefix, range, resume)?;
        let decoder = RowDecoder::new(table, projection)?;
        let limit = limit.max(1);
        let mut rows = Vec::new();
        let mut last = None;
        let mut more = false;
        self.with_view(|view| {
            view.walk(&start, &end, |key, payload| {
                if rows.len() == limit {
                    more = true;
                    return Ok(false);
                }
                let pk = index::entry_pk(key, payload, index)?;
                let row_key = index::row_key_from_pk_bytes(table, pk);
                let row = view.get(&row_key)?.ok_or_else(|| {
                    Error::Corruption(format!(
                        "index {} of table {} points at a missing row",
                        index.name, table.name
                    ))
                })?;
                rows.push(decoder.decode(&row)?);
                last = Some(key.to_vec());
                Ok(true)
            })
        })?;
        Ok(ScanBatch {
            rows,
            resume: if more { last } else { None },
        })
    }
}

/// `[start, end)` for `range` under `prefix`, starting after `resume` if given.
fn bounds(prefix: &[u8], range: &KeyRange, resume: Option<&[u8]>) -> Result<(Vec<u8>, Vec<u8>)> {
    let (mut start, end) = tuple_range(prefix, &range.lower, &range.upper);
    if let Some(cursor) = resume {
        if !cursor.starts_with(prefix) {
            return Err(Error::InvalidArgument(
                "scan cursor belongs to another table or index".into(),
            ));
        }
        let mut after = cursor.to_vec();
        after.push(0);
        if after > start {
            start = after;
        }
    }
    Ok((start, end))
}
