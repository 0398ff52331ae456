//! Where things live in the `data` column family, and the header every `data` value carries.
//!
//! ```text
//! t table_id:u32be index_id:u32be memcmp(key cols)      row (index 0) / index entry
//! c table_id:u32be                                      catalog entry (JSON)
//! m name                                                counters (see `META_*`)
//! ```

use std::ops::Bound;

use crate::catalog::{IndexId, TableId};
use crate::codec::memcmp;
use crate::error::{Error, Result};
use crate::types::Value;

pub const TABLE_TAG: u8 = b't';
pub const CATALOG_TAG: u8 = b'c';

/// Commit state: last version, last change position, last catalog version, last HLC timestamp.
/// Written by every commit, read from inside each transaction's snapshot.
pub const META_COMMIT: &[u8] = b"mcommit";
/// Highest hidden row id counter handed out and committed.
pub const META_ROWID: &[u8] = b"mrowid";
/// Next catalog object id; transactions running DDL write it, so concurrent DDL conflicts.
pub const META_NEXT_ID: &[u8] = b"mnext_id";
/// `m w table_id`: version of the last commit that wrote the table's rows. Table DDL checks it.
const META_TABLE_WRITE: &[u8] = b"mw";
/// `m s sequence_id`: a sequence's state (`sequence.rs`).
const META_SEQUENCE: &[u8] = b"ms";
/// `m f e table_id key`: stamped when a referenced key of the table stops existing (a delete,
/// or an update of the key); a transaction that made a row reference it checks it.
const META_FK_GONE: &[u8] = b"mfe";
/// `m f r table_id key`: stamped by every transaction that made a row reference the key; one
/// that makes the key stop existing checks it.
const META_FK_REFERENCED: &[u8] = b"mfr";

/// `m g ts:u64be key`: a tombstone written at HLC time `ts`, with its version as the value, so
/// that it can be forgotten once old enough (`apply::purge_tombstones`).
const META_TOMB_QUEUE: &[u8] = b"mg";

/// Bytes of `t table_id index_id`.
pub const INDEX_PREFIX_LEN: usize = 9;

pub fn index_prefix(table: TableId, index: IndexId) -> Vec<u8> {
    let mut k = Vec::with_capacity(48);
    k.push(TABLE_TAG);
    k.extend_from_slice(&table.to_be_bytes());
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// All rows and index entries of a table start with this.
pub fn table_prefix(table: TableId) -> Vec<u8> {
    let mut k = Vec::with_capacity(5);
    k.push(TABLE_TAG);
    k.extend_from_slice(&table.to_be_bytes());
    k
}

/// Key of the row with primary key `pk`.
pub fn row_key(table: TableId, pk: &[Value]) -> Vec<u8> {
    let mut k = index_prefix(table, 0);
    memcmp::encode_tuple(&mut k, pk);
    k
}

pub fn catalog_key(id: TableId) -> Vec<u8> {
    let mut k = Vec::with_capacity(5);
    k.push(CATALOG_TAG);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

pub fn table_write_key(id: TableId) -> Vec<u8> {
    let mut k = META_TABLE_WRITE.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// The pair of keys through which a foreign key's concurrent writers conflict (see
/// `Txn::fk_reference`): `(gone, referenced)` for key `key` of referenced table `table`.
pub fn fk_keys(table: TableId, key: &[Value]) -> (Vec<u8>, Vec<u8>) {
    let mut gone = META_FK_GONE.to_vec();
    gone.extend_from_slice(&table.to_be_bytes());
    memcmp::encode_tuple(&mut gone, key);
    let mut referenced = META_FK_REFERENCED.to_vec();
    referenced.extend_from_slice(&gone[META_FK_GONE.len()..]);
    (gone, referenced)
}

/// The tombstone queue's entry for `key`, deleted at HLC time `ts`.
pub fn tomb_queue_key(ts: u64, key: &[u8]) -> Vec<u8> {
    let mut k = tomb_queue_bound(ts);
    k.extend_from_slice(key);
    k
}

/// The first tombstone queue key not older than `ts`.
pub fn tomb_queue_bound(ts: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(META_TOMB_QUEUE.len() + 8);
    k.extend_from_slice(META_TOMB_QUEUE);
    k.extend_from_slice(&ts.to_be_bytes());
    k
}

/// The `data` key of a tombstone queue key.
pub fn tomb_queue_data_key(queue_key: &[u8]) -> &[u8] {
    &queue_key[META_TOMB_QUEUE.len() + 8..]
}

pub fn sequence_key(id: TableId) -> Vec<u8> {
    let mut k = META_SEQUENCE.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// The smallest key greater than every key that starts with `prefix`; `None` if there is none.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Byte range `[start, end)` of keys under `prefix` whose key tuple lies within the bounds, where
/// each bound is a prefix of the key columns.
pub fn tuple_range(
    prefix: &[u8],
    lower: &Bound<Vec<Value>>,
    upper: &Bound<Vec<Value>>,
) -> (Vec<u8>, Vec<u8>) {
    let with = |vals: &[Value]| {
        let mut k = prefix.to_vec();
        memcmp::encode_tuple(&mut k, vals);
        k
    };
    // `prefix` always ends in a table or index id, never in all-0xFF bytes for the whole key
    // space, but fall back to the prefix itself to stay total.
    let after = |k: Vec<u8>| prefix_end(&k).unwrap_or(k);
    let start = match lower {
        Bound::Unbounded => prefix.to_vec(),
        Bound::Included(v) => with(v),
        Bound::Excluded(v) => after(with(v)),
    };
    let end = match upper {
        Bound::Unbounded => after(prefix.to_vec()),
        Bound::Included(v) => after(with(v)),
        Bound::Excluded(v) => with(v),
    };
    (start, end)
}

/// Length of the value header: `version:u64be flag:u8`.
pub const HEADER_LEN: usize = 9;
const FLAG_TOMBSTONE: u8 = 0;
const FLAG_LIVE: u8 = 1;

/// A stored `data` value: header plus payload (`None` for a tombstone).
pub fn encode_value(version: u64, payload: Option<&[u8]>) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_LEN + payload.map_or(0, <[u8]>::len));
    v.extend_from_slice(&version.to_be_bytes());
    match payload {
        Some(p) => {
            v.push(FLAG_LIVE);
            v.extend_from_slice(p);
        }
        None => v.push(FLAG_TOMBSTONE),
    }
    v
}

/// Splits a stored value into its version and payload (`None` for a tombstone).
pub fn decode_value(stored: &[u8]) -> Result<(u64, Option<&[u8]>)> {
    if stored.len() < HEADER_LEN {
        return Err(Error::Corruption(format!(
            "stored value of {} bytes has no header",
            stored.len()
        )));
    }
    let (head, payload) = stored.split_at(HEADER_LEN);
    let mut version = [0u8; 8];
    version.copy_from_slice(&head[..8]);
    let version = u64::from_be_bytes(version);
    match head[8] {
        FLAG_LIVE => Ok((version, Some(payload))),
        FLAG_TOMBSTONE => Ok((version, None)),
        f => Err(Error::Corruption(format!("unknown value flag {f}"))),
    }
}

pub fn encode_u64(v: u64) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

pub fn decode_u64(b: &[u8]) -> Result<u64> {
    let arr: [u8; 8] = b
        .try_into()
        .map_err(|_| Error::Corruption(format!("counter of {} bytes", b.len())))?;
    Ok(u64::from_be_bytes(arr))
}
