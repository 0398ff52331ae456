//! The catalog: transactional DDL, visibility, persistence, ADD/DROP COLUMN without rewrite.

use weft_storage::{CatalogEntry, DataType, IndexDef, Value, ViewDef, FIRST_OBJECT_ID};

use crate::common::{col, create_users, insert_users, open, user};

#[tokio::test]
async fn catalog_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (t, view_id) = {
        let s = open(dir.path());
        let t = create_users(&s).await;
        assert!(t.id >= FIRST_OBJECT_ID);
        let mut txn = s.begin();
        let view_id = txn.alloc_id().expect("id");
        txn.put_entry(CatalogEntry::View(ViewDef {
            id: view_id,
            name: "v".into(),
            query: "select 1".into(),
            columns: vec!["x".into()],
            comments: Default::default(),
        }))
        .expect("view");
        txn.commit().await.expect("commit");
        insert_users(&s, &t, vec![user(1, "ann", Some("a@x"), 3)]).await;
        s.shutdown();
        (t, view_id)
    };
    let s = open(dir.path());
    let catalog = s.catalog();
    assert_eq!(catalog.table(&t.name), Some(&t));
    assert_eq!(
        catalog.get_by_name("v").map(CatalogEntry::id),
        Some(view_id)
    );
    assert_eq!(
        s.begin().get(&t, &[Value::Int32(1)]).expect("get"),
        Some(user(1, "ann", Some("a@x"), 3))
    );
    // Ids keep counting up after a restart.
    let mut txn = s.begin();
    assert!(txn.alloc_id().expect("id") > view_id);
}

#[tokio::test]
async fn ddl_is_visible_to_its_txn_then_to_later_ones_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let before = s.begin();
    let mut txn = s.begin();
    let id = txn.alloc_id().expect("id");
    let def = crate::common::users_def(id);
    txn.put_entry(CatalogEntry::Table(def.clone()))
        .expect("put");
    assert!(txn.catalog().table_by_id(id).is_some());
    assert!(s.catalog().table_by_id(id).is_none());
    let info = txn.commit().await.expect("commit");
    // The in-memory catalog is refreshed before the commit is acknowledged.
    assert!(s.catalog().table_by_id(id).is_some());
    assert!(before.catalog().table_by_id(id).is_none());
    let after = s.begin();
    assert_eq!(after.read_version(), info.version);
    assert!(after.catalog().table_by_id(id).is_some());
}

#[tokio::test]
async fn add_and_drop_column_need_no_rewrite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let t = create_users(&s).await;
    insert_users(&s, &t, vec![user(1, "ann", Some("a@x"), 3)]).await;

    // ADD COLUMN score; DROP COLUMN name.
    let mut altered = t.clone();
    altered.columns.push(col(5, "score", DataType::Float64));
    altered.next_column_id = 6;
    altered.columns.remove(1);
    // Positions shift: email is now 1, age 2.
    altered.indexes[0].columns = vec![1];
    altered.indexes[1].columns = vec![2];
    let mut txn = s.begin();
    txn.put_entry(CatalogEntry::Table(altered.clone()))
        .expect("alter");
    txn.commit().await.expect("commit");

    let r = s.begin();
    let t2 = r.catalog().table_by_id(t.id).cloned().expect("table");
    assert_eq!(t2, altered);
    let row = r.get(&t2, &[Value::Int32(1)]).expect("get");
    assert_eq!(
        row,
        Some(vec![
            Value::Int32(1),
            Value::Text("a@x".into()),
            Value::Int32(3),
            Value::Null
        ])
    );
}

#[tokio::test]
async fn build_index_covers_existing_rows_and_checks_uniqueness() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let t = create_users(&s).await;
    insert_users(
        &s,
        &t,
        vec![
            user(1, "same", None, 1),
            user(2, "same", None, 2),
            user(3, "other", None, 3),
        ],
    )
    .await;

    let mut txn = s.begin();
    let unique = IndexDef {
        id: txn.alloc_id().expect("id"),
        name: "name_key".into(),
        columns: vec![1],
        unique: true,
        constraint: false,
        functions: Vec::new(),
        predicate: Vec::new(),
    };
    let err = txn.build_index(&t, &unique).expect_err("duplicate names");
    assert!(matches!(err, weft_storage::Error::UniqueViolation { .. }));

    let plain = IndexDef {
        unique: false,
        constraint: false,
        functions: Vec::new(),
        predicate: Vec::new(),
        name: "name_idx".into(),
        ..unique
    };
    let mut def = t.clone();
    def.indexes.push(plain.clone());
    txn.put_entry(CatalogEntry::Table(def.clone()))
        .expect("put");
    txn.build_index(&def, &plain).expect("build");
    txn.commit().await.expect("commit");

    let r = s.begin().reader();
    let range = weft_storage::KeyRange::prefix(vec![Value::Text("same".into())]);
    let b = r
        .index_scan(&def, plain.id, &range, None, Some(&[0]), 10)
        .expect("scan");
    assert_eq!(b.rows, vec![vec![Value::Int32(1)], vec![Value::Int32(2)]]);

    // New rows are indexed; dropping the index removes its entries.
    let mut txn = s.begin();
    txn.insert(&def, user(4, "same", None, 4)).expect("insert");
    let b = txn
        .reader()
        .index_scan(&def, plain.id, &range, None, Some(&[0]), 10)
        .expect("scan");
    assert_eq!(b.rows.len(), 3);
    txn.drop_index(&def, plain.id).expect("drop index");
    txn.put_entry(CatalogEntry::Table(t.clone())).expect("put");
    let b = txn
        .reader()
        .index_scan(&def, plain.id, &range, None, None, 10)
        .expect("scan");
    assert!(b.rows.is_empty());
    txn.commit().await.expect("commit");
}

