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

/// Output columns are named as PostgreSQL names them, in the outer query and through a derived
/// table or CTE, so a client reading rows by column name finds them.
#[tokio::test(flavor = "multi_thread")]
async fn columns_are_named_as_postgresql_names_them() {
    let srv = server().await;
    let c = connect(&srv).await;
    c.batch_execute("create table nm (a int primary key, b text)")
        .await
        .expect("create");
    let cases: &[(&str, &[&str])] = &[
        (
            "select substr('ab', 1), substring('ab' from 1), position('a' in 'b'), trim(' a '), \
             trim(leading ' ' from 'a'), ceil(1.5), floor(1.5), overlay('abc' placing 'x' from 1)",
            &["substr", "substring", "position", "btrim", "ltrim", "ceil", "floor", "overlay"],
        ),
        (
            "select array[1], (1, 2), date '2024-01-01', interval '1 day', \
             now() at time zone 'utc', extract(year from now()), 'a'::varchar(3), 'a'::char(2), 1 + 1",
            &[
                "array", "row", "date", "interval", "timezone", "extract", "varchar", "bpchar",
                "?column?",
            ],
        ),
        (
            "select * from (select 1, count(*), max(a), upper(b) from nm group by b) s",
            &["?column?", "count", "max", "upper"],
        ),
        (
            "with t as (select a + 1, sum(a) from nm group by a) select * from t",
            &["?column?", "sum"],
        ),
        ("select t.* from (select a::text from nm) t", &["a"]),
        ("select count(*), count(*) from nm", &["count", "count"]),
        ("select * from generate_series(1, 2)", &["generate_series"]),
        ("select generate_series(1, 2), 1 as x", &["generate_series", "x"]),
        ("select * from unnest(array[1])", &["unnest"]),
        ("select * from unnest(array[1]) u", &["u"]),
        // Casts wrapped apart so that DataFusion takes the two for two (rewrite.rs).
        (
            "select a::int8, sum(a), sum(a::int8), variance(a) from nm group by a::int8, a",
            &["a", "sum", "sum", "variance"],
        ),
        ("select |/ 16, @ -5, abs(-5), sqrt(4)", &["?column?", "?column?", "abs", "sqrt"]),
        (
            "select * from jsonb_to_record('{}') as r(k int, \"V\" text)",
            &["k", "V"],
        ),
    ];
    for (sql, names) in cases {
        let statement = c.prepare(sql).await.expect(sql);
        let got: Vec<&str> = statement.columns().iter().map(|c| c.name()).collect();
        assert_eq!(&got, names, "{sql}");
    }
    // The names are usable from the outer query, as in PostgreSQL.
    c.batch_execute("insert into nm values (1, 'x'), (2, 'x')")
        .await
        .expect("insert");
    assert_eq!(
        scalar(
            &c,
            "select count + max from (select count(*), max(a) from nm) s"
        )
        .await,
        s("4")
    );
}
