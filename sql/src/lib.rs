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

/// `avg` and `sum` with PostgreSQL's result types.
mod advisory;
mod aggregates;
mod any_decimal;
mod arith;
pub mod array_text;
mod bpchar;
pub mod cluster;
mod coalesce;
pub mod convert;
pub mod copy;
mod cpu;
mod cursor;
/// `date/time` functions: `age`, `justify_*`, `AT TIME ZONE`.
mod datetime;
mod datetime_in;
mod ddl;
mod decorrelate;
/// sqlparser's PostgreSQL dialect, corrected where it differs from PostgreSQL.
mod dialect;
mod dml;
pub mod engine;
pub mod error;
mod eval;
/// `EXTRACT` and `date_part` with PostgreSQL's types and fractions.
mod extract;
pub mod float;
mod format;
mod functions;
mod interrupt;
pub mod interval;
mod interval_arith;
mod json;
mod json_fn;
mod lateral;
/// PostgreSQL's errors on DataFusion's math functions.
mod math;
mod misc_fn;
mod named;
mod naming;
/// Unconstrained numeric values displayed at their own scale.
mod numeric_display;
mod numeric_div;
mod numeric_types;
mod ordered_set;
mod pg_catalog;
pub mod pgtime;
pub mod pgtype;
/// The primary-key point fast path: one `Txn::get` instead of a DataFusion plan.
mod point;
pub mod push;
mod query;
mod regexp;
mod rewrite;
mod row_lock;
mod scan;
mod schema;
mod sequence;
mod series;
pub mod session;
mod setops;
mod settings;
mod shared;
/// `SIMILAR TO` patterns as regular expressions.
mod similar;
mod statement;
mod table;
mod top_one;
mod txn_control;
mod typecheck;
mod union_order;
mod unnest_fields;
mod unnest_keys;

pub use cluster::{ClusterAdmin, NodeInfo};
pub use cpu::panic_text;
pub use datafusion;
pub use engine::{Engine, EngineConfig};
pub use error::{Error, Result};
pub use pgtype::PgType;
pub use session::{
    CancelHandle, FieldInfo, Notice, Prepared, QueryOutput, RowStream, Session, TxStatus,
};
pub use statement::Statement;