/// An expression index keys on `lower(name)`: two names that differ only in case collide in a
/// unique one, when it is built and on insert, and a scan looks up the lowered value.
#[tokio::test]
async fn an_expression_index_keys_on_the_function_of_its_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let t = create_users(&s).await;
    insert_users(
        &s,
        &t,
        vec![user(1, "Ann", None, 1), user(2, "bob", None, 2)],
    )
    .await;
    let mut txn = s.begin();
    let lower = IndexDef {
        id: txn.alloc_id().expect("id"),
        name: "users_lower_name".into(),
        columns: vec![1],
        unique: true,
        constraint: false,
        functions: vec![Some(weft_storage::KeyFn::Lower)],
        predicate: Vec::new(),
    };
    assert!(!lower.is_plain());
    let mut def = t.clone();
    def.indexes.push(lower.clone());
    txn.put_entry(CatalogEntry::Table(def.clone()))
        .expect("put");
    txn.build_index(&def, &lower).expect("build");
    let err = txn
        .insert(&def, user(3, "ANN", None, 3))
        .expect_err("lower(name) collides");
    match err {
        weft_storage::Error::UniqueViolation { detail, .. } => {
            assert_eq!(detail, "Key (lower(name))=(ann) already exists.")
        }
        other => panic!("{other:?}"),
    }
    txn.insert(&def, user(4, "Cy", None, 4)).expect("insert");
    let range = weft_storage::KeyRange::prefix(vec![Value::Text("cy".into())]);
    let b = txn
        .reader()
        .index_scan(&def, lower.id, &range, None, Some(&[0]), 10)
        .expect("scan");
    assert_eq!(b.rows, vec![vec![Value::Int32(4)]]);
    txn.commit().await.expect("commit");

    // Built over rows that already collide, it is refused.
    let mut txn = s.begin();
    let upper = IndexDef {
        id: txn.alloc_id().expect("id"),
        name: "users_upper_name".into(),
        functions: vec![Some(weft_storage::KeyFn::Upper)],
        predicate: Vec::new(),
        ..lower
    };
    // (Written without the lower(name) index, which would refuse it.)
    txn.insert(&t, user(5, "cY", None, 5)).expect("insert");
    let err = txn
        .build_index(&t, &upper)
        .expect_err("upper(name) duplicated");
    assert!(matches!(err, weft_storage::Error::UniqueViolation { .. }));
}

/// A partial unique index (`… (name) WHERE email IS NULL`) has entries only for the rows that
/// meet its condition: only they collide, and a row moves in and out of it with its updates.
#[tokio::test]
async fn a_partial_index_keys_only_the_rows_it_covers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let t = create_users(&s).await;
    insert_users(
        &s,
        &t,
        vec![user(1, "Ann", None, 1), user(2, "Ann", Some("a@x"), 2)],
    )
    .await;
    let mut txn = s.begin();
    let live = IndexDef {
        id: txn.alloc_id().expect("id"),
        name: "users_live_name".into(),
        columns: vec![1],
        unique: true,
        constraint: false,
        functions: Vec::new(),
        predicate: vec![weft_storage::Cond::IsNull(2)],
    };
    assert!(live.is_plain() && !live.is_plain_and_total());
    let mut def = t.clone();
    def.indexes.push(live.clone());
    txn.put_entry(CatalogEntry::Table(def.clone()))
        .expect("put");
    txn.build_index(&def, &live)
        .expect("build: one Ann is covered");
    let err = txn
        .insert(&def, user(3, "Ann", None, 3))
        .expect_err("a second covered Ann");
    assert!(matches!(err, weft_storage::Error::UniqueViolation { .. }));
    txn.insert(&def, user(4, "Ann", Some("b@x"), 4))
        .expect("not covered");
    // Row 2 moving into the index collides with row 1; row 1 moving out makes room.
    let err = txn
        .update(
            &def,
            &user(2, "Ann", Some("a@x"), 2),
            user(2, "Ann", None, 2),
        )
        .expect_err("moved in");
    assert!(matches!(err, weft_storage::Error::UniqueViolation { .. }));
    txn.update(
        &def,
        &user(1, "Ann", None, 1),
        user(1, "Ann", Some("c@x"), 1),
    )
    .expect("moved out");
    txn.update(
        &def,
        &user(2, "Ann", Some("a@x"), 2),
        user(2, "Ann", None, 2),
    )
    .expect("moved in");
    let range = weft_storage::KeyRange::prefix(vec![Value::Text("Ann".into())]);
    let b = txn
        .reader()
        .index_scan(&def, live.id, &range, None, Some(&[0]), 10)
        .expect("scan");
    assert_eq!(b.rows, vec![vec![Value::Int32(2)]]);
    txn.delete(&def, &user(2, "Ann", None, 2)).expect("delete");
    let b = txn
        .reader()
        .index_scan(&def, live.id, &range, None, Some(&[0]), 10)
        .expect("scan");
    assert!(b.rows.is_empty());
    txn.commit().await.expect("commit");
}
