//! Arbitrary SQL through a real session must end in a result or an error with a SQLSTATE, never a
//! panic: statements are assembled at random from SQL fragments over a small schema.

use std::collections::HashMap;

use proptest::prelude::*;
use weft_sql::{Engine, EngineConfig, QueryOutput};
use weft_storage::{Storage, StorageOptions};

const FRAGMENTS: &[&str] = &[
    "SELECT",
    "INSERT INTO",
    "UPDATE",
    "DELETE FROM",
    "FROM",
    "WHERE",
    "GROUP BY",
    "ORDER BY",
    "LIMIT",
    "VALUES",
    "SET",
    "RETURNING",
    "ON CONFLICT",
    "DO NOTHING",
    "JOIN",
    "ON",
    "AND",
    "OR",
    "NOT",
    "IN",
    "IS NULL",
    "*",
    "(",
    ")",
    ",",
    "=",
    "<",
    "+",
    "-",
    "/",
    "%",
    "||",
    "::",
    "int",
    "text",
    "numeric(5,2)",
    "uuid",
    "jsonb",
    "->",
    "->>",
    "t",
    "u",
    "id",
    "a",
    "b",
    "count(*)",
    "sum(a)",
    "1",
    "0",
    "-1",
    "2147483648",
    "1e308",
    "'x'",
    "'{\"k\":1}'",
    "NULL",
    "true",
    "CASE WHEN",
    "THEN",
    "ELSE",
    "END",
    "EXISTS",
    "(SELECT",
    "UNION",
    "CAST(",
    "AS",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT s",
    "$1",
    ";",
    "DISTINCT",
    "HAVING",
    "OVER ()",
    "row_number()",
    "now()",
    "gen_random_uuid()",
];

fn statement() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 1..14).prop_map(|parts| parts.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    #[test]
    fn random_sql_never_panics(stmts in prop::collection::vec(statement(), 1..6)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let storage = Storage::open(dir.path(), StorageOptions::default()).expect("open");
            let engine = Engine::new(storage.clone(), EngineConfig::default()).expect("engine");
            let mut s = engine.new_session(&HashMap::new());
            for setup in [
                "CREATE TABLE t (id int PRIMARY KEY, a int, b text, j jsonb)",
                "CREATE TABLE u (id int, a numeric(5,2) CHECK (a > -100), b uuid UNIQUE)",
                "INSERT INTO t VALUES (1, 1, 'x', '{\"k\": 1}'), (2, NULL, NULL, NULL)",
            ] {
                let p = s.prepare(setup, &[]).await.expect("setup prepares");
                s.execute(&p, vec![]).await.map(|_| ()).expect("setup runs");
            }
            for sql in stmts {
                let Ok(p) = s.prepare(&sql, &[]).await else { continue };
                let params = p.param_types.iter().map(|_| weft_sql::datafusion::scalar::ScalarValue::Utf8(Some("1".into()))).collect();
                match s.execute(&p, params).await {
                    Ok(QueryOutput::Rows { mut stream, .. }) => {
                        use futures::StreamExt;
                        while let Some(item) = stream.next().await {
                            if let Err(e) = item {
                                assert_eq!(e.sqlstate().len(), 5);
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => assert_eq!(e.sqlstate().len(), 5, "{sql}: {e}"),
                }
            }
            storage.shutdown();
        });
    }
}
