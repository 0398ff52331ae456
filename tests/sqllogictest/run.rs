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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use libtest_mimic::Failed;
use sqllogictest::{
    Condition, DefaultColumnType, MakeConnection, QueryExpect, Record, RecordOutput, Runner,
};

use crate::db::{Conn, Protocol, TypeHint};
use crate::known::{self, Counts, Failure, KnownFailures, RecordKey, LIST, REGENERATE};
use crate::target::{FreshDb, Target, SETUP_DEADLINE};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Longest a single record may take before the file is abandoned as hung, unless
/// `WEFT_SLT_RECORD_DEADLINE` gives other seconds (see [`record_deadline`]).
const RECORD_DEADLINE: Duration = Duration::from_secs(120);
/// How long past a phase's own deadline the watchdog waits before giving up on a file whose
/// runtime no longer answers (e.g. a query spinning on every worker thread, so that the tokio
/// timer behind [`RECORD_DEADLINE`] cannot fire).
const WATCHDOG_GRACE: Duration = Duration::from_secs(30);
/// How long the file's runtime may take to stop once its records are done.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(10);
/// Failures shown in full per file; the rest are only counted.
const FAILURES_SHOWN: usize = 10;

#[derive(Clone)]
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

/// The records of one test so far, judged against the known-failures list.
#[derive(Default)]
struct Tally {
    ran: usize,
    passed: usize,
    /// Failed and listed (or, when updating, failed with a location: about to be listed).
    known: usize,
    /// Failed and not listed.
    new: usize,
    skipped: usize,
    /// The first [`FAILURES_SHOWN`] new failures in full.
    report: String,
    /// Listed records that ran, passed or not.
    seen: Vec<RecordKey>,
    /// Listed records that passed.
    fixed: Vec<RecordKey>,
    /// Every failure with a location, for `WEFT_SLT_UPDATE_KNOWN`.
    failures: Vec<Failure>,
    /// Why the rest of the file did not run (a hung record).
    abandoned: Option<String>,
}

impl Tally {
    fn pass(&mut self, key: Option<RecordKey>, listed: &BTreeMap<RecordKey, String>) {
        self.passed += 1;
        if let Some(key) = key.filter(|k| listed.contains_key(k)) {
            self.seen.push(key.clone());
            self.fixed.push(key);
        }
    }

    /// A failed record: `reason` for the list, `details` to show when it is new.
    fn fail(
        &mut self,
        key: Option<RecordKey>,
        reason: String,
        details: impl std::fmt::Display,
        listed: &BTreeMap<RecordKey, String>,
        updating: bool,
    ) {
        let known = match key {
            Some(key) => {
                let listed = listed.contains_key(&key);
                if listed {
                    self.seen.push(key.clone());
                }
                self.failures.push(Failure { key, reason });
                listed || updating
            }
            None => false,
        };
        if known {
            self.known += 1;
        } else {
            self.new += 1;
            if self.new <= FAILURES_SHOWN {
                let _ = writeln!(self.report, "{details}");
            }
        }
    }

    fn counts(&self, stale: usize) -> Counts {
        Counts {
            ran: self.ran,
            passed: self.passed,
            known: self.known,
            new: self.new,
            stale,
        }
    }
}

/// What the file's thread is doing, for the watchdog.
struct Phase {
    what: String,
    /// The record running, if a record is.
    key: Option<RecordKey>,
    since: Instant,
    deadline: Duration,
}

/// State shared by a file's thread and the watchdog in the test's own thread. Neither lock is
/// held across an `.await`, so a stuck file never blocks the watchdog.
struct Shared {
    tally: Mutex<Tally>,
    phase: Mutex<Phase>,
}

impl Shared {
    fn tally(&self) -> MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enter(&self, what: impl Into<String>, key: Option<RecordKey>, deadline: Duration) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = Phase {
            what: what.into(),
            key,
            since: Instant::now(),
            deadline,
        };
    }

    /// The phase, when it has run past its deadline and the grace on top.
    fn overdue(&self) -> Option<(String, Option<RecordKey>, Duration)> {
        let phase = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        let limit = phase.deadline + WATCHDOG_GRACE;
        (phase.since.elapsed() > limit).then(|| (phase.what.clone(), phase.key.clone(), limit))
    }
}

/// Everything a file's thread needs, owned.
struct Job {
    target: Arc<Target>,
    spec: FileSpec,
    known: Arc<KnownFailures>,
    shared: Arc<Shared>,
}

/// [`RECORD_DEADLINE`], or `WEFT_SLT_RECORD_DEADLINE` seconds.
fn record_deadline() -> Duration {
    static DEADLINE: OnceLock<Duration> = OnceLock::new();
    *DEADLINE.get_or_init(|| match std::env::var("WEFT_SLT_RECORD_DEADLINE") {
        Ok(secs) => match secs.trim().parse::<u64>() {
            Ok(secs) if secs > 0 => Duration::from_secs(secs),
            _ => {
                eprintln!(
                    "warning: WEFT_SLT_RECORD_DEADLINE={secs:?} is not a number of seconds; \
                     using {RECORD_DEADLINE:?}"
                );
                RECORD_DEADLINE
            }
        },
        Err(_) => RECORD_DEADLINE,
    })
}

