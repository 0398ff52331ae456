//! Change records: what a commit did to table rows, in the durable `changes` log and on the
//! in-process broadcast stream.
//!
//! In the log a record is keyed by `position:u64be`; its value is
//! `ts:u64 table_id:u32 op:u8 flags:u8 [varint(len) old_row] [varint(len) new_row]`, rows encoded
//! by column id (`codec::row`), so a reader decodes them against whatever the catalog is now.

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::catalog::{Catalog, TableId};
use crate::codec::row::{get_varint, put_varint, take, RowDecoder};
use crate::error::{Error, Result};
use crate::types::Row;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeOp {
    Insert,
    Update,
    Delete,
    /// Every row of the table was removed; `old` and `new` are `None`.
    Truncate,
}

/// One row change. Rows are in the table's column order (`new` for inserts and updates, `old` for
/// updates and deletes).
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRecord {
    pub position: u64,
    /// HLC timestamp of the commit.
    pub ts: u64,
    pub table_id: TableId,
    pub op: ChangeOp,
    pub old: Option<Row>,
    pub new: Option<Row>,
}

/// Published on `Storage::subscribe` after a commit is durable.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitEvent {
    pub version: u64,
    pub ts: u64,
    pub changes: Vec<ChangeRecord>,
    /// `(channel, payload)` of `NOTIFY`, deduplicated, in the order first sent.
    pub notifications: Vec<(String, String)>,
    pub catalog_changed: bool,
    /// `WriteSet::origin`: the backend pid of the committing session, 0 if unknown.
    pub origin: u32,
    /// The database was replaced by a snapshot from another node: positions before this event
    /// are gone and subscribers must start over (live queries push `{"op":"reset"}`).
    pub reset: bool,
    /// Its number in the stream, from 1, set when it is published (`Storage::published`):
    /// events are published in this order.
    pub seq: u64,
}

/// The change stream's sending side. Once the subscriber has said which NOTIFY channels are
/// listened to (`Storage::listen_filter`), a commit that carries nothing but NOTIFY messages on
/// other channels is not published: nobody would receive it, and publishing wakes the
/// subscriber. Row changes, catalog changes and resets are always published.
#[derive(Clone)]
pub(crate) struct EventStream {
    tx: broadcast::Sender<Arc<CommitEvent>>,
    /// `None`: publish everything.
    listened: Arc<RwLock<Option<HashSet<String>>>>,
    /// The number of the last event published; held while one is sent, so that events go
    /// out in the order of their numbers.
    published: Arc<Mutex<u64>>,
}

impl EventStream {
    pub(crate) fn new(capacity: usize) -> EventStream {
        EventStream {
            tx: broadcast::channel(capacity).0,
            listened: Arc::default(),
            published: Arc::default(),
        }
    }

    pub(crate) fn send(&self, mut event: CommitEvent) {
        if event.changes.is_empty() && !event.catalog_changed && !event.reset {
            if let Some(listened) = &*self.listened.read() {
                if !event
                    .notifications
                    .iter()
                    .any(|(channel, _)| listened.contains(channel))
                {
                    return;
                }
            }
        }
        let mut published = self.published.lock();
        *published += 1;
        event.seq = *published;
        // No subscribers is fine: the durable log has everything.
        let _ = self.tx.send(Arc::new(event));
    }

    /// The number of the last event published (0 if none).
    pub(crate) fn published(&self) -> u64 {
        *self.published.lock()
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<CommitEvent>> {
        self.tx.subscribe()
    }

    /// Events the slowest subscriber has not taken.
    pub(crate) fn len(&self) -> usize {
        self.tx.len()
    }

    pub(crate) fn set_listened(&self, channel: &str, listened: bool) {
        let mut set = self.listened.write();
        let set = set.get_or_insert_with(HashSet::new);
        if listened {
            set.insert(channel.to_string());
        } else {
            set.remove(channel);
        }
    }
}

/// A change as it travels in a write set: rows already encoded by column id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncodedChange {
    pub table_id: TableId,
    pub op: ChangeOp,
    pub old: Option<Vec<u8>>,
    pub new: Option<Vec<u8>>,
}

