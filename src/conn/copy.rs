//! COPY's sub-protocol: CopyInResponse, then the client's CopyData until CopyDone (or
//! CopyFail), for COPY … FROM STDIN; CopyOutResponse, one CopyData per row and CopyDone for
//! COPY … TO STDOUT. The statement itself runs in the session (`weft_sql::copy`).

use std::io;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use pgwire::messages::copy::{CopyData, CopyDone, CopyInResponse, CopyOutResponse};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use weft_sql::copy::{encode_header, encode_row, CopySpec};
use weft_sql::{FieldInfo, RowStream};

use super::codec::Frontend;
use super::connection::{Connection, Socket};
use super::encode::{Format, RowEncoder};
use super::error::{Fail, SqlError};

/// COPY FROM STDIN data held at most (the rows are inserted in one transaction, in memory).
const MAX_COPY_IN: usize = 1 << 30;

fn width(spec: &CopySpec) -> i16 {
    i16::try_from(spec.columns).unwrap_or(i16::MAX)
}

/// Asks for the data and reads it to the client's CopyDone: the bytes, or the client's
/// CopyFail message. Flush and Sync are ignored meanwhile, as PostgreSQL does.
pub async fn receive(
    conn: &mut Connection,
    spec: &CopySpec,
) -> Result<Result<Vec<u8>, String>, Fail> {
    let response = CopyInResponse::new(0, width(spec), vec![0; spec.columns]);
    conn.send(PgWireBackendMessage::CopyInResponse(response))
        .await?;
    conn.socket.flush().await?;
    let mut data = Vec::new();
    let mut too_big = false;
    loop {
        let message = match conn.socket.next().await {
            None => {
                return Err(Fail::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the client closed the connection during COPY",
                )))
            }
            Some(Err(e)) => return Err(Fail::Io(e)),
            Some(Ok(Frontend::Malformed { reason, .. })) => {
                return Err(SqlError::protocol(format!("invalid message format: {reason}")).into())
            }
            Some(Ok(Frontend::Message(m))) => m,
        };
        match message {
            PgWireFrontendMessage::CopyData(d) => {
                if too_big || data.len() + d.data.len() > MAX_COPY_IN {
                    too_big = true;
                    data = Vec::new();
                } else {
                    data.extend_from_slice(&d.data);
                }
            }
            PgWireFrontendMessage::CopyDone(_) => break,
            PgWireFrontendMessage::CopyFail(f) => return Ok(Err(f.message)),
            PgWireFrontendMessage::Flush(_) | PgWireFrontendMessage::Sync(_) => {}
            other => {
                return Err(SqlError::new(
                    "08P01",
                    format!(
                        "unexpected message {} during COPY from stdin",
                        super::connection::kind_name(&other)
                    ),
                )
                .into())
            }
        }
    }
    if too_big {
        return Err(SqlError::new(
            "54000",
            format!("COPY data is larger than {MAX_COPY_IN} bytes; split it into several COPYs"),
        )
        .into());
    }
    Ok(Ok(data))
}

/// Sends a COPY TO result: CopyOutResponse, a CopyData per row, CopyDone; the tag.
pub async fn send(
    socket: &mut Socket,
    spec: &CopySpec,
    fields: &[FieldInfo],
    mut stream: RowStream,
) -> Result<String, Fail> {
    let response = CopyOutResponse::new(0, width(spec), vec![0; spec.columns]);
    socket
        .feed(PgWireBackendMessage::CopyOutResponse(response))
        .await?;
    let f = &spec.format;
    if f.header {
        let names: Vec<String> = fields.iter().map(|c| c.name.clone()).collect();
        let mut line = Vec::new();
        encode_header(&names, f, &mut line);
        feed_line(socket, line).await?;
    }
    let encoder = RowEncoder::new(
        fields
            .iter()
            .map(|c| (c.pg_type.oid(), Format::Text))
            .collect(),
    );
    let mut rows = Vec::new();
    let mut count: u64 = 0;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        rows.clear();
        encoder.encode(&batch, &mut rows)?;
        for row in rows.drain(..) {
            let cells = data_row_cells(&row.data);
            let mut line = Vec::new();
            encode_row(&cells, f, &mut line);
            feed_line(socket, line).await?;
            count += 1;
        }
    }
    socket
        .feed(PgWireBackendMessage::CopyDone(CopyDone::new()))
        .await?;
    Ok(format!("COPY {count}"))
}

async fn feed_line(socket: &mut Socket, line: Vec<u8>) -> io::Result<()> {
    socket
        .feed(PgWireBackendMessage::CopyData(CopyData::new(Bytes::from(
            line,
        ))))
        .await
}

/// The cells of an encoded DataRow: per field a length (-1: NULL) and its bytes.
fn data_row_cells(data: &[u8]) -> Vec<Option<&[u8]>> {
    let mut cells = Vec::new();
    let mut at = 0;
    while at + 4 <= data.len() {
        let len = i32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
        at += 4;
        match usize::try_from(len) {
            Ok(n) if at + n <= data.len() => {
                cells.push(Some(&data[at..at + n]));
                at += n;
            }
            _ => cells.push(None),
        }
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_row_cells_read_lengths_and_nulls() {
        let mut d = Vec::new();
        d.extend_from_slice(&2i32.to_be_bytes());
        d.extend_from_slice(b"ab");
        d.extend_from_slice(&(-1i32).to_be_bytes());
        d.extend_from_slice(&0i32.to_be_bytes());
        assert_eq!(
            data_row_cells(&d),
            vec![Some(&b"ab"[..]), None, Some(&b""[..])]
        );
    }
}
