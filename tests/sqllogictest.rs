//! Conformance tests: sqllogictest files run over the PostgreSQL wire protocol, each file its own
//! named test, once over the simple and once over the extended query protocol.
//!
//! ```text
//!   sqllogictest/**/*.slt                 ─► slt::{simple,extended}::<path>
//!   ../shared/sqllogictest/sqlite/**/*.test ─► sqlite::{simple,extended}::<path>  (label postgresql)
//!        │
//!        └─► run::run_trial ─► target::FreshDb (Weft TestServer, or WEFT_SLT_TARGET) ─► db::Conn
//!                  │
//!                  └─► each failure judged against known::KnownFailures (sqllogictest/known-failures.txt)
//! ```
//!
//! Environment:
//! - `WEFT_SLT_TARGET=postgres://user@host:port/db` runs against that server instead of an
//!   in-process Weft (a fresh `CREATE DATABASE` per test); used to check files against PostgreSQL.
//! - `CI` (non-empty): a missing corpus fails its tests instead of reporting them ignored.
//! - `WEFT_SLT_COMPLETE=1` rewrites the query results of our own `.slt` files with the target's
//!   output (simple protocol; meant for `WEFT_SLT_TARGET` pointing at PostgreSQL 15).
//! - `WEFT_SLT_UPDATE_KNOWN=1` rewrites `sqllogictest/known-failures.txt`, the records Weft is
//!   known to fail, from this run's failures (see `known`). Without it a test fails on any
//!   failure not listed there, and on any listed record that did not fail. The list applies to
//!   the in-process Weft only: with `WEFT_SLT_TARGET` or `WEFT_SLT_COMPLETE` every failure counts.
//! - `WEFT_SLT_RECORD_DEADLINE=<seconds>`: how long one record may run before its file is
//!   abandoned as hung (default 120), listed or not.
//!
//! Filter as with any cargo test: `cargo test --release --test sqllogictest -- slt::simple::types`.

#[path = "sqllogictest/db.rs"]
mod db;
#[path = "sqllogictest/format.rs"]
mod format;
#[path = "sqllogictest/known.rs"]
mod known;
#[path = "sqllogictest/pgtext.rs"]
mod pgtext;
#[path = "sqllogictest/run.rs"]
mod run;
#[path = "sqllogictest/target.rs"]
mod target;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use libtest_mimic::{Arguments, Completion, Trial};

use crate::db::Protocol;
use crate::known::{KnownFailures, Mode, LIST, REGENERATE};
use crate::run::{run_trial, FileSpec};
use crate::target::Target;

const PROTOCOLS: [Protocol; 2] = [Protocol::Simple, Protocol::Extended];

/// One directory of test files and how to run them.
struct Suite {
    /// Test name prefix.
    prefix: &'static str,
    dir: PathBuf,
    extension: &'static str,
    labels: &'static [&'static str],
}

fn main() {
    let args = Arguments::from_args();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let suites = [
        Suite {
            prefix: "slt",
            dir: root.join("sqllogictest"),
            extension: "slt",
            labels: &[],
        },
        Suite {
            prefix: "sqlite",
            dir: root.join("../shared/sqllogictest/sqlite"),
            extension: "test",
            labels: &["postgresql"],
        },
    ];
    let complete = env_flag("WEFT_SLT_COMPLETE");
    let update = env_flag("WEFT_SLT_UPDATE_KNOWN");
    let target = match Target::from_env() {
        Ok(target) => target,
        Err(e) => fail_alone(&args, "slt::target", e),
    };
    let mode = match (&target, complete, update) {
        (Target::Postgres(_), _, true) | (_, true, true) => fail_alone(
            &args,
            "known_failures",
            "WEFT_SLT_UPDATE_KNOWN lists Weft's failures: unset WEFT_SLT_TARGET and \
             WEFT_SLT_COMPLETE to use it"
                .to_string(),
        ),
        (Target::Postgres(_), _, false) => Mode::Off("the target is WEFT_SLT_TARGET"),
        (Target::Weft, true, false) => Mode::Off("WEFT_SLT_COMPLETE is rewriting results"),
        (Target::Weft, false, true) => Mode::Update,
        (Target::Weft, false, false) => Mode::Check,
    };
    let known = match KnownFailures::load(root, mode) {
        Ok(known) => Arc::new(known),
        Err(e) => fail_alone(&args, "known_failures", e),
    };
    if !args.list {
        eprintln!("sqllogictest target: {}", target.describe());
    }
    let target = Arc::new(target);
    let mut trials = Vec::new();
    // Prefixes of suites whose files are missing here: their listed failures cannot be checked.
    let mut missing = Vec::new();
    for suite in &suites {
        match suite_trials(suite, &target, &known, complete) {
            Ok(suite_trials) => trials.extend(suite_trials),
            Err(e) => {
                missing.push(format!("{}::", suite.prefix));
                trials.extend(missing_suite(suite, e));
            }
        }
    }
    let names: BTreeSet<String> = trials.iter().map(|t| t.name().to_string()).collect();
    trials.push(list_trial(&known, &names, &missing));
    let conclusion = libtest_mimic::run(&args, trials);
    if !args.list {
        if known.updating() && known.summary().is_some() {
            match known.write(&names, &missing) {
                Ok(n) => println!(
                    "sqllogictest: wrote {} known failures to {LIST}",
                    known::thousands(n)
                ),
                Err(e) => {
                    eprintln!("sqllogictest: writing {LIST} failed: {e}");
                    std::process::exit(101);
                }
            }
        }
        if let Some(summary) = known.summary() {
            println!("{summary}");
        }
    }
    conclusion.exit();
}

