//! Runs one test file over one protocol in an empty database and tallies its records.
//!
//! ```text
//!   parse ──► FreshDb ──► for each record: conditions/halt ─► type hint ─► Runner::run_async
//!                                                                  (with a deadline) ─► tally
//! ```
//!
//! The loop is ours rather than `Runner::run_file` because it must: honour conditions on `halt`
//! (the crate ignores them), tell the connection each query's declared column types, keep
//! going after a failed record so one run shows every failure, count records, and bound the
//! time any record may take.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use libtest_mimic::Failed;
use sqllogictest::{
    Condition, DefaultColumnType, MakeConnection, QueryExpect, Record, RecordOutput, Runner,
};

use crate::db::{Conn, Protocol, TypeHint};
use crate::target::{FreshDb, Target};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Longest a single record may take before the file is abandoned as hung.
const RECORD_DEADLINE: Duration = Duration::from_secs(120);
/// Failures shown in full per file; the rest are only counted.
const FAILURES_SHOWN: usize = 10;

pub struct FileSpec {
    pub path: PathBuf,
    /// The test's name, e.g. `slt::simple::types`.
    pub name: String,
    pub protocol: Protocol,
    /// Labels for `skipif`/`onlyif`.
    pub labels: &'static [&'static str],
    /// Rewrite the file's query results with the target's output (`WEFT_SLT_COMPLETE`).
    pub complete: bool,
}

#[derive(Default)]
struct Tally {
    ran: usize,
    failed: usize,
    skipped: usize,
    report: String,
}

impl Tally {
    fn fail(&mut self, what: impl std::fmt::Display) {
        self.failed += 1;
        if self.failed <= FAILURES_SHOWN {
            let _ = writeln!(self.report, "{what}");
        }
    }
}

/// The libtest-mimic body of one test.
pub fn run_trial(target: &Target, spec: &FileSpec) -> Result<(), Failed> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("building a tokio runtime: {e}"))?;
    let result = runtime.block_on(run_file(target, spec));
    runtime.shutdown_timeout(Duration::from_secs(10));
    let tally = result.map_err(|e| format!("{}: {e}", spec.name))?;
    // One line per file, printed whole so parallel tests do not interleave it.
    println!(
        "{}: {} records ran, {} passed, {} failed; {} skipped by their conditions",
        spec.name,
        tally.ran,
        tally.ran - tally.failed,
        tally.failed,
        tally.skipped
    );
    if tally.failed == 0 {
        return Ok(());
    }
    let mut msg = format!(
        "{} of {} records failed in {}\n",
        tally.failed,
        tally.ran,
        spec.path.display()
    );
    msg.push_str(&tally.report);
    if tally.failed > FAILURES_SHOWN {
        let _ = writeln!(msg, "… and {} more", tally.failed - FAILURES_SHOWN);
    }
    Err(msg.into())
}

async fn run_file(target: &Target, spec: &FileSpec) -> Result<Tally, BoxError> {
    let records = sqllogictest::parse_file::<DefaultColumnType>(&spec.path)?;
    let db = FreshDb::create(target, &spec.name).await?;
    let hint = TypeHint::default();
    let make_conn = {
        let (config, hint, protocol) = (db.config.clone(), hint.clone(), spec.protocol);
        move || Conn::connect(config.clone(), protocol, hint.clone())
    };
    let mut runner = Runner::new(make_conn);
    for label in spec.labels {
        runner.add_label(label);
    }
    // The original runner rejects a result whose column count differs from the type string.
    runner.with_column_validator(|actual, expected| {
        expected.is_empty() || actual.len() == expected.len()
    });
    let result = run_records(&mut runner, &hint, records, spec).await;
    runner.shutdown_async().await;
    drop(runner);
    db.release().await;
    result
}

