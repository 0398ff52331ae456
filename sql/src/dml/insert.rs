//! INSERT: VALUES (literals and parameters without planning), INSERT … SELECT (through
//! DataFusion), DEFAULT, ON CONFLICT DO NOTHING / DO UPDATE, RETURNING.

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::sql::sqlparser::ast;
use weft_storage::{Row, TableDef, Txn, Value};

use super::{column_of, constraints, returning, select, target_by_name, Params};
use crate::convert::{array_value, scalar_to_value};
use crate::ddl::{ident, object_name};
use crate::error::{Error, Result};
use crate::eval::{compile, default_values, rows_only};
use crate::pgtype::PgType;
use crate::session::{ExecCtx, QueryOutput};
use crate::statement::Overriding;
use datafusion::sql::sqlparser::parser::Parser;

pub(super) fn table_name(i: &ast::Insert) -> Result<String> {
    match &i.table {
        ast::TableObject::TableName(n) => object_name(n),
        other => Err(Error::unsupported(format!("INSERT INTO {other}"))),
    }
}

/// Positions of the target columns (the column list, or every visible column).
fn target_columns(def: &TableDef, i: &ast::Insert) -> Result<Vec<usize>> {
    if i.columns.is_empty() {
        return Ok(def.visible_columns().map(|(p, _)| p).collect());
    }
    let mut out: Vec<usize> = Vec::new();
    for c in &i.columns {
        let p = column_of(def, c)?;
        if out.contains(&p) {
            return Err(Error::DuplicateColumn {
                message: format!(
                    "column \"{}\" specified more than once",
                    def.columns[p].name
                ),
            });
        }
        out.push(p);
    }
    Ok(out)
}

fn values_rows(i: &ast::Insert) -> Option<&Vec<ast::Parens<Vec<ast::Expr>>>> {
    match i.source.as_deref().map(|q| q.body.as_ref()) {
        Some(ast::SetExpr::Values(v)) => Some(&v.rows),
        _ => None,
    }
}

/// The source query of an INSERT … SELECT, if it is one.
pub(super) fn select_source(i: &ast::Insert) -> Option<ast::Statement> {
    match i.source.as_deref() {
        Some(q) if !matches!(q.body.as_ref(), ast::SetExpr::Values(_)) => {
            Some(ast::Statement::Query(Box::new(q.clone())))
        }
        _ => None,
    }
}

