//! Sending a result: RowDescription, DataRows from the engine's record-batch stream (all of
//! them, or up to Execute's row limit and resumable), and the CommandComplete tag.

use datafusion::arrow::array::RecordBatch;
use futures::{SinkExt, StreamExt};
use pgwire::messages::data::{FieldDescription, RowDescription};
use pgwire::messages::PgWireBackendMessage;
use weft_sql::{FieldInfo, RowStream};

use super::connection::Socket;
use super::encode::{Format, RowEncoder};
use super::error::Fail;

/// RowDescription for `fields` sent in `formats` (one per field).
pub fn row_description(fields: &[FieldInfo], formats: &[Format]) -> RowDescription {
    let fields = fields
        .iter()
        .zip(formats)
        .map(|(f, format)| {
            FieldDescription::new(
                f.name.clone(),
                f.table_oid as i32,
                f.column_id,
                f.pg_type.oid(),
                f.pg_type.typlen(),
                f.type_modifier,
                format.code(),
            )
        })
        .collect();
    RowDescription::new(fields)
}

/// The CommandComplete tag of a statement that returned `rows` rows.
pub fn command_tag(command: &str, rows: u64) -> String {
    match command {
        "INSERT" => format!("INSERT 0 {rows}"),
        _ => format!("{command} {rows}"),
    }
}

/// How far a fetch got.
pub enum Fetched {
    /// The stream is exhausted; the CommandComplete tag.
    Complete(String),
    /// The row limit was reached; more rows may follow on the next Execute.
    Suspended,
}

/// A result being streamed to the client, possibly over several Executes.
pub struct RowSource {
    stream: RowStream,
    encoder: RowEncoder,
    command: &'static str,
    /// A batch only partly sent, and how many of its rows were.
    pending: Option<(RecordBatch, usize)>,
}

impl RowSource {
    pub fn new(
        fields: &[FieldInfo],
        formats: &[Format],
        stream: RowStream,
        command: &'static str,
    ) -> Self {
        let columns = fields
            .iter()
            .zip(formats)
            .map(|(f, format)| (f.pg_type.oid(), *format))
            .collect();
        RowSource {
            stream,
            encoder: RowEncoder::new(columns),
            command,
            pending: None,
        }
    }

    pub fn command(&self) -> &'static str {
        self.command
    }

    /// Sends up to `max_rows` rows (0 = all). The tag counts the rows of this call only, as
    /// PostgreSQL's does for a resumed portal.
    pub async fn send(&mut self, socket: &mut Socket, max_rows: usize) -> Result<Fetched, Fail> {
        let mut remaining = if max_rows == 0 { usize::MAX } else { max_rows };
        let mut sent: u64 = 0;
        let mut rows = Vec::new();
        loop {
            if remaining == 0 {
                return Ok(Fetched::Suspended);
            }
            let (batch, offset) = match self.pending.take() {
                Some(p) => p,
                None => match self.stream.next().await {
                    None => return Ok(Fetched::Complete(command_tag(self.command, sent))),
                    Some(Err(e)) => return Err(e.into()),
                    Some(Ok(batch)) => (batch, 0),
                },
            };
            let available = batch.num_rows() - offset;
            let n = available.min(remaining);
            if n < available {
                self.pending = Some((batch.clone(), offset + n));
            }
            rows.clear();
            self.encoder.encode(&batch.slice(offset, n), &mut rows)?;
            for row in rows.drain(..) {
                socket.feed(PgWireBackendMessage::DataRow(row)).await?;
            }
            sent += n as u64;
            remaining -= n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        assert_eq!(command_tag("SELECT", 3), "SELECT 3");
        assert_eq!(command_tag("INSERT", 2), "INSERT 0 2");
        assert_eq!(command_tag("UPDATE", 0), "UPDATE 0");
        assert_eq!(command_tag("DELETE", 1), "DELETE 1");
    }
}
