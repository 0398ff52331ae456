//! The durable change log and the in-process change stream.

use weft_storage::{CatalogEntry, ChangeOp, Value};

use crate::common::{create_users, open, user};

#[tokio::test]
async fn positions_are_consecutive_and_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (t, expected) = {
        let s = open(dir.path());
        let t = create_users(&s).await;
        let mut events = s.subscribe();
        let mut expected = Vec::new();
        let mut txn = s.begin();
        txn.insert(&t, user(1, "a", None, 1)).expect("insert");
        txn.insert(&t, user(2, "b", None, 2)).expect("insert");
        txn.update(&t, &user(1, "a", None, 1), user(1, "a2", None, 1))
            .expect("update");
        let first = txn.commit().await.expect("commit");
        assert_eq!(first.last_position, first.first_position + 2);
        let mut txn = s.begin();
        txn.delete(&t, &user(2, "b", None, 2)).expect("delete");
        let second = txn.commit().await.expect("commit");
        assert_eq!(second.first_position, first.last_position + 1);
        assert_eq!(second.last_position, second.first_position);
        assert!(second.ts > first.ts);
        assert_eq!(s.last_position(), second.last_position);

        for info in [first, second] {
            let ev = events.recv().await.expect("event");
            assert_eq!(ev.version, info.version);
            assert_eq!(ev.ts, info.ts);
            let positions: Vec<u64> = ev.changes.iter().map(|c| c.position).collect();
            let want: Vec<u64> = (info.first_position..=info.last_position).collect();
            assert_eq!(positions, want);
            expected.extend(ev.changes.iter().cloned());
        }
        assert_eq!(
            expected.iter().map(|c| c.op).collect::<Vec<_>>(),
            vec![
                ChangeOp::Insert,
                ChangeOp::Insert,
                ChangeOp::Update,
                ChangeOp::Delete
            ]
        );
        assert_eq!(expected[2].old, Some(user(1, "a", None, 1)));
        assert_eq!(expected[2].new, Some(user(1, "a2", None, 1)));
        drop(s);
        (t, expected)
    };

    let s = open(dir.path());
    let from = expected[0].position - 1;
    let read = s.read_changes(from, 100).expect("read");
    assert_eq!(read, expected, "the durable log equals what was published");
    assert_eq!(s.last_position(), expected[3].position);
    // Paging.
    let page = s.read_changes(from, 2).expect("read");
    assert_eq!(page, expected[..2].to_vec());
    let rest = s.read_changes(page[1].position, 100).expect("read");
    assert_eq!(rest, expected[2..].to_vec());
    assert!(s
        .read_changes(s.last_position(), 10)
        .expect("read")
        .is_empty());

    // The next commit continues the sequence.
    let mut txn = s.begin();
    txn.insert(&t, user(9, "c", None, 9)).expect("insert");
    let info = txn.commit().await.expect("commit");
    assert_eq!(info.first_position, expected[3].position + 1);
}

#[tokio::test]
async fn old_records_decode_against_the_current_catalog() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let t = create_users(&s).await;
    let mut txn = s.begin();
    txn.insert(&t, user(1, "a", Some("e"), 1)).expect("insert");
    let info = txn.commit().await.expect("commit");

    // DROP COLUMN name.
    let mut altered = t.clone();
    altered.columns.remove(1);
    altered.indexes[0].columns = vec![1];
    altered.indexes[1].columns = vec![2];
    let mut txn = s.begin();
    txn.put_entry(CatalogEntry::Table(altered)).expect("alter");
    txn.commit().await.expect("commit");
    let rec = s
        .read_changes(info.first_position - 1, 1)
        .expect("read")
        .pop()
        .expect("record");
    assert_eq!(
        rec.new,
        Some(vec![
            Value::Int32(1),
            Value::Text("e".into()),
            Value::Int32(1)
        ])
    );

    // DROP TABLE: the record stays, without rows.
    let mut txn = s.begin();
    txn.drop_entry(t.id).expect("drop");
    txn.commit().await.expect("commit");
    let rec = s
        .read_changes(info.first_position - 1, 1)
        .expect("read")
        .pop()
        .expect("record");
    assert_eq!(rec.table_id, t.id);
    assert_eq!(rec.op, ChangeOp::Insert);
    assert_eq!(rec.new, None);
}

/// Waits (30 s at most) until `n` events are waiting in the stream.
async fn wait_published(
    events: &tokio::sync::broadcast::Receiver<std::sync::Arc<weft_storage::CommitEvent>>,
    n: usize,
) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while events.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "commit {n} was never published"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// `Storage::pace_commits`: a COMMIT is acknowledged only once the subscriber is at most the
/// allowed number of events behind, and the wait is bounded.
#[tokio::test]
async fn commits_wait_for_a_lagging_subscriber() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let t = create_users(&s).await;
    let mut events = s.subscribe();
    // Long enough that only `events_received` can end the wait below.
    s.pace_commits(1, Duration::from_secs(600));
    let mut txn = s.begin();
    txn.insert(&t, user(1, "a", None, 1)).expect("insert");
    txn.commit().await.expect("one event behind is allowed");
    let done = Arc::new(AtomicBool::new(false));
    let second = {
        let (s, t, done) = (s.clone(), t.clone(), done.clone());
        tokio::spawn(async move {
            let mut txn = s.begin();
            txn.insert(&t, user(2, "b", None, 2)).expect("insert");
            let info = txn.commit().await;
            done.store(true, Ordering::SeqCst);
            info
        })
    };
    // The second commit is durable and published, then waits for the subscriber.
    wait_published(&events, 2).await;
    assert!(
        !done.load(Ordering::SeqCst),
        "acknowledged while the subscriber lagged"
    );
    events.recv().await.expect("first event");
    s.events_received(0);
    let info = tokio::time::timeout(Duration::from_secs(30), second)
        .await
        .expect("the commit goes on once the subscriber caught up")
        .expect("task")
        .expect("commit");
    assert_eq!(
        events.recv().await.expect("second event").version,
        info.version
    );

    // What the subscriber took but reports unfinished counts as behind too.
    s.events_received(2);
    let third = {
        let (s, t) = (s.clone(), t.clone());
        tokio::spawn(async move {
            let mut txn = s.begin();
            txn.insert(&t, user(3, "c", None, 3)).expect("insert");
            txn.commit().await
        })
    };
    wait_published(&events, 1).await;
    assert!(
        !third.is_finished(),
        "acknowledged while the subscriber was behind"
    );
    events.recv().await.expect("third event");
    s.events_received(0);
    tokio::time::timeout(Duration::from_secs(30), third)
        .await
        .expect("the commit goes on once the subscriber finished")
        .expect("task")
        .expect("commit");

    // A subscriber that never reads slows commits by at most the bound.
    s.pace_commits(1, Duration::from_millis(1));
    for id in 4..7 {
        let mut txn = s.begin();
        txn.insert(&t, user(id, "c", None, id)).expect("insert");
        tokio::time::timeout(Duration::from_secs(30), txn.commit())
            .await
            .expect("bounded wait")
            .expect("commit");
    }
    // Read-only transactions are never paced.
    tokio::time::timeout(Duration::from_secs(30), s.begin().commit())
        .await
        .expect("not paced")
        .expect("commit");
}
