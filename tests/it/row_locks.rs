//! `SELECT … FOR UPDATE / FOR SHARE / NOWAIT / SKIP LOCKED` between sessions of one node: a job
//! queue hands each worker its own job, a locker waits for the holder and then sees (40001) that
//! the row changed, NOWAIT fails at once, shared locks share, locks go at the transaction's end,
//! and a cycle of row-lock waits is a deadlock.

use std::collections::BTreeSet;

use tokio_postgres::Client;

use super::support::{connect, scalar, server, sqlstate, still_waiting, waits_for, DEADLINE};

const NEXT_JOB: &str =
    "SELECT id FROM jobs WHERE state = 'queued' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED";

async fn jobs(c: &Client, n: i32) {
    c.batch_execute("CREATE TABLE jobs (id int PRIMARY KEY, state text NOT NULL)")
        .await
        .unwrap();
    c.batch_execute(&format!(
        "INSERT INTO jobs SELECT g, 'queued' FROM generate_series(1, {n}) g"
    ))
    .await
    .unwrap();
}

async fn next_job(c: &Client) -> Option<i32> {
    c.query_opt(NEXT_JOB, &[])
        .await
        .expect("next job")
        .map(|r| r.get(0))
}

#[tokio::test(flavor = "multi_thread")]
async fn skip_locked_hands_each_worker_its_own_job() {
    let srv = server().await;
    let (a, b, c) = (
        connect(&srv).await,
        connect(&srv).await,
        connect(&srv).await,
    );
    jobs(&a, 3).await;
    for w in [&a, &b, &c] {
        w.batch_execute("BEGIN").await.unwrap();
    }
    assert_eq!(next_job(&a).await, Some(1));
    assert_eq!(next_job(&b).await, Some(2));
    assert_eq!(next_job(&c).await, Some(3));
    // A fourth worker finds every job taken, and NOWAIT fails at once on a taken one.
    let d = connect(&srv).await;
    assert_eq!(next_job(&d).await, None);
    let e = d
        .batch_execute("SELECT * FROM jobs WHERE id = 2 FOR UPDATE NOWAIT")
        .await
        .expect_err("row 2 is locked");
    assert_eq!(sqlstate(&e), "55P03");
    // A holder's own transaction locks its row again without waiting.
    assert_eq!(
        scalar(&a, "SELECT id FROM jobs WHERE id = 1 FOR UPDATE")
            .await
            .as_deref(),
        Some("1")
    );
    // Locks go with their transaction: committed, rolled back, or an autocommit statement's.
    a.batch_execute("DELETE FROM jobs WHERE id = 1; COMMIT")
        .await
        .unwrap();
    b.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(next_job(&d).await, Some(2));
    assert_eq!(next_job(&d).await, Some(2));
    c.batch_execute("COMMIT").await.unwrap();
    d.batch_execute("BEGIN").await.unwrap();
    assert_eq!(next_job(&d).await, Some(2));
    assert_eq!(next_job(&a).await, Some(3));
}

