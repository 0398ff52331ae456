//! Cluster tests of Raft tables: bootstrap and join, follower reads, failover, partitions,
//! snapshots, live queries across nodes. The harness (real `weft` processes, kill -9, restart,
//! `weft_fault`) is in `nodes`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::NoTls;

use super::nodes::{
    code, count, exec_retry, next_payload, read_log, spawn_inserter, wait_log, TestCluster,
};
use super::support::{connect_str_with_messages, rows, DEADLINE};

#[tokio::test(flavor = "multi_thread")]
async fn bootstrap_join_ddl_everywhere_and_follower_reads_are_linearizable() {
    let c = TestCluster::start(3, &[]).await;
    // Every node sees the same three voters and one leader.
    for id in 1..=3 {
        let m = c.members(id).await;
        assert_eq!(m.len(), 3, "{m:?}");
        assert_eq!(
            m.values().filter(|(r, ..)| r == "leader").count(),
            1,
            "{m:?}"
        );
    }
    let leader = c.leader(1).await.expect("leader");
    let followers: Vec<u64> = (1..=3).filter(|i| *i != leader).collect();
    let (f1, f2) = (followers[0], followers[1]);

    // DDL on a follower exists on every node at once.
    let a = c.client(f1).await;
    a.batch_execute("CREATE TABLE acct (id int PRIMARY KEY, balance int NOT NULL)")
        .await
        .expect("create on a follower");
    for id in 1..=3 {
        let cl = c.client(id).await;
        assert_eq!(count(&cl, "SELECT count(*) FROM acct").await, 0);
    }
    // A write on one follower is visible on the other follower immediately.
    let b = c.client(f2).await;
    for i in 0..20 {
        a.execute("INSERT INTO acct VALUES ($1, 100)", &[&i])
            .await
            .expect("insert on a follower");
        let seen = count(&b, &format!("SELECT count(*) FROM acct WHERE id = {i}")).await;
        assert_eq!(
            seen, 1,
            "row {i} written on node {f1} not seen on node {f2}"
        );
    }
    // CREATE TABLE … AS and COMMENT ON on one follower: table, rows and comment on every node.
    a.batch_execute(
        "CREATE TABLE acct_copy AS SELECT id, balance FROM acct WHERE id < 5; \
         COMMENT ON TABLE acct_copy IS 'five accounts'",
    )
    .await
    .expect("create table as on a follower");
    for id in 1..=3 {
        let cl = c.client(id).await;
        assert_eq!(count(&cl, "SELECT count(*) FROM acct_copy").await, 5);
        let comment = cl
            .query_one(
                "SELECT obj_description('acct_copy'::regclass, 'pg_class')",
                &[],
            )
            .await
            .expect("comment")
            .get::<_, Option<String>>(0);
        assert_eq!(comment.as_deref(), Some("five accounts"), "node {id}");
    }
    // Conflicts are decided by the state machine: one of two concurrent updates fails 40001.
    let t1 = c.client(f1).await;
    let t2 = c.client(f2).await;
    t1.batch_execute("BEGIN; UPDATE acct SET balance = 1 WHERE id = 0")
        .await
        .expect("t1");
    t2.batch_execute("BEGIN; UPDATE acct SET balance = 2 WHERE id = 0")
        .await
        .expect("t2");
    t1.batch_execute("COMMIT")
        .await
        .expect("first committer wins");
    let e = t2
        .batch_execute("COMMIT")
        .await
        .expect_err("second committer loses");
    assert_eq!(code(&e), "40001", "{e:?}");
    assert_eq!(
        count(
            &c.client(leader).await,
            "SELECT balance::bigint FROM acct WHERE id = 0"
        )
        .await,
        1
    );
    // READ COMMITTED on a follower: each statement sees what committed on any node before it
    // (the read barrier), and rows first written by a later statement commit although they
    // changed after the block's first snapshot.
    let rc = c.client(f2).await;
    rc.batch_execute(
        "BEGIN ISOLATION LEVEL READ COMMITTED; UPDATE acct SET balance = balance + 1 WHERE id = 1",
    )
    .await
    .expect("a read committed block");
    a.execute("INSERT INTO acct VALUES (100, 7)", &[])
        .await
        .expect("insert on the other follower");
    assert_eq!(
        count(&rc, "SELECT count(*) FROM acct WHERE id = 100").await,
        1
    );
    rc.batch_execute("UPDATE acct SET balance = balance + 1 WHERE id = 100; COMMIT")
        .await
        .expect("the block commits");
    assert_eq!(
        count(
            &c.client(leader).await,
            "SELECT sum(balance)::bigint FROM acct WHERE id IN (1, 100)"
        )
        .await,
        109
    );
    // A local read skips the barrier: it sees the update once this replica has applied it.
    let l = c.client(f2).await;
    l.batch_execute("SET weft.read_consistency = 'local'")
        .await
        .expect("set local");
    let deadline = Instant::now() + DEADLINE;
    while count(&l, "SELECT balance::bigint FROM acct WHERE id = 0").await != 1 {
        assert!(
            Instant::now() < deadline,
            "the local replica never applied the update"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let e = l
        .batch_execute("SET weft.read_consistency = 'sometimes'")
        .await
        .expect_err("not a read consistency");
    assert_eq!(code(&e), "22023", "{e:?}");

    // Bad cluster-function input gets a clear error, and the connection stays usable.
    for (sql, want) in [
        ("SELECT weft_fault('bogus', '')", "55000"),
        ("SELECT weft_fault('partition', 'two')", "55000"),
        ("SELECT weft_remove_node(9)", "55000"),
        ("SELECT weft_remove_node(0)", "22023"),
    ] {
        let e = a.batch_execute(sql).await.expect_err(sql);
        assert_eq!(code(&e), want, "{sql}: {e:?}");
    }
    assert_eq!(count(&a, "SELECT count(*) FROM weft_nodes").await, 3);
}

/// In-process nodes: a standalone node shows itself alone in `weft_nodes` and refuses the
/// cluster functions; a one-node cluster without `--fault-injection` refuses `weft_fault`; a data
/// directory that belongs to a cluster does not start standalone.
#[tokio::test(flavor = "multi_thread")]
async fn cluster_functions_outside_a_cluster_and_a_cluster_directory_started_standalone() {
    let standalone = weft::server::TestServer::start().await.expect("starts");
    let s = super::support::connect(&standalone).await;
    let rows = rows(
        &s.simple_query("SELECT node_id, role, voter, status FROM weft_nodes")
            .await
            .expect("weft_nodes"),
    );
    let one = |v: &str| Some(v.to_string());
    assert_eq!(
        rows,
        vec![vec![one("1"), one("leader"), one("t"), one("ok")]]
    );
    for sql in [
        "SELECT weft_remove_node(2)",
        "SELECT weft_fault('heal', '')",
    ] {
        let e = s.batch_execute(sql).await.expect_err(sql);
        assert_eq!(code(&e), "55000", "{sql}: {e:?}");
    }
    standalone.shutdown().await.expect("shutdown");

    let dir = tempfile::tempdir().expect("tempdir");
    let node = weft::server::TestServer::start_with(dir.path(), |c| {
        c.peer_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    })
    .await
    .expect("a one-node cluster starts");
    let n = super::support::connect(&node).await;
    n.batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await
        .expect("writes through Raft");
    let e = n
        .batch_execute("SELECT weft_fault('heal', '')")
        .await
        .expect_err("fault injection is off");
    assert_eq!(code(&e), "55000", "{e:?}");
    assert!(
        e.to_string().contains("--fault-injection")
            || format!("{e:?}").contains("--fault-injection"),
        "{e:?}"
    );
    node.shutdown().await.expect("shutdown");
    match weft::server::TestServer::start_in(dir.path()).await {
        Ok(_) => panic!("a cluster data directory started without --peer-listen"),
        Err(e) => assert!(e.to_string().contains("--peer-listen"), "{e}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn leader_killed_under_writes_then_restarted_loses_nothing() {
    let mut c = TestCluster::start(3, &[]).await;
    exec_retry(&c, 1, "CREATE TABLE t (id bigint PRIMARY KEY, node int)").await;
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(1));
    let acked = Arc::new(parking_lot::Mutex::new(Vec::<i64>::new()));
    let mut writers = Vec::new();
    for id in 1..=3u64 {
        let conn = c.nodes[&id].conn_string();
        let (stop, next, acked) = (stop.clone(), next.clone(), acked.clone());
        writers.push(spawn_inserter(
            conn,
            "t",
            id,
            stop,
            next,
            (acked, BTreeMap::<String, u64>::new()),
            |(acked, outcomes), k, r| match r {
                Ok(_) => acked.lock().push(k),
                Err(e) => *outcomes.entry(code(&e)).or_default() += 1,
            },
        ));
    }
    // Let some writes land, then kill the leader.
    let deadline = Instant::now() + DEADLINE;
    while acked.lock().len() < 50 {
        assert!(Instant::now() < deadline, "no writes were acknowledged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let old = c.leader(1).await.expect("leader");
    c.kill(old).await;
    let survivors: Vec<u64> = c.running();
    let new = c.wait_leader_among(&survivors).await;
    assert_ne!(new, old);
    // Writes go on through the survivors.
    let before = acked.lock().len();
    let deadline = Instant::now() + DEADLINE;
    while acked.lock().len() < before + 50 {
        assert!(
            Instant::now() < deadline,
            "writes did not resume after the leader died"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.restart(old, &[]).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let (_, outcomes) = w.await.expect("writer");
        for code in outcomes.keys() {
            assert!(
                ["40001", "40003", "57P01"].contains(&code.as_str()),
                "unexpected error {code} during failover: {outcomes:?}"
            );
        }
    }
    // Every acknowledged insert is on every node, including the restarted one.
    let acked: Vec<i64> = acked.lock().clone();
    for id in 1..=3 {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let client = c.client(id).await;
            match client.query("SELECT id FROM t", &[]).await {
                Ok(rows) => {
                    let have: std::collections::HashSet<i64> =
                        rows.iter().map(|r| r.get::<_, i64>(0)).collect();
                    let missing: Vec<&i64> = acked.iter().filter(|k| !have.contains(k)).collect();
                    if missing.is_empty() {
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "node {id} misses acknowledged rows {missing:?}"
                    );
                }
                Err(e) => assert!(Instant::now() < deadline, "node {id}: {e:?}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn partitioned_leader_cannot_commit_and_the_majority_goes_on() {
    let c = TestCluster::start(3, &[]).await;
    exec_retry(&c, 1, "CREATE TABLE p (id int PRIMARY KEY)").await;
    let old = c.leader(1).await.expect("leader");
    let others: Vec<u64> = (1..=3).filter(|i| *i != old).collect();
    let on_old = c.client(old).await;
    let list = others
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    on_old
        .batch_execute(&format!("SELECT weft_fault('partition', '{list}')"))
        .await
        .expect("partition the leader");
    for id in &others {
        c.client(*id)
            .await
            .batch_execute(&format!("SELECT weft_fault('partition', '{old}')"))
            .await
            .expect("partition from the leader");
    }
    // The old leader cannot commit: it fails within the raft timeout, it does not hang.
    let started = Instant::now();
    let e = on_old
        .batch_execute("INSERT INTO p VALUES (1)")
        .await
        .expect_err("a minority must not commit");
    assert!(["40001", "40003"].contains(&code(&e).as_str()), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    // An explicit statement_timeout ends the wait first, as in PostgreSQL.
    on_old
        .batch_execute("SET statement_timeout = '300ms'")
        .await
        .expect("set statement_timeout");
    let e2 = on_old
        .batch_execute("INSERT INTO p VALUES (3)")
        .await
        .expect_err("a minority must not commit");
    assert_eq!(code(&e2), "57014", "{e2:?}");
    // The majority elects a leader and accepts writes.
    let new = c.wait_leader_among(&others).await;
    exec_retry(&c, new, "INSERT INTO p VALUES (2)").await;
    // Heal: everyone converges on the majority's history; the minority's write is not there.
    for id in 1..=3 {
        c.client(id)
            .await
            .batch_execute("SELECT weft_fault('heal', '')")
            .await
            .expect("heal");
    }
    // Everyone converges on the majority's history. The minority's insert answered 40001 or
    // 40003; with 40003 it may still commit after healing (it was in the old leader's log), and
    // then it is on every node.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut seen = Vec::new();
        for id in 1..=3 {
            match c
                .client(id)
                .await
                .query("SELECT id FROM p ORDER BY id", &[])
                .await
            {
                Ok(rows) => seen.push(rows.iter().map(|r| r.get::<_, i32>(0)).collect::<Vec<_>>()),
                Err(e) => seen.push(vec![-1, code(&e).len() as i32]),
            }
        }
        // Inserts 1 and 3 may have committed after healing (their outcome was unknown).
        let converged = seen.windows(2).all(|w| w[0] == w[1])
            && seen[0].contains(&2)
            && (seen[0].contains(&1) <= (code(&e) == "40003"))
            && seen[0].iter().all(|v| [1, 2, 3].contains(v));
        if converged {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nodes did not converge: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fourth_node_joins_by_snapshot_and_a_node_is_removed() {
    let extra = ["--raft-snapshot-logs", "20"];
    let mut c = TestCluster::start(3, &extra).await;
    exec_retry(&c, 1, "CREATE TABLE s (id int PRIMARY KEY, v text)").await;
    let writer = c.client(1).await;
    for i in 0..200 {
        writer
            .execute("INSERT INTO s VALUES ($1, 'x')", &[&i])
            .await
            .expect("insert");
    }
    // Node 4 joins after the log was snapshotted and purged: it must install a snapshot.
    let seed = c.nodes[&1].peer.clone();
    c.add(4, Some(&seed), &extra).await;
    c.wait_voters(4).await;
    let four = c.client(4).await;
    match four.query_one("SELECT count(*) FROM s", &[]).await {
        Ok(r) => assert_eq!(r.get::<_, i64>(0), 200),
        Err(e) => panic!("{e:?}; node 4 log: {}", read_log(&c.nodes[&4].log)),
    }
    wait_log(&c.nodes[&4].log, "installed a snapshot").await;
    // Remove node 2 (or the leader: it hands over first).
    let leader = c.leader(1).await.expect("leader");
    let via = (1..=4).find(|i| *i != leader).expect("a follower");
    c.client(via)
        .await
        .batch_execute(&format!("SELECT weft_remove_node({leader})"))
        .await
        .expect("remove the leader");
    let remaining: Vec<u64> = (1..=4).filter(|i| *i != leader).collect();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let m = c.members(remaining[0]).await;
        if !m.contains_key(&leader) && m.len() == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node {leader} still a member: {m:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    exec_retry(&c, remaining[1], "INSERT INTO s VALUES (1000, 'after')").await;
    c.kill(leader).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn listen_on_one_node_sees_live_query_changes_committed_through_another() {
    let c = TestCluster::start(3, &[]).await;
    exec_retry(&c, 1, "CREATE TABLE lq (id int PRIMARY KEY, v text)").await;
    exec_retry(&c, 2, "CREATE LIVE QUERY lq_all AS SELECT id, v FROM lq").await;
    let (listener, mut rx) = connect_str_with_messages(&c.nodes[&3].conn_string()).await;
    listener
        .batch_execute("LISTEN lq_all")
        .await
        .expect("listen");
    let writer = c.client(1).await;
    writer
        .batch_execute("INSERT INTO lq VALUES (1, 'a'); UPDATE lq SET v = 'b' WHERE id = 1")
        .await
        .expect("writes on node 1");
    let mut ops = Vec::new();
    for _ in 0..2 {
        let (channel, v) = next_payload(&mut rx, "a live query change").await;
        assert_eq!(channel, "lq_all");
        ops.push(v["op"].as_str().unwrap_or_default().to_string());
    }
    assert_eq!(ops, ["insert", "update"]);
}

/// SIGTERM stops every node cleanly while Raft, LWW replication and the fan-out are busy, and
/// the whole cluster comes back with its data. A node that still closed its database while the
/// process exited used to abort ("pthread lock: Invalid argument", exit 134).
#[tokio::test(flavor = "multi_thread")]
async fn nodes_stopped_by_sigterm_exit_cleanly_and_the_cluster_restarts() {
    let mut c = TestCluster::start(3, &[]).await;
    exec_retry(&c, 1, "CREATE TABLE sr (id int PRIMARY KEY, v text)").await;
    exec_retry(
        &c,
        1,
        "CREATE TABLE sl (id int PRIMARY KEY, v text) WITH (consistency = 'lww')",
    )
    .await;
    exec_retry(&c, 1, "CREATE LIVE QUERY sr_all AS SELECT id, v FROM sr").await;
    let (listener, mut rx) = connect_str_with_messages(&c.nodes[&2].conn_string()).await;
    listener
        .batch_execute("LISTEN sr_all")
        .await
        .expect("listen");
    for id in 1..=3u64 {
        let client = c.client(id).await;
        client
            .batch_execute(&format!(
                "INSERT INTO sr SELECT g, 'r' FROM generate_series({a}, {b}) g; \
                 INSERT INTO sl SELECT g, 'l' FROM generate_series({a}, {b}) g",
                a = id * 100,
                b = id * 100 + 49
            ))
            .await
            .unwrap_or_else(|e| panic!("writes on node {id}: {e:?}"));
    }
    // The listener on node 2 is being pushed to when the nodes stop.
    next_payload(&mut rx, "a live query change").await;
    for id in [3, 2, 1] {
        let status = c.stop(id).await;
        let log = read_log(&c.nodes[&id].log);
        assert!(
            status.success(),
            "node {id} exits cleanly on SIGTERM: {status:?}; log tail: {}",
            log.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
        );
        assert!(
            !log.contains("pthread") && !log.contains("panicked"),
            "node {id}'s log: {log}"
        );
    }
    for id in 1..=3 {
        c.restart(id, &[]).await;
    }
    c.wait_voters(3).await;
    let deadline = Instant::now() + DEADLINE;
    for id in 1..=3u64 {
        for table in ["sr", "sl"] {
            let sql = format!("SELECT count(*) FROM {table}");
            loop {
                // A restarted node serves reads once it has caught up with the log; lww rows
                // are local and already there.
                let n = match c.client(id).await.query_one(sql.as_str(), &[]).await {
                    Ok(row) => row.get::<_, i64>(0),
                    Err(_) => -1,
                };
                if n == 150 {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {id} has {n} rows in {table} after the restart, not 150"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A node that catches up by snapshot (here a new node, held off until the log was purged)
/// pushes `{"op":"reset"}` to its live-query listeners, and positions before the snapshot
/// answer 55000.
#[tokio::test(flavor = "multi_thread")]
async fn snapshot_install_pushes_reset_and_old_positions_are_gone() {
    let extra = ["--raft-snapshot-logs", "20"];
    let mut c = TestCluster::start(3, &extra).await;
    exec_retry(&c, 1, "CREATE TABLE r (id int PRIMARY KEY)").await;
    exec_retry(&c, 1, "CREATE LIVE QUERY r_all AS SELECT id FROM r").await;
    let w = c.client(1).await;
    for i in 1..=100 {
        w.execute("INSERT INTO r VALUES ($1)", &[&i])
            .await
            .expect("insert");
    }
    // Members refuse node 4 until its listener is in place.
    for id in 1..=3 {
        c.client(id)
            .await
            .batch_execute("SELECT weft_fault('partition', '4')")
            .await
            .expect("partition");
    }
    let seed = c.nodes[&1].peer.clone();
    c.add(4, Some(&seed), &extra).await;
    let (listener, mut rx) = connect_str_with_messages(&c.nodes[&4].conn_string()).await;
    listener
        .batch_execute("LISTEN r_all")
        .await
        .expect("listen");
    for id in 1..=3 {
        c.client(id)
            .await
            .batch_execute("SELECT weft_fault('heal', '')")
            .await
            .expect("heal");
    }
    // Notifications before the reset (none are expected) are skipped.
    while next_payload(&mut rx, "a reset").await.1["op"] != "reset" {}
    wait_log(&c.nodes[&4].log, "installed a snapshot").await;
    assert_eq!(count(&listener, "SELECT count(*) FROM r").await, 100);
    let e = listener
        .query("SELECT * FROM weft_changes('r_all', 0)", &[])
        .await
        .expect_err("positions before the snapshot are gone");
    assert_eq!(code(&e), "55000", "{e:?}");
    // Changes after the snapshot are pushed as usual.
    w.execute("INSERT INTO r VALUES (101)", &[])
        .await
        .expect("insert");
    let (_, v) = next_payload(&mut rx, "the insert after the snapshot").await;
    assert_eq!(v["op"], "insert", "{v}");
    assert_eq!(v["row"]["id"], 101, "{v}");
}

/// Transfers between accounts from every node while the leader is killed and restarted and a
/// follower is partitioned and healed: the total never changes and every acknowledged transfer
/// is there at the end, on every node.
#[tokio::test(flavor = "multi_thread")]
async fn bank_transfers_survive_kills_and_partitions() {
    const ACCOUNTS: i32 = 8;
    let mut c = TestCluster::start(3, &[]).await;
    exec_retry(
        &c,
        1,
        "CREATE TABLE bank (id int PRIMARY KEY, balance bigint NOT NULL); \
         CREATE TABLE transfers (id bigint PRIMARY KEY, src int, dst int, amount bigint)",
    )
    .await;
    let mut values = Vec::new();
    for i in 0..ACCOUNTS {
        values.push(format!("({i}, 1000)"));
    }
    exec_retry(
        &c,
        1,
        &format!("INSERT INTO bank VALUES {}", values.join(",")),
    )
    .await;
    let total = i64::from(ACCOUNTS) * 1000;

    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(1));
    let acked = Arc::new(parking_lot::Mutex::new(Vec::<i64>::new()));
    let mut workers = Vec::new();
    for id in 1..=3u64 {
        let conn = c.nodes[&id].conn_string();
        let (stop, next, acked) = (stop.clone(), next.clone(), acked.clone());
        workers.push(tokio::spawn(async move {
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            let mut seed = id;
            while !stop.load(Ordering::Relaxed) {
                let Ok((client, conn)) = tokio_postgres::connect(&conn, NoTls).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                while !stop.load(Ordering::Relaxed) {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let src = ((seed >> 33) % ACCOUNTS as u64) as i32;
                    let dst = ((seed >> 40) % ACCOUNTS as u64) as i32;
                    let amount = ((seed >> 50) % 50) as i64 + 1;
                    let tid = next.fetch_add(1, Ordering::Relaxed) as i64;
                    let sql = format!(
                        "BEGIN; \
                         UPDATE bank SET balance = balance - {amount} WHERE id = {src}; \
                         UPDATE bank SET balance = balance + {amount} WHERE id = {dst}; \
                         INSERT INTO transfers VALUES ({tid}, {src}, {dst}, {amount}); \
                         COMMIT"
                    );
                    match client.batch_execute(&sql).await {
                        Ok(()) => acked.lock().push(tid),
                        Err(e) if e.is_closed() => break,
                        Err(e) => {
                            *errors.entry(code(&e)).or_default() += 1;
                            let _ = client.batch_execute("ROLLBACK").await;
                        }
                    }
                }
            }
            errors
        }));
    }
    let wait_acked = |n: usize| {
        let acked = acked.clone();
        async move {
            let deadline = Instant::now() + DEADLINE;
            while acked.lock().len() < n {
                assert!(Instant::now() < deadline, "transfers stalled below {n}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_acked(30).await;
    // Kill the leader, let the others go on, restart it.
    let old = c.leader(1).await.expect("leader");
    c.kill(old).await;
    let survivors = c.running();
    c.wait_leader_among(&survivors).await;
    let n = acked.lock().len();
    wait_acked(n + 30).await;
    c.restart(old, &[]).await;
    // Partition a follower away, go on, heal.
    let leader = c.wait_leader_among(&[1, 2, 3]).await;
    let cut = (1..=3).find(|i| *i != leader).expect("a follower");
    let others: Vec<String> = (1..=3)
        .filter(|i| *i != cut)
        .map(|i| i.to_string())
        .collect();
    c.client(cut)
        .await
        .batch_execute(&format!(
            "SELECT weft_fault('partition', '{}')",
            others.join(",")
        ))
        .await
        .expect("partition");
    for id in (1..=3).filter(|i| *i != cut) {
        c.client(id)
            .await
            .batch_execute(&format!("SELECT weft_fault('partition', '{cut}')"))
            .await
            .expect("partition");
    }
    let n = acked.lock().len();
    wait_acked(n + 30).await;
    for id in 1..=3 {
        c.client(id)
            .await
            .batch_execute("SELECT weft_fault('heal', '')")
            .await
            .expect("heal");
    }
    let n = acked.lock().len();
    wait_acked(n + 10).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let errors = w.await.expect("worker");
        for code in errors.keys() {
            assert!(
                ["40001", "40003", "57P01", "25P02"].contains(&code.as_str()),
                "unexpected error {code}: {errors:?}"
            );
        }
    }
    let acked: Vec<i64> = acked.lock().clone();
    for id in 1..=3 {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let client = c.client(id).await;
            let sum = client
                .query_one("SELECT sum(balance)::bigint FROM bank", &[])
                .await
                .map(|r| r.get::<_, i64>(0));
            let have = client
                .query("SELECT id FROM transfers", &[])
                .await
                .map(|rows| {
                    rows.iter()
                        .map(|r| r.get::<_, i64>(0))
                        .collect::<std::collections::HashSet<i64>>()
                });
            if let (Ok(sum), Ok(have)) = (&sum, &have) {
                assert_eq!(*sum, total, "node {id}: the total changed");
                let missing: Vec<&i64> = acked.iter().filter(|t| !have.contains(t)).collect();
                if missing.is_empty() {
                    // Balances are exactly the initial ones plus the recorded transfers.
                    let rows = client
                        .query(
                            "SELECT b.id, (b.balance - 1000 - \
                             coalesce((SELECT sum(amount) FROM transfers WHERE dst = b.id), 0) + \
                             coalesce((SELECT sum(amount) FROM transfers WHERE src = b.id), 0))::bigint \
                             FROM bank b",
                            &[],
                        )
                        .await
                        .expect("reconcile");
                    for r in rows {
                        let off: i64 = r.get(1);
                        assert!(
                            off == 0,
                            "node {id}: account {} is off by {off}",
                            r.get::<_, i32>(0)
                        );
                    }
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {id} misses transfers {missing:?}"
                );
            } else {
                assert!(
                    Instant::now() < deadline,
                    "node {id}: {sum:?} {:?}",
                    have.err()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// serial columns and sequences in a cluster: every node takes its blocks of values through the
/// Raft log, so inserts on all nodes at once never share an id, on raft and on lww tables alike;
/// a node killed with values left in its block starts past every value handed out.
#[tokio::test(flavor = "multi_thread")]
async fn serial_ids_from_every_node_are_unique_and_a_killed_node_never_repeats_one() {
    let mut c = TestCluster::start(3, &[]).await;
    exec_retry(
        &c,
        1,
        "CREATE TABLE items (id bigserial PRIMARY KEY, node int); \
         CREATE TABLE notes (id bigserial PRIMARY KEY, node int) WITH (consistency = 'lww'); \
         CREATE SEQUENCE s",
    )
    .await;
    let mut tasks = Vec::new();
    for node in 1..=3u64 {
        let client = c.client(node).await;
        tasks.push(tokio::spawn(async move {
            let n = node as i32;
            let mut ids = Vec::new();
            for table in ["items", "notes"] {
                let sql = format!("INSERT INTO {table} (node) VALUES ($1) RETURNING id");
                for _ in 0..40 {
                    let row = client.query_one(&sql, &[&n]).await;
                    let row = row.unwrap_or_else(|e| panic!("{sql} on node {node}: {e:?}"));
                    ids.push((table, row.get::<_, i64>(0)));
                }
            }
            for _ in 0..40 {
                let row = client.query_one("SELECT nextval('s')", &[]).await;
                let row = row.unwrap_or_else(|e| panic!("nextval on node {node}: {e:?}"));
                ids.push(("s", row.get::<_, i64>(0)));
            }
            ids
        }));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut max_s = 0;
    for t in tasks {
        for (what, id) in t.await.expect("task") {
            assert!(
                seen.insert((what, id)),
                "{what} value {id} handed out twice"
            );
            if what == "s" {
                max_s = max_s.max(id);
            }
        }
    }
    assert_eq!(seen.len(), 360);
    for node in 1..=3 {
        let cl = c.client(node).await;
        assert_eq!(
            count(&cl, "SELECT count(DISTINCT id) FROM items").await,
            120
        );
    }
    // lww rows reach every node in the background.
    let deadline = Instant::now() + super::support::DEADLINE;
    for node in 1..=3 {
        let cl = c.client(node).await;
        while count(&cl, "SELECT count(DISTINCT id) FROM notes").await != 120 {
            assert!(
                Instant::now() < deadline,
                "notes never converged on node {node}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Node 3 holds the rest of its block; kill -9 loses it, never repeats it.
    c.kill(3).await;
    c.restart(3, &[]).await;
    let deadline = Instant::now() + super::support::DEADLINE;
    let after = loop {
        let client = c.client(3).await;
        match client.query_one("SELECT nextval('s')", &[]).await {
            Ok(row) => break row.get::<_, i64>(0),
            Err(e) => {
                assert!(Instant::now() < deadline, "nextval after restart: {e:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert!(
        after > max_s,
        "node 3 handed out {after} after a restart (max before {max_s})"
    );
    // setval resets the sequence on every node: nodes 1 and 2 drop what is left of their blocks.
    let reset = c.client(1).await;
    reset
        .batch_execute("SELECT setval('s', 1000000)")
        .await
        .expect("setval");
    for node in [1, 2] {
        let v: i64 = c
            .client(node)
            .await
            .query_one("SELECT nextval('s')", &[])
            .await
            .expect("nextval after setval")
            .get(0);
        assert!(v > 1_000_000, "node {node} handed out {v} after setval");
    }
}
