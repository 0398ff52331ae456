//! Starting, stopping and restarting: the library server and the `weft` binary.

use std::net::SocketAddr;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStderr, Command};

use super::support::{connect, scalar, server, DEADLINE};

#[tokio::test(flavor = "multi_thread")]
async fn restart_keeps_committed_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = weft::server::TestServer::start_in(dir.path())
        .await
        .expect("starts");
    let c = connect(&srv).await;
    c.batch_execute(
        "create table t (id int primary key, v text); insert into t values (1, 'kept')",
    )
    .await
    .expect("writes");
    srv.shutdown().await.expect("shuts down");
    // Every Storage handle must be gone by now, or the data directory stays locked.
    let srv = weft::server::TestServer::start_in(dir.path())
        .await
        .expect("restarts");
    let c = connect(&srv).await;
    assert_eq!(
        scalar(&c, "select v from t where id = 1").await.as_deref(),
        Some("kept")
    );
    srv.shutdown().await.expect("shuts down");
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_closes_idle_connections() {
    let srv = server().await;
    let c = connect(&srv).await;
    assert_eq!(scalar(&c, "select 1").await.as_deref(), Some("1"));
    tokio::time::timeout(DEADLINE, srv.shutdown())
        .await
        .expect("shutdown is bounded")
        .expect("shuts down");
    assert!(
        c.simple_query("select 1").await.is_err(),
        "the connection is closed"
    );
}

fn weft() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
    cmd.env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Reads the log until the "ready" line and returns the address it names.
async fn ready_addr(stderr: &mut BufReader<ChildStderr>) -> SocketAddr {
    let mut line = String::new();
    loop {
        line.clear();
        let n = tokio::time::timeout(DEADLINE, stderr.read_line(&mut line))
            .await
            .expect("server logs readiness in time")
            .expect("reads stderr");
        assert!(n > 0, "server exited before it was ready");
        if line.contains("weft is ready") {
            let addr = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
                .expect("ready line names the address");
            return addr.parse().expect("an address");
        }
    }
}

async fn signal(child: &Child, name: &str) {
    let pid = child.id().expect("child is running");
    let status = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .await
        .expect("kill runs");
    assert!(status.success());
}

async fn wait(mut child: Child) -> std::process::ExitStatus {
    tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("process exits in time")
        .expect("waits")
}

fn conn_string(addr: SocketAddr) -> String {
    format!(
        "host={} port={} user=postgres dbname=postgres",
        addr.ip(),
        addr.port()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_serves_and_stops_on_signals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf8 path").to_string();
    for (round, sig) in [(0, "TERM"), (1, "INT")] {
        let mut child = weft()
            .args(["start", "--data-dir", &data, "--listen", "127.0.0.1:0"])
            .spawn()
            .expect("weft starts");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr piped"));
        let addr = ready_addr(&mut stderr).await;
        let (c, conn) = tokio_postgres::connect(&conn_string(addr), tokio_postgres::NoTls)
            .await
            .expect("connects");
        tokio::spawn(conn);
        if round == 0 {
            c.batch_execute("create table t (x int); insert into t values (7)")
                .await
                .expect("writes");
        } else {
            assert_eq!(
                scalar(&c, "select x from t").await.as_deref(),
                Some("7"),
                "data survived"
            );
        }
        // Keep draining the log so the server never blocks on a full pipe.
        tokio::spawn(async move {
            let mut line = String::new();
            while stderr.read_line(&mut line).await.is_ok_and(|n| n > 0) {
                line.clear();
            }
        });
        signal(&child, sig).await;
        let status = wait(child).await;
        assert!(status.success(), "SIG{sig}: exit {status:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn second_process_on_the_same_data_dir_fails_fast() {
    let srv = server().await;
    let data = srv.data_dir().to_str().expect("utf8 path").to_string();
    let child = weft()
        .args(["start", "--data-dir", &data, "--listen", "127.0.0.1:0"])
        .spawn()
        .expect("weft starts");
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("fails fast")
        .expect("waits");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("in use by another weft process"),
        "{stderr}"
    );
    // The first server is unaffected.
    let c = connect(&srv).await;
    assert_eq!(scalar(&c, "select 1").await.as_deref(), Some("1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_flags_exit_with_usage_error() {
    let out = weft()
        .args([
            "start",
            "--node-id",
            "0",
            "--data-dir",
            "/nonexistent/never",
        ])
        .output()
        .await
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
}
