//! Sequences on one node: concurrent sessions never share a value, a restart never hands one out
//! again, and a serial column fills through prepared statements as through simple ones. The cluster
//! case (every node taking blocks through Raft) is in `cluster.rs`.

use std::collections::BTreeSet;

use super::support::{connect, scalar, sqlstate};

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_sessions_get_distinct_values_and_a_restart_never_repeats_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = weft::server::TestServer::start_in(dir.path())
        .await
        .expect("starts");
    let admin = connect(&srv).await;
    admin
        .batch_execute("CREATE SEQUENCE s; CREATE TABLE t (id serial PRIMARY KEY, who int)")
        .await
        .expect("ddl");
    let mut tasks = Vec::new();
    for who in 0..6i32 {
        let c = connect(&srv).await;
        tasks.push(tokio::spawn(async move {
            let next = c.prepare("SELECT nextval('s')").await.expect("prepare");
            let insert = c
                .prepare("INSERT INTO t (who) VALUES ($1) RETURNING id")
                .await
                .expect("prepare");
            let mut values = Vec::new();
            let mut ids = Vec::new();
            for _ in 0..50 {
                let row = c.query_one(&next, &[]).await.expect("nextval");
                values.push(row.get::<_, i64>(0));
                let row = c.query_one(&insert, &[&who]).await.expect("insert");
                ids.push(row.get::<_, i32>(0));
            }
            (values, ids)
        }));
    }
    let mut values = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for t in tasks {
        let (v, i) = t.await.expect("task");
        // Each session's own values increase: the node hands its block out in order.
        assert!(v.windows(2).all(|w| w[0] < w[1]), "{v:?}");
        values.extend(v);
        ids.extend(i);
    }
    // One node, one block at a time: exactly 1..=300, none twice.
    assert_eq!(values, (1..=300).collect::<BTreeSet<i64>>());
    assert_eq!(ids, (1..=300).collect::<BTreeSet<i32>>());
    assert_eq!(
        scalar(&admin, "SELECT count(DISTINCT id) FROM t")
            .await
            .as_deref(),
        Some("300")
    );
    // A rolled-back insert's value is gone, as in PostgreSQL.
    admin
        .batch_execute("BEGIN; INSERT INTO t (who) VALUES (9); ROLLBACK")
        .await
        .expect("rolled back");
    let taken: i32 = admin
        .query_one("INSERT INTO t (who) VALUES (9) RETURNING id", &[])
        .await
        .expect("insert")
        .get(0);
    assert_eq!(taken, 302);
    srv.shutdown().await.expect("shuts down");

    let srv = weft::server::TestServer::start_in(dir.path())
        .await
        .expect("restarts");
    let c = connect(&srv).await;
    let after: i64 = c
        .query_one("SELECT nextval('s')", &[])
        .await
        .expect("nextval")
        .get(0);
    assert!(after > 300, "a restart handed out {after} again");
    let id: i32 = c
        .query_one("INSERT INTO t (who) VALUES (1) RETURNING id", &[])
        .await
        .expect("insert")
        .get(0);
    assert!(id > 302, "a restart handed out id {id} again");
    // currval belongs to the session: this one has the insert's, a new one has none yet.
    assert_eq!(
        scalar(&c, "SELECT currval('t_id_seq')").await,
        Some(id.to_string())
    );
    let fresh = connect(&srv).await;
    let e = fresh
        .query_one("SELECT currval('t_id_seq')", &[])
        .await
        .expect_err("no currval in a new session");
    assert_eq!(sqlstate(&e), "55000", "{e:?}");
    srv.shutdown().await.expect("shuts down");
}
