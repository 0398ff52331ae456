//! The process-based cluster harness shared by the cluster and LWW tests: real `weft` processes
//! on port 0 with `--fault-injection`, so a test can kill (-9) a node, restart it on its ports
//! and data directory, and partition or heal it through `SELECT weft_fault(...)`. Every wait is a
//! condition under a deadline.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_postgres::{Client, NoTls};

use super::support::{rows, DEADLINE};

/// Raft timeout the nodes run with: statements that cannot reach a majority fail this fast.
pub(crate) const RAFT_TIMEOUT: Duration = Duration::from_secs(3);

pub(crate) struct Node {
    pub(crate) id: u64,
    pub(crate) child: Option<Child>,
    pub(crate) pg: String,
    pub(crate) peer: String,
    pub(crate) dir: PathBuf,
    /// stderr of every run of the node (the log), appended across restarts.
    pub(crate) log: PathBuf,
}

pub(crate) struct TestCluster {
    tmp: tempfile::TempDir,
    pub(crate) nodes: BTreeMap<u64, Node>,
}

impl Node {
    pub(crate) fn conn_string(&self) -> String {
        let port = self.pg.rsplit(':').next().expect("port");
        format!("host=127.0.0.1 port={port} user=postgres")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.start_kill();
        }
    }
}

/// Starts `weft` and reads its ready line (`weft ready pg=… peer=…`).
async fn spawn(
    id: u64,
    dir: &PathBuf,
    log: &PathBuf,
    pg: &str,
    peer: &str,
    join: Option<&str>,
    extra: &[&str],
) -> (Child, String, String) {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
    cmd.args(["start", "--node-id", &id.to_string()])
        .arg("--data-dir")
        .arg(dir)
        .args(["--listen", pg, "--peer-listen", peer])
        .arg("--raft-timeout")
        .arg(format!("{}ms", RAFT_TIMEOUT.as_millis()))
        .arg("--fault-injection")
        .args(extra)
        .env(
            "RUST_LOG",
            std::env::var("WEFT_TEST_LOG").unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        .kill_on_drop(true);
    if let Some(j) = join {
        cmd.args(["--join", j]);
    }
    let mut child = cmd.spawn().expect("weft starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "node {id} not ready within {DEADLINE:?}; log: {}",
                read_log(log)
            )
        })
        .expect("reads stdout")
        .unwrap_or_else(|| panic!("node {id} exited before ready; log: {}", read_log(log)));
    let mut pg_addr = None;
    let mut peer_addr = None;
    for part in line.split_whitespace() {
        if let Some(v) = part.strip_prefix("pg=") {
            pg_addr = Some(v.to_string());
        }
        if let Some(v) = part.strip_prefix("peer=") {
            peer_addr = Some(v.to_string());
        }
    }
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (
        child,
        pg_addr.expect("pg address in the ready line"),
        peer_addr.expect("peer address in the ready line"),
    )
}

/// Waits until a node's log has a line containing `text`.
pub(crate) async fn wait_log(path: &PathBuf, text: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if std::fs::read_to_string(path)
            .unwrap_or_default()
            .contains(text)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no \"{text}\" in the log: {}",
            read_log(path)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) fn read_log(path: &PathBuf) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(40).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

impl TestCluster {
    /// Node 1 bootstraps; nodes 2..=n join through it; returns once all are voters.
    pub(crate) async fn start(n: u64, extra: &[&str]) -> TestCluster {
        let tmp = tempfile::Builder::new()
            .prefix("weft-cluster-")
            .tempdir()
            .expect("tempdir");
        let mut c = TestCluster {
            tmp,
            nodes: BTreeMap::new(),
        };
        c.add(1, None, extra).await;
        let seed = c.nodes[&1].peer.clone();
        for id in 2..=n {
            c.add(id, Some(&seed), extra).await;
        }
        c.wait_voters(n as usize).await;
        c
    }

    pub(crate) async fn add(&mut self, id: u64, join: Option<&str>, extra: &[&str]) {
        let dir = self.tmp.path().join(format!("node{id}"));
        let log = self.tmp.path().join(format!("node{id}.log"));
        let (child, pg, peer) =
            spawn(id, &dir, &log, "127.0.0.1:0", "127.0.0.1:0", join, extra).await;
        self.nodes.insert(
            id,
            Node {
                id,
                child: Some(child),
                pg,
                peer,
                dir,
                log,
            },
        );
    }

