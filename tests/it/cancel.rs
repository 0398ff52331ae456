//! CancelRequest stops a running statement; the connection stays usable.

use std::time::{Duration, Instant};

use tokio_postgres::NoTls;

use super::support::{connect, scalar, server, sqlstate, DEADLINE};

#[tokio::test(flavor = "multi_thread")]
async fn cancel_request_cancels_a_running_query() {
    let srv = server().await;
    let c = connect(&srv).await;
    c.batch_execute("create table big (x int)")
        .await
        .expect("create");
    let values: Vec<String> = (0..2000).map(|i| format!("({i})")).collect();
    c.batch_execute(&format!("insert into big values {}", values.join(",")))
        .await
        .expect("insert");
    // 8e9 combinations: far longer than the test's deadline unless cancelled.
    let long = "select count(*) from big a, big b, big c where a.x + b.x + c.x = -1";
    let token = c.cancel_token();
    let query = tokio::spawn(async move {
        let r = c.simple_query(long).await.map(|_| ());
        (c, r)
    });
    // The cancel flag is reset when a statement starts, so repeat until the query ends.
    let start = Instant::now();
    while !query.is_finished() {
        assert!(
            start.elapsed() < DEADLINE,
            "query was not cancelled in time"
        );
        token
            .cancel_query(NoTls)
            .await
            .expect("cancel request sent");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (c, result) = query.await.expect("query task");
    let e = result.expect_err("the query was cancelled");
    assert_eq!(sqlstate(&e), "57014");
    assert_eq!(scalar(&c, "select 1").await.as_deref(), Some("1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_with_a_wrong_key_does_nothing() {
    let srv = server().await;
    let mut w = super::wire::Wire::connect(srv.addr()).await;
    let mut other = tokio::net::TcpStream::connect(srv.addr())
        .await
        .expect("connects");
    let mut req = Vec::new();
    req.extend_from_slice(&16i32.to_be_bytes());
    req.extend_from_slice(&80_877_102i32.to_be_bytes());
    req.extend_from_slice(&w.key.0.to_be_bytes());
    req.extend_from_slice(&w.key.1.wrapping_add(1).to_be_bytes());
    tokio::io::AsyncWriteExt::write_all(&mut other, &req)
        .await
        .expect("sends");
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(
        DEADLINE,
        tokio::io::AsyncReadExt::read(&mut other, &mut buf),
    )
    .await
    .expect("server closes the cancel connection")
    .expect("reads");
    assert_eq!(n, 0, "a cancel request gets no answer");
    assert_eq!(
        super::wire::kinds(&w.query("select 1").roundtrip().await),
        "TDCZ"
    );
}

/// Long computations run apart from the connections: while two of them run (a nested loop
/// join can compute for seconds inside one poll), other connections are still answered, and
/// CancelRequest still reaches and stops both.
#[tokio::test(flavor = "multi_thread")]
async fn long_queries_do_not_stall_other_connections() {
    let srv = server().await;
    let setup = connect(&srv).await;
    setup
        .batch_execute("create table big (x int)")
        .await
        .expect("create");
    let values: Vec<String> = (0..2000).map(|i| format!("({i})")).collect();
    setup
        .batch_execute(&format!("insert into big values {}", values.join(",")))
        .await
        .expect("insert");
    let long = "select count(*) from big a, big b, big c where a.x + b.x + c.x = -1";
    let mut running = Vec::new();
    for _ in 0..2 {
        let c = connect(&srv).await;
        let token = c.cancel_token();
        let query = tokio::spawn(async move {
            let r = c.simple_query(long).await.map(|_| ());
            (c, r)
        });
        running.push((token, query));
    }
    // Answered promptly, over and over, while both run (each answer within 5 s; the long
    // queries take far longer).
    for i in 0..20 {
        let answer = tokio::time::timeout(Duration::from_secs(5), scalar(&setup, "select 1"))
            .await
            .unwrap_or_else(|_| panic!("select {i} waited for the long queries"));
        assert_eq!(answer.as_deref(), Some("1"));
        assert!(
            running.iter().all(|(_, q)| !q.is_finished()),
            "a long query ended by itself"
        );
    }
    let start = Instant::now();
    for (token, query) in running {
        while !query.is_finished() {
            assert!(
                start.elapsed() < DEADLINE,
                "query was not cancelled in time"
            );
            token
                .cancel_query(NoTls)
                .await
                .expect("cancel request sent");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (c, result) = query.await.expect("query task");
        assert_eq!(sqlstate(&result.expect_err("cancelled")), "57014");
        assert_eq!(scalar(&c, "select 1").await.as_deref(), Some("1"));
    }
}
