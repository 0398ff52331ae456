//! Shared helpers: servers, clients, deadlines.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls, SimpleQueryMessage};
use weft::server::TestServer;

/// Upper bound for anything a test waits on.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub async fn server() -> TestServer {
    TestServer::start().await.expect("test server starts")
}

pub async fn connect(server: &TestServer) -> Client {
    let (client, connection) = tokio_postgres::connect(&server.conn_string(), NoTls)
        .await
        .expect("connects");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A client whose notices and notifications arrive on a channel.
pub async fn connect_with_messages(
    server: &TestServer,
) -> (Client, mpsc::UnboundedReceiver<AsyncMessage>) {
    connect_str_with_messages(&server.conn_string()).await
}

/// `connect_with_messages` for any connection string (a cluster node).
pub async fn connect_str_with_messages(
    conn: &str,
) -> (Client, mpsc::UnboundedReceiver<AsyncMessage>) {
    let (client, mut connection) = tokio_postgres::connect(conn, NoTls)
        .await
        .expect("connects");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(m)) = messages.next().await {
            let _ = tx.send(m);
        }
    });
    (client, rx)
}

/// The next message, or `None` if none arrives within `wait`.
pub async fn recv_within<T>(rx: &mut mpsc::UnboundedReceiver<T>, wait: Duration) -> Option<T> {
    tokio::time::timeout(wait, rx.recv()).await.ok().flatten()
}

/// The rows of a simple query's results, as text.
pub fn rows(messages: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}

/// The row counts of a simple query's CommandCompletes.
pub fn counts(messages: &[SimpleQueryMessage]) -> Vec<u64> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => Some(*n),
            _ => None,
        })
        .collect()
}

/// One text value from a single-row, single-column simple query.
pub async fn scalar(client: &Client, sql: &str) -> Option<String> {
    let messages = client.simple_query(sql).await.expect("query runs");
    let rows = rows(&messages);
    assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
    rows[0][0].clone()
}

pub fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_string())
        .unwrap_or_else(|| format!("no SQLSTATE: {e}"))
}

/// Whether `fut` is still pending after a moment: a lock wait that should block does.
pub async fn still_waiting<F: std::future::Future>(fut: &mut std::pin::Pin<Box<F>>) -> bool {
    tokio::time::timeout(Duration::from_millis(300), fut.as_mut())
        .await
        .is_err()
}

/// What `statement` gives once `holder` has run `end`, which ends the transaction it waits for:
/// it must still be waiting until then.
pub async fn waits_for<F: std::future::Future>(
    statement: F,
    holder: &Client,
    end: &str,
) -> F::Output {
    let mut waiting = Box::pin(statement);
    assert!(
        still_waiting(&mut waiting).await,
        "it did not wait for the holder"
    );
    holder
        .batch_execute(end)
        .await
        .expect("the holder's statement");
    tokio::time::timeout(DEADLINE, waiting)
        .await
        .expect("granted once the holder's transaction ended")
}
