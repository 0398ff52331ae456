//! The untimed setup phase: create the tables and fill them with batched multi-row INSERTs.
//!
//! ```text
//!   kv(k int PK, v bigint)    rows      point-select, update
//!   big(id int PK, v bigint)  big_rows  scan-agg
//!   ins(id bigint PK, v bigint)  empty, recreated before each insert run
//! ```
//!
//! A table no chosen workload reads is dropped and not created again. The names (and any
//! `WITH` options) are the target's (`tables.rs`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::runner::connect;
use crate::tables::Tables;
use crate::workload::describe;

/// How the data is loaded.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Create and fill `kv`.
    pub kv: bool,
    /// Create and fill `big`.
    pub big: bool,
    pub rows: u64,
    pub big_rows: u64,
    /// Rows per INSERT statement.
    pub batch: u64,
    /// Connections loading in parallel.
    pub conns: usize,
    pub connect_timeout: Duration,
}

/// Runs one statement, naming it in the error.
async fn exec(client: &Client, sql: &str) -> Result<(), String> {
    client
        .batch_execute(sql)
        .await
        .map_err(|e| format!("{sql}: {}", describe(&e)))
}

/// Creates and fills `kv` and `big` as `cfg` asks; returns notes worth reporting (timings,
/// skipped steps).
pub async fn load(url: &str, names: &Tables, cfg: &LoadConfig) -> Result<Vec<String>, String> {
    let admin = connect(url, cfg.connect_timeout).await?;
    let mut notes = Vec::new();
    for table in [&names.kv, &names.big, &names.ins] {
        exec(&admin, &format!("DROP TABLE IF EXISTS {table}")).await?;
    }
    let mut tables = Vec::new();
    if cfg.kv {
        tables.push((names.kv.as_str(), "k", cfg.rows));
    }
    if cfg.big {
        tables.push((names.big.as_str(), "id", cfg.big_rows));
    }
    for &(table, key, _) in &tables {
        exec(&admin, &names.create_sql(table, key, "int")).await?;
    }
    recreate_ins(&admin, names).await?;

    for &(table, key, n) in &tables {
        let t0 = Instant::now();
        fill(url, table, key, n, cfg).await?;
        let secs = t0.elapsed().as_secs_f64();
        let counted: i64 = admin
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .and_then(|row| row.try_get(0))
            .map_err(|e| format!("count {table}: {}", describe(&e)))?;
        if counted as u64 != n {
            return Err(format!(
                "{table}: loaded {n} rows but count(*) says {counted}"
            ));
        }
        notes.push(format!(
            "loaded {n} rows into {table} in {secs:.1} s ({:.0} rows/s)",
            n as f64 / secs
        ));
    }

    // What a PostgreSQL user does after a bulk load; a server without these statements skips
    // them (the error is reported, not fatal).
    let mut after: Vec<String> = tables
        .iter()
        .map(|(table, _, _)| format!("VACUUM ANALYZE {table}"))
        .collect();
    after.push("CHECKPOINT".into());
    for sql in &after {
        if let Err(e) = exec(&admin, sql).await {
            notes.push(format!("after load, skipped: {e}"));
        }
    }
    Ok(notes)
}

/// Drops and recreates the empty `ins` table, so every insert run starts alike.
pub async fn recreate_ins(client: &Client, names: &Tables) -> Result<(), String> {
    exec(client, &format!("DROP TABLE IF EXISTS {}", names.ins)).await?;
    exec(client, &names.create_sql(&names.ins, "id", "bigint")).await
}

/// Inserts keys `1..=n` with `v = key % 1000`, `cfg.conns` connections taking batches in turn.
async fn fill(url: &str, table: &str, key: &str, n: u64, cfg: &LoadConfig) -> Result<(), String> {
    let next = Arc::new(AtomicU64::new(1));
    let mut tasks = Vec::new();
    for _ in 0..cfg.conns.max(1) {
        let client = connect(url, cfg.connect_timeout).await?;
        let next = Arc::clone(&next);
        let (table, key, batch) = (table.to_string(), key.to_string(), cfg.batch.max(1));
        tasks.push(tokio::spawn(async move {
            loop {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if first > n {
                    return Ok::<(), String>(());
                }
                let last = (first + batch - 1).min(n);
                let mut sql = format!("INSERT INTO {table} ({key}, v) VALUES ");
                for k in first..=last {
                    if k > first {
                        sql.push(',');
                    }
                    let _ = write!(sql, "({k},{})", k % 1000);
                }
                client.batch_execute(&sql).await.map_err(|e| {
                    format!(
                        "INSERT INTO {table} rows {first}..={last}: {}",
                        describe(&e)
                    )
                })?;
            }
        }));
    }
    for task in tasks {
        task.await.map_err(|e| format!("loader task: {e}"))??;
    }
    Ok(())
}

/// Waits until every server in `urls` reads `table`, for at most `within`: a cluster node may
/// apply a CREATE TABLE after the node that ran it has answered, and a client preparing a
/// statement there first would fail. Returns the failed attempts (0 when all saw it at once).
pub async fn wait_visible(
    urls: &[String],
    table: &str,
    within: Duration,
    connect_timeout: Duration,
) -> Result<u32, String> {
    let deadline = Instant::now() + within;
    let sql = format!("SELECT count(*) FROM {table}");
    let mut failed = 0;
    for url in urls {
        let client = connect(url, connect_timeout).await?;
        loop {
            match client.query_one(&sql, &[]).await {
                Ok(_) => break,
                Err(e) if Instant::now() < deadline => {
                    failed += 1;
                    if failed == 1 {
                        eprintln!("{url}: {sql}: {}; retrying", describe(&e));
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => {
                    return Err(format!(
                        "{url}: {table} not readable within {within:?}: {}",
                        describe(&e)
                    ))
                }
            }
        }
    }
    Ok(failed)
}
