//! psql, as a user would run it.

use tokio::process::Command;

use super::support::{server, DEADLINE};

pub(super) async fn psql(port: u16, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new("psql");
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        "postgres",
        "-d",
        "postgres",
    ])
    .args(["-X", "-v", "ON_ERROR_STOP=1"])
    .args(args)
    .env("PGCONNECT_TIMEOUT", "10")
    .kill_on_drop(true);
    tokio::time::timeout(DEADLINE, cmd.output())
        .await
        .expect("psql finishes")
        .expect("psql runs (is the PostgreSQL client installed?)")
}

#[tokio::test(flavor = "multi_thread")]
async fn psql_as_a_user_types_it() {
    let srv = server().await;
    let port = srv.addr().port().to_string();
    let out = tokio::time::timeout(
        DEADLINE,
        Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &port, "-c", "select 1"])
            .env("PGCONNECT_TIMEOUT", "10")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("psql finishes")
    .expect("psql runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("(1 row)"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn psql_runs_commands() {
    let srv = server().await;
    let port = srv.addr().port();
    let out = psql(port, &["-c", "select 1"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("(1 row)"), "{stdout}");

    let out = psql(
        port,
        &[
            "-A",
            "-t",
            "-c",
            "create table t (id int primary key, v text)",
            "-c",
            "insert into t values (1, 'one'), (2, 'two')",
            "-c",
            "select v from t order by id",
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("INSERT 0 2") && stdout.contains("one\ntwo"),
        "{stdout}"
    );

    let out = psql(port, &["-c", "select * from no_such_table"]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no_such_table"), "{stderr}");
}

/// The describe commands a psql user types first: each runs psql's own catalog queries.
#[tokio::test(flavor = "multi_thread")]
async fn psql_describe_commands() {
    let srv = server().await;
    let port = srv.addr().port();
    let out = psql(
        port,
        &[
            "-c",
            "create table items (id int primary key, name text not null, \
             price numeric(10,2) default 0, sku text unique)",
            "-c",
            "create index items_name on items (name)",
            "-c",
            "create view cheap as select id from items where price < 10",
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let run = |cmd: &'static str| async move {
        let out = psql(port, &["-c", cmd]).await;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{cmd}: stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };

    let dt = run("\\dt").await;
    assert!(
        dt.contains("List of relations") && dt.contains(" items ") && dt.contains(" table "),
        "{dt}"
    );
    assert!(!dt.contains("cheap"), "\\dt lists tables only: {dt}");

    let d = run("\\d items").await;
    for want in [
        "Table \"public.items\"",
        "integer",
        "not null",
        "numeric(10,2)",
        "\"items_pkey\" PRIMARY KEY, btree (id)",
        "\"items_name\" btree (name)",
        "\"items_sku_key\" UNIQUE CONSTRAINT, btree (sku)",
    ] {
        assert!(d.contains(want), "\\d items lacks {want:?}: {d}");
    }

    let di = run("\\di").await;
    for want in ["items_pkey", "items_name", "items_sku_key"] {
        assert!(di.contains(want), "\\di lacks {want}: {di}");
    }

    let l = run("\\l").await;
    assert!(
        l.contains("List of databases") && l.contains("postgres"),
        "{l}"
    );

    let dv = run("\\dv").await;
    assert!(dv.contains("cheap") && dv.contains("view"), "{dv}");

    // A sequence's owner, from pg_depend: serial and OWNED BY, identity, none.
    let made = psql(
        port,
        &[
            "-c",
            "create table counters (id serial primary key, g int generated always as identity, v int)",
            "-c",
            "create sequence loose",
        ],
    )
    .await;
    assert!(made.status.success(), "{made:?}");
    let ds = run("\\d counters_id_seq").await;
    assert!(
        ds.contains("Sequence \"public.counters_id_seq\"")
            && ds.contains("Owned by: public.counters.id"),
        "{ds}"
    );
    let ds = run("\\d counters_g_seq").await;
    assert!(
        ds.contains("Sequence for identity column: public.counters.g"),
        "{ds}"
    );
    let ds = run("\\d loose").await;
    assert!(
        ds.contains("Sequence \"public.loose\"") && !ds.contains("Owned by"),
        "{ds}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pg_dump_restores_with_psql() {
    let srv = server().await;
    let dump =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pg_dump_books.sql");
    let out = psql(
        srv.addr().port(),
        &["-q", "-f", &dump.display().to_string()],
    )
    .await;
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let c = super::support::connect(&srv).await;
    let rows = super::support::rows(
        &c.simple_query(
            "SELECT b.id, a.name, b.title, b.price, b.tags
             FROM books b JOIN authors a ON a.id = b.author_id ORDER BY b.id",
        )
        .await
        .expect("reads the restored rows"),
    );
    let row = |v: [Option<&str>; 5]| v.map(|c| c.map(str::to_string)).to_vec();
    assert_eq!(
        rows,
        vec![
            row([
                Some("1"),
                Some("Ann"),
                Some("First"),
                Some("9.99"),
                Some("{\"a\": [1, 2]}")
            ]),
            row([
                Some("2"),
                Some("Ann"),
                Some("Second, with comma"),
                None,
                None
            ]),
            row([
                Some("3"),
                Some("Cé \"quoted\""),
                Some("tab\there"),
                Some("12.50"),
                Some("\"x\"")
            ]),
        ]
    );
    // The serial keys go on from the dump's setval, the sequences belong to their columns, and
    // the constraints hold.
    let id = c
        .query_one(
            "INSERT INTO authors (name) VALUES ('New') RETURNING id",
            &[],
        )
        .await
        .expect("inserts with the serial default");
    assert_eq!(id.get::<_, i32>(0), 4);
    let seq = c
        .query_one("SELECT pg_get_serial_sequence('books', 'id')", &[])
        .await
        .expect("reads the owner");
    assert_eq!(
        seq.get::<_, Option<String>>(0).as_deref(),
        Some("public.books_id_seq")
    );
    for (sql, code) in [
        (
            "INSERT INTO books (author_id, title) VALUES (9, 'x')",
            "23503",
        ),
        (
            "INSERT INTO books (author_id, title) VALUES (1, 'First')",
            "23505",
        ),
        (
            "INSERT INTO books (id, author_id, title) VALUES (1, 1, 'Third')",
            "23505",
        ),
    ] {
        let e = c.batch_execute(sql).await.expect_err(sql);
        assert_eq!(super::support::sqlstate(&e), code, "{sql}: {e:?}");
    }
}
