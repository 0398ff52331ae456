//! The SQL layer end to end without the wire: a session over a real storage directory.

use weft_sql::{QueryOutput, Session};

use crate::common::{db, session};

/// Runs one statement; rows as text (NULL as "NULL"), or the command tag as a single cell.
async fn run(s: &mut Session, sql: &str) -> Result<Vec<Vec<String>>, weft_sql::Error> {
    use futures::StreamExt;
    let p = s.prepare(sql, &[]).await?;
    match s.execute(&p, vec![]).await? {
        QueryOutput::Rows { mut stream, .. } => {
            let mut out = Vec::new();
            while let Some(b) = stream.next().await {
                let b = b?;
                out.extend(crate::common::batch_rows(&b));
            }
            Ok(out)
        }
        QueryOutput::Command { tag } => Ok(vec![vec![tag]]),
        QueryOutput::Empty => Ok(vec![]),
    }
}

async fn ok(s: &mut Session, sql: &str) -> Vec<Vec<String>> {
    match run(s, sql).await {
        Ok(r) => r,
        Err(e) => panic!("{sql}: {e} ({})", e.sqlstate()),
    }
}

async fn err(s: &mut Session, sql: &str) -> String {
    match run(s, sql).await {
        Ok(r) => panic!("{sql}: expected an error, got {r:?}"),
        Err(e) => e.sqlstate().to_string(),
    }
}

#[tokio::test]
async fn create_insert_select_update_delete() {
    let db = db();
    let mut s = session(&db);
    ok(&mut s, "CREATE TABLE t (id int PRIMARY KEY, name text NOT NULL, v numeric(10,2) DEFAULT 1.5, u uuid DEFAULT gen_random_uuid(), j jsonb)").await;
    let r = ok(&mut s, "INSERT INTO t (id, name, j) VALUES (1, 'a', '{\"k\": [1,2]}'), (2, 'b', NULL) RETURNING id, v, j->'k' AS k").await;
    assert_eq!(
        r,
        vec![vec!["1", "1.50", "[1, 2]"], vec!["2", "1.50", "NULL"]]
    );
    assert_eq!(
        ok(&mut s, "SELECT name FROM t WHERE id = 1").await,
        vec![vec!["a"]]
    );
    assert_eq!(
        ok(&mut s, "UPDATE t SET name = name || 'x' WHERE id = 2").await,
        vec![vec!["UPDATE 1"]]
    );
    assert_eq!(
        ok(&mut s, "SELECT id, name FROM t ORDER BY id").await,
        vec![vec!["1", "a"], vec!["2", "bx"]]
    );
    assert_eq!(
        err(&mut s, "INSERT INTO t (id, name) VALUES (1, 'dup')").await,
        "23505"
    );
    assert_eq!(err(&mut s, "INSERT INTO t (id) VALUES (3)").await, "23502");
    assert_eq!(
        ok(&mut s, "DELETE FROM t WHERE id = 1 RETURNING name").await,
        vec![vec!["a"]]
    );
    assert_eq!(ok(&mut s, "SELECT count(*) FROM t").await, vec![vec!["1"]]);
    assert_eq!(err(&mut s, "SELECT * FROM nope").await, "42P01");
    assert_eq!(err(&mut s, "SELECT nope FROM t").await, "42703");
    assert_eq!(err(&mut s, "SELEC 1").await, "42601");
}

#[tokio::test]
async fn point_reads_use_the_primary_key() {
    let db = db();
    let mut s = session(&db);
    ok(
        &mut s,
        "CREATE TABLE k (a int, b int, c text, PRIMARY KEY (a, b))",
    )
    .await;
    ok(&mut s, "CREATE INDEX k_c ON k (c)").await;
    ok(
        &mut s,
        "INSERT INTO k VALUES (1, 1, 'x'), (1, 2, 'y'), (2, 1, 'x')",
    )
    .await;
    let plan = ok(&mut s, "EXPLAIN SELECT * FROM k WHERE a = 1 AND b = 2").await;
    assert!(
        format!("{plan:?}").contains("primary key point"),
        "{plan:?}"
    );
    let plan = ok(&mut s, "EXPLAIN SELECT * FROM k WHERE a = 1").await;
    assert!(
        format!("{plan:?}").contains("primary key range"),
        "{plan:?}"
    );
    let plan = ok(&mut s, "EXPLAIN SELECT * FROM k WHERE c = 'x'").await;
    assert!(format!("{plan:?}").contains("index k_c"), "{plan:?}");
    assert_eq!(
        ok(&mut s, "SELECT a, b FROM k WHERE c = 'x' ORDER BY a").await,
        vec![vec!["1", "1"], vec!["2", "1"]]
    );
    assert_eq!(
        ok(&mut s, "SELECT c FROM k WHERE a = 1 AND b = 2").await,
        vec![vec!["y"]]
    );
}

