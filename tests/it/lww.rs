//! LWW tables in a real three-node cluster (the `nodes` harness): concurrent writes merged cell
//! by cell, a partitioned node that keeps writing, kill -9 mid-stream, catch-up by full sync past
//! the retained log, the refusal of a node whose clock is ahead, live queries fed by
//! replication, and the refusal of transactions that write lww and raft tables. Convergence is
//! `weft_table_checksum` equal on every node, polled under a deadline.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokio_postgres::Client;

use super::nodes::{
    code, count, exec_retry, next_payload, spawn_inserter, wait_log, TestCluster, RAFT_TIMEOUT,
};
use super::support::{connect_str_with_messages, rows, DEADLINE};

type Rows = Vec<Vec<Option<String>>>;

/// Expected rows, as text; `"NULL"` is NULL.
fn table(rows: &[&[&str]]) -> Rows {
    rows.iter()
        .map(|r| {
            r.iter()
                .map(|v| (*v != "NULL").then(|| v.to_string()))
                .collect()
        })
        .collect()
}

async fn exec(client: &Client, sql: &str) {
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
}

/// Runs `sql` and checks it answered well under the Raft timeout: a statement that waited for a
/// majority would have taken at least that long.
async fn exec_fast(client: &Client, node: u64, sql: &str) {
    let started = Instant::now();
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql} on node {node}: {e:?}"));
    let took = started.elapsed();
    assert!(
        took < RAFT_TIMEOUT / 2,
        "{sql} on node {node} took {took:?}: not well under the raft timeout ({RAFT_TIMEOUT:?})"
    );
}

async fn query_rows(client: &Client, sql: &str) -> Result<Rows, tokio_postgres::Error> {
    Ok(rows(&client.simple_query(sql).await?))
}

/// `weft_table_checksum(table)` as every running node answers it (an error as its SQLSTATE).
async fn checksums(c: &TestCluster, table: &str) -> BTreeMap<u64, String> {
    let sql = format!("SELECT weft_table_checksum('{table}')");
    let mut out = BTreeMap::new();
    for id in c.running() {
        let sum = match query_rows(&c.client(id).await, &sql).await {
            Ok(r) => r
                .first()
                .and_then(|r| r[0].clone())
                .unwrap_or_else(|| "no value".into()),
            Err(e) => format!("error {}", code(&e)),
        };
        out.insert(id, sum);
    }
    out
}

