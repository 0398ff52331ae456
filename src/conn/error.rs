//! Errors on the wire: what the client is told (ErrorResponse / NoticeResponse fields) and
//! what ends the connection.
//!
//! `weft_sql::Error` already carries its SQLSTATE; internal errors (XX000) are logged in full
//! and reach the client as a generic message.

use std::io;

use pgwire::error::ErrorInfo;
use pgwire::messages::response::{ErrorResponse, NoticeResponse};

use super::decode::DecodeError;
use super::encode::EncodeError;

pub const SEVERITY_ERROR: &str = "ERROR";
pub const SEVERITY_FATAL: &str = "FATAL";
pub const INTERNAL: &str = "XX000";
pub const PROTOCOL_VIOLATION: &str = "08P01";

/// An error to report to the client.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlError {
    pub severity: &'static str,
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// 1-based character position in the statement text.
    pub position: Option<u32>,
    /// The table, column and constraint an integrity violation is about.
    pub object: Option<weft_sql::error::ErrorObject>,
}

impl SqlError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        SqlError {
            severity: SEVERITY_ERROR,
            code: code.to_string(),
            message: message.into(),
            detail: None,
            hint: None,
            position: None,
            object: None,
        }
    }

    pub fn fatal(code: &str, message: impl Into<String>) -> Self {
        SqlError {
            severity: SEVERITY_FATAL,
            ..SqlError::new(code, message)
        }
    }

    pub fn protocol(message: impl Into<String>) -> Self {
        SqlError::new(PROTOCOL_VIOLATION, message)
    }

    /// The message an internal error is replaced with; the full error is in the server log.
    pub fn internal() -> Self {
        SqlError::new(INTERNAL, "internal error; see the server log for details")
    }

    pub fn is_fatal(&self) -> bool {
        self.severity == SEVERITY_FATAL
    }

    fn info(&self) -> ErrorInfo {
        let mut info = ErrorInfo::new(
            self.severity.to_string(),
            self.code.clone(),
            self.message.clone(),
        );
        info.severity_nonlocalized = Some(self.severity.to_string());
        info.detail = self.detail.clone();
        info.hint = self.hint.clone();
        info.position = self.position.map(|p| p.to_string());
        if let Some(o) = &self.object {
            info.schema = Some("public".to_string());
            info.table = o.table.clone();
            info.column = o.column.clone();
            info.constraint = o.constraint.clone();
        }
        info
    }

    pub fn to_response(&self) -> ErrorResponse {
        self.info().into()
    }
}

impl From<weft_sql::Error> for SqlError {
    fn from(e: weft_sql::Error) -> Self {
        if e.sqlstate() == INTERNAL {
            tracing::error!(error = ?e, "internal error");
            return SqlError::internal();
        }
        SqlError {
            severity: SEVERITY_ERROR,
            code: e.sqlstate().to_string(),
            message: e.message(),
            detail: e.detail(),
            hint: e.hint(),
            position: e.position(),
            object: e.object().cloned(),
        }
    }
}

impl From<EncodeError> for SqlError {
    fn from(e: EncodeError) -> Self {
        if e.sqlstate == INTERNAL {
            tracing::error!(error = %e.message, "internal error while encoding a result");
            return SqlError::internal();
        }
        SqlError::new(e.sqlstate, e.message)
    }
}

impl From<DecodeError> for SqlError {
    fn from(e: DecodeError) -> Self {
        SqlError::new(e.sqlstate, e.message)
    }
}

/// A notice (`NoticeResponse`) built from a session notice.
pub fn notice(n: &weft_sql::Notice) -> NoticeResponse {
    let mut info = ErrorInfo::new(n.severity.clone(), n.sqlstate.clone(), n.message.clone());
    info.severity_nonlocalized = Some(n.severity.clone());
    info.into()
}

/// Why handling a message stopped: an error for the client, or a dead socket.
#[derive(Debug)]
pub enum Fail {
    Sql(SqlError),
    Io(io::Error),
}

impl From<SqlError> for Fail {
    fn from(e: SqlError) -> Self {
        Fail::Sql(e)
    }
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Self {
        Fail::Io(e)
    }
}

impl From<weft_sql::Error> for Fail {
    fn from(e: weft_sql::Error) -> Self {
        Fail::Sql(e.into())
    }
}

impl From<EncodeError> for Fail {
    fn from(e: EncodeError) -> Self {
        Fail::Sql(e.into())
    }
}

impl From<DecodeError> for Fail {
    fn from(e: DecodeError) -> Self {
        Fail::Sql(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_sent() {
        let mut e = SqlError::new("42P01", "relation \"t\" does not exist");
        e.position = Some(15);
        e.hint = Some("create it".into());
        let fields = e.to_response().fields;
        let get = |k: u8| {
            fields
                .iter()
                .find(|(c, _)| *c == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get(b'S'), Some("ERROR"));
        assert_eq!(get(b'V'), Some("ERROR"));
        assert_eq!(get(b'C'), Some("42P01"));
        assert_eq!(get(b'M'), Some("relation \"t\" does not exist"));
        assert_eq!(get(b'P'), Some("15"));
        assert_eq!(get(b'H'), Some("create it"));
        assert_eq!(get(b'D'), None);
    }

    #[test]
    fn codec_errors_keep_their_state() {
        let e: SqlError = DecodeError {
            sqlstate: "22P02",
            message: "bad".into(),
        }
        .into();
        assert_eq!(e.code, "22P02");
        let e: SqlError = EncodeError {
            sqlstate: INTERNAL,
            message: "secret internals".into(),
        }
        .into();
        assert_eq!(e, SqlError::internal());
        assert!(SqlError::fatal("57P01", "bye").is_fatal());
    }
}