/// The libtest-mimic body of one test.
///
/// The file runs on a thread of its own while this one watches: should the file's runtime stop
/// answering, so that not even [`RECORD_DEADLINE`] fires, the test still ends, the record that
/// hung counts as failed (known or new, as listed), and the stuck thread is left behind.
pub fn run_trial(
    target: &Arc<Target>,
    spec: &FileSpec,
    known: &Arc<KnownFailures>,
) -> Result<(), Failed> {
    let shared = Arc::new(Shared {
        tally: Mutex::default(),
        phase: Mutex::new(Phase {
            what: "starting".into(),
            key: None,
            since: Instant::now(),
            deadline: SETUP_DEADLINE,
        }),
    });
    let job = Job {
        target: Arc::clone(target),
        spec: spec.clone(),
        known: Arc::clone(known),
        shared: Arc::clone(&shared),
    };
    let (done, finished) = mpsc::channel();
    std::thread::Builder::new()
        .name(format!("slt {}", spec.name))
        .spawn(move || {
            let _ = done.send(run_job(&job).map_err(|e| e.to_string()));
        })
        .map_err(|e| format!("starting a thread for {}: {e}", spec.name))?;
    let listed = known.listed(&spec.name);
    let updating = known.updating();
    let result = loop {
        match finished.recv_timeout(Duration::from_secs(1)) {
            Ok(result) => break result,
            Err(RecvTimeoutError::Disconnected) => {
                break Err("the file's thread panicked (see its message above)".into())
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        let Some((what, key, limit)) = shared.overdue() else {
            continue;
        };
        let Some(key) = key else {
            break Err(format!(
                "{what} took over {limit:?} and its runtime stopped answering"
            ));
        };
        let mut tally = shared.tally();
        let why = format!(
            "record at {key} took over {limit:?} and its runtime stopped answering; \
             abandoning the file"
        );
        tally.fail(
            Some(key),
            "hung: its runtime stopped answering; the rest of the file was abandoned".into(),
            &why,
            listed,
            updating,
        );
        tally.abandoned = Some(why);
        break Ok(());
    };
    result.map_err(|e| format!("{}: {e}", spec.name))?;
    let tally = std::mem::take(&mut *shared.tally());
    judge(spec, known, tally)
}

/// Prints the file's line and fails the test on any new failure or stale listing.
fn judge(spec: &FileSpec, known: &KnownFailures, tally: Tally) -> Result<(), Failed> {
    let listed = known.listed(&spec.name);
    let seen: std::collections::BTreeSet<&RecordKey> = tally.seen.iter().collect();
    let unreached: Vec<&RecordKey> = listed.keys().filter(|k| !seen.contains(k)).collect();
    // Listed records that did not run at all: gone from the file, unless it was abandoned.
    let gone: &[&RecordKey] = if tally.abandoned.is_some() {
        &[]
    } else {
        &unreached
    };
    let updating = known.updating();
    let stale = if updating {
        0
    } else {
        tally.fixed.len() + gone.len()
    };
    known.finish(
        &spec.name,
        tally.counts(stale),
        if updating { tally.failures } else { Vec::new() },
    );
    // One line per file, printed whole so parallel tests do not interleave it.
    let mut line = format!(
        "{}: {} records ran, {} passed, {} known failures, {} new failures",
        spec.name, tally.ran, tally.passed, tally.known, tally.new
    );
    if !updating {
        if !tally.fixed.is_empty() {
            let _ = write!(line, ", {} listed records now pass", tally.fixed.len());
        }
        if !gone.is_empty() {
            let _ = write!(line, ", {} listed records did not run", gone.len());
        }
    }
    if tally.abandoned.is_some() {
        let _ = write!(
            line,
            "; abandoned after a hang ({} listed records not reached)",
            unreached.len()
        );
    }
    let _ = write!(line, "; {} skipped by their conditions", tally.skipped);
    println!("{line}");

    let mut msg = String::new();
    if tally.new > 0 {
        let _ = writeln!(
            msg,
            "{} of {} records failed in {} and are not listed in {LIST}:",
            tally.new,
            tally.ran,
            spec.path.display()
        );
        msg.push_str(&tally.report);
        if tally.new > FAILURES_SHOWN {
            let _ = writeln!(msg, "… and {} more", tally.new - FAILURES_SHOWN);
        }
    }
    if stale > 0 {
        let _ = writeln!(
            msg,
            "{stale} records listed in {LIST} as failing for {} did not fail; the list only \
             shrinks, so regenerate it: {REGENERATE}",
            spec.name
        );
        let stale_list = tally
            .fixed
            .iter()
            .map(|k| format!("  {k} now passes"))
            .chain(
                gone.iter()
                    .map(|k| format!("  {k} is no record of this file that ran")),
            );
        for entry in stale_list.take(FAILURES_SHOWN) {
            let _ = writeln!(msg, "{entry}");
        }
        if stale > FAILURES_SHOWN {
            let _ = writeln!(msg, "  … and {} more", stale - FAILURES_SHOWN);
        }
    }
    if msg.is_empty() {
        Ok(())
    } else {
        Err(msg.into())
    }
}

/// The file's thread: its own runtime, so a file's server and runner share nothing with others.
fn run_job(job: &Job) -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("building a tokio runtime: {e}"))?;
    let result = runtime.block_on(run_file(job));
    job.shared
        .enter("shutting the file's runtime down", None, RUNTIME_SHUTDOWN);
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    result
}

