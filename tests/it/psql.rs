//! psql, as a user would run it.

use tokio::process::Command;

use super::support::{server, DEADLINE};

async fn psql(port: u16, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new("psql");
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        "postgres",
        "-d",
        "postgres",
    ])
    .args(["-X", "-v", "ON_ERROR_STOP=1"])
    .args(args)
    .env("PGCONNECT_TIMEOUT", "10")
    .kill_on_drop(true);
    tokio::time::timeout(DEADLINE, cmd.output())
        .await
        .expect("psql finishes")
        .expect("psql runs (is the PostgreSQL client installed?)")
}

#[tokio::test(flavor = "multi_thread")]
async fn psql_as_a_user_types_it() {
    let srv = server().await;
    let port = srv.addr().port().to_string();
    let out = tokio::time::timeout(
        DEADLINE,
        Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &port, "-c", "select 1"])
            .env("PGCONNECT_TIMEOUT", "10")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("psql finishes")
    .expect("psql runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("(1 row)"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn psql_runs_commands() {
    let srv = server().await;
    let port = srv.addr().port();
    let out = psql(port, &["-c", "select 1"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("(1 row)"), "{stdout}");

    let out = psql(
        port,
        &[
            "-A",
            "-t",
            "-c",
            "create table t (id int primary key, v text)",
            "-c",
            "insert into t values (1, 'one'), (2, 'two')",
            "-c",
            "select v from t order by id",
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("INSERT 0 2") && stdout.contains("one\ntwo"),
        "{stdout}"
    );

    let out = psql(port, &["-c", "select * from no_such_table"]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no_such_table"), "{stderr}");
}
