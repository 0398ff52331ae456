//! Every supported column type through both protocols: parameters in binary (tokio-postgres),
//! results in binary (tokio-postgres) and in text (simple query, compared with PostgreSQL's
//! output).

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use rust_decimal::Decimal;
use tokio_postgres::types::ToSql;

use super::support::{connect, rows, server};

const CREATE: &str = "create table ty (
    id int primary key, b bool, i2 smallint, i4 int, i8 bigint, f4 real, f8 double precision,
    n numeric(20, 4), t text, vc varchar(10), bc char(3), by bytea, d date, ts timestamp,
    tz timestamptz, u uuid, j jsonb)";
const COLUMNS: &str = "b, i2, i4, i8, f4, f8, n, t, vc, bc, by, d, ts, tz, u, j";

struct Values {
    b: bool,
    i2: i16,
    i4: i32,
    i8: i64,
    f4: f32,
    f8: f64,
    n: Decimal,
    t: String,
    vc: String,
    bc: String,
    by: Vec<u8>,
    d: NaiveDate,
    ts: NaiveDateTime,
    tz: DateTime<Utc>,
    u: uuid::Uuid,
    j: serde_json::Value,
}

fn sample() -> Values {
    let micros = 1_706_700_000_123_400_i64;
    Values {
        b: true,
        i2: -2,
        i4: 4,
        i8: 8_000_000_000,
        f4: 1.5,
        f8: 0.1,
        n: "3.1416".parse().expect("decimal"),
        t: "héllo, 'world'".into(),
        vc: "short".into(),
        bc: "ab ".into(),
        by: vec![1, 2, 255],
        d: NaiveDate::from_ymd_opt(2024, 1, 31).expect("date"),
        ts: DateTime::from_timestamp_micros(micros)
            .expect("ts")
            .naive_utc(),
        tz: DateTime::from_timestamp_micros(micros).expect("ts"),
        u: uuid::Uuid::parse_str("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").expect("uuid"),
        j: serde_json::json!({"a": [1, 2], "b": null}),
    }
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_type_round_trips() {
    let srv = server().await;
    let c = connect(&srv).await;
    c.batch_execute(CREATE).await.expect("create");
    let v = sample();
    let params: [&(dyn ToSql + Sync); 17] = [
        &1i32, &v.b, &v.i2, &v.i4, &v.i8, &v.f4, &v.f8, &v.n, &v.t, &v.vc, &v.bc, &v.by, &v.d,
        &v.ts, &v.tz, &v.u, &v.j,
    ];
    let placeholders: Vec<String> = (1..=17).map(|i| format!("${i}")).collect();
    let insert = format!(
        "insert into ty (id, {COLUMNS}) values ({})",
        placeholders.join(", ")
    );
    assert_eq!(c.execute(&insert, &params).await.expect("inserts"), 1);
    c.execute("insert into ty (id) values ($1)", &[&2i32])
        .await
        .expect("inserts nulls");

    // Binary results, read back with postgres-types.
    let row = c
        .query_one(&format!("select {COLUMNS} from ty where id = $1"), &[&1i32])
        .await
        .expect("selects");
    assert_eq!(row.get::<_, bool>(0), v.b);
    assert_eq!(row.get::<_, i16>(1), v.i2);
    assert_eq!(row.get::<_, i32>(2), v.i4);
    assert_eq!(row.get::<_, i64>(3), v.i8);
    assert_eq!(row.get::<_, f32>(4), v.f4);
    assert_eq!(row.get::<_, f64>(5), v.f8);
    assert_eq!(row.get::<_, Decimal>(6), v.n);
    assert_eq!(row.get::<_, String>(7), v.t);
    assert_eq!(row.get::<_, String>(8), v.vc);
    assert_eq!(row.get::<_, String>(9), v.bc);
    assert_eq!(row.get::<_, Vec<u8>>(10), v.by);
    assert_eq!(row.get::<_, NaiveDate>(11), v.d);
    assert_eq!(row.get::<_, NaiveDateTime>(12), v.ts);
    assert_eq!(row.get::<_, DateTime<Utc>>(13), v.tz);
    assert_eq!(row.get::<_, uuid::Uuid>(14), v.u);
    assert_eq!(row.get::<_, serde_json::Value>(15), v.j);

    let row = c
        .query_one(&format!("select {COLUMNS} from ty where id = $1"), &[&2i32])
        .await
        .expect("selects");
    assert_eq!(row.get::<_, Option<bool>>(0), None);
    assert_eq!(row.get::<_, Option<i64>>(3), None);
    assert_eq!(row.get::<_, Option<Decimal>>(6), None);
    assert_eq!(row.get::<_, Option<String>>(7), None);
    assert_eq!(row.get::<_, Option<DateTime<Utc>>>(13), None);
    assert_eq!(row.get::<_, Option<uuid::Uuid>>(14), None);
    assert_eq!(row.get::<_, Option<serde_json::Value>>(15), None);

    // Text results, as PostgreSQL prints them.
    let m = c
        .simple_query(&format!("select {COLUMNS} from ty order by id"))
        .await
        .expect("selects");
    let text = rows(&m);
    assert_eq!(
        text[0],
        vec![
            s("t"),
            s("-2"),
            s("4"),
            s("8000000000"),
            s("1.5"),
            s("0.1"),
            s("3.1416"),
            s("héllo, 'world'"),
            s("short"),
            s("ab "),
            s("\\x0102ff"),
            s("2024-01-31"),
            s("2024-01-31 11:20:00.1234"),
            s("2024-01-31 11:20:00.1234+00"),
            s("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            s(r#"{"a": [1, 2], "b": null}"#),
        ]
    );
    assert_eq!(text[1], vec![None; 16]);
}

#[tokio::test(flavor = "multi_thread")]
async fn integer_parameters_of_another_width() {
    let srv = server().await;
    let c = connect(&srv).await;
    c.batch_execute("create table w (id bigint primary key, small smallint)")
        .await
        .expect("create");
    // The client declares int4 for a bigint and a smallint column, as some drivers do.
    let stmt = c
        .prepare_typed(
            "insert into w values ($1, $2)",
            &[
                tokio_postgres::types::Type::INT4,
                tokio_postgres::types::Type::INT4,
            ],
        )
        .await
        .expect("prepares");
    c.execute(&stmt, &[&7i32, &9i32]).await.expect("inserts");
    let row = c
        .query_one("select id, small from w", &[])
        .await
        .expect("selects");
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i16>(1)), (7, 9));
}

