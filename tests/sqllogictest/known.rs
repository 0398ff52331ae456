//! The known-failures ratchet: `sqllogictest/known-failures.txt` lists the records Weft is known
//! to fail, one per line, so the suites can gate CI before they pass in full, without hiding a
//! single failure.
//!
//! ```text
//!   <test name> <file>:<line> <short reason>
//!   sqlite::simple::select1 ../shared/sqllogictest/sqlite/select1.test:157 query failed (0A000): …
//! ```
//!
//! `<file>` is relative to the repository root (the SQLite corpus sits in `../shared`), `<line>`
//! is the line of the record's `statement`/`query`. A test (one file over one protocol) passes
//! when its failures are exactly the listed ones that it reached:
//!
//! | record | listed | outcome |
//! | --- | --- | --- |
//! | fails | yes | known failure (counted, not shown) |
//! | fails | no | new failure: the test fails and shows it |
//! | passes | yes | the test fails: the list must be regenerated, so it only shrinks |
//! | not a record that ran, in a file that ran to its end | yes | the test fails, as above |
//! | not reached because the file was abandoned after a hang | yes | counted as not reached |
//!
//! `WEFT_SLT_UPDATE_KNOWN=1` rewrites the list from the failures of the tests that ran (sorted by
//! test, file and line); entries of tests that did not run (filtered out, or whose corpus is
//! missing) are kept, entries of tests that no longer exist are dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sqllogictest::TestErrorKind;

/// The list, relative to the repository root.
pub const LIST: &str = "sqllogictest/known-failures.txt";
/// The command that rewrites the list, for messages.
pub const REGENERATE: &str =
    "WEFT_SLT_UPDATE_KNOWN=1 cargo test --release --workspace --test sqllogictest";
/// The longest reason written to the list, in characters.
const REASON_CHARS: usize = 140;

const HEADER: &str = "\
# Records of the sqllogictest suites that Weft is known to fail: the CI ratchet described in
# sqllogictest/README.md. The goal is an empty file. Do not edit by hand; regenerate with
#   WEFT_SLT_UPDATE_KNOWN=1 cargo test --release --workspace --test sqllogictest
# <test name> <file, relative to the repository root>:<line> <short reason>
";

/// Where a record is: its file relative to the repository root, and its line.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordKey {
    pub file: String,
    pub line: u32,
}

