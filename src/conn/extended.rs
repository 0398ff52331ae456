//! The extended query protocol: Parse, Bind, Describe, Execute, Close.
//!
//! ```text
//!   Parse(sql, types) --session.prepare--> PreparedStatement (named or unnamed "")
//!   Bind(params, formats) --decode params--> Portal (not yet run)
//!   Execute(max_rows) --session.execute on first use--> rows streamed, PortalSuspended at the
//!                       limit, resumed by the next Execute; CommandComplete at the end
//! ```

use std::sync::Arc;

use futures::SinkExt;

use datafusion::scalar::ScalarValue;
use pgwire::messages::data::{NoData, ParameterDescription};
use pgwire::messages::extendedquery::{
    Bind, BindComplete, Close, CloseComplete, Describe, Execute, Parse, ParseComplete,
    PortalSuspended, TARGET_TYPE_BYTE_PORTAL, TARGET_TYPE_BYTE_STATEMENT,
};
use pgwire::messages::response::{CommandComplete, EmptyQueryResponse};
use pgwire::messages::PgWireBackendMessage;
use weft_sql::copy::CopySpec;
use weft_sql::{Prepared, QueryOutput};

use super::connection::Connection;
use super::decode::decode;
use super::encode::{resolve_formats, Format};
use super::error::{Fail, SqlError};
use super::rows::{command_tag, row_description, Fetched, RowSource};

/// A parsed statement and the parameter types the client declared for it (0 = unspecified).
pub struct PreparedStatement {
    pub prepared: Arc<Prepared>,
    pub declared: Vec<u32>,
}

/// A bound statement.
pub struct Portal {
    prepared: Arc<Prepared>,
    /// Result format codes as sent in Bind.
    result_formats: Vec<i16>,
    state: PortalState,
}

enum PortalState {
    /// Not executed yet; the bound parameter values.
    Ready(Vec<ScalarValue>),
    Running(RowSource),
    /// Finished; re-executing sends this tag again.
    Done(String),
    DoneEmpty,
}

fn describe_name(kind: &str, name: &str) -> String {
    if name.is_empty() {
        format!("unnamed {kind}")
    } else {
        format!("{kind} \"{name}\"")
    }
}

pub async fn parse(conn: &mut Connection, msg: Parse) -> Result<(), Fail> {
    let name = msg.name.unwrap_or_default();
    if !name.is_empty() && conn.statements.contains_key(&name) {
        return Err(SqlError::new(
            "42P05",
            format!("prepared statement \"{name}\" already exists"),
        )
        .into());
    }
    let prepared = conn.session.prepare(&msg.query, &msg.type_oids).await?;
    conn.statements.insert(
        name,
        PreparedStatement {
            prepared,
            declared: msg.type_oids,
        },
    );
    conn.send(PgWireBackendMessage::ParseComplete(ParseComplete::new()))
        .await?;
    Ok(())
}

