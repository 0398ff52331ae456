//! LWW tables over time: full sync after a purged log, tombstone purge, restarts, Raft
//! snapshots, schema changes under replication. Nodes and helpers are those of `lww.rs`.

use std::collections::{BTreeMap, BTreeSet};

use weft_storage::lww::bucket_of;
use weft_storage::{
    CatalogEntry, ChangeOp, IndexDef, LogRead, RowState, Storage, TableDef, Value, SYNC_BUCKETS,
};

use crate::lww::{
    assert_index_matches, changes_after, del, get, ids_with_b, kv, position, put, rows, set, ship,
    Node, LOOSE_OFFSET, MAX_OFFSET,
};

fn all_buckets() -> Vec<u32> {
    (0..SYNC_BUCKETS).collect()
}

/// Every row state of `t` (deleted rows included), by `data` key.
fn states(s: &Storage, t: &TableDef) -> BTreeMap<Vec<u8>, RowState> {
    s.lww_bucket_rows(t.id, &all_buckets())
        .expect("bucket rows")
        .into_iter()
        .collect()
}

fn dead(s: &Storage, t: &TableDef) -> usize {
    states(s, t).values().filter(|st| !st.is_live()).count()
}

#[tokio::test]
async fn full_sync_after_the_log_was_purged_ships_only_differing_buckets() {
    let a = Node::new(1).await;
    let b = Node::new(2).await;
    let t = &a.kv;
    let mut txn = a.s.begin();
    for id in 1..=40 {
        txn.insert(t, kv(id, Some("x"), Some(id))).expect("insert");
    }
    txn.commit().await.expect("commit");
    ship(&a, &b, MAX_OFFSET).await.expect("ship");
    assert_eq!(
        a.s.lww_bucket_checksums(t.id),
        b.s.lww_bucket_checksums(t.id)
    );

    // b misses these, and a purges its log.
    set(&a.s, t, 3, 2, Value::Int32(1000)).await;
    del(&a.s, t, 7).await;
    put(&a.s, t, kv(100, Some("new"), None)).await;
    let head = a.s.lww_head();
    a.s.lww_log_purge(head).expect("purge");
    assert_eq!(a.s.lww_log_bounds().expect("bounds"), (head + 1, head));
    let after = position(&b, &a);
    assert_eq!(after, 1);
    assert_eq!(
        a.s.lww_log_read(after, 100).expect("read"),
        LogRead::Purged {
            oldest: head + 1,
            head
        }
    );
    // Up to date readers are not told to resync.
    assert_eq!(
        a.s.lww_log_read(head, 100).expect("read"),
        LogRead::Entries {
            entries: vec![],
            head
        }
    );

    // Compare checksums, ship the differing buckets only.
    let (sa, sb) = (states(&a.s, t), states(&b.s, t));
    let changed: BTreeSet<&Vec<u8>> = sa
        .iter()
        .filter(|(k, st)| sb.get(*k) != Some(*st))
        .map(|(k, _)| k)
        .collect();
    assert_eq!(changed.len(), 3);
    let ca = a.s.lww_bucket_checksums(t.id).expect("checksums");
    let cb = b.s.lww_bucket_checksums(t.id).expect("checksums");
    assert_eq!(ca.len(), SYNC_BUCKETS as usize);
    let differing: Vec<u32> = (0..SYNC_BUCKETS)
        .filter(|&i| ca[i as usize] != cb[i as usize])
        .collect();
    let expected: BTreeSet<u32> = changed.iter().map(|k| bucket_of(k)).collect();
    assert_eq!(differing.iter().copied().collect::<BTreeSet<_>>(), expected);
    let shipped = a.s.lww_bucket_rows(t.id, &differing).expect("bucket rows");
    assert!(shipped
        .iter()
        .all(|(k, _)| differing.contains(&bucket_of(k))));
    assert!(shipped.len() < sa.len());
    assert!(
        shipped.iter().any(|(_, st)| !st.is_live()),
        "the delete travels as a tombstone"
    );

    let mut events = b.s.subscribe();
    let p = b.s.last_position();
    b.s.lww_merge_rows(t.id, shipped).await.expect("merge");
    b.s.lww_set_position(a.origin(), head, a.s.lww_last_ts())
        .await
        .expect("set position");
    assert_eq!(
        a.s.lww_bucket_checksums(t.id),
        b.s.lww_bucket_checksums(t.id)
    );
    assert_eq!(rows(&a.s, t), rows(&b.s, &b.kv));
    assert_eq!(
        a.s.table_checksum(t.id).expect("checksum"),
        b.s.table_checksum(t.id).expect("checksum")
    );
    assert_eq!(
        changes_after(&b.s, p),
        vec![(ChangeOp::Truncate, None, None)]
    );
    let ev = events.try_recv().expect("reset event");
    assert_eq!(ev.changes.len(), 1);
    assert_eq!(ev.changes[0].op, ChangeOp::Truncate);
    assert_eq!(ev.changes[0].table_id, t.id);
    assert_eq!(ids_with_b(&b.s, &b.kv, 1000), vec![3]);
    assert!(ids_with_b(&b.s, &b.kv, 7).is_empty());
    assert_index_matches(&b.s, &b.kv);

    // Positions never go back; entries after the sync apply as usual.
    b.s.lww_set_position(a.origin(), 1, 0)
        .await
        .expect("set position");
    assert_eq!(
        b.s.lww_positions().expect("positions")[&a.origin()],
        (head, a.s.lww_last_ts())
    );
    put(&a.s, t, kv(101, None, None)).await;
    assert_eq!(ship(&a, &b, MAX_OFFSET).await, Ok(1));
    assert_eq!(get(&b.s, &b.kv, 101), Some(kv(101, None, None)));
}

