//! One fan-out run: L raw listeners on one channel, one writer committing one change per
//! transaction as fast as it can, deliveries counted over all listeners in the measured window.
//!
//! ```text
//!   connect L listeners + LISTEN (untimed) ─▶ RSS ─▶ writer: warm-up, window, stop
//!     ─▶ drain (until every listener has every commit, or a time-out) ─▶ RSS
//!     ─▶ listeners disconnect, 1 s ─▶ RSS ─▶ merge
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::time::{timeout, Instant};
use tokio_postgres::{Client, NoTls};

use crate::listener::{now_us, Listener, Window};

/// Which server and which mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Weft: `INSERT` into `fan`, pushed by the live query `fanq`.
    WeftLive,
    /// PostgreSQL: `INSERT` into `fan`, an AFTER INSERT trigger runs `pg_notify('fanq', row_to_json(NEW)::text)`.
    PgTrigger,
    /// `NOTIFY fanc, '{"sent_at": …}'`, one per transaction.
    WeftNotify,
    PgNotify,
    /// `NOTIFY busyc, …` while the L listeners wait on `idlec`: commits/s is what counts.
    WeftIdle,
    PgIdle,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::WeftLive => "weft live query",
            Scenario::PgTrigger => "pg trigger+pg_notify",
            Scenario::WeftNotify => "weft NOTIFY",
            Scenario::PgNotify => "pg NOTIFY",
            Scenario::WeftIdle => "weft NOTIFY, idle listeners elsewhere",
            Scenario::PgIdle => "pg NOTIFY, idle listeners elsewhere",
        }
    }

    pub fn is_weft(self) -> bool {
        matches!(
            self,
            Scenario::WeftLive | Scenario::WeftNotify | Scenario::WeftIdle
        )
    }

    fn listen_channel(self) -> &'static str {
        match self {
            Scenario::WeftLive | Scenario::PgTrigger => "fanq",
            Scenario::WeftNotify | Scenario::PgNotify => "fanc",
            Scenario::WeftIdle | Scenario::PgIdle => "idlec",
        }
    }

    fn inserts(self) -> bool {
        matches!(self, Scenario::WeftLive | Scenario::PgTrigger)
    }

    fn delivers(self) -> bool {
        !matches!(self, Scenario::WeftIdle | Scenario::PgIdle)
    }
}

/// A server under test.
#[derive(Clone, Debug)]
pub struct Target {
    pub url: String,
    /// host:port for the raw listeners.
    pub addr: String,
    /// Server process; for PostgreSQL the postmaster (its children are summed).
    pub pid: Option<u32>,
    pub tree: bool,
}

#[derive(Clone, Debug)]
pub struct Shape {
    pub listeners: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub drain: Duration,
    /// The writer's commits per second, on a fixed schedule; None: back to back. When paced,
    /// latency counts from the scheduled send time, so a writer that falls behind its schedule
    /// shows in the latency instead of slowing the offered load (no coordinated omission).
    pub rate: Option<f64>,
}

#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub commits_per_s: f64,
    pub deliveries_per_s: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Deliveries received by the end of the drain over commits × listeners.
    pub complete: Option<f64>,
    pub rss_idle_mb: Option<f64>,
    pub rss_end_mb: Option<f64>,
    /// After the listeners disconnected (and a settling second): what the server gave back.
    pub rss_closed_mb: Option<f64>,
    pub notices: u64,
    pub unparsed: u64,
    /// CPU µs per delivery from the writer's start to the end of the drain: the server's
    /// (PostgreSQL: all its processes) and this client's (listeners and writer).
    pub server_us_per_delivery: Option<f64>,
    pub client_us_per_delivery: Option<f64>,
    pub loadavg: Option<f64>,
    pub error: Option<String>,
}

pub async fn client(url: &str) -> Result<Client, String> {
    let (c, conn) = timeout(Duration::from_secs(30), tokio_postgres::connect(url, NoTls))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(c)
}