/// Runs a single failing test that says why nothing else can run.
fn fail_alone(args: &Arguments, name: &str, why: String) -> ! {
    libtest_mimic::run(args, vec![Trial::test(name, move || Err(why.into()))]).exit()
}

/// A test of the list itself: it names no test that does not exist.
fn list_trial(known: &Arc<KnownFailures>, names: &BTreeSet<String>, missing: &[String]) -> Trial {
    let unknown = known.unknown_tests(names, missing);
    let updating = known.updating();
    Trial::test("known_failures", move || {
        if unknown.is_empty() || updating {
            return Ok(());
        }
        Err(format!(
            "{LIST} lists failures of {} tests that do not exist ({}); regenerate it: {REGENERATE}",
            unknown.len(),
            unknown.join(", ")
        )
        .into())
    })
}

fn suite_trials(
    suite: &Suite,
    target: &Arc<Target>,
    known: &Arc<KnownFailures>,
    complete: bool,
) -> Result<Vec<Trial>, String> {
    let mut files = Vec::new();
    list_files(&suite.dir, suite.extension, &mut files)?;
    if files.is_empty() {
        return Err("no test files".into());
    }
    files.sort();
    let mut trials = Vec::new();
    for path in files {
        let rel = path
            .strip_prefix(&suite.dir)
            .unwrap_or(&path)
            .with_extension("");
        let rel = rel
            .to_string_lossy()
            .replace(std::path::MAIN_SEPARATOR, "::");
        for protocol in PROTOCOLS {
            let spec = FileSpec {
                name: format!("{}::{}::{rel}", suite.prefix, protocol.name()),
                path: path.clone(),
                protocol,
                labels: suite.labels,
                complete: complete && suite.prefix == "slt",
            };
            let target = Arc::clone(target);
            let known = Arc::clone(known);
            let skip = complete && !(spec.complete && protocol == Protocol::Simple);
            trials.push(Trial::ignorable_test(spec.name.clone(), move || {
                if skip {
                    return Ok(Completion::ignored_with(
                        "WEFT_SLT_COMPLETE rewrites slt::simple files only",
                    ));
                }
                run_trial(&target, &spec, &known).map(|()| Completion::Completed)
            }));
        }
    }
    Ok(trials)
}

/// A suite whose files cannot be found: its tests fail under CI and are ignored elsewhere, never
/// passing silently.
fn missing_suite(suite: &Suite, error: String) -> Vec<Trial> {
    let why = format!(
        "{} test files not found in {}: {error}",
        suite.prefix,
        suite.dir.display()
    );
    let in_ci = env_flag("CI");
    PROTOCOLS
        .iter()
        .map(|protocol| {
            let why = why.clone();
            Trial::ignorable_test(
                format!("{}::{}::(missing)", suite.prefix, protocol.name()),
                move || {
                    if in_ci {
                        Err(format!("{why} (CI is set, so this fails)").into())
                    } else {
                        Ok(Completion::ignored_with(why))
                    }
                },
            )
        })
        .collect()
}

fn list_files(dir: &Path, extension: &str, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| e.to_string())?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_dir() {
            list_files(&path, extension, out)?;
        } else if path.extension().is_some_and(|e| e == extension) {
            out.push(path);
        }
    }
    Ok(())
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}
