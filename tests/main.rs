//! Integration tests: one binary, real servers on port 0, real clients (tokio-postgres, psql, the
//! `weft` binary, and a raw wire client for protocol details). Waits are bounded by deadlines.

mod it;
