//! One timed run of one workload against one server: N clients, each on its own connection with
//! its own prepared statement, issuing operations back to back until the deadline or the shared
//! operation budget runs out.
//!
//! ```text
//!   connect + prepare (untimed) ──▶ warm-up ──▶ measured window [start, deadline) ──▶ merge
//! ```
//!
//! An operation counts when it completes inside the window, with its whole latency, as pgbench
//! counts transactions: an operation slower than the warm-up is still measured, and the one in
//! flight at the deadline is awaited but not counted.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::{timeout, Instant};
use tokio_postgres::{Client, NoTls};

use crate::tables::Tables;
use crate::workload::{describe, error_chain, Op, Rng, Workload};

/// How a run is shaped; the same for every target.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub clients: usize,
    pub duration: Duration,
    pub warmup: Duration,
    /// Most measured operations in one run, over all clients.
    pub max_ops: u64,
    /// An operation slower than this ends its client (the connection is in an unknown state).
    pub op_timeout: Duration,
    pub connect_timeout: Duration,
    pub rows: u64,
    pub big_rows: u64,
    /// Run by every client after connecting, before preparing (e.g. a `SET`).
    pub session_sql: Option<String>,
}

/// What one run measured.
#[derive(Debug)]
pub struct RunResult {
    /// Successful measured operations.
    pub ok: u64,
    /// The measured window: the duration, or less if the operation budget ran out first.
    pub elapsed: Duration,
    /// Latency of successful measured operations, microseconds.
    pub hist: Histogram<u64>,
    /// Failed operations (warm-up included), by error.
    pub errors: BTreeMap<String, u64>,
    /// Why the run could not start, if it could not.
    pub fatal: Option<String>,
    /// The machine's 1-minute load average at the end of the run: how noisy it was.
    pub loadavg: Option<f64>,
}

impl RunResult {
    pub fn throughput(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        }
    }

    /// A percentile in milliseconds, or None without a successful operation.
    pub fn percentile_ms(&self, q: f64) -> Option<f64> {
        (!self.hist.is_empty()).then(|| self.hist.value_at_quantile(q) as f64 / 1000.0)
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn failed(fatal: String) -> Self {
        RunResult {
            ok: 0,
            elapsed: Duration::ZERO,
            hist: new_histogram(),
            errors: BTreeMap::new(),
            fatal: Some(fatal),
            loadavg: None,
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs to 10 min at 3 significant digits; the bounds are constants, so this cannot fail.
    Histogram::new_with_bounds(1, 600_000_000, 3).unwrap_or_else(|_| unreachable!())
}

/// Opens a connection whose driver runs on its own task.
pub async fn connect(url: &str, within: Duration) -> Result<Client, String> {
    let (client, connection) = timeout(within, tokio_postgres::connect(url, NoTls))
        .await
        .map_err(|_| format!("connect timed out after {within:?}"))?
        .map_err(|e| format!("connect: {}", error_chain(&e)))?;
    tokio::spawn(async move {
        // An error here also fails the client's pending and next requests, where it is counted.
        let _ = connection.await;
    });
    Ok(client)
}

struct ClientOutcome {
    ok: u64,
    hist: Histogram<u64>,
    errors: BTreeMap<String, u64>,
    /// When this client's last counted operation completed.
    last_counted: Instant,
}

/// Runs `workload` once against the servers at `urls`: client `c` connects to `urls[c % n]`.
pub async fn run(
    urls: &[String],
    tables: &Tables,
    workload: Workload,
    cfg: &RunConfig,
    seed: u64,
) -> RunResult {
    let stmt_sql = workload.sql(tables);
    let mut sessions = Vec::with_capacity(cfg.clients);
    for c in 0..cfg.clients {
        let url = &urls[c % urls.len()];
        let client = match connect(url, cfg.connect_timeout).await {
            Ok(client) => client,
            Err(e) => return RunResult::failed(format!("client {c}: {e}")),
        };
        if let Some(sql) = &cfg.session_sql {
            match timeout(cfg.op_timeout, client.batch_execute(sql)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    return RunResult::failed(format!("client {c}: {sql:?}: {}", describe(&e)))
                }
                Err(_) => return RunResult::failed(format!("client {c}: {sql:?} timed out")),
            }
        }
        let stmt = match timeout(cfg.op_timeout, client.prepare(&stmt_sql)).await {
            Ok(Ok(stmt)) => stmt,
            Ok(Err(e)) => {
                return RunResult::failed(format!(
                    "client {c}: prepare {stmt_sql:?}: {}",
                    describe(&e)
                ))
            }
            Err(_) => return RunResult::failed(format!("client {c}: prepare timed out")),
        };
        let op = Op {
            workload,
            stmt,
            rows: cfg.rows,
            big_rows: cfg.big_rows,
            id_base: (c as i64 + 1) * 1_000_000_000_000,
            seq: 0,
            rng: Rng::new(seed ^ ((c as u64 + 1) << 32)),
        };
        sessions.push((client, op));
    }

    let start = Instant::now() + cfg.warmup;
    let deadline = start + cfg.duration;
    let budget = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(sessions.len());
    for (client, op) in sessions {
        let budget = Arc::clone(&budget);
        let cfg = cfg.clone();
        tasks.push(tokio::spawn(drive(
            client, op, start, deadline, budget, cfg,
        )));
    }

    let mut result = RunResult {
        ok: 0,
        elapsed: Duration::ZERO,
        hist: new_histogram(),
        errors: BTreeMap::new(),
        fatal: None,
        loadavg: None,
    };
    let mut last_counted = start;
    for task in tasks {
        match task.await {
            Ok(out) => {
                result.ok += out.ok;
                // Same bounds on both sides: adding cannot fail.
                let _ = result.hist.add(&out.hist);
                for (k, n) in out.errors {
                    *result.errors.entry(k).or_default() += n;
                }
                last_counted = last_counted.max(out.last_counted);
            }
            Err(e) => {
                *result
                    .errors
                    .entry(format!("client task: {e}"))
                    .or_default() += 1
            }
        }
    }
    result.elapsed = if budget.load(Ordering::Relaxed) >= cfg.max_ops {
        last_counted.saturating_duration_since(start)
    } else {
        cfg.duration
    };
    result
}

async fn drive(
    client: Client,
    mut op: Op,
    start: Instant,
    deadline: Instant,
    budget: Arc<AtomicU64>,
    cfg: RunConfig,
) -> ClientOutcome {
    let mut out = ClientOutcome {
        ok: 0,
        hist: new_histogram(),
        errors: BTreeMap::new(),
        last_counted: start,
    };
    loop {
        let t0 = Instant::now();
        if t0 >= deadline || budget.load(Ordering::Relaxed) >= cfg.max_ops {
            break;
        }
        match timeout(cfg.op_timeout, op.execute(&client)).await {
            Ok(Ok(())) => {
                let t1 = Instant::now();
                if t1 >= start && t1 < deadline {
                    if budget.fetch_add(1, Ordering::Relaxed) >= cfg.max_ops {
                        break;
                    }
                    out.ok += 1;
                    out.hist.saturating_record((t1 - t0).as_micros() as u64);
                    out.last_counted = t1;
                }
            }
            Ok(Err(e)) => {
                *out.errors.entry(e.key()).or_default() += 1;
                if client.is_closed() {
                    *out.errors
                        .entry("connection closed; client stopped".into())
                        .or_default() += 1;
                    break;
                }
            }
            Err(_) => {
                let key = format!("no answer within {:?}; client stopped", cfg.op_timeout);
                *out.errors.entry(key).or_default() += 1;
                break;
            }
        }
    }
    out
}
