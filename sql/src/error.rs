//! The SQL layer's errors and their one mapping to PostgreSQL SQLSTATE codes.
//!
//! Every error a client can cause carries a SQLSTATE; internal failures are logged in full and shown
//! to the client as `XX000` without internals.

use datafusion::arrow::error::ArrowError;
use datafusion::common::{DataFusionError, SchemaError};
use datafusion::sql::sqlparser::parser::ParserError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The database object an error is about, for the ErrorResponse's table (`t`), column (`c`) and
/// constraint (`n`) fields (the schema, `s`, is then `public`), as PostgreSQL sends them with
/// integrity violations: drivers expose them (`diag.constraint_name`, `err.constraint`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErrorObject {
    pub table: Option<String>,
    pub column: Option<String>,
    pub constraint: Option<String>,
}

impl ErrorObject {
    pub fn constraint(table: &str, constraint: &str) -> ErrorObject {
        ErrorObject {
            table: Some(table.to_string()),
            column: None,
            constraint: Some(constraint.to_string()),
        }
    }

    pub fn column(table: &str, column: &str) -> ErrorObject {
        ErrorObject {
            table: Some(table.to_string()),
            column: Some(column.to_string()),
            constraint: None,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("syntax error: {message}")]
    Syntax {
        message: String,
        position: Option<u32>,
    },
    #[error("{message}")]
    UndefinedTable { message: String },
    #[error("{message}")]
    UndefinedColumn { message: String },
    #[error("{message}")]
    UndefinedObject { message: String },
    #[error("{message}")]
    UndefinedFunction { message: String },
    #[error("{message}")]
    DuplicateTable { message: String },
    #[error("{message}")]
    DuplicateObject { message: String },
    #[error("{message}")]
    DuplicateColumn { message: String },
    #[error("{message}")]
    AmbiguousColumn { message: String },
    #[error("{message}")]
    DatatypeMismatch { message: String },
    #[error("{message}")]
    Grouping { message: String },
    #[error("{message}")]
    InvalidColumnReference { message: String },
    #[error("{message}")]
    InvalidTableDefinition { message: String },
    #[error("{message}")]
    InvalidParameterValue { message: String },
    /// A data exception of a class without a variant of its own (2201B, 2201W, 22011, …).
    #[error("{message}")]
    Data { code: &'static str, message: String },
    #[error("{message}")]
    NumericOutOfRange { message: String },
    #[error("{message}")]
    InvalidTextRepresentation { message: String },
    #[error("{message}")]
    StringTooLong { message: String },
    #[error("division by zero")]
    DivisionByZero,
    #[error("{message}")]
    DataException { message: String },
    #[error("more than one row returned by a subquery used as an expression")]
    CardinalityViolation,
    #[error("{message}")]
    InvalidDatetimeFormat { message: String },
    #[error("{message}")]
    DatetimeFieldOverflow { message: String },
    #[error("{message}")]
    InvalidArgumentForLog { message: String },
    #[error("{message}")]
    InvalidArgumentForPower { message: String },
    #[error("{message}")]
    InvalidEscapeSequence { message: String },
    #[error("{message}")]
    UniqueViolation {
        message: String,
        detail: Option<String>,
        object: ErrorObject,
    },
    #[error("{message}")]
    NotNullViolation {
        message: String,
        detail: Option<String>,
        object: ErrorObject,
    },
    #[error("{message}")]
    CheckViolation {
        message: String,
        detail: Option<String>,
        object: ErrorObject,
    },
    #[error("{message}")]
    ActiveTransaction { message: String },
    #[error("{message}")]
    NoActiveTransaction { message: String },
    #[error("current transaction is aborted, commands ignored until end of transaction block")]
    InFailedTransaction,
    #[error("{message}")]
    ReadOnlyTransaction { message: String },
    #[error("could not serialize access due to concurrent update")]
    SerializationFailure { detail: Option<String> },
    #[error("canceling statement due to user request")]
    QueryCanceled,
    #[error("canceling statement due to statement timeout")]
    StatementTimeout,
    #[error("{message}")]
    ObjectNotInPrerequisiteState { message: String },
    #[error("{message}")]
    ProgramLimitExceeded { message: String },
    #[error("{feature} is not supported")]
    FeatureNotSupported { feature: String },
    #[error("{message}")]
    ProtocolViolation { message: String },
    #[error("{message}")]
    UnrecognizedParameter { message: String },
    #[error("{message}")]
    InvalidSavepoint { message: String },
    #[error("{message}")]
    WrongObjectType { message: String },
    #[error("{message}")]
    DependentObjects { message: String },
    /// Any SQLSTATE with a DETAIL and a HINT (foreign keys: 23503, 2BP01, 0A000, 42830).
    #[error("{message}")]
    Detailed {
        code: &'static str,
        message: String,
        detail: Option<String>,
        hint: Option<String>,
        object: ErrorObject,
    },
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The cluster could not take the statement and it surely had no effect (retry it).
    #[error("{message}")]
    ClusterUnavailable { message: String },
    /// The cluster may or may not have committed the transaction (SQLSTATE 40003).
    #[error("{message}")]
    CompletionUnknown { message: String },
    /// A bug or an engine failure; the message is not shown to clients.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn sqlstate(&self) -> &'static str {
        match self {
            Error::Syntax { .. } => "42601",
            Error::UndefinedTable { .. } => "42P01",
            Error::UndefinedColumn { .. } => "42703",
            Error::UndefinedObject { .. } => "42704",
            Error::UndefinedFunction { .. } => "42883",
            Error::DuplicateTable { .. } => "42P07",
            Error::DuplicateObject { .. } => "42710",
            Error::DuplicateColumn { .. } => "42701",
            Error::AmbiguousColumn { .. } => "42702",
            Error::DatatypeMismatch { .. } => "42804",
            Error::Grouping { .. } => "42803",
            Error::InvalidColumnReference { .. } => "42P10",
            Error::InvalidTableDefinition { .. } => "42P16",
            Error::InvalidParameterValue { .. } => "22023",
            Error::Data { code, .. } => code,
            Error::NumericOutOfRange { .. } => "22003",
            Error::InvalidTextRepresentation { .. } => "22P02",
            Error::StringTooLong { .. } => "22001",
            Error::DivisionByZero => "22012",
            Error::DataException { .. } => "22000",
            Error::CardinalityViolation => "21000",
            Error::InvalidDatetimeFormat { .. } => "22007",
            Error::DatetimeFieldOverflow { .. } => "22008",
            Error::InvalidArgumentForLog { .. } => "2201E",
            Error::InvalidArgumentForPower { .. } => "2201F",
            Error::InvalidEscapeSequence { .. } => "22025",
            Error::UniqueViolation { .. } => "23505",
            Error::NotNullViolation { .. } => "23502",
            Error::CheckViolation { .. } => "23514",
            Error::ActiveTransaction { .. } => "25001",
            Error::NoActiveTransaction { .. } => "25P01",
            Error::InFailedTransaction => "25P02",
            Error::ReadOnlyTransaction { .. } => "25006",
            Error::SerializationFailure { .. } => "40001",
            Error::QueryCanceled | Error::StatementTimeout => "57014",
            Error::ObjectNotInPrerequisiteState { .. } => "55000",
            Error::ProgramLimitExceeded { .. } => "54000",
            Error::FeatureNotSupported { .. } => "0A000",
            Error::ProtocolViolation { .. } => "08P01",
            Error::UnrecognizedParameter { .. } => "42704",
            Error::InvalidSavepoint { .. } => "3B001",
            Error::WrongObjectType { .. } => "42809",
            Error::DependentObjects { .. } => "2BP01",
            Error::Detailed { code, .. } => code,
            Error::ShuttingDown => "57P01",
            Error::ClusterUnavailable { .. } => "40001",
            Error::CompletionUnknown { .. } => "40003",
            Error::Internal(_) => "XX000",
        }
    }

    /// The message shown to the client: everything but internal errors, whose details stay in the log.
    pub fn message(&self) -> String {
        match self {
            Error::Syntax { message, .. } => message.clone(),
            Error::Internal(_) => "internal error".to_string(),
            other => other.to_string(),
        }
    }

    pub fn detail(&self) -> Option<String> {
        match self {
            Error::UniqueViolation { detail, .. }
            | Error::NotNullViolation { detail, .. }
            | Error::CheckViolation { detail, .. }
            | Error::Detailed { detail, .. }
            | Error::SerializationFailure { detail } => detail.clone(),
            _ => None,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Error::SerializationFailure { .. } | Error::ClusterUnavailable { .. } => {
                Some("The transaction might succeed if retried.".to_string())
            }
            Error::CompletionUnknown { .. } => {
                Some("The transaction may have committed: check before retrying it.".to_string())
            }
            Error::Detailed { hint, .. } => hint.clone(),
            Error::UndefinedFunction { message } if message.starts_with("function ") => Some(
                "No function matches the given name and argument types. You might need to add \
                 explicit type casts."
                    .to_string(),
            ),
            _ => None,
        }
    }

    /// 1-based character offset into the statement, for syntax errors.
    /// The table, column or constraint the error is about, if any.
    pub fn object(&self) -> Option<&ErrorObject> {
        match self {
            Error::UniqueViolation { object, .. }
            | Error::NotNullViolation { object, .. }
            | Error::CheckViolation { object, .. }
            | Error::Detailed { object, .. } => Some(object).filter(|o| o.table.is_some()),
            _ => None,
        }
    }

    pub fn position(&self) -> Option<u32> {
        match self {
            Error::Syntax { position, .. } => *position,
            _ => None,
        }
    }

    pub fn unsupported(feature: impl Into<String>) -> Self {
        Error::FeatureNotSupported {
            feature: feature.into(),
        }
    }

    pub fn syntax(message: impl Into<String>) -> Self {
        Error::Syntax {
            message: message.into(),
            position: None,
        }
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        Error::Internal(message.to_string())
    }

    /// Attaches a position computed from sqlparser's "Line: l, Column: c" to a syntax error.
    pub fn with_sql_position(self, sql: &str) -> Self {
        match self {
            Error::Syntax {
                message,
                position: None,
            } => {
                let position = parser_position(&message, sql);
                let message = strip_location(&message);
                Error::Syntax { message, position }
            }
            other => other,
        }
    }
}

impl From<weft_storage::Error> for Error {
    fn from(e: weft_storage::Error) -> Self {
        use weft_storage::Error as S;
        match e {
            S::UniqueViolation {
                table,
                constraint,
                detail,
            } => Error::UniqueViolation {
                message: format!("duplicate key value violates unique constraint \"{constraint}\""),
                detail: Some(detail),
                object: ErrorObject::constraint(&table, &constraint),
            },
            S::SerializationFailure { detail } => Error::SerializationFailure {
                detail: Some(detail),
            },
            S::ShuttingDown => Error::ShuttingDown,
            S::Unavailable {
                message,
                maybe_committed: false,
            } => Error::ClusterUnavailable { message },
            S::Unavailable {
                message,
                maybe_committed: true,
            } => Error::CompletionUnknown { message },
            S::Unsupported { feature } => Error::FeatureNotSupported { feature },
            S::Sequence { kind, message } => match kind {
                weft_storage::SequenceError::Limit => Error::Data {
                    code: "2200H",
                    message,
                },
                weft_storage::SequenceError::OutOfBounds => Error::NumericOutOfRange { message },
                weft_storage::SequenceError::Gone => Error::UndefinedTable { message },
            },
            other => Error::Internal(other.to_string()),
        }
    }
}

impl From<ParserError> for Error {
    fn from(e: ParserError) -> Self {
        match e {
            ParserError::RecursionLimitExceeded => Error::ProgramLimitExceeded {
                message: "statement is too deeply nested".to_string(),
            },
            ParserError::ParserError(m) | ParserError::TokenizerError(m) => Error::Syntax {
                message: syntax_message(&m),
                position: None,
            },
        }
    }
}

/// sqlparser says "Expected: X, found: Y at Line: 1, Column: 8"; PostgreSQL says
/// `syntax error at or near "Y"`.
fn syntax_message(m: &str) -> String {
    if let Some(idx) = m.find("found: ") {
        let rest = &m[idx + "found: ".len()..];
        let token = rest.split(" at Line:").next().unwrap_or(rest).trim();
        if token == "EOF" {
            return format!("syntax error at end of input ({m})");
        }
        return format!("syntax error at or near \"{token}\" ({m})");
    }
    format!("syntax error: {m}")
}

fn strip_location(message: &str) -> String {
    match message.find(" at Line: ") {
        Some(i) => {
            let rest = &message[i..];
            let close = rest.find(')').map(|c| &rest[c..]).unwrap_or("");
            format!("{}{}", &message[..i], close)
        }
        None => message.to_string(),
    }
}

fn parser_position(message: &str, sql: &str) -> Option<u32> {
    let idx = message.find("Line: ")?;
    let rest = &message[idx + 6..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let line: usize = line.trim().parse().ok()?;
    let col: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let col: usize = col.parse().ok()?;
    let mut offset = 0usize;
    for (i, l) in sql.split('\n').enumerate() {
        if i + 1 == line {
            return u32::try_from(offset + col).ok();
        }
        offset += l.chars().count() + 1;
    }
    None
}

impl From<ArrowError> for Error {
    fn from(e: ArrowError) -> Self {
        match e {
            ArrowError::DivideByZero => Error::DivisionByZero,
            ArrowError::ArithmeticOverflow(m) => Error::NumericOutOfRange {
                message: overflow_message(&m),
            },
            ArrowError::CastError(m) | ArrowError::ParseError(m) => cast_error(&m),
            ArrowError::ComputeError(m) if m.contains("Overflow") || m.contains("overflow") => {
                Error::NumericOutOfRange {
                    message: overflow_message(&m),
                }
            }
            ArrowError::InvalidArgumentError(m) => Error::InvalidParameterValue { message: m },
            ArrowError::ComputeError(m) if regex_error(&m).is_some() => execution_error(m),
            ArrowError::ExternalError(inner) => match inner.downcast::<Error>() {
                Ok(e) => *e,
                Err(inner) => internal(inner.to_string()),
            },
            other => Error::Internal(other.to_string()),
        }
    }
}

fn overflow_message(m: &str) -> String {
    if m.contains("Int16") {
        "smallint out of range".to_string()
    } else if m.contains("Int32") {
        "integer out of range".to_string()
    } else if m.contains("Int64") {
        "bigint out of range".to_string()
    } else {
        format!("value out of range: {m}")
    }
}

fn cast_error(m: &str) -> Error {
    // Arrow: "Cannot cast string 'x' to value of Int32 type" → PostgreSQL's wording.
    if let (Some(value), Some(t)) = (
        between(m, "Cannot cast string '", "'"),
        between(m, "to value of ", " type"),
    ) {
        let int = matches!(t, "Int16" | "Int32" | "Int64");
        let digits = value.trim();
        let digits = digits.strip_prefix(['+', '-']).unwrap_or(digits);
        if int && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            // Well formed, only too large: PostgreSQL's 22003, not a syntax error.
            return Error::NumericOutOfRange {
                message: format!(
                    "value \"{value}\" is out of range for type {}",
                    pg_type_word(t)
                ),
            };
        }
        if !m.contains("overflow") {
            return Error::InvalidTextRepresentation {
                message: format!(
                    "invalid input syntax for type {}: \"{value}\"",
                    pg_type_word(t)
                ),
            };
        }
    }
    if m.contains("Can't cast value") {
        return Error::NumericOutOfRange {
            message: overflow_message(m),
        };
    }
    if m.contains("overflow")
        || m.contains("Overflow")
        || m.contains("too large")
        || m.contains("out of range")
    {
        return Error::NumericOutOfRange {
            message: overflow_message(m),
        };
    }
    Error::InvalidTextRepresentation {
        message: format!("invalid input syntax: {m}"),
    }
}

/// What an unplannable outer reference is, from DataFusion's message (`… Column { relation:
/// Some(Bare { table: "t" }), name: "x" } …`): the column and where it may come from.
fn outer_reference_feature(m: &str) -> String {
    let column = m.find("Column { relation: ").map(|at| &m[at..]);
    let quoted = |s: &str, key: &str| {
        let start = s.find(key)? + key.len();
        let end = s[start..].find('"')?;
        Some(s[start..start + end].to_string())
    };
    let name = column.and_then(|c| quoted(c, "name: \""));
    let table = column
        .filter(|c| c.starts_with("Column { relation: Some("))
        .and_then(|c| quoted(c, "table: \""));
    let what = match (table, name) {
        (Some(t), Some(n)) => format!("\"{t}.{n}\""),
        (None, Some(n)) => format!("\"{n}\""),
        _ => "of an outer query".to_string(),
    };
    format!(
        "a reference to column {what} from this LATERAL item or correlated subquery (Weft plans \
         LATERAL set-returning calls, LEFT JOIN LATERAL … ON true, and LIMIT under equality \
         correlation)"
    )
}

impl From<DataFusionError> for Error {
    fn from(e: DataFusionError) -> Self {
        match e {
            DataFusionError::ArrowError(a, _) => Error::from(*a),
            DataFusionError::SQL(p, _) => Error::from(*p),
            // A numeric literal beyond Decimal128/256 (`1e400`).
            DataFusionError::NotImplemented(m)
                if m.starts_with("Decimal precision") || m.starts_with("Decimal scale") =>
            {
                Error::NumericOutOfRange {
                    message: "value overflows numeric format".into(),
                }
            }
            // An outer reference DataFusion could not decorrelate reaches the physical planner
            // with its debug form; name the column instead.
            DataFusionError::NotImplemented(m) if m.contains("OuterReferenceColumn") => {
                Error::FeatureNotSupported {
                    feature: outer_reference_feature(&m),
                }
            }
            DataFusionError::NotImplemented(m) => Error::FeatureNotSupported { feature: m },
            DataFusionError::SchemaError(s, _) => match *s {
                SchemaError::FieldNotFound { field, .. } => Error::UndefinedColumn {
                    message: format!("column \"{}\" does not exist", field.name),
                },
                SchemaError::AmbiguousReference { field } => Error::AmbiguousColumn {
                    message: format!("column reference \"{}\" is ambiguous", field.name),
                },
                SchemaError::DuplicateQualifiedField { name, .. }
                | SchemaError::DuplicateUnqualifiedField { name } => Error::DuplicateColumn {
                    message: format!("column \"{name}\" specified more than once"),
                },
            },
            DataFusionError::Plan(m) => plan_error(m),
            DataFusionError::Execution(m) => execution_error(m),
            DataFusionError::External(inner) => match inner.downcast::<Error>() {
                Ok(e) => *e,
                Err(inner) => match inner.downcast::<ArrowError>() {
                    Ok(a) => Error::from(*a),
                    Err(inner) => internal(inner.to_string()),
                },
            },
            DataFusionError::Context(_, inner) => Error::from(*inner),
            DataFusionError::Diagnostic(_, inner) => Error::from(*inner),
            DataFusionError::Shared(inner) => {
                Error::from(DataFusionError::Execution(inner.to_string()))
            }
            DataFusionError::Collection(mut errs) if !errs.is_empty() => {
                Error::from(errs.remove(0))
            }
            DataFusionError::ResourcesExhausted(m) => Error::ProgramLimitExceeded { message: m },
            other => Error::Internal(other.to_string()),
        }
    }
}

/// PostgreSQL's name for an Arrow type in messages.
fn pg_type_word(arrow: &str) -> &'static str {
    match arrow {
        "Int16" => "smallint",
        "Int32" => "integer",
        "Int64" => "bigint",
        "Float32" => "real",
        "Float64" => "double precision",
        "Boolean" => "boolean",
        "Date32" => "date",
        a if a.starts_with("Decimal") => "numeric",
        a if a.starts_with("Timestamp") => "timestamp",
        _ => "text",
    }
}

