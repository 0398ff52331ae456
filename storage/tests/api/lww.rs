//! LWW tables: the nodes and helpers of the `lww*` tests, and what one node does on its own
//! (local commits, their log entries and change records, the refusals, group commit).
//!
//! Each `Storage` is one node (its own directory and node id); the tests carry origin-log
//! entries between nodes by hand, as the cluster layer does over RPC. Where a test needs one of
//! two concurrent writes to be the newer, it skews that node's clock (`set_clock_skew`) rather
//! than rely on which commit ran first.

use std::path::Path;
use std::time::Duration;

use tempfile::TempDir;
use weft_storage::lww::{RowOp, RowWrite};
use weft_storage::{
    CatalogEntry, ChangeOp, CommitInfo, Consistency, DataType, Error, IndexDef, KeyRange, LogRead,
    Row, Storage, StorageOptions, TableDef, Value,
};

use crate::common::col;

/// What a node accepts from a peer in most tests.
pub const MAX_OFFSET: Duration = Duration::from_millis(500);
/// For entries of a node whose clock a test skewed ahead.
pub const LOOSE_OFFSET: Duration = Duration::from_secs(10);

/// One node: its directory, id, storage, an lww table `kv` and a raft table `plain`.
pub struct Node {
    pub dir: TempDir,
    pub id: u16,
    pub s: Storage,
    pub kv: TableDef,
    pub plain: TableDef,
}

impl Node {
    /// A fresh node. Every node runs the same catalog calls in the same order, as Raft would
    /// have them apply, so table ids and catalog versions agree.
    pub async fn new(id: u16) -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = open_node(dir.path(), id);
        let kv = create_kv(&s).await;
        let plain = create_plain(&s).await;
        Node {
            dir,
            id,
            s,
            kv,
            plain,
        }
    }

    /// Closes the storage and opens the directory again.
    pub fn reopen(self) -> Node {
        let Node {
            dir,
            id,
            s,
            kv,
            plain,
        } = self;
        s.shutdown();
        drop(s);
        let s = open_node(dir.path(), id);
        Node {
            dir,
            id,
            s,
            kv,
            plain,
        }
    }

    pub fn origin(&self) -> u64 {
        u64::from(self.id)
    }
}

pub fn open_node(dir: &Path, node_id: u16) -> Storage {
    Storage::open(
        dir,
        StorageOptions {
            node_id,
            sync: false,
            prewrite_wal: false,
        },
    )
    .expect("storage opens")
}

/// `kv(id int primary key, a text, b int) WITH (consistency = 'lww')`, index `kv_b_idx` on `b`.
async fn create_kv(s: &Storage) -> TableDef {
    let mut txn = s.begin();
    let id = txn.alloc_id().expect("id");
    let def = TableDef {
        id,
        name: "kv".into(),
        columns: vec![
            col(1, "id", DataType::Int32),
            col(2, "a", DataType::Text),
            col(3, "b", DataType::Int32),
        ],
        primary_key: vec![0],
        pkey_name: "kv_pkey".into(),
        indexes: vec![IndexDef {
            id: 1,
            name: "kv_b_idx".into(),
            columns: vec![2],
            unique: false,
            constraint: false,
            functions: Vec::new(),
            predicate: Vec::new(),
        }],
        checks: vec![],
        consistency: Consistency::Lww,
        foreign_keys: Vec::new(),
        comments: Default::default(),
        next_column_id: 4,
    };
    txn.put_entry(CatalogEntry::Table(def.clone()))
        .expect("put entry");
    txn.commit().await.expect("create kv");
    def
}

/// `plain(id int primary key, v text)`, a raft table.
async fn create_plain(s: &Storage) -> TableDef {
    let mut txn = s.begin();
    let id = txn.alloc_id().expect("id");
    let def = TableDef {
        id,
        name: "plain".into(),
        columns: vec![col(1, "id", DataType::Int32), col(2, "v", DataType::Text)],
        primary_key: vec![0],
        pkey_name: "plain_pkey".into(),
        indexes: vec![],
        checks: vec![],
        consistency: Consistency::Raft,
        foreign_keys: Vec::new(),
        comments: Default::default(),
        next_column_id: 3,
    };
    txn.put_entry(CatalogEntry::Table(def.clone()))
        .expect("put entry");
    txn.commit().await.expect("create plain");
    def
}

pub fn kv(id: i32, a: Option<&str>, b: Option<i32>) -> Vec<Value> {
    vec![
        Value::Int32(id),
        a.map_or(Value::Null, |a| Value::Text(a.into())),
        b.map_or(Value::Null, Value::Int32),
    ]
}