    /// kill -9.
    pub(crate) async fn kill(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).expect("node");
        if let Some(mut c) = node.child.take() {
            c.kill().await.expect("kill -9");
        }
    }

    /// SIGTERM, then waits for the process to exit; returns how it exited.
    pub(crate) async fn stop(&mut self, id: u64) -> std::process::ExitStatus {
        let node = self.nodes.get_mut(&id).expect("node");
        let mut child = node.child.take().expect("node is running");
        let pid = child.id().expect("child is running");
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .expect("kill runs");
        assert!(sent.success(), "SIGTERM to node {id}");
        tokio::time::timeout(DEADLINE, child.wait())
            .await
            .unwrap_or_else(|_| panic!("node {id} exits within {DEADLINE:?} of SIGTERM"))
            .expect("waits")
    }

    /// Restarts a killed (or stopped) node with the same command line (ports, data directory, --join).
    pub(crate) async fn restart(&mut self, id: u64, extra: &[&str]) {
        let seed = self.nodes[&1].peer.clone();
        let node = self.nodes.get_mut(&id).expect("node");
        assert!(node.child.is_none(), "node {id} is running");
        let join = (id != 1).then_some(seed);
        let (child, _, _) = spawn(
            id,
            &node.dir,
            &node.log,
            &node.pg.clone(),
            &node.peer.clone(),
            join.as_deref(),
            extra,
        )
        .await;
        node.child = Some(child);
    }

    /// Cuts node `id` off from every other node: each running node refuses the other side's
    /// traffic, so the cut holds in both directions.
    pub(crate) async fn isolate(&self, id: u64) {
        let others: Vec<String> = self
            .nodes
            .keys()
            .filter(|n| **n != id)
            .map(u64::to_string)
            .collect();
        for n in self.running() {
            let peers = if n == id {
                others.join(",")
            } else {
                id.to_string()
            };
            let sql = format!("SELECT weft_fault('partition', '{peers}')");
            self.client(n)
                .await
                .batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql} on node {n}: {e:?}"));
        }
    }

    /// Removes every partition, on every running node.
    pub(crate) async fn heal(&self) {
        for n in self.running() {
            self.client(n)
                .await
                .batch_execute("SELECT weft_fault('heal', '')")
                .await
                .unwrap_or_else(|e| panic!("heal on node {n}: {e:?}"));
        }
    }

    pub(crate) fn running(&self) -> Vec<u64> {
        self.nodes
            .values()
            .filter(|n| n.child.is_some())
            .map(|n| n.id)
            .collect()
    }

    pub(crate) async fn client(&self, id: u64) -> Client {
        let node = &self.nodes[&id];
        let conn = node.conn_string();
        let (client, connection) =
            tokio::time::timeout(DEADLINE, tokio_postgres::connect(&conn, NoTls))
                .await
                .expect("connect in time")
                .unwrap_or_else(|e| {
                    panic!("connect to node {id}: {e}; log: {}", read_log(&node.log))
                });
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    /// `weft_nodes` as node `id` sees it: node_id -> (role, voter, status).
    pub(crate) async fn members(&self, id: u64) -> BTreeMap<u64, (String, bool, String)> {
        let c = self.client(id).await;
        let msgs = c
            .simple_query("SELECT node_id, role, voter, status FROM weft_nodes ORDER BY node_id")
            .await
            .expect("weft_nodes");
        rows(&msgs)
            .into_iter()
            .map(|r| {
                let v = |i: usize| r[i].clone().unwrap_or_default();
                (v(0).parse().expect("id"), (v(1), v(2) == "t", v(3)))
            })
            .collect()
    }

    pub(crate) async fn wait_voters(&self, n: usize) {
        let deadline = Instant::now() + DEADLINE * 2;
        loop {
            let m = self.members(1).await;
            let ok = m
                .values()
                .filter(|(_, voter, status)| *voter && status == "ok")
                .count();
            if ok == n && m.values().filter(|(role, ..)| role == "leader").count() == 1 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "cluster did not reach {n} voters: {m:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The leader as node `via` sees it.
    pub(crate) async fn leader(&self, via: u64) -> Option<u64> {
        self.members(via)
            .await
            .into_iter()
            .find(|(_, (role, ..))| role == "leader")
            .map(|(id, _)| id)
    }

    pub(crate) async fn wait_leader_among(&self, among: &[u64]) -> u64 {
        let deadline = Instant::now() + DEADLINE;
        loop {
            for via in among {
                if let Some(l) = self.leader(*via).await {
                    if among.contains(&l) {
                        return l;
                    }
                }
            }
            assert!(Instant::now() < deadline, "no leader among {among:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Runs `sql` until it succeeds (retrying 40001/40003 and broken connections) or the deadline.
pub(crate) async fn exec_retry(c: &TestCluster, id: u64, sql: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let client = c.client(id).await;
        match client.batch_execute(sql).await {
            Ok(()) => return,
            Err(e) => {
                assert!(Instant::now() < deadline, "{sql} on node {id}: {e:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The next notification's channel and JSON payload (notices are skipped).
pub(crate) async fn next_payload(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::AsyncMessage>,
    what: &str,
) -> (String, serde_json::Value) {
    loop {
        let m = tokio::time::timeout(DEADLINE, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no notification within {DEADLINE:?}: expected {what}"))
            .expect("connection open");
        if let tokio_postgres::AsyncMessage::Notification(n) = m {
            let v = serde_json::from_str(n.payload()).expect("json payload");
            return (n.channel().to_string(), v);
        }
    }
}

pub(crate) async fn count(client: &Client, sql: &str) -> i64 {
    let row = client.query_one(sql, &[]).await.expect(sql);
    row.get::<_, i64>(0)
}

pub(crate) fn code(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| "none".into())
}

/// A writer for kill/restart tests: inserts `(k, node)` into `table` with keys from `next` over
/// a connection to `conn` until `stop`, reconnecting whenever the node goes away. `record` sees
/// every outcome with the writer's state, which the task returns. An error without a SQLSTATE
/// (the connection broke: the insert's outcome is unknown) is not recorded; the writer
/// reconnects.
pub fn spawn_inserter<T: Send + 'static>(
    conn: String,
    table: &'static str,
    node: u64,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    next: std::sync::Arc<std::sync::atomic::AtomicU64>,
    mut state: T,
    record: fn(&mut T, i64, Result<u64, tokio_postgres::Error>),
) -> tokio::task::JoinHandle<T> {
    use std::sync::atomic::Ordering;
    tokio::spawn(async move {
        let sql = format!("INSERT INTO {table} VALUES ($1, $2)");
        while !stop.load(Ordering::Relaxed) {
            let Ok((client, connection)) = tokio_postgres::connect(&conn, NoTls).await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            tokio::spawn(async move {
                let _ = connection.await;
            });
            while !stop.load(Ordering::Relaxed) {
                let k = next.fetch_add(1, Ordering::Relaxed) as i64;
                match client.execute(&sql, &[&k, &(node as i32)]).await {
                    Err(e) if e.code().is_none() => break,
                    r => record(&mut state, k, r),
                }
            }
        }
        state
    })
}
