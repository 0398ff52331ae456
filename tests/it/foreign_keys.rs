//! Foreign keys between concurrent transactions: a transaction that makes a row reference a key
//! and one that makes that key stop existing never both commit, in either order; writers that
//! do not break the reference (two children of one parent, a parent's non-key update) do not
//! conflict. The single-session rules are in `sqllogictest/foreign_keys.slt`.

use super::support::{connect, scalar, server, sqlstate};

async fn setup(srv: &weft::server::TestServer) -> tokio_postgres::Client {
    let admin = connect(srv).await;
    admin
        .batch_execute(
            "CREATE TABLE p (id int PRIMARY KEY, v int);
             CREATE TABLE c (id int PRIMARY KEY, pid int REFERENCES p);
             INSERT INTO p VALUES (1, 0), (2, 0)",
        )
        .await
        .expect("ddl");
    admin
}

/// Every row of c references a row of p.
async fn assert_no_orphans(admin: &tokio_postgres::Client) {
    let orphans = scalar(
        admin,
        "SELECT count(*) FROM c WHERE pid IS NOT NULL AND pid NOT IN (SELECT id FROM p)",
    )
    .await;
    assert_eq!(orphans.as_deref(), Some("0"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_child_insert_and_its_parents_delete_never_both_commit() {
    let srv = server().await;
    let admin = setup(&srv).await;
    let child = connect(&srv).await;
    let parent = connect(&srv).await;
    // The child commits first: the parent's delete, which saw no child, fails.
    child
        .batch_execute("BEGIN; INSERT INTO c VALUES (1, 1)")
        .await
        .expect("child inserted");
    parent
        .batch_execute("BEGIN; DELETE FROM p WHERE id = 1")
        .await
        .expect("no child seen");
    child.batch_execute("COMMIT").await.expect("child commits");
    let e = parent
        .batch_execute("COMMIT")
        .await
        .expect_err("the delete must not commit");
    assert_eq!(sqlstate(&e), "40001", "{e}");
    assert_no_orphans(&admin).await;
    // The delete commits first: the child's insert, which saw the parent, fails.
    child
        .batch_execute("BEGIN; INSERT INTO c VALUES (2, 2)")
        .await
        .expect("child inserted");
    parent
        .batch_execute("BEGIN; DELETE FROM p WHERE id = 2")
        .await
        .expect("no child seen");
    parent
        .batch_execute("COMMIT")
        .await
        .expect("delete commits");
    let e = child
        .batch_execute("COMMIT")
        .await
        .expect_err("the insert must not commit");
    assert_eq!(sqlstate(&e), "40001", "{e}");
    assert_no_orphans(&admin).await;
    assert_eq!(
        scalar(
            &admin,
            "SELECT string_agg(id::text, ',' ORDER BY id) FROM p"
        )
        .await
        .as_deref(),
        Some("1")
    );
    // An update of the key is a delete of the old one.
    admin
        .batch_execute("INSERT INTO p VALUES (3, 0)")
        .await
        .expect("parent 3");
    child
        .batch_execute("BEGIN; INSERT INTO c VALUES (3, 3)")
        .await
        .expect("child inserted");
    parent
        .batch_execute("BEGIN; UPDATE p SET id = 30 WHERE id = 3")
        .await
        .expect("no child seen");
    child.batch_execute("COMMIT").await.expect("child commits");
    let e = parent.batch_execute("COMMIT").await.expect_err("refused");
    assert_eq!(sqlstate(&e), "40001", "{e}");
    assert_no_orphans(&admin).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn writers_that_keep_the_reference_do_not_conflict() {
    let srv = server().await;
    let admin = setup(&srv).await;
    let a = connect(&srv).await;
    let b = connect(&srv).await;
    let owner = connect(&srv).await;
    // Two children of one parent, and the parent's non-key column, all at once.
    a.batch_execute("BEGIN; INSERT INTO c VALUES (1, 1)")
        .await
        .expect("a");
    b.batch_execute("BEGIN; INSERT INTO c VALUES (2, 1)")
        .await
        .expect("b");
    owner
        .batch_execute("BEGIN; UPDATE p SET v = v + 1 WHERE id = 1")
        .await
        .expect("owner");
    a.batch_execute("COMMIT").await.expect("a commits");
    b.batch_execute("COMMIT").await.expect("b commits");
    owner.batch_execute("COMMIT").await.expect("owner commits");
    assert_eq!(
        scalar(&admin, "SELECT count(*) FROM c WHERE pid = 1")
            .await
            .as_deref(),
        Some("2")
    );
    // Now the parent is referenced: deleting it is refused at once.
    let e = admin
        .batch_execute("DELETE FROM p WHERE id = 1")
        .await
        .expect_err("still referenced");
    assert_eq!(sqlstate(&e), "23503", "{e}");
    let message = e.as_db_error().map(|d| d.message().to_string());
    assert!(
        message.as_deref().is_some_and(|m| m.contains("c_pid_fkey")),
        "{message:?}"
    );
    assert_no_orphans(&admin).await;
}
