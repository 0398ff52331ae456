//! Catalog changes of a transaction. Catalog entries are ordinary keys in the write buffer, so
//! DDL is transactional: it commits or rolls back with the rest, and savepoints undo it.

use std::collections::HashSet;

use crate::catalog::{CatalogEntry, Consistency, IndexDef, IndexId, TableDef, TableId};
use crate::change::{ChangeOp, ChangeRecord, EncodedChange};
use crate::codec::layout::{self, META_NEXT_ID};
use crate::codec::row::encode_row;
use crate::codec::row::RowDecoder;
use crate::dml::{index_violation, pk_violation};
use crate::error::{Error, Result};
use crate::index;
use crate::txn::Txn;
use crate::types::Row;

/// First id `alloc_id` hands out; PostgreSQL's first OID for user objects, so ids can double as
/// OIDs without colliding with built-in ones.
pub const FIRST_OBJECT_ID: TableId = 16384;

impl Txn {
    /// A new catalog object or index id. The counter is written in this transaction, so two
    /// concurrent transactions allocating ids conflict at commit (40001).
    pub fn alloc_id(&mut self) -> Result<TableId> {
        self.check_usable()?;
        let next = match self.reader.with_view(|v| v.get(META_NEXT_ID))? {
            Some(bytes) => layout::decode_u64(&bytes)?,
            None => u64::from(FIRST_OBJECT_ID),
        };
        let id = TableId::try_from(next)
            .map_err(|_| Error::Corruption(format!("object id counter {next} overflows")))?;
        self.write(META_NEXT_ID.to_vec(), Some(layout::encode_u64(next + 1)));
        Ok(id)
    }

    /// Creates or replaces a catalog object.
    pub fn put_entry(&mut self, entry: CatalogEntry) -> Result<()> {
        self.check_usable()?;
        let id = entry.id();
        let json = serde_json::to_vec(&entry)
            .map_err(|e| Error::InvalidArgument(format!("catalog entry does not encode: {e}")))?;
        if let CatalogEntry::Table(_) = &entry {
            self.note_table_ddl(id);
        }
        self.write(layout::catalog_key(id), Some(json));
        let mut catalog = (*self.catalog()).clone();
        catalog.entries.insert(id, entry);
        self.set_catalog(catalog);
        Ok(())
    }

    /// Drops a catalog object; for a table also every row and index entry.
    pub fn drop_entry(&mut self, id: TableId) -> Result<()> {
        self.check_usable()?;
        let catalog = self.catalog();
        let entry = catalog
            .entries
            .get(&id)
            .ok_or_else(|| Error::InvalidArgument(format!("no catalog object with id {id}")))?;
        if let CatalogEntry::Table(t) = entry {
            // The rows of an lww table differ from node to node: each node deletes its own when
            // it applies the catalog change (`Committer::reconcile_lww`).
            if t.consistency != Consistency::Lww {
                let prefix = layout::table_prefix(id);
                self.delete_range(&prefix)?;
            }
            self.note_table_ddl(id);
        }
        if let CatalogEntry::Sequence(_) = entry {
            self.drop_sequence_state(id);
        }
        self.write(layout::catalog_key(id), None);
        let mut catalog = (*catalog).clone();
        catalog.entries.remove(&id);
        self.set_catalog(catalog);
        Ok(())
    }

    /// Removes every row and index entry of `table`; one `Truncate` change record.
    pub fn truncate(&mut self, table: &TableDef) -> Result<()> {
        self.check_usable()?;
        self.delete_range(&layout::table_prefix(table.id))?;
        self.note_table_ddl(table.id);
        self.note_table_write(table.id);
        self.record(
            EncodedChange {
                table_id: table.id,
                op: ChangeOp::Truncate,
                old: None,
                new: None,
            },
            ChangeRecord {
                position: 0,
                ts: 0,
                table_id: table.id,
                op: ChangeOp::Truncate,
                old: None,
                new: None,
            },
        );
        Ok(())
    }

    /// Replaces every row of a table by `rows`, written under its new definition `table` (ALTER
    /// COLUMN … TYPE: one column's stored type changed, so the rows, their keys and index
    /// entries are encoded anew). Primary and unique keys are checked among the new rows
    /// (`UniqueViolation`, and nothing written). Like TRUNCATE, one `Truncate` change record:
    /// live queries over the table re-read it.
    pub fn rewrite_table(&mut self, table: &TableDef, rows: Vec<Row>) -> Result<()> {
        self.check_usable()?;
        let mut writes = Vec::with_capacity(rows.len() * (1 + table.indexes.len()));
        let mut keys = HashSet::with_capacity(rows.len());
        for row in &rows {
            let payload = encode_row(table, row)?;
            let pk = index::pk_bytes(table, row)?;
            let key = index::row_key_from_pk_bytes(table, &pk);
            if !keys.insert(key.clone()) {
                return Err(pk_violation(table, row));
            }
            writes.push((key, payload));
            for (idx, e) in table
                .indexes
                .iter()
                .zip(crate::dml::entries(table, row, &pk)?)
            {
                let Some(e) = e else { continue };
                if e.unique_key && !keys.insert(e.key.clone()) {
                    return Err(index_violation(table, idx, row));
                }
                writes.push((e.key, e.value));
            }
        }
        self.truncate(table)?;
        for (key, value) in writes {
            self.write(key, Some(value));
        }
        Ok(())
    }

    /// Writes `index` entries for every row of `table` visible to this transaction;
    /// `UniqueViolation` (and nothing written) if a unique index finds a duplicate.
    pub fn build_index(&mut self, table: &TableDef, index: &IndexDef) -> Result<()> {
        self.check_usable()?;
        if index.id == 0 {
            return Err(Error::InvalidArgument(
                "index id 0 is the primary key".into(),
            ));
        }
        let decoder = RowDecoder::new(table, None)?;
        let prefix = layout::index_prefix(table.id, 0);
        let end = layout::prefix_end(&prefix).unwrap_or_default();
        let mut entries = Vec::new();
        let mut seen = HashSet::new();
        self.reader.with_view(|view| {
            view.walk(&prefix, &end, |_, payload| {
                let row = decoder.decode(payload)?;
                let pk = index::pk_bytes(table, &row)?;
                let Some(e) = index::entry(table, index, &row, &pk)? else {
                    return Ok(true);
                };
                if e.unique_key && !seen.insert(e.key.clone()) {
                    return Err(index_violation(table, index, &row));
                }
                entries.push(e);
                Ok(true)
            })
        })?;
        for e in entries {
            self.write(e.key, Some(e.value));
        }
        self.note_table_ddl(table.id);
        Ok(())
    }

    /// Removes every entry of index `index_id` (the catalog change is the caller's `put_entry`).
    pub fn drop_index(&mut self, table: &TableDef, index_id: IndexId) -> Result<()> {
        self.check_usable()?;
        if index_id == 0 {
            return Err(Error::InvalidArgument(
                "index id 0 is the primary key".into(),
            ));
        }
        self.delete_range(&layout::index_prefix(table.id, index_id))?;
        self.note_table_ddl(table.id);
        Ok(())
    }

    /// Tombstones every live key under `prefix` in this transaction's view.
    fn delete_range(&mut self, prefix: &[u8]) -> Result<()> {
        let end = layout::prefix_end(prefix).unwrap_or_default();
        let mut keys = Vec::new();
        self.reader.with_view(|view| {
            view.walk(prefix, &end, |key, _| {
                keys.push(key.to_vec());
                Ok(true)
            })
        })?;
        for key in keys {
            self.write(key, None);
        }
        Ok(())
    }
}
