//! Secondary index entries.
//!
//! ```text
//! non-unique, or unique with a NULL:  t tid iid memcmp(index cols) memcmp(pk)  →  ""
//! unique without NULLs:               t tid iid memcmp(index cols)             →  memcmp(pk)
//! ```
//!
//! A unique entry without the pk suffix makes two rows with the same value collide on one key,
//! which both the unique check and the commit-time conflict check see. NULLs never collide.

use crate::catalog::{IndexDef, TableDef};
use crate::codec::{layout, memcmp};
use crate::error::{Error, Result};
use crate::types::Value;

/// One index entry of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// Whether another row with this key would violate the index's uniqueness.
    pub unique_key: bool,
}

/// Memcomparable encoding of the row's primary key values.
pub fn pk_bytes(table: &TableDef, row: &[Value]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(16);
    for &p in &table.primary_key {
        memcmp::encode_value(&mut out, cell(table, row, p)?);
    }
    Ok(out)
}

pub fn row_key_from_pk_bytes(table: &TableDef, pk: &[u8]) -> Vec<u8> {
    let mut k = layout::index_prefix(table.id, 0);
    k.extend_from_slice(pk);
    k
}

/// The entry for `row` (whose encoded primary key is `pk`) in `index`; None if the index is
/// partial and the row does not meet its conditions.
pub fn entry(
    table: &TableDef,
    index: &IndexDef,
    row: &[Value],
    pk: &[u8],
) -> Result<Option<Entry>> {
    if !index.covers(row) {
        return Ok(None);
    }
    let mut key = layout::index_prefix(table.id, index.id);
    let mut has_null = false;
    for (i, &p) in index.columns.iter().enumerate() {
        let v = cell(table, row, p)?;
        has_null |= v.is_null();
        match index.function(i) {
            Some(f) => memcmp::encode_value(&mut key, &f.apply(v)),
            None => memcmp::encode_value(&mut key, v),
        }
    }
    if index.unique && !has_null {
        Ok(Some(Entry {
            key,
            value: pk.to_vec(),
            unique_key: true,
        }))
    } else {
        key.extend_from_slice(pk);
        Ok(Some(Entry {
            key,
            value: Vec::new(),
            unique_key: false,
        }))
    }
}

/// The encoded primary key an index entry points at.
pub fn entry_pk<'a>(key: &'a [u8], payload: &'a [u8], index: &IndexDef) -> Result<&'a [u8]> {
    if !payload.is_empty() {
        return Ok(payload);
    }
    let mut rest = key
        .get(layout::INDEX_PREFIX_LEN..)
        .ok_or_else(|| Error::Corruption("index key shorter than its prefix".into()))?;
    for _ in &index.columns {
        memcmp::skip_value(&mut rest)?;
    }
    if rest.is_empty() {
        return Err(Error::Corruption(
            "index entry carries no primary key".into(),
        ));
    }
    Ok(rest)
}

fn cell<'a>(table: &TableDef, row: &'a [Value], pos: usize) -> Result<&'a Value> {
    row.get(pos).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "column position {pos} is out of range for table {}",
            table.name
        ))
    })
}