#[tokio::test(flavor = "multi_thread")]
async fn float_text_like_postgres() {
    let srv = server().await;
    let c = connect(&srv).await;
    let m = c
        .simple_query("select 1e20::float8, 0.00001::float8, 'NaN'::float8, '-Infinity'::float8, 100000::float4, 1000000::float4")
        .await
        .expect("selects");
    assert_eq!(
        rows(&m)[0],
        vec![
            s("1e+20"),
            s("1e-05"),
            s("NaN"),
            s("-Infinity"),
            s("100000"),
            s("1e+06")
        ]
    );
}

/// Integer literals are int4 in RowDescription, as in PostgreSQL, so a driver reads `SELECT 1`
/// as an i32 (tokio-postgres refuses to read an int8 column as i32); a literal beyond 32 bits,
/// or arithmetic with a bigint, stays int8.
#[tokio::test(flavor = "multi_thread")]
async fn integer_literals_are_int4() {
    use tokio_postgres::types::Type;
    let srv = server().await;
    let c = connect(&srv).await;
    c.batch_execute("create table big (id bigint primary key)")
        .await
        .expect("create");
    c.batch_execute("insert into big values (5)")
        .await
        .expect("insert");
    let cases: [(&str, &[Type]); 13] = [
        ("select 1", &[Type::INT4]),
        ("select 1 + 1, -7", &[Type::INT4, Type::INT4]),
        ("select 3000000000, 2147483647", &[Type::INT8, Type::INT4]),
        ("select 1 as a union all select 2", &[Type::INT4]),
        ("select 1 union all select 3000000000", &[Type::INT8]),
        (
            "select x, y from (values (1, 3000000000), (2, 4)) v(x, y)",
            &[Type::INT4, Type::INT8],
        ),
        (
            "select id, id + 1, 1 from big",
            &[Type::INT8, Type::INT8, Type::INT4],
        ),
        ("select 1, now() is not null", &[Type::INT4, Type::BOOL]),
        (
            "select sum(x), sum(y), avg(x) from (values (1, 3000000000), (2, 4)) v(x, y)",
            &[Type::INT8, Type::NUMERIC, Type::NUMERIC],
        ),
        (
            "select date '2020-03-01' - date '2020-02-01', \
             array_length(array[1, 2], 1), cardinality(array[1]), array_position(array[5, 6], 6)",
            &[Type::INT4, Type::INT4, Type::INT4, Type::INT4],
        ),
        (
            "select array[1, 2], array[3000000000], array_append(array[1], 2)",
            &[Type::INT4_ARRAY, Type::INT8_ARRAY, Type::INT4_ARRAY],
        ),
        (
            "select g, generate_series(1, 2) from generate_series(1, 3) g",
            &[Type::INT4, Type::INT4],
        ),
        (
            "select g from generate_series(1, 3000000000) g limit 1",
            &[Type::INT8],
        ),
    ];
    for (sql, types) in cases {
        let stmt = c.prepare(sql).await.expect(sql);
        let got: Vec<Type> = stmt.columns().iter().map(|c| c.type_().clone()).collect();
        assert_eq!(got, types, "{sql}");
    }
    let row = c.query_one("select 1, 1 + 1", &[]).await.expect("select");
    assert_eq!((row.get::<_, i32>(0), row.get::<_, i32>(1)), (1, 2));
    let row = c
        .query_one(
            "select date '2020-03-01' - date '2020-02-01', array_length(array[1, 2], 1), \
             sum(x) from (values (1), (2)) v(x)",
            &[],
        )
        .await
        .expect("select");
    assert_eq!(
        (
            row.get::<_, i32>(0),
            row.get::<_, i32>(1),
            row.get::<_, i64>(2)
        ),
        (29, 2, 3)
    );
    let rows = c
        .query("select x from (values (3), (1), (2)) v(x)", &[])
        .await
        .expect("values");
    let got: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(got, [3, 1, 2]);
    // A series in a select list is built whole: a huge one is refused (PostgreSQL streams it;
    // here it took tens of gigabytes and panicked), and the connection stays usable.
    let err = c
        .query("select generate_series(1, 3000000000) limit 2", &[])
        .await
        .expect_err("too long a series");
    assert_eq!(err.code().map(|s| s.code()), Some("54000"), "{err:?}");
    let rows = c
        .query(
            "select g from generate_series(1, 3000000000) g limit 2",
            &[],
        )
        .await
        .expect("FROM streams");
    assert_eq!(
        rows.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>(),
        [1, 2]
    );
    // CREATE TABLE AS keeps the query's types.
    c.batch_execute("create table lit as select 1 as a, 3000000000 as b")
        .await
        .expect("ctas");
    let row = c
        .query_one(
            "select format_type(atttypid, atttypmod) from pg_attribute \
             where attrelid = 'lit'::regclass and attname = 'a'",
            &[],
        )
        .await
        .expect("attribute");
    assert_eq!(row.get::<_, String>(0), "integer");
}

