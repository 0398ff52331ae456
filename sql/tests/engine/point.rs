//! The primary-key point fast path gives the same answers as the normal (DataFusion) path: the
//! same statements run against two databases, one with `weft.point_fast_path = off`, and every
//! result, error and final table is compared.

use datafusion::scalar::ScalarValue;
use weft_sql::datafusion;
use weft_sql::{QueryOutput, Session};

use crate::common::{db, session};

/// Rows as text, or the command tag, or the SQLSTATE of the error; plus the RowDescription.
#[derive(Debug, PartialEq)]
enum Outcome {
    Rows(Vec<(String, u32)>, Vec<Vec<String>>),
    Tag(String),
    Error(String),
    Empty,
}

async fn run(s: &mut Session, sql: &str, params: Vec<ScalarValue>) -> Outcome {
    use futures::StreamExt;
    let p = match s.prepare(sql, &[]).await {
        Ok(p) => p,
        Err(e) => return Outcome::Error(e.sqlstate().to_string()),
    };
    let fields: Vec<(String, u32)> = p
        .fields
        .as_ref()
        .map(|f| {
            f.iter()
                .map(|f| (f.name.clone(), f.pg_type.oid()))
                .collect()
        })
        .unwrap_or_default();
    match s.execute(&p, params).await {
        Err(e) => Outcome::Error(e.sqlstate().to_string()),
        Ok(QueryOutput::Rows { mut stream, .. }) => {
            let mut out = Vec::new();
            while let Some(b) = stream.next().await {
                let b = match b {
                    Ok(b) => b,
                    Err(e) => return Outcome::Error(e.sqlstate().to_string()),
                };
                out.extend(crate::common::batch_rows(&b));
            }
            Outcome::Rows(fields, out)
        }
        Ok(QueryOutput::Command { tag }) => Outcome::Tag(tag),
        Ok(QueryOutput::Empty) => Outcome::Empty,
    }
}

fn i32v(v: i32) -> ScalarValue {
    ScalarValue::Int32(Some(v))
}

fn i64v(v: i64) -> ScalarValue {
    ScalarValue::Int64(Some(v))
}

fn text(v: &str) -> ScalarValue {
    ScalarValue::Utf8(Some(v.to_string()))
}

const SETUP: &[&str] = &[
    "CREATE TABLE kv (k int PRIMARY KEY, v bigint, s text NOT NULL DEFAULT 'x', \
     u int UNIQUE, CHECK (v IS NULL OR v < 1000000))",
    "INSERT INTO kv (k, v, s, u) VALUES (1, 10, 'a', 1), (2, 20, 'b', 2), (3, NULL, 'c', NULL)",
    "CREATE TABLE c (a text, b int, v text, PRIMARY KEY (a, b))",
    "INSERT INTO c VALUES ('x', 1, 'one'), ('x', 2, 'two'), ('y', 1, 'three')",
    "CREATE TABLE nokey (a int, b int)",
    "INSERT INTO nokey VALUES (1, 2)",
];