#[tokio::test]
async fn tombstone_purge_forgets_old_deletes_only() {
    let n = Node::new(1).await;
    let t = &n.kv;
    for id in 1..=4 {
        put(&n.s, t, kv(id, Some("x"), None)).await;
    }
    del(&n.s, t, 1).await;
    del(&n.s, t, 2).await;
    put(&n.s, t, kv(2, Some("again"), None)).await;
    let bound = n.s.lww_last_ts() + 1;
    let late = del(&n.s, t, 3).await;
    assert!(
        late.ts >= bound,
        "purge keeps tombstones at or after the bound"
    );
    assert_eq!(dead(&n.s, t), 2);
    let sum = n.s.table_checksum(t.id).expect("checksum");
    let visible = rows(&n.s, t);

    assert_eq!(n.s.lww_purge_tombstones(bound).await, Ok(1), "row 1 only");
    assert_eq!(dead(&n.s, t), 1, "row 3 was deleted after the bound");
    assert_eq!(get(&n.s, t, 2), Some(kv(2, Some("again"), None)));
    assert_eq!(rows(&n.s, t), visible);
    assert_eq!(n.s.table_checksum(t.id), Ok(sum));
    assert_eq!(n.s.lww_purge_tombstones(bound).await, Ok(0));

    assert_eq!(n.s.lww_purge_tombstones(late.ts + 1).await, Ok(1));
    assert_eq!(dead(&n.s, t), 0);
    assert_eq!(states(&n.s, t).len(), 2);
    assert_eq!(rows(&n.s, t), visible);
}