pub async fn bind(conn: &mut Connection, msg: Bind) -> Result<(), Fail> {
    let statement_name = msg.statement_name.unwrap_or_default();
    let portal_name = msg.portal_name.unwrap_or_default();
    let statement = conn.statements.get(&statement_name).ok_or_else(|| {
        SqlError::new(
            "26000",
            format!(
                "{} does not exist",
                describe_name("prepared statement", &statement_name)
            ),
        )
    })?;
    if !portal_name.is_empty() && conn.portals.contains_key(&portal_name) {
        return Err(
            SqlError::new("42P03", format!("cursor \"{portal_name}\" already exists")).into(),
        );
    }
    let prepared = Arc::clone(&statement.prepared);
    let expected = prepared.param_types.len();
    if msg.parameters.len() != expected {
        return Err(SqlError::protocol(format!(
            "bind message supplies {} parameters, but {} requires {expected}",
            msg.parameters.len(),
            describe_name("prepared statement", &statement_name),
        ))
        .into());
    }
    let formats = resolve_formats(&msg.parameter_format_codes, expected).map_err(|_| {
        SqlError::protocol(format!(
            "bind message has {} parameter formats but {expected} parameters",
            msg.parameter_format_codes.len()
        ))
    })?;
    let mut params = Vec::with_capacity(expected);
    for (i, value) in msg.parameters.iter().enumerate() {
        let declared = statement.declared.get(i).copied().unwrap_or(0);
        let target = prepared.param_types[i].oid();
        let v = decode(value.as_deref(), formats[i], declared, target).map_err(|e| {
            let mut e = SqlError::from(e);
            if e.code == "22P03" {
                e.message = format!("incorrect binary data format in bind parameter {}", i + 1);
            }
            e
        })?;
        params.push(v);
    }
    let columns = prepared.fields.as_ref().map_or(0, |f| f.len());
    resolve_formats(&msg.result_column_format_codes, columns).map_err(SqlError::protocol)?;
    conn.portals.insert(
        portal_name,
        Portal {
            prepared,
            result_formats: msg.result_column_format_codes,
            state: PortalState::Ready(params),
        },
    );
    conn.send(PgWireBackendMessage::BindComplete(BindComplete::new()))
        .await?;
    Ok(())
}

pub async fn describe(conn: &mut Connection, msg: Describe) -> Result<(), Fail> {
    let name = msg.name.unwrap_or_default();
    let (prepared, formats) = match msg.target_type {
        TARGET_TYPE_BYTE_STATEMENT => {
            let statement = conn.statements.get(&name).ok_or_else(|| {
                SqlError::new(
                    "26000",
                    format!(
                        "{} does not exist",
                        describe_name("prepared statement", &name)
                    ),
                )
            })?;
            let prepared = Arc::clone(&statement.prepared);
            let types = prepared.param_types.iter().map(|t| t.oid()).collect();
            let description = ParameterDescription::new(types);
            conn.send(PgWireBackendMessage::ParameterDescription(description))
                .await?;
            (prepared, Vec::new())
        }
        TARGET_TYPE_BYTE_PORTAL => {
            let Some(portal) = conn.portals.get(&name) else {
                // A cursor DECLAREd in SQL is a portal of the same name.
                let fields = conn.session.cursor_fields(&name).ok_or_else(|| {
                    SqlError::new("34000", format!("portal \"{name}\" does not exist"))
                })?;
                let formats = resolve_formats(&[], fields.len()).map_err(SqlError::protocol)?;
                let description = row_description(&fields, &formats);
                conn.send(PgWireBackendMessage::RowDescription(description))
                    .await?;
                return Ok(());
            };
            (Arc::clone(&portal.prepared), portal.result_formats.clone())
        }
        other => {
            return Err(
                SqlError::protocol(format!("invalid DESCRIBE message subtype {other}")).into(),
            )
        }
    };
    let message = match &prepared.fields {
        // COPY answers with its own sub-protocol, not rows.
        Some(_) if prepared.copy.is_some() => PgWireBackendMessage::NoData(NoData::new()),
        Some(fields) => {
            let formats = resolve_formats(&formats, fields.len()).map_err(SqlError::protocol)?;
            PgWireBackendMessage::RowDescription(row_description(fields, &formats))
        }
        None => PgWireBackendMessage::NoData(NoData::new()),
    };
    conn.send(message).await?;
    Ok(())
}