/// Unix milliseconds of an HLC commit timestamp (`None` if `ts` is not a valid HLC value).
pub fn hlc_unix_millis(ts: u64) -> Option<i64> {
    hlc_gen::HlcTimestamp::try_from(ts)
        .ok()
        .map(|t| t.timestamp())
}

/// The smallest HLC timestamp at Unix milliseconds `ms` (clamped to the HLC epoch).
pub fn hlc_from_unix_millis(ms: i64) -> u64 {
    // hlc-gen counts from 2024-01-01T00:00:00Z; it does not export the constant.
    const HLC_EPOCH_MS: i64 = 1_704_067_200_000;
    hlc_gen::HlcTimestamp::from_parts(ms.max(HLC_EPOCH_MS), 0).map_or(0, |t| t.as_u64())
}

const HAS_OLD: u8 = 1;
const HAS_NEW: u8 = 2;

/// The `changes` CF value for `change`, committed at `ts`.
pub fn encode_record(ts: u64, change: &EncodedChange) -> Vec<u8> {
    let rows = change.old.as_ref().map_or(0, Vec::len) + change.new.as_ref().map_or(0, Vec::len);
    let mut out = Vec::with_capacity(24 + rows);
    out.extend_from_slice(&ts.to_be_bytes());
    out.extend_from_slice(&change.table_id.to_be_bytes());
    out.push(match change.op {
        ChangeOp::Insert => 1,
        ChangeOp::Update => 2,
        ChangeOp::Delete => 3,
        ChangeOp::Truncate => 4,
    });
    let mut flags = 0;
    if change.old.is_some() {
        flags |= HAS_OLD;
    }
    if change.new.is_some() {
        flags |= HAS_NEW;
    }
    out.push(flags);
    for row in [&change.old, &change.new].into_iter().flatten() {
        put_varint(&mut out, row.len() as u64);
        out.extend_from_slice(row);
    }
    out
}

/// Decodes a `changes` CF entry against `catalog`. Columns dropped since are omitted, columns
/// added since read as NULL; a record of a table dropped since comes back with no rows.
pub fn decode_record(position: u64, bytes: &[u8], catalog: &Catalog) -> Result<ChangeRecord> {
    let mut buf = bytes;
    let ts = u64::from_be_bytes(fixed(take(&mut buf, 8)?)?);
    let table_id = u32::from_be_bytes(fixed(take(&mut buf, 4)?)?);
    let op = match take(&mut buf, 1)?[0] {
        1 => ChangeOp::Insert,
        2 => ChangeOp::Update,
        3 => ChangeOp::Delete,
        4 => ChangeOp::Truncate,
        o => return Err(Error::Corruption(format!("unknown change op {o}"))),
    };
    let flags = take(&mut buf, 1)?[0];
    let mut row = |present: bool| -> Result<Option<&[u8]>> {
        if !present {
            return Ok(None);
        }
        let len = usize::try_from(get_varint(&mut buf)?)
            .map_err(|_| Error::Corruption("change row length overflows".into()))?;
        Ok(Some(take(&mut buf, len)?))
    };
    let old = row(flags & HAS_OLD != 0)?;
    let new = row(flags & HAS_NEW != 0)?;
    let (old, new) = match catalog.table_by_id(table_id) {
        Some(table) => {
            let decoder = RowDecoder::new(table, None)?;
            (
                old.map(|r| decoder.decode(r)).transpose()?,
                new.map(|r| decoder.decode(r)).transpose()?,
            )
        }
        None => (None, None),
    };
    Ok(ChangeRecord {
        position,
        ts,
        table_id,
        op,
        old,
        new,
    })
}

fn fixed<const N: usize>(b: &[u8]) -> Result<[u8; N]> {
    b.try_into()
        .map_err(|_| Error::Corruption("change record field has the wrong width".into()))
}
