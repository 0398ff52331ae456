//! `weft-fanout`: push fan-out, Weft against PostgreSQL in one run.
//!
//! ```text
//!   setup both servers (table fan; Weft: live query fanq; PostgreSQL: trigger → pg_notify)
//!     └─▶ for run, for L, for scenario (Weft and PostgreSQL interleaved)
//!           └─▶ L raw listeners + 1 writer (one commit per change) ─▶ Outcome
//!   medians per (scenario, L) ─▶ table; then commits/s with 0 vs N idle listeners elsewhere
//! ```
//!
//! Deliveries/s counts notifications received by all listeners inside the measured window;
//! latency is the listener's clock at receipt minus the writer's clock before it sent the commit
//! (`sent_at`, µs, carried in the payload), so it includes the commit itself.

mod listener;
mod scenario;

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::scenario::{Outcome, Scenario, Shape, Target};

#[derive(Debug, Parser)]
#[command(
    name = "weft-fanout",
    about = "Push fan-out benchmark: Weft vs PostgreSQL"
)]
struct Cli {
    /// Weft's URL, e.g. postgres://postgres@127.0.0.1:5433/postgres.
    #[arg(long)]
    weft: Option<String>,
    /// Weft's server pid (VmRSS is recorded).
    #[arg(long)]
    weft_pid: Option<u32>,
    /// PostgreSQL's URL.
    #[arg(long)]
    pg: Option<String>,
    /// The postmaster's pid (Pss of it and its children is recorded).
    #[arg(long)]
    pg_pid: Option<u32>,
    /// Listener counts.
    #[arg(long, value_delimiter = ',', default_values = ["10", "100", "1000", "10000"])]
    listeners: Vec<usize>,
    /// PostgreSQL runs only at listener counts up to this (a backend process per connection).
    #[arg(long, default_value_t = 1000)]
    pg_max_listeners: usize,
    /// Idle listeners on another channel for the commit-rate check (compared with none); 0 skips it.
    #[arg(long, default_value_t = 1000)]
    idle_listeners: usize,
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// After the writer stops, how long listeners may take to receive the rest.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    drain: Duration,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Then Weft again with its writer paced at this many times PostgreSQL's commits/s (the
    /// trigger's for the live query, NOTIFY's for NOTIFY; medians of this run at the same
    /// listener count): the latency Weft gives while delivering that multiple of PostgreSQL's
    /// deliveries/s, where the full-speed rows show it at its own saturation.
    #[arg(long)]
    paced: Option<f64>,
    /// Also write the tables as Markdown to this file.
    #[arg(long)]
    markdown: Option<std::path::PathBuf>,
}

