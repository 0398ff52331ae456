//! Transactions: own writes, snapshots, conflicts, unique checks, savepoints.

use weft_storage::{Error, Value};

use crate::common::{create_users, insert_users, open, user};

fn pk(id: i32) -> Vec<Value> {
    vec![Value::Int32(id)]
}

#[tokio::test]
async fn reads_its_own_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let t = create_users(&s).await;

    let mut txn = s.begin();
    let reader = txn.reader();
    assert_eq!(txn.get(&t, &pk(1)).expect("get"), None);
    txn.insert(&t, user(1, "ann", Some("a@x"), 30))
        .expect("insert");
    assert_eq!(
        txn.get(&t, &pk(1)).expect("get"),
        Some(user(1, "ann", Some("a@x"), 30))
    );
    // A reader taken before the write sees it too.
    assert_eq!(
        reader.get(&t, &pk(1)).expect("get"),
        Some(user(1, "ann", Some("a@x"), 30))
    );
    txn.update(
        &t,
        &user(1, "ann", Some("a@x"), 30),
        user(1, "ann", Some("a@y"), 31),
    )
    .expect("update");
    assert_eq!(
        txn.get(&t, &pk(1)).expect("get"),
        Some(user(1, "ann", Some("a@y"), 31))
    );
    txn.delete(&t, &user(1, "ann", Some("a@y"), 31))
        .expect("delete");
    assert_eq!(txn.get(&t, &pk(1)).expect("get"), None);
    assert!(txn.has_writes());

    // Others do not see uncommitted writes.
    let mut txn2 = s.begin();
    txn2.insert(&t, user(2, "bob", None, 40)).expect("insert");
    assert_eq!(s.begin().get(&t, &pk(2)).expect("get"), None);
    txn2.commit().await.expect("commit");
    assert!(s.begin().get(&t, &pk(2)).expect("get").is_some());
}

#[tokio::test]
async fn snapshot_does_not_see_later_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let t = create_users(&s).await;
    insert_users(&s, &t, vec![user(1, "ann", None, 30)]).await;

    let old = s.begin();
    let old_version = old.read_version();
    let old_position = old.snapshot_position();

    let mut w = s.begin();
    w.update(&t, &user(1, "ann", None, 30), user(1, "ann", None, 99))
        .expect("update");
    w.insert(&t, user(2, "bob", None, 40)).expect("insert");
    let info = w.commit().await.expect("commit");
    assert!(info.version > old_version);

    assert_eq!(
        old.get(&t, &pk(1)).expect("get"),
        Some(user(1, "ann", None, 30))
    );
    assert_eq!(old.get(&t, &pk(2)).expect("get"), None);
    assert_eq!(old.read_version(), old_version);
    assert_eq!(old.snapshot_position(), old_position);

    let new = s.begin();
    assert_eq!(new.read_version(), info.version);
    assert_eq!(new.snapshot_position(), info.last_position);
    assert_eq!(
        new.get(&t, &pk(1)).expect("get"),
        Some(user(1, "ann", None, 99))
    );
}

#[tokio::test]
async fn exactly_one_of_two_concurrent_updaters_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let t = create_users(&s).await;
    insert_users(&s, &t, vec![user(1, "ann", None, 30)]).await;

    let mut a = s.begin();
    let mut b = s.begin();
    a.update(&t, &user(1, "ann", None, 30), user(1, "ann", None, 31))
        .expect("update a");
    b.update(&t, &user(1, "ann", None, 30), user(1, "ann", None, 32))
        .expect("update b");
    b.insert(&t, user(5, "side effect", None, 1))
        .expect("insert b");
    let (ra, rb) = tokio::join!(a.commit(), b.commit());
    let ok = [ra.is_ok(), rb.is_ok()];
    assert_eq!(ok.iter().filter(|o| **o).count(), 1, "{ra:?} {rb:?}");
    let (winner_age, loser) = if ra.is_ok() { (31, rb) } else { (32, ra) };
    assert!(matches!(loser, Err(Error::SerializationFailure { .. })));

    let r = s.begin();
    assert_eq!(
        r.get(&t, &pk(1)).expect("get"),
        Some(user(1, "ann", None, winner_age))
    );
    if winner_age == 31 {
        // The loser's other write did not happen either.
        assert_eq!(r.get(&t, &pk(5)).expect("get"), None);
    }
}

