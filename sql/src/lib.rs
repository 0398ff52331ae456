//! weft-sql: parse, plan and execute SQL over Weft's row store.
//!
//! Owns: statement dispatch, DDL, DML, transactions as a session sees them, the DataFusion bridge
//! (`table.rs`), the point-query fast path and PostgreSQL's catalogs. Depends on `weft-storage`
//! (below) and DataFusion; knows nothing of sockets — the front end in `src/` calls [`Session`].
//!
//! ```text
//!  Session::prepare ──► parse (sqlparser, PostgreSQL dialect)
//!        │                  │
//!        │       ┌──────────┼───────────────┬────────────────┐
//!        │       ▼          ▼               ▼                ▼
//!        │   utility     ddl/*.rs        dml/*.rs         query.rs ──► DataFusion plan
//!        │  (BEGIN,SET)  (catalog txn)   (rows → Txn)        │
//!        ▼                                                    ▼
//!  Session::execute ───────────────────────────────► table.rs / scan.rs ──► storage TxnReader
//! ```

pub mod error;
pub mod pgtype;
pub mod convert;
mod json;
pub mod engine;
mod shared;
mod schema;
mod table;
mod scan;
mod functions;
mod pg_catalog;
mod eval;
mod rewrite;
mod statement;
mod settings;
pub mod session;
mod txn_control;
mod naming;
mod query;
mod ddl;
mod dml;

pub use datafusion;
pub use engine::{Engine, EngineConfig};
pub use error::{Error, Result};
pub use pgtype::PgType;
pub use session::{CancelHandle, FieldInfo, Notice, Prepared, QueryOutput, RowStream, Session, TxStatus};
pub use statement::Statement;
