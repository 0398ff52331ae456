//! `weft-lag`: replication lag of a cluster, from the commit on one node to the change being
//! visible on another, at a steady write rate.
//!
//! ```text
//!   setup lag_K + live query lagq_K on the writer's node, for each table kind K (lww, raft)
//!     └─▶ for run, for K (interleaved)
//!           └─▶ listeners on every observer node + writers at --rate (open loop) ─▶ Outcome
//!   medians per (K, observer) ─▶ table
//! ```
//!
//! Visible means pushed by the observer's live query: the hub sends a row after the node has
//! applied it, so the push arrives when a reader there could see it (plus one loopback send).
//! An observer on the writer's own node shows that push cost alone.

mod run;

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use weft_bench::stats::median;

use crate::run::{Outcome, Shape};

#[derive(Debug, Parser)]
#[command(
    name = "weft-lag",
    about = "Commit-to-visibility lag between the nodes of a Weft cluster"
)]
struct Cli {
    /// The node the writer commits on, e.g. postgres://postgres@127.0.0.1:5433/postgres.
    #[arg(long)]
    writer: String,
    /// A node whose pushes are timed, as NAME=URL; repeat it.
    #[arg(long = "observer", value_name = "NAME=URL", required = true, value_parser = parse_named)]
    observers: Vec<(String, String)>,
    /// Table kinds (`WITH (consistency = K)`), run in this order each run.
    #[arg(long, value_delimiter = ',', default_values = ["lww", "raft"])]
    consistency: Vec<String>,
    /// Writes per second, issued on schedule whether or not earlier ones were answered.
    #[arg(long, default_value_t = 500)]
    rate: u32,
    /// Writer connections to the writer's node; writes go to them in turn.
    #[arg(long, default_value_t = 4)]
    writers: usize,
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// After the writer stops, how long observers may take to see the rest.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    drain: Duration,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Also write the table as Markdown to this file.
    #[arg(long)]
    markdown: Option<std::path::PathBuf>,
}

fn parse_named(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((n, u)) if !n.is_empty() && !u.is_empty() => Ok((n.to_string(), u.to_string())),
        _ => Err(format!("expected NAME=URL, got {s:?}")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(k) = cli
        .consistency
        .iter()
        .find(|k| !k.chars().all(|c| c.is_ascii_lowercase()))
    {
        eprintln!("weft-lag: --consistency {k:?}: expected lww or raft");
        return ExitCode::FAILURE;
    }
    weft_bench::run_main("weft-lag", bench(cli))
}

async fn bench(cli: Cli) -> Result<(), String> {
    for kind in &cli.consistency {
        run::setup(&cli.writer, kind).await?;
    }
    let shape = Shape {
        rate: cli.rate,
        writers: cli.writers,
        warmup: cli.warmup,
        duration: cli.duration,
        drain: cli.drain,
    };
    let urls: Vec<String> = cli.observers.iter().map(|(_, u)| u.clone()).collect();
    let mut outcomes: Vec<Vec<Outcome>> = cli.consistency.iter().map(|_| Vec::new()).collect();
    let mut next_id = 0i64;
    for r in 1..=cli.runs {
        for (k, kind) in cli.consistency.iter().enumerate() {
            let o = run::run(&cli.writer, &urls, kind, &shape, &mut next_id)
                .await
                .unwrap_or_else(Outcome::failed);
            eprintln!("[run {r}/{}] {kind}: {}", cli.runs, brief(&cli, &o));
            outcomes[k].push(o);
        }
    }
    let text = report(&cli, &outcomes);
    print!("{text}");
    if let Some(path) = &cli.markdown {
        std::fs::write(path, &text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// One run on one line: rate, commit latency, each observer's lag.
fn brief(cli: &Cli, o: &Outcome) -> String {
    if let Some(e) = &o.error {
        return format!("FAILED: {e}");
    }
    let mut s = format!(
        "{:.0} writes/s, commit p50 {:.2} p99 {:.2} ms, errors {}",
        o.writes_per_s,
        ms(o.commit.value_at_quantile(0.5)),
        ms(o.commit.value_at_quantile(0.99)),
        o.errors
    );
    for ((name, _), seen) in cli.observers.iter().zip(&o.seen) {
        let _ = write!(
            s,
            "; {name} lag p50 {:.2} p99 {:.2} max {:.2} ms (from send p50 {:.2} p99 {:.2}) missing {}",
            ms(seen.lag.value_at_quantile(0.5)),
            ms(seen.lag.value_at_quantile(0.99)),
            ms(seen.lag.max()),
            ms(seen.lag_sent.value_at_quantile(0.5)),
            ms(seen.lag_sent.value_at_quantile(0.99)),
            seen.missing
        );
    }
    s
}

fn fmt(x: Option<f64>) -> String {
    x.map_or("-".into(), |x| format!("{x:.2}"))
}

fn report(cli: &Cli, outcomes: &[Vec<Outcome>]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n{} writes/s over {} connection(s) to the writer's node, {:?} per run (+{:?} warm-up), \
         {} run(s); medians over runs. Lag: pushed on the observer minus acknowledged to the \
         writer; from send: minus sent by it (ms).\n",
        cli.rate, cli.writers, cli.duration, cli.warmup, cli.runs
    );
    let _ = writeln!(
        s,
        "| table | observer | acked/s | commit p50 | commit p99 | lag p50 | lag p99 | lag max | from send p50 | from send p99 | missing | pushed before ack |"
    );
    let _ = writeln!(
        s,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for (kind, runs) in cli.consistency.iter().zip(outcomes) {
        let ok: Vec<&Outcome> = runs.iter().filter(|o| o.error.is_none()).collect();
        let rate = median(ok.iter().map(|o| o.writes_per_s).collect());
        let c50 = median(
            ok.iter()
                .map(|o| ms(o.commit.value_at_quantile(0.5)))
                .collect(),
        );
        let c99 = median(
            ok.iter()
                .map(|o| ms(o.commit.value_at_quantile(0.99)))
                .collect(),
        );
        for (i, (name, _)) in cli.observers.iter().enumerate() {
            let seen: Vec<_> = ok.iter().filter_map(|o| o.seen.get(i)).collect();
            let q = |q: f64, sent: bool| {
                median(
                    seen.iter()
                        .map(|s| if sent { &s.lag_sent } else { &s.lag })
                        .filter(|h| !h.is_empty())
                        .map(|h| ms(h.value_at_quantile(q)))
                        .collect(),
                )
            };
            let max = median(seen.iter().map(|s| ms(s.lag.max())).collect());
            let missing: u64 = seen.iter().map(|s| s.missing).sum();
            let before: u64 = seen.iter().map(|s| s.before_ack).sum();
            let _ = writeln!(
                s,
                "| {kind} | {name} | {} | {} | {} | {} | {} | {} | {} | {} | {missing} | {before} |",
                rate.map_or("-".into(), |r| format!("{r:.0}")),
                fmt(c50),
                fmt(c99),
                fmt(q(0.5, false)),
                fmt(q(0.99, false)),
                fmt(max),
                fmt(q(0.5, true)),
                fmt(q(0.99, true)),
            );
        }
    }
    let _ = writeln!(s, "\nEach run:\n");
    for (kind, runs) in cli.consistency.iter().zip(outcomes) {
        for (r, o) in runs.iter().enumerate() {
            let _ = writeln!(s, "- {kind}, run {}: {}", r + 1, brief(cli, o));
        }
    }
    let _ = writeln!(
        s,
        "\nmissing and pushed-before-ack are totals over the runs; lag of a row pushed before the \
         writer had its acknowledgement counts as 0."
    );
    s
}
