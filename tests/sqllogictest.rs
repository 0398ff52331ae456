//! Conformance tests: sqllogictest files run over the PostgreSQL wire protocol, each file its own
//! named test, once over the simple and once over the extended query protocol.
//!
//! ```text
//!   sqllogictest/**/*.slt                 ─► slt::{simple,extended}::<path>
//!   ../shared/sqllogictest/sqlite/**/*.test ─► sqlite::{simple,extended}::<path>  (label postgresql)
//!        │
//!        └─► run::run_trial ─► target::FreshDb (Weft TestServer, or WEFT_SLT_TARGET) ─► db::Conn
//! ```
//!
//! Environment:
//! - `WEFT_SLT_TARGET=postgres://user@host:port/db` runs against that server instead of an
//!   in-process Weft (a fresh `CREATE DATABASE` per test); used to check files against PostgreSQL.
//! - `CI` (non-empty): a missing corpus fails its tests instead of reporting them ignored.
//! - `WEFT_SLT_COMPLETE=1` rewrites the query results of our own `.slt` files with the target's
//!   output (simple protocol; meant for `WEFT_SLT_TARGET` pointing at PostgreSQL 15).
//!
//! Filter as with any cargo test: `cargo test --release --test sqllogictest -- slt::simple::types`.

#[path = "sqllogictest/db.rs"]
mod db;
#[path = "sqllogictest/format.rs"]
mod format;
#[path = "sqllogictest/pgtext.rs"]
mod pgtext;
#[path = "sqllogictest/run.rs"]
mod run;
#[path = "sqllogictest/target.rs"]
mod target;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use libtest_mimic::{Arguments, Completion, Trial};

use crate::db::Protocol;
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
    let trials = match Target::from_env() {
        Ok(target) => {
            if !args.list {
                eprintln!("sqllogictest target: {}", target.describe());
            }
            let target = Arc::new(target);
            suites
                .iter()
                .flat_map(|suite| suite_trials(suite, &target, complete))
                .collect()
        }
        Err(e) => vec![Trial::test("slt::target", move || Err(e.into()))],
    };
    libtest_mimic::run(&args, trials).exit();
}

fn suite_trials(suite: &Suite, target: &Arc<Target>, complete: bool) -> Vec<Trial> {
    let mut files = Vec::new();
    let listed = list_files(&suite.dir, suite.extension, &mut files);
    if let Err(e) = listed.and_then(|()| {
        if files.is_empty() {
            Err("no test files".into())
        } else {
            Ok(())
        }
    }) {
        return missing_suite(suite, e);
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
            let skip = complete && !(spec.complete && protocol == Protocol::Simple);
            trials.push(Trial::ignorable_test(spec.name.clone(), move || {
                if skip {
                    return Ok(Completion::ignored_with(
                        "WEFT_SLT_COMPLETE rewrites slt::simple files only",
                    ));
                }
                run_trial(&target, &spec).map(|()| Completion::Completed)
            }));
        }
    }
    trials
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
