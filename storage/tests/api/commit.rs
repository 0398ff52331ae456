//! The commit pipeline: group commit under concurrency, the directory lock, DDL/DML conflicts,
//! hidden row ids across restarts.

use std::collections::HashSet;

use weft_storage::{CatalogEntry, Error, Storage, StorageOptions, Value};

use crate::common::{create_users, open, user};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commits_all_succeed_with_increasing_positions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let t = create_users(&s).await;
    let start_position = s.last_position();

    let mut tasks = Vec::new();
    for task in 0..8 {
        let s = s.clone();
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let mut infos = Vec::new();
            for i in 0..200 {
                let mut txn = s.begin();
                let id = task * 1000 + i;
                txn.insert(&t, user(id, "u", None, i)).expect("insert");
                infos.push(txn.commit().await.expect("commit"));
            }
            infos
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        let infos = task.await.expect("task");
        // Within one task, commits are sequential: strictly increasing.
        for w in infos.windows(2) {
            assert!(w[0].version < w[1].version);
            assert!(w[0].last_position < w[1].first_position);
            assert!(w[0].ts < w[1].ts);
        }
        all.extend(infos);
    }
    assert_eq!(all.len(), 1600);
    let positions: HashSet<u64> = all.iter().map(|i| i.first_position).collect();
    let versions: HashSet<u64> = all.iter().map(|i| i.version).collect();
    assert_eq!(positions.len(), 1600);
    assert_eq!(versions.len(), 1600);
    for i in &all {
        assert_eq!(i.first_position, i.last_position);
    }
    // Positions are exactly the next 1600, with no gaps.
    let min = positions.iter().min().copied().expect("min");
    let max = positions.iter().max().copied().expect("max");
    assert_eq!(min, start_position + 1);
    assert_eq!(max, start_position + 1600);
    assert_eq!(s.last_position(), max);
    // Versions and positions are assigned in the same order.
    let mut by_version = all.clone();
    by_version.sort_by_key(|i| i.version);
    for w in by_version.windows(2) {
        assert!(w[0].first_position < w[1].first_position);
        assert!(w[0].ts < w[1].ts);
    }
}

#[tokio::test]
async fn second_open_of_a_directory_fails_fast() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let err = Storage::open(dir.path(), StorageOptions::default())
        .err()
        .expect("second open fails");
    assert_eq!(
        err,
        Error::Locked {
            path: dir.path().to_path_buf()
        }
    );
    drop(s);
    // Released when the first handle goes away.
    let again = Storage::open(dir.path(), StorageOptions::default()).expect("reopens");
    drop(again);
}

#[tokio::test]
async fn drop_table_conflicts_with_concurrent_insert() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let t = create_users(&s).await;

    // DROP first: the insert fails.
    let mut ins = s.begin();
    let mut drop_txn = s.begin();
    ins.insert(&t, user(1, "x", None, 1)).expect("insert");
    drop_txn.drop_entry(t.id).expect("drop");
    drop_txn.commit().await.expect("drop commits");
    assert!(matches!(
        ins.commit().await,
        Err(Error::SerializationFailure { .. })
    ));
    assert!(s.catalog().table_by_id(t.id).is_none());

    // Insert first: the DROP (or ALTER) fails, so no row is orphaned.
    let t = create_users(&s).await;
    let mut ins = s.begin();
    let mut alter = s.begin();
    ins.insert(&t, user(1, "x", None, 1)).expect("insert");
    let mut def = t.clone();
    def.name = "altered".into();
    alter.put_entry(CatalogEntry::Table(def)).expect("alter");
    ins.commit().await.expect("insert commits");
    assert!(matches!(
        alter.commit().await,
        Err(Error::SerializationFailure { .. })
    ));

    // Two DDL transactions allocating ids conflict too.
    let mut a = s.begin();
    let mut b = s.begin();
    let ia = a.alloc_id().expect("id");
    let ib = b.alloc_id().expect("id");
    assert_eq!(ia, ib);
    a.commit().await.expect("a");
    assert!(matches!(
        b.commit().await,
        Err(Error::SerializationFailure { .. })
    ));
}

#[tokio::test]
async fn drop_and_truncate_remove_rows_and_index_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let t = create_users(&s).await;
    crate::common::insert_users(
        &s,
        &t,
        (0..50)
            .map(|i| user(i, "u", Some(&format!("{i}@x")), i % 5))
            .collect(),
    )
    .await;

    let mut txn = s.begin();
    txn.truncate(&t).expect("truncate");
    let batch = txn
        .reader()
        .scan(&t, &weft_storage::KeyRange::full(), None, None, 100)
        .expect("scan");
    assert!(batch.rows.is_empty());
    // Unique values are free again.
    txn.insert(&t, user(1, "again", Some("1@x"), 0))
        .expect("insert after truncate");
    let info = txn.commit().await.expect("commit");
    let changes = s
        .read_changes(info.first_position - 1, 10)
        .expect("changes");
    assert_eq!(changes[0].op, weft_storage::ChangeOp::Truncate);
    assert_eq!(changes[1].op, weft_storage::ChangeOp::Insert);

    let r = s.begin();
    let idx = r
        .reader()
        .index_scan(
            &t,
            t.indexes[1].id,
            &weft_storage::KeyRange::full(),
            None,
            None,
            100,
        )
        .expect("index scan");
    assert_eq!(idx.rows, vec![user(1, "again", Some("1@x"), 0)]);

    let mut txn = s.begin();
    txn.drop_entry(t.id).expect("drop");
    assert!(txn.catalog().table_by_id(t.id).is_none());
    txn.commit().await.expect("commit");
    assert!(s.catalog().table_by_id(t.id).is_none());
    assert_eq!(s.begin().get(&t, &[Value::Int32(1)]).expect("get"), None);
}

#[tokio::test]
async fn hidden_row_ids_are_not_reused_after_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let t = create_users(&s).await;
    let mut txn = s.begin();
    let a = txn.next_rowid();
    let b = txn.next_rowid();
    assert!(b > a);
    assert_eq!(a >> 48, 7, "node id in the high bits");
    // Make the transaction write something so its row ids are recorded.
    txn.insert(&t, user(1, "x", None, 1)).expect("insert");
    txn.commit().await.expect("commit");
    drop(s);

    let s = open(dir.path());
    let c = s.begin().next_rowid();
    assert!(c > b, "{c} > {b}");
}
