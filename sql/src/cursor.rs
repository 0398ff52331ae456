//! SQL cursors: `DECLARE name [NO SCROLL] CURSOR [WITH[OUT] HOLD] FOR query`, `FETCH`, `CLOSE`.
//!
//! A cursor is the query's row stream, kept by the session and read forward by FETCH. The
//! stream reads the snapshot its scans took when the cursor was declared, so rows fetched later
//! (even after the transaction, WITH HOLD) are those of that moment, as in PostgreSQL.
//!
//! ```text
//!   DECLARE c CURSOR FOR q ($1 …) --plan and run q in the transaction--> Cursor { stream }
//!   FETCH [FORWARD] n | NEXT | ALL FROM c --next n rows of the stream--> rows, tag FETCH n
//!   COMMIT  -> cursors without HOLD close; ROLLBACK -> those declared in the block close too
//!   CLOSE c | CLOSE ALL
//! ```
//!
//! Forward only: a backward or absolute move is 55000, as for a NO SCROLL cursor in
//! PostgreSQL, and `SCROLL` is refused (0A000). A cursor is also a portal of the connection:
//! Describe of its name gives its row description (psycopg's named cursors use it).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::sql::sqlparser::ast;
use futures::StreamExt;

use crate::error::{Error, ErrorObject, Result};
use crate::session::{FieldInfo, QueryOutput, RowStream};

/// A `DECLARE name CURSOR … FOR query` statement and its query.
pub(crate) fn declared_query(stmt: &ast::Statement) -> Option<(&ast::Declare, &ast::Query)> {
    let ast::Statement::Declare { stmts } = stmt else {
        return None;
    };
    match stmts.as_slice() {
        [d] if d.declare_type == Some(ast::DeclareType::Cursor) => {
            d.for_query.as_deref().map(|q| (d, q))
        }
        _ => None,
    }
}

/// A cursor reads a query: a SELECT, VALUES or TABLE, not a data-modifying statement.
pub(crate) fn check_query(q: &ast::Query) -> Result<()> {
    match *q.body {
        ast::SetExpr::Select(_)
        | ast::SetExpr::Query(_)
        | ast::SetExpr::SetOperation { .. }
        | ast::SetExpr::Values(_)
        | ast::SetExpr::Table(_) => Ok(()),
        _ => Err(Error::syntax(
            "a cursor's query must be a SELECT, VALUES or TABLE query",
        )),
    }
}

/// An open cursor.
pub(crate) struct Cursor {
    fields: Arc<Vec<FieldInfo>>,
    /// In a mutex only so that the session stays `Sync`; read through `get_mut`.
    /// Fused: FETCH past the end polls it again.
    stream: std::sync::Mutex<futures::stream::Fuse<RowStream>>,
    /// Rows read from the stream and not fetched yet.
    pending: Option<RecordBatch>,
    hold: bool,
    /// Declared in the open transaction block: its ROLLBACK closes it, even WITH HOLD.
    in_block: bool,
}

/// The session's open cursors, by name.
#[derive(Default)]
pub(crate) struct Cursors {
    open: HashMap<String, Cursor>,
}

fn undefined(name: &str) -> Error {
    Error::Detailed {
        code: "34000",
        message: format!("cursor \"{name}\" does not exist"),
        detail: None,
        hint: None,
        object: ErrorObject::default(),
    }
}

/// How many rows a FETCH reads; None for all that remain.
fn fetch_count(direction: &ast::FetchDirection) -> Result<Option<u64>> {
    use ast::FetchDirection as D;
    let count = |v: &ast::ValueWithSpan| -> Result<i64> {
        match &v.value {
            ast::Value::Number(n, _) => n.parse::<i64>().map_err(|_| Error::Syntax {
                message: format!("invalid FETCH count {n}"),
                position: None,
            }),
            other => Err(Error::Syntax {
                message: format!("invalid FETCH count {other}"),
                position: None,
            }),
        }
    };
    let backward = || Error::Detailed {
        code: "55000",
        message: "cursor can only scan forward".into(),
        detail: None,
        hint: Some("Declare it with SCROLL option to enable backward scan.".into()),
        object: ErrorObject::default(),
    };
    match direction {
        D::Next | D::Forward { limit: None } => Ok(Some(1)),
        D::All | D::ForwardAll => Ok(None),
        D::Count { limit } | D::Forward { limit: Some(limit) } => {
            let n = count(limit)?;
            if n < 0 {
                return Err(backward());
            }
            Ok(Some(n.unsigned_abs()))
        }
        D::Prior | D::Backward { .. } | D::BackwardAll => Err(backward()),
        D::First | D::Last | D::Absolute { .. } | D::Relative { .. } => Err(Error::unsupported(
            "FETCH FIRST, LAST, ABSOLUTE and RELATIVE (cursors read forward only)",
        )),
    }
}