/// Creates `fan` and, per server, the live query or the trigger.
pub async fn setup(t: &Target, weft: bool) -> Result<(), String> {
    let c = client(&t.url).await?;
    if weft {
        let _ = c.batch_execute("DROP LIVE QUERY fanq").await;
        let _ = c.batch_execute("DROP TABLE fan").await;
        c.batch_execute(
            "CREATE TABLE fan (id bigint PRIMARY KEY, sent_at bigint);
             CREATE LIVE QUERY fanq AS SELECT id, sent_at FROM fan",
        )
        .await
        .map_err(|e| format!("weft setup: {e:?}"))?;
    } else {
        c.batch_execute(
            "DROP TABLE IF EXISTS fan;
             CREATE TABLE fan (id bigint PRIMARY KEY, sent_at bigint);
             CREATE OR REPLACE FUNCTION fan_notify() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN PERFORM pg_notify('fanq', row_to_json(NEW)::text); RETURN NEW; END $$;
             CREATE TRIGGER fan_notify AFTER INSERT ON fan FOR EACH ROW EXECUTE FUNCTION fan_notify();",
        )
        .await
        .map_err(|e| format!("postgres setup: {e:?}"))?;
    }
    Ok(())
}

/// Resident memory in MB: VmRSS of the process, or for a tree the sum of Pss over it and its
/// children (PostgreSQL's backends share shared_buffers; Pss counts shared pages once).
pub fn rss_mb(pid: u32, tree: bool) -> Option<f64> {
    if !tree {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        return kb_field(&s, "VmRSS:").map(|kb| kb / 1024.0);
    }
    let mut pids = vec![pid];
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // pid (comm) state ppid …; comm may hold spaces, so split after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u32>().ok());
        if ppid == Some(pid) {
            pids.push(p);
        }
    }
    let mut total = 0.0;
    for p in pids {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")) {
            total += kb_field(&s, "Pss:").unwrap_or(0.0);
        }
    }
    Some(total / 1024.0)
}

/// CPU seconds (user + system) used so far by the process, or by it and its children.
pub fn cpu_s(pid: u32, tree: bool) -> Option<f64> {
    let tick = 100.0; // USER_HZ on Linux
    let read = |p: u32| -> Option<(u32, f64)> {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ppid = f.get(1)?.parse().ok()?;
        let t: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
        Some((ppid, t / tick))
    };
    let mut total = read(pid)?.1;
    if tree {
        for e in std::fs::read_dir("/proc").ok()?.flatten() {
            if let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) {
                if let Some((ppid, t)) = read(p) {
                    if ppid == pid {
                        total += t;
                    }
                }
            }
        }
    }
    Some(total)
}

