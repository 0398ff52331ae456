//! Notifications queued for a connection reach its client between commands, never inside a
//! transaction.

use tokio_postgres::AsyncMessage;
use weft::conn::Notification;

use super::support::{connect_with_messages, recv_within, server, DEADLINE};

fn note(payload: &str) -> Notification {
    Notification {
        pid: 4242,
        channel: "events".into(),
        payload: payload.into(),
    }
}

fn payload(m: AsyncMessage) -> String {
    match m {
        AsyncMessage::Notification(n) => {
            assert_eq!((n.process_id(), n.channel()), (4242, "events"));
            n.payload().to_string()
        }
        other => panic!("expected a notification, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_client_receives_notifications() {
    let srv = server().await;
    let (c, mut rx) = connect_with_messages(&srv).await;
    c.simple_query("select 1").await.expect("runs");
    let pids = srv.registry().pids();
    assert_eq!(pids.len(), 1);
    assert!(srv.registry().notify(pids[0], note("hello")));
    let m = recv_within(&mut rx, DEADLINE)
        .await
        .expect("delivered while idle");
    assert_eq!(payload(m), "hello");
}

#[tokio::test(flavor = "multi_thread")]
async fn notifications_wait_for_the_transaction_to_end() {
    let srv = server().await;
    let (c, mut rx) = connect_with_messages(&srv).await;
    c.batch_execute("begin").await.expect("begins");
    let pid = srv.registry().pids()[0];
    assert!(srv.registry().notify(pid, note("after commit")));
    // The server answers this query only after it has seen the queued notification.
    c.simple_query("select 1").await.expect("runs");
    assert!(
        rx.try_recv().is_err(),
        "nothing is delivered inside a transaction"
    );
    c.batch_execute("commit").await.expect("commits");
    let m = recv_within(&mut rx, DEADLINE)
        .await
        .expect("delivered after commit");
    assert_eq!(payload(m), "after commit");
}

#[tokio::test(flavor = "multi_thread")]
async fn session_notices_reach_the_client() {
    let srv = server().await;
    let (c, mut rx) = connect_with_messages(&srv).await;
    c.batch_execute("rollback")
        .await
        .expect("a warning, not an error");
    match recv_within(&mut rx, DEADLINE).await {
        Some(AsyncMessage::Notice(n)) => {
            assert_eq!((n.severity(), n.code().code()), ("WARNING", "25P01"));
            assert_eq!(n.message(), "there is no transaction in progress");
        }
        other => panic!("expected a notice, got {other:?}"),
    }
}

/// `IF [NOT] EXISTS` that skips an object says so with PostgreSQL's NOTICE, over the simple and
/// the extended protocol, and the statement succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn if_exists_that_skips_raises_a_notice() {
    let srv = server().await;
    let (c, mut rx) = connect_with_messages(&srv).await;
    c.batch_execute("create table present (id int primary key)")
        .await
        .expect("create");
    let cases = [
        (
            "drop table if exists absent",
            "00000",
            "table \"absent\" does not exist, skipping",
        ),
        (
            "create table if not exists present (id int primary key)",
            "42P07",
            "relation \"present\" already exists, skipping",
        ),
        (
            "alter table present add column if not exists id int",
            "42701",
            "column \"id\" of relation \"present\" already exists, skipping",
        ),
        (
            "alter table present drop column if exists nope",
            "00000",
            "column \"nope\" of relation \"present\" does not exist, skipping",
        ),
    ];
    for (i, (sql, code, message)) in cases.iter().enumerate() {
        if i % 2 == 0 {
            c.batch_execute(sql).await.expect(sql);
        } else {
            c.execute(*sql, &[]).await.expect(sql);
        }
        match recv_within(&mut rx, DEADLINE).await {
            Some(AsyncMessage::Notice(n)) => {
                assert_eq!((n.severity(), n.code().code()), ("NOTICE", *code), "{sql}");
                assert_eq!(n.message(), *message, "{sql}");
            }
            other => panic!("expected a notice for {sql}, got {other:?}"),
        }
    }
    // A statement that skips nothing raises none: after the first DROP (which drops) come only
    // the second one's notice and then ROLLBACK's warning, as a marker.
    c.batch_execute("drop table if exists present; drop table if exists present; rollback")
        .await
        .expect("drops");
    let mut seen = Vec::new();
    for _ in 0..2 {
        match recv_within(&mut rx, DEADLINE).await {
            Some(AsyncMessage::Notice(n)) => seen.push(n.message().to_string()),
            other => panic!("expected a notice, got {other:?}"),
        }
    }
    assert_eq!(
        seen,
        [
            "table \"present\" does not exist, skipping",
            "there is no transaction in progress"
        ]
    );
}
