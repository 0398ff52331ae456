//! One lag run: writers commit single-row inserts at a steady rate on one node; every observer
//! node pushes each row to a listener as its live query sees it applied there.
//!
//! ```text
//!   setup: lag_K (WITH consistency = K) + live query lagq_K   (once per K)
//!   observers LISTEN lagq_K ─▶ probe until every observer pushes ─▶ writes: warm-up, window
//!     ─▶ drain (until every observer saw every write, or a time-out) ─▶ per observer:
//!        lag = pushed at the observer − acknowledged to the writer  (and − sent by it)
//! ```
//!
//! The schedule is open-loop: write i is issued at start + i / rate on writer connection
//! i mod W whether or not earlier writes have been answered, so a slow commit does not lower
//! the rate. The writers and every listener run in this process and are timed with the same
//! monotonic clock (`tokio::time::Instant`), so no clock offset enters the figures. The row
//! also stores the writer's wall clock (`sent_at`, µs) for anyone reading the table.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{interval, sleep, timeout, Instant};
use tokio_postgres::{AsyncMessage, Client, NoTls};
use weft_bench::payload::int_field;

/// How a run is shaped.
#[derive(Clone, Debug)]
pub struct Shape {
    pub rate: u32,
    /// Writer connections (writes go to them in turn).
    pub writers: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub drain: Duration,
}

/// What one observer saw in one run.
#[derive(Debug)]
pub struct Seen {
    /// Pushed minus acknowledged, µs, for the measured writes it saw (0 if pushed before).
    pub lag: Histogram<u64>,
    /// Pushed minus sent, µs: an upper bound that includes the commit itself.
    pub lag_sent: Histogram<u64>,
    /// Measured writes it never pushed by the end of the drain.
    pub missing: u64,
    /// Measured writes it pushed before the writer had the acknowledgement.
    pub before_ack: u64,
}

/// What one run measured.
#[derive(Debug)]
pub struct Outcome {
    /// Writes issued in the window and acknowledged before it closed, per second.
    pub writes_per_s: f64,
    /// Commit latency seen by the writer, µs.
    pub commit: Histogram<u64>,
    pub errors: u64,
    /// Per observer, in the order given.
    pub seen: Vec<Seen>,
    pub error: Option<String>,
}

pub fn histogram() -> Histogram<u64> {
    // 1 µs to 10 min at 3 significant digits; constant bounds, so this cannot fail.
    Histogram::new_with_bounds(1, 600_000_000, 3).unwrap_or_else(|_| unreachable!())
}

impl Outcome {
    pub fn failed(error: String) -> Outcome {
        Outcome {
            writes_per_s: 0.0,
            commit: histogram(),
            errors: 0,
            seen: Vec::new(),
            error: Some(error),
        }
    }
}

async fn connect(url: &str) -> Result<Client, String> {
    let (c, conn) = timeout(Duration::from_secs(30), tokio_postgres::connect(url, NoTls))
        .await
        .map_err(|_| format!("{url}: connect timed out"))?
        .map_err(|e| format!("{url}: connect: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(c)
}

/// Creates `lag_K` and its live query `lagq_K` on the writer's node.
pub async fn setup(writer: &str, kind: &str) -> Result<(), String> {
    let c = connect(writer).await?;
    // Absent the first time.
    let _ = c
        .batch_execute(&format!("DROP LIVE QUERY lagq_{kind}"))
        .await;
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS lag_{kind};
         CREATE TABLE lag_{kind} (id bigint PRIMARY KEY, sent_at bigint) WITH (consistency = '{kind}');
         CREATE LIVE QUERY lagq_{kind} AS SELECT id, sent_at FROM lag_{kind}"
    ))
    .await
    .map_err(|e| format!("setup of lag_{kind}: {e:?}"))
}

/// When an observer first pushed each row id.
type FirstSeen = Arc<Mutex<HashMap<i64, Instant>>>;

/// A listening connection: its driver records the first push of each row id.
struct Observer {
    /// Keeps the connection open (the driver ends when it is dropped).
    _client: Client,
    first: FirstSeen,
    task: JoinHandle<()>,
}

impl Observer {
    fn has_all(&self, ids: &[i64]) -> bool {
        self.first
            .lock()
            .is_ok_and(|m| ids.iter().all(|id| m.contains_key(id)))
    }
}

async fn observe(
    url: &str,
    channel: &str,
    stop: watch::Receiver<bool>,
) -> Result<Observer, String> {
    let (client, mut conn) = timeout(Duration::from_secs(30), tokio_postgres::connect(url, NoTls))
        .await
        .map_err(|_| format!("{url}: connect timed out"))?
        .map_err(|e| format!("{url}: connect: {e}"))?;
    let first: FirstSeen = Arc::default();
    let mut stop = stop;
    let map = Arc::clone(&first);
    let task = tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                biased;
                m = std::future::poll_fn(|cx| conn.poll_message(cx)) => m,
                _ = stop.wait_for(|s| *s) => break,
            };
            match msg {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    let at = Instant::now();
                    if let (Some(id), Ok(mut m)) =
                        (int_field(n.payload().as_bytes(), "id"), map.lock())
                    {
                        m.entry(id as i64).or_insert(at);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
    });
    timeout(
        Duration::from_secs(30),
        client.batch_execute(&format!("LISTEN {channel}")),
    )
    .await
    .map_err(|_| format!("{url}: LISTEN timed out"))?
    .map_err(|e| format!("{url}: LISTEN {channel}: {e}"))?;
    Ok(Observer {
        _client: client,
        first,
        task,
    })
}

