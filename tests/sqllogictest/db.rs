//! The `sqllogictest::AsyncDB` adapter: one tokio-postgres connection that runs each record's SQL
//! over either the simple or the extended query protocol.
//!
//! ```text
//!   record SQL ──► simple_query ─────────────► text ──┐
//!              └─► prepare + query/execute ──► binary ─► pgtext ─► text ──► format ──► strings
//! ```
//!
//! The record's declared column types (`query IIT`) arrive through [`TypeHint`], set by the file
//! loop before each record, because the crate hands `run` only the SQL.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};
use tokio_postgres::{Client, Config, NoTls, SimpleQueryMessage};

use crate::format::format_value;
use crate::pgtext::{to_text, Raw};

/// Which query protocol a connection speaks for every record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// One `Query` message; rows arrive as text.
    Simple,
    /// Parse/Describe, then Bind/Execute without parameters; rows arrive in binary.
    Extended,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Simple => "simple",
            Protocol::Extended => "extended",
        }
    }
}

/// The column types the current record declares, shared by the file loop and its connections.
#[derive(Clone, Default)]
pub struct TypeHint(Arc<Mutex<Option<Vec<DefaultColumnType>>>>);

impl TypeHint {
    pub fn set(&self, types: Option<Vec<DefaultColumnType>>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = types;
    }

    fn take(&self) -> Option<Vec<DefaultColumnType>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// An error from the server (with its SQLSTATE) or from the connection.
#[derive(Debug)]
pub struct DbError {
    message: String,
    sqlstate: Option<String>,
}

impl DbError {
    pub fn other(message: impl Into<String>) -> Self {
        DbError {
            message: message.into(),
            sqlstate: None,
        }
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.sqlstate {
            Some(code) => write!(f, "{} (SQLSTATE {code})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for DbError {}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => {
                let mut message = format!("{}: {}", db.severity(), db.message());
                if let Some(detail) = db.detail() {
                    message.push_str(&format!("\nDETAIL: {detail}"));
                }
                DbError {
                    message,
                    sqlstate: Some(db.code().code().to_string()),
                }
            }
            None => DbError::other(format!("{e:#}")),
        }
    }
}

/// Time zones in which `timestamptz` text carries `+00`, the only zone `pgtext` renders.
const UTC_ZONES: &[&str] = &[
    "UTC",
    "Etc/UTC",
    "GMT",
    "Etc/GMT",
    "UCT",
    "Etc/UCT",
    "Universal",
    "Zulu",
];

pub struct Conn {
    client: Client,
    protocol: Protocol,
    hint: TypeHint,
    /// The session's `TimeZone` at connect time, when it is not UTC.
    non_utc_zone: Option<String>,
}

impl Conn {
    pub async fn connect(
        config: Config,
        protocol: Protocol,
        hint: TypeHint,
    ) -> Result<Conn, DbError> {
        let (client, connection) = config.connect(NoTls).await?;
        let zone = connection.parameter("TimeZone").unwrap_or("UTC");
        let non_utc_zone = (!UTC_ZONES.contains(&zone)).then(|| zone.to_string());
        tokio::spawn(async move {
            // Ends when the client is dropped or the server goes away; errors surface on queries.
            let _ = connection.await;
        });
        Ok(Conn {
            client,
            protocol,
            hint,
            non_utc_zone,
        })
    }

    async fn simple(&self, sql: &str) -> Result<Output, DbError> {
        let mut out = Output::Count(0);
        for message in self.client.simple_query(sql).await? {
            match message {
                SimpleQueryMessage::RowDescription(columns) => {
                    out = Output::Rows {
                        columns: columns.len(),
                        rows: Vec::new(),
                    };
                }
                SimpleQueryMessage::Row(row) => {
                    let values = (0..row.len())
                        .map(|i| row.get(i).map(str::to_string))
                        .collect();
                    match &mut out {
                        Output::Rows { rows, .. } => rows.push(values),
                        Output::Count(_) => {
                            out = Output::Rows {
                                columns: row.len(),
                                rows: vec![values],
                            }
                        }
                    }
                }
                SimpleQueryMessage::CommandComplete(n) => {
                    if let Output::Count(count) = &mut out {
                        *count = n;
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }

    async fn extended(&self, sql: &str) -> Result<Output, DbError> {
        let statement = self.client.prepare(sql).await?;
        if statement.columns().is_empty() {
            return Ok(Output::Count(self.client.execute(&statement, &[]).await?));
        }
        let columns = statement.columns();
        let mut rows = Vec::new();
        for row in self.client.query(&statement, &[]).await? {
            let mut values = Vec::with_capacity(columns.len());
            for (i, column) in columns.iter().enumerate() {
                let Raw(raw) = row.try_get::<_, Raw>(i)?;
                let text = match raw {
                    None => None,
                    Some(bytes) => {
                        if let (Some(zone), "timestamptz" | "timetz") =
                            (&self.non_utc_zone, column.type_().name())
                        {
                            return Err(DbError::other(format!(
                                "the runner renders {} only in a UTC session, not in TimeZone {zone}",
                                column.type_().name()
                            )));
                        }
                        Some(to_text(column.type_(), bytes).map_err(|e| {
                            DbError::other(format!("column {}: {e}", column.name()))
                        })?)
                    }
                };
                values.push(text);
            }
            rows.push(values);
        }
        Ok(Output::Rows {
            columns: columns.len(),
            rows,
        })
    }
}

/// A statement's result before the SQLite-style formatting.
enum Output {
    Rows {
        columns: usize,
        rows: Vec<Vec<Option<String>>>,
    },
    Count(u64),
}

#[async_trait]
impl AsyncDB for Conn {
    type Error = DbError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DbError> {
        let declared = self.hint.take();
        let out = match self.protocol {
            Protocol::Simple => self.simple(sql).await?,
            Protocol::Extended => self.extended(sql).await?,
        };
        let (columns, rows) = match out {
            Output::Count(n) => return Ok(DBOutput::StatementComplete(n)),
            Output::Rows { columns, rows } => (columns, rows),
        };
        // Declared types drive the formatting only when they describe this result; otherwise
        // the column-count check reports the mismatch and values print as text.
        let declared = declared.filter(|types| types.len() == columns);
        let types = declared
            .clone()
            .unwrap_or_else(|| vec![DefaultColumnType::Any; columns]);
        let rows = rows
            .iter()
            .map(|row| {
                row.iter()
                    .enumerate()
                    .map(|(i, v)| format_value(v.as_deref(), declared.as_ref().map(|t| &t[i])))
                    .collect()
            })
            .collect();
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {
        // Nothing to do: dropping the client sends Terminate and ends the connection task.
    }

    async fn sleep(dur: Duration) {
        tokio::time::sleep(dur).await;
    }

    fn error_sql_state(err: &DbError) -> Option<String> {
        err.sqlstate.clone()
    }
}
