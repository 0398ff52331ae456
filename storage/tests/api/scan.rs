//! Scans: key ranges with prefix bounds, batches with resume cursors, projections, index scans,
//! and the merge of snapshot and write buffer.

use std::ops::Bound;

use weft_storage::{
    CatalogEntry, Consistency, DataType, IndexDef, KeyRange, Storage, TableDef, TxnReader, Value,
};

use crate::common::{col, open};

/// `pairs(a int, b text, v int, primary key (a, b))`, index on `v`.
async fn create_pairs(s: &Storage) -> TableDef {
    let mut txn = s.begin();
    let id = txn.alloc_id().expect("id");
    let idx = txn.alloc_id().expect("id");
    let def = TableDef {
        id,
        name: "pairs".into(),
        columns: vec![
            col(1, "a", DataType::Int32),
            col(2, "b", DataType::Text),
            col(3, "v", DataType::Int32),
        ],
        primary_key: vec![0, 1],
        pkey_name: "pairs_pkey".into(),
        indexes: vec![IndexDef {
            id: idx,
            name: "pairs_v_idx".into(),
            columns: vec![2],
            unique: false,
            constraint: false,
            functions: Vec::new(),
            predicate: Vec::new(),
        }],
        checks: vec![],
        consistency: Consistency::Raft,
        foreign_keys: Vec::new(),
        comments: Default::default(),
        next_column_id: 4,
    };
    txn.put_entry(CatalogEntry::Table(def.clone()))
        .expect("put");
    for a in 0..10 {
        for b in ["x", "y", "z"] {
            let v = if b == "y" {
                Value::Null
            } else {
                Value::Int32((a * 7) % 5)
            };
            txn.insert(&def, vec![Value::Int32(a), Value::Text(b.into()), v])
                .expect("insert");
        }
    }
    txn.commit().await.expect("commit");
    def
}

fn keys(rows: &[Vec<Value>]) -> Vec<(i32, String)> {
    rows.iter()
        .map(|r| match (&r[0], &r[1]) {
            (Value::Int32(a), Value::Text(b)) => (*a, b.clone()),
            other => panic!("unexpected row {other:?}"),
        })
        .collect()
}

/// Every row of the range, fetched `batch` at a time.
fn scan_all(r: &TxnReader, t: &TableDef, range: &KeyRange, batch: usize) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    let mut resume: Option<Vec<u8>> = None;
    loop {
        let b = r
            .scan(t, range, resume.as_deref(), None, batch)
            .expect("scan");
        assert!(b.rows.len() <= batch);
        out.extend(b.rows);
        match b.resume {
            Some(c) => resume = Some(c),
            None => return out,
        }
    }
}

#[tokio::test]
async fn range_bounds_are_key_prefixes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let t = create_pairs(&s).await;
    let r = s.begin().reader();

    let all = scan_all(&r, &t, &KeyRange::full(), 1000);
    assert_eq!(all.len(), 30);
    let ks = keys(&all);
    let mut sorted = ks.clone();
    sorted.sort();
    assert_eq!(ks, sorted);

    let range = KeyRange {
        lower: Bound::Included(vec![Value::Int32(3)]),
        upper: Bound::Included(vec![Value::Int32(4)]),
    };
    assert_eq!(
        keys(&scan_all(&r, &t, &range, 1000)),
        vec![
            (3, "x".into()),
            (3, "y".into()),
            (3, "z".into()),
            (4, "x".into()),
            (4, "y".into()),
            (4, "z".into())
        ]
    );
    let range = KeyRange {
        lower: Bound::Excluded(vec![Value::Int32(3)]),
        upper: Bound::Excluded(vec![Value::Int32(5)]),
    };
    assert_eq!(keys(&scan_all(&r, &t, &range, 1000)).len(), 3);
    let range = KeyRange {
        lower: Bound::Excluded(vec![Value::Int32(3), Value::Text("x".into())]),
        upper: Bound::Included(vec![Value::Int32(3), Value::Text("y".into())]),
    };
    assert_eq!(keys(&scan_all(&r, &t, &range, 1000)), vec![(3, "y".into())]);
    // A wider integer bound still orders against an int column.
    let range = KeyRange {
        lower: Bound::Included(vec![Value::Int64(9)]),
        upper: Bound::Unbounded,
    };
    assert_eq!(keys(&scan_all(&r, &t, &range, 1000)).len(), 3);
}