/// Waits until every running node has the same checksum of `table`: the same rows, cells and
/// versions. Once writes have stopped, that means every node has every write (each origin has
/// its own), so it is the convergence test.
async fn wait_converged(c: &TestCluster, table: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let sums = checksums(c, table).await;
        let distinct: BTreeSet<&String> = sums.values().collect();
        if distinct.len() == 1 && sums.values().all(|s| s.len() == 16) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{table} did not converge within {DEADLINE:?}: checksums {sums:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts that `sql` returns `expected` on every running node.
async fn assert_everywhere(c: &TestCluster, sql: &str, expected: &Rows) {
    for id in c.running() {
        let got = query_rows(&c.client(id).await, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql} on node {id}: {e:?}"));
        assert_eq!(&got, expected, "{sql} on node {id}");
    }
}

/// Waits until `sql` returns `expected` on node `id`.
async fn wait_rows(c: &TestCluster, id: u64, sql: &str, expected: &Rows) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let got = query_rows(&c.client(id).await, sql).await;
        if matches!(&got, Ok(r) if r == expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sql} on node {id}: {got:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until node `via` shows `peer` in `weft_nodes` with a status that `want` accepts.
async fn wait_status(
    c: &TestCluster,
    via: u64,
    peer: u64,
    what: &str,
    want: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let m = c.members(via).await;
        let status = m.get(&peer).map(|(_, _, s)| s.clone()).unwrap_or_default();
        if want(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "node {via} never showed node {peer} as {what}: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Waits until the wall clock is two milliseconds on. The nodes share this machine's clock and
/// an HLC version orders by its millisecond first, so a commit that starts after this gets a
/// higher version than every commit acknowledged before it: it is the later commit, whichever
/// node makes it and whether or not the earlier one has reached that node yet.
async fn later() {
    let start = unix_ms();
    while unix_ms() < start + 2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Three nodes update the same rows at once, each its own column and all of them a shared one:
/// every node's own column keeps its last value, the shared one the value of the last commit.
/// Then the same cell is written one node after another: the later commit wins on every node,
/// whatever the node ids; an update followed by a later delete elsewhere leaves the row deleted.
#[tokio::test(flavor = "multi_thread")]
async fn lww_concurrent_writes_merge_per_cell_and_the_later_commit_wins() {
    const ROWS: i32 = 8;
    const ROUNDS: usize = 10;
    let c = TestCluster::start(3, &[]).await;
    exec_retry(
        &c,
        1,
        "CREATE TABLE t (id int PRIMARY KEY, a text, b text, c text, s text) \
         WITH (consistency = 'lww')",
    )
    .await;
    let values: Vec<String> = (1..=ROWS)
        .map(|i| format!("({i}, 'a0', 'b0', 'c0', 's0')"))
        .collect();
    exec(
        &c.client(1).await,
        &format!("INSERT INTO t VALUES {}", values.join(", ")),
    )
    .await;
    wait_converged(&c, "t").await;

    // Node 1 writes a, node 2 b, node 3 c; all three write s; no waiting for one another.
    let mut writers = Vec::new();
    for id in 1..=3u64 {
        let client = c.client(id).await;
        let column = ["a", "b", "c"][id as usize - 1];
        writers.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                for row in 1..=ROWS {
                    let v = format!("n{id}r{round}");
                    let sql = format!("UPDATE t SET {column} = '{v}', s = '{v}' WHERE id = {row}");
                    let n = client
                        .execute(&sql, &[])
                        .await
                        .unwrap_or_else(|e| panic!("{sql} on node {id}: {e:?}"));
                    assert_eq!(n, 1, "{sql} on node {id}");
                }
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    let last: Vec<String> = (1..=3).map(|id| format!("n{id}r{}", ROUNDS - 1)).collect();

    // One cell written on one node after another (replication of the concurrent round may still
    // be under way): the last write wins, in whatever order the nodes wrote.
    let n: BTreeMap<u64, Client> = [
        (1, c.client(1).await),
        (2, c.client(2).await),
        (3, c.client(3).await),
    ]
    .into_iter()
    .collect();
    for (row, order) in [(1, [1u64, 2, 3]), (2, [3, 2, 1]), (3, [2, 3, 1])] {
        for id in order {
            later().await;
            exec(
                &n[&id],
                &format!("UPDATE t SET s = 'seq{id}' WHERE id = {row}"),
            )
            .await;
        }
    }
    // Updated on node 2, deleted later on node 1: deleted.
    exec(&n[&2], "UPDATE t SET b = 'gone' WHERE id = 4").await;
    later().await;
    exec(&n[&1], "DELETE FROM t WHERE id = 4").await;

    wait_converged(&c, "t").await;
    let sql = "SELECT id, a, b, c, s FROM t ORDER BY id";
    let got = query_rows(&n[&1], sql).await.expect("select");
    let ids: Vec<String> = got.iter().filter_map(|r| r[0].clone()).collect();
    let want_ids: Vec<String> = (1..=ROWS)
        .filter(|i| *i != 4)
        .map(|i| i.to_string())
        .collect();
    assert_eq!(
        ids, want_ids,
        "row 4 is deleted, the others are there: {got:?}"
    );
    for r in &got {
        let cell = |i: usize| r[i].clone().unwrap_or_default();
        assert_eq!(
            [cell(1), cell(2), cell(3)],
            [last[0].clone(), last[1].clone(), last[2].clone()],
            "each node's own column keeps its last write: {r:?}"
        );
        let s = cell(4);
        match cell(0).as_str() {
            "1" => assert_eq!(s, "seq3", "{r:?}"),
            "2" | "3" => assert_eq!(s, "seq1", "{r:?}"),
            _ => assert!(
                last.contains(&s),
                "the shared column holds one node's last write: {r:?}"
            ),
        }
    }
    assert_everywhere(&c, sql, &got).await;
}

/// Node 3 is cut off from both others. It keeps accepting lww writes, in autocommit and in a
/// transaction block, and answers at once; a raft write there fails. The majority writes the
/// same rows. After healing every node has, per cell, the later of the two sides' writes.
#[tokio::test(flavor = "multi_thread")]
async fn lww_partitioned_node_keeps_accepting_writes_and_merges_after_heal() {
    let c = TestCluster::start(3, &[]).await;
    exec_retry(
        &c,
        1,
        "CREATE TABLE kv (id int PRIMARY KEY, a text, b text) WITH (consistency = 'lww')",
    )
    .await;
    exec_retry(&c, 1, "CREATE TABLE r (id int PRIMARY KEY)").await;
    let m1 = c.client(1).await;
    let m2 = c.client(2).await;
    exec(
        &m1,
        "INSERT INTO kv VALUES (1, 'a0', 'b0'), (2, 'a0', 'b0'), (3, 'a0', 'b0'), \
         (4, 'a0', 'b0'), (5, 'a0', 'b0')",
    )
    .await;
    // Node 3 has the rows, hence a catalog with both tables (it applies an entry only with the
    // catalog it was written against).
    wait_converged(&c, "kv").await;

    c.isolate(3).await;
    let p = c.client(3).await;
    // Row 1, cell a: the cut-off node first, the majority later: the majority wins.
    exec_fast(&p, 3, "UPDATE kv SET a = 'p' WHERE id = 1").await;
    later().await;
    exec(&m1, "UPDATE kv SET a = 'm' WHERE id = 1").await;
    // Row 2, cell b: the majority first, the cut-off node later, in a block: it wins.
    exec(&m1, "UPDATE kv SET b = 'm' WHERE id = 2").await;
    later().await;
    exec_fast(
        &p,
        3,
        "BEGIN; UPDATE kv SET b = 'p' WHERE id = 2; INSERT INTO kv VALUES (30, 'p', 'p'); COMMIT",
    )
    .await;
    // Row 3: different cells on the two sides: both kept.
    exec_fast(&p, 3, "UPDATE kv SET a = 'p' WHERE id = 3").await;
    exec(&m2, "UPDATE kv SET b = 'm' WHERE id = 3").await;
    // Row 4: deleted on the cut-off node, one cell written later by the majority: the row is
    // back with that cell; its other cells are older than the delete and read NULL.
    exec_fast(&p, 3, "DELETE FROM kv WHERE id = 4").await;
    later().await;
    exec(&m1, "UPDATE kv SET a = 'm' WHERE id = 4").await;
    // Row 5: written by the majority, deleted later on the cut-off node: deleted.
    exec(&m2, "UPDATE kv SET b = 'm' WHERE id = 5").await;
    later().await;
    exec_fast(&p, 3, "DELETE FROM kv WHERE id = 5").await;
    exec(&m2, "INSERT INTO kv VALUES (20, 'm', NULL)").await;

    // The cut-off node reads its own writes (lww reads are local), in a block too.
    let sql = "SELECT id, a, b FROM kv ORDER BY id";
    let mine = table(&[
        &["1", "p", "b0"],
        &["2", "a0", "p"],
        &["3", "p", "b0"],
        &["30", "p", "p"],
    ]);
    assert_eq!(query_rows(&p, sql).await.expect("local read"), mine);
    assert_eq!(
        query_rows(&p, "BEGIN; SELECT count(*) FROM kv; COMMIT")
            .await
            .expect("read in a block"),
        table(&[&["4"]])
    );
    // A raft table cannot be written there: no majority.
    let started = Instant::now();
    let e = p
        .batch_execute("INSERT INTO r VALUES (1)")
        .await
        .expect_err("a raft write on a node cut off from the majority");
    assert!(["40001", "40003"].contains(&code(&e).as_str()), "{e:?}");
    assert!(
        started.elapsed() < RAFT_TIMEOUT * 5,
        "the raft write took {:?}",
        started.elapsed()
    );
    // ... while lww writes go on, on the same connection.
    exec_fast(&p, 3, "UPDATE kv SET b = 'p2' WHERE id = 30").await;

    c.heal().await;
    wait_converged(&c, "kv").await;
    let expected = table(&[
        &["1", "m", "b0"],
        &["2", "a0", "p"],
        &["3", "p", "m"],
        &["4", "m", "NULL"],
        &["20", "m", "NULL"],
        &["30", "p", "p2"],
    ]);
    assert_everywhere(&c, sql, &expected).await;
}

type Acked = Arc<parking_lot::Mutex<BTreeMap<u64, Vec<i64>>>>;

async fn wait_acked(acked: &Acked, id: u64, n: usize, when: &str) {
    let deadline = Instant::now() + DEADLINE;
    while acked.lock().get(&id).map_or(0, Vec::len) < n {
        assert!(
            Instant::now() < deadline,
            "{when}: node {id} acknowledged fewer than {n} writes within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Nodes 1 and 3 insert rows in a loop; node 3 is killed (-9) and restarted while node 1 goes on.
/// Afterwards every node has every acknowledged insert, node 3's own included.
#[tokio::test(flavor = "multi_thread")]
async fn lww_node_killed_mid_stream_and_restarted_loses_no_acknowledged_write() {
    let mut c = TestCluster::start(3, &[]).await;
    exec_retry(
        &c,
        1,
        "CREATE TABLE ev (id bigint PRIMARY KEY, node int) WITH (consistency = 'lww')",
    )
    .await;
    // Every node knows the table (an unknown table has no checksum).
    wait_converged(&c, "ev").await;

    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(1));
    let acked: Acked = Arc::default();
    let mut writers = Vec::new();
    for id in [1u64, 3] {
        let conn = c.nodes[&id].conn_string();
        let (stop, next, acked) = (stop.clone(), next.clone(), acked.clone());
        writers.push(spawn_inserter(
            conn,
            "ev",
            id,
            stop,
            next,
            (acked, id, Vec::new()),
            |(acked, id, failures), k, r| match r {
                Ok(_) => acked.lock().entry(*id).or_default().push(k),
                Err(e) => failures.push(format!("insert {k}: {e:?}")),
            },
        ));
    }
    let acked_by = |id: u64| acked.lock().get(&id).map_or(0, Vec::len);
    wait_acked(&acked, 1, 30, "before the kill").await;
    wait_acked(&acked, 3, 30, "before the kill").await;
    c.kill(3).await;
    wait_acked(&acked, 1, acked_by(1) + 50, "while node 3 is down").await;
    c.restart(3, &[]).await;
    wait_acked(&acked, 3, acked_by(3) + 30, "after node 3's restart").await;
    wait_acked(&acked, 1, acked_by(1) + 30, "after node 3's restart").await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let (_, _, failures) = w.await.expect("writer");
        assert!(failures.is_empty(), "lww inserts failed: {failures:?}");
    }

    wait_converged(&c, "ev").await;
    let acked: Vec<(u64, i64)> = acked
        .lock()
        .iter()
        .flat_map(|(node, keys)| keys.iter().map(|k| (*node, *k)))
        .collect();
    for id in 1..=3 {
        let client = c.client(id).await;
        let have: HashSet<i64> = client
            .query("SELECT id FROM ev", &[])
            .await
            .expect("select")
            .iter()
            .map(|r| r.get::<_, i64>(0))
            .collect();
        let missing: Vec<&(u64, i64)> = acked.iter().filter(|(_, k)| !have.contains(k)).collect();
        assert!(
            missing.is_empty(),
            "node {id} misses acknowledged inserts (writer node, key): {missing:?}"
        );
    }
}

/// With `--lww-log-retain 20`, node 3 is cut off while node 1 commits 200 rows: node 1 purges
/// its log past node 3's position, so after healing node 3 catches up by full sync, and its
/// live query pushes `{"op":"reset"}`.
#[tokio::test(flavor = "multi_thread")]
async fn lww_node_behind_the_retained_log_catches_up_by_full_sync_and_pushes_reset() {
    let extra = ["--lww-log-retain", "20"];
    let c = TestCluster::start(3, &extra).await;
    exec_retry(
        &c,
        1,
        "CREATE TABLE big (id int PRIMARY KEY, v text) WITH (consistency = 'lww')",
    )
    .await;
    exec_retry(&c, 1, "CREATE LIVE QUERY big_all AS SELECT id, v FROM big").await;
    let (listener, mut rx) = connect_str_with_messages(&c.nodes[&3].conn_string()).await;
    listener
        .batch_execute("LISTEN big_all")
        .await
        .expect("listen");
    let w = c.client(1).await;
    exec(&w, "INSERT INTO big VALUES (1, 'a'), (2, 'a'), (3, 'a')").await;
    // Replicated rows are pushed on node 3 as usual.
    for _ in 0..3 {
        let (_, v) = next_payload(&mut rx, "a replicated insert").await;
        assert_eq!(v["op"], "insert", "{v}");
    }
    wait_converged(&c, "big").await;

    c.isolate(3).await;
    for i in 100..300 {
        w.execute("INSERT INTO big VALUES ($1, 'x')", &[&i])
            .await
            .expect("insert on node 1");
    }
    exec(
        &w,
        "UPDATE big SET v = 'b' WHERE id = 1; DELETE FROM big WHERE id = 2",
    )
    .await;
    wait_log(&c.nodes[&1].log, "full sync ahead peer=3").await;
    // Node 3 writes while cut off too; that reaches the others through its own log.
    let p = c.client(3).await;
    exec_fast(&p, 3, "INSERT INTO big VALUES (1000, 'p')").await;

    c.heal().await;
    wait_log(&c.nodes[&3].log, "lww full sync done origin=1").await;
    wait_converged(&c, "big").await;
    assert_everywhere(&c, "SELECT count(*) FROM big", &table(&[&["203"]])).await;
    assert_everywhere(
        &c,
        "SELECT id, v FROM big WHERE id < 100 OR id >= 1000 ORDER BY id",
        &table(&[&["1", "b"], &["3", "a"], &["1000", "p"]]),
    )
    .await;
    // The live query on node 3 was told to start over (its own insert may come first).
    loop {
        let (channel, v) = next_payload(&mut rx, "a reset after the full sync").await;
        assert_eq!(channel, "big_all");
        if v["op"] == "reset" {
            break;
        }
        assert_eq!(
            v["row"]["id"], 1000,
            "only node 3's own insert precedes the reset: {v}"
        );
    }
    // Changes after the full sync are pushed as usual.
    exec(&w, "INSERT INTO big VALUES (2000, 'after')").await;
    loop {
        let (_, v) = next_payload(&mut rx, "the insert after the full sync").await;
        if v["op"] == "insert" && v["row"]["id"] == 2000 {
            assert_eq!(v["row"]["v"], "after", "{v}");
            break;
        }
        assert_eq!(
            v["op"], "reset",
            "only resets (node 2 may sync too) come first: {v}"
        );
    }
}

/// Node 3's clock runs 5s ahead: nodes 1 and 2 refuse its writes and say so in `weft_nodes`;
/// once its clock is back and the write's timestamp is no longer ahead, they take it.
#[tokio::test(flavor = "multi_thread")]
async fn lww_writes_from_a_node_whose_clock_is_ahead_are_refused_until_it_is_not() {
    let c = TestCluster::start(3, &[]).await;
    exec_retry(
        &c,
        1,
        "CREATE TABLE sk (id int PRIMARY KEY, v text) WITH (consistency = 'lww')",
    )
    .await;
    let n3 = c.client(3).await;
    exec(&n3, "INSERT INTO sk VALUES (1, 'in time')").await;
    wait_converged(&c, "sk").await;

    exec(&n3, "SELECT weft_fault('clock_skew', '5s')").await;
    exec(&n3, "INSERT INTO sk VALUES (2, 'ahead')").await;
    let written = Instant::now();
    for id in [1, 2] {
        let status = wait_status(&c, id, 3, "refused", |s| s.starts_with("refused")).await;
        assert!(
            status.contains("clock") && status.contains("ahead"),
            "node {id}: {status}"
        );
    }
    for id in [1, 2] {
        let n = count(&c.client(id).await, "SELECT count(*) FROM sk WHERE id = 2").await;
        assert_eq!(
            n,
            0,
            "node {id} took a write 5s ahead of its clock ({:?} after it)",
            written.elapsed()
        );
    }
    // Only node 3's entries are refused: node 1's reach node 3.
    exec(&c.client(1).await, "INSERT INTO sk VALUES (3, 'from 1')").await;
    wait_rows(
        &c,
        3,
        "SELECT v FROM sk WHERE id = 3",
        &table(&[&["from 1"]]),
    )
    .await;

    exec(&n3, "SELECT weft_fault('clock_skew', '0')").await;
    for id in [1, 2] {
        wait_status(&c, id, 3, "ok", |s| s == "ok").await;
    }
    // Not before the clocks reached the write's timestamp, less the tolerated offset (500ms).
    assert!(
        written.elapsed() >= Duration::from_secs(3),
        "the write 5s ahead was taken after {:?}",
        written.elapsed()
    );
    wait_converged(&c, "sk").await;
    assert_everywhere(
        &c,
        "SELECT id, v FROM sk ORDER BY id",
        &table(&[&["1", "in time"], &["2", "ahead"], &["3", "from 1"]]),
    )
    .await;
}

/// A live query on node 2 pushes an insert made on node 1, an update made on node 3 and a
/// delete made on node 1, as they are replicated to node 2.
#[tokio::test(flavor = "multi_thread")]
async fn lww_live_query_on_one_node_pushes_changes_written_on_others() {
    let c = TestCluster::start(3, &[]).await;
    exec_retry(
        &c,
        1,
        "CREATE TABLE lv (id int PRIMARY KEY, v text) WITH (consistency = 'lww')",
    )
    .await;
    exec_retry(&c, 2, "CREATE LIVE QUERY lv_all AS SELECT id, v FROM lv").await;
    let (listener, mut rx) = connect_str_with_messages(&c.nodes[&2].conn_string()).await;
    listener
        .batch_execute("LISTEN lv_all")
        .await
        .expect("listen");

    let n1 = c.client(1).await;
    exec(&n1, "INSERT INTO lv VALUES (1, 'a')").await;
    let (channel, v) = next_payload(&mut rx, "the insert made on node 1").await;
    assert_eq!(channel, "lv_all");
    assert_eq!(v["op"], "insert", "{v}");
    assert_eq!(v["row"], json!({"id": 1, "v": "a"}), "{v}");

    wait_rows(&c, 3, "SELECT v FROM lv WHERE id = 1", &table(&[&["a"]])).await;
    exec(&c.client(3).await, "UPDATE lv SET v = 'b' WHERE id = 1").await;
    let (_, v) = next_payload(&mut rx, "the update made on node 3").await;
    assert_eq!(v["op"], "update", "{v}");
    assert_eq!(v["old"], json!({"id": 1, "v": "a"}), "{v}");
    assert_eq!(v["row"], json!({"id": 1, "v": "b"}), "{v}");

    // Node 1 deletes once it has the update, so the delete is the later write.
    wait_rows(&c, 1, "SELECT v FROM lv WHERE id = 1", &table(&[&["b"]])).await;
    exec(&n1, "DELETE FROM lv WHERE id = 1").await;
    let (_, v) = next_payload(&mut rx, "the delete made on node 1").await;
    assert_eq!(v["op"], "delete", "{v}");
    assert_eq!(v["old"], json!({"id": 1, "v": "b"}), "{v}");
}

/// On every node, a transaction that writes an lww table and a raft table fails with 0A000 and
/// leaves nothing behind; each kind alone commits.
#[tokio::test(flavor = "multi_thread")]
async fn lww_and_raft_writes_in_one_transaction_fail_with_0a000() {
    let c = TestCluster::start(3, &[]).await;
    exec_retry(
        &c,
        1,
        "CREATE TABLE lw (id int PRIMARY KEY, v text) WITH (consistency = 'lww')",
    )
    .await;
    exec_retry(&c, 1, "CREATE TABLE rf (id int PRIMARY KEY, v text)").await;
    for id in 1..=3u64 {
        let cl = c.client(id).await;
        for sql in [
            format!(
                "BEGIN; INSERT INTO lw VALUES ({id}, 'x'); INSERT INTO rf VALUES ({id}, 'x'); \
                 COMMIT"
            ),
            format!(
                "BEGIN; INSERT INTO rf VALUES ({0}, 'x'); INSERT INTO lw VALUES ({0}, 'x'); \
                 COMMIT",
                id + 10
            ),
        ] {
            let e = cl.batch_execute(&sql).await.expect_err(&sql);
            assert_eq!(code(&e), "0A000", "{sql} on node {id}: {e:?}");
            // The block is over (a ROLLBACK only warns) and the session goes on.
            exec(&cl, "ROLLBACK").await;
        }
        let k = id + 100;
        exec(
            &cl,
            &format!(
                "BEGIN; INSERT INTO lw VALUES ({k}, 'ok'); UPDATE lw SET v = 'ok2' WHERE id = {k}; \
                 COMMIT"
            ),
        )
        .await;
        exec_retry(&c, id, &format!("INSERT INTO rf VALUES ({k}, 'ok')")).await;
    }
    wait_converged(&c, "lw").await;
    assert_everywhere(
        &c,
        "SELECT id, v FROM lw ORDER BY id",
        &table(&[&["101", "ok2"], &["102", "ok2"], &["103", "ok2"]]),
    )
    .await;
    assert_everywhere(
        &c,
        "SELECT id, v FROM rf ORDER BY id",
        &table(&[&["101", "ok"], &["102", "ok"], &["103", "ok"]]),
    )
    .await;
}