#[tokio::test]
async fn concurrent_inserts_of_one_new_key_conflict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let t = create_users(&s).await;

    let mut a = s.begin();
    let mut b = s.begin();
    a.insert(&t, user(1, "a", None, 1)).expect("insert a");
    b.insert(&t, user(1, "b", None, 2)).expect("insert b");
    a.commit().await.expect("first committer wins");
    let err = b.commit().await.expect_err("second conflicts");
    assert!(matches!(err, Error::SerializationFailure { .. }), "{err:?}");
    assert_eq!(
        s.begin().get(&t, &pk(1)).expect("get"),
        Some(user(1, "a", None, 1))
    );

    // Same for a unique index value under different primary keys.
    let mut a = s.begin();
    let mut b = s.begin();
    a.insert(&t, user(2, "a", Some("same@x"), 1)).expect("a");
    b.insert(&t, user(3, "b", Some("same@x"), 1)).expect("b");
    a.commit().await.expect("a commits");
    assert!(matches!(
        b.commit().await,
        Err(Error::SerializationFailure { .. })
    ));
}

#[tokio::test]
async fn unique_violations_are_reported_like_postgres() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let t = create_users(&s).await;
    insert_users(&s, &t, vec![user(1, "ann", Some("a@x"), 30)]).await;

    let mut txn = s.begin();
    let err = txn
        .insert(&t, user(1, "dup", None, 1))
        .expect_err("pk taken");
    assert_eq!(
        err,
        Error::UniqueViolation {
            table: t.name.clone(),
            constraint: t.pkey_name.clone(),
            detail: "Key (id)=(1) already exists.".into()
        }
    );
    let err = txn
        .insert(&t, user(2, "dup", Some("a@x"), 1))
        .expect_err("email taken");
    assert_eq!(
        err,
        Error::UniqueViolation {
            table: t.name.clone(),
            constraint: t.indexes[0].name.clone(),
            detail: "Key (email)=(a@x) already exists.".into()
        }
    );
    // The failed inserts left nothing behind.
    assert!(!txn.has_writes());

    // NULLs never conflict.
    txn.insert(&t, user(3, "n1", None, 1)).expect("null email");
    txn.insert(&t, user(4, "n2", None, 1))
        .expect("another null email");

    // Updating into a taken value fails; moving a value within a row does not.
    let err = txn
        .update(&t, &user(3, "n1", None, 1), user(3, "n1", Some("a@x"), 1))
        .expect_err("email taken");
    assert!(matches!(err, Error::UniqueViolation { .. }));
    txn.update(
        &t,
        &user(1, "ann", Some("a@x"), 30),
        user(10, "ann", Some("a@x"), 30),
    )
    .expect("pk change keeping the email");
    txn.insert(&t, user(1, "reuse", Some("b@x"), 5))
        .expect("old pk is free again");
    txn.commit().await.expect("commit");

    let r = s.begin();
    assert_eq!(
        r.get(&t, &pk(10)).expect("get"),
        Some(user(10, "ann", Some("a@x"), 30))
    );
    assert_eq!(
        r.get(&t, &pk(1)).expect("get"),
        Some(user(1, "reuse", Some("b@x"), 5))
    );
}

#[tokio::test]
async fn savepoints_undo_writes_catalog_notifies_and_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let t = create_users(&s).await;
    insert_users(&s, &t, vec![user(1, "ann", None, 30)]).await;
    let mut events = s.subscribe();

    let mut txn = s.begin();
    txn.insert(&t, user(2, "kept", None, 1)).expect("insert");
    txn.notify("ch", "kept");
    let sp = txn.savepoint();
    txn.insert(&t, user(3, "undone", None, 1)).expect("insert");
    txn.update(&t, &user(1, "ann", None, 30), user(1, "ann", None, 99))
        .expect("update");
    txn.delete(&t, &user(2, "kept", None, 1)).expect("delete");
    txn.notify("ch", "undone");
    let mut def = t.clone();
    def.name = "renamed".into();
    txn.put_entry(weft_storage::CatalogEntry::Table(def))
        .expect("rename");
    assert!(txn.catalog().table("renamed").is_some());
    txn.rollback_to(sp);

    assert!(txn.catalog().table("renamed").is_none());
    assert!(txn.catalog().table(&t.name).is_some());
    assert_eq!(txn.get(&t, &pk(3)).expect("get"), None);
    assert_eq!(
        txn.get(&t, &pk(1)).expect("get"),
        Some(user(1, "ann", None, 30))
    );
    assert_eq!(
        txn.get(&t, &pk(2)).expect("get"),
        Some(user(2, "kept", None, 1))
    );
    let info = txn.commit().await.expect("commit");
    assert_eq!(info.first_position, info.last_position, "one change kept");

    let ev = events.recv().await.expect("event");
    assert_eq!(ev.changes.len(), 1);
    assert_eq!(ev.changes[0].new, Some(user(2, "kept", None, 1)));
    assert_eq!(
        ev.notifications,
        vec![("ch".to_string(), "kept".to_string())]
    );
    assert!(!ev.catalog_changed);
    assert!(s.catalog().table(&t.name).is_some());
}