fn kb_field(s: &str, key: &str) -> Option<f64> {
    s.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub async fn run(t: &Target, s: Scenario, shape: &Shape, next_id: &mut i64) -> Outcome {
    match run_inner(t, s, shape, next_id).await {
        Ok(o) => o,
        Err(e) => Outcome {
            error: Some(e),
            loadavg: loadavg(),
            ..Outcome::default()
        },
    }
}

async fn run_inner(
    t: &Target,
    s: Scenario,
    shape: &Shape,
    next_id: &mut i64,
) -> Result<Outcome, String> {
    // Listeners: bounded parallel connects (PostgreSQL forks a backend for each).
    let gate = Arc::new(Semaphore::new(64));
    let mut pending = Vec::with_capacity(shape.listeners);
    for _ in 0..shape.listeners {
        let gate = Arc::clone(&gate);
        let addr = t.addr.clone();
        let channel = s.listen_channel();
        pending.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            timeout(
                Duration::from_secs(60),
                Listener::connect(&addr, "postgres", "postgres", channel),
            )
            .await
            .map_err(|_| "listener connect + LISTEN timed out after 60 s".to_string())?
            .map_err(|e| format!("listener: {e}"))
        }));
    }
    let mut listeners = Vec::with_capacity(shape.listeners);
    let mut first_error = None;
    for p in pending {
        match p.await {
            Ok(Ok(l)) => listeners.push(l),
            Ok(Err(e)) => first_error = first_error.or(Some(e)),
            Err(e) => first_error = first_error.or(Some(format!("listener task: {e}"))),
        }
    }
    if let Some(e) = first_error {
        return Err(format!(
            "{} of {} listeners connected; first error: {e}",
            listeners.len(),
            shape.listeners
        ));
    }
    let rss_idle_mb = t.pid.and_then(|p| rss_mb(p, t.tree));

    // The writer has its own thread and runtime, as a separate client would: on the listeners'
    // runtime its next commit would wait behind every listener's wake-up.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<Window>();
    let (url, first_id, rate) = (t.url.clone(), *next_id, shape.rate);
    let writer = std::thread::spawn(move || -> Writes {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready_tx.send(Err(format!("writer runtime: {e}")));
                return Writes::default();
            }
        };
        rt.block_on(write(url, s, first_id, rate, ready_tx, go_rx))
    });
    ready_rx
        .recv()
        .map_err(|_| "the writer thread ended early".to_string())??;
    let start_us = now_us();
    let from_us = start_us + shape.warmup.as_micros() as u64;
    let window = Window {
        from_us,
        to_us: from_us + shape.duration.as_micros() as u64,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let received = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = listeners
        .into_iter()
        .map(|l| tokio::spawn(l.receive(window, stop_rx.clone(), Arc::clone(&received))))
        .collect();
    let cpu_before = (
        t.pid.and_then(|p| cpu_s(p, t.tree)),
        cpu_s(std::process::id(), false),
    );
    let _ = go_tx.send(window);
    let w = tokio::task::spawn_blocking(move || writer.join())
        .await
        .map_err(|e| format!("writer join: {e}"))?
        .map_err(|_| "the writer thread panicked".to_string())?;
    *next_id = w.next_id;
    let (commits, in_window, write_error) = (w.commits, w.in_window, w.error);
    // Drain: until every listener has every commit, or the time-out.
    let expected = if s.delivers() {
        commits * shape.listeners as u64
    } else {
        0
    };
    let drain_end = Instant::now() + shape.drain;
    while received.load(Ordering::Relaxed) < expected && Instant::now() < drain_end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rss_end_mb = t.pid.and_then(|p| rss_mb(p, t.tree));
    let cpu_after = (
        t.pid.and_then(|p| cpu_s(p, t.tree)),
        cpu_s(std::process::id(), false),
    );
    let all = received.load(Ordering::Relaxed);
    let per = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if all > 0 => Some((b - a) * 1e6 / all as f64),
        _ => None,
    };
    // PostgreSQL's backends showed next to no CPU time in /proc/<pid>/stat in this
    // measurement (not understood yet), so only Weft's server figure is reported.
    let server_us_per_delivery = if t.tree {
        None
    } else {
        per(cpu_before.0, cpu_after.0)
    };
    let client_us_per_delivery = per(cpu_before.1, cpu_after.1);
    let _ = stop_tx.send(true);

    let mut lat: Vec<u32> = Vec::new();
    let mut trace: Vec<(u64, u32)> = Vec::new();
    let (mut delivered, mut total, mut notices, mut unparsed) = (0u64, 0u64, 0u64, 0u64);
    let mut listen_error = None;
    for task in tasks {
        match task.await {
            Ok(Ok(seen)) => {
                delivered += seen.in_window;
                total += seen.total;
                notices += seen.notices;
                unparsed += seen.unparsed;
                lat.extend_from_slice(&seen.latencies_us);
                if std::env::var_os("FANOUT_TRACE").is_some() {
                    trace.extend(
                        seen.sent_us
                            .iter()
                            .copied()
                            .zip(seen.latencies_us.iter().copied()),
                    );
                }
            }
            Ok(Err(e)) => listen_error = listen_error.or(Some(format!("listener: {e}"))),
            Err(e) => listen_error = listen_error.or(Some(format!("listener task: {e}"))),
        }
    }
    if let Some(path) = std::env::var_os("FANOUT_TRACE") {
        write_trace(path.into(), trace);
    }
    // Every listener's socket is closed by now; the server notices within a moment.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_closed_mb = t.pid.and_then(|p| rss_mb(p, t.tree));
    lat.sort_unstable();
    let pct = |q: f64| {
        (!lat.is_empty()).then(|| {
            let i = ((lat.len() as f64 * q).ceil() as usize).clamp(1, lat.len()) - 1;
            f64::from(lat[i]) / 1000.0
        })
    };
    let secs = shape.duration.as_secs_f64();
    Ok(Outcome {
        commits_per_s: in_window as f64 / secs,
        deliveries_per_s: delivered as f64 / secs,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: pct(1.0),
        complete: (expected > 0).then(|| total as f64 / expected as f64),
        rss_idle_mb,
        rss_end_mb,
        rss_closed_mb,
        notices,
        unparsed,
        server_us_per_delivery,
        client_us_per_delivery,
        loadavg: loadavg(),
        error: write_error.or(listen_error),
    })
}