#[tokio::test]
async fn restart_keeps_the_log_positions_and_rows() {
    let a = Node::new(1).await;
    let b = Node::new(2).await;
    put(&a.s, &a.kv, kv(1, Some("x"), Some(1))).await;
    put(&a.s, &a.kv, kv(2, Some("y"), Some(2))).await;
    let last = set(&a.s, &a.kv, 1, 1, Value::Text("z".into())).await;
    ship(&a, &b, MAX_OFFSET).await.expect("ship");
    let want = rows(&a.s, &a.kv);
    let sum = a.s.table_checksum(a.kv.id).expect("checksum");

    let a = a.reopen();
    let b = b.reopen();
    assert_eq!(a.s.lww_head(), 3);
    assert_eq!(a.s.lww_last_ts(), last.ts);
    assert_eq!(a.s.lww_log_bounds().expect("bounds"), (1, 3));
    assert_eq!(
        b.s.lww_positions().expect("positions"),
        BTreeMap::from([(1, (3, last.ts))])
    );
    for n in [&a, &b] {
        assert_eq!(rows(&n.s, &n.kv), want);
        assert_eq!(n.s.table_checksum(n.kv.id), Ok(sum));
        assert_index_matches(&n.s, &n.kv);
    }

    let next = put(&a.s, &a.kv, kv(3, None, None)).await;
    assert!(next.ts > last.ts);
    let LogRead::Entries { entries, head } = a.s.lww_log_read(0, 100).expect("read") else {
        panic!("log purged");
    };
    assert_eq!(head, 4);
    assert_eq!(
        entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert!(entries.windows(2).all(|w| w[0].ts < w[1].ts));
    assert_eq!(ship(&a, &b, MAX_OFFSET).await, Ok(1));
    assert_eq!(rows(&a.s, &a.kv), rows(&b.s, &b.kv));
}

/// A node whose clock is behind a peer's still versions its writes above what it received
/// before a restart.
#[tokio::test]
async fn received_versions_outlive_a_restart() {
    let a = Node::new(1).await;
    let b = Node::new(2).await;
    a.s.set_clock_skew(5_000);
    let w = put(&a.s, &a.kv, kv(1, Some("a"), None)).await;
    assert_eq!(ship(&a, &b, LOOSE_OFFSET).await, Ok(1));

    let b = b.reopen();
    let o = set(&b.s, &b.kv, 1, 1, Value::Text("b".into())).await;
    assert!(o.ts > w.ts, "b's overwrite {} <= received {}", o.ts, w.ts);
    assert_eq!(ship(&b, &a, LOOSE_OFFSET).await, Ok(1));
    assert_eq!(get(&a.s, &a.kv, 1), Some(kv(1, Some("b"), None)));
}

#[tokio::test]
async fn raft_snapshot_replaces_raft_rows_and_leaves_lww_rows_alone() {
    let a = Node::new(1).await;
    let b = Node::new(2).await;
    let plain = |id: i32, v: &str| vec![Value::Int32(id), Value::Text(v.into())];
    for (n, tag) in [(&a, "a"), (&b, "b")] {
        let mut txn = n.s.begin();
        txn.insert(&n.plain, plain(1, tag)).expect("insert");
        txn.commit().await.expect("commit");
        put(&n.s, &n.kv, kv(1, Some(tag), Some(1))).await;
    }
    put(&b.s, &b.kv, kv(2, Some("b"), Some(2))).await;
    let mut txn = a.s.begin();
    txn.insert(&a.plain, plain(2, "a")).expect("insert");
    txn.commit().await.expect("commit");
    let b_rows = rows(&b.s, &b.kv);
    let b_sum = b.s.table_checksum(b.kv.id).expect("checksum");
    let b_positions = b.s.lww_positions().expect("positions");

    let (file, metas) = a.s.export_snapshot(&[]).expect("export");
    assert!(metas.is_empty());
    let mut events = b.s.subscribe();
    b.s.install_snapshot(&file).await.expect("install");
    assert!(events.try_recv().expect("reset event").reset);

    assert_eq!(rows(&b.s, &b.plain), vec![plain(1, "a"), plain(2, "a")]);
    assert_eq!(rows(&b.s, &b.kv), b_rows);
    assert_eq!(b.s.table_checksum(b.kv.id), Ok(b_sum));
    assert_eq!(b.s.lww_positions(), Ok(b_positions));
    assert_eq!(b.s.lww_head(), 2);
    assert_index_matches(&b.s, &b.kv);
    assert_eq!(ids_with_b(&b.s, &b.kv, 2), vec![2]);

    // Both kinds of writes go on after it.
    put(&b.s, &b.kv, kv(3, None, Some(3))).await;
    let mut txn = b.s.begin();
    txn.insert(&b.plain, plain(3, "b")).expect("insert");
    txn.commit().await.expect("commit");
    assert_eq!(rows(&b.s, &b.kv).len(), 3);
    assert_eq!(b.s.lww_head(), 3);
    assert_eq!(ship(&b, &a, MAX_OFFSET).await, Ok(3));
    assert_eq!(get(&a.s, &a.kv, 2), Some(kv(2, Some("b"), Some(2))));
}

/// Catalog changes reach every node through Raft; here each node runs them itself.
#[tokio::test]
async fn schema_changes_under_replication() {
    let a = Node::new(1).await;
    let b = Node::new(2).await;
    for id in 1..=3 {
        put(&a.s, &a.kv, kv(id, Some(&format!("v{id}")), Some(id))).await;
    }
    ship(&a, &b, MAX_OFFSET).await.expect("ship");

    // An index created after the rows covers them, on every node.
    let mut def = a.kv.clone();
    def.indexes.push(IndexDef {
        id: 2,
        name: "kv_a_idx".into(),
        columns: vec![1],
        unique: false,
        constraint: false,
        functions: Vec::new(),
        predicate: Vec::new(),
    });
    let alter = |s: Storage, def: TableDef| async move {
        let mut txn = s.begin();
        txn.build_index(&def, &def.indexes[1]).expect("build");
        txn.put_entry(CatalogEntry::Table(def)).expect("put");
        txn.commit().await.expect("create index");
    };
    alter(a.s.clone(), def.clone()).await;
    put(&a.s, &def, kv(4, Some("v4"), Some(4))).await;

    // b has not applied the index yet: a's new entry waits for it.
    let p = position(&b, &a);
    assert_eq!(ship(&a, &b, MAX_OFFSET).await, Ok(0));
    assert_eq!(position(&b, &a), p);
    alter(b.s.clone(), def.clone()).await;
    assert_eq!(ship(&a, &b, MAX_OFFSET).await, Ok(1));
    set(&a.s, &def, 2, 1, Value::Text("w".into())).await;
    ship(&a, &b, MAX_OFFSET).await.expect("ship");
    for n in [&a, &b] {
        let by_a =
            n.s.begin()
                .reader()
                .index_scan(
                    &def,
                    2,
                    &weft_storage::KeyRange::full(),
                    None,
                    Some(&[1]),
                    100,
                )
                .expect("index scan");
        let names: Vec<Value> = by_a.rows.into_iter().map(|mut r| r.remove(0)).collect();
        let want: Vec<Value> = ["v1", "v3", "v4", "w"]
            .iter()
            .map(|s| Value::Text((*s).into()))
            .collect();
        assert_eq!(names, want);
    }

    // DROP TABLE: each node removes its own rows; entries for the table are skipped.
    put(&a.s, &def, kv(5, None, None)).await;
    for n in [&a, &b] {
        let mut txn = n.s.begin();
        txn.drop_entry(def.id).expect("drop");
        txn.commit().await.expect("drop commits");
        assert!(states(&n.s, &def).is_empty());
        assert_eq!(n.s.lww_tables(), Vec::<u32>::new());
    }
    let p = position(&b, &a);
    assert_eq!(ship(&a, &b, MAX_OFFSET).await, Ok(1));
    assert_eq!(position(&b, &a), p + 1);
    assert!(states(&b.s, &def).is_empty());
}

/// Index ids are per table and reused (`max + 1`): one transaction may drop an index and create
/// another under its id. Each node rebuilds lww indexes itself, so it must notice.
#[tokio::test]
async fn an_index_replaced_under_the_same_id_is_rebuilt() {
    let n = Node::new(1).await;
    for id in 1..=4 {
        put(&n.s, &n.kv, kv(id, Some(&format!("n{}", id % 2)), Some(id))).await;
    }
    let mut def = n.kv.clone();
    def.indexes = vec![IndexDef {
        id: n.kv.indexes[0].id,
        name: "kv_a_idx".into(),
        columns: vec![1],
        unique: false,
        constraint: false,
        functions: Vec::new(),
        predicate: Vec::new(),
    }];
    let mut txn = n.s.begin();
    txn.drop_index(&n.kv, n.kv.indexes[0].id)
        .expect("drop index");
    txn.build_index(&def, &def.indexes[0]).expect("build index");
    txn.put_entry(CatalogEntry::Table(def.clone()))
        .expect("put");
    txn.commit().await.expect("replace index");
    put(&n.s, &def, kv(5, Some("n1"), Some(5))).await;

    let found =
        n.s.begin()
            .reader()
            .index_scan(
                &def,
                def.indexes[0].id,
                &weft_storage::KeyRange::prefix(vec![Value::Text("n1".into())]),
                None,
                None,
                100,
            )
            .expect("index scan");
    assert_eq!(
        found.rows,
        vec![
            kv(1, Some("n1"), Some(1)),
            kv(3, Some("n1"), Some(3)),
            kv(5, Some("n1"), Some(5))
        ]
    );
    let all =
        n.s.begin()
            .reader()
            .index_scan(
                &def,
                def.indexes[0].id,
                &weft_storage::KeyRange::full(),
                None,
                None,
                100,
            )
            .expect("index scan");
    assert_eq!(
        all.rows.len(),
        5,
        "no entries of the old index: {:?}",
        all.rows
    );
}