pub fn get(s: &Storage, t: &TableDef, id: i32) -> Option<Vec<Value>> {
    s.begin().get(t, &[Value::Int32(id)]).expect("get")
}

/// Every row of `t`, in key order.
pub fn rows(s: &Storage, t: &TableDef) -> Vec<Vec<Value>> {
    let b = s
        .begin()
        .reader()
        .scan(t, &KeyRange::full(), None, None, 100_000)
        .expect("scan");
    assert_eq!(b.resume, None);
    b.rows
}

/// Inserts `row`, or overwrites the row with its key.
pub async fn put(s: &Storage, t: &TableDef, row: Vec<Value>) -> CommitInfo {
    let mut txn = s.begin();
    match txn.get(t, &row[..1]).expect("get") {
        Some(old) => txn.update(t, &old, row).expect("update"),
        None => txn.insert(t, row).expect("insert"),
    }
    txn.commit().await.expect("commit")
}

/// Sets column `pos` of row `id` (which must exist) to `v`.
pub async fn set(s: &Storage, t: &TableDef, id: i32, pos: usize, v: Value) -> CommitInfo {
    let mut txn = s.begin();
    let old = txn
        .get(t, &[Value::Int32(id)])
        .expect("get")
        .expect("row exists");
    let mut new = old.clone();
    new[pos] = v;
    txn.update(t, &old, new).expect("update");
    txn.commit().await.expect("commit")
}

pub async fn del(s: &Storage, t: &TableDef, id: i32) -> CommitInfo {
    let mut txn = s.begin();
    let old = txn
        .get(t, &[Value::Int32(id)])
        .expect("get")
        .expect("row exists");
    txn.delete(t, &old).expect("delete");
    txn.commit().await.expect("commit")
}

/// Seq of `from`'s log that `to` applied last.
pub fn position(to: &Node, from: &Node) -> u64 {
    to.s.lww_positions()
        .expect("positions")
        .get(&from.origin())
        .map_or(0, |p| p.0)
}

/// Sends `to` every entry of `from`'s log after `to`'s position, as replication would.
pub async fn ship(from: &Node, to: &Node, max_offset: Duration) -> Result<usize, Error> {
    let after = position(to, from);
    match from.s.lww_log_read(after, 10_000).expect("log read") {
        LogRead::Entries { entries, .. } => {
            to.s.lww_apply(from.origin(), entries, max_offset).await
        }
        purged => panic!("log of node {} purged: {purged:?}", from.id),
    }
}

/// Ids of the rows an index scan of `kv_b_idx` finds for `b`; every row it returns must have
/// that `b` (a stale entry would return a row with another value, or fail on a missing row).
pub fn ids_with_b(s: &Storage, t: &TableDef, b: i32) -> Vec<i32> {
    let batch = s
        .begin()
        .reader()
        .index_scan(
            t,
            t.indexes[0].id,
            &KeyRange::prefix(vec![Value::Int32(b)]),
            None,
            None,
            10_000,
        )
        .expect("index scan");
    batch
        .rows
        .iter()
        .map(|r| {
            assert_eq!(r[2], Value::Int32(b), "index entry for b={b} on {r:?}");
            match r[0] {
                Value::Int32(id) => id,
                ref other => panic!("id {other:?}"),
            }
        })
        .collect()
}

/// Every row through `kv_b_idx` equals every row through the primary key (no stale or
/// missing entries).
pub fn assert_index_matches(s: &Storage, t: &TableDef) {
    let batch = s
        .begin()
        .reader()
        .index_scan(t, t.indexes[0].id, &KeyRange::full(), None, None, 100_000)
        .expect("index scan");
    let mut via_index = batch.rows;
    via_index.sort_by_key(|r| format!("{:?}", r[0]));
    let mut direct = rows(s, t);
    direct.sort_by_key(|r| format!("{:?}", r[0]));
    assert_eq!(via_index, direct);
}

/// A change record's op, old row and new row.
pub type Change = (ChangeOp, Option<Row>, Option<Row>);

/// Change records written after position `after`.
pub fn changes_after(s: &Storage, after: u64) -> Vec<Change> {
    s.read_changes(after, 1000)
        .expect("read changes")
        .into_iter()
        .map(|c| (c.op, c.old, c.new))
        .collect()
}

pub fn checksum(n: &Node) -> u64 {
    n.s.table_checksum(n.kv.id).expect("checksum")
}