/// An error from outside DataFusion and Arrow: internal, unless it is a known user error (the
/// `regex` crate's, for a bad pattern).
fn internal(m: String) -> Error {
    regex_error(&m).unwrap_or(Error::Internal(m))
}

/// A pattern the `regex` crate refused, as PostgreSQL's 2201B with the crate's reason
/// ("invalid regular expression: unclosed group").
fn regex_error(m: &str) -> Option<Error> {
    if !m.contains("regex parse error") && !m.contains("Regular expression did not compile") {
        return None;
    }
    let reason = m
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .unwrap_or("syntax error");
    Some(Error::Data {
        code: "2201B",
        message: format!("invalid regular expression: {reason}"),
    })
}

/// DataFusion's messages for bad input that PostgreSQL gives a data exception class of its own:
/// (text in DataFusion's message, SQLSTATE, PostgreSQL's message).
const DATA_ERRORS: &[(&str, &str, &str)] = &[
    ("LIMIT must be >= 0", "2201W", "LIMIT must not be negative"),
    ("OFFSET must be >=0", "2201X", "OFFSET must not be negative"),
    (
        "Step cannot be zero",
        "22023",
        "step size cannot equal zero",
    ),
    ("step can't be 0", "22023", "step size cannot equal zero"),
    (
        "negative count not allowed",
        "22011",
        "negative substring length not allowed",
    ),
];

