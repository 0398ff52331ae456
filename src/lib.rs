//! Weft: a PostgreSQL-wire-compatible database with built-in push.
//!
//! This crate is the `weft` binary's library: the PostgreSQL wire front end, the server that
//! owns the storage and the SQL engine, and the command line. It talks to clients and calls
//! `weft_sql`; it never touches storage except to open it, hand it to the engine and shut it
//! down.
//!
//! ```text
//!   client --TCP--> server (accept, shutdown) --> conn (startup, message loop, value codecs)
//!                                                   |  Session API
//!                                                   v
//!                                                 weft_sql --> weft_storage
//! ```

/// The Raft node behind `--peer-listen`, as SQL sees it.
pub mod cluster;
/// Command-line flags and the TOML config file.
pub mod config;
/// One client connection: startup, the query protocols, Arrow <-> PostgreSQL values.
pub mod conn;
/// Fan-out of commits (NOTIFY, live-query changes) to listening connections.
pub mod push;
/// Listener, connection tasks, graceful shutdown; `TestServer` for tests.
pub mod server;