#[tokio::test]
async fn batches_resume_where_they_stopped_and_see_own_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let t = create_pairs(&s).await;
    let mut txn = s.begin();
    let r = txn.reader();
    let base = scan_all(&r, &t, &KeyRange::full(), 1000);
    for batch in [1, 2, 7, 29, 30, 31] {
        assert_eq!(scan_all(&r, &t, &KeyRange::full(), batch), base);
    }

    // Writes in the buffer merge in, deletes hide snapshot rows.
    txn.delete(&t, &base[0]).expect("delete");
    txn.insert(
        &t,
        vec![Value::Int32(3), Value::Text("xx".into()), Value::Null],
    )
    .expect("insert");
    txn.insert(
        &t,
        vec![Value::Int32(100), Value::Text("a".into()), Value::Null],
    )
    .expect("insert");
    let mut updated = base[4].clone();
    updated[2] = Value::Int32(77);
    txn.update(&t, &base[4], updated.clone()).expect("update");
    for batch in [1, 3, 1000] {
        let rows = scan_all(&r, &t, &KeyRange::full(), batch);
        assert_eq!(rows.len(), 31);
        assert_eq!(keys(&rows)[0], (0, "y".into()));
        assert!(keys(&rows).contains(&(3, "xx".into())));
        assert_eq!(keys(&rows)[30], (100, "a".into()));
        assert!(rows.contains(&updated));
        assert!(!rows.contains(&base[4]));
    }

    // A cursor is only valid for the scan that made it.
    let b = r.scan(&t, &KeyRange::full(), None, None, 1).expect("scan");
    let cursor = b.resume.expect("more");
    assert!(r
        .index_scan(
            &t,
            t.indexes[0].id,
            &KeyRange::full(),
            Some(&cursor),
            None,
            1
        )
        .is_err());
}

#[tokio::test]
async fn projections_and_index_scans() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let t = create_pairs(&s).await;
    let r = s.begin().reader();

    let b = r
        .scan(&t, &KeyRange::full(), None, Some(&[2, 0]), 2)
        .expect("scan");
    assert_eq!(
        b.rows,
        vec![
            vec![Value::Int32(0), Value::Int32(0)],
            vec![Value::Null, Value::Int32(0)]
        ]
    );

    let idx = t.indexes[0].id;
    // Index order: v ascending, NULLs last, then primary key.
    let mut rows = Vec::new();
    let mut resume: Option<Vec<u8>> = None;
    loop {
        let b = r
            .index_scan(
                &t,
                idx,
                &KeyRange::full(),
                resume.as_deref(),
                Some(&[2, 0, 1]),
                4,
            )
            .expect("index scan");
        rows.extend(b.rows);
        match b.resume {
            Some(c) => resume = Some(c),
            None => break,
        }
    }
    assert_eq!(rows.len(), 30);
    let vs: Vec<Value> = rows.iter().map(|r| r[0].clone()).collect();
    assert!(vs[..20].iter().all(|v| !v.is_null()));
    assert!(vs[20..].iter().all(Value::is_null));
    let sort_key = |r: &Vec<Value>| match (&r[0], &r[1], &r[2]) {
        (Value::Int32(v), Value::Int32(a), Value::Text(b)) => (*v, *a, b.clone()),
        other => panic!("unexpected row {other:?}"),
    };
    let got: Vec<_> = rows[..20].iter().map(sort_key).collect();
    let mut want = got.clone();
    want.sort();
    assert_eq!(got, want);

    let eq2 = KeyRange::prefix(vec![Value::Int32(2)]);
    let b = r
        .index_scan(&t, idx, &eq2, None, Some(&[0]), 100)
        .expect("scan");
    // a*7 % 5 == 2 for a in {1, 6}, two rows each (b = x, z).
    assert_eq!(
        b.rows,
        vec![
            vec![Value::Int32(1)],
            vec![Value::Int32(1)],
            vec![Value::Int32(6)],
            vec![Value::Int32(6)]
        ]
    );
    assert_eq!(b.resume, None);
    assert!(r
        .index_scan(&t, 999_999, &KeyRange::full(), None, None, 1)
        .is_err());
}
