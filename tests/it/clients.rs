//! Real client libraries other than tokio-postgres, driven as their users would: psycopg 3
//! (`conn.notifies()`, `cursor.copy()`, typed array parameters, named cursors), Django 5.2 (`migrate` and its ORM), SQLAlchemy 2 and node-postgres (`notification` events). The scripts under tests/python
//! and tests/node assert; here each runs under a deadline and its output is shown on failure.
//! A missing python3, psycopg, node or node-postgres fails the test with what to install
//! (scripts/install-deps installs them); it is never skipped.

use std::path::Path;

use tokio::process::Command;

use super::support::{server, DEADLINE};

async fn python(script: &str, conninfo: &str) -> std::process::Output {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let mut cmd = Command::new("python3");
    cmd.arg(&path).arg(conninfo).kill_on_drop(true);
    tokio::time::timeout(DEADLINE * 2, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within {:?}", DEADLINE * 2))
        .unwrap_or_else(|e| {
            panic!("cannot run python3 ({e}); install it, or run scripts/install-deps as root")
        })
}

/// A client script passed: it exited 0 and printed OK last.
fn passes(script: &str, out: &std::process::Output) {
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success() && stdout.trim_end().ends_with("OK"),
        "{script} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn psycopg3_receives_notify_and_live_query_changes() {
    python_passes("psycopg", "psycopg[binary]>=3.2", "notify_psycopg.py").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn psycopg3_copies_in_and_out() {
    let srv = server().await;
    passes(
        "copy_psycopg.py",
        &python("copy_psycopg.py", &srv.conn_string()).await,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn psycopg3_as_orms_use_it() {
    python_passes("psycopg", "psycopg[binary]>=3.2", "orm_psycopg.py").await;
}

/// python3 can import `module`; else the test fails saying what to install.
async fn importable(module: &str, pip: &str) {
    let probe = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("cannot run python3 ({e}); install it, or run scripts/install-deps as root")
        });
    assert!(
        probe.status.success(),
        "{module} is not importable by python3: run scripts/install-deps (pip install '{pip}'): {}",
        String::from_utf8_lossy(&probe.stderr)
    );
}

/// `script` passes against a fresh server, once python3 can import `module`.
async fn python_passes(module: &str, pip: &str, script: &str) {
    importable(module, pip).await;
    let srv = server().await;
    passes(script, &python(script, &srv.conn_string()).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlalchemy_creates_reflects_and_runs_its_orm() {
    python_passes("sqlalchemy", "SQLAlchemy>=2.0,<2.2", "sqlalchemy_orm.py").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn django_migrates_and_runs_its_orm() {
    python_passes("django", "Django>=5.2,<5.3", "django_orm.py").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn node_postgres_receives_notify_and_live_query_changes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    assert!(
        dir.join("node_modules/pg").is_dir(),
        "node-postgres is not installed in tests/node: run scripts/install-deps"
    );
    let srv = server().await;
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("notify_pg.js"))
        .arg(srv.addr().port().to_string())
        .kill_on_drop(true);
    let out = tokio::time::timeout(DEADLINE * 2, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("notify_pg.js did not finish within {:?}", DEADLINE * 2))
        .unwrap_or_else(|e| {
            panic!("cannot run node ({e}); install it, or run scripts/install-deps as root")
        });
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success() && stdout.trim_end().ends_with("OK"),
        "node-postgres script failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
}