async fn run_file(job: &Job) -> Result<(), BoxError> {
    let (spec, shared) = (&job.spec, &job.shared);
    shared.enter("parsing the file", None, SETUP_DEADLINE);
    let records = sqllogictest::parse_file::<DefaultColumnType>(&spec.path)?;
    shared.enter("setting up a database", None, SETUP_DEADLINE);
    let db = FreshDb::create(&job.target, &spec.name).await?;
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
    let result = run_records(&mut runner, &hint, records, job).await;
    // Closing connections and the server have deadlines of their own (SETUP_DEADLINE each).
    shared.enter("releasing the database", None, SETUP_DEADLINE * 2);
    runner.shutdown_async().await;
    drop(runner);
    db.release().await;
    result
}

async fn run_records<M: MakeConnection<Conn = Conn>>(
    runner: &mut Runner<Conn, M>,
    hint: &TypeHint,
    records: Vec<Record<DefaultColumnType>>,
    job: &Job,
) -> Result<(), BoxError> {
    let (spec, shared) = (&job.spec, &job.shared);
    let listed = job.known.listed(&spec.name);
    let updating = job.known.updating();
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
            shared.tally().skipped += 1;
            rewritten.push(record);
            continue;
        }
        shared.tally().ran += 1;
        hint.set(match &record {
            Record::Query {
                expected: QueryExpect::Results { types, .. },
                ..
            } => Some(types.clone()),
            _ => None,
        });
        if spec.complete {
            let (updated, failure) = complete(runner, &record).await;
            match failure {
                Some(f) => shared.tally().fail(None, String::new(), f, listed, false),
                None => shared.tally().passed += 1,
            }
            rewritten.push(updated.unwrap_or(record));
            continue;
        }
        let key = record_key(&record);
        let what = match &key {
            Some(key) => format!("record at {key}"),
            None => "a record".into(),
        };
        // Known failures run like any other record, under the same deadline: a listed record
        // that hangs still ends the file, and one that now passes must be noticed.
        let deadline = record_deadline();
        shared.enter(what.clone(), key.clone(), deadline);
        match tokio::time::timeout(deadline, runner.run_async(record)).await {
            Ok(Ok(_)) => shared.tally().pass(key, listed),
            Ok(Err(e)) => {
                let reason = known::reason(&e.kind());
                shared
                    .tally()
                    .fail(key, reason, e.display(false), listed, updating);
            }
            Err(_) => {
                let why = format!("{what} took over {deadline:?}; abandoning the file");
                let mut tally = shared.tally();
                tally.fail(
                    key,
                    format!("hung: took over {deadline:?}; the rest of the file was abandoned"),
                    &why,
                    listed,
                    updating,
                );
                tally.abandoned = Some(why);
                break;
            }
        }
    }
    if spec.complete {
        write_records(spec, &rewritten)?;
    }
    Ok(())
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

/// Where a record that runs SQL (or a command) is, relative to the repository root.
fn record_key(record: &Record<DefaultColumnType>) -> Option<RecordKey> {
    match record {
        Record::Statement { loc, .. }
        | Record::Query { loc, .. }
        | Record::System { loc, .. }
        | Record::Let { loc, .. } => Some(RecordKey::new(loc.file(), loc.line())),
        _ => None,
    }
}

/// Runs a record and, for a query that succeeded, returns it with the target's results; or
/// says why it failed.
async fn complete<M: MakeConnection<Conn = Conn>>(
    runner: &mut Runner<Conn, M>,
    record: &Record<DefaultColumnType>,
) -> (Option<Record<DefaultColumnType>>, Option<String>) {
    if !matches!(
        record,
        Record::Query {
            expected: QueryExpect::Results { .. },
            ..
        }
    ) {
        let failure = runner
            .run_async(record.clone())
            .await
            .err()
            .map(|e| e.display(false).to_string());
        return (None, failure);
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
        return (None, None);
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
            (Some(updated), None)
        }
        RecordOutput::Query { error: Some(e), .. } => {
            (None, Some(format!("{loc}: query failed: {e}")))
        }
        _ => (
            None,
            Some(format!("{loc}: no result of the declared column count")),
        ),
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