impl Cursors {
    pub(crate) fn fields(&self, name: &str) -> Option<Arc<Vec<FieldInfo>>> {
        self.open.get(name).map(|c| Arc::clone(&c.fields))
    }

    /// The fields FETCH from `name` returns: the statement is described at Parse.
    pub(crate) fn describe_fetch(&self, name: &ast::Ident) -> Result<Arc<Vec<FieldInfo>>> {
        let name = crate::ddl::ident(name);
        self.fields(&name).ok_or_else(|| undefined(&name))
    }

    /// Checks a DECLARE before its query runs.
    pub(crate) fn check_declare(&self, declare: &ast::Declare, in_block: bool) -> Result<String> {
        let name = declare
            .names
            .first()
            .map(crate::ddl::ident)
            .ok_or_else(|| Error::internal("DECLARE without a name"))?;
        if declare.scroll == Some(true) {
            return Err(Error::unsupported(
                "SCROLL cursors (cursors read forward only)",
            ));
        }
        if declare.binary == Some(true) {
            return Err(Error::unsupported("BINARY cursors"));
        }
        if !in_block && declare.hold != Some(true) {
            return Err(Error::NoActiveTransaction {
                message: "DECLARE CURSOR can only be used in transaction blocks".into(),
            });
        }
        if let Some(q) = declare.for_query.as_deref() {
            check_query(q)?;
            if declare.hold == Some(true) && !q.locks.is_empty() {
                return Err(Error::Detailed {
                    code: "0A000",
                    message: "DECLARE CURSOR WITH HOLD ... FOR UPDATE is not supported".into(),
                    detail: Some("Holdable cursors must be READ ONLY.".into()),
                    hint: None,
                    object: ErrorObject::default(),
                });
            }
        }
        if self.open.contains_key(&name) {
            return Err(Error::Detailed {
                code: "42P03",
                message: format!("cursor \"{name}\" already exists"),
                detail: None,
                hint: None,
                object: ErrorObject::default(),
            });
        }
        Ok(name)
    }

    /// Opens a cursor on the rows of its query.
    pub(crate) fn open(
        &mut self,
        name: String,
        output: QueryOutput,
        hold: bool,
        in_block: bool,
    ) -> Result<QueryOutput> {
        let QueryOutput::Rows { fields, stream, .. } = output else {
            return Err(Error::Syntax {
                message: "cursor can only scan a query that returns rows".into(),
                position: None,
            });
        };
        self.open.insert(
            name,
            Cursor {
                fields,
                stream: std::sync::Mutex::new(stream.fuse()),
                pending: None,
                hold,
                in_block,
            },
        );
        Ok(QueryOutput::Command {
            tag: "DECLARE CURSOR".into(),
        })
    }

    /// FETCH: the next rows of the cursor.
    pub(crate) async fn fetch(
        &mut self,
        name: &ast::Ident,
        direction: &ast::FetchDirection,
    ) -> Result<QueryOutput> {
        let count = fetch_count(direction)?;
        let name = crate::ddl::ident(name);
        let cursor = self.open.get_mut(&name).ok_or_else(|| undefined(&name))?;
        let stream = cursor
            .stream
            .get_mut()
            .map_err(|_| Error::internal("cursor stream poisoned"))?;
        let mut batches = Vec::new();
        let mut got = 0u64;
        while count.is_none_or(|n| got < n) {
            let batch = match cursor.pending.take() {
                Some(b) => b,
                None => match stream.next().await {
                    Some(b) => b?,
                    None => break,
                },
            };
            let rows = batch.num_rows();
            let want = count.map_or(rows, |n| {
                usize::try_from(n - got).unwrap_or(usize::MAX).min(rows)
            });
            if want < rows {
                cursor.pending = Some(batch.slice(want, rows - want));
                batches.push(batch.slice(0, want));
            } else {
                batches.push(batch);
            }
            got += want as u64;
        }
        Ok(QueryOutput::Rows {
            fields: Arc::clone(&cursor.fields),
            stream: Box::pin(futures::stream::iter(batches.into_iter().map(Ok))),
            command: "FETCH",
        })
    }

    pub(crate) fn close(&mut self, which: &ast::CloseCursor) -> Result<QueryOutput> {
        match which {
            ast::CloseCursor::All => {
                self.open.clear();
                Ok(QueryOutput::Command {
                    tag: "CLOSE CURSOR ALL".into(),
                })
            }
            ast::CloseCursor::Specific { name } => {
                let name = crate::ddl::ident(name);
                self.open.remove(&name).ok_or_else(|| undefined(&name))?;
                Ok(QueryOutput::Command {
                    tag: "CLOSE CURSOR".into(),
                })
            }
        }
    }

    /// At the end of a transaction: a commit keeps the WITH HOLD cursors, a rollback those
    /// declared before the block.
    pub(crate) fn end_of_block(&mut self, committed: bool) {
        self.open.retain(|_, c| {
            let keep = c.hold && (committed || !c.in_block);
            c.in_block = false;
            keep
        });
    }
}
