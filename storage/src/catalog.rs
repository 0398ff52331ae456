//! Catalog objects. They are stored as JSON under `b'c'` keys in the data column family and change
//! only through committed transactions, so DDL is transactional and (later) replicated by Raft.

use serde::{Deserialize, Serialize};

use crate::types::DataType;

pub type TableId = u32;
pub type IndexId = u32;
/// Stable per-table column id; survives renames and other columns being dropped.
pub type ColumnId = u32;

/// How a table's writes are made durable and replicated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Consistency {
    /// Linearizable through Raft (the default).
    #[default]
    Raft,
    /// Multi-master, last writer wins per cell.
    Lww,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub id: ColumnId,
    pub name: String,
    pub data_type: DataType,
    pub nullable: bool,
    /// DEFAULT expression as SQL text, evaluated by the SQL layer.
    pub default: Option<String>,
    /// The hidden row id of a table declared without a primary key.
    pub hidden: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexDef {
    pub id: IndexId,
    pub name: String,
    /// Positions into `TableDef::columns`.
    pub columns: Vec<usize>,
    pub unique: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckDef {
    pub name: String,
    /// Boolean SQL expression over the table's columns.
    pub expr: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableDef {
    pub id: TableId,
    pub name: String,
    pub columns: Vec<ColumnDef>,
    /// Positions into `columns` of the primary key, in key order. Never empty: a table declared
    /// without one has a single hidden `rowid` column here.
    pub primary_key: Vec<usize>,
    /// Name of the primary key constraint (`<table>_pkey`).
    pub pkey_name: String,
    /// Secondary indexes, including those backing UNIQUE constraints. Index id 0 is reserved for the
    /// primary key.
    pub indexes: Vec<IndexDef>,
    pub checks: Vec<CheckDef>,
    pub consistency: Consistency,
    /// Next column id to hand out on ADD COLUMN.
    pub next_column_id: ColumnId,
}

impl TableDef {
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Columns a user sees (`SELECT *`), in order.
    pub fn visible_columns(&self) -> impl Iterator<Item = (usize, &ColumnDef)> {
        self.columns.iter().enumerate().filter(|(_, c)| !c.hidden)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewDef {
    pub id: TableId,
    pub name: String,
    /// The view's SELECT as SQL text.
    pub query: String,
    pub columns: Vec<String>,
}

/// A live query: one table, a projection and a predicate (issue 3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveQueryDef {
    pub id: TableId,
    pub name: String,
    /// The defining SELECT as SQL text.
    pub query: String,
    pub table: TableId,
}

/// Any named catalog object; table, view and live-query names share one namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CatalogEntry {
    Table(TableDef),
    View(ViewDef),
    LiveQuery(LiveQueryDef),
}

impl CatalogEntry {
    pub fn id(&self) -> TableId {
        match self {
            CatalogEntry::Table(t) => t.id,
            CatalogEntry::View(v) => v.id,
            CatalogEntry::LiveQuery(l) => l.id,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            CatalogEntry::Table(t) => &t.name,
            CatalogEntry::View(v) => &v.name,
            CatalogEntry::LiveQuery(l) => &l.name,
        }
    }
}

/// An immutable view of the whole catalog at one version.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub entries: std::collections::BTreeMap<TableId, CatalogEntry>,
}

impl Catalog {
    pub fn get_by_name(&self, name: &str) -> Option<&CatalogEntry> {
        self.entries.values().find(|e| e.name() == name)
    }

    pub fn table(&self, name: &str) -> Option<&TableDef> {
        match self.get_by_name(name) {
            Some(CatalogEntry::Table(t)) => Some(t),
            _ => None,
        }
    }

    pub fn table_by_id(&self, id: TableId) -> Option<&TableDef> {
        match self.entries.get(&id) {
            Some(CatalogEntry::Table(t)) => Some(t),
            _ => None,
        }
    }

    pub fn tables(&self) -> impl Iterator<Item = &TableDef> {
        self.entries.values().filter_map(|e| match e {
            CatalogEntry::Table(t) => Some(t),
            _ => None,
        })
    }
}
