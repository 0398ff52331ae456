//! Shared fixtures: a temporary database and a small table.

use std::path::Path;

use weft_storage::{
    CatalogEntry, ColumnDef, Consistency, DataType, IndexDef, Storage, StorageOptions, TableDef,
    Value,
};

pub fn open(dir: &Path) -> Storage {
    open_with(dir, false)
}

/// `open`, writing the WAL ahead as the server does (`StorageOptions::prewrite_wal`).
pub fn open_with(dir: &Path, prewrite_wal: bool) -> Storage {
    Storage::open(
        dir,
        StorageOptions {
            node_id: 7,
            sync: true,
            prewrite_wal,
        },
    )
    .expect("storage opens")
}

pub fn col(id: u32, name: &str, ty: DataType) -> ColumnDef {
    ColumnDef {
        id,
        name: name.into(),
        data_type: ty,
        nullable: true,
        default: None,
        hidden: false,
        identity: None,
    }
}

/// `users(id int primary key, name text, email text unique, age int)` with an index on `age`.
/// Index ids are filled in by `create_users`.
pub fn users_def(id: u32) -> TableDef {
    TableDef {
        id,
        name: format!("users{id}"),
        columns: vec![
            col(1, "id", DataType::Int32),
            col(2, "name", DataType::Text),
            col(3, "email", DataType::Text),
            col(4, "age", DataType::Int32),
        ],
        primary_key: vec![0],
        pkey_name: format!("users{id}_pkey"),
        indexes: vec![],
        checks: vec![],
        consistency: Consistency::Raft,
        foreign_keys: Vec::new(),
        comments: Default::default(),
        next_column_id: 5,
    }
}

/// Creates the users table (with its two indexes) and returns its committed definition.
pub async fn create_users(storage: &Storage) -> TableDef {
    let mut txn = storage.begin();
    let id = txn.alloc_id().expect("id");
    let mut def = users_def(id);
    def.indexes = vec![
        IndexDef {
            id: txn.alloc_id().expect("id"),
            name: format!("users{id}_email_key"),
            columns: vec![2],
            unique: true,
            constraint: false,
            functions: Vec::new(),
            predicate: Vec::new(),
        },
        IndexDef {
            id: txn.alloc_id().expect("id"),
            name: format!("users{id}_age_idx"),
            columns: vec![3],
            unique: false,
            constraint: false,
            functions: Vec::new(),
            predicate: Vec::new(),
        },
    ];
    txn.put_entry(CatalogEntry::Table(def.clone()))
        .expect("put entry");
    txn.commit().await.expect("create commits");
    def
}

pub fn user(id: i32, name: &str, email: Option<&str>, age: i32) -> Vec<Value> {
    vec![
        Value::Int32(id),
        Value::Text(name.into()),
        email.map_or(Value::Null, |e| Value::Text(e.into())),
        Value::Int32(age),
    ]
}

pub async fn insert_users(storage: &Storage, table: &TableDef, rows: Vec<Vec<Value>>) {
    let mut txn = storage.begin();
    for r in rows {
        txn.insert(table, r).expect("insert");
    }
    txn.commit().await.expect("insert commits");
}