impl RecordKey {
    /// The key of a record whose location the parser gives as `file` (as the runner was handed
    /// it, i.e. absolute) and `line`.
    pub fn new(file: &str, line: u32) -> RecordKey {
        RecordKey {
            file: display_path(Path::new(file)),
            line,
        }
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// A failed record and a one-line reason.
#[derive(Clone, Debug)]
pub struct Failure {
    pub key: RecordKey,
    pub reason: String,
}

/// What one test contributed, for the summary and for an update.
#[derive(Default, Clone, Copy)]
pub struct Counts {
    pub ran: usize,
    pub passed: usize,
    pub known: usize,
    pub new: usize,
    /// Listed records that passed, or that are no record this test ran.
    pub stale: usize,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.ran += o.ran;
        self.passed += o.passed;
        self.known += o.known;
        self.new += o.new;
        self.stale += o.stale;
    }
}

/// How a run uses the list.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// Failures must be exactly the listed ones.
    Check,
    /// `WEFT_SLT_UPDATE_KNOWN`: the list is rewritten from this run's failures.
    Update,
    /// The list describes Weft, not this target (`WEFT_SLT_TARGET`), or results are being
    /// rewritten (`WEFT_SLT_COMPLETE`): every failure fails its test.
    Off(&'static str),
}

pub struct KnownFailures {
    path: PathBuf,
    mode: Mode,
    /// Test name → listed record → reason.
    listed: BTreeMap<String, BTreeMap<RecordKey, String>>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    totals: Counts,
    /// Tests whose records all ran to a tally (so an update replaces their entries).
    tests: usize,
    /// Update mode: the failures of each test that ran.
    failures: BTreeMap<String, Vec<Failure>>,
}

static NONE_LISTED: BTreeMap<RecordKey, String> = BTreeMap::new();

impl KnownFailures {
    /// Reads the list; a missing file is an empty list. When updating, an unreadable list is
    /// only warned about, since the run rewrites it.
    pub fn load(root: &Path, mode: Mode) -> Result<KnownFailures, String> {
        let path = root.join(LIST);
        let update = mode == Mode::Update;
        let listed = match std::fs::read_to_string(&path) {
            _ if matches!(mode, Mode::Off(_)) => BTreeMap::new(),
            Ok(text) => match parse(&text) {
                Ok(listed) => listed,
                Err(e) if update => {
                    eprintln!("warning: ignoring {LIST} while regenerating it: {e}");
                    BTreeMap::new()
                }
                Err(e) => return Err(format!("{LIST}: {e}; regenerate it with `{REGENERATE}`")),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        };
        Ok(KnownFailures {
            path,
            mode,
            listed,
            state: Mutex::default(),
        })
    }

    /// Whether this run rewrites the list instead of checking against it.
    pub fn updating(&self) -> bool {
        self.mode == Mode::Update
    }

    /// The records listed for one test.
    pub fn listed(&self, test: &str) -> &BTreeMap<RecordKey, String> {
        self.listed.get(test).unwrap_or(&NONE_LISTED)
    }

    /// Records the outcome of a test whose records ran (to their end or until abandoned).
    pub fn finish(&self, test: &str, counts: Counts, failures: Vec<Failure>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.totals += counts;
        state.tests += 1;
        if self.updating() {
            state.failures.insert(test.to_string(), failures);
        }
    }

    /// Listed tests that are not among `tests`, except those under a prefix in `unknown`
    /// (suites whose files are missing here, so their tests cannot be named).
    pub fn unknown_tests(&self, tests: &BTreeSet<String>, unknown: &[String]) -> Vec<String> {
        self.listed
            .keys()
            .filter(|t| !tests.contains(*t) && !unknown.iter().any(|p| t.starts_with(p.as_str())))
            .cloned()
            .collect()
    }

    /// Update mode: rewrites the list from the failures of the tests that ran, keeping the
    /// entries of existing tests that did not run. Returns the number of entries written.
    pub fn write(&self, tests: &BTreeSet<String>, unknown: &[String]) -> std::io::Result<usize> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let dropped = self.unknown_tests(tests, unknown);
        let mut entries: BTreeMap<&str, BTreeMap<&RecordKey, &str>> = BTreeMap::new();
        for (test, listed) in &self.listed {
            if !state.failures.contains_key(test) && !dropped.contains(test) {
                let e = entries.entry(test).or_default();
                e.extend(listed.iter().map(|(k, r)| (k, r.as_str())));
            }
        }
        for (test, failures) in &state.failures {
            let e = entries.entry(test).or_default();
            e.extend(failures.iter().map(|f| (&f.key, f.reason.as_str())));
        }
        let mut text = String::from(HEADER);
        let mut n = 0;
        for (test, records) in &entries {
            for (key, reason) in records {
                text.push_str(&format!("{test} {key} {reason}\n"));
                n += 1;
            }
        }
        let tmp = self.path.with_extension("txt.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &self.path)?;
        Ok(n)
    }

    /// The closing line across every test that ran, or `None` when none did.
    pub fn summary(&self) -> Option<String> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.tests == 0 {
            return None;
        }
        let t = state.totals;
        let mut line = format!(
            "sqllogictest: {} of {} records pass",
            thousands(t.passed),
            thousands(t.ran)
        );
        match self.mode {
            Mode::Check => line.push_str(&format!(
                " ({} known failures listed in {LIST})",
                thousands(t.known)
            )),
            Mode::Update => line.push_str(&format!(
                " ({} known failures, now listed in {LIST})",
                thousands(t.known)
            )),
            Mode::Off(why) => line.push_str(&format!(" ({LIST} not applied: {why})")),
        }
        if t.new > 0 {
            let what = match self.mode {
                Mode::Off(_) => "failures",
                _ => "NEW failures, not listed",
            };
            line.push_str(&format!("; {} {what}", thousands(t.new)));
        }
        if t.stale > 0 {
            line.push_str(&format!(
                "; {} listed records pass or are gone: regenerate the list",
                thousands(t.stale)
            ));
        }
        if state.tests > 1 {
            line.push_str(&format!(" [{} tests]", thousands(state.tests)));
        }
        Some(line)
    }
}

fn parse(text: &str) -> Result<BTreeMap<String, BTreeMap<RecordKey, String>>, String> {
    let mut listed: BTreeMap<String, BTreeMap<RecordKey, String>> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || format!("line {}: expected `<test> <file>:<line> <reason>`", i + 1);
        let (test, rest) = line.split_once(char::is_whitespace).ok_or_else(bad)?;
        let rest = rest.trim_start();
        let (loc, reason) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let (file, line_no) = loc.rsplit_once(':').ok_or_else(bad)?;
        let key = RecordKey {
            file: file.to_string(),
            line: line_no.parse().map_err(|_| bad())?,
        };
        let previous = listed
            .entry(test.to_string())
            .or_default()
            .insert(key, reason.trim().to_string());
        if previous.is_some() {
            return Err(format!("line {}: {test} {loc} is listed twice", i + 1));
        }
    }
    Ok(listed)
}

