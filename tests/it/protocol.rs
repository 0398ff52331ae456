//! Protocol details checked message by message with the raw client.

use super::support::server;
use super::wire::{kinds, status, Wire};

const VALUES3: &str = "select x from (values (1), (2), (3)) as t(x)";

#[tokio::test(flavor = "multi_thread")]
async fn startup_reports_parameters_and_key() {
    let s = server().await;
    let w = Wire::connect(s.addr()).await;
    assert_ne!(w.key.0, 0, "BackendKeyData carries a pid");
    let names: Vec<&str> = w.parameters.iter().map(|(n, _)| n.as_str()).collect();
    for expected in ["server_version", "client_encoding", "DateStyle"] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn simple_query_messages() {
    let s = server().await;
    let mut w = Wire::connect(s.addr()).await;
    let msgs = w.query("select 1 as a").roundtrip().await;
    assert_eq!(kinds(&msgs), "TDCZ");
    assert_eq!(msgs[1].values(), vec![Some("1".to_string())]);
    assert_eq!(msgs[2].text(), "SELECT 1");
    assert_eq!(status(&msgs), 'I');

    let msgs = w.query("").roundtrip().await;
    assert_eq!(kinds(&msgs), "IZ", "empty query");
    let msgs = w.query(" ; ").roundtrip().await;
    assert_eq!(kinds(&msgs), "IZ", "only a semicolon");

    let msgs = w.query("select 1; select 2, 3").roundtrip().await;
    assert_eq!(kinds(&msgs), "TDCTDCZ");

    // The first error ends the message: the third statement does not run.
    let msgs = w
        .query("select 1; select * from no_such_table; select 3")
        .roundtrip()
        .await;
    assert_eq!(kinds(&msgs), "TDCEZ");
    assert_eq!(msgs[3].code(), "42P01");
}

#[tokio::test(flavor = "multi_thread")]
async fn transaction_status_in_ready_for_query() {
    let s = server().await;
    let mut w = Wire::connect(s.addr()).await;
    assert_eq!(status(&w.query("begin").roundtrip().await), 'T');
    assert_eq!(status(&w.query("select 1").roundtrip().await), 'T');
    let msgs = w.query("select * from no_such_table").roundtrip().await;
    assert_eq!(kinds(&msgs), "EZ");
    assert_eq!(status(&msgs), 'E');
    let msgs = w.query("select 1").roundtrip().await;
    assert_eq!(
        msgs[0].code(),
        "25P02",
        "commands are refused in a failed transaction"
    );
    assert_eq!(status(&w.query("rollback").roundtrip().await), 'I');
}

#[tokio::test(flavor = "multi_thread")]
async fn extended_query_messages() {
    let s = server().await;
    let mut w = Wire::connect(s.addr()).await;
    let msgs = w
        .parse("s1", "select $1::int4 + 1 as n", &[])
        .describe(b'S', "s1")
        .bind("", "s1", &[], &[Some(b"41")], &[])
        .describe(b'P', "")
        .execute("", 0)
        .sync()
        .roundtrip()
        .await;
    assert_eq!(kinds(&msgs), "1tT2TDCZ");
    assert_eq!(msgs[1].body[..2], [0, 1], "one parameter");
    assert_eq!(msgs[5].values(), vec![Some("42".to_string())]);
    assert_eq!(msgs[6].text(), "SELECT 1");

    // The named statement is reusable; a binary parameter works too.
    let msgs = w
        .bind("", "s1", &[1], &[Some(&7i32.to_be_bytes())], &[])
        .execute("", 0)
        .sync()
        .roundtrip()
        .await;
    assert_eq!(kinds(&msgs), "2DCZ");
    assert_eq!(msgs[1].values(), vec![Some("8".to_string())]);

    // A statement without rows describes as NoData.
    let msgs = w
        .parse("", "begin", &[])
        .describe(b'S', "")
        .sync()
        .roundtrip()
        .await;
    assert_eq!(kinds(&msgs), "1tnZ");

    let msgs = w
        .close(b'S', "s1")
        .close(b'P', "nope")
        .sync()
        .roundtrip()
        .await;
    assert_eq!(kinds(&msgs), "33Z");
    let msgs = w.bind("", "s1", &[], &[], &[]).sync().roundtrip().await;
    assert_eq!(kinds(&msgs), "EZ");
    assert_eq!(msgs[0].code(), "26000");
}

#[tokio::test(flavor = "multi_thread")]
async fn portal_suspends_and_resumes() {
    let s = server().await;
    let mut w = Wire::connect(s.addr()).await;
    w.query("begin").roundtrip().await;
    let msgs = w
        .parse("", VALUES3, &[])
        .bind("p", "", &[], &[], &[])
        .execute("p", 2)
        .flush_message()
        .sync()
        .roundtrip()
        .await;
    assert_eq!(kinds(&msgs), "12DDsZ");
    let msgs = w.execute("p", 2).sync().roundtrip().await;
    assert_eq!(kinds(&msgs), "DCZ");
    assert_eq!(msgs[0].values(), vec![Some("3".to_string())]);
    assert_eq!(
        msgs[1].text(),
        "SELECT 1",
        "the tag counts this Execute's rows"
    );
    w.query("commit").roundtrip().await;
    // Portals end with their transaction.
    let msgs = w.execute("p", 0).sync().roundtrip().await;
    assert_eq!(kinds(&msgs), "EZ");
    assert_eq!(msgs[0].code(), "34000");
}

#[tokio::test(flavor = "multi_thread")]
async fn extended_error_skips_to_sync() {
    let s = server().await;
    let mut w = Wire::connect(s.addr()).await;
    let msgs = w
        .parse("", "select * from no_such_table", &[])
        .bind("", "", &[], &[], &[])
        .execute("", 0)
        .query("select 1")
        .sync()
        .roundtrip()
        .await;
    assert_eq!(kinds(&msgs), "EZ", "everything up to Sync is discarded");
    assert_eq!(msgs[0].code(), "42P01");
    assert_eq!(status(&msgs), 'I');
    // And the connection works afterwards.
    assert_eq!(kinds(&w.query("select 1").roundtrip().await), "TDCZ");
}

#[tokio::test(flavor = "multi_thread")]
async fn bind_errors() {
    let s = server().await;
    let mut w = Wire::connect(s.addr()).await;
    w.parse("s", "select $1::int4", &[])
        .sync()
        .roundtrip()
        .await;

    let msgs = w.bind("", "s", &[], &[], &[]).sync().roundtrip().await;
    assert_eq!(msgs[0].code(), "08P01", "wrong parameter count");

    let msgs = w
        .bind("", "s", &[], &[Some(b"abc")], &[])
        .sync()
        .roundtrip()
        .await;
    assert_eq!(msgs[0].code(), "22P02", "bad text parameter");

    let msgs = w
        .bind("", "s", &[1], &[Some(&[1, 2, 3])], &[])
        .sync()
        .roundtrip()
        .await;
    assert_eq!(msgs[0].code(), "22P03", "bad binary parameter");

    let msgs = w
        .bind("", "s", &[0, 0], &[Some(b"1")], &[])
        .sync()
        .roundtrip()
        .await;
    assert_eq!(msgs[0].code(), "08P01", "format count mismatch");

    let msgs = w
        .bind("", "s", &[], &[Some(b"1")], &[0, 1])
        .sync()
        .roundtrip()
        .await;
    assert_eq!(msgs[0].code(), "08P01", "result format count mismatch");

    let msgs = w.parse("s", "select 2", &[]).sync().roundtrip().await;
    assert_eq!(msgs[0].code(), "42P05", "duplicate statement name");

    let msgs = w
        .bind("", "s", &[], &[Some(b"5")], &[1])
        .execute("", 0)
        .sync()
        .roundtrip()
        .await;
    assert_eq!(kinds(&msgs), "2DCZ");
    assert_eq!(
        msgs[1].body[2..10],
        [0, 0, 0, 4, 0, 0, 0, 5],
        "binary int4 result"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_messages() {
    let s = server().await;
    let mut w = Wire::connect(s.addr()).await;
    // A Bind that claims two parameter formats and carries none: an error, then Sync.
    let msgs = w
        .raw(b"B\0\0\0\x08\0\0\0\x02")
        .execute("", 0)
        .sync()
        .roundtrip()
        .await;
    assert_eq!(kinds(&msgs), "EZ");
    assert_eq!(msgs[0].code(), "08P01");
    assert_eq!(kinds(&w.query("select 1").roundtrip().await), "TDCZ");

    // An unknown message type is fatal.
    w.raw(b"!\0\0\0\x04").flush().await;
    let m = w.recv().await.expect("an error before closing");
    assert_eq!((m.kind, m.field(b'S').as_deref()), (b'E', Some("FATAL")));
    assert_eq!(m.code(), "08P01");
    assert!(w.recv().await.is_none(), "connection closed");
}

#[tokio::test(flavor = "multi_thread")]
async fn extended_empty_query_and_terminate() {
    let s = server().await;
    let mut w = Wire::connect(s.addr()).await;
    let msgs = w
        .parse("", "", &[])
        .bind("", "", &[], &[], &[])
        .describe(b'P', "")
        .execute("", 0)
        .sync()
        .roundtrip()
        .await;
    assert_eq!(kinds(&msgs), "12nIZ");
    w.terminate().flush().await;
    assert!(w.recv().await.is_none(), "Terminate closes the connection");
}

#[tokio::test(flavor = "multi_thread")]
async fn parameter_status_after_set() {
    let s = server().await;
    let mut w = Wire::connect(s.addr()).await;
    let msgs = w
        .query("set application_name = 'weft-test'")
        .roundtrip()
        .await;
    let changed: Vec<(String, String)> = msgs
        .iter()
        .filter(|m| m.kind == b'S')
        .map(|m| {
            let mut parts = m.body.split(|b| *b == 0);
            let name = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            let value = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            (name, value)
        })
        .collect();
    assert_eq!(
        changed,
        vec![("application_name".to_string(), "weft-test".to_string())],
        "{}",
        kinds(&msgs)
    );
}