#[derive(Debug, Default)]
struct Writes {
    commits: u64,
    in_window: u64,
    error: Option<String>,
    next_id: i64,
}

/// One change per transaction (autocommit), back to back or on the `rate` schedule, until the
/// window ends.
async fn write(
    url: String,
    s: Scenario,
    mut next_id: i64,
    rate: Option<f64>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
    go: std::sync::mpsc::Receiver<Window>,
) -> Writes {
    let prepared = async {
        let c = client(&url).await?;
        let insert = c
            .prepare("INSERT INTO fan (id, sent_at) VALUES ($1, $2)")
            .await
            .map_err(|e| format!("prepare: {e}"))?;
        Ok::<_, String>((c, insert))
    }
    .await;
    let (writer, insert) = match prepared {
        Ok(p) => {
            let _ = ready.send(Ok(()));
            p
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return Writes::default();
        }
    };
    let Ok(window) = go.recv() else {
        return Writes::default();
    };
    let mut w = Writes::default();
    let interval_us = rate.map(|r| 1e6 / r);
    let first_us = now_us();
    let mut scheduled = 0u64;
    while now_us() < window.to_us {
        let sent = match interval_us {
            None => now_us(),
            Some(iv) => {
                let at = first_us + (scheduled as f64 * iv) as u64;
                scheduled += 1;
                let now = now_us();
                if at > now {
                    // This thread runs nothing else while no commit is in flight; a thread
                    // sleep keeps to the schedule more closely than tokio's 1 ms timer.
                    std::thread::sleep(Duration::from_micros(at - now));
                }
                at
            }
        };
        let r = if s.inserts() {
            next_id += 1;
            timeout(
                Duration::from_secs(30),
                writer.execute(&insert, &[&next_id, &(sent as i64)]),
            )
            .await
            .map(|r| r.map(|_| ()))
        } else {
            let channel = if s.delivers() { "fanc" } else { "busyc" };
            let sql = format!("NOTIFY {channel}, '{{\"sent_at\": {sent}}}'");
            timeout(Duration::from_secs(30), writer.simple_query(&sql))
                .await
                .map(|r| r.map(|_| ()))
        };
        match r {
            Ok(Ok(())) => {
                w.commits += 1;
                let done = now_us();
                if done >= window.from_us && done < window.to_us {
                    w.in_window += 1;
                }
            }
            Ok(Err(e)) => {
                w.error = Some(format!("writer: {e}"));
                break;
            }
            Err(_) => {
                w.error = Some("writer: a commit took over 30 s".into());
                break;
            }
        }
    }
    w.next_id = next_id;
    w
}

/// FANOUT_TRACE=PATH: for each scenario run, PATH with the extension replaced by its sequence
/// number gets one line per commit: the writer's clock (µs), then the largest and the smallest
/// commit-to-client latency (µs) over the listeners. Shows whether the tail is spread or
/// clustered in time, and how much of it the commit itself takes (the smallest).
fn write_trace(mut path: std::path::PathBuf, trace: Vec<(u64, u32)>) {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let mut range: std::collections::BTreeMap<u64, (u32, u32)> = std::collections::BTreeMap::new();
    for (sent, lat) in trace {
        let r = range.entry(sent).or_insert((lat, lat));
        *r = (r.0.max(lat), r.1.min(lat));
    }
    let text: String = range
        .iter()
        .map(|(s, (worst, best))| format!("{s} {worst} {best}\n"))
        .collect();
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    path.set_extension(n.to_string());
    if let Err(e) = std::fs::write(&path, text) {
        eprintln!("FANOUT_TRACE: cannot write {}: {e}", path.display());
    }
}