async fn run_records<M: MakeConnection<Conn = Conn>>(
    runner: &mut Runner<Conn, M>,
    hint: &TypeHint,
    records: Vec<Record<DefaultColumnType>>,
    spec: &FileSpec,
) -> Result<Tally, BoxError> {
    let mut tally = Tally::default();
    let mut rewritten = Vec::new();
    // `skipif`/`onlyif` lines seen since the last record that consumed them.
    let mut pending: Vec<Condition> = Vec::new();
    // Conditions of a `halt` that did not apply: the crate's parser leaves them attached to
    // the next record, so they are stripped from it.
    let mut stale = 0;
    let mut records = records.into_iter();
    while let Some(mut record) = records.next() {
        match &record {
            Record::Condition(c) => pending.push(c.clone()),
            Record::Halt { .. } if applies(&pending, spec.labels) => {
                rewritten.push(record);
                rewritten.extend(records);
                break;
            }
            Record::Halt { .. } => {
                stale += pending.len();
                pending.clear();
                rewritten.push(record);
                continue;
            }
            _ => {}
        }
        let Some(conditions) = conditions_mut(&mut record) else {
            if !matches!(record, Record::Condition(_)) {
                // Controls, hash-threshold, comments: they only change the runner's state.
                runner.run_async(record.clone()).await?;
            }
            rewritten.push(record);
            continue;
        };
        conditions.drain(..stale.min(conditions.len()));
        stale = 0;
        pending.clear();
        if !applies(conditions, spec.labels) {
            tally.skipped += 1;
            rewritten.push(record);
            continue;
        }
        tally.ran += 1;
        hint.set(match &record {
            Record::Query {
                expected: QueryExpect::Results { types, .. },
                ..
            } => Some(types.clone()),
            _ => None,
        });
        if spec.complete {
            if let Some(updated) = complete(runner, &record, &mut tally).await {
                record = updated;
            }
            rewritten.push(record);
            continue;
        }
        let loc = record_location(&record);
        match tokio::time::timeout(RECORD_DEADLINE, runner.run_async(record)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tally.fail(e.display(false)),
            Err(_) => {
                tally.fail(format!(
                    "record at {loc} took over {RECORD_DEADLINE:?}; abandoning the file"
                ));
                break;
            }
        }
    }
    if spec.complete {
        write_records(spec, &rewritten)?;
    }
    Ok(tally)
}

/// Whether every condition lets a record (or a `halt`) take effect under `labels`.
fn applies(conditions: &[Condition], labels: &[&str]) -> bool {
    conditions.iter().all(|c| match c {
        Condition::OnlyIf { label } => labels.contains(&label.as_str()),
        Condition::SkipIf { label } => !labels.contains(&label.as_str()),
    })
}

fn conditions_mut(record: &mut Record<DefaultColumnType>) -> Option<&mut Vec<Condition>> {
    match record {
        Record::Statement { conditions, .. }
        | Record::Query { conditions, .. }
        | Record::System { conditions, .. }
        | Record::Let { conditions, .. } => Some(conditions),
        _ => None,
    }
}

fn record_location(record: &Record<DefaultColumnType>) -> String {
    match record {
        Record::Statement { loc, .. } | Record::Query { loc, .. } => loc.to_string(),
        _ => "?".into(),
    }
}

/// Runs a record and, for a query that succeeded, returns it with the target's results.
async fn complete<M: MakeConnection<Conn = Conn>>(
    runner: &mut Runner<Conn, M>,
    record: &Record<DefaultColumnType>,
    tally: &mut Tally,
) -> Option<Record<DefaultColumnType>> {
    if !matches!(
        record,
        Record::Query {
            expected: QueryExpect::Results { .. },
            ..
        }
    ) {
        if let Err(e) = runner.run_async(record.clone()).await {
            tally.fail(e.display(false));
        }
        return None;
    }
    let output = runner.apply_record(record.clone()).await;
    let mut updated = record.clone();
    let Record::Query {
        expected:
            QueryExpect::Results {
                types: declared,
                results,
                ..
            },
        loc,
        ..
    } = &mut updated
    else {
        return None;
    };
    match output {
        RecordOutput::Query {
            types,
            rows,
            error: None,
        } if types.len() == declared.len() => {
            // Trimmed: the comparison ignores surrounding whitespace, editors strip it.
            *results = rows
                .iter()
                .map(|row| row.join(" ").trim().to_string())
                .collect();
            Some(updated)
        }
        RecordOutput::Query { error: Some(e), .. } => {
            tally.fail(format!("{loc}: query failed: {e}"));
            None
        }
        _ => {
            tally.fail(format!("{loc}: no result of the declared column count"));
            None
        }
    }
}

fn write_records(spec: &FileSpec, records: &[Record<DefaultColumnType>]) -> Result<(), BoxError> {
    if records.iter().any(|r| matches!(r, Record::Injected(_))) {
        return Err("WEFT_SLT_COMPLETE cannot rewrite a file that uses `include`".into());
    }
    let mut text = String::new();
    for record in records {
        writeln!(text, "{record}")?;
    }
    let text = format!("{}\n", text.trim_end_matches('\n'));
    std::fs::write(&spec.path, text)?;
    Ok(())
}
