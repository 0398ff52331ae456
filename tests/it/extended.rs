//! The extended query protocol through tokio-postgres (binary results).

use tokio_postgres::types::Type;

use super::support::{connect, server, sqlstate};

#[tokio::test(flavor = "multi_thread")]
async fn parameters_and_reuse() {
    let srv = server().await;
    let c = connect(&srv).await;
    let stmt = c
        .prepare("select $1::int4 + $2::int4")
        .await
        .expect("prepares");
    assert_eq!(stmt.params(), &[Type::INT4, Type::INT4]);
    for i in 0..3 {
        let row = c.query_one(&stmt, &[&i, &10i32]).await.expect("runs");
        assert_eq!(row.get::<_, i32>(0), i + 10);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn generate_series_takes_a_parameter_bound() {
    let srv = server().await;
    let c = connect(&srv).await;
    let stmt = c
        .prepare("SELECT g FROM generate_series(1, $1) g")
        .await
        .expect("prepares");
    assert_eq!(stmt.params(), &[Type::INT4]);
    assert_eq!(stmt.columns()[0].type_(), &Type::INT4);
    for n in [0, 3] {
        let got: Vec<i32> = c
            .query(&stmt, &[&n])
            .await
            .expect("runs")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(got, (1..=n).collect::<Vec<_>>());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn make_interval_takes_named_parameters_typed_as_postgresql_infers_them() {
    let srv = server().await;
    let c = connect(&srv).await;
    let stmt = c
        .prepare("SELECT (timestamp '2020-01-10' - make_interval(days => $1, secs => $2))::text")
        .await
        .expect("prepares");
    assert_eq!(stmt.params(), &[Type::INT4, Type::FLOAT8]);
    let row = c.query_one(&stmt, &[&3i32, &1.5f64]).await.expect("runs");
    assert_eq!(row.get::<_, String>(0), "2020-01-06 23:59:58.5");
}

#[tokio::test(flavor = "multi_thread")]
async fn dml_counts_and_rows() {
    let srv = server().await;
    let c = connect(&srv).await;
    c.batch_execute("create table t (id bigint primary key, name text)")
        .await
        .expect("create");
    let insert = c
        .prepare("insert into t values ($1, $2)")
        .await
        .expect("prepares");
    for (id, name) in [(1i64, "one"), (2, "two"), (3, "three")] {
        assert_eq!(c.execute(&insert, &[&id, &name]).await.expect("inserts"), 1);
    }
    let n = c
        .execute("update t set name = upper(name) where id > $1", &[&1i64])
        .await
        .expect("updates");
    assert_eq!(n, 2);
    let rows = c
        .query("select id, name from t order by id", &[])
        .await
        .expect("selects");
    let got: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        vec![(1, "one".into()), (2, "TWO".into()), (3, "THREE".into())]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn portal_paging() {
    let srv = server().await;
    let mut c = connect(&srv).await;
    let tx = c.transaction().await.expect("begins");
    let stmt = tx
        .prepare("select x from (values (1), (2), (3), (4), (5)) as t(x) order by x")
        .await
        .expect("prepares");
    let portal = tx.bind(&stmt, &[]).await.expect("binds");
    let mut pages = Vec::new();
    loop {
        let page: Vec<i32> = tx
            .query_portal(&portal, 2)
            .await
            .expect("fetches")
            .iter()
            .map(|r| r.get(0))
            .collect();
        if page.is_empty() {
            break;
        }
        pages.push(page);
    }
    assert_eq!(pages, vec![vec![1, 2], vec![3, 4], vec![5]]);
    tx.commit().await.expect("commits");
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_leave_the_connection_usable() {
    let srv = server().await;
    let c = connect(&srv).await;
    let e = c
        .prepare("select * from no_such_table")
        .await
        .expect_err("fails");
    assert_eq!(sqlstate(&e), "42P01");
    let e = c
        .query("select 1 / $1::int4", &[&0i32])
        .await
        .expect_err("fails");
    assert_eq!(sqlstate(&e), "22012");
    let row = c
        .query_one("select $1::text", &[&"still here"])
        .await
        .expect("works");
    assert_eq!(row.get::<_, &str>(0), "still here");
}

/// `v + n` past bigint's range is 22003 on the prepared primary-key fast path and on the
/// normal path alike (DataFusion's integer add wraps around), and the row is left as it was.
#[tokio::test(flavor = "multi_thread")]
async fn update_overflow_is_out_of_range_on_every_path() {
    let srv = server().await;
    let c = connect(&srv).await;
    c.batch_execute(
        "create table kv (k int primary key, v bigint); insert into kv values (1, 100), (2, 100)",
    )
    .await
    .expect("setup");
    let point = c
        .prepare("update kv set v = v + 9223372036854775800 where k = $1")
        .await
        .expect("prepares");
    let e = c.execute(&point, &[&1i32]).await.expect_err("overflows");
    assert_eq!(sqlstate(&e), "22003", "{e:?}");
    let by_param = c
        .prepare("update kv set v = v + $2 where k = $1")
        .await
        .expect("prepares");
    let e = c
        .execute(&by_param, &[&1i32, &i64::MAX])
        .await
        .expect_err("overflows");
    assert_eq!(sqlstate(&e), "22003", "{e:?}");
    for sql in [
        "update kv set v = v + 9223372036854775800",
        "update kv set v = v * 100000000000000000 where k > 0",
        "update kv set v = v - 9223372036854775800 - 200 where k = 2",
    ] {
        let e = c.batch_execute(sql).await.expect_err("overflows");
        assert_eq!(sqlstate(&e), "22003", "{sql}: {e:?}");
    }
    let rows = c
        .query("select v from kv order by k", &[])
        .await
        .expect("selects");
    let got: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(got, vec![100, 100]);
}

/// `col = ANY($1)` binds a list: the parameter's type is inferred as an array of the column's type
/// (tokio-postgres then sends it in binary), or declared by the client; NULL elements and an
/// empty list work.
#[tokio::test(flavor = "multi_thread")]
async fn a_list_binds_to_any() {
    let srv = server().await;
    let c = connect(&srv).await;
    c.batch_execute(
        "create table anyt (id int primary key, name text, big bigint); \
         insert into anyt values (1, 'a', 10), (2, 'b c', 20), (3, null, 30)",
    )
    .await
    .expect("setup");
    let ids =
        |rows: Vec<tokio_postgres::Row>| -> Vec<i32> { rows.iter().map(|r| r.get(0)).collect() };
    let q = "select id from anyt where id = any($1) order by id";
    let statement = c.prepare(q).await.expect("prepare");
    assert_eq!(statement.params()[0].name(), "_int4");
    let rows = c
        .query(&statement, &[&vec![1i32, 3]])
        .await
        .expect("int list");
    assert_eq!(ids(rows), vec![1, 3]);
    let rows = c
        .query(&statement, &[&Vec::<i32>::new()])
        .await
        .expect("empty list");
    assert_eq!(ids(rows), Vec::<i32>::new());
    let rows = c
        .query(&statement, &[&vec![Some(2i32), None]])
        .await
        .expect("list with a NULL");
    assert_eq!(ids(rows), vec![2]);
    let rows = c
        .query(
            "select id from anyt where name = any($1) order by id",
            &[&vec!["b c".to_string(), "zz".to_string()]],
        )
        .await
        .expect("text list");
    assert_eq!(ids(rows), vec![2]);
    let rows = c
        .query(
            "select id from anyt where big <> all($1) order by id",
            &[&vec![10i64]],
        )
        .await
        .expect("bigint list with ALL");
    assert_eq!(ids(rows), vec![2, 3]);
}

/// JSON built by the JSON functions reaches a driver typed as json/jsonb (tokio-postgres reads
/// both in binary into serde_json values), rows of a table included.
#[tokio::test]
async fn json_functions_decode_as_json_in_a_driver() {
    let srv = server().await;
    let c = connect(&srv).await;
    c.batch_execute(
        "create table jdoc (id int primary key, name text, meta jsonb); \
         insert into jdoc values (1, 'a', '{\"k\": [1, 2]}'), (2, 'b', null)",
    )
    .await
    .expect("setup");
    let row = c
        .query_one(
            "select json_build_object('id', $1::int, 'tags', array['x', 'y']), \
                    jsonb_agg(j order by j.id), \
                    (select meta #> '{k,1}' from jdoc where id = 1) \
             from jdoc j",
            &[&7i32],
        )
        .await
        .expect("json query");
    let built: serde_json::Value = row.get(0);
    assert_eq!(built, serde_json::json!({"id": 7, "tags": ["x", "y"]}));
    let rows: serde_json::Value = row.get(1);
    assert_eq!(
        rows,
        serde_json::json!([
            {"id": 1, "name": "a", "meta": {"k": [1, 2]}},
            {"id": 2, "name": "b", "meta": null}
        ])
    );
    let element: serde_json::Value = row.get(2);
    assert_eq!(element, serde_json::json!(2));
}

/// A row reference to the NULL-extended side of an outer join is refused (42703) rather than
/// answered with a row of NULL columns (PostgreSQL's answer there is NULL, which Weft cannot
/// give yet); on an inner join it is the row.
#[tokio::test]
async fn row_of_an_outer_join_side_is_refused_not_wrong() {
    let srv = server().await;
    let c = connect(&srv).await;
    c.batch_execute(
        "create table ra (id int primary key); create table rb (id int primary key, v text); \
         insert into ra values (1), (2); insert into rb values (1, 'x')",
    )
    .await
    .expect("setup");
    let e = c
        .query(
            "select row_to_json(b) from ra left join rb b on b.id = ra.id",
            &[],
        )
        .await
        .expect_err("outer join row");
    assert_eq!(e.code().map(|c| c.code()), Some("42703"), "{e}");
    let rows = c
        .query(
            "select row_to_json(b) from ra join rb b on b.id = ra.id",
            &[],
        )
        .await
        .expect("inner join row");
    let row: serde_json::Value = rows[0].get(0);
    assert_eq!(row, serde_json::json!({"id": 1, "v": "x"}));
}

/// A prepared scalar subquery whose condition is a parameter: once bound, the condition folds
/// away and the subquery has no row; its value is NULL (it failed with "declared as
/// non-nullable but contains null values").
#[tokio::test(flavor = "multi_thread")]
async fn scalar_subquery_without_a_row_is_null() {
    let srv = server().await;
    let c = connect(&srv).await;
    let stmt = c
        .prepare("select (select 1 where $1::int = 2)")
        .await
        .expect("prepares");
    let row = c.query_one(&stmt, &[&1i32]).await.expect("no row");
    assert_eq!(row.get::<_, Option<i32>>(0), None);
    let row = c.query_one(&stmt, &[&2i32]).await.expect("a row");
    assert_eq!(row.get::<_, Option<i32>>(0), Some(1));
}