#[tokio::test]
async fn notifications_are_deduplicated_and_only_sent_on_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let mut events = s.subscribe();

    let mut dropped = s.begin();
    dropped.notify("a", "never");
    drop(dropped);

    let mut txn = s.begin();
    txn.notify("a", "1");
    txn.notify("b", "1");
    txn.notify("a", "1");
    txn.notify("a", "2");
    let info = txn.commit().await.expect("commit");
    let ev = events.recv().await.expect("event");
    assert_eq!(ev.version, info.version);
    assert_eq!(
        ev.notifications,
        vec![
            ("a".to_string(), "1".to_string()),
            ("b".to_string(), "1".to_string()),
            ("a".to_string(), "2".to_string())
        ]
    );
    assert!(ev.changes.is_empty());
}

/// Once the subscriber names the listened channels, a commit with nothing but NOTIFY messages
/// on other channels is not published; row changes always are.
#[tokio::test]
async fn notify_only_commits_on_unlistened_channels_are_not_published() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let t = create_users(&s).await;
    let mut events = s.subscribe();
    s.listen_filter("heard", true);
    s.listen_filter("dropped", true);
    s.listen_filter("dropped", false);

    for channel in ["unheard", "dropped"] {
        let mut txn = s.begin();
        txn.notify(channel, "nobody listens");
        txn.commit().await.expect("commit");
    }
    let mut txn = s.begin();
    txn.notify("unheard", "rides along");
    txn.insert(&t, user(1, "a", None, 1)).expect("insert");
    let with_row = txn.commit().await.expect("commit");
    let mut txn = s.begin();
    txn.notify("unheard", "x");
    txn.notify("heard", "y");
    let heard = txn.commit().await.expect("commit");

    let ev = events.recv().await.expect("event");
    assert_eq!(
        ev.version, with_row.version,
        "the NOTIFY-only commits were skipped"
    );
    assert_eq!(ev.changes.len(), 1);
    let ev = events.recv().await.expect("event");
    assert_eq!(ev.version, heard.version);
    assert_eq!(
        ev.notifications.len(),
        2,
        "a published commit keeps all its messages"
    );
    assert!(events.try_recv().is_err());
}

#[tokio::test]
async fn read_only_commit_skips_the_committer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let t = create_users(&s).await;
    let txn = s.begin();
    let rv = txn.read_version();
    assert!(!txn.has_writes());
    assert_eq!(txn.get(&t, &pk(1)).expect("get"), None);
    let info = txn.commit().await.expect("commit");
    assert_eq!(info.version, rv);
    assert_eq!(info.first_position, info.last_position + 1);
}

#[tokio::test]
async fn shutdown_rejects_later_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let t = create_users(&s).await;
    let mut txn = s.begin();
    txn.insert(&t, user(1, "x", None, 1)).expect("insert");
    s.shutdown();
    assert_eq!(txn.commit().await, Err(Error::ShuttingDown));
    s.shutdown();
}

#[test]
fn txn_is_send_and_reader_is_send_sync() {
    fn send<T: Send>() {}
    fn send_sync_static<T: Send + Sync + 'static>() {}
    send::<weft_storage::Txn>();
    send_sync_static::<weft_storage::TxnReader>();
    send_sync_static::<weft_storage::Storage>();
}

/// What `SELECT … FOR UPDATE` asks once it holds a row's lock: did a commit after this snapshot
/// write or delete the row? The transaction's own writes and other rows do not count.
#[tokio::test]
async fn a_snapshot_tells_which_rows_later_commits_changed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let t = create_users(&s).await;
    let rows = (1..=4).map(|i| user(i, "u", None, 30)).collect();
    insert_users(&s, &t, rows).await;
    let key = |id: i32| weft_storage::row_key(t.id, &pk(id));

    let mut mine = s.begin();
    mine.update(&t, &user(4, "u", None, 30), user(4, "u", None, 99))
        .expect("own update");
    let mut other = s.begin();
    other
        .update(&t, &user(1, "u", None, 30), user(1, "u", None, 31))
        .expect("update 1");
    other.delete(&t, &user(2, "u", None, 30)).expect("delete 2");
    other.commit().await.expect("commit");

    let reader = mine.reader();
    assert!(reader.changed_since_snapshot(&key(1)).expect("1"));
    assert!(reader.changed_since_snapshot(&key(2)).expect("2"));
    assert!(!reader.changed_since_snapshot(&key(3)).expect("3"));
    assert!(!reader.changed_since_snapshot(&key(4)).expect("4"));
    assert!(!s
        .begin()
        .reader()
        .changed_since_snapshot(&key(1))
        .expect("fresh"));
    // The transaction's own check (by the stored version) agrees, also on a row it inserted.
    mine.insert(&t, user(5, "u", None, 30)).expect("own insert");
    for (id, changed) in [(1, true), (2, true), (3, false), (4, false), (5, false)] {
        assert_eq!(
            mine.changed_since_snapshot(&key(id)).expect("txn"),
            changed,
            "{id}"
        );
    }
    assert!(!s.begin().changed_since_snapshot(&key(2)).expect("fresh"));
}
