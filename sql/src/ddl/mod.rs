//! DDL: catalog changes made inside the session's transaction, so they commit (and later replicate)
//! atomically with data and are visible to the next statement once committed.

mod alter;
mod alter_type;
mod comment;
mod create_table;
mod drop;
mod foreign_key;
mod index;
mod primary_key;
mod view;

use datafusion::sql::sqlparser::ast;
use weft_storage::{DataType, Txn};

use crate::error::{Error, Result};
use crate::session::{ExecCtx, QueryOutput};
use crate::statement::Statement;

pub(crate) fn is_ddl(stmt: &ast::Statement) -> bool {
    matches!(
        stmt,
        ast::Statement::CreateTable(_)
            | ast::Statement::CreateIndex(_)
            | ast::Statement::CreateView(_)
            | ast::Statement::Drop { .. }
            | ast::Statement::AlterTable(_)
            | ast::Statement::Truncate(_)
            | ast::Statement::CreateSequence { .. }
            | ast::Statement::Comment { .. }
    ) || crate::dialect::alter_sequence(stmt).is_some()
}

pub(crate) fn tag(t: &str) -> QueryOutput {
    QueryOutput::Command { tag: t.to_string() }
}

pub(crate) async fn execute(
    ctx: &ExecCtx<'_>,
    txn: &mut Txn,
    stmt: &Statement,
    param_types: &[crate::pgtype::PgType],
    params: Vec<datafusion::scalar::ScalarValue>,
) -> Result<QueryOutput> {
    if let Some((if_exists, name, what)) = crate::dialect::alter_sequence(&stmt.ast) {
        return crate::sequence::alter(ctx.shared, txn, if_exists, &name, &what);
    }
    match &*stmt.ast {
        ast::Statement::CreateTable(ct) => {
            let params = create_table::Params {
                types: param_types,
                values: params,
            };
            create_table::execute(ctx, txn, ct, &stmt.sql, params).await
        }
        ast::Statement::CreateIndex(ci) => index::create(ctx.shared, txn, ci),
        ast::Statement::CreateView(cv) if stmt.live => crate::push::create(ctx, txn, cv).await,
        ast::Statement::CreateView(cv) => view::create(ctx, txn, cv).await,
        ast::Statement::Drop {
            if_exists, names, ..
        } if stmt.live => crate::push::drop(ctx.shared, txn, *if_exists, names),
        ast::Statement::Drop {
            object_type,
            if_exists,
            names,
            cascade,
            ..
        } => drop::execute(ctx.shared, txn, *object_type, *if_exists, names, *cascade),
        ast::Statement::AlterTable(at) => alter::execute(ctx, txn, at).await,
        ast::Statement::Truncate(t) => drop::truncate(ctx.shared, txn, t),
        ast::Statement::CreateSequence { .. } => {
            crate::sequence::create(ctx.shared, txn, &stmt.ast)
        }
        ast::Statement::Comment {
            object_type,
            object_name,
            comment,
            ..
        } => comment::execute(txn, *object_type, object_name, comment),
        other => Err(Error::unsupported(format!(
            "statement \"{}\"",
            statement_kind(other)
        ))),
    }
}

