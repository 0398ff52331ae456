//! Integration tests of the public storage API: one binary, one module per concern.

mod common;

mod catalog;
mod changes;
mod commit;
mod crash;
mod lww;
mod lww_merge;
mod lww_sync;
mod scan;
mod txn;