/// Statements and parameters run in order on both databases.
fn script() -> Vec<(&'static str, Vec<ScalarValue>)> {
    vec![
        ("SELECT v FROM kv WHERE k = $1", vec![i32v(1)]),
        ("SELECT v FROM kv WHERE k = $1", vec![i32v(99)]),
        (
            "SELECT v FROM kv WHERE k = $1",
            vec![ScalarValue::Int32(None)],
        ),
        ("SELECT v FROM kv WHERE k = $1", vec![text("2")]),
        ("SELECT v FROM kv WHERE k = $1", vec![text("nope")]),
        ("SELECT v FROM kv WHERE k = $1", vec![i64v(1 << 40)]),
        ("SELECT * FROM kv WHERE k = 3", vec![]),
        ("SELECT s, v, s AS again FROM kv WHERE 2 = k", vec![]),
        ("SELECT t.v FROM kv AS t WHERE t.k = $1", vec![i32v(2)]),
        ("SELECT v FROM kv WHERE k = 5000000000", vec![]),
        (
            "SELECT v FROM kv WHERE k = $1 AND k = $2",
            vec![i32v(1), i32v(1)],
        ),
        ("SELECT v FROM kv WHERE k = $1 AND v = 10", vec![i32v(1)]),
        (
            "SELECT v, b FROM c WHERE a = $1 AND b = $2",
            vec![text("x"), i32v(2)],
        ),
        (
            "SELECT v FROM c WHERE b = $2 AND a = $1",
            vec![text("y"), i32v(1)],
        ),
        ("SELECT v FROM c WHERE a = 'x' AND b = 1", vec![]),
        ("SELECT v FROM c WHERE a = $1", vec![text("x")]),
        ("SELECT b FROM nokey WHERE a = 1", vec![]),
        // Writes in autocommit.
        ("UPDATE kv SET v = v + 1 WHERE k = $1", vec![i32v(1)]),
        ("UPDATE kv SET v = v + 1 WHERE k = $1", vec![i32v(99)]),
        (
            "UPDATE kv SET v = v + 1 WHERE k = $1",
            vec![ScalarValue::Int32(None)],
        ),
        ("UPDATE kv SET v = v + 1 WHERE k = $1", vec![i32v(3)]),
        (
            "UPDATE kv SET v = $2, s = $3 WHERE k = $1",
            vec![i32v(2), i64v(7), text("bb")],
        ),
        (
            "UPDATE kv SET v = $2 WHERE k = $1",
            vec![i32v(2), text("12")],
        ),
        (
            "UPDATE kv SET v = $2 WHERE k = $1",
            vec![i32v(2), text("twelve")],
        ),
        (
            "UPDATE kv SET v = v + 9223372036854775800 WHERE k = $1",
            vec![i32v(1)],
        ),
        ("UPDATE kv SET v = v * 1000000 WHERE k = 1", vec![]),
        ("UPDATE kv SET s = NULL WHERE k = $1", vec![i32v(1)]),
        ("UPDATE kv SET u = 2 WHERE k = $1", vec![i32v(1)]),
        ("UPDATE kv SET u = u + 10 WHERE k = $1", vec![i32v(1)]),
        ("UPDATE kv SET k = 2 WHERE k = $1", vec![i32v(1)]),
        ("UPDATE kv SET k = k + 100 WHERE k = $1", vec![i32v(1)]),
        (
            "UPDATE kv SET v = -v WHERE k = $1 RETURNING k, v, s",
            vec![i32v(101)],
        ),
        (
            "UPDATE kv AS t SET v = t.v - 1 WHERE t.k = $1 RETURNING *",
            vec![i32v(2)],
        ),
        (
            "UPDATE c SET v = v || '!' WHERE a = $1 AND b = $2",
            vec![text("x"), i32v(1)],
        ),
        ("UPDATE kv SET v = now() WHERE k = $1", vec![i32v(2)]),
        ("DELETE FROM kv WHERE k = $1", vec![i32v(99)]),
        ("DELETE FROM kv WHERE k = $1 RETURNING v", vec![i32v(3)]),
        ("DELETE FROM c WHERE a = 'y' AND b = 1", vec![]),
        // Inside a transaction block: own writes, then an error aborts the block.
        ("BEGIN", vec![]),
        ("INSERT INTO kv (k, v) VALUES (50, 500)", vec![]),
        ("SELECT v, s FROM kv WHERE k = $1", vec![i32v(50)]),
        ("UPDATE kv SET v = v + 1 WHERE k = $1", vec![i32v(50)]),
        ("SELECT v FROM kv WHERE k = $1", vec![i32v(50)]),
        ("DELETE FROM kv WHERE k = $1", vec![i32v(50)]),
        ("SELECT v FROM kv WHERE k = $1", vec![i32v(50)]),
        ("UPDATE kv SET v = v + 1 WHERE k = $1", vec![i32v(101)]),
        ("UPDATE kv SET v = 'x' WHERE k = $1", vec![i32v(101)]),
        ("SELECT v FROM kv WHERE k = $1", vec![i32v(101)]),
        ("ROLLBACK", vec![]),
        ("BEGIN READ ONLY", vec![]),
        ("SELECT v FROM kv WHERE k = $1", vec![i32v(101)]),
        ("UPDATE kv SET v = 1 WHERE k = $1", vec![i32v(101)]),
        ("ROLLBACK", vec![]),
        ("SELECT * FROM kv ORDER BY k", vec![]),
        ("SELECT * FROM c ORDER BY a, b", vec![]),
    ]
}

#[tokio::test]
async fn fast_path_matches_normal_path() {
    let (fast_db, slow_db) = (db(), db());
    let mut fast = session(&fast_db);
    let mut slow = session(&slow_db);
    for sql in SETUP {
        assert!(matches!(run(&mut fast, sql, vec![]).await, Outcome::Tag(_)));
        assert!(matches!(run(&mut slow, sql, vec![]).await, Outcome::Tag(_)));
    }
    assert_eq!(
        run(&mut slow, "SET weft.point_fast_path = off", vec![]).await,
        Outcome::Tag("SET".into())
    );
    for (sql, params) in script() {
        let hits = fast.point_path_hits();
        let a = run(&mut fast, sql, params.clone()).await;
        let b = run(&mut slow, sql, params).await;
        let point = fast.point_path_hits() > hits;
        eprintln!("{sql} -> {a:?} (fast path: {point})");
        assert_eq!(a, b, "{sql}");
    }
    assert_eq!(slow.point_path_hits(), 0);
    // Most of the script's SELECT/UPDATE/DELETE statements fit the fast path.
    assert!(fast.point_path_hits() >= 25, "{}", fast.point_path_hits());
}

