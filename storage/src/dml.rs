//! Row writes of a transaction: the row under its primary key, its index entries, the unique
//! checks against the transaction's view, and the change record. Each call checks everything
//! before it writes anything, so a failed call leaves the transaction as it was.

use crate::catalog::TableDef;
use crate::change::{ChangeOp, ChangeRecord, EncodedChange};
use crate::codec::row::{check_row, encode_row};
use crate::display::key_exists_detail;
use crate::error::{Error, Result};
use crate::index::{self, Entry};
use crate::txn::Txn;
use crate::types::{Row, Value};

impl Txn {
    /// The row with primary key `pk` as this transaction sees it.
    pub fn get(&self, table: &TableDef, pk: &[Value]) -> Result<Option<Row>> {
        self.reader.get(table, pk)
    }

    /// Inserts `row`; `UniqueViolation` if its primary key or a unique index value is taken.
    pub fn insert(&mut self, table: &TableDef, row: Row) -> Result<()> {
        self.check_usable()?;
        let payload = encode_row(table, &row)?;
        let pk = index::pk_bytes(table, &row)?;
        let key = index::row_key_from_pk_bytes(table, &pk);
        let entries = entries(table, &row, &pk)?;
        self.reader.with_view(|view| {
            if view.get(&key)?.is_some() {
                return Err(pk_violation(table, &row));
            }
            for (idx, e) in table.indexes.iter().zip(&entries) {
                let Some(e) = e else { continue };
                if e.unique_key && view.get(&e.key)?.is_some() {
                    return Err(index_violation(table, idx, &row));
                }
            }
            Ok(())
        })?;

        self.write(key, Some(payload.clone()));
        for e in entries.into_iter().flatten() {
            self.write(e.key, Some(e.value));
        }
        self.note_table_write(table.id);
        self.note_ri(table.id, None, Some(&row));
        self.record(
            EncodedChange {
                table_id: table.id,
                op: ChangeOp::Insert,
                old: None,
                new: Some(payload),
            },
            record(table, ChangeOp::Insert, None, Some(row)),
        );
        Ok(())
    }

    /// Replaces `old` (as read in this transaction) by `new`. The primary key may change.
    pub fn update(&mut self, table: &TableDef, old: &Row, new: Row) -> Result<()> {
        self.check_usable()?;
        check_row(table, old)?;
        let old_payload = encode_row(table, old)?;
        let new_payload = encode_row(table, &new)?;
        let old_pk = index::pk_bytes(table, old)?;
        let new_pk = index::pk_bytes(table, &new)?;
        let old_key = index::row_key_from_pk_bytes(table, &old_pk);
        let new_key = index::row_key_from_pk_bytes(table, &new_pk);
        let old_entries = entries(table, old, &old_pk)?;
        let new_entries = entries(table, &new, &new_pk)?;
        self.reader.with_view(|view| {
            if new_key != old_key && view.get(&new_key)?.is_some() {
                return Err(pk_violation(table, &new));
            }
            for ((idx, o), n) in table.indexes.iter().zip(&old_entries).zip(&new_entries) {
                let Some(n) = n else { continue };
                let moved = o.as_ref().is_none_or(|o| o.key != n.key);
                if n.unique_key && moved && view.get(&n.key)?.is_some() {
                    return Err(index_violation(table, idx, &new));
                }
            }
            Ok(())
        })?;

        if new_key != old_key {
            self.write(old_key, None);
        }
        self.write(new_key, Some(new_payload.clone()));
        for (o, n) in old_entries.into_iter().zip(new_entries) {
            match (o, n) {
                (Some(o), Some(n)) if o.key == n.key => {
                    if o.value != n.value {
                        self.write(n.key, Some(n.value));
                    }
                }
                (o, n) => {
                    if let Some(o) = o {
                        self.write(o.key, None);
                    }
                    if let Some(n) = n {
                        self.write(n.key, Some(n.value));
                    }
                }
            }
        }
        self.note_table_write(table.id);
        self.note_ri(table.id, Some(old), Some(&new));
        self.record(
            EncodedChange {
                table_id: table.id,
                op: ChangeOp::Update,
                old: Some(old_payload),
                new: Some(new_payload),
            },
            record(table, ChangeOp::Update, Some(old.clone()), Some(new)),
        );
        Ok(())
    }

    /// Deletes `old` (as read in this transaction) and its index entries.
    pub fn delete(&mut self, table: &TableDef, old: &Row) -> Result<()> {
        self.check_usable()?;
        let old_payload = encode_row(table, old)?;
        let pk = index::pk_bytes(table, old)?;
        let key = index::row_key_from_pk_bytes(table, &pk);
        let old_entries = entries(table, old, &pk)?;
        self.write(key, None);
        for e in old_entries.into_iter().flatten() {
            self.write(e.key, None);
        }
        self.note_table_write(table.id);
        self.note_ri(table.id, Some(old), None);
        self.record(
            EncodedChange {
                table_id: table.id,
                op: ChangeOp::Delete,
                old: Some(old_payload),
                new: None,
            },
            record(table, ChangeOp::Delete, Some(old.clone()), None),
        );
        Ok(())
    }
}

/// Index entries of `row` for every index of `table`, in `table.indexes` order (None where a
/// partial index leaves the row out).
pub(crate) fn entries(table: &TableDef, row: &[Value], pk: &[u8]) -> Result<Vec<Option<Entry>>> {
    table
        .indexes
        .iter()
        .map(|idx| index::entry(table, idx, row, pk))
        .collect()
}

fn record(table: &TableDef, op: ChangeOp, old: Option<Row>, new: Option<Row>) -> ChangeRecord {
    ChangeRecord {
        position: 0,
        ts: 0,
        table_id: table.id,
        op,
        old,
        new,
    }
}

pub(crate) fn pk_violation(table: &TableDef, row: &[Value]) -> Error {
    Error::UniqueViolation {
        table: table.name.clone(),
        constraint: table.pkey_name.clone(),
        detail: key_exists_detail(table, &table.primary_key, row),
    }
}

pub(crate) fn index_violation(
    table: &TableDef,
    index: &crate::catalog::IndexDef,
    row: &[Value],
) -> Error {
    Error::UniqueViolation {
        table: table.name.clone(),
        constraint: index.name.clone(),
        detail: crate::display::index_key_detail(table, &index.columns, &index.functions, row),
    }
}