/// `path` relative to the repository root when it is under it or beside it (`../shared/…`),
/// with `/` separators.
pub fn display_path(path: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shown = path.strip_prefix(root).unwrap_or(path);
    shown
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// A one-line reason for a failed record, stable from run to run for the same failure.
pub fn reason(kind: &TestErrorKind) -> String {
    let text = match kind {
        TestErrorKind::Fail { err, kind, .. } => {
            format!("{kind} failed{}", db_error(&err.to_string()))
        }
        TestErrorKind::ErrorMismatch { err, .. } => {
            format!("wrong error{}", db_error(&err.to_string()))
        }
        TestErrorKind::Ok { kind, .. } => format!("{kind} succeeded where an error is expected"),
        TestErrorKind::StatementResultMismatch {
            expected, actual, ..
        } => format!("statement affected {actual} rows, expected {expected}"),
        TestErrorKind::QueryResultMismatch {
            expected, actual, ..
        } => {
            let (mut e, mut a) = (expected.lines(), actual.lines());
            loop {
                match (e.next(), a.next()) {
                    (Some(x), Some(y)) if x == y => continue,
                    (None, None) => break "result mismatch".into(),
                    (x, y) => {
                        let show =
                            |v: Option<&str>| v.map_or("nothing".into(), |v| format!("{v:?}"));
                        break format!("result mismatch: expected {}, got {}", show(x), show(y));
                    }
                }
            }
        }
        TestErrorKind::QueryResultColumnsMismatch {
            expected, actual, ..
        } => format!("column types mismatch: expected {expected}, got {actual}"),
        other => other.to_string(),
    };
    one_line(&text, REASON_CHARS)
}

/// `: message` with a trailing ` (SQLSTATE xxxxx)` moved to the front, as ` (xxxxx): message`,
/// so truncation keeps it.
fn db_error(err: &str) -> String {
    let err = err.trim();
    let err = err.strip_prefix("ERROR: ").unwrap_or(err);
    let first = err.lines().next().unwrap_or_default();
    match err
        .rsplit_once(" (SQLSTATE ")
        .and_then(|(msg, code)| Some((msg, code.strip_suffix(')')?)))
    {
        Some((msg, code)) if code.len() == 5 => {
            let msg = msg.lines().next().unwrap_or_default();
            format!(" ({code}): {msg}")
        }
        _ => format!(": {first}"),
    }
}

/// `text` on one line, whitespace collapsed, cut to `max` characters.
pub fn one_line(text: &str, max: usize) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.chars().count() <= max {
        return joined;
    }
    let mut cut: String = joined.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// `12345` → `12,345`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