#[tokio::test]
async fn local_writes_read_back_log_entries_and_record_changes() {
    let n = Node::new(1).await;
    let t = &n.kv;
    let mut events = n.s.subscribe();
    let start = n.s.last_position();

    let ins = put(&n.s, t, kv(1, Some("x"), Some(10))).await;
    let upd = set(&n.s, t, 1, 1, Value::Text("y".into())).await;
    let dl = del(&n.s, t, 1).await;
    assert!(ins.ts < upd.ts && upd.ts < dl.ts);
    assert_eq!(ins.first_position, start + 1);
    assert_eq!(upd.first_position, ins.last_position + 1);
    assert_eq!(dl.last_position, dl.first_position);
    assert_eq!(get(&n.s, t, 1), None);

    let want = vec![
        (ChangeOp::Insert, None, Some(kv(1, Some("x"), Some(10)))),
        (
            ChangeOp::Update,
            Some(kv(1, Some("x"), Some(10))),
            Some(kv(1, Some("y"), Some(10))),
        ),
        (ChangeOp::Delete, Some(kv(1, Some("y"), Some(10))), None),
    ];
    assert_eq!(changes_after(&n.s, start), want);
    for (info, want) in [ins, upd, dl].iter().zip(&want) {
        let ev = events.try_recv().expect("an event per commit");
        assert_eq!(ev.ts, info.ts);
        assert_eq!(ev.changes.len(), 1);
        assert_eq!(ev.changes[0].position, info.first_position);
        assert_eq!(ev.changes[0].table_id, t.id);
        assert_eq!(
            (
                ev.changes[0].op,
                ev.changes[0].old.clone(),
                ev.changes[0].new.clone()
            ),
            want.clone()
        );
    }

    // Several rows in one transaction: one log entry.
    let mut txn = n.s.begin();
    txn.insert(t, kv(2, Some("p"), None)).expect("insert");
    txn.insert(t, kv(3, None, Some(3))).expect("insert");
    txn.update(t, &kv(2, Some("p"), None), kv(2, Some("q"), Some(2)))
        .expect("update");
    let both = txn.commit().await.expect("commit");
    assert_eq!(both.last_position, both.first_position + 1);
    assert_eq!(
        rows(&n.s, t),
        vec![kv(2, Some("q"), Some(2)), kv(3, None, Some(3))]
    );

    // Writing what is already there (or inserting and deleting again) changes nothing: no
    // entry, no change record, no event.
    let head = n.s.lww_head();
    let _ = events.try_recv().expect("event of the two-row commit");
    put(&n.s, t, kv(2, Some("q"), Some(2))).await;
    let mut txn = n.s.begin();
    txn.insert(t, kv(9, None, None)).expect("insert");
    txn.delete(t, &kv(9, None, None)).expect("delete");
    txn.commit().await.expect("commit");
    assert_eq!(n.s.lww_head(), head);
    assert_eq!(n.s.last_position(), both.last_position);
    assert!(events.try_recv().is_err());

    // The origin log: one entry per commit, seq 1.., the commit's ts, only changed cells (and
    // the key) for an update.
    let LogRead::Entries { entries, head } = n.s.lww_log_read(0, 100).expect("read") else {
        panic!("log purged");
    };
    assert_eq!(head, 4);
    assert_eq!(
        entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert!(entries.iter().all(|e| e.origin == 1));
    assert_eq!(
        entries.iter().map(|e| e.ts).collect::<Vec<_>>(),
        vec![ins.ts, upd.ts, dl.ts, both.ts]
    );
    assert_eq!(n.s.lww_last_ts(), both.ts);
    let key = entries[0].rows[0].key.clone();
    match &entries[1].rows[..] {
        [RowWrite {
            table,
            key: k,
            op: RowOp::Upsert(cells),
        }] => {
            assert_eq!((*table, k), (t.id, &key));
            assert_eq!(cells.iter().map(|c| c.0).collect::<Vec<_>>(), vec![1, 2]);
        }
        other => panic!("update entry {other:?}"),
    }
    assert_eq!(
        entries[2].rows,
        vec![RowWrite {
            table: t.id,
            key,
            op: RowOp::Delete
        }]
    );
    assert_eq!(entries[3].rows.len(), 2);
    // Paging.
    let LogRead::Entries { entries, head } = n.s.lww_log_read(1, 2).expect("read") else {
        panic!("log purged");
    };
    assert_eq!((entries.len(), entries[0].seq, head), (2, 2, 4));
    assert_eq!(n.s.lww_log_bounds().expect("bounds"), (1, 4));
}

#[tokio::test]
async fn a_transaction_writing_lww_and_raft_tables_is_refused() {
    let n = Node::new(1).await;
    let mut txn = n.s.begin();
    txn.insert(&n.kv, kv(1, Some("x"), None)).expect("insert");
    txn.insert(&n.plain, vec![Value::Int32(1), Value::Text("p".into())])
        .expect("insert");
    let err = txn.commit().await.expect_err("mixed commit");
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");

    // Nor with DDL.
    let mut txn = n.s.begin();
    txn.insert(&n.kv, kv(1, Some("x"), None)).expect("insert");
    let mut renamed = n.plain.clone();
    renamed.name = "plain2".into();
    txn.put_entry(CatalogEntry::Table(renamed)).expect("put");
    let err = txn.commit().await.expect_err("lww write with DDL");
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");

    // Nor with a TRUNCATE of an empty raft table: it writes no row, but records a change and
    // must conflict with concurrent inserts.
    let mut txn = n.s.begin();
    txn.insert(&n.kv, kv(1, Some("x"), None)).expect("insert");
    txn.truncate(&n.plain).expect("truncate");
    let err = txn
        .commit()
        .await
        .expect_err("lww write with a raft TRUNCATE");
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");

    assert_eq!(get(&n.s, &n.kv, 1), None);
    assert_eq!(get(&n.s, &n.plain, 1), None);
    assert_eq!(n.s.lww_head(), 0);
    assert_eq!(n.s.catalog().table_by_id(n.plain.id), Some(&n.plain));

    // Each on its own commits.
    put(&n.s, &n.kv, kv(1, Some("x"), None)).await;
    let mut txn = n.s.begin();
    txn.insert(&n.plain, vec![Value::Int32(1), Value::Text("p".into())])
        .expect("insert");
    txn.commit().await.expect("raft commit");
    assert_eq!(get(&n.s, &n.kv, 1), Some(kv(1, Some("x"), None)));
    assert_eq!(n.s.lww_head(), 1);
}

#[tokio::test]
async fn a_write_to_a_table_dropped_meanwhile_fails_to_serialize() {
    let n = Node::new(1).await;
    let mut ins = n.s.begin();
    ins.insert(&n.kv, kv(1, None, None)).expect("insert");
    let mut drop_txn = n.s.begin();
    drop_txn.drop_entry(n.kv.id).expect("drop");
    drop_txn.commit().await.expect("drop commits");
    let err = ins.commit().await.expect_err("insert into a dropped table");
    assert!(matches!(err, Error::SerializationFailure { .. }), "{err:?}");
    assert_eq!(n.s.lww_head(), 0);
    assert!(n.s.lww_tables().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lww_and_raft_commits_share_the_committer() {
    let n = Node::new(1).await;
    let start = n.s.last_position();
    let mut tasks = Vec::new();
    for task in 0..8 {
        let s = n.s.clone();
        let (kv_t, plain) = (n.kv.clone(), n.plain.clone());
        tasks.push(tokio::spawn(async move {
            let mut infos = Vec::new();
            for i in 0..100 {
                let id = task * 1000 + i;
                let mut txn = s.begin();
                if task % 2 == 0 {
                    txn.insert(&kv_t, kv(id, None, Some(i))).expect("insert");
                } else {
                    txn.insert(&plain, vec![Value::Int32(id), Value::Null])
                        .expect("insert");
                }
                infos.push(txn.commit().await.expect("commit"));
            }
            infos
        }));
    }
    let mut positions = Vec::new();
    for task in tasks {
        let infos = task.await.expect("task");
        assert!(infos.windows(2).all(|w| w[0].ts < w[1].ts));
        for i in infos {
            assert_eq!(i.first_position, i.last_position);
            positions.push(i.first_position);
        }
    }
    positions.sort_unstable();
    assert_eq!(positions, (start + 1..=start + 800).collect::<Vec<_>>());
    assert_eq!(n.s.last_position(), start + 800);
    assert_eq!(rows(&n.s, &n.kv).len(), 400);
    assert_eq!(rows(&n.s, &n.plain).len(), 400);
    assert_index_matches(&n.s, &n.kv);

    let LogRead::Entries { entries, head } = n.s.lww_log_read(0, 1000).expect("read") else {
        panic!("log purged");
    };
    assert_eq!(head, 400);
    assert_eq!(
        entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=400).collect::<Vec<_>>()
    );
    assert!(entries.windows(2).all(|w| w[0].ts < w[1].ts));
}