fn data_error(m: &str) -> Option<Error> {
    DATA_ERRORS
        .iter()
        .find(|(needle, ..)| m.contains(needle))
        .map(|&(_, code, message)| Error::Data {
            code,
            message: message.into(),
        })
}

fn plan_error(m: String) -> Error {
    if let Some(e) = data_error(&m) {
        return e;
    }
    if m.contains("subquery can only be used in") {
        return Error::FeatureNotSupported {
            feature: "a correlated subquery outside the select list, WHERE and HAVING".into(),
        };
    }
    if let Some(rest) = m.strip_prefix("Cannot create filter with non-boolean predicate") {
        let t = rest.rsplit("returning ").next().unwrap_or("").trim();
        // DataFusion types an integer literal bigint; PostgreSQL integer when it fits.
        let int4_literal = between(rest, "'Int64(", ")'")
            .and_then(|n| n.parse::<i64>().ok())
            .is_some_and(|n| i32::try_from(n).is_ok());
        let word = if int4_literal {
            "integer"
        } else {
            pg_type_word(t)
        };
        return Error::DatatypeMismatch {
            message: format!("argument of WHERE must be type boolean, not type {word}"),
        };
    }
    if m.contains("must appear in the GROUP BY clause") || m.contains("must be in GROUP BY") {
        let column = between(&m, "column \"", "\"").unwrap_or("?");
        let column = column.rsplit('.').next().unwrap_or(column);
        return Error::Grouping {
            message: format!("column \"{column}\" must appear in the GROUP BY clause or be used in an aggregate function"),
        };
    }
    if m.contains("Cannot coerce arithmetic expression") {
        return Error::UndefinedFunction {
            message: format!("operator does not exist: {m}"),
        };
    }
    if let Some(name) = between(&m, "table function '", "' not found") {
        if matches!(
            name,
            "jsonb_to_record" | "json_to_record" | "jsonb_to_recordset" | "json_to_recordset"
        ) {
            // rewrite.rs reads these only with a column definition list (`AS r(a int)`).
            return Error::Syntax {
                message: "a column definition list is required for functions returning \"record\""
                    .into(),
                position: None,
            };
        }
        return Error::UndefinedFunction {
            message: format!("function {name} does not exist"),
        };
    }
    if let Some(name) = between(&m, "table '", "' not found") {
        let name = name.rsplit('.').next().unwrap_or(name);
        return Error::UndefinedTable {
            message: format!("relation \"{name}\" does not exist"),
        };
    }
    // Our functions' own refusal (`function f(types) does not exist`), which DataFusion wraps in
    // its coercion message; rewrite.rs's internal names are shown as the SQL spelled them.
    if let Some(call) = between(&m, "External error: function ", " does not exist") {
        let call = call.replace("weft_make_interval(", "make_interval(");
        return Error::UndefinedFunction {
            message: format!("function {call} does not exist"),
        };
    }
    // DataFusion's "Invalid function 'f'. Did you mean 'g'?" guesses by spelling only.
    if let Some(name) = between(&m, "Invalid function '", "'") {
        return Error::UndefinedFunction {
            message: format!("function {name} does not exist"),
        };
    }
    if m.contains("Unknown function") {
        return Error::UndefinedFunction {
            message: format!("function does not exist: {m}"),
        };
    }
    if m.contains("Cannot infer common argument type")
        || m.contains("Cannot coerce")
        || m.contains("cannot be cast")
        || m.contains("No function matches")
        || m.contains("does not support")
        || m.contains("Failed to coerce")
        || m.contains("type_coercion")
    {
        return Error::DatatypeMismatch { message: m };
    }
    if m.contains("Divide by zero") {
        return Error::DivisionByZero;
    }
    Error::Syntax {
        message: m,
        position: None,
    }
}