#[tokio::test]
async fn transactions_and_conflicts() {
    let db = db();
    let mut a = session(&db);
    let mut b = session(&db);
    ok(&mut a, "CREATE TABLE acc (id int PRIMARY KEY, bal int)").await;
    ok(&mut a, "INSERT INTO acc VALUES (1, 100)").await;
    ok(&mut a, "BEGIN").await;
    ok(&mut b, "BEGIN").await;
    // b's block has read on its snapshot when a's update commits: b's update of the same row
    // fails (it cannot run again on a new snapshot), and its block is rolled back.
    assert_eq!(ok(&mut b, "SELECT bal FROM acc").await, vec![vec!["100"]]);
    ok(&mut a, "UPDATE acc SET bal = bal - 10 WHERE id = 1").await;
    assert_eq!(ok(&mut a, "COMMIT").await, vec![vec!["COMMIT"]]);
    assert_eq!(
        err(&mut b, "UPDATE acc SET bal = bal - 20 WHERE id = 1").await,
        "40001"
    );
    assert_eq!(ok(&mut b, "COMMIT").await, vec![vec!["ROLLBACK"]]);
    assert_eq!(ok(&mut b, "SELECT bal FROM acc").await, vec![vec!["90"]]);
    // An autocommit update of a row another block has updated waits for that block, then
    // applies to the row it committed, whichever of the two runs first here.
    ok(&mut a, "BEGIN").await;
    ok(&mut a, "UPDATE acc SET bal = bal - 10 WHERE id = 1").await;
    let (committed, updated) = tokio::join!(
        ok(&mut a, "COMMIT"),
        ok(&mut b, "UPDATE acc SET bal = bal - 20 WHERE id = 1")
    );
    assert_eq!(committed, vec![vec!["COMMIT"]]);
    assert_eq!(updated, vec![vec!["UPDATE 1"]]);
    assert_eq!(ok(&mut b, "SELECT bal FROM acc").await, vec![vec!["60"]]);
    ok(&mut a, "BEGIN").await;
    ok(&mut a, "SAVEPOINT s").await;
    ok(&mut a, "INSERT INTO acc VALUES (2, 5)").await;
    assert_eq!(err(&mut a, "INSERT INTO acc VALUES (2, 5)").await, "23505");
    assert_eq!(err(&mut a, "SELECT 1").await, "25P02");
    ok(&mut a, "ROLLBACK TO s").await;
    assert_eq!(
        ok(&mut a, "SELECT count(*) FROM acc").await,
        vec![vec!["1"]]
    );
    ok(&mut a, "COMMIT").await;
}

#[tokio::test]
async fn defaults_of_every_kind() {
    let db = db();
    let mut s = session(&db);
    ok(&mut s, "CREATE TABLE items (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text NOT NULL, qty int DEFAULT 0, price numeric(8,2) DEFAULT 9.99, created timestamptz DEFAULT now(), active boolean NOT NULL DEFAULT true)").await;
    ok(
        &mut s,
        "INSERT INTO items (name) VALUES ('widget'), ('gadget')",
    )
    .await;
    ok(
        &mut s,
        "INSERT INTO items (name, qty) VALUES ('explicit', DEFAULT)",
    )
    .await;
    let r = ok(
        &mut s,
        "SELECT name, qty, price, active, created <= now() FROM items ORDER BY name",
    )
    .await;
    assert_eq!(r[0], vec!["explicit", "0", "9.99", "true", "true"]);
    assert_eq!(
        ok(&mut s, "SELECT count(DISTINCT id) FROM items").await,
        vec![vec!["3"]]
    );
}

#[tokio::test]
async fn errors_and_abort_end_transactions_like_postgres() {
    let db = db();
    let mut s = session(&db);
    ok(
        &mut s,
        "CREATE TABLE acct (id int PRIMARY KEY, balance int)",
    )
    .await;
    ok(&mut s, "INSERT INTO acct VALUES (2, 0)").await;
    ok(&mut s, "BEGIN").await;
    ok(&mut s, "UPDATE acct SET balance = 80 WHERE id = 2").await;
    assert_eq!(ok(&mut s, "ABORT").await, vec![vec!["ROLLBACK"]]);
    assert_eq!(
        ok(&mut s, "SELECT balance FROM acct WHERE id = 2").await,
        vec![vec!["0"]]
    );
    ok(&mut s, "BEGIN").await;
    assert_eq!(err(&mut s, "SELEC 1").await, "42601");
    assert_eq!(err(&mut s, "SELECT 1").await, "25P02");
    ok(&mut s, "ROLLBACK").await;
    assert_eq!(
        ok(&mut s, "SELECT pg_typeof(balance)::text FROM acct").await,
        vec![vec!["integer"]]
    );
}
