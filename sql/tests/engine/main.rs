//! The SQL layer's tests, in one binary: each test binary links DataFusion and RocksDB (about
//! 190 MB, minutes of a cold CI build), so they are modules here rather than files of their own.

mod common;
mod fuzz_sql;
mod point;
mod session;
