//! CancelRequest stops a running statement; the connection stays usable.

use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_postgres::{CancelToken, Client, NoTls};
use weft::server::TestServer;

use super::support::{connect, scalar, server, sqlstate, DEADLINE};

/// 8e9 combinations: far longer than any test's deadline unless cancelled.
const LONG: &str = "select count(*) from big a, big b, big c where a.x + b.x + c.x = -1";

/// The table `LONG` joins with itself (2,000 rows).
async fn create_big(c: &Client) {
    c.batch_execute("create table big (x int)")
        .await
        .expect("create");
    let values: Vec<String> = (0..2000).map(|i| format!("({i})")).collect();
    c.batch_execute(&format!("insert into big values {}", values.join(",")))
        .await
        .expect("insert");
}

type Running = JoinHandle<(Client, Result<(), tokio_postgres::Error>)>;

/// `LONG` started on a connection of its own.
async fn start_long(srv: &TestServer) -> (CancelToken, Running) {
    let c = connect(srv).await;
    let token = c.cancel_token();
    let query = tokio::spawn(async move {
        let r = c.simple_query(LONG).await.map(|_| ());
        (c, r)
    });
    (token, query)
}

/// Sends CancelRequests until `query` ends (the cancel flag is reset when a statement starts,
/// so one sent before it started is lost), then checks that it ended with 57014 and left its
/// connection usable.
async fn cancel_until_it_ends(token: &CancelToken, query: Running) {
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
async fn cancel_request_cancels_a_running_query() {
    let srv = server().await;
    create_big(&connect(&srv).await).await;
    let (token, query) = start_long(&srv).await;
    cancel_until_it_ends(&token, query).await;
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
    let other = connect(&srv).await;
    create_big(&other).await;
    let running = vec![start_long(&srv).await, start_long(&srv).await];
    // Answered promptly, over and over, while both run (each answer within 5 s; the long
    // queries take far longer).
    for i in 0..20 {
        let answer = tokio::time::timeout(Duration::from_secs(5), scalar(&other, "select 1"))
            .await
            .unwrap_or_else(|_| panic!("select {i} waited for the long queries"));
        assert_eq!(answer.as_deref(), Some("1"));
        assert!(
            running.iter().all(|(_, q)| !q.is_finished()),
            "a long query ended by itself"
        );
    }
    for (token, query) in running {
        cancel_until_it_ends(&token, query).await;
    }
}