#[tokio::test]
async fn fast_path_is_taken_for_the_benchmark_statements() {
    let db = db();
    let mut s = session(&db);
    run(&mut s, SETUP[0], vec![]).await;
    run(&mut s, SETUP[1], vec![]).await;
    let before = s.point_path_hits();
    let select = s.prepare("SELECT v FROM kv WHERE k = $1", &[]).await;
    let update = s.prepare("UPDATE kv SET v = v + 1 WHERE k = $1", &[]).await;
    let (Ok(select), Ok(update)) = (select, update) else {
        panic!("prepare failed");
    };
    for _ in 0..3 {
        assert!(s.execute(&select, vec![i32v(1)]).await.is_ok());
        assert!(s.execute(&update, vec![i32v(1)]).await.is_ok());
    }
    assert_eq!(s.point_path_hits() - before, 6);
    assert_eq!(
        run(&mut s, "SELECT v FROM kv WHERE k = 1", vec![]).await,
        Outcome::Rows(vec![("v".into(), 20)], vec![vec!["13".into()]])
    );
}

#[tokio::test]
async fn concurrent_point_updates_wait_or_conflict_with_40001() {
    let db = db();
    let mut a = session(&db);
    let mut b = session(&db);
    run(&mut a, SETUP[0], vec![]).await;
    run(&mut a, SETUP[1], vec![]).await;
    let sql = "UPDATE kv SET v = v + 1 WHERE k = $1";
    assert_eq!(
        run(&mut a, "BEGIN", vec![]).await,
        Outcome::Tag("BEGIN".into())
    );
    assert_eq!(
        run(&mut b, "BEGIN", vec![]).await,
        Outcome::Tag("BEGIN".into())
    );
    // b reads on its snapshot before a's update commits; its own update then fails.
    let read = "SELECT v FROM kv WHERE k = $1";
    assert_eq!(
        run(&mut b, read, vec![i32v(1)]).await,
        Outcome::Rows(vec![("v".into(), 20)], vec![vec!["10".into()]])
    );
    assert_eq!(
        run(&mut a, sql, vec![i32v(1)]).await,
        Outcome::Tag("UPDATE 1".into())
    );
    assert_eq!(
        run(&mut a, "COMMIT", vec![]).await,
        Outcome::Tag("COMMIT".into())
    );
    assert_eq!(
        run(&mut b, sql, vec![i32v(1)]).await,
        Outcome::Error("40001".into())
    );
    assert_eq!(
        run(&mut b, "ROLLBACK", vec![]).await,
        Outcome::Tag("ROLLBACK".into())
    );
    // An autocommit point update waits for a's lock on the row, then applies to a's row.
    assert_eq!(
        run(&mut a, "BEGIN", vec![]).await,
        Outcome::Tag("BEGIN".into())
    );
    assert_eq!(
        run(&mut a, sql, vec![i32v(1)]).await,
        Outcome::Tag("UPDATE 1".into())
    );
    let (committed, updated) = tokio::join!(
        run(&mut a, "COMMIT", vec![]),
        run(&mut b, sql, vec![i32v(1)])
    );
    assert_eq!(committed, Outcome::Tag("COMMIT".into()));
    assert_eq!(updated, Outcome::Tag("UPDATE 1".into()));
    assert_eq!(
        run(&mut b, read, vec![i32v(1)]).await,
        Outcome::Rows(vec![("v".into(), 20)], vec![vec!["13".into()]])
    );
    assert!(a.point_path_hits() >= 1 && b.point_path_hits() >= 2);
}

#[tokio::test]
async fn prepared_point_statements_follow_ddl() {
    let db = db();
    let mut s = session(&db);
    run(&mut s, SETUP[0], vec![]).await;
    run(&mut s, SETUP[1], vec![]).await;
    let Ok(select) = s.prepare("SELECT * FROM kv WHERE k = $1", &[]).await else {
        panic!("prepare failed");
    };
    let Ok(update) = s.prepare("UPDATE kv SET v = v + 1 WHERE k = $1", &[]).await else {
        panic!("prepare failed");
    };
    run(&mut s, "ALTER TABLE kv ADD COLUMN w int DEFAULT 7", vec![]).await;
    // The table changed: the fast path steps aside and the normal path re-plans.
    let hits = s.point_path_hits();
    assert!(s.execute(&update, vec![i32v(1)]).await.is_ok());
    assert!(s.execute(&select, vec![i32v(1)]).await.is_ok());
    assert_eq!(s.point_path_hits(), hits);
    assert_eq!(
        run(&mut s, "SELECT v, w FROM kv WHERE k = $1", vec![i32v(1)]).await,
        Outcome::Rows(
            vec![("v".into(), 20), ("w".into(), 23)],
            vec![vec!["11".into(), "7".into()]]
        )
    );
    run(&mut s, "DROP TABLE kv", vec![]).await;
    assert!(matches!(
        s.execute(&update, vec![i32v(1)]).await,
        Err(e) if e.sqlstate() == "42P01"
    ));
}