/// One write: when it was sent and acknowledged, and whether it counts.
struct Write {
    id: i64,
    sent: Instant,
    acked: Instant,
}

/// Runs once for table kind `kind`; ids continue from `next_id` (rows are never reused).
pub async fn run(
    writer_url: &str,
    observer_urls: &[String],
    kind: &str,
    shape: &Shape,
    next_id: &mut i64,
) -> Result<Outcome, String> {
    let channel = format!("lagq_{kind}");
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut observers = Vec::new();
    for url in observer_urls {
        observers.push(observe(url, &channel, stop_rx.clone()).await?);
    }
    let mut writers = Vec::new();
    for _ in 0..shape.writers.max(1) {
        let c = connect(writer_url).await?;
        let insert = c
            .prepare(&format!(
                "INSERT INTO lag_{kind} (id, sent_at) VALUES ($1, $2)"
            ))
            .await
            .map_err(|e| format!("prepare on the writer: {e}"))?;
        writers.push((Arc::new(c), insert));
    }

    // A node may apply the CREATE of the table or the live query after the writer's node has
    // answered it: probe until every observer has pushed a probe row (30 s at most).
    let probe_until = Instant::now() + Duration::from_secs(30);
    let (c, insert) = &writers[0];
    loop {
        *next_id += 1;
        c.execute(insert, &[next_id, &wall_us()])
            .await
            .map_err(|e| format!("probe insert: {e}"))?;
        let probe = *next_id;
        let wait_until = Instant::now() + Duration::from_millis(200);
        while Instant::now() < wait_until && !observers.iter().all(|o| o.has_all(&[probe])) {
            sleep(Duration::from_millis(5)).await;
        }
        if observers.iter().all(|o| o.has_all(&[probe])) {
            break;
        }
        if Instant::now() > probe_until {
            return Err("an observer pushed no probe row within 30 s".into());
        }
    }

    let period = Duration::from_secs_f64(1.0 / f64::from(shape.rate.max(1)));
    let start = Instant::now() + shape.warmup;
    let end = start + shape.duration;
    // Open loop: a late tick fires at once (tokio's default, Burst), and each write is its own
    // task, so the schedule does not wait for answers.
    let mut tick = interval(period);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Option<Write>>();
    let mut issued = 0usize;
    loop {
        let t = tick.tick().await;
        if t >= end {
            break;
        }
        *next_id += 1;
        let id = *next_id;
        let (c, insert) = &writers[issued % writers.len()];
        let (c, insert, done) = (Arc::clone(c), insert.clone(), done_tx.clone());
        issued += 1;
        tokio::spawn(async move {
            let sent = Instant::now();
            let r = timeout(
                Duration::from_secs(30),
                c.execute(&insert, &[&id, &wall_us()]),
            )
            .await;
            let acked = Instant::now();
            let _ = done.send(matches!(r, Ok(Ok(_))).then_some(Write { id, sent, acked }));
        });
    }
    drop(done_tx);
    let mut writes = Vec::with_capacity(issued);
    let mut errors = 0u64;
    // Every write task ends within its 30 s time-out.
    while let Some(w) = done_rx.recv().await {
        match w {
            Some(w) => writes.push(w),
            None => errors += 1,
        }
    }
    let mut commit = histogram();
    writes.retain(|w| w.sent >= start);
    for w in &writes {
        commit.saturating_record((w.acked - w.sent).as_micros() as u64);
    }

    // Drain: until every observer has pushed every write, or the time-out.
    let drain_until = Instant::now() + shape.drain;
    let ids: Vec<i64> = writes.iter().map(|w| w.id).collect();
    while Instant::now() < drain_until && !observers.iter().all(|o| o.has_all(&ids)) {
        sleep(Duration::from_millis(20)).await;
    }
    stop_tx.send_replace(true);

    let mut seen = Vec::new();
    for o in observers {
        o.task.await.map_err(|e| format!("observer task: {e}"))?;
        let first = o.first.lock().map_err(|_| "observer map poisoned")?;
        let mut s = Seen {
            lag: histogram(),
            lag_sent: histogram(),
            missing: 0,
            before_ack: 0,
        };
        for w in &writes {
            let Some(&at) = first.get(&w.id) else {
                s.missing += 1;
                continue;
            };
            s.lag_sent
                .saturating_record(at.saturating_duration_since(w.sent).as_micros() as u64);
            if at < w.acked {
                // Pushed before the writer read its answer: visible there no later than the
                // acknowledgement, counted as zero lag.
                s.before_ack += 1;
            }
            s.lag
                .saturating_record(at.saturating_duration_since(w.acked).as_micros() as u64);
        }
        seen.push(s);
    }
    // What the node kept up with: acknowledgements inside the window (the schedule issues
    // `rate` a second whatever happens).
    let acked_in_window = writes.iter().filter(|w| w.acked < end).count();
    Ok(Outcome {
        writes_per_s: acked_in_window as f64 / shape.duration.as_secs_f64(),
        commit,
        errors,
        seen,
        error: None,
    })
}

/// The machine's wall clock in µs (stored in the row; the figures use the monotonic clock).
fn wall_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}