pub async fn execute(conn: &mut Connection, msg: Execute) -> Result<(), Fail> {
    let name = msg.name.unwrap_or_default();
    let copy = conn.portals.get(&name).and_then(|p| match p.state {
        PortalState::Ready(_) => p.prepared.copy.clone(),
        _ => None,
    });
    if let Some(spec) = copy {
        return execute_copy(conn, &name, &spec).await;
    }
    let max_rows = usize::try_from(msg.max_rows).unwrap_or(0);
    let Connection {
        portals,
        session,
        socket,
        ..
    } = &mut *conn;
    let portal = portals
        .get_mut(&name)
        .ok_or_else(|| SqlError::new("34000", format!("portal \"{name}\" does not exist")))?;
    let params = match &mut portal.state {
        PortalState::Ready(params) => Some(std::mem::take(params)),
        _ => None,
    };
    if let Some(params) = params {
        // Until the engine answers, the portal is spent: a failed execution is not retried.
        portal.state = PortalState::DoneEmpty;
        match session.execute(&portal.prepared, params).await? {
            QueryOutput::Rows {
                fields,
                stream,
                command,
            } => {
                let formats: Vec<Format> = resolve_formats(&portal.result_formats, fields.len())
                    .map_err(SqlError::protocol)?;
                portal.state =
                    PortalState::Running(RowSource::new(&fields, &formats, stream, command));
            }
            QueryOutput::Command { tag } => portal.state = PortalState::Done(tag),
            QueryOutput::Empty => portal.state = PortalState::DoneEmpty,
        }
    }
    let message = match &mut portal.state {
        PortalState::Running(rows) => match rows.send(socket, max_rows).await {
            Ok(Fetched::Suspended) => PgWireBackendMessage::PortalSuspended(PortalSuspended::new()),
            Ok(Fetched::Complete(tag)) => {
                portal.state = PortalState::Done(command_tag(rows.command(), 0));
                command_complete(tag)
            }
            Err(e) => {
                // An error while computing rows fails the transaction, as one before them does.
                session.fail_block();
                portals.remove(&name);
                return Err(e);
            }
        },
        PortalState::Done(tag) => command_complete(tag.clone()),
        PortalState::DoneEmpty | PortalState::Ready(_) => {
            PgWireBackendMessage::EmptyQueryResponse(EmptyQueryResponse::new())
        }
    };
    socket.feed(message).await?;
    Ok(())
}

/// Execute of a COPY portal: the whole COPY sub-protocol, then CommandComplete (COPY has no
/// row limit).
async fn execute_copy(conn: &mut Connection, name: &str, spec: &CopySpec) -> Result<(), Fail> {
    let Some(portal) = conn.portals.get_mut(name) else {
        return Ok(());
    };
    let prepared = Arc::clone(&portal.prepared);
    let params = match &mut portal.state {
        PortalState::Ready(params) => std::mem::take(params),
        _ => Vec::new(),
    };
    portal.state = PortalState::DoneEmpty;
    if spec.from_stdin {
        let data = super::copy::receive(conn, spec)
            .await
            .inspect_err(|_| conn.session.fail_block())?;
        conn.session.set_copy_data(data);
    }
    let tag = match conn.session.execute(&prepared, params).await? {
        QueryOutput::Rows { fields, stream, .. } => {
            super::copy::send(&mut conn.socket, spec, &fields, stream)
                .await
                .inspect_err(|_| conn.session.fail_block())?
        }
        QueryOutput::Command { tag } => tag,
        QueryOutput::Empty => String::new(),
    };
    if let Some(portal) = conn.portals.get_mut(name) {
        portal.state = PortalState::Done(tag.clone());
    }
    conn.socket.feed(command_complete(tag)).await?;
    Ok(())
}

fn command_complete(tag: String) -> PgWireBackendMessage {
    PgWireBackendMessage::CommandComplete(CommandComplete::new(tag))
}

pub async fn close(conn: &mut Connection, msg: Close) -> Result<(), Fail> {
    let name = msg.name.unwrap_or_default();
    match msg.target_type {
        TARGET_TYPE_BYTE_STATEMENT => {
            // Closing a statement closes the portals made from it.
            if let Some(statement) = conn.statements.remove(&name) {
                conn.portals
                    .retain(|_, p| !Arc::ptr_eq(&p.prepared, &statement.prepared));
            }
        }
        TARGET_TYPE_BYTE_PORTAL => {
            conn.portals.remove(&name);
        }
        other => {
            return Err(SqlError::protocol(format!("invalid CLOSE message subtype {other}")).into())
        }
    }
    conn.send(PgWireBackendMessage::CloseComplete(CloseComplete::new()))
        .await?;
    Ok(())
}