fn execution_error(m: String) -> Error {
    // Ours (`weft_subquery_value`) and DataFusion's, also after a trip through a shared join side.
    if m.contains("more than one row returned by a subquery")
        || m.contains("Scalar subquery returned more than one row")
    {
        return Error::CardinalityViolation;
    }
    if m.contains("Divide by zero") || m.contains("division by zero") {
        return Error::DivisionByZero;
    }
    if m.contains("overflow") || m.contains("Overflow") {
        return Error::NumericOutOfRange {
            message: overflow_message(&m),
        };
    }
    if m.contains("Cast error") || m.contains("Cannot cast") {
        return cast_error(&m);
    }
    if let Some(e) = regex_error(&m).or_else(|| data_error(&m)) {
        return e;
    }
    if m.contains("field position must not be zero") || m.contains("invalid Unicode scalar value") {
        return Error::InvalidParameterValue { message: m };
    }
    Error::DataException { message: m }
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = s.find(start)? + start.len();
    let j = s[i..].find(end)? + i;
    Some(&s[i..j])
}

/// Turns our error into a DataFusion error that survives a trip through DataFusion's execution.
pub fn to_df(e: Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_unplannable_outer_reference_names_its_column() {
        let m = "Physical plan does not support logical expression OuterReferenceColumn(Field { \
                 name: \"id\", data_type: Int32 }, Column { relation: Some(Bare { table: \"d\" }), \
                 name: \"id\" }) is not supported";
        let e = super::Error::from(datafusion::error::DataFusionError::NotImplemented(m.into()));
        assert_eq!(e.sqlstate(), "0A000");
        let text = e.to_string();
        assert!(
            text.starts_with("a reference to column \"d.id\" from this LATERAL item"),
            "{text}"
        );
    }

    use super::*;

    #[test]
    fn parser_errors_map_to_42601_with_position() {
        let sql = "SELECT * FORM t";
        let e = Error::from(ParserError::ParserError(
            "Expected: end of statement, found: t at Line: 1, Column: 15".into(),
        ))
        .with_sql_position(sql);
        assert_eq!(e.sqlstate(), "42601");
        assert_eq!(e.position(), Some(15));
        assert!(e.message().contains("\"t\""), "{}", e.message());
    }

    #[test]
    fn table_not_found_is_42p01() {
        let e = Error::from(DataFusionError::Plan(
            "table 'postgres.public.nope' not found".into(),
        ));
        assert_eq!(e.sqlstate(), "42P01");
        assert_eq!(e.message(), "relation \"nope\" does not exist");
    }

    #[test]
    fn arrow_divide_by_zero_is_22012() {
        let e = Error::from(DataFusionError::ArrowError(
            Box::new(ArrowError::DivideByZero),
            None,
        ));
        assert_eq!(e.sqlstate(), "22012");
    }

    #[test]
    fn our_error_round_trips_through_datafusion() {
        let e = Error::from(to_df(Error::CheckViolation {
            message: "x".into(),
            detail: None,
            object: ErrorObject::default(),
        }));
        assert_eq!(e.sqlstate(), "23514");
    }

    #[test]
    fn subquery_rows_are_21000() {
        let e = Error::from(DataFusionError::Execution(
            "Scalar subquery returned more than one row".into(),
        ));
        assert_eq!(e.sqlstate(), "21000");
        let e = Error::from(DataFusionError::Shared(std::sync::Arc::new(to_df(
            Error::CardinalityViolation,
        ))));
        assert_eq!(e.sqlstate(), "21000");
    }

    #[test]
    fn internal_errors_hide_details() {
        let e = Error::internal("rocksdb exploded at /secret/path");
        assert_eq!(e.sqlstate(), "XX000");
        assert!(!e.message().contains("secret"));
    }
}
