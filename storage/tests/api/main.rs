//! Integration tests of the public storage API: one binary, one module per concern.

mod common;

mod catalog;
mod changes;
mod commit;
mod crash;
mod scan;
mod txn;