fn statement_kind(stmt: &ast::Statement) -> String {
    let text = stmt.to_string();
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// PostgreSQL's name for an unnamed CHECK: `<table>_<column>_check` when the expression reads
/// exactly one column (or is a column's own constraint with none), else `<table>_check`; a digit
/// is appended while `taken` says the name is used.
pub(crate) fn check_name(
    table: &str,
    expr: &ast::Expr,
    column: Option<&str>,
    taken: impl Fn(&str) -> bool,
) -> String {
    let mut columns = std::collections::BTreeSet::new();
    let _ = ast::visit_expressions(expr, |e: &ast::Expr| {
        match e {
            ast::Expr::Identifier(i) => {
                columns.insert(ident(i));
            }
            ast::Expr::CompoundIdentifier(parts) => {
                if let Some(last) = parts.last() {
                    columns.insert(ident(last));
                }
            }
            _ => {}
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    let base = match (columns.len(), columns.first(), column) {
        (1, Some(c), _) => format!("{table}_{c}_check"),
        (0, _, Some(c)) => format!("{table}_{c}_check"),
        _ => format!("{table}_check"),
    };
    std::iter::once(base.clone())
        .chain((1..).map(|i| format!("{base}{i}")))
        .find(|n| !taken(n))
        .unwrap_or(base)
}

/// An identifier as PostgreSQL folds it: unquoted names are lower-cased.
pub(crate) fn ident(i: &ast::Ident) -> String {
    match i.quote_style {
        Some(_) => i.value.clone(),
        None => i.value.to_lowercase(),
    }
}

/// The relation name of an object name (`schema.name` → name; schema must be `public` if given).
pub(crate) fn object_name(name: &ast::ObjectName) -> Result<String> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p.as_ident() {
            Some(i) => Ok(ident(i)),
            None => Err(Error::syntax(format!("invalid name {name}"))),
        })
        .collect::<Result<_>>()?;
    match parts.as_slice() {
        [n] => Ok(n.clone()),
        [schema, n] if schema == "public" => Ok(n.clone()),
        [db, schema, n] if schema == "public" && !db.is_empty() => Ok(n.clone()),
        _ => Err(Error::FeatureNotSupported {
            feature: format!("schemas other than public (in {name})"),
        }),
    }
}

/// The storage type of a declared SQL type.
/// The SQL type `t` is stored as, the inverse of [`column_type`].
pub(crate) fn ast_type(t: DataType) -> Result<ast::DataType> {
    let name = crate::pgtype::sql_type_name(t);
    datafusion::sql::sqlparser::parser::Parser::new(&crate::dialect::WeftDialect::default())
        .try_with_sql(&name)
        .and_then(|mut p| p.parse_data_type())
        .map_err(|e| Error::internal(format!("type {name} did not parse: {e}")))
}

pub(crate) fn column_type(t: &ast::DataType) -> Result<DataType> {
    use ast::DataType as T;
    let char_len = |l: &Option<ast::CharacterLength>| -> Result<Option<u32>> {
        match l {
            None | Some(ast::CharacterLength::Max) => Ok(None),
            Some(ast::CharacterLength::IntegerLength { length, .. }) => {
                match u32::try_from(*length) {
                    Ok(0) | Err(_) => Err(Error::InvalidParameterValue {
                        message: "length for type varchar must be at least 1".into(),
                    }),
                    Ok(n) => Ok(Some(n)),
                }
            }
        }
    };
    Ok(match t {
        T::SmallInt(_) | T::Int2(_) => DataType::Int16,
        T::Int(_) | T::Integer(_) | T::Int4(_) => DataType::Int32,
        T::BigInt(_) | T::Int8(_) => DataType::Int64,
        T::Real | T::Float4 => DataType::Float32,
        T::Float8 | T::DoublePrecision | T::Double(_) => DataType::Float64,
        T::Float(info) => match info {
            ast::ExactNumberInfo::Precision(p) if *p <= 24 => DataType::Float32,
            _ => DataType::Float64,
        },
        T::Numeric(info) | T::Decimal(info) | T::Dec(info) => {
            let (p, s) = match info {
                ast::ExactNumberInfo::None => (38, 16),
                ast::ExactNumberInfo::Precision(p) => (*p, 0),
                ast::ExactNumberInfo::PrecisionAndScale(p, s) => (*p, *s),
            };
            if p == 0 || p > 38 {
                return Err(Error::FeatureNotSupported {
                    feature: format!("numeric precision {p} (Weft supports 1 to 38)"),
                });
            }
            if s < 0 || s > p as i64 {
                return Err(Error::InvalidParameterValue {
                    message: format!("NUMERIC scale {s} must be between 0 and precision {p}"),
                });
            }
            DataType::Numeric {
                precision: p as u8,
                scale: s as i8,
            }
        }
        T::Text | T::String(None) => DataType::Text,
        T::Varchar(l) | T::CharacterVarying(l) | T::CharVarying(l) | T::Nvarchar(l) => {
            DataType::Varchar(char_len(l)?)
        }
        T::Char(l) | T::Character(l) => DataType::Char(char_len(l)?.unwrap_or(1)),
        T::Bool | T::Boolean => DataType::Bool,
        T::Bytea => DataType::Bytea,
        T::Date => DataType::Date,
        T::Timestamp(_, tz) => match tz {
            ast::TimezoneInfo::WithTimeZone | ast::TimezoneInfo::Tz => DataType::TimestampTz,
            _ => DataType::Timestamp,
        },
        T::TimestampNtz(_) => DataType::Timestamp,
        T::Uuid => DataType::Uuid,
        T::JSON | T::JSONB => DataType::Jsonb,
        T::Array(ast::ArrayElemTypeDef::SquareBracket(inner, _)) => {
            // `int[][]` is the same type as `int[]` in PostgreSQL (the dimensions are the values').
            let mut inner = inner.as_ref();
            while let T::Array(ast::ArrayElemTypeDef::SquareBracket(i, _)) = inner {
                inner = i;
            }
            let scalar = column_type(inner)?;
            DataType::Array(weft_storage::ArrayElem::of(scalar).ok_or_else(|| {
                Error::FeatureNotSupported {
                    feature: format!("an array of type {}", crate::pgtype::sql_type_name(scalar)),
                }
            })?)
        }
        T::Custom(name, _) => match name.to_string().to_lowercase().as_str() {
            "jsonb" | "json" => DataType::Jsonb,
            "timestamptz" => DataType::TimestampTz,
            "bpchar" => DataType::Char(1),
            other => {
                return Err(Error::FeatureNotSupported {
                    feature: format!("type {other}"),
                })
            }
        },
        other => {
            return Err(Error::FeatureNotSupported {
                feature: format!("type {other}"),
            })
        }
    })
}
