//! COPY FROM STDIN and COPY TO STDOUT: tokio-postgres (extended protocol), psql's `\copy`
//! (simple protocol), PostgreSQL's text and CSV formats, and errors that leave the connection
//! usable.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};

use super::support::{connect, rows, server, sqlstate};

async fn copy_out(client: &tokio_postgres::Client, sql: &str) -> String {
    let stream = client.copy_out(sql).await.expect("COPY TO starts");
    let chunks: Vec<Bytes> = stream
        .map(|c| c.expect("COPY data arrives"))
        .collect()
        .await;
    String::from_utf8(chunks.concat()).expect("COPY output is UTF-8")
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_in_and_out_through_the_extended_protocol() {
    let srv = server().await;
    let c = connect(&srv).await;
    c.batch_execute(
        "CREATE TABLE cp (id int PRIMARY KEY, name text, amount numeric(10,2), n int DEFAULT 42)",
    )
    .await
    .expect("creates the table");
    let sink = c
        .copy_in("COPY cp (id, name, amount) FROM STDIN")
        .await
        .expect("COPY FROM starts");
    futures::pin_mut!(sink);
    sink.send(Bytes::from_static(b"1\talice\t1.50\n2\tb\\tob\t\\N\n"))
        .await
        .expect("sends data");
    sink.send(Bytes::from_static(b"3\tnew\\nline\t-2\n"))
        .await
        .expect("sends more data");
    assert_eq!(sink.finish().await.expect("COPY FROM completes"), 3);

    let text = copy_out(&c, "COPY cp TO STDOUT").await;
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        vec![
            "1\talice\t1.50\t42",
            "2\tb\\tob\t\\N\t42",
            "3\tnew\\nline\t-2.00\t42"
        ]
    );
    let csv = copy_out(
        &c,
        "COPY (SELECT id, name FROM cp WHERE id > 1 ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER)",
    )
    .await;
    assert_eq!(csv, "id,name\n2,b\tob\n3,\"new\nline\"\n");

    // A bad row fails the whole COPY: nothing of it is inserted, the connection goes on.
    let sink = c
        .copy_in("COPY cp (id, amount) FROM STDIN WITH (FORMAT csv)")
        .await
        .expect("COPY FROM starts");
    futures::pin_mut!(sink);
    sink.send(Bytes::from_static(b"4,1\n5,abc\n"))
        .await
        .expect("sends data");
    let e = sink.finish().await.expect_err("22P02");
    assert_eq!(sqlstate(&e), "22P02", "{e:?}");
    let count = c
        .query_one("SELECT count(*) FROM cp", &[])
        .await
        .expect("the connection still works");
    assert_eq!(count.get::<_, i64>(0), 3);

    // A row with a cell missing: 22P04, and nothing of the COPY is kept.
    let sink = c
        .copy_in("COPY cp (id, name) FROM STDIN")
        .await
        .expect("COPY FROM starts");
    futures::pin_mut!(sink);
    sink.send(Bytes::from_static(b"7\tg\n8\n"))
        .await
        .expect("sends data");
    let e = sink.finish().await.expect_err("22P04");
    assert_eq!(sqlstate(&e), "22P04", "{e:?}");

    // A client that gives up (tokio-postgres sends CopyFail when the sink is dropped): nothing
    // is inserted and the connection goes on.
    {
        let sink = c
            .copy_in("COPY cp (id) FROM STDIN")
            .await
            .expect("COPY FROM starts");
        futures::pin_mut!(sink);
        sink.send(Bytes::from_static(b"10\n"))
            .await
            .expect("sends data");
    }
    let count = c
        .query_one("SELECT count(*) FROM cp", &[])
        .await
        .expect("the connection still works after CopyFail");
    assert_eq!(count.get::<_, i64>(0), 3);

    // Inside a transaction: a duplicate key fails the COPY and the block, as in PostgreSQL.
    c.batch_execute("BEGIN").await.expect("begins");
    let sink = c
        .copy_in("COPY cp (id) FROM STDIN")
        .await
        .expect("COPY FROM starts");
    futures::pin_mut!(sink);
    sink.send(Bytes::from_static(b"1\n"))
        .await
        .expect("sends data");
    let e = sink.finish().await.expect_err("23505");
    assert_eq!(sqlstate(&e), "23505", "{e:?}");
    let e = c.query("SELECT 1", &[]).await.expect_err("25P02");
    assert_eq!(sqlstate(&e), "25P02", "{e:?}");
    c.batch_execute("ROLLBACK").await.expect("rolls back");

    for (sql, code) in [
        ("COPY nosuch FROM STDIN", "42P01"),
        ("COPY cp (nosuch) FROM STDIN", "42703"),
        ("COPY cp TO '/tmp/weft-copy-test'", "0A000"),
        ("COPY cp FROM STDIN WITH (FORMAT binary)", "0A000"),
    ] {
        let e = c.copy_in::<_, Bytes>(sql).await.err().expect(sql);
        assert_eq!(sqlstate(&e), code, "{sql}: {e:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn psql_copies_a_csv_file_in_and_out() {
    let srv = server().await;
    let c = connect(&srv).await;
    c.batch_execute("CREATE TABLE pc (id int PRIMARY KEY, note text)")
        .await
        .expect("creates the table");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let input = dir.path().join("in.csv");
    let output = dir.path().join("out.csv");
    std::fs::write(&input, "id,note\n1,\"a, b\"\n2,\n3,\"\"\n").expect("writes the file");
    let copy_in = format!(
        "\\copy pc FROM '{}' WITH (FORMAT csv, HEADER)",
        input.display()
    );
    let copy_out = format!(
        "\\copy (SELECT * FROM pc ORDER BY id) TO '{}' WITH (FORMAT csv)",
        output.display()
    );
    let out = super::psql::psql(srv.addr().port(), &["-c", &copy_in, "-c", &copy_out]).await;
    assert!(
        out.status.success(),
        "stdout: {} stderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&output).expect("psql wrote the file"),
        "1,\"a, b\"\n2,\n3,\"\"\n"
    );
    let got = rows(
        &c.simple_query("SELECT id::text, note IS NULL, note FROM pc ORDER BY id")
            .await
            .expect("reads the rows"),
    );
    let want = |id: &str, null: &str, note: Option<&str>| {
        vec![
            Some(id.to_string()),
            Some(null.to_string()),
            note.map(str::to_string),
        ]
    };
    assert_eq!(
        got,
        vec![
            want("1", "f", Some("a, b")),
            want("2", "t", None),
            want("3", "f", Some(""))
        ]
    );
}
