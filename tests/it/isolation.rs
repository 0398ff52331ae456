//! Isolation levels between sessions of one node: READ COMMITTED blocks read a new snapshot at
//! each statement and carry on from a row's new version where REPEATABLE READ (the default)
//! fails with 40001; the levels are set, shown and refused as PostgreSQL does.

use tokio_postgres::Client;

use super::support::{connect, scalar, server, sqlstate, waits_for, DEADLINE};

async fn show(c: &Client) -> String {
    scalar(c, "SHOW transaction_isolation")
        .await
        .expect("a level")
}

#[tokio::test(flavor = "multi_thread")]
async fn levels_are_set_shown_and_refused_as_in_postgresql() {
    let srv = server().await;
    let c = connect(&srv).await;
    assert_eq!(show(&c).await, "repeatable read");
    c.batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED")
        .await
        .unwrap();
    assert_eq!(show(&c).await, "read committed");
    c.batch_execute("COMMIT").await.unwrap();
    assert_eq!(show(&c).await, "repeatable read");
    // SET TRANSACTION before the block's first query; after one it is 25001 and the block fails.
    c.batch_execute("BEGIN; SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        .await
        .unwrap();
    assert_eq!(show(&c).await, "serializable");
    c.batch_execute("SELECT 1").await.unwrap();
    let e = c
        .batch_execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
        .await
        .expect_err("a query ran");
    assert_eq!(sqlstate(&e), "25001");
    let e = c.batch_execute("SELECT 1").await.expect_err("failed block");
    assert_eq!(sqlstate(&e), "25P02");
    c.batch_execute("ROLLBACK").await.unwrap();
    // The session's default, also as SQL's SESSION CHARACTERISTICS.
    c.batch_execute("SET default_transaction_isolation = 'read committed'; BEGIN")
        .await
        .unwrap();
    assert_eq!(show(&c).await, "read committed");
    c.batch_execute(
        "COMMIT; SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ",
    )
    .await
    .unwrap();
    assert_eq!(
        scalar(&c, "SHOW default_transaction_isolation")
            .await
            .as_deref(),
        Some("repeatable read")
    );
    let e = c
        .batch_execute("SET default_transaction_isolation = 'sometimes'")
        .await
        .expect_err("no such level");
    assert_eq!(sqlstate(&e), "22023");
    // Or at connection, as libpq's PGOPTIONS does (a backslash keeps the space).
    let conn = format!(
        "{} options='-c default_transaction_isolation=read\\\\ committed'",
        srv.conn_string()
    );
    let (d, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
        .await
        .expect("connects");
    tokio::spawn(connection);
    d.batch_execute("BEGIN").await.unwrap();
    assert_eq!(show(&d).await, "read committed");
}

#[tokio::test(flavor = "multi_thread")]
async fn read_committed_statements_see_what_committed_before_them() {
    let srv = server().await;
    let (a, b) = (connect(&srv).await, connect(&srv).await);
    a.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a')")
        .await
        .unwrap();
    b.batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED")
        .await
        .unwrap();
    assert_eq!(
        scalar(&b, "SELECT count(*) FROM t").await.as_deref(),
        Some("1")
    );
    a.batch_execute(
        "INSERT INTO t VALUES (2, 'b'); CREATE TABLE u (id int PRIMARY KEY); \
         ALTER TABLE t ADD COLUMN w int DEFAULT 7",
    )
    .await
    .unwrap();
    // Rows, tables and columns committed since the previous statement.
    assert_eq!(
        scalar(&b, "SELECT count(*) FROM t").await.as_deref(),
        Some("2")
    );
    assert_eq!(
        scalar(&b, "SELECT count(*) FROM u").await.as_deref(),
        Some("0")
    );
    assert_eq!(
        scalar(&b, "SELECT w FROM t WHERE id = 2").await.as_deref(),
        Some("7")
    );
    // Its own writes stay visible over the newer snapshots; a key committed since is 23505.
    b.batch_execute("INSERT INTO t VALUES (3, 'c')")
        .await
        .unwrap();
    a.batch_execute("INSERT INTO t VALUES (4, 'd')")
        .await
        .unwrap();
    assert_eq!(
        scalar(&b, "SELECT string_agg(id::text, ',' ORDER BY id) FROM t")
            .await
            .as_deref(),
        Some("1,2,3,4")
    );
    let e = b
        .batch_execute("INSERT INTO t VALUES (4, 'again')")
        .await
        .expect_err("4 exists");
    assert_eq!(sqlstate(&e), "23505");
    b.batch_execute("ROLLBACK").await.unwrap();
    // REPEATABLE READ keeps its first snapshot.
    b.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await
        .unwrap();
    assert_eq!(
        scalar(&b, "SELECT count(*) FROM t").await.as_deref(),
        Some("3")
    );
    a.batch_execute("INSERT INTO t VALUES (5, 'e')")
        .await
        .unwrap();
    assert_eq!(
        scalar(&b, "SELECT count(*) FROM t").await.as_deref(),
        Some("3")
    );
    b.batch_execute("COMMIT").await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_committed_writer_carries_on_from_the_row_its_holder_committed() {
    let srv = server().await;
    let (a, b) = (connect(&srv).await, connect(&srv).await);
    a.batch_execute(
        "CREATE TABLE acct (id int PRIMARY KEY, balance int NOT NULL); \
         INSERT INTO acct VALUES (1, 100), (2, 50)",
    )
    .await
    .unwrap();
    // b has read already, so under REPEATABLE READ its UPDATE would fail (row_locks.rs).
    b.batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED; SELECT count(*) FROM acct")
        .await
        .unwrap();
    a.batch_execute("BEGIN; UPDATE acct SET balance = balance - 30 WHERE id = 1")
        .await
        .unwrap();
    let bump = b.execute(
        "UPDATE acct SET balance = balance + 1 WHERE id = 1 AND balance > 60",
        &[],
    );
    let n = waits_for(bump, &a, "COMMIT")
        .await
        .expect("b carries on from the new row");
    assert_eq!(n, 1);
    // FOR UPDATE returns the row's new version; the WHERE is evaluated on it.
    a.batch_execute("BEGIN; UPDATE acct SET balance = 10 WHERE id = 2")
        .await
        .unwrap();
    let lock = b.query(
        "SELECT balance FROM acct WHERE balance > 40 FOR UPDATE",
        &[],
    );
    let rows = waits_for(lock, &a, "COMMIT").await.expect("rows");
    let balances: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(balances, vec![71]);
    b.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        scalar(
            &a,
            "SELECT string_agg(balance::text, ',' ORDER BY id) FROM acct"
        )
        .await
        .as_deref(),
        Some("71,10")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn read_committed_blocks_that_share_a_counter_all_commit() {
    let srv = server().await;
    let setup = connect(&srv).await;
    setup
        .batch_execute(
            "CREATE TABLE hits (id int PRIMARY KEY, n int NOT NULL); \
             INSERT INTO hits SELECT g, 0 FROM generate_series(0, 6) g",
        )
        .await
        .unwrap();
    let mut clients = Vec::new();
    for w in 1..=6 {
        let c = connect(&srv).await;
        clients.push(tokio::spawn(async move {
            for _ in 0..20 {
                // The shared row is the block's second write: under REPEATABLE READ a commit
                // to it after the block's snapshot would fail the statement with 40001.
                c.batch_execute(&format!(
                    "BEGIN ISOLATION LEVEL READ COMMITTED; \
                     UPDATE hits SET n = n + 1 WHERE id = {w}; \
                     UPDATE hits SET n = n + 1 WHERE id = 0; COMMIT"
                ))
                .await
                .expect("a block");
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
        scalar(
            &setup,
            "SELECT string_agg(n::text, ',' ORDER BY id) FROM hits"
        )
        .await
        .as_deref(),
        Some("120,20,20,20,20,20,20")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn read_committed_keeps_its_own_schema_changes_and_savepoints_over_new_snapshots() {
    let srv = server().await;
    let (a, b) = (connect(&srv).await, connect(&srv).await);
    a.batch_execute(
        "CREATE TABLE parent (id int PRIMARY KEY); \
         CREATE TABLE child (id int PRIMARY KEY, p int REFERENCES parent); \
         INSERT INTO parent VALUES (1)",
    )
    .await
    .unwrap();
    b.batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED; CREATE TABLE mine (x int)")
        .await
        .unwrap();
    // A parent committed after the block began can be referenced; the block's own table stays.
    a.batch_execute("INSERT INTO parent VALUES (2)")
        .await
        .unwrap();
    b.batch_execute("INSERT INTO child VALUES (1, 2); INSERT INTO mine VALUES (5)")
        .await
        .expect("the new parent is visible and the own table is still there");
    // A statement that runs again after a savepoint: only its own effects are undone.
    b.batch_execute("SAVEPOINT s; INSERT INTO mine VALUES (6)")
        .await
        .unwrap();
    a.batch_execute("BEGIN; UPDATE parent SET id = 10 WHERE id = 1")
        .await
        .unwrap();
    let deleted = waits_for(
        b.execute("DELETE FROM parent WHERE id = 1", &[]),
        &a,
        "COMMIT",
    )
    .await
    .expect("run again on the new snapshot");
    assert_eq!(deleted, 0, "row 1 is row 10 now");
    assert_eq!(
        scalar(&b, "SELECT string_agg(x::text, ',' ORDER BY x) FROM mine")
            .await
            .as_deref(),
        Some("5,6")
    );
    b.batch_execute("ROLLBACK TO SAVEPOINT s; COMMIT")
        .await
        .unwrap();
    assert_eq!(
        scalar(&a, "SELECT string_agg(x::text, ',' ORDER BY x) FROM mine")
            .await
            .as_deref(),
        Some("5")
    );
    assert_eq!(
        scalar(
            &a,
            "SELECT string_agg(id::text, ',' ORDER BY id) FROM parent"
        )
        .await
        .as_deref(),
        Some("2,10")
    );
    assert_eq!(
        scalar(&a, "SELECT p FROM child WHERE id = 1")
            .await
            .as_deref(),
        Some("2")
    );
}
