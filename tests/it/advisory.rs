//! Advisory locks between sessions of one node: waiting, release on unlock, on transaction end and
//! on disconnect, cancel and statement_timeout while waiting, and deadlock detection.

use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use super::support::{connect, scalar, server, sqlstate, still_waiting, DEADLINE};

async fn try_lock(c: &Client, key: i64) -> bool {
    c.query_one("select pg_try_advisory_lock($1)", &[&key])
        .await
        .expect("try lock")
        .get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_waiting_lock_is_granted_when_its_holder_unlocks() {
    let srv = server().await;
    let (a, b) = (connect(&srv).await, connect(&srv).await);
    a.batch_execute("select pg_advisory_lock(42)")
        .await
        .unwrap();
    assert!(!try_lock(&b, 42).await);
    // Another key, and the same number as a pair of ints, are other locks.
    assert!(try_lock(&b, 43).await);
    assert_eq!(
        scalar(&b, "select pg_try_advisory_lock(0, 42)")
            .await
            .as_deref(),
        Some("t")
    );
    let mut waiting = Box::pin(b.batch_execute("select pg_advisory_lock(42)"));
    assert!(still_waiting(&mut waiting).await);
    assert_eq!(
        scalar(&a, "select pg_advisory_unlock(42)").await.as_deref(),
        Some("t")
    );
    tokio::time::timeout(DEADLINE, waiting)
        .await
        .expect("granted after the unlock")
        .expect("lock");
    assert!(!try_lock(&a, 42).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn shared_locks_share_and_keep_out_an_exclusive_one() {
    let srv = server().await;
    let (a, b) = (connect(&srv).await, connect(&srv).await);
    a.batch_execute("select pg_advisory_lock_shared(7)")
        .await
        .unwrap();
    assert_eq!(
        scalar(&b, "select pg_try_advisory_lock_shared(7)")
            .await
            .as_deref(),
        Some("t")
    );
    assert!(!try_lock(&b, 7).await);
    b.batch_execute("select pg_advisory_unlock_shared(7)")
        .await
        .unwrap();
    let mut waiting = Box::pin(b.batch_execute("select pg_advisory_lock(7)"));
    assert!(still_waiting(&mut waiting).await);
    a.batch_execute("select pg_advisory_unlock_all()")
        .await
        .unwrap();
    tokio::time::timeout(DEADLINE, waiting)
        .await
        .expect("granted once the shared holder let go")
        .expect("lock");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_lock_is_released_when_its_connection_ends() {
    let srv = server().await;
    let a = connect(&srv).await;
    let b = connect(&srv).await;
    a.batch_execute("select pg_advisory_lock(1); select pg_advisory_lock(1)")
        .await
        .unwrap();
    let mut waiting = Box::pin(b.batch_execute("select pg_advisory_lock(1)"));
    assert!(still_waiting(&mut waiting).await);
    drop(a);
    tokio::time::timeout(DEADLINE, waiting)
        .await
        .expect("granted after the holder disconnected")
        .expect("lock");
}

#[tokio::test(flavor = "multi_thread")]
async fn transaction_locks_end_with_their_transaction() {
    let srv = server().await;
    let (a, b) = (connect(&srv).await, connect(&srv).await);
    // Committed.
    a.batch_execute("begin; select pg_advisory_xact_lock(5)")
        .await
        .unwrap();
    assert!(!try_lock(&b, 5).await);
    a.batch_execute("commit").await.unwrap();
    assert!(try_lock(&b, 5).await);
    b.batch_execute("select pg_advisory_unlock(5)")
        .await
        .unwrap();
    // Failed: released by the error, as PostgreSQL aborts the transaction there.
    a.batch_execute("begin; select pg_try_advisory_xact_lock(5)")
        .await
        .unwrap();
    assert!(!try_lock(&b, 5).await);
    assert!(a.batch_execute("select 1/0").await.is_err());
    assert!(try_lock(&b, 5).await);
    a.batch_execute("rollback").await.unwrap();
    // pg_advisory_unlock does not release a transaction-level lock; autocommit releases it
    // when the statement ends.
    assert_eq!(
        scalar(&b, "select pg_advisory_unlock(5)").await.as_deref(),
        Some("t")
    );
    a.batch_execute("select pg_advisory_xact_lock(5)")
        .await
        .unwrap();
    assert!(try_lock(&b, 5).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wait_ends_with_statement_timeout_or_cancel_and_the_connection_stays_usable() {
    let srv = server().await;
    let (a, b) = (connect(&srv).await, connect(&srv).await);
    a.batch_execute("select pg_advisory_lock(9)").await.unwrap();
    b.batch_execute("set statement_timeout = 200")
        .await
        .unwrap();
    let e = b
        .batch_execute("select pg_advisory_lock(9)")
        .await
        .expect_err("timed out");
    assert_eq!(sqlstate(&e), "57014");
    b.batch_execute("set statement_timeout = 0").await.unwrap();
    let token = b.cancel_token();
    let mut waiting = Box::pin(b.batch_execute("select pg_advisory_lock(9)"));
    assert!(still_waiting(&mut waiting).await);
    token.cancel_query(NoTls).await.expect("cancel sent");
    let e = tokio::time::timeout(DEADLINE, waiting)
        .await
        .expect("cancelled in time")
        .expect_err("cancelled");
    assert_eq!(sqlstate(&e), "57014");
    assert_eq!(scalar(&b, "select 1").await.as_deref(), Some("1"));
    // The cancelled waiter took nothing.
    a.batch_execute("select pg_advisory_unlock(9)")
        .await
        .unwrap();
    assert!(try_lock(&a, 9).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_sessions_waiting_for_each_other_get_a_deadlock_error() {
    let srv = server().await;
    let (a, b) = (connect(&srv).await, connect(&srv).await);
    a.batch_execute("select pg_advisory_lock(1)").await.unwrap();
    b.batch_execute("select pg_advisory_lock(2)").await.unwrap();
    let (ra, rb) = tokio::time::timeout(DEADLINE, async {
        let a_side = async {
            let r = a.batch_execute("select pg_advisory_lock(2)").await;
            if r.is_err() {
                a.batch_execute("select pg_advisory_unlock_all()")
                    .await
                    .unwrap();
            }
            r
        };
        let b_side = async {
            let r = b.batch_execute("select pg_advisory_lock(1)").await;
            if r.is_err() {
                b.batch_execute("select pg_advisory_unlock_all()")
                    .await
                    .unwrap();
            }
            r
        };
        tokio::join!(a_side, b_side)
    })
    .await
    .expect("no session hangs");
    let errors: Vec<_> = [ra, rb].into_iter().filter_map(|r| r.err()).collect();
    assert_eq!(errors.len(), 1, "exactly one of the two is refused");
    assert_eq!(sqlstate(&errors[0]), "40P01");
}

#[tokio::test(flavor = "multi_thread")]
async fn pg_sleep_sleeps_until_its_time_or_the_statement_timeout() {
    let srv = server().await;
    let c = connect(&srv).await;
    let start = std::time::Instant::now();
    c.batch_execute("select pg_sleep(0.05)").await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(50));
    c.batch_execute("set statement_timeout = 100")
        .await
        .unwrap();
    let e = c
        .batch_execute("select pg_sleep(3600)")
        .await
        .expect_err("timed out");
    assert_eq!(sqlstate(&e), "57014");
    assert_eq!(scalar(&c, "select 1").await.as_deref(), Some("1"));
}
