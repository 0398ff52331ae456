//! Push end to end: LISTEN/NOTIFY with PostgreSQL's semantics, live queries, `weft_changes`,
//! overflow and restart. Every wait is bounded by a deadline; ordering is checked with marker
//! notifications rather than sleeps.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value as Json;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_postgres::AsyncMessage;
use weft::server::TestServer;

use super::support::{
    connect, connect_with_messages, recv_within, rows, scalar, server, sqlstate, DEADLINE,
};

/// The next notification as (channel, payload); notices are returned as ("NOTICE", message).
async fn next(rx: &mut UnboundedReceiver<AsyncMessage>) -> (String, String) {
    match recv_within(rx, DEADLINE).await {
        Some(AsyncMessage::Notification(n)) => (n.channel().to_string(), n.payload().to_string()),
        Some(AsyncMessage::Notice(n)) => ("NOTICE".to_string(), n.message().to_string()),
        Some(other) => panic!("unexpected message {other:?}"),
        None => panic!("nothing arrived within {DEADLINE:?}"),
    }
}

fn json(payload: &str) -> Json {
    serde_json::from_str(payload).unwrap_or_else(|e| panic!("payload is not JSON ({e}): {payload}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn notify_is_delivered_only_at_commit_and_in_commit_order() {
    let srv = server().await;
    let (listener, mut rx) = connect_with_messages(&srv).await;
    listener.batch_execute("LISTEN ch").await.expect("listens");
    let a = connect(&srv).await;
    let b = connect(&srv).await;

    a.batch_execute("BEGIN; NOTIFY ch, 'from a'")
        .await
        .expect("notifies in a transaction");
    b.batch_execute("NOTIFY ch, 'from b'")
        .await
        .expect("notifies");
    // b committed first: its notification arrives first, a's is not sent before a commits.
    assert_eq!(next(&mut rx).await, ("ch".into(), "from b".into()));
    a.batch_execute("COMMIT").await.expect("commits");
    assert_eq!(next(&mut rx).await, ("ch".into(), "from a".into()));

    // Rolled back: never sent.
    a.batch_execute("BEGIN; NOTIFY ch, 'lost'; ROLLBACK")
        .await
        .expect("rolls back");
    b.batch_execute("NOTIFY ch, 'marker'")
        .await
        .expect("notifies");
    assert_eq!(next(&mut rx).await, ("ch".into(), "marker".into()));
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicates_in_one_transaction_are_sent_once() {
    let srv = server().await;
    let (listener, mut rx) = connect_with_messages(&srv).await;
    listener.batch_execute("LISTEN ch").await.expect("listens");
    let c = connect(&srv).await;
    c.batch_execute(
        "BEGIN; NOTIFY ch, 'x'; NOTIFY ch, 'x'; NOTIFY ch, 'y'; SELECT pg_notify('ch', 'x'); COMMIT",
    )
    .await
    .expect("notifies");
    c.batch_execute("NOTIFY ch, 'end'").await.expect("notifies");
    assert_eq!(next(&mut rx).await.1, "x");
    assert_eq!(next(&mut rx).await.1, "y");
    assert_eq!(next(&mut rx).await.1, "end");
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_notify_payload_limits_and_channel_names() {
    let srv = server().await;
    let (listener, mut rx) = connect_with_messages(&srv).await;
    listener
        .batch_execute("LISTEN \"MixedCase\"; LISTEN lower")
        .await
        .expect("listens");
    let c = connect(&srv).await;
    let big = "p".repeat(7999);
    c.query("SELECT pg_notify('MixedCase', $1)", &[&big])
        .await
        .expect("a payload under 8000 bytes is fine");
    assert_eq!(next(&mut rx).await, ("MixedCase".into(), big));
    let too_big = "p".repeat(8000);
    let e = c
        .query("SELECT pg_notify('x', $1)", &[&too_big])
        .await
        .expect_err("8000 bytes is too long");
    assert_eq!(sqlstate(&e), "22023");
    let e = c
        .batch_execute(&format!("NOTIFY x, '{too_big}'"))
        .await
        .expect_err("8000 bytes is too long");
    assert_eq!(sqlstate(&e), "22023");
    let e = c
        .query("SELECT pg_notify('', 'p')", &[])
        .await
        .expect_err("empty channel");
    assert_eq!(sqlstate(&e), "22023");
    // Unquoted identifiers fold to lower case, as in PostgreSQL.
    c.batch_execute("NOTIFY LOWER, 'folded'")
        .await
        .expect("notifies");
    assert_eq!(next(&mut rx).await, ("lower".into(), "folded".into()));
    // The connection is still usable after the errors.
    assert_eq!(scalar(&c, "SELECT 1").await.as_deref(), Some("1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn unlisten_and_transactional_listen() {
    let srv = server().await;
    let (listener, mut rx) = connect_with_messages(&srv).await;
    let c = connect(&srv).await;
    // LISTEN in a rolled-back transaction does not take effect.
    listener
        .batch_execute("BEGIN; LISTEN a; ROLLBACK; LISTEN b")
        .await
        .expect("listens");
    c.batch_execute("NOTIFY a, '1'; NOTIFY b, '2'")
        .await
        .expect("notifies");
    assert_eq!(next(&mut rx).await, ("b".into(), "2".into()));
    listener
        .batch_execute("LISTEN a; UNLISTEN b")
        .await
        .expect("changes channels");
    c.batch_execute("NOTIFY b, '3'; NOTIFY a, '4'")
        .await
        .expect("notifies");
    assert_eq!(next(&mut rx).await, ("a".into(), "4".into()));
    listener
        .batch_execute("UNLISTEN *; LISTEN z")
        .await
        .expect("unlistens");
    c.batch_execute("NOTIFY a, '5'; NOTIFY z, '6'")
        .await
        .expect("notifies");
    assert_eq!(next(&mut rx).await, ("z".into(), "6".into()));
}

/// While no connection listens, the fan-out sleeps and reads nothing. The next LISTEN wakes
/// it: that listener gets what is committed after its LISTEN only (nothing from the quiet
/// spell, however much), live queries created meanwhile included, and no "fell behind"
/// notice, though more was committed than the change stream holds (4,096 events).
#[tokio::test(flavor = "multi_thread")]
async fn a_listener_after_a_quiet_spell_gets_only_what_follows_its_listen() {
    let srv = server().await;
    let (listener, mut rx) = connect_with_messages(&srv).await;
    let c = connect(&srv).await;
    listener
        .batch_execute("LISTEN ch; UNLISTEN ch")
        .await
        .expect("listens and unlistens");
    for round in 0..2 {
        let quiet: String = (0..5000)
            .map(|i| format!("NOTIFY ch, 'quiet {round} {i}';"))
            .collect();
        c.batch_execute(&quiet).await.expect("notifies");
        c.batch_execute(&format!(
            "CREATE TABLE quiet{round} (id int PRIMARY KEY, v int);
             INSERT INTO quiet{round} VALUES (1, 1);
             CREATE LIVE QUERY quietq{round} AS SELECT v FROM quiet{round};
             INSERT INTO quiet{round} VALUES (2, 2)"
        ))
        .await
        .expect("creates a table and a live query");
        let before: i64 = c
            .query_one("SELECT weft_position()", &[])
            .await
            .expect("position")
            .get(0);
        listener
            .batch_execute(&format!("LISTEN ch; LISTEN quietq{round}"))
            .await
            .expect("listens");
        c.batch_execute(&format!(
            "INSERT INTO quiet{round} VALUES (3, 3); NOTIFY ch, 'after {round}'"
        ))
        .await
        .expect("writes");
        let (channel, payload) = next(&mut rx).await;
        assert_eq!(channel, format!("quietq{round}"), "{payload}");
        let change = json(&payload);
        assert_eq!(change["op"], "insert", "{payload}");
        assert_eq!(change["row"]["v"], 3, "{payload}");
        assert!(change["pos"].as_i64().expect("pos") > before, "{payload}");
        assert_eq!(next(&mut rx).await, ("ch".into(), format!("after {round}")));
        listener
            .batch_execute("UNLISTEN *")
            .await
            .expect("unlistens");
    }
}

/// NOTIFY-only commits on channels nobody listens to are not published to the fan-out; the
/// channels it is told about follow every LISTEN, UNLISTEN and disconnect, so a channel stays
/// listened while any connection listens to it.
#[tokio::test(flavor = "multi_thread")]
async fn notify_reaches_every_channel_still_listened_to() {
    let srv = server().await;
    let (l1, mut rx1) = connect_with_messages(&srv).await;
    let (l2, mut rx2) = connect_with_messages(&srv).await;
    let (l3, mut rx3) = connect_with_messages(&srv).await;
    let c = connect(&srv).await;
    for l in [&l1, &l2, &l3] {
        l.batch_execute("LISTEN ch").await.expect("listens");
    }
    c.batch_execute("NOTIFY nobody, '0'; NOTIFY ch, '1'")
        .await
        .expect("notifies");
    for rx in [&mut rx1, &mut rx2, &mut rx3] {
        assert_eq!(next(rx).await, ("ch".into(), "1".into()));
    }
    // One leaves by UNLISTEN, one by disconnecting: the third still listens.
    l1.batch_execute("UNLISTEN ch").await.expect("unlistens");
    drop(l2);
    c.batch_execute("NOTIFY ch, '2'").await.expect("notifies");
    assert_eq!(next(&mut rx3).await, ("ch".into(), "2".into()));
    // The last one leaves, then a listener comes back.
    l3.batch_execute("UNLISTEN *").await.expect("unlistens");
    c.batch_execute("NOTIFY ch, 'unheard'")
        .await
        .expect("notifies");
    l1.batch_execute("LISTEN ch; LISTEN other")
        .await
        .expect("listens again");
    c.batch_execute("BEGIN; NOTIFY nobody, 'x'; NOTIFY other, '3'; COMMIT; NOTIFY ch, '4'")
        .await
        .expect("notifies");
    assert_eq!(next(&mut rx1).await, ("other".into(), "3".into()));
    assert_eq!(next(&mut rx1).await, ("ch".into(), "4".into()));
    l3.batch_execute("LISTEN other").await.expect("listens");
    c.batch_execute("NOTIFY other, '5'")
        .await
        .expect("notifies");
    assert_eq!(next(&mut rx3).await, ("other".into(), "5".into()));
    assert_eq!(next(&mut rx1).await, ("other".into(), "5".into()));
    drop(rx2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listener_in_a_transaction_gets_notifications_when_it_ends() {
    let srv = server().await;
    let (listener, mut rx) = connect_with_messages(&srv).await;
    listener
        .batch_execute("LISTEN ch; BEGIN")
        .await
        .expect("begins");
    let c = connect(&srv).await;
    c.batch_execute("NOTIFY ch, 'held'")
        .await
        .expect("notifies");
    // The listener's own queries answer without the notification in between.
    listener.simple_query("SELECT 1").await.expect("runs");
    assert!(rx.try_recv().is_err(), "nothing inside a transaction");
    listener.batch_execute("COMMIT").await.expect("commits");
    assert_eq!(next(&mut rx).await, ("ch".into(), "held".into()));
}

/// As in PostgreSQL, a LISTEN takes effect as its transaction commits, before that
/// transaction's notifications are sent: the transaction receives its own NOTIFY and its own
/// live-query changes. A COMMIT that fails undoes the LISTEN.
#[tokio::test(flavor = "multi_thread")]
async fn a_transaction_that_listens_receives_its_own_notifications() {
    let srv = server().await;
    let (a, mut rx) = connect_with_messages(&srv).await;
    a.batch_execute("BEGIN; LISTEN own; NOTIFY own, 'self'; COMMIT")
        .await
        .expect("commits");
    assert_eq!(next(&mut rx).await, ("own".into(), "self".into()));

    setup_items(&a).await;
    a.batch_execute("BEGIN; LISTEN big; INSERT INTO items VALUES (1, 'bolt', 50, 1.5); COMMIT")
        .await
        .expect("commits");
    let (channel, payload) = next(&mut rx).await;
    assert_eq!(channel, "big");
    let p = json(&payload);
    assert_eq!(p["op"], "insert");
    assert_eq!(p["row"]["name"], "bolt");

    // The transaction loses to a concurrent update (40001): its LISTEN does not take effect. (b
    // commits between a's snapshot and a's update of the same row.)
    let b = connect(&srv).await;
    a.batch_execute("BEGIN; LISTEN gone; SELECT qty FROM items WHERE id = 1")
        .await
        .expect("reads");
    b.batch_execute("UPDATE items SET qty = 70 WHERE id = 1")
        .await
        .expect("updates first");
    let e = a
        .batch_execute("UPDATE items SET qty = 60 WHERE id = 1")
        .await
        .expect_err("loses");
    assert_eq!(sqlstate(&e), "40001");
    a.batch_execute("COMMIT").await.expect("rolls back");
    b.batch_execute("NOTIFY gone, 'not for a'; NOTIFY own, 'marker'")
        .await
        .expect("notifies");
    let (channel, payload) = next(&mut rx).await;
    assert_eq!(channel, "big", "b's update of a matching row: {payload}");
    assert_eq!(next(&mut rx).await, ("own".into(), "marker".into()));
    // Listened to again, and committed this time: it is delivered.
    a.batch_execute("LISTEN gone").await.expect("listens");
    b.batch_execute("NOTIFY gone, 'now for a'")
        .await
        .expect("notifies");
    assert_eq!(next(&mut rx).await, ("gone".into(), "now for a".into()));
}

async fn setup_items(c: &tokio_postgres::Client) {
    c.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, name text, qty int, price numeric(8,2));
         CREATE LIVE QUERY big AS SELECT name, qty FROM items WHERE qty > 10",
    )
    .await
    .expect("creates the table and the live query");
}

#[tokio::test(flavor = "multi_thread")]
async fn live_query_pushes_inserts_updates_and_deletes_as_they_affect_the_result() {
    let srv = server().await;
    let c = connect(&srv).await;
    setup_items(&c).await;
    let (listener, mut rx) = connect_with_messages(&srv).await;
    listener.batch_execute("LISTEN big").await.expect("listens");

    c.batch_execute("INSERT INTO items VALUES (1, 'small', 5, 1.50)")
        .await
        .expect("insert that does not match");
    c.batch_execute("INSERT INTO items VALUES (2, 'bolt', 20, 0.25)")
        .await
        .expect("insert that matches");
    let (ch, p) = next(&mut rx).await;
    assert_eq!(ch, "big");
    let ins = json(&p);
    assert_eq!(ins["op"], "insert");
    assert_eq!(ins["key"], serde_json::json!({"id": 2}));
    assert_eq!(ins["row"], serde_json::json!({"name": "bolt", "qty": 20}));
    assert!(ins.get("old").is_none(), "{p}");
    assert!(ins["pos"].as_u64().is_some(), "{p}");
    assert!(
        ins["ts"].as_str().is_some_and(|t| t.ends_with("+00")),
        "{p}"
    );

    // Starts to match: insert; matches before and after: update; stops: delete.
    c.batch_execute("UPDATE items SET qty = 11 WHERE id = 1")
        .await
        .expect("updates");
    let p = json(&next(&mut rx).await.1);
    assert_eq!(
        (p["op"].as_str(), &p["key"]),
        (Some("insert"), &serde_json::json!({"id": 1}))
    );
    c.batch_execute("UPDATE items SET qty = 12 WHERE id = 1")
        .await
        .expect("updates");
    let p = json(&next(&mut rx).await.1);
    assert_eq!(p["op"], "update");
    assert_eq!(p["old"], serde_json::json!({"name": "small", "qty": 11}));
    assert_eq!(p["row"], serde_json::json!({"name": "small", "qty": 12}));
    c.batch_execute("UPDATE items SET qty = 1 WHERE id = 1")
        .await
        .expect("updates");
    let p = json(&next(&mut rx).await.1);
    assert_eq!(p["op"], "delete");
    assert!(p.get("row").is_none());
    assert_eq!(p["old"], serde_json::json!({"name": "small", "qty": 12}));
    c.batch_execute("DELETE FROM items WHERE id = 2")
        .await
        .expect("deletes");
    let p = json(&next(&mut rx).await.1);
    assert_eq!(
        (p["op"].as_str(), &p["key"]),
        (Some("delete"), &serde_json::json!({"id": 2}))
    );

    // The live query reads like a view.
    c.batch_execute("INSERT INTO items VALUES (3, 'nut', 30, 0.10)")
        .await
        .expect("inserts");
    let _ = next(&mut rx).await;
    let got = rows(
        &c.simple_query("SELECT name, qty FROM big")
            .await
            .expect("reads"),
    );
    assert_eq!(got, vec![vec![Some("nut".into()), Some("30".into())]]);
    let shown = rows(&c.simple_query("SHOW LIVE QUERIES").await.expect("shows"));
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0][0].as_deref(), Some("big"));
    assert_eq!(shown[0][1].as_deref(), Some("items"));
}

#[tokio::test(flavor = "multi_thread")]
async fn one_notification_per_row_with_consecutive_positions() {
    let srv = server().await;
    let c = connect(&srv).await;
    setup_items(&c).await;
    let (listener, mut rx) = connect_with_messages(&srv).await;
    listener.batch_execute("LISTEN big").await.expect("listens");
    c.batch_execute(
        "BEGIN;
         INSERT INTO items SELECT g, 'n' || g, 100, 1 FROM generate_series(1, 30) AS s(g);
         UPDATE items SET qty = 200 WHERE id <= 20;
         COMMIT",
    )
    .await
    .expect("writes 50 row changes");
    let mut positions = Vec::new();
    let mut ops = Vec::new();
    for _ in 0..50 {
        let p = json(&next(&mut rx).await.1);
        positions.push(p["pos"].as_u64().expect("pos"));
        ops.push(p["op"].as_str().unwrap_or("").to_string());
    }
    assert!(
        positions.windows(2).all(|w| w[1] == w[0] + 1),
        "{positions:?}"
    );
    assert!(ops[..30].iter().all(|o| o == "insert"));
    assert!(ops[30..].iter().all(|o| o == "update"));
}

#[tokio::test(flavor = "multi_thread")]
async fn live_query_shapes_that_are_not_supported_say_so() {
    let srv = server().await;
    let c = connect(&srv).await;
    setup_items(&c).await;
    for sql in [
        "CREATE LIVE QUERY j AS SELECT * FROM items a JOIN items b ON a.id = b.id",
        "CREATE LIVE QUERY g AS SELECT count(*) FROM items",
        // Aggregates that rewrite.rs renames (weft_variance, weft_every) too.
        "CREATE LIVE QUERY v AS SELECT variance(id) FROM items",
        "CREATE LIVE QUERY e AS SELECT every(id > 0) FROM items",
        "CREATE LIVE QUERY o AS SELECT * FROM items ORDER BY id",
    ] {
        let e = c.batch_execute(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e), "0A000", "{sql}");
    }
    let e = c
        .batch_execute("CREATE LIVE QUERY m AS SELECT * FROM missing")
        .await
        .expect_err("no such table");
    assert_eq!(sqlstate(&e), "42P01");
    let e = c
        .batch_execute("CREATE LIVE QUERY big AS SELECT * FROM items")
        .await
        .expect_err("exists");
    assert_eq!(sqlstate(&e), "42P07");
    let e = c
        .batch_execute("DROP TABLE items")
        .await
        .expect_err("in use");
    assert_eq!(sqlstate(&e), "2BP01");
    c.batch_execute("DROP LIVE QUERY big; DROP LIVE QUERY IF EXISTS big; DROP TABLE items")
        .await
        .expect("drops");
    let e = c
        .batch_execute("DROP LIVE QUERY big")
        .await
        .expect_err("gone");
    assert_eq!(sqlstate(&e), "42P01");
}

/// Applies a live-query change to a map keyed by the JSON key.
fn apply(state: &mut BTreeMap<String, Json>, p: &Json) {
    let key = p["key"].to_string();
    match p["op"].as_str() {
        Some("insert") | Some("update") => {
            state.insert(key, p["row"].clone());
        }
        Some("delete") => {
            state.remove(&key);
        }
        other => panic!("unexpected op {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_then_stream_has_no_gap_and_no_duplicate() {
    let srv = server().await;
    let c = connect(&srv).await;
    c.batch_execute(
        "CREATE TABLE kv (k int PRIMARY KEY, v int);
         CREATE LIVE QUERY all_kv AS SELECT k, v FROM kv",
    )
    .await
    .expect("creates");
    let (reader, mut rx) = connect_with_messages(&srv).await;
    reader
        .batch_execute("LISTEN all_kv")
        .await
        .expect("listens");

    // A writer keeps changing rows while the reader takes its snapshot.
    let writer = connect(&srv).await;
    let writes = tokio::spawn(async move {
        for i in 0..200 {
            let k = i % 37;
            writer
                .execute(
                    "INSERT INTO kv VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
                    &[&k, &i],
                )
                .await
                .expect("upserts");
            if i % 5 == 0 {
                writer
                    .execute("DELETE FROM kv WHERE k = $1", &[&((k + 3) % 37)])
                    .await
                    .expect("deletes");
            }
        }
        writer
            .batch_execute("NOTIFY all_kv_done")
            .await
            .expect("done");
    });
    // Let some writes happen first, so the snapshot is in the middle of the stream.
    loop {
        let n: i64 = reader
            .query_one("SELECT count(*) FROM kv", &[])
            .await
            .expect("counts")
            .get(0);
        if n >= 10 {
            break;
        }
        tokio::task::yield_now().await;
    }
    reader
        .batch_execute("LISTEN all_kv_done")
        .await
        .expect("listens");
    reader.batch_execute("BEGIN").await.expect("begins");
    let snapshot = rows(
        &reader
            .simple_query("SELECT k, v FROM all_kv")
            .await
            .expect("reads"),
    );
    let position: i64 = reader
        .query_one("SELECT weft_position()", &[])
        .await
        .expect("position")
        .get(0);
    reader.batch_execute("COMMIT").await.expect("commits");

    let mut state: BTreeMap<String, Json> = snapshot
        .iter()
        .map(|r| {
            let k: i64 = r[0].as_deref().unwrap_or("0").parse().unwrap_or(0);
            let v: i64 = r[1].as_deref().unwrap_or("0").parse().unwrap_or(0);
            (
                serde_json::json!({ "k": k }).to_string(),
                serde_json::json!({ "k": k, "v": v }),
            )
        })
        .collect();
    let mut last = position as u64;
    loop {
        let (channel, payload) = next(&mut rx).await;
        if channel == "all_kv_done" {
            break;
        }
        let p = json(&payload);
        let pos = p["pos"].as_u64().expect("pos");
        if pos <= position as u64 {
            continue; // already in the snapshot
        }
        assert_eq!(
            pos,
            last + 1,
            "no gap: positions of kv changes are consecutive"
        );
        last = pos;
        apply(&mut state, &p);
    }
    writes.await.expect("writer finished");
    let final_rows = rows(
        &reader
            .simple_query("SELECT k, v FROM kv")
            .await
            .expect("reads"),
    );
    let expected: BTreeMap<String, Json> = final_rows
        .iter()
        .map(|r| {
            let k: i64 = r[0].as_deref().unwrap_or("0").parse().unwrap_or(0);
            let v: i64 = r[1].as_deref().unwrap_or("0").parse().unwrap_or(0);
            (
                serde_json::json!({ "k": k }).to_string(),
                serde_json::json!({ "k": k, "v": v }),
            )
        })
        .collect();
    assert_eq!(state, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn weft_changes_resumes_from_a_position_with_a_bind_parameter_of_any_integer_type() {
    let srv = server().await;
    let c = connect(&srv).await;
    setup_items(&c).await;
    let (listener, mut rx) = connect_with_messages(&srv).await;
    listener.batch_execute("LISTEN big").await.expect("listens");
    c.batch_execute(
        "INSERT INTO items VALUES (1, 'a', 50, 1), (2, 'b', 5, 1), (3, 'c', 60, 1);
         UPDATE items SET qty = 70 WHERE id = 1;
         DELETE FROM items WHERE id = 3",
    )
    .await
    .expect("writes");
    let mut pushed = Vec::new();
    for _ in 0..4 {
        pushed.push(json(&next(&mut rx).await.1));
    }
    let first = pushed[0]["pos"].as_i64().expect("pos");
    // Everything after the first pushed change, as pushed.
    let since8: i64 = first;
    let r8 = c
        .query(
            "SELECT pos, op, key, row, old FROM weft_changes('big', $1)",
            &[&since8],
        )
        .await
        .expect("int8 parameter");
    let since4: i32 = i32::try_from(first).expect("small");
    let stmt = c
        .prepare_typed(
            "SELECT pos, op, key, row, old FROM weft_changes('big', $1)",
            &[tokio_postgres::types::Type::INT4],
        )
        .await
        .expect("prepares with int4");
    let r4 = c.query(&stmt, &[&since4]).await.expect("int4 parameter");
    let since2: i16 = i16::try_from(first).expect("small");
    let stmt2 = c
        .prepare_typed(
            "SELECT pos, op FROM weft_changes('big', $1)",
            &[tokio_postgres::types::Type::INT2],
        )
        .await
        .expect("prepares with int2");
    assert_eq!(c.query(&stmt2, &[&since2]).await.expect("int2").len(), 3);
    assert_eq!(r8.len(), 3);
    assert_eq!(r4.len(), 3);
    for (row, p) in r8.iter().zip(&pushed[1..]) {
        let pos: i64 = row.get(0);
        let op: String = row.get(1);
        let key: Json = row.get(2);
        let new: Option<Json> = row.get(3);
        let old: Option<Json> = row.get(4);
        assert_eq!(Some(pos), p["pos"].as_i64());
        assert_eq!(op, p["op"].as_str().unwrap_or(""));
        assert_eq!(key, p["key"]);
        assert_eq!(new, p.get("row").cloned());
        assert_eq!(old, p.get("old").cloned());
    }
    // Simple protocol with a literal, and from the start.
    let all = rows(
        &c.simple_query("SELECT op FROM weft_changes('big', 0)")
            .await
            .expect("from 0"),
    );
    assert_eq!(all.len(), 4);
    let e = c
        .query("SELECT * FROM weft_changes('nope', 0)", &[])
        .await
        .expect_err("no such live query");
    assert_eq!(sqlstate(&e), "42P01");
}

#[tokio::test(flavor = "multi_thread")]
async fn positions_older_than_the_retention_window_are_55000() {
    let dir = tempfile::tempdir().expect("temp dir");
    let srv = TestServer::start_with(dir.path(), |c| {
        c.change_retention = Duration::from_millis(300);
    })
    .await
    .expect("starts");
    let c = connect(&srv).await;
    setup_items(&c).await;
    c.batch_execute("INSERT INTO items VALUES (1, 'a', 50, 1)")
        .await
        .expect("inserts");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match c.query("SELECT * FROM weft_changes('big', 0)", &[]).await {
            Err(e) => {
                assert_eq!(sqlstate(&e), "55000");
                let message = e.as_db_error().map(|d| d.message().to_string());
                assert!(
                    message
                        .as_deref()
                        .is_some_and(|m| m.contains("oldest retained position")),
                    "{message:?}"
                );
                break;
            }
            Ok(_) => {
                assert!(tokio::time::Instant::now() < deadline, "never purged");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // From the current position on, it works.
    let pos: i64 = c
        .query_one("SELECT weft_position()", &[])
        .await
        .expect("position")
        .get(0);
    let r = c
        .query("SELECT * FROM weft_changes('big', $1)", &[&pos])
        .await
        .expect("nothing missed after the current position");
    assert!(r.is_empty());
    srv.shutdown().await.expect("shuts down");
}

#[tokio::test(flavor = "multi_thread")]
async fn overflow_sends_a_notice_and_delivery_resumes() {
    let srv = server().await;
    let c = connect(&srv).await;
    setup_items(&c).await;
    let (listener, mut rx) = connect_with_messages(&srv).await;
    // Inside a transaction nothing is delivered, so the mailbox fills.
    listener
        .batch_execute("LISTEN big; BEGIN")
        .await
        .expect("listens");
    let n = weft::conn::NOTIFICATION_QUEUE as i32 + 100;
    c.batch_execute(&format!(
        "INSERT INTO items SELECT g, 'x', 100, 1 FROM generate_series(1, {n}) AS s(g)"
    ))
    .await
    .expect("inserts");
    // Wait until the fan-out has filled the listener's mailbox and dropped the rest.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !srv.registry().pids().into_iter().any(|pid| {
        srv.registry()
            .mailbox(pid)
            .is_some_and(|m| m.pending() == (weft::conn::NOTIFICATION_QUEUE, true))
    }) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the mailbox never overflowed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    listener.batch_execute("COMMIT").await.expect("commits");
    let mut delivered = 0;
    let notice = loop {
        let (channel, payload) = next(&mut rx).await;
        if channel == "NOTICE" {
            break payload;
        }
        delivered += 1;
    };
    assert_eq!(delivered, weft::conn::NOTIFICATION_QUEUE);
    assert!(notice.contains("channel \"big\" from position"), "{notice}");
    // Delivery resumes after the notice.
    c.batch_execute("INSERT INTO items VALUES (-1, 'resumed', 100, 1)")
        .await
        .expect("inserts");
    let p = json(&next(&mut rx).await.1);
    assert_eq!(p["row"]["name"], "resumed");
}

#[tokio::test(flavor = "multi_thread")]
async fn live_queries_and_the_change_log_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let srv = TestServer::start_in(dir.path()).await.expect("starts");
    let c = connect(&srv).await;
    setup_items(&c).await;
    c.batch_execute("INSERT INTO items VALUES (1, 'a', 50, 1), (2, 'b', 60, 1)")
        .await
        .expect("inserts");
    drop(c);
    srv.shutdown().await.expect("shuts down");

    let srv = TestServer::start_in(dir.path()).await.expect("restarts");
    let c = connect(&srv).await;
    let shown = rows(&c.simple_query("SHOW LIVE QUERIES").await.expect("shows"));
    assert_eq!(shown.len(), 1);
    let ops = rows(
        &c.simple_query("SELECT op, row FROM weft_changes('big', 0)")
            .await
            .expect("reads the log"),
    );
    assert_eq!(ops.len(), 2);
    let (listener, mut rx) = connect_with_messages(&srv).await;
    listener.batch_execute("LISTEN big").await.expect("listens");
    c.batch_execute("UPDATE items SET qty = 99 WHERE id = 2")
        .await
        .expect("updates");
    let p = json(&next(&mut rx).await.1);
    assert_eq!(p["op"], "update");
    assert_eq!(p["row"], serde_json::json!({"name": "b", "qty": 99}));
    srv.shutdown().await.expect("shuts down");
}

#[tokio::test(flavor = "multi_thread")]
async fn listening_before_the_live_query_exists() {
    let srv = server().await;
    let (listener, mut rx) = connect_with_messages(&srv).await;
    listener
        .batch_execute("LISTEN later")
        .await
        .expect("listens");
    let c = connect(&srv).await;
    c.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         CREATE LIVE QUERY later AS SELECT v FROM t WHERE v LIKE 'a%' OR v IS NULL;
         INSERT INTO t VALUES (1, 'abc'), (2, 'xyz'), (3, NULL)",
    )
    .await
    .expect("creates and writes");
    let p = json(&next(&mut rx).await.1);
    assert_eq!(p["row"], serde_json::json!({"v": "abc"}));
    let p = json(&next(&mut rx).await.1);
    assert_eq!(p["row"], serde_json::json!({"v": null}));
    assert_eq!(p["key"], serde_json::json!({"id": 3}));
}

#[tokio::test(flavor = "multi_thread")]
async fn notifications_carry_the_sender_backend_pid() {
    let srv = server().await;
    let (listener, mut rx) = connect_with_messages(&srv).await;
    listener.batch_execute("LISTEN ch").await.expect("listens");
    let c = connect(&srv).await;
    let pid: i32 = c
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    assert!(
        srv.registry().pids().contains(&pid),
        "pg_backend_pid is the wire pid"
    );
    c.batch_execute("NOTIFY ch, 'x'").await.expect("notifies");
    match recv_within(&mut rx, DEADLINE).await {
        Some(AsyncMessage::Notification(n)) => assert_eq!(n.process_id(), pid),
        other => panic!("expected a notification, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_column_type_change_resets_the_live_query_and_the_change_log_stays_readable() {
    let srv = server().await;
    let c = connect(&srv).await;
    c.batch_execute(
        "CREATE TABLE ty (id int PRIMARY KEY, v int);
         INSERT INTO ty VALUES (1, 5);
         CREATE LIVE QUERY tyq AS SELECT id, v FROM ty",
    )
    .await
    .expect("setup");
    let (listener, mut rx) = connect_with_messages(&srv).await;
    listener.batch_execute("LISTEN tyq").await.expect("listens");
    c.batch_execute("ALTER TABLE ty ALTER COLUMN v TYPE text USING 'v' || v")
        .await
        .expect("changes the type");
    let reset = json(&next(&mut rx).await.1);
    assert_eq!(reset["op"], "reset", "{reset}");
    c.batch_execute("INSERT INTO ty VALUES (2, 'w')")
        .await
        .expect("inserts a text value");
    let insert = json(&next(&mut rx).await.1);
    assert_eq!(insert["op"], "insert", "{insert}");
    assert_eq!(insert["row"], serde_json::json!({"id": 2, "v": "w"}));
    // The insert of (1, 5) was stored as an integer: replayed, it is a reset, not an error.
    let ops: Vec<Option<String>> = rows(
        &c.simple_query("SELECT op FROM weft_changes('tyq', 0)")
            .await
            .expect("weft_changes reads across the type change"),
    )
    .into_iter()
    .map(|r| r[0].clone())
    .collect();
    assert_eq!(
        ops.last().cloned().flatten().as_deref(),
        Some("insert"),
        "{ops:?}"
    );
    assert!(
        ops[..ops.len() - 1]
            .iter()
            .all(|o| o.as_deref() == Some("reset")),
        "{ops:?}"
    );
    let current = rows(
        &c.simple_query("SELECT id::text, v FROM tyq ORDER BY id")
            .await
            .expect("reads the live query"),
    );
    let want = |id: &str, v: &str| vec![Some(id.to_string()), Some(v.to_string())];
    assert_eq!(current, vec![want("1", "v5"), want("2", "w")]);
}

/// A live query over array columns: its predicate reads an array (`@>`), and the payload holds
/// each array as `to_jsonb` renders it in PostgreSQL 15 (NULL elements, NaN as a string,
/// numerics at their own scale, timestamptz in ISO form).
#[tokio::test(flavor = "multi_thread")]
async fn live_query_payloads_carry_arrays_as_json_arrays() {
    let srv = server().await;
    let c = connect(&srv).await;
    c.batch_execute(
        "CREATE TABLE shelf (id int PRIMARY KEY, tags text[], n numeric[], f float8[], d timestamptz[]);
         CREATE LIVE QUERY tagged AS SELECT id, tags, n, f, d FROM shelf WHERE tags @> '{a}'",
    )
    .await
    .expect("creates");
    let (listener, mut rx) = connect_with_messages(&srv).await;
    listener
        .batch_execute("LISTEN tagged")
        .await
        .expect("listens");
    c.batch_execute(
        "INSERT INTO shelf VALUES (1, '{a,\"b c\",NULL}', '{1.5,2}', '{NaN,1e20}', '{2020-01-01 00:00:00+00}'),
                                  (2, '{x}', NULL, NULL, NULL);
         UPDATE shelf SET tags = '{x}' WHERE id = 1",
    )
    .await
    .expect("writes");
    let row = serde_json::json!({
        "id": 1,
        "tags": ["a", "b c", null],
        "n": [1.5, 2],
        "f": ["NaN", 1e20],
        "d": ["2020-01-01T00:00:00+00:00"],
    });
    let insert = json(&next(&mut rx).await.1);
    assert_eq!(insert["op"], "insert");
    assert_eq!(insert["row"], row);
    let delete = json(&next(&mut rx).await.1);
    assert_eq!(delete["op"], "delete", "{delete}");
    assert_eq!(delete["old"], row);
    assert_eq!(delete["key"], serde_json::json!({"id": 1}));
}
