//! `weft-bench`: runs the same workloads, with the same clients, against one or more
//! PostgreSQL-wire servers (Weft and PostgreSQL) and reports throughput and latency percentiles.
//!
//! ```text
//!   load every target (untimed)
//!     └─▶ for run in 1..=runs, for workload, for target      (interleaved: noise hits all alike)
//!           └─▶ N clients × prepared statement ─▶ per-client histograms ─▶ RunResult
//!   median per (workload, target) ─▶ table, ratios (--ratio A/B; first/second by default)
//! ```
//!
//! Each target uses its own tables when given `--table-with` (`tables.rs`), so several targets
//! may be the same servers with differently created tables (lww and raft tables on a cluster).
//!
//! Depends only on tokio-postgres: it measures servers from outside, as any client would.

mod load;
mod report;
mod runner;
mod tables;
mod workload;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::load::LoadConfig;
use crate::report::Cell;
use crate::runner::{RunConfig, RunResult};
use crate::tables::Tables;
use crate::workload::Workload;

#[derive(Debug, Parser)]
#[command(name = "weft-bench", version, about = "PostgreSQL-wire load generator")]
struct Cli {
    /// A server as NAME=URL, e.g. weft=postgres://postgres@127.0.0.1:5433/postgres; repeat it.
    /// Ratios are the first target over the second. URL may list the nodes of a cluster as
    /// URL1|URL2|...: client i connects to URL i mod n, loading uses URL1.
    #[arg(long = "target", value_name = "NAME=URL", required = true, value_parser = parse_target)]
    targets: Vec<(String, Vec<String>)>,
    /// Workloads to run, in this order.
    #[arg(long, value_delimiter = ',', default_values = ["point-select", "update", "insert", "scan-agg"])]
    workloads: Vec<Workload>,
    /// Client connections per run.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Measured time per run.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Unrecorded time before each measured window.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Most measured operations per run, over all clients.
    #[arg(long, default_value_t = 10_000_000)]
    max_ops: u64,
    /// Runs of each workload against each target; the table shows medians.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Rows in kv (point-select, update).
    #[arg(long, default_value_t = 100_000)]
    rows: u64,
    /// Rows in big (scan-agg).
    #[arg(long, default_value_t = 1_000_000)]
    big_rows: u64,
    /// Rows per INSERT statement while loading.
    #[arg(long, default_value_t = 1000)]
    batch: u64,
    /// Connections loading in parallel.
    #[arg(long, default_value_t = 2)]
    load_conns: usize,
    /// Use the tables already there instead of loading them.
    #[arg(long)]
    skip_load: bool,
    /// An operation slower than this stops its client and counts as an error.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    op_timeout: Duration,
    /// Loading one target longer than this fails that target.
    #[arg(long, default_value = "20m", value_parser = humantime::parse_duration)]
    load_timeout: Duration,
    /// SQL every client runs after connecting, before preparing its statement, e.g.
    /// "SET weft.read_consistency = 'local'". Not run by the loader.
    #[arg(long, value_name = "SQL")]
    session_sql: Option<String>,
    /// Tables of target NAME are its own (kv_NAME, ins_NAME, big_NAME) and created
    /// `WITH (OPTIONS)`, e.g. lww="consistency = 'lww'"; repeat it per target.
    #[arg(long = "table-with", value_name = "NAME=OPTIONS", value_parser = tables::parse_table_with)]
    table_with: Vec<(String, String)>,
    /// A ratio row A/B of two targets' medians; repeat it. Default: the first over the second.
    #[arg(long = "ratio", value_name = "A/B")]
    ratios: Vec<String>,
    /// Also write the summary as Markdown to this file.
    #[arg(long, value_name = "FILE")]
    markdown: Option<std::path::PathBuf>,
}