#[tokio::test(flavor = "multi_thread")]
async fn skip_locked_skips_a_job_taken_after_the_snapshot() {
    let srv = server().await;
    let (a, b) = (connect(&srv).await, connect(&srv).await);
    jobs(&a, 2).await;
    // b's snapshot still has job 1 when a takes it, deletes it and commits.
    b.batch_execute("BEGIN").await.unwrap();
    assert_eq!(
        scalar(&b, "SELECT count(*) FROM jobs").await.as_deref(),
        Some("2")
    );
    a.batch_execute("BEGIN").await.unwrap();
    assert_eq!(next_job(&a).await, Some(1));
    a.batch_execute("DELETE FROM jobs WHERE id = 1; COMMIT")
        .await
        .unwrap();
    // Its lock is free again, but the row is gone: b takes job 2, not job 1 a second time.
    assert_eq!(next_job(&b).await, Some(2));
    b.batch_execute("UPDATE jobs SET state = 'done' WHERE id = 2; COMMIT")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn for_update_waits_for_the_holder_and_fails_if_it_changed_the_row() {
    let srv = server().await;
    let (a, b) = (connect(&srv).await, connect(&srv).await);
    a.batch_execute(
        "CREATE TABLE acct (id int PRIMARY KEY, balance int); \
         INSERT INTO acct VALUES (1, 100), (2, 50)",
    )
    .await
    .unwrap();
    a.batch_execute("BEGIN; SELECT * FROM acct WHERE id = 1 FOR UPDATE")
        .await
        .unwrap();
    b.batch_execute("BEGIN").await.unwrap();
    // A holder that ends without changing the row lets the waiter have it.
    let mut waiting =
        Box::pin(b.query_one("SELECT balance FROM acct WHERE id = 1 FOR UPDATE", &[]));
    assert!(still_waiting(&mut waiting).await);
    a.batch_execute("ROLLBACK").await.unwrap();
    let row = tokio::time::timeout(DEADLINE, waiting)
        .await
        .expect("granted after the rollback")
        .expect("row");
    assert_eq!(row.get::<_, i32>(0), 100);
    // b holds it now: a waits, and once b has changed the row and committed, a's snapshot is
    // stale, so a gets 40001 rather than the old balance.
    a.batch_execute("BEGIN; SELECT * FROM acct WHERE id = 2")
        .await
        .unwrap();
    let e = waits_for(
        a.query_one("SELECT balance FROM acct WHERE id = 1 FOR UPDATE", &[]),
        &b,
        "UPDATE acct SET balance = balance - 30 WHERE id = 1; COMMIT",
    )
    .await
    .expect_err("the row changed after a's snapshot");
    assert_eq!(sqlstate(&e), "40001");
    a.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        scalar(&a, "SELECT balance FROM acct WHERE id = 1 FOR UPDATE")
            .await
            .as_deref(),
        Some("70")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_row_locks_share_and_keep_out_for_update() {
    let srv = server().await;
    let (a, b) = (connect(&srv).await, connect(&srv).await);
    a.batch_execute(
        "CREATE TABLE parent (id int PRIMARY KEY); INSERT INTO parent VALUES (1); \
         BEGIN; SELECT * FROM parent FOR SHARE",
    )
    .await
    .unwrap();
    b.batch_execute("BEGIN; SELECT * FROM parent FOR KEY SHARE NOWAIT")
        .await
        .expect("shared locks share");
    let e = b
        .batch_execute("SELECT * FROM parent FOR UPDATE NOWAIT")
        .await
        .expect_err("a shares the row");
    assert_eq!(sqlstate(&e), "55P03");
    // The error failed b's block, which released b's locks: a can take the row alone.
    a.batch_execute("SELECT * FROM parent FOR UPDATE NOWAIT")
        .await
        .expect("b's failed block holds nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cycle_of_row_lock_waits_is_a_deadlock() {
    let srv = server().await;
    let (a, b) = (connect(&srv).await, connect(&srv).await);
    a.batch_execute(
        "CREATE TABLE pair (id int PRIMARY KEY); INSERT INTO pair VALUES (1), (2); \
         BEGIN; SELECT * FROM pair WHERE id = 1 FOR UPDATE",
    )
    .await
    .unwrap();
    b.batch_execute("BEGIN; SELECT * FROM pair WHERE id = 2 FOR UPDATE")
        .await
        .unwrap();
    let mut waiting = Box::pin(a.batch_execute("SELECT * FROM pair WHERE id = 2 FOR UPDATE"));
    assert!(still_waiting(&mut waiting).await);
    let e = b
        .batch_execute("SELECT * FROM pair WHERE id = 1 FOR UPDATE")
        .await
        .expect_err("b would wait for a, which waits for b");
    assert_eq!(sqlstate(&e), "40P01");
    b.batch_execute("ROLLBACK").await.unwrap();
    tokio::time::timeout(DEADLINE, waiting)
        .await
        .expect("a is granted once b gave up")
        .expect("lock");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_workers_take_every_job_once() {
    let srv = server().await;
    let setup = connect(&srv).await;
    jobs(&setup, 40).await;
    setup
        .batch_execute("CREATE TABLE done (job int PRIMARY KEY, worker int)")
        .await
        .unwrap();
    let mut workers = Vec::new();
    for w in 0..4i32 {
        let c = connect(&srv).await;
        workers.push(tokio::spawn(async move {
            let mut taken = 0;
            loop {
                c.batch_execute("BEGIN").await.unwrap();
                // A statement that deletes the job it locks, as many queues do.
                let row = c
                    .query_opt(
                        "DELETE FROM jobs WHERE id = (SELECT id FROM jobs ORDER BY id \
                         LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id",
                        &[],
                    )
                    .await
                    .expect("take a job");
                let Some(row) = row else {
                    c.batch_execute("COMMIT").await.unwrap();
                    return taken;
                };
                let job: i32 = row.get(0);
                c.execute("INSERT INTO done VALUES ($1, $2)", &[&job, &w])
                    .await
                    .unwrap();
                // No worker ever meets another's job: no conflict at COMMIT either.
                c.batch_execute("COMMIT").await.expect("commit");
                taken += 1;
            }
        }));
    }
    let mut total = 0;
    for w in workers {
        total += tokio::time::timeout(DEADLINE, w)
            .await
            .expect("workers finish")
            .unwrap();
    }
    assert_eq!(total, 40);
    let done: BTreeSet<i32> = setup
        .query("SELECT job FROM done", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(done, (1..=40).collect());
}

#[tokio::test(flavor = "multi_thread")]
async fn updates_and_deletes_wait_for_row_locks_and_an_autocommit_one_carries_on() {
    let srv = server().await;
    let (a, b) = (connect(&srv).await, connect(&srv).await);
    a.batch_execute(
        "CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL); \
         INSERT INTO counter VALUES (1, 0), (2, 0), (3, 0); \
         BEGIN; SELECT * FROM counter WHERE id = 1 FOR UPDATE",
    )
    .await
    .unwrap();
    // A prepared update by key (the point fast path) waits for a's lock; once a has changed the
    // row and committed, it applies to the new row, as PostgreSQL's READ COMMITTED would.
    let updated = waits_for(
        b.execute(
            "UPDATE counter SET n = n + $1 WHERE id = $2",
            &[&1i32, &1i32],
        ),
        &a,
        "UPDATE counter SET n = n + 10 WHERE id = 1; COMMIT",
    )
    .await
    .expect("carries on from the new row");
    assert_eq!(updated, 1);
    assert_eq!(
        scalar(&a, "SELECT n FROM counter WHERE id = 1")
            .await
            .as_deref(),
        Some("11")
    );
    // An uncommitted update holds its row: FOR UPDATE NOWAIT fails, SKIP LOCKED passes it by,
    // and a DELETE waits; it deletes nothing once the holder has deleted the row.
    a.batch_execute("BEGIN; UPDATE counter SET n = 5 WHERE id = 2")
        .await
        .unwrap();
    let e = b
        .batch_execute("SELECT * FROM counter WHERE id = 2 FOR UPDATE NOWAIT")
        .await
        .expect_err("a's update holds row 2");
    assert_eq!(sqlstate(&e), "55P03");
    assert_eq!(
        scalar(
            &b,
            "SELECT string_agg(id::text, ',' ORDER BY id) FROM \
             (SELECT id FROM counter ORDER BY id FOR UPDATE SKIP LOCKED) s"
        )
        .await
        .as_deref(),
        Some("1,3")
    );
    let deleted = waits_for(
        b.execute("DELETE FROM counter WHERE id >= 2", &[]),
        &a,
        "DELETE FROM counter WHERE id = 2; COMMIT",
    )
    .await
    .expect("runs again on a new snapshot");
    assert_eq!(deleted, 1);
    assert_eq!(
        scalar(&a, "SELECT string_agg(id::text, ',') FROM counter")
            .await
            .as_deref(),
        Some("1")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_update_after_the_first_statement_of_a_block_fails_if_the_holder_changed_its_row() {
    let srv = server().await;
    let (a, b) = (connect(&srv).await, connect(&srv).await);
    a.batch_execute(
        "CREATE TABLE acct (id int PRIMARY KEY, balance int NOT NULL); \
         INSERT INTO acct VALUES (1, 100), (2, 50)",
    )
    .await
    .unwrap();
    // A holder that ends without a change lets the writer through, in a block too.
    a.batch_execute("BEGIN; UPDATE acct SET balance = 0 WHERE id = 1")
        .await
        .unwrap();
    b.batch_execute("BEGIN; SELECT count(*) FROM acct")
        .await
        .unwrap();
    let bump = "UPDATE acct SET balance = balance + 1 WHERE id = 1";
    waits_for(b.batch_execute(bump), &a, "ROLLBACK")
        .await
        .expect("nothing changed");
    b.batch_execute("COMMIT").await.unwrap();
    // Now a changes the row while b, whose snapshot is older, waits: b's statement cannot be
    // run again (its block has read already), so it fails as PostgreSQL's REPEATABLE READ does.
    b.batch_execute("BEGIN; SELECT count(*) FROM acct")
        .await
        .unwrap();
    a.batch_execute("BEGIN; UPDATE acct SET balance = balance - 30 WHERE id = 1")
        .await
        .unwrap();
    let e = waits_for(b.batch_execute(bump), &a, "COMMIT")
        .await
        .expect_err("the row changed after b's snapshot");
    assert_eq!(sqlstate(&e), "40001");
    b.batch_execute("ROLLBACK").await.unwrap();
    // Two blocks that update two rows in opposite orders deadlock; the survivor commits.
    a.batch_execute("BEGIN; UPDATE acct SET balance = balance + 1 WHERE id = 1")
        .await
        .unwrap();
    b.batch_execute("BEGIN; UPDATE acct SET balance = balance + 1 WHERE id = 2")
        .await
        .unwrap();
    let mut waiting =
        Box::pin(a.batch_execute("UPDATE acct SET balance = balance + 1 WHERE id = 2"));
    assert!(still_waiting(&mut waiting).await);
    let e = b
        .batch_execute("UPDATE acct SET balance = balance + 1 WHERE id = 1")
        .await
        .expect_err("b would wait for a, which waits for b");
    assert_eq!(sqlstate(&e), "40P01");
    b.batch_execute("ROLLBACK").await.unwrap();
    tokio::time::timeout(DEADLINE, waiting)
        .await
        .expect("a is granted once b gave up")
        .expect("update");
    a.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        scalar(
            &a,
            "SELECT string_agg(balance::text, ',' ORDER BY id) FROM acct"
        )
        .await
        .as_deref(),
        Some("72,51")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_increments_of_one_row_all_apply() {
    let srv = server().await;
    let setup = connect(&srv).await;
    setup
        .batch_execute(
            "CREATE TABLE hits (id int PRIMARY KEY, n int NOT NULL); INSERT INTO hits VALUES (1, 0)",
        )
        .await
        .unwrap();
    let mut clients = Vec::new();
    for w in 0..6 {
        let c = connect(&srv).await;
        clients.push(tokio::spawn(async move {
            for i in 0..20 {
                // Autocommit, simple and prepared, and as the first statement of a block: a
                // PostgreSQL application retries none of them.
                match (w + i) % 3 {
                    0 => c
                        .batch_execute("UPDATE hits SET n = n + 1 WHERE id = 1")
                        .await
                        .map(|_| ()),
                    1 => c
                        .execute("UPDATE hits SET n = n + $1 WHERE id = 1", &[&1i32])
                        .await
                        .map(|_| ()),
                    _ => {
                        c.batch_execute("BEGIN").await.unwrap();
                        c.batch_execute("UPDATE hits SET n = n + 1 WHERE id = 1")
                            .await
                            .unwrap();
                        c.batch_execute("COMMIT").await
                    }
                }
                .expect("increment");
            }
        }));
    }
    for c in clients {
        tokio::time::timeout(DEADLINE, c)
            .await
            .expect("clients finish")
            .unwrap();
    }
    assert_eq!(
        scalar(&setup, "SELECT n FROM hits").await.as_deref(),
        Some("120")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cascading_delete_waits_for_the_child_rows_it_deletes() {
    let srv = server().await;
    let (a, b) = (connect(&srv).await, connect(&srv).await);
    a.batch_execute(
        "CREATE TABLE orders (id int PRIMARY KEY); \
         CREATE TABLE lines (id int PRIMARY KEY, \
             order_id int REFERENCES orders ON DELETE CASCADE, qty int); \
         INSERT INTO orders VALUES (1), (2); \
         INSERT INTO lines VALUES (10, 1, 1), (20, 2, 1); \
         BEGIN; SELECT * FROM lines WHERE id = 10 FOR UPDATE",
    )
    .await
    .unwrap();
    // Deleting order 1 deletes line 10, which a holds: the delete waits for a's rollback.
    let deleted = waits_for(
        b.execute("DELETE FROM orders WHERE id = 1", &[]),
        &a,
        "ROLLBACK",
    )
    .await
    .expect("deletes");
    assert_eq!(deleted, 1);
    // a changes line 20 and commits while the cascade waits: the autocommit delete runs again
    // on a new snapshot and still deletes it.
    a.batch_execute("BEGIN; UPDATE lines SET qty = 5 WHERE id = 20")
        .await
        .unwrap();
    let deleted = waits_for(
        b.execute("DELETE FROM orders WHERE id = 2", &[]),
        &a,
        "COMMIT",
    )
    .await
    .expect("runs again");
    assert_eq!(deleted, 1);
    assert_eq!(
        scalar(&a, "SELECT count(*) FROM lines").await.as_deref(),
        Some("0")
    );
}