fn target(url: &str, pid: Option<u32>, tree: bool) -> Result<Target, String> {
    // postgres://user@host:port/db → host:port
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split_once('@').map_or(rest, |(_, r)| r);
    let addr = rest.split(['/', '?']).next().unwrap_or(rest).to_string();
    if !addr.contains(':') {
        return Err(format!("{url}: expected host:port in the URL"));
    }
    Ok(Target {
        url: url.to_string(),
        addr,
        pid,
        tree,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    weft_bench::run_main("weft-fanout", bench(cli))
}

struct Row {
    scenario: Scenario,
    listeners: usize,
    runs: Vec<Outcome>,
}

async fn bench(cli: Cli) -> Result<(), String> {
    let weft = cli
        .weft
        .as_deref()
        .map(|u| target(u, cli.weft_pid, false))
        .transpose()?;
    let pg = cli
        .pg
        .as_deref()
        .map(|u| target(u, cli.pg_pid, true))
        .transpose()?;
    if let Some(t) = &weft {
        scenario::setup(t, true).await?;
    }
    if let Some(t) = &pg {
        scenario::setup(t, false).await?;
    }
    let shape = |l| Shape {
        listeners: l,
        duration: cli.duration,
        warmup: cli.warmup,
        drain: cli.drain,
        rate: None,
    };
    let mut rows: Vec<Row> = Vec::new();
    let mut idle_rows: Vec<Row> = Vec::new();
    let mut next_id = 0i64;
    for run in 1..=cli.runs {
        for &l in &cli.listeners {
            let mut plan = Vec::new();
            if weft.is_some() {
                plan.extend([Scenario::WeftLive, Scenario::WeftNotify]);
            }
            if pg.is_some() && l <= cli.pg_max_listeners {
                plan.extend([Scenario::PgTrigger, Scenario::PgNotify]);
            }
            plan.sort_by_key(|s| order(*s));
            for s in plan {
                let t = if s.is_weft() {
                    weft.as_ref()
                } else {
                    pg.as_ref()
                };
                let Some(t) = t else { continue };
                let o = scenario::run(t, s, &shape(l), &mut next_id).await;
                eprintln!("run {run} L={l} {}: {}", s.name(), line(&o));
                push(&mut rows, s, l, o);
            }
        }
        if cli.idle_listeners > 0 {
            for l in [0, cli.idle_listeners] {
                for (s, t) in [(Scenario::WeftIdle, &weft), (Scenario::PgIdle, &pg)] {
                    let Some(t) = t else { continue };
                    let o = scenario::run(t, s, &shape(l), &mut next_id).await;
                    eprintln!("run {run} idle L={l} {}: {}", s.name(), line(&o));
                    push(&mut idle_rows, s, l, o);
                }
            }
        }
    }
    let mut paced_rows: Vec<Row> = Vec::new();
    if let (Some(k), Some(t)) = (cli.paced, &weft) {
        for run in 1..=cli.runs {
            for &l in &cli.listeners {
                for (s, of) in [
                    (Scenario::WeftLive, Scenario::PgTrigger),
                    (Scenario::WeftNotify, Scenario::PgNotify),
                ] {
                    let Some(pg_rate) = rows
                        .iter()
                        .find(|r| r.scenario == of && r.listeners == l)
                        .and_then(|r| median(&r.runs, |o| Some(o.commits_per_s)))
                        .filter(|r| *r > 0.0)
                    else {
                        continue;
                    };
                    let paced = Shape {
                        rate: Some(k * pg_rate),
                        ..shape(l)
                    };
                    let o = scenario::run(t, s, &paced, &mut next_id).await;
                    eprintln!(
                        "run {run} L={l} {} paced at {:.0} commits/s: {}",
                        s.name(),
                        k * pg_rate,
                        line(&o)
                    );
                    push(&mut paced_rows, s, l, o);
                }
            }
        }
    }
    let mut text = report(&cli, &rows, &idle_rows);
    if let Some(k) = cli.paced {
        text.push_str(&paced_report(k, &rows, &paced_rows));
    }
    print!("{text}");
    if let Some(path) = &cli.markdown {
        std::fs::write(path, &text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// The paced Weft rows beside the PostgreSQL rows they are paced against.
fn paced_report(k: f64, rows: &[Row], paced: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nWeft with its writer paced at {k}× PostgreSQL's commits/s (latency from the scheduled send), median of the runs\n"
    );
    let _ = writeln!(
        s,
        "| mechanism | listeners | paced at commits/s | deliveries/s | × PostgreSQL's deliveries/s | p50 ms | p99 ms | max ms | failed runs |"
    );
    let _ = writeln!(
        s,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    );
    for r in paced {
        let of = match r.scenario {
            Scenario::WeftLive => Scenario::PgTrigger,
            _ => Scenario::PgNotify,
        };
        let pg = rows
            .iter()
            .find(|p| p.scenario == of && p.listeners == r.listeners);
        let pg_commits = pg.and_then(|p| median(&p.runs, |o| Some(o.commits_per_s)));
        let pg_deliveries = pg.and_then(|p| median(&p.runs, |o| Some(o.deliveries_per_s)));
        let deliveries = median(&r.runs, |o| Some(o.deliveries_per_s));
        let failed: Vec<String> = r.runs.iter().filter_map(|o| o.error.clone()).collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.scenario.name(),
            r.listeners,
            pg_commits.map_or("-".into(), |v| format!("{:.0}", v * k)),
            deliveries.map_or("-".into(), |v| format!("{v:.0}")),
            match (deliveries, pg_deliveries) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.1}×", a / b),
                _ => "-".into(),
            },
            ms(median(&r.runs, |o| o.p50_ms)),
            ms(median(&r.runs, |o| o.p99_ms)),
            ms(median(&r.runs, |o| o.max_ms)),
            if failed.is_empty() {
                "0".to_string()
            } else {
                format!("{}: {}", failed.len(), failed[0])
            },
        );
    }
    s
}

fn order(s: Scenario) -> u8 {
    match s {
        Scenario::WeftLive => 0,
        Scenario::PgTrigger => 1,
        Scenario::WeftNotify => 2,
        Scenario::PgNotify => 3,
        Scenario::WeftIdle => 4,
        Scenario::PgIdle => 5,
    }
}

fn push(rows: &mut Vec<Row>, scenario: Scenario, listeners: usize, o: Outcome) {
    match rows
        .iter_mut()
        .find(|r| r.scenario == scenario && r.listeners == listeners)
    {
        Some(r) => r.runs.push(o),
        None => rows.push(Row {
            scenario,
            listeners,
            runs: vec![o],
        }),
    }
}

fn line(o: &Outcome) -> String {
    if let Some(e) = &o.error {
        return format!("ERROR {e}");
    }
    format!(
        "commits/s {:.0} deliveries/s {:.0} p50 {} p99 {} max {} complete {} rss idle {} end {} closed {} MB notices {} unparsed {} cpu µs/delivery server {} client {} load {}",
        o.commits_per_s,
        o.deliveries_per_s,
        ms(o.p50_ms),
        ms(o.p99_ms),
        ms(o.max_ms),
        o.complete.map_or("-".into(), |c| format!("{:.1}%", c * 100.0)),
        mb(o.rss_idle_mb),
        mb(o.rss_end_mb),
        mb(o.rss_closed_mb),
        o.notices,
        o.unparsed,
        ms(o.server_us_per_delivery),
        ms(o.client_us_per_delivery),
        o.loadavg.map_or("-".into(), |l| format!("{l:.1}")),
    )
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}"))
}