fn placeholder_index(e: &ast::Expr) -> Option<usize> {
    match e {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::Placeholder(p) => p.strip_prefix('$')?.parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

/// Types of parameters that stand alone in a VALUES column: the column's type.
pub(super) fn param_hints(def: &TableDef, i: &ast::Insert) -> Result<Vec<(usize, PgType)>> {
    let cols = target_columns(def, i)?;
    let mut hints = Vec::new();
    if let Some(rows) = values_rows(i) {
        for row in rows {
            for (e, &c) in row.content.iter().zip(&cols) {
                if let Some(n) = placeholder_index(e).filter(|n| *n > 0) {
                    hints.push((n, PgType::from_storage(def.columns[c].data_type)));
                }
            }
        }
    }
    Ok(hints)
}

fn is_default(e: &ast::Expr) -> bool {
    matches!(e, ast::Expr::Identifier(i) if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default"))
}

/// A literal's value without planning, where it is a plain literal or parameter.
fn simple_value(e: &ast::Expr, params: &Params) -> Result<Option<ScalarValue>> {
    Ok(match e {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::Placeholder(p) => Some(params.get(p)?.clone()),
            ast::Value::Null => Some(ScalarValue::Null),
            ast::Value::Boolean(b) => Some(ScalarValue::Boolean(Some(*b))),
            ast::Value::SingleQuotedString(s) | ast::Value::EscapedStringLiteral(s) => {
                Some(ScalarValue::Utf8(Some(s.clone())))
            }
            ast::Value::Number(n, _) => Some(match n.parse::<i64>() {
                Ok(i) => ScalarValue::Int64(Some(i)),
                Err(_) => ScalarValue::Utf8(Some(n.clone())),
            }),
            _ => None,
        },
        ast::Expr::UnaryOp {
            op: ast::UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            ast::Expr::Value(v) => match &v.value {
                ast::Value::Number(n, _) => Some(match n.parse::<i64>() {
                    Ok(i) => ScalarValue::Int64(Some(-i)),
                    Err(_) => ScalarValue::Utf8(Some(format!("-{n}"))),
                }),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    })
}

/// Rows of (target column → value) from VALUES; `None` cells take the column default.
fn rows_from_values(
    ctx: &ExecCtx<'_>,
    def: &TableDef,
    cols: &[usize],
    rows: &[ast::Parens<Vec<ast::Expr>>],
    params: &Params,
) -> Result<Vec<Vec<Option<Value>>>> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let row = &row.content;
        if row.len() > cols.len() {
            return Err(Error::syntax(
                "INSERT has more expressions than target columns",
            ));
        }
        if row.len() < cols.len() {
            return Err(Error::syntax(
                "INSERT has more target columns than expressions",
            ));
        }
        let mut cells = Vec::with_capacity(row.len());
        for (e, &c) in row.iter().zip(cols) {
            let t = def.columns[c].data_type;
            if is_default(e) {
                cells.push(None);
                continue;
            }
            let scalar = match simple_value(e, params)? {
                Some(s) => s,
                None => evaluate_constant(ctx, e, params)?,
            };
            cells.push(Some(scalar_to_value(&scalar, t)?));
        }
        out.push(cells);
    }
    Ok(out)
}

/// Evaluates a VALUES expression that is not a plain literal (functions, arithmetic, casts).
fn evaluate_constant(ctx: &ExecCtx<'_>, e: &ast::Expr, params: &Params) -> Result<ScalarValue> {
    let mut e = e.clone();
    substitute_params(&mut e, params)?;
    let compiled = compile(ctx.state, &e, &DFSchema::empty())?;
    let array = compiled.evaluate(&rows_only(1)?)?;
    ScalarValue::try_from_array(&array, 0).map_err(Error::from)
}

/// Replaces `$n` with its bound value as a literal of the parameter's type.
pub(super) fn substitute_params(e: &mut ast::Expr, params: &Params) -> Result<()> {
    use std::ops::ControlFlow;
    let mut err = None;
    let _ = ast::visit_expressions_mut(e, |x: &mut ast::Expr| {
        if let ast::Expr::Value(v) = x {
            if let ast::Value::Placeholder(p) = &v.value {
                match params.get(p) {
                    Ok(value) => {
                        let text = crate::convert::scalar_text(value);
                        let ty = crate::pgtype::PgType::from_arrow(&value.data_type());
                        *x = if value.is_null() {
                            ast::Expr::value(ast::Value::Null)
                        } else {
                            // The type by its SQL name (`smallint`, not `int2`, which DataFusion
                            // does not know), the cast then read as any other (rewrite.rs).
                            let data_type = Parser::new(&crate::dialect::WeftDialect::default())
                                .try_with_sql(ty.display_name())
                                .and_then(|mut p| p.parse_data_type())
                                .unwrap_or(ast::DataType::Text);
                            let mut cast = ast::Expr::Cast {
                                kind: ast::CastKind::DoubleColon,
                                expr: Box::new(ast::Expr::value(ast::Value::SingleQuotedString(
                                    text,
                                ))),
                                data_type,
                                array: false,
                                format: None,
                            };
                            crate::rewrite::rewrite(&mut cast);
                            cast
                        };
                    }
                    Err(e) => err = Some(e),
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
    err.map_or(Ok(()), Err)
}

fn rows_from_batches(
    def: &TableDef,
    cols: &[usize],
    batches: &[RecordBatch],
) -> Result<Vec<Vec<Option<Value>>>> {
    let mut out = Vec::new();
    for b in batches {
        if b.num_columns() != cols.len() {
            return Err(Error::syntax(if b.num_columns() > cols.len() {
                "INSERT has more expressions than target columns"
            } else {
                "INSERT has more target columns than expressions"
            }));
        }
        for r in 0..b.num_rows() {
            let cells = cols
                .iter()
                .enumerate()
                .map(|(i, &c)| array_value(b.column(i), r, def.columns[c].data_type).map(Some))
                .collect::<Result<Vec<_>>>()?;
            out.push(cells);
        }
    }
    Ok(out)
}

/// Full rows: given values, defaults for the rest, a fresh hidden row id where the table has one.
fn complete(
    ctx: &ExecCtx<'_>,
    txn: &Txn,
    def: &TableDef,
    cols: &[usize],
    partial: Vec<Vec<Option<Value>>>,
    overriding: bool,
) -> Result<Vec<Row>> {
    let n = partial.len();
    for (i, &c) in cols.iter().enumerate().filter(|_| !overriding) {
        let col = &def.columns[c];
        if col.identity == Some(weft_storage::Identity::Always)
            && partial
                .iter()
                .any(|cells| cells.get(i).is_some_and(Option::is_some))
        {
            return Err(Error::Detailed {
                code: "428C9",
                message: format!(
                    "cannot insert a non-DEFAULT value into column \"{}\"",
                    col.name
                ),
                detail: Some(format!(
                    "Column \"{}\" is an identity column defined as GENERATED ALWAYS.",
                    col.name
                )),
                hint: Some("Use OVERRIDING SYSTEM VALUE to override.".into()),
                object: Default::default(),
            });
        }
    }
    let mut rows: Vec<Row> = vec![vec![Value::Null; def.columns.len()]; n];
    let mut needs_default = vec![vec![false; n]; def.columns.len()];
    for (r, cells) in partial.into_iter().enumerate() {
        for (c, _) in def.columns.iter().enumerate() {
            needs_default[c][r] = !cols.contains(&c);
        }
        for (cell, &c) in cells.into_iter().zip(cols) {
            match cell {
                Some(v) => rows[r][c] = v,
                None => needs_default[c][r] = true,
            }
        }
    }
    for (c, col) in def.columns.iter().enumerate() {
        let count = needs_default[c].iter().filter(|d| **d).count();
        if count == 0 {
            continue;
        }
        let mut values = if col.hidden {
            (0..count)
                .map(|_| Value::Int64(txn.next_rowid()))
                .collect::<Vec<_>>()
                .into_iter()
        } else {
            default_values(ctx, def, c, count)?.into_iter()
        };
        for (r, row) in rows.iter_mut().enumerate() {
            if needs_default[c][r] {
                row[c] = values.next().unwrap_or(Value::Null);
            }
        }
    }
    Ok(rows)
}

/// Inserts rows given for the columns `cols` (a `None` cell takes its default), as COPY FROM
/// does: identity columns take the values given, even GENERATED ALWAYS ones (PostgreSQL's COPY
/// does, so that a dump restores). Returns how many rows were inserted.
pub(crate) fn insert_rows(
    ctx: &ExecCtx<'_>,
    txn: &mut Txn,
    def: &TableDef,
    cols: &[usize],
    partial: Vec<Vec<Option<Value>>>,
) -> Result<usize> {
    let rows = complete(ctx, txn, def, cols, partial, true)?;
    constraints::check(ctx, def, &rows)?;
    let n = rows.len();
    for row in rows {
        txn.insert(def, row)?;
    }
    Ok(n)
}

pub(super) async fn execute(
    ctx: &ExecCtx<'_>,
    txn: &mut Txn,
    i: &ast::Insert,
    params: &Params,
    overriding: Option<Overriding>,
) -> Result<QueryOutput> {
    let catalog = txn.catalog();
    let def = target_by_name(&catalog, table_name(i)?)?.clone();
    let qualifier = i
        .table_alias
        .as_ref()
        .map(|a| ident(&a.alias))
        .unwrap_or_else(|| def.name.clone());
    // DEFAULT VALUES names no column: every column takes its default.
    let mut cols = if i.source.is_some() {
        target_columns(&def, i)?
    } else {
        Vec::new()
    };
    let partial = match (values_rows(i), select_source(i)) {
        (Some(rows), _) => {
            let width = rows.first().map(|r| r.content.len()).unwrap_or(0);
            if rows.iter().any(|r| r.content.len() != width) {
                return Err(Error::syntax("VALUES lists must all be the same length"));
            }
            // Without a column list, fewer values than columns fill the leading columns.
            if i.columns.is_empty() && width < cols.len() {
                cols.truncate(width);
            }
            rows_from_values(ctx, &def, &cols, rows, params)?
        }
        (None, Some(query)) => {
            let batches = select::run(ctx, def.id, &query, params).await?;
            rows_from_batches(&def, &cols, &batches)?
        }
        (None, None) => vec![Vec::new(); 1],
    };
    let partial = match overriding {
        // The values given for identity columns give way to their sequences.
        Some(Overriding::User) => {
            let identity: Vec<usize> = cols
                .iter()
                .enumerate()
                .filter(|(_, &c)| def.columns[c].identity.is_some())
                .map(|(i, _)| i)
                .collect();
            let mut partial = partial;
            for row in &mut partial {
                for &i in &identity {
                    if let Some(cell) = row.get_mut(i) {
                        *cell = None;
                    }
                }
            }
            partial
        }
        _ => partial,
    };
    let system = overriding == Some(Overriding::System);
    let rows = complete(ctx, txn, &def, &cols, partial, system)?;
    constraints::check(ctx, &def, &rows)?;
    let written = match &i.on {
        None => {
            for row in &rows {
                txn.insert(&def, row.clone())?;
            }
            rows
        }
        Some(ast::OnInsert::OnConflict(oc)) => {
            super::upsert::execute(ctx, txn, &def, &qualifier, oc, rows, params).await?
        }
        Some(other) => return Err(Error::unsupported(format!("INSERT ... {other}"))),
    };
    match &i.returning {
        Some(list) => returning::output(ctx, &def, &qualifier, list, &written, "INSERT"),
        None => Ok(QueryOutput::Command {
            tag: format!("INSERT 0 {}", written.len()),
        }),
    }
}
