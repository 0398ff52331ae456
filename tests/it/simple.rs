//! The simple query protocol through tokio-postgres.

use super::support::{connect, counts, rows, scalar, server, sqlstate};

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn select_one() {
    let srv = server().await;
    let c = connect(&srv).await;
    assert_eq!(scalar(&c, "select 1").await, s("1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn multi_statement_and_empty_queries() {
    let srv = server().await;
    let c = connect(&srv).await;
    let m = c
        .simple_query("select 1; select 2, 'x'")
        .await
        .expect("runs");
    assert_eq!(rows(&m), vec![vec![s("1")], vec![s("2"), s("x")]]);
    assert_eq!(counts(&m), vec![1, 1]);
    // EmptyQueryResponse shows up as a zero-row completion.
    let m = c.simple_query("").await.expect("empty query is fine");
    assert_eq!(counts(&m), vec![0]);
    c.batch_execute("").await.expect("empty batch is fine");
}

#[tokio::test(flavor = "multi_thread")]
async fn ddl_and_dml_tags() {
    let srv = server().await;
    let c = connect(&srv).await;
    c.batch_execute("create table t (id int primary key, v text)")
        .await
        .expect("create");
    let m = c
        .simple_query("insert into t values (1, 'a'), (2, 'b'), (3, null)")
        .await
        .expect("insert");
    assert_eq!(counts(&m), vec![3]);
    let m = c
        .simple_query("update t set v = 'z' where id >= 2")
        .await
        .expect("update");
    assert_eq!(counts(&m), vec![2]);
    let m = c
        .simple_query("delete from t where id = 1")
        .await
        .expect("delete");
    assert_eq!(counts(&m), vec![1]);
    let m = c
        .simple_query("select id, v from t order by id")
        .await
        .expect("select");
    assert_eq!(rows(&m), vec![vec![s("2"), s("z")], vec![s("3"), s("z")]]);
}

#[tokio::test(flavor = "multi_thread")]
async fn stops_at_first_error_and_stays_usable() {
    let srv = server().await;
    let c = connect(&srv).await;
    c.batch_execute("create table t (x int)")
        .await
        .expect("create");
    let e = c
        .simple_query(
            "insert into t values (1); select * from no_such_table; insert into t values (2)",
        )
        .await
        .expect_err("second statement fails");
    assert_eq!(sqlstate(&e), "42P01");
    assert_eq!(
        scalar(&c, "select count(*) from t where x = 2").await,
        s("0"),
        "third statement never ran"
    );
    assert_eq!(scalar(&c, "select 40 + 2").await, s("42"));
}

#[tokio::test(flavor = "multi_thread")]
async fn explicit_transactions() {
    let srv = server().await;
    let c = connect(&srv).await;
    c.batch_execute("create table t (x int)")
        .await
        .expect("create");
    c.batch_execute("begin; insert into t values (1); rollback")
        .await
        .expect("rolled back");
    assert_eq!(scalar(&c, "select count(*) from t").await, s("0"));
    c.batch_execute("begin; insert into t values (1); commit")
        .await
        .expect("committed");
    assert_eq!(scalar(&c, "select count(*) from t").await, s("1"));
}

/// An operator chain is parsed in a loop, one level of the tree per operator: 20,000 of them
/// used to overflow a worker's stack and abort the whole server. Now the statement is refused
/// (54000), in either protocol, and the connection goes on.
#[tokio::test(flavor = "multi_thread")]
async fn a_statement_nested_too_deeply_is_refused_and_the_server_stays_up() {
    let srv = server().await;
    let c = connect(&srv).await;
    let chain = format!("select 1{}", " + 1".repeat(20_000));
    let ors = format!("select 1 where {}", vec!["1 = 1"; 20_000].join(" or "));
    for sql in [&chain, &ors] {
        let e = c.simple_query(sql).await.expect_err("refused");
        assert_eq!(sqlstate(&e), "54000", "{e:?}");
        let e = c.prepare(sql).await.expect_err("refused when prepared too");
        assert_eq!(sqlstate(&e), "54000", "{e:?}");
    }
    // A chain within the limit still runs.
    let short = format!("select 1{}", " + 1".repeat(50));
    assert_eq!(scalar(&c, &short).await.as_deref(), Some("51"));
    assert_eq!(scalar(&c, "select 1").await.as_deref(), Some("1"));
}