fn mb(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0}"))
}

/// Median of the runs that did not fail, per figure.
fn median(runs: &[Outcome], f: impl Fn(&Outcome) -> Option<f64>) -> Option<f64> {
    weft_bench::stats::median(
        runs.iter()
            .filter(|o| o.error.is_none())
            .filter_map(f)
            .collect(),
    )
}

fn report(cli: &Cli, rows: &[Row], idle: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nFan-out: one writer, one commit per change, {} s window after {} s warm-up, median of {} run(s)\n",
        cli.duration.as_secs_f64(),
        cli.warmup.as_secs_f64(),
        cli.runs
    );
    let _ = writeln!(
        s,
        "| mechanism | listeners | deliveries/s | p50 ms | p99 ms | commits/s | delivered by end | server memory MB (idle → end → closed) | CPU µs/delivery server, client | failed runs |"
    );
    let _ = writeln!(
        s,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    );
    for r in rows {
        let failed: Vec<String> = r.runs.iter().filter_map(|o| o.error.clone()).collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} → {} → {} | {}, {} | {} |",
            r.scenario.name(),
            r.listeners,
            median(&r.runs, |o| Some(o.deliveries_per_s)).map_or("-".into(), |v| format!("{v:.0}")),
            ms(median(&r.runs, |o| o.p50_ms)),
            ms(median(&r.runs, |o| o.p99_ms)),
            median(&r.runs, |o| Some(o.commits_per_s)).map_or("-".into(), |v| format!("{v:.0}")),
            median(&r.runs, |o| o.complete).map_or("-".into(), |v| format!("{:.1}%", v * 100.0)),
            mb(median(&r.runs, |o| o.rss_idle_mb)),
            mb(median(&r.runs, |o| o.rss_end_mb)),
            mb(median(&r.runs, |o| o.rss_closed_mb)),
            ms(median(&r.runs, |o| o.server_us_per_delivery)),
            ms(median(&r.runs, |o| o.client_us_per_delivery)),
            if failed.is_empty() {
                "0".to_string()
            } else {
                format!("{}: {}", failed.len(), failed[0])
            },
        );
    }
    // Ratios at each L: Weft live query / PostgreSQL trigger, Weft NOTIFY / PostgreSQL NOTIFY.
    let get = |sc: Scenario, l: usize| {
        rows.iter()
            .find(|r| r.scenario == sc && r.listeners == l)
            .and_then(|r| median(&r.runs, |o| Some(o.deliveries_per_s)))
    };
    let _ = writeln!(
        s,
        "\n| listeners | live query / trigger (deliveries/s) | NOTIFY / NOTIFY (deliveries/s) |"
    );
    let _ = writeln!(s, "| ---: | ---: | ---: |");
    for &l in &cli.listeners {
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.1}×", a / b),
            _ => "-".into(),
        };
        let _ = writeln!(
            s,
            "| {l} | {} | {} |",
            ratio(get(Scenario::WeftLive, l), get(Scenario::PgTrigger, l)),
            ratio(get(Scenario::WeftNotify, l), get(Scenario::PgNotify, l)),
        );
    }
    if !idle.is_empty() {
        let _ = writeln!(s, "\nCommits/s of one writer doing NOTIFY on a channel nobody listens to, with idle listeners on another channel\n");
        let _ = writeln!(s, "| server | idle listeners | commits/s (median) | runs |");
        let _ = writeln!(s, "| --- | ---: | ---: | --- |");
        for r in idle {
            let runs: Vec<String> = r
                .runs
                .iter()
                .map(|o| {
                    o.error
                        .as_ref()
                        .map_or(format!("{:.0}", o.commits_per_s), |_| "failed".into())
                })
                .collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                r.scenario.name(),
                r.listeners,
                median(&r.runs, |o| Some(o.commits_per_s))
                    .map_or("-".into(), |v| format!("{v:.0}")),
                runs.join(", ")
            );
        }
    }
    s
}
