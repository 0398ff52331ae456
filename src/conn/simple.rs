//! The simple query protocol: one Query message, any number of statements.
//!
//! The whole string is parsed first (a syntax error anywhere runs nothing), then each statement
//! is prepared and executed in turn with text results; the first error ends the message.
//! Transaction semantics of a multi-statement string belong to the session.

use std::io;

use pgwire::messages::response::{CommandComplete, EmptyQueryResponse};
use pgwire::messages::PgWireBackendMessage;
use weft_sql::QueryOutput;

use super::connection::Connection;
use super::encode::Format;
use super::error::{Fail, SqlError};
use super::rows::{row_description, Fetched, RowSource};

pub async fn query(conn: &mut Connection, sql: &str) -> io::Result<()> {
    // A simple query ends the life of the unnamed statement and portal.
    conn.statements.remove("");
    conn.portals.remove("");
    match run(conn, sql).await {
        Ok(()) => {}
        Err(Fail::Sql(e)) => conn.send_error(&e).await?,
        Err(Fail::Io(e)) => return Err(e),
    }
    conn.ready_for_query().await
}

async fn run(conn: &mut Connection, sql: &str) -> Result<(), Fail> {
    let statements = conn.session.parse_batch(sql)?;
    if statements.is_empty() {
        conn.send(PgWireBackendMessage::EmptyQueryResponse(
            EmptyQueryResponse::new(),
        ))
        .await?;
        return Ok(());
    }
    for statement in statements {
        let prepared = conn.session.prepare_statement(statement, &[]).await?;
        if !prepared.param_types.is_empty() {
            return Err(SqlError::new("42P02", "there is no parameter $1").into());
        }
        if let Some(spec) = prepared.copy.as_ref().filter(|s| s.from_stdin) {
            let data = super::copy::receive(conn, spec)
                .await
                .inspect_err(|_| conn.session.fail_block())?;
            conn.session.set_copy_data(data);
        }
        let output = match (
            conn.session.execute(&prepared, Vec::new()).await?,
            &prepared.copy,
        ) {
            (QueryOutput::Rows { fields, stream, .. }, Some(spec)) => {
                let tag = super::copy::send(&mut conn.socket, spec, &fields, stream)
                    .await
                    .inspect_err(|_| conn.session.fail_block())?;
                QueryOutput::Command { tag }
            }
            (output, _) => output,
        };
        match output {
            QueryOutput::Rows {
                fields,
                stream,
                command,
            } => {
                let formats = vec![Format::Text; fields.len()];
                let description = row_description(&fields, &formats);
                conn.send(PgWireBackendMessage::RowDescription(description))
                    .await?;
                let mut rows = RowSource::new(&fields, &formats, stream, command);
                // An error while computing rows fails the transaction, as one before them does.
                let fetched = rows
                    .send(&mut conn.socket, 0)
                    .await
                    .inspect_err(|_| conn.session.fail_block())?;
                if let Fetched::Complete(tag) = fetched {
                    complete(conn, tag).await?;
                }
            }
            QueryOutput::Command { tag } => complete(conn, tag).await?,
            QueryOutput::Empty => {
                conn.send(PgWireBackendMessage::EmptyQueryResponse(
                    EmptyQueryResponse::new(),
                ))
                .await?
            }
        }
        conn.send_session_messages().await?;
    }
    Ok(())
}

pub async fn complete(conn: &mut Connection, tag: String) -> io::Result<()> {
    conn.send(PgWireBackendMessage::CommandComplete(CommandComplete::new(
        tag,
    )))
    .await
}