/// A cast to text is text in RowDescription, whatever it casts: DataFusion kept the operand's
/// type on a cast to a bare type, so `jsonb::text` was described (and decoded) as jsonb.
#[tokio::test(flavor = "multi_thread")]
async fn a_cast_to_text_is_text() {
    use tokio_postgres::types::Type;
    let srv = server().await;
    let c = connect(&srv).await;
    let row = c
        .query_one(
            "select '{\"a\":1}'::jsonb::text, json_build_object('a', 1)::text, \
             interval '1 day'::text",
            &[],
        )
        .await
        .expect("select");
    let types: Vec<Type> = row.columns().iter().map(|c| c.type_().clone()).collect();
    assert_eq!(types, [Type::TEXT, Type::TEXT, Type::TEXT]);
    assert_eq!(
        (
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, String>(2)
        ),
        ("{\"a\": 1}".into(), "{\"a\" : 1}".into(), "1 day".into())
    );
}

/// Array columns through tokio-postgres: parameters bound in binary (text[], int4[], int8[],
/// uuid[], numeric[] with NULL elements), results read in binary with their array types, and
/// the containment operators with a bound array.
#[tokio::test(flavor = "multi_thread")]
async fn array_columns_round_trip() {
    use tokio_postgres::types::Type;
    let srv = server().await;
    let c = connect(&srv).await;
    c.batch_execute(
        "create table arr (id int primary key, tags text[], nums int[], big bigint[], \
         ids uuid[], amounts numeric(8,2)[], days date[])",
    )
    .await
    .expect("create");
    let tags = vec![Some("a".to_string()), None, Some("b c".to_string())];
    let nums = vec![1i32, -2, 3];
    let big = vec![Some(1i64 << 40), None];
    let ids = vec![uuid::Uuid::from_u128(5)];
    let amounts = vec![Decimal::new(125, 2), Decimal::new(-5, 0)];
    let days = vec![NaiveDate::from_ymd_opt(2024, 2, 29).expect("date")];
    let empty: Vec<String> = Vec::new();
    c.execute(
        "insert into arr values (1, $1, $2, $3, $4, $5, $6), (2, $7, null, null, null, null, null)",
        &[&tags, &nums, &big, &ids, &amounts, &days, &empty],
    )
    .await
    .expect("inserts");

    let row = c
        .query_one("select * from arr where id = 1", &[])
        .await
        .expect("selects");
    let types: Vec<Type> = row.columns().iter().map(|c| c.type_().clone()).collect();
    assert_eq!(
        types,
        vec![
            Type::INT4,
            Type::TEXT_ARRAY,
            Type::INT4_ARRAY,
            Type::INT8_ARRAY,
            Type::UUID_ARRAY,
            Type::NUMERIC_ARRAY,
            Type::DATE_ARRAY
        ]
    );
    assert_eq!(row.get::<_, Vec<Option<String>>>(1), tags);
    assert_eq!(row.get::<_, Vec<i32>>(2), nums);
    assert_eq!(row.get::<_, Vec<Option<i64>>>(3), big);
    assert_eq!(row.get::<_, Vec<uuid::Uuid>>(4), ids);
    assert_eq!(row.get::<_, Vec<Decimal>>(5), amounts);
    assert_eq!(row.get::<_, Vec<NaiveDate>>(6), days);
    let row = c
        .query_one("select tags, nums from arr where id = 2", &[])
        .await
        .expect("selects");
    assert_eq!(row.get::<_, Vec<String>>(0), empty);
    assert_eq!(row.get::<_, Option<Vec<i32>>>(1), None);

    let ids_of =
        |rows: Vec<tokio_postgres::Row>| -> Vec<i32> { rows.iter().map(|r| r.get(0)).collect() };
    let wanted = vec!["b c".to_string()];
    for (sql, want) in [
        ("select id from arr where tags @> $1 order by id", vec![1]),
        ("select id from arr where $1 <@ tags order by id", vec![1]),
        ("select id from arr where tags && $1 order by id", vec![1]),
    ] {
        let got = c.query(sql, &[&wanted]).await.expect(sql);
        assert_eq!(ids_of(got), want, "{sql}");
    }
    let got = c
        .query("select id from arr where nums = $1", &[&nums])
        .await
        .expect("equality");
    assert_eq!(ids_of(got), vec![1]);
    let got = c
        .query("select id from arr where $1 = any(nums)", &[&-2i32])
        .await
        .expect("any");
    assert_eq!(ids_of(got), vec![1]);

    // A bad element is the element type's error, and the connection goes on.
    let err = c
        .batch_execute("insert into arr (id, nums) values (3, '{1,x}')")
        .await
        .expect_err("bad element");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_TEXT_REPRESENTATION)
    );
    let err = c
        .batch_execute("insert into arr (id, nums) values (3, '{{1},{2}}')")
        .await
        .expect_err("two dimensions");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::FEATURE_NOT_SUPPORTED)
    );
    let n: i64 = c
        .query_one("select count(*) from arr", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 2);

    // A ragged list of lists has no binary array form (tokio-postgres reads results in binary).
    c.batch_execute("insert into arr (id, nums) values (3, '{9}')")
        .await
        .expect("inserts");
    let err = c
        .query(
            "select array_agg(nums order by id) from arr where id <> 2",
            &[],
        )
        .await
        .expect_err("ragged two-dimensional array");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::ARRAY_SUBSCRIPT_ERROR)
    );
    let n: i64 = c
        .query_one("select count(*) from arr", &[])
        .await
        .expect("the connection goes on")
        .get(0);
    assert_eq!(n, 3);
}
