//! Helpers shared by the SQL layer's tests: a database in a temporary directory and sessions on it.

use std::collections::HashMap;
use std::sync::Arc;

use weft_sql::datafusion::arrow::record_batch::RecordBatch;
use weft_sql::datafusion::arrow::util::display::array_value_to_string;
use weft_sql::{Engine, EngineConfig, Session};
use weft_storage::{Storage, StorageOptions};

pub struct Db {
    _dir: tempfile::TempDir,
    pub engine: Arc<Engine>,
}

pub fn db() -> Db {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(dir.path(), StorageOptions::default()).expect("open");
    let engine = Engine::new(storage, EngineConfig::default()).expect("engine");
    Db { _dir: dir, engine }
}

pub fn session(db: &Db) -> Session {
    db.engine.new_session(&HashMap::from([(
        "user".to_string(),
        "postgres".to_string(),
    )]))
}

/// A batch's rows as text, NULL as "NULL".
pub fn batch_rows(b: &RecordBatch) -> Vec<Vec<String>> {
    (0..b.num_rows())
        .map(|r| {
            (0..b.num_columns())
                .map(|c| {
                    if b.column(c).is_null(r) {
                        "NULL".to_string()
                    } else {
                        array_value_to_string(b.column(c), r).unwrap_or_default()
                    }
                })
                .collect()
        })
        .collect()
}
