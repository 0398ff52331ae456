//! LWW merges between nodes: shipping origin-log entries, concurrent writes to the same row on
//! different nodes, clocks, and secondary indexes kept by merges. Nodes and helpers are those of
//! `lww.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use weft_storage::{ChangeOp, Error, LogRead, Value};

use crate::lww::{
    assert_index_matches, changes_after, checksum, del, get, ids_with_b, kv, put, rows, set, ship,
    Node, LOOSE_OFFSET, MAX_OFFSET,
};

#[tokio::test]
async fn shipped_entries_apply_once_and_move_positions() {
    let a = Node::new(1).await;
    let b = Node::new(2).await;
    assert_eq!(a.kv, b.kv, "same catalog calls, same table");
    assert_eq!(a.plain, b.plain);

    put(&a.s, &a.kv, kv(1, Some("x"), Some(10))).await;
    put(&a.s, &a.kv, kv(2, Some("y"), Some(20))).await;
    set(&a.s, &a.kv, 1, 2, Value::Int32(11)).await;
    let LogRead::Entries { entries, head } = a.s.lww_log_read(0, 100).expect("read") else {
        panic!("log purged");
    };
    assert_eq!((entries.len(), head), (3, 3));

    let mut events = b.s.subscribe();
    let before = b.s.last_position();
    let n =
        b.s.lww_apply(1, entries.clone(), MAX_OFFSET)
            .await
            .expect("apply");
    assert_eq!(n, 3);
    assert_eq!(rows(&b.s, &b.kv), rows(&a.s, &a.kv));
    assert_eq!(checksum(&a), checksum(&b));
    let positions = b.s.lww_positions().expect("positions");
    assert_eq!(positions, BTreeMap::from([(1, (3, entries[2].ts))]));
    assert_eq!(
        changes_after(&b.s, before)
            .iter()
            .map(|c| c.0)
            .collect::<Vec<_>>(),
        vec![ChangeOp::Insert, ChangeOp::Insert, ChangeOp::Update]
    );
    for e in &entries {
        let ev = events.try_recv().expect("an event per applied entry");
        assert_eq!(ev.ts, e.ts);
    }
    // Applying does not write this node's own log.
    assert_eq!(b.s.lww_head(), 0);

    // Resent: nothing applied twice.
    let last = b.s.last_position();
    let n =
        b.s.lww_apply(1, entries.clone(), MAX_OFFSET)
            .await
            .expect("apply");
    assert_eq!(n, 0);
    assert_eq!(b.s.lww_positions().expect("positions"), positions);
    assert_eq!(b.s.last_position(), last);
    assert!(events.try_recv().is_err());

    // An overlapping batch applies only what is new.
    let c = put(&a.s, &a.kv, kv(3, None, None)).await;
    let LogRead::Entries { entries: more, .. } = a.s.lww_log_read(1, 100).expect("read") else {
        panic!("log purged");
    };
    assert_eq!(more.len(), 3);
    assert_eq!(
        b.s.lww_apply(1, more.clone(), MAX_OFFSET).await,
        Ok(1),
        "entries 2 and 3 were applied already"
    );
    assert_eq!(b.s.lww_positions().expect("positions")[&1], (4, c.ts));
    assert_eq!(get(&b.s, &b.kv, 3), Some(kv(3, None, None)));

    // A gap or another node's entries are refused, and change nothing.
    let mut gap = more[2].clone();
    gap.seq = 6;
    assert!(matches!(
        b.s.lww_apply(1, vec![gap], MAX_OFFSET).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        b.s.lww_apply(3, more, MAX_OFFSET).await,
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(b.s.lww_positions().expect("positions")[&1], (4, c.ts));

    // Waiting on the log: returns the head at once when it is past `after`, at the deadline
    // otherwise.
    assert_eq!(a.s.lww_log_wait(3, Duration::from_secs(5)).await, 4);
    assert_eq!(a.s.lww_log_wait(4, Duration::from_millis(1)).await, 4);
    let waiter = {
        let s = a.s.clone();
        tokio::spawn(async move { s.lww_log_wait(4, Duration::from_secs(30)).await })
    };
    put(&a.s, &a.kv, kv(4, None, None)).await;
    assert_eq!(waiter.await.expect("waiter"), 5);
}

#[tokio::test]
async fn concurrent_updates_of_different_columns_both_survive() {
    let a = Node::new(1).await;
    let b = Node::new(2).await;
    put(&a.s, &a.kv, kv(1, Some("x"), Some(10))).await;
    assert_eq!(ship(&a, &b, MAX_OFFSET).await, Ok(1));

    set(&a.s, &a.kv, 1, 1, Value::Text("from a".into())).await;
    set(&b.s, &b.kv, 1, 2, Value::Int32(20)).await;
    assert_eq!(ship(&a, &b, MAX_OFFSET).await, Ok(1));
    assert_eq!(ship(&b, &a, MAX_OFFSET).await, Ok(1));

    let want = kv(1, Some("from a"), Some(20));
    assert_eq!(get(&a.s, &a.kv, 1), Some(want.clone()));
    assert_eq!(get(&b.s, &b.kv, 1), Some(want));
    assert_eq!(checksum(&a), checksum(&b));
    assert_eq!(ids_with_b(&a.s, &a.kv, 20), vec![1]);
    assert_eq!(ids_with_b(&b.s, &b.kv, 20), vec![1]);
    assert!(ids_with_b(&a.s, &a.kv, 10).is_empty());
}

/// Two nodes write the same cell; a third receives both, in the other order. The newer write
/// wins everywhere; applying the losing one records no change, the winning one an update.
#[tokio::test]
async fn same_column_the_newer_version_wins_in_any_order() {
    let a = Node::new(1).await;
    let b = Node::new(2).await;
    let c = Node::new(3).await;
    put(&a.s, &a.kv, kv(1, Some("x"), Some(1))).await;
    ship(&a, &b, MAX_OFFSET).await.expect("ship");
    ship(&a, &c, MAX_OFFSET).await.expect("ship");

    let wa = set(&a.s, &a.kv, 1, 1, Value::Text("a".into())).await;
    b.s.set_clock_skew(2_000);
    let wb = set(&b.s, &b.kv, 1, 1, Value::Text("b".into())).await;
    assert!(wb.ts > wa.ts);

    // c: the newer first, then the older.
    let p = c.s.last_position();
    assert_eq!(ship(&b, &c, LOOSE_OFFSET).await, Ok(1));
    assert_eq!(
        changes_after(&c.s, p),
        vec![(
            ChangeOp::Update,
            Some(kv(1, Some("x"), Some(1))),
            Some(kv(1, Some("b"), Some(1)))
        )]
    );
    let p = c.s.last_position();
    let mut events = c.s.subscribe();
    assert_eq!(ship(&a, &c, LOOSE_OFFSET).await, Ok(1), "applied, and lost");
    assert_eq!(c.s.last_position(), p);
    assert!(changes_after(&c.s, p).is_empty());
    let ev = events.try_recv().expect("the entry's event");
    assert!(ev.changes.is_empty(), "a losing write changes no row");

    // b: its own first, then a's (loses).
    let p = b.s.last_position();
    assert_eq!(ship(&a, &b, LOOSE_OFFSET).await, Ok(1));
    assert!(changes_after(&b.s, p).is_empty());

    // a: its own first, then b's (wins).
    let p = a.s.last_position();
    assert_eq!(ship(&b, &a, LOOSE_OFFSET).await, Ok(1));
    assert_eq!(
        changes_after(&a.s, p),
        vec![(
            ChangeOp::Update,
            Some(kv(1, Some("a"), Some(1))),
            Some(kv(1, Some("b"), Some(1)))
        )]
    );

    for n in [&a, &b, &c] {
        assert_eq!(get(&n.s, &n.kv, 1), Some(kv(1, Some("b"), Some(1))));
        assert_eq!(checksum(n), checksum(&a));
    }
}

#[tokio::test]
async fn delete_against_a_concurrent_update() {
    let a = Node::new(1).await;
    let b = Node::new(2).await;
    put(&a.s, &a.kv, kv(1, Some("x"), Some(10))).await;
    put(&a.s, &a.kv, kv(2, Some("y"), Some(20))).await;
    ship(&a, &b, MAX_OFFSET).await.expect("ship");

    // The delete is newer: the row is gone on both.
    let u = set(&b.s, &b.kv, 1, 1, Value::Text("b".into())).await;
    a.s.set_clock_skew(2_000);
    let d = del(&a.s, &a.kv, 1).await;
    assert!(d.ts > u.ts);
    let p = b.s.last_position();
    ship(&a, &b, LOOSE_OFFSET).await.expect("ship");
    ship(&b, &a, LOOSE_OFFSET).await.expect("ship");
    assert_eq!(get(&a.s, &a.kv, 1), None);
    assert_eq!(get(&b.s, &b.kv, 1), None);
    assert_eq!(
        changes_after(&b.s, p),
        vec![(ChangeOp::Delete, Some(kv(1, Some("b"), Some(10))), None)]
    );

    // The update is newer: it brings the row back, with the cells it did not write (older
    // than the delete) NULL.
    let d = del(&a.s, &a.kv, 2).await;
    b.s.set_clock_skew(4_000);
    let u = set(&b.s, &b.kv, 2, 2, Value::Int32(99)).await;
    assert!(u.ts > d.ts);
    let p = a.s.last_position();
    ship(&a, &b, LOOSE_OFFSET).await.expect("ship");
    ship(&b, &a, LOOSE_OFFSET).await.expect("ship");
    let revived = kv(2, None, Some(99));
    assert_eq!(get(&a.s, &a.kv, 2), Some(revived.clone()));
    assert_eq!(get(&b.s, &b.kv, 2), Some(revived.clone()));
    assert_eq!(
        changes_after(&a.s, p),
        vec![(ChangeOp::Insert, None, Some(revived))]
    );
    assert_eq!(checksum(&a), checksum(&b));
    for n in [&a, &b] {
        assert_eq!(ids_with_b(&n.s, &n.kv, 99), vec![2]);
        assert!(ids_with_b(&n.s, &n.kv, 20).is_empty());
        assert_index_matches(&n.s, &n.kv);
    }
}

#[tokio::test]
async fn entries_too_far_ahead_are_refused_and_a_later_local_write_wins() {
    let a = Node::new(1).await;
    let b = Node::new(2).await;
    a.s.set_clock_skew(5_000);
    let w = put(&a.s, &a.kv, kv(1, Some("a"), None)).await;

    let before = b.s.last_position();
    match ship(&a, &b, MAX_OFFSET).await {
        Err(Error::ClockAhead {
            node,
            ahead_ms,
            max_ms,
        }) => {
            assert_eq!((node, max_ms), (1, 500));
            assert!(ahead_ms > 500 && ahead_ms <= 5_000, "{ahead_ms}");
        }
        other => panic!("expected ClockAhead, got {other:?}"),
    }
    assert!(b.s.lww_positions().expect("positions").is_empty());
    assert_eq!(get(&b.s, &b.kv, 1), None);
    assert_eq!(b.s.last_position(), before);

    assert_eq!(ship(&a, &b, LOOSE_OFFSET).await, Ok(1));
    assert_eq!(get(&b.s, &b.kv, 1), Some(kv(1, Some("a"), None)));

    // b's clock is 5 s behind a's, yet its overwrite is newer than what it received.
    let o = set(&b.s, &b.kv, 1, 1, Value::Text("b".into())).await;
    assert!(o.ts > w.ts);
    assert_eq!(ship(&b, &a, LOOSE_OFFSET).await, Ok(1));
    assert_eq!(get(&a.s, &a.kv, 1), Some(kv(1, Some("b"), None)));
    assert_eq!(checksum(&a), checksum(&b));
}

#[tokio::test]
async fn secondary_index_follows_remote_merges() {
    let a = Node::new(1).await;
    let b = Node::new(2).await;
    let mut txn = a.s.begin();
    for id in 1..=6 {
        txn.insert(&a.kv, kv(id, None, Some(10 + id % 2)))
            .expect("insert");
    }
    txn.commit().await.expect("commit");
    ship(&a, &b, MAX_OFFSET).await.expect("ship");
    assert_eq!(ids_with_b(&b.s, &b.kv, 10), vec![2, 4, 6]);
    assert_eq!(ids_with_b(&b.s, &b.kv, 11), vec![1, 3, 5]);

    // Remote update of the indexed column, remote delete.
    set(&a.s, &a.kv, 2, 2, Value::Int32(11)).await;
    del(&a.s, &a.kv, 4).await;
    ship(&a, &b, MAX_OFFSET).await.expect("ship");
    assert_eq!(ids_with_b(&b.s, &b.kv, 10), vec![6]);
    assert_eq!(ids_with_b(&b.s, &b.kv, 11), vec![1, 2, 3, 5]);

    // Both write b of row 6; a's is newer and replaces b's entry on b.
    set(&b.s, &b.kv, 6, 2, Value::Int32(30)).await;
    a.s.set_clock_skew(2_000);
    set(&a.s, &a.kv, 6, 2, Value::Int32(40)).await;
    ship(&b, &a, LOOSE_OFFSET).await.expect("ship");
    ship(&a, &b, LOOSE_OFFSET).await.expect("ship");
    // A concurrent update of another column keeps the row's entry.
    set(&b.s, &b.kv, 5, 1, Value::Text("b".into())).await;
    ship(&b, &a, LOOSE_OFFSET).await.expect("ship");
    for n in [&a, &b] {
        assert!(ids_with_b(&n.s, &n.kv, 30).is_empty());
        assert_eq!(ids_with_b(&n.s, &n.kv, 40), vec![6]);
        assert!(ids_with_b(&n.s, &n.kv, 10).is_empty());
        assert_eq!(ids_with_b(&n.s, &n.kv, 11), vec![1, 2, 3, 5]);
        assert_index_matches(&n.s, &n.kv);
    }
    assert_eq!(checksum(&a), checksum(&b));
}

#[tokio::test]
async fn notifications_ticks_and_origins_travel_with_entries() {
    let a = Node::new(1).await;
    let b = Node::new(2).await;
    let mut txn = a.s.begin();
    txn.insert(&a.kv, kv(1, None, None)).expect("insert");
    txn.notify("ch", "hello");
    txn.set_origin(42);
    txn.commit().await.expect("commit");
    a.s.lww_tick().await.expect("tick");
    assert_eq!(a.s.lww_head(), 2);
    let LogRead::Entries { entries, .. } = a.s.lww_log_read(1, 10).expect("read") else {
        panic!("log purged");
    };
    assert!(entries[0].rows.is_empty());
    assert_eq!(entries[0].ts, a.s.lww_last_ts());

    let mut events = b.s.subscribe();
    assert_eq!(ship(&a, &b, MAX_OFFSET).await, Ok(2));
    let ev = events.try_recv().expect("event");
    assert_eq!(
        ev.notifications,
        vec![("ch".to_string(), "hello".to_string())]
    );
    assert_eq!(ev.origin, 42);
    assert_eq!(ev.changes.len(), 1);
    let ev = events.try_recv().expect("event of the tick");
    assert!(ev.changes.is_empty() && ev.notifications.is_empty());
    assert_eq!(
        b.s.lww_positions().expect("positions")[&1],
        (2, a.s.lww_last_ts())
    );
}