fn parse_target(s: &str) -> Result<(String, Vec<String>), String> {
    match s.split_once('=') {
        Some((name, urls)) if !name.is_empty() && !urls.is_empty() => {
            let urls: Vec<String> = urls.split('|').map(str::to_string).collect();
            if urls.iter().any(String::is_empty) {
                return Err(format!("empty URL in {s:?} (URL1|URL2|...)"));
            }
            Ok((name.to_string(), urls))
        }
        _ => Err(format!(
            "expected NAME=URL or NAME=URL1|URL2|..., got {s:?}"
        )),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("weft-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(bench(cli))
}

/// Target index pairs of the ratio rows.
fn ratio_pairs(names: &[String], asked: &[String]) -> Result<Vec<(usize, usize)>, String> {
    if asked.is_empty() {
        return Ok(if names.len() >= 2 {
            vec![(0, 1)]
        } else {
            Vec::new()
        });
    }
    let index = |n: &str| {
        names
            .iter()
            .position(|t| t == n)
            .ok_or_else(|| format!("--ratio: no target named {n:?}"))
    };
    asked
        .iter()
        .map(|r| match r.split_once('/') {
            Some((a, b)) => Ok((index(a)?, index(b)?)),
            None => Err(format!("--ratio: expected A/B, got {r:?}")),
        })
        .collect()
}

async fn bench(cli: Cli) -> ExitCode {
    let names: Vec<String> = cli.targets.iter().map(|(n, _)| n.clone()).collect();
    let ratios = match ratio_pairs(&names, &cli.ratios) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("weft-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some((n, _)) = cli.table_with.iter().find(|(n, _)| !names.contains(n)) {
        eprintln!("weft-bench: --table-with {n}=...: no target named {n:?}");
        return ExitCode::FAILURE;
    }
    let tables: Vec<Tables> = names
        .iter()
        .map(|n| match cli.table_with.iter().find(|(t, _)| t == n) {
            Some((_, options)) => Tables::with_options(n, options),
            None => Tables::plain(),
        })
        .collect();
    let run_cfg = RunConfig {
        clients: cli.clients.max(1),
        duration: cli.duration,
        warmup: cli.warmup,
        max_ops: cli.max_ops,
        op_timeout: cli.op_timeout,
        connect_timeout: Duration::from_secs(10),
        rows: cli.rows,
        big_rows: cli.big_rows,
        session_sql: cli.session_sql.clone(),
    };
    let load_cfg = LoadConfig {
        // Only the tables the chosen workloads read: loading `big` takes minutes.
        kv: cli
            .workloads
            .iter()
            .any(|w| matches!(w, Workload::PointSelect | Workload::Update)),
        big: cli.workloads.contains(&Workload::ScanAgg),
        rows: cli.rows,
        big_rows: cli.big_rows,
        batch: cli.batch,
        conns: cli.load_conns,
        connect_timeout: run_cfg.connect_timeout,
    };

    let mut notes = Vec::new();
    let mut usable = vec![true; cli.targets.len()];
    for (i, (name, urls)) in cli.targets.iter().enumerate() {
        let mut versions: Vec<String> = Vec::new();
        for url in urls {
            let v = server_version(url, &run_cfg).await;
            if !versions.contains(&v) {
                versions.push(v);
            }
        }
        notes.extend(versions.into_iter().map(|v| format!("{name}: {v}")));
        if urls.len() > 1 {
            notes.push(format!(
                "{name}: {} servers; client i connects to server i mod {}",
                urls.len(),
                urls.len()
            ));
        }
        if cli.skip_load {
            continue;
        }
        eprintln!("loading {name} ...");
        let load = load::load(&urls[0], &tables[i], &load_cfg);
        match tokio::time::timeout(cli.load_timeout, load).await {
            Ok(Ok(n)) => {
                notes.extend(n.into_iter().map(|n| format!("{name}: {n}")));
                let mut loaded = vec![&tables[i].ins];
                if load_cfg.kv {
                    loaded.insert(0, &tables[i].kv);
                }
                for table in loaded {
                    match visible(urls, table, &run_cfg).await {
                        Ok(0) => {}
                        Ok(n) => notes.push(format!(
                            "{name}: after loading, {n} reads of {table} failed before every node saw it"
                        )),
                        Err(e) => {
                            usable[i] = false;
                            notes.push(format!("{name}: LOAD FAILED: {e}"));
                        }
                    }
                }
            }
            Ok(Err(e)) => {
                usable[i] = false;
                notes.push(format!("{name}: LOAD FAILED: {e}"));
            }
            Err(_) => {
                usable[i] = false;
                notes.push(format!(
                    "{name}: LOAD FAILED: not done within {:?}",
                    cli.load_timeout
                ));
            }
        }
        eprintln!("{}", notes.last().map(String::as_str).unwrap_or(""));
    }

    // results[w][t] = runs
    let mut results: Vec<Vec<Vec<RunResult>>> = cli
        .workloads
        .iter()
        .map(|_| cli.targets.iter().map(|_| Vec::new()).collect())
        .collect();
    for run in 1..=cli.runs {
        for (w, &workload) in cli.workloads.iter().enumerate() {
            for (t, (name, urls)) in cli.targets.iter().enumerate() {
                let r = if !usable[t] {
                    RunResult::failed("not loaded".into())
                } else {
                    run_one(urls, &tables[t], workload, &run_cfg, run as u64).await
                };
                let mut r = r;
                r.loadavg = loadavg();
                eprintln!(
                    "[run {run}/{}] {workload:<12} {name:<10} {}",
                    cli.runs,
                    summary(&r)
                );
                for (e, n) in &r.errors {
                    eprintln!("    {n} × {e}");
                }
                results[w][t].push(r);
            }
        }
    }

    let cells: Vec<Vec<Cell<'_>>> = results
        .iter()
        .map(|row| {
            row.iter()
                .map(|runs| Cell {
                    runs: runs.iter().collect(),
                })
                .collect()
        })
        .collect();
    let mut errors = Vec::new();
    for (w, row) in cli.workloads.iter().zip(&results) {
        for (name, runs) in names.iter().zip(row) {
            for (i, r) in runs.iter().enumerate() {
                if let Some(f) = &r.fatal {
                    errors.push(format!("{w} on {name}, run {}: FAILED: {f}", i + 1));
                }
                for (e, n) in &r.errors {
                    errors.push(format!("{w} on {name}, run {}: {n} × {e}", i + 1));
                }
            }
        }
    }

    println!(
        "\n{} client(s), {:?} per run (+{:?} warm-up), {} run(s); medians over runs",
        run_cfg.clients, run_cfg.duration, run_cfg.warmup, cli.runs
    );
    if let Some(sql) = &cli.session_sql {
        println!("every client ran first: {sql}");
    }
    println!(
        "{}",
        report::text_table(&names, &cli.workloads, &cells, &ratios)
    );
    for n in &notes {
        println!("note: {n}");
    }
    for e in &errors {
        println!("error: {e}");
    }

    if let Some(path) = &cli.markdown {
        let mut md = report::markdown_table(&names, &cli.workloads, &cells, &ratios);
        md.push_str("\nEach run: ops/s, p50 ms, p99 ms, the machine's load average after it:\n\n");
        for (w, row) in cli.workloads.iter().zip(&results) {
            for (name, runs) in names.iter().zip(row) {
                let each: Vec<String> = runs.iter().map(run_brief).collect();
                md.push_str(&format!("- {w}, {name}: {}\n", each.join("; ")));
            }
        }
        for n in &notes {
            md.push_str(&format!("\nNote: {n}\n"));
        }
        for e in &errors {
            md.push_str(&format!("\nError: {e}\n"));
        }
        if let Err(e) = std::fs::write(path, md) {
            eprintln!("weft-bench: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

async fn run_one(
    urls: &[String],
    tables: &Tables,
    workload: Workload,
    cfg: &RunConfig,
    run: u64,
) -> RunResult {
    if workload == Workload::Insert {
        // Untimed: every insert run starts from an empty table.
        let ins = &tables.ins;
        let prepared = match runner::connect(&urls[0], cfg.connect_timeout).await {
            Ok(c) => load::recreate_ins(&c, tables).await,
            Err(e) => Err(e),
        };
        if let Err(e) = prepared {
            return RunResult::failed(format!("recreating {ins}: {e}"));
        }
        match visible(urls, ins, cfg).await {
            Ok(0) => {}
            Ok(n) => eprintln!("    {n} reads of the new {ins} failed before every node saw it"),
            Err(e) => return RunResult::failed(format!("recreating {ins}: {e}")),
        }
    }
    // Bounded even if a server stops answering: clients stop themselves after op_timeout.
    let limit = cfg.warmup + cfg.duration + cfg.op_timeout * 2 + cfg.connect_timeout * 2;
    match tokio::time::timeout(limit, runner::run(urls, tables, workload, cfg, run)).await {
        Ok(r) => r,
        Err(_) => RunResult::failed(format!("run did not finish within {limit:?}")),
    }
}

/// Waits until every server of a target reads `table` (at once with one server).
async fn visible(urls: &[String], table: &str, cfg: &RunConfig) -> Result<u32, String> {
    if urls.len() < 2 {
        return Ok(0);
    }
    load::wait_visible(urls, table, cfg.op_timeout, cfg.connect_timeout).await
}

fn run_brief(r: &RunResult) -> String {
    if r.fatal.is_some() {
        return "failed".to_string();
    }
    let ms = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.2}"));
    format!(
        "{:.0}, {}, {}, load {}",
        r.throughput(),
        ms(r.percentile_ms(0.5)),
        ms(r.percentile_ms(0.99)),
        r.loadavg.map_or("-".to_string(), |l| format!("{l:.1}"))
    )
}

/// The 1-minute load average, where /proc has it.
fn loadavg() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn summary(r: &RunResult) -> String {
    if let Some(f) = &r.fatal {
        return format!("FAILED: {f}");
    }
    let ms = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.3}"));
    format!(
        "{:>9.0} ops/s  p50 {:>8} ms  p99 {:>8} ms  ok {:>8}  errors {}  load {}",
        r.throughput(),
        ms(r.percentile_ms(0.5)),
        ms(r.percentile_ms(0.99)),
        r.ok,
        r.error_count(),
        r.loadavg.map_or("-".to_string(), |l| format!("{l:.1}"))
    )
}

async fn server_version(url: &str, cfg: &RunConfig) -> String {
    match runner::connect(url, cfg.connect_timeout).await {
        Ok(c) => match c.query_one("SELECT version()", &[]).await {
            Ok(row) => row
                .try_get::<_, String>(0)
                .unwrap_or_else(|e| format!("version(): {e}")),
            Err(e) => format!("version(): {}", workload::describe(&e)),
        },
        Err(e) => e,
    }
}
